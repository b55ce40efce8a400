"""End-to-end latency: click into a PipeWire virtual microphone -> onbeat live -> OSC on loopback.

A private PipeWire session (``tests/pipewire_env.py``: null sink ``vsink`` remapped to the
source ``vmic``, graph at 44.1 kHz, quantum 256) carries a 120 BPM click track that this script
plays from its own PortAudio output stream. ``onbeat live --device pipewire`` runs in a
subprocess with an OSC target on loopback; a UDP socket in this script stamps every datagram
with ``time.monotonic()`` as it arrives.

Clock mapping (why absolute click times are known)
--------------------------------------------------
PortAudio's ALSA host API stamps its callbacks with ``CLOCK_MONOTONIC`` (checked on every run:
``time.monotonic() - currentTime`` in the callbacks, reported as "PortAudio clock offset").
The player's callback gives ``outputBufferDacTime``, the moment its first sample reaches the
sink, so click *k* enters ``vsink`` -- and, through the monitor in the same graph cycle,
``vmic`` -- at ``dac(block) + offset_in_block / rate``. That is the reference time of a click.
It is cross-checked with a second, independent chain: this script also records ``vmic`` with
its own input stream and finds every click in the recording; ``inputBufferAdcTime`` of the
block plus the click's offset gives the time the click was captured. The two agree to a
fraction of a millisecond ("DAC vs ADC time of the clicks" in the report). The issue's "device
round trip" (the click handed to the player callback until a capture callback delivers it,
about 30-40 ms) is reported too; it is not part of onbeat's latency, and the reference above
already excludes it, so nothing has to be subtracted: the error of a message is
``arrival - (click time in vmic - latency_ms)``, positive when late.

Runs (one onbeat process each, same PipeWire session):

* ``output latency 0``: the OSC target has ``latency_ms=0``; the tracker still predicts (there
  is no setting that issues beats on detection): it issues each beat ``SCHEDULING_MARGIN_MS``
  early and the sink sends it at its predicted time, mapped to the wall clock from the arrival
  of the events. The same run's ``/onbeat/onset`` messages are the "emit on detection" case: an
  onset is only known after it happened (the capture block, the hop, peak picking).
* ``output latency N`` (default 20 ms, a typical receiver and projector delay): the OSC target
  gets ``latency_ms=N`` and prediction sends each beat N ms before its predicted time, so that
  the receiver's output lands on the click. Its error is measured against ``click - N``.
  ``--latency-ms auto`` instead calibrates N as the median error of the first run, rounded.

The first ``--warmup`` seconds of clicks (the tracker locking) are not scored. A click counts
as received when a message arrives within half a beat of it.

Run: ``python benchmarks/bench_latency.py [--seconds 40] [--latency-ms auto|N] [--markdown]``.
Needs the PipeWire packages of ``.ci/install_system.sh``. Thread counts are pinned to 1.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from pipewire_env import PipeWireUnavailable, virtual_microphone

RATE_HZ = 44100  # onbeat's analysis rate: nothing is resampled anywhere
QUANTUM = 256
BPM = 120.0


# ---------------------------------------------------------------------------------- OSC side
class OscArrivals:
    """A UDP socket on loopback stamping every datagram with ``time.monotonic()`` on arrival."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.raw: list[tuple[float, bytes]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="osc-receiver", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        recv, now, raw = self.sock.recvfrom, time.monotonic, self.raw
        while not self._stop:
            try:
                data, _ = recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            raw.append((now(), data))

    def close(self) -> None:
        self._stop = True
        self._thread.join(1.0)
        self.sock.close()

    def times(self, address: str, args: tuple[Any, ...] | None = None) -> np.ndarray:
        """Arrival times of the messages to ``address`` (with exactly ``args``, if given)."""
        from pythonosc.osc_message import OscMessage

        out = []
        for t, data in self.raw:
            try:
                m = OscMessage(data)
            except Exception:
                continue
            if m.address == address and (args is None or tuple(m.params) == args):
                out.append(t)
        return np.asarray(out)


# ---------------------------------------------------------------------------------- audio side
@dataclass
class _Block:
    wall: float  # time.monotonic() in the callback
    pa_now: float  # PortAudio's currentTime
    pa_edge: float  # outputBufferDacTime / inputBufferAdcTime of the block's first sample
    first: int  # index of its first sample in the whole signal
    frames: int


def _to_wall(blocks: list[_Block], samples: np.ndarray) -> np.ndarray:
    """Monotonic time of each sample index, from the block that holds it (DAC or ADC time)."""
    firsts = np.array([b.first for b in blocks])
    out = np.empty(len(samples))
    for i, s in enumerate(samples):
        b = blocks[int(np.searchsorted(firsts, s, side="right")) - 1]
        out[i] = b.pa_edge + (b.wall - b.pa_now) + (s - b.first) / RATE_HZ
    return out


