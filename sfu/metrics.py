"""Prometheus metrics, read from the core's own counters at scrape time.

The media path only bumps plain integers on its objects; this collector
sums them when /metrics is scraped, so forwarding never touches a
prometheus_client lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .load_manager import LoadManager
    from .room import RoomRegistry

COUNTERS = {
    "packets_in": "RTP packets received from publishers",
    "bytes_in": "RTP bytes received from publishers",
    "packets_lost_in": "RTP packets publishers sent that never arrived",
    "packets_out": "RTP packets forwarded to subscribers",
    "bytes_out": "RTP payload bytes forwarded to subscribers",
    "nacks_received": "NACK packets received from subscribers",
    "nacks_sent": "NACK packets sent to publishers",
    "retransmissions": "packets retransmitted to subscribers from the cache",
    "keyframe_requests_received": "keyframe requests (PLI/FIR, starts) from subscribers",
    "keyframe_requests_sent": "PLIs sent to publishers after aggregation",
    "layer_switches": "simulcast layer switches made by down-tracks",
}


#: Datagrams dropped on arrival at a peer connection's socket, by reason
#: (bumped by sfu/transport.py and sfu/udp_mux.py; process-wide, so a closed
#: connection's drops still count).
DATAGRAMS_DROPPED = dict.fromkeys(
    ("too_short", "too_large", "not_webrtc", "unchecked_source", "not_connected", "unrouted", "stale", "backlog_full"), 0
)


class Histogram:
    """A histogram kept as plain numbers (no locks): the media path observes,
    the collector exports at scrape time."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[index] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += value

    def family(self, name: str, help_text: str) -> HistogramMetricFamily:
        cumulative, running = [], 0
        for bound, count in zip([*map(str, self.buckets), "+Inf"], self.counts):
            running += count
            cumulative.append((bound, running))
        return HistogramMetricFamily(name, help_text, buckets=cumulative, sum_value=self.total)


#: Time from a packet's arrival to its last copy handed to the kernel (sampled 1 in 16).
FORWARD_TIME = Histogram((0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01))


class SfuCollector(Collector):
    def __init__(self, registry: RoomRegistry, prefix: str = "pysfu", load: Optional[LoadManager] = None) -> None:
        self._registry = registry
        self._prefix = prefix
        self._load = load

    def collect(self):
        registry = self._registry
        participants = registry.participants()
        yield _gauge(f"{self._prefix}_rooms", "rooms open", len(registry.rooms))
        yield _gauge(f"{self._prefix}_participants", "participants connected", len(participants))
        yield _gauge(
            f"{self._prefix}_tracks_published", "tracks published",
            sum(len(p.tracks) for p in participants),
        )
        yield _gauge(
            f"{self._prefix}_tracks_subscribed", "down-tracks (track, subscriber pairs)",
            sum(len(p.subscriber.downtracks()) for p in participants),
        )
        yield from _layer_gauges(self._prefix, participants)
        yield from _link_gauges(self._prefix, participants)
        yield FORWARD_TIME.family(
            f"{self._prefix}_forward_seconds", "in-server forwarding time of a received packet (sampled)"
        )
        dropped = CounterMetricFamily(
            f"{self._prefix}_udp_datagrams_dropped",
            "datagrams dropped unparsed: too short or long, not STUN/DTLS/RTP/RTCP, from an address no "
            "ICE check validated, before DTLS, or (single-port mode) for no known connection, media "
            "that waited past receive_buffer_ms, or video beyond the backlog's bound",
            labels=["reason"],
        )
        for reason, count in DATAGRAMS_DROPPED.items():
            dropped.add_metric([reason], count)
        yield dropped
        if self._load is not None:
            yield from _load_families(self._prefix, self._load)
        totals = registry.counters()
        for name, help_text in COUNTERS.items():
            family = CounterMetricFamily(f"{self._prefix}_{name}", help_text, labels=["kind"])
            for kind in ("audio", "video"):
                family.add_metric([kind], totals.get((name, kind), 0))
            yield family


def _layer_gauges(prefix: str, participants):
    """Simulcast layers received right now, and their bitrate, by quality."""
    import time

    now = time.monotonic()
    flowing = GaugeMetricFamily(
        f"{prefix}_layers_flowing", "received video layers with packets in the last 0.5 s",
        labels=["quality"],
    )
    bitrate = GaugeMetricFamily(
        f"{prefix}_layer_bitrate_bps", "received video bitrate by layer quality", labels=["quality"]
    )
    counts = {q: 0 for q in ("low", "medium", "high")}
    rates = {q: 0.0 for q in ("low", "medium", "high")}
    for participant in participants:
        for track in participant.tracks.values():
            if track.kind != "video":
                continue
            for index, stream in enumerate(track.layers):
                if stream is None:
                    continue
                quality = track.quality_of(index)
                counts[quality] += stream.flowing(now)
                rates[quality] += stream.bitrate if stream.flowing(now, 1.0) else 0.0
    for quality in counts:
        flowing.add_metric([quality], counts[quality])
        bitrate.add_metric([quality], rates[quality])
    yield flowing
    yield bitrate


def _link_gauges(prefix: str, participants):
    """Subscriber links as their receiver reports describe them (averages)."""
    downtracks = [d for p in participants for d in p.subscriber.downtracks() if d.bound]
    rtts = [d.rtt for d in downtracks if d.rtt is not None]
    jitters = [d.jitter / d.clock_rate for d in downtracks if d.clock_rate]
    losses = [d.fraction_lost / 256 for d in downtracks]
    yield _gauge(f"{prefix}_subscriber_rtt_seconds", "mean round-trip time to subscribers",
                 sum(rtts) / len(rtts) if rtts else 0.0)
    yield _gauge(f"{prefix}_subscriber_jitter_seconds", "mean jitter subscribers report",
                 sum(jitters) / len(jitters) if jitters else 0.0)
    yield _gauge(f"{prefix}_subscriber_fraction_lost", "mean fraction lost subscribers report",
                 sum(losses) / len(losses) if losses else 0.0)


def _load_families(prefix: str, load: LoadManager):
    """The event loop's load and what the load manager sheds (sfu/load_manager.py)."""
    measure = load.measure
    yield _gauge(f"{prefix}_loop_busy_ratio", "share of the time the event loop's thread is on CPU (smoothed)",
                 measure.busy)
    yield _gauge(f"{prefix}_loop_lag_smoothed_seconds",
                 "event loop lag as the load manager sees it (worst probe per 0.5 s, smoothed)", measure.lag)
    yield measure.lag_histogram.family(f"{prefix}_loop_lag_seconds", "how late each 100 ms loop probe ran")
    yield _gauge(f"{prefix}_load_shed_level", "video shed for load: 0 none .. 4 speakers' video only", load.level)
    steps = CounterMetricFamily(f"{prefix}_load_shed_steps", "load shedding steps taken", labels=["direction"])
    for direction, count in load.steps.items():
        steps.add_metric([direction], count)
    yield steps


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)
