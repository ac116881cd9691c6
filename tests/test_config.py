"""One settings model fed by a YAML file, PYSFU_* variables and flags."""

from __future__ import annotations

import pytest

from signaling.cli import build_parser, serve_flags
from signaling.config import ConfigError, load_config

SECRET = "s" * 32


def test_flags_beat_environment_beat_yaml(tmp_path):
    path = tmp_path / "pysfu.yaml"
    path.write_text(
        "port: 1000\nhost: 0.0.0.0\nlimits:\n  room_capacity: 10\n  joins_per_minute: 5\n"
        f"keys:\n  yamlkey: {SECRET}\n"
    )
    env = {"PYSFU_PORT": "2000", "PYSFU_LIMITS__ROOM_CAPACITY": "20", "PYSFU_LOG_FORMAT": "json"}
    flags = serve_flags(build_parser().parse_args(["serve", "--port", "3000", "--ice-address", "127.0.0.1"]))
    config = load_config(flags, env=env, path=path)
    assert (config.port, config.host, config.log_format) == (3000, "0.0.0.0", "json")
    assert (config.limits.room_capacity, config.limits.joins_per_minute) == (20, 5)
    assert config.keys == {"yamlkey": SECRET}
    assert config.sfu.ice.addresses == ["127.0.0.1"]


def test_config_file_named_by_environment(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dev: true\n")
    assert load_config(env={"PYSFU_CONFIG": str(path)}).dev is True


@pytest.mark.parametrize("value", [f"k1:{SECRET},k2:{SECRET}", f'{{"k1": "{SECRET}", "k2": "{SECRET}"}}'])
def test_keys_from_environment(value):
    assert load_config(env={"PYSFU_KEYS": value}).keys == {"k1": SECRET, "k2": SECRET}


def test_defaults_run_open():
    config = load_config(env={})
    assert config.open and config.limits.room_capacity == 150 and config.port == 7880


@pytest.mark.parametrize(
    "env, message",
    [
        ({"PYSFU_PORT": "70000"}, "port: Input should be less than or equal to 65535"),
        ({"PYSFU_LIMITS__ROOM_CAPCITY": "3"}, "limits.room_capcity: Extra inputs are not permitted"),
        ({"PYSFU_LOG_FORMAT": "xml"}, "log_format: Input should be 'text' or 'json'"),
        ({"PYSFU_SFU__ICE__PORT_MIN": "5000"}, "set both port_min and port_max"),
    ],
    ids=["out of range", "misspelt", "not a choice", "half a range"],
)
def test_bad_values_are_named(env, message):
    with pytest.raises(ConfigError) as caught:
        load_config(env=env)
    assert message in str(caught.value)


def test_short_secret_refused_without_echoing_it():
    with pytest.raises(ConfigError) as caught:
        load_config(env={"PYSFU_KEYS": "k:tooshort"})
    assert "shorter than 32" in str(caught.value) and "tooshort" not in str(caught.value)


def test_broken_yaml_is_reported(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("port: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(env={}, path=path)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(env={}, path=tmp_path / "missing.yaml")