class ClickPlayer:
    """Plays a signal into the default sink (vsink) from a PortAudio callback; logs DAC times."""

    def __init__(self, samples: np.ndarray, block: int, latency_s: float) -> None:
        import sounddevice as sd

        self.x = samples
        self.pos = 0
        self.blocks: list[_Block] = []
        self.done = threading.Event()
        self.underflows = 0
        self.stream = sd.OutputStream(device="pipewire", samplerate=RATE_HZ, channels=1,
                                      blocksize=block, latency=latency_s, dtype="float32",
                                      callback=self._cb)  # fmt: skip

    def _cb(self, out: np.ndarray, frames: int, ti: Any, status: Any) -> None:
        wall = time.monotonic()
        if status.output_underflow:
            self.underflows += 1
        p = self.pos
        chunk = self.x[p : p + frames]
        out[: len(chunk), 0] = chunk
        out[len(chunk) :, 0] = 0.0
        self.blocks.append(_Block(wall, ti.currentTime, ti.outputBufferDacTime, p, frames))
        self.pos = p + frames
        if self.pos >= len(self.x):
            self.done.set()

    def play(self) -> None:
        self.stream.start()
        self.done.wait(len(self.x) / RATE_HZ + 10.0)
        time.sleep(0.3)
        self.stream.stop()
        self.stream.close()


class Recorder:
    """Records vmic from a PortAudio callback; logs ADC times (the cross-check of the clicks)."""

    def __init__(self, block: int, latency_s: float) -> None:
        import sounddevice as sd

        self.chunks: list[np.ndarray] = []
        self.n = 0
        self.blocks: list[_Block] = []
        self.overflows = 0
        self.stream = sd.InputStream(device="pipewire", samplerate=RATE_HZ, channels=1,
                                     blocksize=block, latency=latency_s, dtype="float32",
                                     callback=self._cb)  # fmt: skip
        self.stream.start()

    def _cb(self, indata: np.ndarray, frames: int, ti: Any, status: Any) -> None:
        wall = time.monotonic()
        if status.input_overflow:
            self.overflows += 1
        self.blocks.append(_Block(wall, ti.currentTime, ti.inputBufferAdcTime, self.n, frames))
        self.chunks.append(indata[:, 0].copy())
        self.n += frames

    def stop(self) -> None:
        self.stream.stop()
        self.stream.close()

    def click_samples(self, threshold: float, min_gap: int) -> np.ndarray:
        """Index of the first sample of each click (first crossing of ``threshold``)."""
        y = np.abs(np.concatenate(self.chunks)) if self.chunks else np.zeros(0)
        above = np.flatnonzero(y > threshold)
        if above.size == 0:
            return above
        keep = np.concatenate([[True], np.diff(above) > min_gap])
        return above[keep]


# ---------------------------------------------------------------------------------- one run
def _match(ref: np.ndarray, arrivals: np.ndarray, half_period_s: float) -> np.ndarray:
    """Error (arrival - ref) of the nearest arrival within half a period of each ref; NaN if none."""
    err = np.full(len(ref), np.nan)
    if arrivals.size == 0:
        return err
    for i, t in enumerate(ref):
        j = int(np.searchsorted(arrivals, t))
        cands = [arrivals[k] for k in (j - 1, j) if 0 <= k < arrivals.size]
        best = min(cands, key=lambda a: abs(a - t))
        if abs(best - t) < half_period_s:
            err[i] = best - t
    return err


def run_once(mic: Any, args: argparse.Namespace, latency_ms: float, tmp: Path) -> dict[str, Any]:
    """One onbeat process on vmic while the click track plays; errors per click (seconds)."""
    from onbeat.realtime.demo import click_track

    clicks = click_track(duration_s=args.seconds, bpm=BPM, sample_rate_hz=RATE_HZ, first_s=0.5)
    rx = OscArrivals()
    events = tmp / f"events-{latency_ms:g}.jsonl"
    target = f"127.0.0.1:{rx.port},latency_ms={latency_ms:g}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "onbeat", "live", "--device", mic.input_device,
         "--block-size", str(args.block), "--set", f"audio.latency_s={args.input_latency_s}",
         "--osc", target, "--events", str(events), "--no-console"],
        env={**mic.env, "PYTHONUNBUFFERED": "1"}, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    rec: Recorder | None = None
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        if "listening to" not in line:
            raise RuntimeError(f"onbeat live did not start: {line}{proc.stderr.read()}")
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline and (not events.exists() or events.stat().st_size < 200):
            time.sleep(0.05)
        rec = Recorder(args.block, args.input_latency_s)
        time.sleep(0.5)
        player = ClickPlayer(clicks.samples, args.block, args.output_latency_s)
        player.play()
        time.sleep(0.5)
    finally:
        if rec is not None:
            rec.stop()
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        rx.close()
    starts = np.round(clicks.beats_s * RATE_HZ).astype(int)
    t_click = _to_wall(player.blocks, starts)
    offsets = [b.wall - b.pa_now for b in player.blocks]
    # cross-check: the same clicks found in this script's own recording of vmic
    found = rec.click_samples(0.3 * 0.5 * 0.5, int(0.25 * RATE_HZ))
    t_adc = _to_wall(rec.blocks, found)
    dac_vs_adc = _match(t_click, t_adc, 0.25)
    cb_first = np.array([b.first for b in player.blocks])
    cb_wall = np.array([b.wall for b in player.blocks])
    handed = cb_wall[np.searchsorted(cb_first, starts, side="right") - 1]
    rec_first = np.array([b.first for b in rec.blocks])
    rec_wall = np.array([b.wall for b in rec.blocks])
    delivered = rec_wall[np.searchsorted(rec_first, found, side="right") - 1]
    round_trip = _match(handed, delivered, 0.25)

    scored = clicks.beats_s >= args.warmup
    half = 30.0 / BPM
    due = t_click[scored] - latency_ms * 1e-3  # when the message should arrive
    beat_err = _match(due, rx.times("/onbeat/beat", (1,)), half)
    onset_err = _match(t_click[scored], rx.times("/onbeat/onset"), half)
    ev = [json.loads(x) for x in events.read_text().splitlines()] if events.exists() else []
    health = [e for e in ev if e["type"] == "health"]
    return {
        "latency_ms": latency_ms,
        "beat_err": beat_err,
        "onset_err": onset_err,
        "expected": int(scored.sum()),
        "dac_vs_adc_ms": float(np.nanmedian(np.abs(dac_vs_adc)) * 1e3),
        "dac_vs_adc_max_ms": float(np.nanmax(np.abs(dac_vs_adc)) * 1e3),
        "round_trip_ms": float(np.nanmedian(round_trip) * 1e3),
        "pa_clock_offset_ms": float(np.median(offsets) * 1e3),
        "xruns": health[-1]["xruns"] if health else -1,
        "underflows": player.underflows,
        "returncode": proc.returncode,
        "stderr_tail": err[-400:],
    }


