/**
 * The shared-memory contract: every byte of the tracer's one SharedArrayBuffer is laid out here,
 * and nowhere else. Writers (any thread), the drain worker and `metrics()` read the same offsets.
 *
 * ```
 *  SharedArrayBuffer
 *  +--------------------------------------------------------------------------------------+
 *  | CONTROL BLOCK (256 B)  magic, layout version, geometry, flags, drain heartbeat,       |
 *  |                        doorbell, registration/name counters, pause handshake,        |
 *  |                        clock zero                                                    |
 *  +--------------------------------------------------------------------------------------+
 *  | RETIRED LEDGER (512 B)  i64 totals of every registration retired so far, and their    |
 *  |                        undo copy; Atomics only, under the LEDGER_SEQ seqlock           |
 *  +--------------------------------------------------------------------------------------+
 *  | NAME TABLE  NAME_TABLE_ENTRIES x 128 B, open addressing on a string hash               |
 *  |   entry: state | id | byteLength | hash | utf8 name (<= 112 B)                         |
 *  +--------------------------------------------------------------------------------------+
 *  | PRIORITY TABLE  u8 per name id (0..MAX_NAMES): the id's Priority code, stored by the   |
 *  |                 define() that creates the name, before its entry is published READY   |
 *  +--------------------------------------------------------------------------------------+
 *  | SLOT 0 HEADER (slotHeaderBytes)                                                         |
 *  |   bytes 0-127, i32 words: slot state, registration, threadId, queue cursors, active     |
 *  |              ring cursors, counters, transition counts per edge                        |
 *  |   bytes 128-, i64 words: backpressure word (state | enteredAtUs << 3), time per state  |
 *  |              f64 words: attempted, writer loss block, drain loss block, drain progress |
 *  |   transition log (SPSC, writer -> drain), thread name bytes                            |
 *  |   submit queue [ringsPerThread] (writer -> drain), free queue [ringsPerThread]         |
 *  |   ring descriptors [ringsPerThread] (snapshot of cursors + loss block at hand-off)      |
 *  | SLOT 1 HEADER ...                                                                      |
 *  | ... maxThreads slot headers                                                            |
 *  +--------------------------------------------------------------------------------------+
 *  | RINGS  slot 0: ring 0 | ring 1 | ... | ring R-1 ; slot 1: ... (ringSize bytes each)    |
 *  +--------------------------------------------------------------------------------------+
 * ```
 *
 * Ownership (who may write what, and when it passes):
 * - A ring belongs to exactly one side. The writer owns its active ring and the rings it popped
 *   from the free queue; the drain owns rings between popping them from the submit queue and
 *   pushing them to the free queue. Ring bytes and ring descriptors are therefore plain stores.
 * - Each queue cursor has one writer: SUBMIT_TAIL and FREE_HEAD are the thread's, SUBMIT_HEAD and
 *   FREE_TAIL the drain's. A cursor store is `Atomics.store` (release) after the slot entry it
 *   publishes; the other side reads it with `Atomics.load` (acquire) before the entry. That pair is
 *   the whole hand-off of a ring and of everything its owner wrote into it.
 * - The writer loss block and the per-event cursors (ATTEMPTED, ACTIVE_TAIL) are written by the
 *   thread only, with plain stores: other threads see them at the next hand-off (swap, flush, the
 *   periodic flush) and, after the thread has exited, completely (thread join orders them before
 *   the exit notification that starts salvage).
 * - The drain loss block and drain progress are written by the drain only.
 * - The backpressure word may be changed by both sides, always by compare-exchange.
 */

export const LAYOUT_MAGIC = 0x52545243; // 'RTRC'
export const LAYOUT_VERSION = 6;

