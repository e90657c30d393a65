"""Request timeouts. The real server answers every request, so this one test uses a stub
WebSocket server that answers `auth` and the client's own `room.history` probe at once,
`room.list` only after a delay, and `lobby.getMotd` at once."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from broodlink_client import BroodLinkClient, BroodLinkTimeoutError

AUTH_RESULT = {
    "status": "ok",
    "agentId": "a",
    "role": "participant",
    "displayName": "Stub",
    "lobby": {"roomId": "lobby", "name": "Lobby"},
    "motd": None,
}


async def stub(ws: ServerConnection) -> None:
    async def answer(request: dict[str, Any], result: Any, delay: float = 0.0) -> None:
        await asyncio.sleep(delay)
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}))

    late: list[asyncio.Task[None]] = []
    async for frame in ws:
        request = json.loads(frame)
        method = request["method"]
        if method == "auth":
            await answer(request, AUTH_RESULT)
        elif method == "room.history":
            await answer(request, {"messages": [], "hasMore": False})
        elif method == "room.list":
            late.append(asyncio.create_task(answer(request, {"rooms": []}, delay=0.5)))
        elif method == "lobby.getMotd":
            await answer(request, {"motd": "still here"})
    await asyncio.gather(*late, return_exceptions=True)


async def test_request_timeout() -> None:
    async with serve(stub, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        client = BroodLinkClient(url=f"ws://127.0.0.1:{port}", api_key="bl_k_stub", request_timeout=0.2)
        async with client:
            started = time.monotonic()
            with pytest.raises(BroodLinkTimeoutError, match="room.list"):
                await client.list_rooms()
            assert 0.15 < time.monotonic() - started < 0.5
            # The late answer to the timed-out call is dropped; the connection goes on.
            await asyncio.sleep(0.4)
            assert (await client.get_motd()) == {"motd": "still here"}
            assert client.connected
