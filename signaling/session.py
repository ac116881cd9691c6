"""One signaling client: a WebSocket, at most one participant.

Messages are handled one at a time in arrival order; everything the server
sends (responses and events) goes through one outbound queue so that the
client sees them in the order they happened.  The queue is bounded
(signaling/outbox.py): a client that reads too slowly first loses the
droppable events (DROPPABLE), then its socket (close code 4002).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Callable, Optional

from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import BaseModel, ValidationError

from sfu import events
from sfu.layer_selector import TrackSettings
from sfu.participant import RECONNECTING, Participant
from sfu.recorder import NothingToRecord, TooManyRecordings, UnknownTrack
from sfu.room import RoomFull, RoomRegistry
from sfu.media_section import SdpError
from sfu.transcription.room_transcription import TranscriptionError

from . import protocol as p
from .auth import AuthError, Claims, check_join, open_claims, verify_token
from .config import ServerConfig
from .ice_servers import ice_servers_for
from .limits import JoinLimiter, TokenBucket, answer_limit, answer_message_limit
from .logs import bind_log_context
from .outbox import Outbox
from .permissions import check_publish, check_publish_data, check_subscribe
from .resume import ResumeError, ResumeTokens
from .scaling.cluster import Cluster, ClusterError
from .scaling.tickets import create_ticket
from .server_metrics import ServerMetrics

log = logging.getLogger(__name__)

ENDED = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)

#: Events a slow reader may lose (signaling/outbox.py): what they say is
#: either momentary or repeated later.  Everything else (responses, roster,
#: tracks, offers, slots, layers, hands, leave) is essential.
DROPPABLE = frozenset(e.type for e in (
    events.Data, events.ChatMessage, events.Reaction, events.SpeakersChanged, events.ConnectionQuality))
#: Seconds a close handshake may take before the socket is cut.
CLOSE_TIMEOUT = 2.0


class SignalingError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Session:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        rooms: RoomRegistry,
        config: Optional[ServerConfig] = None,
        address: str = "",
        joins: Optional[JoinLimiter] = None,
        draining: Callable[[], bool] = lambda: False,
        metrics: Optional[ServerMetrics] = None,
        cluster: Optional[Cluster] = None,
        resumes: Optional[ResumeTokens] = None,
        abort: Callable[[], None] = lambda: None,
    ) -> None:
        """``abort`` cuts the connection at once (no close handshake)."""
        self.ws = ws
        self.rooms = rooms
        self.participant: Optional[Participant] = None
        self._closing = False
        #: Suspended by the core (its PC closed) while this socket was still open:
        #: a ``leave`` already on its way must still end it, not leave it reconnecting.
        self._suspended: Optional[tuple[Participant, int]] = None
        self._client_left = False
        self.config = config or ServerConfig()
        self.outbox = Outbox(self.config.limits.outbox_bytes)
        self._closer: Optional[asyncio.Future] = None
        self._abort = abort
        # --- access control and limits (tokens, grants, rate limits) ---
        self.address = address
        self.claims: Optional[Claims] = None
        limits = self.config.limits
        self._joins = joins or JoinLimiter(limits.joins_per_minute)
        self._bucket = TokenBucket(limits.messages_per_second, limits.message_burst)
        self._draining = draining
        self._metrics = metrics
        self._cluster = cluster
        self._resumes = resumes or ResumeTokens()

    async def run(self) -> None:
        writer = asyncio.ensure_future(self._write())
        deadline = asyncio.get_running_loop().call_later(self.config.limits.join_timeout, self._join_deadline)
        try:
            while True:
                message = await self.ws.receive()
                if message.type == WSMsgType.CLOSE:  # its close frame: did it leave on purpose?
                    self._client_left = message.data in p.CLIENT_LEFT
                if message.type in ENDED:
                    break
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await self.handle(message.data)
                elif message.type == WSMsgType.ERROR:
                    self._closing = True  # a protocol violation ends the session: no resume
                if self._closing and self._suspended is None:
                    break  # (once suspended: read on, until the socket we close ends)
        finally:
            deadline.cancel()
            await self._detach()
            self.outbox.close()
            if not await finished_within(writer, CLOSE_TIMEOUT):
                self._abort()  # the client does not read: the rest is not sent
                await finished_within(writer, CLOSE_TIMEOUT)  # the lost connection wakes it
                writer.cancel()
            await self._close()

    # --- input ----------------------------------------------------------------

    async def handle(self, text: str | bytes) -> None:
        allowed = self._bucket.take()  # every message costs a token, valid or not
        data, problem = self._parse(text)
        request_id = p.request_id_of(data)
        if not allowed:
            self._error(request_id, p.ErrorCode.RATE_LIMITED, "too many messages: slow down")
            return
        if problem is not None:
            self._error(request_id, *problem)
            return
        try:
            request = p.REQUEST_ADAPTER.validate_python(data)
        except ValidationError as exc:
            self._error(request_id, p.ErrorCode.BAD_MESSAGE, _describe(exc))
            return
        started = time.perf_counter()
        try:
            response = await getattr(self, f"_on_{request.type}")(request)
        except (SignalingError, AuthError) as exc:
            self._error(request.id, exc.code, exc.message)
            return
        except SdpError as exc:
            self._error(request.id, p.ErrorCode.BAD_SDP, str(exc))
            return
        except Exception:
            log.exception("request %s failed", request.type)
            self._error(request.id, p.ErrorCode.INTERNAL, "internal error")
            return
        if request.type == "join" and self._metrics is not None:
            self._metrics.join_seconds.observe(time.perf_counter() - started)
        self._send(response)

    def _parse(self, text: str | bytes) -> tuple[Any, Optional[tuple[str, str]]]:
        """The message's JSON value, or the error code and text refusing it."""
        if isinstance(text, bytes):
            return None, (p.ErrorCode.BAD_MESSAGE, "binary messages are not supported")
        limit = self._message_limit()
        if len(text) > limit or len(text.encode()) > limit:
            return None, (p.ErrorCode.MESSAGE_TOO_LARGE, f"messages are limited to {limit} bytes")
        try:
            data = json.loads(text)
            json.dumps(data, ensure_ascii=False).encode()  # what we echo must encode
        except RecursionError:
            return None, (p.ErrorCode.BAD_JSON, "invalid JSON: nested too deeply")
        except UnicodeEncodeError:
            return None, (p.ErrorCode.BAD_MESSAGE, "a string holds a lone surrogate (\\ud800-\\udfff)")
        except ValueError as exc:
            return None, (p.ErrorCode.BAD_JSON, f"invalid JSON: {exc}")
        return data, None

    def _require_participant(self) -> Participant:
        if self.participant is None:
            raise SignalingError(p.ErrorCode.NOT_JOINED, "join a room first")
        return self.participant

    # --- requests -------------------------------------------------------------

    def _check_can_join(self, request: p.Join | p.Resume) -> None:
        if self.participant is not None:
            raise SignalingError(p.ErrorCode.ALREADY_JOINED, "this connection already joined")
        if request.version != p.PROTOCOL_VERSION:
            raise SignalingError(
                p.ErrorCode.UNSUPPORTED_VERSION,
                f"protocol version {request.version} is not supported (use {p.PROTOCOL_VERSION})",
            )
        if self._draining():
            raise SignalingError(p.ErrorCode.SERVER_DRAINING, "the server is shutting down")
        if not self._joins.allow(self.address):
            raise SignalingError(p.ErrorCode.TOO_MANY_JOINS, "too many joins from this address: wait a minute")

    async def _on_join(self, request: p.Join) -> p.JoinResponse | p.Redirect:
        self._check_can_join(request)
        claims = self._authorize_join(request)
        if self._cluster is not None:
            redirect = await self._redirect(request, claims)
            if redirect is not None:
                return redirect
        room = self.rooms.get_or_create(request.room)
        if not self.config.open and room.find_identity(claims.identity) is not None:
            await room.remove(room.find_identity(claims.identity), "duplicate_identity")
            room = self.rooms.get_or_create(request.room)
        grant = claims.video
        try:
            self.participant = room.join(
                claims.name or request.name, self._notify,
                request.auto_subscribe and grant.can_subscribe,
                identity=claims.identity, metadata=claims.metadata, hidden=grant.hidden,
                slots=request.slots.model_dump() if request.slots else None,
            )
        except RoomFull:
            raise SignalingError(p.ErrorCode.ROOM_FULL, f"room {request.room!r} is full") from None
        self.claims = claims
        self.participant.attachment = claims  # a resume gets the same grants
        bind_log_context(room=room.name, participant=self.participant.id)
        log.info("joined as %r", self.participant.identity)
        return self._join_response(request.id)

    async def _on_resume(self, request: p.Resume) -> p.JoinResponse:
        """The same participant on a new socket, with fresh peer connections."""
        self._check_can_join(request)
        try:
            participant = self._resumes.check(request.token, request.room, self.rooms)
        except ResumeError as exc:
            raise SignalingError(exc.code, exc.message) from None
        _check_not_expired(participant.attachment)
        room = participant.room
        await room.suspend(participant, "resumed")  # still active: its old socket is stale
        if not await room.resume(participant, self._notify):
            raise SignalingError(p.ErrorCode.RESUME_EXPIRED, "the participant has left: join again")
        self.participant = participant
        self.claims = participant.attachment
        bind_log_context(room=room.name, participant=participant.id)
        log.info("resumed as %r", participant.identity)
        return self._join_response(request.id, resumed=True)

    async def _on_refresh_token(self, request: p.RefreshToken) -> p.Ok:
        """Later requests and a resume use the new token's grants and expiry."""
        participant = self._require_participant()
        if self.config.open:
            return p.Ok(id=request.id)  # nothing expires on an open server
        claims = verify_token(request.token, self.config.keys)
        check_join(claims, participant.room.name)
        if claims.identity != self.claims.identity or claims.video.hidden != self.claims.video.hidden:
            raise SignalingError(
                p.ErrorCode.PERMISSION_DENIED, "the new token must name the same identity and hidden grant"
            )
        self.claims = participant.attachment = claims
        return p.Ok(id=request.id)

    def _join_response(self, request_id, resumed: bool = False) -> p.JoinResponse:
        participant, room = self.participant, self.participant.room
        grace = self.rooms.config.resume_grace
        return p.JoinResponse(
            id=request_id,
            room=room.name,
            participant=participant.info(),
            participants=room.roster(exclude=participant.id),
            chat_history=list(room.meeting.chat_history),
            ice_servers=ice_servers_for(self.config.ice_servers, participant.identity),
            resume_token=self._resumes.issue(room.name, participant) if grace > 0 else None,
            resume_grace=grace if grace > 0 else None,
            resumed=resumed,
            recordings=list(room.recordings.active),
        )

    async def _redirect(self, request: p.Join, claims: Claims) -> Optional[p.Redirect]:
        """A redirect to the node that owns the room, unless it is this one."""
        try:
            owner = await self._cluster.place(request.room)
        except ClusterError as exc:
            raise SignalingError(p.ErrorCode.CLUSTER_UNAVAILABLE, f"cannot place the room: {exc}") from None
        if self._cluster.is_self(owner):
            return None
        self._closing = True  # the client goes on at the owner
        ticket = None
        if not self.config.open:
            ticket = create_ticket(request.token, claims, self.config.keys, self.config.cluster.ticket_ttl)
        log.info("room %r lives on node %s: redirected", request.room, owner.id)
        return p.Redirect(id=request.id, url=owner.url, node=owner.id, ticket=ticket)

    async def _on_publish(self, request: p.Publish) -> p.PublishResponse:
        participant = self._require_participant()
        self._check_sdp_size(request.sdp)
        check_publish(self.claims.video, request.sdp, {t.mid: t.source for t in request.tracks}, self.config.limits)
        declared = {t.mid: (t.source, t.muted, t.track_id) for t in request.tracks}
        answer, added = await participant.publish(request.sdp, declared)
        tracks = [{**t.info(), "mid": t.mid} for t in added]
        return p.PublishResponse(id=request.id, sdp=answer, tracks=tracks)

    async def _on_unpublish(self, request: p.Unpublish) -> p.Ok:
        if not self._require_participant().unpublish(request.track_id):
            raise _unknown_track(request.track_id)
        return p.Ok(id=request.id)

    async def _on_mute(self, request: p.Mute) -> p.Ok:
        if not self._require_participant().set_muted(request.track_id, request.muted):
            raise _unknown_track(request.track_id)
        return p.Ok(id=request.id)

    async def _on_trickle(self, request: p.Trickle) -> p.Ok:
        participant = self._require_participant()
        side = participant.publisher if request.target == "publisher" else participant.subscriber
        try:
            await side.transport.add_candidate(
                request.candidate, request.sdp_mid, request.sdp_mline_index
            )
        except SdpError as exc:
            raise SignalingError(p.ErrorCode.BAD_CANDIDATE, str(exc)) from None
        return p.Ok(id=request.id)

    async def _on_subscribe(self, request: p.Subscribe) -> p.Ok:
        participant = self._require_participant()
        check_subscribe(self.claims.video)
        tracks = [participant.room.find_track(track_id) for track_id in request.track_ids]
        for track_id, track in zip(request.track_ids, tracks):
            if track is None:
                raise _unknown_track(track_id)
            if track.participant_id == participant.id:
                raise SignalingError(p.ErrorCode.NOT_ALLOWED, "cannot subscribe to your own track")
        for track in tracks:
            participant.subscribe(track)
        return p.Ok(id=request.id)

    async def _on_unsubscribe(self, request: p.Unsubscribe) -> p.Ok:
        participant = self._require_participant()
        for track_id in request.track_ids:
            if not participant.subscriber.subscribed(track_id):
                raise _unknown_track(track_id)
        for track_id in request.track_ids:
            participant.unsubscribe(track_id)
        return p.Ok(id=request.id)

    async def _on_subscriber_answer(self, request: p.SubscriberAnswer) -> p.Ok:
        participant = self._require_participant()
        self._check_sdp_size(request.sdp, answer_limit(self.config.limits.max_sdp_bytes, participant.subscriber))
        if not participant.subscriber.awaiting_answer:
            raise SignalingError(p.ErrorCode.NO_OFFER_PENDING, "no subscriber offer is pending")
        await participant.subscriber.accept_answer(request.sdp)
        return p.Ok(id=request.id)

    async def _on_update_track_settings(self, request: p.UpdateTrackSettings) -> p.Ok:
        participant = self._require_participant()
        settings = TrackSettings(
            quality=request.quality,
            max_width=request.max_width,
            max_height=request.max_height,
            max_fps=request.max_fps,
            paused=bool(request.paused),
        )
        if not participant.update_track_settings(request.track_id, settings):
            raise _unknown_track(request.track_id)
        return p.Ok(id=request.id)

    async def _on_set_pins(self, request: p.SetPins) -> p.Ok:
        self._require_participant().set_pins(request.participant_ids)
        return p.Ok(id=request.id)

    async def _on_leave(self, request: p.Leave) -> p.Ok:
        self._closing = True
        self._take_back_suspended()
        await self._leave("left")
        return p.Ok(id=request.id)

    async def _on_ping(self, request: p.Ping) -> p.Pong:
        return p.Pong(id=request.id)

    async def _on_send_data(self, request: p.SendData) -> p.Ok:
        participant = self._require_data_sender("data")
        participant.room.send_data(request.payload, request.topic, request.destination_identities, sender=participant)
        return p.Ok(id=request.id)

    def _require_data_sender(self, what: str) -> Participant:
        """The participant, if it may send ``what`` to the room (canPublishData, not hidden)."""
        participant = self._require_participant()
        check_publish_data(self.claims.video, what)
        return participant

    # --- meeting features: chat, reactions, raise hand (issue 8) ----------------

    async def _on_chat(self, request: p.Chat) -> p.Ok:
        participant = self._require_data_sender("chat messages")
        participant.room.meeting.chat(participant, request.text)
        return p.Ok(id=request.id)

    async def _on_reaction(self, request: p.Reaction) -> p.Ok:
        participant = self._require_data_sender("reactions")
        participant.room.meeting.react(participant, request.emoji)
        return p.Ok(id=request.id)

    async def _on_raise_hand(self, request: p.RaiseHand) -> p.Ok:
        participant = self._require_data_sender("a raised hand")
        participant.room.meeting.raise_hand(participant, request.raised)
        return p.Ok(id=request.id)

    # --- recording (issue 8) ----------------------------------------------------

    async def _on_start_recording(self, request: p.StartRecording) -> p.RecordingResponse:
        room = self._require_recording_admin()
        try:
            recording = room.recordings.record(request.kind, request.track_ids)
        except UnknownTrack as exc:
            raise _unknown_track(exc.track_id) from None
        except NothingToRecord as exc:
            raise SignalingError(p.ErrorCode.NOT_ALLOWED, str(exc)) from None
        except TooManyRecordings as exc:
            raise SignalingError(p.ErrorCode.TOO_MANY_RECORDINGS, str(exc)) from None
        return p.RecordingResponse(id=request.id, recording=p.RecordingInfo.of(recording.info()))

    async def _on_stop_recording(self, request: p.StopRecording) -> p.Ok:
        room = self._require_recording_admin()
        if not await room.recordings.stop(request.recording_id):
            raise SignalingError(p.ErrorCode.NOT_ALLOWED, "no such recording in progress")
        return p.Ok(id=request.id)

    def _require_recording_admin(self):
        participant = self._require_participant()
        if not self.config.open and not self.claims.video.room_admin:
            raise SignalingError(p.ErrorCode.PERMISSION_DENIED, "recording needs the roomAdmin grant")
        return participant.room

    # --- transcription: live captions and a transcript ---------------------------

    async def _on_start_transcription(self, request: p.StartTranscription) -> p.TranscriptionResponse:
        room = self._require_transcription_admin()
        try:
            transcription = room.transcriptions.start(request.language)
        except TranscriptionError as exc:
            raise SignalingError(exc.code, exc.message) from None
        return p.TranscriptionResponse(id=request.id, transcription=p.TranscriptionInfo(**transcription.info()))

    async def _on_stop_transcription(self, request: p.StopTranscription) -> p.Ok:
        room = self._require_transcription_admin()
        if await room.transcriptions.stop() is None:
            raise SignalingError(p.ErrorCode.NOT_TRANSCRIBING, "the room is not being transcribed")
        return p.Ok(id=request.id)

    def _require_transcription_admin(self):
        participant = self._require_participant()
        if not self.config.open and not self.claims.video.room_admin:
            raise SignalingError(p.ErrorCode.PERMISSION_DENIED, "transcription needs the roomAdmin grant")
        return participant.room

    # --- access control and limits --------------------------------------------

    def _authorize_join(self, request: p.Join) -> Claims:
        """The join's verified claims; an open server takes anyone."""
        if self.config.open:
            return open_claims(request.name)
        if not request.token:
            raise SignalingError(p.ErrorCode.TOKEN_REQUIRED, "this server requires an access token in join")
        claims = verify_token(request.token, self.config.join_keys)
        check_join(claims, request.room)
        return claims

    def _check_sdp_size(self, sdp: str, limit: Optional[int] = None) -> None:
        limit = limit or self.config.limits.max_sdp_bytes
        if len(sdp) > limit:
            raise SignalingError(p.ErrorCode.SDP_TOO_LARGE, f"SDP is limited to {limit} bytes")

    def _message_limit(self) -> int:
        """The message limit; room for the answer while a subscriber offer waits."""
        limit = self.config.limits.max_message_bytes
        subscriber = self.participant.subscriber if self.participant is not None else None
        if subscriber is None or not subscriber.awaiting_answer:
            return limit
        return max(limit, answer_message_limit(self.config.limits.max_sdp_bytes, subscriber))

    # --- output ---------------------------------------------------------------

    def _notify(self, event: events.Event) -> None:
        """Core events for this participant become protocol events."""
        self._send_text(*_event_text(event))
        if isinstance(event, (events.Leave, events.Reconnect)):
            self._closing = True
            if isinstance(event, events.Reconnect) and self.participant is not None:
                self._suspended = (self.participant, self.participant.generation)
            self.participant = None
            asyncio.ensure_future(self._close_soon())

    async def _close_soon(self) -> None:
        await asyncio.sleep(0.1)
        await self._close()

    async def _close(self, code: int = WSCloseCode.OK, reason: str = "") -> None:
        """Close the socket; one whose client does not read is cut after CLOSE_TIMEOUT.

        Not cancelled on timeout: aiohttp's writers share one drain future,
        and cancelling one waiter would cancel it for the others."""
        closing = asyncio.ensure_future(self.ws.close(code=code, message=reason.encode()))
        if not await finished_within(closing, CLOSE_TIMEOUT):
            self._abort()

    def _close_session(self, code: int) -> None:
        if self._closer is None:
            reason = p.CloseCode.REASONS[code]
            log.info("closing the connection: %s", reason)
            self._closer = asyncio.ensure_future(self._close(code, reason))

    def _join_deadline(self) -> None:
        if self.participant is None and not self._closing:
            self._closing = True
            self._close_session(p.CloseCode.JOIN_TIMEOUT)

    def _send(self, message: BaseModel) -> None:
        self._send_text(message.model_dump_json(exclude_none=True), message.type in DROPPABLE)

    def _send_text(self, text: str, droppable: bool) -> None:
        if self.outbox.put(text, droppable):
            return
        if self._metrics is not None:
            self._metrics.outbox_overflows.labels("dropped" if droppable else "closed").inc()
        if not droppable:
            # the client cannot keep up: as if its connection dropped (it may resume)
            self._close_session(p.CloseCode.SLOW_CONSUMER)

    def _error(self, request_id, code: str, message: str) -> None:
        if self._metrics is not None:
            self._metrics.errors.labels(code).inc()
        self._send(p.Error(id=request_id, code=code, message=message))

    async def _write(self) -> None:
        while True:
            text = await self.outbox.get()
            if text is None or self.ws.closed:
                return
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    async def _detach(self) -> None:
        """The socket is gone without a ``leave``: the participant waits for
        its client to resume (or leaves at once when resuming is off)."""
        if self._client_left and self._take_back_suspended():
            await self._leave("left")  # its PCs closed first, but its close frame says it left
            return
        participant = self.participant
        if participant is None or self._closing or self.rooms.config.resume_grace <= 0:
            await self._leave("disconnected")
            return
        if self._client_left:  # its own close frame said so
            await self._leave("left")
            return
        self.participant = None
        log.info("connection lost: reconnecting")
        await participant.room.suspend(participant, "disconnected")

    def _take_back_suspended(self) -> bool:
        """The core suspended this socket's participant (its PCs closed) just
        before the server read the client's ``leave`` or clean close: that
        leave is still its own, unless it resumed elsewhere meanwhile.  True
        if it took the participant back."""
        if self.participant is not None or self._suspended is None:
            return False
        participant, generation = self._suspended
        if participant.state != RECONNECTING or participant.generation != generation:
            return False
        self.participant = participant
        return True

    async def _leave(self, reason: str) -> None:
        participant, self.participant = self.participant, None
        if participant is not None:
            log.info("left (%s)", reason)
            await self.rooms.leave(participant, reason)


