"""Nothing a stranger sends to the media ports ends a call.

A live two-participant call in each server mode gets bursts of garbage from
another loopback address (empty, 1-byte, random, oversize RTP-looking,
DTLS-looking, STUN naming a participant with a wrong password); the call
keeps flowing and the server logs no error. Then one regression test per
way a datagram used to end or blackhole a call."""

from __future__ import annotations

import asyncio
import random
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aioice import stun

from sfu import udp_mux
from sfu.config import IceConfig, SfuConfig
from signaling.client import Client
from signaling.config import ServerConfig

from .conftest import LOOPBACK, ROOT, ServerProcess, free_port, free_udp_port, start_local_server, wait_for_http
from .frames import count_frames
from .media import PatternVideoTrack, ToneAudioTrack
from .processes import udp_sockets_of, child_pids
from .prometheus import scrape

pytestmark = pytest.mark.slow  # live calls under UDP garbage, some in server processes

ATTACKER = "127.0.0.2"  # another loopback address: not a participant's
BURST = 3000  # datagrams per burst, at most
BURST_SECONDS = 10


# --- the call ------------------------------------------------------------------------


async def start_call(url: str) -> tuple[Client, Client, dict]:
    """alice sends video and audio, bob audio; each receives the other."""
    alice, bob = Client(url, LOOPBACK, timeout=30), Client(url, LOOPBACK, timeout=30)
    for client, name in ((alice, "alice"), (bob, "bob")):
        await client.connect()
        await client.join("fuzz", name)
    await alice.publish([ToneAudioTrack(), PatternVideoTrack()])
    await bob.publish([ToneAudioTrack()])
    tracks = {t.kind: t for t in await bob.wait_tracks(2, timeout=30)}
    await alice.wait_tracks(1, timeout=30)
    return alice, bob, tracks


async def assert_call_flows(alice: Client, bob: Client, tracks: dict) -> None:
    """Frames keep arriving both ways and nobody left."""
    video = len(await count_frames(tracks["video"].track, 2.0))
    assert video >= 10, f"bob got {video} video frames from alice in 2 s"
    [from_bob] = [t for t in alice.remote_tracks.values() if t.participant_id == bob.participant_id]
    audio = len(await count_frames(from_bob.track, 1.0))
    assert audio >= 10, f"alice got {audio} audio frames from bob in 1 s"
    assert bob.participant_id in alice.roster and alice.participant_id in bob.roster
    for pc in (alice.publisher, alice.subscriber, bob.publisher, bob.subscriber):
        assert pc.connectionState == "connected"


def ice_credentials(sdp: str) -> tuple[str, str]:
    ufrag = re.search(r"a=ice-ufrag:(\S+)", sdp).group(1)
    password = re.search(r"a=ice-pwd:(\S+)", sdp).group(1)
    return ufrag, password


def stun_usernames(clients: list[Client]) -> list[str]:
    """USERNAMEs of each client's binding requests to the server."""
    names = []
    for client in clients:
        for pc in (client.publisher, client.subscriber):
            server_ufrag, _ = ice_credentials(pc.remoteDescription.sdp)
            client_ufrag, _ = ice_credentials(pc.localDescription.sdp)
            names.append(f"{server_ufrag}:{client_ufrag}")
    return names


def binding_request(username: str, password: str) -> bytes:
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = username
    request.attributes["PRIORITY"] = 1853824767
    request.attributes["ICE-CONTROLLING"] = 1
    request.add_message_integrity(password.encode())
    request.add_fingerprint()
    return bytes(request)


# --- the garbage -----------------------------------------------------------------------


def garbage(usernames: list[str], rng: random.Random) -> list[bytes]:
    datagrams = [b"", b"\x00", b"\x01", b"\x16", b"\x80", b"\xff", b"\x80\xc8"]
    datagrams += [rng.randbytes(rng.randrange(1, 1400)) for _ in range(30)]
    datagrams += [bytes([0x80, rng.choice((96, 111, 200, 201, 205))]) + rng.randbytes(rng.randrange(2000, 9000))
                  for _ in range(10)]  # oversize RTP/RTCP-looking
    datagrams += [bytes([0x80, 96]) + rng.randbytes(rng.randrange(10, 1200)) for _ in range(10)]  # SRTP-looking
    datagrams += [bytes([0x16, 0xFE, 0xFD]) + rng.randbytes(rng.randrange(10, 300)) for _ in range(10)]  # DTLS
    datagrams += [bytes([0x15, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 2, 40])]  # DTLS fatal alert
    datagrams += [bytes([0, 1]) + rng.randbytes(rng.randrange(0, 40)) for _ in range(5)]  # STUN-looking
    datagrams += [binding_request(name, "not-the-password") for name in usernames]
    return datagrams


