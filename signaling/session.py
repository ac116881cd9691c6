"""One signaling client: a WebSocket, at most one participant.

Messages are handled one at a time in arrival order; everything the server
sends (responses and events) goes through one outbound queue so that the
client sees them in the order they happened.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Optional

from aiohttp import WSMsgType, web
from pydantic import BaseModel, ValidationError

from sfu.participant import Participant
from sfu.room import RoomFull, RoomRegistry
from sfu.transport import SdpError

from . import protocol as p

log = logging.getLogger(__name__)

EVENT_MODELS: dict[str, type[BaseModel]] = {
    "participant_joined": p.ParticipantJoined,
    "participant_left": p.ParticipantLeft,
    "track_published": p.TrackPublished,
    "track_unpublished": p.TrackUnpublished,
    "track_muted": p.TrackMuted,
    "subscriber_offer": p.SubscriberOffer,
    "leave": p.LeaveEvent,
}


class SignalingError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Session:
    def __init__(self, ws: web.WebSocketResponse, rooms: RoomRegistry) -> None:
        self.ws = ws
        self.rooms = rooms
        self.participant: Optional[Participant] = None
        self._outbox: asyncio.Queue[Optional[str]] = asyncio.Queue()
        self._closing = False

    async def run(self) -> None:
        writer = asyncio.ensure_future(self._write())
        try:
            async for message in self.ws:
                if message.type == WSMsgType.TEXT:
                    await self.handle(message.data)
                elif message.type == WSMsgType.BINARY:
                    self._error(None, p.ErrorCode.BAD_MESSAGE, "binary messages are not supported")
                if self._closing:
                    break
        finally:
            await self._leave("disconnected")
            self._outbox.put_nowait(None)
            try:
                await asyncio.wait_for(writer, 2)
            except (asyncio.TimeoutError, Exception):
                writer.cancel()
            await self.ws.close()

    # --- input ----------------------------------------------------------------

    async def handle(self, text: str) -> None:
        try:
            data = json.loads(text)
        except ValueError as exc:
            self._error(None, p.ErrorCode.BAD_JSON, f"invalid JSON: {exc}")
            return
        request_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(request_id, (int, str)) or isinstance(request_id, bool):
            request_id = None
        try:
            request = p.REQUEST_ADAPTER.validate_python(data)
        except ValidationError as exc:
            self._error(request_id, p.ErrorCode.BAD_MESSAGE, _describe(exc))
            return
        try:
            response = await getattr(self, f"_on_{request.type}")(request)
        except SignalingError as exc:
            self._error(request.id, exc.code, exc.message)
            return
        except SdpError as exc:
            self._error(request.id, p.ErrorCode.BAD_SDP, str(exc))
            return
        except Exception:
            log.exception("request %s failed", request.type)
            self._error(request.id, p.ErrorCode.INTERNAL, "internal error")
            return
        self._send(response)

    def _require_participant(self) -> Participant:
        if self.participant is None:
            raise SignalingError(p.ErrorCode.NOT_JOINED, "join a room first")
        return self.participant

    # --- requests -------------------------------------------------------------

    async def _on_join(self, request: p.Join) -> p.JoinResponse:
        if self.participant is not None:
            raise SignalingError(p.ErrorCode.ALREADY_JOINED, "this connection already joined")
        if request.version != p.PROTOCOL_VERSION:
            raise SignalingError(
                p.ErrorCode.UNSUPPORTED_VERSION,
                f"protocol version {request.version} is not supported (use {p.PROTOCOL_VERSION})",
            )
        room = self.rooms.get_or_create(request.room)
        try:
            self.participant = room.join(request.name, self._notify, request.auto_subscribe)
        except RoomFull:
            raise SignalingError(p.ErrorCode.ROOM_FULL, f"room {request.room!r} is full") from None
        return p.JoinResponse(
            id=request.id,
            room=room.name,
            participant=self.participant.info(),
            participants=room.roster(exclude=self.participant.id),
        )

    async def _on_publish(self, request: p.Publish) -> p.PublishResponse:
        participant = self._require_participant()
        declared = {t.mid: (t.source, t.muted) for t in request.tracks}
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
        if not participant.subscriber.awaiting_answer:
            raise SignalingError(p.ErrorCode.NO_OFFER_PENDING, "no subscriber offer is pending")
        await participant.subscriber.accept_answer(request.sdp)
        return p.Ok(id=request.id)

    async def _on_leave(self, request: p.Leave) -> p.Ok:
        self._closing = True
        await self._leave("left")
        return p.Ok(id=request.id)

    async def _on_ping(self, request: p.Ping) -> p.Pong:
        return p.Pong(id=request.id)

    # --- output ---------------------------------------------------------------

    def _notify(self, event: str, payload: dict[str, Any]) -> None:
        """Core events for this participant become protocol events."""
        self._send(EVENT_MODELS[event](**payload))
        if event == "leave":
            self._closing = True
            self.participant = None
            asyncio.ensure_future(self._close_soon())

    async def _close_soon(self) -> None:
        await asyncio.sleep(0.1)
        await self.ws.close()

    def _send(self, message: BaseModel) -> None:
        self._outbox.put_nowait(message.model_dump_json(exclude_none=True))

    def _error(self, request_id, code: str, message: str) -> None:
        self._send(p.Error(id=request_id, code=code, message=message))

    async def _write(self) -> None:
        while True:
            text = await self._outbox.get()
            if text is None or self.ws.closed:
                return
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    async def _leave(self, reason: str) -> None:
        participant, self.participant = self.participant, None
        if participant is not None:
            await self.rooms.leave(participant, reason)


def _unknown_track(track_id: str) -> SignalingError:
    return SignalingError(p.ErrorCode.UNKNOWN_TRACK, f"no track {track_id!r} in this room")


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(x) for x in error["loc"]) or "message"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
