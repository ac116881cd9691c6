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


@pytest.mark.parametrize(
    "argv, env, ports",
    [
        ([], {}, (7882, 0, 0)),
        (["--udp-port", "9000"], {}, (9000, 0, 0)),
        (["--udp-port", "0"], {}, (0, 0, 0)),
        (["--udp-port-range", "50000-50100"], {}, (0, 50000, 50100)),
        ([], {"PYSFU_SFU__ICE__PORT_MIN": "50000", "PYSFU_SFU__ICE__PORT_MAX": "50100"}, (0, 50000, 50100)),
    ],
    ids=["default: one shared port", "another shared port", "a port per connection, any", "a range",
         "a range from the environment"],
)
def test_media_ports(argv, env, ports):
    """(udp_port, port_min, port_max): one shared UDP port unless a port per connection is asked for."""
    ice = load_config(serve_flags(build_parser().parse_args(["serve", *argv])), env=env).sfu.ice
    assert (ice.udp_port, ice.port_min, ice.port_max) == ports


def test_a_shared_port_and_a_range_together_are_refused():
    flags = serve_flags(build_parser().parse_args(["serve", "--udp-port", "7882", "--udp-port-range", "50000-50100"]))
    with pytest.raises(ConfigError, match="exclude each other"):
        load_config(flags, env={})


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


# --- STUN/TURN servers for clients (issue 6) --------------------------------------

TURN = "turn:turn.example.com:3478?transport=udp"


def test_ice_servers_from_flags_environment_and_yaml(tmp_path):
    path = tmp_path / "pysfu.yaml"
    path.write_text(
        "ice_servers:\n  turn_ttl: 600\n  external:\n"
        "    - urls: [turns:relay.example.net:5349]\n      username: team\n      credential: pass\n"
    )
    env = {"PYSFU_ICE_SERVERS__TURN_SECRET": SECRET, "PYSFU_ICE_SERVERS__STUN_URLS": "stun:a.example,stun:b.example:19302"}
    args = ["serve", "--turn-url", TURN, "--turn-url", "turn:turn.example.com:3478?transport=tcp", "--turn-ttl", "900"]
    ice = load_config(serve_flags(build_parser().parse_args(args)), env=env, path=path).ice_servers
    assert ice.turn_urls == [TURN, "turn:turn.example.com:3478?transport=tcp"]
    assert (ice.turn_secret, ice.turn_ttl) == (SECRET, 900)
    assert ice.stun_urls == ["stun:a.example", "stun:b.example:19302"]
    assert [(e.urls, e.username, e.credential) for e in ice.external] == [
        (["turns:relay.example.net:5349"], "team", "pass")]


@pytest.mark.parametrize(
    "env, message",
    [
        ({"PYSFU_ICE_SERVERS__TURN_URLS": TURN}, "turn_urls need turn_secret"),
        ({"PYSFU_ICE_SERVERS__TURN_SECRET": SECRET}, "turn_secret is set but turn_urls is empty"),
        ({"PYSFU_ICE_SERVERS__TURN_URLS": "https://turn.example.com", "PYSFU_ICE_SERVERS__TURN_SECRET": SECRET},
         "ice_servers.turn_urls: Value error, 'https://turn.example.com' is not a STUN/TURN URL"),
        ({"PYSFU_ICE_SERVERS__TURN_URLS": "stun:turn.example.com", "PYSFU_ICE_SERVERS__TURN_SECRET": SECRET},
         "expected a turn: or turns: URL here"),
        ({"PYSFU_ICE_SERVERS__TURN_URLS": "turn:turn.example.com:99999", "PYSFU_ICE_SERVERS__TURN_SECRET": SECRET},
         "is not a STUN/TURN URL"),
        ({"PYSFU_ICE_SERVERS__TURN_URLS": "turn:turn.example.com?transport=sctp", "PYSFU_ICE_SERVERS__TURN_SECRET": SECRET},
         "is not a STUN/TURN URL"),
        ({"PYSFU_ICE_SERVERS__TURN_URLS": "turns:turn.example.com?transport=udp", "PYSFU_ICE_SERVERS__TURN_SECRET": SECRET},
         "turns: runs over TLS"),
        ({"PYSFU_ICE_SERVERS__STUN_URLS": "stun:stun.example.com?transport=udp"}, "a STUN URL takes no ?transport="),
        ({"PYSFU_ICE_SERVERS__TURN_TTL": "0"}, "ice_servers.turn_ttl: Input should be greater than or equal to 1"),
        ({"PYSFU_ICE_SERVERS__EXTERNAL": '[{"urls": ["turn:relay.example.net"], "username": "team"}]'},
         "TURN server 'turn:relay.example.net' needs a username and a credential"),
        ({"PYSFU_ICE_SERVERS__EXTERNAL": '[{"urls": []}]'}, "ice_servers.external.0.urls: List should have at least 1 item"),
    ],
    ids=["url without secret", "secret without url", "not a url", "stun as turn", "bad port",
         "bad transport", "turns over udp", "stun transport", "zero ttl", "external without credential",
         "external without url"],
)
def test_bad_ice_servers_are_named(env, message):
    with pytest.raises(ConfigError) as caught:
        load_config(env=env)
    assert message in str(caught.value)


def test_turn_secrets_are_never_echoed():
    for env in [
        {"PYSFU_ICE_SERVERS__TURN_SECRET": "hush-hush-secret"},
        {"PYSFU_ICE_SERVERS__TURN_URLS": "bogus", "PYSFU_ICE_SERVERS__TURN_SECRET": "hush-hush-secret"},
        {"PYSFU_ICE_SERVERS__EXTERNAL": '[{"urls": ["turn:x.example"], "credential": "hush-hush-secret"}]'},
    ]:
        with pytest.raises(ConfigError) as caught:
            load_config(env=env)
        assert "hush-hush-secret" not in str(caught.value)


# --- graceful overload (issue 13) -------------------------------------------------


def test_load_shedding_settings_from_flags_and_environment():
    flags = serve_flags(build_parser().parse_args(["serve", "--no-load-shedding", "--receive-buffer-ms", "100"]))
    config = load_config(flags, env={"PYSFU_SFU__LOAD__BUSY_HIGH": "0.9", "PYSFU_SFU__LOAD__HOLD": "30"})
    load = config.sfu.load
    assert (load.enabled, load.busy_high, load.hold, load.busy_low) == (False, 0.9, 30, 0.75)
    assert config.sfu.receive_buffer_ms == 100
    assert load_config(env={}).sfu.load.enabled  # on by default


def test_load_thresholds_must_leave_room_for_hysteresis():
    with pytest.raises(ConfigError, match="busy_low must not exceed busy_high"):
        load_config(env={"PYSFU_SFU__LOAD__BUSY_LOW": "0.97"})
