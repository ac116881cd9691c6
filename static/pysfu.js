/**
 * pysfu.js - browser client for the pysfu WebRTC SFU (signaling protocol v1).
 *
 * Plain ES module, no dependencies, no build step.
 *
 *   import { PysfuClient } from "./pysfu.js";
 *   const client = new PysfuClient();              // ws(s)://<host>/ws
 *   client.on("track", ({ track, participantId }) => attach(track, participantId));
 *   await client.join("my-room", "Alice");
 *   await client.publish(await navigator.mediaDevices.getUserMedia({ audio: true, video: true }));
 *
 * Two RTCPeerConnections are used: `publisherPc` (browser -> SFU, sendonly,
 * browser offers) and `subscriberPc` (SFU -> browser, recvonly, SFU offers).
 *
 * Simulcast: camera video is published as VP8 with up to three layers
 * (rids "q", "h", "f"); the SFU forwards each subscriber the layer that fits.
 * Remote video shown with `client.attachVideo(trackId, videoElement)` gets
 * adaptive stream: the rendered size and visibility are sent to the SFU
 * (`update_track_settings`), so a small or hidden tile costs little.
 * Dynacast: `subscribed_quality_update` pauses our layers nobody receives.
 *
 * @module pysfu
 */

export const PROTOCOL_VERSION = 1;

const RTC_CONFIG = { bundlePolicy: "max-bundle", iceServers: [] };
const DEFAULT_TIMEOUT_MS = 15000;
const ACTIVE_DIRECTIONS = new Set(["recvonly", "sendrecv"]);
const ADAPTIVE_DEBOUNCE_MS = 300;
const MAX_DIMENSION = 16384;

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
/** Resume errors after which trying again cannot help. */
/** `leave` reasons after which we join again as a new participant (the server lost ours). */
const REJOIN_REASONS = new Set(["worker_restarted"]);
const REJOIN_ATTEMPTS = 8;
const REJOINING = Symbol("rejoining");
const FINAL_RESUME_ERRORS = new Set(["resume_expired", "resume_token_used", "resume_token_invalid", "resume_wrong_room", "not_allowed"]);

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

/** Chat messages the client keeps (the server keeps as many per room). */
export const CHAT_HISTORY = 100;
/** Redirects a join follows at most (a room lives on another node, issue 7). */
const MAX_REDIRECTS = 3;

/** Subscriber-side qualities, lowest first ("auto" = adaptive / no explicit quality). */
export const QUALITIES = Object.freeze(["low", "medium", "high"]);

/**
 * @typedef {Object} TrackInfo
 * @property {string} id                published track id (server assigned)
 * @property {string} participant_id    owner
 * @property {"audio"|"video"} kind
 * @property {"camera"|"microphone"|"screen_share"|"unknown"} source
 * @property {boolean} muted
 * @property {string} codec
 */

/**
 * @typedef {Object} Participant
 * @property {string} id
 * @property {string} name
 * @property {Map<string, TrackInfo>} tracks   published tracks by track id
 * @property {boolean} handRaised
 */

/**
 * @typedef {Object} ChatMessage
 * @property {string} id              server-assigned message id
 * @property {string} participant_id  sender
 * @property {string} name            sender's name when it was sent
 * @property {string} text            plain text: show it with textContent, never as HTML
 * @property {number} ts              Unix time in ms (server clock)
 */

/**
 * @typedef {Object} TrackSettings   what we want to receive of one remote track
 * @property {"low"|"medium"|"high"} [quality]  explicit layer
 * @property {number} [maxWidth]     the SFU picks the smallest layer covering these
 * @property {number} [maxHeight]
 * @property {number} [maxFps]
 * @property {boolean} [paused]      receive nothing
 */

/**
 * @typedef {Object} LayerInfo        latest `layer_changed` for a remote track
 * @property {"low"|"medium"|"high"|"off"} quality
 * @property {string} [rid]
 * @property {number} [width]
 * @property {number} [height]
 */

/**
 * @typedef {Object} RemoteTrack
 * @property {string} mid                subscriber-PC m-line carrying it
 * @property {string} trackId            published track id
 * @property {string} participantId
 * @property {"audio"|"video"} kind
 * @property {MediaStreamTrack} track
 * @property {TrackInfo} trackInfo
 */

/** Error raised for `error` responses (and client-side failures). */
export class PysfuError extends Error {
  /**
   * @param {string} code     machine-readable code, e.g. "unknown_track", "timeout"
   * @param {string} message
   */
  constructor(code, message) {
    super(message || code);
    this.name = "PysfuError";
    /** @type {string} */
    this.code = code;
  }
}

/** Default signaling URL: same host as the page, path /ws. */
export function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

/** Runs async jobs strictly one at a time, in submission order. */
class SerialQueue {
  constructor() {
    this._tail = Promise.resolve();
  }

