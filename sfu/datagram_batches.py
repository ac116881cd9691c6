"""Datagrams in C memory, read and sent many per system call.

``ReceiveBatch`` reads up to SIZE datagrams with one ``recvmmsg(2)``, each
with its source address and arrival time; ``SendBatch`` assembles
datagrams in place (an SRTP seal rewrites them there) and sends them with
one ``sendmmsg(2)``. Both are plain buffers over one socket: routing them is
sfu/udp_mux.py's work. libc is called through cffi (no compiled code of
ours).
"""

from __future__ import annotations

import array
import socket
from typing import Callable

from cffi import FFI

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

SOCKADDR_IN, SOCKADDR_IN6 = 16, 28  # bytes of struct sockaddr_in, sockaddr_in6


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
        self._used = max(0, libc.recvmmsg(fd, self._messages, self.SIZE, socket.MSG_DONTWAIT, ffi.NULL))
        return self._used

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
