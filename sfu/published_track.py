"""A track a participant publishes: its streams and who reads them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from .stream import ReceivedStream

if TYPE_CHECKING:
    from .downtrack import DownTrack
    from .transport import CodecInfo


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
    ) -> None:
        self.id = track_id
        self.participant_id = participant_id
        self.kind = kind
        self.mid = mid
        self.codec = codec
        self.source = source
        self.muted = muted
        self.audio_level_id: Optional[int] = None
        self.stream: Optional[ReceivedStream] = None
        self.downtracks: list[DownTrack] = []  # every subscriber, bound or not

    def info(self) -> dict:
        return {
            "id": self.id,
            "participant_id": self.participant_id,
            "kind": self.kind,
            "source": self.source,
            "muted": self.muted,
            "codec": self.codec.mime_type,
        }

    def set_stream(self, stream: ReceivedStream) -> None:
        self.stream = stream

    def add_downtrack(self, downtrack: DownTrack) -> None:
        self.downtracks.append(downtrack)

    def remove_downtrack(self, downtrack: DownTrack) -> None:
        if downtrack in self.downtracks:
            self.downtracks.remove(downtrack)
        downtrack.detach()

    def close(self) -> None:
        for downtrack in list(self.downtracks):
            downtrack.detach()
        self.downtracks.clear()
        if self.stream is not None:
            self.stream.close()
