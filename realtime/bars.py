"""Beat-synchronous downbeat evidence for the tracker's bar filter.

The beat LSTM's downbeat output hardly tells a bar's first beat from the others (ROC-AUC 0.53 on
the renders' validation split, 0.62 on the generated heavy songs, read at the true beats:
``scripts/diag_downbeats.py``): one frame at a time, a small causal network does not keep where
the bar is. A second network that steps once per *beat* does. At each beat it reads a summary of
the beat that just ended (:func:`beat_vector`) and says whether that beat started a bar.

This is the approach of Krebs, Böck, Dorfer and Widmer (2016, "Downbeat tracking using
beat-synchronous features and recurrent neural networks"; Durand et al. 2017 with CNNs), made
causal: a unidirectional LSTM over beats, so the evidence for a beat arrives one beat later, when
its interval is complete. The tracker's bar filter applies it to the beat before the current one.

Per beat the summary is, from the 2048-sample resolution of the engine's features:

* the mean log-filtered spectrum over the beat (its harmonic content);
* the mean positive spectral difference over the 60 ms around the beat (its attack: kick,
  crash, a chord's onset);
* the change of the first part from the previous beat (a chord change).

The same :func:`beat_vector` kernel builds the training data (``onbeat train bars``) from the
cached features at the labelled beats, so training and live inference see identical inputs.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt
from onbeat.models.streaming import NumbaLSTM
from onbeat.realtime.features import FeatureLayout

__all__ = [
    "BAR_FRAME_SIZE",
    "BarEvidence",
    "bar_columns",
    "bar_input_size",
    "beat_vector",
    "beat_vectors",
]

#: The feature resolution (FFT frame size) the bar model reads.
BAR_FRAME_SIZE = 2048
_ONSET_BEFORE = 2  # frames of the attack window before the beat frame ...
_ONSET_AFTER = 4  # ... and after it (exclusive): 60 ms at 100 frames/s


def bar_columns(layout: FeatureLayout) -> npt.NDArray[np.int64]:
    """Feature-vector columns the bar model reads: log-filtered bands, then their positive
    difference, of :data:`BAR_FRAME_SIZE`."""
    lf = layout.block("logfilt", BAR_FRAME_SIZE)
    pd = layout.block("pdiff", BAR_FRAME_SIZE)
    return np.r_[np.arange(lf.start, lf.stop), np.arange(pd.start, pd.stop)].astype(np.int64)


def bar_input_size(layout: FeatureLayout) -> int:
    """Length of one beat's summary vector (3 × the bands of :data:`BAR_FRAME_SIZE`)."""
    return 3 * layout.bands[layout.frame_sizes.index(BAR_FRAME_SIZE)]


@numba.njit(cache=True, nogil=True)
def beat_vector(
    ring: npt.NDArray[np.float32],
    a_fr: float,
    b_fr: float,
    prev: npt.NDArray[np.float32],
    has_prev: bool,
    out: npt.NDArray[np.float32],
) -> None:  # pragma: no cover - compiled
    """Summary of the beat from frame ``a_fr`` to the next beat at ``b_fr``, into ``out``.

    ``ring`` holds frames of ``[bands | positive difference]`` at index ``frame % depth``;
    ``prev`` holds the previous beat's band means (updated here); ``has_prev`` False gives a
    zero change part (the first beat after a reset).
    """
    depth = ring.shape[0]
    nb = prev.shape[0]
    ia = int(np.floor(a_fr + 0.5))
    ib = int(np.floor(b_fr + 0.5))
    if ib <= ia:
        ib = ia + 1
    for j in range(3 * nb):
        out[j] = 0.0
    for k in range(ia, ib):
        r = k % depth
        for j in range(nb):
            out[j] += ring[r, j]
    inv = 1.0 / (ib - ia)
    for j in range(nb):
        out[j] *= inv
    for k in range(ia - _ONSET_BEFORE, ia + _ONSET_AFTER):
        r = k % depth
        for j in range(nb):
            out[nb + j] += ring[r, nb + j]
    inv = 1.0 / (_ONSET_BEFORE + _ONSET_AFTER)
    for j in range(nb):
        out[nb + j] *= inv
        out[2 * nb + j] = out[j] - prev[j] if has_prev else 0.0
        prev[j] = out[j]


