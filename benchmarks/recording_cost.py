"""What a composite recording costs: its own process's CPU, and the
forwarding of everyone else in the SFU's process.

In-process: one publisher's Opus audio and 1280x720 VP8 video (real
packets, encoded once up front, replayed with rising numbers) forwarded by
``ReceivedStream.on_rtp`` to N raw subscribers (real ``DownTrack`` objects,
SRTP-protected with pylibsrtp, sent to a loopback socket). Runs alternate
without and with a ``CompositeRecording`` of the room (720p, 15 fps: the
camera on the stage, decoded, composed, encoded to H.264 + AAC in the
recorder process). Figures per run: the event-loop thread's CPU time per
forwarded packet (all of it, the recording's batching and layout timers
included), the whole SFU process's CPU (the queue's feeder thread too), and
the recorder process's CPU in cores (from /proc).

    .venv/bin/python -m benchmarks.recording_cost --subscribers 20 --duration 10 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import os
import socket
import statistics
import struct
import tempfile
import time
from types import SimpleNamespace

import av
import numpy as np

from benchmarks.tap_overhead import RawSubscriber, opus_packets
from sfu.codecs import handler
from sfu.composite import CompositeRecording
from sfu.downtrack import DownTrack
from sfu.media_section import CodecInfo, MediaSection
from sfu.published_track import PublishedTrack
from sfu.stream import ReceivedStream

VIDEO_FPS = 30
MTU_PAYLOAD = 1100


def vp8_packets(seconds: int) -> list[tuple[bytes, int]]:
    """RTP packets (and their frame index) of a moving 1280x720 picture, one keyframe first."""
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 1280, 720, "yuv420p"
    encoder.time_base = fractions.Fraction(1, VIDEO_FPS)
    encoder.bit_rate = 1_500_000
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "g": "100000"}
    out = []
    x = np.linspace(0, 255, 1280, dtype=np.float32)
    for index in range(seconds * VIDEO_FPS):
        picture = np.empty((720, 1280, 3), np.uint8)
        picture[:] = ((x + index * 8) % 256).astype(np.uint8)[None, :, None]
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
        frame.pts = index
        for packet in encoder.encode(frame):
            data = bytes(packet)
            chunks = [data[i : i + MTU_PAYLOAD] for i in range(0, len(data), MTU_PAYLOAD)]
            for n, chunk in enumerate(chunks):
                marker = 0x80 if n == len(chunks) - 1 else 0
                descriptor = b"\x10" if n == 0 else b"\x00"
                out.append((struct.pack("!BBHII", 0x80, marker | 96, 0, 0, 5678) + descriptor + chunk, index))
    return out


def endless_video(packets):
    seq, loop = 0, 0
    frames = max(index for _, index in packets) + 1
    while True:
        for packet, index in packets:
            seq += 1
            ts = ((loop * frames + index) * 90000 // VIDEO_FPS) & 0xFFFFFFFF
            yield packet[:2] + struct.pack("!HI", seq & 0xFFFF, ts) + packet[8:]
        loop += 1


def endless_audio(packets):
    seq = 0
    while True:
        for packet in packets:
            seq += 1
            yield packet[:2] + struct.pack("!HI", seq & 0xFFFF, (seq * 960) & 0xFFFFFFFF) + packet[8:]


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def feed(streams, sources, rates, duration: float) -> tuple[float, float, int]:
    """Feed each stream at its rate; (loop thread CPU s, process CPU s, packets forwarded)."""
    sent_before = sum(d.packets_sent for s in streams for d in s.readers if isinstance(d, DownTrack))
    thread0, process0 = time.thread_time(), time.process_time()
    start = time.monotonic()
    tick = 0.01
    owed = [0.0] * len(streams)
    while time.monotonic() - start < duration:
        for i, stream in enumerate(streams):
            owed[i] += rates[i] * tick
            while owed[i] >= 1:
                owed[i] -= 1
                stream.on_rtp(next(sources[i]), time.monotonic())
        await asyncio.sleep(tick)
    sent = sum(d.packets_sent for s in streams for d in s.readers if isinstance(d, DownTrack)) - sent_before
    return time.thread_time() - thread0, time.process_time() - process0, sent


def assert_camera_on_stage(path) -> None:
    """The recording shows the decoded camera, not a placeholder."""
    with av.open(str(path)) as container:
        last = [f for f in container.decode(video=0)][-1].to_ndarray(format="rgb24")
    middle = last[100:500, 200:1000]
    assert middle.std() > 20, "the stage shows no camera"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each kind, interleaved")
    args = parser.parse_args()

    video_packets = vp8_packets(4)
    video_rate = len(video_packets) / 4  # packets/s at 30 fps
    audio = PublishedTrack("TR_a", "PA_bench", "audio", "0", CodecInfo("audio/opus", 48000, 111, channels=2),
                           "microphone")
    video = PublishedTrack("TR_v", "PA_bench", "video", "1", CodecInfo("video/VP8", 90000, 96), "camera")
    streams = [
        ReceivedStream("audio", 1234, 48000, handler("opus"), lambda b: None, 1, 512, 0.5),
        ReceivedStream("video", 5678, 90000, handler("VP8"), lambda b: None, 1, 2048, 0.5),
    ]
    audio.set_layer(0, streams[0])
    video.set_layer(0, streams[1])
    drain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    drain.bind(("127.0.0.1", 0))
    drain.setblocking(False)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(args.subscribers):
        for track, codec in ((audio, CodecInfo("audio/opus", 48000, 111)), (video, CodecInfo("video/VP8", 90000, 96))):
            downtrack = DownTrack(track, RawSubscriber(out, drain.getsockname()))
            downtrack.bind(MediaSection(f"{track.kind}{i}", track.kind, codec, {}, [5000 + 2 * i + (track is video)]))
            track.add_downtrack(downtrack)
            downtrack.set_target(0)
    publisher = SimpleNamespace(id="PA_bench", name="bench", identity="bench", hidden=False,
                                tracks={audio.id: audio, video.id: video})
    room = SimpleNamespace(name="bench", participants={publisher.id: publisher},
                           speakers=SimpleNamespace(dominant=publisher.id))
    sources = [endless_audio(opus_packets(250)), endless_video(video_packets)]
    rates = [50, video_rate]

    def drained() -> None:
        try:
            while drain.recv(2048):
                pass
        except BlockingIOError:
            pass

    results: dict[str, list[tuple[float, float]]] = {"none": [], "one recording": []}
    recorder_cores: list[float] = []
    await feed(streams, sources, rates, 1.0)  # warm-up
    with tempfile.TemporaryDirectory() as directory:
        for _ in range(args.repeat):
            for label in results:
                recording = None
                if label == "one recording":
                    recording = CompositeRecording(room, directory)
                    recording.start()
                    await asyncio.sleep(3)  # the process starts (imports), outside the measured window
                    cpu0, wall0 = process_cpu(recording.pid), time.monotonic()
                loop_cpu, process_cpu_s, sent = await feed(streams, sources, rates, args.duration)
                if recording is not None:
                    recorder_cores.append((process_cpu(recording.pid) - cpu0) / (time.monotonic() - wall0))
                    await recording.stop()
                    assert recording.error is None and recording.duration > 0, recording.error
                    assert_camera_on_stage(recording.path)
                results[label].append((loop_cpu / sent * 1e6, process_cpu_s / sent * 1e6))
                drained()
    print(f"{args.subscribers} subscribers of one publisher (Opus 50 packets/s + VP8 1280x720 at {VIDEO_FPS} fps, "
          f"{video_rate:.0f} packets/s), {args.repeat} interleaved runs of {args.duration} s")
    for label, values in results.items():
        loop = [v[0] for v in values]
        whole = [v[1] for v in values]
        print(f"  {label:14s} µs per forwarded packet: event-loop thread median {statistics.median(loop):.2f} "
              f"(runs {', '.join(f'{v:.2f}' for v in loop)}); whole process median {statistics.median(whole):.2f}")
    base = statistics.median(v[0] for v in results["none"])
    recorded = statistics.median(v[0] for v in results["one recording"])
    print(f"  ratio with/without (event-loop thread): {recorded / base:.3f}")
    print(f"  recorder process (720p, 15 fps, one camera on the stage + its voice): "
          f"{statistics.median(recorder_cores):.2f} cores (runs {', '.join(f'{c:.2f}' for c in recorder_cores)})")


if __name__ == "__main__":
    asyncio.run(main())
