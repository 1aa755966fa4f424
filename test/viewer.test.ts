/**
 * Exports loaded into a real viewer's parser: Chrome DevTools' trace engine (test/helpers/
 * trace-engine.ts). The demo's export and a trace of 200 concurrent async requests across three
 * threads with a forced loss must parse with no negative or open-ended durations, every async
 * span matched by id, truncated slices flagged, and the longest request as long as it really was.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Tracer } from '../src/index.js';
import { openTrace } from '../src/file/reader.js';
import { parseWithEngine, type ChromeJsonEvent, type EngineView } from './helpers/trace-engine.js';

const cliPath = fileURLToPath(new URL('../src/cli/cli.js', import.meta.url));
const workerPath = new URL('./helpers/span-worker.js', import.meta.url);

function exportChrome(trace: string, out: string): ChromeJsonEvent[] {
  const r = spawnSync(process.execPath, [cliPath, 'export', trace, '-o', out], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return (JSON.parse(readFileSync(out, 'utf8')) as { traceEvents: ChromeJsonEvent[] }).traceEvents;
}

/** What every export must look like to the engine. */
function assertDrawnRight(events: ChromeJsonEvent[], v: EngineView): void {
  assert.equal(v.syncBeginEnd, 0, 'no B/E: the engine pairs them with one stack across threads');
  assert.deepEqual(v.errors, [], 'the engine reported no begin/end mismatch');
  assert.ok(v.slices.length > 0);
  assert.equal(v.slices.filter((s) => !(s.dur >= 0)).length, 0, 'no negative or open-ended slice durations');
  assert.equal(v.asyncBegins, v.asyncEnds, 'every async begin has an end');
  assert.equal(v.asyncSpans.length, v.asyncBegins, 'every async span matched by id');
  assert.equal(v.asyncSpans.filter((s) => !(s.dur >= 0)).length, 0, 'no negative async durations');
  assert.ok(
    events.every((e) => typeof e.cat === 'string' && e.cat !== ''),
    'every event has a category',
  );
  // A slice drawn clipped says so, and why.
  for (const e of events.filter((x) => x.args?.clipped !== undefined)) assert.match(String(e.args!.truncated), /^(loss|unmatched)$/);
}

describe('exports in the DevTools trace engine', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'ringtrace-viewer-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("the demo's export: slices cut by its losses are clipped and flagged, nothing negative or open", async () => {
    const out = join(dir, 'demo');
    const r = spawnSync(process.execPath, [cliPath, 'demo', '--seconds', '2', '--workers', '2', '--out', out, '--no-live'], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    const events = JSON.parse(readFileSync(join(out, 'trace.json'), 'utf8')) as { traceEvents: ChromeJsonEvent[] };
    const v = await parseWithEngine(events.traceEvents);
    assertDrawnRight(events.traceEvents, v);
    const reader = openTrace(join(out, 'trace.rtrace'));
    assert.ok(reader.summary().totals.dropped > 0, 'the demo lost events');
    const requests = v.slices.filter((s) => s.name === 'request');
    assert.ok(requests.length > 100);
    // A slice drawn whole never spans a loss of its thread (a loss may hold its end and the
    // begin of the next one): only clipped, flagged pieces touch one.
    const tidOf = new Map(events.traceEvents.filter((e) => e.name === 'thread_name').map((e) => [e.args!.name as string, e.tid]));
    const lossesOf = new Map<number, Array<[number, number]>>();
    for (const d of reader.drops()) {
      const tid = tidOf.get(reader.threads[d.thread].name)!;
      lossesOf.set(tid, [...(lossesOf.get(tid) ?? []), [d.firstTs / 1000, d.lastTs / 1000]]);
    }
    const whole = events.traceEvents.filter((e) => e.cat === 'ringtrace.slice' && e.args?.truncated === undefined);
    for (const x of whole) {
      const [from, to] = [x.ts!, x.ts! + x.dur!];
      const inside = (t: number) => t > from + 0.001 && t < to - 0.001;
      for (const [first, last] of lossesOf.get(x.tid) ?? [])
        assert.ok(!inside(first) && !inside(last), `slice ${JSON.stringify(x)} spans a loss ${first}..${last}`);
    }
    assert.ok(
      events.traceEvents.some((e) => e.args?.truncated === 'loss'),
      'slices cut by the losses are flagged',
    );
  });

  it('200 concurrent async requests across 3 threads with a forced loss', async () => {
    const trace = join(dir, 'async.rtrace');
    const real = await runAsyncRequests(trace, 200);
    const reader = openTrace(trace);
    const s = reader.summary();
    assert.ok(s.totals.balanced, 'every thread balanced');
    assert.ok(s.totals.dropped > 0, 'the forced loss happened');
    const events = exportChrome(trace, join(dir, 'async.json'));
    const v = await parseWithEngine(events);
    assertDrawnRight(events, v);
    const requests = v.asyncSpans.filter((x) => x.name === 'http.request');
    assert.equal(requests.length, 200, 'every request is drawn once (kept or clipped), matched by id');
    const truncated = events.filter((e) => e.ph === 'e' && e.name === 'http.request' && e.args?.truncated === 'loss');
    assert.ok(truncated.length > 0, 'requests whose end was lost are flagged');
    const longest = Math.max(...requests.map((x) => x.dur));
    const realLongest = Math.max(...real) / 1000;
    assert.ok(
      Math.abs(longest - realLongest) <= 0.1 * realLongest,
      `longest request span ${longest.toFixed(1)} µs vs longest real ${realLongest.toFixed(1)} µs`,
    );
    // Links: flows from each request's begin on main into the worker that handled it.
    const flows = events.filter((e) => e.ph === 'f' && e.cat === 'ringtrace.link');
    assert.ok(flows.length > 100);
    console.log(
      `# async: ${requests.length} spans, ${truncated.length} clipped by the loss, longest ${(longest / 1000).toFixed(2)} ms ` +
        `(real ${(realLongest / 1000).toFixed(2)} ms), ${v.slices.filter((x) => x.dur < 0).length} negative, ` +
        `${v.asyncBegins - v.asyncSpans.length} unmatched`,
    );
  });
});

