/**
 * A trace as OpenTelemetry spans (ReadableSpan-shaped objects for @opentelemetry/otlp-transformer),
 * streamed from the reader. The mapping is in docs/design/otel.md:
 *  - spans recorded by ringtrace/otel: as the SDK ended them (ids, times, kind, status,
 *    attributes, events, links, scope), under their thread's resource;
 *  - one `ringtrace.thread` span per thread, from its registration to its last event, carrying
 *    the thread's loss accounting as attributes and each loss record as a `ringtrace.drop` event;
 *  - ringtrace async spans (beginAsync/endAsync) and slices (begin/end): children of the span of
 *    the thread they began on, in the session's trace; links as `ringtrace.link` span events.
 * Every resource carries the thread's loss accounting too, so a backend sees what is missing.
 * Instants, counter values and plain byte payloads have no span to go into and are left out.
 */
import { createHash } from 'node:crypto';
import { basename } from 'node:path';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { REASONS } from '../shm/layout.js';
import type { ThreadSummary, TraceDrop, TraceEvent, TraceReader } from '../file/reader.js';
import type { Attrs, HrTime, OtelSpanRecord } from '../otel/payload.js';
import { decodeOtelEvent } from './otel-view.js';
import { AsyncMatcher, LossWindows, SliceMatcher, type AsyncOut, type SliceOut } from './spans.js';

export interface OtlpSpanOptions {
  /** service.name of threads that recorded no OTel resource (default "ringtrace"). */
  serviceName?: string;
  /** The ringtrace version, for the instrumentation scope of ringtrace's own spans. */
  version?: string;
}

interface Resource {
  attributes: Attrs;
  schemaUrl?: string;
}
type SpanEvent = { name: string; time: HrTime; attributes: Attrs; droppedAttributesCount: number };

export const THREAD_SPAN_NAME = 'ringtrace.thread';

/** The session's trace id: stable for a file (its start time and configuration, which names its path). */
export function sessionTraceId(reader: TraceReader): string {
  const h = createHash('sha256').update(`ringtrace-session:${reader.sessionStartEpochMs}:${JSON.stringify(reader.config)}`);
  return h.digest('hex').slice(0, 32);
}

const idHex = (hi: number, lo: number): string => {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(hi >>> 0, 0);
  b.writeUInt32BE(lo >>> 0, 4);
  return b.toString('hex');
};
/** Span ids of ringtrace's own spans: disjoint ranges, never all zero. */
export const asyncSpanId = (span: number): string => idHex(Math.floor(span / 2 ** 32), span % 2 ** 32);
export const threadSpanId = (registration: number): string => idHex(0x40000000 | registration, 0);
const sliceSpanId = (registration: number, k: number): string => idHex(0x80000000 | registration, k);

/** Each thread's loss accounting as attributes (ringtrace.*), zeros included. */
export function threadLossAttributes(reader: TraceReader, t: ThreadSummary): Attrs {
  const a: Attrs = {
    'thread.name': t.name,
    'thread.id': reader.threads[t.thread]?.nodeThreadId ?? -1,
    'ringtrace.thread.name': t.name,
    'ringtrace.thread.index': t.thread,
    'ringtrace.thread.registration': reader.threads[t.thread]?.registration ?? -1,
    'ringtrace.events.recorded': t.events,
    'ringtrace.events.dropped': t.dropped,
    'ringtrace.bytes.dropped': t.bytesDropped,
  };
  if (t.attempted !== undefined) a['ringtrace.events.attempted'] = t.attempted;
  for (const r of REASONS) a[`ringtrace.dropped.${r}`] = t.droppedByReason[r] ?? 0;
  a['ringtrace.balanced'] = t.balanced === undefined ? 'unknown' : t.balanced;
  if (t.endReason !== undefined) a['ringtrace.thread.end'] = t.endReason;
  if (t.unreadable) a['ringtrace.unreadable.chunks'] = t.unreadable.chunks;
  if (t.unreadable?.events !== undefined) a['ringtrace.unreadable.events'] = t.unreadable.events;
  return a;
}

/** Streams the trace's spans, in the order they complete in the file. */
export class OtlpSpanSource {
  readonly traceId: string;
  private readonly summaries: ThreadSummary[];
  private readonly base: { sec: number; ns: number };
  private readonly baseResources: Resource[];
  private readonly resources: Resource[];
  private readonly scope: { name: string; version?: string };
  private readonly sliceCount: number[];
  private readonly linkEvents = new Map<number, SpanEvent[]>();
  private readonly dropsOf: TraceDrop[][];
  /** Spans given out: OTel spans recorded by ringtrace/otel, and ringtrace's own. */
  readonly counts = { otel: 0, ringtrace: 0 };

