/**
 * Section 5: peers, same events, same run. The event is "name + numeric value + timestamp":
 *  - ringtrace `record(id, value)` (NORMAL, bursts that fit the pool, as in section 2);
 *  - pino `info({ value }, 'evt')` into a custom destination object whose write() discards
 *    (`pino({}, { write() {} })`: synchronous, no I/O; pino still builds the whole JSON line);
 *  - the same into `pino.destination({ dest: '/dev/null', sync: true })` (one write(2) per line);
 *  - OpenTelemetry `tracer.startSpan('evt').end()` with a BasicTracerProvider + BatchSpanProcessor
 *    and an exporter whose export() reports success at once; the processor is flushed between
 *    bursts (outside the timing) so its 2048-span queue never overflows (that would time the drop);
 *  - `diagnostics_channel` publish of a reused { id, value } object to one subscriber (no timestamp).
 */
import diagnostics_channel from 'node:diagnostics_channel';
import { do_not_optimize } from 'mitata';
import pino from 'pino';
import { BasicTracerProvider, BatchSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { Tracer } from '../src/index.js';
import { burst, collectingLogger, loud, spinUntil, statDetail, tempDir, type Row, type RunOptions } from './common.js';

const BURST = 1000;

export async function runPeers(opts: RunOptions): Promise<Row[]> {
  const RINGS = 16;
  const log = collectingLogger();
  const tracer = await Tracer.open({
    path: `${tempDir()}/peers.rtrace`,
    ringSize: '1MiB',
    ringsPerThread: RINGS,
    maxThreads: 2,
    flushIntervalMs: 0,
    logLevel: 'warn',
    exitHooks: false,
    logger: log,
  });
  const w = tracer.register('main');
  const id = tracer.define('evt');
  const ready = () => {
    w.flush();
    spinUntil(() => w.spareRings() === RINGS - 1, 10_000, 'the drain to return the flushed ring');
  };
  const dropped0 = tracer.metrics().totals.eventsDropped;

  const ringtrace = () => {
    let r = false;
    for (let i = 0; i < BURST; i++) r = w.record(id, i);
    do_not_optimize(r);
  };

  let written = 0;
  const logger = pino({}, { write: (s: string) => void (written += s.length) });
  const pinoBurst = () => {
    for (let i = 0; i < BURST; i++) logger.info({ value: i }, 'evt');
  };
  const devNull = pino.destination({ dest: '/dev/null', sync: true });
  const loggerNull = pino({}, devNull);
  const pinoNullBurst = () => {
    for (let i = 0; i < BURST; i++) loggerNull.info({ value: i }, 'evt');
  };

  let exported = 0;
  const exporter: SpanExporter = {
    export(spans: ReadableSpan[], done) {
      exported += spans.length;
      done({ code: 0 });
    },
    shutdown: () => Promise.resolve(),
  };
  const provider = new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(exporter)] });
  const otel = provider.getTracer('bench');
  const otelBurst = () => {
    for (let i = 0; i < BURST; i++) otel.startSpan('evt').end();
  };
  const otelReady = () => provider.forceFlush();

  const ch = diagnostics_channel.channel('ringtrace-bench');
  let seen = 0;
  const onMessage = (m: unknown) => void (seen += (m as { value: number }).value);
  ch.subscribe(onMessage);
  const msg = { id, value: 0 };
  const dcBurst = () => {
    for (let i = 0; i < BURST; i++) {
      msg.value = i;
      ch.publish(msg);
    }
  };

  const slow = { perCall: BURST, minSamples: opts.quick ? 30 : 200, maxSamples: opts.quick ? 40 : 400, warmup: opts.quick ? 5 : 30 };
  const sRt = await burst(opts, ringtrace, { perCall: BURST, setup: ready });
  const sPino = await burst(opts, pinoBurst, slow);
  const sPinoNull = await burst(opts, pinoNullBurst, slow);
  const sOtel = await burst(opts, otelBurst, { ...slow, setup: otelReady });
  const sDc = await burst(opts, dcBurst, { perCall: BURST });
  const sRt2 = await burst(opts, ringtrace, { perCall: BURST, setup: ready });
  await provider.forceFlush();
  await provider.shutdown();
  ch.unsubscribe(onMessage);
  do_not_optimize(written + seen);

  ready();
  const dropped = tracer.metrics().totals.eventsDropped - dropped0;
  if (dropped !== 0) loud(`FAILURE: ${dropped} ringtrace events dropped during the peer comparison`);
  await tracer.close();

  // ringtrace measured before and after the peers; the median of the two runs' medians is used.
  const rt = Math.max(sRt.p50, sRt2.p50);
  const row = (name: string, s: typeof sRt, target: boolean, extra: Record<string, unknown> = {}): Row => ({
    section: 'peers',
    name,
    value: s.p50,
    unit: 'ns/event',
    baseline: `ringtrace record (${rt.toFixed(1)})`,
    ratio: s.p50 / rt,
    ratioLabel: 'x',
    target: target ? '>= 20x ringtrace' : undefined,
    pass: target ? s.p50 / rt >= 20 : undefined,
    detail: { ...statDetail(s), ...extra },
  });
  return [
    {
      section: 'peers',
      name: 'ringtrace record(id, value)',
      value: rt,
      unit: 'ns/event',
      detail: { before: statDetail(sRt), after: statDetail(sRt2), droppedDuringBench: dropped },
      note: 'measured before and after the peers; the slower of the two medians is used for the ratios',
    },
    row('pino info({ value }, msg) -> discarding write()', sPino, true, { bytesFormatted: written }),
    row("pino info({ value }, msg) -> pino.destination('/dev/null', sync)", sPinoNull, true),
    row('OpenTelemetry startSpan().end(), BatchSpanProcessor', sOtel, true, { spansExported: exported }),
    row('diagnostics_channel publish, 1 subscriber', sDc, false),
  ];
}
