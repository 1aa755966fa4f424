/**
 * The demo's load: what one thread records, and the worker-thread entry that runs it.
 *
 * The main thread imports `DemoLoad` and `Phase` from here too; the worker body below only runs
 * when this module is loaded as the demo's worker. Workers learn the current phase from an Int32
 * in a SharedArrayBuffer (one Atomics.load per batch), not from per-event messages.
 */
import { randomFillSync } from 'node:crypto';
import { once } from 'node:events';
import { setImmediate as yieldToLoop, setTimeout as sleep } from 'node:timers/promises';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { DropPolicy } from '../config.js';
import { Tracer, type TracerHandle } from '../tracer.js';
import type { Writer } from '../record/writer.js';

export const Phase = { NORMAL: 0, BURST: 1, RECOVERY: 2, STOP: 3 } as const;
export type PhaseValue = (typeof Phase)[keyof typeof Phase];
export const PHASE_NAMES = ['normal load', 'burst', 'recovery', 'stopping'] as const;

/** Units of work per second per thread outside the burst (each unit is 4-6 events). */
export const NORMAL_UNITS_PER_SECOND = 2000;
/** How long a thread records flat out before yielding to its event loop during the burst (so the
 * writer's periodic flush and the tracer's close message still get through). */
export const BURST_SLICE_MS = 15;

const MAX_PAYLOAD = 2048;
// Random bytes drawn once; each payload is a random window of it (random length 0..2048).
const noise = randomFillSync(new Uint8Array(64 * 1024));

/**
 * One thread's event mix. Every unit is a `request` slice holding a `seq` value, a `queue.depth`
 * counter sample, sometimes a `cache.miss` instant and sometimes a `payload` of random bytes.
 *
 * `seq`'s value is the number of events this thread attempted before it. So for the k-th event
 * kept in the file (0-based), value - k is the number of this thread's events lost before it:
 * it never decreases along the file and ends at most at the thread's dropped count, which makes
 * the conservation check (attempted = events + dropped) checkable event by event.
 */
export class DemoLoad {
  attempted = 0;
  private depth = 32;
  private readonly id: { request: number; seq: number; depth: number; miss: number; payload: number };

  constructor(
    tracer: Tracer,
    private readonly w: Writer,
  ) {
    this.id = {
      request: tracer.define('request'),
      seq: tracer.define('seq'),
      depth: tracer.define('queue.depth'),
      miss: tracer.define('cache.miss'),
      payload: tracer.define('payload'),
    };
  }

  unit(): void {
    const { w, id } = this;
    w.begin(id.request);
    w.record(id.seq, this.attempted + 1);
    this.depth = Math.max(0, this.depth + Math.round((Math.random() - 0.5) * 6));
    w.record(id.depth, this.depth);
    this.attempted += 3;
    const r = Math.random();
    if (r < 0.3) {
      w.record(id.miss);
      this.attempted++;
    }
    if (r > 0.9) {
      const len = Math.floor(Math.random() * (MAX_PAYLOAD + 1));
      const at = Math.floor(Math.random() * (noise.length - len));
      w.recordBytes(id.payload, noise.subarray(at, at + len));
      this.attempted++;
    }
    w.end(id.request);
    this.attempted++;
  }

  /** Flat out for `ms` milliseconds. */
  burst(ms: number): void {
    const until = performance.now() + ms;
    while (performance.now() < until) {
      for (let i = 0; i < 200; i++) this.unit(); // read the clock once per 200 units, not per unit
    }
  }
}

export interface DemoWorkerData {
  kind: 'ringtrace.demo-worker';
  handle: TracerHandle;
  name: string;
  policy: DropPolicy | undefined;
  /** Int32Array view: [0] is the phase. */
  phase: SharedArrayBuffer;
}

/** Registered and ready to record: the main thread starts the phases once every worker said so. */
export interface DemoWorkerReady {
  type: 'ready';
  name: string;
}

/** From the main thread: the normal phase has begun (or, after a failure, STOP), record. */
export interface DemoWorkerStart {
  type: 'start';
}

export interface DemoWorkerDone {
  type: 'done';
  name: string;
  attempted: number;
}

/**
 * Plays the phases on one thread until STOP: a steady rate (catching up on the units owed since
 * the last tick, since timers drift), or bursts of `burstSliceMs` separated by `betweenBursts`.
 */
export async function driveLoad(
  load: DemoLoad,
  phase: Int32Array,
  burstSliceMs: number,
  betweenBursts: () => Promise<unknown>,
): Promise<void> {
  let last = performance.now();
  let owed = 0;
  for (;;) {
    const p = Atomics.load(phase, 0);
    if (p === Phase.STOP) return;
    if (p === Phase.BURST) {
      load.burst(burstSliceMs);
      await betweenBursts();
      last = performance.now();
      continue;
    }
    const now = performance.now();
    owed += ((now - last) / 1000) * NORMAL_UNITS_PER_SECOND;
    last = now;
    for (; owed >= 1; owed--) load.unit();
    await sleep(10);
  }
}

async function runWorker(d: DemoWorkerData): Promise<void> {
  const tracer = Tracer.attach(d.handle);
  const writer = tracer.register(d.name, { policy: d.policy });
  const load = new DemoLoad(tracer, writer);
  const phase = new Int32Array(d.phase);
  const ready: DemoWorkerReady = { type: 'ready', name: d.name };
  const started = once(parentPort!, 'message'); // the only message the main thread sends: DemoWorkerStart
  parentPort!.postMessage(ready);
  await started;
  await driveLoad(load, phase, BURST_SLICE_MS, yieldToLoop);
  await tracer.close(); // closes this thread's writer (everything is handed to the drain) and detaches
  const done: DemoWorkerDone = { type: 'done', name: d.name, attempted: load.attempted };
  parentPort!.postMessage(done);
}

if (!isMainThread && (workerData as DemoWorkerData | undefined)?.kind === 'ringtrace.demo-worker') {
  runWorker(workerData as DemoWorkerData).catch((err: unknown) => {
    // Rethrown outside the promise so the Worker emits 'error' in the main thread.
    setImmediate(() => {
      throw err;
    });
  });
}
