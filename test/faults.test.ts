/**
 * Faults: exits without close(), dead workers, a failing disk, a dead drain. Each checks that
 * what the tracer says it lost is all it lost: per thread, attempted = events in file + dropped.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import { Drain } from '../src/drain/drain.js';
import { FileSink, headerRecord, preamble, type TraceSink } from '../src/file/format.js';
import { Ctl, ControlFlag, Layout, SharedViews, Slot, SlotState, TLOG_CURSOR_MASK, initControl } from '../src/shm/layout.js';
import { collectMetrics } from '../src/metrics/metrics.js';
import { waitFor } from './helpers/wait.js';
import { Tracer, openTrace, type TracerHandle } from '../src/index.js';
import { readBack, startScenario, tempTrace } from './helpers/scenario.js';

const child = fileURLToPath(new URL('./fixtures/exit-child.js', import.meta.url));

function checkBalanced(path: string): ReturnType<ReturnType<typeof openTrace>['summary']> {
  const r = openTrace(path);
  const s = r.summary();
  assert.equal(r.damage, undefined, `no damage in ${path}`);
  assert.equal(s.complete, true, 'the file was finalized (footer)');
  for (const t of s.threads) assert.equal(t.balanced, true, `${t.name}: attempted ${t.attempted} = ${t.events} + ${t.dropped}`);
  for (const t of s.threads) if (t.lastChunk) assert.equal(t.lastChunk.balanced, true, `${t.name}: last chunk's running totals`);
  // Sequence numbers: what is missing is what was counted.
  const back = readBack(r);
  for (const t of s.threads) {
    const v = back.get(t.name)!.values;
    let missing = 0;
    let prev = -1;
    for (const x of v) {
      assert.ok(x > prev);
      missing += x - prev - 1;
      prev = x;
    }
    missing += t.attempted! - 1 - prev;
    assert.equal(missing, t.dropped, `${t.name}: gaps = drops`);
  }
  return s;
}

describe('exit paths without close()', () => {
  for (const how of ['natural', 'process-exit', 'uncaught', 'worker-throws', 'worker-exit', 'exit-during-close'] as const) {
    it(how, () => {
      const path = tempTrace(`exit-${how}`);
      const r = spawnSync(process.execPath, [child, path, how], { encoding: 'utf8', timeout: 60_000 });
      if (how === 'process-exit') assert.equal(r.status, 3, r.stderr);
      else if (how === 'exit-during-close') assert.equal(r.status, 4, r.stderr);
      else if (how === 'uncaught') {
        assert.equal(r.status, 1);
        assert.match(r.stderr, /boom/);
      } else assert.equal(r.status, 0, r.stderr);
      const s = checkBalanced(path);
      assert.equal(s.threads.length, 3);
      const main = s.threads.find((t) => t.name === 'main')!;
      assert.ok(main.events > 0 && main.attempted! >= 20_000);
      if (how === 'worker-throws' || how === 'worker-exit') {
        // The worker's own exit hook closed its writer: what it kept is in the file, nothing
        // was lost in flight.
        const dead = s.threads.find((t) => t.name === 'worker-0')!;
        assert.equal(dead.endReason, 'closed');
        assert.equal(dead.attempted, 30_000);
        assert.equal(dead.droppedByReason.thread_exit, undefined);
        assert.equal(dead.events + dead.dropped, 30_000);
      }
    });
  }

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`${signal}: the file is finalized and the process still dies by the signal`, async () => {
      const path = tempTrace(`sig-${signal}`);
      const p = spawn(process.execPath, [child, path, signal.toLowerCase()], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      p.stderr.on('data', (b) => (stderr += b));
      await new Promise<void>((res) => p.stdout.on('data', (b: Buffer) => b.toString().includes('ready') && res()));
      p.kill(signal);
      const [code, sig] = await new Promise<[number | null, string | null]>((res) => p.on('exit', (c, s) => res([c, s])));
      assert.equal(sig, signal, `killed by ${signal} (code ${code}) ${stderr}`);
      const s = checkBalanced(path);
      assert.equal(s.threads.length, 3);
    });
  }
});

/** A tracer whose drain runs in this thread (the test calls pass()), on a sink the test controls:
 * the seam for disk faults, with no test hook in the library. */
