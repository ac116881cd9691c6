"""Loss a subscriber reports, told apart: what the publisher's uplink (or the
server, dropping late packets) never delivered, against what the subscriber's
own downlink lost. Only the second may take its video away, unless the
server is shedding load (then its own drops are among the gaps). A real
subscriber PC and a client over loopback; the receiver reports travel as
SRTCP, the way a browser's do."""

from __future__ import annotations

import time

import pytest

from sfu import rtcp
from sfu.codecs import handler
from sfu.config import IceConfig, SfuConfig
from sfu.layer_selector import OFF
from sfu.load_manager import LEVELS, NORMAL
from sfu.media_section import CodecInfo
from sfu.published_track import PublishedTrack
from sfu.stream import ReceivedStream
from sfu.subscriber import Subscriber
from sfu.transport import PeerTransport

from .packets import rtp_packet, vp8_descriptor, vp8_frame_header
from .waiting import eventually

CONFIG = SfuConfig(ice=IceConfig(addresses=["127.0.0.1"], udp_port=0))
VP8 = CodecInfo("video/VP8", 90000, 96)
REPORTED = 60  # 23 % lost, in 1/256: about 130 kbps left of what is sent, room for one camera


class Camera:
    """A published camera whose stream the server receives ``gaps`` in every 100 packets short."""

    def __init__(self, participant_id: str, ssrc: int) -> None:
        self.track = PublishedTrack(f"TR_{participant_id}", participant_id, "video", "0", VP8, "camera")
        self.stream = ReceivedStream("video", ssrc, 90000, handler("VP8"), lambda packet: None, 1, 256, 0.5)
        self.track.set_layer(0, self.stream)
        self.ssrc = ssrc
        self.seq = 0

    def send(self, packets: int, gaps: int = 0) -> None:
        every = 100 // gaps if gaps else 0
        for _ in range(packets):
            self.seq += 1
            if every and self.seq % every == 0:
                continue  # lost before the server
            payload = vp8_descriptor() + vp8_frame_header(self.seq == 1) + bytes(100)
            self.stream.on_rtp(rtp_packet(seq=self.seq, ts=self.seq * 3000, ssrc=self.ssrc, payload=payload),
                               time.monotonic())


@pytest.mark.parametrize("uplink_gaps, shed, both_keep_video", [
    (23, NORMAL, True),  # the subscriber's 23 % is what the publishers' uplinks lost: its downlink is fine
    (0, NORMAL, False),  # the streams came whole: the 23 % is the downlink's, room for one camera
    # the server sheds load: gaps may be its own late drops, and sending less relieves it
    (23, LEVELS[1], False),
])
async def test_loss_upstream_of_the_server_does_not_cost_a_subscriber_its_video(uplink_gaps, shed, both_keep_video):
    offers: list[str] = []
    sub = Subscriber("PA_viewer", CONFIG, lambda sdp, tracks: offers.append(sdp), lambda state: None,
                     slots={"video": 2})
    client = PeerTransport(IceConfig(addresses=["127.0.0.1"], udp_port=0), lambda p: None, lambda p: None)
    speaker, other = Camera("PA_speaker", 0x5001), Camera("PA_other", 0x5002)
    try:
        await eventually(lambda: offers)
        await sub.accept_answer(await client.answer(offers[-1]))
        await eventually(lambda: client.connected and sub.transport.connected, timeout=10)
        sub.subscribe(other.track)
        sub.subscribe(speaker.track)
        # both spared by the shedding itself: only the estimate can take a camera away
        sub.set_video_allowed(["PA_speaker", "PA_other"], shed=shed, spared=["PA_speaker", "PA_other"])
        [on_speaker], [on_other] = speaker.track.downtracks, other.track.downtracks
        for camera in (speaker, other):
            camera.send(1)  # the key frame: forwarding starts
        assert on_speaker.current == on_other.current == 0

        for camera in (speaker, other):
            camera.send(200, gaps=uplink_gaps)
        blocks = [rtcp.ReportBlock(d.ssrc, REPORTED, 40, 0, 0, 0, 0) for d in (on_speaker, on_other)]
        assert client.send_rtcp(rtcp.build_rr(0x7777, blocks))
        await eventually(lambda: on_speaker.report_time and on_other.report_time)
        sub.allocate(time.monotonic())

        assert on_speaker.fraction_lost == on_other.fraction_lost == REPORTED
        assert on_speaker.target == 0  # the first of last-N keeps its video either way
        assert (on_other.target != OFF) is both_keep_video, (
            f"downstream loss {on_other.downstream_lost}/256, estimate {sub.downlink.estimate(time.monotonic())}")
    finally:
        await sub.close()
        await client.close()
