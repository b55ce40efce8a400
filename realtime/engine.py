"""Wiring: a source drives the callback into the ring; the analysis loop turns it into events.

Three ways to run, one code path for the analysis (:meth:`Analyzer.consume`):

* :meth:`Engine.run_fast`: a file or array as fast as possible. The source calls the same
  :class:`InputCallback`, then the ring is consumed, in one thread: deterministic.
* :meth:`Engine.run_paced`: a file or array at real-time pace; a player thread calls the callback
  like a driver would while this thread analyses.
* :meth:`Engine.run_live`: a PortAudio input stream; a device that vanishes is reopened with
  back-off, and the gap is reported as a :class:`DeviceEvent`.

The analysis loop runs on the thread that calls ``run_*``; sinks each run on their own thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from onbeat.realtime.analysis import Analyzer
from onbeat.realtime.bus import EventBus, Sink, SinkThread
from onbeat.realtime.commands import CommandQueue
from onbeat.realtime.config import OnbeatConfig
from onbeat.realtime.events import DeviceEvent
from onbeat.realtime.library import attach_library
from onbeat.realtime.ringbuffer import RingBuffer
from onbeat.realtime.sources import BlockSource, InputCallback, LiveSource
from onbeat.realtime.tags import Tagger, tagger_available

__all__ = ["Engine", "RunSummary"]

log = logging.getLogger(__name__)

_POLL_S = 0.002
_FIRST_CALLBACK_GRACE_S = 3.0


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a run did.

    Attributes
    ----------
    frames : int
        Frames analysed.
    audio_s : float
        Seconds of audio analysed.
    cpu_s : float
        CPU time of the analysis thread after set-up (kernels warm).
    wall_s : float
        Wall-clock duration.
    events : int
        Events published.
    xruns, overflows, lost_samples, nonfinite, clipped, dropped : int
        Error counters (see :class:`HealthEvent`).
    reopens : int
        Times a vanished device was reopened.
    counts : dict of str to int
        Events published, by type.
    reason : str
        Why the stream ended.
    """

    frames: int
    audio_s: float
    cpu_s: float
    wall_s: float
    events: int
    xruns: int
    overflows: int
    lost_samples: int
    nonfinite: int
    clipped: int
    dropped: int
    reopens: int
    reason: str
    counts: dict[str, int]

    @property
    def cpu_per_audio_s(self) -> float:
        """CPU seconds per second of audio."""
        return self.cpu_s / self.audio_s if self.audio_s > 0 else 0.0


