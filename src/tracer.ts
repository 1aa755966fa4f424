/**
 * The public entry point. `Tracer.open` (on the thread that owns the trace) lays out the shared
 * buffer and starts the drain worker; `Tracer.attach` (in any other thread) maps the same buffer
 * from the structured-clonable `handle`. Each thread then `register`s its own writer.
 */
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { BroadcastChannel, Worker, isMainThread, threadId } from 'node:worker_threads';
import type { Thresholds } from './shm/backpressure.js';
import { resolveConfig, type DropPolicy, type ResolvedConfig, type TracerConfig } from './config.js';
import type { DrainSummary } from './drain/drain.js';
import type { DrainMessage, DrainWorkerData } from './drain/drain-worker.js';
import {
  Ctl,
  ControlFlag,
  DrainState,
  Layout,
  POLICIES,
  SharedViews,
  Slot,
  SlotState,
  checkControl,
  initControl,
  isFinal,
  isUnclaimed,
  policyCode,
  type Geometry,
  type Priority,
} from './shm/layout.js';
import { jsonStderrLogger, leveled, type Logger } from './logger.js';
import { collectMetrics, summaryFromSlot, threadFromSlot, type MetricsSnapshot, type RegistrationSummary } from './metrics/metrics.js';
import { closeAbandonedLedgerWrite, retireIntoLedger } from './shm/ledger.js';
import { NameTable } from './shm/names.js';
import {
  CapacityError,
  claimSlot,
  encodeThreadName,
  orphanThreadSlots,
  publishRetired,
  reconcileThreadSlots,
  type Claim,
} from './shm/registry.js';
import { Writer } from './record/writer.js';

export type TracerOptions = { [K in keyof TracerConfig]?: TracerConfig[K] | string } & {
  /** Receives state changes, drop summaries and errors; default: JSON lines on stderr. */
  logger?: Logger;
  /** Environment to read RINGTRACE_* from (default process.env). */
  env?: NodeJS.ProcessEnv;
};

/** Everything another thread needs to attach; pass it in workerData. */
export interface TracerHandle {
  readonly kind: 'ringtrace.handle';
  readonly version: 1;
  readonly sessionId: string;
  readonly buffer: SharedArrayBuffer;
  readonly geometry: Geometry;
  readonly policy: DropPolicy;
  readonly thresholds: Thresholds;
  readonly flushIntervalMs: number;
  readonly path: string;
  /** Writers in other threads close themselves when their thread exits (absent: true). */
  readonly exitHooks?: boolean;
}

export interface RegisterOptions {
  /** Overrides the tracer's drop policy for this writer. */
  policy?: DropPolicy;
}

export interface CloseSummary extends DrainSummary {
  path: string;
  /** The file is complete and every thread's attempted === events in the file + dropped. */
  balanced: boolean;
}

const attachedBySession = new Map<string, Tracer>();
/** How long register() waits for the drain to release the slot of a closed writer. */
const REGISTER_WAIT_MS = 1000;
/** Scans of the slots that must all find every slot live before register() says they are. */
const LIVE_LOOKS = 4;

export class Tracer {
  readonly handle: TracerHandle;
  readonly path: string;
  /** Bytes of shared memory the tracer laid out (control, registry, rings). */
  readonly sharedBytes: number;
  /** Effective configuration and where each value came from (owner thread only). */
  readonly resolvedConfig: ResolvedConfig | undefined;
  private readonly views: SharedViews;
  private readonly names: NameTable;
  private readonly clockOffsetMs: number;
  private writer: Writer | undefined;
  private readonly retired: RegistrationSummary[] = [];
  private readonly channel: BroadcastChannel;
  private readonly onWorker = (w: Worker) => this.watchWorker(w);
  private drainWorker: Worker | undefined;
  private drainSummary: Promise<DrainSummary> | undefined;
  private closing: Promise<CloseSummary | undefined> | undefined;
  /** The drain has finished the file (or closeSync gave up on it): nothing left for exit hooks. */
  private finished = false;
  private readonly unhook: Array<() => void> = [];
  private threadExitHooked = false;
  private log: ReturnType<typeof leveled> = () => {};
  private closeTimeoutMs = 1000;

