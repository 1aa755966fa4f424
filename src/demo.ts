/**
 * `ringtrace demo` (`npm start`): the main thread and N workers record a realistic mix in three
 * phases while a live view shows each thread's backpressure state:
 *
 *   1. normal load: every thread records at a steady rate the drain easily keeps up with;
 *   2. burst: the drain is paused (~600 ms) while every thread records flat out, so each pool of
 *      rings runs out and the threads drop (drop-oldest on most, drop-newest on worker-1);
 *   3. recovery: back to the steady rate, for at least a second and until every thread is back
 *      in 'normal'.
 *
 * Then the tracer is closed and the file is inspected: for every thread, attempted = events in
 * the file + dropped (the exit code says whether that held), and exported for Perfetto.
 */
import { createWriteStream, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import logUpdate from 'log-update';
import { DemoLoad, PHASE_NAMES, Phase, driveLoad, type DemoWorkerData, type PhaseValue } from './demo-worker.js';
import { exportTrace } from './export.js';
import { collectReport, formatReport } from './inspect.js';
import type { LogEntry } from './logger.js';
import type { MetricsSnapshot } from './metrics.js';
import { openTrace } from './reader.js';
import { renderReport, reportData } from './report.js';
import { Tracer } from './tracer.js';

export interface DemoOptions {
  /** Directory for trace.rtrace and trace.json; default a fresh temp directory. */
  out?: string;
  /** Total run time in seconds (at least 2). */
  seconds: number;
  workers: number;
  /** Redraw a live view (only on a TTY); otherwise one plain line per second. */
  live: boolean;
  /** Serve Prometheus metrics on 127.0.0.1:<port>/metrics while the demo runs (0: any free port). */
  metricsPort?: number;
}

/** Small rings so the burst visibly exhausts the pools: 4 x 64 KiB per thread. */
const DEMO_RINGS = { ringSize: '64KiB', ringsPerThread: 4 } as const;
const BURST_MS = 600;
const MIN_RECOVERY_MS = 1000;
/** Upper bound on waiting for every thread to be back to 'normal' after the recovery phase. */
const SETTLE_LIMIT_MS = 10_000;
const VIEW_INTERVAL_MS = 200;
const PLAIN_INTERVAL_MS = 1000;

/** Runs the demo and prints its report; returns the process exit code (0: the trace balanced). */
export async function runDemo(opts: DemoOptions): Promise<number> {
  const dir = opts.out === undefined ? mkdtempSync(join(tmpdir(), 'ringtrace-demo-')) : resolve(opts.out);
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'trace.rtrace');

  const totalMs = opts.seconds * 1000;
  const recoveryMs = Math.max(MIN_RECOVERY_MS, 0.35 * totalMs);
  const normalMs = Math.max(300, totalMs - BURST_MS - recoveryMs);

  const log = new LogTail();
  const tracer = await Tracer.open({ path, ...DEMO_RINGS, logger: log.push });
  const metrics = opts.metricsPort === undefined ? undefined : await serveMetrics(tracer, opts.metricsPort);
  if (metrics) console.log(`metrics: http://127.0.0.1:${metrics.port}/metrics`);
  const phaseBuf = new SharedArrayBuffer(4);
  const phase = new Int32Array(phaseBuf);
  // A terminal that reports no size (some pseudo-terminals) would make log-update draw nothing.
  const tty = process.stdout.isTTY === true && process.stdout.rows > 0 && process.stdout.columns > 0;
  const view = new LiveView(opts.live && tty, tracer, log, () => Atomics.load(phase, 0) as PhaseValue);

  const workers: Array<{ worker: Worker; exited: Promise<number> }> = [];
  let failure: Error | undefined;
  const fail = (e: Error) => (failure ??= e);
  try {
    for (let i = 1; i <= opts.workers; i++) {
      const data: DemoWorkerData = {
        kind: 'ringtrace.demo-worker',
        handle: tracer.handle,
        name: `worker-${i}`,
        // worker-1 shows the other policy: it keeps what it has and refuses new events.
        policy: i === 1 ? 'drop-newest' : undefined,
        phase: phaseBuf,
      };
      const worker = new Worker(new URL('./demo-worker.js', import.meta.url), { workerData: data, name: data.name });
      worker.on('error', (e) => fail(new Error(`${data.name} failed: ${e.message}`)));
      workers.push({ worker, exited: new Promise((res) => worker.once('exit', res)) });
    }

    const main = new DemoLoad(tracer, tracer.register('main'));
    // The main thread records like the workers, but sleeps between bursts so the live view draws.
    const mainLoad = driveLoad(main, phase, 15, () => sleep(10));
    view.start();

    const setPhase = (p: PhaseValue) => Atomics.store(phase, 0, p);
    await sleepUnlessFailed(normalMs, () => failure);
    await tracer.pauseDrain();
    setPhase(Phase.BURST);
    await sleepUnlessFailed(BURST_MS, () => failure);
    setPhase(Phase.RECOVERY);
    tracer.resumeDrain();
    await sleepUnlessFailed(recoveryMs, () => failure);
    // Recovery takes the stability period (and the drain's catching up) after the burst; a slow
    // machine may need longer than the phase, so wait for it rather than cut it short.
    const settleBy = performance.now() + SETTLE_LIMIT_MS;
    while (!failure && !allNormal(tracer.metrics()) && performance.now() < settleBy) await sleep(50);

    setPhase(Phase.STOP);
    await mainLoad;
    await Promise.all(workers.map((w) => w.exited));
  } finally {
    Atomics.store(phase, 0, Phase.STOP);
    view.stop();
  }
  const closed = await tracer.close();
  await metrics?.close();
  if (failure) throw failure;
  for (const e of log.errors) process.stderr.write(`error: ${describeLog(e)}\n`);

  const reader = openTrace(path);
  const report = collectReport(reader);
  console.log(formatReport(report, { maxDrops: 12 }));
  const jsonPath = join(dir, 'trace.json');
  const out = createWriteStream(jsonPath);
  await exportTrace(reader, 'chrome', out);
  out.end();
  await new Promise<void>((res, rej) => out.once('finish', res).once('error', rej));
  const htmlPath = join(dir, 'report.html');
  writeFileSync(htmlPath, renderReport(reportData(reader)));

  const s = report.summary;
  const ok = s.totals.balanced && s.complete && !s.damage && closed?.balanced === true;
  console.log('');
  console.log(`trace:        ${path}`);
  console.log(`chrome trace: ${jsonPath}  (open it in https://ui.perfetto.dev or chrome://tracing)`);
  console.log(`html report:  ${htmlPath}`);
  console.log(ok ? 'result: every thread balanced (attempted = events + dropped)' : 'result: NOT balanced: the trace lost count of some events');
  return ok ? 0 : 1;
}

