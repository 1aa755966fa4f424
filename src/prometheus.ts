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

  new Counter({
    name: `${prefix}events_attempted_total`,
    help: 'Events the thread tried to record.',
    labelNames: ['thread', 'slot'],
    registers,
    collect() {
      this.reset();
      const m = snap();
      for (const t of m.threads) this.inc({ thread: t.name, slot: String(t.slot) }, t.eventsAttempted);
      const retired = m.retired.reduce((n, t) => n + t.attempted, 0);
      if (retired > 0) this.inc({ thread: '(retired)', slot: '' }, retired);
    },
  });
  new Counter({
    name: `${prefix}events_written_total`,
    help: 'Events written to the trace file.',
    labelNames: ['thread', 'slot'],
    registers,
    collect() {
      this.reset();
      const m = snap();
      for (const t of m.threads) this.inc({ thread: t.name, slot: String(t.slot) }, t.eventsWritten);
      const retired = m.retired.reduce((n, t) => n + t.events, 0);
      if (retired > 0) this.inc({ thread: '(retired)', slot: '' }, retired);
    },
  });
  new Counter({
    name: `${prefix}events_dropped_total`,
    help: 'Events dropped, by reason.',
    labelNames: ['thread', 'slot', 'reason'],
    registers,
    collect() {
      this.reset();
      const m = snap();
      for (const t of m.threads) {
        for (const reason of REASONS) this.inc({ thread: t.name, slot: String(t.slot), reason }, t.droppedByReason[reason] ?? 0);
      }
      for (const reason of REASONS) {
        const n = m.retired.reduce((s, t) => s + (t.droppedByReason[reason] ?? 0), 0);
        if (n > 0) this.inc({ thread: '(retired)', slot: '', reason }, n);
      }
      if (m.totals.droppedAfterClose > 0) this.inc({ thread: '(after close)', slot: '', reason: 'closed' }, m.totals.droppedAfterClose);
    },
  });
  new Counter({
    name: `${prefix}bytes_dropped_total`,
    help: 'Record bytes dropped.',
    labelNames: ['thread', 'slot'],
    registers,
    collect() {
      this.reset();
      for (const t of snap().threads) this.inc({ thread: t.name, slot: String(t.slot) }, t.bytesDropped);
    },
  });
  new Gauge({
    name: `${prefix}backpressure_state`,
    help: 'Backpressure state of the thread: 1 for the current state, 0 for the others.',
    labelNames: ['thread', 'slot', 'state'],
    registers,
    collect() {
      this.reset();
      for (const t of snap().threads) {
        for (const s of STATE_NAMES) this.set({ thread: t.name, slot: String(t.slot), state: s }, t.state === s ? 1 : 0);
      }
    },
  });
  new Counter({
    name: `${prefix}backpressure_transitions_total`,
    help: 'Backpressure transitions taken, by edge.',
    labelNames: ['thread', 'slot', 'edge'],
    registers,
    collect() {
      this.reset();
      for (const t of snap().threads) {
        for (const [edge, n] of Object.entries(t.transitions)) this.inc({ thread: t.name, slot: String(t.slot), edge }, n);
      }
    },
  });
  new Counter({
    name: `${prefix}backpressure_state_seconds_total`,
    help: 'Time spent in each backpressure state.',
    labelNames: ['thread', 'slot', 'state'],
    registers,
    collect() {
      this.reset();
      for (const t of snap().threads) {
        for (const s of STATE_NAMES) this.inc({ thread: t.name, slot: String(t.slot), state: s }, t.timeInStateMs[s] / 1000);
      }
    },
  });
  const gauge = (name: string, help: string, value: (t: MetricsSnapshot['threads'][number]) => number) =>
    new Gauge({
      name: `${prefix}${name}`,
      help,
      labelNames: ['thread', 'slot'],
      registers,
      collect() {
        this.reset();
        for (const t of snap().threads) this.set({ thread: t.name, slot: String(t.slot) }, value(t));
      },
    });
  gauge('free_spare_rings', 'Spare rings free for the thread now.', (t) => t.freeSpares);
  gauge('free_spare_rings_min', 'Lowest number of free spare rings seen (low watermark).', (t) => t.freeSparesMin);
  gauge('drain_lag_seconds', 'Time from the hand-over of the last ring to its write.', (t) => t.drainLagMs.last / 1000);
  const counter = (name: string, help: string, value: (t: MetricsSnapshot['threads'][number]) => number) =>
    new Counter({
      name: `${prefix}${name}`,
      help,
      labelNames: ['thread', 'slot'],
      registers,
      collect() {
        this.reset();
        for (const t of snap().threads) this.inc({ thread: t.name, slot: String(t.slot) }, value(t));
      },
    });
  counter('pool_exhaustions_total', 'Times the thread found no spare ring.', (t) => t.exhaustions);
  counter('ring_swaps_total', 'Rings handed to the drain at a swap.', (t) => t.swaps);
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
