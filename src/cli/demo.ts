/**
 * `ringtrace demo` (`npm start`): the main thread and N workers record a realistic mix in three
 * phases while a live view shows each thread's backpressure state. The phases start once every
 * worker has registered (it says 'ready' and waits for 'start'), so all threads record from the
 * start of the normal phase:
 *
 *   1. normal load: every thread records at a steady rate the drain easily keeps up with;
 *   2. burst (~600 ms): the drain is throttled to BURST_DRAIN_KIBPS while every thread records
 *      flat out, so each pool of rings runs out and the threads drop (drop-oldest on most,
 *      drop-newest on worker-1);
 *   3. recovery: the drain back at full speed and the threads at the steady rate, for at least a
 *      second and until every thread is back in 'normal'.
 *
 * Then the tracer is closed and the file tells the run: when each phase began and each thread's
 * state changes in time order, then the inspection: for every thread, attempted = events in the
 * file + dropped (the exit code says whether that held); and it is exported for Perfetto.
 */
import { createWriteStream, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { createLogUpdate } from 'log-update';
import {
  DemoLoad,
  PHASE_NAMES,
  Phase,
  driveLoad,
  type DemoWorkerData,
  type DemoWorkerDone,
  type DemoWorkerReady,
  type DemoWorkerStart,
  type PhaseValue,
} from './demo-worker.js';
import { exportTrace } from './export.js';
import { collectInspection, formatInspection } from './inspect.js';
import type { LogEntry } from '../logger.js';
import type { MetricsSnapshot } from '../metrics/metrics.js';
import { openTrace, type TraceReader, type TraceStateChange } from '../file/reader.js';
import { renderReport, htmlReportData } from './report.js';
import { Tracer } from '../tracer.js';

/** Where the demo prints: a terminal gets the live view when it reports a size. */
export type DemoOutput = NodeJS.WritableStream & { isTTY?: boolean; rows?: number; columns?: number };

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
  /** Seconds to keep serving the final metrics after the summary (default 0: close at once). */
  metricsLinger?: number;
  /** Where to print (default process.stdout). */
  stdout?: DemoOutput;
}

/**
 * A demo that cannot start as asked (an unusable --metrics-port): nothing was recorded, and the
 * CLI reports it as a usage error without a stack trace.
 */
export class DemoSetupError extends Error {
  override readonly name = 'DemoSetupError';
}

/** Small rings so the burst visibly exhausts the pools: 4 x 64 KiB per thread. */
const DEMO_RINGS = { ringSize: '64KiB', ringsPerThread: 4 } as const;
const BURST_MS = 600;
/**
 * The drain's budget during the burst. Below even the normal load of the threads together
 * (about 0.5 MB/s each), so every pool runs out however fast the machine records, while the
 * drain still writes: the burst shows a throttled drain rather than a stopped one.
 */
export const BURST_DRAIN_KIBPS = 256;
const MIN_RECOVERY_MS = 1000;
/** Upper bound on waiting for every thread to be back to 'normal' after the recovery phase. */
const SETTLE_LIMIT_MS = 10_000;
const VIEW_INTERVAL_MS = 200;
const PLAIN_INTERVAL_MS = 1000;

/** Runs the demo and prints its report; returns the process exit code (0: the trace balanced). */
export async function runDemo(opts: DemoOptions): Promise<number> {
  const out = opts.stdout ?? process.stdout;
  const say = (line = '') => out.write(line + '\n');
  // The metrics server first: a missing prom-client or a busy port ends the demo before it has
  // created anything.
  const metrics = opts.metricsPort === undefined ? undefined : await startMetricsServer(opts.metricsPort);
  try {
    return await record(opts, out, say, metrics);
  } finally {
    await metrics?.close();
  }
}

