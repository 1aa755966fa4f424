/**
 * A thread's writer: the only code on the per-event path.
 *
 * `record()` is a bounds check, three or four plain typed-array stores into the active ring and
 * two plain stores that publish the committed end and the attempted count for salvage. Anything
 * rare (the ring is full, the pool is exhausted, the record is too large, the writer is closed)
 * goes to `slowPath()`, which V8 keeps out of line. While the pool is exhausted `limit` is pulled
 * down to `pos`, so every event takes the slow path, where a plain load tells whether a spare ring
 * came back before anything costlier is tried.
 *
 * Priorities cost nothing in NORMAL either: an event's priority is a property of its id (the
 * priority table, see names.ts), looked up on the slow path only. When a swap finds the thread
 * under pressure with priorities in use, the writer becomes *gated*: `limit` is pinned to the
 * ring's start, so every event takes the slow path, where `admit()` sheds debug events and, once
 * the pool is down to the critical reserve, refuses everything but critical events. With pressure
 * sampling on, a swap outside NORMAL also picks N (sampleRate) and, if N > 1, gates the writer so
 * that `admit()` keeps about 1 in N normal instants, values and payloads. The next swap
 * that finds the thread NORMAL again (the periodic flush swaps a producing thread's ring at least
 * once a flush interval) un-gates it.
 */
import { performance } from 'node:perf_hooks';
import { BackpressureState, BpState, type BpStateValue, type Thresholds } from '../shm/backpressure.js';
import { PoolForecast, swapStep } from './forecast.js';
import type { DropPolicy } from '../config.js';
import { NameTable } from '../shm/names.js';
import {
  Ctl,
  ControlFlag,
  Desc,
  LOSS_BLOCK_WORDS,
  Loss,
  MAX_NAMES,
  Prio,
  TransitionCode,
  lossAt,
  Reason,
  ScrapeWord,
  Slot,
  SlotF64,
  SlotState,
  TLOG_CURSOR_MASK,
  TRANSITION_LOG_ENTRIES,
  type SharedViews,
} from '../shm/layout.js';
import { poolQueues, type SpscQueue } from '../shm/pool.js';
import {
  BEGIN_WORD,
  END_WORD,
  INSTANT_WORD,
  MAX_PAYLOAD_BYTES,
  RECORD_HEADER_BYTES,
  RecordKind,
  SPAN_BYTES,
  SPAN_VALUE_BYTES,
  VALUE_RECORD_BYTES,
  VALUE_WORD,
  bytesRecordSize,
  evictOneForOne,
  makeRoomEvictingOldest,
  type CircularCursor,
  PUBLISHED_HEAD,
  PUBLISHED_WRAP_END,
} from '../shm/ring.js';
import { clearLossTimes, countDrop, hasLossTimes } from '../shm/loss.js';

// makeRoomEvictingOldest publishes (tail, head, wrapEnd) as three consecutive slot words.
if (Slot.ACTIVE_HEAD !== Slot.ACTIVE_TAIL + PUBLISHED_HEAD || Slot.ACTIVE_WRAP_END !== Slot.ACTIVE_TAIL + PUBLISHED_WRAP_END) {
  throw new Error('ringtrace: slot cursor words out of step with ring.ts');
}

/** While exhausted with no spare coming back, check every this many events whether the tracer closed. */
const CLOSED_CHECK_EVERY = 1024;
/** How long a writer's close() waits for a drain that seized its slot to say what it accounted. */
const RETIRE_WAIT_MS = 5000;

/** Target of the copy check of an empty payload (copies nothing). */
const NO_BYTES = new Uint8Array(0);

/** What a writer needs from its tracer. */
export interface WriterContext {
  views: SharedViews;
  thresholds: Thresholds;
  /** Add to performance.now() to get ms since the tracer's clock zero. */
  clockOffsetMs: number;
  flushIntervalMs: number;
}

export class Writer {
  // Hot fields first; the class keeps one shape for its whole life so V8 can inline record().
  private readonly u32: Uint32Array;
  /** The shared buffer, until close(): then a private scratch array, so that a closed writer's
   * per-event store of `attempted` can never touch the slot's next owner. */
  private f64: Float64Array;
  private readonly i32: Int32Array;
  private readonly u8: Uint8Array;
  /** Absolute byte offset of the next record. */
  private pos = 0;
  /** Absolute byte offset the next record must end at or before; == pos forces the slow path. */
  private limit = 0;
  /** Absolute byte offset of the active ring, -1 while the writer holds none. */
  private ringBase = -1;
  private readonly tailIdx: number;
  private attemptedIdx: number;
  private attempted = 0;
  private lastTs = 0;
  /** The attempted count when the active ring was taken, and events counted since that did not go
   * into it (too large for any ring): the ring's event count at hand-off, without a scan. */
  private ringStartAttempted = 0;
  private ringSkipped = 0;
  private readonly clockOffsetMs: number;

