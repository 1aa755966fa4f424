/**
 * Backpressure with real workers: exhaustion is detected and drops are counted, one flooding
 * thread costs no other thread an event, every thread recovers by itself, and for every thread
 * attempted = events in the file + dropped, checked against per-thread sequence numbers.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Tracer, openTrace, type TraceReader } from '../src/index.js';
import type { MetricsSnapshot } from '../src/metrics.js';
import { readBack, startScenario, tempTrace } from './helpers/scenario.js';

const quiet = { logLevel: 'error' as const, exitHooks: false };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls metrics until `ok` holds (bounded: a condition that never holds fails the test). */
async function until(tracer: Tracer, ok: (m: MetricsSnapshot) => boolean, what: string): Promise<MetricsSnapshot> {
  for (let i = 0; i < 1000; i++) {
    const m = tracer.metrics();
    if (ok(m)) return m;
    await sleep(10);
  }
  throw new Error(`timed out waiting for: ${what}`);
}

/** For each thread: the sequence numbers missing from the file equal the events counted as
 * dropped, and what is present is strictly increasing. */
function assertConservation(r: TraceReader): void {
  const s = r.summary();
  const back = readBack(r);
  for (const t of s.threads) {
    assert.equal(t.balanced, true, `${t.name}: attempted ${t.attempted} = events ${t.events} + dropped ${t.dropped}`);
    if (t.lastChunk) assert.equal(t.lastChunk.balanced, true, `${t.name}: running totals in its last chunk add up`);
    const values = back.get(t.name)!.values;
    let missing = 0;
    let prev = -1;
    for (const v of values) {
      assert.ok(v > prev, `${t.name}: sequence strictly increasing`);
      missing += v - prev - 1;
      prev = v;
    }
    missing += t.attempted! - 1 - prev;
    assert.equal(missing, t.dropped, `${t.name}: missing sequence numbers = counted drops`);
  }
}

describe('pool exhaustion with the drain paused', () => {
  for (const policy of ['drop-newest', 'drop-oldest'] as const) {
    it(`${policy}: detected, dropped, counted, in the file, then recovered`, async () => {
      const path = tempTrace(`exhaust-${policy}`);
      const tracer = await Tracer.open({ path, ringSize: '4KiB', ringsPerThread: 4, policy, stabilityMs: 50, ...quiet });
      await tracer.pauseDrain();
      const N = 5000; // 5000 x 24 B = 117 KiB, far more than 4 x 4 KiB
      const control = new SharedArrayBuffer(8);
      const run = startScenario({ trace: tracer.handle, name: 'flood', mode: 'flood', events: N, linger: true, control });
      const done = (await run.done) as { kept: number; metrics: { state: string; eventsDropped: number } };
      const m = tracer.metrics().threads.find((t) => t.name === 'flood')!;
      assert.equal(m.state, 'dropping');
      assert.ok(m.exhaustions >= 1);
      assert.ok(m.transitions['normal->pressure'] >= 1 && m.transitions['pressure->dropping'] >= 1);
      assert.ok(m.freeSparesMin === 0);
      if (policy === 'drop-newest') assert.equal(done.kept, N - m.eventsDropped, 'record() returned false exactly for the dropped events');
      else assert.equal(done.kept, N, 'drop-oldest keeps every new event');
      assert.ok(m.eventsDropped > 0);
      assert.deepEqual(Object.keys(m.droppedByReason), ['pool_exhausted']);

      tracer.resumeDrain();
      // The worker is alive but idle: the drain alone must move it back to NORMAL.
      const after = await until(tracer, (x) => x.threads[0].state === 'normal', 'back to normal');
      assert.equal(after.threads[0].transitions['recovery->normal'], 1);
      Atomics.store(new Int32Array(control), 0, 1);
      await run.exited;
      const summary = await tracer.close();
      assert.ok(summary?.balanced);
      const r = openTrace(path);
      assertConservation(r);
      const drops = r.drops().filter((d) => d.reason === 'pool_exhausted');
      assert.ok(drops.length > 0);
      for (const d of drops) assert.ok(d.firstTs <= d.lastTs && d.bytes === d.events * 24);
      const edges = r.states().map((s) => `${s.from}->${s.to}`);
      assert.deepEqual(edges.slice(0, 2), ['normal->pressure', 'pressure->dropping']);
      assert.ok(edges.includes('dropping->recovery'));
      assert.equal(edges[edges.length - 1], 'recovery->normal');
      const values = readBack(r).get('flood')!.values;
      if (policy === 'drop-oldest') assert.equal(values[values.length - 1], N - 1, 'the newest event survives');
      else assert.equal(values[0], 0, 'the oldest event survives');
    });
  }
});