async def burst(ports: list[tuple[str, int]], datagrams: list[bytes]) -> int:
    """Send the datagrams to every port, round after round, from ATTACKER
    (at most BURST in all, in BURST_SECONDS); returns how many were sent."""
    sent, deadline = 0, time.monotonic() + BURST_SECONDS
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
        attacker.bind((ATTACKER, 0))
        attacker.setblocking(False)
        while sent < BURST and time.monotonic() < deadline:
            for datagram in datagrams:
                for port in ports:
                    try:
                        attacker.sendto(datagram, port)
                    except (BlockingIOError, ConnectionRefusedError):
                        pass
                    sent += 1
                if sent % 100 < len(ports):
                    await asyncio.sleep(0.005)  # let the clients' loop run
                if sent >= BURST:
                    break
    return sent


# --- one call per server mode ------------------------------------------------------------


def start_logged_server(extra: list[str], log: Path) -> ServerProcess:
    port = free_port()
    command = [sys.executable, "-m", "signaling", "serve", "--port", str(port), "--ice-address", "127.0.0.1",
               "--log-level", "warning", *extra]
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(command, cwd=ROOT, stderr=stderr)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30)
    except TimeoutError:
        proc.kill()
        raise
    return ServerProcess(proc, port)


def port_range() -> str:
    low = random.randrange(20000, 30000, 100)
    return f"{low}-{low + 99}"


MODES = {
    "port-range": lambda: ["--workers", "1", "--udp-port-range", port_range()],
    "single-port": lambda: ["--workers", "1", "--udp-port", str(free_udp_port())],
    "workers": lambda: ["--workers", "2", "--worker-room-limit", "1", "--udp-port-range", port_range()],
}


def media_ports(server: ServerProcess) -> list[tuple[str, int]]:
    """Every UDP socket of the server (its workers' too: ICE and relay)."""
    pids = child_pids(server.proc.pid) or [server.proc.pid]
    return sorted({addr for pid in pids for addr in udp_sockets_of(pid)})


@pytest.mark.parametrize("mode", list(MODES))
async def test_live_call_survives_udp_garbage(mode, tmp_path):
    log = tmp_path / "server.log"
    server = start_logged_server(MODES[mode](), log)
    alice = bob = None
    try:
        alice, bob, tracks = await start_call(server.url)
        await assert_call_flows(alice, bob, tracks)
        ports = media_ports(server)
        assert ports, "no UDP socket found"
        datagrams = garbage(stun_usernames([alice, bob]), random.Random(mode))
        sent = await burst(ports, datagrams)
        assert sent >= min(BURST, 500)
        await assert_call_flows(alice, bob, tracks)
        metrics = await scrape(server.http)
        dropped = sum(value for name, value in metrics.items() if name.startswith("pysfu_udp_datagrams_dropped_total"))
        assert dropped >= sent / 4, f"{dropped} of {sent} datagrams counted as dropped"
    finally:
        for client in (alice, bob):
            if client is not None:
                await client.close()
        stopped = server.proc.poll() is None
        server.proc.terminate()
        server.proc.wait(10)
    text = log.read_text(errors="replace")
    assert stopped, f"the server died:\n{text[-3000:]}"
    assert not re.search(r"\bERROR\b|Traceback", text), text[-3000:]


# --- one regression test per way in ---------------------------------------------------------


def server_ports(local) -> list[tuple[str, int]]:
    """The UDP sockets of an in-process server's peer connections."""
    ports = set()
    for participant in local.rooms.participants():
        for transport in (participant.publisher.transport, participant.subscriber.transport):
            for transceiver in transport.pc.getTransceivers():
                connection = transceiver.sender.transport.transport.iceGatherer._connection
                ports.update(p.transport.get_extra_info("sockname")[:2] for p in connection._protocols)
    return sorted(ports)


def selected_pair(pc):
    """A client peer connection's selected ICE pair (its socket and the server's address)."""
    connection = pc.getTransceivers()[0].sender.transport.transport.iceGatherer._connection
    return connection._nominated[1]


