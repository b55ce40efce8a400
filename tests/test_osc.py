"""OSC out and OSC control in, with real sockets on loopback (no mocks).

The receiver (``tests/osc_receiver.py``) is python-osc's UDP server; it stamps each datagram with
the kernel's arrival time, and python-osc parses it. Events
reach the sinks through a real :class:`EventBus` and :class:`SinkThread`, in real time, so that
the sink's mapping of stream time to wall-clock time is exercised as it is live.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import socket
import statistics
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from onbeat.realtime.bus import EventBus, SinkThread
from onbeat.realtime.commands import CommandQueue
from onbeat.realtime.errors import ConfigError, OnbeatError
from onbeat.realtime.events import (
    BeatEvent,
    Event,
    LevelEvent,
    OnsetEvent,
    StreamEndEvent,
    StreamStartEvent,
    TagsEvent,
    TempoEvent,
)
from onbeat.realtime.osc import (
    SCHEDULING_MARGIN_MS,
    OscControlConfig,
    OscControlServer,
    OscSink,
    OscTarget,
    build_osc_sinks,
    osc_control_from_mapping,
    osc_target_from_mapping,
    parse_osc_control,
    parse_osc_target,
    required_tracker_lead_ms,
)
from osc_receiver import OscReceiver
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.udp_client import SimpleUDPClient

pytestmark = pytest.mark.timeout(60)


# ---------------------------------------------------------------------------------- helpers
@pytest.fixture
def receiver() -> Iterator[OscReceiver]:
    r = OscReceiver()
    yield r
    r.close()


def _free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


class Rig:
    """OSC sinks on a real bus, each on its own SinkThread."""

    def __init__(self, *sinks: OscSink) -> None:
        self.bus = EventBus()
        self.sinks = sinks
        self.threads = [SinkThread(s, self.bus.subscribe(s.name, 4096)) for s in sinks]
        for t in self.threads:
            t.start()

    def close(self) -> None:
        self.bus.close()
        for t in self.threads:
            t.join(5)
        assert all(t.errors == 0 for t in self.threads)


def beat(
    time_s: float, emitted_s: float, index: int, *, bpm: float = 120.0, bpb: int = 4
) -> BeatEvent:
    bib = index % bpb + 1
    return BeatEvent(
        sample_index=round(time_s * 44100),
        time_s=time_s,
        emitted_s=emitted_s,
        beat_index=index,
        beat_in_bar=bib,
        bpm=bpm,
        confidence=0.8,
        phase=0.9,
        is_downbeat=bib == 1,
        locked=True,
        predicted=emitted_s <= time_s,
    )


def stream(
    n_beats: int,
    *,
    bpm: float = 120.0,
    first_s: float = 0.4,
    lead_s: float = 0.15,
    bpb: int = 4,
    extra: tuple[Event, ...] = (),
) -> list[Event]:
    """A synthetic stream: start, 10 Hz level events, tempo at 2 Hz, predicted beats, end."""
    period = 60.0 / bpm
    end_s = first_s + n_beats * period
    evs: list[Event] = [StreamStartEvent(0, 0.0, 0.0, "test", 44100, 100.0)]
    t = 0.1
    while t < end_s:
        evs.append(LevelEvent(round(t * 44100), t, t, rms_dbfs=-20.0, peak_dbfs=-6.0))
        t = round(t + 0.1, 6)
    t = 0.05
    while t < end_s:
        evs.append(TempoEvent(round(t * 44100), t, t, bpm=bpm, confidence=0.8, locked=True,
                              beats_per_bar=bpb))  # fmt: skip
        t = round(t + 0.5, 6)
    for i in range(n_beats):
        ts = first_s + i * period
        evs.append(beat(ts, ts - lead_s, i, bpm=bpm, bpb=bpb))
    evs.extend(extra)
    evs.append(StreamEndEvent(round(end_s * 44100), end_s, end_s, frames=0, reason="eof"))
    return sorted(evs, key=lambda e: e.emitted_s)


def play(bus: EventBus, events: list[Event]) -> float:
    """Publish events in real time (at wall ``t0 + emitted_s``); returns ``t0``."""
    t0 = time.monotonic() + 0.05
    for ev in events:
        delay = t0 + ev.emitted_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        bus.publish(ev)
    return t0


def assert_on_time(errs_s: list[float], tol_s: float = 0.015) -> None:
    """Timing errors: the median within ``tol_s / 2`` and every one within ``tol_s``, except one
    outlier (< 0.1 s) forgiven on a machine whose cores are all busy (a CI neighbour).
    """
    mags = sorted(abs(e) for e in errs_s)
    assert statistics.median(mags) <= tol_s / 2, errs_s
    assert all(m <= tol_s for m in mags[:-1]) and mags[-1] < 0.1, errs_s


def wait_for(cond, timeout_s: float = 3.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return bool(cond())


# ---------------------------------------------------------------------------------- config
def test_parse_osc_target_forms() -> None:
    t = parse_osc_target("127.0.0.1:7000")
    assert (t.host, t.port, t.profile, t.mode, t.prefix) == ("127.0.0.1", 7000, "flat", "flat",
                                                            "/onbeat")  # fmt: skip
    assert (t.output_latency_ms, t.pulse_ms, t.phase_rate_hz) == (0.0, 40.0, 60.0)
    assert parse_osc_target("127.0.0.1:7000:rich").mode == "rich"
    r = parse_osc_target("resolume@127.0.0.1")
    assert (r.port, r.profile, r.mode, r.label) == (7000, "resolume", "resolume", "127.0.0.1:7000")
    assert parse_osc_target("resolume@10.0.0.2:7001").port == 7001
    q = parse_osc_target("qlcplus@10.0.0.5")
    assert (q.port, q.mode) == (7700, "flat")
    assert parse_osc_target("touchdesigner@127.0.0.1:9000").mode == "flat"
    assert parse_osc_target("127.0.0.1:7000:resolume").mode == "resolume"
    v6 = parse_osc_target("[::1]:7000:rich")
    assert (v6.host, v6.port, v6.label) == ("::1", 7000, "[::1]:7000")
    o = parse_osc_target(
        "h.local:9000,latency_ms=40,pulse_ms=30,phase_hz=100,prefix=/club,name=left"
    )
    assert (o.output_latency_ms, o.pulse_ms, o.phase_rate_hz, o.prefix, o.label) == (
        40.0, 30.0, 100.0, "/club", "left",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("127.0.0.1", "needs a port"),
        ("touchdesigner@127.0.0.1", "needs a port"),
        ("127.0.0.1:70000", "osc.port"),
        ("127.0.0.1:0", "osc.port"),
        ("127.0.0.1:7000:loud", "neither a port nor a profile"),
        ("madmapper@127.0.0.1:7000", "unknown preset"),
        ("resolume@127.0.0.1:7000:rich", "conflict"),
        ("::1:7000", "brackets"),
        ("127.0.0.1:7000,pulse_ms=10", "osc.pulse_ms"),
        ("127.0.0.1:7000,pulse_ms=x", "not a number"),
        ("127.0.0.1:7000,phase_hz=200", "osc.phase_rate_hz"),
        ("127.0.0.1:7000,latency_ms=-5", "osc.output_latency_ms"),
        ("127.0.0.1:7000,prefix=onbeat", "osc.prefix"),
        ("127.0.0.1:7000,prefix=/a/", "osc.prefix"),
        ("127.0.0.1:7000,colour=red", "KEY=VALUE"),
        (":7000", "osc.host"),
        ("", "expected"),
    ],
)
def test_parse_osc_target_errors(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_osc_target(text)
    assert fragment in str(info.value)
    assert text in str(info.value)


def test_target_from_mapping_and_lead() -> None:
    a = osc_target_from_mapping({"target": "resolume@127.0.0.1", "output_latency_ms": 30})
    assert (a.port, a.output_latency_ms) == (7000, 30)
    b = osc_target_from_mapping({"host": "10.0.0.9", "port": 9000, "profile": "rich"})
    assert b.mode == "rich"
    assert osc_target_from_mapping({"host": "10.0.0.9", "profile": "qlcplus"}).port == 7700
    with pytest.raises(ConfigError, match="unknown key"):
        osc_target_from_mapping({"host": "h", "port": 1, "colour": "red"})
    with pytest.raises(ConfigError, match="needs 'target'"):
        osc_target_from_mapping({"host": "h"})
    with pytest.raises(ConfigError, match=r"osc\.pulse_ms"):
        OscTarget("h", 1, pulse_ms=60)
    assert required_tracker_lead_ms([]) == 0.0
    assert required_tracker_lead_ms([a, b]) == 30 + SCHEDULING_MARGIN_MS
    sinks = build_osc_sinks([b, b])
    try:
        assert [s.name for s in sinks] == ["osc:10.0.0.9:9000", "osc:10.0.0.9:9000#2"]
    finally:
        for s in sinks:
            s.close()


def test_parse_osc_control() -> None:
    c = parse_osc_control("9000")
    assert (c.host, c.port, c.prefix, c.allow) == ("127.0.0.1", 9000, "/onbeat", ())
    assert parse_osc_control("0.0.0.0:9001").host == "0.0.0.0"
    assert parse_osc_control("[::1]:9002").host == "::1"
    assert parse_osc_control("9000", allow=["10.0.0.0/24"]).allow == ("10.0.0.0/24",)
    for bad, frag in [("x", "numeric port"), ("99999", "osc_control.port"),
                      ("example.org:9000", "osc_control.host")]:  # fmt: skip
        with pytest.raises(ConfigError, match=frag):
            parse_osc_control(bad)
    with pytest.raises(ConfigError, match="allow"):
        OscControlConfig(9000, allow=("not-an-ip",))
    m = osc_control_from_mapping({"port": 9000, "host": "0.0.0.0", "allow": "192.168.1.7"})
    assert m.allow == ("192.168.1.7",)
    with pytest.raises(ConfigError, match="unknown key"):
        osc_control_from_mapping({"port": 9000, "bind": "x"})


# ---------------------------------------------------------------------------------- OSC out
def test_flat_address_map_types_and_pulses(receiver: OscReceiver) -> None:
    tags = TagsEvent(
        44100, 1.0, 1.05, genre=(("Drum & Bass", 0.7), ("house", 0.3)),
        mood_quadrant=(("Q1", 0.6), ("Q2", 0.4)), valence=0.4, arousal=0.8, voice=0.2, energy=0.9,
    )  # fmt: skip
    onset = OnsetEvent(30000, 0.68, 0.7, strength=2.5)
    sink = OscSink(OscTarget("127.0.0.1", receiver.port, pulse_ms=40))
    rig = Rig(sink)
    events = stream(5, extra=(tags, onset))
    t0 = play(rig.bus, events)
    time.sleep(0.1)
    rig.close()
    time.sleep(0.05)

    msgs = receiver.messages()
    expected_tags = {
        "/onbeat/beat": "i", "/onbeat/downbeat": "i", "/onbeat/beat_index": "i",
        "/onbeat/bar_pos": "i", "/onbeat/bpm": "f", "/onbeat/confidence": "f",
        "/onbeat/locked": "i", "/onbeat/phase": "f", "/onbeat/bar_phase": "f",
        "/onbeat/onset": "f", "/onbeat/level": "f", "/onbeat/genre/drum_bass": "f",
        "/onbeat/genre/house": "f", "/onbeat/genre/top": "s", "/onbeat/mood/valence": "f",
        "/onbeat/mood/arousal": "f", "/onbeat/mood/quadrant": "s", "/onbeat/voice": "f",
        "/onbeat/energy": "f",
    }  # fmt: skip
    seen = {m.address: m.tags for m in msgs}
    assert seen == expected_tags
    assert all(m.tags == expected_tags[m.address] for m in msgs)
    assert sink.sent == {a: sum(m.address == a for m in msgs) for a in seen}
    assert sink.errors == 0 and sink.late_beats == 0

    # beats: index, bar position and the 1/0 pulse
    assert [m.args[0] for m in receiver.of("/onbeat/beat_index")] == [0, 1, 2, 3, 4]
    assert [m.args[0] for m in receiver.of("/onbeat/bar_pos")] == [1, 2, 3, 4, 1]
    pulses = receiver.of("/onbeat/beat")
    assert [m.args[0] for m in pulses] == [1, 0] * 5
    assert_on_time(
        [off.t - on.t - 0.040 for on, off in zip(pulses[::2], pulses[1::2], strict=True)]
    )
    down = receiver.of("/onbeat/downbeat")
    assert [m.args[0] for m in down] == [1, 0, 1, 0]
    assert abs(down[0].t - pulses[0].t) < 0.005 and abs(down[2].t - pulses[8].t) < 0.005

    # tempo: on change, then at 2 Hz
    bpm = receiver.of("/onbeat/bpm")
    assert all(m.args[0] == 120.0 for m in bpm)
    gaps = [b.t - a.t for a, b in itertools.pairwise(bpm)]
    assert len(bpm) >= 4 and all(0.4 <= g <= 0.6 for g in gaps)
    assert receiver.of("/onbeat/locked")[0].args == (1,)
    assert receiver.of("/onbeat/confidence")[0].args[0] == pytest.approx(0.8, abs=1e-6)

    # tags and onset values
    assert receiver.of("/onbeat/genre/top")[0].args == ("Drum & Bass",)
    assert receiver.of("/onbeat/genre/drum_bass")[0].args[0] == pytest.approx(0.7, abs=1e-6)
    assert receiver.of("/onbeat/mood/quadrant")[0].args == ("Q1",)
    assert receiver.of("/onbeat/onset")[0].args[0] == pytest.approx(2.5)
    # no phase once the stream has ended
    end_t = t0 + events[-1].emitted_s
    assert not [m for m in receiver.of("/onbeat/phase") if m.t > end_t + 0.03]
    assert [m for m in receiver.of("/onbeat/phase") if m.t > end_t - 0.1]


def test_phase_rate_and_values(receiver: OscReceiver) -> None:
    rate_hz, bpm, latency_s = 50.0, 128.0, 0.03
    sink = OscSink(
        OscTarget("127.0.0.1", receiver.port, phase_rate_hz=rate_hz, output_latency_ms=30)
    )
    rig = Rig(sink)
    events = stream(6, bpm=bpm, bpb=3)
    t0 = play(rig.bus, events)
    rig.close()

    first_beat = next(e for e in events if isinstance(e, BeatEvent))
    phase = receiver.of("/onbeat/phase")
    bar = receiver.of("/onbeat/bar_phase")
    assert len(phase) == len(bar)
    # the rate, over the part of the stream where the beat grid is known
    start = t0 + first_beat.emitted_s + 0.1
    stop = t0 + events[-1].emitted_s - 0.1
    n = sum(start <= m.t < stop for m in phase)
    assert n / (stop - start) == pytest.approx(rate_hz, rel=0.2)
    # the values: beat and bar phase of the grid, output_latency_s ahead
    period = 60.0 / bpm
    errs, bar_errs = [], []
    for p, b in zip(phase, bar, strict=True):
        k = (p.t - t0 + latency_s - first_beat.time_s) / period
        assert 0.0 <= p.args[0] < 1.0 and 0.0 <= b.args[0] < 1.0
        d = (p.args[0] - k) % 1.0
        errs.append(min(d, 1.0 - d))
        if p.t > t0 + first_beat.time_s:
            want_bar = ((math.floor(k) % 3) + (k % 1.0)) / 3.0
            db = (b.args[0] - want_bar) % 1.0
            bar_errs.append(min(db, 1.0 - db))
    # arrival stamps carry scheduling jitter of both threads: judge the bulk, not one outlier
    assert statistics.median(errs) < 0.02
    assert statistics.quantiles(errs, n=20)[-1] < 0.06
    assert statistics.median(bar_errs) < 0.01 and statistics.quantiles(bar_errs, n=20)[-1] < 0.02


def test_beats_are_sent_output_latency_early() -> None:
    """Two targets, 0 and 80 ms: each beat leaves at time_s - latency (live mapping)."""
    r0, r80 = OscReceiver(), OscReceiver()
    try:
        s0 = OscSink(OscTarget("127.0.0.1", r0.port))
        s80 = OscSink(OscTarget("127.0.0.1", r80.port, output_latency_ms=80))
        rig = Rig(s0, s80)
        events = stream(6, lead_s=0.2)
        t0 = play(rig.bus, events)
        time.sleep(0.1)
        rig.close()
        beats = [e for e in events if isinstance(e, BeatEvent)]
        for rec, latency_s in ((r0, 0.0), (r80, 0.08)):
            ons = [m for m in rec.of("/onbeat/beat") if m.args == (1,)]
            assert len(ons) == len(beats)
            errs = [m.t - (t0 + b.time_s - latency_s) for m, b in zip(ons, beats, strict=True)]
            assert_on_time(errs)
        assert s0.late_beats == 0 and s80.late_beats == 0
    finally:
        r0.close()
        r80.close()


def test_late_beat_is_sent_at_once(receiver: OscReceiver) -> None:
    """A beat whose compensated time has passed goes out immediately and is counted."""
    sink = OscSink(OscTarget("127.0.0.1", receiver.port, output_latency_ms=100))
    rig = Rig(sink)
    events = stream(3, lead_s=0.02)
    t0 = play(rig.bus, events)
    time.sleep(0.05)
    rig.close()
    beats = [e for e in events if isinstance(e, BeatEvent)]
    ons = [m for m in receiver.of("/onbeat/beat") if m.args == (1,)]
    assert len(ons) == 3 and sink.late_beats == 3
    errs = [m.t - (t0 + b.emitted_s) for m, b in zip(ons, beats, strict=True)]
    assert min(errs) >= 0.0
    assert_on_time(errs)


def test_resolume_preset(receiver: OscReceiver) -> None:
    sink = OscSink(parse_osc_target(f"resolume@127.0.0.1:{receiver.port}"))
    rig = Rig(sink)
    events = stream(6, bpm=128.0)
    play(rig.bus, events)
    time.sleep(0.1)
    rig.close()
    msgs = receiver.messages()
    assert {m.address for m in msgs} == {
        "/composition/tempocontroller/tempo",
        "/composition/tempocontroller/resync",
    }
    tempo = receiver.of("/composition/tempocontroller/tempo")
    assert len(tempo) >= 4 and all(m.tags == "f" for m in tempo)
    want = struct.unpack(">f", struct.pack(">f", (128.0 - 20.0) / 480.0))[0]
    assert all(m.args[0] == want for m in tempo)
    resync = receiver.of("/composition/tempocontroller/resync")
    assert [m.args[0] for m in resync] == [1, 0, 1, 0]  # beats 0 and 4 are downbeats
    assert all(m.tags == "i" for m in resync)
    assert_on_time([resync[1].t - resync[0].t - 0.04, resync[3].t - resync[2].t - 0.04])


def test_rich_profile(receiver: OscReceiver) -> None:
    tags = TagsEvent(44100, 1.0, 1.05, genre=(("techno", 0.9),), mood_quadrant=(("Q2", 1.0),),
                     valence=-0.2, arousal=0.7, voice=0.1, energy=0.5)  # fmt: skip
    onset = OnsetEvent(30000, 0.68, 0.7, strength=1.5)
    sink = OscSink(parse_osc_target(f"127.0.0.1:{receiver.port}:rich,latency_ms=30,prefix=/ob"))
    rig = Rig(sink)
    play(rig.bus, stream(4, extra=(tags, onset)))
    time.sleep(0.1)
    rig.close()
    types = {m.address: m.tags for m in receiver.messages()}
    assert types == {
        "/ob/beat": "iifff", "/ob/downbeat": "iifff", "/ob/tempo": "ffii", "/ob/phase": "ff",
        "/ob/onset": "ff", "/ob/level": "ff", "/ob/tags": "sfsffff",
    }  # fmt: skip
    beats = receiver.of("/ob/beat")
    assert [m.args[:2] for m in beats] == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert all(m.args[2] == 120.0 for m in beats)
    assert_on_time([m.args[4] - 0.03 for m in beats], 0.012)  # lead_s = output latency
    assert receiver.of("/ob/tempo")[0].args[2:] == (1, 4)
    assert receiver.of("/ob/tags")[0].args[0] == "techno"


def test_receiver_down_is_counted_and_recovers() -> None:
    port = _free_udp_port()
    sink = OscSink(OscTarget("127.0.0.1", port, phase_rate_hz=100))
    bus = EventBus()
    thread = SinkThread(sink, bus.subscribe(sink.name, 4096))
    thread.start()
    stop = threading.Event()

    def feed() -> None:
        t0 = time.monotonic()
        bus.publish(StreamStartEvent(0, 0.0, 0.0, "test", 44100, 100.0))
        i = 0
        while not stop.is_set():
            s = time.monotonic() - t0
            bus.publish(beat(s + 0.1, s, i))
            i += 1
            time.sleep(0.1)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    rec: OscReceiver | None = None
    try:
        assert wait_for(lambda: sink.errors >= 3, 3.0)
        assert sink.alive and thread.is_alive() and thread.errors == 0
        assert sink.dropped > 0
        rec = OscReceiver(port)
        assert wait_for(lambda: len(rec.of("/onbeat/phase")) >= 20, 4.0)
        assert len(rec.of("/onbeat/beat")) > 0
        assert sink.retries >= 1
        errors_before = sink.errors
        time.sleep(0.3)
        assert sink.errors == errors_before  # steady again
    finally:
        stop.set()
        feeder.join(2)
        bus.close()
        thread.join(5)
        if rec is not None:
            rec.close()


def test_unresolvable_host_never_raises() -> None:
    sink = OscSink(OscTarget("no-such-host.invalid", 7000))
    try:
        sink.handle(StreamStartEvent(0, 0.0, 0.0, "test", 44100, 100.0))
        sink.handle(beat(0.05, 0.0, 0))
        assert wait_for(lambda: sink.errors >= 1, 5.0)
        assert sink.alive
    finally:
        sink.close()


# ---------------------------------------------------------------------------------- control in
@pytest.fixture
def control() -> Iterator[tuple[OscControlServer, CommandQueue, SimpleUDPClient]]:
    q = CommandQueue()
    server = OscControlServer(OscControlConfig(port=0), q).start()
    client = SimpleUDPClient("127.0.0.1", server.port)
    yield server, q, client
    server.close()


def test_control_commands_reach_the_queue(control) -> None:  # type: ignore[no-untyped-def]
    server, q, client = control
    sends = [
        ("/onbeat/tap", []),
        ("/onbeat/tap", [1.0]),  # a button press
        ("/onbeat/tap", [0.0]),  # its release: ignored
        ("/onbeat/nudge", [12.5]),
        ("/onbeat/nudge", [-10]),
        ("/onbeat/resync", []),
        ("/onbeat/double", []),
        ("/onbeat/halve", [1]),
        ("/onbeat/bpm_range", [80.0, 160]),
        ("/onbeat/freeze", [1]),
        ("/onbeat/freeze", [False]),
        ("/onbeat/latency", [40.0]),
    ]
    for address, args in sends:
        client.send_message(address, args)
    assert wait_for(lambda: server.accepted == 11 and server.ignored == 1)
    got = [(c.kind, c.args) for c in q.drain()]
    assert got == [
        ("tap", ()),
        ("tap", ()),
        ("nudge", (12.5,)),
        ("nudge", (-10.0,)),
        ("resync", ()),
        ("double", ()),
        ("halve", ()),
        ("bpm_range", (80.0, 160.0)),
        ("freeze", (1.0,)),
        ("freeze", (0.0,)),
        ("output_latency", (40.0,)),
    ]
    assert not server.rejected


def test_control_rejects_are_counted(control, caplog) -> None:  # type: ignore[no-untyped-def]
    server, q, client = control
    caplog.set_level(logging.WARNING, logger="onbeat.realtime.osc")
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        client.send_message("/onbeat/unknown", [])
        client.send_message("/other/tap", [])
        client.send_message("/onbeat/nudge", ["ten"])
        client.send_message("/onbeat/nudge", [])
        client.send_message("/onbeat/nudge", [5000.0])
        client.send_message("/onbeat/nudge", [float("nan")])
        client.send_message("/onbeat/bpm_range", [160.0, 80.0])
        client.send_message("/onbeat/freeze", ["yes"])
        client.send_message("/onbeat/latency", ["nobody", 20.0])
        client.send_message("/onbeat/latency", [900.0])
        client.send_message("/onbeat/tap", ["now"])
        big = OscMessageBuilder("/onbeat/tap")
        big.add_arg("x" * 2000, "s")
        raw.sendto(big.build().dgram, ("127.0.0.1", server.port))
        raw.sendto(b"hello", ("127.0.0.1", server.port))
        raw.sendto(b"/onbeat/nudge\0\0\0,f\0\0\x01", ("127.0.0.1", server.port))  # truncated
        raw.sendto(b"#bundle\0\x00\x00", ("127.0.0.1", server.port))
        assert wait_for(lambda: server.received == 15)
    finally:
        raw.close()
    assert dict(server.rejected) == {
        "unknown_address": 2,
        "bad_args": 4,
        "bad_value": 4,
        "unknown_target": 1,
        "oversized": 1,
        "not_osc": 1,
        "malformed": 2,
    }
    assert len(q) == 0 and server.accepted == 0 and server.alive
    assert len([r for r in caplog.records if r.name == "onbeat.realtime.osc"]) <= 2


def test_control_latency_per_target() -> None:
    left = OscSink(OscTarget("127.0.0.1", 9, name="left"), start=False)
    right = OscSink(OscTarget("127.0.0.1", 9, output_latency_ms=20, profile="resolume"),
                    start=False)  # fmt: skip
    q = CommandQueue()
    with OscControlServer(OscControlConfig(port=0), q, sinks=[left, right]) as server:
        client = SimpleUDPClient("127.0.0.1", server.port)
        client.send_message("/onbeat/latency", ["left", 50.0])
        assert wait_for(lambda: server.accepted == 1)
        assert (left.output_latency_ms, right.output_latency_ms) == (50.0, 20.0)
        client.send_message("/onbeat/latency", ["resolume", 70])  # a unique profile name
        assert wait_for(lambda: server.accepted == 2)
        assert right.output_latency_ms == 70.0
        client.send_message("/onbeat/latency", [10.0])  # every target
        assert wait_for(lambda: server.accepted == 3)
        assert (left.output_latency_ms, right.output_latency_ms) == (10.0, 10.0)
    cmds = q.drain()
    m = SCHEDULING_MARGIN_MS
    assert [c.kind for c in cmds] == ["output_latency"] * 3
    assert [c.args for c in cmds] == [(50.0 + m,), (70.0 + m,), (10.0 + m,)]


def test_control_bundle_timetag_does_not_stall(control) -> None:  # type: ignore[no-untyped-def]
    server, q, client = control
    b = OscBundleBuilder(int(time.time()) + 3600)  # an hour in the future
    b.add_content(OscMessageBuilder("/onbeat/tap").build())
    inner = OscBundleBuilder(IMMEDIATELY)
    m = OscMessageBuilder("/onbeat/nudge")
    m.add_arg(5.0, "f")
    inner.add_content(m.build())
    b.add_content(inner.build())
    client.send(b.build())
    assert wait_for(lambda: server.accepted == 2, 1.0)
    assert sorted(c.kind for c in q.drain()) == ["nudge", "tap"]


def test_control_allow_list_and_bind_errors() -> None:
    q = CommandQueue()
    with OscControlServer(OscControlConfig(port=0, allow=("10.0.0.0/8",)), q) as server:
        SimpleUDPClient("127.0.0.1", server.port).send_message("/onbeat/tap", [])
        assert wait_for(lambda: server.rejected["not_allowed"] == 1)
        assert len(q) == 0
        with pytest.raises(OnbeatError, match="cannot listen for OSC control"):
            OscControlServer(OscControlConfig(port=server.port), q)
    with OscControlServer(OscControlConfig(port=0, allow=("127.0.0.1",)), q) as server:
        SimpleUDPClient("127.0.0.1", server.port).send_message("/onbeat/tap", [])
        assert wait_for(lambda: server.accepted == 1)


def _fuzz_packets(rng: random.Random, n: int) -> Iterator[bytes]:
    """Random, malformed and almost-valid OSC packets."""
    addresses = ["/onbeat/tap", "/onbeat/nudge", "/onbeat/bpm_range", "/onbeat/freeze",
                 "/onbeat/latency", "/onbeat/resync", "/onbeat/x", "/*", "/onbeat/[a-",
                 "/onbeat/{tap,nudge}", "/", "//", "/onbeat/tap/extra"]  # fmt: skip
    values: list[Any] = [0, 1, -1, 2**31 - 1, 0.0, 1.5, -1e30, float("nan"), float("inf"), "",
                         "abc", "x" * 300, b"\x00\x01", True, False, None]  # fmt: skip
    templates: list[bytes] = []
    for _ in range(400):
        mb = OscMessageBuilder(rng.choice(addresses))
        for _ in range(rng.randrange(4)):
            mb.add_arg(rng.choice(values))
        msg = mb.build()
        if rng.random() < 0.3:
            bb = OscBundleBuilder(rng.choice([IMMEDIATELY, int(time.time()) + 10_000, 0]))
            bb.add_content(msg)
            if rng.random() < 0.5:
                bb.add_content(OscMessageBuilder(rng.choice(addresses)).build())
            templates.append(bb.build().dgram)
        else:
            templates.append(msg.dgram)
    for _ in range(n):
        kind = rng.random()
        if kind < 0.15:
            yield rng.randbytes(rng.randrange(0, 64))
        elif kind < 0.2:
            yield rng.randbytes(rng.randrange(900, 1600))
        elif kind < 0.3:
            yield b"/" + rng.randbytes(rng.randrange(0, 80))
        elif kind < 0.35:
            yield b"#bundle\0" + rng.randbytes(rng.randrange(0, 80))
        else:
            p = bytearray(rng.choice(templates))
            op = rng.random()
            if op < 0.3 and p:
                for _ in range(rng.randrange(1, 4)):
                    p[rng.randrange(len(p))] = rng.randrange(256)
            elif op < 0.55:
                del p[rng.randrange(len(p) + 1) :]
            elif op < 0.65:
                p += rng.randbytes(rng.randrange(1, 16))
            yield bytes(p)


def test_control_fuzz_100k_packets(control, caplog) -> None:  # type: ignore[no-untyped-def]
    server, q, client = control
    caplog.set_level(logging.WARNING, logger="onbeat.realtime.osc")
    n = 100_000
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dest = ("127.0.0.1", server.port)
    t_start = time.monotonic()
    sent = 0
    try:
        for dgram in _fuzz_packets(random.Random(20240611), n):
            raw.sendto(dgram, dest)
            sent += 1
            if sent % 200 == 0:
                # pace: keep the server's socket buffer from overflowing (bounded wait)
                deadline = time.monotonic() + 1.0
                while server.received < sent - 400 and time.monotonic() < deadline:
                    time.sleep(0.0005)
            if sent % 5000 == 0:
                q.drain()  # the analysis thread would
    finally:
        raw.close()
    assert wait_for(lambda: server.received >= n, 5.0) or server.received > 0.95 * n
    elapsed = time.monotonic() - t_start
    assert elapsed < 30.0
    assert server.alive
    assert server.rejected["internal"] == 0
    for reason in ("oversized", "not_osc", "malformed", "unknown_address", "bad_args"):
        assert server.rejected[reason] > 100, dict(server.rejected)
    logs = [r for r in caplog.records if r.name == "onbeat.realtime.osc"]
    assert len(logs) <= elapsed + 2  # at most one line a second
    # still serving: a valid command afterwards works
    q.drain()
    before = server.accepted
    client.send_message("/onbeat/nudge", [7.0])
    assert wait_for(lambda: server.accepted == before + 1)
    assert [(c.kind, c.args) for c in q.drain()] == [("nudge", (7.0,))]


def _rejected_packets(n: int, seed: int = 4) -> list[bytes]:
    """``n`` fuzz packets of which a control server turns none into a command.

    Random mutation now and then yields a valid command (``/onbeat/resync`` with no argument);
    a probe server that never listens filters those out, so the fuzzed run may differ from the
    quiet one only through the load of rejecting packets.
    """
    probe = OscControlServer(OscControlConfig(port=0), CommandQueue())  # never started
    origin = ("127.0.0.1", 9)
    out: list[bytes] = []
    try:
        for dgram in _fuzz_packets(random.Random(seed), 2 * n):
            accepted = probe.accepted
            if probe._verify(dgram, origin):
                probe._handle_packet(dgram, origin)
            if probe.accepted == accepted:
                out.append(dgram)
                if len(out) == n:
                    break
    finally:
        probe.close()
    assert len(out) == n
    return out


@pytest.mark.timeout(240)
def test_fuzzing_leaves_beats_unchanged(caplog) -> None:  # type: ignore[no-untyped-def]
    """A replay's beats while malformed, unknown, oversized and wrongly typed packets hit the
    engine's control port on loopback equal those of a quiet run of the same audio.
    """
    from onbeat.realtime.config import OnbeatConfig, apply_overrides
    from onbeat.realtime.demo import demo_song
    from onbeat.realtime.engine import Engine
    from onbeat.realtime.sources import ArraySource

    caplog.set_level(logging.ERROR, logger="onbeat.realtime.osc")
    song = demo_song(duration_s=120.0, bpm=124.0, seed=3)
    config = apply_overrides(OnbeatConfig(), {"tags.enabled": "off", "output.console": False})
    packets = _rejected_packets(100_000)

    def run(fuzz: bool) -> tuple[list[tuple[Any, ...]], OscControlServer, int]:
        engine = Engine(config)
        sub = engine.bus.subscribe("test", 1_000_000)
        server = OscControlServer(OscControlConfig(port=0), engine.commands).start()
        seen: dict[int, int] = {}  # packets received by the first (0) and the last (1) frame

        def hook(_analyzer: Any, frame: int, _sample: int) -> None:
            seen.setdefault(0, server.received)
            seen[1] = server.received

        engine.frame_hooks.append(hook)
        stop = threading.Event()

        def bombard() -> None:
            dest = ("127.0.0.1", server.port)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                for sent, dgram in enumerate(itertools.cycle(packets), 1):
                    if stop.is_set():
                        return
                    raw.sendto(dgram, dest)
                    if sent % 200 == 0:  # keep the socket buffer from overflowing (bounded)
                        deadline = time.monotonic() + 0.5
                        while server.received < sent - 2000 and time.monotonic() < deadline:
                            time.sleep(0.0005)

        sender = threading.Thread(target=bombard, daemon=True)
        try:
            if fuzz:
                sender.start()
                assert wait_for(lambda: server.received > 1000, 10.0)
            summary = engine.run_fast(ArraySource(song.samples, song.sample_rate_hz, "song"))
        finally:
            stop.set()
            if fuzz:
                sender.join(5.0)
            server.close()
        assert summary.dropped == 0
        beats = [
            (e.sample_index, e.time_s, e.emitted_s, e.beat_index, e.beat_in_bar, e.bpm, e.locked)
            for e in sub.drain()
            if isinstance(e, BeatEvent)
        ]
        return beats, server, seen[1] - seen[0]

    quiet, quiet_server, _ = run(fuzz=False)
    fuzzed, server, hit_during = run(fuzz=True)
    assert quiet_server.received == 0
    # the packets arrived while the audio was analysed, and none became a command
    print(f"{hit_during} packets hit the control port during the analysis")
    # how many arrive depends on how fast each thread runs (86,000 seen with the other core
    # busy, over 100,000 on an idle machine); what matters is that thousands did, and none acted
    assert hit_during >= 20_000, hit_during
    assert server.accepted == 0 and server.alive is False and server.rejected["internal"] == 0
    for reason in ("oversized", "not_osc", "malformed", "unknown_address", "bad_args"):
        assert server.rejected[reason] > 100, dict(server.rejected)
    assert len(quiet) > 200  # still tracking: about 2 beats a second
    assert fuzzed == quiet
