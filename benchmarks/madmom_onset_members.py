"""Which Böck folds did each of madmom's eight online onset networks see in training?

madmom's online onset detector (``RNNOnsetProcessor(online=True)``, the anchor
``madmom_online`` of :mod:`bench_onsets`) averages eight unidirectional RNNs,
``madmom/models/onsets/2013/onsets_rnn_[1-8].pkl``, which its authors trained in 8-fold
cross-validation on the Böck onset set. Our validation and test folds (4 and 5) are folds of
that same set, so the ensemble has very likely seen most of their files. This script scores
every member network alone, and the full ensemble, on each fold we have: a member that never
saw a fold should score clearly lower on it than the other seven.

Processing is exactly that of the anchor (``benchmarks/anchors/run_anchor.py``,
``load_madmom("onsets", online=True)``): the file is decoded and resampled to 44.1 kHz by
``run_anchor.load_audio``, cut into frames by ``run_anchor._madmom_frames`` and fed frame by
frame (``reset=False``) through ``RNNOnsetProcessor(**run_anchor._MADMOM_ONLINE_KW)`` and an
``OnsetPeakPickingProcessor(threshold, pre_max=0.01, post_max=0, post_avg=0, combine=0.03)``
(the parameters of madmom's ``bin/OnsetDetectorLL``). The ensemble's pre-processing runs once
per frame; its eight networks are then called one by one on that frame's features (what its
``ParallelProcessor`` does) and averaged with madmom's own ``average_predictions``, so member
*i* alone is what ``RNNOnsetProcessor`` would give with only ``onsets_rnn_i.pkl`` (madmom 0.17
has no argument to pick the networks; and built with one network, its online output, a 0-d
array, would crash the online peak picker, so each member's per-frame value is passed as the
NumPy scalar the ensemble passes). The ensemble row is the anchor itself (``--check``
verifies that against ``run_anchor.py`` on a few files).

Each activation function goes through one peak picker per threshold: the standard 0.23 and a
grid 0.15, 0.20, ..., 0.60, because a single member's activation scale may differ from the
ensemble's. Scores are mir_eval F at ±25 ms with TP/FP/FN summed over all files of a fold. The
best-threshold F is chosen on the fold it is reported for, so it is optimistic.

The madmom part runs in the anchors venv (``bash benchmarks/setup_anchors.sh``) as a
subprocess, one per fold (this script with ``--worker``); scoring runs in onbeat's venv::

    python benchmarks/madmom_onset_members.py [--folds 4,5] [--max-files N] [--check 2]
        [--cache-dir DIR]

Output: a Markdown table on stdout, one row per member plus the ensemble, with F at 0.23 for
each fold and the best grid F (and its threshold) for each fold; then, per fold, the member
with the lowest F@0.23 and a paired file-bootstrap z of each member's F against the mean of
the others (a held-out member should stand out below about -2). Needs ``../shared/data``.
A full run of folds 0-5 takes about 25 min on one core.
"""

from __future__ import annotations

import os

for _v in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
):
    os.environ[_v] = "1"

import argparse
import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

STANDARD_THRESHOLD = 0.23  # madmom's bin/OnsetDetectorLL
GRID = tuple(round(0.15 + 0.05 * i, 2) for i in range(10))  # 0.15 .. 0.60
THRESHOLDS = (STANDARD_THRESHOLD, *GRID)
N_MEMBERS = 8
WINDOW_S = 0.025
ENSEMBLE = "ensemble"

# {model label: {threshold as str: onset times in seconds}}
Detections = dict[str, dict[str, list[float]]]


def model_labels() -> list[str]:
    """Row labels: ``member 1`` .. ``member 8`` (``onsets_rnn_1..8.pkl``), then the ensemble.

    Returns
    -------
    list of str
        The labels, in the order of the worker's activations.
    """
    return [f"member {i + 1}" for i in range(N_MEMBERS)] + [ENSEMBLE]


# --------------------------------------------------------------------------- worker (anchors venv)