/** Control block: Int32 word indices. */
export const Ctl = {
  MAGIC: 0,
  VERSION: 1,
  MAX_THREADS: 2,
  RINGS_PER_THREAD: 3,
  RING_SIZE: 4,
  /** Bit set of ControlFlag; changed with Atomics.or/and. */
  FLAGS: 5,
  /** Incremented by the drain on every pass; a stale value means a stuck or dead drain. */
  DRAIN_HEARTBEAT: 6,
  /** The drain sleeps on this word (Atomics.wait) and is woken by Atomics.notify on it. */
  DOORBELL: 7,
  /** 1 while the drain is (about to be) asleep: writers only ring the doorbell then. */
  DRAIN_SLEEPING: 8,
  NEXT_REGISTRATION: 9,
  NEXT_NAME_ID: 10,
  /** Pause requests so far (Atomics.add by pauseDrain, before it sets DRAIN_PAUSED). */
  PAUSE_REQUESTS: 11,
  DRAIN_STATE: 12,
  /** Events recorded on writers after their tracer closed (reason `closed`), all threads. */
  CLOSED_DROPS: 13,
  /** Drain write budget in KiB/s (0 = unlimited): an operational throttle, and how tests and the
   * demo make a drain that cannot keep up. */
  DRAIN_THROTTLE_KIBPS: 14,
  /** Chunks the drain could not write (sink errors), for metrics(). */
  SINK_ERRORS: 15,
  /** The PAUSE_REQUESTS count the drain had read when it last began a pass paused: once it is >=
   * a request's number, no pass that ignores that pause is running (passes do not overlap). */
  PAUSE_ACK: 20,
  /** Seqlock of the retired ledger: odd while the drain moves a registration from its slot into
   * the ledger (Atomics.add before and after), so a reader sees each registration exactly once. */
  LEDGER_SEQ: 21,
  /** The slot and registration a ledger write is retiring (stored before it starts), so that
   * close()'s fallback can tell a write the dead drain finished from one it did not. */
  LEDGER_PENDING_SLOT: 22,
  LEDGER_PENDING_REGISTRATION: 23,
  /** Names defined with priority critical / debug (Atomics.add by define()). A writer reads them
   * at a ring swap: with no critical name the critical reserve is not held back, with no debug
   * name PRESSURE sheds nothing, so neither costs a thread that does not use priorities. */
  CRITICAL_NAMES: 24,
  DEBUG_NAMES: 25,
  /** Float64 index (byte 64): Date.now() when the tracer opened. */
  F64_SESSION_START_EPOCH_MS: 8,
  /** Float64 index (byte 72): clock zero as an absolute high-resolution time (ms). */
  F64_CLOCK_ZERO_MS: 9,
} as const;
export const CONTROL_BYTES = 256;

export const ControlFlag = {
  DRAIN_PAUSED: 1,
  CLOSING: 2,
  CLOSED: 4,
  /** The drain's last act: take everything, write the footer, stop. */
  FINISH: 8,
} as const;

export const DrainState = { STARTING: 0, RUNNING: 1, STOPPED: 2, FAILED: 3 } as const;

/** Name table: open addressing, entries of NAME_ENTRY_BYTES. */
export const NAME_TABLE_ENTRIES = 2048;
/** define() refuses past this many names so that probing stays short (75% load). */
export const MAX_NAMES = 1536;
export const NAME_ENTRY_BYTES = 128;
export const NAME_MAX_BYTES = 112;
export const NameEntry = { STATE: 0, ID: 1, BYTE_LENGTH: 2, HASH: 3, BYTES_OFFSET: 16 } as const;
export const NameState = { EMPTY: 0, WRITING: 1, READY: 2 } as const;

/**
 * Event priorities. The code is the byte in the priority table and in the file's NAME records;
 * 0 is normal, so an id no define() gave a priority (a raw id, a span's 0xFFFFFFFF) is normal.
 * Under pressure debug events go first, then normal; critical ones may use the critical reserve.
 */
export const PRIORITIES = ['normal', 'critical', 'debug'] as const;
export type Priority = (typeof PRIORITIES)[number];
export const PRIORITY_COUNT = PRIORITIES.length;
export const Prio = { NORMAL: 0, CRITICAL: 1, DEBUG: 2 } as const;
export const priorityCode = (p: Priority): number => PRIORITIES.indexOf(p);
/** Counts per priority (events dropped, events in a file). */
export type PriorityCounts = Record<Priority, number>;
export const noPriorities = (): PriorityCounts => ({ normal: 0, critical: 0, debug: 0 });
/** Bytes of the priority table: one per id 0..MAX_NAMES, rounded up to 8. */
export const PRIORITY_TABLE_BYTES = (MAX_NAMES + 1 + 7) & ~7;

/**
 * A slot's life (every change is a compare-exchange or a release store on Slot.STATE):
 *
 *   FREE -claim-> CLAIMING -> LIVE -writer close()-> CLOSING -drain retires-> RELEASING -wiped-> FREE
 *                               |--thread exit seen-> ORPHANED -drain salvages-> RELEASING -> FREE
 *                               '--tracer close, still live-> RETIRING -drain accounts-> RETIRED
 *                                  -late events counted (writer, or its thread's exit)-> RECONCILED
 *
 * RETIRED and RECONCILED are final: the tracer is closed, and the slot is not reused.
 */