  // Cold state.
  private activeRing = 0;
  private exhausted = false;
  private closed = false;
  private readonly ringSize: number;
  private readonly submitQ: SpscQueue;
  private readonly freeQ: SpscQueue;
  private readonly bp: BackpressureState;
  private readonly circ: CircularCursor;
  private readonly evict: (bytes: number, ts: number, id: number) => void;
  /** Every event takes the slow path, where its priority decides (see admit()). */
  private gated = false;
  /** Debug events are shed (the thread is not NORMAL and some name is debug). */
  private shedDebug = false;
  /** Only critical events are kept: the spares left are the critical reserve. */
  private reserved = false;
  /** The refusals of this reserved period were reported to the state machine (-> DROPPING). */
  private reserveDropping = false;
  /** The critical reserve in effect (0 until some name is critical), set at each swap. */
  private reserveRings = 0;
  /** Pressure sampling: 1 in `sampleEvery` normal events is kept (1: all), set at each swap. */
  private sampleEvery = 1;
  /** Normal events still to let go (`sampled`) before the next one is kept. */
  private sampleSkip = 0;
  /** xorshift32 state for the jitter of the sampling spacing. */
  private sampleRng: number;
  /** Per-swap moving averages (see sampleRate): the rings' worth of events recorded, and the
   * spare rings that came back. */
  private demandAvg = 1;
  private returnAvg = 1;
  /** Free spares just after the previous swap took one. */
  private lastFree = -1;
  /** Fill and return rates, adaptive marks and predictive entry (forecast.ts), at each swap. */
  private readonly forecast: PoolForecast;
  private readonly raiseIdx: number;
  private readonly serviceIdx: number;
  private readonly predictedIdx: number;
  private readonly dropNewest: boolean;
  private readonly lossBase: number;
  /** The periodic flush: armed only while the thread produces (see armFlush). */
  private timer: NodeJS.Timeout | undefined;
  private flushArmed = false;
  /** Generation of the active ring in the Slot.SCRAPE word (see ScrapeWord). */
  private scrapeGen = 0;
  private readonly scrapeIdx: number;
  private tooLargeWarned = false;
  private closedCheckCountdown = CLOSED_CHECK_EVERY;
  /** Events refused after close(): they belong to no registration any more. */
  droppedAfterClose = 0;
  /** Span ids: registration * 2^32 + a per-writer count (see beginAsync). */
  private spanSeq = 0;
  private readonly spanScratch = new Float64Array(2);
  private readonly spanBytes = new Uint8Array(this.spanScratch.buffer, 0, SPAN_BYTES);
  private readonly spanValueBytes = new Uint8Array(this.spanScratch.buffer, 0, SPAN_VALUE_BYTES);

  constructor(
    private readonly ctx: WriterContext,
    readonly slot: number,
    readonly registration: number,
    readonly name: string,
    readonly policy: DropPolicy,
  ) {
    const v = ctx.views;
    const L = v.layout;
    this.u32 = v.u32;
    this.f64 = v.f64;
    this.i32 = v.i32;
    this.u8 = v.u8;
    this.ringSize = L.ringSize;
    this.clockOffsetMs = ctx.clockOffsetMs;
    this.tailIdx = L.slotI32(slot, Slot.ACTIVE_TAIL);
    this.scrapeIdx = L.slotI32(slot, Slot.SCRAPE);
    this.attemptedIdx = L.slotF64(slot, SlotF64.ATTEMPTED);
    this.lossBase = L.slotF64(slot, SlotF64.WRITER_LOSS);
    this.dropNewest = policy === 'drop-newest';
    this.sampleRng = (Math.imul(registration + 1, 0x9e3779b9) | 1) >>> 0; // never 0: xorshift would stay there
    this.forecast = new PoolForecast(ctx.thresholds);
    this.raiseIdx = L.slotI32(slot, Slot.THRESHOLD_RAISE);
    this.serviceIdx = L.slotI32(slot, Slot.SERVICE_US);
    this.predictedIdx = L.slotI32(slot, Slot.PREDICTED_ENTRIES);
    const q = poolQueues(v.i32, L, slot);
    this.submitQ = q.submit;
    this.freeQ = q.free;
    this.bp = new BackpressureState(v.i32, v.i64, L, slot, (from, to, atUs) => this.logTransition(from, to, atUs));
    this.activeRing = v.i32[L.slotI32(slot, Slot.ACTIVE_RING)];
    this.ringBase = L.ringOffset(slot, this.activeRing);
    this.pos = this.ringBase;
    this.limit = this.ringBase + this.ringSize;
    this.circ = { base: 0, size: this.ringSize, head: 0, tail: 0, wrapEnd: -1 };
    // Drop-oldest's per-eviction accounting, specialised (it runs once per dropped event): the
    // loss words of `pool_exhausted` in the shared buffer (a closed writer never evicts).
    const lf = v.f64;
    const u8 = v.u8;
    const prioAt = L.priorityTableOffset;
    const at = lossAt(this.lossBase, Reason.POOL_EXHAUSTED);
    this.evict = (bytes, ts, id) => {
      lf[at + Loss.EVENTS]++;
      lf[at + Loss.BYTES] += bytes;
      lf[at + Loss.BY_PRIORITY + (id > 0 && id <= MAX_NAMES ? u8[prioAt + id] : Prio.NORMAL)]++;
      if (!(lf[at + Loss.FIRST_TS] <= ts)) lf[at + Loss.FIRST_TS] = ts; // NaN: first since the hand-off
      lf[at + Loss.LAST_TS] = ts; // evicted oldest first: each is the latest so far
    };
    this.setPriorityMode(this.freeQ.size());
    this.armFlush();
    // A drain with no live thread sleeps for drainIdleMs: wake it, so that its scrape looks at this
    // thread start now (one that records, then blocks, is scraped within two flush intervals).
    this.ringDoorbell();
  }

  /**
   * Arms the periodic flush, from the slow path only (registration, a swap, an exhaustion). It
   * fires once a `flushIntervalMs` while the thread has something not yet handed over and stops
   * at the first tick that finds nothing: an idle thread costs no wake-ups. Records made later
   * without a swap are collected by the drain's scrape look, within two flush intervals.
   */
  private armFlush(): void {
    if (this.flushArmed || this.closed || !(this.ctx.flushIntervalMs > 0)) return;
    this.flushArmed = true;
    if (this.timer) this.timer.refresh();
    else {
      this.timer = setTimeout(() => this.tick(), this.ctx.flushIntervalMs);
      this.timer.unref();
    }
  }

  private tick(): void {
    this.flushArmed = false;
    const pending = (this.ringBase >= 0 && this.pos !== this.ringBase) || this.dropsSinceHandOff();
    this.periodic();
    // Flushed: look once more next interval (the thread may still be producing); else idle.
    if (pending) this.armFlush();
  }

  /** Nanoseconds since the tracer's clock zero, on the clock shared by all threads. */
  now(): number {
    return (performance.now() + this.clockOffsetMs) * 1e6;
  }

