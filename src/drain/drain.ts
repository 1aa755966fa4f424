/**
 * The drain: the single consumer of every slot's submit queue and producer of its free queue.
 * One `pass()` visits every registered slot once: threads under pressure first, then the rest
 * round-robin from a rotating start, at most `batchRings` rings each, so one busy thread cannot
 * starve the others. It writes each ring as a chunk, returns the ring, moves recovery edges of
 * the backpressure machine (so idle threads recover too), and retires closed or dead threads.
 *
 * The drain never blocks a writer: it only takes rings already handed over, and a failing sink
 * costs the chunk (counted as `sink_error`), never the ring.
 */
import { BackpressureState, BpState, STATE_NAMES, edgeIndex, type BpStateValue, type Thresholds } from '../shm/backpressure.js';
import {
  Ctl,
  ControlFlag,
  Desc,
  Loss,
  TransitionCode,
  isUnclaimed,
  lossAt,
  PRIORITIES,
  PRIORITY_COUNT,
  noPriorities,
  REASONS,
  REASON_COUNT,
  Reason,
  ScrapeWord,
  Slot,
  SlotF64,
  SlotState,
  TLOG_CURSOR_MASK,
  TRANSITION_LOG_ENTRIES,
  type DropReason,
  type SharedViews,
} from '../shm/layout.js';
import {
  EndReason,
  chunkIdentity,
  chunkRecord,
  footerRecord,
  nameRecord,
  stateRecord,
  threadEndRecord,
  threadStartRecord,
  type ChunkIdentity,
  type TraceSink,
} from '../file/format.js';
import { addLoss, hasLoss, mergeLoss, newLossBlock, type LossBlock } from '../shm/loss.js';
import { NameTable } from '../shm/names.js';
import { poolQueues, type PoolQueues } from '../shm/pool.js';
import { freeSlot, publishRetired, readThreadName, wipeRings } from '../shm/registry.js';
import { threadFromSlot, type RegistrationSummary } from '../metrics/metrics.js';
import { retireIntoLedger } from '../shm/ledger.js';
import { extentRuns, scanRecords, type RingExtent, type ScanResult } from '../shm/ring.js';

import type { LogLevel } from '../logger.js';

/** What the drain keeps per reason of a registration's losses: events, bytes, events per priority. */
const CUM_WORDS = 2 + PRIORITY_COUNT;
export type DrainLog = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

export interface DrainOptions {
  batchRings: number;
  thresholds: Thresholds;
  dropLogIntervalMs: number;
  dropLogEvery: number;
  /** ns on the tracer clock. */
  now: () => number;
  log: DrainLog;
  /** Copy a live writer's committed records once they have waited this long (ms) in its active
   * ring without being handed over (a thread whose event loop does not run); Infinity: only at
   * the tracer's close. */
  scrapeAfterMs?: number;
  /** Told of each registration the drain retires (closed or exited thread). */
  onRetired?: (summary: RegistrationSummary) => void;
}

interface BatchEntry {
  reg: Registration;
  /** Ring to return after the write; -1 for a dead thread's active ring (the slot is wiped). */
  ring: number;
  events: number;
  bytes: number;
  firstTs: number;
  lastTs: number;
  /** The losses the chunk reports (restored to pending if the write fails). */
  loss: LossBlock;
  /** False when the ring held nothing worth a chunk (it is only returned). */
  written: boolean;
}

/** What the drain knows of one registration (one thread's use of one slot). */
interface Registration {
  registration: number;
  slot: number;
  name: string;
  queues: PoolQueues;
  bp: BackpressureState;
  seq: number;
  /** Writer loss counts already accounted, from the last ring: per reason CUM_WORDS numbers
   * (events, bytes, events per priority). */
  writerCum: Float64Array;
  /** Drain-side loss counts (events, bytes per reason at the same stride), cumulative. */
  drainCum: Float64Array;
  /** Losses not yet reported in a chunk. */
  pending: LossBlock;
  eventsWritten: number;
  bytesWritten: number;
  tlogHead: number;
  /** Repeated in each of its chunks, so a damaged THREAD_START does not orphan them. */
  identity: ChunkIdentity;
  /** The last look at the active ring: its Slot.SCRAPE word and committed end, and when. */
  seenWord: number;
  seenTail: number;
  seenAtNs: number;
  /** When to look at the active ring next (ns): looks load the writer's ACTIVE_TAIL, so they are
   * paced (once a scrape period), not made at every visit. */
  nextLookNs: number;
  /** The configured thresholds with the writer's adaptive raise (Slot.THRESHOLD_RAISE) applied. */
  marks: Thresholds;
  /** Average ring service time, hand-over to return (ns), published to the writer in µs. */
  serviceNs: number;
}

