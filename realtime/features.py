"""Numba-accelerated framewise spectral features.

Per hop (100 frames/s by default) :class:`SpectralFeatures` turns the newest causal window of the
signal into, for each frame size (1024, 2048 and 4096 samples at 44.1 kHz by default):

* ``logfilt``: the Hann-windowed FFT magnitude through a logarithmic filterbank (12 bands per
  octave), log-compressed as ``log10(1 + mul * x)``;
* ``pdiff``: the positive difference of ``logfilt`` against the frame ``diff_frames`` earlier,
  whose bands are first maximum-filtered across frequency (SuperFlux, Böck and Widmer, DAFx 2013).

The output vector of one frame is ``[logfilt_1024, pdiff_1024, logfilt_2048, pdiff_2048, ...]``.
Frame ``t`` covers samples ``[(t + 1) * hop - N, (t + 1) * hop)``: it ends at the newest sample,
so it never looks ahead; samples before the stream began are zeros.

:func:`log_mel` computes the mel spectrogram of a whole window for the CNNs with the same kernels.

Kernels are private, write into output arguments, and are wrapped by checked public functions, as
librosa does. They are compiled with ``cache=True`` and warmed up in
:meth:`SpectralFeatures.prepare`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numba
import numpy as np
import numpy.typing as npt
import rocket_fft  # noqa: F401  (registers np.fft support inside numba)
from onbeat.realtime.config import FeatureConfig
from onbeat.realtime.events import EMPTY, Event
from onbeat.realtime.filterbanks import SparseFilterbank, log_filterbank, mel_filterbank
from onbeat.realtime.stages import StageSpec, StreamContext

__all__ = [
    "FeatureLayout",
    "SpectralFeatures",
    "diff_frames_for",
    "feature_fingerprint",
    "hann",
    "log_mel",
]


def feature_fingerprint(config: FeatureConfig, sample_rate_hz: int) -> str:
    """A string that changes whenever the features a model sees would change."""
    c = config
    return (
        f"sr{sample_rate_hz}-hop{c.hop_size}-n{','.join(map(str, c.frame_sizes))}"
        f"-bpo{c.bands_per_octave}-f{c.fmin_hz:g}-{c.fmax_hz:g}-mul{c.log_mul:g}"
        f"-dr{c.diff_ratio:g}-mb{c.diff_max_bins}"
    )


def hann(n: int) -> npt.NDArray[np.float64]:
    """Periodic Hann window of length ``n`` (as ``scipy.signal.get_window("hann", n)``)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def diff_frames_for(frame_size: int, hop_size: int, diff_ratio: float) -> int:
    """Frames between a frame and its SuperFlux reference.

    The reference is the earliest frame whose Hann window still overlaps the current one with a
    weight above ``diff_ratio`` of its maximum (Böck and Widmer, DAFx 2013).
    """
    w = hann(frame_size)
    first = int(np.argmax(w > diff_ratio * w.max()))
    diff_samples = frame_size / 2 - first
    return max(1, round(diff_samples / hop_size))


