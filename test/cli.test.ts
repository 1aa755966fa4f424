/**
 * The `ringtrace` command, run as a user would: the built dist/src/cli.js in a child process
 * (no TTY, no stdin). One demo run provides the trace the other commands read. No timing
 * assertions: the demo's phases only decide how much is dropped, never whether it balances.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { STATE_NAMES } from '../src/shm/backpressure.js';
import { phaseLine, progressBar } from '../src/cli/demo.js';
import { Phase } from '../src/cli/demo-worker.js';
import { Tracer, openTrace } from '../src/index.js';
import { RECORD_BYTES_LEGEND } from '../src/cli/inspect.js';
import {
  EndReason,
  FOOTER_BYTES,
  FRAME_BYTES,
  chunkIdentity,
  chunkRecord,
  footerRecord,
  headerRecord,
  nameRecord,
  preamble,
  stateRecord,
  threadEndRecord,
  threadStartRecord,
} from '../src/file/format.js';
import { newLossBlock } from '../src/shm/loss.js';
import { BpState } from '../src/shm/backpressure.js';
import { concat, encodeRecords, type Rec } from './helpers/unit-records.js';

const CLI = fileURLToPath(new URL('../src/cli/cli.js', import.meta.url));

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

function cli(args: string[], env: Record<string, string> = {}, nodeArgs: string[] = []): Run {
  const r = spawnSync(process.execPath, [...nodeArgs, CLI, ...args], {
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

const isCharDevice = (path: string): boolean => existsSync(path) && statSync(path).isCharacterDevice();

/** A user-facing error: no stack trace lines. */
const noStack = (r: Run) => assert.doesNotMatch(r.stderr, /^\s+at .+:\d+:\d+\)?$/m, `no stack trace: ${show(r)}`);

