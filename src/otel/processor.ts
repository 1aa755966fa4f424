/**
 * `ringtrace/otel`: a SpanProcessor for the OpenTelemetry JS SDK that records every ended span
 * into the calling thread's ringtrace writer, as one `bytes` event (docs/design/otel.md).
 *
 * No span object is kept, queued or handed to another thread: `onEnd` writes the span's fields
 * into a reused scratch buffer (ids as raw bytes, times as the SDK's HrTime, repeated strings as
 * interned ids) and `recordBytes` copies that into the ring. What the ring cannot take is
 * counted by the writer like any event: per thread, by reason, in the file.
 *
 * Only types are imported from OpenTelemetry: loading this module loads no OTel package.
 */
import type { Context } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { Tracer } from '../tracer.js';
import type { Writer } from '../record/writer.js';
import type { DropPolicy } from '../config.js';
import {
  HexCache,
  INLINE_NAME_EVENT,
  PayloadWriter,
  RESOURCE_EVENT_NAME,
  RESOURCE_MAGIC,
  SPAN_FIXED_BYTES,
  SPAN_MAGIC,
  STR_INLINE,
  SpanFlag,
  type Attrs,
} from './payload.js';

export interface RingtraceSpanProcessorOptions {
  /** The writer's name when this thread has none yet (default: the tracer's, `main` or `worker-<threadId>`). */
  threadName?: string;
  /** The writer's drop policy when this thread has none yet (default: the tracer's). */
  policy?: DropPolicy;
  /**
   * How many distinct strings (span names, attribute keys, scope and event names) this processor
   * interns with `tracer.define()`. The name table is shared by the whole tracer (1,536 names),
   * so a high-cardinality span name must not fill it: past this budget, strings are stored
   * inline in each span's payload (bigger records, same content). Default 256.
   */
  maxNames?: number;
}

/** What the processor saw (this processor, this thread). */
export interface RingtraceSpanProcessorStats {
  /** Ended spans offered to the writer. */
  spans: number;
  /** Of those, taken by the ring (the rest are counted as dropped by the writer, in the file). A
   * drop-oldest writer may still evict a span taken here to make room for a later one: the file
   * counts that too; this count does not. */
  recorded: number;
  /** Spans not offered at all: no writer could be registered (the tracer is closed or full). Not in the file. */
  unrecorded: number;
}

type TracerLike = Pick<Tracer, 'define' | 'register'>;

interface OldReadableSpan {
  parentSpanId?: string;
}

export class RingtraceSpanProcessor implements SpanProcessor {
  private writer: Writer | undefined;
  private readonly ids = new Map<string, number>();
  private readonly maxNames: number;
  private interned = 0;
  private tableFull = false;
  private readonly p: PayloadWriter;
  private resource: unknown = undefined;
  private resourceId = -1;
  private inlineNameId = -1;
  private eventId = 0;
  private readonly traceIds = new HexCache(16);
  private readonly parentIds = new HexCache(8);
  private readonly noParent = new HexCache(8);
  private readonly counts: RingtraceSpanProcessorStats = { spans: 0, recorded: 0, unrecorded: 0 };

  constructor(
    private readonly tracer: TracerLike,
    private readonly options: RingtraceSpanProcessorOptions = {},
  ) {
    const max = options.maxNames ?? 256;
    if (!(Number.isInteger(max) && max >= 0)) throw new RangeError('ringtrace/otel: maxNames must be a non-negative integer');
    this.maxNames = max;
    this.p = new PayloadWriter((s) => this.intern(s));
  }

  /** A string's interned id, or STR_INLINE. Never throws: a full table or a long name goes inline. */
  private intern(s: string): number {
    const known = this.ids.get(s);
    if (known !== undefined) return known;
    if (this.tableFull || this.interned >= this.maxNames) return STR_INLINE;
    let id: number;
    try {
      id = this.tracer.define(s);
      this.interned++;
    } catch (e) {
      // NameTableFullError: stop asking. A RangeError (over 112 bytes): this string goes inline.
      if ((e as Error).name === 'NameTableFullError') this.tableFull = true;
      id = STR_INLINE;
    }
    if (this.ids.size < 4 * this.maxNames + 64) this.ids.set(s, id);
    return id;
  }

  /** Nothing to do at the start: the span is recorded whole when it ends. */
  onStart(span: Span, parentContext: Context): void {
    void span;
    void parentContext;
  }

