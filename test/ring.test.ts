/**
 * Ring record framing, extents, scanning, and drop-oldest eviction (makeRoomEvictingOldest).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  BEGIN_WORD,
  END_WORD,
  INSTANT_WORD,
  MAX_PAYLOAD_BYTES,
  PUBLISHED_HEAD,
  PUBLISHED_TAIL,
  PUBLISHED_WRAP_END,
  RECORD_HEADER_BYTES,
  RecordKind,
  VALUE_RECORD_BYTES,
  VALUE_WORD,
  align8,
  bytesRecordSize,
  extentRuns,
  evictOneForOne,
  makeRoomEvictingOldest,
  recordBytes,
  scanRecords,
  type CircularCursor,
  type RingExtent,
} from '../src/shm/ring.js';
import { putRecord, type Rec } from './helpers/unit-records.js';

describe('recordBytes: the size a record header word announces', () => {
  it('fixed-size kinds are 16 bytes (24 for VALUE) and only with a zero length field', () => {
    assert.equal(recordBytes(INSTANT_WORD), RECORD_HEADER_BYTES);
    assert.equal(recordBytes(BEGIN_WORD), RECORD_HEADER_BYTES);
    assert.equal(recordBytes(END_WORD), RECORD_HEADER_BYTES);
    assert.equal(recordBytes(VALUE_WORD), VALUE_RECORD_BYTES);
    for (const w of [INSTANT_WORD, BEGIN_WORD, END_WORD, VALUE_WORD]) {
      assert.equal(recordBytes(w | 1), -1, 'a fixed-size kind with a length is not a record');
      assert.equal(recordBytes(w | 8), -1);
    }
  });

  it('BYTES records are the header plus the payload padded to 8', () => {
    const w = RecordKind.BYTES << 24;
    assert.equal(recordBytes(w | 0), 16);
    assert.equal(recordBytes(w | 1), 24);
    assert.equal(recordBytes(w | 8), 24);
    assert.equal(recordBytes(w | 9), 32);
    assert.equal(recordBytes((w | MAX_PAYLOAD_BYTES) >>> 0), 16 + align8(MAX_PAYLOAD_BYTES));
    for (const len of [0, 1, 7, 8, 9, 100, 4095]) assert.equal(bytesRecordSize(len), recordBytes(w | len));
  });

  it('zeroed memory and unknown kinds are not records', () => {
    assert.equal(recordBytes(0), -1);
    assert.equal(recordBytes(6 << 24), -1);
    assert.equal(recordBytes((0xff << 24) >>> 0), -1);
    assert.equal(recordBytes(0x00000010), -1, 'kind 0 with a length');
  });

  it('align8 rounds up to a multiple of 8', () => {
    assert.deepEqual([0, 1, 7, 8, 9, 15, 16].map(align8), [0, 8, 8, 8, 16, 16, 16]);
  });
});

describe('extentRuns: the runs of a ring, oldest first', () => {
  it('linear: one run [head, tail), none when empty', () => {
    assert.deepEqual(extentRuns({ head: 0, tail: 64, wrapEnd: -1 }), [[0, 64]]);
    assert.deepEqual(extentRuns({ head: 16, tail: 64, wrapEnd: -1 }), [[16, 64]]);
    assert.deepEqual(extentRuns({ head: 0, tail: 0, wrapEnd: -1 }), []);
    assert.deepEqual(extentRuns({ head: 32, tail: 32, wrapEnd: -1 }), []);
  });

  it('wrapped: older run [head, wrapEnd) then newer run [0, tail), empty runs left out', () => {
    assert.deepEqual(extentRuns({ head: 48, tail: 32, wrapEnd: 100 }), [
      [48, 100],
      [0, 32],
    ]);
    assert.deepEqual(extentRuns({ head: 100, tail: 32, wrapEnd: 100 }), [[0, 32]]);
    assert.deepEqual(extentRuns({ head: 48, tail: 0, wrapEnd: 100 }), [[48, 100]]);
    assert.deepEqual(extentRuns({ head: 48, tail: 0, wrapEnd: 48 }), []);
  });
});

/** A scratch buffer with u8/u32/f64/i32 views, like the shared buffer. */
function scratch(bytes: number) {
  const buf = new SharedArrayBuffer(bytes);
  return { u8: new Uint8Array(buf), u32: new Uint32Array(buf), f64: new Float64Array(buf), i32: new Int32Array(buf) };
}

