"""What the window shows, built from events on the GUI thread (no Qt here, so it tests alone).

:class:`DisplayState` folds the events drained from the GUI's bus subscription into fixed-size
NumPy rings (onsets, beats, tempo history, valence/arousal trail) and a handful of scalars (BPM,
confidence, lock, level, device, tags, the nearest reference tracks and the scene, health). Its
memory is allocated once: an hour of events leaves it the size it started at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from onbeat.realtime.commands import CommandEvent
from onbeat.realtime.events import (
    BeatEvent,
    DeviceEvent,
    Event,
    HealthEvent,
    LevelEvent,
    OnsetEvent,
    SimilarEvent,
    StreamEndEvent,
    StreamStartEvent,
    TagsEvent,
    TempoEvent,
)

__all__ = ["DisplayState", "Flash", "TimeRing"]

_FLOOR_DBFS = -120.0


class TimeRing:
    """A fixed-size ring of timed values, newest last.

    Parameters
    ----------
    capacity : int
        Entries kept.
    fields : tuple of str
        Names of float64 value columns besides ``time_s``.
    """

    def __init__(self, capacity: int, fields: tuple[str, ...] = ()) -> None:
        self.capacity = int(capacity)
        self.time_s = np.full(self.capacity, np.nan)
        self.columns = {f: np.zeros(self.capacity) for f in fields}
        self.count = 0  # entries ever appended

    def append(self, time_s: float, **values: float) -> int:
        """Add an entry; returns its slot."""
        i = self.count % self.capacity
        self.time_s[i] = time_s
        for k, v in values.items():
            self.columns[k][i] = v
        self.count += 1
        return i

    def slot_of_recent(self, back: int) -> int | None:
        """Slot of the entry ``back`` places before the newest (0 = newest), if kept."""
        if back >= min(self.count, self.capacity):
            return None
        return (self.count - 1 - back) % self.capacity

    def between(self, t0_s: float, t1_s: float) -> npt.NDArray[np.intp]:
        """Slots whose time lies in ``[t0_s, t1_s]`` (unordered)."""
        t = self.time_s
        with np.errstate(invalid="ignore"):
            return np.flatnonzero((t >= t0_s) & (t <= t1_s))

    def clear(self) -> None:
        """Forget every entry (no reallocation)."""
        self.time_s.fill(np.nan)
        for c in self.columns.values():
            c.fill(0.0)
        self.count = 0


@dataclass(slots=True)
class Flash:
    """The last beat that reached the playhead.

    Attributes
    ----------
    beat_index : int
        Its index (-1: none yet).
    beat_in_bar : int
        Its bar position (1 = downbeat; 0 = unknown).
    downbeat : bool
        Whether it is a downbeat.
    wall_s : float
        Monotonic wall time at which the display saw it.
    """

    beat_index: int = -1
    beat_in_bar: int = 0
    downbeat: bool = False
    wall_s: float = -math.inf


class DisplayState:
    """Event-driven model of the display.

    Parameters
    ----------
    onsets, beats, tempo : int
        Capacities of the onset, beat and tempo-history rings.
    """

    def __init__(self, *, onsets: int = 512, beats: int = 256, tempo: int = 2048) -> None:
        self.onsets = TimeRing(onsets, ("strength",))
        self.beats = TimeRing(beats, ("index", "bar_pos", "downbeat", "predicted", "emitted_s"))
        self.tempo = TimeRing(tempo, ("bpm", "confidence"))
        self.va_trail = TimeRing(64, ("valence", "arousal"))
        self.flash = Flash()
        self.reset()

    def reset(self) -> None:
        """Forget the stream (a new one is starting)."""
        self.onsets.clear()
        self.beats.clear()
        self.tempo.clear()
        self.va_trail.clear()
        self.flash = Flash()
        self.now_s = 0.0
        self.bpm = math.nan
        self.confidence = 0.0
        self.locked = False
        self.beats_per_bar = 4
        self.rms_dbfs = _FLOOR_DBFS
        self.peak_dbfs = _FLOOR_DBFS
        self.peak_hold_dbfs = _FLOOR_DBFS
        self.peak_hold_wall_s = -math.inf
        self.source = ""
        self.device = ""
        self.device_state = ""
        self.device_rate_hz = 0
        self.sample_rate_hz = 0
        self.frame_rate_hz = 0.0
        self.ended = ""
        self.genre: tuple[tuple[str, float], ...] = ()
        self.mood: tuple[tuple[str, float], ...] = ()
        self.valence = math.nan
        self.arousal = math.nan
        self.voice = math.nan
        self.energy = math.nan
        self.health: HealthEvent | None = None
        self.last_command = ""
        self.counts: dict[str, int] = {}
        self.tags_version = 0
        self.nearest: tuple[tuple[str, float], ...] = ()
        self.scene = ""
        self.scene_since_s = math.nan
        self.similar_version = 0

    # ------------------------------------------------------------------ events
    def apply(self, events: list[Event], wall_s: float) -> None:
        """Fold drained events into the state (GUI thread)."""
        counts = self.counts
        for e in events:
            counts[e.type] = counts.get(e.type, 0) + 1
            if e.emitted_s > self.now_s:
                self.now_s = e.emitted_s
            if isinstance(e, OnsetEvent):
                self.onsets.append(e.time_s, strength=e.strength)
            elif isinstance(e, BeatEvent):
                self._beat(e)
            elif isinstance(e, TempoEvent):
                self.bpm = e.bpm
                self.confidence = e.confidence
                self.locked = e.locked
                self.beats_per_bar = max(1, e.beats_per_bar)
                if e.bpm > 0:  # 0 means "no tempo yet": nothing to plot
                    self.tempo.append(e.time_s, bpm=e.bpm, confidence=e.confidence)
            elif isinstance(e, LevelEvent):
                self.rms_dbfs = e.rms_dbfs
                self.peak_dbfs = e.peak_dbfs
                if e.peak_dbfs >= self.peak_hold_dbfs or wall_s - self.peak_hold_wall_s > 1.5:
                    self.peak_hold_dbfs = e.peak_dbfs
                    self.peak_hold_wall_s = wall_s
            elif isinstance(e, TagsEvent):
                self.genre = e.genre
                self.mood = e.mood_quadrant
                self.valence, self.arousal = e.valence, e.arousal
                self.voice, self.energy = e.voice, e.energy
                self.va_trail.append(e.time_s, valence=e.valence, arousal=e.arousal)
                self.tags_version += 1
            elif isinstance(e, SimilarEvent):
                self.nearest = e.nearest
                if e.scene != self.scene or e.scene_changed:
                    self.scene_since_s = e.time_s if e.scene else math.nan
                self.scene = e.scene
                self.similar_version += 1
            elif isinstance(e, DeviceEvent):
                self.device = e.device
                self.device_state = e.state
                self.device_rate_hz = e.device_rate_hz
            elif isinstance(e, StreamStartEvent):
                self.source = e.source
                self.sample_rate_hz = e.sample_rate_hz
                self.frame_rate_hz = e.frame_rate_hz
                self.ended = ""
            elif isinstance(e, StreamEndEvent):
                self.ended = e.reason
            elif isinstance(e, HealthEvent):
                self.health = e
            elif isinstance(e, CommandEvent):
                args = ", ".join(f"{a:g}" for a in e.args)
                verdict = "applied" if e.ok else "not applied (no beat tracker yet)"
                self.last_command = f"{e.kind}({args}) {verdict}"

    def _beat(self, e: BeatEvent) -> None:
        """Add a beat, or update it in place when the tracker revises a recent prediction."""
        ring = self.beats
        idx = ring.columns["index"]
        slot = None
        for back in range(8):
            s = ring.slot_of_recent(back)
            if s is None:
                break
            if idx[s] == e.beat_index:
                slot = s
                break
        values = {
            "index": float(e.beat_index),
            "bar_pos": float(e.beat_in_bar),
            "downbeat": 1.0 if e.is_downbeat else 0.0,
            "predicted": 1.0 if e.predicted else 0.0,
            "emitted_s": e.emitted_s,
        }
        if slot is None:
            ring.append(e.time_s, **values)
        else:
            ring.time_s[slot] = e.time_s
            for k, v in values.items():
                ring.columns[k][slot] = v
        if not math.isfinite(self.bpm) or e.bpm > 0:
            self.bpm = e.bpm
        self.confidence = e.confidence
        self.locked = e.locked

    # ------------------------------------------------------------------ time
    def advance(self, now_s: float, wall_s: float) -> bool:
        """Move the playhead to ``now_s``; True when a new beat reached it (flash)."""
        if now_s > self.now_s:
            self.now_s = now_s
        ring = self.beats
        best = -1
        best_t = -math.inf
        t = ring.time_s
        for back in range(min(ring.count, ring.capacity, 16)):
            s = (ring.count - 1 - back) % ring.capacity
            ts = t[s]
            if ts <= self.now_s and ts > best_t:
                best, best_t = s, ts
        if best < 0:
            return False
        index = int(ring.columns["index"][best])
        if index == self.flash.beat_index:
            return False
        self.flash = Flash(
            beat_index=index,
            beat_in_bar=int(ring.columns["bar_pos"][best]),
            downbeat=bool(ring.columns["downbeat"][best]),
            wall_s=wall_s,
        )
        return True

    def flash_level(self, wall_s: float, decay_s: float = 0.12) -> float:
        """Brightness of the beat flash in [0, 1], decaying after the beat."""
        dt = wall_s - self.flash.wall_s
        if dt < 0 or not math.isfinite(dt):
            return 0.0
        return math.exp(-dt / decay_s)

    def predicted_beats(
        self, horizon_s: float, out: npt.NDArray[np.float64]
    ) -> tuple[int, npt.NDArray[np.float64]]:
        """Beat times in ``(now, now + horizon_s]``: the tracker's predictions, then extrapolated.

        Parameters
        ----------
        horizon_s : float
            How far ahead to look.
        out : ndarray of float64
            Receives the times (its length bounds how many).

        Returns
        -------
        n : int
            Times written to ``out``.
        downbeat : ndarray of bool
            Which of ``out[:n]`` are downbeats (a small new array).
        """
        now = self.now_s
        ring = self.beats
        slots = ring.between(now + 1e-9, now + horizon_s)
        n = 0
        down = np.zeros(out.shape[0], dtype=bool)
        last_t, last_pos = -math.inf, 0
        for s in slots[np.argsort(ring.time_s[slots])]:
            if n >= out.shape[0]:
                break
            out[n] = ring.time_s[s]
            down[n] = bool(ring.columns["downbeat"][s])
            last_t, last_pos = ring.time_s[s], int(ring.columns["bar_pos"][s])
            n += 1
        if not math.isfinite(last_t):  # extrapolate from the newest past beat
            s = ring.slot_of_recent(0)
            if s is not None:
                last_t, last_pos = ring.time_s[s], int(ring.columns["bar_pos"][s])
        if math.isfinite(last_t) and math.isfinite(self.bpm) and self.bpm > 0:
            period = 60.0 / self.bpm
            k = max(1, math.floor((now - last_t) / period) + 1)
            bpb = self.beats_per_bar
            while n < out.shape[0]:
                t = last_t + k * period
                if t > now + horizon_s:
                    break
                if t > now:
                    out[n] = t
                    down[n] = last_pos > 0 and (last_pos - 1 + k) % bpb == 0
                    n += 1
                k += 1
        return n, down[:n]