  /** Backpressure times come from the tracer's clock, never from a caller's timestamp (a
   * recordAt() far in the future would otherwise hold the thread's state timing there). Slow
   * path only: swaps and exhaustion. */
  private clockUs(): number {
    return (performance.now() + this.clockOffsetMs) * 1e3;
  }

  /** Records an instant (or, with a value, a counter sample) stamped now. False if not kept. */
  record(id: number, value?: number): boolean {
    return this.recordAt((performance.now() + this.clockOffsetMs) * 1e6, id, value);
  }

  /** As record(), with a timestamp the caller already has (ns, from tracer.now()). Timestamps
   * are non-decreasing per thread: an earlier ts (or NaN) is raised to the thread's last one, so
   * a ts ahead of the clock holds the thread's later events at it. Not validated further: one
   * comparison is all the hot path affords. */
  recordAt(ts: number, id: number, value?: number): boolean {
    // A difference, not a comparison: a BigInt ts throws here (compared, it would pass and become
    // the thread's last ts, which every later store would then choke on).
    if (!(ts - this.lastTs >= 0)) ts = this.lastTs; // also a NaN ts
    const p = this.pos;
    // The stores that can throw (a BigInt id or value) come before the event is counted, so a
    // call that throws is not an attempt. The count is stored before the commit (the tail):
    // salvage must never find an event that is not counted.
    if (value === undefined) {
      if (p + RECORD_HEADER_BYTES > this.limit) return this.recordSlow(ts, id, INSTANT_WORD, RECORD_HEADER_BYTES, undefined);
      this.u32[p >> 2] = INSTANT_WORD;
      this.u32[(p >> 2) + 1] = id;
      this.f64[(p >> 3) + 1] = ts;
      this.lastTs = ts; // after the fit check: until a record is written, lastTs is the ring's last
      const attempted = this.attempted + 1;
      this.attempted = attempted;
      this.f64[this.attemptedIdx] = attempted;
      this.pos = p + RECORD_HEADER_BYTES;
      this.i32[this.tailIdx] = p + RECORD_HEADER_BYTES - this.ringBase;
    } else {
      if (p + VALUE_RECORD_BYTES > this.limit) return this.recordSlow(ts, id, VALUE_WORD, VALUE_RECORD_BYTES, value);
      this.u32[p >> 2] = VALUE_WORD;
      this.u32[(p >> 2) + 1] = id;
      this.f64[(p >> 3) + 1] = ts;
      this.f64[(p >> 3) + 2] = value;
      this.lastTs = ts;
      const attempted = this.attempted + 1;
      this.attempted = attempted;
      this.f64[this.attemptedIdx] = attempted;
      this.pos = p + VALUE_RECORD_BYTES;
      this.i32[this.tailIdx] = p + VALUE_RECORD_BYTES - this.ringBase;
    }
    return true;
  }

  /** recordAt's slow path. The record is stored after queue work there, so what could make its
   * stores throw is converted first (ToUint32, ToNumber, as the stores do), then the event counted. */
  private recordSlow(ts: number, id: number, word0: number, size: number, value: number | undefined): boolean {
    id = id >>> 0;
    if (value !== undefined) value = +value;
    this.countAttempt();
    return this.slowPath(ts, id, word0, size, undefined, value);
  }

  private countAttempt(): void {
    const attempted = this.attempted + 1;
    this.attempted = attempted;
    this.f64[this.attemptedIdx] = attempted;
  }

  /** Records an event carrying a byte payload (copied). */
  recordBytes(id: number, payload: Uint8Array): boolean {
    if (!(payload instanceof Uint8Array)) throw new TypeError('ringtrace: recordBytes(id, payload) needs a Uint8Array payload');
    // What would make the copy throw is refused before the event is counted: a view of a
    // transferred (detached) or shrunk buffer reads as empty, and copying it throws.
    if (payload.length === 0) {
      try {
        NO_BYTES.set(payload);
      } catch {
        throw new TypeError('ringtrace: recordBytes(id, payload): the payload is a view of a detached (transferred) or shrunk buffer');
      }
    }
    id = id >>> 0;
    const ts = this.now();
    this.countAttempt();
    return this.put(this.stamp(ts), id, payload);
  }

  /** Opens a slice (Chrome trace "B"); pair with end(id) on the same thread. */
  begin(id: number): boolean {
    return this.marker(BEGIN_WORD, id);
  }

  /** Closes the innermost open slice. */
  end(id: number): boolean {
    return this.marker(END_WORD, id);
  }

  /**
   * Opens an async span (Chrome trace "b"/"e" with an id: its own track in Perfetto, not this
   * thread's stack) and returns its id, unique in the trace: the registration number (unique per
   * tracer, never reused with a slot) times 2^32 plus this writer's count of spans. End it with
   * endAsync(span) on any thread's writer. The id is returned even if the begin was not kept (it
   * is counted as dropped like any event), so the end can still be recorded.
   */
  beginAsync(id: number, value?: number): number {
    id = id >>> 0; // as the store does; a BigInt id or value throws here, before anything is counted
    if (value !== undefined) value = +value;
    const span = this.registration * 2 ** 32 + (this.spanSeq = (this.spanSeq + 1) % 2 ** 32);
    const s = this.spanScratch;
    s[0] = span;
    if (value === undefined) this.spanRecord(RecordKind.ASYNC_BEGIN, id, this.spanBytes);
    else {
      s[1] = value;
      this.spanRecord(RecordKind.ASYNC_BEGIN, id, this.spanValueBytes);
    }
    return span;
  }

  /** Ends an async span that beginAsync() opened on this or any other thread. `id` (optional)
   * names the end record, for a reader that lost the begin. False if the event was not kept. */
  endAsync(span: number, id = 0xffffffff): boolean {
    return this.spanWord(RecordKind.ASYNC_END, span, id);
  }