  private constructor(
    handle: TracerHandle,
    readonly isOwner: boolean,
    resolved?: ResolvedConfig,
  ) {
    this.handle = handle;
    this.path = handle.path;
    this.resolvedConfig = resolved;
    this.views = new SharedViews(handle.buffer, new Layout(handle.geometry));
    this.sharedBytes = this.views.layout.totalBytes;
    this.names = new NameTable(this.views);
    this.clockOffsetMs = performance.timeOrigin - this.views.f64[Ctl.F64_CLOCK_ZERO_MS];
    // Close requests reach writers in other threads through this channel (and, as a fallback,
    // through their periodic flush, which also checks the CLOSING flag).
    this.channel = new BroadcastChannel(`ringtrace:${handle.sessionId}`);
    this.channel.onmessage = () => this.writer?.periodic();
    this.channel.unref();
    // A thread that exits without closing its writer leaves a LIVE slot: the thread that created
    // it learns of the exit and hands the slot to the drain for salvage.
    process.on('worker', this.onWorker);
  }

  /** Opens a trace file and starts the drain worker. Call on the thread that owns the trace. */
  static async open(options: TracerOptions = {}): Promise<Tracer> {
    const { logger, env, ...settings } = options;
    const resolved = resolveConfig({ options: settings, env });
    const c = resolved.config;
    const path = c.path ?? join(tmpdir(), `ringtrace-${process.pid}-${Date.now()}.rtrace`);
    const geometry: Geometry = { maxThreads: c.maxThreads, ringsPerThread: c.ringsPerThread, ringSize: c.ringSize };
    const layout = new Layout(geometry);
    const buffer = new SharedArrayBuffer(layout.totalBytes);
    initControl(new SharedViews(buffer, layout), Date.now(), performance.timeOrigin + performance.now());
    const handle: TracerHandle = {
      kind: 'ringtrace.handle',
      version: 1,
      sessionId: randomUUID(),
      buffer,
      geometry,
      policy: c.policy,
      thresholds: {
        pressureSpares: c.pressureSpares,
        recoverySpares: c.recoverySpares,
        stabilityUs: c.stabilityMs * 1000,
        criticalReserveRings: c.criticalReserveRings,
        sampling: c.sampling,
        samplingMaxEvery: c.samplingMaxEvery,
        adaptive: c.adaptiveThresholds,
        horizonUs: c.predictiveHorizonMs * 1000,
      },
      flushIntervalMs: c.flushIntervalMs,
      path,
      exitHooks: c.exitHooks,
    };
    const t = new Tracer(handle, true, resolved);
    t.log = leveled(logger ?? jsonStderrLogger, c.logLevel);
    t.closeTimeoutMs = c.closeTimeoutMs;
    attachedBySession.set(handle.sessionId, t);
    try {
      await t.startDrain(c, path);
    } catch (err) {
      // Nothing of a failed open may outlive it: a drain thread would keep the process alive.
      await t.drainWorker?.terminate();
      t.detach();
      throw err;
    }
    if (c.exitHooks) t.installExitHooks();
    t.log('info', 'tracer opened', { path, sharedBytes: layout.totalBytes, ...geometry, policy: c.policy });
    return t;
  }

  /** Maps a tracer opened in another thread (from `tracer.handle`, e.g. via workerData). */
  static attach(handle: TracerHandle): Tracer {
    if (!handle || typeof handle !== 'object' || handle.kind !== 'ringtrace.handle') {
      throw new TypeError('ringtrace: Tracer.attach(handle) needs the `handle` of an open tracer (tracer.handle)');
    }
    if (handle.version !== 1) throw new TypeError(`ringtrace: tracer handle version ${handle.version} is not supported`);
    if (!(handle.buffer instanceof SharedArrayBuffer))
      throw new TypeError('ringtrace: tracer handle has no SharedArrayBuffer (was it serialized to JSON?)');
    const known = attachedBySession.get(handle.sessionId);
    if (known) return known;
    // Checked before the tracer exists: it registers a listener and opens a channel.
    checkControl(new SharedViews(handle.buffer, checkedLayout(handle)));
    const t = new Tracer(handle, false);
    attachedBySession.set(handle.sessionId, t);
    return t;
  }

