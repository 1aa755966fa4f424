/**
 * A writer's forecast of its own ring pool, updated at each ring swap (never per event): how fast
 * it takes spare rings, how fast the drain gives them back, and from these two adjustments to the
 * backpressure state machine (docs/design/backpressure.md, "Adaptive thresholds" and "Predictive
 * entry"):
 *
 * - Adaptive thresholds: a thread whose rings come back slowly needs its warning earlier. During
 *   one drain round trip (the ring service time S, measured by the drain from hand-over to return)
 *   it takes S x fillRate spares, so the PRESSURE mark is raised to that many spares, within
 *   [pressureSpares, spares - (recoverySpares - pressureSpares)], and the RECOVERY mark moves up
 *   with it by the same amount (the hysteresis band keeps its width). A raise applies at once; a
 *   lowering only in NORMAL, one spare at a time, after the lower need (with a 50 % margin) has
 *   held for a whole stability period, so jitter in S or in the fill rate cannot make the marks,
 *   and with them the state, flap.
 * - Predictive entry: from the two rates, the time until the spares run out; below the horizon
 *   the thread enters PRESSURE before its spares reach the PRESSURE mark, and that PRESSURE is
 *   held (the drain may not end it) while exhaustion stays forecast within two horizons.
 *
 * The arithmetic is on numbers the caller passes; swapStep() applies it to the thread's state.
 */

import { BpState, type BackpressureState, type SpareCount, type Thresholds } from '../shm/backpressure.js';

/** Rates are averaged over this long when no horizon sets the time scale. */
export const DEFAULT_RATE_WINDOW_US = 100_000;
/** A lowering needs the need, with this margin, to be a whole spare below the current mark. */
const LOWER_MARGIN = 1.5;
/** A forecast PRESSURE is held while exhaustion is forecast within this many horizons. */
const HOLD_FACTOR = 2;

export class PoolForecast {
  /** Spares taken and given back per µs: exponentially weighted over `windowUs`. */
  fillRate = 0;
  returnRate = 0;
  /** Spares the marks are raised by (0 ..= maxRaise). */
  raise = 0;
  readonly maxRaise: number;
  /** The configured thresholds with the marks raised: what the thread's state machine uses. */
  readonly marks: Thresholds;
  private readonly horizonUs: number;
  private readonly windowUs: number;
  private lastUs = NaN;
  private lastFree = -1;
  /** Since when a lower mark would do (NaN: it would not). */
  private lowerSinceUs = NaN;

  /** `spares`: the thread's spare rings (ringsPerThread - 1). */
  constructor(
    private readonly th: Thresholds,
    spares: number,
  ) {
    this.marks = { ...th };
    this.maxRaise = th.adaptive === true ? Math.max(0, spares - th.recoverySpares) : 0;
    this.horizonUs = th.horizonUs ?? 0;
    // Half the horizon: a forecast must see a change well within the time it looks ahead.
    this.windowUs = this.horizonUs > 0 ? this.horizonUs / 2 : DEFAULT_RATE_WINDOW_US;
  }

  /**
   * At a swap that has just taken a spare (`free`: those left). `serviceUs`: the drain's average
   * ring service time (0 while unknown); `normal`: whether the thread is in NORMAL (the marks may
   * only come down then).
   */
  onSwap(nowUs: number, free: number, serviceUs: number, normal: boolean): void {
    if (this.lastFree >= 0 && nowUs >= this.lastUs) {
      // Time-decayed rates: each swap adds its count with weight (1 - e^(-dt/window)) / dt, so a
      // burst of swaps counts as its number over the window and a long gap fades the old rate.
      const dt = Math.max(1, nowUs - this.lastUs);
      const a = 1 - Math.exp(-dt / this.windowUs);
      const returned = Math.max(0, free - this.lastFree + 1); // the one just taken came from them
      this.fillRate += a * (1 / dt - this.fillRate);
      this.returnRate += a * (returned / dt - this.returnRate);
    }
    this.lastUs = nowUs;
    this.lastFree = free;
    if (this.maxRaise > 0) this.adapt(nowUs, serviceUs, normal);
  }

  /** Spares used up during one service round trip: how many must be left when the warning comes. */
  need(serviceUs: number): number {
    return serviceUs > 0 ? serviceUs * this.fillRate : 0;
  }

  private adapt(nowUs: number, serviceUs: number, normal: boolean): void {
    const need = this.need(serviceUs);
    const want = this.clampRaise(Math.ceil(need) - this.th.pressureSpares);
    if (want > this.raise) {
      this.setRaise(want);
      this.lowerSinceUs = NaN;
      return;
    }
    const lower = normal && this.clampRaise(Math.ceil(LOWER_MARGIN * need) - this.th.pressureSpares) < this.raise;
    if (!lower) {
      this.lowerSinceUs = NaN;
    } else if (Number.isNaN(this.lowerSinceUs)) {
      this.lowerSinceUs = nowUs;
    } else if (nowUs - this.lowerSinceUs >= this.th.stabilityUs) {
      this.setRaise(this.raise - 1);
      this.lowerSinceUs = nowUs; // the next step down needs another whole period
    }
  }

  private setRaise(r: number): void {
    this.raise = r;
    this.marks.pressureSpares = this.th.pressureSpares + r;
    this.marks.recoverySpares = this.th.recoverySpares + r;
  }

  private clampRaise(r: number): number {
    return Math.max(0, Math.min(this.maxRaise, r));
  }

  /** µs until the spares run out at the current rates; Infinity if they are not going down. */
  exhaustionUs(free: number): number {
    const net = this.fillRate - this.returnRate;
    return net > 0 ? free / net : Infinity;
  }

  /** Whether a thread in NORMAL with `free` spares should enter PRESSURE now, ahead of the mark:
   * they are forecast to run out within the horizon. */
  predictsPressure(free: number): boolean {
    return this.horizonUs > 0 && this.exhaustionUs(free) < this.horizonUs;
  }

  /** Until when a forecast PRESSURE is held at a swap with `free` spares (0: no hold): for one
   * horizon, renewed while exhaustion is forecast within twice the horizon. Entering at one
   * horizon and letting go only beyond two is the forecast's hysteresis. */
  holdUntilUs(nowUs: number, free: number): number {
    return this.horizonUs > 0 && this.exhaustionUs(free) < HOLD_FACTOR * this.horizonUs ? nowUs + this.horizonUs : 0;
  }
}

/**
 * A swap's backpressure moves, in order (writer.ts takeRing; the tests drive the same function):
 * new rates and marks, recovery and the PRESSURE mark by the marks, then predictive entry (after
 * the mark's own check, so a thread the mark moved is not counted as predicted). `free`: spares
 * left after the one just taken; `pool`: the free queue, counted again by the recovery check.
 * True if the thread entered PRESSURE by forecast.
 */
export function swapStep(
  bp: BackpressureState,
  f: PoolForecast,
  pool: SpareCount,
  free: number,
  serviceUs: number,
  nowUs: number,
): boolean {
  f.onSwap(nowUs, free, serviceUs, bp.state() === BpState.NORMAL);
  const hold = f.holdUntilUs(nowUs, free);
  if (hold > 0) bp.holdPressure(hold);
  bp.checkRecovery(pool, f.marks, nowUs);
  bp.checkPressure(free, f.marks, nowUs);
  return f.predictsPressure(free) && bp.transition(BpState.NORMAL, BpState.PRESSURE, nowUs);
}
