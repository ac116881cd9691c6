"""VP8 RTP payload (RFC 7741): the descriptor read without decoding, picture
IDs kept continuous across simulcast switches, payloads to VP8 frames."""

from __future__ import annotations

from . import CodecHandler


def is_keyframe(packet: bytes, offset: int = 0) -> bool:
    """True for the first packet of a VP8 key frame (payload at ``offset``)."""
    size = len(packet)
    if offset >= size or not _starts_frame(packet[offset]):
        return False
    pos = frame_offset(packet, offset, size)
    return 0 <= pos < size and not packet[pos] & 0x01  # P bit of the frame header: 0 = key frame


def _starts_frame(first: int) -> bool:
    return bool(first & 0x10) and not first & 0x07  # S bit set and partition index 0


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
    found.start = bool(first & 0x10) and not first & 0x07  # inline: every simulcast packet
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
    if offset >= len(packet) or not _starts_frame(packet[offset]):
        return None
    return _header_size(packet, frame_offset(packet, offset, len(packet)))


def frame_offset(packet: bytes, offset: int, size: int) -> int:
    """Where the VP8 frame starts after the descriptor at ``offset`` (< ``size``);
    -1 when the descriptor is cut short before its picture ID."""
    pos = offset + 1
    if packet[offset] & 0x80:
        if pos >= size:
            return -1
        ext = packet[pos]
        pos += 1
        if ext & 0x80:
            if pos >= size:
                return -1
            pos += 2 if packet[pos] & 0x80 else 1
        if ext & 0x40:
            pos += 1
        if ext & 0x30:
            pos += 1
    return pos


def _header_size(data: bytes, pos: int) -> tuple[int, int] | None:
    """(width, height) of the key frame header at ``pos`` (RFC 6386 9.1), None if it is none."""
    if pos < 0 or pos + 10 > len(data) or data[pos] & 0x01 or data[pos + 3 : pos + 6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(data[pos + 6 : pos + 8], "little") & 0x3FFF
    height = int.from_bytes(data[pos + 8 : pos + 10], "little") & 0x3FFF
    return width, height


def depacketize(payload: bytes) -> tuple[bool, bytes]:
    """(starts a frame, VP8 bitstream bytes) with the descriptor removed."""
    if not payload:
        return False, b""
    pos = frame_offset(payload, 0, len(payload))
    return _starts_frame(payload[0]), payload[pos:] if pos >= 0 else b""


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

    is_keyframe = staticmethod(is_keyframe)  # the function itself: called once per received packet

    def frame_size(self, packet: bytes, offset: int) -> tuple[int, int] | None:
        return keyframe_size(packet, offset)

    def describe(self, packet: bytes, offset: int, end: int) -> Descriptor | None:
        return parse_descriptor(packet, offset, end)

    def id_munger(self) -> Vp8Munger:
        return Vp8Munger()

    ffmpeg_name = "vp8"
    webm = True
    frame_starts = True

    def depacketize(self, payload: bytes) -> tuple[bool, bytes]:
        return depacketize(payload)

    def frame_is_keyframe(self, data: bytes) -> bool:
        return bool(data) and not data[0] & 0x01

    def picture_size(self, data: bytes) -> tuple[int, int] | None:
        return _header_size(data, 0)


HANDLER = Vp8Handler()
