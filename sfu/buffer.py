"""Per-stream receive state: the packet cache that answers NACKs, and the
RFC 3550 reception statistics that feed receiver reports."""

from __future__ import annotations

from typing import Optional

from .rtcp import ReportBlock


class PacketCache:
    """The last ``size`` packets of one stream, by sequence number.

    With ``keep`` (seconds) the cache is sized by time instead: it starts at
    ``start`` entries and doubles (up to ``size``) whenever a packet would
    overwrite one younger than ``keep``, so a 15 packets/s layer holds a few
    dozen packets, not thousands. It never shrinks.
    """

    __slots__ = ("_mask", "_packets", "_seqs", "_times", "_keep", "_max")

    def __init__(self, size: int = 1024, keep: Optional[float] = None, start: int = 64) -> None:
        if size <= 0 or size & (size - 1) or start <= 0 or start & (start - 1):
            raise ValueError("size must be a power of two")
        self._max = size
        self._keep = keep
        self._allocate(size if keep is None else min(size, start))

    def _allocate(self, size: int) -> None:
        self._mask = size - 1
        self._packets: list[Optional[bytes]] = [None] * size
        self._seqs = [-1] * size
        self._times = [0.0] * size

    @property
    def size(self) -> int:
        return self._mask + 1

    def put(self, seq: int, packet: bytes, now: float = 0.0) -> None:
        index = seq & self._mask
        keep = self._keep
        if keep is not None and self._seqs[index] >= 0 and now - self._times[index] < keep:
            if self._mask + 1 < self._max:
                self._grow()
                index = seq & self._mask
        self._packets[index] = packet
        self._seqs[index] = seq
        self._times[index] = now

    def _grow(self) -> None:
        old = list(zip(self._seqs, self._packets, self._times))
        old.sort(key=lambda entry: entry[2])  # oldest first: the newest win a shared index
        self._allocate((self._mask + 1) * 2)
        for seq, packet, time in old:
            if seq >= 0:
                index = seq & self._mask
                self._packets[index], self._seqs[index], self._times[index] = packet, seq, time

    def get(self, seq: int) -> Optional[bytes]:
        index = seq & self._mask
        if self._seqs[index] != seq:
            return None
        return self._packets[index]

    def clear(self) -> None:
        self._allocate(self._mask + 1)


class ReceiveStats:
    """RFC 3550 appendix A.1 and A.8: sequence tracking, loss and jitter."""

    __slots__ = (
        "ssrc", "clock_rate", "base_seq", "max_seq", "cycles", "received",
        "expected_prior", "received_prior", "jitter", "_transit", "bytes",
        "last_sr_ntp", "last_sr_arrival", "_started",
    )

    def __init__(self, ssrc: int, clock_rate: int) -> None:
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.base_seq = self.max_seq = self.cycles = 0
        self.received = self.expected_prior = self.received_prior = 0
        self.jitter = 0.0
        self._transit: Optional[int] = None
        self.bytes = 0
        self.last_sr_ntp = 0
        self.last_sr_arrival = 0.0
        self._started = False

    def update(self, seq: int, timestamp: int, arrival: float, size: int) -> None:
        """Account one packet (``arrival`` in seconds)."""
        if not self._started:
            self._started = True
            self.base_seq = self.max_seq = seq
        else:
            delta = (seq - self.max_seq) & 0xFFFF
            if 0 < delta < 0x8000:
                if seq < self.max_seq:
                    self.cycles += 0x10000
                self.max_seq = seq
        self.received += 1
        self.bytes += size
        transit = (int(arrival * self.clock_rate) - timestamp) & 0xFFFFFFFF
        if self._transit is not None:
            d = abs(((transit - self._transit + 0x80000000) & 0xFFFFFFFF) - 0x80000000)
            self.jitter += (d - self.jitter) / 16.0
        self._transit = transit

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.extended_max - self.base_seq + 1 if self._started else 0

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)

    def report_block(self, now: float) -> ReportBlock:
        """A report block for this stream; advances the loss interval."""
        expected = self.expected
        interval_expected = expected - self.expected_prior
        interval_received = self.received - self.received_prior
        self.expected_prior, self.received_prior = expected, self.received
        interval_lost = interval_expected - interval_received
        fraction = 0
        if interval_expected > 0 and interval_lost > 0:
            fraction = min(255, (interval_lost << 8) // interval_expected)
        lsr = (self.last_sr_ntp >> 16) & 0xFFFFFFFF
        dlsr = int((now - self.last_sr_arrival) * 65536) if self.last_sr_ntp else 0
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            packets_lost=self.lost,
            highest_seq=self.extended_max,
            jitter=int(self.jitter),
            lsr=lsr,
            dlsr=max(0, dlsr),
        )