async function record(
  opts: DemoOptions,
  out: DemoOutput,
  say: (line?: string) => void,
  metrics: MetricsServer | undefined,
): Promise<number> {
  const dir = opts.out === undefined ? mkdtempSync(join(tmpdir(), 'ringtrace-demo-')) : resolve(opts.out);
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'trace.rtrace');

  const log = new LogTail();
  // info: the live view shows the latest state changes (the plain output tells them from the file).
  const tracer = await Tracer.open({ path, ...DEMO_RINGS, logLevel: 'info', logger: log.push });
  if (metrics) {
    metrics.serve(tracer);
    say(`metrics: ${metrics.url}`);
  }
  // On the tracer's clock (ms since it opened), the clock of the state changes in the file.
  const progress = new Progress(phasePlan(opts.seconds * 1000), () => tracer.now() / 1e6);
  // A terminal that reports no size (some pseudo-terminals) would make log-update draw nothing.
  const tty = out.isTTY === true && (out.rows ?? 0) > 0 && (out.columns ?? 0) > 0;
  const view = new LiveView(opts.live && tty, out, tracer, log, progress);
  const failure = await runPhases(tracer, opts.workers, progress, view);
  const closed = await tracer.close();
  if (failure) throw failure;
  for (const e of log.notable) process.stderr.write(`${e.level}: ${describeLog(e)}\n`);

  const ok = (await writeOutputs(path, dir, say, progress)) && closed?.balanced === true;
  say(ok ? 'result: every thread balanced (attempted = events + dropped)' : 'result: NOT balanced: the trace lost count of some events');
  // The metrics server is still up: the final values can be scraped until it closes.
  const linger = opts.metricsLinger ?? 0;
  if (metrics && linger > 0) {
    say(`metrics: serving the final values at ${metrics.url} for ${linger} s more`);
    await sleep(linger * 1000);
  }
  return ok ? 0 : 1;
}

/** How long each phase lasts in a run of totalMs: the burst is fixed, recovery at least a second. */
function phasePlan(totalMs: number): PhasePlan {
  const recoveryMs = Math.max(MIN_RECOVERY_MS, 0.35 * totalMs);
  const normalMs = Math.max(300, totalMs - BURST_MS - recoveryMs);
  return { [Phase.NORMAL]: normalMs, [Phase.BURST]: BURST_MS, [Phase.RECOVERY]: recoveryMs };
}

interface DemoWorker {
  worker: Worker;
  /** Resolves once the worker has registered and waits for the start (or has failed or exited). */
  ready: Promise<void>;
  exited: Promise<number>;
}

const START: DemoWorkerStart = { type: 'start' };

/** Starts the workers; each registers its writer, says it is ready and waits for START. */
function startWorkers(tracer: Tracer, count: number, phase: SharedArrayBuffer, fail: (e: Error) => void): DemoWorker[] {
  return Array.from({ length: count }, (_, i) => {
    const data: DemoWorkerData = {
      kind: 'ringtrace.demo-worker',
      handle: tracer.handle,
      name: `worker-${i + 1}`,
      // worker-1 shows the other policy: it keeps what it has and refuses new events.
      policy: i === 0 ? 'drop-newest' : undefined,
      phase,
    };
    const worker = new Worker(new URL('./demo-worker.js', import.meta.url), { workerData: data, name: data.name });
    worker.on('error', (e) => fail(new Error(`${data.name} failed: ${e.message}`)));
    const exited = new Promise<number>((res) => worker.once('exit', res));
    let isReady = false;
    const ready = new Promise<void>((res) => {
      worker.on('message', (m: DemoWorkerReady | DemoWorkerDone) => {
        if (m.type !== 'ready') return;
        isReady = true;
        res();
      });
      // 'error' comes first when it failed (and wins); this covers a quiet early exit.
      void exited.then((code) => {
        if (!isReady) fail(new Error(`${data.name} exited (code ${code}) before it was ready`));
        res();
      });
    });
    return { worker, ready, exited };
  });
}