  /** Records that this thread's work from now belongs to `span` (a flow arrow from the span's
   * begin in Perfetto, bound to the slice enclosing this point). False if not kept. */
  link(span: number, id = 0xffffffff): boolean {
    return this.spanWord(RecordKind.LINK, span, id);
  }

  private spanWord(kind: number, span: number, id: number): boolean {
    id = id >>> 0;
    this.spanScratch[0] = +span;
    return this.spanRecord(kind, id, this.spanBytes);
  }

  /** A span record: the header and the bytes of spanScratch, through the bytes path. */
  private spanRecord(kind: number, id: number, bytes: Uint8Array): boolean {
    this.countAttempt();
    const ts = this.stamp(this.now());
    const word0 = (kind << 24) | bytes.length;
    const size = RECORD_HEADER_BYTES + bytes.length;
    const p = this.pos;
    if (p + size > this.limit) return this.slowPath(ts, id, word0, size, bytes, undefined);
    this.writeRecord(p, word0, id, ts, undefined, bytes);
    return true;
  }

  private marker(word0: number, id: number): boolean {
    id = id >>> 0; // as the store does; a BigInt throws here, before the event is counted
    this.countAttempt();
    const ts = this.stamp(this.now());
    const p = this.pos;
    if (p + RECORD_HEADER_BYTES > this.limit) return this.slowPath(ts, id, word0, RECORD_HEADER_BYTES, undefined, undefined);
    this.writeRecord(p, word0, id, ts, undefined, undefined);
    return true;
  }

  /** `ts`, raised to the thread's last record's time. The raise is kept (lastTs stored) by the
   * record's write, so that at a hand-off lastTs is the handed-over ring's last record. */
  private stamp(ts: number): number {
    return ts >= this.lastTs ? ts : this.lastTs;
  }

  private put(ts: number, id: number, payload: Uint8Array): boolean {
    const len = payload.length;
    if (this.closed) return this.dropClosed();
    if (len > MAX_PAYLOAD_BYTES) return this.dropTooLarge(bytesRecordSize(len), ts, NameTable.priorityOf(this.ctx.views, id));
    const size = bytesRecordSize(len);
    const word0 = (RecordKind.BYTES << 24) | len;
    const p = this.pos;
    if (p + size > this.limit) return this.slowPath(ts, id, word0, size, payload, undefined);
    this.writeRecord(p, word0, id, ts, undefined, payload);
    return true;
  }

  /** Writes a whole record at p (which has room) and commits it. */
  private writeRecord(p: number, word0: number, id: number, ts: number, value: number | undefined, payload: Uint8Array | undefined): void {
    this.u32[p >> 2] = word0;
    this.u32[(p >> 2) + 1] = id;
    this.f64[(p >> 3) + 1] = ts;
    this.lastTs = ts;
    let end = p + RECORD_HEADER_BYTES;
    if (value !== undefined) {
      this.f64[(p >> 3) + 2] = value;
      end += 8;
    } else if (payload !== undefined) {
      this.u8.set(payload, end);
      const padded = end + ((payload.length + 7) & ~7);
      this.u8.fill(0, end + payload.length, padded);
      end = padded;
    }
    this.pos = end;
    this.i32[this.tailIdx] = end - this.ringBase;
  }

  // ---------------------------------------------------------------- slow path (out of line)

  private slowPath(
    ts: number,
    id: number,
    word0: number,
    size: number,
    payload: Uint8Array | undefined,
    value: number | undefined,
  ): boolean {
    if (this.closed) return this.dropClosed();
    const prio = NameTable.priorityOf(this.ctx.views, id); // a plain load (see names.ts)
    if (size > this.ringSize) return this.dropTooLarge(size, ts, prio);
    if (this.gated) {
      if (!this.admit(prio, size, ts, word0)) return false;
      // Gated, the fast path never writes: the record may well fit in the active ring.
      if (!this.exhausted && this.ringBase >= 0 && this.pos + size <= this.ringBase + this.ringSize) {
        this.writeRecord(this.pos, word0, id, ts, value, payload);
        return true;
      }
    }
    // The per-event cost while exhausted is this branch and one plain load: the atomic checks
    // happen only when the writer is about to touch a queue.
    if (!this.exhausted) {
      if (this.tracerClosed()) return false;
      if (!this.swap(1, prio)) {
        if (prio !== Prio.CRITICAL && this.reserveRings > 0 && this.freeQ.size() > 0) return this.enterReserve(prio, size, ts, word0);
        this.enterExhausted();
      }
      this.armFlush();
    } else if (this.freeQ.hintNonEmpty()) {
      if (this.tracerClosed()) return false;
      this.leaveExhausted(1);
      this.armFlush();
    } else if (--this.closedCheckCountdown <= 0) {
      // No spare is coming back; maybe because the tracer closed (a thread too busy to see the
      // close request): look now and then, not at every dropped event.
      this.closedCheckCountdown = CLOSED_CHECK_EVERY;
      if (this.tracerClosed()) return false;
    }
    if (!this.exhausted) {
      if (this.gated && !this.admit(prio, size, ts, word0)) return false; // the swap found the thread in pressure
      if (this.pos + size > this.ringBase + this.ringSize) throw new Error('ringtrace: internal error: fresh ring has no room'); // size <= ringSize
      this.writeRecord(this.pos, word0, id, ts, value, payload);
      return true;
    }
    if (this.dropNewest) {
      this.countDrop(Reason.POOL_EXHAUSTED, size, ts, prio);
      this.lastTs = ts; // no ring: later events are still held at it
      return false;
    }
    // drop-oldest: make room in the active ring by evicting its oldest whole records. With a
    // critical reserve in use the ring holds critical events only: nothing else may evict them.
    if (this.reserved && prio !== Prio.CRITICAL) return this.refuse(Reason.POOL_EXHAUSTED, prio, size, ts);
    const c = this.circ;
    let at = evictOneForOne(c, size, this.u32, this.f64, this.i32, this.tailIdx, this.evict);
    if (at < 0) at = makeRoomEvictingOldest(c, size, this.u32, this.f64, this.i32, this.tailIdx, this.evict);
    this.writeRecord(at, word0, id, ts, value, payload);
    c.tail = this.pos;
    this.limit = this.pos;
    return true;
  }

