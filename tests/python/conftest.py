"""Fixtures for the Python client's tests: the real `broodlink` binary on a temporary data
directory and a free port, and connected clients.

The binary is `$BROODLINK_BIN`, else `target/debug/broodlink` (run.sh builds it)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from broodlink_client import BroodLinkClient

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("BROODLINK_BIN") or REPO / "target" / "debug" / "broodlink")
KEY_LINE = re.compile(r"^\s+(bl_k_ctrl_[0-9a-f]{48})\s*$", re.M)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One `broodlink serve --foreground` process; restartable on the same data dir and port."""

    def __init__(self, data_dir: Path, config: dict[str, Any] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.controller_key = ""
        self.config_path: Path | None = None
        if config is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
            self.config_path = data_dir.parent / f"{data_dir.name}.json"
            self.config_path.write_text(json.dumps(config))
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        assert self.process is None, "already running"
        if not BINARY.exists():
            pytest.fail(f"{BINARY} does not exist: run `cargo build --bin broodlink` (or set BROODLINK_BIN)")
        self.starts += 1
        out = self.data_dir.parent / f"{self.data_dir.name}.stdout.{self.starts}"
        err = self.data_dir.parent / f"{self.data_dir.name}.stderr.{self.starts}"
        command = [
            str(BINARY), "serve", "--foreground", "--data-dir", str(self.data_dir),
            "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip
        if self.config_path is not None:
            command += ["--config", str(self.config_path)]
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            self.process = subprocess.Popen(command, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            text = out.read_text(errors="replace")
            if "BroodLink listening on" in text:
                if match := KEY_LINE.search(text):
                    self.controller_key = match.group(1)
                assert self.controller_key, f"no controller key in the first start's output:\n{text}"
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.01)
        self.stop(signal.SIGKILL)
        pytest.fail(f"the server did not start:\n{out.read_text(errors='replace')}\n{err.read_text(errors='replace')}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()


def start_server(directory: Path, config: dict[str, Any] | None = None) -> Server:
    server = Server(directory / "data", config)
    server.start()
    return server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server shared by the tests that do not restart it."""
    server = start_server(tmp_path_factory.mktemp("shared"))
    yield server
    server.stop()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    """A server for one test (which may stop and restart it)."""
    server = start_server(tmp_path)
    yield server
    server.stop(signal.SIGKILL)


class Proxy:
    """A TCP proxy in front of a server, for losing a frame on purpose: it can stop
    forwarding either direction (the bytes are dropped), cut every connection through it
    abruptly, and refuse new connections."""

    def __init__(self, upstream: Server) -> None:
        self.upstream = upstream
        self.port = 0
        self.url = ""
        #: Drop what clients send (requests never reach the server).
        self.drop_requests = False
        #: Drop what the server sends (responses and events never reach the client).
        self.drop_responses = False
        #: Close new connections at once.
        self.refuse = False
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.url = f"ws://127.0.0.1:{self.port}"
        return self

    def cut(self) -> None:
        """Aborts every connection through the proxy (both sides see a reset, no close frame)."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream.port)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, lambda: self.drop_requests)),
            asyncio.create_task(self._pump(up_reader, writer, lambda: self.drop_responses)),
        ]
        self._tasks.update(pumps)
        await asyncio.gather(*pumps, return_exceptions=True)
        self._tasks.difference_update(pumps)
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, dropping: Callable[[], bool]) -> None:
        try:
            while data := await source.read(65536):
                if not dropping() and not sink.transport.is_closing():
                    sink.write(data)
                    await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sink.transport.abort()


@pytest_asyncio.fixture
async def proxy(server: Server) -> AsyncIterator[Proxy]:
    """A proxy in front of the shared server."""
    proxy = await Proxy(server).start()
    yield proxy
    await proxy.close()




@pytest_asyncio.fixture
async def clients(server: Server) -> AsyncIterator[Clients]:
    """Makes connected clients on the shared server; closes them all afterwards."""
    factory = Clients(server)
    yield factory
    await factory.close_all()


class Clients:
    """Creates agents (through the controller) and connected clients for them."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.made: list[BroodLinkClient] = []
        self._controller: BroodLinkClient | None = None
        self._counter = 0

    async def controller(self, **options: Any) -> BroodLinkClient:
        client = BroodLinkClient(url=self.server.url, api_key=self.server.controller_key, **options)
        await client.connect()
        self.made.append(client)
        return client

    async def admin(self) -> BroodLinkClient:
        if self._controller is None:
            self._controller = await self.controller()
        return self._controller

    async def new_key(self, name: str) -> str:
        admin = await self.admin()
        self._counter += 1
        invited = await admin.invite_agent(f"{name} {self._counter}")
        return invited["apiKey"]

    async def participant(self, name: str = "agent", **options: Any) -> BroodLinkClient:
        key = await self.new_key(name)
        client = BroodLinkClient(url=self.server.url, api_key=key, **options)
        await client.connect()
        self.made.append(client)
        return client

    async def close_all(self) -> None:
        for client in self.made:
            await client.close()


class Recorder:
    """Collects the events a client's handlers receive, for waiting on them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self._changed = asyncio.Event()

    def record(self, name: str, payload: Any) -> None:
        self.events.append((name, payload))
        self._changed.set()

    def of(self, name: str) -> list[Any]:
        return [payload for event, payload in self.events if event == name]

    async def wait_for(
        self, name: str, predicate: Callable[[Any], bool] = lambda _: True, timeout: float = 5.0
    ) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for event, payload in self.events:
                if event == name and predicate(payload):
                    return payload
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                names = [event for event, _ in self.events]
                raise AssertionError(f"no {name!r} event matching within {timeout}s; got {names}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass
