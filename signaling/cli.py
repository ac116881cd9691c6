"""The `pysfu` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from aiohttp import web
from pydantic import ValidationError

from sfu.config import IceConfig, SfuConfig

from .config import ServerConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pysfu", description="A pure-Python WebRTC SFU.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the SFU and its signaling server")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP/WebSocket listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=7880, help="HTTP/WebSocket port (default 7880)")
    serve.add_argument(
        "--ice-address", action="append", default=[], metavar="ADDR",
        help="local address offered as an ICE host candidate; repeat for several "
        "(default: every non-loopback interface)",
    )
    serve.add_argument(
        "--public-address", metavar="ADDR",
        help="public address announced as well, for a server behind a 1:1 NAT",
    )
    serve.add_argument(
        "--udp-port-range", metavar="MIN-MAX",
        help="local UDP ports for media, e.g. 50000-60000 (default: any)",
    )
    serve.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"],
        help="log level (default info)",
    )
    serve.add_argument("--no-uvloop", action="store_true", help="use asyncio's default event loop")
    return parser


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    port_min = port_max = 0
    if args.udp_port_range:
        try:
            low, high = args.udp_port_range.split("-", 1)
            port_min, port_max = int(low), int(high)
        except ValueError:
            raise SystemExit(f"pysfu: --udp-port-range must look like 50000-60000, not {args.udp_port_range!r}")
    try:
        ice = IceConfig(
            addresses=args.ice_address, public_address=args.public_address,
            port_min=port_min, port_max=port_max,
        )
        return ServerConfig(host=args.host, port=args.port, log_level=args.log_level, sfu=SfuConfig(ice=ice))
    except ValidationError as exc:
        raise SystemExit(f"pysfu: invalid settings:\n{exc}")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.no_uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from .app import create_app

    print(f"pysfu listening on http://{config.host}:{config.port}", file=sys.stderr, flush=True)
    web.run_app(create_app(config), host=config.host, port=config.port, print=None)


if __name__ == "__main__":
    main()
