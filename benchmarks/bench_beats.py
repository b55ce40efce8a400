"""Beat-tracking benchmark: onbeat against the anchors, on the same files, in one run.

Sets (each skipped with a note when absent):

* ``synthetic``: generated here: band loops at 95, 120 and 150 BPM, a tempo step 120 -> 138 BPM,
  a 4 s break (drums and bass silent, chords go on), and 10 s of silence;
* ``fof``: the Frets-on-Fire songs prepared by ``python -m onbeat.training.fof`` (``data/fof``);
* ``fof-cv``: the same songs, each run by the fold model of ``--fof-cv`` that was trained
  without it (``onbeat train beats --fof data/fof --fof-hold-out PREFIX``): the protocol for a
  beat model that trains on Frets-on-Fire songs; the anchors run on the same songs;
* ``renders-test``: the held-out test split of ``python -m onbeat.training.render``;
* ``heavy-test``: the held-out test split of the generated rock/metal songs
  (``python -m onbeat.training.render --sets heavy --out data/renders_heavy``);
* ``displaced-test``: the held-out test split of the generated songs with displaced sections
  (``python -m onbeat.training.render --sets displaced --out data/renders_displaced``): the band
  plays whole sections off the beat while the labels keep the grid;
* ``edm-test``, ``edm-valid``: the held-out splits of the generated electronic dance music
  (``python -m onbeat.training.render --sets edm --out data/renders_edm``);
* ``modules-test``, ``modules-valid``: tracker modules of Debian game packages rendered by
  libopenmpt with their row grid as beats, split by package
  (``python -m onbeat.training.modules --out data/modules``);
* ``gamemidi-test``, ``gamemidi-valid``: composed General MIDI game music of Debian packages
  with its tempo map as beats, split by song
  (``python -m onbeat.training.render --sets gamemidi --out data/renders_gamemidi``);
* ``mma-test``, ``mma-valid``: songs that MMA (Musical MIDI Accompaniment) writes over its
  groove library (ballroom, jazz, latin, rock, folk...), beats from its grid, split by style file
  (``python -m onbeat.training.render --sets mma --out data/renders_mma``);
* ``lmms``: the LMMS demo songs, real electronic productions rendered by LMMS with their
  sequencer grid (``python -m onbeat.training.lmms --out data/lmms``); ``lmms-train`` and
  ``lmms-test`` are its fixed halves (a model that trains on the first reports the second);
* ``renders-valid``, ``heavy-valid``, ``displaced-valid``: the validation splits of the same
  folders, where models and settings are chosen (the anchors' margin there says what a choice
  would give on the test splits without looking at them).

Systems: onbeat (the live code path, :meth:`Engine.run_fast`), madmom online (forward DBN, the
strongest causal anchor), BeatNet (online, particle filter), aubio (online) and librosa (offline
reference). ``madmom_downbeats`` (madmom's offline RNN + DBN downbeat tracker, meters 3 and 4)
is an offline downbeat reference; add it with ``--anchors``. Anchors run in their own venv
(``benchmarks/setup_anchors.sh``).

Reported per set: beat F (±70 ms), CMLt, AMLt, downbeat F (±70 ms, the beats a system numbers 1;
"n/a" for systems without bars and for sets without downbeat labels), CPU seconds per audio
second; for onbeat also
the emission error ``emitted_s - true beat`` (median of absolute values; a beat is issued in the
frame nearest its predicted time, so this holds up to half a hop by design, one hop of
earliness with the tracker's ``issue_frame = "before"``), the
predicted-time error ``time_s - true beat`` (the same median: what a sink that schedules each
beat at its ``time_s``, as the OSC sink does, achieves) and the lock time. On the
synthetic set: re-lock time after the tempo step, grid beats kept through the break, and beats
issued in silence.

Run: ``python benchmarks/bench_beats.py [--sets synthetic,fof,renders-test] [--max-files N]``.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ANCHORS = ("madmom_online", "beatnet", "aubio", "librosa")


@dataclass
class Item:
    name: str
    audio: Path
    beats: np.ndarray
    downbeats: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


def synthetic_set(out: Path) -> list[Item]:
    """Write the synthetic files and return their ground truth."""
    import soundfile as sf
    from onbeat.realtime.demo import demo_song

    items = []
    specs = [
        ("steady_095", {"bpm": 95.0, "seed": 1}),
        ("steady_120", {"bpm": 120.0, "seed": 2}),
        ("steady_150", {"bpm": 150.0, "seed": 3}),
        ("tempo_step", {"bpm": 120.0, "bpm_after": 138.0, "change_s": 15.0, "seed": 4}),
        ("break_4s", {"bpm": 120.0, "break_span_s": (12.0, 16.0), "seed": 5}),
    ]
    for name, kw in specs:
        song = demo_song(duration_s=30.0, **kw)
        path = out / f"{name}.wav"
        sf.write(path, song.samples, song.sample_rate_hz)
        extra = {}
        if "bpm_after" in kw:
            extra["change_s"] = kw["change_s"]
        if "break_span_s" in kw:
            extra["break"] = kw["break_span_s"]
        items.append(Item(name, path, song.beats_s, song.downbeats_s, extra))
    path = out / "silence.wav"
    sf.write(path, np.zeros(44100 * 10, np.float32), 44100)
    items.append(Item("silence", path, np.zeros(0), None, {"silence": True}))
    return items


def _labelled(load: Callable[[], list], max_files: int | None) -> list[Item]:
    """Benchmark items of a :mod:`onbeat.training.datasets` loader, those with beat labels,
    at most ``max_files`` (empty where the loader's folder is not here)."""
    try:
        its = load()
    except FileNotFoundError:
        return []
    return [Item(i.name, i.audio, i.beats, i.downbeats) for i in its if i.beats is not None][
        :max_files
    ]


def fof_set(max_files: int | None) -> list[Item]:
    from onbeat.training.datasets import fof_items

    return _labelled(lambda: fof_items(ROOT / "data" / "fof"), max_files)


def lmms_set(max_files: int | None, split: str | None = None) -> list[Item]:
    from onbeat.training.datasets import lmms_items

    return _labelled(lambda: lmms_items(ROOT / "data" / "lmms", split), max_files)


# the LMMS sets by name: split (None: every song)
LMMS_SETS = {"lmms": None, "lmms-train": "train", "lmms-test": "test"}


def named_lmms_set(name: str, max_files: int | None) -> list[Item] | None:
    """The LMMS set called ``name`` (:data:`LMMS_SETS`), or None for another name."""
    return lmms_set(max_files, LMMS_SETS[name]) if name in LMMS_SETS else None


# the render sets by name: (folder under data/, split)
RENDER_SETS = {
    "renders-test": ("renders", "test"),
    "heavy-test": ("renders_heavy", "test"),
    "displaced-test": ("renders_displaced", "test"),
    "renders-valid": ("renders", "valid"),
    "heavy-valid": ("renders_heavy", "valid"),
    "displaced-valid": ("renders_displaced", "valid"),
    "edm-test": ("renders_edm", "test"),
    "edm-valid": ("renders_edm", "valid"),
    # tracker modules of Debian game packages (python -m onbeat.training.modules)
    "modules-test": ("modules", "test"),
    "modules-valid": ("modules", "valid"),
    # MIDI game music of Debian packages (python -m onbeat.training.render --sets gamemidi)
    "gamemidi-test": ("renders_gamemidi", "test"),
    "gamemidi-valid": ("renders_gamemidi", "valid"),
    # MMA accompaniment grooves (python -m onbeat.training.render --sets mma), split by style
    "mma-test": ("renders_mma", "test"),
    "mma-valid": ("renders_mma", "valid"),
}


def named_render_set(name: str, max_files: int | None) -> list[Item] | None:
    """The render set called ``name`` (:data:`RENDER_SETS`; empty where it is not rendered
    here), or None for a name that is not a render set."""
    if name not in RENDER_SETS:
        return None
    folder, split = RENDER_SETS[name]
    return render_set(max_files, folder, split=split)


def render_set(max_files: int | None, folder: str = "renders", split: str = "test") -> list[Item]:
    from onbeat.training.datasets import render_items

    return _labelled(lambda: render_items(ROOT / "data" / folder, split=split), max_files)


def named_set(name: str, max_files: int | None) -> list[Item] | None:
    """FoF, a render set or an LMMS set by name (:data:`NAMED_SETS`; empty where it is not
    here), or None for any other name (``synthetic`` and ``fof-cv`` are built by the caller)."""
    if name == "fof":
        return fof_set(max_files)
    if (rendered := named_render_set(name, max_files)) is not None:
        return rendered
    return named_lmms_set(name, max_files)


NAMED_SETS = ("fof", *RENDER_SETS, *LMMS_SETS)


def preloaded(path: Path):
    """The file decoded into memory as an ``ArraySource``: the anchors' CPU time excludes
    reading and decoding the file (``run_anchor.py`` loads it before its clock starts), so
    onbeat's must too. The samples and rate are those ``FileSource`` would deliver, so the
    events are the same."""
    import soundfile as sf
    from onbeat.realtime.sources import ArraySource

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return ArraySource(data, sr, name=Path(path).name)


def parse_fof_cv(spec: str) -> dict[str, Path]:
    """``PREFIX=EXPORT_DIR,...`` as a mapping, each fold model checked to hold its songs out.

    A fold model whose card does not name ``--fof-hold-out`` with that prefix would score songs
    it trained on, so it is refused.
    """
    folds = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        prefix, _, folder = part.partition("=")
        card = Path(folder) / "beats.json"
        if not prefix or not card.exists():
            raise SystemExit(f"--fof-cv: {part!r} is not PREFIX=DIR with DIR/beats.json")
        held = re.findall(r"--fof-hold-out (\S+)", card.read_text())
        if not any(prefix in h.strip('",').split(",") for h in held):
            raise SystemExit(f"--fof-cv: {card} was not trained with --fof-hold-out {prefix}")
        folds[prefix] = Path(folder)
    return folds


def fold_model(name: str, folds: dict[str, Path]) -> Path:
    """The fold model that held the song ``name`` out (the longest matching prefix)."""
    match = [p for p in folds if name.startswith(p)]
    if not match:
        raise SystemExit(f"--fof-cv: no fold holds out {name}")
    return folds[max(match, key=len)]


def run_onbeat(path: Path, models: Path | None = None) -> dict:
    """Run the live code path over a file; beat events and analysis CPU (decoding excluded:
    see :func:`preloaded`). ``models`` is an ``ONBEAT_MODELS`` folder for this file."""
    if models is not None:
        old = os.environ.get("ONBEAT_MODELS")
        os.environ["ONBEAT_MODELS"] = str(models)
        try:
            return run_onbeat(path)
        finally:
            if old is None:
                del os.environ["ONBEAT_MODELS"]
            else:
                os.environ["ONBEAT_MODELS"] = old
    from onbeat.realtime.bus import EventBus
    from onbeat.realtime.config import OnbeatConfig, apply_overrides
    from onbeat.realtime.engine import Engine

    bus = EventBus()
    sub = bus.subscribe("bench", 10_000_000)
    config = apply_overrides(OnbeatConfig(), {"tags.enabled": "off"})  # tags: bench_tags.py
    summary = Engine(config, bus=bus).run_fast(preloaded(path))
    beats = [e for e in sub.drain() if e.type == "beat"]
    return {
        "times_s": [e.time_s for e in beats],
        "emitted_s": [e.emitted_s for e in beats],
        "beats_in_bar": [e.beat_in_bar for e in beats],
        "cpu_s": summary.cpu_s,
        "audio_s": summary.audio_s,
    }


ANCHOR_ARGS = {"madmom_downbeats": ("madmom_offline", "--downbeats")}


def run_anchor(system: str, path: Path, task: str = "beats") -> dict:
    """Run one anchor system on one file in the anchors venv; its JSON result.

    ``system`` is a ``run_anchor.py`` system or a name in :data:`ANCHOR_ARGS`."""
    venv = Path(os.environ.get("ANCHORS_VENV", ROOT / ".venv-anchors"))
    py = venv / "bin" / "python"
    if not py.exists():
        return {"error": "anchors venv missing (bash benchmarks/setup_anchors.sh)"}
    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
        r = subprocess.run(
            [
                str(py),
                str(ROOT / "benchmarks/anchors/run_anchor.py"),
                *(ANCHOR_ARGS.get(system, (system,))[:1]),
                task,
                str(path),
                *(ANCHOR_ARGS.get(system, (system,))[1:]),
                "--json",
                tmp.name,
            ],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if r.returncode != 0:
            return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1][:80]}
        return json.loads(Path(tmp.name).read_text())


