"""Janus VideoRoom as a benchmark target (benchmarks.janus): it runs, carries
media to every subscriber on loopback only, and the s1 fan-out measures it,
pinned (--pin) to a CPU of its own with every thread where the machine has two."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace

import pytest

from benchmarks.drivers import driver_class
from benchmarks.forwarding import RunConfig, children, run_once
from benchmarks.janus import (JanusPublisherPeer, JanusServer, JanusSubscriberPeer,
                              unavailable_reason)
from benchmarks.loadgen import SCENARIOS, RunOptions, run_scenario
from benchmarks.pinning import child_setup, cpu_sets, describe
from benchmarks.simulated import MediaSettings

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(unavailable_reason() is not None, reason=f"{unavailable_reason()} (make janus)"),
]


def candidates(sdp: str) -> list[str]:
    return [line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")]


async def test_s1_fan_out_through_janus_loses_nothing():
    config = RunConfig(subscribers=2, rate=500, warmup=1, duration=3, setup_timeout=40,
                       sfu="janus", janus_event_loops=1, pin=True)
    result = await asyncio.wait_for(run_once(config), 90)
    assert result["counted_at"] == "peers"
    server_cpus, peer_cpus = cpu_sets(True)
    if server_cpus is not None:  # every Janus thread on its CPU, the peers on the others
        assert (result["server_cpus"], result["peer_cpus"]) == (describe(server_cpus), describe(peer_cpus))
    assert result["ingress_pps"] > 400
    # each subscriber gets every packet the publisher sent
    assert result["egress_pps"] == pytest.approx(2 * result["ingress_pps"], rel=0.05)
    assert result["loss_pct"] is not None and result["loss_pct"] < 1.0
    assert result["server_cpu_pct"] > 0 and result["us_per_forwarded"] > 0
    assert result["latency_p50_ms"] is not None


def janus_children() -> list[int]:
    found = []
    for pid in children(os.getpid()):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "janus":
                    found.append(pid)
        except OSError:
            continue
    return found


async def test_load_generator_s1_through_janus_loses_nothing():
    """The load generator's path (driver seam, worker process, simulcast
    publisher) against Janus: 1 publisher, 2 subscribers wanting the high layer."""
    scenario = replace(SCENARIOS["s1"], participants=3, join_rate=20.0)
    media = MediaSettings(layer_rates=(20.0, 60.0, 180.0))
    options = RunOptions(workers=1, warmup=1.5, duration=3.0, join_timeout=30.0, media=media, pin=True)
    server_cpus, generator_cpus = cpu_sets(True)
    driver = driver_class("janus")(event_loops=1, preexec_fn=child_setup(server_cpus))

    result = await asyncio.wait_for(run_scenario(scenario, driver, options), 60)

    assert result["joined"] == 3 and result["join_failures"] == 0, result["warnings"]
    assert result["counted_at"] == "peers"  # Janus has no packet counters
    # each subscriber gets the publisher's audio (50/s) and its high layer (180/s), not q or h
    per_subscriber = result["subscriber_received_pps"] / 2
    assert per_subscriber > 150, result
    assert result["egress_pps"] == pytest.approx(result["subscriber_received_pps"])
    assert result["loss_pct"] is not None and result["loss_pct"] < 1.0, result
    assert result["server_cpu_pct"] > 0 and result["us_per_forwarded"] > 0
    assert result["latency_p50_ms"] is not None
    assert result["latency_p99_ms_audio"] is not None and result["latency_p99_ms_video"] is not None
    assert result["load_level_end"] is None  # Janus has no pysfu_load_level
    if server_cpus is not None:
        assert (result["server_cpus"], result["generator_cpus"]) == (describe(server_cpus),
                                                                      describe(generator_cpus))
    assert not janus_children(), "janus still running after the run"


async def test_subscribers_follow_publishers_over_loopback_only():
    server = JanusServer(event_loops=None)
    await server.start()
    peers = []
    try:
        first = JanusPublisherPeer(server.url, "follow", 100, name="first", audio_rate=50)
        peers.append(first)
        await first.start()
        remote = first.transport.pc.remoteDescription.sdp
        assert set(candidates(remote)) == {"127.0.0.1"}, "Janus must offer loopback only"
        assert first.audio_ssrc and first.ssrc

        viewer = JanusSubscriberPeer(server.url, "follow", name="viewer")
        peers.append(viewer)
        await viewer.start()
        await asyncio.wait_for(viewer.first_media.wait(), 20)
        second = JanusPublisherPeer(server.url, "follow", 100, name="second")
        peers.append(second)
        await second.start()

        async def streams_flowing(count: int) -> None:
            while len([s for s in viewer.streams.values() if s.received > 20]) < count:
                await asyncio.sleep(0.1)

        # first's audio + video, then second's video after a renegotiation
        await asyncio.wait_for(streams_flowing(3), 20)
        assert viewer.offers >= 2
        assert set(candidates(viewer.transport.pc.remoteDescription.sdp)) == {"127.0.0.1"}
        assert viewer.stats()["srtp_errors"] == 0

        await first.close()  # Janus renegotiates the viewer's PC away from first's streams
        peers.remove(first)

        def sending_sections() -> int:
            sdp = viewer.transport.pc.remoteDescription.sdp
            return sum(1 for line in sdp.splitlines() if line == "a=sendonly")

        for _ in range(200):
            if sending_sections() == 1 and list(viewer.signaling.feeds.values()) == ["second"]:
                break
            await asyncio.sleep(0.1)
        assert list(viewer.signaling.feeds.values()) == ["second"]
        assert sending_sections() == 1, "first's audio and video are still offered"
        before = viewer.packets
        await asyncio.sleep(1.0)
        assert viewer.packets > before + 30, "second's video stopped after the renegotiation"
    finally:
        for peer in peers:
            await peer.close()
        pid = server.pid
        await server.stop()
    assert not os.path.exists(f"/proc/{pid}"), "janus still running after stop()"
