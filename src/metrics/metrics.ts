/**
 * A snapshot of every thread's counters, read from shared memory by any thread.
 *
 * Freshness: counters a thread keeps with plain stores (attempted, writer-side drops, swaps) are
 * published to other threads at its next hand-off: a ring swap, a flush, or the periodic flush
 * (`flushIntervalMs`, which runs only while the thread has something not handed over). So
 * `metrics()` lags a busy thread by at most one ring; an idle thread's are as it left them (see
 * architecture.md, "How fresh metrics() is"); after `flush()` or `close()` on its thread they are exact.
 * Totals count each registration once, in every thread: a retired registration moves from its
 * slot into a shared ledger in one seqlock write (retireIntoLedger), so it is never counted twice
 * or missed (unless the read had to give up waiting: `consistent` false).
 */
import { BackpressureState, EDGES, STATE_NAMES, edgeName, type StateName } from '../shm/backpressure.js';
import {
  Ctl,
  ControlFlag,
  Loss,
  PRIORITIES,
  PRIORITY_COUNT,
  noPriorities,
  isFinal,
  isInLedger,
  isUnclaimed,
  policyOf,
  type DropPolicy,
  lossAt,
  REASONS,
  REASON_COUNT,
  Slot,
  SlotF64,
  SlotState,
  type DropReason,
  type SharedViews,
} from '../shm/layout.js';
import { poolQueues } from '../shm/pool.js';
import { readThreadName } from '../shm/registry.js';
import { readLedger, type LedgerEntry, type LedgerTotals, type SharedCounters } from '../shm/ledger.js';

export interface ThreadMetrics extends SharedCounters {
  slot: number;
  /** The registration number: the `thread` of this registration in the trace file. */
  thread: number;
  name: string;
  nodeThreadId: number;
  status: 'live' | 'closing' | 'exited';
  policy: DropPolicy;
  state: StateName;
  eventsAttempted: number;
  eventsWritten: number;
  eventsDropped: number;
  bytesDropped: number;
  illegalTransitions: number;
  /** Writer-side state changes that found the transition log full (counted, not in the file). */
  stateLogOverflows: number;
  freeSpares: number;
  /** Lowest number of free spares seen after a swap (low watermark). */
  freeSparesMin: number;
  /** Milliseconds from a ring's hand-off to its write: last and worst. */
  drainLagMs: { last: number; max: number };
  /** Average time a handed-over ring is away (hand-off to its return to the free queue), ms;
   * 0 until one came back. The adaptive marks follow it. */
  ringServiceMs: number;
  /** Spares this thread's PRESSURE mark is raised by (adaptive thresholds; 0 when off): it enters
   * PRESSURE at pressureSpares + this many free spares. */
  thresholdRaise: number;
}

/** Totals of the registrations retired so far (closed, exited, accounted at the tracer's close):
 * kept in shared memory by the drain, so every thread's metrics() sees them at once. */
export type RetiredTotals = LedgerTotals;

/** A registration's final numbers, from the drain when it retires it (or close()'s fallback). */
export interface RegistrationSummary extends LedgerEntry, Pick<ThreadMetrics, 'policy' | 'freeSparesMin' | 'drainLagMs'> {
  thread: number;
  name: string;
  slot: number;
  endReason: 'closed' | 'exited' | 'tracer_closed';
  /** attempted === events + dropped */
  balanced: boolean;
}

export interface MetricsSnapshot {
  /** Registrations not yet retired (live, closing, exited but not yet salvaged). */
  threads: ThreadMetrics[];
  /** Per-registration summaries of retired threads, as this (the owner) thread has received
   * them from the drain; in other threads, and for a moment after a retirement, it can miss
   * some. `retiredTotals` and `totals` never do. */
  retired: RegistrationSummary[];
  retiredTotals: RetiredTotals;
  /** False only if the drain was descheduled inside a retirement for longer than metrics() waits
   * (50 ms): then a registration moving into the ledger may be counted twice or not at all. */
  consistent: boolean;
  /** Live threads + retired ones: each registration counted once (see `consistent`). */
  totals: RetiredTotals & {
    /** Events recorded on writers after their tracer closed. */
    droppedAfterClose: number;
  };
  drain: {
    /** Drain passes so far. It moves at least once a `drainIdleMs` (1 s by default) while the drain
     * runs, more often when there is work: one that stops moving for longer means a stuck drain. */
    heartbeat: number;
    paused: boolean;
    state: 'starting' | 'running' | 'stopped' | 'failed';
    sinkErrors: number;
    throttleKiBps: number;
  };
}

