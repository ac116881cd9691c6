// pysfu demo page: join a room, publish camera + mic, show everyone in a grid.
// All user-provided text goes through textContent.

import { PysfuClient } from "./pysfu.js";
import { describeError, errorCode } from "./errors.js";
import {
  displayOrder, filmstripCapacity, gridCapacity, gridShape, paginate, promote, spotlightOf,
} from "./layout.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const VIDEO_CONSTRAINTS = { width: 1280, height: 720 };
const QUALITY_CHOICES = ["auto", "low", "medium", "high"];
const QUALITY_LETTERS = { low: "q", medium: "h", high: "f" };
/** Remote tiles per page from `?pageSize=N` (else what fits the window). */
const PAGE_SIZE = Math.max(0, Number.parseInt(params.get("pageSize") || "0", 10) || 0);
/** `?slots=V,A`: slot subscription with V video and A audio m-lines (default: off). */
const SLOTS = parseSlots(params.get("slots"));

function parseSlots(value) {
  if (!value) return null;
  const [video, audio] = value.split(",").map((n) => Math.max(0, Number.parseInt(n, 10) || 0));
  return { video: video || 0, audio: audio || 0 };
}
const TILE_GAP = 12; // px, as .tiles' gap in style.css

/** participant id -> tile record {el, video, nameEl, placeholder, indicators, tracks, shown,
 *  and for remote tiles: quality ("auto"|"low"|"medium"|"high"), qualitySelect, layerBadge,
 *  pinButton, pausedTrackId (video paused at the SFU while the tile is off the page)} */
const tiles = new Map();

/** Screen shares shown on the stage, by published track id (ours: by local track id):
 *  {el, video, label, participantId, local} */
const shares = new Map();

/**
 * Layout (issue 4): a paginated grid or a speaker view.  Our own tile is
 * always shown; remote tiles off the page are hidden and their video paused
 * at the SFU.  What is on screen is sent as last-N pins (our pins first).
 */
const layout = {
  mode: params.get("layout") === "speaker" ? "speaker" : "grid",
  page: 1,
  pages: 1,
  pageSize: 1, // remote tiles per page
  order: [], // remote participant ids: join order, speakers swapped onto page 1
  pins: [], // our pins, newest first
  speakers: [null, null], // dominant remote speaker now, and the one before
  lastHeard: new Map(), // participant id -> Date.now() when last an active speaker
  spotlight: null, // participant id on the speaker view's big tile
  visible: [], // remote ids on the current page
  sentPins: null, // last set_pins sent, as a JSON key
  queued: false,
};

/** Hooks for automated tests. */
const demo = {
  client: null,
  joined: null,
  isJoined: false,
  localStream: null,
  published: [],
  publishError: null,
  tiles,
  join,
  leave,
  setQuality,
  // meeting features (issue 8)
  shares,
  screen: null, // our share: {stream, trackIds}
  shareScreen,
  stopScreenShare,
  sendChat,
  sendReaction,
  raiseHand,
  // layout (issue 4)
  layout,
  pin,
  setLayout,
  setPage,
};
window.pysfuDemo = demo;

let settleJoined = null;

// --- state & status ----------------------------------------------------------

function setState(state, text, code) {
  document.body.dataset.state = state;
  const status = $("status");
  status.textContent = text;
  if (code) status.dataset.code = code;
  else delete status.dataset.code;
}

function showError(err, prefix = "Error") {
  setState("error", `${prefix}: ${describeError(err)}`, errorCode(err));
}

/** A failure that leaves the call up: the status line says it, the state stays. */
function showNotice(prefix, err) {
  const status = $("status");
  status.textContent = `${prefix}: ${describeError(err)}`;
  status.dataset.code = errorCode(err);
}

/** Fresh `demo.joined` promise for the next join attempt. */
function resetJoinedPromise() {
  demo.joined = new Promise((resolve, reject) => {
    settleJoined = { resolve, reject };
  });
  demo.joined.catch(() => {}); // avoid unhandled-rejection noise; awaiters still see it
}

function showCall(inCall) {
  $("join-form").hidden = inCall;
  $("call").hidden = !inCall;
}

// --- tiles -------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function createVideo() {
  const video = el("video");
  video.autoplay = true;
  video.playsInline = true;
  video.setAttribute("playsinline", "");
  video.muted = true;
  video.defaultMuted = true;
  return video;
}

function createIndicator(kind, text) {
  const node = el("span", "tile-indicator", text);
  node.dataset.kind = kind;
  node.hidden = true;
  return node;
}

function createTile(participantId, name, local) {
  const tile = {
    el: el("div", local ? "tile local" : "tile"),
    video: createVideo(),
    placeholder: el("div", "tile-placeholder"),
    nameEl: el("span", "tile-name"),
    indicators: {
      audio: createIndicator("audio", "mic muted"),
      video: createIndicator("video", "camera off"),
      hand: createIndicator("hand", "✋ hand raised"),
      pin: createIndicator("pin", "📌 pinned"),
    },
    tracks: new Map(),
    local,
    shown: true,
  };
  tile.el.dataset.participantId = participantId;
  const footer = el("div", "tile-footer");
  footer.append(tile.nameEl, tile.indicators.pin, tile.indicators.hand, tile.indicators.audio, tile.indicators.video);
  tile.el.append(tile.video, tile.placeholder, footer);
  if (!local) addQualityControls(tile, participantId);
  setTileName(tile, name);
  return tile;
}

