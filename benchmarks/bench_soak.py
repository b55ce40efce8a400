"""Soak: a long replay at real-time pace through every sink at once, with real receivers.

A generated band loop (``demo_song``, 118 s: a whole number of bars, so the loop is seamless,
with an 8 s break) is replayed in a loop for ``--minutes`` at real-time pace
(``Engine.run_paced``, the player thread standing in for the audio driver) into these sinks:

* JSON Lines to a file and the console line (to ``/dev/null``);
* three OSC targets on loopback (``flat`` and ``rich`` with the phase at 100 Hz, ``resolume``;
  one with ``latency_ms=20``), each to its own UDP socket;
* the WebSocket server with one client;
* MIDI clock on a JACK virtual port with a receiver connected (``--midi auto``: only when a
  JACK server already runs; ``--midi jack`` starts a private ``jackd -d dummy`` server);
* Ableton Link (``LinkSink``, default ``LinkConfig``) with an observer peer (``--link auto``: when
  aalink imports and a private network namespace can be made; ``on``: fail otherwise).

All receivers run in a child process, so that the CPU and memory reported are onbeat's.

Link discovers peers by multicast on every interface that is up, so with Link the whole soak
first moves into a private network namespace with only loopback up (``tests/netns.py``), before
any socket exists: OSC and WebSocket on loopback work there as before, the receiver child
(``multiprocessing`` ``spawn``: fork and exec from this thread) and ``jackd`` inherit it, and
JACK's own sockets are file-system Unix sockets, which no network namespace confines. The
observer peer (quantum 4) starts in the receiver child 1.5 s after onbeat's peer, so it joins
onbeat's session (Link keeps the older one) rather than onbeat joining it, and samples the
session (peers, tempo, beat) at about 20 Hz.

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
* Link: the observer saw exactly one peer from discovery to the end of the stream (no drops),
  the sink's ``errors`` and dropped events are 0, its thread is alive at the end of the stream,
  the controller saw no peer change (the observer changes nothing), and while the controller
  leads (tracker locked and sure; from ``LEAD_GRACE_S`` after it starts to) the session tempo
  the observer sees is within ``TEMPO_AGREE_PCT`` of the tracker's BPM (the BPM of a beat or
  tempo event the receiver got over the WebSocket in the ``BPM_LAG_S`` before the sample, or
  the last one before it: a change of the music takes up to ``LinkController``'s commit
  interval to reach the session). The controller's state changes are recorded by wrapping its
  ``_set_state`` (no polling thread: the CPU figures stay onbeat's).

Run: ``python benchmarks/bench_soak.py [--minutes 30] [--midi auto|jack|off]
[--link auto|on|off] [--markdown]``.
Thread counts are pinned to 1. ``soak()`` is also used by ``tests/test_soak.py`` (20 s).
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # not when tests/test_soak.py imports soak() into pytest
    for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[_v] = "1"

import argparse
import asyncio
import hashlib
import json
import multiprocessing as mp
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from onbeat.realtime.jack_server import DummyJackServer, JackUnavailable
from onbeat.realtime.midi_clock import jack_running

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import netns

#: The session tempo must be within this of the tracker's BPM while onbeat leads (%).
TEMPO_AGREE_PCT = 1.0
#: Samples this soon after the controller starts to lead are not compared (s).
LEAD_GRACE_S = 1.0
#: A tracker BPM that arrived up to this long before a sample still counts (s).
BPM_LAG_S = 1.0
#: onbeat's peer runs this long before the observer starts, so its session is the older one.
OBSERVER_DELAY_S = 1.5
OBSERVER_BPM = 100.0
OBSERVER_HZ = 20.0
DISCOVERY_TIMEOUT_S = 15.0


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
    conn.send(([s.getsockname()[1] for s in socks], netns.network_namespace_id()))
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
    ws_port, midi_port, use_link = conn.recv()
    ws_state: dict[str, Any] = {"n": 0, "types": Counter(), "digest": hashlib.blake2b()}
    bpms: list[tuple[float, float]] = []  # arrival (time.monotonic), BPM of beat/tempo events
    from websockets.sync.client import connect

    ws = connect(f"ws://127.0.0.1:{ws_port}", max_size=None, compression=None)

    def ws_loop() -> None:
        try:
            for text in ws:
                d = json.loads(text)
                ws_state["n"] += 1
                ws_state["types"][d["type"]] += 1
                ws_state["digest"].update(_key(d["type"], d["sample_index"], d["emitted_s"]))
                if d["type"] in ("beat", "tempo") and d.get("bpm"):
                    bpms.append((time.monotonic(), float(d["bpm"])))
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
    link_state: dict[str, Any] = {"samples": [], "discovered_at": None, "error": ""}
    link_thread = None
    if use_link:
        discovered = threading.Event()
        link_thread = threading.Thread(
            target=_observer, args=(link_state, discovered, stop), daemon=True
        )
        link_thread.start()
        discovered.wait(DISCOVERY_TIMEOUT_S + 5.0)
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
    if link_thread is not None:
        link_thread.join(5.0)
    conn.send(
        {
            "udp": [dict(c) for c in udp],
            "ws_n": ws_state["n"],
            "ws_types": dict(ws_state["types"]),
            "ws_digest": ws_state["digest"].hexdigest(),
            "midi": dict(midi),
            "bpms": bpms,
            "link": link_state,
        }
    )


def _observer(state: dict[str, Any], discovered: threading.Event, stop: threading.Event) -> None:
    """Receiver child: an aalink peer that only watches the session.

    Parameters
    ----------
    state : dict
        Filled in: ``samples`` (``time.monotonic``, peers, tempo, beat at quantum 4) at about
        ``OBSERVER_HZ``, ``discovered_at`` (when it first saw a peer, or None) and ``error``.
    discovered : threading.Event
        Set once a peer was seen (or discovery timed out, or the peer failed).
    stop : threading.Event
        Ends the sampling.
    """

    async def main() -> None:
        from aalink import Link

        link = Link(OBSERVER_BPM)
        link.quantum = 4
        link.enabled = True
        samples = state["samples"]
        t0 = time.monotonic()
        period_s = 1.0 / OBSERVER_HZ
        try:
            while not stop.is_set():
                now = time.monotonic()
                peers = int(link.num_peers)
                samples.append((now, peers, float(link.tempo), float(link.beat)))
                if not discovered.is_set() and (peers > 0 or now - t0 > DISCOVERY_TIMEOUT_S):
                    state["discovered_at"] = now if peers > 0 else None
                    discovered.set()
                await asyncio.sleep(period_s)
        finally:
            link.enabled = False

    try:
        asyncio.run(main())
    except Exception as exc:
        state["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        discovered.set()


# ---------------------------------------------------------------------------------- parent side
class DigestSink:
    """Counts and digests every event, in bus order (the reference for the other sinks).

    Parameters
    ----------
    link : LinkSink or None
        Whose thread is checked when the stream ends.

    Attributes
    ----------
    end_at : float
        ``time.monotonic`` when the stream's end event arrived (NaN before).
    link_alive_at_end : bool or None
        ``link.alive`` then (None without ``link``).
    """

    name = "digest"

    def __init__(self, link: Any = None) -> None:
        self.n = 0
        self.types: Counter[str] = Counter()
        self.digest = hashlib.blake2b()
        self.link = link
        self.end_at = float("nan")
        self.link_alive_at_end: bool | None = None

    def handle(self, event: Any) -> None:
        self.n += 1
        self.types[event.type] += 1
        self.digest.update(_key(event.type, event.sample_index, event.emitted_s))
        if event.type == "end":
            self.end_at = time.monotonic()
            if self.link is not None:
                self.link_alive_at_end = bool(self.link.alive)

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


def _task_cpu_s(tid: Any) -> float | None:
    """CPU seconds of one thread of this process (None when it is gone)."""
    try:
        with open(f"/proc/self/task/{tid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _thread_cpu_s() -> dict[str, float]:
    """CPU seconds of the live Python threads, summed by name (from /proc/self/task), and of
    Ableton Link's native threads (named ``Link ...``) as ``native:Link ...``."""
    out: dict[str, float] = {}
    for t in threading.enumerate():
        cpu = _task_cpu_s(t.native_id)
        if cpu is not None:
            out[t.name] = out.get(t.name, 0.0) + cpu
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as fh:
                comm = fh.read().strip()
        except OSError:
            continue
        cpu = _task_cpu_s(tid) if comm.startswith("Link") else None
        if cpu is not None:
            out[f"native:{comm}"] = out.get(f"native:{comm}", 0.0) + cpu
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


