/**
 * Publishing: our tracks on the publisher peer connection (browser -> SFU,
 * the browser offers), negotiated one at a time; simulcast encodings for
 * camera video, one sharp layer for screen share; dynacast (the SFU pauses
 * layers nobody receives).  Published tracks are in `client.localTracks`.
 *
 * @module pysfu/client/publishing
 */

import { SerialQueue } from "./serial_queue.js";

/** Simulcast layers for a >= 720p camera, lowest first (rid q/h/f = quarter/half/full). */
export const SIMULCAST_LAYERS = Object.freeze([
  Object.freeze({ rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 }),
  Object.freeze({ rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 }),
  Object.freeze({ rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_500_000 }),
]);

/**
 * Screen share (issue 8): one layer, sharp rather than smooth - full
 * resolution, at most 15 fps, a generous bitrate; the browser is told to keep
 * the resolution and drop frames when short of bandwidth or CPU.
 */
export const SCREEN_SHARE_ENCODING = Object.freeze({ maxBitrate: 2_500_000, maxFramerate: 15 });

/** The publishing side of one PysfuClient. */
export class Publishing {
  /** @param {import("../pysfu.js").PysfuClient} client */
  constructor(client) {
    this.client = client;
    this._queue = new SerialQueue();
    this._dynacastQueue = new SerialQueue();
  }

  /** The publisher peer connection, created on first use. */
  ensurePc() {
    const client = this.client;
    if (!client.publisherPc) client.publisherPc = client._connection.newPc("publisher");
    return client.publisherPc;
  }

  /** Publish after the negotiations already queued (see `PysfuClient.publish`). */
  publish(stream, tracks, source, simulcast) {
    return this._queue.run(() => this._negotiate(stream, tracks, source, simulcast));
  }

  /**
   * Our live local tracks, published again on a fresh publisher PC (into
   * their old track ids when resuming, as new tracks after a rejoin).
   */
  republish(keepIds = true) {
    return this._queue.run(() => this._republish(keepIds));
  }

  async _republish(keepIds) {
    const client = this.client;
    const entries = [...client.localTracks.entries()].filter(([, e]) => e.track.readyState === "live");
    client.localTracks.clear();
    client.subscribedQualities.clear();
    if (!entries.length) return [];
    const tracks = entries.map(([, e]) => e.track);
    const stream = new MediaStream(tracks);
    return this._negotiate(
      stream, tracks, entries.map(([, e]) => e.info.source), entries.map(([, e]) => Boolean(e.simulcast)),
      entries.map(([id]) => (keepIds ? id : null)),
    );
  }

  async _negotiate(stream, tracks, source, simulcast, republish = []) {
    const client = this.client;
    const pc = this.ensurePc();
    const each = (value, i) => (Array.isArray(value) ? value[i] : value);
    const sources = tracks.map((track, i) => each(source, i) || defaultSource(track));
    const transceivers = tracks.map((track, i) => addSendTransceiver(pc, stream, track, each(simulcast, i), sources[i]));
    try {
      await pc.setLocalDescription(await pc.createOffer());
      const wanted = transceivers.map((tr, i) => ({ mid: tr.mid, source: sources[i], muted: !tracks[i].enabled }));
      republish.forEach((trackId, i) => { if (trackId) wanted[i].track_id = trackId; });
      const pending = client.request({ type: "publish", sdp: pc.localDescription.sdp, tracks: wanted });
      client._connection.gates.publisher.open();
      const res = await pending;
      await pc.setRemoteDescription({ type: "answer", sdp: res.sdp });
      client._reconnect.expectConnected(pc, "publisher");
      await Promise.all(transceivers.map((tr, i) => (sources[i] === "screen_share" ? preferResolution(tr.sender) : null)));
      return this._record(res.tracks, wanted, tracks, transceivers, simulcast);
    } catch (err) {
      await rollback(pc, transceivers);
      throw err;
    }
  }

  /** Pair response TrackInfos with our tracks: by mid (kind and source as a fallback). */
  _record(infos, wanted, tracks, transceivers, simulcast) {
    const client = this.client;
    const unclaimed = infos.filter((t) => !client.localTracks.has(t.id));
    return tracks.map((track, i) => {
      let idx = unclaimed.findIndex((t) => t.mid && t.mid === transceivers[i].mid);
      if (idx < 0) idx = pickIndex(unclaimed, track.kind, wanted[i].source);
      if (idx < 0) return null;
      const [info] = unclaimed.splice(idx, 1);
      client.localTracks.set(info.id, { track, transceiver: transceivers[i], info, simulcast: Array.isArray(simulcast) ? simulcast[i] : simulcast });
      if (client.localParticipant) client.localParticipant.tracks.set(info.id, { ...info });
      return info;
    });
  }

  /** Published track id for a local MediaStreamTrack, or null. */
  trackIdFor(track) {
    for (const [id, entry] of this.client.localTracks) if (entry.track === track) return id;
    return null;
  }

  /** See `PysfuClient.unpublish`. */
  unpublish(trackId) {
    const client = this.client;
    const entry = client.localTracks.get(trackId);
    if (entry) {
      stopTransceiver(entry.transceiver);
      client.localTracks.delete(trackId);
      client.subscribedQualities.delete(trackId);
      if (client.localParticipant) client.localParticipant.tracks.delete(trackId);
    }
    return client.request({ type: "unpublish", track_id: trackId });
  }