def detect_file(path: str) -> tuple[Detections, float]:
    """Online onsets of every member and of the ensemble, at every threshold, for one file.

    Runs inside the anchors venv. Fresh processors per file, as each ``run_anchor.py`` call
    has.

    Parameters
    ----------
    path : str
        Audio file.

    Returns
    -------
    detections : dict
        ``{model label: {str(threshold): onset times [s]}}``.
    audio_s : float
        Duration of the file in seconds.
    """
    import run_anchor as ra  # benchmarks/anchors, put on sys.path by worker()
    from madmom.features.onsets import OnsetPeakPickingProcessor, RNNOnsetProcessor
    from madmom.ml.nn import average_predictions
    from madmom.models import ONSETS_RNN

    kw = ra._MADMOM_ONLINE_KW
    y, duration, _ = ra.load_audio(path, 44100)
    rnn = RNNOnsetProcessor(**kw)
    pre, ensemble = rnn.processors
    nets = list(ensemble.processors[0].processors)
    if len(nets) != N_MEMBERS or len(ONSETS_RNN) != N_MEMBERS:
        raise RuntimeError(f"expected {N_MEMBERS} online onset networks, got {len(nets)}")
    labels = model_labels()
    pickers = {
        (label, thr): OnsetPeakPickingProcessor(
            threshold=thr, pre_max=0.01, post_max=0, post_avg=0, combine=0.03, **kw
        )
        for label in labels
        for thr in THRESHOLDS
    }
    out: Detections = {label: {str(thr): [] for thr in THRESHOLDS} for label in labels}
    for frame in ra._madmom_frames(y):
        # what rnn(frame, reset=False) does, with the member outputs kept
        feats = pre(frame, reset=False)
        acts = [net(feats, reset=False) for net in nets]
        ens = average_predictions(acts)
        # A network returns a 0-d array per frame, which the online peak picker rejects
        # (np.insert on axis 0); the ensemble's average is a NumPy scalar, which it
        # accepts. Give each member's value the ensemble's form: same dtype and value.
        acts = [a[()] if isinstance(a, np.ndarray) and a.ndim == 0 else a for a in acts]
        acts.append(ens)
        for label, act in zip(labels, acts, strict=True):
            for thr in THRESHOLDS:
                onsets = pickers[label, thr](act, reset=False)
                if len(onsets):
                    out[label][str(thr)].extend(float(t) for t in onsets)
    return out, duration


def worker(list_json: Path, out_json: Path) -> None:
    """Detect onsets for the files listed in ``list_json``; write them to ``out_json``.

    Parameters
    ----------
    list_json : Path
        JSON list of audio paths.
    out_json : Path
        Output: ``{"models": [...], "files": [{"audio", "audio_s", "detections"}]}``.
    """
    sys.path.insert(0, str(HERE / "anchors"))
    import run_anchor as ra

    paths: list[str] = json.loads(list_json.read_text())
    files: list[dict[str, Any]] = []
    with ra.stdout_to_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ra.ensure_madmom_metadata()
        from madmom.models import ONSETS_RNN

        models = [Path(f).name for f in ONSETS_RNN] + [ENSEMBLE]
        for i, path in enumerate(paths, 1):
            detections, audio_s = detect_file(path)
            files.append({"audio": path, "audio_s": audio_s, "detections": detections})
            print(f"  {i}/{len(paths)} {Path(path).stem[:50]}", file=sys.stderr, flush=True)
    out_json.write_text(json.dumps({"models": models, "files": files}))


# --------------------------------------------------------------------------- main (onbeat venv)


def anchors_python() -> Path:
    """The anchors venv's interpreter (``$ANCHORS_VENV`` or ``.venv-anchors``), as
    :func:`bench_beats.run_anchor` finds it."""
    return Path(os.environ.get("ANCHORS_VENV", ROOT / ".venv-anchors")) / "bin" / "python"


def run_fold(paths: list[str], out_json: Path) -> dict[str, Any]:
    """Run the worker over one fold's files in the anchors venv (unless cached).

    Parameters
    ----------
    paths : list of str
        Audio files.
    out_json : Path
        Where the worker writes its result; reused when it holds exactly these files.

    Returns
    -------
    dict
        The worker's result.
    """
    if out_json.exists():
        cached = json.loads(out_json.read_text())
        if [f["audio"] for f in cached["files"]] == paths:
            return cached
    py = anchors_python()
    if not py.exists():
        sys.exit("anchors venv missing (bash benchmarks/setup_anchors.sh)")
    list_json = out_json.with_suffix(".list.json")
    list_json.write_text(json.dumps(paths))
    cmd = [str(py), str(Path(__file__).resolve()), "--worker", str(list_json), str(out_json)]
    subprocess.run(cmd, check=True)
    return json.loads(out_json.read_text())


