"""Feature-level augmentation that is exact: a gain change applied to cached engine features.

Because ``logfilt = log10(1 + mul * F|X|)`` is a log of a linear function of the magnitude, a
gain ``g`` on the audio gives ``log10(1 + g * (10**logfilt - 1))`` exactly, and the SuperFlux
``pdiff`` can be recomputed from the new ``logfilt`` with the same reference frame and frequency
maximum filter the engine uses. Training crops therefore see the whole range of input levels a
live microphone produces without recomputing any spectrum.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.ndimage import maximum_filter1d

__all__ = ["GainAugment"]


class GainAugment:
    """Random gain in dB applied to a feature crop (with ``context`` frames of left context).

    Parameters
    ----------
    layout : FeatureLayout
        The engine's feature layout.
    diff_frames : sequence of int
        SuperFlux reference distance per frame size.
    max_bins : int
        Frequency maximum filter width.
    low_db, high_db : float
        Range of the random gain.
    """

    def __init__(
        self,
        layout: object,
        diff_frames: list[int],
        max_bins: int,
        low_db: float = -24.0,
        high_db: float = 12.0,
    ) -> None:
        self.layout = layout
        self.diff_frames = list(diff_frames)
        self.max_bins = max_bins
        self.low_db, self.high_db = low_db, high_db
        self.context = max(self.diff_frames)

    def apply(self, x: npt.NDArray[np.float32], gain_db: float) -> npt.NDArray[np.float32]:
        """Features of the same audio ``gain_db`` louder; the first ``context`` rows are context."""
        g = 10.0 ** (gain_db / 20.0)
        out = x.copy()
        layout = self.layout
        for n, d in zip(layout.frame_sizes, self.diff_frames, strict=True):  # type: ignore[attr-defined]
            lf = layout.block("logfilt", n)  # type: ignore[attr-defined]
            pd = layout.block("pdiff", n)  # type: ignore[attr-defined]
            v = np.log10(1.0 + g * np.expm1(np.log(10.0) * x[:, lf].astype(np.float64)))
            out[:, lf] = v
            ref = np.vstack([np.zeros((d, v.shape[1])), v[:-d]])
            ref = maximum_filter1d(ref, size=self.max_bins, axis=1, mode="nearest")
            out[:, pd] = np.maximum(v - ref, 0.0)
        return out

    def __call__(
        self, x: npt.NDArray[np.float32], rng: np.random.Generator
    ) -> npt.NDArray[np.float32]:
        """Apply a random gain."""
        return self.apply(x, float(rng.uniform(self.low_db, self.high_db)))
