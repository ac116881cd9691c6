"""Property-based fuzzing of the packet parsers a stranger's bytes reach:
RTP headers and extensions, RTCP compounds, the STUN USERNAME read of
single-port routing, VP8/H.264 payloads, and the recorder's depacketizer.

Each parser either returns a well-typed result or its documented "no"
(-1, None, an empty list), never raises; where a builder exists, what it
builds parses back to what went in. Examples are derandomized (tests/fuzz.py).
"""

from __future__ import annotations

import asyncio
import socket
import struct

from aioice import stun
from hypothesis import example, given, strategies as st

from sfu import rtcp, rtp, udp_mux
from sfu.codecs import h264, handler, vp8
from sfu.depacketizer import Depacketizer, Frame
from sfu.rtcp import Fir, Nack, Pli, ReceiverReport, Remb, ReportBlock, SenderReport

from .fuzz import counted
from .packets import rtp_packet, vp8_descriptor
from .test_vp8_munger import simulcast_downtrack, vp8_packet

U8 = st.integers(0, 0xFF)
U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFFFFFF)
GARBAGE = st.binary(max_size=1500)


# --- RTP ------------------------------------------------------------------------


@st.composite
def rtp_like(draw) -> bytes:
    """RTP-shaped bytes whose length fields (CSRC count, extension length,
    padding count) may lie about what follows."""
    first = (draw(st.sampled_from([2, 2, 2, draw(st.integers(0, 3))])) << 6) | draw(st.integers(0, 0x3F))
    header = struct.pack("!BBHII", first, draw(U8), draw(U16), draw(U32), draw(U32))
    body = draw(st.binary(max_size=4 * 15))  # room for the CSRCs, or not
    if first & 0x10:
        profile = draw(st.sampled_from([0xBEDE, 0x1000, 0x100F, draw(U16)]))
        elements = draw(st.binary(max_size=80))
        words = draw(st.one_of(st.just(-(-len(elements) // 4)), st.integers(0, 0xFFFF)))
        body += struct.pack("!HH", profile, words) + elements
    body += draw(st.binary(max_size=200))
    if first & 0x20 and draw(st.booleans()):
        body += bytes([draw(U8)])  # a padding count that may exceed the packet
    return header + body


@given(st.one_of(rtp_like(), GARBAGE))
def test_rtp_header_readers_never_raise(data):
    counted("rtp")
    offset = rtp.payload_offset(data)
    assert isinstance(offset, int)
    if offset < 0:
        assert offset == -1
        return
    end = rtp.payload_end(data)  # defined once the header is known good
    assert rtp.MIN_HEADER <= offset <= end <= len(data)
    found = rtp.extensions(data)
    assert all(isinstance(k, int) and 0 < k < 256 and isinstance(v, bytes) for k, v in found.items())
    for ext_id in range(1, 15):
        assert -1 <= rtp.audio_level_byte(data, ext_id) <= 0xFF


ELEMENTS = st.dictionaries(st.integers(1, 14), st.binary(min_size=1, max_size=16), max_size=6)


@given(ELEMENTS, st.lists(U32, max_size=15), st.binary(max_size=100), st.integers(0, 40))
def test_rtp_extensions_round_trip(elements, csrcs, payload, padding):
    counted("rtp")
    block = rtp.one_byte_extensions(list(elements.items()))
    packet = rtp_packet(extension=block, csrcs=csrcs, payload=payload, padding=padding)
    offset = rtp.payload_offset(packet)
    assert packet[offset : rtp.payload_end(packet)] == payload
    assert rtp.extensions(packet) == elements
    for ext_id, value in elements.items():
        assert rtp.audio_level_byte(packet, ext_id) == value[0]


# --- RTCP -----------------------------------------------------------------------

FEEDBACK = (SenderReport, ReceiverReport, Nack, Pli, Fir, Remb)


def well_typed(item) -> bool:
    if isinstance(item, (SenderReport, ReceiverReport)):
        return len(item.blocks) <= 31 and all(
            0 <= b.fraction_lost <= 0xFF and -0x800000 <= b.packets_lost <= 0x7FFFFF for b in item.blocks
        )
    if isinstance(item, Nack):
        return all(0 <= seq <= 0xFFFF for seq in item.lost)
    if isinstance(item, Fir):
        return all(0 <= seq <= 0xFF for _, seq in item.entries)
    if isinstance(item, Remb):
        return item.bitrate >= 0 and len(item.ssrcs) <= 0xFF
    return isinstance(item, Pli)


@st.composite
def rtcp_like(draw) -> bytes:
    """A compound of RTCP-shaped packets: known and unknown types (SDES, BYE,
    APP, XR), any count/fmt, bodies of any size, length fields that may lie."""
    out = b""
    for _ in range(draw(st.integers(1, 4))):
        pt = draw(st.sampled_from([200, 201, 202, 203, 204, 205, 206, 207, draw(U8)]))
        fmt = draw(st.integers(0, 31))
        body = draw(st.binary(max_size=160))
        if pt == 206 and fmt == 15 and draw(st.booleans()):
            body = draw(st.binary(min_size=8, max_size=8)) + b"REMB" + draw(st.binary(max_size=80))
        words = draw(st.one_of(st.just(len(body) // 4), U16))
        out += struct.pack("!BBH", (draw(st.sampled_from([2, 2, 2, 0, 1, 3])) << 6) | fmt, pt, words) + body
    return out


@given(st.one_of(rtcp_like(), GARBAGE))
def test_rtcp_parse_never_raises_and_is_well_typed(data):
    counted("rtcp")
    items = rtcp.parse(data)
    assert isinstance(items, list)
    assert all(isinstance(i, FEEDBACK) and well_typed(i) for i in items)


BLOCKS = st.builds(ReportBlock, U32, U8, st.integers(-0x800000, 0x7FFFFF), U32, U32, U32, U32)
ONE_PACKET = st.one_of(
    st.builds(lambda s, b: (rtcp.build_rr(s, b), ReceiverReport(s, b[:31])), U32, st.lists(BLOCKS, max_size=33)),
    st.builds(
        lambda s, n, t, p, o: (rtcp.build_sr(s, n, t, p, o), SenderReport(s, n, t, p, o)),
        U32, st.integers(0, 2**64 - 1), U32, U32, U32,
    ),
    st.builds(lambda s, m: (rtcp.build_pli(s, m), Pli(s, m)), U32, U32),
    st.builds(lambda s, m, q: (rtcp.build_fir(s, m, q), Fir(s, [(m, q & 0xFF)])), U32, U32, st.integers(0, 10**6)),
    st.builds(lambda s, c: (rtcp.build_sdes(s, c), None), U32, st.text(max_size=300)),
)


@given(st.lists(ONE_PACKET, min_size=1, max_size=5), st.one_of(rtcp_like(), GARBAGE))
@example(packets=[(rtcp.build_pli(1, 2), Pli(1, 2))], tail=b"\x81\xc9\xff\xff")  # a length past the end
def test_rtcp_builders_round_trip_in_a_compound_with_a_garbage_tail(packets, tail):
    counted("rtcp")
    compound = b"".join(data for data, _ in packets)
    expected = [item for _, item in packets if item is not None]  # SDES: skipped, not a stop
    assert rtcp.parse(compound) == expected
    assert rtcp.parse(compound + tail)[: len(expected)] == expected


@given(U32, U32, st.lists(U16, min_size=1, max_size=100))
def test_rtcp_nack_round_trips_with_wrap_around(sender, media, lost):
    counted("rtcp")
    [nack] = rtcp.parse(rtcp.build_nack(sender, media, lost))
    assert (nack.sender_ssrc, nack.media_ssrc) == (sender, media)
    assert set(nack.lost) == set(lost)


@given(U32, st.integers(0, 2**40), st.lists(U32, max_size=255))
def test_rtcp_remb_round_trips_within_its_mantissa(sender, bitrate, ssrcs):
    counted("rtcp")
    [remb] = rtcp.parse(rtcp.build_remb(sender, bitrate, ssrcs))
    assert remb.ssrcs == ssrcs and remb.sender_ssrc == sender
    assert bitrate - (bitrate >> 17) - 1 <= remb.bitrate <= bitrate  # 18-bit mantissa


# --- STUN routing (single-port mode) -------------------------------------------

ICE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
UFRAG = st.text(ICE_CHARS, min_size=4, max_size=32)


@st.composite
def stun_like(draw) -> bytes:
    """STUN-shaped bytes: the magic cookie, attributes with lying lengths."""
    attributes = b""
    for _ in range(draw(st.integers(0, 5))):
        value = draw(st.binary(max_size=40))
        kind = draw(st.sampled_from([0x0006, 0x0008, 0x8028, draw(U16)]))
        attributes += struct.pack("!HH", kind, draw(st.one_of(st.just(len(value)), U16))) + value
    length = draw(st.one_of(st.just(len(attributes)), U16))
    return struct.pack("!HH", draw(st.integers(0, 0x3FFF)), length) + udp_mux.STUN_MAGIC + bytes(12) + attributes


@given(st.one_of(stun_like(), GARBAGE))
def test_stun_username_read_never_raises(data):
    counted("stun")
    ufrag = udp_mux.stun_local_ufrag(data)
    assert ufrag is None or isinstance(ufrag, str)


@given(UFRAG, UFRAG, st.integers(0, 2**64 - 1), st.booleans())
def test_stun_username_of_a_real_binding_request_names_its_ufrag(local, remote, tiebreaker, controlling):
    counted("stun")
    message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    message.attributes["PRIORITY"] = 1234
    message.attributes["ICE-CONTROLLING" if controlling else "ICE-CONTROLLED"] = tiebreaker
    message.attributes["USERNAME"] = f"{local}:{remote}"
    message.add_message_integrity(b"p" * 22)
    message.add_fingerprint()
    assert udp_mux.stun_local_ufrag(bytes(message)) == local


class Received:
    def __init__(self) -> None:
        self.datagrams: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.datagrams.append(data)


def test_single_port_demux_drops_what_a_stranger_sends():
    """The real mux on a real socket: datagrams from an address no check has
    routed, naming no known ufrag, reach no connection and route nothing."""
    loop = asyncio.new_event_loop()
    mux = udp_mux.UdpMux(_bound_socket(), loop)
    receiver = Received()
    mux.endpoint("localufrag", receiver)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:

        @given(st.one_of(stun_like(), GARBAGE, st.just(b"")))
        def drop(data):
            counted("stun")
            if udp_mux.stun_local_ufrag(data) == "localufrag":
                return
            stranger.sendto(data, mux.sockname)
            mux._readable()  # what the loop's reader callback runs
            assert receiver.datagrams == [] and mux.routes == {}

        drop()
        assert mux.dropped > 100  # the datagrams did arrive and were counted
    finally:
        stranger.close()
        mux.close()
        loop.close()


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    return sock


# --- VP8 and H.264 payloads ---------------------------------------------------------


@st.composite
def vp8_like(draw) -> tuple[bytes, int]:
    """(packet, payload offset): a VP8 descriptor with any bits, cut anywhere."""
    descriptor = bytes([draw(U8) | draw(st.sampled_from([0, 0x80, 0x90])), draw(U8) | draw(st.sampled_from([0, 0xF0]))])
    descriptor += draw(st.binary(max_size=6))
    payload = (descriptor + draw(st.binary(max_size=12)))[: draw(st.integers(0, 20))]
    prefix = draw(st.binary(max_size=16))
    return prefix + payload, len(prefix)


@given(st.one_of(vp8_like(), st.tuples(GARBAGE, st.integers(0, 40))))
def test_vp8_descriptor_readers_never_raise(case):
    counted("vp8")
    packet, offset = case
    assert isinstance(vp8.is_keyframe(packet, offset), bool)
    size = vp8.keyframe_size(packet, offset)
    assert size is None or all(0 <= side < 0x4000 for side in size)
    start, data = vp8.depacketize(packet[offset:])
    assert isinstance(start, bool) and isinstance(data, bytes)
    end = len(packet)
    descriptor = vp8.parse_descriptor(packet, offset, end)
    if descriptor is None:
        return
    last = descriptor.pid_pos + (1 if descriptor.pid_bits == 15 else 0)
    assert descriptor.pid_pos == -1 or offset < descriptor.pid_pos <= last < end
    assert descriptor.tl0_pos == -1 or offset < descriptor.tl0_pos < end
    assert 0 <= descriptor.tid <= 3


@given(
    st.booleans(), st.one_of(st.none(), st.integers(0, 0x7FFF)), st.booleans(),
    st.one_of(st.none(), U8), st.one_of(st.none(), st.integers(0, 3)), st.binary(max_size=8),
)
def test_vp8_descriptor_round_trips(start, picture_id, long_id, tl0, tid, rest):
    counted("vp8")
    long_id = long_id or (picture_id is not None and picture_id > 0x7F)
    payload = vp8_descriptor(start=start, picture_id=picture_id, long_picture_id=long_id, tl0picidx=tl0, tid=tid)
    packet = bytes(12) + payload + rest
    descriptor = vp8.parse_descriptor(packet, 12)
    assert descriptor.start == start
    if picture_id is None:
        assert descriptor.pid_pos == -1
    else:
        pid = (packet[descriptor.pid_pos] & 0x7F) << 8 | packet[descriptor.pid_pos + 1] if long_id else packet[descriptor.pid_pos]
        assert (descriptor.pid_bits, pid) == (15 if long_id else 7, picture_id)
    assert (packet[descriptor.tl0_pos] if tl0 is not None else None) == tl0
    assert descriptor.tid == (tid or 0)


def padded_vp8(seq: int, descriptor_tail: bytes, padding: int) -> bytes:
    """A VP8 packet whose padding holds what its descriptor promises."""
    packet = bytearray(rtp_packet(seq=seq, ts=seq * 3000, ssrc=11, payload=b"\x90", padding=padding))
    packet[13 : 13 + min(len(descriptor_tail), padding - 1)] = descriptor_tail[: padding - 1]
    return bytes(packet)


@given(st.one_of(rtp_like(), st.builds(padded_vp8, st.just(2), st.binary(min_size=1, max_size=6), st.integers(1, 8))))
@example(padded_vp8(2, b"\xc0\x81\x02\x03", 5))  # picture ID and TL0PICIDX in the padding
def test_vp8_simulcast_forwarding_survives_any_packet(packet):
    """The path a simulcast VP8 packet takes after a layer switch (picture
    IDs rewritten): stream, descriptor, down-track; nothing raises."""
    counted("vp8")
    downtrack, sink = simulcast_downtrack()
    low, high = downtrack.track.layers[:2]
    for stream in (low, high):
        stream.codec = vp8.HANDLER
        stream._describe = vp8.HANDLER.describe
        stream.add_reader(downtrack)
    downtrack.set_target(0)
    low.on_rtp(vp8_packet(1, 0, 100, 5, key=True, ssrc=10), 0.0)
    downtrack.set_target(1)
    high.on_rtp(vp8_packet(1, 0, 5000, 200, key=True, ssrc=11), 0.01)
    assert downtrack.current == 1 and downtrack.ids.offsets != (0, 0)
    packet = packet[:8] + (11).to_bytes(4, "big") + packet[12:]  # on the switched-to layer
    high.on_rtp(packet, 0.02)
    downtrack.on_nack([s for s in range(4)], 0.03)  # retransmissions re-read the cache


@given(st.one_of(st.tuples(GARBAGE, st.integers(0, 40))))
def test_h264_keyframe_test_never_raises(case):
    counted("h264")
    packet, offset = case
    assert isinstance(h264.is_keyframe(packet, offset), bool)


@st.composite
def h264_like(draw) -> bytes:
    """Single NAL, STAP-A with lying sizes, FU-A: any header bits."""
    kind = draw(st.sampled_from(["single", "stap", "fu", "other"]))
    if kind == "single":
        return bytes([draw(st.integers(1, 23)) | draw(st.sampled_from([0, 0x60]))]) + draw(st.binary(max_size=20))
    if kind == "stap":
        out = b"\x78"
        for _ in range(draw(st.integers(0, 4))):
            unit = draw(st.binary(min_size=1, max_size=10))
            out += struct.pack("!H", draw(st.one_of(st.just(len(unit)), U16))) + unit
        return out
    if kind == "fu":
        return bytes([0x7C, draw(U8)]) + draw(st.binary(max_size=20))
    return draw(st.binary(max_size=30))


@given(h264_like())
def test_h264_payload_helpers_never_raise(payload):
    counted("h264")
    assert isinstance(h264.is_keyframe(payload, 0), bool)
    start, data = h264.depacketize(payload)
    assert isinstance(start, bool) and isinstance(data, bytes)
    assert isinstance(h264.HANDLER.frame_is_keyframe(data), bool) and isinstance(h264.HANDLER.extradata(data), bytes)


# --- the depacketizer (recorder and media taps) -----------------------------------


@given(
    st.sampled_from(["VP8", "H264", "opus"]),
    st.lists(
        st.tuples(U16, U32, st.booleans(), st.one_of(h264_like(), vp8_like().map(lambda c: c[0][c[1]:]), GARBAGE)),
        max_size=40,
    ),
)
def test_depacketizer_never_raises_and_yields_frames(codec, packets):
    counted("depacketizer")
    asked = []
    depacketizer = Depacketizer(handler(codec), lambda: asked.append(1))
    frames = []
    for seq, ts, marker, payload in packets:
        frames += depacketizer.push(seq, ts, marker, payload)
    frames += depacketizer.flush()
    assert all(isinstance(f, Frame) and isinstance(f.data, bytes) and f.data for f in frames)
    assert all(isinstance(f.timestamp, int) and isinstance(f.keyframe, bool) for f in frames)
