/**
 * The recording pipeline end to end, with real worker threads: every event recorded reaches the
 * file exactly once and in per-thread order, or is counted as dropped; slots are claimed,
 * released and reused cleanly; dead threads are salvaged.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CapacityError, Tracer, openTrace } from '../src/index.js';
import { readBack, recordExact, startScenario, tempTrace } from './helpers/scenario.js';

const quiet = { logLevel: 'error' as const, exitHooks: false };

function assertContiguous(values: number[], count: number, label: string): void {
  assert.equal(values.length, count, `${label}: event count`);
  for (let i = 0; i < values.length; i++) {
    if (values[i] !== i) assert.fail(`${label}: event ${i} has sequence ${values[i]} (lost, duplicated or reordered)`);
  }
}

describe('pipeline: main + 8 workers, random payloads, nothing dropped', () => {
  it('reads back every event exactly once, in order, bytes intact', async () => {
    const path = tempTrace('exact');
    const tracer = await Tracer.open({ path, ringSize: '256KiB', ringsPerThread: 8, maxThreads: 16, ...quiet });
    const N = 100_000;
    const runs = Array.from({ length: 8 }, (_, k) =>
      startScenario({
        trace: tracer.handle,
        name: `w${k}`,
        mode: 'exact',
        events: N,
        bytesRatio: 0.1,
        maxPayload: 3000,
        seed: k + 1,
        close: k % 2 === 0,
      }),
    );
    // The main thread records too, with the same discipline.
    recordExact(tracer.register('main'), { seq: tracer.define('seq'), blob: tracer.define('blob') }, N, 10, 3, 3000);
    const done = (await Promise.all(runs.map((r) => r.done))) as Array<{ metrics: { eventsAttempted: number } }>;
    // Each worker's own metrics() after its last record: exact, and equal to what reaches the file.
    for (const d of done) assert.equal(d.metrics.eventsAttempted, N, 'metrics().eventsAttempted in the worker');
    assert.equal(tracer.metrics().threads.find((t) => t.name === 'main')!.eventsAttempted, N);
    await Promise.all(runs.map((r) => r.exited));
    const summary = await tracer.close();
    assert.ok(summary);
    assert.equal(summary.dropped, 0, 'nothing may be dropped in this test');
    assert.equal(summary.threads.length, 9);
    assert.ok(summary.balanced);

    const r = openTrace(path);
    assert.equal(r.complete, true);
    assert.equal(r.damage, undefined);
    const s = r.summary();
    assert.equal(s.totals.dropped, 0);
    assert.equal(s.totals.events, 9 * N);
    for (const t of s.threads) {
      assert.equal(t.attempted, N, `${t.name} attempted`);
      assert.equal(t.events, N, `${t.name} events in file`);
      assert.equal(t.balanced, true);
    }
    const back = readBack(r);
    for (const [name, c] of back) {
      assertContiguous(c.values, N, name);
      assert.equal(c.payloadErrors, 0, `${name}: payload bytes intact`);
    }
    // Odd workers did not close their writer: the drain salvaged their last ring on exit.
    const ends = new Map(r.threads.map((t) => [t.name, t.endReason]));
    assert.equal(ends.get('w0'), 'closed');
    assert.equal(ends.get('w1'), 'exited');
    assert.equal(ends.get('main'), 'closed');
    // Timestamps are non-decreasing per thread.
    const lastTs = new Map<number, number>();
    for (const e of r.events()) {
      assert.ok(e.ts >= (lastTs.get(e.thread) ?? 0), 'timestamps non-decreasing per thread');
      lastTs.set(e.thread, e.ts);
    }
  });
});

describe('pipeline: 64 workers', () => {
  it('gives each worker its own slot and keeps every event', async () => {
    const path = tempTrace('64');
    const tracer = await Tracer.open({ path, ringSize: '64KiB', ringsPerThread: 4, maxThreads: 65, ...quiet });
    const N = 3000;
    const control = new SharedArrayBuffer(8);
    const runs = Array.from({ length: 64 }, (_, k) =>
      startScenario({
        trace: tracer.handle,
        name: `w${k}`,
        mode: 'exact',
        events: N,
        bytesRatio: 0.05,
        maxPayload: 512,
        seed: 100 + k,
        close: true,
        control,
        hold: true,
      }),
    );
    // All 64 hold after registering, so they are registered at the same time.
    const slots = await Promise.all(runs.map((r) => r.registered));
    Atomics.store(new Int32Array(control), 0, 1);
    Atomics.notify(new Int32Array(control), 0);
    assert.equal(new Set(slots.map((s) => s.slot)).size, 64, 'distinct slots');
    assert.equal(new Set(slots.map((s) => s.registration)).size, 64, 'distinct registrations');
    // The main thread records alongside them, with payloads too.
    recordExact(tracer.register('main'), { seq: tracer.define('seq'), blob: tracer.define('blob') }, N, 20, 7, 512);
    await Promise.all(runs.map((r) => r.done));
    await Promise.all(runs.map((r) => r.exited));
    const summary = await tracer.close();
    assert.ok(summary?.balanced);
    assert.equal(summary.dropped, 0);
    const r = openTrace(path);
    assert.equal(r.threads.length, 65);
    for (const [name, c] of readBack(r)) {
      assertContiguous(c.values, N, name);
      assert.equal(c.payloadErrors, 0, `${name}: payload bytes intact`);
    }
  });
});

describe('registry', () => {
  it('refuses registration past capacity with a typed error that says how to raise it', async () => {
    const tracer = await Tracer.open({ path: tempTrace('cap'), maxThreads: 2, ...quiet });
    const mine = tracer.register('main');
    const control = new SharedArrayBuffer(8);
    const a = startScenario({ trace: tracer.handle, name: 'a', mode: 'register-only', events: 0, control, hold: true });
    await a.registered;
    const b = startScenario({ trace: tracer.handle, name: 'b', mode: 'register-only', events: 0 });
    await b.exited;
    const err = b.messages.find((m) => (m as { type: string }).type === 'error') as { name: string; message: string };
    assert.equal(err.name, 'CapacityError');
    assert.match(err.message, /all 2 thread slots/);
    assert.match(err.message, /maxThreads/);
    assert.match(err.message, /RINGTRACE_MAX_THREADS/);
    assert.equal(Tracer.attach(tracer.handle).register('again?'), mine, 'same thread: same writer, no new slot');
    assert.ok(new CapacityError(2) instanceof Error);
    Atomics.store(new Int32Array(control), 0, 1);
    await a.exited;
    await tracer.close();
  });

  it('returns the same writer on a second register() from the same thread', async () => {
    const tracer = await Tracer.open({ path: tempTrace('same'), ...quiet });
    const w1 = tracer.register('x');
    assert.equal(tracer.register('y'), w1);
    assert.equal(Tracer.attach(tracer.handle), tracer);
    await tracer.close();
  });

  it('reuses a slot after its thread exits, with no stale data, and salvages the old events', async () => {
    const path = tempTrace('reuse');
    const tracer = await Tracer.open({ path, maxThreads: 1, ringSize: '64KiB', ...quiet });
    const first = startScenario({ trace: tracer.handle, name: 'first', mode: 'exact', events: 5000, close: false });
    await first.done;
    await first.exited; // leaves its slot LIVE with a partial ring: the drain salvages it
    const second = startScenario({ trace: tracer.handle, name: 'second', mode: 'register-retry', events: 700, close: true });
    const done = (await second.done) as { kept: number; metrics: { eventsAttempted: number; name: string } };
    assert.equal(done.metrics.name, 'second', 'the reused slot carries the new name');
    assert.equal(done.metrics.eventsAttempted, 700, 'counters start at zero in a reused slot');
    await second.exited;
    const summary = await tracer.close();
    assert.ok(summary?.balanced);
    const r = openTrace(path);
    assert.deepEqual(
      r.threads.map((t) => [t.name, t.slot, t.endReason]),
      [
        ['first', 0, 'exited'],
        ['second', 0, 'closed'],
      ],
    );
    const back = readBack(r);
    assertContiguous(back.get('first')!.values, 5000, 'first');
    assertContiguous(back.get('second')!.values, 700, 'second');
  });
});

describe('salvage', () => {
  it('keeps what a terminated worker committed and counts the rest', async () => {
    const path = tempTrace('terminate');
    const tracer = await Tracer.open({ path, ...quiet });
    const control = new SharedArrayBuffer(8);
    // drop-oldest: record() always keeps the newest event, so the file must reach the last
    // progress mark the worker published (after recording it) before it was terminated.
    const run = startScenario({ trace: tracer.handle, name: 'victim', mode: 'forever', events: 0, control, policy: 'drop-oldest' });
    await run.registered;
    const progress = new Int32Array(control);
    while (Atomics.load(progress, 1) < 200_000) await new Promise((r) => setTimeout(r, 5));
    await run.worker.terminate();
    const lastMark = Atomics.load(progress, 1);
    const summary = await tracer.close();
    assert.ok(summary);
    const t = summary.threads.find((x) => x.name === 'victim')!;
    assert.equal(t.endReason, 'exited');
    assert.ok(t.attempted >= 200_000);
    assert.equal(t.attempted, t.events + t.dropped, 'attempted = in file + dropped');
    const r = openTrace(path);
    const values = readBack(r).get('victim')!.values;
    // Kept events are strictly increasing; every gap is covered by counted drops.
    let gaps = 0;
    for (let i = 1; i < values.length; i++) {
      assert.ok(values[i] > values[i - 1], 'strictly increasing');
      gaps += values[i] - values[i - 1] - 1;
    }
    gaps += values[0];
    const tail = t.attempted - 1 - values[values.length - 1];
    assert.equal(gaps + tail, t.dropped, 'missing sequence numbers = dropped events');
    // The salvage kept the active ring: at most the one event in flight is lost to the exit.
    assert.ok(
      values[values.length - 1] >= lastMark,
      `the newest committed events are in the file (last ${values[values.length - 1]}, mark ${lastMark})`,
    );
    assert.ok((t.droppedByReason.thread_exit ?? 0) <= 1, `thread_exit ${t.droppedByReason.thread_exit}`);
  });
});

describe('writer edge cases', () => {
  it('counts a record larger than a ring as record_too_large, and records after close as closed', async () => {
    const path = tempTrace('edges');
    const tracer = await Tracer.open({ path, ringSize: '4KiB', ...quiet });
    const w = tracer.register('edge');
    const id = tracer.define('e');
    assert.equal(w.record(id, 1), true);
    assert.equal(w.recordBytes(id, new Uint8Array(5000)), false);
    assert.throws(() => w.recordBytes(id, [1, 2, 3] as unknown as Uint8Array), TypeError);
    w.close();
    assert.equal(w.record(id, 2), false);
    assert.equal(w.droppedAfterClose, 1);
    const summary = await tracer.close();
    assert.equal(summary?.droppedAfterClose, 1);
    const t = summary!.threads[0];
    assert.deepEqual(t.droppedByReason, { record_too_large: 1 });
    assert.equal(t.attempted, 2, 'the thrown TypeError was not an attempt; after close() is not this registration');
    assert.equal(t.events, 1);
    const r = openTrace(path);
    const drops = r.drops();
    assert.equal(drops.length, 1);
    assert.equal(drops[0].reason, 'record_too_large');
    assert.equal(drops[0].bytes, 16 + 5000);
  });
});

describe('closing around a busy thread', () => {
  it('events a busy thread records after the close are counted as closed, not lost silently', async () => {
    const path = tempTrace('busy-close');
    const tracer = await Tracer.open({ path, closeTimeoutMs: 100, ...quiet });
    const control = new SharedArrayBuffer(8);
    const run = startScenario({ trace: tracer.handle, name: 'busy', mode: 'until-closed', events: 0, control });
    await run.registered;
    while (Atomics.load(new Int32Array(control), 1) === 0) await new Promise((r) => setTimeout(r, 5));
    const summary = await tracer.close();
    const t = summary!.threads.find((x) => x.name === 'busy')!;
    assert.equal(t.endReason, 'tracer_closed');
    // What it held at the close is collected from its active ring; only an event in flight (counted
    // as attempted, not yet committed) can be `unflushed`.
    assert.ok(t.events > 0, 'its committed events are in the file');
    assert.equal(t.balanced, true);
    const done = (await run.done) as { metrics: { attempted: number; droppedAfterClose: number } };
    await run.exited;
    // Everything it ever recorded: accounted at the close, or counted as closed afterwards.
    assert.equal(done.metrics.attempted, t.attempted + done.metrics.droppedAfterClose);
    assert.ok(done.metrics.droppedAfterClose > 0);
    assert.equal(tracer.metrics().totals.droppedAfterClose, done.metrics.droppedAfterClose);
    const r = openTrace(path);
    assert.equal(r.summary().threads[0].balanced, true);
    assert.equal(r.summary().threads[0].events, t.events);
  });

  it('a writer closing while the drain retires it: every event accounted once (seized or closed)', async (ctx) => {
    // The drain's final pass seizes live writers (LIVE -> RETIRING); a writer closing at the same
    // moment either wins (CLOSING, an ordinary close) or learns what the drain accounted and
    // counts the rest as closed. Random timing puts the close on both sides of the seizure.
    const outcomes = { closed: 0, seized: 0 };
    for (let round = 0; round < 8; round++) {
      const path = tempTrace(`close-race-${round}`);
      const tracer = await Tracer.open({ path, ringSize: '4KiB', closeTimeoutMs: 0, ...quiet });
      const runs = Array.from({ length: 4 }, (_, k) => {
        const control = new SharedArrayBuffer(8);
        const run = startScenario({
          trace: tracer.handle,
          name: `r${k}`,
          mode: 'close-race',
          events: 4000 << k,
          seed: round * 4 + k + 1,
          close: k % 2 === 1,
          control,
        });
        return { run, control: new Int32Array(control) };
      });
      for (const { run, control } of runs) {
        await run.registered;
        while (Atomics.load(control, 1) === 0) await new Promise((r) => setTimeout(r, 1));
      }
      for (const { control } of runs) Atomics.store(control, 0, 1);
      const summary = await tracer.close();
      assert.equal(
        summary!.balanced,
        true,
        `round ${round}: ${JSON.stringify({ complete: summary!.complete, threads: summary!.threads.map((t) => [t.name, t.endReason, t.attempted, t.events, t.droppedByReason]) })}`,
      );
      const read = openTrace(path).summary();
      for (const [k, { run }] of runs.entries()) {
        const done = (await run.done) as { metrics: { attempted: number; droppedAfterClose: number } };
        await run.exited;
        const t = summary!.threads.find((x) => x.name === `r${k}`)!;
        outcomes[t.endReason === 'closed' ? 'closed' : 'seized']++;
        assert.equal(
          done.metrics.attempted,
          t.attempted + done.metrics.droppedAfterClose,
          `round ${round} r${k} (${t.endReason}): record() calls = accounted at close + counted as closed`,
        );
        const inFile = read.threads.find((x) => x.name === `r${k}`)!;
        assert.equal(inFile.events, t.events);
        assert.equal(inFile.balanced, true);
      }
    }
    // Which side won is timing; both usually occur (e.g. 15 closed / 17 seized). Reported, not
    // asserted: a loaded machine may put every close on one side.
    ctx.diagnostic(`outcomes: ${JSON.stringify(outcomes)}`);
  });

  it('a thread seized at the close that then exits without noticing: its later events are counted when it exits', async () => {
    const path = tempTrace('seized-exit');
    // A ring big enough (1M records) that the worker does not fill it, and so notice the close in
    // its slow path, however long a loaded machine takes to close.
    const tracer = await Tracer.open({ path, ringSize: '16MiB', ringsPerThread: 2, maxThreads: 2, closeTimeoutMs: 20, ...quiet });
    const control = new SharedArrayBuffer(8);
    const c = new Int32Array(control);
    const run = startScenario({ trace: tracer.handle, name: 'slow', mode: 'slow-exit', events: 2000, control });
    await run.registered;
    while (Atomics.load(c, 1) === 0) await new Promise((r) => setTimeout(r, 1));
    const summary = await tracer.close();
    const t = summary!.threads.find((x) => x.name === 'slow')!;
    assert.equal(t.endReason, 'tracer_closed');
    Atomics.store(c, 0, 1); // records 2000 more, never reaching the slow path, then ends
    const done = (await run.done) as { metrics: { attempted: number; droppedAfterClose: number; closed: boolean } };
    await run.exited;
    await new Promise((r) => setImmediate(r));
    assert.equal(done.metrics.closed, false, 'the writer never noticed');
    const late = tracer.metrics().totals.droppedAfterClose;
    assert.ok(late >= 2000, `its events after the close are counted (${late})`);
    assert.equal(done.metrics.attempted, t.attempted + late, 'record() calls = accounted at close + counted when it exited');
  });

  it('await pauseDrain(): from then on the drain takes no ring, even from a thread flooding it', async () => {
    const path = tempTrace('pause-ack');
    const tracer = await Tracer.open({ path, ringSize: '4KiB', ringsPerThread: 4, ...quiet });
    const control = new SharedArrayBuffer(8);
    const run = startScenario({ trace: tracer.handle, name: 'flood', mode: 'forever', events: 0, control });
    const { slot } = await run.registered;
    const chunks = () => tracer.metrics().threads.find((t) => t.slot === slot)!.chunksWritten;
    const c = new Int32Array(control);
    try {
      for (let round = 0; round < 5; round++) {
        // Let the drain work on a flood (it is mid-pass most of the time), then pause it.
        const from = chunks();
        while (chunks() < from + 8) await new Promise((r) => setTimeout(r, 1));
        await tracer.pauseDrain();
        const paused = chunks();
        const seq = Atomics.load(c, 1);
        while (Atomics.load(c, 1) < seq + 20_000) await new Promise((r) => setTimeout(r, 1)); // the flood goes on
        assert.equal(chunks(), paused, `round ${round}: a chunk was written after pauseDrain() resolved`);
        tracer.resumeDrain();
      }
    } finally {
      await run.worker.terminate();
    }
    const summary = await tracer.close();
    assert.equal(summary!.balanced, true);
    // Resolves at once when there is no drain to wait for.
    await tracer.pauseDrain();
  });

  it('close() takes everything even while the drain is paused, and removes its process hooks', async () => {
    const before = ['exit', 'beforeExit', 'SIGINT', 'SIGTERM', 'worker'].map((e) => process.listenerCount(e));
    const tracer = await Tracer.open({ path: tempTrace('paused-close'), logLevel: 'error' }); // exit hooks on
    assert.ok(process.listenerCount('exit') > before[0], 'exit hook installed');
    const w = tracer.register('p');
    const id = tracer.define('e');
    await tracer.pauseDrain();
    for (let i = 0; i < 100; i++) w.record(id, i);
    w.flush();
    const summary = await tracer.close();
    assert.equal(summary!.threads[0].events, 100);
    assert.equal(summary!.balanced, true);
    assert.deepEqual(
      ['exit', 'beforeExit', 'SIGINT', 'SIGTERM', 'worker'].map((e) => process.listenerCount(e)),
      before,
    );
  });

  it('recordAt() and tracer.now(): one clock for all threads, non-decreasing per thread', async () => {
    const path = tempTrace('clock');
    const tracer = await Tracer.open({ path, ...quiet });
    const w = tracer.register('clock');
    const id = tracer.define('t');
    const t0 = tracer.now();
    w.recordAt(t0 + 1000, id, 1);
    w.recordAt(t0 + 500, id, 2); // earlier than the previous: raised to it
    w.record(id, 3);
    const run = startScenario({ trace: tracer.handle, name: 'other', mode: 'exact', events: 1, close: true });
    await run.done;
    await run.exited;
    const t1 = tracer.now();
    w.close();
    await tracer.close();
    const r = openTrace(path);
    const mine = [...r.events()].filter((e) => r.threads[e.thread].name === 'clock');
    assert.deepEqual(mine.map((e) => e.ts).slice(0, 2), [t0 + 1000, t0 + 1000]);
    assert.ok(mine[2].ts >= t0 + 1000);
    const theirs = [...r.events()].find((e) => r.threads[e.thread].name === 'other')!;
    assert.ok(theirs.ts > t0 && theirs.ts < t1, 'a worker timestamps on the same clock');
  });
});

describe('API misuse', () => {
  it('ids are not validated on the hot path, but a bad id never corrupts the ring', async () => {
    const path = tempTrace('ids');
    const tracer = await Tracer.open({ path, ...quiet });
    const w = tracer.register('misuse');
    const ok = tracer.define('ok');
    const bad = [1.5, undefined, -1, Number.NaN, 2 ** 40] as unknown as number[];
    for (const id of bad) assert.equal(w.record(id, 7), true);
    w.record(ok, 8);
    assert.throws(() => tracer.define(''), TypeError);
    assert.throws(() => tracer.define('x'.repeat(200)), RangeError);
    assert.throws(() => tracer.register('y', { policy: 'drop-sideways' as never }), /policy/);
    assert.throws(() => Tracer.attach({} as never), /needs the `handle` of an open tracer/);
    w.close();
    await tracer.close();
    const r = openTrace(path);
    assert.equal(r.damage, undefined);
    const events = [...r.events()];
    // Stored as ToUint32(id): 1.5 -> 1, undefined/NaN -> 0, -1 -> 2^32 - 1, 2^40 -> 0.
    assert.deepEqual(
      events.map((e) => e.id),
      [1, 0, 4294967295, 0, 0, ok],
    );
    assert.deepEqual(
      events.map((e) => e.value),
      [7, 7, 7, 7, 7, 8],
    );
    assert.equal(events[5].name, 'ok');
    assert.equal(events[2].name, undefined, 'an id define() never returned has no name');
  });
});

describe('periodic flush and configuration', () => {
  it("a live thread's partial ring reaches the file without a swap, flush or close", async () => {
    const path = tempTrace('periodic');
    const tracer = await Tracer.open({ path, flushIntervalMs: 20, ...quiet });
    const w = tracer.register('idle-but-alive');
    const id = tracer.define('e');
    for (let i = 0; i < 10; i++) w.record(id, i);
    for (let i = 0; i < 500 && tracer.metrics().threads[0].eventsWritten < 10; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(tracer.metrics().threads[0].eventsWritten, 10, 'written by the periodic flush');
    await tracer.close();
  });

  it('Tracer.open applies RINGTRACE_* variables and a RINGTRACE_CONFIG file, options winning', async () => {
    const dir = tempTrace('cfg').replace(/trace\.rtrace$/, '');
    const file = `${dir}ringtrace.toml`;
    const { writeFileSync } = await import('node:fs');
    writeFileSync(file, 'ring_size = "16KiB"\npolicy = "drop-newest"\nstability_ms = "100ms"\n');
    const env = { RINGTRACE_CONFIG: file, RINGTRACE_RINGS_PER_THREAD: '6', RINGTRACE_POLICY: 'drop-oldest' };
    const tracer = await Tracer.open({ path: `${dir}t.rtrace`, env, maxThreads: 3, ...quiet });
    const c = tracer.resolvedConfig!;
    assert.equal(c.config.ringSize, 16 * 1024);
    assert.equal(c.sources.ringSize.kind, 'file');
    assert.equal(c.config.ringsPerThread, 6);
    assert.deepEqual(c.sources.ringsPerThread, { kind: 'env', name: 'RINGTRACE_RINGS_PER_THREAD' });
    assert.equal(c.config.policy, 'drop-oldest', 'env beats the file');
    assert.equal(c.config.maxThreads, 3);
    assert.equal(tracer.handle.thresholds.stabilityUs, 100_000);
    assert.equal(
      tracer.sharedBytes,
      new (await import('../src/shm/layout.js')).Layout({ maxThreads: 3, ringsPerThread: 6, ringSize: 16384 }).totalBytes,
    );
    assert.equal(tracer.register('x').policy, 'drop-oldest');
    await tracer.close();
    await assert.rejects(
      Tracer.open({ env: { RINGTRACE_RING_SIZE: '65000' }, ...quiet }),
      /ringSize = "65000" from env RINGTRACE_RING_SIZE/,
    );
  });
});
