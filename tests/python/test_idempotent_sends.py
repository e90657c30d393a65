"""Idempotent sends against the real server: `send_message` and `send_dm` carry a
`clientMsgId` (a fresh UUID unless the caller gives one), and a send that a dropped
connection left without its response is re-sent with the same id once the client has
reconnected, so the server stores it exactly once and the caller gets its result.

A TCP proxy (conftest.Proxy) loses a request or a response on purpose; the other tests kill
or restart the server while sends are in flight."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from broodlink_client import (
    BroodLinkClient,
    BroodLinkConnectionError,
    BroodLinkTimeoutError,
    RateLimitedError,
)

from conftest import Clients, Proxy, Recorder, Server, start_server

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
#: Reconnect at once: these tests are about what happens to the calls, not the backoff.
FAST = {"reconnect_initial_delay": 0.05, "reconnect_max_delay": 0.2}


async def until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def messages_in(client: BroodLinkClient, room_id: str, after: int = 0) -> list[dict[str, Any]]:
    """Every message of a room after `after`, oldest first (following `hasMore`)."""
    messages: list[dict[str, Any]] = []
    while True:
        page = await client.room_history(room_id, limit=100, after_seq=after)
        messages.extend(page["messages"])
        if not page["hasMore"] or not page["messages"]:
            return messages
        after = page["messages"][-1]["seq"]


async def newest_seq(client: BroodLinkClient, room_id: str) -> int:
    page = await client.room_history(room_id, limit=1)
    return max((m["seq"] for m in page["messages"]), default=0)


def record(client: BroodLinkClient) -> Recorder:
    seen = Recorder()
    for name in ("message", "dm", "reconnected"):
        client.on(name, lambda payload, name=name: seen.record(name, payload))
    return seen


def contents(recorder: Recorder, name: str) -> list[str]:
    if name == "message":
        return [e["message"]["content"] for e in recorder.of("message")]
    return [e["content"] for e in recorder.of("dm")]


async def test_a_send_without_client_msg_id_puts_a_fresh_uuid_on_the_wire(
    clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await clients.admin()
    alice = await clients.participant("alice")
    frames: list[dict[str, Any]] = []
    ws = alice._ws
    assert ws is not None
    send = ws.send

    async def spy(message: Any, *args: Any, **kwargs: Any) -> None:
        frames.append(json.loads(message))
        await send(message, *args, **kwargs)

    monkeypatch.setattr(ws, "send", spy)
    first = await alice.send_message(alice.lobby_id, "first")
    await alice.send_message(alice.lobby_id, "second")
    await alice.send_dm(admin.agent_id, "a DM")
    await alice.send_message(alice.lobby_id, "mine", client_msg_id="my-own-id")
    await alice.list_rooms()

    params = {f["params"].get("content", f["method"]): f["params"] for f in frames}
    ids = [params[content]["clientMsgId"] for content in ("first", "second", "a DM")]
    assert all(UUID4.match(i) for i in ids), ids
    assert len(set(ids)) == 3
    assert params["mine"]["clientMsgId"] == "my-own-id"
    assert "clientMsgId" not in params["room.list"]
    # The id on the wire is the one the server keeps: sending with it again stores nothing.
    assert await alice.send_message(alice.lobby_id, "first", client_msg_id=ids[0]) == first


async def test_the_same_client_msg_id_twice_is_stored_once(clients: Clients) -> None:
    admin = await clients.admin()
    alice = await clients.participant("alice")
    dms = record(admin)
    room_id = (await alice.create_room(f"idempotent {uuid.uuid4()}"))["room"]["roomId"]
    key = str(uuid.uuid4())
    first = await alice.send_message(room_id, "once", client_msg_id=key)
    again = await alice.send_message(room_id, "once", client_msg_id=key)
    assert again == first
    assert [(m["messageId"], m["content"]) for m in await messages_in(admin, room_id)] == [
        (first["messageId"], "once")
    ]

    since = await newest_seq(admin, admin.lobby_id)
    dm_key = str(uuid.uuid4())
    dm = await alice.send_dm(admin.agent_id, f"dm {dm_key}", client_msg_id=dm_key)
    assert await alice.send_dm(admin.agent_id, f"dm {dm_key}", client_msg_id=dm_key) == dm
    stored = [m for m in await messages_in(admin, admin.lobby_id, since) if m["content"] == f"dm {dm_key}"]
    assert [m["messageId"] for m in stored] == [dm["messageId"]]
    await dms.wait_for("dm", lambda e: e["content"] == f"dm {dm_key}")
    await asyncio.sleep(0.2)
    assert contents(dms, "dm").count(f"dm {dm_key}") == 1


@pytest.mark.parametrize("lost", ["request", "response"])
@pytest.mark.parametrize("method", ["message.send", "message.dm"])
async def test_a_send_whose_answer_a_drop_lost_is_resent_with_its_id(
    clients: Clients, proxy: Proxy, lost: str, method: str
) -> None:
    """The request (not stored yet) or the response (stored, the answer lost) disappears,
    the connection is cut; after the reconnect the client re-sends with the same
    clientMsgId, the caller gets the result, and the message exists once."""
    admin = await clients.admin()
    received = record(admin)
    sender = BroodLinkClient(url=proxy.url, api_key=await clients.new_key("sender"), **FAST)
    clients.made.append(sender)
    seen = record(sender)
    await sender.connect()
    room_id = (await sender.create_room(f"resend {uuid.uuid4()}"))["room"]["roomId"]
    await admin.join_room(room_id)
    where = room_id if method == "message.send" else admin.lobby_id
    since = await newest_seq(admin, where)
    content = f"{method} {lost} {uuid.uuid4()}"

    async def stored() -> list[dict[str, Any]]:
        return [m for m in await messages_in(admin, where, since) if m["content"] == content]

    if lost == "request":
        proxy.drop_requests = True
    else:
        proxy.drop_responses = True
    if method == "message.send":
        sending = asyncio.create_task(sender.send_message(room_id, content))
    else:
        sending = asyncio.create_task(sender.send_dm(admin.agent_id, content))
    if lost == "response":
        deadline = time.monotonic() + 5
        while not await stored():
            assert time.monotonic() < deadline, "the message was not stored"
            await asyncio.sleep(0.02)
    else:
        await asyncio.sleep(0.3)
        assert await stored() == []
    assert not sending.done()

    proxy.cut()
    proxy.drop_requests = proxy.drop_responses = False
    result = await asyncio.wait_for(sending, 10)
    await seen.wait_for("reconnected")
    assert proxy.connections >= 2

    messages = await stored()
    assert len(messages) == 1, messages
    assert {k: messages[0][k] for k in ("messageId", "seq", "timestamp")} == result
    # The recipient got it once; the sender's own handlers never did (the catch-up after the
    # reconnect knew it as the sender's own).
    event = "message" if method == "message.send" else "dm"
    await received.wait_for(event, lambda _: content in contents(received, event))
    await asyncio.sleep(0.2)
    assert contents(received, event).count(content) == 1
    assert content not in contents(seen, "message") + contents(seen, "dm")


@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
async def test_sends_in_flight_when_the_server_goes_down_are_stored_once(
    own_server: Server, stop_signal: int
) -> None:
    server = own_server
    sender = BroodLinkClient(url=server.url, api_key=server.controller_key, **FAST)
    hooks = record(sender)
    await sender.connect()
    room_id = (await sender.create_room("in flight"))["room"]["roomId"]

    texts = [f"in flight {i}" for i in range(100)]
    sends = [asyncio.create_task(sender.send_message(room_id, text)) for text in texts]
    await until(lambda: sum(s.done() for s in sends) >= 10, timeout=10)
    # Frozen, the server reads nothing more: these are written and certainly unanswered.
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    more = [f"in flight {i}" for i in range(100, 120)]
    sends += [asyncio.create_task(sender.send_message(room_id, text)) for text in more]
    texts += more
    await asyncio.sleep(0.2)
    if stop_signal == signal.SIGTERM:
        server.process.send_signal(signal.SIGCONT)  # a graceful shutdown, while they are in flight
    server.stop(stop_signal)
    await until(lambda: not sender.connected)
    waiting = len(sender._outbox)
    if stop_signal == signal.SIGKILL:
        assert waiting >= 20, waiting
    server.start()

    results = await asyncio.wait_for(asyncio.gather(*sends), 30)
    await hooks.wait_for("reconnected")
    assert len({r["messageId"] for r in results}) == len(texts)
    stored = await messages_in(sender, room_id)
    assert Counter(m["content"] for m in stored) == Counter(texts)
    # Each caller got its own message's result, and the order of the sends is kept.
    by_content = {m["content"]: m for m in stored}
    assert [by_content[t]["messageId"] for t in texts] == [r["messageId"] for r in results]
    assert [m["content"] for m in stored] == texts
    await sender.close()


async def test_a_send_not_resent_within_the_request_timeout_fails_with_the_timeout_error(
    clients: Clients, proxy: Proxy
) -> None:
    admin = await clients.admin()
    sender = BroodLinkClient(url=proxy.url, api_key=await clients.new_key("sender"), request_timeout=1.0, **FAST)
    clients.made.append(sender)
    hooks = record(sender)
    await sender.connect()
    room_id = (await sender.create_room(f"timeout {uuid.uuid4()}"))["room"]["roomId"]
    proxy.drop_requests = True
    started = time.monotonic()
    sending = asyncio.create_task(sender.send_message(room_id, "never answered"))
    await asyncio.sleep(0.2)
    proxy.refuse = True  # the reconnect cannot happen in time
    proxy.cut()
    proxy.drop_requests = False
    with pytest.raises(BroodLinkTimeoutError, match="message.send"):
        await sending
    assert 0.9 <= time.monotonic() - started < 2.0
    assert sender._outbox == []

    # Once the client is back, the call that timed out is not sent again.
    proxy.refuse = False
    await hooks.wait_for("reconnected", timeout=10)
    assert (await sender.send_message(room_id, "after"))["seq"] > 0
    assert [m["content"] for m in await messages_in(admin, room_id)] == ["after"]


async def test_closing_fails_a_send_waiting_to_be_resent(clients: Clients, proxy: Proxy) -> None:
    sender = BroodLinkClient(url=proxy.url, api_key=await clients.new_key("sender"), **FAST)
    await sender.connect()
    proxy.drop_responses = True
    sending = asyncio.create_task(sender.send_message(sender.lobby_id, "closing"))
    await asyncio.sleep(0.2)
    proxy.refuse = True
    proxy.cut()
    await until(lambda: len(sender._outbox) == 1)
    await sender.close()
    with pytest.raises(BroodLinkConnectionError, match="closed"):
        await sending


async def test_without_auto_reconnect_a_send_whose_answer_was_lost_fails(clients: Clients, proxy: Proxy) -> None:
    sender = BroodLinkClient(url=proxy.url, api_key=await clients.new_key("sender"), auto_reconnect=False)
    clients.made.append(sender)
    await sender.connect()
    proxy.drop_responses = True
    sending = asyncio.create_task(sender.send_message(sender.lobby_id, "no second chance"))
    await asyncio.sleep(0.2)
    proxy.cut()
    with pytest.raises(BroodLinkConnectionError):
        await asyncio.wait_for(sending, 2)
    assert sender._outbox == []


async def test_a_rate_limited_send_is_not_retried(tmp_path: Path) -> None:
    limited = start_server(tmp_path, {"limits": {"sendsPerSecond": 0.5, "sendBurst": 1}})
    try:
        async with BroodLinkClient(url=limited.url, api_key=limited.controller_key) as client:
            room_id = (await client.create_room("limited"))["room"]["roomId"]
            await client.send_message(room_id, "first")
            started = time.monotonic()
            with pytest.raises(RateLimitedError) as caught:
                await client.send_message(room_id, "second")
            assert time.monotonic() - started < 0.5
            assert caught.value.retry_after_ms is not None and 0 < caught.value.retry_after_ms <= 2000
            assert [m["content"] for m in await messages_in(client, room_id)] == ["first"]
    finally:
        limited.stop()
