"""/metrics after a real aiortc call matches what the clients counted."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import ROOT
from .media import PatternVideoTrack, ToneAudioTrack
from .prometheus import metrics_text, scrape
from .waiting import eventually_async


async def rtp_stats(pc, stat_type: str) -> dict[str, dict]:
    """packets/bytes per kind from an aiortc peer connection's getStats()."""
    totals: dict[str, dict] = {}
    for stats in (await pc.getStats()).values():
        if stats.type == stat_type:
            entry = totals.setdefault(stats.kind, {"packets": 0, "bytes": 0})
            entry["packets"] += getattr(stats, "packetsSent", None) or getattr(stats, "packetsReceived", 0)
            entry["bytes"] += getattr(stats, "bytesSent", 0) or 0
    return totals


def close_to(server: float, client: float, tolerance: float = 0.03) -> bool:
    return client > 0 and abs(server - client) <= tolerance * client


@pytest.mark.slow
async def test_scrape_matches_what_clients_counted(server, clients):
    earlier = await scrape(server.http)  # the histogram is per process: other tests fed it (fake clocks too)
    viewer = await clients()
    await viewer.join("measured", "viewer")
    sender = await clients()
    await sender.join("measured", "sender")
    audio, video = ToneAudioTrack(), PatternVideoTrack()
    await sender.publish([audio, video])
    await viewer.wait_tracks(2)
    await asyncio.sleep(3)
    audio.stop()
    video.stop()
    await asyncio.sleep(0.5)  # let the last packets land

    sent = await rtp_stats(sender.publisher, "outbound-rtp")
    received = await rtp_stats(viewer.subscriber, "inbound-rtp")
    metrics = await scrape(server.http)

    def metric(name: str, kind: str) -> float:
        return metrics[f'{name}{{kind="{kind}"}}']

    assert metrics["pysfu_participants"] == 2
    assert metrics["pysfu_rooms"] == 1
    assert metrics["pysfu_tracks_published"] == 2
    assert metrics["pysfu_tracks_subscribed"] == 2
    for kind in ("audio", "video"):
        assert close_to(metric("pysfu_packets_in_total", kind), sent[kind]["packets"]), (kind, metrics, sent)
        assert close_to(metric("pysfu_packets_out_total", kind), received[kind]["packets"]), (kind, metrics, received)
        # bytes_out counts payload bytes, as the sender's bytesSent does
        assert close_to(metric("pysfu_bytes_out_total", kind), sent[kind]["bytes"]), (kind, metrics, sent)
        assert metric("pysfu_bytes_in_total", kind) > sent[kind]["bytes"]  # headers included
    assert metrics["pysfu_join_seconds_count"] == 2
    assert "pysfu_event_loop_lag_seconds" in metrics
    samples = metrics["pysfu_forward_seconds_count"] - earlier.get("pysfu_forward_seconds_count", 0)
    spent = metrics["pysfu_forward_seconds_sum"] - earlier.get("pysfu_forward_seconds_sum", 0)
    assert samples > 0  # sampled forwarding times
    assert 0 < spent / samples < 0.05
    assert "pysfu_subscriber_rtt_seconds" in metrics


async def test_error_codes_are_counted(server, clients):
    client = await clients()
    await client.send_raw("not json")
    await client.request({"type": "ping"})
    metrics = await scrape(server.http)
    assert metrics['pysfu_signaling_errors_total{code="bad_json"}'] == 1


async def test_load_figures_are_served(server):
    """The event loop's load and the load manager's level (sfu/load_manager.py)."""
    metrics = await eventually_async(lambda: scrape(server.http), lambda m: m["pysfu_loop_lag_seconds_count"] >= 3)
    assert 0 <= metrics["pysfu_loop_busy_ratio"] <= 1
    assert metrics["pysfu_loop_lag_smoothed_seconds"] >= 0
    assert metrics["pysfu_load_shed_level"] == 0
    assert metrics['pysfu_load_shed_steps_total{direction="up"}'] == 0


async def test_grafana_dashboard_uses_only_served_metrics(server):
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b((?:pysfu|process)_[a-z_]+)", target["expr"])
    }
    families = {f.name: f.type for f in text_string_to_metric_families(await metrics_text(server.http))}
    suffix = {"counter": "_total", "histogram": "_bucket"}
    served = set(families) | {name + suffix.get(kind, "") for name, kind in families.items()}
    assert used and used <= served, used - served
