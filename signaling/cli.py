"""The `pysfu` command line: `pysfu serve` and `pysfu token create`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import signal
import sys
from typing import Any

from aiohttp import web

from .auth import DEFAULT_TTL, VideoGrant, create_token
from .config import ConfigError, ServerConfig, load_config
from .logs import setup_logging

log = logging.getLogger("pysfu")

SOURCES = ("camera", "microphone", "screen_share")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pysfu", description="A pure-Python WebRTC SFU.")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_serve(commands.add_parser("serve", help="run the SFU and its signaling server"))
    token = commands.add_parser("token", help="access tokens").add_subparsers(dest="token_command", required=True)
    _add_token_create(token.add_parser("create", help="mint a signed access token"))
    return parser


def _add_serve(serve: argparse.ArgumentParser) -> None:
    """Flags default to None: only flags given override env and YAML."""
    serve.add_argument("--config", metavar="FILE", help="YAML settings file (also PYSFU_CONFIG)")
    serve.add_argument("--host", help="HTTP/WebSocket listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="HTTP/WebSocket port (default 7880)")
    serve.add_argument(
        "--ice-address", action="append", metavar="ADDR",
        help="local address offered as an ICE host candidate; repeat for several "
        "(default: every non-loopback interface)",
    )
    serve.add_argument("--public-address", metavar="ADDR",
                       help="public address announced as well, for a server behind a 1:1 NAT")
    serve.add_argument("--udp-port-range", metavar="MIN-MAX",
                       help="a UDP port per peer connection from this range, e.g. 50000-60000, "
                       "instead of one shared port")
    serve.add_argument("--turn-url", action="append", metavar="URL",
                       help="TURN server sharing --turn-secret, e.g. turn:host:3478?transport=udp; repeatable")
    serve.add_argument("--turn-secret", metavar="SECRET",
                       help="coturn's static-auth-secret (better in PYSFU_ICE_SERVERS__TURN_SECRET)")
    serve.add_argument("--turn-ttl", type=int, metavar="SECONDS",
                       help="lifetime of the TURN credentials minted per participant (default 86400)")
    serve.add_argument("--stun-url", action="append", metavar="URL", help="STUN server for clients; repeatable")
    serve.add_argument("--udp-port", type=int, metavar="PORT",
                       help="the UDP port every peer connection shares, per ICE address (default 7882; "
                       "with --workers N, worker i uses PORT + i); 0: a port per connection, any free one")
    serve.add_argument("--receive-buffer-ms", type=int, metavar="MS",
                       help="single-port mode: media that waited this long in the shared socket is "
                       "dropped instead of delayed (handshakes are kept; default 250)")
    serve.add_argument("--no-load-shedding", action="store_true", default=None,
                       help="never shed video when the event loop is overloaded (still measured)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log level (default info)")
    serve.add_argument("--log-json", action="store_true", default=None, help="log one JSON object per line")
    serve.add_argument("--keys", metavar="KEY:SECRET,...", help="API key/secret pairs (also PYSFU_KEYS)")
    serve.add_argument("--dev", action="store_true", default=None,
                       help="development mode: /dev/token hands the demo page tokens")
    serve.add_argument("--webhook-url", action="append", metavar="URL", help="POST room events here; repeatable")
    serve.add_argument("--shutdown-grace", type=float, metavar="SECONDS",
                       help="on SIGTERM, wait this long for clients to go (default 10)")
    serve.add_argument("--resume-grace", type=float, metavar="SECONDS",
                       help="how long a dropped participant may resume before it leaves, 0 = never (default 20)")
    serve.add_argument("--room-capacity", type=int, metavar="N", help="participants per room (default 150)")
    serve.add_argument("--joins-per-minute", type=int, metavar="N",
                       help="joins per client address per minute, 0 = unlimited (default 60)")
    serve.add_argument("--max-connections", type=int, metavar="N",
                       help="WebSocket connections at once (default 1000)")
    serve.add_argument("--connections-per-address", type=int, metavar="N",
                       help="WebSocket connections per client address, 0 = unlimited (default 100)")
    serve.add_argument("--workers", type=int, metavar="N",
                       help="worker processes, one event loop each (default: one per CPU core; 1: single process)")
    serve.add_argument("--worker-room-limit", type=int, metavar="N",
                       help="participants of a room on one worker before it spans another (default 100)")
    serve.add_argument("--no-uvloop", action="store_true", default=None, help="use asyncio's default event loop")
    cluster = serve.add_argument_group("cluster (many nodes through Redis; docs/cluster.md)")
    cluster.add_argument("--redis-url", metavar="URL", help="join the cluster at this Redis, e.g. redis://10.0.0.5:6379/0")
    cluster.add_argument("--node-id", metavar="ID", help="this node's name (default: hostname plus random hex)")
    cluster.add_argument("--node-url", metavar="URL",
                         help="ws:// URL clients reach this node at (default ws://HOST:PORT/ws)")
    cluster.add_argument("--heartbeat", type=float, metavar="SECONDS", help="seconds between heartbeats (default 2)")
    cluster.add_argument("--node-ttl", type=float, metavar="SECONDS",
                         help="a silent node and its rooms expire after this (default 6, at most 10)")


def _add_token_create(create: argparse.ArgumentParser) -> None:
    create.add_argument("--api-key", default=os.environ.get("PYSFU_API_KEY"), help="key (or PYSFU_API_KEY)")
    create.add_argument("--api-secret", default=os.environ.get("PYSFU_API_SECRET"),
                        help="its secret (or PYSFU_API_SECRET)")
    create.add_argument("--identity", required=True, help="participant identity (sub)")
    create.add_argument("--room", default="", help="room the token is for")
    create.add_argument("--name", default="", help="display name")
    create.add_argument("--metadata", default="", help="participant metadata")
    create.add_argument("--valid-for", type=float, default=DEFAULT_TTL, metavar="SECONDS",
                        help=f"lifetime (default {DEFAULT_TTL})")
    create.add_argument("--no-join", action="store_true", help="without roomJoin (admin-only tokens)")
    create.add_argument("--admin", action="store_true", help="grant roomAdmin")
    create.add_argument("--create", action="store_true", help="grant roomCreate")
    create.add_argument("--list", action="store_true", help="grant roomList")
    create.add_argument("--subscribe-only", action="store_true", help="canPublish=false")
    create.add_argument("--no-subscribe", action="store_true", help="canSubscribe=false")
    create.add_argument("--no-data", action="store_true", help="canPublishData=false")
    create.add_argument("--sources", metavar="LIST", help=f"canPublishSources, comma-separated from {', '.join(SOURCES)}")
    create.add_argument("--hidden", action="store_true", help="hidden participant")


def serve_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags, shaped like ServerConfig."""
    flags: dict[str, Any] = {
        "host": args.host, "port": args.port, "log_level": args.log_level,
        "log_format": "json" if args.log_json else None,
        "keys": args.keys, "dev": args.dev, "shutdown_grace": args.shutdown_grace,
        "uvloop": False if args.no_uvloop else None,
        "workers": args.workers, "worker_room_limit": args.worker_room_limit,
    }
    limits = {"room_capacity": args.room_capacity, "joins_per_minute": args.joins_per_minute,
              "max_connections": args.max_connections, "connections_per_address": args.connections_per_address}
    ice: dict[str, Any] = {
        "addresses": args.ice_address, "public_address": args.public_address, "udp_port": args.udp_port,
    }
    if args.udp_port_range:
        try:
            low, high = args.udp_port_range.split("-", 1)
            ice["port_min"], ice["port_max"] = int(low), int(high)
        except ValueError:
            raise ConfigError(f"--udp-port-range must look like 50000-60000, not {args.udp_port_range!r}") from None
    flags["limits"] = _given(limits)
    flags["webhooks"] = _given({"urls": args.webhook_url})
    flags["sfu"] = _given({"ice": _given(ice), "resume_grace": args.resume_grace,
                           "receive_buffer_ms": args.receive_buffer_ms,
                           "load": _given({"enabled": False if args.no_load_shedding else None})})
    flags["cluster"] = _given({"redis_url": args.redis_url, "node_id": args.node_id, "url": args.node_url,
                               "heartbeat": args.heartbeat, "ttl": args.node_ttl})
    flags["ice_servers"] = _given({"turn_urls": args.turn_url, "turn_secret": args.turn_secret,
                                   "turn_ttl": args.turn_ttl, "stun_urls": args.stun_url})
    return _given(flags)


