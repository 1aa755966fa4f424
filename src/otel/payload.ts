/**
 * The payload convention for OpenTelemetry spans in a ringtrace file (docs/design/otel.md): an
 * ended span is one `bytes` event whose payload starts with the magic "OTS" and a version byte,
 * and a thread's OTel resource is one `bytes` event whose payload starts with "OTR". Strings
 * that repeat (span names, attribute keys, scope names, event names) are interned with
 * `tracer.define()` and stored as their u32 id; values are stored inline. Little-endian.
 *
 * This module has no runtime imports: the processor (ringtrace/otel) encodes with it on the
 * application's thread, the CLI decodes with it.
 */

export const SPAN_MAGIC = 0x01_53_54_4f; // "OTS" 1, read as a little-endian u32
export const RESOURCE_MAGIC = 0x01_52_54_4f; // "OTR" 1
export const OTEL_PAYLOAD_VERSION = 1;
/** Event name of the resource records (the span records are named by the span's name). */
export const RESOURCE_EVENT_NAME = 'otel.resource';
/** Event name of span records whose name is stored inline (too long to intern, or over budget). */
export const INLINE_NAME_EVENT = 'otel.span';

/** A string reference: a defined name's id, or one of these. */
export const STR_INLINE = 0xffffffff;
export const STR_ABSENT = 0xfffffffe;

export const SpanFlag = { HAS_PARENT: 1, PARENT_REMOTE: 2, NAME_INLINE: 4, BAD_IDS: 8 } as const;

/** Attribute value types. */
const V = { NULL: 0, STRING: 1, NUMBER: 2, BOOL: 3, ARRAY: 4 } as const;

/** Bytes of the fixed part of a span payload (before the strings, attributes, events and links). */
export const SPAN_FIXED_BYTES = 72;

export type AttrValue = string | number | boolean | null | undefined | Array<string | number | boolean | null | undefined>;
export type Attrs = Record<string, AttrValue>;
export type HrTime = [number, number];

/** A span as decoded from the file. Ids are lowercase hex, as in OTel JS. */
export interface OtelSpanRecord {
  name: string;
  kind: number;
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
  parentRemote: boolean;
  traceFlags: number;
  start: HrTime;
  end: HrTime;
  status: { code: number; message: string | undefined };
  scope: { name: string; version: string | undefined };
  attributes: Attrs;
  events: Array<{ name: string; time: HrTime; attributes: Attrs }>;
  links: Array<{ traceId: string; spanId: string; traceFlags: number; attributes: Attrs }>;
  droppedAttributesCount: number;
  droppedEventsCount: number;
  droppedLinksCount: number;
}

export interface OtelResourceRecord {
  attributes: Attrs;
  schemaUrl: string | undefined;
}

// ---------------------------------------------------------------------------------------------
// Encoding

const HEX: Int8Array = (() => {
  const t = new Int8Array(128).fill(-1);
  for (let i = 0; i < 10; i++) t[48 + i] = i;
  for (let i = 0; i < 6; i++) t[97 + i] = t[65 + i] = 10 + i;
  return t;
})();

const utf8 = new TextEncoder();

/** The last id parsed into a field (see PayloadWriter.hexCached). */
export class HexCache {
  hex = '';
  readonly bytes: Uint8Array;
  constructor(n: number) {
    this.bytes = new Uint8Array(n);
  }
}

/** Interns a string: an id, or STR_INLINE when it must be stored inline. */
export type Interner = (s: string) => number;

/**
 * Writes payloads into one growing scratch buffer (no allocation per span once it is large
 * enough). `u8.subarray(0, n)` of a finished payload is what goes to recordBytes (copied there).
 */
export class PayloadWriter {
  u8 = new Uint8Array(1024);
  private dv = new DataView(this.u8.buffer);
  pos = 0;

  constructor(private readonly intern: Interner) {}

  reset(): void {
    this.pos = 0;
  }

