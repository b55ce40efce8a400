#!/usr/bin/env python3
"""Diagnose onbeat's beat gap against madmom online: ACTIVATION or TRACKER?

Builds the 2x2 table {onbeat LSTM, madmom online RNN} activation x {onbeat BeatTracker,
madmom online DBN} on one set, plus a tracker-free peak-picking F per activation and
per-song numbers (F, CMLt, AMLt, lock time, timing error, tempo ratio).

    python scripts/diag_beats.py --set fof [--max-files N] [--out runs/diag] [--force]
    python scripts/diag_beats.py --set renders-test --max-files 12
    python scripts/diag_beats.py --set renders-valid --max-files 120

Runs in onbeat's venv; the madmom half runs in a subprocess in ``.venv-anchors`` (this same
file, ``--madmom-worker``). madmom's models are non-commercial: diagnosis only, never use its
activations as training data.

Dating conventions (all rows share them, so trackers and activations compare like for like):

* onbeat: the analyzer calls ``BeatStage.process`` with ``sample_index = (k + 1) * hop`` (end
  of frame k); BeatStage adds one hop to the tracker's ``input_latency_s``, so frame k is
  dated ``k * hop / sr = k / 100`` s. The activations, level-gate flags, tracker config and
  stream context are captured from the live run (``Engine.run_fast``, as in bench_beats).
* madmom online: frame i ends at sample ``i * 441`` (origin='online') and its DBN dates a
  beat at frame i as ``i / 100`` s.
* Cross-feeding keeps the index: madmom frame i goes into our tracker with
  ``sample_index = (i + 1) * hop`` and the same BeatStage latency (dated i / 100 s) and the
  live run's silence flag of frame i; our frame k goes into madmom's DBN as its frame k
  (dated k / 100 s), as the activation our tracker actually sees: ``max(beat, downbeat)``,
  clipped to [0, 1], 0 on gated frames.
"""

from __future__ import annotations

import os

for _v in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
):
    os.environ[_v] = "1"

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FPS = 100.0
PEAK_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)


# --------------------------------------------------------------------------- madmom worker


def madmom_worker(job_path: str) -> None:
    """Inside .venv-anchors: madmom online activation + DBN, and DBN on onbeat's activation."""
    sys.path.insert(0, str(ROOT / "benchmarks" / "anchors"))
    import run_anchor as ra  # its audio loading / framing, so the anchor is run identically

    ra.ensure_madmom_metadata()
    from madmom.features.beats import DBNBeatTrackingProcessor, RNNBeatProcessor

    job = json.loads(Path(job_path).read_text())
    for it in job["items"]:
        out = Path(it["out"])
        act_path = out / "madmom_act.npy"
        if act_path.exists() and not job["force"]:
            act = np.load(act_path)
        else:
            y, _, _ = ra.load_audio(it["audio"], 44100)
            rnn = RNNBeatProcessor(**ra._MADMOM_ONLINE_KW)
            act = np.array(
                [float(np.ravel(rnn(f, reset=False))[0]) for f in ra._madmom_frames(y)],
                dtype=np.float32,
            )
            np.save(act_path, act)
        res = {}
        for key, a in (("madmom+madmom", act), ("onbeat+madmom", np.load(out / "onbeat_eff.npy"))):
            dbn = DBNBeatTrackingProcessor(online=True, fps=100)
            res[key] = [float(t) for t in dbn.process_online(a.astype(np.float64), reset=True)]
        (out / "madmom_dbn.json").write_text(json.dumps(res))
        print(f"  madmom worker: {it['name']} done ({act.size} frames)", file=sys.stderr)


# --------------------------------------------------------------------------- onbeat side


