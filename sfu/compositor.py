"""The composite recorder's own process: decode, lay out, mix, encode.

``main`` runs in a process started by ``sfu/composite.py`` (multiprocessing,
spawn). It reads batches of items from one queue and writes one MP4: H.264
(libx264, ultrafast) + AAC, ``movflags=+faststart``. Items, in order:

- ``("track", key, kind, codec, clock_rate, group)``: a stream to read under
  ``key``; ``group`` (the participant) shares one clock for A/V alignment.
- ``("reset", key)``: the key's stream changed (another simulcast layer):
  start over at its next keyframe.
- ``("sr", key, rtp_ts, ntp_seconds)``: a sender report of the key's stream.
- ``("rtp", key, seq, ts, marker, payload, arrival)``: one packet
  (``arrival``: ``time.monotonic()`` when the SFU received it).
- ``("layout", {"stage": tile|None, "strip": [tile...]}, monotonic_time)``; a
  tile is ``{"key": key|None, "name": str}`` (no key: a placeholder). It shows
  from that instant of the file on, however late a busy recorder reads it.
- ``("stop", monotonic_time)``: render up to that instant and close the file.

A stream that lost a packet waits for its next keyframe; its key goes to
``keyframe_requests`` for the SFU to ask the publisher for one.

Timing: a frame's instant is its RTP timestamp mapped to its publisher's
clock by sender reports, shifted by one offset per group (the smallest
"arrival minus capture" seen) onto this machine's monotonic clock, so that
a participant's voice and picture keep the relation the publisher gave
them. Until a stream's first sender report, its first arrival stands in.
Output instant t of the file is ``origin + t``; a video frame for instant T
is rendered once the clock is ``PLAYOUT_DELAY`` past T.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .codecs import CodecHandler, handler as codec_handler
from .depacketizer import Depacketizer

log = logging.getLogger(__name__)

AUDIO_RATE = 48000
PLAYOUT_DELAY = 0.6  # seconds behind the clock: batching, jitter and retransmissions
MAX_AHEAD = 10 * AUDIO_RATE  # samples of mixed audio held ahead of the output
BACKGROUND = (24, 24, 28)
PLACEHOLDER = (60, 62, 70)
LABEL_BACKGROUND = (0, 0, 0)


# --- layout -----------------------------------------------------------------------


Rect = tuple[int, int, int, int]  # x, y, width, height


def speaker_layout(width: int, height: int, strip_tiles: int) -> tuple[Rect, list[Rect]]:
    """The stage and the filmstrip below it (16:9 tiles, centred)."""
    if strip_tiles == 0:
        return (0, 0, width, height), []
    strip_h = height // 5
    tile_w = strip_h * 16 // 9
    count = min(strip_tiles, max(1, width // tile_w))
    left = (width - count * tile_w) // 2
    strip = [(left + i * tile_w, height - strip_h, tile_w, strip_h) for i in range(count)]
    return (0, 0, width, height - strip_h), strip


def fit(frame_w: int, frame_h: int, rect: Rect) -> Rect:
    """The largest rectangle of the frame's aspect centred in ``rect`` (even sizes)."""
    x, y, w, h = rect
    scale = min(w / frame_w, h / frame_h)
    fw, fh = max(2, int(frame_w * scale) // 2 * 2), max(2, int(frame_h * scale) // 2 * 2)
    return x + (w - fw) // 2, y + (h - fh) // 2, fw, fh


# --- audio mix ----------------------------------------------------------------------


class Mixer:
    """Every voice summed at its sample position, clipped to 16 bits on the way out."""

    def __init__(self) -> None:
        self.base = 0  # sample index of buffer[0]: everything before it is out
        self.buffer = np.zeros(0, np.int32)

    def add(self, index: int, samples: np.ndarray) -> None:
        if index < self.base:  # late: its start is already out
            samples = samples[self.base - index:]
            index = self.base
        start = index - self.base
        end = start + len(samples)
        if end > MAX_AHEAD or len(samples) == 0:
            return
        if end > len(self.buffer):
            self.buffer = np.concatenate([self.buffer, np.zeros(end - len(self.buffer), np.int32)])
        self.buffer[start:end] += samples

    def take(self, upto: int) -> np.ndarray:
        """Samples from ``base`` up to ``upto`` (silence where nobody spoke)."""
        count = max(0, upto - self.base)
        out = np.zeros(count, np.int32)
        have = min(count, len(self.buffer))
        out[:have] = self.buffer[:have]
        self.buffer = self.buffer[have:]
        self.base += count
        return np.clip(out, -32768, 32767).astype(np.int16)


# --- one stream -----------------------------------------------------------------------


@dataclass
class _Stream:
    key: str
    kind: str
    codec: CodecHandler
    clock_rate: int
    group: str
    depacketizer: Depacketizer = None
    decoder: object = None
    resampler: object = None
    origin: Optional[tuple[int, float, bool]] = None  # (unwrapped RTP ts, seconds, from a sender report)
    frames: deque = field(default_factory=deque)  # (instant, av.VideoFrame), video
    current: object = None  # the frame on screen
    last_instant: float = 0.0

    def reset(self, on_keyframe_needed: Callable[[], None]) -> None:
        import av

        self.depacketizer = Depacketizer(self.codec, on_keyframe_needed)
        self.decoder = av.CodecContext.create(self.codec.ffmpeg_name, "r")
        self.origin = None


class Compositor:
    """All the state of one composite recording (see the module docstring)."""

    def __init__(self, path: str, origin: float, width: int = 1280, height: int = 720, fps: int = 15,
                 video: bool = True, keyframe_requests=None) -> None:
        self.path = path
        #: Where the keys of streams that lost a packet go (the SFU asks their publisher for a keyframe).
        self.keyframe_requests = keyframe_requests if keyframe_requests is not None else queue.SimpleQueue()
        self.with_video = video  # False: audio only (the mix in an .m4a)
        self.origin = origin
        self.width, self.height, self.fps = width, height, fps
        self.streams: dict[str, _Stream] = {}
        self.offsets: dict[str, float] = {}  # group -> monotonic minus publisher clock
        self.layout: dict = {"stage": None, "strip": []}
        self.layouts: deque = deque()  # (monotonic time, layout) not shown yet
        self.mixer = Mixer()
        self.labels = Labels()
        self.frame_index = 0
        self.samples_out = 0
        self.stop_at: Optional[float] = None
        self.container = None
        self.video = None
        self.audio = None

    # --- input ---------------------------------------------------------------------

    def handle(self, item: tuple) -> None:
        what = item[0]
        if what == "rtp":
            self._packet(*item[1:])
        elif what == "sr":
            self._sender_report(*item[1:])
        elif what == "track":
            _, key, kind, codec, clock_rate, group = item
            stream = _Stream(key, kind, codec_handler(codec), clock_rate, group)
            stream.reset(self._keyframe_request(key))
            self.streams[key] = stream
        elif what == "reset" and item[1] in self.streams:
            self.streams[item[1]].reset(self._keyframe_request(item[1]))
        elif what == "layout":
            self.layouts.append((item[2], item[1]))
        elif what == "stop":
            self.stop_at = item[1]

    def _keyframe_request(self, key: str) -> Callable[[], None]:
        return lambda: self.keyframe_requests.put(key)

    def _sender_report(self, key: str, rtp_ts: int, ntp: float) -> None:
        stream = self.streams.get(key)
        if stream is not None and (stream.origin is None or not stream.origin[2]):
            stream.origin = (stream.depacketizer.unwrap_timestamp(rtp_ts), ntp, True)

    def _packet(self, key, seq, ts, marker, payload, arrival) -> None:
        stream = self.streams.get(key)
        if stream is None:
            return
        for frame in stream.depacketizer.push(seq, ts, bool(marker), payload):
            instant = self._instant(stream, frame.timestamp, arrival)
            self._decode(stream, frame.data, instant)

    def _instant(self, stream: _Stream, timestamp: int, arrival: float) -> float:
        if stream.origin is None:
            stream.origin = (timestamp, arrival, False)
        rtp, seconds, reported = stream.origin
        at = seconds + (timestamp - rtp) / stream.clock_rate
        if not reported:
            return at
        offset = min(self.offsets.get(stream.group, arrival - at), arrival - at)
        self.offsets[stream.group] = offset
        return at + offset

    def _decode(self, stream: _Stream, data: bytes, instant: float) -> None:
        import av

        try:
            decoded = stream.decoder.decode(av.Packet(data))
        except av.FFmpegError:
            return  # damaged: the next keyframe repairs it
        for media in decoded:
            if stream.kind == "audio":
                self._mix(stream, media, instant)
            else:
                stream.frames.append((max(instant, stream.last_instant), media))
                stream.last_instant = max(instant, stream.last_instant)

    def _mix(self, stream: _Stream, frame, instant: float) -> None:
        import av

        if stream.resampler is None:
            stream.resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE)
        for out in stream.resampler.resample(frame):
            index = round((instant - self.origin) * AUDIO_RATE)
            self.mixer.add(index, out.to_ndarray().reshape(-1).astype(np.int32))

    # --- output --------------------------------------------------------------------

    def open(self) -> None:
        import av

        # Created 0600 (and never through a link left there) before PyAV writes it.
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self.container = av.open(self.path, "w", format="mp4", options={"movflags": "+faststart"})
        if self.with_video:
            self.video = self.container.add_stream("libx264", rate=self.fps, options={"preset": "ultrafast"})
            self.video.width, self.video.height, self.video.pix_fmt = self.width, self.height, "yuv420p"
        self.audio = self.container.add_stream("aac", rate=AUDIO_RATE, layout="mono")

    def next_instant(self) -> float:
        return self.origin + self.frame_index / self.fps

    def due(self, now: float) -> bool:
        """Whether the next video frame can be rendered (or the end is reached)."""
        instant = self.next_instant()
        if self.stop_at is not None:
            return instant < self.stop_at
        return instant + PLAYOUT_DELAY <= now

    def render_next(self) -> None:
        import av

        if self.with_video:
            frame = av.VideoFrame.from_ndarray(self.compose(self.next_instant()), format="rgb24")
            frame.pts = self.frame_index
            self._mux(self.video.encode(frame))
        self.frame_index += 1
        self._audio_until(round(self.frame_index * AUDIO_RATE / self.fps))

    def _audio_until(self, sample: int) -> None:
        import av

        samples = self.mixer.take(sample)
        if len(samples) == 0:
            return
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self.samples_out
        self.samples_out += len(samples)
        self._mux(self.audio.encode(frame))

    def _mux(self, packets) -> None:
        for packet in packets:
            self.container.mux(packet)

    def close(self) -> float:
        """Flush the encoders and finish the file; returns its duration in seconds."""
        if self.container is None:
            return 0.0
        if self.with_video:
            self._mux(self.video.encode(None))
        self._mux(self.audio.encode(None))
        self.container.close()
        return self.frame_index / self.fps

    # --- the picture -----------------------------------------------------------------

    def compose(self, instant: float) -> np.ndarray:
        while self.layouts and self.layouts[0][0] <= instant:
            self.layout = self.layouts.popleft()[1]
        canvas = np.empty((self.height, self.width, 3), np.uint8)
        canvas[:] = BACKGROUND
        stage, strip = self.layout["stage"], self.layout["strip"]
        stage_rect, strip_rects = speaker_layout(self.width, self.height, len(strip))
        if stage is not None:
            self._tile(canvas, stage, stage_rect, instant)
        for tile, rect in zip(strip, strip_rects):
            self._tile(canvas, tile, _inset(rect, 4), instant)
        for stream in self.streams.values():  # frames of streams off screen
            if stream.kind == "video":
                self._advance(stream, instant)
        return canvas

    def _tile(self, canvas: np.ndarray, tile: dict, rect: Rect, instant: float) -> None:
        stream = self.streams.get(tile.get("key") or "")
        frame = self._advance(stream, instant) if stream is not None else None
        x, y, w, h = rect
        if frame is None:
            canvas[y:y + h, x:x + w] = PLACEHOLDER
        else:
            rect = fx, fy, fw, fh = fit(frame.width, frame.height, rect)
            canvas[fy:fy + fh, fx:fx + fw] = frame.reformat(width=fw, height=fh, format="rgb24").to_ndarray()
        if tile.get("name"):
            self.labels.draw(canvas, tile["name"], rect)  # on the picture's bottom left

    @staticmethod
    def _advance(stream: _Stream, instant: float):
        """The stream's frame on screen at ``instant``."""
        while stream.frames and stream.frames[0][0] <= instant:
            stream.current = stream.frames.popleft()[1]
        return stream.current


