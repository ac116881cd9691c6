/**
 * Subscribing: the subscriber peer connection (SFU -> browser, the SFU
 * offers), answered one offer at a time; in slot subscription the slots'
 * occupants instead.  Which track each m-line carries is in
 * `client.subscribedMids`; the tracks delivered are in `client.remoteTracks`
 * and announced as `track` / `trackremoved`.
 *
 * @module pysfu/client/subscribing
 */

import { TRACK_ALIASES, withAliases } from "./aliases.js";
import { findTrack } from "./roster.js";
import { SerialQueue } from "./serial_queue.js";

const ACTIVE_DIRECTIONS = new Set(["recvonly", "sendrecv"]);

/** The subscribing side of one PysfuClient. */
export class Subscribing {
  /** @param {import("../pysfu.js").PysfuClient} client */
  constructor(client) {
    this.client = client;
    this._offerQueue = new SerialQueue();
  }

  /** The subscriber peer connection, created on first use. */
  ensurePc() {
    const client = this.client;
    if (client.subscriberPc) return client.subscriberPc;
    const pc = client._connection.newPc("subscriber");
    pc.ontrack = (e) => this._onRemoteTrack(e.transceiver, e.streams);
    client.subscriberPc = pc;
    return pc;
  }

  /** `subscriber_offer`: answered after the offers and slot changes before it. */
  queueOffer(msg) {
    this._offerQueue
      .run(() => this._answerOffer(msg))
      .catch((err) => this.client._emit("error", { code: err.code || "subscriber_offer", message: err.message }));
  }

  async _answerOffer({ sdp, tracks }) {
    const client = this.client;
    if (client.state === "closed") return;
    const pc = this.ensurePc();
    client.subscribedMids = new Map(tracks.map((t) => [t.mid, t]));
    this._dropStaleRemoteTracks();
    await pc.setRemoteDescription({ type: "offer", sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    const pending = client.request({ type: "subscriber_answer", sdp: pc.localDescription.sdp });
    client._connection.gates.subscriber.open();
    await pending;
    client._reconnect.expectConnected(pc, "subscriber");
    this._reconcileRemoteTracks();
  }

  /** `slots_changed`, after the offer's answer (same queue): each slot's occupant is the track on its mid. */
  queueSlots(slots) {
    this._offerQueue
      .run(async () => this._applySlots(slots))
      .catch((err) => this.client._emit("error", { code: err.code || "slots_changed", message: err.message }));
  }

  _applySlots(slots) {
    const client = this.client;
    if (client.state === "closed") return;
    client.slots = slots.map((slot) => ({ ...slot }));
    const occupied = slots.filter((slot) => slot.track_id && slot.participant_id);
    client.subscribedMids = new Map(occupied.map((slot) => [slot.mid, { ...slot }]));
    this._dropStaleRemoteTracks();
    this._reconcileRemoteTracks();
  }

  /** The subscriber PC is gone: every remote track ends, pending offers are dropped. */
  reset() {
    const client = this.client;
    this.dropAll();
    client.subscribedMids = new Map();
    client.slots = [];
    this._offerQueue = new SerialQueue();
  }

  /** Every delivered remote track ends (`trackremoved`). */
  dropAll() {
    for (const mid of [...this.client.remoteTracks.keys()]) this._dropRemoteTrack(mid);
  }

  /** A remote track currently delivered, by published track id, or null. */
  remoteTrackById(trackId) {
    for (const remote of this.client.remoteTracks.values()) if (remote.track_id === trackId) return remote;
    return null;
  }

  /** `layer_changed`: the layer we now receive of a remote track. */
  onLayerChanged({ track_id, quality, rid, width, height }) {
    const layer = { quality };
    if (rid) layer.rid = rid;
    if (width) Object.assign(layer, { width, height });
    this.client.layers.set(track_id, layer);
  }

  _onRemoteTrack(transceiver, streams) {
    const entry = this.client.subscribedMids.get(transceiver.mid);
    if (!entry) return;
    this._addRemoteTrack(transceiver, entry, streams);
  }

  _addRemoteTrack(transceiver, entry, streams = []) {
    const client = this.client;
    const known = client.remoteTracks.get(transceiver.mid);
    if (known && known.track_id === entry.track_id) return;
    if (known) this._dropRemoteTrack(transceiver.mid);
    const remote = withAliases({
      mid: transceiver.mid,
      track_id: entry.track_id,
      participant_id: entry.participant_id,
      kind: entry.kind,
      track: transceiver.receiver.track,
      track_info: findTrack(client, entry.track_id, entry.participant_id) || fallbackInfo(entry),
    }, TRACK_ALIASES);
    client.remoteTracks.set(remote.mid, remote);
    client._emit("track", withAliases({ ...remote, streams }, TRACK_ALIASES));
  }

  _dropRemoteTrack(mid) {
    const client = this.client;
    const remote = client.remoteTracks.get(mid);
    if (!remote) return;
    client.remoteTracks.delete(mid);
    if (!this.remoteTrackById(remote.track_id)) {
      client._adaptive.forget(remote);
      client.layers.delete(remote.track_id);
    }
    client._emit("trackremoved", withAliases({ ...remote }, TRACK_ALIASES));
  }

  /** Drop tracks whose mid vanished from the latest offer or now carries another track. */
  _dropStaleRemoteTracks() {
    for (const [mid, remote] of [...this.client.remoteTracks]) {
      const entry = this.client.subscribedMids.get(mid);
      if (!entry || entry.track_id !== remote.track_id) this._dropRemoteTrack(mid);
    }
  }

  /** After a negotiation: drop inactive transceivers, add active ones ontrack missed. */
  _reconcileRemoteTracks() {
    const client = this.client;
    const pc = client.subscriberPc;
    if (!pc || client.state === "closed") return;
    for (const tr of pc.getTransceivers()) {
      const entry = client.subscribedMids.get(tr.mid);
      const active = !tr.stopped && ACTIVE_DIRECTIONS.has(tr.currentDirection);
      if (entry && active) this._addRemoteTrack(tr, entry);
      else if (tr.mid) this._dropRemoteTrack(tr.mid);
    }
  }
}

function fallbackInfo(entry) {
  return { id: entry.track_id, participant_id: entry.participant_id, kind: entry.kind, source: "unknown", muted: false, codec: "" };
}