export const SlotState = {
  FREE: 0,
  /** A thread won the claim CAS and is initialising the slot. */
  CLAIMING: 1,
  LIVE: 2,
  /** The writer closed: the drain takes what is left and releases the slot. */
  CLOSING: 3,
  /** The thread is gone without closing: the drain salvages and releases the slot. */
  ORPHANED: 4,
  /** The tracer is closing and the writer is still live: the drain's final pass (or close()'s
   * fallback when the drain died) took the slot from LIVE by compare-exchange and is accounting
   * for it. The writer's own close() now fails its LIVE -> CLOSING exchange and waits for... */
  RETIRING: 5,
  /** ...this: RETIRED_ATTEMPTED holds the attempted count that was accounted (stored before
   * this state, which publishes it); the events after it are counted as `closed` by whoever
   * moves the slot on to RECONCILED: the writer when it notices, or, if its thread exits first,
   * the thread that created it (from the attempted count the dead thread left). */
  RETIRED: 6,
  RECONCILED: 7,
  /** freeSlot() is wiping the header of a slot whose registration is already in the retired
   * ledger: neither the old registration (metrics() and close()'s fallback skip it) nor free. */
  RELEASING: 8,
} as const;

/** No registration in the slot yet: free, or a thread is initialising it. */
export const isUnclaimed = (st: number): boolean => st === SlotState.FREE || st === SlotState.CLAIMING;
/** Accounted at the tracer's close (RETIRED, RECONCILED): final, the counts are in the ledger. */
export const isFinal = (st: number): boolean => st === SlotState.RETIRED || st === SlotState.RECONCILED;
/** The slot's registration is counted in the retired ledger (final, or being wiped for reuse):
 * reading it from the slot as well would count it twice. */
export const isInLedger = (st: number): boolean => isFinal(st) || st === SlotState.RELEASING;

/** Drop reasons: index into loss blocks and the order of loss blocks in the trace file. */
export const REASONS = [
  'pool_exhausted',
  'record_too_large',
  'sink_error',
  'closed',
  'thread_exit',
  'unflushed',
  'shed',
  'sampled',
] as const;
export type DropReason = (typeof REASONS)[number];
export const Reason = {
  POOL_EXHAUSTED: 0,
  RECORD_TOO_LARGE: 1,
  SINK_ERROR: 2,
  CLOSED: 3,
  THREAD_EXIT: 4,
  UNFLUSHED: 5,
  /** Not kept by the thread's pressure policy while spares were left (debug events in PRESSURE). */
  SHED: 6,
  /** Not kept by pressure sampling: a normal event outside 1 in N while the thread was not NORMAL. */
  SAMPLED: 7,
} as const;
export const REASON_COUNT = REASONS.length;

/**
 * A loss block: per reason {events, bytes, firstTs, lastTs, events by priority} as Float64
 * (4 + PRIORITY_COUNT words a reason). The per-priority events of a reason add up to its events
 * when the loser knew each event's id (every writer-side reason); the drain's reasons
 * (sink_error, thread_exit, unflushed) lose events it does not look at, left unattributed.
 */
export const Loss = { EVENTS: 0, BYTES: 1, FIRST_TS: 2, LAST_TS: 3, BY_PRIORITY: 4 } as const;
export const LOSS_WORDS_PER_REASON = Loss.BY_PRIORITY + PRIORITY_COUNT;
export const LOSS_BLOCK_WORDS = REASON_COUNT * LOSS_WORDS_PER_REASON;
/** Index of `reason`'s entry in the loss block that starts at index `block` (add a Loss field). */
export const lossAt = (block: number, reason: number): number => block + reason * LOSS_WORDS_PER_REASON;

/** Backpressure states (the state machine is in backpressure.ts) and its legal edges (the index
 * of the per-edge counters). */
export const STATE_COUNT = 4;
export const EDGE_COUNT = 6;

/**
 * Retired ledger, BigInt64 indices from its start: the totals of every registration retired so
 * far (closed, exited, or accounted at the tracer's close), so that metrics() in any thread is
 * exact at every moment, not only once a summary message has arrived. Integers (times in µs),
 * read and written with Atomics only. Words SHADOW.. hold the copy taken before each write.
 * Each region starts where the previous one ends; checkRegions() below proves it.
 */