/** Remote tiles: a layer badge and an auto/low/medium/high selector. */
function addQualityControls(tile, participantId) {
  tile.quality = "auto";
  tile.layerBadge = el("span", "layer-badge");
  tile.layerBadge.dataset.quality = "";
  tile.layerBadge.hidden = true;
  tile.layerBadge.title = "layer received (q/h/f) and decoded resolution";
  tile.qualitySelect = el("select", "quality");
  tile.qualitySelect.setAttribute("aria-label", "Video quality");
  for (const quality of QUALITY_CHOICES) {
    const option = el("option", "", quality);
    option.value = quality;
    tile.qualitySelect.append(option);
  }
  tile.qualitySelect.addEventListener("change", () => setQuality(participantId, tile.qualitySelect.value));
  tile.video.addEventListener("resize", () => refreshBadge(tile));
  tile.pinButton = el("button", "pin-btn", "Pin");
  tile.pinButton.type = "button";
  tile.pinButton.setAttribute("aria-pressed", "false");
  tile.pinButton.addEventListener("click", () => pin(participantId));
  const top = el("div", "tile-top");
  top.append(tile.layerBadge, tile.qualitySelect, tile.pinButton);
  tile.el.append(top);
}

function setTileName(tile, name) {
  const label = tile.local ? `${name || "You"} (you)` : name || "Guest";
  tile.nameEl.textContent = label;
  if (tile.pinButton) tile.pinButton.setAttribute("aria-label", `Pin ${name || "Guest"}`);
  tile.placeholder.textContent = (name || "?").trim().charAt(0).toUpperCase() || "?";
}

function ensureTile(participantId, name, local = false) {
  let tile = tiles.get(participantId);
  if (!tile) {
    tile = createTile(participantId, name, local);
    tiles.set(participantId, tile);
    if (local) $("tiles").prepend(tile.el);
    else $("tiles").append(tile.el);
    if (!local) layout.order.push(participantId);
    scheduleLayout();
  } else if (name) {
    setTileName(tile, name);
  }
  refreshIndicators(participantId);
  return tile;
}

function removeTile(participantId) {
  const tile = tiles.get(participantId);
  if (!tile) return;
  if (!tile.local && tile.video.dataset.trackId && demo.client) demo.client.detachVideo(tile.video.dataset.trackId, tile.video);
  tile.video.srcObject = null;
  tile.tracks.forEach((entry) => entry.audioEl && (entry.audioEl.srcObject = null));
  tile.el.remove();
  tiles.delete(participantId);
  layout.order = layout.order.filter((id) => id !== participantId);
  layout.pins = layout.pins.filter((id) => id !== participantId);
  scheduleLayout();
}

function clearTiles() {
  [...tiles.keys()].forEach(removeTile);
}

/** Show the first live video track of the tile (camera preferred). */
function refreshVideo(tile) {
  const videos = [...tile.tracks.values()].filter((t) => t.kind === "video" && t.track.readyState !== "ended");
  videos.sort((a, b) => (b.source === "camera") - (a.source === "camera"));
  const chosen = videos[0];
  const current = tile.video.srcObject && tile.video.srcObject.getVideoTracks()[0];
  if (chosen && chosen.track !== current) {
    if (tile.local) {
      tile.video.srcObject = new MediaStream([chosen.track]);
      tile.video.play().catch(() => {});
    } else if (tile.shown) {
      showRemoteVideo(tile, chosen.trackId);
    } else {
      pauseHiddenVideo(tile, chosen.trackId);
    }
    tile.video.dataset.trackId = chosen.trackId;
  } else if (!chosen) {
    if (!tile.local && tile.video.dataset.trackId) demo.client.detachVideo(tile.video.dataset.trackId, tile.video);
    tile.video.srcObject = null;
    delete tile.video.dataset.trackId;
    tile.pausedTrackId = null;
  }
  tile.el.classList.toggle("has-video", Boolean(chosen));
  refreshBadge(tile);
}

/** Show a remote video track through the client (adaptive stream), keeping the tile's quality choice. */
function showRemoteVideo(tile, trackId) {
  const client = demo.client;
  try {
    client.attachVideo(trackId, tile.video);
  } catch (err) {
    console.warn("attachVideo failed", trackId, err.code || err.message);
    return;
  }
  const wasPaused = tile.pausedTrackId === trackId;
  tile.pausedTrackId = null;
  if (wasPaused || client.qualityOf(trackId) !== tile.quality) applyQuality(trackId, tile.quality);
}

/**
 * A tile off the page: stop showing its video and have the SFU stop sending
 * it (`update_track_settings` paused) until the tile is shown again.
 */
function pauseHiddenVideo(tile, trackId) {
  const client = demo.client;
  const previous = tile.video.dataset.trackId;
  if (previous) client.detachVideo(previous, tile.video);
  tile.video.srcObject = null;
  if (tile.pausedTrackId === trackId) return;
  tile.pausedTrackId = trackId;
  client.setTrackSettings(trackId, { paused: true }).catch((err) => {
    console.warn("pysfu: pausing a hidden tile failed", trackId, err.code, err.message);
  });
}

// --- simulcast: quality selector & layer badge ---------------------------------

/** Ask for a quality; failures (e.g. a server without simulcast) only warn. */
function applyQuality(trackId, quality) {
  return demo.client.setQuality(trackId, quality).catch((err) => {
    console.warn("pysfu: update_track_settings failed", trackId, err.code, err.message);
    return null;
  });
}

/**
 * Choose the video quality of a participant's tile: "auto" (adaptive stream)
 * or "low" | "medium" | "high".  Used by the tile's selector; a test hook.
 * @param {string} participantId
 * @param {"auto"|"low"|"medium"|"high"} quality
 * @returns {Promise<Object|null>} the server's response (null: nothing sent or it failed)
 */