  /** @template T @param {() => Promise<T>} job @returns {Promise<T>} */
  run(job) {
    const result = this._tail.then(job);
    this._tail = result.catch(() => {});
    return result;
  }
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

/** Participant from a ParticipantInfo message object. */
function toParticipant(info) {
  const tracks = new Map((info.tracks || []).map((t) => [t.id, { ...t }]));
  return {
    id: info.id, name: info.name || "", tracks, handRaised: Boolean(info.hand_raised),
    state: info.state || "active", quality: info.connection_quality || null,
  };
}

/** Plain (JSON-friendly) copy of a Participant. */
function plainParticipant(p) {
  return {
    id: p.id, name: p.name, handRaised: p.handRaised, state: p.state, quality: p.quality,
    tracks: [...p.tracks.values()].map((t) => ({ ...t })),
  };
}

/**
 * pysfu client.  An EventTarget: listen with `addEventListener(type, e => e.detail)`
 * or with the `on(type, detail => ...)` shortcut.
 *
 * Server events (detail = the message fields):
 *  - `participant_joined` {participant}
 *  - `participant_left`   {participant_id, reason}
 *  - `track_published`    {track}
 *  - `track_unpublished`  {track_id, participant_id}
 *  - `track_muted`        {track_id, participant_id, muted}
 *  - `layer_changed`      {track_id, quality, rid?, width?, height?}  layer we now receive
 *  - `subscribed_quality_update` {track_id, qualities: [{quality, rid, enabled}]}
 *                         (dynacast, about our track; already applied to the sender)
 *  - `leave`              {reason}                  server ended the session
 *  - `data`               {payload, topic, participant_id?}
 *  - `room_updated`       {room}                    metadata changed (admin API)
 *  - `participant_updated` {participant}            name/metadata changed (admin API)
 *  - `chat_message`       {id, participant_id, name, text, ts}  (ours too; also kept in `chat`)
 *  - `reaction`           {participant_id, emoji, ts}  (ours too)
 *  - `hand_raised`        {participant_id, raised}     (ours too; also in `Participant.handRaised`)
 *  - `participant_state`  {participant_id, state: "reconnecting"|"active"}  (also in `Participant.state`)
 *  - `connection_quality` {updates: [{participant_id, quality: "excellent"|"good"|"poor"|"lost", ...}]}
 *                         (ours too; also in `Participant.quality`)
 *  - `speakers_changed`   {speakers: [{participant_id, level, dominant?}]}  dominant first (also in `speakers`)
 *  - `transcription_started` {room, transcription_id, language}  captions are on (also in `transcription`)
 *  - `transcription_stopped` {room, transcription_id, language, reason: "stopped"|"failed", message?}
 *  - `caption`            {participant_id, text, start, end, final}  what someone said (a final
 *                         replaces that participant's partials)
 *  - `slots_changed`      {slots: [{mid, kind, participant_id, track_id}]}  slot subscription only
 *                         (also in `slots`); each change also comes as `trackremoved` / `track`
 *  - `recording_started`, `recording_stopped` {room, recording_id, track_ids}  the room is
 *                         being recorded while `recordings` (ids, from join_response too) is not empty
 * Client events:
 *  - `track`        {track, trackInfo, participantId, trackId, mid, kind, streams}
 *  - `trackremoved` {track, trackInfo, participantId, trackId, mid, kind}
 *  - `reconnecting` {reason}   the connection dropped: resuming by itself, with backoff
 *  - `reconnected`  {rejoined?} same participant again, fresh peer connections, media republished;
 *                              `rejoined`: a new participant after `leave` {reason: "worker_restarted"}
 *  - `disconnected` {reason: "socket_closed"|"ice_failed"|"ice_timeout"|"resume_failed", target?, code?}  gave up;
 *                   "ice_timeout": a peer connection never connected (an `error` with that code came first)
 *  - `error`        {code, message}              server error without request id / async failure;
 *                   code "ice_timeout": no media path to the server within `connectTimeoutMs` (we then leave)
 *  - `roster`       {}                           roster changed (any cause)
 */
export class PysfuClient extends EventTarget {
  /**
   * @param {Object} [options]
   * @param {string} [options.url]              signaling URL (default ws(s)://host/ws)
   * @param {RTCConfiguration} [options.rtcConfig]  overrides for both peer connections;
   *        its `iceServers`, when given, replace the ones the server sends in join_response
   * @param {RTCIceTransportPolicy} [options.iceTransportPolicy]  "relay" to use TURN only
   * @param {number} [options.requestTimeoutMs] per-request timeout (default 15000)
   * @param {number} [options.connectTimeoutMs] how long a new peer connection may take
   *        to connect before we give up with `ice_timeout` (default 15000; 0: wait forever)
   * @param {boolean} [options.adaptiveStream]  send rendered size/visibility of
   *        videos shown with `attachVideo()` (default true)
   * @param {boolean} [options.simulcast]  default of `publish()`'s `simulcast` (true)
   */
  constructor(options = {}) {
    super();
    this.url = options.url || defaultUrl();
    this.rtcConfig = { ...RTC_CONFIG, ...(options.rtcConfig || {}) };
    if (options.iceTransportPolicy) this.rtcConfig.iceTransportPolicy = options.iceTransportPolicy;
    this._ownIceServers = Boolean(options.rtcConfig && options.rtcConfig.iceServers);
    this.requestTimeoutMs = options.requestTimeoutMs || DEFAULT_TIMEOUT_MS;
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    /** @type {WebSocket|null} */
    this.ws = null;
    /** @type {RTCPeerConnection|null} browser -> SFU */
    this.publisherPc = null;
    /** @type {RTCPeerConnection|null} SFU -> browser */
    this.subscriberPc = null;
    /** @type {string|null} our participant id (after join) */
    this.participantId = null;
    /** @type {Participant|null} ourselves, with our published tracks */
    this.localParticipant = null;
    /** @type {string|null} */
    this.room = null;
    /** @type {Map<string, Participant>} remote participants by id (excludes us) */
    this.roster = new Map();
    /** @type {Map<string, {track: MediaStreamTrack, transceiver: RTCRtpTransceiver, info: TrackInfo}>} published local tracks by track id */
    this.localTracks = new Map();
    /** @type {Map<string, {mid: string, track_id: string, participant_id: string, kind: string}>} latest subscriber offer, by mid */
    this.subscribedMids = new Map();
    /** @type {{mid: string, kind: string, participant_id: string|null, track_id: string|null}[]} slot subscription: what each slot carries */
    this.slots = [];
    /** @type {Map<string, RemoteTrack>} remote tracks currently delivered, by mid */
    this.remoteTracks = new Map();
    /** @type {"new"|"connecting"|"connected"|"joined"|"reconnecting"|"closed"} */
    this.state = "new";
    /** @type {string|null} latest resume token (from join/resume responses) */
    this.resumeToken = null;
    /** @type {number} seconds the server waits for our resume */
    this.resumeGrace = 0;
    this._resume = null; // {deadline, attempt, timer} while reconnecting
    this._pcTimers = new Map();
    this._connectTimers = new Map();
    /** @type {WeakSet<RTCPeerConnection>} peer connections that have been "connected" once */
    this._connectedPcs = new WeakSet();
    this._nextId = 1;
    this._pending = new Map();
    this._publishQueue = new SerialQueue();
    this._offerQueue = new SerialQueue();
    this._gates = {
      publisher: new CandidateGate((c) => this._trickle("publisher", c)),
      subscriber: new CandidateGate((c) => this._trickle("subscriber", c)),
    };
    /** @type {Map<Function, Map<string, EventListener>>} */
    this._listenerWrappers = new Map();
    this._leaving = false;
    /** @type {boolean} */
    this.adaptiveStream = options.adaptiveStream !== false;
    /** @type {boolean} */
    this.simulcast = options.simulcast !== false;
    /** @type {Map<string, LayerInfo>} latest `layer_changed` by remote track id */
    this.layers = new Map();
    /** @type {Map<string, {quality: string, rid: string, enabled: boolean}[]>} latest dynacast state by local track id */
    this.subscribedQualities = new Map();
    /** @type {Map<HTMLVideoElement, {trackId: string, width: number, height: number, visible: boolean|null}>} */
    this._views = new Map();
    this._observers = null;
    /** remote track ids whose settings adaptive stream manages (attached at least once) */
    this._adaptiveTracks = new Set();
    /** remote track ids with explicit settings (adaptive stream paused for them) */
    this._manualTracks = new Set();
    /** @type {Map<string, string>} last settings sent, as a JSON key, by track id */
    this._sentSettings = new Map();
    /** @type {Map<string, number>} debounce timers by track id */
    this._settingsTimers = new Map();
    this._dynacastQueue = new SerialQueue();
    /** @type {ChatMessage[]} the room's chat, oldest first (history from join, then new messages) */
    this.chat = [];
    /** The room's transcription while captions are on: {id, language}, else null. */
    this.transcription = null;
    /** Ids of the room's recordings in progress (non-empty: the room is being recorded). */
    this.recordings = new Set();
  }

  // --- events ---------------------------------------------------------------

  /**
   * Subscribe to an event; `fn` receives the event detail.
   * @param {string} type
   * @param {(detail: any) => void} fn
   * @returns {() => void} call to unsubscribe
   */
  on(type, fn) {
    const wrapper = (event) => fn(event.detail);
    if (!this._listenerWrappers.has(fn)) this._listenerWrappers.set(fn, new Map());
    this._listenerWrappers.get(fn).set(type, wrapper);
    this.addEventListener(type, wrapper);
    return () => this.off(type, fn);
  }

