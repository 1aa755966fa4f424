/**
 * Sampling under pressure (docs/design/backpressure.md, "Sampling under pressure"), with real
 * workers: a worker records about ten times what a throttled drain writes. Without sampling the
 * losses are long contiguous holes; with it, normal events are kept 1 in N all through the
 * overload, every event let go is counted (`sampled`, by priority), and the reader's scaled counts
 * give back what was attempted. Slices and non-normal priorities are never sampled.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Tracer, openTrace } from '../src/index.js';
import { collectInspection, formatInspection } from '../src/cli/inspect.js';
import { keptSequence, startScenario, tempTrace } from './helpers/scenario.js';

const quiet = { logLevel: 'error' as const, exitHooks: false };
/** Events a millisecond the worker aims at (24-byte value records: ~2.3 MiB/s)... */
const PER_MS = 100;
/** ...against a drain throttled to about a tenth of that (chunk headers included). */
const DRAIN_KIBPS = 256;
const EVENTS = 200_000;
const MAX_EVERY = 64;

interface Overload {
  /** Sequence numbers in the file, sorted. */
  kept: number[];
  /** The longest run of consecutive sequence numbers not in the file. */
  longestHole: number;
  path: string;
  calls: number;
}

async function overload(sampling: boolean): Promise<Overload> {
  const path = tempTrace(`sampling-${sampling}`);
  const tracer = await Tracer.open({ path, ringSize: '16KiB', ringsPerThread: 8, sampling, samplingMaxEvery: MAX_EVERY, ...quiet });
  tracer.throttleDrain(DRAIN_KIBPS);
  const run = startScenario({ trace: tracer.handle, name: 'paced', mode: 'paced', events: EVENTS, perMs: PER_MS, close: true });
  try {
    const done = await run.done;
    tracer.throttleDrain(0);
    await run.exited;
    await tracer.close();
    const { kept, longestLostRun: longestHole } = keptSequence(openTrace(path), EVENTS);
    return { kept, longestHole, path, calls: done.calls };
  } finally {
    await run.worker.terminate();
  }
}

describe('sampling under pressure: a 10x overload through a throttled drain', () => {
  it('without sampling the losses are contiguous holes; with it, 1 in N is kept all through, counted and scaled back', async () => {
    const off = await overload(false);
    const on = await overload(true);
    for (const run of [off, on]) assert.equal(run.calls, EVENTS);

    // Without: the pool runs out and whole stretches are lost.
    const offSummary = openTrace(off.path).summary().threads[0];
    assert.ok((offSummary.droppedByReason.pool_exhausted ?? 0) > 0, 'the overload exhausts the pool without sampling');
    assert.ok(off.longestHole > 2 * MAX_EVERY, `a contiguous hole without sampling (longest ${off.longestHole})`);

    // With: no run of lost events as long as 2 x the largest sampling period, and kept events in
    // every fiftieth of the overload.
    const r = openTrace(on.path);
    const [t] = r.summary().threads;
    assert.equal(t.droppedByReason.pool_exhausted ?? 0, 0, 'sampling kept the pool from running out');
    assert.ok((t.droppedByReason.sampled ?? 0) > EVENTS / 2, 'most events were sampled out');
    assert.ok(on.longestHole < 2 * MAX_EVERY, `longest run of lost events ${on.longestHole} < 2 x ${MAX_EVERY}`);
    const buckets = new Set(on.kept.map((s) => Math.floor((s * 50) / EVENTS)));
    assert.equal(buckets.size, 50, 'kept events in every fiftieth of the overload');

    // Exact accounting: every event is in the file or counted, sampled ones by priority (normal).
    assert.equal(t.attempted, EVENTS);
    assert.equal(t.balanced, true);
    assert.equal(t.events + t.dropped, EVENTS);
    assert.equal(EVENTS - on.kept.length, t.dropped, 'the sequence numbers missing are exactly the drops');
    assert.deepEqual(t.droppedByPriority, { normal: t.dropped, critical: 0, debug: 0 });
    for (const d of r.drops()) {
      assert.equal(d.reason, 'sampled');
      assert.deepEqual(d.byPriority, { normal: d.events, critical: 0, debug: 0 });
    }

    // The reader scales the sample back up: in total exactly (kept + sampled), and per name (every
    // 4th event is 'alt') within the sampling error.
    const [sc] = r.scaledCounts();
    assert.equal(sc.sampledOut, t.droppedByReason.sampled);
    const scaled = Object.values(sc.byName).reduce((a, b) => a + b, 0) + sc.unplaced;
    assert.ok(Math.abs(scaled - EVENTS) <= EVENTS * 0.05, `scaled ${scaled} within 5 % of ${EVENTS}`);
    assert.ok(Math.abs(scaled - EVENTS) < 1e-6 * EVENTS, 'and in fact exact');
    const alt = sc.byName.alt;
    assert.ok(Math.abs(alt - EVENTS / 4) <= (EVENTS / 4) * 0.15, `'alt' scaled to ${alt}, attempted ${EVENTS / 4}`);
  });
});

