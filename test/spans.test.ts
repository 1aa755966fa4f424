/**
 * Async spans and links: the writer's span ids (unique across threads and slot reuse), their
 * accounting on every path (fast, swap, exhausted, closed), the reader (span ids, time order,
 * version gating), and the matchers the export draws slices with.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { Tracer } from '../src/index.js';
import { openTrace } from '../src/file/reader.js';
import { AsyncMatcher, LossWindows, SliceMatcher } from '../src/cli/spans.js';

const workerPath = new URL('./helpers/span-worker.js', import.meta.url);
const quiet = { exitHooks: false, logger: () => {} } as const;

describe('async spans: writer and reader', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'ringtrace-spans-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('span ids are unique across threads and across a reused slot; ends and links on another thread', async () => {
    const path = join(dir, 'reuse.rtrace');
    const tracer = await Tracer.open({ path, maxThreads: 2, ringSize: 4096, flushIntervalMs: 10, ...quiet });
    const w = tracer.register('main');
    const job = tracer.define('job');
    const spans = [w.beginAsync(job), w.beginAsync(job, 7)];
    // Two workers in turn take the one free slot; each links and ends one of main's spans.
    const registrations: number[] = [];
    for (const [k, name] of ['worker-a', 'worker-b'].entries()) {
      const wk = new Worker(workerPath, { workerData: { trace: tracer.handle, name, policy: 'drop-oldest' } });
      await new Promise((ok) => wk.once('message', ok));
      wk.postMessage({ type: 'handle', requests: [{ span: spans[k], i: k }] });
      await new Promise((ok) => wk.once('message', ok));
      wk.postMessage({ type: 'exit' });
      await new Promise((ok) => wk.once('exit', ok));
      registrations.push(k);
    }
    w.endAsync(spans[0]); // ended twice: the reader keeps both, the export pairs the first
    await tracer.close();
    const r = openTrace(path);
    assert.deepEqual(
      r.threads.map((t) => [t.name, t.slot]),
      [
        ['main', 0],
        ['worker-a', 1],
        ['worker-b', 1],
      ],
    );
    const ev = [...r.events()].filter((e) => e.span !== undefined);
    const begins = ev.filter((e) => e.kind === 'async-begin');
    assert.deepEqual(
      begins.map((e) => [e.span, e.value]),
      [
        [spans[0], undefined],
        [spans[1], 7],
      ],
    );
    assert.equal(new Set(spans).size, 2);
    assert.deepEqual(
      ev.filter((e) => e.kind === 'link').map((e) => [r.threads[e.thread].name, e.span]),
      [
        ['worker-a', spans[0]],
        ['worker-b', spans[1]],
      ],
    );
    assert.equal(ev.filter((e) => e.kind === 'async-end').length, 3);
    assert.ok(r.summary().totals.balanced);
    assert.equal(registrations.length, 2);
  });

  it('span records take every path: swaps, drop-newest exhaustion (ids still returned), after close', async () => {
    const path = join(dir, 'paths.rtrace');
    const tracer = await Tracer.open({ path, ringSize: 4096, ringsPerThread: 2, policy: 'drop-newest', flushIntervalMs: 0, ...quiet });
    const w = tracer.register('main');
    const id = tracer.define('s');
    await tracer.pauseDrain();
    const ids: number[] = [];
    let refused = 0;
    for (let i = 0; i < 2000; i++) {
      const span = w.beginAsync(id, i);
      ids.push(span);
      if (!w.link(span)) refused++;
      if (!w.endAsync(span, id)) refused++;
    }
    assert.ok(refused > 0, 'the pool ran out');
    assert.equal(new Set(ids).size, ids.length, 'every beginAsync returned a fresh id, kept or not');
    tracer.resumeDrain();
    await tracer.close();
    const closedId = w.beginAsync(id);
    assert.ok(closedId > ids[ids.length - 1]);
    assert.equal(w.endAsync(closedId), false);
    assert.equal(w.droppedAfterClose, 2);
    const r = openTrace(path);
    const s = r.summary();
    assert.ok(s.totals.balanced);
    assert.equal(s.totals.attempted, 6000);
    const ends = [...r.events()].filter((e) => e.kind === 'async-end');
    assert.ok(
      ends.every((e) => e.name === 's'),
      'an end named by its id argument',
    );
    assert.throws(() => w.beginAsync(1n as unknown as number), TypeError);
  });

  it('eventsByTime merges the threads in time order; a version-2 file with span records is damage', async () => {
    const path = join(dir, 'order.rtrace');
    const tracer = await Tracer.open({ path, flushIntervalMs: 5, ...quiet });
    const w = tracer.register('main');
    const wk = new Worker(workerPath, { workerData: { trace: tracer.handle, name: 'w', policy: 'drop-oldest' } });
    await new Promise((ok) => wk.once('message', ok));
    const tick = tracer.define('tick');
    const span = w.beginAsync(tick);
    for (let i = 0; i < 3; i++) {
      w.record(tick, i);
      wk.postMessage({ type: 'handle', requests: [{ span, i }] });
      await new Promise((ok) => wk.once('message', ok));
    }
    wk.postMessage({ type: 'exit' });
    await new Promise((ok) => wk.once('exit', ok));
    await tracer.close();
    const r = openTrace(path);
    const byTime = [...r.eventsByTime()];
    assert.equal(byTime.length, [...r.events()].length);
    for (let i = 1; i < byTime.length; i++) assert.ok(byTime[i].ts >= byTime[i - 1].ts);
    assert.ok(new Set(byTime.map((e) => e.thread)).size === 2);

    // A version-3 file (the golden one: it has span records) relabelled as version 2, whose
    // records are laid out alike: its span records are damage there.
    const v2 = join(dir, 'as-v2.rtrace');
    copyFileSync(fileURLToPath(new URL('../../test/fixtures/golden-v3.rtrace', import.meta.url)), v2);
    const fd = openSync(v2, 'r+');
    const version = Buffer.alloc(4);
    version.writeUInt32LE(2);
    writeSync(fd, version, 0, 4, 8);
    const r2 = openTrace(v2);
    assert.equal(r2.version, 2);
    assert.match(r2.damage?.reason ?? '', /invalid event record/);
    assert.ok(![...r2.events()].some((e) => e.span !== undefined));
  });
});

describe('slice matching', () => {
  const drops = (...w: Array<[number, number, number]>) => w.map(([thread, firstTs, lastTs]) => ({ thread, events: 1, firstTs, lastTs }));
  const brief = (xs: ReturnType<SliceMatcher['finish']>) => xs.map((x) => [x.name, x.from, x.to, x.truncated ?? null, x.clipped ?? null]);

  it('nested slices pair by id; a mismatched end clips what it passes; leftovers are clipped at the end', () => {
    const m = new SliceMatcher(new LossWindows(1, []), [0]);
    m.begin(0, 1, 'a', 10);
    m.begin(0, 2, 'b', 20);
    assert.deepEqual(brief(m.end(0, 2, 'b', 30)), [['b', 20, 30, null, null]]);
    m.begin(0, 3, 'c', 40);
    assert.deepEqual(brief(m.end(0, 1, 'a', 50)), [
      ['c', 40, 50, 'unmatched', 'end'],
      ['a', 10, 50, null, null],
    ]);
    assert.deepEqual(brief(m.end(0, 4, 'd', 60)), [['d', 60, 60, 'unmatched', 'begin']]);
    m.begin(0, 1, 'a', 70);
    m.seen(0, 80);
    assert.deepEqual(brief(m.finish()), [['a', 70, 80, 'unmatched', 'end']]);
  });

  it('a loss cuts the slices open across it; an end right after confirms the continuation, a begin drops it', () => {
    const m = new SliceMatcher(new LossWindows(1, drops([0, 100, 200], [0, 300, 400])), [0]);
    m.begin(0, 1, 'outer', 10);
    m.begin(0, 2, 'req', 50);
    // The first loss: both are drawn up to it and continue tentatively from its end.
    const cut = m.end(0, 2, 'req', 250);
    assert.deepEqual(brief(cut), [
      ['req', 50, 100, 'loss', 'end'],
      ['outer', 10, 100, 'loss', 'end'],
      ['req', 200, 250, 'loss', 'begin'],
    ]);
    // The second loss: outer is cut again only tentatively; the begin after it takes outer's end as lost.
    assert.deepEqual(brief(m.begin(0, 2, 'req', 450)), []);
    assert.deepEqual(brief(m.end(0, 2, 'req', 460)), [['req', 450, 460, null, null]]);
    assert.deepEqual(brief(m.end(0, 1, 'outer', 470)), [['outer', 460, 470, 'loss', 'begin']]);
    assert.deepEqual(brief(m.finish()), []);
  });

  it('an end while a loss that began after its slice is not over: two clipped pieces', () => {
    const m = new SliceMatcher(new LossWindows(1, drops([0, 100, 200])), [0]);
    m.begin(0, 1, 'req', 90);
    assert.deepEqual(brief(m.end(0, 1, 'req', 150)), [
      ['req', 90, 100, 'loss', 'end'],
      ['req', 150, 150, 'loss', 'begin'],
    ]);
  });

  it('an untimed loss explains a slice left open at the end', () => {
    const m = new SliceMatcher(new LossWindows(1, [{ thread: 0, events: 3, firstTs: NaN, lastTs: NaN }]), [5]);
    m.begin(0, 1, 'req', 10);
    m.seen(0, 20);
    assert.deepEqual(brief(m.finish()), [['req', 10, 20, 'loss', 'end']]);
  });

  it('async spans: early ends wait for their begin; the unmatched are clipped at losses', () => {
    const losses = new LossWindows(2, drops([1, 100, 200]));
    const a = new AsyncMatcher(losses);
    const open = (span: number, ts: number) => ({ span, thread: 0, id: 1, name: 'job', ts, value: undefined });
    assert.equal(a.end(7, 1, 50, 1, undefined), undefined);
    assert.deepEqual(a.begin(open(7, 51))?.end, { thread: 1, ts: 51 }); // clocks a hair apart
    assert.equal(a.begin(open(8, 60)), undefined);
    assert.equal(a.get(8)?.name, 'job');
    assert.deepEqual(a.end(8, 1, 90, 1, 'job')?.end, { thread: 1, ts: 90 });
    assert.equal(a.begin(open(9, 80)), undefined); // its end is lost in the loss at 100..200
    assert.equal(a.end(10, 1, 300, 0xffffffff, undefined), undefined); // its begin was lost
    assert.equal(a.end(11, 1, 50, 0xffffffff, undefined), undefined); // no loss before it
    a.seen(500);
    const rest = a.finish().map((x) => [x.span, x.name, x.begin.ts, x.end.ts, x.truncated, x.clipped]);
    assert.deepEqual(rest, [
      [9, 'job', 80, 100, 'loss', 'end'],
      [10, 'span 0xa', 200, 300, 'loss', 'begin'],
      [11, 'span 0xb', 50, 50, 'unmatched', 'begin'],
    ]);
  });
});
