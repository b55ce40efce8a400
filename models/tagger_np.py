"""Torch-free inference of the tagging CNN and its similarity head (NumPy, float32).

The live path (``onbeat.realtime.tags``, ``onbeat.realtime.library``) imports only this module,
never torch: importing torch costs more than a second and a few hundred MB at start-up, and is
needed for training only. The weights are the same ``tags.safetensors`` and
``similarity.safetensors`` files (read with :mod:`safetensors.numpy`); every batch norm (eval
mode: running statistics) is folded into the convolution or linear layer before it at load time.
A 3×3 convolution (padding 1) is an im2col (a strided view of the padded map, copied once) and
one float32 matrix product, channels-last; max pooling keeps PyTorch's floor semantics.
``tests/test_tagger_np.py`` proves the outputs equal :class:`onbeat.models.tagger.TagCNN` and
:class:`onbeat.models.similarity.SimilarityHead`.

The specs (:class:`TaggerSpec`, :class:`SimilaritySpec`), label sets and
:func:`mood_from_quadrants` live here so that the live path reads them without torch;
``onbeat.models.tagger`` and ``onbeat.models.similarity`` re-export them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "GENRES",
    "POOLS",
    "QUADRANTS",
    "NumpySimilarity",
    "NumpySimilarityHead",
    "NumpyTagCNN",
    "SimilaritySpec",
    "TaggerSpec",
    "load_head_np",
    "load_tagger_np",
    "mood_from_quadrants",
    "pool_trunk_np",
    "sigmoid",
    "softmax",
]

F32 = npt.NDArray[np.float32]

#: Epsilon of ``nn.BatchNorm1d``/``nn.BatchNorm2d`` and ``nn.LayerNorm`` (PyTorch's default).
NORM_EPS = 1e-5

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

    @property
    def input_key(self) -> tuple[Any, ...]:
        """What defines the network's input (rate, FFT, hop, mels, range, log, window): two
        nets with equal keys read the same log-mel, so one mel can feed both."""
        return (
            self.sample_rate_hz,
            self.n_fft,
            self.hop_size,
            self.n_mels,
            self.fmax_hz,
            self.log_mul,
            self.window_s,
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TaggerSpec:
        """Inverse of :meth:`to_json` (lists become tuples)."""
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)


def mood_from_quadrants(p: npt.ArrayLike) -> tuple[float, float]:
    """Valence and arousal in [-1, 1] as expectations over quadrant probabilities Q1..Q4."""
    q = np.asarray(p, dtype=np.float64)
    return float(q[0] + q[3] - q[1] - q[2]), float(q[0] + q[1] - q[2] - q[3])


#: Ways to pool the trunk map (see :func:`pool_trunk`).
POOLS = ("global", "freq")


@dataclass(frozen=True, slots=True)
class SimilaritySpec:
    """Shape of a similarity head.

    Attributes
    ----------
    name : str
        Weights file stem.
    in_dim : int
        Width of the pooled trunk vector (:func:`pool_trunk`).
    hidden : int
        Width of the MLP's hidden layer.
    dim : int
        Embedding width.
    trunk_id : str
        Id (``tags:<hash>``) of the tagger whose trunk the head was trained on.
    pool : str
        How the trunk map is pooled (:data:`POOLS`).
    """

    name: str = "similarity"
    in_dim: int = 256
    hidden: int = 256
    dim: int = 128
    trunk_id: str = ""
    pool: str = "global"

    def __post_init__(self) -> None:
        if min(self.in_dim, self.hidden, self.dim) < 1:
            raise ValueError("in_dim, hidden and dim must be positive")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}")

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SimilaritySpec:
        """Inverse of :meth:`to_json`."""
        return cls(**d)


def softmax(x: npt.ArrayLike, axis: int = -1) -> F32:
    """Softmax along ``axis`` (float32)."""
    z = np.asarray(x, np.float32)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    out: F32 = e / e.sum(axis=axis, keepdims=True)
    return out


def sigmoid(x: npt.ArrayLike) -> F32:
    """Logistic function (float32)."""
    z = np.asarray(x, np.float32)
    out: F32 = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    return out


def _fold_bn(
    weight: npt.NDArray[Any], bias: npt.NDArray[Any] | None, state: dict[str, Any], bn: str
) -> tuple[F32, F32]:
    """Fold the eval-mode batch norm ``bn`` (state-dict prefix) into the layer before it:
    ``weight`` has the output channels first; the folded bias is returned."""
    gamma = state[f"{bn}.weight"].astype(np.float64)
    beta = state[f"{bn}.bias"].astype(np.float64)
    mean = state[f"{bn}.running_mean"].astype(np.float64)
    var = state[f"{bn}.running_var"].astype(np.float64)
    scale = gamma / np.sqrt(var + NORM_EPS)
    w = weight.astype(np.float64) * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    b0 = np.zeros_like(mean) if bias is None else bias.astype(np.float64)
    return w.astype(np.float32), ((b0 - mean) * scale + beta).astype(np.float32)


def _conv3x3(x: F32, w: F32, b: F32) -> F32:
    """3×3 convolution, padding 1, then bias and ReLU, channels-last:
    ``(batch, H, W, C)`` with ``w`` of shape ``(C * 9, O)`` (rows ordered ``c, kh, kw``)
    → ``(batch, H, W, O)``."""
    n, h, wd, c = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(1, 2))  # (n,h,w,c,3,3)
    y = np.matmul(cols.reshape(n * h * wd, c * 9), w)
    y += b
    np.maximum(y, 0.0, out=y)
    return y.reshape(n, h, wd, -1)


def _max_pool2(x: F32) -> F32:
    """2×2 max pooling, stride 2, channels-last; odd trailing rows/columns are dropped (floor)."""
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    v = x[:, : 2 * h2, : 2 * w2].reshape(n, h2, 2, w2, 2, c)
    out: F32 = v.max(axis=(2, 4))
    return out


class NumpyTagCNN:
    """:class:`~onbeat.models.tagger.TagCNN` in eval mode, in NumPy (batch norms folded).

    Parameters
    ----------
    spec : TaggerSpec
        Shapes and labels.
    state : dict of str to ndarray
        The torch state dict as saved by :func:`~onbeat.models.tagger.save_tagger`.
    """

    def __init__(self, spec: TaggerSpec, state: dict[str, npt.NDArray[Any]]) -> None:
        self.spec = spec
        self.in_mean = np.asarray(state["in_mean"], np.float32)
        self.in_std = np.asarray(state["in_std"], np.float32)
        self.convs: list[tuple[F32, F32]] = []
        i = 0  # index in the torch trunk: conv, bn, relu[, pool] per block
        for k, _c in enumerate(spec.channels):
            w, b = _fold_bn(state[f"trunk.{i}.weight"], None, state, f"trunk.{i + 1}")
            o = w.shape[0]
            self.convs.append((np.ascontiguousarray(w.reshape(o, -1).T), b))
            i += 4 if k < len(spec.channels) - 1 else 3
        hw, hb = _fold_bn(state["hidden.0.weight"], state["hidden.0.bias"], state, "hidden.1")
        self.hidden_w, self.hidden_b = np.ascontiguousarray(hw.T), hb
        self.heads: dict[str, tuple[F32, F32]] = {
            name: (
                np.ascontiguousarray(np.asarray(state[f"{name}.weight"], np.float32).T),
                np.asarray(state[f"{name}.bias"], np.float32),
            )
            for name in ("genre", "quadrant", "voice")
        }

    def _trunk(self, mel: npt.ArrayLike) -> F32:
        """Channels-last trunk output ``(batch, mel groups, frame groups, channels)``."""
        m = np.asarray(mel, np.float32)
        if m.ndim != 3 or m.shape[2] != self.spec.n_mels:
            raise ValueError(f"mel must be (batch, frames, {self.spec.n_mels}), not {m.shape}")
        x = ((m - self.in_mean) / self.in_std).transpose(0, 2, 1)[..., None]
        last = len(self.convs) - 1
        for k, (w, b) in enumerate(self.convs):
            x = _conv3x3(x, w, b)
            if k < last:
                x = _max_pool2(x)
        return x

    def trunk_map(self, mel: npt.ArrayLike) -> F32:
        """The conv trunk's output map (the similarity head's input):
        ``(batch, frames, n_mels)`` → ``(batch, channels[-1], mel groups, frame groups)``."""
        return np.ascontiguousarray(self._trunk(mel).transpose(0, 3, 1, 2))

    @staticmethod
    def pool(x: F32) -> F32:
        """Mean and max of a trunk map ``(batch, channels, bands, frames)`` over time and
        frequency, ``(batch, 2 * channels)``."""
        out: F32 = np.concatenate([x.mean(axis=(2, 3)), x.max(axis=(2, 3))], axis=1)
        return out

    def _hidden(self, pooled: F32) -> F32:
        h = pooled @ self.hidden_w + self.hidden_b
        out: F32 = np.maximum(h, 0.0)
        return out

    def pooled(self, mel: npt.ArrayLike) -> F32:
        """The pooled trunk output the hidden layer reads: ``(batch, 2 * channels[-1])``."""
        return self.pool(self.trunk_map(mel))

    def embed(self, mel: npt.ArrayLike) -> F32:
        """Hidden layer of ``mel`` windows: ``(batch, frames, n_mels)`` → ``(batch, hidden)``."""
        return self._hidden(self.pooled(mel))

    def forward(self, mel: npt.ArrayLike) -> dict[str, F32]:
        """Logits of every head, the (unnormalised) embedding and the trunk's output map."""
        trunk_map = self.trunk_map(mel)
        h = self._hidden(self.pool(trunk_map))
        out = {name: h @ w + b for name, (w, b) in self.heads.items()}
        out["voice"] = out["voice"][:, 0]
        out["embedding"] = h
        out["trunk_map"] = trunk_map
        return out

    __call__ = forward


