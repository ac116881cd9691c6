/**
 * The deprecated camelCase names of the client's own records and event
 * details.  The client speaks the wire's style, snake_case, everywhere
 * (`track_id`, `participant_id`, `track_info`, `hand_raised`,
 * `connection_quality`); the old names still read and write the same value,
 * as accessors left out of `Object.keys` and JSON, and warn once each.
 *
 * @module pysfu/client/aliases
 */

/** A `track` / `trackremoved` detail and a RemoteTrack: old name -> name. */
export const TRACK_ALIASES = Object.freeze({ trackId: "track_id", participantId: "participant_id", trackInfo: "track_info" });
/** A Participant: old name -> name. */
export const PARTICIPANT_ALIASES = Object.freeze({ handRaised: "hand_raised", quality: "connection_quality" });

const warned = new Set();

/** `record`, given a non-enumerable accessor under each old name. */
export function withAliases(record, aliases) {
  for (const [old, name] of Object.entries(aliases)) {
    Object.defineProperty(record, old, {
      get() {
        deprecated(old, name);
        return this[name];
      },
      set(value) {
        deprecated(old, name);
        this[name] = value;
      },
      configurable: true,
    });
  }
  return record;
}

function deprecated(old, name) {
  if (warned.has(old)) return;
  warned.add(old);
  console.warn(`pysfu: "${old}" is deprecated, use "${name}"`);
}
