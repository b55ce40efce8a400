"""Tagging benchmark: the windowed genre/mood/voice CNN, its cost, and what it costs the tracker.

On the same audio in one run:

* onbeat's tagger as it runs live (``models/weights/tags.*``): log-mel (numba), the CNN in NumPy
  (``models/tagger_np.py``, one BLAS thread) and the similarity head (on the same trunk pass, or
  on its own trunk when it ships one), per 3 s window, p50/p99 in ms; CPU per second of audio
  at the default 1.5 s hop; parameters; the
  memory the model adds (no torch live); the torch forward of the same weights (training only)
  for comparison;
* the tracker's per-frame analysis time with the tagger's worker thread running vs off, in
  real-time-paced replays, interleaved (off, on, off, on) to cancel drift on a shared machine;
* the musicnn taggers (the training-time teacher, MSD and MTT ``musicnn`` models, TF1) on the
  same 3 s windows when ``.venv-teacher`` exists (``scripts/setup_teacher.sh``): seconds per
  window and parameters. musicnn is the reference small tagger of the tutorial's era.

Accuracy is reported by ``onbeat train tags`` (10-fold artist-disjoint cross-validation on 4Q) in
``models/weights/tags.md``; it is not recomputed here.

Run: ``python benchmarks/bench_tags.py [--seconds 20] [--paced-seconds 15]``. Thread counts are
pinned to 1 (BLAS, OpenMP, numba, torch).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SR = 44100


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_onbeat(signal: np.ndarray, windows: int) -> dict[str, float]:
    """Per-window time of the live tagger (log-mel, NumPy CNN, similarity head), one thread;
    the torch forward of the same weights (training only) for comparison."""
    rss0 = _rss_mb()
    from onbeat.models.registry import weights_path
    from onbeat.models.tagger_np import load_tagger_np
    from onbeat.realtime.library import similarity_head
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    path = weights_path("tags")
    net, meta = load_tagger_np(path)
    head, _ = similarity_head(path)
    rss1 = _rss_mb()
    import torch
    from onbeat.models.tagger import load_tagger

    torch.set_num_threads(1)
    tnet, _ = load_tagger(path)
    spec = net.spec
    fb = spec.filterbank()
    n = spec.window_samples
    starts = np.linspace(0, len(signal) - n, windows).astype(int)
    mel_ms, cnn_ms, head_ms, torch_ms = [], [], [], []
    for i, s in enumerate(starts):
        x = np.ascontiguousarray(signal[s : s + n])
        t0 = time.perf_counter()
        m = spec.log_mel(x, fb)
        t1 = time.perf_counter()
        out = net(m[None])
        t2 = time.perf_counter()
        if head is not None:
            head.embed(m[None], out["trunk_map"])
        t3 = time.perf_counter()
        with torch.inference_mode():
            tnet(torch.from_numpy(m)[None])
        t4 = time.perf_counter()
        if i >= 3:  # warm-up
            mel_ms.append(1e3 * (t1 - t0))
            cnn_ms.append(1e3 * (t2 - t1))
            head_ms.append(1e3 * (t3 - t2))
            torch_ms.append(1e3 * (t4 - t3))
    total = np.asarray(mel_ms) + np.asarray(cnn_ms) + np.asarray(head_ms)
    return {
        "params": float(sum(p.numel() for p in tnet.parameters())),
        "mel_ms_p50": float(np.median(mel_ms)),
        "cnn_ms_p50": float(np.median(cnn_ms)),
        "head_ms_p50": float(np.median(head_ms)),
        "torch_cnn_ms_p50": float(np.median(torch_ms)),
        "window_ms_p50": float(np.median(total)),
        "window_ms_p99": float(np.percentile(total, 99)),
        "cpu_per_audio_s": float(np.median(total)) / 1e3 / 1.5,
        "rss_added_mb": rss1 - rss0,
        "cv_quadrant_accuracy": float(meta.get("cv_metrics", {}).get("quadrant_accuracy", np.nan)),
    }


def frame_times(signal: np.ndarray, seconds: float, tags: bool) -> dict[str, float]:
    """Analysis time per frame (features → onsets → beats) in a real-time paced replay."""
    from onbeat.realtime.bus import EventBus
    from onbeat.realtime.config import OnbeatConfig, apply_overrides
    from onbeat.realtime.engine import Engine
    from onbeat.realtime.sources import ArraySource

    cfg = apply_overrides(
        OnbeatConfig(), {"tags.enabled": "on" if tags else "off", "output.console": False}
    )
    bus = EventBus()
    sub = bus.subscribe("bench", 10_000_000)
    engine = Engine(cfg, bus=bus)
    if engine.tagger is not None:
        engine.tagger.prepare()
    stamps: list[float] = []
    engine.frame_hooks.append(lambda a, f, s: stamps.append(time.thread_time()))
    n = int(seconds * SR)
    engine.run_paced(ArraySource(signal[:n], SR))
    d = np.diff(np.asarray(stamps)) * 1e6  # thread CPU between consecutive frames, µs
    tags_events = sum(1 for e in sub.drain() if e.type == "tags")
    return {
        "frame_us_p50": float(np.median(d)),
        "frame_us_p99": float(np.percentile(d, 99)),
        "tags_events": float(tags_events),
        "dropped": float(engine.tagger.dropped_total if engine.tagger else 0),
    }


_MUSICNN = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[3])
import teacher
x = np.load(sys.argv[1])
r = teacher.bench_windows(x, int(sys.argv[2]))
print(json.dumps(r))
"""


