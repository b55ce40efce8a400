"""``onbeat train onsets|beats``: data, validation scoring and export for each model.

Onsets
    Train on Böck folds 0-3, validate (choose the epoch and the peak-picking threshold) on fold 4,
    and never touch fold 5, which is the held-out test fold reported in the model card. (Folds 6
    and 7 are not in ``../shared/data``.)

Beats
    Train on the ``train`` split of the rendered MIDI sets (``python -m onbeat.training.render``),
    validate on their ``valid`` split; the ``test`` split and the Frets-on-Fire songs are held out
    for evaluation.

Runs are resumable: the same command continues from ``RUN_DIR/ckpt.pt``. The best epoch is
exported to ``models/weights/NAME.safetensors`` with a model card ``NAME.json`` / ``NAME.md``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from onbeat.models.lstm import CausalLSTM, LSTMSpec, save_model
from onbeat.training.augment import EqAugment, GainAugment
from onbeat.training.datasets import (
    Item,
    augmented_items,
    bock_items,
    feature_extractor,
    feature_key,
    nonbeat_onsets,
    pairs,
    render_items,
)
from onbeat.training.loop import Pair, TrainConfig, predict, train

__all__ = ["train_beats", "train_onsets"]

log = logging.getLogger(__name__)

ONSET_TRAIN_FOLDS = (0, 1, 2, 3)
ONSET_VALID_FOLDS = (4,)
ONSET_TEST_FOLDS = (5,)
THRESHOLDS = tuple(round(0.15 + 0.05 * k, 2) for k in range(12))  # 0.15 .. 0.70
PRE_AVG_S = (0.0, 0.05)
PRE_MAX_S = (0.01, 0.03)


def onset_pickers(
    thresholds: Sequence[float] = THRESHOLDS,
    pre_avg_s: Sequence[float] = PRE_AVG_S,
    pre_max_s: Sequence[float] = PRE_MAX_S,
) -> list[dict[str, float]]:
    """The peak-picker settings an onset model's validation chooses among."""
    return [
        {"threshold": th, "pre_avg_s": pa, "pre_max_s": pm}
        for th in thresholds
        for pa in pre_avg_s
        for pm in pre_max_s
    ]


def renders_licence(extra_render_dirs: Sequence[Path | str] = ()) -> str:
    """Licence line of a model card for weights trained on the MIDI renders plus extra folders.

    Parameters
    ----------
    extra_render_dirs : sequence of path
        The ``--extra-renders`` folders (generated songs, tracker modules, MIDI game music, MMA
        grooves); none for the renders alone.

    Returns
    -------
    str
        The weights' licence and the licences of the training material.
    """
    text = (
        "weights: MIT (onbeat); trained on renders of Groove (CC BY 4.0), "
        "POP909 (MIT) and ASAP (CC BY-NC-SA 4.0: non-commercial)"
    )
    if extra_render_dirs:
        text += (
            "; extra renders "
            + ", ".join(str(d) for d in extra_render_dirs)
            + " (generated, or tracker modules, MIDI game music and MMA grooves of Debian "
            "packages: GPL/LGPL/BSD/Zlib/Artistic/CC-BY, listed in training/modules.py and "
            "training/render.py)"
        )
    return text


def _dated_onsets(act: np.ndarray, picker: dict[str, float], target_delay: int) -> np.ndarray:
    """Onset times (s) the live picker reports on ``act``, dated ``1 + target_delay`` frames
    before the frame that reports them."""
    from onbeat.realtime.config import OnsetConfig
    from onbeat.realtime.onset import pick_peaks_online

    peaks = pick_peaks_online(
        act,
        frame_rate_hz=100.0,
        threshold=picker["threshold"],
        pre_avg_s=picker["pre_avg_s"],
        pre_max_s=picker["pre_max_s"],
        min_interval_s=OnsetConfig().min_interval_s,
    )
    return (peaks - target_delay) * 0.01


def onset_f(
    net: CausalLSTM,
    data: Sequence[tuple[Pair, np.ndarray]],
    pickers: Sequence[dict[str, float]] | None = None,
    target_delay: int = 0,
) -> tuple[float, dict[str, float]]:
    """Best summed onset F (±25 ms) over peak-picker settings and the setting that gives it.

    Uses the engine's own online peak picker on the causal activation, and dates each onset one
    frame before the frame that reports it, as :class:`~onbeat.realtime.neural.LstmOnsets` does.
    ``pickers`` are dicts of ``threshold``, ``pre_avg_s`` and ``pre_max_s``
    (default: :func:`onset_pickers`); the chosen one ships in the model's metadata, which the
    live detector reads. A model trained with targets ``target_delay`` frames late has its
    onsets dated that many frames earlier still.
    """
    import mir_eval

    grid = list(pickers) if pickers is not None else onset_pickers()
    acts = [predict(net, x)[:, 0] for (x, _), _ in data]
    best: tuple[float, dict[str, float]] = (-1.0, grid[0])
    for pk in grid:
        tp = fp = fn = 0
        for act, (_, ref) in zip(acts, data, strict=True):
            det = _dated_onsets(act, pk, target_delay)
            m = len(mir_eval.util.match_events(ref, det, 0.025))
            tp, fp, fn = tp + m, fp + len(det) - m, fn + len(ref) - m
        p = tp / max(tp + fp, 1)
        r = tp / max(tp + fn, 1)
        f = 2 * p * r / max(p + r, 1e-9)
        if f > best[0]:
            best = (f, dict(pk))
    return best


