/**
 * The drain collects committed events from a live thread's active ring without that thread's help
 * (scraping): a worker that records and then blocks in Atomics.wait (a pooled worker between
 * tasks) has its events in the live file, and none counted as unflushed at close. The property
 * test plays random schedules of bursts, blocking pauses and flushes in several workers, both
 * policies, tiny rings and a short flush interval, so scrapes race with swaps, drop-oldest's
 * circular rewrites and closes; every event must be in the file once, in order, or counted.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { Tracer, openTrace, type TraceReader } from '../src/index.js';
import { tempTrace } from './helpers/scenario.js';
import type { ScrapeStep, ScrapeWorkerData } from './helpers/scrape-worker.js';
import { checkChunks } from './helpers/chunk-check.js';
import { Ctl } from '../src/shm/layout.js';

interface Started {
  worker: Worker;
  done: Promise<{ calls: number; refused: number }>;
  exited: Promise<number>;
  control: Int32Array;
}

function start(data: Omit<ScrapeWorkerData, 'control'>): Started {
  const sab = new SharedArrayBuffer(8);
  const worker = new Worker(new URL('./helpers/scrape-worker.js', import.meta.url), { workerData: { ...data, control: sab } });
  const done = new Promise<{ calls: number; refused: number }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
  return { worker, done, exited, control: new Int32Array(sab) };
}

function release(s: Started, close: boolean): void {
  Atomics.store(s.control, 1, close ? 1 : 0);
  Atomics.store(s.control, 0, 1);
  Atomics.notify(s.control, 0);
}

/** Sequence numbers of a thread's events, in file order (values, or the first 4 payload bytes). */
function sequence(r: TraceReader, name: string): number[] {
  const t = r.threads.find((x) => x.name === name);
  if (!t) return [];
  const out: number[] = [];
  for (const e of r.events()) {
    if (e.thread !== t.index) continue;
    if (e.kind === 'value') out.push(e.value!);
    else if (e.kind === 'bytes') out.push(Buffer.from(e.payload!).readUInt32LE(0));
  }
  return out;
}

/** Waits (bounded) until `cond` holds; returns whether it did. */
async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (cond()) return true;
    await sleep(10);
  }
  return cond();
}

function assertExactlyOnce(values: number[], calls: number, name: string): void {
  for (let i = 1; i < values.length; i++) assert.ok(values[i] > values[i - 1], `${name}: event ${values[i]} after ${values[i - 1]}`);
  if (values.length > 0) assert.ok(values.at(-1)! < calls, `${name}: an event past the last call`);
}