/**
 * Starts the workers, and once every thread is registered and ready starts the clock and the
 * normal phase on all of them at once; then steps every thread through the phases (throttling
 * the drain for the burst) until all are back in 'normal' and have stopped. Returns the first
 * worker failure, if any.
 */
async function runPhases(tracer: Tracer, workerCount: number, progress: Progress, view: LiveView): Promise<Error | undefined> {
  const plan = progress.plan;
  const phaseBuf = new SharedArrayBuffer(4); // Phase.NORMAL: a worker records from its START
  const phase = new Int32Array(phaseBuf);
  let failure: Error | undefined;
  const fail = (e: Error) => (failure ??= e);
  const workers = startWorkers(tracer, workerCount, phaseBuf, fail);
  let started = false;
  const setPhase = (p: PhaseValue) => {
    Atomics.store(phase, 0, p);
    progress.enter(p);
    view.phaseChanged();
  };
  try {
    const main = new DemoLoad(tracer, tracer.register('main'));
    await Promise.all(workers.map((w) => w.ready));
    progress.start();
    started = true;
    for (const w of workers) w.worker.postMessage(START);
    // The main thread records like the workers, but sleeps between bursts so the live view draws.
    const mainLoad = driveLoad(main, phase, 15, () => sleep(10));
    view.start();

    await sleepUnlessFailed(plan[Phase.NORMAL], () => failure);
    tracer.throttleDrain(BURST_DRAIN_KIBPS);
    setPhase(Phase.BURST);
    await sleepUnlessFailed(plan[Phase.BURST], () => failure);
    tracer.throttleDrain(0); // full speed again
    setPhase(Phase.RECOVERY);
    await sleepUnlessFailed(plan[Phase.RECOVERY], () => failure);
    // Recovery takes the stability period (and the drain's catching up) after the burst; a slow
    // machine may need longer than the phase, so wait for it rather than cut it short.
    progress.settling = true;
    const settleBy = performance.now() + SETTLE_LIMIT_MS;
    while (!failure && !allNormal(tracer.metrics()) && performance.now() < settleBy) await sleep(50);

    setPhase(Phase.STOP);
    await mainLoad;
    await Promise.all(workers.map((w) => w.exited));
  } finally {
    Atomics.store(phase, 0, Phase.STOP);
    if (!started) for (const w of workers) w.worker.postMessage(START); // they see STOP and end
    progress.enter(Phase.STOP);
    view.stop();
  }
  return failure;
}

/**
 * Prints the trace's summary, writes trace.json and report.html beside it and prints the three
 * paths. Returns whether the file is complete, undamaged and balanced.
 */
async function writeOutputs(path: string, dir: string, say: (line?: string) => void, progress: Progress): Promise<boolean> {
  const reader = openTrace(path);
  say(formatStory(reader, progress.marks, progress.startedAt));
  say('');
  const report = collectInspection(reader);
  say(formatInspection(report, { maxDrops: 12 }));
  const jsonPath = join(dir, 'trace.json');
  const json = createWriteStream(jsonPath);
  await exportTrace(reader, 'chrome', json);
  json.end();
  await new Promise<void>((res, rej) => json.once('finish', res).once('error', rej));
  const htmlPath = join(dir, 'report.html');
  writeFileSync(htmlPath, renderReport(htmlReportData(reader)));

  const s = report.summary;
  say('');
  say(`trace:        ${path}`);
  say(`chrome trace: ${jsonPath}  (open it in https://ui.perfetto.dev or chrome://tracing)`);
  say(`html report:  ${htmlPath}`);
  return s.totals.balanced && s.complete && !s.damage;
}

const STORY_WIDTH = 100;

/**
 * The run as it happened, from the trace file: when each phase began, then each thread's state
 * changes in time order, every time in seconds since the normal phase began (`startMs`, on the
 * tracer's clock like the marks). A change shows the state entered; its origin too when it is not
 * the state before (a change the thread could not log).
 */
