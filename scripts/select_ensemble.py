#!/usr/bin/env python3
"""Choose beat-ensemble members on the valid splits by greedy forward selection (issue 3).

Given a pool of exported beat models (``--pool DIR,DIR,...``), every model's activations are
computed once per file from the cached training features (as ``tune_tracker.py --models``), and
ensembles are scored through the live tracker replayed over the files' captures: the members'
activations averaged, as :class:`onbeat.models.streaming.EnsembleLSTM` does live. Starting from
``--start`` (``A+B+C``, or nothing), each round adds the pool model that raises the objective
most, the mean over ``--sets`` of each set's mean beat F (±70 ms), until ``--size`` members or
no model helps. An ensemble whose beat F on ``--guard`` (the synthetic loops and scenarios)
falls below ``--guard-min`` is never chosen. This is Caruana et al. (2004, "Ensemble selection
from libraries of models"), without replacement, since the live ensemble weighs its members
equally.

    python scripts/select_ensemble.py --pool runs/export_bg1e56,runs/export_bg1s1e56,... \\
        --start runs/export_bg1e56+runs/export_bg1s1e56+runs/export_bg1s2e56 --size 5 \\
        --json runs/select.json

Only valid splits may choose (the default ``--sets``); test sets are for reporting.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

VALID = "renders-valid,heavy-valid,displaced-valid,modules-valid,gamemidi-valid,mma-valid"

# filled before the worker processes fork (copy-on-write)
_DATA: dict = {}


def _score_combo(combo: tuple[str, ...]) -> dict[str, float]:
    """Mean beat F per set of the ensemble ``combo`` (member names)."""
    import bench_beats as bb
    import tune_tracker as tt

    base = _DATA["base"]
    out = {}
    for set_name, items in _DATA["items"].items():
        fs = []
        for it in items:
            a = np.mean([_DATA["acts"][m][it.name] for m in combo], axis=0)
            cap = _DATA["caps"][it.name]
            det = tt.replay(tt.splice(cap, a, it.name), base)
            sc = bb.score(it, {"times_s": det, "beats_in_bar": []})
            if "f" in sc:
                fs.append(sc["f"])
        out[set_name] = float(np.mean(fs)) if fs else float("nan")
    return out


def _model_activations(model: str) -> dict[str, np.ndarray]:
    """One model's (beat, downbeat) activations of every item in ``_DATA["all"]`` (float32)."""
    import tune_tracker as tt

    run = tt.model_activations(Path(model))
    out = {it.name: run(it).astype(np.float32) for it in _DATA["all"]}
    print(f"activations of {model}: {len(out)} files", file=sys.stderr, flush=True)
    return out


def main() -> None:
    import tune_tracker as tt
    from onbeat.realtime.config import OnbeatConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pool", required=True, help="DIR,DIR,...: exported beat models")
    ap.add_argument("--start", default="", help="A+B+C: the ensemble to start from")
    ap.add_argument("--size", type=int, default=5, help="most members")
    ap.add_argument("--sets", default=VALID)
    ap.add_argument("--guard", default="synthetic")
    ap.add_argument("--guard-min", type=float, default=0.99)
    ap.add_argument("--max-files", type=int, default=400)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--also", default="", help="A+B,C+D: ensembles to score for reference")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    start = [m for m in args.start.split("+") if m]
    also = [tuple(c.split("+")) for c in args.also.split(",") if c]
    pool = list(dict.fromkeys([*start, *(m for m in args.pool.split(",") if m)]))
    known = list(dict.fromkeys([*pool, *(m for c in also for m in c)]))
    sets = [s for s in args.sets.split(",") if s]
    cache = ROOT / "runs" / "tune_tracker"
    items_by_set = {s: tt.load_items(s, args.max_files) for s in [*sets, args.guard] if s}
    everything = [it for s in items_by_set.values() for it in s]
    if len({it.name for it in everything}) != len(everything):
        raise SystemExit("two sets share an item name; score them in separate runs")
    _DATA["caps"] = {
        it.name: tt.any_capture(it, cache / s) for s, its in items_by_set.items() for it in its
    }
    _DATA["all"] = everything
    _DATA["items"] = items_by_set
    _DATA["base"] = OnbeatConfig().tracker
    with ProcessPoolExecutor(args.workers, mp_context=get_context("fork")) as ex:
        _DATA["acts"] = dict(zip(known, ex.map(_model_activations, known), strict=True))

    def objective(r: dict[str, float]) -> float:
        return float(np.mean([r[s] for s in sets]))

    rounds = []
    chosen = list(start)
    with ProcessPoolExecutor(args.workers, mp_context=get_context("fork")) as ex:
        refs = []
        for combo, r in zip(also, ex.map(_score_combo, also), strict=True):
            print(f"reference {'+'.join(combo)}: mean {objective(r):.4f} {r}", flush=True)
            refs.append({"members": list(combo), "scores": r})
        current = ex.submit(_score_combo, tuple(chosen)).result() if chosen else None
        if current is not None:
            rounds.append({"members": list(chosen), "scores": current})
            print(f"start {'+'.join(chosen)}: mean {objective(current):.4f} {current}", flush=True)
        while len(chosen) < args.size:
            cands = [m for m in pool if m not in chosen]
            if not cands:
                break
            results = list(ex.map(_score_combo, [(*chosen, m) for m in cands]))
            for m, r in sorted(zip(cands, results, strict=True), key=lambda t: -objective(t[1])):
                flag = "" if r.get(args.guard, 1.0) >= args.guard_min else " (guard fails)"
                print(f"  + {m}: mean {objective(r):.4f}{flag} {r}", flush=True)
            ok = [
                (objective(r), m, r)
                for m, r in zip(cands, results, strict=True)
                if r.get(args.guard, 1.0) >= args.guard_min
            ]
            if not ok:
                break
            best, m, r = max(ok, key=lambda t: t[0])
            if current is not None and best <= objective(current):
                print(f"no model raises the mean above {objective(current):.4f}", flush=True)
                break
            chosen.append(m)
            current = r
            rounds.append({"members": list(chosen), "scores": r})
            print(f"round {len(chosen)}: {'+'.join(chosen)} mean {best:.4f}", flush=True)
    if args.json:
        args.json.write_text(
            json.dumps({"sets": sets, "references": refs, "rounds": rounds}, indent=1)
        )


if __name__ == "__main__":
    main()