  // ---------------------------------------------------------------- priorities (slow path only)

  /**
   * Gated: may an event of priority `prio` (record word `word0`) be kept at all? A refused one is
   * counted here (`shed`, `sampled`, `pool_exhausted`). While
   * reserved, each refusal first looks (plain loads) whether spares came back above the reserve;
   * if so the reserve is lifted and the event goes on like any other.
   */
  private admit(prio: number, size: number, ts: number, word0: number): boolean {
    if (this.reserved && prio !== Prio.CRITICAL) {
      if (this.freeQ.hintSize() <= this.reserveRings) {
        if (!this.reserveDropping) {
          // The first refusal of this reserved period: the pool is exhausted for this event.
          this.reserveDropping = true;
          this.i32[this.ctx.views.layout.slotI32(this.slot, Slot.EXHAUSTIONS)]++;
          this.bp.onExhausted(this.clockUs());
        }
        return this.refuse(Reason.POOL_EXHAUSTED, prio, size, ts);
      }
      this.reserved = this.reserveDropping = false;
      this.regate();
    }
    // Shed while the writer holds a ring; holding none (drop-newest, exhausted) everything is
    // refused for want of room anyway, and counted so.
    if (this.shedDebug && prio === Prio.DEBUG && this.ringBase >= 0) return this.refuse(Reason.SHED, prio, size, ts);
    // Sampling: a normal event is kept, then the next ones are let go until one of about every
    // `sampleEvery` has been kept. The spacing is jittered (ceil(N/2) .. ceil(N/2) + N - 1 events),
    // so that a pattern in the application's events (every 4th of a name) cannot alias with it;
    // a run of events let go is still shorter than 2N.
    // Only instants, values and byte payloads are sampled: a slice's begin and end, and a span's
    // records, stay paired (they are kept or lost as before sampling).
    if (prio === Prio.NORMAL && this.sampleEvery > 1 && this.ringBase >= 0 && word0 >>> 24 <= RecordKind.BYTES) {
      if (this.sampleSkip > 0) {
        this.sampleSkip--;
        return this.refuse(Reason.SAMPLED, prio, size, ts);
      }
      let x = this.sampleRng;
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      this.sampleRng = x;
      const n = this.sampleEvery;
      this.sampleSkip = ((n + 1) >> 1) - 1 + ((x >>> 0) % n);
    }
    return true;
  }

  /** A non-critical event found the active ring full and only the critical reserve left: it is
   * refused, and so is every non-critical event until spares come back above the reserve. The
   * full ring stays active (a critical event hands it over when it needs room). */
  private enterReserve(prio: number, size: number, ts: number, word0: number): boolean {
    this.reserved = true;
    this.reserveDropping = false;
    this.regate();
    return this.admit(prio, size, ts, word0);
  }

  /** Counts a refused event. The active ring (if any) does not hold it: it is skipped in the
   * ring's event count, and lastTs stays the ring's last record's. */
  private refuse(reason: number, prio: number, size: number, ts: number): boolean {
    this.countDrop(reason, size, ts, prio);
    this.ringSkipped++;
    return false;
  }

  /** Pins `limit` (every event to the slow path) while gated, else opens the active ring again.
   * An exhausted writer keeps its own limit (see enterExhausted). */
  private regate(): void {
    this.gated = this.shedDebug || this.reserved || this.sampleEvery > 1;
    if (this.exhausted || this.ringBase < 0) return;
    this.limit = this.gated ? this.ringBase : this.ringBase + this.ringSize;
  }

  /** At each ring change: which priority rules apply until the next one. The drain may move the
   * state back to NORMAL in between; the writer notices at its next swap. */
  private setPriorityMode(free: number): void {
    const i32 = this.i32;
    this.reserveRings = Atomics.load(i32, Ctl.CRITICAL_NAMES) > 0 ? (this.ctx.thresholds.criticalReserveRings ?? 0) : 0;
    const pressed = this.bp.state() !== BpState.NORMAL;
    this.shedDebug = pressed && Atomics.load(i32, Ctl.DEBUG_NAMES) > 0;
    this.sampleEvery = pressed && this.ctx.thresholds.sampling === true ? this.sampleRate(free) : 1;
    if (this.sampleSkip >= 2 * this.sampleEvery - 1) this.sampleSkip = 2 * this.sampleEvery - 2; // a lower rate takes effect now
    const reserved = free < this.reserveRings; // a critical event took a reserved ring
    if (!reserved) this.reserveDropping = false;
    this.reserved = reserved;
    this.regate();
  }

  /**
   * At each swap (`free`: the spares left after taking one): how fast the thread uses rings
   * against how fast they come back. `attempts` is
   * what the thread recorded into the ring it hands over (kept, sampled, shed or refused), so
   * `attempts / kept` is that ring's worth of demand in rings, whatever its sampling; the spares
   * that came back since the previous swap are the rise in the free count (plus the one taken).
   * Both are averaged over swaps (weight 1/2: a burst is followed within two or three swaps).
   */
  private measureRates(free: number, attempts: number): void {
    if (this.lastFree >= 0) {
      const kept = attempts - this.ringSkipped;
      const demand = kept > 0 ? Math.min(attempts / kept, 4096) : 1;
      const returned = Math.max(0, free - this.lastFree + 1);
      this.demandAvg = (this.demandAvg + demand) / 2;
      this.returnAvg = (this.returnAvg + returned) / 2;
    }
    this.lastFree = free;
  }

  /**
   * N for sampling until the next swap: the rate at which rings are needed over the rate at which
   * they come back (what keeps the spare count level), with a margin that doubles for each spare
   * below pressureSpares (the fewer left, the sooner they must come back). 1 when the drain keeps
   * up; at most samplingMaxEvery (a paused drain returns none).
   */
  private sampleRate(free: number): number {
    const th = this.ctx.thresholds;
    const margin = 1.25 * 2 ** Math.max(0, this.forecast.marks.pressureSpares - free);
    const n = Math.ceil((margin * this.demandAvg) / Math.max(this.returnAvg, 1e-9));
    return Math.max(1, Math.min(th.samplingMaxEvery ?? 64, n));
  }

