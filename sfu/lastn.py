"""Last-N: whose camera video each subscriber receives.

At most ``n`` publishers: the subscriber's pins first, then the most recent
speakers, then the longest present. The others are paused (their down-tracks
stay negotiated, so they come back at the next keyframe, with no SDP).
"""

from __future__ import annotations

from typing import Iterable, Sequence


def choose(
    publishers: Sequence[str],
    recent_speakers: Sequence[str],
    pins: Iterable[str],
    n: int,
    subscriber: str = "",
) -> set[str]:
    """The publishers (ids) whose video ``subscriber`` receives."""
    return set(rank(publishers, recent_speakers, pins, n, subscriber))


def rank(
    publishers: Sequence[str],
    recent_speakers: Sequence[str],
    pins: Iterable[str],
    n: int,
    subscriber: str = "",
    first: Sequence[str] = (),
) -> list[str]:
    """``choose``, in order: pins, then recent speakers, then the longest present.

    ``first`` come before all, even beyond ``n`` (the speakers, while the
    server sheds load: sfu/load_manager.py)."""
    present = set(publishers)
    present.discard(subscriber)
    chosen = [p for p in dict.fromkeys(first) if p in present]
    taken = set(chosen)
    n = max(n, len(chosen))
    for candidates in (pins, recent_speakers, publishers):
        for participant_id in candidates:
            if len(chosen) >= n:
                return chosen
            if participant_id in present and participant_id not in taken:
                chosen.append(participant_id)
                taken.add(participant_id)
    return chosen


class SpeechOrder:
    """Participants, most recently heard first."""

    def __init__(self) -> None:
        self.order: list[str] = []

    def heard(self, participant_ids: Sequence[str]) -> bool:
        """Move these (loudest first) to the front; True if the order changed."""
        before = list(self.order)
        for participant_id in reversed(participant_ids):
            if participant_id in self.order:
                self.order.remove(participant_id)
            self.order.insert(0, participant_id)
        return self.order != before

    def forget(self, participant_id: str) -> None:
        if participant_id in self.order:
            self.order.remove(participant_id)