class Labels:
    """Names under the tiles: white text on a dark band, rendered once per name and size."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    def draw(self, canvas: np.ndarray, name: str, rect: Rect) -> None:
        x, y, w, h = rect
        size = max(10, min(28, h // 9))
        picture = self._render(name, size)[:, : w - 8]
        ph, pw = picture.shape[:2]
        if ph + 8 > h or pw == 0:
            return
        canvas[y + h - ph - 4 : y + h - 4, x + 4 : x + 4 + pw] = picture

    def _render(self, name: str, size: int) -> np.ndarray:
        key = (name, size)
        if key not in self._cache:
            from PIL import Image, ImageDraw, ImageFont

            font = ImageFont.load_default(size)
            left, top, right, bottom = font.getbbox(name or " ")
            image = Image.new("RGB", (right - left + size, size + size // 2), LABEL_BACKGROUND)
            ImageDraw.Draw(image).text((size // 2 - left, size // 4 - top // 2), name, font=font, fill=(255, 255, 255))
            self._cache[key] = np.asarray(image)
        return self._cache[key]


def _inset(rect: Rect, margin: int) -> Rect:
    x, y, w, h = rect
    return x + margin, y + margin, w - 2 * margin, h - 2 * margin


# --- the process -----------------------------------------------------------------------


def main(items, results, keyframe_requests, path: str, origin: float, width: int, height: int, fps: int,
         video: bool = True) -> None:
    """Entry point of the recorder process: run until ``stop``, report, exit."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    compositor = Compositor(path, origin, width, height, fps, video, keyframe_requests)
    error = None
    duration = 0.0
    try:
        compositor.open()
        run(compositor, items)
    except Exception as exc:
        log.exception("composite recording %s failed", path)
        error = str(exc) or type(exc).__name__
    finally:
        try:
            duration = compositor.close()
        except Exception as exc:
            log.exception("composite recording %s: closing the file failed", path)
            error = error or str(exc)
        results.put({"duration": duration, "error": error})


def run(compositor: Compositor, items) -> None:
    """Take every batch waiting, then render what is due; until stopped (or
    the SFU's process is gone: then the file is finished where it is)."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    while True:
        if parent is not None and compositor.stop_at is None and not parent.is_alive():
            log.warning("the SFU's process is gone: finishing %s", compositor.path)
            compositor.stop_at = time.monotonic() - PLAYOUT_DELAY
        try:
            batch = items.get(timeout=1 / compositor.fps)
        except queue.Empty:
            batch = None
        while batch is not None:
            for item in batch:
                compositor.handle(item)
            try:
                batch = items.get_nowait()
            except queue.Empty:
                batch = None
        now = time.monotonic()
        while compositor.due(now):
            compositor.render_next()
        if compositor.stop_at is not None:
            return