def capture_onbeat(path: Path) -> dict:
    """Live path (Engine.run_fast, tags off, as bench_beats.run_onbeat) with BeatStage spied on."""
    from onbeat.realtime import beats as beats_mod
    from onbeat.realtime.bus import EventBus
    from onbeat.realtime.config import OnbeatConfig, apply_overrides
    from onbeat.realtime.engine import Engine
    from onbeat.realtime.sources import FileSource

    rec: dict = {"rows": [], "stage": None, "ctx": None}
    cls = beats_mod.BeatStage
    orig_process, orig_prepare = cls.process, cls.prepare

    def prepare(self, ctx):
        rec["ctx"] = ctx
        rec["stage"] = self
        return orig_prepare(self, ctx)

    def process(self, frame, sample_index, *, power):
        ev = orig_process(self, frame, sample_index, power=power)
        silent = self._quiet_frames > self._gate_hold
        rec["rows"].append((self.activation, self.downbeat_activation, sample_index, silent))
        if self.bar_evidence is not None:
            rec.setdefault("bar", []).append(frame[self.bar_evidence.columns])
        return ev

    cls.process, cls.prepare = process, prepare
    try:
        bus = EventBus()
        sub = bus.subscribe("diag", 10_000_000)
        config = apply_overrides(OnbeatConfig(), {"tags.enabled": "off"})
        Engine(config, bus=bus).run_fast(FileSource(path))
    finally:
        cls.process, cls.prepare = orig_process, orig_prepare
    beats = [e.time_s for e in sub.drain() if e.type == "beat"]
    rows = np.array(rec["rows"], dtype=np.float64)
    stage = rec["stage"]
    return {
        "live": beats,
        "act": rows[:, 0],
        "db": rows[:, 1],
        "sample_index": rows[:, 2].astype(np.int64),
        "silent": rows[:, 3].astype(bool),
        "tracker_config": stage.tracker.config,  # input_latency already includes the hop
        "hop": stage.hop_size,
        "ctx": rec["ctx"],
        "source": stage.source,
        # the feature columns the bar model reads (None without one)
        "bar_feats": np.asarray(rec["bar"], dtype=np.float32) if "bar" in rec else None,
    }


def run_tracker(
    cfg, ctx, hop: int, act, db, silent, bars: list | None = None, bar_feats=None
) -> list[float]:
    """Feed activations frame by frame into a fresh BeatTracker exactly as BeatStage does.

    Returns the beat times; ``bars``, when given, receives each beat's ``beat_in_bar``.
    ``bar_feats`` (the captured columns the bar model reads) runs the shipped bar model."""
    from onbeat.realtime.tracker import BeatTracker

    ev = None
    if bar_feats is not None:
        from onbeat.models.registry import load_lstm
        from onbeat.models.streaming import NumbaLSTM
        from onbeat.realtime.bars import BarEvidence

        spec, arrays, _ = load_lstm("bars")
        ev = BarEvidence(NumbaLSTM(spec, arrays), np.arange(bar_feats.shape[1]))
    tr = BeatTracker(cfg, hop_size=hop, bar_evidence=ev)
    tr.prepare(ctx)
    buf = np.zeros(2, dtype=np.float32)
    out = []
    for k in range(act.shape[0]):
        buf[0], buf[1] = act[k], db[k]
        feats = bar_feats[k] if bar_feats is not None else None
        for e in tr.process(buf, (k + 1) * hop, silent=bool(silent[k]), features=feats):
            if e.type == "beat":
                out.append(e.time_s)
                if bars is not None:
                    bars.append(e.beat_in_bar)
    return out


def peak_f(act: np.ndarray, ref: np.ndarray, threshold: float) -> float:
    """Tracker-free F as training/tasks.py beat_f (causal peak picking, onset F ±70 ms)."""
    import mir_eval
    from onbeat.realtime.onset import pick_peaks_online

    peaks = pick_peaks_online(
        act,
        frame_rate_hz=FPS,
        threshold=threshold,
        pre_avg_s=0.0,
        pre_max_s=0.15,
        min_interval_s=0.2,
    )
    return float(mir_eval.onset.f_measure(ref, peaks / FPS, window=0.07)[0])


