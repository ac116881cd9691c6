"""Single UDP port mode: every peer connection shares one server socket."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sfu import udp_mux
from sfu.config import IceConfig, SfuConfig
from signaling.client import Client
from signaling.config import ServerConfig

from .conftest import LOOPBACK, free_udp_port, start_local_server, start_server_process, stop_server_process
from .leaks import host_and_cycles, open_fds, settle
from .frames import count_frames
from .media import PatternVideoTrack, ToneAudioTrack
from .processes import udp_sockets_of
from .waiting import eventually


async def inbound_packets(client: Client) -> dict[str, int]:
    """Packets received per remote participant, from the client's own RTP stats."""
    counts: dict[str, int] = {}
    for remote in client.remote_tracks.values():
        stats = await remote.receiver.getStats()
        packets = sum(s.packetsReceived for s in stats.values() if s.type == "inbound-rtp")
        counts[remote.participant_id] = counts.get(remote.participant_id, 0) + packets
    return counts


def single_port_config(port: int) -> ServerConfig:
    return ServerConfig(port=0, sfu=SfuConfig(ice=IceConfig(addresses=LOOPBACK, udp_port=port)))


@pytest.mark.slow
async def test_ten_participants_share_one_server_udp_port():
    port = free_udp_port()
    server = start_server_process(["--udp-port", str(port)])
    clients = [Client(server.url, LOOPBACK, timeout=30) for _ in range(10)]
    try:
        for index, client in enumerate(clients):
            await client.connect()
            await client.join("one-port", f"p{index}")
            await client.publish([ToneAudioTrack()])
        ids = {client.participant_id for client in clients}
        for client in clients:
            await client.wait_tracks(9, timeout=60)

        async def everyone_hears_everyone() -> bool:
            for client in clients:
                counts = await inbound_packets(client)
                others = ids - {client.participant_id}
                if set(counts) != others or min(counts.values()) < 50:  # 1 s of Opus each
                    return False
            return True

        for _ in range(150):
            if await everyone_hears_everyone():
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail(f"not every participant received every other: {[await inbound_packets(c) for c in clients]}")
        # 20 peer connections (a publisher and a subscriber PC each), one socket
        assert udp_sockets_of(server.proc.pid) == [("127.0.0.1", port)]
    finally:
        for client in clients:
            await client.close()
        assert stop_server_process(server) == 0


async def test_leaving_frees_the_demux_table_and_nothing_leaks():
    local = await start_local_server(single_port_config(free_udp_port()))
    try:
        await host_and_cycles(local, 1)  # warm-up
        await eventually(lambda: not local.rooms.rooms)
        await settle(local)
        fds = open_fds()
        [mux] = udp_mux.shared_muxes()
        assert mux.ufrags == {} and mux.routes == {}

        await host_and_cycles(local, 5)
        await eventually(lambda: not local.rooms.rooms, timeout=10)
        await settle(local)
        await eventually(lambda: not mux.ufrags and not mux.routes, timeout=5,
                         message=f"demux table kept {mux.ufrags} {mux.routes}")
        await eventually(lambda: open_fds() <= fds, timeout=5,
                         message=f"file descriptors grew from {fds} to {open_fds()}")
    finally:
        await local.runner.cleanup()
    assert udp_mux.shared_muxes() == []


async def test_garbage_from_unknown_addresses_is_dropped():
    port = free_udp_port()
    local = await start_local_server(single_port_config(port))
    a, b = Client(local.url, LOOPBACK), Client(local.url, LOOPBACK)
    try:
        for client, name in ((a, "a"), (b, "b")):
            await client.connect()
            await client.join("garbage", name)
        await a.publish([ToneAudioTrack()])
        [remote] = await b.wait_tracks(1)
        await asyncio.wait_for(remote.track.recv(), 5)
        [mux] = udp_mux.shared_muxes()
        routes = dict(mux.routes)  # a's publisher PC and b's subscriber PC
        assert len(routes) == 2
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
            stun_for_nobody = bytes([0, 1, 0, 8]) + udp_mux.STUN_MAGIC + bytes(12) + b"\x00\x06\x00\x04nope"
            for datagram in (b"\x80" * 200, b"\x17\xfe\xfd" + bytes(60), stun_for_nobody, b"\x00"):
                for _ in range(50):
                    attacker.sendto(datagram, ("127.0.0.1", port))
        await eventually(lambda: mux.dropped >= 200, timeout=5, message=f"dropped {mux.dropped}")
        assert mux.routes == routes  # nothing for the attacker
        for _ in range(10):  # media still flows
            await asyncio.wait_for(remote.track.recv(), 5)
    finally:
        await a.close()
        await b.close()
        await local.runner.cleanup()


