"""Property-based fuzzing of the text a stranger sends: SDP offers (our text
reads, aiortc's parse, a publisher's whole negotiation), the signaling
request schema, and the claims of a correctly signed access token.

Each either succeeds with well-typed values or raises its one documented
error: SdpError for SDP, pydantic's ValidationError for requests, AuthError
for tokens. Anything else would reach the session as an ``internal`` error
with a traceback. Examples are derandomized (tests/fuzz.py).
"""

from __future__ import annotations

import asyncio
import json
import time

import jwt
import pytest
from aiortc import RTCPeerConnection
from hypothesis import example, given, settings, strategies as st
from pydantic import ValidationError

from sfu import sdp_text
from sfu.config import IceConfig, SfuConfig
from sfu.media_section import SdpError, parse_sdp
from sfu.publisher import Publisher
from signaling import protocol
from signaling.auth import AuthError, Claims, verify_token
from signaling.permissions import SendSection, send_sections

from .fuzz import counted
from .media import PatternVideoTrack, ToneAudioTrack

# --- SDP --------------------------------------------------------------------------

#: A Chrome publisher offer: audio, and VP8 video sent as three simulcast layers.
CHROME_OFFER = "\r\n".join([
    "v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
    "a=group:BUNDLE 0 1", "a=extmap-allow-mixed", "a=msid-semantic: WMS stream",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx", "a=ice-options:trickle",
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass", "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid", "a=sendonly", "a=msid:stream audio",
    "a=rtcp-mux", "a=rtpmap:111 opus/48000/2", "a=rtcp-fb:111 transport-cc",
    "a=fmtp:111 minptime=10;useinbandfec=1", "a=rtpmap:63 red/48000/2", "a=fmtp:63 111/111",
    "a=ssrc:1001 cname:c", "a=ssrc:1001 msid:stream audio",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx", "a=ice-options:trickle",
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass", "a=mid:1",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    "a=sendonly", "a=msid:stream video", "a=rtcp-mux", "a=rtcp-rsize",
    "a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 nack", "a=rtcp-fb:96 nack pli", "a=rtcp-fb:96 goog-remb",
    "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96",
    "a=rid:q send", "a=rid:h send", "a=rid:f send", "a=simulcast:send q;h;f", "",
])

#: Lines to insert: the attributes the SFU and aiortc read, with odd values.
VOCABULARY = [
    "m=video 9 UDP/TLS/RTP/SAVPF 96", "m=audio 0 UDP/TLS/RTP/SAVPF 111", "m=application 9 UDP/DTLS/SCTP x",
    "m=video", "a=mid:", "a=mid:0", "a=mid:1", "a=sendonly", "a=recvonly", "a=inactive", "a=sendrecv",
    "a=rtpmap:96 VP8/90000", "a=rtpmap:96 H264/90000", "a=rtpmap:98 rtx/90000", "a=rtpmap:x",
    "a=fmtp:98 apt=999", "a=fmtp:96 packetization-mode=1;profile-level-id=42e01f", "a=fmtp:96",
    "a=ssrc:1 cname:x", "a=ssrc:x", "a=ssrc-group:FID 1 2", "a=ssrc-group:FID", "a=ssrc-group:SIM 1 2 3",
    "a=extmap:0 urn:ietf:params:rtp-hdrext:sdes:mid", "a=extmap:300 x", "a=extmap:x",
    "a=rid:q send", "a=rid:", "a=simulcast:send ~q;h,x;", "a=simulcast:send ", "a=simulcast:recv q",
    "a=group:BUNDLE", "a=group:BUNDLE 0 1 2", "a=rtcp-fb:* nack", "a=rtcp-fb:96",
    "a=candidate:1 1 udp 1 127.0.0.1 9 typ host", "a=candidate:x", "a=fingerprint:sha-256 00",
    "a=setup:active", "a=setup:x", "a=ice-ufrag:", "a=ice-pwd:", "c=IN IP4", "c=IN IP6 ::1",
    "a=msid:a b", "a=sctp-port:x", "a=max-message-size:x", "a=rtcp:x", "a=rtcp-mux", "b=AS:x",
]
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)