  /** Remove a listener added with `on()`. @param {string} type @param {Function} fn */
  off(type, fn) {
    const byType = this._listenerWrappers.get(fn);
    const wrapper = byType && byType.get(type);
    if (!wrapper) return;
    byType.delete(type);
    this.removeEventListener(type, wrapper);
  }

  _emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // --- socket & requests ------------------------------------------------------

  /**
   * Open the WebSocket (called by `join()` if needed).
   * @returns {Promise<void>} resolves once open
   */
  connect() {
    if (this.ws) return this._opened;
    const resuming = this.state === "reconnecting";
    if (!resuming) this.state = "connecting";
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onmessage = (e) => ws === this.ws && this._onMessage(e.data);
    ws.onclose = (e) => ws === this.ws && this._onSocketClose(e);
    this._opened = new Promise((resolve, reject) => {
      ws.onopen = () => {
        if (!resuming) this.state = "connected";
        resolve();
      };
      ws.onerror = () => reject(new PysfuError("socket_error", `cannot connect to ${this.url}`));
    });
    return this._opened;
  }

  /** Close the socket quietly and connect to `url` instead (redirect, before joining). */
  async _moveTo(url) {
    const old = this.ws;
    old.onclose = null;
    old.onmessage = null;
    old.close(1000, "redirect");
    this.ws = null;
    this.url = url;
    await this.connect();
  }

