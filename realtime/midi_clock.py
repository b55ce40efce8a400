"""MIDI clock out: 24 clocks per quarter note following the tracked tempo and phase.

:class:`MidiClockSink` sends MIDI beat clock (``0xF8``), Start/Continue/Stop and Song Position
Pointer to a named output port or to a virtual port it creates (``onbeat:clock``), through mido's
python-rtmidi backend: ALSA sequencer on Linux when ``/dev/snd/seq`` exists, JACK otherwise (or as
chosen), CoreMIDI and Windows MM elsewhere.

Transport
---------
* **Start** once the tracker is locked with ``confidence >= min_confidence`` (``start_on="lock"``),
  or at its first beat (``start_on="beat"``), on the next downbeat (or the next beat, without
  ``start_at_downbeat``): Song Position Pointer 0, Start and the first clock go out together, on
  the beat. A beat is a quarter note.
* **Clocks** follow the tracker's beat grid: each interval is ``60 / bpm / 24`` seconds, corrected
  by half of the clock's phase error against the grid (at most ±10 % of an interval per clock,
  so the receiver sees a smooth tempo, not jumps). The song position advances by one clock each.
* **Stop** at the end of the stream at once, and after ``stop_after_s`` seconds without lock
  (without beats, for ``start_on="beat"``); until then the clock runs on the tracker's flywheel.
* **Continue**: when the tracker locks again, the song position is set (SPP) to the bar after the
  one where it stopped and the clock resumes with Continue on a downbeat. A new stream, or a
  position past SPP's 14 bits, starts over at 0 with Start.

Timing
------
The sink's own clock thread sleeps until ``SPIN_S`` before each deadline and spins the rest, so a
clock leaves within microseconds of its deadline at the cost of about 1 % of a core at 120 BPM.
Stream time maps to ``time.monotonic`` through the events' arrival
(:class:`~onbeat.realtime.clock.StreamClock`); ``output_latency_ms`` sends everything earlier by
the receiver's latency. JACK delivers MIDI once per period, so the receiver sees the clocks on
the period grid (5.3 ms with ``-p 256`` at 48 kHz).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
from onbeat.realtime.clock import RateLimitedLog, TrackerFollower
from onbeat.realtime.errors import ConfigError, OnbeatError
from onbeat.realtime.events import (
    BeatEvent,
    Event,
    StreamEndEvent,
    StreamStartEvent,
    TempoEvent,
)
from onbeat.realtime.validation import check_range, parse_key_values

__all__ = [
    "MIDI_APIS",
    "MidiClockConfig",
    "MidiClockSink",
    "jack_running",
    "list_midi_outputs",
    "parse_midi_clock",
]

log = logging.getLogger(__name__)

#: Valid ``MidiClockConfig.api`` values.
MIDI_APIS: tuple[str, ...] = ("auto", "alsa", "jack")
_BACKENDS = {
    "alsa": "mido.backends.rtmidi/LINUX_ALSA",
    "jack": "mido.backends.rtmidi/UNIX_JACK",
    "default": "mido.backends.rtmidi",
}
_CLOCKS_PER_BEAT = 24
_CLOCKS_PER_SIXTEENTH = 6
_SPP_MAX = (1 << 14) - 1


@dataclass(frozen=True, slots=True)
class MidiClockConfig:
    """The MIDI clock output.

    Parameters
    ----------
    port : str
        An existing output port: its full name or a case-insensitive part that names one port.
        Empty: create a virtual port ``client_name:virtual_name`` for others to connect to.
    virtual_name : str
        Name of the virtual port.
    client_name : str
        MIDI client name of the virtual port.
    api : {"auto", "alsa", "jack"}
        MIDI system. ``auto``: on Linux the ALSA sequencer when ``/dev/snd/seq`` exists, else
        JACK; elsewhere the platform's own.
    output_latency_ms : float
        The receiver's latency: everything is sent this much earlier.
    min_confidence : float
        Tracker confidence (0..1) needed, besides ``locked``, to start.
    start_on : {"lock", "beat"}
        Start once the tracker is locked and confident, or at its first beat.
    start_at_downbeat : bool
        Start (and continue) on a downbeat; otherwise on the next beat.
    stop_after_s : float
        Stop after this long without lock (``start_on="beat"``: without beats).
    song_position : bool
        Send Song Position Pointer before Start and Continue.
    """

    section: ClassVar[str] = "midi_clock"
    port: str = ""
    virtual_name: str = "clock"
    client_name: str = "onbeat"
    api: str = "auto"
    output_latency_ms: float = 0.0
    min_confidence: float = 0.5
    start_on: str = "lock"
    start_at_downbeat: bool = True
    stop_after_s: float = 4.0
    song_position: bool = True

    def __post_init__(self) -> None:
        s = self.section
        for key in ("port", "virtual_name", "client_name"):
            v = getattr(self, key)
            if not isinstance(v, str) or any(c in v for c in "\n\r\0"):
                raise ConfigError(f"{s}.{key} = {v!r} is invalid: must be a one-line name")
        for key in ("virtual_name", "client_name"):
            if not getattr(self, key).strip():
                raise ConfigError(f"{s}.{key} is empty")
        if self.api not in MIDI_APIS:
            raise ConfigError(f"{s}.api = {self.api!r} is invalid: one of {', '.join(MIDI_APIS)}")
        check_range(s, "output_latency_ms", self.output_latency_ms, 0.0, 500.0)
        check_range(s, "min_confidence", self.min_confidence, 0.0, 1.0)
        if self.start_on not in ("lock", "beat"):
            raise ConfigError(f"{s}.start_on = {self.start_on!r} is invalid: lock or beat")
        check_range(s, "stop_after_s", self.stop_after_s, 0.1, 3600.0)
        for key in ("start_at_downbeat", "song_position"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"{s}.{key} = {getattr(self, key)!r} is invalid: true or false")


_OPTION_KEYS: dict[str, str] = {
    "latency_ms": "output_latency_ms",
    "output_latency_ms": "output_latency_ms",
    "api": "api",
    "client": "client_name",
    "client_name": "client_name",
    "min_confidence": "min_confidence",
    "start_on": "start_on",
    "downbeat": "start_at_downbeat",
    "start_at_downbeat": "start_at_downbeat",
    "stop_after_s": "stop_after_s",
    "spp": "song_position",
    "song_position": "song_position",
}


def parse_midi_clock(text: str) -> MidiClockConfig:
    """Parse ``--midi-clock [PORT][,KEY=VALUE...]``.

    ``PORT`` empty (or ``virtual``) creates the virtual port ``onbeat:clock``;
    ``virtual:NAME`` a virtual port ``onbeat:NAME``; anything else names an existing output port
    (the full name or a unique case-insensitive part, e.g. ``"USB MIDI"``). Options:
    ``api=auto|alsa|jack``, ``latency_ms=``, ``min_confidence=``, ``start_on=lock|beat``,
    ``downbeat=true|false``, ``stop_after_s=``, ``spp=true|false``, ``client=NAME``. For a port
    whose name holds a comma, give a part of the name without it.

    Raises
    ------
    ConfigError
        Naming the flag and what is wrong.
    """
    where = f"--midi-clock {text!r}"
    if not isinstance(text, str):
        raise ConfigError(f"{where}: expected [PORT][,KEY=VALUE...]")
    head, *opts = text.split(",")
    head = head.strip()
    values: dict[str, Any] = {}
    if head.lower() == "virtual":
        head = ""
    elif head.lower().startswith("virtual:"):
        values["virtual_name"] = head[len("virtual:") :].strip()
        head = ""
    values["port"] = head
    values.update(
        parse_key_values(
            [o.strip() for o in opts if o.strip()], where, MidiClockConfig, _OPTION_KEYS
        )
    )
    try:
        return MidiClockConfig(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _backend_name(api: str) -> str:
    if api == "auto":
        if not sys.platform.startswith("linux"):
            return _BACKENDS["default"]
        api = "alsa" if os.path.exists("/dev/snd/seq") else "jack"
    return _BACKENDS[api]


def _backend(api: str) -> Any:
    try:
        import mido
    except ImportError as exc:
        raise OnbeatError(f"MIDI clock needs mido and python-rtmidi: {exc}") from None
    try:
        return mido.Backend(_backend_name(api), load=True)
    except ImportError as exc:
        raise OnbeatError(f"MIDI clock needs python-rtmidi: {exc}") from None


def jack_running() -> bool:
    """Whether a JACK server answers: a probe client opens a virtual MIDI port and closes it.

    With ``JACK_NO_START_SERVER=1`` in the environment, libjack never starts a server for it.
    """
    try:
        import rtmidi

        probe = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, "onbeat-probe")
        probe.open_virtual_port("probe")
    except Exception:
        return False
    probe.close_port()
    probe.delete()
    return True


def list_midi_outputs(api: str = "auto") -> list[str]:
    """Names of the MIDI output ports of ``api``.

    Raises
    ------
    OnbeatError
        When the MIDI system is not available (no ALSA sequencer, JACK server not running).
    """
    try:
        return list(_backend(api).get_output_names())
    except OSError as exc:
        raise OnbeatError(f"cannot list MIDI outputs ({_backend_name(api)}): {exc}") from None


def _match_port(wanted: str, names: list[str]) -> str:
    if wanted in names:
        return wanted
    hits = [n for n in names if wanted.lower() in n.lower()]
    if len(hits) == 1:
        return hits[0]
    known = ", ".join(repr(n) for n in names) or "none"
    if hits:
        raise OnbeatError(f"MIDI output {wanted!r} is ambiguous: it matches {hits}")
    raise OnbeatError(f"no MIDI output port {wanted!r}; available: {known}")


def _open_port(config: MidiClockConfig) -> tuple[Any, str]:
    """Open the configured output; returns the port and its full name."""
    backend = _backend(config.api)
    try:
        if not config.port:
            port = backend.open_output(
                config.virtual_name, virtual=True, client_name=config.client_name
            )
            return port, f"{config.client_name}:{config.virtual_name}"
        name = _match_port(config.port, list(backend.get_output_names()))
        return backend.open_output(name), name
    except (OSError, RuntimeError) as exc:
        raise OnbeatError(
            f"cannot open the MIDI clock output ({_backend_name(config.api)}): {exc}"
        ) from None


class _Port(Protocol):
    def send(self, msg: Any) -> None: ...
    def close(self) -> None: ...


def _wrap(x: float, period: float) -> float:
    return (x + 0.5 * period) % period - 0.5 * period


_STOPPED, _ARMED, _PLAYING = 0, 1, 2


class MidiClockSink:
    """Sends MIDI beat clock that follows the tracker, from its own precise clock thread.

    Parameters
    ----------
    config : MidiClockConfig
        Port and transport options.
    name : str
        Sink name on the bus.
    port : object with ``send(mido.Message)`` and ``close()``, optional
        Send here instead of opening ``config``'s port (tests, or a port opened elsewhere).
    start : bool
        Start the clock thread now.

    Attributes
    ----------
    clocks, starts, continues, stops, song_positions : int
        Messages sent, by kind.
    errors : int
        Send errors (each closes the port; it is reopened with back-off, see ``retries``).
    retries : int
        Times the port was reopened.
    dropped : int
        Messages not sent because the port was down.

    Raises
    ------
    OnbeatError
        When the port cannot be opened (named port missing, no MIDI system).
    """

    SPIN_S: ClassVar[float] = 0.0004
    IDLE_S: ClassVar[float] = 0.05
    GAIN: ClassVar[float] = 0.5
    MAX_SLEW: ClassVar[float] = 0.1
    ARM_LEAD_S: ClassVar[float] = 0.005
    STATS_SIZE: ClassVar[int] = 8192
    INBOX_SIZE: ClassVar[int] = 4096
    RETRY_MIN_S: ClassVar[float] = 0.5
    RETRY_MAX_S: ClassVar[float] = 5.0

    def __init__(
        self,
        config: MidiClockConfig | None = None,
        *,
        name: str = "midi-clock",
        port: _Port | None = None,
        start: bool = True,
    ) -> None:
        try:
            import mido
        except ImportError as exc:
            raise OnbeatError(f"MIDI clock needs mido and python-rtmidi: {exc}") from None

        self.config = config or MidiClockConfig()
        self.name = name
        self._own_port = port is None
        if port is None:
            port, self.port_name = _open_port(self.config)
        else:
            self.port_name = getattr(port, "name", "custom")
        self._port: _Port | None = port
        self._msg_clock = mido.Message("clock")
        self._msg_start = mido.Message("start")
        self._msg_continue = mido.Message("continue")
        self._msg_stop = mido.Message("stop")
        self._message = mido.Message
        # counters
        self.clocks = 0
        self.starts = 0
        self.continues = 0
        self.stops = 0
        self.song_positions = 0
        self.errors = 0
        self.retries = 0
        self.dropped = 0
        self.dropped_events = 0
        self._late_s = np.zeros(self.STATS_SIZE)
        self._late_n = 0
        # hand-over
        self._inbox: deque[tuple[float, Event]] = deque(maxlen=self.INBOX_SIZE)
        self._wake = threading.Event()
        self._closing = False
        # clock-thread state
        self._latency_s = self.config.output_latency_ms * 1e-3
        self._follow = TrackerFollower()
        self._last_sure = -math.inf
        self._mode = _STOPPED
        self._target_index = 0
        self._ticks = 0
        self._next_due = 0.0
        self._resume_ticks = 0
        self._retry_at = 0.0
        self._streak = 0
        self._log = RateLimitedLog(log)
        self._thread = threading.Thread(target=self._run, name=f"sink-{name}", daemon=True)
        if start:
            self._thread.start()

    # ------------------------------------------------------------------ public
    def handle(self, event: Event) -> None:
        """Queue one event for the clock thread.

        Real-time safety: appends to a bounded deque; never blocks, never wakes the clock thread.
        """
        inbox = self._inbox
        if len(inbox) == inbox.maxlen:
            self.dropped_events += 1
        inbox.append((time.monotonic(), event))

    def tick(self) -> None:
        """Nothing to do: the clock thread keeps its own time."""

    def close(self) -> None:
        """Send Stop if playing, stop the thread and close the port (idempotent)."""
        self._closing = True
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        if not self._thread.is_alive():
            self._close_port()

    @property
    def alive(self) -> bool:
        """Whether the clock thread runs."""
        return self._thread.is_alive()

    @property
    def playing(self) -> bool:
        """Between Start (or Continue) and Stop."""
        return self._mode == _PLAYING

    def lateness_ms(self) -> dict[str, float]:
        """How late clocks left against their deadlines (the last ``STATS_SIZE`` clocks).

        Returns
        -------
        dict
            ``n``, ``median``, ``p99`` and ``max`` in milliseconds (NaN before any clock).
        """
        n = min(self._late_n, self.STATS_SIZE)
        if n == 0:
            return {"n": 0.0, "median": math.nan, "p99": math.nan, "max": math.nan}
        x = self._late_s[:n] * 1e3
        return {
            "n": float(n),
            "median": float(np.median(x)),
            "p99": float(np.percentile(x, 99)),
            "max": float(x.max()),
        }

    # ------------------------------------------------------------------ clock thread
    def _run(self) -> None:
        spin_s = self.SPIN_S
        monotonic = time.monotonic
        while True:
            try:
                self._drain()
                now = monotonic()
                if self._closing:
                    if self._mode == _PLAYING:
                        self._stop_now()
                    return
                self._transport(now)
                due = self._due(now)
                rem = due - now
                if rem > spin_s:
                    self._wake.wait(min(rem - spin_s, self.IDLE_S))
                    continue
                while monotonic() < due:
                    pass
                self._fire(due)
            except Exception:
                self.errors += 1
                self._log(logging.ERROR, "MIDI clock %s failed", self.name, exc_info=True)
                self._wake.wait(0.01)

    def _drain(self) -> None:
        inbox = self._inbox
        while inbox:
            wall, ev = inbox.popleft()
            self._on_event(wall, ev)

    def _sure(self) -> bool:
        if self.config.start_on == "beat":
            return self._follow.anchor is not None
        return self._follow.locked and self._follow.confidence >= self.config.min_confidence

    def _on_event(self, wall: float, ev: Event) -> None:
        if isinstance(ev, StreamStartEvent):
            if self._mode == _PLAYING:
                self._stop_now()
            self._mode = _STOPPED
            self._last_sure = -math.inf
            self._resume_ticks = 0
        self._follow.on_event(wall, ev)
        if isinstance(ev, StreamEndEvent):
            if self._mode == _PLAYING:
                self._stop_now()
            self._mode = _STOPPED
            return
        if not isinstance(ev, BeatEvent | TempoEvent):
            return
        if self._sure() and (self.config.start_on == "lock" or isinstance(ev, BeatEvent)):
            self._last_sure = wall

    def _grid_wall(self, beats_from_anchor: float) -> float:
        """Wall time at which to send for the grid position ``beats_from_anchor``."""
        f = self._follow
        return f.stream.to_wall(f.grid_time(beats_from_anchor)) - self._latency_s

    def _transport(self, now: float) -> None:
        mode = self._mode
        quiet_s = now - self._last_sure
        if mode == _PLAYING:
            if quiet_s > self.config.stop_after_s:
                log.info("MIDI clock: no lock for %.1f s: stop", quiet_s)
                self._stop_now()
            return
        f = self._follow
        ready = (
            f.active
            and f.ready
            and self._sure()
            and quiet_s < 1.0 + 120.0 / f.bpm  # fresh: within two beats
        )
        if mode == _ARMED:
            if not ready:
                self._mode = _STOPPED
            elif self._due(now) < now - 30.0 / f.bpm:  # missed by half a beat: choose again
                self._arm(now)
        elif ready:
            self._arm(now)

    def _arm(self, now: float) -> None:
        f = self._follow
        anchor = f.anchor
        assert anchor is not None
        period_s = 60.0 / f.bpm
        t = f.stream.to_stream(now + self._latency_s + self.ARM_LEAD_S)
        j = math.ceil((t - anchor.time_s) / period_s)
        if self.config.start_at_downbeat:
            n = f.beats_per_bar
            j += (n - (anchor.beat_in_bar - 1 + j) % n) % n
        self._target_index = anchor.beat_index + j
        self._mode = _ARMED

    def _due(self, now: float) -> float:
        if self._mode == _PLAYING:
            return self._next_due
        if self._mode == _ARMED:
            anchor = self._follow.anchor
            assert anchor is not None
            return self._grid_wall(self._target_index - anchor.beat_index)
        return now + self.IDLE_S

    def _fire(self, due: float) -> None:
        late = time.monotonic() - due
        if self._mode == _ARMED:
            ticks = self._resume_ticks
            if self.config.song_position:
                if self._send(self._message("songpos", pos=ticks // _CLOCKS_PER_SIXTEENTH)):
                    self.song_positions += 1
            if ticks == 0:
                if self._send(self._msg_start):
                    self.starts += 1
            elif self._send(self._msg_continue):
                self.continues += 1
            log.info("MIDI clock: %s at song position %d", "start" if ticks == 0 else "continue",
                     ticks // _CLOCKS_PER_SIXTEENTH)  # fmt: skip
            self._ticks = ticks
            self._mode = _PLAYING
        if self._send(self._msg_clock):
            self.clocks += 1
        self._late_s[self._late_n % self.STATS_SIZE] = late
        self._late_n += 1
        self._ticks += 1
        self._next_due = self._next_tick(due)

    def _next_tick(self, prev_due: float) -> float:
        """Deadline of the next clock: one nominal interval, slewed toward the beat grid."""
        f = self._follow
        nominal_s = 60.0 / f.bpm / _CLOCKS_PER_BEAT
        naive = prev_due + nominal_s
        if f.anchor is None or not f.stream.known:
            return naive
        t = f.stream.to_stream(naive + self._latency_s)
        grid_ticks = f.beats_since_anchor(t) * _CLOCKS_PER_BEAT
        err = _wrap(grid_ticks - self._ticks, float(_CLOCKS_PER_BEAT))  # > 0: the grid is ahead
        slew = max(-self.MAX_SLEW, min(self.MAX_SLEW, self.GAIN * err))
        return prev_due + nominal_s * (1.0 - slew)

    def _stop_now(self) -> None:
        if self._send(self._msg_stop):
            self.stops += 1
        log.info("MIDI clock: stop at song position %d", self._ticks // _CLOCKS_PER_SIXTEENTH)
        self._mode = _STOPPED
        bar = _CLOCKS_PER_BEAT * self._follow.beats_per_bar
        resume = -(-self._ticks // bar) * bar
        self._resume_ticks = resume if resume // _CLOCKS_PER_SIXTEENTH <= _SPP_MAX else 0

    # ------------------------------------------------------------------ port
    def _send(self, msg: Any) -> bool:
        port = self._port
        if port is None:
            now = time.monotonic()
            if not self._own_port or now < self._retry_at:
                self.dropped += 1
                return False
            try:
                self._port, _ = _open_port(self.config)
            except OnbeatError as exc:
                self._failed(now, exc)
                self.dropped += 1
                return False
            self.retries += 1
            port = self._port
        try:
            port.send(msg)
        except Exception as exc:  # a vanished device: close, reopen later
            self.errors += 1
            self._failed(time.monotonic(), exc)
            self._close_port()
            self.dropped += 1
            return False
        self._streak = 0
        return True

    def _failed(self, now: float, exc: BaseException) -> None:
        self._streak += 1
        backoff = min(self.RETRY_MAX_S, self.RETRY_MIN_S * 2.0 ** (self._streak - 1))
        self._retry_at = now + backoff
        self._log(
            logging.WARNING,
            "MIDI clock %s: %s; retrying in %.1f s",
            self.port_name,
            exc,
            backoff,
        )

    def _close_port(self) -> None:
        port, self._port = self._port, None
        if port is not None and self._own_port:
            try:
                port.close()
            except Exception:
                pass
