"""Causal (unidirectional) LSTM networks for online onset and beat/downbeat activation.

:class:`CausalLSTM` has two forward paths that agree to 1e-5 (``tests/test_models.py``):

* :meth:`CausalLSTM.forward` over a whole ``(batch, frames, features)`` sequence, for training;
* :meth:`CausalLSTM.step` for streaming, one frame at a time, with the recurrent state passed
  explicitly: ``y, state = net.step(x, state)``.

For live inference :class:`NumbaLSTM` runs the same exported weights in a numba kernel, one frame
per call, with every buffer preallocated: no torch call per frame, no per-frame allocation.

The architecture follows Böck et al. (2012, online onset detection with RNNs) and the online beat
models of madmom: input standardisation, stacked unidirectional LSTM layers, a linear read-out
with a sigmoid per output.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import torch
from torch import nn

__all__ = ["CausalLSTM", "LSTMSpec", "NumbaLSTM", "load_model", "save_model"]

State = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True, slots=True)
class LSTMSpec:
    """Shape and meaning of a :class:`CausalLSTM`.

    Attributes
    ----------
    name : str
        Registry name (``"onsets"``, ``"beats"``).
    n_in : int
        Input features per frame.
    hidden : int
        LSTM units per layer.
    layers : int
        Stacked LSTM layers.
    outputs : tuple of str
        Output names, one sigmoid each (e.g. ``("beat", "downbeat")``).
    frame_rate_hz : float
        Frames per second the model was trained at.
    features : str
        Fingerprint of the feature configuration it was trained on.
    dropout : float
        Dropout on the input and between layers, in training only.
    """

    name: str
    n_in: int
    hidden: int
    layers: int
    outputs: tuple[str, ...]
    frame_rate_hz: float = 100.0
    features: str = ""
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.n_in < 1 or self.hidden < 1 or self.layers < 1 or not self.outputs:
            raise ValueError(f"invalid LSTM spec {self}")


class CausalLSTM(nn.Module):
    """Standardise, stacked unidirectional LSTM, linear read-out (logits).

    Parameters
    ----------
    spec : LSTMSpec
        Shapes and output names.
    """

    in_mean: torch.Tensor
    in_std: torch.Tensor

    def __init__(self, spec: LSTMSpec) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("in_mean", torch.zeros(spec.n_in))
        self.register_buffer("in_std", torch.ones(spec.n_in))
        self.drop = nn.Dropout(spec.dropout)
        self.lstm = nn.LSTM(
            spec.n_in,
            spec.hidden,
            num_layers=spec.layers,
            batch_first=True,
            dropout=spec.dropout if spec.layers > 1 else 0.0,
        )
        self.head = nn.Linear(spec.hidden, len(spec.outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a sequence.

        Parameters
        ----------
        x : Tensor, shape (batch, frames, n_in)

        Returns
        -------
        Tensor, shape (batch, frames, n_outputs)
        """
        z = self.drop((x - self.in_mean) / self.in_std)
        h, _ = self.lstm(z)
        return self.head(self.drop(h))

    def init_state(self) -> State:
        """Zero state for :meth:`step`."""
        s = self.spec
        return [(torch.zeros(s.hidden), torch.zeros(s.hidden)) for _ in range(s.layers)]

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One frame: ``(n_in,)`` in, sigmoid outputs ``(n_outputs,)`` and the new state out."""
        z = (x - self.in_mean) / self.in_std
        new: State = []
        for layer, (h, c) in enumerate(state):
            w_ih = getattr(self.lstm, f"weight_ih_l{layer}")
            w_hh = getattr(self.lstm, f"weight_hh_l{layer}")
            b = getattr(self.lstm, f"bias_ih_l{layer}") + getattr(self.lstm, f"bias_hh_l{layer}")
            gates = w_ih @ z + w_hh @ h + b
            i, f, g, o = gates.chunk(4)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            new.append((h, c))
            z = h
        return torch.sigmoid(self.head(z)), new

    def export_arrays(self) -> dict[str, npt.NDArray[np.float32]]:
        """Weights as float32 arrays for :class:`NumbaLSTM` (input scaling folded in)."""
        out: dict[str, npt.NDArray[np.float32]] = {}
        with torch.no_grad():
            std = self.in_std.clamp_min(1e-8)
            for layer in range(self.spec.layers):
                w_ih = getattr(self.lstm, f"weight_ih_l{layer}").detach().clone()
                b = (
                    (
                        getattr(self.lstm, f"bias_ih_l{layer}")
                        + getattr(self.lstm, f"bias_hh_l{layer}")
                    )
                    .detach()
                    .clone()
                )
                if layer == 0:  # fold (x - mean) / std into the first layer
                    b = b - w_ih @ (self.in_mean / std)
                    w_ih = w_ih / std
                out[f"w_ih{layer}"] = w_ih.numpy().astype(np.float32)
                out[f"w_hh{layer}"] = getattr(self.lstm, f"weight_hh_l{layer}").detach().numpy()
                out[f"b{layer}"] = b.numpy().astype(np.float32)
            out["w_out"] = self.head.weight.detach().numpy().astype(np.float32)
            out["b_out"] = self.head.bias.detach().numpy().astype(np.float32)
        return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


@numba.njit(cache=True, nogil=True, fastmath=False)
def _lstm_layer(
    x: npt.NDArray[np.float32],
    w_ih: npt.NDArray[np.float32],
    w_hh: npt.NDArray[np.float32],
    b: npt.NDArray[np.float32],
    h: npt.NDArray[np.float32],
    c: npt.NDArray[np.float32],
    gates: npt.NDArray[np.float32],
) -> None:  # pragma: no cover - compiled
    n = h.shape[0]
    n_in = x.shape[0]
    for r in range(4 * n):
        acc = b[r]
        for k in range(n_in):
            acc += w_ih[r, k] * x[k]
        for k in range(n):
            acc += w_hh[r, k] * h[k]
        gates[r] = acc
    for j in range(n):
        i = 1.0 / (1.0 + np.exp(-gates[j]))
        f = 1.0 / (1.0 + np.exp(-gates[n + j]))
        g = np.tanh(gates[2 * n + j])
        o = 1.0 / (1.0 + np.exp(-gates[3 * n + j]))
        c[j] = f * c[j] + i * g
        h[j] = o * np.tanh(c[j])


@numba.njit(cache=True, nogil=True)
def _readout(
    h: npt.NDArray[np.float32],
    w: npt.NDArray[np.float32],
    b: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
) -> None:  # pragma: no cover - compiled
    for r in range(out.shape[0]):
        acc = b[r]
        for k in range(h.shape[0]):
            acc += w[r, k] * h[k]
        out[r] = 1.0 / (1.0 + np.exp(-acc))


class NumbaLSTM:
    """Frame-by-frame inference of an exported :class:`CausalLSTM` in numba.

    Parameters
    ----------
    spec : LSTMSpec
        Shapes.
    arrays : dict of str to ndarray
        From :meth:`CausalLSTM.export_arrays` (or a safetensors file).
    """

    def __init__(self, spec: LSTMSpec, arrays: dict[str, npt.NDArray[np.float32]]) -> None:
        self.spec = spec
        self._w_ih = [np.ascontiguousarray(arrays[f"w_ih{i}"]) for i in range(spec.layers)]
        self._w_hh = [np.ascontiguousarray(arrays[f"w_hh{i}"]) for i in range(spec.layers)]
        self._b = [np.ascontiguousarray(arrays[f"b{i}"]) for i in range(spec.layers)]
        self._w_out = np.ascontiguousarray(arrays["w_out"])
        self._b_out = np.ascontiguousarray(arrays["b_out"])
        self._h = np.zeros((spec.layers, spec.hidden), dtype=np.float32)
        self._c = np.zeros((spec.layers, spec.hidden), dtype=np.float32)
        self._gates = np.zeros(4 * spec.hidden, dtype=np.float32)
        self.output = np.zeros(len(spec.outputs), dtype=np.float32)
        self.step(np.zeros(spec.n_in, dtype=np.float32))  # compile / load from cache
        self.reset()

    def reset(self) -> None:
        """Zero the recurrent state."""
        self._h.fill(0.0)
        self._c.fill(0.0)
        self.output.fill(0.0)

    def step(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Advance one frame; returns :attr:`output` (sigmoid activations), reused each call.

        Real-time safety: numba calls on preallocated buffers; no allocation.
        """
        z = x
        for i in range(self.spec.layers):
            _lstm_layer(
                z, self._w_ih[i], self._w_hh[i], self._b[i], self._h[i], self._c[i], self._gates
            )
            z = self._h[i]
        _readout(z, self._w_out, self._b_out, self.output)
        return self.output


