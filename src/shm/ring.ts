/**
 * What the bytes of a ring are: the record framing, and the cursor arithmetic of a ring that is
 * written linearly and, once its pool is exhausted under drop-oldest, circularly.
 *
 * A record is 8-byte aligned:
 * ```
 *   0        3 4            8                  16
 *   +--------+-+------------+------------------+--------------------------------+
 *   | payloadLen:24 | kind:8 | eventId:u32      | ts: f64 ns since clock zero    |
 *   +---------------+--------+------------------+--------------------------------+
 *   VALUE: + f64 value (8 B)      BYTES: + payload, zero-padded to 8 B
 *   ASYNC_BEGIN, ASYNC_END, LINK: + f64 span id (8 B); ASYNC_BEGIN with payloadLen 16: + f64 value
 * ```
 * For the span kinds the low 24 bits of word 0 say how many bytes follow the header (8, or 16
 * for an ASYNC_BEGIN with a value), so they are framed like a BYTES record.
 * (word 0 is a little-endian u32: kind in the top byte, payload length in the low 24 bits.)
 * A zero word 0 is never a valid record, so zeroed memory past the committed end reads as garbage
 * rather than as events.
 *
 * A ring holds records in [head, tail) while linear. Under drop-oldest with no spare ring the
 * writer keeps writing by evicting whole records from head; once the tail must restart at 0 the
 * ring is "wrapped": the older records are [head, wrapEnd) and the newer [0, tail). Either way
 * the ring reads back as at most two runs of whole records, oldest first.
 */

export const RecordKind = {
  INSTANT: 1,
  VALUE: 2,
  BYTES: 3,
  BEGIN: 4,
  END: 5,
  /** Format version 3: async spans (beginAsync/endAsync) and links (a flow into a span). */
  ASYNC_BEGIN: 6,
  ASYNC_END: 7,
  LINK: 8,
} as const;

/** Bytes after the header of a span record: the span id; an ASYNC_BEGIN with a value adds it. */
export const SPAN_BYTES = 8;
export const SPAN_VALUE_BYTES = 16;

export const RECORD_HEADER_BYTES = 16;
export const VALUE_RECORD_BYTES = 24;
export const MAX_PAYLOAD_BYTES = 0xffffff;

export const INSTANT_WORD = RecordKind.INSTANT << 24;
export const VALUE_WORD = RecordKind.VALUE << 24;
export const BEGIN_WORD = RecordKind.BEGIN << 24;
export const END_WORD = RecordKind.END << 24;

export const align8 = (n: number): number => (n + 7) & ~7;

/** Total bytes of the record whose first word is `word0`, or -1 if the word is not a record. */
export function recordBytes(word0: number): number {
  const kind = word0 >>> 24;
  const len = word0 & MAX_PAYLOAD_BYTES;
  switch (kind) {
    case RecordKind.INSTANT:
    case RecordKind.BEGIN:
    case RecordKind.END:
      return len === 0 ? RECORD_HEADER_BYTES : -1;
    case RecordKind.VALUE:
      return len === 0 ? VALUE_RECORD_BYTES : -1;
    case RecordKind.BYTES:
      return RECORD_HEADER_BYTES + align8(len);
    case RecordKind.ASYNC_BEGIN:
      return len === SPAN_BYTES || len === SPAN_VALUE_BYTES ? RECORD_HEADER_BYTES + len : -1;
    case RecordKind.ASYNC_END:
    case RecordKind.LINK:
      return len === SPAN_BYTES ? RECORD_HEADER_BYTES + len : -1;
    default:
      return -1;
  }
}

/** Bytes a BYTES record with this payload length takes in a ring. */
export const bytesRecordSize = (payloadLength: number): number => RECORD_HEADER_BYTES + align8(payloadLength);

/** The runs of a ring that hold records, oldest first, as byte offsets relative to the ring. */
export interface RingExtent {
  head: number;
  tail: number;
  /** -1 while linear; else where the older run [head, wrapEnd) ends. */
  wrapEnd: number;
}

export function extentRuns(e: RingExtent): Array<[number, number]> {
  if (e.wrapEnd < 0) return e.tail > e.head ? [[e.head, e.tail]] : [];
  const runs: Array<[number, number]> = [];
  if (e.wrapEnd > e.head) runs.push([e.head, e.wrapEnd]);
  if (e.tail > 0) runs.push([0, e.tail]);
  return runs;
}

export interface ScanResult {
  events: number;
  bytes: number;
  firstTs: number;
  lastTs: number;
  /** Byte offset (relative to the run start) of the first record that does not parse, or -1. */
  badOffset: number;
}

/**
 * Walks the records of `u8.subarray(start, end)` (start 8-aligned): counts them and takes the
 * time range. Stops at the first malformed record, so a damaged run is reported, never trusted.
 */
/** recordBytes() with the fixed-size kinds tested first: the common case in loops over records. */
function sizeOf(word0: number): number {
  return word0 === INSTANT_WORD ? RECORD_HEADER_BYTES : word0 === VALUE_WORD ? VALUE_RECORD_BYTES : recordBytes(word0);
}