def file_counts(pairs: list[tuple[Any, Any]]) -> npt.NDArray[np.int64]:
    """Per-file TP, FP, FN of mir_eval onset matching at ±25 ms.

    Parameters
    ----------
    pairs : list of (reference, detections)
        Onset times in seconds, one pair per file.

    Returns
    -------
    numpy array, shape (num_files, 3)
        TP, FP, FN of each file.
    """
    import mir_eval

    rows = []
    for ref, det in pairs:
        ref, det = np.asarray(ref, dtype=float), np.asarray(det, dtype=float)
        m = len(mir_eval.util.match_events(ref, det, WINDOW_S))
        rows.append((m, len(det) - m, len(ref) - m))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def f_measure(counts: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """F-measure of TP/FP/FN summed over files (the last-but-one axis).

    Parameters
    ----------
    counts : numpy array, shape (..., num_files, 3)
        Per-file TP, FP, FN.

    Returns
    -------
    numpy array, shape (...)
        F of the summed counts.
    """
    tp, fp, fn = np.moveaxis(counts.sum(axis=-2), -1, 0)
    return 2 * tp / np.maximum(2 * tp + fp + fn, 1)


def held_out_z(member_counts: npt.NDArray[np.int64], n_boot: int = 1000) -> npt.NDArray[np.float64]:
    """How far each member's F lies below the mean F of the other members, in standard errors.

    The standard error comes from a paired bootstrap over files (the same resampled files for
    every member, seed 0). A member that held a fold out should stand out with a clearly
    negative value; |z| below about 2 is within the file-sampling noise of this comparison.

    Parameters
    ----------
    member_counts : numpy array, shape (num_members, num_files, 3)
        Per-file TP, FP, FN of each member at one threshold.
    n_boot : int, optional
        Bootstrap resamples.

    Returns
    -------
    numpy array, shape (num_members,)
        z of (member F - mean F of the other members); nan where the bootstrap has no spread
        (a single file).
    """
    n_members, n_files, _ = member_counts.shape
    idx = np.random.default_rng(0).integers(0, n_files, (n_boot, n_files))
    boot = f_measure(member_counts[:, idx])  # (members, n_boot)
    full = f_measure(member_counts)

    def gap(f: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return (n_members * f - f.sum(axis=0)) / (n_members - 1)  # f - mean of the others

    # member - mean(others) = (n f_m - sum f) / (n - 1)
    se = gap(boot).std(axis=1)
    ok = se > 1e-9  # no spread: a single file
    return np.where(ok, gap(full) / np.where(ok, se, 1.0), np.nan)


def check_against_anchor(items: list[Any], result: dict[str, Any], n: int) -> list[str]:
    """Compare the ensemble at 0.23 with ``run_anchor.py madmom_online onsets`` itself.

    Parameters
    ----------
    items : list
        The fold's items (in the worker's order).
    result : dict
        The worker's result for them.
    n : int
        How many files to check.

    Returns
    -------
    list of str
        One line per checked file.
    """
    from bench_beats import run_anchor

    lines = []
    for it, res in zip(items[:n], result["files"][:n], strict=True):
        anchor = run_anchor("madmom_online", it.audio, task="onsets")
        ours = np.asarray(res["detections"][ENSEMBLE][str(STANDARD_THRESHOLD)])
        theirs = np.asarray(anchor.get("times_s", []))
        same = ours.shape == theirs.shape and np.allclose(ours, theirs, atol=1e-6)
        lines.append(f"{it.name}: {'identical' if same else 'DIFFERENT'} ({len(ours)} onsets)")
    return lines


def main() -> None:
    """Run the member benchmark and print the Markdown table."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--folds", default="4,5", help="comma-separated Böck folds (0-5 here)")
    ap.add_argument("--max-files", type=int, default=None, help="per fold (smoke tests)")
    ap.add_argument(
        "--check",
        type=int,
        default=0,
        help="check the ensemble against run_anchor.py on the first N files of each fold",
    )
    ap.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="keep the worker's detections here and reuse them (default: temp dir)",
    )
    ap.add_argument(
        "--worker", nargs=2, type=Path, metavar=("LIST_JSON", "OUT_JSON"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return

    sys.path.insert(0, str(HERE))
    from onbeat.training.datasets import bock_items

    folds = [int(f) for f in args.folds.split(",") if f.strip()]
    labels = model_labels()
    tmp = None
    if args.cache_dir is None:
        tmp = tempfile.TemporaryDirectory()
        cache = Path(tmp.name)
    else:
        cache = args.cache_dir
        cache.mkdir(parents=True, exist_ok=True)
    f_std: dict[tuple[str, int], float] = {}
    f_best: dict[tuple[str, int], tuple[float, float]] = {}
    std_counts: dict[tuple[str, int], npt.NDArray[np.int64]] = {}
    counts: dict[int, tuple[int, int, float]] = {}
    checks: list[str] = []
    for fold in folds:
        items = bock_items(folds=[fold])[: args.max_files]
        if not items:
            sys.exit(f"no Böck fold {fold} in ../shared/data/onsets/bock")
        print(f"fold {fold}: {len(items)} files", file=sys.stderr, flush=True)
        tag = f"fold{fold}" + (f"_max{args.max_files}" if args.max_files else "")
        result = run_fold([str(it.audio) for it in items], cache / f"{tag}.json")
        audio_s = sum(f["audio_s"] for f in result["files"])
        counts[fold] = (len(items), sum(len(it.onsets) for it in items), audio_s)
        for label in labels:
            scores = {
                thr: file_counts(
                    [
                        (it.onsets, res["detections"][label][str(thr)])
                        for it, res in zip(items, result["files"], strict=True)
                    ]
                )
                for thr in THRESHOLDS
            }
            std_counts[label, fold] = scores[STANDARD_THRESHOLD]
            f_std[label, fold] = float(f_measure(scores[STANDARD_THRESHOLD]))
            best = max(GRID, key=lambda t: float(f_measure(scores[t])))
            f_best[label, fold] = (float(f_measure(scores[best])), best)
        if args.check:
            checks += [
                f"fold {fold}: {line}" for line in check_against_anchor(items, result, args.check)
            ]

    print("\n### madmom online onset RNN members alone, Böck folds, F at ±25 ms\n")
    print(
        ", ".join(
            f"fold {k}: {n} files, {o} onsets, {a / 60:.1f} min" for k, (n, o, a) in counts.items()
        )
        + "\n"
    )
    head = [f"F@0.23 fold {k}" for k in folds] + [f"best F fold {k} (thr)*" for k in folds]
    print("| network | " + " | ".join(head) + " |")
    print("|---|" + "---|" * len(head))
    for label in labels:
        std = [f"{f_std[label, k]:.3f}" for k in folds]
        cells = [f"{f_best[label, k][0]:.3f} ({f_best[label, k][1]:.2f})" for k in folds]
        name = label if label == ENSEMBLE else f"{label} (onsets_rnn_{label.split()[1]})"
        print(f"| {name} | " + " | ".join(std + cells) + " |")
    print("\n\\* threshold chosen on the same fold from 0.15, 0.20, ..., 0.60: optimistic.")
    members = [lab for lab in labels if lab != ENSEMBLE]
    print(
        "\nPer fold, the member with the lowest F@0.23, and z = (its F - mean F of the other "
        "members) / paired file-bootstrap SE; a member that held the fold out should stand "
        "out (z below about -2):\n"
    )
    for k in folds:
        z = held_out_z(np.stack([std_counts[lab, k] for lab in members]))
        order = sorted(range(len(members)), key=lambda m: f_std[members[m], k])
        others = [f_std[members[m], k] for m in order[1:]]
        most_negative = (
            f"{members[int(np.nanargmin(z))]} {np.nanmin(z):+.1f}"
            if np.isfinite(z).any()
            else "n/a (one file)"
        )
        print(
            f"- fold {k}: {members[order[0]]} {f_std[members[order[0]], k]:.3f}, "
            f"z {z[order[0]]:+.1f} (next lowest {others[0]:.3f}, median of the others "
            f"{sorted(others)[len(others) // 2]:.3f}; most negative z: {most_negative})"
        )
    if checks:
        print("\nEnsemble vs run_anchor.py madmom_online (threshold 0.23):\n")
        print("\n".join(f"- {line}" for line in checks))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