  private async startDrain(c: TracerConfig, path: string): Promise<void> {
    const data: DrainWorkerData = {
      buffer: this.handle.buffer,
      geometry: this.handle.geometry,
      path,
      config: { ...c, path },
      thresholds: this.handle.thresholds,
      batchRings: c.drainBatchRings,
      idleMs: c.drainIdleMs,
      // A live writer's ring is copied once its records waited a flush interval (see Drain.scrapeActive).
      scrapeAfterMs: c.flushIntervalMs > 0 ? c.flushIntervalMs : Infinity,
      dropLogIntervalMs: c.dropLogIntervalMs,
      dropLogEvery: c.dropLogEvery,
    };
    const worker = new Worker(new URL('./drain/drain-worker.js', import.meta.url), {
      workerData: data,
      name: 'ringtrace-drain',
      execArgv: drainExecArgv(),
    });
    this.drainWorker = worker;
    let resolveSummary!: (s: DrainSummary) => void;
    let rejectSummary!: (e: Error) => void;
    this.drainSummary = new Promise((res, rej) => {
      resolveSummary = res;
      rejectSummary = rej;
    });
    this.drainSummary.catch(() => {}); // observed in close()
    await new Promise<void>((resolve, reject) => {
      worker.on('message', (m: DrainMessage) => {
        switch (m.type) {
          case 'ready':
            resolve();
            break;
          case 'error':
            reject(new Error(`ringtrace: cannot open trace file ${path}: ${m.message}`));
            break;
          case 'log':
            this.log(m.level, m.msg, m.fields);
            break;
          case 'retired':
            this.retired.push(m.summary);
            break;
          case 'summary':
            resolveSummary(m.summary);
            break;
        }
      });
      worker.on('error', (err) => {
        this.log('error', 'drain worker failed', { error: err.message });
        reject(err);
        rejectSummary(err);
      });
      worker.on('exit', (code) => {
        // A drain that ends without saying so (terminate(), a crash outside its loop) must not
        // look RUNNING: close(), closeSync() and pauseDrain() wait on that state.
        const i32 = this.views.i32;
        for (const from of [DrainState.STARTING, DrainState.RUNNING])
          Atomics.compareExchange(i32, Ctl.DRAIN_STATE, from, DrainState.FAILED);
        Atomics.notify(i32, Ctl.DRAIN_STATE);
        reject(new Error(`ringtrace: drain worker exited (code ${code}) before it was ready`));
        rejectSummary(new Error(`ringtrace: drain worker exited (code ${code}) without a summary`));
      });
    });
    // The drain must not keep the process alive by itself; close() (or the exit hooks) finish it.
    worker.unref();
  }

  /**
   * Interns an event name; the same name gets the same id in every thread. `priority` (default
   * normal) decides what a thread under pressure lets go first: debug events, then normal ones;
   * critical events may use the critical reserve (docs/design/backpressure.md). A name keeps the
   * priority it was first defined with: defining it again with another one throws.
   */
  define(name: string, options?: { priority?: Priority }): number {
    return this.names.define(name, options?.priority);
  }

  /** Nanoseconds since the tracer opened, on the clock all threads share (for recordAt). */
  now(): number {
    return (performance.now() + this.clockOffsetMs) * 1e6;
  }

