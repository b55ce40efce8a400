#!/usr/bin/env python3
"""Check every anchor on a synthetic click track and print cost and accuracy.

Runs inside the anchors venv::

    .venv-anchors/bin/python benchmarks/anchors/selftest.py [--out DIR] [--seconds 20]

It writes a click track (120 BPM, 44.1 kHz mono, every 4th click accented as a
downbeat), runs ``run_anchor.py`` once per (system, task) in a fresh process, one at a
time, and scores onsets / beats against the known click times with mir_eval (onsets:
+-50 ms window; beats: F-measure with the usual +-70 ms window and mir_eval's default
trimming of the first 5 s).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
RUNS: list[tuple[str, str, list[str]]] = [
    ("madmom_online", "onsets", []),
    ("madmom_online", "beats", []),
    ("madmom_online", "features", []),
    ("madmom_offline", "onsets", []),
    ("madmom_offline", "beats", []),
    ("madmom_offline", "beats", ["--downbeats"]),
    ("madmom_offline", "features", []),
    ("beatnet", "beats", []),
    ("beatnet", "beats", ["--beatnet-mode", "realtime"]),
    ("beatnet", "features", []),
    ("aubio", "onsets", []),
    ("aubio", "beats", []),
    ("aubio", "features", []),
    ("librosa", "onsets", []),
    ("librosa", "beats", []),
    ("librosa", "features", []),
    ("essentia", "onsets", []),
    ("essentia", "beats", []),
    ("essentia", "features", []),
]


def make_clicks(
    path: Path, seconds: float, bpm: float = 120.0, sr: int = 44100, first: float = 0.5
) -> np.ndarray:
    """Write a click track; return the click times (s). Clicks: 30 ms decaying noise +
    tone bursts, 1 kHz, the downbeat (every 4th) at 1.5 kHz and louder."""
    rng = np.random.default_rng(0)
    y = np.zeros(int(seconds * sr), dtype=np.float64)
    n = int(0.03 * sr)
    t = np.arange(n) / sr
    env = np.exp(-t / 0.006)
    times = np.arange(first, seconds - 0.1, 60.0 / bpm)
    for i, onset in enumerate(times):
        down = i % 4 == 0
        freq = 1500.0 if down else 1000.0
        amp = 0.8 if down else 0.5
        click = amp * env * (0.6 * np.sin(2 * np.pi * freq * t) + 0.4 * rng.standard_normal(n))
        start = round(onset * sr)
        y[start : start + n] += click[: len(y) - start]
    sf.write(str(path), y.astype(np.float32), sr, subtype="PCM_16")
    return times


def score(task: str, ref: np.ndarray, est: list[float]) -> float | None:
    import mir_eval

    est_a = np.asarray(est, dtype=float)
    if task == "onsets":
        return float(mir_eval.onset.f_measure(ref, est_a, window=0.05)[0])
    if task == "beats":
        return float(
            mir_eval.beat.f_measure(mir_eval.beat.trim_beats(ref), mir_eval.beat.trim_beats(est_a))
        )
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, help="keep the wav and JSON files here")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--only", nargs="*", help="systems to run (default: all)")
    opts = p.parse_args()
    out = opts.out or Path(tempfile.mkdtemp(prefix="anchors-"))
    out.mkdir(parents=True, exist_ok=True)
    wav = out / "clicks120.wav"
    ref = make_clicks(wav, opts.seconds)
    np.savetxt(out / "clicks120.beats.txt", ref, fmt="%.6f")

    rows: list[dict[str, Any]] = []
    failed = 0
    for system, task, extra in RUNS:
        if opts.only and system not in opts.only:
            continue
        label = system + (" " + " ".join(extra) if extra else "")
        tag = f"{system}_{task}" + "".join(x.strip("-").replace("-", "_") for x in extra)
        jpath = out / f"{tag}.json"
        cmd = [
            sys.executable,
            str(HERE / "run_anchor.py"),
            system,
            task,
            str(wav),
            "--json",
            str(jpath),
            *extra,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            failed += 1
            err = (proc.stderr.strip().splitlines() or ["?"])[-1]
            print(f"FAIL {label} {task}: {err}", file=sys.stderr)
            (out / f"{tag}.stderr.txt").write_text(proc.stderr)
            rows.append({"label": label, "task": task, "error": err})
            continue
        res = json.loads(jpath.read_text())
        rows.append(
            {
                "label": label,
                "task": task,
                "f": score(task, ref, res["times_s"]),
                "cpu": res["cpu_s"] / res["audio_s"],
                "load": res["load_s"],
                "warm": res["warmup_s"],
                "rss": res["peak_rss_mb"],
                "n": len(res["times_s"]),
            }
        )
    print(f"# {opts.seconds:g} s click track at 120 BPM ({len(ref)} clicks), files in {out}")
    print(
        "| system | task | cpu_s per audio s | x real time | load_s | warmup_s | peak RSS MB "
        "| n | F |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['label']} | {r['task']} | FAILED: {r['error']} ||||||")
            continue
        f = "" if r["f"] is None else f"{r['f']:.3f}"
        n = "" if r["task"] == "features" else r["n"]
        print(
            f"| {r['label']} | {r['task']} | {r['cpu']:.4f} | {1 / r['cpu']:.0f} | "
            f"{r['load']:.2f} | {r['warm']:.2f} | {r['rss']:.0f} | {n} | {f} |"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
