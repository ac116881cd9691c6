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
memory per call (``ReceiveBatch``), at most ``TURN`` datagrams per loop turn
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

import array
import asyncio
import logging
import socket
import struct
import time
from typing import Callable, Optional, Protocol

from cffi import FFI

from .metrics import DATAGRAMS_DROPPED
from .video_backlog import VideoBacklog

log = logging.getLogger(__name__)

ffi = FFI()
ffi.cdef("""
struct iovec { void *iov_base; size_t iov_len; };
struct msghdr {
    void *msg_name; unsigned int msg_namelen; struct iovec *msg_iov; size_t msg_iovlen;
    void *msg_control; size_t msg_controllen; int msg_flags;
};
struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; };
int sendmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags);
int recvmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags, void *timeout);
""")
libc = ffi.dlopen(None)

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
SOCKADDR_IN, SOCKADDR_IN6 = 16, 28  # bytes of struct sockaddr_in, sockaddr_in6
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


class ReceiveBatch:
    """Datagrams read into C memory with one recvmmsg(2) call.

    After ``receive()`` returned ``count``, datagram ``i < count`` is
    ``data[i * DATAGRAM:][:lengths[i]]`` (slicing a cffi buffer copies out
    bytes) and ``source(i)`` its raw source address. As a dict key, an IPv4
    source is ``keys[2 * i]``: an int of the sockaddr_in's first 8 bytes
    (family, port, address); an IPv6 one is the sockaddr_in6's bytes. Longer
    datagrams than DATAGRAM are cut, as ``recvfrom(2048)`` did."""

    SIZE = 64
    DATAGRAM = 2048
    CONTROL = 32  # CMSG_SPACE(struct timespec): room for the arrival time

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.name_size = SOCKADDR_IN6 if sock.family == socket.AF_INET6 else SOCKADDR_IN
        self._memory = ffi.new("char[]", self.SIZE * self.DATAGRAM)
        self._names = ffi.new("char[]", self.SIZE * self.name_size)
        self._control = ffi.new("char[]", self.SIZE * self.CONTROL)
        self._messages = ffi.new("struct mmsghdr[]", self.SIZE)
        self._iovecs = ffi.new("struct iovec[]", self.SIZE)
        for index in range(self.SIZE):
            iovec = self._iovecs[index]
            iovec.iov_base = self._memory + index * self.DATAGRAM
            iovec.iov_len = self.DATAGRAM
            header = self._messages[index].msg_hdr
            header.msg_name = self._names + index * self.name_size
            header.msg_iov = self._iovecs + index
            header.msg_iovlen = 1
            header.msg_control = self._control + index * self.CONTROL
        self.data = ffi.buffer(self._memory)
        self.names = ffi.buffer(self._names)
        self.keys = memoryview(self.names).cast("Q")
        # msg_len and msg_namelen of every message, as views into the C array
        words = memoryview(ffi.buffer(self._messages)).cast("I")
        stride = ffi.sizeof("struct mmsghdr") // 4
        self.lengths = words[ffi.offsetof("struct mmsghdr", "msg_len") // 4::stride]
        self._name_lengths = words[ffi.offsetof("struct msghdr", "msg_namelen") // 4::stride]
        self._full_names = memoryview(array.array("I", [self.name_size] * self.SIZE))
        # msg_controllen of every message, and each control message's words: a
        # timestamp's is (cmsg_len, level and type, tv_sec, tv_nsec)
        longs = memoryview(ffi.buffer(self._messages)).cast("Q")
        self._control_lengths = longs[ffi.offsetof("struct msghdr", "msg_controllen") // 8::stride // 2]
        self._full_controls = memoryview(array.array("Q", [self.CONTROL] * self.SIZE))
        self._stamps = memoryview(ffi.buffer(self._control)).cast("q")
        self._used = self.SIZE  # messages the last call filled (their lengths need a reset)
        self.calls = 0

    def receive(self) -> int:
        """Datagrams read (up to SIZE); 0 when none is waiting, on EINTR, or
        on an error an earlier send queued (the loop calls again while the
        socket stays readable)."""
        fd = self._sock.fileno()
        if fd < 0:
            return 0
        used = self._used  # the kernel wrote the last call's lengths over the sizes
        if used:
            self._name_lengths[:used] = self._full_names[:used]
            self._control_lengths[:used] = self._full_controls[:used]
        self.calls += 1
        count = self._used = max(0, libc.recvmmsg(fd, self._messages, self.SIZE, socket.MSG_DONTWAIT, ffi.NULL))
        return count

    def arrival(self, index: int) -> int:
        """When datagram ``index`` arrived (ns, CLOCK_REALTIME); 0: not known."""
        if not self._control_lengths[index]:
            return 0
        return self._stamps[4 * index + 2] * 1_000_000_000 + self._stamps[4 * index + 3]

    def arrived_before(self, count: int, deadline: int) -> int:
        """How many of the first ``count`` datagrams arrived before
        ``deadline``: they are in arrival order, so these are the first
        ones. One without an arrival time is on time."""
        index = 0
        while index < count and 0 < self.arrival(index) < deadline:
            index += 1
        return index

    def source(self, index: int) -> bytes:
        return self.names[index * self.name_size:(index + 1) * self.name_size]


class SendBatch:
    """Datagrams assembled in C memory and sent with one sendmmsg(2) call.

    ``put`` copies a datagram into the next free slot, seals it there (SRTP's
    ``srtp_protect``: the batch knows only "a C function that rewrites the
    buffer in place") and queues it; ``flush()`` sends them all. The iovec
    length and the destination of each slot are written through integer
    views of the C arrays (an attribute set through cffi costs several
    times more), and every destination has the socket's address size. A
    full batch flushes by itself, and the first datagram of a batch calls
    ``on_queued`` (the mux makes sure the batch leaves within that loop
    turn)."""

    SIZE = 64
    DATAGRAM = 1500
    #: Bytes a seal may add past the datagram (SRTP's auth tag or AEAD tag, at most 16).
    TRAILER = 16
    ROOM = DATAGRAM - TRAILER

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        name_size = SOCKADDR_IN6 if sock.family == socket.AF_INET6 else SOCKADDR_IN
        self._memory = ffi.new("char[]", self.SIZE * self.DATAGRAM)
        self._messages = ffi.new("struct mmsghdr[]", self.SIZE)
        self._iovecs = ffi.new("struct iovec[]", self.SIZE)
        self._pointers = []
        self._buffers = []
        for index in range(self.SIZE):
            pointer = self._memory + index * self.DATAGRAM
            self._iovecs[index].iov_base = pointer
            header = self._messages[index].msg_hdr
            header.msg_iov = self._iovecs + index
            header.msg_iovlen = 1
            header.msg_namelen = name_size
            self._pointers.append(pointer)
            self._buffers.append(ffi.buffer(pointer, self.DATAGRAM))
        words = ffi.sizeof("struct iovec") // 8
        self._lengths = memoryview(ffi.buffer(self._iovecs)).cast("Q")[ffi.offsetof("struct iovec", "iov_len") // 8::words]
        words = ffi.sizeof("struct mmsghdr") // 8
        self._names = memoryview(ffi.buffer(self._messages)).cast("Q")[ffi.offsetof("struct msghdr", "msg_name") // 8::words]
        self._length = ffi.new("int *")
        self.on_queued: Callable[[], None] = lambda: None
        self.count = 0
        self.sent = 0
        self.errors = 0
        self.rejected = 0  # too long, or the seal failed
        self.calls = 0

    def put(self, seal, context, name: int, head: bytes, payload: bytes) -> bool:
        """Queue ``head + payload`` for the socket address at ``name`` (its C
        address: ``address_of``), sealed in place by ``seal(context, data,
        int *length)`` first (0: done; it may lengthen the datagram by up to
        TRAILER bytes). False when it did not fit or the seal failed."""
        index = self.count
        h = len(head)
        n = h + len(payload)
        if n > self.ROOM:
            self.rejected += 1
            return False
        buffer = self._buffers[index]
        buffer[0:h] = head
        buffer[h:n] = payload
        length = self._length
        length[0] = n
        if seal(context, self._pointers[index], length):
            self.rejected += 1
            return False
        self._lengths[index] = length[0]
        self._names[index] = name
        self.count = index = index + 1
        if index == 1:
            self.on_queued()
        elif index == self.SIZE:
            self.flush()
        return True

    def flush(self) -> None:
        start, count = 0, self.count
        self.count = 0
        fd = self._sock.fileno()
        while start < count and fd >= 0:
            self.calls += 1
            sent = libc.sendmmsg(fd, self._messages + start, count - start, 0)
            if sent < 0:  # the message at ``start`` failed (full buffer, ICMP error): skip it
                self.errors += 1
                sent = 1
            else:
                self.sent += sent
            start += sent


def address_of(cdata) -> int:
    """The C address of ``cdata`` as an int (``SendBatch.put``'s ``name``);
    the caller keeps ``cdata`` alive."""
    return int(ffi.cast("uintptr_t", cdata))


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
