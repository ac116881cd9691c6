"""sfu/transport.py: the one module that relies on aiortc/aioice internals.

The first test fails loudly, naming the attribute, when an upgrade moves an
internal; the others drive two PeerTransports against each other.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import socket
import time

import pytest
from aiortc import RTCPeerConnection

from sfu import rtp
from sfu.config import IceConfig
from sfu.metrics import DATAGRAMS_DROPPED
from sfu.media_section import CodecInfo, SdpError
from sfu.transport import INTERNALS, PeerTransport

from .test_udp_fuzz import binding_request

LOOPBACK = IceConfig(addresses=["127.0.0.1"], udp_port=0)  # a socket per connection


def _resolve(dotted: str):
    try:
        return importlib.import_module(dotted)
    except ImportError:
        module, _, name = dotted.rpartition(".")
        return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("owner, attribute", INTERNALS, ids=[f"{o}.{a}" for o, a in INTERNALS])
def test_internal_still_exists(owner, attribute):
    cls = _resolve(owner)
    if isinstance(cls, type(importlib)):  # a module attribute
        assert hasattr(cls, attribute), f"{owner}.{attribute} is gone"
        return
    source = importlib.import_module(cls.__module__).__file__
    text = open(source).read()
    assert hasattr(cls, attribute) or f"self.{attribute}" in text or f"self._{cls.__name__}{attribute}" in text, (
        f"{owner}.{attribute} is gone: sfu/transport.py must be updated for this aiortc/aioice"
    )


def test_pinned_versions():
    import aioice
    import aiortc

    assert aiortc.__version__ == "1.16.0"
    assert aioice.__version__ == "0.13.0"


async def connected_pair(received: list, rtcp_received: list):
    """An offerer sending one video m-line, and an answerer receiving it."""
    sender = PeerTransport(LOOPBACK, lambda p: None, rtcp_received.append)
    receiver = PeerTransport(LOOPBACK, received.append, lambda p: None)
    transceiver = sender.add_sendonly("video", CodecInfo("video/VP8", 90000, 96), "stream", "track")
    answer = await receiver.answer(await sender.create_offer())
    await sender.accept_answer(answer)
    deadline = time.monotonic() + 10
    while not (sender.connected and receiver.connected):
        assert time.monotonic() < deadline, "DTLS did not connect"
        await asyncio.sleep(0.05)
    return sender, receiver, transceiver


async def test_peer_connections_share_the_process_certificate():
    offerer = PeerTransport(LOOPBACK, lambda p: None, lambda p: None)
    answerer = PeerTransport(LOOPBACK, lambda p: None, lambda p: None)
    try:
        offerer.add_sendonly("video", CodecInfo("video/VP8", 90000, 96), "stream", "track")
        offer = await offerer.create_offer()
        answer = await answerer.answer(offer)

        def fingerprints(sdp: str) -> set[str]:
            return {line for line in sdp.splitlines() if line.startswith("a=fingerprint:sha-256")}

        assert fingerprints(offer) and fingerprints(offer) == fingerprints(answer)
    finally:
        await offerer.close()
        await answerer.close()


async def test_an_answer_is_applied_without_waiting_on_the_loop():
    """aiortc's gathers cost a join 18 loop turns, each long on a full loop
    (benchmarks/RESULTS.md, s3 at 150): applying an answer now takes none."""
    offerer = PeerTransport(LOOPBACK, lambda p: None, lambda p: None)
    answerer = PeerTransport(LOOPBACK, lambda p: None, lambda p: None)
    turns = 0

    def turn() -> None:
        nonlocal turns
        turns += 1
        handle[0] = asyncio.get_running_loop().call_soon(turn)

    handle = [asyncio.get_running_loop().call_soon(turn)]
    try:
        offerer.add_sendonly("video", CodecInfo("video/VP8", 90000, 96), "stream", "track")
        offerer.add_sendonly("audio", CodecInfo("audio/opus", 48000, 111, channels=2), "stream", "audio")
        answer = await answerer.answer(await offerer.create_offer())
        assert "a=candidate" in answer
        before = turns
        await offerer.accept_answer(answer)
        assert turns == before, f"applying the answer waited {turns - before} loop turns"
    finally:
        handle[0].cancel()
        await offerer.close()
        await answerer.close()


async def test_raw_rtp_and_rtcp_cross_without_aiortc_media_pipeline():
    received, rtcp_received = [], []
    sender, receiver, transceiver = await connected_pair(received, rtcp_received)
    try:
        section = sender.sent_section(transceiver)
        assert section.codec.name == "VP8" and section.codec.rtx_payload_type
        [seen] = receiver.received_sections()
        assert seen.ssrcs == section.ssrcs and seen.rtx_ssrcs == section.rtx_ssrcs
        for seq in range(20):
            packet = rtp.HEADER.pack(0x80, section.codec.payload_type, seq, seq * 3000, section.ssrcs[0])
            assert sender.send_rtp(packet + bytes([0x10, seq]) * 100)
        receiver.send_rtcp(b"\x81\xce\x00\x02" + (1).to_bytes(4, "big") + section.ssrcs[0].to_bytes(4, "big"))
        deadline = time.monotonic() + 5
        while (len(received) < 20 or not rtcp_received) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert [(p[2] << 8) | p[3] for p in received] == list(range(20))
        assert rtcp_received and rtcp_received[0][1] == 206  # the PLI arrived decrypted
        for t in sender.pc.getTransceivers() + receiver.pc.getTransceivers():
            assert t.receiver._RTCRtpReceiver__decoder_thread is None
    finally:
        await sender.close()
        await receiver.close()


async def test_garbage_srtp_is_counted_and_dropped():
    received, rtcp_received = [], []
    sender, receiver, _ = await connected_pair(received, rtcp_received)
    try:
        pair = sender._connection._nominated[1]
        for size in (12, 100, 1200):  # looks like SRTP/SRTCP, fails authentication
            pair.protocol.transport.sendto(bytes([0x80, 96]) + bytes(size), pair.remote_addr)
            pair.protocol.transport.sendto(bytes([0x80, 200]) + bytes(size), pair.remote_addr)
        deadline = time.monotonic() + 3
        while receiver.srtp_errors < 6 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert receiver.srtp_errors == 6 and received == []
        assert sender.send_rtp(rtp.HEADER.pack(0x80, 96, 1, 1, 1) + b"\x10\x00")
        await asyncio.sleep(0.2)
        assert len(received) == 1  # still working
    finally:
        await sender.close()
        await receiver.close()


async def test_dtls_from_an_address_that_passed_an_ice_check_is_not_dropped():
    """Under load Chromium's DTLS can come from a candidate whose check we
    answered (so it knows our ICE password) while our own check towards it
    is still in progress: dropping it left the call stuck "connecting".
    A stranger's DTLS from an address that never sent a valid check is
    still dropped."""
    received, rtcp_received = [], []
    sender, receiver, _ = await connected_pair(received, rtcp_received)
    connection = receiver._connection
    dtls = receiver.pc.getTransceivers()[0].receiver.transport
    port = connection._protocols[0].transport.get_extra_info("sockname")[:2]
    username = f"{connection.local_username}:{connection.remote_username}"
    record = bytes([23, 0xFE, 0xFD, 0, 9]) + bytes(6) + (16).to_bytes(2, "big") + bytes(16)  # epoch 9: ignored
    peer, stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer.bind(("127.0.0.2", 0))
        stranger.bind(("127.0.0.3", 0))
        peer.setblocking(False)
        peer.sendto(binding_request(username, connection.local_password), port)
        stranger.sendto(binding_request(username, "not-the-password"), port)
        deadline = time.monotonic() + 5
        while True:  # our binding response proves aioice verified the check
            try:
                if peer.recv(1500):
                    break
            except BlockingIOError:
                assert time.monotonic() < deadline, "no binding response to a signed check"
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        pair = next(p for p in connection._check_list if p.remote_addr == peer.getsockname())
        assert pair.state.name != "SUCCEEDED"  # our check towards it cannot succeed: it never answers

        rx_before = dtls._RTCDtlsTransport__rx_packets
        dropped_before = DATAGRAMS_DROPPED["unchecked_source"]
        peer.sendto(record, port)
        stranger.sendto(record, port)
        deadline = time.monotonic() + 5
        while dtls._RTCDtlsTransport__rx_packets == rx_before:
            assert time.monotonic() < deadline, "DTLS from the verified address was dropped"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        assert dtls._RTCDtlsTransport__rx_packets == rx_before + 1  # the stranger's was not let in
        assert DATAGRAMS_DROPPED["unchecked_source"] == dropped_before + 1
        assert sender.send_rtp(rtp.HEADER.pack(0x80, 96, 1, 1, 1) + b"\x10\x00")
        deadline = time.monotonic() + 3
        while not received:
            assert time.monotonic() < deadline, "the call stopped after the extra DTLS record"
            await asyncio.sleep(0.02)
    finally:
        peer.close()
        stranger.close()
        await sender.close()
        await receiver.close()


@pytest.mark.parametrize(
    "sdp",
    [pytest.param("", id="empty"), pytest.param("v=0\r\nm=audio x\r\n", id="bad-media-line"),
     pytest.param("hello", id="not-sdp")],
)
async def test_bad_offers_raise_sdp_error(sdp):
    transport = PeerTransport(LOOPBACK, lambda p: None, lambda p: None)
    with pytest.raises(SdpError):
        await transport.answer(sdp)
    await transport.close()


async def test_port_range_is_respected():
    ice = IceConfig(addresses=["127.0.0.1"], port_min=41000, port_max=41010)
    transport = PeerTransport(ice, lambda p: None, lambda p: None)
    transport.add_sendonly("audio", CodecInfo("audio/opus", 48000, 111, channels=2), "s", "t")
    sdp = await transport.create_offer()
    ports = [int(line.split()[5]) for line in sdp.splitlines() if line.startswith("a=candidate")]
    assert ports and all(41000 <= port <= 41010 for port in ports)
    assert all(" 127.0.0.1 " in line for line in sdp.splitlines() if line.startswith("a=candidate"))
    await transport.close()


async def test_public_address_is_announced():
    ice = IceConfig(addresses=["127.0.0.1"], public_address="203.0.113.7", udp_port=0)
    transport = PeerTransport(ice, lambda p: None, lambda p: None)
    transport.add_sendonly("audio", CodecInfo("audio/opus", 48000, 111, channels=2), "s", "t")
    sdp = await transport.create_offer()
    assert "203.0.113.7" in sdp and "typ srflx raddr 127.0.0.1" in sdp
    await transport.close()


async def test_video_m_lines_stay_light_for_the_garbage_collector():
    """Every GC-tracked object is walked by each full collection, which stalls
    forwarding: a subscriber of a 150-person room has a dozen video m-lines,
    and aiortc's unused receive-side bandwidth estimator alone was 1,001
    objects per m-line (a 0.5 s pause at 150 people)."""
    gc.collect()
    before = len(gc.get_objects())
    transports = [PeerTransport(LOOPBACK, lambda p: None, lambda p: None) for _ in range(5)]
    try:
        for transport in transports:
            for index in range(12):
                transport.add_slot("video", "slots", f"video-{index}")
            await transport.create_offer()
        gc.collect()
        per_m_line = (len(gc.get_objects()) - before) / (5 * 12)
        assert per_m_line < 400, f"{per_m_line:.0f} GC-tracked objects per video m-line"
        # an aiortc peer connection of someone else's (a bot, a client) keeps its estimator
        plain = RTCPeerConnection()
        receiver = plain.addTransceiver("video").receiver
        assert receiver._RTCRtpReceiver__remote_bitrate_estimator is not None
        await plain.close()
    finally:
        for transport in transports:
            await transport.close()
