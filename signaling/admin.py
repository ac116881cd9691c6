"""Admin REST API under /api, for the operator's backend.

Every request carries ``Authorization: Bearer <token>``, a token minted with
one of the server's API keys (`pysfu token create --admin ...`) whose grants
allow the action: ``roomList`` to list rooms, ``roomCreate`` to create or
delete them, ``roomAdmin`` for everything inside a room.  A token that names
a ``room`` acts on that room only: it creates, deletes and administers only
it, and lists nothing (listing shows every room of the server).  Errors are JSON:
``{"error": {"code": "...", "message": "..."}}``.

The route table below drives both the router and /api/openapi.json, so the
document always lists exactly the routes that exist.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Optional

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from sfu import events, recording_files
from sfu.recorder import NothingToRecord, TooManyRecordings, UnknownTrack
from sfu.room import Room, RoomRegistry
from sfu.transcription.room_transcription import TranscriptionError
from sfu.transcription.transcript import FILES as TRANSCRIPT_FILES, find_transcript_file

from .auth import AuthCode, AuthError, Claims, verify_token
from .config import ServerConfig
from .http_errors import ErrorResponse, error_response
from .protocol import Language, ParticipantInfo, RecordingInfo, RecordingKind, TrackInfo, TranscriptionInfo
from .scaling.cluster import Cluster, ClusterError, NodeInfo, api_url
from .scaling.forward import Forwarder, forwarded

Handler = Callable[[web.Request, Optional[BaseModel]], Awaitable[web.StreamResponse]]


# --- bodies -------------------------------------------------------------------


class RoomInfo(BaseModel):
    name: str
    num_participants: int
    max_participants: int
    metadata: str
    created_at: int
    #: The node that owns the room; empty on a single node without Redis.
    node: str = ""


class RoomList(BaseModel):
    rooms: list[RoomInfo]


class NodeList(BaseModel):
    nodes: list[NodeInfo]


class CreateRoom(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    max_participants: Optional[int] = Field(default=None, ge=1)
    metadata: str = Field(default="", max_length=65536)


class UpdateRoom(BaseModel):
    metadata: str = Field(max_length=65536)


class ParticipantList(BaseModel):
    participants: list[ParticipantInfo]


class UpdateParticipant(BaseModel):
    name: Optional[str] = Field(default=None, max_length=128)
    metadata: Optional[str] = Field(default=None, max_length=65536)


class MuteTrack(BaseModel):
    muted: bool


class SendData(BaseModel):
    payload: str = Field(max_length=65536)
    topic: str = Field(default="", max_length=256)
    #: Only these identities get it; empty: everyone in the room.
    destination_identities: list[str] = Field(default_factory=list)


class DataSent(BaseModel):
    recipients: int


# --- errors and authorization -----------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _claims(request: web.Request, config: ServerConfig) -> Claims:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise ApiError(401, AuthCode.TOKEN_REQUIRED, "send Authorization: Bearer <admin token>")
    if config.open:
        raise ApiError(401, AuthCode.UNKNOWN_KEY, "the server has no API keys configured")
    try:
        return verify_token(header[7:].strip(), config.keys)
    except AuthError as exc:
        raise ApiError(401, exc.code, exc.message) from None


def _authorize(claims: Claims, grant: str, room: Optional[str]) -> None:
    """``room``: the room the request acts on; None for a server-wide one (a list)."""
    video = claims.video
    in_scope = not video.room or video.room == room
    allowed = {
        "roomList": (video.room_list or video.room_admin) and not video.room,
        "roomCreate": video.room_create and in_scope,
        "roomAdmin": video.room_admin and in_scope,
    }[grant]
    if not allowed:
        where = f" for room {room!r}" if room else ""
        raise ApiError(403, AuthCode.PERMISSION_DENIED, f"the token lacks the {grant} grant{where}")


# --- routes -------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    grant: str
    summary: str
    body: Optional[type[BaseModel]] = None
    response: Optional[type[BaseModel]] = None
    status: int = 200
    errors: tuple[int, ...] = ()


def _registry(request: web.Request) -> RoomRegistry:
    return request.app[ADMIN_STATE].rooms


def _room(request: web.Request) -> Room:
    name = request.match_info["room"]
    room = _registry(request).rooms.get(name)
    if room is None:
        raise ApiError(404, "room_not_found", f"no room {name!r}")
    return room


def _participant(request: web.Request):
    room = _room(request)
    participant = room.find_identity(request.match_info["identity"])
    if participant is None or not participant.local:  # a remote one is acted on by its own worker
        raise ApiError(404, "participant_not_found", f"no participant {request.match_info['identity']!r} in {room.name!r}")
    return room, participant


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(), status=status)


async def list_rooms(request: web.Request, body: None) -> web.Response:
    """Every room of the cluster: this node's as they are now, the others'
    as of their last heartbeat."""
    cluster = request.app[ADMIN_STATE].cluster
    node = cluster.id if cluster else ""
    rooms = [RoomInfo(**room.summary(), node=node) for room in _registry(request).rooms.values()]
    if cluster is not None:
        for other in await cluster.nodes():
            if other.id != cluster.id:
                rooms += [RoomInfo(**{**room, "node": other.id}) for room in other.rooms]
    return _json(RoomList(rooms=rooms))


async def list_nodes(request: web.Request, body: None) -> web.Response:
    """The live nodes of the cluster with their load; a lone node without
    Redis lists itself."""
    state = request.app[ADMIN_STATE]
    if state.cluster is not None:
        return _json(NodeList(nodes=await state.cluster.nodes()))
    rooms = [room.summary() for room in state.rooms.rooms.values()]
    url = state.config.node_url
    lone = NodeInfo(id=state.config.cluster.node_id or "local", url=url, api=api_url(url), rooms=rooms,
                    participants=sum(r["num_participants"] for r in rooms))
    return _json(NodeList(nodes=[lone]))


async def create_room(request: web.Request, body: CreateRoom) -> web.Response:
    _authorize(request[CLAIMS], "roomCreate", body.name)
    registry = _registry(request)
    if body.name in registry.rooms:
        raise ApiError(409, "room_exists", f"room {body.name!r} already exists")
    room = registry.create(body.name, body.max_participants, body.metadata)
    return _json(RoomInfo(**room.summary()), 201)


async def delete_room(request: web.Request, body: None) -> web.Response:
    await _registry(request).delete(_room(request), "room_deleted")
    return web.Response(status=204)


async def update_room(request: web.Request, body: UpdateRoom) -> web.Response:
    room = _room(request)
    room.set_metadata(body.metadata)
    return _json(RoomInfo(**room.summary()))


async def list_participants(request: web.Request, body: None) -> web.Response:
    room = _room(request)
    infos = [ParticipantInfo(**p.info()) for p in room.participants.values()]
    return _json(ParticipantList(participants=infos))


async def get_participant(request: web.Request, body: None) -> web.Response:
    _, participant = _participant(request)
    return _json(ParticipantInfo(**participant.info()))


async def remove_participant(request: web.Request, body: None) -> web.Response:
    room, participant = _participant(request)
    await room.remove(participant, "removed")
    return web.Response(status=204)


async def update_participant(request: web.Request, body: UpdateParticipant) -> web.Response:
    room, participant = _participant(request)
    room.update_participant(participant, body.name, body.metadata)
    return _json(ParticipantInfo(**participant.info()))


async def mute_track(request: web.Request, body: MuteTrack) -> web.Response:
    room, participant = _participant(request)
    track_id = request.match_info["track_id"]
    track = participant.tracks.get(track_id)
    if track is None:
        raise ApiError(404, "track_not_found", f"no track {track_id!r} published by this participant")
    if track.muted != body.muted:
        track.muted = body.muted
        room.track_muted(participant, track)
        participant.notify(events.TrackMuted(track.id, participant.id, body.muted))
    return _json(TrackInfo(**track.info()))


async def send_data(request: web.Request, body: SendData) -> web.Response:
    count = _room(request).send_data(body.payload, body.topic, body.destination_identities)
    return _json(DataSent(recipients=count))


# --- recording (issue 8) --------------------------------------------------------


class StartRecording(BaseModel):
    #: "composite": the meeting as one MP4 (the default); "tracks": the tracks
    #: as they are, in one WebM/Matroska (the default when track_ids is given).
    kind: Optional[RecordingKind] = None
    #: Only these tracks ("tracks" only); absent: every track published in the room now.
    track_ids: Optional[list[str]] = None


class RoomRecordingInfo(RecordingInfo):
    """The WebSocket's RecordingInfo, and where it is."""

    #: The same as recording_id (the admin API's name for it before it shared the model).
    id: str
    room: str
    #: Names of its files so far, in the same directory ("tracks": one more per later track).
    files: list[str] = []


