"""Type-checked (not run) by run.sh with `mypy --strict`: the client's typed surface as an
application uses it. A wrong event name, payload key or argument type here fails the run."""

from __future__ import annotations

from typing import assert_type

from broodlink_client import (
    BroodLinkClient,
    BroodLinkError,
    DmEvent,
    ErrorCode,
    MessageEvent,
    ReconnectedEvent,
    RoomListResult,
    RoomNotFoundError,
    SendResult,
    Visibility,
)


async def main() -> None:
    client = BroodLinkClient(url="ws://localhost:18800", api_key="bl_k_ctrl_x", request_timeout=5)
    async with client:
        @client.on("message")
        async def on_message(event: MessageEvent) -> None:
            msg = event["message"]
            print(f"[{msg['senderName']}] {msg['content']} #{msg['seq']}")

        def on_dm(event: DmEvent) -> None:
            print(event["fromDisplayName"], event["content"])

        client.on("dm", on_dm)
        client.on("presence", lambda event: print(event["displayName"], event["online"]))
        client.on("*", lambda name, payload: print(name, payload))

        @client.on("reconnected")
        def on_reconnected(info: ReconnectedEvent) -> None:
            print(f"back after {info['attempts']} attempts, {info['missed']} missed")

        rooms = await client.list_rooms()
        assert_type(rooms, RoomListResult)
        for room in rooms["rooms"]:
            assert_type(room["visibility"], Visibility)
        sent = await client.send_message(client.lobby_id, "Hello from Python!")
        assert_type(sent, SendResult)
        created = await client.create_room("Research", "private", description="papers")
        history = await client.room_history(created["room"]["roomId"], limit=10, after_seq=sent["seq"])
        assert_type(history["hasMore"], bool)
        try:
            await client.join_room("no-such-room")
        except RoomNotFoundError as error:
            assert_type(error.code, int)
        except BroodLinkError as error:
            if error.code == ErrorCode.NOT_INVITED:
                print(error.message, error.data)
        assert_type(client.is_controller, bool)
        assert_type(client.motd, str | None)
