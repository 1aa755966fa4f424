/**
 * Section `otel`: the OpenTelemetry SDK with ringtrace/otel's RingtraceSpanProcessor against
 * BatchSpanProcessor + an exporter that reports success at once (no serialisation, no I/O: the
 * cheapest BatchSpanProcessor can be), and NoopSpanProcessor (the SDK's own cost, no processor work).
 * The span: `startSpan(name, { attributes: 3 })` then `end()`, children of nothing.
 *
 * 1. per span (start + end, bursts of 500, mitata medians): the processor's cost on the app
 *    thread. ringtrace: the rings never run out (the drain returns a ring between bursts);
 *    BatchSpanProcessor: flushed between bursts (outside the timing), so its 2048-span queue never
 *    overflows (that would time the drop).
 * 2. process CPU at a steady 20k spans/s (also BatchSpanProcessor with an exporter that encodes each
 *    batch with the OTLP protobuf serializer and sends nothing: what a real OTLP exporter costs before I/O) (1 ms ticks ending the spans owed since the start), each
 *    processor in turn, every thread counted (`process.cpuUsage()`: ringtrace's drain worker writing
 *    the file is in it): % of one core and CPU ns per span, medians of rounds; what was kept, exported
 *    or dropped is reported beside it.
 */
import { performance } from 'node:perf_hooks';
import { do_not_optimize } from 'mitata';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  NoopSpanProcessor,
  type ReadableSpan,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { Tracer } from '../src/index.js';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { RingtraceSpanProcessor } from '../src/otel/index.js';
import { burst, collectingLogger, loud, round, sleep, spinUntil, statDetail, tempDir, type Row, type RunOptions } from './common.js';

const BURST = 500;
const RATE = 20_000;
const attrs = (i: number) => ({ 'http.method': 'GET', 'http.route': '/items/:id', 'http.status_code': 200 + (i & 1) });

function countingExporter(serialize = false): SpanExporter & { exported: number } {
  const e = {
    exported: 0,
    export(spans: ReadableSpan[], done: (r: { code: number }) => void) {
      e.exported += spans.length;
      if (serialize) do_not_optimize(ProtobufTraceSerializer.serializeRequest(spans));
      done({ code: 0 });
    },
    shutdown: () => Promise.resolve(),
  };
  return e;
}

async function openTracer(name: string): Promise<Tracer> {
  return Tracer.open({ path: `${tempDir()}/${name}.rtrace`, logLevel: 'warn', exitHooks: false, logger: collectingLogger() });
}

async function perSpan(opts: RunOptions): Promise<Row[]> {
  const tracer = await openTracer('otel-per-span');
  const w = tracer.register('main', { policy: 'drop-newest' });
  const rt = new RingtraceSpanProcessor(tracer);
  const exporter = countingExporter();
  const batch = new BatchSpanProcessor(exporter);
  const providers = {
    noop: new BasicTracerProvider({ spanProcessors: [new NoopSpanProcessor()] }),
    ringtrace: new BasicTracerProvider({ spanProcessors: [rt] }),
    batch: new BasicTracerProvider({ spanProcessors: [batch] }),
  };
  const run = (p: BasicTracerProvider) => {
    const t = p.getTracer('bench');
    return () => {
      let s;
      for (let i = 0; i < BURST; i++) (s = t.startSpan('GET /items/:id', { attributes: attrs(i) })).end();
      do_not_optimize(s);
    };
  };
  const rings = 8;
  const ready = () => {
    w.flush();
    spinUntil(() => w.spareRings() >= rings - 1, 10_000, 'the drain to return the flushed ring');
  };
  const o = { perCall: BURST, minSamples: opts.quick ? 30 : 200, maxSamples: opts.quick ? 40 : 400, warmup: opts.quick ? 5 : 30 };
  const sNoop = await burst(opts, run(providers.noop), o);
  const sRt = await burst(opts, run(providers.ringtrace), { ...o, setup: ready });
  const sBatch = await burst(opts, run(providers.batch), { ...o, setup: () => void batch.forceFlush() });
  const sRt2 = await burst(opts, run(providers.ringtrace), { ...o, setup: ready });
  await batch.shutdown();
  ready();
  const stats = rt.stats();
  const dropped = tracer.metrics().totals.eventsDropped;
  if (dropped !== 0 || stats.recorded !== stats.spans) loud(`FAILURE: ringtrace dropped ${dropped} spans during the per-span benchmark`);
  await tracer.close();
  const rtNs = Math.max(sRt.p50, sRt2.p50);
  const row = (name: string, value: number, detail: Record<string, unknown>, extra: Partial<Row> = {}): Row => ({
    section: 'otel',
    name,
    value,
    unit: 'ns/span',
    detail,
    ...extra,
  });
  return [
    row('SDK alone: NoopSpanProcessor', sNoop.p50, statDetail(sNoop)),
    row(
      'RingtraceSpanProcessor',
      rtNs,
      { before: statDetail(sRt), after: statDetail(sRt2), spans: stats.spans, droppedDuringBench: dropped },
      {
        baseline: `BatchSpanProcessor (${sBatch.p50.toFixed(0)})`,
        ratio: rtNs / sBatch.p50,
        ratioLabel: 'x',
        note: `processor's own cost over the SDK alone: ${(rtNs - sNoop.p50).toFixed(0)} ns (BatchSpanProcessor: ${(sBatch.p50 - sNoop.p50).toFixed(0)} ns)`,
      },
    ),
    row('BatchSpanProcessor + no-op exporter', sBatch.p50, { ...statDetail(sBatch), exported: exporter.exported }),
  ];
}