describe('sampling: what is sampled, and when', () => {
  it('only normal instants, values and payloads, only outside NORMAL; slices, critical and debug keep their rules', async () => {
    const path = tempTrace('sampling-kinds');
    const tracer = await Tracer.open({ path, ringSize: '16KiB', ringsPerThread: 4, sampling: true, ...quiet });
    const w = tracer.register('main');
    const n = tracer.define('n');
    const slice = tracer.define('slice');
    const crit = tracer.define('crit', { priority: 'critical' });
    const dbg = tracer.define('dbg', { priority: 'debug' });
    await tracer.pauseDrain();
    // 682 values a ring: the second swap (at the 1365th) leaves one spare: PRESSURE. The drain is paused, so the
    // writer samples hard from there on.
    for (let i = 0; i <= 2 * 682; i++) assert.equal(w.record(n, i), true);
    assert.equal(tracer.metrics().threads[0].state, 'pressure');
    let kept = 0;
    for (let i = 0; i < 100; i++) {
      assert.equal(w.begin(slice), true, 'a begin is never sampled');
      if (w.record(n, 1000 + i)) kept++;
      assert.equal(w.end(slice), true, 'nor an end');
      assert.equal(w.record(crit, i), true, 'nor a critical event');
      assert.equal(w.record(dbg, i), false, 'a debug event is shed, not sampled');
    }
    assert.ok(kept > 0 && kept < 50, `1 in N of the normal values kept (${kept} of 100)`);
    tracer.resumeDrain();
    for (let i = 0; tracer.metrics().threads[0].state !== 'normal'; i++) {
      assert.ok(i < 2000, 'the drain returns the rings and moves the thread back to NORMAL');
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(w.flush(), true); // a swap: the writer sees NORMAL and stops sampling
    for (let i = 0; i < 20; i++) assert.equal(w.record(n, 2000 + i), true, 'kept in NORMAL');
    w.close();
    await tracer.close();
    const r = openTrace(path);
    const t = r.summary().threads[0];
    assert.deepEqual(t.droppedByReason, { sampled: 100 - kept, shed: 100 });
    assert.deepEqual(t.droppedByPriority, { normal: 100 - kept, critical: 0, debug: 100 });
    assert.deepEqual(t.eventsByPriority, { normal: 2 * 682 + 1 + 200 + kept + 20, critical: 100, debug: 0 });
    assert.equal(t.balanced, true);
    const [sc] = r.scaledCounts();
    assert.equal(sc.byName.slice, 200);
    assert.equal(sc.byName.crit, 100);
    assert.ok(Math.abs(sc.byName.n - (2 * 682 + 1 + 120)) < 1e-9, `n scaled to ${sc.byName.n}`);
    // `ringtrace inspect` shows the sample and its scaled counts.
    const text = formatInspection(collectInspection(r));
    assert.match(text, /^sampled under pressure/m);
    assert.match(text, new RegExp(`^\\s+0 main\\s+n\\s+${2 * 682 + 1 + kept + 20}\\s+${2 * 682 + 1 + 120}$`, 'm'));
    assert.match(text, new RegExp(`^\\s+0 main\\s+slice\\s+200\\s+200$`, 'm'));
  });
});
