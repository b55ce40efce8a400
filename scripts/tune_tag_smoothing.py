"""Tune the tagger's smoothing offline: replay files once with smoothing off, then simulate.

Every file (and every consecutive pair of files, played as one stream: a song change without a
gap) is replayed through the engine once with ``tags.ema_s = 0`` and ``tags.hysteresis = 0``,
so each ``tags`` event carries one window's raw probabilities and embedding. The smoothing
(:class:`onbeat.realtime.tags.TagsState`: EMA, hysteresis, restart on a novelty jump) is then
re-run on those sequences for each setting of a grid, and the label-stability numbers of
``onbeat eval tags --live --transitions`` are printed per setting: top-label changes per 30 s
and settle time on single files, time to settle after the song change on pairs.

Run: ``python scripts/tune_tag_smoothing.py DIR [--max-files N]`` (DIR: audio files, e.g. a
40-clip subset of 4Q; the raw sequences are cached in ``runs/tag_smoothing_raw.npz``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import pickle
from pathlib import Path

import numpy as np
from onbeat.models.tagger_np import GENRES, QUADRANTS
from onbeat.realtime.config import OnbeatConfig, TagsConfig, apply_overrides
from onbeat.realtime.events import TagsEvent
from onbeat.realtime.tags import TagsState
from onbeat.training.eval_tags import (
    MAX_SETTLE_S,
    find_audio,
    label_switch_s,
    replay_tags,
    tag_stability,
)

Seq = list[tuple[float, np.ndarray, np.ndarray, np.ndarray]]  # time, genre, quadrant, embedding


def _raw(config: OnbeatConfig, samples: np.ndarray, rate: int, name: str) -> Seq:
    from onbeat.realtime.sources import ArraySource

    out = []
    for e in replay_tags(config, ArraySource(samples, rate, name))[0]:
        g, q = dict(e.genre), dict(e.mood_quadrant)
        out.append(
            (
                e.time_s,
                np.array([g[k] for k in GENRES]),
                np.array([q[k] for k in QUADRANTS]),
                np.array(e.embedding),
            )
        )
    return out


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
    ap.add_argument("--cache", type=Path, default=Path("runs/tag_smoothing_raw.pkl"))
    ap.add_argument("--ema", default="4,6,8,12", help="comma-separated tags.ema_s values")
    ap.add_argument("--hysteresis", default="0.1,0.15,0.2", help="tags.hysteresis values")
    ap.add_argument("--novelty", default="0,0.3,0.4,0.5,0.6", help="tags.novelty values")
    ap.add_argument("--dwell", default="0", help="tags.dwell_s values")
    args = ap.parse_args()
    config = apply_overrides(
        OnbeatConfig(),
        {"tags.enabled": "on", "tags.ema_s": 0.0, "tags.hysteresis": 0.0, "output.console": False},
    )
    rate = config.audio.sample_rate_hz
    if args.cache.exists():
        singles, pairs = pickle.loads(args.cache.read_bytes())
    else:
        from onbeat.training.datasets import load_audio
        from tqdm import tqdm

        files = find_audio(args.directory)
        if args.max_files:
            files = files[: args.max_files]
        audio = {f: load_audio(f, rate) for f in tqdm(files, desc="load")}
        singles = [_raw(config, audio[f], rate, f.stem) for f in tqdm(files, desc="files")]
        pairs = []
        for a, b in tqdm(list(zip(files[0::2], files[1::2], strict=False)), desc="pairs"):
            pairs.append(
                (
                    len(audio[a]) / rate,
                    _raw(config, np.concatenate([audio[a], audio[b]]), rate, "p"),
                )
            )
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        args.cache.write_bytes(pickle.dumps((singles, pairs)))
    hop_s = config.tags.hop_s
    print(f"{len(singles)} files, {len(pairs)} pairs; hop {hop_s} s")
    print(f"{'ema_s':>5} {'hyst':>5} {'novelty':>7} {'dwell':>5}  {'chg/30s':>7} {'settle':>6} {'stable':>6}"
          f"  {'switch':>6} {'<=6s':>5}")  # fmt: skip
    grid = [
        [float(v) for v in a.split(",")]
        for a in (args.ema, args.hysteresis, args.novelty, args.dwell)
    ]
    for ema_s, hyst, nov, dwell_s in itertools.product(*grid):
        tags = dataclasses.replace(
            config.tags, ema_s=ema_s, hysteresis=hyst, novelty=nov, dwell_s=dwell_s
        )
        stab = [tag_stability(simulate(s, tags)) for s in singles]
        sw = [label_switch_s(simulate(s, tags), b) for b, s in pairs]
        print(
            f"{ema_s:5.1f} {hyst:5.2f} {nov:7.2f} {dwell_s:5.1f}  "
            f"{np.mean([x.top_changes_per_30s for x in stab]):7.3f} "
            f"{np.mean([x.settle_s for x in stab]):6.2f} "
            f"{np.mean([x.meets_targets for x in stab]):6.3f}  "
            f"{np.nanmean(sw):6.2f} {np.mean([s <= MAX_SETTLE_S for s in sw]):5.2f}"
        )


if __name__ == "__main__":
    main()
