"""GUI benchmark: the tracker's per-frame latency with and without the GUI, and the GUI's CPU.

Every run replays the built-in demo song at real-time pace in a fresh engine process and times
every analysis frame there (``Analyzer._frame``: features, onsets, beats, frame hooks), skipping
the first ``--warmup`` seconds. Three modes, interleaved run by run (the machine is shared, so a
load spike lands on every mode alike), each repeated ``--repeats`` times:

* ``bare``: the engine alone in a spawned process (``Engine.run_paced``, no frame hooks, nobody
  reading events): the tracker without any GUI;
* ``headless``: the GUI's engine process (:class:`onbeat.gui.engine_process.EngineProcess`:
  shared frame views, events over the pipe), read by a parent that draws nothing;
* ``gui``: the same engine process under the real window (``MainWindow``, all panels visible,
  60 fps, 1600x960, ``QT_QPA_PLATFORM=offscreen`` unless a display is set). GUI CPU is the GUI
  process's CPU time over the stream's wall time.

Run: ``python benchmarks/bench_gui.py [--seconds 20] [--repeats 3] [--markdown] [--json OUT]``.
Thread counts are pinned to 1 (BLAS, OpenMP, numba, torch), here and in the engine processes.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODES = ("bare", "headless", "gui")
DEDICATE_CPU = True


def _frame_stats(run: dict[str, Any], frame_rate_hz: float, warmup_s: float) -> dict[str, Any]:
    k = round(warmup_s * frame_rate_hz)
    x = run["frame_ns"][k:].astype(np.float64) / 1e3
    c = run["frame_cpu_ns"][k:].astype(np.float64) / 1e3
    return {
        "frames": int(x.size),
        "p50_us": float(np.percentile(x, 50)),
        "p99_us": float(np.percentile(x, 99)),
        "mean_us": float(x.mean()),
        "cpu_p50_us": float(np.percentile(c, 50)),
        "cpu_p99_us": float(np.percentile(c, 99)),
    }


def _bare_child(seconds: float, out: Any, cpus: Any) -> None:
    """The engine alone, timed like the engine process times it (runs in a spawned process)."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    from onbeat.gui.engine_process import _FrameTiming
    from onbeat.realtime.config import OnbeatConfig
    from onbeat.realtime.demo import demo_song
    from onbeat.realtime.engine import Engine
    from onbeat.realtime.sources import ArraySource

    timing = _FrameTiming()
    song = demo_song(duration_s=seconds)
    engine = Engine(OnbeatConfig())
    c0, w0 = time.process_time(), time.monotonic()
    engine.run_paced(ArraySource(song.samples, song.sample_rate_hz, name="demo"))
    wall_ns, cpu_ns = timing.take()
    out.put(
        {
            "frame_ns": wall_ns,
            "frame_cpu_ns": cpu_ns,
            "engine_cpu_pct": 100 * (time.process_time() - c0) / (time.monotonic() - w0),
        }
    )


def run_bare(seconds: float) -> dict[str, Any]:
    from onbeat.gui.engine_process import cpu_split

    split = cpu_split() if DEDICATE_CPU else None  # the same CPU as the GUI's engine process
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(
        target=_bare_child, args=(seconds, out, split[0] if split else None), daemon=True
    )
    proc.start()
    result = out.get(timeout=seconds + 120)
    proc.join(30)
    return result


def _engine(frame_timing: bool = True) -> Any:
    from onbeat.gui.engine_process import EngineOptions, EngineProcess
    from onbeat.realtime.config import OnbeatConfig

    config = OnbeatConfig()
    cap = max(400, int(np.ceil(10.0 * config.frame_rate_hz))) + 200
    options = EngineOptions(
        capacity_frames=cap,
        margin_frames=200,
        frame_timing=frame_timing,
        dedicate_cpu=DEDICATE_CPU,
    )
    return EngineProcess(config, options)


def _end_result(runner: Any) -> dict[str, Any]:
    end = runner.last_end
    assert end is not None and end.frame_ns is not None, runner.error
    return {
        "frame_ns": end.frame_ns,
        "frame_cpu_ns": end.frame_cpu_ns,
        "engine_cpu_pct": 100 * end.process_cpu_s / end.wall_s,
        "reason": end.summary.reason if end.summary else end.error,
    }


def run_headless(seconds: float) -> dict[str, Any]:
    from onbeat.gui.runner import SourceSpec

    runner = _engine()
    try:
        runner.start(SourceSpec("demo", duration_s=seconds))
        while runner.running:
            runner.pump()
            runner.subscription.drain()
            time.sleep(1 / 60)
        return _end_result(runner)
    finally:
        runner.close()


def run_gui(seconds: float) -> dict[str, Any]:
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from onbeat.gui.app import create_app
    from onbeat.gui.runner import SourceSpec
    from onbeat.gui.settings import GuiSettings
    from onbeat.gui.window import MainWindow
    from PyQt6 import QtCore

    app = create_app()
    runner = _engine()
    window = MainWindow(runner.config, GuiSettings(fps=60), save=False, runner=runner)
    window.resize(1600, 960)
    window.show()
    app.processEvents()
    assert window.start_source(SourceSpec("demo", duration_s=seconds)), window.last_error
    t0, c0, ticks0 = time.monotonic(), time.process_time(), window.ticks
    result: dict[str, Any] = {}

    def check() -> None:
        if not window.runner.running:
            wall = time.monotonic() - t0
            result["gui_cpu_pct"] = 100 * (time.process_time() - c0) / wall
            result["fps"] = (window.ticks - ticks0) / wall
            app.quit()

    poll = QtCore.QTimer()
    poll.timeout.connect(check)
    poll.start(100)
    app.exec()
    poll.stop()
    result.update(_end_result(window.runner))
    window.shutdown()
    window.deleteLater()
    app.processEvents()
    return result


