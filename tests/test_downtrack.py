"""One subscriber's down-track, fed real RTP bytes through the publisher's
stream, with a stand-in transport: what the subscriber would receive."""

from __future__ import annotations

import pytest

from sfu import rtcp
from sfu.codecs import handler
from sfu.downtrack import KEYFRAME_RETRY, DownTrack
from sfu.media_section import CodecInfo, MediaSection
from sfu.published_track import PublishedTrack
from sfu.rtp import HEADER
from sfu.stream import ReceivedStream

from .packets import rtp_packet, vp8_descriptor, vp8_frame_header
from .sink import Sink

PUBLISHER_SSRC, SUBSCRIBER_SSRC, RTX_SSRC = 0x1111, 0x2222, 0x3333


class Call:
    """A VP8 camera track of one publisher, forwarded to one subscriber."""

    def __init__(self, rtx: bool = False, cache_size: int = 256) -> None:
        self.upstream: list[bytes] = []  # RTCP the SFU sends the publisher
        track = PublishedTrack("TR", "PA", "video", "0", CodecInfo("video/VP8", 90000, 96), "camera")
        self.stream = ReceivedStream("video", PUBLISHER_SSRC, 90000, handler("VP8"), self.upstream.append,
                                     1, cache_size, 0.5)
        track.set_layer(0, self.stream)
        self.sink = Sink()
        self.downtrack = DownTrack(track, self.sink)
        codec = CodecInfo("video/VP8", 90000, 97, rtx_payload_type=98 if rtx else None)
        rtx_ssrcs = {RTX_SSRC: SUBSCRIBER_SSRC} if rtx else {}
        self.downtrack.bind(MediaSection("0", "video", codec, {}, [SUBSCRIBER_SSRC], rtx_ssrcs))
        track.add_downtrack(self.downtrack)

    def publish(self, seq: int, ts: int, key: bool = False, now: float = 0.0, padding_only: bool = False) -> None:
        payload = b"" if padding_only else vp8_descriptor() + vp8_frame_header(key) + bytes(20)
        self.stream.on_rtp(rtp_packet(seq=seq, ts=ts, ssrc=PUBLISHER_SSRC, payload=payload), now)

    def plis_sent(self) -> int:
        return sum(isinstance(item, rtcp.Pli) for packet in self.upstream for item in rtcp.parse(packet))

    def close(self) -> None:
        self.stream.keyframes.close()


@pytest.fixture
def make_call():
    """Make Calls; each is closed (its pending keyframe requests cancelled) after the test."""
    calls: list[Call] = []

    def make(**options) -> Call:
        calls.append(Call(**options))
        return calls[-1]

    yield make
    for call in calls:
        call.close()


def pt_seq_ts_ssrc(packet: bytes) -> tuple[int, int, int, int]:
    _, pt_byte, seq, ts, ssrc = HEADER.unpack_from(packet)
    return pt_byte & 0x7F, seq, ts, ssrc


async def test_forwarding_waits_for_a_keyframe_and_asks_the_publisher_for_one(make_call):
    call = make_call()
    call.downtrack.set_target(0)
    assert call.plis_sent() == 1  # asked at once
    call.publish(100, 0)
    call.publish(101, 0)
    assert call.sink.sent == []  # a delta frame alone cannot be decoded
    call.downtrack.retry_keyframe(call.downtrack.waiting_since + KEYFRAME_RETRY / 2)
    assert call.stream.keyframes.requested == 1  # not yet asked again
    call.downtrack.retry_keyframe(call.downtrack.waiting_since + KEYFRAME_RETRY + 0.1)
    assert call.stream.keyframes.requested == 2  # no keyframe came: asked again
    call.publish(102, 3000, key=True)
    call.publish(103, 6000)
    assert len(call.sink.sent) == 2 and call.downtrack.current == 0