function inProcess(sinkWrite: (b: readonly Uint8Array[], file: FileSink) => void, log: (msg: string) => void = () => {}) {
  const path = tempTrace('inproc');
  const layout = new Layout({ maxThreads: 2, ringsPerThread: 4, ringSize: 4096 });
  const buffer = new SharedArrayBuffer(layout.totalBytes);
  const v = new SharedViews(buffer, layout);
  initControl(v, Date.now(), performance.timeOrigin + performance.now());
  const file = new FileSink(path);
  file.write([preamble(), ...headerRecord(Date.now(), {})]);
  const thresholds = { pressureSpares: 1, recoverySpares: 2, stabilityUs: 0 };
  const sink: TraceSink = { write: (b) => sinkWrite(b, file), close: () => file.close() };
  const drain = new Drain(v, sink, {
    batchRings: 8,
    thresholds,
    dropLogIntervalMs: 0,
    dropLogEvery: 1,
    now: () => performance.now() * 1e6,
    log: (_l, msg) => log(msg),
  });
  const handle: TracerHandle = {
    kind: 'ringtrace.handle',
    version: 1,
    sessionId: randomUUID(),
    buffer,
    geometry: layout,
    policy: 'drop-newest',
    thresholds,
    flushIntervalMs: 0,
    path,
  };
  return { path, v, drain, tracer: Tracer.attach(handle) };
}

describe('sink faults', () => {
  it('unwritable trace path: a clear error before any recording', async () => {
    const before = process.listenerCount('worker');
    await assert.rejects(
      Tracer.open({ path: '/nonexistent-dir/sub/trace.rtrace', logLevel: 'error' }),
      /cannot open trace file \/nonexistent-dir\/sub\/trace\.rtrace: ENOENT/,
    );
    assert.equal(process.listenerCount('worker'), before, 'no listener left behind');
  });

  for (const code of ['ENOSPC', 'EIO']) {
    it(`${code} while recording: chunks counted as sink_error, rings still returned, file readable`, () => {
      let writes = 0;
      const logs: string[] = [];
      const { path, drain, tracer } = inProcess(
        (b, file) => {
          if (++writes % 3 === 0) throw Object.assign(new Error(`${code}: simulated failure, write`), { code });
          file.write(b);
        },
        (msg) => logs.push(msg),
      );
      const w = tracer.register('app');
      const id = tracer.define('seq');
      let kept = 0;
      for (let seq = 0; seq < 20_000; seq++) {
        if (w.record(id, seq)) kept++;
        if (seq % 100 === 0) drain.pass(); // the drain keeps up: every loss is the sink's
      }
      w.close();
      const summary = drain.finish();
      assert.equal(kept, 20_000, 'the writer never ran out of rings: failed chunks still returned them');
      const t = summary.threads[0];
      assert.ok((t.droppedByReason.sink_error ?? 0) > 0);
      assert.equal(t.droppedByReason.pool_exhausted, undefined);
      assert.equal(t.balanced, true);
      assert.ok(summary.sinkErrors > 0);
      assert.equal(logs.filter((m) => m.includes('sink write failed')).length, 1, 'reported once, not per chunk');
      void tracer.close();
      const s = checkBalanced(path);
      assert.equal(s.threads[0].droppedByReason.sink_error, t.droppedByReason.sink_error);
      const drops = openTrace(path)
        .drops()
        .filter((d) => d.reason === 'sink_error');
      assert.ok(drops.every((d) => d.firstTs <= d.lastTs && d.bytes > 0));
    });
  }
});

