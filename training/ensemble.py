"""Assemble an ensemble of exported models into one model folder.

``python -m onbeat.training.ensemble --out runs/export_ens3 runs/export_a runs/export_b
runs/export_c`` copies the first folder's ``beats.{safetensors,json}`` as ``beats`` and the
others' as ``beats.m1``, ``beats.m2``... (``--name`` picks another model). The live stage then
steps every member and averages their activations
(:class:`onbeat.models.streaming.EnsembleLSTM`); ``scripts/tune_tracker.py --models DIR``,
``onbeat train bars`` and ``ONBEAT_MODELS=DIR`` read the whole ensemble too
(:func:`onbeat.models.registry.members`).

Why: runs of one recipe with different seeds disagree by up to 0.1 beat F on a real set
(BENCHMARKS.md, issue 3 "Session 23"), and averaging their activations keeps what they agree
on (Dietterich 2000; madmom's online beat tracker averages eight networks). Each member costs
one more LSTM step per frame. Members must share inputs, outputs and the delay at which they
report a beat (checked here and again when the stage loads them). Averaging the *weights*
instead (:mod:`onbeat.training.soup`) costs nothing at run time, but only works between a
fine-tune and its own start.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from onbeat.models.registry import available, members
from onbeat.models.streaming import load_model, report_delay_frames

__all__ = ["assemble", "main"]


def assemble(sources: Sequence[Path], out: Path, name: str = "beats") -> list[str]:
    """Copy model ``name`` of each folder in ``sources`` into ``out`` as one ensemble; returns
    the member names written. Members already in ``out`` are replaced.

    Raises
    ------
    ValueError
        When a folder lacks the model, or the members disagree on inputs, outputs, features or
        delay.
    """
    if not sources:
        raise ValueError("no member folders given")
    keys = []
    for src in sources:
        if not available(name, src):
            raise ValueError(f"{src} holds no {name}.safetensors/{name}.json")
        if len(members(name, src)[1]) > 1:
            raise ValueError(f"{src} is an ensemble already; name its members' folders instead")
        spec, _, meta = load_model(src / f"{name}.safetensors")
        keys.append((spec.n_in, spec.outputs, spec.features, report_delay_frames(meta)))
    if len(set(keys)) != 1:
        raise ValueError(f"members disagree on inputs/outputs/features/delay: {sorted(set(keys))}")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{name}.m[0-9]*.*"):
        old.unlink()
    written = []
    for k, src in enumerate(sources):
        target = name if k == 0 else f"{name}.m{k}"
        for ext in (".safetensors", ".json"):
            shutil.copyfile(src / f"{name}{ext}", out / f"{target}{ext}")
        if k:  # every weight file has a card; a member's points to the ensemble's
            (out / f"{target}.md").write_text(
                f"# {target}: member {k + 1} of {len(sources)} of the `{name}` ensemble\n\n"
                f"Copied from `{src}` by `python -m onbeat.training.ensemble`. The live stage "
                f"averages its activation with the other members'. Data, training commands, "
                f"metrics and licence: `{name}.md`.\n"
            )
        written.append(target)
    (out / f"{name}.ensemble.json").write_text(
        json.dumps({"members": written, "sources": [str(s) for s in sources]}, indent=1) + "\n"
    )
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(
        prog="python -m onbeat.training.ensemble",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("sources", type=Path, nargs="+", help="exported model folders")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--name", default="beats")
    args = ap.parse_args(argv)
    try:
        written = assemble(args.sources, args.out, args.name)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {', '.join(written)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
