/**
 * The corner cases of docs/design/backpressure.md, for both drop policies, on a real tracer (its
 * drain runs in its own worker): flush() and the periodic flush with no spare ring, a drain paused
 * longer than the stability period, records too large for a ring (also while the pool is
 * exhausted); and how an idle drop-newest thread's losses reach the file once spares are back.
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import { Tracer, openTrace, type ThreadSummary } from '../src/index.js';
import { Drain } from '../src/drain/drain.js';
import { Ctl, ControlFlag, Layout, SharedViews, Slot, initControl, policyCode } from '../src/shm/layout.js';
import { collectMetrics, type ThreadMetrics } from '../src/metrics/metrics.js';
import { SpscQueue } from '../src/shm/pool.js';
import { claimSlot, encodeThreadName } from '../src/shm/registry.js';
import { Writer } from '../src/record/writer.js';
import type { LogEntry } from '../src/logger.js';
import { readBack, startScenario, tempTrace } from './helpers/scenario.js';

const quiet = { logLevel: 'error' as const, exitHooks: false };
const POLICIES = ['drop-oldest', 'drop-newest'] as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** 4 rings of 4 KiB hold about 680 value records (24 B): EXHAUST of them exhaust the pool. */
const SMALL = { ringSize: '4KiB', ringsPerThread: 4 } as const;
const EXHAUST = 2000;

const threadOf = (tracer: Tracer, w: Writer): ThreadMetrics => tracer.metrics().threads.find((t) => t.slot === w.slot)!;

/** Polls (bounded) until `ok()`; a condition that never holds fails the test. */
async function until(ok: () => boolean, what: string, tries = 1000, everyMs = 10): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (ok()) return;
    await sleep(everyMs);
  }
  throw new Error(`timed out waiting for: ${what}`);
}

/** A bytes payload carrying its sequence number in its first 8 bytes, the rest derived from it,
 * so that a kept bytes event can be checked on its own (whatever was dropped before it). */
function seqPayload(seq: number, len: number): Uint8Array {
  const p = new Uint8Array(Math.max(8, len));
  for (let i = 8; i < p.length; i++) p[i] = (seq * 31 + i) & 255;
  new DataView(p.buffer).setFloat64(0, seq, true);
  return p;
}

/**
 * Reads the single thread of a trace back: no damage, complete; every kept event intact (a value
 * event carries its sequence number, a bytes event carries it in its checked payload); sequence
 * numbers strictly increasing; the missing ones exactly the dropped count; attempted = the
 * record*() calls the test made.
 */
function readSingleThread(path: string, calls: number): { seqs: number[]; t: ThreadSummary } {
  const r = openTrace(path);
  assert.equal(r.damage, undefined, 'no damage');
  assert.equal(r.complete, true, 'the file was finalized');
  const s = r.summary();
  assert.equal(s.threads.length, 1);
  const t = s.threads[0];
  const seqs: number[] = [];
  for (const e of r.events()) {
    if (e.kind === 'value') seqs.push(e.value!);
    else if (e.kind === 'bytes') {
      const seq = new DataView(e.payload!.buffer, e.payload!.byteOffset).getFloat64(0, true);
      assert.ok(Buffer.from(seqPayload(seq, e.payload!.length)).equals(e.payload!), `bytes event ${seq} intact`);
      seqs.push(seq);
    } else assert.fail(`unexpected ${e.kind} event`);
  }
  for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1], 'sequence numbers strictly increasing');
  assert.equal(t.attempted, calls, 'attempted = the record*() calls made');
  assert.equal(t.balanced, true, `attempted ${t.attempted} = events ${t.events} + dropped ${t.dropped}`);
  assert.equal(seqs.length, t.events);
  assert.equal(calls - seqs.length, t.dropped, 'the missing sequence numbers are exactly the dropped events');
  return { seqs, t };
}

/** Records value events 0..n-1 on a pool the paused drain does not refill; returns how many
 * record() kept. */
function exhaust(w: Writer, id: number, n = EXHAUST): number {
  let kept = 0;
  for (let seq = 0; seq < n; seq++) if (w.record(id, seq)) kept++;
  return kept;
}

/** What must not change while a thread sits exhausted behind a paused drain. */
const frozen = (m: ThreadMetrics) => ({
  state: m.state,
  attempted: m.eventsAttempted,
  written: m.eventsWritten,
  dropped: m.eventsDropped,
  byReason: m.droppedByReason,
  swaps: m.swaps,
  exhaustions: m.exhaustions,
  freeSpares: m.freeSpares,
  chunks: m.chunksWritten,
});

describe('flush with no spare ring', () => {
  for (const policy of POLICIES) {
    it(`${policy}: flush() ${policy === 'drop-oldest' ? 'returns false and loses nothing' : 'returns true (nothing is buffered)'}`, async () => {
      const path = tempTrace(`flush-nospare-${policy}`);
      const tracer = await Tracer.open({ path, ...SMALL, policy, flushIntervalMs: 0, ...quiet });
      await tracer.pauseDrain();
      const w = tracer.register('f');
      const id = tracer.define('seq');
      const kept = exhaust(w, id);
      const before = threadOf(tracer, w);
      assert.equal(before.state, 'dropping');
      assert.equal(w.spareRings(), 0);
      assert.ok(before.eventsDropped > 0);
      for (let i = 0; i < 3; i++) assert.equal(w.flush(), policy === 'drop-newest', `flush #${i} with no spare ring`);
      assert.deepEqual(frozen(threadOf(tracer, w)), frozen(before), 'the flush changed nothing: no hand-over, no loss');
      w.close();
      const summary = (await tracer.close())!;
      assert.ok(summary.balanced);
      assert.deepEqual(
        summary.threads[0].droppedByReason,
        { pool_exhausted: before.eventsDropped },
        'no loss beyond the exhaustion (nothing unflushed)',
      );
      const { seqs } = readSingleThread(path, EXHAUST);
      if (policy === 'drop-oldest') {
        assert.equal(kept, EXHAUST, 'drop-oldest keeps every new event');
        assert.equal(seqs.at(-1), EXHAUST - 1, 'what the active ring held at the flush reached the file: the newest event survives');
      } else {
        assert.deepEqual(
          seqs,
          Array.from({ length: kept }, (_, i) => i),
          'the oldest events, up to the exhaustion',
        );
      }
    });

    it(`${policy}: the periodic flush with no spare ring changes nothing`, async () => {
      const path = tempTrace(`periodic-nospare-${policy}`);
      const tracer = await Tracer.open({ path, ...SMALL, policy, flushIntervalMs: 10, ...quiet });
      await tracer.pauseDrain();
      const w = tracer.register('p');
      const id = tracer.define('seq');
      const v = new SharedViews(tracer.handle.buffer, new Layout(tracer.handle.geometry));
      const flushes = () => Atomics.load(v.i32, v.layout.slotI32(w.slot, Slot.FLUSHES));
      const kept = exhaust(w, id);
      const before = threadOf(tracer, w);
      assert.equal(before.state, 'dropping');
      const f0 = flushes();
      await until(() => flushes() >= f0 + 3, 'three periodic flushes while exhausted');
      assert.deepEqual(frozen(threadOf(tracer, w)), frozen(before), 'the periodic flushes changed nothing');
      w.close();
      const summary = (await tracer.close())!;
      assert.ok(summary.balanced);
      assert.deepEqual(summary.threads[0].droppedByReason, { pool_exhausted: before.eventsDropped });
      const { seqs } = readSingleThread(path, EXHAUST);
      if (policy === 'drop-oldest') assert.equal(seqs.at(-1), EXHAUST - 1, 'the newest event survives');
      else assert.equal(seqs.length, kept);
    });
  }
});

describe('drain paused longer than the stability period', () => {
  for (const policy of POLICIES) {
    it(`${policy}: the thread stays DROPPING (recovery needs spares back, not time)`, async () => {
      const stabilityMs = 20;
      const path = tempTrace(`paused-long-${policy}`);
      const tracer = await Tracer.open({ path, ...SMALL, policy, stabilityMs, drainIdleMs: 5, flushIntervalMs: 10, ...quiet });
      await tracer.pauseDrain();
      const w = tracer.register('paused');
      const id = tracer.define('seq');
      let kept = exhaust(w, id);
      let calls = EXHAUST;
      assert.equal(threadOf(tracer, w).state, 'dropping');
      const heartbeat0 = tracer.metrics().drain.heartbeat;
      const t0 = performance.now();
      // Poll (bounded) until the paused drain has visited the thread many times and the stability
      // period has passed ten times over, recording a little between polls: the state must be
      // DROPPING at every look.
      for (let poll = 0; ; poll++) {
        assert.ok(poll < 1000, 'the drain kept visiting while paused');
        await sleep(10);
        for (let i = 0; i < 20; i++, calls++) if (w.record(id, calls)) kept++;
        const m = tracer.metrics();
        const t = m.threads.find((x) => x.slot === w.slot)!;
        assert.equal(t.state, 'dropping', `poll ${poll}: still dropping (${(performance.now() - t0).toFixed(0)} ms paused)`);
        assert.equal(m.drain.paused, true);
        if (poll >= 5 && m.drain.heartbeat >= heartbeat0 + 10 && performance.now() - t0 >= 10 * stabilityMs) break;
      }
      const t = threadOf(tracer, w);
      assert.equal(t.transitions['dropping->recovery'], 0);
      assert.equal(t.timeInStateMs.recovery, 0);
      assert.equal(t.chunksWritten, 0, 'nothing was drained meanwhile');
      if (policy === 'drop-oldest') assert.equal(kept, calls, 'drop-oldest kept recording every new event');
      else assert.equal(t.eventsDropped, calls - kept, 'drop-newest counted every refused event');
      w.close();
      const summary = (await tracer.close())!;
      assert.ok(summary.balanced);
      const { seqs } = readSingleThread(path, calls);
      if (policy === 'drop-oldest') assert.equal(seqs.at(-1), calls - 1, 'the ring kept the newest events');
      else
        assert.deepEqual(
          seqs,
          Array.from({ length: kept }, (_, i) => i),
          'the oldest events survive',
        );
    });
  }
});

