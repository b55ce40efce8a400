"""Soft labels from a pretrained teacher: the musicnn MSD and MTT taggers (Pons & Serra 2019).

The teacher is used **only at training time** to label audio for onbeat's own genre / mood /
voice CNN (:mod:`onbeat.training.tags`). It runs in its own venv (``scripts/setup_teacher.sh``
makes ``.venv-teacher`` with musicnn and tensorflow-cpu 2.15), never at run time, and its weights
(ISC licence, inside the ``musicnn`` wheel) are never copied into the repository. This script is
self-contained: it does not import onbeat.

For each audio file:

1. decode with soundfile (ogg / opus / wav / flac), mix to mono (channel mean), resample to
   16 kHz with soxr;
2. the musicnn input, computed here in **float32** (musicnn's own ``extractor.py`` casts the mel
   to float16, where loud input overflows to inf): power mel spectrogram as librosa's
   ``melspectrogram`` computes it (512-point periodic Hann STFT, hop 256, centred frames with
   reflect padding, 96 Slaney mel bands from 0 to 8 kHz with Slaney area normalisation), then
   ``log10(10000 * mel + 1)``;
3. 3 s windows (187 frames, as musicnn) every 1.5 s (start frame ``round(k * 93.75)``); a file
   shorter than 3 s is repeat-padded to 3 s (musicnn's training ``pad_short``); the last partial
   window is dropped, as musicnn does;
4. both ``MSD_musicnn`` and ``MTT_musicnn``: sigmoid outputs per window.

Output ``OUT/SET/NAME.npz``: ``msd`` (windows, 50) and ``mtt`` (windows, 50) float32,
``win_start_s`` (windows,) float32, ``audio`` (the source path, str) and ``duration_s``.
``OUT/tags.json`` holds the tag names ``{"msd": [...], "mtt": [...]}``. Files whose ``.npz``
exists are skipped (resumable); files are written through a temporary file and ``os.replace``.

Sets
    * ``mer4q``: the 4Q clips (``DATA/mood/mer4q/audio/Q?/SONG.opus``), NAME = ``Song`` id;
    * ``fof``: Frets-on-Fire ``song.ogg`` full mixes (Debian ``fretsonfire-songs-muldjord``,
      ``fretsonfire-songs-sectoid``), NAME = ``PACK_song_name``;
    * ``debian``: unlabelled game music (Debian ``wesnoth-1.16-music``, ``frozen-bubble-data``,
      ``hedgewars-data``, ``supertuxkart-data``), NAME = ``GAME_track``. Sound effects, voices and
      SuperTuxKart's sped-up ``*_fast`` duplicates are left out.

Usage::

    bash scripts/setup_teacher.sh
    .venv-teacher/bin/python training/teacher.py --out data/teacher [--sets mer4q,fof,debian]
        [--max-files N]
    .venv-teacher/bin/python training/teacher.py --out data/teacher --sanity   # 4Q check table
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]

SR = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
WIN_FRAMES = 187  # musicnn: librosa.time_to_frames(3 s) + 1
WIN_S = 3.0
HOP_S = 1.5
MODELS = ("MSD_musicnn", "MTT_musicnn")
SETS = ("mer4q", "fof", "debian")
BATCH = 64


def default_data_root() -> Path:
    """``../shared/data`` beside the repository (``$ONBEAT_DATA`` overrides it)."""
    env = os.environ.get("ONBEAT_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


# --------------------------------------------------------------------------------------------
# Audio and the musicnn input


def load_mono(path: Path, sr: int = SR) -> F32:
    """Decode, mix to mono (channel mean) and resample to ``sr`` (soxr HQ), float32."""
    import soundfile as sf
    import soxr

    x, fs = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if fs != sr:
        x = soxr.resample(x, fs, sr, quality="HQ")
    return np.ascontiguousarray(x, dtype=np.float32)


def _hz_to_mel(f: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney mel scale (librosa ``htk=False``): linear below 1 kHz, log above."""
    f = np.asarray(f, np.float64)
    mel = f / (200.0 / 3)
    log = f >= 1000.0
    mel[log] = 15.0 + np.log(f[log] / 1000.0) / (np.log(6.4) / 27.0)
    return mel