/** A retired registration: its final counts, and its backpressure history and pool counters as
 * metrics() showed them. */
export interface DrainSummary {
  /** The footer and every end record reached the file. */
  complete: boolean;
  threads: RegistrationSummary[];
  events: number;
  dropped: number;
  droppedAfterClose: number;
  sinkErrors: number;
}

export class Drain {
  private readonly regs: Array<Registration | undefined>;
  private readonly finished: RegistrationSummary[] = [];
  private out: Uint8Array[] = [];
  /** Chunks taken in this visit, written together by flushBatch(). */
  private batch: BatchEntry[] = [];
  private batchBuffers: Uint8Array[] = [];
  private rr = 0;
  private readonly served: Uint8Array;
  private namesWritten = new Set<number>();
  private readonly scan: ScanResult = { events: 0, bytes: 0, firstTs: NaN, lastTs: NaN, badOffset: -1 };
  private sinkErrors = 0;
  /** Bytes handed to the sink so far (for the throttle). */
  bytesOut = 0;
  private lastSinkError = '';
  private droppedTotal = 0;
  /** Scratch: one reason's events per priority, from the writer's block to the pending one. */
  private readonly priorityDelta = new Float64Array(PRIORITY_COUNT);
  private droppedAtLastLog = 0;
  private lastDropLogNs = -Infinity;
  /** The earliest time (ns) something is due without a doorbell, found by the last pass. */
  private nextDueNs = Infinity;
  private readonly lookNs: number;

  constructor(
    private readonly v: SharedViews,
    private readonly sink: TraceSink,
    private readonly opts: DrainOptions,
  ) {
    this.regs = new Array(v.layout.maxThreads).fill(undefined);
    this.served = new Uint8Array(v.layout.maxThreads);
    this.lookNs = (opts.scrapeAfterMs ?? Infinity) * 1e6;
  }

  /** Queues bytes to go out before the next chunk (small records: names, threads, states). */
  emit(buffers: Uint8Array[]): void {
    for (const b of buffers) this.out.push(b);
  }

  /**
   * Visits every slot once. `final` ignores the pause (close drains everything). Returns true if
   * anything was done, so an idle drain can sleep.
   */
  pass(final = false): boolean {
    const { i32, layout } = this.v;
    Atomics.add(i32, Ctl.DRAIN_HEARTBEAT, 1);
    // Read the request count before the flag: pauseDrain() counts, then sets the flag, so a
    // paused pass has seen every request up to `requests` and honours it to its end.
    const requests = Atomics.load(i32, Ctl.PAUSE_REQUESTS);
    const paused = !final && (Atomics.load(i32, Ctl.FLAGS) & ControlFlag.DRAIN_PAUSED) !== 0;
    if (paused) Atomics.store(i32, Ctl.PAUSE_ACK, requests);
    let worked = false;
    this.nextDueNs = Infinity;
    const n = layout.maxThreads;
    const start = this.rr;
    this.rr = (this.rr + 1) % n;
    // Threads under pressure first, then everyone (those already served are skipped).
    const served = this.served;
    served.fill(0);
    for (let round = 0; round < 2; round++) {
      for (let k = 0; k < n; k++) {
        const slot = (start + k) % n;
        if (served[slot]) continue;
        const st = Atomics.load(i32, layout.slotI32(slot, Slot.STATE));
        if (isUnclaimed(st)) {
          this.regs[slot] = undefined;
          continue;
        }
        const reg = this.registrationOf(slot);
        if (round === 0) {
          const s = reg.bp.state();
          if (s !== BpState.PRESSURE && s !== BpState.DROPPING) continue;
        }
        served[slot] = 1;
        if (this.visit(reg, st, paused, final)) worked = true;
      }
    }
    this.flushOut();
    this.maybeLogDrops();
    return worked;
  }

  private registrationOf(slot: number): Registration {
    const { i32, layout } = this.v;
    const registration = i32[layout.slotI32(slot, Slot.REGISTRATION)];
    const known = this.regs[slot];
    if (known && known.registration === registration) return known;
    const name = readThreadName(this.v, slot);
    const nodeThreadId = i32[layout.slotI32(slot, Slot.NODE_THREAD_ID)];
    const policy = i32[layout.slotI32(slot, Slot.POLICY)];
    const reg: Registration = {
      registration,
      slot,
      name,
      queues: poolQueues(i32, layout, slot),
      bp: new BackpressureState(i32, this.v.i64, layout, slot, (from, to, atUs) => {
        this.readTransitionLog(reg); // the writer's earlier transitions go first
        this.stateChanged(reg, from, to, atUs * 1000);
      }),
      seq: 0,
      writerCum: new Float64Array(REASON_COUNT * CUM_WORDS),
      drainCum: new Float64Array(REASON_COUNT * CUM_WORDS),
      pending: newLossBlock(),
      eventsWritten: 0,
      bytesWritten: 0,
      tlogHead: Atomics.load(i32, layout.slotI32(slot, Slot.TLOG_HEAD)),
      identity: chunkIdentity(slot, nodeThreadId, policy, name),
      seenWord: -1,
      seenTail: 0,
      seenAtNs: 0,
      nextLookNs: 0,
      marks: this.liveMarks(slot),
      serviceNs: 0,
    };
    this.regs[slot] = reg;
    this.emit(
      threadStartRecord({
        thread: registration,
        slot,
        nodeThreadId,
        name,
        ts: this.v.f64[layout.slotF64(slot, SlotF64.REGISTERED_AT)],
        policy,
      }),
    );
    this.opts.log('debug', 'thread registered', { thread: registration, slot, name });
    return reg;
  }

