"""One worker process of `pysfu serve --workers N` (issue 7).

A worker is the single-process server (signaling/app.py) on a loopback
port of its own, with its own event loop and UDP port range, plus:

* a control channel to the supervisor: JSON lines on stdin/stdout (the
  supervisor started us; nobody else can speak on it), one message of
  signaling/scaling/control.py a line. The first line in holds the settings; the
  first line out says where we listen.
* a ``RoomSpan`` that keeps the parts of a room that live on several
  workers in step: each worker tells its peers about its own participants
  and tracks, and asks them for the tracks its subscribers need over the
  relay link (sfu/relay.py).

    python -m signaling.scaling.worker   (started by signaling/scaling/supervisor.py)
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Optional

from aiohttp import web
from pydantic import ValidationError
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from sfu.published_track import PublishedTrack
from sfu.relay import RelayFeed, RelayLink
from sfu.remote import RemoteParticipant
from sfu.room import Room, RoomRegistry

from ..app import FRONT_SECRET, METRICS, ROOMS, create_app, drain, manage_garbage_collection
from ..config import ServerConfig
from ..logs import setup_logging
from . import control as c

log = logging.getLogger(__name__)

LOAD_EVERY = 0.5  # seconds between load reports to the supervisor


class Control:
    """Control messages to the supervisor (stdout)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    def send(self, message: c.Ready | c.Load | c.To) -> None:
        self._writer.write(c.encode(message))

    def to(self, worker: int, message: c.PeerMessage) -> None:
        self.send(c.To(worker=worker, msg=message))