describe('thread isolation', () => {
  it('one flooding worker exhausts its pool while 4 quiet workers drop nothing', async () => {
    const path = tempTrace('isolation');
    const tracer = await Tracer.open({ path, ringSize: '4KiB', ringsPerThread: 4, ...quiet });
    tracer.throttleDrain(256); // a slow disk: the flooder cannot be kept up with
    const flood = startScenario({ trace: tracer.handle, name: 'flood', mode: 'flood', events: 200_000, policy: 'drop-newest' });
    const quietOnes = Array.from({ length: 4 }, (_, k) => startScenario({ trace: tracer.handle, name: `quiet${k}`, mode: 'exact', events: 3000, close: true }));
    await Promise.all([flood.done, ...quietOnes.map((q) => q.done)]);
    tracer.throttleDrain(0);
    await Promise.all([flood.exited, ...quietOnes.map((q) => q.exited)]);
    const summary = await tracer.close();
    assert.ok(summary?.balanced);
    const byName = new Map(summary.threads.map((t) => [t.name, t]));
    assert.ok(byName.get('flood')!.dropped > 0, 'the flooder dropped');
    for (let k = 0; k < 4; k++) {
      const q = byName.get(`quiet${k}`)!;
      assert.equal(q.dropped, 0, `quiet${k} dropped nothing`);
      assert.equal(q.events, 3000);
    }
    assertConservation(openTrace(path));
  });
});

describe('behavioural load scenarios', () => {
  it('burst: drops are controlled and recovery follows', async () => {
    const path = tempTrace('burst');
    const tracer = await Tracer.open({ path, ringSize: '8KiB', stabilityMs: 30, ...quiet });
    const runs = Array.from({ length: 4 }, (_, k) =>
      startScenario({ trace: tracer.handle, name: `b${k}`, mode: 'flood', events: 30_000, policy: k % 2 ? 'drop-newest' : 'drop-oldest' }),
    );
    await tracer.pauseDrain();
    await Promise.all(runs.map((r) => r.registered));
    await sleep(50);
    tracer.resumeDrain();
    await Promise.all(runs.map((r) => r.done));
    await Promise.all(runs.map((r) => r.exited));
    const summary = await tracer.close();
    assert.ok(summary?.balanced);
    assertConservation(openTrace(path));
  });

  it('sustained overload through a rate-limited drain degrades gracefully', async () => {
    const path = tempTrace('sustained');
    const tracer = await Tracer.open({ path, ringSize: '4KiB', ...quiet });
    tracer.throttleDrain(256);
    const runs = Array.from({ length: 3 }, (_, k) => startScenario({ trace: tracer.handle, name: `s${k}`, mode: 'steady', events: 60_000, policy: k === 0 ? 'drop-newest' : 'drop-oldest' }));
    await Promise.all(runs.map((r) => r.done));
    const during = tracer.metrics();
    for (const t of during.threads) assert.ok(t.eventsDropped > 0 && t.eventsWritten > 0, `${t.name} both wrote and dropped`);
    tracer.throttleDrain(0);
    await Promise.all(runs.map((r) => r.exited));
    const summary = await tracer.close();
    assert.ok(summary?.balanced);
    assertConservation(openTrace(path));
  });

  it('oscillating load stays protected and does not flap', async () => {
    const path = tempTrace('oscillate');
    const tracer = await Tracer.open({ path, ringSize: '4KiB', stabilityMs: 1000, ...quiet }); // far longer than a cycle, even on a loaded machine
    const w = tracer.register('osc', { policy: 'drop-newest' });
    const id = tracer.define('seq');
    let seq = 0;
    const cycles = 6;
    for (let c = 0; c < cycles; c++) {
      await tracer.pauseDrain();
      for (let i = 0; i < 2000; i++) w.record(id, seq++); // exhausts: 2000 x 24 B > 4 x 4 KiB
      tracer.resumeDrain();
      await sleep(20); // shorter than the stability period: must not count as recovered
    }
    const m = tracer.metrics().threads[0];
    assert.notEqual(m.state, 'normal', 'still protected while the load oscillates faster than the stability period');
    assert.equal(m.transitions['recovery->normal'], 0, 'never declared recovered mid-oscillation');
    assert.equal(m.transitions['normal->pressure'], 1, 'entered pressure once');
    await until(tracer, (x) => x.threads[0].state === 'normal', 'recovers once the load stops');
    w.close();
    const summary = await tracer.close();
    assert.ok(summary?.balanced);
    assertConservation(openTrace(path));
  });

  it('64 workers with both policies keep exact accounting', async () => {
    const path = tempTrace('64bp');
    const tracer = await Tracer.open({ path, ringSize: '4KiB', maxThreads: 64, ...quiet });
    await tracer.pauseDrain();
    const runs = Array.from({ length: 64 }, (_, k) =>
      startScenario({ trace: tracer.handle, name: `w${k}`, mode: 'flood', events: 2000 + 37 * k, policy: k % 2 ? 'drop-newest' : 'drop-oldest', close: k % 3 === 0 }),
    );
    await Promise.all(runs.map((r) => r.done));
    tracer.resumeDrain();
    await Promise.all(runs.map((r) => r.exited));
    const summary = await tracer.close();
    assert.ok(summary?.balanced);
    assert.equal(summary.threads.length, 64);
    assert.ok(summary.threads.every((t) => t.dropped > 0), 'every pool was exhausted');
    assertConservation(openTrace(path));
  });
});

