/**
 * The client's error type, and timeouts that raise it.
 *
 * @module pysfu/client/errors
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

/** Rejects with a PysfuError("timeout") when `promise` takes longer than `ms`. */
export function withTimeout(promise, ms) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new PysfuError("timeout", `no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
