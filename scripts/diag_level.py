#!/usr/bin/env python3
"""Per file: which metrical level and phase the tracker locked to, and why (issue 3).

For every file of a set, the beat model's activations (from the cached features, as
``tune_tracker.py --models``; ``A+B`` averages an ensemble) are replayed through the live tracker
with its default settings. One line per file, worst beat F first:

* ``F``: beat F (±70 ms), as the benchmark scores it;
* ``tempo x``: the labels' median beat period over the tracker's (2: it counts twice as fast);
* ``phase``: median position of the tracker's beats in the second half of the file, in beats
  after the labelled beat before them (0 or 1: on the beat, 0.5: on the "and");
* ``on`` / ``off``: the model's mean activation at the labelled beats and at the half-beats
  (maximum within ±2 frames), for each model named (``--models``), so one sees whether the
  network itself prefers the "and".

    python scripts/diag_level.py --set lmms --model runs/export_E1 \\
        --models runs/export_bg1e56,runs/export_bg1s1e56

Sets are those of ``tune_tracker.py`` (``lmms``, ``fof``, ``mma-valid``...). Replays reuse its
captures (``runs/tune_tracker``).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def activation_at(act: np.ndarray, times_s: np.ndarray, fps: float = 100.0) -> float:
    """Mean over ``times_s`` of the activation's maximum within ±2 frames of each time."""
    if times_s.size == 0:
        return float("nan")
    k = np.round(times_s * fps).astype(np.int64)
    near = np.stack([act[np.clip(k + d, 0, act.size - 1)] for d in range(-2, 3)])
    return float(np.mean(near.max(axis=0)))


def level_and_phase(det: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(labelled period / tracked period, median phase of the second half's tracked beats)."""
    if det.size < 4 or ref.size < 4:
        return float("nan"), float("nan")
    ratio = float(np.median(np.diff(ref)) / np.median(np.diff(det)))
    d = det[det > det[-1] / 2]
    idx = np.clip(np.searchsorted(ref, d) - 1, 0, ref.size - 2)
    phase = (d - ref[idx]) / (ref[idx + 1] - ref[idx])
    return ratio, float(np.median(phase))


def main() -> None:
    import bench_beats as bb
    import tune_tracker as tt
    from onbeat.realtime.config import OnbeatConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", default="lmms")
    ap.add_argument("--model", required=True, help="DIR or A+B+C: the model the tracker hears")
    ap.add_argument("--models", default="", help="DIR,DIR: models whose on/off activation to show")
    ap.add_argument("--max-files", type=int, default=400)
    args = ap.parse_args()

    acts = tt.SpecActivations()
    shown = [args.model, *filter(None, args.models.split(","))]
    base = OnbeatConfig().tracker
    rows = []
    for it in tt.load_items(args.set, args.max_files):
        c = tt.any_capture(it, ROOT / "runs" / "tune_tracker" / args.set)
        det = tt.replay(tt.splice(c, acts(args.model, it), it.name), base)
        f = bb.score(it, {"times_s": det, "beats_in_bar": []}).get("f", float("nan"))
        ref = np.asarray(it.beats, dtype=np.float64)
        ratio, phase = level_and_phase(det, ref)
        half = 0.5 * (ref[:-1] + ref[1:])
        cols = []
        for name in shown:
            act = acts(name, it)[:, 0]
            on, off = activation_at(act, ref), activation_at(act, half)
            cols.append(f"{Path(name).name[-12:]} on {on:.2f} off {off:.2f}")
        rows.append((f, f"{it.name[:44]:44s} F {f:.2f} tempo x{ratio:.2f} phase {phase:.2f} | "
                     + " | ".join(cols)))  # fmt: skip
    for _, line in sorted(rows, key=lambda r: r[0]):
        print(line)


if __name__ == "__main__":
    main()
