/**
 * The drain's scheduling, driven in-process: threads under pressure are served first in a pass,
 * and a busy thread cannot starve a quiet one (per-visit batch limit, rotating start).
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import { BackpressureState, BpState } from '../src/shm/backpressure.js';
import { Drain } from '../src/drain/drain.js';
import { FRAME_BYTES, RecordType, type TraceSink } from '../src/file/format.js';
import { Layout, SharedViews, initControl } from '../src/shm/layout.js';
import { claimSlot, encodeThreadName } from '../src/shm/registry.js';
import { Writer } from '../src/record/writer.js';

function setup(threads: number) {
  const layout = new Layout({ maxThreads: threads, ringsPerThread: 8, ringSize: 4096 });
  const v = new SharedViews(new SharedArrayBuffer(layout.totalBytes), layout);
  initControl(v, Date.now(), performance.timeOrigin + performance.now());
  const thresholds = { pressureSpares: 1, recoverySpares: 2, stabilityUs: 0 };
  // Several writers in one thread: built directly (the public API gives one per thread).
  const writers = Array.from({ length: threads }, (_, k) => {
    const c = claimSlot(v, encodeThreadName(`t${k}`), 1000 + k, 0, 0);
    return new Writer({ views: v, thresholds, clockOffsetMs: 0, flushIntervalMs: 0 }, c.slot, c.registration, `t${k}`, 'drop-oldest');
  });
  /** Thread (registration) of each CHUNK, in write order. */
  const chunks: number[] = [];
  const sink: TraceSink = {
    write(buffers) {
      for (const b of buffers) {
        // Frames start buffers of 16 bytes whose type word is CHUNK; the next buffer is its head.
        if (b.length === FRAME_BYTES && Buffer.from(b.buffer, b.byteOffset, 4).readUInt32LE(0) === RecordType.CHUNK) chunks.push(-1);
        else if (chunks.at(-1) === -1) chunks[chunks.length - 1] = Buffer.from(b.buffer, b.byteOffset, 4).readUInt32LE(0);
      }
    },
    close() {},
  };
  const drain = new Drain(v, sink, {
    batchRings: 1,
    thresholds,
    dropLogIntervalMs: 1e9,
    dropLogEvery: 1,
    now: () => performance.now() * 1e6,
    log: () => {},
  });
  return { v, layout, writers, drain, chunks };
}

/** Hands `rings` full rings of the writer to the drain. */
function submit(w: Writer, rings: number): void {
  for (let r = 0; r < rings; r++) {
    for (let i = 0; i < 100; i++) w.recordAt(i, 1, i);
    assert.equal(w.flush(), true);
  }
}

describe('drain scheduling', () => {
  it('serves a thread in PRESSURE before the others in the same pass', () => {
    const { v, layout, writers, drain, chunks } = setup(4);
    for (const w of writers) submit(w, 2);
    // Thread 3 is under pressure (the round-robin start is slot 0).
    const bp = new BackpressureState(v.i32, v.i64, layout, writers[3].slot);
    assert.equal(bp.transition(BpState.NORMAL, BpState.PRESSURE, 1), true);
    drain.pass();
    assert.equal(chunks[0], writers[3].registration, 'the pressured thread first');
    assert.deepEqual(
      chunks.slice(1),
      [writers[0].registration, writers[1].registration, writers[2].registration],
      'then everyone, one ring each',
    );
  });

  it('a flooding thread cannot starve a quiet one: one ring per visit, start rotates', () => {
    const { writers, drain, chunks } = setup(2);
    const [busy, quiet] = writers;
    submit(busy, 7);
    submit(quiet, 1);
    drain.pass();
    assert.ok(chunks.includes(quiet.registration), "the quiet thread's ring went out in the first pass");
    assert.equal(chunks.filter((t) => t === busy.registration).length, 1, 'the busy thread got its batch (1 ring), not all 7');
    for (let i = 0; i < 10; i++) drain.pass();
    assert.equal(chunks.filter((t) => t === busy.registration).length, 7, 'the rest follows in later passes');
  });
});

describe('drain throttle', () => {
  it('throttleDrain(kib/s) holds the drain to its budget: never more than the rate plus one pass and the 100 ms credit', async () => {
    // An upper bound only: a slow or loaded machine writes less, never more, so this is not a
    // timing assertion that noise can break. The old throttle let a flooded drain write ~16x.
    const { Tracer } = await import('../src/index.js');
    const { tempTrace } = await import('./helpers/scenario.js');
    const ringSize = 4096;
    const ringsPerThread = 8;
    const tracer = await Tracer.open({
      path: tempTrace('throttle'),
      ringSize,
      ringsPerThread,
      flushIntervalMs: 0,
      logLevel: 'error',
      exitHooks: false,
    });
    const w = tracer.register('flood');
    const id = tracer.define('seq');
    const kibps = 64;
    tracer.throttleDrain(kibps);
    const written = () => tracer.metrics().totals.eventsWritten * 24; // value records: 24 B each
    const start = performance.now();
    const before = written();
    while (performance.now() - start < 1000) {
      for (let i = 0; i < 2000; i++) w.record(id, i);
      await new Promise((r) => setImmediate(r));
    }
    const elapsedS = (performance.now() - start) / 1000;
    const bytes = written() - before;
    const bound = kibps * 1024 * (elapsedS + 0.1) + ringsPerThread * ringSize * 2;
    assert.ok(bytes > 0, 'the drain still writes');
    assert.ok(bytes <= bound, `wrote ${bytes} B in ${elapsedS.toFixed(2)} s at ${kibps} KiB/s (bound ${Math.round(bound)} B)`);
    tracer.throttleDrain(0);
    await tracer.close();
  });

  it('pauseDrain() does not wait for a throttled drain to pay its debt', async () => {
    // 8 rings of 64 KiB queued against 16 KiB/s is a debt of about half a minute; the pause must
    // be acknowledged by the next pass, not after it. (A liveness bound with a wide margin: the
    // pause normally settles in milliseconds.)
    const { Tracer } = await import('../src/index.js');
    const { tempTrace } = await import('./helpers/scenario.js');
    const tracer = await Tracer.open({
      path: tempTrace('throttle-pause'),
      ringSize: '64KiB',
      ringsPerThread: 8,
      flushIntervalMs: 0,
      logLevel: 'error',
      exitHooks: false,
    });
    const w = tracer.register('flood');
    const id = tracer.define('seq');
    tracer.throttleDrain(16);
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 30_000; i++) w.record(id, i);
      await new Promise((r) => setTimeout(r, 5));
    }
    const settled = await Promise.race([
      tracer.pauseDrain().then(() => 'paused'),
      new Promise((r) => setTimeout(() => r('still waiting'), 10_000)),
    ]);
    assert.equal(settled, 'paused');
    tracer.resumeDrain();
    tracer.throttleDrain(0);
    await tracer.close();
  });
});
