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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
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

#: The coarse genre set (display names; OSC addresses are made from them).
GENRES: tuple[str, ...] = (
    "rock/metal",
    "pop",
    "electronic/dance",
    "hip-hop/r&b",
    "jazz/blues",
    "classical",
    "folk/country",
    "latin/reggae",
    "ambient/new age",
)
#: Russell quadrants: Q1 +valence +arousal, Q2 -valence +arousal, Q3 -/-, Q4 +valence -arousal.
QUADRANTS: tuple[str, ...] = ("Q1", "Q2", "Q3", "Q4")


@dataclass(frozen=True, slots=True)
class TaggerSpec:
    """Input and shape of a tagging CNN.

    Attributes
    ----------
    name : str
        Weights file stem.
    sample_rate_hz : int
        Rate of the audio the log-mel is computed at.
    n_fft, hop_size : int
        Mel frame size and hop (samples).
    n_mels : int
        Mel bands.
    fmax_hz : float
        Upper edge of the mel filterbank.
    log_mul : float
        Compression ``log10(1 + log_mul * mel)``.
    window_s : float
        Audio per window.
    channels : tuple of int
        Output channels of the conv blocks.
    hidden : int
        Width of the hidden (embedding) layer.
    genres, quadrants : tuple of str
        Head labels.
    dropout : float
        Dropout before the heads (training only).
    """

    name: str = "tags"
    sample_rate_hz: int = 44100
    n_fft: int = 2048
    hop_size: int = 882
    n_mels: int = 96
    fmax_hz: float = 11025.0
    log_mul: float = 1000.0
    window_s: float = 3.0
    channels: tuple[int, ...] = (16, 32, 64, 96, 128)
    hidden: int = 128
    genres: tuple[str, ...] = GENRES
    quadrants: tuple[str, ...] = QUADRANTS
    dropout: float = 0.3

    def __post_init__(self) -> None:
        if self.sample_rate_hz <= 0 or self.hop_size <= 0 or self.n_fft < 64:
            raise ValueError("sample_rate_hz and hop_size must be positive and n_fft >= 64")
        if not 0 < self.fmax_hz <= self.sample_rate_hz / 2:
            raise ValueError("fmax_hz must be in (0, sample_rate_hz / 2]")
        if self.window_samples < self.n_fft:
            raise ValueError("window_s is shorter than one FFT frame")
        if len(self.channels) < 1 or min(self.channels) < 1 or self.hidden < 1:
            raise ValueError("channels and hidden must be positive")
        if len(self.quadrants) != 4:
            raise ValueError("quadrants must name Russell's four quadrants")

    @property
    def window_samples(self) -> int:
        """Audio samples per window."""
        return round(self.window_s * self.sample_rate_hz)

    @property
    def frames(self) -> int:
        """Mel frames per window (frames start at sample 0, no padding)."""
        return 1 + (self.window_samples - self.n_fft) // self.hop_size

    def filterbank(self) -> Any:
        """The mel filterbank of this input (build once, pass to :meth:`log_mel`)."""
        from onbeat.realtime.filterbanks import mel_filterbank

        return mel_filterbank(
            n_fft=self.n_fft,
            sample_rate_hz=self.sample_rate_hz,
            n_mels=self.n_mels,
            fmax_hz=self.fmax_hz,
        )

    def log_mel(self, audio: npt.NDArray[np.float32], filterbank: Any) -> npt.NDArray[np.float32]:
        """The network's input for mono ``audio`` at :attr:`sample_rate_hz` (the engine's numba
        log-mel), shape ``(frames, n_mels)``."""
        from onbeat.realtime.features import log_mel

        return log_mel(
            audio,
            sample_rate_hz=self.sample_rate_hz,
            n_fft=self.n_fft,
            hop_size=self.hop_size,
            n_mels=self.n_mels,
            fmax_hz=self.fmax_hz,
            log_mul=self.log_mul,
            filterbank=filterbank,
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TaggerSpec:
        """Inverse of :meth:`to_json` (lists become tuples)."""
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)


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


def mood_from_quadrants(p: npt.ArrayLike) -> tuple[float, float]:
    """Valence and arousal in [-1, 1] as expectations over quadrant probabilities Q1..Q4."""
    q = np.asarray(p, dtype=np.float64)
    return float(q[0] + q[3] - q[1] - q[2]), float(q[0] + q[1] - q[2] - q[3])


def save_tagger(net: TagCNN, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``NAME.safetensors`` (state dict) and ``NAME.json`` (spec + model card data)."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{net.spec.name}.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(path))
    meta = {"spec": net.spec.to_json(), **(extra or {})}
    (d / f"{net.spec.name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


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
