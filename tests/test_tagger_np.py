"""The NumPy tagger and similarity head equal the torch modules on the shipped weights."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from onbeat.models.registry import WEIGHTS_DIR
from onbeat.models.similarity import load_head, pool_trunk
from onbeat.models.tagger import load_tagger
from onbeat.models.tagger_np import (
    POOLS,
    load_head_np,
    load_tagger_np,
    pool_trunk_np,
    sigmoid,
    softmax,
)

TAGS = WEIGHTS_DIR / "tags.safetensors"
HEAD = WEIGHTS_DIR / "similarity.safetensors"
ATOL = 1e-4

pytestmark = pytest.mark.skipif(
    not (TAGS.exists() and HEAD.exists()), reason="no shipped tagger / similarity weights"
)


def _synthetic_mels(n: int) -> np.ndarray:
    """Real-ish log-mel windows: the engine's own log-mel of a few synthetic songs."""
    spec = load_tagger_np(TAGS)[0].spec
    fb = spec.filterbank()
    rng = np.random.default_rng(3)
    t = np.arange(spec.window_samples) / spec.sample_rate_hz
    mels = []
    for i in range(n):
        f0 = 110.0 * 2 ** (i / 3)
        beat = (np.sin(2 * np.pi * (1.5 + 0.5 * i) * t) > 0.9).astype(np.float64)
        x = 0.2 * np.sin(2 * np.pi * f0 * t) * (0.3 + beat) + 0.02 * rng.standard_normal(t.size)
        x += 0.1 * np.sin(2 * np.pi * 3 * f0 * t) * np.exp(-((t % 0.5) * 8))
        mels.append(spec.log_mel(x.astype(np.float32), fb))
    return np.stack(mels).astype(np.float32)


def _random_mels(n: int) -> np.ndarray:
    spec = load_tagger_np(TAGS)[0].spec
    rng = np.random.default_rng(0)
    return (1.5 * rng.standard_normal((n, spec.frames, spec.n_mels)) + 1.0).astype(np.float32)


@pytest.mark.parametrize("kind", ["random", "synthetic"])
def test_numpy_tagger_equals_torch(kind: str) -> None:
    net, _ = load_tagger(TAGS)
    head, _ = load_head(HEAD)
    net_np, meta = load_tagger_np(TAGS)
    head_np, _ = load_head_np(HEAD)
    assert net_np.spec == net.spec and head_np.spec == head.spec
    assert meta["spec"]["name"] == "tags"
    mel = _random_mels(3) if kind == "random" else _synthetic_mels(4)
    with torch.inference_mode():
        ref = net(torch.from_numpy(mel))
        ref_sim = head.from_trunk(ref["trunk_map"]).numpy()
        ref_embed = net.embed(torch.from_numpy(mel)).numpy()
    out = net_np(mel)
    assert set(out) == set(ref)
    for k, v in ref.items():
        assert out[k].shape == tuple(v.shape), k
        assert out[k].dtype == np.float32, k
        np.testing.assert_allclose(out[k], v.numpy(), atol=ATOL, rtol=0, err_msg=k)
    np.testing.assert_allclose(net_np.embed(mel), ref_embed, atol=ATOL, rtol=0)
    sim = head_np.from_trunk(out["trunk_map"])
    assert sim.shape == ref_sim.shape == (mel.shape[0], head.spec.dim)
    np.testing.assert_allclose(sim, ref_sim, atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(sim, axis=1), 1.0, atol=1e-5)
    # the probabilities the live worker publishes
    g = torch.softmax(ref["genre"], 1).numpy()
    np.testing.assert_allclose(softmax(out["genre"]), g, atol=1e-5)
    v = torch.sigmoid(ref["voice"]).numpy()
    np.testing.assert_allclose(sigmoid(out["voice"]), v, atol=1e-5)
    # batch of one equals the row of the batch
    one = net_np(mel[1:2])
    np.testing.assert_allclose(one["genre"][0], out["genre"][1], atol=1e-5)


@pytest.mark.parametrize("pool", POOLS)
def test_pool_trunk_np_equals_torch(pool: str) -> None:
    x = np.random.default_rng(1).standard_normal((2, 8, 6, 9)).astype(np.float32)
    want = pool_trunk(torch.from_numpy(x), pool).numpy()
    np.testing.assert_allclose(pool_trunk_np(x, pool), want, atol=1e-6)
    with pytest.raises(ValueError, match="unknown pooling"):
        pool_trunk_np(x, "nope")


def test_max_pool_floor_semantics_on_odd_sizes() -> None:
    """Odd frame counts (148 → 74 → 37 → 18 → 9) are floored, as in ``nn.MaxPool2d(2)``."""
    net_np, _ = load_tagger_np(TAGS)
    spec = net_np.spec
    mel = _random_mels(1)[:, :147]  # odd frames from the start
    net, _ = load_tagger(TAGS)
    with torch.inference_mode():
        ref = net.trunk_map(torch.from_numpy(np.ascontiguousarray(mel))).numpy()
    got = net_np.trunk_map(mel)
    assert got.shape == ref.shape
    assert got.shape[1] == spec.channels[-1]
    np.testing.assert_allclose(got, ref, atol=ATOL, rtol=0)


def test_importing_tagger_np_does_not_import_torch() -> None:
    code = "import onbeat.models.tagger_np, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)


def test_live_modules_and_prepared_tagger_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import onbeat.realtime.engine, onbeat.realtime.tags, onbeat.realtime.library\n"
        "from onbeat.realtime.config import TagsConfig\n"
        "from onbeat.realtime.tags import Tagger\n"
        "t = Tagger(TagsConfig(), sample_rate_hz=44100, inline=True)\n"
        "t.prepare()\n"
        "assert t._similarity is not None\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)


def test_timing_of_one_window(capsys: pytest.CaptureFixture[str]) -> None:
    """Both paths on one 3 s window (printed, not asserted)."""
    net, _ = load_tagger(TAGS)
    head, _ = load_head(HEAD)
    net_np, _ = load_tagger_np(TAGS)
    head_np, _ = load_head_np(HEAD)
    mel = _synthetic_mels(1)
    n = 20
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            xt = torch.from_numpy(mel)
            head.from_trunk(net(xt)["trunk_map"])
            t0 = time.perf_counter()
            for _ in range(n):
                head.from_trunk(net(xt)["trunk_map"])
            t_torch = (time.perf_counter() - t0) / n
    finally:
        torch.set_num_threads(threads)
    head_np.from_trunk(net_np(mel)["trunk_map"])
    t0 = time.perf_counter()
    for _ in range(n):
        head_np.from_trunk(net_np(mel)["trunk_map"])
    t_np = (time.perf_counter() - t0) / n
    with capsys.disabled():
        print(f"\n3 s window: numpy {t_np * 1e3:.2f} ms, torch (1 thread) {t_torch * 1e3:.2f} ms")
