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

__all__ = ["EqAugment", "GainAugment", "MelAugment", "second_order_db"]


def second_order_db(
    octaves: npt.NDArray[np.float64], corner_hz: float, high_pass: bool
) -> npt.NDArray[np.float64]:
    """Gain in dB of a second-order high- or low-pass (``|H|^2 = 1 / (1 + (f_c / f)^4)``, 12 dB
    per octave beyond the corner) at frequencies given in octaves above 1 kHz."""
    corner = np.log2(corner_hz / 1000.0)
    rel = (corner - octaves) if high_pass else (octaves - corner)
    return -10.0 * np.log10(1.0 + 2.0 ** (4.0 * rel))


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
        return self.apply_bands(x, [gain_db] * len(self.diff_frames))

    def apply_bands(
        self, x: npt.NDArray[np.float32], gain_db: list[float | npt.NDArray[np.float64]]
    ) -> npt.NDArray[np.float32]:
        """Features of the same audio through a gain per band: ``gain_db[i]`` (a number, or one
        value per band) for the i-th frame size. Exact for the log-filtered spectrum, whose
        bands are linear in the magnitude; the positive difference is recomputed."""
        out = x.copy()
        layout = self.layout
        for n, d, db in zip(layout.frame_sizes, self.diff_frames, gain_db, strict=True):  # type: ignore[attr-defined]
            g = 10.0 ** (np.asarray(db, dtype=np.float64) / 20.0)
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


class EqAugment(GainAugment):
    """Random gain and a random equaliser per crop, exact on the engine's features.

    Per crop: the gain of :class:`GainAugment`, a spectral tilt (dB per octave around 1 kHz),
    with probability ``p_bump`` a bump or notch one octave wide, and with probability ``p_cut``
    a second-order high-pass (a laptop microphone or a small speaker: no kick drum) or low-pass
    (a dull room or a cheap codec: no hi-hats). Each cut takes away the band a network might
    rely on alone, so that it learns the beat from the rest of the mix as well.

    Parameters
    ----------
    layout, diff_frames, max_bins, low_db, high_db
        As :class:`GainAugment`.
    center_hz : sequence of ndarray
        Centre frequency of every band, per frame size (the filterbanks' ``center_hz``).
    tilt_db : float
        Largest tilt, in dB per octave.
    p_bump, p_cut : float
        Probability of a bump/notch and of a high- or low-pass per crop.
    """

    def __init__(
        self,
        layout: object,
        diff_frames: list[int],
        max_bins: int,
        center_hz: list[npt.NDArray[np.float64]],
        *,
        low_db: float = -24.0,
        high_db: float = 12.0,
        tilt_db: float = 3.0,
        p_bump: float = 0.5,
        p_cut: float = 0.3,
    ) -> None:
        super().__init__(layout, diff_frames, max_bins, low_db, high_db)
        if len(center_hz) != len(self.diff_frames):
            raise ValueError("center_hz needs one array of band centres per frame size")
        self.octaves = [
            np.log2(np.maximum(np.asarray(c, np.float64), 1.0) / 1000.0) for c in center_hz
        ]
        self.tilt_db = tilt_db
        self.p_bump, self.p_cut = p_bump, p_cut

    def draw_db(self, rng: np.random.Generator) -> list[npt.NDArray[np.float64]]:
        """One random equaliser: the gain in dB of every band, per frame size."""
        gain = rng.uniform(self.low_db, self.high_db)
        tilt = rng.uniform(-self.tilt_db, self.tilt_db)
        bump = rng.uniform(-9.0, 9.0) if rng.random() < self.p_bump else 0.0
        bump_oct = rng.uniform(-3.0, 3.0)
        cut = rng.random() < self.p_cut
        high_pass = rng.random() < 0.5
        corner_hz = rng.uniform(100.0, 400.0) if high_pass else rng.uniform(1500.0, 6000.0)
        out = []
        for o in self.octaves:
            db = gain + tilt * o + bump * np.exp(-0.5 * ((o - bump_oct) / 0.5) ** 2)
            if cut:
                db = db + second_order_db(o, corner_hz, high_pass)
            out.append(db)
        return out

    def __call__(
        self, x: npt.NDArray[np.float32], rng: np.random.Generator
    ) -> npt.NDArray[np.float32]:
        """Apply a random gain and equaliser."""
        return self.apply_bands(x, list(self.draw_db(rng)))


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
