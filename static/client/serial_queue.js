/**
 * Runs async jobs strictly one at a time, in submission order (publish
 * negotiations, subscriber offers, dynacast changes).
 *
 * @module pysfu/client/serial_queue
 */

export class SerialQueue {
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
