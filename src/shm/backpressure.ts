/**
 * Per-thread backpressure: a four-state machine held in the thread's slot, moved by the writer
 * (pressure edges, at a swap or an exhaustion) and by the drain (recovery edges, on every visit,
 * so an idle thread recovers too).
 *
 * ```
 *              free <= pressure           exhausted, event dropped
 *   NORMAL ----------------------> PRESSURE ----------------------> DROPPING
 *     ^  ^   free >= recovery         |                              |   ^
 *     |  +----------------------------+            free >= recovery  |   | exhausted again
 *     |                                                              v   |
 *     +----------------------------------------------------------- RECOVERY
 *                 no exhaustion for the stability period
 * ```
 * Thresholds count free spare rings. Entering PRESSURE at `pressureSpares` and leaving it only
 * at `recoverySpares` (> pressureSpares) is the hysteresis that keeps an oscillating load from
 * flapping between NORMAL and PRESSURE; the stability period does the same for RECOVERY.
 *
 * The state and the time it was entered share one 64-bit word (BpWord in layout.ts), so
 * a single compare-exchange both moves the state and stamps its entry time: the winner of a
 * transition knows exactly how long the state it leaves lasted, even when the writer and the
 * drain race for the same edge.
 */
import { BpWord, EDGE_COUNT, STATE_COUNT, Slot, SlotI64, TransitionCode, type Layout } from './layout.js';

export const BpState = { NORMAL: 0, PRESSURE: 1, DROPPING: 2, RECOVERY: 3 } as const;
export type BpStateValue = (typeof BpState)[keyof typeof BpState];
export const STATE_NAMES = ['normal', 'pressure', 'dropping', 'recovery'] as const;
export type StateName = (typeof STATE_NAMES)[number];

/** The legal edges, in the order of the per-edge counters. */
export const EDGES: ReadonlyArray<readonly [BpStateValue, BpStateValue]> = [
  [BpState.NORMAL, BpState.PRESSURE],
  [BpState.PRESSURE, BpState.DROPPING],
  [BpState.DROPPING, BpState.RECOVERY],
  [BpState.RECOVERY, BpState.NORMAL],
  [BpState.RECOVERY, BpState.DROPPING],
  [BpState.PRESSURE, BpState.NORMAL],
];
if (EDGES.length !== EDGE_COUNT) throw new Error('EDGE_COUNT out of step with EDGES');

if (STATE_NAMES.length !== STATE_COUNT) throw new Error('STATE_COUNT out of step with the states');

const EDGE_INDEX: number[] = new Array(TransitionCode.of(STATE_COUNT, 0)).fill(-1);
EDGES.forEach(([from, to], i) => (EDGE_INDEX[TransitionCode.of(from, to)] = i));

/** Index of the edge from -> to, or -1 if the transition is not legal. */
export const edgeIndex = (from: number, to: number): number =>
  from >= 0 && from < STATE_COUNT && to >= 0 && to < STATE_COUNT ? EDGE_INDEX[TransitionCode.of(from, to)] : -1;

export const edgeName = (i: number): string => `${STATE_NAMES[EDGES[i][0]]}->${STATE_NAMES[EDGES[i][1]]}`;

/** The thread's free queue, counted when a decision needs it (after the state is read). */
export interface SpareCount {
  size(): number;
}

export interface Thresholds {
  /** Enter PRESSURE when free spare rings fall to this many. */
  pressureSpares: number;
  /** Leave DROPPING (to RECOVERY) and PRESSURE (to NORMAL) when free spares reach this many. */
  recoverySpares: number;
  /** RECOVERY -> NORMAL after this long in RECOVERY (any exhaustion sends it back to DROPPING). */
  stabilityUs: number;
  /** The last this many spare rings are for critical events only (while any name is critical):
   * a normal or debug event that would need one of them is dropped instead. 0 when not given. */
  criticalReserveRings?: number;
  /** Outside NORMAL, keep 1 in N normal events, N adapted at each swap (writer.ts). Off when not given. */
  sampling?: boolean;
  /** The largest N (default 64). */
  samplingMaxEvery?: number;
  /** Raise the marks with the ring service time (record/forecast.ts). Off when not given. */
  adaptive?: boolean;
  /** Predictive entry into PRESSURE within this horizon (µs); 0 or not given: off. */
  horizonUs?: number;
}