class RecordingList(BaseModel):
    recordings: list[RoomRecordingInfo]


async def start_recording(request: web.Request, body: StartRecording) -> web.Response:
    try:
        recording = _room(request).recordings.record(body.kind, body.track_ids)
    except UnknownTrack as exc:
        raise ApiError(404, "track_not_found", str(exc)) from None
    except NothingToRecord as exc:
        raise ApiError(409, "nothing_to_record", str(exc)) from None
    except TooManyRecordings as exc:
        raise ApiError(409, "too_many_recordings", str(exc)) from None
    return _json(RoomRecordingInfo.of(recording.info()), 201)


async def stop_recording(request: web.Request, body: None) -> web.Response:
    """Stop every recording of the room; answers once the files are complete."""
    stopped = await _room(request).recordings.stop()
    if not stopped:
        raise ApiError(404, "not_recording", "the room is not being recorded")
    return _json(RecordingList(recordings=[RoomRecordingInfo.of(r.info()) for r in stopped]))


# --- transcription: live captions and a transcript --------------------------------


class StartTranscription(BaseModel):
    #: The room's spoken language (ISO 639-1, e.g. "fr"); absent: the server's default.
    language: Optional[Language] = None


class RoomTranscriptionInfo(TranscriptionInfo):
    """The WebSocket's TranscriptionInfo, and how far it got."""

    #: The same as transcription_id (the admin API's name for it before it shared the model).
    id: str
    room: str
    #: Final captions so far (all of them once stopped).
    captions: int = 0
    #: Where to download the transcript (complete once transcription stopped).
    files: list[str] = []


