#!/usr/bin/env python3
"""Per-frame cost of the shipped LSTMs: the live numba step against torch's own step.

For each shipped causal model (``onsets``, ``beats``) it times 3,000 frames of random features
through :class:`onbeat.models.streaming.NumbaLSTM` (what the analysis thread runs) and through
:meth:`onbeat.models.lstm.CausalLSTM.step` under ``torch.inference_mode`` (one thread), and
checks that the two agree.

    python benchmarks/bench_lstm_step.py
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import time

import numpy as np


def main() -> None:
    import torch
    from onbeat.models.lstm import torch_from_arrays
    from onbeat.models.registry import load_lstm
    from onbeat.models.streaming import NumbaLSTM

    torch.set_num_threads(1)
    n = 3000
    print(
        "| model | shape | numba step (µs per frame) | torch step (µs per frame) | max difference |"
    )
    print("|---|---|---|---|---|")
    for name in ("onsets", "beats"):
        spec, arrays, _ = load_lstm(name)
        x = np.random.default_rng(0).standard_normal((n, spec.n_in)).astype(np.float32)
        fast = NumbaLSTM(spec, arrays)
        fast.reset()
        t0 = time.perf_counter()
        out_numba = np.array([fast.step(row).copy() for row in x])
        t_numba = (time.perf_counter() - t0) / n * 1e6
        net = torch_from_arrays(spec, arrays).eval()
        xt = torch.from_numpy(x)
        with torch.inference_mode():
            state = net.init_state()
            out = []
            t0 = time.perf_counter()
            for k in range(n):
                y, state = net.step(xt[k], state)
                out.append(y)
            t_torch = (time.perf_counter() - t0) / n * 1e6
        diff = float(np.abs(torch.stack(out).numpy() - out_numba).max())
        shape = f"{spec.layers} x LSTM({spec.hidden}), {spec.n_in} in"
        print(f"| {name} | {shape} | {t_numba:.1f} | {t_torch:.1f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
