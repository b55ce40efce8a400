"""``onbeat train similarity``: the similarity head (:mod:`onbeat.models.similarity`).

Objective
    Contrastive (Siamese) training as in part II of the ISMIR 2018 "Deep learning for MIR"
    tutorial, in its in-batch form (InfoNCE / NT-Xent, temperature :data:`TEMPERATURE`): a batch
    holds two views of each of ``batch`` tracks; the other view of the same track is the positive,
    every view of the other tracks a negative. A view is a ``window_s`` window at a random start
    (another window of the same track) that is, with probability :data:`P_DEGRADE`, degraded by
    :class:`~onbeat.training.augment.MelAugment` (gain, EQ, band limit, reverb, noise); each start
    gets a clean and a degraded (or two degraded) versions, so augmentations of the same window are
    positives too.

The trunk is frozen
    The shipped tagger's trunk (:meth:`TagCNN.pooled`) is never trained, so the tags do not
    change. Each epoch therefore computes a *bank* of pooled trunk vectors once
    (:data:`STARTS_PER_TRACK` random starts × 2 versions per track, new starts and degradations
    every epoch) and then trains only the small MLP for ``steps`` batches from that bank, which
    keeps the cost to one trunk pass per view.

Data and split
    4Q clips of every artist-disjoint fold except the held-out query fold of ``onbeat eval
    similarity`` (:data:`~onbeat.training.eval_similarity.TEST_FOLD` of
    :data:`~onbeat.training.eval_similarity.TEST_FOLDS`), plus the unlabelled real recordings with
    teacher labels (Frets-on-Fire, Debian game music) minus one file in five (held out by file).

Resuming
    ``RUN_DIR/ckpt.pt`` holds the head, the optimiser and the finished epoch; a rerun continues
    after it. The final head is exported with a model card.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from onbeat.models.similarity import SimilarityHead, SimilaritySpec, pool_trunk, save_head
from onbeat.models.tagger import TagCNN
from onbeat.training.eval_similarity import windows_at
from onbeat.training.loop import load_checkpoint
from tqdm import tqdm

__all__ = [
    "P_DEGRADE",
    "STARTS_PER_TRACK",
    "TEMPERATURE",
    "fit_head",
    "info_nce",
    "train_similarity",
]

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
#: NT-Xent temperature.
TEMPERATURE = 0.1
#: Random window starts per track and epoch (each gives two versions).
STARTS_PER_TRACK = 6
#: Probability that a version is degraded (the first version of a start is always kept clean
#: with probability ``1 - P_DEGRADE``; the second is always degraded).
P_DEGRADE = 0.7


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Symmetric NT-Xent loss of paired unit embeddings ``a[i] ↔ b[i]``, shape ``(n, dim)``.

    Every other row of both views is a negative (2n - 2 per anchor).
    """
    z = torch.cat([a, b])
    n = a.shape[0]
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return torch.nn.functional.cross_entropy(sim, target)


def tag_similarity(
    quadrants: Sequence[int], genres: Sequence[F32 | None]
) -> npt.NDArray[np.float32]:
    """Tag similarity of every pair of tracks, ``(n, n)``; NaN where nothing is known.

    The mean of what both tracks have: quadrant agreement (1 or 0; ``-1`` = unknown) and the
    cosine of their genre distributions (4Q AllMusic genres and/or the teacher's soft tags).
    """
    n = len(quadrants)
    q = np.asarray(quadrants)
    total = np.zeros((n, n), np.float64)
    count = np.zeros((n, n), np.float64)
    known_q = q >= 0
    both_q = known_q[:, None] & known_q[None, :]
    total += np.where(both_q, (q[:, None] == q[None, :]).astype(np.float64), 0.0)
    count += both_q
    g = np.zeros((n, max((len(x) for x in genres if x is not None), default=1)), np.float64)
    known_g = np.array([x is not None and float(np.linalg.norm(x)) > 0 for x in genres])
    for i, x in enumerate(genres):
        if known_g[i]:
            g[i] = np.asarray(x, np.float64) / np.linalg.norm(x)
    both_g = known_g[:, None] & known_g[None, :]
    total += np.where(both_g, g @ g.T, 0.0)
    count += both_g
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan).astype(np.float32)


