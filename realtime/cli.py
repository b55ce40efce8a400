"""The ``onbeat`` command line.

``onbeat devices`` lists inputs; ``onbeat live`` analyses a microphone (falling back to the
built-in demo when there is none); ``onbeat replay FILE`` replays a file as if live (``--fast``:
as fast as possible); ``onbeat demo`` plays the synthesized demo song.

Every user error (bad file, unknown device, impossible config) is one line on stderr and exit
code 2. Ctrl-C stops cleanly: the stream is closed and the event file is complete.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from onbeat.realtime.config import OnbeatConfig, apply_overrides, load_config, parse_override
from onbeat.realtime.errors import ConfigError, DeviceError, OnbeatError

from onbeat import __version__

__all__ = ["build_parser", "main"]

log = logging.getLogger("onbeat")


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """``--config FILE.toml`` and repeatable ``--set SECTION.KEY=VALUE`` (shared with the GUI)."""
    p.add_argument("--config", metavar="FILE.toml", help="TOML configuration file")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value (repeatable), e.g. --set onset.threshold=0.6",
    )


def _common(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--events", metavar="PATH", help="write every event to this JSON Lines file")
    p.add_argument("--block-size", type=int, metavar="N", help="samples per audio block")
    p.add_argument("--threshold", type=float, help="onset threshold (onset.threshold)")
    p.add_argument("--no-console", action="store_true", help="no live status line")
    p.add_argument(
        "--osc",
        action="append",
        metavar="TARGET",
        help="send OSC to [PRESET@]HOST[:PORT][:PROFILE][,latency_ms=..] (repeatable); "
        "presets: resolume, qlcplus, touchdesigner",
    )
    p.add_argument("--osc-control", metavar="[HOST:]PORT", help="accept OSC control commands")
    p.add_argument(
        "--osc-allow", action="append", metavar="ADDR", help="allowed control sender (repeatable)"
    )
    p.add_argument("--ws", metavar="[HOST:]PORT", help="broadcast events as JSON over WebSocket")
    p.add_argument(
        "--link",
        nargs="?",
        const="",
        metavar="KEY=VALUE,...",
        help="join an Ableton Link session and lead its tempo and phase once locked; options: "
        "min_confidence, tempo_tolerance_pct, phase_tolerance_ms, yield_s, offset_ms, "
        "force_phase, initial_bpm (put the flag after a FILE argument)",
    )
    p.add_argument(
        "--midi-clock",
        nargs="?",
        const="",
        metavar="PORT",
        help="send MIDI clock (24 per beat, start/stop, song position) to the output PORT (a "
        "part of its name), or to a new virtual port onbeat:clock without PORT; options after "
        "a comma: api=alsa|jack, latency_ms, start_on=lock|beat, downbeat, stop_after_s, spp",
    )
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds of audio")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    parser = argparse.ArgumentParser(
        prog="onbeat", description="Real-time beat and onset analysis for live audio."
    )
    parser.add_argument("--version", action="version", version=f"onbeat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("devices", help="list audio input devices")
    p.add_argument("-v", "--verbose", action="count", default=0)

    p = sub.add_parser("live", help="analyse a live input (the demo song if there is none)")
    p.add_argument("--device", help="input device: index or name fragment")
    p.add_argument("--channels", help="comma-separated input channels to mix, e.g. 0,1")
    _common(p)

    p = sub.add_parser("replay", help="replay an audio file as if it were live")
    p.add_argument("file", help="audio file (wav, flac, ogg, opus, mp3, ...)")
    p.add_argument("--fast", action="store_true", help="as fast as possible, not real time")
    p.add_argument("--channels", help="comma-separated channels to mix, e.g. 0")
    _common(p)

    p = sub.add_parser("eval", help="score the live pipeline on a directory of annotated files")
    p.add_argument("task", choices=["beats", "onsets", "tags", "similarity"])
    p.add_argument(
        "directory",
        help="audio files with same-stem .beats or .onsets files (tags: audio files, searched "
        "recursively, labelled by a CSV)",
    )
    p.add_argument("--json", metavar="PATH", help="write per-file and mean metrics as JSON")
    p.add_argument("--plot", metavar="PNG", help="plot path (default: eval_TASK.png)")
    p.add_argument(
        "--labels",
        metavar="CSV",
        help="tags: song,quadrant,genres labels (default: DIRECTORY/labels.csv)",
    )
    p.add_argument(
        "--teacher",
        metavar="DIR",
        help="tags: musicnn teacher labels SET/STEM.npz (default: $ONBEAT_TEACHER or data/teacher)",
    )
    p.add_argument(
        "--live",
        action="store_true",
        help="tags: replay each file through the engine, score its last smoothed event and "
        "report label stability",
    )
    p.add_argument(
        "--transitions",
        action="store_true",
        help="tags, with --live: also replay consecutive pairs of files as one stream and "
        "report how soon the labels settle after the song change",
    )
    _common(p)

    from onbeat.gui.app import add_arguments as add_gui_arguments

    p = sub.add_parser("gui", help="the desktop visualizer (live input, FILE, or --demo)")
    add_gui_arguments(p)

    p = sub.add_parser("train", help="train a model (resumable; see training/)")
    p.add_argument("task", choices=["onsets", "beats", "bars", "tags", "similarity"])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--steps", type=int, default=200, help="batches per epoch")
    p.add_argument("--run-dir", default="runs", help="checkpoints and logs (resume from here)")
    p.add_argument("--export", default=None, help="weights folder (default: the package's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="onsets/beats: peak learning rate of the cosine schedule (default 2e-3; lower it "
        "to fine-tune with --init)",
    )
    p.add_argument("--hidden", type=int, default=None, help="LSTM units (default: per task)")
    p.add_argument(
        "--crop-frames",
        type=int,
        default=None,
        help="training crop length (frames; bars: beats, default 128)",
    )
    p.add_argument(
        "--max-train", type=int, default=0, help="beats: at most this many items (0 = all)"
    )
    p.add_argument(
        "--cv-steps", type=int, default=1000, help="tags: batches per cross-validation fold"
    )
    p.add_argument("--folds", type=int, default=10, help="tags: artist-disjoint CV folds (0: none)")
    p.add_argument(
        "--offbeat-weight",
        type=float,
        default=1.0,
        help="beats: loss weight of half-beat frames and of beats that are not downbeats",
    )
    p.add_argument(
        "--onset-weight",
        type=float,
        default=1.0,
        help="beats: loss weight of labelled note onsets that are not beats (renders)",
    )
    p.add_argument(
        "--phase-weight",
        type=float,
        default=0.0,
        help="beats: weight of an auxiliary loss predicting the position within the beat at "
        "every frame (a training-only head; 0: off)",
    )
    p.add_argument(
        "--downbeat-weight",
        type=float,
        default=1.0,
        help="beats: loss multiplier of the downbeat output; other than 1, the epoch is also "
        "chosen on the validation downbeat AUC",
    )
    p.add_argument(
        "--renders",
        type=int,
        default=0,
        help="similarity, onsets: add this many rendered MIDI tracks (train split) to the "
        "training data (onsets: at most half of the crops)",
    )
    p.add_argument(
        "--mixup",
        type=float,
        default=0.0,
        help="tags: mixup Beta(a, a) parameter for crops and targets (0: off)",
    )
    p.add_argument(
        "--same-window",
        type=float,
        default=0.0,
        help="similarity: share of positive pairs that are a degraded, shifted copy of the same "
        "window (fingerprint-like; 0: any two windows of the track)",
    )
    p.add_argument(
        "--tag-weight",
        type=float,
        default=0.0,
        help="similarity: weight of the tag-similarity term (4Q quadrant, AllMusic genres, "
        "teacher tags; 0: off)",
    )
    p.add_argument(
        "--trunk",
        help="similarity: the frozen tagger (.safetensors) whose trunk the head reads (default: "
        "the shipped similarity_trunk, else the tags model)",
    )
    p.add_argument(
        "--consistency",
        type=float,
        default=0.0,
        help="tags: weight of the agreement between two crops of one clip (0: off)",
    )
    p.add_argument(
        "--consistency-on",
        default="genre,quadrant",
        help="tags: the heads that agreement covers (genre, quadrant or both, comma-separated)",
    )
    p.add_argument(
        "--bidirectional",
        action="store_true",
        help="beats: train the offline bidirectional teacher (pseudo-labelling; never live)",
    )
    p.add_argument("--init", default=None, help="beats: start from this best.pt (fine-tune)")
    p.add_argument(
        "--pseudo", default=None, help="beats: add the pseudo-labelled recordings in this folder"
    )
    p.add_argument(
        "--pseudo-weight",
        type=float,
        default=1.0,
        help="beats: crop-sampling weight of the pseudo-labelled recordings (1: by length)",
    )
    p.add_argument(
        "--extra-renders",
        action="append",
        default=[],
        help="beats, bars: add the train split of another render folder (e.g. "
        "data/renders_heavy, rendered with --sets heavy); its valid split joins the validation "
        "set; repeatable",
    )
    p.add_argument(
        "--extra-weight",
        type=float,
        action="append",
        default=None,
        help="beats: crop-sampling weight of the --extra-renders items (1: by length); one for "
        "all folders, or one per --extra-renders in the same order",
    )
    p.add_argument(
        "--fof",
        default=None,
        help="beats: add the Frets-on-Fire songs of this folder (python -m onbeat.training.fof)",
    )
    p.add_argument(
        "--fof-hold-out",
        default="",
        help="beats: comma-separated name prefixes of Frets-on-Fire songs kept out of training "
        "(a cross-validation fold, e.g. sectoid)",
    )
    p.add_argument(
        "--fof-weight",
        type=float,
        default=1.0,
        help="beats: crop-sampling weight of the Frets-on-Fire songs (1: by length)",
    )
    p.add_argument(
        "--lmms",
        default=None,
        help="beats: add the train half of the LMMS demo songs of this folder "
        "(python -m onbeat.training.lmms)",
    )
    p.add_argument(
        "--lmms-weight",
        type=float,
        default=1.0,
        help="beats: crop-sampling weight of the LMMS songs (1: by length)",
    )
    p.add_argument(
        "--aug-copies",
        type=int,
        default=0,
        help="onsets: audio-augmented copies of each training recording (speed, room, mic, "
        "EQ, noise; written once to data/bock_aug)",
    )
    p.add_argument(
        "--aug-kind",
        choices=["full", "speed"],
        default="full",
        help="onsets: what the augmented copies change (full: speed and the microphone chain; "
        "speed: speed and level only)",
    )
    p.add_argument(
        "--final-from",
        default=None,
        help="onsets: train the final model on folds 0-4, stopping at the best epoch of this "
        "finished run's export and keeping its peak picking",
    )
    p.add_argument(
        "--layers", type=int, default=None, help="onsets, bars: stacked LSTM layers (2; bars 1)"
    )
    p.add_argument(
        "--labelled-only",
        action="store_true",
        help="bars: train on the labelled beats only, not also on the live tracker's beats",
    )
    p.add_argument(
        "--target-delay",
        type=int,
        default=0,
        help="onsets/beats: mark training events this many 10 ms frames late (the model hears "
        "that much of the event; the live stage declares it as latency)",
    )
    p.add_argument(
        "--keep-folds",
        action="store_true",
        help="tags: keep each CV fold's model in RUN_DIR/tags/foldK (with --steps 0: CV only)",
    )
    p.add_argument(
        "--keep-epochs",
        action="store_true",
        help="beats: also export every epoch to RUN_DIR/beats/epochs/NN",
    )
    p.add_argument(
        "--eq-augment",
        type=float,
        default=0.0,
        metavar="P_CUT",
        help="beats: a random equaliser on every training crop (tilt, bump, and in this share "
        "of the crops a high- or low-pass); 0: random gain only",
    )
    p.add_argument("-v", "--verbose", action="count", default=1)

    p = sub.add_parser("demo", help="play the built-in synthesized demo song")
    p.add_argument("--fast", action="store_true", help="as fast as possible, not real time")
    _common(p)

    from onbeat.realtime.library_cli import add_library_parser

    add_library_parser(sub)
    return parser


def _channels(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise ConfigError(f"--channels {text!r} must be comma-separated integers") from None


def config_from_args(args: argparse.Namespace) -> OnbeatConfig:
    """Build the configuration: defaults, then the TOML file, then explicit flags, then --set."""
    config = load_config(getattr(args, "config", None))
    flags: dict[str, Any] = {
        "audio.device": getattr(args, "device", None),
        "audio.channels": _channels(getattr(args, "channels", None)),
        "audio.block_size": args.block_size,
        "onset.threshold": args.threshold,
        "output.events_path": args.events,
        "output.console": False if args.no_console else None,
        "output.osc": tuple(args.osc) if args.osc else None,
        "output.osc_control": args.osc_control,
        "output.osc_allow": tuple(args.osc_allow) if args.osc_allow else None,
        "output.ws": args.ws,
        "output.link": args.link,
        "output.midi_clock": args.midi_clock,
    }
    config = apply_overrides(config, flags)
    config = apply_overrides(config, dict(parse_override(o) for o in args.overrides))
    if config.output.osc:
        # The tracker must issue beats early enough for the most latency-compensated target.
        from onbeat.realtime.osc import parse_osc_target, required_tracker_lead_ms

        lead_s = required_tracker_lead_ms([parse_osc_target(t) for t in config.output.osc]) / 1e3
        if lead_s > config.tracker.output_latency_s:
            config = apply_overrides(config, {"tracker.output_latency_s": lead_s})
    return config


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="onbeat: %(levelname)s: %(message)s", stream=sys.stderr)


def _sinks(config: OnbeatConfig) -> list[Any]:
    from onbeat.realtime.sinks import ConsoleSink, JsonlSink

    out = config.output
    sinks: list[Any] = []
    if out.events_path:
        sinks.append(JsonlSink(out.events_path))
    if out.console:
        sinks.append(ConsoleSink())
    if out.osc:
        from onbeat.realtime.osc import build_osc_sinks, parse_osc_target

        sinks += build_osc_sinks([parse_osc_target(t) for t in out.osc])
    if out.ws:
        from onbeat.realtime.websocket_sink import WebSocketSink, parse_ws_address

        sinks.append(WebSocketSink(parse_ws_address(out.ws)))
    if out.link is not None:
        from onbeat.realtime.link_sink import LinkSink, parse_link_options

        sinks.append(LinkSink(parse_link_options(out.link)))
    if out.midi_clock is not None:
        from onbeat.realtime.midi_clock import MidiClockSink, parse_midi_clock

        sinks.append(MidiClockSink(parse_midi_clock(out.midi_clock)))
    return sinks


def _run_engine(config: OnbeatConfig, run: Callable[[Any, threading.Event], Any]) -> Any:
    """Build the engine and its sinks, start OSC control if asked, run, always clean up."""
    from onbeat.realtime.engine import Engine

    sinks = _sinks(config)
    engine = Engine(config, sinks=sinks)
    control = None
    if config.output.osc_control:
        from onbeat.realtime.osc import OscControlServer, OscSink, parse_osc_control

        control = OscControlServer(
            parse_osc_control(config.output.osc_control, allow=config.output.osc_allow),
            engine.commands,
            sinks=[s for s in sinks if isinstance(s, OscSink)],
        ).start()
    try:
        return _run_interruptible(lambda stop: run(engine, stop))
    finally:
        if control is not None:
            control.close()
        engine.close_sinks()


def _run_interruptible(fn: Callable[[threading.Event], Any]) -> Any:
    """Run ``fn(stop)`` on an analysis thread; Ctrl-C sets ``stop`` and waits for a clean end.

    The main thread waits on an Event, not on ``Thread.join``: a join interrupted by Ctrl-C can
    leave the thread looking finished while it still runs (CPython issue 21822).
    """
    stop = threading.Event()
    done = threading.Event()
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn(stop)
        except BaseException as exc:  # re-raised in the main thread
            result["error"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=target, name="analysis", daemon=True)
    worker.start()
    while not done.is_set():
        try:
            done.wait(0.2)
        except KeyboardInterrupt:
            if not stop.is_set():
                stop.set()
                print(file=sys.stderr)
                log.warning("interrupted: closing the stream")
    if "error" in result:
        raise result["error"]
    return result["value"]


def _report(summary: Any) -> None:
    onsets = summary.counts.get("onset", 0)
    beats = summary.counts.get("beat", 0)
    print(
        f"onbeat: {summary.audio_s:.1f} s of audio analysed ({summary.reason}): {beats} beats, "
        f"{onsets} onsets, "
        f"CPU {100 * summary.cpu_per_audio_s:.2f} % of one core, xruns {summary.xruns}, "
        f"overflows {summary.overflows}, dropped events {summary.dropped}",
        file=sys.stderr,
    )


def _limit(source: Any, duration_s: float | None) -> Any:
    if duration_s is None:
        return source
    from onbeat.realtime.sources import ArraySource

    if isinstance(source, ArraySource):
        n = int(duration_s * source.sample_rate_hz)
        return ArraySource(source._x[:n], source.sample_rate_hz, source.name)
    x, sr = source.read_all()
    return ArraySource(x[: int(duration_s * sr)], sr, source.name)


def _play(config: OnbeatConfig, source: Any, *, fast: bool) -> int:
    if fast:
        summary = _run_engine(config, lambda engine, stop: engine.run_fast(source, stop=stop))
    else:
        summary = _run_engine(config, lambda engine, stop: engine.run_paced(source, stop=stop))
    _report(summary)
    return 0


def _demo_source(duration_s: float | None) -> Any:
    from onbeat.realtime.demo import demo_song
    from onbeat.realtime.sources import ArraySource

    song = demo_song(duration_s=duration_s or 20.0)
    return ArraySource(song.samples, song.sample_rate_hz, name="demo")


def cmd_devices(args: argparse.Namespace) -> int:
    """List input devices."""
    from onbeat.realtime.sources import list_input_devices

    devices = list_input_devices()
    if not devices:
        print("no audio input devices found")
        return 0
    print(f"{'idx':>3}  {'name':40}  {'host API':14}  {'ch':>3}  {'rate':>7}  latency")
    for d in devices:
        print(
            f"{d.index:>3}  {d.name[:40]:40}  {d.hostapi[:14]:14}  {d.max_input_channels:>3}  "
            f"{d.default_samplerate_hz:>7.0f}  {1000 * d.default_low_latency_s:.1f} ms"
        )
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    """Analyse a live input, or the demo song when no input device exists."""
    from onbeat.realtime.sources import LiveSource

    config = config_from_args(args)
    a = config.audio
    try:
        live = LiveSource(
            a.device,
            channels=a.channels,
            block_size=a.block_size,
            preferred_rate_hz=a.sample_rate_hz,
            latency_s=a.latency_s,
        )
    except DeviceError as exc:
        if a.device is not None:
            raise
        print(
            f"onbeat: no usable microphone ({exc}); playing the built-in demo instead",
            file=sys.stderr,
        )
        return _play(config, _demo_source(args.duration), fast=False)
    print(
        f"onbeat: listening to [{live.info.index}] {live.name} at {live.sample_rate_hz} Hz, "
        f"{live.channels} channel(s), block {a.block_size}",
        file=sys.stderr,
    )
    summary = _run_engine(
        config,
        lambda engine, stop: engine.run_live(live, stop=stop, max_duration_s=args.duration),
    )
    _report(summary)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay a file."""
    from onbeat.realtime.sources import FileSource

    config = config_from_args(args)
    source = FileSource(args.file)
    return _play(config, _limit(source, args.duration), fast=args.fast)