async function setQuality(participantId, quality) {
  const tile = tiles.get(participantId);
  if (!tile || tile.local || !QUALITY_CHOICES.includes(quality)) return null;
  tile.quality = quality;
  tile.qualitySelect.value = quality;
  const trackId = tile.video.dataset.trackId;
  if (!tile.shown || !trackId || !demo.client || !demo.client.remoteTrackById(trackId)) return null;
  return applyQuality(trackId, quality);
}

/** Badge text: layer letter (q/h/f, or "off") and the decoded resolution. */
function refreshBadge(tile) {
  const badge = tile.layerBadge;
  if (!badge) return;
  const trackId = tile.video.dataset.trackId;
  const layer = (trackId && demo.client && demo.client.layers.get(trackId)) || null;
  const quality = layer ? layer.quality : "";
  const letter = !layer ? "" : quality === "off" ? "off" : layer.rid || QUALITY_LETTERS[quality] || quality;
  const { videoWidth, videoHeight } = tile.video;
  const size = trackId && videoWidth && quality !== "off" ? `${videoWidth}x${videoHeight}` : "";
  const text = [letter, size].filter(Boolean).join(" ");
  badge.dataset.quality = quality;
  tile.el.dataset.layer = quality;
  if (layer && layer.rid) badge.dataset.rid = layer.rid;
  else delete badge.dataset.rid;
  badge.dataset.resolution = size;
  if (badge.textContent !== text) badge.textContent = text;
  badge.hidden = !text;
}

function refreshBadges() {
  tiles.forEach((tile) => refreshBadge(tile));
}

function onLayerChanged({ track_id }) {
  for (const tile of tiles.values()) if (tile.video.dataset.trackId === track_id) refreshBadge(tile);
}

function participantInfo(participantId) {
  const client = demo.client;
  if (!client) return null;
  if (participantId === client.participantId) return client.localParticipant;
  return client.roster.get(participantId) || null;
}

/** Sync the "muted" indicators of a tile with the roster. */
function refreshIndicators(participantId) {
  const tile = tiles.get(participantId);
  const info = participantInfo(participantId);
  if (!tile) return;
  const tracks = info ? [...info.tracks.values()] : [];
  for (const kind of ["audio", "video"]) {
    const muted = tracks.some((t) => t.kind === kind && t.muted);
    tile.indicators[kind].hidden = !muted;
    tile.el.dataset[`${kind}Muted`] = String(muted);
  }
  const raised = Boolean(info && info.hand_raised);
  tile.indicators.hand.hidden = !raised;
  tile.el.dataset.handRaised = String(raised);
}

// --- remote tracks -----------------------------------------------------------

function createAudio(track, trackId) {
  const audio = el("audio");
  audio.autoplay = true;
  audio.hidden = true;
  audio.dataset.trackId = trackId;
  audio.srcObject = new MediaStream([track]);
  audio.play().catch(() => {});
  return audio;
}

function onRemoteTrack({ track, track_info, participant_id: participantId, track_id: trackId, kind }) {
  const info = participantInfo(participantId);
  const source = (demo.client.findTrack(trackId, participantId) || track_info).source;
  if (kind === "video" && source === "screen_share") {
    addShare(trackId, participantId, info ? info.name : "", track, false);
    return;
  }
  const tile = ensureTile(participantId, info ? info.name : "");
  const entry = { track, trackId, kind, source: track_info.source, audioEl: null };
  if (kind === "audio") {
    entry.audioEl = createAudio(track, trackId);
    tile.el.append(entry.audioEl);
  }
  tile.tracks.set(trackId, entry);
  refreshVideo(tile);
}

function onRemoteTrackRemoved({ participant_id: participantId, track_id: trackId }) {
  if (shares.has(trackId)) {
    removeShare(trackId);
    return;
  }
  const tile = tiles.get(participantId);
  const entry = tile && tile.tracks.get(trackId);
  if (!entry) return;
  if (entry.audioEl) {
    entry.audioEl.srcObject = null;
    entry.audioEl.remove();
  }
  tile.tracks.delete(trackId);
  refreshVideo(tile);
}

// --- screen share (issue 8) ------------------------------------------------------

/** Show a screen share large on the stage (remote: through the client, for adaptive stream). */
function addShare(trackId, participantId, name, track, local) {
  removeShare(trackId);
  const share = { el: el("div", local ? "share local" : "share"), video: createVideo(), label: el("span", "share-label"), participantId, local };
  share.el.dataset.participantId = participantId;
  share.el.dataset.trackId = trackId;
  share.label.textContent = local ? "Your screen" : `${name || "Guest"}'s screen`;
  share.el.append(share.video, share.label);
  shares.set(trackId, share);
  $("stage").append(share.el);
  $("stage").hidden = false;
  scheduleLayout();
  if (local) {
    share.video.srcObject = new MediaStream([track]);
    share.video.play().catch(() => {});
  } else {
    try {
      demo.client.attachVideo(trackId, share.video);
    } catch (err) {
      console.warn("attachVideo failed", trackId, err.code || err.message);
    }
  }
}

function removeShare(trackId) {
  const share = shares.get(trackId);
  if (!share) return;
  if (!share.local && demo.client) demo.client.detachVideo(trackId, share.video);
  share.video.srcObject = null;
  share.el.remove();
  shares.delete(trackId);
  $("stage").hidden = shares.size === 0;
  scheduleLayout();
}

function clearShares() {
  [...shares.keys()].forEach(removeShare);
}

/**
 * Share a screen: `stream` (e.g. a canvas captureStream, for tests) or, by
 * default, what the user picks in getDisplayMedia.  Shown on our stage too.
 * @param {MediaStream} [stream]
 * @returns {Promise<Object[]>} the published TrackInfos
 */
