/**
 * metrics() totals are exact at every call, in every thread: a registration is counted from its
 * slot until the drain retires it and from the shared ledger after, never both and never
 * neither, whatever the timing (real workers registering, closing and exiting while another
 * thread samples).
 */
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { describe, it } from 'node:test';
import { Tracer } from '../src/index.js';
import { Ctl, Layout, SharedViews, Slot, SlotState, initControl } from '../src/shm/layout.js';
import { collectMetrics, summaryFromSlot, threadFromSlot } from '../src/metrics/metrics.js';
import { closeAbandonedLedgerWrite, retireIntoLedger } from '../src/shm/ledger.js';
import { claimSlot, encodeThreadName, freeSlot } from '../src/shm/registry.js';
import type { MetricsWorkerData } from './helpers/metrics-worker.js';
import { tempTrace } from './helpers/scenario.js';

const quiet = { logLevel: 'error' as const, exitHooks: false };
const workerUrl = new URL('./helpers/metrics-worker.js', import.meta.url);

function run(data: MetricsWorkerData): {
  done: Promise<{ attempted: number; seen: string[]; retiredSeen: boolean }>;
  exited: Promise<void>;
} {
  const w = new Worker(workerUrl, { workerData: data });
  const done = new Promise<{ attempted: number; seen: string[]; retiredSeen: boolean }>((ok, fail) => {
    w.once('message', ok);
    w.once('error', fail);
  });
  const exited = new Promise<void>((ok) => w.once('exit', () => ok()));
  return { done, exited };
}

