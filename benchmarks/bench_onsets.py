"""Onset benchmark on the held-out Böck fold 5: onbeat (LSTM and SuperFlux) against the anchors.

Every system runs on the same files in one run: onbeat through the live code path
(:meth:`Engine.run_fast`) with its LSTM and with its DSP SuperFlux detector, madmom's online RNN
onset detector, aubio (online) and librosa (offline). Scores are mir_eval F, precision and recall
at ±25 ms, summed over all onsets of the fold; CPU is seconds per audio second, one thread.

Caveat: madmom's onset network was trained by its authors on the Böck set, very likely
including this fold, so its score here is optimistic.

``--mic`` scores a microphone copy of every file instead: the renderer's chain
(:func:`onbeat.training.render.augment`: room reverb, microphone band-pass and presence peak,
EQ tilt, soft clipping, coloured or babble noise at 10-40 dB SNR, level), drawn once per file
with a fixed seed and no speed change, so the labels stay exact (written to ``data/bock_mic``).

Run: ``python benchmarks/bench_onsets.py [--fold 5] [--max-files N] [--mic]``; needs
``../shared/data``.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_beats import preloaded, run_anchor


def run_onbeat(path: Path, detector: str) -> dict:
    from onbeat.realtime.bus import EventBus
    from onbeat.realtime.config import OnbeatConfig, apply_overrides
    from onbeat.realtime.engine import Engine

    config = apply_overrides(
        OnbeatConfig(), {"onset.detector": detector, "beats.source": "off", "tags.enabled": "off"}
    )
    bus = EventBus()
    sub = bus.subscribe("bench", 10_000_000)
    summary = Engine(config, bus=bus).run_fast(preloaded(path))
    times = [e.time_s for e in sub.drain() if e.type == "onset"]
    return {"times_s": times, "cpu_s": summary.cpu_s, "audio_s": summary.audio_s}


def main() -> None:
    import mir_eval
    from onbeat.training.datasets import bock_items

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fold", type=int, default=5)
    ap.add_argument("--max-files", type=int, default=None)
    ap.add_argument("--anchors", default="madmom_online,aubio,librosa")
    ap.add_argument("--mic", action="store_true", help="score microphone copies (room, noise)")
    args = ap.parse_args()
    items = bock_items(folds=[args.fold])[: args.max_files]
    if not items:
        sys.exit("the Böck set is not in ../shared/data/onsets/bock")
    if args.mic:
        from onbeat.training.datasets import augmented_items

        items = augmented_items(items, Path("data/bock_mic"), 1, seed=2026, speed=(1.0, 1.0))
    systems = ["onbeat lstm", "onbeat superflux", *[a for a in args.anchors.split(",") if a]]
    what = "microphone copies of " if args.mic else ""
    print(f"\n### {what}Böck fold {args.fold}: {len(items)} files, F at ±25 ms\n")
    print("| system | F | precision | recall | CPU s per s | CPU ratio to madmom online |")
    print("|---|---|---|---|---|---|")
    rows = {}
    for system in systems:
        tp = fp = fn = 0
        cpu = audio = 0.0
        for it in items:
            if system.startswith("onbeat"):
                res = run_onbeat(it.audio, system.split()[1])
            else:
                res = run_anchor(system, it.audio, task="onsets")
            if "error" in res:
                rows[system] = res["error"]
                break
            det = np.asarray(res["times_s"])
            m = len(mir_eval.util.match_events(it.onsets, det, 0.025))
            tp, fp, fn = tp + m, fp + len(det) - m, fn + len(it.onsets) - m
            cpu += res["cpu_s"]
            audio += res["audio_s"]
        else:
            p, r = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
            rows[system] = (2 * p * r / max(p + r, 1e-9), p, r, cpu / audio)
    base = rows.get("madmom_online")
    for system, row in rows.items():
        if isinstance(row, str):
            print(f"| {system} | error: {row} | | | | |")
            continue
        ratio = f"{row[3] / base[3]:.2f}×" if isinstance(base, tuple) else "n/a"
        print(f"| {system} | {row[0]:.3f} | {row[1]:.3f} | {row[2]:.3f} | {row[3]:.4f} | {ratio} |")


if __name__ == "__main__":
    main()
