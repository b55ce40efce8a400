"""Stages that run the committed causal LSTMs frame by frame (numba, no torch per frame).

:class:`LstmOnsets` turns :class:`SpectralFeatures` frames into an onset activation and picks
peaks online. The model's weights come from :mod:`onbeat.models.registry`; a model trained on
other features than the stream computes is refused at prepare time.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import numpy.typing as npt
from onbeat.models.registry import available, load_lstm, members
from onbeat.models.streaming import EnsembleLSTM, NumbaLSTM, report_delay_frames
from onbeat.realtime.config import FeatureConfig, OnsetConfig
from onbeat.realtime.errors import StageError
from onbeat.realtime.events import EMPTY, Event
from onbeat.realtime.features import feature_fingerprint
from onbeat.realtime.onset import OnlinePeakPicker, onset_event
from onbeat.realtime.stages import StageSpec, StreamContext

__all__ = ["LEGACY_PICKER", "LstmOnsets", "load_stream_model"]

#: Peak-picker settings of onset models whose card names none but the threshold (they were
#: chosen with these windows).
LEGACY_PICKER = {"threshold": 0.35, "pre_avg_s": 0.05, "pre_max_s": 0.03}


def load_stream_model(
    name: str, features: FeatureConfig, ctx: StreamContext, directory: Path | None = None
) -> tuple[NumbaLSTM | EnsembleLSTM, dict[str, object]]:
    """Load model ``name`` for numba streaming, checking it matches the stream's features.

    A model with ensemble members (``NAME.m1``... beside it, :func:`members`) loads as an
    :class:`EnsembleLSTM` that averages them; the metadata is the first member's.

    Raises
    ------
    StageError
        If the weights are missing, were trained on different features, or the members of an
        ensemble disagree (features, shapes, or the frames by which they report late).
    """
    if not available(name, directory):
        raise StageError(f"the {name!r} model is not installed (no weights in onbeat/models)")
    d, names = members(name, directory)
    want = feature_fingerprint(features, ctx.sample_rate_hz)
    nets, metas = [], []
    for n in names:
        spec, arrays, meta = load_lstm(n, d)
        if spec.features != want:
            raise StageError(
                f"the {n!r} model was trained on features {spec.features!r}, "
                f"but the stream computes {want!r}"
            )
        nets.append(NumbaLSTM(spec, arrays))
        metas.append(meta)
    if len(nets) == 1:
        return nets[0], metas[0]
    delays = {report_delay_frames(m) for m in metas}
    if len(delays) != 1:
        raise StageError(f"the members of the {name!r} ensemble report at different delays")
    try:
        return EnsembleLSTM(nets), metas[0]
    except ValueError as exc:
        raise StageError(f"the {name!r} ensemble: {exc}") from None


class LstmOnsets:
    """Causal LSTM onset detector with online peak picking.

    Parameters
    ----------
    config : OnsetConfig
        ``lstm_threshold``, ``lstm_pre_avg_s``, ``lstm_pre_max_s`` (None: the model's own,
        from its metadata) and ``min_interval_s``.
    features : FeatureConfig
        The stream's feature configuration (must match the model's).
    hop_size : int
        Samples per frame.
    model_dir : Path, optional
        Where to look for weights instead of the installed ones.
    """

    name: ClassVar[str] = "lstm_onsets"

    def __init__(
        self,
        config: OnsetConfig,
        features: FeatureConfig,
        *,
        hop_size: int,
        model_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.features = features
        self.model_dir = model_dir
        self.spec = StageSpec(
            name=self.name,
            input_kind="spectrum",
            frame_size=1,
            hop_size=hop_size,
            latency_samples=hop_size,
            outputs=("onset",),
        )
        self.picker = self._picker({})
        self.activation = 0.0

    def _picker(self, meta: dict[str, object]) -> OnlinePeakPicker:
        """The peak picker: each setting from the config when given there, else the model's
        own (chosen on its validation fold), else the values older models were chosen with."""
        c = self.config

        def pick(own: float | None, key: str) -> float:
            if own is not None:
                return float(own)
            v = meta.get(key)
            return float(v) if isinstance(v, int | float) else LEGACY_PICKER[key]

        return OnlinePeakPicker(
            threshold=pick(c.lstm_threshold, "threshold"),
            pre_avg_s=pick(c.lstm_pre_avg_s, "pre_avg_s"),
            pre_max_s=pick(c.lstm_pre_max_s, "pre_max_s"),
            min_interval_s=c.min_interval_s,
        )

    def prepare(self, ctx: StreamContext) -> None:
        """Load the weights, compile the kernels and allocate the picker."""
        self.net, meta = load_stream_model("onsets", self.features, ctx, self.model_dir)
        self.picker = self._picker(meta)
        delay = report_delay_frames(meta)
        self.spec = StageSpec(
            name=self.name,
            input_kind="spectrum",
            frame_size=1,
            hop_size=ctx.hop_size,
            latency_samples=round(delay * ctx.hop_size),
            outputs=("onset",),
        )
        self._rate = float(ctx.sample_rate_hz)
        self.picker.prepare(ctx.frame_rate_hz)
        self.reset()

    def reset(self) -> None:
        """Zero the LSTM state and the picker."""
        self.net.reset()
        self.picker.reset()
        self.activation = 0.0

    def flush(self) -> tuple[Event, ...]:
        """Nothing is deferred."""
        return EMPTY

    def process(self, frame: npt.NDArray[np.float32], sample_index: int) -> tuple[Event, ...]:
        """One LSTM step on the feature frame, then online peak picking.

        Real-time safety: numba calls on preallocated buffers; allocates only the event.
        """
        a = float(self.net.step(frame)[0])
        self.activation = a
        if not self.picker.step(a):
            return EMPTY
        return (onset_event(sample_index, self.spec.latency_samples, self._rate, a, self.name),)