describe('scanRecords: counting and time range of a run', () => {
  const recs: Rec[] = [
    { kind: 'instant', id: 1, ts: 10 },
    { kind: 'value', id: 2, ts: 20, value: 1.5 },
    { kind: 'bytes', id: 3, ts: 30, payload: new Uint8Array([1, 2, 3]) },
    { kind: 'begin', id: 4, ts: 40 },
    { kind: 'end', id: 4, ts: 50 },
  ];

  it('counts every whole record, their bytes, and first/last timestamps', () => {
    const s = scratch(512);
    let p = 64;
    for (const r of recs) p = putRecord(s.u8, p, r);
    const r = scanRecords(s.u32, s.f64, 64, p);
    assert.deepEqual(r, { events: 5, bytes: 16 + 24 + 24 + 16 + 16, firstTs: 10, lastTs: 50, badOffset: -1 });
  });

  it('an empty run has no events and NaN times', () => {
    const s = scratch(64);
    const r = scanRecords(s.u32, s.f64, 16, 16);
    assert.equal(r.events, 0);
    assert.equal(r.bytes, 0);
    assert.ok(Number.isNaN(r.firstTs) && Number.isNaN(r.lastTs));
    assert.equal(r.badOffset, -1);
  });

  it('accumulates across runs when given the same result object (firstTs of the first run kept)', () => {
    const s = scratch(512);
    let p = 0;
    for (const r of recs.slice(0, 2)) p = putRecord(s.u8, p, r);
    let q = 256;
    for (const r of recs.slice(2)) q = putRecord(s.u8, q, r);
    const acc = scanRecords(s.u32, s.f64, 0, p);
    const same = scanRecords(s.u32, s.f64, 256, q, acc);
    assert.equal(same, acc);
    assert.equal(acc.events, 5);
    assert.equal(acc.firstTs, 10);
    assert.equal(acc.lastTs, 50);
    assert.equal(acc.bytes, 96);
  });

  it('stops at zeroed memory and reports where (relative to the run start)', () => {
    const s = scratch(512);
    let p = 128;
    for (const r of recs.slice(0, 2)) p = putRecord(s.u8, p, r);
    const r = scanRecords(s.u32, s.f64, 128, p + 32); // 32 zero bytes after the records
    assert.equal(r.events, 2);
    assert.equal(r.badOffset, 40);
    assert.equal(r.lastTs, 20);
  });

  it('stops at a record that runs past the end of the run', () => {
    const s = scratch(512);
    let p = 0;
    p = putRecord(s.u8, p, recs[0]);
    p = putRecord(s.u8, p, recs[2]); // 24 bytes
    const r = scanRecords(s.u32, s.f64, 0, p - 8);
    assert.equal(r.events, 1);
    assert.equal(r.badOffset, 16);
  });

  it('stops at a tail shorter than a record header', () => {
    const s = scratch(512);
    const p = putRecord(s.u8, 0, recs[0]);
    s.u32[p >> 2] = INSTANT_WORD; // looks like a record, but only 8 bytes are left in the run
    const r = scanRecords(s.u32, s.f64, 0, p + 8);
    assert.equal(r.events, 1);
    assert.equal(r.badOffset, 16);
  });
});

// ------------------------------------------------------------------ drop-oldest eviction

const BASE = 64; // the ring's first byte: not 0, so base-relative publishing is exercised
const PUB = 2; // Int32 index of the published (tail, head, wrapEnd) words

