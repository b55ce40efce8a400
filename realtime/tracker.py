"""Online tempo, phase and bar tracking that predicts the next beat.

:class:`BeatTracker` consumes one ``[beat, downbeat]`` activation frame per hop (probabilities,
100 frames/s by default) and issues each beat *before* it happens. Three causal layers work
together, each cheap:

1. **Tempo/phase filter** (numba, every frame). A bar-pointer state space after Whiteley et al.
   and Krebs et al. (the model behind madmom's online DBN): one state per (beat period in whole
   frames, position within the beat). Positions advance by one per frame; at the end of a beat the
   period may change to a neighbouring one with probability ``exp(-lambda * |ln ratio|)``. The
   forward (filtering) recursion runs in place: each tempo's positions live in a ring indexed by
   the frame clock, so the "advance" is free and only the beat boundaries (one state per tempo and
   frame) and the beat-kernel states around position 0 are touched before the normalising pass.
   The observation is a mixture: near the beat position the activation is explained as a beat that
   may be missing (``miss_prob``), elsewhere as no beat, so a missing beat or a break costs a
   bounded factor instead of annihilating hypotheses. A per-second tempo prior favours
   ``prior_lo_bpm..prior_hi_bpm`` and a small ``restart_prob`` keeps every state reachable.

2. **Beat grid** (a second-order phase-locked loop, once per beat). The filter's periods are whole
   frames, too coarse for 1 % tempo at 170 BPM or for on-the-beat output, so the grid keeps a
   fractional period and the time of the next beat. About a quarter period after each beat, the
   activation peak nearest the predicted beat is located to a fraction of a frame (parabolic
   interpolation) and corrects phase and period (alpha-beta gains). Two consecutive large errors
   of one sign re-estimate the period from the last interval (a tempo step re-locks in about three
   beats). The filter supervises the grid: it seeds it when its posterior concentrates, re-seeds it
   when they disagree for two beats, and decides octave switches, which need ``octave_hold_beats``
   beats of dominance (hysteresis). With no accepted beat the grid keeps running (flywheel) for
   ``flywheel_bars`` bars with decaying confidence, then the tracker goes quiet and starts over.

3. **Bar position** (a small discrete filter over meter x beat-in-bar, once per beat). With a
   :class:`~onbeat.realtime.bars.BarEvidence` (the shipped ``bars`` model, given the feature
   frames through ``process(..., features=)``) its evidence is that model's verdict on the
   issued beat before the current one, read once the beat in between has passed; without one,
   the strongest downbeat activation around each issued beat, relative to the other beats.

Beats are issued in the frame nearest the predicted beat time less ``output_latency_s``
(``issue_frame = "nearest"``, the default): with zero latency ``|emitted_s - time_s| <= half a
frame`` (5 ms). ``issue_frame = "before"`` issues in the last frame before it instead
(``emitted_s <= time_s < emitted_s + 1 frame``: never after the beat, but on average half a frame
early), for consumers that act on receipt and must never be late; sinks that schedule by
``time_s`` (OSC) are on time either way. A beat already more than ``max_late_s`` in the past is
skipped rather than reported late.

Times: an activation frame handed in with ``sample_index`` refers to the audio at stream time
``sample_index / sample_rate_hz - input_latency_s`` (the activation network's own delay).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numba
import numpy as np
import numpy.typing as npt
from onbeat.realtime.commands import Command
from onbeat.realtime.errors import ConfigError, StageError
from onbeat.realtime.events import EMPTY, BeatEvent, Event, TempoEvent
from onbeat.realtime.stages import StageSpec, StreamContext
from onbeat.realtime.validation import check_range as _check_range

if TYPE_CHECKING:
    from onbeat.realtime.bars import BarEvidence

__all__ = ["BeatTracker", "TrackerConfig"]


# ---------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """Online tempo/phase/bar tracker.

    Parameters
    ----------
    min_bpm, max_bpm : float
        Tempo range of the state space. ``set_bpm_range`` may narrow it at run time.
    num_tempi : int
        Tempo states: beat periods (whole frames) log-spaced over the range, so that tempo
        changes are equally likely at every tempo; 0 uses every whole-frame period.
    beats_per_bar : tuple of int
        Meters tracked jointly, e.g. ``(4,)`` or ``(3, 4)``.
    transition_lambda : float
        Tempo stability: at a beat the period changes by a ratio ``r`` with probability
        proportional to ``exp(-transition_lambda * |ln r|)``.
    observation_lambda : float
        Activations above ``1 / observation_lambda`` count as evidence for a beat.
    beat_width_s : float
        Half-width of the filter's beat kernel (a raised cosine around the beat position); the
        same for every tempo, so that a break penalises every tempo equally per beat.
    miss_prob : float
        Probability that a beat shows no activation (soft breaks, missing beats).
    absence_weight : float
        How many frames' worth of evidence an absent beat counts for: a beat without activation
        costs ``miss_prob ** absence_weight``; activation above ``1 / observation_lambda`` counts
        for a beat with the kernel weight.
    restart_prob : float
        Probability mass re-spread over all states each frame (lets the filter escape).
    prior_lo_bpm, prior_hi_bpm : float
        Preferred tempo range (no penalty inside).
    prior_width_octaves : float
        Width of the penalty outside the preferred range.
    prior_strength : float
        Log-penalty per second at one ``prior_width_octaves`` outside the preferred range.
    octave_hold_beats : int
        Beats a tempo outside the current octave family must dominate before the tracker switches.
    octave_margin : float
        How many times more posterior mass it needs to count as dominating.
    phase_gain, tempo_gain : float
        Beat-grid loop gains (alpha, beta) applied to each measured beat error.
    search_width : float
        Half-width of the window searched for the activation peak of a predicted beat, as a
        fraction of the period.
    hit_threshold : float
        Minimum activation peak for a beat to count as observed.
    seed_confidence : float
        Filter confidence needed to start (or re-seed) the beat grid.
    lock_confidence : float
        Confidence above which the tracker reports ``locked`` after ``lock_beats`` beats.
    lock_beats : int
        Consecutive beats above ``lock_confidence`` needed to lock.
    flywheel_bars : float
        Bars the grid keeps running without any observed beat before the tracker goes quiet.
    output_latency_s : float
        Beats are issued this long before they happen.
    input_latency_s : float
        Delay of the activations behind the audio (the activation network's latency).
    max_late_s : float
        A beat already this far in the past when it becomes known is skipped, not issued late.
    issue_frame : str
        ``"nearest"``: a beat is issued in the frame nearest its time less the output latency
        (at most half a frame late or early); ``"before"``: in the last frame before it (never
        late, on average half a frame early).
    tap_timeout_s : float
        A pause longer than this starts a new tap-tempo sequence.
    downbeat_floor : float
        Likelihood floor of the bar filter (lower trusts the downbeat activation more).
    meter_switch_prob : float
        Probability per bar of a change of meter.
    tempo_rate_hz : float
        Rate of :class:`TempoEvent` updates (also sent on lock, meter or ≥1 % tempo changes).
    """

    section: ClassVar[str] = "tracker"
    min_bpm: float = 55.0
    max_bpm: float = 215.0
    num_tempi: int = 60
    beats_per_bar: tuple[int, ...] = (4,)
    transition_lambda: float = 100.0
    observation_lambda: float = 16.0
    beat_width_s: float = 0.02
    miss_prob: float = 0.25
    absence_weight: float = 3.0
    restart_prob: float = 1e-6
    prior_lo_bpm: float = 80.0
    prior_hi_bpm: float = 160.0
    prior_width_octaves: float = 0.5
    prior_strength: float = 1.0
    octave_hold_beats: int = 4
    octave_margin: float = 2.0
    phase_gain: float = 0.5
    tempo_gain: float = 0.15
    search_width: float = 0.25
    hit_threshold: float = 0.15
    seed_confidence: float = 0.3
    lock_confidence: float = 0.4
    lock_beats: int = 2
    flywheel_bars: float = 4.0
    output_latency_s: float = 0.0
    input_latency_s: float = 0.0
    max_late_s: float = 0.02
    issue_frame: str = "nearest"
    tap_timeout_s: float = 2.0
    downbeat_floor: float = 0.1
    meter_switch_prob: float = 1e-3
    tempo_rate_hz: float = 2.0

    def __post_init__(self) -> None:
        s = self.section
        _check_range(s, "min_bpm", self.min_bpm, 10.0, 600.0)
        _check_range(s, "max_bpm", self.max_bpm, 10.0, 600.0)
        if self.max_bpm < self.min_bpm * 1.25:
            raise ConfigError(
                f"{s}.max_bpm = {self.max_bpm} must be at least 1.25 x {s}.min_bpm = {self.min_bpm}"
            )
        if self.num_tempi != 0:
            _check_range(s, "num_tempi", self.num_tempi, 8, 1000, integer=True)
        if not self.beats_per_bar:
            raise ConfigError(f"{s}.beats_per_bar is empty: give at least one meter, e.g. [4]")
        if len(set(self.beats_per_bar)) != len(self.beats_per_bar):
            raise ConfigError(f"{s}.beats_per_bar = {list(self.beats_per_bar)} lists a meter twice")
        for m in self.beats_per_bar:
            _check_range(s, "beats_per_bar", m, 2, 16, integer=True)
        _check_range(s, "transition_lambda", self.transition_lambda, 1.0, 1e4)
        _check_range(s, "observation_lambda", self.observation_lambda, 2.0, 1e3)
        _check_range(s, "beat_width_s", self.beat_width_s, 0.0, 0.1)
        _check_range(s, "miss_prob", self.miss_prob, 1e-3, 0.99)
        _check_range(s, "absence_weight", self.absence_weight, 0.1, 10.0)
        _check_range(s, "restart_prob", self.restart_prob, 0.0, 0.1)
        _check_range(s, "prior_lo_bpm", self.prior_lo_bpm, 10.0, 600.0)
        _check_range(s, "prior_hi_bpm", self.prior_hi_bpm, self.prior_lo_bpm, 600.0)
        _check_range(s, "prior_width_octaves", self.prior_width_octaves, 0.05, 4.0)
        _check_range(s, "prior_strength", self.prior_strength, 0.0, 100.0)
        _check_range(s, "octave_hold_beats", self.octave_hold_beats, 1, 64, integer=True)
        _check_range(s, "octave_margin", self.octave_margin, 1.0, 1e6)
        _check_range(s, "phase_gain", self.phase_gain, 0.0, 1.0)
        _check_range(s, "tempo_gain", self.tempo_gain, 0.0, 1.0)
        _check_range(s, "search_width", self.search_width, 0.05, 0.45)
        _check_range(s, "hit_threshold", self.hit_threshold, 0.0, 1.0)
        _check_range(s, "seed_confidence", self.seed_confidence, 0.0, 1.0)
        _check_range(s, "lock_confidence", self.lock_confidence, 0.0, 1.0)
        _check_range(s, "lock_beats", self.lock_beats, 1, 64, integer=True)
        _check_range(s, "flywheel_bars", self.flywheel_bars, 0.0, 64.0)
        _check_range(s, "output_latency_s", self.output_latency_s, 0.0, 0.5)
        _check_range(s, "input_latency_s", self.input_latency_s, 0.0, 0.5)
        _check_range(s, "max_late_s", self.max_late_s, 0.0, 0.5)
        if self.issue_frame not in ("nearest", "before"):
            raise ConfigError(
                f"{s}.issue_frame = {self.issue_frame!r} is invalid: must be nearest or before"
            )
        _check_range(s, "tap_timeout_s", self.tap_timeout_s, 0.3, 10.0)
        _check_range(s, "downbeat_floor", self.downbeat_floor, 1e-4, 10.0)
        _check_range(s, "meter_switch_prob", self.meter_switch_prob, 0.0, 0.5)
        _check_range(s, "tempo_rate_hz", self.tempo_rate_hz, 0.0, 100.0)


# ---------------------------------------------------------------------------------------------
# numba kernels (private; the class checks shapes once in prepare)


@numba.njit(cache=True, nogil=True)
def _filter_step(
    alpha: npt.NDArray[np.float64],
    periods: npt.NDArray[np.int64],
    offsets: npt.NDArray[np.int64],
    clock: int,
    trans: npt.NDArray[np.float64],
    band_lo: npt.NDArray[np.int64],
    band_hi: npt.NDArray[np.int64],
    boundary_gain: npt.NDArray[np.float64],
    k_weight: npt.NDArray[np.float64],
    k_share: npt.NDArray[np.float64],
    k_factor: npt.NDArray[np.float64],
    rho: float,
    restart: float,
    n_active: int,
    cos_t: npt.NDArray[np.float64],
    sin_t: npt.NDArray[np.float64],
    scratch: npt.NDArray[np.float64],
    mass: npt.NDArray[np.float64],
    zre: npt.NDArray[np.float64],
    zim: npt.NDArray[np.float64],
) -> float:  # pragma: no cover - compiled
    """One forward step of the bar-pointer filter, in place.

    Tempo ``i`` (period ``P``) keeps its positions in ``alpha[offsets[i]:offsets[i] + P]``; at
    clock ``c`` position ``p`` sits in slot ``(c - p) mod P``. Advancing the clock moves every
    state one position on for free; the slot ``c mod P`` then holds the mass that just finished a
    beat, which is redistributed over the tempi (``trans[j, i]``, nonzero for ``j`` in
    ``band_lo[i]:band_hi[i]``) and re-enters at position 0.

    The states within ``h = len(k_weight) // 2`` frames of their beat are weighed with the
    activation's likelihood ratio ``rho`` (beat vs. no beat): evidence for a beat (``rho > 1``)
    counts with the kernel weight, evidence against it is tempered with the kernel's shares
    (``k_share`` sums to 1), so a silent beat costs ``rho`` once per beat whatever the kernel.
    Returns the normaliser.
    """
    nt = periods.shape[0]
    for j in range(nt):
        scratch[j] = alpha[offsets[j] + clock % periods[j]]
    for i in range(nt):
        acc = 0.0
        for j in range(band_lo[i], band_hi[i]):
            acc += scratch[j] * trans[j, i]
        alpha[offsets[i] + clock % periods[i]] = acc * boundary_gain[i]
    if rho != 1.0:
        h = k_weight.shape[0] // 2
        for d in range(2 * h + 1):
            if rho > 1.0:
                k_factor[d] = 1.0 + k_weight[d] * (rho - 1.0)
            else:
                k_factor[d] = rho ** k_share[d]
        for i in range(nt):
            if boundary_gain[i] == 0.0:
                continue
            p = periods[i]
            base = offsets[i]
            s0 = clock % p
            for d in range(-h, h + 1):
                slot = s0 - d
                if slot < 0:
                    slot += p
                elif slot >= p:
                    slot -= p
                alpha[base + slot] *= k_factor[d + h]
    total = 0.0
    for s in range(alpha.shape[0]):
        total += alpha[s]
    if not (total > 0.0) or not np.isfinite(total):
        # cannot happen with restart > 0; recover to uniform over the active states
        total = 0.0
        for i in range(nt):
            v = 1.0 if boundary_gain[i] > 0.0 else 0.0
            for k in range(periods[i]):
                alpha[offsets[i] + k] = v
                total += v
        total = max(total, 1.0)
    inv = (1.0 - restart) / total
    floor = restart / max(n_active, 1)
    for i in range(nt):
        p = periods[i]
        base = offsets[i]
        if boundary_gain[i] == 0.0:
            for k in range(p):
                alpha[base + k] = 0.0
            mass[i] = 0.0
            zre[i] = 0.0
            zim[i] = 0.0
            continue
        m = 0.0
        zr = 0.0
        zi = 0.0
        for k in range(p):
            v = alpha[base + k] * inv + floor
            alpha[base + k] = v
            m += v
            zr += v * cos_t[base + k]
            zi -= v * sin_t[base + k]
        # rotate from slot to position phase: position p = (c - slot) mod P
        s0 = base + clock % p
        c0 = cos_t[s0]
        s1 = sin_t[s0]
        mass[i] = m
        zre[i] = zr * c0 - zi * s1
        zim[i] = zr * s1 + zi * c0
    return total


@numba.njit(cache=True, nogil=True)
def _summarize(
    mass: npt.NDArray[np.float64],
    zre: npt.NDArray[np.float64],
    zim: npt.NDArray[np.float64],
    periods: npt.NDArray[np.int64],
    lo: int,
    hi: int,
    ratio: float,
    out: npt.NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    """Strongest tempo in ``lo:hi`` and the stats of its cluster (periods within ``ratio``).

    ``out`` = [index, cluster mass, mean period, phase vector re, im].
    """
    best = lo
    for i in range(lo, hi):
        if mass[i] > mass[best]:
            best = i
    pc = periods[best]
    m = 0.0
    pm = 0.0
    zr = 0.0
    zi = 0.0
    for i in range(periods.shape[0]):
        p = periods[i]
        if p * ratio >= pc and p <= pc * ratio:
            m += mass[i]
            pm += mass[i] * p
            zr += zre[i]
            zi += zim[i]
    out[0] = best
    out[1] = m
    out[2] = pm / m if m > 0.0 else float(pc)
    out[3] = zr
    out[4] = zi


@numba.njit(cache=True, nogil=True)
def _seed_posterior(
    alpha: npt.NDArray[np.float64],
    periods: npt.NDArray[np.int64],
    offsets: npt.NDArray[np.int64],
    clock: int,
    tempo_weight: npt.NDArray[np.float64],
    center_period: float,
    tempo_sigma: float,
    since_beat: float,
    phase_sigma: float,
    restart: float,
    n_active: int,
) -> None:  # pragma: no cover - compiled
    """Set the posterior to a prior or to a bump at a tempo and phase.

    Tempo weights are ``tempo_weight`` times, when ``center_period > 0``, a log-normal bump of
    width ``tempo_sigma`` around it. With ``phase_sigma > 0`` the phase is a bump (width
    ``phase_sigma`` of a beat) at a beat ``since_beat`` frames before the clock, else uniform.
    """
    total = 0.0
    for i in range(periods.shape[0]):
        p = periods[i]
        w = tempo_weight[i]
        if w > 0.0 and center_period > 0.0:
            r = math.log(p / center_period) / tempo_sigma
            w *= math.exp(-0.5 * r * r)
        base = offsets[i]
        s0 = clock % p
        for pos in range(p):
            v = w / p
            if phase_sigma > 0.0 and w > 0.0:
                d = (pos - since_beat) % p
                d = min(d, p - d) / max(phase_sigma * p, 1.0)
                v = w * math.exp(-0.5 * d * d)
            alpha[base + (s0 - pos) % p] = v
            total += v
    inv = (1.0 - restart) / total if total > 0.0 else 0.0
    floor = restart / max(n_active, 1)
    for i in range(periods.shape[0]):
        if tempo_weight[i] <= 0.0:
            for k in range(periods[i]):
                alpha[offsets[i] + k] = 0.0
            continue
        for k in range(periods[i]):
            alpha[offsets[i] + k] = alpha[offsets[i] + k] * inv + floor


@numba.njit(cache=True, nogil=True)
def _find_peak(
    hist: npt.NDArray[np.float64],
    newest: int,
    center: float,
    half_width: float,
    out: npt.NDArray[np.float64],
) -> bool:  # pragma: no cover - compiled
    """Best local maximum of the activation history near ``center`` (absolute frames).

    ``hist`` is a ring indexed by ``frame % len``; frames up to ``newest`` are valid. The peak
    score favours the centre mildly. ``out`` = [sub-frame position, peak value].
    """
    depth = hist.shape[0]
    lo = max(math.ceil(center - half_width), newest - depth + 2, 1)
    hi = min(math.floor(center + half_width), newest - 1)
    best = -1
    best_score = -1.0
    for k in range(lo, hi + 1):
        v = hist[k % depth]
        if v <= 0.0 or v < hist[(k - 1) % depth] or v < hist[(k + 1) % depth]:
            continue
        e = (k - center) / half_width
        score = v * (1.0 - 0.5 * e * e)
        if score > best_score:
            best_score = score
            best = k
    if best < 0:
        return False
    y0 = hist[(best - 1) % depth]
    y1 = hist[best % depth]
    y2 = hist[(best + 1) % depth]
    den = y0 - 2.0 * y1 + y2
    delta = 0.5 * (y0 - y2) / den if den < 0.0 else 0.0
    delta = min(max(delta, -0.5), 0.5)
    out[0] = best + delta
    out[1] = y1
    return True


@numba.njit(cache=True, nogil=True)
def _fit_grid(
    hist: npt.NDArray[np.float64],
    newest: int,
    nxt: float,
    period: float,
    count: int,
    thresh: float,
    js: npt.NDArray[np.float64],
    pos: npt.NDArray[np.float64],
    peak: npt.NDArray[np.float64],
    scratch: npt.NDArray[np.float64],
    out: npt.NDArray[np.float64],
) -> int:  # pragma: no cover - compiled
    """Least-squares beat grid through the activation peaks behind a seeded grid.

    The peaks nearest ``nxt - j * period`` for ``j = 1 .. count`` (sub-frame positions, at
    least ``thresh`` high, in windows that have closed) are fitted by ``pos = next - j *
    fitted_period``: a Theil-Sen line first, then least squares on the peaks within 2.5 % of
    a beat (at least one frame) of it. ``js``, ``pos`` (length ``count``), ``peak`` (2) and
    ``scratch`` (``count * (count - 1) / 2``) are preallocated work space. ``out`` = [fitted
    period, fitted next beat]. Returns how many peaks the fit used; 0 when fewer than
    four peaks support a stable fit (``out`` is then meaningless: three points cannot expose
    a stray peak).
    """
    depth = hist.shape[0]
    half = 0.12 * period
    m = 0
    for j in range(1, count + 1):
        c = nxt - j * period
        if c + half > newest - 1:
            continue  # this beat's window has not closed yet
        if c - half < newest - depth + 2:
            break  # older than the history
        if _find_peak(hist, newest, c, half, peak) and peak[1] >= thresh:
            js[m] = j
            pos[m] = peak[0]
            m += 1
    if m < 4:
        return 0
    # a robust line first (Theil-Sen: the median of the pairwise slopes, then the median
    # intercept), so that one stray peak cannot tilt it; then least squares on its inliers
    q = 0
    for a in range(m):
        for b in range(a + 1, m):
            scratch[q] = (pos[b] - pos[a]) / (js[b] - js[a])
            q += 1
    slope = _median_inplace(scratch, q)
    for i in range(m):
        scratch[i] = pos[i] - slope * js[i]
    icpt = _median_inplace(scratch, m)
    tol = max(1.0, 0.025 * period)
    kept = 0
    for i in range(m):
        if abs(pos[i] - (icpt + slope * js[i])) <= tol:
            js[kept] = js[i]
            pos[kept] = pos[i]
            kept += 1
    if kept < 4:
        return 0
    mj = 0.0
    mp = 0.0
    for i in range(kept):
        mj += js[i]
        mp += pos[i]
    mj /= kept
    mp /= kept
    sjj = 0.0
    sjp = 0.0
    for i in range(kept):
        sjj += (js[i] - mj) ** 2
        sjp += (js[i] - mj) * (pos[i] - mp)
    slope = sjp / sjj  # frames per beat index: minus the period
    out[0] = -slope
    out[1] = mp - slope * mj  # the grid at j = 0: the next beat
    return kept


@numba.njit(cache=True, nogil=True)
def _median_inplace(a: npt.NDArray[np.float64], n: int) -> float:  # pragma: no cover - compiled
    """Median of ``a[:n]`` (n >= 1), sorting that prefix in place (insertion sort: n is small)."""
    for i in range(1, n):
        v = a[i]
        k = i - 1
        while k >= 0 and a[k] > v:
            a[k + 1] = a[k]
            k -= 1
        a[k + 1] = v
    h = n // 2
    return a[h] if n % 2 else 0.5 * (a[h - 1] + a[h])


@numba.njit(cache=True, nogil=True)
def _window_max(
    hist: npt.NDArray[np.float64], newest: int, center: float, half_width: float
) -> float:  # pragma: no cover - compiled
    """Largest value of the history ring within ``center ± half_width`` (frames up to newest)."""
    depth = hist.shape[0]
    lo = max(math.ceil(center - half_width), newest - depth + 1, 0)
    hi = min(math.floor(center + half_width), newest)
    m = 0.0
    for k in range(lo, hi + 1):
        if hist[k % depth] > m:
            m = hist[k % depth]
    return m


@numba.njit(cache=True, nogil=True)
def _grid_score(
    hist: npt.NDArray[np.float64],
    newest: int,
    last: float,
    period: float,
    count: int,
    tol: float,
) -> float:  # pragma: no cover - compiled
    """Evidence for a beat grid: summed activation peaks at ``last``, ``last - period``, ..."""
    acc = 0.0
    for j in range(count):
        acc += _window_max(hist, newest, last - j * period, tol)
    return acc


@numba.njit(cache=True, nogil=True)
def _bar_step(
    probs: npt.NDArray[np.float64],
    offs: npt.NDArray[np.int64],
    lens: npt.NDArray[np.int64],
    lik_first: float,
    lik_other: float,
    switch_prob: float,
    observe: bool,
    scratch: npt.NDArray[np.float64],
    leak: float,
    obs_pos: int,
) -> None:  # pragma: no cover - compiled
    """Advance the bar filter by one beat and weigh it with evidence: likelihood ``lik_first``
    for bar position ``obs_pos`` (0: "this beat starts a bar"; 1: "the beat before started
    one"), ``lik_other`` for the other positions; then mix ``leak`` of a uniform distribution
    in (the filter's forgetting)."""
    ng = lens.shape[0]
    total = 0.0
    for g in range(ng):
        m = lens[g]
        for p in range(m):
            scratch[offs[g] + (p + 1) % m] = probs[offs[g] + p]
    if ng > 1 and switch_prob > 0.0:
        # bar starts may change meter
        starts = 0.0
        for g in range(ng):
            starts += scratch[offs[g]]
        for g in range(ng):
            s = scratch[offs[g]]
            scratch[offs[g]] = s * (1.0 - switch_prob) + (starts - s) * switch_prob / (ng - 1)
    for g in range(ng):
        for p in range(lens[g]):
            v = scratch[offs[g] + p]
            if observe:
                v *= lik_first if p == obs_pos % lens[g] else lik_other
            probs[offs[g] + p] = v
            total += v
    n = probs.shape[0]
    for s in range(n):
        probs[s] = (1.0 - leak) * probs[s] / total + leak / n


@numba.njit(cache=True, nogil=True)
def _bar_predict(
    probs: npt.NDArray[np.float64],
    offs: npt.NDArray[np.int64],
    lens: npt.NDArray[np.int64],
    shift: int,
    out: npt.NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    """Most likely (meter index, position) ``shift`` beats after the filter's beat.

    ``out`` = [meter index, position, probability of that position within the meter,
    meter probability].
    """
    ng = lens.shape[0]
    best_g = 0
    best_m = -1.0
    for g in range(ng):
        m = 0.0
        for p in range(lens[g]):
            m += probs[offs[g] + p]
        if m > best_m:
            best_m = m
            best_g = g
    m = lens[best_g]
    best_p = 0
    best_v = -1.0
    for p in range(m):
        v = probs[offs[best_g] + p]
        if v > best_v:
            best_v = v
            best_p = p
    out[0] = best_g
    out[1] = (best_p + shift) % m
    out[2] = best_v / best_m if best_m > 0.0 else 0.0
    out[3] = best_m


# ---------------------------------------------------------------------------------------------
# the stage

_SUM = 5  # length of a _summarize output
_FAMILY = 1.25  # a tempo within this ratio of the tracked one is the same "family" (no hysteresis)
_CLUSTER = 1.05  # tempi within this ratio are pooled for mean period and phase
_SURPRISE = 0.08  # beat error, as a fraction of the period, that counts as a surprise
_SURPRISE_SEARCH = 0.4  # search half-width (fraction of the period) for the beat after one
_DISAGREE_PHASE = 0.15  # filter/grid disagreement in phase (fraction of a beat) ...
_DISAGREE_TEMPO = 0.05  # ... or in tempo (ratio) that counts toward a re-seed
_AGREE_DECAY = 0.7  # per-beat memory of the activation-agreement score
_MAX_OCTAVE_SHIFT = 2  # double()/halve() range: x1/4 .. x4
_BREAK_BEATS = 1.5  # no activation peak for this many beats (or _BREAK_S untracked) is a break
_BREAK_S = 1.5
_STRENGTH_DECAY = 0.9  # per-beat memory of the beat/half-beat activation strengths
_STRENGTH_BEATS = 16  # beats of those statistics needed before they may change the octave
_WEAK_CHECKS = 4  # consecutive beats the weak-beat pattern must hold
_WEAK = 0.5  # every other beat this much weaker than the rest: the grid runs at double tempo
_SEED_HOLD_S = 1.0  # the filter must stay confident this long (and a beat) before the grid starts
_DOWNBEAT_GATE = 0.2  # the bar filter listens only while recent downbeat activation exceeds this
_DOWNBEAT_HALF_LIFE_S = 4.0  # decay of that recent maximum
_DB_MEAN_RATE = 0.125  # per-beat rate of the running mean of the downbeat activation at beats
_DB_CONTRAST = 1.5  # gain of (activation - that mean) in the bar filter's evidence
_BAR_LEAK = 1e-3  # per-beat uniform mix of the bar filter (its forgetting)
_FIT_BEATS = 8  # a (re-)seed refines tempo and phase by a fit through this many past peaks ...
_FIT_TEMPO = 0.04  # ... accepted when it moves the filter's tempo by at most this ratio
_FIT_AFTER_SEED = 4  # and refitted after each of the new grid's first measured beats


class BeatTracker:
    """Causal tempo, phase and bar tracker that predicts beats (see the module docstring).

    Parameters
    ----------
    config : TrackerConfig
        Tracker settings.
    hop_size : int
        Samples between activation frames at the analysis rate.

    Attributes
    ----------
    bpm : float
        Current output tempo (0 while not tracking).
    phase : float
        Position within the beat at the end of the last frame, in [0, 1) (0 = on the beat).
    bar_phase : float
        Position within the bar, in [0, 1).
    beat_in_bar : int
        Position in the bar of the current beat (1 = downbeat; 0 while not tracking).
    beats_per_bar : int
        Current meter.
    confidence : float
        In [0, 1]: posterior concentration times recent agreement with the activations.
    locked : bool
        Confidence stayed above ``lock_confidence`` for ``lock_beats`` beats.
    tracking : bool
        A beat grid is running (beats are being issued).
    frozen : bool
        Tempo pinned by :meth:`freeze`.
    octave_factor : float
        Output tempo multiplier set by :meth:`double` / :meth:`halve`.
    """

    name: ClassVar[str] = "beat_tracker"

    def __init__(
        self,
        config: TrackerConfig | None = None,
        *,
        hop_size: int = 441,
        bar_evidence: BarEvidence | None = None,
    ) -> None:
        self.config = config or TrackerConfig()
        self._bar_ev = bar_evidence
        self._bar_prev_t: float | None = None
        self._bar_shift = 0.0
        self.spec = StageSpec(
            name=self.name,
            input_kind="activation",
            frame_size=1,
            hop_size=hop_size,
            latency_samples=0,
            outputs=("beat", "tempo"),
        )
        self._pending: deque[tuple[str, tuple[float, ...]]] = deque(maxlen=64)
        # bounded queues, created once and only cleared afterwards
        self._taps: deque[float] = deque(maxlen=8)
        self._queue: deque[tuple[float, int]] = deque(maxlen=16)  # passed beats to measure
        self._db_queue: deque[tuple[float, int]] = deque(maxlen=16)  # issued beats, bar filter
        self._period_hist: deque[float] = deque(maxlen=5)
        # metrical strength per beat parity: present-peak height, present rate; half-beat height
        self._strength = np.zeros(5, dtype=np.float64)
        self._h_count = 0
        self._weak_count = 0
        self._prepared = False
        self._reset_snapshot()

    # ------------------------------------------------------------------ lifecycle
    def prepare(self, ctx: StreamContext) -> None:
        """Build the state space for the context's frame rate, allocate, and warm up numba.

        Raises
        ------
        StageError
            When the frame rate is too low for the tempo range (fewer than 4 frames per beat).
        """
        c = self.config
        if ctx.hop_size != self.spec.hop_size:
            raise StageError(
                f"stage {self.name!r} was built for hop {self.spec.hop_size}, "
                f"the stream uses {ctx.hop_size}"
            )
        fps = ctx.frame_rate_hz
        self._fps = fps
        self._rate = float(ctx.sample_rate_hz)
        self._db_decay = 0.5 ** (1.0 / (_DOWNBEAT_HALF_LIFE_S * fps))
        p_min = math.floor(60.0 * fps / c.max_bpm)
        p_max = math.ceil(60.0 * fps / c.min_bpm)
        if p_min < 4:
            raise StageError(
                f"stage {self.name!r}: {fps:.1f} frames/s gives fewer than 4 frames per beat at "
                f"{c.max_bpm} BPM; lower tracker.max_bpm or the hop size"
            )
        periods = np.arange(p_min, p_max + 1, dtype=np.int64)
        if c.num_tempi and c.num_tempi < periods.shape[0]:
            # log-spaced, rounded to whole frames (duplicates at fast tempi removed)
            grid = np.exp(np.linspace(math.log(p_min), math.log(p_max), c.num_tempi))
            periods = np.unique(np.round(grid).astype(np.int64))
        nt = periods.shape[0]
        self._periods = periods
        self._offsets = np.zeros(nt, dtype=np.int64)
        self._offsets[1:] = np.cumsum(periods)[:-1]
        n_states = int(periods.sum())
        self._alpha = np.zeros(n_states, dtype=np.float64)
        slot = np.arange(n_states) - np.repeat(self._offsets, periods)
        ang = 2.0 * np.pi * slot / np.repeat(periods, periods)
        self._cos = np.cos(ang)
        self._sin = np.sin(ang)
        # beat kernel: raised cosine of half-width h around position 0
        h = max(1, round(c.beat_width_s * fps))
        if 2 * h + 1 > p_min:
            raise StageError(
                f"stage {self.name!r}: tracker.beat_width_s = {c.beat_width_s} is too wide for "
                f"{c.max_bpm} BPM at {fps:.1f} frames/s"
            )
        d = np.arange(-h, h + 1)
        self._k_weight = 0.5 * (1.0 + np.cos(np.pi * d / (h + 1)))
        self._k_share = c.absence_weight * self._k_weight / self._k_weight.sum()
        self._k_factor = np.zeros_like(self._k_weight)
        # tempo prior: per second, as a factor per beat of each tempo
        bpm = 60.0 * fps / periods
        below = np.log2(np.maximum(c.prior_lo_bpm / bpm, 1.0))
        above = np.log2(np.maximum(bpm / c.prior_hi_bpm, 1.0))
        dist = (below + above) / c.prior_width_octaves
        rate_per_s = -0.5 * c.prior_strength * dist**2
        self._prior_beat = np.exp(rate_per_s * periods / fps)
        self._prior_static = np.exp(-0.5 * dist**2)
        self._trans = np.zeros((nt, nt), dtype=np.float64)
        self._band_lo = np.zeros(nt, dtype=np.int64)
        self._band_hi = np.zeros(nt, dtype=np.int64)
        self._active = np.ones(nt, dtype=bool)
        self._gain = np.zeros(nt, dtype=np.float64)
        self._tempo_weight = np.zeros(nt, dtype=np.float64)
        self._scratch = np.zeros(nt, dtype=np.float64)
        self._mass = np.zeros(nt, dtype=np.float64)
        self._zre = np.zeros(nt, dtype=np.float64)
        self._zim = np.zeros(nt, dtype=np.float64)
        self._sum = np.zeros(_SUM, dtype=np.float64)
        self._sum2 = np.zeros(_SUM, dtype=np.float64)
        depth = 1 << math.ceil(math.log2(4 * p_max + 64))
        self._hist_a = np.zeros(depth, dtype=np.float64)
        self._hist_d = np.zeros(depth, dtype=np.float64)
        self._peak = np.zeros(2, dtype=np.float64)
        self._fit_j = np.zeros(_FIT_BEATS, dtype=np.float64)
        self._fit_pos = np.zeros(_FIT_BEATS, dtype=np.float64)
        self._fit = np.zeros(2, dtype=np.float64)
        self._fit_scratch = np.zeros(_FIT_BEATS * (_FIT_BEATS - 1) // 2, dtype=np.float64)
        meters = np.asarray(c.beats_per_bar, dtype=np.int64)
        self._bar_lens = meters
        self._bar_offs = np.zeros(meters.shape[0], dtype=np.int64)
        self._bar_offs[1:] = np.cumsum(meters)[:-1]
        self._bar = np.full(int(meters.sum()), 1.0 / int(meters.sum()), dtype=np.float64)
        self._bar_scratch = np.zeros_like(self._bar)
        self._bar_out = np.zeros(4, dtype=np.float64)
        self._p_lo_user = float(p_min)
        self._p_hi_user = float(p_max)
        self._frozen = False
        self._clock = 0
        self._p_excl_below = 0.0
        self._build_transitions()
        self._prepared = True
        # warm up (compiles or loads every kernel)
        self._seed_prior()
        self._step_filter(2.0)
        _summarize(self._mass, self._zre, self._zim, periods, 0, nt, _CLUSTER, self._sum)
        _find_peak(self._hist_a, 3, 2.0, 1.5, self._peak)
        _window_max(self._hist_d, 3, 2.0, 1.5)
        _grid_score(self._hist_a, 3, 2.0, 1.0, 1, 1.0)
        _fit_grid(
            self._hist_a, 3, 2.0, 1.0, 1, 0.5, self._fit_j, self._fit_pos, self._peak,
            self._fit_scratch, self._fit,
        )  # fmt: skip
        _bar_step(
            self._bar, self._bar_offs, self._bar_lens, 0.6, 0.4, 0.0, True, self._bar_scratch,
            1e-3, 0,
        )  # fmt: skip
        if self._bar_ev is not None:
            self._bar_ev.prepare(depth)
        # tracker frame t holds the activation of feature frame t + 1 - (input latency in frames)
        self._bar_shift = c.input_latency_s * fps - 1.0
        _bar_predict(self._bar, self._bar_offs, self._bar_lens, 1, self._bar_out)
        self._pending.clear()
        self.reset()

    def reset(self) -> None:
        """Forget the music (and any user settings): back to the state right after ``prepare``."""
        self._require_prepared()
        c = self.config
        self._output_latency_s = c.output_latency_s
        # a beat at frame position t is issued in frame n once t < n + edge (+ the latencies)
        self._issue_edge = 0.5 if c.issue_frame == "nearest" else 1.0
        self._issue_slack_s = (1.0 - self._issue_edge) / self._fps + 1e-9
        self._p_lo_user = float(self._periods[0])
        self._p_hi_user = float(self._periods[-1])
        self._frozen = False
        self._p_excl_below = 0.0
        self._build_transitions()
        self._hist_a.fill(0.0)
        self._hist_d.fill(0.0)
        if self._bar_ev is not None:
            self._bar_ev.reset()
        self._db_env = 0.0
        self._db_mean = -1.0  # running mean of the downbeat activation at issued beats
        self._last_active = -(10**9)
        self._n = -1  # frame counter (activation frames)
        self._clock = 0
        self._user_octave = False
        self._octave_exp = 0
        self._parity = 0
        self._nudge_fr = 0.0
        self._taps.clear()
        self._beat_index = 0
        self._last_tempo_n = -(10**9)
        self._last_tempo: tuple[float, bool, int] = (0.0, False, 0)
        self._t_act_s = 0.0
        self._lose_track()
        self._reset_snapshot()

    def flush(self) -> tuple[Event, ...]:
        """Nothing is pending: every beat was issued ahead of time (or skipped)."""
        return EMPTY

    # ------------------------------------------------------------------ commands
    def tap(self, time_s: float | None = None) -> None:
        """Tap tempo: a beat at stream time ``time_s`` (None: the next frame's time).

        Two or more taps less than ``tap_timeout_s`` apart set tempo and phase and fix the octave
        to the tapped one. Applied before the next frame; safe to call from any thread.
        """
        self._pending.append(("tap", () if time_s is None else (float(time_s),)))

    def nudge(self, ms: float) -> None:
        """Shift the output beat grid by ``ms`` milliseconds (positive = later), cumulatively.

        The offset persists (it is a trim on top of what the audio says, which the tracker would
        otherwise re-lock to). Applied before the next frame; safe to call from any thread.
        """
        self._pending.append(("nudge", (float(ms),)))

    def resync_downbeat(self) -> None:
        """Make the beat nearest to now beat 1 of the bar. Applied before the next frame."""
        self._pending.append(("resync", ()))

    def double(self) -> None:
        """Double the output tempo (adds beats half-way) and stop automatic octave switching."""
        self._pending.append(("double", ()))

    def halve(self) -> None:
        """Halve the output tempo (keeps beats 1 and 3) and stop automatic octave switching."""
        self._pending.append(("halve", ()))

    def set_bpm_range(self, lo: float, hi: float) -> None:
        """Restrict the tempo search to ``lo..hi`` BPM (within the configured range).

        Raises
        ------
        ConfigError
            Immediately, for a range outside ``min_bpm..max_bpm`` or narrower than 10 %.
        """
        c = self.config
        if not (c.min_bpm - 1e-9 <= lo and hi <= c.max_bpm + 1e-9 and hi >= lo * 1.1):
            raise ConfigError(
                f"bpm range {lo}..{hi} is invalid: need {c.min_bpm} <= lo, hi <= {c.max_bpm} "
                f"and hi >= 1.1 x lo"
            )
        self._pending.append(("bpm_range", (float(lo), float(hi))))

    def freeze(self, on: bool = True) -> None:
        """Pin the tempo (the phase still follows the music) or, with False, follow again."""
        self._pending.append(("freeze", (1.0 if on else 0.0,)))

    def set_output_latency(self, ms: float) -> None:
        """Issue beats ``ms`` milliseconds ahead of them (0..500)."""
        self._pending.append(("output_latency", (float(ms),)))

    def apply_command(self, command: Command, sample_index: int) -> bool:
        """Apply a :class:`~onbeat.realtime.commands.Command` now, before the frame that ends at
        ``sample_index``; returns whether it took effect.

        Real-time safety: analysis thread only; no allocation beyond small Python objects.
        """
        self._require_prepared()
        t_act = sample_index / self._rate - self.config.input_latency_s
        if command.kind == "bpm_range":
            lo, hi = command.args
            c = self.config
            if not (c.min_bpm - 1e-9 <= lo and hi <= c.max_bpm + 1e-9 and hi >= lo * 1.1):
                return False
        return self._apply(command.kind, command.args, t_act)

    def _apply(self, kind: str, args: tuple[float, ...], t_act_s: float) -> bool:
        """Apply one command with the next frame's activation time ``t_act_s``."""
        n_next = self._n + 1  # the frame about to be processed
        if kind == "tap":
            # a tap marks a beat at stream time args[0] (default: now, the end of the frame)
            t = args[0] if args else t_act_s + self.config.input_latency_s
            return self._apply_tap(n_next + (t - t_act_s) * self._fps, n_next)
        if kind == "nudge":
            self._nudge_fr += args[0] * 1e-3 * self._fps
            return True
        if kind == "resync":
            return self._apply_resync(n_next)
        if kind in ("double", "halve"):
            return self._apply_octave(1 if kind == "double" else -1)
        if kind == "bpm_range":
            return self._apply_bpm_range(args[0], args[1])
        if kind == "freeze":
            self._frozen = bool(args[0])
            self._build_transitions()
            return True
        if kind == "output_latency":
            if not 0.0 <= args[0] <= 500.0:
                return False
            self._output_latency_s = args[0] * 1e-3
            return True
        return False

    # ------------------------------------------------------------------ the frame
    def process(
        self,
        frame: npt.NDArray[np.floating],
        sample_index: int,
        *,
        silent: bool = False,
        features: npt.NDArray[np.float32] | None = None,
    ) -> tuple[Event, ...]:
        """Update with one ``[beat, downbeat]`` activation frame ending at ``sample_index``.

        ``silent`` (the engine's level gate) marks a frame without usable signal: it carries no
        evidence and the grid flywheels. ``features`` is the engine's feature frame the
        activation came from, kept for the bar model when the tracker has one. Returns the
        beats (and tempo updates) issued now.

        Real-time safety: numba kernels on preallocated state plus scalar bookkeeping; allocates
        only the events it returns (rare octave decisions rebuild the small transition table).
        """
        c = self.config
        t_act_s = sample_index / self._rate - c.input_latency_s
        while self._pending:
            kind, args = self._pending.popleft()
            self._apply(kind, args, t_act_s)
        n = self._n + 1
        self._n = n
        self._t_act_s = t_act_s
        if self._bar_ev is not None and features is not None:
            self._bar_ev.push(n, features)
        a = float(frame[0])
        d = float(frame[1]) if frame.shape[0] > 1 else 0.0
        a = 0.0 if silent or not a > 0.0 else min(a, 1.0)  # also maps NaN to 0
        d = 0.0 if silent or not d > 0.0 else min(d, 1.0)
        a = max(a, d)  # a downbeat is a beat, whether or not the network also says so
        depth = self._hist_a.shape[0]
        self._hist_a[n % depth] = a
        self._hist_d[n % depth] = d
        self._db_env = max(d, self._db_env * self._db_decay)

        # 1. tempo/phase filter; a break (no activation for a while) carries no evidence either
        if a >= self._hit_threshold():
            self._last_active = n
        gap = _BREAK_BEATS * self._period_fr if self._seeded else _BREAK_S * self._fps
        if silent or n - self._last_active > gap:
            rho = 1.0
        else:
            l_non = max((1.0 - a) / (c.observation_lambda - 1.0), 1e-4)
            rho = c.miss_prob + (1.0 - c.miss_prob) * a / l_non
        self._step_filter(rho)
        fam_lo, fam_hi = self._family
        if fam_hi <= fam_lo:
            fam_lo, fam_hi = 0, self._periods.shape[0]
        s = self._sum
        _summarize(self._mass, self._zre, self._zim, self._periods, fam_lo, fam_hi, _CLUSTER, s)
        m = s[1]
        r = math.hypot(s[3], s[4]) / m if m > 0.0 else 0.0
        self._c_filter = min(1.0, float(m * r))

        beat: BeatEvent | None = None
        if not self._seeded:
            # start the grid once the filter stayed confident for a beat (one peak is not enough)
            if silent or self._c_filter < c.seed_confidence:
                self._confident_since = n
            elif n - self._confident_since >= max(s[2], _SEED_HOLD_S * self._fps):
                self._seed_from_filter(n, global_search=True)
        if self._seeded:
            # 2. internal grid: beats passing now, then their measurement once their window closed
            while self._next_fr <= n:
                self._queue.append((self._next_fr, self._k_next))
                self._next_fr += self._period_fr
                self._k_next += 1
            while self._queue and n >= self._queue[0][0] + self._search_fr() + 1.0:
                p, k = self._queue.popleft()
                self._measure(p, k, n)
                if not self._seeded:
                    break
        if self._seeded:
            # 3. downbeat evidence of issued beats, then issue the next beat if due
            while self._db_queue and n >= self._db_queue[0][0] + self._db_width_fr() + 1.0:
                t, steps = self._db_queue.popleft()
                self._bar_update(t, steps, n, silent)
            beat = self._maybe_emit(n, sample_index)
        self._update_snapshot(n)
        tempo = self._maybe_tempo_event(n, sample_index)
        if beat is None:
            return EMPTY if tempo is None else (tempo,)
        return (beat,) if tempo is None else (beat, tempo)

    # ------------------------------------------------------------------ filter helpers
    def _step_filter(self, rho: float) -> None:
        self._clock += 1
        _filter_step(
            self._alpha,
            self._periods,
            self._offsets,
            self._clock,
            self._trans,
            self._band_lo,
            self._band_hi,
            self._gain,
            self._k_weight,
            self._k_share,
            self._k_factor,
            rho,
            self.config.restart_prob,
            self._n_active,
            self._cos,
            self._sin,
            self._scratch,
            self._mass,
            self._zre,
            self._zim,
        )

    def _build_transitions(self) -> None:
        """Tempo transitions, boundary gains and active mask for the user range and freeze."""
        c = self.config
        per = self._periods.astype(np.float64)
        self._active[:] = (per >= max(self._p_lo_user, self._p_excl_below) - 1e-9) & (
            per <= self._p_hi_user + 1e-9
        )
        self._gain[:] = np.where(self._active, self._prior_beat, 0.0)
        self._tempo_weight[:] = np.where(self._active, self._prior_static, 0.0)
        self._n_active = int(self._periods[self._active].sum())
        nt = per.shape[0]
        t = self._trans
        if self._frozen:
            t.fill(0.0)
            np.fill_diagonal(t, 1.0)
            self._band_lo[:] = np.arange(nt)
            self._band_hi[:] = np.arange(nt) + 1
        else:
            lr = np.abs(np.log(per[None, :] / per[:, None]))
            np.exp(-c.transition_lambda * lr, out=t)
            t[t < 1e-12] = 0.0
            t[:, ~self._active] = 0.0
            row = t.sum(axis=1, keepdims=True)
            np.divide(t, row, out=t, where=row > 0)
            nz = t > 0
            any_nz = nz.any(axis=0)
            self._band_lo[:] = np.where(any_nz, nz.argmax(axis=0), 0)
            self._band_hi[:] = np.where(any_nz, nt - nz[::-1].argmax(axis=0), 0)
        idx = np.flatnonzero(self._active)
        self._act_lo = int(idx[0])
        self._act_hi = int(idx[-1]) + 1

    def _seed_prior(self) -> None:
        _seed_posterior(
            self._alpha,
            self._periods,
            self._offsets,
            self._clock,
            self._tempo_weight,
            0.0,
            1.0,
            0.0,
            0.0,
            self.config.restart_prob,
            self._n_active,
        )

    def _family_of(self, period_fr: float) -> tuple[int, int]:
        """Index range of the tempi within the octave family of ``period_fr``."""
        lo = int(np.searchsorted(self._periods, period_fr / _FAMILY, side="left"))
        hi = int(np.searchsorted(self._periods, period_fr * _FAMILY, side="right"))
        return max(lo, self._act_lo), min(hi, self._act_hi)

    def _filter_estimate(self, n: int, s: npt.NDArray[np.float64]) -> tuple[float, float, float]:
        """(mean period, next beat frame, confidence) of the cluster summarised in ``s``."""
        m = float(s[1])
        per = float(s[2])
        phi = (math.atan2(s[4], s[3]) / (2.0 * math.pi)) % 1.0
        r = math.hypot(s[3], s[4]) / m if m > 0.0 else 0.0
        return per, n + ((1.0 - phi) % 1.0) * per, min(1.0, m * r)

    # ------------------------------------------------------------------ beat grid
    def _lose_track(self) -> None:
        """Stop issuing beats and start acquiring from scratch (keeps user settings)."""
        self._seeded = False
        self._period_fr = 0.0
        self._next_fr = 0.0
        self._k_next = 0
        self._queue.clear()
        self._period_hist.clear()
        self._db_queue.clear()
        self._restart_bar_model()
        self._last_out_fr = -1e18
        self._last_out_step = 1e18
        self._last_bib = 0
        self._misses = 0
        self._fit_left = 0
        self._surprise_prev = 0.0
        self._meas_prev: tuple[float, int] | None = None
        self._agree = 0.0
        self._lock_count = 0
        self._locked = False
        self._ever_locked = False
        self._disagree = 0
        self._octave_count = 0
        self._peak_ref = 0.5
        self._family = (0, 0)
        self._bar_unmeasured = 0
        self._c_filter = 0.0
        self._confident_since = 0
        self._reset_strength()
        if self._prepared:
            if self._p_excl_below > 0.0:
                self._p_excl_below = 0.0
                self._build_transitions()
            self._seed_prior()
            self._bar.fill(1.0 / self._bar.shape[0])

    def _seed_from_filter(self, n: int, *, global_search: bool) -> None:
        """Start (or restart) the grid from the filter's estimate."""
        s = self._sum2
        if global_search:
            lo, hi = self._act_lo, self._act_hi
        else:
            lo, hi = self._family
        _summarize(self._mass, self._zre, self._zim, self._periods, lo, hi, _CLUSTER, s)
        per, nxt, _conf = self._filter_estimate(n, s)
        per, nxt, _fitted = self._refine_seed(n, float(per), float(nxt))
        self._period_fr = per
        self._fit_left = _FIT_AFTER_SEED
        self._reset_strength()
        self._family = self._family_of(per)
        if not self._seeded:
            self._agree = 0.5
            self._seeded = True
            self._k_next = 0
        self._set_next(nxt, n)

    def _refine_seed(self, n: int, per: float, nxt: float) -> tuple[float, float, bool]:
        """The filter's tempo and next beat, refined by a least-squares grid through the
        activation peaks of the last beats (:func:`_fit_grid`).

        The filter's tempo is a posterior mean over a grid of tempo states, so a grid seeded
        from it alone can start up to a few per cent off and take the phase-locked loop seconds
        to correct; the fit measures the period from sub-frame peak positions instead. It is
        used only when at least four peaks agree and it stays within ``_FIT_TEMPO`` of the
        filter (the filter keeps the choice of metrical level). Returns (period, next beat,
        whether the fit was used). A seed made before four beats were heard is refitted after
        each of the grid's first ``_FIT_AFTER_SEED`` measured beats. A frozen tempo is never
        refitted.
        """
        if self._frozen:
            return per, nxt, False
        used = _fit_grid(
            self._hist_a, n, nxt, per, _FIT_BEATS, self._hit_threshold(), self._fit_j,
            self._fit_pos, self._peak, self._fit_scratch, self._fit,
        )  # fmt: skip
        fit_per, fit_next = float(self._fit[0]), float(self._fit[1])
        if used and abs(fit_per / per - 1.0) <= _FIT_TEMPO:
            return self._clamp_period(fit_per), fit_next, True
        return per, nxt, False

    def _set_next(self, nxt: float, n: int) -> None:
        """Move the grid's next beat to ``nxt`` (in the future) and restart its measurements."""
        while nxt <= n:
            nxt += self._period_fr
        self._next_fr = nxt
        self._period_hist.clear()
        self._queue.clear()
        self._meas_prev = None
        self._surprise_prev = 0.0

    def _search_fr(self) -> float:
        """Half-width of the peak search around a predicted beat (wider after a surprise)."""
        w = self.config.search_width
        if self._surprise_prev != 0.0:
            w = max(w, _SURPRISE_SEARCH)
        return max(2.0, w * self._period_fr)

    def _measure(self, p: float, k: int, n: int) -> None:
        """Locate beat ``k`` (predicted at frame ``p``) in the activations; correct the grid."""
        c = self.config
        per = self._period_fr
        # metrical strength: activation at this beat (by parity) and half a beat before it
        tol = max(1.0, 0.1 * per)
        g = _STRENGTH_DECAY
        st = self._strength
        h = _window_max(self._hist_a, n, p, tol)
        present = h >= self._hit_threshold()
        par = k % 2
        if present:  # heights of present peaks only: missing beats say nothing about metre
            st[par] = g * st[par] + (1 - g) * h if st[par] > 0.0 else h
        st[2 + par] = g * st[2 + par] + (1 - g) * float(present)
        st[4] = g * st[4] + (1 - g) * _window_max(self._hist_a, n, p - 0.5 * per, tol)
        self._h_count += 1
        w = self._search_fr()
        hit = _find_peak(self._hist_a, n, p, w, self._peak)
        if hit and self._peak[1] >= self._hit_threshold():
            m_fr = float(self._peak[0])
            e = m_fr - p
            self._misses = 0
            score = math.exp(-0.5 * (e / (0.1 * per)) ** 2)
            self._agree = _AGREE_DECAY * self._agree + (1.0 - _AGREE_DECAY) * score
            ahead = max(1, round((self._next_fr - p) / per))
            surprise = e if abs(e) > _SURPRISE * per else 0.0
            prev = self._meas_prev
            if (
                surprise != 0.0
                and self._surprise_prev * surprise > 0.0
                and prev is not None
                and prev[1] == k - 1
                and 0.75 * per < m_fr - prev[0] < 1.33 * per
                and self._grid_wins(m_fr, m_fr - prev[0], p, per, n)
            ):
                # two surprises of one sign in a row that the recent activations support better
                # than the current grid: a tempo step or a phase jump; re-estimate from them
                if not self._frozen:
                    self._period_fr = self._clamp_period(m_fr - prev[0])
                self._next_fr = m_fr + ahead * self._period_fr
                self._surprise_prev = 0.0
            else:
                # robust gains: a peak far from the prediction (likely not the beat) or weaker
                # than usual moves the grid less
                w = score * min(1.0, float(self._peak[1]) / self._peak_ref)
                gain_t = 0.0 if self._frozen else c.tempo_gain * w
                self._next_fr += c.phase_gain * w * e + ahead * gain_t * e
                self._period_fr = self._clamp_period(per + gain_t * e)
                self._surprise_prev = surprise
            self._meas_prev = (m_fr, k)
            self._peak_ref = 0.8 * self._peak_ref + 0.2 * float(self._peak[1])
        else:
            self._misses += 1
            self._agree *= _AGREE_DECAY
            self._surprise_prev = 0.0
            limit = c.flywheel_bars * max(self.beats_per_bar, 1)
            if self._misses > limit:
                self._lose_track()
                return
        if self._fit_left > 0:
            self._fit_left -= 1
            per_fit, nxt_fit, fitted = self._refine_seed(n, self._period_fr, self._next_fr)
            if fitted:
                self._period_fr = per_fit
                while nxt_fit <= n:
                    nxt_fit += per_fit
                self._next_fr = nxt_fit
        self._period_hist.append(self._period_fr)
        self._supervise(n)
        conf = self._confidence()
        if conf >= c.lock_confidence:
            self._lock_count += 1
            if self._lock_count >= c.lock_beats:
                self._locked = True
                self._ever_locked = True
        else:
            self._lock_count = 0
            if conf < 0.75 * c.lock_confidence:
                self._locked = False

    def _grid_wins(
        self, last: float, period: float, old_last: float, old_period: float, n: int
    ) -> bool:
        """Whether the grid through the last measured beats explains the last three beats better."""
        tol = max(1.0, 0.04 * old_period)
        new = _grid_score(self._hist_a, n, last, period, 3, tol)
        old = _grid_score(self._hist_a, n, old_last, old_period, 3, tol)
        return new > old + 0.25

    def _hit_threshold(self) -> float:
        return max(self.config.hit_threshold, 0.3 * self._peak_ref)

    def _clamp_period(self, per: float) -> float:
        lo = float(self._periods[self._act_lo]) * 0.97
        hi = float(self._periods[self._act_hi - 1]) * 1.03
        return min(max(per, lo), hi)

    def _supervise(self, n: int) -> None:
        """Once per beat: octave policy and filter/grid consistency."""
        c = self.config
        per = self._period_fr
        fam = self._family_of(per)
        if fam[1] <= fam[0]:
            fam = (self._act_lo, self._act_hi)
        self._family = fam
        s = self._sum
        _summarize(self._mass, self._zre, self._zim, self._periods, fam[0], fam[1], _CLUSTER, s)
        g = self._sum2
        _summarize(
            self._mass, self._zre, self._zim, self._periods, self._act_lo, self._act_hi, _CLUSTER, g
        )
        recent = _window_max(self._hist_a, n, n - 0.5 * per, 0.5 * per)
        evidence = recent >= self._hit_threshold()
        if evidence and not (self._user_octave or self._frozen) and self._metrical_octave(n):
            return
        if not (self._user_octave or self._frozen) and not fam[0] <= int(g[0]) < fam[1]:
            if not evidence:
                pass  # a break says nothing about the octave
            elif g[1] > c.octave_margin * s[1]:
                self._octave_count += 1
            else:
                self._octave_count = 0
            # hysteresis protects a lock; a grid that never locked follows the filter at once
            if self._octave_count >= (c.octave_hold_beats if self._ever_locked else 1):
                self._octave_count = 0
                self._disagree = 0
                self._seed_from_filter(n, global_search=True)
                self._remap_bar(round(math.log2(per / self._period_fr)))
                return
        else:
            self._octave_count = 0
        f_per, f_next, f_conf = self._filter_estimate(n, s)
        if f_conf < c.seed_confidence or not evidence:
            # in a break the filter has nothing new to say: let the grid flywheel
            self._disagree = 0
            return
        dphase = ((self._next_fr - f_next) / per + 0.5) % 1.0 - 0.5
        dtempo = abs(math.log(per / f_per))
        if abs(dphase) > _DISAGREE_PHASE or (dtempo > _DISAGREE_TEMPO and not self._frozen):
            self._disagree += 1
        else:
            self._disagree = 0
        if self._disagree >= 2:
            self._disagree = 0
            if self._frozen:
                self._set_next(self._next_fr - dphase * per, n)
            else:
                self._seed_from_filter(n, global_search=False)

    def _metrical_octave(self, n: int) -> bool:
        """Octave policy from metrical strength: if every other beat of the grid is much weaker,
        the grid runs at double the tempo of the music. Halve it and keep the faster tempi out of
        the filter until the half-beats grow as strong as the beats. Returns True if it acted."""
        if self._h_count < _STRENGTH_BEATS:
            return False
        per = self._period_fr
        st = self._strength
        strong = 0 if st[0] * st[2] >= st[1] * st[3] else 1
        hi, lo = st[strong], st[1 - strong]
        # every other beat much weaker, or mostly absent while the others are there
        weak = (hi >= self._hit_threshold() and lo < _WEAK * hi) or (
            st[2 + strong] > 0.75 and st[3 - strong] < 0.25
        )
        self._weak_count = self._weak_count + 1 if weak else 0
        if (
            self._weak_count >= _WEAK_CHECKS
            and 2.0 * per <= self._p_hi_user * 1.03
            and not self._p_excl_below
        ):
            nxt = self._next_fr if self._k_next % 2 == strong else self._next_fr + per
            self._p_excl_below = per * _FAMILY
            self._restrict_filter()
            self._period_fr = 2.0 * per
            self._family = self._family_of(2.0 * per)
            self._set_next(nxt, n)
            self._reset_strength()
            self._bar.fill(1.0 / self._bar.shape[0])
            self._bar_unmeasured = 0
            self._db_queue.clear()
            self._last_bib = 0
            return True
        if self._p_excl_below and st[4] >= 0.6 * 0.5 * (st[0] + st[1]):
            # the half-beats became strong: let the filter consider the faster tempi again
            self._p_excl_below = 0.0
            self._build_transitions()
            self._reset_strength()
        return False

    def _reset_strength(self) -> None:
        self._weak_count = 0
        self._strength.fill(0.0)
        self._h_count = 0

    def _confidence(self) -> float:
        return float(self._c_filter * self._agree) if self._seeded else 0.0

    # ------------------------------------------------------------------ output grid
    def _out_grid(self) -> tuple[float, float]:
        """(a beat time of the output grid, output period), in activation frames."""
        e = self._octave_exp
        if e >= 0:
            return self._next_fr + self._nudge_fr, self._period_fr / (1 << e)
        r = self._out_offset_beats()
        return self._next_fr + r * self._period_fr + self._nudge_fr, self._period_fr * (1 << (-e))

    def _maybe_emit(self, n: int, sample_index: int) -> BeatEvent | None:
        fps = self._fps
        ref, step = self._out_grid()
        c = self.config
        # one beat per beat: nothing within half a period (old or new) of the last one issued
        guard = 0.5 * min(step, self._last_out_step)
        lb = max(n + (c.input_latency_s - c.max_late_s) * fps, self._last_out_fr + guard)
        j = math.floor((lb - ref) / step) + 1
        t = ref + j * step
        lead = (c.input_latency_s + self._output_latency_s) * fps
        if t >= n + self._issue_edge + lead:
            return None
        # grid steps since the last issued beat (more than one after a skip or octave change)
        steps = 1 if self._last_out_fr < -1e17 else max(1, round((t - self._last_out_fr) / step))
        self._last_out_fr = t
        self._last_out_step = step
        shift = self._bar_unmeasured + steps
        _bar_predict(self._bar, self._bar_offs, self._bar_lens, shift, self._bar_out)
        meter = int(self._bar_lens[int(self._bar_out[0])])
        if self._bar_out[2] * meter < 1.5:
            # no downbeat evidence yet: count
            bib = (self._last_bib - 1 + steps) % meter + 1 if self._last_bib else 1
        else:
            bib = int(self._bar_out[1]) + 1
        self._last_bib = bib
        self.beats_per_bar = meter
        self._bar_unmeasured += steps
        self._db_queue.append((t - self._nudge_fr, steps))
        time_s = self._t_act_s + (t - n) / fps
        emitted_s = sample_index / self._rate
        idx = self._beat_index
        self._beat_index += 1
        bpm = self._reported_bpm(step)
        return BeatEvent(
            sample_index=round(time_s * self._rate),
            time_s=time_s,
            emitted_s=emitted_s,
            beat_index=idx,
            beat_in_bar=bib,
            bpm=bpm,
            confidence=self._confidence(),
            phase=(1.0 - (time_s - emitted_s) * fps / step) % 1.0,
            is_downbeat=bib == 1,
            locked=self._locked,
            # issued by prediction, in the frame nearest its time or before it
            predicted=emitted_s <= time_s + self._issue_slack_s,
        )

    def _reported_bpm(self, step: float) -> float:
        """Output tempo: the median of the grid's last periods (robust to a single disturbed
        beat), scaled like the output grid ``step``."""
        hist = self._period_hist
        if not hist:
            return 60.0 * self._fps / step
        med = sorted(hist)[len(hist) // 2]
        return 60.0 * self._fps / (step * med / self._period_fr)

    def _db_width_fr(self) -> float:
        return max(1.0, 0.1 * self._out_grid()[1])

    def _bar_update(self, t: float, steps: int, n: int, silent: bool) -> None:
        """Advance the bar filter ``steps`` beats to the issued beat at ``t`` and weigh it with
        the bar evidence: the beat-synchronous bar model's verdict on the beat before ``t``
        (when it ships, see :mod:`onbeat.realtime.bars`), else the downbeat activation at
        ``t``."""
        lik_first = lik_other = 1.0
        obs_pos = 0
        ev = self._bar_ev
        if ev is not None:
            prev = self._bar_prev_t
            self._bar_prev_t = t
            observe = False
            if not silent and prev is not None and steps == 1:
                observe = True
                sh = self._bar_shift
                p = min(1.0, max(0.0, ev.beat(prev - sh, t - sh)))
                lik_first = p + self.config.downbeat_floor
                lik_other = 1.0 - p + self.config.downbeat_floor
                obs_pos = 1
            elif steps != 1:
                ev.restart()  # a skipped beat: the model's beat sequence starts again
        else:
            d = _window_max(self._hist_d, n, t, self._db_width_fr())
            # The evidence is the downbeat activation *relative to the other beats*: a network
            # that rates every beat alike (say 0.6 on each click of a click track) says nothing
            # about where the bar starts, and must not drag every beat towards "1".
            observe = not silent and self._db_env >= _DOWNBEAT_GATE
            if observe:
                m = self._db_mean
                self._db_mean = d if m < 0.0 else m + _DB_MEAN_RATE * (d - m)
                d = min(1.0, max(0.0, 0.5 + _DB_CONTRAST * (d - self._db_mean)))
                lik_first = d + self.config.downbeat_floor
                lik_other = 1.0 - d + self.config.downbeat_floor
        self._bar_unmeasured = max(0, self._bar_unmeasured - steps)
        for k in range(steps):
            _bar_step(
                self._bar,
                self._bar_offs,
                self._bar_lens,
                lik_first,
                lik_other,
                self.config.meter_switch_prob,
                k == steps - 1 and observe,
                self._bar_scratch,
                _BAR_LEAK,
                obs_pos,
            )

    def _restart_bar_model(self) -> None:
        """The issued beats stop being one sequence (lost track, octave change, resync)."""
        self._bar_prev_t = None
        if self._bar_ev is not None:
            self._bar_ev.restart()

    def _remap_bar(self, octave_shift: int) -> None:
        """After an octave change of the output grid, keep downbeats where they were."""
        if octave_shift == 0:
            return
        _bar_predict(self._bar, self._bar_offs, self._bar_lens, self._bar_unmeasured, self._bar_out)
        g = int(self._bar_out[0])
        meter = int(self._bar_lens[g])
        pos = self._last_bib - 1 if self._last_bib else int(self._bar_out[1])
        if octave_shift > 0:
            pos = (pos << octave_shift) % meter
        else:
            pos = (pos >> (-octave_shift)) % meter
        self._set_bar(g, pos)

    def _set_bar(self, g: int, pos: int) -> None:
        """Make the last issued beat position ``pos`` of meter ``g`` (with a little doubt)."""
        self._bar.fill(0.02 / self._bar.shape[0])
        self._bar[self._bar_offs[g] + pos] += 0.98
        self._bar_unmeasured = 0
        self._db_queue.clear()
        self._restart_bar_model()
        self._last_bib = pos + 1

    # ------------------------------------------------------------------ command helpers
    def _apply_tap(self, tap_fr: float, n_next: int) -> bool:
        c = self.config
        taps = self._taps
        if taps and (tap_fr - taps[-1]) > c.tap_timeout_s * self._fps:
            taps.clear()
        if taps and tap_fr - taps[-1] < 0.1 * self._fps:
            return False  # bounce
        taps.append(tap_fr)
        if len(taps) < 2:
            return True
        if self._p_excl_below:
            self._p_excl_below = 0.0
            self._build_transitions()
        intervals = sorted(
            taps[i + 1] - taps[i] for i in range(max(0, len(taps) - 5), len(taps) - 1)
        )
        per = intervals[len(intervals) // 2]
        lo = float(self._periods[self._act_lo])
        hi = float(self._periods[self._act_hi - 1])
        if not lo * 0.97 <= per <= hi * 1.03:
            taps.clear()
            taps.append(tap_fr)
            return False
        since = (n_next - 1) - tap_fr  # frames from the tap to the current clock
        _seed_posterior(
            self._alpha,
            self._periods,
            self._offsets,
            self._clock,
            self._tempo_weight,
            per,
            0.03,
            since,
            0.05,
            c.restart_prob,
            self._n_active,
        )
        if not self._seeded:
            self._seeded = True
            self._agree = 0.5
        self._period_fr = per
        self._family = self._family_of(per)
        self._user_octave = True
        self._octave_exp = 0
        self._disagree = 0
        self._fit_left = 0  # the tapped grid is the user's: no seed refit moves it
        self._set_next(tap_fr + per, n_next - 1)
        return True

    def _apply_resync(self, n_next: int) -> bool:
        if not self._seeded:
            return False
        _bar_predict(self._bar, self._bar_offs, self._bar_lens, 0, self._bar_out)
        g = int(self._bar_out[0])
        meter = int(self._bar_lens[g])
        ref, step = self._out_grid()
        lb = self._last_out_fr + 0.5 * step
        nxt = ref + (math.floor((lb - ref) / step) + 1) * step
        now = n_next + self.config.input_latency_s * self._fps
        if abs(now - self._last_out_fr) <= abs(nxt - now):
            self._set_bar(g, 0)
        else:
            self._set_bar(g, meter - 1)
        return True

    def _apply_octave(self, direction: int) -> bool:
        e = self._octave_exp + direction
        if abs(e) > _MAX_OCTAVE_SHIFT:
            return False
        if self._seeded and e < 0:
            # Halving into a decimated grid: keep the issued beats at even bar positions (1, 3),
            # so downbeats stay downbeats. Old output beats are internal beats k with
            # k = parity (mod old_mult); find the next one not yet issued and its bar position.
            old_mult = 1 << max(0, -self._octave_exp)
            ref, step = self._out_grid()
            k_o = self._k_next + self._out_offset_beats()
            if self._last_out_fr >= ref - 0.5 * step:
                k_o += old_mult
            _bar_predict(
                self._bar, self._bar_offs, self._bar_lens, self._bar_unmeasured + 1, self._bar_out
            )
            pos_next = int(self._bar_out[1]) if self._last_bib else 0
            self._parity = (k_o + (pos_next % 2) * old_mult) % (1 << (-e))
        self._octave_exp = e
        self._user_octave = True
        self._octave_count = 0
        if self._seeded:
            self._remap_bar(direction)
        return True

    def _out_offset_beats(self) -> int:
        """Internal beats from the grid's next beat to the next output beat (decimated grid)."""
        e = self._octave_exp
        if e >= 0:
            return 0
        return (self._parity - self._k_next) % (1 << (-e))

    def _restrict_filter(self) -> None:
        """Rebuild the transitions and drop the posterior mass of tempi no longer allowed."""
        self._build_transitions()
        self._alpha[np.repeat(~self._active, self._periods)] = 0.0
        total = float(self._alpha.sum())
        if total > 0.0:
            self._alpha /= total
        else:
            self._seed_prior()

    def _apply_bpm_range(self, lo_bpm: float, hi_bpm: float) -> bool:
        fps = self._fps
        p_lo = 60.0 * fps / hi_bpm
        p_hi = 60.0 * fps / lo_bpm
        per = self._periods.astype(np.float64)
        if int(((per >= p_lo - 1e-9) & (per <= p_hi + 1e-9)).sum()) < 2:
            return False
        self._p_lo_user = p_lo
        self._p_hi_user = p_hi
        self._p_excl_below = 0.0
        self._restrict_filter()
        if self._seeded:
            p = self._period_fr
            while p < p_lo * 0.97 and p * 2.0 <= p_hi * 1.03:
                p *= 2.0
            while p > p_hi * 1.03 and p / 2.0 >= p_lo * 0.97:
                p /= 2.0
            if not p_lo * 0.97 <= p <= p_hi * 1.03:
                self._lose_track()
            elif p != self._period_fr:
                self._period_fr = p
                self._family = self._family_of(p)
                self._set_next(self._next_fr, self._n)
            else:
                self._family = self._family_of(p)
        return True

    # ------------------------------------------------------------------ snapshot
    def _reset_snapshot(self) -> None:
        self.bpm = 0.0
        self.phase = 0.0
        self.bar_phase = 0.0
        self.beat_in_bar = 0
        self.beats_per_bar = self.config.beats_per_bar[-1]
        self.confidence = 0.0
        self.locked = False
        self.tracking = False

    @property
    def frozen(self) -> bool:
        """Tempo pinned by :meth:`freeze`."""
        return self._frozen

    @property
    def octave_factor(self) -> float:
        """Output tempo multiplier set by :meth:`double` / :meth:`halve`."""
        return 2.0**self._octave_exp

    @property
    def output_latency_s(self) -> float:
        """Current output latency (config value or the last ``output_latency`` command)."""
        return self._output_latency_s

    def _update_snapshot(self, n: int) -> None:
        if not self._seeded:
            self.bpm = 0.0
            self.phase = 0.0
            self.bar_phase = 0.0
            self.beat_in_bar = 0
            self.confidence = 0.0
            self.locked = False
            self.tracking = False
            return
        ref, step = self._out_grid()
        x = n + self.config.input_latency_s * self._fps  # the end of this frame, in frames
        ph = ((x - ref) / step) % 1.0
        self.bpm = self._reported_bpm(step)
        self.phase = ph
        meter = self.beats_per_bar
        bib = self._last_bib or 1
        if x < self._last_out_fr:
            bib = (bib - 2) % meter + 1
        self.beat_in_bar = bib
        self.bar_phase = ((bib - 1 + ph) / meter) % 1.0
        self.confidence = self._confidence()
        self.locked = self._locked
        self.tracking = True

    def _maybe_tempo_event(self, n: int, sample_index: int) -> TempoEvent | None:
        rate = self.config.tempo_rate_hz
        state = (self.bpm, self.locked, self.beats_per_bar)
        last = self._last_tempo
        changed = state[1] != last[1] or state[2] != last[2]
        changed = changed or abs(state[0] - last[0]) > 0.01 * max(last[0], 1e-9)
        due = rate > 0.0 and (n - self._last_tempo_n) >= self._fps / rate
        if not (changed or due):
            return None
        self._last_tempo_n = n
        self._last_tempo = state
        t = sample_index / self._rate
        return TempoEvent(
            sample_index=sample_index,
            time_s=t,
            emitted_s=t,
            bpm=self.bpm,
            confidence=self.confidence,
            locked=self.locked,
            beats_per_bar=self.beats_per_bar,
        )

    def _require_prepared(self) -> None:
        if not self._prepared:
            raise StageError(f"stage {self.name!r} used before prepare()")