def onset_dating_ms(
    net: CausalLSTM,
    data: Sequence[tuple[Pair, np.ndarray]],
    picker: dict[str, float],
    target_delay: int = 0,
) -> float:
    """Median signed error (ms) of matched onsets (±25 ms) when each detection is dated
    ``1 + target_delay`` frames before the frame that reports it; its negative, in frames,
    corrects the dating (``delay_frames`` in the model's metadata)."""
    import mir_eval

    errors: list[float] = []
    for (x, _), ref in data:
        det = _dated_onsets(predict(net, x)[:, 0], picker, target_delay)
        errors += [det[j] - ref[i] for i, j in mir_eval.util.match_events(ref, det, 0.025)]
    return 1000.0 * float(np.median(errors)) if errors else 0.0


def gain_augment() -> GainAugment:
    """Exact random-gain augmentation for the engine's default features."""
    f = feature_extractor()
    return GainAugment(f.layout, [int(d) for d in f._diff_frames], f.config.diff_max_bins)


def eq_augment(p_cut: float) -> EqAugment:
    """Exact random gain and equaliser for the engine's default features (``p_cut``: chance of a
    high- or low-pass per crop)."""
    f = feature_extractor()
    return EqAugment(
        f.layout,
        [int(d) for d in f._diff_frames],
        f.config.diff_max_bins,
        [fb.center_hz for fb in f.filterbanks],
        p_cut=p_cut,
    )


def _card(name: str, meta: dict[str, Any]) -> str:
    """A Markdown model card from metadata (dict values become nested lists)."""
    lines = [f"# Model card: `{name}`", ""]
    for k, v in meta.items():
        if isinstance(v, dict):
            lines.append(f"- **{k}**:")
            lines += [
                f"  - {kk}: {round(vv, 4) if isinstance(vv, float) else vv}" for kk, vv in v.items()
            ]
        else:
            lines.append(f"- **{k}**: {v}")
    return "\n".join(lines) + "\n"


