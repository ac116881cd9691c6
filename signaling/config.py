"""Server settings: one validated model, filled from a YAML file, PYSFU_*
environment variables and `pysfu serve` flags (later sources win).

Environment names are the setting's path in upper case, nested levels
joined by ``__``: ``PYSFU_PORT=7881``, ``PYSFU_LIMITS__ROOM_CAPACITY=50``,
``PYSFU_KEYS='{"key1": "secret..."}'`` (or ``key1:secret,key2:secret``).
``PYSFU_CONFIG`` names the YAML file when ``--config`` is not given.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sfu.config import SfuConfig

from .auth import DEV_KEY, MIN_SECRET_LENGTH

ENV_PREFIX = "PYSFU_"


def _static_dir() -> Path:
    """static/ of a source checkout, else the copy a wheel installs."""
    source = Path(__file__).resolve().parent.parent / "static"
    installed = Path(sys.prefix) / "share" / "pysfu" / "static"
    return source if source.is_dir() else installed


STATIC_DIR = _static_dir()


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Limits(_Settings):
    """Abuse limits; each one refused with its own error code."""

    #: Largest WebSocket text message handled (bigger: ``message_too_large``).
    max_message_bytes: int = Field(default=256 * 1024, ge=1024)
    #: Sustained requests per second per connection (``rate_limited``).
    messages_per_second: float = Field(default=50, gt=0)
    #: Requests allowed in a burst above the sustained rate.
    message_burst: int = Field(default=100, ge=1)
    #: Largest SDP in ``publish`` or ``subscriber_answer`` (``sdp_too_large``).
    max_sdp_bytes: int = Field(default=128 * 1024, ge=1024)
    #: Joins per client address per minute, 0 = unlimited (``too_many_joins``).
    joins_per_minute: int = Field(default=60, ge=0)
    #: Participants per room, unless the admin API set another (``room_full``).
    room_capacity: int = Field(default=150, ge=1)
    #: Audio/video tracks one participant may publish at once
    #: (``too_many_tracks``): each is an m-line in everyone else's SDP.
    max_tracks_per_participant: int = Field(default=8, ge=1)
    #: m-lines in one publish offer, stopped ones included (``too_many_tracks``).
    max_publish_sections: int = Field(default=32, ge=1)
    #: Characters of messages waiting for one slow reader; beyond, droppable
    #: events are dropped, then the socket closes (4002 ``slow_consumer``).
    outbox_bytes: int = Field(default=1024 * 1024, ge=64 * 1024)
    #: Seconds a new WebSocket has to ``join`` (or ``resume``); else close 4001.
    join_timeout: float = Field(default=10, gt=0)
    #: Seconds an HTTP connection has to send a whole request header, and may
    #: stay idle between requests (aiohttp's keepalive_timeout).
    header_timeout: float = Field(default=10, gt=0)
    #: WebSocket connections open at once (HTTP 503 ``server_full`` beyond).
    max_connections: int = Field(default=1000, ge=1)
    #: WebSocket connections from one client address, 0 = unlimited (429
    #: ``too_many_connections``).
    connections_per_address: int = Field(default=100, ge=0)


class Webhooks(_Settings):
    """Where room events are POSTed, signed with ``api_key``'s secret."""

    urls: list[str] = Field(default_factory=list)
    #: Key whose secret signs the bodies; default: the first of ``keys``.
    api_key: str = ""
    #: Attempts per event (the first one included).
    attempts: int = Field(default=5, ge=1)
    #: First retry delay in seconds; doubled on each further retry.
    backoff: float = Field(default=0.5, gt=0)
    timeout: float = Field(default=5, gt=0)
    #: Events held while the receiver is slow; the oldest are dropped beyond.
    queue_size: int = Field(default=10_000, ge=1)

    @field_validator("urls", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return [u for u in value.split(",") if u] if isinstance(value, str) else value

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"webhook URL {url!r} must start with http:// or https://")
        return value


class Cluster(_Settings):
    """Many nodes through Redis (docs/cluster.md); no ``redis_url``: one node."""

    #: e.g. redis://127.0.0.1:6379/0; empty runs one embedded node, no Redis.
    redis_url: str = ""
    #: This node's name in the registry; default: hostname plus random hex.
    node_id: str = ""
    #: The signaling URL other nodes redirect clients to (ws://host:port/ws);
    #: default: built from host and port (which then must be a real address).
    url: str = ""
    #: Seconds between two heartbeats (load report, room claims refreshed).
    heartbeat: float = Field(default=2, gt=0)
    #: Seconds after its last heartbeat that a node and its room claims expire.
    ttl: float = Field(default=6, gt=0, le=10)
    #: Lifetime in seconds of the ticket a redirect hands the client.
    ticket_ttl: float = Field(default=30, gt=0)
    #: Prefix of every Redis key, so several clusters can share one Redis.
    prefix: str = Field(default="pysfu", min_length=1)

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("the Redis URL must start with redis://, rediss:// or unix://")
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if value and not value.startswith(("ws://", "wss://")):
            raise ValueError("the node URL must start with ws:// or wss://")
        return value

    @model_validator(mode="after")
    def _check_ttl(self) -> "Cluster":
        if self.redis_url and self.ttl < 2 * self.heartbeat:
            raise ValueError(f"ttl ({self.ttl}) must be at least twice the heartbeat ({self.heartbeat})")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.redis_url)


