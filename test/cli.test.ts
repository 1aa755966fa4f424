/**
 * The `ringtrace` command, run as a user would: the built dist/src/cli.js in a child process
 * (no TTY, no stdin). One demo run provides the trace the other commands read. No timing
 * assertions: the demo's phases only decide how much is dropped, never whether it balances.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { openTrace } from '../src/index.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));

/** The environment without RINGTRACE_* settings, so the developer's shell cannot change results. */
const cleanEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
  ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RINGTRACE_'))),
  ...extra,
});

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: Record<string, string> = {}): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    env: cleanEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
    timeout: 120_000,
    maxBuffer: 256 * 1024 * 1024,
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const show = (r: Run) => `exit ${r.status}\n--- stdout\n${r.stdout.slice(-4000)}\n--- stderr\n${r.stderr.slice(-4000)}`;

describe('ringtrace CLI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rt-cli-'));
  const trace = join(dir, 'demo', 'trace.rtrace');
  let demo: Run;

  before(() => {
    demo = cli(['demo', '--seconds', '2', '--workers', '2', '--out', join(dir, 'demo'), '--no-live']);
  });
  // The demo trace and its exports are tens of MB.
  after(() => rmSync(dir, { recursive: true, force: true }));

  describe('demo', () => {
    it('exits 0 and prints the summary and the trace path', () => {
      assert.equal(demo.status, 0, show(demo));
      assert.match(demo.stdout, /balanced: yes/);
      assert.ok(demo.stdout.includes(trace), 'names the trace file');
      assert.ok(demo.stdout.includes(join(dir, 'demo', 'trace.json')), 'names the Chrome JSON');
      for (const name of ['main', 'worker-1', 'worker-2']) assert.ok(demo.stdout.includes(name));
      // Not a TTY: plain progress lines, no cursor movement.
      assert.match(demo.stdout, /^\[\s*\d+\.\d s\] (normal load|burst|recovery|stopping) \| main /m);
      assert.ok(!demo.stdout.includes('\u001b['), 'no escape sequences when stdout is not a TTY');
    });

    it('writes a balanced, complete trace with the burst losses and recovered threads', () => {
      const r = openTrace(trace);
      const s = r.summary();
      assert.equal(s.complete, true);
      assert.equal(s.damage, undefined);
      assert.equal(s.totals.balanced, true);
      assert.deepEqual(s.threads.map((t) => t.name).sort(), ['main', 'worker-1', 'worker-2']);
      for (const t of s.threads) assert.equal(t.balanced, true, `${t.name} balanced`);
      assert.ok(s.totals.dropped > 0, 'the burst dropped events');
      assert.ok(r.drops().some((d) => d.reason === 'pool_exhausted'));
      assert.equal(r.threads.find((t) => t.name === 'worker-1')!.policy, 'drop-newest');
      assert.equal(r.threads.find((t) => t.name === 'worker-2')!.policy, 'drop-oldest');

      const states = r.states();
      assert.ok(states.length > 0, 'state changes recorded');
      for (const t of r.threads) {
        const mine = states.filter((x) => x.thread === t.index);
        if (mine.length > 0) assert.equal(mine[mine.length - 1].to, 'normal', `${t.name} ended in normal`);
      }
    });

    it('loses exactly the counted events: seq values account for every gap', () => {
      // A `seq` event's value is how many events its thread attempted before it, so at the k-th
      // event a thread kept, value - k events of that thread were lost before it.
      const r = openTrace(trace);
      const s = r.summary();
      const kept = new Map<number, number>();
      const lostBefore = new Map<number, number>();
      for (const e of r.events()) {
        const k = kept.get(e.thread) ?? 0;
        kept.set(e.thread, k + 1);
        if (e.name !== 'seq') continue;
        const lost = e.value! - k;
        assert.ok(lost >= (lostBefore.get(e.thread) ?? 0), 'losses before an event never shrink');
        lostBefore.set(e.thread, lost);
      }
      for (const t of s.threads) {
        assert.equal(kept.get(t.thread), t.events);
        assert.ok((lostBefore.get(t.thread) ?? 0) <= t.dropped, `${t.name}: gaps within the counted drops`);
        assert.equal(t.attempted, t.events + t.dropped);
      }
    });
  });

  describe('inspect', () => {
    it('prints a per-thread table, totals and the loss list', () => {
      const r = cli(['inspect', trace]);
      assert.equal(r.status, 0, show(r));
      for (const name of ['main', 'worker-1', 'worker-2']) assert.ok(r.stdout.includes(name));
      assert.match(r.stdout, /complete \(footer present\)/);
      assert.match(r.stdout, /balanced: yes/);
      assert.match(r.stdout, /losses \(\d+\):/);
      assert.match(r.stdout, /pool_exhausted/);
      assert.match(r.stdout, /✓/);
    });

    it('--json prints { summary, drops, states }', () => {
      const r = cli(['inspect', trace, '--json']);
      assert.equal(r.status, 0, show(r));
      const j = JSON.parse(r.stdout) as { summary: { totals: { events: number; balanced: boolean } }; drops: unknown[]; states: unknown[] };
      const reader = openTrace(trace);
      assert.equal(j.summary.totals.events, reader.summary().totals.events);
      assert.equal(j.summary.totals.balanced, true);
      assert.equal(j.drops.length, reader.drops().length);
      assert.equal(j.states.length, reader.states().length);
    });

    it('a missing file exits 3 naming the path', () => {
      const missing = join(dir, 'no-such.rtrace');
      const r = cli(['inspect', missing]);
      assert.equal(r.status, 3, show(r));
      assert.ok(r.stderr.includes(missing));
    });

    it('a file of garbage exits 4', () => {
      const garbage = join(dir, 'garbage.rtrace');
      writeFileSync(garbage, 'this is not a trace file, just some text\n'.repeat(20));
      const r = cli(['inspect', garbage]);
      assert.equal(r.status, 4, show(r));
      assert.match(r.stderr, /offset \d+/);
    });

    it('a truncated trace exits 4 with the offset, after printing what was readable', () => {
      const cut = join(dir, 'truncated.rtrace');
      copyFileSync(trace, cut);
      // Records are 8-byte aligned, so an odd length always ends inside one.
      truncateSync(cut, Math.floor(statSync(trace).size / 2) | 1);
      const r = cli(['inspect', cut]);
      assert.equal(r.status, 4, show(r));
      assert.match(r.stderr, /damaged at byte offset \d+/);
      assert.match(r.stdout, /damage\s+at byte offset \d+/);
      assert.ok(r.stdout.includes('main'), 'the summary of the readable part is printed');
    });

    it('a flipped bit mid-file costs one chunk: inspect resumes after it and names the gap', () => {
      const f = join(dir, 'flip-mid.rtrace');
      const b = readFileSync(trace);
      b[b.length >> 1] ^= 0x10; // the middle of the file is chunk payload
      writeFileSync(f, b);
      const r = cli(['inspect', f]);
      assert.equal(r.status, 4, show(r));
      assert.match(r.stdout, /damage\s+at byte offset \d+: CRC mismatch \(damaged record\); \d+ bytes not read, reading resumed at byte \d+/);
      assert.match(r.stdout, /gap\s+thread \d+ \(.+\): 1 chunk\(s\) missing; \d+ events/);
      assert.match(r.stdout, /file\s+complete \(footer present\)/, 'the records after the damage, footer included, were read');
      assert.match(r.stderr, /before and after each damaged region/);
      // The export shows the gap on the thread's track, over the time it covers.
      const out = join(dir, 'flip-mid.json');
      const x = cli(['export', f, '--format', 'chrome', '-o', out]);
      assert.equal(x.status, 4, show(x));
      const j = JSON.parse(readFileSync(out, 'utf8')) as { traceEvents: Array<{ name: string; ph: string; dur?: number }>; metadata: { damaged: unknown[] } };
      const gaps = j.traceEvents.filter((e) => e.name === 'ringtrace.gap (damaged file)');
      assert.equal(gaps.length, 1);
      assert.equal(gaps[0].ph, 'X');
      assert.ok(gaps[0].dur! >= 0);
      assert.equal(j.metadata.damaged.length, 1);
    });

    it('every reading command refuses a wrong magic, a future version, and a flipped bit, with the offset', () => {
      const bad = (name: string, mutate: (b: Buffer) => void) => {
        const b = readFileSync(trace);
        mutate(b);
        const f = join(dir, name);
        writeFileSync(f, b);
        return f;
      };
      const cases = [
        { file: bad('magic.rtrace', (b) => b.write('NOTATRAC', 0, 'latin1')), want: /bad magic\) at byte offset 0/ },
        { file: bad('future.rtrace', (b) => b.writeUInt32LE(99, 8)), want: /version 99 is newer.*at byte offset 8/ },
        { file: bad('flipped.rtrace', (b) => (b[b.length >> 1] ^= 0x10)), want: /at byte offset \d+/ },
        { file: bad('length.rtrace', (b) => b.writeUInt32LE(0x7ffffff8, 16 + 4)), want: /at byte offset 16/ },
      ];
      for (const { file, want } of cases) {
        for (const args of [['inspect', file], ['export', file, '-o', join(dir, 'out.json')], ['report', file, '-o', join(dir, 'out.html')]]) {
          const r = cli(args);
          assert.equal(r.status, 4, `${args[0]} ${file}: ${show(r)}`);
          assert.match(r.stderr, want, `${args[0]} ${file}`);
        }
      }
    });
  });

  describe('export', () => {
    it('chrome: valid trace event JSON with thread names, drops and backpressure counters', () => {
      const out = join(dir, 'chrome.json');
      const r = cli(['export', trace, '--format', 'chrome', '-o', out]);
      assert.equal(r.status, 0, show(r));
      const j = JSON.parse(readFileSync(out, 'utf8')) as {
        traceEvents: Array<{ name: string; ph: string; tid: number; ts?: number; args?: Record<string, unknown> }>;
        displayTimeUnit: string;
        metadata: Record<string, unknown>;
      };
      assert.equal(j.displayTimeUnit, 'ns');
      assert.equal(j.metadata.source, 'ringtrace');
      const ev = j.traceEvents;
      const threadNames = ev.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => e.args!.name);
      assert.deepEqual([...threadNames].sort(), ['main', 'worker-1', 'worker-2']);
      const drops = ev.filter((e) => e.name === 'ringtrace.drop');
      assert.ok(drops.length > 0);
      for (const d of drops) {
        assert.equal(d.ph, 'i');
        assert.equal(d.args!.reason, 'pool_exhausted');
        assert.equal(typeof d.ts, 'number');
      }
      assert.ok(ev.some((e) => e.ph === 'C' && e.name === 'backpressure state'));
      assert.ok(ev.some((e) => e.ph === 'C' && e.name === 'dropped events'));
      assert.ok(ev.some((e) => e.ph === 'i' && e.name.startsWith('state: ')));
      assert.ok(ev.some((e) => e.ph === 'B') && ev.some((e) => e.ph === 'E'));
    });

    it('chrome by default, next to the trace', () => {
      const copy = join(dir, 'copy.rtrace');
      copyFileSync(trace, copy);
      const r = cli(['export', copy]);
      assert.equal(r.status, 0, show(r));
      assert.ok(existsSync(join(dir, 'copy.json')));
    });

    it('jsonl: one line per event, drop and state change', () => {
      const out = join(dir, 'trace.jsonl');
      const r = cli(['export', trace, '--format', 'jsonl', '-o', out]);
      assert.equal(r.status, 0, show(r));
      const lines = readFileSync(out, 'utf8').split('\n').filter((l) => l.length > 0);
      const reader = openTrace(trace);
      const s = reader.summary();
      assert.equal(lines.length, s.totals.events + reader.drops().length + reader.states().length);
      const parsed = lines.map((l) => JSON.parse(l) as { type: string; kind?: string; threadName?: string });
      assert.equal(parsed.filter((l) => l.type === 'drop').length, reader.drops().length);
      assert.equal(parsed.filter((l) => l.type === 'state').length, reader.states().length);
      assert.ok(parsed.every((l) => typeof l.threadName === 'string'));
    });

    it('-o - writes to stdout and keeps messages on stderr', () => {
      const r = cli(['export', trace, '--format', 'jsonl', '-o', '-']);
      assert.equal(r.status, 0, show(r));
      const first = r.stdout.slice(0, r.stdout.indexOf('\n'));
      assert.equal((JSON.parse(first) as { type: string }).type, 'event');
      assert.match(r.stderr, /wrote stdout/);
    });

    it('an unknown format is a usage error (exit 2)', () => {
      const r = cli(['export', trace, '--format', 'xml']);
      assert.equal(r.status, 2, show(r));
      assert.match(r.stderr, /chrome, jsonl/);
    });
  });

  describe('config', () => {
    it('--json prints the resolved configuration and sources', () => {
      const r = cli(['config', '--json']);
      assert.equal(r.status, 0, show(r));
      const j = JSON.parse(r.stdout) as { config: { ringSize: number }; sources: { ringSize: { kind: string } } };
      assert.equal(j.config.ringSize, 256 * 1024);
      assert.equal(j.sources.ringSize.kind, 'default');
    });

    it('shows where a value comes from', () => {
      const r = cli(['config'], { RINGTRACE_RING_SIZE: '128KiB' });
      assert.equal(r.status, 0, show(r));
      assert.match(r.stdout, /ringSize\s+128 KiB\s+env RINGTRACE_RING_SIZE/);
    });

    it('an invalid variable exits 2 and names it', () => {
      const r = cli(['config'], { RINGTRACE_RING_SIZE: '65000' });
      assert.equal(r.status, 2, show(r));
      assert.match(r.stderr, /RINGTRACE_RING_SIZE/);
    });
  });

  describe('usage', () => {
    it('--help works on every command', () => {
      for (const args of [['--help'], ['demo', '--help'], ['inspect', '--help'], ['export', '--help'], ['config', '--help'], ['bench', '--help']]) {
        const r = cli(args);
        assert.equal(r.status, 0, `${args.join(' ')}: ${show(r)}`);
        assert.match(r.stdout, /Usage: ringtrace/);
      }
    });

    it('bad option values, unknown commands and missing arguments exit 2', () => {
      for (const args of [['demo', '--workers', 'many'], ['demo', '--seconds', '0'], ['inspect'], ['frobnicate'], []]) {
        const r = cli(args);
        assert.equal(r.status, 2, `${args.join(' ')}: ${show(r)}`);
      }
    });

    it('bench says how to build the benchmarks when they are not built', (t) => {
      if (existsSync(fileURLToPath(new URL('../bench/run.js', import.meta.url)))) {
        t.skip('benchmarks are built');
        return;
      }
      const r = cli(['bench']);
      assert.equal(r.status, 1, show(r));
      assert.match(r.stderr, /benchmarks are not built; run npm run bench/);
    });
  });
});

describe('demo --metrics-port', () => {
  it('serves Prometheus metrics on localhost while it runs', async () => {
    const { spawn } = await import('node:child_process');
    const out = mkdtempSync(join(tmpdir(), 'rt-cli-metrics-'));
    const p = spawn(process.execPath, [CLI, 'demo', '--seconds', '2', '--workers', '1', '--out', out, '--no-live', '--metrics-port', '0'], {
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    const url = await new Promise<string>((res, rej) => {
      p.stdout.on('data', (b: Buffer) => {
        stdout += b;
        const m = /metrics: (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(stdout);
        if (m) res(m[1]);
      });
      p.once('exit', () => rej(new Error(`demo exited before serving metrics:\n${stdout}`)));
    });
    const text = await (await fetch(url)).text();
    assert.match(text, /# TYPE ringtrace_events_attempted_total counter/);
    assert.match(text, /ringtrace_backpressure_state\{thread="main",slot="\d+",state="normal"\}/);
    const code = await new Promise<number | null>((res) => p.once('exit', res));
    assert.equal(code, 0, stdout);
    rmSync(out, { recursive: true, force: true });
  });
});