describe("the drain's recovery check against a writer exhausting at the same moment", () => {
  // The race: the drain counts the free spares, the writer (another thread) takes them, fills
  // them and exhausts its pool again, then the drain decides on its stale count. Seen with real
  // threads under CPU load (the recovery test, ~1 run in 60) before checkRecovery read the state
  // word first and onExhausted restamped a DROPPING word; here the interleaving is forced: the
  // writer's pops happen inside the drain's free.size(), after the state word was read.
  it('a paused drain never moves a thread that just exhausted its pool out of DROPPING', () => {
    const layout = new Layout({ maxThreads: 1, ringsPerThread: 4, ringSize: 4096 });
    const v = new SharedViews(new SharedArrayBuffer(layout.totalBytes), layout);
    initControl(v, Date.now(), performance.timeOrigin + performance.now());
    const thresholds = { pressureSpares: 1, recoverySpares: 2, stabilityUs: 0 };
    const c = claimSlot(v, encodeThreadName('w'), 1, policyCode('drop-newest'), 0);
    const w = new Writer({ views: v, thresholds, clockOffsetMs: 0, flushIntervalMs: 0 }, c.slot, c.registration, 'w', 'drop-newest');
    const drain = new Drain(
      v,
      { write() {}, close() {} },
      { batchRings: 8, thresholds, dropLogIntervalMs: 0, dropLogEvery: 1, now: () => performance.now() * 1e6, log: () => {} },
    );
    drain.pass(); // registers the thread
    for (let i = 0; i < EXHAUST; i++) w.record(1, i); // uses up the pool: DROPPING, every ring submitted
    assert.equal(collectMetrics(v, performance.now() * 1000, []).threads[0].state, 'dropping');
    // The next pass returns the rings and then checks recovery: it reads the state word
    // (DROPPING), then counts the spares (4) ... and in between the writer takes them, fills them
    // and exhausts again (forced below, inside the count).
    const size = SpscQueue.prototype.size;
    let armed = true;
    SpscQueue.prototype.size = function (this: SpscQueue) {
      const n = size.call(this);
      if (armed) {
        armed = false; // the writer's own size() calls below go through untouched
        for (let i = 0; i < EXHAUST; i++) w.record(1, i); // takes the 3 spares, exhausts: DROPPING
      }
      return n;
    };
    try {
      drain.pass();
    } finally {
      SpscQueue.prototype.size = size;
    }
    assert.equal(armed, false, 'the drain did count the free spares');
    Atomics.or(v.i32, Ctl.FLAGS, ControlFlag.DRAIN_PAUSED); // no ring comes back from now on
    drain.pass();
    const t = collectMetrics(v, performance.now() * 1000, []).threads[0];
    assert.equal(t.freeSpares, 0);
    assert.equal(t.exhaustions, 2);
    assert.equal(t.state, 'dropping', `no spare, drain paused: still dropping (transitions ${JSON.stringify(t.transitions)})`);
  });
});

