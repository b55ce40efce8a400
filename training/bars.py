"""Training of the beat-synchronous bar model (:mod:`onbeat.realtime.bars`): ``onbeat train bars``.

Each training sequence is one recording seen beat by beat: the summary of every beat
(:func:`onbeat.realtime.bars.beat_vectors`, the very kernel the live tracker calls) and whether
that beat starts a bar. Beats come from two sources:

* the labelled beats, plus copies moved by N(0, 15 ms) each;
* the beats the live tracker issues on the recording (the shipped beat LSTM's activation from the
  cached features, replayed through :class:`~onbeat.realtime.tracker.BeatTracker`), labelled 1
  when within 70 ms of a labelled downbeat. These are what the model meets live: off-phase
  stretches, a wrong tempo octave, a late lock. A model scored only on labelled beats picks
  epochs (and sizes) that do worse live (``docs/status.md``, issue 3, session 11).

Epochs are chosen on the ROC-AUC over the validation items' *tracker* beats, the live case.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from onbeat.models.lstm import LSTMSpec, save_model
from onbeat.models.streaming import report_delay_frames
from onbeat.training.datasets import (
    FPS,
    HOP,
    SAMPLE_RATE,
    Item,
    cached_features,
    feature_extractor,
    feature_key,
    render_items,
)
from onbeat.training.loop import Pair, TrainConfig, predict, train
from onbeat.training.tasks import _card, downbeat_auc, downbeat_flags, renders_licence

log = logging.getLogger(__name__)

__all__ = ["bar_auc", "bar_pairs", "live_beats", "train_bars"]

_MATCH_S = 0.07  # a tracker beat within this of a labelled downbeat is one


def live_beats(net: Any, delay_frames: float, x: np.ndarray) -> np.ndarray:
    """Beat times (s) the live tracker issues on features ``x``, with the beat model ``net``
    (torch, sequence forward: equal to the live numba step to 1e-5)."""
    import dataclasses

    from onbeat.realtime.config import OnbeatConfig
    from onbeat.realtime.stages import StreamContext
    from onbeat.realtime.tracker import BeatTracker

    act = predict(net, np.array(x, dtype=np.float32))  # a copy: x may be a read-only map
    base = OnbeatConfig().tracker
    cfg = dataclasses.replace(
        base, input_latency_s=base.input_latency_s + delay_frames * HOP / SAMPLE_RATE
    )
    tr = BeatTracker(cfg, hop_size=HOP)
    tr.prepare(StreamContext(SAMPLE_RATE, HOP))
    buf = np.zeros(2, dtype=np.float32)
    out = []
    for k in range(act.shape[0]):
        buf[0], buf[1] = act[k, 0], act[k, 1]
        for e in tr.process(buf, (k + 1) * HOP):
            if e.type == "beat":
                out.append(e.time_s)
    return np.asarray(out, dtype=np.float64)


def _beat_model() -> tuple[Any, float, str]:
    """The shipped beat model in torch (every ensemble member), its delay in frames, and an id
    of its weights."""
    from onbeat.models.lstm import load_torch_members

    net, meta, digest = load_torch_members("beats")
    return net, report_delay_frames(meta), digest


def bar_pairs(
    items: Sequence[Item],
    cache_dir: Path,
    *,
    jitter_copies: int = 0,
    tracker: bool = False,
    labelled: bool = True,
    beats_cache: Path | None = None,
    seed: int = 0,
) -> list[tuple[Pair, np.ndarray]]:
    """Beat-synchronous training pairs: ``((x, y), flags)`` per sequence.

    ``x`` = :func:`~onbeat.realtime.bars.beat_vectors`, ``y`` = ``(beats - 1, 1)`` targets (1:
    the beat starts a bar), ``flags`` = the same as a vector (for scoring). ``labelled`` adds
    the labelled beats and ``jitter_copies`` jittered copies of them; ``tracker`` adds the
    tracker's beats (cached in ``beats_cache``, a JSON file, keyed by the beat model's weights).
    """
    from onbeat.realtime.bars import bar_columns, beat_vectors

    cols = bar_columns(feature_extractor().layout)
    rng = np.random.default_rng(seed)
    cache: dict[str, list[float]] = {}
    net = None
    delay, digest = 1.0, ""
    if tracker:
        net, delay, digest = _beat_model()
        if beats_cache is not None and beats_cache.exists():
            stored = json.loads(beats_cache.read_text())
            if stored.get("beats_model") == digest:
                cache = stored["beats"]
    fresh = 0
    out = []
    if tracker and len(cache) < len(items):
        from tqdm import tqdm

        items = tqdm(items, desc="tracker beats", unit="item")
    for it in items:
        if it.beats is None or it.downbeats is None or it.beats.size < 8:
            continue
        x = cached_features(it.audio, cache_dir, mmap=True)
        runs: list[tuple[np.ndarray, float]] = []
        if labelled:
            beats = np.asarray(it.beats, dtype=np.float64)
            for c in range(1 + jitter_copies):
                fr = beats * FPS
                if c:
                    fr = np.maximum.accumulate(fr + rng.normal(0.0, 1.5, fr.shape))
                runs.append((fr, 0.02))
        if tracker:
            key = str(it.audio)
            if key not in cache:
                cache[key] = live_beats(net, delay, x).round(4).tolist()
                fresh += 1
            tb = np.asarray(cache[key], dtype=np.float64)
            if tb.size >= 8:
                runs.append((tb * FPS, _MATCH_S))
        for fr, window in runs:
            flags = downbeat_flags(fr / FPS, np.asarray(it.downbeats), window)[:-1]
            y = flags[:, None].astype(np.float32)
            out.append(((beat_vectors(x, cols, fr), y), y[:, 0]))
    if tracker and fresh and beats_cache is not None:
        beats_cache.parent.mkdir(parents=True, exist_ok=True)
        beats_cache.write_text(json.dumps({"beats_model": digest, "beats": cache}))
    return out


def bar_auc(net: Any, data: Sequence[tuple[Pair, np.ndarray]]) -> float:
    """ROC-AUC of the bars model's output at bar starts against the other beats
    (:func:`~onbeat.training.tasks.downbeat_auc`)."""
    pos, neg = [], []
    for (x, _), down in data:
        p = predict(net, x)[:, 0]
        pos.append(p[down == 1])
        neg.append(p[down == 0])
    return downbeat_auc(np.concatenate(pos), np.concatenate(neg)) if pos else 0.5


def train_bars(
    *,
    run_dir: Path,
    export_dir: Path,
    cache_dir: Path,
    render_dirs: Sequence[Path],
    config: TrainConfig,
    hidden: int = 32,
    layers: int = 1,
    jitter_copies: int = 1,
    tracker: bool = True,
    max_valid: int = 40,
) -> dict[str, float]:
    """Train the bars model on the train splits of ``render_dirs`` and export the best epoch
    (chosen on the first ``max_valid`` items of each valid split) as ``bars``."""
    tr_items: list[Item] = []
    va_items: list[Item] = []
    for d in render_dirs:
        tr_items += render_items(d, split="train")
        va_items += render_items(d, split="valid")[:max_valid]
    if not tr_items or not va_items:
        raise FileNotFoundError(
            f"no rendered training data in {', '.join(map(str, render_dirs))} "
            "(run onbeat.training.render)"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    train_data = [
        p
        for p, _ in bar_pairs(
            tr_items,
            cache_dir,
            jitter_copies=jitter_copies,
            tracker=tracker,
            beats_cache=run_dir / "tracker_beats_train.json",
        )
    ]
    # the live case when the tracker is used, else the labelled beats
    valid = bar_pairs(
        va_items,
        cache_dir,
        tracker=tracker,
        labelled=not tracker,
        beats_cache=run_dir / "tracker_beats_valid.json",
    )
    spec = LSTMSpec(
        name="bars",
        n_in=train_data[0][0].shape[1],
        hidden=hidden,
        layers=layers,
        outputs=("downbeat",),
        frame_rate_hz=FPS,
        features=feature_key(),
        dropout=0.1,
    )
    sources = f"labelled beats ({1 + jitter_copies} copies, 15 ms jitter in the extra ones)" + (
        " and the live tracker's beats (shipped beat model)" if tracker else ""
    )

    def export(net: Any, metrics: dict[str, float]) -> None:
        meta = {
            "task": "beat-synchronous downbeat evidence (causal LSTM, one step per beat)",
            "data": f"{sources} of {len(tr_items)} train items of "
            + ", ".join(str(d) for d in render_dirs)
            + f"; valid {len(va_items)} items"
            + (" (tracker beats)" if tracker else ""),
            "renders": "python -m onbeat.training.render --max-files 750 (data/renders); "
            "python -m onbeat.training.render --sets heavy --out data/renders_heavy "
            "--max-files 600",
            "training_command": f"onbeat train bars --hidden {hidden} --layers {layers} "
            f"--epochs {config.epochs} --steps {config.steps_per_epoch} "
            f"--crop-frames {config.crop_frames}"
            + "".join(f" --extra-renders {d}" for d in render_dirs[1:])
            + ("" if tracker else " --labelled-only")
            + (f" --seed {config.seed}" if config.seed else ""),
            "valid_downbeat_auc": round(metrics["score"], 4),
            "epoch": metrics["epoch"],
            "params": sum(p.numel() for p in net.parameters()),
            "licence": renders_licence(render_dirs[1:]),
        }
        save_model(net, export_dir, extra=meta)
        (export_dir / "bars.md").write_text(_card("bars", meta))

    return train(
        spec=spec,
        train_data=train_data,
        valid_data=[p for p, _ in valid],
        config=config,
        run_dir=run_dir,
        score=lambda net, _: bar_auc(net, valid),
        on_best=export,
        weight_decay=1e-4,
    )
