"""What one negotiated m-line carries, in our own terms: the header
extension URIs the SFU reads and writes, the codec (payload types as on the
wire), the SSRCs and simulcast rids, and the codec matching between what a
publisher sent and what a subscriber may receive. Only aiortc's public API
here (sfu/transport.py is the module of its internals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from aiortc import RTCRtpSender
from aiortc.sdp import SessionDescription

from .sdp_text import ambiguity

URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
URI_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
URI_REPAIRED_RID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"


class SdpError(ValueError):
    """An SDP that does not parse or cannot be negotiated."""


@dataclass
class CodecInfo:
    """A negotiated codec of one m-line (payload types as on the wire)."""

    mime_type: str
    clock_rate: int
    payload_type: int
    rtx_payload_type: Optional[int] = None
    channels: Optional[int] = None
    parameters: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.mime_type.split("/", 1)[1].upper()


@dataclass
class MediaSection:
    """One negotiated m-line: what a peer sends or what we send on it."""

    mid: str
    kind: str
    codec: CodecInfo
    extensions: dict[str, int]
    ssrcs: list[int] = field(default_factory=list)
    rtx_ssrcs: dict[int, int] = field(default_factory=dict)  # rtx ssrc -> media ssrc
    rids: list[str] = field(default_factory=list)  # simulcast layers, as offered


def parse_sdp(sdp: str) -> SessionDescription:
    """aiortc's reading of ``sdp``: the one that builds the peer connection,
    so checks made on it hold for what gets built. An SDP that could be
    read another way (sdp_text.ambiguity) is refused."""
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise SdpError("SDP must start with v=0")
    problem = ambiguity(sdp)
    if problem is not None:
        raise SdpError(f"ambiguous SDP: {problem}")
    try:
        return SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises many kinds
        raise SdpError(f"SDP does not parse: {exc}") from exc


def require_bundle(description: SessionDescription) -> None:
    media = [m for m in description.media if m.kind in ("audio", "video")]
    if media and not any(g.semantic == "BUNDLE" for g in description.group):
        raise SdpError("offer must use BUNDLE")


def require_known_mids(description: SessionDescription) -> None:
    """aiortc half-builds a connection from m-lines that share a mid, or from
    a BUNDLE group naming a mid no m-line has (and then cannot close it):
    refuse those first."""
    mids = [m.rtp.muxId for m in description.media]
    if len(mids) != len(set(mids)):
        raise SdpError("every m-line needs its own a=mid")
    for group in description.group:
        if group.semantic == "BUNDLE" and not set(group.items) <= set(mids):
            raise SdpError("a=group:BUNDLE names a mid that no m-line has")


def media_for_mid(description: SessionDescription, mid: Optional[str]):
    for media in description.media:
        if media.rtp.muxId == mid:
            return media
    return None


def matching_codec(codecs: list, kind: str, codec: CodecInfo):
    """The entry of ``codecs`` (aiortc parameters) that carries ``codec``, or None."""
    found = same_codec([c for c in codecs if c.mimeType.lower() != f"{kind}/rtx"], codec)
    return found[0] if found else None


def same_codec(candidates: list, codec: CodecInfo) -> list:
    wanted = [c for c in candidates if c.mimeType.lower() == codec.mime_type.lower()]
    if codec.name == "H264":
        mode = str(codec.parameters.get("packetization-mode", "0"))
        profile = str(codec.parameters.get("profile-level-id", ""))[:4].lower()
        exact = [
            c
            for c in wanted
            if str(c.parameters.get("packetization-mode")) == mode
            and str(c.parameters.get("profile-level-id", ""))[:4].lower() == profile
        ]
        wanted = exact or wanted
    return wanted


def capabilities_for(kind: str, codec: CodecInfo):
    """aiortc's codec capabilities matching a published codec (plus its RTX)."""
    caps = RTCRtpSender.getCapabilities(kind).codecs
    wanted = same_codec(caps, codec)
    if not wanted:
        raise SdpError(f"codec {codec.mime_type} cannot be forwarded")
    rtx = [c for c in caps if c.mimeType.lower() == f"{kind}/rtx"]
    return wanted[:1] + rtx[:1]
