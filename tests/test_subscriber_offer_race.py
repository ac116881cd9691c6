"""A track subscribed while the server is making a subscriber offer."""

from __future__ import annotations

from .media import PatternVideoTrack, ToneAudioTrack


async def test_track_subscribed_during_an_offer_comes_in_the_next_one(server, clients):
    publisher = await clients()
    await publisher.join("race", "publisher")
    published = await publisher.publish([ToneAudioTrack(), PatternVideoTrack(320, 240)])
    audio_id = next(t["id"] for t in published if t["kind"] == "audio")
    video_id = next(t["id"] for t in published if t["kind"] == "video")
    viewer = await clients()
    await viewer.join("race", "viewer", auto_subscribe=False)
    room = server.rooms.rooms["race"]
    viewer_side = room.participants[viewer.participant_id]
    transport = viewer_side.subscriber.transport
    make_offer = transport.create_offer

    async def offer_then_subscribe() -> str:
        sdp = await make_offer()
        transport.create_offer = make_offer
        viewer_side.subscribe(room.find_track(video_id))  # lands between the SDP and its mapping
        return sdp

    transport.create_offer = offer_then_subscribe
    await viewer.request({"type": "subscribe", "track_ids": [audio_id]})

    tracks = await viewer.wait_tracks(2, timeout=10)
    assert {t.track_id for t in tracks} == {audio_id, video_id}
    offers = [e for e in viewer.events if e["type"] == "subscriber_offer"]
    assert len(offers) == 2
    assert all(t["mid"] is not None for offer in offers for t in offer["tracks"])
