/**
 * A snapshot of every thread's counters, read from shared memory by any thread.
 *
 * Freshness: counters a thread keeps with plain stores (attempted, writer-side drops, swaps) are
 * published to other threads at its next hand-off: a ring swap, a flush, or the periodic flush
 * (`flushIntervalMs`). So `metrics()` lags a busy thread by at most one ring and an idle one by
 * at most one flush interval; after `flush()` or `close()` on the writer's thread it is exact.
 */
import { BackpressureState, EDGES, STATE_NAMES, edgeName, type StateName } from './backpressure.js';
import { Ctl, ControlFlag, Loss, REASONS, REASON_COUNT, Slot, SlotF64, SlotState, type DropReason, type SharedViews } from './layout.js';
import { poolQueues } from './pool.js';
import { readThreadName } from './registry.js';
import type { RegistrationSummary } from './drain.js';

export interface ThreadMetrics {
  slot: number;
  /** The registration number: the `thread` of this registration in the trace file. */
  thread: number;
  name: string;
  nodeThreadId: number;
  status: 'live' | 'closing' | 'exited';
  policy: 'drop-oldest' | 'drop-newest';
  state: StateName;
  eventsAttempted: number;
  eventsWritten: number;
  eventsDropped: number;
  bytesDropped: number;
  droppedByReason: Partial<Record<DropReason, number>>;
  /** Transitions taken per edge, e.g. { 'normal->pressure': 2 }. */
  transitions: Record<string, number>;
  illegalTransitions: number;
  /** Writer-side state changes that found the transition log full (counted, not in the file). */
  stateLogOverflows: number;
  /** Milliseconds spent in each state, the current one counted up to now. */
  timeInStateMs: Record<StateName, number>;
  freeSpares: number;
  /** Lowest number of free spares seen after a swap (low watermark). */
  freeSparesMin: number;
  exhaustions: number;
  swaps: number;
  chunksWritten: number;
  /** Milliseconds from a ring's hand-off to its write: last and worst. */
  drainLagMs: { last: number; max: number };
}

export interface MetricsSnapshot {
  threads: ThreadMetrics[];
  /** Threads that closed or exited during this session, as the drain retired them. */
  retired: RegistrationSummary[];
  totals: {
    threads: number;
    eventsAttempted: number;
    eventsWritten: number;
    eventsDropped: number;
    bytesDropped: number;
    droppedByReason: Partial<Record<DropReason, number>>;
    /** Events recorded on writers after their tracer closed. */
    droppedAfterClose: number;
  };
  drain: { heartbeat: number; paused: boolean; state: 'starting' | 'running' | 'stopped' | 'failed'; sinkErrors: number; throttleKiBps: number };
}

export function collectMetrics(v: SharedViews, nowUs: number, retired: readonly RegistrationSummary[]): MetricsSnapshot {
  const { i32, f64, layout } = v;
  const threads: ThreadMetrics[] = [];
  // A registration is counted once: from the drain's summary once that has arrived, else from
  // its slot (whatever the slot's state says: the summary and the state change race).
  const summarized = new Set(retired.map((r) => r.thread));
  for (let slot = 0; slot < layout.maxThreads; slot++) {
    const st = Atomics.load(i32, layout.slotI32(slot, Slot.STATE));
    if (st === SlotState.FREE || st === SlotState.CLAIMING) continue;
    if (summarized.has(i32[layout.slotI32(slot, Slot.REGISTRATION)])) continue;
    // After the drain's final count, that count is the thread's (later events are `closed`).
    const accounted = st === SlotState.RETIRED || st === SlotState.RECONCILED;
    const word = (w: number) => i32[layout.slotI32(slot, w)];
    const bp = new BackpressureState(i32, v.i64, layout, slot);
    const byReason: Partial<Record<DropReason, number>> = {};
    let dropped = 0;
    let bytesDropped = 0;
    const wl = layout.slotF64(slot, SlotF64.WRITER_LOSS);
    const dl = layout.slotF64(slot, SlotF64.DRAIN_LOSS);
    for (let r = 0; r < REASON_COUNT; r++) {
      const n = f64[wl + r * 4 + Loss.EVENTS] + f64[dl + r * 4 + Loss.EVENTS];
      if (n > 0) byReason[REASONS[r]] = n;
      dropped += n;
      bytesDropped += f64[wl + r * 4 + Loss.BYTES] + f64[dl + r * 4 + Loss.BYTES];
    }
    const edges = bp.edgeCounts();
    const transitions: Record<string, number> = {};
    EDGES.forEach((_, e) => (transitions[edgeName(e)] = edges[e]));
    const tis = bp.timeInStates(nowUs);
    threads.push({
      slot,
      thread: word(Slot.REGISTRATION),
      name: readThreadName(v, slot),
      nodeThreadId: word(Slot.NODE_THREAD_ID),
      status: st === SlotState.CLOSING ? 'closing' : st === SlotState.ORPHANED ? 'exited' : 'live',
      policy: word(Slot.POLICY) === 1 ? 'drop-newest' : 'drop-oldest',
      state: STATE_NAMES[bp.state()],
      eventsAttempted: f64[layout.slotF64(slot, accounted ? SlotF64.RETIRED_ATTEMPTED : SlotF64.ATTEMPTED)],
      eventsWritten: f64[layout.slotF64(slot, SlotF64.EVENTS_WRITTEN)],
      eventsDropped: dropped,
      bytesDropped,
      droppedByReason: byReason,
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
    });
  }
  const totals = {
    threads: threads.length + retired.length,
    eventsAttempted: 0,
    eventsWritten: 0,
    eventsDropped: 0,
    bytesDropped: 0,
    droppedByReason: {} as Partial<Record<DropReason, number>>,
    droppedAfterClose: Atomics.load(i32, Ctl.CLOSED_DROPS),
  };
  const add = (attempted: number, written: number, dropped: number, bytes: number, byReason: Partial<Record<DropReason, number>>) => {
    totals.eventsAttempted += attempted;
    totals.eventsWritten += written;
    totals.eventsDropped += dropped;
    totals.bytesDropped += bytes;
    for (const [r, n] of Object.entries(byReason)) totals.droppedByReason[r as DropReason] = (totals.droppedByReason[r as DropReason] ?? 0) + n;
  };
  for (const t of threads) add(t.eventsAttempted, t.eventsWritten, t.eventsDropped, t.bytesDropped, t.droppedByReason);
  for (const t of retired) add(t.attempted, t.events, t.dropped, t.bytesDropped, t.droppedByReason);
  return {
    threads,
    retired: retired.slice(),
    totals,
    drain: {
      heartbeat: Atomics.load(i32, Ctl.DRAIN_HEARTBEAT),
      paused: (Atomics.load(i32, Ctl.FLAGS) & ControlFlag.DRAIN_PAUSED) !== 0,
      state: (['starting', 'running', 'stopped', 'failed'] as const)[Atomics.load(i32, Ctl.DRAIN_STATE)],
      sinkErrors: Atomics.load(i32, Ctl.SINK_ERRORS),
      throttleKiBps: Atomics.load(i32, Ctl.DRAIN_THROTTLE_KIBPS),
    },
  };
}
