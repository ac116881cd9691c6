"""The shared socket of single-port mode queues a bounded time of ingress
(sfu/receive_buffers.py): overload drops, it does not delay."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from sfu import receive_buffers, udp_mux
from sfu.config import IceConfig, SfuConfig
from sfu.media_section import CodecInfo
from sfu.transport import PeerTransport

RMEM_MAX = int(Path("/proc/sys/net/core/rmem_max").read_text())


@pytest.mark.parametrize(
    "settings, size",
    [
        ({}, 1_250_000),  # 250 ms of 40 Mbit/s
        ({"receive_buffer_ms": 100, "udp_port_ingress_mbps": 8}, 100_000),
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
        assert mux.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * min(100_000, RMEM_MAX)
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
