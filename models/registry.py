"""Where the committed weights live and how to load them by name.

Weights ship inside the package (``onbeat/models/weights/NAME.safetensors`` with ``NAME.json``
holding the spec and model card metadata); nothing is ever downloaded. ``ONBEAT_MODELS=DIR``
makes a folder of freshly trained weights take precedence, model by model (for evaluation).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
from onbeat.models.streaming import LSTMSpec, load_model

__all__ = ["WEIGHTS_DIR", "available", "load_lstm", "weights_path"]

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
