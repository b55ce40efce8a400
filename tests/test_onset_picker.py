"""The live LSTM onset detector picks peaks with the settings its model was validated with,
unless the configuration names its own."""

import json

import pytest
import torch
from onbeat.models.lstm import CausalLSTM, LSTMSpec, save_model
from onbeat.realtime.config import FeatureConfig, OnbeatConfig, OnsetConfig, apply_overrides
from onbeat.realtime.errors import ConfigError
from onbeat.realtime.features import SpectralFeatures, feature_fingerprint
from onbeat.realtime.neural import LEGACY_PICKER, LstmOnsets
from onbeat.realtime.stages import StreamContext

CTX = StreamContext(sample_rate_hz=44100, hop_size=441)


def tiny_model(tmp_path, name="onsets", outputs=("onset",), **meta):
    feats = FeatureConfig()
    f = SpectralFeatures(feats)
    f.prepare(CTX)
    spec = LSTMSpec(
        name=name,
        n_in=f.layout.dims,
        hidden=4,
        layers=1,
        outputs=outputs,
        features=feature_fingerprint(feats, CTX.sample_rate_hz),
    )
    torch.manual_seed(0)
    save_model(CausalLSTM(spec), tmp_path, extra={"delay_frames": 1.0, **meta})
    return feats


def settings(stage):
    pre_avg_s, pre_max_s, _ = stage.picker._windows_s
    return stage.picker.threshold, pre_avg_s, pre_max_s


def test_model_settings_apply_unless_configured(tmp_path):
    feats = tiny_model(tmp_path, threshold=0.55, pre_avg_s=0.0, pre_max_s=0.01)
    stage = LstmOnsets(OnsetConfig(), feats, hop_size=441, model_dir=tmp_path)
    stage.prepare(CTX)
    assert settings(stage) == (0.55, 0.0, 0.01)
    own = OnsetConfig(lstm_threshold=0.4, lstm_pre_max_s=0.05)
    stage = LstmOnsets(own, feats, hop_size=441, model_dir=tmp_path)
    stage.prepare(CTX)
    assert settings(stage) == (0.4, 0.0, 0.05)  # the unset window still comes from the model
    meta = json.loads((tmp_path / "onsets.json").read_text())
    assert meta["threshold"] == 0.55


def test_older_models_keep_the_settings_they_were_chosen_with(tmp_path):
    feats = tiny_model(tmp_path, threshold=0.3)
    stage = LstmOnsets(OnsetConfig(), feats, hop_size=441, model_dir=tmp_path)
    stage.prepare(CTX)
    assert settings(stage) == (0.3, LEGACY_PICKER["pre_avg_s"], LEGACY_PICKER["pre_max_s"])


def test_picker_overrides_are_validated_and_coerced():
    c = apply_overrides(OnbeatConfig(), {"onset.lstm_threshold": 1, "onset.lstm_pre_avg_s": 0})
    assert c.onset.lstm_threshold == 1.0 and isinstance(c.onset.lstm_threshold, float)
    assert c.onset.lstm_pre_avg_s == 0.0 and c.onset.lstm_pre_max_s is None
    with pytest.raises(ConfigError, match="lstm_threshold"):
        apply_overrides(OnbeatConfig(), {"onset.lstm_threshold": 1.5})
    with pytest.raises(ConfigError, match="lstm_pre_max_s"):
        apply_overrides(OnbeatConfig(), {"onset.lstm_pre_max_s": -0.1})


def test_a_late_target_model_declares_its_delay(tmp_path):
    """An onset model trained with targets 2 frames late dates its onsets 3 hops back."""
    feats = tiny_model(tmp_path, delay_frames=3.0, target_delay_frames=2)
    stage = LstmOnsets(OnsetConfig(), feats, hop_size=441, model_dir=tmp_path)
    stage.prepare(CTX)
    assert stage.spec.latency_samples == 3 * 441


def test_a_late_target_beat_model_adds_to_the_tracker_latency(tmp_path, monkeypatch):
    """The beat stage hands the tracker the model's delay (1 + its target delay, in frames)."""
    from onbeat.realtime.beats import BeatStage
    from onbeat.realtime.config import BeatConfig, TrackerConfig

    beats = {"name": "beats", "outputs": ("beat", "downbeat")}
    feats = tiny_model(tmp_path, **beats, delay_frames=4.0, target_delay_frames=3)
    monkeypatch.setenv("ONBEAT_MODELS", str(tmp_path))
    f = SpectralFeatures(feats)
    f.prepare(CTX)
    stage = BeatStage(BeatConfig(source="lstm"), TrackerConfig(), feats, f.layout, hop_size=441)
    stage.prepare(CTX)
    assert stage.tracker.config.input_latency_s == pytest.approx(4 * 441 / 44100)