const LEDGER_REASON_EVENTS = 8;
const LEDGER_REASON_BYTES = LEDGER_REASON_EVENTS + REASON_COUNT;
const LEDGER_EDGES = LEDGER_REASON_BYTES + REASON_COUNT;
const LEDGER_TIME_IN_STATE = LEDGER_EDGES + EDGE_COUNT;
const LEDGER_PRIORITY_EVENTS = LEDGER_TIME_IN_STATE + STATE_COUNT;
/** Words of one copy of the ledger. */
const LEDGER_PREDICTED_ENTRIES = LEDGER_PRIORITY_EVENTS + PRIORITY_COUNT;
export const LEDGER_WORDS = LEDGER_PREDICTED_ENTRIES + 1;
export const Ledger = {
  THREADS: 0,
  ATTEMPTED: 1,
  WRITTEN: 2,
  DROPPED: 3,
  BYTES_DROPPED: 4,
  EXHAUSTIONS: 5,
  SWAPS: 6,
  CHUNKS: 7,
  /** REASON_COUNT words each. */
  REASON_EVENTS: LEDGER_REASON_EVENTS,
  REASON_BYTES: LEDGER_REASON_BYTES,
  /** EDGE_COUNT words: transitions per edge. */
  EDGES: LEDGER_EDGES,
  /** STATE_COUNT words: microseconds in each state. */
  TIME_IN_STATE_US: LEDGER_TIME_IN_STATE,
  /** PRIORITY_COUNT words: events dropped per priority (all reasons that know it). */
  PRIORITY_EVENTS: LEDGER_PRIORITY_EVENTS,
  /** NORMAL -> PRESSURE entries made by forecast (Slot.PREDICTED_ENTRIES). */
  PREDICTED_ENTRIES: LEDGER_PREDICTED_ENTRIES,
  /** LEDGER_WORDS words: the ledger as it was before the write in progress. */
  SHADOW: LEDGER_WORDS,
} as const;
/** The ledger and its shadow copy, rounded up to a cache line. */
export const LEDGER_BYTES = (2 * LEDGER_WORDS * 8 + 63) & ~63;

export const TRANSITION_LOG_ENTRIES = 16;
/** Transition-log cursors count modulo 2^30 (a multiple of the log size), so they never
 * overflow an Int32 and `cursor % TRANSITION_LOG_ENTRIES` stays continuous across the wrap. */
export const TLOG_CURSOR_MASK = 0x3fffffff;

export const THREAD_NAME_MAX_BYTES = 128;

const SLOT_EDGES = 20;
/** Slot header Int32 word indices (relative to the slot's first Int32 word). */
export const Slot = {
  STATE: 0,
  REGISTRATION: 1,
  NODE_THREAD_ID: 2,
  NAME_LENGTH: 3,
  SUBMIT_HEAD: 4,
  SUBMIT_TAIL: 5,
  FREE_HEAD: 6,
  FREE_TAIL: 7,
  /** Ring index the writer owns as active, or -1 while it has none (drop-newest, exhausted). */
  ACTIVE_RING: 8,
  /** Committed end of the active ring (byte offset in the ring); plain store per event. */
  ACTIVE_TAIL: 9,
  /** Oldest record of the active ring (moves only under drop-oldest). */
  ACTIVE_HEAD: 10,
  /** Where the older part ends when the active ring has wrapped (drop-oldest), else -1. */
  ACTIVE_WRAP_END: 11,
  POLICY: 12,
  TLOG_HEAD: 14,
  TLOG_TAIL: 15,
  ILLEGAL_TRANSITIONS: 16,
  EXHAUSTIONS: 17,
  SWAPS: 18,
  FREE_MIN: 19,
  /** EDGE_COUNT words: transitions taken per edge (Atomics.add). */
  EDGES: SLOT_EDGES,
  TLOG_OVERFLOW: SLOT_EDGES + EDGE_COUNT,
  FLUSHES: SLOT_EDGES + EDGE_COUNT + 1,
  /** How far the drain has copied the writer's active ring while the writer kept it (see
   * ScrapeWord): changed by compare-exchange (the drain) and by the writer at each ring change. */
  SCRAPE: SLOT_EDGES + EDGE_COUNT + 2,
  /** Spares the thread's PRESSURE mark is raised by (adaptive thresholds, see
   * record/forecast.ts): Atomics.store by the writer at a swap, Atomics.load by the drain. */
  THRESHOLD_RAISE: SLOT_EDGES + EDGE_COUNT + 3,
  /** The drain's average ring service time (hand-over to return), µs; 0 until a ring came back. */
  SERVICE_US: SLOT_EDGES + EDGE_COUNT + 4,
  /** NORMAL -> PRESSURE transitions taken ahead of the mark, by forecast (Atomics.add). */
  PREDICTED_ENTRIES: SLOT_EDGES + EDGE_COUNT + 5,
} as const;

