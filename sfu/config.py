"""Settings of the forwarding core (network side)."""

from __future__ import annotations

import os
from typing import Literal, Optional

from pydantic import BaseModel, Field, field_validator, model_validator


#: The media UDP port by default (LiveKit's); with N workers, worker i takes it + i.
DEFAULT_UDP_PORT = 7882


class IceConfig(BaseModel):
    """Which local addresses are offered as ICE candidates, and how.

    ``addresses`` empty means every non-loopback interface (aioice's
    default). ``public_address`` is announced as well, for a server behind a
    1:1 NAT. By default every peer connection shares one UDP socket per
    address on ``udp_port`` (single-port mode, sfu/udp_mux.py). ``udp_port``
    0 gives each peer connection a socket of its own instead, on any free
    port or within ``port_min``/``port_max``; a range given without an
    explicit ``udp_port`` means that too.
    Remote candidates follow sfu/candidates.py (loopback ones only when
    ``addresses`` holds a loopback address).
    """

    addresses: list[str] = Field(default_factory=list)
    public_address: Optional[str] = None
    port_min: int = Field(default=0, ge=0, le=65535)
    port_max: int = Field(default=0, ge=0, le=65535)
    udp_port: int = Field(default=DEFAULT_UDP_PORT, ge=0, le=65535)
    #: Remote ICE candidates one peer connection accepts (SDP and trickle):
    #: each one is an address the server sends STUN checks to.
    max_remote_candidates: int = Field(default=20, ge=1, le=1000)

    @model_validator(mode="after")
    def _check_range(self) -> "IceConfig":
        if (self.port_min == 0) != (self.port_max == 0):
            raise ValueError("set both port_min and port_max, or neither")
        if self.port_min > self.port_max:
            raise ValueError("port_min must not exceed port_max")
        if self.port_min and "udp_port" not in self.model_fields_set:
            self.udp_port = 0  # a range asked for: a port per connection from it
        if self.udp_port and self.port_min:
            raise ValueError("udp_port (one shared port) and port_min/port_max (a range) exclude each other")
        return self


class LoadConfig(BaseModel):
    """The load manager (sfu/load_manager.py): when the event loop is over
    budget, shed video one level at a time; give it back when load falls.

    Over budget: the loop's smoothed busy fraction above ``busy_high`` or
    its smoothed lag (late timers, and media waiting in the shared socket)
    above ``lag_high_ms``. Calm: busy below ``busy_low``
    and lag below ``lag_low_ms``. Between the two nothing changes.
    """

    #: False: measure (metrics) but never shed.
    enabled: bool = True
    #: A loop this busy still keeps up (its lag says when it does not): a
    #: room filling at ten joins a second keeps it near 0.9 for seconds.
    busy_high: float = Field(default=0.95, gt=0, le=1)
    busy_low: float = Field(default=0.75, gt=0, le=1)
    lag_high_ms: float = Field(default=50, gt=0)
    lag_low_ms: float = Field(default=20, gt=0)
    #: Seconds between two steps: a step's effect (a key frame, dynacast
    #: pausing layers at publishers) shows within about two seconds. A
    #: quarter of that while the lag is four times ``lag_high_ms``.
    step_interval: float = Field(default=2.0, gt=0, le=600)
    #: Seconds of calm before each step back down.
    hold: float = Field(default=10.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _check_thresholds(self) -> "LoadConfig":
        if self.busy_low > self.busy_high:
            raise ValueError("busy_low must not exceed busy_high")
        if self.lag_low_ms > self.lag_high_ms:
            raise ValueError("lag_low_ms must not exceed lag_high_ms")
        return self


class SfuConfig(BaseModel):
    ice: IceConfig = Field(default_factory=IceConfig)
    #: Graceful overload: when and what the server sheds.
    load: LoadConfig = Field(default_factory=LoadConfig)
    #: Single-port mode: media that waited this many milliseconds in the
    #: shared socket is dropped instead of handed over late (STUN, DTLS and
    #: RTCP are kept); its kernel queue holds four times that much of
    #: ``udp_port_ingress_mbps`` (sfu/receive_buffers.py).
    receive_buffer_ms: int = Field(default=250, ge=20, le=5000)
    #: The ingress (every publisher of the worker) the shared socket of
    #: single-port mode is sized for, in Mbit/s.
    udp_port_ingress_mbps: float = Field(default=40, gt=0, le=10_000)
    #: Bitrate cap announced to publishers through REMB, per video track.
    max_video_bitrate: int = 2_500_000
    #: Minimum interval between keyframe requests sent to one publisher stream.
    keyframe_interval_ms: int = 500
    #: x-google-start-bitrate hint in answers: all simulcast layers flow at once.
    start_bitrate_kbps: int = 2500
    #: How much video the NACK cache keeps per stream.
    cache_ms: int = 2000
    #: Last-N: camera video of at most this many participants per subscriber.
    last_n: int = Field(default=25, ge=1, le=500)
    #: Where recordings (sfu/recorder.py) are written; a relative path is made
    #: absolute against the working directory when the settings are read.
    #: Created 0700 if missing; files are 0600.
    recording_dir: str = Field(default="recordings", validate_default=True)
    #: Recordings in progress at once in one room, and in this process
    #: (``too_many_recordings`` beyond).
    max_recordings_per_room: int = Field(default=2, ge=0)
    max_recordings: int = Field(default=10, ge=0)
    #: Days a finished recording is kept (sfu/recording_files.py); 0: forever.
    recording_retention_days: float = Field(default=0, ge=0)
    #: Seconds a participant whose signaling or media connection dropped stays
    #: in the room ("reconnecting") waiting to resume; 0: it leaves at once.
    resume_grace: float = Field(default=20.0, ge=0, le=600)
    #: Seconds a client has to answer a subscriber offer; then a fresh offer
    #: is sent once, and after that the next change offers again.
    answer_timeout: float = Field(default=10.0, gt=0, le=600)

    # --- transcription (sfu/transcription/, the ``transcription`` extra) ---
    #: "whisper" (faster-whisper, the default) or "pocketsphinx" (light, far less accurate).
    transcription_engine: Literal["whisper", "pocketsphinx"] = "whisper"
    #: A CTranslate2 Whisper model directory for every room (e.g. a larger
    #: model); empty: the tiny.en model the extra installs for English rooms,
    #: the multilingual base model (`make transcription-base`) for the others.
    transcription_model_dir: str = ""
    #: Language of a room's speech when ``start_transcription`` names none.
    transcription_language: str = Field(default="en", pattern=r"^[a-z]{2,3}$")
    #: Rooms transcribed at once in this process, one transcription process
    #: each (``too_many_transcriptions`` beyond).
    max_transcriptions: int = Field(default=2, ge=0)
    #: Audio chunks (20 ms each) queued for a transcription process that falls
    #: behind; more are dropped, never waited for.
    transcription_queue: int = Field(default=3000, ge=10, le=100_000)
    #: Partial captions: an utterance still going on is decoded again every
    #: this many seconds of it (more CPU per speaker); 0: final captions only.
    transcription_partial_interval: float = Field(default=0.0, ge=0, le=30)
    #: Where transcripts are written (one directory each, 0700; files 0600).
    transcript_dir: str = Field(default="transcripts", validate_default=True)

    @field_validator("recording_dir", "transcript_dir")
    @classmethod
    def _absolute(cls, value: str) -> str:
        return os.path.abspath(os.path.expanduser(value))

    @field_validator("transcription_model_dir")
    @classmethod
    def _absolute_if_set(cls, value: str) -> str:
        return os.path.abspath(os.path.expanduser(value)) if value else value
