"""Tune the tagger's smoothing offline: tag files once with smoothing off, then simulate.

Every file, and random pairs of files played as one stream (a song change without a gap), is
tagged once through the live tagger path (:meth:`onbeat.realtime.tags.Tagger.tag_array`: the
live windows, gate and model) with ``tags.ema_s = 0`` and ``tags.hysteresis = 0``, so each
``tags`` event carries one window's raw probabilities and embedding. The smoothing
(:class:`onbeat.realtime.tags.TagsState`) is then re-run on those sequences for each setting of
a grid, and the label-stability numbers of ``onbeat eval tags --live --transitions`` are
printed per setting: top-label changes per 30 s and settle time on single files, time to
settle after the song change on pairs.

The shipped model has seen every 4Q clip in training, so its outputs on them are more
confident than on new music. ``--fold-models RUN_DIR`` uses the cross-validation models of
``onbeat train tags --folds K --keep-folds --steps 0 --run-dir RUN_DIR`` instead: each clip is
tagged by the model that did not train on it, and pairs are drawn within one fold's test clips.

The novelty restart reads the similarity head's embedding, as live. Fold models have no head
beside them, so ``--fold-models`` uses the shipped head (``--head`` picks another). A fold model
is another tagger, so the head needs its own frozen trunk beside it (``similarity_trunk``, e.g.
``runs/stage/similarity.safetensors`` next to a copy of the tagger it was trained on);
without one the restart falls back to the fold model's own embedding, and the script says so.

Run: ``python scripts/tune_tag_smoothing.py DIR [--fold-models runs/tf2/tags] [--pairs 300]``
(DIR: audio files, e.g. ``../shared/data/mood/mer4q/audio``; the raw sequences are cached).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import pickle
from pathlib import Path

import numpy as np
from onbeat.models.registry import weights_path
from onbeat.models.tagger_np import GENRES, QUADRANTS
from onbeat.realtime.config import OnbeatConfig, TagsConfig, apply_overrides
from onbeat.realtime.events import TagsEvent
from onbeat.realtime.tags import Tagger, TagsState
from onbeat.training.eval_tags import (
    find_audio,
    label_switch_s,
    song_labels,
    switch_metrics,
    tag_stability,
    window_probs,
)

Seq = list[tuple[float, np.ndarray, np.ndarray, np.ndarray]]  # time, genre, quadrant, embedding


def _raw(tagger: Tagger, samples: np.ndarray) -> Seq:
    events = tagger.tag_array(samples)
    genre, quadrant = window_probs(events)
    return [
        (e.time_s, g, q, np.array(e.embedding))
        for e, g, q in zip(events, genre, quadrant, strict=True)
    ]


def _groups(files: list[Path], fold_models: Path | None) -> list[tuple[Path, list[Path]]]:
    """(model weights, the files it tags): the shipped model for all, or each CV fold's model
    for its own test clips."""
    if fold_models is None:
        return [(weights_path("tags"), files)]
    by_stem = {f.stem: f for f in files}
    groups = []
    for d in sorted(fold_models.glob("fold*/")):
        names = (d / "test_clips.txt").read_text().split()
        groups.append((d / "tags.safetensors", [by_stem[n] for n in names if n in by_stem]))
    if not groups:
        raise SystemExit(f"no foldK/tags.safetensors under {fold_models}")
    return groups


def tag_all(
    config: OnbeatConfig,
    files: list[Path],
    fold_models: Path | None,
    n_pairs: int,
    seed: int,
    head: Path | None = None,
) -> tuple[list[Seq], list[tuple[float, Seq]]]:
    """Raw window sequences of every file and of ``n_pairs`` random same-group pairs
    (``head``: the similarity head whose embedding drives the novelty restart)."""
    from onbeat.training.datasets import load_audio
    from tqdm import tqdm

    rate = config.audio.sample_rate_hz
    rng = np.random.default_rng(seed)
    groups = _groups(files, fold_models)
    singles: list[Seq] = []
    pairs: list[tuple[float, Seq]] = []
    for weights, group in groups:
        tagger = Tagger(config.tags, sample_rate_hz=rate, inline=True, weights=weights, head=head)
        tagger.prepare()
        if tagger._similarity is None:
            print(f"note: no similarity head fits {weights}: novelty reads the tagger's embedding")
        audio = {f: load_audio(f, rate) for f in tqdm(group, desc=f"load {weights.parent.name}")}
        singles += [_raw(tagger, audio[f]) for f in tqdm(group, desc="files")]
        n = round(n_pairs * len(group) / len(files))
        for _ in tqdm(range(n), desc="pairs"):
            i, j = rng.choice(len(group), 2, replace=False)
            a, b = audio[group[i]], audio[group[j]]
            pairs.append((len(a) / rate, _raw(tagger, np.concatenate([a, b]))))
    return singles, pairs


def simulate(seq: Seq, tags: TagsConfig) -> list[TagsEvent]:
    """The displayed labels of ``seq`` under the smoothing of ``tags``, as minimal TagsEvents."""
    st = TagsState.from_config(tags, GENRES, QUADRANTS)
    events = []
    for t, g, q, emb in seq:
        tg, tq = st.update(g, q, 0.0, emb)
        events.append(
            TagsEvent(
                sample_index=0, time_s=t, emitted_s=t, genre=(), mood_quadrant=(), valence=0.0,
                arousal=0.0, voice=0.0, energy=0.0, top_genre=GENRES[tg],
                top_quadrant=QUADRANTS[tq],
            )
        )  # fmt: skip
    return events


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory", type=Path)
    ap.add_argument("--max-files", type=int, default=0)
    ap.add_argument("--fold-models", type=Path, help="RUN_DIR/tags of a --keep-folds CV run")
    ap.add_argument("--pairs", type=int, default=300, help="random song changes to simulate")
    ap.add_argument(
        "--head",
        type=Path,
        help="similarity head for the novelty embedding (default: the one beside the tagger; "
        "with --fold-models the shipped one, which runs on its own trunk as live)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=Path("runs/tag_smoothing_raw.pkl"))
    ap.add_argument("--ema", default="4,6,8,12", help="comma-separated tags.ema_s values")
    ap.add_argument("--hysteresis", default="0.1,0.15,0.2", help="tags.hysteresis values")
    ap.add_argument("--novelty", default="0,0.3,0.4,0.5,0.6", help="tags.novelty values")
    ap.add_argument("--dwell", default="0", help="tags.dwell_s values")
    ap.add_argument("--hop", type=float, default=None, help="tags.hop_s (default: the shipped one)")
    ap.add_argument(
        "--tie",
        type=float,
        default=0.0,
        help="also score song changes leniently: where the new song's own top label leads its "
        "runner-up by less than this, showing the runner-up counts as settled too",
    )
    args = ap.parse_args()
    overrides: dict[str, object] = {
        "tags.enabled": "on",
        "tags.ema_s": 0.0,
        "tags.hysteresis": 0.0,
        "output.console": False,
    }
    if args.hop is not None:
        overrides["tags.hop_s"] = args.hop
    config = apply_overrides(OnbeatConfig(), overrides)
    if args.cache.exists():
        cached = pickle.loads(args.cache.read_bytes())
        singles, pairs = cached[:2]
        cached_hop_s = cached[2] if len(cached) > 2 else 1.5  # caches before the hop was stored
        if abs(cached_hop_s - config.tags.hop_s) > 1e-9:
            raise SystemExit(
                f"{args.cache} holds windows at hop {cached_hop_s} s, not {config.tags.hop_s} s: "
                "give another --cache"
            )
    else:
        files = find_audio(args.directory)
        if args.max_files:
            files = files[: args.max_files]
        head = args.head
        if head is None and args.fold_models is not None:
            head = weights_path("similarity")
        singles, pairs = tag_all(config, files, args.fold_models, args.pairs, args.seed, head)
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        args.cache.write_bytes(pickle.dumps((singles, pairs, config.tags.hop_s)))
    hop_s, window_s = config.tags.hop_s, config.tags.window_s
    own = [_own(s) for s in singles]  # each file's own labels
    targets = [_own([w for w in s if w[0] >= b + window_s]) for b, s in pairs]
    lenient = [_acceptable([w for w in s if w[0] >= b + window_s], args.tie) for b, s in pairs]
    print(f"{len(singles)} files, {len(pairs)} pairs; hop {hop_s} s")
    # the bound of any smoothing: how often a song's first k windows already name its own labels
    bound = {
        k: np.mean([_own(s[:k]) == o for s, o in zip(singles, own, strict=True) if len(s) > k])
        for k in (1, 2, 3, 4)
    }
    print("first k windows name the file's own labels: " + ", ".join(
        f"k={k} {v:.3f}" for k, v in bound.items()))  # fmt: skip
    print(f"{'ema_s':>5} {'hyst':>5} {'novelty':>7} {'dwell':>5}  {'chg/30s':>7}"
          f" {'settle':>6} {'stable':>6} {'own':>5}  {'switch':>6} {'<=6s':>5} {'reach':>5}"
          + (f"  ties<{args.tie:g}: {'switch':>6} {'<=6s':>5} {'reach':>5}" if args.tie else ""))  # fmt: skip
    grid = [
        [float(v) for v in a.split(",")]
        for a in (args.ema, args.hysteresis, args.novelty, args.dwell)
    ]
    for ema_s, hyst, nov, dwell_s in itertools.product(*grid):
        tags = dataclasses.replace(
            config.tags, ema_s=ema_s, hysteresis=hyst, novelty=nov, dwell_s=dwell_s
        )
        shown = [simulate(s, tags) for s in singles]
        stab = [tag_stability(e) for e in shown]
        agree = [
            (e[-1].top_genre, e[-1].top_quadrant) == o for e, o in zip(shown, own, strict=True)
        ]
        shown_pairs = [simulate(s, tags) for _, s in pairs]
        sw = switch_metrics(
            [
                label_switch_s(e, b, t)
                for e, (b, _), t in zip(shown_pairs, pairs, targets, strict=True)
            ]
        )
        line = (
            f"{ema_s:5.1f} {hyst:5.2f} {nov:7.2f} {dwell_s:5.1f}  "
            f"{np.mean([x.top_changes_per_30s for x in stab]):7.3f} "
            f"{np.mean([x.settle_s for x in stab]):6.2f} "
            f"{np.mean([x.meets_targets for x in stab]):6.3f} {np.mean(agree):5.3f}  "
            f"{sw['switch_s']:6.2f} {sw['switch_share']:5.2f} {sw['switch_reached']:5.2f}"
        )
        if args.tie:
            lw = switch_metrics(
                [
                    label_switch_s(e, b, ok)
                    for e, (b, _), ok in zip(shown_pairs, pairs, lenient, strict=True)
                ]
            )
            line += (
                f"  {'':>9} {lw['switch_s']:6.2f} {lw['switch_share']:5.2f} "
                f"{lw['switch_reached']:5.2f}"
            )
        print(line)


def _acceptable(seq: Seq, tie: float) -> tuple[set[str], set[str]]:
    """The genres and quadrants that count as a song's own: the top of its mean raw window
    probabilities, plus the runner-up where the top leads it by less than ``tie``."""
    out = []
    for idx, names in ((1, GENRES), (2, QUADRANTS)):
        p = np.mean([w[idx] for w in seq], axis=0)
        order = np.argsort(p)[::-1]
        ok = {names[order[0]]}
        if p[order[0]] - p[order[1]] < tie:
            ok.add(names[order[1]])
        out.append(ok)
    return out[0], out[1]


def _own(seq: Seq) -> tuple[str, str]:
    """A file's own labels: the top of its mean raw window probabilities."""
    return song_labels([w[1] for w in seq], [w[2] for w in seq])


if __name__ == "__main__":
    main()
