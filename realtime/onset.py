"""DSP onset detection: SuperFlux activation with causal online peak picking.

The activation is the mean of the SuperFlux positive differences of every frame size (see
:mod:`onbeat.realtime.features`). An onset fires at frame ``t`` when, with no look-ahead:

* the activation exceeds its causal moving average over ``pre_avg_s`` by ``threshold``;
* it is the maximum of the last ``pre_max_s``;
* at least ``min_interval_s`` passed since the previous onset.

This follows the online mode of Böck et al.'s peak picking (as in madmom's
``OnsetPeakPickingProcessor(online=True)``): decisions are taken on the rising edge, so the only
delay is the spectral one, declared as the stage's latency.
"""

from __future__ import annotations

from typing import ClassVar

import numba
import numpy as np
import numpy.typing as npt
from onbeat.realtime.config import OnsetConfig
from onbeat.realtime.events import EMPTY, Event, OnsetEvent
from onbeat.realtime.features import FeatureLayout
from onbeat.realtime.stages import StageSpec, StreamContext

__all__ = [
    "OnlinePeakPicker",
    "SuperFluxOnsets",
    "onset_event",
    "pick_peaks_online",
    "superflux_activation",
]


@numba.njit(cache=True, nogil=True)
def _activation(
    features: npt.NDArray[np.float32], starts: npt.NDArray[np.int64], stops: npt.NDArray[np.int64]
) -> float:  # pragma: no cover - compiled
    acc = 0.0
    n = 0
    for b in range(starts.shape[0]):
        for i in range(starts[b], stops[b]):
            acc += features[i]
        n += stops[b] - starts[b]
    return acc / max(n, 1)


@numba.njit(cache=True, nogil=True)
def _pick_step(
    hist: npt.NDArray[np.float64],
    t: int,
    value: float,
    pre_avg: int,
    pre_max: int,
    threshold: float,
) -> bool:  # pragma: no cover - compiled
    depth = hist.shape[0]
    hist[t % depth] = value
    if pre_avg > 0:
        acc = 0.0
        n = 0
        for k in range(1, pre_avg + 1):
            if t - k < 0:
                break
            acc += hist[(t - k) % depth]
            n += 1
        mean = acc / n if n > 0 else 0.0
    else:
        mean = 0.0
    if value - mean < threshold:
        return False
    for k in range(1, pre_max + 1):
        if t - k < 0:
            break
        if hist[(t - k) % depth] > value:
            return False
    return True


def superflux_activation(
    features: npt.NDArray[np.float32],
    starts: npt.NDArray[np.int64],
    stops: npt.NDArray[np.int64],
) -> float:
    """Mean of the ``pdiff`` blocks ``[starts[i], stops[i])`` of one feature frame.

    Real-time safety: one numba call, no allocation.
    """
    return float(_activation(features, starts, stops))


def pick_peaks_online(
    activation: npt.NDArray[np.floating],
    *,
    frame_rate_hz: float,
    threshold: float,
    pre_avg_s: float,
    pre_max_s: float,
    min_interval_s: float,
) -> npt.NDArray[np.int64]:
    """Causal peak picking over a whole activation, frame by frame (reference and offline use).

    Returns the frame indices at which :class:`SuperFluxOnsets` fires.
    """
    picker = OnlinePeakPicker(
        threshold=threshold, pre_avg_s=pre_avg_s, pre_max_s=pre_max_s, min_interval_s=min_interval_s
    )
    picker.prepare(frame_rate_hz)
    peaks = [
        t for t, v in enumerate(np.asarray(activation, dtype=np.float64)) if picker.step(float(v))
    ]
    return np.asarray(peaks, dtype=np.int64)


