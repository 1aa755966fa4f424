/**
 * The retired ledger (layout.ts: Ledger): totals of every registration retired so far, in shared
 * memory, so that metrics() in any thread counts each registration exactly once, whether it is
 * still in its slot or already retired. One writer at a time (the drain, or close()'s fallback
 * once the drain is gone); readers in any thread, under the LEDGER_SEQ seqlock.
 */
import { EDGES, STATE_NAMES, edgeName, type StateName } from './backpressure.js';
import {
  Ctl,
  LEDGER_WORDS,
  Ledger,
  PRIORITIES,
  REASONS,
  Slot,
  SlotState,
  type DropReason,
  noPriorities,
  type PriorityCounts,
  type SharedViews,
} from './layout.js';

/** Counters that add up across registrations and keep the same names everywhere. */
export interface SharedCounters {
  droppedByReason: Partial<Record<DropReason, number>>;
  bytesDroppedByReason: Partial<Record<DropReason, number>>;
  /** Events dropped per priority, over the reasons that know it (every writer-side one; the
   * drain's sink_error, thread_exit and unflushed are counted in the totals only). */
  droppedByPriority: PriorityCounts;
  /** Transitions taken per edge, e.g. { 'normal->pressure': 2 }. */
  transitions: Record<string, number>;
  /** Milliseconds spent in each state. */
  timeInStateMs: Record<StateName, number>;
  /** NORMAL -> PRESSURE entries made by forecast, ahead of the PRESSURE mark (predictive entry;
   * also counted in `transitions`). */
  predictedPressureEntries: number;
  exhaustions: number;
  swaps: number;
  chunksWritten: number;
}

/** A retired registration's numbers, as the ledger adds them up (RegistrationSummary's names). */
export interface LedgerEntry extends SharedCounters {
  attempted: number;
  events: number;
  dropped: number;
  bytesDropped: number;
}

/** The ledger's sums (ThreadMetrics' names). */
export interface LedgerTotals extends SharedCounters {
  threads: number;
  eventsAttempted: number;
  eventsWritten: number;
  eventsDropped: number;
  bytesDropped: number;
}

/**
 * Moves a registration from its slot into the retired ledger: the ledger is added to and then
 * `handOff()` changes the slot (freed, or RETIRED), both inside one seqlock write. Drain only, or
 * close()'s fallback once it has terminated the drain: the ledger has one writer at a time.
 * Ordering: every access to the ledger and to LEDGER_SEQ is an Atomics operation (sequentially
 * consistent), and so is the slot's state change, so a reader that loads the same even count
 * before and after its reads saw all of this write or none of it.
 */
export function retireIntoLedger(v: SharedViews, slot: number, e: LedgerEntry, handOff: () => void): void {
  const { i32, i64, layout } = v;
  const L = layout.ledgerI64;
  Atomics.store(i32, Ctl.LEDGER_PENDING_SLOT, slot);
  Atomics.store(i32, Ctl.LEDGER_PENDING_REGISTRATION, i32[layout.slotI32(slot, Slot.REGISTRATION)]);
  for (let k = 0; k < LEDGER_WORDS; k++) Atomics.store(i64, L + Ledger.SHADOW + k, Atomics.load(i64, L + k));
  Atomics.add(i32, Ctl.LEDGER_SEQ, 1); // odd: a write is in progress
  const add = (word: number, n: number) => n !== 0 && Atomics.add(i64, L + word, BigInt(Math.round(n)));
  add(Ledger.THREADS, 1);
  add(Ledger.ATTEMPTED, e.attempted);
  add(Ledger.WRITTEN, e.events);
  add(Ledger.DROPPED, e.dropped);
  add(Ledger.BYTES_DROPPED, e.bytesDropped);
  add(Ledger.EXHAUSTIONS, e.exhaustions);
  add(Ledger.SWAPS, e.swaps);
  add(Ledger.CHUNKS, e.chunksWritten);
  add(Ledger.PREDICTED_ENTRIES, e.predictedPressureEntries);
  REASONS.forEach((r, i) => {
    add(Ledger.REASON_EVENTS + i, e.droppedByReason[r] ?? 0);
    add(Ledger.REASON_BYTES + i, e.bytesDroppedByReason[r] ?? 0);
  });
  PRIORITIES.forEach((p, i) => add(Ledger.PRIORITY_EVENTS + i, e.droppedByPriority[p]));
  EDGES.forEach((_, i) => add(Ledger.EDGES + i, e.transitions[edgeName(i)] ?? 0));
  STATE_NAMES.forEach((st, i) => add(Ledger.TIME_IN_STATE_US + i, e.timeInStateMs[st] * 1000));
  handOff();
  Atomics.add(i32, Ctl.LEDGER_SEQ, 1); // even: done
  Atomics.notify(i32, Ctl.LEDGER_SEQ);
}

