"""Time helpers shared by the output sinks (OSC, Ableton Link, MIDI clock).

* :class:`StreamClock` maps stream seconds (what events carry) to ``time.monotonic`` seconds
  from the arrival of the events.
* :class:`TrackerFollower` keeps the tracker's beat grid (last beat, tempo, lock, bar length) as
  seen from a sink's events, for sinks that run their own clock on it (Link, MIDI clock).
* :class:`RateLimitedLog` logs at most one line per interval and counts the rest.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from typing import Any

from onbeat.realtime.events import (
    BeatEvent,
    Event,
    StreamEndEvent,
    StreamStartEvent,
    TempoEvent,
)

__all__ = ["RateLimitedLog", "StreamClock", "TrackerFollower"]


class RateLimitedLog:
    """At most one log line per ``interval_s``; the lines in between are counted and reported."""

    def __init__(self, logger: logging.Logger, interval_s: float = 1.0) -> None:
        self._log = logger
        self._interval_s = interval_s
        self._last = -math.inf
        self.suppressed = 0

    def __call__(self, level: int, msg: str, *args: Any, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self._last < self._interval_s:
            self.suppressed += 1
            return
        self._last = now
        if self.suppressed:
            msg += " (%d similar message(s) suppressed)"
            args = (*args, self.suppressed)
            self.suppressed = 0
        self._log.log(level, msg, *args, exc_info=exc_info)


class StreamClock:
    """Maps stream seconds to monotonic wall-clock seconds.

    Every event is an observation ``(wall when received, emitted_s)``. Delivery only ever adds
    delay, so the offset ``wall - stream`` is taken as the minimum over the last ``window_s``
    seconds: the least-delayed recent observation. The window lets the offset follow drift between
    the audio clock and the wall clock, and a stream replayed faster than real time (where the
    latest observation is always the minimum).
    """

    def __init__(self, window_s: float = 2.0) -> None:
        self._window_s = window_s
        self._obs: deque[tuple[float, float]] = deque()

    def reset(self) -> None:
        self._obs.clear()

    @property
    def known(self) -> bool:
        return bool(self._obs)

    def observe(self, wall_s: float, stream_s: float) -> None:
        off = wall_s - stream_s
        obs = self._obs
        while obs and obs[-1][1] >= off:
            obs.pop()
        obs.append((wall_s, off))
        while obs[0][0] < wall_s - self._window_s:
            obs.popleft()

    @property
    def offset_s(self) -> float:
        return self._obs[0][1] if self._obs else 0.0

    def to_wall(self, stream_s: float) -> float:
        return stream_s + self.offset_s

    def to_stream(self, wall_s: float) -> float:
        return wall_s - self.offset_s


class TrackerFollower:
    """The tracker's beat grid as a sink sees it in the events.

    Not thread-safe: the sink's own thread calls :meth:`on_event` in arrival order.

    Attributes
    ----------
    stream : StreamClock
        Stream time to ``time.monotonic``, from the arrival of the events.
    anchor : BeatEvent or None
        The last beat of the current stream.
    bpm, confidence, locked : float, float, bool
        From the last beat or tempo event (``bpm`` only when positive).
    beats_per_bar : int
        From the last tempo event (4 before any).
    active : bool
        Between the first event of a stream and its :class:`StreamEndEvent`.
    """

    def __init__(self) -> None:
        self.stream = StreamClock()
        self.anchor: BeatEvent | None = None
        self.bpm = 0.0
        self.confidence = 0.0
        self.locked = False
        self.beats_per_bar = 4
        self.active = False

    def on_event(self, wall_s: float, event: Event) -> None:
        """Take one event that arrived at ``wall_s`` (``time.monotonic`` or the sink's clock).

        A :class:`StreamStartEvent` forgets the previous stream's grid and clock (the confidence
        and bar length stay until new values come).
        """
        if isinstance(event, StreamStartEvent):
            self.stream.reset()
            self.anchor = None
            self.bpm = 0.0
            self.locked = False
        self.stream.observe(wall_s, event.emitted_s)
        if isinstance(event, StreamEndEvent):
            self.active = False
            return
        self.active = True
        if isinstance(event, BeatEvent):
            self.anchor = event
            if event.bpm > 0.0:
                self.bpm = event.bpm
            self.confidence = event.confidence
            self.locked = event.locked
        elif isinstance(event, TempoEvent):
            if event.bpm > 0.0:
                self.bpm = event.bpm
            self.confidence = event.confidence
            self.locked = event.locked
            self.beats_per_bar = max(1, event.beats_per_bar)

    @property
    def ready(self) -> bool:
        """A beat, a tempo and a clock mapping are known."""
        return self.anchor is not None and self.bpm > 0.0 and self.stream.known

    def beats_since_anchor(self, stream_s: float) -> float:
        """Beats from the last beat to ``stream_s`` at the current tempo (needs :attr:`ready`)."""
        anchor = self.anchor
        assert anchor is not None
        return (stream_s - anchor.time_s) * self.bpm / 60.0

    def grid_time(self, beats_from_anchor: float) -> float:
        """Stream time of the grid position ``beats_from_anchor`` (needs :attr:`ready`)."""
        anchor = self.anchor
        assert anchor is not None
        return anchor.time_s + beats_from_anchor * 60.0 / self.bpm
