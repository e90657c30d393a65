"""Each protocol error code reaches the caller as its own BroodLinkError subclass, carrying
code, message and data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from broodlink_client import (
    ERROR_CLASSES,
    AgentBannedError,
    AgentNotFoundError,
    AlreadyAMemberError,
    AlreadyRemovedError,
    AuthFailedError,
    AuthRequiredError,
    BroodLinkClient,
    BroodLinkError,
    CannotModifyLobbyError,
    ConnectionLimitError,
    DocumentNotFoundError,
    ErrorCode,
    ForbiddenError,
    InternalError,
    InvalidParamsError,
    InvalidRequestError,
    MessageNotFoundError,
    MessageTooLongError,
    MethodNotFoundError,
    NotAMemberError,
    NotInvitedError,
    ParseError,
    RateLimitedError,
    ReadOnlyDocumentError,
    RoomLimitError,
    RoomNotFoundError,
)

from conftest import Clients, Server, start_server

UNKNOWN = "00000000-0000-4000-8000-000000000000"


async def raw_error(server: Server, frame: str) -> BroodLinkError:
    """What the server answers to a raw frame the client would never send."""
    async with connect(server.url) as ws:
        await ws.send(frame)
        response = json.loads(await ws.recv())
    if isinstance(response, list):
        response = response[0]
    return BroodLinkError.from_payload(response["error"])


async def test_each_error_code_raises_its_class(server: Server, clients: Clients, tmp_path: Path) -> None:
    raised: dict[int, BroodLinkError] = {}

    async def expect(error_class: type[BroodLinkError], call: Any) -> BroodLinkError:
        with pytest.raises(error_class) as caught:
            await call
        error = caught.value
        assert type(error) is error_class and error.code == error_class.CODE
        assert isinstance(error.message, str) and error.message
        raised[error.code] = error
        return error

    admin = await clients.admin()
    alice = await clients.participant("alice")
    bob = await clients.participant("bob")

    # JSON-RPC framing errors, from frames only a broken client sends.
    for frame, error_class in [
        ("{not json", ParseError),
        ("[]", InvalidRequestError),
        ('{"jsonrpc":"2.0","id":1,"method":"room.list","params":{}}', AuthRequiredError),
    ]:
        error = await raw_error(server, frame)
        assert type(error) is error_class
        raised[error.code] = error
    await expect(MethodNotFoundError, alice._call("no.such.method", {}))
    invalid = await expect(InvalidParamsError, alice.create_room(""))
    assert "name" in invalid.message
    # -32603 cannot be provoked on purpose: the mapping is the same.
    internal = BroodLinkError.from_payload({"code": -32603, "message": "Internal error", "data": {"x": 1}})
    assert type(internal) is InternalError and internal.data == {"x": 1}
    raised[internal.code] = internal

    # Authentication.
    await expect(AuthFailedError, BroodLinkClient(url=server.url, api_key="bl_k_" + "0" * 48).connect())
    banned = await admin.invite_agent("Banned")
    await admin.ban_agent(banned["agentId"])
    await expect(AgentBannedError, BroodLinkClient(url=server.url, api_key=banned["apiKey"]).connect())
    await expect(ForbiddenError, alice.list_agents())

    # Rooms.
    await expect(RoomNotFoundError, alice.join_room(UNKNOWN))
    room_id = (await alice.create_room("Errors", "private"))["room"]["roomId"]
    await expect(NotInvitedError, bob.join_room(room_id))
    await expect(AlreadyAMemberError, alice.join_room(room_id))
    await expect(NotAMemberError, alice.kick_from_room(room_id, bob.agent_id))
    await expect(CannotModifyLobbyError, alice.leave_room(alice.lobby_id))
    await expect(AgentNotFoundError, admin.kick_agent(UNKNOWN))

    # Messages.
    too_long = await expect(MessageTooLongError, alice.send_message(alice.lobby_id, "x" * 8193))
    assert too_long.message
    await expect(MessageNotFoundError, alice.remove_message(UNKNOWN))
    sent = await alice.send_message(alice.lobby_id, "to be removed")
    await alice.remove_message(sent["messageId"])
    await expect(AlreadyRemovedError, alice.remove_message(sent["messageId"]))

    # Documents.
    await expect(DocumentNotFoundError, alice.get_doc("no-such-document"))
    await expect(ReadOnlyDocumentError, admin.update_doc("participant", "nope"))

    # The room limit, on a server that allows one room.
    small = start_server(tmp_path, {"maxRooms": 1})
    try:
        async with BroodLinkClient(url=small.url, api_key=small.controller_key) as client:
            await client.create_room("the only one")
            await expect(RoomLimitError, client.create_room("one too many"))
    finally:
        small.stop()

    # Rate and connection limits, on a server with tiny ones.
    limits = {"sendsPerSecond": 0.5, "sendBurst": 1, "maxConnectionsPerAgent": 1}
    limited = start_server(tmp_path / "limited", {"limits": limits})
    try:
        async with BroodLinkClient(url=limited.url, api_key=limited.controller_key) as client:
            await client.send_message(client.lobby_id, "within the burst")
            rate_limited = await expect(RateLimitedError, client.send_message(client.lobby_id, "one too many"))
            assert rate_limited.data == {"retryAfterMs": rate_limited.retry_after_ms}
            assert rate_limited.retry_after_ms is not None and 0 < rate_limited.retry_after_ms <= 2000
            await expect(ConnectionLimitError, BroodLinkClient(url=limited.url, api_key=limited.controller_key).connect())
    finally:
        limited.stop()

    assert set(raised) == {int(code) for code in ErrorCode}
    assert set(ERROR_CLASSES) == {int(code) for code in ErrorCode}


def test_error_classes() -> None:
    for code, error_class in ERROR_CLASSES.items():
        assert issubclass(error_class, BroodLinkError)
        assert error_class.CODE == code == ErrorCode(code)
        error = BroodLinkError.from_payload({"code": code, "message": "m", "data": [1]})
        assert type(error) is error_class
        assert (error.code, error.message, error.data) == (code, "m", [1])
        assert str(error) == f"m ({code})"
    assert BroodLinkError.from_payload({"code": 4080, "message": "m", "data": {"retryAfterMs": 250}}).retry_after_ms == 250
    assert BroodLinkError.from_payload({"code": 4080, "message": "m"}).retry_after_ms is None
    unknown = BroodLinkError.from_payload({"code": 4999, "message": "new"})
    assert type(unknown) is BroodLinkError and unknown.code == 4999
    assert ErrorCode.ROOM_NOT_FOUND == 4010 and RoomNotFoundError.TITLE == "Room Not Found"
