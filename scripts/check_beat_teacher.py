#!/usr/bin/env python3
"""Check a beat teacher on annotated sets before it labels anything (noisy-student step 1).

For every file of a set: the teacher's activation (``onbeat train beats --bidirectional``), the
shipped causal model's activation for comparison, each decoded offline by
:func:`onbeat.training.pseudo.activation_beats` (dynamic programming over the whole file), and
mir_eval F (±70 ms), CMLt and AMLt against the annotations. With ``--agree`` it also labels
the file exactly as ``python -m onbeat.training.pseudo --teacher-model`` would (the teacher
decoded by onbeat's tracker, ``--partner`` and ``--skip-s`` as there) and reports how much is
kept and how right the kept part is: a teacher is only useful if the kept beats are at the
annotated metrical level.

    python scripts/check_beat_teacher.py --teacher runs/export_bt1 --set fof
    python scripts/check_beat_teacher.py --teacher runs/export_bt1 --set renders-valid --max-files 20

The sets are development sets: nothing here trains on them.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def scores(ref: np.ndarray, det: np.ndarray) -> dict[str, float]:
    import mir_eval

    rt, dt = mir_eval.beat.trim_beats(ref), mir_eval.beat.trim_beats(det)
    _, cmlt, _, amlt = mir_eval.beat.continuity(rt, dt)
    return {"f": float(mir_eval.beat.f_measure(rt, dt)), "cmlt": float(cmlt), "amlt": float(amlt)}


def inside(beats: np.ndarray, keep: np.ndarray) -> np.ndarray:
    m = np.zeros(beats.size, bool)
    for lo, hi in keep:
        m |= (beats >= lo) & (beats < hi)
    return beats[m]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", type=Path, required=True, help="folder with teacher.safetensors")
    ap.add_argument("--set", default="fof", choices=("fof", "renders-valid", "renders-test"))
    ap.add_argument("--max-files", type=int, default=0)
    ap.add_argument("--agree", action="store_true", help="also apply the labelling rule")
    ap.add_argument("--partner", default="audio", help="labelling rule: see training/pseudo.py")
    ap.add_argument("--skip-s", type=float, default=0.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    import torch
    from onbeat.models.lstm import load_torch_members
    from onbeat.training.beat_teacher import load_teacher
    from onbeat.training.datasets import cached_features, fof_items, render_items
    from onbeat.training.loop import predict
    from onbeat.training.pseudo import PseudoConfig, activation_beats, label_file, tracker_beats

    torch.set_num_threads(1)
    teacher = load_teacher(args.teacher)
    student, _, _ = load_torch_members("beats")
    if args.set == "fof":
        items = fof_items(ROOT / "data" / "fof")
    else:
        split = args.set.split("-")[1]
        items = [i for i in render_items(ROOT / "data" / "renders", split=split) if i.beats.size]
    if args.max_files:
        items = items[: args.max_files]
    rows = []
    cache = ROOT / "data" / "cache"
    for it in items:
        x = np.ascontiguousarray(cached_features(it.audio, cache))
        row: dict = {"name": it.name}
        for who, net in (("teacher", teacher), ("shipped", student)):
            act = predict(net, x)
            det = activation_beats(act[:, 0])
            row[who] = scores(it.beats, det)
            row[who + "_tracker"] = scores(it.beats, tracker_beats(act))
        if args.agree:  # the labels pseudo.py would write for this file
            config = PseudoConfig(partner=args.partner, skip_s=args.skip_s)
            labels, keep, dur = label_file(it.audio, teacher, cache, config, "tracker")
            kept_s = float((keep[:, 1] - keep[:, 0]).sum()) if keep.size else 0.0
            row["kept_share"] = kept_s / dur
            ref_in, det_in = inside(it.beats, keep), inside(labels, keep)
            row["kept_f"] = scores(ref_in, det_in)["f"] if ref_in.size > 3 else float("nan")
        rows.append(row)
        extra = (
            f"  kept {row['kept_share']:.2f} F-in-kept {row['kept_f']:.3f}" if args.agree else ""
        )
        print(
            f"{it.name[:40]:40s} teacher F {row['teacher']['f']:.3f} "
            f"CMLt {row['teacher']['cmlt']:.3f} AMLt {row['teacher']['amlt']:.3f} | "
            f"shipped F {row['shipped']['f']:.3f} CMLt {row['shipped']['cmlt']:.3f} || tracker: "
            f"teacher F {row['teacher_tracker']['f']:.3f} "
            f"shipped F {row['shipped_tracker']['f']:.3f}{extra}",
            flush=True,
        )
    mean = {
        who: {k: float(np.mean([r[who][k] for r in rows])) for k in ("f", "cmlt", "amlt")}
        for who in ("teacher", "shipped", "teacher_tracker", "shipped_tracker")
    }
    print(f"mean over {len(rows)} files (DP decoding; _tracker: onbeat's live tracker):")
    for who, m in mean.items():
        print(f"  {who:16s} F {m['f']:.3f} CMLt {m['cmlt']:.3f} AMLt {m['amlt']:.3f}")
    if args.agree:
        ks = [r["kept_share"] for r in rows]
        kf = [r["kept_f"] for r in rows if np.isfinite(r["kept_f"])]
        print(f"agreement: kept {np.mean(ks):.2f} of the audio; F inside kept {np.mean(kf):.3f}")
    if args.json:
        args.json.write_text(json.dumps({"mean": mean, "files": rows}, indent=1))


if __name__ == "__main__":
    main()
