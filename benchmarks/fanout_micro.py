"""In-process fan-out micro benchmark: one received packet × N down-tracks.

The real forwarding objects, no server around them: a VP8 packet goes into
``sfu.stream.ReceivedStream.on_rtp``, which hands it to N
``sfu.downtrack.DownTrack.write`` calls, each rewriting the header for its
subscriber and sending through ``sfu.transport.PeerTransport.rtp_sender()``
with that subscriber's own pylibsrtp session. Each down-track's transport is
one end of a real aiortc peer pair over loopback (ICE, DTLS, SRTP keys
negotiated as in the server), built through the public API: the server end
offers a send-only VP8 m-line (``add_sendonly``, ``create_offer``,
``accept_answer``) and the other end answers, as a subscriber does.

Two modes, each with its own N pairs:

* port range: each server end has its own UDP socket (uvloop ``sendto`` per
  copy);
* single port: every server end shares one ``sfu.udp_mux`` socket; copies go
  into its ``SendBatch`` and leave in one ``sendmmsg`` per received packet
  (the server flushes the batch once per loop turn; here a turn is one
  packet).

Where the datagrams go: once connected, the subscriber ends' sockets are
handed (``pass_fds``) to a sink process that drains them with epoll and
``recv_into`` on the other CPU, so the measured process never reads a
datagram during a round (the rounds run without yielding to the event loop,
so the in-process subscriber ends see nothing then). Between rounds the sink
stops reading, and the loop runs: ICE consent and DTLS go on as usual.

The figure is the sending process's CPU (getrusage user + system) per copy:
the whole of ``on_rtp`` (its per-received-packet work amortised over the N
copies), header rewrite, NACK history, SRTP protect, the send and the
kernel's loopback delivery. Modes alternate within each round; the report
gives median [min–max] over the rounds, the user/system split, and the
ratio to the native floor of this machine (4.8 µs per copy: C rewrite +
libsrtp + one sendmmsg, /work/shared/reviews/forwarding-profile.md §3).

    python -m benchmarks.fanout_micro --subscribers 32 --packets 2000 --rounds 5
    python -m benchmarks.fanout_micro --subscribers 2 --packets 200 --rounds 2   # smoke test

Everything is on 127.0.0.1 and bounded in time; the sink dies with this
process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import select
import socket
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from sfu import udp_mux
from sfu.codecs import handler
from sfu.config import IceConfig, SfuConfig
from sfu.downtrack import DownTrack
from sfu.media_section import CodecInfo, MediaSection
from sfu.published_track import PublishedTrack
from sfu.rtp import HEADER
from sfu.stream import ReceivedStream
from sfu.transport import PeerTransport

from .forwarding import ROOT, free_udp_port
from .pinning import child_setup, cpu_sets, describe, pin_self

FLOOR_US = 4.8  # native fan-out per copy, this machine (forwarding-profile.md §3)
VP8 = CodecInfo("video/VP8", 90000, 96)
PUBLISHER_SSRC = 0x5EED
PACKETS_PER_FRAME = 33  # the forwarding benchmark's 1,000 packets/s at 30 frames/s
KEY_HEADER = bytes([0x10, 0x02, 0x00]) + b"\x9d\x01\x2a" + struct.pack("<HH", 1280, 720)
DELTA_HEADER = bytes([0x11, 0x02, 0x00])
MODES = ("port range", "single port")
CONNECT_TIMEOUT = 30.0


# --- the forwarding objects: the micro's only contact with sfu.stream / sfu.downtrack ---


@dataclass
class Fanout:
    on_rtp: Callable[[bytes, float], None]  # one received packet, and when it came
    sent: Callable[[], int]  # copies the down-tracks sent so far
    close: Callable[[], None]


def build_fanout(subscribers: list[tuple[PeerTransport, MediaSection]]) -> Fanout:
    """A published VP8 camera read by one down-track per subscriber transport,
    built as sfu.publisher and sfu.subscriber build them."""
    config = SfuConfig()
    track = PublishedTrack("TR_micro", "PA_micro", "video", "0", VP8, "camera")
    stream = ReceivedStream("video", PUBLISHER_SSRC, VP8.clock_rate, handler("VP8"),
                            lambda rtcp: None, 1, 4096, config.keyframe_interval_ms / 1000,
                            cache_seconds=config.cache_ms / 1000)
    track.set_layer(0, stream)
    downtracks = []
    for transport, section in subscribers:
        downtrack = DownTrack(track, transport)
        downtrack.bind(section)
        track.add_downtrack(downtrack)
        downtrack.set_target(0)  # forwards from the next key frame
        downtracks.append(downtrack)
    return Fanout(stream.on_rtp, lambda: sum(d.packets_sent for d in downtracks), track.close)


# --- peer pairs ---------------------------------------------------------------------


@dataclass
class Pair:
    server: PeerTransport  # the SFU's end: what the down-track sends through
    client: PeerTransport  # the subscriber's end
    section: MediaSection  # what the server end sends on its m-line


async def connect_pair(server_ice: IceConfig) -> Pair:
    server = PeerTransport(server_ice, lambda packet: None, lambda packet: None)
    client = PeerTransport(IceConfig(addresses=["127.0.0.1"], udp_port=0), lambda packet: None, lambda packet: None)
    transceiver = server.add_sendonly("video", VP8, "micro", "micro-video")
    await server.accept_answer(await client.answer(await server.create_offer()))
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while not (server.connected and client.connected):
        if time.monotonic() > deadline:
            raise TimeoutError("a peer pair did not connect over loopback")
        await asyncio.sleep(0.02)
    return Pair(server, client, server.sent_section(transceiver))


def client_port(pair: Pair) -> int:
    """The subscriber end's UDP port, from its own SDP (one host candidate, 127.0.0.1)."""
    found = re.search(r"^a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host", pair.client.pc.localDescription.sdp,
                      re.M)
    if found is None:
        raise RuntimeError("the subscriber end has no 127.0.0.1 host candidate")
    return int(found.group(1))


