"""Training code: data preparation, training loops and export of weights to ``onbeat.models``.

Features are always imported from ``onbeat.realtime`` so training and live inputs cannot drift.
"""