def train_onsets(
    *,
    run_dir: Path,
    export_dir: Path,
    cache_dir: Path,
    config: TrainConfig,
    hidden: int = 32,
    layers: int = 2,
    target_delay: int = 0,
    aug_copies: int = 0,
    aug_dir: Path = Path("data/bock_aug"),
    aug_room: bool = True,
    renders: int = 0,
    render_dir: Path = Path("data/renders"),
    render_share: float = 0.5,
    final_from: Path | None = None,
) -> dict[str, float]:
    """Train the causal onset LSTM on the Böck folds and export the best epoch.

    With ``aug_copies`` > 0, each training recording also gets that many audio-domain
    augmented copies (:func:`~onbeat.training.datasets.augmented_items`: speed, room,
    microphone, EQ, noise; with ``aug_room`` False only speed and level), written once to
    ``aug_dir``. Validation and test folds are never augmented.

    With ``renders`` > 0, that many rendered MIDI items of the ``train`` split (a seeded choice)
    join the training set with their note-on onsets; their crops are drawn with a total share
    of at most ``render_share`` (the Böck recordings keep the rest).

    With ``target_delay`` > 0 the targets mark each onset that many frames (10 ms each) late:
    the network sees that much of the onset before it must report it, and the live detector
    declares it as extra latency (``delay_frames`` in the metadata) and dates onsets back.

    ``final_from`` names the export of a finished run of the same recipe. The final model then
    trains on the training *and* validation folds, stops at that run's best epoch (same
    schedule) and keeps its peak-picker setting: every choice was made on fold 4 before fold 4
    joined the training data, and fold 5 stays untouched for the test score. It also takes
    that run's width, layers, target delay and dating (overriding ``hidden`` and ``layers``).
    """
    final: dict[str, Any] | None = None
    if final_from is not None:
        ref = final_from / "onsets.json"
        if not ref.exists():
            raise FileNotFoundError(f"{ref} not found (the reference run's export)")
        final = json.loads(ref.read_text())
        if final["epoch"] > config.epochs:
            raise ValueError(f"the reference run's best epoch {final['epoch']} > --epochs")
        config = replace(config, stop_epoch=int(final["epoch"]))
        target_delay = int(final.get("target_delay_frames", 0))
        spec_ref = final["spec"]
        hidden, layers = int(spec_ref["hidden"]), int(spec_ref["layers"])
    tr_folds = ONSET_TRAIN_FOLDS + (ONSET_VALID_FOLDS if final else ())
    tr_items = bock_items(folds=tr_folds)
    va_items = bock_items(folds=ONSET_VALID_FOLDS)
    te_items = bock_items(folds=ONSET_TEST_FOLDS)
    if not tr_items or not va_items:
        raise FileNotFoundError("the Böck onset set is not in ../shared/data/onsets/bock")
    t0 = time.monotonic()
    if aug_copies:
        log.info("augmented copies: %d per training file into %s", aug_copies, aug_dir)
        tr_items = tr_items + augmented_items(tr_items, aug_dir, aug_copies, room=aug_room)
    n_bock = len(tr_items)
    if renders:
        pool = render_items(render_dir, split="train")
        if not pool:
            raise FileNotFoundError(f"no rendered training data in {render_dir}")
        pick = np.random.default_rng(config.seed).permutation(len(pool))[:renders]
        tr_items = tr_items + [pool[i] for i in sorted(pick)]
    delay_s = target_delay / 100.0
    train_data = list(pairs(tr_items, cache_dir, "onsets", delay=delay_s))
    weights = None
    if len(tr_items) > n_bock:
        frames = np.array([x.shape[0] for x, _ in train_data], dtype=np.float64)
        bock_f, rend_f = frames[:n_bock].sum(), frames[n_bock:].sum()
        w_r = min(1.0, render_share / (1.0 - render_share) * bock_f / rend_f)
        weights = [1.0] * n_bock + [w_r] * (len(tr_items) - n_bock)
        log.info(
            "renders: %d items, crop share %.2f",
            len(tr_items) - n_bock,
            w_r * rend_f / (bock_f + w_r * rend_f),
        )
    # the final model trains on fold 4 too: nothing is validated, so no validation features
    valid = (
        []
        if final
        else [
            (p, it.onsets)
            for p, it in zip(
                pairs(va_items, cache_dir, "onsets", delay=delay_s), va_items, strict=True
            )
        ]
    )
    log.info(
        "features ready in %.0f s: %d train, %d valid files",
        time.monotonic() - t0,
        len(train_data),
        len(valid),
    )
    spec = LSTMSpec(
        name="onsets",
        n_in=train_data[0][0].shape[1],
        hidden=hidden,
        layers=layers,
        outputs=("onset",),
        features=feature_key(),
        dropout=0.25,
    )
    chosen: dict[str, float] = {}
    if final is not None:
        chosen.update({k: float(final[k]) for k in ("threshold", "pre_avg_s", "pre_max_s")})
    log_path = run_dir / "train.log"  # a resumed run continues the epoch count
    epoch_no = itertools.count(
        1 + (len(log_path.read_text().splitlines()) if log_path.exists() else 0)
    )

    def score(net: CausalLSTM, _: Any) -> float:
        if final is not None:  # no validation data left: every epoch is the newest, export it
            return float(next(epoch_no))
        f, picker = onset_f(net, valid, target_delay=target_delay)
        chosen.clear()
        chosen.update(picker)
        return f

    def export(net: CausalLSTM, metrics: dict[str, float]) -> None:
        test = [
            (p, it.onsets)
            for p, it in zip(
                pairs(te_items, cache_dir, "onsets", delay=delay_s), te_items, strict=True
            )
        ]
        f_test, _ = onset_f(net, test, pickers=[dict(chosen)], target_delay=target_delay)
        # dating: the reporting frame less the target delay, less the validation fold's median
        # error (a detector fires on the first frame above threshold, often before the peak)
        if final is not None:
            dating_ms = float(final.get("valid_dating_ms", 0.0))
        else:
            dating_ms = onset_dating_ms(net, valid, dict(chosen), target_delay)
        meta = {
            "task": "online onset detection (causal LSTM, Böck et al. 2012 style)",
            "data": (
                "Böck onset set (research only), folds 0-4 train (epoch and peak picking "
                f"chosen on fold 4 by {final_from}), fold 5 test"
                if final
                else "Böck onset set (research only), folds 0-3 train, fold 4 valid, fold 5 test"
            )
            + (
                f"; {aug_copies} augmented copies of each training file (speed 0.9-1.1"
                + (", room, microphone, EQ, noise)" if aug_room else ", level)")
                if aug_copies
                else ""
            )
            + (
                f"; {len(tr_items) - n_bock} rendered MIDI items (train split, note-on onsets)"
                if len(tr_items) > n_bock
                else ""
            ),
            "training_command": "onbeat train onsets"
            + (f" --final-from {final_from}" if final else "")
            + (f" --renders {renders}" if renders else "")
            + (f" --aug-copies {aug_copies}" if aug_copies else "")
            + ("" if aug_room or not aug_copies else " --aug-kind speed")
            + (f" --layers {layers}" if layers != 2 else "")
            + (f" --target-delay {target_delay}" if target_delay else ""),
            "valid_f": round(float(final["valid_f"]), 4) if final else round(metrics["score"], 4),
            "test_f_fold5": round(f_test, 4),
            "threshold": chosen["threshold"],
            "pre_avg_s": chosen["pre_avg_s"],
            "pre_max_s": chosen["pre_max_s"],
            "delay_frames": round(1.0 + target_delay + dating_ms / 10.0, 1),
            "valid_dating_ms": round(dating_ms, 1),
            "target_delay_frames": target_delay,
            "epoch": metrics["epoch"],
            "params": sum(p.numel() for p in net.parameters()),
            "licence": "weights: MIT (onbeat); trained on the Böck set, research-only data",
        }
        save_model(net, export_dir, extra=meta)
        (export_dir / "onsets.md").write_text(_card("onsets", meta))
        log.info("exported onsets model (epoch %d): test F %.4f", metrics["epoch"], f_test)

    aug = gain_augment()
    return train(
        spec=spec,
        train_data=train_data,
        valid_data=[p for p, _ in valid],
        config=config,
        run_dir=run_dir,
        score=score,
        on_best=export,
        augment=aug,
        context=aug.context,
        weight_decay=1e-4,
        sample_weight=weights,
    )


