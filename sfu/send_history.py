"""What a down-track sent, by output sequence number, to answer NACKs.

A subscriber NACKs the numbers it saw missing; the down-track needs to know
which source packet each one was (its sequence number and layer, to find it
in that stream's packet cache), the timestamp it went out with and the
codec ID offsets in force then (a retransmission must carry the same
picture IDs as the original). A ring of ``size`` entries, indexed by the
output number's low bits: a lookup finds an entry only if it is for that
exact number, so anything overwritten, or sent before a ``clear``, is
simply not found (as LiveKit's sequencer and mediasoup's SeqManager).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

SIZE = 2048  # packets remembered (a power of two): over 2 s of 1 Mbit/s video


class Sent(NamedTuple):
    out_seq: int
    src_seq: int
    layer: int
    out_ts: int
    ids: object  # the codec ID munger's offsets then (None: no munging)


class SendHistory:
    __slots__ = ("_entries", "_mask")

    def __init__(self, size: int = SIZE) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError("the history size must be a power of two")
        self._mask = size - 1
        self._entries: list[Optional[tuple]] = [None] * size

    def record(self, out_seq: int, src_seq: int, layer: int, out_ts: int, ids: object = None) -> None:
        # a plain tuple: this runs once per forwarded copy, a NamedTuple costs 3x
        self._entries[out_seq & self._mask] = (out_seq, src_seq, layer, out_ts, ids)

    def lookup(self, out_seq: int) -> Optional[Sent]:
        """What went out as ``out_seq``, if it is still remembered."""
        entry = self._entries[out_seq & self._mask]
        return Sent(*entry) if entry is not None and entry[0] == out_seq else None

    def clear(self) -> None:
        """Forget everything (the sources changed: old numbers must not resolve)."""
        self._entries = [None] * len(self._entries)
