"""The client as the README and the specification use it, configuration, and a call of
every RPC method against the real server."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import broodlink_client
from broodlink_client import (
    BroodLinkClient,
    BroodLinkConnectionError,
    DocumentNotFoundError,
    ForbiddenError,
)

from conftest import REPO, Clients, Recorder, Server, start_server

README = REPO / "clients" / "python" / "README.md"


def readme_usage_example() -> str:
    """The README's first Python example (the specification's), exactly as published."""
    text = README.read_text()
    match = re.search(r"## Usage\n\n```python\n(.*?)```", text, re.S)
    assert match, "the README has no Usage example"
    return match.group(1)


async def test_readme_example_runs_verbatim(server: Server, clients: Clients) -> None:
    listener = await clients.participant("listener")
    seen = Recorder()
    listener.on("message", lambda event: seen.record("message", event))

    code = readme_usage_example()
    assert 'url="ws://your-server:18800"' in code and 'api_key="bl_k_ctrl_your_key_here"' in code
    code = code.replace("ws://your-server:18800", server.url).replace("bl_k_ctrl_your_key_here", server.controller_key)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    assert re.fullmatch(r"Connected as .+ \(controller\)\n", stdout.decode()), stdout.decode()
    event = await seen.wait_for("message", lambda e: e["message"]["content"] == "Hello from Python!")
    assert event["roomId"] == listener.lobby_id
    assert event["message"]["senderId"] != listener.agent_id


async def test_issue_example_in_process(
    server: Server, clients: Clients, capsys: pytest.CaptureFixture[str]
) -> None:
    """The example of the issue, with a handler that does receive a message."""
    other = await clients.participant("talker")
    delivered = asyncio.Event()

    client = BroodLinkClient(url=server.url, api_key=server.controller_key)
    async with client:
        print(f"Connected as {client.display_name} ({client.role})")

        @client.on("message")
        async def on_message(event):  # type: ignore[no-untyped-def]
            msg = event["message"]
            print(f"[{msg['senderName']}] {msg['content']}")
            delivered.set()

        rooms = await client.list_rooms()
        await client.send_message(client.lobby_id, "Hello from Python!")
        await other.send_message(other.lobby_id, "hi controller")
        await asyncio.wait_for(delivered.wait(), 5)
    assert rooms["rooms"][0]["isLobby"]
    out = capsys.readouterr().out
    assert f"Connected as {client.display_name} (controller)" in out
    assert f"[{other.display_name}] hi controller" in out


async def test_environment_fallback(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROODLINK_URL", server.url)
    monkeypatch.setenv("BROODLINK_API_KEY", server.controller_key)
    async with BroodLinkClient() as client:
        assert client.url == server.url
        assert client.is_controller
    monkeypatch.delenv("BROODLINK_API_KEY")
    with pytest.raises(ValueError, match="BROODLINK_API_KEY"):
        BroodLinkClient()


async def test_several_servers_in_one_process(server: Server, tmp_path: Path) -> None:
    """Multi-linkspace: each client holds its own url and key."""
    second = start_server(tmp_path)
    try:
        one = BroodLinkClient(url=server.url, api_key=server.controller_key)
        two = BroodLinkClient(url=second.url, api_key=second.controller_key)
        async with one, two:
            assert one.lobby_id != two.lobby_id
            created = await two.create_room("only on the second server")
            ids_one = {room["roomId"] for room in (await one.list_rooms())["rooms"]}
            ids_two = {room["roomId"] for room in (await two.list_rooms())["rooms"]}
            assert created["room"]["roomId"] in ids_two and created["room"]["roomId"] not in ids_one
    finally:
        second.stop()


async def test_session_attributes(server: Server, clients: Clients) -> None:
    admin = await clients.admin()
    await admin.set_motd("be kind")
    participant = await clients.participant("attrs", display_name="Session Name")
    assert participant.role == "participant"
    assert participant.is_participant and not participant.is_controller
    assert participant.display_name == "Session Name"
    assert participant.motd == "be kind"
    assert participant.lobby_name == "Lobby"
    assert participant.connected
    assert admin.is_controller and not admin.is_participant
    members = await participant.room_info(participant.lobby_id)
    assert participant.agent_id in {m["agentId"] for m in members["members"]}
    # lobby.motd events keep `motd` current.
    await admin.set_motd(None)
    for _ in range(100):
        if participant.motd is None:
            break
        await asyncio.sleep(0.02)
    assert participant.motd is None


async def test_not_connected_yet(server: Server) -> None:
    client = BroodLinkClient(url=server.url, api_key=server.controller_key)
    with pytest.raises(BroodLinkConnectionError, match="connect"):
        await client.list_rooms()
    with pytest.raises(RuntimeError):
        client.lobby_id
    unreachable = BroodLinkClient(url="ws://127.0.0.1:9", api_key=server.controller_key)
    with pytest.raises(BroodLinkConnectionError, match="cannot connect"):
        await unreachable.connect()


async def test_every_method(server: Server, clients: Clients) -> None:
    """One call of every RPC method, grouped as the protocol groups them."""
    admin = await clients.controller()
    alice = await clients.participant("alice")
    bob = await clients.participant("bob")

    # auth: the client authenticated on connect; a second auth is refused.
    with pytest.raises(ForbiddenError):
        await alice.auth("bl_k_" + "0" * 48)

    # agent.*
    invited = await admin.invite_agent("Invitee")
    assert invited["apiKey"].startswith("bl_k_") and invited["role"] == "participant"
    agents = (await admin.list_agents())["agents"]
    assert invited["agentId"] in {a["agentId"] for a in agents}
    assert (await admin.kick_agent(invited["agentId"], "just testing"))["disconnected"] == 0
    assert (await admin.ban_agent(invited["agentId"]))["ok"]
    assert (await admin.unban_agent(invited["agentId"]))["ok"]
    assert (await admin.revoke_agent(invited["agentId"], reason="done"))["agentId"] == invited["agentId"]

    # room.*
    room = (await alice.create_room("Research", "public", description="papers"))["room"]
    room_id = room["roomId"]
    assert room["visibility"] == "public" and room["description"] == "papers" and room["isMember"]
    assert room_id in {r["roomId"] for r in (await bob.list_rooms())["rooms"]}
    assert (await bob.join_room(room_id))["room"]["memberCount"] == 2
    info = await alice.room_info(room_id)
    assert [m["agentId"] for m in info["members"]] == [alice.agent_id, bob.agent_id]
    sent = await bob.send_message(room_id, "first")
    history = await alice.room_history(room_id, limit=10)
    assert [m["content"] for m in history["messages"]] == ["first"] and not history["hasMore"]
    assert (await alice.room_history(room_id, after_seq=sent["seq"]))["messages"] == []
    assert len((await alice.room_history(room_id, before_seq=sent["seq"] + 1))["messages"]) == 1
    assert (await alice.update_room(room_id, name="Research 2"))["room"]["name"] == "Research 2"
    assert (await alice.set_room_visibility(room_id, "private"))["room"]["visibility"] == "private"
    carol = await clients.participant("carol")
    assert (await alice.invite_to_room(room_id, carol.agent_id))["agentId"] == carol.agent_id
    await carol.join_room(room_id)
    assert (await alice.kick_from_room(room_id, carol.agent_id, "sorry"))["ok"]
    assert (await bob.leave_room(room_id))["roomId"] == room_id
    assert (await admin.take_room_ownership(room_id))["room"]["ownerId"] == admin.agent_id
    assert (await admin.delete_room(room_id))["ok"]

    # message.*
    lobby = alice.lobby_id
    posted = await alice.send_message(lobby, "hello lobby")
    assert posted["seq"] > sent["seq"]
    dm = await alice.send_dm(bob.agent_id, "psst")
    assert dm["seq"] > posted["seq"]
    removed = await alice.remove_message(posted["messageId"], "oops")
    assert removed == {"ok": True, "messageId": posted["messageId"], "roomId": lobby}

    # lobby.*
    assert (await admin.set_motd("Welcome"))["motd"] == "Welcome"
    assert (await bob.get_motd())["motd"] == "Welcome"
    assert (await admin.set_motd())["motd"] is None

    # docs.*
    names = {d["name"] for d in (await bob.list_docs())["docs"]}
    assert {"constitution", "participant", "protocol"} <= names
    protocol = await bob.get_doc("protocol")
    assert "# BroodLink protocol reference" in protocol["content"]
    updated = await admin.update_doc("constitution", "# Rules\nBe kind.", version="7.0")
    assert updated == {"name": "constitution", "version": "7.0"}
    with pytest.raises(DocumentNotFoundError):
        await bob.get_doc("controller")

    # ping (an extension)
    # The server's clock is this machine's; a second of slack for a clock step.
    before = time.time_ns() // 1_000_000 - 1000
    pong = await bob.ping()
    assert before <= pong["timestamp"] <= time.time_ns() // 1_000_000 + 1000


def test_package_exports() -> None:
    exported = set(broodlink_client.__all__)
    assert {"BroodLinkClient", "BroodLinkError", "ErrorCode", "Message", "Room", "EventMap"} <= exported
    for name in exported:
        assert hasattr(broodlink_client, name), name
    assert broodlink_client.__version__


def test_generated_methods_are_documented() -> None:
    client: Any = BroodLinkClient
    for name in ("list_rooms", "send_message", "join_room", "room_history"):
        doc = getattr(client, name).__doc__
        assert doc and "Wire method" in doc, name


async def test_a_history_page_over_64_kib_arrives_whole(clients: Clients) -> None:
    """A 96 KB page is one WebSocket frame with the 8-byte length form."""
    alice = await clients.participant("long-writer")
    room_id = (await alice.create_room("long pages"))["room"]["roomId"]
    contents = [f"{i:02} " + "é" * 4000 for i in range(12)]
    for content in contents:
        await alice.send_message(room_id, content)
    page = await alice.room_history(room_id, limit=12)
    assert [m["content"] for m in page["messages"]] == contents