  constructor(
    private readonly reader: TraceReader,
    options: OtlpSpanOptions = {},
  ) {
    this.traceId = sessionTraceId(reader);
    const summary = reader.summary();
    this.summaries = summary.threads;
    const start = Number.isFinite(reader.sessionStartEpochMs) ? reader.sessionStartEpochMs : 0;
    const sec = Math.floor(start / 1000);
    this.base = { sec, ns: Math.round((start - sec * 1000) * 1e6) };
    const common: Attrs = {
      'service.name': options.serviceName ?? 'ringtrace',
      'ringtrace.trace.file': basename(reader.path),
      'ringtrace.trace.complete': reader.complete,
      'ringtrace.trace.damaged': reader.damaged.length > 0,
      'ringtrace.session.start': Number.isFinite(reader.sessionStartEpochMs)
        ? new Date(reader.sessionStartEpochMs).toISOString()
        : 'unknown',
    };
    this.baseResources = this.summaries.map((t) => ({ attributes: { ...common, ...threadLossAttributes(reader, t) } }));
    this.resources = [...this.baseResources];
    this.scope = { name: 'ringtrace', ...(options.version !== undefined && { version: options.version }) };
    this.sliceCount = reader.threads.map(() => 0);
    this.dropsOf = reader.threads.map(() => []);
    for (const d of reader.drops()) this.dropsOf[d.thread]?.push(d);
  }

  /** A trace time (ns since the tracer opened) on the Unix epoch. */
  hr(ts: number): HrTime {
    const ns = this.base.ns + Math.max(0, Math.round(Number.isFinite(ts) ? ts : 0));
    const carry = Math.floor(ns / 1e9);
    return [this.base.sec + carry, ns - carry * 1e9];
  }

  *spans(): Generator<ReadableSpan> {
    const r = this.reader;
    const gaps = r.gaps.map((g) => ({ thread: g.thread, events: 1, firstTs: g.fromTs, lastTs: g.toTs }));
    const losses = new LossWindows(r.threads.length, [...r.drops(), ...gaps]);
    const slices = new SliceMatcher(
      losses,
      r.threads.map((t) => t.registeredTs),
    );
    const asyncs = new AsyncMatcher(losses);
    for (const e of r.eventsByTime()) {
      slices.seen(e.thread, e.ts);
      asyncs.seen(e.ts);
      if (e.kind === 'bytes') {
        const s = this.otelEvent(e);
        if (s) yield s;
      } else if (e.kind === 'begin') for (const x of slices.begin(e.thread, e.id, e.name ?? `#${e.id}`, e.ts)) yield this.slice(x);
      else if (e.kind === 'end') for (const x of slices.end(e.thread, e.id, e.name ?? `#${e.id}`, e.ts)) yield this.slice(x);
      else if (e.span !== undefined) {
        const done = this.asyncEvent(asyncs, e, e.span);
        if (done) yield this.async(done);
      }
    }
    for (const x of slices.finish()) yield this.slice(x);
    for (const a of asyncs.finish()) yield this.async(a);
    for (const t of this.summaries) yield this.thread(t);
  }

  private otelEvent(e: TraceEvent): ReadableSpan | undefined {
    const d = decodeOtelEvent(e, this.reader);
    if (d === undefined) return undefined;
    if (d.resource) {
      const base = this.baseResources[e.thread];
      // The thread's OTel resource, with the thread's loss accounting beside it.
      this.resources[e.thread] = {
        attributes: { ...d.resource.attributes, ...stripService(base.attributes) },
        schemaUrl: d.resource.schemaUrl,
      };
      return undefined;
    }
    this.counts.otel++;
    return this.fromOtel(d.span, this.resources[e.thread]);
  }

  private asyncEvent(asyncs: AsyncMatcher, e: TraceEvent, span: number): AsyncOut | undefined {
    if (e.kind === 'async-begin')
      return asyncs.begin({ span, thread: e.thread, id: e.id, name: e.name ?? `#${e.id}`, ts: e.ts, value: e.value });
    if (e.kind === 'async-end') return asyncs.end(span, e.thread, e.ts, e.id, e.name);
    // A link: an event on the span (while it is open; a link to a span not begun is left out).
    if (asyncs.get(span) !== undefined) {
      const list = this.linkEvents.get(span) ?? [];
      list.push({
        name: 'ringtrace.link',
        time: this.hr(e.ts),
        attributes: { 'thread.name': this.reader.threads[e.thread]?.name ?? '' },
        droppedAttributesCount: 0,
      });
      this.linkEvents.set(span, list);
    }
    return undefined;
  }

  private fromOtel(s: OtelSpanRecord, resource: Resource): ReadableSpan {
    return makeSpan({
      name: s.name,
      kind: s.kind,
      traceId: s.traceId,
      spanId: s.spanId,
      traceFlags: s.traceFlags,
      parent: s.parentSpanId !== undefined ? { spanId: s.parentSpanId, isRemote: s.parentRemote } : undefined,
      start: s.start,
      end: s.end,
      status: s.status.message !== undefined ? { code: s.status.code, message: s.status.message } : { code: s.status.code },
      attributes: s.attributes,
      events: s.events.map((e) => ({ ...e, droppedAttributesCount: 0 })),
      links: s.links.map((l) => ({
        context: { traceId: l.traceId, spanId: l.spanId, traceFlags: l.traceFlags },
        attributes: l.attributes,
      })),
      resource,
      scope: { name: s.scope.name, ...(s.scope.version !== undefined && { version: s.scope.version }) },
      dropped: [s.droppedAttributesCount, s.droppedEventsCount, s.droppedLinksCount],
    });
  }

