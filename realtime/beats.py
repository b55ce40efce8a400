"""The beat stage: a beat/downbeat activation per frame, then the predictive tracker.

The activation comes from the committed causal beat LSTM (``models/weights/beats``) when it ships
(``beats.source = "auto"`` or ``"lstm"``), else from a DSP fallback: the SuperFlux onset
activation, normalised by its own decaying recent maximum (``"dsp"``). Either way
:class:`~onbeat.realtime.tracker.BeatTracker` turns it into predicted beats, and a level gate
marks silent frames so the tracker never invents beats into silence.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import numpy.typing as npt
from onbeat.models.registry import available
from onbeat.models.streaming import EnsembleLSTM, NumbaLSTM, report_delay_frames
from onbeat.realtime.bars import BarEvidence, bar_columns
from onbeat.realtime.commands import Command
from onbeat.realtime.config import BeatConfig, FeatureConfig
from onbeat.realtime.events import Event
from onbeat.realtime.features import FeatureLayout
from onbeat.realtime.neural import load_stream_model
from onbeat.realtime.onset import superflux_activation
from onbeat.realtime.stages import StageSpec, StreamContext
from onbeat.realtime.tracker import BeatTracker, TrackerConfig

__all__ = ["BeatStage"]


class BeatStage:
    """Beat activation (LSTM or DSP) followed by :class:`BeatTracker`.

    Parameters
    ----------
    config : BeatConfig
        Activation source and gate.
    tracker : TrackerConfig
        Tracker settings.
    features : FeatureConfig
        The stream's features (the LSTM must have been trained on them).
    hop_size : int
        Samples per frame.
    """

    name: ClassVar[str] = "beats"

    def __init__(
        self,
        config: BeatConfig,
        tracker: TrackerConfig,
        features: FeatureConfig,
        layout: FeatureLayout,
        *,
        hop_size: int,
    ) -> None:
        self.config = config
        self.features = features
        # Both activations (DSP and LSTM) date an event one frame before the frame reporting it
        # (frame k ends at (k + 1) * hop): the tracker adds that to its own input latency.
        self.tracker_config = tracker
        self.hop_size = hop_size
        self.tracker = BeatTracker(tracker, hop_size=hop_size)
        source = config.source
        if source == "auto":
            source = "lstm" if available("beats") else "dsp"
        self.source = source
        self.spec = StageSpec(
            name=self.name,
            input_kind="spectrum",
            frame_size=1,
            hop_size=hop_size,
            latency_samples=0,
            outputs=("beat", "tempo"),
        )
        self.activation = 0.0
        self.downbeat_activation = 0.0
        self._act = np.zeros(2, dtype=np.float32)
        self.net: NumbaLSTM | EnsembleLSTM | None = None
        self._bar_columns = bar_columns(layout)
        self.bar_evidence: BarEvidence | None = None
        blocks = [layout.block("pdiff", n) for n in layout.frame_sizes]
        self._pd_starts = np.asarray([b.start for b in blocks], dtype=np.int64)
        self._pd_stops = np.asarray([b.stop for b in blocks], dtype=np.int64)

    def prepare(self, ctx: StreamContext) -> None:
        """Load the model (if any), prepare the tracker, set the gate."""
        delay_frames = 1.0
        if self.source == "lstm":
            self.net, meta = load_stream_model("beats", self.features, ctx)
            # as for onsets: frames between a beat and the frame reporting it (more than one
            # for a model trained with late targets)
            delay_frames = report_delay_frames(meta)
            if self.config.bar_model and available("bars"):
                bars, _ = load_stream_model("bars", self.features, ctx)
                self.bar_evidence = BarEvidence(bars, self._bar_columns)
        delay_s = delay_frames * self.hop_size / ctx.sample_rate_hz
        cfg = self.tracker_config
        self.tracker = BeatTracker(
            dataclasses.replace(cfg, input_latency_s=cfg.input_latency_s + delay_s),
            hop_size=self.hop_size,
            bar_evidence=self.bar_evidence,
        )
        self.tracker.prepare(ctx)
        self._decay = 0.5 ** (1.0 / (self.config.dsp_half_life_s * ctx.frame_rate_hz))
        self._gate_power = 10.0 ** (self.config.gate_dbfs / 10.0)
        self._gate_hold = round(self.config.gate_hold_s * ctx.frame_rate_hz)
        self.reset()

    def reset(self) -> None:
        """Zero the network, the normaliser and the tracker."""
        if self.net is not None:
            self.net.reset()
        self.tracker.reset()
        self._peak = 1e-3
        self._quiet_frames = 0
        self.activation = 0.0
        self.downbeat_activation = 0.0

    def flush(self) -> tuple[Event, ...]:
        """End of stream."""
        return tuple(self.tracker.flush())

    def apply_command(self, command: Command, sample_index: int) -> bool:
        """Forward a tracker command."""
        return self.tracker.apply_command(command, sample_index)

    def process(
        self,
        frame: npt.NDArray[np.float32],
        sample_index: int,
        *,
        power: float,
    ) -> tuple[Event, ...]:
        """One frame: activation, gate, tracker.

        Parameters
        ----------
        frame : ndarray
            The feature frame.
        sample_index : int
            End of the frame.
        power : float
            Mean square of this hop's samples (for the silence gate).

        Real-time safety: numba calls on preallocated buffers; allocates only events.
        """
        act = self._act
        if self.net is not None:
            out = self.net.step(frame)
            act[0], act[1] = out[0], out[1]
        else:
            flux = superflux_activation(frame, self._pd_starts, self._pd_stops)
            self._peak = max(flux, self._peak * self._decay, 1e-3)
            act[0] = min(1.0, flux / self._peak)
            act[1] = 0.0
        self.activation = float(act[0])
        self.downbeat_activation = float(act[1])
        self._quiet_frames = self._quiet_frames + 1 if power < self._gate_power else 0
        silent = self._quiet_frames > self._gate_hold
        return tuple(self.tracker.process(act, sample_index, silent=silent, features=frame))