/** One slot's counters (any state but FREE and CLAIMING). */
export function threadFromSlot(v: SharedViews, slot: number, nowUs: number): ThreadMetrics {
  const { i32, f64, layout } = v;
  const st = Atomics.load(i32, layout.slotI32(slot, Slot.STATE));
  // After the drain's final count, that count is the thread's (later events are `closed`).
  const accounted = isFinal(st);
  const word = (w: number) => i32[layout.slotI32(slot, w)];
  const bp = new BackpressureState(i32, v.i64, layout, slot);
  const byReason: Partial<Record<DropReason, number>> = {};
  const bytesByReason: Partial<Record<DropReason, number>> = {};
  const byPriority = noPriorities();
  let dropped = 0;
  let bytesDropped = 0;
  const wl = layout.slotF64(slot, SlotF64.WRITER_LOSS);
  const dl = layout.slotF64(slot, SlotF64.DRAIN_LOSS);
  for (let r = 0; r < REASON_COUNT; r++) {
    for (let p = 0; p < PRIORITY_COUNT; p++) {
      byPriority[PRIORITIES[p]] += f64[lossAt(wl, r) + Loss.BY_PRIORITY + p] + f64[lossAt(dl, r) + Loss.BY_PRIORITY + p];
    }
    const n = f64[lossAt(wl, r) + Loss.EVENTS] + f64[lossAt(dl, r) + Loss.EVENTS];
    const bytes = f64[lossAt(wl, r) + Loss.BYTES] + f64[lossAt(dl, r) + Loss.BYTES];
    if (n > 0) byReason[REASONS[r]] = n;
    if (bytes > 0) bytesByReason[REASONS[r]] = bytes;
    dropped += n;
    bytesDropped += bytes;
  }
  const edges = bp.edgeCounts();
  const transitions: Record<string, number> = {};
  EDGES.forEach((_, e) => (transitions[edgeName(e)] = edges[e]));
  const tis = bp.timeInStates(nowUs);
  return {
    slot,
    thread: word(Slot.REGISTRATION),
    name: readThreadName(v, slot),
    nodeThreadId: word(Slot.NODE_THREAD_ID),
    status: st === SlotState.CLOSING ? 'closing' : st === SlotState.ORPHANED ? 'exited' : 'live',
    policy: policyOf(word(Slot.POLICY)) ?? 'drop-oldest',
    state: STATE_NAMES[bp.state()],
    eventsAttempted: f64[layout.slotF64(slot, accounted ? SlotF64.RETIRED_ATTEMPTED : SlotF64.ATTEMPTED)],
    eventsWritten: f64[layout.slotF64(slot, SlotF64.EVENTS_WRITTEN)],
    eventsDropped: dropped,
    bytesDropped,
    droppedByReason: byReason,
    bytesDroppedByReason: bytesByReason,
    droppedByPriority: byPriority,
    transitions,
    illegalTransitions: bp.illegalTransitions(),
    stateLogOverflows: Atomics.load(i32, layout.slotI32(slot, Slot.TLOG_OVERFLOW)),
    timeInStateMs: { normal: tis[0] / 1000, pressure: tis[1] / 1000, dropping: tis[2] / 1000, recovery: tis[3] / 1000 },
    freeSpares: poolQueues(i32, layout, slot).free.size(),
    freeSparesMin: word(Slot.FREE_MIN),
    exhaustions: word(Slot.EXHAUSTIONS),
    swaps: word(Slot.SWAPS),
    chunksWritten: f64[layout.slotF64(slot, SlotF64.CHUNKS_WRITTEN)],
    drainLagMs: { last: f64[layout.slotF64(slot, SlotF64.DRAIN_LAG_LAST_MS)], max: f64[layout.slotF64(slot, SlotF64.DRAIN_LAG_MAX_MS)] },
    ringServiceMs: Atomics.load(i32, layout.slotI32(slot, Slot.SERVICE_US)) / 1000,
    thresholdRaise: Atomics.load(i32, layout.slotI32(slot, Slot.THRESHOLD_RAISE)),
    predictedPressureEntries: Atomics.load(i32, layout.slotI32(slot, Slot.PREDICTED_ENTRIES)),
  };
}

/** A registration summary made from a slot, when no drain will make one (close()'s fallback):
 * events attempted but neither written nor counted are `unflushed`. */
export function summaryFromSlot(t: ThreadMetrics): RegistrationSummary {
  const unreached = Math.max(0, t.eventsAttempted - t.eventsWritten - t.eventsDropped);
  const droppedByReason = { ...t.droppedByReason };
  if (unreached > 0) droppedByReason.unflushed = (droppedByReason.unflushed ?? 0) + unreached;
  const dropped = t.eventsDropped + unreached;
  return {
    thread: t.thread,
    name: t.name,
    slot: t.slot,
    attempted: t.eventsAttempted,
    events: t.eventsWritten,
    dropped,
    bytesDropped: t.bytesDropped,
    droppedByReason,
    bytesDroppedByReason: t.bytesDroppedByReason,
    droppedByPriority: t.droppedByPriority,
    endReason: 'tracer_closed',
    balanced: t.eventsAttempted === t.eventsWritten + dropped,
    policy: t.policy,
    transitions: t.transitions,
    timeInStateMs: t.timeInStateMs,
    exhaustions: t.exhaustions,
    swaps: t.swaps,
    freeSparesMin: t.freeSparesMin,
    chunksWritten: t.chunksWritten,
    drainLagMs: t.drainLagMs,
    predictedPressureEntries: t.predictedPressureEntries,
  };
}