  private visit(reg: Registration, st: number, paused: boolean, final: boolean): boolean {
    let worked = this.readTransitionLog(reg);
    if (!paused) {
      const limit = final || st !== SlotState.LIVE ? Infinity : this.opts.batchRings;
      for (let taken = 0; taken < limit; taken++) {
        const ring = reg.queues.submit.pop();
        if (ring < 0) break;
        this.takeSubmitted(reg, ring);
        worked = true;
      }
      if (st === SlotState.LIVE && this.look(reg)) worked = true;
      this.flushBatch();
    }
    const now = this.opts.now();
    reg.bp.checkRecovery(reg.queues.free, reg.marks, now / 1000);
    this.dueAt(reg.bp.recoveryDueUs(this.opts.thresholds, now / 1000) * 1000);
    if (paused) return worked;
    if (st === SlotState.CLOSING) {
      this.retire(reg, EndReason.CLOSED, false);
      return true;
    }
    if (st === SlotState.ORPHANED) {
      this.salvage(reg);
      this.retire(reg, EndReason.EXITED, false);
      return true;
    }
    return worked;
  }

  /** Turns one handed-over ring into a chunk of the current batch; the ring goes back to the
   * writer once the batch is written (its bytes are written straight from shared memory). */
  private takeSubmitted(reg: Registration, ring: number): void {
    const { f64, layout } = this.v;
    const d = layout.descF64(reg.slot, ring, 0);
    const extent: RingExtent = { head: f64[d + Desc.HEAD], tail: f64[d + Desc.TAIL], wrapEnd: f64[d + Desc.WRAP_END] };
    this.accountWriterLoss(reg, d + Desc.LOSS);
    const lag = (this.opts.now() - f64[d + Desc.SUBMITTED_AT_NS]) / 1e6;
    f64[layout.slotF64(reg.slot, SlotF64.DRAIN_LAG_LAST_MS)] = lag;
    const maxIdx = layout.slotF64(reg.slot, SlotF64.DRAIN_LAG_MAX_MS);
    if (lag > f64[maxIdx]) f64[maxIdx] = lag;
    const base = layout.ringOffset(reg.slot, ring);
    const events = f64[d + Desc.EVENTS];
    if (Number.isNaN(events) || extent.wrapEnd >= 0) {
      this.addChunk(reg, base, extent, ring, f64[d + Desc.ATTEMPTED]);
      return;
    }
    // A linear ring whose count the writer published: no scan; the CRC is the one pass over its
    // bytes (the reader checks the count against the records).
    const s = this.resetScan();
    s.events = events;
    s.bytes = extent.tail - extent.head;
    if (events > 0) {
      s.firstTs = f64[((base + extent.head) >> 3) + 1];
      s.lastTs = f64[d + Desc.LAST_TS];
    }
    const payload = s.bytes > 0 ? [this.v.u8.subarray(base + extent.head, base + extent.tail)] : [];
    this.queueChunk(reg, ring, payload, f64[d + Desc.ATTEMPTED]);
  }

  /** Adds the writer's losses since the last ring (descriptor or live block at `lossIdx`). */
  private accountWriterLoss(reg: Registration, lossIdx: number): void {
    const f64 = this.v.f64;
    const cum = reg.writerCum;
    const byPriority = this.priorityDelta;
    for (let r = 0; r < REASON_COUNT; r++) {
      const at = lossAt(lossIdx, r);
      const c = r * CUM_WORDS;
      const events = f64[at + Loss.EVENTS] - cum[c];
      const bytes = f64[at + Loss.BYTES] - cum[c + 1];
      if (events === 0 && bytes === 0) continue;
      cum[c] = f64[at + Loss.EVENTS];
      cum[c + 1] = f64[at + Loss.BYTES];
      for (let p = 0; p < PRIORITY_COUNT; p++) {
        byPriority[p] = f64[at + Loss.BY_PRIORITY + p] - cum[c + 2 + p];
        cum[c + 2 + p] = f64[at + Loss.BY_PRIORITY + p];
      }
      addLoss(reg.pending, r, events, bytes, f64[at + Loss.FIRST_TS], f64[at + Loss.LAST_TS], byPriority);
      this.droppedTotal += events;
    }
  }

