"""What live transcription costs, and how good and quick its captions are.

Speech is espeak-ng reading known English sentences (a pause after each).

- ``engines``: WER and CPU seconds per audio second of each engine, decoding
  the sentences through the same utterance cutter the server uses.
- ``captions``: a real transcription process (service.py) fed N speakers in
  real time; caption delay after the end of speech (p50/p95) and the
  process's CPU per active speaker, from /proc.
- ``forwarding``: one Opus stream of that speech forwarded to N raw
  subscribers in-process (as benchmarks/tap_overhead.py), runs without and
  with a transcription (an AudioTap feeding a real process) interleaved:
  event-loop CPU per forwarded packet in ``on_rtp``, and event-loop lag
  (how late a 5 ms sleep wakes up), p50/p99/max.

    .venv/bin/python -m benchmarks.transcription --part engines,captions,forwarding
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import os
import re
import statistics
import struct
import subprocess
import tempfile
import time

import av
import numpy as np

SENTENCES = [
    "Please open the window in the kitchen.",
    "We will meet again next week on Monday.",
    "Thank you for joining the meeting this morning.",
    "I would like a cup of coffee with milk.",
    "The children are playing in the garden.",
    "The train leaves the station at nine o'clock.",
    "Can you send me the report before Friday?",
    "My brother works at the hospital near the river.",
]
PAUSE = 1.2
RATE = 16000


def speech(pause: float = PAUSE, first: int = 0) -> tuple[np.ndarray, str]:
    """SENTENCES (from the ``first``-th on, round) as 16 kHz mono int16, each
    followed by ``pause`` s of silence; and the reference text."""
    sentences = SENTENCES[first:] + SENTENCES[:first]
    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        for sentence in sentences:
            path = os.path.join(tmp, "s.wav")
            subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", path, sentence], check=True)
            with av.open(path) as container:
                resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
                parts += [f.to_ndarray().reshape(-1) for fr in container.decode(audio=0) for f in resampler.resample(fr)]
            parts.append(np.zeros(int(pause * RATE), np.int16))
    return np.concatenate(parts), " ".join(sentences)


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


def wer(reference: str, hypothesis: str) -> float:
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        diagonal, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (r != h))
    return row[-1] / max(1, len(ref))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# --- engines -----------------------------------------------------------------------


def bench_engines(names: list[str]) -> None:
    from sfu.transcription.engine import BASE_MODEL_DIR, make_engine

    pcm, reference = speech()
    print(f"engines: {len(SENTENCES)} espeak-ng sentences, {len(pcm) / RATE:.1f} s of audio, 20 ms chunks, 1 thread")
    for name in names:
        started = time.process_time()
        engine = make_engine("whisper", BASE_MODEL_DIR, "en") if name == "whisper-base" else make_engine(name, "", "en")
        load = time.process_time() - started
        started = time.process_time()
        captions = [c for i in range(0, len(pcm), 320) for c in engine.accept(pcm[i:i + 320])] + engine.flush()
        cpu = time.process_time() - started
        text = " ".join(c.text for c in captions)
        print(f"  {name:13s} WER {wer(reference, text):.3f}  CPU {cpu / (len(pcm) / RATE):.3f} s per audio s  "
              f"(load {load:.1f} CPU-s, {len(captions)} captions)")


# --- captions: delay and CPU per speaker ----------------------------------------------


def process_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench_captions(speakers_list: list[int], engine: str) -> None:
    from sfu.transcription.service import TranscriptionProcess

    pcm, _ = speech()
    print(f"captions ({engine}): speakers fed in real time, {len(pcm) / RATE:.1f} s of speech each")
    for speakers in speakers_list:
        arrivals: list[tuple[float, tuple]] = []  # (monotonic time, message)
        ready = asyncio.Event()

        def on_message(message):
            arrivals.append((time.monotonic(), message))
            if message[0] == "ready":
                ready.set()

        process = TranscriptionProcess({"engine": engine, "model_dir": "", "language": "en"}, 3000,
                                       on_message, lambda asked: None)
        await asyncio.wait_for(ready.wait(), 120)
        # every speaker reads the sentences, each starting at another one (overlapping speech)
        voices = [speech(first=i * len(SENTENCES) // speakers) for i in range(speakers)]
        cpu_before, started = process_cpu(process.pid), time.monotonic()
        length = min(len(v[0]) for v in voices)
        for position in range(0, length, 320):
            for s, (voice, _) in enumerate(voices):
                process.feed(f"PA_{s}", voice[position:position + 320])
            await asyncio.sleep(max(0.0, started + (position + 320) / RATE - time.monotonic()))
        fed = time.monotonic() - started
        while not arrivals or time.monotonic() - arrivals[-1][0] < 3:  # the last utterances decoded
            await asyncio.sleep(0.2)
        cpu = process_cpu(process.pid) - cpu_before
        await process.stop(120)
        captions = [(at, m) for at, m in arrivals if m[0] == "caption"]
        delays = [at - process._origin - m[4] for at, m in captions]
        texts: dict[str, list[str]] = {}
        for _, m in captions:
            texts.setdefault(m[1], []).append(m[2])
        wers = [wer(voices[int(p[3:])][1], " ".join(t)) for p, t in texts.items()]
        print(f"  {speakers} speaker(s): {len(captions)} captions, delay after end of speech p50 "
              f"{percentile(delays, 50):.2f} s, p95 {percentile(delays, 95):.2f} s, max {max(delays):.2f} s; "
              f"WER {statistics.mean(wers):.3f}; dropped {process.dropped}; "
              f"process CPU {cpu / fed / speakers:.3f} cores per active speaker")


# --- forwarding with and without transcription ------------------------------------------


def opus_rtp(pcm16k: np.ndarray) -> list[bytes]:
    """The speech as RTP packets of Opus (48 kHz), 20 ms each."""
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=48000)
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "stereo", "s16"
    encoder.time_base = fractions.Fraction(1, 48000)
    source = av.AudioFrame.from_ndarray(pcm16k.reshape(1, -1), format="s16", layout="mono")
    source.sample_rate, source.pts = RATE, 0
    payloads = []
    for frame in resampler.resample(source):
        payloads += [bytes(p) for p in encoder.encode(frame)]
    return [struct.pack("!BBHII", 0x80, 111, i & 0xFFFF, i * 960, 1234) + p for i, p in enumerate(payloads)]


async def lag_probe(samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        t0 = time.monotonic()
        await asyncio.sleep(0.005)
        samples.append(time.monotonic() - t0 - 0.005)


async def bench_forwarding(subscribers: int, rate: int, duration: float, repeat: int) -> None:
    from sfu.taps import AudioTap
    from sfu.transcription.service import TranscriptionProcess

    from .tap_overhead import fan_out, numbered, run

    pcm, _ = speech()
    packets = opus_rtp(pcm)
    track, stream, drain = fan_out(subscribers)
    source = numbered(packets)
    ready = asyncio.Event()
    captions = []

    def on_message(message):
        if message[0] == "ready":
            ready.set()
        elif message[0] == "caption":
            captions.append(message)

    process = TranscriptionProcess({"engine": "whisper", "model_dir": "", "language": "en"}, 3000,
                                   on_message, lambda asked: None)
    await asyncio.wait_for(ready.wait(), 120)
    results = {label: {"cpu": [], "lag": []} for label in ("off", "on")}
    await run(stream, source, rate, 1.0)
    for _ in range(repeat):
        for label in ("off", "on"):
            tap = AudioTap(track, lambda chunk: process.feed("PA_bench", chunk)) if label == "on" else None
            lags: list[float] = []
            stop = asyncio.Event()
            probe = asyncio.ensure_future(lag_probe(lags, stop))
            cpu, sent = await run(stream, source, rate, duration)
            stop.set()
            await probe
            if tap is not None:
                await tap.aclose()
            results[label]["cpu"].append(cpu / sent * 1e6)
            results[label]["lag"] += lags
            try:
                while drain.recv(2048):
                    pass
            except BlockingIOError:
                pass
    await process.stop(60)
    print(f"forwarding: {subscribers} subscribers, {rate} packets/s in (speech), {repeat} interleaved runs of "
          f"{duration} s; {len(captions)} captions decoded meanwhile, {process.dropped} chunks dropped")
    for label, r in results.items():
        lag = [x * 1000 for x in r["lag"]]
        print(f"  transcription {label:3s}: on_rtp µs per forwarded packet median {statistics.median(r['cpu']):.2f} "
              f"(runs {', '.join(f'{v:.2f}' for v in r['cpu'])}); loop lag ms p50 {percentile(lag, 50):.2f} "
              f"p99 {percentile(lag, 99):.2f} max {max(lag):.2f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", default="engines,captions,forwarding")
    parser.add_argument("--engines", default="whisper,whisper-base,pocketsphinx",
                        help="whisper: tiny.en; whisper-base: make transcription-base's model")
    parser.add_argument("--speakers", default="1,2", help="active speakers per room (captions part)")
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--rate", type=int, default=500, help="packets/s into the stream (forwarding part)")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=4)
    args = parser.parse_args()
    parts = args.part.split(",")
    if "engines" in parts:
        bench_engines(args.engines.split(","))
    if "captions" in parts:
        await bench_captions([int(n) for n in args.speakers.split(",")], "whisper")
    if "forwarding" in parts:
        await bench_forwarding(args.subscribers, args.rate, args.duration, args.repeat)


if __name__ == "__main__":
    asyncio.run(main())
