"""`onbeat demo` with a real OSC receiver and OSC control on loopback, end to end."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import numpy as np
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import ThreadingOSCUDPServer
from pythonosc.udp_client import SimpleUDPClient


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_drives_osc_receiver_and_obeys_control(tmp_path):
    got: list[tuple[float, str, tuple]] = []
    lock = threading.Lock()

    def record(address, *args):
        with lock:
            got.append((time.monotonic(), address, args))

    disp = Dispatcher()
    disp.set_default_handler(record)
    server = ThreadingOSCUDPServer(("127.0.0.1", 0), disp)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ctl_port = _free_udp_port()
    events = tmp_path / "ev.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "onbeat",
            "demo",
            "--duration",
            "9",
            "--no-console",
            "--osc",
            f"127.0.0.1:{port}",
            "--osc-control",
            str(ctl_port),
            "--events",
            str(events),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(6.0)
        SimpleUDPClient("127.0.0.1", ctl_port).send_message("/onbeat/nudge", 20.0)
        _, err = proc.communicate(timeout=60)
    finally:
        server.shutdown()
    assert proc.returncode == 0, err
    beats_on = [t for t, a, args in got if a == "/onbeat/beat" and args == (1,)]
    assert len(beats_on) >= 8, [a for _, a, _ in got][:50]
    iv = np.diff(beats_on[-6:])
    assert np.all(np.abs(iv - 0.5) < 0.06), iv  # 120 BPM on the wire
    bpms = [args[0] for _, a, args in got if a == "/onbeat/bpm"]
    assert bpms and abs(bpms[-1] - 120.0) < 1.5
    phases = [args[0] for _, a, args in got if a == "/onbeat/phase"]
    assert len(phases) > 100 and all(0.0 <= p <= 1.0 for p in phases)
    ev = [json.loads(line) for line in events.read_text().splitlines()]
    cmds = [e for e in ev if e["type"] == "command"]
    assert cmds and cmds[0]["kind"] == "nudge" and cmds[0]["ok"] is True
