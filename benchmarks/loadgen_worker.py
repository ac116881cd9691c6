"""One load generator worker: many simulated participants in one event loop.

Started by benchmarks.loadgen with a JSON config as its only argument, and
driven over stdin/stdout with one JSON object per line.

Commands (stdin)::

    {"cmd": "join", "identity": "p007", "publish": true, "expect_media": true}
    {"cmd": "leave", "identity": "p007"}
    {"cmd": "speakers", "ids": ["p003", "p011"]}   # who speaks; the first is the dominant one
    {"cmd": "stats"}
    {"cmd": "quit"}

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
from typing import Any

from .drivers import driver_class
from .peers import _stdin_lines, emit
from .simulated import Counts, LatencyHistogram, MediaSettings, Pacer, SimulatedParticipant

log = logging.getLogger("benchmarks.loadgen_worker")


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
        self.histogram = LatencyHistogram()
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
        participant = SimulatedParticipant(identity, session, self.media, self.histogram, publish=publish)
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
             publish_ms=round(participant.publish_ms, 1) if participant.publish_ms else None)

    async def leave(self, identity: str) -> None:
        participant = self.participants.pop(identity, None)
        if participant is None:
            return
        self.pacer.participants.remove(participant)
        participant.sending = False
        self.departed.add(participant.counts())
        self.departed_sent.update(participant.sent())
        self.errors += participant.errors[:3]
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
            errors += participant.errors[:2]
        pacer = self.pacer
        return {
            "participants": len(self.participants),
            "received": dict(counts.packets), "expected": dict(counts.expected),
            "older": counts.older, "sent": dict(sent), "signaling": dict(offers),
            "latency": {str(k): v for k, v in self.histogram.buckets.items()},
            "pacer_max_lag_ms": round(pacer.max_lag * 1000, 1),
            "pacer_mean_lag_ms": round(pacer.lag_sum / max(1, pacer.ticks) * 1000, 2),
            "join_failures": self.join_failures,
            "errors": errors[:5],
        }

    # --- main loop ----------------------------------------------------------------------

    def spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self) -> int:
        stdin = await _stdin_lines()
        self.pacer.start()
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
