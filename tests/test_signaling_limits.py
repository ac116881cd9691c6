"""What a stranger's connection may cost the server: a slow reader's queue,
idle and half-open connections, how many at once, and how long a session's
access lasts.  Each limit is hit on purpose; the others in the room carry on."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time
from contextlib import AsyncExitStack

import aiohttp
import jwt
import pytest

from signaling.app import CONNECTIONS, SERVER_METRICS, SESSIONS
from signaling.auth import VideoGrant, create_token, verify_token
from signaling.client import Client, ClientError
from signaling.outbox import Outbox
from signaling.scaling.tickets import create_ticket

from .conftest import (
    API_KEY, API_SECRET, KEYS, ROOT, ServerProcess, client_factory, free_port, free_udp_port, start_server_process,
    stop_server_process, wait_for_http,
)
from .frames import count_frames
from .media import PatternVideoTrack, ToneAudioTrack
from .prometheus import scrape
from .waiting import eventually, eventually_async

BUDGET = 64 * 1024


# --- the outbox on its own ---------------------------------------------------------


@pytest.mark.parametrize(
    "queued, text, droppable, accepted, left",
    [
        pytest.param([], "x" * 100, False, True, ["x" * 100], id="fits"),
        pytest.param([], "x" * 200, False, True, ["x" * 200], id="bigger-than-budget-when-empty"),
        pytest.param([("e" * 80, False)], "d" * 30, True, False, ["e" * 80], id="droppable-dropped-when-full"),
        pytest.param([("d" * 80, True)], "e" * 30, False, True, ["e" * 30], id="essential-evicts-droppable"),
        pytest.param([("e" * 80, False), ("d" * 10, True)], "e" * 30, False, False, ["e" * 80], id="essential-refused"),
    ],
)
async def test_outbox_keeps_its_budget(queued, text, droppable, accepted, left):
    outbox = Outbox(budget=100)
    for item, item_droppable in queued:
        outbox.put(item, item_droppable)
    assert outbox.put(text, droppable) is accepted
    outbox.close()
    got = []
    while (item := await outbox.get()) is not None:
        got.append(item)
    assert got == left and outbox.size == 0


# --- raw WebSocket clients that stop reading ---------------------------------------


def small_receive_buffer(addr_info) -> socket.socket:
    """A client socket with a 4 KiB receive buffer: a slow link."""
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


@pytest.fixture
async def raw():
    """Open raw WebSocket connections (aiohttp, no protocol logic); all closed at the end."""
    async with AsyncExitStack() as stack:

        async def connect(url: str, local: str = "127.0.0.1", stalled: bool = False):
            connector = aiohttp.TCPConnector(local_addr=(local, 0),
                                             socket_factory=small_receive_buffer if stalled else None)
            http = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
            return await stack.enter_async_context(http.ws_connect(url, autoping=False))

        yield connect


async def raw_request(ws, message: dict) -> dict:
    await ws.send_str(json.dumps(message))
    while True:
        reply = json.loads((await ws.receive(timeout=10)).data)
        if reply.get("id") == message["id"]:
            return reply


def stall(server, ws) -> None:
    """Shrink the server's send buffer for this client too, so that what it
    does not read piles up in the server's outbox, not in kernel buffers."""
    port = ws.get_extra_info("sockname")[1]
    for handler in server.runner.server.connections:
        if handler.transport is not None and handler.transport.get_extra_info("peername")[1] == port:
            handler.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            return
    raise AssertionError("no server connection for this client")


def sessions_of(server, participant_ids) -> list:
    return [s for s in server.app[SESSIONS] if s.participant is not None and s.participant.id in participant_ids]


def overflows(server, outcome: str) -> float:
    return server.app[SERVER_METRICS].outbox_overflows.labels(outcome)._value.get()