def _given(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and v != {}}


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    try:
        return load_config(serve_flags(args), path=args.config)
    except ConfigError as exc:
        raise SystemExit(f"pysfu: {exc}")


def token_from_args(args: argparse.Namespace) -> str:
    if not args.api_key or not args.api_secret:
        raise SystemExit("pysfu: give --api-key and --api-secret (or PYSFU_API_KEY, PYSFU_API_SECRET)")
    sources = [s.strip() for s in args.sources.split(",")] if args.sources else []
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise SystemExit(f"pysfu: unknown source(s) {', '.join(unknown)}; use {', '.join(SOURCES)}")
    grant = VideoGrant(
        room=args.room, roomJoin=not args.no_join, roomAdmin=args.admin, roomCreate=args.create,
        roomList=args.list, canPublish=not args.subscribe_only, canSubscribe=not args.no_subscribe,
        canPublishData=not args.no_data, canPublishSources=sources, hidden=args.hidden,
    )
    if grant.room_join and not grant.room:
        raise SystemExit("pysfu: a join token needs --room (or pass --no-join for an admin token)")
    return create_token(args.api_key, args.api_secret, args.identity, grant,
                        name=args.name, metadata=args.metadata, ttl=args.valid_for)


def raise_open_file_limit() -> int:
    """Lift the soft limit on open files to the hard one, as Go servers do:
    the common 1024 is a few hundred participants' sockets, and idle
    connections must not make a call fail before max_connections does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def worker_count(config: ServerConfig) -> int:
    return config.workers or os.cpu_count() or 1


async def serve(config: ServerConfig) -> None:
    """Serve until SIGTERM/SIGINT, then drain for up to the grace period."""
    from .app import MediaPortError, create_app, drain, manage_garbage_collection
    from .scaling.cluster import ClusterError
    from .scaling.front import create_front_app, stop_workers

    open_files = raise_open_file_limit()
    if open_files != resource.RLIM_INFINITY and open_files < 4 * config.limits.max_connections:
        log.warning("%d open files allowed: fewer than 4 per connection of limits.max_connections (%d); "
                    "raise ulimit -n or lower max_connections", open_files, config.limits.max_connections)
    workers = worker_count(config)
    if workers > 1:
        try:
            app = create_front_app(config, workers)
        except ValueError as exc:  # e.g. too few UDP ports for the workers
            raise SystemExit(f"pysfu: {exc}") from None
        stopping = stop_workers
    else:
        app = create_app(config)
        manage_garbage_collection(app)
        stopping = drain
    runner = web.AppRunner(app, handle_signals=False)
    try:
        await runner.setup()
    except (ClusterError, MediaPortError) as exc:
        raise SystemExit(f"pysfu: {exc}") from None
    await web.TCPSite(runner, config.host, config.port).start()
    print(f"pysfu listening on http://{config.host}:{config.port} ({workers} worker{'s' * (workers > 1)})",
          file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutting down: draining for up to %.1f s", config.shutdown_grace)
    await stopping(app, config.shutdown_grace)
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "token":
        print(token_from_args(args))
        return
    config = config_from_args(args)
    setup_logging(config.log_level, config.log_format)
    if config.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