def beat_f(
    net: Any,
    data: Sequence[tuple[Pair, np.ndarray]],
    target_delay: int = 0,
    downbeats: Sequence[np.ndarray | None] | None = None,
    downbeat_gain: float = 0.0,
) -> float:
    """Mean of beat-activation peak F (±70 ms) — a tracker-free proxy for epoch selection.

    Peaks of a model trained with targets ``target_delay`` frames late are dated that many
    frames back. With ``downbeat_gain`` > 0 (and ``downbeats``, one array or None per item)
    the score adds ``downbeat_gain`` × (:func:`downbeat_auc` − 0.5), so that an epoch whose
    downbeat output separates bar starts from the other beats better can win."""
    import mir_eval
    from onbeat.realtime.onset import pick_peaks_online

    fs = []
    pos: list[np.ndarray] = []
    neg: list[np.ndarray] = []
    for i, ((x, _), ref) in enumerate(data):
        out = predict(net, x)
        act = out[:, 0]
        peaks = pick_peaks_online(
            act,
            frame_rate_hz=100.0,
            threshold=0.3,
            pre_avg_s=0.0,
            pre_max_s=0.15,
            min_interval_s=0.2,
        )
        det = (peaks - target_delay) * 0.01
        fs.append(mir_eval.onset.f_measure(ref, det, window=0.07)[0])
        db = downbeats[i] if downbeats is not None and downbeat_gain > 0 else None
        if db is not None and out.shape[1] > 1:
            p, n = _downbeat_values(out[:, 1], ref, db, target_delay)
            pos.append(p)
            neg.append(n)
    f = float(np.mean(fs)) if fs else 0.0
    if pos:
        f += downbeat_gain * (downbeat_auc(np.concatenate(pos), np.concatenate(neg)) - 0.5)
    return f


def beat_values(act: np.ndarray, beats_s: np.ndarray, offset_fr: int = 0) -> np.ndarray:
    """The maximum of a 100 frames/s activation within ±3 frames of frame
    ``round(beat * 100) + offset_fr``, for each beat."""
    vals = np.zeros(beats_s.size)
    for j, t in enumerate(beats_s):
        k = int(np.rint(t * 100.0)) + offset_fr
        lo, hi = max(0, k - 3), min(act.size, k + 4)
        vals[j] = act[lo:hi].max() if hi > lo else 0.0
    return vals


def downbeat_flags(beats_s: np.ndarray, downbeats_s: np.ndarray, window_s: float) -> np.ndarray:
    """Whether each beat lies within ``window_s`` of a downbeat."""
    if downbeats_s.size == 0 or beats_s.size == 0:
        return np.zeros(beats_s.size, dtype=bool)
    return np.min(np.abs(beats_s[:, None] - downbeats_s[None, :]), axis=1) < window_s