interface Model {
  s: ReturnType<typeof scratch>;
  c: CircularCursor;
  sizes: number[]; // size of record seq i
  evicted: Array<{ bytes: number; ts: number }>;
  written: number;
  /** Writes whose room the inline one-for-one step made. */
  oneForOne: number;
}

function newModel(size: number): Model {
  const s = scratch(BASE + size + 64);
  s.i32[PUB + PUBLISHED_TAIL] = 0;
  s.i32[PUB + PUBLISHED_HEAD] = 0;
  s.i32[PUB + PUBLISHED_WRAP_END] = -1;
  return { s, c: { base: BASE, size, head: BASE, tail: BASE, wrapEnd: -1 }, sizes: [], evicted: [], written: 0, oneForOne: 0 };
}

/** A record of exactly `size` bytes (16, 24 or a BYTES record) whose id and ts are its sequence. */
function recordOfSize(seq: number, size: number): Rec {
  if (size === 16) return { kind: 'instant', id: seq, ts: seq };
  if (size === 24 && seq % 2 === 0) return { kind: 'value', id: seq, ts: seq, value: -seq };
  // a payload length (varying with seq) whose padding makes the record exactly `size` bytes
  const payloadLen = Math.max(0, size - 16 - (seq % 8));
  return { kind: 'bytes', id: seq, ts: seq, payload: new Uint8Array(payloadLen).fill(seq & 255) };
}

/** One write as the writer does it: make room, write at the returned offset, publish the tail.
 * With `oneForOne`, the writer's composition: its inline steady-state step first. */
function write(m: Model, size: number, oneForOne = false): number {
  const seq = m.written;
  const rec = recordOfSize(seq, size);
  const evict = (bytes: number, ts: number) => void m.evicted.push({ bytes, ts });
  let at = oneForOne ? evictOneForOne(m.c, size, m.s.u32, m.s.f64, m.s.i32, PUB, evict) : -1;
  if (at >= 0) m.oneForOne++;
  else at = makeRoomEvictingOldest(m.c, size, m.s.u32, m.s.f64, m.s.i32, PUB, evict);
  assert.equal(at, m.c.tail, 'writes go at the tail');
  const end = putRecord(m.s.u8, at, rec);
  assert.equal(end - at, size);
  m.c.tail = end;
  m.s.i32[PUB + PUBLISHED_TAIL] = end - BASE;
  m.sizes.push(size);
  m.written++;
  return at;
}

function published(m: Model): RingExtent {
  return { tail: m.s.i32[PUB + PUBLISHED_TAIL], head: m.s.i32[PUB + PUBLISHED_HEAD], wrapEnd: m.s.i32[PUB + PUBLISHED_WRAP_END] };
}

/** The sequence numbers of the records the published extent holds, oldest first (asserting every
 * run parses as whole records). */
function presentSeqs(m: Model): number[] {
  const ext = published(m);
  const seqs: number[] = [];
  for (const [from, to] of extentRuns(ext)) {
    assert.ok(from >= 0 && to <= m.c.size && from < to, `run [${from}, ${to}) inside the ring`);
    const r = scanRecords(m.s.u32, m.s.f64, BASE + from, BASE + to);
    assert.equal(r.badOffset, -1, `run [${from}, ${to}) parses as whole records`);
    for (let p = BASE + from; p < BASE + to; p += recordBytes(m.s.u32[p >> 2])) seqs.push(m.s.u32[(p >> 2) + 1]);
  }
  return seqs;
}