async function shareScreen(stream) {
  const client = demo.client;
  if (!client || client.state !== "joined") throw Object.assign(new Error("join a room first"), { code: "not_joined" });
  if (demo.screen) await stopScreenShare();
  stream = stream || (await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 15 }, audio: false }));
  const [track] = stream.getVideoTracks();
  if (!track) throw Object.assign(new Error("no video to share"), { code: "no_video" });
  const screen = { stream, trackIds: [] };
  demo.screen = screen;
  updateShareButton();
  let infos;
  try {
    infos = (await client.publishScreen(track)).filter(Boolean);
    screen.trackIds = infos.map((i) => i.id);
  } catch (err) {
    stream.getTracks().forEach((t) => t.stop());
    if (demo.screen === screen) demo.screen = null;
    updateShareButton();
    throw err;
  }
  if (demo.screen !== screen) { // stopped while publishing
    await Promise.all(screen.trackIds.map((id) => client.unpublish(id).catch(() => {})));
    return [];
  }
  addShare(track.id, client.participantId, "", track, true);
  track.addEventListener("ended", () => stopScreenShare()); // "Stop sharing" in the browser's bar
  return infos;
}

/** Stop sharing: unpublishes the track (its transceiver stops) and stops the capture. */
async function stopScreenShare() {
  const screen = demo.screen;
  if (!screen) return;
  demo.screen = null;
  updateShareButton();
  screen.stream.getTracks().forEach((t) => {
    removeShare(t.id);
    t.stop();
  });
  const client = demo.client;
  if (!client || client.state !== "joined") return;
  await Promise.all(screen.trackIds.map((id) => client.unpublish(id).catch((err) => console.warn("unpublish failed", err))));
}

function updateShareButton() {
  const button = $("share-btn");
  const sharing = Boolean(demo.screen);
  button.textContent = sharing ? "Stop sharing" : "Share screen";
  button.setAttribute("aria-pressed", String(sharing));
  button.disabled = !navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia;
}

function toggleScreenShare() {
  const action = demo.screen ? stopScreenShare() : shareScreen();
  action.catch((err) => {
    console.warn("screen share failed", err);
    if (err.name !== "NotAllowedError") showNotice("Screen share failed", err);
  });
}

// --- chat, reactions, raise hand (issue 8) -----------------------------------------
// Chat text is untrusted: it only ever goes into the page through textContent.

function renderChatMessage({ id, participant_id, name, text, ts }) {
  const item = el("li", "chat-message");
  item.dataset.messageId = id;
  item.dataset.participantId = participant_id;
  const mine = demo.client && participant_id === demo.client.participantId;
  const header = el("div", "chat-header");
  header.append(el("span", "chat-name", mine ? `${name || "You"} (you)` : name || "Guest"));
  const time = el("time", "chat-time", new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
  time.dateTime = new Date(ts).toISOString();
  header.append(time);
  item.append(header, el("div", "chat-text", text));
  const list = $("chat-messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(item);
  while (list.children.length > 100) list.firstElementChild.remove();
  if (atBottom || mine) list.scrollTop = list.scrollHeight;
}

function showChatError(err) {
  const node = $("chat-error");
  node.textContent = err ? `Not sent: ${describeError(err)}` : "";
  node.hidden = !err;
}

/** Post a chat message. @param {string} text @returns {Promise<Object>} */
async function sendChat(text) {
  try {
    const res = await demo.client.sendChat(text);
    showChatError(null);
    return res;
  } catch (err) {
    showChatError(err);
    throw err;
  }
}

/** Send a reaction (emoji). @param {string} emoji @returns {Promise<Object>} */
function sendReaction(emoji) {
  return demo.client.sendReaction(emoji);
}

/** Raise (true) or lower (false) our hand; toggles when omitted. @returns {Promise<Object>} */
function raiseHand(raised) {
  const me = demo.client && demo.client.localParticipant;
  const wanted = raised === undefined ? !(me && me.hand_raised) : Boolean(raised);
  return demo.client.raiseHand(wanted);
}

/** A reaction floats up over the sender's tile for a few seconds. */
function floatReaction({ participant_id, emoji }) {
  const tile = tiles.get(participant_id);
  if (!tile) return;
  const node = el("span", "reaction-float", emoji);
  node.dataset.emoji = emoji;
  tile.el.append(node);
  setTimeout(() => node.remove(), 3000);
}

function onHandRaised({ participant_id }) {
  refreshIndicators(participant_id);
  if (demo.client && participant_id === demo.client.participantId) updateHandButton();
}

/** Mark the tiles of active speakers (data-speaking) and the dominant one. */
function onSpeakersChanged({ speakers }) {
  const list = speakers || [];
  const speaking = new Set(list.map((s) => s.participant_id));
  const dominant = list.find((s) => s.dominant);
  for (const tile of document.querySelectorAll(".tile[data-participant-id]")) {
    const id = tile.dataset.participantId;
    tile.dataset.speaking = String(speaking.has(id));
    tile.dataset.dominant = String(Boolean(dominant && dominant.participant_id === id));
  }
  noteSpeakers(list);
}

function updateHandButton() {
  const me = demo.client && demo.client.localParticipant;
  const raised = Boolean(me && me.hand_raised);
  $("hand-btn").textContent = raised ? "Lower hand" : "Raise hand";
  $("hand-btn").setAttribute("aria-pressed", String(raised));
}

function clearChat() {
  $("chat-messages").replaceChildren();
  showChatError(null);
}

// --- live captions -------------------------------------------------------------

const CAPTION_SHOWN_MS = 8000;

/** The caption line: the latest thing said, with the speaker's name. */
function showCaption({ participant_id, text, final }) {
  const line = $("captions");
  const who = participantInfo(participant_id);
  const mine = demo.client && participant_id === demo.client.participantId;
  line.replaceChildren(el("span", "caption-name", mine ? "You" : (who && who.name) || "Guest"), el("span", "caption-text", text));
  line.dataset.participantId = participant_id;
  line.classList.toggle("partial", final === false); // still being said: the final replaces it
  line.hidden = false;
  clearTimeout(demo.captionTimer);
  demo.captionTimer = setTimeout(() => { line.hidden = true; }, CAPTION_SHOWN_MS);
}

function showTranscriptionState(on, note) {
  $("captions-btn").textContent = on ? "Stop captions" : "Captions";
  $("captions-btn").setAttribute("aria-pressed", String(on));
  const state = $("captions-state");
  state.textContent = note || (on ? "Captions on: this meeting is transcribed" : "");
  state.hidden = !state.textContent;
  if (!on) $("captions").hidden = true;
}

async function toggleCaptions() {
  const client = demo.client;
  if (!client) return;
  try {
    if (client.transcription) await client.stopTranscription();
    else await client.startTranscription();
  } catch (err) {
    showTranscriptionState(Boolean(client.transcription), `Captions: ${err.code || err.message}`);
  }
}

function wireCaptions(client) {
  client.on("caption", showCaption);
  client.on("transcription_started", () => showTranscriptionState(true));
  client.on("transcription_stopped", ({ reason, message }) =>
    showTranscriptionState(false, reason === "failed" ? `Captions stopped: ${message || "failed"}` : ""));
}

function wireMeeting() {
  $("captions-btn").addEventListener("click", toggleCaptions);
  $("share-btn").addEventListener("click", toggleScreenShare);
  $("hand-btn").addEventListener("click", () => raiseHand().catch((err) => console.warn("raise hand failed", err)));
  for (const button of $("reactions").querySelectorAll("button[data-emoji]")) {
    button.addEventListener("click", () => sendReaction(button.dataset.emoji).catch((err) => console.warn("reaction failed", err)));
  }
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("chat-input");
    const text = input.value;
    if (!text.trim()) return;
    sendChat(text).then(() => {
      if (input.value === text) input.value = "";
    }, () => {});
  });
}

