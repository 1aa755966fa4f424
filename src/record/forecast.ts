/**
 * A writer's forecast of its own ring pool, updated at each ring swap (never per event): how fast
 * it takes spare rings, how fast the drain gives them back, and from these two adjustments to the
 * backpressure state machine (docs/design/backpressure.md, "Adaptive marks and predictive entry"):
 *
 * - Adaptive PRESSURE mark: while the spares are going (over the long window, rings taken
 *   clearly faster than they come back), a thread whose rings come back slowly needs its warning
 *   earlier. During one round trip to the drain (the ring service time S, measured by the drain
 *   from hand-over to return) it takes S x fillRate spares, so the PRESSURE mark is raised to that
 *   many, within [pressureSpares, recoverySpares - 2] (two spares of hysteresis kept). The
 *   RECOVERY mark stays: raised, it sat above the spares a recording thread ever has free and kept
 *   threads in PRESSURE under loads the drain sustained. A raise applies at once; a lowering one
 *   spare at a time, once the lower mark (with a 50 % margin) has been enough for a whole
 *   stability period, so jitter cannot make the mark flap.
 * - Predictive entry: from the short-window rates, the time until the spares run out; below the
 *   horizon (and the spares going over the long window too) the thread enters a *forecast*
 *   PRESSURE before its spares reach the PRESSURE mark. It is held while exhaustion stays forecast
 *   within two horizons, for at most four horizons from its entry, and ends once the hold is over
 *   with the spares above the PRESSURE mark (the mark never fired: it does not wait for the
 *   RECOVERY mark).
 *
 * Two windows: the short one (half the horizon, at least 8 swaps) says how soon, the long one
 * (twice that) whether the spares are really going. A drain that stalls now and then but keeps up
 * on average, or a step up in pace whose extra rings have not come back yet, moves the short
 * rates but not the long ones. Nothing is forecast before the rates have been measured for two
 * short windows plus a round trip (at the start, and after a pause longer than a window).
 */
import { type BackpressureState, type SpareCount, type Thresholds } from '../shm/backpressure.js';

/** Rates are averaged over this long when no horizon sets the time scale. */
export const DEFAULT_RATE_WINDOW_US = 100_000;
/** The spares are "going" while they are taken this much faster than they come back (long window). */
const DEPLETING = 1.1;
/** A lowering needs the need, with this margin, to be a whole spare below the current mark. */
const LOWER_MARGIN = 1.5;
/** A forecast PRESSURE is held while exhaustion is forecast within this many horizons... */
const HOLD_FACTOR = 2;
/** ...for at most this many horizons from its entry (unless the mark fires: then it is the mark's). */
const HOLD_MAX_HORIZONS = 4;
/** The long window, in short windows. */
const LONG_WINDOW = 2;
/** The PRESSURE mark stays at least this many spares below the RECOVERY mark. */
const MIN_BAND = 2;
/** The averaging window spans at least this many swaps: fewer make the rates too noisy to act on
 * (with 5, a drain keeping up reads as one falling behind now and then). */
const MIN_WINDOW_SWAPS = 8;

export class PoolForecast {
  /** Spares taken and given back per µs: exponentially weighted over the short window... */
  fillRate = 0;
  returnRate = 0;
  /** ...and over the long one. */
  fillLong = 0;
  returnLong = 0;
  /** Spares the PRESSURE mark is raised by (0 ..= maxRaise). */
  raise = 0;
  readonly maxRaise: number;
  /** The configured thresholds with the marks raised: what the thread's state machine uses. */
  readonly marks: Thresholds;
  readonly horizonUs: number;
  private readonly windowUs: number;
  private lastUs = NaN;
  private lastFree = -1;
  /** Since when the rates have been measured without a pause longer than the window. */
  private measuredSinceUs = NaN;
  /** Since when a lower mark would do (NaN: it would not). */
  private lowerSinceUs = NaN;
  /** The ring service time last reported (µs; 0 while unknown). */
  private serviceUs = 0;
  /** The time between swaps, averaged (weight 1/4) over swaps that were not a pause. */
  private swapGapUs = 0;
  /** When the current forecast PRESSURE was entered (NaN: none). */
  private forecastSinceUs = NaN;

  constructor(private readonly th: Thresholds) {
    this.marks = { ...th };
    this.maxRaise = th.adaptive === true ? Math.max(0, th.recoverySpares - MIN_BAND - th.pressureSpares) : 0;
    this.horizonUs = th.horizonUs ?? 0;
    // Half the horizon: a forecast must see a change well within the time it looks ahead.
    this.windowUs = this.horizonUs > 0 ? this.horizonUs / 2 : DEFAULT_RATE_WINDOW_US;
  }