def _matched(ref: np.ndarray, det: np.ndarray, window: float = 0.07) -> np.ndarray:
    if det.size == 0:
        return np.zeros(ref.shape, bool)
    return np.array([np.min(np.abs(det - r)) <= window for r in ref])


def score(item: Item, res: dict) -> dict:
    import mir_eval

    det = np.asarray(res.get("times_s", []), dtype=np.float64)
    out: dict = {"cpu_per_s": res["cpu_s"] / res["audio_s"] if res.get("audio_s") else np.nan}
    if item.extra.get("silence"):
        out["silence_beats"] = int(det.size)
        return out
    ref = item.beats
    out["f"] = mir_eval.beat.f_measure(mir_eval.beat.trim_beats(ref), mir_eval.beat.trim_beats(det))
    _, cmlt, _, amlt = mir_eval.beat.continuity(
        mir_eval.beat.trim_beats(ref), mir_eval.beat.trim_beats(det)
    )
    out["cmlt"], out["amlt"] = cmlt, amlt
    bib = res.get("beats_in_bar")
    if item.downbeats is not None and item.downbeats.size and bib is not None:
        down = det[np.asarray(bib, dtype=np.int64) == 1] if det.size else det
        out["db_f"] = mir_eval.beat.f_measure(
            mir_eval.beat.trim_beats(item.downbeats), mir_eval.beat.trim_beats(down)
        )
    hit = _matched(ref, det)
    lock = next((ref[i] for i in range(len(hit) - 3) if hit[i : i + 4].all()), np.nan)
    out["lock_s"] = float(lock)
    if "change_s" in item.extra:
        c = item.extra["change_s"]
        idx = [i for i in range(len(hit) - 3) if ref[i] >= c and hit[i : i + 4].all()]
        out["relock_s"] = float(ref[idx[0]] - c) if idx else np.nan
    if "break" in item.extra:
        a, b = item.extra["break"]
        sel = (ref >= a) & (ref < b)
        out["break_kept"] = f"{int(hit[sel].sum())}/{int(sel.sum())}"
    if "emitted_s" in res:
        em = np.asarray(res["emitted_s"])
        errs, t_errs = [], []
        for t_det, t_em in zip(det, em, strict=True):
            j = int(np.argmin(np.abs(ref - t_det)))
            if abs(ref[j] - t_det) <= 0.07:
                errs.append(t_em - ref[j])
                t_errs.append(t_det - ref[j])
        out["emit_err_ms"] = 1000 * float(np.median(np.abs(errs))) if errs else np.nan
        out["time_err_ms"] = 1000 * float(np.median(np.abs(t_errs))) if t_errs else np.nan
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sets", default="synthetic,fof,renders-test")
    ap.add_argument("--max-files", type=int, default=None)
    ap.add_argument("--anchors", default=",".join(ANCHORS))
    ap.add_argument("--json", help="write raw results here")
    ap.add_argument(
        "--fof-cv",
        default="",
        help="fof-cv set: PREFIX=EXPORT_DIR,... fold models, each trained with --fof-hold-out "
        "PREFIX (e.g. sectoid=runs/export_fcv_sectoid,muldjord=runs/export_fcv_muldjord)",
    )
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    tmp = Path(tempfile.mkdtemp())
    sets: dict[str, list[Item]] = {}
    for s in args.sets.split(","):
        if s == "synthetic":
            sets[s] = synthetic_set(tmp)
        elif s == "fof-cv":
            if not args.fof_cv:
                ap.error("the fof-cv set needs --fof-cv PREFIX=DIR,...")
            folds = parse_fof_cv(args.fof_cv)
            sets[s] = fof_set(args.max_files)
            for it in sets[s]:
                it.extra["models"] = fold_model(it.name, folds)
        elif (named := named_set(s, args.max_files)) is not None:
            sets[s] = named
        else:
            ap.error(f"unknown set {s!r} (synthetic, fof-cv, {', '.join(NAMED_SETS)})")
    systems = ["onbeat", *[a for a in args.anchors.split(",") if a]]
    raw: dict = {}
    for set_name, items in sets.items():
        if not items:
            print(f"\n({set_name}: no files here, skipped)")
            continue
        rows = {}
        for system in systems:
            per = {}
            for it in items:
                res = (
                    run_onbeat(it.audio, it.extra.get("models"))
                    if system == "onbeat"
                    else run_anchor(system, it.audio)
                )
                per[it.name] = {"error": res["error"]} if "error" in res else score(it, res)
            rows[system] = per
        raw[set_name] = rows
        _print_set(set_name, items, rows)
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=2, default=float))


