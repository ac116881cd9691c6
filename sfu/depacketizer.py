"""RTP packets to codec frames, for the recorder and media taps (never the
forwarding path).

A ``Depacketizer`` takes one stream's packets in arrival order, puts them
back in sequence order through a small reorder window, and assembles whole
frames: VP8 (RFC 7741 descriptor stripped), H.264 (RFC 6184 single NAL,
STAP-A and FU-A to Annex B) and Opus (one packet, one frame). A frame with a
missing packet is dropped; after a drop, video waits for the next keyframe
(``on_keyframe_needed`` asks the publisher for one) so that a decoder never
sees a frame whose reference is gone. Timestamps are unwrapped to 64 bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    from .stream_reader import ReceivedPacket

START_CODE = b"\x00\x00\x00\x01"
#: Frames that arrive while waiting for a keyframe before it is asked for again
#: (the first request, or the keyframe itself, may be lost too).
KEYFRAME_RETRY_FRAMES = 30
VIDEO_WINDOW = 128  # packets held back waiting for a missing one (≈ a keyframe or two)
AUDIO_WINDOW = 8
#: Video: how long a missing packet is waited for (a retransmission's time),
#: in RTP ticks of 90 kHz. A low-rate stream takes seconds to fill the window.
VIDEO_HOLD_TICKS = 90000 // 2


@dataclass
class Frame:
    data: bytes
    timestamp: int  # RTP timestamp, unwrapped (monotonic across wrap-around)
    keyframe: bool


# --- per-codec payload handling ------------------------------------------------


def vp8_payload(payload: bytes) -> tuple[bool, bytes]:
    """(starts a frame, VP8 bitstream bytes) with the RFC 7741 descriptor removed."""
    if not payload:
        return False, b""
    first = payload[0]
    pos = 1
    if first & 0x80 and len(payload) > 1:
        ext = payload[1]
        pos = 2
        if ext & 0x80:
            pos += 2 if len(payload) > pos and payload[pos] & 0x80 else 1
        if ext & 0x40:
            pos += 1
        if ext & 0x30:
            pos += 1
    start = bool(first & 0x10) and not first & 0x07
    return start, payload[pos:]


def vp8_keyframe(data: bytes) -> bool:
    return bool(data) and not data[0] & 0x01


def h264_payload(payload: bytes) -> tuple[bool, bytes]:
    """(starts a NAL unit sequence, Annex B bytes) of one RTP payload."""
    if not payload:
        return False, b""
    nal_type = payload[0] & 0x1F
    if 1 <= nal_type <= 23:
        return True, START_CODE + payload
    if nal_type == 24:  # STAP-A: 16-bit sizes, then NAL units
        out = bytearray()
        pos = 1
        while pos + 2 <= len(payload):
            size = int.from_bytes(payload[pos : pos + 2], "big")
            pos += 2
            if size == 0 or pos + size > len(payload):
                break
            out += START_CODE + payload[pos : pos + size]
            pos += size
        return True, bytes(out)
    if nal_type == 28 and len(payload) > 1:  # FU-A
        header = payload[1]
        if header & 0x80:  # start of the fragmented NAL unit
            return True, START_CODE + bytes([(payload[0] & 0xE0) | (header & 0x1F)]) + payload[2:]
        return False, payload[2:]
    return False, b""  # STAP-B, MTAP, FU-B: not used by WebRTC


def h264_nal_types(data: bytes) -> list[int]:
    """NAL unit types of an Annex B buffer (4-byte start codes, as built here)."""
    types = []
    pos = data.find(START_CODE)
    while pos >= 0 and pos + 4 < len(data):
        types.append(data[pos + 4] & 0x1F)
        pos = data.find(START_CODE, pos + 4)
    return types


def h264_keyframe(data: bytes) -> bool:
    return 5 in h264_nal_types(data)


def h264_parameter_sets(data: bytes) -> bytes:
    """The SPS and PPS NAL units of an Annex B frame (the stream's extradata)."""
    units = [START_CODE + unit for unit in data.split(START_CODE) if unit and unit[0] & 0x1F in (7, 8)]
    return b"".join(units)


_CODECS = {
    "VP8": (vp8_payload, vp8_keyframe),
    "H264": (h264_payload, h264_keyframe),
}


# --- the assembler ---------------------------------------------------------------


class Depacketizer:
    """One stream's packets in, whole frames out (see the module docstring)."""

    def __init__(self, codec_name: str, on_keyframe_needed: Callable[[], None] = lambda: None) -> None:
        self.codec = codec_name.upper()
        self.audio = self.codec not in _CODECS
        self._payload, self._is_keyframe = _CODECS.get(self.codec, (None, None))
        self._on_keyframe_needed = on_keyframe_needed
        self._window = AUDIO_WINDOW if self.audio else VIDEO_WINDOW
        self._pending: dict[int, tuple[int, bool, bytes]] = {}  # ext seq -> (ts, marker, payload)
        self._next_seq: Optional[int] = None
        self._started = False  # a packet was released
        self._last_seq = 0
        self._last_ts = 0
        self._ts_base: Optional[int] = None  # unwrapped timestamp of the last packet
        # frame being assembled
        self._parts: list[bytes] = []
        self._frame_ts: Optional[int] = None
        self._frame_ok = False
        self.waiting_keyframe = not self.audio
        self._waited_frames = 0  # frames seen since the last keyframe request
        self.frames_dropped = 0
        self.packets_lost = 0

    def push(self, seq: int, ts: int, marker: bool, payload: bytes) -> list[Frame]:
        """One received packet; returns the frames it completes (often none)."""
        ext_seq = self._unwrap_seq(seq)
        ext_ts = self._unwrap_ts(ts)
        if self._next_seq is None:
            self._next_seq = ext_seq
        if ext_seq < self._next_seq and not self._started:
            self._next_seq = ext_seq  # reordered before the first packet we saw
        if ext_seq < self._next_seq or ext_seq in self._pending:
            return []  # late or duplicate
        self._pending[ext_seq] = (ext_ts, marker, payload)
        frames: list[Frame] = []
        self._drain(frames)
        if self._pending and self._held_too_long(ext_ts):  # give up on what is missing
            self._skip_to(min(self._pending), frames)
            self._drain(frames)
        return frames

    def _held_too_long(self, newest_ts: int) -> bool:
        if len(self._pending) > self._window:
            return True
        return not self.audio and newest_ts - self._pending[min(self._pending)][0] > VIDEO_HOLD_TICKS

    def flush(self) -> list[Frame]:
        """Everything still held (at the end of a recording)."""
        frames: list[Frame] = []
        while self._pending:
            self._skip_to(min(self._pending), frames)
            self._drain(frames)
        return frames

    def unwrap_timestamp(self, ts: int) -> int:
        """A 32-bit RTP timestamp (e.g. from a sender report) on this stream's unwrapped scale."""
        if self._ts_base is None:
            return ts
        return self._ts_base + _signed32(ts - self._last_ts)

    # --- internals ---------------------------------------------------------------

    def _unwrap_seq(self, seq: int) -> int:
        if self._next_seq is None:
            self._last_seq = seq + (1 << 16)  # room below for reordered first packets
            return self._last_seq
        ext = self._last_seq + ((seq - self._last_seq + 0x8000) & 0xFFFF) - 0x8000
        if ext > self._last_seq:
            self._last_seq = ext
        return ext

    def _unwrap_ts(self, ts: int) -> int:
        if self._ts_base is None:
            self._ts_base, self._last_ts = ts, ts
            return ts
        ext = self._ts_base + _signed32(ts - self._last_ts)
        if ext > self._ts_base:
            self._ts_base, self._last_ts = ext, ts
        return ext

    def _drain(self, frames: list[Frame]) -> None:
        while self._next_seq in self._pending:
            ts, marker, payload = self._pending.pop(self._next_seq)
            self._next_seq += 1
            self._started = True
            self._packet(ts, marker, payload, frames)

    def _skip_to(self, seq: int, frames: list[Frame]) -> None:
        self.packets_lost += seq - self._next_seq
        self._next_seq = seq
        self._started = True
        if self.audio:
            return
        self._frame_ok = False  # the gap may be inside the current frame
        if not self.waiting_keyframe:  # or a whole frame is gone: references are broken
            self._need_keyframe()

    def _packet(self, ts: int, marker: bool, payload: bytes, frames: list[Frame]) -> None:
        if self.audio:
            if payload:
                frames.append(Frame(payload, ts, True))
            return
        if self._parts and ts != self._frame_ts:
            self._frame_ok = False  # the previous frame never saw its marker
            self._end_frame(frames)
        start, data = self._payload(payload)
        if not self._parts:
            self._frame_ts = ts
            self._frame_ok = start
        elif start and self.codec == "VP8":
            self._frame_ok = False  # a second frame start: something is wrong
        self._parts.append(data)
        if marker:
            self._end_frame(frames)

    def _end_frame(self, frames: list[Frame]) -> None:
        data = b"".join(self._parts)
        ok, ts = self._frame_ok, self._frame_ts
        self._parts = []
        self._frame_ts = None
        if self.audio:
            return
        if not ok or not data:
            self.frames_dropped += 1
            if not self.waiting_keyframe:
                self._need_keyframe()
            return
        keyframe = self._is_keyframe(data)
        if self.waiting_keyframe:
            if not keyframe:
                self._waited_frames += 1
                if self._waited_frames >= KEYFRAME_RETRY_FRAMES:
                    self._need_keyframe()
                return
            self.waiting_keyframe = False
        frames.append(Frame(data, ts, keyframe))

    def _need_keyframe(self) -> None:
        self.waiting_keyframe = True
        self._waited_frames = 0
        self._on_keyframe_needed()


def _signed32(delta: int) -> int:
    return ((delta + 0x80000000) & 0xFFFFFFFF) - 0x80000000


# --- reading a track off the event loop ---------------------------------------------


class QueueReader:
    """Reads one published track's stream like a down-track does, without
    forwarding: every packet is handed, as bytes and ints, to a thread-safe
    queue (``sink``) for a worker thread to depacketize. The forwarding path
    pays nothing while no reader is attached.

    Items put into ``sink``: ``(key, seq, ts, marker, payload)`` per packet and
    ``(key, report)`` per sender report of the publisher.
    """

    RETRY = 0.1  # seconds between looks for a stream that has not started yet

    def __init__(self, track, key, sink, loop) -> None:
        self.track = track
        self.key = key
        self._sink = sink
        self._loop = loop
        self.stream = None
        self._handle = None
        self.closed = False

    def attach(self) -> None:
        """Join the track's stream (its lowest layer), now or once it exists."""
        if self.closed:
            return
        stream = self.track.stream
        if stream is None:
            self._handle = self._loop.call_later(self.RETRY, self.attach)
            return
        self.stream = stream
        stream.add_reader(self)
        if stream.sender_report is not None:
            self._sink.put((self.key, stream.sender_report))
        stream.request_keyframe()

    def detach(self) -> None:
        self.closed = True
        if self._handle is not None:
            self._handle.cancel()
        if self.stream is not None:
            self.stream.remove_reader(self)

    def request_keyframe(self) -> None:
        """Thread-safe: ask the publisher for a keyframe."""
        if not self.closed and self.stream is not None:
            self._loop.call_soon_threadsafe(self.stream.request_keyframe)

    # --- a stream_reader.StreamReader -------------------------------------------

    def write(self, packet: ReceivedPacket) -> None:
        self._sink.put((self.key, packet.seq, packet.ts, packet.marker, packet.payload))

    def send_sender_report(self, report, layer: int = 0) -> None:
        self._sink.put((self.key, report))
