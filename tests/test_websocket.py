"""WebSocket sink with real ``websockets`` clients on loopback (no mocks)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
from onbeat.realtime.bus import EventBus, SinkThread
from onbeat.realtime.errors import ConfigError, OnbeatError
from onbeat.realtime.events import BeatEvent, Event, LevelEvent, TagsEvent, event_to_dict
from onbeat.realtime.websocket_sink import WebSocketConfig, WebSocketSink, parse_ws_address
from websockets.asyncio.client import ClientConnection, connect

pytestmark = pytest.mark.timeout(60)


def _beat(i: int) -> BeatEvent:
    t = 0.5 * i
    return BeatEvent(round(t * 44100), t, t - 0.1, beat_index=i, beat_in_bar=i % 4 + 1,
                     bpm=120.0, confidence=0.9, phase=0.8, is_downbeat=i % 4 == 0, locked=True,
                     predicted=True)  # fmt: skip


def _tags(i: int) -> TagsEvent:
    """A large event (about 2 kB of JSON), to fill a stalled client's buffers quickly."""
    genre = tuple((f"genre-{k:03d}-{i}", 1.0 / (k + 1)) for k in range(60))
    return TagsEvent(i, float(i), float(i), genre=genre, mood_quadrant=(("Q1", 1.0),),
                     valence=0.1, arousal=0.2, voice=0.3, energy=0.4)  # fmt: skip


async def _wait(cond, timeout_s: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.01)
    return bool(cond())


async def _read(
    ws: ClientConnection, n: int, timeout_s: float = 10.0, out: list[dict] | None = None
) -> list[dict]:
    out = [] if out is None else out
    async with asyncio.timeout(timeout_s):
        while len(out) < n:
            out.append(json.loads(await ws.recv()))
    return out


def test_parse_ws_address() -> None:
    assert parse_ws_address("8765") == WebSocketConfig("127.0.0.1", 8765)
    assert parse_ws_address("0.0.0.0:9000").host == "0.0.0.0"
    assert parse_ws_address("[::1]:9000").host == "::1"
    with pytest.raises(ConfigError, match="numeric port"):
        parse_ws_address("localhost")
    with pytest.raises(ConfigError, match=r"websocket\.port"):
        parse_ws_address("127.0.0.1:70000")
    with pytest.raises(ConfigError, match=r"websocket\.queue_size"):
        WebSocketConfig(queue_size=0)


def test_two_clients_receive_every_event_through_the_bus() -> None:
    sink = WebSocketSink(WebSocketConfig(port=0))
    bus = EventBus()
    thread = SinkThread(sink, bus.subscribe(sink.name, 4096))
    thread.start()
    events: list[Event] = [_beat(i) for i in range(200)]
    events.append(LevelEvent(0, 1.0, 1.0, rms_dbfs=float("nan"), peak_dbfs=float("-inf")))
    url = f"ws://127.0.0.1:{sink.port}"

    async def main() -> tuple[list[dict], list[dict]]:
        async with connect(url) as a, connect(url) as b:
            assert await _wait(lambda: sink.clients == 2)
            for ev in events:
                bus.publish(ev)
            return await asyncio.gather(_read(a, len(events)), _read(b, len(events)))

    try:
        got_a, got_b = asyncio.run(main())
    finally:
        bus.close()
        thread.join(10)
    want = [json.loads(json.dumps(event_to_dict(e))) for e in events[:-1]]
    assert got_a[:-1] == want and got_b[:-1] == want
    # not-a-number is not JSON (browsers refuse it): it arrives as null
    level = {"type": "level", "sample_index": 0, "time_s": 1.0, "emitted_s": 1.0}
    assert got_a[-1] == got_b[-1] == {**level, "rms_dbfs": None, "peak_dbfs": None}
    assert got_a[0]["type"] == "beat" and got_a[0]["beat_index"] == 0
    assert sink.connections == 2 and sink.dropped_clients == 0 and thread.errors == 0
    assert not sink.alive  # closed with the bus


def test_port_in_use_is_one_clear_error() -> None:
    sink = WebSocketSink(WebSocketConfig(port=0))
    try:
        with pytest.raises(OnbeatError, match="cannot listen for WebSocket clients"):
            WebSocketSink(WebSocketConfig(port=sink.port))
    finally:
        sink.close()


def test_handle_returns_while_the_server_loop_is_frozen() -> None:
    """``handle()`` never waits for the server's loop or a client (no wall-clock bound: the loop
    is held still, and every call must return before it is released)."""
    sink = WebSocketSink(WebSocketConfig(port=0, queue_size=32))
    url = f"ws://127.0.0.1:{sink.port}"
    frozen, release = threading.Event(), threading.Event()

    def freeze() -> None:
        frozen.set()
        release.wait(30.0)

    async def main() -> None:
        async with connect(url):
            assert await _wait(lambda: sink.clients == 1)
            sink._loop.call_soon_threadsafe(freeze)
            assert frozen.wait(10.0)
            caller = threading.Thread(target=lambda: [sink.handle(_tags(i)) for i in range(500)])
            caller.start()
            caller.join(20.0)
            returned = not caller.is_alive()
            release.set()
            assert returned, "handle() blocked on the frozen server loop"

    try:
        asyncio.run(main())
    finally:
        release.set()
        sink.close()


def test_client_that_never_reads_is_dropped() -> None:
    sink = WebSocketSink(WebSocketConfig(port=0, queue_size=32, send_buffer_bytes=16384))
    url = f"ws://127.0.0.1:{sink.port}"
    n = 3000

    async def main() -> list[dict]:
        # the stalled client: a tiny receive window, and the library stops reading after 1 frame
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", sink.port))
        raw.setblocking(False)
        stalled = await connect(url, sock=raw, max_queue=1, close_timeout=0.2)
        async with connect(url) as fast:
            assert await _wait(lambda: sink.clients == 2)
            received: list[dict] = []
            reader = asyncio.create_task(_read(fast, n, timeout_s=30.0, out=received))
            dropped_at = -1
            for i in range(n):
                sink.handle(_tags(i))  # as the sink thread would
                if dropped_at < 0 and sink.dropped_clients:
                    dropped_at = i
                if i % 8 == 7:
                    # a fast client: it keeps up with the stream (bounded wait, whatever the load)
                    await _wait(lambda i=i: len(received) > i - 8, 5.0)
            got = await reader
            assert sink.clients == 1
            assert 0 <= dropped_at < n // 2  # dropped as soon as its queue filled
        stalled.transport.abort()
        return got

    try:
        got = asyncio.run(main())
    finally:
        sink.close()
    assert sink.dropped_clients == 1
    assert [g["time_s"] for g in got] == [float(i) for i in range(n)]
    assert sink.alive is False
