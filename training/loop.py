"""Generic, resumable training loop for the causal LSTMs.

Sequences are ``(features (frames, dims), targets (frames, outputs))`` pairs, from
``onbeat.training.datasets``. Training takes random crops, a weighted binary cross-entropy per
output, Adam, and gradient clipping. After every epoch it writes a checkpoint (model, optimizer,
epoch, RNG states, best score) so that a run stopped by the end of a session resumes where it
stopped: run the same command again. The best epoch by validation score is exported to
``models/weights`` with :func:`onbeat.models.lstm.save_model`.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from onbeat.models.lstm import CausalLSTM, LSTMSpec, torch_state
from torch import nn

__all__ = ["TrainConfig", "train"]

log = logging.getLogger(__name__)

Pair = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Hyper-parameters of one run.

    Attributes
    ----------
    epochs : int
        Passes (of ``steps_per_epoch`` batches).
    steps_per_epoch : int
        Batches per epoch.
    batch_size : int
        Crops per batch.
    crop_frames : int
        Frames per crop (at 100 frames/s, 800 = 8 s).
    lr : float
        Adam learning rate.
    pos_weight : tuple of float
        Weight of positive frames per output (they are rare).
    offbeat_weight : float
        Beat tasks (output 0 = beats, output 1 = downbeats): weight of the negative frames that
        a beat tracker must not confuse with the positives, the half-beat positions (the middle
        frame between two beats and its neighbours) for output 0 and the beats that are not
        downbeats for output 1. 1 weighs them like every other negative frame.
    onset_weight : float
        Beat tasks: weight of the note onsets that are not beats (output 0), the frames that
        :func:`train`'s ``onset_marks`` mark (:func:`onbeat.training.datasets.nonbeat_onsets`).
        On busy piano a network that fires on every note cannot tell the tracker which notes
        carry the beat; this stresses exactly those negatives. 1 weighs them like the rest.
    output_weight : tuple of float
        Loss multiplier per output (empty: 1 for every output), e.g. ``(1, 4)`` makes the
        downbeat output of a beat model count four times as much as the beat output.
    seed : int
        Seed of every RNG.
    grad_clip : float
        Gradient-norm clip.
    stop_epoch : int
        Stop after this epoch (0: after ``epochs``). The learning-rate schedule still spans
        ``epochs``, so a run stopped at epoch k has exactly the weights a full run had at k.
    phase_weight : float
        Beat tasks: weight of an auxiliary loss (0: none) in which a linear head on the last
        LSTM layer predicts the position within the beat, ``(cos, sin)`` of ``2 pi phase``, at
        every frame between two labelled beats (:func:`beat_phase_targets`). The head exists only
        in training; the exported model is the plain network.
    """

    epochs: int = 30
    steps_per_epoch: int = 200
    batch_size: int = 16
    crop_frames: int = 800
    lr: float = 2e-3
    pos_weight: tuple[float, ...] = (4.0,)
    offbeat_weight: float = 1.0
    onset_weight: float = 1.0
    output_weight: tuple[float, ...] = ()
    seed: int = 0
    grad_clip: float = 1.0
    stop_epoch: int = 0
    phase_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.steps_per_epoch < 1 or self.batch_size < 1:
            raise ValueError("epochs, steps_per_epoch and batch_size must be positive")
        if self.crop_frames < 10 or not (0 < self.lr < 1):
            raise ValueError("crop_frames >= 10 and 0 < lr < 1 required")
        if not 0 <= self.stop_epoch <= self.epochs:
            raise ValueError(f"stop_epoch = {self.stop_epoch} must be in [0, epochs]")
        if not 0.0 < self.offbeat_weight <= 100.0:
            raise ValueError(f"offbeat_weight = {self.offbeat_weight} must be in (0, 100]")
        if not 0.0 < self.onset_weight <= 100.0:
            raise ValueError(f"onset_weight = {self.onset_weight} must be in (0, 100]")
        if not 0.0 <= self.phase_weight <= 100.0:
            raise ValueError(f"phase_weight = {self.phase_weight} must be in [0, 100]")
        if any(not 0.0 < w <= 100.0 for w in self.output_weight):
            raise ValueError(f"output_weight = {self.output_weight}: each must be in (0, 100]")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint (model, optimiser, scheduler and RNG states), loaded with
    ``weights_only`` (no pickled code runs).

    Raises
    ------
    ValueError
        For a file that is not a weights-only checkpoint (an older onbeat stored NumPy scalars):
        the message says to remove it or pick another ``--run-dir``.
    """
    import pickle

    try:
        ck: dict[str, Any] = torch.load(path, weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{path} is not a weights-only checkpoint (written by an older onbeat?): "
            "remove it or use another --run-dir"
        ) from e
    return ck


def _seed_all(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


Augment = Callable[[npt.NDArray[np.float32], np.random.Generator], npt.NDArray[np.float32]]


def offbeat_weights(y: npt.NDArray[np.float32], weight: float) -> npt.NDArray[np.float32]:
    """Per-frame loss weights that stress the negatives a beat tracker confuses with beats.

    Parameters
    ----------
    y : ndarray, shape (n_frames, n_outputs)
        Beat targets (output 0: 1 at beat frames; output 1, if present: 1 at downbeats, 0 at
        other frames, -1 where unknown).
    weight : float
        Weight of those frames (the others get 1).

    Returns
    -------
    ndarray, shape (n_frames, n_outputs)
        The middle frame between consecutive beats and its two neighbours get ``weight`` in
        output 0; beats that are not downbeats get ``weight`` in output 1.
    """
    w = np.ones(y.shape, np.float32)
    if weight == 1.0 or y.shape[0] == 0:
        return w
    beats = np.flatnonzero(y[:, 0] == 1.0)
    if beats.size >= 2:
        mid = (beats[:-1] + beats[1:]) // 2
        for d in (-1, 0, 1):
            j = np.clip(mid + d, 0, y.shape[0] - 1)
            w[j, 0] = np.where(y[j, 0] == 0.0, weight, w[j, 0])
    if y.shape[1] > 1 and beats.size:
        plain = beats[y[beats, 1] == 0.0]
        w[plain, 1] = weight
    return w


def beat_phase_targets(
    y0: npt.NDArray[np.float32], min_gap: int = 20, max_gap: int = 120
) -> npt.NDArray[np.float32]:
    """Per-frame position within the beat, for the auxiliary phase loss.

    Parameters
    ----------
    y0 : ndarray, shape (n_frames,)
        Beat targets of one crop: 1 at beat frames, -1 where masked.
    min_gap, max_gap : int
        Frames between two beats for the span between them to count (at 100 frames/s: 50-300
        BPM); other spans (a missing label, a gap in the annotation) are masked.

    Returns
    -------
    ndarray, shape (n_frames, 3)
        ``cos(2 pi phase)``, ``sin(2 pi phase)`` and a mask (1 where the phase is known: from a
        labelled beat up to the frame before the next, with no masked frame between them).
    """
    out = np.zeros((y0.shape[0], 3), np.float32)
    beats = np.flatnonzero(y0 == 1.0)
    masked = np.concatenate([[0], np.cumsum(y0 < 0.0)])
    for a, b in itertools.pairwise(beats.tolist()):
        gap = int(b - a)
        if not min_gap <= gap <= max_gap or masked[b + 1] - masked[a] > 0:
            continue
        ph = 2.0 * np.pi * np.arange(gap, dtype=np.float64) / gap
        out[a:b, 0] = np.cos(ph)
        out[a:b, 1] = np.sin(ph)
        out[a:b, 2] = 1.0
    return out


def _batch(
    data: Sequence[Pair],
    rng: np.random.Generator,
    batch: int,
    crop: int,
    augment: Augment | None = None,
    context: int = 0,
    offbeat_weight: float = 1.0,
    sample_weight: npt.NDArray[np.float64] | None = None,
    crop_starts: Sequence[npt.NDArray[np.int64] | None] | None = None,
    onset_marks: Sequence[npt.NDArray[np.bool_] | None] | None = None,
    onset_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    p = np.array([x.shape[0] for x, _ in data], dtype=np.float64)
    if sample_weight is not None:
        p = p * sample_weight
    p = p / p.sum()
    xs, ys, ws = [], [], []
    dims, outs = data[0][0].shape[1], data[0][1].shape[1]
    for i in rng.choice(len(data), size=batch, p=p):
        x, y = data[i]
        n = x.shape[0]
        xb = np.zeros((crop, dims), np.float32)
        yb = np.full((crop, outs), -1.0, np.float32)  # -1 = padding, masked
        allowed = None if crop_starts is None else crop_starts[i]
        if allowed is not None and allowed.size:
            s = int(allowed[rng.integers(allowed.size)])
        else:
            s = int(rng.integers(0, max(1, n - crop + 1)))
        m = min(crop, n - s)
        if augment is not None:
            start = max(0, s - context)  # left context so that the augmented crop is exact
            xb[:m] = augment(x[start : s + m], rng)[s - start :]
        else:
            xb[:m] = x[s : s + m]
        yb[:m] = y[s : s + m]
        xs.append(xb)
        ys.append(yb)
        wb = offbeat_weights(yb, offbeat_weight)
        marks = None if onset_marks is None else onset_marks[i]
        if marks is not None and onset_weight != 1.0:
            mb = np.zeros(crop, dtype=bool)
            mb[:m] = marks[s : s + m]
            mb &= yb[:, 0] == 0.0  # only true negatives (not a beat, its neighbours or padding)
            wb[mb, 0] = np.maximum(wb[mb, 0], np.float32(onset_weight))
        ws.append(wb)
    return (
        torch.from_numpy(np.stack(xs)),
        torch.from_numpy(np.stack(ys)),
        torch.from_numpy(np.stack(ws)),
    )


def _loss(
    logits: torch.Tensor, y: torch.Tensor, pos_weight: torch.Tensor, frame_w: torch.Tensor
) -> torch.Tensor:
    mask = (y >= 0).float()
    target = y.clamp_min(0.0)
    w = mask * frame_w * (1.0 + (pos_weight - 1.0) * (target > 0).float())
    bce = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (bce * w).sum() / w.sum().clamp_min(1.0)


def fit_standardisation(
    data: Sequence[Pair], max_frames: int = 200_000
) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation over (a sample of) the training frames.

    At most ``max_frames`` frames, drawn evenly from every sequence without concatenating them
    (the sequences may be memory maps larger than memory).
    """
    rng = np.random.default_rng(0)
    total = sum(x.shape[0] for x, _ in data)
    take = max(1, max_frames // max(len(data), 1))
    parts = []
    for x, _ in data:
        n = x.shape[0]
        if total <= max_frames or n <= take:
            parts.append(np.asarray(x, np.float32))
        else:
            parts.append(np.asarray(x[np.sort(rng.choice(n, take, replace=False))], np.float32))
    frames = np.concatenate(parts)
    return frames.mean(0, dtype=np.float64), frames.std(0, dtype=np.float64) + 1e-3


def predict(net: nn.Module, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Sigmoid activations ``(frames, n_outputs)`` of one whole sequence (sequence forward)."""
    with torch.inference_mode():
        return torch.sigmoid(net(torch.from_numpy(x)[None]))[0].numpy()


def load_init_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict to fine-tune from: a run's ``best.pt`` (loaded with ``weights_only``), or an
    exported ``NAME.safetensors`` (its ``torch.*`` entries), e.g. the shipped
    ``models/weights/beats.safetensors``, so fine-tuning needs no earlier run directory."""
    p = Path(path)
    if p.suffix == ".safetensors":
        from safetensors.numpy import load_file

        state = torch_state(load_file(str(p)))
        if not state:
            raise ValueError(f"{p} holds no torch state (torch.* entries)")
        return state
    loaded: dict[str, torch.Tensor] = torch.load(p, weights_only=True)
    return loaded


def train(
    *,
    spec: LSTMSpec,
    train_data: Sequence[Pair],
    valid_data: Sequence[Pair],
    config: TrainConfig,
    run_dir: str | Path,
    score: Callable[[Any, Sequence[Pair]], float],
    on_best: Callable[[Any, dict[str, float]], None] | None = None,
    progress: bool = True,
    augment: Augment | None = None,
    context: int = 0,
    weight_decay: float = 0.0,
    make_net: Callable[[LSTMSpec], nn.Module] = CausalLSTM,
    init: str | Path | None = None,
    sample_weight: Sequence[float] | None = None,
    crop_starts: Sequence[npt.NDArray[np.int64] | None] | None = None,
    onset_marks: Sequence[npt.NDArray[np.bool_] | None] | None = None,
    on_epoch: Callable[[Any, dict[str, float]], None] | None = None,
) -> dict[str, float]:
    """Train (or resume) a :class:`CausalLSTM`; returns the best validation metrics.

    Parameters
    ----------
    spec : LSTMSpec
        Network shape.
    train_data, valid_data : sequence of (features, targets)
        Targets in [0, 1] per output; -1 marks frames to ignore.
    config : TrainConfig
        Hyper-parameters.
    run_dir : path
        Checkpoints (``ckpt.pt``), ``train.log`` (JSON lines) and ``best.pt`` go here.
    score : callable
        Validation score of a network (higher is better), e.g. a mir_eval F-measure.
    on_best : callable, optional
        Called with the network and metrics whenever validation improves (e.g. to export).
    progress : bool
        Show a tqdm progress bar.
    augment : callable, optional
        ``augment(features, rng)`` applied to each training crop (with ``context`` extra frames
        of left context, dropped afterwards).
    context : int
        Left-context frames the augmentation needs.
    weight_decay : float
        AdamW weight decay.
    make_net : callable
        Builds the network from ``spec``: :class:`CausalLSTM` (shipped models), or e.g. the
        offline teacher :class:`onbeat.training.beat_teacher.BiLSTMTeacher`. It must have
        ``in_mean`` / ``in_std`` buffers.
    init : path, optional
        A ``best.pt`` state dict or exported ``NAME.safetensors`` of the same network to start
        from (fine-tuning) instead of a random initialisation (:func:`load_init_state`); the
        input standardisation is then kept from it.
    sample_weight : sequence of float, optional
        Per-sequence multiplier of the crop-sampling probability (which is otherwise
        proportional to length), e.g. to oversample a small real-audio set.
    crop_starts : sequence of int arrays or None, optional
        Per sequence, the frames a training crop may start at (None or empty: anywhere), e.g.
        never inside a displaced section, where no causal listener could know the beat yet.
    onset_marks : sequence of bool arrays or None, optional
        Per sequence, one flag per frame: the note onsets that are not beats, weighted
        ``config.onset_weight`` in output 0 (None: no marks for that sequence).
    on_epoch : callable, optional
        Called with the network and metrics after every epoch (e.g. to keep each epoch's
        export, when a check other than the validation score chooses the epoch).
    """
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if config.output_weight and len(config.output_weight) != len(spec.outputs):
        raise ValueError(
            f"output_weight has {len(config.output_weight)} values for "
            f"{len(spec.outputs)} outputs {spec.outputs}"
        )
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    ckpt_path = run / "ckpt.pt"
    _seed_all(config.seed)
    net = make_net(spec)
    if init is not None:
        net.load_state_dict(load_init_state(init))
    else:
        mean, std = fit_standardisation(train_data)
        with torch.no_grad():
            net.in_mean.copy_(torch.from_numpy(mean.astype(np.float32)))
            net.in_std.copy_(torch.from_numpy(std.astype(np.float32)))
    sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if sw is not None and (sw.shape != (len(train_data),) or not np.all(sw > 0)):
        raise ValueError("sample_weight needs one positive weight per training sequence")
    if crop_starts is not None and len(crop_starts) != len(train_data):
        raise ValueError("crop_starts needs one entry (or None) per training sequence")
    if onset_marks is not None:
        if len(onset_marks) != len(train_data):
            raise ValueError("onset_marks needs one entry (or None) per training sequence")
        for (xm, _), mk in zip(train_data, onset_marks, strict=True):
            if mk is not None and mk.shape != (xm.shape[0],):
                raise ValueError("each onset_marks entry needs one flag per frame of its sequence")
    aux: nn.Linear | None = None
    params = list(net.parameters())
    if config.phase_weight > 0.0:
        if not hasattr(net, "hidden"):
            raise ValueError("phase_weight needs a network with hidden() and head (an LSTM)")
        torch.manual_seed(config.seed + 1)
        aux = nn.Linear(net.head.in_features, 2)
        params += list(aux.parameters())
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    rng = np.random.default_rng(config.seed)
    epoch0, best = 0, {"score": -math.inf}
    if ckpt_path.exists():
        ck = load_checkpoint(ckpt_path)
        net.load_state_dict(ck["model"])
        if aux is not None and "aux" in ck:
            aux.load_state_dict(ck["aux"])  # a run that had no phase head starts a fresh one
        opt.load_state_dict(ck["optim"])
        sched.load_state_dict(ck["sched"])
        epoch0, best = ck["epoch"], ck["best"]
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        log.info("resumed %s at epoch %d (best %.4f)", run, epoch0, best["score"])
    pw = torch.tensor(config.pos_weight, dtype=torch.float32)
    ow = torch.tensor(config.output_weight or (1.0,) * len(spec.outputs), dtype=torch.float32)
    (run / "config.json").write_text(
        json.dumps({"train": asdict(config), "spec": asdict(spec)}, indent=2)
    )
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=(config.stop_epoch or config.epochs) * config.steps_per_epoch,
            initial=epoch0 * config.steps_per_epoch,
        )
    last = config.stop_epoch or config.epochs
    for epoch in range(epoch0, last):
        net.train()
        t0 = time.monotonic()
        total = 0.0
        for _ in range(config.steps_per_epoch):
            x, y, fw = _batch(
                train_data,
                rng,
                config.batch_size,
                config.crop_frames,
                augment,
                context,
                config.offbeat_weight,
                sw,
                crop_starts,
                onset_marks,
                config.onset_weight,
            )
            if aux is None:
                loss = _loss(net(x), y, pw, fw * ow)
            else:
                h = net.hidden(x)
                loss = _loss(net.head(net.drop(h)), y, pw, fw * ow)
                tgt = torch.from_numpy(
                    np.stack([beat_phase_targets(yi) for yi in y[:, :, 0].numpy()])
                )
                err = ((aux(h) - tgt[..., :2]) ** 2).sum(-1) * tgt[..., 2]
                loss = loss + config.phase_weight * err.sum() / tgt[..., 2].sum().clamp_min(1.0)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
            opt.step()
            total += loss.item()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}", epoch=epoch + 1)
        sched.step()
        net.eval()
        s = float(score(net, valid_data))
        metrics = {
            "epoch": epoch + 1,
            "loss": total / config.steps_per_epoch,
            "valid_score": s,
            "seconds": time.monotonic() - t0,
        }
        with open(run / "train.log", "a") as fh:
            fh.write(json.dumps(metrics) + "\n")
        if s > best["score"]:
            best = {"score": s, **metrics}
            torch.save(net.state_dict(), run / "best.pt")
            if on_best is not None:
                on_best(net, best)
        if on_epoch is not None:
            on_epoch(net, {**metrics, "score": s})
        torch.save(
            {
                "model": net.state_dict(),
                "optim": opt.state_dict(),
                "sched": sched.state_dict(),
                "epoch": epoch + 1,
                "best": best,
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                **({"aux": aux.state_dict()} if aux is not None else {}),
            },
            ckpt_path,
        )
        log.info("epoch %d: loss %.4f valid %.4f", epoch + 1, metrics["loss"], s)
    if bar is not None:
        bar.close()
    return best
