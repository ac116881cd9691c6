"""Raw RTP in and out over an aiortc peer connection.

This is the one module that touches aiortc/aioice internals. aiortc is used
for what it does well (SDP, ICE, DTLS, SRTP keys); its media pipeline is
bypassed entirely:

* receive: each UDP socket's ``datagram_received`` is wrapped so SRTP/SRTCP
  datagrams are unprotected and handed to ``on_rtp``/``on_rtcp`` right in
  the socket callback (no asyncio.Queue hop, no RtpPacket object, no await);
  STUN and DTLS still take aioice's and aiortc's normal path. The wrapper
  sorts by the first byte (RFC 7983): what cannot be STUN, DTLS, RTP or
  RTCP is dropped and counted, and DTLS/SRTP are taken only from the
  remote address of the selected pair or of a pair whose ICE check
  succeeded (strangers' datagrams never reach aiortc's DTLS);
* remote candidates pass sfu/candidates.py's policy;
* send: ``send_rtp``/``send_rtcp`` protect and ``sendto`` synchronously on
  the nominated pair's socket;
* aiortc's senders and receivers are never started, so no encoder, decoder,
  decoder thread or RTCP task of theirs ever runs;
* single-port mode (``IceConfig.udp_port``): aioice's StunProtocol runs on a
  sfu/udp_mux.py endpoint of one shared socket instead of a socket of its
  own, and each connection gets a long random ufrag the mux routes by.

The internals relied on are listed in ``INTERNALS`` and checked by
tests/test_transport.py, which fails loudly when aiortc or aioice move them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import random
import secrets
import socket
import time
from typing import Callable, Optional

import aioice.ice
import pylibsrtp
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc import rtcpeerconnection, rtcrtpreceiver
from aiortc.rtcdtlstransport import RTCCertificate
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.codecs import HEADER_EXTENSIONS
from aiortc.exceptions import OperationError
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters
from aiortc.sdp import candidate_from_sdp

from . import datagram_batches, sdp_text, udp_mux
from .candidates import CandidatePolicy, offers_loopback
from .config import IceConfig
from .media_section import (
    URI_REPAIRED_RID, URI_RID, CodecInfo, MediaSection, SdpError, capabilities_for, matching_codec,
    media_for_mid, parse_sdp, require_bundle, require_known_mids,
)
from .metrics import DATAGRAMS_DROPPED

log = logging.getLogger(__name__)

#: (object, attribute) pairs of aiortc/aioice internals this module uses.
INTERNALS = [
    ("aioice.ice.Connection", "_nominated"),
    ("aioice.ice.Connection", "_check_list"),
    ("aioice.ice.Connection", "check_incoming"),
    ("aioice.ice.Connection", "_protocols"),
    ("aioice.ice.Connection", "_local_candidates"),
    ("aioice.ice.Connection", "_local_candidates_start"),
    ("aioice.ice.Connection", "_local_candidates_end"),
    ("aioice.ice.Connection", "_closing"),
    ("aioice.ice.Connection", "_local_username"),
    ("aioice.ice.StunProtocol", "connection_made"),
    ("aioice.ice.StunProtocol", "connection_lost"),
    ("aioice.ice.Connection", "query_consent"),
    ("aioice.ice.StunProtocol", "datagram_received"),
    ("aiortc.RTCIceGatherer", "_connection"),
    ("aiortc.RTCDtlsTransport", "_rx_srtp"),
    ("aiortc.RTCDtlsTransport", "_tx_srtp"),
    ("aiortc.rtcrtpreceiver", "RemoteBitrateEstimator"),
    ("aiortc.RTCRtpSender", "_ssrc"),
    ("aiortc.RTCRtpSender", "_rtx_ssrc"),
    ("aiortc.RTCRtpSender", "_stream_id"),
    ("aiortc.RTCRtpSender", "_track_id"),
    ("aiortc.RTCRtpTransceiver", "_codecs"),
    ("aiortc.RTCRtpTransceiver", "_headerExtensions"),
    ("aiortc.codecs", "HEADER_EXTENSIONS"),
    ("pylibsrtp.Session", "_srtp"),
    ("aiortc.rtcpeerconnection", "RTCCertificate"),
    ("aiortc.rtcpeerconnection", "asyncio"),
    ("aiortc.rtcdtlstransport.RTCCertificate", "_create_ssl_context"),
]


def _accept_rid_extensions() -> None:
    """aiortc negotiates only header extensions it knows; simulcast needs the
    rid ones (the ids here matter only in offers we make)."""
    video = HEADER_EXTENSIONS["video"]
    for ext_id, uri in ((10, URI_RID), (11, URI_REPAIRED_RID)):
        if not any(ext.uri == uri for ext in video):
            video.append(RTCRtpHeaderExtensionParameters(id=ext_id, uri=uri))


_accept_rid_extensions()

_bypassed = contextvars.ContextVar("pysfu_bypassed_receivers", default=False)
_RemoteBitrateEstimator = rtcrtpreceiver.RemoteBitrateEstimator


def _remote_bitrate_estimator():
    """aiortc builds one per video receiver: 1,001 GC-tracked objects that
    every full collection walks (0.5 s pauses at 150 people). A PeerTransport's
    receivers are bypassed, so theirs would never be fed: while one of its
    calls creates transceivers (in that task only), there is none."""
    return None if _bypassed.get() else _RemoteBitrateEstimator()


rtcrtpreceiver.RemoteBitrateEstimator = _remote_bitrate_estimator


_GENERATE_CERTIFICATE = RTCCertificate.__dict__["generateCertificate"]  # the classmethod itself


class _AwaitingInTurn:
    """asyncio as aiortc's peer connection module sees it, but for
    ``gather``, which awaits its awaitables one after the other. aiortc
    gathers coroutines that finish at once (ICE candidates, host
    candidates already gathered): through Tasks each gather costs the
    caller three loop turns, and a join waited 18 of them, each 30-50 ms on
    a full loop, for a few milliseconds of work."""

    def __getattr__(self, name: str):
        return getattr(asyncio, name)

    @staticmethod
    async def gather(*awaitables, return_exceptions: bool = False) -> list:
        results, pending = [], list(awaitables)
        try:
            while pending:
                try:
                    results.append(await pending.pop(0))
                except Exception as exc:
                    if not return_exceptions:
                        raise
                    results.append(exc)
        finally:
            for awaitable in pending:  # not awaited after a failure: no warning
                if asyncio.iscoroutine(awaitable):
                    awaitable.close()
        return results


rtcpeerconnection.asyncio = _AwaitingInTurn()


class _SharedCertificate(RTCCertificate):
    """One DTLS certificate for the process's peer connections (mediasoup
    and Janus keep one too): a connection no longer generates a key pair,
    and the SSL context is built once, not on every handshake (both were
    2 ms of a join's server CPU). Replaced daily, well inside its 30 days."""

    LIFETIME = 24 * 3600.0
    _current: Optional[_SharedCertificate] = None
    _born = 0.0

    @classmethod
    def current(cls) -> _SharedCertificate:
        now = time.monotonic()
        if cls._current is None or now - cls._born > cls.LIFETIME:
            cls._current, cls._born = _GENERATE_CERTIFICATE.__func__(cls), now
        return cls._current

    def __init__(self, key, cert) -> None:
        super().__init__(key, cert)
        self._contexts: dict[tuple, object] = {}  # by SRTP profiles

    def _create_ssl_context(self, srtp_profiles):
        profiles = tuple(profile.openssl_profile for profile in srtp_profiles)
        if profiles not in self._contexts:
            self._contexts[profiles] = super()._create_ssl_context(srtp_profiles)
        return self._contexts[profiles]


@contextlib.contextmanager
def _with_shared_certificate():
    """aiortc generates a certificate in RTCPeerConnection(): hand it ours."""
    rtcpeerconnection.RTCCertificate.generateCertificate = classmethod(lambda cls: _SharedCertificate.current())
    try:
        yield
    finally:
        rtcpeerconnection.RTCCertificate.generateCertificate = _GENERATE_CERTIFICATE


@contextlib.contextmanager
def _creating_bypassed_receivers():
    token = _bypassed.set(True)
    try:
        yield
    finally:
        _bypassed.reset(token)

RtpHandler = Callable[[bytes], None]
PartsSender = Callable[[bytes, bytes], bool]


class PeerTransport:
    """An RTCPeerConnection reduced to a secure datagram pipe plus SDP."""

    def __init__(
        self,
        ice: IceConfig,
        on_rtp: RtpHandler,
        on_rtcp: RtpHandler,
        on_state: Callable[[str], None] = lambda state: None,
        start_bitrate_kbps: int = 0,
    ) -> None:
        self._ice = ice
        self._start_bitrate_kbps = start_bitrate_kbps
        self._rids: dict[str, list[str]] = {}
        self._on_rtp = on_rtp
        self._on_rtcp = on_rtcp
        self._on_state = on_state
        with _with_shared_certificate():
            self.pc = RTCPeerConnection(
                RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
            )
        self.pc.on("connectionstatechange", self._connection_state_changed)
        self._rx: Optional[_Unprotector] = None
        self._tx: Optional[pylibsrtp.Session] = None
        self._protector: Optional[_Protector] = None
        self._udp: Optional[asyncio.DatagramTransport] = None
        self._remote: Optional[tuple] = None
        self._mux: Optional[udp_mux.UdpMux] = None  # single-port mode: batched sends
        self._sockaddr = None
        #: Moves whenever the route or the SRTP context changes: senders from
        #: ``rtp_sender`` are stale then.
        self.route_version = 0
        self._hooked: set[int] = set()
        self._candidates = CandidatePolicy(ice.max_remote_candidates, offers_loopback(ice.addresses))
        self._gatherer = _Gatherer(ice, wrap=self._fast_receiver, shared=bool(ice.udp_port))
        self.closed = False
        self.srtp_errors = 0
        self.send_errors = 0

    # --- SDP ----------------------------------------------------------------

    async def answer(self, offer_sdp: str) -> str:
        """Apply a remote offer (recvonly on our side) and return our answer."""
        description = parse_sdp(offer_sdp)
        require_bundle(description)
        require_known_mids(description)
        offer_sdp = self._candidates.filter_sdp(offer_sdp)
        try:
            with _creating_bypassed_receivers():
                await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            self._rids = sdp_text.offered_rids(offer_sdp)
            self._prepare()
            # aiortc checks some of the offer only here (e.g. an m-line without a direction)
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except (ValueError, KeyError, AttributeError, TypeError, OperationError) as exc:
            raise SdpError(f"offer rejected: {exc}") from exc
        self._mark_video()
        return sdp_text.answer_extras(
            self.pc.localDescription.sdp, self._rids, self._start_bitrate_kbps
        )

    def add_sendonly(
        self, kind: str, codec: CodecInfo, stream_id: str, track_id: str
    ) -> RTCRtpTransceiver:
        """Add a send-only m-line that will carry one forwarded track."""
        with _creating_bypassed_receivers():
            transceiver = self.pc.addTransceiver(kind, direction="sendonly")
        transceiver.setCodecPreferences(capabilities_for(kind, codec))
        transceiver.sender._stream_id = stream_id
        transceiver.sender._track_id = track_id
        self._prepare()
        return transceiver

    def add_slot(self, kind: str, stream_id: str, track_id: str) -> RTCRtpTransceiver:
        """Add a send-only m-line offering every codec we can forward: a slot
        (sfu/slots.py) carries tracks of any codec the client accepted."""
        with _creating_bypassed_receivers():
            transceiver = self.pc.addTransceiver(kind, direction="sendonly")
        transceiver.sender._stream_id = stream_id
        transceiver.sender._track_id = track_id
        self._prepare()
        return transceiver

    def reuse_sendonly(self, transceiver: RTCRtpTransceiver, stream_id: str, track_id: str) -> None:
        """Give a recycled send m-line to another track (same kind and codec)."""
        transceiver.direction = "sendonly"
        transceiver.sender._stream_id = stream_id
        transceiver.sender._track_id = track_id

    def deactivate(self, transceiver: RTCRtpTransceiver) -> None:
        transceiver.direction = "inactive"

    async def create_offer(self) -> str:
        self._prepare()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept_answer(self, answer_sdp: str) -> None:
        parse_sdp(answer_sdp)
        answer_sdp = self._candidates.filter_sdp(answer_sdp)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
        except (ValueError, KeyError, AttributeError, TypeError) as exc:
            raise SdpError(f"answer rejected: {exc}") from exc

    @property
    def signaling_state(self) -> str:
        return self.pc.signalingState

    async def add_candidate(
        self, candidate: str, sdp_mid: Optional[str], sdp_mline_index: Optional[int]
    ) -> None:
        text = candidate[len("candidate:"):] if candidate.startswith("candidate:") else candidate
        try:
            parsed = candidate_from_sdp(text)
        except (ValueError, IndexError, AssertionError) as exc:
            raise SdpError(f"bad ICE candidate: {candidate[:80]!r}") from exc
        if not self._candidates.admit(parsed.protocol, parsed.ip, str(parsed.port)):
            return
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index
        if sdp_mid is None and sdp_mline_index is None:
            parsed.sdpMLineIndex = 0
        await self.pc.addIceCandidate(parsed)

    def received_sections(self) -> list[MediaSection]:
        """What the remote peer sends, one entry per m-line of its offer."""
        remote = parse_sdp(self.pc.remoteDescription.sdp)
        sections = []
        for transceiver in self.pc.getTransceivers():
            media = media_for_mid(remote, transceiver.mid)
            if media is None or media.direction not in ("sendonly", "sendrecv"):
                continue
            if not transceiver._codecs:
                continue
            section = _section(transceiver, media)
            section.rids = self._rids.get(section.mid, [])
            sections.append(section)
        return sections

    def sent_section(
        self, transceiver: RTCRtpTransceiver, codec: Optional[CodecInfo] = None
    ) -> Optional[MediaSection]:
        """What we send on a negotiated send-only m-line (None until answered);
        with ``codec``: sending that codec (None if the answer did not accept it)."""
        if not transceiver._codecs or transceiver.mid is None:
            return None
        if codec is not None and matching_codec(transceiver._codecs, transceiver.kind, codec) is None:
            return None
        section = _section(transceiver, None, codec)
        sender = transceiver.sender
        section.ssrcs = [sender._ssrc]
        section.rtx_ssrcs = {sender._rtx_ssrc: sender._ssrc}
        return section

    # --- media --------------------------------------------------------------

    def send_rtp(self, packet: bytes) -> bool:
        """Protect and send one RTP packet; False when not connected."""
        return self._ready() and self._send(self._tx.protect, packet)

    def send_rtcp(self, packet: bytes) -> bool:
        return self._ready() and self._send(self._tx.protect_rtcp, packet)

    def rtp_sender(self) -> Optional[PartsSender]:
        """A function that protects and sends one RTP packet given in two parts
        (header with its extension block, payload), assembled in place: the
        forwarding hot path, one call per copy. It is bound to the route as it
        is now: callers keep it while ``route_version`` is unchanged. None
        when not connected."""
        if not self._ready():
            return None
        protector, mux = self._protector, self._mux
        if mux is not None:
            return self._batched_sender(protector, mux)
        return self._datagram_sender(protector, self._udp, self._remote)

    def _batched_sender(self, protector: _Protector, mux: udp_mux.UdpMux) -> PartsSender:
        """SendBatch.put itself, its first arguments bound: no Python frame of
        ours between a down-track and the batch."""
        send = functools.partial(mux.batch.put, srtp_lib.srtp_protect, protector.context,
                                 datagram_batches.address_of(self._sockaddr))
        send.keeps = (protector, self._sockaddr)  # the SRTP context and the address it points to
        return send

    def _datagram_sender(self, protector: _Protector, udp, remote: tuple) -> PartsSender:
        protect, backlog = protector.protect, udp.get_write_buffer_size

        def send(head: bytes, payload: bytes) -> bool:
            protected = protect(head, payload) if backlog() < SEND_BACKLOG else None
            if protected is None:
                self.send_errors += 1
                return False
            try:
                udp.sendto(protected, remote)
            except OSError:
                self.send_errors += 1
                return False
            return True

        return send

    def _ready(self) -> bool:
        return (self._protector is not None and self._udp is not None) or self._resolve_route()

    def _send(self, protect: Callable[[bytes], bytes], packet: bytes) -> bool:
        try:
            self._udp.sendto(protect(packet), self._remote)
        except (pylibsrtp.Error, OSError):
            self.send_errors += 1
            return False
        return True

    @property
    def connected(self) -> bool:
        return self._tx is not None and not self.closed

    async def close(self) -> None:
        self.closed = True
        self._forget_route()
        await self.pc.close()

    # --- internals ----------------------------------------------------------

    def _prepare(self) -> None:
        """Neutralize aiortc's media pipeline and take over ICE gathering."""
        for transceiver in self.pc.getTransceivers():
            if id(transceiver) in self._hooked:
                continue
            self._hooked.add(id(transceiver))
            transceiver.sender.send = _park
            transceiver.receiver.receive = _park
            dtls = transceiver.sender.transport
            if id(dtls) not in self._hooked:
                self._hooked.add(id(dtls))
                dtls.on("statechange", lambda dtls=dtls: self._dtls_state_changed(dtls))
                gatherer = dtls.transport.iceGatherer
                connection = gatherer._connection
                connection.gather_candidates = lambda c=connection: self._gatherer.gather(c)
                if self._ice.udp_port:
                    connection._local_username = _unique_ufrag()

    def _mark_video(self) -> None:
        """Single-port mode: tell the shared socket which payload types the
        peer sends video with, so that its video may wait behind audio
        (sfu/video_backlog.py)."""
        transceivers = self.pc.getTransceivers()
        types = udp_mux.video_types(
            codec.payloadType for t in transceivers if t.kind == "video" for codec in t._codecs or ()
        )
        for transceiver in transceivers[:1]:  # bundled: one ICE connection
            connection = transceiver.sender.transport.transport.iceGatherer._connection
            for protocol in connection._protocols:
                if isinstance(protocol.transport, udp_mux.MuxEndpoint):
                    protocol.transport.video_types = types

    def _dtls_state_changed(self, dtls) -> None:
        if dtls.state in ("closed", "failed") and not self.closed:
            # the peer ended DTLS (close_notify): aiortc keeps the PC "connected"
            self._forget_route()
            self._on_state(dtls.state)
            return
        if dtls.state == "connected" and self._tx is None and not self.closed:
            self._rx = _Unprotector(dtls._rx_srtp)
            self._tx = dtls._tx_srtp
            self._protector = _Protector(self._tx)
            self._connection = dtls.transport.iceGatherer._connection
            self._resolve_route()

    def _resolve_route(self) -> bool:
        if self._tx is None or self.closed:
            return False
        pair = self._connection._nominated.get(1)
        if pair is None:
            return False
        self._udp = pair.protocol.transport
        self._remote = pair.remote_addr
        if isinstance(self._udp, udp_mux.MuxEndpoint):
            self._mux = self._udp.mux
            self._sockaddr = self._mux.sockaddr(self._remote)
            self._udp.selected = self._remote
        self.route_version += 1
        return True

    def _forget_route(self) -> None:
        self._rx = self._tx = None
        self._protector = None
        self._udp = None
        self.route_version += 1

    def _connection_state_changed(self) -> None:
        state = self.pc.connectionState
        if state in ("failed", "closed"):
            self._forget_route()
        self._on_state(state)

    def _fast_receiver(self, connection, stun_path):
        """The socket callback: SRTP/SRTCP straight to on_rtp/on_rtcp, STUN and
        DTLS on to aioice/aiortc, everything else dropped (RFC 7983 first byte)."""
        dropped = DATAGRAMS_DROPPED

        def datagram_received(data: bytes, addr) -> None:
            if len(data) < 12:  # shorter than any RTP, DTLS or STUN message
                dropped["too_short"] += 1
                return
            first = data[0]
            if 127 < first < 192:  # RTP / RTCP
                rx = self._rx
                if rx is None or len(data) > SRTP_MAX or addr != self._remote:
                    rx = self._media_receiver(connection, data, addr)
                    if rx is None:
                        return
                if 191 < data[1] < 224:
                    plain = rx.rtcp(data)
                    if plain is None:
                        self.srtp_errors += 1
                    else:
                        self._on_rtcp(plain)
                else:
                    plain = rx.rtp(data)
                    if plain is None:
                        self.srtp_errors += 1
                    else:
                        self._on_rtp(plain)
            elif first < 4:  # STUN
                if len(data) < 20:
                    dropped["too_short"] += 1
                else:
                    stun_path(data, addr)
            elif 19 < first < 64:  # DTLS
                if addr == self._remote or _checked(connection, addr):
                    stun_path(data, addr)  # aioice passes what is not STUN on to DTLS
                else:
                    dropped["unchecked_source"] += 1
            else:
                dropped["not_webrtc"] += 1

        return datagram_received

    def _media_receiver(self, connection, data: bytes, addr) -> Optional[_Unprotector]:
        """The SRTP session for SRTP not from the selected pair's address (None: dropped)."""
        if not _checked(connection, addr):
            DATAGRAMS_DROPPED["unchecked_source"] += 1
        elif self._rx is None:
            DATAGRAMS_DROPPED["not_connected"] += 1
        elif len(data) > SRTP_MAX:
            DATAGRAMS_DROPPED["too_large"] += 1
        else:
            return self._rx
        return None


#: pylibsrtp unprotects into a 1500-byte buffer (ValueError beyond).
SRTP_MAX = 1500


def _checked(connection, addr) -> bool:
    """Whether ``addr`` is the remote end of the connection's selected pair, of
    a pair whose ICE check succeeded, or the source of a verified incoming
    check (a check proves the peer knows our ICE password; a signaled
    candidate alone proves nothing)."""
    addr = tuple(addr[:2])
    if addr in getattr(connection, "_pysfu_verified_sources", ()):
        return True
    for pair in connection._nominated.values():
        if pair.remote_addr == addr:
            return True
    succeeded = aioice.ice.CandidatePair.State.SUCCEEDED
    return any(pair.state == succeeded and pair.remote_addr == addr for pair in connection._check_list)


class _Protector:
    """SRTP protection in one reusable buffer: the packet is assembled in
    place and libsrtp encrypts it there (pylibsrtp's Session.protect copies
    the packet in and out and allocates on every call)."""

    SIZE = 1500
    TRAILER = 16  # the largest SRTP auth tag / AEAD tag we negotiate

    def __init__(self, session: pylibsrtp.Session) -> None:
        self._session = session  # keeps the libsrtp context alive
        self.context = session._srtp[0]
        self._cdata = srtp_ffi.new("char[]", self.SIZE)
        self._buffer = srtp_ffi.buffer(self._cdata)
        self._length = srtp_ffi.new("int *")

    def protect(self, head: bytes, payload: bytes) -> Optional[bytes]:
        """``head + payload`` protected; None when too long or libsrtp refused."""
        h = len(head)
        n = h + len(payload)
        if n > self.SIZE - self.TRAILER:
            return None
        buffer = self._buffer
        buffer[0:h] = head
        buffer[h:n] = payload
        self._length[0] = n
        if srtp_lib.srtp_protect(self.context, self._cdata, self._length):
            return None
        return buffer[0 : self._length[0]]


class _Unprotector:
    """SRTP and SRTCP unprotection in one reusable buffer (pylibsrtp's
    Session.unprotect allocates on every call, and raises on every
    replayed or forged packet)."""

    def __init__(self, session: pylibsrtp.Session) -> None:
        self._session = session  # keeps the libsrtp context alive
        self._context = session._srtp[0]
        self._cdata = srtp_ffi.new("char[]", SRTP_MAX)
        self._buffer = srtp_ffi.buffer(self._cdata)
        self._length = srtp_ffi.new("int *")

    def _unprotect_with(function):  # builds rtp and rtcp below, at class creation
        def unprotect(self, data: bytes) -> Optional[bytes]:
            """The plain packet (``data``: at most SRTP_MAX bytes); None when
            it fails authentication or replay checks."""
            n = len(data)
            self._buffer[0:n] = data
            length = self._length
            length[0] = n
            if function(self._context, self._cdata, length):
                return None
            return self._buffer[0 : length[0]]

        return unprotect

    # one Python frame per packet: no helper between the method and libsrtp
    rtp = _unprotect_with(srtp_lib.srtp_unprotect)
    rtcp = _unprotect_with(srtp_lib.srtp_unprotect_rtcp)
    del _unprotect_with


def restrict_ice(pc: RTCPeerConnection, ice: IceConfig) -> None:
    """Make a plain aiortc peer connection (a client's) gather only on the
    configured addresses and ports; call before setLocalDescription."""
    for transceiver in pc.getTransceivers():
        connection = transceiver.sender.transport.transport.iceGatherer._connection
        if getattr(connection, "_pysfu_restricted", False):
            continue
        connection._pysfu_restricted = True
        gatherer = _Gatherer(ice)
        connection.gather_candidates = lambda c=connection, g=gatherer: g.gather(c)


def local_addresses(ice: IceConfig) -> list[str]:
    """The addresses offered as host candidates."""
    return ice.addresses or aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)


