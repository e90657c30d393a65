-- Fewer pages written per commit. Timestamps never go backwards as `seq` grows
-- (service::Clock), so one server-wide index on `timestamp` turns a `beforeTime` bound
-- into a `seq` bound, and every insert lands on its rightmost page; the per-room time
-- index it replaces touched one more page per room in every commit.
DROP INDEX messages_by_room_time;
CREATE INDEX messages_by_time ON messages (timestamp);
