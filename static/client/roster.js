/**
 * Who is in the room: `client.roster` (the others, by id) and
 * `client.localParticipant` (us), kept up to date from server events.  Plain
 * functions of the client: the state they change is the client's public state.
 *
 * @module pysfu/client/roster
 */

import { PARTICIPANT_ALIASES, withAliases } from "./aliases.js";

/** Participant from a ParticipantInfo message object. */
export function toParticipant(info) {
  const tracks = new Map((info.tracks || []).map((t) => [t.id, { ...t }]));
  return withAliases({
    id: info.id, name: info.name || "", tracks, hand_raised: Boolean(info.hand_raised),
    state: info.state || "active", connection_quality: info.connection_quality || null,
  }, PARTICIPANT_ALIASES);
}

/** Plain (JSON-friendly) copy of a Participant. */
export function plainParticipant(p) {
  return withAliases({
    id: p.id, name: p.name, hand_raised: p.hand_raised, state: p.state, connection_quality: p.connection_quality,
    tracks: [...p.tracks.values()].map((t) => ({ ...t })),
  }, PARTICIPANT_ALIASES);
}

/** Participant record for an id: ourselves or a roster entry. */
export function participantOf(client, id) {
  if (id === client.participantId) return client.localParticipant;
  return client.roster.get(id) || null;
}

export function addParticipant(client, info) {
  if (info.id === client.participantId) return;
  client.roster.set(info.id, toParticipant(info));
}

export function removeParticipant(client, id) {
  client.roster.delete(id);
}

export function addTrack(client, track) {
  let owner = participantOf(client, track.participant_id);
  if (!owner) {
    owner = toParticipant({ id: track.participant_id, name: "" });
    client.roster.set(owner.id, owner);
  }
  owner.tracks.set(track.id, { ...track });
}

export function removeTrack(client, participantId, trackId) {
  const owner = participantOf(client, participantId);
  if (owner) owner.tracks.delete(trackId);
}

export function setTrackMuted(client, { participant_id, track_id, muted }) {
  const info = findTrack(client, track_id, participant_id);
  if (info) info.muted = muted;
}

/** TrackInfo by id, searched in the roster and our own tracks (see `PysfuClient.findTrack`). */
export function findTrack(client, trackId, participantId) {
  const owners = participantId
    ? [participantOf(client, participantId)]
    : [client.localParticipant, ...client.roster.values()];
  for (const owner of owners) {
    const info = owner && owner.tracks.get(trackId);
    if (info) return info;
  }
  return null;
}

export function setHandRaised(client, { participant_id, raised }) {
  const who = participantOf(client, participant_id);
  if (who) who.hand_raised = Boolean(raised);
}

export function setParticipantState(client, { participant_id, state }) {
  const who = participantOf(client, participant_id);
  if (who) who.state = state;
}

export function setConnectionQuality(client, { updates }) {
  for (const update of updates || []) {
    const who = participantOf(client, update.participant_id);
    if (who) who.connection_quality = update.quality;
  }
}

/**
 * Roster after a resume; who came or went meanwhile gets the usual events
 * (through the client's event dispatch, as if the server had sent them).
 */
export function replaceRoster(client, infos) {
  const fresh = new Map(infos.filter((p) => p.id !== client.participantId).map((p) => [p.id, p]));
  for (const id of [...client.roster.keys()]) {
    if (!fresh.has(id)) client._onEvent({ type: "participant_left", participant_id: id, reason: "left" });
  }
  for (const info of fresh.values()) {
    if (!client.roster.has(info.id)) client._onEvent({ type: "participant_joined", participant: info });
    else client.roster.set(info.id, toParticipant(info));
  }
}
