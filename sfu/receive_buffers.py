"""How much the kernel may queue on the media sockets: sized by latency.

A UDP receive buffer is a queue in front of the event loop. A big one turns
a loop that falls behind into seconds of latency (4 MiB held ≈ 3,500
datagrams of 1.2 kB: 3.5 s at 1,000 packets/s), all of it stale by the time
it is read. Sized to ``receive_buffer_ms`` of the socket's expected ingress,
what the loop cannot take in time is dropped instead (NACKs and the load
manager, sfu/load_manager.py, deal with that), so latency stays capped.

The kernel doubles the size asked (for its bookkeeping) and charges each
datagram its buffer's true size (≈ 2.3 kB for 1.2 kB of payload), so a size
asked in payload bytes holds about that many bytes of datagrams. It also
caps the size at ``net.core.rmem_max``, unless the server may force it (as
root: SO_RCVBUFFORCE, which the shared socket tries first).

Sized here: the shared socket of single-port mode, and a server peer
connection's own socket in port-range mode (one publisher's ingress, at
most ``CONNECTION_MBPS``). The shared socket is read knowing when each
datagram arrived (sfu/udp_mux.py): media older than ``receive_buffer_ms``
is dropped there, unread, and STUN, DTLS and RTCP are still handled, so its
kernel queue holds ``SHARED_QUEUE_FACTOR`` times that age: the kernel,
which cannot tell a handshake from media, should not be the one dropping.
Clients (signaling/client/, the benchmarks' peers) open theirs through the
same code and keep sfu/transport.py's RECEIVE_BUFFER: a test's or a load
generator's loop is allowed to be late.
"""

from __future__ import annotations

from . import transport, udp_mux
from .config import SfuConfig

MIN_SIZE = 64 * 1024  # bytes: a key frame's burst must fit
CONNECTION_MBPS = 10  # a publisher's camera, screen share and audio, with margin
SHARED_QUEUE_FACTOR = 4


def size(bitrate: float, ms: float) -> int:
    """Bytes that ``ms`` milliseconds of ``bitrate`` bits/s take."""
    return max(MIN_SIZE, int(bitrate / 8 * ms / 1000))


def shared_port(config: SfuConfig) -> int:
    """The one socket of single-port mode: every publisher of the worker."""
    return size(config.udp_port_ingress_mbps * 1_000_000, config.receive_buffer_ms * SHARED_QUEUE_FACTOR)


def per_connection(config: SfuConfig) -> int:
    """A server peer connection's own socket (port-range mode): one publisher."""
    return size(CONNECTION_MBPS * 1_000_000, config.receive_buffer_ms)


def apply(config: SfuConfig) -> None:
    """Size the server's sockets bound from now on (the settings are the process's)."""
    udp_mux.RECEIVE_BUFFER = shared_port(config)
    udp_mux.STALE_AFTER = config.receive_buffer_ms * 1_000_000
    transport.SERVER_RECEIVE_BUFFER = per_connection(config)
