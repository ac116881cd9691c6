"""Reading a published track for a recorder, like a subscriber would.

A ``LayerReader`` is a down-track without a transport: it sits in the
track's reader list (so dynacast keeps the layer it wants flowing) and in
the reader list of the layer it reads, and hands each packet, as bytes and
ints, to ``sink``. It reads one layer at a time and moves to the wanted one
at that layer's first keyframe. Items given to ``sink``:

- ``("rtp", key, seq, ts, marker, payload, arrival)`` per packet;
- ``("sr", key, rtp_ts, ntp_seconds)`` per sender report of the layer read;
- ``("reset", key)`` when another layer's packets follow (new numbering).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Callable

from .layer_selector import OFF

if TYPE_CHECKING:
    from .published_track import PublishedTrack
    from .stream_reader import ReceivedPacket


class LayerReader:
    """Reads one track for the recorder like a down-track: one layer at a
    time, switching at a keyframe to the target: the wanted layer if it
    flows, else the best one that does (call ``want`` again to re-check)."""

    def __init__(self, track: PublishedTrack, sink: Callable[[tuple], None], key=None) -> None:
        self.track = track
        self._loop = asyncio.get_running_loop()
        self.key = track.id if key is None else key
        self.kind = track.kind
        self._sink = sink
        self.desired = OFF  # the layer wanted (dynacast reads it)
        self.target = OFF  # the layer to read: the wanted one, or the best flowing under it
        self.current = OFF  # the layer being read
        self.bound = True
        track.add_downtrack(self)

    def want(self, layer: int) -> None:
        self.desired = min(layer, len(self.track.layers) - 1)
        target = self._best_flowing(self.desired)
        if target != self.target:
            self.target = target
            self.sync_streams()

    def _best_flowing(self, layer: int) -> int:
        now = time.monotonic()
        for index in range(layer, -1, -1):
            stream = self.track.layers[index]
            if stream is not None and stream.flowing(now):
                return index
        return layer  # nothing flows yet: wait for the wanted one

    def request_keyframe(self) -> None:
        """Thread-safe: ask for a keyframe of the layer read (or wanted)."""
        self._loop.call_soon_threadsafe(self._request_keyframe)

    def _request_keyframe(self) -> None:
        layer = self.target if self.target != OFF else self.current
        if self.bound and layer != OFF and self.track.layers[layer] is not None:
            self.track.layers[layer].request_keyframe()

    # --- the down-track interface of PublishedTrack; a StreamReader ------------

    def sync_streams(self) -> None:
        """Be a reader of exactly the current and the target layers."""
        wanted = {self.current, self.target} - {OFF} if self.bound else set()
        for index, stream in enumerate(self.track.layers):
            if stream is None:
                continue
            present = stream.has_reader(self)
            if index in wanted and not present:
                stream.add_reader(self)
                stream.request_keyframe()
            elif index not in wanted and present:
                stream.remove_reader(self)
        if self.current == OFF and self.kind == "audio" and self.target != OFF:
            self._switch(self.target)

    def source_replaced(self) -> None:
        self.current = OFF
        self.sync_streams()

    def detach(self) -> None:
        self.bound = False
        self.sync_streams()
        if self in self.track.downtracks:
            self.track.downtracks.remove(self)

    def write(self, packet: ReceivedPacket) -> None:
        if packet.layer != self.current:
            if packet.layer != self.target or not packet.keyframe:
                return
            self._switch(packet.layer)
        self._sink(("rtp", self.key, packet.seq, packet.ts, packet.marker, packet.payload, packet.arrival))

    def send_sender_report(self, report, layer: int = 0) -> None:
        if layer == self.current:
            self._sink(("sr", self.key, report.rtp_ts, report.ntp / 2**32))

    def _switch(self, layer: int) -> None:
        self.current = layer
        self._sink(("reset", self.key))
        stream = self.track.layers[layer]
        if stream is not None and stream.sender_report is not None:
            self.send_sender_report(stream.sender_report, layer)
        self.sync_streams()