def save_model(net: CausalLSTM, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``NAME.safetensors`` (exported arrays and torch state) and ``NAME.json`` (spec)."""
    from safetensors.numpy import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    arrays = net.export_arrays()
    state = {f"torch.{k}": v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    path = d / f"{net.spec.name}.safetensors"
    save_file({**arrays, **state}, str(path))
    meta = {"spec": asdict(net.spec), **(extra or {})}
    (d / f"{net.spec.name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def load_model(
    path: str | Path,
) -> tuple[LSTMSpec, dict[str, npt.NDArray[np.float32]], dict[str, Any]]:
    """Read a model written by :func:`save_model`: its spec, arrays, and metadata."""
    from safetensors.numpy import load_file

    p = Path(path)
    meta = json.loads(p.with_suffix(".json").read_text())
    s = meta["spec"]
    spec = LSTMSpec(**{**s, "outputs": tuple(s["outputs"])})
    return spec, load_file(str(p)), meta


def torch_from_arrays(spec: LSTMSpec, arrays: dict[str, npt.NDArray[np.float32]]) -> CausalLSTM:
    """Rebuild the torch module from a saved file's ``torch.*`` entries."""
    net = CausalLSTM(spec)
    state = {
        k[len("torch.") :]: torch.from_numpy(np.array(v))
        for k, v in arrays.items()
        if k.startswith("torch.")
    }
    net.load_state_dict(state)
    return net