describe('scraping: a blocked thread loses nothing', () => {
  for (const policy of ['drop-oldest', 'drop-newest'] as const) {
    it(`${policy}: a worker that records then blocks has its events in the live file, and all of them after close()`, async () => {
      const path = tempTrace('scrape');
      const flushIntervalMs = 100;
      const tracer = await Tracer.open({ path, flushIntervalMs, logLevel: 'error' });
      const w = start({ trace: tracer.handle, name: 'blocked', policy, steps: [], tail: 5000 });
      const { calls } = await w.done;
      assert.equal(calls, 5000);
      // Blocked in Atomics.wait: no timer of its runs. The drain takes the events anyway.
      const seen = await until(() => sequence(openTrace(path), 'blocked').length === 5000, 30 * flushIntervalMs + 5000);
      assert.ok(seen, `live file has ${sequence(openTrace(path), 'blocked').length} of 5000 events`);
      // Close while it is still blocked: nothing unflushed.
      const summary = await tracer.close();
      assert.ok(summary?.balanced);
      const t = summary!.threads.find((x) => x.name === 'blocked')!;
      assert.equal(t.attempted, 5000);
      assert.equal(t.events, 5000);
      assert.equal(t.droppedByReason.unflushed ?? 0, 0);
      const values = sequence(openTrace(path), 'blocked');
      assert.deepEqual(
        values,
        Array.from({ length: 5000 }, (_, i) => i),
      );
      release(w, false);
      await w.exited;
    });
  }

  it('a thread that registers while the drain sleeps out its idle timeout, records, then blocks: scraped within a few flush intervals', async () => {
    const path = tempTrace('scrape-first-look');
    const flushIntervalMs = 20;
    const tracer = await Tracer.open({ path, flushIntervalMs, drainIdleMs: 1000, logLevel: 'error', exitHooks: false });
    try {
      // No thread yet, so nothing is due: the drain sleeps for drainIdleMs.
      const i32 = new Int32Array(tracer.handle.buffer);
      const asleep = await until(() => Atomics.load(i32, Ctl.DRAIN_SLEEPING) === 1, 10_000);
      assert.ok(asleep, 'the drain went to sleep');
      const w = tracer.register('blocked');
      const id = tracer.define('seq');
      for (let i = 0; i < 100; i++) w.record(id, i);
      // This thread blocks now (no timer of its runs): only the drain's scrape looks can take them.
      const start = performance.now();
      const nap = new Int32Array(new SharedArrayBuffer(4));
      const written = () => tracer.metrics().threads.find((t) => t.name === 'blocked')?.eventsWritten ?? 0;
      while (written() < 100 && performance.now() - start < 5000) Atomics.wait(nap, 0, 0, 2);
      const ms = performance.now() - start;
      assert.equal(written(), 100);
      // Two looks a flush interval apart; the drain's idle timeout (1 s) must not delay the first.
      assert.ok(ms < 500, `scraped after ${Math.round(ms)} ms (flush interval ${flushIntervalMs} ms)`);
      w.close();
      assert.ok((await tracer.close())?.balanced);
    } finally {
      await tracer.close();
    }
  });

  it('random schedules in several workers: every event once and in order, or counted; nothing unflushed', async () => {
    const step: fc.Arbitrary<ScrapeStep> = fc.oneof(
      { weight: 4, arbitrary: fc.record({ burst: fc.integer({ min: 1, max: 700 }), bytesEvery: fc.constantFrom(0, 0, 3, 17) }) },
      { weight: 3, arbitrary: fc.record({ pauseMs: fc.integer({ min: 0, max: 25 }) }) },
      { weight: 1, arbitrary: fc.constant({ flush: true as const }) },
    );
    const worker = fc.record({
      policy: fc.constantFrom('drop-oldest' as const, 'drop-newest' as const),
      steps: fc.array(step, { minLength: 1, maxLength: 14 }),
      tail: fc.integer({ min: 1, max: 150 }),
      closeItself: fc.boolean(),
    });
    const scenario = fc.record({
      workers: fc.array(worker, { minLength: 1, maxLength: 4 }),
      ringsPerThread: fc.integer({ min: 2, max: 5 }),
      flushIntervalMs: fc.integer({ min: 2, max: 30 }),
    });
    await fc.assert(
      fc.asyncProperty(scenario, async (sc) => {
        const path = tempTrace('scrape-prop');
        const tracer = await Tracer.open({
          path,
          ringSize: 4096,
          ringsPerThread: sc.ringsPerThread,
          maxThreads: 8,
          flushIntervalMs: sc.flushIntervalMs,
          drainIdleMs: 2,
          stabilityMs: 5,
          logLevel: 'error',
        });
        const started = sc.workers.map((spec, k) => ({
          spec,
          name: `w${k}`,
          run: start({ trace: tracer.handle, name: `w${k}`, policy: spec.policy, steps: spec.steps, tail: spec.tail }),
        }));
        const done = await Promise.all(started.map((s) => s.run.done));
        // All blocked now: each one's last events reach the live file through the drain alone.
        const live = await until(() => {
          const r = openTrace(path);
          return started.every((s, k) => sequence(r, s.name).at(-1) === done[k].calls - 1);
        }, 20_000);
        assert.ok(live, 'the blocked workers’ last events reach the live file');
        // Some close themselves and exit; the others are still blocked when the tracer closes.
        const closers = started.filter((s) => s.spec.closeItself);
        for (const s of closers) release(s.run, true);
        await Promise.all(closers.map((s) => s.run.exited));
        const summary = await tracer.close();
        for (const s of started) if (!s.spec.closeItself) release(s.run, false);
        await Promise.all(started.map((s) => s.run.exited));
        assert.ok(summary, 'close() returns a summary');
        assert.ok(summary.complete, 'the file is complete');
        const r = openTrace(path);
        started.forEach((s, k) => {
          const t = summary.threads.find((x) => x.name === s.name)!;
          const values = sequence(r, s.name);
          assertExactlyOnce(values, done[k].calls, s.name);
          assert.equal(t.attempted, done[k].calls, `${s.name}: attempted`);
          assert.equal(t.events, values.length, `${s.name}: events in the file`);
          assert.equal(t.events + t.dropped, t.attempted, `${s.name}: balanced`);
          assert.equal(t.droppedByReason.unflushed ?? 0, 0, `${s.name}: nothing unflushed`);
          if (s.spec.policy === 'drop-newest')
            assert.equal(t.dropped, done[k].refused, `${s.name}: drop-newest drops are the refused calls`);
        });
        assert.ok(summary.balanced);
        const chunks = checkChunks(path);
        assert.deepEqual(chunks.mismatches, [], 'every chunk header matches its records');
      }),
      { numRuns: 8, seed: Number(process.env.RINGTRACE_PROPERTY_SEED ?? 0x5c4a9e) },
    );
  });
});

describe('backpressure timing', () => {
  it("comes from the tracer's clock: a far-future recordAt() timestamp does not hold the thread in RECOVERY", async () => {
    const tracer = await Tracer.open({
      path: tempTrace('future-ts'),
      ringSize: 4096,
      ringsPerThread: 3,
      stabilityMs: 20,
      logLevel: 'error',
    });
    const w = tracer.register('main');
    const id = tracer.define('e');
    await tracer.pauseDrain();
    const future = 1e18; // epoch ns by mistake: ~31 years ahead of the tracer's clock
    for (let i = 0; i < 2000; i++) w.recordAt(future + i, id, i);
    tracer.resumeDrain();
    const me = () => tracer.metrics().threads.find((t) => t.name === 'main')!;
    const recovered = await until(() => {
      w.flush();
      return me().state === 'normal';
    }, 10_000);
    assert.ok(recovered, `state ${me().state}`);
    for (const ms of Object.values(me().timeInStateMs)) assert.ok(Number.isFinite(ms) && ms >= 0 && ms < 3_600_000, `time in state ${ms}`);
    const s = await tracer.close();
    assert.ok(s?.balanced);
  });
});
