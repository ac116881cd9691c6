"""What an attached media tap costs the forwarding of everyone else.

In-process: one received Opus stream (real Opus packets, encoded once up
front) forwarded by ``ReceivedStream.on_rtp`` to N raw subscribers, each a
real ``DownTrack`` whose transport SRTP-protects (pylibsrtp) and sends a UDP
datagram to a loopback socket. Runs alternate without and with an
``AudioTap`` on the stream (its decoder thread busy decoding the same
packets); the figure is the event-loop thread's CPU time (``time.thread_time``)
spent in ``on_rtp``, per forwarded packet. Same process, interleaved runs.

    .venv/bin/python -m benchmarks.tap_overhead --subscribers 20 --rate 500 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import os
import socket
import statistics
import struct
import time

import av
import numpy as np
import pylibsrtp

from sfu.codecs import handler
from sfu.downtrack import DownTrack
from sfu.published_track import PublishedTrack
from sfu.stream import ReceivedStream
from sfu.taps import AudioTap
from sfu.media_section import CodecInfo, MediaSection


class RawSubscriber:
    """A subscriber's transport reduced to SRTP protect + sendto."""

    def __init__(self, sock: socket.socket, address) -> None:
        key = os.urandom(30)
        self._session = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
        self._sock, self._address = sock, address

    route_version = 0

    def rtp_sender(self):
        return self._send_parts

    def _send_parts(self, header: bytes, extension: bytes, payload: bytes) -> bool:
        self._sock.sendto(self._session.protect(header + extension + payload), self._address)
        return True

    def send_rtp(self, packet: bytes) -> bool:
        return True

    def send_rtcp(self, packet: bytes) -> bool:
        return True


def opus_packets(count: int) -> list[bytes]:
    """``count`` RTP packets of a 440 Hz tone, 20 ms each."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "stereo", "s16"
    encoder.time_base = fractions.Fraction(1, 48000)
    payloads = []
    for i in range(count):
        t = (np.arange(960) + i * 960) / 48000
        pcm = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(pcm, 2).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48000, i * 960
        payloads += [bytes(p) for p in encoder.encode(frame)]
    return [struct.pack("!BBHII", 0x80, 0x80 * 0 | 111, i & 0xFFFF, i * 960, 1234) + p
            for i, p in enumerate(payloads)]


def fan_out(subscribers: int) -> tuple[PublishedTrack, ReceivedStream, socket.socket]:
    """An Opus track whose one stream is forwarded to ``subscribers`` raw
    subscribers; (track, stream, the loopback socket they all send to)."""
    codec = CodecInfo("audio/opus", 48000, 111, channels=2)
    track = PublishedTrack("TR_bench", "PA_bench", "audio", "0", codec, "microphone")
    stream = ReceivedStream("audio", 1234, 48000, handler("opus"), lambda b: None, 1, 512, 0.5)
    track.set_layer(0, stream)
    drain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    drain.bind(("127.0.0.1", 0))
    drain.setblocking(False)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(subscribers):
        downtrack = DownTrack(track, RawSubscriber(out, drain.getsockname()))
        downtrack.bind(MediaSection(str(i), "audio", CodecInfo("audio/opus", 48000, 111), {}, [5000 + i]))
        track.add_downtrack(downtrack)
        downtrack.set_target(0)
    return track, stream, drain


def numbered(packets: list[bytes]):
    """``packets`` over and over, with rising sequence numbers and timestamps."""
    seq = 0
    while True:
        for packet in packets:
            seq += 1
            yield packet[:2] + struct.pack("!HI", seq & 0xFFFF, (seq * 960) & 0xFFFFFFFF) + packet[8:]


async def run(stream: ReceivedStream, packets, rate: int, duration: float) -> tuple[float, int]:
    """Feed packets at ``rate``/s for ``duration``; (CPU s in on_rtp, packets forwarded).

    ``packets`` is an endless iterator of packets with rising sequence numbers."""
    cpu = 0.0
    sent_before = sum(d.packets_sent for d in stream.readers if isinstance(d, DownTrack))
    start = time.monotonic()
    burst = max(1, rate // 100)
    while time.monotonic() - start < duration:
        batch = [next(packets) for _ in range(burst)]
        t0 = time.thread_time()
        for packet in batch:
            stream.on_rtp(packet, time.monotonic())
        cpu += time.thread_time() - t0
        await asyncio.sleep(burst / rate)
    sent = sum(d.packets_sent for d in stream.readers if isinstance(d, DownTrack)) - sent_before
    return cpu, sent


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--rate", type=int, default=500, help="packets/s into the stream")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each kind, interleaved")
    args = parser.parse_args()

    packets = opus_packets(500)
    track, stream, drain = fan_out(args.subscribers)
    source = numbered(packets)

    results: dict[str, list[float]] = {"without tap": [], "with tap": []}
    await run(stream, source, args.rate, 1.0)  # warm-up
    for _ in range(args.repeat):
        for label in ("without tap", "with tap"):
            tap = AudioTap(track, lambda pcm: None) if label == "with tap" else None
            cpu, sent = await run(stream, source, args.rate, args.duration)
            if tap is not None:
                decoded = tap.items_delivered
                await tap.aclose()
                assert decoded > 0, "the tap decoded nothing"
            results[label].append(cpu / sent * 1e6)
            try:
                while drain.recv(2048):
                    pass
            except BlockingIOError:
                pass
    base = statistics.median(results["without tap"])
    tapped = statistics.median(results["with tap"])
    print(f"{args.subscribers} subscribers, {args.rate} packets/s in, {args.repeat} interleaved runs of {args.duration} s")
    for label, values in results.items():
        print(f"  {label:12s} µs per forwarded packet (event-loop thread): median {statistics.median(values):.2f}  "
              f"runs {', '.join(f'{v:.2f}' for v in values)}")
    print(f"  ratio with/without: {tapped / base:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