interface CpuRun {
  procPct: number;
  cpuNsPerSpan: number;
  spans: number;
  kept: number;
  dropped: number;
}

/** One processor at RATE spans/s for `seconds`: process CPU over wall time. */
type Kind = 'noop' | 'ringtrace' | 'batch' | 'batch-otlp';

async function cpuRun(kind: Kind, seconds: number): Promise<CpuRun> {
  const tracer = kind === 'ringtrace' ? await openTracer('otel-cpu') : undefined;
  const exporter = countingExporter(kind === 'batch-otlp');
  let processor: SpanProcessor = new BatchSpanProcessor(exporter);
  if (kind === 'ringtrace') processor = new RingtraceSpanProcessor(tracer!);
  else if (kind === 'noop') processor = new NoopSpanProcessor();
  const provider = new BasicTracerProvider({ spanProcessors: [processor] });
  const t = provider.getTracer('bench');
  let spans = 0;
  const tickFor = (start: number) => () => {
    const owed = Math.floor(((performance.now() - start) / 1000) * RATE);
    for (; spans < owed; spans++) t.startSpan('GET /items/:id', { attributes: attrs(spans) }).end();
  };
  // Warm-up, then the measured window.
  let timer = setInterval(tickFor(performance.now()), 1);
  await sleep(300);
  clearInterval(timer);
  await provider.forceFlush();
  spans = 0;
  exporter.exported = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  timer = setInterval(tickFor(t0), 1);
  await sleep(seconds * 1000);
  clearInterval(timer);
  await provider.forceFlush();
  const wall = performance.now() - t0;
  const c = process.cpuUsage(cpu0);
  const cpuMs = (c.user + c.system) / 1000;
  let kept = spans;
  let dropped = 0;
  if (kind === 'batch' || kind === 'batch-otlp') {
    kept = exporter.exported;
    dropped = spans - kept;
  }
  await provider.shutdown();
  if (tracer) {
    const m = tracer.metrics().totals;
    await tracer.close();
    dropped = m.eventsDropped;
    kept = spans - dropped;
  }
  return { procPct: (cpuMs / wall) * 100, cpuNsPerSpan: (cpuMs * 1e6) / Math.max(1, spans), spans, kept, dropped };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function processCpu(opts: RunOptions): Promise<Row[]> {
  const rounds = opts.quick ? 1 : 5;
  const seconds = opts.quick ? 1 : 3;
  const kinds = ['noop', 'ringtrace', 'batch', 'batch-otlp'] as const;
  const runs: Record<Kind, CpuRun[]> = { noop: [], ringtrace: [], batch: [], 'batch-otlp': [] };
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 ? [...kinds].reverse() : kinds;
    for (const k of order) runs[k].push(await cpuRun(k, seconds));
  }
  const names: Record<Kind, string> = {
    noop: 'SDK alone: NoopSpanProcessor',
    ringtrace: 'RingtraceSpanProcessor',
    batch: 'BatchSpanProcessor + no-op exporter',
    'batch-otlp': 'BatchSpanProcessor + exporter encoding OTLP protobuf (no I/O)',
  };
  const pctOf = (k: Kind) => median(runs[k].map((x) => x.procPct));
  return kinds.map((k) => ({
    section: 'otel',
    name: `process CPU at ${RATE / 1000}k spans/s: ${names[k]}`,
    value: round(pctOf(k), 2),
    unit: '% core',
    ...(k !== 'noop' && { baseline: `SDK alone (${pctOf('noop').toFixed(2)})`, delta: round(pctOf(k) - pctOf('noop'), 2) }),
    detail: {
      rounds,
      seconds,
      cpuNsPerSpan: round(median(runs[k].map((x) => x.cpuNsPerSpan)), 0),
      spans: runs[k].reduce((n, x) => n + x.spans, 0),
      kept: runs[k].reduce((n, x) => n + x.kept, 0),
      dropped: runs[k].reduce((n, x) => n + x.dropped, 0),
      perRound: runs[k].map((x) => round(x.procPct, 2)),
    },
  }));
}

export async function runOtel(opts: RunOptions): Promise<Row[]> {
  return [...(await perSpan(opts)), ...(await processCpu(opts))];
}
