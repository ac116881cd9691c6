// What went wrong, as a sentence a person can act on: pysfu error codes (the
// server's, docs/protocol.md section 8, and the client's) and the DOMException
// names of getUserMedia / getDisplayMedia.  A DOMException's `code` is a legacy
// number (8 is NotFoundError), never shown.

/** Loopback ICE: what each browser needs to reach a server on the same machine. */
export const LOOPBACK_HINT =
  "If the server is on this machine, Firefox needs media.peerconnection.ice.loopback=true " +
  "(in about:config) and Chromium the --allow-loopback-in-peer-connection flag; " +
  "otherwise UDP may be blocked on the way, and a TURN server helps.";

const CODE_SENTENCES = {
  // the client's own
  ice_timeout: `Could not connect media to the server: ICE did not connect. ${LOOPBACK_HINT}`,
  ice_failed: "The media connection to the server failed and could not be resumed.",
  socket_closed: "The connection to the server closed.",
  socket_error: "Could not reach the server.",
  resume_failed: "The connection dropped and could not be resumed in time.",
  rejoin_failed: "The server lost this session and joining again failed.",
  timeout: "The server did not answer in time.",
  not_joined: "Not in a room: join first.",
  no_video: "There is no video to share.",
  disconnected: "The session ended.",
  // the server's (docs/protocol.md section 8)
  bad_sdp: "The server could not use this browser's media description.",
  sdp_too_large: "This browser's media description is too large for the server.",
  unsupported_version: "The page and the server speak different protocol versions: reload the page.",
  room_full: "The room is full.",
  token_required: "This server needs an access token to join.",
  token_malformed: "The access token is not valid.",
  token_unknown_key: "The access token was issued for another server.",
  token_bad_signature: "The access token's signature does not match.",
  token_expired: "The access token has expired: get a new one.",
  token_not_yet_valid: "The access token is not valid yet (check the clocks).",
  token_wrong_room: "The access token is for another room.",
  permission_denied: "The access token does not allow this.",
  server_draining: "The server is shutting down: try again in a moment.",
  too_many_joins: "Too many joins from this address in the last minute: wait a little.",
  rate_limited: "Too many requests: slow down.",
  message_too_large: "The message is too large for the server.",
  cluster_unavailable: "The server cannot reach the rest of its cluster right now.",
  internal: "The server hit an internal error.",
};

const CAPTURE_SENTENCES = {
  NotAllowedError: "permission to capture was denied.",
  NotFoundError: "no camera, microphone or screen could be found to capture.",
  NotReadableError: "the device is in use or could not be started.",
  OverconstrainedError: "no device can capture at the size asked for.",
  AbortError: "capture was interrupted.",
  SecurityError: "capture needs a secure page (https, or localhost).",
  InvalidStateError: "capture has to start from a click on the page.",
  NotSupportedError: "this browser cannot capture that.",
};

/** The string code of an error: pysfu's `code`, else the DOMException name. */
export function errorCode(err) {
  if (!err) return "error";
  if (typeof err.code === "string" && err.code) return err.code;
  return err.name || "error";
}

/**
 * A sentence for an error: known codes and capture failures get ours, anything
 * else its own message (the server's messages are sentences too).
 * @param {Error|{code?: string|number, name?: string, message?: string}|null} err
 * @returns {string}
 */
export function describeError(err) {
  if (!err) return "Something went wrong.";
  const code = errorCode(err);
  if (Object.hasOwn(CODE_SENTENCES, code)) return CODE_SENTENCES[code];
  if (Object.hasOwn(CAPTURE_SENTENCES, code)) return `Could not capture: ${CAPTURE_SENTENCES[code]}`;
  return err.message || `Something went wrong (${code}).`;
}