@numba.njit(cache=True, nogil=True)
def _apply_filterbank(
    mag: npt.NDArray[np.float64],
    start: npt.NDArray[np.int64],
    length: npt.NDArray[np.int64],
    offset: npt.NDArray[np.int64],
    weights: npt.NDArray[np.float32],
    out: npt.NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    for j in range(start.shape[0]):
        s = start[j]
        o = offset[j]
        acc = 0.0
        for k in range(length[j]):
            acc += weights[o + k] * mag[s + k]
        out[j] = acc


@numba.njit(cache=True, nogil=True)
def _frame_kernel(
    window: npt.NDArray[np.float32],
    t: int,
    sizes: npt.NDArray[np.int64],
    win_flat: npt.NDArray[np.float64],
    win_off: npt.NDArray[np.int64],
    fb_start: npt.NDArray[np.int64],
    fb_len: npt.NDArray[np.int64],
    fb_off: npt.NDArray[np.int64],
    fb_w: npt.NDArray[np.float32],
    band_off: npt.NDArray[np.int64],
    diff_frames: npt.NDArray[np.int64],
    max_bins: int,
    log_mul: float,
    scratch: npt.NDArray[np.float64],
    bands: npt.NDArray[np.float64],
    hist: npt.NDArray[np.float64],
    out: npt.NDArray[np.float32],
) -> None:  # pragma: no cover - compiled
    max_n = window.shape[0]
    depth = hist.shape[0]
    row = t % depth
    half = max_bins // 2
    for r in range(sizes.shape[0]):
        n = sizes[r]
        wo = win_off[r]
        base = max_n - n
        for i in range(n):
            scratch[i] = window[base + i] * win_flat[wo + i]
        spec = np.fft.rfft(scratch[:n])
        mag = scratch[: spec.shape[0]]  # the windowed frame is no longer needed
        for i in range(spec.shape[0]):  # sqrt(re^2 + im^2): cheaper than hypot's safe path
            re = spec[i].real
            im = spec[i].imag
            mag[i] = np.sqrt(re * re + im * im)
        b0 = band_off[r]
        b1 = band_off[r + 1]
        nb = b1 - b0
        _apply_filterbank(mag, fb_start[b0:b1], fb_len[b0:b1], fb_off[b0:b1], fb_w, bands[:nb])
        ref_row = (t - diff_frames[r]) % depth
        o = 2 * b0
        for j in range(nb):
            v = np.log10(1.0 + log_mul * bands[j])
            hist[row, b0 + j] = v
            out[o + j] = v
        for j in range(nb):
            lo = max(0, j - half)
            hi = min(nb, j + half + 1)
            m = hist[ref_row, b0 + lo]
            for k in range(lo + 1, hi):
                if hist[ref_row, b0 + k] > m:
                    m = hist[ref_row, b0 + k]
            d = hist[row, b0 + j] - m
            out[o + nb + j] = d if d > 0.0 else 0.0


@numba.njit(cache=True, nogil=True)
def _mel_kernel(
    signal: npt.NDArray[np.float32],
    hop: int,
    win: npt.NDArray[np.float64],
    fb_start: npt.NDArray[np.int64],
    fb_len: npt.NDArray[np.int64],
    fb_off: npt.NDArray[np.int64],
    fb_w: npt.NDArray[np.float32],
    log_mul: float,
    out: npt.NDArray[np.float32],
) -> None:  # pragma: no cover - compiled
    n = win.shape[0]
    scratch = np.empty(n, dtype=np.float64)
    bands = np.empty(fb_start.shape[0], dtype=np.float64)
    for t in range(out.shape[0]):
        s = t * hop
        for i in range(n):
            scratch[i] = signal[s + i] * win[i]
        mag = np.abs(np.fft.rfft(scratch))
        _apply_filterbank(mag, fb_start, fb_len, fb_off, fb_w, bands)
        for j in range(bands.shape[0]):
            out[t, j] = np.log10(1.0 + log_mul * bands[j])


@dataclass(frozen=True, slots=True)
class FeatureLayout:
    """Where each block of the feature vector lies.

    Attributes
    ----------
    frame_sizes : tuple of int
        The FFT frame sizes.
    bands : tuple of int
        Bands per frame size.
    dims : int
        Length of the feature vector.
    """

    frame_sizes: tuple[int, ...]
    bands: tuple[int, ...]

    @property
    def dims(self) -> int:
        """Length of the feature vector."""
        return 2 * sum(self.bands)

    def block(self, kind: str, frame_size: int) -> slice:
        """Slice of ``kind`` (``"logfilt"`` or ``"pdiff"``) for ``frame_size``."""
        r = self.frame_sizes.index(frame_size)
        o = 2 * sum(self.bands[:r])
        nb = self.bands[r]
        if kind == "logfilt":
            return slice(o, o + nb)
        if kind == "pdiff":
            return slice(o + nb, o + 2 * nb)
        raise KeyError(kind)

    def pdiff_mask(self) -> npt.NDArray[np.bool_]:
        """Boolean mask of every ``pdiff`` element."""
        mask = np.zeros(self.dims, dtype=bool)
        for n in self.frame_sizes:
            mask[self.block("pdiff", n)] = True
        return mask


class SpectralFeatures:
    """Causal multi-resolution log-filtered spectrum and its SuperFlux positive difference.

    Parameters
    ----------
    config : FeatureConfig
        Frame sizes, hop, filterbank and difference settings.
    """

    name: ClassVar[str] = "spectral_features"

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self.spec = StageSpec(
            name=self.name,
            input_kind="samples",
            frame_size=max(config.frame_sizes),
            hop_size=config.hop_size,
            latency_samples=0,
            outputs=("logfilt", "pdiff"),
        )
        self._prepared = False

    # ------------------------------------------------------------------ lifecycle
    def prepare(self, ctx: StreamContext) -> None:
        """Build windows and filterbanks, allocate every buffer, and warm up the kernels."""
        c = self.config
        if ctx.hop_size != c.hop_size:
            raise ValueError(f"context hop {ctx.hop_size} differs from features.hop_size")
        sizes = np.asarray(c.frame_sizes, dtype=np.int64)
        fbs: list[SparseFilterbank] = [
            log_filterbank(
                n_fft=int(n),
                sample_rate_hz=ctx.sample_rate_hz,
                bands_per_octave=c.bands_per_octave,
                fmin_hz=c.fmin_hz,
                fmax_hz=c.fmax_hz,
            )
            for n in c.frame_sizes
        ]
        self.filterbanks = tuple(fbs)
        self.layout = FeatureLayout(c.frame_sizes, tuple(fb.n_bands for fb in fbs))
        self._sizes = sizes
        self._win_flat = np.concatenate([hann(int(n)) for n in sizes])
        self._win_off = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        # Concatenate the sparse filterbanks; band offsets index into one weight array.
        w_off = 0
        starts, lens, offs, ws = [], [], [], []
        for fb in fbs:
            starts.append(fb.start)
            lens.append(fb.length)
            offs.append(fb.offset + w_off)
            ws.append(fb.weights)
            w_off += fb.weights.shape[0]
        self._fb_start = np.concatenate(starts)
        self._fb_len = np.concatenate(lens)
        self._fb_off = np.concatenate(offs)
        self._fb_w = np.concatenate(ws).astype(np.float32)
        self._band_off = np.concatenate([[0], np.cumsum(self.layout.bands)]).astype(np.int64)
        self._diff_frames = np.asarray(
            [diff_frames_for(int(n), c.hop_size, c.diff_ratio) for n in sizes], dtype=np.int64
        )
        # Arguments of every kernel call that never change during a stream.
        self._static = (
            self._sizes,
            self._win_flat,
            self._win_off,
            self._fb_start,
            self._fb_len,
            self._fb_off,
            self._fb_w,
            self._band_off,
            self._diff_frames,
            c.diff_max_bins,
            c.log_mul,
        )
        self._scratch = np.zeros(int(sizes.max()), dtype=np.float64)
        self._bands = np.zeros(int(max(self.layout.bands)), dtype=np.float64)
        self._hist = np.zeros((int(self._diff_frames.max()) + 1, sum(self.layout.bands)))
        self.output = np.zeros(self.layout.dims, dtype=np.float32)
        self._t = 0
        self._prepared = True
        # Warm-up: compile (or load from cache) and run once, then clear the state.
        self.process(np.zeros(self.spec.frame_size, dtype=np.float32), 0)
        self.batch(np.zeros(self.spec.frame_size, dtype=np.float32))
        self.reset()

    def reset(self) -> None:
        """Zero the difference history and frame counter without reallocating."""
        self._hist.fill(0.0)
        self.output.fill(0.0)
        self._t = 0

    def flush(self) -> tuple[Event, ...]:
        """End of stream: features emit no events."""
        return EMPTY

    # ------------------------------------------------------------------ processing
    def process(self, window: npt.NDArray[np.float32], sample_index: int) -> tuple[Event, ...]:
        """Compute the features of the frame ending at ``sample_index`` into :attr:`output`.

        Parameters
        ----------
        window : ndarray of float32, shape (max(frame_sizes),)
            The newest samples, ending at the current sample.
        sample_index : int
            Absolute index one past the window's last sample.

        Real-time safety: one numba call writing into preallocated buffers (the FFT itself
        allocates its result inside numba, never through Python).
        """
        _frame_kernel(
            window, self._t, *self._static, self._scratch, self._bands, self._hist, self.output
        )
        self._t += 1
        return EMPTY

    def batch(self, signal: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """Offline features of a whole mono signal, frame ``t`` ending at ``(t + 1) * hop``.

        Uses a fresh difference history, so it equals streaming from the start of a stream.

        Returns
        -------
        ndarray of float32, shape (len(signal) // hop, dims)
        """
        if not self._prepared:
            raise RuntimeError("prepare() first")
        hop = self.config.hop_size
        max_n = self.spec.frame_size
        x = np.asarray(signal, dtype=np.float32)
        n_frames = x.shape[0] // hop
        padded = np.concatenate([np.zeros(max_n, dtype=np.float32), x])
        out = np.zeros((n_frames, self.layout.dims), dtype=np.float32)
        hist = np.zeros_like(self._hist)
        scratch = np.zeros_like(self._scratch)
        bands = np.zeros_like(self._bands)
        for t in range(n_frames):
            end = (t + 1) * hop + max_n
            _frame_kernel(padded[end - max_n : end], t, *self._static, scratch, bands, hist, out[t])
        return out


def log_mel(
    signal: npt.NDArray[np.floating],
    *,
    sample_rate_hz: float,
    n_fft: int = 2048,
    hop_size: int = 441,
    n_mels: int = 96,
    fmax_hz: float = 11025.0,
    log_mul: float = 1.0,
    filterbank: SparseFilterbank | None = None,
) -> npt.NDArray[np.float32]:
    """Log-compressed mel spectrogram of a mono window (frames start at sample 0, no padding).

    Parameters
    ----------
    signal : ndarray, shape (samples,)
        Mono audio.
    sample_rate_hz : float
        Its sample rate.
    n_fft, hop_size : int
        Frame size and hop in samples.
    n_mels : int
        Mel bands.
    fmax_hz : float
        Upper edge of the mel filterbank.
    log_mul : float
        Compression ``log10(1 + log_mul * x)``.
    filterbank : SparseFilterbank, optional
        A prebuilt mel filterbank (build it once with :func:`mel_filterbank` for repeated calls).

    Returns
    -------
    ndarray of float32, shape (frames, n_mels)
    """
    x = np.ascontiguousarray(signal, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError("log_mel expects a mono signal")
    fb = filterbank or mel_filterbank(
        n_fft=n_fft, sample_rate_hz=sample_rate_hz, n_mels=n_mels, fmax_hz=fmax_hz
    )
    if fb.n_bins != n_fft // 2 + 1:
        raise ValueError("filterbank does not match n_fft")
    n_frames = 0 if x.shape[0] < n_fft else 1 + (x.shape[0] - n_fft) // hop_size
    out = np.zeros((n_frames, fb.n_bands), dtype=np.float32)
    if n_frames:
        _mel_kernel(
            x, hop_size, hann(n_fft), fb.start, fb.length, fb.offset, fb.weights, log_mul, out
        )
    return out