/**
 * The Slot.SCRAPE word. The drain may copy the committed records of a live writer's active ring
 * (a thread whose event loop never runs cannot hand it over: a worker blocked in Atomics.wait);
 * this word says how far it got, and for which ring, so that the rest of the ring, handed over
 * later, is written exactly once:
 * ```
 *   bit 31   30 ........ 24  23 ................. 2   1        0
 *   +------+----------------+-----------------------+--------+------+
 *   |  0   |  generation:7  |  offset / 8  (22 bits) | CLOSED | BUSY |
 *   +------+----------------+-----------------------+--------+------+
 * ```
 * - generation: bumped by the writer each time it takes a ring as active (release store of the
 *   whole word, after the ring's cursors), so a word names one ring's time as the active one.
 * - offset: bytes [0, offset) of that ring are in the drain's hands (written or being written).
 * - BUSY: the drain is copying [offset, to); set and cleared by the drain, by compare-exchange.
 * - CLOSED: the writer took the ring back (it is handing it over, or rewriting it circularly under
 *   drop-oldest): the drain copies no more of it. The writer sets it by compare-exchange, which
 *   makes a copy in progress void (the drain's clearing exchange fails) and keeps the offset.
 */
export const ScrapeWord = {
  BUSY: 1,
  CLOSED: 2,
  GENERATION_MASK: 0x7f,
  of: (generation: number, offset: number, flags: number): number => ((generation & 0x7f) << 24) | ((offset >>> 3) << 2) | flags,
  offset: (word: number): number => ((word >>> 2) & 0x3fffff) << 3,
  generation: (word: number): number => (word >>> 24) & 0x7f,
} as const;
/** The Int32 words above occupy the first 128 bytes; 8-byte words start after them. */
const W8 = 16;
const SLOT_TIME_IN_STATE = W8 + 1;
const SLOT_F64 = SLOT_TIME_IN_STATE + STATE_COUNT;
const SLOT_WRITER_LOSS = W8 + 16;
const SLOT_DRAIN_LOSS = SLOT_WRITER_LOSS + LOSS_BLOCK_WORDS;
const SLOT_TLOG = SLOT_DRAIN_LOSS + LOSS_BLOCK_WORDS;
const SLOT_NAME = SLOT_TLOG + 2 * TRANSITION_LOG_ENTRIES;

/** Slot header BigInt64 indices, relative to the slot's first 8-byte word. */
export const SlotI64 = {
  /** BpWord: state and entry time. One CAS moves the state and stamps the entry time together. */
  BP_WORD: W8,
  /** STATE_COUNT words: microseconds spent in each state, added by the transition that leaves it. */
  TIME_IN_STATE: SLOT_TIME_IN_STATE,
  /** Until when (µs) a PRESSURE entered by forecast is held, whatever the spares (predictive entry,
   * record/forecast.ts); 0: no hold. After the Float64 words below. Written by the writer, read by
   * the drain, Atomics only. */
  PRESSURE_HOLD_US: SLOT_F64 + 9,
} as const;

/** Slot header Float64 indices, relative to the slot's first 8-byte word. */
export const SlotF64 = {
  ATTEMPTED: SLOT_F64,
  /** Timestamp of the last event the writer recorded (ns); the writer raises ts to it. */
  LAST_TS: SLOT_F64 + 1,
  EVENTS_WRITTEN: SLOT_F64 + 2,
  BYTES_WRITTEN: SLOT_F64 + 3,
  CHUNKS_WRITTEN: SLOT_F64 + 4,
  DRAIN_LAG_LAST_MS: SLOT_F64 + 5,
  DRAIN_LAG_MAX_MS: SLOT_F64 + 6,
  REGISTERED_AT: SLOT_F64 + 7,
  /** Drain only, at the tracer's close: the attempted count it accounted for a writer it could
   * not reach (NaN otherwise). Events the writer records after it are counted as `closed`. */
  RETIRED_ATTEMPTED: SLOT_F64 + 8,
  /** LOSS_BLOCK_WORDS words, written by the thread. */
  WRITER_LOSS: SLOT_WRITER_LOSS,
  /** LOSS_BLOCK_WORDS words, written by the drain (cumulative counts only). */
  DRAIN_LOSS: SLOT_DRAIN_LOSS,
  /** TRANSITION_LOG_ENTRIES x 2 words: tsNs, TransitionCode. */
  TLOG: SLOT_TLOG,
  /** THREAD_NAME_MAX_BYTES of thread name start here (as a Float64 index; read as Uint8). */
  NAME: SLOT_NAME,
} as const;
/** Bytes of a slot header's fixed part (the queues and ring descriptors follow it). */
export const SLOT_FIXED_BYTES = SLOT_NAME * 8 + THREAD_NAME_MAX_BYTES;

