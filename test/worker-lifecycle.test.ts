/**
 * Workers the tracer did not see start (created before Tracer.open, or by a thread without a
 * tracer): a worker's own exit hook hands its last ring over when it returns, calls
 * process.exit() or throws; `tracer.watch(worker)` covers terminate(). Checked against the
 * sequence numbers in the file.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { describe, it } from 'node:test';
import { Tracer, openTrace } from '../src/index.js';
import type { LateWorkerJob } from './helpers/late-worker.js';
import { tempTrace } from './helpers/scenario.js';

const workerUrl = new URL('./helpers/late-worker.js', import.meta.url);
const N = 1000; // less than a ring: nothing reaches the file without a hand-over

async function lateWorker(end: LateWorkerJob['end'], opts: { watch: boolean; exitHooks?: boolean }) {
  const w = new Worker(workerUrl); // before the tracer opens: the tracer does not see it start
  w.on('error', () => {}); // 'throw' ends it with an error on purpose
  await new Promise((r) => w.once('online', r));
  const path = tempTrace(`late-${end}`);
  const tracer = await Tracer.open({
    path,
    ringSize: '64KiB',
    ringsPerThread: 4,
    maxThreads: 2,
    flushIntervalMs: 0,
    logLevel: 'error',
    exitHooks: opts.exitHooks ?? true,
  });
  if (opts.watch) tracer.watch(w);
  const exited = new Promise((r) => w.once('exit', r));
  const recorded = new Promise((r) => w.once('message', r));
  w.postMessage({ trace: tracer.handle, events: N, end } satisfies LateWorkerJob);
  await recorded;
  if (end === 'hang') await w.terminate();
  await exited;
  // The slot comes back once the drain has taken what the worker left: register again (capacity
  // 2: main + one) to prove it.
  const until = Date.now() + 10_000;
  while (tracer.metrics().retiredTotals.threads < 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
  const reused = tracer.metrics().retiredTotals.threads === 1;
  const summary = (await tracer.close())!;
  const r = openTrace(path);
  const late = r.threads.find((t) => t.name === 'late')!;
  const values = [...r.events()].filter((e) => e.thread === late.index).map((e) => e.value);
  return { summary, late, values, reused };
}

describe('workers the tracer did not see start', () => {
  for (const end of ['exit', 'return', 'throw'] as const) {
    it(`ending by ${end}: its exit hook closes the writer, every event is in the file`, async () => {
      const { summary, late, values, reused } = await lateWorker(end, { watch: false });
      assert.equal(late.endReason, 'closed');
      assert.deepEqual(
        values,
        Array.from({ length: N }, (_, i) => i),
      );
      assert.ok(reused, 'its slot was released while the tracer ran');
      assert.ok(summary.balanced);
    });
  }

  it('terminated, and watched with tracer.watch(): salvaged by the drain, every event in the file', async () => {
    const { summary, late, values, reused } = await lateWorker('hang', { watch: true });
    assert.equal(late.endReason, 'exited');
    assert.deepEqual(
      values,
      Array.from({ length: N }, (_, i) => i),
    );
    assert.ok(reused);
    assert.ok(summary.balanced);
  });

  it('terminated and not watched: nothing can see it go, but the drain collects what it committed (scraping)', async () => {
    const { summary, late, values, reused } = await lateWorker('hang', { watch: false });
    assert.equal(late.endReason, 'tracer_closed');
    assert.deepEqual(
      values,
      Array.from({ length: N }, (_, i) => i),
    );
    assert.equal(reused, false);
    const t = summary.threads.find((x) => x.name === 'late')!;
    assert.deepEqual([t.attempted, t.events, t.droppedByReason.unflushed], [N, N, undefined]);
    assert.ok(summary.balanced);
  });

  it('with exitHooks: false, a worker that exits unwatched leaves its slot to the close; its committed events are collected', async () => {
    const { late, values, summary } = await lateWorker('exit', { watch: false, exitHooks: false });
    assert.equal(late.endReason, 'tracer_closed');
    assert.deepEqual(
      values,
      Array.from({ length: N }, (_, i) => i),
    );
    assert.ok(summary.balanced);
  });
});

describe('tracer.watch() and the drain worker under unusual Node options', () => {
  it('watch() refuses a worker that has already exited (it could not see it go)', async () => {
    const w = new Worker('setTimeout(() => {}, 1)', { eval: true });
    await new Promise((r) => w.once('exit', r));
    const tracer = await Tracer.open({ path: tempTrace('watch-late'), logLevel: 'error', exitHooks: false });
    assert.throws(() => tracer.watch(w), /already exited/);
    await tracer.close();
  });

  for (const flags of [['--max-old-space-size=300'], ['--expose-gc'], ['--input-type=module']]) {
    it(`the tracer opens under node ${flags.join(' ')}`, () => {
      const index = new URL('../src/index.js', import.meta.url).href;
      const code = `import(${JSON.stringify(index)}).then(async ({ Tracer }) => { const t = await Tracer.open({ path: ${JSON.stringify(tempTrace('flags'))}, logLevel: 'error' }); t.register('m').record(t.define('x')); const s = await t.close(); console.log('balanced', s.balanced); })`;
      const r = spawnSync(process.execPath, [...flags, '-e', code], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /balanced true/);
    });
  }
});