  private addDrainLoss(reg: Registration, reason: number, events: number, bytes: number, firstTs: number, lastTs: number): void {
    if (events === 0 && bytes === 0) return;
    addLoss(reg.pending, reason, events, bytes, firstTs, lastTs);
    reg.drainCum[reason * CUM_WORDS] += events;
    reg.drainCum[reason * CUM_WORDS + 1] += bytes;
    const f64 = this.v.f64;
    const at = lossAt(this.v.layout.slotF64(reg.slot, SlotF64.DRAIN_LOSS), reason);
    f64[at + Loss.EVENTS] = reg.drainCum[reason * CUM_WORDS];
    f64[at + Loss.BYTES] = reg.drainCum[reason * CUM_WORDS + 1];
    this.droppedTotal += events;
  }

  /**
   * Scans a ring's records and queues them as a chunk (with the losses pending for the thread).
   * `attempted` is the thread's count when it handed the ring over: then every earlier event is
   * in this or an earlier chunk or counted as dropped (NaN for a dead thread's active ring, whose
   * in-flight events are only known at its end record).
   */
  private addChunk(reg: Registration, base: number, extent: RingExtent, ring: number, attempted: number): void {
    const { u32, f64, u8 } = this.v;
    const s = this.resetScan();
    const payload: Uint8Array[] = [];
    for (const [from, to] of extentRuns(extent)) {
      s.badOffset = -1;
      scanRecords(u32, f64, base + from, base + to, s);
      const good = s.badOffset >= 0 ? from + s.badOffset : to;
      if (good > from) payload.push(u8.subarray(base + from, base + good));
      if (s.badOffset >= 0) {
        // Only a writer bug can get here: a handed-over ring is whole records by construction.
        this.opts.log('error', 'malformed records in a ring; kept the valid prefix', { thread: reg.registration, offset: good });
        break;
      }
    }
    this.queueChunk(reg, ring, payload, attempted);
  }

  private resetScan(): ScanResult {
    const s = this.scan;
    s.events = 0;
    s.bytes = 0;
    s.firstTs = NaN;
    s.lastTs = NaN;
    s.badOffset = -1;
    return s;
  }

  /** Queues the records just scanned (this.scan), in `payload`, as a chunk of the batch. */
  private queueChunk(reg: Registration, ring: number, payload: Uint8Array[], attempted: number): void {
    const s = this.scan;
    const entry: BatchEntry = {
      reg,
      ring,
      events: s.events,
      bytes: s.bytes,
      firstTs: s.firstTs,
      lastTs: s.lastTs,
      loss: reg.pending,
      written: false,
    };
    this.batch.push(entry);
    if (s.events === 0 && !hasLoss(reg.pending)) return; // nothing to say: just return the ring
    entry.written = true;
    const head = {
      thread: reg.registration,
      seq: reg.seq,
      events: s.events,
      firstTs: s.firstTs,
      lastTs: s.lastTs,
      attempted,
      dropped: this.droppedOf(reg),
    };
    for (const b of chunkRecord(head, reg.identity, reg.pending, payload)) {
      this.batchBuffers.push(b);
    }
    // Optimistic: undone by flushBatch() if the write fails.
    reg.seq++;
    reg.eventsWritten += s.events;
    reg.bytesWritten += s.bytes;
    reg.pending = newLossBlock();
  }

  /** Scrapes the writer's active ring if a look is due; schedules the next look. */
  private look(reg: Registration): boolean {
    const now = this.opts.now();
    let worked = false;
    if (now >= reg.nextLookNs) {
      worked = this.scrapeActive(reg, false);
      reg.nextLookNs = now + this.lookNs;
    }
    this.dueAt(reg.nextLookNs);
    return worked;
  }

  /** Something must be done at `ns` (tracer clock) even if no writer rings the doorbell. */
  private dueAt(ns: number): void {
    if (ns < this.nextDueNs) this.nextDueNs = ns;
  }

  /**
   * Milliseconds the drain may sleep before something is due without a doorbell: a scrape look,
   * the end of a thread's RECOVERY stability period, a drop report. Infinity when nothing is.
   * Valid after a pass that found nothing to do.
   */
  msUntilDue(): number {
    return Math.max(0, (this.nextDueNs - this.opts.now()) / 1e6);
  }

