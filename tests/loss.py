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
        self._whole = transport.send_rtp
        self._every = every
        self._payload_type = payload_type
        self._seen = 0
        self.dropped = 0
        self._unwrap = wrap_rtp_sender(transport, self._lossy)
        if drop_retransmissions:
            transport.send_rtp = lambda packet: True

    def _lossy(self, send):
        def send_parts(head: bytes, payload: bytes) -> bool:
            if self._payload_type is None or head[1] & 0x7F == self._payload_type:
                self._seen += 1
                if self._seen % self._every == 0:
                    self.dropped += 1
                    return True
            return send(head, payload)

        return send_parts

    def stop(self) -> None:
        self._unwrap()
        self.transport.send_rtp = self._whole


def wrap_rtp_sender(transport, wrap):
    """Pass every first transmission of ``transport`` (a PeerTransport) through
    ``wrap(send)``, a function returning the send function to use instead,
    from the next packet on (down-tracks rebuild their send plan when the
    route version moves). Returns a function that undoes it."""
    original = transport.rtp_sender

    def rtp_sender():
        send = original()
        return None if send is None else wrap(send)

    transport.rtp_sender = rtp_sender
    transport.route_version += 1

    def undo() -> None:
        del transport.rtp_sender  # the method again
        transport.route_version += 1

    return undo