  /** Slow path: if the tracer has closed, close this writer; the event being recorded is
   * refused (and counted, see handOver). Checked only before queue operations (and now and then
   * while exhausted), never per event. */
  private tracerClosed(): boolean {
    if ((Atomics.load(this.i32, Ctl.FLAGS) & ControlFlag.CLOSED) === 0) return false;
    this.handOver(true);
    return true;
  }

  /** Hands the active ring to the drain and takes a spare. False (nothing changed) if none, or if
   * only the critical reserve is left and the event being recorded (of priority `prio`; flushes
   * pass critical) is not critical. */
  private swap(inFlight: 0 | 1, prio: number): boolean {
    if (prio !== Prio.CRITICAL && this.reserveRings > 0 && this.freeQ.size() <= this.reserveRings) return false;
    const next = this.freeQ.pop();
    if (next < 0) return false;
    if (this.ringBase >= 0) this.submitActive(inFlight);
    this.takeRing(next, inFlight);
    return true;
  }

  /** Makes `ring` the active ring; `inFlight` 1 when the event being recorded will go into it. */
  private takeRing(ring: number, inFlight: 0 | 1): void {
    const L = this.ctx.views.layout;
    const free = this.freeQ.size();
    this.measureRates(free, this.attempted - inFlight - this.ringStartAttempted);
    this.ringStartAttempted = this.attempted - inFlight;
    this.ringSkipped = 0;
    this.activeRing = ring;
    this.ringBase = L.ringOffset(this.slot, ring);
    this.pos = this.ringBase;
    this.limit = this.ringBase + this.ringSize;
    this.exhausted = false;
    this.i32[L.slotI32(this.slot, Slot.ACTIVE_HEAD)] = 0;
    this.i32[L.slotI32(this.slot, Slot.ACTIVE_WRAP_END)] = -1;
    this.i32[this.tailIdx] = 0;
    // Release: a drain that acquires the new generation sees the cursors above. ACTIVE_RING is
    // stored after it, so a word naming an older ring is never seen beside this ring's index.
    this.scrapeGen = (this.scrapeGen + 1) & ScrapeWord.GENERATION_MASK;
    Atomics.store(this.i32, this.scrapeIdx, ScrapeWord.of(this.scrapeGen, 0, 0));
    this.i32[L.slotI32(this.slot, Slot.ACTIVE_RING)] = ring;
    const minIdx = L.slotI32(this.slot, Slot.FREE_MIN);
    if (free < this.i32[minIdx]) this.i32[minIdx] = free;
    this.i32[L.slotI32(this.slot, Slot.SWAPS)]++;
    const f = this.forecast;
    const raised = f.raise;
    const nowUs = this.clockUs();
    f.onSwap(nowUs, free, Atomics.load(this.i32, this.serviceIdx));
    // The raise is one word, stored before any state change below, and the drain loads it after
    // the state word (its marks read it lazily): a drain that sees a state this swap made sees its
    // marks; one that reads the previous raise also read the previous state, as on a visit just
    // before this swap.
    if (f.raise !== raised) Atomics.store(this.i32, this.raiseIdx, f.raise);
    if (f.raise > raised) this.bp.markRaised(nowUs);
    if (swapStep(this.bp, f, this.freeQ, free, nowUs)) {
      Atomics.add(this.i32, this.predictedIdx, 1);
      this.ringDoorbell(); // a sleeping drain learns of the hold's end (it wakes for it)
    }
    this.setPriorityMode(free);
  }

  /** Publishes the active ring (with its extent and a snapshot of the loss block) to the drain.
   * `inFlight` is 1 when called while an event is being recorded (from the slow path). */
  private submitActive(inFlight: 0 | 1): void {
    const v = this.ctx.views;
    const L = v.layout;
    const f64 = this.f64;
    const d = L.descF64(this.slot, this.activeRing, 0);
    // What the drain already copied of this ring (scraped) is not handed over again.
    const scraped = this.closeScrape();
    if (this.exhausted && !this.dropNewest) {
      f64[d + Desc.HEAD] = this.circ.head - this.ringBase; // the circle started after what was scraped
      f64[d + Desc.WRAP_END] = this.circ.wrapEnd < 0 ? -1 : this.circ.wrapEnd - this.ringBase;
    } else {
      f64[d + Desc.HEAD] = scraped;
      f64[d + Desc.WRAP_END] = -1;
    }
    f64[d + Desc.TAIL] = this.pos - this.ringBase;
    // The tracer's clock, not the event's ts (a recordAt() time): the drain's lag and the ring
    // service time that the forecast's adaptive marks follow are measured from it.
    f64[d + Desc.SUBMITTED_AT_NS] = this.clockUs() * 1000;
    // What the drain needs to write a linear ring without scanning it: the writer knows how many
    // events it put there. A circular ring (evictions) or one the drain scraped is scanned.
    const linear = scraped === 0 && !(this.exhausted && !this.dropNewest);
    f64[d + Desc.EVENTS] = linear ? this.attempted - inFlight - this.ringStartAttempted - this.ringSkipped : NaN;
    f64[d + Desc.LAST_TS] = this.lastTs;
    // The event being recorded when a swap happens is counted in `attempted` but goes into the
    // next ring (or is dropped after this): it is not part of what this ring accounts for.
    f64[d + Desc.ATTEMPTED] = this.attempted - inFlight;
    const loss = this.lossBase;
    for (let i = 0; i < LOSS_BLOCK_WORDS; i++) f64[d + Desc.LOSS + i] = f64[loss + i];
    clearLossTimes(f64, loss);
    // Release (inside push): the ring's records and the descriptor above reach the drain.
    if (!this.submitQ.push(this.activeRing)) throw new Error('ringtrace: internal error: submit queue full (ring accounting broken)');
    this.ringBase = -1;
    this.i32[L.slotI32(this.slot, Slot.ACTIVE_RING)] = -1;
    this.ringDoorbell();
  }

