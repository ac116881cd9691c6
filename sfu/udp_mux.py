"""Single UDP port mode: one socket per address shared by every ICE connection.

Like LiveKit's ``udp_port`` and mediasoup's WebRtcServer: operators open one
UDP port, not a range. A STUN binding request goes to the connection its
USERNAME (our local ufrag) names; every other datagram goes by its source
address. An address is routed to a connection only once that connection
verified a check from it (``MuxEndpoint.confirm``, called after aioice
checked MESSAGE-INTEGRITY), or while it sends its own checks there (their
answers must come back): a USERNAME alone never moves an address, and
the address a connected connection selected is never moved at all (a
participant holds valid credentials for its own connection, so a check
forged from another's address would otherwise pass).
Datagrams from unknown addresses that are not STUN requests for a known
ufrag are dropped after one dict lookup.

The socket is drained by a reader callback instead of one event-loop
callback per datagram: ``recvmmsg(2)`` reads up to 64 datagrams into C
memory per call (``ReceiveBatch``, sfu/datagram_batches.py), at most ``TURN`` datagrams per loop turn
so other callbacks still run; each becomes one bytes object, and its source
address is decoded once per sender (a bounded cache of raw socket address ->
``(host, port)``).

Video waits while audio goes first: an endpoint whose connection told it
which payload types are video (``video_types``) gets its video through a
``VideoBacklog`` (sfu/video_backlog.py), served for a bounded time at the
end of each reader turn, and everything else as it is read. When the loop
falls behind, the media that waited longer than ``STALE_AFTER`` (its
arrival time is the kernel's, read with the datagram) is dropped unread,
and everything else is still handled:
STUN, DTLS and RTCP are what a joining participant's handshake and every
subscriber's feedback are made of, and a kernel that dropped them with the
media would turn each loss into a retransmission timer of a second or more
(sfu/receive_buffers.py sizes the kernel's queue well past that age).

Forwarded media is written straight into a ``SendBatch`` (C memory; SRTP
protects it there) and leaves in one ``sendmmsg(2)`` call at the end of that
reader turn: one syscall and no Python bytes object per copy.
This module knows nothing of aioice: a connection is any object with
``datagram_received(data, addr)`` (sfu/transport.py plugs aioice's
StunProtocol in).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from typing import Optional, Protocol

from .datagram_batches import ReceiveBatch, SendBatch, ffi
from .metrics import DATAGRAMS_DROPPED
from .video_backlog import VideoBacklog

log = logging.getLogger(__name__)


#: Datagrams read per loop turn at most (a few recvmmsg calls), so other callbacks still run.
TURN = 256
#: Source addresses whose decoded form is cached; past that the cache starts over.
ADDRESS_CACHE = 4096
#: Bytes the shared socket may queue: ≈ 1 s of 40 Mbit/s (sfu/receive_buffers.py
#: sets it from the settings at start), so that the kernel keeps the handshakes.
RECEIVE_BUFFER = 5_000_000
#: Nanoseconds media may wait in the socket; older RTP is dropped unread:
#: a late loop drops, it does not delay (receive_buffer_ms, 250 ms).
STALE_AFTER = 250_000_000
#: Linux: each datagram's arrival time (CLOCK_REALTIME) as a control message. The
#: kernel turns stamping on lazily: the very first datagrams are stamped when read.
SO_TIMESTAMPNS = 35
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33  # Linux: past net.core.[rw]mem_max (CAP_NET_ADMIN)
SEND_BUFFER = 4 * 1024 * 1024
STUN_MAGIC = b"\x21\x12\xa4\x42"
STUN_USERNAME = 0x0006
STUN_BINDING_REQUEST = b"\x00\x01"
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
        self.batch = SendBatch(sock)
        self.batch.on_queued = self.queued
        self.inbox = ReceiveBatch(sock)
        self.backlog = VideoBacklog(on_drop=_count_drop, on_wait=_note_wait)
        #: raw socket address (as recvmmsg wrote it) -> (host, port)
        self._addresses: dict[bytes, tuple] = {}
        self._reading = False
        self._flush_scheduled = False
        self._backlog_scheduled = False
        loop.add_reader(sock.fileno(), self._readable)

    @classmethod
    def bind(cls, address: str, port: int) -> "UdpMux":
        """Bind ``address:port`` on the running loop (OSError if it is taken)."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            _size_buffers(sock)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            try:
                sock.bind((address, port))
            except OSError as exc:
                raise OSError(exc.errno, f"UDP {address}:{port}: {exc.strerror}") from None
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
        self.backlog.clear()
        for endpoint in list(self.ufrags.values()):
            endpoint.close()
        if not self.loop.is_closed():
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()

    # --- routing ----------------------------------------------------------------

    def sockaddr(self, addr: tuple):
        """``addr`` as a C socket address, for SendBatch.put (``address_of``)."""
        if self._v6:
            packed = struct.pack("=HH4x16s4x", socket.AF_INET6, socket.htons(addr[1]),
                                 socket.inet_pton(socket.AF_INET6, addr[0]))
        else:
            packed = struct.pack("=HH4s8x", socket.AF_INET, socket.htons(addr[1]), socket.inet_aton(addr[0]))
        return ffi.new("char[]", packed)

    def queued(self) -> None:
        """A batch got its first datagram: make sure it leaves this loop turn."""
        if not self._reading and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self.closed:
            self.batch.flush()

    def _readable(self) -> None:
        self._reading = True
        try:
            self._drain()
            # this turn's slice of video, unless one is already due
            if not self._backlog_scheduled and self.backlog.serve(STALE_AFTER):
                self._serve_later()
        finally:
            self._reading = False
            self.batch.flush()

    def _serve_later(self) -> None:
        """Video still waits: another slice next loop turn, socket readable or not."""
        if not self.closed:
            self._backlog_scheduled = True
            self.loop.call_soon(self._serve_backlog)

    def _serve_backlog(self) -> None:
        self._backlog_scheduled = False
        if self.closed:
            return
        self._reading = True
        try:
            if self.backlog.serve(STALE_AFTER):
                self._serve_later()
        finally:
            self._reading = False
            self.batch.flush()

    def _drain(self) -> None:
        inbox = self.inbox
        routes = self.routes
        addresses = self._addresses
        backlog = self.backlog
        data_of, size = inbox.data, inbox.DATAGRAM
        keys, names, name_size, v6 = inbox.keys, inbox.names, inbox.name_size, self._v6
        now = time.time_ns()
        deadline = now - STALE_AFTER
        for _ in range(TURN // inbox.SIZE):
            count = inbox.receive()
            first = inbox.arrival(0) if count else 0
            if first:
                _note_wait(now - first)
            stale = inbox.arrived_before(count, deadline)
            # one datagram and no video waiting: nothing to go before, no queue to pass through
            queue = backlog if count > 1 or backlog else None
            for index, length in enumerate(inbox.lengths[:count].tolist()):
                if not length:
                    continue
                start = index * size
                data = data_of[start:start + length]
                if index < stale and is_rtp(data):
                    DATAGRAMS_DROPPED["stale"] += 1
                    continue
                key = names[index * name_size:(index + 1) * name_size] if v6 else keys[index * 2]
                addr = addresses.get(key) or self._decode(key, index)
                endpoint = routes.get(addr)
                if data[0] < 2:  # STUN: requests name their connection
                    endpoint = self._named(data) or endpoint
                if endpoint is None:
                    self.dropped += 1
                    DATAGRAMS_DROPPED["unrouted"] += 1
                    continue
                video = endpoint.video_types
                if queue is not None and video is not None and video[data[1]] and 127 < data[0] < 192:
                    queue.add(endpoint, data, addr, inbox.arrival(index) or now)
                    continue
                endpoint.receiver.datagram_received(data, addr)
            if count < inbox.SIZE:  # the socket is drained
                return

    def _decode(self, key, index: int) -> tuple:
        """(host, port) of datagram ``index``'s source, cached under ``key``."""
        name = self.inbox.source(index)
        port = int.from_bytes(name[2:4], "big")
        if self._v6:
            addr = (socket.inet_ntop(socket.AF_INET6, name[8:24]), port)
        else:
            addr = (socket.inet_ntop(socket.AF_INET, name[4:8]), port)
        if len(self._addresses) >= ADDRESS_CACHE:
            self._addresses.clear()
        self._addresses[key] = addr
        return addr

    def _named(self, data: bytes) -> Optional["MuxEndpoint"]:
        """The endpoint a STUN request's USERNAME names (routes stay as they are)."""
        ufrag = stun_local_ufrag(data)
        return self.ufrags.get(ufrag) if ufrag else None

    def _route(self, addr: tuple, endpoint: "MuxEndpoint") -> None:
        previous = self.routes.get(addr)
        if previous is endpoint:
            return
        if previous is not None:
            if previous.selected == addr:
                return
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
        #: The remote address of the connection's selected pair, once connected.
        self.selected: Optional[tuple] = None
        #: Indexed by an RTP packet's second byte (marker bit and payload
        #: type): true for video, which may wait behind audio; None: nothing waits.
        self.video_types: Optional[bytes] = None
        self.closed = False

    def sendto(self, data: bytes, addr: tuple) -> None:
        if self.closed:
            return
        if data.startswith(STUN_BINDING_REQUEST) and addr not in self.mux.routes:
            self.mux._route(addr, self)  # a check we start: its answer comes back here
        try:
            self.mux.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            pass  # socket buffer full: UDP drops
        except OSError as exc:
            log.debug("send to %s failed: %s", addr, exc)

    def confirm(self, addr: tuple) -> None:
        """A check from ``addr`` passed USERNAME and MESSAGE-INTEGRITY: route
        its datagrams here."""
        if not self.closed:
            self.mux._route(addr, self)

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


def video_types(payload_types) -> bytes:
    """``MuxEndpoint.video_types`` for these video payload types (those
    RTCP's packet types would shadow, 64-95, are left out: RFC 5761)."""
    table = bytearray(256)
    for payload_type in payload_types:
        if 0 <= payload_type < 64 or 95 < payload_type < 128:
            table[payload_type] = table[payload_type | 0x80] = 1
    return bytes(table)


def is_rtp(data: bytes) -> bool:
    """RTP rather than RTCP, STUN or DTLS (RFC 7983 and RFC 5761: RTCP's
    packet types 192-223 sit where RTP's marker bit and payload type are)."""
    return 127 < data[0] < 192 and len(data) > 1 and not 191 < data[1] < 224


def _size_buffers(sock: socket.socket) -> None:
    """Ask for the queue sizes; as root, past ``net.core.rmem_max``."""
    for forced, option, size in ((SO_RCVBUFFORCE, socket.SO_RCVBUF, RECEIVE_BUFFER),
                                 (SO_SNDBUFFORCE, socket.SO_SNDBUF, SEND_BUFFER)):
        for name in (forced, option):
            try:
                sock.setsockopt(socket.SOL_SOCKET, name, size)
                break
            except OSError:
                continue


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


# --- how late the loop reads ---------------------------------------------------

_worst_wait = 0  # ns: the longest a datagram waited in a shared socket since the last take


def _count_drop(reason: str) -> None:
    DATAGRAMS_DROPPED[reason] += 1


def _note_wait(wait: int) -> None:
    global _worst_wait
    if wait > _worst_wait:
        _worst_wait = wait


def take_worst_wait() -> float:
    """Seconds the longest-waiting datagram read since the last call had
    waited in its socket (the load manager's view of the media's lag)."""
    global _worst_wait
    wait, _worst_wait = _worst_wait, 0
    return wait / 1e9


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
    muxes: list[UdpMux] = []
    try:
        for address in addresses:
            muxes.append(shared(address, port))
    except OSError:
        close_shared(muxes)
        raise
    return muxes


def close_shared(muxes: Optional[list[UdpMux]] = None) -> None:
    """Close ``muxes`` (default: every one) and forget them."""
    for key, mux in list(_muxes.items()):
        if muxes is None or mux in muxes:
            mux.close()
            del _muxes[key]


def shared_muxes() -> list[UdpMux]:
    return [mux for mux in _muxes.values() if not mux.closed]
