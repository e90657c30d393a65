-- Idempotent sends: the id a client gave its message, unique per sender. Looked up by
-- id first (one query per commit batch), so that column leads the index.
ALTER TABLE messages ADD COLUMN client_msg_id TEXT;
CREATE UNIQUE INDEX messages_by_client_msg_id ON messages (client_msg_id, sender_id)
    WHERE client_msg_id IS NOT NULL;
