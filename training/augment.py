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

__all__ = ["GainAugment", "MelAugment"]


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


class MelAugment:
    """Live-microphone degradations applied to a cached log-mel crop (no audio recomputed).

    The mel is ``log10(1 + mul * m)`` of band magnitudes ``m``; every step works on ``m``:

    * gain (exact): ``m * g``;
    * EQ tilt and a random smooth bump (exact up to the slope inside one band);
    * codec-like band-limiting: a soft low-pass above a random cut-off;
    * room reverb: a per-band exponential tail of the band power with a random RT60 and
      wet level (an approximation of late reverberation, not of early reflections);
    * noise at a random SNR: pink-ish noise power added to the band power, with Rayleigh-like
      fluctuation per frame and band.

    Parameters
    ----------
    center_hz : ndarray, shape (mels,)
        Band centre frequencies.
    frame_rate_hz : float
        Mel frames per second.
    log_mul : float
        The mel's compression factor.
    p_reverb, p_noise, p_bandlimit : float
        Probability of each optional step.
    """

    def __init__(
        self,
        center_hz: npt.ArrayLike,
        frame_rate_hz: float,
        log_mul: float,
        *,
        p_reverb: float = 0.4,
        p_noise: float = 0.5,
        p_bandlimit: float = 0.3,
    ) -> None:
        self.center_hz = np.maximum(np.asarray(center_hz, dtype=np.float64), 20.0)
        self.octaves = np.log2(self.center_hz / 1000.0)
        self.frame_rate_hz = float(frame_rate_hz)
        self.log_mul = float(log_mul)
        self.p_reverb, self.p_noise, self.p_bandlimit = p_reverb, p_noise, p_bandlimit

    def __call__(
        self, x: npt.NDArray[np.float32], rng: np.random.Generator
    ) -> npt.NDArray[np.float32]:
        """A degraded copy of the log-mel crop ``x`` (frames × mels)."""
        m = np.expm1(np.log(10.0) * x.astype(np.float64)) / self.log_mul
        db = rng.uniform(-20.0, 10.0) + rng.uniform(-3.0, 3.0) * self.octaves
        if rng.random() < 0.5:  # a smooth bump or notch, one octave wide
            c = rng.uniform(-2.5, 3.5)
            db = db + rng.uniform(-9.0, 9.0) * np.exp(-0.5 * ((self.octaves - c) / 0.5) ** 2)
        m = m * 10.0 ** (db / 20.0)
        if rng.random() < self.p_bandlimit:
            cut = rng.uniform(3000.0, 8000.0)
            m = m / np.sqrt(1.0 + (self.center_hz / cut) ** 12)
        power = m * m
        if rng.random() < self.p_reverb:
            rt60_s = rng.uniform(0.2, 1.5)
            a = np.exp(-6.9 / (rt60_s * self.frame_rate_hz))  # power decay per frame
            from scipy.signal import lfilter

            tail = lfilter([1.0 - a], [1.0, -a], power, axis=0)
            power = power + rng.uniform(0.1, 0.8) * tail
        if rng.random() < self.p_noise:
            snr_db = rng.uniform(3.0, 30.0)
            shape = (self.center_hz / 1000.0) ** rng.uniform(-1.0, 0.0)  # pink to white
            level = power.mean() / (shape.mean() * 10.0 ** (snr_db / 10.0))
            noise = level * shape * rng.exponential(1.0, size=power.shape)
            power = power + noise
        return np.log10(1.0 + self.log_mul * np.sqrt(power)).astype(np.float32)
