"""Where the committed weights live and how to load them by name.

Weights ship inside the package (``onbeat/models/weights/NAME.safetensors`` with ``NAME.json``
holding the spec and model card metadata); nothing is ever downloaded. ``ONBEAT_MODELS=DIR``
makes a folder of freshly trained weights take precedence, model by model (for evaluation).

A model may be an ensemble: ``NAME.m1``, ``NAME.m2``... next to ``NAME`` in the same folder are
more members of the same shape and features, whose activations the users average
(:func:`members`; :class:`onbeat.models.streaming.EnsembleLSTM` live,
:class:`onbeat.models.lstm.MeanOfMembers` in torch).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
from onbeat.models.streaming import LSTMSpec, load_model

__all__ = ["WEIGHTS_DIR", "available", "load_lstm", "member_paths", "members", "weights_path"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def _default_dir(name: str) -> Path:
    override = os.environ.get("ONBEAT_MODELS")
    if override and (Path(override) / f"{name}.safetensors").exists():
        return Path(override)
    return WEIGHTS_DIR


def weights_path(name: str) -> Path:
    """The ``NAME.safetensors`` file that would be loaded (``ONBEAT_MODELS`` first)."""
    return _default_dir(name) / f"{name}.safetensors"


def available(name: str, directory: Path | None = None) -> bool:
    """Whether weights for ``name`` are present."""
    d = directory or _default_dir(name)
    return (d / f"{name}.safetensors").exists() and (d / f"{name}.json").exists()


def load_lstm(
    name: str, directory: Path | None = None
) -> tuple[LSTMSpec, dict[str, npt.NDArray[np.float32]], dict[str, object]]:
    """Spec, arrays and metadata of the committed model ``name``.

    Raises
    ------
    FileNotFoundError
        When no weights of that name ship with this installation.
    """
    d = directory or _default_dir(name)
    if not available(name, d):
        raise FileNotFoundError(f"no weights named {name!r} in {d}")
    return load_model(d / f"{name}.safetensors")


def members(name: str, directory: Path | None = None) -> tuple[Path, list[str]]:
    """The folder of model ``name`` and the names of its ensemble members there: ``name``
    itself, then ``name.m1``, ``name.m2``... as long as they are present (all from the folder
    that holds ``name``, so an ``ONBEAT_MODELS`` override never mixes with shipped members)."""
    d = directory or _default_dir(name)
    out = [name]
    while available(f"{name}.m{len(out)}", d):
        out.append(f"{name}.m{len(out)}")
    return d, out


def member_paths(name: str, directory: Path | None = None) -> list[Path]:
    """The ``.safetensors`` files of every member of model ``name`` (:func:`members`)."""
    d, names = members(name, directory)
    return [d / f"{n}.safetensors" for n in names]