async def finished_within(task: asyncio.Future, timeout: float) -> bool:
    """Wait up to ``timeout`` for ``task`` without cancelling it (a send or
    close blocked on a client that does not read is cut, not cancelled)."""
    done, _ = await asyncio.wait({task}, timeout=timeout)
    return bool(done)


def _check_not_expired(claims: Optional[Claims]) -> None:
    """A resume needs the participant's access token to be still valid."""
    if claims is not None and claims.expires_at is not None and time.time() >= claims.expires_at:
        raise SignalingError(
            p.ErrorCode.TOKEN_EXPIRED, "the participant's access token has expired: join again with a new one"
        )


def _unknown_track(track_id: str) -> SignalingError:
    return SignalingError(p.ErrorCode.UNKNOWN_TRACK, f"no track {track_id!r} in this room")


def _describe(exc: ValidationError) -> str:
    """What is wrong, short: field names and tags come from the client."""
    parts = []
    for error in exc.errors(include_input=False)[:5]:
        where = ".".join(str(x) for x in error["loc"]) or "message"
        parts.append(f"{_clip(where)}: {_clip(error['msg'])}")
    return "; ".join(parts)


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


_last_event: tuple = (None, "", False)


def _event_text(event: events.Event) -> tuple[str, bool]:
    """An event's message as sent, and whether it may be dropped. A room's
    broadcast hands one event to every session in turn (150 in a big
    room): the last event's text is kept, so it is built once."""
    global _last_event
    if _last_event[0] is not event:
        message = p.event_message(event)
        _last_event = (event, message.model_dump_json(exclude_none=True), message.type in DROPPABLE)
    return _last_event[1], _last_event[2]

