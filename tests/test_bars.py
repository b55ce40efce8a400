"""The beat-synchronous bar model: identical inputs in training and live, the shipped weights, and
bar numbering through the whole live pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onbeat.models.lstm import CausalLSTM, LSTMSpec, NumbaLSTM
from onbeat.models.registry import WEIGHTS_DIR, available, load_lstm
from onbeat.realtime.bars import BarEvidence, bar_columns, bar_input_size, beat_vectors
from onbeat.realtime.features import FeatureLayout

LAYOUT = FeatureLayout((1024, 2048, 4096), (6, 5, 4))  # small: 2 x (6 + 5 + 4) = 30 dims


def _net(n_in: int, seed: int = 0) -> CausalLSTM:
    torch.manual_seed(seed)
    net = CausalLSTM(LSTMSpec(name="bars", n_in=n_in, hidden=6, layers=1, outputs=("downbeat",)))
    with torch.no_grad():
        net.in_mean.copy_(torch.randn(n_in))
        net.in_std.copy_(torch.rand(n_in) + 0.5)
    return net


def test_columns_pick_the_2048_bands_and_their_difference():
    cols = bar_columns(LAYOUT)
    # 1024: bands 0-5, diff 6-11; 2048: bands 12-16, diff 17-21
    assert cols.tolist() == list(range(12, 17)) + list(range(17, 22))
    assert bar_input_size(LAYOUT) == 15


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), period=st.floats(20.0, 90.0), depth_pow=st.integers(7, 9))
def test_live_evidence_equals_the_training_vectors(seed, period, depth_pow):
    """Frames pushed one by one into :class:`BarEvidence` (a ring of 128-512 frames) and read at
    each beat give the same network outputs as :func:`beat_vectors` over the whole recording
    followed by the sequence forward pass (what ``onbeat train bars`` trains on)."""
    rng = np.random.default_rng(seed)
    n = 1500
    feats = rng.normal(size=(n, LAYOUT.dims)).astype(np.float32)
    start = float(rng.uniform(5.0, 40.0))
    beats = start + period * np.arange(int((n - 10 - start) // period))
    beats += rng.normal(0.0, 1.0, beats.shape)  # a live grid is not exact either
    cols = bar_columns(LAYOUT)
    net = _net(bar_input_size(LAYOUT), seed % 7)
    with torch.inference_mode():
        want = torch.sigmoid(net(torch.from_numpy(beat_vectors(feats, cols, beats))[None]))[0]
    ev = BarEvidence(NumbaLSTM(net.spec, net.export_arrays()), cols)
    ev.prepare(1 << depth_pow)
    got, k = [], 0
    for i in range(n):
        ev.push(i, feats[i])
        # the tracker reads a beat once the next one passed and its attack window closed
        while k + 1 < beats.size and i >= beats[k + 1] + 4:
            got.append(ev.beat(beats[k], beats[k + 1]))
            k += 1
    np.testing.assert_allclose(got, want.numpy()[: len(got), 0], atol=1e-5)
    assert len(got) == beats.size - 1


def test_model_input_size_is_checked():
    net = _net(7)
    with pytest.raises(ValueError, match="reads 7 values per beat"):
        BarEvidence(NumbaLSTM(net.spec, net.export_arrays()), bar_columns(LAYOUT))


@pytest.mark.skipif(not available("bars"), reason="no bars weights shipped")
def test_shipped_bar_model_is_small_and_matches_the_features():
    from onbeat.realtime.config import FeatureConfig
    from onbeat.realtime.features import SpectralFeatures, feature_fingerprint
    from onbeat.realtime.stages import StreamContext

    spec, arrays, meta = load_lstm("bars")
    assert (WEIGHTS_DIR / "bars.safetensors").stat().st_size < 2_000_000
    assert spec.outputs == ("downbeat",) and spec.features == feature_fingerprint(
        FeatureConfig(), 44100
    )
    f = SpectralFeatures(FeatureConfig())
    f.prepare(StreamContext(44100, 441))
    assert spec.n_in == bar_input_size(f.layout)
    assert meta["valid_downbeat_auc"] > 0.9 and "onbeat train bars" in meta["training_command"]
    assert (WEIGHTS_DIR / "bars.md").exists()  # the model card
    assert set(arrays) >= {"w_ih0", "w_hh0", "b0", "w_out", "b_out"}


def _numbered(seed: int) -> tuple[float, int]:
    """Share of beats (from the fifth bar on, within 70 ms of a true beat) whose beat_in_bar is
    the true one, for a 4/4 demo band loop through the whole live pipeline."""
    from onbeat.realtime.config import OnbeatConfig, apply_overrides
    from onbeat.realtime.demo import demo_song
    from onbeat.realtime.engine import Engine
    from onbeat.realtime.sources import ArraySource

    song = demo_song(duration_s=30.0, bpm=112.0, seed=seed)
    cfg = apply_overrides(OnbeatConfig(), {"output.console": False, "tags.enabled": "off"})

    class Collect:
        name = "collect"

        def __init__(self) -> None:
            self.beats: list = []

        def handle(self, e) -> None:
            if e.type == "beat":
                self.beats.append(e)

        def tick(self) -> None:
            pass

        def close(self) -> None:
            pass

    sink = Collect()
    Engine(cfg, sinks=[sink]).run_fast(
        ArraySource(song.samples[:, None], song.sample_rate_hz, name="demo")
    )
    ref = np.asarray(song.beats_s)
    down = np.asarray(song.downbeats_s)
    ok, n = 0, 0
    for e in sink.beats:
        j = int(np.argmin(np.abs(ref - e.time_s)))
        if abs(ref[j] - e.time_s) > 0.07 or ref[j] < down[4]:
            continue
        pos = int(np.sum(down <= ref[j] + 1e-6)) - 1
        true_bib = j - int(np.argmin(np.abs(ref - down[pos]))) + 1
        ok += int(e.beat_in_bar == true_bib)
        n += 1
    return ok / max(n, 1), n


@pytest.mark.skipif(not available("bars"), reason="no bars weights shipped")
def test_live_pipeline_numbers_the_bars_of_a_band_loop():
    """A 4/4 loop (kick on 1 and 3, snare on 2 and 4, chords changing each bar) through the
    engine with the shipped bar model: from the fifth bar on, at least 90 % of the beats carry
    the right ``beat_in_bar``."""
    share, n = _numbered(seed=11)
    assert n >= 30
    assert share >= 0.9, share