export function formatStory(trace: Pick<TraceReader, 'threads' | 'states'>, marks: PhaseMark[], startMs: number): string {
  const at = (ms: number) => ((ms - startMs) / 1000).toFixed(3);
  const lines = [
    `phases (s since the start, which was ${(startMs / 1000).toFixed(3)} s after the tracer opened): ` +
      marks.map((m) => `${PHASE_NAMES[m.phase]} ${at(m.at)}`).join(', '),
  ];
  lines.push('state changes (s since the start; each thread in time order, the state it entered):');
  const byThread = new Map<number, TraceStateChange[]>();
  for (const c of trace.states()) byThread.set(c.thread, [...(byThread.get(c.thread) ?? []), c]);
  const width = Math.max(0, ...trace.threads.map((t) => t.name.length));
  for (const t of trace.threads) {
    const changes = (byThread.get(t.index) ?? []).sort((a, b) => a.ts - b.ts);
    let state = 'normal';
    const items = changes.map((c) => {
      const item = `${at(c.ts / 1e6)} ${c.from === state ? '' : `${c.from} -> `}${c.to}`;
      state = c.to;
      return item;
    });
    lines.push(...wrap(`  ${t.name.padEnd(width)}  `, items.length > 0 ? items : ['none']));
  }
  return lines.join('\n');
}

/** Items joined by ", " after `head`, continued on lines indented as deep as `head`. */
function wrap(head: string, items: string[]): string[] {
  const lines: string[] = [];
  let line = head;
  for (const [i, item] of items.entries()) {
    const piece = item + (i < items.length - 1 ? ',' : '');
    if (line.length > head.length && line.length + 1 + piece.length > STORY_WIDTH) {
      lines.push(line);
      line = ' '.repeat(head.length);
    }
    line += (line.length > head.length ? ' ' : '') + piece;
  }
  return [...lines, line];
}

interface MetricsServer {
  readonly url: string;
  /** Starts answering /metrics from this tracer (503 until then). */
  serve(tracer: Tracer): void;
  close(): Promise<void>;
}

/**
 * Loads prom-client (an optional peer: only when asked) and binds the port, before the demo
 * records anything, so either failure is a clear error and leaves no trace behind.
 */
async function startMetricsServer(port: number): Promise<MetricsServer> {
  let prom: typeof import('prom-client');
  try {
    prom = await import('prom-client');
  } catch {
    throw new DemoSetupError(
      'ringtrace: --metrics-port needs the optional peer dependency prom-client, which is not installed (npm install prom-client)',
    );
  }
  const { registerPrometheus } = await import('../metrics/prometheus.js');
  const registry = new prom.Registry();
  let ready = false;
  const server: Server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('try /metrics\n');
      return;
    }
    if (!ready) {
      res.writeHead(503, { 'retry-after': '1' }).end('the demo is starting\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: Error) => res.writeHead(500).end(err.message),
    );
  });
  try {
    await new Promise<void>((res, rej) => server.once('error', rej).listen(port, '127.0.0.1', res));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why =
      err.code === 'EADDRINUSE'
        ? `port ${port} on 127.0.0.1 is already in use (choose another port, or 0 for any free one)`
        : err.code === 'EACCES'
          ? `not allowed to listen on port ${port} (ports below 1024 need privileges; choose another)`
          : `cannot listen on 127.0.0.1:${port}: ${err.message}`;
    throw new DemoSetupError(`ringtrace: --metrics-port ${port}: ${why}`);
  }
  const address = server.address();
  const bound = typeof address === 'object' && address ? address.port : port;
  return {
    url: `http://127.0.0.1:${bound}/metrics`,
    serve(tracer) {
      registerPrometheus(tracer, registry);
      ready = true;
    },
    close: () =>
      // Node closes idle keep-alive connections too, so a scraper does not hold the exit.
      new Promise<void>((res) => server.close(() => res())),
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
  /** The latest state changes, for the live view. */
  readonly recent: LogEntry[] = [];
  /** Errors and unexpected warnings (not the state changes and drop reports the demo causes), printed at the end. */
  readonly notable: LogEntry[] = [];
  readonly push = (e: LogEntry): void => {
    if (typeof e.ts === 'number' && e.msg.startsWith('ringtrace: backpressure ')) {
      this.recent.push(e);
      // Delivered in the drain's order, which is not always the order they happened in.
      this.recent.sort((a, b) => (a.ts as number) - (b.ts as number));
      if (this.recent.length > 3) this.recent.shift();
    } else if (e.level === 'error' || (e.level === 'warn' && !e.msg.startsWith('ringtrace: dropped '))) {
      this.notable.push(e);
    }
  };
}

