"""Access tokens: HS256 JWTs signed with an API key/secret pair.

A token names its API key in ``iss`` and the participant's identity in
``sub``; ``name``, ``metadata``, ``exp`` and ``nbf`` are standard claims and
``video`` holds the grants, modeled on LiveKit's VideoGrant (camelCase keys,
so LiveKit-style tokens read the same).  The server holds several key/secret
pairs; any of them may sign.  In ``--dev`` mode a separate development key
(``DEV_KEY``, its secret made up at start) signs the demo page's tokens; a
token of that key carries only join grants.

Claims are read strictly: grants are JSON booleans and strings, ``sub`` a
non-empty string, ``exp`` a number (``nbf``, ``iat`` too when present).
``nbf`` and ``exp`` allow ``LEEWAY`` seconds of clock skew.
"""

from __future__ import annotations

import time
from typing import Literal, Mapping, Optional

import jwt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ALGORITHM = "HS256"
MIN_SECRET_LENGTH = 32
DEFAULT_TTL = 6 * 3600
#: Seconds of clock skew allowed on ``nbf`` and ``exp``.
LEEWAY = 10
#: The key name of ``--dev`` tokens; no configured key may take it.
DEV_KEY = "pysfu-dev"
_NUMERIC_CLAIMS = ("exp", "nbf", "iat", "session_exp")
#: Claim of a redirect ticket: the ``exp`` of the token it was made from.
SESSION_EXP = "session_exp"

Source = Literal["camera", "microphone", "screen_share"]


class AuthCode:
    """Error codes for token problems (signaling ``error`` and admin API)."""

    TOKEN_REQUIRED = "token_required"
    TOKEN_MALFORMED = "token_malformed"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_NOT_YET_VALID = "token_not_yet_valid"
    BAD_SIGNATURE = "token_bad_signature"
    UNKNOWN_KEY = "token_unknown_key"
    WRONG_ROOM = "token_wrong_room"
    PERMISSION_DENIED = "permission_denied"


class AuthError(Exception):
    """A token was refused; ``code`` is one of :class:`AuthCode`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class VideoGrant(BaseModel):
    """What the bearer may do (LiveKit's VideoGrant, same field names)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", strict=True)

    room: str = ""
    room_join: bool = Field(False, alias="roomJoin")
    room_create: bool = Field(False, alias="roomCreate")
    room_admin: bool = Field(False, alias="roomAdmin")
    room_list: bool = Field(False, alias="roomList")
    can_publish: bool = Field(True, alias="canPublish")
    can_subscribe: bool = Field(True, alias="canSubscribe")
    can_publish_data: bool = Field(True, alias="canPublishData")
    #: Sources the bearer may publish; empty means any.
    can_publish_sources: list[Source] = Field(default_factory=list, alias="canPublishSources")
    hidden: bool = False

    def may_publish_source(self, source: str) -> bool:
        return self.can_publish and (not self.can_publish_sources or source in self.can_publish_sources)

    @property
    def admin_api(self) -> bool:
        """Any grant of the admin API (roomAdmin, roomCreate, roomList)."""
        return self.room_admin or self.room_create or self.room_list


class Claims(BaseModel):
    """A verified token."""

    model_config = ConfigDict(strict=True)

    api_key: str
    identity: str = ""
    name: str = ""
    metadata: str = ""
    video: VideoGrant = Field(default_factory=VideoGrant)
    #: Unix time the bearer's access ends (the token's ``exp``; a redirect
    #: ticket's ``session_exp``): no resume after it.  None: never (open server).
    expires_at: Optional[float] = None


def create_token(
    api_key: str,
    secret: str,
    identity: str,
    grant: VideoGrant,
    name: str = "",
    metadata: str = "",
    ttl: float = DEFAULT_TTL,
    not_before: Optional[float] = None,
    now: Optional[float] = None,
    session_exp: Optional[float] = None,
) -> str:
    """Mint a signed token for ``identity`` valid for ``ttl`` seconds;
    ``session_exp``: when the session it opens loses its access, if later
    (a short-lived redirect ticket carries its original token's ``exp``)."""
    now = time.time() if now is None else now
    claims = {
        "iss": api_key,
        "sub": identity,
        "iat": int(now),
        "nbf": int(now if not_before is None else not_before),
        "exp": int(now + ttl),
        "video": grant.model_dump(by_alias=True, exclude_defaults=True),
    }
    if name:
        claims["name"] = name
    if metadata:
        claims["metadata"] = metadata
    if session_exp is not None:
        claims[SESSION_EXP] = int(session_exp)
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(token: str, keys: Mapping[str, str], leeway: float = LEEWAY) -> Claims:
    """Check a token's key, signature, validity window and claim types; return its claims."""
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise AuthError(AuthCode.TOKEN_MALFORMED, "the token is not a valid JWT") from None
    api_key = unverified.get("iss")
    if not isinstance(api_key, str) or api_key not in keys:
        raise AuthError(AuthCode.UNKNOWN_KEY, "the token names an unknown API key")
    try:
        claims = jwt.decode(
            token, keys[api_key], algorithms=[ALGORITHM], leeway=leeway,
            options={"require": ["exp", "sub"]},
        )
    except jwt.InvalidSignatureError:
        raise AuthError(AuthCode.BAD_SIGNATURE, "the token's signature does not match its key") from None
    except jwt.ExpiredSignatureError:
        raise AuthError(AuthCode.TOKEN_EXPIRED, "the token has expired") from None
    except jwt.ImmatureSignatureError:
        raise AuthError(AuthCode.TOKEN_NOT_YET_VALID, "the token is not valid yet (nbf)") from None
    except jwt.PyJWTError as exc:
        raise AuthError(AuthCode.TOKEN_MALFORMED, f"the token is invalid: {exc}") from None
    verified = _claims(api_key, claims)
    if api_key == DEV_KEY and verified.video.admin_api:
        raise AuthError(AuthCode.PERMISSION_DENIED, "a development token carries only join grants")
    return verified


def _claims(api_key: str, claims: dict) -> Claims:
    """Typed claims; PyJWT alone takes ``"exp": "9999999999"`` and an empty ``sub``."""
    for name in _NUMERIC_CLAIMS:
        value = claims.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AuthError(AuthCode.TOKEN_MALFORMED, f"the token's {name} claim must be a number")
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        raise AuthError(AuthCode.TOKEN_MALFORMED, "the token's sub (identity) must be a non-empty string")
    try:
        return Claims(
            api_key=api_key,
            identity=claims["sub"],
            name=claims.get("name", ""),
            metadata=claims.get("metadata", ""),
            video=VideoGrant.model_validate(claims.get("video") or {}),
            expires_at=claims.get(SESSION_EXP, claims["exp"]),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise AuthError(AuthCode.TOKEN_MALFORMED, f"the token's claims are invalid: {where}: {first['msg']}") from None


def check_join(claims: Claims, room: str) -> None:
    """Raise AuthError unless the token lets its bearer join ``room``."""
    if not claims.video.room_join:
        raise AuthError(AuthCode.PERMISSION_DENIED, "the token lacks the roomJoin grant")
    if claims.video.room != room:
        raise AuthError(AuthCode.WRONG_ROOM, f"the token is for another room, not {room!r}")


def open_claims(name: str) -> Claims:
    """Claims of a token-less participant on a server without API keys."""
    return Claims(api_key="", name=name, video=VideoGrant(roomJoin=True))
