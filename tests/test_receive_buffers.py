"""The shared socket of single-port mode queues a bounded time of ingress
(sfu/receive_buffers.py): overload drops, it does not delay."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from pathlib import Path

import pytest

from sfu import receive_buffers, udp_mux
from sfu.config import IceConfig, SfuConfig
from sfu.media_section import CodecInfo
from sfu.transport import PeerTransport

from .waiting import eventually

RMEM_MAX = int(Path("/proc/sys/net/core/rmem_max").read_text())


@pytest.mark.parametrize(
    "settings, size",
    [
        ({}, 5_000_000),  # 4 × 250 ms of 40 Mbit/s
        ({"receive_buffer_ms": 100, "udp_port_ingress_mbps": 8}, 400_000),
        ({"receive_buffer_ms": 20, "udp_port_ingress_mbps": 1}, receive_buffers.MIN_SIZE),
    ],
)
def test_sized_by_latency(settings, size):
    assert receive_buffers.shared_port(SfuConfig(**settings)) == size


async def test_the_shared_socket_gets_that_size():
    config = SfuConfig(receive_buffer_ms=100, udp_port_ingress_mbps=8)
    receive_buffers.apply(config)
    mux = udp_mux.UdpMux.bind("127.0.0.1", 0)
    try:
        # the kernel doubles what it is asked (bookkeeping), up to twice rmem_max
        # unless root forced it
        asked = 400_000 if os.geteuid() == 0 else min(400_000, RMEM_MAX)
        assert mux.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * asked
    finally:
        mux.close()
        receive_buffers.apply(SfuConfig())


def test_a_server_connection_is_sized_for_one_publisher():
    assert receive_buffers.per_connection(SfuConfig()) == 312_500  # 250 ms of 10 Mbit/s
    assert receive_buffers.per_connection(SfuConfig(receive_buffer_ms=20)) == receive_buffers.MIN_SIZE


def udp_socket_on(port: int) -> socket.socket:
    """A duplicate of this process's UDP socket bound to ``port``."""
    for fd in sorted(int(name) for name in os.listdir("/proc/self/fd")):
        try:
            sock = socket.fromfd(fd, socket.AF_INET, socket.SOCK_DGRAM)
        except OSError:
            continue
        name = sock.getsockname() if sock.type == socket.SOCK_DGRAM else None
        if isinstance(name, tuple) and name[1] == port:
            return sock
        sock.close()
    raise AssertionError(f"no UDP socket on port {port}")


async def test_a_server_connections_own_socket_gets_that_size():
    """Port-range mode: the server's socket for one peer connection."""
    receive_buffers.apply(SfuConfig(receive_buffer_ms=100))
    transport = PeerTransport(IceConfig(addresses=["127.0.0.1"], udp_port=0), lambda p: None, lambda p: None)
    try:
        transport.add_sendonly("audio", CodecInfo("audio/opus", 48000, 111, channels=2), "s", "t")
        sdp = await transport.create_offer()
        [port] = {int(line.split()[5]) for line in sdp.splitlines() if line.startswith("a=candidate")}
        with udp_socket_on(port) as sock:
            expected = receive_buffers.per_connection(SfuConfig(receive_buffer_ms=100))
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * min(expected, RMEM_MAX)
    finally:
        await transport.close()
        receive_buffers.apply(SfuConfig())


@pytest.mark.parametrize(
    "datagram, rtp",
    [
        (bytes([0x80, 96]) + bytes(10), True),  # VP8
        (bytes([0x90, 0xEF]) + bytes(10), True),  # marker bit, payload type 111
        (bytes([0x80, 200]) + bytes(10), False),  # RTCP sender report
        (bytes([0x81, 205]) + bytes(10), False),  # RTCP NACK
        (bytes([0x00, 0x01]) + bytes(10), False),  # STUN binding request
        (bytes([22, 0xFE]) + bytes(10), False),  # DTLS handshake
    ],
)
def test_what_counts_as_media(datagram, rtp):
    assert udp_mux.is_rtp(datagram) is rtp


class Inbox:
    def __init__(self) -> None:
        self.datagrams: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.datagrams.append(data)