/**
 * close()'s fallback, with the drain terminated: ends a ledger write the drain left open. If the
 * slot it was retiring still holds that registration in a state before its hand-off, the write
 * did not finish: the ledger is restored from its copy (the fallback accounts the registration
 * itself). Otherwise only the closing count was missing.
 */
export function closeAbandonedLedgerWrite(v: SharedViews): void {
  const { i32, i64, layout } = v;
  if ((Atomics.load(i32, Ctl.LEDGER_SEQ) & 1) === 0) return;
  const slot = Atomics.load(i32, Ctl.LEDGER_PENDING_SLOT);
  const st = Atomics.load(i32, layout.slotI32(slot, Slot.STATE));
  const same = Atomics.load(i32, layout.slotI32(slot, Slot.REGISTRATION)) === Atomics.load(i32, Ctl.LEDGER_PENDING_REGISTRATION);
  if (same && (st === SlotState.CLOSING || st === SlotState.ORPHANED || st === SlotState.RETIRING)) {
    const L = layout.ledgerI64;
    for (let k = 0; k < LEDGER_WORDS; k++) Atomics.store(i64, L + k, Atomics.load(i64, L + Ledger.SHADOW + k));
  }
  Atomics.add(i32, Ctl.LEDGER_SEQ, 1);
}

/** The ledger's sums as they are (the caller brackets the read with LEDGER_SEQ). */
export function readLedger(v: SharedViews): LedgerTotals {
  const { i64, layout } = v;
  const L = layout.ledgerI64;
  const w = (word: number) => Number(Atomics.load(i64, L + word));
  const droppedByReason: Partial<Record<DropReason, number>> = {};
  const bytesDroppedByReason: Partial<Record<DropReason, number>> = {};
  REASONS.forEach((r, i) => {
    if (w(Ledger.REASON_EVENTS + i) > 0) droppedByReason[r] = w(Ledger.REASON_EVENTS + i);
    if (w(Ledger.REASON_BYTES + i) > 0) bytesDroppedByReason[r] = w(Ledger.REASON_BYTES + i);
  });
  const droppedByPriority = noPriorities();
  PRIORITIES.forEach((p, i) => (droppedByPriority[p] = w(Ledger.PRIORITY_EVENTS + i)));
  const transitions: Record<string, number> = {};
  EDGES.forEach((_, i) => (transitions[edgeName(i)] = w(Ledger.EDGES + i)));
  const t = (i: number) => w(Ledger.TIME_IN_STATE_US + i) / 1000;
  return {
    threads: w(Ledger.THREADS),
    eventsAttempted: w(Ledger.ATTEMPTED),
    eventsWritten: w(Ledger.WRITTEN),
    eventsDropped: w(Ledger.DROPPED),
    bytesDropped: w(Ledger.BYTES_DROPPED),
    droppedByReason,
    bytesDroppedByReason,
    droppedByPriority,
    transitions,
    timeInStateMs: { normal: t(0), pressure: t(1), dropping: t(2), recovery: t(3) },
    exhaustions: w(Ledger.EXHAUSTIONS),
    swaps: w(Ledger.SWAPS),
    chunksWritten: w(Ledger.CHUNKS),
    predictedPressureEntries: w(Ledger.PREDICTED_ENTRIES),
  };
}
