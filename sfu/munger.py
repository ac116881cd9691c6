"""Sequence number and timestamp rewriting for one down-track.

A down-track's output is one continuous RTP stream even when its source
changes (start, resume after pause, simulcast layer switch): the munger
holds the offsets between source and output numbering and re-derives them
at each switch point so the receiver sees no jump.
"""

from __future__ import annotations

from typing import Optional

from .rtp import seq_newer


class RtpMunger:
    __slots__ = (
        "seq_offset", "ts_offset", "last_seq", "last_ts", "last_time",
        "_switch_seq", "_highest_src", "started",
    )

    def __init__(self, first_seq: int = 0, first_ts: int = 0) -> None:
        self.seq_offset = 0
        self.ts_offset = 0
        self.last_seq = (first_seq - 1) & 0xFFFF  # last output sequence number
        self.last_ts = first_ts  # last output timestamp
        self.last_time = 0.0  # when last_ts was sent (seconds)
        self._switch_seq = 0  # first source seq after the last switch
        self._highest_src = 0
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
        self._switch_seq = src_seq
        self._highest_src = (src_seq - 1) & 0xFFFF
        self.started = True

    def rewrite(self, src_seq: int, src_ts: int, now: float) -> Optional[tuple[int, int]]:
        """Output (seq, ts) for a source packet; None if it predates the switch."""
        if src_seq != self._switch_seq and not seq_newer(src_seq, self._switch_seq):
            return None
        out_seq = (src_seq + self.seq_offset) & 0xFFFF
        out_ts = (src_ts + self.ts_offset) & 0xFFFFFFFF
        if seq_newer(src_seq, self._highest_src):
            self._highest_src = src_seq
            self.last_seq = out_seq
            self.last_ts = out_ts
            self.last_time = now
        return out_seq, out_ts

    def drop(self, src_seq: int) -> None:
        """Skip a source packet in order (filtered out): close the gap it leaves."""
        if seq_newer(src_seq, self._highest_src):
            self._highest_src = src_seq
            self.seq_offset = (self.seq_offset - 1) & 0xFFFF

    def source_ts(self, out_ts: int) -> int:
        return (out_ts - self.ts_offset) & 0xFFFFFFFF