async def test_stalled_readers_lose_data_events_within_the_budget(make_server, raw):
    """One sender's 60 KB send_data fans out to three participants that stopped
    reading: each one's queue stays within its budget (the data events are
    dropped), they stay in the room, and a reading participant gets every event."""
    server = await make_server(limits={"outbox_bytes": BUDGET})
    async with client_factory(server) as clients:
        sender, reader = await clients(), await clients()
        await sender.join("fanout", "sender")
        await reader.join("fanout", "reader")
        stalled_ids, sockets = [], []
        for n in range(3):
            ws = await raw(server.url, stalled=True)
            joined = await raw_request(ws, {"type": "join", "id": "j", "room": "fanout", "name": f"stalled{n}"})
            stalled_ids.append(joined["participant"]["id"])
            sockets.append(ws)
            stall(server, ws)
        stalled = sessions_of(server, stalled_ids)
        assert len(stalled) == 3

        largest = 0
        for n in range(40):
            await sender.request({"type": "send_data", "payload": f"{n:02d}" + "x" * 60_000})
            largest = max([largest] + [s.outbox.size for s in stalled])
        await sender.request({"type": "raise_hand", "raised": True})  # essential: still gets through

        assert largest <= BUDGET
        await eventually(lambda: len([e for e in reader.events if e["type"] == "data"]) == 40, timeout=15)
        assert all(s.outbox.dropped > 0 for s in stalled)
        assert set(stalled_ids) <= set(server.rooms.rooms["fanout"].participants)
        assert overflows(server, "closed") == 0
        assert (await reader.request({"type": "ping"}))["type"] == "pong"
        # a stalled participant that reads again: fewer data events, but the raised hand
        received = []
        for _ in range(200):
            received.append(json.loads((await sockets[0].receive(timeout=10)).data)["type"])
            if received[-1] == "hand_raised":
                break
        assert received[-1] == "hand_raised" and received.count("data") < 40


async def test_a_reader_too_slow_for_essential_messages_is_disconnected(make_server, raw):
    """Requests whose answers the client never reads overflow its budget with
    essential messages: the server closes it (4002 slow_consumer, or cuts it
    when it does not read that either) as a lost connection; the room carries on."""
    server = await make_server(limits={"outbox_bytes": BUDGET, "messages_per_second": 10_000,
                                       "message_burst": 10_000})
    async with client_factory(server) as clients:
        bystander = await clients()
        await bystander.join("slow", "bystander")
        ws = await raw(server.url, stalled=True)
        joined = await raw_request(ws, {"type": "join", "id": "j", "room": "slow", "name": "slow"})
        slow_id = joined["participant"]["id"]
        stall(server, ws)
        # each answer is an essential ~1 KB bad_message error naming the five unknown keys
        noisy = {"type": "ping", **{f"{k}{'k' * 190}": 1 for k in "abcde"}}
        try:  # ~3 MB of answers: more than the client's and the kernel's buffers hold
            for n in range(3000):
                await asyncio.wait_for(ws.send_str(json.dumps({**noisy, "id": n})), 10)
        except ConnectionError:
            pass  # already cut

        state = await eventually(lambda: next((e for e in bystander.events if e["type"] == "participant_state"), None))
        assert (state["participant_id"], state["state"]) == (slow_id, "reconnecting")
        ending = None
        for _ in range(10_000):  # the backlog, then the end
            message = await ws.receive(timeout=10)
            if message.type != aiohttp.WSMsgType.TEXT:
                ending = message
                break
        if ending.type == aiohttp.WSMsgType.CLOSE:  # when it read in time to see the close
            assert (ending.data, ending.extra) == (4002, "slow_consumer")
        else:
            assert ending.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        assert overflows(server, "closed") >= 1
        await eventually(lambda: server.app[CONNECTIONS].open == 1, timeout=10)
        assert (await bystander.request({"type": "ping"}))["type"] == "pong"


