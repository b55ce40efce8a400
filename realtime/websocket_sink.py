"""WebSocket sink: every event as JSON to any number of (browser) clients.

Each event becomes one text frame holding :func:`~onbeat.realtime.events.event_to_dict` as
compact JSON (``{"type": "beat", "sample_index": ..., "time_s": ..., "emitted_s": ..., ...}``).
The server is a ``websockets`` asyncio server on its own thread and event loop. ``handle`` only
serialises the event and hands it to that loop; every client has a bounded queue, and a client
whose queue fills up (it reads too slowly, or not at all) is dropped, never waited for. Browser
code::

    const ws = new WebSocket("ws://127.0.0.1:8765");
    ws.onmessage = (m) => { const e = JSON.parse(m.data); if (e.type === "beat") flash(e); };
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

from onbeat.realtime.errors import ConfigError, OnbeatError
from onbeat.realtime.events import Event, event_to_dict
from onbeat.realtime.validation import split_host_port
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

__all__ = ["WebSocketConfig", "WebSocketSink", "parse_ws_address"]

log = logging.getLogger(__name__)


def _check(key: str, value: Any, lo: int, hi: int) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or not lo <= value <= hi:
        raise ConfigError(f"{key} = {value!r} is invalid: must be an integer in [{lo}, {hi}]")


@dataclass(frozen=True, slots=True)
class WebSocketConfig:
    """The WebSocket server.

    Parameters
    ----------
    host : str
        Interface to listen on (``0.0.0.0`` for every interface).
    port : int
        TCP port (0 picks a free one, for tests).
    queue_size : int
        Messages queued per client; a client that falls this far behind is dropped.
    send_buffer_bytes : int
        Kernel send buffer per client, which bounds the memory a stalled client holds (and how
        soon it is noticed); 0 leaves the system default.
    """

    section: ClassVar[str] = "websocket"
    host: str = "127.0.0.1"
    port: int = 8765
    queue_size: int = 256
    send_buffer_bytes: int = 65536

    def __post_init__(self) -> None:
        s = self.section
        if not isinstance(self.host, str) or not self.host or " " in self.host:
            raise ConfigError(f"{s}.host = {self.host!r} is invalid: must be a host or address")
        _check(f"{s}.port", self.port, 0, 65535)
        _check(f"{s}.queue_size", self.queue_size, 1, 1_000_000)
        if self.send_buffer_bytes != 0:
            _check(f"{s}.send_buffer_bytes", self.send_buffer_bytes, 4096, 64 << 20)


def parse_ws_address(text: str, *, queue_size: int = 256) -> WebSocketConfig:
    """Parse ``--ws [HOST:]PORT`` (``8765``, ``0.0.0.0:8765``, ``[::1]:8765``).

    Raises
    ------
    ConfigError
        Naming the flag and what is wrong.
    """
    where = f"--ws {text!r}"
    host, port = split_host_port(text, where)
    try:
        return WebSocketConfig(host=host, port=port, queue_size=queue_size)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _finite_or_none(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, list | tuple):
        return [_finite_or_none(x) for x in v]
    return v


def _to_json(event: Event) -> str:
    """Compact JSON of an event; NaN and infinities (not JSON, browsers refuse them) become null."""
    d = event_to_dict(event)
    try:
        return json.dumps(d, separators=(",", ":"), allow_nan=False)
    except ValueError:
        clean = {k: _finite_or_none(v) for k, v in d.items()}
        return json.dumps(clean, separators=(",", ":"), allow_nan=False)


class WebSocketSink:
    """Broadcasts every event as JSON to every connected WebSocket client.

    The server starts listening in the constructor, on its own daemon thread.

    Parameters
    ----------
    config : WebSocketConfig
        Where to listen and the per-client bounds.
    name : str
        Sink name on the bus.

    Attributes
    ----------
    connections : int
        Clients that ever connected.
    dropped_clients : int
        Clients dropped for falling behind.
    sent : int
        Messages handed to client connections (summed over clients).

    Raises
    ------
    OnbeatError
        When the port cannot be bound.
    """

    START_TIMEOUT_S: ClassVar[float] = 5.0

    def __init__(self, config: WebSocketConfig, *, name: str = "websocket") -> None:
        self.config = config
        self.name = name
        self.connections = 0
        self.dropped_clients = 0
        self.sent = 0
        self._clients: dict[ServerConnection, asyncio.Queue[str]] = {}
        self._n_clients = 0
        self._outbox: deque[str] = deque()
        self._flush_pending = False
        self._closing = False
        self._last_log = -math.inf
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._port = 0
        self._thread = threading.Thread(target=self._run, name=f"sink-{name}-ws", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.START_TIMEOUT_S):
            raise OnbeatError(f"WebSocket server on {config.host}:{config.port} did not start")
        if self._error is not None:
            err = self._error
            msg = getattr(err, "strerror", None) or str(err)
            raise OnbeatError(
                f"cannot listen for WebSocket clients on {config.host}:{config.port}: {msg}"
            )

    # ------------------------------------------------------------------ public
    @property
    def port(self) -> int:
        """The bound TCP port."""
        return self._port

    @property
    def clients(self) -> int:
        """Clients connected now."""
        return self._n_clients

    @property
    def alive(self) -> bool:
        """Whether the server thread runs."""
        return self._thread.is_alive()

    def handle(self, event: Event) -> None:
        """Serialise one event and hand it to the server's loop.

        Real-time safety: one ``json.dumps`` and a thread-safe wake-up of the loop (at most one
        pending per batch); never waits for a client.
        """
        if self._n_clients == 0 or self._closing:
            return
        self._outbox.append(_to_json(event))
        if not self._flush_pending:
            self._flush_pending = True
            try:
                self._loop.call_soon_threadsafe(self._flush)
            except RuntimeError:  # the loop has closed
                self._outbox.clear()

    def tick(self) -> None:
        """Nothing periodic: the server's loop does the sending."""

    def close(self) -> None:
        """Close every connection and stop the server (idempotent)."""
        if self._closing:
            return
        self._closing = True
        if self._thread.is_alive() and self._stop is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass
            self._thread.join(5.0)

    # ------------------------------------------------------------------ server thread
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to the constructor
            self._error = exc
        finally:
            self._ready.set()
            try:
                self._loop.close()
            except RuntimeError:
                pass

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        c = self.config
        server: Server = await serve(
            self._serve_client,
            c.host,
            c.port,
            compression=None,  # small JSON frames; deflate would cost CPU per client
            close_timeout=1.0,
            max_size=4096,  # clients have nothing to say
            max_queue=4,
        )
        self._port = int(server.sockets[0].getsockname()[1])
        log.info("WebSocket events on ws://%s:%d", c.host, self._port)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            try:
                await asyncio.wait_for(server.wait_closed(), 3.0)
            except TimeoutError:
                pass

    def _flush(self) -> None:
        """Fan queued messages out to every client queue (loop thread)."""
        self._flush_pending = False
        outbox = self._outbox
        while outbox:
            text = outbox.popleft()
            for ws, queue in list(self._clients.items()):
                try:
                    queue.put_nowait(text)
                except asyncio.QueueFull:
                    self._drop(ws, "fell behind")

    def _drop(self, ws: ServerConnection, why: str) -> None:
        if self._clients.pop(ws, None) is None:
            return
        self._n_clients = len(self._clients)
        self.dropped_clients += 1
        now = time.monotonic()
        if now - self._last_log >= 1.0:
            self._last_log = now
            log.warning(
                "WebSocket client %s dropped: %s (%d dropped so far)",
                ws.remote_address,
                why,
                self.dropped_clients,
            )
        ws.transport.abort()

    async def _serve_client(self, ws: ServerConnection) -> None:
        c = self.config
        if c.send_buffer_bytes:
            sock = ws.transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, c.send_buffer_bytes)
                except OSError:
                    pass
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=c.queue_size)
        self._clients[ws] = queue
        self._n_clients = len(self._clients)
        self.connections += 1
        log.info("WebSocket client %s connected", ws.remote_address)
        sender = asyncio.create_task(self._send_loop(ws, queue))
        try:
            async for _ in ws:  # clients have nothing to say; read so pings and closes flow
                pass
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            if self._clients.pop(ws, None) is not None:
                self._n_clients = len(self._clients)
            try:
                await sender
            except (asyncio.CancelledError, ConnectionClosed):
                pass

    async def _send_loop(self, ws: ServerConnection, queue: asyncio.Queue[str]) -> None:
        while True:
            text = await queue.get()
            await ws.send(text)
            self.sent += 1