/** How long metrics() waits for a ledger write in progress (the drain descheduled inside it)
 * before it reads anyway. */
const LEDGER_WAIT_MS = 50;

/** Slots not yet in the ledger, and the ledger, read as of one moment (see retireIntoLedger);
 * `consistent` is false if a write in progress outlasted LEDGER_WAIT_MS and this read is torn. */
function readConsistent(v: SharedViews, nowUs: number): { threads: ThreadMetrics[]; ledger: RetiredTotals; consistent: boolean } {
  const { i32, layout } = v;
  const deadline = performance.now() + LEDGER_WAIT_MS;
  for (;;) {
    const seq = Atomics.load(i32, Ctl.LEDGER_SEQ);
    const late = performance.now() > deadline;
    if ((seq & 1) !== 0 && !late) {
      Atomics.wait(i32, Ctl.LEDGER_SEQ, seq, 1);
      continue;
    }
    const threads: ThreadMetrics[] = [];
    for (let slot = 0; slot < layout.maxThreads; slot++) {
      const st = Atomics.load(i32, layout.slotI32(slot, Slot.STATE));
      if (isUnclaimed(st) || isInLedger(st)) continue;
      threads.push(threadFromSlot(v, slot, nowUs));
    }
    const ledger = readLedger(v);
    const consistent = (seq & 1) === 0 && Atomics.load(i32, Ctl.LEDGER_SEQ) === seq;
    if (consistent || late) return { threads, ledger, consistent };
  }
}

export function collectMetrics(v: SharedViews, nowUs: number, retired: readonly RegistrationSummary[]): MetricsSnapshot {
  const { i32 } = v;
  const { threads, ledger, consistent } = readConsistent(v, nowUs);
  const totals: MetricsSnapshot['totals'] = {
    threads: threads.length + ledger.threads,
    eventsAttempted: ledger.eventsAttempted,
    eventsWritten: ledger.eventsWritten,
    eventsDropped: ledger.eventsDropped,
    bytesDropped: ledger.bytesDropped,
    droppedByReason: { ...ledger.droppedByReason },
    bytesDroppedByReason: { ...ledger.bytesDroppedByReason },
    droppedByPriority: { ...ledger.droppedByPriority },
    droppedAfterClose: Atomics.load(i32, Ctl.CLOSED_DROPS),
    transitions: { ...ledger.transitions },
    timeInStateMs: { ...ledger.timeInStateMs },
    exhaustions: ledger.exhaustions,
    swaps: ledger.swaps,
    chunksWritten: ledger.chunksWritten,
    predictedPressureEntries: ledger.predictedPressureEntries,
  };
  for (const t of threads) {
    totals.eventsAttempted += t.eventsAttempted;
    totals.eventsWritten += t.eventsWritten;
    totals.eventsDropped += t.eventsDropped;
    totals.bytesDropped += t.bytesDropped;
    for (const [r, n] of Object.entries(t.droppedByReason))
      totals.droppedByReason[r as DropReason] = (totals.droppedByReason[r as DropReason] ?? 0) + n;
    for (const [r, n] of Object.entries(t.bytesDroppedByReason))
      totals.bytesDroppedByReason[r as DropReason] = (totals.bytesDroppedByReason[r as DropReason] ?? 0) + n;
    for (const p of PRIORITIES) totals.droppedByPriority[p] += t.droppedByPriority[p];
    for (const [e, n] of Object.entries(t.transitions)) totals.transitions[e] = (totals.transitions[e] ?? 0) + n;
    for (const st of STATE_NAMES) totals.timeInStateMs[st] += t.timeInStateMs[st];
    totals.exhaustions += t.exhaustions;
    totals.swaps += t.swaps;
    totals.chunksWritten += t.chunksWritten;
    totals.predictedPressureEntries += t.predictedPressureEntries;
  }
  return {
    threads,
    retired: retired.slice(),
    retiredTotals: ledger,
    totals,
    consistent,
    drain: {
      heartbeat: Atomics.load(i32, Ctl.DRAIN_HEARTBEAT),
      paused: (Atomics.load(i32, Ctl.FLAGS) & ControlFlag.DRAIN_PAUSED) !== 0,
      state: (['starting', 'running', 'stopped', 'failed'] as const)[Atomics.load(i32, Ctl.DRAIN_STATE)],
      sinkErrors: Atomics.load(i32, Ctl.SINK_ERRORS),
      throttleKiBps: Atomics.load(i32, Ctl.DRAIN_THROTTLE_KIBPS),
    },
  };
}