def rtp_packet(seq: int) -> bytes:
    return bytes([0x80, 96]) + seq.to_bytes(2, "big") + bytes(8) + bytes(1000)


def wait_for_arrival_times(sock: socket.socket, sender: socket.socket) -> None:
    """Until the kernel stamps datagrams when they arrive. The first socket
    to ask turns stamping on for the whole system, lazily (a deferred static
    key): a datagram read before that is stamped when read, so it never
    looks late. ``sock`` asks for stamps and stays open, so it stays on."""
    deadline = time.monotonic() + 10
    while True:
        sender.sendto(b"probe", sock.getsockname())
        time.sleep(0.05)
        _, ancillary, _, _ = sock.recvmsg(64, 64)
        stamp = next((data for level, kind, data in ancillary if kind == udp_mux.SO_TIMESTAMPNS), None)
        if stamp is not None:
            seconds, nanoseconds = struct.unpack("qq", stamp[:16])
            if time.time_ns() - (seconds * 1_000_000_000 + nanoseconds) >= 40_000_000:
                return
        assert time.monotonic() < deadline, "the kernel never stamped datagrams on arrival"


@contextlib.contextmanager
def shared_socket(stale_after: int):
    """A shared socket dropping media older than ``stale_after`` ns, a sender
    it routes to an Inbox, and that Inbox."""
    before = udp_mux.STALE_AFTER
    udp_mux.STALE_AFTER = stale_after
    mux = udp_mux.UdpMux.bind("127.0.0.1", 0)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stamped = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sender.bind(("127.0.0.1", 0))
        stamped.bind(("127.0.0.1", 0))
        stamped.setsockopt(socket.SOL_SOCKET, udp_mux.SO_TIMESTAMPNS, 1)
        wait_for_arrival_times(stamped, sender)
        inbox = Inbox()
        mux.endpoint("abcd", inbox).confirm(sender.getsockname())
        yield lambda datagram: sender.sendto(datagram, mux.sockname), inbox
    finally:
        stamped.close()
        sender.close()
        mux.close()
        udp_mux.STALE_AFTER = before


async def test_a_late_loop_drops_stale_media_and_keeps_the_handshakes():
    """The loop falls behind while media, a DTLS flight, RTCP and a STUN check
    wait in the shared socket: the stale media is dropped unread, the rest
    is handled, and media that arrives after is forwarded."""
    with shared_socket(stale_after=1_000_000_000) as (send, inbox):
        dtls = bytes([22, 0xFE, 0xFD]) + bytes(60)
        rtcp = bytes([0x81, 201, 0, 7]) + bytes(28)
        stun = (b"\x00\x01\x00\x0c" + udp_mux.STUN_MAGIC + bytes(12)
                + b"\x00\x06\x00\x08abcd:efg")
        dropped = udp_mux.DATAGRAMS_DROPPED["stale"]
        for datagram in [*map(rtp_packet, range(100)), dtls, rtcp, stun]:
            send(datagram)
        time.sleep(1.2)  # the loop is late on purpose: everything queued is now stale
        for seq in range(100, 110):
            send(rtp_packet(seq))
        await eventually(lambda: len(inbox.datagrams) >= 13, message=lambda: f"got {len(inbox.datagrams)}")
        media = [int.from_bytes(d[2:4], "big") for d in inbox.datagrams if udp_mux.is_rtp(d)]
        assert media == list(range(100, 110))
        assert [d for d in inbox.datagrams if not udp_mux.is_rtp(d)] == [dtls, rtcp, stun]
        assert udp_mux.DATAGRAMS_DROPPED["stale"] - dropped == 100


async def test_how_long_media_waited_is_the_loops_lag():
    """The load manager sees the wait of the oldest datagram read (sfu/loop_load.py)."""
    with shared_socket(stale_after=10_000_000_000) as (send, inbox):  # nothing stale, however busy
        udp_mux.take_worst_wait()
        send(rtp_packet(1))
        time.sleep(0.15)  # the loop is late on purpose
        await eventually(lambda: inbox.datagrams)
        assert 0.15 <= udp_mux.take_worst_wait() < 10
        assert udp_mux.take_worst_wait() == 0  # taken: the next sample starts over