# ---------------------------------------------------------------------------------- report
def _row(name: str, latency: str, err: np.ndarray, expected: int) -> list[str]:
    got = err[np.isfinite(err)] * 1e3
    if got.size == 0:
        return [name, latency, "n/a", "n/a", "n/a", "n/a", f"0/{expected}"]
    return [
        name,
        latency,
        f"{np.median(got):+.1f}",
        f"{np.percentile(got, 90):+.1f}",
        f"{np.percentile(got, 99):+.1f}",
        f"{np.median(np.abs(got)):.1f}",
        f"{got.size}/{expected}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=40.0, help="length of the click track")
    ap.add_argument("--warmup", type=float, default=5.0, help="clicks before this are not scored")
    ap.add_argument("--block", type=int, default=256, help="audio block (onbeat and player)")
    ap.add_argument("--input-latency-s", type=float, default=0.05, help="onbeat audio.latency_s")
    ap.add_argument("--output-latency-s", type=float, default=0.02, help="the player's buffer")
    ap.add_argument("--latency-ms", default="20",
                    help="OSC latency_ms of the second run; auto: the median error at 0")  # fmt: skip
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()

    try:
        cm = virtual_microphone(RATE_HZ, quantum=QUANTUM)
        mic = cm.__enter__()
    except PipeWireUnavailable as exc:
        sys.exit(f"PipeWire cannot start here: {exc}")
    try:
        with tempfile.TemporaryDirectory(prefix="onbeat-lat-") as d:
            first = run_once(mic, args, 0.0, Path(d))
            got = first["beat_err"][np.isfinite(first["beat_err"])]
            if args.latency_ms == "auto":
                comp = float(max(0.0, round(float(np.median(got)) * 1e3))) if got.size else 0.0
            else:
                comp = float(args.latency_ms)
            second = run_once(mic, args, comp, Path(d))
    finally:
        cm.__exit__(None, None, None)

    head = ["messages", "OSC latency_ms", "median ms", "p90 ms", "p99 ms", "median abs ms",
            "received / expected"]  # fmt: skip
    rows = [
        _row("/onbeat/onset (detection)", "0", first["onset_err"], first["expected"]),
        _row("/onbeat/beat (prediction)", "0", first["beat_err"], first["expected"]),
        _row("/onbeat/beat (prediction)", f"{comp:g}", second["beat_err"], second["expected"]),
    ]
    title = (
        f"End-to-end latency: OSC arrival - (click entering vmic - latency_ms), positive = late; "
        f"{args.seconds:g} s click track at {BPM:g} BPM, {RATE_HZ} Hz, block {args.block}, "
        f"PipeWire quantum {QUANTUM}, first {args.warmup:g} s not scored"
    )
    if args.markdown:
        print(title + "\n")
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        print(title)
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    print()
    for run in (first, second):
        print(
            f"run latency_ms={run['latency_ms']:g}: DAC vs ADC time of the clicks "
            f"{run['dac_vs_adc_ms']:.2f} ms median (max {run['dac_vs_adc_max_ms']:.2f}); "
            f"device round trip (player callback -> capture callback) "
            f"{run['round_trip_ms']:.1f} ms; PortAudio clock offset {run['pa_clock_offset_ms']:.3f} "
            f"ms; onbeat xruns {run['xruns']}, player underflows {run['underflows']}, "
            f"exit {run['returncode']}"
        )
        if run["returncode"] != 0:
            print(run["stderr_tail"])


if __name__ == "__main__":
    main()