def bench_musicnn(signal: np.ndarray, windows: int) -> dict[str, float] | None:
    """Seconds per 3 s window of the musicnn teacher (its own venv), or None if absent."""
    py = ROOT / ".venv-teacher" / "bin" / "python"
    if not py.exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npy"
        np.save(path, signal)
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_NUM_INTRAOP_THREADS="1")
        env["TF_NUM_INTEROP_THREADS"] = "1"
        out = subprocess.run(
            [str(py), "-c", _MUSICNN, str(path), str(windows), str(ROOT / "training")],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
    if out.returncode != 0:
        print(f"musicnn failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="audio for the per-window timing")
    ap.add_argument("--windows", type=int, default=100)
    ap.add_argument("--paced-seconds", type=float, default=15.0)
    ap.add_argument("--json", help="write the raw numbers here")
    args = ap.parse_args()
    from onbeat.realtime.demo import demo_song

    signal = demo_song(duration_s=args.seconds, sample_rate_hz=SR).samples
    res: dict[str, object] = {"onbeat": bench_onbeat(signal, args.windows)}
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for tags in (False, True, False, True):
        runs["on" if tags else "off"].append(frame_times(signal, args.paced_seconds, tags))
    res["frames"] = runs
    res["musicnn"] = bench_musicnn(signal, min(args.windows, 30))
    o = res["onbeat"]
    assert isinstance(o, dict)
    print(f"\n## Tagging (date {time.strftime('%Y-%m-%d')}, one thread)\n")
    print("| system | params | ms per 3 s window (p50) | p99 | CPU per s of audio (1.5 s hop) |")
    print("|---|---|---|---|---|")
    print(
        f"| onbeat tagger, live NumPy (mel {o['mel_ms_p50']:.2f} + CNN {o['cnn_ms_p50']:.2f} + "
        f"similarity {o['head_ms_p50']:.2f} ms) | "
        f"{o['params'] / 1e6:.2f} M | {o['window_ms_p50']:.2f} | {o['window_ms_p99']:.2f} | "
        f"{o['cpu_per_audio_s']:.4f} |"
    )
    m = res["musicnn"]
    if isinstance(m, dict):
        print(
            f"| musicnn MSD+MTT (teacher, TF1) | {m['params'] / 1e6:.2f} M | "
            f"{m['window_ms_p50']:.1f} | {m['window_ms_p99']:.1f} | "
            f"{m['window_ms_p50'] / 1e3 / 1.5:.4f} |"
        )
        print(f"\nonbeat / musicnn time per window: {o['window_ms_p50'] / m['window_ms_p50']:.3f}×")
    print(f"\nSame CNN in torch (training only, one thread): {o['torch_cnn_ms_p50']:.2f} ms")
    print(f"Memory added by the live model (NumPy, no torch): {o['rss_added_mb']:.0f} MB")
    off = np.median([r["frame_us_p50"] for r in runs["off"]])
    on = np.median([r["frame_us_p50"] for r in runs["on"]])
    off99 = np.median([r["frame_us_p99"] for r in runs["off"]])
    on99 = np.median([r["frame_us_p99"] for r in runs["on"]])
    print("\n| analysis thread CPU per frame | p50 µs | p99 µs | tags events | dropped |")
    print("|---|---|---|---|---|")
    for k in ("off", "on"):
        r = runs[k]
        print(
            f"| tags {k} | {np.median([x['frame_us_p50'] for x in r]):.0f} | "
            f"{np.median([x['frame_us_p99'] for x in r]):.0f} | "
            f"{sum(x['tags_events'] for x in r):.0f} | {sum(x['dropped'] for x in r):.0f} |"
        )
    print(f"\nwith/without tagger: p50 {on / off:.3f}×, p99 {on99 / off99:.3f}×")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
