"""The client: one WebSocket to the server, a publisher and a subscriber
peer connection, requests answered by id and events kept for waiters."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import Any, Optional

import aiohttp
from aiortc import MediaStreamTrack, RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy, RTCIceTransportPolicy

from sfu.config import IceConfig
from sfu.transport import restrict_ice

from ..protocol import DROPPED as DROPPED_CLOSE
from .tracks import Feed, RemoteTrack

log = logging.getLogger(__name__)


def _codecs_of(mime_type: str) -> list:
    from aiortc import RTCRtpSender

    codecs = RTCRtpSender.getCapabilities("video").codecs
    chosen = [c for c in codecs if c.mimeType.lower() == mime_type.lower()]
    if not chosen:
        raise ValueError(f"aiortc cannot send {mime_type}")
    return chosen + [c for c in codecs if c.mimeType.lower() == "video/rtx"]


#: Redirects (issue 7: the room lives on another node) a join follows at most.
MAX_REDIRECTS = 3
CLOSE_TIMEOUT = 10.0  #: seconds the closing handshake may take (aiohttp's own ws_close)


class ClientError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Client:
    """``ice_addresses``: gather host candidates on these addresses only (no
    STUN/TURN).  ``ice_transport_policy="relay"``: only relay candidates from
    the TURN server that join_response names (aiortc uses the first one)."""

    def __init__(
        self,
        url: str,
        ice_addresses: Optional[list[str]] = None,
        timeout: float = 10,
        ice_transport_policy: str = "all",
    ) -> None:
        self.url = url
        self.ice = IceConfig(addresses=ice_addresses or [])
        self.ice_transport_policy = RTCIceTransportPolicy(ice_transport_policy)
        #: From join_response.ice_servers; used by both peer connections.
        self.ice_servers: list[RTCIceServer] = []
        self.timeout = timeout
        self.participant_id: Optional[str] = None
        self.roster: dict[str, dict] = {}
        self.events: list[dict] = []
        #: The tracks the server sends us now, by track id (see _follow_offer).
        self.remote_tracks: dict[str, RemoteTrack] = {}
        self._feeds: dict[str, Feed] = {}  # by mid
        self._gone: set[str] = set()  # track ids announced gone, maybe still in a queued offer
        #: Slot subscription (join with ``slots``): the track received on each
        #: slot m-line, and what each slot carries now (from slots_changed).
        self.slot_tracks: dict[str, MediaStreamTrack] = {}
        self.slots: list[dict] = []
        self.publisher: Optional[RTCPeerConnection] = None
        self.subscriber = self._new_subscriber()
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future] = {}
        self._offers: asyncio.Queue = asyncio.Queue()
        self._event_waiters: list[tuple[str, asyncio.Future]] = []
        self._track_arrived = asyncio.Event()
        self._session: Optional[aiohttp.ClientSession] = None
        self._ws: Optional[aiohttp.ClientWebSocketResponse] = None
        self._tasks: list[asyncio.Task] = []
        self._reader: Optional[asyncio.Task] = None
        self.closed = asyncio.Event()
        self.room: Optional[str] = None
        self.resume_token: Optional[str] = None
        self.published: list[dict] = []  # track infos from publish_response, in order
        self._video_codec: Optional[str] = None

    async def __aenter__(self) -> "Client":
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _new_pc(self) -> RTCPeerConnection:
        return RTCPeerConnection(RTCConfiguration(
            iceServers=list(self.ice_servers),
            iceTransportPolicy=self.ice_transport_policy,
            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
        ))

    def _new_subscriber(self) -> RTCPeerConnection:
        pc = self._new_pc()
        pc.on("track", self._on_track)
        return pc

    def _use_ice_servers(self, join_response: dict) -> None:
        """Take the join's STUN/TURN servers; runs before any subscriber
        offer is handled, while the subscriber PC is still unused."""
        self.ice_servers = [RTCIceServer(**server) for server in join_response.get("ice_servers", [])]
        if self.ice_servers:
            unused, self.subscriber = self.subscriber, self._new_subscriber()
            self._tasks.append(asyncio.ensure_future(unused.close()))

    def _restrict(self, pc: RTCPeerConnection) -> None:
        # Host candidates on the chosen addresses, no STUN/TURN; left to aioice
        # for relay-only (TURN allocations) or STUN/TURN without chosen addresses.
        if self.ice_transport_policy == RTCIceTransportPolicy.ALL and (self.ice.addresses or not self.ice_servers):
            restrict_ice(pc, self.ice)

    # --- connection -----------------------------------------------------------

    async def connect(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(self.url)
        self._start_tasks()

    def _start_tasks(self) -> None:
        self._reader = asyncio.ensure_future(self._read())
        self._tasks = [self._reader, asyncio.ensure_future(self._answer_offers())]

    async def _reconnect(self, url: str) -> None:
        """Move the signaling connection to ``url`` (before joining only)."""
        await self._close_socket()
        self.url = url
        self.closed.clear()
        self._ws = await self._session.ws_connect(url)
        self._start_tasks()

    async def _close_socket(self) -> None:
        """The closing handshake, then the tasks.  In that order: a reader
        cancelled mid-handshake makes aiohttp abort the socket (1006), and the
        reset can cost the server what it had not read yet, a ``leave`` too."""
        if self._ws is not None:
            await self._ws.close()
            # a message that came in meanwhile leaves the handshake to the reader
            if self._reader is not None:
                await asyncio.wait({self._reader}, timeout=CLOSE_TIMEOUT)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def send_raw(self, text: str) -> None:
        await self._ws.send_str(text)

    async def request(self, message: dict) -> dict:
        """Send a request; return its response or raise ClientError."""
        message = dict(message)
        message.setdefault("id", next(self._ids))
        future = asyncio.get_running_loop().create_future()
        self._pending[message["id"]] = future
        await self._ws.send_str(json.dumps(message))
        try:
            response = await asyncio.wait_for(future, self.timeout)
        finally:
            self._pending.pop(message["id"], None)
        if response["type"] == "error":
            raise ClientError(response["code"], response.get("message", ""))
        return response

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                self._dispatch(json.loads(message.data))
        finally:
            self.closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("signaling closed"))

    def _dispatch(self, message: dict) -> None:
        request_id = message.get("id")
        if message.get("type") == "join_response":
            self._use_ice_servers(message)
        if request_id is not None and request_id in self._pending:
            if message.get("type") == "join_response":
                # here, not in join(): events read right after it must not be overwritten
                self.roster = {p["id"]: p for p in message["participants"]}
            future = self._pending[request_id]
            if not future.done():
                future.set_result(message)
            return
        self.events.append(message)
        self._apply_event(message)
        for waiter in list(self._event_waiters):
            if waiter[0] == message["type"] and not waiter[1].done():
                waiter[1].set_result(message)
                self._event_waiters.remove(waiter)

    def _apply_event(self, event: dict) -> None:
        kind = event["type"]
        if kind == "subscriber_offer":
            self._offers.put_nowait(event)
        elif kind == "participant_joined":
            self.roster[event["participant"]["id"]] = event["participant"]
        elif kind == "participant_left":
            left = self.roster.pop(event["participant_id"], None)
            self._forget(t.track_id for t in list(self.remote_tracks.values())
                         if t.participant_id == event["participant_id"])
            self._forget(t["id"] for t in (left or {}).get("tracks", []))
        elif kind == "track_unpublished":
            owner = self.roster.get(event.get("participant_id"), {})
            owner["tracks"] = [t for t in owner.get("tracks", []) if t["id"] != event["track_id"]]
            self._forget([event["track_id"]])
        elif kind == "slots_changed":
            self.slots = event["slots"]
        elif kind == "track_published":
            track = event["track"]
            self.roster.setdefault(track["participant_id"], {"tracks": []})["tracks"].append(track)

    async def wait_event(self, event_type: str, timeout: float = 10) -> dict:
        future = asyncio.get_running_loop().create_future()
        self._event_waiters.append((event_type, future))
        return await asyncio.wait_for(future, timeout)

    # --- room -----------------------------------------------------------------

    async def join(
        self, room: str, name: str = "", auto_subscribe: bool = True, token: Optional[str] = None,
        slots: Optional[dict[str, int]] = None,
    ) -> dict:
        """Join ``room``; ``token`` is required when the server has API keys.
        ``slots`` ({"video": n, "audio": m}): slot subscription, see slot().

        When the room lives on another node, the server answers ``redirect``:
        the client reconnects there and joins with the ticket it was given
        (``self.url`` is then the owner's URL)."""
        message = {"type": "join", "room": room, "name": name, "auto_subscribe": auto_subscribe}
        if token is not None:
            message["token"] = token
        if slots is not None:
            message["slots"] = slots
        response = await self.request(message)
        for _ in range(MAX_REDIRECTS):
            if response["type"] != "redirect":
                break
            await self._reconnect(response["url"])
            if response.get("ticket"):
                message["token"] = response["ticket"]
            response = await self.request(message)
        if response["type"] == "redirect":
            raise ClientError("too_many_redirects", f"still redirected after {MAX_REDIRECTS} hops")
        self._joined(response)
        return response

    def _joined(self, response: dict) -> None:
        self.room = response["room"]
        self.participant_id = response["participant"]["id"]
        self.resume_token = response.get("resume_token")

    # --- reconnect and resume -------------------------------------------------

    async def disconnect(self) -> None:
        """Drop everything as a network loss would: no ``leave``, the socket
        and both peer connections just go."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._ws is not None:
            await self._ws.close(code=DROPPED_CLOSE)  # a clean close would be a leave
        if self.publisher is not None:
            await self.publisher.close()
            self.publisher = None
        await self.subscriber.close()
        await self._stop_feeds()

    async def resume(self, tracks: Optional[list[MediaStreamTrack]] = None) -> dict:
        """Come back as the same participant on a new socket with fresh peer
        connections (after ``disconnect()`` or a lost connection).  ``tracks``
        are republished into the tracks published before, in the same order
        (aiortc ends a track when its peer connection closes: give new ones)."""
        if self._tasks or (self._ws is not None and not self._ws.closed):
            await self.disconnect()
        self.subscriber = self._new_pc()
        self.subscriber.on("track", self._on_track)
        await self._stop_feeds()
        self._gone.clear()
        self._offers = asyncio.Queue()
        self.closed.clear()
        await self.connect()
        response = await self.request({"type": "resume", "room": self.room, "token": self.resume_token})
        self._joined(response)
        if tracks:
            previous = self.published
            self.published = []
            await self.publish(tracks, [t["source"] for t in previous], self._video_codec,
                               track_ids=[t["id"] for t in previous])
        return response

    async def publish(
        self,
        tracks: list[MediaStreamTrack],
        sources: Optional[list[str]] = None,
        video_codec: Optional[str] = None,
        track_ids: Optional[list[str]] = None,
    ) -> list[dict]:
        """Publish tracks on the publisher PC; returns the server's track infos.

        ``video_codec`` ("video/VP8", "video/H264") restricts video to one codec.
        ``track_ids``: republish into these tracks (after a resume).
        """
        if self.publisher is None:
            self.publisher = self._new_pc()
        self._video_codec = video_codec or self._video_codec
        transceivers = [self.publisher.addTransceiver(t, direction="sendonly") for t in tracks]
        if video_codec is not None:
            for transceiver in transceivers:
                if transceiver.kind == "video":
                    transceiver.setCodecPreferences(_codecs_of(video_codec))
        self._restrict(self.publisher)
        await self.publisher.setLocalDescription(await self.publisher.createOffer())
        sources = sources or ["microphone" if t.kind == "audio" else "camera" for t in tracks]
        declared = [{"mid": tr.mid, "source": src} for tr, src in zip(transceivers, sources)]
        for item, track_id in zip(declared, track_ids or []):
            item["track_id"] = track_id
        response = await self.request(
            {"type": "publish", "sdp": self.publisher.localDescription.sdp, "tracks": declared}
        )
        await self.publisher.setRemoteDescription(RTCSessionDescription(response["sdp"], "answer"))
        by_mid = {t.get("mid"): t for t in response["tracks"]}
        tracks_out = [by_mid[d["mid"]] for d in declared if d["mid"] in by_mid]
        self.published.extend(tracks_out)
        return tracks_out

    async def _answer_offers(self) -> None:
        while not self.closed.is_set():
            offer = await self._offers.get()
            try:
                await self.subscriber.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
                self._follow_offer(offer["tracks"])
                self._restrict(self.subscriber)
                await self.subscriber.setLocalDescription(await self.subscriber.createAnswer())
                await self.request({"type": "subscriber_answer", "sdp": self.subscriber.localDescription.sdp})
            except (ClientError, ConnectionError, asyncio.TimeoutError) as exc:
                if not self.closed.is_set():
                    log.warning("subscriber negotiation failed: %s", exc)

    def _follow_offer(self, mapping: list[dict]) -> None:
        """Make remote_tracks what the offer's complete mid → track mapping
        says. A recycled mid with another track id gets a new RemoteTrack (the
        old one ends); a mid no longer listed carries nothing."""
        by_mid = {t["mid"]: t for t in mapping if t["track_id"] not in self._gone}
        self._gone &= {t["track_id"] for t in mapping}  # later offers cannot list the rest
        for transceiver in self.subscriber.getTransceivers():
            receiver, info = transceiver.receiver, by_mid.get(transceiver.mid)
            feed = self._feeds.get(transceiver.mid)
            if info is None:
                if feed is not None:
                    feed.carry(None)
                continue
            if receiver.track is None:
                continue
            if feed is None or feed.receiver is not receiver:
                feed = self._feeds[transceiver.mid] = Feed(receiver)
            if feed.remote is None or feed.remote.track_id != info["track_id"]:
                feed.carry(RemoteTrack(receiver, transceiver.mid, info["track_id"], info["participant_id"]))
        self._publish_remote_tracks()

    def _forget(self, track_ids) -> None:
        """Tracks the server announced gone: drop them now, and from any offer
        already queued that still lists them."""
        track_ids = set(track_ids)
        self._gone |= track_ids
        for feed in self._feeds.values():
            if feed.remote is not None and feed.remote.track_id in track_ids:
                feed.carry(None)
        self._publish_remote_tracks()

    def _publish_remote_tracks(self) -> None:
        self.remote_tracks = {f.remote.track_id: f.remote for f in self._feeds.values() if f.remote is not None}
        self._track_arrived.set()

    def slot_of(self, participant_id: str, kind: str) -> Optional[MediaStreamTrack]:
        """The received track of the slot now carrying ``participant_id``'s ``kind``."""
        for slot in self.slots:
            if slot.get("participant_id") == participant_id and slot["kind"] == kind:
                return self.slot_tracks.get(slot["mid"])
        return None

    def _on_track(self, track: MediaStreamTrack) -> None:
        for transceiver in self.subscriber.getTransceivers():
            if transceiver.receiver.track is track:
                self.slot_tracks[transceiver.mid] = track

    async def wait_tracks(self, count: int, timeout: float = 10) -> list[RemoteTrack]:
        """Wait until at least ``count`` remote tracks are received."""
        async def until() -> None:
            while len(self.remote_tracks) < count:
                self._track_arrived.clear()
                await self._track_arrived.wait()

        await asyncio.wait_for(until(), timeout)
        return list(self.remote_tracks.values())

    async def _stop_feeds(self) -> None:
        feeds, self._feeds = list(self._feeds.values()), {}
        for feed in feeds:
            feed.task.cancel()
        await asyncio.gather(*(feed.task for feed in feeds), return_exceptions=True)
        self.remote_tracks = {}

    async def send_data(self, payload: str, topic: str = "", to: Optional[list[str]] = None) -> None:
        """Send a ``data`` event to the room (or only to the identities ``to``)."""
        await self.request({"type": "send_data", "payload": payload, "topic": topic,
                            "destination_identities": to or []})

    async def leave(self) -> None:
        try:
            await self.request({"type": "leave"})
        except (ClientError, ConnectionError, asyncio.TimeoutError):
            pass

    async def close(self) -> None:
        self.closed.set()  # wait_for may swallow a cancel: loops check this too
        await self._close_socket()
        if self._session is not None:
            await self._session.close()
        if self.publisher is not None:
            await self.publisher.close()
        await self.subscriber.close()
        await self._stop_feeds()
