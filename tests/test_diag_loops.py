"""``scripts/diag_loops.py``: its ``full`` loop is the benchmark's band loop, sample for sample,
and its fold reads an activation at the right beats and "and"s."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from onbeat.realtime.demo import demo_song

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
diag_loops = pytest.importorskip("diag_loops")


@pytest.mark.parametrize("bpm", [95.0, 150.0])
def test_full_loop_is_the_demo_song(bpm):
    x, beats = diag_loops.loop("full", bpm)
    song = demo_song(bpm=bpm)
    np.testing.assert_array_equal(x, song.samples)
    np.testing.assert_array_equal(beats, song.beats_s)


def test_variants_change_only_their_layer():
    full, beats = diag_loops.loop("full", 120.0)
    quiet, _ = diag_loops.loop("no_snare", 120.0)
    sr, period = 44100, 0.5
    diff = np.abs(full.astype(np.float64) - quiet)
    # the snare sits on beats 2 and 4; before the first one nothing differs
    assert diff[: int((beats[1] - 0.01) * sr)].max() < 1e-3 * np.abs(full).max()
    assert diff[int(beats[1] * sr) : int((beats[1] + period / 2) * sr)].max() > 0.05


def test_fold_reads_each_beat_and_each_and():
    beats = np.arange(0.5, 20.0, 0.5)
    act = np.zeros(2100)
    for i, t in enumerate(beats):
        act[round(t * 100)] = 0.8 if i % 4 in (1, 3) else 0.3  # snares strong, kicks weak
        act[round((t + 0.25) * 100)] = 0.05
    vals = diag_loops.fold(act, beats)
    np.testing.assert_allclose(vals, [0.3, 0.05, 0.8, 0.05, 0.3, 0.05, 0.8, 0.05])


def test_demo_song_rejects_an_unknown_layer():
    with pytest.raises(ValueError, match="unknown layers to mute: cymbals"):
        demo_song(duration_s=2.0, mute=["cymbals"])
