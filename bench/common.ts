/**
 * Shared pieces of the benchmark suite: run options, the mitata-based burst harness, result rows
 * and table printing.
 *
 * Every timed function is one *burst* of `perCall` events; mitata times one burst per sample
 * (its batching is switched off with `batch_threshold: -1`, so a per-sample setup can run outside
 * the timed region: mitata's "computed parameter" `[0]()` is called before every sample). The
 * reported per-event time is the median burst time / perCall.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { measure } from 'mitata';
import type { LogEntry, Logger } from '../src/index.js';

export interface RunOptions {
  quick: boolean;
  /** Only run sections whose name is listed (empty: all). */
  only: string[];
}

export interface Row {
  section: string;
  name: string;
  /** The measured median (or the single measured value for throughput runs). */
  value: number;
  unit: string;
  /** What the ratio is taken against, e.g. "raw store floor". */
  baseline?: string;
  /** value / baseline value (or baseline / value for "x faster" rows; see ratioLabel). */
  ratio?: number;
  ratioLabel?: string;
  /** value - baseline value, in the row's unit (shown for "within N ns" targets). */
  delta?: number;
  target?: string;
  /** true PASS, false MISS, undefined: no target (information). */
  pass?: boolean;
  /** Extra facts (p25/p75, samples, drops...). */
  detail?: Record<string, unknown>;
  note?: string;
}

export interface BurstStats {
  /** per-event ns, from the median burst */
  p50: number;
  p25: number;
  p75: number;
  p99: number;
  min: number;
  samples: number;
  perCall: number;
}

export interface BurstOptions<A = unknown> {
  /** Events per call of `fn`. */
  perCall: number;
  /** Runs before every sample (and warm-up call), outside the timed region; its result is passed to fn. */
  setup?: () => A;
  /** Override the sample counts (e.g. slow bursts). */
  minSamples?: number;
  maxSamples?: number;
  warmup?: number;
}

export function harness(opts: RunOptions) {
  const q = opts.quick;
  return {
    warmup: q ? 20 : 200,
    minSamples: q ? 40 : 400,
    maxSamples: q ? 120 : 2000,
    minCpuMs: q ? 2 : 40,
  };
}

/**
 * Times `fn` (one burst of perCall events) with mitata: warm-up calls, then >= minSamples samples
 * of one call each, setup before each outside the timing. Returns per-event statistics.
 */
export async function burst<A>(opts: RunOptions, fn: (arg: A) => unknown, o: BurstOptions<A>): Promise<BurstStats> {
  const h = harness(opts);
  const setup = o.setup;
  const gen = setup
    ? function* () {
        yield {
          [0]: setup,
          bench(arg: A) {
            return fn(arg);
          },
        };
      }
    : function* () {
        yield () => fn(undefined as A);
      };
  const s = await measure(gen, {
    gc: false, // no --expose-gc: mitata's fallback would allocate 1 GiB
    batch_threshold: -1, // one burst per sample, so the per-sample setup stays outside the timing
    warmup_threshold: Infinity,
    warmup_samples: o.warmup ?? h.warmup,
    min_samples: o.minSamples ?? h.minSamples,
    max_samples: o.maxSamples ?? h.maxSamples,
    min_cpu_time: h.minCpuMs * 1e6,
  });
  const k = o.perCall;
  return { p50: s.p50 / k, p25: s.p25 / k, p75: s.p75 / k, p99: s.p99 / k, min: s.min / k, samples: s.samples.length, perCall: k };
}

export function statDetail(s: BurstStats): Record<string, unknown> {
  return { p25: round(s.p25), p75: round(s.p75), p99: round(s.p99), min: round(s.min), samples: s.samples, eventsPerSample: s.perCall };
}

export const round = (n: number, d = 2): number => (Number.isFinite(n) ? Math.round(n * 10 ** d) / 10 ** d : n);

/** Busy-waits (the drain is another thread) until cond() holds; throws after timeoutMs. */
export function spinUntil(cond: () => boolean, timeoutMs = 10_000, what = 'condition'): void {
  const deadline = performance.now() + timeoutMs;
  let n = 0;
  while (!cond()) {
    if ((++n & 1023) === 0 && performance.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
  }
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
/** Blocks this thread for about `ms` (gives the CPU to the drain on a 2-core machine). */
export function sleepSync(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A logger that keeps what the tracer says (so the tables are not interleaved with JSON lines). */
export function collectingLogger(): Logger & { entries: LogEntry[]; count(level: string): number } {
  const entries: LogEntry[] = [];
  const f = ((e: LogEntry) => {
    if (entries.length < 10_000) entries.push(e);
  }) as Logger & { entries: LogEntry[]; count(level: string): number };
  f.entries = entries;
  f.count = (level) => entries.filter((e) => e.level === level).length;
  return f;
}

let tmpRoot: string | undefined;
export function tempDir(): string {
  tmpRoot ??= mkdtempSync(join(tmpdir(), 'ringtrace-bench-'));
  return tmpRoot;
}
export function cleanupTemp(): void {
  if (tmpRoot) rmSync(tmpRoot, { recursive: true, force: true });
  tmpRoot = undefined;
}

export function loud(msg: string): void {
  const bar = '!'.repeat(78);
  console.error(`\n${bar}\n!!! ${msg}\n${bar}\n`);
}

export function fmtValue(v: number, unit: string): string {
  if (!Number.isFinite(v)) return String(v);
  if (unit === 'ns/event' || unit === 'ns/swap' || unit === 'ns') return v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0);
  if (unit === 'MB/s') return v.toFixed(0);
  if (unit === 'events/s') return v >= 1e6 ? `${(v / 1e6).toFixed(2)} M` : `${(v / 1e3).toFixed(1)} k`;
  if (unit === 'MiB') return v.toFixed(1);
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}

export function printTable(title: string, rows: Row[]): void {
  const head = ['name', 'median', 'unit', 'ratio', 'delta', 'vs', 'target', 'result'];
  const body = rows.map((r) => [
    r.name,
    fmtValue(r.value, r.unit),
    r.unit,
    r.ratio === undefined ? '' : `${r.ratio < 10 ? r.ratio.toFixed(2) : r.ratio.toFixed(1)}${r.ratioLabel ?? 'x'}`,
    r.delta === undefined ? '' : `${r.delta >= 0 ? '+' : ''}${fmtValue(r.delta, r.unit)}`,
    r.baseline ?? '',
    r.target ?? '',
    r.pass === undefined ? '' : r.pass ? 'PASS' : 'MISS',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === 1 || i === 3 || i === 4 ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  console.log(`\n== ${title}`);
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const b of body) console.log(line(b));
  for (const r of rows) if (r.note) console.log(`   * ${r.name}: ${r.note}`);
}