#: RFC 7064/7065 URLs: stun(s):host[:port], turn(s):host[:port][?transport=udp|tcp].
_ICE_URL = re.compile(
    r"(?P<scheme>stuns?|turns?):(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)"
    r"(?::(?P<port>[0-9]{1,5}))?(?:\?transport=(?P<transport>udp|tcp))?"
)
ICE_URL_EXAMPLES = "stun:host:3478, turn:host:3478?transport=udp, turn:host:3478?transport=tcp or turns:host:5349"


def check_ice_url(url: str, schemes: tuple[str, ...]) -> str:
    """``url`` if it is a well-formed STUN/TURN URL of one of ``schemes``."""
    match = _ICE_URL.fullmatch(url.strip()) if isinstance(url, str) else None
    if match is None or (match["port"] and not 0 < int(match["port"]) < 65536):
        raise ValueError(f"{url!r} is not a STUN/TURN URL (write {ICE_URL_EXAMPLES})")
    if match["scheme"] not in schemes:
        raise ValueError(f"{url!r}: expected a {' or '.join(s + ':' for s in schemes)} URL here")
    if match["transport"] and match["scheme"].startswith("stun"):
        raise ValueError(f"{url!r}: a STUN URL takes no ?transport=")
    if match["scheme"] == "turns" and match["transport"] == "udp":
        raise ValueError(f"{url!r}: turns: runs over TLS, so its transport is tcp")
    return url.strip()


def _split_urls(value: Any) -> Any:
    return [u.strip() for u in value.split(",") if u.strip()] if isinstance(value, str) else value


