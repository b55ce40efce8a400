"""The analysis side of the stream: from ring-buffer blocks to events.

:class:`Analyzer` consumes device-rate blocks from the
:class:`~onbeat.realtime.ringbuffer.RingBuffer`,
mixes the selected channels down to mono, replaces NaN/inf and clamps clipped samples (counting
both), resamples to the analysis rate (soxr's streaming resampler), and cuts the stream into hops.
For each hop it runs the stage chain: :class:`SpectralFeatures` then the onset detector, and
publishes their events, plus level and health events, on the :class:`EventBus`.

Both live input and file replay go through :meth:`Analyzer.consume`, so a file replayed at full
speed gives exactly the events live play of the same samples gives. How the input was split into
blocks never changes the result.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numba
import numpy as np
import numpy.typing as npt
from onbeat.models.registry import available
from onbeat.realtime.beats import BeatStage
from onbeat.realtime.bus import EventBus
from onbeat.realtime.commands import CommandEvent, CommandQueue
from onbeat.realtime.config import OnbeatConfig
from onbeat.realtime.events import (
    Event,
    HealthEvent,
    LevelEvent,
    StreamEndEvent,
    StreamStartEvent,
)
from onbeat.realtime.features import SpectralFeatures
from onbeat.realtime.neural import LstmOnsets
from onbeat.realtime.onset import SuperFluxOnsets
from onbeat.realtime.ringbuffer import RingBuffer
from onbeat.realtime.stages import StreamContext

__all__ = ["Analyzer", "mix_and_sanitize"]

_CHUNK = 4096  # device samples taken from the ring per step


@numba.njit(cache=True, nogil=True)
def _mix_sanitize(
    block: npt.NDArray[np.float32],
    channels: npt.NDArray[np.int64],
    out: npt.NDArray[np.float32],
    counts: npt.NDArray[np.int64],
) -> None:  # pragma: no cover - compiled
    n = block.shape[0]
    k = channels.shape[0]
    scale = 1.0 / k
    for i in range(n):
        acc = 0.0
        for c in range(k):
            v = block[i, channels[c]]
            if not np.isfinite(v):
                counts[0] += 1
                v = 0.0
            elif v >= 1.0:
                counts[1] += 1
                v = 1.0
            elif v <= -1.0:
                counts[1] += 1
                v = -1.0
            acc += v
        out[i] = acc * scale


@numba.njit(cache=True, nogil=True)
def _accumulate_level(
    chunk: npt.NDArray[np.float32], acc: npt.NDArray[np.float64]
) -> None:  # pragma: no cover - compiled
    for i in range(chunk.shape[0]):
        v = chunk[i]
        acc[0] += v * v
        a = abs(v)
        if a > acc[1]:
            acc[1] = a
    acc[2] += chunk.shape[0]


def mix_and_sanitize(
    block: npt.NDArray[np.float32],
    channels: npt.NDArray[np.int64],
    out: npt.NDArray[np.float32],
    counts: npt.NDArray[np.int64],
) -> None:
    """Average the selected ``channels`` of ``block`` into ``out``.

    NaN and infinite samples become 0 (counted in ``counts[0]``); samples at or beyond full scale
    are clamped to ±1 (counted in ``counts[1]``).

    Real-time safety: one numba call into preallocated ``out`` and ``counts``.
    """
    if block.ndim != 2 or out.shape[0] < block.shape[0]:
        raise ValueError("block must be (n, channels) and out at least n long")
    _mix_sanitize(block, channels, out, counts)


class Analyzer:
    """Turns device audio into events.

    Parameters
    ----------
    config : OnbeatConfig
        The whole configuration.
    bus : EventBus
        Where events go.
    device_rate_hz : int
        Rate of the incoming samples; resampled to ``config.audio.sample_rate_hz`` if different.
    channels_in : int
        Channels of the incoming blocks.
    source_name : str
        Reported in the start event.
    """

    def __init__(
        self,
        config: OnbeatConfig,
        bus: EventBus,
        *,
        device_rate_hz: int,
        channels_in: int,
        source_name: str = "",
    ) -> None:
        self.config = config
        self.bus = bus
        self.device_rate_hz = int(device_rate_hz)
        self.channels_in = int(channels_in)
        self.source_name = source_name
        a = config.audio
        sel = a.channels or tuple(range(channels_in))
        bad = [c for c in sel if c >= channels_in]
        if bad:
            from onbeat.realtime.errors import DeviceError

            raise DeviceError(
                f"channel {bad[0]} was selected but the input has only {channels_in} channel(s) "
                f"(valid: 0..{channels_in - 1})"
            )
        self._channels = np.asarray(sel, dtype=np.int64)
        self.rate_hz = a.sample_rate_hz
        self.hop = config.features.hop_size
        self.ctx = StreamContext(sample_rate_hz=self.rate_hz, hop_size=self.hop)
        self.features = SpectralFeatures(config.features)
        self.onsets: SuperFluxOnsets | LstmOnsets | None = None
        self.beats: BeatStage | None = None
        #: Called after every frame with (frame index, sample index); for observers such as
        #: benchmarks and the GUI's read-only views. Must not block.
        self.frame_hook: Callable[[int, int], None] | None = None
        #: Tracker commands from OSC control or the GUI, applied before the next frame.
        self.commands = CommandQueue()
        self._prepared = False

    # ------------------------------------------------------------------ lifecycle
    def prepare(self) -> None:
        """Allocate all buffers, build the stages and warm up every kernel."""
        self.features.prepare(self.ctx)
        self.onsets = self._onset_stage()
        self.onsets.prepare(self.ctx)
        c = self.config
        self.beats = None
        if c.beats.source != "off":
            self.beats = BeatStage(
                c.beats, c.tracker, c.features, self.features.layout, hop_size=self.hop
            )
            self.beats.prepare(self.ctx)
        self._max_n = self.features.spec.frame_size
        # Mirrored analysis history: the newest max_n samples are always contiguous.
        self._hist = np.zeros(2 * self._max_n, dtype=np.float32)
        self._mono = np.zeros(_CHUNK, dtype=np.float32)
        self._counts = np.zeros(2, dtype=np.int64)
        self._level = np.zeros(3, dtype=np.float64)  # sum of squares, peak, samples
        _accumulate_level(self._mono[:1], self._level)
        self._resampler = None
        if self.device_rate_hz != self.rate_hz:
            import soxr

            self._resampler = soxr.ResampleStream(
                self.device_rate_hz, self.rate_hz, 1, dtype="float32", quality="HQ"
            )
        level_hops = max(1, round(self.ctx.frame_rate_hz / self.config.output.level_rate_hz))
        self._level_hops = level_hops
        self._health_hops = max(1, round(self.ctx.frame_rate_hz))
        mix_and_sanitize(
            np.zeros((1, self.channels_in), dtype=np.float32),
            self._channels,
            self._mono,
            np.zeros(2, dtype=np.int64),
        )
        self._prepared = True
        self.reset()

    def _onset_stage(self) -> SuperFluxOnsets | LstmOnsets:
        """The configured onset detector (the LSTM when ``auto`` and its weights ship)."""
        c = self.config
        kind = c.onset.detector
        if kind == "auto":
            kind = "lstm" if available("onsets") else "superflux"
        if kind == "lstm":
            return LstmOnsets(c.onset, c.features, hop_size=self.hop)
        return SuperFluxOnsets(c.onset, self.features.layout, hop_size=self.hop)

    def reset(self) -> None:
        """Zero all state (stages included) without reallocating."""
        self.features.reset()
        assert self.onsets is not None
        self.onsets.reset()
        if self.beats is not None:
            self.beats.reset()
        self._hist.fill(0.0)
        self._counts.fill(0)
        self.samples = 0  # analysis-rate samples fed
        self.frames = 0
        self._level.fill(0.0)
        self._started = False
        self.events_out = 0
        self.counts: dict[str, int] = {}
        self.ring: RingBuffer | None = None

    @property
    def nonfinite(self) -> int:
        """NaN/inf samples replaced so far."""
        return int(self._counts[0])

    @property
    def clipped(self) -> int:
        """Samples clamped to full scale so far."""
        return int(self._counts[1])

    def latest_hop(self) -> npt.NDArray[np.float32]:
        """A read-only view of the newest hop of analysis-rate mono samples (valid until the
        next frame); for frame hooks that keep their own history, such as the tagger."""
        p = self.samples % self._max_n
        view = self._hist[p + self._max_n - self.hop : p + self._max_n].view()
        view.flags.writeable = False
        return view

    def publish(self, events: tuple[Event, ...] | list[Event]) -> None:
        """Publish events from a frame hook on the analysis thread (counted like the stages')."""
        self._publish(events)

    def _publish(self, events: tuple[Event, ...] | list[Event]) -> None:
        counts = self.counts
        for e in events:
            self.bus.publish(e)
            counts[e.type] = counts.get(e.type, 0) + 1
        self.events_out += len(events)

    def start(self, ring: RingBuffer | None = None) -> None:
        """Publish the start event; remember ``ring`` for health counters."""
        if not self._prepared:
            self.prepare()
        self.ring = ring
        self._started = True
        self._publish(
            [
                StreamStartEvent(
                    sample_index=0,
                    time_s=0.0,
                    emitted_s=0.0,
                    source=self.source_name,
                    sample_rate_hz=self.rate_hz,
                    frame_rate_hz=self.ctx.frame_rate_hz,
                )
            ]
        )

    # ------------------------------------------------------------------ streaming
    def consume(self, ring: RingBuffer) -> int:
        """Process every unread sample in ``ring``; return the device samples consumed."""
        total = 0
        while True:
            _, block = ring.read(_CHUNK)
            n = block.shape[0]
            if n == 0:
                return total
            self.feed_device_block(block)
            total += n

    def feed_device_block(self, block: npt.NDArray[np.float32]) -> None:
        """Mix, sanitize and resample one device-rate block, then analyse it."""
        n = block.shape[0]
        start = 0
        while start < n:
            m = min(_CHUNK, n - start)
            mix_and_sanitize(block[start : start + m], self._channels, self._mono, self._counts)
            mono = self._mono[:m]
            if self._resampler is not None:
                mono = self._resampler.resample_chunk(mono)
            self.feed(mono)
            start += m

    def feed(self, mono: npt.NDArray[np.float32]) -> None:
        """Analyse analysis-rate mono samples, hop by hop.

        Real-time safety: copies into the preallocated history and runs the stages once per hop;
        no per-sample Python work.
        """
        hop = self.hop
        max_n = self._max_n
        hist = self._hist
        i = 0
        n = mono.shape[0]
        while i < n:
            pos = self.samples % max_n
            to_hop = hop - (self.samples % hop)
            m = min(n - i, to_hop, max_n - pos)
            chunk = mono[i : i + m]
            hist[pos : pos + m] = chunk
            hist[pos + max_n : pos + max_n + m] = chunk
            _accumulate_level(chunk, self._level)
            self.samples += m
            i += m
            if self.samples % hop == 0:
                self._frame()

    def _frame(self) -> None:
        end = self.samples
        p = end % self._max_n
        window = self._hist[p : p + self._max_n]
        if len(self.commands):
            self._apply_commands(end)
        self.features.process(window, end)
        assert self.onsets is not None
        events = self.onsets.process(self.features.output, end)
        if events:
            self._publish(events)
        if self.beats is not None:
            hop_samples = window[self._max_n - self.hop :]
            power = float(np.dot(hop_samples, hop_samples)) / self.hop
            beat_events = self.beats.process(self.features.output, end, power=power)
            if beat_events:
                self._publish(beat_events)
        self.frames += 1
        if self.frames % self._level_hops == 0:
            self._publish([self._level_event(end)])
        if self.frames % self._health_hops == 0:
            self._publish([self.health_event(end)])
        if self.frame_hook is not None:
            self.frame_hook(self.frames, end)

    def _apply_commands(self, end: int) -> None:
        """Apply queued tracker commands before this frame and report each as an event."""
        t = end / self.rate_hz
        out: list[Event] = []
        for cmd in self.commands.drain():
            target = getattr(self, "beats", None)
            apply = getattr(target, "apply_command", None)
            ok = bool(apply(cmd, end)) if apply is not None else False
            out.append(
                CommandEvent(
                    sample_index=end,
                    time_s=t,
                    emitted_s=t,
                    kind=cmd.kind,
                    args=cmd.args,
                    origin=cmd.origin,
                    ok=ok,
                )
            )
        self._publish(out)

    def _level_event(self, end: int) -> LevelEvent:
        lv = self._level
        rms = math.sqrt(lv[0] / max(lv[2], 1.0))
        ev = LevelEvent(
            sample_index=end,
            time_s=end / self.rate_hz,
            emitted_s=end / self.rate_hz,
            rms_dbfs=20 * math.log10(max(rms, 1e-6)),
            peak_dbfs=20 * math.log10(max(float(lv[1]), 1e-6)),
        )
        lv.fill(0.0)
        return ev

    def health_event(self, end: int | None = None) -> HealthEvent:
        """Cumulative error counters as an event."""
        end = self.samples if end is None else end
        ring = self.ring
        return HealthEvent(
            sample_index=end,
            time_s=end / self.rate_hz,
            emitted_s=end / self.rate_hz,
            xruns=ring.xruns if ring else 0,
            overflows=ring.overflows if ring else 0,
            lost_samples=ring.overflow_samples if ring else 0,
            nonfinite=self.nonfinite,
            clipped=self.clipped,
            dropped=self.bus.dropped,
        )

    def finish(self, reason: str = "eof") -> None:
        """End the stream: drain the resampler, flush stages, publish health and end events."""
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            if tail.shape[0]:
                self.feed(tail)
            self._resampler = None  # release the native resampler now, not at interpreter exit
        assert self.onsets is not None
        tail = list(self.features.flush()) + list(self.onsets.flush())
        if self.beats is not None:
            tail += list(self.beats.flush())
        self._publish(tail)
        end = self.samples
        self._publish(
            [
                self.health_event(end),
                StreamEndEvent(
                    sample_index=end,
                    time_s=end / self.rate_hz,
                    emitted_s=end / self.rate_hz,
                    frames=self.frames,
                    reason=reason,
                ),
            ]
        )
