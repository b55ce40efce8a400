"""The LSTM's three forward paths agree: sequence (training), torch step, numba step."""

import numpy as np
import pytest
import torch
from onbeat.models.lstm import (
    CausalLSTM,
    LSTMSpec,
    NumbaLSTM,
    load_model,
    save_model,
    torch_from_arrays,
)


def make_net(seed=0):
    torch.manual_seed(seed)
    spec = LSTMSpec(name="beats", n_in=20, hidden=12, layers=2, outputs=("beat", "downbeat"))
    net = CausalLSTM(spec)
    with torch.no_grad():
        net.in_mean.copy_(torch.randn(20))
        net.in_std.copy_(torch.rand(20) + 0.5)
    return net


def test_step_equals_sequence_forward():
    net = make_net()
    x = torch.randn(1, 300, 20)
    with torch.inference_mode():
        seq = torch.sigmoid(net(x))[0]
        state = net.init_state()
        steps = []
        for t in range(300):
            y, state = net.step(x[0, t], state)
            steps.append(y)
    np.testing.assert_allclose(torch.stack(steps).numpy(), seq.numpy(), atol=1e-5)


def test_numba_step_equals_sequence_forward():
    net = make_net(1)
    x = torch.randn(1, 300, 20)
    with torch.inference_mode():
        seq = torch.sigmoid(net(x))[0].numpy()
    fast = NumbaLSTM(net.spec, net.export_arrays())
    xs = x[0].numpy().astype(np.float32)
    out = np.array([fast.step(xs[t]).copy() for t in range(300)])
    np.testing.assert_allclose(out, seq, atol=1e-5)
    fast.reset()
    np.testing.assert_allclose(fast.step(xs[0]), seq[0], atol=1e-5)


def test_save_and_load_roundtrip(tmp_path):
    net = make_net(2)
    path = save_model(net, tmp_path, extra={"card": "test"})
    spec, arrays, meta = load_model(path)
    assert spec == net.spec and meta["card"] == "test"
    net2 = torch_from_arrays(spec, arrays)
    x = torch.randn(1, 50, 20)
    with torch.inference_mode():
        np.testing.assert_allclose(net2(x).numpy(), net(x).numpy(), atol=1e-6)
    fast = NumbaLSTM(spec, arrays)
    with torch.inference_mode():
        ref = torch.sigmoid(net(x))[0].numpy()
    np.testing.assert_allclose(fast.step(x[0, 0].numpy()), ref[0], atol=1e-5)


def test_live_path_never_imports_torch():
    """Start-up stays fast: the engine, stages and streaming models load without torch."""
    import subprocess
    import sys

    code = (
        "import sys, onbeat.realtime.cli, onbeat.realtime.engine, onbeat.realtime.analysis, "
        "onbeat.realtime.beats, onbeat.realtime.neural, onbeat.models.registry; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_every_shipped_weight_file_is_small_and_has_a_card():
    """Issue 3: committed weights stay under 2 MB each, each with its model card."""
    from onbeat.models.registry import WEIGHTS_DIR

    files = sorted(WEIGHTS_DIR.glob("*.safetensors"))
    assert {f.stem for f in files} >= {"onsets", "beats", "bars", "tags"}
    for f in files:
        assert f.stat().st_size < 2_000_000, f"{f.name} is {f.stat().st_size} bytes"
        assert f.with_suffix(".md").exists(), f"{f.name} has no model card"


def test_report_delay_frames_defaults_to_one_frame():
    """Every reader of a model's report delay goes through one function: metadata written
    before look-ahead models existed report on the next frame."""
    from onbeat.models.streaming import report_delay_frames

    assert report_delay_frames({}) == 1.0
    assert report_delay_frames({"delay_frames": 13}) == 13.0
    assert report_delay_frames({"delay_frames": 2.4}) == pytest.approx(2.4)