class RoomSpan:
    """Keeps this worker's part of each spanning room in step with the parts
    on other workers (``peers[room][worker] = relay port``)."""

    def __init__(self, index: int, rooms: RoomRegistry, link: RelayLink, control: Control) -> None:
        self.index = index
        self.rooms = rooms
        self.link = link
        self.control = control
        self.peers: dict[str, dict[int, int]] = {}
        self._feeds: dict[str, RelayFeed] = {}  # remote track id -> feed

    # --- local changes, told to the peers --------------------------------

    def observe(self, event: str, payload: dict) -> None:
        """Room observer: our own participants' joins, leaves and tracks."""
        name = payload["room"]["name"]
        room = self.rooms.rooms.get(name)
        participant = payload.get("participant") or {}
        if participant.get("id") and self._is_remote(room, participant["id"], event):
            return
        if event == "participant_joined":
            self._tell_peers(name, _participant_changed(room.participants[participant["id"]]))
        elif event == "participant_left":
            self._tell_peers(name, c.ParticipantGone(id=participant["id"], reason=payload.get("reason", "left")))
            if room is not None and not room.local_participants():
                asyncio.ensure_future(self._leave_span(name))
        elif event == "track_published" and room is not None:
            track = room.find_track(payload["track"]["id"])
            if track is not None:
                self._tell_peers(name, _track_added(track))
        elif event == "track_unpublished":
            self._tell_peers(name, c.TrackGone(participant_id=participant["id"], track_id=payload["track"]["id"]))

    def _is_remote(self, room: Optional[Room], participant_id: str, event: str) -> bool:
        if room is None:
            return event != "participant_left"
        found = room.participants.get(participant_id)
        if found is None:  # already gone: remote ones are removed without events
            return False
        return not found.local

    def _tell_peers(self, room: str, change: c.SpanChange) -> None:
        for worker in self.peers.get(room, {}):
            self._send_change(worker, room, change)

    def _send_change(self, worker: int, room: str, change: c.SpanChange) -> None:
        self.control.to(worker, c.SpanEvent(room=room, origin=self.index, relay_port=self.link.port, change=change))

    def _snapshot(self, worker: int, name: str) -> None:
        room = self.rooms.rooms.get(name)
        for participant in room.local_participants() if room else []:
            self._send_change(worker, name, _participant_changed(participant))
            for track in participant.tracks.values():
                self._send_change(worker, name, _track_added(track))

    # --- control messages -----------------------------------------------------

    async def handle(self, message: c.Hosts | c.WorkerGone | c.PeerMessage) -> None:
        if isinstance(message, c.Hosts):
            await self._on_hosts(message.room, message.workers)
        elif isinstance(message, c.Peer):
            self.peers.setdefault(message.room, {})[message.worker] = message.relay_port
            self._snapshot(message.worker, message.room)
        elif isinstance(message, c.PeerGone):
            await self._forget_peer(message.room, message.worker, "worker_left")
        elif isinstance(message, c.WorkerGone):
            for room in list(self.peers):
                await self._forget_peer(room, message.worker, "worker_restarted")
        elif isinstance(message, c.SpanEvent):
            await self._on_event(message)
        elif isinstance(message, c.RelayOpen):
            self._open_sink(message)

    async def _on_hosts(self, name: str, workers: dict[int, int]) -> None:
        """We host ``name`` now too: meet its other workers."""
        known = self.peers.setdefault(name, {})
        for worker, port in workers.items():
            if worker == self.index or worker in known:
                continue
            known[worker] = port
            self.control.to(worker, c.Peer(room=name, worker=self.index, relay_port=self.link.port))
            self._snapshot(worker, name)

    async def _on_event(self, message: c.SpanEvent) -> None:
        if message.origin not in self.peers.get(message.room, {}):
            return  # not (or no longer) a part of that room here
        room = self.rooms.get_or_create(message.room)
        change = message.change
        if isinstance(change, c.ParticipantChanged):
            existing = room.participants.get(change.info.id)
            if existing is None:
                room.add_remote(RemoteParticipant(change.info.model_dump(), change.hidden, message.origin))
            elif not existing.local:
                existing.update(change.info.model_dump())
        elif isinstance(change, c.ParticipantGone):
            remote = room.participants.get(change.id)
            if remote is not None and not remote.local:
                await self._remove_remote(room, remote, change.reason)
        elif isinstance(change, c.TrackAdded):
            self._add_remote_track(room, message, change)
        elif isinstance(change, c.TrackGone):
            owner = room.participants.get(change.participant_id)
            if owner is not None and not owner.local:
                room.remove_remote_track(owner, change.track_id)
                self._close_feed(change.track_id)

    def _add_remote_track(self, room: Room, message: c.SpanEvent, added: c.TrackAdded) -> None:
        info = added.track
        owner = room.participants.get(info.participant_id)
        if owner is None or owner.local or info.id in owner.tracks:
            return
        track = PublishedTrack(info.id, owner.id, info.kind, "", added.codec, info.source, info.muted, added.rids)
        track.audio_level_id = added.audio_level_id
        feed = self._feeds[track.id] = self.link.open_feed(track, message.relay_port)
        room.add_remote_track(owner, track)
        self.control.to(message.origin, c.RelayOpen(room=room.name, track_id=track.id, port=self.link.port,
                                                    number=feed.number))

    def _open_sink(self, message: c.RelayOpen) -> None:
        room = self.rooms.rooms.get(message.room)
        track = room.find_track(message.track_id) if room else None
        owner = room.participants.get(track.participant_id) if track else None
        if track is not None and owner is not None and owner.local:
            self.link.open_sink(track, message.port, message.number, room.name)

    def _close_feed(self, track_id: str) -> None:
        feed = self._feeds.pop(track_id, None)
        if feed is not None:
            feed.close()

    async def _remove_remote(self, room: Room, remote: RemoteParticipant, reason: str) -> None:
        track_ids = list(remote.tracks)
        await room.remove_remote(remote, reason)
        for track_id in track_ids:
            self._close_feed(track_id)

    async def _forget_peer(self, name: str, worker: int, reason: str) -> None:
        port = self.peers.get(name, {}).pop(worker, None)
        if port is not None:
            self.link.close_sinks(port, name)
        room = self.rooms.rooms.get(name)
        for participant in list(room.participants.values()) if room else []:
            if not participant.local and participant.worker == worker:
                await self._remove_remote(room, participant, reason)

    async def _leave_span(self, name: str) -> None:
        """Our last participant of ``name`` left: this worker is no part of it now."""
        for worker in list(self.peers.get(name, {})):
            self.control.to(worker, c.PeerGone(room=name, worker=self.index))
            await self._forget_peer(name, worker, "worker_left")
        self.peers.pop(name, None)

    def load(self) -> c.Load:
        counters = self.rooms.counters()
        return c.Load(
            rooms={name: len(room.local_participants()) for name, room in self.rooms.rooms.items()
                   if room.local_participants()},
            packets_in=sum(v for (name, _), v in counters.items() if name == "packets_in"),
            packets_out=sum(v for (name, _), v in counters.items() if name == "packets_out"),
        )