class Inbox:
    """A connection's receiver that keeps what it is handed."""

    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, tuple]] = []

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.datagrams.append((data, addr))


def mux_on(host: str) -> udp_mux.UdpMux:
    """A mux on its own socket (room for a few hundred small datagrams), on the running loop."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((host, 0))
    return udp_mux.UdpMux(sock, asyncio.get_running_loop())


def senders_on(host: str, count: int) -> list[socket.socket]:
    senders = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        senders.append(sock)
    return senders


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])
async def test_batched_reads_hand_each_connection_its_datagrams_and_their_source(host):
    """The reader takes datagrams in recvmmsg batches: each still reaches
    the connection its source address was confirmed for, whole and in order,
    with the (host, port) that recvfrom would have given."""
    mux = mux_on(host)
    senders = senders_on(host, 40)
    inboxes = [Inbox() for _ in senders]
    sizes = [12, 1200, udp_mux.ReceiveBatch.DATAGRAM]
    try:
        for index, (sender, inbox) in enumerate(zip(senders, inboxes)):
            mux.endpoint(f"ufrag{index}", inbox).confirm(sender.getsockname()[:2])
        for size in sizes:
            for index, sender in enumerate(senders):
                sender.sendto(bytes([0x80, index]) + bytes(size - 2), mux.sockname)
        await eventually(lambda: sum(len(inbox.datagrams) for inbox in inboxes) == len(senders) * len(sizes))
        for index, (sender, inbox) in enumerate(zip(senders, inboxes)):
            source = (host, sender.getsockname()[1])
            assert inbox.datagrams == [(bytes([0x80, index]) + bytes(size - 2), source) for size in sizes]
        assert mux.dropped == 0
    finally:
        for sender in senders:
            sender.close()
        mux.close()


async def test_one_reader_turn_takes_a_bounded_number_of_datagrams():
    """Other callbacks (signaling, timers, other sockets) run between turns."""
    mux = mux_on("127.0.0.1")
    [sender] = senders_on("127.0.0.1", 1)
    inbox = Inbox()
    try:
        mux.endpoint("ufrag", inbox).confirm(sender.getsockname())
        for index in range(udp_mux.TURN + 10):
            sender.sendto(b"\x80" + index.to_bytes(2, "big") + bytes(9), mux.sockname)
        mux._readable()  # what the loop's reader callback runs
        assert len(inbox.datagrams) == udp_mux.TURN
        mux._readable()
        assert [int.from_bytes(data[1:3], "big") for data, _ in inbox.datagrams] == list(range(udp_mux.TURN + 10))
    finally:
        sender.close()
        mux.close()


async def test_more_senders_than_the_address_cache_still_route(monkeypatch):
    monkeypatch.setattr(udp_mux, "ADDRESS_CACHE", 4)
    mux = mux_on("127.0.0.1")
    senders = senders_on("127.0.0.1", 10)
    inboxes = [Inbox() for _ in senders]
    try:
        for index, (sender, inbox) in enumerate(zip(senders, inboxes)):
            mux.endpoint(f"ufrag{index}", inbox).confirm(sender.getsockname())
        for _ in range(3):
            for sender in senders:
                sender.sendto(b"\x80" + bytes(11), mux.sockname)
        await eventually(lambda: all(len(inbox.datagrams) == 3 for inbox in inboxes))
        assert all({addr for _, addr in inbox.datagrams} == {sender.getsockname()}
                   for sender, inbox in zip(senders, inboxes))
        assert len(mux._addresses) <= 4
    finally:
        for sender in senders:
            sender.close()
        mux.close()


def test_stun_username_names_the_local_ufrag():
    message = bytes([0, 1, 0, 16]) + udp_mux.STUN_MAGIC + bytes(12)
    message += b"\x80\x22\x00\x01x\x00\x00\x00"  # an attribute before USERNAME
    message += b"\x00\x06\x00\x09abcd:wxyz\x00\x00\x00"
    message = message[:2] + (len(message) - 20).to_bytes(2, "big") + message[4:]
    assert udp_mux.stun_local_ufrag(message) == "abcd"
    assert udp_mux.stun_local_ufrag(message[:30]) is None  # cut short
    assert udp_mux.stun_local_ufrag(b"\x80" + message[1:]) == "abcd"  # the caller checks the class byte
    assert udp_mux.stun_local_ufrag(message[:4] + b"xxxx" + message[8:]) is None  # no magic cookie


def test_udp_port_and_a_port_range_exclude_each_other():
    with pytest.raises(ValueError, match="exclude each other"):
        IceConfig(udp_port=7882, port_min=50000, port_max=50100)


async def test_a_taken_port_stops_the_server_at_start():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        with pytest.raises(OSError):
            await start_local_server(single_port_config(taken.getsockname()[1]))
    udp_mux.close_shared()


REMOTE_PORTS_JS = """
async () => {
  const client = window.pysfuDemo && window.pysfuDemo.client;
  const ports = [];
  for (const pc of [client && client.publisherPc, client && client.subscriberPc]) {
    if (!pc) continue;
    const stats = await pc.getStats();
    const mine = [];
    stats.forEach((pair) => {
      if (pair.type === "candidate-pair" && pair.nominated && pair.state === "succeeded") {
        const remote = stats.get(pair.remoteCandidateId);
        if (remote) mine.push(remote.port);
      }
    });
    ports.push(mine);
  }
  return ports;
}
"""


@pytest.mark.browser
async def test_demo_works_in_single_port_mode(tmp_path):
    from .browser import chromium
    from .browser import rising, stats_by_kind
    from .waiting import eventually_async

    port = free_udp_port()
    server = start_server_process(["--dev", "--udp-port", str(port)])
    try:
        async with chromium(tmp_path) as browser:
            pages = []
            for name in ["ana", "ben"]:
                page = await browser.new_page()
                await page.goto(f"{server.http}/?room=one-port&name={name}&autojoin=1")
                pages.append(page)
            for page in pages:
                await page.wait_for_selector("body[data-state=joined]", timeout=15000)
            for page in pages:  # both PCs of each page reach the server on the one port
                ports = await eventually_async(lambda page=page: page.evaluate(REMOTE_PORTS_JS),
                                               lambda ports: len(ports) == 2 and all(ports), timeout=15)
                assert {p for pc in ports for p in pc} == {port}
            before = [await stats_by_kind(page) for page in pages]
            await asyncio.sleep(2)
            after = [await stats_by_kind(page) for page in pages]
            for index, (first, second) in enumerate(zip(before, after)):
                assert rising(first["video"], second["video"], "framesDecoded") == 1, f"page {index}: no video"
                assert rising(first["audio"], second["audio"], "packetsReceived") == 1, f"page {index}: no audio"
        assert udp_sockets_of(server.proc.pid) == [("127.0.0.1", port)]
    finally:
        assert stop_server_process(server) == 0


def _payload_types(sdp: str, kind: str) -> set[int]:
    """The payload types of the ``kind`` m-lines of an SDP (RTX included)."""
    found, current = set(), None
    for line in sdp.splitlines():
        if line.startswith("m="):
            current = line[2:].split()[0]
            if current == kind:
                found.update(int(pt) for pt in line.split()[3:])
    return found


async def test_the_socket_learns_a_publishers_video_payload_types_and_both_kinds_flow():
    """What may wait behind audio (sfu/video_backlog.py) is the video the
    publisher negotiated, and only that: its camera reaches a subscriber,
    decoded, and so does its microphone."""
    local = await start_local_server(single_port_config(free_udp_port()))
    publisher = Client(local.url, LOOPBACK, timeout=30)
    viewer = Client(local.url, LOOPBACK, timeout=30)
    try:
        await viewer.connect()
        await viewer.join("video-waits", "viewer")
        await publisher.connect()
        await publisher.join("video-waits", "camera")
        await publisher.publish([ToneAudioTrack(), PatternVideoTrack()])
        answer = publisher.publisher.remoteDescription.sdp  # the codecs the server took
        endpoints = [e for mux in udp_mux.shared_muxes() for e in mux.ufrags.values() if e.video_types]
        assert len(endpoints) == 1  # the publisher PC's; subscriber PCs receive no media
        marked = {pt for pt in range(128) if endpoints[0].video_types[pt]}
        assert marked == _payload_types(answer, "video") and not marked & _payload_types(answer, "audio")
        remote = {t.kind: t for t in await viewer.wait_tracks(2, timeout=20)}
        assert len(await count_frames(remote["video"].track, 3.0)) >= 10
        assert len(await count_frames(remote["audio"].track, 2.0)) >= 10
    finally:
        await publisher.close()
        await viewer.close()
        await local.runner.cleanup()
