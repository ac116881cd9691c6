"""What a received stream hands to the parts that read it.

Every reader of a ``ReceivedStream`` (a subscriber's down-track, a relay
feed to another worker, a recorder's layer reader, a media tap) implements
``StreamReader``. The stream builds one ``ReceivedPacket`` per packet it
receives and passes that same object to each of its readers in turn: what
is parsed once (header fields, payload slice, keyframe, codec descriptor)
is never parsed again per reader. Readers must not keep or change it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Protocol

if TYPE_CHECKING:
    from .codecs import Description
    from .rtcp import SenderReport


class ReceivedPacket:
    __slots__ = ("data", "payload", "seq", "ts", "offset", "keyframe", "arrival", "layer", "description",
                 "marker", "extension_value")

    def __init__(
        self, data: bytes, payload: bytes, seq: int, ts: int, offset: int, keyframe: bool,
        arrival: float, layer: int = 0, description: Optional[Description] = None,
        extension_value: bytes = b"",
    ) -> None:
        self.data = data  # the whole RTP packet, as received (decrypted)
        self.payload = payload  # data[offset:end], without RTP padding
        self.seq = seq
        self.ts = ts
        self.offset = offset  # where the payload starts in data
        self.keyframe = keyframe  # starts a keyframe
        self.arrival = arrival  # time.monotonic() when it came in
        self.layer = layer  # the simulcast layer of the stream (0: lowest or only)
        self.description = description  # codec descriptor, for readers that munge IDs
        self.marker = data[1] & 0x80  # the marker bit, in place (0x80 or 0)
        #: What a forwarded copy's varying header extension carries: the
        #: abs-send-time of ``arrival`` (video) or the audio level byte (audio),
        #: computed once for every reader.
        self.extension_value = extension_value


class StreamReader(Protocol):
    def write(self, packet: ReceivedPacket) -> None:
        """One packet of a stream this reader reads."""

    def send_sender_report(self, report: SenderReport, layer: int) -> None:
        """The publisher's sender report for that stream (``layer``)."""