describe('metrics(): exact totals while registrations come and go', () => {
  it('a worker sees its own closed registration in the totals, from close() through its retirement', async () => {
    const tracer = await Tracer.open({ path: tempTrace('metrics-self'), ringSize: 4096, ringsPerThread: 4, maxThreads: 4, ...quiet });
    const r = run({ trace: tracer.handle, name: 'self', events: 1000, watchAfterClose: { samples: 2000 } });
    const got = await r.done;
    await r.exited;
    assert.ok(got.retiredSeen, 'the drain retired the slot while the worker watched');
    assert.deepEqual(got.seen, ['1/1000'], 'one thread, all 1000 attempted events, at every sample');
    await tracer.close();
  });

  it('sampled continuously while 48 workers register, record, close and exit: totals never go back, rows are never half-released', async () => {
    const tracer = await Tracer.open({ path: tempTrace('metrics-churn'), ringSize: 4096, ringsPerThread: 4, maxThreads: 8, ...quiet });
    let expected = 0;
    let prev = { threads: 0, attempted: 0 };
    let samples = 0;
    let rng = 7;
    const rand = (n: number) => (rng = (rng * 1103515245 + 12345) & 0x7fffffff) % n;
    const check = () => {
      const m = tracer.metrics();
      samples++;
      const regs = new Set<number>();
      for (const t of m.threads) {
        assert.match(t.name, /^w\d+$/, `a row with a real name (got '${t.name}', slot ${t.slot})`);
        assert.ok(!regs.has(t.thread), `registration ${t.thread} listed once`);
        regs.add(t.thread);
        assert.ok(Number.isFinite(t.eventsAttempted));
      }
      const now = { threads: m.totals.threads, attempted: m.totals.eventsAttempted };
      assert.ok(now.threads >= prev.threads, `totals.threads went back: ${prev.threads} -> ${now.threads}`);
      assert.ok(now.attempted >= prev.attempted, `totals.eventsAttempted went back: ${prev.attempted} -> ${now.attempted}`);
      prev = now;
    };
    for (let wave = 0; wave < 8; wave++) {
      const runs = Array.from({ length: 6 }, (_, k) => {
        const events = 200 + rand(3000);
        expected += events;
        return run({ trace: tracer.handle, name: `w${wave * 6 + k}`, events });
      });
      const all = Promise.all(runs.map((x) => x.exited));
      let finished = false;
      void all.then(() => (finished = true));
      while (!finished) {
        for (let i = 0; i < 200; i++) check(); // synchronously: no summary message can arrive meanwhile
        await new Promise((r) => setImmediate(r));
      }
      await Promise.all(runs.map((x) => x.done));
    }
    // Every registration is retired once the drain has seen the exits; wait for that (bounded).
    const until = Date.now() + 10_000;
    while (tracer.metrics().retiredTotals.threads < 48 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    check();
    const m = tracer.metrics();
    assert.equal(m.retiredTotals.threads, 48);
    assert.equal(m.totals.threads, 48);
    assert.equal(m.totals.eventsAttempted, expected);
    assert.equal(m.totals.eventsWritten + m.totals.eventsDropped, expected);
    assert.ok(samples > 1000, `sampled ${samples} times`);
    const summary = await tracer.close();
    assert.equal(
      summary!.threads.reduce((n, t) => n + t.attempted, 0),
      expected,
    );
  });
});

describe('the retired ledger when its writer dies mid-write (close() fallback after terminating the drain)', () => {
  function closingSlot() {
    const layout = new Layout({ maxThreads: 2, ringsPerThread: 4, ringSize: 4096 });
    const v = new SharedViews(new SharedArrayBuffer(layout.totalBytes), layout);
    initControl(v, Date.now(), performance.timeOrigin + performance.now());
    const { slot } = claimSlot(v, encodeThreadName('gone'), 7, 0, 0);
    Atomics.store(v.i32, layout.slotI32(slot, Slot.STATE), SlotState.CLOSING);
    const entry = { ...summaryFromSlot(threadFromSlot(v, slot, 0)), attempted: 10, events: 10 };
    return { v, slot, entry };
  }
  const died = () => {
    throw new Error('terminated');
  };

  it('died before the hand-off: the ledger is restored from its copy, the slot still counts', () => {
    const { v, slot, entry } = closingSlot();
    assert.throws(() => retireIntoLedger(v, slot, entry, died), /terminated/);
    assert.equal(Atomics.load(v.i32, Ctl.LEDGER_SEQ) & 1, 1, 'left odd');
    closeAbandonedLedgerWrite(v);
    assert.equal(Atomics.load(v.i32, Ctl.LEDGER_SEQ) & 1, 0);
    const m = collectMetrics(v, 0, []);
    assert.ok(m.consistent);
    assert.deepEqual(
      [m.retiredTotals.threads, m.retiredTotals.eventsAttempted, m.threads.length],
      [0, 0, 1],
      'counted once, from its slot',
    );
  });

  it('died after the hand-off: the write is kept, the registration counts from the ledger only', () => {
    const { v, slot, entry } = closingSlot();
    assert.throws(() => retireIntoLedger(v, slot, entry, () => (freeSlot(v, slot), died())), /terminated/);
    closeAbandonedLedgerWrite(v);
    const m = collectMetrics(v, 0, []);
    assert.deepEqual(
      [m.retiredTotals.threads, m.retiredTotals.eventsAttempted, m.threads.length],
      [1, 10, 0],
      'counted once, from the ledger',
    );
  });

  it('died while wiping the slot (RELEASING): the write is kept, the half-wiped slot is not counted', () => {
    const { v, slot, entry } = closingSlot();
    const diesInWipe = () => {
      Atomics.store(v.i32, v.layout.slotI32(slot, Slot.STATE), SlotState.RELEASING); // freeSlot's first step
      v.i32[v.layout.slotI32(slot, Slot.REGISTRATION)] = 0; // part of the wipe
      died();
    };
    assert.throws(() => retireIntoLedger(v, slot, entry, diesInWipe), /terminated/);
    closeAbandonedLedgerWrite(v);
    const m = collectMetrics(v, 0, []);
    assert.deepEqual(
      [m.retiredTotals.threads, m.retiredTotals.eventsAttempted, m.threads.length],
      [1, 10, 0],
      'counted once, from the ledger',
    );
  });

  it('a write that never ends: metrics() gives up waiting and says its read may be torn', () => {
    const { v, slot, entry } = closingSlot();
    assert.throws(() => retireIntoLedger(v, slot, entry, died));
    assert.equal(collectMetrics(v, 0, []).consistent, false);
  });
});
