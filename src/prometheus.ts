/**
 * Prometheus exposition through prom-client (an optional peer dependency: import this module as
 * 'ringtrace/prometheus' only where prom-client is installed). The collectors read
 * `tracer.metrics()` at scrape time; nothing is added to the recording path.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { REASONS } from './layout.js';
import { STATE_NAMES } from './backpressure.js';
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
  let snapshot: MetricsSnapshot | undefined;
  // One snapshot per scrape: the first collector to run takes it, the others reuse it.
  const snap = (): MetricsSnapshot => {
    snapshot ??= tracer.metrics();
    queueMicrotask(() => (snapshot = undefined));
    return snapshot;
  };
  const registers = [registry];
  type Thread = MetricsSnapshot['threads'][number];
  type Sample = [labels: Record<string, string>, value: number];
  const threadLabels = (t: Thread) => ({ thread: t.name, slot: String(t.slot) });
  /** A metric whose samples are recomputed from the snapshot at every scrape. */
  const metric = (kind: 'counter' | 'gauge', name: string, help: string, extraLabels: string[], samples: (m: MetricsSnapshot) => Sample[]) => {
    const Kind = kind === 'counter' ? Counter : Gauge;
    new Kind({
      name: `${prefix}${name}`,
      help,
      labelNames: ['thread', 'slot', ...extraLabels],
      registers,
      collect(this: Counter | Gauge) {
        this.reset();
        for (const [labels, value] of samples(snap())) (this as Gauge).inc(labels, value);
      },
    });
  };
  const perThread = (kind: 'counter' | 'gauge', name: string, help: string, value: (t: Thread) => number) =>
    metric(kind, name, help, [], (m) => m.threads.map((t) => [threadLabels(t), value(t)]));
  /** Per live thread, plus one `(retired)` sample so totals never go backwards. */
  const withRetired = (name: string, help: string, live: (t: Thread) => number, retired: (t: MetricsSnapshot['retired'][number]) => number) =>
    metric('counter', name, help, [], (m) => {
      const out: Sample[] = m.threads.map((t) => [threadLabels(t), live(t)]);
      const gone = m.retired.reduce((n, t) => n + retired(t), 0);
      if (gone > 0) out.push([{ thread: '(retired)', slot: '' }, gone]);
      return out;
    });

  withRetired('events_attempted_total', 'Events the thread tried to record.', (t) => t.eventsAttempted, (t) => t.attempted);
  withRetired('events_written_total', 'Events written to the trace file.', (t) => t.eventsWritten, (t) => t.events);
  metric('counter', 'events_dropped_total', 'Events dropped, by reason.', ['reason'], (m) => {
    const out: Sample[] = [];
    for (const t of m.threads) for (const reason of REASONS) out.push([{ ...threadLabels(t), reason }, t.droppedByReason[reason] ?? 0]);
    for (const reason of REASONS) {
      const n = m.retired.reduce((sum, t) => sum + (t.droppedByReason[reason] ?? 0), 0);
      if (n > 0) out.push([{ thread: '(retired)', slot: '', reason }, n]);
    }
    if (m.totals.droppedAfterClose > 0) out.push([{ thread: '(after close)', slot: '', reason: 'closed' }, m.totals.droppedAfterClose]);
    return out;
  });
  perThread('counter', 'bytes_dropped_total', 'Record bytes dropped.', (t) => t.bytesDropped);
  metric('gauge', 'backpressure_state', 'Backpressure state of the thread: 1 for the current state, 0 for the others.', ['state'], (m) =>
    m.threads.flatMap((t) => STATE_NAMES.map((state): Sample => [{ ...threadLabels(t), state }, t.state === state ? 1 : 0])),
  );
  metric('counter', 'backpressure_transitions_total', 'Backpressure transitions taken, by edge.', ['edge'], (m) =>
    m.threads.flatMap((t) => Object.entries(t.transitions).map(([edge, n]): Sample => [{ ...threadLabels(t), edge }, n])),
  );
  metric('counter', 'backpressure_state_seconds_total', 'Time spent in each backpressure state.', ['state'], (m) =>
    m.threads.flatMap((t) => STATE_NAMES.map((state): Sample => [{ ...threadLabels(t), state }, t.timeInStateMs[state] / 1000])),
  );
  perThread('gauge', 'free_spare_rings', 'Spare rings free for the thread now.', (t) => t.freeSpares);
  perThread('gauge', 'free_spare_rings_min', 'Lowest number of free spare rings seen (low watermark).', (t) => t.freeSparesMin);
  perThread('gauge', 'drain_lag_seconds', 'Time from the hand-over of the last ring to its write.', (t) => t.drainLagMs.last / 1000);
  perThread('counter', 'pool_exhaustions_total', 'Times the thread found no spare ring.', (t) => t.exhaustions);
  perThread('counter', 'ring_swaps_total', 'Rings handed to the drain at a swap.', (t) => t.swaps);
  new Counter({
    name: `${prefix}sink_errors_total`,
    help: 'Chunks the drain could not write.',
    registers,
    collect() {
      this.reset();
      this.inc(snap().drain.sinkErrors);
    },
  });
  new Gauge({
    name: `${prefix}threads`,
    help: 'Registered threads (live, closing or exiting).',
    registers,
    collect() {
      this.set(snap().threads.length);
    },
  });
}