def metrics(ref: np.ndarray, det_list: list[float]) -> dict:
    import mir_eval

    det = np.asarray(det_list, dtype=np.float64)
    rt, dt = mir_eval.beat.trim_beats(ref), mir_eval.beat.trim_beats(det)
    out = {"f": mir_eval.beat.f_measure(rt, dt)}
    _, out["cmlt"], _, out["amlt"] = mir_eval.beat.continuity(rt, dt)
    out["n_ratio"] = det.size / max(ref.size, 1)
    # timing error of each reference beat's nearest detection (within half a beat)
    errs, hit = [], np.zeros(ref.size, bool)
    if det.size:
        for i, r in enumerate(ref):
            j = int(np.argmin(np.abs(det - r)))
            e = det[j] - r
            hit[i] = abs(e) <= 0.07
            if abs(e) <= 0.07:
                errs.append(e)
    e = 1000 * np.asarray(errs)
    out["err_med_ms"] = float(np.median(e)) if e.size else np.nan
    out["err_iqr_ms"] = float(np.subtract(*np.percentile(e, [75, 25]))) if e.size else np.nan
    out["lock_s"] = float(
        next((ref[i] for i in range(ref.size - 3) if hit[i : i + 4].all()), np.nan)
    )
    out["tempo_ratio"] = (
        float(np.median(np.diff(det)) / np.median(np.diff(ref))) if det.size > 2 else np.nan
    )
    # beats lost: fraction of reference beats (after 5 s) in a run of >= 4 unmatched beats
    sel = ref >= 5.0
    h = hit[sel]
    lost = np.zeros(h.size, bool)
    k = 0
    while k < h.size:
        if not h[k]:
            j = k
            while j < h.size and not h[j]:
                j += 1
            if j - k >= 4:
                lost[k:j] = True
            k = j
        else:
            k += 1
    out["lost_frac"] = float(lost.mean()) if lost.size else np.nan
    return out


