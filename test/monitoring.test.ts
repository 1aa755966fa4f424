/**
 * Monitoring (docs/design/backpressure.md, "Monitoring"): the drain logs one line per state change
 * (`warn` into DROPPING, `info` otherwise) naming the thread, and a drop summary at most once per
 * `dropLogIntervalMs` and only after `dropLogEvery` new drops. The rate limit is driven with a
 * fake clock on an in-process drain; the logger plumbing with a real tracer and worker.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import { Drain } from '../src/drain/drain.js';
import type { LogLevel } from '../src/logger.js';
import { FileSink, headerRecord, preamble } from '../src/file/format.js';
import { Layout, SharedViews, initControl } from '../src/shm/layout.js';
import type { LogEntry } from '../src/logger.js';
import { collectMetrics } from '../src/metrics/metrics.js';
import { Tracer, openTrace, type TracerHandle } from '../src/index.js';
import { startScenario, tempTrace } from './helpers/scenario.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const STATE_LINE = /^(?:ringtrace: )?backpressure (\w+) -> (\w+)$/;
const DROP_LINE = /^(?:ringtrace: )?dropped (\d+) events since the last report$/;

interface Line {
  level: LogLevel;
  msg: string;
  fields: Record<string, unknown>;
}

/** A tracer whose drain runs in this thread on a fake clock: the test calls pass() and sets the
 * time. One drop-newest writer, 4 rings of 4 KiB; stability period 0 (recovery completes at the
 * visit that sees the spares back). */
