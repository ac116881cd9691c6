"""Media through the SFU between real aiortc peers on loopback."""

from __future__ import annotations

import asyncio
import json

import pytest

from .conftest import LOOPBACK, start_server_process, stop_server_process
from .frames import count_frames
from .loss import EgressLoss
from .media import PatternVideoTrack, ToneAudioTrack
from .prometheus import scrape
from .waiting import eventually
from signaling.client import Client


async def publish_camera_and_mic(client: Client) -> tuple[PatternVideoTrack, list[dict]]:
    video = PatternVideoTrack()
    infos = await client.publish([ToneAudioTrack(), video])
    return video, infos


@pytest.mark.slow
async def test_two_subscribers_decode_video_and_audio(server, clients):
    publisher = await clients()
    await publisher.join("forward", "alice")
    _, infos = await publish_camera_and_mic(publisher)
    assert [i["kind"] for i in infos] == ["audio", "video"]
    assert {i["codec"] for i in infos} == {"audio/opus", "video/VP8"}

    subscribers = [await clients() for _ in range(2)]
    for index, subscriber in enumerate(subscribers):
        await subscriber.join("forward", f"viewer{index}")
    for subscriber in subscribers:
        tracks = {t.kind: t for t in await subscriber.wait_tracks(2)}
        assert {t.track_id for t in tracks.values()} == {i["id"] for i in infos}
        video, audio = await asyncio.gather(
            count_frames(tracks["video"].track, 2.0), count_frames(tracks["audio"].track, 2.0)
        )
        assert len(video) >= 20, f"only {len(video)} video frames in 2 s"
        assert (video[-1].width, video[-1].height) == (640, 480)
        assert len(audio) >= 30, f"only {len(audio)} audio frames in 2 s"


@pytest.mark.slow
async def test_server_decodes_nothing(tmp_path):
    report = tmp_path / "probe.json"
    server = start_server_process(probe_report=report)
    try:
        publisher = Client(server.url, LOOPBACK)
        subscriber = Client(server.url, LOOPBACK)
        await publisher.connect()
        await subscriber.connect()
        await publisher.join("probe", "alice")
        await publish_camera_and_mic(publisher)
        await subscriber.join("probe", "bob")
        tracks = {t.kind: t for t in await subscriber.wait_tracks(2)}
        assert len(await count_frames(tracks["video"].track, 1.5)) >= 15
        assert len(await count_frames(tracks["audio"].track, 0.5)) >= 10
        await publisher.close()
        await subscriber.close()
    finally:
        assert stop_server_process(server) == 0
    record = json.loads(report.read_text())
    assert record["codec_contexts"] == []
    assert record["decoders"] == [] and record["encoders"] == []
    assert not [name for name in record["threads"] if "decoder" in name or "encoder" in name]


@pytest.mark.slow
async def test_nacks_answered_from_cache_and_frames_keep_decoding(server, clients):
    publisher = await clients()
    await publisher.join("lossy", "alice")
    await publish_camera_and_mic(publisher)
    subscriber = await clients()
    await subscriber.join("lossy", "bob")
    tracks = {t.kind: t for t in await subscriber.wait_tracks(2)}
    assert len(await count_frames(tracks["video"].track, 1.0)) >= 10

    participant = server.rooms.rooms["lossy"].participants[subscriber.participant_id]
    downtrack = next(d for d in participant.subscriber.downtracks() if d.kind == "video")
    loss = EgressLoss(participant.subscriber.transport, every=12, payload_type=downtrack.payload_type)

    frames = await count_frames(tracks["video"].track, 4.0)
    assert loss.dropped >= 10, "the loss injector dropped too little to test anything"
    assert downtrack.nacks_received > 0
    assert downtrack.retransmitted >= loss.dropped * 0.8, (downtrack.retransmitted, loss.dropped)
    assert len(frames) >= 60, f"decoding stalled under loss: {len(frames)} frames in 4 s"
    retransmitted = downtrack.retransmitted  # it still grows while the scrape is served
    metrics = await scrape(server.http)
    assert metrics['pysfu_retransmissions_total{kind="video"}'] >= retransmitted


async def test_h264_passes_through(server, clients):
    publisher = await clients()
    await publisher.join("h264", "alice")
    [info] = await publisher.publish([PatternVideoTrack(320, 240)], video_codec="video/H264")
    assert info["codec"] == "video/H264"
    subscriber = await clients()
    await subscriber.join("h264", "bob")
    [remote] = await subscriber.wait_tracks(1)
    frames = await count_frames(remote.track, 2.0)
    assert len(frames) >= 20 and (frames[-1].width, frames[-1].height) == (320, 240)


async def test_rtcp_reaches_both_sides(server, clients):
    """Publishers get receiver reports; subscribers get sender reports with a
    real NTP time and RTP timestamps in their own down-track numbering."""
    publisher = await clients()
    await publisher.join("rtcp", "alice")
    await publish_camera_and_mic(publisher)
    subscriber = await clients()
    await subscriber.join("rtcp", "bob")
    tracks = {t.kind: t for t in await subscriber.wait_tracks(2)}

    participant = server.rooms.rooms["rtcp"].participants[subscriber.participant_id]
    await eventually(lambda: all(d.stream for d in participant.subscriber.downtracks()))
    downtracks = {d.kind: d for d in participant.subscriber.downtracks()}
    sent_reports = []
    send_rtcp = participant.subscriber.transport.send_rtcp
    participant.subscriber.transport.send_rtcp = lambda packet: sent_reports.append(packet) or send_rtcp(packet)
    source_reports = []
    for downtrack in downtracks.values():
        original = downtrack.stream.on_sender_report
        downtrack.stream.on_sender_report = (
            lambda report, now, original=original: source_reports.append(report) or original(report, now)
        )

    await asyncio.gather(*(count_frames(t.track, 3.5) for t in tracks.values()))

    from sfu import rtcp

    translated = [r for packet in sent_reports for r in rtcp.parse(packet) if isinstance(r, rtcp.SenderReport)]
    assert {r.ssrc for r in translated} == {d.ssrc for d in downtracks.values()}
    for report in translated:
        downtrack = next(d for d in downtracks.values() if d.ssrc == report.ssrc)
        source = next(s for s in source_reports if s.ntp == report.ntp)
        assert report.rtp_ts == (source.rtp_ts + downtrack.munger.ts_offset) & 0xFFFFFFFF
        assert report.ntp >> 32 > 3_000_000_000  # a wall-clock NTP time, not zero
        assert report.packets > 0
    for kind, downtrack in downtracks.items():
        assert downtrack.stream.stats.received > 0
    publisher_stats = await publisher.publisher.getStats()
    remote_inbound = [s for s in publisher_stats.values() if s.type == "remote-inbound-rtp"]
    assert {s.kind for s in remote_inbound} == {"audio", "video"}, "no receiver reports reached the publisher"
    assert downtracks["video"].stream.keyframes.sent >= 1  # asked for a keyframe on start