class OnlinePeakPicker:
    """Causal peak picking of one activation value per frame (no look-ahead).

    Parameters
    ----------
    threshold : float
        Minimum height above the causal moving average.
    pre_avg_s, pre_max_s, min_interval_s : float
        Moving-average window, maximum window and minimum gap between peaks.
    """

    def __init__(
        self, *, threshold: float, pre_avg_s: float, pre_max_s: float, min_interval_s: float
    ) -> None:
        self.threshold = threshold
        self._windows_s = (pre_avg_s, pre_max_s, min_interval_s)

    def prepare(self, frame_rate_hz: float) -> None:
        """Allocate the history for ``frame_rate_hz`` and warm up the kernel."""
        pre_avg_s, pre_max_s, gap_s = self._windows_s
        self._pre_avg = round(pre_avg_s * frame_rate_hz)
        self._pre_max = round(pre_max_s * frame_rate_hz)
        self._min_gap = round(gap_s * frame_rate_hz)
        self._hist = np.zeros(max(self._pre_avg, self._pre_max) + 1)
        _pick_step(self._hist, 0, 0.0, self._pre_avg, self._pre_max, self.threshold)
        self.reset()

    def reset(self) -> None:
        """Forget the history."""
        self._hist.fill(0.0)
        self._t = 0
        self._last = -(10**9)

    def step(self, value: float) -> bool:
        """Add one frame's activation; True when it is a peak.

        Real-time safety: one numba call on preallocated state.
        """
        t = self._t
        self._t = t + 1
        fired = _pick_step(self._hist, t, value, self._pre_avg, self._pre_max, self.threshold)
        if not fired or t - self._last < self._min_gap:
            return False
        self._last = t
        return True


class SuperFluxOnsets:
    """Online SuperFlux onset detector over :class:`SpectralFeatures` output.

    Parameters
    ----------
    config : OnsetConfig
        Threshold and timing of the peak picker.
    layout : FeatureLayout
        Where the ``pdiff`` blocks lie in the feature vector.
    hop_size : int
        Samples per frame.
    """

    name: ClassVar[str] = "superflux_onsets"

    #: Detection delay, in frames, between an onset and the frame that reports it, measured on
    #: synthetic clicks (``tests/test_engine.py::test_click_timing_within_5_ms``).
    delay_frames: ClassVar[float] = 1.0

    def __init__(self, config: OnsetConfig, layout: FeatureLayout, *, hop_size: int) -> None:
        self.config = config
        self.layout = layout
        self.spec = StageSpec(
            name=self.name,
            input_kind="spectrum",
            frame_size=1,
            hop_size=hop_size,
            latency_samples=round(self.delay_frames * hop_size),
            outputs=("onset",),
        )
        blocks = [layout.block("pdiff", n) for n in layout.frame_sizes]
        self._starts = np.asarray([b.start for b in blocks], dtype=np.int64)
        self._stops = np.asarray([b.stop for b in blocks], dtype=np.int64)
        self.picker = OnlinePeakPicker(
            threshold=config.threshold,
            pre_avg_s=config.pre_avg_s,
            pre_max_s=config.pre_max_s,
            min_interval_s=config.min_interval_s,
        )
        self.activation = 0.0

    def prepare(self, ctx: StreamContext) -> None:
        """Allocate the activation history and warm up the kernels."""
        self._rate = float(ctx.sample_rate_hz)
        self.picker.prepare(ctx.frame_rate_hz)
        _activation(np.zeros(self.layout.dims, dtype=np.float32), self._starts, self._stops)
        self.reset()

    def reset(self) -> None:
        """Forget the activation history."""
        self.picker.reset()
        self.activation = 0.0

    def flush(self) -> tuple[Event, ...]:
        """No pending onsets: decisions are never deferred."""
        return EMPTY

    def process(self, frame: npt.NDArray[np.float32], sample_index: int) -> tuple[Event, ...]:
        """Update with one feature frame; return an onset when one fires.

        Real-time safety: two numba calls on preallocated state; allocates only the event.
        """
        a = superflux_activation(frame, self._starts, self._stops)
        self.activation = a
        if not self.picker.step(a):
            return EMPTY
        return (onset_event(sample_index, self.spec.latency_samples, self._rate, a, self.name),)


def onset_event(
    sample_index: int, latency_samples: int, rate_hz: float, strength: float, source: str
) -> OnsetEvent:
    """An onset detected at the frame ending at ``sample_index``, dated ``latency_samples`` back."""
    onset_index = sample_index - latency_samples
    return OnsetEvent(
        sample_index=onset_index,
        time_s=onset_index / rate_hz,
        emitted_s=sample_index / rate_hz,
        strength=float(strength),
        source=source,
    )