describe('in-process drain edge cases', () => {
  it('a footer that cannot be written makes the summary incomplete, never "balanced"', () => {
    let broken = false;
    const { path, drain, tracer } = inProcess((b, file) => {
      if (broken) throw Object.assign(new Error('EFBIG: file too large'), { code: 'EFBIG' });
      file.write(b);
    });
    const w = tracer.register('app');
    const id = tracer.define('seq');
    for (let seq = 0; seq < 1000; seq++) w.record(id, seq);
    w.flush();
    drain.pass();
    broken = true;
    w.close();
    const summary = drain.finish();
    void tracer.close();
    assert.equal(summary.complete, false);
    const r = openTrace(path);
    assert.equal(r.complete, false);
    assert.equal(r.damage, undefined);
  });

  it('a writer that sees CLOSED before the drain retired it (exit deadline): the refused event is counted once', () => {
    const { path, v, drain, tracer } = inProcess((b, file) => file.write(b));
    const w = tracer.register('late');
    const id = tracer.define('seq');
    let calls = 0;
    for (; calls < 200; calls++) w.record(id, calls);
    w.flush();
    drain.pass();
    // As closeSync() does when its deadline passes before the drain finished.
    Atomics.or(v.i32, Ctl.FLAGS, ControlFlag.CLOSED);
    let accepted = 0;
    while (!w.isClosed) if (w.record(id, calls++)) accepted++; // up to the next slow path
    assert.equal(w.droppedAfterClose, 1, 'only the refused event is counted as closed');
    const summary = drain.finish();
    void tracer.close();
    const t = summary.threads[0];
    assert.equal(t.endReason, 'closed');
    assert.equal(t.attempted + w.droppedAfterClose, calls);
    assert.equal(t.events, 200 + accepted);
    assert.equal(t.balanced, true);
    const r = openTrace(path).summary().threads[0];
    assert.equal(r.balanced, true);
    assert.equal(r.lastChunk?.balanced, true);
  });

  it('metrics() counts each registration once: a seized slot moves into the shared ledger as it is retired, before any summary message', () => {
    const { v, drain, tracer } = inProcess((b, file) => file.write(b));
    const w = tracer.register('busy');
    const id = tracer.define('seq');
    for (let seq = 0; seq < 300; seq++) w.record(id, seq); // > 1 ring of 4 KiB: some handed over
    const live = collectMetrics(v, 0, []);
    assert.deepEqual([live.threads.length, live.retiredTotals.threads], [1, 0]);
    const summary = drain.finish(); // seizes the live writer: RETIRED, its count published
    assert.equal(Atomics.load(v.i32, v.layout.slotI32(w.slot, Slot.STATE)), SlotState.RETIRED);
    for (let seq = 300; seq < 400; seq++) w.record(id, seq); // it goes on, not knowing
    const before = collectMetrics(v, 0, []); // the 'retired' message has not arrived
    assert.equal(before.threads.length, 0, 'no longer a slot of its own');
    assert.equal(before.retiredTotals.threads, 1);
    assert.equal(before.totals.threads, 1);
    assert.equal(before.totals.eventsAttempted, 300, "the drain's count, not the writer's running one");
    assert.equal(
      before.totals.eventsAttempted,
      before.totals.eventsWritten + before.totals.eventsDropped,
      'unflushed included: it adds up',
    );
    assert.deepEqual(before.totals.droppedByReason, summary.threads[0].droppedByReason);
    const after = collectMetrics(v, 0, summary.threads);
    assert.deepEqual(after.totals, before.totals, 'the summary message changes no total');
    assert.equal(after.retired.length, 1);
    w.close(); // notices: counts the 100 after the drain's count as closed
    assert.equal(w.droppedAfterClose, 100);
    assert.equal(Atomics.load(v.i32, v.layout.slotI32(w.slot, Slot.STATE)), SlotState.RECONCILED);
    assert.equal(collectMetrics(v, 0, []).totals.droppedAfterClose, 100);
    void tracer.close();
  });

  it('transition-log cursors wrap without overflowing (long-lived registrations)', () => {
    const { path, v, drain, tracer } = inProcess((b, file) => file.write(b));
    const w = tracer.register('osc');
    const id = tracer.define('seq');
    // As if this registration had already logged 2^30 - 2 transitions.
    const start = TLOG_CURSOR_MASK - 1;
    v.i32[v.layout.slotI32(w.slot, Slot.TLOG_HEAD)] = start;
    v.i32[v.layout.slotI32(w.slot, Slot.TLOG_TAIL)] = start;
    let seq = 0;
    for (let cycle = 0; cycle < 6; cycle++) {
      for (let i = 0; i < 1000; i++) w.record(id, seq++); // 1000 x 24 B > 4 x 4 KiB: exhausts
      drain.pass(); // returns the rings: DROPPING -> RECOVERY -> NORMAL (stability 0)
    }
    w.close();
    drain.finish();
    void tracer.close();
    const tail = v.i32[v.layout.slotI32(w.slot, Slot.TLOG_TAIL)];
    assert.ok(tail >= 0 && tail < 64, `tail wrapped to a small value (${tail})`);
    const s = checkBalanced(path);
    assert.equal(s.threads[0].dropped > 0, true);
    const edges = openTrace(path)
      .states()
      .map((x) => `${x.from}->${x.to}`);
    // Six exhaustions, each logged by the writer as it entered DROPPING: all reached the file.
    assert.equal(edges.filter((e) => e.endsWith('->dropping')).length, 6, 'every writer-side transition reached the file');
  });
});

