"""Recording: tracks of a room muxed into a file without transcoding.

A ``Recording`` reads each recorded track like a down-track (see
``layer_reader.LayerReader``) and hands the packets to one worker thread,
which depacketizes them into frames, maps RTP timestamps to wall-clock time
through the publisher's sender reports (so that audio and video stay in
sync), and muxes them with PyAV: WebM where every codec fits it (VP8 + Opus),
else Matroska (H.264); the codec handlers (sfu/codecs/) tell which.
Video starts at a keyframe; audio before the first video frame is dropped;
a frame with a lost packet is dropped and video resumes at the next
keyframe, timestamps untouched (the file has a gap, not a shift).

A simulcast track is read at its best layer (moving up at a keyframe, the
file's video then changes size). When it follows the room, each track
published after the start is recorded by a ``Recording`` of its own into a
file beside the first one (``later``). ``Recordings`` also starts the other
kinds: "composite" and "audio" (sfu/composite.py).

Recordings are private to the operator: the directory is created 0700 and
each file 0600, participants learn a recording's id but never its path, and
the number in progress is capped per room and per process.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from . import events, recording_files
from .codecs import CodecHandler, handler as codec_handler
from .depacketizer import Depacketizer, Frame
from .ids import new_id
from .layer_reader import LayerReader

if TYPE_CHECKING:
    from .published_track import PublishedTrack
    from .room import Room

log = logging.getLogger(__name__)

TIME_BASE = fractions.Fraction(1, 1000)  # Matroska's own resolution
START_TIMEOUT = 4.0  # seconds to wait for every track's first keyframe and sender report
MAX_PENDING = 1000  # frames held per track while its sender report is awaited
FOLLOW_INTERVAL = 0.5  # seconds between looks for tracks published after the start
_STOP = object()


class TooManyRecordings(Exception):
    """The room's or the process's cap on recordings in progress is reached."""


class UnknownTrack(Exception):
    """A recording asked for a track that is not published in the room."""

    def __init__(self, track_id: str) -> None:
        super().__init__(f"no track {track_id!r} in this room")
        self.track_id = track_id


class NothingToRecord(Exception):
    """A recording asked for while no track is published in the room."""

    def __init__(self) -> None:
        super().__init__("nothing to record: no track is published")


class RecordingSlots:
    """Recordings in progress in the whole process, shared by its rooms."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0


@dataclass
class _TrackState:
    track_id: str
    kind: str
    codec: CodecHandler
    clock_rate: int
    depacketizer: Depacketizer
    origin: Optional[tuple[int, float]] = None  # (unwrapped RTP ts, NTP seconds) of a sender report
    waiting: list = field(default_factory=list)  # frames before the first sender report
    ready: list = field(default_factory=list)  # (wall, frame) before the file is open
    stream: object = None  # av stream, once the file is open
    last_pts: int = -1
    frames: int = 0


