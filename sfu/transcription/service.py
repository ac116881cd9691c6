"""The transcription process of one room: engines run here, never in the SFU.

A decode takes a core for up to seconds; in the SFU's event loop it would
stall forwarding, in a thread it would fight the loop for the GIL. So each
transcribed room gets a process of its own (``spawn``, lowered priority)
and talks to it through two pipes:

- in: a bounded ``multiprocessing.Queue`` fed with ``put_nowait`` from the
  audio taps' threads. When the process falls behind, chunks are dropped
  (and counted), never waited for.
- out: a pipe the event loop watches (``add_reader``): ``ready``,
  ``failed``, and ``caption`` messages. End of file means the process is gone:
  the room learns that transcription stopped, whatever the reason.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import queue
import time
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

GAP = 1.0  # seconds without audio from a speaker that end their utterance
STOP_TIMEOUT = 10.0  # seconds a stopping process gets to decode what it holds


class TranscriptionProcess:
    """The SFU's handle on one transcription process."""

    def __init__(self, settings: dict, queue_size: int, on_message: Callable[[tuple], None],
                 on_exit: Callable[[bool], None]) -> None:
        context = multiprocessing.get_context("spawn")
        self.dropped = 0
        self._on_message = on_message
        self._on_exit = on_exit
        self._stopping = False
        self._origin = time.monotonic()
        self._input = context.Queue(queue_size)
        self._reader, writer = context.Pipe(duplex=False)
        settings = {**settings, "origin": self._origin, "parent": os.getpid()}
        self._process = context.Process(target=run, args=(settings, self._input, writer),
                                        name="pysfu-transcription", daemon=True)
        self._process.start()
        writer.close()  # the child holds the only write end: its exit is our end of file
        self._loop = asyncio.get_running_loop()
        self._exited = self._loop.create_future()
        self._loop.add_reader(self._reader.fileno(), self._readable)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def running(self) -> bool:
        return not self._exited.done()

    def feed(self, participant_id: str, pcm: np.ndarray) -> None:
        """Any thread; never blocks: a full queue drops the chunk."""
        self._put(("pcm", participant_id, time.monotonic(), pcm.tobytes()))

    def speaker_gone(self, participant_id: str) -> None:
        self._put(("flush", participant_id))

    def _put(self, message) -> None:
        if self._exited.done():
            return
        try:
            self._input.put_nowait(message)
        except (queue.Full, ValueError, OSError):  # full, or already closed
            self.dropped += 1

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Let the process decode what it holds and exit; kill it past ``timeout``."""
        if self.running:
            self._stopping = True
            try:
                self._input.put_nowait(None)
            except (queue.Full, ValueError, OSError):
                self._process.kill()
            try:
                await asyncio.wait_for(asyncio.shield(self._exited), timeout)
            except asyncio.TimeoutError:
                log.warning("transcription process %s did not stop in %.0f s: killed", self.pid, timeout)
                self._process.kill()
                await self._exited
        await asyncio.to_thread(self._process.join, 5)

    def _readable(self) -> None:
        try:
            while self._reader.poll():
                self._on_message(self._reader.recv())
        except (EOFError, OSError):
            self._gone()
        except Exception:
            log.exception("transcription message handling failed")

    def _gone(self) -> None:
        self._loop.remove_reader(self._reader.fileno())
        self._reader.close()
        self._input.close()
        self._input.cancel_join_thread()  # nobody reads it any more: never wait on its buffer
        if not self._exited.done():
            self._exited.set_result(None)
        self._on_exit(self._stopping)


# --- the child process ---------------------------------------------------------------


class _Speaker:
    """One participant's audio in the child: an engine and its clock."""

    def __init__(self, engine, at: float) -> None:
        self.engine = engine
        self.origin = at  # stream time 0, in seconds since the transcription began
        self.samples = 0
        self.last = at

    def accept(self, at: float, pcm: np.ndarray) -> list:
        captions = []
        expected = self.origin + (self.samples + len(pcm)) / 16000
        if at - expected > GAP:  # a gap (muted, lost): close the utterance, move the clock on
            captions = self.flush()
            self.origin += at - expected
        self.samples += len(pcm)
        self.last = at
        return captions + self.engine.accept(pcm)

    def flush(self) -> list:
        return self.engine.flush()


def run(settings: dict, inbox, outbox) -> None:
    """Main of the transcription process."""
    os.nice(settings.get("nice", 10))
    from .engine import EngineError, make_engine

    def engine():
        return make_engine(settings["engine"], settings["model_dir"], settings["language"],
                           end_silence=settings.get("end_silence", 0.6),
                           partial_interval=settings.get("partial_interval", 0.0))

    try:
        engine()  # loads the model once (shared by every speaker's engine) and checks the language
    except EngineError as exc:
        outbox.send(("failed", str(exc)))
        return
    except Exception as exc:  # a broken model file, a missing library
        outbox.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    outbox.send(("ready",))
    speakers: dict[str, _Speaker] = {}
    origin = settings["origin"]

    def send(participant_id: str, speaker: _Speaker, captions) -> None:
        for c in captions:
            outbox.send(("caption", participant_id, c.text, round(speaker.origin + c.start, 3),
                         round(speaker.origin + c.end, 3), c.final))

    while True:
        try:
            message = inbox.get(timeout=0.25)
        except queue.Empty:
            message = ()
        if message is None or os.getppid() != settings["parent"]:  # asked to stop, or orphaned
            break
        now = time.monotonic() - origin
        if message and message[0] == "pcm":
            _, participant_id, arrival, data = message
            at = arrival - origin
            speaker = speakers.get(participant_id)
            if speaker is None:
                speaker = speakers[participant_id] = _Speaker(engine(), at - len(data) / 2 / 16000)
            send(participant_id, speaker, speaker.accept(at, np.frombuffer(data, np.int16)))
        elif message and message[0] == "flush" and message[1] in speakers:
            send(message[1], speakers[message[1]], speakers.pop(message[1]).flush())
        if message == ():  # caught up: a speaker silent this long stopped sending (muted, gone)
            for participant_id, speaker in speakers.items():
                if now - speaker.last > GAP and speaker.engine.in_utterance:
                    send(participant_id, speaker, speaker.flush())
    for participant_id, speaker in speakers.items():
        send(participant_id, speaker, speaker.flush())