export type TransitionListener = (from: BpStateValue, to: BpStateValue, atUs: number) => void;

export class BackpressureState {
  private readonly word: number;
  private readonly timeIn: number;
  private readonly edges: number;
  private readonly illegal: number;
  private readonly hold: number;

  constructor(
    private readonly i32: Int32Array,
    private readonly i64: BigInt64Array,
    layout: Layout,
    slot: number,
    private readonly onTransition: TransitionListener = () => {},
  ) {
    this.word = layout.slotF64(slot, SlotI64.BP_WORD);
    this.timeIn = layout.slotF64(slot, SlotI64.TIME_IN_STATE);
    this.edges = layout.slotI32(slot, Slot.EDGES);
    this.illegal = layout.slotI32(slot, Slot.ILLEGAL_TRANSITIONS);
    this.hold = layout.slotF64(slot, SlotI64.PRESSURE_HOLD_US);
  }

  /** NORMAL since `nowUs`, no time accumulated. Only before the slot is published. */
  reset(nowUs: number): void {
    this.i64[this.word] = pack(BpState.NORMAL, nowUs);
    for (let s = 0; s < STATE_COUNT; s++) this.i64[this.timeIn + s] = 0n;
  }

  state(): BpStateValue {
    return BpWord.state(Atomics.load(this.i64, this.word)) as BpStateValue;
  }

  enteredAtUs(): number {
    return BpWord.enteredAtUs(Atomics.load(this.i64, this.word));
  }

  /**
   * Moves from `from` to `to` if the state is still `from`. An illegal edge is counted and
   * refused; a lost race (the state moved meanwhile) is simply not applied.
   */
  transition(from: BpStateValue, to: BpStateValue, nowUs: number): boolean {
    return this.move(Atomics.load(this.i64, this.word), from, to, nowUs);
  }

  /** transition(), from the state word as the caller read it (not applied if it changed). */
  private move(seen: bigint, from: BpStateValue, to: BpStateValue, nowUs: number): boolean {
    const e = edgeIndex(from, to);
    if (e < 0) {
      Atomics.add(this.i32, this.illegal, 1);
      return false;
    }
    if (BpWord.state(seen) !== from) return false;
    const enteredAt = BpWord.enteredAtUs(seen);
    const at = entryTime(nowUs, enteredAt); // two threads' clocks may disagree by a microsecond
    // The CAS is the transition: it fails if the other side moved the state first.
    if (Atomics.compareExchange(this.i64, this.word, seen, pack(to, at)) !== seen) return false;
    Atomics.add(this.i64, this.timeIn + from, BigInt(at - enteredAt));
    Atomics.add(this.i32, this.edges + e, 1);
    this.onTransition(from, to, at);
    return true;
  }

  /**
   * A forecast PRESSURE (record/forecast.ts): PRESSURE entered ahead of the mark because the spares
   * are forecast to run out, held until `heldUntilUs()` and, once the hold is over, left as soon
   * as the spares are above the PRESSURE mark again (the mark never fired). A PRESSURE the mark
   * fired (or an exhaustion) has hold 0 and is left at the RECOVERY mark.
   *
   * Writer, at a swap that forecasts exhaustion: from NORMAL (`enter`), enters a forecast PRESSURE
   * held until `untilUs`; in a forecast PRESSURE, renews its hold. True if it entered. The hold is
   * stored before the state word changes, and a renewal restamps the word (same state, new entry
   * time), so a drain that read the word before this cannot apply a decision it made on the old
   * hold (its compare-exchange fails), and one that reads it after sees the new hold.
   */
  forecastPressure(nowUs: number, untilUs: number, enter: boolean): boolean {
    const seen = Atomics.load(this.i64, this.word);
    const s = BpWord.state(seen);
    if (s === BpState.NORMAL && enter) {
      Atomics.store(this.i64, this.hold, BigInt(Math.max(1, entryTime(untilUs, 0))));
      return this.move(seen, BpState.NORMAL, BpState.PRESSURE, nowUs);
    }
    if (s === BpState.PRESSURE && this.heldUntilUs() > 0) {
      Atomics.store(this.i64, this.hold, BigInt(Math.max(1, entryTime(untilUs, 0))));
      this.restamp(seen, nowUs);
    }
    return false;
  }