  onEnd(span: ReadableSpan): void {
    this.counts.spans++;
    const w = this.writerOf();
    if (w === undefined) {
      this.counts.unrecorded++;
      return;
    }
    if (span.resource !== this.resource) this.recordResource(w, span);
    const length = this.encode(span);
    if (w.recordBytes(this.eventId, this.p.u8.subarray(0, length))) this.counts.recorded++;
  }

  private writerOf(): Writer | undefined {
    const w = this.writer;
    if (w !== undefined && !w.isClosed) return w;
    try {
      this.writer = this.tracer.register(this.options.threadName, this.options.policy ? { policy: this.options.policy } : {});
      this.resource = undefined; // a new registration: its file thread needs the resource again
      return this.writer;
    } catch {
      return undefined;
    }
  }

  /** The resource once per (registration, resource), written again until it was kept. */
  private recordResource(w: Writer, span: ReadableSpan): void {
    if (this.resourceId < 0) this.resourceId = this.tracer.define(RESOURCE_EVENT_NAME);
    const p = this.p;
    p.reset();
    p.u32(RESOURCE_MAGIC);
    const res = span.resource as { attributes?: Attrs; schemaUrl?: string } | undefined;
    p.ref(res?.schemaUrl);
    p.attrs(res?.attributes);
    if (w.recordBytes(this.resourceId, p.u8.subarray(0, p.pos))) this.resource = span.resource;
  }

  /** The span as a payload in the scratch buffer; returns its length and sets eventId. */
  private encode(span: ReadableSpan): number {
    const p = this.p;
    p.reset();
    p.u32(SPAN_MAGIC);
    p.u32(0); // kind, status, flags, trace flags: filled below
    const ctx = span.spanContext();
    const parent = span.parentSpanContext;
    const parentId = parent?.spanId ?? (span as OldReadableSpan).parentSpanId;
    const st = span.startTime;
    const et = span.endTime;
    p.u32(st[0]);
    p.u32(st[1]);
    p.u32(et[0]);
    p.u32(et[1]);
    let ok = p.hexCached(ctx.traceId, 16, this.traceIds);
    ok = p.hex(ctx.spanId, 8) && ok;
    if (parentId !== undefined) ok = p.hexCached(parentId, 8, this.parentIds) && ok;
    else p.hexCached('0000000000000000', 8, this.noParent);
    p.u32(span.droppedAttributesCount);
    p.u32(span.droppedEventsCount);
    p.u32(span.droppedLinksCount);
    p.u32(0);
    let id = this.intern(span.name);
    let flags = (parentId !== undefined ? SpanFlag.HAS_PARENT : 0) | (parent?.isRemote ? SpanFlag.PARENT_REMOTE : 0);
    if (!ok) flags |= SpanFlag.BAD_IDS;
    if (id === STR_INLINE) {
      flags |= SpanFlag.NAME_INLINE;
      if (this.inlineNameId < 0) this.inlineNameId = this.tracer.define(INLINE_NAME_EVENT);
      id = this.inlineNameId;
      p.str(span.name);
    }
    p.u8at(4, span.kind);
    p.u8at(5, span.status.code);
    p.u8at(6, flags);
    p.u8at(7, ctx.traceFlags);
    if (p.pos < SPAN_FIXED_BYTES) throw new Error('ringtrace/otel: internal error: short span header');
    const scope = span.instrumentationScope;
    p.ref(scope.name);
    p.ref(scope.version);
    p.ref(span.status.message);
    p.attrs(span.attributes as Attrs);
    p.u32(span.events.length);
    for (const e of span.events) {
      p.ref(e.name);
      p.u32(e.time[0]);
      p.u32(e.time[1]);
      p.attrs(e.attributes as Attrs | undefined);
    }
    p.u32(span.links.length);
    for (const l of span.links) {
      p.hex(l.context.traceId, 16);
      p.hex(l.context.spanId, 8);
      p.byte(l.context.traceFlags);
      p.attrs(l.attributes as Attrs | undefined);
    }
    this.eventId = id;
    return p.pos;
  }

  /** Spans seen, kept and not offered by this processor (on the thread that calls it). */
  stats(): RingtraceSpanProcessorStats {
    return { ...this.counts };
  }

  /** Hands this thread's partial ring to the drain (the spans reach the file within a drain pass). */
  forceFlush(): Promise<void> {
    this.writer?.flush();
    return Promise.resolve();
  }

  /** Leaves the writer and the tracer open: they are the application's to close. */
  shutdown(): Promise<void> {
    return this.forceFlush();
  }
}
