"""The analysis in its own process, so that painting can never cost the tracker a frame (no Qt).

The GUI process (Qt on its main thread) starts one engine process per window (``spawn``) and
talks to it through one duplex pipe and one shared-memory segment::

    GUI process                                  engine process
    EngineProcess.send() ── ("command", …) ──►   control thread ─► Engine.commands
    EngineProcess.start()/stop() ── ("start"/"stop"/"quit") ──►  host loop (main thread)
    EngineProcess.pump() ◄── ("events", […]) ──  host loop ◄─ bounded bus subscription
    SharedViewsReader    ◄── shared memory ────  SharedFrameViews (frame hook, analysis thread)

* The analysis thread never waits for the GUI. It only publishes to its drop-oldest bus
  subscription and copies rows into the shared segment (no lock, no allocation per frame). The
  host loop batches the subscription into the pipe every 10 ms; when the GUI stops reading, that
  send blocks the host loop only, and the subscription drops its oldest events.
* Tracker commands (tap, nudge, resync, ×2, ÷2, freeze, output latency) are the same
  :class:`~onbeat.realtime.commands.Command` objects as OSC control's; the control thread puts
  them on the engine's command queue, applied before the next frame.
* Closing the window sends ``quit`` (then terminates, then kills, each after a timeout). An engine
  process that dies is noticed by :meth:`EngineProcess.pump` and reported in :attr:`error`; the
  next start launches a fresh one. The engine process exits by itself when the GUI's end of the
  pipe closes.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from onbeat.gui.runner import EngineRunner, SourceSpec
from onbeat.realtime.bus import Subscription
from onbeat.realtime.commands import Command
from onbeat.realtime.config import OnbeatConfig
from onbeat.realtime.engine import RunSummary
from onbeat.realtime.errors import OnbeatError
from onbeat.realtime.views import SharedFrameViews, SharedViewsReader

__all__ = ["EngineOptions", "EngineProcess", "StreamEnd", "StreamInfo", "engine_main"]

log = logging.getLogger(__name__)

_BATCH_S = 0.01  # the host loop sends events at most this often
_MAX_BATCH = 2048
_START_TIMEOUT_S = 60.0  # spawn + imports + opening the source, on a loaded machine
# The CPUs this process may use, as it started (the GUI thread's are narrowed while an engine runs).
_PROCESS_CPUS: frozenset[int] = (
    frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()
)


def cpu_split() -> tuple[frozenset[int], frozenset[int]] | None:
    """(engine CPUs, GUI CPUs) when one CPU can be dedicated to the analysis, else None.

    The engine gets the last CPU this process may use; the GUI keeps the others.
    """
    cpus = sorted(_PROCESS_CPUS)
    if len(cpus) < 2 or not hasattr(os, "sched_setaffinity"):
        return None
    return frozenset(cpus[-1:]), frozenset(cpus[:-1])


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """How the engine process runs.

    Attributes
    ----------
    queue_size : int
        Events the GUI's subscription holds, on each side of the pipe (drop-oldest beyond).
    capacity_frames, margin_frames : int
        Shared frame views (see :class:`~onbeat.realtime.views.SharedFrameViews`).
    views : bool
        Mirror frames into shared memory (False: events only; benchmarks).
    frame_timing : bool
        Time every analysis frame (hooks included) and report the times when a stream ends
        (:attr:`StreamEnd.frame_ns`); for the GUI benchmark.
    log_level : int
        Logging level in the engine process.
    dedicate_cpu : bool
        With two CPUs or more, run the engine process on the last one and keep the GUI off it,
        so that painting never evicts the analysis' caches between two frames.
    """

    queue_size: int = 4096
    capacity_frames: int = 1200
    margin_frames: int = 100
    views: bool = True
    frame_timing: bool = False
    log_level: int = logging.WARNING
    dedicate_cpu: bool = True


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What the engine process says about the running stream.

    Attributes
    ----------
    device_rate_hz : int
        Rate of the source (device or file), 0 before the analysis is set up.
    live : bool
        Whether the source is an input device.
    device : str
        Its name.
    live_rate_hz : int
        Its sample rate.
    latency_s : float
        Its input latency.
    """

    device_rate_hz: int = 0
    live: bool = False
    device: str = ""
    live_rate_hz: int = 0
    latency_s: float = 0.0


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """A stream ended in the engine process.

    Attributes
    ----------
    token : int
        Which start it ends.
    summary : RunSummary or None
        The engine's summary (None when it failed).
    error : str
        Why it failed ("" when it did not).
    frame_ns : ndarray of int64 or None
        Wall time of every analysis frame in ns (only with :attr:`EngineOptions.frame_timing`).
    frame_cpu_ns : ndarray of int64 or None
        CPU time of the analysis thread in every frame, in ns (likewise).
    process_cpu_s : float
        CPU time of the whole engine process during the stream.
    wall_s : float
        Wall time of the stream.
    """

    token: int
    summary: RunSummary | None
    error: str
    frame_ns: npt.NDArray[np.int64] | None
    frame_cpu_ns: npt.NDArray[np.int64] | None
    process_cpu_s: float
    wall_s: float


