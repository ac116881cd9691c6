/**
 * Adaptive stream: remote video shown with `attachVideo()` has its rendered
 * size (x devicePixelRatio) and visibility sent to the SFU
 * (`update_track_settings`, debounced), so a small or hidden tile costs
 * little; explicit settings (`setTrackSettings`, `setQuality`) override it
 * per track until "auto".
 *
 * @module pysfu/client/adaptive_stream
 */

import { PysfuError } from "./errors.js";

const ADAPTIVE_DEBOUNCE_MS = 300;
const MAX_DIMENSION = 16384;

/** Adaptive stream and track settings of one PysfuClient. */
export class AdaptiveStream {
  /** @param {import("../pysfu.js").PysfuClient} client */
  constructor(client) {
    this.client = client;
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
  }

  /** See `PysfuClient.attachVideo`. */
  attach(trackId, video) {
    const remote = this.client._subscribing.remoteTrackById(trackId);
    if (!remote) throw new PysfuError("unknown_track", `track ${trackId} is not being received`);
    const view = this._views.get(video);
    if (view && view.trackId !== trackId) this.detach(view.trackId, video);
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
      this._schedule(trackId);
    }
    return () => this.detach(trackId, video);
  }

  /** See `PysfuClient.detachVideo`. */
  detach(trackId, video) {
    const remote = this.client._subscribing.remoteTrackById(trackId);
    for (const [element, view] of [...this._views]) {
      if (view.trackId !== trackId || (video && element !== video)) continue;
      this._unobserve(element);
      if (remote && shownTrack(element) === remote.track) element.srcObject = null;
    }
    if (remote && this._adaptiveTracks.has(trackId)) this._schedule(trackId);
  }

  /** See `PysfuClient.setTrackSettings`. */
  setTrackSettings(trackId, settings) {
    this._manualTracks.add(trackId);
    this._cancel(trackId);
    return this._send(trackId, settings, true);
  }

  /** Back to adaptive stream for a track (or to the SFU's choice when it is off). */
  setAuto(trackId) {
    this._manualTracks.delete(trackId);
    this._cancel(trackId);
    return this._send(trackId, this._wanted(trackId), false);
  }

  /** See `PysfuClient.qualityOf`. */
  qualityOf(trackId) {
    if (!this._manualTracks.has(trackId)) return "auto";
    const sent = this._sentSettings.get(trackId);
    return (sent && JSON.parse(sent).quality) || "auto";
  }

  /** Send settings unless identical to the last ones sent (or `force`). */
  _send(trackId, settings, force) {
    const msg = settingsMessage(trackId, settings);
    const key = JSON.stringify({ ...msg, type: undefined, track_id: undefined });
    if (!force && this._sentSettings.get(trackId) === key) return Promise.resolve(null);
    this._sentSettings.set(trackId, key);
    return this.client.request(msg).catch((err) => {
      if (this._sentSettings.get(trackId) === key) this._sentSettings.delete(trackId);
      throw err;
    });
  }

  /** What adaptive stream wants for a track now. @returns {import("../pysfu.js").TrackSettings} */
  _wanted(trackId) {
    if (!this.client.adaptiveStream || !this._adaptiveTracks.has(trackId)) return {};
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

  _schedule(trackId) {
    if (!this.client.adaptiveStream || this._manualTracks.has(trackId) || this.client.state === "closed") return;
    this._cancel(trackId);
    this._settingsTimers.set(trackId, setTimeout(() => this._flush(trackId), ADAPTIVE_DEBOUNCE_MS));
  }

  _cancel(trackId) {
    clearTimeout(this._settingsTimers.get(trackId));
    this._settingsTimers.delete(trackId);
  }

  _flush(trackId) {
    const client = this.client;
    this._settingsTimers.delete(trackId);
    const remote = client._subscribing.remoteTrackById(trackId);
    if (!remote || this._manualTracks.has(trackId) || client.state !== "joined") return;
    if (!client.roster.has(remote.participant_id)) return; // leaving: the track goes away anyway
    this._send(trackId, this._wanted(trackId), false).catch((err) => {
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
      this._schedule(view.trackId);
    };
    const resize = typeof ResizeObserver === "function"
      ? new ResizeObserver((entries) => entries.forEach((e) => note(e.target, { width: e.contentRect.width, height: e.contentRect.height })))
      : null;
    const intersection = typeof IntersectionObserver === "function"
      ? new IntersectionObserver((entries) => entries.forEach((e) => note(e.target, { visible: e.isIntersecting })))
      : null;
    const onVisibility = () => this._adaptiveTracks.forEach((id) => this._schedule(id));
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
  forget(remote) {
    for (const [element, view] of [...this._views]) {
      if (view.trackId !== remote.track_id) continue;
      this._unobserve(element);
      if (shownTrack(element) === remote.track) element.srcObject = null;
    }
    this._cancel(remote.track_id);
    this._adaptiveTracks.delete(remote.track_id);
    this._manualTracks.delete(remote.track_id);
    this._sentSettings.delete(remote.track_id);
  }

  /** The client closed: no more observers or pending settings. */
  stop() {
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
}

/** update_track_settings message; undefined fields are left out. */
function settingsMessage(trackId, { quality, maxWidth, maxHeight, maxFps, paused } = {}) {
  const msg = { type: "update_track_settings", track_id: trackId };
  const fields = { quality, max_width: maxWidth, max_height: maxHeight, max_fps: maxFps, paused };
  for (const [key, value] of Object.entries(fields)) if (value !== undefined && value !== null) msg[key] = value;
  return msg;
}

/** The video track a media element shows, if any. */
function shownTrack(element) {
  const stream = element.srcObject;
  return stream && typeof stream.getVideoTracks === "function" ? stream.getVideoTracks()[0] || null : null;
}
