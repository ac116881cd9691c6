"""Redirect tickets: the short-lived token a node hands a client it sends to
the room's owner (issue 7).

A ticket is an ordinary access token for one room, signed with the same API
key as the token it was made from and carrying the same identity and grants,
but valid for ``ttl`` seconds at most (never beyond the original token).  The
owner checks it like any token, so every node must hold the same keys.
"""

from __future__ import annotations

import time
from typing import Mapping, Optional

import jwt

from ..auth import AuthCode, AuthError, Claims, check_join, create_token, verify_token
from ..config import ServerConfig


def create_ticket(token: str, claims: Claims, keys: Mapping[str, str], ttl: float) -> str:
    """A ticket for the already verified ``token`` (whose claims are ``claims``)."""
    now = time.time()
    expires = jwt.decode(token, options={"verify_signature": False}).get("exp", now + ttl)
    lifetime = min(ttl, expires - now)
    return create_token(
        claims.api_key, keys[claims.api_key], claims.identity, claims.video,
        name=claims.name, metadata=claims.metadata, ttl=lifetime, now=now, session_exp=claims.expires_at,
    )


def ticket_for_join(config: ServerConfig, token: Optional[str], room: str) -> Optional[str]:
    """The ticket for a join's ``token`` (None on an open server); raises
    AuthError, with the join's own error codes, for a token that may not join."""
    if config.open:
        return None
    if not token:
        raise AuthError(AuthCode.TOKEN_REQUIRED, "this server requires an access token in join")
    claims = verify_token(token, config.keys)
    check_join(claims, room)
    return create_ticket(token, claims, config.keys, config.cluster.ticket_ttl)
