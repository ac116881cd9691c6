"""Grant checks on what a participant asks for: publish offers, subscriptions,
data and chat.

The token's grants are checked server-side on every request, not just at
join: a publish offer is refused when any of its send sections is not
allowed (no canPublish, a hidden participant, or a source outside
canPublishSources).
"""

from __future__ import annotations

from dataclasses import dataclass

from sfu import sdp_text

from .auth import AuthCode, AuthError, VideoGrant

SENDING = ("sendonly", "sendrecv")
SOURCE_KINDS = {"camera": "video", "screen_share": "video", "microphone": "audio"}


@dataclass(frozen=True)
class SendSection:
    mid: str
    kind: str


def send_sections(sdp: str) -> list[SendSection]:
    """The audio/video m-lines of an offer in which the client sends media."""
    found = []
    for lines in sdp_text.sections(sdp)[1:]:
        kind = lines[0][2:].split(" ", 1)[0]
        mid = sdp_text.mid_of(lines)
        if kind in ("audio", "video") and mid is not None and sdp_text.direction_of(lines) in SENDING:
            found.append(SendSection(mid, kind))
    return found


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


def check_publish_data(grant: VideoGrant, what: str) -> None:
    """Raise AuthError unless the bearer may send ``what`` to its room: it
    needs canPublishData, and a hidden participant sends nothing (the
    message would reveal it)."""
    if not grant.can_publish_data:
        raise AuthError(AuthCode.PERMISSION_DENIED, f"the token does not allow sending {what} (canPublishData)")
    if grant.hidden:
        raise AuthError(AuthCode.PERMISSION_DENIED, f"hidden participants cannot send {what}")