def _transcription_info(room_name: str, transcription) -> RoomTranscriptionInfo:
    return RoomTranscriptionInfo(
        **transcription.info(), id=transcription.id, room=room_name, captions=transcription.captions,
        files=[f"/api/rooms/{room_name}/transcripts/{transcription.id}/{name}" for name in TRANSCRIPT_FILES])


async def start_transcription(request: web.Request, body: StartTranscription) -> web.Response:
    room = _room(request)
    try:
        transcription = room.transcriptions.start(body.language)
    except TranscriptionError as exc:
        status = 501 if exc.code == "transcription_unavailable" else 409
        raise ApiError(status, exc.code, exc.message) from None
    return _json(_transcription_info(room.name, transcription), 201)


async def stop_transcription(request: web.Request, body: None) -> web.Response:
    """Stop the room's transcription; answers once its transcript is complete."""
    room = _room(request)
    transcription = await room.transcriptions.stop()
    if transcription is None:
        raise ApiError(404, "not_transcribing", "the room is not being transcribed")
    return _json(_transcription_info(room.name, transcription))


async def download_transcript(request: web.Request, body: None) -> web.StreamResponse:
    """A transcript file, also after its room has ended."""
    name = request.match_info["room"]
    path = find_transcript_file(_registry(request).config.transcript_dir, request.match_info["transcript_id"],
                                name, request.match_info["file"])
    if path is None:
        if name not in _registry(request).rooms:
            raise ApiError(404, "room_not_found", f"no room {name!r} and no such transcript of it")
        raise ApiError(404, "transcript_not_found", "no such transcript file of this room")
    kind = "text/vtt" if path.suffix == ".vtt" else "text/plain"
    return web.Response(body=path.read_bytes(), content_type=kind, charset="utf-8")


STATUS_TEXT_TRANSCRIPTION = {501: "Transcription is not installed on this server"}
class RecordingFile(BaseModel):
    """A finished recording of the room, on this server's disk."""

    id: str
    room: str
    kind: str
    file: str  # its (main) file's name in the recording directory
    files: list[str] = []  # all its files' names (download one with ?file=)
    track_ids: list[str] = []
    duration: float = 0
    size: int = 0
    started_at: float = 0  # Unix seconds
    finished_at: float = 0


class RecordingFileList(BaseModel):
    recordings: list[RecordingFile]
    #: Recordings of the room still in progress (listed once finished).
    in_progress: list[str] = []


def _recording_dir(request: web.Request) -> str:
    return request.app[ADMIN_STATE].rooms.config.recording_dir


async def list_recordings(request: web.Request, body: None) -> web.Response:
    config = request.app[ADMIN_STATE].rooms.config
    recording_files.expire(config.recording_dir, config.recording_retention_days)
    name = request.match_info["room"]
    room = request.app[ADMIN_STATE].rooms.rooms.get(name)
    return _json(RecordingFileList(
        recordings=[RecordingFile(**info) for info in recording_files.of_room(config.recording_dir, name)],
        in_progress=list(room.recordings.active) if room is not None else [],
    ))