def _start_jack(realtime: str) -> DummyJackServer | None:
    """A private JACK server (dummy driver) that this process's JACK clients use, or None."""
    try:
        return DummyJackServer(f"onbeat-soak-{os.getpid()}", realtime=realtime).start()
    except JackUnavailable:
        return None


class LinkUnavailable(RuntimeError):
    """``link="on"`` was asked for, but aalink or a private network namespace is missing."""


def soak(
    minutes: float,
    *,
    midi: str = "auto",
    warm_s: float = 60.0,
    link: str = "auto",
    jack_realtime: str = "auto",
) -> dict[str, Any]:
    """Run the soak; returns the measurements (see the module docstring).

    Parameters
    ----------
    minutes : float
        Audio to replay, at real-time pace.
    midi : {"auto", "jack", "off"}
        MIDI clock: with a running JACK server, with a private one, or none.
    warm_s : float
        The RSS baseline is taken this long after the stream starts.
    link : {"auto", "on", "off"}
        Ableton Link with an observer peer, in a private network namespace that the whole run
        enters (the calling thread returns to its own afterwards where it can): ``auto`` when
        aalink imports and the namespace can be made, ``on`` or :class:`LinkUnavailable`.
    jack_realtime : {"auto", "on", "off"}
        Scheduling of the private JACK server of ``midi="jack"`` and of its clients' process
        threads: realtime when allowed (``auto``), as on a user's machine. With ``off`` any CPU
        load makes JACK cycles late, and MIDI messages in a late cycle are lost (see
        ``onbeat.realtime.jack_server``); the report counts those cycles either way.

    Returns
    -------
    dict
        The measurements; ``link`` holds the Link checks (``ran``: False with ``why``
        when Link was not part of the run).

    Raises
    ------
    LinkUnavailable
        ``link="on"`` without aalink or a private network namespace.
    """
    if link not in ("auto", "on", "off"):
        raise ValueError(f"link={link!r}: auto, on or off")
    if link == "off":
        return _soak(minutes, midi=midi, warm_s=warm_s, link_why="--link off", rt=jack_realtime)
    try:
        import aalink  # noqa: F401  (GPL, optional)

        why = None
    except ImportError as exc:
        why = f"aalink is not installed ({exc})"
    if why is None:
        with netns.scope() as why:
            if why is None:
                return _soak(minutes, midi=midi, warm_s=warm_s, link_why=None, rt=jack_realtime)
    if link == "on":
        raise LinkUnavailable(f"--link on: {why}")
    return _soak(minutes, midi=midi, warm_s=warm_s, link_why=why, rt=jack_realtime)