# ---------------------------------------------------------------------- GUI side
class EngineProcess:
    """The GUI's handle on its engine process (used from the Qt main thread only).

    Parameters
    ----------
    config : OnbeatConfig
        Engine configuration.
    options : EngineOptions
        How the engine process runs.
    launch : bool
        Start the process now (in the background: :meth:`start` waits for it).

    Attributes
    ----------
    views : SharedViewsReader
        The shared frame views and audio ring of the running stream.
    subscription : Subscription
        Events received by :meth:`pump`, drop-oldest (a fresh one per stream).
    spec : SourceSpec or None
        The last source started.
    info : StreamInfo or None
        The running stream's source.
    summary : RunSummary or None
        The last stream's summary, once it ended.
    last_end : StreamEnd or None
        The last stream's end report.
    error : str
        Why the last stream or the engine process failed ("" when nothing did).
    """

    def __init__(
        self,
        config: OnbeatConfig,
        options: EngineOptions | None = None,
        *,
        launch: bool = True,
    ) -> None:
        self.config = config
        self.options = options or EngineOptions()
        o = self.options
        self.views = SharedViewsReader(o.capacity_frames, margin_frames=o.margin_frames)
        self.subscription = Subscription("gui", o.queue_size)
        self.spec: SourceSpec | None = None
        self.info: StreamInfo | None = None
        self.summary: RunSummary | None = None
        self.last_end: StreamEnd | None = None
        self.error = ""
        self.pid = 0
        self.remote_dropped = 0
        self._proc: Any = None
        self._conn: Any = None
        self._token = 0
        self._running = False
        self._reply: tuple[Any, ...] | None = None
        self._closing = False
        self._pinned = False
        if launch:
            self.launch()

    # ------------------------------------------------------------------ process
    @property
    def alive(self) -> bool:
        """Whether the engine process runs."""
        return self._proc is not None and self._proc.is_alive()

    @property
    def running(self) -> bool:
        """Whether a stream runs (as of the last :meth:`pump`)."""
        return self._running and self.alive

    @property
    def dropped(self) -> int:
        """Events the GUI never saw: dropped by either side's bounded queue."""
        return self.subscription.dropped + self.remote_dropped

    def launch(self) -> None:
        """Start the engine process, unless it runs."""
        if self.alive:
            return
        self._release(unlink=self._proc is not None and self._proc.exitcode != 0)
        split = cpu_split() if self.options.dedicate_cpu else None
        ctx = multiprocessing.get_context("spawn")
        here, there = ctx.Pipe(duplex=True)
        proc = ctx.Process(
            target=engine_main,
            args=(self.config, there, self.options, split[0] if split else None),
            name="onbeat-engine",
            daemon=True,
        )
        proc.start()
        there.close()
        if split is not None:
            try:  # this (the Qt main) thread paints: keep it off the engine's CPU
                os.sched_setaffinity(0, split[1])
                self._pinned = True
            except OSError as exc:
                log.info("cannot set the GUI's CPU affinity: %s", exc)
        self._proc, self._conn = proc, here
        self._running = False
        self._closing = False
        log.info("engine process %d started", proc.pid)

    def _release(self, *, unlink: bool) -> None:
        """Forget a finished process: close the pipe and the shared views."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.views.close(unlink=unlink)
        self._running = False

    def _died(self) -> None:
        """The pipe closed or the process exited."""
        proc = self._proc
        if proc is None or self._conn is None:
            return
        proc.join(2.0)
        if not self._closing:
            code = proc.exitcode
            self.error = f"the engine process stopped unexpectedly (exit code {code})"
            log.error("%s", self.error)
        # a process that did not exit cleanly left its shared segment behind: remove it
        self._release(unlink=proc.exitcode != 0)

    def _send(self, message: tuple[Any, ...]) -> bool:
        conn = self._conn
        if conn is None:
            return False
        try:
            conn.send(message)
        except (OSError, ValueError):
            self._died()
            return False
        return True

    # ------------------------------------------------------------------ receiving
    def pump(self, max_messages: int = 256) -> int:
        """Receive what the engine process sent (events, status); returns the messages read.

        Never blocks. Notices a dead engine process and sets :attr:`error`.
        """
        conn = self._conn
        if conn is None:
            return 0
        n = 0
        try:
            while n < max_messages and conn.poll(0):
                self._handle(conn.recv())
                n += 1
        except (EOFError, OSError):  # the engine process is gone (its end of the pipe closed)
            self._died()
        return n

    def _handle(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "events":
            offer = self.subscription.offer
            for e in msg[1]:
                offer(e)
            self.remote_dropped = msg[2]
        elif kind == "info":
            self.info = msg[1]
        elif kind == "views":
            try:
                self.views.attach(msg[1])
            except (OSError, ValueError) as exc:
                log.warning("cannot map the engine's views: %s", exc)
        elif kind == "started":
            if msg[1] == self._token:
                # everything received so far belongs to the previous stream
                self.subscription = Subscription("gui", self.options.queue_size)
                self.remote_dropped = 0
                self._running = True
                self._reply = msg
        elif kind == "failed":
            if msg[1] == self._token:
                self._reply = msg
        elif kind == "ended":
            end: StreamEnd = msg[1]
            self.last_end = end
            if end.token == self._token:
                self._running = False
                self.summary = end.summary
                if end.error:
                    self.error = end.error
        elif kind == "ready":
            self.pid = int(msg[1])

    def _wait_for(self, done: Any, timeout_s: float | None) -> bool:
        """Pump until ``done()`` or the timeout (or the process died); True when done."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            self.pump()
            if done():
                return True
            if self._conn is None:
                return bool(done())
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if left <= 0:
                return False
            try:
                self._conn.poll(left)
            except (EOFError, OSError):
                self._died()

    # ------------------------------------------------------------------ control
    def start(self, spec: SourceSpec, timeout_s: float = _START_TIMEOUT_S) -> None:
        """Stop any running stream, then start analysing ``spec`` in the engine process.

        Raises
        ------
        OnbeatError
            When the source cannot be opened (missing file, no such device) or the engine
            process does not answer.
        """
        self.launch()
        self._token += 1
        token = self._token
        self.spec = spec
        self.summary = None
        self.info = None
        self.error = ""
        self._reply = None
        if not self._send(("start", token, spec)):
            raise OnbeatError(self.error or "the engine process is not running")
        if not self._wait_for(lambda: self._reply is not None, timeout_s):
            if self._conn is None:
                raise OnbeatError(self.error or "the engine process stopped")
            raise OnbeatError(f"the engine process did not start {spec.describe()} in time")
        reply = self._reply
        assert reply is not None
        if reply[0] == "failed":
            raise OnbeatError(reply[2])

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the stream and wait until the engine process reports its end."""
        if not self.running:
            return
        self._send(("stop", self._token))
        if not self._wait_for(lambda: not self.running, timeout_s):
            log.warning("the engine did not stop within %.1f s", timeout_s)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for the stream to end by itself (receiving meanwhile); True when it has."""
        return self._wait_for(lambda: not self.running, timeout_s)

    def send(self, command: Command) -> bool:
        """Send a tracker command; False when no stream runs to take it."""
        if not self.running:
            return False
        return self._send(("command", command))

    def close(self, timeout_s: float = 3.0) -> None:
        """Stop the engine process: ask, then terminate, then kill (each after a timeout)."""
        proc = self._proc
        if proc is None:
            return
        self._closing = True
        if self._conn is not None and proc.is_alive():
            self._send(("quit",))
            # keep receiving: a blocked send in the engine process must not stall its exit
            self._wait_for(lambda: not proc.is_alive(), timeout_s)
        if proc.is_alive():
            log.warning("engine process %d did not quit; terminating it", proc.pid)
            proc.terminate()
            proc.join(timeout_s)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout_s)
        self._release(unlink=proc.exitcode != 0)
        self._running = False
        if self._pinned:
            self._pinned = False
            try:
                os.sched_setaffinity(0, _PROCESS_CPUS)
            except OSError as exc:
                log.info("cannot restore the GUI's CPU affinity: %s", exc)


