"""One load generator worker: many simulated participants in one event loop.

Started by benchmarks.loadgen with a JSON config as its only argument, and
driven over stdin/stdout with one JSON object per line.

Commands (stdin)::

    {"cmd": "join", "identity": "p007", "publish": true, "expect_media": true}
    {"cmd": "leave", "identity": "p007"}
    {"cmd": "speakers", "ids": ["p003", "p011"]}   # who speaks; the first is the dominant one
    {"cmd": "stats"}
    {"cmd": "quit"}

Twice a second the worker checks, for each of its subscribers, whether the
dominant speaker's video reached it in the last second: the dominant
speaker as the SFU announces it (``SessionDriver.dominant``), or the
script's when the SFU does not say; samples within 2 s of a change of
speaker are left out (a switch waits for a key frame). ``stats`` reports
the counts (``speaker_video``: ok, samples).

Events (stdout): ``ready``, ``joined`` {identity, join_ms, publish_ms},
``join_failed`` {identity, message}, ``left`` {identity}, ``stats`` {...},
``error`` {message}. End of stdin, ``quit`` or the config's ``max_seconds``
make every participant leave and the process exit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections import Counter
from typing import Any, Optional

from sfu.garbage_collector import GarbageCollector

from .drivers import driver_class
from .peers import _stdin_lines, emit
from .simulated import Counts, LatencyHistogram, MediaSettings, Pacer, SimulatedParticipant, video_tag

log = logging.getLogger("benchmarks.loadgen_worker")

SPEAKER_SAMPLE = 0.5  # s between two checks of the speaker's video
SPEAKER_GRACE = 2.0  # s after a change of speaker before its video must flow
SPEAKER_FRESH_NS = 1_000_000_000  # the speaker's video arrived within this: flowing
GC_INTERVAL = 3600.0  # s between full collections: longer than a run, collected as it ends


class Worker:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.driver = driver_class(config["driver"]).attach(config["endpoint"])
        self.media = MediaSettings(**{k: tuple(v) if isinstance(v, list) else v
                                      for k, v in config["media"].items()})
        self.room = config["room"]
        self.join_timeout = float(config.get("join_timeout", 60))
        #: Layer wishes of every subscriber: the dominant speaker's camera at
        #: ``speaker_quality``, every other camera at ``tile_quality``.
        self.tile_quality = config.get("tile_quality", "high")
        self.speaker_quality = config.get("speaker_quality", "high")
        self.slots = config.get("slots")  # slot subscription, or None
        self.latency = {"audio": LatencyHistogram(), "video": LatencyHistogram()}
        self.speaker_video = Counter()  # ok, samples
        self._speaker: Optional[str] = None
        self._speaker_since = 0.0
        self.pacer = Pacer(tick=float(config.get("tick", 0.01)))
        self.participants: dict[str, SimulatedParticipant] = {}
        self.departed = Counts()
        self.departed_sent: Counter = Counter()
        self.speakers: list[str] = []
        self.tasks: set[asyncio.Task] = set()
        self.errors: list[str] = []
        self.join_failures = 0

    # --- commands ---------------------------------------------------------------------

    async def join(self, identity: str, publish: bool, expect_media: bool) -> None:
        session = self.driver.session(self.room, identity)
        session.slots = self.slots
        participant = SimulatedParticipant(identity, session, self.media, self.latency, publish=publish)
        participant.speaking = identity in self.speakers
        self.participants[identity] = participant
        self.pacer.participants.append(participant)
        try:
            join_ms = await asyncio.wait_for(participant.join(expect_media, self.join_timeout),
                                             self.join_timeout + 5)
            await self._apply_layers(participant)
        except Exception as exc:
            self.join_failures += 1
            emit("join_failed", identity=identity, message=f"{type(exc).__name__}: {exc}")
            await self.leave(identity)  # free its connections; the run reports the failure
            return
        emit("joined", identity=identity, join_ms=round(join_ms, 1),
             publish_ms=round(participant.publish_ms, 1) if participant.publish_ms else None,
             phases=participant.phases)

    async def leave(self, identity: str) -> None:
        participant = self.participants.pop(identity, None)
        if participant is None:
            return
        self.pacer.participants.remove(participant)
        participant.sending = False
        self.departed.add(participant.counts())
        self.departed_sent.update(participant.sent())
        self.errors += participant.errors[:3] + list(participant.session.errors[:3])
        await participant.leave()
        emit("left", identity=identity)

    async def set_speakers(self, ids: list[str]) -> None:
        self.speakers = list(ids)
        for identity, participant in self.participants.items():
            participant.speaking = identity in self.speakers
        await asyncio.gather(*(self._apply_layers(p) for p in list(self.participants.values())),
                             return_exceptions=True)

    async def _apply_layers(self, participant: SimulatedParticipant) -> None:
        wanted = {self.speakers[0]: self.speaker_quality} if self.speakers else {}
        await participant.session.set_layers(wanted, default=self.tile_quality)

    def stats(self) -> dict[str, Any]:
        counts = Counts()
        counts.add(self.departed)
        sent = Counter(self.departed_sent)
        offers = Counter()
        errors = list(self.errors)
        for participant in self.participants.values():
            counts.add(participant.counts())
            sent.update(participant.sent())
            offers["answered"] += participant.offers_answered
            offers["plis"] += participant.plis
            offers["srtp_errors"] += participant.subscriber.srtp_errors
            offers.update(participant.session.stats())
            errors += participant.errors[:2] + list(participant.session.errors[:2])
        pacer = self.pacer
        return {
            "participants": len(self.participants),
            "received": dict(counts.packets), "expected": dict(counts.expected),
            "older": counts.older, "sent": dict(sent), "signaling": dict(offers),
            "latency_audio": {str(k): v for k, v in self.latency["audio"].buckets.items()},
            "latency_video": {str(k): v for k, v in self.latency["video"].buckets.items()},
            "speaker_video": dict(self.speaker_video),
            "pacer_max_lag_ms": round(pacer.max_lag * 1000, 1),
            "pacer_mean_lag_ms": round(pacer.lag_sum / max(1, pacer.ticks) * 1000, 2),
            "join_failures": self.join_failures,
            "errors": errors[:5],
        }

    def dominant_speaker(self) -> Optional[str]:
        """The SFU's dominant speaker if it says, else the speaking script's."""
        for participant in self.participants.values():
            if participant.session.dominant is not None:
                return participant.session.dominant
        return self.speakers[0] if self.speakers else None

    def sample_speaker_video(self) -> None:
        speaker, now = self.dominant_speaker(), time.monotonic()
        if speaker != self._speaker:
            self._speaker, self._speaker_since = speaker, now
        if speaker is None or now - self._speaker_since < SPEAKER_GRACE:
            return
        tag, now_ns = video_tag(speaker), time.monotonic_ns()
        for identity, participant in self.participants.items():
            joined = participant.join_ms is not None and \
                now - participant.started - participant.join_ms / 1000 > SPEAKER_GRACE
            if identity != speaker and joined:
                self.speaker_video["samples"] += 1
                if now_ns - participant.video_seen.get(tag, 0) < SPEAKER_FRESH_NS:
                    self.speaker_video["ok"] += 1

    async def watch_speaker_video(self) -> None:
        while True:
            await asyncio.sleep(SPEAKER_SAMPLE)
            self.sample_speaker_video()

    # --- main loop ----------------------------------------------------------------------

    def spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self) -> int:
        stdin = await _stdin_lines()
        # the participants' heap grows fast: no full collection may stall the
        # pacer or the receive path (the server's policy, sfu/garbage_collector.py)
        collector = GarbageCollector(interval=GC_INTERVAL)
        collector.start()
        self.pacer.start()
        self.spawn(self.watch_speaker_video())
        emit("ready")
        deadline = time.monotonic() + float(self.config.get("max_seconds", 900))
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    emit("error", message="max_seconds reached")
                    return 2
                try:
                    line = await asyncio.wait_for(stdin.readline(), min(remaining, 1.0))
                except asyncio.TimeoutError:
                    continue
                if not line:
                    return 0
                command = json.loads(line)
                name = command.get("cmd")
                if name == "join":
                    self.spawn(self.join(command["identity"], command.get("publish", True),
                                         command.get("expect_media", True)))
                elif name == "leave":
                    self.spawn(self.leave(command["identity"]))
                elif name == "speakers":
                    self.spawn(self.set_speakers(command["ids"]))
                elif name == "stats":
                    emit("stats", **self.stats())
                elif name == "quit":
                    return 0
        finally:
            await self.shutdown()
            collector.stop()

    async def shutdown(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(
                asyncio.gather(*(self.leave(i) for i in list(self.participants)), return_exceptions=True),
                20)
        except asyncio.TimeoutError:
            pass
        self.pacer.stop()
        await self.driver.stop()


def main() -> None:
    config = json.loads(sys.argv[1])
    logging.basicConfig(level=config.get("log_level", "WARNING").upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker = Worker(config)
    if config.get("uvloop", True):
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            code = runner.run(worker.run())
    else:
        code = asyncio.run(worker.run())
    sys.exit(code)


if __name__ == "__main__":
    main()