  /** See `PysfuClient.setMuted`. */
  setMuted(trackId, muted) {
    const client = this.client;
    const entry = client.localTracks.get(trackId);
    if (entry) {
      entry.track.enabled = !muted;
      entry.info.muted = muted;
    }
    const own = client.localParticipant && client.localParticipant.tracks.get(trackId);
    if (own) own.muted = muted;
    return client.request({ type: "mute", track_id: trackId, muted });
  }

  /** Dynacast (`subscribed_quality_update`): (de)activate our simulcast encodings as the SFU asks. */
  onSubscribedQualityUpdate({ track_id, qualities }) {
    const client = this.client;
    client.subscribedQualities.set(track_id, (qualities || []).map((q) => ({ ...q })));
    this._dynacastQueue
      .run(async () => {
        const entry = client.localTracks.get(track_id);
        if (!entry || client.state === "closed") return;
        await setActiveLayers(entry.transceiver.sender, qualities || []);
      })
      .catch((err) => client._emit("error", { code: "dynacast", message: `setParameters: ${err.message}` }));
  }

  /** Stop sending: every published local track is stopped. */
  stopTracks() {
    for (const { track } of this.client.localTracks.values()) track.stop();
  }
}

/**
 * Add a sendonly transceiver: VP8 preferred for video, simulcast encodings if
 * asked (never for screen share, which gets SCREEN_SHARE_ENCODING instead).
 */
function addSendTransceiver(pc, stream, track, simulcast, source) {
  const init = { direction: "sendonly", streams: [stream] };
  const screen = track.kind === "video" && source === "screen_share";
  if (screen && "contentHint" in track && !track.contentHint) track.contentHint = "detail";
  const encodings = screen ? [{ ...SCREEN_SHARE_ENCODING }] : track.kind === "video" && simulcast ? simulcastEncodings(track) : null;
  if (encodings) init.sendEncodings = encodings;
  const transceiver = pc.addTransceiver(track, init);
  if (track.kind === "video") preferCodec(transceiver, "video/VP8");
  return transceiver;
}

/**
 * Send encodings for a camera track from its capture size (the short side, so
 * portrait video counts like landscape): >= 720 -> q/h/f, >= 360 -> q/h with h
 * at full size, else null (no simulcast).
 * @param {MediaStreamTrack} track
 * @returns {RTCRtpEncodingParameters[]|null}
 */
export function simulcastEncodings(track) {
  const settings = (track.getSettings && track.getSettings()) || {};
  const size = settings.width && settings.height ? Math.min(settings.width, settings.height) : settings.height || 0;
  if (size >= 720) return SIMULCAST_LAYERS.map((layer) => ({ ...layer }));
  if (size >= 360) {
    return [
      { ...SIMULCAST_LAYERS[0], scaleResolutionDownBy: 2 },
      { ...SIMULCAST_LAYERS[1], scaleResolutionDownBy: 1 },
    ];
  }
  return null;
}

/** A failed negotiation: back to the last stable state, its transceivers stopped. */
async function rollback(pc, transceivers) {
  if (pc.signalingState === "have-local-offer") {
    await pc.setLocalDescription({ type: "rollback" }).catch(() => {});
  }
  transceivers.forEach(stopTransceiver);
}

/** Screen share: keep the resolution, drop frames instead (where the browser supports it). */
async function preferResolution(sender) {
  try {
    const params = sender.getParameters();
    if (params.degradationPreference === "maintain-resolution") return;
    params.degradationPreference = "maintain-resolution";
    await sender.setParameters(params);
  } catch {
    // not supported: contentHint "detail" implies the same in Chromium
  }
}

/** Put `mimeType` first in the transceiver's codec preferences, where supported. */
function preferCodec(transceiver, mimeType) {
  if (typeof transceiver.setCodecPreferences !== "function") return;
  const wanted = mimeType.toLowerCase();
  for (const Source of [globalThis.RTCRtpSender, globalThis.RTCRtpReceiver]) {
    const caps = Source && typeof Source.getCapabilities === "function" && Source.getCapabilities("video");
    const codecs = (caps && caps.codecs) || [];
    const first = codecs.filter((c) => c.mimeType.toLowerCase() === wanted);
    if (!first.length) continue;
    try {
      transceiver.setCodecPreferences([...first, ...codecs.filter((c) => c.mimeType.toLowerCase() !== wanted)]);
      return;
    } catch {
      // e.g. older browsers accept only receiver capabilities: try those
    }
  }
}

/** Set `active` of the sender's encodings by rid; true if anything changed. */
async function setActiveLayers(sender, qualities) {
  const params = sender.getParameters();
  let changed = false;
  for (const { rid, enabled } of qualities) {
    const encoding = (params.encodings || []).find((e) => e.rid && e.rid === rid);
    if (encoding && encoding.active !== Boolean(enabled)) {
      encoding.active = Boolean(enabled);
      changed = true;
    }
  }
  if (changed) await sender.setParameters(params);
  return changed;
}

function defaultSource(track) {
  return track.kind === "video" ? "camera" : "microphone";
}

function pickIndex(infos, kind, source) {
  const exact = infos.findIndex((t) => t.kind === kind && t.source === source);
  return exact >= 0 ? exact : infos.findIndex((t) => t.kind === kind);
}

function stopTransceiver(transceiver) {
  try {
    if (typeof transceiver.stop === "function") transceiver.stop();
    else transceiver.sender.replaceTrack(null);
  } catch {
    // already stopped or PC closed
  }
}
