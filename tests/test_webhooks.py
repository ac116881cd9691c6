"""Webhooks delivered to a real HTTP receiver on loopback."""

from __future__ import annotations

import time

import pytest

from signaling.client import Client
from signaling.app import WEBHOOKS
from signaling.webhooks import sign, verify

from .conftest import API_KEY, API_SECRET, KEYS, LOOPBACK, join_token
from .media import ToneAudioTrack
from .waiting import eventually
from .webhook_receiver import Receiver


async def test_short_call_signed_in_order_and_retried_after_500(make_server):
    async with Receiver(fail_first=1) as receiver:
        server = await make_server(keys=KEYS, webhooks={"urls": [receiver.url], "backoff": 0.05})
        async with Client(server.url, ice_addresses=LOOPBACK) as alice:
            await alice.join("call", "alice", token=join_token("alice", "call"))
            await alice.publish([ToneAudioTrack()])
            await alice.leave()
        await eventually(lambda: len({e["id"] for e in receiver.events()}) >= 6, timeout=5)

        for headers, body in receiver.received:
            assert headers["X-Pysfu-Key"] == API_KEY
            signature, timestamp = headers["X-Pysfu-Signature"], headers["X-Pysfu-Timestamp"]
            assert verify(body, signature, API_SECRET, timestamp)
            assert not verify(body, signature, KEYS["second-key"], timestamp)
        events = receiver.events()
        assert events[0]["id"] == events[1]["id"], "the event answered with 500 was not sent again"
        deduplicated = [e for i, e in enumerate(events) if i == 0 or e["id"] != events[i - 1]["id"]]
        assert [e["event"] for e in deduplicated] == [
            "room_started", "participant_joined", "track_published",
            "track_unpublished", "participant_left", "room_finished",
        ]
        assert {e["room"]["name"] for e in events} == {"call"}
        assert deduplicated[1]["participant"]["identity"] == "alice"
        assert deduplicated[2]["track"]["kind"] == "audio"


async def test_slow_receiver_does_not_hold_up_signaling(make_server):
    async with Receiver(delay=1) as receiver:
        server = await make_server(keys=KEYS, webhooks={"urls": [receiver.url]})
        async with Client(server.url, ice_addresses=LOOPBACK) as client:
            started = time.monotonic()
            await client.join("slow", "a", token=join_token("a", "slow"))
            for _ in range(5):
                await client.request({"type": "ping"})
            assert time.monotonic() - started < 0.5
            await eventually(lambda: receiver.received, timeout=3)


def test_signature_covers_the_timestamp_and_goes_stale():
    """A captured webhook cannot be replayed later, nor with a new timestamp."""
    body, sent = b'{"event": "room_started"}', int(time.time())
    signature = sign(body, API_SECRET, sent)
    assert verify(body, signature, API_SECRET, str(sent))
    assert verify(body, signature, API_SECRET, sent, now=sent + 299)
    assert not verify(body, signature, API_SECRET, sent, now=sent + 301)
    assert not verify(body, signature, API_SECRET, sent, now=sent - 301)
    assert not verify(body, signature, API_SECRET, sent + 1)
    assert not verify(body, signature, API_SECRET, "soon")
    assert not verify(body + b" ", signature, API_SECRET, sent)


async def test_redirect_is_a_failure_and_never_followed(make_server):
    """A receiver answering 307 must not get the signed body sent on to
    wherever it points."""
    async with Receiver() as elsewhere, Receiver(redirect_to=elsewhere.url) as receiver:
        server = await make_server(keys=KEYS, webhooks={"urls": [receiver.url], "attempts": 2, "backoff": 0.05})
        async with Client(server.url, ice_addresses=LOOPBACK) as alice:
            await alice.join("moved", "alice", token=join_token("alice", "moved"))
            stats = server.app[WEBHOOKS].stats
            await eventually(lambda: stats["failed"] >= 2, timeout=5)
        assert stats["delivered"] == 0
        assert len(receiver.received) >= 4  # room_started and participant_joined, twice each
        assert elsewhere.received == []


def test_webhooks_need_keys_to_sign():
    from signaling.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="configure keys"):
        load_config({"webhooks": {"urls": ["http://127.0.0.1:1/hook"]}}, env={})
