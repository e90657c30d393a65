"""Every event the server sends reaches the handlers registered for it (decorator and call
forms, plain and async functions), and the catch-all."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from broodlink_client import EVENT_NAMES, BroodLinkClient, BroodLinkConnectionError

from conftest import Clients, Recorder


def record_everything(client: BroodLinkClient, recorder: Recorder, catch_all: Recorder) -> None:
    for index, name in enumerate(EVENT_NAMES):
        if index % 2:
            # Decorator form, async handler.
            @client.on(name)
            async def handler(payload: Any, name: str = name) -> None:
                await asyncio.sleep(0)
                recorder.record(name, payload)
        else:
            # Call form, plain handler.
            client.on(name, lambda payload, name=name: recorder.record(name, payload))
    client.on("*", catch_all.record)


async def test_every_event_reaches_a_handler(clients: Clients) -> None:
    admin = await clients.admin()
    owner = await clients.participant("owner")
    seen, everything = Recorder(), Recorder()
    agent = await clients.participant("watcher")
    record_everything(agent, seen, everything)
    me = agent.agent_id

    # presence: another agent comes online.
    newcomer = await clients.participant("newcomer")
    await seen.wait_for("presence", lambda e: e["agentId"] == newcomer.agent_id and e["online"])
    # room.created: a public room appears.
    room_id = (await owner.create_room("Events"))["room"]["roomId"]
    await seen.wait_for("room.created", lambda e: e["roomId"] == room_id)
    # room.joined (including our own join).
    await agent.join_room(room_id)
    await seen.wait_for("room.joined", lambda e: e["roomId"] == room_id and e["agentId"] == me)
    # message
    sent = await owner.send_message(room_id, "to the room")
    event = await seen.wait_for("message", lambda e: e["message"]["messageId"] == sent["messageId"])
    assert event["roomId"] == room_id and event["message"]["seq"] == sent["seq"]
    # dm
    dm = await owner.send_dm(me, "just for you")
    event = await seen.wait_for("dm", lambda e: e["messageId"] == dm["messageId"])
    assert event["fromAgentId"] == owner.agent_id and event["toAgentId"] == me
    # message.removed
    await owner.remove_message(sent["messageId"], "mistake")
    await seen.wait_for("message.removed", lambda e: e["messageId"] == sent["messageId"])
    # room.updated
    await owner.update_room(room_id, description="new description")
    await seen.wait_for("room.updated", lambda e: e["description"] == "new description")
    # room.visibilityChanged
    await owner.set_room_visibility(room_id, "private")
    await seen.wait_for("room.visibilityChanged", lambda e: e["visibility"] == "private")
    # room.left: someone else leaves.
    # (the room is private now: joining needs an invitation)
    await owner.invite_to_room(room_id, newcomer.agent_id)
    await newcomer.join_room(room_id)
    await newcomer.leave_room(room_id)
    await seen.wait_for("room.left", lambda e: e["agentId"] == newcomer.agent_id)
    # room.ownerChanged
    await admin.take_room_ownership(room_id)
    await seen.wait_for("room.ownerChanged", lambda e: e["newOwnerId"] == admin.agent_id)
    # kicked
    await admin.kick_from_room(room_id, me, "testing kicked")
    await seen.wait_for("kicked", lambda e: e["roomId"] == room_id and e["reason"] == "testing kicked")
    # room.invited
    await admin.invite_to_room(room_id, me)
    await seen.wait_for("room.invited", lambda e: e["roomId"] == room_id)
    # room.deleted
    await agent.join_room(room_id)
    await admin.delete_room(room_id)
    await seen.wait_for("room.deleted", lambda e: e["roomId"] == room_id)
    # lobby.motd
    await admin.set_motd("events!")
    await seen.wait_for("lobby.motd", lambda e: e["content"] == "events!")
    # docs.updated
    await admin.update_doc("constitution", "# Constitution\nEvents reach handlers.")
    await seen.wait_for("docs.updated", lambda e: e["name"] == "constitution")
    # disconnected: the controller kicks the agent off the server.
    await admin.kick_agent(me, "bye")
    await seen.wait_for("disconnected", lambda e: e["reason"] == "bye")

    assert {name for name, _ in seen.events} == set(EVENT_NAMES)
    assert {name for name, _ in everything.events} == set(EVENT_NAMES)
    # The catch-all saw the same events, in the same order.
    assert [name for name, _ in everything.events] == [name for name, _ in seen.events]

    # A kick is final: the client does not reconnect, and calls fail at once.
    for _ in range(100):
        if not agent.connected:
            break
        await asyncio.sleep(0.02)
    assert not agent.connected
    with pytest.raises(BroodLinkConnectionError, match="bye"):
        await asyncio.wait_for(agent.list_rooms(), 1)
    # It may connect again by hand, and its handlers still work.
    await agent.connect()
    await owner.send_dm(me, "welcome back")
    await seen.wait_for("dm", lambda e: e["content"] == "welcome back")


async def test_handlers_may_call_the_client_and_fail(
    clients: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler may await calls on the client; one that raises is logged and does not stop
    the others or later events."""
    agent = await clients.participant("replier")
    friend = await clients.participant("friend")
    replies = Recorder()
    friend.on("dm", lambda e: replies.record("dm", e))

    @agent.on("dm")
    def broken(event: Any) -> None:
        raise RuntimeError("handler bug")

    @agent.on("dm")
    async def answer(event: Any) -> None:
        await agent.send_dm(event["fromAgentId"], "re: " + event["content"])

    caplog.set_level(logging.ERROR, logger="broodlink_client")
    await friend.send_dm(agent.agent_id, "one")
    await friend.send_dm(agent.agent_id, "two")
    await replies.wait_for("dm", lambda e: e["content"] == "re: two")
    assert [e["content"] for e in replies.of("dm")] == ["re: one", "re: two"]
    assert "handler bug" in caplog.text

    agent.off("dm", broken)
    await friend.send_dm(agent.agent_id, "three")
    await replies.wait_for("dm", lambda e: e["content"] == "re: three")


async def test_close_is_clean(clients: Clients) -> None:
    agent = await clients.participant("closer")
    tasks = [agent._dispatcher, agent._reader_task]
    assert all(task is not None and not task.done() for task in tasks)
    await agent.close()
    await agent.close()  # idempotent
    assert all(task is not None and task.done() for task in tasks)
    with pytest.raises(BroodLinkConnectionError, match="closed"):
        await agent.list_rooms()
    # A closed client can connect again.
    await agent.connect()
    assert (await agent.get_motd()) is not None
    await agent.close()
