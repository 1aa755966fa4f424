/**
 * Priorities with real workers (docs/design/backpressure.md, "Priorities"): a flood of 1 %
 * critical, 79 % normal and 20 % debug events through a paused drain. Debug events go first (shed
 * in PRESSURE), then normal ones (the pool is down to the critical reserve); no critical event is
 * lost while any other event is still kept after the first loss; every loss is counted by reason
 * and priority, and per thread and per priority attempted = in the file + dropped, checked
 * against the sequence numbers the worker recorded.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PRIORITIES, Tracer, openTrace, type Priority } from '../src/index.js';
import { priorityOfSeq, startScenario, tempTrace } from './helpers/scenario.js';

const quiet = { logLevel: 'error' as const, exitHooks: false };

interface Flood {
  kept: Map<Priority, number[]>;
  lost: Map<Priority, number[]>;
}

/** The flood's sequence numbers, kept (in the file) and lost, by priority. */
function split(seen: Set<number>, n: number): Flood {
  const kept = new Map<Priority, number[]>(PRIORITIES.map((p) => [p, []]));
  const lost = new Map<Priority, number[]>(PRIORITIES.map((p) => [p, []]));
  for (let seq = 0; seq < n; seq++) (seen.has(seq) ? kept : lost).get(priorityOfSeq(seq))!.push(seq);
  return { kept, lost };
}

describe('priorities: a 1/79/20 % flood through a paused drain', () => {
  // ringsPerThread 4: 3 spares, PRESSURE at 1 free, the last one the critical reserve. A ring of
  // 4 KiB holds 170 value events: the reserve ring holds the critical events of ~17,000 events.
  const cases = [
    { policy: 'drop-newest', events: 10_000, reserveFills: false },
    { policy: 'drop-oldest', events: 10_000, reserveFills: false },
    { policy: 'drop-newest', events: 40_000, reserveFills: true },
    { policy: 'drop-oldest', events: 40_000, reserveFills: true },
  ] as const;
  for (const { policy, events: N, reserveFills } of cases) {
    it(`${policy}, ${N} events${reserveFills ? ' (the reserve fills too)' : ''}`, async () => {
      const path = tempTrace(`prio-${policy}`);
      const tracer = await Tracer.open({ path, ringSize: '4KiB', ringsPerThread: 4, policy, ...quiet });
      await tracer.pauseDrain();
      const run = startScenario({ trace: tracer.handle, name: 'flood', mode: 'priority-flood', events: N, close: true });
      const done = await run.done;
      assert.equal(done.calls, N);
      tracer.resumeDrain();
      await run.exited;
      const metrics = tracer.metrics();
      await tracer.close();

      const r = openTrace(path);
      const seen = new Set<number>();
      for (const e of r.events()) {
        assert.equal(r.priorityOf(e.id), priorityOfSeq(e.value!), 'each event carries its name priority');
        seen.add(e.value!);
      }
      const { kept, lost } = split(seen, N);
      const firstLoss = Math.min(...PRIORITIES.flatMap((p) => lost.get(p)!));
      assert.ok(Number.isFinite(firstLoss), 'the flood exhausted the pool');

      // Debug before normal; no critical loss while a lower priority is still kept.
      assert.ok(lost.get('debug')!.length > 0 && lost.get('normal')!.length > 0);
      assert.ok(lost.get('debug')![0] < lost.get('normal')![0], 'the first debug loss comes before the first normal one');
      const lowerKeptAfter = Math.max(-1, ...(['normal', 'debug'] as const).flatMap((p) => kept.get(p)!.filter((s) => s > firstLoss)));
      for (const c of lost.get('critical')!) {
        assert.ok(c > lowerKeptAfter, `critical ${c} lost while a lower priority event (${lowerKeptAfter}) was kept after the first loss`);
      }
      if (reserveFills) assert.ok(lost.get('critical')!.length > 0, 'the reserve filled: critical events were lost too');
      else assert.deepEqual(lost.get('critical'), [], 'no critical event lost');
      // The reserve really held critical events while everything else was dropped.
      assert.ok(kept.get('critical')!.filter((s) => s > lowerKeptAfter).length >= 50);

      // Conservation per thread and per priority, against the sequence numbers.
      const [t] = r.summary().threads;
      assert.equal(t.attempted, N);
      assert.equal(t.balanced, true);
      assert.equal(t.unattributedDrops, 0);
      for (const p of PRIORITIES) {
        assert.equal(t.eventsByPriority[p], kept.get(p)!.length, `${p} in the file`);
        assert.equal(t.droppedByPriority[p], lost.get(p)!.length, `${p} dropped`);
      }
      // By reason: debug events are shed (in PRESSURE) or refused for want of room; shed is debug only.
      for (const d of r.drops()) {
        if (d.reason === 'shed') assert.deepEqual(d.byPriority, { normal: 0, critical: 0, debug: d.events });
        else assert.equal(d.reason, 'pool_exhausted');
      }
      assert.ok((t.droppedByReason.shed ?? 0) > 0, 'debug events were shed in PRESSURE');
      assert.equal((t.droppedByReason.shed ?? 0) + (t.droppedByReason.pool_exhausted ?? 0), t.dropped);
      // metrics() says the same, per priority (the writer closed: its counts are final).
      assert.deepEqual(metrics.totals.droppedByPriority, t.droppedByPriority);
    });
  }
});

describe('priorities: the writer is gated only while it must be', () => {
  it('PRESSURE sheds debug events; once NORMAL again, the next swap keeps them', async () => {
    const path = tempTrace('prio-gate');
    const tracer = await Tracer.open({ path, ringSize: '4KiB', ringsPerThread: 4, ...quiet });
    const w = tracer.register('main');
    const dbg = tracer.define('dbg', { priority: 'debug' });
    const n = tracer.define('n');
    assert.throws(() => tracer.define('dbg', { priority: 'critical' }), /keeps the priority it was first defined with/);
    assert.equal(tracer.define('dbg'), dbg, 'without a priority, an existing name keeps its own');
    await tracer.pauseDrain();
    for (let i = 0; i < 400; i++) assert.equal(w.record(n, i), true); // 170 a ring: two swaps, one spare left
    assert.equal(tracer.metrics().threads[0].state, 'pressure');
    for (let i = 0; i < 10; i++) assert.equal(w.record(dbg, i), false, 'debug shed in PRESSURE');
    assert.equal(w.record(n, 400), true, 'normal kept in PRESSURE');
    tracer.resumeDrain();
    for (let i = 0; tracer.metrics().threads[0].state !== 'normal'; i++) {
      assert.ok(i < 2000, 'the drain returns the rings and moves the thread back to NORMAL');
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(w.flush(), true); // a swap: the writer sees NORMAL
    for (let i = 0; i < 10; i++) assert.equal(w.record(dbg, i), true, 'debug kept in NORMAL');
    w.close();
    await tracer.close();
    const t = openTrace(path).summary().threads[0];
    assert.deepEqual(t.droppedByReason, { shed: 10 });
    assert.deepEqual(t.droppedByPriority, { normal: 0, critical: 0, debug: 10 });
    assert.deepEqual(t.eventsByPriority, { normal: 401, critical: 0, debug: 10 });
    assert.equal(t.balanced, true);
  });
});