const describeLog = (e: LogEntry): string => `${e.msg.replace(/^ringtrace: /, '')}${typeof e.name === 'string' ? ` (${e.name})` : ''}`;

const rate = (n: number): string => (n >= 10_000 ? `${(n / 1000).toFixed(0)}k` : n >= 1000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0));

const dropped = (r: Partial<Record<string, number>>): string =>
  Object.entries(r)
    .map(([reason, n]) => `${reason} ${n}`)
    .join(', ') || '0';

type PhasePlan = Record<typeof Phase.NORMAL | typeof Phase.BURST | typeof Phase.RECOVERY, number>;

/** When a phase began, in ms on the progress clock. */
export interface PhaseMark {
  phase: PhaseValue;
  at: number;
}

/** Where the demo is in its plan: the current phase, since when, and the planned total. */
export class Progress {
  /** When the normal phase began (`start()`): the zero of every time the demo prints. */
  startedAt: number;
  phase: PhaseValue = Phase.NORMAL;
  phaseStartedAt: number;
  /** Past the planned recovery, waiting for every thread to be back in 'normal'. */
  settling = false;
  readonly totalMs: number;
  readonly marks: PhaseMark[] = [];

  constructor(
    readonly plan: PhasePlan,
    /** Milliseconds; the demo passes the tracer's clock, so marks compare with the file's times. */
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.totalMs = plan[Phase.NORMAL] + plan[Phase.BURST] + plan[Phase.RECOVERY];
    this.startedAt = this.phaseStartedAt = clock();
  }

  /** Every thread is ready: the normal phase, and the run's clock, start now. */
  start(now = this.clock()): void {
    this.startedAt = this.phaseStartedAt = now;
    this.phase = Phase.NORMAL;
    this.marks.push({ phase: Phase.NORMAL, at: now });
  }

  enter(p: PhaseValue, now = this.clock()): void {
    if (p === this.phase) return;
    this.phase = p;
    this.phaseStartedAt = now;
    this.marks.push({ phase: p, at: now });
  }

  snapshot(now = this.clock()): ProgressSnapshot {
    const planned = this.phase === Phase.STOP ? undefined : this.plan[this.phase];
    return {
      elapsedMs: now - this.startedAt,
      totalMs: this.totalMs,
      phase: this.phase,
      step: this.phase === Phase.STOP ? 3 : this.phase + 1,
      phaseLeftMs: planned === undefined ? undefined : Math.max(0, planned - (now - this.phaseStartedAt)),
      settling: this.settling && this.phase === Phase.RECOVERY,
    };
  }
}

export interface ProgressSnapshot {
  elapsedMs: number;
  totalMs: number;
  phase: PhaseValue;
  /** 1..3: normal load, burst, recovery (stopping counts as the end of 3). */
  step: number;
  phaseLeftMs: number | undefined;
  settling: boolean;
}

const BAR_WIDTH = 30;

/**
 * `1.2/4.0 s`: the elapsed time against the planned total, never past it (settling after the plan
 * and stopping show the total; the phase line says what is going on).
 */