def in_process_config(udp_port: int = 0) -> ServerConfig:
    """A socket per connection, or single-port mode on ``udp_port``."""
    return ServerConfig(port=0, sfu=SfuConfig(ice=IceConfig(addresses=LOOPBACK, udp_port=udp_port)))


def errors_in(caplog) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


@pytest.mark.parametrize("mode", ["own-sockets", "single-port"])
async def test_empty_datagrams_from_a_stranger_do_not_end_the_call(mode, caplog):
    """aiortc's DTLS reader indexes data[0]: one empty datagram closed the connection."""
    ice = {"udp_port": free_udp_port()} if mode == "single-port" else {}
    local = await start_local_server(in_process_config(**ice))
    alice = bob = None
    try:
        alice, bob, tracks = await start_call(local.url)
        ports = server_ports(local)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
            attacker.bind((ATTACKER, 0))
            for port in ports:
                for datagram in (b"", b"", b"", b"", b"\x16", b"\x80"):
                    attacker.sendto(datagram, port)
        await asyncio.sleep(0.5)  # let them land
        await assert_call_flows(alice, bob, tracks)
        sides = [side for p in local.rooms.participants() for side in (p.publisher, p.subscriber)]
        assert len(sides) == 4 and all(side.transport.connected for side in sides)
    finally:
        for client in (alice, bob):
            if client is not None:
                await client.close()
        await local.runner.cleanup()
    assert not errors_in(caplog)


async def test_oversize_rtp_is_dropped_and_counted(caplog):
    """pylibsrtp refuses more than 1,500 bytes with ValueError: it escaped the
    socket callback (a traceback per datagram)."""
    local = await start_local_server(in_process_config())
    alice = bob = None
    try:
        alice, bob, tracks = await start_call(local.url)
        pair = selected_pair(alice.publisher)
        oversize = [bytes([0x80, pt]) + bytes(size) for pt in (96, 200) for size in (1600, 4000, 9000)]
        for datagram in oversize * 5:  # from alice's own address (past the source check)...
            pair.protocol.transport.sendto(datagram, pair.remote_addr)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:  # ...and from a stranger
            attacker.bind((ATTACKER, 0))
            for datagram in oversize * 5:
                for port in server_ports(local):
                    attacker.sendto(datagram, port)

        async def too_large() -> float:
            return (await scrape(local.http)).get('pysfu_udp_datagrams_dropped_total{reason="too_large"}', 0.0)

        await assert_call_flows(alice, bob, tracks)
        assert not errors_in(caplog)
        deadline = time.monotonic() + 10
        while await too_large() < 30 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert await too_large() >= 30
    finally:
        for client in (alice, bob):
            if client is not None:
                await client.close()
        await local.runner.cleanup()


@pytest.mark.parametrize("password", ["wrong", "valid"])
async def test_forged_stun_does_not_move_a_participants_address(password):
    """Single-port mode: a binding request naming mallory's connection, sent
    from alice's address, moved alice's address to mallory (her upstream
    blackholed). With a wrong password it must not count at all; with
    mallory's valid one (she knows it) it must not take an address alice's
    connection has selected."""
    port = free_udp_port()
    local = await start_local_server(in_process_config(udp_port=port))
    alice = bob = mallory = None
    try:
        alice, bob, tracks = await start_call(local.url)
        mallory = Client(local.url, LOOPBACK, timeout=30)
        await mallory.connect()
        await mallory.join("fuzz", "mallory", auto_subscribe=False)
        await mallory.publish([ToneAudioTrack()])
        server_ufrag, server_password = ice_credentials(mallory.publisher.remoteDescription.sdp)
        client_ufrag, _ = ice_credentials(mallory.publisher.localDescription.sdp)
        forged = binding_request(f"{server_ufrag}:{client_ufrag}",
                                 server_password if password == "valid" else "not-the-password")
        [mux] = udp_mux.shared_muxes()
        pair = selected_pair(alice.publisher)
        alice_address = pair.protocol.transport.get_extra_info("sockname")[:2]
        owner = mux.routes[alice_address]
        for _ in range(3):
            pair.protocol.transport.sendto(forged, pair.remote_addr)
        await asyncio.sleep(0.5)  # let them land
        assert mux.routes[alice_address] is owner
        await assert_call_flows(alice, bob, tracks)
    finally:
        for client in (alice, bob, mallory):
            if client is not None:
                await client.close()
        await local.runner.cleanup()