/** Prometheus exposition over HTTP (prom-client is an optional peer: loaded only when asked). */
async function serveMetrics(tracer: Tracer, port: number): Promise<{ port: number; close(): Promise<void> }> {
  let prom: typeof import('prom-client');
  try {
    prom = await import('prom-client');
  } catch {
    throw new Error('ringtrace: --metrics-port needs the optional peer dependency prom-client (npm install prom-client)');
  }
  const { registerPrometheus } = await import('./prometheus.js');
  const registry = new prom.Registry();
  registerPrometheus(tracer, registry);
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('try /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: Error) => res.writeHead(500).end(err.message),
    );
  });
  await new Promise<void>((res, rej) => server.once('error', rej).listen(port, '127.0.0.1', res));
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : port,
    close: () => new Promise<void>((res) => server.close(() => res())),
  };
}

const allNormal = (m: MetricsSnapshot) => m.threads.every((t) => t.state === 'normal');

async function sleepUnlessFailed(ms: number, failed: () => Error | undefined): Promise<void> {
  const until = performance.now() + ms;
  while (!failed() && performance.now() < until) await sleep(Math.min(50, until - performance.now()));
}

/**
 * Holds the tracer's log messages (state changes, drop reports) for the view, instead of letting
 * the default JSON lines on stderr scroll through it.
 */
class LogTail {
  /** The latest few, for the live view. */
  readonly recent: LogEntry[] = [];
  /** Not yet shown, for the plain lines. */
  pending: LogEntry[] = [];
  readonly errors: LogEntry[] = [];
  readonly push = (e: LogEntry): void => {
    this.recent.push(e);
    if (this.recent.length > 3) this.recent.shift();
    this.pending.push(e);
    if (e.level === 'error') this.errors.push(e);
  };
}

