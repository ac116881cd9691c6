"""The publishing side of a participant: its publisher peer connection,
the tracks it sends, and the RTCP the SFU owes it (RR, REMB, PLI, NACK)."""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from typing import Callable, Optional

from . import rtcp
from .codecs import handler as codec_handler
from .config import SfuConfig
from .ids import new_id
from .published_track import PublishedTrack
from .rtp import extensions, payload_offset
from .stream import ReceivedStream
from .media_section import URI_AUDIO_LEVEL, URI_MID, URI_REPAIRED_RID, URI_RID, MediaSection
from .transport import PeerTransport

log = logging.getLogger(__name__)

MAX_UNKNOWN_SSRCS = 32  # SSRCs mapped from packets at once, beyond those in the SDP


class Publisher:
    def __init__(
        self, participant_id: str, config: SfuConfig, on_state: Callable[[str], None]
    ) -> None:
        self.participant_id = participant_id
        self.config = config
        self._on_state = on_state
        self.transport = self._new_transport()
        self.tracks_by_mid: dict[str, PublishedTrack] = {}
        #: After a resume: tracks published before, waiting to be republished
        #: (the client names them in ``publish``; see ``restart``).
        self.orphans: dict[str, PublishedTrack] = {}
        self._streams: dict[int, ReceivedStream] = {}
        self._rtx: dict[int, tuple[ReceivedStream, int]] = {}
        self._mid_ext_id: Optional[int] = None
        self._rid_ext_id: Optional[int] = None
        self._repaired_rid_ext_id: Optional[int] = None
        self._learned: dict[int, PublishedTrack] = {}  # SSRCs mapped from packets
        self.rtcp_ssrc = random.getrandbits(32)
        self.gone: Counter = Counter()  # counters of streams already removed
        self.packets_in = 0
        self.bytes_in = 0
        self.errors = 0

    def _new_transport(self) -> PeerTransport:
        return PeerTransport(
            self.config.ice, self._on_rtp, self._on_rtcp, self._on_state,
            start_bitrate_kbps=self.config.start_bitrate_kbps,
        )

    async def negotiate(
        self, offer_sdp: str, declared: dict[str, tuple[str, bool, Optional[str]]]
    ) -> tuple[str, list[PublishedTrack], list[PublishedTrack], list[PublishedTrack]]:
        """Answer an offer; ``declared`` maps mid to (source, muted, track id
        to republish into).  Returns (answer, tracks added, tracks removed,
        tracks republished)."""
        answer = await self.transport.answer(offer_sdp)
        sections = {s.mid: s for s in self.transport.received_sections()}
        removed = [t for mid, t in self.tracks_by_mid.items() if mid not in sections]
        for track in removed:
            self.remove(track)
        added, adopted = [], []
        for mid, section in sections.items():
            if self._mid_ext_id is None:
                self._mid_ext_id = section.extensions.get(URI_MID)
            if mid in self.tracks_by_mid:
                continue
            source, muted, track_id = declared.get(mid, (_default_source(section.kind), False, None))
            orphan = self.orphans.get(track_id or "")
            if orphan is not None and _fits(orphan, section):
                adopted.append(self._adopt(orphan, section))
            else:
                added.append(self._add_track(section, source, muted))
        return answer, added, removed, adopted

    def _add_track(self, section: MediaSection, source: str, muted: bool) -> PublishedTrack:
        rids = section.rids if section.kind == "video" else []
        track = PublishedTrack(
            new_id("TR"), self.participant_id, section.kind, section.mid, section.codec,
            source, muted, rids,
        )
        track.audio_level_id = section.extensions.get(URI_AUDIO_LEVEL)
        return self._bind(track, section)

    def _adopt(self, track: PublishedTrack, section: MediaSection) -> PublishedTrack:
        """Republish: the track keeps its id and its subscribers' down-tracks;
        its streams are the new SSRCs of ``section``."""
        del self.orphans[track.id]
        track.mid = section.mid
        track.codec = section.codec
        track.audio_level_id = section.extensions.get(URI_AUDIO_LEVEL)
        track.reset_layers()
        return self._bind(track, section)

    def _bind(self, track: PublishedTrack, section: MediaSection) -> PublishedTrack:
        """The m-line's SSRCs (those it declares; simulcast ones are learned) feed ``track``."""
        self.tracks_by_mid[section.mid] = track
        if section.ssrcs and not track.simulcast:
            self._add_stream(track, section.ssrcs[0], 0)
            for rtx_ssrc, media_ssrc in section.rtx_ssrcs.items():
                if media_ssrc == section.ssrcs[0] and section.codec.rtx_payload_type:
                    self._rtx[rtx_ssrc] = (track.stream, section.codec.payload_type)
        if self._rid_ext_id is None:
            self._rid_ext_id = section.extensions.get(URI_RID)
            self._repaired_rid_ext_id = section.extensions.get(URI_REPAIRED_RID)
        return track

    def _add_stream(self, track: PublishedTrack, ssrc: int, layer: int) -> ReceivedStream:
        video = track.kind == "video"
        stream = ReceivedStream(
            kind=track.kind,
            ssrc=ssrc,
            clock_rate=track.codec.clock_rate,
            codec=codec_handler(track.codec.name),
            send_rtcp=self.transport.send_rtcp,
            rtcp_ssrc=self.rtcp_ssrc,
            cache_size=4096 if video else 256,  # at most; sized by cache_ms
            keyframe_interval=self.config.keyframe_interval_ms / 1000,
            cache_seconds=self.config.cache_ms / 1000,
            audio_level_id=None if video else track.audio_level_id,
            layer=layer,
            describe=track.simulcast,
        )
        self._streams[ssrc] = stream
        track.set_layer(layer, stream)
        return stream

    def remove(self, track: PublishedTrack) -> None:
        self.orphans.pop(track.id, None)
        self._forget_streams(track)
        track.close()

    def _forget_streams(self, track: PublishedTrack) -> None:
        if self.tracks_by_mid.get(track.mid) is track:
            del self.tracks_by_mid[track.mid]
        for ssrc in [s for s, owner in self._learned.items() if owner is track]:
            del self._learned[ssrc]
        for stream in track.layers:
            if stream is None:
                continue
            self.gone.update(stream.counters())
            self._streams.pop(stream.ssrc, None)
            for rtx_ssrc, (rtx_stream, _) in list(self._rtx.items()):
                if rtx_stream is stream:
                    del self._rtx[rtx_ssrc]

    # --- reconnect and resume ---------------------------------------------------

    async def suspend(self) -> None:
        """The client is gone for now: close the PC, keep the tracks."""
        await self.transport.close()

    def restart(self) -> None:
        """The client resumed: a fresh PC; every track waits as an orphan for
        the client to republish it (``publish`` naming its track id)."""
        for track in list(self.tracks_by_mid.values()):
            self._forget_streams(track)
            self.orphans[track.id] = track
        self._mid_ext_id = self._rid_ext_id = self._repaired_rid_ext_id = None
        self.transport = self._new_transport()

    # --- media in -------------------------------------------------------------

    def _on_rtp(self, packet: bytes) -> None:
        try:
            self.packets_in += 1
            self.bytes_in += len(packet)
            ssrc = int.from_bytes(packet[8:12], "big")
            stream = self._streams.get(ssrc)
            if stream is not None:
                stream.on_rtp(packet, time.monotonic())
                return
            rtx = self._rtx.get(ssrc)
            if rtx is not None:
                rtx[0].on_rtx(packet, rtx[1], time.monotonic())
                return
            self._learn_ssrc(packet, ssrc)
        except Exception:  # garbage must never break the socket callback
            self.errors += 1
            log.exception("publisher %s: RTP handling failed", self.participant_id)

    def _learn_ssrc(self, packet: bytes, ssrc: int) -> None:
        """Map an SSRC the SDP did not announce, from its MID and RID extensions."""
        if payload_offset(packet) < 0 or len(self._learned) >= MAX_UNKNOWN_SSRCS:
            return
        found = extensions(packet)
        mid = found.get(self._mid_ext_id)
        track = self.tracks_by_mid.get(mid.decode(errors="replace")) if mid else None
        if track is None:
            return
        payload_type = packet[1] & 0x7F
        rtx = payload_type == track.codec.rtx_payload_type
        layer = 0
        if track.simulcast:
            rid = found.get(self._repaired_rid_ext_id if rtx else self._rid_ext_id)
            layer = track.layer_of_rid(rid.decode(errors="replace")) if rid else None
            if layer is None:
                return  # Chrome repeats MID/RID until acknowledged: the next packet tells
        if rtx and track.layers[layer] is not None:
            self._rtx[ssrc] = (track.layers[layer], track.codec.payload_type)
            self._learned[ssrc] = track
        elif not rtx and track.layers[layer] is None and payload_type == track.codec.payload_type:
            self._learned[ssrc] = track
            self._add_stream(track, ssrc, layer).on_rtp(packet, time.monotonic())

    def _on_rtcp(self, packet: bytes) -> None:
        try:
            now = time.monotonic()
            for item in rtcp.parse(packet):
                if isinstance(item, rtcp.SenderReport):
                    stream = self._streams.get(item.ssrc)
                    if stream is not None:
                        stream.on_sender_report(item, now)
        except Exception:
            self.errors += 1
            log.exception("publisher %s: RTCP handling failed", self.participant_id)

    # --- RTCP out -------------------------------------------------------------

    def send_reports(self, now: float) -> None:
        """Receiver reports for every stream, and a REMB bitrate cap for video."""
        blocks = [b for s in self._streams.values() if (b := s.report_block(now)) is not None]
        if not blocks:
            return
        packet = rtcp.build_rr(self.rtcp_ssrc, blocks)
        video = [t for t in self.tracks_by_mid.values() if t.kind == "video"]
        ssrcs = [s.ssrc for t in video for s in t.layers if s is not None]
        if ssrcs:
            bitrate = self.config.max_video_bitrate * len(video)
            packet += rtcp.build_remb(self.rtcp_ssrc, bitrate, ssrcs)
        self.transport.send_rtcp(packet)

    def tick(self, now: float) -> None:
        """Layer bitrates and dynacast decisions (every few hundred ms)."""
        for stream in self._streams.values():
            stream.update_bitrate(now)
        for track in self.tracks_by_mid.values():
            track.dynacast(now)

    @property
    def streams(self) -> list[ReceivedStream]:
        return list(self._streams.values())

    async def close(self) -> None:
        for track in [*self.tracks_by_mid.values(), *self.orphans.values()]:
            self.remove(track)
        await self.transport.close()


def _fits(track: PublishedTrack, section: MediaSection) -> bool:
    """Whether a republished m-line can carry on an existing track: its
    subscribers' m-lines were negotiated for that codec and those layers."""
    return (
        track.kind == section.kind
        and track.codec.mime_type.lower() == section.codec.mime_type.lower()
        and (track.rids if track.kind == "video" else []) == _ordered_rids(section)
    )


def _ordered_rids(section: MediaSection) -> list[str]:
    from .published_track import _ordered

    return _ordered(section.rids) if section.kind == "video" else []


def _default_source(kind: str) -> str:
    return "microphone" if kind == "audio" else "camera"
