/**
 * The thread registry: `maxThreads` slots in the shared buffer. A thread claims a FREE slot with
 * one compare-exchange, initialises it while it is CLAIMING (invisible to the drain), and
 * publishes it LIVE. Only the drain releases a slot (back to FREE), after it has taken every ring
 * the thread submitted and salvaged what it left; it wipes the slot first, so a reused slot
 * starts clean.
 */
import { BackpressureState } from './backpressure.js';
import { Ctl, Slot, SlotF64, SlotState, THREAD_NAME_MAX_BYTES, type SharedViews } from './layout.js';
import { initPool } from './pool.js';
import { clearLossTimes } from './loss.js';

/** Who holds the slots: live writers (or threads claiming a slot), and registrations that ended
 * (closed, or their thread exited) whose slot the drain has not released yet. */
export interface SlotHolders {
  live: number;
  unreleased: number;
}

export class CapacityError extends Error {
  override readonly name = 'CapacityError';
  readonly live: number;
  readonly unreleased: number;
  /** `why`: why the unreleased slots are still held (e.g. the drain is paused). */
  constructor(
    readonly capacity: number,
    holders: SlotHolders = { live: capacity, unreleased: 0 },
    why?: string,
  ) {
    const raise = 'raise maxThreads (Tracer.open({ maxThreads }) or RINGTRACE_MAX_THREADS)';
    super(
      holders.unreleased === 0
        ? `ringtrace: all ${capacity} thread slots are in use by live writers; ${raise} or close writers of threads that are done`
        : `ringtrace: all ${capacity} thread slots are in use: ${holders.live} by live writers, ${holders.unreleased} by writers ` +
            `that closed or whose thread ended, which the drain has not released yet${why ? ` (${why})` : ''}; ${raise}` +
            (holders.live > 0 ? ' or close writers of threads that are done' : ''),
    );
    this.live = holders.live;
    this.unreleased = holders.unreleased;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface Claim {
  slot: number;
  registration: number;
}

export function encodeThreadName(name: string): Uint8Array {
  const bytes = encoder.encode(name);
  if (bytes.length > THREAD_NAME_MAX_BYTES) {
    throw new RangeError(`ringtrace: thread name is ${bytes.length} bytes of UTF-8; at most ${THREAD_NAME_MAX_BYTES} are allowed`);
  }
  return bytes;
}

/** Claims a slot for the calling thread and publishes it LIVE. */
export function claimSlot(v: SharedViews, name: Uint8Array, threadId: number, policy: number, nowUs: number): Claim {
  const { i32, layout } = v;
  for (let slot = 0; slot < layout.maxThreads; slot++) {
    const st = layout.slotI32(slot, Slot.STATE);
    if (Atomics.load(i32, st) !== SlotState.FREE) continue;
    if (Atomics.compareExchange(i32, st, SlotState.FREE, SlotState.CLAIMING) !== SlotState.FREE) continue;
    // Owner first, with no call in between (a terminated thread stops only at calls and loop
    // edges): if this thread dies before publishing LIVE, its exit finds the CLAIMING slot by
    // this id and frees it (orphanThreadSlots).
    Atomics.store(i32, layout.slotI32(slot, Slot.NODE_THREAD_ID), threadId);
    resetHeader(v, slot); // rings were wiped at release (or are fresh, zeroed memory)
    const registration = Atomics.add(i32, Ctl.NEXT_REGISTRATION, 1);
    i32[layout.slotI32(slot, Slot.REGISTRATION)] = registration;
    i32[layout.slotI32(slot, Slot.NAME_LENGTH)] = name.length;
    i32[layout.slotI32(slot, Slot.POLICY)] = policy;
    v.u8.set(name, layout.nameBytesOffset(slot));
    v.f64[layout.slotF64(slot, SlotF64.REGISTERED_AT)] = nowUs * 1000;
    initPool(i32, layout, slot);
    new BackpressureState(i32, v.i64, layout, slot).reset(nowUs);
    // Release: everything above is visible to the drain once it loads LIVE.
    Atomics.store(i32, st, SlotState.LIVE);
    return { slot, registration };
  }
  throw new CapacityError(layout.maxThreads, slotHolders(v));
}

export function slotHolders(v: SharedViews): SlotHolders {
  const { i32, layout } = v;
  const out = { live: 0, unreleased: 0 };
  for (let slot = 0; slot < layout.maxThreads; slot++) {
    const st = Atomics.load(i32, layout.slotI32(slot, Slot.STATE));
    if (st === SlotState.LIVE || st === SlotState.CLAIMING) out.live++;
    else if (st !== SlotState.FREE) out.unreleased++;
  }
  return out;
}

/** Zeroes a slot's header but its state word and owner (loss-block times to NaN: none yet). */
function resetHeader(v: SharedViews, slot: number): void {
  const { layout } = v;
  const start = layout.slotOffset(slot);
  const owner = v.i32[layout.slotI32(slot, Slot.NODE_THREAD_ID)];
  v.u8.fill(0, start + 4, start + layout.slotHeaderBytes);
  v.i32[layout.slotI32(slot, Slot.NODE_THREAD_ID)] = owner;
  clearLossTimes(v.f64, layout.slotF64(slot, SlotF64.WRITER_LOSS));
  v.f64[layout.slotF64(slot, SlotF64.RETIRED_ATTEMPTED)] = NaN;
}

/** Zeroes a slot's header (but its state word) and its rings: no stale contents survive reuse. */
export function wipeSlot(v: SharedViews, slot: number): void {
  wipeRings(v, slot);
  v.i32[v.layout.slotI32(slot, Slot.NODE_THREAD_ID)] = 0;
  resetHeader(v, slot);
}

/** Zeroes a slot's rings. Only for a slot no thread writes any more and metrics() never reads
 * rings, so it can happen before the (short) step that frees the slot. */
export function wipeRings(v: SharedViews, slot: number): void {
  const { layout } = v;
  v.u8.fill(0, layout.ringOffset(slot, 0), layout.ringOffset(slot, 0) + layout.ringsPerThread * layout.ringSize);
}

/** Zeroes the header of a slot whose rings are wiped and makes it claimable. */
export function freeSlot(v: SharedViews, slot: number): void {
  // First leave the old registration's state: a reader (or close()'s fallback after a drain
  // terminated mid-wipe) must never take a half-wiped header for that registration.
  Atomics.store(v.i32, v.layout.slotI32(slot, Slot.STATE), SlotState.RELEASING);
  v.i32[v.layout.slotI32(slot, Slot.NODE_THREAD_ID)] = 0;
  resetHeader(v, slot);
  // Release: the wipe happens-before the next claimer's CAS on FREE.
  Atomics.store(v.i32, v.layout.slotI32(slot, Slot.STATE), SlotState.FREE);
  Atomics.notify(v.i32, v.layout.slotI32(slot, Slot.STATE)); // a register() waiting for a slot
}

/** The slot is done (its thread gone, nothing left to drain): make it claimable again. */
export function releaseSlot(v: SharedViews, slot: number): void {
  wipeRings(v, slot);
  freeSlot(v, slot);
}

export function readThreadName(v: SharedViews, slot: number): string {
  const len = v.i32[v.layout.slotI32(slot, Slot.NAME_LENGTH)];
  const at = v.layout.nameBytesOffset(slot);
  return decoder.decode(v.u8.slice(at, at + Math.min(len, THREAD_NAME_MAX_BYTES)));
}

/** Marks every LIVE slot of a thread that has exited as ORPHANED, for the drain to salvage, and
 * frees the slots it was still claiming. Returns how many slots it marked ORPHANED. */
export function orphanThreadSlots(v: SharedViews, threadId: number): number {
  const { i32, layout } = v;
  let n = 0;
  for (let slot = 0; slot < layout.maxThreads; slot++) {
    const st = layout.slotI32(slot, Slot.STATE);
    const state = Atomics.load(i32, st);
    if (state !== SlotState.LIVE && state !== SlotState.CLAIMING) continue;
    if (Atomics.load(i32, layout.slotI32(slot, Slot.NODE_THREAD_ID)) !== threadId) continue;
    if (state === SlotState.CLAIMING) {
      // Died inside claimSlot(): nothing was recorded or published; just free the slot.
      if (Atomics.load(i32, st) === SlotState.CLAIMING) releaseSlot(v, slot);
      continue;
    }
    if (Atomics.compareExchange(i32, st, SlotState.LIVE, SlotState.ORPHANED) === SlotState.LIVE) n++;
  }
  return n;
}

/**
 * Ends a seizure (RETIRING -> RETIRED): `attempted` is the count that was accounted for the
 * thread. Release: the store of RETIRED publishes it, and the drain loss block written before it;
 * the writer (or reconcileThreadSlots) acquires them by its exchange on RETIRED.
 */
export function publishRetired(v: SharedViews, slot: number, attempted: number): void {
  const { i32, f64, layout } = v;
  f64[layout.slotF64(slot, SlotF64.RETIRED_ATTEMPTED)] = attempted;
  const st = layout.slotI32(slot, Slot.STATE);
  Atomics.store(i32, st, SlotState.RETIRED);
  Atomics.notify(i32, st);
}

/**
 * A thread that exited after the tracer's close seized its slot never reconciled it: the events
 * it recorded after the drain's count (RETIRED_ATTEMPTED) are counted as `closed` here, from the
 * attempted count it left (complete now: its exit orders its plain stores before this). The
 * exchange RETIRED -> RECONCILED makes this and the writer's own reconciliation exclusive.
 * Returns the events counted.
 */
export function reconcileThreadSlots(v: SharedViews, threadId: number): number {
  const { i32, f64, layout } = v;
  let late = 0;
  for (let slot = 0; slot < layout.maxThreads; slot++) {
    const st = layout.slotI32(slot, Slot.STATE);
    if (Atomics.load(i32, layout.slotI32(slot, Slot.NODE_THREAD_ID)) !== threadId) continue;
    // Seized but not yet accounted: the drain is storing the count; wait for it (bounded).
    if (Atomics.load(i32, st) === SlotState.RETIRING) Atomics.wait(i32, st, SlotState.RETIRING, RECONCILE_WAIT_MS);
    if (Atomics.compareExchange(i32, st, SlotState.RETIRED, SlotState.RECONCILED) !== SlotState.RETIRED) continue;
    const n = f64[layout.slotF64(slot, SlotF64.ATTEMPTED)] - f64[layout.slotF64(slot, SlotF64.RETIRED_ATTEMPTED)];
    if (n > 0) {
      Atomics.add(i32, Ctl.CLOSED_DROPS, n);
      late += n;
    }
  }
  return late;
}

/** How long a thread's exit handler waits for a drain that is retiring the thread's slot. */
const RECONCILE_WAIT_MS = 100;
