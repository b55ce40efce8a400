#!/usr/bin/env python3
"""Per-family split of a ``diag_beats.py`` run: each activation through each tracker (issue 3).

Reads the per-file output that ``scripts/diag_beats.py --set SET --out DIR`` leaves in
``DIR/SET/<item>/`` (``beats.json``, ``madmom_act.npy``, ``onbeat_act.npy``) and, for the items
whose name starts with ``--family`` (renders: ``asap``, ``groove``, ``pop909``), prints per
system the mean beat F, the median number of beats per reference beat (the metrical level), and
the share of reference beats after 5 s with a detection within 70 ms (a recall). madmom's
activation is also replayed through onbeat's tracker shifted 0-3 frames earlier, to take out
the cross-feed dating offset (see diag_beats.py).

    python scripts/diag_beats.py --set renders-valid --max-files 120 --out runs/s17/diag
    python scripts/diag_families.py --diag runs/s17/diag --set renders-valid --max-files 120 \\
        --family asap

Diagnosis only: madmom's models are non-commercial.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def within(ref: np.ndarray, det: np.ndarray, tol_s: float = 0.07, skip_s: float = 5.0) -> float:
    """Share of reference beats after ``skip_s`` with a detection within ``tol_s``."""
    ref = ref[ref >= skip_s]
    if det.size == 0 or ref.size == 0:
        return 0.0
    return float(np.mean(np.min(np.abs(det[None, :] - ref[:, None]), axis=1) <= tol_s))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--diag", type=Path, default=ROOT / "runs" / "diag")
    ap.add_argument("--set", default="renders-valid")
    ap.add_argument("--max-files", type=int, default=None)
    ap.add_argument("--family", default="asap", help="item-name prefix")
    args = ap.parse_args()

    from diag_beats import load_set, metrics
    from onbeat.realtime.config import OnbeatConfig
    from tune_tracker import replay

    items = [i for i in load_set(args.set, args.max_files) if i.name.startswith(args.family)]
    if not items:
        raise SystemExit(f"no {args.family!r} items in {args.set}")
    base = OnbeatConfig().tracker
    systems = {
        "madmom + madmom DBN": "madmom+madmom",
        "onbeat + onbeat (live)": "live",
        "onbeat + madmom DBN": "onbeat+madmom",
    }
    rows: dict[str, list[tuple[float, float, float]]] = {k: [] for k in systems}
    for s in range(4):
        rows[f"madmom + onbeat, {s} frames earlier"] = []

    def row(ref: np.ndarray, det: np.ndarray) -> tuple[float, float, float]:
        m = metrics(ref, list(det))
        return m["f"], m["n_ratio"], within(ref, det)

    for it in items:
        d = args.diag / args.set / it.name
        dets = json.loads((d / "beats.json").read_text())
        ref = np.asarray(it.beats, dtype=np.float64)
        for label, key in systems.items():
            rows[label].append(row(ref, np.asarray(dets[key], dtype=np.float64)))
        mm = np.load(d / "madmom_act.npy").astype(np.float64).ravel()
        silent = np.load(d / "onbeat_act.npy")[:, 2] > 0.5
        for s in range(4):
            a = mm[s:]
            sil = np.zeros(a.size, bool)
            n = min(a.size, silent.size)
            sil[:n] = silent[:n]
            # the live run's analysis rate: 44.1 kHz, 441-sample hop (100 frames/s)
            cap = {"act": a, "db": np.zeros(a.size), "silent": sil, "sr": 44100, "hop": 441}
            rows[f"madmom + onbeat, {s} frames earlier"].append(row(ref, replay(cap, base)))
    print(f"## {args.set}, family {args.family}: {len(items)} files\n")
    print("| activation + tracker | beat F | beats / reference beats (median) | within ±70 ms |")
    print("|---|---|---|---|")
    for label, v in rows.items():
        a = np.asarray(v)
        print(
            f"| {label} | {a[:, 0].mean():.3f} | {np.median(a[:, 1]):.2f} | {a[:, 2].mean():.1%} |"
        )


if __name__ == "__main__":
    main()
