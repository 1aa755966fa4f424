/**
 * JSON has no Infinity or NaN (JSON.stringify writes null) and SVG cannot place them, yet a file
 * can hold such times: recordAt() takes the caller's timestamp as it is. The export and the report
 * draw an event with a time that is not a finite number at its thread's last finite time before
 * it (its registration if there is none) and say so; this keeps that time per thread.
 */
import type { TraceThread } from '../file/reader.js';

export class FiniteTimes {
  private readonly last: number[];
  /** How many times `at` was given a time that is not a finite number. */
  replaced = 0;

  constructor(threads: readonly TraceThread[], fallback = 0) {
    this.last = threads.map((t) => (Number.isFinite(t.registeredTs) ? t.registeredTs : fallback));
  }

  /** `ts` if it is finite (and then the thread's last finite time), else the thread's last finite time. */
  at(thread: number, ts: number): number {
    if (Number.isFinite(ts)) return (this.last[thread] = ts);
    this.replaced++;
    return this.last[thread];
  }
}