/**
 * The backpressure word (SlotI64.BP_WORD): `(enteredAtUs << 3) | state`, so that one
 * compare-exchange both moves the state and stamps the time it was entered.
 */
export const BpWord = {
  STATE_BITS: 3,
  of: (state: number, enteredAtUs: number): bigint => (BigInt(enteredAtUs) << 3n) | BigInt(state),
  state: (word: bigint): number => Number(word & 7n),
  enteredAtUs: (word: bigint): number => Number(word >> 3n),
} as const;

/** A transition as one number (transition log entries): `from * 8 + to`, 3 bits a state. */
export const TransitionCode = {
  of: (from: number, to: number): number => from * 8 + to,
  from: (code: number): number => Math.floor(code / 8),
  to: (code: number): number => code % 8,
} as const;

/** Drop policies; the index is the code in Slot.POLICY and in the trace file's thread records. */
export const POLICIES = ['drop-oldest', 'drop-newest'] as const;
export type DropPolicy = (typeof POLICIES)[number];
export const policyCode = (policy: DropPolicy): number => POLICIES.indexOf(policy);
/** The policy of a code, or undefined for a code no version of ringtrace writes. */
export const policyOf = (code: number): DropPolicy | undefined => POLICIES[code];

/** Ring descriptor, Float64 indices: what the writer hands over with a ring. */
export const Desc = {
  /** head, tail, wrapEnd packed as numbers (byte offsets in the ring; wrapEnd -1 if linear). */
  HEAD: 0,
  TAIL: 1,
  WRAP_END: 2,
  SUBMITTED_AT_NS: 3,
  ATTEMPTED: 4,
  /** Events in [HEAD, TAIL) of a linear ring, NaN when the drain must count them (a circular
   * ring, or one it scraped); with LAST_TS it spares the drain a scan of the ring. */
  EVENTS: 5,
  /** Time of the ring's last record (the first is read at HEAD). */
  LAST_TS: 6,
  /** Snapshot of the writer loss block at hand-off (cumulative counts, ranges since last one). */
  LOSS: 8,
} as const;
export const DESC_WORDS = Desc.LOSS + LOSS_BLOCK_WORDS;
export const DESC_BYTES = DESC_WORDS * 8;

export const MAX_RINGS_PER_THREAD = 64;
export const MIN_RING_SIZE = 4096;
export const MAX_RING_SIZE = 16 * 1024 * 1024;

export interface Geometry {
  readonly maxThreads: number;
  readonly ringsPerThread: number;
  readonly ringSize: number;
}

const align = (n: number, a: number): number => Math.ceil(n / a) * a;

/**
 * Byte offsets of every region, computed once from the geometry. All regions are 8-byte aligned
 * so one Int32Array, one Float64Array and one BigInt64Array over the whole buffer address them.
 */
export class Layout implements Geometry {
  readonly maxThreads: number;
  readonly ringsPerThread: number;
  readonly ringSize: number;
  /** BigInt64 index of the retired ledger. */
  readonly ledgerI64 = CONTROL_BYTES / 8;
  readonly nameTableOffset = CONTROL_BYTES + LEDGER_BYTES;
  readonly priorityTableOffset = this.nameTableOffset + NAME_TABLE_ENTRIES * NAME_ENTRY_BYTES;
  readonly slotsOffset: number;
  readonly slotHeaderBytes: number;
  /** Byte offsets, within a slot header, of the submit queue (the free queue follows it). */
  readonly queuesOffsetInSlot: number;
  readonly descOffsetInSlot: number;
  readonly ringsOffset: number;
  readonly totalBytes: number;

  constructor(g: Geometry) {
    this.maxThreads = g.maxThreads;
    this.ringsPerThread = g.ringsPerThread;
    this.ringSize = g.ringSize;
    this.slotsOffset = this.priorityTableOffset + PRIORITY_TABLE_BYTES;
    // Fixed part, then the two queues (sized by ringsPerThread), then the ring descriptors.
    this.queuesOffsetInSlot = align(SLOT_FIXED_BYTES, 8);
    this.descOffsetInSlot = align(this.queuesOffsetInSlot + 2 * this.ringsPerThread * 4, 8);
    this.slotHeaderBytes = align(this.descOffsetInSlot + this.ringsPerThread * DESC_BYTES, 64);
    this.ringsOffset = align(this.slotsOffset + this.maxThreads * this.slotHeaderBytes, 64);
    this.totalBytes = this.ringsOffset + this.maxThreads * this.ringsPerThread * this.ringSize;
  }

