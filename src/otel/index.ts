/**
 * `ringtrace/otel`: record OpenTelemetry spans into a ringtrace trace.
 *
 * ```js
 * import { RingtraceSpanProcessor } from 'ringtrace/otel';
 * const provider = new BasicTracerProvider({ spanProcessors: [new RingtraceSpanProcessor(tracer)] });
 * ```
 */
export { RingtraceSpanProcessor, type RingtraceSpanProcessorOptions, type RingtraceSpanProcessorStats } from './processor.js';
export { decodeOtelSpan, decodeOtelResource, type OtelSpanRecord, type OtelResourceRecord } from './payload.js';
