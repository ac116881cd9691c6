"""The shared socket of single-port mode queues a bounded time of ingress
(sfu/receive_buffers.py): overload drops, it does not delay."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sfu import receive_buffers, udp_mux
from sfu.config import SfuConfig

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
