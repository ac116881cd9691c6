"""A stand-in for a subscriber's transport in unit tests: keeps what would be sent."""

from __future__ import annotations


class Sink:
    """``sent``: first transmissions (through ``rtp_sender``) and retransmissions
    (send_rtp) in order, as whole packets; ``resent``: retransmissions only;
    ``rtcp``: RTCP packets."""

    route_version = 0

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.resent: list[bytes] = []
        self.rtcp: list[bytes] = []

    def rtp_sender(self):
        return self._send_parts

    def _send_parts(self, head: bytes, payload: bytes) -> bool:
        self.sent.append(head + payload)
        return True

    def send_rtp(self, packet: bytes) -> bool:
        self.sent.append(packet)
        self.resent.append(packet)
        return True

    def send_rtcp(self, packet: bytes) -> bool:
        self.rtcp.append(packet)
        return True