@st.composite
def mutated_offer(draw, base: str | None = None) -> str:
    """A real offer with a few lines deleted, duplicated, garbled or added."""
    lines = (base or draw(st.sampled_from([CHROME_OFFER, aiortc_offer()]))).split("\r\n")[:-1]
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "garble", "insert", "insert"]))
        if action == "delete" and len(lines) > 1:
            del lines[index]
        elif action == "duplicate":
            lines.insert(index + draw(st.integers(1, 3)), lines[index])
        elif action == "garble":
            head = lines[index].split(":", 1)[0] if ":" in lines[index] else lines[index][:2]
            lines[index] = head + draw(st.sampled_from([":", " ", ""])) + draw(TEXT)
        else:
            lines.insert(index, draw(st.sampled_from(VOCABULARY)))
    return "\r\n".join(lines) + "\r\n"


_AIORTC_OFFER: list[str] = []


def aiortc_offer() -> str:
    """An aiortc client's publish offer (audio and video), made once."""
    if not _AIORTC_OFFER:

        async def make() -> str:
            pc = RTCPeerConnection()
            pc.addTransceiver(ToneAudioTrack(), direction="sendonly")
            pc.addTransceiver(PatternVideoTrack(), direction="sendonly")
            await pc.setLocalDescription(await pc.createOffer())
            sdp = pc.localDescription.sdp
            await pc.close()
            return sdp

        _AIORTC_OFFER.append(asyncio.run(make()))
    return _AIORTC_OFFER[0]


@given(st.one_of(mutated_offer(), TEXT.map(lambda text: "v=0\r\n" + text), st.text(max_size=200)))
def test_sdp_text_reads_never_raise(sdp):
    counted("sdp")
    groups = sdp_text.sections(sdp)
    assert groups and all(isinstance(line, str) for lines in groups for line in lines)
    for lines in groups[1:]:
        assert sdp_text.mid_of(lines) is None or isinstance(sdp_text.mid_of(lines), str)
    rids = sdp_text.offered_rids(sdp)
    assert all(isinstance(r, str) and r for found in rids.values() for r in found)
    found = sdp_text.ambiguity(sdp)
    assert found is None or isinstance(found, str)
    try:
        description = parse_sdp(sdp)
    except SdpError:
        return
    assert all(isinstance(s, SendSection) and s.kind in ("audio", "video") for s in send_sections(description))


@given(st.one_of(mutated_offer(), st.text(max_size=300).map(lambda text: "v=0\r\n" + text)))
def test_sdp_parse_raises_only_sdp_error(sdp):
    counted("sdp")
    try:
        parse_sdp(sdp)
    except SdpError:
        pass


