/**
 * pysfu.js - browser client for the pysfu WebRTC SFU (signaling protocol v1).
 *
 * Plain ES modules, no dependencies, no build step.
 *
 *   import { PysfuClient } from "./pysfu.js";
 *   const client = new PysfuClient();              // ws(s)://<host>/ws
 *   client.on("track", ({ track, participant_id }) => attach(track, participant_id));
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
 * This module is the facade: `PysfuClient` holds the public state, routes the
 * server's events and delegates the work to its parts in client/:
 * connection.js (socket, requests, candidate trickle), roster.js (who is in
 * the room), publishing.js, subscribing.js, adaptive_stream.js and
 * reconnect.js (resume, rejoin, ICE timeouts).
 *
 * One naming style: every event detail and record the client hands out has
 * the wire's snake_case keys (`participant_id`, `track_id`, `track_info`,
 * `hand_raised`, `connection_quality`).  The camelCase names of earlier
 * versions (`participantId`, `trackId`, `trackInfo`, `handRaised`,
 * `quality`) still read the same values but are deprecated (client/aliases.js).
 *
 * @module pysfu
 */

import { AdaptiveStream } from "./client/adaptive_stream.js";
import { Connection, PROTOCOL_VERSION, RTC_CONFIG, defaultUrl } from "./client/connection.js";
import { PysfuError } from "./client/errors.js";
import { Publishing } from "./client/publishing.js";
import { DEFAULT_CONNECT_TIMEOUT_MS, Reconnect } from "./client/reconnect.js";
import * as roster from "./client/roster.js";
import { Subscribing } from "./client/subscribing.js";

export { PROTOCOL_VERSION, PysfuError, defaultUrl, DEFAULT_CONNECT_TIMEOUT_MS };
export { RESUME_BACKOFF_MS } from "./client/reconnect.js";
export { SCREEN_SHARE_ENCODING, SIMULCAST_LAYERS, simulcastEncodings } from "./client/publishing.js";