  private ringDoorbell(): void {
    // Only wake a sleeping drain: a notify costs ~40 ns even with no waiter, so not per event.
    if (Atomics.load(this.i32, Ctl.DRAIN_SLEEPING) !== 0) {
      Atomics.add(this.i32, Ctl.DOORBELL, 1);
      Atomics.notify(this.i32, Ctl.DOORBELL, 1);
    }
  }

  private enterExhausted(): void {
    const L = this.ctx.views.layout;
    this.i32[L.slotI32(this.slot, Slot.EXHAUSTIONS)]++;
    this.bp.onExhausted(this.clockUs());
    this.exhausted = true;
    if (this.dropNewest) {
      // The full ring can go to the drain now: nothing will be written into it any more.
      this.submitActive(1);
      this.pos = this.limit = 0;
    } else {
      // The ring is about to be rewritten circularly: the drain may copy no more of it, and what
      // it copied is free space. The word keeps the copied offset until ACTIVE_HEAD holds it, and
      // nothing between closeScrape()'s exchange and that store is a point where V8 stops a
      // terminated thread (function entries, loop edges), so a salvage never writes them twice.
      const headIdx = L.slotI32(this.slot, Slot.ACTIVE_HEAD);
      const scraped = this.closeScrape();
      const head = scraped > this.i32[headIdx] ? scraped : this.i32[headIdx]; // the head is 0 while linear
      this.i32[headIdx] = head;
      Atomics.store(this.i32, this.scrapeIdx, ScrapeWord.of(this.scrapeGen, 0, ScrapeWord.CLOSED));
      const c = this.circ;
      c.base = this.ringBase;
      c.head = this.ringBase + head;
      c.tail = this.pos;
      c.wrapEnd = -1;
      this.limit = this.pos;
    }
  }

  private leaveExhausted(inFlight: 0 | 1): void {
    const next = this.freeQ.pop();
    if (next < 0) return;
    if (this.ringBase >= 0) this.submitActive(inFlight);
    this.takeRing(next, inFlight);
  }

  /**
   * Takes the active ring back from the drain's scraping (CLOSED, by compare-exchange) and returns
   * how many of its bytes the drain had copied; 0 if it was closed already. A copy the drain is
   * making (BUSY) becomes void: its own exchange will fail, and those bytes stay the writer's.
   */
  private closeScrape(): number {
    for (;;) {
      const word = Atomics.load(this.i32, this.scrapeIdx);
      if ((word & ScrapeWord.CLOSED) !== 0) return 0;
      const closed = (word & ~ScrapeWord.BUSY) | ScrapeWord.CLOSED;
      if (Atomics.compareExchange(this.i32, this.scrapeIdx, word, closed) === word) return ScrapeWord.offset(word);
    }
  }

  private countDrop(reason: number, bytes: number, ts: number, prio: number): void {
    countDrop(this.f64, this.lossBase, reason, bytes, ts, prio);
    // The loss reaches the drain only with a hand-off: an idle thread's periodic flush may have
    // stopped (a record too large, or a drop-newest drop after the last tick handed the losses over).
    if (!this.flushArmed) this.armFlush();
  }

  private dropTooLarge(size: number, ts: number, prio: number): boolean {
    this.countDrop(Reason.RECORD_TOO_LARGE, size, ts, prio);
    this.ringSkipped++;
    if (!this.tooLargeWarned) {
      this.tooLargeWarned = true;
      process.emitWarning(
        `ringtrace: a ${size}-byte record does not fit in a ${this.ringSize}-byte ring; it was dropped and counted ` +
          `as record_too_large (raise ringSize to keep such records)`,
        { code: 'RINGTRACE_RECORD_TOO_LARGE' },
      );
    }
    return false;
  }

  private dropClosed(): boolean {
    this.countClosed(1);
    return false;
  }

  /** Writer-side transitions go to the drain through the slot's transition log (SPSC), so the
   * drain can write them to the trace and log them; nothing is logged on this thread. */
  private logTransition(from: BpStateValue, to: BpStateValue, atUs: number): void {
    const L = this.ctx.views.layout;
    const tailIdx = L.slotI32(this.slot, Slot.TLOG_TAIL);
    const tail = this.i32[tailIdx];
    const head = Atomics.load(this.i32, L.slotI32(this.slot, Slot.TLOG_HEAD));
    if (((tail - head) & TLOG_CURSOR_MASK) >= TRANSITION_LOG_ENTRIES) {
      Atomics.add(this.i32, L.slotI32(this.slot, Slot.TLOG_OVERFLOW), 1);
      return;
    }
    const e = L.slotF64(this.slot, SlotF64.TLOG) + 2 * (tail % TRANSITION_LOG_ENTRIES);
    this.f64[e] = atUs * 1000;
    this.f64[e + 1] = TransitionCode.of(from, to);
    // Release: the entry above is visible to the drain's Atomics.load of the tail.
    Atomics.store(this.i32, tailIdx, (tail + 1) & TLOG_CURSOR_MASK);
  }

  // ---------------------------------------------------------------- flush and close

