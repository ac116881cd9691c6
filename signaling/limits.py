"""Limits of signaling: a token bucket per connection, joins per address,
WebSocket connections in all and per address; how big a subscriber's answer
may be."""

from __future__ import annotations

import time
from collections import deque
from typing import Callable


class LimitCode:
    """Error codes of the limits (see docs/protocol.md)."""

    MESSAGE_TOO_LARGE = "message_too_large"
    RATE_LIMITED = "rate_limited"
    SDP_TOO_LARGE = "sdp_too_large"
    TOO_MANY_JOINS = "too_many_joins"
    SERVER_FULL = "server_full"
    TOO_MANY_CONNECTIONS = "too_many_connections"


class TokenBucket:
    """Allows ``rate`` events per second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class JoinLimiter:
    """At most ``per_minute`` joins per client address in any 60 s window."""

    WINDOW = 60.0

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._joins: dict[str, deque[float]] = {}

    def allow(self, address: str) -> bool:
        if self.per_minute <= 0:
            return True
        now = self._clock()
        stamps = self._joins.setdefault(address, deque())
        while stamps and stamps[0] <= now - self.WINDOW:
            stamps.popleft()
        if len(stamps) >= self.per_minute:
            return False
        stamps.append(now)
        self._forget_idle(now)
        return True

    def _forget_idle(self, now: float) -> None:
        if len(self._joins) > 10_000:
            for address in [a for a, s in self._joins.items() if not s or s[-1] <= now - self.WINDOW]:
                del self._joins[address]


#: An answer is about as big as the offer it answers (the same m-lines, the
#: same codecs at most): it may be twice the offer and this much more.
ANSWER_MARGIN = 16 * 1024


def answer_limit(max_sdp_bytes: int, subscriber) -> int:
    """The largest SDP accepted as ``subscriber``'s answer: the SDP limit, or
    more when the server's own offer was big (a big room's answer is legal)."""
    return max(max_sdp_bytes, 2 * subscriber.offer_bytes + ANSWER_MARGIN)


def answer_message_limit(max_sdp_bytes: int, subscriber) -> int:
    """The message that carries that answer: JSON escapes each CRLF in 4 bytes."""
    return answer_limit(max_sdp_bytes, subscriber) * 5 // 4 + 1024


class ConnectionLimiter:
    """At most ``total`` connections at once, and ``per_address`` from one
    client address (0: no per-address cap)."""

    def __init__(self, total: int, per_address: int) -> None:
        self.total = total
        self.per_address = per_address
        self.open = 0
        self._by_address: dict[str, int] = {}

    def acquire(self, address: str) -> str | None:
        """Count a new connection; or the LimitCode that refuses it."""
        if self.open >= self.total:
            return LimitCode.SERVER_FULL
        held = self._by_address.get(address, 0)
        if self.per_address and held >= self.per_address:
            return LimitCode.TOO_MANY_CONNECTIONS
        self.open += 1
        self._by_address[address] = held + 1
        return None

    def release(self, address: str) -> None:
        self.open -= 1
        held = self._by_address.pop(address) - 1
        if held:
            self._by_address[address] = held
