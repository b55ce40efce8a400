"""Ensembles of beat models: members found beside the model, stepped together live, averaged
the same way in torch, assembled by ``python -m onbeat.training.ensemble``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onbeat.models.lstm import CausalLSTM, LSTMSpec, MeanOfMembers, load_torch_members, save_model
from onbeat.models.registry import members
from onbeat.models.streaming import EnsembleLSTM, NumbaLSTM
from onbeat.realtime.config import BeatConfig, FeatureConfig, TrackerConfig
from onbeat.realtime.errors import StageError
from onbeat.realtime.features import SpectralFeatures, feature_fingerprint
from onbeat.realtime.stages import StreamContext
from onbeat.training.ensemble import assemble, main

CTX = StreamContext(sample_rate_hz=44100, hop_size=441)


def _net(seed: int, n_in: int = 20, hidden: int = 8, features: str = "") -> CausalLSTM:
    torch.manual_seed(seed)
    spec = LSTMSpec(
        name="beats", n_in=n_in, hidden=hidden, layers=2, outputs=("beat", "downbeat"),
        features=features,
    )  # fmt: skip
    net = CausalLSTM(spec)
    with torch.no_grad():
        net.in_mean.copy_(torch.randn(n_in))
        net.in_std.copy_(torch.rand(n_in) + 0.5)
    return net.eval()


def test_ensemble_step_is_the_mean_of_its_members_and_equals_torch():
    """Live (numba) and training-side (torch) ensembles give the members' mean activation."""
    nets = [_net(s) for s in range(3)]
    x = torch.randn(1, 200, 20)
    with torch.inference_mode():
        each = np.stack([torch.sigmoid(n(x))[0].numpy() for n in nets])
        ens_torch = torch.sigmoid(MeanOfMembers(nets)(x))[0].numpy()
    np.testing.assert_allclose(ens_torch, each.mean(0), atol=1e-5)
    live = EnsembleLSTM([NumbaLSTM(n.spec, n.export_arrays()) for n in nets])
    xs = x[0].numpy().astype(np.float32)
    out = np.array([live.step(xs[t]).copy() for t in range(200)])
    np.testing.assert_allclose(out, each.mean(0), atol=1e-5)
    live.reset()
    np.testing.assert_allclose(live.step(xs[0]), each.mean(0)[0], atol=1e-5)
    with pytest.raises(ValueError, match="disagree"):
        EnsembleLSTM([NumbaLSTM(n.spec, n.export_arrays()) for n in (nets[0], _net(9, n_in=21))])


def test_ensemble_step_allocates_nothing():
    """Real-time rule: stepping an ensemble reuses its buffers."""
    import tracemalloc

    live = EnsembleLSTM([NumbaLSTM(n.spec, n.export_arrays()) for n in (_net(0), _net(1))])
    x = np.random.default_rng(0).standard_normal(20).astype(np.float32)
    for _ in range(10):
        live.step(x)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(500):
        live.step(x)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(d.size_diff for d in after.compare_to(before, "filename") if d.size_diff > 0)
    assert grown < 2_000, f"{grown} bytes allocated over 500 steps"


def test_assemble_writes_members_the_registry_finds(tmp_path, capsys):
    """``training.ensemble`` copies one model per folder as NAME, NAME.m1, ... with a card each;
    the registry, the torch loader (with a digest over all members) and a re-assembly agree."""
    srcs = []
    for k in range(3):
        save_model(_net(k), tmp_path / f"run{k}", extra={"delay_frames": 1.0})
        srcs.append(tmp_path / f"run{k}")
    out = tmp_path / "ens"
    assert assemble(srcs, out) == ["beats", "beats.m1", "beats.m2"]
    assert members("beats", out) == (out, ["beats", "beats.m1", "beats.m2"])
    assert (out / "beats.m2.md").read_text().startswith("# beats.m2: member 3 of 3")
    net, meta, digest = load_torch_members("beats", out)
    assert len(net.nets) == 3 and meta["delay_frames"] == 1.0
    _, _, digest_one = load_torch_members("beats", srcs[0])
    assert digest != digest_one
    assert assemble(srcs[:2], out) == ["beats", "beats.m1"]  # a smaller ensemble replaces it
    assert members("beats", out)[1] == ["beats", "beats.m1"]
    # members that do not fit together, or a folder without the model: one line, exit 2
    save_model(_net(5, hidden=4), tmp_path / "other", extra={"delay_frames": 2.0})
    with pytest.raises(ValueError, match="disagree"):
        assemble([srcs[0], tmp_path / "other"], tmp_path / "bad")
    assert main(["--out", str(tmp_path / "bad"), str(tmp_path / "nothing")]) == 2
    assert "holds no beats.safetensors" in capsys.readouterr().err
    with pytest.raises(ValueError, match="ensemble already"):
        assemble([out], tmp_path / "nested")


def test_beat_stage_steps_every_member(tmp_path, monkeypatch):
    """With members beside the beat model, the live stage averages them, and refuses members
    that report a beat at another delay."""
    from onbeat.realtime.beats import BeatStage

    feats = FeatureConfig()
    f = SpectralFeatures(feats)
    f.prepare(CTX)
    fp = feature_fingerprint(feats, CTX.sample_rate_hz)
    nets = [_net(k, n_in=f.layout.dims, hidden=4, features=fp) for k in range(2)]
    for k, n in enumerate(nets):
        save_model(n, tmp_path / f"run{k}", extra={"delay_frames": 1.0})
    assemble([tmp_path / "run0", tmp_path / "run1"], tmp_path / "ens")
    monkeypatch.setenv("ONBEAT_MODELS", str(tmp_path / "ens"))
    stage = BeatStage(
        BeatConfig(source="lstm", bar_model=False), TrackerConfig(), feats, f.layout, hop_size=441
    )
    stage.prepare(CTX)
    assert isinstance(stage.net, EnsembleLSTM) and len(stage.net.nets) == 2
    frames = np.random.default_rng(1).standard_normal((30, f.layout.dims)).astype(np.float32)
    singles = [NumbaLSTM(n.spec, n.export_arrays()) for n in nets]
    for k, fr in enumerate(frames):
        stage.process(fr, (k + 1) * 441, power=1.0)
        want = np.mean([s.step(fr)[0] for s in singles])
        assert stage.activation == pytest.approx(want, abs=1e-5)
    save_model(nets[1], tmp_path / "late", extra={"delay_frames": 3.0})
    for ext in (".safetensors", ".json"):
        (tmp_path / "ens" / f"beats.m1{ext}").write_bytes(
            (tmp_path / "late" / f"beats{ext}").read_bytes()
        )
    stage = BeatStage(
        BeatConfig(source="lstm", bar_model=False), TrackerConfig(), feats, f.layout, hop_size=441
    )
    with pytest.raises(StageError, match="different delays"):
        stage.prepare(CTX)
