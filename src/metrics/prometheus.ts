/**
 * Prometheus exposition through prom-client (an optional peer dependency: import this module as
 * 'ringtrace/prometheus' only where prom-client is installed). The collectors read
 * `tracer.metrics()` at scrape time; nothing is added to the recording path.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { PRIORITIES, REASONS, type PriorityCounts } from '../shm/layout.js';
import { STATE_NAMES } from '../shm/backpressure.js';
import type { MetricsSnapshot } from './metrics.js';

/** Anything with a metrics() snapshot (a Tracer). */
export interface MetricsSource {
  metrics(): MetricsSnapshot;
}

/**
 * Registers ringtrace's metrics on `registry`. Labels: `thread` (the writer's name), `slot`,
 * and `reason` / `state` / `edge` where they apply. Counters cover live threads and, as
 * `thread="(retired)"`, the threads that already closed or exited, so totals never go backwards.
 */
export function registerPrometheus(tracer: MetricsSource, registry: Registry, prefix = 'ringtrace_'): void {
  const f = new MetricFamilies(tracer, registry, prefix);
  registerEventCounters(f);
  registerBackpressureMetrics(f);
  registerDrainMetrics(f);
}

type Thread = MetricsSnapshot['threads'][number];
type Retired = MetricsSnapshot['retiredTotals'];
type Sample = [labels: Record<string, string>, value: number];
const threadLabels = (t: Thread) => ({ thread: t.name, slot: String(t.slot) });
const RETIRED = { thread: '(retired)', slot: '' };
const plain = (n: number): Sample[] => [[{}, n]];
const byReason = (rec: Partial<Record<string, number>>): Sample[] => REASONS.map((reason) => [{ reason }, rec[reason] ?? 0]);
const byPriority = (rec: PriorityCounts): Sample[] => PRIORITIES.map((priority) => [{ priority }, rec[priority]]);
const byEdge = (rec: Record<string, number>): Sample[] => Object.entries(rec).map(([edge, n]) => [{ edge }, n]);
const byState = (rec: Record<string, number>): Sample[] => STATE_NAMES.map((state) => [{ state }, rec[state] / 1000]);

/** Metric families on one registry whose samples are recomputed from one snapshot per scrape. */
class MetricFamilies {
  private snapshot: MetricsSnapshot | undefined;
  readonly registers: Registry[];
  constructor(
    private readonly tracer: MetricsSource,
    registry: Registry,
    readonly prefix: string,
  ) {
    this.registers = [registry];
  }

  /** The first collector of a scrape takes the snapshot, the others reuse it. */
  snap(): MetricsSnapshot {
    this.snapshot ??= this.tracer.metrics();
    queueMicrotask(() => (this.snapshot = undefined));
    return this.snapshot;
  }

  /** A metric whose samples are recomputed from the snapshot at every scrape. */
  metric(kind: 'counter' | 'gauge', name: string, help: string, extraLabels: string[], samples: (m: MetricsSnapshot) => Sample[]): void {
    const Kind = kind === 'counter' ? Counter : Gauge;
    const snap = () => this.snap();
    new Kind({
      name: `${this.prefix}${name}`,
      help,
      labelNames: ['thread', 'slot', ...extraLabels],
      registers: this.registers,
      collect(this: Counter | Gauge) {
        this.reset();
        for (const [labels, value] of samples(snap())) (this as Gauge).inc(labels, value);
      },
    });
  }

  perThread(kind: 'counter' | 'gauge', name: string, help: string, value: (t: Thread) => number): void {
    this.metric(kind, name, help, [], (m) => m.threads.map((t) => [threadLabels(t), value(t)]));
  }

  /** A counter per live thread plus one `(retired)` sample (the shared ledger of threads that
   * closed or exited), so totals never go backwards when a thread goes. `extra` splits a
   * thread's value by one more label (reason, edge, state). */
  counter(name: string, help: string, extra: string | undefined, live: (t: Thread) => Sample[], retired: (r: Retired) => Sample[]): void {
    this.metric('counter', name, help, extra ? [extra] : [], (m) => {
      const out: Sample[] = m.threads.flatMap((t) => live(t).map(([l, n]): Sample => [{ ...threadLabels(t), ...l }, n]));
      if (m.retiredTotals.threads > 0) for (const [l, n] of retired(m.retiredTotals)) out.push([{ ...RETIRED, ...l }, n]);
      return out;
    });
  }
}