  /**
   * At a swap that has just taken a spare (`free`: those left). `serviceUs`: the drain's average
   * ring service time (0 while unknown). Updates the rates and the marks.
   */
  onSwap(nowUs: number, free: number, serviceUs: number): void {
    const dt = nowUs - this.lastUs;
    const pause = !(dt >= 0 && dt <= this.window()); // also a first swap, or a clock gone back
    // A step up in pace (4x or more): the rings taken at the new pace come back a round trip
    // later, and until then the rates read as spares going. Measured afresh, like after a pause.
    const stepUp = !pause && dt < this.swapGapUs / 4;
    if (!pause) this.swapGapUs = this.swapGapUs === 0 ? dt : this.swapGapUs + (dt - this.swapGapUs) / 4;
    if (this.lastFree >= 0 && dt >= 0) {
      // Time-decayed rates: each swap adds its count with weight (1 - e^(-dt/window)) / dt, so a
      // burst of swaps counts as its number over the window and a long gap fades the old rate.
      const step = Math.max(1, dt);
      const a = 1 - Math.exp(-step / this.window());
      const aLong = 1 - Math.exp(-step / (LONG_WINDOW * this.window()));
      const returned = Math.max(0, free - this.lastFree + 1); // the one just taken came from them
      this.fillRate += a * (1 / step - this.fillRate);
      this.returnRate += a * (returned / step - this.returnRate);
      this.fillLong += aLong * (1 / step - this.fillLong);
      this.returnLong += aLong * (returned / step - this.returnLong);
    }
    // After a pause longer than the window the old rates are mostly gone: measure afresh.
    if (pause || stepUp) this.measuredSinceUs = nowUs;
    this.lastUs = nowUs;
    this.lastFree = free;
    this.serviceUs = serviceUs;
    if (this.maxRaise > 0) this.adapt(nowUs, serviceUs);
  }

  /**
   * The rates may be trusted: measured for two windows plus one round trip (a window if none is
   * known yet; at most two). The rings taken at the start come back a round trip later, and the averages need
   * about two windows to forget that lag (after one, the taking rate still reads ~1.3 times the
   * return rate of a drain that keeps up).
   */
  measured(nowUs: number): boolean {
    const w = this.window();
    const lag = this.serviceUs > 0 ? Math.min(this.serviceUs, 2 * w) : w;
    return nowUs - this.measuredSinceUs >= 2 * w + lag;
  }

  /** The averaging window: half the horizon (100 ms without one), and at least MIN_WINDOW_SWAPS
   * swaps at the pace of the swaps so far (pauses left out). */
  private window(): number {
    return Math.max(this.windowUs, MIN_WINDOW_SWAPS * this.swapGapUs);
  }

  /** Spares are taken clearly faster than they come back, over the long window. */
  depleting(nowUs: number): boolean {
    return this.measured(nowUs) && this.fillLong > DEPLETING * this.returnLong;
  }

  /** Spares used up during one service round trip: how many must be left when the warning comes. */
  need(serviceUs: number): number {
    return serviceUs > 0 ? serviceUs * this.fillRate : 0;
  }

  private adapt(nowUs: number, serviceUs: number): void {
    const going = this.depleting(nowUs);
    const need = this.need(serviceUs);
    const want = going ? this.clampRaise(Math.ceil(need) - this.th.pressureSpares) : 0;
    if (want > this.raise) {
      this.setRaise(want);
      this.lowerSinceUs = NaN;
      return;
    }
    const enough = going ? this.clampRaise(Math.ceil(LOWER_MARGIN * need) - this.th.pressureSpares) : 0;
    if (enough >= this.raise) {
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
  }

  private clampRaise(r: number): number {
    return Math.max(0, Math.min(this.maxRaise, r));
  }

  /** µs until the spares run out at the current rates; Infinity if they are not going down. */
  exhaustionUs(free: number): number {
    const net = this.fillRate - this.returnRate;
    return net > 0 ? free / net : Infinity;
  }

  /** Whether a thread in NORMAL with `free` spares should enter a forecast PRESSURE now: they are
   * forecast to run out within the horizon. */
  predictsPressure(nowUs: number, free: number): boolean {
    return this.horizonUs > 0 && this.depleting(nowUs) && this.exhaustionUs(free) < this.horizonUs;
  }

  /** Until when a forecast PRESSURE is held at a swap with `free` spares (0: not held): for one
   * horizon, renewed while exhaustion is forecast within twice the horizon, never past four
   * horizons from the entry. Entering at one horizon and letting go only beyond two is the
   * forecast's hysteresis; the cap makes every forecast PRESSURE lapse. */
  holdUntilUs(nowUs: number, free: number): number {
    if (this.horizonUs <= 0 || !this.depleting(nowUs) || !(this.exhaustionUs(free) < HOLD_FACTOR * this.horizonUs)) return 0;
    const until = Number.isNaN(this.forecastSinceUs)
      ? nowUs + this.horizonUs
      : Math.min(nowUs + this.horizonUs, this.forecastSinceUs + HOLD_MAX_HORIZONS * this.horizonUs);
    return until > nowUs ? until : 0;
  }

  /** The writer entered a forecast PRESSURE at `nowUs` (its hold is capped from there). */
  entered(nowUs: number): void {
    this.forecastSinceUs = nowUs;
  }
}

/**
 * A swap's state moves, after onSwap() (whose new marks the caller publishes first, so a drain
 * that sees a state this makes sees its marks), in order (writer.ts takeRing; the tests drive the
 * same function): recovery and the PRESSURE mark by the marks, then the forecast (after the mark's
 * own check, so a thread the mark moved is not counted as predicted). `free`: spares left after
 * the one just taken; `pool`: the free queue, counted again by the recovery check. True if the
 * thread entered PRESSURE by forecast.
 */
export function swapStep(bp: BackpressureState, f: PoolForecast, pool: SpareCount, free: number, nowUs: number): boolean {
  bp.checkRecovery(pool, f.marks, nowUs);
  bp.checkPressure(free, f.marks, nowUs);
  const until = f.holdUntilUs(nowUs, free);
  if (!(until > 0 && bp.forecastPressure(nowUs, until, f.predictsPressure(nowUs, free)))) return false;
  f.entered(nowUs);
  return true;
}
