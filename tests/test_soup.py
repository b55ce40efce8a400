"""Weight-space interpolation of a fine-tune with its base (``training/soup.py``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from onbeat.models.lstm import CausalLSTM, LSTMSpec, NumbaLSTM, load_model, save_model
from onbeat.training.soup import interpolate, main

SPEC = LSTMSpec(name="beats", n_in=10, hidden=8, layers=2, outputs=("beat", "downbeat"))


def _net(seed: int, mean: float, std: float) -> CausalLSTM:
    torch.manual_seed(seed)
    net = CausalLSTM(SPEC)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.4)
        net.in_mean.copy_(torch.linspace(-mean, mean, SPEC.n_in))
        net.in_std.copy_(torch.linspace(std, 2 * std, SPEC.n_in))
    return net.eval()


def _run(net: CausalLSTM, x: torch.Tensor) -> np.ndarray:
    """Sigmoid outputs of a sequence."""
    with torch.no_grad():
        return torch.sigmoid(net(x)).numpy()


@pytest.fixture()
def parents() -> tuple[CausalLSTM, CausalLSTM, torch.Tensor]:
    base = _net(0, 1.0, 0.5)
    tuned = _net(1, 3.0, 2.0)  # another input standardisation, as a model trained on more data
    x = torch.randn(2, 30, SPEC.n_in) * 2 + 0.5
    return base, tuned, x


def test_ends_of_the_line_are_the_parents(parents):
    """alpha 0 is the base model and alpha 1 the tuned one, as functions of the raw input, even
    though the tuned model standardises its input differently."""
    base, tuned, x = parents
    np.testing.assert_allclose(_run(interpolate(base, tuned, 0.0), x), _run(base, x), atol=1e-5)
    np.testing.assert_allclose(_run(interpolate(base, tuned, 1.0), x), _run(tuned, x), atol=1e-4)


def test_midpoint_mixes_the_weights(parents):
    """Layers after the first are the plain weighted mean of the parents' weights."""
    base, tuned, _ = parents
    mid = interpolate(base, tuned, 0.3)
    for k in ("lstm.weight_hh_l1", "head.weight", "head.bias"):
        want = 0.7 * base.state_dict()[k] + 0.3 * tuned.state_dict()[k]
        torch.testing.assert_close(mid.state_dict()[k], want)
    torch.testing.assert_close(mid.in_std, base.in_std)


def test_rejects_other_shapes_and_alphas(parents):
    base, _, _ = parents
    other = CausalLSTM(LSTMSpec(name="beats", n_in=10, hidden=6, layers=2, outputs=SPEC.outputs))
    with pytest.raises(ValueError, match="shape"):
        interpolate(base, other, 0.5)
    with pytest.raises(ValueError, match="alpha"):
        interpolate(base, base, 1.5)


def test_command_writes_a_loadable_model_with_its_recipe(parents, tmp_path, capsys):
    """The command writes weights the streaming step loads, equal to the torch module, and a
    card naming both parents; a missing parent is a one-line error."""
    base, tuned, x = parents
    save_model(base, tmp_path / "a", {"epoch": 3})
    save_model(tuned, tmp_path / "b", {"epoch": 9, "training_command": "onbeat train beats"})
    out = tmp_path / "soup"
    argv = ["--base", str(tmp_path / "a"), "--tuned", str(tmp_path / "b"), "--alpha", "0.5"]
    assert main([*argv, "--out", str(out)]) == 0
    meta = json.loads((out / "beats.json").read_text())
    assert meta["soup"]["alpha"] == 0.5 and meta["training_command"] == "onbeat train beats"
    spec, arrays, _ = load_model(out / "beats.safetensors")
    stream = NumbaLSTM(spec, arrays)
    want = _run(interpolate(base, tuned, 0.5), x[:1])[0]
    got = np.stack([stream.step(f.numpy()).copy() for f in x[0]])
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert main(["--base", str(tmp_path / "nope"), *argv[2:], "--out", str(out)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