const describeLog = (e: LogEntry): string => `${e.msg.replace(/^ringtrace: /, '')}${typeof e.name === 'string' ? ` (${e.name})` : ''}`;

const rate = (n: number): string => (n >= 10_000 ? `${(n / 1000).toFixed(0)}k` : n >= 1000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0));

const dropped = (r: Partial<Record<string, number>>): string =>
  Object.entries(r)
    .map(([reason, n]) => `${reason} ${n}`)
    .join(', ') || '0';

/** One row per thread from tracer.metrics(), redrawn in place on a TTY or printed as a line. */
class LiveView {
  private timer: NodeJS.Timeout | undefined;
  private readonly started = performance.now();
  private prev = new Map<number, { at: number; attempted: number }>();
  private lastAt = performance.now();

  constructor(
    private readonly live: boolean,
    private readonly tracer: Tracer,
    private readonly log: LogTail,
    private readonly phase: () => PhaseValue,
  ) {}

  start(): void {
    this.rates(this.tracer.metrics()); // a baseline, so the first line has rates
    this.timer = setInterval(() => this.draw(), this.live ? VIEW_INTERVAL_MS : PLAIN_INTERVAL_MS);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.draw(); // the final state
    if (this.live) logUpdate.done();
  }

  /** Events attempted per second since the previous draw, per thread. */
  private rates(m: MetricsSnapshot): Map<number, number> {
    const now = performance.now();
    const out = new Map<number, number>();
    const next = new Map<number, { at: number; attempted: number }>();
    for (const t of m.threads) {
      // A thread that registered since the last draw counts from zero at that draw.
      const p = this.prev.get(t.thread) ?? { at: this.lastAt, attempted: 0 };
      out.set(t.thread, now > p.at ? ((t.eventsAttempted - p.attempted) * 1000) / (now - p.at) : 0);
      next.set(t.thread, { at: now, attempted: t.eventsAttempted });
    }
    this.prev = next;
    this.lastAt = now;
    return out;
  }

  private draw(): void {
    const m = this.tracer.metrics();
    const rates = this.rates(m);
    const elapsed = ((performance.now() - this.started) / 1000).toFixed(1);
    const phase = PHASE_NAMES[this.phase()];
    if (!this.live) {
      for (const e of this.log.pending.splice(0)) if (e.level !== 'debug') console.log(`  log: ${describeLog(e)}`);
      const threads = m.threads.map(
        (t) => `${t.name} ${t.state} ${rate(rates.get(t.thread) ?? 0)}/s dropped ${dropped(t.droppedByReason)} free ${t.freeSpares}/${DEMO_RINGS.ringsPerThread - 1}`,
      );
      console.log(`[${elapsed.padStart(5)} s] ${phase}${m.drain.paused ? ' (drain paused)' : ''} | ${threads.join(' | ')}`);
      return;
    }
    const rows = [
      ['thread', 'policy', 'state', 'events/s', 'written', 'dropped', 'free spares'],
      ...m.threads.map((t) => [
        t.name,
        t.policy,
        t.state,
        rate(rates.get(t.thread) ?? 0),
        String(t.eventsWritten),
        dropped(t.droppedByReason),
        `${t.freeSpares}/${DEMO_RINGS.ringsPerThread - 1}`,
      ]),
    ];
    const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
    const table = rows.map((r) => '  ' + r.map((cell, c) => cell.padEnd(widths[c])).join('  ')).join('\n');
    this.log.pending.length = 0; // the live view shows `recent` instead
    const last = this.log.recent.map((e) => `\n  log: ${describeLog(e)}`).join('');
    logUpdate(
      `ringtrace demo  ${elapsed} s  phase: ${phase}${m.drain.paused ? '  [drain paused]' : ''}\n` +
        `  trace: ${this.tracer.path}\n\n${table}\n\n` +
        `  total: ${m.totals.eventsAttempted} attempted, ${m.totals.eventsWritten} written, ${m.totals.eventsDropped} dropped\n${last}`,
    );
  }
}