def tag_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    sim: torch.Tensor,
    temperature: float = TEMPERATURE,
    tag_temperature: float = 0.1,
) -> torch.Tensor:
    """Soft-target contrastive loss between the views ``a[i]``, ``b[j]`` of distinct tracks.

    For each anchor, the other tracks of the batch are ranked by embedding similarity; the
    target distribution over them is ``softmax(sim / tag_temperature)`` of their tag
    similarity (``sim``, NaN = unknown, left out). Rows with fewer than two known tracks do
    not count. Tracks with similar tags end up nearer than tracks with different ones, while
    :func:`info_nce` keeps each track nearest to itself. 0 when no row counts.
    """
    n = a.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    known = torch.isfinite(sim) & ~eye
    rows = known.sum(dim=1) >= 2
    if not bool(rows.any()):
        return a.sum() * 0.0
    target = torch.softmax(
        torch.where(known, sim / tag_temperature, torch.full_like(sim, float("-inf"))), dim=1
    )[rows]
    loss = a.new_zeros(())
    for x, y in ((a, b), (b, a)):
        logits = (x @ y.T / temperature).masked_fill(~known, float("-inf"))
        logp = torch.log_softmax(logits, dim=1)[rows]
        loss = loss - (target * logp.masked_fill(~known[rows], 0.0)).sum(dim=1).mean()
    return loss / 2


def _shifted_pair(
    mel: F32, frames: int, max_shift: int, rng: np.random.Generator
) -> tuple[F32, F32]:
    """Two windows of ``frames`` whose starts differ by at most ``max_shift`` frames (zero
    padded at the end of a short track)."""
    top = max(0, mel.shape[0] - frames)
    s0 = int(rng.integers(0, top + 1))
    s1 = int(np.clip(s0 + rng.integers(-max_shift, max_shift + 1), 0, top)) if max_shift else s0
    out = windows_at(mel, (s0, s1), frames)
    return out[0], out[1]


def _bank(
    net: TagCNN,
    mels: Sequence[F32],
    augment: Callable[[F32, np.random.Generator], F32],
    rng: np.random.Generator,
    starts: int,
    progress: str,
    pool: str,
    max_shift: int = 0,
) -> torch.Tensor:
    """Pooled trunk vectors ``(tracks, starts, 2, in_dim)`` of fresh views: per start, a clean
    or degraded window and a degraded copy, shifted by up to ``max_shift`` frames."""
    frames = net.spec.frames
    out: list[torch.Tensor] = []
    for mel in tqdm(mels, desc=progress, leave=False):
        views = np.empty((starts, 2, frames, mel.shape[1]), np.float32)
        for i in range(starts):
            w0, w1 = _shifted_pair(mel, frames, max_shift, rng)
            views[i, 0] = augment(w0, rng) if rng.random() < P_DEGRADE else w0
            views[i, 1] = augment(w1, rng)
        with torch.inference_mode():
            pooled = pool_trunk(
                net.trunk_map(torch.from_numpy(views.reshape(-1, frames, mel.shape[1]))), pool
            )
        out.append(pooled.reshape(starts, 2, -1).clone())
    return torch.stack(out)


