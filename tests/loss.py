"""Packet loss on a server's way out to one subscriber, injected at its transport."""

from __future__ import annotations


class EgressLoss:
    """Drops every ``every``-th media packet the transport sends as a first
    transmission (only those of ``payload_type`` when given). Retransmissions
    (``send_rtp``) pass, so NACKs repair the loss, unless ``drop_retransmissions``,
    so the loss shows in the subscriber's reports. ``stop()`` ends the loss."""

    def __init__(self, transport, every: int, payload_type: int | None = None,
                 drop_retransmissions: bool = False) -> None:
        self.transport = transport
        self._parts, self._whole = transport.send_rtp_parts, transport.send_rtp
        self._every = every
        self._payload_type = payload_type
        self._seen = 0
        self.dropped = 0
        transport.send_rtp_parts = self._send_parts
        if drop_retransmissions:
            transport.send_rtp = lambda packet: True

    def _send_parts(self, header: bytes, extension: bytes, payload: bytes) -> bool:
        if self._payload_type is None or header[1] & 0x7F == self._payload_type:
            self._seen += 1
            if self._seen % self._every == 0:
                self.dropped += 1
                return True
        return self._parts(header, extension, payload)

    def stop(self) -> None:
        self.transport.send_rtp_parts, self.transport.send_rtp = self._parts, self._whole
