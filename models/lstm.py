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
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from onbeat.models.streaming import LSTMSpec, NumbaLSTM, load_model
from torch import nn

__all__ = [
    "CausalLSTM",
    "LSTMSpec",
    "MeanOfMembers",
    "NumbaLSTM",
    "load_model",
    "load_torch_members",
    "save_model",
    "torch_state",
]

State = list[tuple[torch.Tensor, torch.Tensor]]


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
        return self.head(self.drop(self.hidden(x)))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The last LSTM layer's outputs ``(batch, frames, hidden)`` for a sequence (what the
        read-out sees, before its dropout); training attaches auxiliary heads here."""
        z = self.drop((x - self.in_mean) / self.in_std)
        h, _ = self.lstm(z)
        return h

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


def torch_state(arrays: dict[str, npt.NDArray[np.float32]]) -> dict[str, torch.Tensor]:
    """The torch state dict kept in a saved file's ``torch.*`` entries."""
    return {
        k[len("torch.") :]: torch.from_numpy(np.array(v))
        for k, v in arrays.items()
        if k.startswith("torch.")
    }


def torch_from_arrays(spec: LSTMSpec, arrays: dict[str, npt.NDArray[np.float32]]) -> CausalLSTM:
    """Rebuild the torch module from a saved file's ``torch.*`` entries."""
    net = CausalLSTM(spec)
    net.load_state_dict(torch_state(arrays))
    return net


class MeanOfMembers(nn.Module):
    """An ensemble in torch: logits of the mean of the members' sigmoid activations, so a
    sigmoid of its output is what :class:`~onbeat.models.streaming.EnsembleLSTM` computes live.

    Parameters
    ----------
    nets : sequence of CausalLSTM
        The members.
    """

    def __init__(self, nets: list[CausalLSTM]) -> None:
        super().__init__()
        if not nets:
            raise ValueError("an ensemble needs at least one member")
        self.nets = nn.ModuleList(nets)
        self.spec = nets[0].spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, frames, outputs)`` of the members' mean activation."""
        if len(self.nets) == 1:
            out: torch.Tensor = self.nets[0](x)
            return out
        p = torch.stack([torch.sigmoid(n(x)) for n in self.nets]).mean(0)
        return torch.logit(p, eps=1e-7)


def load_torch_members(
    name: str, directory: Path | None = None
) -> tuple[MeanOfMembers, dict[str, object], str]:
    """Model ``name`` (every ensemble member, :func:`onbeat.models.registry.members`) in torch,
    in eval mode: the module, the first member's metadata and a digest of all members' files."""
    import hashlib

    from onbeat.models.registry import load_lstm, member_paths, members

    d, names = members(name, directory)
    nets, meta = [], {}
    for k, n in enumerate(names):
        spec, arrays, m = load_lstm(n, d)
        nets.append(torch_from_arrays(spec, arrays))
        if k == 0:
            meta = m
    h = hashlib.sha1()
    for f in member_paths(name, d):
        h.update(f.read_bytes())
    return MeanOfMembers(nets).eval(), meta, h.hexdigest()[:12]
