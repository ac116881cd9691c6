/**
 * The signaling socket and the peer connections' plumbing: requests matched
 * to their responses by id, server events handed to the client, new
 * RTCPeerConnections whose ICE candidates are held until that side's first
 * offer or answer is on its way (then trickled).
 *
 * @module pysfu/client/connection
 */

import { PysfuError } from "./errors.js";

export const PROTOCOL_VERSION = 1;

/** Peer connection settings before the client's `rtcConfig` option and the server's ICE servers. */
export const RTC_CONFIG = Object.freeze({ bundlePolicy: "max-bundle", iceServers: [] });

/** Default signaling URL: same host as the page, path /ws. */
export function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

/** Holds ICE candidates until `open()`, then forwards them as they come. */
class CandidateGate {
  /** @param {(c: RTCIceCandidate) => void} send */
  constructor(send) {
    this._send = send;
    this._held = [];
    this.isOpen = false;
  }

  push(candidate) {
    if (this.isOpen) this._send(candidate);
    else this._held.push(candidate);
  }

  open() {
    if (this.isOpen) return;
    this.isOpen = true;
    this._held.splice(0).forEach((c) => this._send(c));
  }
}

/** The socket of one PysfuClient, and the peer connections' candidate gates. */
export class Connection {
  /** @param {import("../pysfu.js").PysfuClient} client */
  constructor(client) {
    this.client = client;
    /** @type {WebSocket|null} */
    this.ws = null;
    this._opened = null;
    this._nextId = 1;
    this._pending = new Map();
    this.resetGates();
  }

  /** Open the WebSocket unless open or opening; resolves once open. */
  connect() {
    if (this.ws) return this._opened;
    const client = this.client;
    const resuming = client.state === "reconnecting";
    if (!resuming) client.state = "connecting";
    const ws = new WebSocket(client.url);
    this.ws = ws;
    ws.onmessage = (e) => ws === this.ws && this._onMessage(e.data);
    ws.onclose = (e) => ws === this.ws && client._reconnect.onSocketClose(e);
    this._opened = new Promise((resolve, reject) => {
      ws.onopen = () => {
        if (!resuming) client.state = "connected";
        resolve();
      };
      ws.onerror = () => reject(new PysfuError("socket_error", `cannot connect to ${client.url}`));
    });
    return this._opened;
  }

  /** Close the socket quietly and connect to `url` instead (redirect, before joining). */
  async moveTo(url) {
    const old = this.ws;
    old.onclose = null;
    old.onmessage = null;
    old.close(1000, "redirect");
    this.ws = null;
    this.client.url = url;
    await this.connect();
  }

  /** See `PysfuClient.request`. */
  request(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new PysfuError("not_connected", "socket is not open"));
    }
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this._settle(id, null, new PysfuError("timeout", `${msg.type} timed out`)), this.client.requestTimeoutMs);
      this._pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...msg, id }));
    });
  }

  _settle(id, response, error) {
    const pending = this._pending.get(id);
    if (!pending) return;
    this._pending.delete(id);
    clearTimeout(pending.timer);
    if (error) pending.reject(error);
    else pending.resolve(response);
  }

  _onMessage(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return this.client._emit("error", { code: "bad_json", message: "unparseable server message" });
    }
    if (msg.id !== undefined && msg.id !== null && this._pending.has(msg.id)) {
      const error = msg.type === "error" ? new PysfuError(msg.code, msg.message) : null;
      return this._settle(msg.id, msg, error);
    }
    this.client._onEvent(msg);
  }

  /** Reject every request still waiting for its response. */
  failPending() {
    for (const id of [...this._pending.keys()]) {
      this._settle(id, null, new PysfuError("disconnected", "socket closed"));
    }
  }

  /** Close the socket if open; its close event still reaches the client. */
  close(code, reason) {
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(code, reason);
  }

  /** Forget the socket, then close it: its close event no longer matters. */
  drop(code, reason) {
    const ws = this.ws;
    this.ws = null;
    this._opened = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(code, reason);
  }

  /** New peer connection for "publisher" or "subscriber", its candidates behind that side's gate. */
  newPc(target) {
    const client = this.client;
    const pc = new RTCPeerConnection(client.rtcConfig);
    pc.onicecandidate = (e) => {
      if (e.candidate && e.candidate.candidate) this.gates[target].push(e.candidate);
    };
    pc.onconnectionstatechange = () => client._reconnect.watchPc(pc, target);
    return pc;
  }

  /** Fresh, closed gates (new peer connections after a reconnect). */
  resetGates() {
    this.gates = {
      publisher: new CandidateGate((c) => this._trickle("publisher", c)),
      subscriber: new CandidateGate((c) => this._trickle("subscriber", c)),
    };
  }

  _trickle(target, c) {
    const msg = { type: "trickle", target, candidate: c.candidate, sdp_mid: c.sdpMid, sdp_mline_index: c.sdpMLineIndex };
    this.request(msg).catch((err) => this.client._emit("error", { code: err.code, message: `trickle: ${err.message}` }));
  }
}