class Recording:
    """One recording of one or more tracks into one file."""

    kind = "tracks"

    def __init__(self, room_name: str, tracks: list[PublishedTrack], directory: str | os.PathLike,
                 on_finished: Callable[[Recording], None] = lambda r: None, follow: Optional[Room] = None,
                 path: Optional[Path] = None) -> None:
        self.id = new_id("RC")
        self.room = room_name
        self.track_ids = [t.id for t in tracks]
        webm = all(codec_handler(t.codec.name).webm for t in tracks)
        self.format = "webm" if webm else "matroska"
        safe_room = "".join(c if c.isalnum() or c in "-_" else "_" for c in room_name)[:64]
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.path = path or Path(directory) / f"{safe_room}-{stamp}-{self.id}.{'webm' if webm else 'mkv'}"
        self.started_at = time.time()
        self.error: Optional[str] = None
        self.duration = 0.0
        #: Recordings of the tracks published after the start, one file each (``follow``).
        self.later: list[Recording] = []
        self._follow = follow
        self._follow_timer: Optional[asyncio.TimerHandle] = None
        self._tracks = tracks
        self._on_finished = on_finished
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._loop = asyncio.get_running_loop()
        self._readers: list[LayerReader] = []
        self._states = []
        for t in tracks:
            codec = codec_handler(t.codec.name)
            self._states.append(_TrackState(t.id, t.kind, codec, t.codec.clock_rate, Depacketizer(codec)))
        self._thread = threading.Thread(target=self._run, name=f"recorder-{self.id}", daemon=True)
        self._container = None
        self._origin = 0.0  # wall-clock time of pts 0
        self._done: Optional[asyncio.Future] = None
        self._stopped: Optional[asyncio.Future] = None

    def info(self) -> dict:
        return {"id": self.id, "room": self.room, "path": str(self.path), "track_ids": self.track_ids,
                "kind": self.kind, "files": [p.name for p in self.files()]}

    def files(self) -> list[Path]:
        """This recording's files: the one of the tracks at the start, then one per later track."""
        return [r.path for r in [self, *self.later] if r.path.exists()]

    # --- control (event loop) ---------------------------------------------------

    def start(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._done = self._loop.create_future()
        self._thread.start()
        for key, track in enumerate(self._tracks):
            reader = LayerReader(track, self._queue.put, key)
            self._states[key].depacketizer = Depacketizer(self._states[key].codec, reader.request_keyframe)
            self._readers.append(reader)
            reader.want(len(track.layers) - 1)  # a simulcast track at its best layer
        self._follow_timer = self._loop.call_later(FOLLOW_INTERVAL, self._follow_tracks)

    def _follow_tracks(self) -> None:
        """Move up to the best layer once it flows; with ``follow``, each track
        published since the start gets a file of its own beside this one."""
        for reader in self._readers:
            reader.want(len(reader.track.layers) - 1)
        for track in self._follow.tracks() if self._follow is not None else ():
            if track.id in self.track_ids:
                continue
            self.track_ids.append(track.id)
            path = self.path.with_name(f"{self.path.stem}-{track.id}{self.path.suffix}")
            if not codec_handler(track.codec.name).webm:
                path = path.with_suffix(".mkv")
            later = Recording(self.room, [track], self.path.parent, path=path)
            self.later.append(later)
            later.start()
        self._follow_timer = self._loop.call_later(FOLLOW_INTERVAL, self._follow_tracks)

    def detach_track(self, track_id: str) -> None:
        """A recorded track went away: stop reading it (the file goes on)."""
        for reader in self._readers:
            if reader.track.id == track_id:
                reader.detach()
        for later in self.later:
            later.detach_track(track_id)

    async def stop(self) -> None:
        """Stop reading, let the workers finish the files; returns when they are complete."""
        if self._done is None:
            return
        if self._stopped is None:
            self._stopped = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopped)

    async def _stop(self) -> None:
        if self._follow_timer is not None:
            self._follow_timer.cancel()
        for reader in self._readers:
            reader.detach()
        self._queue.put(_STOP)
        await asyncio.gather(*(later.stop() for later in self.later))
        await asyncio.shield(self._done)
        self.duration = max([self.duration, *(later.duration for later in self.later)])
        self._on_finished(self)

    @property
    def complete(self) -> bool:
        return self._done is not None and self._done.done()

    # --- the worker thread ------------------------------------------------------

    def _run(self) -> None:
        try:
            self._work()
        except Exception as exc:  # never let the file stay half-open silently
            log.exception("recording %s failed", self.id)
            self.error = str(exc)
        finally:
            self._close_container()
            self._loop.call_soon_threadsafe(self._finished)

    def _finished(self) -> None:
        if not self._done.done():
            self._done.set_result(None)
        if self._stopped is None:  # the worker failed: end the later files too
            asyncio.ensure_future(self.stop())

    def _work(self) -> None:
        started = time.monotonic()
        while True:
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            if item is not None:
                self._handle(item)
            if self._container is None and (self._all_ready() or time.monotonic() - started > START_TIMEOUT):
                self._open()
        for state in self._states:
            for frame in state.depacketizer.flush():
                self._frame(state, frame)
        if self._container is None:
            self._open()

    def _handle(self, item: tuple) -> None:
        what, key = item[0], item[1]
        state = self._states[key]
        if what == "rtp":
            _, _, seq, ts, marker, payload, _ = item
            for frame in state.depacketizer.push(seq, ts, bool(marker), payload):
                self._frame(state, frame)
        elif what == "sr":
            if state.origin is None:
                state.origin = (state.depacketizer.unwrap_timestamp(item[2]), item[3])
                for frame in state.waiting:
                    self._timed(state, frame)
                state.waiting.clear()
        elif what == "reset":  # (another) layer from here: new numbering and timestamps
            for frame in state.depacketizer.flush():
                self._frame(state, frame)
            state.depacketizer = Depacketizer(state.codec, self._readers[key].request_keyframe)
            state.origin = None

    def _frame(self, state: _TrackState, frame: Frame) -> None:
        if state.origin is None:
            state.waiting.append(frame)
            del state.waiting[:-MAX_PENDING]
        else:
            self._timed(state, frame)

    def _timed(self, state: _TrackState, frame: Frame) -> None:
        rtp, ntp = state.origin
        wall = ntp + (frame.timestamp - rtp) / state.clock_rate
        if self._container is None:
            state.ready.append((wall, frame))
            if state.kind == "audio":
                del state.ready[:-MAX_PENDING]
        elif state.stream is not None:
            self._mux(state, wall, frame)

    def _all_ready(self) -> bool:
        return all(state.ready for state in self._states)

    def _open(self) -> None:
        import av

        ready = [s for s in self._states if s.ready]
        if not ready:
            return  # nothing ever arrived: no file
        video = [s for s in ready if s.kind == "video"]
        self._origin = min(s.ready[0][0] for s in (video or ready))
        # Created 0600 (and never through a link someone left there) before PyAV writes it.
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self._container = av.open(str(self.path), "w", format=self.format)
        for state in ready:
            state.stream = self._add_stream(state)
        for state in self._states:
            if state.stream is None:
                log.warning("recording %s: track %s sent nothing usable in time: left out (%s origin=%s waiting=%d lost=%d dropped=%d)", self.id, state.track_id, state.kind, state.origin, len(state.waiting), state.depacketizer.packets_lost, state.depacketizer.frames_dropped)
        for state in ready:
            for wall, frame in state.ready:
                self._mux(state, wall, frame)
            state.ready.clear()

    def _add_stream(self, state: _TrackState):
        container = self._container
        first = state.ready[0][1]
        codec = state.codec
        if state.kind == "audio":
            stream = container.add_stream(codec.ffmpeg_name, rate=state.clock_rate)
        else:  # sized by the first keyframe, which also carries what the decoder needs
            stream = container.add_stream(codec.ffmpeg_name)
            stream.width, stream.height = codec.picture_size(first.data) or _decoded_size(codec, first.data)
            extradata = codec.extradata(first.data)
            if extradata:
                stream.codec_context.extradata = extradata
        stream.time_base = TIME_BASE
        return stream

    def _mux(self, state: _TrackState, wall: float, frame: Frame) -> None:
        import av

        pts = round((wall - self._origin) * 1000)
        if pts < 0:
            return  # audio from before the video started
        if pts <= state.last_pts:
            pts = state.last_pts + 1
        state.last_pts = pts
        packet = av.Packet(frame.data)
        packet.stream = state.stream
        packet.pts = packet.dts = pts
        packet.time_base = TIME_BASE
        packet.is_keyframe = frame.keyframe
        self._container.mux(packet)
        state.frames += 1
        self.duration = max(self.duration, pts / 1000)

    def _close_container(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                log.exception("recording %s: closing the file failed", self.id)


def _decoded_size(codec: CodecHandler, data: bytes) -> tuple[int, int]:
    """Picture size of a keyframe whose header does not tell it (H.264): decoded
    once, at the start of a recording."""
    import av

    decoder = av.CodecContext.create(codec.ffmpeg_name, "r")
    try:
        for frame in decoder.decode(av.Packet(data)):
            return frame.width, frame.height
        for frame in decoder.decode(None):
            return frame.width, frame.height
    except av.FFmpegError:
        pass
    return 640, 480


# --- a room's recordings ---------------------------------------------------------


class Recordings:
    """The recordings of one room: started, stopped, and told about."""

    def __init__(self, room, directory: str | os.PathLike, per_room: int, slots: RecordingSlots) -> None:
        self.room = room
        self.directory = directory
        self.per_room = per_room
        self.slots = slots
        self.active: dict[str, Recording] = {}

    def record(self, kind: Optional[str] = None, track_ids: Optional[list[str]] = None) -> Recording:
        """Start the recording a client or the admin API asks for: of the
        named tracks (each once), or of every track published now and those
        published later.  ``kind`` by default: "tracks" when tracks are named,
        else "composite".  Raises UnknownTrack (the first one), NothingToRecord
        and TooManyRecordings."""
        if track_ids is None:
            tracks = self.room.tracks()
        else:
            named = list(dict.fromkeys(track_ids))
            tracks = [self.room.find_track(track_id) for track_id in named]
            for track_id, track in zip(named, tracks):
                if track is None:
                    raise UnknownTrack(track_id)
        if not tracks:
            raise NothingToRecord()
        kind = kind or ("tracks" if track_ids is not None else "composite")
        return self.start(tracks, kind, follow=track_ids is None)

    def start(self, tracks: list[PublishedTrack], kind: str = "composite", follow: bool = True) -> Recording:
        """Start a recording of ``kind``: "composite" (the whole room as one
        MP4, see sfu/composite.py), "audio" (every voice mixed into one .m4a)
        or "tracks" (these tracks in one file, no transcoding; with
        ``follow``, each track published later in a file of its own).
        Raises TooManyRecordings when a cap is reached."""
        if len(self.active) >= self.per_room:
            raise TooManyRecordings(f"this room has {len(self.active)} recordings in progress (the limit)")
        if self.slots.in_use >= self.slots.limit:
            raise TooManyRecordings(f"the server has {self.slots.in_use} recordings in progress (the limit)")
        if kind in ("composite", "audio"):
            from .composite import CompositeRecording

            recording = CompositeRecording(self.room, self.directory, self._finished, kind=kind)
        else:
            recording = Recording(self.room.name, tracks, self.directory, self._finished,
                                  follow=self.room if follow else None)
        recording.start()
        self.active[recording.id] = recording
        self.slots.in_use += 1
        self.room.broadcast(events.RecordingStarted(self.room.name, recording.id, recording.track_ids))
        log.info("recording %s of %s started: %s", recording.id, self.room.name, recording.path)
        return recording

    async def stop(self, recording_id: Optional[str] = None) -> list[Recording]:
        """Stop one recording (all when None); returns them once their files are complete."""
        chosen = [r for r in self.active.values() if recording_id in (None, r.id)]
        for recording in chosen:
            self._forget(recording)
        await asyncio.gather(*(r.stop() for r in chosen))
        return chosen

    def _forget(self, recording: Recording) -> None:
        if self.active.pop(recording.id, None) is not None:
            self.slots.in_use -= 1

    def track_gone(self, track_id: str) -> None:
        for recording in self.active.values():
            recording.detach_track(track_id)

    def _finished(self, recording: Recording) -> None:
        self._forget(recording)
        self.room.broadcast(events.RecordingStopped(self.room.name, recording.id, recording.track_ids))
        if recording.path.exists():
            size = sum(path.stat().st_size for path in recording.files())
            info = {**recording.info(), "duration": round(recording.duration, 3), "size": size,
                    "started_at": round(recording.started_at, 3), "finished_at": round(time.time(), 3)}
            try:
                recording_files.write_sidecar(recording.path, {k: v for k, v in info.items() if k != "path"})
            except OSError:
                log.exception("recording %s: its description could not be written", recording.id)
            self.room._emit("recording_finished", recording=info)
        recording_files.expire(self.directory, self.room.config.recording_retention_days)
        log.info("recording %s finished (%s)", recording.id, recording.error or "ok")