def load_set(name: str, max_files: int | None) -> list:
    """FoF, a render set or an LMMS set by name, through the benchmark's own loaders."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_beats as bb

    if (named := bb.named_set(name, max_files)) is not None:
        return named
    raise SystemExit(f"unknown set {name!r} ({', '.join(bb.NAMED_SETS)})")


ROWS = (
    ("onbeat act + onbeat tracker (live)", "live"),
    ("onbeat act + onbeat tracker (replay)", "onbeat+onbeat"),
    ("onbeat act, beat channel only + onbeat tracker", "onbeat_beatonly+onbeat"),
    ("madmom act + onbeat tracker", "madmom+onbeat"),
    ("onbeat act + madmom DBN", "onbeat+madmom"),
    ("madmom act + madmom DBN", "madmom+madmom"),
)
COLS = (
    "f",
    "cmlt",
    "amlt",
    "n_ratio",
    "tempo_ratio",
    "err_med_ms",
    "err_iqr_ms",
    "lock_s",
    "lost_frac",
)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--set",
        default="fof",
        help="fof, a render set or an LMMS set (bench_beats.RENDER_SETS, LMMS_SETS)",
    )
    ap.add_argument("--max-files", type=int, default=None)
    ap.add_argument("--out", default=str(ROOT / "runs" / "diag"))
    ap.add_argument("--force", action="store_true", help="recompute cached activations")
    ap.add_argument("--madmom-worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.madmom_worker:
        madmom_worker(args.madmom_worker)
        return
    sys.path.insert(0, str(ROOT))
    items = load_set(args.set, args.max_files)
    out_root = Path(args.out) / args.set
    dets: dict[str, dict[str, list[float]]] = {}
    acts: dict[str, dict[str, np.ndarray]] = {}
    cap: dict[str, dict] = {}
    job = {"force": args.force, "items": []}
    for it in items:
        d = out_root / it.name
        d.mkdir(parents=True, exist_ok=True)
        print(f"onbeat live: {it.name}", file=sys.stderr, flush=True)
        c = capture_onbeat(Path(it.audio))
        cap[it.name] = c
        eff = np.where(c["silent"], 0.0, np.clip(np.maximum(c["act"], c["db"]), 0.0, 1.0))
        np.save(
            d / "onbeat_act.npy", np.stack([c["act"], c["db"], c["silent"]], 1).astype(np.float32)
        )
        np.save(d / "onbeat_eff.npy", eff.astype(np.float32))
        job["items"].append({"name": it.name, "audio": str(it.audio), "out": str(d)})
    job_path = out_root / "job.json"
    job_path.write_text(json.dumps(job))
    py = Path(os.environ.get("ANCHORS_VENV", ROOT / ".venv-anchors")) / "bin" / "python"
    print("madmom worker (anchors venv) ...", file=sys.stderr, flush=True)
    subprocess.run([str(py), __file__, "--madmom-worker", str(job_path)], check=True)

    for it in items:
        d, c = out_root / it.name, cap[it.name]
        mm = np.load(d / "madmom_act.npy").astype(np.float64)
        n = c["act"].shape[0]
        # madmom frame i <-> our frame i; pad/cut the gate flags to madmom's frame count
        sil_m = np.zeros(mm.shape[0], bool)
        sil_m[: min(n, mm.shape[0])] = c["silent"][: mm.shape[0]]
        args_t = (c["tracker_config"], c["ctx"], c["hop"])
        r = {"live": c["live"]}
        r["onbeat+onbeat"] = run_tracker(*args_t, c["act"], c["db"], c["silent"])
        r["onbeat_beatonly+onbeat"] = run_tracker(*args_t, c["act"], np.zeros(n), c["silent"])
        r["madmom+onbeat"] = run_tracker(*args_t, mm, np.zeros(mm.shape[0]), sil_m)
        r.update(json.loads((d / "madmom_dbn.json").read_text()))
        same = len(r["live"]) == len(r["onbeat+onbeat"]) and np.allclose(
            r["live"], r["onbeat+onbeat"]
        )
        print(
            f"{it.name}: replay == live: {same} (source {c['source']}, frames {n} / madmom {mm.size})",
            file=sys.stderr,
        )
        dets[it.name] = r
        acts[it.name] = {"onbeat": c["act"], "madmom": mm}
        (d / "beats.json").write_text(json.dumps(r))

    report = render_report(args.set, items, dets, acts)
    print(report)
    (out_root / "report.md").write_text(report)


def render_report(set_name: str, items: list, dets: dict, acts: dict) -> str:
    per = {it.name: {k: metrics(it.beats, v) for k, v in dets[it.name].items()} for it in items}
    lines = [
        f"## {set_name}: {len(items)} files\n",
        "| system | " + " | ".join(COLS) + " |",
        "|---|" + "---|" * len(COLS),
    ]
    for label, key in ROWS:
        vals = [np.nanmean([per[n][key][c] for n in per]) for c in COLS]
        lines.append(
            f"| {label} | "
            + " | ".join(f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}" for v in vals)
            + " |"
        )
    lines += [
        "",
        "2x2 beat F (rows: activation, columns: tracker)",
        "",
        "| | onbeat tracker | madmom DBN |",
        "|---|---|---|",
    ]
    m = {key: np.mean([per[n][key]["f"] for n in per]) for _, key in ROWS}
    lines.append(f"| onbeat act | {m['onbeat+onbeat']:.3f} | {m['onbeat+madmom']:.3f} |")
    lines.append(f"| madmom act | {m['madmom+onbeat']:.3f} | {m['madmom+madmom']:.3f} |")
    # tracker-free peak picking
    lines += [
        "",
        "Tracker-free peak-picking F (beat_f: causal picker, pre_max 150 ms, min gap 200 ms, "
        "onset F ±70 ms, no trim)",
        "",
        "| activation | " + " | ".join(f"thr {t}" for t in PEAK_THRESHOLDS) + " |",
        "|---|" + "---|" * len(PEAK_THRESHOLDS),
    ]
    pk = {}
    for a in ("onbeat", "madmom"):
        pk[a] = {
            n: [peak_f(acts[n][a], it.beats, t) for t in PEAK_THRESHOLDS]
            for n, it in zip(per, items, strict=True)
        }
        vals = np.mean(list(pk[a].values()), axis=0)
        lines.append(f"| {a} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    # per song
    keys = [k for _, k in ROWS if k != "onbeat+onbeat"]
    lines += [
        "",
        "Per song: beat F / CMLt / AMLt per system; peak F at thr 0.3 (onbeat, madmom)",
        "",
        "| song | " + " | ".join(keys) + " | peakF ob | peakF mm |",
        "|---|" + "---|" * (len(keys) + 2),
    ]
    for n in per:
        cells = [
            f"{per[n][k]['f']:.2f}/{per[n][k]['cmlt']:.2f}/{per[n][k]['amlt']:.2f}" for k in keys
        ]
        lines.append(
            f"| {n} | "
            + " | ".join(cells)
            + f" | {pk['onbeat'][n][2]:.2f} | {pk['madmom'][n][2]:.2f} |"
        )
    lines += [
        "",
        "Per song detail (tempo ratio det/ref IOI, median signed error ms, lock s, lost frac)",
        "",
        "| song | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for n in per:
        cells = [
            f"{per[n][k]['tempo_ratio']:.2f} {per[n][k]['err_med_ms']:+.0f} "
            f"{per[n][k]['lock_s']:.1f} {per[n][k]['lost_frac']:.2f}"
            for k in keys
        ]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
