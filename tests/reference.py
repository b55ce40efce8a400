"""Plain NumPy/SciPy reference implementations of the numba features (for tests only)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import maximum_filter1d


def reference_features(x, *, sample_rate_hz, config, filterbanks, diff_frames):
    """Vectorised multi-resolution log-filtered spectrum and SuperFlux difference."""
    hop = config.hop_size
    max_n = max(config.frame_sizes)
    x = np.asarray(x, dtype=np.float64)
    n_frames = x.shape[0] // hop
    padded = np.concatenate([np.zeros(max_n), x])
    ends = (np.arange(n_frames) + 1) * hop + max_n
    blocks = []
    for n, fb, d in zip(config.frame_sizes, filterbanks, diff_frames, strict=True):
        frames = sliding_window_view(padded, n)[ends - n]
        window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
        mag = np.abs(np.fft.rfft(frames * window, axis=1))
        logf = np.log10(1.0 + config.log_mul * (mag @ fb.dense().astype(np.float64)))
        ref = np.vstack([np.zeros((d, logf.shape[1])), logf[:-d]])[:n_frames]
        ref = maximum_filter1d(ref, size=config.diff_max_bins, axis=1, mode="nearest")
        pdiff = np.maximum(logf - ref, 0.0)
        blocks += [logf, pdiff]
    return np.hstack(blocks)


def reference_log_mel(x, *, n_fft, hop, filterbank, log_mul=1.0):
    """Framewise mel of a mono window, frames starting at sample 0, no padding."""
    frames = sliding_window_view(np.asarray(x, dtype=np.float64), n_fft)[::hop]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    mag = np.abs(np.fft.rfft(frames * window, axis=1))
    return np.log10(1.0 + log_mul * (mag @ filterbank.dense().astype(np.float64)))