def fit_head(
    net: TagCNN,
    mels: Sequence[F32],
    augment: Callable[[F32, np.random.Generator], F32],
    *,
    run_dir: Path,
    trunk_id: str,
    epochs: int = 8,
    steps: int = 200,
    batch: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    starts: int = STARTS_PER_TRACK,
    hidden: int = 256,
    pool: str = "global",
    same_window: float = 0.0,
    max_shift: int = 0,
    tag_sim: npt.NDArray[np.float32] | None = None,
    tag_weight: float = 0.0,
) -> tuple[SimilarityHead, list[float]]:
    """Train a head on the frozen trunk of ``net`` (resumable from ``run_dir/ckpt.pt``).

    Parameters
    ----------
    net : TagCNN
        The tagger (kept in eval mode, never updated).
    mels : sequence of ndarray, each (frames, mels)
        Whole-track log-mels (one per track).
    augment : callable
        ``augment(window, rng)``: the degradation.
    run_dir : path
        Checkpoint folder.
    trunk_id : str
        The tagger's id, stored in the head's spec.
    epochs, steps, batch : int
        Banks, batches per bank and tracks per batch.
    lr : float
        AdamW learning rate (cosine decay over all steps).
    seed : int
        Everything random.
    starts : int
        Random window starts per track and epoch.
    hidden : int
        The head's hidden width.
    pool : str
        How the head pools the trunk map (:data:`~onbeat.models.similarity.POOLS`).
    same_window : float
        Share of positive pairs that are two versions of the same window (a degraded copy,
        shifted by up to ``max_shift`` frames): a fingerprint-like objective, for finding the
        track a window comes from. The rest pair any two windows of the track.
    max_shift : int
        Largest shift (frames) between the two versions of a window.
    tag_sim : ndarray, shape (tracks, tracks), optional
        :func:`tag_similarity` of the tracks, for the tag term.
    tag_weight : float
        Weight of :func:`tag_loss` (tracks with similar tags nearer) next to the InfoNCE.

    Returns
    -------
    head : SimilarityHead
        In eval mode.
    losses : list of float
        Mean loss per epoch (all epochs, resumed ones included).
    """
    torch.manual_seed(seed)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    with torch.inference_mode():
        probe = net.trunk_map(torch.zeros(1, net.spec.frames, net.spec.n_mels))
    in_dim = int(pool_trunk(probe, pool).shape[1])
    head = SimilarityHead(
        SimilaritySpec(in_dim=in_dim, hidden=hidden, trunk_id=trunk_id, pool=pool)
    )
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    total = max(1, epochs * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: float(0.5 * (1.0 + np.cos(np.pi * min(s, total) / total)))
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / "ckpt.pt"
    first, losses = 0, []
    if ckpt.exists():
        state = load_checkpoint(ckpt)
        if state.get("spec") != head.spec.to_json():
            raise ValueError(
                f"{ckpt} holds a head of another shape or trunk ({state.get('spec')}); "
                "remove it or use another --run-dir"
            )
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        first, losses = int(state["epoch"]), list(state["losses"])
        log.info("resuming after epoch %d", first)
    n = len(mels)
    b = min(batch, n)
    for epoch in range(first, epochs):
        rng = np.random.default_rng([seed, epoch])
        bank = _bank(net, mels, augment, rng, starts, f"bank {epoch + 1}/{epochs}", pool, max_shift)
        head.train()
        total_loss = 0.0
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{epochs}", leave=False)
        for _ in bar:
            tr = torch.from_numpy(rng.choice(n, b, replace=False))
            # two views of each track: any (start, version) pair except the same one twice
            i1 = torch.from_numpy(rng.integers(0, 2 * starts, b))
            i2 = (i1 + torch.from_numpy(rng.integers(1, 2 * starts, b))) % (2 * starts)
            if same_window > 0:  # the other version of the same start
                same = torch.from_numpy(rng.random(b) < same_window)
                i2 = torch.where(same, i1 ^ 1, i2)
            flat = bank.reshape(n, 2 * starts, -1)
            za, zb = head(flat[tr, i1]), head(flat[tr, i2])
            loss = info_nce(za, zb)
            if tag_weight > 0 and tag_sim is not None:
                sim = torch.from_numpy(tag_sim[np.ix_(tr.numpy(), tr.numpy())])
                loss = loss + tag_weight * tag_loss(za, zb, sim)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            value = loss.item()
            total_loss += value
            bar.set_postfix(loss=f"{value:.3f}")
        losses.append(total_loss / max(steps, 1))
        log.info("epoch %d: loss %.4f", epoch + 1, losses[-1])
        torch.save(
            {
                "head": head.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "epoch": epoch + 1,
                "losses": losses,
                "seed": seed,
                "spec": head.spec.to_json(),
            },
            ckpt,
        )
    head.eval()
    return head, losses


def track_tags(items: Sequence[Any], teacher_dir: Path) -> tuple[list[int], list[F32 | None]]:
    """Per track: the 4Q quadrant (-1 unknown) and a genre distribution over the coarse genres,
    the mean of what is known: AllMusic genres (4Q) and the teacher's soft tags (mean over the
    file's windows)."""
    from onbeat.training.tags import coarse_from_allmusic, teacher_targets

    names_path = teacher_dir / "tags.json"
    names = json.loads(names_path.read_text()) if names_path.exists() else None
    quads: list[int] = []
    genres: list[F32 | None] = []
    for it in items:
        parts = []
        allmusic = coarse_from_allmusic(it.allmusic) if it.allmusic else None
        if allmusic is not None:
            parts.append(allmusic)
        if it.teacher is not None and names is not None:
            parts.append(teacher_targets(it.teacher, names)[0].mean(axis=0))
        quads.append(int(it.quadrant))
        genres.append(np.mean(parts, axis=0).astype(np.float32) if parts else None)
    return quads, genres


def render_tracks(root: Path, n: int, seed: int) -> list[Path]:
    """Audio of ``n`` rendered train-split tracks of Groove and POP909 (each a distinct MIDI
    performance with its own random instrumentation)."""
    from onbeat.training.datasets import render_items

    if not (root / "manifest.jsonl").exists():
        raise FileNotFoundError(f"no renders in {root} (python -m onbeat.training.render)")
    paths = sorted(it.audio for it in render_items(root, split="train", sets=("groove", "pop909")))
    pick = np.random.default_rng(seed).permutation(len(paths))[:n]
    return [paths[i] for i in sorted(pick)]


def _held_out_file(name: str) -> bool:
    """One file in five (by a hash of its name) is kept out of training."""
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) % 5 == 0


