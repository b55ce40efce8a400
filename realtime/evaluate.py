"""``onbeat eval beats|onsets DIR``: run the live code path over annotated files and score it.

A directory holds audio files with same-stem annotation files: ``NAME.beats`` (``time
[beat_in_bar]`` per line) or ``NAME.onsets`` (one time per line). Every file is replayed with
:meth:`Engine.run_fast` — exactly the path live input takes — and the events are scored with
mir_eval:

* onsets: F-measure, precision and recall at ±25 ms;
* beats: F-measure (±70 ms), CMLt, AMLt, downbeat F, the emission lag (``emitted_s`` minus the
  true beat it hit: median and p90), and the lock time (first time from which 4 consecutive beats
  are correct).

CPU seconds per audio second of the analysis thread are reported for both.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from onbeat.realtime.bus import EventBus
from onbeat.realtime.config import OnbeatConfig
from onbeat.realtime.engine import Engine
from onbeat.realtime.errors import OnbeatError
from onbeat.realtime.events import Event
from onbeat.realtime.sources import FileSource

__all__ = [
    "FileResult",
    "evaluate_dir",
    "lock_time_s",
    "read_annotations",
    "score_beats",
    "score_onsets",
]

AUDIO_EXT = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif")


@dataclass(slots=True)
class FileResult:
    """Scores of one file."""

    name: str
    audio_s: float
    cpu_s: float
    metrics: dict[str, float]
    activation: npt.NDArray[np.float32] = field(repr=False)
    detections_s: npt.NDArray[np.float64] = field(repr=False)
    reference_s: npt.NDArray[np.float64] = field(repr=False)


def read_annotations(path: Path) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64] | None]:
    """Times (first column) and, if present, beat-in-bar numbers (second column)."""
    times, positions = [], []
    for line in path.read_text().splitlines():
        parts = line.replace(",", " ").split()
        if not parts or parts[0].startswith("#"):
            continue
        times.append(float(parts[0]))
        if len(parts) > 1:
            try:
                positions.append(int(float(parts[1])))
            except ValueError:
                pass
    t = np.asarray(times, dtype=np.float64)
    pos = np.asarray(positions, dtype=np.int64) if len(positions) == len(times) and times else None
    return t, pos


def lock_time_s(
    detections_s: npt.NDArray[np.float64],
    reference_s: npt.NDArray[np.float64],
    window_s: float = 0.07,
) -> float:
    """First reference beat time from which 4 consecutive reference beats are each hit."""
    if reference_s.size < 4 or detections_s.size == 0:
        return math.nan
    hit = np.array([np.min(np.abs(detections_s - r)) <= window_s for r in reference_s])
    for i in range(len(hit) - 3):
        if hit[i : i + 4].all():
            return float(reference_s[i])
    return math.nan


def score_onsets(ref: npt.NDArray[np.float64], det: npt.NDArray[np.float64]) -> dict[str, float]:
    """mir_eval onset F, precision and recall at ±25 ms."""
    import mir_eval

    f, p, r = mir_eval.onset.f_measure(ref, det, window=0.025)
    return {"f": float(f), "precision": float(p), "recall": float(r)}


def score_beats(
    ref: npt.NDArray[np.float64],
    ref_pos: npt.NDArray[np.int64] | None,
    events: Sequence[dict[str, Any]],
) -> dict[str, float]:
    """Beat F (±70 ms), CMLt, AMLt, downbeat F, emission lag and lock time."""
    import mir_eval

    det = np.asarray([e["time_s"] for e in events], dtype=np.float64)
    emitted = np.asarray([e["emitted_s"] for e in events], dtype=np.float64)
    ref_t = mir_eval.beat.trim_beats(ref) if ref.size > 5 else ref
    det_t = mir_eval.beat.trim_beats(det) if det.size > 5 else det
    out: dict[str, float] = {"f": float(mir_eval.beat.f_measure(ref_t, det_t))}
    _cmlc, cmlt, _amlc, amlt = mir_eval.beat.continuity(ref_t, det_t)
    out.update({"cmlt": float(cmlt), "amlt": float(amlt)})
    if ref_pos is not None and ref.size:
        ref_db = ref[ref_pos == 1]
        det_db = np.asarray([e["time_s"] for e in events if e.get("beat_in_bar") == 1])
        out["downbeat_f"] = float(mir_eval.onset.f_measure(ref_db, det_db, window=0.07)[0])
    lags = []
    for t_em, t_det in zip(emitted, det, strict=True):
        j = int(np.argmin(np.abs(ref - t_det))) if ref.size else -1
        if j >= 0 and abs(ref[j] - t_det) <= 0.07:
            lags.append(t_em - ref[j])
    out["lag_median_s"] = float(np.median(lags)) if lags else math.nan
    out["lag_p90_s"] = float(np.percentile(lags, 90)) if lags else math.nan
    out["lock_s"] = lock_time_s(det, ref)
    return out


def _pairs(directory: Path, task: str) -> list[tuple[Path, Path]]:
    ext = ".beats" if task == "beats" else ".onsets"
    pairs = []
    for audio in sorted(directory.iterdir()):
        if audio.suffix.lower() in AUDIO_EXT:
            ann = audio.with_suffix(ext)
            if ann.exists():
                pairs.append((audio, ann))
    return pairs


def evaluate_file(config: OnbeatConfig, audio: Path, ann: Path, task: str) -> FileResult:
    """Replay one file through the engine and score it."""
    bus = EventBus()
    sub = bus.subscribe("eval", maxlen=10_000_000)
    engine = Engine(config, bus=bus)
    activation: list[float] = []
    source = FileSource(audio)

    def hook(analyzer: Any, frame: int, sample: int) -> None:
        stage = analyzer.onsets if task == "onsets" else getattr(analyzer, "beats", None)
        activation.append(float(getattr(stage, "activation", 0.0)))

    engine.frame_hooks.append(hook)
    summary = engine.run_fast(source)
    events: list[Event] = sub.drain()
    ref, ref_pos = read_annotations(ann)
    if task == "onsets":
        det = np.asarray([e.time_s for e in events if e.type == "onset"])
        metrics = score_onsets(ref, det)
    else:
        beat_events = [
            {
                "time_s": e.time_s,
                "emitted_s": e.emitted_s,
                "beat_in_bar": getattr(e, "beat_in_bar", 0),
            }
            for e in events
            if e.type == "beat"
        ]
        det = np.asarray([b["time_s"] for b in beat_events])
        metrics = score_beats(ref, ref_pos, beat_events)
    metrics["cpu_per_s"] = summary.cpu_per_audio_s
    return FileResult(
        name=audio.name,
        audio_s=summary.audio_s,
        cpu_s=summary.cpu_s,
        metrics=metrics,
        activation=np.asarray(activation, dtype=np.float32),
        detections_s=det,
        reference_s=ref,
    )


def evaluate_dir(
    config: OnbeatConfig, directory: Path, task: str, *, progress: bool = True
) -> tuple[list[FileResult], dict[str, float]]:
    """Evaluate every annotated file of ``directory``; returns per-file results and the means."""
    if not directory.is_dir():
        raise OnbeatError(f"{str(directory)!r} is not a directory")
    pairs = _pairs(directory, task)
    if not pairs:
        raise OnbeatError(f"no audio files with .{task} annotations in {str(directory)!r}")
    iterator: Any = pairs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(pairs, desc=f"eval {task}", unit="file")
    results = [evaluate_file(config, a, n, task) for a, n in iterator]
    keys = sorted({k for r in results for k in r.metrics})
    mean = {k: float(np.nanmean([r.metrics.get(k, math.nan) for r in results])) for k in keys}
    total_audio = sum(r.audio_s for r in results)
    mean["cpu_per_s"] = sum(r.cpu_s for r in results) / total_audio if total_audio else math.nan
    mean["files"] = float(len(results))
    return results, mean


def write_json(path: Path, task: str, results: list[FileResult], mean: dict[str, float]) -> None:
    """Per-file and mean metrics as JSON."""
    data = {
        "task": task,
        "mean": mean,
        "files": [{"name": r.name, "audio_s": r.audio_s, **r.metrics} for r in results],
    }
    path.write_text(json.dumps(data, indent=2, default=lambda v: None if v != v else v) + "\n")


def write_plot(path: Path, task: str, results: list[FileResult]) -> None:
    """PNG: per-file F-measure bars, and the activation with detections for one example."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 7), constrained_layout=True)
    names = [r.name[:24] for r in results]
    ax1.bar(range(len(results)), [r.metrics["f"] for r in results], color="#3a7bd5")
    ax1.set_xticks(range(len(results)), names, rotation=60, ha="right", fontsize=7)
    ax1.set_ylabel("F-measure")
    ax1.set_ylim(0, 1)
    ax1.set_title(f"onbeat eval {task}: per-file F-measure")
    ex = results[0]
    t = np.arange(len(ex.activation)) / 100.0
    end = min(t[-1] if len(t) else 0.0, 15.0)
    sel = t <= end
    ax2.plot(t[sel], ex.activation[sel], color="#555", lw=1, label="activation")
    for x in ex.reference_s[ex.reference_s <= end]:
        ax2.axvline(x, color="#2ca02c", alpha=0.5, lw=1)
    det = ex.detections_s[ex.detections_s <= end]
    ax2.plot(det, np.full(det.shape, 1.02), "v", color="#d62728", label="detected")
    ax2.set_xlabel("time (s)")
    ax2.set_title(f"{ex.name}: activation, reference (green), detections (red)")
    ax2.legend(loc="upper right")
    fig.savefig(path, dpi=100)
    plt.close(fig)
