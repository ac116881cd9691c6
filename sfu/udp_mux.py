"""Single UDP port mode: one socket per address shared by every ICE connection.

Like LiveKit's ``udp_port`` and mediasoup's WebRtcServer: operators open one
UDP port, not a range. Datagrams are routed to a connection by the STUN
USERNAME (our local ufrag) of the peer's binding requests, and by the remote
address afterwards. Datagrams from unknown addresses that are not STUN
requests for a known ufrag are dropped after one dict lookup.

The socket is drained by a reader callback (``recvfrom`` until EAGAIN, a
bounded number per loop turn) instead of one event-loop callback per
datagram. This module knows nothing of aioice: a connection is any object
with ``datagram_received(data, addr)`` (sfu/transport.py plugs aioice's
StunProtocol in).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import Optional, Protocol

log = logging.getLogger(__name__)

#: Datagrams read per loop turn at most, so other callbacks still run.
BATCH = 64
RECEIVE_BUFFER = 4 * 1024 * 1024
SEND_BUFFER = 4 * 1024 * 1024
STUN_MAGIC = b"\x21\x12\xa4\x42"
STUN_USERNAME = 0x0006
STUN_ATTRIBUTE = struct.Struct("!HH")


class Receiver(Protocol):
    def datagram_received(self, data: bytes, addr: tuple) -> None: ...


class UdpMux:
    """One bound UDP socket and the tables that route its datagrams."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.loop = loop
        self.sockname: tuple = sock.getsockname()[:2]
        self._v6 = sock.family == socket.AF_INET6
        #: local ufrag -> endpoint
        self.ufrags: dict[str, MuxEndpoint] = {}
        #: remote address -> endpoint
        self.routes: dict[tuple, MuxEndpoint] = {}
        self.dropped = 0
        self.closed = False
        loop.add_reader(sock.fileno(), self._readable)

    @classmethod
    def bind(cls, address: str, port: int) -> "UdpMux":
        """Bind ``address:port`` on the running loop (OSError if it is taken)."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            for option, size in ((socket.SO_RCVBUF, RECEIVE_BUFFER), (socket.SO_SNDBUF, SEND_BUFFER)):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, option, size)
                except OSError:
                    pass
            sock.bind((address, port))
            return cls(sock, asyncio.get_running_loop())
        except BaseException:
            sock.close()
            raise

    def endpoint(self, ufrag: str, receiver: Receiver) -> "MuxEndpoint":
        """A connection's view of the socket, found by ``ufrag``."""
        if ufrag in self.ufrags:
            raise ValueError(f"ICE ufrag {ufrag!r} is already in use on {self.sockname}")
        endpoint = MuxEndpoint(self, ufrag, receiver)
        self.ufrags[ufrag] = endpoint
        return endpoint

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for endpoint in list(self.ufrags.values()):
            endpoint.close()
        if not self.loop.is_closed():
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()

    # --- routing ----------------------------------------------------------------

    def _readable(self) -> None:
        recvfrom = self.sock.recvfrom
        routes = self.routes
        for _ in range(BATCH):
            try:
                data, addr = recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ICMP port unreachable for an earlier send
                continue
            if not data:
                continue
            if self._v6:
                addr = addr[:2]
            endpoint = routes.get(addr)
            if data[0] < 2:  # STUN: requests name their connection
                endpoint = self._stun_route(data, addr) or endpoint
            if endpoint is None:
                self.dropped += 1
                continue
            endpoint.receiver.datagram_received(data, addr)

    def _stun_route(self, data: bytes, addr: tuple) -> Optional["MuxEndpoint"]:
        """The endpoint a STUN request's USERNAME names; its address now routes there."""
        ufrag = stun_local_ufrag(data)
        endpoint = self.ufrags.get(ufrag) if ufrag else None
        if endpoint is not None:
            self._route(addr, endpoint)
        return endpoint

    def _route(self, addr: tuple, endpoint: "MuxEndpoint") -> None:
        previous = self.routes.get(addr)
        if previous is endpoint:
            return
        if previous is not None:
            previous.addresses.discard(addr)
        self.routes[addr] = endpoint
        endpoint.addresses.add(addr)


class MuxEndpoint:
    """Stands in for one connection's datagram transport (asyncio's interface:
    ``sendto``, ``close``, ``get_extra_info``)."""

    def __init__(self, mux: UdpMux, ufrag: str, receiver: Receiver) -> None:
        self.mux = mux
        self.ufrag = ufrag
        self.receiver = receiver
        self.addresses: set[tuple] = set()
        self.closed = False

    def sendto(self, data: bytes, addr: tuple) -> None:
        if self.closed:
            return
        if addr not in self.mux.routes:  # a check we start: its answer comes back here
            self.mux._route(addr, self)
        try:
            self.mux.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            pass  # socket buffer full: UDP drops
        except OSError as exc:
            log.debug("send to %s failed: %s", addr, exc)

    def get_extra_info(self, name: str, default=None):
        if name == "sockname":
            return self.mux.sockname
        return default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        """Forget this connection's ufrag and addresses; the receiver hears
        connection_lost on the next loop turn, as from a real transport."""
        if self.closed:
            return
        self.closed = True
        mux = self.mux
        if mux.ufrags.get(self.ufrag) is self:
            del mux.ufrags[self.ufrag]
        for addr in self.addresses:
            if mux.routes.get(addr) is self:
                del mux.routes[addr]
        self.addresses.clear()
        lost = getattr(self.receiver, "connection_lost", None)
        if lost is not None and not mux.loop.is_closed():
            mux.loop.call_soon(lost, None)


def stun_local_ufrag(data: bytes) -> Optional[str]:
    """The part before ':' of a STUN message's USERNAME (RFC 8489), if any."""
    if len(data) < 20 or data[4:8] != STUN_MAGIC:
        return None
    end = min(len(data), 20 + int.from_bytes(data[2:4], "big"))
    pos = 20
    while pos + 4 <= end:
        kind, length = STUN_ATTRIBUTE.unpack_from(data, pos)
        if kind == STUN_USERNAME:
            value = data[pos + 4 : pos + 4 + length]
            return value.split(b":", 1)[0].decode("ascii", "replace")
        pos += 4 + length + (-length % 4)
    return None


# --- the process's shared sockets ------------------------------------------------

_muxes: dict[tuple[str, int], UdpMux] = {}


def shared(address: str, port: int) -> UdpMux:
    """The mux bound to ``address:port`` on the running loop, bound on first use."""
    mux = _muxes.get((address, port))
    if mux is not None and (mux.closed or mux.loop is not asyncio.get_running_loop()):
        mux.close()  # left over from a finished event loop (tests)
        mux = None
    if mux is None:
        mux = _muxes[(address, port)] = UdpMux.bind(address, port)
    return mux


def open_shared(addresses: list[str], port: int) -> list[UdpMux]:
    """Bind every configured address at start-up, so a taken port fails early."""
    return [shared(address, port) for address in addresses]


def close_shared() -> None:
    for mux in _muxes.values():
        mux.close()
    _muxes.clear()


def shared_muxes() -> list[UdpMux]:
    return [mux for mux in _muxes.values() if not mux.closed]
