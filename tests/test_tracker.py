"""Online beat tracker on synthetic activations: accuracy, prediction, breaks, commands, contract.

The activations are built from known beat times: Gaussian bumps (peak 0.6-1.0, σ = 0.8 frames,
centred between frames as the beat falls) plus a noise floor, 10 % missing beats and spurious
peaks (0.5/s, height 0.3-0.7). Stream time of a frame is ``sample_index / 44100`` with
``sample_index = frame * 441``, i.e. the activation of frame ``k`` describes the audio at
``k / 100`` s.

Run with ``-s`` to see the measured numbers of each scenario and the per-frame cost.
"""

from __future__ import annotations

import dataclasses
import math
import time

import mir_eval
import numpy as np
import pytest
from onbeat.realtime.commands import Command
from onbeat.realtime.errors import ConfigError, StageError
from onbeat.realtime.events import EMPTY, BeatEvent, TempoEvent
from onbeat.realtime.stages import StreamContext
from onbeat.realtime.tracker import BeatTracker, TrackerConfig

SR = 44100
HOP = 441
FPS = SR / HOP
CTX = StreamContext(SR, HOP)


# ---------------------------------------------------------------------------------- helpers
def beat_grid(bpm: float, duration_s: float, start_s: float = 0.5037) -> np.ndarray:
    """Beat times at a steady tempo (the start is off the frame grid, as in real audio)."""
    return np.arange(start_s, duration_s, 60.0 / bpm)


