"""Active speaker detection (issue 4): audio-level sequences in, speaker
changes out; then real aiortc publishers through the server."""

from __future__ import annotations

import pytest

from sfu.codecs import handler
from sfu.rtp import HEADER, audio_level_byte, extension, one_byte_extensions
from sfu.speaker import SILENT_LEVEL, LevelMeter, SpeakerDetector, SpeakerSettings
from sfu.stream import ReceivedStream

from .media import ToneAudioTrack
from .waiting import eventually

LOUD = 20  # -20 dBov: someone talking close to the microphone
NORMAL = 30  # -30 dBov: ordinary speech
COUGH = 10  # -10 dBov: louder than anyone, but short
NOISE = 70  # -70 dBov: a quiet room
SILENT = SILENT_LEVEL
PEOPLE = ("A", "B", "C")
TICK = 0.25  # the room samples every 250 ms


def run(script: list[tuple[float, dict[str, int]]], step: float = TICK, settings=None):
    """Feed ``script`` ((seconds, {participant: -dBov}) segments; anyone
    missing is silent) to a detector; return [(time, speakers)] outputs."""
    detector = SpeakerDetector(settings)
    outputs = []
    now = 0.0
    for duration, levels in script:
        for _ in range(round(duration / step)):
            now = round(now + step, 6)
            for pid in PEOPLE:
                detector.sample(pid, levels.get(pid, SILENT), False, now)
            speakers = detector.poll(now)
            if speakers is not None:
                outputs.append((now, speakers))
    return outputs


def dominant_changes(outputs) -> list[str]:
    """Who was flagged dominant, each change once."""
    changes: list[str] = []
    for _, speakers in outputs:
        for entry in speakers:
            if entry.get("dominant") and (not changes or changes[-1] != entry["participant_id"]):
                changes.append(entry["participant_id"])
    return changes


S = pytest.param
SCENARIOS = [
    S([(3, {"A": LOUD})], ["A"], id="one-talker"),
    S([(3, {"A": NORMAL, "B": NOISE, "C": NOISE})], ["A"], id="one-talker-over-room-noise"),
    S([(3, {"A": LOUD}), (3, {"B": LOUD}), (3, {"A": LOUD})], ["A", "B", "A"], id="two-alternating-slowly"),
    S(
        [(3, {"A": NORMAL}), (3, {"B": NORMAL}), (0.5, {}), (3, {"C": LOUD})],
        ["A", "B", "C"], id="three-take-turns",
    ),
    S([(2, {"A": LOUD}), (0.5, {"A": LOUD, "B": COUGH}), (2, {"A": LOUD})], ["A"], id="cough-500ms-keeps-floor"),
    S([(2, {"A": LOUD}), (0.75, {"A": LOUD, "B": COUGH}), (2, {"A": LOUD})], ["A"], id="cough-750ms-keeps-floor"),
    S([(2, {"A": NORMAL}), (0.5, {"B": COUGH}), (2, {"A": NORMAL})], ["A"], id="cough-in-a-pause-keeps-floor"),
    S([(2, {"A": LOUD}), (3, {"A": NORMAL, "B": 10})], ["A", "B"], id="much-louder-challenger-takes-over"),
    S([(2, {"A": NORMAL}), (4, {"A": NORMAL, "B": NORMAL - 3})], ["A"], id="slightly-louder-never-takes-over"),
    S([(4, {"A": LOUD, "B": LOUD})], ["A"], id="tie-keeps-first"),
    S([(4, {})], [], id="silence-no-speakers"),
    S([(4, {"A": NOISE, "B": NOISE, "C": 60})], [], id="room-noise-no-speakers"),
]


@pytest.mark.parametrize("script, expected", SCENARIOS)
def test_dominant_speaker_changes(script, expected):
    assert dominant_changes(run(script)) == expected


@pytest.mark.parametrize("step", [0.02, 0.05, TICK], ids=["per-packet-20ms", "50ms", "tick-250ms"])
def test_result_does_not_depend_on_sampling_rate(step):
    script = [(3, {"A": LOUD}), (0.5, {"A": LOUD, "B": COUGH}), (3, {"B": LOUD}), (3, {"A": LOUD})]
    assert dominant_changes(run(script, step)) == ["A", "B", "A"]