# ---------------------------------------------------------------------- engine side
class _FrameTiming:
    """Times every :meth:`Analyzer._frame` call (stages and frame hooks) in this process: wall
    time, and the analysis thread's CPU time (which excludes time spent preempted)."""

    def __init__(self, capacity: int = 1 << 20) -> None:
        from onbeat.realtime.analysis import Analyzer

        self.ns = np.zeros(capacity, dtype=np.int64)
        self.cpu_ns = np.zeros(capacity, dtype=np.int64)
        self.n = 0
        frame = Analyzer._frame
        clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
        timing = self
        ns, cpu_ns = self.ns, self.cpu_ns

        def timed(analyzer: Any) -> None:
            c0 = cpu_clock()
            t0 = clock()
            frame(analyzer)
            t1 = clock()
            c1 = cpu_clock()
            i = timing.n
            if i < capacity:
                ns[i] = t1 - t0
                cpu_ns[i] = c1 - c0
            timing.n = i + 1

        setattr(Analyzer, "_frame", timed)  # noqa: B010 - this process only, for benchmarks

    def reset(self) -> None:
        self.n = 0

    def take(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        n = min(self.n, self.ns.shape[0])
        return self.ns[:n].copy(), self.cpu_ns[:n].copy()


class _Host:
    """The engine process: runs streams for the GUI and forwards what they produce."""

    def __init__(self, config: OnbeatConfig, conn: Any, options: EngineOptions) -> None:
        self.conn = conn
        self.options = options
        self.views = (
            SharedFrameViews(options.capacity_frames, margin_frames=options.margin_frames)
            if options.views
            else None
        )
        self.runner = EngineRunner(config, self.views, queue_size=options.queue_size)
        self.requests: deque[tuple[Any, ...]] = deque()
        self.wake = threading.Event()
        self.token = 0
        self.reported = True
        self.sent_views = ""
        self.sent_info: StreamInfo | None = None
        self.timing = _FrameTiming() if options.frame_timing else None
        self.cpu0 = self.wall0 = 0.0
        self.last_send = 0.0

    def control(self) -> None:
        """Control thread: commands go straight to the engine, the rest to the host loop."""
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):  # the GUI went away
                msg = ("quit",)
            kind = msg[0]
            if kind == "command":
                self.runner.send(msg[1])
            elif kind == "stop":
                if msg[1] == self.token:
                    self.runner.request_stop()
            else:  # start, quit: the host loop handles them, after the running stream stops
                self.runner.request_stop()
                self.requests.append(msg)
                self.wake.set()
                if kind == "quit":
                    return

    def serve(self) -> None:
        """Host loop: start streams, forward events in batches, report ends, until quit."""
        threading.Thread(target=self.control, name="control", daemon=True).start()
        self.conn.send(("ready", os.getpid()))
        while True:
            while self.requests:
                msg = self.requests.popleft()
                if msg[0] == "quit":
                    self.end_stream()
                    return
                self.start(msg[1], msg[2])
            sub = self.runner.subscription
            if sub is None or self.reported:
                self.wake.wait(0.05)
                self.wake.clear()
                continue
            if sub.wait(0.02):
                pause = self.last_send + _BATCH_S - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            self.forward(sub)
            if not self.runner.running:
                self.end_stream()

    def info(self) -> StreamInfo:
        r = self.runner
        live = r.live
        if live is None:
            return StreamInfo(device_rate_hz=r.device_rate_hz)
        return StreamInfo(
            device_rate_hz=r.device_rate_hz,
            live=True,
            device=str(live.name),
            live_rate_hz=int(live.sample_rate_hz),
            latency_s=round(float(live.latency_s), 4),
        )

    def forward(self, sub: Subscription) -> None:
        """Send the views' name and the source info when they change, then queued events."""
        if self.views is not None and self.views.segment_name != self.sent_views:
            self.sent_views = self.views.segment_name
            self.conn.send(("views", self.sent_views))
        info = self.info()
        if info != self.sent_info:
            self.sent_info = info
            self.conn.send(("info", info))
        while True:
            events = sub.drain(_MAX_BATCH)
            if events:
                self.conn.send(("events", events, sub.dropped))
                self.last_send = time.monotonic()
            if len(events) < _MAX_BATCH:
                return

    def end_stream(self) -> None:
        """Stop the stream, forward what is left and report its end (once)."""
        if self.reported:
            return
        r = self.runner
        r.stop()
        if r.subscription is not None:
            self.forward(r.subscription)
        wall_ns, cpu_ns = self.timing.take() if self.timing is not None else (None, None)
        end = StreamEnd(
            token=self.token,
            summary=r.summary,
            error=r.error,
            frame_ns=wall_ns,
            frame_cpu_ns=cpu_ns,
            process_cpu_s=time.process_time() - self.cpu0,
            wall_s=time.monotonic() - self.wall0,
        )
        self.conn.send(("ended", end))
        self.reported = True

    def start(self, token: int, spec: SourceSpec) -> None:
        """Start ``spec`` after ending the running stream; answers started or failed."""
        self.end_stream()
        # Keep the cyclic collector's full passes over long-lived objects off the analysis.
        gc.collect()
        gc.freeze()
        try:
            self.runner.start(spec)
        except OnbeatError as exc:
            self.conn.send(("failed", token, str(exc)))
            return
        except Exception as exc:
            log.exception("cannot start %s", spec.describe())
            self.conn.send(("failed", token, f"{type(exc).__name__}: {exc}"))
            return
        if self.timing is not None:
            self.timing.reset()
        self.token = token
        self.reported = False
        self.sent_info = None
        self.cpu0, self.wall0 = time.process_time(), time.monotonic()
        self.conn.send(("started", token))

    def close(self) -> None:
        self.runner.stop()
        if self.views is not None:
            self.views.close()
        self.conn.close()


def engine_main(
    config: OnbeatConfig,
    conn: Any,
    options: EngineOptions,
    cpus: frozenset[int] | None = None,
) -> None:
    """Entry point of the engine process (``spawn``; imports no Qt). ``cpus``: run on these
    CPUs only (every thread started here inherits it)."""
    if cpus:
        try:
            os.sched_setaffinity(0, cpus)
        except OSError as exc:
            log.info("cannot set the engine's CPU affinity: %s", exc)
    # Ctrl-C in a terminal reaches the whole process group: the GUI handles it and stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=options.log_level, format="onbeat engine: %(levelname)s: %(message)s")
    host = _Host(config, conn, options)
    try:
        host.serve()
    except (BrokenPipeError, EOFError, ConnectionResetError):
        log.info("the GUI went away")
    finally:
        host.close()
