"""Sequence number and timestamp rewriting for one down-track.

A down-track's output is one continuous RTP stream even when its source
changes (start, resume after pause, simulcast layer switch) or when packets
are filtered out: the munger holds the offset between source and output
numbering, re-derives it at each switch point so the receiver sees no jump,
and remembers where filtered packets shifted it so that a late packet
(reordered, or recovered by retransmission) still gets the number it would
have had.
"""

from __future__ import annotations

from typing import Optional

from .rtp import seq_diff, seq_newer

HORIZON = 0x4000  # source packets this far behind the newest are too old to map
MAX_SHIFTS = 64  # offset changes remembered for late packets


class RtpMunger:
    __slots__ = (
        "seq_offset", "ts_offset", "last_seq", "last_ts", "last_time",
        "_floor", "_highest_src", "_shifts", "_dropped", "started",
    )

    def __init__(self, first_seq: int = 0, first_ts: int = 0) -> None:
        self.seq_offset = 0  # offset of the newest source packet
        self.ts_offset = 0
        self.last_seq = (first_seq - 1) & 0xFFFF  # last output sequence number
        self.last_ts = first_ts  # last output timestamp
        self.last_time = 0.0  # when last_ts was sent (seconds)
        self._floor = 0  # oldest source seq still mapped (the switch point, at first)
        self._highest_src = 0
        self._shifts: list[tuple[int, int]] = []  # (first source seq, offset from there on)
        self._dropped: set[int] = set()
        self.started = False

    def switch(self, src_seq: int, src_ts: int, now: float, clock_rate: int) -> None:
        """Re-anchor on a new source (or the same one after a gap) at src_seq."""
        if self.started:
            elapsed = max(1, int((now - self.last_time) * clock_rate))
            out_ts = (self.last_ts + elapsed) & 0xFFFFFFFF
        else:
            out_ts = self.last_ts
        self.seq_offset = (self.last_seq + 1 - src_seq) & 0xFFFF
        self.ts_offset = (out_ts - src_ts) & 0xFFFFFFFF
        self._floor = src_seq
        self._highest_src = (src_seq - 1) & 0xFFFF
        self._shifts = [(src_seq, self.seq_offset)]
        self._dropped.clear()
        self.started = True

    def rewrite(self, src_seq: int, src_ts: int, now: float) -> Optional[tuple[int, int]]:
        """Output (seq, ts) for a source packet; None if it cannot be mapped."""
        # seq_newer and seq_diff written out: this runs once per forwarded copy
        if 0 < ((src_seq - self._highest_src) & 0xFFFF) < 0x8000:
            self._highest_src = src_seq
            out_seq = (src_seq + self.seq_offset) & 0xFFFF
            out_ts = (src_ts + self.ts_offset) & 0xFFFFFFFF
            self.last_seq, self.last_ts, self.last_time = out_seq, out_ts, now
            if HORIZON < ((src_seq - self._floor) & 0xFFFF) < 0x8000:
                self._floor = (src_seq - HORIZON) & 0xFFFF
            return out_seq, out_ts
        offset = self._offset_for(src_seq)
        if offset is None:
            return None
        return (src_seq + offset) & 0xFFFF, (src_ts + self.ts_offset) & 0xFFFFFFFF

    def _offset_for(self, src_seq: int) -> Optional[int]:
        """The offset an older packet had, or None (before the switch, or dropped)."""
        if seq_diff(src_seq, self._floor) < 0 or src_seq in self._dropped:
            return None
        for start, offset in reversed(self._shifts):
            if seq_diff(src_seq, start) >= 0:
                return offset
        return None

    def drop(self, src_seq: int) -> None:
        """Leave a source packet out (filtered); later packets close the gap."""
        if not seq_newer(src_seq, self._highest_src):
            return
        self._highest_src = src_seq
        self.seq_offset = (self.seq_offset - 1) & 0xFFFF
        self._shifts.append(((src_seq + 1) & 0xFFFF, self.seq_offset))
        if len(self._shifts) > MAX_SHIFTS:
            del self._shifts[0]
            self._floor = self._shifts[0][0]
        self._dropped.add(src_seq)
        if len(self._dropped) > MAX_SHIFTS:
            self._dropped = {s for s in self._dropped if seq_diff(s, self._floor) >= 0}

    def source_ts(self, out_ts: int) -> int:
        return (out_ts - self.ts_offset) & 0xFFFFFFFF