  private own(
    name: string,
    thread: number,
    spanId: string,
    parentId: string | undefined,
    from: number,
    to: number,
    attributes: Attrs,
    events: SpanEvent[] = [],
  ): ReadableSpan {
    this.counts.ringtrace++;
    return makeSpan({
      name,
      kind: 0,
      traceId: this.traceId,
      spanId,
      traceFlags: 1,
      parent: parentId !== undefined ? { spanId: parentId, isRemote: false } : undefined,
      start: this.hr(from),
      end: this.hr(Math.max(from, to)),
      status: { code: 0 },
      attributes,
      events,
      links: [],
      resource: this.resources[thread] ?? this.baseResources[0],
      scope: this.scope,
      dropped: [0, 0, 0],
    });
  }

  private threadReg(thread: number): number {
    return this.reader.threads[thread]?.registration ?? thread;
  }

  private slice(x: SliceOut): ReadableSpan {
    const reg = this.threadReg(x.thread);
    const attributes: Attrs = { 'thread.name': this.reader.threads[x.thread]?.name ?? '' };
    if (x.truncated !== undefined) Object.assign(attributes, { 'ringtrace.truncated': x.truncated, 'ringtrace.clipped': x.clipped });
    return this.own(x.name, x.thread, sliceSpanId(reg, ++this.sliceCount[x.thread]), threadSpanId(reg), x.from, x.to, attributes);
  }

  private async(a: AsyncOut): ReadableSpan {
    const threads = this.reader.threads;
    const attributes: Attrs = {
      'ringtrace.span': '0x' + a.span.toString(16),
      'ringtrace.begin.thread': threads[a.begin.thread]?.name ?? '',
      'ringtrace.end.thread': threads[a.end.thread]?.name ?? '',
    };
    if (a.begin.value !== undefined) attributes['ringtrace.value'] = a.begin.value;
    if (a.truncated !== undefined) Object.assign(attributes, { 'ringtrace.truncated': a.truncated, 'ringtrace.clipped': a.clipped });
    const events = this.linkEvents.get(a.span) ?? [];
    this.linkEvents.delete(a.span);
    const parent = threadSpanId(this.threadReg(a.begin.thread));
    return this.own(a.name, a.begin.thread, asyncSpanId(a.span), parent, a.begin.ts, a.end.ts, attributes, events);
  }

  private thread(t: ThreadSummary): ReadableSpan {
    const th = this.reader.threads[t.thread];
    const drops = this.dropsOf[t.thread] ?? [];
    const events: SpanEvent[] = drops.map((d) => ({
      name: 'ringtrace.drop',
      time: this.hr(Number.isFinite(d.lastTs) ? d.lastTs : Number.isFinite(d.firstTs) ? d.firstTs : t.lastTs),
      attributes: { reason: d.reason, events: d.events, bytes: d.bytes },
      droppedAttributesCount: 0,
    }));
    const from = th?.registeredTs ?? t.firstTs;
    const to = Math.max(...[t.lastTs, from, ...drops.map((d) => d.lastTs)].filter((x) => Number.isFinite(x)));
    const attributes = threadLossAttributes(this.reader, t);
    return this.own(THREAD_SPAN_NAME, t.thread, threadSpanId(this.threadReg(t.thread)), undefined, from, to, attributes, events);
  }
}

const stripService = (a: Attrs): Attrs => {
  const rest = { ...a };
  delete rest['service.name'];
  return rest;
};

interface SpanFields {
  name: string;
  kind: number;
  traceId: string;
  spanId: string;
  traceFlags: number;
  parent: { spanId: string; isRemote: boolean } | undefined;
  start: HrTime;
  end: HrTime;
  status: { code: number; message?: string };
  attributes: Attrs;
  events: SpanEvent[];
  links: Array<{ context: { traceId: string; spanId: string; traceFlags: number }; attributes: Attrs }>;
  resource: Resource;
  scope: { name: string; version?: string };
  dropped: [number, number, number];
}

/** What the OTLP serializers read of a ReadableSpan. */
function makeSpan(f: SpanFields): ReadableSpan {
  const ctx = { traceId: f.traceId, spanId: f.spanId, traceFlags: f.traceFlags };
  const durNs = (f.end[0] - f.start[0]) * 1e9 + (f.end[1] - f.start[1]);
  const span = {
    name: f.name,
    kind: f.kind,
    spanContext: () => ctx,
    parentSpanContext: f.parent && { traceId: f.traceId, spanId: f.parent.spanId, traceFlags: f.traceFlags, isRemote: f.parent.isRemote },
    startTime: f.start,
    endTime: f.end,
    duration: [Math.floor(durNs / 1e9), durNs % 1e9],
    status: f.status,
    attributes: f.attributes,
    links: f.links,
    events: f.events,
    ended: true,
    resource: f.resource,
    instrumentationScope: f.scope,
    droppedAttributesCount: f.dropped[0],
    droppedEventsCount: f.dropped[1],
    droppedLinksCount: f.dropped[2],
  };
  return span as unknown as ReadableSpan;
}
