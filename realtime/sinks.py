"""Sinks for the command line: a compact live console line and a JSON Lines event file."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TextIO

from onbeat.realtime.errors import OnbeatError
from onbeat.realtime.events import (
    BeatEvent,
    Event,
    HealthEvent,
    LevelEvent,
    OnsetEvent,
    SimilarEvent,
    StreamStartEvent,
    TagsEvent,
    event_to_dict,
)

__all__ = ["ConsoleSink", "JsonlSink"]


class JsonlSink:
    """Writes every event as one JSON object per line.

    Each line has ``type``, ``sample_index``, ``time_s``, ``emitted_s`` and the fields of that
    event type. This is the machine-readable contract evaluation tools read. The file is flushed
    twice a second and on close, so an interrupted run leaves complete lines.

    Parameters
    ----------
    path : str or Path
        Output file (``-`` for standard output).
    """

    name = "jsonl"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self._fh: TextIO = (
                sys.stdout if self.path == "-" else open(self.path, "w", encoding="utf-8")
            )
        except OSError as exc:
            raise OnbeatError(f"cannot write events to {self.path!r}: {exc.strerror}") from None
        self._last_flush = time.monotonic()
        self.written = 0

    def handle(self, event: Event) -> None:
        """Write one line."""
        self._fh.write(json.dumps(event_to_dict(event), separators=(",", ":")) + "\n")
        self.written += 1

    def tick(self) -> None:
        """Flush every half second."""
        now = time.monotonic()
        if now - self._last_flush > 0.5:
            self._fh.flush()
            self._last_flush = now

    def close(self) -> None:
        """Flush and close."""
        self._fh.flush()
        if self._fh is not sys.stdout:
            self._fh.close()


_TITLE_CHARS = 28  # longer reference titles are cut in the console line


def _meter(dbfs: float, width: int = 12) -> str:
    """A text level meter from -60 to 0 dBFS."""
    filled = round(max(0.0, min(1.0, (dbfs + 60.0) / 60.0)) * width)
    return "#" * filled + "." * (width - filled)


class ConsoleSink:
    """A compact live status line on stderr.

    On a terminal the line is redrawn in place ten times a second; elsewhere (logs, CI) one line
    is printed every ``period_s``.
    """

    name = "console"

    def __init__(self, stream: TextIO | None = None, period_s: float = 2.0) -> None:
        self._out = stream or sys.stderr
        self._tty = self._out.isatty()
        self._period_s = 0.1 if self._tty else period_s
        self._last_draw = 0.0
        self.onsets = 0
        self._flash = 0
        self._time_s = 0.0
        self._last_onset_s = float("nan")
        self._rms = -120.0
        self._health: HealthEvent | None = None
        self._source = ""
        self._beat: BeatEvent | None = None
        self._tags: TagsEvent | None = None
        self._similar: SimilarEvent | None = None

    def handle(self, event: Event) -> None:
        """Update counters from one event."""
        self._time_s = max(self._time_s, event.emitted_s)
        if isinstance(event, OnsetEvent):
            self.onsets += 1
            self._flash = 3
            self._last_onset_s = event.time_s
        elif isinstance(event, BeatEvent):
            self._beat = event
        elif isinstance(event, LevelEvent):
            self._rms = event.rms_dbfs
        elif isinstance(event, HealthEvent):
            self._health = event
        elif isinstance(event, StreamStartEvent):
            self._source = event.source
        elif isinstance(event, TagsEvent):
            self._tags = event
        elif isinstance(event, SimilarEvent):
            self._similar = event

    def line(self) -> str:
        """The current status line."""
        h = self._health
        flash = "*" if self._flash > 0 else " "
        xr = f"xruns {h.xruns} lost {h.lost_samples} drop {h.dropped}" if h else "xruns 0"
        b = self._beat
        beat = (
            f"beat {b.beat_in_bar}/{b.beat_index + 1:<4d} {b.bpm:6.1f} BPM "
            f"{'locked' if b.locked else 'search'} {100 * b.confidence:3.0f}%"
            if b
            else "beat -        ---.- BPM search   0%"
        )
        t = self._tags
        tags = (
            f" | {t.top_genre or t.genre[0][0]} {t.top_quadrant or t.mood_quadrant[0][0]}"
            f" v{t.valence:+.1f} a{t.arousal:+.1f} voice {100 * t.voice:3.0f}%"
            if t is not None and t.genre and t.mood_quadrant
            else ""
        )
        return (
            f"{self._time_s:7.1f}s {flash} {beat} | onsets {self.onsets:5d} | "
            f"level {self._rms:6.1f} dBFS {_meter(self._rms)} | {xr}{tags}{self._like()}"
        )

    def _like(self) -> str:
        """`` | like TITLE 0.12 [scene]``: the nearest reference track and the scene, if any."""
        s = self._similar
        if s is None or not (s.nearest or s.scene):
            return ""
        text = " | like"
        if s.nearest:
            title, distance = s.nearest[0]
            if len(title) > _TITLE_CHARS:
                title = title[: _TITLE_CHARS - 2] + ".."
            text += f" {title} {distance:.2f}"
        return text + (f" [{s.scene}]" if s.scene else "")

    def tick(self) -> None:
        """Redraw when due."""
        now = time.monotonic()
        if now - self._last_draw < self._period_s:
            return
        self._last_draw = now
        if self._tty:
            self._out.write("\r" + self.line() + "\x1b[K")
        else:
            self._out.write(self.line() + "\n")
        self._out.flush()
        self._flash = max(0, self._flash - 1)

    def close(self) -> None:
        """End the line."""
        self._out.write(("\r" if self._tty else "") + self.line() + "\n")
        self._out.flush()