// --- reconnect and connection quality (issue 6) -------------------------------

const QUALITY_BARS = { excellent: "▂▄▆", good: "▂▄", poor: "▂", lost: "✕" };

/** A tile shows "reconnecting…" while its participant's connection is down. */
function showParticipantState(participantId, state) {
  const tile = tiles.get(participantId);
  if (!tile) return;
  tile.el.classList.toggle("reconnecting", state === "reconnecting");
  tile.el.dataset.connection = state;
}

/** A small signal-bars indicator in the tile footer. */
function showQuality(participantId, quality) {
  const tile = tiles.get(participantId);
  const footer = tile && tile.el.querySelector(".tile-footer");
  if (!footer || !quality) return;
  let badge = footer.querySelector(".quality-indicator");
  if (!badge) {
    badge = el("span", "quality-indicator");
    footer.append(badge);
  }
  badge.dataset.quality = quality;
  badge.title = `connection: ${quality}`;
  badge.textContent = QUALITY_BARS[quality] || "";
}

/** Tiles from the client's roster state (after a join or a resume). */
function syncConnectivity(client) {
  for (const p of [client.localParticipant, ...client.roster.values()]) {
    if (!p) continue;
    showParticipantState(p.id, p.state);
    showQuality(p.id, p.connection_quality);
  }
}

function onReconnecting() {
  document.body.dataset.connection = "reconnecting";
  showParticipantState(demo.client.participantId, "reconnecting");
  $("status").textContent = "Connection lost — reconnecting…";
}

function onReconnected() {
  delete document.body.dataset.connection;
  syncConnectivity(demo.client);
  $("status").textContent = "Reconnected";
}

function wireConnectivity(client) {
  client.on("participant_joined", ({ participant }) => showQuality(participant.id, participant.connection_quality));
  client.on("participant_state", ({ participant_id, state }) => showParticipantState(participant_id, state));
  client.on("connection_quality", ({ updates }) => updates.forEach((u) => showQuality(u.participant_id, u.quality)));
  client.on("reconnecting", onReconnecting);
  client.on("reconnected", onReconnected);
}

// --- layout: paginated grid, speaker view, pins (issue 4) ---------------------------

/** Re-lay out once the current burst of changes (e.g. a roster) is done. */
function scheduleLayout() {
  if (layout.queued) return;
  layout.queued = true;
  queueMicrotask(renderLayout);
}

/** Tiles as a filmstrip row: in speaker view, and beside a screen share. */
function usesFilmstrip() {
  return layout.mode === "speaker" || shares.size > 0;
}

/** Room for tiles: #tiles' width, and the window's height below its top. */
function tileArea() {
  const grid = $("tiles");
  const top = grid.getBoundingClientRect().top + window.scrollY;
  return { width: grid.clientWidth, height: window.innerHeight - top - TILE_GAP };
}

/** Remote tiles per page: `?pageSize=N`, else what fits (one cell is ours). */
function pageSize() {
  if (PAGE_SIZE) return PAGE_SIZE;
  const { width, height } = tileArea();
  const cells = usesFilmstrip() ? filmstripCapacity(width, TILE_GAP) : gridCapacity(width, height, TILE_GAP);
  return Math.max(1, cells - 1);
}

/** Who goes where now: {spotlight, paged (remote ids in page order)}.  Alone, we are the spotlight. */
function arrangement() {
  const display = displayOrder(layout.order, layout.pins);
  let spotlight = null;
  if (layout.mode === "speaker" && shares.size === 0) {
    spotlight = spotlightOf(display, layout.pins, layout.speakers) || (demo.client && demo.client.participantId);
  }
  return { spotlight, paged: display.filter((id) => id !== spotlight) };
}

