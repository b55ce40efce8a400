#!/usr/bin/env python3
"""Replay captured beat activations through the tracker under other settings (issue 3).

The beat LSTM is the expensive part of the live path; the tracker is cheap. This script runs the
live pipeline once per file (``Engine.run_fast``, tags off, as ``bench_beats.py``), keeps the
activations, downbeat activations and level-gate flags that the tracker saw (cached under
``--cache``), then feeds them frame by frame into a fresh :class:`BeatTracker` for each
setting in the grid, exactly as ``BeatStage`` does (``scripts/diag_beats.py`` ``run_tracker``).
With the default setting the replayed beats must equal the live ones; the script says so per
set (``replay == live``). It prints one row per setting and set: beat F (±70 ms), CMLt, AMLt,
downbeat F (``DB-F``, where the set has downbeat labels), and for the synthetic set the re-lock
time after the 120 -> 138 BPM step, the beats kept through the 4 s break and the beats put into
silence. ``--json PATH`` writes every row, with each file's beat F (``f_by_file``).

    python scripts/tune_tracker.py --sets renders-valid,synthetic \\
        --grid tracker.octave_hold_beats=4,8 --grid tracker.octave_margin=2,4

A key that starts with ``_`` sets a module constant of ``realtime/tracker.py`` instead (those
read in Python, not inside a numba kernel), e.g. ``--grid _DB_CONTRAST=1,1.5,3``. A tuple
setting takes ``/`` between its items: ``--grid beats_per_bar=4,3/4``. A set that mixes families
(the renders: groove, asap, pop909) also gets its beat F per family, by the items' name prefix.

``--models DIR,DIR`` compares beat models instead of (or with) settings, without a live capture
per model: each model's activations come from the cached training features (``data/cache``, the
same engine features; ``ONBEAT_CACHE`` moves it) through the torch sequence forward, spliced into
an existing capture of the file (its silence flags and bar-model columns do not depend on the
beat model). ``.`` names the weights in use; ``A+B`` is an ensemble (the members' activations
averaged). Each model is replayed at its own report delay (``delay_frames`` of its metadata,
as ``BeatStage`` adds it to the tracker's input latency; ensemble folders must agree). These
activations equal the live path's to about 1e-6; the rows still say ``model``, so never mix
them up with live captures.

    python scripts/tune_tracker.py --sets renders-valid,heavy-valid --max-files 400 \
        --models .,runs/export_bo4r

Choose settings on ``renders-valid``, ``heavy-valid`` and ``synthetic`` (development sets);
FoF, ``renders-test`` and ``heavy-test`` are evaluation sets: ``--sets fof`` reports them, and a
setting picked on them would be tuned on the test data.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse
import dataclasses
import itertools
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def load_items(name: str, max_files: int | None) -> list:
    import bench_beats as bb

    if name == "synthetic":
        out = ROOT / "runs" / "tune_tracker" / "synthetic_audio"
        out.mkdir(parents=True, exist_ok=True)
        return bb.synthetic_set(out)
    if (named := bb.named_set(name, max_files)) is not None:
        return named
    raise SystemExit(f"unknown set {name!r} (synthetic, {', '.join(bb.NAMED_SETS)})")


def sections_by_item(items: list) -> dict[str, set[str]]:
    """Drum sections of each render item (``sections`` in its folder's manifest; empty if none)."""
    from onbeat.training.datasets import manifest_records
    from onbeat.training.subset import section_drums

    tables: dict[Path, dict[str, set[str]]] = {}
    for folder in {Path(it.audio).parent for it in items}:
        if (folder / "manifest.jsonl").exists():
            tables[folder] = {r["name"]: section_drums(r) for r in manifest_records(folder)}
    return {it.name: tables.get(Path(it.audio).parent, {}).get(it.name, set()) for it in items}


def capture(item, cache: Path) -> dict:
    """Activations the live tracker saw for one file (cached)."""
    from diag_beats import capture_onbeat
    from onbeat.models.registry import member_paths, weights_path

    key = f"{item.name}-{max(f.stat().st_mtime_ns for f in member_paths('beats'))}"
    if weights_path("bars").exists():
        key += f"-bars{weights_path('bars').stat().st_mtime_ns}"
    f = cache / f"{key}.npz"
    if f.exists():
        d = np.load(f)
        return {k: d[k] for k in d.files}
    c = capture_onbeat(Path(item.audio))
    out = {
        "act": c["act"],
        "db": c["db"],
        "silent": c["silent"],
        "live": np.asarray(c["live"], dtype=np.float64),
        "sr": np.array(c["ctx"].sample_rate_hz),
        "hop": np.array(c["hop"]),
    }
    if c["bar_feats"] is not None:
        out["bar_feats"] = c["bar_feats"]
    out["delay"] = np.array(model_delay_frames(None))
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(f, **out)
    return out


def any_capture(item, cache: Path) -> dict:
    """A cached capture of ``item`` under any model (for ``--models``); captures one if none."""
    import re

    pat = re.compile(re.escape(item.name) + r"-\d+(-bars\d+)?\.npz")
    found = sorted(f for f in cache.glob(f"{item.name}-*.npz") if pat.fullmatch(f.name))
    if not found:
        return capture(item, cache)
    d = np.load(found[-1])
    return {k: d[k] for k in d.files}


def eq_transform(spec: str):
    """``features -> features`` of the same audio through filters, e.g. ``hp200`` (a
    second-order high-pass at 200 Hz: a laptop microphone) or ``hp200+lp6000``; exact per band
    (:class:`onbeat.training.augment.EqAugment`). An empty spec is the identity."""
    if not spec:
        return None
    from onbeat.training.augment import second_order_db
    from onbeat.training.tasks import eq_augment

    aug = eq_augment(0.0)
    db = [np.zeros_like(o) for o in aug.octaves]
    for part in spec.split("+"):
        kind, fc = part[:2], float(part[2:])
        if kind not in ("hp", "lp"):
            raise SystemExit(f"--eq {spec}: each part is hpHZ or lpHZ")
        db = [
            d + second_order_db(o, fc, kind == "hp") for d, o in zip(db, aug.octaves, strict=True)
        ]
    return lambda x: aug.apply_bands(x, db)


def model_delay_frames(model_dir: Path | None) -> float:
    """Frames between a beat and the activation frame that reports it, for the beat model in
    ``model_dir`` (``None``: the one in use): ``delay_frames`` of its metadata (1 + the
    ``--target-delay`` it was trained with)."""
    from onbeat.models.registry import load_lstm
    from onbeat.models.streaming import report_delay_frames

    return report_delay_frames(load_lstm("beats", model_dir)[2])


def model_activations(model_dir: Path, eq: str = ""):
    """``item -> (beat, downbeat)`` activations of the beat model in ``model_dir`` (every
    ensemble member there, averaged) from the cached features (torch sequence forward, the
    training path), optionally through the filters ``eq`` (:func:`eq_transform`)."""
    import torch
    from onbeat.models.lstm import load_torch_members
    from onbeat.training.datasets import cached_features
    from onbeat.training.loop import predict

    torch.set_num_threads(1)
    net, _, _ = load_torch_members("beats", model_dir)
    cache = Path(os.environ.get("ONBEAT_CACHE", ROOT / "data" / "cache"))
    transform = eq_transform(eq)

    def run(item) -> np.ndarray:
        x = np.ascontiguousarray(cached_features(item.audio, cache))
        if transform is not None:
            x = np.ascontiguousarray(transform(x))
        return predict(net, x).astype(np.float64)

    return run


class SpecActivations:
    """``acts(spec, item)``: activations of a model spec, ``DIR`` or ``A+B+C`` (the members'
    activations averaged, as the live ensemble does), each folder's computed once per item and
    reused by every spec that names it."""

    def __init__(self, eq: str = "") -> None:
        self.eq = eq
        self._fns: dict[str, object] = {}
        self._acts: dict[tuple[str, str], np.ndarray] = {}

    def __call__(self, spec: str, item) -> np.ndarray:
        parts = spec.split("+")
        for part in parts:
            if part not in self._fns:
                self._fns[part] = model_activations(Path(part), self.eq)
            if (part, item.name) not in self._acts:
                self._acts[part, item.name] = self._fns[part](item)  # type: ignore[operator]
        return np.mean([self._acts[part, item.name] for part in parts], axis=0)

    @staticmethod
    def delay_frames(spec: str) -> float:
        """The common report delay of a spec's folders (they must agree, as live members do)."""
        delays = {model_delay_frames(Path(part)) for part in spec.split("+")}
        if len(delays) > 1:
            raise SystemExit(f"{spec}: the models report beats at different delays {delays}")
        return delays.pop()


def splice(c: dict, a: np.ndarray, name: str, delay_frames: float) -> dict:
    """The capture ``c`` with its beat and downbeat activations replaced by ``a``'s columns,
    reported ``delay_frames`` after the beat."""
    n = c["act"].shape[0]
    if a.shape[0] < n:
        raise SystemExit(f"{name}: cached features shorter than its capture")
    return {**c, "act": a[:n, 0], "db": a[:n, 1], "delay": np.array(delay_frames)}


def replay(c: dict, base, bars: list | None = None, **fields) -> np.ndarray:
    """Beat times of the tracker (``base`` with ``fields`` replaced) replayed over a capture;
    ``bars`` receives each beat's ``beat_in_bar``. BeatStage adds one hop to the tracker's
    input latency (see diag_beats.py), so the replay does too: the capture's model delay
    (``delay``, one frame for a model trained on on-time targets) in hops."""
    from diag_beats import run_tracker
    from onbeat.realtime.stages import StreamContext

    sr, hop = int(c["sr"]), int(c["hop"])
    cfg = dataclasses.replace(
        base, **fields, input_latency_s=base.input_latency_s + float(c.get("delay", 1.0)) * hop / sr
    )
    ctx = StreamContext(sample_rate_hz=sr, hop_size=hop)
    return np.asarray(
        run_tracker(cfg, ctx, hop, c["act"], c["db"], c["silent"], bars, c.get("bar_feats"))
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sets", default="renders-valid,synthetic")
    ap.add_argument("--max-files", type=int, default=40)
    ap.add_argument(
        "--grid", action="append", default=[], help="tracker.KEY=V1,V2,... (repeatable)"
    )
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "tune_tracker")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--by-section",
        default="",
        help="NAME: also print F over the render items with and without this generated section "
        "(e.g. skank; read from the folder's manifest.jsonl)",
    )
    ap.add_argument(
        "--models", default="", help="DIR,DIR: beat models to compare (see above); '.' = in use"
    )
    ap.add_argument(
        "--eq",
        default="",
        help="with --models: the features of the audio through filters, e.g. hp200 (a laptop "
        "microphone) or hp200+lp6000 (exact per band; silence flags stay those of the capture)",
    )
    args = ap.parse_args()

    import bench_beats as bb
    from onbeat.realtime import tracker as tracker_mod
    from onbeat.realtime.config import OnbeatConfig

    axes = []
    for g in args.grid:
        key, _, vals = g.partition("=")
        field = key.removeprefix("tracker.")
        axes.append([(field, v) for v in vals.split(",")])
    base = OnbeatConfig().tracker
    from onbeat.models.registry import weights_path

    models = [
        "+".join(
            str(weights_path("beats").parent) if part.strip() == "." else part.strip()
            for part in m.split("+")
        )
        for m in args.models.split(",")
        if m.strip()
    ]
    settings = []
    for combo in itertools.product(*axes) if axes else [()]:
        kw = {}
        for field, v in combo:
            if field.startswith("_"):  # a module constant of realtime/tracker.py
                kw[field] = float(v)
                continue
            typ = type(getattr(base, field))
            if typ is tuple:  # e.g. beats_per_bar=4,3/4: "/" separates a tuple's items
                kw[field] = tuple(int(x) for x in v.split("/"))
            elif typ is bool:
                kw[field] = v.lower() in ("1", "true", "on")
            else:
                kw[field] = typ(float(v))
        settings.append(kw)

    results = []
    if args.eq and not models:
        raise SystemExit("--eq needs --models (the live captures hear the plain audio)")
    acts = SpecActivations(args.eq)
    for set_name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        items = load_items(set_name, args.max_files)
        sections = sections_by_item(items) if args.by_section else {}
        caps = {}
        for it in items:
            print(f"capture {set_name}/{it.name}", file=sys.stderr, flush=True)
            caps[it.name] = (any_capture if models else capture)(it, args.cache / set_name)
        spliced = None
        for model, kw in itertools.product(models or [None], settings):
            if model is not None and model != spliced:
                spliced = model
                delay = acts.delay_frames(model)  # once per model: it reads every member's file
                for it in items:
                    caps[it.name] = splice(caps[it.name], acts(model, it), it.name, delay)
            rows, extras = [], {}
            by_family: dict[str, list[float]] = {}
            by_file: dict[str, float] = {}
            same = True
            consts = {k: v for k, v in kw.items() if k.startswith("_")}
            fields = {k: v for k, v in kw.items() if not k.startswith("_")}
            saved = {k: getattr(tracker_mod, k) for k in consts}
            for k, v in consts.items():
                setattr(tracker_mod, k, type(saved[k])(v))
            for it in items:
                bars: list[int] = []
                det = replay(caps[it.name], base, bars, **fields)
                if not kw and model is None:
                    live = caps[it.name]["live"]
                    same &= det.size == live.size and bool(np.allclose(det, live))
                sc = bb.score(it, {"times_s": det, "beats_in_bar": bars})  # bench_beats' scoring
                if set_name == "synthetic":
                    extras.update(
                        {
                            f"{it.name}.{k}": sc[k]
                            for k in ("relock_s", "break_kept", "silence_beats")
                            if k in sc
                        }
                    )
                if "f" in sc:
                    rows.append((sc["f"], sc["cmlt"], sc["amlt"], sc.get("db_f", np.nan)))
                    by_family.setdefault(it.name.split("_")[0], []).append(sc["f"])
                    by_file[it.name] = float(sc["f"])
            for k, v in saved.items():
                setattr(tracker_mod, k, v)
            m = np.nanmean(np.array(rows, dtype=np.float64), axis=0)
            res = {
                "set": set_name,
                "setting": kw,
                "model": None
                if model is None
                else str(model) + (f" @{args.eq}" if args.eq else ""),
                "f": m[0],
                "cmlt": m[1],
                "amlt": m[2],
                "db_f": m[3],
            }
            res.update(extras)
            res["f_by_file"] = by_file
            if len(by_family) > 1:  # e.g. renders: groove / asap / pop909
                res["f_by_family"] = {k: float(np.mean(v)) for k, v in sorted(by_family.items())}
            if not kw and model is None:
                res["replay_equals_live"] = same
                extras["replay==live"] = same
            results.append(res)
            ex = " ".join(
                f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in extras.items()
            )
            print(
                f"{set_name:14s} {'' if res['model'] is None else res['model'] + ' '}"
                f"{json.dumps(kw):60s} F {m[0]:.3f} CMLt {m[1]:.3f} AMLt {m[2]:.3f} "
                f"DB-F {m[3]:.3f} {ex}",
                flush=True,
            )
            sec = args.by_section
            with_s = [f for n, f in by_file.items() if sec and sec in sections[n]]
            if with_s:  # only sets whose manifest records that section
                without = [f for n, f in by_file.items() if sec not in sections[n]]
                res["f_by_section"] = {
                    f"with {sec}": float(np.mean(with_s)),
                    f"without {sec}": float(np.mean(without)) if without else None,
                }
                wo = f"{np.mean(without):.3f}" if without else "-"
                print(
                    f"{'':14s}   F with {sec} {np.mean(with_s):.3f} ({len(with_s)}), "
                    f"without {wo} ({len(without)})",
                    flush=True,
                )
            if "f_by_family" in res:
                fams = ", ".join(
                    f"{k} {v:.3f} ({len(by_family[k])})" for k, v in res["f_by_family"].items()
                )
                print(f"{'':14s}   F by family: {fams}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
