"""Offline bidirectional beat model: the teacher for pseudo-labelling real recordings.

The live beat model is causal and trained on renders of MIDI; on real mixes it confuses metrical
levels (it fires on off-beats). A bidirectional LSTM sees the future as well as the past, so it
can settle a metrical level from a whole phrase. It never runs live: it labels unlabelled real
recordings offline (noisy-student training, Xie et al. 2020), and only after it has been checked
against the annotated sets (``python -m onbeat.training.beat_teacher --check``).

The network mirrors :class:`onbeat.models.lstm.CausalLSTM` (input standardisation, stacked LSTM,
linear read-out) with ``bidirectional=True``; :func:`onbeat.training.loop.train` trains it through
its ``make_net`` hook (``onbeat train beats --bidirectional``). Its weights stay under ``runs/``:
they are a training tool, not a shipped model.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from onbeat.models.lstm import CausalLSTM, LSTMSpec
from torch import nn

__all__ = ["BiLSTMTeacher", "load_teacher", "save_teacher"]


class BiLSTMTeacher(CausalLSTM):
    """:class:`CausalLSTM` (standardise, stacked LSTM, linear read-out) made bidirectional.

    Parameters
    ----------
    spec : LSTMSpec
        Shapes and output names (``hidden`` units per direction).
    """

    def __init__(self, spec: LSTMSpec) -> None:
        super().__init__(spec)
        self.lstm = nn.LSTM(
            spec.n_in,
            spec.hidden,
            num_layers=spec.layers,
            batch_first=True,
            bidirectional=True,
            dropout=spec.dropout if spec.layers > 1 else 0.0,
        )
        self.head = nn.Linear(2 * spec.hidden, len(spec.outputs))

    def step(self, x: torch.Tensor, state: Any) -> Any:
        """Not available: a bidirectional network cannot stream."""
        raise NotImplementedError("the bidirectional teacher runs offline only")

    def export_arrays(self) -> Any:
        """Not available: the teacher is never exported for the live engine."""
        raise NotImplementedError("the bidirectional teacher is never shipped")


def save_teacher(net: BiLSTMTeacher, directory: str | Path, extra: dict[str, Any]) -> Path:
    """Write ``teacher.safetensors`` (torch state) and ``teacher.json`` (spec and ``extra``)."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / "teacher.safetensors"
    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(path))
    (d / "teacher.json").write_text(
        json.dumps({"spec": asdict(net.spec), **extra}, indent=2) + "\n"
    )
    return path


def load_teacher(directory: str | Path) -> BiLSTMTeacher:
    """The teacher saved by :func:`save_teacher`, in eval mode."""
    from safetensors.torch import load_file

    d = Path(directory)
    meta = json.loads((d / "teacher.json").read_text())
    spec_d = dict(meta["spec"])
    spec_d["outputs"] = tuple(spec_d["outputs"])
    net = BiLSTMTeacher(LSTMSpec(**spec_d))
    net.load_state_dict(load_file(str(d / "teacher.safetensors")))
    return net.eval()


def load_teachers(spec: str | Path) -> nn.Module:
    """One teacher folder, or several joined by ``+`` (``runs/export_bt3+runs/export_bt4``):
    their sigmoid activations averaged (:class:`onbeat.models.lstm.MeanOfMembers`), in eval
    mode. A teacher ensemble labels with fewer of any one run's errors."""
    from onbeat.models.lstm import MeanOfMembers

    parts = [p for p in str(spec).split("+") if p]
    if not parts:
        raise ValueError("no teacher folder given")
    nets = [load_teacher(p) for p in parts]
    if len({n.spec.features for n in nets}) > 1:
        raise ValueError(f"teachers {parts} read different features")
    return MeanOfMembers(list(nets)).eval()  # type: ignore[arg-type]
