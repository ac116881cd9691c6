"""A track a participant publishes: its streams (one per simulcast layer),
who reads them, and which layers anyone needs (dynacast)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from .layer_selector import OFF, LayerInfo
from .stream import ReceivedStream

if TYPE_CHECKING:
    from .downtrack import DownTrack
    from .media_section import CodecInfo

RID_QUALITY = {"q": "low", "h": "medium", "f": "high"}
QUALITY_ORDER = ("low", "medium", "high")
DYNACAST_DELAY = 2.0  # seconds a layer must be unneeded before it is paused


class PublishedTrack:
    def __init__(
        self,
        track_id: str,
        participant_id: str,
        kind: str,
        mid: str,
        codec: CodecInfo,
        source: str,
        muted: bool = False,
        rids: Optional[list[str]] = None,
    ) -> None:
        self.id = track_id
        self.participant_id = participant_id
        self.kind = kind
        self.mid = mid
        self.codec = codec
        self.source = source
        self.muted = muted
        self.rids = _ordered(rids or [])
        self.audio_level_id: Optional[int] = None
        self.layers: list[Optional[ReceivedStream]] = [None] * max(1, len(self.rids))
        self.downtracks: list[DownTrack] = []  # every subscriber, bound or not
        self.on_dynacast: Callable[[PublishedTrack, list[dict]], None] = lambda track, q: None
        self._enabled_top = len(self.layers) - 1  # highest layer the publisher sends
        self._unneeded_since: Optional[float] = None
        #: When dynacast last asked for a layer after pausing them all: the
        #: publisher's silence before that was asked for (sfu/quality.py).
        self.resumed_at = 0.0
        self._infos: list[LayerInfo] = []
        self._infos_time = -1.0

    @property
    def simulcast(self) -> bool:
        return len(self.rids) > 1

    @property
    def paused(self) -> bool:
        """Dynacast paused every layer: nobody watches."""
        return self._enabled_top == OFF

    @property
    def stream(self) -> Optional[ReceivedStream]:
        """The stream of a single-layer track (the lowest layer otherwise)."""
        return self.layers[0]

    def info(self) -> dict:
        return {
            "id": self.id,
            "participant_id": self.participant_id,
            "kind": self.kind,
            "source": self.source,
            "muted": self.muted,
            "codec": self.codec.mime_type,
        }

    # --- layers ---------------------------------------------------------------

    def layer_of_rid(self, rid: str) -> Optional[int]:
        return self.rids.index(rid) if rid in self.rids else None

    def set_layer(self, layer: int, stream: ReceivedStream) -> None:
        self.layers[layer] = stream
        for downtrack in self.downtracks:
            downtrack.sync_streams()

    def reset_layers(self) -> None:
        """The publisher reconnected: drop the old streams; its down-tracks
        carry on with the new ones from their next keyframe."""
        for stream in self.layers:
            if stream is not None:
                stream.close()
        self.layers = [None] * len(self.layers)
        self._infos_time = -1.0
        self._enabled_top = len(self.layers) - 1  # a fresh sender sends every layer
        self._unneeded_since = None
        for downtrack in self.downtracks:
            downtrack.source_replaced()

    def quality_of(self, layer: int) -> str:
        if layer == OFF:
            return "off"
        if self.rids and self.rids[layer] in RID_QUALITY:
            return RID_QUALITY[self.rids[layer]]
        return QUALITY_ORDER[min(2, layer + 3 - len(self.layers))]

    def rid_of(self, layer: int) -> Optional[str]:
        return self.rids[layer] if 0 <= layer < len(self.rids) else None

    def layer_infos(self, now: float) -> list[LayerInfo]:
        """What each layer looks like now (shared by all subscribers for 50 ms)."""
        if now - self._infos_time > 0.05:
            self._infos = [
                LayerInfo(flowing=s is not None and s.flowing(now),
                          width=s.width if s else 0, height=s.height if s else 0)
                for s in self.layers
            ]
            self._infos_time = now
        return self._infos

    def bitrates(self) -> list[float]:
        """What each layer costs when flowing (0: never measured)."""
        return [s.cost if s is not None else 0.0 for s in self.layers]

    # --- subscribers ------------------------------------------------------------

    def add_downtrack(self, downtrack: DownTrack) -> None:
        self.downtracks.append(downtrack)

    def remove_downtrack(self, downtrack: DownTrack) -> None:
        if downtrack in self.downtracks:
            self.downtracks.remove(downtrack)
        downtrack.detach()

    # --- dynacast ---------------------------------------------------------------

    def dynacast(self, now: float) -> None:
        """Tell the publisher to pause layers nobody needs, and resume them.

        A camera nobody watches pauses entirely, its lowest layer too (as
        LiveKit's): in a room of 150 with last-N 9 that is most cameras, and
        their lowest layers were three quarters of the server's ingress. A
        new watcher waits for the resume (a signaling message and a key
        frame) instead of a key frame alone."""
        if not self.simulcast:
            return
        top = max((d.desired for d in self.downtracks), default=OFF)
        if top > self._enabled_top:
            self._unneeded_since = None
            if self.paused:
                self.resumed_at = now
            self._set_enabled_top(top)
        elif top < self._enabled_top:
            if self._unneeded_since is None:
                self._unneeded_since = now
            elif now - self._unneeded_since >= DYNACAST_DELAY:
                self._unneeded_since = None
                self._set_enabled_top(top)
        else:
            self._unneeded_since = None

    def _set_enabled_top(self, top: int) -> None:
        self._enabled_top = top
        qualities = [
            {"quality": self.quality_of(i), "rid": rid, "enabled": i <= top}
            for i, rid in enumerate(self.rids)
        ]
        self.on_dynacast(self, qualities)

    def close(self) -> None:
        for downtrack in list(self.downtracks):
            downtrack.detach()
        self.downtracks.clear()
        for stream in self.layers:
            if stream is not None:
                stream.close()


def _ordered(rids: list[str]) -> list[str]:
    """Lowest layer first: q/h/f by name, other rids as offered."""
    if rids and all(r in RID_QUALITY for r in rids):
        return sorted(rids, key=lambda r: "qhf".index(r))
    return list(rids)
