"""Composite recording: the meeting as one MP4, composed in a process of its own.

A ``CompositeRecording`` subscribes to the room like a participant would:
every voice, the camera (or screen share) on the stage at its best layer,
the filmstrip's cameras at their lowest, nothing of what is off screen. Its
readers sit in the published tracks' reader lists, so dynacast keeps the
layers they want flowing. Packets are appended, as bytes and ints, to a
list that a timer hands to the recorder process every ``BATCH_INTERVAL``
through a bounded queue; a full queue drops the batch (never waits), so
the forwarding loop never waits on the recorder. The process
(``sfu/compositor.py``) decodes, composes, mixes and encodes.

Every ``LAYOUT_INTERVAL`` the layout follows the room: a screen share on
the stage when there is one (every camera in the filmstrip), otherwise the
dominant speaker (sfu/speaker.py) large and the others below; tracks
published after the start join in, muted cameras show a placeholder.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import queue
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from .ids import new_id
from .layer_reader import LayerReader

if TYPE_CHECKING:
    from .published_track import PublishedTrack
    from .room import Room

log = logging.getLogger(__name__)

BATCH_INTERVAL = 0.05  # seconds of packets per batch handed to the process
QUEUE_BATCHES = 200  # batches the queue holds (10 s) before batches are dropped
LAYOUT_INTERVAL = 0.5
MAX_STRIP = 5  # filmstrip tiles at 1280 wide
STOP_TIMEOUT = 120.0  # seconds the process gets to finish the file once stopped


class CompositeRecording:
    """One composite recording of one room into one MP4 file (kind
    "composite"), or of its voices only into one .m4a (kind "audio")."""

    def __init__(self, room: Room, directory, on_finished: Callable[[CompositeRecording], None] = lambda r: None,
                 width: int = 1280, height: int = 720, fps: int = 15, kind: str = "composite") -> None:
        self.id = new_id("RC")
        self.kind = kind
        self.room = room.name
        self._room = room
        safe_room = "".join(c if c.isalnum() or c in "-_" else "_" for c in room.name)[:64]
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.path = Path(directory) / f"{safe_room}-{stamp}-{self.id}.{'m4a' if kind == 'audio' else 'mp4'}"
        self.size = (width, height)
        self.fps = fps
        self.started_at = time.time()
        self.error: Optional[str] = None
        self.duration = 0.0
        self.batches_dropped = 0
        self.track_ids: list[str] = []  # every track that was in the recording
        self._on_finished = on_finished
        self._readers: dict[str, LayerReader] = {}
        self._batch: list[tuple] = []
        self._layout: Optional[dict] = None
        self._loop = asyncio.get_running_loop()
        context = multiprocessing.get_context("spawn")
        self._items = context.Queue(QUEUE_BATCHES)
        self._results = context.Queue()
        self._keyframe_requests = context.Queue()
        self._process = None
        self._context = context
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._stopping = False
        self._done: Optional[asyncio.Future] = None

    def info(self) -> dict:
        return {"id": self.id, "room": self.room, "path": str(self.path), "track_ids": self.track_ids,
                "kind": self.kind, "files": [p.name for p in self.files()]}

    def files(self) -> list[Path]:
        return [self.path] if self.path.exists() else []

    @property
    def pid(self) -> Optional[int]:
        """The recorder process (for the operator's ps and top)."""
        return self._process.pid if self._process is not None else None

    def layers(self) -> dict[str, int]:
        """The layer each track is read at now (OFF: waiting for its keyframe)."""
        return {track_id: reader.current for track_id, reader in self._readers.items()}

    @property
    def complete(self) -> bool:
        return self._done is not None and self._done.done()

    # --- control ---------------------------------------------------------------------

    def start(self) -> None:
        from . import compositor

        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._done = self._loop.create_future()
        self._process = self._context.Process(
            target=compositor.main, name=f"recorder-{self.id}", daemon=True,
            args=(self._items, self._results, self._keyframe_requests, str(self.path), time.monotonic(),
                  *self.size, self.fps, self.kind != "audio"),
        )
        self._process.start()
        self._follow_room()
        self._flush()

    def detach_track(self, track_id: str) -> None:
        reader = self._readers.pop(track_id, None)
        if reader is not None:
            reader.detach()

    async def stop(self) -> None:
        """Stop reading; returns once the process has finished the file."""
        if self._done is None:
            return
        if not self._stopping:
            self._stopping = True
            for timer in self._timers.values():
                timer.cancel()
            for reader in self._readers.values():
                reader.detach()
            self._readers.clear()
            self._batch.append(("stop", time.monotonic()))
            batch, self._batch = self._batch, []
            asyncio.ensure_future(self._finish(batch))
        await asyncio.shield(self._done)

    async def _finish(self, batch: list[tuple]) -> None:
        try:
            await asyncio.to_thread(self._end_process, batch)
        except Exception as exc:
            log.exception("composite recording %s: stopping failed", self.id)
            self.error = self.error or str(exc)
        self._done.set_result(None)
        self._on_finished(self)

    def _end_process(self, batch: list[tuple]) -> None:
        """In a thread: hand over the last batch, wait for the file, collect the result."""
        if self._process.is_alive():
            try:
                self._items.put(batch, timeout=STOP_TIMEOUT)
            except queue.Full:
                self.error = "the recorder process stopped reading"
        self._process.join(STOP_TIMEOUT)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
            self.error = self.error or "the recorder process did not finish in time"
        try:
            result = self._results.get(timeout=1)
        except queue.Empty:
            self.error = self.error or f"the recorder process ended with code {self._process.exitcode}"
        else:
            self.duration = result["duration"]
            self.error = self.error or result["error"]
        for channel in (self._items, self._results, self._keyframe_requests):
            channel.close()

    # --- the room, twice a second ----------------------------------------------------

    def _follow_room(self) -> None:
        if self._stopping:
            return
        if not self._process.is_alive():  # it died: finish with what there is
            self.error = self.error or f"the recorder process ended with code {self._process.exitcode}"
            asyncio.ensure_future(self.stop())
            return
        try:
            self._update_layout()
        except Exception:
            log.exception("composite recording %s: layout failed", self.id)
        self._timers["layout"] = self._loop.call_later(LAYOUT_INTERVAL, self._follow_room)

    def _update_layout(self) -> None:
        room = self._room
        people = [p for p in room.participants.values() if not p.hidden]
        tracks = [t for p in people for t in p.tracks.values()]
        names = {p.id: p.name or p.identity for p in people}
        screen = next((t for t in tracks if t.kind == "video" and t.source == "screen_share"), None)
        cameras = {}
        for track in tracks:
            if track.kind == "video" and track.source != "screen_share":
                cameras.setdefault(track.participant_id, track)
        order = [p.id for p in people]
        if screen is not None:
            stage = {"track": screen, "name": f"{names[screen.participant_id]} (screen)"}
            strip_ids = order
        else:
            speaker = room.speakers.dominant if room.speakers.dominant in names else None
            first = speaker or next((pid for pid in order if pid in cameras), order[0] if order else None)
            stage = {"track": cameras.get(first), "name": names.get(first, "")} if first else None
            strip_ids = [pid for pid in order if pid != first]
        strip = [{"track": cameras.get(pid), "name": names[pid]} for pid in strip_ids[:MAX_STRIP]]
        wanted = {t.id: 0 for t in tracks if t.kind == "audio"}
        if self.kind == "audio":
            self._read(tracks, wanted)
            return
        for tile in strip:
            if tile["track"] is not None and not tile["track"].muted:
                wanted[tile["track"].id] = 0
        if stage is not None and stage["track"] is not None and not stage["track"].muted:
            wanted[stage["track"].id] = len(stage["track"].layers) - 1
        self._read(tracks, wanted)
        layout = {"stage": _tile(stage, wanted), "strip": [_tile(t, wanted) for t in strip]}
        if layout != self._layout:
            self._layout = layout
            self._batch.append(("layout", layout, time.monotonic()))

    def _read(self, tracks: list[PublishedTrack], wanted: dict[str, int]) -> None:
        """Readers for exactly the wanted tracks, each at its wanted layer."""
        for track_id in [k for k in self._readers if k not in wanted]:
            self.detach_track(track_id)
        for track in tracks:
            if track.id not in wanted:
                continue
            reader = self._readers.get(track.id)
            if reader is None:
                self._batch.append(("track", track.id, track.kind, track.codec.name, track.codec.clock_rate,
                                    track.participant_id))
                reader = self._readers[track.id] = LayerReader(track, self._batch_append)
                if track.id not in self.track_ids:
                    self.track_ids.append(track.id)
            reader.want(wanted[track.id])

    # --- handing packets over ----------------------------------------------------------

    def _batch_append(self, item: tuple) -> None:
        self._batch.append(item)

    def _flush(self) -> None:
        if self._stopping:
            return
        if self._batch:
            batch, self._batch = self._batch, []
            try:
                self._items.put_nowait(batch)
            except queue.Full:  # the process is behind: drop media, keep control items
                self.batches_dropped += 1
                self._batch = [item for item in batch if item[0] != "rtp"]
        self._timers["flush"] = self._loop.call_later(BATCH_INTERVAL, self._flush)
        self._forward_keyframe_requests()

    def _forward_keyframe_requests(self) -> None:
        while True:
            try:
                key = self._keyframe_requests.get_nowait()
            except queue.Empty:
                return
            if key in self._readers:
                self._readers[key].request_keyframe()


def _tile(tile: Optional[dict], wanted: dict[str, int]) -> Optional[dict]:
    if tile is None:
        return None
    track = tile["track"]
    return {"key": track.id if track is not None and track.id in wanted else None, "name": tile["name"]}