def test_silence_reports_nothing_then_speech_then_empty_list():
    outputs = run([(2, {}), (2, {"A": LOUD}), (2, {})])
    assert [speakers for _, speakers in outputs] == [
        [{"participant_id": "A", "level": pytest.approx(0.08, abs=0.02), "dominant": True}],  # still rising
        [],
    ]
    (start, _), (stop, _) = outputs
    assert 2.15 <= start <= 2.6, "speaking starts after ≥150 ms above the threshold"
    assert 4.5 <= stop <= 5.5, "speaking stops after ≥500 ms below the threshold"


def test_dominant_first_then_loudest():
    outputs = run([(2, {"A": NORMAL}), (2, {"A": NORMAL, "B": 28, "C": 26})])  # not 6 dB louder
    _, speakers = outputs[-1]
    assert [s["participant_id"] for s in speakers] == ["A", "C", "B"]
    assert [s.get("dominant", False) for s in speakers] == [True, False, False]
    assert speakers[1]["level"] > speakers[2]["level"] > speakers[0]["level"]


def test_takeover_needs_a_second_of_dominance():
    outputs = run([(2, {"A": LOUD}), (4, {"B": LOUD})])
    took_over = next(t for t, speakers in outputs if speakers and speakers[0]["participant_id"] == "B"
                     and speakers[0].get("dominant"))
    assert 3.0 <= took_over <= 3.75, took_over


@pytest.mark.parametrize(
    "period",
    [S(0.05, id="toggle-every-50ms"), S(0.1, id="toggle-every-100ms"), S(0.3, id="toggle-every-300ms")],
)
def test_rate_limited_to_two_per_second(period):
    # no hysteresis at all, so every toggle changes the speaker set
    settings = SpeakerSettings(enter_after=0, leave_after=0, smoothing=0.001, release=0.001, dominance_after=0)
    detector = SpeakerDetector(settings)
    outputs = []
    now, step = 0.0, 0.01
    for i in range(500):  # 5 s
        now = round(now + step, 6)
        phase = int(now / period) % 3
        for index, pid in enumerate(PEOPLE):
            detector.sample(pid, LOUD if index == phase or (index + 1) % 3 == phase and i % 7 else SILENT, False, now)
        speakers = detector.poll(now)
        if speakers is not None:
            outputs.append(now)
    gaps = [b - a for a, b in zip(outputs, outputs[1:])]
    assert len(outputs) >= 5, "changes still get through"
    assert min(gaps) >= 0.5 - 1e-9
    for second in range(5):
        assert sum(second <= t < second + 1 for t in outputs) <= 2


def test_held_back_change_is_reported_once_the_interval_is_over():
    settings = SpeakerSettings(enter_after=0, leave_after=0, smoothing=0.001, release=0.001)
    detector = SpeakerDetector(settings)
    detector.sample("A", LOUD, False, 1.0)
    assert detector.poll(1.0) == [{"participant_id": "A", "level": pytest.approx(0.1), "dominant": True}]
    detector.sample("B", LOUD, False, 1.1)
    assert detector.poll(1.1) is None  # within 500 ms of the last event
    assert [s["participant_id"] for s in detector.poll(1.5)] == ["A", "B"]
    assert detector.poll(2.5) is None  # nothing changed since


def test_voice_activity_flag_vetoes_noise_once_a_publisher_uses_it():
    detector = SpeakerDetector()
    now = 0.0
    for _ in range(8):  # loud, voiced: speaking
        now += TICK
        detector.sample_byte("A", 0x80 | LOUD, now)
    detector.poll(now)
    assert detector.speaking() == ["A"]
    for _ in range(8):  # just as loud, but its VAD says no voice (a door slam, typing)
        now += TICK
        detector.sample_byte("A", LOUD, now)
    assert detector.speaking() == []
    detector.sample_byte("B", LOUD, now)  # a publisher that never sets V: the level decides
    detector.sample_byte("B", LOUD, now + TICK)
    assert detector.speaking() == ["B"]