  /**
   * Writer, after raising its PRESSURE mark at a swap that did not move the state: a forecast
   * PRESSURE is restamped, so a drain that read the state word and the older (lower) mark before
   * the raise cannot end it above the older mark (its compare-exchange fails); a drain that reads
   * the new word reads the new mark, stored before this.
   */
  markRaised(nowUs: number): void {
    const seen = Atomics.load(this.i64, this.word);
    if (BpWord.state(seen) === BpState.PRESSURE && this.heldUntilUs() > 0) this.restamp(seen, nowUs);
  }

  /** When a forecast PRESSURE's hold ends (µs); 0 for any other state of affairs (see forecastPressure). */
  heldUntilUs(): number {
    return Number(Atomics.load(this.i64, this.hold));
  }

  /** Makes the PRESSURE (if any) a mark's: hold 0, restamped like a renewal. */
  private clearHold(nowUs: number): void {
    if (this.heldUntilUs() === 0) return;
    Atomics.store(this.i64, this.hold, 0n);
    const seen = Atomics.load(this.i64, this.word);
    if (BpWord.state(seen) === BpState.PRESSURE) this.restamp(seen, nowUs);
  }

  /** Writer, after taking a spare: few spares left means pressure (a forecast PRESSURE becomes a
   * mark's: from now on it is left at the RECOVERY mark). */
  checkPressure(freeSpares: number, th: Thresholds, nowUs: number): void {
    if (freeSpares > th.pressureSpares) return;
    this.clearHold(nowUs);
    this.transition(BpState.NORMAL, BpState.PRESSURE, nowUs);
  }

  /** Writer, when it found no spare ring and has to drop: whatever the state, go to DROPPING. */
  onExhausted(nowUs: number): void {
    this.clearHold(nowUs);
    // Each failed step means the drain moved the state meanwhile: decide again from the state as
    // it is now (normally NORMAL -> PRESSURE -> DROPPING, but the drain may, for instance, take
    // PRESSURE -> NORMAL in between).
    for (;;) {
      const seen = Atomics.load(this.i64, this.word);
      const s = BpWord.state(seen) as BpStateValue;
      if (s === BpState.DROPPING) {
        if (this.restamp(seen, nowUs)) return;
        continue;
      }
      const next = s === BpState.NORMAL ? BpState.PRESSURE : BpState.DROPPING;
      if (this.transition(s, next, nowUs) && next === BpState.DROPPING) return;
    }
  }

  /**
   * The same state, a new word (a new entry time; the time so far is added to the state's total),
   * so that a drain decision made on the old word fails its compare-exchange. A new exhaustion
   * while already DROPPING (the writer took the spares that came back before anyone moved it on,
   * and used them up) needs it: without it the drain, having counted those spares just before,
   * could still move DROPPING -> RECOVERY on an unchanged word, and on to NORMAL, while the thread
   * has no spare and drops every event. A forecast PRESSURE's hold changes need it too.
   */
  private restamp(seen: bigint, nowUs: number): boolean {
    const enteredAt = BpWord.enteredAtUs(seen);
    // Always a different word: a clock that did not move (the same microsecond, or recordAt()
    // timestamps behind the drain's) must not give back the word the drain read.
    let at = entryTime(nowUs, enteredAt + 1);
    if (at === enteredAt) at = enteredAt - 1; // at the clamp (a poisoned clock): still a new word
    const s = BpWord.state(seen);
    if (Atomics.compareExchange(this.i64, this.word, seen, pack(s, at)) !== seen) return false;
    Atomics.add(this.i64, this.timeIn + s, BigInt(Math.max(0, at - enteredAt)));
    return true;
  }