def _recv(conn: Any, proc: Any, timeout_s: float) -> Any:
    """The receiver process's next message; an error if it died or took ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not conn.poll(0.5):
        if not proc.is_alive():
            raise RuntimeError(f"the receiver process died (exit code {proc.exitcode})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer from the receiver process in {timeout_s:g} s")
    return conn.recv()


def _record_states(controller: Any) -> list[tuple[float, str]]:
    """Record the Link controller's state changes as (``time.monotonic``, state).

    Wraps the instance's ``_set_state`` (called from the Link thread); nothing polls.
    """
    states = [(time.monotonic(), str(controller.state))]
    set_state = controller._set_state

    def recording(state: str) -> None:
        if state != controller.state:
            states.append((time.monotonic(), state))
        set_state(state)

    controller._set_state = recording
    return states


def _soak(
    minutes: float, *, midi: str, warm_s: float, link_why: str | None, rt: str
) -> dict[str, Any]:
    """The run itself; Link with an observer when ``link_why`` is None (see :func:`soak`)."""
    from onbeat.realtime.config import OnbeatConfig, apply_overrides
    from onbeat.realtime.engine import Engine
    from onbeat.realtime.errors import OnbeatError
    from onbeat.realtime.osc import OscSink, OscTarget, required_tracker_lead_ms
    from onbeat.realtime.sinks import ConsoleSink, JsonlSink
    from onbeat.realtime.websocket_sink import WebSocketConfig, WebSocketSink

    os.environ["JACK_NO_START_SERVER"] = "1"
    jack = _start_jack(rt) if midi == "jack" else None
    use_midi = midi != "off" and jack_running()

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    rx = ctx.Process(target=_receivers, args=(child,), daemon=True)
    rx.start()
    ports, rx_netns = _recv(parent, rx, 60.0)
    own_netns = netns.network_namespace_id()
    tmp = Path(tempfile.mkdtemp(prefix="onbeat-soak-"))
    devnull = open(os.devnull, "w")  # closed below
    sinks: list[Any] = []
    link_sink = None
    states: list[tuple[float, str]] = []
    try:
        if link_why is None:
            from onbeat.realtime.link_sink import LinkConfig, LinkSink

            link_sink = LinkSink(LinkConfig())
            link_born = time.monotonic()
            sinks.append(link_sink)
            assert link_sink.controller is not None
            states = _record_states(link_sink.controller)
        targets = [
            OscTarget("127.0.0.1", ports[0], profile="flat", phase_rate_hz=100.0, name="flat"),
            OscTarget("127.0.0.1", ports[1], profile="rich", phase_rate_hz=100.0, name="rich",
                      output_latency_ms=20.0),
            OscTarget("127.0.0.1", ports[2], profile="resolume", name="resolume"),
        ]  # fmt: skip
        osc = [OscSink(t, name=f"osc:{t.name}") for t in targets]
        ws = WebSocketSink(WebSocketConfig(port=0))
        jsonl = JsonlSink(tmp / "events.jsonl")
        digest = DigestSink(link_sink)
        sinks += [jsonl, ConsoleSink(stream=devnull), *osc, ws, digest]
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
        if link_sink is not None:  # the observer must join onbeat's session, not the reverse
            time.sleep(max(0.0, link_born + OBSERVER_DELAY_S - time.monotonic()))
        parent.send((ws.port, midi_name, link_sink is not None))
        assert _recv(parent, rx, 60.0 + DISCOVERY_TIMEOUT_S) == "ready"
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
        got = _recv(parent, rx, 120.0)
    finally:
        for s in sinks:
            s.close()
        devnull.close()
        rx.join(10.0)
        if rx.is_alive():
            rx.kill()
        jack_info = None
        if jack is not None:
            jack_info = {"realtime": jack.realtime, "late_cycles": dict(jack.xruns())}
            jack.close()

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
        lost = midi_sink.clocks - rx_clocks
        # MIDI that rtmidi moved into a JACK cycle that came too late is gone after the sink's
        # port (see onbeat.realtime.jack_server): such a loss is the JACK server's, and counted
        late = sum(jack_info["late_cycles"].values()) if jack_info else 0
        rows.append(
            {
                "sink": "midi clock (JACK)",
                "in": published,
                "sent": midi_sink.clocks,
                "received": rx_clocks,
                "ok": midi_sink.errors == 0
                and midi_sink.dropped == 0
                and (lost == 0 or 0 < lost <= late),
                "note": (
                    f"{lost} lost after the port, in late JACK cycles ({late}); "
                    if lost and lost <= late
                    else ""
                )
                + f"errors {midi_sink.errors}, dropped {midi_sink.dropped}; "
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
        "jack": jack_info,
        "link": (
            {"ran": False, "why": link_why}
            if link_sink is None
            else _link_results(
                got, states, link_sink, digest, same_netns=rx_netns == own_netns, cpu=monitor.cpu
            )
        ),
    }


def _link_results(
    got: dict[str, Any],
    states: list[tuple[float, str]],
    sink: Any,
    digest: DigestSink,
    *,
    same_netns: bool,
    cpu: dict[str, float],
) -> dict[str, Any]:
    """The Link checks (see the module docstring) from the observer's samples.

    Parameters
    ----------
    got : dict
        The receiver child's results (``link``: the observer, ``bpms``: the tracker's BPM as
        it arrived over the WebSocket).
    states : list of (float, str)
        The controller's state changes (``time.monotonic``, state).
    sink : LinkSink
        onbeat's peer (closed).
    digest : DigestSink
        For the time the stream ended and whether the Link thread was alive then.
    same_netns : bool
        Whether the receiver child ran in the soak's private network namespace.
    cpu : dict
        CPU seconds by thread (``Monitor.cpu``).

    Returns
    -------
    dict
        ``ran`` (True), the measurements, and ``ok``.
    """
    obs = got["link"]
    samples = np.array(obs["samples"], dtype=np.float64).reshape(-1, 4)  # t, peers, tempo, beat
    start = obs["discovered_at"]
    end = digest.end_at
    if start is None or not np.isfinite(end):
        win = samples[:0]
    else:
        win = samples[(samples[:, 0] >= start) & (samples[:, 0] <= end)]
    peers = win[:, 1]
    drops = int(np.count_nonzero((peers[:-1] == 1) & (peers[1:] != 1)))
    # leading intervals, from LEAD_GRACE_S after each start
    spans: list[tuple[float, float]] = []
    for (t, state), nxt in zip(states, [*states[1:], (end, "")], strict=True):
        if state == "leading":
            spans.append((t, min(nxt[0], end)))
    lead_s = sum(max(0.0, b - a) for a, b in spans)
    in_lead = np.zeros(len(win), dtype=bool)
    for a, b in spans:
        in_lead |= (win[:, 0] >= a + LEAD_GRACE_S) & (win[:, 0] < b)
    comp = win[in_lead]
    bpm = np.array(got["bpms"], dtype=np.float64).reshape(-1, 2)
    dev = np.full(len(comp), np.inf)
    dev_last = np.full(len(comp), np.inf)
    if len(bpm):
        for k, (t, _, tempo, _) in enumerate(comp):
            hi = int(np.searchsorted(bpm[:, 0], t, side="right"))  # arrived at or before t
            lo = min(int(np.searchsorted(bpm[:, 0], t - BPM_LAG_S, side="right")), hi - 1)
            if hi == 0:
                continue
            d = np.abs(tempo / bpm[max(lo, 0) : hi, 1] - 1.0) * 100.0
            dev[k] = d.min()
            dev_last[k] = d[-1]
    n_out = int(np.count_nonzero(dev > TEMPO_AGREE_PCT))
    ctl = sink.controller
    counters = {
        "tempo_proposals": ctl.tempo_proposals if ctl is not None else -1,
        "phase_corrections": ctl.phase_corrections if ctl is not None else -1,
        "peer_changes": ctl.peer_changes if ctl is not None else -1,
    }
    link_cpu = {k: v for k, v in cpu.items() if k.startswith(("sink-link", "native:Link"))}
    r: dict[str, Any] = {
        "ran": True,
        "why": "",
        "same_netns": same_netns,
        "observer_error": obs["error"],
        "discovery_s": (start - samples[0, 0]) if start is not None and len(samples) else None,
        "observed_s": float(win[-1, 0] - win[0, 0]) if len(win) else 0.0,
        "samples": len(win),
        "peers_min": int(peers.min()) if len(peers) else 0,
        "peers_max": int(peers.max()) if len(peers) else 0,
        "peers_not_1": int(np.count_nonzero(peers != 1)),
        "peer_drops": drops,
        "errors": sink.errors,
        "dropped_events": sink.dropped_events,
        "alive_at_end": digest.link_alive_at_end,
        **counters,
        "leading_s": lead_s,
        "leading_periods": len(spans),
        "states": Counter(st for _, st in states),
        "tempo_compared": len(comp),
        "tempo_dev_median_pct": float(np.median(dev_last)) if len(comp) else None,
        "tempo_dev_max_pct": float(dev.max()) if len(comp) else None,
        "tempo_dev_max_last_pct": float(dev_last.max()) if len(comp) else None,
        "tempo_out": n_out,
        "session_tempo_min": float(comp[:, 2].min()) if len(comp) else None,
        "session_tempo_max": float(comp[:, 2].max()) if len(comp) else None,
        "cpu_link_s": link_cpu,
    }
    r["ok"] = bool(
        same_netns
        and not obs["error"]
        and len(win) > 0
        and r["peers_not_1"] == 0
        and drops == 0
        and sink.errors == 0
        and sink.dropped_events == 0
        and r["alive_at_end"]
        and counters["peer_changes"] == 0
        and len(comp) > 0
        and n_out == 0
    )
    return r


def report(r: dict[str, Any], markdown: bool) -> str:
    lines = []
    title = (
        f"Soak: {r['audio_s'] / 60:.1f} min of audio at real-time pace (wall {r['wall_s']:.0f} s), "
        f"{r['events']} events, every sink at once (MIDI clock: {r['midi']}; Ableton Link: "
        f"{'with an observer peer, in a private network namespace' if r['link']['ran'] else 'off'})"
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
    if r.get("jack"):
        late = r["jack"]["late_cycles"]
        body2.append(
            ["private JACK server: scheduling; late cycles (xruns) per client",
             ("realtime" if r["jack"]["realtime"] else "non-realtime") + "; "
             + (", ".join(f"{k} {v}" for k, v in sorted(late.items())) or "none"), ""]
        )  # fmt: skip
    for k, v in r["cpu_sink_threads"].items():
        body2.append([f"  thread {k}", f"{v:.4f} s per s", ""])
    body3 = _link_rows(r["link"], r["audio_s"])
    tables = [(head, body), (head2, body2), (["Ableton Link", "value", "target"], body3)]
    if markdown:
        lines.append(title + "\n")
        for h, b in tables:
            lines.append("| " + " | ".join(h) + " |")
            lines.append("|" + "---|" * len(h))
            lines += ["| " + " | ".join(row) + " |" for row in b]
            lines.append("")
    else:
        lines.append(title)
        for h, b in tables:
            widths = [max(len(c), *(len(row[i]) for row in b)) for i, c in enumerate(h)]
            lines.append("  ".join(c.ljust(w) for c, w in zip(h, widths, strict=True)))
            lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in b]
            lines.append("")
    return "\n".join(lines)


def _link_rows(k: dict[str, Any], audio_s: float) -> list[list[str]]:
    """Rows (measure, value, target) of the Link checks for :func:`report`."""
    if not k["ran"]:
        return [["not part of this run", k["why"], ""]]

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f} %"

    def bpm(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    disc = "-" if k["discovery_s"] is None else f"{k['discovery_s']:.2f} s"
    cpu = sum(k["cpu_link_s"].values()) / audio_s
    threads = ", ".join(sorted(k["cpu_link_s"]))
    return [
        ["all OK", "yes" if k["ok"] else "NO", "yes"],
        ["receiver child in the soak's private network namespace",
         "yes" if k["same_netns"] else "NO", "yes"],
        ["observer: discovery of onbeat's peer", disc, ""],
        ["observer: peers from discovery to stream end (min / max; samples)",
         f"{k['peers_min']} / {k['peers_max']}; {k['samples']} over {k['observed_s']:.0f} s",
         "1 / 1"],
        ["observer: samples without exactly 1 peer / drops from 1",
         f"{k['peers_not_1']} / {k['peer_drops']}", "0 / 0"],
        ["LinkSink errors / dropped events", f"{k['errors']} / {k['dropped_events']}", "0 / 0"],
        ["Link thread alive at stream end", "yes" if k["alive_at_end"] else "NO", "yes"],
        ["controller: tempo proposals / phase corrections",
         f"{k['tempo_proposals']} / {k['phase_corrections']}", ""],
        ["controller: peer changes", str(k["peer_changes"]), "0"],
        ["controller: time leading (periods)",
         f"{k['leading_s']:.0f} s ({k['leading_periods']})", ""],
        [f"session tempo vs tracker BPM while leading (from {LEAD_GRACE_S:g} s in): samples",
         str(k["tempo_compared"]), "> 0"],
        ["  median / max deviation from the last BPM", f"{pct(k['tempo_dev_median_pct'])} / "
         f"{pct(k['tempo_dev_max_last_pct'])}", ""],
        [f"  max deviation (any BPM of the last {BPM_LAG_S:g} s) / samples over "
         f"{TEMPO_AGREE_PCT:g} %", f"{pct(k['tempo_dev_max_pct'])} / {k['tempo_out']}",
         f"<= {TEMPO_AGREE_PCT:g} % / 0"],
        ["  session tempo range", f"{bpm(k['session_tempo_min'])} .. "
         f"{bpm(k['session_tempo_max'])} BPM", ""],
        ["CPU per s of audio: Link threads (in the process figure)",
         f"{cpu:.4f} s ({threads})", ""],
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="audio to replay (real time)")
    ap.add_argument("--midi", choices=("auto", "jack", "off"), default="auto",
                    help="MIDI clock: auto (a running JACK server), jack (a private one), off")  # fmt: skip
    ap.add_argument("--link", choices=("auto", "on", "off"), default="auto",
                    help="Ableton Link with an observer peer in a private network namespace: "
                    "auto (when aalink and the namespace are available), on (or fail), off")  # fmt: skip
    ap.add_argument("--jack-realtime", choices=("auto", "on", "off"), default="auto",
                    help="scheduling of the private JACK server (--midi jack): realtime when "
                    "allowed (auto), on, off")  # fmt: skip
    ap.add_argument("--warm-s", type=float, default=60.0, help="RSS baseline after this long")
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = ap.parse_args()
    try:
        r = soak(
            args.minutes,
            midi=args.midi,
            warm_s=min(args.warm_s, args.minutes * 60.0 / 2),
            link=args.link,
            jack_realtime=args.jack_realtime,
        )
    except LinkUnavailable as exc:
        sys.exit(f"bench_soak: {exc}")
    print(report(r, args.markdown))
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))
    ok = (
        all(x["ok"] for x in r["rows"])
        and r["bus_dropped"] == 0
        and r["rss_growth_mb"] <= 20.0
        and (r["link"]["ok"] if r["link"]["ran"] else True)
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
