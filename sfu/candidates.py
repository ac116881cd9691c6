"""Which ICE candidates a client may hand us.

Every remote candidate makes the server send STUN checks to the address it
names, so a client could aim our checks at any host and port it likes. The
policy keeps that small: at most ``max_remote_candidates`` distinct
transport addresses per connection (a renegotiation repeating them costs
nothing),
only IP addresses (mDNS ``.local`` names are ignored: the server could only
resolve them by multicast on its own link), never unspecified, multicast or
broadcast addresses, and loopback only when the server itself offers a
loopback address (a test or same-host setup, e.g. ``--ice-address 127.0.0.1``).
Private addresses stay allowed: LANs need them.
"""

from __future__ import annotations

import ipaddress
from typing import Optional

from .media_section import SdpError

CANDIDATE_LINE = "a=candidate:"


class CandidateRefused(SdpError):
    """A remote ICE candidate the policy does not accept."""


class CandidatePolicy:
    """Counts one connection's remote candidates and judges each one."""

    def __init__(self, limit: int, allow_loopback: bool) -> None:
        self.limit = limit
        self.allow_loopback = allow_loopback
        self.accepted: set[tuple[str, str, str]] = set()

    def admit(self, transport: str, host: str, port: str) -> bool:
        """True: add the candidate; False: ignore it quietly (mDNS);
        CandidateRefused: the client sent something it must not."""
        if host.lower().endswith(".local"):
            return False
        key = (transport.lower(), host, str(port))
        if key in self.accepted:
            return True
        refusal = self._refusal(host)
        if refusal is not None:
            raise CandidateRefused(f"ICE candidate {host[:64]!r} refused: {refusal}")
        self.accepted.add(key)
        return True

    def _refusal(self, host: str) -> Optional[str]:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return "not an IP address"
        if len(self.accepted) >= self.limit:
            return f"more than {self.limit} candidates on one connection"
        if address.is_unspecified or address.is_multicast or host == "255.255.255.255":
            return "not a unicast address"
        if address.is_loopback and not self.allow_loopback:
            return "loopback, and this server offers no loopback address"
        return None

    def filter_sdp(self, sdp: str) -> str:
        """``sdp`` without the candidate lines to ignore; CandidateRefused
        (an SdpError) for one the client must not send."""
        lines = sdp.split("\n")
        kept = [line for line in lines if not line.startswith(CANDIDATE_LINE) or self._admit_line(line)]
        return sdp if len(kept) == len(lines) else "\n".join(kept)

    def _admit_line(self, line: str) -> bool:
        fields = line.split()  # a=candidate:foundation component transport priority host port typ ...
        if len(fields) < 6:
            raise CandidateRefused(f"bad ICE candidate line {line[:80]!r}")
        return self.admit(fields[2], fields[4], fields[5])


def offers_loopback(addresses: list[str]) -> bool:
    return any(_is_loopback(address) for address in addresses)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
