"""Grant checks on what a participant asks for: publish offers, subscriptions.

The token's grants are checked server-side on every request, not just at
join: a publish offer is refused when any of its send sections is not
allowed (no canPublish, a hidden participant, or a source outside
canPublishSources).
"""

from __future__ import annotations

from dataclasses import dataclass

from sfu.media_section import parse_sdp

from .auth import AuthCode, AuthError, VideoGrant

SENDING = ("sendonly", "sendrecv")
SOURCE_KINDS = {"camera": "video", "screen_share": "video", "microphone": "audio"}


@dataclass(frozen=True)
class SendSection:
    mid: str
    kind: str


def send_sections(sdp: str) -> list[SendSection]:
    """The audio/video m-lines of an offer in which the client sends media,
    read by the parser the publisher's tracks are built from (an SDP it
    could read otherwise raises SdpError)."""
    return [
        SendSection(media.rtp.muxId, media.kind)
        for media in parse_sdp(sdp).media
        if media.kind in ("audio", "video") and media.direction in SENDING
    ]


def check_publish(grant: VideoGrant, sdp: str, sources: dict[str, str]) -> None:
    """Raise AuthError unless every send section of ``sdp`` may be published.

    ``sources`` maps a mid to the source the client declared for it.
    """
    sections = send_sections(sdp)
    if not sections:
        return
    if grant.hidden:
        raise AuthError(AuthCode.PERMISSION_DENIED, "hidden participants cannot publish")
    if not grant.can_publish:
        raise AuthError(AuthCode.PERMISSION_DENIED, "the token does not allow publishing (canPublish)")
    if not grant.can_publish_sources:
        return
    for section in sections:
        source = sources.get(section.mid, "unknown")
        if source not in grant.can_publish_sources or SOURCE_KINDS.get(source) != section.kind:
            raise AuthError(
                AuthCode.PERMISSION_DENIED,
                f"the token does not allow publishing {section.kind} as {source!r} "
                f"(canPublishSources: {', '.join(grant.can_publish_sources)})",
            )


def check_subscribe(grant: VideoGrant) -> None:
    if not grant.can_subscribe:
        raise AuthError(AuthCode.PERMISSION_DENIED, "the token does not allow subscribing (canSubscribe)")