describe('records too large for a ring', () => {
  for (const policy of POLICIES) {
    it(`${policy}: refused and counted as record_too_large, also while exhausted; the ring stays whole`, async () => {
      const warnings: Error[] = [];
      const onWarning = (w: Error & { code?: string }) => w.code === 'RINGTRACE_RECORD_TOO_LARGE' && warnings.push(w);
      process.on('warning', onWarning);
      try {
        const path = tempTrace(`too-large-${policy}`);
        const tracer = await Tracer.open({ path, ...SMALL, policy, flushIntervalMs: 0, ...quiet });
        const w = tracer.register('big');
        const id = tracer.define('seq');
        const blob = tracer.define('blob');
        let seq = 0;
        let tooLargeBytes = 0;
        /** One event per call: a value, or (every 7th) a small checked payload. */
        const small = () => {
          const s = seq++;
          return s % 7 === 3 ? w.recordBytes(blob, seqPayload(s, 40)) : w.record(id, s);
        };
        const tooLarge = (len: number) => {
          seq++; // an attempt: it takes a sequence number that will be missing from the file
          tooLargeBytes += 16 + len; // record header + payload (len is a multiple of 8)
          return w.recordBytes(blob, new Uint8Array(len));
        };
        for (let i = 0; i < 100; i++) assert.equal(small(), true);
        // Not exhausted: larger than an empty ring, and larger than any payload (> 16 MiB - 1).
        assert.equal(tooLarge(5000), false, 'larger than a 4 KiB ring');
        assert.equal(tooLarge(16 * 1024 * 1024), false, 'a 16 MiB payload');
        let m = threadOf(tracer, w);
        assert.equal(m.state, 'normal', 'a refused record is not pressure');
        assert.deepEqual(m.droppedByReason, { record_too_large: 2 });
        for (let i = 0; i < 100; i++) assert.equal(small(), true, 'recording goes on normally');

        await tracer.pauseDrain();
        for (let i = 0; i < EXHAUST; i++) small();
        m = threadOf(tracer, w);
        assert.equal(m.state, 'dropping');
        const exhausted = m.droppedByReason.pool_exhausted!;
        assert.ok(exhausted > 0);
        // While exhausted: refused as too large, neither counted as pool_exhausted nor (under
        // drop-oldest) evicting anything to make room.
        assert.equal(tooLarge(5000), false);
        assert.equal(tooLarge(16 * 1024 * 1024), false);
        m = threadOf(tracer, w);
        assert.deepEqual(m.droppedByReason, { record_too_large: 4, pool_exhausted: exhausted });
        for (let i = 0; i < 50; i++)
          assert.equal(small(), policy === 'drop-oldest', 'still exhausted: drop-oldest keeps, drop-newest refuses');
        w.close();
        const summary = (await tracer.close())!;
        assert.ok(summary.balanced);
        await new Promise((r) => setImmediate(r));
        assert.equal(warnings.length, 1, 'one process warning per writer');
        const { seqs, t } = readSingleThread(path, seq);
        assert.equal(t.droppedByReason.record_too_large, 4);
        const r = openTrace(path);
        const tl = r.drops().filter((d) => d.reason === 'record_too_large');
        assert.equal(
          tl.reduce((n, d) => n + d.bytes, 0),
          tooLargeBytes,
          'their bytes are counted',
        );
        if (policy === 'drop-oldest') assert.equal(seqs.at(-1), seq - 1, 'the newest event survives');
        else assert.equal(seqs[0], 0);
        assert.equal(readBack(r).get('big')!.events, seqs.length);
      } finally {
        process.off('warning', onWarning);
      }
    });
  }

  it('a thread whose periodic flush has stopped (idle): the drop still reaches the drop log and the file without another event', async () => {
    const path = tempTrace('too-large-idle');
    const logs: LogEntry[] = [];
    const onWarning = () => {};
    process.on('warning', onWarning);
    const tracer = await Tracer.open({
      path,
      ...SMALL,
      flushIntervalMs: 20,
      dropLogEvery: 1,
      dropLogIntervalMs: 0,
      logLevel: 'warn',
      exitHooks: false,
      logger: (e) => logs.push(e),
    });
    try {
      const w = tracer.register('idle');
      const blob = tracer.define('blob');
      // The first tick finds nothing to hand over and does not re-arm: the thread is idle.
      await until(() => !(w as unknown as { flushArmed: boolean }).flushArmed, 'the periodic flush stopped');
      assert.equal(w.recordBytes(blob, new Uint8Array(5000)), false, 'larger than a 4 KiB ring');
      const reported = () => logs.filter((e) => /dropped \d+ events/.test(e.msg)).reduce((n, e) => n + (e.dropped as number), 0);
      // Only the writer can hand its loss block over; the thread records nothing more.
      await until(() => reported() >= 1, 'the drop summary reports the record_too_large drop before any close', 300);
      assert.equal(reported(), 1);
      w.close();
      const summary = (await tracer.close())!;
      assert.ok(summary.balanced);
      const drops = openTrace(path).drops();
      assert.deepEqual(
        drops.map((d) => [d.reason, d.events, d.chunkSeq >= 0]),
        [['record_too_large', 1, true]],
        'on a chunk, not only on the end record',
      );
    } finally {
      await tracer.close();
      process.off('warning', onWarning);
    }
  });
});

