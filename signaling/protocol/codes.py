"""The codes a request fails with (``error`` messages) and a session ends
with (WebSocket close codes)."""

from __future__ import annotations


class ErrorCode:
    """Machine-readable codes carried by ``error`` messages."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    UNSUPPORTED_VERSION = "unsupported_version"
    NOT_JOINED = "not_joined"
    ALREADY_JOINED = "already_joined"
    BAD_SDP = "bad_sdp"
    BAD_CANDIDATE = "bad_candidate"
    UNKNOWN_TRACK = "unknown_track"
    NOT_ALLOWED = "not_allowed"
    NO_OFFER_PENDING = "no_offer_pending"
    ROOM_FULL = "room_full"
    INTERNAL = "internal"

    # Tokens, permissions and limits (signaling/auth.py, signaling/limits.py).
    TOKEN_REQUIRED = "token_required"
    TOKEN_MALFORMED = "token_malformed"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_NOT_YET_VALID = "token_not_yet_valid"
    TOKEN_BAD_SIGNATURE = "token_bad_signature"
    TOKEN_UNKNOWN_KEY = "token_unknown_key"
    TOKEN_WRONG_ROOM = "token_wrong_room"
    PERMISSION_DENIED = "permission_denied"
    MESSAGE_TOO_LARGE = "message_too_large"
    RATE_LIMITED = "rate_limited"
    SDP_TOO_LARGE = "sdp_too_large"
    TOO_MANY_TRACKS = "too_many_tracks"
    TOO_MANY_JOINS = "too_many_joins"
    SERVER_DRAINING = "server_draining"
    #: HTTP answers to a WebSocket upgrade when the connection caps are reached.
    SERVER_FULL = "server_full"
    TOO_MANY_CONNECTIONS = "too_many_connections"

    # Many nodes through Redis (issue 7, signaling/scaling/cluster.py).
    CLUSTER_UNAVAILABLE = "cluster_unavailable"

    # Reconnect and resume (``resume``).
    RESUME_TOKEN_INVALID = "resume_token_invalid"
    RESUME_TOKEN_USED = "resume_token_used"
    RESUME_WRONG_ROOM = "resume_wrong_room"
    RESUME_EXPIRED = "resume_expired"

    # Recording.
    TOO_MANY_RECORDINGS = "too_many_recordings"

    # Transcription (the ``transcription`` extra).
    TRANSCRIPTION_UNAVAILABLE = "transcription_unavailable"
    TOO_MANY_TRANSCRIPTIONS = "too_many_transcriptions"
    ALREADY_TRANSCRIBING = "already_transcribing"
    NOT_TRANSCRIBING = "not_transcribing"


class CloseCode:
    """WebSocket close codes the server ends a session with (the close
    reason is the name in lower case)."""

    #: No ``join`` or ``resume`` within ``limits.join_timeout`` seconds.
    JOIN_TIMEOUT = 4001
    #: The client read too slowly: its messages overflowed ``limits.outbox_bytes``.
    SLOW_CONSUMER = 4002

    REASONS = {JOIN_TIMEOUT: "join_timeout", SLOW_CONSUMER: "slow_consumer"}


#: Close codes a client sends when it ends its session (normal closure, going
#: away). A dropped connection has none (1006); pysfu.js closes with DROPPED
#: when it goes on to resume, and the front relays a drop to a worker so.
CLIENT_LEFT = (1000, 1001)
DROPPED = 4000
