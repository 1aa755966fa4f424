/**
 * `node --import ringtrace/auto app.js`: traces an unmodified application. On the main thread it
 * opens a tracer (configured by the RINGTRACE_* variables, the file finished on exit by the exit
 * hooks) and publishes its handle in the worker environment data; every worker thread the app
 * starts afterwards runs this module too (workers inherit `--import`), finds the handle there
 * and registers its own writer. Each thread then records its HTTP server and client requests as
 * async spans, its event-loop delay and its GC pauses (see auto/capture.ts).
 *
 * This entry stays light: a thread with nothing to trace (the tracer's own drain, a worker of an
 * app that opened a tracer of its own) loads nothing else.
 */
import { getEnvironmentData, isMainThread, workerData } from 'node:worker_threads';
import type { Tracer, TracerHandle } from './tracer.js';

/** Where the main thread leaves the handle for the workers (cloned into each new worker; the
 * SharedArrayBuffer in it is shared, not copied). */
export const AUTO_HANDLE_KEY = 'ringtrace:auto';

let current: Tracer | undefined;

/** The tracer `ringtrace/auto` opened (main thread) or attached (a worker), to add an app's own
 * events to the same trace; undefined where it traces nothing. */
export function autoTracer(): Tracer | undefined {
  return current;
}

/** The tracer's own drain worker inherits `--import` too; it must not trace itself. */
function isDrainWorker(): boolean {
  const d = workerData as Record<string, unknown> | null | undefined;
  return typeof d === 'object' && d !== null && 'scrapeAfterMs' in d && 'batchRings' in d && d.buffer instanceof SharedArrayBuffer;
}

if (isMainThread) {
  const { startMain } = await import('./auto/capture.js');
  current = await startMain(AUTO_HANDLE_KEY);
} else if (getEnvironmentData(AUTO_HANDLE_KEY) !== undefined && !isDrainWorker()) {
  const { startWorker } = await import('./auto/capture.js');
  current = startWorker(getEnvironmentData(AUTO_HANDLE_KEY) as unknown as TracerHandle);
}