def cmd_demo(args: argparse.Namespace) -> int:
    """Play the synthesized demo song."""
    config = config_from_args(args)
    print("onbeat: playing the built-in demo song (120 BPM, synthesized)", file=sys.stderr)
    return _play(config, _demo_source(args.duration), fast=args.fast)


def cmd_eval(args: argparse.Namespace) -> int:
    """Score the streaming pipeline on annotated files."""
    from pathlib import Path

    from onbeat.realtime.evaluate import evaluate_dir, write_json, write_plot

    config = config_from_args(args)
    config = apply_overrides(config, {"output.console": False})
    if args.task == "tags":
        from onbeat.training.eval_tags import main_eval_tags

        return main_eval_tags(
            config,
            Path(args.directory),
            labels_path=Path(args.labels) if args.labels else None,
            teacher_dir=Path(args.teacher) if args.teacher else None,
            json_path=Path(args.json) if args.json else None,
            plot_path=Path(args.plot or "eval_tags.png"),
            live=args.live,
            transitions=args.transitions,
        )
    if args.task == "similarity":
        from onbeat.training.eval_similarity import main_eval_similarity

        return main_eval_similarity(
            Path(args.directory), json_path=Path(args.json) if args.json else None
        )
    results, mean = evaluate_dir(config, Path(args.directory), args.task)
    width = max(len(r.name) for r in results)
    keys = [k for k in mean if k not in ("files",)]
    print(f"{'file':{width}}  " + "  ".join(f"{k:>12}" for k in keys))
    for r in results:
        print(
            f"{r.name:{width}}  "
            + "  ".join(f"{r.metrics.get(k, float('nan')):12.4f}" for k in keys)
        )
    print(f"{'MEAN':{width}}  " + "  ".join(f"{mean[k]:12.4f}" for k in keys))
    plot = Path(args.plot or f"eval_{args.task}.png")
    write_plot(plot, args.task, results)
    print(f"onbeat: plot written to {plot}", file=sys.stderr)
    if args.json:
        write_json(Path(args.json), args.task, results, mean)
    return 0