  /**
   * Copies the committed records of a live writer's active ring that the writer has not handed
   * over, and queues them as a chunk; the rest of the ring follows when the writer hands it over
   * (from where this copy ended). Protocol, on the Slot.SCRAPE word (see ScrapeWord):
   * 1. Acquire-load the word: it names the ring generation whose cursors the writer stored before
   *    it. CLOSED: the writer has taken the ring back; nothing to do.
   * 2. Rings submitted before it go first: the writer pushed them before storing the word, so a
   *    non-empty submit queue here means they were not written yet; try again next pass.
   * 3. Not at close: copy only what was committed at the previous look, at least `scrapeAfterMs`
   *    ago (a thread whose event loop runs hands its ring over by then; and records that old are
   *    visible to this thread whatever the CPU's store order, see architecture.md).
   * 4. BUSY by compare-exchange, copy [offset, to) out of shared memory, then exchange BUSY for the
   *    new offset. If the writer closed the word meanwhile, that exchange fails and the copy is
   *    dropped: the writer hands over from the old offset, so every record is written once.
   */
  private scrapeActive(reg: Registration, final: boolean): boolean {
    const { i32, u8, layout } = this.v;
    const wordIdx = layout.slotI32(reg.slot, Slot.SCRAPE);
    const word = Atomics.load(i32, wordIdx); // acquire: this generation's ring cursors
    if ((word & (ScrapeWord.CLOSED | ScrapeWord.BUSY)) !== 0) return false;
    if (reg.queues.submit.size() > 0) return false;
    const tail = Atomics.load(i32, layout.slotI32(reg.slot, Slot.ACTIVE_TAIL));
    const from = ScrapeWord.offset(word);
    let to = tail;
    if (!final) {
      const now = this.opts.now();
      if (word !== reg.seenWord || tail < reg.seenTail) {
        reg.seenWord = word;
        reg.seenTail = tail;
        reg.seenAtNs = now;
        return false;
      }
      if (!(now - reg.seenAtNs >= (this.opts.scrapeAfterMs ?? Infinity) * 1e6)) return false;
      to = reg.seenTail;
      reg.seenTail = tail;
      reg.seenAtNs = now;
    }
    if (to <= from) return false;
    const busy = word | ScrapeWord.BUSY;
    if (Atomics.compareExchange(i32, wordIdx, word, busy) !== word) return false;
    const ring = Atomics.load(i32, layout.slotI32(reg.slot, Slot.ACTIVE_RING));
    if (ring < 0 || Atomics.load(i32, layout.slotI32(reg.slot, Slot.ACTIVE_TAIL)) < to) {
      Atomics.compareExchange(i32, wordIdx, busy, word); // a cursor from another generation: not now
      return false;
    }
    const base = layout.ringOffset(reg.slot, ring);
    const copy = u8.slice(base + from, base + to); // the writer may rewrite the ring once it closes the word
    const s = this.resetScan();
    scanRecords(new Uint32Array(copy.buffer), new Float64Array(copy.buffer), 0, copy.length, s);
    const good = s.badOffset >= 0 ? s.badOffset : copy.length;
    const next = ScrapeWord.of(ScrapeWord.generation(word), from + good, 0);
    // The copy is ours only if the writer did not close the word while it was made.
    if (Atomics.compareExchange(i32, wordIdx, busy, next) !== busy) return false;
    reg.seenWord = next;
    if (good === 0) return false;
    this.queueChunk(reg, -1, [copy.subarray(0, good)], NaN);
    return true;
  }

  /**
   * Writes the queued small records and chunks with one vectored write, then gives the rings
   * back. If the write fails, nothing of it is in the file (the sink cuts it off): each chunk's
   * events are counted as `sink_error`, the losses it would have reported go back to pending,
   * and the rings are returned all the same so that no thread stalls on a broken disk.
   */
  private flushBatch(): void {
    if (this.batch.length === 0) return;
    this.syncNames();
    const { f64, layout } = this.v;
    const buffers = this.out.length > 0 ? this.out.concat(this.batchBuffers) : this.batchBuffers;
    let failed = false;
    try {
      if (buffers.length > 0) this.sink.write(buffers);
      for (const b of buffers) this.bytesOut += b.length;
      this.out = [];
    } catch (err) {
      failed = true;
      this.sinkFailed(err);
    }
    for (let i = this.batch.length - 1; i >= 0; i--) {
      const e = this.batch[i];
      if (failed && e.written) {
        // Undo, newest first, so each thread ends where it was before the batch.
        const reg = e.reg;
        reg.seq--;
        reg.eventsWritten -= e.events;
        reg.bytesWritten -= e.bytes;
        mergeLoss(e.loss, reg.pending);
        reg.pending = e.loss;
        this.addDrainLoss(reg, Reason.SINK_ERROR, e.events, e.bytes, e.firstTs, e.lastTs);
      }
    }
    for (const e of this.batch) {
      const { reg } = e;
      f64[layout.slotF64(reg.slot, SlotF64.EVENTS_WRITTEN)] = reg.eventsWritten;
      f64[layout.slotF64(reg.slot, SlotF64.BYTES_WRITTEN)] = reg.bytesWritten;
      f64[layout.slotF64(reg.slot, SlotF64.CHUNKS_WRITTEN)] = reg.seq;
      if (e.ring < 0) continue;
      this.measureService(reg, e.ring);
      // Release (inside push): the ring is the writer's again; we no longer touch it.
      if (!reg.queues.free.push(e.ring)) throw new Error('ringtrace: internal error: free queue full (ring accounting broken)');
    }
    this.batch = [];
    this.batchBuffers = [];
  }