/** Chrome trace events as the export writes them. */
interface ChromeEvent {
  name: string;
  ph: string;
  pid: number;
  tid: number;
  ts?: number;
  dur?: number;
  id?: string;
  cat?: string;
  s?: string;
  args?: Record<string, unknown>;
}

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
      // Not a TTY: plain progress lines (elapsed / planned total, the phase), no cursor movement.
      assert.match(demo.stdout, /^\[\s*\d+\.\d\/2\.0 s\] (phase [123]\/3: (normal load|burst|recovery)|stopping)[^|]* \| main /m);
      assert.ok(!demo.stdout.includes('\u001b['), 'no escape sequences when stdout is not a TTY');
    });

    it('says each phase as it begins; the burst throttles the drain, recovery runs it at full speed', () => {
      assert.equal(demo.status, 0, show(demo));
      const phases = [...demo.stdout.matchAll(/^ {2}(phase [123]\/3: .+|stopping.*)$/gm)].map((m) => m[1]);
      assert.equal(phases.length, 4, phases.join('\n'));
      assert.match(phases[0], /^phase 1\/3: normal load, \d+\.\d s left$/);
      // Read back from the tracer's shared state, so this is what the drain was told.
      assert.match(phases[1], /^phase 2\/3: burst, 0\.6 s left \(drain throttled to 256 KiB\/s\)$/);
      assert.match(phases[2], /^phase 3\/3: recovery, \d+\.\d s left$/, 'full speed again: neither throttled nor paused');
      assert.match(phases[3], /^stopping$/);
    });

    it('never shows progress past the planned total', () => {
      const shown = [...demo.stdout.matchAll(/^\[\s*(\d+\.\d)\/2\.0 s\]/gm)].map((m) => Number(m[1]));
      assert.ok(shown.length >= 2, demo.stdout);
      assert.ok(
        shown.every((t) => t <= 2),
        `elapsed shown: ${shown.join(', ')}`,
      );
    });

    it('tells the phases, then every state change with its time since the start, in time order per thread', () => {
      assert.equal(demo.status, 0, show(demo));
      assert.doesNotMatch(demo.stdout, /^\s*log:/m, 'no untimed log lines');
      const lines = demo.stdout.split('\n');
      const at = lines.findIndex((l) => l.startsWith('phases (s since the start'));
      assert.ok(at > lines.findIndex((l) => l.trim() === 'stopping'), 'after the phases have run');
      const phases =
        /^phases \(s since the start, which was (\d+\.\d{3}) s after the tracer opened\): normal load 0\.000, burst (\d+\.\d{3}), recovery (\d+\.\d{3}), stopping (\d+\.\d{3})$/.exec(
          lines[at],
        );
      assert.ok(phases, lines[at]);
      const [startS, burstS, recoveryS, stopS] = phases.slice(1).map(Number);
      assert.ok(0 < burstS && burstS < recoveryS && recoveryS < stopS, lines[at]);
      assert.match(lines[at + 1], /^state changes \(s since the start; each thread in time order/);
      // Each thread's line (and its continuations) up to the blank line before the summary.
      const rows = lines
        .slice(at + 2, lines.indexOf('', at))
        .join('\n')
        .split(/\n(?= {2}\S)/);
      const reader = openTrace(trace);
      assert.deepEqual(
        rows.map((r) => r.trim().split(/\s+/)[0]),
        reader.threads.map((t) => t.name),
      );
      for (const [i, row] of rows.entries()) {
        const changes = [...row.matchAll(/(\d+\.\d{3}) (?:(\w+) -> )?(\w+)/g)].map((m) => ({ t: Number(m[1]), to: m[3] }));
        const fromFile = reader.states().filter((c) => c.thread === i);
        assert.deepEqual(
          changes.map((c) => c.to),
          fromFile.map((c) => c.to),
          row,
        );
        for (let k = 1; k < changes.length; k++) assert.ok(changes[k - 1].t <= changes[k].t, `in time order: ${row}`);
        // Every thread is pushed into dropping by the burst (the drain is throttled below the load).
        assert.ok(
          changes.some((c) => c.to === 'dropping' && c.t >= burstS),
          row,
        );
      }
      // Every thread registered before the start and records from it: none sits out the normal phase.
      for (const t of reader.threads) {
        assert.ok(t.registeredTs / 1e6 <= startS * 1000, `${t.name} registered before the start`);
        assert.ok(t.firstTs / 1e6 >= startS * 1000 - 1, `${t.name} records nothing before the start`);
        assert.ok(t.firstTs / 1e6 < (startS + burstS / 2) * 1000, `${t.name} records from the start of the normal phase`);
      }
    });

    it('writes the HTML report next to the trace and prints its path', () => {
      const html = join(dir, 'demo', 'report.html');
      assert.match(demo.stdout, new RegExp(`^html report: +${html.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
      const text = readFileSync(html, 'utf8');
      assert.match(text, /^<!doctype html>/);
      assert.match(text, /<svg id="states"/);
      assert.ok(text.includes('worker-2'));
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
        // Every pool ran out during the burst, and every thread recovered after it.
        const dropping = mine.findIndex((x) => x.to === 'dropping');
        assert.ok(dropping >= 0, `${t.name} reached dropping`);
        assert.ok(
          mine.slice(dropping).some((x) => x.to === 'recovery'),
          `${t.name} recovered after dropping`,
        );
        assert.equal(mine[mine.length - 1].to, 'normal', `${t.name} ended in normal`);
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

    it('names its byte columns for what they count: record bytes, with a legend (not byte payloads)', async () => {
      const path = join(dir, 'record-bytes.rtrace');
      const tracer = await Tracer.open({ path, exitHooks: false });
      const w = tracer.register('no-payloads');
      const id = tracer.define('x');
      for (let i = 0; i < 10; i++) w.record(id, i); // 10 value records of 24 B
      w.record(id); // an instant: 16 B
      w.recordBytes(id, new Uint8Array(5)); // 16 B + 5 B padded to 8
      await tracer.close();
      const r = cli(['inspect', path]);
      assert.equal(r.status, 0, show(r));
      const lines = r.stdout.split('\n');
      const header = lines.find((l) => l.startsWith('#  thread'))!;
      assert.match(header, / events {2}record B {2}.* dropped {2}by reason {2}record B dropped /);
      assert.doesNotMatch(r.stdout, /payload B|bytes dropped/);
      const row = lines
        .find((l) => l.includes('no-payloads'))!
        .trim()
        .split(/\s+/);
      assert.deepEqual(row.slice(3, 5), ['12', String(10 * 24 + 16 + 24)], row.join(' '));
      assert.ok(lines.includes(RECORD_BYTES_LEGEND), 'the legend says what record B counts');
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

    it('a trace without its footer (cut on a record boundary) exits 5, text and --json, after printing it', () => {
      const cut = join(dir, 'no-footer.rtrace');
      copyFileSync(trace, cut);
      // The footer is the last record: cutting it off leaves whole records and no damage.
      truncateSync(cut, statSync(trace).size - (FRAME_BYTES + FOOTER_BYTES));
      const s = openTrace(cut).summary();
      assert.equal(s.complete, false);
      assert.equal(s.damage, undefined);
      for (const args of [[], ['--json']]) {
        const r = cli(['inspect', cut, ...args]);
        assert.equal(r.status, 5, show(r));
        assert.ok(r.stdout.includes('main'), 'the summary is printed');
        assert.equal(
          r.stderr.trim(),
          `ringtrace: ${cut} is incomplete: it has no footer (the tracer has not closed it, or its process ended first)`,
        );
      }
    });

    it('a flipped bit mid-file costs one chunk: inspect resumes after it and names the gap', () => {
      const f = join(dir, 'flip-mid.rtrace');
      const b = readFileSync(trace);
      b[b.length >> 1] ^= 0x10; // the middle of the file is chunk payload
      writeFileSync(f, b);
      const r = cli(['inspect', f]);
      assert.equal(r.status, 4, show(r));
      assert.match(
        r.stdout,
        /damage\s+at byte offset \d+: CRC mismatch \(damaged record\); \d+ bytes not read, reading resumed at byte \d+/,
      );
      assert.match(r.stdout, /gap\s+thread \d+ \(.+\): 1 chunk\(s\) missing; \d+ events/);
      assert.match(r.stdout, /file\s+complete \(footer present\)/, 'the records after the damage, footer included, were read');
      assert.match(r.stderr, /before and after each damaged region/);
      // The export shows the gap on the thread's track, over the time it covers.
      const out = join(dir, 'flip-mid.json');
      const x = cli(['export', f, '--format', 'chrome', '-o', out]);
      assert.equal(x.status, 4, show(x));
      const j = JSON.parse(readFileSync(out, 'utf8')) as {
        traceEvents: Array<{ name: string; ph: string; dur?: number }>;
        metadata: { damaged: unknown[] };
      };
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
        for (const args of [
          ['inspect', file],
          ['export', file, '-o', join(dir, 'out.json')],
          ['report', file, '-o', join(dir, 'out.html')],
        ]) {
          const r = cli(args);
          assert.equal(r.status, 4, `${args[0]} ${file}: ${show(r)}`);
          assert.match(r.stderr, want, `${args[0]} ${file}`);
        }
      }
    });
  });

  describe('export', () => {
    it('chrome: valid trace event JSON with process and thread names, drops, values and backpressure', () => {
      const out = join(dir, 'chrome.json');
      const r = cli(['export', trace, '--format', 'chrome', '-o', out]);
      assert.equal(r.status, 0, show(r));
      const j = JSON.parse(readFileSync(out, 'utf8')) as {
        traceEvents: ChromeEvent[];
        displayTimeUnit: string;
        metadata: Record<string, unknown>;
      };
      const reader = openTrace(trace);
      const summary = reader.summary();
      assert.equal(j.displayTimeUnit, 'ns');
      assert.equal(j.metadata.source, 'ringtrace');
      assert.deepEqual(j.metadata.backpressureStates, { 0: 'normal', 1: 'pressure', 2: 'dropping', 3: 'recovery' });
      const ev = j.traceEvents;
      assert.ok(ev.every((e) => e.pid === 1));

      // Metadata: the process, each thread, and each thread's extra tracks.
      const processNames = ev.filter((e) => e.ph === 'M' && e.name === 'process_name');
      assert.equal(processNames.length, 1);
      assert.equal(processNames[0].args!.name, `ringtrace ${trace}`);
      const tidOf = new Map(ev.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => [e.args!.name as string, e.tid]));
      assert.equal(new Set(tidOf.values()).size, tidOf.size, 'one tid per track');
      const names = reader.threads.map((t) => t.name);
      for (const n of names) {
        assert.ok(tidOf.has(n), `thread_name ${n}`);
        assert.ok(tidOf.has(`${n} backpressure`), `thread_name ${n} backpressure`);
      }
      const threadOfTid = new Map(reader.threads.map((t) => [tidOf.get(t.name)!, t]));

      // Value events become per-thread counters (id = thread name) holding the value.
      const values = [...reader.events()].filter((e) => e.kind === 'value');
      const counters = ev.filter((e) => e.ph === 'C' && (e.name === 'seq' || e.name === 'queue.depth'));
      assert.equal(counters.length, values.length);
      // The export is in time order across threads, the reader's events() in chunk order: compare
      // as sets of (track, time, name, value).
      const want = values.map((v) => JSON.stringify([names[v.thread], tidOf.get(names[v.thread]), v.ts / 1000, { [v.name!]: v.value }]));
      const got = counters.map((c) => JSON.stringify([c.id, c.tid, c.ts, c.args]));
      assert.deepEqual(got.sort(), want.sort());
      // Slices are complete events, every event has a category.
      assert.ok(ev.some((e) => e.ph === 'X' && e.cat === 'ringtrace.slice'));
      assert.ok(!ev.some((e) => e.ph === 'B' || e.ph === 'E'));
      assert.ok(ev.every((e) => typeof e.cat === 'string' && e.cat.length > 0));

      // Losses: one instant per loss record with its count, bytes, reason and time range in µs.
      const drops = ev.filter((e) => e.name === 'ringtrace.drop');
      const expected = reader.drops().map((d) => ({
        tid: tidOf.get(names[d.thread]),
        ts: d.lastTs / 1000,
        args: {
          reason: d.reason,
          events: d.events,
          bytes: d.bytes,
          firstTsUs: d.firstTs / 1000,
          lastTsUs: d.lastTs / 1000,
          byPriority: d.byPriority,
        },
      }));
      const key = (x: { tid?: number; ts?: number }) => `${x.tid}:${x.ts}`;
      const byKey = (a: { tid?: number; ts?: number }, b: { tid?: number; ts?: number }) =>
        key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;
      assert.deepEqual(
        drops.map((d) => ({ ph: d.ph, s: d.s, tid: d.tid, ts: d.ts, args: d.args })).sort(byKey),
        expected.map((x) => ({ ph: 'i', s: 't', ...x })).sort(byKey),
      );
      const exported = drops.reduce((n, d) => n + (d.args!.events as number), 0);
      assert.equal(exported, summary.totals.dropped, 'the export accounts for every dropped event');
      assert.ok(exported > 0);
      for (const d of drops)
        assert.ok((d.args!.firstTsUs as number) <= d.ts! && d.ts! <= summary.threads[threadOfTid.get(d.tid)!.index].lastTs / 1000 + 1e6);
      // ... and a slice from the first to the last lost event on the thread's "losses" track.
      const lossSlices = ev.filter((e) => e.ph === 'X' && e.cat === 'ringtrace.loss');
      const spanning = reader.drops().filter((d) => Math.round(d.lastTs) > Math.round(d.firstTs));
      assert.equal(lossSlices.length, spanning.length);
      for (const d of spanning) {
        const track = tidOf.get(`${names[d.thread]} losses`);
        const sl = lossSlices.find((x) => x.tid === track && Math.abs(x.ts! - d.firstTs / 1000) < 0.001);
        assert.ok(sl, `a loss slice for ${names[d.thread]} at ${d.firstTs} ns`);
        assert.equal(sl.name, `ringtrace.drop: ${d.reason}`);
        assert.ok(Math.abs(sl.ts! + sl.dur! - d.lastTs / 1000) < 0.002, 'the slice ends at the last lost event');
        assert.equal(sl.args!.events, d.events);
      }
      // Cumulative "dropped events" counter per thread, ending at the thread's dropped total.
      for (const t of summary.threads) {
        const dc = ev.filter((e) => e.ph === 'C' && e.name === 'dropped events' && e.id === t.name);
        assert.equal(dc[0].args!.dropped, 0);
        assert.equal(Math.max(...dc.map((e) => e.args!.dropped as number)), t.dropped);
      }

      // Backpressure: state slices named by state on "<thread> backpressure", back to back from
      // the thread's registration to its end, changing where the file says the state changed.
      const states = reader.states();
      for (const t of reader.threads) {
        const track = tidOf.get(`${t.name} backpressure`);
        const slices = ev.filter((e) => e.ph === 'X' && e.tid === track).sort((a, b) => a.ts! - b.ts!);
        assert.ok(slices.length >= 4, `${t.name}: normal, pressure, dropping, recovery, normal`);
        for (const sl of slices) {
          assert.ok((STATE_NAMES as readonly string[]).includes(sl.name), sl.name);
          assert.equal(sl.args!.state, sl.name);
          assert.equal(sl.args!.code, STATE_NAMES.indexOf(sl.name as (typeof STATE_NAMES)[number]));
          assert.ok(sl.dur! > 0);
        }
        for (let i = 1; i < slices.length; i++)
          assert.ok(Math.abs(slices[i - 1].ts! + slices[i - 1].dur! - slices[i].ts!) < 1e-6, 'back to back');
        assert.equal(slices[0].name, 'normal');
        assert.ok(Math.abs(slices[0].ts! - t.registeredTs / 1000) < 0.001, 'from the registration');
        assert.equal(slices[slices.length - 1].name, 'normal');
        const mine = states.filter((c) => c.thread === t.index);
        // Changes in the same nanosecond leave no slice for the states in between: the slice
        // starting there is the last one's new state. Only a change at the thread's very end
        // starts no slice.
        const instants = [...new Set(mine.map((c) => Math.round(c.ts)))];
        instants.forEach((ns, i) => {
          const last = mine.filter((c) => Math.round(c.ts) === ns).pop()!;
          const at = slices.find((sl) => Math.abs(sl.ts! - ns / 1000) < 0.001);
          if (at) assert.equal(at.name, last.to, `${t.name} at ${ns} ns`);
          else assert.equal(i, instants.length - 1, `${t.name}: a slice starts at ${ns} ns`);
        });
        // The state counter is kept: 0 at registration, then the code of each new state.
        const sc = ev.filter((e) => e.ph === 'C' && e.name === 'backpressure state' && e.id === t.name).map((e) => e.args!.state);
        assert.deepEqual(sc, [0, ...mine.map((c) => STATE_NAMES.indexOf(c.to))]);
      }
      assert.ok(ev.some((e) => e.ph === 'i' && e.name.startsWith('state: ')));
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
      const lines = readFileSync(out, 'utf8')
        .split('\n')
        .filter((l) => l.length > 0);
      const reader = openTrace(trace);
      const s = reader.summary();
      assert.equal(lines.length, 1 + s.totals.events + reader.drops().length + reader.states().length);
      const [header, ...parsed] = lines.map((l) => JSON.parse(l) as { type: string; kind?: string; threadName?: string; ts?: number });
      assert.equal(header.type, 'header');
      const h = header as unknown as { sessionStartEpochMs: number; formatVersion: number; threads: Array<{ name: string }> };
      assert.equal(h.sessionStartEpochMs, s.sessionStartEpochMs);
      assert.equal(h.formatVersion, reader.version);
      assert.deepEqual(
        h.threads.map((t) => t.name),
        reader.threads.map((t) => t.name),
      );
      // Events, drops and state changes in time order.
      for (let i = 1; i < parsed.length; i++) assert.ok(parsed[i].ts! >= parsed[i - 1].ts!, `line ${i + 2} in time order`);
      assert.equal(parsed.filter((l) => l.type === 'drop').length, reader.drops().length);
      assert.equal(parsed.filter((l) => l.type === 'state').length, reader.states().length);
      assert.ok(parsed.every((l) => typeof l.threadName === 'string'));
    });

    it('-o - writes to stdout and keeps messages on stderr', () => {
      const r = cli(['export', trace, '--format', 'jsonl', '-o', '-']);
      assert.equal(r.status, 0, show(r));
      const first = r.stdout.slice(0, r.stdout.indexOf('\n'));
      assert.equal((JSON.parse(first) as { type: string }).type, 'header');
      assert.match(r.stderr, /wrote stdout/);
    });

    it('an output that cannot be written: exit 1 naming the path and why, no stack trace', () => {
      const missingDir = join(dir, 'no-such-dir');
      for (const [cmd, file] of [
        ['export', join(missingDir, 'x.json')],
        ['report', join(missingDir, 'x.html')],
      ]) {
        const r = cli([cmd, trace, '-o', file]);
        assert.equal(r.status, 1, show(r));
        assert.equal(r.stderr.trim(), `ringtrace: cannot write ${file}: the directory ${missingDir} does not exist (ENOENT)`);
        noStack(r);
      }
      const r = cli(['report', trace, '-o', dir]);
      assert.equal(r.status, 1, show(r));
      assert.equal(r.stderr.trim(), `ringtrace: cannot write ${dir}: it is a directory (EISDIR)`);
    });

    it(
      'export on a full disk: exit 1 with cannot write <path>: <reason>, no stack trace',
      { skip: !isCharDevice('/dev/full') && 'no /dev/full' },
      () => {
        for (const format of ['chrome', 'jsonl']) {
          const r = cli(['export', trace, '--format', format, '-o', '/dev/full']);
          assert.equal(r.status, 1, show(r));
          assert.equal(r.stderr.trim(), 'ringtrace: cannot write /dev/full: no space left on the device (ENOSPC)');
          noStack(r);
        }
      },
    );

    it('export that fails part-way removes its partial output', () => {
      for (const format of ['chrome', 'jsonl']) {
        const out = join(dir, `partial.${format}`);
        writeFileSync(out, 'an older export');
        // A file-size limit of one 512-byte block: the first batch of the export fails (EFBIG).
        const r = spawnSync(
          '/bin/sh',
          ['-c', 'ulimit -f 1 && exec "$0" "$@"', process.execPath, CLI, 'export', trace, '--format', format, '-o', out],
          {
            env: cleanEnv(),
            encoding: 'utf8',
            timeout: 120_000,
          },
        );
        const run = { status: r.status, stdout: r.stdout, stderr: r.stderr };
        assert.equal(run.status, 1, show(run));
        assert.equal(run.stderr.trim(), `ringtrace: cannot write ${out}: the file is larger than the system allows (EFBIG)`);
        assert.equal(existsSync(out), false, 'the partial export is removed');
      }
    });

    it('report refuses to overwrite the trace it reads (exit 2)', () => {
      const copy = join(dir, 'keep.rtrace');
      copyFileSync(trace, copy);
      const size = statSync(copy).size;
      const r = cli(['report', copy, '-o', copy]);
      assert.equal(r.status, 2, show(r));
      assert.match(r.stderr, /is the trace itself/);
      assert.equal(statSync(copy).size, size);
    });

    it('an unknown format is a usage error (exit 2)', () => {
      const r = cli(['export', trace, '--format', 'xml']);
      assert.equal(r.status, 2, show(r));
      assert.match(r.stderr, /chrome, jsonl/);
    });
  });

  describe('times that are not finite numbers', () => {
    // Written record by record (not by the tracer), so the file holds exactly these times: a
    // caller's recordAt(Infinity), NaN and -Infinity, a value of Infinity, a state change at
    // Infinity, and a chunk whose last time is Infinity.
    const file = join(dir, 'non-finite.rtrace');
    const events: Rec[] = [
      { kind: 'instant', id: 1, ts: 100 },
      { kind: 'value', id: 2, ts: 110, value: 3 },
      { kind: 'begin', id: 3, ts: 120 },
      { kind: 'instant', id: 1, ts: Infinity },
      { kind: 'value', id: 2, ts: NaN, value: 4 },
      { kind: 'instant', id: 1, ts: -Infinity },
      { kind: 'value', id: 2, ts: 130, value: Infinity },
      { kind: 'end', id: 3, ts: Infinity },
    ];
    before(() => {
      const id = chunkIdentity(0, 0, 0, 'main');
      const records = [
        [preamble()],
        headerRecord(0, {}),
        nameRecord(1, 'tick'),
        nameRecord(2, 'depth'),
        nameRecord(3, 'span'),
        threadStartRecord({ thread: 0, slot: 0, nodeThreadId: 0, name: 'main', ts: 10, policy: 0 }),
        chunkRecord({ thread: 0, seq: 0, events: events.length, firstTs: 100, lastTs: Infinity }, id, newLossBlock(), [
          encodeRecords(events),
        ]),
        stateRecord(0, BpState.NORMAL, BpState.PRESSURE, Infinity),
        threadEndRecord(
          { thread: 0, endReason: EndReason.CLOSED, ts: 200, attempted: events.length, eventsWritten: events.length },
          newLossBlock(),
        ),
        footerRecord({ threads: 1, events: events.length, dropped: 0, droppedAfterClose: 0, ts: 200 }),
      ];
      writeFileSync(file, concat(records));
    });

    it("export draws them at the thread's last finite time, flagged with args.fileTs, never null", () => {
      const out = join(dir, 'non-finite.json');
      const r = cli(['export', file, '-o', out]);
      assert.equal(r.status, 0, show(r));
      const j = JSON.parse(readFileSync(out, 'utf8')) as { traceEvents: ChromeEvent[] };
      const finite = (x: unknown) => x === undefined || (typeof x === 'number' && Number.isFinite(x));
      for (const e of j.traceEvents) {
        assert.ok(finite(e.ts) && finite(e.dur), `finite ts and dur: ${JSON.stringify(e)}`);
        if (e.ph === 'C') assert.ok(Object.values(e.args ?? {}).every(finite), `finite counter values: ${JSON.stringify(e)}`);
      }
      const main = j.traceEvents.filter((e) => e.tid === 1 && e.ph !== 'M' && !/^(dropped events|backpressure state)$/.test(e.name));
      const at = (e: ChromeEvent) => [e.name, e.ph, e.ts, e.args?.fileTs];
      assert.deepEqual(main.map(at), [
        ['tick', 'i', 0.1, undefined],
        ['depth', 'C', 0.11, undefined],
        ['tick', 'i', 0.12, 'Infinity'],
        ['depth', 'C', 0.12, undefined],
        ['ringtrace.non-finite time', 'i', 0.12, 'NaN'],
        ['tick', 'i', 0.12, '-Infinity'],
        ['depth', 'i', 0.13, undefined],
        ['span', 'X', 0.12, 'Infinity'], // the slice, drawn when its end (at Infinity) is read
        ['state: normal->pressure', 'i', 0.13, 'Infinity'],
      ]);
      assert.equal(main.find((e) => e.ph === 'X')?.dur, 0.01);
      assert.deepEqual(main.find((e) => e.name === 'depth' && e.ph === 'i')?.args, { value: 'Infinity' });
    });

    it("report draws them at the thread's last finite time and says how many there were", () => {
      const out = join(dir, 'non-finite.html');
      const r = cli(['report', file, '-o', out]);
      assert.equal(r.status, 0, show(r));
      const html = readFileSync(out, 'utf8');
      assert.doesNotMatch(html, /NaN|Infinity/);
      assert.match(html, /<p class="bad" id="time-note">5 times in the file are not finite numbers/);
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
      for (const args of [
        ['--help'],
        ['demo', '--help'],
        ['inspect', '--help'],
        ['export', '--help'],
        ['report', '--help'],
        ['config', '--help'],
        ['bench', '--help'],
      ]) {
        const r = cli(args);
        assert.equal(r.status, 0, `${args.join(' ')}: ${show(r)}`);
        assert.match(r.stdout, /Usage: ringtrace/);
      }
    });

    it("bench declares the benchmark script's options; anything else is a usage error", () => {
      const help = cli(['bench', '--help']);
      for (const opt of ['--quick', '--json <file>', '--write-docs', '--only <sections>'])
        assert.ok(help.stdout.includes(opt), `${opt} in ${help.stdout}`);
      assert.match(help.stdout.replace(/\s+/g, ' '), /hotpath, drain, e2e, scale, peers/, 'the sections --only takes');
      for (const [args, want] of [
        [['bench', '--bogus'], /unknown option '--bogus'/],
        [['bench', '--only', 'hotpath,nope'], /unknown section nope/],
        [['bench', 'extra'], /too many arguments/],
        [['bench', '--json'], /argument missing/],
      ] as const) {
        const r = cli([...args]);
        assert.equal(r.status, 2, `${args.join(' ')}: ${show(r)}`);
        assert.match(r.stderr, want);
        noStack(r);
      }
    });

    it('bad option values, unknown commands and missing arguments exit 2', () => {
      for (const args of [
        ['demo', '--workers', 'many'],
        ['demo', '--seconds', '0'],
        ['demo', '--metrics-linger', '2'],
        ['inspect'],
        ['frobnicate'],
        [],
      ]) {
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
  it('serves Prometheus metrics from the start until after the summary, with the final values', async () => {
    const out = mkdtempSync(join(tmpdir(), 'rt-cli-metrics-'));
    const p = spawn(
      process.execPath,
      [CLI, 'demo', '--seconds', '2', '--workers', '1', '--out', out, '--no-live', '--metrics-port', '0', '--metrics-linger', '3'],
      {
        env: cleanEnv(),
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    const exited = new Promise<number | null>((res) => p.once('exit', res));
    /** Resolves with the first match of `re` in stdout (so far or to come). */
    const waitFor = (re: RegExp) =>
      new Promise<RegExpExecArray>((res, rej) => {
        const look = () => {
          const m = re.exec(stdout);
          if (!m) return false;
          p.stdout.off('data', look);
          res(m);
          return true;
        };
        if (look()) return;
        p.stdout.on('data', look);
        void exited.then(() => rej(new Error(`demo exited before printing ${re}:\n${stdout}`)));
      });
    p.stdout.on('data', (b: Buffer) => (stdout += b));
    try {
      const url = (await waitFor(/metrics: (http:\/\/127\.0\.0\.1:\d+\/metrics)/))[1];
      const early = await (await fetch(url)).text();
      assert.match(early, /# TYPE ringtrace_events_attempted_total counter/);
      assert.match(early, /ringtrace_backpressure_state\{thread="main",slot="\d+",state="normal"\}/);

      // After the summary and the result line, the server still answers, with the final counts.
      await waitFor(/^result: /m);
      const res = await fetch(url);
      assert.equal(res.status, 200);
      const final = await res.text();
      const sum = (name: string) =>
        [...final.matchAll(new RegExp(`^ringtrace_${name}\\{[^}]*\\} (\\d+)$`, 'gm'))].reduce((n, m) => n + Number(m[1]), 0);
      const s = openTrace(join(out, 'trace.rtrace')).summary();
      assert.equal(sum('events_attempted_total'), s.totals.attempted, final);
      assert.equal(sum('events_written_total'), s.totals.events);
      assert.equal(sum('events_dropped_total'), s.totals.dropped);
      assert.match(stdout, /metrics: serving the final values at http:\/\/127\.0\.0\.1:\d+\/metrics for 3 s more/);

      assert.equal(await exited, 0, stdout);
      await assert.rejects(fetch(url), 'closed once the demo is done');
    } finally {
      p.kill();
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('a busy port is a usage error (exit 2) before anything is recorded', async () => {
    const busy = createServer();
    await new Promise<void>((res) => busy.listen(0, '127.0.0.1', res));
    const port = (busy.address() as { port: number }).port;
    const out = join(mkdtempSync(join(tmpdir(), 'rt-cli-busy-')), 'demo');
    try {
      const r = cli(['demo', '--seconds', '2', '--workers', '1', '--out', out, '--no-live', '--metrics-port', String(port)]);
      assert.equal(r.status, 2, show(r));
      assert.equal(
        r.stderr.trim(),
        `ringtrace: --metrics-port ${port}: port ${port} on 127.0.0.1 is already in use (choose another port, or 0 for any free one)`,
      );
      noStack(r);
      assert.ok(!existsSync(out), 'no output directory, no half-written trace');
    } finally {
      busy.close();
      rmSync(join(out, '..'), { recursive: true, force: true });
    }
  });

  it('without prom-client it says so (exit 2) before anything is recorded', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rt-cli-noprom-'));
    // A loader hook that makes prom-client unresolvable, as when the optional peer is not installed.
    const hooks = `export async function resolve(specifier, context, next) {
      if (specifier === 'prom-client') throw Object.assign(new Error("Cannot find package 'prom-client'"), { code: 'ERR_MODULE_NOT_FOUND' });
      return next(specifier, context);
    }`;
    const register = join(dir, 'no-prom-client.mjs');
    writeFileSync(
      register,
      `import { register } from 'node:module';\nregister(${JSON.stringify('data:text/javascript,' + encodeURIComponent(hooks))});\n`,
    );
    const out = join(dir, 'demo');
    try {
      const r = cli(['demo', '--seconds', '2', '--workers', '1', '--out', out, '--no-live', '--metrics-port', '0'], {}, [
        '--import',
        pathToFileURL(register).href,
      ]);
      assert.equal(r.status, 2, show(r));
      assert.match(
        r.stderr,
        /^ringtrace: --metrics-port needs the optional peer dependency prom-client, which is not installed \(npm install prom-client\)$/m,
      );
      noStack(r);
      assert.ok(!existsSync(out), 'no output directory, no half-written trace');
      assert.deepEqual(readdirSync(dir), ['no-prom-client.mjs']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('demo live view', () => {
  it('progress bar and phase line', () => {
    const p = { elapsedMs: 1500, totalMs: 3000, phase: Phase.BURST, step: 2, phaseLeftMs: 250, settling: false };
    assert.equal(progressBar(p, 10), '[█████░░░░░] 1.5/3.0 s');
    assert.equal(phaseLine(p, { paused: false, throttleKiBps: 256 }), 'phase 2/3: burst, 0.3 s left (drain throttled to 256 KiB/s)');
    assert.equal(phaseLine(p, { paused: true, throttleKiBps: 0 }), 'phase 2/3: burst, 0.3 s left (drain paused)');
    const settling = { ...p, phase: Phase.RECOVERY, step: 3, phaseLeftMs: 0, elapsedMs: 4000, settling: true };
    assert.equal(progressBar(settling, 10), '[██████████] 3.0/3.0 s', 'a full bar, never past the plan');
    assert.equal(
      phaseLine(settling, { paused: false, throttleKiBps: 0 }),
      'phase 3/3: recovery, waiting for every thread to be back to normal',
    );
    assert.equal(phaseLine({ ...p, phase: Phase.STOP, step: 3, phaseLeftMs: undefined }, { paused: false, throttleKiBps: 0 }), 'stopping');
  });

  // The live view needs a terminal: script(1) gives the demo a pseudo-terminal (sized with stty).
  const script = spawnSync('script', ['-qec', 'true', '/dev/null'], { stdio: 'ignore' });
  it(
    'redraws in place on a terminal, with the progress bar and the phase',
    { skip: script.status !== 0 && 'script(1) cannot run a pseudo-terminal here' },
    () => {
      const out = mkdtempSync(join(tmpdir(), 'rt-cli-tty-'));
      try {
        const q = (x: string) => `'${x.replace(/'/g, `'\\''`)}'`;
        const cmd = `stty rows 40 cols 160 && exec ${q(process.execPath)} ${q(CLI)} demo --seconds 2 --workers 1 --out ${q(out)}`;
        const r = spawnSync('script', ['-qec', cmd, '/dev/null'], {
          env: cleanEnv(),
          stdio: ['ignore', 'pipe', 'pipe'],
          encoding: 'utf8',
          timeout: 120_000,
        });
        const run: Run = { status: r.status, stdout: r.stdout, stderr: r.stderr };
        assert.equal(run.status, 0, show(run));
        assert.ok(run.stdout.includes('\u001b[2K\u001b[1A'), 'erases the previous frame');
        const frames = run.stdout.split('ringtrace demo  [').slice(1);
        assert.ok(frames.length >= 5, `redrawn several times (${frames.length})`);
        assert.ok(
          frames.some((f) =>
            /^[█░]{30}\] \d+\.\d\/2\.0 s\r?\n {2}phase 2\/3: burst, \d\.\d s left \(drain throttled to 256 KiB\/s\)/.test(f),
          ),
          'a frame in the burst',
        );
        assert.match(frames[frames.length - 1], /^█{30}\] \d+\.\d\/2\.0 s\r?\n {2}stopping/, 'the last frame is complete');
        assert.match(run.stdout, /thread\s+policy\s+state\s+events\/s/);
        assert.match(run.stdout, /result: every thread balanced/);
        assert.doesNotMatch(run.stdout, /^\[\s*\d+\.\d\/2\.0 s\]/m, 'no plain lines on a terminal');
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    },
  );
});