def _finished_recording(request: web.Request) -> tuple[dict, Path]:
    room, recording_id = request.match_info["room"], request.match_info["recording_id"]
    found = recording_files.find(_recording_dir(request), room, recording_id)
    if found is None:
        live = request.app[ADMIN_STATE].rooms.rooms.get(room)
        if live is not None and recording_id in live.recordings.active:
            raise ApiError(409, "recording_in_progress", "the recording is still in progress")
        raise ApiError(404, "recording_not_found", "no finished recording with this id in this room")
    return found


async def download_recording(request: web.Request, body: None) -> web.StreamResponse:
    """The main file, or with ``?file=NAME`` another of the recording's files."""
    info, path = _finished_recording(request)
    name = request.query.get("file", info["file"])
    if name not in (info.get("files") or [info["file"]]):
        raise ApiError(404, "recording_not_found", "the recording has no such file")
    return web.FileResponse(path.with_name(name), headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def delete_recording(request: web.Request, body: None) -> web.Response:
    info, _ = _finished_recording(request)
    recording_files.delete(_recording_dir(request), info)
    return web.Response(status=204)


ROOM = "/api/rooms/{room}"
PARTICIPANT = ROOM + "/participants/{identity}"
ROUTES = [
    Route("GET", "/api/rooms", list_rooms, "roomList", "List rooms (of every node)", response=RoomList),
    Route("GET", "/api/nodes", list_nodes, "roomList", "List the live nodes and their load", response=NodeList),
    Route("POST", "/api/rooms", create_room, "roomCreate", "Create an empty room",
          CreateRoom, RoomInfo, 201, (400, 409)),
    Route("DELETE", ROOM, delete_room, "roomCreate", "Delete a room; everyone in it gets leave",
          status=204, errors=(404,)),
    Route("PATCH", ROOM, update_room, "roomAdmin", "Update room metadata",
          UpdateRoom, RoomInfo, errors=(400, 404)),
    Route("GET", ROOM + "/participants", list_participants, "roomAdmin", "List participants",
          response=ParticipantList, errors=(404,)),
    Route("GET", PARTICIPANT, get_participant, "roomAdmin", "Get one participant",
          response=ParticipantInfo, errors=(404,)),
    Route("DELETE", PARTICIPANT, remove_participant, "roomAdmin", "Remove a participant (leave reason 'removed')",
          status=204, errors=(404,)),
    Route("PATCH", PARTICIPANT, update_participant, "roomAdmin", "Update a participant's name or metadata",
          UpdateParticipant, ParticipantInfo, errors=(400, 404)),
    Route("POST", PARTICIPANT + "/tracks/{track_id}/mute", mute_track, "roomAdmin",
          "Mute or unmute a published track", MuteTrack, TrackInfo, errors=(400, 404)),
    Route("POST", ROOM + "/data", send_data, "roomAdmin", "Send a data event to the room",
          SendData, DataSent, errors=(400, 404)),
    Route("POST", ROOM + "/recording", start_recording, "roomAdmin",
          "Start recording the room's tracks (or some of them) into one file",
          StartRecording, RoomRecordingInfo, 201, (400, 404, 409)),
    Route("DELETE", ROOM + "/recording", stop_recording, "roomAdmin",
          "Stop the room's recordings; answers when the files are complete",
          response=RecordingList, errors=(404,)),
    Route("POST", ROOM + "/transcription", start_transcription, "roomAdmin",
          "Start live captions of the room (caption events) and its transcript",
          StartTranscription, RoomTranscriptionInfo, 201, (400, 404, 409, 501)),
    Route("DELETE", ROOM + "/transcription", stop_transcription, "roomAdmin",
          "Stop the room's transcription; answers when the transcript is complete",
          response=RoomTranscriptionInfo, errors=(404,)),
    Route("GET", ROOM + "/transcripts/{transcript_id}/{file}", download_transcript, "roomAdmin",
          "Download a transcript (transcript.vtt or transcript.txt), also after the room ended",
          errors=(404,)),
    Route("GET", ROOM + "/recordings", list_recordings, "roomAdmin",
          "List the room's finished recordings (and the ids of those in progress)", response=RecordingFileList),
    Route("GET", ROOM + "/recordings/{recording_id}", download_recording, "roomAdmin",
          "Download a finished recording's file (?file=NAME: another of its files)", errors=(404, 409)),
    Route("DELETE", ROOM + "/recordings/{recording_id}", delete_recording, "roomAdmin",
          "Delete a finished recording's file", status=204, errors=(404, 409)),
]


# --- wiring -------------------------------------------------------------------


@dataclass
class AdminState:
    rooms: RoomRegistry
    config: ServerConfig
    cluster: Optional[Cluster] = None
    forwarder: Optional[Forwarder] = None


ADMIN_STATE = web.AppKey("admin", AdminState)
#: The verified claims of the request, for checks that need its body.
CLAIMS = web.RequestKey("claims", Claims)


def _wrap(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[ADMIN_STATE]
        try:
            claims = request[CLAIMS] = _claims(request, state.config)
            # A route without {room} lists, or creates the room its body names
            # (create_room checks that name against the token's room itself).
            _authorize(claims, route.grant, request.match_info.get("room", claims.video.room or None))
            body = await _read_body(request, route.body) if route.body else None
            owner = await _elsewhere(request, route, body)
            if owner is not None:
                return await state.forwarder.forward(request, owner.api)
            return await route.handler(request, body)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message)
        except ClusterError as exc:
            return error_response(503, "cluster_unavailable", str(exc))

    handle.__name__ = route.handler.__name__
    return handle


async def _elsewhere(request: web.Request, route: Route, body: Optional[BaseModel]) -> Optional[NodeInfo]:
    """The other node that must answer a request about a room, if any: the
    room's owner, or for a new room the least-loaded node."""
    cluster = request.app[ADMIN_STATE].cluster
    if cluster is None or forwarded(request):
        return None
    if route.handler is create_room:
        node = await cluster.place(body.name)
    elif "room" in request.match_info:
        node = await cluster.owner(request.match_info["room"])
    else:
        return None
    return None if node is None or cluster.is_self(node) else node


async def _read_body(request: web.Request, model: type[BaseModel]) -> BaseModel:
    try:
        data = json.loads(await request.read() or b"null")
    except ValueError:
        raise ApiError(400, "bad_json", "the body is not valid JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "body"
        raise ApiError(400, "bad_request", f"{where}: {first['msg']}") from None


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def setup_admin(app: web.Application, rooms: RoomRegistry, config: ServerConfig,
                cluster: Optional[Cluster] = None) -> None:
    """Add the /api routes to ``app``; with a cluster, requests about a room
    on another node are forwarded there."""
    app[ADMIN_STATE] = AdminState(rooms, config, cluster, Forwarder(cluster.id) if cluster else None)
    if cluster is not None:
        app.on_cleanup.append(lambda app: app[ADMIN_STATE].forwarder.close())
    for route in ROUTES:
        app.router.add_route(route.method, route.path, _wrap(route))
    app.router.add_get("/api/openapi.json", openapi)


# --- OpenAPI --------------------------------------------------------------------

STATUS_TEXT = {400: "Bad request", 401: "Missing or invalid token", 403: "Grant missing",
               404: "Not found", 409: "Conflict", 502: "The room's node did not answer",
               503: "Redis cannot be reached"}
STATUS_TEXT.update(STATUS_TEXT_TRANSCRIPTION)


def openapi_document() -> dict:
    """OpenAPI 3.1 description of ROUTES."""
    schemas: dict = {}
    paths: dict = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas)
    paths["/api/openapi.json"] = {"get": {
        "summary": "This document", "operationId": "openapi", "security": [],
        "responses": {"200": {"description": "OpenAPI document", "content": {"application/json": {}}}},
    }}
    _schema(ErrorResponse, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "pysfu admin API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearer": []}],
    }


def _operation(route: Route, schemas: dict) -> dict:
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in ("room", "identity", "track_id", "transcript_id", "file", "recording_id")
        if "{" + name + "}" in route.path
    ]
    ok: dict = {"description": "Success"}
    if route.response is not None:
        ok["content"] = {"application/json": {"schema": _schema(route.response, schemas)}}
    responses = {str(route.status): ok}
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
    cluster = {502, 503} if "{room}" in route.path or route.handler is create_room else {503}
    for status in sorted({401, 403, *route.errors, *cluster}):
        responses[str(status)] = {"description": STATUS_TEXT[status], **error}
    operation = {
        "summary": route.summary,
        "operationId": route.handler.__name__,
        "description": f"Requires the {route.grant} grant.",
        "responses": responses,
    }
    if params:
        operation["parameters"] = params
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _schema(route.body, schemas)}},
        }
    return operation


def _schema(model: type[BaseModel], schemas: dict) -> dict:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        schemas[name] = sub
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}