class _Gatherer:
    """Host-candidate gathering on chosen addresses and ports (no STUN)."""

    def __init__(self, ice: IceConfig, wrap=None, shared: bool = False) -> None:
        self._ice = ice
        self._wrap = wrap  # wraps each socket's datagram_received
        self._shared = shared  # single-port mode: endpoints of the shared sockets

    async def gather(self, connection) -> None:
        if connection._local_candidates_start:
            return
        connection._local_candidates_start = True
        _guard_consent(connection)
        _note_valid_checks(connection)
        addresses = local_addresses(self._ice)
        loop = asyncio.get_running_loop()
        for address in addresses:
            protocol = await self._bind(loop, connection, address)
            if protocol is not None:
                self._add_host_candidate(connection, protocol)
        connection._local_candidates_end = True

    async def _bind(self, loop, connection, address: str):
        if self._shared:
            return self._bind_shared(connection, address)
        ports = [0]
        if self._ice.port_min:
            ports = list(range(self._ice.port_min, self._ice.port_max + 1))
            start = random.randrange(len(ports))
            ports = ports[start:] + ports[:start]
        for port in ports:
            try:
                transport, protocol = await loop.create_datagram_endpoint(
                    lambda: aioice.ice.StunProtocol(connection), local_addr=(address, port)
                )
                _size_receive_buffer(transport, SERVER_RECEIVE_BUFFER if self._wrap else RECEIVE_BUFFER)
                return protocol
            except OSError:
                continue
        log.warning("no free UDP port on %s in %s", address, self._ice)
        return None

    def _bind_shared(self, connection, address: str):
        try:
            mux = udp_mux.shared(address, self._ice.udp_port)
        except OSError as exc:
            log.warning("cannot use UDP port %s on %s: %s", self._ice.udp_port, address, exc)
            return None
        protocol = aioice.ice.StunProtocol(connection)
        protocol.connection_made(mux.endpoint(connection.local_username, protocol))
        return protocol

    def _add_host_candidate(self, connection, protocol) -> None:
        host, port = protocol.transport.get_extra_info("sockname")[:2]
        protocol.local_candidate = Candidate(
            foundation=candidate_foundation("host", "udp", host),
            component=1,
            transport="udp",
            priority=candidate_priority(1, "host"),
            host=host,
            port=port,
            type="host",
        )
        connection._protocols.append(protocol)
        connection._local_candidates.append(protocol.local_candidate)
        if self._ice.public_address:
            connection._local_candidates.append(
                Candidate(
                    foundation=candidate_foundation("srflx", "udp", host),
                    component=1,
                    transport="udp",
                    priority=candidate_priority(1, "srflx"),
                    host=self._ice.public_address,
                    port=port,
                    type="srflx",
                    related_address=host,
                    related_port=port,
                )
            )
        if self._wrap is not None:
            protocol.datagram_received = self._wrap(connection, protocol.datagram_received)