/** Events attempted, written and dropped (by reason), and the bytes dropped. */
function registerEventCounters(f: MetricFamilies): void {
  f.counter(
    'events_attempted_total',
    'Events the thread tried to record.',
    undefined,
    (t) => plain(t.eventsAttempted),
    (r) => plain(r.eventsAttempted),
  );
  f.counter(
    'events_written_total',
    'Events written to the trace file.',
    undefined,
    (t) => plain(t.eventsWritten),
    (r) => plain(r.eventsWritten),
  );
  f.metric('counter', 'events_dropped_total', 'Events dropped, by reason.', ['reason'], (m) => {
    const out: Sample[] = [];
    for (const t of m.threads) for (const [l, n] of byReason(t.droppedByReason)) out.push([{ ...threadLabels(t), ...l }, n]);
    if (m.retiredTotals.threads > 0) for (const [l, n] of byReason(m.retiredTotals.droppedByReason)) out.push([{ ...RETIRED, ...l }, n]);
    if (m.totals.droppedAfterClose > 0) out.push([{ thread: '(after close)', slot: '', reason: 'closed' }, m.totals.droppedAfterClose]);
    return out;
  });
  f.counter(
    'events_dropped_by_priority_total',
    'Events dropped, by the priority of their name (the drain-side reasons sink_error, thread_exit and unflushed are not attributed).',
    'priority',
    (t) => byPriority(t.droppedByPriority),
    (r) => byPriority(r.droppedByPriority),
  );
  f.counter(
    'bytes_dropped_total',
    'Record bytes dropped.',
    undefined,
    (t) => plain(t.bytesDropped),
    (r) => plain(r.bytesDropped),
  );
}

/** Each thread's backpressure state, its transitions and time per state, and its ring pool. */
function registerBackpressureMetrics(f: MetricFamilies): void {
  f.metric('gauge', 'backpressure_state', 'Backpressure state of the thread: 1 for the current state, 0 for the others.', ['state'], (m) =>
    m.threads.flatMap((t) => STATE_NAMES.map((state): Sample => [{ ...threadLabels(t), state }, t.state === state ? 1 : 0])),
  );
  f.counter(
    'backpressure_transitions_total',
    'Backpressure transitions taken, by edge.',
    'edge',
    (t) => byEdge(t.transitions),
    (r) => byEdge(r.transitions),
  );
  f.counter(
    'backpressure_state_seconds_total',
    'Time spent in each backpressure state.',
    'state',
    (t) => byState(t.timeInStateMs),
    (r) => byState(r.timeInStateMs),
  );
  f.perThread('gauge', 'free_spare_rings', 'Spare rings free for the thread now.', (t) => t.freeSpares);
  f.perThread('gauge', 'free_spare_rings_min', 'Lowest number of free spare rings seen (low watermark).', (t) => t.freeSparesMin);
  f.perThread('gauge', 'drain_lag_seconds', 'Time from the hand-over of the last ring to its write.', (t) => t.drainLagMs.last / 1000);
  f.perThread(
    'gauge',
    'ring_service_seconds',
    'Average time a handed-over ring is away, hand-over to return.',
    (t) => t.ringServiceMs / 1000,
  );
  f.perThread('gauge', 'threshold_raise_spares', 'Spares the PRESSURE mark is raised by (adaptive thresholds).', (t) => t.thresholdRaise);
  f.counter(
    'backpressure_predicted_entries_total',
    'NORMAL -> PRESSURE transitions taken by forecast, before the spares reached the PRESSURE mark.',
    undefined,
    (t) => plain(t.predictedPressureEntries),
    (r) => plain(r.predictedPressureEntries),
  );
  f.counter(
    'pool_exhaustions_total',
    'Times the thread found no spare ring.',
    undefined,
    (t) => plain(t.exhaustions),
    (r) => plain(r.exhaustions),
  );
  f.counter(
    'ring_swaps_total',
    'Rings handed to the drain at a swap.',
    undefined,
    (t) => plain(t.swaps),
    (r) => plain(r.swaps),
  );
}

/** The drain's sink errors and the number of registered threads. */
function registerDrainMetrics(f: MetricFamilies): void {
  const snap = () => f.snap();
  new Counter({
    name: `${f.prefix}sink_errors_total`,
    help: 'Chunks the drain could not write.',
    registers: f.registers,
    collect() {
      this.reset();
      this.inc(snap().drain.sinkErrors);
    },
  });
  new Gauge({
    name: `${f.prefix}threads`,
    help: 'Registered threads (live, closing or exiting).',
    registers: f.registers,
    collect() {
      this.set(snap().threads.length);
    },
  });
}