def _participant_changed(participant) -> c.ParticipantChanged:
    return c.ParticipantChanged(info=participant.info(), hidden=participant.hidden)


def _track_added(track: PublishedTrack) -> c.TrackAdded:
    return c.TrackAdded(track=track.info(), codec=track.codec, rids=track.rids, audio_level_id=track.audio_level_id)


class RelayCollector:
    """Relay link counters for /metrics: each relayed track is one sink."""

    def __init__(self, link: RelayLink) -> None:
        self._link = link

    def collect(self):
        link = self._link
        for name, help_text, value in (
            ("pysfu_relay_packets_sent", "packets sent to other workers over relay links", link.packets_sent),
            ("pysfu_relay_packets_received", "packets received from other workers", link.packets_received),
            ("pysfu_relay_bytes_sent", "bytes sent to other workers", link.bytes_sent),
            ("pysfu_relay_datagrams_refused", "datagrams on the relay port from no agreed worker address",
             link.refused),
        ):
            yield CounterMetricFamily(name, help_text, value=value)
        yield GaugeMetricFamily("pysfu_relay_tracks_sent", "(track, worker) pairs this worker relays",
                                value=len(link.sinks))
        yield GaugeMetricFamily("pysfu_relay_tracks_received", "tracks received from other workers",
                                value=len(link.feeds))


async def run(config: ServerConfig, reader: asyncio.StreamReader, control: Control, front_secret: str) -> None:
    link = RelayLink(config.sfu)
    await link.start()
    span_holder: list[RoomSpan] = []
    app = create_app(config, observer=lambda event, payload: span_holder[0].observe(event, payload))
    span = RoomSpan(config.worker_index, app[ROOMS], link, control)
    span_holder.append(span)
    app[METRICS].register(RelayCollector(link))
    app[FRONT_SECRET] = front_secret
    manage_garbage_collection(app)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    control.send(c.Ready(port=port, relay_port=link.port, pid=_pid()))
    reports = asyncio.ensure_future(_report_load(span, control))
    try:
        while True:
            line = await reader.readline()
            if not line:
                break  # the supervisor is gone, or tells us to stop
            try:
                message = c.decode(c.TO_WORKER, line)
            except ValidationError:
                log.exception("unreadable control message")
                continue
            if isinstance(message, c.Stop):
                await drain(app, message.grace)
                break
            try:
                await span.handle(message)
            except Exception:
                log.exception("control message %s failed", message.op)
    finally:
        reports.cancel()
        link.close()
        await runner.cleanup()


async def _report_load(span: RoomSpan, control: Control) -> None:
    while True:
        await asyncio.sleep(LOAD_EVERY)
        try:
            control.send(span.load())
        except Exception:
            log.exception("load report failed")


def _pid() -> int:
    import os

    return os.getpid()


async def _main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    start = c.Start.model_validate_json(await reader.readline())
    config = start.config
    setup_logging(config.log_level, config.log_format)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: None)  # the supervisor stops us over stdin
    await run(config, reader, Control(writer), start.front_secret)


def main(argv: Optional[list[str]] = None) -> None:
    uvloop_wanted = "--no-uvloop" not in (argv or sys.argv[1:])
    if uvloop_wanted:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(_main())


if __name__ == "__main__":
    main()