@pytest.mark.timeout(240)
@settings(max_examples=max(10, settings.default.max_examples // 6))  # a peer connection each
@given(mutated_offer())
@example(CHROME_OFFER)
@example(CHROME_OFFER.replace("a=sendonly\r\na=msid:stream video", "a=msid:stream video"))  # no direction
@example(CHROME_OFFER.replace("a=rtpmap:96 VP8/90000\r\n", ""))  # a payload type without its codec
@example(CHROME_OFFER.replace("a=mid:0", "a=mid:0\r\na=mid:1"))  # two m-lines end up with mid 1
@example(CHROME_OFFER.replace("m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n", ""))  # BUNDLE names a lost mid
def test_publish_negotiation_answers_or_raises_sdp_error(offer):
    """A publisher's whole negotiation (aiortc's setRemoteDescription, our
    reads of the result): an answer, or SdpError (``bad_sdp``), nothing else."""
    counted("sdp publish")

    async def negotiate():
        publisher = Publisher("PA_fuzz", SfuConfig(ice=IceConfig(addresses=["127.0.0.1"], udp_port=0)), lambda state: None)
        try:
            answer, added, removed, adopted = await publisher.negotiate(offer, {})
            assert answer.startswith("v=0") and removed == [] and adopted == []
            assert all(track.kind in ("audio", "video") for track in added)
        except SdpError:
            pass
        finally:
            await publisher.close()

    asyncio.run(negotiate())


# --- the signaling request schema ---------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)
REQUEST_TYPES = [
    "join", "resume", "publish", "unpublish", "mute", "trickle", "subscribe", "unsubscribe",
    "subscriber_answer", "update_track_settings", "set_pins", "leave", "ping", "send_data",
    "chat", "reaction", "raise_hand", "start_recording", "stop_recording", "teleport",
]
FIELDS = [
    "id", "room", "name", "version", "auto_subscribe", "token", "slots", "sdp", "tracks", "track_id",
    "muted", "target", "candidate", "sdp_mid", "sdp_mline_index", "track_ids", "quality", "max_width",
    "max_height", "max_fps", "paused", "participant_ids", "payload", "topic", "destination_identities",
    "text", "emoji", "raised", "recording_id", "video", "audio", "mid", "source",
]


@st.composite
def request_like(draw) -> dict:
    """A request object: a known type, known field names, any JSON values."""
    message = {"type": draw(st.sampled_from(REQUEST_TYPES))}
    message.update(draw(st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6)))
    return message


@given(st.one_of(request_like(), JSON))
def test_request_schema_raises_only_validation_error(value):
    counted("signaling schema")
    try:
        request = protocol.REQUEST_ADAPTER.validate_python(value)
    except ValidationError as exc:
        assert exc.errors()  # the session words its bad_message from these
        return
    assert request.type in REQUEST_TYPES
    assert isinstance(request.id, (int, str))
    json.dumps(request.model_dump())  # what the session echoes back is JSON again


# --- access token claims ---------------------------------------------------------------

KEYS = {"fuzz-key": "fuzz-secret-" + "z" * 32}
GRANT_FIELDS = ["room", "roomJoin", "roomCreate", "roomAdmin", "roomList", "canPublish", "canSubscribe",
                "canPublishData", "canPublishSources", "hidden"]
CLAIM_VALUES = JSON | st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**70), 2**70)


@st.composite
def claims_like(draw) -> dict:
    """Claims a key holder might sign: the standard ones with any JSON values."""
    now = int(time.time())
    claims = {"iss": "fuzz-key", "sub": "someone", "exp": now + 3600}
    claims.update(draw(st.dictionaries(
        st.sampled_from(["sub", "exp", "nbf", "iat", "name", "metadata", "video", "aud", "iss", "jti"]),
        CLAIM_VALUES | st.just(now), max_size=4,
    )))
    if draw(st.booleans()):
        claims["video"] = draw(st.dictionaries(st.sampled_from(GRANT_FIELDS), CLAIM_VALUES, max_size=5))
    return claims


def sign(claims: dict) -> str:
    """A token of any JSON claims (PyJWT's encode refuses some, e.g. a numeric iss)."""
    payload = json.dumps(claims).encode()  # Infinity and NaN too, as Python's json writes them
    return jwt.PyJWS().encode(payload, KEYS["fuzz-key"], algorithm="HS256")


@given(claims_like())
def test_signed_claims_are_accepted_well_typed_or_refused_with_auth_error(claims):
    counted("jwt claims")
    token = sign(claims)
    try:
        verified = verify_token(token, KEYS)
    except AuthError as exc:
        assert exc.code.startswith("token_") and exc.message
        return
    assert isinstance(verified, Claims) and verified.api_key == "fuzz-key"
    for text in (verified.identity, verified.name, verified.metadata, verified.video.room):
        assert isinstance(text, str)
    grant = verified.video
    flags = (grant.room_join, grant.room_create, grant.room_admin, grant.room_list, grant.can_publish,
             grant.can_subscribe, grant.can_publish_data, grant.hidden)
    assert all(isinstance(flag, bool) for flag in flags)
    assert all(source in ("camera", "microphone", "screen_share") for source in grant.can_publish_sources)


@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))))
def test_any_token_text_is_refused_with_auth_error(token):
    counted("jwt claims")
    with pytest.raises(AuthError):
        verify_token(token, KEYS)