  /**
   * Drain (every visit) and writer (after a swap): move towards NORMAL when conditions hold.
   * The state word is read before the spares are counted, and each move is a compare-exchange
   * from that word: a writer that takes the counted spares and exhausts its pool after the count
   * has changed the word (restamp), so a decision made on the stale count is not applied.
   */
  checkRecovery(free: SpareCount, th: Thresholds, nowUs: number): void {
    const seen = Atomics.load(this.i64, this.word);
    const s = BpWord.state(seen);
    if (s === BpState.DROPPING) {
      if (free.size() >= th.recoverySpares && this.move(seen, BpState.DROPPING, BpState.RECOVERY, nowUs)) {
        this.checkRecovery(free, th, nowUs); // a zero stability period completes at once
      }
    } else if (s === BpState.RECOVERY) {
      // Entry times are stored rounded to the microsecond: compare on the same grid.
      if (Math.round(nowUs) - BpWord.enteredAtUs(seen) >= th.stabilityUs) this.move(seen, BpState.RECOVERY, BpState.NORMAL, nowUs);
    } else if (s === BpState.PRESSURE) {
      // Read after the state word: a hold changed since is covered by the restamp that came with it.
      const hold = this.heldUntilUs();
      const over = hold > 0 ? nowUs >= hold && free.size() > th.pressureSpares : free.size() >= th.recoverySpares;
      if (over) this.move(seen, BpState.PRESSURE, BpState.NORMAL, nowUs);
    }
  }

  /** When (µs) a thread in RECOVERY may return to NORMAL, or a forecast PRESSURE's hold ends
   * (after `nowUs`); Infinity otherwise. Lets the drain sleep until then instead of polling an idle thread. */
  recoveryDueUs(th: Thresholds, nowUs: number): number {
    const w = Atomics.load(this.i64, this.word);
    const s = BpWord.state(w);
    if (s === BpState.RECOVERY) return BpWord.enteredAtUs(w) + th.stabilityUs;
    const hold = s === BpState.PRESSURE ? this.heldUntilUs() : 0;
    return hold > nowUs ? hold : Infinity;
  }

  /** Microseconds spent in each state, the current one counted up to `nowUs`. */
  timeInStates(nowUs: number): number[] {
    const w = Atomics.load(this.i64, this.word);
    const cur = BpWord.state(w);
    const out: number[] = [];
    for (let s = 0; s < STATE_COUNT; s++) {
      let t = Number(Atomics.load(this.i64, this.timeIn + s));
      if (s === cur) t += Math.max(0, nowUs - BpWord.enteredAtUs(w));
      out.push(t);
    }
    return out;
  }

  edgeCounts(): number[] {
    const out: number[] = [];
    for (let e = 0; e < EDGE_COUNT; e++) out.push(Atomics.load(this.i32, this.edges + e));
    return out;
  }

  illegalTransitions(): number {
    return Atomics.load(this.i32, this.illegal);
  }
}

/** Entry times are kept in 60 bits; a non-finite or absurd time (a bad recordAt() timestamp) is
 * clamped rather than allowed to throw or wrap on the recording thread. */
const MAX_ENTRY_US = 2 ** 53;
/** A transition's time (µs): not before `floor`, an integer within 0..MAX_ENTRY_US. */
const entryTime = (nowUs: number, floor: number): number => {
  const us = Math.round(nowUs);
  return Math.min(MAX_ENTRY_US, Math.max(us >= 0 ? us : 0, floor));
};
const pack = (state: number, atUs: number): bigint => BpWord.of(state, entryTime(atUs, 0));
