"""The hand-written runtime of the BroodLink Python client.

It holds everything that is not derived from the protocol: the connection and its
authentication, request/response matching, request timeouts, event dispatch,
auto-reconnect with catch-up on missed messages, and re-sending idempotent calls (those
carrying a ``clientMsgId``) that a dropped connection left without a response. The typed methods (``client.py``),
the types (``types.py``) and the error classes (``errors.py``) are generated from the
protocol crate by ``cargo xtask codegen``.

This file is copied verbatim from ``codegen/templates/python/_runtime.py``: edit it
there, then run ``cargo xtask codegen``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal, Self, TypedDict

from websockets.asyncio.client import ClientConnection, connect as _ws_connect
from websockets.exceptions import ConnectionClosed, WebSocketException

__all__ = [
    "DEFAULT_URL",
    "DEFAULT_REQUEST_TIMEOUT",
    "BroodLinkClientBase",
    "BroodLinkConnectionError",
    "BroodLinkError",
    "BroodLinkTimeoutError",
    "CatchAllHandler",
    "ReconnectedEvent",
    "ReconnectedHandler",
]

logger = logging.getLogger("broodlink_client")

#: Used when neither ``url=`` nor ``BROODLINK_URL`` is given.
DEFAULT_URL: Final = "ws://localhost:18800"
#: Seconds a call waits for its response (and, while reconnecting, for the connection).
DEFAULT_REQUEST_TIMEOUT: Final = 30.0
#: Messages fetched per ``room.history`` page while catching up after a reconnect.
CATCH_UP_PAGE: Final = 100
#: ``auth`` errors after which reconnecting is pointless: 4002 Auth Failed, 4004 Agent Banned.
_FATAL_AUTH_CODES: Final = frozenset({4002, 4004})
#: ``room.join`` errors meaning the room cannot be rejoined (gone, or no invitation any more).
_ROOM_GONE_CODES: Final = frozenset({4010, 4011, 4013})
_ALREADY_A_MEMBER: Final = 4012

_State = Literal["idle", "connecting", "ready", "reconnecting", "disconnected", "closed"]


class BroodLinkError(Exception):
    """An error response from the server: ``code``, ``message`` and optional ``data``.

    Each protocol error code has its own subclass (``errors.py``): catch
    ``RoomNotFoundError``, or catch ``BroodLinkError`` and look at ``code``.
    """

    #: The code this class stands for (``None`` on the base class).
    CODE: ClassVar[int | None] = None
    #: The code's name, e.g. ``"Room Not Found"``.
    TITLE: ClassVar[str] = "BroodLink Error"
    #: The server's usual message for the code.
    DEFAULT_MESSAGE: ClassVar[str] = ""
    _by_code: ClassVar[dict[int, type[BroodLinkError]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        code = cls.__dict__.get("CODE")
        if isinstance(code, int):
            BroodLinkError._by_code[code] = cls

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} ({code})")
        self.code: int = code
        self.message: str = message
        self.data: Any = data

    @property
    def retry_after_ms(self) -> int | None:
        """For 4080 Rate Limited: after how many milliseconds the call would be accepted
        (``data["retryAfterMs"]``); ``None`` when the error does not say."""
        value = self.data.get("retryAfterMs") if isinstance(self.data, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @classmethod
    def from_payload(cls, error: Any) -> BroodLinkError:
        """The error (of the subclass for its code) described by a JSON-RPC ``error`` object."""
        if not isinstance(error, dict):
            return BroodLinkError(-32603, f"malformed error response: {error!r}")
        raw_code = error.get("code")
        code = raw_code if isinstance(raw_code, int) else -32603
        message = error.get("message")
        error_class = BroodLinkError._by_code.get(code, BroodLinkError)
        return error_class(code, message if isinstance(message, str) else "", error.get("data"))


class BroodLinkConnectionError(ConnectionError):
    """The client is not connected (never connected, closed, or the connection was lost
    and did not come back within the request timeout), or the connection dropped while a
    call was waiting for its response."""


class BroodLinkTimeoutError(TimeoutError):
    """No response arrived within the request timeout. The server may still have done the
    call: a ``send_message``/``send_dm`` retried with the same ``client_msg_id`` is done at
    most once."""


class ReconnectedEvent(TypedDict):
    """Payload of the client's ``reconnected`` hook, emitted after a reconnect completed."""

    #: How many attempts the reconnect took.
    attempts: int
    #: The rooms the client is a member of again (it rejoined them, or was still in them).
    rooms: list[str]
    #: How many missed messages were delivered to the handlers while catching up.
    missed: int