  slotOffset(slot: number): number {
    return this.slotsOffset + slot * this.slotHeaderBytes;
  }
  /** Int32 index of a slot header word. */
  slotI32(slot: number, word: number): number {
    return (this.slotOffset(slot) >> 2) + word;
  }
  /** Int32 index of the first submit queue entry; the free queue follows it. */
  submitQueueI32(slot: number): number {
    return (this.slotOffset(slot) + this.queuesOffsetInSlot) >> 2;
  }
  freeQueueI32(slot: number): number {
    return this.submitQueueI32(slot) + this.ringsPerThread;
  }
  /** Float64 (and BigInt64) index of a slot header 8-byte word. */
  slotF64(slot: number, word: number): number {
    return (this.slotOffset(slot) >> 3) + word;
  }
  descF64(slot: number, ring: number, word: number): number {
    return ((this.slotOffset(slot) + this.descOffsetInSlot + ring * DESC_BYTES) >> 3) + word;
  }
  nameBytesOffset(slot: number): number {
    return this.slotOffset(slot) + SlotF64.NAME * 8;
  }
  ringOffset(slot: number, ring: number): number {
    return this.ringsOffset + (slot * this.ringsPerThread + ring) * this.ringSize;
  }
  nameEntryOffset(entry: number): number {
    return this.nameTableOffset + entry * NAME_ENTRY_BYTES;
  }

  /** Every region of the buffer, in bytes, for checkRegions(). */
  regions(): Region[] {
    const out: Region[] = [
      { name: 'control', start: 0, bytes: CONTROL_BYTES },
      { name: 'ledger', start: this.ledgerI64 * 8, bytes: LEDGER_BYTES },
      { name: 'names', start: this.nameTableOffset, bytes: NAME_TABLE_ENTRIES * NAME_ENTRY_BYTES },
      { name: 'priorities', start: this.priorityTableOffset, bytes: PRIORITY_TABLE_BYTES },
    ];
    for (let slot = 0; slot < this.maxThreads; slot++) {
      const at = this.slotOffset(slot);
      out.push(
        { name: `slot${slot}.fixed`, start: at, bytes: SLOT_FIXED_BYTES },
        { name: `slot${slot}.queues`, start: at + this.queuesOffsetInSlot, bytes: 2 * this.ringsPerThread * 4 },
        { name: `slot${slot}.descriptors`, start: at + this.descOffsetInSlot, bytes: this.ringsPerThread * DESC_BYTES },
      );
      for (let ring = 0; ring < this.ringsPerThread; ring++) {
        out.push({ name: `slot${slot}.ring${ring}`, start: this.ringOffset(slot, ring), bytes: this.ringSize });
      }
    }
    return out;
  }
}

/** Typed views over one shared buffer; every module addresses memory through these. */
export class SharedViews {
  readonly i32: Int32Array;
  readonly u32: Uint32Array;
  readonly f64: Float64Array;
  readonly i64: BigInt64Array;
  readonly u8: Uint8Array;
  constructor(
    readonly buffer: SharedArrayBuffer,
    readonly layout: Layout,
  ) {
    this.i32 = new Int32Array(buffer);
    this.u32 = new Uint32Array(buffer);
    this.f64 = new Float64Array(buffer);
    this.i64 = new BigInt64Array(buffer);
    this.u8 = new Uint8Array(buffer);
  }
}

/** Writes the control block of a fresh buffer (before it is shared: no ordering needed). */
export function initControl(v: SharedViews, epochMs: number, clockZeroMs: number): void {
  const { i32, f64, layout } = v;
  i32[Ctl.MAGIC] = LAYOUT_MAGIC;
  i32[Ctl.VERSION] = LAYOUT_VERSION;
  i32[Ctl.MAX_THREADS] = layout.maxThreads;
  i32[Ctl.RINGS_PER_THREAD] = layout.ringsPerThread;
  i32[Ctl.RING_SIZE] = layout.ringSize;
  f64[Ctl.F64_SESSION_START_EPOCH_MS] = epochMs;
  f64[Ctl.F64_CLOCK_ZERO_MS] = clockZeroMs;
}