  /** The calling thread's writer; a second call returns the same writer until it is closed. */
  register(name?: string, options: RegisterOptions = {}): Writer {
    const policy = options.policy ?? this.handle.policy;
    if (!POLICIES.includes(policy)) {
      throw new TypeError(
        `ringtrace: register(): policy must be ${POLICIES.map((p) => `'${p}'`).join(' or ')}, got ${JSON.stringify(policy)}`,
      );
    }
    // One writer per thread: a second call returns it (its name and policy are those of the first).
    if (this.writer && !this.writer.isClosed) return this.writer;
    if ((Atomics.load(this.views.i32, Ctl.FLAGS) & (ControlFlag.CLOSING | ControlFlag.CLOSED)) !== 0) {
      throw new Error('ringtrace: the tracer is closed; cannot register a writer');
    }
    const threadName = name ?? (isMainThread ? 'main' : `worker-${threadId}`);
    const claim = this.claimSlotWaiting(encodeThreadName(threadName), policyCode(policy));
    const writer = new Writer(
      {
        views: this.views,
        thresholds: this.handle.thresholds,
        clockOffsetMs: this.clockOffsetMs,
        flushIntervalMs: this.handle.flushIntervalMs,
      },
      claim.slot,
      claim.registration,
      threadName,
      policy,
    );
    if ((Atomics.load(this.views.i32, Ctl.FLAGS) & (ControlFlag.CLOSING | ControlFlag.CLOSED)) !== 0) {
      // close() began between the check above and the claim: it may not wait for this writer.
      writer.close();
      throw new Error('ringtrace: the tracer is closing; cannot register a writer');
    }
    this.writer = writer;
    if (!this.isOwner && this.handle.exitHooks !== false) this.hookThreadExit();
    return writer;
  }

  /**
   * Claims a slot. When none is free but some are held by writers that closed (or threads that
   * ended), the drain has yet to release them: it is woken and waited for (blocking, bounded by
   * REGISTER_WAIT_MS), so that closing one writer and registering the next always works.
   */
  private claimSlotWaiting(name: Uint8Array, policy: number): Claim {
    const i32 = this.views.i32;
    const deadline = performance.now() + REGISTER_WAIT_MS;
    let looks = 0;
    for (;;) {
      let full: CapacityError;
      try {
        return claimSlot(this.views, name, threadId, policy, this.now() / 1000);
      } catch (err) {
        if (!(err instanceof CapacityError)) throw err;
        // "All live" is read slot by slot, not at one instant: another thread closing its writer
        // and taking a slot just freed can look like two live writers. Look again before saying so.
        if (err.unreleased === 0 && ++looks >= LIVE_LOOKS) throw err;
        if (err.unreleased === 0) continue;
        full = err;
      }
      const left = deadline - performance.now();
      const why =
        (Atomics.load(i32, Ctl.FLAGS) & ControlFlag.DRAIN_PAUSED) !== 0
          ? 'the drain is paused; resumeDrain() lets it release them'
          : Atomics.load(i32, Ctl.DRAIN_STATE) !== DrainState.RUNNING
            ? 'the drain is not running'
            : left <= 0
              ? `the drain released none within ${REGISTER_WAIT_MS} ms`
              : undefined;
      if (why) throw new CapacityError(full.capacity, full, why);
      this.wakeDrain();
      // Sleep on the state word of one unreleased slot: freeSlot notifies it. The short bound
      // covers a slot that changes state without a notify, or another slot freed meanwhile.
      const { layout } = this.views;
      for (let slot = 0; slot < layout.maxThreads; slot++) {
        const idx = layout.slotI32(slot, Slot.STATE);
        const st = Atomics.load(i32, idx);
        if (st === SlotState.LIVE || st === SlotState.CLAIMING) continue;
        if (st !== SlotState.FREE) Atomics.wait(i32, idx, st, Math.min(left, 10));
        break;
      }
    }
  }

  /**
   * A worker's writer closes itself when the worker ends by returning, `process.exit()` or an
   * uncaught exception (its 'exit' event runs then, not on `terminate()`), so its last ring is
   * handed over even if no thread watches the worker.
   */
  private hookThreadExit(): void {
    if (this.threadExitHooked) return;
    this.threadExitHooked = true;
    const onExit = () => this.writer?.close();
    process.on('exit', onExit);
    this.unhook.push(() => process.removeListener('exit', onExit));
  }