def _downbeat_values(
    act: np.ndarray, beats_s: np.ndarray, downbeats_s: np.ndarray, target_delay: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`beat_values` of the downbeat activation, split into (downbeats, other beats)."""
    vals = beat_values(act, beats_s, target_delay)
    is_db = downbeat_flags(beats_s, downbeats_s, 0.02)
    return vals[is_db], vals[~is_db]


def downbeat_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC-AUC of values at downbeats (``pos``) against values at the other beats (``neg``)
    (0.5 = no separation; ties count half)."""
    if pos.size == 0 or neg.size == 0:
        return 0.5
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([pos, neg]))[: pos.size].sum()
    return float((r - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


DISPLACED_LEAD_S = 4.0  # a crop starts at least this long before a displaced section


def displaced_crop_starts(
    items: Sequence[Item],
    n_frames: Sequence[int],
    crop: int,
    folders: Sequence[Path],
    lead_s: float = DISPLACED_LEAD_S,
) -> list[npt.NDArray[np.int64] | None]:
    """Where a training crop of each item may start: for items of the ``displaced`` render set,
    never inside a displaced section nor less than ``lead_s`` before one (the network must have
    heard the grid the labels keep); None (anywhere) for every other item.

    The sections come from the items' manifest records in ``folders``
    (:func:`onbeat.training.render.displaced_spans_s`).
    """
    from onbeat.training.datasets import FPS, manifest_records
    from onbeat.training.render import displaced_spans_s

    recs = {
        rec["name"]: rec
        for folder in folders
        for rec in manifest_records(folder)
        if rec["set"] == "displaced"
    }
    out: list[npt.NDArray[np.int64] | None] = []
    for it, n in zip(items, n_frames, strict=True):
        rec = recs.get(it.name) if it.set == "displaced" else None
        if rec is None:
            out.append(None)
            continue
        f = np.arange(max(1, n - crop + 1), dtype=np.int64)
        t = f / FPS
        ok = np.ones(f.size, dtype=bool)
        for a, b in displaced_spans_s(rec):
            ok &= ~((t >= a - lead_s) & (t < b))
        out.append(f[ok] if ok.any() else np.zeros(1, dtype=np.int64))
    return out


def _per_folder(values: Sequence[float], n: int, flag: str) -> list[float]:
    """One value per folder: a single value serves every folder."""
    if n == 0:
        return []
    if len(values) == 1:
        return [float(values[0])] * n
    if len(values) != n:
        raise ValueError(f"{flag}: give one value, or one per folder ({n}), not {len(values)}")
    return [float(v) for v in values]


def train_beats(
    *,
    run_dir: Path,
    export_dir: Path,
    cache_dir: Path,
    render_dir: Path,
    config: TrainConfig,
    hidden: int = 48,
    layers: int = 2,
    max_valid: int = 40,
    max_train: int = 0,
    bidirectional: bool = False,
    init: Path | None = None,
    pseudo_dir: Path | None = None,
    pseudo_weight: float = 1.0,
    extra_render_dirs: Sequence[Path] = (),
    extra_weights: Sequence[float] = (1.0,),
    target_delay: int = 0,
    downbeat_gain: float = 0.0,
    fof_dir: Path | None = None,
    fof_hold_out: tuple[str, ...] = (),
    fof_weight: float = 1.0,
    lmms_dir: Path | None = None,
    lmms_weight: float = 1.0,
    keep_epochs: bool = False,
    eq_cut: float = 0.0,
) -> dict[str, float]:
    """Train the causal beat/downbeat LSTM on rendered MIDI and export the best epoch.

    At most ``max_train`` training items (a seeded random choice; 0 = all) are used. Their
    features are memory-mapped from the cache, so the set may be larger than memory (1,776
    one-minute items are about 20 GB).

    ``bidirectional`` trains the offline teacher
    (:class:`onbeat.training.beat_teacher.BiLSTMTeacher`) instead, exported to ``export_dir``
    as ``teacher.*``. ``init`` starts from a ``best.pt`` of the same shape. ``pseudo_dir`` adds
    the pseudo-labelled real recordings of :mod:`onbeat.training.pseudo` (frames outside their
    kept segments are masked), their crop-sampling probability multiplied by ``pseudo_weight``.
    ``extra_render_dirs`` add the train splits of more render folders (the generated ``heavy``
    and ``displaced`` sets of :mod:`onbeat.training.render`), each sampled with its weight in
    ``extra_weights`` (one weight serves every folder); the valid split of each (at most half of
    ``max_valid`` again) joins the validation set.

    ``fof_dir`` adds the Frets-on-Fire songs (real band mixes with chart beats) except those
    whose names start with one of ``fof_hold_out``, sampled with ``fof_weight``: a
    cross-validation fold holds songs (or a band) out and is evaluated on them only; the
    epoch is still chosen on the render valid split, never on a Frets-on-Fire song.

    ``lmms_dir`` adds the ``train`` half of the LMMS demo songs
    (:mod:`onbeat.training.lmms`: real electronic productions with their sequencer grid),
    sampled with ``lmms_weight``; the ``test`` half never trains.

    ``keep_epochs`` also exports every epoch to ``RUN_DIR/epochs/NN`` (the best-valid epoch
    can be one that fails a check the valid split does not hold, e.g. the synthetic loops).

    ``eq_cut`` > 0 replaces the random gain of every training crop by a random gain and
    equaliser (:class:`~onbeat.training.augment.EqAugment`), with a high- or low-pass in that
    share of the crops.

    ``target_delay`` > 0 marks each beat that many frames late in the targets, so the network
    hears the beat's attack before it must report it; the metadata's ``delay_frames`` (1 + the
    delay, as for onsets) is added by the live stage to the tracker's input latency (the
    tracker predicts beats, so what is emitted stays on time once it is locked).

    ``downbeat_gain`` > 0 adds the validation downbeat AUC to the epoch-selection score
    (:func:`beat_f`); ``config.output_weight`` sets how much the downbeat output weighs in the
    loss.
    """
    tr_items = render_items(render_dir, split="train")
    if 0 < max_train < len(tr_items):
        pick = np.random.default_rng(config.seed).choice(len(tr_items), max_train, replace=False)
        tr_items = [tr_items[i] for i in sorted(pick)]
    va_items = render_items(render_dir, split="valid")[:max_valid]
    if not tr_items or not va_items:
        raise FileNotFoundError(
            f"no rendered training data in {render_dir} (run onbeat.training.render)"
        )
    weights = [1.0] * len(tr_items)
    n_extra = 0
    extra_w = _per_folder(extra_weights, len(extra_render_dirs), "--extra-weight")
    extra_notes = []
    for folder, w in zip(extra_render_dirs, extra_w, strict=True):
        extra_tr = render_items(folder, split="train")
        if not extra_tr:
            raise FileNotFoundError(f"no rendered train items in {folder}")
        n_extra += len(extra_tr)
        extra_notes.append(f" plus {len(extra_tr)} items of {folder} (sampling weight {w:g})")
        tr_items = tr_items + extra_tr
        weights += [w] * len(extra_tr)
        va_items = va_items + render_items(folder, split="valid")[: max_valid // 2]
    n_renders = len(tr_items)
    if pseudo_dir is not None:
        from onbeat.training.pseudo import pseudo_items

        extra = pseudo_items(pseudo_dir)
        if not extra:
            raise FileNotFoundError(f"no pseudo-labelled items in {pseudo_dir}")
        tr_items = tr_items + extra
    weights += [pseudo_weight] * (len(tr_items) - n_renders)
    n_fof = 0
    fof_names = ""
    if fof_dir is not None:
        from onbeat.training.datasets import fof_train_items

        fof = fof_train_items(fof_dir, fof_hold_out)
        if not fof:
            raise ValueError(f"--fof-hold-out {','.join(fof_hold_out)} leaves no song in {fof_dir}")
        n_fof = len(fof)
        fof_names = ", ".join(it.name for it in fof)
        tr_items = tr_items + fof
        weights += [fof_weight] * n_fof
    n_lmms = 0
    if lmms_dir is not None:
        from onbeat.training.datasets import lmms_items

        lmms_songs = lmms_items(lmms_dir, "train")
        if not lmms_songs:
            raise FileNotFoundError(f"no LMMS train songs in {lmms_dir} (onbeat.training.lmms)")
        n_lmms = len(lmms_songs)
        tr_items = tr_items + lmms_songs
        weights += [lmms_weight] * n_lmms
    delay_s = target_delay / 100.0
    train_data = list(pairs(tr_items, cache_dir, "beats", mmap=True, delay=delay_s))
    valid = [
        (p, it.beats)
        for p, it in zip(pairs(va_items, cache_dir, "beats", delay=delay_s), va_items, strict=True)
    ]
    spec = LSTMSpec(
        name="beats",
        n_in=train_data[0][0].shape[1],
        hidden=hidden,
        layers=layers,
        outputs=("beat", "downbeat"),
        features=feature_key(),
        dropout=0.2,
    )

    pseudo_note = (
        f" plus {len(tr_items) - n_renders} pseudo-labelled real recordings "
        f"({pseudo_dir}, sampling weight {pseudo_weight})"
        if pseudo_dir is not None
        else ""
    )

    def export(net: Any, metrics: dict[str, float], out: Path = export_dir) -> None:
        meta = {
            "task": "online beat and downbeat activation (causal LSTM)",
            "data": f"rendered MIDI (Groove, POP909, ASAP) train split, {n_renders - n_extra} items"
            + "".join(extra_notes)
            + f"{pseudo_note}"
            + (
                f" plus {n_fof} Frets-on-Fire songs ({fof_names}; sampling weight {fof_weight:g})"
                if n_fof
                else ""
            )
            + (
                f" plus the {n_lmms} LMMS demo songs of the train half ({lmms_dir}; sampling "
                f"weight {lmms_weight:g})"
                if n_lmms
                else ""
            )
            + f"; valid split {len(va_items)} items",
            "training_command": f"onbeat train beats --epochs {config.epochs} --steps "
            f"{config.steps_per_epoch} --hidden {hidden} --crop-frames {config.crop_frames}"
            + (f" --layers {layers}" if layers != 2 else "")
            + (f" --offbeat-weight {config.offbeat_weight:g}" if config.offbeat_weight != 1 else "")
            + (f" --onset-weight {config.onset_weight:g}" if config.onset_weight != 1 else "")
            + (f" --phase-weight {config.phase_weight:g}" if config.phase_weight else "")
            + (f" --lr {config.lr:g}" if config.lr != TrainConfig().lr else "")
            + (f" --init {init}" if init is not None else "")
            + (f" --pseudo {pseudo_dir} --pseudo-weight {pseudo_weight:g}" if pseudo_dir else "")
            + (f" --target-delay {target_delay}" if target_delay else "")
            + (
                f" --downbeat-weight {config.output_weight[1]}"
                if len(config.output_weight) > 1
                else ""
            )
            + "".join(f" --extra-renders {d}" for d in extra_render_dirs)
            + "".join(f" --extra-weight {w:g}" for w in (extra_weights if n_extra else ()))
            + (
                f" --fof {fof_dir} --fof-weight {fof_weight:g}"
                + (f" --fof-hold-out {','.join(fof_hold_out)}" if fof_hold_out else "")
                if n_fof
                else ""
            )
            + (f" --lmms {lmms_dir} --lmms-weight {lmms_weight:g}" if n_lmms else "")
            + (f" --eq-augment {eq_cut:g}" if eq_cut > 0 else "")
            + (f" --seed {config.seed}" if config.seed else ""),
            "valid_peak_f": round(metrics["score"], 4),
            "valid_score": "peak F"
            + (f" + {downbeat_gain} x (downbeat AUC - 0.5)" if downbeat_gain else ""),
            "lr": config.lr,
            "init": str(init) if init is not None else None,
            "target_delay_frames": target_delay,
            "delay_frames": 1.0 + target_delay,
            "epoch": metrics["epoch"],
            "params": sum(p.numel() for p in net.parameters()),
            "licence": renders_licence(extra_render_dirs)
            + (
                "; Frets-on-Fire songs (Debian fretsonfire-songs-muldjord/-sectoid: "
                "CC BY-SA 3.0 and MIT-style)"
                if n_fof
                else ""
            )
            + (
                "; LMMS demo songs (Debian lmms-common: GPL-2+, Artistic-2, BSD-2-clause, "
                "CC BY-SA 3.0 per song)"
                if n_lmms
                else ""
            ),
        }
        if bidirectional:
            from onbeat.training.beat_teacher import save_teacher

            meta["task"] = "offline beat and downbeat activation (bidirectional LSTM teacher)"
            meta["training_command"] = "onbeat train beats --bidirectional"
            save_teacher(net, out, meta)
            return
        save_model(net, out, extra=meta)
        (out / "beats.md").write_text(_card("beats", meta))

    def export_epoch(net: Any, metrics: dict[str, float]) -> None:
        export(net, metrics, Path(run_dir) / "epochs" / f"{int(metrics['epoch']):02d}")

    make_net: Any = CausalLSTM
    if bidirectional:
        from onbeat.training.beat_teacher import BiLSTMTeacher

        make_net = BiLSTMTeacher
    if not 0.0 <= eq_cut <= 1.0:
        raise ValueError(f"--eq-augment {eq_cut:g}: the share of crops with a cut is in [0, 1]")
    aug = eq_augment(eq_cut) if eq_cut > 0 else gain_augment()
    return train(
        spec=spec,
        train_data=train_data,
        valid_data=[p for p, _ in valid],
        config=config,
        run_dir=run_dir,
        score=lambda net, _: beat_f(
            net, valid, target_delay, [it.downbeats for it in va_items], downbeat_gain
        ),
        on_best=export,
        on_epoch=export_epoch if keep_epochs else None,
        augment=aug,
        context=aug.context,
        weight_decay=1e-4,
        make_net=make_net,
        init=init,
        sample_weight=weights,
        crop_starts=displaced_crop_starts(
            tr_items, [x.shape[0] for x, _ in train_data], config.crop_frames, extra_render_dirs
        ),
        onset_marks=(
            [
                nonbeat_onsets(it.onsets, it.beats, x.shape[0], delay=delay_s)
                for it, (x, _) in zip(tr_items, train_data, strict=True)
            ]
            if config.onset_weight != 1.0
            else None
        ),
    )


def main_train(
    task: str,
    *,
    epochs: int,
    steps: int,
    run_root: Path,
    export_dir: Path,
    seed: int,
    lr: float | None = None,
    hidden: int | None = None,
    crop_frames: int | None = None,
    max_train: int = 0,
    cv_steps: int = 1000,
    folds: int = 10,
    offbeat_weight: float = 1.0,
    onset_weight: float = 1.0,
    phase_weight: float = 0.0,
    downbeat_weight: float = 1.0,
    mixup: float = 0.0,
    renders: int = 0,
    keep_folds: bool = False,
    same_window: float = 0.0,
    tag_weight: float = 0.0,
    consistency: float = 0.0,
    consistency_heads: tuple[str, ...] | None = None,
    bidirectional: bool = False,
    init: Path | None = None,
    pseudo_dir: Path | None = None,
    pseudo_weight: float = 1.0,
    extra_renders: Sequence[Path] = (),
    extra_weights: Sequence[float] = (1.0,),
    aug_copies: int = 0,
    aug_kind: str = "full",
    final_from: Path | None = None,
    layers: int | None = None,
    target_delay: int = 0,
    trunk: Path | None = None,
    labelled_only: bool = False,
    fof_dir: Path | None = None,
    fof_hold_out: tuple[str, ...] = (),
    fof_weight: float = 1.0,
    lmms_dir: Path | None = None,
    lmms_weight: float = 1.0,
    keep_epochs: bool = False,
    eq_cut: float = 0.0,
) -> int:
    """Entry point used by ``onbeat train``."""
    import torch

    torch.set_num_threads(int(os.environ.get("ONBEAT_TRAIN_THREADS", "2")))
    cache = Path(os.environ.get("ONBEAT_CACHE", "data/cache"))
    if task == "tags":
        from onbeat.training.tags import CONSISTENCY_HEADS, train_tags

        result = train_tags(
            run_dir=run_root / "tags",
            export_dir=export_dir,
            cache_dir=Path(os.environ.get("ONBEAT_TAGS_CACHE", "data/tags_cache")),
            teacher_dir=Path(os.environ.get("ONBEAT_TEACHER", "data/teacher")),
            steps=steps,
            cv_steps=cv_steps,
            folds=folds,
            seed=seed,
            mixup=mixup,
            keep_folds=keep_folds,
            consistency=consistency,
            consistency_heads=consistency_heads or CONSISTENCY_HEADS,
        )
        print(json.dumps(result))
        return 0
    if task == "similarity":
        from onbeat.training.similarity import train_similarity

        sim = train_similarity(
            run_dir=run_root / "similarity",
            export_dir=export_dir,
            cache_dir=Path(os.environ.get("ONBEAT_TAGS_CACHE", "data/tags_cache")),
            teacher_dir=Path(os.environ.get("ONBEAT_TEACHER", "data/teacher")),
            epochs=epochs,
            steps=steps,
            seed=seed,
            hidden=hidden or 256,
            renders=renders,
            renders_root=Path(os.environ.get("ONBEAT_RENDERS", "data/renders")),
            same_window=same_window,
            tag_weight=tag_weight,
            trunk=trunk,
        )
        print(json.dumps({"losses": sim["losses"]}))
        return 0
    if task == "bars":
        from onbeat.training.bars import train_bars

        renders = Path(os.environ.get("ONBEAT_RENDERS", "data/renders"))
        best = train_bars(
            run_dir=run_root / "bars",
            export_dir=export_dir,
            cache_dir=cache,
            render_dirs=[renders, *extra_renders],
            config=TrainConfig(
                epochs=epochs,
                steps_per_epoch=steps,
                crop_frames=crop_frames or 128,
                pos_weight=(3.0,),
                seed=seed,
                **({"lr": lr} if lr is not None else {}),
            ),
            hidden=hidden or 64,
            layers=layers or 1,
            tracker=not labelled_only,
        )
        print(json.dumps(best))
        return 0
    if task == "onsets":
        cfg = TrainConfig(
            epochs=epochs,
            steps_per_epoch=steps,
            crop_frames=crop_frames or 400,
            pos_weight=(4.0,),
            seed=seed,
            **({"lr": lr} if lr is not None else {}),
        )
        best = train_onsets(
            run_dir=run_root / "onsets",
            export_dir=export_dir,
            cache_dir=cache,
            config=cfg,
            hidden=hidden or 32,
            layers=layers or 2,
            target_delay=target_delay,
            aug_copies=aug_copies,
            aug_dir=Path(os.environ.get("ONBEAT_BOCK_AUG", "data/bock_aug")),
            aug_room=aug_kind == "full",
            renders=renders,
            render_dir=Path(os.environ.get("ONBEAT_RENDERS", "data/renders")),
            final_from=final_from,
        )
    else:
        cfg = TrainConfig(
            epochs=epochs,
            steps_per_epoch=steps,
            crop_frames=crop_frames or 600,
            pos_weight=(6.0, 12.0),
            offbeat_weight=offbeat_weight,
            onset_weight=onset_weight,
            phase_weight=phase_weight,
            output_weight=(1.0, downbeat_weight) if downbeat_weight != 1.0 else (),
            seed=seed,
            **({"lr": lr} if lr is not None else {}),
        )
        best = train_beats(
            hidden=hidden or 48,
            max_train=max_train,
            run_dir=run_root / "beats",
            export_dir=export_dir,
            cache_dir=cache,
            render_dir=Path(os.environ.get("ONBEAT_RENDERS", "data/renders")),
            config=cfg,
            bidirectional=bidirectional,
            init=init,
            pseudo_dir=pseudo_dir,
            pseudo_weight=pseudo_weight,
            extra_render_dirs=tuple(extra_renders),
            extra_weights=tuple(extra_weights),
            target_delay=target_delay,
            downbeat_gain=1.0 if downbeat_weight != 1.0 else 0.0,
            fof_dir=fof_dir,
            fof_hold_out=fof_hold_out,
            fof_weight=fof_weight,
            lmms_dir=lmms_dir,
            lmms_weight=lmms_weight,
            keep_epochs=keep_epochs,
            eq_cut=eq_cut,
        )
    print(json.dumps(best))
    return 0
