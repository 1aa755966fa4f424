/**
 * A worker thread with its own OpenTelemetry SDK (as a real app's worker has): a provider with
 * ringtrace/otel's processor on the attached tracer, and an in-memory exporter beside it as the
 * ground truth. Ends `count` spans (children of a root, with attributes and an event) and posts
 * back what the SDK ended and what the processor counted.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { context, trace as otelTrace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Tracer } from '../../src/index.js';
import { RingtraceSpanProcessor } from '../../src/otel/index.js';

const { trace, count } = workerData as { trace: Parameters<typeof Tracer.attach>[0]; count: number };
const tracer = Tracer.attach(trace);
tracer.register('otel-worker', { policy: 'drop-newest' });
const processor = new RingtraceSpanProcessor(tracer);
const truth = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [processor, new SimpleSpanProcessor(truth)] });
const t = provider.getTracer('worker-scope', '0.1.0');
const root = t.startSpan('worker.root', { kind: 4 });
const ctx = otelTrace.setSpan(context.active(), root);
for (let i = 0; i < count; i++) {
  const s = t.startSpan('worker.job', { attributes: { i, 'job.kind': i % 2 ? 'odd' : 'even' } }, ctx);
  s.addEvent('step', { n: i });
  s.end();
}
root.end();
await processor.forceFlush();
parentPort!.postMessage({
  stats: processor.stats(),
  spans: truth
    .getFinishedSpans()
    .map((s) => ({ spanId: s.spanContext().spanId, traceId: s.spanContext().traceId, attributes: s.attributes })),
});