#: A client's own socket (signaling/client/, the benchmarks' peers): a late
#: loop turn of a test or a load generator must not overflow it.
RECEIVE_BUFFER = 4 * 1024 * 1024
#: A server connection's own socket (port-range mode): sized by latency
#: (sfu/receive_buffers.py sets it from the settings at start).
SERVER_RECEIVE_BUFFER = 320_000
#: Bytes a port-range connection's transport may hold when the kernel's send
#: buffer is full; copies beyond are dropped, not delayed.
SEND_BACKLOG = 256 * 1024
ICE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _unique_ufrag() -> str:
    """aioice's 4-character ufrags collide often enough among hundreds of
    connections sharing a socket; 16 characters (95 bits) do not."""
    return "".join(secrets.choice(ICE_CHARS) for _ in range(16))


def _size_receive_buffer(transport, size: int) -> None:
    """The socket may queue ``size`` bytes (the kernel caps this at net.core.rmem_max)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        except OSError:
            pass


def _guard_consent(connection) -> None:
    """aioice starts its consent-freshness task when checks complete, even if
    close() ran meanwhile; that task then outlives the connection for ~30 s.
    Refuse to start it on a closing connection."""
    query_consent = connection.query_consent

    async def guarded() -> None:
        if not connection._closing:
            await query_consent()

    connection.query_consent = guarded


def _note_valid_checks(connection) -> None:
    """aioice calls check_incoming only for a check whose USERNAME and
    MESSAGE-INTEGRITY it verified: its source knows our ICE password, so DTLS
    and SRTP from it are accepted even while our own check towards it is
    still in progress (under load Chromium's DTLS can arrive first). In
    single-port mode the shared socket also routes that address to us."""
    check_incoming = connection.check_incoming
    verified = connection._pysfu_verified_sources = set()

    def noted(message, addr, protocol) -> None:
        check_incoming(message, addr, protocol)
        if len(verified) < MAX_VERIFIED_SOURCES:
            verified.add(tuple(addr[:2]))
        if isinstance(protocol.transport, udp_mux.MuxEndpoint):  # single-port mode
            protocol.transport.confirm(addr)

    connection.check_incoming = noted


#: Verified source addresses remembered per connection (a peer has a few candidates).
MAX_VERIFIED_SOURCES = 16


async def _park(*args, **kwargs) -> None:
    """Stands in for aiortc's RTCRtpSender.send / RTCRtpReceiver.receive."""


def _section(transceiver: RTCRtpTransceiver, media, prefer: Optional[CodecInfo] = None) -> MediaSection:
    codecs = transceiver._codecs
    main = matching_codec(codecs, transceiver.kind, prefer) if prefer is not None else None
    if main is None:
        main = next(c for c in codecs if c.mimeType.lower() != f"{transceiver.kind}/rtx")
    rtx = next(
        (
            c
            for c in codecs
            if c.mimeType.lower().endswith("/rtx") and c.parameters.get("apt") == main.payloadType
        ),
        None,
    )
    codec = CodecInfo(
        mime_type=main.mimeType,
        clock_rate=main.clockRate,
        payload_type=main.payloadType,
        rtx_payload_type=rtx.payloadType if rtx else None,
        channels=main.channels,
        parameters=dict(main.parameters),
    )
    extensions = {ext.uri: ext.id for ext in transceiver._headerExtensions}
    section = MediaSection(
        mid=transceiver.mid, kind=transceiver.kind, codec=codec, extensions=extensions
    )
    if media is not None:
        section.ssrcs = [s.ssrc for s in media.ssrc]
        for group in media.ssrc_group:
            if group.semantic == "FID" and len(group.items) == 2:
                section.rtx_ssrcs[int(group.items[1])] = int(group.items[0])
        rtx = set(section.rtx_ssrcs)
        section.ssrcs = [s for s in dict.fromkeys(section.ssrcs) if s not in rtx]
    return section