def _mean(per: dict, key: str, names: list[str]) -> float:
    vals = [per[n][key] for n in names if key in per.get(n, {})]
    return float(np.nanmean(vals)) if vals else float("nan")


def _print_set(set_name: str, items: list[Item], rows: dict) -> None:
    music = [it.name for it in items if not it.extra.get("silence")]
    print(f"\n### {set_name}: {len(music)} files\n")
    print(
        "| system | beat F | CMLt | AMLt | downbeat F | CPU s per s | CPU ratio to madmom online "
        "| emission error (median) | predicted-time error (median) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    base = _mean(rows.get("madmom_online", {}), "cpu_per_s", music)
    for system, per in rows.items():
        errs = [per[n]["error"] for n in music if "error" in per.get(n, {})]
        if errs and len(errs) == len(music):
            print(f"| {system} | error: {errs[0]} | | | | | | | |")
            continue
        cpu = _mean(per, "cpu_per_s", music)
        emit = _mean(per, "emit_err_ms", music)
        t_err = _mean(per, "time_err_ms", music)
        db_f = _mean(per, "db_f", music)
        print(
            f"| {system} | {_mean(per, 'f', music):.3f} | {_mean(per, 'cmlt', music):.3f} | "
            f"{_mean(per, 'amlt', music):.3f} | "
            + (f"{db_f:.3f}" if db_f == db_f else "n/a")
            + f" | {cpu:.4f} | {cpu / base:.2f}× | "
            + (f"{emit:.1f} ms | " if emit == emit else "n/a | ")
            + (f"{t_err:.1f} ms |" if t_err == t_err else "n/a |")
        )
    if set_name == "synthetic":
        print(
            "\n| system | re-lock after 120→138 BPM step | grid beats kept in 4 s break | beats in 10 s silence |"
        )
        print("|---|---|---|---|")
        for system, per in rows.items():
            st = per.get("tempo_step", {})
            br = per.get("break_4s", {})
            si = per.get("silence", {})
            print(
                f"| {system} | {st.get('relock_s', float('nan')):.2f} s | {br.get('break_kept', 'n/a')} | "
                f"{si.get('silence_beats', 'n/a')} |"
            )


if __name__ == "__main__":
    main()