def cmd_gui(args: argparse.Namespace) -> int:
    """Open the desktop visualizer."""
    from onbeat.gui.app import run

    return int(run(args))


def cmd_library(args: argparse.Namespace) -> int:
    """Index, list, remove and query reference tracks (``onbeat.realtime.library_cli``)."""
    from onbeat.realtime.library_cli import cmd_library as run_library

    return run_library(args)


def cmd_train(args: argparse.Namespace) -> int:
    """Train (or resume training) a model and export it."""
    from pathlib import Path

    from onbeat.models.registry import WEIGHTS_DIR
    from onbeat.training.tasks import main_train

    try:
        return main_train(
            args.task,
            epochs=args.epochs,
            steps=args.steps,
            run_root=Path(args.run_dir),
            export_dir=Path(args.export) if args.export else WEIGHTS_DIR,
            seed=args.seed,
            lr=args.lr,
            hidden=args.hidden,
            crop_frames=args.crop_frames,
            max_train=args.max_train,
            cv_steps=args.cv_steps,
            folds=args.folds,
            offbeat_weight=args.offbeat_weight,
            onset_weight=args.onset_weight,
            phase_weight=args.phase_weight,
            downbeat_weight=args.downbeat_weight,
            mixup=args.mixup,
            renders=args.renders,
            keep_folds=args.keep_folds,
            same_window=args.same_window,
            tag_weight=args.tag_weight,
            consistency=args.consistency,
            consistency_heads=tuple(h.strip() for h in args.consistency_on.split(",") if h.strip()),
            bidirectional=args.bidirectional,
            init=Path(args.init) if args.init else None,
            pseudo_dir=Path(args.pseudo) if args.pseudo else None,
            pseudo_weight=args.pseudo_weight,
            extra_renders=tuple(Path(d) for d in args.extra_renders),
            extra_weights=tuple(args.extra_weight or (1.0,)),
            aug_copies=args.aug_copies,
            aug_kind=args.aug_kind,
            final_from=Path(args.final_from) if args.final_from else None,
            layers=args.layers,
            labelled_only=args.labelled_only,
            target_delay=args.target_delay,
            trunk=Path(args.trunk) if args.trunk else None,
            fof_dir=Path(args.fof) if args.fof else None,
            fof_hold_out=tuple(h.strip() for h in args.fof_hold_out.split(",") if h.strip()),
            fof_weight=args.fof_weight,
            lmms_dir=Path(args.lmms) if args.lmms else None,
            lmms_weight=args.lmms_weight,
            keep_epochs=args.keep_epochs,
            eq_cut=args.eq_augment,
        )
    except (FileNotFoundError, ValueError) as exc:
        raise OnbeatError(str(exc)) from None


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "devices": cmd_devices,
    "live": cmd_live,
    "replay": cmd_replay,
    "demo": cmd_demo,
    "eval": cmd_eval,
    "train": cmd_train,
    "gui": cmd_gui,
    "library": cmd_library,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    _setup_logging(getattr(args, "verbose", 0))
    t0 = time.monotonic()
    try:
        return _COMMANDS[args.command](args)
    except OnbeatError as exc:
        print(f"onbeat: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    finally:
        log.debug("finished in %.2f s", time.monotonic() - t0)


if __name__ == "__main__":
    sys.exit(main())