class ExternalIceServer(_Settings):
    """A STUN or TURN server handed to clients as is, with fixed credentials."""

    urls: list[str] = Field(min_length=1)
    username: str = ""
    credential: str = ""

    @field_validator("urls", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _split_urls(value)

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        return [check_ice_url(url, ("stun", "stuns", "turn", "turns")) for url in value]

    @model_validator(mode="after")
    def _check_credentials(self) -> "ExternalIceServer":
        if any(url.startswith("turn") for url in self.urls) and not (self.username and self.credential):
            raise ValueError(f"TURN server {self.urls[0]!r} needs a username and a credential")
        return self


class IceServers(_Settings):
    """STUN/TURN servers handed to clients in join_response.ice_servers.

    ``turn_urls`` share ``turn_secret`` with the TURN server (coturn's
    ``use-auth-secret`` + ``static-auth-secret``): pysfu mints each
    participant credentials valid for ``turn_ttl`` seconds (TURN REST API).
    """

    turn_urls: list[str] = Field(default_factory=list)
    turn_secret: str = ""
    #: Lifetime of minted TURN credentials; a relayed call must start within it.
    turn_ttl: int = Field(default=86400, ge=1)
    stun_urls: list[str] = Field(default_factory=list)
    #: TURN/STUN servers with fixed credentials (not using turn_secret).
    external: list[ExternalIceServer] = Field(default_factory=list)

    @field_validator("turn_urls", "stun_urls", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _split_urls(value)

    @field_validator("turn_urls")
    @classmethod
    def _check_turn(cls, value: list[str]) -> list[str]:
        return [check_ice_url(url, ("turn", "turns")) for url in value]

    @field_validator("stun_urls")
    @classmethod
    def _check_stun(cls, value: list[str]) -> list[str]:
        return [check_ice_url(url, ("stun", "stuns")) for url in value]

    @model_validator(mode="after")
    def _check_secret(self) -> "IceServers":
        if self.turn_urls and not self.turn_secret:
            raise ValueError("turn_urls need turn_secret (coturn's static-auth-secret) to mint credentials")
        if self.turn_secret and not self.turn_urls:
            raise ValueError("turn_secret is set but turn_urls is empty")
        return self


class ServerConfig(_Settings):
    host: str = "127.0.0.1"
    port: int = Field(default=7880, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    static_dir: Path = STATIC_DIR
    #: API key -> secret.  With none, the server runs open (token-less joins).
    keys: dict[str, str] = Field(default_factory=dict)
    #: Development mode: serves /dev/token for the demo page.
    dev: bool = False
    #: Secret of the development key (auth.DEV_KEY) that signs /dev/token's
    #: join-only tokens: made up at start in dev mode, never an API key.
    dev_secret: str = Field(default="", pattern=rf"^$|^.{{{MIN_SECRET_LENGTH},}}$")
    #: Seconds a SIGTERM waits for clients to go before the process exits.
    shutdown_grace: float = Field(default=10, ge=0)
    uvloop: bool = True
    #: Worker processes (issue 7): 0 = one per CPU core; 1 = a single process.
    workers: int = Field(default=0, ge=0, le=256)
    #: Participants of one room on one worker before its new participants go
    #: to another worker (the room then spans workers through relay links).
    worker_room_limit: int = Field(default=100, ge=1)
    #: Set by the supervisor in the config it hands a worker process.
    worker_index: Optional[int] = None
    #: Longest time between two full garbage collections, which the serving
    #: process makes itself (sfu/garbage_collector.py); 0: Python's own.
    gc_interval: float = Field(default=600, ge=0, le=86400)
    limits: Limits = Field(default_factory=Limits)
    webhooks: Webhooks = Field(default_factory=Webhooks)
    sfu: SfuConfig = Field(default_factory=SfuConfig)
    ice_servers: IceServers = Field(default_factory=IceServers)
    cluster: Cluster = Field(default_factory=Cluster)

    @field_validator("keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("{"):
                return json.loads(value)
            pairs = [item.split(":", 1) for item in value.split(",") if item.strip()]
            if any(len(pair) != 2 for pair in pairs):
                raise ValueError("write keys as key1:secret1,key2:secret2")
            return {k.strip(): s.strip() for k, s in pairs}
        return value

    @field_validator("keys")
    @classmethod
    def _check_secrets(cls, value: dict[str, str]) -> dict[str, str]:
        for key, secret in value.items():
            if key == DEV_KEY:
                raise ValueError(f"the key name {DEV_KEY!r} is reserved for --dev's development tokens")
            if len(secret) < MIN_SECRET_LENGTH:
                raise ValueError(f"the secret of key {key!r} is shorter than {MIN_SECRET_LENGTH} characters")
        return value

    @model_validator(mode="after")
    def _check_webhook_key(self) -> "ServerConfig":
        key = self.webhooks.api_key
        if self.webhooks.urls and not self.keys:
            raise ValueError("webhooks are signed with an API secret: configure keys too")
        if key and key not in self.keys:
            raise ValueError(f"webhooks.api_key {key!r} is not one of the configured keys")
        return self

    @model_validator(mode="after")
    def _check_node_url(self) -> "ServerConfig":
        wildcard = self.host in ("0.0.0.0", "::", "") or self.port == 0
        if self.cluster.enabled and not self.cluster.url and wildcard:
            raise ValueError("with cluster.redis_url, give cluster.url (the ws:// URL clients reach this node at)")
        if self.cluster.enabled and self.dev:
            raise ValueError("--dev is for one node: it makes up its development key per node")
        return self

    @property
    def node_url(self) -> str:
        """The signaling URL other nodes send this node's clients to."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return self.cluster.url or f"ws://{host}:{self.port}/ws"

    @property
    def open(self) -> bool:
        """No API keys and not in dev mode: anyone may join without a token."""
        return not self.keys and not self.dev

    @property
    def join_keys(self) -> dict[str, str]:
        """Keys whose tokens may join: the API keys, and the development key in
        dev mode (never accepted by the admin API)."""
        if self.dev and self.dev_secret:
            return {**self.keys, DEV_KEY: self.dev_secret}
        return self.keys


class ConfigError(Exception):
    """Settings that do not validate; the message names each bad value."""


def load_config(
    flags: Optional[Mapping[str, Any]] = None,
    env: Optional[Mapping[str, str]] = None,
    path: Optional[Path | str] = None,
) -> ServerConfig:
    """Merge YAML file < environment < flags and validate the result."""
    env = os.environ if env is None else env
    path = path or env.get(ENV_PREFIX + "CONFIG")
    merged: dict[str, Any] = {}
    if path:
        _merge(merged, _read_yaml(Path(path)))
    _merge(merged, _from_env(env))
    _merge(merged, dict(flags or {}))
    try:
        return ServerConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from None


def describe_errors(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = [str(x) for x in error["loc"]]
        if not loc:
            lines.append(f"  {error['msg']}")
            continue
        where = ".".join(loc)
        env_name = ENV_PREFIX + "__".join(loc).upper()
        got = "" if error["type"] == "missing" or _secret(loc, error.get("input")) else f" (got {error.get('input')!r})"
        lines.append(f"  {where}: {error['msg']}{got} [flag, {env_name} or YAML {where}]")
    return "invalid settings:\n" + "\n".join(lines)


def _secret(loc: list[str], value: Any) -> bool:
    """Never echo secrets: API keys, TURN secrets, credentials, or a whole
    section (which may hold one)."""
    return loc[0] in ("keys", "dev_secret") or loc[-1] in ("turn_secret", "credential") or isinstance(value, dict)


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings")
    return data


def _from_env(env: Mapping[str, str]) -> dict:
    settings: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        path = name[len(ENV_PREFIX):].lower().split("__")
        node = settings
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _env_value(value)
    return settings


def _env_value(value: str) -> Any:
    if value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


def _merge(into: dict, other: Mapping) -> None:
    for key, value in other.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
