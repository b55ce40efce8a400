import pytest
from onbeat.realtime.config import OnbeatConfig, apply_overrides, load_config, parse_override
from onbeat.realtime.errors import ConfigError


def test_defaults_are_valid():
    c = OnbeatConfig()
    assert c.frame_rate_hz == 100.0


def test_toml_and_overrides(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[audio]\nblock_size = 256\nchannels = [0, 1]\n[onset]\nthreshold = 0.1\n")
    c = load_config(p)
    assert c.audio.block_size == 256 and c.audio.channels == (0, 1) and c.onset.threshold == 0.1
    c2 = apply_overrides(c, dict([parse_override("onset.min_interval_s=0.05")]))
    assert c2.onset.min_interval_s == 0.05 and c2.audio.block_size == 256


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "audio.block_size",
            0,
            r"audio.block_size = 0 is invalid: must be an integer in \[16, 16384\]",
        ),
        ("features.frame_sizes", [1000], "no power of 2"),
        ("features.fmax_hz", 30000.0, "Nyquist"),
        ("onset.threshold", -1.0, r"onset.threshold"),
        ("audio.nope", 1, "unknown config key 'audio.nope'"),
        ("bogus.key", 1, "unknown config section"),
        ("audio.channels", [0, 0], "twice"),
    ],
)
def test_impossible_values_name_key_and_range(key, value, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(OnbeatConfig(), {key: value})


def test_bad_toml_is_a_config_error(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[audio\nblock_size = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_configs_are_frozen():
    c = OnbeatConfig()
    with pytest.raises(AttributeError):
        c.audio.block_size = 4  # type: ignore[misc]