export function scanRecords(u32: Uint32Array, f64: Float64Array, start: number, end: number, into?: ScanResult): ScanResult {
  const r = into ?? { events: 0, bytes: 0, firstTs: NaN, lastTs: NaN, badOffset: -1 };
  // Locals, not the result object, in the loop: the drain runs this over every record it writes.
  let p = start;
  let events = 0;
  let bytes = 0;
  let last = -1;
  while (p < end) {
    if (end - p < RECORD_HEADER_BYTES) {
      r.badOffset = p - start;
      break;
    }
    const size = sizeOf(u32[p >> 2]);
    if (size < 0 || p + size > end) {
      r.badOffset = p - start;
      break;
    }
    last = p;
    events++;
    bytes += size;
    p += size;
  }
  if (events > 0) {
    if (r.events === 0) r.firstTs = f64[(start >> 3) + 1];
    r.lastTs = f64[(last >> 3) + 1];
    r.events += events;
    r.bytes += bytes;
  }
  return r;
}

/**
 * Cursor state of a ring written circularly (drop-oldest while the pool is exhausted). Offsets
 * are absolute byte offsets into the shared buffer; `base` is the ring's first byte. The cursors
 * are also published, relative to `base`, at `i32[publishIdx]` (head, tail, wrapEnd: three
 * consecutive words) so that the drain can salvage the ring if the thread dies.
 */
export interface CircularCursor {
  base: number;
  size: number;
  head: number;
  /** Next write offset (the committed end). */
  tail: number;
  /** -1 while linear, else the end of the older run. */
  wrapEnd: number;
}

/** Called for each record evicted to make room: its total bytes, timestamp and event id. */
export type EvictFn = (bytes: number, ts: number, id: number) => void;

/** Order of the published cursor words (see layout Slot.ACTIVE_TAIL, ACTIVE_HEAD, ACTIVE_WRAP_END). */
export const PUBLISHED_TAIL = 0;
export const PUBLISHED_HEAD = 1;
export const PUBLISHED_WRAP_END = 2;

/**
 * drop-oldest's steady state, small enough for V8 to inline into the writer's slow path: a
 * wrapped ring where evicting the one oldest record makes room for the new one (events of one
 * size). Does exactly makeRoomEvictingOldest's step for that record and returns `c.tail`, or -1
 * (nothing changed) when the general case applies.
 */
export function evictOneForOne(
  c: CircularCursor,
  need: number,
  u32: Uint32Array,
  f64: Float64Array,
  i32: Int32Array,
  publishIdx: number,
  evict: EvictFn,
): number {
  const h = c.head;
  if (c.wrapEnd < 0 || c.tail + need <= h) return -1;
  const size = sizeOf(u32[h >> 2]);
  if (c.tail + need > h + size || h + size >= c.wrapEnd) return -1; // size < 0 lands here too
  evict(size, f64[(h >> 3) + 1], u32[(h >> 2) + 1]);
  c.head = h + size;
  i32[publishIdx + PUBLISHED_HEAD] = c.head - c.base;
  return c.tail;
}

/**
 * Makes room for a record of `need` bytes (need <= size) at `c.tail` by evicting the oldest whole
 * records, and returns the offset to write at (always `c.tail` on return). The records left in
 * the ring stay parseable: a run never ends inside a record.
 *
 * Each cursor move is published right after the eviction it accounts for, with no call or loop
 * edge in between (the only places V8 can stop a terminated thread), so a thread killed here
 * leaves a published extent whose records and loss counts never overlap.
 */
export function makeRoomEvictingOldest(
  c: CircularCursor,
  need: number,
  u32: Uint32Array,
  f64: Float64Array,
  i32: Int32Array,
  publishIdx: number,
  evict: EvictFn,
): number {
  const end = c.base + c.size;
  for (;;) {
    if (c.wrapEnd < 0) {
      if (c.tail + need <= end) return c.tail;
      if (c.head === c.tail) {
        // Empty: start again at the beginning, where any record up to the ring size fits.
        c.head = c.tail = c.base;
        i32[publishIdx + PUBLISHED_TAIL] = 0;
        i32[publishIdx + PUBLISHED_HEAD] = 0;
        continue;
      }
      // The newer run restarts at the ring's start; the older one ends where the tail was.
      c.wrapEnd = c.tail;
      c.tail = c.base;
      i32[publishIdx + PUBLISHED_WRAP_END] = c.wrapEnd - c.base;
      i32[publishIdx + PUBLISHED_TAIL] = 0;
    }
    if (c.tail + need <= c.head) return c.tail;
    const size = recordBytes(u32[c.head >> 2]);
    const ts = f64[(c.head >> 3) + 1];
    evict(size, ts, u32[(c.head >> 2) + 1]);
    c.head += size;
    if (c.head >= c.wrapEnd) {
      // Older run fully evicted: the ring is linear again over [base, tail).
      c.head = c.base;
      c.wrapEnd = -1;
      i32[publishIdx + PUBLISHED_WRAP_END] = -1;
    }
    i32[publishIdx + PUBLISHED_HEAD] = c.head - c.base;
  }
}
