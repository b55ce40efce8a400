"""Pseudo beat labels for unlabelled real recordings (noisy-student data for the beat model).

The beat model is trained on renders of MIDI, and real mixes (distorted guitars, vocals, mastering)
are out of its domain. This module labels real recordings that carry no beat annotations with two
independent offline trackers and keeps only the stretches where they agree:

* **A** — the shipped causal beat model's activation over the whole file, decoded offline by
  dynamic programming (librosa's ``beat_track`` on that activation as its onset envelope, which
  sees the future, unlike the live tracker);
* **B** — librosa's ``beat_track`` on the audio's own onset strength (no network at all).

Windows of ``window_s`` (hop ``hop_s``) in which A's and B's beats agree with an F-measure of at
least ``min_f`` (±70 ms, both with enough beats) are kept; everything else is masked (target -1,
no loss). The labels are A's beats, which share the training targets' frame convention. Downbeats
are unknown (masked). madmom never labels training data.

**Measured (2026-11-24).** With the shipped causal model as A, agreement did not certify the
metrical level (3 of 6 FoF songs with kept segments agree at a level the annotations do not use),
and a student trained on such labels (session 7) was worse.

**The teacher rule (2026-12-07, session 26).** An offline bidirectional teacher (``onbeat train
beats --bidirectional``; several averaged with ``--teacher-model A+B``) decoded by the offline
best path (``--decoder viterbi``, :mod:`onbeat.training.viterbi`), kept where the live tracker
over the same activation agrees (``--partner tracker``). Checked on annotated sets first
(``scripts/check_beat_teacher.py``): FoF F 0.875 (madmom online 0.823), 86 % of FoF kept at
0.914 inside the kept part.

Run: ``python -m onbeat.training.pseudo --out data/pseudo --sets debian,mer4q`` (the file lists
come from the tagger's teacher manifests in ``data/teacher``; resumable: finished files are
skipped). Output per file: ``<set>/<stem>.beats`` (seconds) and ``<stem>.keep`` (kept segments,
``start end`` per line), and ``manifest.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from onbeat.training.datasets import FPS, Item, cached_features, load_audio

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]

DECODERS = ("dp", "tracker", "viterbi")
PARTNERS = ("audio", "dp", "tracker", "viterbi", "none")


@dataclass(frozen=True, slots=True)
class PseudoConfig:
    """Agreement rule.

    Parameters
    ----------
    window_s, hop_s : float
        Agreement windows.
    min_f : float
        Minimum F-measure (±70 ms) between the two trackers in a window.
    min_beats : int
        Each tracker needs this many beats in a window.
    partner : str
        What the labels must agree with: ``"audio"`` (librosa's tracker on the audio),
        another decoding of the same activation (``"dp"``, ``"tracker"``, ``"viterbi"``: the
        activation is unambiguous there) or ``"none"`` (keep every window with enough beats).
    skip_s : float
        Seconds masked at the start of every file, while a causal decoder locks.
    """

    window_s: float = 8.0
    hop_s: float = 2.0
    min_f: float = 0.9
    min_beats: int = 6
    partner: str = "audio"
    skip_s: float = 0.0

    def __post_init__(self) -> None:
        if not (1.0 <= self.window_s <= 60.0 and 0.1 <= self.hop_s <= self.window_s):
            raise ValueError("need 1 <= window_s <= 60 and 0.1 <= hop_s <= window_s")
        if not (0.0 < self.min_f <= 1.0) or self.min_beats < 2:
            raise ValueError("need 0 < min_f <= 1 and min_beats >= 2")
        if self.partner not in PARTNERS or not 0.0 <= self.skip_s <= 60.0:
            raise ValueError(f"partner must be one of {PARTNERS}, 0 <= skip_s <= 60")


def agreeing_segments(a: F64, b: F64, duration_s: float, config: PseudoConfig) -> F64:
    """Segments ``(n, 2)`` (seconds, merged) where beat lists ``a`` and ``b`` agree."""
    import mir_eval

    keep: list[list[float]] = []
    t = config.skip_s
    while t + config.window_s <= duration_s + 1e-9:
        lo, hi = t, t + config.window_s
        wa = a[(a >= lo) & (a < hi)]
        wb = b[(b >= lo) & (b < hi)]
        if len(wa) >= config.min_beats and len(wb) >= config.min_beats:
            f = 1.0 if config.partner == "none" else mir_eval.onset.f_measure(wa, wb, 0.07)[0]
            if f >= config.min_f:
                if keep and keep[-1][1] >= lo:
                    keep[-1][1] = hi
                else:
                    keep.append([lo, hi])
        t += config.hop_s
    return np.array(keep, dtype=np.float64).reshape(-1, 2)


def activation_beats(act: npt.NDArray[np.float32]) -> F64:
    """Offline DP decoding of a beat activation at ``FPS`` frames/s (tracker A)."""
    import librosa

    sr, hop = 44100, round(44100 / FPS)
    _, frames = librosa.beat.beat_track(
        onset_envelope=act.astype(np.float64), sr=sr, hop_length=hop, trim=False
    )
    return np.asarray(frames, dtype=np.float64) / FPS


def tracker_beats(act: npt.NDArray[np.float32]) -> F64:
    """onbeat's own tracker (the live one, causal) over ``(frames, 2)`` beat/downbeat
    activations at ``FPS`` frames/s, with the live dating: frame k is at ``k / FPS`` s."""
    import dataclasses

    from onbeat.realtime.config import OnbeatConfig
    from onbeat.realtime.stages import StreamContext
    from onbeat.realtime.tracker import BeatTracker

    sr, hop = 44100, round(44100 / FPS)
    cfg = OnbeatConfig().tracker
    tracker = BeatTracker(
        dataclasses.replace(cfg, input_latency_s=cfg.input_latency_s + hop / sr), hop_size=hop
    )
    tracker.prepare(StreamContext(sample_rate_hz=sr, hop_size=hop))
    frame = np.zeros(2, dtype=np.float32)
    out = []
    for k in range(act.shape[0]):
        frame[:] = act[k, :2]
        out.extend(e.time_s for e in tracker.process(frame, (k + 1) * hop) if e.type == "beat")
    return np.asarray(out, dtype=np.float64)


def audio_beats(audio: npt.NDArray[np.float32], sample_rate_hz: int) -> F64:
    """librosa's own tracker on the audio's onset strength (tracker B)."""
    import librosa

    y = librosa.resample(audio, orig_sr=sample_rate_hz, target_sr=22050, res_type="soxr_hq")
    _, times = librosa.beat.beat_track(y=y, sr=22050, units="time", trim=False)
    return np.asarray(times, dtype=np.float64)


def viterbi_beats(act: npt.NDArray[np.float32], **overrides: float) -> F64:
    """The best beat path of the whole activation (:mod:`onbeat.training.viterbi`, its default
    settings and ``overrides``), frame k at ``k / FPS`` s."""
    from onbeat.training.viterbi import ViterbiConfig, decode

    fields: dict[str, float | int] = dict(overrides)
    if "beat_frames" in fields:
        fields["beat_frames"] = int(fields["beat_frames"])
    beats, _ = decode(act.astype(np.float64), ViterbiConfig(fps=FPS, **fields))  # type: ignore[arg-type]
    return beats


def decode_activation(act: npt.NDArray[np.float32], decoder: str) -> F64:
    """Beats of a ``(frames, 2)`` activation by ``decoder``: one of :data:`DECODERS`, the
    Viterbi decoder with optional settings as ``viterbi:beat_frames=1:observation_lambda=4``."""
    name, *opts = decoder.split(":")
    if name == "tracker" and not opts:
        return tracker_beats(act)
    if name == "viterbi":
        kv = dict(o.split("=", 1) for o in opts)
        return viterbi_beats(act[:, 0], **{k: float(v) for k, v in kv.items()})
    if name == "dp" and not opts:
        return activation_beats(act[:, 0])
    raise ValueError(f"decoder must be one of {DECODERS} (viterbi:key=value...)")


def label_activation(
    act: npt.NDArray[np.float32], decoder: str, config: PseudoConfig
) -> tuple[F64, F64]:
    """``(beats_s, keep_segments)`` from an activation alone (any partner but ``"audio"``)."""
    if config.partner == "audio":
        raise ValueError("the audio partner needs the audio: use label_file")
    duration_s = act.shape[0] / FPS
    a = decode_activation(act, decoder)
    b = a if config.partner in ("none", decoder) else decode_activation(act, config.partner)
    return a, agreeing_segments(a, b, duration_s, config)


def label_file(
    audio_path: Path, net: object, cache_dir: Path, config: PseudoConfig, decoder: str = "dp"
) -> tuple[F64, F64, float]:
    """``(beats_s, keep_segments, duration_s)`` for one recording.

    ``net`` gives the activation; ``decoder`` (one of :data:`DECODERS`) turns it into the
    labels, which must agree with ``config.partner`` in the kept windows.
    """
    from onbeat.training.loop import predict

    x = cached_features(audio_path, cache_dir)
    act = predict(net, np.ascontiguousarray(x))  # type: ignore[arg-type]
    duration_s = x.shape[0] / FPS
    if config.partner != "audio":
        a, keep = label_activation(act, decoder, config)
        return a, keep, duration_s
    a = decode_activation(act, decoder)
    b = audio_beats(load_audio(audio_path), 44100)
    return a, agreeing_segments(a, b, duration_s, config), duration_s


def teacher_audio(teacher_dir: Path, set_name: str) -> list[Path]:
    """Audio files of one set: those listed by the tagger's teacher labels when
    ``teacher_dir/set_name`` holds them, else the set's own file list
    (:func:`onbeat.training.teacher.set_files`: the 4Q clips under ``../shared/data``, the
    Debian game music), so pseudo-labelling does not need the musicnn teacher to have run."""
    out = []
    for npz in sorted((teacher_dir / set_name).glob("*.npz")):
        with np.load(npz) as d:
            out.append(Path(str(d["audio"])))
    if out:
        return out
    from onbeat.training.datasets import default_data_root
    from onbeat.training.teacher import set_files

    return [it.audio for it in set_files(set_name, default_data_root()) if it.audio.exists()]


def pseudo_items(root: str | Path = "data/pseudo", sets: list[str] | None = None) -> list[Item]:
    """Training items of the pseudo-labelled files that kept at least one segment.

    The items carry ``keep`` segments: :func:`onbeat.training.datasets.pairs` masks every other
    frame.
    """
    root = Path(root)
    manifest = root / "manifest.json"
    if not manifest.exists():
        return []
    items = []
    for row in json.loads(manifest.read_text()):
        if sets and row["set"] not in sets:
            continue
        stem = root / row["set"] / row["name"]
        keep = np.loadtxt(stem.with_suffix(".keep"), ndmin=2).reshape(-1, 2)
        if keep.size == 0:
            continue
        items.append(
            Item(
                name=f"pseudo/{row['set']}/{row['name']}",
                audio=Path(row["audio"]),
                beats=np.loadtxt(stem.with_suffix(".beats"), ndmin=1),
                downbeats=None,
                onsets=None,
                split="train",
                set=f"pseudo-{row['set']}",
                keep=keep,
            )
        )
    return items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/pseudo"))
    ap.add_argument("--sets", default="debian,mer4q", help="teacher sets to label")
    ap.add_argument("--teacher", type=Path, default=Path("data/teacher"))
    ap.add_argument("--cache", type=Path, default=Path("data/cache"))
    ap.add_argument("--max-files", type=int, default=0, help="per set (0: all)")
    ap.add_argument(
        "--teacher-model",
        type=str,
        default=None,
        help="a bidirectional teacher (onbeat train beats --bidirectional --export DIR), or "
        "several joined by + (activations averaged); default: the shipped causal model",
    )
    ap.add_argument(
        "--decoder",
        default=None,
        choices=DECODERS,
        help="activation to labels (default: tracker for a teacher, dp for the shipped model)",
    )
    ap.add_argument("--partner", default="audio", choices=PARTNERS)
    ap.add_argument("--skip-s", type=float, default=0.0, help="mask the first seconds")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch
    from onbeat.models.lstm import load_torch_members
    from tqdm import tqdm

    torch.set_num_threads(1)
    if args.teacher_model is not None:
        from onbeat.training.beat_teacher import load_teachers

        net: Any = load_teachers(args.teacher_model)
        first = Path(str(args.teacher_model).split("+")[0])
        meta = json.loads((first / "teacher.json").read_text())
        meta["training_command"] = f"{args.teacher_model}: {meta.get('training_command', '')}"
        decoder = args.decoder or "tracker"
    else:
        net, meta, _ = load_torch_members("beats")
        decoder = args.decoder or "dp"
    config = PseudoConfig(partner=args.partner, skip_s=args.skip_s)
    manifest_path = args.out / "manifest.json"
    rows = json.loads(manifest_path.read_text()) if manifest_path.exists() else []
    done = {(r["set"], r["name"]) for r in rows}
    for set_name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        files = teacher_audio(args.teacher, set_name)
        if args.max_files:
            files = files[: args.max_files]
        (args.out / set_name).mkdir(parents=True, exist_ok=True)
        for path in tqdm(files, desc=set_name):
            name = path.stem
            if (set_name, name) in done:
                continue
            try:
                beats, keep, dur = label_file(path, net, args.cache, config, decoder)
            except Exception as exc:  # a corrupt file: skip it, keep the rest
                log.warning("skipped %s: %s", path, exc)
                continue
            stem = args.out / set_name / name
            np.savetxt(stem.with_suffix(".beats"), beats, fmt="%.3f")
            np.savetxt(stem.with_suffix(".keep"), keep, fmt="%.2f")
            kept = float((keep[:, 1] - keep[:, 0]).sum()) if keep.size else 0.0
            rows.append(
                {
                    "set": set_name,
                    "name": name,
                    "audio": str(path),
                    "duration_s": round(dur, 2),
                    "kept_s": round(kept, 2),
                    "teacher_model": str(meta.get("training_command", "")),
                    "decoder": decoder,
                    "partner": config.partner,
                }
            )
            done.add((set_name, name))
            manifest_path.write_text(json.dumps(rows, indent=1))
    total = sum(r["duration_s"] for r in rows)
    kept = sum(r["kept_s"] for r in rows)
    print(f"{len(rows)} files, {total / 3600:.2f} h, kept {kept / 3600:.2f} h")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