/** Checks that a buffer handed to another thread is one of ours, with this layout version. */
export function checkControl(v: SharedViews): void {
  const { i32, layout } = v;
  if (i32[Ctl.MAGIC] !== LAYOUT_MAGIC) throw new Error('ringtrace: shared buffer has a wrong magic number');
  if (i32[Ctl.VERSION] !== LAYOUT_VERSION) {
    throw new Error(`ringtrace: shared layout version ${i32[Ctl.VERSION]} != ${LAYOUT_VERSION}`);
  }
  if (
    i32[Ctl.MAX_THREADS] !== layout.maxThreads ||
    i32[Ctl.RINGS_PER_THREAD] !== layout.ringsPerThread ||
    i32[Ctl.RING_SIZE] !== layout.ringSize
  ) {
    throw new Error('ringtrace: shared buffer geometry does not match the handle');
  }
}

/** A region of a structure, in bytes from the structure's start. */
export interface Region {
  readonly name: string;
  readonly start: number;
  readonly bytes: number;
}

/** Throws unless the regions lie within [0, endBytes) and no two overlap. */
export function checkRegions(struct: string, regions: readonly Region[], endBytes: number): void {
  const sorted = [...regions].sort((a, b) => a.start - b.start);
  sorted.forEach((r, i) => {
    if (r.start < 0 || r.start + r.bytes > endBytes) {
      throw new Error(`ringtrace layout: ${struct}.${r.name} [${r.start}, ${r.start + r.bytes}) lies outside [0, ${endBytes})`);
    }
    const next = sorted[i + 1];
    if (next && r.start + r.bytes > next.start) {
      throw new Error(
        `ringtrace layout: ${struct}.${r.name} [${r.start}, ${r.start + r.bytes}) overlaps ${struct}.${next.name} at ${next.start}`,
      );
    }
  });
}

/** Regions of a table of word indices: `wordBytes` a word, `sizes` words for the multi-word ones. */
export const wordRegions = (table: Record<string, number>, wordBytes: number, sizes: Record<string, number> = {}): Region[] =>
  Object.entries(table).map(([name, word]) => ({ name, start: word * wordBytes, bytes: (sizes[name] ?? 1) * wordBytes }));

/** The fixed structures, checked once when the module loads: a new word or reason that makes two
 * regions overlap fails at the first import, not as corrupt counts in production. */
function checkFixedLayout(): void {
  const ctlI32 = Object.fromEntries(Object.entries(Ctl).filter(([k]) => !k.startsWith('F64_')));
  const ctlF64 = Object.fromEntries(Object.entries(Ctl).filter(([k]) => k.startsWith('F64_')));
  checkRegions('Ctl', [...wordRegions(ctlI32, 4), ...wordRegions(ctlF64, 8)], CONTROL_BYTES);
  const ledgerCopy = { ...Ledger } as Record<string, number>;
  checkRegions(
    'Ledger',
    wordRegions(ledgerCopy, 8, {
      REASON_EVENTS: REASON_COUNT,
      REASON_BYTES: REASON_COUNT,
      EDGES: EDGE_COUNT,
      TIME_IN_STATE_US: STATE_COUNT,
      PRIORITY_EVENTS: PRIORITY_COUNT,
      SHADOW: LEDGER_WORDS,
    }),
    LEDGER_BYTES,
  );
  const { NAME, ...slotF64 } = SlotF64;
  checkRegions(
    'Slot',
    [
      ...wordRegions(Slot, 4, { EDGES: EDGE_COUNT }),
      ...wordRegions(SlotI64, 8, { TIME_IN_STATE: STATE_COUNT }),
      ...wordRegions(slotF64, 8, { WRITER_LOSS: LOSS_BLOCK_WORDS, DRAIN_LOSS: LOSS_BLOCK_WORDS, TLOG: 2 * TRANSITION_LOG_ENTRIES }),
      { name: 'NAME', start: NAME * 8, bytes: THREAD_NAME_MAX_BYTES },
    ],
    SLOT_FIXED_BYTES,
  );
  checkRegions('Slot (Int32 part)', wordRegions(Slot, 4, { EDGES: EDGE_COUNT }), W8 * 8);
  checkRegions('Desc', wordRegions(Desc, 8, { LOSS: LOSS_BLOCK_WORDS }), DESC_BYTES);
  checkRegions(
    'NameEntry',
    [...wordRegions({ ...NameEntry, BYTES_OFFSET: 0 }, 4), { name: 'BYTES', start: NameEntry.BYTES_OFFSET, bytes: NAME_MAX_BYTES }].filter(
      (r) => r.name !== 'BYTES_OFFSET',
    ),
    NAME_ENTRY_BYTES,
  );
}
checkFixedLayout();
