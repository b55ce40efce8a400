"""Offline beat decoding: the most likely beat sequence of a whole activation (Viterbi).

The live tracker (:mod:`onbeat.realtime.tracker`) filters forward only: it has to commit to a
tempo and a phase before it has heard what follows, and it keeps a wrong lock for a while. A
labeller sees the whole file, so it can afford the best path instead. This module decodes a beat
activation over a state space of beat period × position within the beat, the discrete model of
Whiteley et al. (2006) and Krebs, Böck & Widmer (ISMIR 2015, "An efficient state-space model for
joint tempo and meter tracking"), in the form madmom's offline ``DBNBeatTrackingProcessor``
popularised. Our own formulation and code:

* tempo states: every integer beat period (frames) between ``fps * 60 / max_bpm`` and
  ``fps * 60 / min_bpm``; the position advances one frame per frame and wraps at the period;
* a tempo change only at a wrap, to period ``q`` from ``p`` with weight ``exp(-λ |q / p - 1|)``
  (``transition_lambda``), normalised over ``q``;
* observation: the first ``beat_frames`` positions of each beat (3 by default; 0 for the classic
  model's first ``1 / observation_lambda`` of the period) are "beat" and emit the
  activation ``a``, the rest emits ``(1 - a) / (observation_lambda - 1)``. With a fixed
  ``beat_frames`` the beat states read the activation's maximum over that many frames, so a
  one-frame peak fills the window; a window that grows with the period would instead make a slow
  tempo pay for every quiet frame near a sharp peak, and favour twice the tempo;
* the reported beat of each passage through the beat states is its frame of highest activation.

Only the wrap states have a choice of predecessor, so the back-pointers are one small integer per
frame and tempo: a four-minute song needs a few megabytes, not a dense trellis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt
from scipy.ndimage import maximum_filter1d

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ViterbiConfig:
    """The offline decoder's model.

    Parameters
    ----------
    fps : float
        Activation frames per second.
    min_bpm, max_bpm : float
        Tempo range of the state space.
    transition_lambda : float
        Tempo-change penalty at each beat (larger: steadier tempo).
    observation_lambda : float
        A beat state needs an activation above ``1 / observation_lambda`` to be likelier than a
        non-beat state.
    beat_frames : int
        Beat states per period, the same at every tempo (0: ``period / observation_lambda``,
        the classic model).
    """

    fps: float = 100.0
    min_bpm: float = 55.0
    max_bpm: float = 215.0
    transition_lambda: float = 100.0
    observation_lambda: float = 16.0
    beat_frames: int = 3

    def __post_init__(self) -> None:
        if not 1.0 <= self.fps <= 1000.0:
            raise ValueError("need 1 <= fps <= 1000")
        if not 10.0 <= self.min_bpm < self.max_bpm <= 600.0:
            raise ValueError("need 10 <= min_bpm < max_bpm <= 600")
        if self.fps * 60.0 / self.max_bpm < 2.0:
            raise ValueError("max_bpm too fast for fps: a beat needs at least 2 frames")
        if not (self.transition_lambda > 0.0 and self.observation_lambda > 1.0):
            raise ValueError("need transition_lambda > 0 and observation_lambda > 1")
        if not 0 <= self.beat_frames <= self.fps * 60.0 / self.max_bpm / 2:
            raise ValueError("need 0 <= beat_frames <= half the shortest period")

    def periods(self) -> npt.NDArray[np.int64]:
        """Integer beat periods (frames) of the state space, shortest first."""
        lo = int(np.floor(self.fps * 60.0 / self.max_bpm))
        hi = int(np.ceil(self.fps * 60.0 / self.min_bpm))
        return np.arange(max(lo, 2), hi + 1, dtype=np.int64)


@numba.njit(cache=True)
def _viterbi(
    act: npt.NDArray[np.float64],
    periods: npt.NDArray[np.int64],
    log_trans: npt.NDArray[np.float64],
    width: npt.NDArray[np.int64],
    obs_lambda: float,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:  # pragma: no cover - compiled
    n_t = act.shape[0]
    n_p = periods.shape[0]
    offs = np.zeros(n_p + 1, dtype=np.int64)
    for i in range(n_p):
        offs[i + 1] = offs[i] + periods[i]
    n_s = offs[n_p]
    score = np.zeros(n_s)  # a uniform start: any constant drops out of the best path
    new = np.empty(n_s)
    back = np.zeros((n_t, n_p), dtype=np.int16)
    for t in range(n_t):
        if t == 0:
            new[:] = score
        for i in range(n_p if t > 0 else 0):
            # position k comes from k - 1 of the same period
            for k in range(periods[i] - 1, 0, -1):
                new[offs[i] + k] = score[offs[i] + k - 1]
            best = -np.inf
            arg = 0
            for j in range(n_p):
                v = score[offs[j] + periods[j] - 1] + log_trans[j, i]
                if v > best:
                    best = v
                    arg = j
            new[offs[i]] = best
            back[t, i] = arg
        a = min(max(act[t], 1e-6), 1.0 - 1e-6)
        hi_obs = np.log(a)
        lo_obs = np.log((1.0 - a) / (obs_lambda - 1.0))
        for i in range(n_p):
            for k in range(periods[i]):
                new[offs[i] + k] += hi_obs if k < width[i] else lo_obs
        norm = -np.inf
        for s in range(n_s):
            score[s] = new[s]
            if new[s] > norm:
                norm = new[s]
        for s in range(n_s):
            score[s] -= norm
    # best final state, then back along the path
    best_s = 0
    for s in range(n_s):
        if score[s] > score[best_s]:
            best_s = s
    i = 0
    while offs[i + 1] <= best_s:
        i += 1
    k = best_s - offs[i]
    path_p = np.empty(n_t, dtype=np.int64)
    path_k = np.empty(n_t, dtype=np.int64)
    for t in range(n_t - 1, -1, -1):
        path_p[t] = i
        path_k[t] = k
        if t == 0:
            break
        if k > 0:
            k -= 1
        else:
            i = back[t, i]
            k = periods[i] - 1
    return path_p, path_k


def decode(act: npt.ArrayLike, config: ViterbiConfig | None = None) -> tuple[F64, F64]:
    """Most likely beats of a whole beat activation.

    Parameters
    ----------
    act : array_like
        Beat activation in [0, 1], one value per frame at ``config.fps``.
    config : ViterbiConfig, optional
        The model (default: 55-215 BPM, 100 frames/s).

    Returns
    -------
    beats_s : ndarray
        Beat times (seconds; frame ``n`` is at ``n / fps``).
    bpm : ndarray
        The path's tempo at each beat (BPM).
    """
    cfg = config or ViterbiConfig()
    a = np.asarray(act, dtype=np.float64).reshape(-1)
    if a.size == 0:
        return np.zeros(0), np.zeros(0)
    if not np.all(np.isfinite(a)):
        raise ValueError("activation holds NaN or infinity")
    periods = cfg.periods()
    ratio = periods[None, :] / periods[:, None]
    log_trans = -cfg.transition_lambda * np.abs(ratio - 1.0)
    log_trans -= np.log(np.exp(log_trans).sum(axis=1, keepdims=True))
    if cfg.beat_frames:
        width = np.full(periods.size, cfg.beat_frames, dtype=np.int64)
        obs = maximum_filter1d(a, cfg.beat_frames, mode="nearest")
    else:
        width = np.maximum(1, (periods / cfg.observation_lambda).astype(np.int64))
        obs = a
    path_p, path_k = _viterbi(obs, periods, log_trans, width, cfg.observation_lambda)
    in_beat = path_k < width[path_p]
    beats: list[int] = []
    bpm: list[float] = []
    n = 0
    while n < a.size:
        if not in_beat[n]:
            n += 1
            continue
        m = n
        while m + 1 < a.size and in_beat[m + 1] and path_k[m + 1] > 0:
            m += 1
        beats.append(n + int(np.argmax(a[n : m + 1])))
        bpm.append(60.0 * cfg.fps / periods[path_p[n]])
        n = m + 1
    return np.asarray(beats, dtype=np.float64) / cfg.fps, np.asarray(bpm, dtype=np.float64)
