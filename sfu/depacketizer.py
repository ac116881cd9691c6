"""RTP packets to codec frames, for the recorder and media taps (never the
forwarding path).

A ``Depacketizer`` takes one stream's packets in arrival order, puts them
back in sequence order through a small reorder window, and assembles whole
frames: the codec's handler (sfu/codecs/) turns each video payload into
bitstream bytes and tells which frames are keyframes; audio is one packet,
one frame. A frame with a missing packet is dropped; after a drop, video
waits for the next keyframe (``on_keyframe_needed`` asks the publisher for
one) so that a decoder never sees a frame whose reference is gone.
Timestamps are unwrapped to 64 bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from .codecs import CodecHandler

if TYPE_CHECKING:
    from .stream_reader import ReceivedPacket

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


# --- the assembler ---------------------------------------------------------------


class Depacketizer:
    """One stream's packets in, whole frames out (see the module docstring)."""

    def __init__(self, codec: CodecHandler, on_keyframe_needed: Callable[[], None] = lambda: None) -> None:
        self.codec = codec
        self.audio = codec.kind == "audio"
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
        start, data = self.codec.depacketize(payload)
        if not self._parts:
            self._frame_ts = ts
            self._frame_ok = start
        elif start and self.codec.frame_starts:
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
        keyframe = self.codec.frame_is_keyframe(data)
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
