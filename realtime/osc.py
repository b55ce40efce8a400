"""OSC out (beats, tempo, phase, tags to lighting and VJ tools) and OSC control in.

Out
---
Each :class:`OscTarget` gets its own :class:`OscSink`. The sink's ``handle`` only queues the event;
a sender thread owned by the sink maps stream time to wall-clock time, sends each beat at its
predicted time minus the target's output latency, ends pulses after ``pulse_ms`` and sends the
continuous phase at ``phase_rate_hz``. Messages are plain OSC messages (no bundles, no timetags:
Pd, oscP5 and TouchDesigner ignore or queue those) with int32, float32 and string arguments only;
times are stream seconds, never epoch seconds.

Address map, ``flat`` profile (also ``qlcplus`` and ``touchdesigner``), ``P`` = prefix:

=======================  ========  ===========================================================
address                  args      when
=======================  ========  ===========================================================
``P/beat``               ``i``     1 on each beat, 0 ``pulse_ms`` later
``P/downbeat``           ``i``     1 on each downbeat, 0 ``pulse_ms`` later
``P/beat_index``         ``i``     on each beat (increasing), just before ``P/beat``
``P/bar_pos``            ``i``     on each beat, 1..beats per bar, just before ``P/beat``
``P/bpm``                ``f``     on change and at 2 Hz
``P/confidence``         ``f``     on change and at 2 Hz, 0..1
``P/locked``             ``i``     on change and at 2 Hz, 0/1
``P/phase``              ``f``     at ``phase_rate_hz``, beat phase 0..1 (0 = on the beat)
``P/bar_phase``          ``f``     at ``phase_rate_hz``, bar phase 0..1 (0 = on the downbeat)
``P/onset``              ``f``     on each onset, its strength
``P/level``              ``f``     on each level event, RMS in dBFS
``P/genre/<name>``       ``f``     on each tags event, probability of each genre
``P/genre/top``          ``s``     on each tags event, the most likely genre
``P/mood/valence``       ``f``     on each tags event, -1..1
``P/mood/arousal``       ``f``     on each tags event, -1..1
``P/mood/quadrant``      ``s``     on each tags event, the most likely quadrant (Q1..Q4)
``P/voice``              ``f``     on each tags event, probability of singing voice
``P/energy``             ``f``     on each tags event, 0..1
``P/similar/<n>``        ``s``     on each similar event, title of the n-th nearest reference
                                   (n = 1..k), then ``P/similar/<n>/distance f``: its cosine
                                   distance (0..2)
``P/scene``              ``s``     when the scene cue changes (and at the first scene)
=======================  ========  ===========================================================

``rich`` profile: one message per event with every value:

* ``P/beat i beat_index, i bar_pos, f bpm, f confidence, f lead_s`` on each beat (``lead_s``:
  how long before the beat the message left), and the same on ``P/downbeat`` for downbeats;
* ``P/tempo f bpm, f confidence, i locked, i beats_per_bar`` on change and at 2 Hz;
* ``P/phase f phase, f bar_phase`` at ``phase_rate_hz``;
* ``P/onset f strength, f time_s``; ``P/level f rms_dbfs, f peak_dbfs``;
* ``P/tags s genre, f genre_probability, s quadrant, f valence, f arousal, f voice, f energy``;
* ``P/similar s title, f distance, ...`` (nearest first) and ``P/scene s scene`` as in flat.

``resolume`` preset: ``/composition/tempocontroller/tempo f (bpm - 20) / 480`` on change and at
2 Hz, and ``/composition/tempocontroller/resync`` ``i 1`` then ``i 0`` on each downbeat.

In
--
:class:`OscControlServer` listens (127.0.0.1 by default) for ``P/tap``, ``P/nudge f ms``,
``P/resync``, ``P/double``, ``P/halve``, ``P/bpm_range f min f max``, ``P/freeze i``,
``P/latency f ms`` (every target) and ``P/latency s target f ms`` (one target), and turns them
into :class:`~onbeat.realtime.commands.Command` objects on a
:class:`~onbeat.realtime.commands.CommandQueue`. Anything else is counted, logged at most once a
second and ignored.
"""

from __future__ import annotations

import heapq
import ipaddress
import logging
import math
import re
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

from onbeat.realtime.clock import RateLimitedLog, StreamClock
from onbeat.realtime.commands import Command, CommandQueue
from onbeat.realtime.errors import ConfigError, OnbeatError
from onbeat.realtime.events import (
    BeatEvent,
    Event,
    LevelEvent,
    OnsetEvent,
    SimilarEvent,
    StreamEndEvent,
    StreamStartEvent,
    TagsEvent,
    TempoEvent,
)
from onbeat.realtime.validation import parse_key_values, split_host_port
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket
from pythonosc.osc_server import BlockingOSCUDPServer

__all__ = [
    "MAX_CONTROL_PACKET_BYTES",
    "OSC_PRESETS",
    "OSC_PROFILES",
    "SCHEDULING_MARGIN_MS",
    "OscControlConfig",
    "OscControlServer",
    "OscSink",
    "OscTarget",
    "build_osc_sinks",
    "osc_control_from_mapping",
    "osc_target_from_mapping",
    "parse_osc_control",
    "parse_osc_target",
    "required_tracker_lead_ms",
]

log = logging.getLogger(__name__)

#: preset name -> (default port or None, behaviour profile)
OSC_PRESETS: dict[str, tuple[int | None, str]] = {
    "resolume": (7000, "resolume"),
    "qlcplus": (7700, "flat"),
    "touchdesigner": (None, "flat"),
}
#: every valid ``OscTarget.profile``
OSC_PROFILES: tuple[str, ...] = ("flat", "rich", *OSC_PRESETS)
#: The tracker should issue beats this much earlier than the largest target latency, so that
#: bus and thread hand-over never make a compensated beat late.
SCHEDULING_MARGIN_MS = 15.0
#: Control packets larger than this are rejected unread.
MAX_CONTROL_PACKET_BYTES = 1024
#: Largest output latency the tracker accepts (ms).
MAX_OUTPUT_LATENCY_MS = 500.0