  /**
   * Watches a worker so that, when it exits or is terminated, the drain salvages the slots of
   * its writers (what they committed reaches the file; what was in flight is counted as
   * `thread_exit`). Workers created after this tracer was opened or attached in this thread are
   * watched already; use this for one created before (a worker pool started earlier). Calling it
   * twice for a worker is harmless.
   */
  watch(worker: Worker): void {
    // After its exit a Worker's threadId is -1 and 'exit' has fired: watching it now would
    // silently do nothing.
    if (worker.threadId < 0) throw new Error('ringtrace: watch(worker): the worker has already exited; watch it while it runs');
    this.watchWorker(worker);
  }

  /** Per-thread and total counters (see metrics.ts for how fresh they are). */
  metrics(): MetricsSnapshot {
    return collectMetrics(this.views, this.now() / 1000, this.retired);
  }

  /**
   * Stops the drain from taking rings (threads go on recording until their pools run out). A
   * drain pass already under way when this is called may still take and return rings; the
   * promise resolves once none can be (the drain has begun a pass that saw the pause), or at
   * once if the drain is not running or the pause was lifted meanwhile.
   */
  pauseDrain(): Promise<void> {
    const i32 = this.views.i32;
    // Count first, then set the flag: a pass that reads the count and then sees the flag has
    // seen this request (the drain reads them in the other order; all sequentially consistent).
    const request = Atomics.add(i32, Ctl.PAUSE_REQUESTS, 1) + 1;
    Atomics.or(i32, Ctl.FLAGS, ControlFlag.DRAIN_PAUSED);
    this.wakeDrain(); // a sleeping drain acknowledges at once instead of after its idle timeout
    return new Promise((resolve) => {
      const settled = () =>
        ((Atomics.load(i32, Ctl.PAUSE_ACK) - request) | 0) >= 0 ||
        (Atomics.load(i32, Ctl.FLAGS) & ControlFlag.DRAIN_PAUSED) === 0 ||
        Atomics.load(i32, Ctl.DRAIN_STATE) !== DrainState.RUNNING;
      const check = () => (settled() ? resolve() : setTimeout(check, 1));
      check();
    });
  }

  resumeDrain(): void {
    Atomics.and(this.views.i32, Ctl.FLAGS, ~ControlFlag.DRAIN_PAUSED);
    this.wakeDrain();
  }

  /** Limits the drain to `kibPerSecond` KiB/s (0 lifts the limit): for operations that must
   * spare the disk, and to rehearse a drain that cannot keep up. */
  throttleDrain(kibPerSecond: number): void {
    if (!Number.isInteger(kibPerSecond) || kibPerSecond < 0)
      throw new RangeError('ringtrace: throttleDrain(kibPerSecond) needs an integer >= 0');
    Atomics.store(this.views.i32, Ctl.DRAIN_THROTTLE_KIBPS, kibPerSecond);
    this.wakeDrain();
  }

  private wakeDrain(): void {
    Atomics.add(this.views.i32, Ctl.DOORBELL, 1);
    Atomics.notify(this.views.i32, Ctl.DOORBELL);
  }

  private watchWorker(w: Worker): void {
    const tid = w.threadId;
    w.once('exit', () => {
      if (orphanThreadSlots(this.views, tid) > 0) this.wakeDrain();
      reconcileThreadSlots(this.views, tid);
    });
  }

  /**
   * Owner thread: flushes and closes this thread's writer, asks writers in other threads to do
   * the same (waiting up to closeTimeoutMs), lets the drain take everything (even if paused),
   * finalizes the file and returns what was written and lost per thread. In another thread:
   * closes that thread's writer and detaches.
   */
  close(): Promise<CloseSummary | undefined> {
    this.closing ??= this.isOwner ? this.closeOwner() : Promise.resolve(this.closeAttached());
    return this.closing;
  }

  private closeAttached(): undefined {
    this.writer?.close();
    this.detach();
    return undefined;
  }

