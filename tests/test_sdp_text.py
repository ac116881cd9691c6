"""sdp_text.ambiguity: an SDP that aiortc and a text reader could read two
ways is named, a browser's offer is not."""

from __future__ import annotations

import pytest

from sfu.media_section import SdpError, parse_sdp
from sfu.sdp_text import ambiguity

SESSION = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1"]
AUDIO = ["m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=mid:0", "a=sendonly",
         "a=rtcp-mux", "a=rtpmap:111 opus/48000/2"]
VIDEO = ["m=video 9 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 0.0.0.0", "a=mid:1", "a=sendonly", "a=rtcp-mux",
         "a=rtpmap:96 VP8/90000", "a=rid:q send", "a=rid:h send", "a=rid:f send", "a=simulcast:send q;h;f"]


def sdp(audio=AUDIO, video=VIDEO, session=SESSION) -> str:
    return "\r\n".join([*session, *audio, *video]) + "\r\n"


def test_a_browser_style_offer_is_not_ambiguous():
    assert ambiguity(sdp()) is None
    assert ambiguity(sdp(video=[*VIDEO[:-1], "a=simulcast:send q;h;~f"])) is None
    parse_sdp(sdp())


@pytest.mark.parametrize(
    "audio, video, what",
    [
        pytest.param([*AUDIO, "a=recvonly"], VIDEO, "direction", id="two-directions"),
        pytest.param([*AUDIO, "a=inactive:x"], VIDEO, "direction", id="direction-with-a-value"),
        pytest.param([*AUDIO, "a=mid:9"], VIDEO, "a=mid", id="two-mids"),
        pytest.param([a for a in AUDIO if a != "a=mid:0"], VIDEO, "no a=mid", id="no-mid"),
        pytest.param(AUDIO, [v.replace("a=mid:1", "a=mid:0") for v in VIDEO], "a=mid:0", id="mid-reused"),
        pytest.param(AUDIO, [*VIDEO, "a=simulcast:send f"], "a=simulcast", id="two-simulcast"),
        pytest.param(AUDIO, [*VIDEO, "a=rid:q send"], "rid", id="rid-repeated"),
        pytest.param(AUDIO, [*VIDEO[:-1], "a=simulcast:send q;q;f"], "rid", id="rid-listed-twice"),
    ],
)
def test_what_can_be_read_two_ways_is_named_and_refused(audio, video, what):
    problem = ambiguity(sdp(audio, video))
    assert problem is not None and what in problem
    with pytest.raises(SdpError, match="ambiguous"):
        parse_sdp(sdp(audio, video))
