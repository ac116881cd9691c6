"""Grant checks on what a participant asks for: publish offers, subscriptions,
data and chat.

The token's grants are checked server-side on every request, not just at
join: a publish offer is refused when any of its send sections is not
allowed (no canPublish, a hidden participant, or a source outside
canPublishSources), or when it carries more than a participant may publish.
An offer is read by the parser its tracks are built from (aiortc's), so
what is checked is what gets published.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc.sdp import SessionDescription

from sfu.media_section import parse_sdp

from .auth import AuthCode, AuthError, VideoGrant
from .config import Limits

SENDING = ("sendonly", "sendrecv")
SOURCE_KINDS = {"camera": "video", "screen_share": "video", "microphone": "audio"}
TOO_MANY_TRACKS = "too_many_tracks"


class OverLimit(AuthError):
    """A request the grants allow, over a per-participant limit."""


@dataclass(frozen=True)
class SendSection:
    mid: str
    kind: str


def send_sections(description: SessionDescription) -> list[SendSection]:
    """The audio/video m-lines of an offer in which the client sends media."""
    return [
        SendSection(media.rtp.muxId, media.kind)
        for media in description.media
        if media.kind in ("audio", "video") and media.direction in SENDING
    ]


def check_publish(grant: VideoGrant, sdp: str, sources: dict[str, str], limits: Limits) -> None:
    """Raise AuthError unless every send section of ``sdp`` may be published
    (SdpError if it does not parse or can be read two ways).

    ``sources`` maps a mid to the source the client declared for it.
    """
    description = parse_sdp(sdp)
    sections = send_sections(description)
    _check_grants(grant, sections, sources)
    # a publish offer describes all of the publisher's m-lines: its send
    # sections are all the tracks the participant will have
    if len(sections) > limits.max_tracks_per_participant:
        raise OverLimit(TOO_MANY_TRACKS, f"a participant may publish at most "
                        f"{limits.max_tracks_per_participant} tracks (this offer sends {len(sections)})")
    if len(description.media) > limits.max_publish_sections:
        raise OverLimit(TOO_MANY_TRACKS, f"a publish offer may have at most {limits.max_publish_sections} "
                        f"m-lines (this one has {len(description.media)}): stop unused transceivers")


def _check_grants(grant: VideoGrant, sections: list[SendSection], sources: dict[str, str]) -> None:
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


def check_publish_data(grant: VideoGrant, what: str) -> None:
    """Raise AuthError unless the bearer may send ``what`` to its room: it
    needs canPublishData, and a hidden participant sends nothing (the
    message would reveal it)."""
    if not grant.can_publish_data:
        raise AuthError(AuthCode.PERMISSION_DENIED, f"the token does not allow sending {what} (canPublishData)")
    if grant.hidden:
        raise AuthError(AuthCode.PERMISSION_DENIED, f"hidden participants cannot send {what}")