  private async closeOwner(): Promise<CloseSummary> {
    const { i32 } = this.views;
    this.writer?.close();
    this.drainWorker?.ref(); // keep the process alive until the file is final
    // Every writer closes (its slot leaves LIVE) when it sees CLOSING: at once through the
    // channel, or at its next periodic flush. A writer registered after this flag closes itself.
    Atomics.or(i32, Ctl.FLAGS, ControlFlag.CLOSING);
    this.channel.postMessage('close');
    const deadline = performance.now() + this.closeTimeoutMs;
    while (performance.now() < deadline && this.liveWriters() > 0) await new Promise((r) => setTimeout(r, 2));
    const stragglers = this.liveWriters();
    if (stragglers > 0)
      this.log('warn', `${stragglers} writer(s) did not close within ${this.closeTimeoutMs} ms; what they held is counted as unflushed`);
    Atomics.or(i32, Ctl.FLAGS, ControlFlag.FINISH);
    this.wakeDrain();
    return this.closeSummary();
  }

  /** Once the drain was told to finish: its summary (or the fallback), and the tracer closed. */
  private async closeSummary(): Promise<CloseSummary> {
    const summary = await this.awaitDrainSummary();
    this.finished = true;
    Atomics.or(this.views.i32, Ctl.FLAGS, ControlFlag.CLOSED);
    this.detach();
    const balanced = summary.complete && summary.threads.every((t) => t.balanced);
    this.log('info', 'tracer closed', { path: this.path, events: summary.events, dropped: summary.dropped, balanced });
    return { ...summary, path: this.path, balanced };
  }

