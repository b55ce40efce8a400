"""``onbeat train tags``: the genre / mood / voice CNN (:mod:`onbeat.models.tagger`).

Data
    * **4Q** (``../shared/data/mood/mer4q``, research only): ~30 s clips with a Russell quadrant
      (the mood label) and AllMusic ``GenresStr`` (real but weak multi-label genres), split **by
      artist**.
    * **Teacher soft labels** (``data/teacher``, made by ``training/teacher.py`` in its own venv
      from the ISC-licensed musicnn MSD/MTT taggers, see ``docs/teacher.md``): per 3 s window,
      50 MSD and 50 MTT tag probabilities, for the 4Q clips and for unlabelled real audio
      (Frets-on-Fire songs, Debian game music). The teacher runs only here, never at run time,
      and none of its weights ship.

Targets per 3 s crop
    * genre: a distribution over :data:`~onbeat.models.tagger.GENRES`: the mean of the AllMusic
      labels (4Q) and the teacher's mapped tags, whichever exist;
    * quadrant: the 4Q clip label (others: none);
    * voice: the teacher's voice vs no-voice tags (soft), where a teacher exists.

Evaluation
    10-fold artist-disjoint cross-validation on 4Q: quadrant accuracy and macro-F1 per clip (mean
    of window probabilities), genre top-1 agreement with AllMusic, and a weak voice check (clips
    tagged ``Vocal``/``Rap`` vs ``New Age``/``Classical``). Each fold trains from scratch on the
    other nine folds plus all unlabelled teacher audio. The shipped model trains on all of it.

Everything resumes: finished folds are kept in ``RUN_DIR/cv.json``; the final run checkpoints.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from onbeat.models.tagger import GENRES, TagCNN, TaggerSpec, mood_from_quadrants, save_tagger
from onbeat.training.augment import MelAugment
from onbeat.training.datasets import default_data_root, load_audio
from onbeat.training.eval_similarity import track_windows, windows_at
from onbeat.training.loop import load_checkpoint
from onbeat.training.tasks import _card
from torch import nn

__all__ = [
    "TagItem",
    "artist_folds",
    "coarse_from_allmusic",
    "mer4q_items",
    "quadrant_scores",
    "teacher_items",
    "train_tags",
]

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]

#: AllMusic genre → coarse genres (shared equally when several).
ALLMUSIC: dict[str, tuple[str, ...]] = {
    "Pop/Rock": ("rock/metal", "pop"),
    "Jazz": ("jazz/blues",),
    "Blues": ("jazz/blues",),
    "Electronic": ("electronic/dance",),
    "R&B": ("hip-hop/r&b",),
    "Rap": ("hip-hop/r&b",),
    "Country": ("folk/country",),
    "Folk": ("folk/country",),
    "Latin": ("latin/reggae",),
    "Reggae": ("latin/reggae",),
    "New Age": ("ambient/new age",),
    "Classical": ("classical",),
    "Easy Listening": ("pop",),
}
#: Teacher tags (MSD top-50 ``msd:``, MagnaTagATune top-50 ``mtt:``) → coarse genres (max).
TEACHER_GENRE: dict[str, tuple[str, ...]] = {
    "rock/metal": (
        "msd:rock",
        "msd:alternative rock",
        "msd:classic rock",
        "msd:indie rock",
        "msd:hard rock",
        "msd:metal",
        "msd:heavy metal",
        "msd:punk",
        "msd:Progressive rock",
        "mtt:rock",
        "mtt:metal",
    ),
    "pop": ("msd:pop", "msd:indie pop", "msd:catchy", "mtt:pop"),
    "electronic/dance": (
        "msd:electronic",
        "msd:dance",
        "msd:electronica",
        "msd:electro",
        "msd:House",
        "mtt:techno",
        "mtt:electronic",
        "mtt:dance",
    ),
    "hip-hop/r&b": ("msd:Hip-Hop", "msd:rnb", "msd:soul", "msd:funk"),
    "jazz/blues": ("msd:jazz", "msd:blues"),
    "classical": ("mtt:classical", "mtt:classic", "mtt:harpsichord", "mtt:choral", "mtt:opera"),
    "folk/country": ("msd:folk", "msd:country", "mtt:country"),
    "latin/reggae": (),
    "ambient/new age": ("msd:ambient", "msd:chillout", "mtt:ambient", "mtt:new age"),
}
VOICE_TAGS = (
    "mtt:vocal",
    "mtt:vocals",
    "mtt:singing",
    "mtt:voice",
    "mtt:male vocal",
    "mtt:female vocal",
    "mtt:male voice",
    "mtt:female voice",
    "mtt:woman",
    "mtt:man",
    "mtt:female",
    "mtt:male",
    "mtt:choir",
    "mtt:opera",
    "msd:female vocalists",
    "msd:male vocalists",
    "msd:female vocalist",
)
NO_VOICE_TAGS = ("mtt:no vocals", "mtt:no vocal", "mtt:no voice", "msd:instrumental")
TEACHER_HOP_S = 1.5


@dataclass
class TagItem:
    """One audio file with whatever labels it has.

    Attributes
    ----------
    name : str
        Unique stem.
    audio : Path
        Audio file.
    set : str
        ``mer4q``, ``fof``, ``debian``, ...
    artist : str
        Grouping key for splits (4Q: the artist; others: the file).
    quadrant : int
        0..3 for Q1..Q4, -1 when unknown.
    allmusic : tuple of str
        AllMusic genres (4Q only).
    teacher : Path or None
        The teacher's ``.npz`` for this file.
    """

    name: str
    audio: Path
    set: str
    artist: str
    quadrant: int = -1
    allmusic: tuple[str, ...] = ()
    teacher: Path | None = None
    mel: F32 | None = field(default=None, repr=False)
    genre: F32 | None = field(default=None, repr=False)  # (windows, genres) teacher dist
    voice: F32 | None = field(default=None, repr=False)  # (windows,)


def coarse_from_allmusic(genres: Sequence[str]) -> F32 | None:
    """A distribution over :data:`GENRES` from AllMusic labels (None if none maps)."""
    v = np.zeros(len(GENRES), np.float32)
    for g in genres:
        targets = ALLMUSIC.get(g.strip(), ())
        for c in targets:  # each AllMusic label weighs 1, shared among its coarse genres
            v[GENRES.index(c)] += 1.0 / len(targets)
    return v / v.sum() if v.sum() > 0 else None


def mer4q_items(root: Path | None = None, teacher_dir: Path | None = None) -> list[TagItem]:
    """The 4Q clips with quadrant, artist and AllMusic genres (empty if the set is absent)."""
    root = root or default_data_root() / "mood" / "mer4q"
    meta = root / "metadata.csv"
    if not meta.exists():
        return []
    out = []
    with open(meta, newline="") as fh:
        for row in csv.DictReader(fh):
            q = row["Quadrant"].strip()
            audio = root / "audio" / q / f"{row['Song']}.opus"
            if not audio.exists():
                continue
            t = teacher_dir / "mer4q" / f"{row['Song']}.npz" if teacher_dir else None
            out.append(
                TagItem(
                    name=row["Song"],
                    audio=audio,
                    set="mer4q",
                    artist=row["Artist"].strip().lower(),
                    quadrant=int(q[1]) - 1,
                    allmusic=tuple(g.strip() for g in row["GenresStr"].split(";") if g.strip()),
                    teacher=t if t is not None and t.exists() else None,
                )
            )
    return out


def teacher_items(teacher_dir: Path, set_name: str) -> list[TagItem]:
    """Unlabelled audio with teacher labels: every ``teacher_dir/SET/*.npz`` whose ``audio``
    entry names an existing file."""
    out = []
    for npz in sorted((teacher_dir / set_name).glob("*.npz")):
        with np.load(npz) as z:
            audio = Path(str(z["audio"])) if "audio" in z.files else None
        if audio is None or not audio.exists():
            continue
        out.append(TagItem(npz.stem, audio, set_name, f"{set_name}:{npz.stem}", teacher=npz))
    return out


def artist_folds(items: Sequence[TagItem], k: int = 10, seed: int = 0) -> npt.NDArray[np.int64]:
    """Fold index per item: artists never cross folds; folds get similar numbers of clips.

    Artists are shuffled (seeded), then each goes to the currently smallest fold.
    """
    artists: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        artists.setdefault(it.artist, []).append(i)
    names = sorted(artists)
    np.random.default_rng(seed).shuffle(names)
    names.sort(key=lambda a: -len(artists[a]))  # stable: big artists first, shuffled ties
    sizes = np.zeros(k, np.int64)
    fold = np.full(len(items), -1, np.int64)
    for a in names:
        f = int(np.argmin(sizes))
        fold[artists[a]] = f
        sizes[f] += len(artists[a])
    return fold


# --------------------------------------------------------------------------------------------
# Inputs and targets


def mel_of(path: Path, spec: TaggerSpec, cache_dir: Path) -> F32:
    """Log-mel of a whole file with the tagger's parameters, cached (float16 on disk)."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{spec.n_fft}|{spec.hop_size}"
    key += f"|{spec.n_mels}|{spec.fmax_hz}|{spec.log_mul}|{spec.sample_rate_hz}"
    out = cache_dir / f"{path.stem}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.npy"
    if out.exists():
        try:
            return np.load(out).astype(np.float32)
        except (OSError, ValueError):
            pass
    mel = spec.log_mel(load_audio(path, spec.sample_rate_hz), spec.filterbank())
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, mel.astype(np.float16))
    os.replace(tmp, out)
    return mel


def teacher_targets(npz: Path, tag_names: dict[str, list[str]]) -> tuple[F32, F32]:
    """Per teacher window: a genre distribution over :data:`GENRES` and a voice probability.

    A coarse genre scores the max of its mapped tags; scores are squared (sharpened) and
    normalised. Voice is ``v / (v + n)`` of the max voice and max no-voice tag.
    """
    with np.load(npz) as z:
        cols = {f"msd:{t}": z["msd"][:, i] for i, t in enumerate(tag_names["msd"])}
        cols.update({f"mtt:{t}": z["mtt"][:, i] for i, t in enumerate(tag_names["mtt"])})
    n = len(next(iter(cols.values())))
    g = np.zeros((n, len(GENRES)), np.float32)
    for j, name in enumerate(GENRES):
        tags = [cols[t] for t in TEACHER_GENRE[name] if t in cols]
        if tags:
            g[:, j] = np.max(tags, axis=0)
    g = g**2 + 1e-6
    g /= g.sum(1, keepdims=True)
    v = np.max([cols[t] for t in VOICE_TAGS if t in cols], axis=0)
    nv = np.max([cols[t] for t in NO_VOICE_TAGS if t in cols], axis=0)
    return g, (v / np.maximum(v + nv, 1e-6)).astype(np.float32)


def prepare(items: Sequence[TagItem], spec: TaggerSpec, cache_dir: Path, teacher_dir: Path) -> None:
    """Load mels and teacher targets into the items (skipping unreadable files, logged)."""
    from tqdm import tqdm

    names_path = teacher_dir / "tags.json"
    names = json.loads(names_path.read_text()) if names_path.exists() else None
    for it in tqdm(items, desc="mel", leave=False):
        if it.mel is None:
            it.mel = mel_of(it.audio, spec, cache_dir)
        if it.teacher is not None and names is not None and it.genre is None:
            it.genre, it.voice = teacher_targets(it.teacher, names)


@dataclass
class Batch:
    mel: torch.Tensor
    genre: torch.Tensor  # (b, genres); rows of zeros = no target
    quadrant: torch.Tensor  # (b,) int64, -1 = none
    voice: torch.Tensor  # (b,), -1 = none


def _crop_targets(it: TagItem, start_frame: int, spec: TaggerSpec) -> tuple[F32, int, float]:
    frame_rate = spec.sample_rate_hz / spec.hop_size
    am = coarse_from_allmusic(it.allmusic)
    genre = np.zeros(len(GENRES), np.float32)
    voice = -1.0
    parts = []
    if am is not None:
        parts.append(am)
    if it.genre is not None and it.voice is not None and len(it.genre):
        w = min(len(it.genre) - 1, round(start_frame / frame_rate / TEACHER_HOP_S))
        parts.append(it.genre[w])
        voice = float(it.voice[w])
    if parts:
        genre = np.mean(parts, axis=0).astype(np.float32)
    return genre, it.quadrant, voice


def make_batch(
    pools: Sequence[Sequence[TagItem]],
    shares: Sequence[float],
    batch: int,
    spec: TaggerSpec,
    rng: np.random.Generator,
    augment: MelAugment | None,
    pairs: bool = False,
) -> Batch:
    """Random crops, ``shares`` of them drawn from each pool (items weighted by length).

    With ``pairs``, each drawn item gives two crops at independent starts, next to each other
    (rows ``2k`` and ``2k + 1``; ``batch`` must be even), for :func:`consistency_loss`.
    """
    n = spec.frames
    per = 2 if pairs else 1
    counts = per * rng.multinomial(batch // per, np.asarray(shares) / np.sum(shares))
    mels, gs, qs, vs = [], [], [], []
    for pool, c in zip(pools, counts, strict=True):
        if c == 0 or not pool:
            continue
        lengths = np.array([max(1, it.mel.shape[0] - n + 1) for it in pool], np.float64)  # type: ignore[union-attr]
        for i in np.repeat(rng.choice(len(pool), size=c // per, p=lengths / lengths.sum()), per):
            it = pool[i]
            assert it.mel is not None
            s = int(rng.integers(0, max(1, it.mel.shape[0] - n + 1)))
            x = windows_at(it.mel, (s,), n)[0]
            if augment is not None:
                x = augment(x, rng)
            g, q, v = _crop_targets(it, s, spec)
            mels.append(x)
            gs.append(g)
            qs.append(q)
            vs.append(v)
    return Batch(
        torch.from_numpy(np.stack(mels)),
        torch.from_numpy(np.stack(gs)),
        torch.tensor(qs, dtype=torch.int64),
        torch.tensor(vs, dtype=torch.float32),
    )


CONSISTENCY_HEADS = ("genre", "quadrant")


def _check_consistency_heads(heads: Sequence[str]) -> None:
    if not heads or not set(heads) <= set(CONSISTENCY_HEADS):
        raise ValueError(
            f"consistency heads must be among {', '.join(CONSISTENCY_HEADS)}, "
            f"not {','.join(heads) or 'none'}"
        )


def consistency_loss(
    out: dict[str, torch.Tensor], heads: Sequence[str] = CONSISTENCY_HEADS
) -> torch.Tensor:
    """Symmetric KL between the ``heads`` distributions (genre, quadrant or both) of paired
    crops (rows ``2k``, ``2k + 1``: two crops of one clip, :func:`make_batch` with ``pairs``):
    a clip's windows should name the same labels, so that a song's first windows already do."""
    total = out["genre"].new_zeros(())
    for key in heads:
        logp = torch.log_softmax(out[key], 1)
        a, b = logp[0::2], logp[1::2]
        total = total + 0.5 * ((a.exp() * (a - b)).sum(1) + (b.exp() * (b - a)).sum(1)).mean()
    return total


def loss_of(out: dict[str, torch.Tensor], b: Batch) -> torch.Tensor:
    """Soft-label genre CE + quadrant CE (label smoothing 0.1) + 0.5 × voice BCE, masked."""
    has_g = (b.genre.sum(1) > 0).float()
    g = -(b.genre * torch.log_softmax(out["genre"], 1)).sum(1)
    loss = (g * has_g).sum() / has_g.sum().clamp_min(1.0)
    if (b.quadrant >= 0).any():
        loss = loss + nn.functional.cross_entropy(
            out["quadrant"], b.quadrant, ignore_index=-1, label_smoothing=0.1
        )
    has_v = b.voice >= 0
    if has_v.any():
        loss = loss + 0.5 * nn.functional.binary_cross_entropy_with_logits(
            out["voice"][has_v], b.voice[has_v]
        )
    return loss


def permuted(b: Batch, perm: torch.Tensor) -> Batch:
    """The batch ``b`` with its rows in the order ``perm``."""
    return Batch(b.mel[perm], b.genre[perm], b.quadrant[perm], b.voice[perm])


def standardisation(items: Sequence[TagItem]) -> tuple[F32, F32]:
    """Per-band mean and standard deviation over every frame of ``items``."""
    frames = np.concatenate([it.mel for it in items if it.mel is not None])
    return frames.mean(0).astype(np.float32), (frames.std(0) + 1e-3).astype(np.float32)


def fit(
    spec: TaggerSpec,
    labelled: Sequence[TagItem],
    unlabelled: Sequence[TagItem],
    *,
    steps: int,
    batch: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    mixup: float = 0.0,
    consistency: float = 0.0,
    consistency_heads: Sequence[str] = CONSISTENCY_HEADS,
    ckpt: Path | None = None,
    progress: str = "train",
) -> TagCNN:
    """Train a :class:`TagCNN` from scratch (or resume from ``ckpt``) for ``steps`` batches.

    ``consistency`` > 0 draws two crops per clip and adds that weight times
    :func:`consistency_loss` over ``consistency_heads``. ``mixup`` > 0 mixes each batch with a
    shuffled copy of itself (log-mel crops and, through the loss, every target) with a weight
    drawn from Beta(mixup, mixup) (Zhang et al. 2018).
    """
    if mixup < 0:
        raise ValueError(f"mixup must be >= 0, not {mixup}")
    _check_consistency_heads(consistency_heads)
    from tqdm import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = TagCNN(spec)
    mean, std = standardisation([*labelled, *unlabelled])
    with torch.no_grad():
        net.in_mean.copy_(torch.from_numpy(mean))
        net.in_std.copy_(torch.from_numpy(std))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    step0 = 0
    if ckpt is not None and ckpt.exists():
        ck = load_checkpoint(ckpt)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optim"])
        sched.load_state_dict(ck["sched"])
        rng.bit_generator.state = ck["rng"]
        step0 = ck["step"]
        log.info("resumed %s at step %d", ckpt, step0)
    c = MelAugment(_centres(spec), spec.sample_rate_hz / spec.hop_size, spec.log_mul)
    pools, shares = [labelled, unlabelled], [0.6, 0.4] if unlabelled else [1.0, 0.0]
    net.train()
    bar = tqdm(total=steps, initial=step0, desc=progress, leave=False)
    pairs = consistency > 0
    for step in range(step0, steps):
        b = make_batch(pools, shares, batch, spec, rng, c, pairs=pairs)
        if mixup > 0:
            lam = float(rng.beta(mixup, mixup))
            if pairs:  # permute whole pairs, so that a mixed pair is still two crops of one mix
                p = rng.permutation(len(b.mel) // 2)
                perm = torch.from_numpy(np.stack([2 * p, 2 * p + 1], 1).reshape(-1))
            else:
                perm = torch.from_numpy(rng.permutation(len(b.mel)))
            out = net(lam * b.mel + (1.0 - lam) * b.mel[perm])
            loss = lam * loss_of(out, b) + (1.0 - lam) * loss_of(out, permuted(b, perm))
        else:
            out = net(b.mel)
            loss = loss_of(out, b)
        if pairs:
            loss = loss + consistency * consistency_loss(out, consistency_heads)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        sched.step()
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if ckpt is not None and ((step + 1) % 200 == 0 or step + 1 == steps):
            torch.save(
                {
                    "model": net.state_dict(),
                    "optim": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "rng": rng.bit_generator.state,
                    "step": step + 1,
                },
                ckpt,
            )
    bar.close()
    net.eval()
    return net


def _centres(spec: TaggerSpec) -> npt.NDArray[np.float64]:
    c: npt.NDArray[np.float64] = spec.filterbank().center_hz
    return c


def windows_of(mel: F32, spec: TaggerSpec, hop_frames: int | None = None) -> F32:
    """Non-overlapping (or ``hop_frames``-spaced) windows of a whole clip's mel."""
    return track_windows(mel, spec.frames, hop_frames or spec.frames)


def clip_outputs(net: TagCNN, it: TagItem, spec: TaggerSpec) -> dict[str, F32]:
    """Mean window probabilities of one clip: genre, quadrant, voice."""
    assert it.mel is not None
    with torch.inference_mode():
        out = net(torch.from_numpy(windows_of(it.mel, spec)))
    return {
        "genre": torch.softmax(out["genre"], 1).mean(0).numpy(),
        "quadrant": torch.softmax(out["quadrant"], 1).mean(0).numpy(),
        "voice": torch.sigmoid(out["voice"]).mean(0, keepdim=True).numpy(),
    }


def _macro_f1(y: npt.NDArray[np.int64], p: npt.NDArray[np.int64], k: int) -> float:
    fs = []
    for c in range(k):
        tp = int(np.sum((p == c) & (y == c)))
        fp = int(np.sum((p == c) & (y != c)))
        fn = int(np.sum((p != c) & (y == c)))
        fs.append(2 * tp / max(2 * tp + fp + fn, 1))
    return float(np.mean(fs))


def _auc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    if not pos or not neg:
        return float("nan")
    a, b = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(np.mean((a > b) + 0.5 * (a == b)))


def quadrant_scores(quadrant: Sequence[npt.ArrayLike], y: npt.ArrayLike) -> dict[str, float]:
    """Quadrant accuracy and macro-F1, valence and arousal sign accuracy of clip outputs.

    Parameters
    ----------
    quadrant : sequence of array_like, each shape (4,)
        Per clip, probabilities (or any scores) of Q1..Q4.
    y : array_like of int, shape (clips,)
        True quadrant per clip, 0..3 for Q1..Q4.

    Returns
    -------
    dict
        ``quadrant_accuracy``, ``quadrant_macro_f1`` (over all four quadrants),
        ``valence_sign_accuracy`` and ``arousal_sign_accuracy`` (the sign of
        :func:`~onbeat.models.tagger.mood_from_quadrants` against Q1 +v +a, Q2 -v +a, Q3 -v -a,
        Q4 +v -a; a value of exactly 0 counts as wrong).
    """
    y = np.asarray(y)
    pq = np.array([np.argmax(q) for q in quadrant])
    va = np.array([mood_from_quadrants(q) for q in quadrant])
    true_v = np.where(np.isin(y, (0, 3)), 1, -1)
    true_a = np.where(np.isin(y, (0, 1)), 1, -1)
    return {
        "quadrant_accuracy": float(np.mean(pq == y)),
        "quadrant_macro_f1": _macro_f1(y, pq, 4),
        "valence_sign_accuracy": float(np.mean(np.sign(va[:, 0]) == true_v)),
        "arousal_sign_accuracy": float(np.mean(np.sign(va[:, 1]) == true_a)),
    }


def score_clips(outputs: Sequence[dict[str, F32]], items: Sequence[TagItem]) -> dict[str, Any]:
    """Quadrant accuracy / macro-F1, genre agreement with AllMusic, voice check, valence and
    arousal sign accuracy, from clip outputs of labelled 4Q items."""
    mood = quadrant_scores([o["quadrant"] for o in outputs], [it.quadrant for it in items])
    hits, prior_hits, n_g = 0, 0, 0
    counts = np.zeros(len(GENRES))
    for it in items:
        am = coarse_from_allmusic(it.allmusic)
        if am is not None:
            counts += am > 0
    prior = int(np.argmax(counts))
    for o, it in zip(outputs, items, strict=True):
        am = coarse_from_allmusic(it.allmusic)
        if am is None:
            continue
        n_g += 1
        hits += am[int(np.argmax(o["genre"]))] > 0
        prior_hits += am[prior] > 0
    vocal = [
        float(o["voice"][0])
        for o, it in zip(outputs, items, strict=True)
        if {"Vocal", "Rap"} & set(it.allmusic)
    ]
    instr = [
        float(o["voice"][0])
        for o, it in zip(outputs, items, strict=True)
        if {"New Age", "Classical"} & set(it.allmusic) and not {"Vocal", "Rap"} & set(it.allmusic)
    ]
    return {
        "clips": len(items),
        **mood,
        "genre_top1_agreement": hits / max(n_g, 1),
        "genre_prior_agreement": prior_hits / max(n_g, 1),
        "genre_clips": n_g,
        "voice_auc_vocal_vs_newage_classical": _auc(vocal, instr),
        "voice_clips": [len(vocal), len(instr)],
    }


def train_tags(
    *,
    run_dir: Path,
    export_dir: Path,
    cache_dir: Path,
    teacher_dir: Path,
    steps: int,
    cv_steps: int,
    folds: int = 10,
    seed: int = 0,
    mixup: float = 0.0,
    keep_folds: bool = False,
    consistency: float = 0.0,
    consistency_heads: Sequence[str] = CONSISTENCY_HEADS,
) -> dict[str, Any]:
    """Cross-validate by artist on 4Q, then train the shipped model on everything and export.

    With ``keep_folds``, each fold's model is kept as ``RUN_DIR/foldK/tags.safetensors`` with
    the names of its test clips (``test_clips.txt``): out-of-fold outputs for tuning what comes
    after the model (the live smoothing) on clips the model never saw. ``steps == 0`` stops
    after the cross-validation (no shipped model, nothing exported).
    """
    _check_consistency_heads(consistency_heads)  # before the mels are prepared
    spec = TaggerSpec()
    labelled = mer4q_items(teacher_dir=teacher_dir)
    if not labelled:
        raise FileNotFoundError("the 4Q mood set is not in ../shared/data/mood/mer4q")
    unlabelled = [it for s in ("fof", "debian") for it in teacher_items(teacher_dir, s)]
    t0 = time.monotonic()
    prepare([*labelled, *unlabelled], spec, cache_dir, teacher_dir)
    log.info(
        "mels ready in %.0f s: %d 4Q clips (%d with teacher), %d unlabelled teacher files",
        time.monotonic() - t0,
        len(labelled),
        sum(it.teacher is not None for it in labelled),
        len(unlabelled),
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    cv_path = run_dir / "cv.json"
    cv: dict[str, Any] = json.loads(cv_path.read_text()) if cv_path.exists() else {}
    fold = artist_folds(labelled, max(folds, 1), seed)
    outputs: list[dict[str, F32] | None] = [None] * len(labelled)
    for f in range(folds):
        test_idx = np.flatnonzero(fold == f)
        key = f"fold{f}"
        if key not in cv:
            tr = [it for i, it in enumerate(labelled) if fold[i] != f]
            net = fit(
                spec,
                tr,
                unlabelled,
                steps=cv_steps,
                seed=seed + f,
                mixup=mixup,
                consistency=consistency,
                consistency_heads=consistency_heads,
                ckpt=run_dir / f"{key}.pt",
                progress=key,
            )
            outs = [clip_outputs(net, labelled[i], spec) for i in test_idx]
            cv[key] = {
                "names": [labelled[i].name for i in test_idx],
                "outputs": [{k: v.tolist() for k, v in o.items()} for o in outs],
                "metrics": score_clips(outs, [labelled[i] for i in test_idx]),
            }
            cv_path.write_text(json.dumps(cv))
            if keep_folds:
                save_tagger(net, run_dir / key, extra={"cv_fold": f, "folds": folds})
                (run_dir / key / "test_clips.txt").write_text("\n".join(cv[key]["names"]) + "\n")
            (run_dir / f"{key}.pt").unlink(missing_ok=True)
            log.info("%s: %s", key, cv[key]["metrics"])
        for i, o in zip(test_idx, cv[key]["outputs"], strict=True):
            outputs[i] = {k: np.asarray(v, np.float32) for k, v in o.items()}
    scored = [(o, it) for o, it in zip(outputs, labelled, strict=True) if o is not None]
    pooled = score_clips([o for o, _ in scored], [it for _, it in scored]) if scored else {}
    log.info("%d-fold artist-disjoint CV: %s", folds, pooled)
    if steps == 0:
        return pooled
    net = fit(
        spec,
        labelled,
        unlabelled,
        steps=steps,
        seed=seed,
        mixup=mixup,
        consistency=consistency,
        consistency_heads=consistency_heads,
        ckpt=run_dir / "final.pt",
        progress="final",
    )
    meta = {
        "task": "genre / mood quadrant / voice tagging of 3 s windows (CNN)",
        "data": f"4Q (research only) {len(labelled)} clips, "
        f"{len({it.artist for it in labelled})} artists; teacher soft labels (musicnn "
        f"MSD/MTT, ISC) on 4Q and {len(unlabelled)} unlabelled real recordings",
        "training_command": f"onbeat train tags --steps {steps} --cv-steps {cv_steps}"
        + (f" --mixup {mixup:g}" if mixup > 0 else "")
        + (f" --consistency {consistency:g}" if consistency > 0 else "")
        + (
            f" --consistency-on {','.join(consistency_heads)}"
            if consistency > 0 and tuple(consistency_heads) != CONSISTENCY_HEADS
            else ""
        ),
        "cv": f"{folds}-fold artist-disjoint cross-validation on 4Q, {cv_steps} steps per fold",
        "cv_metrics": pooled,
        "params": sum(p.numel() for p in net.parameters()),
        "licence": "weights: MIT (onbeat); trained on 4Q (research only) and on soft labels of "
        "the musicnn taggers (ISC; the teacher's weights are not shipped)",
    }
    save_tagger(net, export_dir, extra=meta)
    (export_dir / f"{spec.name}.md").write_text(_card(spec.name, meta))
    return pooled