def pool_trunk_np(x: npt.ArrayLike, pool: str) -> F32:
    """:func:`onbeat.models.similarity.pool_trunk` in NumPy: the head's input from a trunk map
    ``(batch, channels, bands, frames)``."""
    m = np.asarray(x, np.float32)
    if pool == "global":
        out: F32 = np.concatenate([m.mean(axis=(2, 3)), m.max(axis=(2, 3))], axis=1)
        return out
    if pool == "freq":
        n = m.shape[0]
        mean = m.mean(axis=3)
        std = np.sqrt(np.square(m - mean[..., None]).mean(axis=3))
        out = np.concatenate([mean.reshape(n, -1), std.reshape(n, -1)], axis=1)
        return out
    raise ValueError(f"unknown pooling {pool!r} (one of {POOLS})")


class NumpySimilarityHead:
    """:class:`~onbeat.models.similarity.SimilarityHead` in NumPy: linear, layer norm, ReLU,
    linear, unit norm.

    Parameters
    ----------
    spec : SimilaritySpec
        Shapes.
    state : dict of str to ndarray
        The torch state dict (float16 on disk; cast to float32 here, like ``load_head``).
    """

    def __init__(self, spec: SimilaritySpec, state: dict[str, npt.NDArray[Any]]) -> None:
        self.spec = spec
        s = {k: np.asarray(v, np.float32) for k, v in state.items()}
        self.w0, self.b0 = np.ascontiguousarray(s["mlp.0.weight"].T), s["mlp.0.bias"]
        self.ln_w, self.ln_b = s["mlp.1.weight"], s["mlp.1.bias"]
        self.w1, self.b1 = np.ascontiguousarray(s["mlp.3.weight"].T), s["mlp.3.bias"]

    def forward(self, pooled: npt.ArrayLike) -> F32:
        """Unit-norm embeddings of pooled trunk vectors, ``(batch, in_dim)`` → ``(batch, dim)``."""
        h = np.asarray(pooled, np.float32) @ self.w0 + self.b0
        mu = h.mean(axis=1, keepdims=True)
        var = np.square(h - mu).mean(axis=1, keepdims=True)
        h = (h - mu) / np.sqrt(var + NORM_EPS) * self.ln_w + self.ln_b
        np.maximum(h, 0.0, out=h)
        z = h @ self.w1 + self.b1
        out: F32 = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-9)
        return out

    __call__ = forward

    def from_trunk(self, trunk_map: npt.ArrayLike) -> F32:
        """Unit-norm embeddings of trunk maps (:meth:`NumpyTagCNN.trunk_map`), ``(batch, dim)``."""
        return self.forward(pool_trunk_np(trunk_map, self.spec.pool))


