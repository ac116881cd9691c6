"""Media taps: a track's decoded audio or video, in-process, for bots
(transcription, diarization, vision) running beside the SFU.

A tap reads the track's stream like a down-track (``depacketizer.QueueReader``:
packets go into a thread-safe queue, nothing else happens on the event loop)
and decodes in a thread of its own with a PyAV decoder that exists only
while the tap is attached. ``close()`` detaches and frees the decoder.

    tap = AudioTap(room.find_track(track_id), on_pcm)   # on_pcm(np.ndarray int16), in the tap's thread
    ...
    async with AudioTap(track) as tap:                  # or iterate
        async for pcm in tap:
            ...

Audio comes out as 16 kHz mono int16 chunks (one per received packet,
320 samples for 20 ms); video as ``av.VideoFrame`` objects.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from .codecs import handler as codec_handler
from .depacketizer import Depacketizer, QueueReader

if TYPE_CHECKING:
    from .published_track import PublishedTrack

log = logging.getLogger(__name__)

PCM_RATE = 16000
BATCH_INTERVAL = 0.04  # the tap's thread wakes this often, not per packet (less GIL churn)
BACKLOG = 500  # items kept for a slow ``async for`` reader (oldest dropped)
_STOP = object()


class Tap:
    """Base of AudioTap and VideoTap: attach, decode off the loop, deliver."""

    kind = ""

    def __init__(self, track: PublishedTrack, callback: Optional[Callable[[Any], None]] = None) -> None:
        if track.kind != self.kind:
            raise ValueError(f"{type(self).__name__} needs a {self.kind} track, not {track.kind}")
        codec = codec_handler(track.codec.name)
        if not codec.ffmpeg_name:
            raise ValueError(f"no decoder for {track.codec.name}")
        self.track = track
        self.callback = callback
        self.codec = codec
        self.items_delivered = 0
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self._packets: queue.SimpleQueue = queue.SimpleQueue()
        self._out: asyncio.Queue = asyncio.Queue(BACKLOG)
        self._reader = QueueReader(track, 0, self._packets, self._loop)
        self._thread = threading.Thread(target=self._run, name=f"tap-{track.id}", daemon=True)
        self._thread.start()
        self._reader.attach()

    # --- the user's side ---------------------------------------------------------

    def close(self) -> None:
        """Detach from the track; the thread ends and frees the decoder."""
        if self.closed:
            return
        self.closed = True
        self._reader.detach()
        self._packets.put(_STOP)

    async def aclose(self) -> None:
        self.close()
        await asyncio.to_thread(self._thread.join)

    async def __aenter__(self) -> Tap:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    def __aiter__(self) -> Tap:
        return self

    async def __anext__(self):
        if self.closed and self._out.empty():
            raise StopAsyncIteration
        item = await self._out.get()
        if item is _STOP:
            raise StopAsyncIteration
        return item

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    # --- the tap's thread ----------------------------------------------------------

    def _run(self) -> None:
        import av

        decoder = av.CodecContext.create(self.codec.ffmpeg_name, "r")
        depacketizer = Depacketizer(self.codec, self._reader.request_keyframe)
        try:
            while self._batch(decoder, depacketizer):
                time.sleep(BATCH_INTERVAL)
        except Exception:
            log.exception("tap on %s failed", self.track.id)
        finally:
            del decoder  # freed with the thread's references
            self._loop.call_soon_threadsafe(self._put, _STOP)

    def _batch(self, decoder, depacketizer) -> bool:
        """Decode everything queued (waiting for at least one item); False at the end."""
        import av

        items = [self._packets.get()]
        while True:
            try:
                items.append(self._packets.get_nowait())
            except queue.Empty:
                break
        for item in items:
            if item is _STOP:
                return False
            if len(item) == 2:
                continue  # sender report: taps deliver media as it comes
            _, seq, ts, marker, payload = item
            for frame in depacketizer.push(seq, ts, bool(marker), payload):
                try:
                    decoded = decoder.decode(av.Packet(frame.data))
                except av.FFmpegError:
                    continue  # a damaged frame: the next one may decode
                for media in decoded:
                    self._deliver(self._convert(media))
        return True

    def _convert(self, media):
        return media

    def _deliver(self, item) -> None:
        if item is None:
            return
        self.items_delivered += 1
        if self.callback is not None:
            try:
                self.callback(item)
            except Exception:
                log.exception("tap callback failed")
        else:
            self._loop.call_soon_threadsafe(self._put, item)

    def _put(self, item) -> None:
        if self._out.full():
            self._out.get_nowait()
        self._out.put_nowait(item)


class AudioTap(Tap):
    """Decoded audio of a track: 16 kHz mono PCM as numpy int16 arrays."""

    kind = "audio"

    def _convert(self, frame):
        import av

        if not hasattr(self, "_resampler"):
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=PCM_RATE)
        chunks = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        if not chunks:
            return None
        import numpy as np

        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


class VideoTap(Tap):
    """Decoded video of a track: ``av.VideoFrame`` objects (``.to_ndarray()``)."""

    kind = "video"
