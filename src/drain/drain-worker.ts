/**
 * Entry point of the drain worker thread: opens the trace file, then runs Drain passes until the
 * tracer asks it to finish. Event-driven: after a pass that found nothing it sleeps on the
 * doorbell until a writer hands a ring over (or the tracer asks for something), or until the next
 * thing the drain must do on its own is due (a scrape look, the end of a RECOVERY stability
 * period, a drop report), and never longer than `idleMs`. It does not poll: on a 2-core machine a
 * polling drain takes CPU from the threads it serves.
 */
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { Drain, type DrainLog } from './drain.js';
import { FileSink, headerRecord, preamble, type TraceSink } from '../file/format.js';
import { Ctl, ControlFlag, DrainState, Layout, SharedViews, type Geometry } from '../shm/layout.js';
import type { Thresholds } from '../shm/backpressure.js';

export interface DrainWorkerData {
  buffer: SharedArrayBuffer;
  geometry: Geometry;
  path: string;
  config: Record<string, unknown>;
  thresholds: Thresholds;
  batchRings: number;
  idleMs: number;
  scrapeAfterMs: number;
  dropLogIntervalMs: number;
  dropLogEvery: number;
}

export type DrainMessage =
  | { type: 'ready' }
  | { type: 'error'; message: string; code?: string }
  | { type: 'log'; level: 'debug' | 'info' | 'warn' | 'error'; msg: string; fields?: Record<string, unknown> }
  | { type: 'retired'; summary: import('../metrics/metrics.js').RegistrationSummary }
  | { type: 'summary'; summary: import('./drain.js').DrainSummary };

const data = workerData as DrainWorkerData;
const port = parentPort!;
const post = (m: DrainMessage) => port.postMessage(m);

const v = new SharedViews(data.buffer, new Layout(data.geometry));
const clockOffsetMs = performance.timeOrigin - v.f64[Ctl.F64_CLOCK_ZERO_MS];
const now = () => (performance.now() + clockOffsetMs) * 1e6;

let sink: TraceSink | undefined;
try {
  sink = new FileSink(data.path);
  sink.write([preamble(), ...headerRecord(v.f64[Ctl.F64_SESSION_START_EPOCH_MS], data.config)]);
} catch (err) {
  // A file that opens but takes no header (a full disk, /dev/full): no drain, and the fd goes.
  try {
    sink?.close();
  } catch {
    // the write error is the one to report
  }
  sink = undefined;
  const e = err as NodeJS.ErrnoException;
  Atomics.store(v.i32, Ctl.DRAIN_STATE, DrainState.FAILED);
  post({ type: 'error', message: e.message, code: e.code });
}

if (sink) {
  const log: DrainLog = (level, msg, fields) => post({ type: 'log', level, msg, fields });
  const drain = new Drain(v, sink, {
    batchRings: data.batchRings,
    thresholds: data.thresholds,
    dropLogIntervalMs: data.dropLogIntervalMs,
    dropLogEvery: data.dropLogEvery,
    scrapeAfterMs: data.scrapeAfterMs,
    now,
    log,
    onRetired: (summary) => post({ type: 'retired', summary }),
  });
  Atomics.store(v.i32, Ctl.DRAIN_STATE, DrainState.RUNNING);
  post({ type: 'ready' });
  const i32 = v.i32;
  const bucket = { kibps: 0, credit: 0, at: 0, bytes: 0 };
  try {
    run();
  } catch (err) {
    // A drain that cannot go on must say so at once: writers never wait for it, but close() and
    // the exit hooks do (they stop waiting on FAILED); the error reaches the owner as 'error'.
    Atomics.store(i32, Ctl.DRAIN_STATE, DrainState.FAILED);
    Atomics.notify(i32, Ctl.DRAIN_STATE);
    throw err;
  }

  function run(): void {
    loop();
    let summary;
    try {
      summary = drain.finish();
    } finally {
      Atomics.store(i32, Ctl.DRAIN_STATE, DrainState.STOPPED);
      Atomics.notify(i32, Ctl.DRAIN_STATE);
    }
    post({ type: 'summary', summary });
  }

  function loop(): void {
    for (;;) {
      if ((Atomics.load(i32, Ctl.FLAGS) & ControlFlag.FINISH) !== 0) break;
      if (drain.pass()) {
        throttle();
        continue;
      }
      // Idle: announce the sleep, then sleep on the doorbell. A writer that hands a ring over to
      // a sleeping drain pays one futex wake-up (a few µs, once a ring); measured cheaper for the
      // whole process than keeping the drain awake to spare it (docs/benchmarks.md).
      const bell = Atomics.load(i32, Ctl.DOORBELL);
      Atomics.store(i32, Ctl.DRAIN_SLEEPING, 1);
      // Look once more after announcing the sleep: a writer pushes then reads DRAIN_SLEEPING, we
      // store DRAIN_SLEEPING then look at the queues (both sequentially consistent), so either it
      // rings the doorbell or this pass sees its ring. Without this look the ring would wait out
      // the whole idle timeout.
      if (!drain.pass()) Atomics.wait(i32, Ctl.DOORBELL, bell, Math.min(drain.msUntilDue(), data.idleMs));
      Atomics.store(i32, Ctl.DRAIN_SLEEPING, 0);
    }
  }
  /**
   * Keeps the drain under the configured byte rate: a token bucket refilled at the rate, holding
   * at most 100 ms of credit (an idle spell does not buy a burst), and a pass that overdraws it
   * is paid back by sleeping before the next one. Sleeps are bounded (50 ms) so that FINISH, a
   * new rate and doorbells are still seen.
   */
  function throttle(): void {
    for (;;) {
      const kibps = Atomics.load(i32, Ctl.DRAIN_THROTTLE_KIBPS);
      const now = performance.now();
      // A new rate starts with no credit; the pass just made is charged to it.
      if (kibps !== bucket.kibps) Object.assign(bucket, { kibps, credit: 0, at: now });
      if (kibps <= 0 || (Atomics.load(i32, Ctl.FLAGS) & ControlFlag.FINISH) !== 0) {
        bucket.bytes = drain.bytesOut;
        return;
      }
      const bytesPerMs = (kibps * 1024) / 1000;
      bucket.credit = Math.min(bucket.credit + (now - bucket.at) * bytesPerMs, 100 * bytesPerMs) - (drain.bytesOut - bucket.bytes);
      bucket.at = now;
      bucket.bytes = drain.bytesOut;
      if (bucket.credit >= 0) return;
      // A pause cannot wait for the debt: the next pass acknowledges it (pauseDrain() resolves),
      // and the debt is kept, to be paid after the resume.
      if ((Atomics.load(i32, Ctl.FLAGS) & ControlFlag.DRAIN_PAUSED) !== 0) return;
      Atomics.wait(i32, Ctl.DOORBELL, Atomics.load(i32, Ctl.DOORBELL), Math.min(-bucket.credit / bytesPerMs, 50));
    }
  }
}
