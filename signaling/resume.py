"""Resume tokens: how a client whose connection dropped proves, on a new
WebSocket, that it is the participant it was.

A token names the room, the participant and the participant's generation
(how many times it resumed), signed with a secret of this server process
(HMAC-SHA256).  It is good for one resume: resuming bumps the generation,
and the new join_response carries the next token.  Access grants are not in
the token: they stay with the participant (``Participant.attachment``), so a
resumed client has exactly the permissions its join had.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Optional

from sfu.participant import Participant
from sfu.room import RoomRegistry

from .protocol import ErrorCode


class ResumeError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ResumeTokens:
    def __init__(self, secret: Optional[bytes] = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def issue(self, room: str, participant: Participant) -> str:
        payload = _b64(json.dumps(
            {"r": room, "p": participant.id, "g": participant.generation}, separators=(",", ":")
        ).encode())
        return f"{payload}.{self._sign(payload)}"

    def check(self, token: str, room: str, rooms: RoomRegistry) -> Participant:
        """The participant a token may resume; ResumeError says why not."""
        claims = self._verify(token)
        if claims["r"] != room:
            raise ResumeError(ErrorCode.RESUME_WRONG_ROOM, "this resume token is for another room")
        current = rooms.rooms.get(room)
        participant = current.participants.get(claims["p"]) if current else None
        if participant is None:
            raise ResumeError(
                ErrorCode.RESUME_EXPIRED, "the participant has left (its grace period ended): join again"
            )
        if claims["g"] != participant.generation:
            raise ResumeError(ErrorCode.RESUME_TOKEN_USED, "this resume token was already used")
        return participant

    def _verify(self, token: str) -> dict:
        payload, _, signature = token.partition(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise ResumeError(ErrorCode.RESUME_TOKEN_INVALID, "not a resume token of this server")
        try:
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            assert isinstance(claims["r"], str) and isinstance(claims["p"], str)
            assert isinstance(claims["g"], int)
        except (ValueError, KeyError, TypeError, AssertionError):
            raise ResumeError(ErrorCode.RESUME_TOKEN_INVALID, "malformed resume token") from None
        return claims

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()[:18])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