async def test_headers_are_rewritten_into_the_subscribers_numbering(make_call):
    call = make_call()
    call.downtrack.set_target(0)
    for seq, ts in [(65534, 4_294_964_000), (65535, 4_294_964_000), (0, 2_704), (1, 5_704)]:
        call.publish(seq, ts, key=seq == 65534)
    packets = [pt_seq_ts_ssrc(p) for p in call.sink.sent]
    assert {(pt, ssrc) for pt, _, _, ssrc in packets} == {(97, SUBSCRIBER_SSRC)}  # negotiated PT and SSRC
    seqs = [seq for _, seq, _, _ in packets]
    assert [(b - a) & 0xFFFF for a, b in zip(seqs, seqs[1:])] == [1, 1, 1]  # across the wrap
    stamps = [ts for _, _, ts, _ in packets]
    assert [(b - a) & 0xFFFFFFFF for a, b in zip(stamps, stamps[1:])] == [0, 6000, 3000]  # spacing kept


async def test_padding_only_packets_leave_no_gap_the_subscriber_would_nack(make_call):
    call = make_call()
    call.downtrack.set_target(0)
    call.publish(10, 0, key=True)
    call.publish(11, 0, padding_only=True)  # bandwidth probing: nothing to decode
    call.publish(12, 3000)
    seqs = [pt_seq_ts_ssrc(p)[1] for p in call.sink.sent]
    assert len(seqs) == 2 and (seqs[1] - seqs[0]) & 0xFFFF == 1


async def test_a_nack_is_answered_from_the_cache_over_rtx_in_the_subscribers_numbering(make_call):
    call = make_call(rtx=True)
    call.downtrack.set_target(0)
    for seq in range(200, 205):
        call.publish(seq, (seq - 200) * 3000, key=seq == 200)
    lost = call.sink.sent[2]
    _, lost_seq, lost_ts, _ = pt_seq_ts_ssrc(lost)
    call.downtrack.on_nack([lost_seq], now=1.0)
    [resent] = call.sink.resent
    pt, _, ts, ssrc = pt_seq_ts_ssrc(resent)
    assert (pt, ssrc, ts) == (98, RTX_SSRC, lost_ts)
    assert int.from_bytes(resent[12:14], "big") == lost_seq  # RFC 4588: the original seq first
    assert resent[14:] == lost[12:]  # the same payload
    assert call.downtrack.retransmitted == 1


async def test_a_nack_for_a_packet_no_longer_cached_is_passed_to_the_publisher(make_call):
    call = make_call(cache_size=16)
    call.downtrack.set_target(0)
    for seq in range(300, 340):  # more than the publisher's stream keeps
        call.publish(seq, (seq - 300) * 3000, key=seq == 300)
    _, out_seq, _, _ = pt_seq_ts_ssrc(call.sink.sent[1])
    call.downtrack.on_nack([out_seq], now=1.0)
    assert call.sink.resent == []
    nacks = [item for packet in call.upstream for item in rtcp.parse(packet) if isinstance(item, rtcp.Nack)]
    assert [(n.media_ssrc, n.lost) for n in nacks] == [(PUBLISHER_SSRC, [301])]  # in the publisher's numbering


def report(fraction_lost: int) -> rtcp.ReportBlock:
    return rtcp.ReportBlock(SUBSCRIBER_SSRC, fraction_lost, 0, 0, 0, 0, 0)


@pytest.mark.parametrize("upstream_gaps, reported, downstream", [
    (0, 0, 0),  # a clean call
    (20, 51, 0),  # 20 of 100 never reached us: the subscriber's 20 % is ours, not its downlink's
    (10, 77, 51),  # 10 % lost upstream, 30 % reported: 20 % lost on the way to the subscriber
    (0, 64, 64),  # nothing lost upstream: all of it is the downlink's
    (30, 26, 0),  # NACKs repaired more than the gaps we passed on: never below zero
])
async def test_loss_the_stream_came_with_is_not_charged_to_the_subscribers_downlink(
        make_call, upstream_gaps, reported, downstream):
    call = make_call()
    call.downtrack.set_target(0)
    call.publish(1000, 0, key=True)
    assert call.sink.sent  # forwarding: the loss the stream comes with is counted from here
    missing = set(range(1001, 1101, 100 // upstream_gaps)) if upstream_gaps else set()
    for seq in range(1001, 1101):
        if seq not in missing:
            call.publish(seq, (seq - 1000) * 3000, now=1.5)
    call.downtrack.on_receiver_report(report(reported), 2.0)
    assert call.downtrack.fraction_lost == reported  # as reported, for quality and metrics
    assert abs(call.downtrack.downstream_lost - downstream) <= 1

