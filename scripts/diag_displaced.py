#!/usr/bin/env python3
"""Where the beat activation goes in displaced sections (issue 3, BENCHMARKS.md "Session 15").

For the ``displaced-valid`` songs (``python -m onbeat.training.render --sets displaced --out
data/renders_displaced``), the maximum of the beat output within +-2 frames of each labelled beat
and of the half-beat after it, grouped by what the section moved (``2d2r``: drums and riff two
sixteenths late; ``normal``: undisplaced sections; ``first2s``: the first 2 s of any displaced
section), for each model given (an exported ``beats.safetensors``). The offline sequence forward
is used (equal to the live step to 1e-5); features come from the training cache (``data/cache``).

    python scripts/diag_displaced.py models/weights/beats.safetensors runs/export_bx2/beats.safetensors
"""

import itertools
import sys

import numpy as np
from onbeat.models.lstm import torch_from_arrays
from onbeat.models.streaming import load_model
from onbeat.training.datasets import FPS, cached_features, manifest_records, render_items
from onbeat.training.loop import predict
from onbeat.training.render import displaced_spans_s

folder = "data/renders_displaced"
recs = {r["name"]: r for r in manifest_records(folder)}
items = render_items(folder, split="valid")[:40]
for path in sys.argv[1:]:
    net = torch_from_arrays(*load_model(path)[:2]).eval()
    acc = {}
    for it in items:
        x = cached_features(it.audio, "data/cache", None)
        a = predict(net, x)[:, 0]
        rec = recs[it.name]
        spans = displaced_spans_s(rec)
        kinds = [s.split("/+")[1] for s in rec["sections"] if "/+" in s]
        b = it.beats
        for t, tn in itertools.pairwise(b):
            fb = round(t * FPS)
            fh = round((t + tn) / 2 * FPS)
            if fh + 3 >= len(a):
                continue
            key = "normal"
            for (s0, s1), k in zip(spans, kinds, strict=True):
                if s0 <= t < s1:
                    key = k if t - s0 > 2.0 else "first2s"
            v = acc.setdefault(key, [[], []])
            v[0].append(a[max(0, fb - 2) : fb + 3].max())
            v[1].append(a[fh - 2 : fh + 3].max())
    print(path)
    for k in sorted(acc, key=lambda k: -len(acc[k][0])):
        on, off = np.array(acc[k][0]), np.array(acc[k][1])
        print(
            f"  {k:10s} n={len(on):5d} beat {on.mean():.3f}  half {off.mean():.3f}  beat>half {np.mean(on > off):.2f}"
        )
