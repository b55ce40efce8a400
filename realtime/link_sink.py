"""Ableton Link out: onbeat joins a Link session and, once locked, leads its tempo and phase.

:class:`LinkSink` runs an ``aalink`` Link peer on its own thread and asyncio loop. ``handle`` only
queues the event; the loop polls the session ``POLL_HZ`` times a second and applies the policy
below through :class:`LinkController` (which holds no thread and no socket, so the policy is
tested without a network).

Policy: lead when sure, follow otherwise, never fight
------------------------------------------------------
1. **Join without imposing.** The peer is enabled at start-up. Joining a running session adopts
   its tempo and phase (Link lets the longest-running session win); nothing is committed before
   the tracker is sure. Alone, the session is onbeat's own, at ``initial_bpm``.
2. **Lead only when sure.** onbeat proposes anything only while the stream runs and the tracker
   reports ``locked`` with ``confidence >= min_confidence``. After each lock it first waits
   (state ``settling``) until its tempo has settled: the last ``SETTLE_BEATS`` beats agree within
   ``settle_pct``. A tracker that has just locked still refines its tempo by about 1 %; the
   session then gets one tempo instead of a run of small corrections. Once leading, tempo
   changes of the music are followed at once (rule 3).
3. **Tempo.** It proposes its tempo when the session's differs by more than
   ``tempo_tolerance_pct`` (hysteresis: the session tempo does not flicker with the tracker's
   estimate), and with every phase correction when it differs at all (so that the phase does
   not drift away again). Tempo changes of the music are followed the same way.
4. **Phase.** The beat phase is aligned when it is more than ``phase_tolerance_ms`` off, and
   the bar phase (Link quantum = beats per bar) when it is off by whole beats and the tracker's
   bar position has been consistent for ``BAR_HOLD_BEATS`` beats: a bar estimate that flickers
   never moves the session's bar. Alone, with Link's ``requestBeatAtTime``; with peers, only with
   ``force_phase`` (the default), with ``forceBeatAtTime``, which re-maps every peer: onbeat is a
   timing source that listens to the music, which is what a session that follows a DJ wants.
   Without ``force_phase`` onbeat leads the tempo only.
5. **Never fight.** Every poll predicts the session from the last one (same tempo, beat advancing
   with it, modulo the quantum). A change that onbeat did not commit, a tempo set by a peer, a
   peer's forced phase, or the timeline of a session onbeat joined, is a *peer change*: onbeat
   then follows for ``yield_s`` seconds, proposing nothing, and counts it in
   :attr:`LinkController.peer_changes`. A peer that keeps changing the session keeps onbeat
   following; onbeat never answers a peer's change within ``yield_s``.
6. **Rate.** At most one tempo and one phase commit per ``MIN_COMMIT_INTERVAL_S``.
7. **Unlock and end of stream.** onbeat stops proposing; the session keeps running at its last
   tempo (the peers' clocks go on), and onbeat leads again once it is locked.

Times: events carry stream seconds; :class:`~onbeat.realtime.clock.StreamClock` maps them to
``time.monotonic`` from the arrival of the events, and the Link clock (``CLOCK_MONOTONIC_RAW`` on
Linux) is tied to ``time.monotonic`` by bracketing reads once a second.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Protocol

from onbeat.realtime.clock import RateLimitedLog, TrackerFollower
from onbeat.realtime.errors import ConfigError, OnbeatError
from onbeat.realtime.events import (
    BeatEvent,
    Event,
    StreamEndEvent,
    StreamStartEvent,
)
from onbeat.realtime.validation import check_range, parse_key_values

__all__ = ["LinkConfig", "LinkController", "LinkSink", "parse_link_options"]

log = logging.getLogger(__name__)

#: Link's tempo range (BPM).
LINK_MIN_BPM = 20.0
LINK_MAX_BPM = 999.0


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """The Ableton Link peer.

    Parameters
    ----------
    min_confidence : float
        Tracker confidence (0..1) needed, besides ``locked``, before onbeat proposes anything.
    tempo_tolerance_pct : float
        The session tempo is changed when it differs from the tracker's by more than this (%).
    phase_tolerance_ms : float
        The beat and bar phase are re-aligned when they are more than this off.
    yield_s : float
        After a change made by a peer, onbeat follows for this long, proposing nothing.
    offset_ms : float
        Shift of onbeat's beats on the Link timeline (positive: later), to trim a systematic
        offset of the audio input.
    force_phase : bool
        With peers in the session, align their phase too (Link's ``forceBeatAtTime``). Off:
        onbeat only proposes its tempo when others are there.
    initial_bpm : float
        Tempo of the session onbeat creates when it is alone and not yet locked.
    settle_pct : float
        Before onbeat first leads after a lock, the tempi of its last
        ``LinkController.SETTLE_BEATS`` beats must agree within this (%, max/min − 1).
    """

    section: ClassVar[str] = "link"
    min_confidence: float = 0.6
    tempo_tolerance_pct: float = 0.1
    phase_tolerance_ms: float = 10.0
    yield_s: float = 8.0
    offset_ms: float = 0.0
    force_phase: bool = True
    initial_bpm: float = 120.0
    settle_pct: float = 0.3

    def __post_init__(self) -> None:
        s = self.section
        check_range(s, "min_confidence", self.min_confidence, 0.0, 1.0)
        check_range(s, "tempo_tolerance_pct", self.tempo_tolerance_pct, 0.01, 10.0)
        check_range(s, "phase_tolerance_ms", self.phase_tolerance_ms, 1.0, 200.0)
        check_range(s, "yield_s", self.yield_s, 0.0, 3600.0)
        check_range(s, "offset_ms", self.offset_ms, -500.0, 500.0)
        if not isinstance(self.force_phase, bool):
            raise ConfigError(f"{s}.force_phase = {self.force_phase!r} is invalid: true or false")
        check_range(s, "initial_bpm", self.initial_bpm, LINK_MIN_BPM, LINK_MAX_BPM)
        check_range(s, "settle_pct", self.settle_pct, 0.01, 100.0)


def parse_link_options(text: str) -> LinkConfig:
    """Parse ``--link [KEY=VALUE,...]`` into a :class:`LinkConfig`.

    An empty string gives the defaults; keys are the :class:`LinkConfig` fields, e.g.
    ``min_confidence=0.7,yield_s=15,force_phase=false``.

    Raises
    ------
    ConfigError
        Naming the option and what is wrong with it.
    """
    where = f"--link {text!r}"
    if not isinstance(text, str):
        raise ConfigError(f"{where}: expected KEY=VALUE[,KEY=VALUE...]")
    opts = [o.strip() for o in text.split(",") if o.strip()]
    values = parse_key_values(opts, where, LinkConfig)
    try:
        return LinkConfig(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


class _LinkLike(Protocol):
    """What :class:`LinkController` uses of ``aalink.Link`` (a test double provides the same)."""

    @property
    def num_peers(self) -> int: ...
    @property
    def time(self) -> timedelta: ...
    @property
    def beat(self) -> float: ...

    tempo: float
    quantum: float

    def request_beat(self, beat: float, /) -> None: ...
    def force_beat(self, beat: float, /) -> None: ...


def _wrap(x: float, period: float) -> float:
    """``x`` wrapped into ``[-period / 2, period / 2)``."""
    return (x + 0.5 * period) % period - 0.5 * period


class LinkController:
    """The Link policy (see the module docstring), driven by events and periodic updates.

    Not thread-safe: one thread calls :meth:`on_event` and :meth:`update`.

    Parameters
    ----------
    config : LinkConfig
        Thresholds.
    link : aalink.Link or a test double
        The peer.
    clock : callable
        ``time.monotonic`` or a test clock, in the time base of the event arrival times.

    Attributes
    ----------
    tempo_proposals : int
        Tempo changes committed by onbeat.
    phase_corrections : int
        Phase alignments committed by onbeat (``request_beat`` alone, ``force_beat`` with peers).
    peer_changes : int
        Session changes made by someone else (each starts a ``yield_s`` pause).
    state : str
        ``"waiting"`` (no lock), ``"leading"``, ``"yielding"`` (after a peer change) or
        ``"stopped"`` (no stream).
    """

    MIN_COMMIT_INTERVAL_S: ClassVar[float] = 0.5
    #: Consecutive beats with a consistent bar position before the session's bar is moved.
    BAR_HOLD_BEATS: ClassVar[int] = 4
    #: Beats whose tempi must agree (``settle_pct``) before onbeat first leads after a lock.
    SETTLE_BEATS: ClassVar[int] = 3
    OFFSET_REFRESH_S: ClassVar[float] = 1.0
    #: A session beat this far (ms) from the prediction was moved by someone else.
    PEER_PHASE_EPS_MS: ClassVar[float] = 3.0
    #: Relative tempo difference that counts as a change (Link sends whole microseconds per beat).
    PEER_TEMPO_EPS: ClassVar[float] = 1e-5
    #: A session read (Link time, beat, Link time) counts only if the two time reads are this
    #: close (s): a thread switch inside it would look like a phase jump of several ms.
    TIGHT_READ_S: ClassVar[float] = 1e-3
    READ_TRIES: ClassVar[int] = 3

    def __init__(
        self, config: LinkConfig, link: _LinkLike, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self.link = link
        self._clock = clock
        self._follow = TrackerFollower()
        self._bar_stable = 0  # beats in a row whose bar position followed from the one before
        self._recent_bpm: deque[float] = deque(maxlen=self.SETTLE_BEATS)
        self._settled = False  # the tempo settled since the last lock: onbeat may lead
        self._link_offset_s = 0.0
        self._offset_at = -math.inf
        self._expect: tuple[float, float, float] | None = None  # tempo, link time, beat
        self._suspect = False  # the last poll saw an unconfirmed session change
        self._peer_change_at = -math.inf
        self._last_tempo_commit = -math.inf
        self._last_phase_commit = -math.inf
        self.tempo_proposals = 0
        self.phase_corrections = 0
        self.peer_changes = 0
        self.state = "stopped"
        self.last_phase_error_ms = math.nan

    # ------------------------------------------------------------------ events
    def on_event(self, wall_s: float, event: Event) -> None:
        """Take one event that arrived at ``wall_s`` (``clock`` seconds)."""
        f = self._follow
        prev = f.anchor
        f.on_event(wall_s, event)
        if isinstance(event, StreamStartEvent):
            self._bar_stable = 0
            self._recent_bpm.clear()
        elif isinstance(event, StreamEndEvent):
            f.locked = False
        elif isinstance(event, BeatEvent):
            if event.bpm > 0.0:
                self._recent_bpm.append(event.bpm)
            n = f.beats_per_bar
            if (
                prev is not None
                and event.beat_index > prev.beat_index
                and (
                    (prev.beat_in_bar - 1 + event.beat_index - prev.beat_index) % n
                    == event.beat_in_bar - 1
                )
            ):
                self._bar_stable += 1
            else:
                self._bar_stable = 0

    # ------------------------------------------------------------------ periodic
    def _refresh_offset(self, now: float) -> None:
        """Tie the Link clock to ``clock`` with the tightest of three bracketing reads."""
        best = math.inf
        for _ in range(3):
            a = self._clock()
            t = self.link.time.total_seconds()
            b = self._clock()
            if b - a < best:
                best = b - a
                self._link_offset_s = t - 0.5 * (a + b)
        self._offset_at = now

    def _desired_bar_phase(self, wall_s: float) -> float | None:
        """Where onbeat's grid says the bar is at ``wall_s``: beats since the downbeat."""
        f = self._follow
        if f.anchor is None or not f.ready:
            return None
        t = f.stream.to_stream(wall_s) - self.config.offset_ms * 1e-3
        k = f.beats_since_anchor(t)
        return (f.anchor.beat_in_bar - 1 + k) % f.beats_per_bar

    def _read_session(self) -> tuple[float, float] | None:
        """Link time (s) and the session beat at that time, from a read bracketed by two clock
        reads; ``None`` when no try was tight (a busy machine: skip this poll)."""
        link = self.link
        for _ in range(self.READ_TRIES):
            a = link.time.total_seconds()
            beat = link.beat
            b = link.time.total_seconds()
            if b - a <= self.TIGHT_READ_S:
                return 0.5 * (a + b), beat
        return None

    def _watch_peers(self, link_t: float, beat: float, tempo: float, now: float) -> None:
        """Flag a session change onbeat did not make; remember the session for the next poll.

        The session's time and beat are separate reads, and a thread switch between them
        (Python's 5 ms switch interval on a busy machine) looks like a phase jump of several ms.
        :meth:`_read_session` brackets the beat with two time reads and drops loose reads; and an
        apparent change must still show on two polls in a row. A peer's tempo change or forced
        phase persists, so it is confirmed one poll later.
        """
        exp = self._expect
        if exp is not None:
            e_tempo, e_t, e_beat = exp
            q = float(self._follow.beats_per_bar)
            changed = abs(tempo - e_tempo) > self.PEER_TEMPO_EPS * e_tempo
            if not changed:
                drift_beats = _wrap(beat - (e_beat + (link_t - e_t) * e_tempo / 60.0), q)
                changed = abs(drift_beats) * 60e3 / tempo > self.PEER_PHASE_EPS_MS
            if changed and not self._suspect:
                self._suspect = True  # keep the expectation; act on nothing until the next poll
                return
            self._suspect = False
            if changed:
                self.peer_changes += 1
                self._peer_change_at = now
                log.info(
                    "Link: a peer changed the session (%.2f BPM); following for %.1f s",
                    tempo,
                    self.config.yield_s,
                )
        self._expect = (tempo, link_t, beat)

    def _remember(self) -> None:
        """After onbeat's own commit: the session as it is now is the expected one."""
        read = self._read_session()
        # An untight read forgets the expectation: the next poll starts a new one.
        self._expect = None if read is None else (self.link.tempo, read[0], read[1])
        self._suspect = False

    def update(self) -> None:
        """Poll the session and apply the policy once."""
        now = self._clock()
        link = self.link
        cfg = self.config
        if now - self._offset_at >= self.OFFSET_REFRESH_S:
            self._refresh_offset(now)
        f = self._follow
        q = f.beats_per_bar
        if link.quantum != q:
            link.quantum = q
            self._expect = None  # beats are counted against the quantum
        read = self._read_session()
        if read is None:  # no tight read on this poll: judge and change nothing
            return
        link_t, beat = read
        tempo = link.tempo
        self._watch_peers(link_t, beat, tempo, now)
        if self._suspect:  # maybe a peer's change: never answer it before it is confirmed
            return
        sure = (
            f.active
            and f.locked
            and f.confidence >= cfg.min_confidence
            and f.bpm > 0.0
            and f.anchor is not None
        )
        if not sure:
            self._settled = False
            self._set_state("waiting" if f.active else "stopped")
            return
        if not self._settled:
            r = self._recent_bpm
            self._settled = len(r) == r.maxlen and (max(r) / min(r) - 1.0) * 100.0 <= cfg.settle_pct
            if not self._settled:
                self._set_state("settling")
                return
        if now - self._peer_change_at < cfg.yield_s:
            self._set_state("yielding")
            return
        self._set_state("leading")
        ours = min(LINK_MAX_BPM, max(LINK_MIN_BPM, f.bpm))
        can_tempo = now - self._last_tempo_commit >= self.MIN_COMMIT_INTERVAL_S
        if can_tempo and abs(tempo / ours - 1.0) * 100.0 > cfg.tempo_tolerance_pct:
            self._commit_tempo(ours, now)
            tempo = ours
        desired = self._desired_bar_phase(link_t - self._link_offset_s)
        if desired is None:
            return
        err_beats = _wrap(beat - desired, float(q))
        move_bar = self._bar_stable >= self.BAR_HOLD_BEATS
        if not move_bar:  # only the phase within the beat
            err_beats = _wrap(err_beats, 1.0)
        err_ms = err_beats * 60e3 / tempo
        self.last_phase_error_ms = _wrap(err_beats, 1.0) * 60e3 / tempo
        if abs(err_ms) <= cfg.phase_tolerance_ms:
            return
        if now - self._last_phase_commit < self.MIN_COMMIT_INTERVAL_S:
            return
        peers = link.num_peers
        if peers > 0 and not cfg.force_phase:
            return
        if can_tempo and tempo != ours:
            self._commit_tempo(ours, now)
        # Re-read: committing the tempo keeps the beat at "now", and time has moved on a little.
        read = self._read_session()
        if read is None:
            return
        link_t, beat = read
        desired = self._desired_bar_phase(link_t - self._link_offset_s)
        if desired is None:
            return
        err_beats = _wrap(beat - desired, float(q))
        target = beat - (err_beats if move_bar else _wrap(err_beats, 1.0))
        if peers > 0:
            link.force_beat(target)
        else:
            link.request_beat(target)
        self.phase_corrections += 1
        self._last_phase_commit = now
        self._remember()
        log.debug("Link: phase corrected by %.1f ms (%d peer(s))", -err_ms, peers)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            log.info(
                "Link: %s (%d peer(s), %.2f BPM)", state, self.link.num_peers, self._follow.bpm
            )
            self.state = state

    def _commit_tempo(self, bpm: float, now: float) -> None:
        self.link.tempo = bpm
        self.tempo_proposals += 1
        self._last_tempo_commit = now
        self._remember()
        log.debug("Link: proposed %.3f BPM", bpm)


class LinkSink:
    """An Ableton Link peer that leads the session's tempo and phase once the tracker is locked.

    The peer (``aalink.Link``) lives on the sink's own thread and asyncio loop, created in the
    constructor; ``handle`` only queues events. See the module docstring for the policy.

    Parameters
    ----------
    config : LinkConfig
        Thresholds and options.
    name : str
        Sink name on the bus.

    Raises
    ------
    OnbeatError
        When ``aalink`` is not installed or the peer cannot start.
    """

    POLL_HZ: ClassVar[float] = 20.0
    INBOX_SIZE: ClassVar[int] = 4096
    START_TIMEOUT_S: ClassVar[float] = 5.0

    def __init__(self, config: LinkConfig | None = None, *, name: str = "link") -> None:
        self.config = config or LinkConfig()
        self.name = name
        self.errors = 0
        self.dropped_events = 0
        self.controller: LinkController | None = None
        self._inbox: deque[tuple[float, Event]] = deque(maxlen=self.INBOX_SIZE)
        self._stop = False
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._log = RateLimitedLog(log)
        self._link: Any = None
        self._thread = threading.Thread(target=self._run, name=f"sink-{name}-link", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.START_TIMEOUT_S):
            raise OnbeatError("Ableton Link peer did not start")
        if self._error is not None:
            err = self._error
            if isinstance(err, ImportError):
                raise OnbeatError(
                    f"Ableton Link needs the aalink package (pip install aalink): {err}"
                ) from None
            raise OnbeatError(f"cannot start the Ableton Link peer: {err}") from None

    # ------------------------------------------------------------------ public
    def handle(self, event: Event) -> None:
        """Queue one event for the Link thread.

        Real-time safety: appends to a bounded deque; never blocks.
        """
        inbox = self._inbox
        if len(inbox) == inbox.maxlen:
            self.dropped_events += 1
        inbox.append((time.monotonic(), event))

    def tick(self) -> None:
        """Nothing to do: the Link thread polls on its own."""

    def close(self) -> None:
        """Leave the session and stop the thread (idempotent)."""
        self._stop = True
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(3.0)

    @property
    def alive(self) -> bool:
        """Whether the Link thread runs."""
        return self._thread.is_alive()

    @property
    def num_peers(self) -> int:
        """Other peers in the session."""
        link = self._link
        return int(link.num_peers) if link is not None else 0

    @property
    def session_tempo(self) -> float:
        """The session tempo now (BPM), NaN when the peer is gone."""
        link = self._link
        return float(link.tempo) if link is not None else math.nan

    @property
    def state(self) -> str:
        """The controller's state (``waiting``, ``settling``, ``leading``, ``yielding``,
        ``stopped``)."""
        return self.controller.state if self.controller is not None else "stopped"

    # ------------------------------------------------------------------ Link thread
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            if self._ready.is_set():  # after start-up: count and log
                self.errors += 1
                log.error("Ableton Link thread stopped: %s", exc)
            else:  # reported to the constructor
                self._error = exc
                self._ready.set()

    async def _main(self) -> None:
        from aalink import Link  # GPL; imported only when Link output is asked for

        link = Link(self.config.initial_bpm)
        link.quantum = 4
        link.enabled = True
        self._link = link
        ctl = LinkController(self.config, link)
        self.controller = ctl
        self._ready.set()
        period_s = 1.0 / self.POLL_HZ
        inbox = self._inbox
        try:
            while not self._stop:
                while inbox:
                    wall, ev = inbox.popleft()
                    ctl.on_event(wall, ev)
                try:
                    ctl.update()
                except Exception:
                    self.errors += 1
                    self._log(logging.ERROR, "Link sink failed", exc_info=True)
                await asyncio.sleep(period_s)
        finally:
            link.enabled = False
            self._link = None