def test_leaving_gives_up_the_floor():
    detector = SpeakerDetector()
    for i in range(1, 12):
        now = i * TICK
        detector.sample("A", LOUD, False, now)
        detector.sample("B", NORMAL, False, now)
        detector.poll(now)
    assert detector.dominant == "A"
    detector.remove("A")
    speakers = detector.poll(now + TICK)
    assert speakers == [{"participant_id": "B", "level": pytest.approx(0.0316, rel=0.05), "dominant": True}]


# --- the stream's per-packet recording and the room's meter ------------------


def audio_packet(seq: int, level_byte: int, ext_id: int = 1, two_byte: bool = False) -> bytes:
    if two_byte:
        body = bytes([ext_id, 1, level_byte, 0])
        ext = (0x1000).to_bytes(2, "big") + (1).to_bytes(2, "big") + body
    else:
        ext = one_byte_extensions([(3, b"\x01\x02\x03"), (ext_id, bytes([level_byte])), (4, b"0")])
    return HEADER.pack(0x90, 111, seq, seq * 960, 1234) + ext + b"\xfc" * 40


@pytest.mark.parametrize("two_byte", [False, True], ids=["one-byte-header", "two-byte-header"])
@pytest.mark.parametrize("byte", [0, 13, 0x80 | 30, 127, 0xFF])
def test_fast_level_lookup_matches_the_generic_parser(byte, two_byte):
    packet = audio_packet(1, byte, two_byte=two_byte)
    assert audio_level_byte(packet, 1) == extension(packet, 1)[0] == byte
    assert audio_level_byte(packet, 9) == -1
    assert audio_level_byte(HEADER.pack(0x80, 111, 1, 1, 1) + b"x" * 10, 1) == -1


def test_meter_averages_a_tick_of_packets():
    stream = ReceivedStream("audio", 1234, 48000, handler("opus"), lambda data: None, 1, 16, 1.0, audio_level_id=1)
    meter = LevelMeter()
    for seq in range(12):  # half the tick at -20 dBov, half silent: mean amplitude 0.05
        stream.on_rtp(audio_packet(seq, LOUD if seq % 2 else SILENT), 0.0)
    level, voice = meter.read(stream)
    meter.end_tick()
    assert level == pytest.approx(26.0, abs=0.1) and voice is False
    assert stream.audio_level == bytes([LOUD])  # the latest byte, forwarded as is
    stream.on_rtp(audio_packet(12, 0x80 | NORMAL), 0.0)
    assert meter.read(stream) == (pytest.approx(NORMAL), True)
    meter.end_tick()
    assert meter.read(stream) == (SILENT, False)  # no packet this tick: silence
    stream.close()


# --- through the server, with real aiortc publishers --------------------------


async def test_loud_publisher_becomes_dominant(server, clients):
    # aiortc computes the RFC 6465 level of every frame it encodes and sends it
    # in the ssrc-audio-level extension (V flag never set): a 0.3 tone is
    # about -14 dBov, digital silence -127.
    loud, quiet, listener = await clients(), await clients(), await clients()
    await listener.join("speakers", "listener", auto_subscribe=False)
    await loud.join("speakers", "loud", auto_subscribe=False)
    await quiet.join("speakers", "quiet", auto_subscribe=False)
    await loud.publish([ToneAudioTrack()])
    await quiet.publish([ToneAudioTrack(amplitude=0)])

    def dominant():
        for event in listener.events:
            if event["type"] == "speakers_changed" and event["speakers"]:
                return event["speakers"]
        return None

    speakers = await eventually(dominant, timeout=3, message="no speakers_changed within 3 s")
    assert speakers[0] == {"participant_id": loud.participant_id, "level": pytest.approx(0.2, rel=0.2),
                           "dominant": True}
    assert quiet.participant_id not in [s["participant_id"] for s in speakers]
    room = server.rooms.rooms["speakers"]
    assert room.speakers.dominant == loud.participant_id
    assert any(e["type"] == "speakers_changed" for e in loud.events), "the speaker is told too"