class Engine:
    """Runs sources through an :class:`Analyzer` and delivers events to sinks.

    Parameters
    ----------
    config : OnbeatConfig
        The whole configuration.
    sinks : sequence of Sink
        Each gets its own queue and thread.
    bus : EventBus, optional
        Use an existing bus (for example one the GUI also subscribes to).
    """

    def __init__(
        self, config: OnbeatConfig, *, sinks: Sequence[Sink] = (), bus: EventBus | None = None
    ) -> None:
        self.config = config
        self.bus = bus or EventBus()
        self._sinks = [
            SinkThread(s, self.bus.subscribe(s.name, config.output.queue_size)) for s in sinks
        ]
        self.analyzer: Analyzer | None = None
        self.ring: RingBuffer | None = None
        self.first_frame_wall: float | None = None
        #: Tracker commands (OSC control, GUI); shared by every analyzer this engine runs.
        self.commands = CommandQueue()
        #: Observers called after every frame with (analyzer, frame index, sample index), on the
        #: analysis thread; they must be quick and must not block (evaluation, read-only views).
        self.frame_hooks: list[Callable[[Analyzer, int, int], None]] = []
        #: The windowed genre/mood/voice CNN (``tags`` config section), when enabled.
        self.tagger: Tagger | None = None
        t = config.tags.enabled
        if t == "on" or (t == "auto" and tagger_available()):
            self.tagger = Tagger(config.tags, sample_rate_hz=config.audio.sample_rate_hz)
        # the reference library ("sounds like", scene cues), matched on the tagger's thread
        attach_library(self.tagger, config)

    # ------------------------------------------------------------------ helpers
    def _setup(
        self, rate_hz: int, channels: int, name: str, *, inline_tags: bool = False
    ) -> tuple[RingBuffer, InputCallback, Analyzer]:
        tagger = self.tagger
        if tagger is not None:
            tagger.close()
            tagger.inline = inline_tags
            if not tagger.ready:
                # Before any audio: loading the weights and compiling the numba log-mel in the
                # worker while the stream runs would hold the GIL and delay the analysis thread.
                tagger.prepare()
            tagger.reset()
            tagger.start()
        ring = RingBuffer(int(self.config.audio.ring_s * rate_hz), channels)
        analyzer = Analyzer(
            self.config, self.bus, device_rate_hz=rate_hz, channels_in=channels, source_name=name
        )
        analyzer.prepare()
        analyzer.commands = self.commands
        self.ring, self.analyzer = ring, analyzer

        hooks = tuple(self.frame_hooks) + ((tagger,) if tagger is not None else ())

        def _hook(frame: int, sample: int) -> None:
            if self.first_frame_wall is None:
                self.first_frame_wall = time.monotonic()
                log.info("first frame processed")
            for h in hooks:
                h(analyzer, frame, sample)

        analyzer.frame_hook = _hook
        for t in self._sinks:
            if not t.is_alive():
                t.start()
        analyzer.start(ring)
        return ring, InputCallback(ring), analyzer

    def _finish(
        self,
        analyzer: Analyzer,
        ring: RingBuffer,
        reason: str,
        t0: float,
        c0: float,
        reopens: int = 0,
    ) -> RunSummary:
        if self.tagger is not None:
            self.tagger.close()
        analyzer.finish(reason)
        cpu = time.thread_time() - c0
        self.close_sinks()
        return RunSummary(
            frames=analyzer.frames,
            audio_s=analyzer.samples / analyzer.rate_hz,
            cpu_s=cpu,
            wall_s=time.monotonic() - t0,
            events=analyzer.events_out,
            xruns=ring.xruns,
            overflows=ring.overflows,
            lost_samples=ring.overflow_samples,
            nonfinite=analyzer.nonfinite,
            clipped=analyzer.clipped,
            dropped=self.bus.dropped,
            reopens=reopens,
            reason=reason,
            counts=dict(analyzer.counts),
        )

    def close_sinks(self, timeout_s: float = 10.0) -> None:
        """Close the bus and wait for every sink to drain and close."""
        self.bus.close()
        for t in self._sinks:
            if t.is_alive():
                t.join(timeout_s)

    # ------------------------------------------------------------------ runs
    def run_fast(
        self,
        source: BlockSource,
        *,
        stop: threading.Event | None = None,
        irregular_seed: int | None = None,
    ) -> RunSummary:
        """Replay ``source`` as fast as possible through the callback, in this thread."""
        t0 = time.monotonic()
        ring, callback, analyzer = self._setup(
            source.sample_rate_hz, source.channels, source.name, inline_tags=True
        )
        c0 = time.thread_time()
        reason = "eof"
        block_size = self.config.audio.block_size
        for block in source.blocks(block_size, irregular_seed=irregular_seed):
            if stop is not None and stop.is_set():
                reason = "stopped"
                break
            callback(block, block.shape[0], None, None)
            analyzer.consume(ring)
        return self._finish(analyzer, ring, reason, t0, c0)

    def run_paced(
        self,
        source: BlockSource,
        *,
        stop: threading.Event | None = None,
        irregular_seed: int | None = None,
    ) -> RunSummary:
        """Replay ``source`` at real-time pace from a player thread, analysing in this thread."""
        stop = stop or threading.Event()
        t0 = time.monotonic()
        ring, callback, analyzer = self._setup(source.sample_rate_hz, source.channels, source.name)
        c0 = time.thread_time()
        player = threading.Thread(
            target=source.play,
            args=(callback, self.config.audio.block_size),
            kwargs={"realtime": True, "stop": stop, "irregular_seed": irregular_seed},
            name="player",
            daemon=True,
        )
        player.start()
        while True:
            done = not player.is_alive()
            if analyzer.consume(ring) == 0:
                if done or stop.is_set():
                    break
                time.sleep(_POLL_S)
        player.join()
        reason = "stopped" if stop.is_set() else "eof"
        return self._finish(analyzer, ring, reason, t0, c0)

    def run_live(
        self,
        live: LiveSource,
        *,
        stop: threading.Event,
        max_duration_s: float | None = None,
    ) -> RunSummary:
        """Analyse a live input until ``stop`` is set (or ``max_duration_s`` of audio)."""
        t0 = time.monotonic()
        ring, callback, analyzer = self._setup(live.sample_rate_hz, live.channels, live.name)
        c0 = time.thread_time()
        live.open(callback)
        rate = live.sample_rate_hz
        self.bus.publish(
            DeviceEvent(
                sample_index=0,
                time_s=0.0,
                emitted_s=0.0,
                state="opened",
                device=live.name,
                device_rate_hz=rate,
            )
        )
        reopens = 0
        last_cb = ring.callbacks
        last_progress = time.monotonic()
        stall_s = _FIRST_CALLBACK_GRACE_S
        lost_at: float | None = None
        backoff = 0.25
        next_try = 0.0
        try:
            while not stop.is_set():
                if analyzer.consume(ring) == 0:
                    time.sleep(_POLL_S)
                if (
                    max_duration_s is not None
                    and analyzer.samples / analyzer.rate_hz >= max_duration_s
                ):
                    break
                now = time.monotonic()
                if lost_at is None:
                    if ring.callbacks != last_cb:
                        last_cb = ring.callbacks
                        last_progress = now
                        stall_s = max(1.0, 50 * live.block_size / rate)
                    elif not live.alive() or now - last_progress > stall_s:
                        lost_at = now
                        log.warning("input device %r stopped delivering audio; retrying", live.name)
                        t = analyzer.samples / analyzer.rate_hz
                        self.bus.publish(
                            DeviceEvent(
                                sample_index=analyzer.samples,
                                time_s=t,
                                emitted_s=t,
                                state="lost",
                                device=live.name,
                                device_rate_hz=rate,
                            )
                        )
                        live.close()
                        backoff, next_try = 0.25, now
                elif now >= next_try:
                    if live.reopen(callback):
                        reopens += 1
                        gap = now - lost_at
                        lost_at = None
                        last_cb = ring.callbacks
                        last_progress = time.monotonic()
                        stall_s = _FIRST_CALLBACK_GRACE_S
                        t = analyzer.samples / analyzer.rate_hz
                        log.warning("input device %r reopened after %.1f s", live.name, gap)
                        self.bus.publish(
                            DeviceEvent(
                                sample_index=analyzer.samples,
                                time_s=t,
                                emitted_s=t,
                                state="reopened",
                                device=live.name,
                                device_rate_hz=rate,
                                gap_s=gap,
                            )
                        )
                    else:
                        backoff = min(backoff * 2, self.config.audio.reconnect_max_s)
                        next_try = now + backoff
        finally:
            live.close()
            analyzer.consume(ring)
        reason = "stopped" if stop.is_set() else "eof"
        return self._finish(analyzer, ring, reason, t0, c0, reopens)
