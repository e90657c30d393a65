"""Auto-reconnect against a real server that is stopped and started again on the same data
directory and port: re-auth, rejoin, catch-up exactly once, calls waiting meanwhile, and
the cases where the client must not (or cannot) reconnect."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from typing import Any

import pytest

import broodlink_client._runtime as runtime
from broodlink_client import BroodLinkClient, BroodLinkConnectionError

from conftest import Recorder, Server


async def until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def listen(client: BroodLinkClient) -> tuple[Recorder, Recorder]:
    seen, hooks = Recorder(), Recorder()
    client.on("message", lambda e: seen.record("message", e))
    client.on("dm", lambda e: seen.record("dm", e))
    client.on("reconnected", lambda info: hooks.record("reconnected", info))
    client.on("room.joined", lambda e: hooks.record("room.joined", e))
    return seen, hooks


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_reconnects_after_server_restart(
    own_server: Server, stop_signal: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = own_server
    # Small history pages, so catching up has to follow `hasMore`.
    monkeypatch.setattr(runtime, "CATCH_UP_PAGE", 2)
    admin = BroodLinkClient(url=server.url, api_key=server.controller_key, auto_reconnect=False)
    await admin.connect()
    invited = await admin.invite_agent("Listener")
    sender_key = (await admin.invite_agent("Sender"))["apiKey"]
    room_id = (await admin.create_room("Persistent"))["room"]["roomId"]
    lobby = admin.lobby_id
    async with BroodLinkClient(url=server.url, api_key=sender_key) as sender:
        await sender.join_room(room_id)  # memberships outlive the restart

    # The first reconnect attempt comes 0.5-1 s after the drop: time to send while it is away.
    listener = BroodLinkClient(
        url=server.url,
        api_key=invited["apiKey"],
        display_name="Listener Session",
        reconnect_initial_delay=1.0,
        reconnect_max_delay=2.0,
    )
    seen, hooks = listen(listener)
    await listener.connect()
    await listener.join_room(room_id)
    before = await admin.send_message(room_id, "before restart")
    await admin.send_message(lobby, "lobby before restart")
    await listener.send_message(room_id, "the listener's own message")
    await seen.wait_for("message", lambda e: e["message"]["content"] == "lobby before restart")
    await seen.wait_for("message", lambda e: e["message"]["seq"] == before["seq"])
    await admin.close()

    server.stop(stop_signal)
    await until(lambda: not listener.connected)
    # A call made while disconnected waits for the reconnect.
    waiting_call = asyncio.create_task(listener.room_info(room_id))
    server.start()

    async with BroodLinkClient(url=server.url, api_key=sender_key, auto_reconnect=False) as sender:
        missed = [await sender.send_message(room_id, f"missed {i}") for i in range(3)]
        await sender.send_message(lobby, "missed in the lobby")
        await sender.send_dm(invited["agentId"], "missed DM")
        await sender.send_dm(admin.agent_id, "a DM to someone else")
        assert not listener.connected, "the listener came back before the test sent what it should miss"

        info = await hooks.wait_for("reconnected", timeout=15)
        assert listener.connected
        assert info["rooms"] == [room_id]
        assert info["missed"] == 5
        assert listener.display_name == "Listener Session"
        # The waiting call went through after the reconnect.
        members = (await asyncio.wait_for(waiting_call, 5))["members"]
        assert invited["agentId"] in {m["agentId"] for m in members}

        # New events arrive on the new connection.
        await sender.send_message(room_id, "after reconnect")
        await sender.send_dm(invited["agentId"], "DM after reconnect")
        await seen.wait_for("message", lambda e: e["message"]["content"] == "after reconnect")
        await seen.wait_for("dm", lambda e: e["content"] == "DM after reconnect")

    messages = seen.of("message")
    counts = Counter(e["message"]["content"] for e in messages)
    assert counts == Counter(
        {
            "before restart": 1,
            "lobby before restart": 1,
            "missed 0": 1,
            "missed 1": 1,
            "missed 2": 1,
            "missed in the lobby": 1,
            "after reconnect": 1,
        }
    ), counts
    in_room = [e["message"]["seq"] for e in messages if e["roomId"] == room_id]
    assert in_room == sorted(in_room)
    assert [e["message"]["seq"] for e in messages if e["message"]["content"] in ("missed 0", "missed 1", "missed 2")] == [
        m["seq"] for m in missed
    ]
    dms = seen.of("dm")
    assert [e["content"] for e in dms] == ["missed DM", "DM after reconnect"]
    assert dms[0]["toAgentId"] == invited["agentId"]
    assert (dms[0]["fromAgentId"], dms[0]["fromDisplayName"]) == (sender.agent_id, "Sender")
    assert len(hooks.of("reconnected")) == 1
    await listener.close()


async def test_without_auto_reconnect_calls_fail_at_once(own_server: Server) -> None:
    client = BroodLinkClient(url=own_server.url, api_key=own_server.controller_key, auto_reconnect=False)
    await client.connect()
    own_server.restart(signal.SIGKILL)
    await until(lambda: not client.connected)
    started = time.monotonic()
    with pytest.raises(BroodLinkConnectionError):
        await client.list_rooms()
    assert time.monotonic() - started < 0.5
    await asyncio.sleep(0.3)
    assert not client.connected
    await client.close()


async def test_calls_while_down_fail_after_the_timeout_then_recover(own_server: Server) -> None:
    client = BroodLinkClient(
        url=own_server.url,
        api_key=own_server.controller_key,
        request_timeout=1.0,
        reconnect_initial_delay=0.05,
        reconnect_max_delay=0.2,
    )
    seen, hooks = listen(client)
    await client.connect()
    own_server.stop(signal.SIGKILL)
    await until(lambda: not client.connected)
    started = time.monotonic()
    with pytest.raises(BroodLinkConnectionError, match="did not come back"):
        await client.list_rooms()
    assert 0.9 <= time.monotonic() - started < 2.0
    own_server.start()
    await hooks.wait_for("reconnected", timeout=5)
    assert (await client.list_rooms())["rooms"]
    await client.close()


async def test_gives_up_after_max_attempts(own_server: Server) -> None:
    client = BroodLinkClient(
        url=own_server.url,
        api_key=own_server.controller_key,
        reconnect_initial_delay=0.01,
        reconnect_max_delay=0.02,
        reconnect_max_attempts=3,
    )
    await client.connect()
    own_server.stop(signal.SIGKILL)
    await until(lambda: client._state == "disconnected")
    with pytest.raises(BroodLinkConnectionError, match="gave up"):
        await client.list_rooms()
    await client.close()


async def test_refused_key_on_reconnect_stops_reconnecting(own_server: Server) -> None:
    """Banned while away: re-auth answers 4004, and the client stops trying."""
    server = own_server
    admin = BroodLinkClient(url=server.url, api_key=server.controller_key, reconnect_initial_delay=0.01)
    _, admin_hooks = listen(admin)
    await admin.connect()
    invited = await admin.invite_agent("Soon Banned")
    agent = BroodLinkClient(
        url=server.url, api_key=invited["apiKey"], reconnect_initial_delay=1.0, reconnect_max_delay=2.0
    )
    await agent.connect()
    server.restart(signal.SIGKILL)
    await admin_hooks.wait_for("reconnected")
    await admin.ban_agent(invited["agentId"])
    assert not agent.connected, "the agent came back before the ban"
    await until(lambda: agent._state == "disconnected", timeout=10)
    with pytest.raises(BroodLinkConnectionError, match="4004|banned"):
        await agent.list_rooms()
    await agent.close()
    await admin.close()