_PREFIX_RE = re.compile(r"^(/[A-Za-z0-9_.\-]+)*$")
_NAME_RE = re.compile(r"[^a-z0-9_\-]+")
_RESOLUME_TEMPO = "/composition/tempocontroller/tempo"
_RESOLUME_RESYNC = "/composition/tempocontroller/resync"
_FLOAT32_MAX = 3.4028234663852886e38


def _check(key: str, value: Any, lo: float, hi: float, *, integer: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``lo <= value <= hi`` (and integral if asked)."""
    kind = "an integer" if integer else "a number"
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value).is_integer()
    if not ok or not math.isfinite(float(value)) or not lo <= value <= hi:
        raise ConfigError(f"{key} = {value!r} is invalid: must be {kind} in [{lo}, {hi}]")


def _check_host(key: str, host: Any) -> None:
    if not isinstance(host, str) or not host or any(c.isspace() for c in host):
        raise ConfigError(f"{key} = {host!r} is invalid: must be a host name or IP address")


def _check_prefix(key: str, prefix: Any) -> None:
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise ConfigError(
            f"{key} = {prefix!r} is invalid: must be empty or an OSC address such as '/onbeat' "
            "(parts of letters, digits, '_', '-', '.'; no trailing '/')"
        )


# ---------------------------------------------------------------------------------- targets
@dataclass(frozen=True, slots=True)
class OscTarget:
    """One OSC receiver.

    Parameters
    ----------
    host : str
        Receiver host name or IP address.
    port : int
        Receiver UDP port.
    profile : str
        ``"flat"`` (one value per address), ``"rich"`` (one message per event) or a preset:
        ``"resolume"``, ``"qlcplus"``, ``"touchdesigner"``.
    prefix : str
        Address prefix of every message (not used by the ``resolume`` preset).
    output_latency_ms : float
        The receiver's own latency (network, render, projector): beats are sent this long before
        they happen, and the phase is sent this far ahead.
    pulse_ms : float
        Length of the ``1`` of ``beat``/``downbeat`` pulses before the ``0``.
    phase_rate_hz : float
        Rate of the continuous ``phase`` / ``bar_phase`` messages.
    name : str
        Name used by the ``latency`` control command; empty means ``host:port``.
    """

    section: ClassVar[str] = "osc"
    host: str
    port: int
    profile: str = "flat"
    prefix: str = "/onbeat"
    output_latency_ms: float = 0.0
    pulse_ms: float = 40.0
    phase_rate_hz: float = 60.0
    name: str = ""

    def __post_init__(self) -> None:
        s = self.section
        _check_host(f"{s}.host", self.host)
        _check(f"{s}.port", self.port, 1, 65535, integer=True)
        if self.profile not in OSC_PROFILES:
            raise ConfigError(
                f"{s}.profile = {self.profile!r} is invalid: "
                f"must be one of {', '.join(OSC_PROFILES)}"
            )
        _check_prefix(f"{s}.prefix", self.prefix)
        _check(f"{s}.output_latency_ms", self.output_latency_ms, 0.0, MAX_OUTPUT_LATENCY_MS)
        _check(f"{s}.pulse_ms", self.pulse_ms, 30.0, 50.0)
        _check(f"{s}.phase_rate_hz", self.phase_rate_hz, 30.0, 100.0)
        if not isinstance(self.name, str) or any(c.isspace() or c == "," for c in self.name):
            raise ConfigError(f"{s}.name = {self.name!r} is invalid: no spaces or commas")

    @property
    def mode(self) -> str:
        """Behaviour: ``"flat"``, ``"rich"`` or ``"resolume"``."""
        preset = OSC_PRESETS.get(self.profile)
        return preset[1] if preset else self.profile

    @property
    def label(self) -> str:
        """``name``, or ``host:port`` when unnamed."""
        if self.name:
            return self.name
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


_OPTION_KEYS: dict[str, str] = {
    "prefix": "prefix",
    "latency_ms": "output_latency_ms",
    "output_latency_ms": "output_latency_ms",
    "pulse_ms": "pulse_ms",
    "phase_rate_hz": "phase_rate_hz",
    "phase_hz": "phase_rate_hz",
    "name": "name",
    "profile": "profile",
}


def parse_osc_target(text: str) -> OscTarget:
    """Parse a command-line OSC target.

    The form is ``[PRESET@]HOST[:PORT][:PROFILE][,KEY=VALUE...]``: ``127.0.0.1:7000``,
    ``127.0.0.1:7000:rich``, ``resolume@127.0.0.1`` (port 7000), ``qlcplus@10.0.0.5`` (port
    7700), ``touchdesigner@127.0.0.1:9000``, ``[::1]:7000``,
    ``127.0.0.1:7000,latency_ms=40,pulse_ms=30,phase_hz=100,prefix=/club,name=left``.

    Raises
    ------
    ConfigError
        Naming the target and what is wrong with it.
    """
    where = f"--osc {text!r}"
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where}: expected [PRESET@]HOST[:PORT][:PROFILE][,KEY=VALUE...]")
    main, *opts = text.strip().split(",")
    values: dict[str, Any] = {}
    preset = ""
    if "@" in main:
        preset, main = main.split("@", 1)
        if preset not in OSC_PRESETS:
            raise ConfigError(
                f"{where}: unknown preset {preset!r}; known: {', '.join(OSC_PRESETS)}"
            )
        values["profile"] = preset
    if main.startswith("["):
        end = main.find("]")
        if end < 0:
            raise ConfigError(f"{where}: unclosed '[' in the IPv6 address")
        host, rest = main[1:end], main[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ConfigError(f"{where}: expected ':' after ']'")
        parts = rest[1:].split(":") if rest else []
    else:
        host, *parts = main.split(":")
    if len(parts) > 2:
        raise ConfigError(f"{where}: too many ':' (write IPv6 addresses in brackets, [::1]:7000)")
    port: int | None = None
    for part in parts:
        if part.isdigit():
            if port is not None:
                raise ConfigError(f"{where}: two ports")
            port = int(part)
        elif part in OSC_PROFILES:
            if preset and part != preset:
                raise ConfigError(f"{where}: preset {preset!r} and profile {part!r} conflict")
            values["profile"] = part
        else:
            raise ConfigError(
                f"{where}: {part!r} is neither a port nor a profile ({', '.join(OSC_PROFILES)})"
            )
    values.update(parse_key_values(opts, where, OscTarget, _OPTION_KEYS))
    if port is None:
        default = OSC_PRESETS.get(values.get("profile", ""), (None, ""))[0]
        if default is None:
            raise ConfigError(f"{where}: needs a port, e.g. {host or '127.0.0.1'}:7000")
        port = default
    try:
        return OscTarget(host=host, port=port, **values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def osc_target_from_mapping(table: Mapping[str, Any]) -> OscTarget:
    """Build a target from a TOML table (``[[osc.targets]]``).

    Either ``target = "resolume@127.0.0.1"`` (the command-line form) or ``host``/``port``, plus
    any :class:`OscTarget` field (``profile``, ``prefix``, ``output_latency_ms``, ``pulse_ms``,
    ``phase_rate_hz``, ``name``), which override what ``target`` says.

    Raises
    ------
    ConfigError
        For an unknown key or an impossible value.
    """
    known = {f.name for f in fields(OscTarget)}
    unknown = sorted(set(table) - known - {"target"})
    if unknown:
        raise ConfigError(
            f"osc.targets: unknown key(s) {unknown}; known: {sorted(known | {'target'})}"
        )
    given = {k: v for k, v in table.items() if k != "target"}
    if "target" in table:
        base = parse_osc_target(str(table["target"]))
        try:
            return replace(base, **given)
        except TypeError as exc:
            raise ConfigError(f"osc.targets: {exc}") from None
    if "host" not in given or "port" not in given:
        preset = OSC_PRESETS.get(str(given.get("profile", "")))
        if "host" in given and preset is not None and preset[0] is not None:
            given["port"] = preset[0]
        else:
            raise ConfigError("osc.targets: each target needs 'target' or 'host' and 'port'")
    try:
        return OscTarget(**given)
    except TypeError as exc:
        raise ConfigError(f"osc.targets: {exc}") from None


def required_tracker_lead_ms(targets: Sequence[OscTarget]) -> float:
    """Output latency the tracker should use so every target can be compensated.

    A beat can only be sent ``output_latency_ms`` early if the tracker issues it earlier still;
    this is the largest target latency plus :data:`SCHEDULING_MARGIN_MS` (0 without targets),
    capped at the tracker's maximum.
    """
    if not targets:
        return 0.0
    lead = max(t.output_latency_ms for t in targets) + SCHEDULING_MARGIN_MS
    return min(lead, MAX_OUTPUT_LATENCY_MS)


def build_osc_sinks(targets: Sequence[OscTarget]) -> list[OscSink]:
    """One started :class:`OscSink` per target, with unique sink names (``osc:LABEL``)."""
    sinks: list[OscSink] = []
    seen: Counter[str] = Counter()
    for t in targets:
        seen[t.label] += 1
        suffix = f"#{seen[t.label]}" if seen[t.label] > 1 else ""
        sinks.append(OscSink(t, name=f"osc:{t.label}{suffix}"))
    return sinks


# ---------------------------------------------------------------------------------- helpers
def _f32(x: float) -> float:
    """A value that packs as float32: non-finite becomes 0, huge values are clamped."""
    if not math.isfinite(x):
        return 0.0
    return max(-_FLOAT32_MAX, min(_FLOAT32_MAX, float(x)))


def _i32(x: int) -> int:
    return max(-(2**31), min(2**31 - 1, int(x)))


def _osc_name(text: str) -> str:
    """A label as one OSC address part: lower case, runs of other characters become ``_``."""
    return _NAME_RE.sub("_", text.lower()).strip("_") or "unknown"


_Args = tuple[tuple[str, Any], ...]


# ---------------------------------------------------------------------------------- the sink
class OscSink:
    """Sends events to one OSC target from its own sender thread.

    ``handle`` only queues the event and wakes the sender, so it never blocks. The sender thread
    keeps a small scheduler (beats at ``time_s - output_latency``, pulse ends, the phase at
    ``phase_rate_hz``, tempo at 2 Hz). Socket errors (receiver down, host unreachable) never leave
    the sink: they are counted in :attr:`errors`, the socket is recreated after a back-off
    (:attr:`retries`), and what could not be sent meanwhile is counted in :attr:`dropped`.

    Parameters
    ----------
    target : OscTarget
        Where and what to send.
    name : str, optional
        Sink name on the bus; ``osc:LABEL`` by default.
    start : bool
        Start the sender thread now.

    Attributes
    ----------
    sent : Counter of str to int
        Messages sent per OSC address.
    errors : int
        Send and socket errors.
    retries : int
        Sockets recreated after an error.
    dropped : int
        Messages not sent because the socket was down.
    late_beats : int
        Beats that could not be sent ``output_latency_ms`` early (they went out at once).
    dropped_events : int
        Events dropped because the sender thread fell more than ``INBOX_SIZE`` events behind.
    """

    BACKOFF_MIN_S: ClassVar[float] = 0.05
    BACKOFF_MAX_S: ClassVar[float] = 2.0
    PERIODIC_S: ClassVar[float] = 0.5
    INBOX_SIZE: ClassVar[int] = 8192
    _LATE_TOLERANCE_S: ClassVar[float] = 0.002

    def __init__(self, target: OscTarget, *, name: str | None = None, start: bool = True) -> None:
        self.target = target
        self.name = name or f"osc:{target.label}"
        self._latency_s = target.output_latency_ms * 1e-3
        self._pulse_s = target.pulse_ms * 1e-3
        self._phase_period_s = 1.0 / target.phase_rate_hz
        self._mode = target.mode
        p = target.prefix
        self._a = {
            k: f"{p}/{k}"
            for k in (
                "beat",
                "downbeat",
                "beat_index",
                "bar_pos",
                "bpm",
                "confidence",
                "locked",
                "phase",
                "bar_phase",
                "onset",
                "level",
                "tempo",
                "tags",
                "genre/top",
                "mood/valence",
                "mood/arousal",
                "mood/quadrant",
                "voice",
                "energy",
                "similar",
                "scene",
            )
        }
        self._genre_addr: dict[str, str] = {}
        self._similar_addr: list[tuple[str, str]] = []  # (title, distance) address of rank n
        self._scene_sent = ""
        # counters (written by the sender thread, read by anyone)
        self.sent: Counter[str] = Counter()
        self.errors = 0
        self.retries = 0
        self.dropped = 0
        self.late_beats = 0
        self.handled = 0
        # hand-over from handle() (any thread) to the sender thread
        self._inbox: deque[tuple[float, Event]] = deque(maxlen=self.INBOX_SIZE)
        self.dropped_events = 0
        self._wake = threading.Event()
        self._stop = False
        # sender-thread state
        self._clock = StreamClock()
        self._heap: list[tuple[float, int, str, Any]] = []
        self._seq = 0
        self._pulse_gen: dict[str, int] = {}
        self._active = False
        self._anchor: BeatEvent | None = None
        self._bpm = 0.0
        self._confidence = 0.0
        self._locked = False
        self._beats_per_bar = 4
        self._sent_bpm = math.nan
        self._sent_conf = math.nan
        self._sent_locked: bool | None = None
        self._next_phase = 0.0
        self._next_periodic = 0.0
        # socket
        self._sock: socket.socket | None = None
        self._retry_at = 0.0
        self._streak = 0
        self._last_error = -math.inf
        self._ever_opened = False
        self._log = RateLimitedLog(log)
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-send", daemon=True)
        if start:
            self._thread.start()

    # ------------------------------------------------------------------ public
    def handle(self, event: Event) -> None:
        """Queue one event for the sender thread.

        Real-time safety: appends to a deque and sets an Event; never blocks on I/O.
        """
        inbox = self._inbox
        if len(inbox) == inbox.maxlen:  # the sender thread is stuck (a slow DNS lookup)
            self.dropped_events += 1
        inbox.append((time.monotonic(), event))
        self._wake.set()

    def tick(self) -> None:
        """Nothing to do: the sender thread keeps its own time."""

    def close(self) -> None:
        """Stop the sender: pulses still on are ended, future beats are dropped."""
        self._stop = True
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        if not self._thread.is_alive():
            self._close_socket()

    @property
    def alive(self) -> bool:
        """Whether the sender thread runs."""
        return self._thread.is_alive()

    @property
    def output_latency_ms(self) -> float:
        """Current output latency."""
        return self._latency_s * 1e3

    def set_output_latency_ms(self, latency_ms: float) -> None:
        """Change the output latency (from any thread); applies to beats received from now on.

        Raises
        ------
        ConfigError
            Outside [0, 500] ms.
        """
        _check(f"{self.name} output_latency_ms", latency_ms, 0.0, MAX_OUTPUT_LATENCY_MS)
        self._latency_s = float(latency_ms) * 1e-3

    # ------------------------------------------------------------------ sender thread
    def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                self._drain_inbox()
                if self._stop:
                    self._finish()
                    return
                self._run_due(time.monotonic())
                timeout = self._next_due() - time.monotonic()
            except Exception:
                self.errors += 1
                self._log(logging.ERROR, "OSC sink %s failed", self.name, exc_info=True)
                timeout = 0.01
            self._wake.wait(min(max(timeout, 0.0), 0.1))

    def _finish(self) -> None:
        """End pulses that are on, drop future beats."""
        offs = sorted((item for item in self._heap if item[2] == "off"), key=lambda i: i[0])
        self._heap.clear()
        for _, _, _, payload in offs:
            addr, gen = payload
            if self._pulse_gen.get(addr) == gen:
                self._send(addr, (("i", 0),))
        self._close_socket()

    def _drain_inbox(self) -> None:
        inbox = self._inbox
        while inbox:
            wall, ev = inbox.popleft()
            self.handled += 1
            self._on_event(wall, ev)

    def _next_due(self) -> float:
        due = time.monotonic() + 0.1
        if self._heap:
            due = min(due, self._heap[0][0])
        if self._active:
            due = min(due, self._next_periodic)
            if self._anchor is not None and self._mode != "resolume":
                due = min(due, self._next_phase)
        return due

    def _push(self, due: float, kind: str, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, kind, payload))

    def _run_due(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, kind, payload = heapq.heappop(heap)
            if kind == "beat":
                self._emit_beat(payload, now)
            elif kind == "off":
                addr, gen = payload
                if self._pulse_gen.get(addr) == gen:
                    self._send(addr, (("i", 0),))
        if not self._active:
            return
        if now >= self._next_periodic:
            self._send_tempo(force=True)
            nxt = self._next_periodic + self.PERIODIC_S
            self._next_periodic = nxt if nxt > now else now + self.PERIODIC_S
        if self._anchor is not None and self._mode != "resolume" and now >= self._next_phase:
            self._send_phase(now)
            nxt = self._next_phase + self._phase_period_s
            self._next_phase = nxt if nxt > now else now + self._phase_period_s

    # ------------------------------------------------------------------ events
    def _on_event(self, wall: float, ev: Event) -> None:
        if isinstance(ev, StreamStartEvent):
            self._reset_stream()
        self._clock.observe(wall, ev.emitted_s)
        if isinstance(ev, StreamEndEvent):
            self._active = False
            return
        if not self._active or isinstance(ev, StreamStartEvent):
            now = time.monotonic()
            self._active = True
            self._next_periodic = now + self.PERIODIC_S
            self._next_phase = now
        if isinstance(ev, BeatEvent):
            self._anchor = ev
            self._bpm = ev.bpm
            due = self._clock.to_wall(ev.time_s - self._latency_s)
            now = time.monotonic()
            if due <= now:
                if now - due > self._LATE_TOLERANCE_S:
                    self.late_beats += 1
                self._emit_beat(ev, now)
            else:
                self._push(due, "beat", ev)
        elif isinstance(ev, TempoEvent):
            self._bpm = ev.bpm
            self._confidence = ev.confidence
            self._locked = ev.locked
            self._beats_per_bar = max(1, ev.beats_per_bar)
            self._send_tempo(force=False)
        elif isinstance(ev, OnsetEvent):
            self._send_onset(ev)
        elif isinstance(ev, TagsEvent):
            self._send_tags(ev)
        elif isinstance(ev, SimilarEvent):
            self._send_similar(ev)
        elif isinstance(ev, LevelEvent):
            if self._mode == "flat":
                self._send(self._a["level"], (("f", _f32(ev.rms_dbfs)),))
            elif self._mode == "rich":
                self._send(self._a["level"], (("f", _f32(ev.rms_dbfs)), ("f", _f32(ev.peak_dbfs))))

    def _reset_stream(self) -> None:
        self._clock.reset()
        self._heap = [item for item in self._heap if item[2] == "off"]
        heapq.heapify(self._heap)
        self._anchor = None
        self._bpm = 0.0
        self._confidence = 0.0
        self._locked = False
        self._sent_bpm = math.nan
        self._sent_conf = math.nan
        self._sent_locked = None
        self._scene_sent = ""

    def _pulse(self, addr: str, now: float) -> None:
        gen = self._pulse_gen.get(addr, 0) + 1
        self._pulse_gen[addr] = gen
        self._send(addr, (("i", 1),))
        self._push(time.monotonic() + self._pulse_s, "off", (addr, gen))

    def _emit_beat(self, ev: BeatEvent, now: float) -> None:
        self._confidence = ev.confidence
        self._locked = ev.locked
        bar_pos = ev.beat_in_bar
        a = self._a
        if self._mode == "resolume":
            self._send_tempo(force=False)
            if ev.is_downbeat:
                self._pulse(_RESOLUME_RESYNC, now)
        elif self._mode == "rich":
            lead_s = ev.time_s - self._clock.to_stream(now)
            args: _Args = (
                ("i", _i32(ev.beat_index)),
                ("i", _i32(bar_pos)),
                ("f", _f32(ev.bpm)),
                ("f", _f32(ev.confidence)),
                ("f", _f32(lead_s)),
            )
            self._send(a["beat"], args)
            if ev.is_downbeat:
                self._send(a["downbeat"], args)
            self._send_tempo(force=False)
        else:
            # index and position first, so a receiver triggered by P/beat reads fresh values
            self._send(a["beat_index"], (("i", _i32(ev.beat_index)),))
            self._send(a["bar_pos"], (("i", _i32(bar_pos)),))
            self._pulse(a["beat"], now)
            if ev.is_downbeat:
                self._pulse(a["downbeat"], now)
            self._send_tempo(force=False)

    def _send_tempo(self, *, force: bool) -> None:
        bpm, conf, locked = self._bpm, self._confidence, self._locked
        if bpm <= 0.0:
            return
        bpm_changed = not abs(bpm - self._sent_bpm) < 0.01
        conf_changed = not abs(conf - self._sent_conf) < 0.005
        locked_changed = locked != self._sent_locked
        a = self._a
        if self._mode == "resolume":
            if force or bpm_changed:
                value = min(1.0, max(0.0, (bpm - 20.0) / 480.0))
                self._send(_RESOLUME_TEMPO, (("f", value),))
                self._sent_bpm = bpm
            return
        if self._mode == "rich":
            if force or bpm_changed or conf_changed or locked_changed:
                self._send(
                    a["tempo"],
                    (
                        ("f", _f32(bpm)),
                        ("f", _f32(conf)),
                        ("i", int(locked)),
                        ("i", _i32(self._beats_per_bar)),
                    ),
                )
                self._sent_bpm, self._sent_conf, self._sent_locked = bpm, conf, locked
            return
        if force or bpm_changed:
            self._send(a["bpm"], (("f", _f32(bpm)),))
            self._sent_bpm = bpm
        if force or conf_changed:
            self._send(a["confidence"], (("f", _f32(conf)),))
            self._sent_conf = conf
        if force or locked_changed:
            self._send(a["locked"], (("i", int(locked)),))
            self._sent_locked = locked

    def _phases(self, now: float) -> tuple[float, float]:
        """Beat and bar phase at stream time ``now + output latency``, from the last beat."""
        anchor = self._anchor
        assert anchor is not None
        bpm = self._bpm if self._bpm > 0.0 else anchor.bpm
        if not bpm > 0.0:
            return 0.0, 0.0
        period_s = 60.0 / bpm
        t = self._clock.to_stream(now) + self._latency_s
        k = (t - anchor.time_s) / period_s
        whole = math.floor(k)
        phase = k - whole
        n = self._beats_per_bar
        pos = (anchor.beat_in_bar - 1 + whole) % n
        bar_phase = (pos + phase) / n
        return min(phase, 0.999999), min(bar_phase, 0.999999)

    def _send_phase(self, now: float) -> None:
        phase, bar_phase = self._phases(now)
        a = self._a
        if self._mode == "rich":
            self._send(a["phase"], (("f", phase), ("f", bar_phase)))
        else:
            self._send(a["phase"], (("f", phase),))
            self._send(a["bar_phase"], (("f", bar_phase),))

    def _send_onset(self, ev: OnsetEvent) -> None:
        if self._mode == "flat":
            self._send(self._a["onset"], (("f", _f32(ev.strength)),))
        elif self._mode == "rich":
            self._send(self._a["onset"], (("f", _f32(ev.strength)), ("f", _f32(ev.time_s))))

    def _send_tags(self, ev: TagsEvent) -> None:
        a = self._a
        top_genre, top_p = ev.genre[0] if ev.genre else ("unknown", 0.0)
        if ev.top_genre:
            top_genre, top_p = ev.top_genre, dict(ev.genre).get(ev.top_genre, 0.0)
        quadrant = ev.mood_quadrant[0][0] if ev.mood_quadrant else "unknown"
        if ev.top_quadrant:
            quadrant = ev.top_quadrant
        if self._mode == "rich":
            self._send(
                a["tags"],
                (
                    ("s", str(top_genre)),
                    ("f", _f32(top_p)),
                    ("s", str(quadrant)),
                    ("f", _f32(ev.valence)),
                    ("f", _f32(ev.arousal)),
                    ("f", _f32(ev.voice)),
                    ("f", _f32(ev.energy)),
                ),
            )
            return
        if self._mode != "flat":
            return
        for genre, p in ev.genre:
            addr = self._genre_addr.get(genre)
            if addr is None:
                addr = f"{self.target.prefix}/genre/{_osc_name(genre)}"
                if len(self._genre_addr) < 1024:
                    self._genre_addr[genre] = addr
            self._send(addr, (("f", _f32(p)),))
        self._send(a["genre/top"], (("s", str(top_genre)),))
        self._send(a["mood/valence"], (("f", _f32(ev.valence)),))
        self._send(a["mood/arousal"], (("f", _f32(ev.arousal)),))
        self._send(a["mood/quadrant"], (("s", str(quadrant)),))
        self._send(a["voice"], (("f", _f32(ev.voice)),))
        self._send(a["energy"], (("f", _f32(ev.energy)),))

    def _send_similar(self, ev: SimilarEvent) -> None:
        """Nearest references (each window) and the scene (when it changes)."""
        a = self._a
        if self._mode == "rich":
            args: list[tuple[str, Any]] = []
            for title, distance in ev.nearest:
                args += [("s", str(title)), ("f", _f32(distance))]
            if args:
                self._send(a["similar"], tuple(args))
        elif self._mode == "flat":
            for n, (title, distance) in enumerate(ev.nearest[:100]):
                while len(self._similar_addr) <= n:
                    base = f"{a['similar']}/{len(self._similar_addr) + 1}"
                    self._similar_addr.append((base, f"{base}/distance"))
                addr, dist_addr = self._similar_addr[n]
                self._send(addr, (("s", str(title)),))
                self._send(dist_addr, (("f", _f32(distance)),))
        else:
            return
        if ev.scene and ev.scene != self._scene_sent:
            self._scene_sent = ev.scene
            self._send(a["scene"], (("s", str(ev.scene)),))

    # ------------------------------------------------------------------ socket
    def _open_socket(self, now: float) -> socket.socket | None:
        if self._sock is not None:
            return self._sock
        if now < self._retry_at:
            return None
        t = self.target
        sock: socket.socket | None = None
        try:
            family, kind, proto, _, addr = socket.getaddrinfo(
                t.host, t.port, type=socket.SOCK_DGRAM
            )[0]
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            # connected, so that ICMP "port unreachable" comes back as an error we can count
            sock.connect(addr)
        except OSError as exc:
            if sock is not None:
                sock.close()
            self._fail(now, exc)
            return None
        if self._ever_opened:
            self.retries += 1
        self._ever_opened = True
        self._sock = sock
        return sock

    def _close_socket(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def _fail(self, now: float, exc: BaseException) -> None:
        self.errors += 1
        if now - self._last_error > 5.0:
            self._streak = 0
        self._streak += 1
        self._last_error = now
        backoff = min(self.BACKOFF_MAX_S, self.BACKOFF_MIN_S * 2.0 ** (self._streak - 1))
        self._retry_at = now + backoff
        self._close_socket()
        self._log(
            logging.WARNING,
            "OSC target %s: %s; retrying in %.2f s (%d errors so far)",
            self.target.label,
            exc,
            backoff,
            self.errors,
        )

    def _send(self, address: str, args: _Args) -> None:
        """Send one message now; errors are counted, never raised."""
        now = time.monotonic()
        sock = self._open_socket(now)
        if sock is None:
            self.dropped += 1
            return
        try:
            builder = OscMessageBuilder(address)
            for tag, value in args:
                builder.add_arg(value, tag)
            dgram = builder.build().dgram
        except Exception as exc:  # a value that cannot be encoded: skip this message
            self.errors += 1
            self._log(
                logging.WARNING, "OSC target %s: cannot encode %s: %s", self.name, address, exc
            )
            return
        try:
            sock.send(dgram)
        except BlockingIOError:
            self.dropped += 1
            return
        except OSError as exc:
            self.dropped += 1
            self._fail(now, exc)
            return
        self.sent[address] += 1


# ---------------------------------------------------------------------------------- control in
@dataclass(frozen=True, slots=True)
class OscControlConfig:
    """The OSC control server.

    Parameters
    ----------
    port : int
        UDP port to listen on (0 picks a free one, for tests).
    host : str
        Interface address to bind. The default, 127.0.0.1, only hears this machine; ``0.0.0.0``
        (or another interface's address) is an explicit opt-in to the network.
    prefix : str
        Address prefix of the commands.
    allow : tuple of str
        Sender addresses or networks (``192.168.1.20``, ``10.0.0.0/24``) allowed to send
        commands; empty allows every sender that can reach ``host``.
    """

    section: ClassVar[str] = "osc_control"
    port: int
    host: str = "127.0.0.1"
    prefix: str = "/onbeat"
    allow: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        s = self.section
        _check(f"{s}.port", self.port, 0, 65535, integer=True)
        if self.host != "localhost":
            try:
                ipaddress.ip_address(self.host)
            except (ValueError, TypeError):
                raise ConfigError(
                    f"{s}.host = {self.host!r} is invalid: must be an interface IP address "
                    "(127.0.0.1, 0.0.0.0, ::1) or localhost"
                ) from None
        _check_prefix(f"{s}.prefix", self.prefix)
        if not isinstance(self.allow, tuple):
            raise ConfigError(f"{s}.allow = {self.allow!r} is invalid: must be a list of addresses")
        for a in self.allow:
            try:
                ipaddress.ip_network(a, strict=False)
            except (ValueError, TypeError):
                raise ConfigError(
                    f"{s}.allow: {a!r} is not an IP address or network (e.g. 10.0.0.0/24)"
                ) from None

    @property
    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """The allow-list, parsed."""
        return tuple(ipaddress.ip_network(a, strict=False) for a in self.allow)


def parse_osc_control(
    text: str, *, prefix: str = "/onbeat", allow: Sequence[str] = ()
) -> OscControlConfig:
    """Parse ``--osc-control [HOST:]PORT`` (``9000``, ``0.0.0.0:9000``, ``[::1]:9000``).

    Raises
    ------
    ConfigError
        Naming the flag and what is wrong.
    """
    where = f"--osc-control {text!r}"
    host, port = split_host_port(text, where)
    try:
        return OscControlConfig(port=port, host=host, prefix=prefix, allow=tuple(allow))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def osc_control_from_mapping(table: Mapping[str, Any]) -> OscControlConfig:
    """Build the control config from a TOML table (``[osc_control]``: port, host, prefix, allow).

    Raises
    ------
    ConfigError
        For an unknown key or an impossible value.
    """
    known = {f.name for f in fields(OscControlConfig)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"osc_control: unknown key(s) {unknown}; known: {sorted(known)}")
    if "port" not in table:
        raise ConfigError("osc_control.port is missing")
    values = dict(table)
    if "allow" in values:
        allow = values["allow"]
        values["allow"] = tuple(allow) if isinstance(allow, list | tuple) else (allow,)
    try:
        return OscControlConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"osc_control: {exc}") from None


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _number(x: Any, *, allow_bool: bool = False) -> float | None:
    """``x`` as a float if it is an OSC number (int, float; bool if allowed), else None.

    Non-finite floats are returned as they are, for the caller to reject as a bad value.
    """
    if isinstance(x, bool):
        return float(x) if allow_bool else None
    if isinstance(x, int | float):
        return float(x)
    return None


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise _Rejected("bad_value", f"{what} {value} is not a finite number")
    return value


class _ControlUDPServer(BlockingOSCUDPServer):
    """python-osc's blocking UDP server with every packet routed to :class:`OscControlServer`.

    The dispatcher is not used: it sleeps until a bundle's timetag (a stall anyone could cause)
    and lets non-``ParseError`` exceptions escape. Packets are handled one at a time on the
    server thread; nothing that arrives can raise out of it.
    """

    max_packet_size = 4 * MAX_CONTROL_PACKET_BYTES  # a larger datagram still reads as oversized

    def __init__(
        self, address: tuple[str, int], owner: OscControlServer, family: socket.AddressFamily
    ) -> None:
        self._owner = owner
        super().__init__(address, Dispatcher(), family=family)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        except OSError:
            pass

    def verify_request(self, request: Any, client_address: Any) -> bool:
        try:
            return self._owner._verify(request[0], client_address)
        except Exception:
            self._owner._internal_error()
            return False

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            self._owner._handle_packet(request[0], client_address)
        except Exception:
            self._owner._internal_error()

    def handle_error(self, request: Any, client_address: Any) -> None:
        self._owner._internal_error()


class OscControlServer:
    """Receives OSC control messages and turns them into tracker commands.

    Commands (``P`` = prefix):

    ==============================  ==================================================
    ``P/tap``                       tap tempo now
    ``P/nudge f ms``                shift the beat phase (positive = later), ±1000 ms
    ``P/resync``                    "downbeat now"
    ``P/double`` / ``P/halve``      ×2 / ÷2 tempo
    ``P/bpm_range f min f max``     tempo search range, 20..400 BPM
    ``P/freeze i``                  1 freezes the tempo, 0 follows again
    ``P/latency f ms``              output latency of every OSC target, 0..500 ms
    ``P/latency s target f ms``     output latency of one target (name, host:port or preset)
    ==============================  ==================================================

    The trigger commands (tap, resync, double, halve) also take one number, as buttons send
    them: non-zero triggers, zero (the button's release) is ignored. Arguments may be ``i``,
    ``f``, ``d`` or ``h``; ``freeze`` also takes ``T``/``F``. Bundles are unpacked and their
    timetags ignored.

    A latency change updates the targets' :class:`OscSink` objects and queues an
    ``output_latency`` command so the tracker issues beats early enough for the largest one
    (:func:`required_tracker_lead_ms`); without sinks, ``P/latency f ms`` sets the tracker's
    output latency directly.

    Everything else (oversized packets over :data:`MAX_CONTROL_PACKET_BYTES`, non-OSC data,
    malformed packets, unknown addresses, wrong argument types, out-of-range values, senders not
    on the allow-list) is counted in :attr:`rejected` by reason and logged at most once a second.

    Parameters
    ----------
    config : OscControlConfig
        Where to listen.
    commands : CommandQueue
        Where commands go (the analysis thread drains it once per hop).
    sinks : sequence of OscSink
        The OSC targets whose latency ``P/latency`` may set.

    Raises
    ------
    OnbeatError
        When the port cannot be bound.
    """

    def __init__(
        self,
        config: OscControlConfig,
        commands: CommandQueue,
        *,
        sinks: Sequence[OscSink] = (),
    ) -> None:
        self.config = config
        self.commands = commands
        self.sinks = tuple(sinks)
        self.received = 0
        self.accepted = 0
        self.ignored = 0
        self.rejected: Counter[str] = Counter()
        self._networks = config.networks
        self._log = RateLimitedLog(log)
        p = config.prefix
        self._routes: dict[str, Callable[[list[Any], str], None]] = {
            f"{p}/tap": self._trigger("tap"),
            f"{p}/resync": self._trigger("resync"),
            f"{p}/double": self._trigger("double"),
            f"{p}/halve": self._trigger("halve"),
            f"{p}/nudge": self._nudge,
            f"{p}/bpm_range": self._bpm_range,
            f"{p}/freeze": self._freeze,
            f"{p}/latency": self._latency,
        }
        host = "127.0.0.1" if config.host == "localhost" else config.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._server = _ControlUDPServer((host, config.port), self, family)
        except OSError as exc:
            raise OnbeatError(
                f"cannot listen for OSC control on {host}:{config.port}: {exc.strerror or exc}"
            ) from None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        """The bound UDP port."""
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        """The bound interface address."""
        return str(self._server.server_address[0])

    @property
    def alive(self) -> bool:
        """Whether the server thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> OscControlServer:
        """Serve on a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="osc-control",
                daemon=True,
            )
            self._thread.start()
            log.info(
                "OSC control listening on %s:%d%s/...", self.host, self.port, self.config.prefix
            )
        return self

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(2.0)
        self._server.server_close()

    def __enter__(self) -> OscControlServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ server thread
    def _reject(self, reason: str, origin: str, detail: str) -> None:
        self.rejected[reason] += 1
        self._log(
            logging.WARNING,
            "OSC control: ignored a message from %s (%s: %s); %d ignored so far",
            origin,
            reason,
            detail,
            sum(self.rejected.values()),
        )

    def _internal_error(self) -> None:
        self.rejected["internal"] += 1
        self._log(logging.ERROR, "OSC control: unexpected error", exc_info=True)

    def _verify(self, data: bytes, client: Any) -> bool:
        self.received += 1
        origin = f"{client[0]}:{client[1]}"
        if self._networks:
            try:
                ip = ipaddress.ip_address(client[0])
                ok = any(ip in net for net in self._networks)
            except ValueError:
                ok = False
            if not ok:
                self._reject("not_allowed", origin, "sender not on the allow-list")
                return False
        if len(data) > MAX_CONTROL_PACKET_BYTES:
            self._reject("oversized", origin, f"{len(data)} bytes")
            return False
        if not (OscMessage.dgram_is_message(data) or OscBundle.dgram_is_bundle(data)):
            self._reject("not_osc", origin, f"{len(data)} bytes that are no OSC packet")
            return False
        if len(data) % 4:  # OSC packets are padded to 4 bytes; python-osc reads short args
            self._reject("malformed", origin, f"{len(data)} bytes, not a multiple of 4")
            return False
        return True

    def _handle_packet(self, data: bytes, client: Any) -> None:
        origin = f"osc {client[0]}:{client[1]}"
        try:
            messages = [tm.message for tm in OscPacket(data).messages]
            parsed = [(m.address, list(m.params)) for m in messages]
        except Exception as exc:
            self._reject("malformed", origin, type(exc).__name__)
            return
        for address, params in parsed:
            route = self._routes.get(address)
            if route is None:
                self._reject("unknown_address", origin, repr(address[:64]))
                continue
            try:
                route(params, origin)
            except _Rejected as r:
                self._reject(r.reason, origin, f"{address} {r.detail}")

    def _put(self, kind: str, args: tuple[float, ...], origin: str) -> None:
        try:
            cmd = Command(kind, args, origin)
        except ValueError as exc:
            raise _Rejected("bad_value", str(exc)) from None
        self.commands.put(cmd)
        self.accepted += 1
        log.debug("OSC control: %s %s from %s", kind, args, origin)

    # ------------------------------------------------------------------ routes
    def _trigger(self, kind: str) -> Callable[[list[Any], str], None]:
        def route(params: list[Any], origin: str) -> None:
            if not params:
                self._put(kind, (), origin)
                return
            v = _number(params[0], allow_bool=True) if len(params) == 1 else None
            if v is None:
                raise _Rejected("bad_args", f"takes no argument or one number, got {params!r:.80}")
            if _finite(v, "button value") != 0.0:
                self._put(kind, (), origin)
            else:
                self.ignored += 1

        return route

    @staticmethod
    def _numbers(params: list[Any], n: int, what: str) -> list[float]:
        values = [_number(p) for p in params]
        if len(values) != n or any(v is None for v in values):
            raise _Rejected("bad_args", f"takes {what}, got {params!r:.80}")
        return [v for v in values if v is not None]

    def _nudge(self, params: list[Any], origin: str) -> None:
        (ms,) = self._numbers(params, 1, "one number (ms)")
        if not abs(_finite(ms, "nudge")) <= 1000.0:
            raise _Rejected("bad_value", f"{ms} ms is outside ±1000 ms")
        self._put("nudge", (ms,), origin)

    def _bpm_range(self, params: list[Any], origin: str) -> None:
        lo, hi = self._numbers(params, 2, "two numbers (min, max BPM)")
        if not 20.0 <= _finite(lo, "min BPM") < _finite(hi, "max BPM") <= 400.0:
            raise _Rejected("bad_value", f"range {lo}..{hi} must satisfy 20 <= min < max <= 400")
        self._put("bpm_range", (lo, hi), origin)

    def _freeze(self, params: list[Any], origin: str) -> None:
        v = _number(params[0], allow_bool=True) if len(params) == 1 else None
        if v is None:
            raise _Rejected("bad_args", f"takes one number (1 or 0), got {params!r:.80}")
        self._put("freeze", (1.0 if _finite(v, "freeze") != 0.0 else 0.0,), origin)

    def _latency(self, params: list[Any], origin: str) -> None:
        if len(params) == 2 and isinstance(params[0], str):
            name = params[0]
            ms = _number(params[1])
            if ms is None:
                raise _Rejected("bad_args", f"takes s target, f ms, got {params!r:.80}")
            targets = self._match_targets(name)
            if not targets:
                known = ", ".join(s.target.label for s in self.sinks) or "none"
                raise _Rejected("unknown_target", f"{name!r:.40} (targets: {known})")
        else:
            (ms,) = self._numbers(params, 1, "f ms or s target, f ms")
            targets = list(self.sinks)
        if not 0.0 <= _finite(ms, "latency") <= MAX_OUTPUT_LATENCY_MS:
            raise _Rejected("bad_value", f"{ms} ms is outside [0, {MAX_OUTPUT_LATENCY_MS}] ms")
        if not self.sinks:
            self._put("output_latency", (ms,), origin)
            return
        for sink in targets:
            sink.set_output_latency_ms(ms)
        lead_ms = required_tracker_lead_ms(
            [replace(s.target, output_latency_ms=s.output_latency_ms) for s in self.sinks]
        )
        self._put("output_latency", (lead_ms,), origin)

    def _match_targets(self, name: str) -> list[OscSink]:
        exact = [s for s in self.sinks if name in (s.name, s.target.label)]
        if exact:
            return exact
        by_profile = [s for s in self.sinks if s.target.profile == name]
        return by_profile if len(by_profile) == 1 else []
