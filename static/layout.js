/**
 * layout.js - where the demo page shows whom (issue 4): grid pages, the
 * speaker view's spotlight and the grid's shape.  Pure functions over
 * participant ids and sizes; demo.js does the DOM.
 *
 * @module layout
 */

/** Most cells on one grid page, our own tile included. */
export const MAX_CELLS = 16;
/** Smallest grid tile width (px) before a page holds fewer people. */
export const MIN_TILE_WIDTH = 200;
/** Width (px) of a filmstrip tile (speaker view, or beside a screen share). */
export const FILMSTRIP_TILE_WIDTH = 180;
export const ASPECT = 16 / 9;

const clamp = (value, low, high) => Math.min(high, Math.max(low, value));

/**
 * Remote participants in display order: our pins (newest first), then the
 * others in `order` (join order, with speakers swapped in by `promote`).
 * @param {string[]} order
 * @param {string[]} pins
 * @returns {string[]}
 */
export function displayOrder(order, pins) {
  const pinned = pins.filter((id) => order.includes(id));
  return [...pinned, ...order.filter((id) => !pinned.includes(id))];
}

/**
 * The speaker view's big tile: the newest pin, else the dominant speaker,
 * else the last one who was, else the first in display order.
 * @param {string[]} display   remote ids in display order
 * @param {string[]} pins      newest first
 * @param {string[]} speakers  dominant speaker now, then the previous one (nulls allowed)
 * @returns {string|null}
 */
export function spotlightOf(display, pins, speakers) {
  const candidates = [...pins, ...speakers, display[0]];
  return candidates.find((id) => id && display.includes(id)) || null;
}

/**
 * One page of `items`; `page` is clamped to the pages there are (1-based).
 * @template T
 * @param {T[]} items
 * @param {number} size   items per page (>= 1)
 * @param {number} page
 * @returns {{page: number, pages: number, items: T[]}}
 */
export function paginate(items, size, page) {
  const pages = Math.max(1, Math.ceil(items.length / size));
  const current = clamp(Math.floor(page) || 1, 1, pages);
  return { page: current, pages, items: items.slice((current - 1) * size, current * size) };
}

/**
 * Bring a speaker onto the first page without reshuffling it: swap places
 * with the first page's least recently heard member (the later one on ties),
 * as LiveKit's visually stable grid does.  Returns a new order.
 * @param {string[]} order      remote ids (not display order)
 * @param {string} speakerId
 * @param {string[]} firstPage  ids on the first page that may give way (no pins)
 * @param {Map<string, number>} lastHeard  id -> when last heard (absent: never)
 * @returns {string[]}
 */
export function promote(order, speakerId, firstPage, lastHeard) {
  if (firstPage.includes(speakerId) || !order.includes(speakerId)) return order;
  let victim = null;
  for (const id of firstPage) {
    if (!order.includes(id)) continue;
    if (victim === null || (lastHeard.get(id) || 0) <= (lastHeard.get(victim) || 0)) victim = id;
  }
  if (victim === null) return order;
  const next = [...order];
  next[next.indexOf(victim)] = speakerId;
  next[order.indexOf(speakerId)] = victim;
  return next;
}

/**
 * Cells of a grid page that fit `width` x `height` (px) at MIN_TILE_WIDTH or
 * more, between 2 and MAX_CELLS (MAX_CELLS when the area is unknown).
 */
export function gridCapacity(width, height, gap) {
  if (!(width > 0 && height > 0)) return MAX_CELLS;
  const columns = Math.floor((width + gap) / (MIN_TILE_WIDTH + gap));
  const rows = Math.floor((height + gap) / (MIN_TILE_WIDTH / ASPECT + gap));
  return clamp(columns * rows, 2, MAX_CELLS);
}

/** Cells of one filmstrip row `width` px wide, between 2 and MAX_CELLS. */
export function filmstripCapacity(width, gap) {
  if (!(width > 0)) return MAX_CELLS;
  return clamp(Math.floor((width + gap) / (FILMSTRIP_TILE_WIDTH + gap)), 2, MAX_CELLS);
}

/**
 * Columns for `count` 16:9 tiles in `width` x `height` that make them
 * largest, and that tile width (px).
 * @returns {{columns: number, tileWidth: number}}
 */
export function gridShape(count, width, height, gap) {
  let best = { columns: 1, tileWidth: 0 };
  for (let columns = 1; columns <= Math.max(1, count); columns += 1) {
    const rows = Math.ceil(count / columns);
    const byWidth = (width - (columns - 1) * gap) / columns;
    const byHeight = ((height - (rows - 1) * gap) / rows) * ASPECT;
    const tileWidth = Math.floor(Math.min(byWidth, byHeight));
    if (tileWidth > best.tileWidth) best = { columns, tileWidth };
  }
  return best;
}