  /**
   * Hands the partial active ring to the drain now. Returns false if it could not: no spare ring
   * to continue in (the records stay in the active ring and are handed over at the next swap or
   * at close; nothing is lost), or the writer is closed.
   */
  flush(): boolean {
    if (this.closed) return false;
    const L = this.ctx.views.layout;
    Atomics.add(this.i32, L.slotI32(this.slot, Slot.FLUSHES), 1); // publishes the plain counters too
    if (this.exhausted) {
      // No spare back: drop-newest holds no ring (nothing is buffered, its losses wait in the loss
      // block); drop-oldest keeps its records in the active ring until a spare returns.
      if (!this.freeQ.hintNonEmpty()) return this.dropNewest;
      if (!this.dropNewest) {
        this.leaveExhausted(0); // the circular ring goes to the drain, with the losses
        return !this.exhausted;
      }
      // drop-newest: nothing is buffered, but the losses should reach the file (and the drop log)
      // without waiting for another event. Still DROPPING: they ride on an empty ring, which
      // comes straight back, and the next event takes a spare and leaves exhaustion the usual
      // way. Already moved on by the drain (it saw the spares back): recording resumes in a
      // spare now, and the losses are handed over from it below.
      // With a single spare (recoverySpares 1), resuming would leave none to hand the losses over
      // with: the empty ring carries them, and the writer is rightly still exhausted.
      if (!this.dropsSinceHandOff()) return true;
      if (this.bp.state() === BpState.DROPPING || this.freeQ.size() < 2) {
        this.handOverLosses();
        return true;
      }
      this.leaveExhausted(0);
      if (this.exhausted) return true;
    }
    if (this.pos === this.ringBase && !this.dropsSinceHandOff()) return true;
    return this.swap(0, Prio.CRITICAL);
  }

  /** drop-newest, exhausted (holding no ring): hands the loss block over on an empty spare. */
  private handOverLosses(): void {
    const ring = this.freeQ.pop();
    if (ring < 0) return;
    this.activeRing = ring;
    this.ringBase = this.ctx.views.layout.ringOffset(this.slot, ring);
    this.pos = this.ringBase;
    this.ringStartAttempted = this.attempted;
    this.ringSkipped = 0;
    this.submitActive(0);
    this.pos = this.limit = 0;
    // Still exhausted: restamp DROPPING, so that a recovery the drain decides on a count that
    // included the spare just taken is not applied (or, if it was applied meanwhile, go back).
    this.bp.onExhausted(this.clockUs());
  }

  /** Drops not yet handed over with a ring (the hand-off clears the times). */
  private dropsSinceHandOff(): boolean {
    return hasLossTimes(this.f64, this.lossBase);
  }

  /** Hands everything to the drain and gives up the slot (released once drained). Idempotent. */
  close(): void {
    this.handOver(false);
  }

  /**
   * The last hand-over: the active ring goes to the drain, then the slot goes LIVE -> CLOSING by
   * compare-exchange. Only the drain's final pass can beat it, seizing a writer that is still live
   * when the tracer closes (LIVE -> RETIRING): the drain then accounts for the events up to the
   * attempted count it read, publishes that count and sets RETIRED, and this writer counts the
   * events after it as `closed`. Without that exchange a ring handed over after the drain's last
   * look would be lost uncounted. `eventInFlight`: the slow path is refusing the event being
   * recorded because the tracer closed.
   */
  private handOver(eventInFlight: boolean): void {
    if (this.closed) return;
    const inFlight = eventInFlight ? 1 : 0;
    if (this.ringBase >= 0) this.submitActive(inFlight);
    this.closed = true;
    this.exhausted = false;
    this.pos = this.limit = 0;
    if (this.timer) clearTimeout(this.timer);
    const L = this.ctx.views.layout;
    // The refused event is not part of what the drain accounts for.
    this.f64[this.attemptedIdx] = this.attempted - inFlight;
    this.f64 = new Float64Array(1);
    this.attemptedIdx = 0;
    const stateIdx = L.slotI32(this.slot, Slot.STATE);
    // Release (the exchange is sequentially consistent): the last submit and the attempted count
    // above are visible to the drain once it sees CLOSING.
    const prev = Atomics.compareExchange(this.i32, stateIdx, SlotState.LIVE, SlotState.CLOSING);
    if (prev === SlotState.LIVE) {
      this.countClosed(inFlight);
      this.ringDoorbell();
      return;
    }
    this.countClosed(this.attempted - this.accountedByRetirement(stateIdx, inFlight));
  }

  /** The attempted count the drain accounted for when it seized this slot: waits (bounded) for
   * RETIRED, whose load (in the exchange) acquires the count stored before it. The exchange to
   * RECONCILED claims the counting of the rest (see reconcileThreadSlots). */
  private accountedByRetirement(stateIdx: number, inFlight: 0 | 1): number {
    const deadline = performance.now() + RETIRE_WAIT_MS;
    for (;;) {
      const st = Atomics.compareExchange(this.i32, stateIdx, SlotState.RETIRED, SlotState.RECONCILED);
      if (st === SlotState.RETIRED) return this.ctx.views.f64[this.ctx.views.layout.slotF64(this.slot, SlotF64.RETIRED_ATTEMPTED)];
      if (st === SlotState.RECONCILED) return this.attempted; // counted already
      const left = deadline - performance.now();
      if (st !== SlotState.RETIRING || left <= 0) break;
      Atomics.wait(this.i32, stateIdx, SlotState.RETIRING, left);
    }
    // No answer (a drain that died while retiring us): only the refused event is known lost here.
    return this.attempted - inFlight;
  }

  private countClosed(events: number): void {
    if (events <= 0) return;
    this.droppedAfterClose += events;
    Atomics.add(this.i32, Ctl.CLOSED_DROPS, events);
  }

  /** Spare rings ready for this writer (0 means the next full ring exhausts the pool). A producer
   * that would rather wait than drop can poll this; record() itself never waits. */
  spareRings(): number {
    return this.closed ? 0 : this.freeQ.size(); // a closed writer's slot may belong to another thread
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Event-loop housekeeping: periodic flush, and the tracer's close request. */
  periodic(): void {
    if (this.closed) return;
    // Closing: hand everything over while the drain still runs (after CLOSED, handOver learns
    // what the drain accounted for).
    if ((Atomics.load(this.i32, Ctl.FLAGS) & (ControlFlag.CLOSING | ControlFlag.CLOSED)) !== 0) return this.close();
    if (this.pos !== this.ringBase || this.dropsSinceHandOff()) this.flush();
  }
}