describe('drop-oldest overwrite, mixed record sizes (property)', () => {
  it('the survivors are the newest events, intact; the evicted ones are exactly the counted gap', async () => {
    const fc = (await import('fast-check')).default;
    const kinds = fc.array(fc.oneof(fc.constant(-2), fc.constant(-1), fc.integer({ min: 0, max: 600 })), { minLength: 600, maxLength: 3000 });
    await fc.assert(
      fc.asyncProperty(kinds, async (plan) => {
        const path = tempTrace('oldest-mixed');
        const tracer = await Tracer.open({ path, ringSize: '4KiB', ringsPerThread: 2, policy: 'drop-oldest', ...quiet });
        await tracer.pauseDrain(); // nothing comes back: the second ring is the last, then it wraps
        const w = tracer.register('mixed');
        const id = tracer.define('seq');
        const bytesId = tracer.define('blob');
        // -2: instant (16 B, seq in its timestamp: base + seq stays ahead of the clock that
        // recordBytes() uses), -1: value (24 B), n >= 0: n payload bytes (the first 8 carry seq).
        const base = w.now() + 1e12;
        plan.forEach((k, seq) => {
          if (k === -2) w.recordAt(base + seq, id);
          else if (k === -1) w.recordAt(base + seq, id, seq);
          else {
            const p = new Uint8Array(Math.max(8, k)).fill(seq & 0xff);
            new DataView(p.buffer).setFloat64(0, seq, true);
            w.recordBytes(bytesId, p);
          }
        });
        w.close();
        const summary = await tracer.close();
        assert.equal(summary!.balanced, true);
        const r = openTrace(path);
        const seqs: number[] = [];
        for (const e of r.events()) {
          if (e.kind === 'instant') seqs.push(e.ts - base);
          else if (e.kind === 'value') seqs.push(e.value!);
          else {
            const s = new DataView(e.payload!.buffer, e.payload!.byteOffset).getFloat64(0, true);
            assert.ok(e.payload!.subarray(8).every((b) => b === (s & 0xff)), `payload of ${s} intact`);
            seqs.push(s);
          }
        }
        // Kept: everything up to the first ring's hand-off, then the newest ones; one gap between.
        const dropped = r.summary().threads[0].droppedByReason.pool_exhausted ?? 0;
        assert.equal(seqs.length + dropped, plan.length);
        const gapAt = seqs.findIndex((s, i) => s !== i);
        if (dropped === 0) assert.equal(gapAt, -1);
        else {
          assert.ok(gapAt >= 0);
          for (let i = gapAt; i < seqs.length; i++) assert.equal(seqs[i], i + dropped, 'after the gap, contiguous to the newest');
        }
      }),
      { numRuns: 25 },
    );
  });
});