describe('an idle drop-newest thread: its losses reach the file without another event', () => {
  it('flush() once the spares are back hands the losses over on an empty chunk', async () => {
    const path = tempTrace('flush-losses');
    const logs: LogEntry[] = [];
    const tracer = await Tracer.open({
      path,
      ...SMALL,
      policy: 'drop-newest',
      flushIntervalMs: 0,
      dropLogEvery: 1,
      dropLogIntervalMs: 0,
      logLevel: 'warn',
      exitHooks: false,
      logger: (e) => logs.push(e),
    });
    await tracer.pauseDrain();
    const w = tracer.register('flusher');
    const id = tracer.define('seq');
    const kept = exhaust(w, id);
    const lost = EXHAUST - kept;
    assert.ok(lost > 0);
    tracer.resumeDrain();
    await until(() => w.spareRings() === 4, 'the drain returned all four rings');
    const chunks = threadOf(tracer, w).chunksWritten;
    assert.equal(w.flush(), true);
    const reported = () => logs.filter((e) => /dropped \d+ events/.test(e.msg)).reduce((n, e) => n + (e.dropped as number), 0);
    await until(() => reported() >= lost, `the drop summary reports the ${lost} losses`, 500);
    assert.equal(reported(), lost);
    const m = threadOf(tracer, w);
    assert.equal(m.chunksWritten, chunks + 1, 'one more chunk: the one carrying the losses');
    assert.equal(m.eventsWritten, kept, 'with no events in it');
    w.close();
    const summary = (await tracer.close())!;
    assert.ok(summary.balanced);
    readSingleThread(path, EXHAUST);
    const drops = openTrace(path).drops();
    assert.deepEqual(
      drops.map((d) => [d.reason, d.events, d.chunkSeq]),
      [['pool_exhausted', lost, chunks]],
      'all the losses, on the chunk after the full rings (not on the end record)',
    );
  });

  it('after resumeDrain, the periodic flush hands the losses over on a chunk (and they reach the drop log)', async () => {
    const path = tempTrace('idle-losses');
    const logs: LogEntry[] = [];
    const tracer = await Tracer.open({
      path,
      ...SMALL,
      policy: 'drop-newest',
      flushIntervalMs: 100,
      dropLogEvery: 1,
      dropLogIntervalMs: 0,
      logLevel: 'warn',
      exitHooks: false,
      logger: (e) => logs.push(e),
    });
    await tracer.pauseDrain();
    const control = new SharedArrayBuffer(8);
    const run = startScenario({ trace: tracer.handle, name: 'idle', mode: 'flood', events: 5000, linger: 'loop', close: true, control });
    const release = () => Atomics.store(new Int32Array(control), 0, 1);
    try {
      const done = await run.done;
      assert.equal(done.calls, 5000);
      const lost = done.calls - done.kept;
      assert.ok(lost > 0, 'the flood was refused in part');
      const reported = () => logs.filter((e) => /dropped \d+ events/.test(e.msg)).reduce((n, e) => n + (e.dropped as number), 0);
      assert.equal(reported(), 0, 'nothing reported while the drain is paused');
      tracer.resumeDrain();
      // The thread records nothing more: only its periodic flush can hand the losses over.
      await until(() => reported() >= lost, `the drop summary reports the ${lost} losses before any close`, 500);
      assert.equal(reported(), lost, 'exactly the losses');
      const m = tracer.metrics().threads[0];
      assert.equal(m.status, 'live', 'the thread had not closed');
      assert.equal(m.eventsDropped, lost);
      release();
      await run.exited;
      const summary = (await tracer.close())!;
      assert.ok(summary.balanced);
      const { t } = readSingleThread(path, 5000);
      const drops = openTrace(path).drops();
      assert.ok(drops.length > 0);
      for (const d of drops)
        assert.ok(d.chunkSeq >= 0, `the ${d.events} ${d.reason} losses came with chunk ${d.chunkSeq}, not only with the end record`);
      assert.equal(
        drops.reduce((n, d) => n + d.events, 0),
        lost,
      );
      assert.deepEqual(t.lastChunk, { attempted: 5000, balanced: true }, 'the last chunk already accounts for every attempt');
    } finally {
      release(); // a failed wait must not leave the worker (and the test process) running
      await tracer.close();
    }
  });
});
