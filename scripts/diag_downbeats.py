#!/usr/bin/env python3
"""How good is the downbeat activation, apart from the tracker? (issue 3, downbeats)

For each file of a set, the live activations are captured as ``scripts/tune_tracker.py`` does
(same cache), then read at the *true* beats (maximum within ±30 ms of each labelled beat,
after the stage's input latency). Printed per set:

* ``AUC``: ROC-AUC of that value separating labelled downbeats from the other beats;
* ``oracle bar``: with the true beats and the true meter given, a causal per-position running
  mean of the downbeat activation (rate 0.125 per bar) picks the bar position; the share of
  beats from the fourth bar on whose position it gets right. This is the most a bar filter
  can get from this activation when the beats are right;
* ``live bar``: the same share for the live tracker, over its beats within ±70 ms of a
  labelled beat from the fourth labelled bar on (``beat_in_bar`` − 1 = the labelled position);
* ``live DB-F``: downbeat F (±70 ms) of the live tracker's beats numbered 1.

    python scripts/diag_downbeats.py --sets renders-valid,heavy-valid --max-files 40
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse
import sys
from pathlib import Path

import numpy as np
from onbeat.training.tasks import beat_values, downbeat_auc, downbeat_flags

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def positions(beats: np.ndarray, downbeats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bar position (0 = downbeat) and bar length of each labelled beat (-1 before the first
    downbeat)."""
    pos = np.full(beats.size, -1)
    meter = np.zeros(beats.size, dtype=np.int64)
    is_db = downbeat_flags(beats, downbeats, 0.02)
    idx = np.flatnonzero(is_db)
    for a, b in zip(idx, [*idx[1:], beats.size], strict=True):
        pos[a:b] = np.arange(b - a)
        meter[a:b] = b - a if b < beats.size else (idx[1] - idx[0] if idx.size > 1 else 4)
    return pos, meter


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sets", default="renders-valid,heavy-valid")
    ap.add_argument("--max-files", type=int, default=40)
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "tune_tracker")
    args = ap.parse_args()

    import bench_beats as bb
    from onbeat.realtime.config import OnbeatConfig
    from tune_tracker import capture, load_items, replay

    base = OnbeatConfig().tracker
    for set_name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        items = [it for it in load_items(set_name, args.max_files) if it.downbeats is not None]
        pos_v, neg_v, hits, n_or, dbf = [], [], 0, 0, []
        live_hits, live_n = 0, 0
        for it in items:
            c = capture(it, args.cache / set_name)
            sr, hop = int(c["sr"]), int(c["hop"])
            # read at the beat's frame plus the tracker's input latency in frames (BeatStage
            # adds one hop); beat_values assumes 100 frames/s, as the captures are
            lat_fr = round((base.input_latency_s + hop / sr) * sr / hop)
            beats = np.asarray(it.beats, dtype=np.float64)
            pos, meter = positions(beats, np.asarray(it.downbeats, dtype=np.float64))
            v = beat_values(c["db"], beats, lat_fr)
            ok = pos >= 0
            pos_v.append(v[ok & (pos == 0)])
            neg_v.append(v[ok & (pos > 0)])
            # oracle bar: per-position running mean, causal, true beats and meter
            means: dict[int, np.ndarray] = {}
            seen = 0
            for i in np.flatnonzero(ok):
                m = int(meter[i])
                if m < 2:
                    continue
                mu = means.setdefault(m, np.full(m, np.nan))
                # the position-0 guess is the slot (counted from this beat) with the top mean
                phase = (i - np.flatnonzero(ok)[0]) % m
                if seen >= 3 * m and not np.isnan(mu).all():
                    guess = int(np.nanargmax(mu))
                    hits += int(guess == (phase - pos[i]) % m)
                    n_or += 1
                mu[phase] = v[i] if np.isnan(mu[phase]) else mu[phase] + 0.125 * (v[i] - mu[phase])
                seen += 1
            bars: list[int] = []
            det = replay(c, base, bars)
            sc = bb.score(it, {"times_s": det, "beats_in_bar": bars})
            first = np.flatnonzero(pos == 0)
            start = beats[first[min(3, first.size - 1)]] if first.size else np.inf
            for t, b in zip(det, bars, strict=True):
                j = int(np.argmin(np.abs(beats - t)))
                if t >= start - 0.07 and abs(beats[j] - t) <= 0.07 and pos[j] >= 0:
                    live_n += 1
                    live_hits += int((b - 1) == pos[j])
            dbf.append(sc.get("db_f", np.nan))
        a = downbeat_auc(np.concatenate(pos_v), np.concatenate(neg_v))
        print(
            f"{set_name:14s} files {len(items):3d}  AUC {a:.3f}  oracle bar "
            f"{hits / max(n_or, 1):.3f}  live bar {live_hits / max(live_n, 1):.3f}  "
            f"live DB-F {np.nanmean(dbf):.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
