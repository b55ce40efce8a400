"""A real OSC receiver on loopback for the tests, stamped with the kernel's arrival time.

It is python-osc's own UDP server (``BlockingOSCUDPServer``) on 127.0.0.1, serving on one
thread, with python-osc parsing every datagram (messages and bundles). Each datagram is stamped
with the time the kernel received it (``SO_TIMESTAMPNS``), converted to ``time.monotonic``: the
stamp says when the message was on the wire, whatever the test process's own threads were doing.
A receiver that stamps in a Python handler thread (``ThreadingOSCUDPServer`` starts one per
datagram) adds its own scheduling delay under CPU load, which made timing tests flaky in CI while
the sender was on time (measured: every beat left the sink within 1 ms of its due time, yet one
arrived 60 ms late in the handler).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_message import OscMessage
from pythonosc.osc_packet import OscPacket
from pythonosc.osc_server import BlockingOSCUDPServer

#: ``SO_TIMESTAMPNS`` on Linux (the socket module has no name for it): a ``struct timespec`` of
#: CLOCK_REALTIME arrives as ancillary data with every datagram.
_SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("qq")


@dataclass(frozen=True)
class Msg:
    """One received OSC message: arrival time (``time.monotonic`` seconds), address, type tags
    (without the leading comma) and arguments."""

    t: float
    address: str
    tags: str
    args: tuple[Any, ...]


def typetags(dgram: bytes) -> str:
    """The OSC type tag string of a message datagram, without the leading comma."""
    end = dgram.index(b"\0")
    start = (end + 4) & ~3
    tags = dgram[start : dgram.index(b"\0", start)].decode()
    assert tags.startswith(",")
    return tags[1:]


class _KernelStampedServer(BlockingOSCUDPServer):
    """Receives with ``recvmsg`` and records ``(arrival, datagram)`` instead of dispatching."""

    def __init__(self, port: int, rcvbuf: int, record: Callable[[float, bytes], None]) -> None:
        super().__init__(("127.0.0.1", port), Dispatcher())
        self._record = record
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            self.kernel_stamps = True
        except OSError:  # not Linux: stamp in the serving thread
            self.kernel_stamps = False

    def get_request(self) -> tuple[tuple[bytes, float], Any]:
        data, anc, _flags, addr = self.socket.recvmsg(
            self.max_packet_size, socket.CMSG_SPACE(_TIMESPEC.size)
        )
        now_mono, now_real = time.monotonic(), time.time()
        t = now_mono
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                sec, nsec = _TIMESPEC.unpack(raw[: _TIMESPEC.size])
                t = now_mono - (now_real - (sec + nsec * 1e-9))
        return (data, t), addr

    def process_request(self, request: Any, client_address: Any) -> None:
        data, t = request
        self._record(t, data)


class OscReceiver:
    """A python-osc UDP server on 127.0.0.1 recording every message it receives.

    Parameters
    ----------
    port : int
        UDP port (0: any free one; :attr:`port` tells which).
    rcvbuf : int
        Socket receive buffer (bytes): a fast replay sends in bursts.
    """

    def __init__(self, port: int = 0, rcvbuf: int = 4 << 20) -> None:
        self._lock = threading.Lock()
        self._stamps: list[tuple[float, bytes]] = []
        self.server = _KernelStampedServer(port, rcvbuf, self._record)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _record(self, t: float, data: bytes) -> None:
        with self._lock:
            self._stamps.append((t, data))

    def messages(self) -> list[Msg]:
        """Every message so far, in arrival order (bundles unpacked)."""
        with self._lock:
            stamps = list(self._stamps)
        out = []
        for t, dgram in stamps:
            for timed in OscPacket(dgram).messages:
                m: OscMessage = timed.message
                out.append(Msg(t, m.address, typetags(m.dgram), tuple(m.params)))
        return out

    def of(self, address: str) -> list[Msg]:
        """The messages sent to ``address``."""
        return [m for m in self.messages() if m.address == address]

    def wait_for(self, done: Callable[[list[Msg]], bool], timeout_s: float) -> bool:
        """Poll until ``done(messages)`` holds or ``timeout_s`` passes; whether it held."""
        deadline = time.monotonic() + timeout_s
        while True:
            if done(self.messages()):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(2)

    def __enter__(self) -> OscReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
