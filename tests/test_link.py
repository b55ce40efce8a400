"""Ableton Link: the policy against a simulated session, and two real aalink peers on loopback.

The two-peer test runs in a child process that first moves into a private network namespace
(``unshare(CLONE_NEWNET)``, see ``tests/netns.py``), where loopback is the only interface: Link
discovers peers by multicast on every interface that is up, and this keeps its traffic on the
machine. Where no namespace can be made (no privilege for it), that test is skipped with the
reason.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from netns import private_network
from onbeat.realtime.errors import ConfigError, OnbeatError
from onbeat.realtime.events import BeatEvent, StreamEndEvent, StreamStartEvent, TempoEvent
from onbeat.realtime.link_sink import LinkConfig, LinkController, LinkSink, parse_link_options

pytestmark = pytest.mark.timeout(240)


# ---------------------------------------------------------------------------------- config
def test_parse_link_options() -> None:
    assert parse_link_options("") == LinkConfig()
    c = parse_link_options("min_confidence=0.8, yield_s=15,force_phase=false,offset_ms=-12")
    assert (c.min_confidence, c.yield_s, c.force_phase, c.offset_ms) == (0.8, 15.0, False, -12.0)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_link_options("bogus=1")
    with pytest.raises(ConfigError, match="not a number"):
        parse_link_options("yield_s=soon")
    with pytest.raises(ConfigError, match="true or false"):
        parse_link_options("force_phase=maybe")
    with pytest.raises(ConfigError, match=r"link\.min_confidence"):
        parse_link_options("min_confidence=2")
    with pytest.raises(ConfigError, match=r"link\.initial_bpm"):
        LinkConfig(initial_bpm=5.0)


def test_missing_aalink_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aalink", None)  # import fails
    with pytest.raises(OnbeatError, match="needs the aalink package"):
        LinkSink()


# ---------------------------------------------------------------------------------- policy
STREAM_AT_S = 50.0  # wall-clock (fake monotonic) time of stream time 0


class _Clock:
    def __init__(self) -> None:
        self.now = STREAM_AT_S

    def __call__(self) -> float:
        return self.now


class FakeLink:
    """A Link session timeline: ``beat = b0 + (t - t0) * tempo / 60``, the Link clock offset."""

    OFFSET_S = 5000.0

    def __init__(self, clock: _Clock, bpm: float = 100.0, peers: int = 0) -> None:
        self._clock = clock
        self.quantum = 1.0
        self.num_peers = peers
        self._tempo = bpm
        self._t0 = clock()
        self._b0 = 0.0
        self.forced: list[float] = []
        self.requested: list[float] = []
        self.tempo_sets: list[float] = []
        self.skew_once = 0.0  # added to the next beat read only (a thread switch between reads)
        self.stall_reads = 0  # the next beat reads each run 8 ms late (a switch inside the read)

    @property
    def time(self) -> timedelta:
        return timedelta(seconds=self._clock() + self.OFFSET_S)

    def beat_at(self, wall_s: float) -> float:
        return self._b0 + (wall_s - self._t0) * self._tempo / 60.0

    @property
    def beat(self) -> float:
        skew, self.skew_once = self.skew_once, 0.0
        if self.stall_reads > 0:
            self.stall_reads -= 1
            self._clock.now += 0.008
        return self.beat_at(self._clock()) + skew

    @property
    def tempo(self) -> float:
        return self._tempo

    @tempo.setter
    def tempo(self, bpm: float) -> None:
        self.tempo_sets.append(bpm)
        self.peer_tempo(bpm)

    def peer_tempo(self, bpm: float) -> None:
        """Change the tempo, keeping the beat now (as Link's setTempo does)."""
        self._b0, self._t0, self._tempo = self.beat, self._clock(), bpm

    def _map(self, beat: float) -> None:
        self._b0, self._t0 = beat, self._clock()

    def request_beat(self, beat: float, /) -> None:
        self.requested.append(beat)
        self._map(beat)

    def force_beat(self, beat: float, /) -> None:
        self.forced.append(beat)
        self._map(beat)


def _beat(
    i: int, *, bpm: float = 120.0, locked: bool = True, conf: float = 0.9, flicker: bool = False
) -> BeatEvent:
    """Beat ``i`` of a 120 BPM grid starting at 0.5 s, issued 50 ms ahead; 4/4 (``flicker``: a
    bar estimate that says 2, 3, 2, 3, ...)."""
    t = 0.5 + i * 60.0 / bpm
    bib = 2 + i % 2 if flicker else i % 4 + 1
    return BeatEvent(round(t * 44100), t, t - 0.05, beat_index=i, beat_in_bar=bib, bpm=bpm,
                     confidence=conf, phase=0.9, is_downbeat=bib == 1, locked=locked,
                     predicted=True)  # fmt: skip


def _tempo(
    t: float, *, bpm: float = 120.0, locked: bool = True, conf: float = 0.9, flicker: bool = False
) -> TempoEvent:
    return TempoEvent(round(t * 44100), t, t, bpm=bpm, confidence=conf, locked=locked,
                      beats_per_bar=4)  # fmt: skip


class _Rig:
    """A controller on a fake session, fed beats in (fake) real time."""

    def __init__(self, *, peers: int = 0, **cfg: Any) -> None:
        self.clock = _Clock()
        self.link = FakeLink(self.clock, bpm=100.0, peers=peers)
        self.ctl = LinkController(LinkConfig(**cfg), self.link, clock=self.clock)
        self.next_beat = 0

    def run_until(self, stream_s: float, **beat_kw: Any) -> None:
        """Deliver the beats due before ``stream_s`` and poll at 20 Hz (fake time)."""
        while self.clock.now < STREAM_AT_S + stream_s:
            ev = _beat(self.next_beat, **beat_kw)
            while ev.emitted_s + STREAM_AT_S <= self.clock.now:
                self.ctl.on_event(ev.emitted_s + STREAM_AT_S, ev)
                self.ctl.on_event(ev.emitted_s + STREAM_AT_S, _tempo(ev.emitted_s, **beat_kw))
                self.next_beat += 1
                ev = _beat(self.next_beat, **beat_kw)
            self.ctl.update()
            self.clock.now += 0.05

    def phase_error_ms(self, i: int) -> float:
        """Session bar position at onbeat's beat ``i`` against its beat_in_bar - 1, in ms."""
        ev = _beat(i)
        b = self.link.beat_at(ev.time_s + STREAM_AT_S)
        err = (b - (ev.beat_in_bar - 1) + 2.0) % 4.0 - 2.0
        return err * 60e3 / self.link.tempo


def test_unsure_tracker_imposes_nothing() -> None:
    rig = _Rig()
    rig.ctl.on_event(STREAM_AT_S, StreamStartEvent(0, 0.0, 0.0, "x", 44100, 100.0))
    rig.run_until(5.0, locked=False, conf=0.9)
    rig.run_until(10.0, locked=True, conf=0.3)
    assert rig.link.tempo_sets == [] and rig.link.requested == [] and rig.link.forced == []
    assert rig.ctl.state == "waiting"


def test_alone_locked_proposes_tempo_and_aligns_bar_phase() -> None:
    rig = _Rig()
    rig.run_until(3.0)
    assert rig.ctl.state == "leading"
    assert rig.link.tempo == pytest.approx(120.0)
    assert rig.link.requested and not rig.link.forced  # alone: the polite request
    assert rig.link.quantum == 4
    for i in range(rig.next_beat, rig.next_beat + 8):
        assert abs(rig.phase_error_ms(i)) < 0.5
    assert rig.ctl.peer_changes == 0  # its own commits are not mistaken for a peer's


def test_a_flickering_bar_estimate_never_moves_the_bar() -> None:
    rig = _Rig(peers=1)
    rig.run_until(10.0, flicker=True)
    assert 1 <= len(rig.link.forced) <= 2  # the beat phase, once (plus a tempo-drift fix)
    for i in range(rig.next_beat, rig.next_beat + 4):
        err = rig.phase_error_ms(i)
        assert abs((err / 500.0 + 0.5) % 1.0 - 0.5) * 500.0 < 0.5  # on the beat, any bar


def test_with_peers_forces_phase_only_when_allowed() -> None:
    rig = _Rig(peers=1)
    rig.run_until(3.0)
    assert rig.link.forced and not rig.link.requested
    assert abs(rig.phase_error_ms(rig.next_beat)) < 0.5
    polite = _Rig(peers=1, force_phase=False)
    polite.run_until(3.0)
    assert polite.link.tempo == pytest.approx(120.0)
    assert polite.link.forced == [] and polite.link.requested == []


def test_tempo_hysteresis_and_follows_the_music() -> None:
    rig = _Rig(tempo_tolerance_pct=0.5, phase_tolerance_ms=200.0)
    rig.run_until(3.0)
    n = len(rig.link.tempo_sets)
    rig.run_until(6.0, bpm=120.3)  # 0.25 %: within tolerance, no new proposal
    assert len(rig.link.tempo_sets) == n
    rig.run_until(9.0, bpm=121.0)  # 0.83 %: follows the music
    assert rig.link.tempo == pytest.approx(121.0)


def test_phase_correction_also_fixes_a_small_tempo_error() -> None:
    rig = _Rig(tempo_tolerance_pct=1.0)
    rig.run_until(2.0)
    rig.link.peer_tempo(120.5)  # a peer's small change: yield first
    rig.run_until(2.0 + rig.ctl.config.yield_s + 5.0)
    assert rig.link.tempo == pytest.approx(120.0)  # set again with the phase correction


def test_never_fights_a_peer() -> None:
    rig = _Rig(peers=1, yield_s=4.0)
    rig.run_until(3.0)
    assert rig.ctl.state == "leading"
    rig.link.peer_tempo(90.0)
    proposals = rig.ctl.tempo_proposals
    rig.run_until(6.5)
    assert rig.ctl.peer_changes == 1 and rig.ctl.state == "yielding"
    assert rig.link.tempo == 90.0 and rig.ctl.tempo_proposals == proposals
    rig.run_until(8.0)
    assert rig.ctl.state == "leading" and rig.link.tempo == pytest.approx(120.0)
    # a peer shifting the phase is a peer change too
    rig.run_until(10.0)
    forced = len(rig.link.forced)
    rig.link._b0 += 0.5
    rig.run_until(11.0)
    assert rig.ctl.peer_changes == 2 and len(rig.link.forced) == forced


def test_a_one_poll_read_skew_is_not_a_peer_change() -> None:
    rig = _Rig(peers=1, yield_s=4.0)
    rig.run_until(3.0)
    assert rig.ctl.state == "leading"
    forced = len(rig.link.forced)
    rig.link.skew_once = 0.016  # 8 ms at 120 BPM, seen by one poll only
    rig.run_until(4.0)
    assert rig.ctl.peer_changes == 0 and rig.ctl.state == "leading"
    assert len(rig.link.forced) == forced  # nor did onbeat "correct" the phantom jump


@pytest.mark.parametrize("stalls", [2, 7])
def test_thread_switches_inside_session_reads_are_not_a_peer_change(stalls: int) -> None:
    """Reads stalled by a busy machine on several polls in a row (2: one poll's retries; 7: two
    polls with no tight read) are dropped, not taken for a peer's phase jump."""
    rig = _Rig(peers=1, yield_s=4.0)
    rig.run_until(3.0)
    assert rig.ctl.state == "leading"
    forced = len(rig.link.forced)
    rig.link.stall_reads = stalls
    rig.run_until(4.0)
    assert rig.link.stall_reads == 0
    assert rig.ctl.peer_changes == 0 and rig.ctl.state == "leading"
    assert len(rig.link.forced) == forced


def test_stream_end_stops_proposing() -> None:
    rig = _Rig()
    rig.run_until(3.0)
    rig.ctl.on_event(rig.clock.now, StreamEndEvent(0, 3.0, 3.0, frames=300, reason="eof"))
    rig.link.peer_tempo(100.0)
    for _ in range(100):
        rig.ctl.update()
        rig.clock.now += 0.05
    assert rig.link.tempo == 100.0 and rig.ctl.state == "stopped"


# ---------------------------------------------------------------------------------- two peers
def _two_peer_scenario(*, yield_s: float, change_at_s: float, duration_s: float) -> dict[str, Any]:
    """onbeat (click track, paced) and an observer peer; returns what the observer saw."""
    import asyncio
    import threading
    import time

    import numpy as np
    from aalink import Link
    from onbeat.realtime.config import OnbeatConfig, apply_overrides
    from onbeat.realtime.demo import click_track
    from onbeat.realtime.engine import Engine
    from onbeat.realtime.events import Event
    from onbeat.realtime.link_sink import LinkSink
    from onbeat.realtime.sources import ArraySource

    class Collector:
        name = "collector"

        def __init__(self) -> None:
            self.events: list[tuple[float, Event]] = []

        def handle(self, event: Event) -> None:
            self.events.append((time.monotonic(), event))

        def tick(self) -> None:
            pass

        def close(self) -> None:
            pass

    out: dict[str, Any] = {}

    async def main() -> None:
        observer = Link(100.0)  # first in: the session onbeat joins
        observer.quantum = 4
        observer.enabled = True
        # Link lets the older session win when two meet, but only by more than 0.5 s
        await asyncio.sleep(1.5)
        cfg = LinkConfig(yield_s=yield_s)
        sink = LinkSink(cfg)
        t0 = time.monotonic()
        while observer.num_peers < 1 and time.monotonic() - t0 < 10.0:
            await asyncio.sleep(0.05)
        out["discovery_s"] = time.monotonic() - t0
        out["peers"] = int(observer.num_peers)
        collector = Collector()
        config = apply_overrides(OnbeatConfig(), {"output.console": False})
        click = click_track(duration_s=duration_s, bpm=120.0)
        engine = Engine(config, sinks=[sink, collector])
        done = threading.Event()

        def play() -> None:
            try:
                engine.run_paced(ArraySource(click.samples, click.sample_rate_hz, "click"))
            finally:
                done.set()

        threading.Thread(target=play, name="engine", daemon=True).start()
        samples: list[tuple[float, float, float, float]] = []  # wall, beat, tempo, phase q=4
        changed_at = math.nan
        off = math.nan
        best = math.inf
        next_offset = 0.0
        while not done.is_set():
            now = time.monotonic()
            if now >= next_offset:  # the observer's Link clock against time.monotonic
                for _ in range(3):
                    a = time.monotonic()
                    lt = observer.time.total_seconds()
                    b = time.monotonic()
                    if b - a < best:
                        best, off = b - a, lt - 0.5 * (a + b)
                next_offset = now + 1.0
                best = math.inf
            lt = observer.time.total_seconds()
            beat, tempo = observer.beat, observer.tempo
            samples.append((lt - off, beat, tempo, beat % 4.0))
            stream_offsets = [w - e.emitted_s for w, e in collector.events[-50:]]
            if (
                math.isnan(changed_at)
                and stream_offsets
                and now - min(stream_offsets) >= change_at_s
            ):
                observer.tempo = 90.0  # a peer changes the tempo: onbeat must yield
                changed_at = now
            await asyncio.sleep(0.05)
        sink.close()
        observer.enabled = False
        out["controller"] = {
            "tempo_proposals": sink.controller.tempo_proposals if sink.controller else -1,
            "phase_corrections": sink.controller.phase_corrections if sink.controller else -1,
            "peer_changes": sink.controller.peer_changes if sink.controller else -1,
            "errors": sink.errors,
        }
        # ---- analysis: onbeat's own beats against what the observer saw
        ev = collector.events
        stream_off = min(w - e.emitted_s for w, e in ev)  # wall = stream + stream_off
        beats = [e for _, e in ev if isinstance(e, BeatEvent)]
        sure = [b for b in beats if b.locked and b.confidence >= cfg.min_confidence]
        lock_wall = stream_off + min(
            e.emitted_s
            for _, e in ev
            if isinstance(e, BeatEvent | TempoEvent)
            and e.locked
            and e.confidence >= cfg.min_confidence
        )
        bt = np.array([b.time_s for b in beats])
        tracker_bpm = float(np.median([b.bpm for b in sure]))
        # bar positions consistent with the previous beat's, in a row (the controller moves the
        # session's bar only after LinkController.BAR_HOLD_BEATS of them)
        run = [0] * len(beats)
        for k in range(1, len(beats)):
            a, b = beats[k - 1], beats[k]
            ok = (a.beat_in_bar - 1 + b.beat_index - a.beat_index) % 4 == b.beat_in_bar - 1
            run[k] = run[k - 1] + 1 if ok else 0
        out["bar_flips"] = sum(1 for k in range(1, len(run)) if run[k] == 0)

        def err(w: float, beat: float, tempo: float) -> tuple[float, float, bool]:
            t = w - stream_off
            i = int(np.argmin(np.abs(bt - t)))
            b = beats[i]
            mine = (b.beat_in_bar - 1) + (t - b.time_s) * b.bpm / 60.0
            d = (beat - mine + 2.0) % 4.0 - 2.0
            beat_err = (d + 0.5) % 1.0 - 0.5
            steady = run[i] >= LinkController.BAR_HOLD_BEATS + 2
            return beat_err * 60e3 / tempo, d * 60e3 / tempo, steady

        def window(lo: float, hi: float) -> dict[str, Any]:
            rows = [s for s in samples if lo <= s[0] <= hi]
            if not rows:
                return {"n": 0}
            errs = [err(w, bt_, tp) for w, bt_, tp, _ in rows]
            e = np.array([x[0] for x in errs])
            bar = np.array([x[1] for x in errs if x[2]])
            tempos = np.array([r[2] for r in rows])
            return {
                "n": len(rows),
                "tempo_min": float(tempos.min()),
                "tempo_max": float(tempos.max()),
                "beat_err_ms_max": float(np.abs(e).max()),
                "beat_err_ms_median": float(np.median(np.abs(e))),
                "worst_at_s": float(rows[int(np.argmax(np.abs(e)))][0] - lo),
                "bar_n": len(bar),
                "bar_err_ms_max": float(np.abs(bar).max()) if len(bar) else None,
            }

        end_wall = samples[-1][0]
        out["tracker_bpm"] = tracker_bpm
        out["lock_stream_s"] = lock_wall - stream_off
        # onbeat leads from its first commit, once its tempo settled after the lock
        lead_wall = min(
            (w for w, _, tp, _ in samples if w > lock_wall and abs(tp - 100.0) > 1e-6),
            default=math.nan,
        )
        out["lead_after_lock_s"] = lead_wall - lock_wall
        out["before_lock"] = window(t0, lock_wall - 0.05)
        out["settling"] = window(lock_wall, lead_wall - 0.05)
        out["leading"] = window(lead_wall + 1.0, changed_at - 0.05)
        out["yielding"] = window(changed_at + 0.3, changed_at + yield_s - 0.3)
        out["leading_again"] = window(changed_at + yield_s + 1.0, end_wall)

    asyncio.run(main())
    return out


def _run_child(**kwargs: Any) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--two-peers", json.dumps(kwargs)],
        capture_output=True,
        text=True,
        timeout=200,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"two-peer child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return result


@pytest.mark.slow
def test_two_peers_on_loopback_follow_onbeat() -> None:
    pytest.importorskip("aalink")
    r = _run_child(yield_s=3.0, change_at_s=11.0, duration_s=19.0)
    if "skip" in r:
        pytest.skip(r["skip"])
    print(json.dumps(r, indent=1))
    assert r["peers"] == 1, "the observer never saw onbeat's peer"
    assert r["controller"]["errors"] == 0
    # joined without imposing: the observer's 100 BPM held until onbeat was sure
    assert r["before_lock"]["n"] > 0
    assert r["before_lock"]["tempo_min"] == pytest.approx(100.0, rel=1e-4)
    assert r["before_lock"]["tempo_max"] == pytest.approx(100.0, rel=1e-4)
    # ... and while its tempo settled after the lock (at most a few beats)
    assert 0.0 < r["lead_after_lock_s"] < 6.0
    if r["settling"]["n"]:
        assert r["settling"]["tempo_max"] == pytest.approx(100.0, rel=1e-4)
    assert r["tracker_bpm"] == pytest.approx(120.0, rel=0.01)
    for key in ("leading", "leading_again"):
        w = r[key]
        assert w["n"] > 20, key
        assert w["tempo_min"] == pytest.approx(r["tracker_bpm"], rel=0.01), key
        assert w["tempo_max"] == pytest.approx(r["tracker_bpm"], rel=0.01), key
        assert w["beat_err_ms_max"] < 20.0, key
        if w["bar_n"]:  # where the tracker's bar position was steady: the bar phase too
            assert w["bar_err_ms_max"] < 20.0, key
    # never fights: the observer's 90 BPM stands for yield_s
    y = r["yielding"]
    assert y["n"] > 10
    assert y["tempo_min"] == pytest.approx(90.0, rel=1e-4)
    assert y["tempo_max"] == pytest.approx(90.0, rel=1e-4)
    assert r["controller"]["peer_changes"] >= 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--two-peers":
        reason = private_network()
        if reason is not None:
            print("RESULT " + json.dumps({"skip": reason}), flush=True)
        else:
            res = _two_peer_scenario(**json.loads(sys.argv[2]))
            print("RESULT " + json.dumps(res), flush=True)