@pytest.mark.slow
async def test_the_front_of_workers_cuts_a_client_that_takes_nothing(raw):
    """With --workers the front relays each client: one that stops reading is
    cut after SEND_TIMEOUT, and its participant is reconnecting, not stuck."""
    server = start_server_process(["--workers", "2"])
    try:
        async with Client(server.url, ice_addresses=["127.0.0.1"]) as sender:
            await sender.join("front", "sender")
            ws = await raw(server.url, stalled=True)
            joined = await raw_request(ws, {"type": "join", "id": "j", "room": "front", "name": "stalled"})
            stalled_id = joined["participant"]["id"]
            sent = 0
            for _ in range(1000):  # 9 MB: more than the kernel's and the client's buffers
                try:
                    await sender.request({"type": "send_data", "payload": "x" * 60_000})
                    sent += 1
                except ClientError as error:  # beyond the burst: 50 a second
                    assert error.code == "rate_limited"
                    await asyncio.sleep(0.05)
                if sent == 150:
                    break
            state = await eventually(
                lambda: next((e for e in sender.events if e["type"] == "participant_state"), None), timeout=40)
            assert (state["participant_id"], state["state"]) == (stalled_id, "reconnecting")
            await eventually_async(lambda: front_sessions_are(server, 1), timeout=20)  # its relay has ended
            assert (await sender.request({"type": "ping"}))["type"] == "pong"
    finally:
        stop_server_process(server)


async def front_sessions_are(server, count: int) -> bool:
    return (await scrape(server.http)).get("pysfu_front_sessions") == count


@pytest.mark.parametrize(
    "request_id, echoed",
    [
        pytest.param("x" * 64, True, id="64-chars"),
        pytest.param("x" * 65, False, id="65-chars"),
        pytest.param("x" * 200_000, False, id="200k-chars"),
        pytest.param(2**53 - 1, True, id="safe-integer"),
        pytest.param(2**53, False, id="unsafe-integer"),
    ],
)
async def test_request_ids_are_capped(clients, request_id, echoed):
    client = await clients()
    before = len(client.events)
    await client.send_raw(json.dumps({"type": "ping", "id": request_id}))
    reply = await eventually(lambda: next(iter(client.events[before:]), None) or client._pending.get(request_id),
                             timeout=5)
    if echoed:
        assert reply == {"type": "pong", "id": request_id}
    else:
        assert reply["type"] == "error" and reply["code"] == "bad_message" and "id" not in reply
        assert len(json.dumps(reply)) < 1000
    assert (await client.request({"type": "ping"}))["type"] == "pong"


# --- connections that never join, never finish a header, or are too many -------------


async def test_a_connection_that_does_not_join_is_closed(make_server, raw):
    server = await make_server(limits={"join_timeout": 1})
    async with client_factory(server) as clients:
        member = await clients()
        await member.join("timely", "member")
        idle = await raw(server.url)
        message = await idle.receive(timeout=10)
        assert (message.type, message.data, message.extra) == (aiohttp.WSMsgType.CLOSE, 4001, "join_timeout")
        # the member's deadline has passed too: it joined, so it stays
        assert (await member.request({"type": "ping"}))["type"] == "pong"
        await eventually(lambda: server.app[CONNECTIONS].open == 1, timeout=5)


@pytest.mark.slow
async def test_the_front_of_workers_closes_a_connection_that_does_not_join(monkeypatch, raw):
    monkeypatch.setenv("PYSFU_LIMITS__JOIN_TIMEOUT", "1")
    server = start_server_process(["--workers", "2"])
    try:
        idle = await raw(server.url)
        message = await idle.receive(timeout=15)
        assert (message.type, message.data, message.extra) == (aiohttp.WSMsgType.CLOSE, 4001, "join_timeout")
    finally:
        stop_server_process(server)


LOW_OPEN_FILES = 256
LIMITED_SERVE = ("import os, resource, sys; "
                 f"resource.setrlimit(resource.RLIMIT_NOFILE, ({LOW_OPEN_FILES}, resource.RLIM_INFINITY "
                 "if resource.getrlimit(resource.RLIMIT_NOFILE)[1] == resource.RLIM_INFINITY "
                 "else resource.getrlimit(resource.RLIMIT_NOFILE)[1])); "
                 "os.execv(sys.executable, [sys.executable, '-m', 'signaling', *sys.argv[1:]])")