describe('drain death', () => {
  it('recording goes on (dropping, counted), close() still returns, the file reads up to its last chunk', async () => {
    const path = tempTrace('drain-death');
    const tracer = await Tracer.open({
      path,
      ringSize: '4KiB',
      logLevel: 'error',
      exitHooks: false,
      closeTimeoutMs: 200,
      policy: 'drop-newest',
    });
    const w = tracer.register('app');
    const id = tracer.define('seq');
    for (let seq = 0; seq < 100; seq++) w.record(id, seq);
    w.flush();
    while (tracer.metrics().threads[0].chunksWritten < 1) await new Promise((r) => setTimeout(r, 5));
    await (tracer as unknown as { drainWorker: { terminate(): Promise<number> } }).drainWorker.terminate();
    let kept = 0;
    for (let seq = 100; seq < 20_100; seq++) if (w.record(id, seq)) kept++;
    assert.ok(kept < 20_000, 'pool exhausted without a drain');
    const m = tracer.metrics().threads[0];
    assert.equal(m.state, 'dropping');
    const summary = await tracer.close();
    assert.equal(summary?.complete, false);
    assert.equal(summary?.balanced, false, 'an unfinished file is never reported as balanced');
    const r = openTrace(path);
    assert.equal(r.complete, false);
    assert.equal(r.damage, undefined, 'cut at a record boundary');
    assert.equal(r.summary().totals.events, 100);
  });

  it('a busy thread still recording after a dead drain: what close() reports plus what it counts as closed is everything', async () => {
    const path = tempTrace('drain-death-busy');
    const tracer = await Tracer.open({ path, ringSize: '4KiB', logLevel: 'error', exitHooks: false, closeTimeoutMs: 50 });
    const control = new SharedArrayBuffer(8);
    const run = startScenario({ trace: tracer.handle, name: 'busy', mode: 'until-closed', events: 0, control, policy: 'drop-newest' });
    await run.registered;
    while (Atomics.load(new Int32Array(control), 1) === 0) await new Promise((r) => setTimeout(r, 5));
    await (tracer as unknown as { drainWorker: { terminate(): Promise<number> } }).drainWorker.terminate();
    const summary = await tracer.close(); // the fallback summary: no drain
    assert.equal(summary?.complete, false);
    assert.equal(tracer.metrics().drain.state, 'failed', 'a terminated drain does not look running');
    await tracer.pauseDrain(); // settles: there is no drain to wait for
    const t = summary!.threads.find((x) => x.name === 'busy')!;
    assert.equal(t.attempted, t.events + t.dropped, 'the fallback summary adds up for the thread');
    const done = (await run.done) as { metrics: { attempted: number; droppedAfterClose: number } };
    await run.exited;
    assert.ok(done.metrics.droppedAfterClose > 0, 'it went on recording after the summary');
    assert.equal(done.metrics.attempted, t.attempted + done.metrics.droppedAfterClose);
  });
});

describe('a file cut after its last chunk', () => {
  it('still proves each thread balanced up to that chunk', async () => {
    const path = tempTrace('cut-chunks');
    const tracer = await Tracer.open({ path, ringSize: '4KiB', policy: 'drop-newest', logLevel: 'error', exitHooks: false });
    const w = tracer.register('cut');
    const id = tracer.define('seq');
    await tracer.pauseDrain();
    for (let seq = 0; seq < 3000; seq++) w.record(id, seq); // exhausts: drops in the chunks
    tracer.resumeDrain();
    // The next events must go into a ring (whose hand-off carries the losses into a chunk), not
    // be dropped too: wait for the drain to give rings back.
    await waitFor(() => w.spareRings() > 0, 'a spare ring back from the drain');
    for (let seq = 3000; seq < 3100; seq++) w.record(id, seq);
    w.close();
    await tracer.close();
    // Cut the file right after the last CHUNK: no end record, no footer.
    const { readFileSync, writeFileSync } = await import('node:fs');
    const r0 = openTrace(path);
    const bytes = readFileSync(path);
    let off = 16;
    let lastChunkEnd = 0;
    while (off < bytes.length) {
      const type = bytes.readUInt32LE(off);
      const end = off + 16 + bytes.readUInt32LE(off + 4);
      if (type === 4) lastChunkEnd = end;
      off = end;
    }
    const cut = path.replace(/\.rtrace$/, '-cut.rtrace');
    writeFileSync(cut, bytes.subarray(0, lastChunkEnd));
    const r = openTrace(cut);
    const t = r.summary().threads[0];
    assert.equal(r.complete, false);
    assert.equal(t.attempted, undefined, 'no end record');
    assert.ok(t.lastChunk, 'running totals from the last chunk');
    assert.equal(t.lastChunk.balanced, true);
    assert.ok(t.dropped > 0);
    assert.equal(t.lastChunk.attempted, r0.summary().threads[0].attempted, 'the last chunk came after every event');
  });
});
