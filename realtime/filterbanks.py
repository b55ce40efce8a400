"""Filterbanks built once at prepare time (plain NumPy), stored as sparse rows for numba kernels.

A :class:`SparseFilterbank` keeps, for each band, the first FFT bin it covers, how many bins, and
an offset into one flat weight array. Kernels apply it with one short dot product per band, which
is far cheaper than a dense ``(bins, bands)`` matrix product for log-spaced bands.

The logarithmic filterbank follows the idea of madmom's ``LogarithmicFilterbank`` (Böck et al.):
triangular filters centred on ``bands_per_octave`` frequencies per octave around 440 Hz, mapped to
FFT bins, with duplicate bins merged so that low bands of short frames do not repeat. The mel
filterbank uses the Slaney mel scale and area normalisation, as librosa's default does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "SparseFilterbank",
    "hz_to_mel",
    "log_filterbank",
    "mel_filterbank",
    "mel_to_hz",
]


@dataclass(frozen=True, slots=True)
class SparseFilterbank:
    """Band-sparse filterbank.

    Attributes
    ----------
    start : ndarray of int64, shape (bands,)
        First FFT bin of each band.
    length : ndarray of int64, shape (bands,)
        Number of bins of each band.
    offset : ndarray of int64, shape (bands,)
        Offset of each band's weights in ``weights``.
    weights : ndarray of float32
        Concatenated weights of all bands.
    n_bins : int
        FFT bins the filterbank expects (``n_fft // 2 + 1``).
    center_hz : ndarray of float64, shape (bands,)
        Centre frequency of each band.
    """

    start: npt.NDArray[np.int64]
    length: npt.NDArray[np.int64]
    offset: npt.NDArray[np.int64]
    weights: npt.NDArray[np.float32]
    n_bins: int
    center_hz: npt.NDArray[np.float64]

    @property
    def n_bands(self) -> int:
        """Number of bands."""
        return int(self.start.shape[0])

    def dense(self) -> npt.NDArray[np.float32]:
        """Return the dense ``(n_bins, n_bands)`` matrix (for references and tests)."""
        m = np.zeros((self.n_bins, self.n_bands), dtype=np.float32)
        for j in range(self.n_bands):
            s, n, o = int(self.start[j]), int(self.length[j]), int(self.offset[j])
            m[s : s + n, j] = self.weights[o : o + n]
        return m

    @classmethod
    def from_dense(
        cls, matrix: npt.NDArray[np.floating], center_hz: npt.NDArray[np.float64]
    ) -> SparseFilterbank:
        """Build from a dense ``(n_bins, n_bands)`` matrix, keeping each band's nonzero span."""
        starts, lengths, offsets, chunks = [], [], [], []
        off = 0
        for j in range(matrix.shape[1]):
            nz = np.flatnonzero(matrix[:, j])
            if nz.size == 0:
                s, n = 0, 0
            else:
                s, n = int(nz[0]), int(nz[-1] - nz[0] + 1)
            starts.append(s)
            lengths.append(n)
            offsets.append(off)
            chunks.append(matrix[s : s + n, j])
            off += n
        weights = np.concatenate(chunks) if chunks else np.zeros(0)
        return cls(
            start=np.asarray(starts, dtype=np.int64),
            length=np.asarray(lengths, dtype=np.int64),
            offset=np.asarray(offsets, dtype=np.int64),
            weights=np.ascontiguousarray(weights, dtype=np.float32),
            n_bins=int(matrix.shape[0]),
            center_hz=np.asarray(center_hz, dtype=np.float64),
        )


def log_filterbank(
    *,
    n_fft: int,
    sample_rate_hz: float,
    bands_per_octave: int,
    fmin_hz: float,
    fmax_hz: float,
    ref_hz: float = 440.0,
) -> SparseFilterbank:
    """Triangular filters on a logarithmic frequency axis, each normalised to unit sum.

    Parameters
    ----------
    n_fft : int
        FFT size; the filterbank has ``n_fft // 2 + 1`` input bins.
    sample_rate_hz : float
        Sample rate of the signal.
    bands_per_octave : int
        Centre frequencies per octave.
    fmin_hz, fmax_hz : float
        Range of centre frequencies.
    ref_hz : float
        A centre frequency lies on this reference (A4 by default).
    """
    n_bins = n_fft // 2 + 1
    bin_hz = sample_rate_hz / n_fft
    k_lo = int(np.ceil(bands_per_octave * np.log2(fmin_hz / ref_hz)))
    k_hi = int(np.floor(bands_per_octave * np.log2(fmax_hz / ref_hz)))
    centres = ref_hz * 2.0 ** (np.arange(k_lo, k_hi + 1) / bands_per_octave)
    bins = np.unique(np.round(centres / bin_hz).astype(np.int64))
    bins = bins[(bins > 0) & (bins < n_bins - 1)]
    if bins.size < 3:
        raise ValueError("the frequency range leaves fewer than one filter")
    matrix = np.zeros((n_bins, bins.size - 2), dtype=np.float64)
    for j in range(bins.size - 2):
        lo, mid, hi = int(bins[j]), int(bins[j + 1]), int(bins[j + 2])
        # rising edge from lo (exclusive) to mid, falling from mid to hi (exclusive)
        rise = np.arange(lo, mid + 1)
        matrix[rise, j] = (rise - lo) / max(mid - lo, 1)
        fall = np.arange(mid, hi)
        matrix[fall, j] = (hi - fall) / max(hi - mid, 1)
        if lo + 1 >= hi:  # degenerate band: a single bin
            matrix[mid, j] = 1.0
        matrix[:, j] /= matrix[:, j].sum()
    return SparseFilterbank.from_dense(matrix, (bins[1:-1] * bin_hz).astype(np.float64))


def hz_to_mel(f_hz: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f_hz, dtype=np.float64)
    f_sp = 200.0 / 3.0
    brk_hz, brk_mel = 1000.0, 1000.0 / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(f < brk_hz, f / f_sp, brk_mel + np.log(np.maximum(f, 1e-9) / brk_hz) / logstep)


def mel_to_hz(m_mel: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(m_mel, dtype=np.float64)
    f_sp = 200.0 / 3.0
    brk_hz, brk_mel = 1000.0, 1000.0 / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m < brk_mel, f_sp * m, brk_hz * np.exp(logstep * (m - brk_mel)))


def mel_filterbank(
    *, n_fft: int, sample_rate_hz: float, n_mels: int, fmin_hz: float = 0.0, fmax_hz: float
) -> SparseFilterbank:
    """Slaney-style mel filterbank (triangles in Hz, area-normalised)."""
    n_bins = n_fft // 2 + 1
    fft_hz = np.linspace(0.0, sample_rate_hz / 2, n_bins)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(fmin_hz), hz_to_mel(fmax_hz), n_mels + 2))
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return SparseFilterbank.from_dense(weights.T, edges_hz[1:-1])
