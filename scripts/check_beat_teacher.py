#!/usr/bin/env python3
"""Check a beat teacher on annotated sets before it labels anything (noisy-student step 1).

For every file of the named sets: the teacher's activation (``onbeat train beats
--bidirectional``) and the shipped causal ensemble's for comparison, each decoded by every
decoder asked for:

* ``tracker``: onbeat's live tracker (causal; :func:`onbeat.training.pseudo.tracker_beats`);
* ``viterbi``: the best path of the whole file (:mod:`onbeat.training.viterbi`);
* ``dp``: librosa's dynamic programming on the activation (one global tempo).

It prints mir_eval F (±70 ms), CMLt and AMLt against the annotations per set. With ``--agree``
it also labels each file exactly as ``python -m onbeat.training.pseudo --teacher-model`` would
(``--decoder``, ``--partner`` and ``--skip-s`` as there) and reports how much is kept and how
right the kept part is: a teacher is only useful if the kept beats are at the annotated
metrical level.

    python scripts/check_beat_teacher.py --teacher runs/export_bt3 --sets fof,lmms,modules-test
    python scripts/check_beat_teacher.py --sets fof --decoders viterbi   # the shipped model only
    python scripts/check_beat_teacher.py --teacher runs/export_bt3 --sets fof --agree \
        --decoder viterbi --partner tracker

The sets are development sets (``benchmarks/bench_beats.py`` names): nothing here trains on them.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


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
    from onbeat.training.pseudo import DECODERS, PARTNERS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--teacher", default=None, help="folder with teacher.safetensors, or several joined by +"
    )
    ap.add_argument("--sets", default="fof", help="comma-separated bench_beats set names")
    ap.add_argument("--decoders", default="tracker,viterbi", help=f"any of {DECODERS}")
    ap.add_argument("--max-files", type=int, default=0)
    ap.add_argument("--agree", action="store_true", help="also apply the labelling rule")
    ap.add_argument("--decoder", default="viterbi", choices=DECODERS, help="labelling rule")
    ap.add_argument("--partner", default="tracker", choices=PARTNERS, help="labelling rule")
    ap.add_argument("--skip-s", type=float, default=0.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    import bench_beats as bb
    import torch
    from onbeat.models.lstm import load_torch_members
    from onbeat.training.datasets import FPS, cached_features
    from onbeat.training.loop import predict
    from onbeat.training.pseudo import PseudoConfig, decode_activation, label_activation

    torch.set_num_threads(1)
    nets: dict[str, object] = {}
    if args.teacher is not None:
        from onbeat.training.beat_teacher import load_teachers

        nets["teacher"] = load_teachers(args.teacher)
    nets["shipped"], _, _ = load_torch_members("beats")
    decoders = [d.strip() for d in args.decoders.split(",") if d.strip()]
    cache = ROOT / "data" / "cache"
    config = PseudoConfig(partner=args.partner, skip_s=args.skip_s)
    out: dict = {}
    for set_name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        items = bb.named_set(set_name, args.max_files or None)
        if not items:
            raise SystemExit(f"set {set_name!r} is empty or unknown here")
        rows = []
        for it in items:
            x = np.ascontiguousarray(cached_features(it.audio, cache))
            row: dict = {"name": it.name}
            acts = {who: predict(net, x) for who, net in nets.items()}
            for who, act in acts.items():
                for dec in decoders:
                    row[f"{who}_{dec}"] = scores(it.beats, decode_activation(act, dec))
            if args.agree and "teacher" in acts:
                labels, keep = label_activation(acts["teacher"], args.decoder, config)
                kept_s = float((keep[:, 1] - keep[:, 0]).sum()) if keep.size else 0.0
                row["kept_share"] = kept_s / (x.shape[0] / FPS)
                ref_in, det_in = inside(it.beats, keep), inside(labels, keep)
                row["kept_f"] = scores(ref_in, det_in)["f"] if ref_in.size > 3 else float("nan")
            rows.append(row)
            print(
                f"{set_name:12s} {it.name[-36:]:36s} "
                + " ".join(f"{k} {v['f']:.3f}" for k, v in row.items() if isinstance(v, dict))
                + (
                    f" kept {row['kept_share']:.2f} F-in-kept {row['kept_f']:.3f}"
                    if "kept_share" in row
                    else ""
                ),
                flush=True,
            )
        keys = [k for k, v in rows[0].items() if isinstance(v, dict)]
        mean = {
            k: {m: float(np.mean([r[k][m] for r in rows])) for m in ("f", "cmlt", "amlt")}
            for k in keys
        }
        print(f"== {set_name}: mean over {len(rows)} files")
        for k, m in mean.items():
            print(f"  {k:18s} F {m['f']:.3f} CMLt {m['cmlt']:.3f} AMLt {m['amlt']:.3f}")
        if args.agree and "kept_share" in rows[0]:
            ks = [r["kept_share"] for r in rows]
            kf = [r["kept_f"] for r in rows if np.isfinite(r["kept_f"])]
            print(
                f"  agreement: kept {np.mean(ks):.2f} of the audio; F inside kept {np.mean(kf):.3f}"
            )
        out[set_name] = {"mean": mean, "files": rows}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
