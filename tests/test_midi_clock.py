"""MIDI clock: transport and timing against a recording port, and real clocks through JACK.

The JACK test starts its own ``jackd`` with the dummy driver (no sound card, no realtime
privileges) and receives the sink's virtual port with a mido input on the same server; it is
skipped, with the reason, when jackd or JACK MIDI is not available.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from onbeat.realtime.errors import ConfigError, OnbeatError
from onbeat.realtime.events import (
    BeatEvent,
    Event,
    StreamEndEvent,
    StreamStartEvent,
    TempoEvent,
)
from onbeat.realtime.jack_server import (
    DummyJackServer,
    JackUnavailable,
    count_xruns,
    realtime_allowed,
)
from onbeat.realtime.midi_clock import (
    MidiClockConfig,
    MidiClockSink,
    jack_running,
    parse_midi_clock,
)

pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------------------------- config
def test_parse_midi_clock() -> None:
    assert parse_midi_clock("") == MidiClockConfig()
    assert parse_midi_clock("virtual") == MidiClockConfig()
    assert parse_midi_clock("virtual:beat").virtual_name == "beat"
    c = parse_midi_clock("USB MIDI 1, api=jack,latency_ms=12.5,downbeat=false,spp=0")
    assert (c.port, c.api, c.output_latency_ms) == ("USB MIDI 1", "jack", 12.5)
    assert (c.start_at_downbeat, c.song_position) == (False, False)
    assert parse_midi_clock(",start_on=beat,stop_after_s=8").start_on == "beat"
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_midi_clock("x,bogus=1")
    with pytest.raises(ConfigError, match=r"midi_clock\.api"):
        parse_midi_clock(",api=coreaudio")
    with pytest.raises(ConfigError, match="not a number"):
        parse_midi_clock(",latency_ms=soon")
    with pytest.raises(ConfigError, match=r"midi_clock\.output_latency_ms"):
        parse_midi_clock(",latency_ms=900")
    with pytest.raises(ConfigError, match="true or false"):
        parse_midi_clock(",spp=perhaps")
    with pytest.raises(ConfigError, match=r"midi_clock\.start_on"):
        MidiClockConfig(start_on="always")


# ---------------------------------------------------------------------------------- transport
class RecordingPort:
    """Stamps every message with ``time.monotonic()`` when it is sent."""

    name = "recording"

    def __init__(self) -> None:
        self.sent: list[tuple[float, Any]] = []

    def send(self, msg: Any) -> None:
        self.sent.append((time.monotonic(), msg))

    def close(self) -> None:
        pass

    def times(self, kind: str) -> np.ndarray:
        return np.array([t for t, m in self.sent if m.type == kind])


def _beat(i: int, locked: bool, bpm: float = 120.0, lead_s: float = 0.05) -> BeatEvent:
    t = 0.25 + i * 60.0 / bpm
    return BeatEvent(round(t * 44100), t, t - lead_s, beat_index=i, beat_in_bar=i % 4 + 1,
                     bpm=bpm, confidence=0.9 if locked else 0.2, phase=0.9,
                     is_downbeat=i % 4 == 0, locked=locked, predicted=True)  # fmt: skip


def _play(sink: MidiClockSink, events: list[Event]) -> float:
    """Hand ``events`` to the sink when stream time reaches their ``emitted_s``; returns t0."""
    t0 = time.monotonic() + 0.05
    for ev in sorted(events, key=lambda e: e.emitted_s):
        delay = t0 + ev.emitted_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sink.handle(ev)
    return t0


def test_transport_start_clock_stop_continue_end() -> None:
    """Start on a downbeat once locked, 24 clocks per beat on the grid, stop after losing lock,
    continue (with the song position of the next bar) on relock, stop at the end of the stream.
    """
    port = RecordingPort()
    sink = MidiClockSink(MidiClockConfig(stop_after_s=0.6), port=port)
    lock = [2 <= i < 12 or i >= 16 for i in range(24)]  # beats 12..15 (6.25..7.75 s) unlocked
    events: list[Event] = [StreamStartEvent(0, 0.0, 0.0, "test", 44100, 100.0)]
    for i in range(24):
        b = _beat(i, lock[i])
        events.append(b)
        events.append(TempoEvent(b.sample_index, b.emitted_s, b.emitted_s + 0.001, bpm=120.0,
                                 confidence=b.confidence, locked=b.locked,
                                 beats_per_bar=4))  # fmt: skip
    end_s = 0.25 + 24 * 0.5
    events.append(StreamEndEvent(0, end_s, end_s, frames=1, reason="eof"))
    t0 = _play(sink, events)
    time.sleep(0.1)
    sink.close()
    kinds = [m.type for _, m in port.sent]
    # song position 0, start, clocks ... stop, song position, continue, clocks ... stop
    assert kinds[:3] == ["songpos", "start", "clock"]
    assert [k for k in kinds if k != "clock"] == [
        "songpos", "start", "stop", "songpos", "continue", "stop"
    ]  # fmt: skip
    spp = [m.pos for _, m in port.sent if m.type == "songpos"]
    start_t = port.times("start")[0] - t0
    stop_t, end_t = port.times("stop") - t0
    cont_t = port.times("continue")[0] - t0
    # first locked beat is 2 (1.25 s): the next downbeat is beat 4 at 2.25 s. Send times are wall
    # clock: a busy machine may delay one send by a few ms, so this checks which beat (0.5 s
    # apart) within 50 ms; the timing itself is checked on the schedule below.
    assert start_t == pytest.approx(2.25, abs=0.05)
    # lock is last seen with beat 11 (5.75 s issued at 5.70): stop 0.6 s later
    assert stop_t == pytest.approx(5.70 + 0.6, abs=0.08)
    # clocks between start and stop: 24 per beat, the beat clocks on the beats. Read from the
    # sink's schedule (send time minus how late each clock left): a busy machine may preempt
    # the clock thread now and then, which delays one send, not the schedule.
    clocks = port.times("clock") - t0
    assert sink._late_n == len(clocks) <= sink.STATS_SIZE
    clocks = clocks - sink._late_s[: len(clocks)]
    run = clocks[(clocks >= start_t - 1e-3) & (clocks < stop_t)]
    beats_at = run[::24]
    grid = 2.25 + 0.5 * np.arange(len(beats_at))
    # the first clock leaves when the start does (wall clock, as above); the rest run on the grid
    assert abs(beats_at[0] - grid[0]) < 0.05
    assert np.abs(beats_at[1:] - grid[1:]).max() < 0.003
    bpm = 60.0 / (np.diff(run[1:]).mean() * 24)  # the grid's own tempo, after that first clock
    assert bpm == pytest.approx(120.0, rel=0.002)
    # relocked with beat 16, a downbeat (8.25 s, issued at 8.20): continue on it, at the bar
    # after the one it stopped in
    assert cont_t == pytest.approx(8.25, abs=0.05)  # which beat; as for the start
    ticks_played = len(run)
    bar = 96
    assert spp == [0, -(-ticks_played // bar) * bar // 6]
    assert end_t == pytest.approx(end_s, abs=0.06)
    assert sink.errors == 0 and sink.dropped == 0
    late = sink.lateness_ms()
    assert late["median"] < 1.0


def test_follows_a_tempo_change_and_phase_smoothly() -> None:
    port = RecordingPort()
    sink = MidiClockSink(MidiClockConfig(start_at_downbeat=False), port=port)
    events: list[Event] = [StreamStartEvent(0, 0.0, 0.0, "test", 44100, 100.0)]
    t = 0.25
    for i in range(16):
        bpm = 120.0 if i < 8 else 126.0
        b = BeatEvent(round(t * 44100), t, t - 0.05, beat_index=i, beat_in_bar=i % 4 + 1,
                      bpm=bpm, confidence=0.9, phase=0.9, is_downbeat=i % 4 == 0, locked=True,
                      predicted=True)  # fmt: skip
        events.append(b)
        t += 60.0 / bpm
    _play(sink, events)
    time.sleep(0.05)
    sink.close()
    clocks = port.times("clock")
    # The sink's schedule: each clock's deadline (its send time minus how late it left). A busy
    # machine may preempt the clock thread now and then; that delays one send, not the schedule.
    late_s = sink._late_s[: len(clocks)]
    assert sink._late_n == len(clocks)
    d = np.diff(clocks - late_s)
    # at most 10 % slew per clock
    smooth = (d < 1.11 * 60.0 / 120.0 / 24) & (d > 0.89 * 60.0 / 126.0 / 24)
    assert smooth.mean() > 0.98
    tail = d[-24:]  # the last beat: at the new tempo
    assert 60.0 / (tail.mean() * 24) == pytest.approx(126.0, rel=0.003)
    assert np.median(late_s) < 1e-3  # and the clocks left on time


# ---------------------------------------------------------------------------------- JACK
_RECEIVER = """
import json, sys, threading, time
import mido
got = []
done = threading.Event()
def on_message(msg):
    got.append((time.monotonic(), msg.type, getattr(msg, "pos", -1)))
    if msg.type == "stop":
        done.set()
backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK", load=True)
port = backend.open_input(sys.argv[1], callback=on_message)
print("READY", flush=True)
done.wait(60.0)
time.sleep(0.1)
port.close()
print(json.dumps(got), flush=True)
"""


@pytest.fixture(scope="module")
def jack_server() -> Iterator[None]:
    """A JACK server with the dummy driver, started before any audio library touches JACK.

    Realtime scheduling where the machine allows it (as on a user's machine): a non-realtime
    server drops the MIDI of every late cycle, and a loaded CI machine makes cycles late.
    """
    pytest.importorskip("rtmidi")
    pytest.importorskip("mido")
    os.environ["JACK_NO_START_SERVER"] = "1"  # libjack must not spawn servers of its own
    if jack_running():  # someone's server is running: use it, leave it alone
        yield
        return
    try:
        server = DummyJackServer().start()
    except JackUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield
    finally:
        server.close()


def test_missing_named_port_is_one_clear_error(jack_server: None) -> None:
    with pytest.raises(OnbeatError, match="no MIDI output port 'no such port 4711'; available"):
        MidiClockSink(MidiClockConfig(port="no such port 4711", api="jack"))


@pytest.mark.slow
def test_clock_through_jack_follows_the_tracker(jack_server: None) -> None:
    """onbeat replays a 120 BPM click track in real time; a mido input on JACK gets the clock."""
    import mido
    from onbeat.realtime.config import OnbeatConfig, apply_overrides
    from onbeat.realtime.demo import click_track
    from onbeat.realtime.engine import Engine
    from onbeat.realtime.sources import ArraySource

    cfg = MidiClockConfig(api="jack", virtual_name=f"clock-test-{os.getpid()}")
    sink = MidiClockSink(cfg)
    backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK", load=True)
    names = [n for n in backend.get_input_names() if n.endswith(":" + cfg.virtual_name)]
    assert len(names) == 1, backend.get_input_names()
    # The receiver runs in its own process, so that its arrival stamps wait for no GIL.
    receiver = subprocess.Popen(
        [sys.executable, "-c", _RECEIVER, names[0]],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "JACK_NO_START_SERVER": "1"},
    )
    assert receiver.stdout is not None
    assert receiver.stdout.readline().strip() == "READY"

    class Beats:
        name = "beats"

        def __init__(self) -> None:
            self.beats: list[BeatEvent] = []
            self.offset_s = np.inf  # wall clock - stream time, least delayed event

        def handle(self, event: Event) -> None:
            self.offset_s = min(self.offset_s, time.monotonic() - event.emitted_s)
            if isinstance(event, BeatEvent):
                self.beats.append(event)

        def tick(self) -> None:
            pass

        def close(self) -> None:
            pass

    beats = Beats()
    try:
        config = apply_overrides(OnbeatConfig(), {"output.console": False})
        click = click_track(duration_s=12.0, bpm=120.0)
        engine = Engine(config, sinks=[sink, beats])
        engine.run_paced(ArraySource(click.samples, click.sample_rate_hz, "click"))
        time.sleep(0.3)
    finally:
        sink.close()
        try:
            out, _ = receiver.communicate(timeout=10)
        finally:
            if receiver.poll() is None:
                receiver.kill()
    got = [(float(t), k, int(pos)) for t, k, pos in json.loads(out.strip().splitlines()[-1])]
    kinds = [k for _, k, _ in got]
    # onbeat sent exactly one song position, one start and one stop ...
    assert sink.song_positions == 1 and sink.starts == 1 and sink.stops == 1
    # ... but JACK on a loaded machine (one CI run in five, beside other jobs) once delivered
    # that song position three times and lost the start written in the same cycle. Repeats
    # and a lost start are the transport's; anything else is onbeat's.
    transport = [k for k in kinds if k != "clock"]
    runs = [k for i, k in enumerate(transport) if i == 0 or k != transport[i - 1]]
    assert runs in (["songpos", "start", "stop"], ["songpos", "stop"]), transport[:10]
    assert got[kinds.index("songpos")][2] == 0
    if "start" in kinds:
        t_start = got[kinds.index("start")][0]
    else:
        warnings.warn("JACK lost the MIDI start (a late cycle); timing from the first clock",
                      stacklevel=1)  # fmt: skip
        t_start = next(t for t, k, _ in got if k == "clock")
    t_stop = got[kinds.index("stop")][0]
    clocks = np.array([t for t, k, _ in got if k == "clock" and t_start <= t <= t_stop])
    assert len(clocks) > 24 * 10
    locked_bpm = float(np.median([b.bpm for b in beats.beats if b.locked]))
    assert locked_bpm == pytest.approx(120.0, rel=0.005)
    # tempo from the clock intervals: a least-squares line through the arrival times
    n = np.arange(len(clocks))
    slope = np.polyfit(n, clocks, 1)[0]
    clock_bpm = 60.0 / (slope * 24)
    intervals_ms = np.diff(clocks) * 1e3
    late = sink.lateness_ms()
    # phase: each beat's first clock against onbeat's beat (JACK adds 0..1 period, 5.3 ms)
    beat_wall = np.array([b.time_s for b in beats.beats]) + beats.offset_s
    on_beat = clocks[::24]
    phase_ms = np.array([(t - beat_wall[np.argmin(np.abs(beat_wall - t))]) * 1e3 for t in on_beat])
    print(
        f"\nMIDI clock via JACK: {len(clocks)} clocks, {clock_bpm:.3f} BPM from the intervals "
        f"(tracker {locked_bpm:.3f}); intervals {intervals_ms.mean():.2f} ms, jitter (std) "
        f"{intervals_ms.std():.2f} ms, range {intervals_ms.min():.2f}..{intervals_ms.max():.2f}"
        f" ms; beat clocks after onbeat's "
        f"beats: median {np.median(phase_ms):.1f} ms, range {phase_ms.min():.1f}.."
        f"{phase_ms.max():.1f} ms; sender lateness median {late['median'] * 1e3:.0f} µs, p99 "
        f"{late['p99'] * 1e3:.0f} µs, max {late['max'] * 1e3:.0f} µs"
    )
    assert -2.0 < np.median(phase_ms) < 8.0
    # Every beat clock within 15 ms of the beat, beyond what the sink itself reports: on a busy
    # machine the clock thread is sometimes preempted (one clock left 11 ms late in a CI run
    # beside a training job and arrived 20 ms after the beat); that delay is measured and
    # bounded here separately, so the 15 ms stays the transport's budget.
    assert late["p99"] < 5.0
    assert np.abs(phase_ms).max() < 15.0 + late["max"]
    assert clock_bpm == pytest.approx(locked_bpm, rel=0.005)
    assert clock_bpm == pytest.approx(120.0, rel=0.005)
    assert sink.errors == 0 and sink.stops == 1 and sink.starts == 1


def test_jack_log_late_cycles_are_counted_per_client() -> None:
    log = (
        "JACK server starting in non-realtime mode\n"
        "JackEngine::XRun: client = tx was not finished, state = Triggered\n"
        "JackEngine::XRun: client = rx was not finished, state = Triggered\n"
        "JackTimedDriver::Process XRun = 5 usec\n"
        "JackEngine::XRun: client = onbeat midi clock was not finished, state = Running\n"
        "JackAudioDriver::ProcessGraphAsyncMaster: Process error\n"
        "JackEngine::XRun: client = tx was not finished, state = Triggered\n"
    )
    assert count_xruns(log) == {"tx": 2, "rx": 1, "onbeat midi clock": 1, "(driver)": 1}
    assert count_xruns("") == {}


def test_private_jack_server_starts_counts_and_restores_the_environment() -> None:
    """A second, privately named dummy server: realtime as allowed, its log read, env restored."""
    pytest.importorskip("rtmidi")
    with pytest.raises(ValueError, match="realtime"):
        DummyJackServer(realtime="sometimes")
    before = os.environ.get("JACK_DEFAULT_SERVER")
    name = f"onbeat-test-{os.getpid()}"
    try:
        server = DummyJackServer(name).start()
    except JackUnavailable as exc:
        pytest.skip(str(exc))
    try:
        assert os.environ["JACK_DEFAULT_SERVER"] == name
        assert server.realtime == realtime_allowed()
        assert jack_running()
        mode = "in realtime mode" if server.realtime else "in non-realtime mode"
        assert mode in server.log()
        assert isinstance(server.xruns(), dict)
    finally:
        server.close()
    assert os.environ.get("JACK_DEFAULT_SERVER") == before
