"""Weight-space interpolation of a fine-tuned LSTM with the model it started from.

``python -m onbeat.training.soup --base models/weights --tuned runs/export_bk1 --alpha 0.3
--out runs/export_soup03`` writes ``theta = (1 - alpha) * theta_base + alpha * theta_tuned`` for
every parameter of the named model (``--name``, default ``beats``), with the exported arrays for
the numba step rebuilt from the interpolated torch state, and a model card that names both
parents.

Why: a fine-tune on a narrow domain (the generated heavy songs) gains there and loses some of
what the base model knew; the straight line between the two often keeps most of both. This is
WiSE-FT (Wortsman et al. 2022, "Robust fine-tuning of zero-shot models"), a relative of model
soups; it works because a fine-tune stays in the base model's basin. It costs nothing at run time,
unlike an ensemble that runs both networks. Both parents must share a shape; if their input
standardisation differs, the tuned model's first layer is first re-expressed in the base model's
standardisation, so the two are interpolated as functions of the same input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from onbeat.models.lstm import CausalLSTM, load_model, save_model, torch_from_arrays

__all__ = ["interpolate", "load_parent", "main"]


def load_parent(directory: Path, name: str) -> tuple[CausalLSTM, dict[str, Any]]:
    """The torch module and metadata of ``directory/NAME.{safetensors,json}``."""
    spec, arrays, meta = load_model(directory / f"{name}.safetensors")
    return torch_from_arrays(spec, arrays), meta


def interpolate(base: CausalLSTM, tuned: CausalLSTM, alpha: float) -> CausalLSTM:
    """A new module at ``(1 - alpha) * base + alpha * tuned`` (in the base's standardisation).

    Raises
    ------
    ValueError
        If ``alpha`` is outside [0, 1] or the two specs differ in shape.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    sa, sb = base.spec, tuned.spec
    if (sa.n_in, sa.hidden, sa.layers, tuple(sa.outputs)) != (
        sb.n_in,
        sb.hidden,
        sb.layers,
        tuple(sb.outputs),
    ):
        raise ValueError(f"models differ in shape: {sa} vs {sb}")
    pa = base.state_dict()
    pb = dict(tuned.state_dict())
    with torch.no_grad():
        # tuned input z_b = (x - m_b) / s_b = z_a * (s_a / s_b) + (m_a - m_b) / s_b
        s_b = pb["in_std"].clamp_min(1e-8)
        ratio = pa["in_std"].clamp_min(1e-8) / s_b
        shift = (pa["in_mean"] - pb["in_mean"]) / s_b
        w = pb["lstm.weight_ih_l0"]
        pb["lstm.bias_ih_l0"] = pb["lstm.bias_ih_l0"] + w @ shift
        pb["lstm.weight_ih_l0"] = w * ratio[None, :]
        pb["in_mean"], pb["in_std"] = pa["in_mean"], pa["in_std"]
        mixed = {
            k: (1.0 - alpha) * v + alpha * pb[k] if v.is_floating_point() else v
            for k, v in pa.items()
        }
    out = CausalLSTM(sa)
    out.load_state_dict(mixed)
    out.eval()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(
        prog="python -m onbeat.training.soup",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--base", type=Path, required=True, help="folder of the model fine-tuned from")
    ap.add_argument("--tuned", type=Path, required=True, help="folder of the fine-tuned model")
    ap.add_argument("--alpha", type=float, required=True, help="weight of the tuned model, 0-1")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--name", default="beats")
    args = ap.parse_args(argv)
    try:
        base, _ = load_parent(args.base, args.name)
        tuned, meta = load_parent(args.tuned, args.name)
        net = interpolate(base, tuned, args.alpha)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    extra = {k: v for k, v in meta.items() if k != "spec"}
    extra["soup"] = {
        "base": str(args.base),
        "tuned": str(args.tuned),
        "alpha": args.alpha,
        "command": (
            f"python -m onbeat.training.soup --base {args.base} --tuned {args.tuned} "
            f"--alpha {args.alpha} --out {args.out} --name {args.name}"
        ),
    }
    path = save_model(net, args.out, extra)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