def _mel_to_hz(m: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    m = np.asarray(m, np.float64)
    f = m * (200.0 / 3)
    log = m >= 15.0
    f[log] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m[log] - 15.0))
    return f


def mel_filterbank(sr: int = SR, n_fft: int = N_FFT, n_mels: int = N_MELS) -> F32:
    """(n_mels, n_fft // 2 + 1) triangular Slaney filters, 0 .. sr / 2, area-normalised."""
    fft_hz = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(
        np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([sr / 2]))[0], n_mels + 2)
    )
    fdiff = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    w = np.maximum(0.0, np.minimum(lower, upper))
    w *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return w.astype(np.float32)


_FB = mel_filterbank()
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


def musicnn_input(audio: F32) -> F32:
    """(frames, 96) float32 ``log10(10000 * mel + 1)``; frame ``f`` is centred on sample
    ``f * 256`` (librosa ``center=True``, reflect padding)."""
    x = np.asarray(audio, np.float32)
    pad = N_FFT // 2
    if len(x) <= pad:  # reflect padding needs more samples than the pad
        x = np.pad(x, (0, pad + 1 - len(x)))
    x = np.pad(x, pad, mode="reflect")
    n = 1 + (len(x) - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(
        x, shape=(n, N_FFT), strides=(x.strides[0] * HOP, x.strides[0]), writeable=False
    )
    out = np.empty((n, N_MELS), np.float32)
    for i in range(0, n, 4096):  # bounded memory for long files
        spec = np.fft.rfft(frames[i : i + 4096] * _WINDOW, axis=1)
        power = (spec.real**2 + spec.imag**2).astype(np.float32)
        out[i : i + 4096] = power @ _FB.T
    return np.log10(10000.0 * out + 1.0, dtype=np.float32)


def windows(audio: F32) -> tuple[F32, F32]:
    """The musicnn patches (windows, 187, 96) every 1.5 s and their start times in seconds."""
    min_len = int(WIN_S * SR)
    if len(audio) < min_len:  # repeat-pad short files to 3 s
        reps = -(-min_len // max(len(audio), 1))
        audio = np.tile(audio if len(audio) else np.zeros(1, np.float32), reps)[:min_len]
    mel = musicnn_input(audio)
    hop_frames = HOP_S * SR / HOP  # 93.75
    starts = []
    k = 0
    while (s := round(k * hop_frames)) + WIN_FRAMES <= len(mel):
        starts.append(s)
        k += 1
    if not starts:  # 3 s of audio gives 188 frames, so this cannot happen; be safe anyway
        mel = np.pad(mel, ((0, WIN_FRAMES - len(mel)), (0, 0)), mode="edge")
        starts = [0]
    patches = np.stack([mel[s : s + WIN_FRAMES] for s in starts]).astype(np.float32)
    return patches, (np.asarray(starts, np.float64) * HOP / SR).astype(np.float32)


# --------------------------------------------------------------------------------------------
# The teacher


class Tagger:
    """One musicnn checkpoint in its own TF1 graph and session (CPU)."""

    def __init__(self, model: str, threads: int = 2) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        warnings.filterwarnings("ignore", message=r"`tf\.layers\.")
        import tensorflow as tf

        tf.compat.v1.disable_eager_execution()
        import musicnn.models as mm

        self.graph = tf.Graph()
        with self.graph.as_default():
            with tf.name_scope("model"):
                self.x = tf.compat.v1.placeholder(tf.float32, [None, WIN_FRAMES, N_MELS])
                self.is_training = tf.compat.v1.placeholder(tf.bool)
                y = mm.define_model(self.x, self.is_training, model, 50)[0]
                self.y = tf.nn.sigmoid(y)
            cfg = tf.compat.v1.ConfigProto(
                intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1
            )
            self.sess = tf.compat.v1.Session(graph=self.graph, config=cfg)
            ckpt = os.path.join(os.path.dirname(mm.__file__), model) + "/"
            tf.compat.v1.train.Saver().restore(self.sess, ckpt)

    def __call__(self, patches: F32) -> F32:
        out = [
            self.sess.run(self.y, {self.x: patches[i : i + BATCH], self.is_training: False})
            for i in range(0, len(patches), BATCH)
        ]
        return np.concatenate(out).astype(np.float32)


def bench_windows(audio44k: F32, n_windows: int) -> dict[str, float]:
    """Time musicnn (MSD + MTT models, one thread) per 3 s window of 44.1 kHz audio, one window
    at a time as a live tagger would run it (used by ``benchmarks/bench_tags.py``)."""
    import time

    import soxr
    import tensorflow as tf

    x = soxr.resample(np.asarray(audio44k, np.float32), 44100, SR)
    models = [Tagger("MSD_musicnn", threads=1), Tagger("MTT_musicnn", threads=1)]
    params = 0
    for m in models:
        with m.graph.as_default():
            params += sum(int(np.prod(v.shape)) for v in tf.compat.v1.trainable_variables())
    n = int(WIN_S * SR)
    starts = np.linspace(0, len(x) - n, n_windows + 2).astype(int)
    times = []
    for i, s in enumerate(starts):
        t0 = time.perf_counter()
        patches, _ = windows(x[s : s + n])
        for m in models:
            m(patches[:1])
        if i >= 2:  # warm-up
            times.append(1e3 * (time.perf_counter() - t0))
    return {
        "params": float(params),
        "window_ms_p50": float(np.median(times)),
        "window_ms_p99": float(np.percentile(times, 99)),
    }


def tag_names() -> dict[str, list[str]]:
    from musicnn import configuration as cfg

    return {"msd": list(cfg.MSD_LABELS), "mtt": list(cfg.MTT_LABELS)}


# --------------------------------------------------------------------------------------------
# Sets


@dataclass(frozen=True)
class Item:
    name: str
    audio: Path


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")


def mer4q_files(root: Path) -> list[Item]:
    out = []
    with open(root / "metadata.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            out.append(
                Item(row["Song"], root / "audio" / row["Quadrant"].strip() / f"{row['Song']}.opus")
            )
    return out


FOF_DIR = Path("/usr/share/games/fretsonfire/data/songs")


def fof_files(root: Path = FOF_DIR) -> list[Item]:
    return [
        Item(f"{a.parent.parent.name}_{_slug(a.parent.name)}", a)
        for a in sorted(root.glob("*/*/song.ogg"))
    ]


#: game -> (music folder, glob); only music, no sound effects or voices.
DEBIAN_MUSIC: dict[str, tuple[str, str]] = {
    "wesnoth": ("/usr/share/games/wesnoth/1.16/data/core/music", "*.ogg"),
    "frozen_bubble": ("/usr/share/games/frozen-bubble/snd", "*zik*.ogg"),
    "hedgewars": ("/usr/share/games/hedgewars/Data/Music", "*.ogg"),
    "supertuxkart": ("/usr/share/games/supertuxkart/data/music", "*.ogg"),
}
#: SuperTuxKart's sped-up copies of other tracks.
DEBIAN_SKIP = re.compile(r"(_fast|^farm_f)\.ogg$")


def debian_files() -> list[Item]:
    out = []
    for game, (d, pattern) in DEBIAN_MUSIC.items():
        for a in sorted(Path(d).glob(pattern)):
            if not DEBIAN_SKIP.search(a.name):
                out.append(Item(f"{game}_{_slug(a.stem)}", a))
    return out


def set_files(name: str, data_root: Path) -> list[Item]:
    if name == "mer4q":
        return mer4q_files(data_root / "mood" / "mer4q")
    if name == "fof":
        return fof_files()
    if name == "debian":
        return debian_files()
    raise ValueError(f"unknown set {name!r} (known: {', '.join(SETS)})")


# --------------------------------------------------------------------------------------------
# Running


def _save_npz(path: Path, **arrays: Any) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def label_file(
    item: Item, taggers: dict[str, Callable[[F32], F32]], out: Path
) -> tuple[int, float]:
    """Tag one file into ``out`` (an .npz); returns the number of windows and the duration."""
    audio = load_mono(item.audio)
    if not np.all(np.isfinite(audio)):
        raise ValueError("non-finite samples")
    patches, starts = windows(audio)
    res = {k: taggers[m](patches) for k, m in (("msd", "MSD_musicnn"), ("mtt", "MTT_musicnn"))}
    for k, v in res.items():
        if v.shape != (len(patches), 50) or not np.all(np.isfinite(v)):
            raise ValueError(f"bad {k} output {v.shape}")
    _save_npz(
        out,
        msd=res["msd"],
        mtt=res["mtt"],
        win_start_s=starts,
        audio=np.str_(str(item.audio)),
        duration_s=np.float32(len(audio) / SR),
    )
    return len(patches), len(audio) / SR


def run(sets: Sequence[str], out_dir: Path, data_root: Path, max_files: int | None) -> int:
    from tqdm import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    names = tag_names()
    tmp = out_dir / ".tags.json.tmp"
    tmp.write_text(json.dumps(names, indent=1) + "\n")
    os.replace(tmp, out_dir / "tags.json")

    taggers: dict[str, Callable[[F32], F32]] = {}
    n_err = 0
    for s in sets:
        items = set_files(s, data_root)
        if max_files is not None:
            items = items[:max_files]
        (out_dir / s).mkdir(exist_ok=True)
        todo = [it for it in items if not (out_dir / s / f"{it.name}.npz").exists()]
        print(
            f"[{s}] {len(items)} files, {len(items) - len(todo)} done, {len(todo)} to do",
            flush=True,
        )
        if not todo:
            continue
        if not taggers:
            t0 = time.perf_counter()
            taggers = {m: Tagger(m) for m in MODELS}
            print(f"models loaded in {time.perf_counter() - t0:.1f} s", flush=True)
        t0 = time.perf_counter()
        n_ok = n_win = 0
        audio_s = 0.0
        for it in tqdm(todo, desc=s, file=sys.stderr, mininterval=5):
            try:
                w, d = label_file(it, taggers, out_dir / s / f"{it.name}.npz")
                n_win, audio_s, n_ok = n_win + w, audio_s + d, n_ok + 1
            except Exception as e:  # report and continue
                n_err += 1
                msg = (str(e).splitlines() or [""])[0]
                tqdm.write(f"ERROR {it.audio}: {type(e).__name__}: {msg}")
        dt = time.perf_counter() - t0
        print(
            f"[{s}] {n_ok} files, {audio_s / 60:.0f} min, {n_win} windows in {dt:.0f} s: "
            f"{dt / max(n_ok, 1):.2f} s/file, {1000 * dt / max(n_win, 1):.1f} ms/window",
            flush=True,
        )
        if not n_ok:
            continue
        with open(out_dir / "timings.jsonl", "a") as fh:
            rec = {
                "set": s,
                "files": n_ok,
                "windows": n_win,
                "audio_s": round(audio_s),
                "seconds": round(dt, 1),
            }
            fh.write(json.dumps(rec) + "\n")
    return n_err


# --------------------------------------------------------------------------------------------
# Sanity check on 4Q


#: AllMusic genre on 4Q -> teacher tags whose clip mean should be higher for clips with it.
SANITY: list[tuple[str, str]] = [
    ("Jazz", "msd:jazz"),
    ("Pop/Rock", "msd:rock"),
    ("Pop/Rock", "msd:pop"),
    ("Electronic", "msd:electronic"),
    ("Electronic", "mtt:techno"),
    ("Rap", "msd:Hip-Hop"),
    ("R&B", "msd:rnb"),
    ("R&B", "msd:soul"),
    ("Blues", "msd:blues"),
    ("Country", "msd:country"),
    ("Folk", "msd:folk"),
    ("Classical", "mtt:classical"),
    ("New Age", "mtt:new age"),
    ("New Age", "msd:ambient"),
    ("Vocal", "msd:female vocalists"),
    ("Vocal", "mtt:no vocals"),
]
#: Russell quadrants -> mood / energy tags (a = the positive group).
SANITY_Q: list[tuple[str, set[str], str]] = [
    ("Q1 (happy)", {"Q1"}, "msd:happy"),
    ("Q3 (sad)", {"Q3"}, "msd:sad"),
    ("Q3+Q4 (calm)", {"Q3", "Q4"}, "msd:Mellow"),
    ("Q3+Q4 (calm)", {"Q3", "Q4"}, "mtt:slow"),
    ("Q1+Q2 (aroused)", {"Q1", "Q2"}, "mtt:fast"),
    ("Q1+Q2 (aroused)", {"Q1", "Q2"}, "mtt:loud"),
    ("Q2 (angry)", {"Q2"}, "msd:metal"),
]


def _auc(pos: npt.NDArray[np.float64], neg: npt.NDArray[np.float64]) -> float:
    """ROC AUC via ranks (ties averaged)."""
    x = np.concatenate([pos, neg])
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):  # average tied ranks
        m = x == v
        if m.sum() > 1:
            ranks[m] = ranks[m].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def sanity(out_dir: Path, data_root: Path) -> str:
    """A markdown table: per AllMusic genre / quadrant group, the mean clip-level teacher
    probability with vs without it, and the ROC AUC of the tag for the group."""
    names = json.loads((out_dir / "tags.json").read_text())
    rows = []
    with open(data_root / "mood" / "mer4q" / "metadata.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            f = out_dir / "mer4q" / f"{r['Song']}.npz"
            if not f.exists():
                continue
            with np.load(f) as z:
                clip = {
                    f"msd:{t}": float(z["msd"][:, i].mean()) for i, t in enumerate(names["msd"])
                }
                clip.update(
                    {f"mtt:{t}": float(z["mtt"][:, i].mean()) for i, t in enumerate(names["mtt"])}
                )
            genres = {g.strip() for g in r["GenresStr"].split(";")}
            rows.append((genres, r["Quadrant"].strip(), clip))
    lines = [
        f"4Q clips with teacher labels: {len(rows)}",
        "",
        "| group (4Q label) | teacher tag | n with | mean p with | mean p without | AUC |",
        "|---|---|---|---|---|---|",
    ]
    groups = [(g, (lambda gs, q, g=g: g in gs), t) for g, t in SANITY]
    groups += [(g, (lambda gs, q, qs=qs: q in qs), t) for g, qs, t in SANITY_Q]
    for label, member, tag in groups:
        m = np.array([member(gs, q) for gs, q, _ in rows])
        p = np.array([c[tag] for _, _, c in rows])
        if m.sum() == 0 or (~m).sum() == 0:
            continue
        lines.append(
            f"| {label} | {tag} | {m.sum()} | {p[m].mean():.3f} | {p[~m].mean():.3f} | "
            f"{_auc(p[m], p[~m]):.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("data/teacher"))
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated: mer4q,fof,debian")
    ap.add_argument("--max-files", type=int, default=None, help="at most N files per set")
    ap.add_argument("--data-root", type=Path, default=None, help="default ../shared/data")
    ap.add_argument("--sanity", action="store_true", help="print the 4Q check table and exit")
    args = ap.parse_args(argv)
    data_root = args.data_root or default_data_root()
    if args.sanity:
        print(sanity(args.out, data_root))
        return 0
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    for s in sets:
        if s not in SETS:
            ap.error(f"unknown set {s!r} (known: {', '.join(SETS)})")
    n_err = run(sets, args.out, data_root, args.max_files)
    if n_err:
        print(f"{n_err} file(s) failed (see ERROR lines)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
