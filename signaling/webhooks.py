"""Webhooks: room events POSTed as JSON to the operator's URLs.

Each body is signed with HMAC-SHA256 under the secret of an API key,
together with the time it was sent, so a receiver can refuse replays:

    X-Pysfu-Key: <api key>
    X-Pysfu-Timestamp: <Unix seconds when this attempt was sent>
    X-Pysfu-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>." + the exact body bytes>

Redirects are never followed (the signed body goes only to the configured
URL): a 3xx answer is a failed delivery.

Events go into a bounded queue the moment they happen (never awaiting
anything, so the media path is never held up); one task per URL delivers
them in order, retrying a failed delivery (network error or non-2xx status)
with exponential backoff.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections import Counter
from typing import Optional

import aiohttp

from sfu.ids import new_id

from .config import Webhooks

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Pysfu-Signature"
TIMESTAMP_HEADER = "X-Pysfu-Timestamp"
KEY_HEADER = "X-Pysfu-Key"
#: Seconds a receiver accepts between a webhook's timestamp and its own clock.
DEFAULT_TOLERANCE = 300
EVENTS = (
    "room_started", "room_finished", "participant_joined", "participant_left",
    "track_published", "track_unpublished",
    "recording_finished",
    "transcript_ready",
)


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    signed = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify(body: bytes, signature: str, secret: str, timestamp: str | int,
           tolerance: float = DEFAULT_TOLERANCE, now: Optional[float] = None) -> bool:
    """For receivers: check a body against its ``X-Pysfu-Signature`` and
    ``X-Pysfu-Timestamp`` headers; a timestamp more than ``tolerance``
    seconds away from ``now`` fails (a replayed webhook)."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(body, secret, sent), signature or "")


class WebhookSender:
    """Queues room events and delivers them to every configured URL."""

    def __init__(self, settings: Webhooks, api_key: str, secret: str) -> None:
        self.settings = settings
        self.api_key = api_key
        self.secret = secret
        self.stats: Counter = Counter()
        self._queues = {url: asyncio.Queue(settings.queue_size) for url in settings.urls}
        self._tasks: list[asyncio.Task] = []
        self._session: Optional[aiohttp.ClientSession] = None
        self._stopped = False

    def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.timeout))
        self._tasks = [asyncio.ensure_future(self._deliver(url, q)) for url, q in self._queues.items()]

    def observe(self, event: str, payload: dict) -> None:
        """Room observer: queue ``event`` for every URL (never blocks)."""
        if event not in EVENTS:
            return
        body = json.dumps({"event": event, "id": new_id("EV"), "created_at": int(time.time()), **payload})
        for url, queue in self._queues.items():
            if queue.full():
                queue.get_nowait()
                self.stats["dropped"] += 1
                log.warning("webhook queue for %s full: oldest event dropped", url)
            queue.put_nowait(body.encode())

    async def stop(self, flush_timeout: float = 2.0) -> None:
        """Deliver what is queued (waiting at most ``flush_timeout``), then stop."""
        if self._stopped:
            return
        self._stopped = True
        try:
            await asyncio.wait_for(asyncio.gather(*(q.join() for q in self._queues.values())), flush_timeout)
        except asyncio.TimeoutError:
            log.warning("webhooks: undelivered events dropped at shutdown")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _deliver(self, url: str, queue: asyncio.Queue) -> None:
        while True:
            body = await queue.get()
            try:
                await self._post_with_retries(url, body)
            finally:
                queue.task_done()

    def _headers(self, body: bytes) -> dict[str, str]:
        """Signed afresh for each attempt: a retry carries its own timestamp."""
        timestamp = int(time.time())
        return {
            "Content-Type": "application/json",
            KEY_HEADER: self.api_key,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(body, self.secret, timestamp),
        }

    async def _post_with_retries(self, url: str, body: bytes) -> None:
        delay = self.settings.backoff
        for attempt in range(1, self.settings.attempts + 1):
            try:
                async with self._session.post(url, data=body, headers=self._headers(body),
                                              allow_redirects=False) as response:
                    if 200 <= response.status < 300:
                        self.stats["delivered"] += 1
                        return
                    problem = f"HTTP {response.status}"
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                problem = type(exc).__name__
            self.stats["retries" if attempt < self.settings.attempts else "failed"] += 1
            log.warning("webhook to %s failed (%s), attempt %d/%d", url, problem, attempt, self.settings.attempts)
            if attempt < self.settings.attempts:
                await asyncio.sleep(delay)
                delay *= 2