function checkInvariants(m: Model): void {
  const ext = published(m);
  // The published extent is the writer's cursor, relative to the ring.
  assert.deepEqual(ext, { tail: m.c.tail - BASE, head: m.c.head - BASE, wrapEnd: m.c.wrapEnd < 0 ? -1 : m.c.wrapEnd - BASE });
  const present = presentSeqs(m);
  const newest = m.written - 1;
  assert.equal(present[present.length - 1], newest, 'the newest record is always present');
  // Present records are the newest ones, consecutive and in order; evicted ones the oldest, in order.
  const first = present[0];
  assert.deepEqual(
    present,
    Array.from({ length: present.length }, (_, i) => first + i),
  );
  assert.equal(m.evicted.length + present.length, m.written, 'evicted + present == written');
  m.evicted.forEach((e, i) => {
    assert.equal(e.ts, i, 'eviction goes oldest first and reports the record timestamp');
    assert.equal(e.bytes, m.sizes[i], 'eviction reports the record size exactly');
  });
  let presentBytes = 0;
  for (const seq of present) presentBytes += m.sizes[seq];
  assert.ok(presentBytes <= m.c.size);
}

describe('makeRoomEvictingOldest', () => {
  it('returns the tail unchanged while the record fits linearly (nothing evicted)', () => {
    const m = newModel(256);
    for (let i = 0; i < 16; i++) assert.equal(write(m, 16), BASE + i * 16);
    assert.equal(m.evicted.length, 0);
    assert.deepEqual(published(m), { head: 0, tail: 256, wrapEnd: -1 });
    checkInvariants(m);
  });

  it('wraps: the newer run restarts at 0, evicting just enough of the oldest records', () => {
    const m = newModel(256);
    for (let i = 0; i < 10; i++) write(m, 24); // 240 bytes: 16 left
    assert.equal(write(m, 24), BASE, 'the record that does not fit goes to the ring start');
    assert.deepEqual(published(m), { head: 24, tail: 24, wrapEnd: 240 });
    assert.deepEqual(m.evicted, [{ bytes: 24, ts: 0 }]);
    checkInvariants(m);
    write(m, 48); // needs [24, 72): evicts records 1 and 2
    assert.deepEqual(published(m), { head: 72, tail: 72, wrapEnd: 240 });
    assert.deepEqual(
      m.evicted.map((e) => e.ts),
      [0, 1, 2],
    );
    checkInvariants(m);
  });

  it('goes linear again once the older run is fully evicted', () => {
    const m = newModel(128);
    for (let i = 0; i < 4; i++) write(m, 32); // full: [0, 128)
    write(m, 112); // wraps; must evict all four older records; ring linear over [0, 112)
    assert.deepEqual(published(m), { head: 0, tail: 112, wrapEnd: -1 });
    assert.equal(m.evicted.length, 4);
    checkInvariants(m);
    write(m, 16); // fits linearly at 112
    assert.deepEqual(published(m), { head: 0, tail: 128, wrapEnd: -1 });
    checkInvariants(m);
  });

  it('a record as large as the ring evicts everything else', () => {
    const m = newModel(256);
    write(m, 16);
    write(m, 24);
    write(m, 256);
    assert.deepEqual(presentSeqs(m), [2]);
    assert.deepEqual(published(m), { head: 0, tail: 256, wrapEnd: -1 });
    write(m, 256);
    assert.deepEqual(presentSeqs(m), [3]);
    checkInvariants(m);
  });

  it('an empty ring whose tail is near the end restarts at the ring start', () => {
    const m = newModel(256);
    m.c.head = m.c.tail = BASE + 200;
    m.s.i32[PUB + PUBLISHED_HEAD] = m.s.i32[PUB + PUBLISHED_TAIL] = 200;
    assert.equal(write(m, 64), BASE);
    assert.equal(m.evicted.length, 0, 'nothing to evict in an empty ring');
    assert.deepEqual(published(m), { head: 0, tail: 64, wrapEnd: -1 });
  });

  it('property: any sequence of record sizes keeps the ring parseable and the accounting exact', () => {
    const ringSize = 256;
    const sizeArb = fc.oneof(
      fc.constant(16),
      fc.constant(24),
      fc.integer({ min: 2, max: ringSize / 8 }).map((n) => n * 8),
    );
    fc.assert(
      fc.property(fc.array(sizeArb, { minLength: 1, maxLength: 200, size: 'max' }), (sizes) => {
        const m = newModel(ringSize);
        for (const size of sizes) {
          write(m, size);
          checkInvariants(m);
        }
        const evictedBytes = m.evicted.reduce((a, e) => a + e.bytes, 0);
        const written = m.sizes.reduce((a, b) => a + b, 0);
        const presentBytes = presentSeqs(m).reduce((a, s) => a + m.sizes[s], 0);
        assert.equal(evictedBytes + presentBytes, written, 'every byte written is either present or accounted as evicted');
      }),
      { numRuns: 300 },
    );
  });

  it('property: eviction is never gratuitous: nothing is evicted while the record still fits after the tail', () => {
    const ringSize = 512;
    fc.assert(
      fc.property(
        fc.array(
          fc.integer({ min: 2, max: 40 }).map((n) => n * 8),
          { minLength: 1, maxLength: 120, size: 'max' },
        ),
        (sizes) => {
          const m = newModel(ringSize);
          for (const size of sizes) {
            const before = m.evicted.length;
            const ext = published(m);
            const roomAfterTail = ext.wrapEnd < 0 ? ringSize - ext.tail : ext.head - ext.tail;
            write(m, size);
            if (size <= roomAfterTail) assert.equal(m.evicted.length, before, 'no eviction when the record fits');
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("evictOneForOne: the writer's inline steady-state step", () => {
  it('property: with it first, every write leaves exactly the state makeRoomEvictingOldest alone leaves', () => {
    const ringSize = 256;
    // Runs of one size (the steady state it is for), with changes of size in between.
    const runArb = fc.tuple(
      fc.oneof(
        fc.constant(16),
        fc.constant(24),
        fc.integer({ min: 2, max: 12 }).map((n) => n * 8),
      ),
      fc.integer({ min: 1, max: 40 }),
    );
    let taken = 0;
    fc.assert(
      fc.property(fc.array(runArb, { minLength: 1, maxLength: 12 }), (runs) => {
        const plain = newModel(ringSize);
        const fast = newModel(ringSize);
        for (const [size, n] of runs) {
          for (let i = 0; i < n; i++) {
            assert.equal(write(fast, size, true), write(plain, size));
            assert.deepEqual(fast.c, plain.c, 'same cursor');
            assert.deepEqual(published(fast), published(plain), 'same published extent');
            assert.deepEqual(fast.evicted, plain.evicted, 'same evictions, same order and counts');
            checkInvariants(fast);
          }
        }
        taken += fast.oneForOne;
      }),
      { numRuns: 200 },
    );
    assert.ok(taken > 1000, `the inline step was taken (${taken} times)`);
  });

  it('declines (returns -1, changes nothing) when one eviction is not enough or the ring is linear', () => {
    const m = newModel(256);
    for (let i = 0; i < 16; i++) write(m, 16); // full and linear
    const before = structuredClone(m.c);
    assert.equal(
      evictOneForOne(m.c, 16, m.s.u32, m.s.f64, m.s.i32, PUB, () => assert.fail('no eviction')),
      -1,
      'linear',
    );
    write(m, 16); // wraps
    assert.notDeepEqual(m.c, before);
    const wrapped = structuredClone(m.c);
    assert.equal(
      evictOneForOne(m.c, 32, m.s.u32, m.s.f64, m.s.i32, PUB, () => assert.fail('no eviction')),
      -1,
      'needs two',
    );
    assert.deepEqual(m.c, wrapped);
  });
});

// recordOfSize must really produce records of the requested size: checked once over the range.
describe('test helper sanity', () => {
  it('recordOfSize makes records of the exact size', () => {
    const s = scratch(1024);
    for (let seq = 0; seq < 20; seq++) {
      for (let size = 16; size <= 512; size += 8) {
        const end = putRecord(s.u8, 0, recordOfSize(seq, size));
        assert.equal(end, size);
        assert.equal(recordBytes(s.u32[0]), size);
      }
    }
  });
});