export function progressTime(p: ProgressSnapshot): string {
  const shown = p.phase === Phase.STOP ? p.totalMs : Math.min(Math.max(0, p.elapsedMs), p.totalMs);
  return `${seconds(shown)}/${seconds(p.totalMs)} s`;
}

/** `[██████░░░░] 1.2/4.0 s`: the elapsed time against the planned total. */
export function progressBar(p: ProgressSnapshot, width = BAR_WIDTH): string {
  const done = p.phase === Phase.STOP ? 1 : Math.min(1, Math.max(0, p.elapsedMs) / p.totalMs);
  const filled = Math.round(done * width);
  return `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}] ${progressTime(p)}`;
}

/** `phase 2/3: burst, 0.4 s left`, and what the drain is doing when it is not at full speed. */
export function phaseLine(p: ProgressSnapshot, drain: { paused: boolean; throttleKiBps: number }): string {
  const name = PHASE_NAMES[p.phase];
  const left = p.settling
    ? ', waiting for every thread to be back to normal'
    : p.phaseLeftMs === undefined
      ? ''
      : `, ${seconds(p.phaseLeftMs)} s left`;
  const d = drain.paused ? ' (drain paused)' : drain.throttleKiBps > 0 ? ` (drain throttled to ${drain.throttleKiBps} KiB/s)` : '';
  return p.phase === Phase.STOP ? `${name}${d}` : `phase ${p.step}/3: ${name}${left}${d}`;
}

const seconds = (ms: number): string => (ms / 1000).toFixed(1);

/** One row per thread from tracer.metrics(), redrawn in place on a TTY or printed as a line. */
class LiveView {
  private timer: NodeJS.Timeout | undefined;
  private prev = new Map<number, { at: number; attempted: number }>();
  private lastAt = performance.now();
  private readonly render: ReturnType<typeof createLogUpdate> | undefined;

  constructor(
    live: boolean,
    private readonly out: DemoOutput,
    private readonly tracer: Tracer,
    private readonly log: LogTail,
    private readonly progress: Progress,
  ) {
    this.render = live ? createLogUpdate(out) : undefined;
  }

  start(): void {
    this.rates(this.tracer.metrics()); // a baseline, so the first line has rates
    this.phaseChanged();
    this.timer = setInterval(() => this.draw(), this.render ? VIEW_INTERVAL_MS : PLAIN_INTERVAL_MS);
  }

  /** A new phase: said at once (a plain line a second could miss a short phase). */
  phaseChanged(): void {
    if (this.render) this.draw();
    else this.out.write(`  ${phaseLine(this.progress.snapshot(), this.tracer.metrics().drain)}\n`);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.draw(); // the final state
    this.render?.done();
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
    const p = this.progress.snapshot();
    const phase = phaseLine(p, m.drain);
    if (!this.render) {
      // The state changes are told once, in order, from the file at the end (formatStory).
      const threads = m.threads.map(
        (t) =>
          `${t.name} ${t.state} ${rate(rates.get(t.thread) ?? 0)}/s dropped ${dropped(t.droppedByReason)} free ${t.freeSpares}/${DEMO_RINGS.ringsPerThread - 1}`,
      );
      this.out.write(`[${progressTime(p).padStart(11)}] ${phase} | ${threads.join(' | ')}\n`);
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
    const last = this.log.recent
      .map((e) => `\n  ${(((e.ts as number) / 1e6 - this.progress.startedAt) / 1000).toFixed(3).padStart(7)} s  ${describeLog(e)}`)
      .join('');
    this.render(
      `ringtrace demo  ${progressBar(p)}\n  ${phase}\n` +
        `  trace: ${this.tracer.path}\n\n${table}\n\n` +
        `  total: ${m.totals.eventsAttempted} attempted, ${m.totals.eventsWritten} written, ${m.totals.eventsDropped} dropped\n${last}`,
    );
  }
}