  /** A slot's marks, the PRESSURE mark as its writer last raised it (Slot.THRESHOLD_RAISE), read
   * when a decision reads it: checkRecovery does after it loads the state word (see writer.takeRing). */
  private liveMarks(slot: number): Thresholds {
    const th = this.opts.thresholds;
    const i32 = this.v.i32;
    const idx = this.v.layout.slotI32(slot, Slot.THRESHOLD_RAISE);
    return {
      ...th,
      get pressureSpares() {
        return th.pressureSpares + Atomics.load(i32, idx);
      },
    };
  }

  /** Before a ring goes back: how long it was away (hand-over to return), averaged per thread
   * (weight 1/4) for the writer's adaptive marks. Read before the push: after it the writer may
   * reuse the descriptor. */
  private measureService(reg: Registration, ring: number): void {
    const { f64, i32, layout } = this.v;
    const away = this.opts.now() - f64[layout.descF64(reg.slot, ring, Desc.SUBMITTED_AT_NS)];
    if (!(away >= 0)) return; // a clock step back, or no stamp
    reg.serviceNs = reg.serviceNs === 0 ? away : reg.serviceNs + (away - reg.serviceNs) / 4;
    Atomics.store(i32, layout.slotI32(reg.slot, Slot.SERVICE_US), Math.min(0x7fffffff, Math.max(1, Math.round(reg.serviceNs / 1000))));
  }

  private sinkFailed(err: unknown): void {
    this.sinkErrors++;
    Atomics.add(this.v.i32, Ctl.SINK_ERRORS, 1);
    const msg = err instanceof Error ? err.message : String(err);
    if (msg !== this.lastSinkError) {
      this.lastSinkError = msg;
      this.opts.log('error', 'trace sink write failed; the chunk is counted as sink_error', {
        error: msg,
        code: (err as NodeJS.ErrnoException)?.code,
      });
    }
  }

  /** Writes out the small records queued so far (if the sink fails they stay queued). */
  private flushOut(): void {
    this.syncNames();
    if (this.out.length === 0) return;
    try {
      this.sink.write(this.out);
      this.out = [];
    } catch (err) {
      this.sinkFailed(err);
    }
  }

  /** Name records for names defined since the last look (before the chunks that use them). */
  syncNames(): void {
    if (NameTable.definedCount(this.v) === this.namesWritten.size) return;
    for (const { id, name, priority } of NameTable.readyEntries(this.v, (id) => this.namesWritten.has(id))) {
      this.namesWritten.add(id);
      this.emit(nameRecord(id, name, priority));
    }
  }

  /** Writer-side transitions, in order, from the slot's transition log. */
  private readTransitionLog(reg: Registration): boolean {
    const { i32, f64, layout } = this.v;
    const tail = Atomics.load(i32, layout.slotI32(reg.slot, Slot.TLOG_TAIL)); // acquire: entries below are written
    if (tail === reg.tlogHead) return false;
    const base = layout.slotF64(reg.slot, SlotF64.TLOG);
    for (let h = reg.tlogHead; h !== tail; h = (h + 1) & TLOG_CURSOR_MASK) {
      const e = base + 2 * (h % TRANSITION_LOG_ENTRIES);
      const code = f64[e + 1];
      this.stateChanged(reg, TransitionCode.from(code) as BpStateValue, TransitionCode.to(code) as BpStateValue, f64[e]);
    }
    reg.tlogHead = tail;
    Atomics.store(i32, layout.slotI32(reg.slot, Slot.TLOG_HEAD), tail); // release: entries reusable
    return true;
  }

  private stateChanged(reg: Registration, from: BpStateValue, to: BpStateValue, tsNs: number): void {
    if (edgeIndex(from, to) < 0) return;
    this.emit(stateRecord(reg.registration, from, to, tsNs));
    const level = to === BpState.DROPPING ? 'warn' : 'info';
    this.opts.log(level, `backpressure ${STATE_NAMES[from]} -> ${STATE_NAMES[to]}`, {
      thread: reg.registration,
      name: reg.name,
      slot: reg.slot,
      ts: tsNs,
    });
  }

