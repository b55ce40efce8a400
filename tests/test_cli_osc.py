"""`onbeat demo` with a real OSC receiver and OSC control on loopback, end to end."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import numpy as np
from osc_receiver import OscReceiver
from pythonosc.udp_client import SimpleUDPClient


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_drives_osc_receiver_and_obeys_control(tmp_path):
    receiver = OscReceiver()
    port = receiver.port
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
        receiver.close()
    assert proc.returncode == 0, err
    got = [(m.t, m.address, m.args) for m in receiver.messages()]
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