/**
 * Main accepts `n` requests at once (beginAsync on main); each is handled on main or one of two
 * workers (link, a handler slice, endAsync there). worker-2 exhausts its drop-newest pool while
 * the drain is paused, so the ends of its first requests are lost. Returns each request's real
 * duration (ns, tracer clock), measured around the span's begin and end.
 */
async function runAsyncRequests(path: string, n: number): Promise<number[]> {
  const tracer = await Tracer.open({
    path,
    ringSize: 4096,
    ringsPerThread: 4,
    maxThreads: 4,
    flushIntervalMs: 20,
    exitHooks: false,
    logger: () => {},
  });
  const w = tracer.register('main');
  const request = tracer.define('http.request');
  const handler = tracer.define('handler');
  const workers = ['worker-1', 'worker-2'].map(
    (name) =>
      new Worker(workerPath, { workerData: { trace: tracer.handle, name, policy: name === 'worker-2' ? 'drop-newest' : 'drop-oldest' } }),
  );
  const reply = (wk: Worker, type: string) =>
    new Promise<Record<string, unknown>>((ok) => {
      const on = (m: Record<string, unknown>) => {
        if (m.type !== type) return;
        wk.off('message', on);
        ok(m);
      };
      wk.on('message', on);
    });
  await Promise.all(workers.map((wk) => reply(wk, 'ready')));
  await tracer.pauseDrain();
  workers[1].postMessage({ type: 'flood' });
  await reply(workers[1], 'flooded');
  const begun: number[] = [];
  const spans: number[] = [];
  for (let i = 0; i < n; i++) {
    begun.push(tracer.now());
    spans.push(w.beginAsync(request, i));
  }
  const ended = new Array<number>(n).fill(NaN);
  // worker-2's first requests are handled while it drops everything; then the drain resumes.
  const mine = (k: number) => spans.map((span, i) => ({ span, i })).filter((x) => x.i % 3 === k);
  const early = mine(2).slice(0, 10);
  workers[1].postMessage({ type: 'handle', requests: early });
  for (const { i, end } of (await reply(workers[1], 'handled')).done as Array<{ i: number; end: number }>) ended[i] = end;
  tracer.resumeDrain();
  const done = [reply(workers[0], 'handled'), reply(workers[1], 'handled')];
  workers[0].postMessage({ type: 'handle', requests: mine(1) });
  workers[1].postMessage({ type: 'handle', requests: mine(2).slice(10) });
  for (const { span, i } of mine(0)) {
    w.link(span);
    w.begin(handler);
    const until = performance.now() + 0.5;
    while (performance.now() < until);
    w.end(handler);
    w.endAsync(span);
    ended[i] = tracer.now();
  }
  for (const r of await Promise.all(done)) for (const { i, end } of r.done as Array<{ i: number; end: number }>) ended[i] = end;
  for (const wk of workers) wk.postMessage({ type: 'exit' });
  await Promise.all(workers.map((wk) => new Promise((ok) => wk.once('exit', ok))));
  await tracer.close();
  assert.ok(
    ended.every((t) => Number.isFinite(t)),
    'every request was handled',
  );
  return ended.map((t, i) => t - begun[i]);
}
