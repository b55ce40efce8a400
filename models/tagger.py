"""The windowed tagging CNN: genre, mood quadrant (valence/arousal) and voice from 3 s of log-mel.

One small shared convolutional trunk (five 3×3 conv blocks with batch norm and max pooling, then
mean+max pooling over time and frequency) feeds a 128-d hidden layer, and three heads read it:

* ``genre``: logits over a coarse genre set that people understand (softmax);
* ``quadrant``: logits over Russell's quadrants Q1..Q4 (softmax). Valence and arousal in [-1, 1]
  are the expectations ``p(Q1) + p(Q4) - p(Q2) - p(Q3)`` and ``p(Q1) + p(Q2) - p(Q3) - p(Q4)``;
* ``voice``: the logit of "singing voice present".

The hidden layer, L2-normalised, is the window's embedding (for similarity search later).

The design follows the short-chunk CNNs of the ISMIR 2018 "Deep learning for MIR" tutorial
(part I) and Won et al., "Evaluation of CNN-based automatic music tagging models" (SMC 2020):
small 3×3 kernels and pooling on a mel spectrogram. About 0.24 M parameters and about 55 M
multiply-adds per 3 s window.

The input is the engine's own numba log-mel (:func:`onbeat.realtime.features.log_mel`) with the
parameters in :class:`TaggerSpec`, so training and live inference see the same numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from onbeat.models.tagger_np import GENRES, QUADRANTS, TaggerSpec, mood_from_quadrants
from torch import nn

__all__ = [
    "GENRES",
    "QUADRANTS",
    "TagCNN",
    "TaggerSpec",
    "load_tagger",
    "mood_from_quadrants",
    "save_tagger",
]


class TagCNN(nn.Module):
    """Shared conv trunk + genre / quadrant / voice heads (logits) + embedding.

    Parameters
    ----------
    spec : TaggerSpec
        Shapes and labels.
    """

    in_mean: torch.Tensor
    in_std: torch.Tensor

    def __init__(self, spec: TaggerSpec) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("in_mean", torch.zeros(spec.n_mels))
        self.register_buffer("in_std", torch.ones(spec.n_mels))
        blocks: list[nn.Module] = []
        c_in = 1
        for i, c in enumerate(spec.channels):
            blocks += [
                nn.Conv2d(c_in, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
            ]
            if i < len(spec.channels) - 1:  # pool after every block but the last
                blocks.append(nn.MaxPool2d(2))
            c_in = c
        self.trunk = nn.Sequential(*blocks)
        self.hidden = nn.Sequential(
            nn.Linear(2 * c_in, spec.hidden), nn.BatchNorm1d(spec.hidden), nn.ReLU(inplace=True)
        )
        self.drop = nn.Dropout(spec.dropout)
        self.genre = nn.Linear(spec.hidden, len(spec.genres))
        self.quadrant = nn.Linear(spec.hidden, len(spec.quadrants))
        self.voice = nn.Linear(spec.hidden, 1)

    def trunk_map(self, mel: torch.Tensor) -> torch.Tensor:
        """The conv trunk's output map (the similarity head's input):
        ``(batch, frames, n_mels)`` → ``(batch, channels[-1], mel groups, frame groups)``."""
        x = (mel - self.in_mean) / self.in_std
        out: torch.Tensor = self.trunk(x.transpose(1, 2).unsqueeze(1))  # (batch, 1, mels, frames)
        return out

    @staticmethod
    def pool(x: torch.Tensor) -> torch.Tensor:
        """Mean and max of a trunk map over time and frequency, ``(batch, 2 * channels)``."""
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)

    def pooled(self, mel: torch.Tensor) -> torch.Tensor:
        """The pooled trunk output the hidden layer reads: ``(batch, 2 * channels[-1])``."""
        return self.pool(self.trunk_map(mel))

    def embed(self, mel: torch.Tensor) -> torch.Tensor:
        """Hidden layer of ``mel`` windows: ``(batch, frames, n_mels)`` → ``(batch, hidden)``."""
        out: torch.Tensor = self.hidden(self.pooled(mel))
        return out

    def forward(self, mel: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits of every head, the (unnormalised) embedding and the trunk's output map."""
        trunk_map = self.trunk_map(mel)
        h = self.hidden(self.pool(trunk_map))
        d = self.drop(h)
        return {
            "genre": self.genre(d),
            "quadrant": self.quadrant(d),
            "voice": self.voice(d)[:, 0],
            "embedding": h,
            "trunk_map": trunk_map,
        }


def save_module(
    net: nn.Module,
    spec: Any,
    directory: str | Path,
    extra: dict[str, Any] | None = None,
    *,
    half: bool = False,
) -> Path:
    """Write ``NAME.safetensors`` (state dict; float16 with ``half``) and ``NAME.json`` (spec +
    model card data) for a module whose ``spec`` has ``name`` and ``to_json()``."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{spec.name}.safetensors"
    state = {
        k: (v.detach().cpu().half() if half else v.detach().cpu()).contiguous()
        for k, v in net.state_dict().items()
    }
    save_file(state, str(path))
    meta = {"spec": spec.to_json(), **(extra or {})}
    (d / f"{spec.name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def save_tagger(net: TagCNN, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``NAME.safetensors`` (state dict) and ``NAME.json`` (spec + model card data)."""
    return save_module(net, net.spec, directory, extra)


def load_tagger(path: str | Path) -> tuple[TagCNN, dict[str, Any]]:
    """Load a tagger saved by :func:`save_tagger` (eval mode) and its metadata.

    Parameters
    ----------
    path : path
        The ``.safetensors`` file; its ``.json`` sits beside it.
    """
    from safetensors.torch import load_file

    p = Path(path)
    meta = json.loads(p.with_suffix(".json").read_text())
    spec = TaggerSpec.from_json(meta["spec"])
    net = TagCNN(spec)
    net.load_state_dict(load_file(str(p)))
    net.eval()
    return net, meta