  /**
   * Send a request; an `id` is added.  Resolves with the server's response
   * (join_response, publish_response, ok, pong); rejects with a PysfuError
   * carrying `.code` on an `error` response, timeout or closed socket.
   * @param {Object} msg  request without id, e.g. {type: "ping"}
   * @returns {Promise<Object>}
   */
  request(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new PysfuError("not_connected", "socket is not open"));
    }
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this._settle(id, null, new PysfuError("timeout", `${msg.type} timed out`)), this.requestTimeoutMs);
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
      return this._emit("error", { code: "bad_json", message: "unparseable server message" });
    }
    if (msg.id !== undefined && msg.id !== null && this._pending.has(msg.id)) {
      const error = msg.type === "error" ? new PysfuError(msg.code, msg.message) : null;
      return this._settle(msg.id, msg, error);
    }
    this._onEvent(msg);
  }

  _onSocketClose(event) {
    const wasOpen = this.state !== "closed" && !this._leaving;
    this._failPending();
    if (this.state === "reconnecting") return; // the resume loop tries again
    if (wasOpen && this.state === "joined" && this.resumeToken) {
      this._startReconnect("socket_closed");
    } else if (wasOpen) {
      this._teardown();
      this._emit("disconnected", { reason: "socket_closed", code: event.code });
    }
  }

  _failPending() {
    for (const id of [...this._pending.keys()]) {
      this._settle(id, null, new PysfuError("disconnected", "socket closed"));
    }
  }

  // --- server events ------------------------------------------------------

  _onEvent(msg) {
    const handler = {
      participant_joined: () => this._addParticipant(msg.participant),
      participant_left: () => this._removeParticipant(msg.participant_id),
      track_published: () => this._addTrack(msg.track),
      track_unpublished: () => this._removeTrack(msg.participant_id, msg.track_id),
      track_muted: () => this._setTrackMuted(msg),
      subscriber_offer: () => this._queueOffer(msg),
      slots_changed: () => this._queueSlots(msg.slots || []),
      layer_changed: () => this._onLayerChanged(msg),
      subscribed_quality_update: () => this._onSubscribedQualityUpdate(msg),
      leave: () => {
        if (!REJOIN_REASONS.has(msg.reason) || this.state !== "joined") return this._teardown();
        this._rejoin(msg.reason);
        return REJOINING;
      },
      // operator and data events: passed on to listeners as they are
      data: () => {},
      room_updated: () => {},
      participant_updated: () => {},
      error: () => {},
      // meeting events (issue 8)
      chat_message: () => this._onChatMessage(msg),
      reaction: () => {},
      hand_raised: () => this._onHandRaised(msg),
      // active speakers (issue 4): loudest first, the dominant one flagged
      speakers_changed: () => { this.speakers = msg.speakers || []; },
      // reconnect and resume, connection quality (issue 6)
      participant_state: () => this._onParticipantState(msg),
      connection_quality: () => this._onConnectionQuality(msg),
      reconnect: () => {}, // the server lost our media: the socket closes next, we resume
      // live captions
      transcription_started: () => { this.transcription = { id: msg.transcription_id, language: msg.language }; },
      transcription_stopped: () => { this.transcription = null; },
      caption: () => {},
      // recording (issue 15): `recordings` holds the ids in progress
      recording_started: () => { this.recordings.add(msg.recording_id); },
      recording_stopped: () => { this.recordings.delete(msg.recording_id); },
    }[msg.type];
    if (!handler) return;
    if (handler() === REJOINING) return; // not a leave for the app: we come back by ourselves
    const { type, ...detail } = msg;
    this._emit(type, detail);
    if (type.startsWith("participant_") || type.startsWith("track_") || type === "hand_raised") this._emit("roster", {});
  }

  /** Participant record for an id: ourselves or a roster entry. */
  _participant(id) {
    if (id === this.participantId) return this.localParticipant;
    return this.roster.get(id) || null;
  }

  _addParticipant(info) {
    if (info.id === this.participantId) return;
    this.roster.set(info.id, toParticipant(info));
  }

  _removeParticipant(id) {
    this.roster.delete(id);
  }

  _addTrack(track) {
    let owner = this._participant(track.participant_id);
    if (!owner) {
      owner = toParticipant({ id: track.participant_id, name: "" });
      this.roster.set(owner.id, owner);
    }
    owner.tracks.set(track.id, { ...track });
  }

  _removeTrack(participantId, trackId) {
    const owner = this._participant(participantId);
    if (owner) owner.tracks.delete(trackId);
  }

  _setTrackMuted({ participant_id, track_id, muted }) {
    const info = this.findTrack(track_id, participant_id);
    if (info) info.muted = muted;
  }

  /**
   * TrackInfo by id, searched in the roster and our own tracks.
   * @param {string} trackId
   * @param {string} [participantId]  narrows the search
   * @returns {TrackInfo|null}
   */
  findTrack(trackId, participantId) {
    const owners = participantId ? [this._participant(participantId)] : [this.localParticipant, ...this.roster.values()];
    for (const owner of owners) {
      const info = owner && owner.tracks.get(trackId);
      if (info) return info;
    }
    return null;
  }

  /**
   * JSON-friendly snapshot of the remote participants (roster) with track arrays.
   * @returns {{id: string, name: string, tracks: TrackInfo[]}[]}
   */
  participants() {
    return [...this.roster.values()].map(plainParticipant);
  }

  // --- join / leave -------------------------------------------------------

  /**
   * Connect (if needed), join a room and create both peer connections
   * (the publisher PC is only negotiated by `publish()`).
   * @param {string} room
   * @param {string} [name]
   * @param {{autoSubscribe?: boolean, token?: string, slots?: {video?: number, audio?: number}}} [options]
   *   `token`: access token (JWT), required when the server has API keys;
   *   `slots`: slot subscription (big rooms): one subscriber offer with this many
   *   video and audio m-lines, never renegotiated; the server fills them
   *   (`slots_changed`) and each occupant comes as `track` / `trackremoved`
   * @returns {Promise<Object>} the join_response
   *
   * When the room lives on another node of a cluster the server answers
   * `redirect`: the client moves its socket to that node's URL and joins
   * there with the ticket it was given (`this.url` is then the owner's).
   */
  async join(room, name = "", options = {}) {
    await this.connect();
    const autoSubscribe = options.autoSubscribe !== false;
    const msg = { type: "join", room, name, version: PROTOCOL_VERSION, auto_subscribe: autoSubscribe };
    if (options.token) msg.token = options.token;
    if (options.slots) msg.slots = { video: options.slots.video || 0, audio: options.slots.audio || 0 };
    let res = await this.request(msg);
    for (let hops = 0; res.type === "redirect"; hops++) {
      if (hops === MAX_REDIRECTS) throw new PysfuError("too_many_redirects", `still redirected after ${hops} hops`);
      await this._moveTo(res.url);
      if (res.ticket) msg.token = res.ticket;
      res = await this.request(msg);
    }
    this._joinArgs = { name, options };
    this.room = res.room;
    this.participantId = res.participant.id;
    this.localParticipant = toParticipant(res.participant);
    this.roster.clear();
    res.participants.forEach((p) => this._addParticipant(p));
    this.chat = (res.chat_history || []).slice(-CHAT_HISTORY).map((m) => ({ ...m }));
    this.recordings = new Set(res.recordings || []);
    // STUN/TURN servers (TURN credentials minted for us) for both PCs, made just below
    if (!this._ownIceServers) this.rtcConfig.iceServers = res.ice_servers || [];
    this._keepResumeToken(res);
    this.state = "joined";
    this._ensureSubscriberPc();
    this._ensurePublisherPc();
    this._emit("roster", {});
    return res;
  }

  /**
   * Send a `data` event to the others in the room (needs canPublishData).
   * @param {string} payload
   * @param {{topic?: string, to?: string[]}} [options] `to`: only these identities
   * @returns {Promise<Object>} the `ok` response
   */
  sendData(payload, options = {}) {
    return this.request({ type: "send_data", payload, topic: options.topic || "", destination_identities: options.to || [] });
  }

  // --- chat, reactions, raise hand (issue 8; each needs canPublishData) -------------

  /**
   * Post a chat message (1..2000 characters) to the room.  Everyone, us too,
   * gets `chat_message`; late joiners find the last 100 in `chat`.
   * @param {string} text
   * @returns {Promise<Object>} the `ok` response
   */
  sendChat(text) {
    return this.request({ type: "chat", text: String(text) });
  }

  /**
   * Send a reaction (a short string, usually one emoji); everyone, us too, gets `reaction`.
   * @param {string} emoji
   * @returns {Promise<Object>} the `ok` response
   */
  sendReaction(emoji) {
    return this.request({ type: "reaction", emoji: String(emoji) });
  }

  /**
   * Raise or lower our hand; everyone, us too, gets `hand_raised`.
   * @param {boolean} [raised]
   * @returns {Promise<Object>} the `ok` response
   */
  raiseHand(raised = true) {
    return this.request({ type: "raise_hand", raised: Boolean(raised) });
  }

  /**
   * Start live captions of the room (needs the roomAdmin grant); everyone gets
   * `transcription_started`, then `caption` events.
   * @param {string} [language] the room's language, e.g. "fr" (default: the server's)
   * @returns {Promise<Object>} the `transcription_response`
   */
  startTranscription(language) {
    return this.request(language ? { type: "start_transcription", language } : { type: "start_transcription" });
  }

  /** Stop live captions; resolves once the transcript is complete. @returns {Promise<Object>} */
  stopTranscription() {
    return this.request({ type: "stop_transcription" });
  }

  _onChatMessage({ type, ...message }) {
    this.chat.push(message);
    if (this.chat.length > CHAT_HISTORY) this.chat.splice(0, this.chat.length - CHAT_HISTORY);
  }

  _onHandRaised({ participant_id, raised }) {
    const who = this._participant(participant_id);
    if (who) who.handRaised = Boolean(raised);
  }

  /**
   * Leave the room: sends `leave` (failure ignored), closes both PCs and the
   * socket and stops all published local tracks.
   * @returns {Promise<void>}
   */
  async leave() {
    if (this.state === "closed") return;
    this._leaving = true;
    try {
      await this.request({ type: "leave" });
    } catch {
      // the session is going away regardless
    }
    this._teardown();
  }

  _teardown() {
    if (this.state === "closed") return;
    this.state = "closed";
    this._stopReconnect();
    this._pcTimers.forEach((timer) => clearTimeout(timer));
    this._clearConnectTimers();
    for (const { track } of this.localTracks.values()) track.stop();
    for (const mid of [...this.remoteTracks.keys()]) this._dropRemoteTrack(mid);
    this._stopAdaptive();
    for (const pc of [this.publisherPc, this.subscriberPc]) if (pc) pc.close();
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000, "leave");
  }

  // --- reconnect and resume -----------------------------------------------------
  //
  // When the socket closes or a peer connection fails (or stays "disconnected"
  // for PC_DISCONNECTED_MS), the server keeps our participant for
  // `resumeGrace` seconds.  We close everything but the local tracks and try
  // `resume` on a new socket with backoff (at once when the browser says it is
  // online again); the answer is a join_response for the same participant, and
  // we republish our tracks into their old ids on a fresh publisher PC while
  // the server offers our subscriptions on a fresh subscriber PC.

  _keepResumeToken(res) {
    this.resumeToken = res.resume_token || null;
    this.resumeGrace = res.resume_grace || 0;
  }

  _watchPc(pc, target) {
    if (pc !== this.publisherPc && pc !== this.subscriberPc) return;
    clearTimeout(this._pcTimers.get(target));
    const state = pc.connectionState;
    if (state === "connected") {
      this._connectedPcs.add(pc);
      clearTimeout(this._connectTimers.get(target));
      this._connectTimers.delete(target);
    }
    if (state === "failed" && this.connectTimeoutMs && !this._connectedPcs.has(pc)) this._connectTimedOut(pc, target);
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
  _expectConnected(pc, target) {
    if (pc !== this.publisherPc && pc !== this.subscriberPc) return; // replaced meanwhile (resume)
    if (!this.connectTimeoutMs || this._connectedPcs.has(pc) || this._connectTimers.has(target)) return;
    this._connectTimers.set(target, setTimeout(() => {
      this._connectTimers.delete(target);
      if (!this._connectedPcs.has(pc)) this._connectTimedOut(pc, target);
    }, this.connectTimeoutMs));
  }

  /** A peer connection never connected: retrying cannot help, so say why and leave. */
  _connectTimedOut(pc, target) {
    if (pc !== this.publisherPc && pc !== this.subscriberPc) return;
    if (this.state !== "joined") return;
    const state = pc.connectionState;
    const what = state === "failed" ? "failed before it ever connected" : `is still "${state}" after ${Math.round(this.connectTimeoutMs / 1000)} s`;
    this._emit("error", { code: "ice_timeout", message: `ICE found no working path to the server: the ${target} peer connection ${what}` });
    this.leave().finally(() => this._emit("disconnected", { reason: "ice_timeout", target }));
  }

  _connectionLost(reason, target) {
    if (this.state !== "joined") return;
    if (this.resumeToken) this._startReconnect(reason);
    else this._emit("disconnected", { reason: "ice_failed", target });
  }

  _clearConnectTimers() {
    this._connectTimers.forEach((timer) => clearTimeout(timer));
    this._connectTimers.clear();
  }

  _startReconnect(reason) {
    if (this.state !== "joined") return;
    this.state = "reconnecting";
    this._dropConnections();
    this._resume = { deadline: Date.now() + this.resumeGrace * 1000, attempt: 0, timer: null };
    this._onlineListener = () => this._resumeSoon(0);
    if (typeof window !== "undefined") window.addEventListener("online", this._onlineListener);
    this._emit("reconnecting", { reason });
    this._resumeSoon(RESUME_BACKOFF_MS[0]);
  }

  /** Close the socket and both PCs (no `leave`); local tracks keep running. */
  _dropConnections() {
    this._pcTimers.forEach((timer) => clearTimeout(timer));
    this._clearConnectTimers();
    for (const mid of [...this.remoteTracks.keys()]) this._dropRemoteTrack(mid);
    this.subscribedMids = new Map();
    this.slots = [];
    for (const pc of [this.publisherPc, this.subscriberPc]) if (pc) pc.close();
    this.publisherPc = this.subscriberPc = null;
    const ws = this.ws;
    this.ws = null;
    this._opened = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(4000, "reconnecting");
    this._failPending();
    this._offerQueue = new SerialQueue();
    this._gates = {
      publisher: new CandidateGate((c) => this._trickle("publisher", c)),
      subscriber: new CandidateGate((c) => this._trickle("subscriber", c)),
    };
  }

  _resumeSoon(delay) {
    const resume = this._resume;
    if (!resume || resume.running) return;
    clearTimeout(resume.timer);
    resume.timer = setTimeout(() => this._tryResume(), delay);
  }

  async _tryResume() {
    const resume = this._resume;
    if (!resume || this.state !== "reconnecting") return;
    resume.running = true;
    try {
      const res = await withTimeout(this._openAndResume(), RESUME_ATTEMPT_MS);
      this._stopReconnect();
      await this._applyResume(res);
    } catch (err) {
      resume.running = false;
      if (this._resume !== resume) return;
      const gaveUp = FINAL_RESUME_ERRORS.has(err.code) || Date.now() > resume.deadline;
      if (gaveUp) return this._giveUp(err);
      const ws = this.ws;
      this.ws = null;
      if (ws && ws.readyState <= WebSocket.OPEN) ws.close(4000, "retry");
      resume.attempt += 1;
      this._resumeSoon(RESUME_BACKOFF_MS[Math.min(resume.attempt, RESUME_BACKOFF_MS.length - 1)]);
    }
  }

  async _openAndResume() {
    await this.connect();
    return this.request({ type: "resume", room: this.room, token: this.resumeToken, version: PROTOCOL_VERSION });
  }

  _giveUp(err) {
    this._stopReconnect();
    this._teardown();
    this._emit("disconnected", { reason: "resume_failed", code: err.code });
  }

  _stopReconnect() {
    if (this._resume) clearTimeout(this._resume.timer);
    this._resume = null;
    if (this._onlineListener && typeof window !== "undefined") window.removeEventListener("online", this._onlineListener);
    this._onlineListener = null;
  }

  /** Same participant again: roster from the response, fresh PCs, republish. */
  async _applyResume(res) {
    this._keepResumeToken(res);
    this.localParticipant = toParticipant(res.participant);
    this._replaceRoster(res.participants);
    this.state = "joined";
    this._ensureSubscriberPc();
    this._ensurePublisherPc();
    this._emit("roster", {});
    try {
      await this._publishQueue.run(() => this._republish());
    } catch (err) {
      this._emit("error", { code: err.code || "republish", message: `republish after resume: ${err.message}` });
    }
    this._emit("reconnected", {});
  }

  /** Roster after a resume; who came or went meanwhile gets the usual events. */
  _replaceRoster(infos) {
    const fresh = new Map(infos.filter((p) => p.id !== this.participantId).map((p) => [p.id, p]));
    for (const id of [...this.roster.keys()]) {
      if (!fresh.has(id)) this._onEvent({ type: "participant_left", participant_id: id, reason: "left" });
    }
    for (const info of fresh.values()) {
      if (!this.roster.has(info.id)) this._onEvent({ type: "participant_joined", participant: info });
      else this.roster.set(info.id, toParticipant(info));
    }
  }

  /**
   * The server lost our participant (`leave` with a reason in REJOIN_REASONS,
   * e.g. its worker process restarted): join the room again as a new
   * participant, with backoff, and publish our live tracks again.
   */
  async _rejoin(reason) {
    this.state = "reconnecting";
    this._dropConnections();
    for (const id of [...this.roster.keys()]) this._onEvent({ type: "participant_left", participant_id: id, reason });
    this._emit("reconnecting", { reason });
    for (let attempt = 0; attempt < REJOIN_ATTEMPTS; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, RESUME_BACKOFF_MS[Math.min(attempt, RESUME_BACKOFF_MS.length - 1)]));
      if (this.state !== "reconnecting") return;
      try {
        await withTimeout(this.join(this.room, this._joinArgs.name, this._joinArgs.options), RESUME_ATTEMPT_MS);
        await this._publishQueue.run(() => this._republish(false));
        this._emit("reconnected", { rejoined: true });
        return;
      } catch (err) {
        if (this.state !== "reconnecting" && this.state !== "joined") return;
        this.state = "reconnecting";
        this._dropConnections();
      }
    }
    this._teardown();
    this._emit("disconnected", { reason: "rejoin_failed" });
  }

  /** Our live local tracks, published again (into their old track ids when resuming). */
  async _republish(keepIds = true) {
    const entries = [...this.localTracks.entries()].filter(([, e]) => e.track.readyState === "live");
    this.localTracks.clear();
    this.subscribedQualities.clear();
    if (!entries.length) return [];
    const tracks = entries.map(([, e]) => e.track);
    const stream = new MediaStream(tracks);
    return this._negotiatePublish(
      stream, tracks, entries.map(([, e]) => e.info.source), entries.map(([, e]) => Boolean(e.simulcast)),
      entries.map(([id]) => (keepIds ? id : null)),
    );
  }

  _onParticipantState({ participant_id, state }) {
    const who = this._participant(participant_id);
    if (who) who.state = state;
  }

  _onConnectionQuality({ updates }) {
    for (const update of updates || []) {
      const who = this._participant(update.participant_id);
      if (who) who.quality = update.quality;
    }
  }

  // --- peer connections -------------------------------------------------------

  _newPc(target) {
    const pc = new RTCPeerConnection(this.rtcConfig);
    pc.onicecandidate = (e) => {
      if (e.candidate && e.candidate.candidate) this._gates[target].push(e.candidate);
    };
    pc.onconnectionstatechange = () => this._watchPc(pc, target);
    return pc;
  }

  _trickle(target, c) {
    const msg = { type: "trickle", target, candidate: c.candidate, sdp_mid: c.sdpMid, sdp_mline_index: c.sdpMLineIndex };
    this.request(msg).catch((err) => this._emit("error", { code: err.code, message: `trickle: ${err.message}` }));
  }

  _ensurePublisherPc() {
    if (!this.publisherPc) this.publisherPc = this._newPc("publisher");
    return this.publisherPc;
  }

  _ensureSubscriberPc() {
    if (this.subscriberPc) return this.subscriberPc;
    const pc = this._newPc("subscriber");
    pc.ontrack = (e) => this._onRemoteTrack(e.transceiver, e.streams);
    this.subscriberPc = pc;
    return pc;
  }

  // --- publishing -------------------------------------------------------------

  /**
   * Publish local tracks.  Negotiations are serialized.
   * Video is sent as VP8 where the browser allows choosing; camera video is
   * simulcast (3 layers from >= 720p, 2 from >= 360p, else 1) unless
   * `simulcast: false` or the source is "screen_share".
   * @param {MediaStream|MediaStreamTrack|MediaStreamTrack[]} media
   * @param {{source?: string, simulcast?: boolean}} [options]  source for every
   *        track (default "camera" for video and "microphone" for audio);
   *        simulcast (default: the client's `simulcast` option, true)
   * @returns {Promise<TrackInfo[]>} the published tracks (same order as the input tracks)
   */
  publish(media, options = {}) {
    const stream = media instanceof MediaStream ? media : new MediaStream([].concat(media));
    const tracks = stream.getTracks();
    if (!tracks.length) return Promise.resolve([]);
    const simulcast = options.simulcast === undefined ? this.simulcast : Boolean(options.simulcast);
    return this._publishQueue.run(() => this._negotiatePublish(stream, tracks, options.source, simulcast));
  }

  /**
   * Share a screen (issue 8): publish the video track(s) of a getDisplayMedia
   * stream (or any video, e.g. a canvas captureStream) with source
   * "screen_share": one layer, full resolution, <= 15 fps, 2.5 Mbps, tuned for
   * text (contentHint "detail").  Same as `publish(stream, {source: "screen_share"})`
   * minus audio tracks.  Stop with `unpublish(info.id)`.
   * @param {MediaStream|MediaStreamTrack} media
   * @returns {Promise<TrackInfo[]>}
   */
  publishScreen(media) {
    const tracks = (media instanceof MediaStream ? media.getTracks() : [media]).filter((t) => t.kind === "video");
    return this.publish(tracks, { source: "screen_share", simulcast: false });
  }

  async _negotiatePublish(stream, tracks, source, simulcast, republish = []) {
    const pc = this._ensurePublisherPc();
    const each = (value, i) => (Array.isArray(value) ? value[i] : value);
    const sources = tracks.map((track, i) => each(source, i) || defaultSource(track));
    const transceivers = tracks.map((track, i) => addSendTransceiver(pc, stream, track, each(simulcast, i), sources[i]));
    try {
      await pc.setLocalDescription(await pc.createOffer());
      const wanted = transceivers.map((tr, i) => ({ mid: tr.mid, source: sources[i], muted: !tracks[i].enabled }));
      republish.forEach((trackId, i) => { if (trackId) wanted[i].track_id = trackId; });
      const pending = this.request({ type: "publish", sdp: pc.localDescription.sdp, tracks: wanted });
      this._gates.publisher.open();
      const res = await pending;
      await pc.setRemoteDescription({ type: "answer", sdp: res.sdp });
      this._expectConnected(pc, "publisher");
      await Promise.all(transceivers.map((tr, i) => (sources[i] === "screen_share" ? preferResolution(tr.sender) : null)));
      return this._recordPublished(res.tracks, wanted, tracks, transceivers, simulcast);
    } catch (err) {
      await this._rollbackPublish(pc, transceivers);
      throw err;
    }
  }

  async _rollbackPublish(pc, transceivers) {
    if (pc.signalingState === "have-local-offer") {
      await pc.setLocalDescription({ type: "rollback" }).catch(() => {});
    }
    transceivers.forEach(stopTransceiver);
  }

  /** Pair response TrackInfos with our tracks: by mid (kind and source as a fallback). */
  _recordPublished(infos, wanted, tracks, transceivers, simulcast) {
    const unclaimed = infos.filter((t) => !this.localTracks.has(t.id));
    return tracks.map((track, i) => {
      let idx = unclaimed.findIndex((t) => t.mid && t.mid === transceivers[i].mid);
      if (idx < 0) idx = pickIndex(unclaimed, track.kind, wanted[i].source);
      if (idx < 0) return null;
      const [info] = unclaimed.splice(idx, 1);
      this.localTracks.set(info.id, { track, transceiver: transceivers[i], info, simulcast: Array.isArray(simulcast) ? simulcast[i] : simulcast });
      if (this.localParticipant) this.localParticipant.tracks.set(info.id, { ...info });
      return info;
    });
  }

  /**
   * Published track id for a local MediaStreamTrack.
   * @param {MediaStreamTrack} track
   * @returns {string|null}
   */
  trackIdFor(track) {
    for (const [id, entry] of this.localTracks) if (entry.track === track) return id;
    return null;
  }

  /**
   * Stop publishing a track (stops its transceiver; the local track keeps running).
   * @param {string} trackId  published track id
   * @returns {Promise<Object>} the `ok` response
   */
  async unpublish(trackId) {
    const entry = this.localTracks.get(trackId);
    if (entry) {
      stopTransceiver(entry.transceiver);
      this.localTracks.delete(trackId);
      this.subscribedQualities.delete(trackId);
      if (this.localParticipant) this.localParticipant.tracks.delete(trackId);
    }
    return this.request({ type: "unpublish", track_id: trackId });
  }

  /**
   * Mute/unmute a published track: toggles `track.enabled` locally and tells the server.
   * @param {string} trackId  published track id
   * @param {boolean} muted
   * @returns {Promise<Object>} the `ok` response
   */
  setMuted(trackId, muted) {
    const entry = this.localTracks.get(trackId);
    if (entry) {
      entry.track.enabled = !muted;
      entry.info.muted = muted;
    }
    const own = this.localParticipant && this.localParticipant.tracks.get(trackId);
    if (own) own.muted = muted;
    return this.request({ type: "mute", track_id: trackId, muted });
  }

  // --- subscribing ------------------------------------------------------------

  /** Ask to receive tracks. @param {string[]} trackIds @returns {Promise<Object>} */
  subscribe(trackIds) {
    return this.request({ type: "subscribe", track_ids: [...trackIds] });
  }

  /** Stop receiving tracks. @param {string[]} trackIds @returns {Promise<Object>} */
  unsubscribe(trackIds) {
    return this.request({ type: "unsubscribe", track_ids: [...trackIds] });
  }

  /**
   * Last-N pins (issue 4): participants whose camera video we always want
   * among the N the server sends us, most wanted first (replaces earlier
   * pins; at most 100).  Video outside our last-N comes as `layer_changed`
   * with quality "off".
   * @param {string[]} participantIds
   * @returns {Promise<Object>} the `ok` response
   */
  setPins(participantIds) {
    return this.request({ type: "set_pins", participant_ids: [...participantIds] });
  }

  /** Round-trip check. @returns {Promise<Object>} the `pong` */
  ping() {
    return this.request({ type: "ping" });
  }

  _queueOffer(msg) {
    this._offerQueue
      .run(() => this._answerOffer(msg))
      .catch((err) => this._emit("error", { code: err.code || "subscriber_offer", message: err.message }));
  }

  async _answerOffer({ sdp, tracks }) {
    if (this.state === "closed") return;
    const pc = this._ensureSubscriberPc();
    this.subscribedMids = new Map(tracks.map((t) => [t.mid, t]));
    this._dropStaleRemoteTracks();
    await pc.setRemoteDescription({ type: "offer", sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    const pending = this.request({ type: "subscriber_answer", sdp: pc.localDescription.sdp });
    this._gates.subscriber.open();
    await pending;
    this._expectConnected(pc, "subscriber");
    this._reconcileRemoteTracks();
  }

  /** After the offer's answer (same queue): each slot's occupant is the track on its mid. */
  _queueSlots(slots) {
    this._offerQueue
      .run(async () => this._applySlots(slots))
      .catch((err) => this._emit("error", { code: err.code || "slots_changed", message: err.message }));
  }

  _applySlots(slots) {
    if (this.state === "closed") return;
    this.slots = slots.map((slot) => ({ ...slot }));
    const occupied = slots.filter((slot) => slot.track_id && slot.participant_id);
    this.subscribedMids = new Map(occupied.map((slot) => [slot.mid, { ...slot }]));
    this._dropStaleRemoteTracks();
    this._reconcileRemoteTracks();
  }

  _onRemoteTrack(transceiver, streams) {
    const entry = this.subscribedMids.get(transceiver.mid);
    if (!entry) return;
    this._addRemoteTrack(transceiver, entry, streams);
  }

  _addRemoteTrack(transceiver, entry, streams = []) {
    const known = this.remoteTracks.get(transceiver.mid);
    if (known && known.trackId === entry.track_id) return;
    if (known) this._dropRemoteTrack(transceiver.mid);
    const remote = {
      mid: transceiver.mid,
      trackId: entry.track_id,
      participantId: entry.participant_id,
      kind: entry.kind,
      track: transceiver.receiver.track,
      trackInfo: this.findTrack(entry.track_id, entry.participant_id) || fallbackInfo(entry),
    };
    this.remoteTracks.set(remote.mid, remote);
    this._emit("track", { ...remote, streams });
  }

  _dropRemoteTrack(mid) {
    const remote = this.remoteTracks.get(mid);
    if (!remote) return;
    this.remoteTracks.delete(mid);
    if (!this.remoteTrackById(remote.trackId)) this._forgetRemoteTrack(remote);
    this._emit("trackremoved", { ...remote });
  }

  /** Drop tracks whose mid vanished from the latest offer or now carries another track. */
  _dropStaleRemoteTracks() {
    for (const [mid, remote] of [...this.remoteTracks]) {
      const entry = this.subscribedMids.get(mid);
      if (!entry || entry.track_id !== remote.trackId) this._dropRemoteTrack(mid);
    }
  }

  /** After a negotiation: drop inactive transceivers, add active ones ontrack missed. */
  _reconcileRemoteTracks() {
    const pc = this.subscriberPc;
    if (!pc || this.state === "closed") return;
    for (const tr of pc.getTransceivers()) {
      const entry = this.subscribedMids.get(tr.mid);
      const active = !tr.stopped && ACTIVE_DIRECTIONS.has(tr.currentDirection);
      if (entry && active) this._addRemoteTrack(tr, entry);
      else if (tr.mid) this._dropRemoteTrack(tr.mid);
    }
  }

  /**
   * A remote track currently delivered, by published track id.
   * @param {string} trackId
   * @returns {RemoteTrack|null}
   */
  remoteTrackById(trackId) {
    for (const remote of this.remoteTracks.values()) if (remote.trackId === trackId) return remote;
    return null;
  }

  // --- video elements & adaptive stream -------------------------------------------

  /**
   * Show a remote video track in a <video> element (sets `srcObject`, starts
   * playback) and, with adaptive stream on, keep the SFU told how large the
   * element is rendered (x devicePixelRatio) and whether it is visible, so it
   * forwards the layer that fits and pauses hidden videos.  Attaching an
   * element that showed another track detaches that one first.
   * @param {string} trackId  published track id of a delivered remote video track
   * @param {HTMLVideoElement} video
   * @returns {() => void} detaches again
   */
  attachVideo(trackId, video) {
    const remote = this.remoteTrackById(trackId);
    if (!remote) throw new PysfuError("unknown_track", `track ${trackId} is not being received`);
    const view = this._views.get(video);
    if (view && view.trackId !== trackId) this.detachVideo(view.trackId, video);
    if (shownTrack(video) !== remote.track) {
      video.srcObject = new MediaStream([remote.track]);
      const playing = video.play && video.play();
      if (playing && playing.catch) playing.catch(() => {});
    }
    if (!this._views.has(video)) {
      this._views.set(video, { trackId, width: video.clientWidth || 0, height: video.clientHeight || 0, visible: null });
      const observers = this._ensureObservers();
      if (observers.resize) observers.resize.observe(video);
      if (observers.intersection) observers.intersection.observe(video);
    }
    if (remote.kind === "video") {
      this._adaptiveTracks.add(trackId);
      this._scheduleAdaptive(trackId);
    }
    return () => this.detachVideo(trackId, video);
  }

  /**
   * Stop showing a remote track: stops observing the element(s) and clears
   * their `srcObject` if they show it.  A track no element shows any more is
   * paused at the SFU (adaptive stream).
   * @param {string} trackId
   * @param {HTMLVideoElement} [video]  default: every element showing the track
   */
  detachVideo(trackId, video) {
    const remote = this.remoteTrackById(trackId);
    for (const [element, view] of [...this._views]) {
      if (view.trackId !== trackId || (video && element !== video)) continue;
      this._unobserve(element);
      if (remote && shownTrack(element) === remote.track) element.srcObject = null;
    }
    if (remote && this._adaptiveTracks.has(trackId)) this._scheduleAdaptive(trackId);
  }

  /**
   * Tell the SFU how to send one remote track (`update_track_settings`).  The
   * settings replace earlier ones (absent fields = no limit) and override
   * adaptive stream for the track until `setQuality(trackId, "auto")`.
   * @param {string} trackId
   * @param {TrackSettings} [settings]
   * @returns {Promise<Object>} the `ok` response
   */
  setTrackSettings(trackId, settings = {}) {
    this._manualTracks.add(trackId);
    this._cancelAdaptive(trackId);
    return this._sendSettings(trackId, settings, true);
  }

  /**
   * Pick the layer of a remote track: "low" | "medium" | "high", or "auto" to
   * go back to adaptive stream (or to the SFU's choice when it is off).
   * @param {string} trackId
   * @param {"auto"|"low"|"medium"|"high"} quality
   * @returns {Promise<Object|null>} the `ok` response (null: nothing to send)
   */
  setQuality(trackId, quality) {
    if (quality && quality !== "auto") return this.setTrackSettings(trackId, { quality });
    this._manualTracks.delete(trackId);
    this._cancelAdaptive(trackId);
    return this._sendSettings(trackId, this._adaptiveSettings(trackId), false);
  }

  /** The explicit quality chosen for a track, or "auto". @param {string} trackId @returns {string} */
  qualityOf(trackId) {
    if (!this._manualTracks.has(trackId)) return "auto";
    const sent = this._sentSettings.get(trackId);
    return (sent && JSON.parse(sent).quality) || "auto";
  }

  /** Send settings unless identical to the last ones sent (or `force`). */
  _sendSettings(trackId, settings, force) {
    const msg = settingsMessage(trackId, settings);
    const key = JSON.stringify({ ...msg, type: undefined, track_id: undefined });
    if (!force && this._sentSettings.get(trackId) === key) return Promise.resolve(null);
    this._sentSettings.set(trackId, key);
    return this.request(msg).catch((err) => {
      if (this._sentSettings.get(trackId) === key) this._sentSettings.delete(trackId);
      throw err;
    });
  }

  /** What adaptive stream wants for a track now. @returns {TrackSettings} */
  _adaptiveSettings(trackId) {
    if (!this.adaptiveStream || !this._adaptiveTracks.has(trackId)) return {};
    const pageVisible = typeof document === "undefined" || document.visibilityState !== "hidden";
    let width = 0;
    let height = 0;
    let visible = false;
    for (const view of this._views.values()) {
      if (view.trackId !== trackId) continue;
      width = Math.max(width, view.width);
      height = Math.max(height, view.height);
      if (pageVisible && view.visible !== false && view.width > 0 && view.height > 0) visible = true;
    }
    const ratio = (typeof window !== "undefined" && window.devicePixelRatio) || 1;
    const settings = { paused: !visible };
    if (width > 0 && height > 0) {
      settings.maxWidth = Math.min(MAX_DIMENSION, Math.round(width * ratio));
      settings.maxHeight = Math.min(MAX_DIMENSION, Math.round(height * ratio));
    }
    return settings;
  }

  _scheduleAdaptive(trackId) {
    if (!this.adaptiveStream || this._manualTracks.has(trackId) || this.state === "closed") return;
    this._cancelAdaptive(trackId);
    this._settingsTimers.set(trackId, setTimeout(() => this._flushAdaptive(trackId), ADAPTIVE_DEBOUNCE_MS));
  }

  _cancelAdaptive(trackId) {
    clearTimeout(this._settingsTimers.get(trackId));
    this._settingsTimers.delete(trackId);
  }

  _flushAdaptive(trackId) {
    this._settingsTimers.delete(trackId);
    const remote = this.remoteTrackById(trackId);
    if (!remote || this._manualTracks.has(trackId) || this.state !== "joined") return;
    if (!this.roster.has(remote.participantId)) return; // leaving: the track goes away anyway
    this._sendSettings(trackId, this._adaptiveSettings(trackId), false).catch((err) => {
      console.warn("pysfu: update_track_settings failed", trackId, err.code, err.message);
    });
  }

  /** Adaptive-stream observers, created on first use (null members where unsupported). */
  _ensureObservers() {
    if (this._observers) return this._observers;
    const note = (element, change) => {
      const view = this._views.get(element);
      if (!view) return;
      Object.assign(view, change);
      this._scheduleAdaptive(view.trackId);
    };
    const resize = typeof ResizeObserver === "function"
      ? new ResizeObserver((entries) => entries.forEach((e) => note(e.target, { width: e.contentRect.width, height: e.contentRect.height })))
      : null;
    const intersection = typeof IntersectionObserver === "function"
      ? new IntersectionObserver((entries) => entries.forEach((e) => note(e.target, { visible: e.isIntersecting })))
      : null;
    const onVisibility = () => this._adaptiveTracks.forEach((id) => this._scheduleAdaptive(id));
    if (typeof document !== "undefined") document.addEventListener("visibilitychange", onVisibility);
    this._observers = { resize, intersection, onVisibility };
    return this._observers;
  }

  _unobserve(element) {
    this._views.delete(element);
    const observers = this._observers;
    if (!observers) return;
    if (observers.resize) observers.resize.unobserve(element);
    if (observers.intersection) observers.intersection.unobserve(element);
  }

  /** The SFU no longer sends a track: drop its views and settings state. */
  _forgetRemoteTrack(remote) {
    for (const [element, view] of [...this._views]) {
      if (view.trackId !== remote.trackId) continue;
      this._unobserve(element);
      if (shownTrack(element) === remote.track) element.srcObject = null;
    }
    this._cancelAdaptive(remote.trackId);
    this._adaptiveTracks.delete(remote.trackId);
    this._manualTracks.delete(remote.trackId);
    this._sentSettings.delete(remote.trackId);
    this.layers.delete(remote.trackId);
  }

  _stopAdaptive() {
    for (const element of [...this._views.keys()]) this._unobserve(element);
    this._settingsTimers.forEach((timer) => clearTimeout(timer));
    this._settingsTimers.clear();
    const observers = this._observers;
    this._observers = null;
    if (!observers) return;
    if (observers.resize) observers.resize.disconnect();
    if (observers.intersection) observers.intersection.disconnect();
    if (typeof document !== "undefined") document.removeEventListener("visibilitychange", observers.onVisibility);
  }

  // --- simulcast events -------------------------------------------------------------

  _onLayerChanged({ track_id, quality, rid, width, height }) {
    const layer = { quality };
    if (rid) layer.rid = rid;
    if (width) Object.assign(layer, { width, height });
    this.layers.set(track_id, layer);
  }

  /** Dynacast: (de)activate our simulcast encodings as the SFU asks. */
  _onSubscribedQualityUpdate({ track_id, qualities }) {
    this.subscribedQualities.set(track_id, (qualities || []).map((q) => ({ ...q })));
    this._dynacastQueue
      .run(async () => {
        const entry = this.localTracks.get(track_id);
        if (!entry || this.state === "closed") return;
        await setActiveLayers(entry.transceiver.sender, qualities || []);
      })
      .catch((err) => this._emit("error", { code: "dynacast", message: `setParameters: ${err.message}` }));
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

/** update_track_settings message; undefined fields are left out. */
function settingsMessage(trackId, { quality, maxWidth, maxHeight, maxFps, paused } = {}) {
  const msg = { type: "update_track_settings", track_id: trackId };
  const fields = { quality, max_width: maxWidth, max_height: maxHeight, max_fps: maxFps, paused };
  for (const [key, value] of Object.entries(fields)) if (value !== undefined && value !== null) msg[key] = value;
  return msg;
}

/** Rejects with a PysfuError("timeout") when `promise` takes longer than `ms`. */
function withTimeout(promise, ms) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new PysfuError("timeout", `no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The video track a media element shows, if any. */
function shownTrack(element) {
  const stream = element.srcObject;
  return stream && typeof stream.getVideoTracks === "function" ? stream.getVideoTracks()[0] || null : null;
}

function defaultSource(track) {
  return track.kind === "video" ? "camera" : "microphone";
}

function pickIndex(infos, kind, source) {
  const exact = infos.findIndex((t) => t.kind === kind && t.source === source);
  return exact >= 0 ? exact : infos.findIndex((t) => t.kind === kind);
}

function fallbackInfo(entry) {
  return { id: entry.track_id, participant_id: entry.participant_id, kind: entry.kind, source: "unknown", muted: false, codec: "" };
}

function stopTransceiver(transceiver) {
  try {
    if (typeof transceiver.stop === "function") transceiver.stop();
    else transceiver.sender.replaceTrack(null);
  } catch {
    // already stopped or PC closed
  }
}