class NumpySimilarity:
    """A similarity head and the trunk it reads, for NumPy inference.

    The head either shares the tagger's trunk pass (``trunk`` None: the live worker runs the
    trunk once for tags and embedding) or has a trunk of its own (a frozen tagger trunk it was
    trained on, run on the same log-mel), so the tagger can be retrained for its own targets
    without moving the embedding the library was indexed with.

    Parameters
    ----------
    head : NumpySimilarityHead
    trunk : NumpyTagCNN, optional
        The head's own trunk (its input key must equal the tagger's).
    """

    def __init__(self, head: NumpySimilarityHead, trunk: NumpyTagCNN | None = None) -> None:
        self.head = head
        self.trunk = trunk

    @property
    def spec(self) -> SimilaritySpec:
        """The head's spec."""
        return self.head.spec

    @property
    def shares_trunk(self) -> bool:
        """Whether the head reads the tagger's own trunk pass."""
        return self.trunk is None

    def embed(self, mel: npt.ArrayLike, tagger_trunk_map: npt.ArrayLike | None = None) -> F32:
        """Unit-norm embeddings of log-mel windows ``(batch, frames, n_mels)``, ``(batch, dim)``.

        ``tagger_trunk_map`` is the tagger's trunk map of the same windows; it is required when
        the head shares that trunk and ignored when the head has its own.
        """
        if self.trunk is not None:
            return self.head.from_trunk(self.trunk.trunk_map(mel))
        if tagger_trunk_map is None:
            raise ValueError("this head reads the tagger's trunk: pass its trunk map")
        return self.head.from_trunk(tagger_trunk_map)


def _load(path: str | Path) -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any]]:
    from safetensors.numpy import load_file

    p = Path(path)
    meta: dict[str, Any] = json.loads(p.with_suffix(".json").read_text())
    return load_file(str(p)), meta


def load_tagger_np(path: str | Path) -> tuple[NumpyTagCNN, dict[str, Any]]:
    """Load a tagger saved by :func:`~onbeat.models.tagger.save_tagger` for NumPy inference,
    and its metadata (the ``.json`` beside the ``.safetensors`` file)."""
    state, meta = _load(path)
    return NumpyTagCNN(TaggerSpec.from_json(meta["spec"]), state), meta


def load_head_np(path: str | Path) -> tuple[NumpySimilarityHead, dict[str, Any]]:
    """Load a head saved by :func:`~onbeat.models.similarity.save_head` for NumPy inference,
    and its metadata."""
    state, meta = _load(path)
    return NumpySimilarityHead(SimilaritySpec.from_json(meta["spec"]), state), meta