#: A handler for one event: called with the event's payload; may be ``async``.
EventHandler = Callable[[Any], object]
#: A catch-all handler (``on("*", ...)``): called with the event name and its payload.
CatchAllHandler = Callable[[str, dict[str, Any]], object]
#: A handler for the ``reconnected`` hook.
ReconnectedHandler = Callable[[ReconnectedEvent], object]

#: What the dispatcher queue holds: (event name, payload, is it a server event).
_Item = tuple[str, Any, bool]


@dataclass(eq=False)
class _Call:
    """A request waiting for its response."""

    method: str
    params: dict[str, Any]
    future: asyncio.Future[Any]
    #: The call is idempotent (it carries its idempotency key): when the connection drops
    #: before the response, it waits for the reconnect and is re-sent with the same params
    #: instead of failing.
    resend: bool = False


class BroodLinkClientBase:
    """Connection, authentication, request matching, event dispatch and auto-reconnect.

    Use the generated subclass ``BroodLinkClient``, which adds a typed method per RPC
    method and typed ``on()`` overloads.
    """

    #: The methods whose params include the idempotency key ``_IDEMPOTENCY_KEY``
    #: (``clientMsgId``). The generated subclass sets both from the protocol. ``_call``
    #: fills the key with a fresh UUID when the caller gives none, and such a call survives
    #: a reconnect: it is re-sent with the same key, so the server does it once.
    _IDEMPOTENT_METHODS: ClassVar[frozenset[str]] = frozenset()
    _IDEMPOTENCY_KEY: ClassVar[str] = ""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        display_name: str | None = None,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        connect_timeout: float = 10.0,
        auto_reconnect: bool = True,
        reconnect_initial_delay: float = 0.5,
        reconnect_max_delay: float = 30.0,
        reconnect_max_attempts: int | None = None,
    ) -> None:
        """Configure a client; nothing connects until ``connect()`` / ``async with``.

        Args:
            url: The server, e.g. ``ws://host:18800``. Default: ``$BROODLINK_URL``, else
                ``ws://localhost:18800``.
            api_key: The agent's API key. Default: ``$BROODLINK_API_KEY``.
            display_name: A display name for this session instead of the registered one
                (kept across reconnects).
            request_timeout: Seconds a call waits for its response, and at most for the
                connection to come back while reconnecting.
            connect_timeout: Seconds to open the WebSocket.
            auto_reconnect: Reconnect when the connection drops (default ``True``).
            reconnect_initial_delay: Delay before the first reconnect attempt; it doubles
                after each failed attempt (with jitter) ...
            reconnect_max_delay: ... up to this many seconds.
            reconnect_max_attempts: Give up after this many failed attempts (default: never).
        """
        resolved_url = url or os.environ.get("BROODLINK_URL") or DEFAULT_URL
        resolved_key = api_key or os.environ.get("BROODLINK_API_KEY")
        if not resolved_key:
            raise ValueError("no API key: pass api_key=... or set BROODLINK_API_KEY")
        if request_timeout <= 0 or connect_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if reconnect_initial_delay < 0 or reconnect_max_delay < reconnect_initial_delay:
            raise ValueError("need 0 <= reconnect_initial_delay <= reconnect_max_delay")
        self.url: str = resolved_url
        self.request_timeout: float = request_timeout
        self.connect_timeout: float = connect_timeout
        self.auto_reconnect: bool = auto_reconnect
        self.reconnect_initial_delay: float = reconnect_initial_delay
        self.reconnect_max_delay: float = reconnect_max_delay
        self.reconnect_max_attempts: int | None = reconnect_max_attempts
        self._api_key = resolved_key
        self._display_name_override = display_name

        self._handlers: dict[str, list[Callable[..., object]]] = {}
        self._state: _State = "idle"
        self._ws: ClientConnection | None = None
        self._auth: dict[str, Any] | None = None
        self._next_id = 0
        self._pending: dict[int, _Call] = {}
        # Idempotent calls the last connection lost before their responses, in the order
        # they were sent: re-sent after the reconnect (see _resend).
        self._outbox: list[_Call] = []
        self._ready: asyncio.Future[None] | None = None
        self._lost_reason = "not connected"
        self._reconnect_allowed = True
        self._reader_task: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        # Catch-up bookkeeping (see _resume).
        self._joined: set[str] = set()
        self._last_seq: dict[str, int] = {}
        self._sent_seqs: dict[str, set[int]] = {}
        self._high_water = 0
        self._catching_up = False
        self._buffer: list[tuple[str, dict[str, Any]]] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} url={self.url!r} state={self._state}>"

    # ---------------------------------------------------------------- session state

    def _authed(self) -> dict[str, Any]:
        if self._auth is None:
            raise RuntimeError("not connected yet: call connect() (or use `async with client`) first")
        return self._auth

    @property
    def agent_id(self) -> str:
        """This agent's id (after connecting)."""
        return str(self._authed()["agentId"])

    @property
    def role(self) -> str:
        """``"controller"`` or ``"participant"`` (after connecting)."""
        return str(self._authed()["role"])

    @property
    def is_controller(self) -> bool:
        """Whether this agent is the controller."""
        return self.role == "controller"

    @property
    def is_participant(self) -> bool:
        """Whether this agent is a participant."""
        return self.role == "participant"

    @property
    def display_name(self) -> str:
        """The display name of this session (after connecting)."""
        return str(self._authed()["displayName"])

    @property
    def lobby_id(self) -> str:
        """The lobby's room id (also where DMs are stored)."""
        return str(self._authed()["lobby"]["roomId"])

    @property
    def lobby_name(self) -> str:
        """The lobby's display name."""
        return str(self._authed()["lobby"]["name"])

    @property
    def motd(self) -> str | None:
        """The message of the day: from ``auth``, kept current by ``lobby.motd`` events."""
        value = self._authed().get("motd")
        return value if isinstance(value, str) else None

    @property
    def connected(self) -> bool:
        """Whether the client is connected and authenticated right now."""
        return self._state == "ready"

    @property
    def joined_rooms(self) -> frozenset[str]:
        """The rooms joined (or created) through this client, rejoined after a reconnect."""
        return frozenset(self._joined)

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the WebSocket and authenticate; returns once ``auth`` succeeded.

        Raises ``BroodLinkConnectionError`` if the server cannot be reached, and the
        ``auth`` error (``AuthFailedError``, ``AgentBannedError``) if the key is refused.
        The first connection is not retried; later drops are (``auto_reconnect``).
        """
        if self._state == "ready":
            return
        if self._state in ("connecting", "reconnecting"):
            raise RuntimeError("connect() is already in progress")
        self._reset_session()
        if self._dispatcher is None or self._dispatcher.done():
            self._queue = asyncio.Queue()  # events received from here on wait for the dispatcher
        self._state = "connecting"
        self._ready = asyncio.get_running_loop().create_future()
        try:
            await self._open()
            # The lobby's newest seq: where catching up in the lobby starts after a drop.
            await self._probe(self.lobby_id, strict=True)
        except BaseException as error:
            self._state = "idle"
            self._settle_ready(BroodLinkConnectionError(f"connecting to {self.url} failed: {error}"))
            await self._drop_socket()
            raise
        self._state = "ready"
        self._settle_ready(None)
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="broodlink-dispatch")

    async def close(self) -> None:
        """Close the connection and stop reconnecting. Calls still waiting fail with
        ``BroodLinkConnectionError``; events already received are still delivered."""
        if self._state in ("idle", "closed"):
            return
        self._state = "closed"
        self._lost_reason = "the client is closed"
        self._settle_ready(BroodLinkConnectionError("the client is closed"))
        current = asyncio.current_task()
        task = self._reconnect_task
        self._reconnect_task = None
        if task is not None and task is not current and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._drop_socket()
        self._fail_pending(BroodLinkConnectionError("the client is closed"))
        self._fail_outbox(BroodLinkConnectionError("the client is closed"))
        dispatcher = self._dispatcher
        self._dispatcher = None
        if dispatcher is not None and not dispatcher.done():
            self._queue.put_nowait(None)
            if dispatcher is not current:
                try:
                    await asyncio.wait_for(asyncio.shield(dispatcher), self.request_timeout)
                except TimeoutError:
                    logger.warning("an event handler is still running after %ss; cancelling it", self.request_timeout)
                    dispatcher.cancel()
                    await asyncio.gather(dispatcher, return_exceptions=True)

    def _reset_session(self) -> None:
        self._auth = None
        self._reconnect_allowed = True
        self._lost_reason = "not connected"
        self._joined.clear()
        self._last_seq.clear()
        self._sent_seqs.clear()
        self._high_water = 0
        self._catching_up = False
        self._buffer.clear()

    # ---------------------------------------------------------------- events

    def _on(self, event: str, handler: Callable[..., object] | None) -> Any:
        """Registers ``handler`` for ``event`` (or returns a decorator that does)."""
        if handler is None:

            def decorator(function: Callable[..., object]) -> Callable[..., object]:
                self._handlers.setdefault(event, []).append(function)
                return function

            return decorator
        self._handlers.setdefault(event, []).append(handler)
        return handler

    def off(self, event: str, handler: Callable[..., object]) -> None:
        """Unregister a handler registered with ``on(event, ...)``."""
        handlers = self._handlers.get(event, [])
        if handler in handlers:
            handlers.remove(handler)

    def _enqueue(self, name: str, payload: Any, server_event: bool = True) -> None:
        self._queue.put_nowait((name, payload, server_event))

    async def _dispatch_loop(self) -> None:
        """Delivers events to handlers one at a time, in the order they arrived, away
        from the reader: a handler may await calls on this client."""
        queue = self._queue
        while True:
            item = await queue.get()
            if item is None:
                return
            name, payload, server_event = item
            for handler in list(self._handlers.get(name, ())):
                await self._invoke(name, handler, payload)
            if server_event:
                for handler in list(self._handlers.get("*", ())):
                    await self._invoke(name, handler, name, payload)

    @staticmethod
    async def _invoke(name: str, handler: Callable[..., object], *args: Any) -> None:
        try:
            result = handler(*args)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("a handler for %r raised", name)

    # ---------------------------------------------------------------- requests

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        """Sends a request once connected (waiting for a reconnect, up to the request
        timeout) and returns its result, or raises the error the server answered.

        A call of an idempotent method gets a fresh UUID as its idempotency key unless the
        caller gave one, and is re-sent with it if the connection drops before the response
        (``_on_connection_lost``, ``_resend``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout
        resend = method in self._IDEMPOTENT_METHODS
        if resend and params.get(self._IDEMPOTENCY_KEY) is None:
            params = {**params, self._IDEMPOTENCY_KEY: str(uuid.uuid4())}
        await self._wait_ready(deadline)
        result = await self._request(method, params, deadline - loop.time(), resend=resend)
        await self._after_call(method, params, result)
        return result

    async def _wait_ready(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            state = self._state
            if state == "ready":
                return
            ready = self._ready
            if state in ("connecting", "reconnecting") and ready is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise BroodLinkConnectionError(
                        f"not connected to {self.url}: the connection did not come back "
                        f"within {self.request_timeout}s"
                    )
                try:
                    await asyncio.wait_for(asyncio.shield(ready), remaining)
                except TimeoutError:
                    raise BroodLinkConnectionError(
                        f"not connected to {self.url}: the connection did not come back "
                        f"within {self.request_timeout}s"
                    ) from None
                except BroodLinkConnectionError as error:
                    raise BroodLinkConnectionError(str(error)) from error
                continue
            if state == "idle":
                raise BroodLinkConnectionError("not connected: call connect() (or use `async with client`) first")
            raise BroodLinkConnectionError(f"not connected to {self.url}: {self._lost_reason}")

    async def _request(
        self, method: str, params: dict[str, Any], timeout: float | None = None, *, resend: bool = False
    ) -> Any:
        """Sends one request on the current connection and waits for its response (with
        ``resend``, across reconnects: see ``_Call.resend``)."""
        ws = self._ws
        if ws is None:
            raise BroodLinkConnectionError(f"not connected to {self.url}: {self._lost_reason}")
        timeout = self.request_timeout if timeout is None else timeout
        self._next_id += 1
        request_id = self._next_id
        call = _Call(method, params, asyncio.get_running_loop().create_future(), resend)
        self._pending[request_id] = call
        try:
            frame = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
            try:
                await ws.send(frame)
            except ConnectionClosed as error:
                if not resend:
                    raise BroodLinkConnectionError(f"connection to {self.url} lost while sending {method}") from error
                # The reader sees the same close: it queues this call to be re-sent after
                # the reconnect, or fails it.
            try:
                return await asyncio.wait_for(call.future, max(timeout, 0.0))
            except TimeoutError:
                raise BroodLinkTimeoutError(
                    f"{method}: no response within {self.request_timeout}s"
                ) from None
        finally:
            self._pending.pop(request_id, None)
            if call in self._outbox:  # timed out (or cancelled) while waiting to be re-sent
                self._outbox.remove(call)

    def _fail_pending(self, error: Exception, keep_resendable: bool = False) -> None:
        """Fails every call waiting for a response on the connection; with
        ``keep_resendable``, the idempotent ones move to the outbox instead."""
        pending = list(self._pending.values())
        self._pending.clear()
        for call in pending:
            if call.future.done():
                continue
            if keep_resendable and call.resend:
                self._outbox.append(call)
            else:
                call.future.set_exception(BroodLinkConnectionError(str(error)))

    def _fail_outbox(self, error: Exception) -> None:
        """Fails the calls waiting to be re-sent (the client closed or stopped reconnecting)."""
        outbox = self._outbox
        self._outbox = []
        for call in outbox:
            if not call.future.done():
                call.future.set_exception(BroodLinkConnectionError(str(error)))

    async def _after_call(self, method: str, params: dict[str, Any], result: Any) -> None:
        """Tracks what reconnecting needs: joined rooms and the messages this client sent
        (the server does not echo them back to the sending connection)."""
        if not isinstance(result, dict):
            return
        if method == "room.join" or method == "room.takeOwnership":
            room_id = str(params["roomId"])
            self._joined.add(room_id)
            await self._probe(room_id)
        elif method == "room.create":
            room_id = str(result["room"]["roomId"])
            self._joined.add(room_id)
            self._last_seq.setdefault(room_id, 0)
        elif method == "room.leave" or method == "room.delete":
            self._forget_room(str(params["roomId"]))
        elif method == "message.send" or method == "message.dm":
            room_id = str(params["roomId"]) if method == "message.send" else self.lobby_id
            seq = result.get("seq")
            if isinstance(seq, int):
                self._sent_seqs.setdefault(room_id, set()).add(seq)
                self._high_water = max(self._high_water, seq)

    async def _probe(self, room_id: str, strict: bool = False) -> None:
        """Records a room's newest seq, so catching up there starts after it."""
        try:
            page = await self._request("room.history", {"roomId": room_id, "limit": 1})
        except (BroodLinkError, BroodLinkConnectionError, BroodLinkTimeoutError) as error:
            if strict and not isinstance(error, BroodLinkError):
                raise
            logger.debug("cannot read the newest seq of room %s: %s", room_id, error)
            return
        newest = max((m["seq"] for m in page.get("messages", []) if isinstance(m.get("seq"), int)), default=0)
        self._advance(room_id, newest)

    def _forget_room(self, room_id: str) -> None:
        self._joined.discard(room_id)
        self._last_seq.pop(room_id, None)
        self._sent_seqs.pop(room_id, None)

    def _advance(self, room_id: str, seq: int) -> None:
        """Everything up to ``seq`` in this room was delivered (or predates the client)."""
        if seq >= self._last_seq.get(room_id, -1):
            self._last_seq[room_id] = seq
        self._high_water = max(self._high_water, seq)
        sent = self._sent_seqs.get(room_id)
        if sent:
            last = self._last_seq[room_id]
            sent.difference_update([s for s in sent if s <= last])

    # ---------------------------------------------------------------- the connection

    async def _open(self) -> None:
        """Opens a WebSocket, starts reading it, and authenticates."""
        try:
            ws = await _ws_connect(
                self.url,
                open_timeout=self.connect_timeout,
                close_timeout=5,
                max_size=None,
                compression=None,
            )
        except (OSError, WebSocketException, TimeoutError) as error:
            raise BroodLinkConnectionError(f"cannot connect to {self.url}: {error}") from error
        self._ws = ws
        self._reader_task = asyncio.create_task(self._read(ws), name="broodlink-reader")
        params: dict[str, Any] = {"apiKey": self._api_key}
        if self._display_name_override is not None:
            params["displayName"] = self._display_name_override
        self._auth = dict(await self._request("auth", params))

    async def _drop_socket(self) -> None:
        ws, reader = self._ws, self._reader_task
        self._ws = None
        self._reader_task = None
        if ws is not None:
            try:
                await ws.close()
            except Exception:  # already gone
                pass
        if reader is not None and reader is not asyncio.current_task():
            try:
                await asyncio.wait_for(reader, 5)
            except (TimeoutError, asyncio.CancelledError):
                pass
            except Exception:
                logger.debug("reader ended with an error", exc_info=True)

    async def _read(self, ws: ClientConnection) -> None:
        how = "connection lost"
        try:
            while True:
                frame = await ws.recv()
                if isinstance(frame, str):
                    self._on_frame(ws, frame)
        except ConnectionClosed as closed:
            if closed.rcvd is not None:
                how = f"connection closed by the server ({closed.rcvd.code} {closed.rcvd.reason})".strip()
        except Exception:
            logger.exception("reading from %s failed", self.url)
        finally:
            self._on_connection_lost(ws, how)

    def _on_frame(self, ws: ClientConnection, frame: str) -> None:
        if ws is not self._ws:
            return  # a connection being dropped
        try:
            decoded = json.loads(frame)
        except ValueError:
            logger.warning("ignoring a frame that is not JSON: %.200s", frame)
            return
        for item in decoded if isinstance(decoded, list) else [decoded]:
            if not isinstance(item, dict):
                continue
            if "id" in item and ("result" in item or "error" in item):
                self._on_response(item)
            elif isinstance(item.get("method"), str):
                params = item.get("params")
                self._on_event(item["method"], params if isinstance(params, dict) else {})

    def _on_response(self, response: dict[str, Any]) -> None:
        request_id = response.get("id")
        call = self._pending.get(request_id) if isinstance(request_id, int) else None
        future = call.future if call is not None else None
        if future is None:
            if "error" in response:
                logger.warning("error response without a matching request: %s", response["error"])
            return
        if future.done():
            return
        if "error" in response:
            future.set_exception(BroodLinkError.from_payload(response["error"]))
        else:
            future.set_result(response.get("result"))

    def _on_event(self, name: str, params: dict[str, Any]) -> None:
        if name in ("message", "dm"):
            if self._catching_up:
                self._buffer.append((name, params))
                return
            self._track(name, params)
        elif name == "disconnected":
            reason = str(params.get("reason", ""))
            self._lost_reason = f"disconnected by the server: {reason}"
            # ``retry`` is true when the server is shutting down (it will come back),
            # false when this agent was kicked, banned or revoked.
            if params.get("retry") is not True:
                self._reconnect_allowed = False
        elif name in ("kicked", "room.deleted"):
            self._forget_room(str(params.get("roomId")))
        elif name == "room.left":
            if self._auth is not None and params.get("agentId") == self._auth.get("agentId"):
                self._forget_room(str(params.get("roomId")))
        elif name == "lobby.motd" and self._auth is not None:
            self._auth["motd"] = params.get("content")
        self._enqueue(name, params)

    def _room_and_seq(self, name: str, params: dict[str, Any]) -> tuple[str, int]:
        if name == "message":
            message = params.get("message") or {}
            return str(params.get("roomId") or message.get("roomId")), int(message.get("seq", 0))
        return self.lobby_id, int(params.get("seq", 0))

    def _track(self, name: str, params: dict[str, Any]) -> None:
        room_id, seq = self._room_and_seq(name, params)
        self._advance(room_id, seq)

    def _on_connection_lost(self, ws: ClientConnection, how: str) -> None:
        if ws is not self._ws:
            return
        self._ws = None
        self._reader_task = None
        if self._reconnect_allowed:
            self._lost_reason = how
        will_reconnect = self._state == "ready" and self.auto_reconnect and self._reconnect_allowed
        self._fail_pending(BroodLinkConnectionError(f"connection to {self.url} lost"), keep_resendable=will_reconnect)
        if self._state != "ready":
            return  # connecting or reconnecting: the attempt fails and says so
        if will_reconnect:
            logger.info("connection to %s lost; reconnecting", self.url)
            self._state = "reconnecting"
            self._ready = asyncio.get_running_loop().create_future()
            self._reconnect_task = asyncio.create_task(self._reconnect_loop(), name="broodlink-reconnect")
        else:
            self._state = "disconnected"
            logger.info("connection to %s lost: %s", self.url, self._lost_reason)

    def _settle_ready(self, error: Exception | None) -> None:
        ready = self._ready
        if ready is None or ready.done():
            return
        if error is None:
            ready.set_result(None)
        else:
            ready.set_exception(error)
            ready.exception()  # retrieved: nobody may be waiting

    # ---------------------------------------------------------------- reconnecting

    def _backoff(self, attempt: int) -> float:
        delay = min(self.reconnect_max_delay, self.reconnect_initial_delay * 2.0 ** min(attempt - 1, 30))
        return delay * random.uniform(0.5, 1.0)

    async def _reconnect_loop(self) -> None:
        attempt = 0
        while self._state == "reconnecting":
            if not self._reconnect_allowed:
                self._give_up(self._lost_reason)
                return
            attempt += 1
            if self.reconnect_max_attempts is not None and attempt > self.reconnect_max_attempts:
                self._give_up(f"gave up reconnecting after {self.reconnect_max_attempts} attempts")
                return
            await asyncio.sleep(self._backoff(attempt))
            if self._state != "reconnecting":
                return
            try:
                rooms, missed = await self._resume()
            except BroodLinkError as error:
                if error.code in _FATAL_AUTH_CODES:
                    await self._drop_socket()
                    self._give_up(f"the server refused to re-authenticate: {error}")
                    return
                logger.warning("reconnect attempt %d failed: %s", attempt, error)
            except (BroodLinkConnectionError, BroodLinkTimeoutError) as error:
                logger.info("reconnect attempt %d failed: %s", attempt, error)
            except Exception:
                logger.exception("reconnect attempt %d failed", attempt)
            else:
                self._state = "ready"
                self._reconnect_task = None
                self._settle_ready(None)
                logger.info("reconnected to %s (%d missed messages)", self.url, missed)
                info: ReconnectedEvent = {"attempts": attempt, "rooms": rooms, "missed": missed}
                self._enqueue("reconnected", info, server_event=False)
                return
            await self._drop_socket()

    def _give_up(self, reason: str) -> None:
        logger.warning("not reconnecting to %s: %s", self.url, reason)
        self._lost_reason = reason
        self._state = "disconnected"
        self._reconnect_task = None
        self._settle_ready(BroodLinkConnectionError(f"not connected to {self.url}: {reason}"))
        self._fail_outbox(BroodLinkConnectionError(f"not connected to {self.url}: {reason}"))

    async def _resume(self) -> tuple[list[str], int]:
        """Reconnect, re-auth, rejoin, re-send the idempotent calls the drop left without
        a response, and deliver what was missed, exactly once.

        While catching up, live ``message``/``dm`` events are buffered; afterwards only
        those newer than what was delivered per room are passed on.
        """
        self._catching_up = True
        self._buffer.clear()
        await self._open()
        rooms = await self._rejoin()
        # Before catching up: the messages this client sent are then known as its own and
        # are not handed to its handlers as missed ones.
        await self._resend()
        missed = await self._catch_up()
        for name, params in self._buffer:
            room_id, seq = self._room_and_seq(name, params)
            if seq > self._last_seq.get(room_id, -1):
                self._advance(room_id, seq)
                self._enqueue(name, params)
        self._buffer.clear()
        self._catching_up = False
        return rooms, missed

    async def _rejoin(self) -> list[str]:
        rooms = []
        for room_id in sorted(self._joined):
            try:
                await self._request("room.join", {"roomId": room_id})
            except BroodLinkError as error:
                if error.code in _ROOM_GONE_CODES:
                    logger.warning("cannot rejoin room %s: %s", room_id, error)
                    self._forget_room(room_id)
                    continue
                if error.code != _ALREADY_A_MEMBER:
                    raise
            rooms.append(room_id)
        return rooms

    async def _resend(self) -> None:
        """Re-sends the outbox's calls, one at a time in their original order, each with its
        original params (so its original idempotency key): the server does each once, and
        answers a call it already did with the original result. The server's answer,
        result or error, settles the waiting caller. A connection error or timeout fails this
        reconnect attempt and leaves the rest for the next."""
        while self._outbox:
            call = self._outbox[0]
            if call.future.done():  # the caller gave up
                self._outbox.pop(0)
                continue
            error: BroodLinkError | None = None
            result: Any = None
            try:
                result = await self._request(call.method, call.params)
            except BroodLinkError as refused:
                error = refused
            if call in self._outbox:
                self._outbox.remove(call)
            if call.future.done():
                continue
            if error is not None:
                call.future.set_exception(error)
            else:
                # The caller's _call does this too (it is idempotent); catching up needs it now.
                await self._after_call(call.method, call.params, result)
                call.future.set_result(result)

    async def _catch_up(self) -> int:
        lobby = self.lobby_id
        me = self.agent_id
        rooms = [lobby] + sorted((set(self._last_seq) | self._joined) - {lobby})
        missed = 0
        for room_id in rooms:
            after = self._last_seq.get(room_id, self._high_water)
            while True:
                try:
                    page = await self._request(
                        "room.history", {"roomId": room_id, "afterSeq": after, "limit": CATCH_UP_PAGE}
                    )
                except BroodLinkError as error:
                    if error.code in _ROOM_GONE_CODES:
                        self._forget_room(room_id)
                        break
                    raise
                messages = [m for m in page.get("messages", []) if isinstance(m, dict)]
                for message in messages:
                    seq = int(message.get("seq", 0))
                    after = max(after, seq)
                    if seq <= self._last_seq.get(room_id, -1):
                        continue
                    sent = seq in self._sent_seqs.get(room_id, ())
                    self._advance(room_id, seq)
                    if sent:
                        continue
                    to_agent = message.get("toAgentId")
                    if to_agent is None:
                        self._enqueue("message", {"roomId": room_id, "message": message})
                        missed += 1
                    elif to_agent == me and message.get("senderId") != me:
                        self._enqueue("dm", _dm_from_message(message))
                        missed += 1
                if not page.get("hasMore") or not messages:
                    break
        return missed


def _dm_from_message(message: dict[str, Any]) -> dict[str, Any]:
    """The ``dm`` event the server would have sent for a DM read from the lobby's history."""
    return {
        "fromAgentId": message.get("senderId"),
        "fromDisplayName": message.get("senderName"),
        "toAgentId": message.get("toAgentId"),
        "content": message.get("content"),
        "messageId": message.get("messageId"),
        "timestamp": message.get("timestamp"),
        "seq": message.get("seq"),
    }