@pytest.mark.slow
async def test_idle_connections_at_a_low_open_file_limit_leave_room_for_a_call():
    """Started where only 256 open files are allowed (the hard limit is
    higher), the server lifts its own limit: 300 idle WebSockets, and a
    call still works."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 2000:
        pytest.skip(f"the hard open-file limit ({hard}) leaves no room to show it")
    port = free_port()
    command = [sys.executable, "-c", LIMITED_SERVE, "serve", "--port", str(port), "--ice-address", "127.0.0.1",
               "--log-level", "warning", "--workers", "1", "--udp-port", str(free_udp_port()),
               "--connections-per-address", "0"]
    proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYSFU_LIMITS__JOIN_TIMEOUT": "120"})
    server = ServerProcess(proc, port)
    try:
        await asyncio.get_running_loop().run_in_executor(None, wait_for_http, f"{server.http}/healthz")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            idle = []
            for _ in range(300):
                idle.append(await asyncio.wait_for(http.ws_connect(server.url, autoping=False), 10))
            async with Client(server.url, ice_addresses=["127.0.0.1"]) as alice, \
                    Client(server.url, ice_addresses=["127.0.0.1"]) as bob:
                await alice.join("crowded", "alice")
                await alice.publish([PatternVideoTrack(320, 240)])
                await bob.join("crowded", "bob")
                [video] = await bob.wait_tracks(1)
                assert len(await count_frames(video.track, 1.5)) >= 10
            for ws in idle:
                await ws.close()
    finally:
        stop_server_process(server)


@pytest.mark.parametrize("sent", [b"", b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgr"],
                         ids=["nothing", "half-a-header"])
async def test_a_connection_without_a_whole_header_is_closed(make_server, sent):
    server = await make_server(limits={"header_timeout": 1})
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(sent)
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert time.monotonic() - started < 8
    finally:
        writer.close()
    async with server.client() as client:  # the server still answers
        assert (await client.request({"type": "ping"}))["type"] == "pong"


async def test_connections_beyond_the_cap_are_refused_while_a_call_goes_on(make_server, raw):
    server = await make_server(limits={"max_connections": 4, "join_timeout": 60})
    async with client_factory(server) as clients:
        alice, bob = await clients(), await clients()
        await alice.join("capped", "alice")
        await alice.publish([ToneAudioTrack(), PatternVideoTrack(320, 240)])
        await bob.join("capped", "bob")
        video = next(t for t in await bob.wait_tracks(2) if t.kind == "video")
        idle = [await raw(server.url) for _ in range(2)]

        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await raw(server.url)
        assert refused.value.status == 503

        assert len(await count_frames(video.track, 1.5)) >= 10
        assert (await alice.request({"type": "ping"}))["type"] == "pong"
        await idle[0].close()  # a freed place is taken again
        await eventually(lambda: server.app[CONNECTIONS].open == 3, timeout=5)
        again = await raw(server.url)
        assert (await raw_request(again, {"type": "ping", "id": 1}))["type"] == "pong"


async def test_connections_per_address(make_server, raw):
    server = await make_server(limits={"connections_per_address": 2, "join_timeout": 60})
    for _ in range(2):
        await raw(server.url, local="127.0.0.2")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await raw(server.url, local="127.0.0.2")
    assert refused.value.status == 429
    async with server.client() as other:  # another address still gets in
        await other.join("addresses", "other")


# --- rate limit: every message costs a token ----------------------------------------


async def test_invalid_and_oversized_messages_take_rate_tokens(make_server):
    server = await make_server(limits={"messages_per_second": 0.1, "message_burst": 3, "max_message_bytes": 1024})
    async with server.client() as client:
        for text in ["{", "x" * 2000, "[1]"]:
            await client.send_raw(text)
        await client.send_raw(json.dumps({"type": "ping", "id": "after"}))
        reply = await eventually(lambda: next((e for e in client.events if e.get("id") == "after"), None), timeout=5)
        assert (reply["type"], reply["code"]) == ("error", "rate_limited")
        assert [e["code"] for e in client.events[:3]] == ["bad_json", "message_too_large", "bad_message"]


# --- bad Unicode --------------------------------------------------------------------


async def test_a_lone_surrogate_in_chat_is_refused_and_the_room_carries_on(clients):
    talker, listener = await clients(), await clients()
    await talker.join("unicode", "talker")
    await listener.join("unicode", "listener")
    await talker.send_raw('{"type": "chat", "id": "bad", "text": "hi \\ud800"}')
    reply = await eventually(lambda: next((e for e in talker.events if e["type"] == "error"), None), timeout=5)
    assert reply["code"] == "bad_message"
    await talker.request({"type": "chat", "text": "hi \U0001F600"})  # a real pair is fine
    chat = await eventually(lambda: next((e for e in listener.events if e["type"] == "chat_message"), None), timeout=5)
    assert chat["text"] == "hi \U0001F600"


# --- hidden participants send nothing --------------------------------------------------


ROOM = "secure"


def token(identity: str, ttl: float = 3600, **grants) -> str:
    return create_token(API_KEY, API_SECRET, identity, VideoGrant(room=ROOM, roomJoin=True, **grants), ttl=ttl)


def expiry(token_: str) -> float:
    return jwt.decode(token_, options={"verify_signature": False})["exp"]


@pytest.mark.parametrize(
    "request_, event",
    [
        pytest.param({"type": "chat", "text": "boo"}, "chat_message", id="chat"),
        pytest.param({"type": "send_data", "payload": "boo"}, "data", id="send_data"),
        pytest.param({"type": "reaction", "emoji": "x"}, "reaction", id="reaction"),
        pytest.param({"type": "raise_hand", "raised": True}, "hand_raised", id="raise_hand"),
    ],
)
async def test_hidden_participants_cannot_reveal_themselves(keyed, request_, event):
    async with client_factory(keyed) as clients:
        host, ghost = await clients(), await clients()
        await host.join(ROOM, token=token("host"))
        await ghost.join(ROOM, token=token("ghost", hidden=True))
        with pytest.raises(ClientError) as caught:
            await ghost.request(request_)
        assert caught.value.code == "permission_denied"
        assert (await host.request({"type": "ping"}))["type"] == "pong"
        assert not [e for e in host.events if e["type"] == event]


# --- a session's access ends with its token ---------------------------------------------


async def test_no_resume_after_the_token_expired(keyed):
    async with client_factory(keyed) as clients:
        watcher, short = await clients(), await clients()
        await watcher.join(ROOM, token=token("watcher"))
        short_lived = token("short", ttl=2)
        await short.join(ROOM, token=short_lived)
        expires = expiry(short_lived)
        await short.disconnect()
        await eventually(lambda: time.time() > expires + 0.5, timeout=10)
        with pytest.raises(ClientError) as caught:
            await short.resume()
        assert caught.value.code == "token_expired"
        assert (await watcher.request({"type": "ping"}))["type"] == "pong"


async def test_refresh_token_extends_the_session(keyed):
    async with client_factory(keyed) as clients:
        client = await clients()
        short_lived = token("long", ttl=2)
        await client.join(ROOM, token=short_lived)
        expires = expiry(short_lived)
        with pytest.raises(ClientError) as caught:
            await client.request({"type": "refresh_token", "token": token("someone-else")})
        assert caught.value.code == "permission_denied"
        await client.request({"type": "refresh_token", "token": token("long")})
        await client.disconnect()
        await eventually(lambda: time.time() > expires + 0.5, timeout=10)
        resumed = await client.resume()
        assert resumed["resumed"] is True


def test_a_redirect_ticket_keeps_the_original_expiry():
    original = token("traveller", ttl=600)
    claims = verify_token(original, KEYS)
    ticket = create_ticket(original, claims, KEYS, ttl=30)
    assert verify_token(ticket, KEYS).expires_at == claims.expires_at