def synth(
    beats_s: np.ndarray,
    duration_s: float,
    *,
    seed: int = 0,
    downbeat_every: int = 0,
    miss: float = 0.1,
    spurious_per_s: float = 0.5,
    noise: float = 0.03,
) -> np.ndarray:
    """(frames, 2) [beat, downbeat] activations for the given beat times."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * FPS)
    t = np.arange(n)
    act = np.zeros((n, 2))
    act[:, 0] = noise * np.abs(rng.standard_normal(n))
    act[:, 1] = 0.5 * noise * np.abs(rng.standard_normal(n))

    def bump(center: float, height: float, col: int) -> None:
        lo, hi = max(0, int(center) - 5), min(n, int(center) + 6)
        act[lo:hi, col] += height * np.exp(-0.5 * ((t[lo:hi] - center) / 0.8) ** 2)

    for k, b in enumerate(beats_s):
        if rng.random() < miss:
            continue
        h = rng.uniform(0.6, 1.0)
        bump(b * FPS, h, 0)
        if downbeat_every and k % downbeat_every == 0:
            bump(b * FPS, h * rng.uniform(0.7, 1.0), 1)
    for _ in range(rng.poisson(spurious_per_s * duration_s)):
        bump(rng.uniform(0, n), rng.uniform(0.3, 0.7), 0)
    return np.clip(act, 0.0, 1.0)


def make(config: TrackerConfig | None = None) -> BeatTracker:
    tr = BeatTracker(config or TrackerConfig(), hop_size=HOP)
    tr.prepare(CTX)
    return tr


def run(tracker, act, *, silent=None, hook=None):
    """Feed every frame; return (beat events, tempo events, per-frame snapshots)."""
    beats, tempos, snaps = [], [], []
    for i in range(act.shape[0]):
        if hook is not None:
            hook(i, tracker)
        out = tracker.process(
            act[i], i * HOP, silent=bool(silent[i]) if silent is not None else False
        )
        for e in out:
            (beats if isinstance(e, BeatEvent) else tempos).append(e)
        snaps.append((tracker.bpm, tracker.phase, tracker.confidence, tracker.locked))
    return beats, tempos, snaps


def times(events) -> np.ndarray:
    return np.asarray([e.time_s for e in events], dtype=np.float64)


def nearest_errors(events, ref: np.ndarray) -> np.ndarray:
    t = times(events)
    return np.asarray([x - ref[np.argmin(np.abs(ref - x))] for x in t])


def hits(det: np.ndarray, ref: np.ndarray, window: float = 0.07) -> np.ndarray:
    return np.asarray([det.size > 0 and np.min(np.abs(det - r)) <= window for r in ref])


def lock_time(det: np.ndarray, ref: np.ndarray) -> float:
    """First reference beat from which 4 consecutive reference beats are hit (as in evaluate)."""
    h = hits(det, ref)
    for i in range(len(h) - 3):
        if h[i : i + 4].all():
            return float(ref[i])
    return math.nan


def report(msg: str) -> None:
    print(f"\n[tracker] {msg}")


@pytest.fixture(scope="module")
def tracker() -> BeatTracker:
    """One prepared tracker, reset before use by each test that takes it."""
    return make()


# ---------------------------------------------------------------------------------- config
def test_config_defaults_and_validation():
    c = TrackerConfig()
    assert TrackerConfig.section == "tracker"
    assert (c.min_bpm, c.max_bpm, c.beats_per_bar) == (55.0, 215.0, (4,))
    bad = [
        {"min_bpm": 150.0, "max_bpm": 160.0},
        {"beats_per_bar": ()},
        {"beats_per_bar": (4, 4)},
        {"beats_per_bar": (1,)},
        {"transition_lambda": 0.0},
        {"output_latency_s": -0.01},
        {"flywheel_bars": float("nan")},
        {"num_tempi": 3},
        {"lock_beats": 1.5},
    ]
    for kw in bad:
        with pytest.raises(ConfigError, match=r"tracker\."):
            TrackerConfig(**kw)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.min_bpm = 60.0  # type: ignore[misc]


# ---------------------------------------------------------------------------------- contract
def test_stage_contract(tracker):
    assert tracker.name == "beat_tracker"
    assert tracker.spec.input_kind == "activation"
    assert tracker.spec.outputs == ("beat", "tempo")
    tracker.reset()
    assert tracker.flush() is EMPTY
    quiet = np.zeros(2, dtype=np.float32)
    outs = [tracker.process(quiet, i * HOP) for i in range(300)]
    assert all(o is EMPTY or all(isinstance(e, TempoEvent) for e in o) for o in outs)
    assert not tracker.tracking and tracker.bpm == 0.0
    with pytest.raises(StageError, match="hop"):
        BeatTracker(TrackerConfig(), hop_size=HOP).prepare(StreamContext(SR, 512))
    with pytest.raises(StageError, match="frames per beat"):
        BeatTracker(TrackerConfig(), hop_size=4410).prepare(StreamContext(SR, 4410))


def test_nonfinite_and_short_frames(tracker):
    tracker.reset()
    for i in range(200):
        frame = np.array([np.nan, np.inf]) if i % 2 else np.array([0.5])
        tracker.process(frame, i * HOP)
    assert math.isfinite(tracker.confidence) and math.isfinite(tracker.phase)


# ---------------------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("bpm", [120.0, 95.0, 170.0])
def test_steady_tempo(bpm):
    fs, bpm_err, lag, err, locked = [], [], [], [], []
    for seed in range(3):
        ref = beat_grid(bpm, 30.0, start_s=0.5037 + 0.011 * seed)
        beats, _, _ = run(make(), synth(ref, 30.0, seed=seed))
        late = [e for e in beats if e.time_s >= 3.0]
        fs.append(mir_eval.beat.f_measure(ref[ref >= 3.0], times(late)))
        bpm_err += [abs(e.bpm / bpm - 1.0) for e in late]
        for e in late:
            j = int(np.argmin(np.abs(ref - e.time_s)))
            if abs(ref[j] - e.time_s) <= 0.07:
                lag.append(e.emitted_s - ref[j])
                err.append(e.time_s - ref[j])
        # issued in the frame nearest its predicted time (the default issue_frame)
        half_frame_s = 0.5 / FPS + 1e-9
        assert all(abs(e.emitted_s - e.time_s) <= half_frame_s for e in late), "issued off-frame"
        assert all(e.predicted for e in late)
        locked.append(np.mean([e.locked for e in late]))
    lag_a, err_a = np.abs(lag), np.abs(err)
    report(
        f"steady {bpm:.0f} BPM: F = {min(fs):.3f}..{max(fs):.3f}, max BPM error "
        f"{100 * max(bpm_err):.2f} %, |time_s - true| median {1e3 * np.median(err_a):.1f} ms "
        f"(p90 {1e3 * np.percentile(err_a, 90):.1f}), |emitted_s - true| median "
        f"{1e3 * np.median(lag_a):.1f} ms (p90 {1e3 * np.percentile(lag_a, 90):.1f}), "
        f"locked {100 * min(locked):.0f}..{100 * max(locked):.0f} % of beats"
    )
    assert min(fs) >= 0.95
    assert min(locked) >= 0.85
    assert max(bpm_err) <= 0.01
    assert np.median(err_a) <= 0.005
    assert np.median(lag_a) <= 0.010


def test_issue_frame_before_is_never_late_and_nearest_halves_the_issue_error():
    """``issue_frame = "before"`` issues every beat in the last frame before its predicted time
    (never after it); ``"nearest"`` (default) in the nearest frame. Both predict the same beat
    times; the nearest frame is on average half a frame closer to the beat."""
    ref = beat_grid(120.0, 30.0, start_s=0.5037)
    act = synth(ref, 30.0, seed=0)
    near, _, _ = run(make(), act)
    before, _, _ = run(make(TrackerConfig(issue_frame="before")), act)
    near = [e for e in near if e.time_s >= 3.0]
    before = [e for e in before if e.time_s >= 3.0]
    assert len(near) == len(before) > 40
    np.testing.assert_allclose(times(near), times(before), atol=1e-9)
    frame_s = 1.0 / FPS
    assert all(0.0 <= e.time_s - e.emitted_s < frame_s + 1e-9 for e in before)
    assert all(e.predicted for e in before) and all(e.predicted for e in near)
    issue_err_near = np.median([abs(e.emitted_s - e.time_s) for e in near])
    issue_err_before = np.median([abs(e.emitted_s - e.time_s) for e in before])
    assert issue_err_near <= 0.5 * frame_s + 1e-9
    assert issue_err_near < issue_err_before
    with pytest.raises(ConfigError, match="issue_frame"):
        TrackerConfig(issue_frame="late")


@pytest.mark.parametrize("bpm", [82.0, 137.0, 151.0, 181.0])
def test_tempo_is_measured_from_the_first_beats(bpm):
    """The grid's tempo comes from a fit through the activation peaks already heard, not from
    the filter's tempo grid alone: from the second issued beat on, the reported BPM is within
    0.3 % (the filter alone started up to 1.7 % off at 137 BPM and took about 2 s to settle).
    Acquisition may still try another metrical level for a few unlocked beats (a separate
    matter, counted in the report); the tempo error is measured on the beats at the true one."""
    worst, other_level = [], 0
    for seed in range(3):
        ref = beat_grid(bpm, 20.0, start_s=0.5037 + 0.011 * seed)
        beats, _, _ = run(make(), synth(ref, 20.0, seed=seed))
        err = [abs(e.bpm / bpm - 1.0) for e in beats[1:]]
        other_level += sum(x > 0.05 for x in err)
        worst.append(max(x for x in err if x <= 0.05))
        assert all(e.bpm == pytest.approx(bpm, rel=0.05) for e in beats if e.locked)
    report(
        f"{bpm:.0f} BPM: worst BPM error from the second beat {100 * max(worst):.2f} % "
        f"({other_level} unlocked beats at another metrical level)"
    )
    assert max(worst) <= 0.003


def test_fit_grid_ignores_a_stray_peak():
    """The seed fit is a robust line: one stray peak near the grid does not tilt it."""
    from onbeat.realtime.tracker import _fit_grid

    period, depth = 48.78, 512
    hist = np.zeros(depth)
    beats_fr = 51.47 + period * np.arange(7)
    for b in beats_fr:
        k = round(b)
        hist[k - 1 : k + 2] = [0.5, 1.0, 0.5]
    hist[4:7] = [0.6, 0.8, 0.1]  # a stray peak 2.3 frames after the grid's beat before the first
    newest = int(beats_fr[-1]) + 10
    out = np.zeros(2)
    used = _fit_grid(
        hist, newest, beats_fr[-1] + period, 49.2, 8, 0.15, np.zeros(8), np.zeros(8),
        np.zeros(2), np.zeros(28), out,
    )  # fmt: skip
    assert used == 7
    assert out[0] == pytest.approx(period, abs=0.15)
    assert out[1] == pytest.approx(beats_fr[-1] + period, abs=0.6)
    # too few peaks: no fit
    assert (
        _fit_grid(hist, 150, 200.0, period, 8, 0.15, *(np.zeros(n) for n in (8, 8, 2, 28)), out)
        == 0
    )


@pytest.mark.parametrize(("meters", "every"), [((4,), 4), ((3, 4), 4), ((3, 4), 3)])
def test_downbeats(meters, every):
    correct = []
    for seed in range(2):
        ref = beat_grid(120.0, 30.0, start_s=0.5037 + 0.013 * seed)
        tr = make(TrackerConfig(beats_per_bar=meters))
        beats, _, _ = run(tr, synth(ref, 30.0, seed=seed, downbeat_every=every))
        for e in beats:
            j = int(np.argmin(np.abs(ref - e.time_s)))
            # one meter settles within a couple of bars, a choice of two takes a few more
            if e.time_s >= (6.0 if len(meters) == 1 else 10.0) and abs(ref[j] - e.time_s) <= 0.07:
                correct.append(e.beat_in_bar == j % every + 1 and e.is_downbeat == (j % every == 0))
        assert tr.beats_per_bar == every
    report(f"downbeats meters={meters} true={every}: beat_in_bar correct {np.mean(correct):.3f}")
    assert np.mean(correct) >= 0.95


def test_downbeat_activation_on_every_beat_is_read_relative():
    """A network that rates every beat nearly alike as a downbeat (a click track whose accent is
    only a higher click): the bar filter must use the small accent contrast and keep counting
    1-2-3-4, not flip between positions (beat_in_bar went 2-3-2-3 before)."""
    ref = beat_grid(120.0, 40.0)
    act = synth(ref, 40.0, seed=3, miss=0.0, spurious_per_s=0.0)
    for k, b in enumerate(ref):  # downbeat activation: 0.62 on every beat, 0.7 on accents
        f = round(b * FPS)
        act[f - 1 : f + 2, 1] = 0.7 if k % 4 == 0 else 0.62
    tr = make(TrackerConfig(beats_per_bar=(3, 4)))
    beats, _, _ = run(tr, act)
    late = [e for e in beats if e.time_s >= 12.0]
    correct = [e.beat_in_bar == int(np.argmin(np.abs(ref - e.time_s))) % 4 + 1 for e in late]
    report(f"flat downbeat activation: beat_in_bar correct {np.mean(correct):.3f}")
    assert tr.beats_per_bar == 4
    assert np.mean(correct) >= 0.95


def test_tempo_step_relocks_within_2s():
    relock, fourth = [], []
    for seed in range(3):
        r1 = beat_grid(120.0, 15.0, start_s=0.5037 + 0.007 * seed)
        step = r1[-1]
        ref = np.concatenate([r1, step + np.arange(1, 33) * 60.0 / 140.0])
        # no missing beat here: a missing first beat after the step leaves the filter alone to
        # notice it (about 2.6 s, see the report)
        act = synth(ref, step + 14.0, seed=seed, miss=0.0)
        beats, _, _ = run(make(), act)
        det = times(beats)
        after = ref[ref > step]
        lt = lock_time(det[det > step], after)
        relock.append(lt - step)
        h = hits(det, after)
        first = next(i for i in range(len(h) - 3) if h[i : i + 4].all())
        fourth.append(after[first + 3] - step)
        late = [e.bpm for e in beats if e.time_s > step + 3.0]
        assert abs(np.median(late) / 140.0 - 1.0) < 0.01
    report(
        f"tempo step 120->140: re-lock (first of 4 correct) {min(relock):.2f}..{max(relock):.2f} s,"
        f" 4th correct beat at {min(fourth):.2f}..{max(fourth):.2f} s after the step"
    )
    assert max(relock) <= 2.0


@pytest.mark.parametrize(("bpm1", "bpm2"), [(120.0, 87.0), (128.0, 174.0), (140.0, 100.0)])
def test_song_change_relocks(bpm1, bpm2):
    """A DJ's next song (another tempo, another phase, a 1 s gap) is found again within 4.5 s:
    the filter must not trust the old song so much that it cannot leave it (``restart_prob``
    1e-7 took up to 5 s here; 1e-6 and 1e-5 up to 4.1 s, first of 4 correct beats)."""
    relock = []
    for seed in range(3):
        r1 = beat_grid(bpm1, 20.0, start_s=0.5037 + 0.011 * seed)
        t0 = 21.0
        r2 = t0 + 0.123 + beat_grid(bpm2, 20.0, start_s=0.0)
        act = np.concatenate(
            [
                synth(r1, 20.0, seed=seed),
                np.full((int(FPS), 2), 0.01),
                synth(r2 - t0, 20.0, seed=seed + 10),
            ]
        )
        beats, _, _ = run(make(), act)
        det = times(beats)
        relock.append(lock_time(det[det > t0], r2) - t0)
        late = [e.bpm for e in beats if e.time_s > t0 + 8.0]
        assert abs(np.median(late) / bpm2 - 1.0) < 0.01
    report(f"song change {bpm1:.0f}->{bpm2:.0f} BPM after 1 s: re-lock {np.round(relock, 2)} s")
    assert max(relock) <= 4.5


def test_break_keeps_the_grid_running():
    counts, confs = [], []
    for seed in range(3):
        ref = beat_grid(120.0, 30.0, start_s=0.5037 + 0.009 * seed)
        act = synth(ref, 30.0, seed=seed)
        act[1000:1400] = 0.0  # 4 s without any activation
        beats, _, snaps = run(make(), act)
        grid = ref[(ref >= 10.0) & (ref < 14.0)]
        counts.append(int(hits(times(beats), grid).sum()))
        confs.append((snaps[995][2], snaps[1395][2]))
        after = ref[ref >= 16.0]
        assert mir_eval.beat.f_measure(after, times(beats)[times(beats) >= 16.0]) >= 0.95
    report(
        f"4 s break at 120 BPM: grid beats issued {counts} of 8; confidence before/end "
        f"{[(round(a, 2), round(b, 2)) for a, b in confs]}"
    )
    assert min(counts) >= 6
    assert all(end < before for before, end in confs)


def test_long_silence_stops_after_the_flywheel():
    ref = beat_grid(120.0, 40.0)
    act = synth(ref, 40.0, seed=3)
    silent = np.zeros(act.shape[0], dtype=bool)
    silent[1000:2000] = True  # 10 s below the level gate
    tr = make()
    beats, _, snaps = run(tr, act, silent=silent)
    det = times(beats)
    flywheel_s = TrackerConfig().flywheel_bars * 4 * 0.5
    during = det[(det >= 10.0) & (det < 20.0)]
    report(
        f"10 s silence: {during.size} flywheel beats, last at {during.max():.2f} s "
        f"(flywheel {flywheel_s:.0f} s); re-lock after silence "
        f"{lock_time(det[det >= 20.0], ref[ref >= 20.0]) - 20.0:.2f} s"
    )
    assert during.max() <= 10.0 + flywheel_s + 0.6
    assert not np.any((det > 10.0 + flywheel_s + 0.6) & (det < 20.0))
    assert snaps[1990][2] == 0.0 and not snaps[1990][3]
    assert lock_time(det[det >= 20.0], ref[ref >= 20.0]) - 20.0 <= 3.0


@pytest.mark.parametrize("issue_frame", ["nearest", "before"])
def test_output_latency_issues_beats_early(issue_frame):
    ref = beat_grid(120.0, 30.0)
    cfg = TrackerConfig(output_latency_s=0.05, issue_frame=issue_frame)
    beats, _, _ = run(make(cfg), synth(ref, 30.0, seed=4))
    late = [e for e in beats if e.time_s >= 3.0]
    lead = np.asarray([e.time_s - e.emitted_s for e in late])
    report(
        f"output latency 50 ms ({issue_frame}): lead median {1e3 * np.median(lead):.1f} ms, "
        f"range {1e3 * lead.min():.1f}..{1e3 * lead.max():.1f} ms"
    )
    if issue_frame == "nearest":  # the frame nearest time_s - 50 ms
        assert np.all(np.abs(lead - 0.05) <= 0.5 / FPS + 1e-9)
    else:  # the last frame before it
        assert np.all((lead >= 0.05 - 1e-9) & (lead < 0.05 + 1.0 / FPS + 1e-9))
    assert mir_eval.beat.f_measure(ref[ref >= 3.0], times(late)) >= 0.95


# ---------------------------------------------------------------------------------- determinism
def test_deterministic_and_reset_restores(tracker):
    ref = beat_grid(128.0, 20.0)
    act = synth(ref, 20.0, seed=5, downbeat_every=4)
    fresh, fresh_t, _ = run(make(), act)
    tracker.reset()
    first, first_t, _ = run(tracker, act)
    tracker.reset()
    second, second_t, _ = run(tracker, act)
    assert fresh == first == second and len(fresh) > 30
    assert fresh_t == first_t == second_t


# ---------------------------------------------------------------------------------- commands
def test_double_and_halve(tracker):
    ref = beat_grid(120.0, 24.0)
    act = synth(ref, 24.0, seed=6, downbeat_every=4)
    seen = {}

    def hook(i, tr):
        if i == 1000:
            tr.double()
        if i == 1600:
            tr.halve()
        if i == 1900:
            tr.halve()
        if i in (1001, 1002, 1601, 1901):
            seen[i] = tr.bpm

    tracker.reset()
    beats, _, _ = run(tracker, act, hook=hook)
    report(
        f"double/halve: bpm 1 and 2 frames after double() {seen[1001]:.1f}, {seen[1002]:.1f}; "
        f"after halve() {seen[1601]:.1f}, again {seen[1901]:.1f}"
    )
    assert abs(seen[1001] / 240.0 - 1.0) < 0.01 and abs(seen[1002] / 240.0 - 1.0) < 0.01
    assert abs(seen[1601] / 120.0 - 1.0) < 0.01
    assert abs(seen[1901] / 60.0 - 1.0) < 0.01
    doubled = [e for e in beats if 10.1 < e.time_s < 15.9]
    assert np.allclose(np.diff(times(doubled)), 0.25, atol=0.01)
    # the doubled grid keeps every original beat; its 4-beat bars are half bars, so its downbeats
    # fall on the original beats 1 and 3
    assert hits(times(doubled), ref[(ref > 10.1) & (ref < 15.9)]).all()
    assert all(np.min(np.abs(ref[::2] - e.time_s)) < 0.03 for e in doubled if e.is_downbeat)
    restored = [e for e in beats if 16.1 < e.time_s < 18.9]
    assert np.allclose(np.diff(times(restored)), 0.5, atol=0.01)
    halved = [e for e in beats if e.time_s > 19.1]
    assert np.allclose(np.diff(times(halved)), 1.0, atol=0.01)
    assert tracker.octave_factor == 0.5


def test_halve_keeps_beats_one_and_three(tracker):
    ref = beat_grid(120.0, 24.0)
    act = synth(ref, 24.0, seed=12, downbeat_every=4)
    tracker.reset()
    beats, _, _ = run(tracker, act, hook=lambda i, tr: tr.halve() if i == 1000 else None)
    halved = [e for e in beats if e.time_s > 10.5]
    assert np.allclose(np.diff(times(halved)), 1.0, atol=0.01)
    kept = ref[::2]
    assert hits(times(halved), kept[kept > 10.5]).all()
    assert all(np.min(np.abs(ref[::4] - e.time_s)) < 0.03 for e in halved if e.is_downbeat)


def test_nudge_shifts_beats(tracker):
    ref = beat_grid(120.0, 20.0)
    act = synth(ref, 20.0, seed=7)
    tracker.reset()
    base, _, _ = run(tracker, act)
    tracker.reset()
    nudged, _, _ = run(tracker, act, hook=lambda i, tr: tr.nudge(20.0) if i == 1000 else None)
    b = {e.beat_index: e.time_s for e in base if e.time_s > 10.5}
    shift = [e.time_s - b[e.beat_index] for e in nudged if e.beat_index in b]
    report(f"nudge +20 ms: beat times moved by {1e3 * np.median(shift):.2f} ms")
    assert np.allclose(shift, 0.02, atol=1e-6)


def test_tap_tempo_on_silence(tracker):
    taps = {300 + 60 * k for k in range(4)}  # 100 BPM from 3 s
    tracker.reset()
    beats, _, _ = run(
        tracker, np.zeros((900, 2)), hook=lambda i, tr: tr.tap() if i in taps else None
    )
    assert beats and abs(beats[0].bpm - 100.0) < 0.5
    assert np.allclose(np.diff(times(beats)), 0.6, atol=0.011)
    assert abs(beats[0].time_s - 3.6) < 0.011  # on the grid of the taps


def test_freeze_pins_tempo(tracker):
    r1 = beat_grid(120.0, 15.0)
    ref = np.concatenate([r1, r1[-1] + np.arange(1, 30) * 60.0 / 132.0])
    act = synth(ref, 28.0, seed=8)
    tracker.reset()
    beats, _, _ = run(tracker, act, hook=lambda i, tr: tr.freeze(True) if i == 1000 else None)
    assert tracker.frozen
    assert all(abs(e.bpm - 120.0) < 1.0 for e in beats if e.time_s > 10.5)


def test_bpm_range_and_resync(tracker):
    ref = beat_grid(120.0, 20.0)
    act = synth(ref, 20.0, seed=9)
    with pytest.raises(ConfigError):
        tracker.set_bpm_range(30.0, 90.0)

    def hook(i, tr):
        if i == 1000:
            tr.set_bpm_range(55.0, 90.0)
        if i == round(ref[25] * FPS) - 1:
            tr.resync_downbeat()

    tracker.reset()
    beats, _, _ = run(tracker, act, hook=hook)
    late = [e for e in beats if e.time_s > 11.0]
    assert all(abs(e.bpm - 60.0) < 1.0 for e in late)
    down = [e.time_s for e in beats if e.is_downbeat and e.time_s > ref[25] - 0.1]
    assert abs(down[0] - ref[25]) < 0.02


def test_apply_command(tracker):
    tracker.reset()
    assert tracker.apply_command(Command("double"), 0)
    assert tracker.octave_factor == 2.0
    assert not tracker.apply_command(Command("bpm_range", (20.0, 40.0)), 0)
    assert tracker.apply_command(Command("output_latency", (30.0,)), 0)
    assert tracker.output_latency_s == pytest.approx(0.03)
    assert tracker.apply_command(Command("freeze", (1.0,)), 0) and tracker.frozen
    tracker.reset()
    assert tracker.octave_factor == 1.0 and not tracker.frozen
    assert tracker.output_latency_s == 0.0


# ---------------------------------------------------------------------------------- snapshot
def test_snapshot_and_tempo_events(tracker):
    ref = beat_grid(120.0, 12.0)
    act = synth(ref, 12.0, seed=10, downbeat_every=4)
    tracker.reset()
    beats, tempos, snaps = run(tracker, act)
    ph = np.asarray([s[1] for s in snaps[600:]])
    wraps = np.flatnonzero(np.diff(ph) < -0.5)
    assert 10 <= len(wraps) <= 12  # one wrap per beat
    # the phase wraps as the beat is issued: in the frame of a beat it is within a frame of 0
    at_beat = np.asarray([snaps[round(e.emitted_s * FPS)][1] for e in beats if e.time_s > 6.0])
    assert np.all(np.minimum(at_beat, 1.0 - at_beat) <= 1.0 / 50.0 + 1e-9)
    assert 0.0 <= tracker.bar_phase < 1.0 and 1 <= tracker.beat_in_bar <= 4
    assert tracker.locked and 0.5 < tracker.confidence <= 1.0
    # TempoEvents: about twice a second once tracking, plus changes
    assert 2.0 * 8 <= len([t for t in tempos if t.time_s > 4.0]) <= 2.0 * 8 + 6
    assert all(t.beats_per_bar == 4 for t in tempos)


def test_benchmark_us_per_frame():
    ref = beat_grid(120.0, 60.0)
    act = synth(ref, 60.0, seed=11)
    tr = make()
    frames = [np.ascontiguousarray(a, dtype=np.float32) for a in act]
    best = []
    for _ in range(3):
        tr.reset()
        ts = np.empty(len(frames))
        for i, f in enumerate(frames):
            t0 = time.perf_counter_ns()
            tr.process(f, i * HOP)
            ts[i] = time.perf_counter_ns() - t0
        best.append(ts)
    ts = np.min(np.stack(best), axis=0) / 1e3
    report(
        f"cost per frame: median {np.median(ts):.1f} us, mean {ts.mean():.1f} us, "
        f"p99 {np.percentile(ts, 99):.1f} us ({tr._alpha.shape[0]} states, "
        f"{tr._periods.shape[0]} tempi)"
    )
