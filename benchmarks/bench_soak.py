"""Soak: a long replay at real-time pace through every sink at once, with real receivers.

A generated band loop (``demo_song``, 118 s: a whole number of bars, so the loop is seamless,
with an 8 s break) is replayed in a loop for ``--minutes`` at real-time pace
(``Engine.run_paced``, the player thread standing in for the audio driver) into these sinks:

* JSON Lines to a file and the console line (to ``/dev/null``);
* three OSC targets on loopback (``flat`` and ``rich`` with the phase at 100 Hz, ``resolume``;
  one with ``latency_ms=20``), each to its own UDP socket;
* the WebSocket server with one client;
* MIDI clock on a JACK virtual port with a receiver connected (``--midi auto``: only when a
  JACK server already runs; ``--midi jack`` starts a private ``jackd -d dummy`` server).

All receivers run in a child process, so that the CPU and memory reported are onbeat's.

Checks (the issue's reliability targets):

* No loss between the bus and each sink: every event the bus published reached each sink (its
  counter equals the bus's), the JSON Lines file and the WebSocket client hold the same ordered
  sequence of events as the bus (count and a running BLAKE2 digest of type, sample index and
  emission time: a missing, duplicated or reordered event changes it), and every OSC message a
  sink sent arrived at its socket (per address). MIDI: clocks sent vs received.
* Memory: RSS before the run, once warm (after ``--warm-s``), at the end (the last sample, at
  most 2 s before the stream ends), after the sinks closed; growth = end - warm (target
  <= 20 MB).
* CPU per second of audio: the analysis thread, the sink threads, and the whole process (which
  includes the paced player thread).
* Events dropped by the bus (drop-oldest queues): 0.

Run: ``python benchmarks/bench_soak.py [--minutes 30] [--midi auto|jack|off] [--markdown]``.
Thread counts are pinned to 1. ``soak()`` is also used by ``tests/test_soak.py`` (20 s).
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # not when tests/test_soak.py imports soak() into pytest
    for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[_v] = "1"

import argparse
import hashlib
import json
import multiprocessing as mp
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from onbeat.realtime.midi_clock import jack_running


def _key(kind: str, sample_index: int, emitted_s: float) -> bytes:
    return f"{kind}|{sample_index}|{emitted_s!r}\n".encode()


# ---------------------------------------------------------------------------------- receivers
def _receivers(conn: Any) -> None:
    """Child process: UDP sockets for the OSC targets, a WebSocket client, a MIDI input."""
    socks = []
    for _ in range(3):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.2)
        socks.append(s)
    conn.send([s.getsockname()[1] for s in socks])
    stop = threading.Event()
    udp: list[Counter[str]] = [Counter() for _ in socks]

    def udp_loop(sock: socket.socket, counts: Counter[str]) -> None:
        while not stop.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            counts[data[: data.find(b"\0")].decode(errors="replace")] += 1

    threads = [
        threading.Thread(target=udp_loop, args=a, daemon=True) for a in zip(socks, udp, strict=True)
    ]
    for t in threads:
        t.start()
    ws_port, midi_port = conn.recv()
    ws_state: dict[str, Any] = {"n": 0, "types": Counter(), "digest": hashlib.blake2b()}
    from websockets.sync.client import connect

    ws = connect(f"ws://127.0.0.1:{ws_port}", max_size=None, compression=None)

    def ws_loop() -> None:
        try:
            for text in ws:
                d = json.loads(text)
                ws_state["n"] += 1
                ws_state["types"][d["type"]] += 1
                ws_state["digest"].update(_key(d["type"], d["sample_index"], d["emitted_s"]))
        except Exception:  # the server closed: the end of the run
            return

    ws_thread = threading.Thread(target=ws_loop, daemon=True)
    ws_thread.start()
    midi: Counter[str] = Counter()
    midi_thread = None
    if midi_port:
        # python-rtmidi without a callback: JACK's process thread only fills rtmidi's C++ queue
        # and never waits for this process's GIL (a Python callback there can be late enough
        # on a loaded machine for JACK to skip the client)
        import rtmidi

        midi_in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, "onbeat-soak-rx", queue_size_limit=1 << 16)
        midi_in.ignore_types(sysex=True, timing=False, active_sense=True)
        midi_in.open_port([p.endswith(midi_port) for p in midi_in.get_ports()].index(True))
        kinds = {0xF8: "clock", 0xFA: "start", 0xFB: "continue", 0xFC: "stop", 0xF2: "songpos"}

        def midi_loop() -> None:
            while True:
                msg = midi_in.get_message()
                if msg is not None:
                    midi[kinds.get(msg[0][0], "other")] += 1
                elif stop.is_set():
                    midi_in.close_port()
                    return
                else:
                    time.sleep(0.002)

        midi_thread = threading.Thread(target=midi_loop, daemon=True)
        midi_thread.start()
    conn.send("ready")
    conn.recv()  # the run is over
    time.sleep(1.0)
    stop.set()
    ws.close()
    ws_thread.join(5.0)
    for t in threads:
        t.join(1.0)
    if midi_thread is not None:
        midi_thread.join(5.0)
    conn.send(
        {
            "udp": [dict(c) for c in udp],
            "ws_n": ws_state["n"],
            "ws_types": dict(ws_state["types"]),
            "ws_digest": ws_state["digest"].hexdigest(),
            "midi": dict(midi),
        }
    )


# ---------------------------------------------------------------------------------- parent side
class DigestSink:
    """Counts and digests every event, in bus order (the reference for the other sinks)."""

    name = "digest"

    def __init__(self) -> None:
        self.n = 0
        self.types: Counter[str] = Counter()
        self.digest = hashlib.blake2b()

    def handle(self, event: Any) -> None:
        self.n += 1
        self.types[event.type] += 1
        self.digest.update(_key(event.type, event.sample_index, event.emitted_s))

    def tick(self) -> None:
        pass

    def close(self) -> None:
        pass


def _loop_source(minutes: float) -> Any:
    from onbeat.realtime.demo import demo_song
    from onbeat.realtime.sources import BlockSource

    song = demo_song(duration_s=119.0, bpm=120.0, seed=7, break_span_s=(60.5, 68.5))
    sr = song.sample_rate_hz
    loop = np.ascontiguousarray(song.samples[int(0.5 * sr) : int(118.5 * sr), None])

    class LoopSource(BlockSource):
        """``loop`` repeated to ``minutes`` (block sizes regular; ``irregular_seed`` ignored)."""

        name = "soak-loop"
        sample_rate_hz = sr
        channels = 1
        frames = int(minutes * 60.0 * sr)

        def blocks(self, block_size: int, *, irregular_seed: int | None = None) -> Iterator[Any]:
            buf = np.empty((block_size, 1), np.float32)
            n_loop = loop.shape[0]
            i = 0
            while i < self.frames:
                n = min(block_size, self.frames - i)
                j = i % n_loop
                if j + n <= n_loop:
                    yield loop[j : j + n]
                else:
                    k = n_loop - j
                    buf[:k] = loop[j:]
                    buf[k:n] = loop[: n - k]
                    yield buf[:n]
                i += n

    return LoopSource()


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _thread_cpu_s() -> dict[str, float]:
    """CPU seconds of the live Python threads, summed by name (from /proc/self/task)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for t in threading.enumerate():
        try:
            with open(f"/proc/self/task/{t.native_id}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, TypeError):
            continue
        out[t.name] = out.get(t.name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


class Monitor(threading.Thread):
    """Samples RSS and the CPU of every thread every ``period_s`` (keeps the last value)."""

    def __init__(self, warm_s: float, period_s: float = 2.0) -> None:
        super().__init__(name="soak-monitor", daemon=True)
        self.warm_s = warm_s
        self.period_s = period_s
        self.t0 = time.monotonic()
        self.rss_warm = float("nan")
        self.rss_peak = 0.0
        self.rss_last = float("nan")
        self.cpu: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.period_s):
            self.sample()

    def sample(self) -> None:
        rss = _rss_mb()
        self.rss_peak = max(self.rss_peak, rss)
        self.rss_last = rss
        if np.isnan(self.rss_warm) and time.monotonic() - self.t0 >= self.warm_s:
            self.rss_warm = rss
        self.cpu.update(_thread_cpu_s())


def _start_jack() -> subprocess.Popen[str] | None:
    """A private JACK server (dummy driver) that this process's JACK clients use."""
    jackd = shutil.which("jackd")
    if jackd is None:
        return None
    name = f"onbeat-soak-{os.getpid()}"
    os.environ["JACK_DEFAULT_SERVER"] = name  # inherited by the receiver process
    proc = subprocess.Popen(
        [jackd, "-n", name, "--no-realtime", "-d", "dummy", "-r", "48000", "-p", "256"],
        env={**os.environ, "JACK_NO_AUDIO_RESERVATION": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10.0
    while not jack_running():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait(5)
            del os.environ["JACK_DEFAULT_SERVER"]
            return None
        time.sleep(0.1)
    return proc


def soak(minutes: float, *, midi: str = "auto", warm_s: float = 60.0) -> dict[str, Any]:
    """Run the soak; returns the measurements (see the module docstring)."""
    from onbeat.realtime.config import OnbeatConfig, apply_overrides
    from onbeat.realtime.engine import Engine
    from onbeat.realtime.errors import OnbeatError
    from onbeat.realtime.osc import OscSink, OscTarget, required_tracker_lead_ms
    from onbeat.realtime.sinks import ConsoleSink, JsonlSink
    from onbeat.realtime.websocket_sink import WebSocketConfig, WebSocketSink

    os.environ["JACK_NO_START_SERVER"] = "1"
    jack = _start_jack() if midi == "jack" else None
    use_midi = midi != "off" and jack_running()

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    rx = ctx.Process(target=_receivers, args=(child,), daemon=True)
    rx.start()
    ports = parent.recv()
    tmp = Path(tempfile.mkdtemp(prefix="onbeat-soak-"))
    devnull = open(os.devnull, "w")  # closed below
    sinks: list[Any] = []
    try:
        targets = [
            OscTarget("127.0.0.1", ports[0], profile="flat", phase_rate_hz=100.0, name="flat"),
            OscTarget("127.0.0.1", ports[1], profile="rich", phase_rate_hz=100.0, name="rich",
                      output_latency_ms=20.0),
            OscTarget("127.0.0.1", ports[2], profile="resolume", name="resolume"),
        ]  # fmt: skip
        osc = [OscSink(t, name=f"osc:{t.name}") for t in targets]
        ws = WebSocketSink(WebSocketConfig(port=0))
        jsonl = JsonlSink(tmp / "events.jsonl")
        digest = DigestSink()
        sinks = [jsonl, ConsoleSink(stream=devnull), *osc, ws, digest]
        midi_sink = None
        midi_name = ""
        if use_midi:
            from onbeat.realtime.midi_clock import MidiClockConfig, MidiClockSink

            cfg = MidiClockConfig(api="jack", virtual_name=f"soak-{os.getpid()}")
            try:
                midi_sink = MidiClockSink(cfg)
                midi_name = midi_sink.port_name
                sinks.append(midi_sink)
            except OnbeatError:
                midi_sink = None
        parent.send((ws.port, midi_name))
        assert parent.recv() == "ready"
        deadline = time.monotonic() + 10.0
        while ws.clients < 1 and time.monotonic() < deadline:
            time.sleep(0.01)

        lead_s = required_tracker_lead_ms(targets) / 1e3
        config = apply_overrides(OnbeatConfig(), {"tracker.output_latency_s": lead_s})
        engine = Engine(config, sinks=sinks)
        source = _loop_source(minutes)
        rss_start = _rss_mb()
        monitor = Monitor(warm_s)
        monitor.start()
        c0 = time.process_time()
        summary = engine.run_paced(source)  # closes the sinks at the end
        sinks = []
        cpu_process = time.process_time() - c0
        monitor.stop.set()
        monitor.join()
        rss_after = _rss_mb()
        parent.send("stop")
        got = parent.recv()
    finally:
        for s in sinks:
            s.close()
        devnull.close()
        rx.join(10.0)
        if rx.is_alive():
            rx.kill()
        if jack is not None:
            jack.send_signal(signal.SIGTERM)
            try:
                jack.wait(5)
            except subprocess.TimeoutExpired:
                jack.kill()
                jack.wait(5)
            os.environ.pop("JACK_DEFAULT_SERVER", None)

    # the JSON Lines file, in the same terms as the bus
    file_digest = hashlib.blake2b()
    file_n = 0
    with open(tmp / "events.jsonl", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            file_n += 1
            file_digest.update(_key(d["type"], d["sample_index"], d["emitted_s"]))
    shutil.rmtree(tmp, ignore_errors=True)

    published = engine.bus.published
    ref = digest.digest.hexdigest()
    rows: list[dict[str, Any]] = [
        {"sink": "bus (reference)", "in": published, "sent": digest.n, "received": digest.n,
         "ok": digest.n == published, "note": ""},
        {"sink": "jsonl file", "in": jsonl.written, "sent": jsonl.written, "received": file_n,
         "ok": file_n == published and file_digest.hexdigest() == ref, "note": "same sequence"
         if file_digest.hexdigest() == ref else "SEQUENCE DIFFERS"},
        {"sink": "websocket client", "in": published, "sent": ws.sent, "received": got["ws_n"],
         "ok": got["ws_n"] == published and got["ws_digest"] == ref and ws.dropped_clients == 0,
         "note": ("same sequence" if got["ws_digest"] == ref else "SEQUENCE DIFFERS")
         + f", {ws.dropped_clients} client(s) dropped"},
    ]  # fmt: skip
    osc_sent_total = 0
    for sink, counts in zip(osc, got["udp"], strict=True):
        sent = sum(sink.sent.values())
        osc_sent_total += sent
        received = sum(counts.values())
        per_address_ok = dict(sink.sent) == counts
        rows.append(
            {
                "sink": sink.name,
                "in": sink.handled,
                "sent": sent,
                "received": received,
                "ok": sink.handled == published
                and per_address_ok
                and sink.dropped_events == 0
                and sink.dropped == 0
                and sink.errors == 0,
                "note": f"errors {sink.errors}, dropped {sink.dropped + sink.dropped_events}, "
                f"late beats {sink.late_beats}",
            }
        )
    if midi_sink is not None:
        m = got["midi"]
        rx_clocks = m.get("clock", 0)
        rows.append(
            {
                "sink": "midi clock (JACK)",
                "in": published,
                "sent": midi_sink.clocks,
                "received": rx_clocks,
                "ok": rx_clocks == midi_sink.clocks and midi_sink.errors == 0,
                "note": f"errors {midi_sink.errors}, dropped {midi_sink.dropped}; "
                f"start/continue/stop sent {midi_sink.starts}/{midi_sink.continues}/"
                f"{midi_sink.stops}, received {m.get('start', 0)}/{m.get('continue', 0)}/"
                f"{m.get('stop', 0)}",
            }
        )
    sink_threads = {
        k: v
        for k, v in monitor.cpu.items()
        if k.startswith(("sink-", "osc:")) and not k.startswith("sink-digest")
    }
    audio_s = summary.audio_s
    return {
        "minutes": minutes,
        "audio_s": audio_s,
        "wall_s": summary.wall_s,
        "events": published,
        "event_types": dict(digest.types),
        "bus_dropped": summary.dropped,
        "xruns": summary.xruns,
        "overflows": summary.overflows,
        "rows": rows,
        "rss_start_mb": rss_start,
        "rss_warm_mb": monitor.rss_warm,
        "rss_end_mb": monitor.rss_last,
        "rss_after_mb": rss_after,
        "rss_peak_mb": monitor.rss_peak,
        "rss_growth_mb": monitor.rss_last - monitor.rss_warm,
        "cpu_analysis_per_s": summary.cpu_per_audio_s,
        "cpu_sinks_per_s": sum(sink_threads.values()) / audio_s,
        "cpu_sink_threads": {k: v / audio_s for k, v in sorted(sink_threads.items())},
        "cpu_process_per_s": cpu_process / audio_s,
        "osc_messages_per_s": osc_sent_total / summary.wall_s,
        "midi": "jack" if midi_sink is not None else "not available",
    }


def report(r: dict[str, Any], markdown: bool) -> str:
    lines = []
    title = (
        f"Soak: {r['audio_s'] / 60:.1f} min of audio at real-time pace (wall {r['wall_s']:.0f} s), "
        f"{r['events']} events, every sink at once (MIDI clock: {r['midi']})"
    )
    head = ["sink", "events in", "messages sent", "received", "lost", "ok", "notes"]
    body = [
        [x["sink"], str(x["in"]), str(x["sent"]), str(x["received"]),
         str(x["sent"] - x["received"]), "yes" if x["ok"] else "NO", x["note"]]
        for x in r["rows"]
    ]  # fmt: skip
    head2 = ["measure", "value", "target"]
    body2 = [
        ["RSS before / warm / end / peak / after close",
         f"{r['rss_start_mb']:.1f} / {r['rss_warm_mb']:.1f} / {r['rss_end_mb']:.1f} / "
         f"{r['rss_peak_mb']:.1f} / {r['rss_after_mb']:.1f} MB", ""],
        ["RSS growth (end - warm)", f"{r['rss_growth_mb']:+.1f} MB", "<= 20 MB"],
        ["events dropped by the bus", str(r["bus_dropped"]), "0"],
        ["xruns / ring overflows", f"{r['xruns']} / {r['overflows']}", "0"],
        ["CPU per s of audio: analysis thread", f"{r['cpu_analysis_per_s']:.4f} s", ""],
        ["CPU per s of audio: sink threads", f"{r['cpu_sinks_per_s']:.4f} s", ""],
        ["CPU per s of audio: whole process", f"{r['cpu_process_per_s']:.4f} s", ""],
        ["OSC messages per s (3 targets, phase at 100 Hz)", f"{r['osc_messages_per_s']:.0f}", ""],
    ]  # fmt: skip
    for k, v in r["cpu_sink_threads"].items():
        body2.append([f"  thread {k}", f"{v:.4f} s per s", ""])
    if markdown:
        lines.append(title + "\n")
        for h, b in ((head, body), (head2, body2)):
            lines.append("| " + " | ".join(h) + " |")
            lines.append("|" + "---|" * len(h))
            lines += ["| " + " | ".join(row) + " |" for row in b]
            lines.append("")
    else:
        lines.append(title)
        for h, b in ((head, body), (head2, body2)):
            widths = [max(len(c), *(len(row[i]) for row in b)) for i, c in enumerate(h)]
            lines.append("  ".join(c.ljust(w) for c, w in zip(h, widths, strict=True)))
            lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in b]
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="audio to replay (real time)")
    ap.add_argument("--midi", choices=("auto", "jack", "off"), default="auto",
                    help="MIDI clock: auto (a running JACK server), jack (a private one), off")  # fmt: skip
    ap.add_argument("--warm-s", type=float, default=60.0, help="RSS baseline after this long")
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = ap.parse_args()
    r = soak(args.minutes, midi=args.midi, warm_s=min(args.warm_s, args.minutes * 60.0 / 2))
    print(report(r, args.markdown))
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))
    ok = all(x["ok"] for x in r["rows"]) and r["bus_dropped"] == 0 and r["rss_growth_mb"] <= 20.0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