def beat_vectors(
    features: npt.NDArray[np.float32], columns: npt.NDArray[np.int64], beats_fr: npt.ArrayLike
) -> npt.NDArray[np.float32]:
    """Summaries of every beat but the last of a whole recording (for training).

    Parameters
    ----------
    features : ndarray, shape (frames, dims)
        Engine features (frame ``k`` ends at sample ``(k + 1) * hop``).
    columns : ndarray of int
        From :func:`bar_columns`.
    beats_fr : array_like
        Beat positions in frames (``time_s * frame rate``), increasing.

    Returns
    -------
    ndarray, shape (n_beats - 1, 3 * bands)
        Row ``i`` summarises beat ``i`` up to beat ``i + 1``, as :class:`BarEvidence` does live.
    """
    b = np.asarray(beats_fr, dtype=np.float64)
    nb = columns.shape[0] // 2
    n = features.shape[0]
    # zero frames around the recording stand for the silence a fresh live ring holds
    pad = _ONSET_BEFORE + 1
    ring = np.zeros((n + pad + _ONSET_AFTER + 2, 2 * nb), dtype=np.float32)
    ring[pad : pad + n] = np.asarray(features)[:, columns]
    out = np.zeros((max(0, b.shape[0] - 1), 3 * nb), dtype=np.float32)
    prev = np.zeros(nb, dtype=np.float32)
    for i in range(out.shape[0]):
        a, e = min(b[i], n - 1.0), min(b[i + 1], float(n))
        beat_vector(ring, a + pad, e + pad, prev, i > 0, out[i])
    return out


class BarEvidence:
    """Live beat-synchronous downbeat evidence: a ring of feature frames and the bar LSTM.

    Parameters
    ----------
    net : NumbaLSTM
        The ``bars`` model (one output: "the beat that just ended started a bar").
    columns : ndarray of int
        From :func:`bar_columns` for the stream's feature layout.
    """

    def __init__(self, net: NumbaLSTM, columns: npt.NDArray[np.int64]) -> None:
        nb = columns.shape[0] // 2
        if net.spec.n_in != 3 * nb:
            raise ValueError(
                f"the bars model reads {net.spec.n_in} values per beat, "
                f"the stream's features give {3 * nb}"
            )
        self.net = net
        self.columns = columns
        self._ring = np.zeros((1, 2 * nb), dtype=np.float32)
        self._prev = np.zeros(nb, dtype=np.float32)
        self._vec = np.zeros(3 * nb, dtype=np.float32)
        self._has_prev = False

    def prepare(self, depth: int) -> None:
        """Allocate a ring of ``depth`` frames (at least the longest beat plus 8) and warm up."""
        self._ring = np.zeros((depth, self._ring.shape[1]), dtype=np.float32)
        beat_vector(self._ring, 0.0, 1.0, self._prev, False, self._vec)
        self.reset()

    def reset(self) -> None:
        """Forget the beats so far (a new song, a lost track)."""
        self._ring.fill(0.0)
        self.restart()

    def restart(self) -> None:
        """Start a new run of beats (the grid jumped): the next beat has no predecessor."""
        self.net.reset()
        self._prev.fill(0.0)
        self._has_prev = False

    def push(self, n: int, frame: npt.NDArray[np.float32]) -> None:
        """Store feature frame ``n`` (the tracker's frame index). No allocation."""
        # mode "clip": numpy buffers the output for the default mode "raise"
        np.take(frame, self.columns, out=self._ring[n % self._ring.shape[0]], mode="clip")

    def beat(self, a_fr: float, b_fr: float) -> float:
        """Probability that the beat at frame ``a_fr`` started a bar, given the beat that ends
        at ``b_fr`` and every beat before (the network's state). Both frames must be in the
        ring. No allocation: numba calls on preallocated buffers."""
        beat_vector(self._ring, a_fr, b_fr, self._prev, self._has_prev, self._vec)
        self._has_prev = True
        return float(self.net.step(self._vec)[0])