  private room(n: number): void {
    if (this.pos + n <= this.u8.length) return;
    let size = this.u8.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.u8.subarray(0, this.pos));
    this.u8 = next;
    this.dv = new DataView(next.buffer);
  }

  u8at(at: number, v: number): void {
    this.u8[at] = v;
  }

  byte(v: number): void {
    this.room(1);
    this.u8[this.pos++] = v;
  }

  u32(v: number): void {
    this.room(4);
    this.dv.setUint32(this.pos, v >>> 0, true);
    this.pos += 4;
  }

  u32at(at: number, v: number): void {
    this.dv.setUint32(at, v >>> 0, true);
  }

  f64(v: number): void {
    this.room(8);
    this.dv.setFloat64(this.pos, v, true);
    this.pos += 8;
  }

  /** u32 byte length + UTF-8; an ASCII string is copied char by char (no encoder call). */
  str(s: string): void {
    const n = s.length;
    this.room(4 + n);
    const at = this.pos + 4;
    const u8 = this.u8;
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) break;
      u8[at + i] = c;
    }
    if (i === n) {
      this.dv.setUint32(this.pos, n, true);
      this.pos = at + n;
      return;
    }
    const bytes = utf8.encode(s);
    this.room(4 + bytes.length);
    this.dv.setUint32(this.pos, bytes.length, true);
    this.u8.set(bytes, this.pos + 4);
    this.pos += 4 + bytes.length;
  }

  /** A string that repeats: its defined id, or inline. */
  ref(s: string | undefined): void {
    if (s === undefined || s === '') return this.u32(STR_ABSENT);
    const id = this.intern(s);
    this.u32(id);
    if (id === STR_INLINE) this.str(s);
  }

  /** `bytes` hex digits of `hex` as bytes/2 raw bytes at `at`; false (zeros written) if not hex of that length. */
  hexAt(at: number, hex: string, bytes: number): boolean {
    const u8 = this.u8;
    if (typeof hex !== 'string' || hex.length !== bytes * 2) {
      u8.fill(0, at, at + bytes);
      return false;
    }
    let bad = 0;
    for (let i = 0; i < bytes; i++) {
      const a = hex.charCodeAt(2 * i);
      const b = hex.charCodeAt(2 * i + 1);
      const hi = a < 128 ? HEX[a] : -1;
      const lo = b < 128 ? HEX[b] : -1;
      bad |= hi | lo; // -1 has the sign bit
      u8[at + i] = (hi << 4) | lo;
    }
    if (bad < 0) u8.fill(0, at, at + bytes);
    return bad >= 0;
  }

  hex(hex: string, bytes: number): boolean {
    this.room(bytes);
    const ok = this.hexAt(this.pos, hex, bytes);
    this.pos += bytes;
    return ok;
  }

  /** As hex(), but an id equal to the one `cache` last held is copied from it (a trace's spans
   * share the trace id, siblings their parent id): parsing hex is the costliest part of a span. */
  hexCached(hex: string, bytes: number, cache: HexCache): boolean {
    this.room(bytes);
    const at = this.pos;
    this.pos += bytes;
    if (hex === cache.hex) {
      this.u8.set(cache.bytes, at);
      return true;
    }
    const ok = this.hexAt(at, hex, bytes);
    if (ok) {
      cache.hex = hex;
      cache.bytes.set(this.u8.subarray(at, at + bytes));
    }
    return ok;
  }

  value(v: AttrValue): void {
    this.room(1);
    const at = this.pos++;
    if (typeof v === 'string') {
      this.u8[at] = V.STRING;
      this.str(v);
    } else if (typeof v === 'number') {
      this.u8[at] = V.NUMBER;
      this.f64(v);
    } else if (typeof v === 'boolean') {
      this.u8[at] = V.BOOL;
      this.room(1);
      this.u8[this.pos++] = v ? 1 : 0;
    } else if (Array.isArray(v)) {
      this.u8[at] = V.ARRAY;
      this.u32(v.length);
      for (const x of v) this.value(Array.isArray(x) ? null : x);
    } else this.u8[at] = V.NULL;
  }

  /** u32 count, then (key ref, value) pairs; a key whose value is undefined is left out. */
  attrs(a: Attrs | undefined): void {
    this.room(4);
    const countAt = this.pos;
    this.pos += 4;
    let n = 0;
    if (a !== undefined) {
      for (const k in a) {
        const v = a[k];
        if (v === undefined) continue;
        this.ref(k);
        this.value(v);
        n++;
      }
    }
    this.u32at(countAt, n);
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding: strict. Anything that does not add up (a length past the end, an unknown type,
// bytes left over) means the payload is not ours, and the caller shows it as plain bytes.

class Bad extends Error {}
const utf8d = new TextDecoder('utf-8', { fatal: true });
const hexOf = (u8: Uint8Array, at: number, n: number): string => Buffer.from(u8.buffer, u8.byteOffset + at, n).toString('hex');

class PayloadReader {
  private readonly dv: DataView;
  pos = 0;
  constructor(
    readonly u8: Uint8Array,
    private readonly names: ReadonlyMap<number, string>,
  ) {
    this.dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  }

  need(n: number): void {
    if (this.pos + n > this.u8.length) throw new Bad();
  }

  byte(): number {
    this.need(1);
    return this.u8[this.pos++];
  }

  u32(): number {
    this.need(4);
    const v = this.dv.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  f64(): number {
    this.need(8);
    const v = this.dv.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }

  str(): string {
    const n = this.u32();
    this.need(n);
    let s: string;
    try {
      s = utf8d.decode(this.u8.subarray(this.pos, this.pos + n));
    } catch {
      throw new Bad();
    }
    this.pos += n;
    return s;
  }

  ref(): string | undefined {
    const id = this.u32();
    if (id === STR_ABSENT) return undefined;
    if (id === STR_INLINE) return this.str();
    const s = this.names.get(id);
    if (s === undefined) throw new Bad();
    return s;
  }

  hex(n: number): string {
    this.need(n);
    const s = hexOf(this.u8, this.pos, n);
    this.pos += n;
    return s;
  }

  value(depth = 0): AttrValue {
    const t = this.byte();
    if (t === V.STRING) return this.str();
    if (t === V.NUMBER) return this.f64();
    if (t === V.BOOL) return this.byte() !== 0;
    if (t === V.NULL) return null;
    if (t !== V.ARRAY || depth > 0) throw new Bad();
    const n = this.u32();
    if (n > this.u8.length - this.pos) throw new Bad(); // at least a byte each
    const out: Array<string | number | boolean | null | undefined> = [];
    for (let i = 0; i < n; i++) out.push(this.value(1) as string | number | boolean | null);
    return out;
  }

  attrs(): Attrs {
    const n = this.u32();
    if (n > this.u8.length - this.pos) throw new Bad();
    const out: Attrs = {};
    for (let i = 0; i < n; i++) {
      const k = this.ref();
      if (k === undefined) throw new Bad();
      out[k] = this.value();
    }
    return out;
  }

  hrTime(): HrTime {
    const sec = this.u32();
    const ns = this.u32();
    if (ns >= 1e9) throw new Bad();
    return [sec, ns];
  }
}

/** The magic of a payload (its first u32), or undefined if it is shorter than that. */
export function payloadMagic(p: Uint8Array): number | undefined {
  return p.length >= 4 ? (p[0] | (p[1] << 8) | (p[2] << 16) | (p[3] << 24)) >>> 0 : undefined;
}

/**
 * A span record's payload, decoded; undefined if the payload is not one (any inconsistency).
 * `eventName` is the name of the record's event id (the span's name unless stored inline).
 */
export function decodeOtelSpan(
  payload: Uint8Array,
  eventName: string | undefined,
  names: ReadonlyMap<number, string>,
): OtelSpanRecord | undefined {
  if (payloadMagic(payload) !== SPAN_MAGIC || payload.length < SPAN_FIXED_BYTES) return undefined;
  const r = new PayloadReader(payload, names);
  try {
    r.pos = 4;
    const kind = r.byte();
    const statusCode = r.byte();
    const flags = r.byte();
    const traceFlags = r.byte();
    const start = r.hrTime();
    const end = r.hrTime();
    const traceId = r.hex(16);
    const spanId = r.hex(8);
    const parent = r.hex(8);
    const droppedAttributesCount = r.u32();
    const droppedEventsCount = r.u32();
    const droppedLinksCount = r.u32();
    r.u32(); // reserved
    const name = flags & SpanFlag.NAME_INLINE ? r.str() : eventName;
    if (name === undefined || kind > 4 || statusCode > 2) return undefined;
    const scopeName = r.ref() ?? '';
    const scopeVersion = r.ref();
    const message = r.ref();
    const attributes = r.attrs();
    const events: OtelSpanRecord['events'] = [];
    for (let n = r.u32(), i = 0; i < n; i++) {
      const ename = r.ref() ?? '';
      events.push({ name: ename, time: r.hrTime(), attributes: r.attrs() });
    }
    const links: OtelSpanRecord['links'] = [];
    for (let n = r.u32(), i = 0; i < n; i++) {
      const lt = r.hex(16);
      const ls = r.hex(8);
      links.push({ traceId: lt, spanId: ls, traceFlags: r.byte(), attributes: r.attrs() });
    }
    if (r.pos !== payload.length) return undefined;
    return {
      name,
      kind,
      traceId,
      spanId,
      parentSpanId: flags & SpanFlag.HAS_PARENT ? parent : undefined,
      parentRemote: (flags & SpanFlag.PARENT_REMOTE) !== 0,
      traceFlags,
      start,
      end,
      status: { code: statusCode, message },
      scope: { name: scopeName, version: scopeVersion },
      attributes,
      events,
      links,
      droppedAttributesCount,
      droppedEventsCount,
      droppedLinksCount,
    };
  } catch (e) {
    if (e instanceof Bad) return undefined;
    throw e;
  }
}

/** A resource record's payload, decoded; undefined if the payload is not one. */
export function decodeOtelResource(payload: Uint8Array, names: ReadonlyMap<number, string>): OtelResourceRecord | undefined {
  if (payloadMagic(payload) !== RESOURCE_MAGIC) return undefined;
  const r = new PayloadReader(payload, names);
  try {
    r.pos = 4;
    const schemaUrl = r.ref();
    const attributes = r.attrs();
    return r.pos === payload.length ? { attributes, schemaUrl } : undefined;
  } catch (e) {
    if (e instanceof Bad) return undefined;
    throw e;
  }
}

/** An HrTime as ns since the session's start (the tracer's clock zero, on the Unix epoch). */
export function hrTimeToTraceNs(t: HrTime, sessionStartEpochMs: number): number {
  return (t[0] * 1000 - sessionStartEpochMs) * 1e6 + t[1];
}
