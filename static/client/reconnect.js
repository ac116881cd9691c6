/**
 * Reconnect and resume.  When the socket closes or a peer connection fails
 * (or stays "disconnected" for PC_DISCONNECTED_MS), the server keeps our
 * participant for `resumeGrace` seconds.  We close everything but the local
 * tracks and try `resume` on a new socket with backoff (at once when the
 * browser says it is online again); the answer is a join_response for the
 * same participant, and we republish our tracks into their old ids on a fresh
 * publisher PC while the server offers our subscriptions on a fresh
 * subscriber PC.  A peer connection that never connects is not retried
 * (`ice_timeout`); a `leave` saying the server lost us means joining again.
 *
 * @module pysfu/client/reconnect
 */

import { withTimeout } from "./errors.js";
import { PROTOCOL_VERSION } from "./connection.js";
import { replaceRoster, toParticipant } from "./roster.js";

/** Reconnect: delays between resume attempts (the last one repeats). */
export const RESUME_BACKOFF_MS = Object.freeze([250, 500, 1000, 2000]);
/**
 * A peer connection that has never connected gets this long after its first
 * negotiation; then the client gives up (`ice_timeout`) instead of retrying a
 * path that cannot work (e.g. loopback candidates a browser refuses).
 */
export const DEFAULT_CONNECT_TIMEOUT_MS = 15000;
/** A PC "disconnected" this long counts as lost (ICE may recover before). */
const PC_DISCONNECTED_MS = 3000;
/** One resume attempt (socket open + resume response) gets this long. */
const RESUME_ATTEMPT_MS = 5000;
/** `leave` reasons after which we join again as a new participant (the server lost ours). */
const REJOIN_REASONS = new Set(["worker_restarted"]);
const REJOIN_ATTEMPTS = 8;
/** Resume errors after which trying again cannot help. */
const FINAL_RESUME_ERRORS = new Set(["resume_expired", "resume_token_used", "resume_token_invalid", "resume_wrong_room", "not_allowed"]);

/** Connection watching and recovery of one PysfuClient. */
export class Reconnect {
  /** @param {import("../pysfu.js").PysfuClient} client */
  constructor(client) {
    this.client = client;
    this._resume = null; // {deadline, attempt, timer, running} while reconnecting
    this._onlineListener = null;
    this._pcTimers = new Map();
    this._connectTimers = new Map();
    /** @type {WeakSet<RTCPeerConnection>} peer connections that have been "connected" once */
    this._connectedPcs = new WeakSet();
  }

  /** Keep the resume token and grace of a join or resume response. */
  keepResumeToken(res) {
    this.client.resumeToken = res.resume_token || null;
    this.client.resumeGrace = res.resume_grace || 0;
  }

  /** The socket closed (not by us): resume if we can, else say so. */
  onSocketClose(event) {
    const client = this.client;
    const wasOpen = client.state !== "closed" && !client._leaving;
    client._connection.failPending();
    if (client.state === "reconnecting") return; // the resume loop tries again
    if (wasOpen && client.state === "joined" && client.resumeToken) {
      this._start("socket_closed");
    } else if (wasOpen) {
      client._teardown();
      client._emit("disconnected", { reason: "socket_closed", code: event.code });
    }
  }

  /** `leave` from the server: true when we join again by ourselves (not a leave for the app). */
  onLeave(reason) {
    if (!REJOIN_REASONS.has(reason) || this.client.state !== "joined") {
      this.client._teardown();
      return false;
    }
    this._rejoin(reason);
    return true;
  }

  /** A peer connection's `connectionState` changed. */
  watchPc(pc, target) {
    const client = this.client;
    if (pc !== client.publisherPc && pc !== client.subscriberPc) return;
    clearTimeout(this._pcTimers.get(target));
    const state = pc.connectionState;
    if (state === "connected") {
      this._connectedPcs.add(pc);
      clearTimeout(this._connectTimers.get(target));
      this._connectTimers.delete(target);
    }
    if (state === "failed" && client.connectTimeoutMs && !this._connectedPcs.has(pc)) this._connectTimedOut(pc, target);
    else if (state === "failed") this._connectionLost("ice_failed", target);
    else if (state === "disconnected") {
      this._pcTimers.set(target, setTimeout(() => {
        if (pc.connectionState === "disconnected") this._connectionLost("ice_disconnected", target);
      }, PC_DISCONNECTED_MS));
    }
  }

  /**
   * After a negotiation: a peer connection that has never connected must do so
   * within `connectTimeoutMs`.  One that was connected once and drops is the
   * reconnect logic's business instead.
   */
  expectConnected(pc, target) {
    const client = this.client;
    if (pc !== client.publisherPc && pc !== client.subscriberPc) return; // replaced meanwhile (resume)
    if (!client.connectTimeoutMs || this._connectedPcs.has(pc) || this._connectTimers.has(target)) return;
    this._connectTimers.set(target, setTimeout(() => {
      this._connectTimers.delete(target);
      if (!this._connectedPcs.has(pc)) this._connectTimedOut(pc, target);
    }, client.connectTimeoutMs));
  }

  /** The client closes: stop resuming and watching the peer connections. */
  stop() {
    this._stopResuming();
    this._clearPcTimers();
  }