/**
 * Show the current page (and the spotlight in speaker view), hide and pause
 * the rest, and tell the SFU what is on screen.
 * @returns {Promise<Object|null>} the set_pins response (null: unchanged)
 */
function renderLayout() {
  layout.queued = false;
  const { spotlight, paged } = arrangement();
  layout.pageSize = pageSize();
  const { page, pages, items } = paginate(paged, layout.pageSize, layout.page);
  Object.assign(layout, { page, pages, visible: items, spotlight });
  placeTiles(spotlight, items);
  updateLayoutControls();
  return sendPins([...layout.pins, spotlight, ...items]);
}

/** Spotlight tile into #spotlight; our tile and the page's tiles first in #tiles, the others hidden. */
function placeTiles(spotlightId, onPage) {
  const spot = spotlightId ? tiles.get(spotlightId) : null;
  const stage = $("spotlight");
  const grid = $("tiles");
  for (const child of [...stage.children]) if (!spot || child !== spot.el) grid.append(child);
  if (spot && spot.el.parentNode !== stage) stage.append(spot.el);
  stage.hidden = !spot;
  const local = [...tiles.values()].find((t) => t.local);
  const sequence = [local, ...onPage.map((id) => tiles.get(id))].filter((t) => t && t !== spot);
  for (const tile of tiles.values()) if (tile !== spot && !sequence.includes(tile)) sequence.push(tile);
  sequence.forEach((tile, i) => {
    if (grid.children[i] !== tile.el) grid.insertBefore(tile.el, grid.children[i] || null);
  });
  const shown = new Set(onPage);
  for (const [id, tile] of tiles) setTileShown(tile, tile.local || tile === spot || shown.has(id));
  shapeGrid(onPage.length + (local && local !== spot ? 1 : 0));
}

/** Hide or show a tile; a remote one's video is paused / resumed at the SFU with it. */
function setTileShown(tile, shown) {
  if (tile.shown === shown) return;
  tile.shown = shown;
  tile.el.hidden = !shown;
  const trackId = tile.video.dataset.trackId;
  if (tile.local || !trackId || !demo.client || !demo.client.remoteTrackById(trackId)) return;
  if (shown) showRemoteVideo(tile, trackId);
  else pauseHiddenVideo(tile, trackId);
}

/** Grid view: as many columns as make the page's tiles largest in the window. */
function shapeGrid(count) {
  const grid = $("tiles");
  grid.classList.toggle("filmstrip", usesFilmstrip());
  const { width, height } = tileArea();
  if (usesFilmstrip() || width <= 0 || height <= 0) {
    grid.style.removeProperty("grid-template-columns");
    return;
  }
  const { columns, tileWidth } = gridShape(count, width, height, TILE_GAP);
  grid.style.gridTemplateColumns = `repeat(${columns}, minmax(0, ${Math.max(tileWidth, 160)}px))`;
}

function updateLayoutControls() {
  document.body.dataset.layout = layout.mode;
  $("grid-view-btn").setAttribute("aria-pressed", String(layout.mode === "grid"));
  $("speaker-view-btn").setAttribute("aria-pressed", String(layout.mode === "speaker"));
  $("pager").hidden = layout.pages <= 1;
  $("page-label").textContent = `Page ${layout.page} of ${layout.pages}`;
  $("page-prev").disabled = layout.page <= 1;
  $("page-next").disabled = layout.page >= layout.pages;
  for (const [id, tile] of tiles) {
    if (tile.local) continue;
    const pinned = layout.pins.includes(id);
    tile.pinButton.setAttribute("aria-pressed", String(pinned));
    tile.indicators.pin.hidden = !pinned;
    tile.el.dataset.pinned = String(pinned);
  }
}

/** Last-N pins: what we show, our own pins first (only sent when it changed). */
function sendPins(wanted) {
  const client = demo.client;
  if (!client || client.state !== "joined") return Promise.resolve(null);
  const ids = [...new Set(wanted)].filter((id) => id && tiles.has(id) && !tiles.get(id).local).slice(0, 100);
  const key = JSON.stringify(ids);
  if (key === layout.sentPins) return Promise.resolve(null);
  layout.sentPins = key;
  return client.setPins(ids).catch((err) => {
    if (layout.sentPins === key) layout.sentPins = null;
    console.warn("pysfu: set_pins failed", err.code, err.message);
    return null;
  });
}

/**
 * Pin (or unpin) a participant: their tile comes first (the big one in
 * speaker view) and their video is kept in our last-N.  Toggles when
 * `pinned` is omitted.  A test hook.
 * @param {string} participantId
 * @param {boolean} [pinned]
 * @returns {Promise<Object|null>} the set_pins response (null: nothing sent)
 */
function pin(participantId, pinned) {
  const tile = tiles.get(participantId);
  if (!tile || tile.local) return Promise.resolve(null);
  const wanted = pinned === undefined ? !layout.pins.includes(participantId) : Boolean(pinned);
  layout.pins = layout.pins.filter((id) => id !== participantId);
  if (wanted) {
    layout.pins.unshift(participantId);
    layout.page = 1; // pins lead the first page
  }
  return renderLayout();
}

/** "grid" or "speaker".  A test hook. @returns {Promise<Object|null>} */
function setLayout(mode) {
  if (mode !== "grid" && mode !== "speaker") return Promise.resolve(null);
  layout.mode = mode;
  return renderLayout();
}

