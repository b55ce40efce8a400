"""The offline Viterbi beat decoder used to turn a teacher's activation into pseudo labels."""

from __future__ import annotations

import mir_eval
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onbeat.training.viterbi import ViterbiConfig, decode

FPS = 100.0


def pulse_train(n_frames: int, first: int, period: float, height: float = 0.9) -> np.ndarray:
    a = np.zeros(n_frames)
    k = np.arange(first, n_frames, period).round().astype(int)
    a[k[k < n_frames]] = height
    return a


def test_steady_beats_are_found_at_their_frames_and_tempo():
    rng = np.random.default_rng(1)
    act = 0.02 + rng.uniform(0, 0.05, 3000) + pulse_train(3000, 13, 50)
    act[38::50] = 0.35  # weaker off-beats must not win
    beats, bpm = decode(np.clip(act, 0, 1))
    truth = np.arange(13, 3000, 50) / FPS
    assert mir_eval.beat.f_measure(truth, beats) == 1.0
    np.testing.assert_allclose(bpm, 120.0)


def test_a_tempo_step_is_followed_without_a_lock_in_delay():
    act = np.full(4000, 0.02)
    act[:2000] += pulse_train(2000, 7, 50)
    act[2000:] += pulse_train(2000, 20, 42)
    beats, bpm = decode(act)
    truth = np.concatenate([np.arange(7, 2000, 50), 2000 + np.arange(20, 2000, 42)]) / FPS
    # the best path sees the whole file: at most one beat of the step is bridged (a steady
    # tempo is likelier than a 26 % jump), the second beat after it is already on the new grid
    assert mir_eval.beat.f_measure(truth, beats) >= 0.98
    after = beats[beats >= 20.5]
    np.testing.assert_allclose(after[:3], (2000 + np.array([62, 104, 146])) / FPS, atol=0.011)
    assert abs(bpm[-1] - 60 * FPS / 42) < 0.1 * 60 * FPS / 42


@settings(max_examples=15, deadline=None)
@given(period=st.floats(30.0, 100.0), first=st.integers(0, 29), noise=st.floats(0.0, 0.04))
def test_any_steady_tempo_in_range_is_decoded(period, first, noise):
    # noise stays under 1 / observation_lambda: above it, the model counts noise as beat evidence
    rng = np.random.default_rng(0)
    act = np.clip(pulse_train(2000, first, period) + rng.uniform(0, noise, 2000), 0, 1)
    beats, bpm = decode(act)
    truth = np.arange(first, 2000, period).round() / FPS
    assert mir_eval.beat.f_measure(truth, beats) >= 0.95
    assert np.median(np.abs(bpm - 60 * FPS / period)) <= 0.05 * 60 * FPS / period


def test_empty_and_bad_input_and_configs():
    beats, bpm = decode(np.zeros(0))
    assert beats.size == 0 and bpm.size == 0
    with pytest.raises(ValueError, match="NaN"):
        decode(np.array([0.1, np.nan, 0.2]))
    with pytest.raises(ValueError):
        ViterbiConfig(min_bpm=200.0, max_bpm=100.0)
    with pytest.raises(ValueError):
        ViterbiConfig(fps=10.0, max_bpm=400.0)
    with pytest.raises(ValueError):
        ViterbiConfig(observation_lambda=1.0)
    periods = ViterbiConfig().periods()
    assert periods[0] == 27 and periods[-1] == 110


def test_pseudo_labels_from_the_best_path_agree_with_the_tracker_where_it_is_clear():
    from onbeat.training.pseudo import PseudoConfig, label_activation

    act = np.zeros((3000, 2), dtype=np.float32)
    act[:, 0] = 0.02 + pulse_train(3000, 13, 50).astype(np.float32)
    labels, keep = label_activation(act, "viterbi", PseudoConfig(partner="tracker", skip_s=0.0))
    truth = np.arange(13, 3000, 50) / FPS
    assert mir_eval.beat.f_measure(truth, labels) == 1.0
    # the causal tracker needs a few beats to lock; the rest of the file is kept
    assert keep.shape[0] == 1 and keep[0, 0] <= 8.0 and keep[0, 1] >= 29.0
    with pytest.raises(ValueError, match="audio"):
        label_activation(act, "viterbi", PseudoConfig(partner="audio"))
