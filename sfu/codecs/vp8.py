"""VP8 RTP payload descriptor (RFC 7741), read without decoding."""

from __future__ import annotations

from . import CodecHandler


def is_keyframe(packet: bytes, offset: int = 0) -> bool:
    """True for the first packet of a VP8 key frame (payload at ``offset``)."""
    size = len(packet)
    if offset >= size:
        return False
    first = packet[offset]
    if not first & 0x10 or first & 0x07:  # S bit set and partition index 0
        return False
    pos = offset + 1
    if first & 0x80:  # X: extended control bits
        if pos >= size:
            return False
        ext = packet[pos]
        pos += 1
        if ext & 0x80:  # I: picture ID, 7 or 15 bits
            if pos >= size:
                return False
            pos += 2 if packet[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX
            pos += 1
    if pos >= size:
        return False
    return not packet[pos] & 0x01  # P bit of the VP8 frame header: 0 = key frame


class Descriptor:
    """Where the picture ID and TL0PICIDX sit in a VP8 payload descriptor."""

    __slots__ = ("pid_pos", "pid_bits", "tl0_pos", "tid", "start")

    def __init__(self) -> None:
        self.pid_pos = -1  # -1: absent
        self.pid_bits = 0  # 7 or 15
        self.tl0_pos = -1
        self.tid = 0
        self.start = False  # first packet of a frame (S=1, partition 0)


def parse_descriptor(packet: bytes, offset: int, end: int | None = None) -> Descriptor | None:
    """The descriptor of the payload at ``offset`` (ending at ``end``, before
    any RTP padding); None when malformed."""
    size = len(packet) if end is None else end
    if offset >= size:
        return None
    first = packet[offset]
    found = Descriptor()
    found.start = bool(first & 0x10) and not first & 0x07
    if not first & 0x80:
        return found
    pos = offset + 1
    if pos >= size:
        return None
    ext = packet[pos]
    pos += 1
    if ext & 0x80:
        if pos >= size:
            return None
        found.pid_pos = pos
        found.pid_bits = 15 if packet[pos] & 0x80 else 7
        pos += 2 if found.pid_bits == 15 else 1
    if ext & 0x40:
        found.tl0_pos = pos
        pos += 1
    if ext & 0x30:
        if pos >= size:
            return None
        if ext & 0x20:
            found.tid = packet[pos] >> 6
        pos += 1
    return found if pos <= size else None


def keyframe_size(packet: bytes, offset: int) -> tuple[int, int] | None:
    """(width, height) from the key frame header, in the first packet of a key frame."""
    descriptor = parse_descriptor(packet, offset)
    if descriptor is None or not descriptor.start:
        return None
    pos = offset + 1
    first_ext = packet[offset] & 0x80
    if first_ext:
        ext = packet[offset + 1]
        pos += 1
        pos += (2 if descriptor.pid_bits == 15 else 1) if ext & 0x80 else 0
        pos += 1 if ext & 0x40 else 0
        pos += 1 if ext & 0x30 else 0
    if pos + 10 > len(packet) or packet[pos] & 0x01 or packet[pos + 3 : pos + 6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(packet[pos + 6 : pos + 8], "little") & 0x3FFF
    height = int.from_bytes(packet[pos + 8 : pos + 10], "little") & 0x3FFF
    return width, height


class Vp8Munger:
    """Keeps picture ID and TL0PICIDX continuous when a down-track switches
    between simulcast layers, so the decoder sees one stream."""

    __slots__ = ("_pid_offset", "_tl0_offset", "offsets", "_last_pid", "_last_tl0", "_started")

    def __init__(self) -> None:
        self._pid_offset = 0
        self._tl0_offset = 0
        #: The (picture ID, TL0PICIDX) offsets now in force; one tuple, stored per packet.
        self.offsets = (0, 0)
        self._last_pid = 0
        self._last_tl0 = 0
        self._started = False

    def switch(self, packet: bytes, offset: int) -> None:
        """Re-anchor at the first packet of a key frame of the new layer."""
        descriptor = parse_descriptor(packet, offset)
        if descriptor is None:
            return
        if self._started:
            if descriptor.pid_pos >= 0:
                pid = _read_pid(packet, descriptor)
                self._pid_offset = (self._last_pid + 1 - pid) & 0x7FFF
            if descriptor.tl0_pos >= 0:
                self._tl0_offset = (self._last_tl0 + 1 - packet[descriptor.tl0_pos]) & 0xFF
            self.offsets = (self._pid_offset, self._tl0_offset)
        self._started = True

    def record(self, packet: bytes, descriptor: Descriptor) -> None:
        """Note the IDs of a packet sent unchanged (while the offsets are zero)."""
        if descriptor.pid_pos >= 0:
            self._last_pid = _read_pid(packet, descriptor)
        if descriptor.tl0_pos >= 0:
            self._last_tl0 = packet[descriptor.tl0_pos]

    def rewrite(
        self, payload: bytearray, descriptor: Descriptor, base: int,
        record: bool = True, offsets: tuple[int, int] | None = None,
    ) -> None:
        """Rewrite in place; positions in ``descriptor`` are relative to ``base``.

        Retransmissions pass ``record=False`` (they must not move the last-sent
        IDs) and the ``offsets`` the packet first went out with.
        """
        pid_offset, tl0_offset = offsets if offsets is not None else self.offsets
        if descriptor.pid_pos >= 0:
            pos = descriptor.pid_pos - base
            if descriptor.pid_bits == 15:
                pid = (((payload[pos] & 0x7F) << 8 | payload[pos + 1]) + pid_offset) & 0x7FFF
                payload[pos] = 0x80 | (pid >> 8)
                payload[pos + 1] = pid & 0xFF
            else:
                pid = ((payload[pos] & 0x7F) + pid_offset) & 0x7F
                payload[pos] = pid
            if record:
                self._last_pid = pid
        if descriptor.tl0_pos >= 0:
            pos = descriptor.tl0_pos - base
            tl0 = (payload[pos] + tl0_offset) & 0xFF
            payload[pos] = tl0
            if record:
                self._last_tl0 = tl0


def _read_pid(packet: bytes, descriptor: Descriptor) -> int:
    pos = descriptor.pid_pos
    if descriptor.pid_bits == 15:
        return (packet[pos] & 0x7F) << 8 | packet[pos + 1]
    return packet[pos] & 0x7F


class Vp8Handler(CodecHandler):
    name = "VP8"
    kind = "video"
    munges_ids = True

    def is_keyframe(self, packet: bytes, offset: int) -> bool:
        return is_keyframe(packet, offset)

    def frame_size(self, packet: bytes, offset: int) -> tuple[int, int] | None:
        return keyframe_size(packet, offset)

    def describe(self, packet: bytes, offset: int, end: int) -> Descriptor | None:
        return parse_descriptor(packet, offset, end)

    def id_munger(self) -> Vp8Munger:
        return Vp8Munger()


HANDLER = Vp8Handler()