  /** A dead thread's active ring: its committed records go to the file, as the thread left them. */
  private salvage(reg: Registration): void {
    const { i32, layout } = this.v;
    const s = (w: number) => i32[layout.slotI32(reg.slot, w)];
    // Everything the thread handed over first (order matters for the loss deltas).
    for (let ring = reg.queues.submit.pop(); ring >= 0; ring = reg.queues.submit.pop()) this.takeSubmitted(reg, ring);
    this.accountWriterLoss(reg, layout.slotF64(reg.slot, SlotF64.WRITER_LOSS));
    const active = s(Slot.ACTIVE_RING);
    if (active >= 0) {
      const extent: RingExtent = { head: s(Slot.ACTIVE_HEAD), tail: s(Slot.ACTIVE_TAIL), wrapEnd: s(Slot.ACTIVE_WRAP_END) };
      // While linear, [0, offset) was scraped already: the word holds that offset (also while the
      // writer closes it, until ACTIVE_HEAD does; then the word's offset is 0).
      const scraped = ScrapeWord.offset(s(Slot.SCRAPE));
      if (extent.wrapEnd < 0 && scraped > extent.head) extent.head = scraped;
      this.addChunk(reg, layout.ringOffset(reg.slot, active), extent, -1, NaN);
    }
    this.flushBatch();
  }

  /** Ends a registration: events attempted but neither written nor dropped are counted as
   * `thread_exit` (a dead thread) or `unflushed` (a live one the close could not reach), the end
   * record is written, and (unless the thread still lives: `seized`) the slot is released. */
  private retire(reg: Registration, endReason: number, seized: boolean): void {
    const { f64, layout } = this.v;
    for (let ring = reg.queues.submit.pop(); ring >= 0; ring = reg.queues.submit.pop()) this.takeSubmitted(reg, ring);
    this.flushBatch();
    // Writer loss before attempted: the writer counts an event as attempted before it counts its
    // drop, so (loads in program order) every drop seen here is inside the attempted count.
    this.accountWriterLoss(reg, layout.slotF64(reg.slot, SlotF64.WRITER_LOSS));
    const attempted = f64[layout.slotF64(reg.slot, SlotF64.ATTEMPTED)];
    const unaccounted = attempted - reg.eventsWritten - this.droppedOf(reg);
    if (unaccounted > 0) {
      // Events a thread recorded but never handed over: in flight when it died, or still in a live
      // thread's ring when the tracer closed without reaching it.
      const reason = endReason === EndReason.EXITED ? Reason.THREAD_EXIT : Reason.UNFLUSHED;
      this.addDrainLoss(reg, reason, unaccounted, 0, NaN, NaN);
    } else if (unaccounted < 0) {
      this.opts.log('error', 'accounting mismatch: more events written and dropped than attempted', {
        thread: reg.registration,
        attempted,
        excess: -unaccounted,
      });
    }
    const end = threadEndRecord(
      { thread: reg.registration, endReason, ts: this.opts.now(), attempted, eventsWritten: reg.eventsWritten },
      reg.pending,
    );
    this.emit(end);
    this.flushOut();
    const summary = this.summarize(reg, attempted, endReason);
    this.finished.push(summary);
    this.regs[reg.slot] = undefined;
    if (!seized) wipeRings(this.v, reg.slot);
    // The registration leaves its slot and enters the ledger in one step, so metrics() counts
    // it once. A seized writer learns how many of its events were accounted here (RETIRED) and
    // counts the rest as `closed`.
    retireIntoLedger(this.v, reg.slot, summary, () => (seized ? publishRetired(this.v, reg.slot, attempted) : freeSlot(this.v, reg.slot)));
    this.opts.onRetired?.(summary);
  }

  /** A writer seized at close (it did not close itself: blocked, or busy elsewhere): what it
   * handed over, then what it committed in its active ring, go to the file before it is retired. */
  private collectSeized(reg: Registration): void {
    for (let ring = reg.queues.submit.pop(); ring >= 0; ring = reg.queues.submit.pop()) this.takeSubmitted(reg, ring);
    this.scrapeActive(reg, true);
    this.flushBatch();
  }

  private droppedOf(reg: Registration): number {
    let n = 0;
    for (let r = 0; r < REASON_COUNT; r++) n += reg.writerCum[r * CUM_WORDS] + reg.drainCum[r * CUM_WORDS];
    return n;
  }