def sockets_on(ports: set[int]) -> dict[int, int]:
    """port -> fd of this process's UDP sockets bound to 127.0.0.1 on those ports."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            probe = socket.socket(fileno=os.dup(fd))  # family and type read from the fd
        except OSError:
            continue
        with probe:
            try:
                if probe.type != socket.SOCK_DGRAM or probe.family != socket.AF_INET:
                    continue
                host, port = probe.getsockname()
            except (OSError, ValueError):
                continue
        if host == "127.0.0.1" and port in ports:
            found[port] = fd
    return found


# --- the sink process --------------------------------------------------------------


def sink_main(fds: list[int]) -> None:
    """Drain the given sockets while told to ("on" / "off" on stdin; "off"
    answers with the datagrams read since "on")."""
    socks = [socket.socket(fileno=fd) for fd in fds]
    for sock in socks:
        sock.setblocking(False)
    poll = select.epoll()
    poll.register(0, select.EPOLLIN)  # stdin: one command at a time, each answered
    by_fd = {sock.fileno(): sock for sock in socks}
    buffer = bytearray(2048)
    count = 0
    stopping = False
    emit({"event": "ready"})
    while True:
        events = poll.poll(0.02)
        if not events and stopping:  # nothing left in flight: stop reading
            for fd in by_fd:
                poll.unregister(fd)
            stopping = False
            emit({"event": "off", "received": count})
        for fd, _ in events:
            sock = by_fd.get(fd)
            if sock is None:
                command = os.read(0, 64).strip()
                if command in (b"", b"quit"):
                    return
                if command == b"on":
                    count = 0
                    for each in by_fd:
                        poll.register(each, select.EPOLLIN)
                    emit({"event": "on"})
                elif command == b"off":
                    stopping = True
                continue
            recv_into = sock.recv_into
            while True:
                try:
                    recv_into(buffer)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    continue
                count += 1


def emit(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


class Sink:
    """The sink process, from this side. Spoken to with blocking calls, so that
    the event loop (and with it the subscriber ends' own readers) stays still
    from a round's "on" until the sink has drained it."""

    def __init__(self, fds: list[int], cpus: Optional[set[int]]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fanout_micro", "--sink", ",".join(map(str, fds))],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=fds,
            preexec_fn=child_setup(cpus))
        self._expect("ready")

    def _expect(self, event: str, timeout: float = 30.0) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        message = json.loads(line) if line else {}
        if message.get("event") != event:
            raise RuntimeError(f"the sink said {line!r}, not {event!r}")
        return message

    def _tell(self, command: bytes) -> None:
        self.proc.stdin.write(command + b"\n")
        self.proc.stdin.flush()

    def on(self) -> None:
        self._tell(b"on")
        self._expect("on")

    def off(self) -> int:
        """Stop once everything sent has been read; how many datagrams were."""
        self._tell(b"off")
        return self._expect("off")["received"]

    def stop(self) -> None:
        try:
            self._tell(b"quit")
            self.proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


# --- the publisher's packets -------------------------------------------------------


class Packets:
    """VP8 packets of one publisher stream, numbered on from one round to the next
    (libsrtp refuses to protect the same index twice)."""

    def __init__(self, payload_size: int) -> None:
        self.payload_size = payload_size
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.index = 0
        self.filler = bytes((i * 7 + 3) & 0xFF for i in range(payload_size))

    def next_round(self, count: int) -> list[bytes]:
        packets = []
        for _ in range(count):
            at = self.index % PACKETS_PER_FRAME
            last = at == PACKETS_PER_FRAME - 1
            if at == 0:
                header = b"\x10" + (KEY_HEADER if self.index == 0 else DELTA_HEADER)
            else:
                header = b"\x00"
            packets.append(HEADER.pack(0x80, (0x80 if last else 0) | VP8.payload_type, self.seq, self.ts,
                                       PUBLISHER_SSRC) + header + self.filler[len(header):])
            self.seq = (self.seq + 1) & 0xFFFF
            if last:
                self.ts = (self.ts + 3000) & 0xFFFFFFFF
            self.index += 1
        return packets


# --- a run -------------------------------------------------------------------------


@dataclass
class Mode:
    name: str
    pairs: list[Pair]
    fanout: Fanout
    mux: Optional[udp_mux.UdpMux]  # single port: the shared socket, flushed once per packet
    packets: Packets  # its publisher stream (each mode's stream starts with its own key frame)
    rounds: list[dict] = field(default_factory=list)


def cpu_seconds() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def send_round(mode: Mode, packets: list[bytes]) -> tuple[float, float, int]:
    """Every packet through the fan-out, without yielding to the loop:
    (user s, system s, copies sent)."""
    on_rtp, monotonic = mode.fanout.on_rtp, time.monotonic
    flush = mode.mux.batch.flush if mode.mux is not None else None
    sent0 = mode.fanout.sent()
    user0, sys0 = cpu_seconds()
    if flush is None:
        for packet in packets:
            on_rtp(packet, monotonic())
    else:
        for packet in packets:
            on_rtp(packet, monotonic())
            flush()
    user1, sys1 = cpu_seconds()
    return user1 - user0, sys1 - sys0, mode.fanout.sent() - sent0


async def build_mode(name: str, subscribers: int, payload_size: int) -> Mode:
    if name == "single port":
        port = free_udp_port()
        ice = IceConfig(addresses=["127.0.0.1"], udp_port=port)
    else:  # a port per connection
        ice = IceConfig(addresses=["127.0.0.1"], udp_port=0)
    pairs = [await connect_pair(ice) for _ in range(subscribers)]
    mux = udp_mux.shared("127.0.0.1", ice.udp_port) if ice.udp_port else None
    return Mode(name, pairs, build_fanout([(p.server, p.section) for p in pairs]), mux, Packets(payload_size))


async def run(args: argparse.Namespace) -> int:
    server_cpus, sink_cpus = cpu_sets(not args.no_pin)
    pin_self(server_cpus)
    modes = [await build_mode(name, args.subscribers, args.payload_size) for name in args.modes.split(",")]
    pairs = [pair for mode in modes for pair in mode.pairs]
    ports = {client_port(pair) for pair in pairs}
    fds = sockets_on(ports)
    if len(fds) != len(ports):
        raise RuntimeError(f"found {len(fds)} of the {len(ports)} subscriber sockets")
    sink = Sink(list(fds.values()), sink_cpus)
    print(f"fan-out micro: {args.subscribers} down-tracks per received packet, {args.packets} packets "
          f"of {args.payload_size} bytes per round, {args.rounds} rounds (+1 warm-up), modes "
          f"{', '.join(m.name for m in modes)}; this process on CPU {describe(server_cpus)}, "
          f"the sink on CPU {describe(sink_cpus)}", flush=True)
    try:
        for number in range(args.rounds + 1):  # round 0 warms up (and carries the key frame)
            order = modes if number % 2 == 0 else modes[::-1]
            for mode in order:
                batch = mode.packets.next_round(args.packets)
                sink.on()
                user, system, copies = send_round(mode, batch)
                received = sink.off()
                await asyncio.sleep(args.pause)  # consent checks and DTLS timers run here
                if number == 0:
                    continue
                mode.rounds.append({"user_us": user * 1e6 / max(1, copies),
                                    "sys_us": system * 1e6 / max(1, copies),
                                    "copies": copies, "expected": args.packets * args.subscribers,
                                    "received": received})
                r = mode.rounds[-1]
                print(f"round {number} {mode.name}: {r['user_us'] + r['sys_us']:.2f} µs per copy "
                      f"(user {r['user_us']:.2f}, system {r['sys_us']:.2f}); {copies} copies sent of "
                      f"{r['expected']}, {received} read by the sink", flush=True)
    finally:
        sink.stop()
        for mode in modes:
            mode.fanout.close()
        await asyncio.gather(*(t.close() for pair in pairs for t in (pair.server, pair.client)),
                             return_exceptions=True)
        udp_mux.close_shared()
    print(report(modes))
    return 0


def report(modes: list[Mode]) -> str:
    def span(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} [{min(values):.2f}–{max(values):.2f}]"

    head = ("| mode | rounds | µs per copy | user µs | system µs | kernel share % | / native floor "
            f"{FLOOR_US:g} µs | sink read |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    medians = {}
    for mode in modes:
        rounds = mode.rounds
        if not rounds:
            continue
        total = [r["user_us"] + r["sys_us"] for r in rounds]
        medians[mode.name] = statistics.median(total)
        share = [r["sys_us"] / t * 100 for r, t in zip(rounds, total) if t]
        read = sum(r["received"] for r in rounds) / max(1, sum(r["expected"] for r in rounds)) * 100
        rows.append(f"| {mode.name} | {len(rounds)} | {span(total)} | {span([r['user_us'] for r in rounds])} | "
                    f"{span([r['sys_us'] for r in rounds])} | {span(share)} | "
                    f"{medians[mode.name] / FLOOR_US:.2f}x | {read:.1f} % |")
        if any(r["copies"] != r["expected"] for r in rounds):
            rows.append(f"WARNING: {mode.name}: some copies were not sent (not connected?)")
        if read < 99:
            rows.append(f"WARNING: {mode.name}: the sink read only {read:.1f} % of the copies")
    if len(medians) == 2:
        (a, ma), (b, mb) = medians.items()
        rows.append(f"{b} / {a} per copy (medians): {mb:.2f} / {ma:.2f} = {mb / ma:.2f}x")
    return "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fanout_micro",
                                     description="CPU per copy of the real fan-out, in-process.")
    parser.add_argument("--subscribers", type=int, default=32, help="down-tracks per received packet")
    parser.add_argument("--packets", type=int, default=2000, help="received packets per round and mode")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (after one warm-up)")
    parser.add_argument("--payload-size", type=int, default=1100, help="RTP payload bytes")
    parser.add_argument("--modes", default=",".join(MODES), help="port range, single port, or both")
    parser.add_argument("--pause", type=float, default=0.2, help="seconds the loop runs between rounds")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not put this process on CPU 0 and the sink on CPU 1")
    parser.add_argument("--sink", help=argparse.SUPPRESS)  # internal: run as the sink on these fds
    return parser


def main(argv: Optional[list[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    if args.sink:
        sink_main([int(fd) for fd in args.sink.split(",")])
        return
    for name in args.modes.split(","):
        if name not in MODES:
            raise SystemExit(f"unknown mode {name!r} (known: {', '.join(MODES)})")
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        sys.exit(runner.run(asyncio.wait_for(run(args), args.rounds * 60 + 300)))


if __name__ == "__main__":
    main()