/** Go to page `page` (1-based, clamped).  A test hook. @returns {Promise<Object|null>} */
function setPage(page) {
  layout.page = page;
  return renderLayout();
}

/** speakers_changed: remember who spoke; a dominant speaker off the first page gets onto it. */
function noteSpeakers(list) {
  const now = Date.now();
  list.forEach((s) => layout.lastHeard.set(s.participant_id, now));
  const dominant = list.find((s) => s.dominant);
  const id = dominant && dominant.participant_id;
  if (id && layout.order.includes(id)) { // a remote participant (we never take the spotlight)
    if (layout.speakers[0] !== id) layout.speakers = [id, layout.speakers[0]];
    const { spotlight, paged } = arrangement();
    const firstPage = paged.slice(0, layout.pageSize).filter((p) => !layout.pins.includes(p));
    if (id !== spotlight && !layout.pins.includes(id)) layout.order = promote(layout.order, id, firstPage, layout.lastHeard);
  }
  renderLayout();
}

function resetLayout() {
  Object.assign(layout, { page: 1, pages: 1, order: [], pins: [], speakers: [null, null], spotlight: null, visible: [], sentPins: null });
  layout.lastHeard.clear();
}

function wireLayout() {
  $("grid-view-btn").addEventListener("click", () => setLayout("grid"));
  $("speaker-view-btn").addEventListener("click", () => setLayout("speaker"));
  $("page-prev").addEventListener("click", () => setPage(layout.page - 1));
  $("page-next").addEventListener("click", () => setPage(layout.page + 1));
  window.addEventListener("resize", scheduleLayout);
  updateLayoutControls();
}

// --- client wiring -----------------------------------------------------------

function wireClient(client) {
  client.on("participant_joined", ({ participant }) => ensureTile(participant.id, participant.name));
  client.on("participant_left", ({ participant_id }) => removeTile(participant_id));
  client.on("track", onRemoteTrack);
  client.on("trackremoved", onRemoteTrackRemoved);
  client.on("layer_changed", onLayerChanged);
  client.on("chat_message", renderChatMessage);
  client.on("reaction", floatReaction);
  client.on("hand_raised", onHandRaised);
  client.on("speakers_changed", onSpeakersChanged);
  client.on("recording_started", showRecording);
  client.on("recording_stopped", showRecording);
  client.on("server_load", showServerLoad);
  for (const type of ["track_published", "track_unpublished", "track_muted"]) {
    client.on(type, ({ track, participant_id }) => refreshIndicators(participant_id || track.participant_id));
  }
  client.on("leave", ({ reason }) => endCall("left", `Removed from the room${reason ? `: ${reason}` : ""}`));
  client.on("disconnected", ({ reason }) => endCall("error", `Disconnected: ${describeError({ code: reason })}`, reason));
  client.on("error", (detail) => console.warn("pysfu:", detail.code, detail.message));
  wireConnectivity(client);
  wireCaptions(client);
}

function newClient() {
  // ?relay=1: media only through the TURN servers the server hands out;
  // ?connectTimeout=MS: how long a peer connection may take to connect
  const options = params.get("relay") === "1" ? { iceTransportPolicy: "relay" } : {};
  const connectTimeout = Number.parseInt(params.get("connectTimeout") || "", 10);
  if (connectTimeout >= 0) options.connectTimeoutMs = connectTimeout;
  const client = new PysfuClient(options);
  wireClient(client);
  demo.client = client;
  return client;
}

// --- local media ---------------------------------------------------------------

function mediaAttempts({ audio, video }) {
  const attempts = [];
  if (video) attempts.push({ audio, video: VIDEO_CONSTRAINTS });
  if (audio) attempts.push({ audio: true });
  return attempts;
}

/**
 * getUserMedia with fallbacks: camera+mic, then mic only, then nothing.
 * @returns {Promise<{stream: MediaStream, error: Error|null}>} error: why the last attempt failed
 */
async function getLocalMedia(wanted) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return { stream: new MediaStream(), error: null };
  let error = null;
  for (const constraints of mediaAttempts(wanted)) {
    try {
      return { stream: await navigator.mediaDevices.getUserMedia(constraints), error: null };
    } catch (err) {
      console.warn("getUserMedia failed", constraints, err.name);
      error = err;
    }
  }
  return { stream: new MediaStream(), error };
}

function showLocalPreview(stream) {
  const tile = tiles.get(demo.client.participantId);
  if (!tile) return;
  stream.getTracks().forEach((track) => {
    const source = track.kind === "video" ? "camera" : "microphone";
    tile.tracks.set(track.id, { track, trackId: track.id, kind: track.kind, source, audioEl: null });
  });
  refreshVideo(tile);
}

async function publishLocalMedia(client, wanted) {
  const { stream, error } = await getLocalMedia(wanted);
  demo.localStream = stream;
  showLocalPreview(stream);
  if (!stream.getTracks().length) return error ? `watching only. ${describeError(error)}` : "watching only (no camera/microphone)";
  try {
    demo.published = await client.publish(stream);
    return `publishing ${stream.getTracks().map((t) => t.kind).join(" + ")}`;
  } catch (err) {
    demo.publishError = err;
    console.warn("publish failed", err);
    return `publish failed: ${describeError(err)}`;
  } finally {
    updateButtons();
  }
}

function stopLocalMedia() {
  if (demo.localStream) demo.localStream.getTracks().forEach((t) => t.stop());
  demo.localStream = null;
}

// --- mute buttons ------------------------------------------------------------

/** Published track id of our local track of a kind, or null. */
function localTrackId(kind) {
  const client = demo.client;
  if (!client) return null;
  for (const [id, entry] of client.localTracks) if (entry.track.kind === kind) return id;
  return null;
}