const DEFAULT_TIMEOUT_MS = 15000;
/** A `leave` the client answers by joining again: not passed on to listeners. */
const REJOINING = Symbol("rejoining");

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
 * @property {boolean} hand_raised            (deprecated alias: `handRaised`)
 * @property {"active"|"reconnecting"} state
 * @property {"excellent"|"good"|"poor"|"lost"|null} connection_quality  (deprecated alias: `quality`)
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
 * @property {string} track_id           published track id (deprecated alias: `trackId`)
 * @property {string} participant_id     owner (deprecated alias: `participantId`)
 * @property {"audio"|"video"} kind
 * @property {MediaStreamTrack} track
 * @property {TrackInfo} track_info      (deprecated alias: `trackInfo`)
 */

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
 *  - `hand_raised`        {participant_id, raised}     (ours too; also in `Participant.hand_raised`)
 *  - `participant_state`  {participant_id, state: "reconnecting"|"active"}  (also in `Participant.state`)
 *  - `connection_quality` {updates: [{participant_id, quality: "excellent"|"good"|"poor"|"lost", ...}]}
 *                         (ours too; also in `Participant.connection_quality`)
 *  - `speakers_changed`   {speakers: [{participant_id, level, dominant?}]}  dominant first (also in `speakers`)
 *  - `transcription_started` {room, transcription_id, language}  captions are on (also in `transcription`)
 *  - `transcription_stopped` {room, transcription_id, language, reason: "stopped"|"failed", message?}
 *  - `caption`            {participant_id, text, start, end, final}  what someone said (a final
 *                         replaces that participant's partials)
 *  - `slots_changed`      {slots: [{mid, kind, participant_id, track_id}]}  slot subscription only
 *                         (also in `slots`); each change also comes as `trackremoved` / `track`
 *  - `recording_started`, `recording_stopped` {room, recording_id, track_ids}  the room is
 *                         being recorded while `recordings` (ids, from join_response too) is not empty
 *  - `server_load`        {level, shed}  the server is overloaded and sheds video (level 1-4), or
 *                         gave it back (0); never audio or the speakers' video (also in `serverLoad`)
 * Client events (snake_case like the server's; the camelCase names
 * `trackInfo`, `participantId`, `trackId` still read the same but are deprecated):
 *  - `track`        {track, track_info, participant_id, track_id, mid, kind, streams}  (a RemoteTrack + streams)
 *  - `trackremoved` {track, track_info, participant_id, track_id, mid, kind}
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
    /** @type {boolean} */
    this.adaptiveStream = options.adaptiveStream !== false;
    /** @type {boolean} */
    this.simulcast = options.simulcast !== false;
    /** @type {Map<string, LayerInfo>} latest `layer_changed` by remote track id */
    this.layers = new Map();
    /** @type {Map<string, {quality: string, rid: string, enabled: boolean}[]>} latest dynacast state by local track id */
    this.subscribedQualities = new Map();
    /** @type {ChatMessage[]} the room's chat, oldest first (history from join, then new messages) */
    this.chat = [];
    /** The room's transcription while captions are on: {id, language}, else null. */
    this.transcription = null;
    /** Ids of the room's recordings in progress (non-empty: the room is being recorded). */
    this.recordings = new Set();
    /** What the server's load takes off the video we get: {level: 0 (nothing) .. 4, shed}. */
    this.serverLoad = { level: 0, shed: "none" };
    /** @type {Map<Function, Map<string, EventListener>>} */
    this._listenerWrappers = new Map();
    this._leaving = false;
    this._joinArgs = null;
    // the parts (client/*.js); each works on the public state above
    this._connection = new Connection(this);
    this._publishing = new Publishing(this);
    this._subscribing = new Subscribing(this);
    this._adaptive = new AdaptiveStream(this);
    this._reconnect = new Reconnect(this);
  }

  /** @type {WebSocket|null} the signaling socket */
  get ws() {
    return this._connection.ws;
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
    return this._connection.connect();
  }

  /**
   * Send a request; an `id` is added.  Resolves with the server's response
   * (join_response, publish_response, ok, pong); rejects with a PysfuError
   * carrying `.code` on an `error` response, timeout or closed socket.
   * @param {Object} msg  request without id, e.g. {type: "ping"}
   * @returns {Promise<Object>}
   */
  request(msg) {
    return this._connection.request(msg);
  }

  // --- server events ------------------------------------------------------

  /** A server message that answers no request: update our state, then tell the listeners. */
  _onEvent(msg) {
    const handler = {
      participant_joined: () => roster.addParticipant(this, msg.participant),
      participant_left: () => roster.removeParticipant(this, msg.participant_id),
      track_published: () => roster.addTrack(this, msg.track),
      track_unpublished: () => roster.removeTrack(this, msg.participant_id, msg.track_id),
      track_muted: () => roster.setTrackMuted(this, msg),
      subscriber_offer: () => this._subscribing.queueOffer(msg),
      slots_changed: () => this._subscribing.queueSlots(msg.slots || []),
      layer_changed: () => this._subscribing.onLayerChanged(msg),
      subscribed_quality_update: () => this._publishing.onSubscribedQualityUpdate(msg),
      leave: () => (this._reconnect.onLeave(msg.reason) ? REJOINING : undefined),
      // operator and data events: passed on to listeners as they are
      data: () => {},
      room_updated: () => {},
      participant_updated: () => {},
      error: () => {},
      // meeting events (issue 8)
      chat_message: () => this._onChatMessage(msg),
      reaction: () => {},
      hand_raised: () => roster.setHandRaised(this, msg),
      // active speakers (issue 4): loudest first, the dominant one flagged
      speakers_changed: () => { this.speakers = msg.speakers || []; },
      // reconnect and resume, connection quality (issue 6)
      participant_state: () => roster.setParticipantState(this, msg),
      connection_quality: () => roster.setConnectionQuality(this, msg),
      // graceful overload (issue 13): the server sheds video while it is overloaded
      server_load: () => { this.serverLoad = { level: msg.level, shed: msg.shed }; },
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

  /**
   * TrackInfo by id, searched in the roster and our own tracks.
   * @param {string} trackId
   * @param {string} [participantId]  narrows the search
   * @returns {TrackInfo|null}
   */
  findTrack(trackId, participantId) {
    return roster.findTrack(this, trackId, participantId);
  }

  /**
   * JSON-friendly snapshot of the remote participants (roster) with track arrays.
   * @returns {{id: string, name: string, hand_raised: boolean, state: string, connection_quality: string|null, tracks: TrackInfo[]}[]}
   */
  participants() {
    return [...this.roster.values()].map(roster.plainParticipant);
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
      await this._connection.moveTo(res.url);
      if (res.ticket) msg.token = res.ticket;
      res = await this.request(msg);
    }
    this._joinArgs = { name, options };
    this.room = res.room;
    this.participantId = res.participant.id;
    this.localParticipant = roster.toParticipant(res.participant);
    this.roster.clear();
    res.participants.forEach((p) => roster.addParticipant(this, p));
    this.chat = (res.chat_history || []).slice(-CHAT_HISTORY).map((m) => ({ ...m }));
    this.recordings = new Set(res.recordings || []);
    this.serverLoad = { level: 0, shed: "none" }; // a loaded server says so right after this answer
    // STUN/TURN servers (TURN credentials minted for us) for both PCs, made just below
    if (!this._ownIceServers) this.rtcConfig.iceServers = res.ice_servers || [];
    this._reconnect.keepResumeToken(res);
    this.state = "joined";
    this._subscribing.ensurePc();
    this._publishing.ensurePc();
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

  /** Close everything for good: timers, local tracks, remote tracks, both PCs, the socket. */
  _teardown() {
    if (this.state === "closed") return;
    this.state = "closed";
    this._reconnect.stop();
    this._publishing.stopTracks();
    this._subscribing.dropAll();
    this._adaptive.stop();
    for (const pc of [this.publisherPc, this.subscriberPc]) if (pc) pc.close();
    this._connection.close(1000, "leave");
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
    return this._publishing.publish(stream, tracks, options.source, simulcast);
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

  /**
   * Published track id for a local MediaStreamTrack.
   * @param {MediaStreamTrack} track
   * @returns {string|null}
   */
  trackIdFor(track) {
    return this._publishing.trackIdFor(track);
  }

  /**
   * Stop publishing a track (stops its transceiver; the local track keeps running).
   * @param {string} trackId  published track id
   * @returns {Promise<Object>} the `ok` response
   */
  async unpublish(trackId) {
    return this._publishing.unpublish(trackId);
  }

  /**
   * Mute/unmute a published track: toggles `track.enabled` locally and tells the server.
   * @param {string} trackId  published track id
   * @param {boolean} muted
   * @returns {Promise<Object>} the `ok` response
   */
  setMuted(trackId, muted) {
    return this._publishing.setMuted(trackId, muted);
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

  /**
   * A remote track currently delivered, by published track id.
   * @param {string} trackId
   * @returns {RemoteTrack|null}
   */
  remoteTrackById(trackId) {
    return this._subscribing.remoteTrackById(trackId);
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
    return this._adaptive.attach(trackId, video);
  }

  /**
   * Stop showing a remote track: stops observing the element(s) and clears
   * their `srcObject` if they show it.  A track no element shows any more is
   * paused at the SFU (adaptive stream).
   * @param {string} trackId
   * @param {HTMLVideoElement} [video]  default: every element showing the track
   */
  detachVideo(trackId, video) {
    this._adaptive.detach(trackId, video);
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
    return this._adaptive.setTrackSettings(trackId, settings);
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
    return this._adaptive.setAuto(trackId);
  }

  /** The explicit quality chosen for a track, or "auto". @param {string} trackId @returns {string} */
  qualityOf(trackId) {
    return this._adaptive.qualityOf(trackId);
  }
}
