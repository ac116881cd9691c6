"""Active speaker detection from the RFC 6464 audio-level header extension.

Nothing is decoded: every audio packet of a publisher that negotiated
``urn:ietf:params:rtp-hdrext:ssrc-audio-level`` carries one byte, bit 7 the
voice-activity flag (V) and the low 7 bits the level as -dBov (0 is the
loudest, 127 silence).  The stream records it per packet (a table lookup and
three additions, see ``ReceivedStream.on_rtp``); the room samples every
stream each tick (250 ms) through a :class:`LevelMeter` and feeds one sample
per participant to its :class:`SpeakerDetector`.

The detector is pure logic (no asyncio, no clock of its own: every call
carries ``now``):

- a smoothed level per participant: an exponential moving average of the
  linear amplitude ``10 ** (-level / 20)`` with a ~300 ms time constant
  (150 ms when falling, so that silence shows up within about half a
  second), weighted by the real time between samples.  Averaging amplitudes
  rather than decibels keeps the short pauses between words from pulling a
  talker's level down to the silence of digital zero (-127 dBov);
- a *speaking* state with hysteresis: entered after the smoothed level stays
  above ``enter_dbov`` (-45 dBov) for ``enter_after`` (150 ms), left after it
  stays below ``leave_dbov`` (-52 dBov) for ``leave_after`` (500 ms);
- a *dominant* speaker with hysteresis, in the spirit of Jitsi's
  DominantSpeakerIdentification: the first one to speak takes the floor; a
  challenger takes it over only after being louder than the dominant speaker
  by ``margin_db`` for ``dominance_after`` (1 s), so a cough does not steal
  it.  The dominant speaker keeps the floor through their own pauses;
- :meth:`SpeakerDetector.poll` returns the ``speakers_changed`` payload when
  the set of speakers or the dominant one changed, at most once per
  ``min_interval`` (500 ms): a change inside the interval is held back and
  reported (as the state then is) once the interval is over.

If a publisher ever sets the V flag, its packets without V count as silence
(its own voice activity detection vetoes noise); aiortc never sets V, so for
publishers that never do, the level alone decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

SILENT_LEVEL = 127  # -dBov of digital silence in RFC 6464

#: Linear amplitude of every audio-level byte (the V bit is ignored): the
#: stream adds ``AMPLITUDE[byte]`` per packet, so the hot path does no math.
AMPLITUDE: tuple[float, ...] = tuple(
    0.0 if (b & 0x7F) == SILENT_LEVEL else 10 ** (-(b & 0x7F) / 20) for b in range(256)
)


def amplitude_of(level: float) -> float:
    """Linear amplitude (1.0 = full scale) of a level in -dBov."""
    return 0.0 if level >= SILENT_LEVEL else 10 ** (-level / 20)


def level_of(amplitude: float) -> float:
    """Level in -dBov (0..127) of a linear amplitude."""
    if amplitude <= 0:
        return float(SILENT_LEVEL)
    return min(float(SILENT_LEVEL), max(0.0, -20 * math.log10(amplitude)))


@dataclass
class SpeakerSettings:
    smoothing: float = 0.3  # s: time constant of the level's moving average, rising
    release: float = 0.15  # s: the same, falling (silence shows within ~0.5 s)
    enter_dbov: float = -45.0  # smoothed level above which one starts speaking
    enter_after: float = 0.15  # s above enter_dbov before speaking
    leave_dbov: float = -52.0  # smoothed level below which one stops speaking
    leave_after: float = 0.5  # s below leave_dbov before not speaking
    margin_db: float = 6.0  # how much louder a challenger must be (2x amplitude)
    dominance_after: float = 1.0  # s a challenger must stay louder to take over
    min_interval: float = 0.5  # s between two speakers_changed outputs
    max_gap: float = 1.0  # s: a longer gap between samples restarts the average


class _Speaker:
    __slots__ = (
        "amplitude", "last_time", "speaking", "above_since", "below_since",
        "challenge_since", "uses_vad",
    )

    def __init__(self) -> None:
        self.amplitude = 0.0
        self.last_time: Optional[float] = None
        self.speaking = False
        self.above_since: Optional[float] = None
        self.below_since: Optional[float] = None
        self.challenge_since: Optional[float] = None
        self.uses_vad = False


class SpeakerDetector:
    """Speaking states and the dominant speaker of one room."""

    def __init__(self, settings: Optional[SpeakerSettings] = None) -> None:
        self.settings = settings or SpeakerSettings()
        s = self.settings
        self._enter = amplitude_of(-s.enter_dbov)
        self._leave = amplitude_of(-s.leave_dbov)
        self._margin = 10 ** (s.margin_db / 20)
        self._speakers: dict[str, _Speaker] = {}
        #: Who holds the floor (kept through their pauses; None before anyone spoke).
        self.dominant: Optional[str] = None
        self._reported: tuple = (None, frozenset())
        self._last_output: Optional[float] = None

    # --- input ----------------------------------------------------------------

    def sample(self, participant_id: str, level: float, voice: bool, now: float) -> None:
        """One level of a participant: ``level`` in -dBov (0 loudest, 127
        silence), ``voice`` the RFC 6464 V flag, ``now`` in seconds."""
        speaker = self._speakers.get(participant_id)
        if speaker is None:
            speaker = self._speakers[participant_id] = _Speaker()
        if voice:
            speaker.uses_vad = True
        target = 0.0 if speaker.uses_vad and not voice else amplitude_of(level)
        s = self.settings
        last = speaker.last_time
        if last is None or now - last > s.max_gap:
            speaker.amplitude = target if last is None else 0.5 * speaker.amplitude + 0.5 * target
        elif now > last:
            tau = s.smoothing if target > speaker.amplitude else s.release
            speaker.amplitude += (1 - math.exp(-(now - last) / tau)) * (target - speaker.amplitude)
        speaker.last_time = now
        self._update_speaking(speaker, now)

    def sample_byte(self, participant_id: str, byte: int, now: float) -> None:
        """One raw RFC 6464 level byte (V flag in bit 7)."""
        self.sample(participant_id, byte & 0x7F, bool(byte & 0x80), now)

    def remove(self, participant_id: str) -> None:
        """The participant left: they stop speaking and lose the floor at once."""
        self._speakers.pop(participant_id, None)
        if self.dominant == participant_id:
            self.dominant = None

    def _update_speaking(self, speaker: _Speaker, now: float) -> None:
        s = self.settings
        if not speaker.speaking:
            if speaker.amplitude > self._enter:
                if speaker.above_since is None:
                    speaker.above_since = now
                if now - speaker.above_since >= s.enter_after:
                    speaker.speaking = True
                    speaker.below_since = None
            else:
                speaker.above_since = None
        elif speaker.amplitude < self._leave:
            if speaker.below_since is None:
                speaker.below_since = now
            if now - speaker.below_since >= s.leave_after:
                speaker.speaking = False
                speaker.above_since = None
                speaker.challenge_since = None
        else:
            speaker.below_since = None

    # --- decisions and output ------------------------------------------------

    def level(self, participant_id: str) -> float:
        """Smoothed linear amplitude (0..1) of a participant."""
        speaker = self._speakers.get(participant_id)
        return speaker.amplitude if speaker is not None else 0.0

    def speaking(self) -> list[str]:
        return [pid for pid, s in self._speakers.items() if s.speaking]

    def _update_dominant(self, now: float) -> None:
        speaking = {pid: s for pid, s in self._speakers.items() if s.speaking}
        if self.dominant not in self._speakers:
            self.dominant = None
        if self.dominant is None:
            for s in self._speakers.values():
                s.challenge_since = None
            if speaking:  # nobody holds the floor: the loudest speaker takes it
                self.dominant = max(speaking, key=lambda pid: speaking[pid].amplitude)
            return
        holder = self._speakers[self.dominant]
        bar = holder.amplitude * self._margin
        winner, best = None, 0.0
        for pid, s in self._speakers.items():
            if pid == self.dominant or pid not in speaking or s.amplitude <= bar:
                s.challenge_since = None
                continue
            if s.challenge_since is None:
                s.challenge_since = now
            if now - s.challenge_since >= self.settings.dominance_after and s.amplitude > best:
                winner, best = pid, s.amplitude
        if winner is not None:
            self.dominant = winner
            for s in self._speakers.values():
                s.challenge_since = None

    def active(self) -> list[dict]:
        """Active speakers, the dominant one first, then by smoothed level."""
        speaking = self.speaking()
        speaking.sort(key=lambda pid: (pid != self.dominant, -self._speakers[pid].amplitude))
        out = []
        for pid in speaking:
            entry = {"participant_id": pid, "level": round(min(1.0, self._speakers[pid].amplitude), 4)}
            if pid == self.dominant:
                entry["dominant"] = True
            out.append(entry)
        return out

    def poll(self, now: float) -> Optional[list[dict]]:
        """Decide the dominant speaker; return the ``speakers`` list when the
        speakers or the dominant one changed since the last output and the
        last output is at least ``min_interval`` old, else None."""
        self._update_dominant(now)
        speaking = frozenset(self.speaking())
        state = (self.dominant if self.dominant in speaking else None, speaking)
        if state == self._reported:
            return None
        if self._last_output is not None and now - self._last_output < self.settings.min_interval:
            return None  # held back: reported on a later poll if still changed
        self._reported = state
        self._last_output = now
        return self.active()


class LevelMeter:
    """Reads what streams recorded since the last read (one tick's window).

    A stream keeps running counters (packets with a level, the sum of their
    amplitudes, packets with the V flag); the meter turns the difference
    since its previous read into one sample: the mean amplitude as -dBov,
    and whether any packet had V set.  A stream with no new packet reads as
    silence.
    """

    def __init__(self) -> None:
        self._marks: dict[object, tuple[int, float, int]] = {}  # by stream
        self._seen: dict[object, tuple[int, float, int]] = {}

    def read(self, stream) -> tuple[float, bool]:
        counters = (stream.audio_level_packets, stream.audio_loudness, stream.audio_voiced)
        packets, loudness, voiced = self._marks.get(stream, (0, 0.0, 0))
        self._seen[stream] = counters
        count = counters[0] - packets
        if count <= 0:
            return float(SILENT_LEVEL), False
        return level_of((counters[1] - loudness) / count), counters[2] > voiced

    def end_tick(self) -> None:
        """Keep the marks of the streams read this tick, forget the others."""
        self._marks, self._seen = self._seen, {}