def _summarise(runs: list[dict[str, Any]], frame_rate_hz: float, warmup_s: float) -> dict:
    stats = [_frame_stats(r, frame_rate_hz, warmup_s) for r in runs]
    pooled = np.concatenate(
        [r["frame_ns"][round(warmup_s * frame_rate_hz) :] for r in runs]
    ).astype(np.float64)
    out = {
        "runs": len(runs),
        "frames": int(pooled.size),
        "p50_us_runs": [round(s["p50_us"], 1) for s in stats],
        "p99_us_runs": [round(s["p99_us"], 1) for s in stats],
        "p50_us": statistics.median(s["p50_us"] for s in stats),
        "p99_us": statistics.median(s["p99_us"] for s in stats),
        "pooled_p50_us": float(np.percentile(pooled, 50) / 1e3),
        "pooled_p99_us": float(np.percentile(pooled, 99) / 1e3),
        "cpu_p50_us": statistics.median(s["cpu_p50_us"] for s in stats),
        "cpu_p99_us": statistics.median(s["cpu_p99_us"] for s in stats),
        "engine_cpu_pct": statistics.median(r["engine_cpu_pct"] for r in runs),
    }
    if "gui_cpu_pct" in runs[0]:
        out["gui_cpu_pct_runs"] = [round(r["gui_cpu_pct"], 1) for r in runs]
        out["gui_cpu_pct"] = statistics.median(r["gui_cpu_pct"] for r in runs)
        out["fps"] = statistics.median(r["fps"] for r in runs)
    return out


def markdown(summary: dict[str, dict], args: argparse.Namespace) -> str:
    base = summary["bare"]
    lines = [
        f"Demo song, {args.seconds:g} s at real-time pace per run, first {args.warmup:g} s "
        f"skipped; {args.repeats} interleaved runs per mode; per-frame time in the engine "
        "process (median over runs of each run's percentile; pooled in brackets).",
        "",
        "| mode | frame p50 µs | frame p99 µs | Δ p50 | Δ p99 | engine CPU % | GUI CPU % | fps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        s = summary[mode]
        d50 = 100 * (s["p50_us"] / base["p50_us"] - 1)
        d99 = 100 * (s["p99_us"] / base["p99_us"] - 1)
        gui = f"{s['gui_cpu_pct']:.1f}" if "gui_cpu_pct" in s else "—"
        fps = f"{s['fps']:.1f}" if "fps" in s else "—"
        lines.append(
            f"| {mode} | {s['p50_us']:.0f} ({s['pooled_p50_us']:.0f}) "
            f"| {s['p99_us']:.0f} ({s['pooled_p99_us']:.0f}) "
            f"| {'—' if mode == 'bare' else f'{d50:+.1f} %'} "
            f"| {'—' if mode == 'bare' else f'{d99:+.1f} %'} "
            f"| {s['engine_cpu_pct']:.1f} | {gui} | {fps} |"
        )
    lines.append("")
    for mode in MODES:
        s = summary[mode]
        extra = f"; GUI CPU % {s['gui_cpu_pct_runs']}" if "gui_cpu_pct_runs" in s else ""
        lines.append(f"- {mode}: p50 µs {s['p50_us_runs']}, p99 µs {s['p99_us_runs']}{extra}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="demo seconds per run")
    p.add_argument("--repeats", type=int, default=3, help="runs per mode (interleaved)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of frames skipped per run")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of modes")
    p.add_argument(
        "--shared-cpu",
        action="store_true",
        help="do not dedicate a CPU to the engine process (EngineOptions.dedicate_cpu=False)",
    )
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    p.add_argument("--json", type=Path, help="write the raw summary here")
    args = p.parse_args(argv)
    global DEDICATE_CPU
    DEDICATE_CPU = not args.shared_cpu
    os.environ.setdefault("ONBEAT_CONFIG_DIR", str(ROOT / "runs" / "bench_gui_config"))
    from onbeat.realtime.config import OnbeatConfig

    frame_rate = OnbeatConfig().frame_rate_hz
    modes = [m for m in args.modes.split(",") if m]
    runners = {"bare": run_bare, "headless": run_headless, "gui": run_gui}
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for rep in range(args.repeats):
        order = modes[rep % len(modes) :] + modes[: rep % len(modes)]  # rotate the order too
        for mode in order:
            t = time.monotonic()
            r = runners[mode](args.seconds)
            runs[mode].append(r)
            s = _frame_stats(r, frame_rate, args.warmup)
            gui = f" gui {r['gui_cpu_pct']:.1f} % at {r['fps']:.1f} fps" if "fps" in r else ""
            print(
                f"run {rep + 1}/{args.repeats} {mode:8s}: p50 {s['p50_us']:6.0f} µs "
                f"p99 {s['p99_us']:6.0f} µs (thread CPU p50 {s['cpu_p50_us']:4.0f} "
                f"p99 {s['cpu_p99_us']:4.0f}) engine {r['engine_cpu_pct']:.1f} %{gui} "
                f"({time.monotonic() - t:.0f} s)",
                file=sys.stderr,
            )
    summary = {m: _summarise(runs[m], frame_rate, args.warmup) for m in modes}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))
    if args.markdown and "bare" in summary:
        print(markdown(summary, args))
    else:
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
