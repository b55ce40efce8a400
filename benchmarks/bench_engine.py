"""Engine benchmark: feature path and DSP onset cost, callback cost, start-up, memory.

Compares, on the same synthesized audio in one run:

* onbeat's streaming features + SuperFlux onsets (one numba call per 10 ms hop);
* the same features computed offline with plain NumPy/SciPy (vectorised, whole file);
* librosa's mel spectrogram + onset strength and onset detection, offline (anchors venv);
* aubio's online onset detector (anchors venv), madmom online SuperFlux-ish RNN onsets if present.

Run: ``python benchmarks/bench_engine.py [--seconds 60] [--markdown]``. Thread counts are pinned
to 1 (BLAS, OpenMP, numba, torch).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def bench_onbeat(signal: np.ndarray, sr: int) -> dict[str, float]:
    """Per-frame cost of the feature path and the onset stage, and whole-engine CPU per second."""
    from onbeat.realtime.bus import EventBus
    from onbeat.realtime.config import OnbeatConfig, apply_overrides
    from onbeat.realtime.engine import Engine
    from onbeat.realtime.events import OnsetEvent
    from onbeat.realtime.sources import ArraySource

    config = apply_overrides(OnbeatConfig(), {"tags.enabled": "off"})  # tags: bench_tags.py
    bus = EventBus()
    sub = bus.subscribe("bench", 10_000_000)
    engine = Engine(config, bus=bus)
    feat_times: list[float] = []
    onset_times: list[float] = []

    # Time each stage per frame by wrapping the analyzer's stage calls.
    src = ArraySource(signal, sr)
    engine_summary = engine.run_fast(src)
    analyzer = engine.analyzer
    assert analyzer is not None
    # Per-frame timing on a fresh stream.
    analyzer.reset()
    feats, onsets = analyzer.features, analyzer.onsets
    assert onsets is not None
    hop, max_n = 441, feats.spec.frame_size
    padded = np.concatenate([np.zeros(max_n, np.float32), signal.astype(np.float32)])
    pc = time.perf_counter
    for t in range(len(signal) // hop):
        end = (t + 1) * hop + max_n
        w = padded[end - max_n : end]
        t0 = pc()
        feats.process(w, end)
        t1 = pc()
        onsets.process(feats.output, end)
        t2 = pc()
        feat_times.append(t1 - t0)
        onset_times.append(t2 - t1)
    audio_s = len(signal) / sr
    detected = [e.time_s for e in sub.drain() if isinstance(e, OnsetEvent)]
    return {
        "engine_cpu_per_s": engine_summary.cpu_s / audio_s,
        "feature_us_median": 1e6 * statistics.median(feat_times),
        "feature_us_p99": 1e6 * _pct(feat_times, 99),
        "onset_us_median": 1e6 * statistics.median(onset_times),
        "feature_cpu_per_s": sum(feat_times) / audio_s,
        "onset_cpu_per_s": sum(onset_times) / audio_s,
        "onsets": detected,
        "onset_stage": type(onsets).__name__,
    }


def bench_numpy_reference(signal: np.ndarray, sr: int) -> float:
    """CPU seconds per audio second of the same features in vectorised NumPy/SciPy."""
    from onbeat.realtime.config import OnbeatConfig
    from onbeat.realtime.features import SpectralFeatures
    from onbeat.realtime.stages import StreamContext
    from reference import reference_features

    c = OnbeatConfig()
    f = SpectralFeatures(c.features)
    f.prepare(StreamContext(sr, 441))
    t0 = time.process_time()
    reference_features(
        signal,
        sample_rate_hz=sr,
        config=c.features,
        filterbanks=f.filterbanks,
        diff_frames=list(f._diff_frames),
    )
    return (time.process_time() - t0) / (len(signal) / sr)


def bench_callback(n_calls: int = 20000, block: int = 128) -> dict[str, float]:
    """Duration of the audio callback body (copy into the ring), median and p99."""
    from onbeat.realtime.ringbuffer import RingBuffer
    from onbeat.realtime.sources import InputCallback

    ring = RingBuffer(48000 * 10, 2)
    cb = InputCallback(ring)
    data = np.random.default_rng(0).standard_normal((block, 2)).astype(np.float32)
    times = []
    pc = time.perf_counter_ns
    for _ in range(n_calls):
        t0 = pc()
        cb(data, block, None, None)
        times.append(pc() - t0)
        if ring.written - ring.read_position > ring.capacity // 2:
            ring.read(ring.capacity)
    return {
        "callback_us_median": statistics.median(times) / 1e3,
        "callback_us_p99": _pct(times, 99) / 1e3,
    }


def bench_startup(wav: Path) -> float:
    """Seconds from launching ``onbeat replay`` (paced, warm numba cache) to its first frame."""
    t0 = time.monotonic()
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "onbeat",
            "replay",
            str(wav),
            "-v",
            "--no-console",
            "--duration",
            "2",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stderr is not None
    first = float("nan")
    for line in p.stderr:
        if "first frame" in line:
            first = time.monotonic() - t0
            break
    p.kill()
    p.wait()
    return first


def replay_peak_rss_mb(wav: Path) -> float:
    """Peak RSS (VmHWM) of a process that runs ``onbeat replay --fast`` on ``wav``.

    Read from /proc inside that process: ``ru_maxrss`` of children would carry over the peak of
    whatever this process had spawned before.
    """
    code = (
        "import sys; from onbeat.realtime.cli import main; "
        f"rc = main(['replay', {str(wav)!r}, '--fast', '--no-console']); "
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
    )
    r = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(r.stdout.strip().splitlines()[-1]) / 1024


def anchors(wav: Path, systems: list[tuple[str, str]]) -> dict[str, dict]:
    """Run anchor systems in their own venv (benchmarks/setup_anchors.sh)."""
    venv = Path(os.environ.get("ANCHORS_VENV", ROOT / ".venv-anchors"))
    py = venv / "bin" / "python"
    out: dict[str, dict] = {}
    if not py.exists():
        return out
    for system, task in systems:
        with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
            r = subprocess.run(
                [
                    str(py),
                    str(ROOT / "benchmarks/anchors/run_anchor.py"),
                    system,
                    task,
                    str(wav),
                    "--json",
                    tmp.name,
                ],
                capture_output=True,
                text=True,
                timeout=900,
            )
            if r.returncode == 0:
                out[f"{system}:{task}"] = json.loads(Path(tmp.name).read_text())
            else:
                out[f"{system}:{task}"] = {
                    "error": (r.stderr.strip().splitlines() or ["failed"])[-1]
                }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--json", help="write raw results here")
    args = ap.parse_args()

    import mir_eval
    import soundfile as sf
    from onbeat.realtime.demo import demo_song

    song = demo_song(duration_s=args.seconds)
    sr = song.sample_rate_hz
    tmpdir = Path(tempfile.mkdtemp())
    wav = tmpdir / "demo.wav"
    sf.write(wav, song.samples, sr)

    ob = bench_onbeat(song.samples, sr)
    f_ob = mir_eval.onset.f_measure(song.onsets_s, np.asarray(ob["onsets"]), window=0.025)[0]
    np_cost = bench_numpy_reference(song.samples, sr)
    cb = bench_callback()
    start_s = bench_startup(wav)
    rss_mb = replay_peak_rss_mb(wav)
    anc = anchors(
        wav,
        [
            ("librosa", "features"),
            ("librosa", "onsets"),
            ("aubio", "onsets"),
            ("madmom_online", "onsets"),
        ],
    )

    rows = [
        (
            f"onbeat features+onsets ({ob['onset_stage']}, streaming, 10 ms hop)",
            ob["feature_cpu_per_s"] + ob["onset_cpu_per_s"],
            f_ob,
            "causal, 10 ms",
        )
    ]
    rows.append(
        ("same features, NumPy/SciPy vectorised (offline)", np_cost, float("nan"), "offline")
    )
    for key, res in anc.items():
        if "error" in res:
            rows.append((key, float("nan"), float("nan"), "error: " + res["error"][:60]))
            continue
        f = float("nan")
        if res.get("times_s") is not None and key.endswith("onsets"):
            f = mir_eval.onset.f_measure(song.onsets_s, np.asarray(res["times_s"]), window=0.025)[0]
        rows.append(
            (
                key,
                res["cpu_s"] / res["audio_s"],
                f,
                "offline" if key.startswith("librosa") else "online",
            )
        )
    base = rows[0][1]
    print(f"\nEngine benchmark, {args.seconds:.0f} s synthesized band loop, 1 thread\n")
    print("| system | CPU s per s of audio | ratio to onbeat | onset F (±25 ms) | mode |")
    print("|---|---|---|---|---|")
    for name, cost, f, mode in rows:
        ratio = cost / base if base > 0 and cost == cost else float("nan")
        print(f"| {name} | {cost:.5f} | {ratio:.1f}× | {f:.3f} | {mode} |")
    print()
    print("| measure | value | target |")
    print("|---|---|---|")
    print(
        f"| feature path, per frame, median / p99 | {ob['feature_us_median']:.1f} / {ob['feature_us_p99']:.1f} µs | |"
    )
    print(
        f"| feature path, share of one core at 100 frames/s | {100 * ob['feature_cpu_per_s']:.2f} % | < 1 % |"
    )
    print(
        f"| onset stage ({ob['onset_stage']}) per frame, median | {ob['onset_us_median']:.1f} µs | |"
    )
    print(
        f"| whole engine (fast replay incl. events), CPU per s of audio | {ob['engine_cpu_per_s']:.4f} s | |"
    )
    print(
        f"| callback duration median / p99 (128-frame stereo blocks) | {cb['callback_us_median']:.1f} / {cb['callback_us_p99']:.1f} µs | p99 < 50 µs |"
    )
    print(f"| launch to first processed frame (warm numba cache) | {start_s:.2f} s | < 1.5 s |")
    print(f"| peak RSS of `onbeat replay --fast` (whole process) | {rss_mb:.0f} MB | reported |")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "onbeat": {k: v for k, v in ob.items() if k != "onsets"},
                    "numpy": np_cost,
                    "callback": cb,
                    "startup_s": start_s,
                    "rss_mb": rss_mb,
                    "anchors": {
                        k: {kk: vv for kk, vv in v.items() if kk != "times_s"}
                        for k, v in anc.items()
                    },
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
