"""The relay link between the worker processes of one node (mediasoup's
pipeToRouter idea): a room that spans workers gets each published layer
once per worker, never once per subscriber.

Every worker owns one loopback UDP socket. The worker that hosts a publisher
("A") adds a ``RelaySink`` to the published track, beside the local
down-tracks; it sends each layer's packets, plain RTP (no SRTP inside the
machine), to the other worker ("B"). On B a ``RelayFeed`` turns them back
into ``ReceivedStream`` layers of a ``PublishedTrack`` that B's down-tracks
read like any local track. What B's subscribers need travels back over the
same socket: keyframe requests, NACKs, and the top layer B wants (dynacast).

Each datagram starts with 4 bytes: message kind, layer, and the link number
B chose for the track when it asked A for it. A datagram counts only from
the address agreed for its track over the supervisor's control channel
(the peer worker's relay socket): any other local process sending to the
relay port is refused and counted.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import struct
import time
from typing import TYPE_CHECKING, Optional

from .codecs import handler as codec_handler
from .layer_selector import OFF
from .rtcp import SenderReport
from .stream import ReceivedStream
from .stream_reader import ReceivedPacket

if TYPE_CHECKING:
    from .config import SfuConfig
    from .published_track import PublishedTrack

log = logging.getLogger(__name__)

PREFIX = struct.Struct("!BBH")  # kind, layer, link number
SR_BODY = struct.Struct("!IQI")  # ssrc, NTP time, RTP timestamp
# A -> B
RTP, SR = 0, 1
# B -> A
PLI, NACK, WISH = 2, 3, 4
SOCKET_BUFFER = 4 * 1024 * 1024


class RelaySink:
    """On worker A: one published track sent to one other worker."""

    kind = "relay"

    def __init__(self, link: RelayLink, track: PublishedTrack, address: tuple[str, int], number: int, room: str) -> None:
        self.link = link
        self.track = track
        self.track_id = track.id
        self.address = address
        self.number = number
        self.room = room
        #: Highest layer worker B needs (dynacast counts it like a subscriber).
        self.desired = len(track.layers) - 1
        self.bound = True
        self._prefixes = [PREFIX.pack(RTP, layer, number) for layer in range(len(track.layers))]
        self.packets_sent = 0

    def sync_streams(self) -> None:
        """Read every layer the publisher sends (B picks per subscriber)."""
        for stream in self.track.layers:
            if stream is not None and self.bound:
                stream.add_reader(self)

    def detach(self) -> None:
        self.bound = False
        for stream in self.track.layers:
            if stream is not None:
                stream.remove_reader(self)
        self.link.forget_sink(self)

    def write(self, packet: ReceivedPacket) -> None:
        data = self._prefixes[packet.layer] + packet.data
        self.link.send(data, self.address)
        self.packets_sent += 1
        self.link.packets_sent += 1
        self.link.bytes_sent += len(data)

    def send_sender_report(self, report: SenderReport, layer: int = 0) -> None:
        body = SR_BODY.pack(report.ssrc, report.ntp & 0xFFFFFFFFFFFFFFFF, report.rtp_ts & 0xFFFFFFFF)
        self.link.send(PREFIX.pack(SR, layer, self.number) + body, self.address)

    def on_request(self, kind: int, layer: int, body: bytes) -> None:
        """A keyframe request, NACK or layer wish from worker B."""
        if kind == WISH:
            self.desired = layer - 1  # sent as layer + 1 so that OFF fits a byte
            return
        stream = self.track.layers[layer] if layer < len(self.track.layers) else None
        if stream is None:
            return
        if kind == PLI:
            stream.request_keyframe()
        elif kind == NACK:
            missing = []
            for (seq,) in struct.iter_unpack("!H", body[: len(body) & ~1]):
                packet = stream.cache.get(seq)
                if packet is None:
                    missing.append(seq)
                else:
                    self.link.send(self._prefixes[layer] + packet, self.address)
            if missing:
                stream.request_retransmission(missing)


class RelayedStream(ReceivedStream):
    """On worker B: a layer received over the link; requests go back to A."""

    def __init__(self, feed: RelayFeed, layer: int, **kwargs) -> None:
        super().__init__(layer=layer, send_rtcp=lambda packet: None, rtcp_ssrc=0, **kwargs)
        self._feed = feed

    def _send_pli(self) -> None:
        self._feed.send_request(PLI, self.layer)

    def request_retransmission(self, seqs: list[int]) -> None:
        self.nacks_sent += 1
        self._feed.send_request(NACK, self.layer, b"".join(s.to_bytes(2, "big") for s in seqs[:64]))


class RelayFeed:
    """On worker B: the layers of one track published on worker A."""

    def __init__(self, link: RelayLink, track: PublishedTrack, address: tuple[str, int], number: int,
                 config: SfuConfig) -> None:
        self.link = link
        self.track = track
        self.address = address
        self.number = number
        self.config = config
        self.wish = len(track.layers) - 1
        track.on_dynacast = self._dynacast

    def on_packet(self, kind: int, layer: int, body: bytes, now: float) -> None:
        if layer >= len(self.track.layers):
            return
        stream = self.track.layers[layer]
        if kind == RTP:
            ssrc = int.from_bytes(body[8:12], "big")
            if stream is None or stream.ssrc != ssrc:
                stream = self._new_stream(layer, ssrc)
            stream.on_rtp(body, now)
        elif kind == SR and stream is not None and len(body) >= SR_BODY.size:
            ssrc, ntp, rtp_ts = SR_BODY.unpack_from(body)
            stream.on_sender_report(SenderReport(ssrc, ntp, rtp_ts, 0, 0), now)

    def _new_stream(self, layer: int, ssrc: int) -> RelayedStream:
        track = self.track
        video = track.kind == "video"
        old = track.layers[layer]
        stream = RelayedStream(
            self, layer, kind=track.kind, ssrc=ssrc, clock_rate=track.codec.clock_rate,
            codec=codec_handler(track.codec.name),
            cache_size=4096 if video else 256,
            keyframe_interval=self.config.keyframe_interval_ms / 1000,
            cache_seconds=self.config.cache_ms / 1000,
            audio_level_id=None if video else track.audio_level_id,
            describe=track.simulcast,
        )
        track.set_layer(layer, stream)
        if old is not None:
            old.close()
        return stream

    def send_request(self, kind: int, layer: int, body: bytes = b"") -> None:
        self.link.send(PREFIX.pack(kind, layer, self.number) + body, self.address)

    def _dynacast(self, track: PublishedTrack, qualities: list[dict]) -> None:
        enabled = [i for i, q in enumerate(qualities) if q["enabled"]]
        self.wish = max(enabled, default=OFF)
        self.tick_wish()

    def tick_wish(self) -> None:
        """(Re)send the top layer B needs: datagrams may be lost."""
        self.send_request(WISH, self.wish + 1)

    def tick(self, now: float) -> None:
        for stream in self.track.layers:
            if stream is not None:
                stream.update_bitrate(now)
        self.track.dynacast(now)
        self.tick_wish()

    def close(self) -> None:
        self.link.forget_feed(self)
        self.track.close()


class RelayLink(asyncio.DatagramProtocol):
    """This worker's end of the relay links to every other worker."""

    def __init__(self, config: SfuConfig, host: str = "127.0.0.1") -> None:
        self.config = config
        self.host = host
        self.port = 0
        self._transport: Optional[asyncio.DatagramTransport] = None
        self._sinks: dict[tuple[int, int], RelaySink] = {}  # (B's port, number) -> sink
        self._feeds: dict[int, RelayFeed] = {}  # number -> feed
        self._numbers = itertools.count(1)
        self._tick_task: Optional[asyncio.Task] = None
        self.packets_sent = 0  # media packets (RTP) sent to other workers
        self.bytes_sent = 0
        self.packets_received = 0
        self.bytes_received = 0
        self.refused = 0  # datagrams from an address no relayed track agreed on

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        sock.bind((self.host, 0))
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
        self.port = sock.getsockname()[1]
        self._tick_task = asyncio.ensure_future(self._tick())

    # --- worker A: sending a local track -----------------------------------

    def open_sink(self, track: PublishedTrack, peer_port: int, number: int, room: str) -> RelaySink:
        key = (peer_port, number)
        old = self._sinks.get(key)
        if old is not None:
            old.track.remove_downtrack(old)
        sink = self._sinks[key] = RelaySink(self, track, (self.host, peer_port), number, room)
        track.add_downtrack(sink)
        sink.sync_streams()
        return sink

    def close_sinks(self, peer_port: int, room: Optional[str] = None) -> None:
        """Stop sending to a worker (in one room, or everywhere)."""
        for (port, _), sink in list(self._sinks.items()):
            if port == peer_port and (room is None or sink.room == room):
                sink.track.remove_downtrack(sink)

    def close_sink(self, peer_port: int, number: int) -> None:
        sink = self._sinks.get((peer_port, number))
        if sink is not None:
            sink.track.remove_downtrack(sink)

    def forget_sink(self, sink: RelaySink) -> None:
        key = (sink.address[1], sink.number)
        if self._sinks.get(key) is sink:
            del self._sinks[key]

    @property
    def sinks(self) -> list[RelaySink]:
        return list(self._sinks.values())

    # --- worker B: receiving a remote track ----------------------------------

    def open_feed(self, track: PublishedTrack, peer_port: int) -> RelayFeed:
        """Expect ``track`` from the worker at ``peer_port``; its number goes in
        the request that asks that worker to send it."""
        number = next(self._numbers) & 0xFFFF or next(self._numbers)
        feed = self._feeds[number] = RelayFeed(self, track, (self.host, peer_port), number, self.config)
        return feed

    def forget_feed(self, feed: RelayFeed) -> None:
        if self._feeds.get(feed.number) is feed:
            del self._feeds[feed.number]

    @property
    def feeds(self) -> list[RelayFeed]:
        return list(self._feeds.values())

    # --- datagrams -------------------------------------------------------------

    def send(self, data: bytes, address: tuple[str, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(data, address)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < PREFIX.size:
            self.refused += 1
            return
        kind, layer, number = PREFIX.unpack_from(data)
        if kind <= SR:
            feed = self._feeds.get(number)
            if feed is None or addr[:2] != feed.address:
                self.refused += 1
                return
            self.packets_received += 1
            self.bytes_received += len(data)
            feed.on_packet(kind, layer, data[4:], time.monotonic())
        else:
            sink = self._sinks.get((addr[1], number))
            if sink is None or addr[:2] != sink.address:
                self.refused += 1
                return
            sink.on_request(kind, layer, data[4:])

    def error_received(self, exc: Exception) -> None:
        log.debug("relay link: %s", exc)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for feed in list(self._feeds.values()):
                try:
                    feed.tick(now)
                except Exception:
                    log.exception("relay feed tick failed")

    def close(self) -> None:
        if self._tick_task is not None:
            self._tick_task.cancel()
        for sink in list(self._sinks.values()):
            sink.track.remove_downtrack(sink)
        for feed in list(self._feeds.values()):
            feed.close()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