  private summarize(reg: Registration, attempted: number, endReason: number): RegistrationSummary {
    const byReason: Partial<Record<DropReason, number>> = {};
    const bytesByReason: Partial<Record<DropReason, number>> = {};
    let bytesDropped = 0;
    const byPriority = noPriorities();
    for (let r = 0; r < REASON_COUNT; r++) {
      const c = r * CUM_WORDS;
      const n = reg.writerCum[c] + reg.drainCum[c];
      const bytes = reg.writerCum[c + 1] + reg.drainCum[c + 1];
      PRIORITIES.forEach((p, i) => (byPriority[p] += reg.writerCum[c + 2 + i]));
      if (n > 0) byReason[REASONS[r]] = n;
      if (bytes > 0) bytesByReason[REASONS[r]] = bytes;
      bytesDropped += bytes;
    }
    const dropped = this.droppedOf(reg);
    // The slot's counters, read before it is wiped or handed back.
    const slotView = threadFromSlot(this.v, reg.slot, this.opts.now() / 1000);
    return {
      thread: reg.registration,
      name: reg.name,
      slot: reg.slot,
      attempted,
      events: reg.eventsWritten,
      dropped,
      bytesDropped,
      droppedByReason: byReason,
      bytesDroppedByReason: bytesByReason,
      droppedByPriority: byPriority,
      endReason: endReason === EndReason.CLOSED ? 'closed' : endReason === EndReason.EXITED ? 'exited' : 'tracer_closed',
      balanced: attempted === reg.eventsWritten + dropped,
      policy: slotView.policy,
      transitions: slotView.transitions,
      timeInStateMs: slotView.timeInStateMs,
      exhaustions: slotView.exhaustions,
      swaps: slotView.swaps,
      freeSparesMin: slotView.freeSparesMin,
      chunksWritten: slotView.chunksWritten,
      drainLagMs: slotView.drainLagMs,
      predictedPressureEntries: slotView.predictedPressureEntries,
    };
  }

  private maybeLogDrops(): void {
    const now = this.opts.now();
    const fresh = this.droppedTotal - this.droppedAtLastLog;
    if (fresh < this.opts.dropLogEvery || fresh <= 0) return;
    const dueNs = this.lastDropLogNs + this.opts.dropLogIntervalMs * 1e6;
    if (now < dueNs) return this.dueAt(dueNs);
    this.lastDropLogNs = now;
    this.droppedAtLastLog = this.droppedTotal;
    this.opts.log('warn', `dropped ${fresh} events since the last report`, { dropped: fresh, total: this.droppedTotal });
  }

  /**
   * The tracer is closing: take everything, even while paused, retire every registration (live
   * threads that did not close in time end as `tracer_closed`, what they still held counted as
   * `unflushed`), write the footer and close the sink.
   */
  finish(): DrainSummary {
    const { i32, layout } = this.v;
    this.pass(true);
    for (let slot = 0; slot < layout.maxThreads; slot++) {
      const stateIdx = layout.slotI32(slot, Slot.STATE);
      let st = Atomics.load(i32, stateIdx);
      if (isUnclaimed(st)) continue;
      if (st === SlotState.LIVE) {
        // Seize a writer that is still live, so that its own close() cannot hand over a ring
        // after our last look: it fails its LIVE -> CLOSING exchange and waits for RETIRED. If it
        // won the race (CLOSING) or died (ORPHANED), it ends the ordinary way.
        const prev = Atomics.compareExchange(i32, stateIdx, SlotState.LIVE, SlotState.RETIRING);
        st = prev === SlotState.LIVE ? SlotState.RETIRING : prev;
      }
      const reg = this.registrationOf(slot);
      this.readTransitionLog(reg);
      if (st === SlotState.ORPHANED) this.salvage(reg);
      if (st === SlotState.RETIRING) this.collectSeized(reg);
      const seized = st === SlotState.RETIRING;
      this.retire(
        reg,
        st === SlotState.CLOSING ? EndReason.CLOSED : st === SlotState.ORPHANED ? EndReason.EXITED : EndReason.TRACER_CLOSED,
        seized,
      );
    }
    const threads = this.finished.slice().sort((a, b) => a.thread - b.thread);
    let events = 0;
    let dropped = 0;
    for (const t of threads) {
      events += t.events;
      dropped += t.dropped;
    }
    const droppedAfterClose = Atomics.load(i32, Ctl.CLOSED_DROPS);
    this.emit(footerRecord({ threads: threads.length, events, dropped, droppedAfterClose, ts: this.opts.now() }));
    this.flushOut();
    if (this.out.length > 0) this.flushOut(); // one retry: a transient error should not cost the footer
    const complete = this.out.length === 0;
    this.sink.close();
    return { complete, threads, events, dropped, droppedAfterClose, sinkErrors: this.sinkErrors };
  }
}