  /** A peer connection never connected: retrying cannot help, so say why and leave. */
  _connectTimedOut(pc, target) {
    const client = this.client;
    if (pc !== client.publisherPc && pc !== client.subscriberPc) return;
    if (client.state !== "joined") return;
    const state = pc.connectionState;
    const what = state === "failed" ? "failed before it ever connected" : `is still "${state}" after ${Math.round(client.connectTimeoutMs / 1000)} s`;
    client._emit("error", { code: "ice_timeout", message: `ICE found no working path to the server: the ${target} peer connection ${what}` });
    client.leave().finally(() => client._emit("disconnected", { reason: "ice_timeout", target }));
  }

  _connectionLost(reason, target) {
    const client = this.client;
    if (client.state !== "joined") return;
    if (client.resumeToken) this._start(reason);
    else client._emit("disconnected", { reason: "ice_failed", target });
  }

  _clearPcTimers() {
    this._pcTimers.forEach((timer) => clearTimeout(timer));
    this._connectTimers.forEach((timer) => clearTimeout(timer));
    this._connectTimers.clear();
  }

  _start(reason) {
    const client = this.client;
    if (client.state !== "joined") return;
    client.state = "reconnecting";
    this._dropConnections();
    this._resume = { deadline: Date.now() + client.resumeGrace * 1000, attempt: 0, timer: null };
    this._onlineListener = () => this._resumeSoon(0);
    if (typeof window !== "undefined") window.addEventListener("online", this._onlineListener);
    client._emit("reconnecting", { reason });
    this._resumeSoon(RESUME_BACKOFF_MS[0]);
  }

  /** Close the socket and both PCs (no `leave`); local tracks keep running. */
  _dropConnections() {
    const client = this.client;
    this._clearPcTimers();
    client._subscribing.reset();
    for (const pc of [client.publisherPc, client.subscriberPc]) if (pc) pc.close();
    client.publisherPc = client.subscriberPc = null;
    client._connection.drop(4000, "reconnecting");
    client._connection.failPending();
    client._connection.resetGates();
  }

  _resumeSoon(delay) {
    const resume = this._resume;
    if (!resume || resume.running) return;
    clearTimeout(resume.timer);
    resume.timer = setTimeout(() => this._tryResume(), delay);
  }

  async _tryResume() {
    const client = this.client;
    const resume = this._resume;
    if (!resume || client.state !== "reconnecting") return;
    resume.running = true;
    try {
      const res = await withTimeout(this._openAndResume(), RESUME_ATTEMPT_MS);
      this._stopResuming();
      await this._applyResume(res);
    } catch (err) {
      resume.running = false;
      if (this._resume !== resume) return;
      const gaveUp = FINAL_RESUME_ERRORS.has(err.code) || Date.now() > resume.deadline;
      if (gaveUp) return this._giveUp(err);
      client._connection.drop(4000, "retry");
      resume.attempt += 1;
      this._resumeSoon(RESUME_BACKOFF_MS[Math.min(resume.attempt, RESUME_BACKOFF_MS.length - 1)]);
    }
  }

  async _openAndResume() {
    const client = this.client;
    await client.connect();
    return client.request({ type: "resume", room: client.room, token: client.resumeToken, version: PROTOCOL_VERSION });
  }

  _giveUp(err) {
    this._stopResuming();
    this.client._teardown();
    this.client._emit("disconnected", { reason: "resume_failed", code: err.code });
  }

  _stopResuming() {
    if (this._resume) clearTimeout(this._resume.timer);
    this._resume = null;
    if (this._onlineListener && typeof window !== "undefined") window.removeEventListener("online", this._onlineListener);
    this._onlineListener = null;
  }

  /** Same participant again: roster from the response, fresh PCs, republish. */
  async _applyResume(res) {
    const client = this.client;
    this.keepResumeToken(res);
    client.localParticipant = toParticipant(res.participant);
    replaceRoster(client, res.participants);
    client.state = "joined";
    client._subscribing.ensurePc();
    client._publishing.ensurePc();
    client._emit("roster", {});
    try {
      await client._publishing.republish();
    } catch (err) {
      client._emit("error", { code: err.code || "republish", message: `republish after resume: ${err.message}` });
    }
    client._emit("reconnected", {});
  }

  /**
   * The server lost our participant (`leave` with a reason in REJOIN_REASONS,
   * e.g. its worker process restarted): join the room again as a new
   * participant, with backoff, and publish our live tracks again.
   */
  async _rejoin(reason) {
    const client = this.client;
    client.state = "reconnecting";
    this._dropConnections();
    for (const id of [...client.roster.keys()]) client._onEvent({ type: "participant_left", participant_id: id, reason });
    client._emit("reconnecting", { reason });
    for (let attempt = 0; attempt < REJOIN_ATTEMPTS; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, RESUME_BACKOFF_MS[Math.min(attempt, RESUME_BACKOFF_MS.length - 1)]));
      if (client.state !== "reconnecting") return;
      try {
        await withTimeout(client.join(client.room, client._joinArgs.name, client._joinArgs.options), RESUME_ATTEMPT_MS);
        await client._publishing.republish(false);
        client._emit("reconnected", { rejoined: true });
        return;
      } catch (err) {
        if (client.state !== "reconnecting" && client.state !== "joined") return;
        client.state = "reconnecting";
        this._dropConnections();
      }
    }
    client._teardown();
    client._emit("disconnected", { reason: "rejoin_failed" });
  }
}