def train_similarity(
    *,
    run_dir: Path,
    export_dir: Path,
    cache_dir: Path,
    teacher_dir: Path,
    epochs: int,
    steps: int,
    seed: int = 0,
    hidden: int = 256,
    pool: str = "freq",
    evaluate: bool = True,
    renders: int = 0,
    renders_root: Path = Path("data/renders"),
    same_window: float = 0.0,
    tag_weight: float = 0.0,
    trunk: Path | None = None,
) -> dict[str, Any]:
    """Train the head on 4Q (minus the held-out artist fold) and real recordings, export it with
    a model card and (``evaluate``) the ``onbeat eval similarity`` numbers on 4Q.

    ``renders`` > 0 adds that many rendered MIDI tracks (``renders_root``, train split, Groove
    and POP909, drawn with ``seed``): more distinct tracks against the head's
    overfitting. ASAP is left out: its pieces come in several performances that would be
    near-duplicate negatives.

    ``same_window`` > 0 makes that share of the positive pairs two versions of one window
    (degraded, shifted by up to half the library's window hop, as a live query is): the
    fingerprint-like objective of same-track retrieval. ``tag_weight`` > 0 adds
    :func:`tag_loss`: tracks whose 4Q quadrant, AllMusic genres and teacher soft tags agree are
    drawn nearer (:func:`track_tags`).

    ``trunk`` is the frozen tagger whose trunk the head reads (default: the head's own trunk
    that ships, ``similarity_trunk.safetensors``, else the tags model). Unless it is the export
    folder's tags model, it is copied beside the exported head as ``similarity_trunk``, so the
    live tagger, the library and ``onbeat eval similarity`` run it (a second trunk pass) when
    the tagger is a different model.
    """
    from onbeat.models.registry import weights_path
    from onbeat.models.tagger import load_tagger
    from onbeat.realtime.library import TRUNK_NAME, WINDOW_HOP_S, same_weights, weights_id
    from onbeat.training.augment import MelAugment
    from onbeat.training.eval_similarity import DEGRADATION, TEST_FOLD, TEST_FOLDS
    from onbeat.training.tags import artist_folds, mel_of, mer4q_items, teacher_items
    from onbeat.training.tasks import _card

    if trunk is None:
        own = weights_path(TRUNK_NAME)
        trunk = own if own.exists() else weights_path("tags")
    tagger_path = Path(trunk)
    net, _ = load_tagger(tagger_path)
    spec = net.spec
    items = mer4q_items(teacher_dir=teacher_dir)
    if not items:
        raise FileNotFoundError("the 4Q mood set is not in ../shared/data/mood/mer4q")
    folds = artist_folds(items, TEST_FOLDS, seed=0)
    train = [it for it, f in zip(items, folds, strict=True) if f != TEST_FOLD]
    other = [it for s in ("fof", "debian") for it in teacher_items(teacher_dir, s)]
    other = [it for it in other if not _held_out_file(it.name)]
    extra = render_tracks(renders_root, renders, seed) if renders > 0 else []
    t0 = time.monotonic()
    paths = [it.audio for it in [*train, *other]] + extra
    mels = [mel_of(path, spec, cache_dir) for path in tqdm(paths, desc="mel")]
    tag_sim = None
    if tag_weight > 0:
        quads, genres = track_tags([*train, *other], teacher_dir)
        tag_sim = tag_similarity(quads + [-1] * len(extra), genres + [None] * len(extra))
    log.info("%d tracks' mels in %.0f s", len(mels), time.monotonic() - t0)
    augment = MelAugment(
        spec.filterbank().center_hz,
        spec.sample_rate_hz / spec.hop_size,
        spec.log_mul,
        **DEGRADATION,
    )
    head, losses = fit_head(
        net,
        mels,
        augment,
        run_dir=run_dir,
        trunk_id=weights_id(tagger_path),
        epochs=epochs,
        steps=steps,
        seed=seed,
        hidden=hidden,
        pool=pool,
        same_window=same_window,
        max_shift=round(WINDOW_HOP_S / 2 * spec.sample_rate_hz / spec.hop_size),
        tag_sim=tag_sim,
        tag_weight=tag_weight,
    )
    meta: dict[str, Any] = {
        "task": "similarity embedding of 3 s windows (MLP head on the frozen tagger trunk)",
        "objective": f"in-batch NT-Xent (temperature {TEMPERATURE}): positives = other windows "
        "and degraded copies of the same track"
        + (
            f" ({same_window:.0%} of pairs: a degraded copy of the same window shifted by up to "
            f"{WINDOW_HOP_S / 2:g} s)"
            if same_window > 0
            else ""
        )
        + ", negatives = other tracks"
        + (
            f"; plus {tag_weight:g} × a soft-target term ranking other tracks by tag similarity "
            "(4Q quadrant, AllMusic genres, teacher soft tags)"
            if tag_weight > 0
            else ""
        ),
        "data": f"4Q (research only) {len(train)} clips of {len({it.artist for it in train})} "
        f"artists (artist fold {TEST_FOLD} of {TEST_FOLDS} held out), {len(other)} "
        "Frets-on-Fire / Debian game-music recordings (1 file in 5 held out)"
        + (f", {len(extra)} rendered MIDI tracks (Groove, POP909; train split)" if extra else ""),
        "training_command": f"onbeat train similarity --epochs {epochs} --steps {steps} "
        f"--seed {seed} --hidden {hidden}"
        + (f" --renders {renders}" if renders else "")
        + (f" --same-window {same_window:g}" if same_window > 0 else "")
        + (f" --tag-weight {tag_weight:g}" if tag_weight > 0 else ""),
        "trunk": weights_id(tagger_path),
        "architecture": f"{pool} pooling of the frozen trunk map ({head.spec.in_dim}-d) → "
        f"Linear({head.spec.hidden}) → LayerNorm → ReLU → Linear({head.spec.dim}) → unit norm; "
        "float16 weights",
        "losses": [round(x, 4) for x in losses],
        "params": sum(p.numel() for p in head.parameters()),
        "licence": "weights: MIT (onbeat). Trained on 4Q clips (research only) and "
        "Debian/Frets-on-Fire recordings (CC BY-SA / MIT-style / game-data licences); "
        + (
            "its tag term uses the 4Q labels and soft labels of the musicnn MTT/MSD taggers, "
            if tag_weight > 0
            else "uses no tags itself, "
        )
        + "and its frozen trunk (the tags model) learnt from 4Q and from soft labels of the "
        "musicnn MTT/MSD taggers (MagnaTagATune-derived: non-commercial). Treat these weights "
        "as research / non-commercial. No teacher weights ship.",
    }
    result: dict[str, Any] = {"losses": losses}
    if evaluate:
        import tempfile

        from onbeat.training.eval_similarity import evaluate_similarity, load_tracks

        with tempfile.TemporaryDirectory() as tmp:
            path = save_head(head, tmp)
            tracks, _ = load_tracks(items[0].audio.parents[2])
            _copy_trunk(tagger_path, path.parent / f"{TRUNK_NAME}.safetensors")  # as live
            metrics = evaluate_similarity(tracks, tagger_path=weights_path("tags"), head_path=path)
        meta["eval_command"] = "onbeat eval similarity ../shared/data/mood/mer4q"
        meta["eval_4q"] = {
            f"{name} {k}": round(v, 4)
            for name, r in metrics.items()
            for k, v in r.items()
            if k in ("mean_r@1", "mean_r@10", "max_r@1", "max_r@10", "p10_quadrant", "p10_genre")
        }
        result["eval"] = metrics
    save_head(head, export_dir, extra=meta)
    shipped_tags = export_dir / "tags.safetensors"
    if not (
        shipped_tags.exists() and same_weights(weights_id(shipped_tags), weights_id(tagger_path))
    ):
        _copy_trunk(tagger_path, export_dir / f"{TRUNK_NAME}.safetensors")
    (export_dir / f"{head.spec.name}.md").write_text(_card(head.spec.name, meta))
    (run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _copy_trunk(src: Path, dst: Path) -> None:
    """Copy a tagger's weights and metadata (``.safetensors`` and ``.json``) to ``dst``'s stem,
    unless they are already that file."""
    import shutil

    if dst.exists() and dst.resolve() == src.resolve():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(src.with_suffix(suffix), dst.with_suffix(suffix))
