/**
 * Loss blocks: for each drop reason, {events, bytes, firstTs, lastTs, events per priority} as
 * Float64 words (Loss,
 * lossAt in layout.ts). One shape everywhere a loss is kept: the writer's and the drain's block in
 * each slot, the snapshot in a ring descriptor, the drain's pending block for the next chunk, and
 * the blocks of the file's chunk and end records. A NaN time means "none yet" (or unknown).
 */
import { LOSS_BLOCK_WORDS, Loss, PRIORITY_COUNT, REASON_COUNT, lossAt } from './layout.js';

/** A loss block on its own (not in shared memory): index 0 is its first reason. */
export type LossBlock = Float64Array;

/** No losses, no times. */
export function newLossBlock(): LossBlock {
  const l = new Float64Array(LOSS_BLOCK_WORDS);
  clearLossTimes(l, 0);
  return l;
}

/** Forgets every reason's time range (the counts stay: they are cumulative). */
export function clearLossTimes(l: Float64Array, block: number): void {
  for (let r = 0; r < REASON_COUNT; r++) {
    const at = lossAt(block, r);
    l[at + Loss.FIRST_TS] = NaN;
    l[at + Loss.LAST_TS] = NaN;
  }
}

/** The writer's count of one dropped event of priority `prio` (its own block, plain stores: see
 * layout.ts). */
export function countDrop(l: Float64Array, block: number, reason: number, bytes: number, ts: number, prio: number): void {
  const at = lossAt(block, reason);
  l[at + Loss.EVENTS]++;
  l[at + Loss.BY_PRIORITY + prio]++;
  l[at + Loss.BYTES] += bytes;
  if (!(l[at + Loss.FIRST_TS] <= ts)) l[at + Loss.FIRST_TS] = ts; // NaN (none yet) or later
  if (!(l[at + Loss.LAST_TS] >= ts)) l[at + Loss.LAST_TS] = ts;
}

/** Adds a loss to a block; a NaN time (not known, e.g. a dead thread's uncommitted events) never
 * overwrites a known one. `byPriority` (from index `pAt`, PRIORITY_COUNT numbers): how many of the
 * events were of each priority; omitted when not known. */
export function addLoss(
  l: LossBlock,
  reason: number,
  events: number,
  bytes: number,
  firstTs: number,
  lastTs: number,
  byPriority?: ArrayLike<number>,
  pAt = 0,
): void {
  const at = lossAt(0, reason);
  l[at + Loss.EVENTS] += events;
  l[at + Loss.BYTES] += bytes;
  if (byPriority) for (let p = 0; p < PRIORITY_COUNT; p++) l[at + Loss.BY_PRIORITY + p] += byPriority[pAt + p];
  if (firstTs === firstTs && !(l[at + Loss.FIRST_TS] <= firstTs)) l[at + Loss.FIRST_TS] = firstTs;
  if (lastTs === lastTs && !(l[at + Loss.LAST_TS] >= lastTs)) l[at + Loss.LAST_TS] = lastTs;
}

/** Adds every reason of `from` into `into`. */
export function mergeLoss(into: LossBlock, from: LossBlock): void {
  for (let r = 0; r < REASON_COUNT; r++) {
    const at = lossAt(0, r);
    addLoss(
      into,
      r,
      from[at + Loss.EVENTS],
      from[at + Loss.BYTES],
      from[at + Loss.FIRST_TS],
      from[at + Loss.LAST_TS],
      from,
      at + Loss.BY_PRIORITY,
    );
  }
}

/** Whether the block counts any event or byte. */
export function hasLoss(l: LossBlock): boolean {
  for (let r = 0; r < REASON_COUNT; r++) {
    const at = lossAt(0, r);
    if (l[at + Loss.EVENTS] !== 0 || l[at + Loss.BYTES] !== 0) return true;
  }
  return false;
}

/** Whether a reason of the block at `block` has a time: in the writer's block, a drop since its
 * last hand-off (the hand-off clears the times). */
export function hasLossTimes(l: Float64Array, block: number): boolean {
  for (let r = 0; r < REASON_COUNT; r++) if (!Number.isNaN(l[lossAt(block, r) + Loss.FIRST_TS])) return true;
  return false;
}
