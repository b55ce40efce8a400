"""Streaming inference of the causal LSTMs without torch: numba kernels over exported weights.

The live path imports only this module (NumPy, numba, safetensors), never torch: importing torch
costs more than a second at start-up. :class:`NumbaLSTM` runs the weights exported by
:meth:`onbeat.models.lstm.CausalLSTM.export_arrays` one frame per call, every buffer
preallocated; ``tests/test_models.py`` proves it equals the sequence forward pass.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

__all__ = ["EnsembleLSTM", "LSTMSpec", "NumbaLSTM", "load_model", "report_delay_frames"]


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


#: Let LLVM reorder and fuse the dot products' additions so they vectorise; the sums are
#: kept in float64, which makes them closer to an exact result than the former in-order
#: float32 sums (max |h| difference from a float64 in-order reference over 3,000 frames of
#: the beat model: 0 against 4.7e-5) and 2.3x faster (52 vs 120 µs per frame for 2 x LSTM(64),
#: ``benchmarks/bench_lstm_step.py``; torch's own step takes 93 µs).
_FAST_SUM = {"reassoc", "contract"}


@numba.njit(cache=True, nogil=True, fastmath=_FAST_SUM)
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
        acc = np.float64(b[r])
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


@numba.njit(cache=True, nogil=True, fastmath=_FAST_SUM)
def _readout(
    h: npt.NDArray[np.float32],
    w: npt.NDArray[np.float32],
    b: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
) -> None:  # pragma: no cover - compiled
    for r in range(out.shape[0]):
        acc = np.float64(b[r])
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


class EnsembleLSTM:
    """Members of one ensemble stepped together; the output is the mean of their activations.

    Parameters
    ----------
    nets : sequence of NumbaLSTM
        At least one, all of the same input and output shapes.

    Raises
    ------
    ValueError
        When the members disagree on shapes.
    """

    def __init__(self, nets: list[NumbaLSTM]) -> None:
        if not nets:
            raise ValueError("an ensemble needs at least one member")
        shapes = {(n.spec.n_in, n.spec.outputs) for n in nets}
        if len(shapes) != 1:
            raise ValueError(f"ensemble members disagree on inputs/outputs: {sorted(shapes)}")
        self.nets = list(nets)
        self.spec = nets[0].spec
        self.output = np.zeros(len(self.spec.outputs), dtype=np.float32)
        self._scale = np.float32(1.0 / len(nets))

    def reset(self) -> None:
        """Zero every member's state."""
        for n in self.nets:
            n.reset()
        self.output.fill(0.0)

    def step(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Advance every member one frame; returns :attr:`output` (the mean of their sigmoid
        activations), reused each call.

        Real-time safety: in-place NumPy on preallocated buffers; no allocation.
        """
        out = self.output
        out.fill(0.0)
        for n in self.nets:
            np.add(out, n.step(x), out=out)
        np.multiply(out, self._scale, out=out)
        return out


def report_delay_frames(meta: Mapping[str, Any]) -> float:
    """Frames between an event (onset, beat) and the output frame that reports it.

    Parameters
    ----------
    meta : mapping
        A model's metadata (the JSON beside its weights).

    Returns
    -------
    float
        ``delay_frames`` of the metadata: 1 for a model trained on the frame of the event, 1 + N
        for one trained with targets N frames late (look-ahead), fractional where validation
        measured a dating bias. Models exported before the key existed report 1.
    """
    return float(meta.get("delay_frames", 1.0))


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