  /**
   * The drain's summary, or, if the drain died or does not finish in time (a hung disk), one
   * made from the shared counters: close() always returns. The file then ends at its last whole
   * record without a footer, which the reader reports as incomplete.
   */
  private async awaitDrainSummary(): Promise<DrainSummary> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), this.closeTimeoutMs + 10_000)));
    try {
      const s = await Promise.race([this.drainSummary!, timeout]);
      if (s) return s;
      this.log('error', 'the drain did not finish in time; the trace file is left without its footer');
    } catch (err) {
      this.log('error', 'the drain failed; the trace file is left without its footer', { error: (err as Error).message });
    } finally {
      clearTimeout(timer);
    }
    await this.drainWorker?.terminate();
    // No drain any more: this thread finishes its work from the shared counters. The writers
    // still live are seized, as the drain's final pass would have, so that each learns which of
    // its events this summary accounts for (the rest it counts as closed); what no drain will
    // write any more (queued and active rings) is counted as unflushed, so each thread's numbers
    // still add up. The file itself ends without its end records.
    const v = this.views;
    const { i32, layout } = v;
    closeAbandonedLedgerWrite(v);
    const nowUs = this.now() / 1000;
    const known = new Set(this.retired.map((r) => r.thread));
    const threads: RegistrationSummary[] = [...this.retired];
    for (let slot = 0; slot < layout.maxThreads; slot++) {
      const stIdx = layout.slotI32(slot, Slot.STATE);
      Atomics.compareExchange(i32, stIdx, SlotState.LIVE, SlotState.RETIRING);
      const st = Atomics.load(i32, stIdx);
      // RELEASING: the dead drain had retired it into the ledger and was wiping the slot.
      if (isUnclaimed(st) || st === SlotState.RELEASING) continue;
      const summary = summaryFromSlot(threadFromSlot(v, slot, nowUs));
      if (isFinal(st)) {
        // The dead drain retired it (it is in the ledger) but its summary never reached us.
        if (!known.has(summary.thread)) threads.push(summary);
        continue;
      }
      threads.push(summary);
      // RETIRED is final (the tracer is closing): no reuse, and a seized writer reads its count.
      retireIntoLedger(v, slot, summary, () => publishRetired(v, slot, summary.attempted));
    }
    const m = this.metrics();
    return {
      threads,
      events: m.totals.eventsWritten,
      dropped: m.totals.eventsDropped,
      droppedAfterClose: m.totals.droppedAfterClose,
      sinkErrors: m.drain.sinkErrors,
      complete: false,
    };
  }

  private liveWriters(): number {
    const { i32, layout } = this.views;
    let n = 0;
    for (let slot = 0; slot < layout.maxThreads; slot++) if (Atomics.load(i32, layout.slotI32(slot, Slot.STATE)) === SlotState.LIVE) n++;
    return n;
  }

  /**
   * Last resort on process exit without close(): synchronous, bounded. This thread's writer is
   * closed, the drain is told to finish and waited for (the drain is another thread, so it keeps
   * running while this one blocks). Writers of other threads cannot be reached any more: what
   * they held is counted as unflushed.
   */
  private closeSync(): void {
    // Also while an async close() is still waiting for other threads: the process is going now,
    // so finish the file now (FINISH is idempotent).
    if (this.finished) return;
    this.finished = true;
    const i32 = this.views.i32;
    this.writer?.close();
    Atomics.or(i32, Ctl.FLAGS, ControlFlag.CLOSING | ControlFlag.FINISH);
    this.wakeDrain();
    const deadline = performance.now() + this.closeTimeoutMs;
    while (Atomics.load(i32, Ctl.DRAIN_STATE) === DrainState.RUNNING) {
      const left = deadline - performance.now();
      if (left <= 0) break;
      Atomics.wait(i32, Ctl.DRAIN_STATE, DrainState.RUNNING, left);
    }
    Atomics.or(i32, Ctl.FLAGS, ControlFlag.CLOSED);
    // The drain's summary message arrives if the event loop turns again (a signal hook, not
    // 'exit'): a later close() returns it, as after an ordinary close.
    this.closing ??= this.closeSummary();
  }

  private installExitHooks(): void {
    const onBeforeExit = () => void this.close();
    const onExit = () => this.closeSync();
    const onSignal = (signal: NodeJS.Signals) => {
      // The application handles the signal itself (a graceful shutdown that stops its workers and
      // then awaits close()): finishing the file now would cut that shutdown short. The 'exit'
      // hook still finishes the file if the application never calls close().
      if (process.listenerCount(signal) > 1) return;
      this.closeSync();
      process.removeListener(signal, onSignal);
      // The default behaviour: exit by the signal.
      process.kill(process.pid, signal);
    };
    process.once('beforeExit', onBeforeExit);
    process.on('exit', onExit);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    this.unhook.push(() => {
      process.removeListener('beforeExit', onBeforeExit);
      process.removeListener('exit', onExit);
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
    });
  }

  private detach(): void {
    process.removeListener('worker', this.onWorker);
    this.channel.close();
    for (const u of this.unhook.splice(0)) u();
    attachedBySession.delete(this.handle.sessionId);
  }
}

/** The handle's geometry, checked against its buffer's size (a mismatch would map the rings at
 * the wrong offsets). */
function checkedLayout(handle: TracerHandle): Layout {
  const g = handle.geometry;
  for (const k of ['maxThreads', 'ringsPerThread', 'ringSize'] as const)
    if (!Number.isInteger(g?.[k]) || g[k] <= 0)
      throw new TypeError(`ringtrace: tracer handle geometry.${k} must be a positive integer, got ${String(g?.[k])}`);
  const layout = new Layout(g);
  if (handle.buffer.byteLength !== layout.totalBytes)
    throw new Error(
      `ringtrace: tracer handle geometry needs a ${layout.totalBytes}-byte buffer; the handle's buffer has ${handle.buffer.byteLength} bytes`,
    );
  return layout;
}

/** The drain worker inherits the process's Node options (undefined), except `--input-type`,
 * which a worker started from a file refuses (`node --input-type=module -e ...` would make the
 * drain fail to start). Only then are the options passed explicitly, without it: an explicit
 * list refuses per-process flags such as --max-old-space-size, which inheriting accepts. */
function drainExecArgv(): string[] | undefined {
  const argv = process.execArgv;
  if (!argv.some((a) => a === '--input-type' || a.startsWith('--input-type='))) return undefined;
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--input-type') i++;
    else if (!argv[i].startsWith('--input-type=')) out.push(argv[i]);
  }
  return out;
}
