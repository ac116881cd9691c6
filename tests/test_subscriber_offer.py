"""Subscriber offers: a track subscribed while an offer is being made (its
m-line has no mid yet) goes in the next offer, and the current one is still
sent (seen in Chromium: a third person publishing as the second one's offer
was made left the second one without any offer, hence without video)."""

from __future__ import annotations

import asyncio

from .conftest import client_factory
from .media import PatternVideoTrack


async def test_track_subscribed_while_the_offer_is_made_comes_in_the_next(make_server):
    server = await make_server()
    async with client_factory(server) as connect:
        ana, ben, viewer = await connect(), await connect(), await connect()
        await viewer.join("offers", "viewer")
        await ana.join("offers", "ana", auto_subscribe=False)
        await ben.join("offers", "ben", auto_subscribe=False)
        subscriber = server.rooms.rooms["offers"].participants[viewer.participant_id].subscriber
        make_offer = subscriber.transport.create_offer
        calls = []

        async def offer_while_ben_publishes() -> str:
            sdp = await make_offer()
            calls.append(len(calls))
            if len(calls) == 1:  # ben's track is subscribed after the mids were given out
                await ben.publish([PatternVideoTrack(160, 120)])
            return sdp

        subscriber.transport.create_offer = offer_while_ben_publishes
        await ana.publish([PatternVideoTrack(160, 120)])
        tracks = await viewer.wait_tracks(2, timeout=15)
        assert {t.participant_id for t in tracks} == {ana.participant_id, ben.participant_id}
        assert len(calls) == 2 and subscriber.offers_sent == 2
        for track in tracks:  # both flow
            await asyncio.wait_for(track.track.recv(), 10)