function inProcess(dropLogEvery: number, dropLogIntervalMs: number) {
  const path = tempTrace('monitor');
  const layout = new Layout({ maxThreads: 2, ringsPerThread: 4, ringSize: 4096 });
  const buffer = new SharedArrayBuffer(layout.totalBytes);
  const v = new SharedViews(buffer, layout);
  initControl(v, Date.now(), performance.timeOrigin + performance.now());
  const sink = new FileSink(path);
  sink.write([preamble(), ...headerRecord(Date.now(), {})]);
  const thresholds = { pressureSpares: 1, recoverySpares: 2, stabilityUs: 0 };
  const clock = { ms: 0 };
  const lines: Line[] = [];
  const drain = new Drain(v, sink, {
    batchRings: 8,
    thresholds,
    dropLogIntervalMs,
    dropLogEvery,
    now: () => clock.ms * 1e6,
    log: (level, msg, fields = {}) => lines.push({ level, msg, fields }),
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
  const tracer = Tracer.attach(handle);
  const w = tracer.register('mon');
  const id = tracer.define('seq');
  let calls = 0;
  /** Exactly `n` events refused for an exhausted pool, then handed to the drain: the drain
   * learns of them at the second pass (which logs a summary if one is due). */
  const drop = (n: number) => {
    let refused = 0;
    for (let i = 0; refused === 0; i++) {
      assert.ok(i < 10_000, 'the pool exhausts');
      if (!w.record(id, calls++)) refused++;
    }
    for (; refused < n; refused++) assert.equal(w.record(id, calls++), false);
    drain.pass(); // the full rings come back; the losses are still in the writer's loss block
    assert.equal(w.record(id, calls++), true, 'a spare is back');
    assert.equal(w.flush(), true, 'the ring goes to the drain with the losses');
    drain.pass();
  };
  const finish = () => {
    w.close();
    const summary = drain.finish();
    void tracer.close();
    return summary;
  };
  return { path, v, w, drain, clock, lines, drop, finish, calls: () => calls };
}

const summaries = (lines: Line[]) =>
  lines.filter((l) => DROP_LINE.test(l.msg)).map((l) => ({ level: l.level, dropped: l.fields.dropped, total: l.fields.total }));

describe('drop summary log: rate limited (in-process drain, fake clock)', () => {
  it('logged only after dropLogEvery new drops, at most once per dropLogIntervalMs, each covering every drop since the last', () => {
    const h = inProcess(50, 1000);
    const expected: Array<{ level: string; dropped: number; total: number }> = [];
    const step = (what: string, act: () => void, line?: { dropped: number; total: number }) => {
      act();
      if (line) expected.push({ level: 'warn', ...line });
      assert.deepEqual(summaries(h.lines), expected, what);
    };
    step('10 drops (< dropLogEvery): none', () => h.drop(10));
    h.clock.ms = 5_000;
    step('40 drops, long after: still none', () => h.drop(30));
    h.clock.ms = 100_000;
    step('a pass much later, no new drops: none', () => h.drain.pass());
    step('60 drops: one summary of all 60', () => h.drop(20), { dropped: 60, total: 60 });
    h.clock.ms = 100_500;
    step('100 more, 500 ms later (interval 1 s): none', () => h.drop(100));
    h.clock.ms = 100_999;
    step('200 more, 999 ms later: none', () => h.drop(100));
    h.clock.ms = 101_000;
    step('1 s after the last summary, a pass with no new drops: one summary of the 200', () => h.drain.pass(), {
      dropped: 200,
      total: 260,
    });
    h.clock.ms = 102_000;
    step('49 drops: none', () => h.drop(49));
    step('the 50th: one summary', () => h.drop(1), { dropped: 50, total: 310 });
    const m = collectMetrics(h.v, 0, []).threads[0];
    assert.equal(m.eventsDropped, 310);
    assert.ok(expected.length < m.eventsDropped, 'fewer summary lines than drops');
    const summary = h.finish();
    assert.equal(summary.threads[0].dropped, 310);
    assert.equal(summary.threads[0].attempted, h.calls());
    assert.deepEqual(summaries(h.lines), expected, 'nothing more at the close');
    assert.equal(openTrace(h.path).summary().threads[0].dropped, 310);
  });

  it('with dropLogEvery above the drop count there is never a summary, however long it runs', () => {
    const h = inProcess(1000, 0);
    for (let k = 0; k < 9; k++) {
      h.clock.ms += 10_000;
      h.drop(100);
    }
    h.clock.ms += 10_000;
    h.drain.pass();
    h.finish();
    assert.deepEqual(summaries(h.lines), [], '900 drops, dropLogEvery 1000');
    assert.equal(openTrace(h.path).summary().threads[0].dropped, 900);
  });
});

describe('state change log', () => {
  it('in-process: one line per transition, in the order of the STATE records, warn exactly into DROPPING', () => {
    const h = inProcess(1, 0);
    for (let k = 0; k < 3; k++) {
      h.clock.ms += 1;
      h.drop(5);
    }
    const m = collectMetrics(h.v, 0, []).threads[0];
    h.finish();
    const stateLines = h.lines.filter((l) => STATE_LINE.test(l.msg));
    for (const l of stateLines) {
      const [, from, to] = STATE_LINE.exec(l.msg)!;
      assert.equal(l.level, to === 'dropping' ? 'warn' : 'info', `${from} -> ${to} level`);
      assert.equal(l.fields.thread, h.w.registration);
      assert.equal(l.fields.name, 'mon');
      assert.equal(l.fields.slot, h.w.slot);
      assert.equal(typeof l.fields.ts, 'number');
    }
    const logged = stateLines.map((l) => STATE_LINE.exec(l.msg)!.slice(1).join('->'));
    // Writer-side edges (into PRESSURE and DROPPING, through the transition log) and drain-side
    // ones (out of DROPPING and RECOVERY) alike.
    const perEdge: Record<string, number> = {};
    for (const e of logged) perEdge[e] = (perEdge[e] ?? 0) + 1;
    assert.deepEqual(perEdge, Object.fromEntries(Object.entries(m.transitions).filter(([, n]) => n > 0)), 'one line per transition taken');
    assert.deepEqual(perEdge, { 'normal->pressure': 3, 'pressure->dropping': 3, 'dropping->recovery': 3, 'recovery->normal': 3 });
    const states = openTrace(h.path).states();
    assert.deepEqual(
      logged,
      states.map((s) => `${s.from}->${s.to}`),
      'the same transitions, in the same order, as the STATE records',
    );
  });

  it('through Tracer.open({ logger }): every state change of a worker reaches the logger, with time, level, thread and name', async () => {
    const path = tempTrace('monitor-tracer');
    const logs: LogEntry[] = [];
    const tracer = await Tracer.open({
      path,
      ringSize: '4KiB',
      ringsPerThread: 4,
      stabilityMs: 20,
      dropLogEvery: 1,
      dropLogIntervalMs: 0,
      flushIntervalMs: 20,
      exitHooks: false,
      logLevel: 'info', // every state change (the default, warn, keeps only -> dropping)
      logger: (e) => logs.push(e),
    });
    await tracer.pauseDrain();
    const control = new SharedArrayBuffer(8);
    const release = () => Atomics.store(new Int32Array(control), 0, 1);
    const policies = ['drop-oldest', 'drop-newest'] as const;
    const runs = policies.map((policy) =>
      startScenario({ trace: tracer.handle, name: policy, mode: 'flood', events: 3000, policy, linger: 'loop', close: true, control }),
    );
    try {
      const done = await Promise.all(runs.map((r) => r.done));
      const regs = await Promise.all(runs.map((r) => r.registered));
      tracer.resumeDrain();
      for (let i = 0; !tracer.metrics().threads.every((t) => t.state === 'normal'); i++) {
        assert.ok(i < 1000, 'both threads recover');
        await sleep(10);
      }
      release();
      await Promise.all(runs.map((r) => r.exited));
      const summary = (await tracer.close())!; // every drain message (log lines too) came before the summary
      assert.ok(summary.balanced);
      const r = openTrace(path);
      const states = r.states();
      const stateLogs = logs.filter((e) => STATE_LINE.test(e.msg));
      assert.equal(stateLogs.length, states.length, 'one log line per STATE record');
      for (const [k, reg] of regs.entries()) {
        const name = policies[k];
        const t = summary.threads.find((x) => x.thread === reg.registration)!;
        assert.equal(t.name, name);
        assert.equal(t.attempted, done[k].calls, `${name}: attempted = record() calls`);
        assert.ok(t.dropped > 0, `${name}: dropped`);
        const mine = stateLogs.filter((e) => e.thread === reg.registration);
        const inFile = states.filter((s) => r.threads[s.thread].registration === reg.registration).map((s) => `${s.from}->${s.to}`);
        assert.deepEqual(
          mine.map((e) => STATE_LINE.exec(e.msg)!.slice(1).join('->')),
          inFile,
          `${name}: same transitions, same order`,
        );
        assert.deepEqual(
          inFile,
          ['normal->pressure', 'pressure->dropping', 'dropping->recovery', 'recovery->normal'],
          `${name}: one exhaustion, one recovery`,
        );
        for (const e of mine) {
          assert.equal(e.level, e.msg.endsWith('-> dropping') ? 'warn' : 'info');
          assert.equal(e.name, name);
          assert.equal(e.slot, reg.slot);
          assert.match(e.msg, /^ringtrace: /);
          assert.ok(!Number.isNaN(Date.parse(e.time)), 'timestamped');
        }
      }
      // Drop summaries (dropLogEvery 1, no interval): together they report every drop, once.
      const dropLogs = logs.filter((e) => DROP_LINE.test(e.msg));
      const dropped = summary.dropped;
      assert.ok(dropLogs.length >= 1 && dropLogs.length < dropped, 'fewer summary lines than drops');
      assert.equal(
        dropLogs.reduce((n, e) => n + (e.dropped as number), 0),
        dropped,
      );
      assert.equal(dropLogs.at(-1)!.total, dropped);
      for (const e of dropLogs) assert.equal(e.level, 'warn');
    } finally {
      release();
      await tracer.close();
    }
  });
});
