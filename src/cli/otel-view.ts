/**
 * OpenTelemetry spans recorded by `ringtrace/otel` (docs/design/otel.md), as the Chrome and
 * JSON-lines exports show them: a `bytes` event whose payload decodes as a span or a resource.
 */
import type { TraceEvent, TraceReader } from '../file/reader.js';
import { decodeOtelResource, decodeOtelSpan, hrTimeToTraceNs, type OtelResourceRecord, type OtelSpanRecord } from '../otel/payload.js';

export const OTEL_CAT = 'otel.span';
export const SPAN_KIND_NAMES = ['INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'] as const;
export const STATUS_NAMES = ['UNSET', 'OK', 'ERROR'] as const;

export type OtelDecoded = { span: OtelSpanRecord; resource?: undefined } | { resource: OtelResourceRecord; span?: undefined };

/** The OTel record a bytes event holds, if it holds one. */
export function decodeOtelEvent(e: TraceEvent, reader: TraceReader): OtelDecoded | undefined {
  if (e.kind !== 'bytes' || e.payload === undefined) return undefined;
  const span = decodeOtelSpan(e.payload, e.name, reader.names);
  if (span) return { span };
  const resource = decodeOtelResource(e.payload, reader.names);
  return resource ? { resource } : undefined;
}

/** A span's start and end on the trace's timeline (ns since the tracer opened). Without a
 * session start (a damaged header), the end is drawn at the record (written when the span ended). */
export function otelSpanTimes(s: OtelSpanRecord, reader: TraceReader, recordTs: number): { start: number; end: number } {
  const base = reader.sessionStartEpochMs;
  if (Number.isFinite(base)) return { start: hrTimeToTraceNs(s.start, base), end: hrTimeToTraceNs(s.end, base) };
  const dur = (s.end[0] - s.start[0]) * 1e9 + (s.end[1] - s.start[1]);
  return { start: recordTs - Math.max(0, dur), end: recordTs };
}

/** The span's fields as export args. */
export function otelSpanArgs(s: OtelSpanRecord): Record<string, unknown> {
  return {
    traceId: s.traceId,
    spanId: s.spanId,
    parentSpanId: s.parentSpanId ?? null,
    kind: SPAN_KIND_NAMES[s.kind] ?? s.kind,
    status: STATUS_NAMES[s.status.code] ?? s.status.code,
    ...(s.status.message !== undefined && { statusMessage: s.status.message }),
    scope: s.scope.version !== undefined ? `${s.scope.name}@${s.scope.version}` : s.scope.name,
    attributes: s.attributes,
    ...(s.links.length > 0 && { links: s.links.map((l) => ({ traceId: l.traceId, spanId: l.spanId, attributes: l.attributes })) }),
    ...(s.droppedAttributesCount + s.droppedEventsCount + s.droppedLinksCount > 0 && {
      dropped: { attributes: s.droppedAttributesCount, events: s.droppedEventsCount, links: s.droppedLinksCount },
    }),
  };
}

const us = (ns: number): number => Math.round(ns) / 1000;

/** Chrome trace events for one OTel span: an async begin/end pair (its own async track, by name)
 * with its fields in args, and an async instant per span event. */
export function otelChromeEvents(s: OtelSpanRecord, reader: TraceReader, recordTs: number, pid: number, tid: number): object[] {
  const { start, end } = otelSpanTimes(s, reader, recordTs);
  const common = { name: s.name, cat: OTEL_CAT, id: `otel:${s.spanId}`, pid, tid };
  const out: object[] = [
    { ...common, ph: 'b', ts: us(start), args: otelSpanArgs(s) },
    { ...common, ph: 'e', ts: us(Math.max(start, end)) },
  ];
  const base = reader.sessionStartEpochMs;
  for (const ev of s.events) {
    const ts = Number.isFinite(base) ? hrTimeToTraceNs(ev.time, base) : recordTs;
    out.push({ ...common, name: ev.name, ph: 'n', ts: us(ts), args: ev.attributes });
  }
  return out;
}

/** The JSON-lines field of an OTel record. */
export function otelJsonlField(d: OtelDecoded, reader: TraceReader, recordTs: number): Record<string, unknown> {
  if (d.resource) return { type: 'resource', attributes: d.resource.attributes, schemaUrl: d.resource.schemaUrl ?? null };
  const s = d.span;
  const { start, end } = otelSpanTimes(s, reader, recordTs);
  return {
    type: 'span',
    name: s.name,
    startTs: start,
    endTs: end,
    startUnixNano: hrToString(s.start),
    endUnixNano: hrToString(s.end),
    ...otelSpanArgs(s),
    events: s.events.map((e) => ({ name: e.name, timeUnixNano: hrToString(e.time), attributes: e.attributes })),
  };
}

/** An HrTime as a decimal string of ns since the epoch (exact; a number would round). */
export function hrToString(t: [number, number]): string {
  return (BigInt(t[0]) * 1_000_000_000n + BigInt(t[1])).toString();
}