function isLocalMuted(kind) {
  const id = localTrackId(kind);
  const entry = id && demo.client.localTracks.get(id);
  return Boolean(entry && !entry.track.enabled);
}

function updateButtons() {
  const labels = { audio: ["Mute mic", "Unmute mic"], video: ["Camera off", "Camera on"] };
  for (const [kind, button] of [["audio", $("mic-btn")], ["video", $("cam-btn")]]) {
    const muted = isLocalMuted(kind);
    button.disabled = !localTrackId(kind);
    button.textContent = labels[kind][muted ? 1 : 0];
    button.setAttribute("aria-pressed", String(muted));
  }
}

async function toggleMute(kind) {
  const id = localTrackId(kind);
  if (!id) return;
  try {
    await demo.client.setMuted(id, !isLocalMuted(kind));
  } catch (err) {
    console.warn("mute failed", err);
    showNotice("Mute failed", err);
  }
  updateButtons();
  refreshIndicators(demo.client.participantId);
}

// --- join / leave ------------------------------------------------------------

function prepareClient() {
  if (!demo.client || demo.client.state !== "new") newClient();
  if (!demo.joined || demo.isJoined || document.body.dataset.state !== "idle") resetJoinedPromise();
  demo.published = [];
  demo.publishError = null;
  return demo.client;
}

/** The room is being recorded: everyone in it sees so. */
function showRecording() {
  $("recording").hidden = !(demo.client && demo.client.recordings.size > 0);
}

/** The server is overloaded and sends less video (never audio or the speaker's). */
function showServerLoad() {
  $("server-load").hidden = !(demo.client && demo.client.serverLoad.level > 0);
}

function showJoinedRoom(res, name) {
  showCall(true);
  showRecording();
  showServerLoad();
  ensureTile(res.participant.id, name, true);
  for (const p of res.participants) {
    if (p.id !== res.participant.id) ensureTile(p.id, p.name);
  }
  clearChat();
  demo.client.chat.forEach(renderChatMessage);
  updateHandButton();
  updateShareButton();
  syncConnectivity(demo.client);
}

/**
 * The access token for a join: `?token=` in the page URL, else one from the
 * server's development endpoint (`pysfu serve --dev`), else none (a server
 * without API keys takes token-less joins).
 * @returns {Promise<string|undefined>}
 */
async function fetchToken(room, name) {
  if (params.get("token")) return params.get("token");
  const res = await fetch(`/dev/token?room=${encodeURIComponent(room)}&name=${encodeURIComponent(name)}`);
  if (res.status === 404) return undefined;
  if (!res.ok) throw Object.assign(new Error(`token request failed (HTTP ${res.status})`), { code: "token_required" });
  return (await res.json()).token;
}

/**
 * Join a room and publish local media.
 * @param {string} room
 * @param {string} name
 * @param {{audio?: boolean, video?: boolean}} [wanted]
 * @returns {Promise<Object>} the join_response
 */
async function join(room, name, wanted = { audio: true, video: true }) {
  const client = prepareClient();
  const settle = settleJoined;
  $("join-btn").disabled = true;
  setState("connecting", `Connecting to room "${room}"…`);
  try {
    const token = await fetchToken(room, name);
    const res = await client.join(room, name, SLOTS ? { token, slots: SLOTS } : { token });
    showJoinedRoom(res, name);
    setState("connecting", `Joined "${res.room}", starting media…`);
    const note = await publishLocalMedia(client, wanted);
    if (client.state === "closed") throw Object.assign(new Error("session ended while joining"), { code: "disconnected" });
    demo.isJoined = true;
    setState("joined", `Joined "${res.room}" as ${name || "guest"} — ${note}`);
    settle.resolve(res);
    return res;
  } catch (err) {
    endCall("error", "", err.code);
    showError(err, "Join failed");
    settle.reject(err);
    throw err;
  } finally {
    $("join-btn").disabled = false;
  }
}

/** Tear down the UI after leaving (or losing) the session. */
function endCall(state, text, code) {
  const client = demo.client;
  demo.isJoined = false;
  $("recording").hidden = true;
  $("server-load").hidden = true;
  clearTiles();
  clearShares();
  resetLayout();
  if (demo.screen) demo.screen.stream.getTracks().forEach((t) => t.stop());
  demo.screen = null;
  stopLocalMedia();
  showCall(false);
  showTranscriptionState(false);
  updateButtons();
  if (client && client.state !== "closed") client.leave();
  if (text) setState(state, text, code);
}

/** Leave the room. */
async function leave() {
  const client = demo.client;
  if (client) await client.leave();
  endCall("left", "Left the room");
}

// --- page setup --------------------------------------------------------------

function readForm() {
  return {
    room: $("room").value.trim(),
    name: $("name").value.trim(),
    wanted: { audio: $("opt-audio").checked, video: $("opt-video").checked },
  };
}

function init() {
  $("room").value = params.get("room") || "";
  $("name").value = params.get("name") || "";
  $("opt-audio").checked = params.get("audio") !== "0";
  $("opt-video").checked = params.get("video") !== "0";
  $("join-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const { room, name, wanted } = readForm();
    if (room) join(room, name, wanted).catch(() => {});
  });
  $("mic-btn").addEventListener("click", () => toggleMute("audio"));
  $("cam-btn").addEventListener("click", () => toggleMute("video"));
  $("leave-btn").addEventListener("click", () => leave());
  wireMeeting();
  wireLayout();
  newClient();
  resetJoinedPromise();
  setInterval(refreshBadges, 1000);
  if (params.get("autojoin") === "1") {
    const { room, name, wanted } = readForm();
    join(room || "demo", name, wanted).catch(() => {});
  }
}

init();
