/**
 * The trace file format (format.ts) and its reader (reader.ts): a file written record by record
 * with the format functions reads back exactly; every kind of damage is reported at the right
 * offset with what precedes it still readable; random mutations never make the reader misbehave.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  CHUNK_FIXED_BYTES,
  EndReason,
  FILE_MAGIC,
  FORMAT_VERSION,
  FRAME_BYTES,
  FileSink,
  LOSS_BLOCK_BYTES,
  MAX_BODY_BYTES,
  PREAMBLE_BYTES,
  RecordType,
  chunkIdentity,
  chunkRecord,
  footerRecord,
  headerRecord,
  nameRecord,
  preamble,
  stateRecord,
  threadEndRecord,
  threadStartRecord,
  type TraceSink,
} from '../src/file/format.js';
import { newLossBlock, type LossBlock } from '../src/shm/loss.js';
import { LOSS_BLOCK_WORDS, Loss, PRIORITY_COUNT, Reason, REASON_COUNT, lossAt } from '../src/shm/layout.js';
import { TraceFormatError, openTrace, type TraceEvent, type TraceReader } from '../src/file/reader.js';
import { collectInspection, formatInspection } from '../src/cli/inspect.js';
import { BpState } from '../src/shm/backpressure.js';
import { concat, encodeRecords, rawRecord, tempDir, type Rec } from './helpers/unit-records.js';

// ------------------------------------------------------------------ building files

interface Placed {
  label: string;
  offset: number;
  end: number;
  /** Events (as the reader should report them) that this record carries. */
  events: Expected[];
}

interface Expected {
  thread: number;
  ts: number;
  id: number;
  name: string | null;
  kind: string;
  value: number | null;
  payload: number[] | null;
}

const norm = (e: TraceEvent): Expected => ({
  thread: e.thread,
  ts: e.ts,
  id: e.id,
  name: e.name ?? null,
  kind: e.kind,
  value: e.value ?? null,
  payload: e.payload ? [...e.payload] : null,
});

const expect = (thread: number, names: Map<number, string>, recs: Rec[]): Expected[] =>
  recs.map((r) => ({
    thread,
    ts: r.ts,
    id: r.id,
    name: names.get(r.id) ?? null,
    kind: r.kind,
    value: r.kind === 'value' ? r.value! : null,
    payload: r.kind === 'bytes' ? [...(r.payload ?? [])] : null,
  }));

/** A trace file assembled record by record, remembering where each record lands. */
class TraceFile {
  readonly records: Placed[] = [];
  private readonly parts: Uint8Array[][] = [[preamble()]];
  private offset = PREAMBLE_BYTES;

  add(label: string, rec: readonly Uint8Array[], events: Expected[] = []): this {
    let size = 0;
    for (const p of rec) size += p.length;
    this.records.push({ label, offset: this.offset, end: this.offset + size, events });
    this.parts.push([...rec]);
    this.offset += size;
    return this;
  }

  at(label: string): Placed {
    const p = this.records.find((r) => r.label === label);
    if (!p) throw new Error(`no record ${label}`);
    return p;
  }

  get size(): number {
    return this.offset;
  }

  /** Written with a FileSink, one write() per record as the drain does. */
  write(path: string): string {
    const sink = new FileSink(path);
    for (const p of this.parts) sink.write(p);
    sink.close();
    return path;
  }

  /** Events of the records that end at or before `end`, in file order. */
  eventsBefore(end: number): Expected[] {
    return this.records.filter((r) => r.end <= end).flatMap((r) => r.events);
  }
}

type LossEntry = [
  events: number,
  bytes: number,
  firstTs: number,
  lastTs: number,
  byPriority?: [normal: number, critical: number, debug: number],
];
const loss = (entries: Partial<Record<number, LossEntry>>): LossBlock => {
  const l = newLossBlock();
  for (const [r, v] of Object.entries(entries)) {
    const base = lossAt(0, Number(r));
    v![4]?.forEach((n, p) => (l[base + Loss.BY_PRIORITY + p] = n));
    l[base + Loss.EVENTS] = v![0];
    l[base + Loss.BYTES] = v![1];
    l[base + Loss.FIRST_TS] = v![2];
    l[base + Loss.LAST_TS] = v![3];
  }
  return l;
};

/** Chunk identity for hand-built files: most tests name their threads in THREAD_START records. */
const ID = chunkIdentity(0, 0, 0, 'from-chunk');
const SESSION_START = 1_700_000_000_123.5;
const CONFIG = { policy: 'drop-oldest', ringSize: 4096, label: 'ünit' };
const NAMES = new Map([
  [1, 'req'],
  [2, 'val'],
  [3, 'blob'],
]);
/** Priority codes of the names (format 4): 'val' critical, 'blob' debug, 'req' normal. */
const NAME_PRIORITY = new Map([
  [2, 1],
  [3, 2],
]);

const MAIN_A: Rec[] = [
  { kind: 'instant', id: 1, ts: 100 },
  { kind: 'value', id: 2, ts: 110, value: 3.25 },
  { kind: 'bytes', id: 3, ts: 120, payload: new Uint8Array([1, 2, 3, 4, 5]) },
  { kind: 'begin', id: 1, ts: 130 },
  { kind: 'end', id: 1, ts: 140 },
];
const WORKER_A: Rec[] = [
  { kind: 'instant', id: 9, ts: 200 }, // id without a name record
  { kind: 'bytes', id: 3, ts: 210, payload: new Uint8Array(0) },
  { kind: 'value', id: 2, ts: 215, value: -0.5 },
];
const MAIN_B: Rec[] = [{ kind: 'bytes', id: 3, ts: 300, payload: new Uint8Array(17).map((_, i) => 255 - i) }];

/** A complete two-thread trace exercising every record type. Thread 0 = registration 5 ("main"),
 * thread 1 = registration 6 ("worker"). */
function goodTrace(): TraceFile {
  const t = new TraceFile();
  t.add('header', headerRecord(SESSION_START, CONFIG));
  for (const [id, name] of NAMES) t.add(`name${id}`, nameRecord(id, name, NAME_PRIORITY.get(id)));
  t.add('start5', threadStartRecord({ thread: 5, slot: 0, nodeThreadId: 0, name: 'main', ts: 10, policy: 0 }));
  t.add('start6', threadStartRecord({ thread: 6, slot: 1, nodeThreadId: 3, name: 'worker', ts: 20, policy: 1 }));
  const a = encodeRecords(MAIN_A);
  // Payload in two runs, as a wrapped ring is written.
  t.add(
    'chunk5.0',
    chunkRecord(
      { thread: 5, seq: 0, events: 5, firstTs: 100, lastTs: 140, attempted: 7, dropped: 2 },
      ID,
      loss({ [Reason.POOL_EXHAUSTED]: [2, 48, 90, 95, [1, 0, 1]] }),
      [a.subarray(0, 40), a.subarray(40)],
    ),
    expect(0, NAMES, MAIN_A),
  );
  t.add('state5.pd', stateRecord(5, BpState.PRESSURE, BpState.DROPPING, 160));
  t.add(
    'chunk6.0',
    chunkRecord({ thread: 6, seq: 0, events: 3, firstTs: 200, lastTs: 215 }, ID, newLossBlock(), [encodeRecords(WORKER_A)]),
    expect(1, NAMES, WORKER_A),
  );
  t.add('state6.np', stateRecord(6, BpState.NORMAL, BpState.PRESSURE, 205));
  t.add('state5.np', stateRecord(5, BpState.NORMAL, BpState.PRESSURE, 150));
  t.add(
    'chunk5.1',
    chunkRecord(
      { thread: 5, seq: 1, events: 1, firstTs: 300, lastTs: 300, attempted: 9, dropped: 3 },
      ID,
      loss({ [Reason.RECORD_TOO_LARGE]: [1, 5000, 250, 250, [0, 1, 0]] }),
      [encodeRecords(MAIN_B)],
    ),
    expect(0, NAMES, MAIN_B),
  );
  t.add('unknown', [rawRecord(99, new Uint8Array(24).fill(7))]); // a later minor revision's record
  t.add(
    'chunk6.1',
    chunkRecord({ thread: 6, seq: 1, events: 0, firstTs: NaN, lastTs: NaN }, ID, loss({ [Reason.THREAD_EXIT]: [3, 72, 220, 230] }), []),
  );
  // main: 6 events + 2 + 1 dropped = 9 attempted: balanced.
  t.add('end5', threadEndRecord({ thread: 5, endReason: EndReason.CLOSED, ts: 400, attempted: 9, eventsWritten: 6 }, newLossBlock()));
  // worker: 3 events + 3 + 1 (unflushed, reported in its end record) = 7, but says 8: unbalanced.
  t.add(
    'end6',
    threadEndRecord(
      { thread: 6, endReason: EndReason.EXITED, ts: 410, attempted: 8, eventsWritten: 3 },
      loss({ [Reason.UNFLUSHED]: [1, 16, 240, 240] }),
    ),
  );
  t.add('footer', footerRecord({ threads: 2, events: 9, dropped: 7, droppedAfterClose: 4, ts: 500 }));
  return t;
}

const dir = tempDir('unit-reader');
let fileNo = 0;
const fresh = (label: string) => join(dir, `${label}-${fileNo++}.rtrace`);
const allEvents = (r: TraceReader): Expected[] => [...r.events()].map(norm);

/** A file whose bytes are the preamble plus the given records. */
function fileOf(label: string, ...records: ReadonlyArray<Uint8Array | readonly Uint8Array[]>): string {
  const path = fresh(label);
  writeFileSync(path, concat([preamble(), ...records]));
  return path;
}
const header = () => headerRecord(SESSION_START, CONFIG);
const start = (thread: number) => threadStartRecord({ thread, slot: 0, nodeThreadId: 1, name: `t${thread}`, ts: 1, policy: 0 });

/** The first damage is at `offset`; reading resumed at `resumedAt` (undefined: nothing intact after it). */
function assertDamage(r: TraceReader, offset: number, reason: RegExp, complete = false, resumedAt?: number): void {
  assert.ok(r.damage, 'damage reported');
  assert.equal(r.damage, r.damaged[0]);
  assert.equal(r.damage.offset, offset, `damage at ${offset} (${r.damage.reason})`);
  assert.match(r.damage.reason, reason);
  assert.equal(r.damage.resumedAt, resumedAt, 'where reading resumed');
  assert.equal(r.damage.skippedBytes, (resumedAt ?? statSync(r.path).size) - offset);
  assert.equal(r.complete, complete);
}

// ------------------------------------------------------------------ format

describe('format: record encoding', () => {
  it('the preamble is the magic and the version', () => {
    const p = preamble();
    assert.equal(p.length, PREAMBLE_BYTES);
    assert.equal(p.toString('latin1', 0, 8), FILE_MAGIC);
    assert.equal(p.readUInt32LE(8), FORMAT_VERSION);
    assert.equal(p.readUInt32LE(12), 0);
  });

  it('frames carry type, an 8-aligned body length, and a CRC over them and the body', () => {
    const rec = concat([nameRecord(7, 'abc')]);
    assert.equal(rec.readUInt32LE(0), RecordType.NAME);
    const len = rec.readUInt32LE(4);
    assert.equal(len, 24); // id, length, priority, 0, "abc" padded to 8
    assert.equal(rec.length, FRAME_BYTES + len);
    assert.equal(rec.readUInt32LE(12), 0);
    assert.deepEqual(rec, rawRecord(RecordType.NAME, rec.subarray(FRAME_BYTES)), 'same CRC as an independent framing');
  });

  it('chunk payloads must keep the body 8-aligned', () => {
    assert.throws(
      () => chunkRecord({ thread: 1, seq: 0, events: 0, firstTs: 0, lastTs: 0 }, ID, newLossBlock(), [new Uint8Array(5)]),
      /not 8-aligned/,
    );
  });

  it('newLossBlock has zero counts and NaN time ranges for every reason', () => {
    const l = newLossBlock();
    assert.equal(l.length, LOSS_BLOCK_WORDS);
    for (let r = 0; r < REASON_COUNT; r++) {
      const at = lossAt(0, r);
      assert.equal(l[at + Loss.EVENTS], 0);
      assert.equal(l[at + Loss.BYTES], 0);
      assert.ok(Number.isNaN(l[at + Loss.FIRST_TS]) && Number.isNaN(l[at + Loss.LAST_TS]));
      for (let p = 0; p < PRIORITY_COUNT; p++) assert.equal(l[at + Loss.BY_PRIORITY + p], 0);
    }
    assert.equal(CHUNK_FIXED_BYTES, 64 + LOSS_BLOCK_BYTES);
  });
});

describe('FileSink', () => {
  it('appends every buffer in order, across more than 1024 buffers in one call, skipping empty ones', () => {
    const path = fresh('sink');
    const sink = new FileSink(path);
    const bufs: Uint8Array[] = [];
    for (let i = 0; i < 3000; i++) {
      bufs.push(new Uint8Array([i & 255, (i >> 8) & 255, 0xaa]));
      if (i % 3 === 0) bufs.push(new Uint8Array(0));
    }
    sink.write([new Uint8Array(0)]);
    sink.write(bufs);
    sink.write([Buffer.from('tail'), new Uint8Array(0)]);
    sink.close();
    const got = readFileSync(path);
    assert.deepEqual(got, Buffer.concat([...bufs, Buffer.from('tail')]));
    assert.equal(got.length, 3000 * 3 + 4);
  });

  it('writes subarray views (of shared memory) exactly, not their whole buffers', () => {
    const path = fresh('sink-views');
    const shared = new Uint8Array(new SharedArrayBuffer(64)).map((_, i) => i);
    const sink = new FileSink(path);
    sink.write([shared.subarray(8, 16), shared.subarray(40, 48)]);
    sink.close();
    assert.deepEqual([...readFileSync(path)], [8, 9, 10, 11, 12, 13, 14, 15, 40, 41, 42, 43, 44, 45, 46, 47]);
  });

  it('a write that fails part-way is cut back off the file: the file still ends on a whole record', () => {
    const path = fresh('sink-fail');
    const sink = new FileSink(path);
    sink.write([preamble()]);
    sink.write(header());
    const good = statSync(path).size;
    // 1100 valid buffers (the first writev batch goes to disk), then one writev rejects.
    const bufs: Uint8Array[] = Array.from({ length: 1100 }, () => new Uint8Array(8).fill(0xee));
    bufs.push({ length: 8 } as unknown as Uint8Array);
    assert.throws(() => sink.write(bufs));
    assert.equal(statSync(path).size, good, 'the partial write was truncated away');
    // The sink carries on at the right offset.
    sink.write(nameRecord(1, 'after'));
    sink.close();
    const r = openTrace(path);
    assert.equal(r.damage, undefined);
    assert.equal(r.names.get(1), 'after');
  });

  it('a failing device reports the write error itself (not the failed truncate)', { skip: !existsDevFull() }, () => {
    const sink = new FileSink('/dev/full');
    assert.throws(
      () => sink.write([new Uint8Array(16)]),
      (e: NodeJS.ErrnoException) => e.code === 'ENOSPC',
    );
    try {
      sink.close();
    } catch {
      // fsync of /dev/full may fail too; not what this test is about
    }
  });

  it('users of the TraceSink interface can be given a failing sink', () => {
    // The seam the drain uses: a sink that throws is just an object with write/close.
    const written: number[] = [];
    const failing: TraceSink = {
      write(b) {
        if (written.length >= 2) throw Object.assign(new Error('no space'), { code: 'ENOSPC' });
        written.push(b.reduce((a, x) => a + x.length, 0));
      },
      close() {},
    };
    failing.write([preamble()]);
    failing.write(header());
    assert.throws(() => failing.write(nameRecord(1, 'x')), /no space/);
    assert.deepEqual(written, [16, concat([header()]).length]);
  });
});

function existsDevFull(): boolean {
  try {
    return statSync('/dev/full').isCharacterDevice();
  } catch {
    return false;
  }
}

// ------------------------------------------------------------------ reader: a good file

describe('reader: a complete trace reads back exactly', () => {
  const t = goodTrace();
  const path = t.write(fresh('good'));
  const r = openTrace(path);

  it('file-level fields', () => {
    assert.equal(r.version, FORMAT_VERSION);
    assert.equal(r.sessionStartEpochMs, SESSION_START);
    assert.deepEqual(r.config, CONFIG);
    assert.equal(r.complete, true);
    assert.equal(r.damage, undefined);
    assert.equal(r.droppedAfterClose, 4);
    assert.deepEqual([...r.names], [...NAMES]);
  });

  it('threads, in start order, with their registration details and event time range', () => {
    assert.deepEqual(r.threads, [
      {
        index: 0,
        registration: 5,
        slot: 0,
        nodeThreadId: 0,
        name: 'main',
        registeredTs: 10,
        policy: 'drop-oldest',
        firstTs: 100,
        lastTs: 300,
        endReason: 'closed',
        attempted: 9,
      },
      {
        index: 1,
        registration: 6,
        slot: 1,
        nodeThreadId: 3,
        name: 'worker',
        registeredTs: 20,
        policy: 'drop-newest',
        firstTs: 200,
        lastTs: 215,
        endReason: 'exited',
        attempted: 8,
      },
    ]);
  });

  it('events: exactly the records written (thread, ts, id, name, kind, value, payload), chunk by chunk', () => {
    const got = allEvents(r);
    assert.deepEqual(got, t.eventsBefore(t.size));
    assert.equal(got.length, 9);
    // Iterating twice gives the same events (the reader re-reads the file).
    assert.deepEqual(allEvents(r), got);
  });

  it('drops: one entry per reason with losses, in file order, naming the reporting record', () => {
    assert.deepEqual(r.drops(), [
      {
        thread: 0,
        reason: 'pool_exhausted',
        events: 2,
        bytes: 48,
        firstTs: 90,
        lastTs: 95,
        offset: t.at('chunk5.0').offset,
        chunkSeq: 0,
        byPriority: { normal: 1, critical: 0, debug: 1 },
      },
      {
        thread: 0,
        reason: 'record_too_large',
        events: 1,
        bytes: 5000,
        firstTs: 250,
        lastTs: 250,
        offset: t.at('chunk5.1').offset,
        chunkSeq: 1,
        byPriority: { normal: 0, critical: 1, debug: 0 },
      },
      // The drain's reasons: nobody looked at those events, their priorities are not known.
      ...(
        [
          ['thread_exit', 3, 72, 220, 230, 'chunk6.1', 1],
          ['unflushed', 1, 16, 240, 240, 'end6', -1],
        ] as const
      ).map(([reason, events, bytes, firstTs, lastTs, rec, chunkSeq]) => ({
        thread: 1,
        reason,
        events,
        bytes,
        firstTs,
        lastTs,
        offset: t.at(rec).offset,
        chunkSeq,
        byPriority: { normal: 0, critical: 0, debug: 0 },
      })),
    ]);
    r.drops().pop();
    assert.equal(r.drops().length, 4, 'drops() returns a copy');
  });

  it('states: per thread, in time order (not file order)', () => {
    assert.deepEqual(r.states(), [
      { thread: 0, ts: 150, from: 'normal', to: 'pressure' },
      { thread: 0, ts: 160, from: 'pressure', to: 'dropping' },
      { thread: 1, ts: 205, from: 'normal', to: 'pressure' },
    ]);
  });

  it('summary: per-thread counts and balance, and totals', () => {
    const s = r.summary();
    assert.equal(s.path, path);
    assert.equal(s.version, FORMAT_VERSION);
    assert.equal(s.complete, true);
    assert.equal(s.damage, undefined);
    assert.equal(s.sessionStartEpochMs, SESSION_START);
    const [m, w] = s.threads;
    assert.deepEqual(m, {
      thread: 0,
      name: 'main',
      slot: 0,
      events: 6,
      payloadBytes: encodeRecords(MAIN_A).length + encodeRecords(MAIN_B).length,
      chunks: 2,
      firstTs: 100,
      lastTs: 300,
      attempted: 9,
      dropped: 3,
      bytesDropped: 5048,
      droppedByReason: { pool_exhausted: 2, record_too_large: 1 },
      stateChanges: 2,
      endReason: 'closed',
      balanced: true,
      // req x3 (instant, begin, end), val, blob x2: with the drops, 4 + 2 + 3 = 9 attempted
      eventsByPriority: { normal: 3, critical: 1, debug: 2 },
      droppedByPriority: { normal: 1, critical: 1, debug: 1 },
      unattributedDrops: 0,
      lastChunk: { attempted: 9, balanced: true }, // running totals carried by the chunks
      unreadable: undefined,
    });
    assert.deepEqual(w, {
      thread: 1,
      name: 'worker',
      slot: 1,
      events: 3,
      payloadBytes: encodeRecords(WORKER_A).length,
      chunks: 2,
      firstTs: 200,
      lastTs: 215,
      attempted: 8,
      dropped: 4,
      bytesDropped: 88,
      droppedByReason: { thread_exit: 3, unflushed: 1 },
      stateChanges: 1,
      endReason: 'exited',
      balanced: false,
      eventsByPriority: { normal: 1, critical: 1, debug: 1 }, // id 9 has no name: normal
      droppedByPriority: { normal: 0, critical: 0, debug: 0 },
      unattributedDrops: 4,
      lastChunk: undefined, // its chunks carry no running totals
      unreadable: undefined,
    });
    assert.deepEqual(s.totals, {
      threads: 2,
      events: 9,
      attempted: 17,
      dropped: 7,
      bytesDropped: 5136,
      droppedByReason: { pool_exhausted: 2, record_too_large: 1, thread_exit: 3, unflushed: 1 },
      droppedByPriority: { normal: 1, critical: 1, debug: 1 },
      droppedAfterClose: 4,
      balanced: false,
    });
  });

  it('a trace without end records or footer: attempted unknown, balance unknown, not complete', () => {
    const u = new TraceFile();
    u.add('header', header());
    u.add('start', start(1));
    u.add(
      'chunk',
      chunkRecord({ thread: 1, seq: 0, events: 1, firstTs: 5, lastTs: 5 }, ID, loss({ [Reason.CLOSED]: [2, 32, 6, 7] }), [
        encodeRecords([{ kind: 'instant', id: 1, ts: 5 }]),
      ]),
    );
    u.add('end-unknown-reason', threadStartRecord({ thread: 2, slot: 1, nodeThreadId: 2, name: 't2', ts: 1, policy: 0 }));
    u.add('end2', threadEndRecord({ thread: 2, endReason: 77, ts: 9, attempted: 0, eventsWritten: 0 }, newLossBlock()));
    const s = openTrace(u.write(fresh('noend'))).summary();
    assert.equal(s.complete, false);
    assert.equal(s.damage, undefined);
    assert.equal(s.threads[0].attempted, undefined);
    assert.equal(s.threads[0].balanced, undefined);
    assert.equal(s.threads[1].endReason, 'unknown(77)');
    assert.equal(s.threads[1].balanced, true, '0 attempted = 0 events + 0 dropped');
    assert.equal(s.totals.attempted, 3, 'events + dropped stand in for the unknown attempted count');
    assert.equal(s.totals.balanced, false, 'not known to balance');
    assert.equal(s.totals.droppedAfterClose, 0);
  });
});

// ------------------------------------------------------------------ reader: damage

describe('reader: files that are not traces at all throw TraceFormatError', () => {
  const throwsAt = (path: string, offset: number, reason: RegExp) =>
    assert.throws(
      () => openTrace(path),
      (e: Error) =>
        e instanceof TraceFormatError &&
        e.name === 'TraceFormatError' &&
        e.offset === offset &&
        reason.test(e.reason) &&
        e.path === path &&
        e.message.includes(`byte offset ${offset}`),
    );

  it('bad magic, and files shorter than the magic', () => {
    const p = fresh('magic');
    writeFileSync(p, concat([Buffer.from('NOTTRACE'), preamble().subarray(8), ...header()]));
    throwsAt(p, 0, /bad magic/);
    const short = fresh('short');
    writeFileSync(short, Buffer.from('RNGT'));
    throwsAt(short, 0, /bad magic/);
    const empty = fresh('empty');
    writeFileSync(empty, Buffer.alloc(0));
    throwsAt(empty, 0, /bad magic/);
  });

  it('a file cut inside the preamble', () => {
    const p = fresh('pre');
    writeFileSync(p, preamble().subarray(0, 12));
    throwsAt(p, 12, /inside the preamble/);
  });

  it('a future format version asks for an upgrade; version 0 is invalid', () => {
    const pre = preamble();
    pre.writeUInt32LE(FORMAT_VERSION + 1, 8);
    const p = fresh('future');
    writeFileSync(p, concat([pre, ...header()]));
    throwsAt(p, 8, new RegExp(`version ${FORMAT_VERSION + 1} is newer .*upgrade`));
    pre.writeUInt32LE(0, 8);
    const z = fresh('zero');
    writeFileSync(z, concat([pre, ...header()]));
    throwsAt(z, 8, /invalid format version 0/);
  });
});

describe('reader: damage is reported at the record where it starts, the prefix stays readable', () => {
  const t = goodTrace();
  const good = readFileSync(t.write(fresh('base')));
  const withBytes = (label: string, bytes: Uint8Array) => {
    const p = fresh(label);
    writeFileSync(p, bytes);
    return openTrace(p);
  };

  it('only a preamble: no header record', () => {
    const r = withBytes('only-pre', preamble());
    assertDamage(r, PREAMBLE_BYTES, /no header/);
    assert.deepEqual(allEvents(r), []);
  });

  it('file cut inside a record frame', () => {
    const c = t.at('chunk6.0');
    const r = withBytes('cut-frame', good.subarray(0, c.offset + 5));
    assertDamage(r, c.offset, /inside a record frame \(5 of 16 bytes\)/);
    assert.deepEqual(allEvents(r), t.eventsBefore(c.offset));
    assert.equal(allEvents(r).length, 5);
  });

  it('file cut inside a record body', () => {
    const c = t.at('chunk5.1');
    const r = withBytes('cut-body', good.subarray(0, c.end - 8));
    assertDamage(r, c.offset, new RegExp(`cut short: record of ${c.end - c.offset} bytes, ${c.end - 8 - c.offset} left`));
    assert.deepEqual(allEvents(r), t.eventsBefore(c.offset));
    assert.equal(r.threads.length, 2);
    assert.equal(r.states().length, 3, 'state records before the damage are kept');
  });

  it('CRC mismatch: a flipped body byte costs that chunk only; the gap and its events are named', () => {
    const c = t.at('chunk6.0');
    const bad = Buffer.from(good);
    bad[c.offset + FRAME_BYTES + CHUNK_FIXED_BYTES + 4] ^= 0x10; // inside an event id
    const r = withBytes('crc', bad);
    assertDamage(r, c.offset, /CRC mismatch/, true, c.end);
    assert.equal(r.damaged.length, 1);
    assert.deepEqual(allEvents(r), [...expect(0, NAMES, MAIN_A), ...expect(0, NAMES, MAIN_B)], 'everything but the damaged chunk');
    // No event of the worker on either side of the gap (chunk 6.1 carries only losses): no times.
    assert.deepEqual(r.gaps, [{ thread: 1, fromSeq: 0, toSeq: 0, offset: t.at('chunk6.1').offset, fromTs: NaN, toTs: NaN }]);
    const w = r.summary().threads[1];
    assert.equal(w.events, 0);
    // attempted 8 = 0 read + 4 dropped (thread_exit 3 + unflushed 1) + what the damage took (the
    // chunk's 3 events; the file's worker is one short on its own, see goodTrace).
    assert.deepEqual(w.unreadable, { chunks: 1, events: 4 });
    assert.equal(w.balanced, false);
    assert.equal(r.summary().threads[0].unreadable, undefined, 'the other thread lost nothing');
  });

  it('body length not a multiple of 8, or larger than any record can be: the next record is found', () => {
    for (const len of [12, MAX_BODY_BYTES + 8, 0xfffffff8]) {
      const c = t.at('state5.pd');
      const bad = Buffer.from(good);
      bad.writeUInt32LE(len, c.offset + 4);
      const r = withBytes('len', bad);
      assertDamage(r, c.offset, new RegExp(`(corrupt record frame \\(body length ${len}\\))|cut short`), true, c.end);
      assert.equal(allEvents(r).length, 9);
      assert.equal(r.states().length, 2, 'only the damaged state change is missing');
    }
  });

  it('first record is not a header: noted (nothing skipped), and the intact records are still read', () => {
    const r = openTrace(fileOf('nohdr', nameRecord(1, 'x'), start(2), header()));
    assertDamage(r, PREAMBLE_BYTES, /first record is not a header/, false, PREAMBLE_BYTES);
    assert.equal(r.names.get(1), 'x');
    assert.equal(r.threads.length, 1);
  });

  it('an intact record with unusable contents is skipped whole: nothing inside its body is taken for a record', () => {
    // A chunk of an unknown thread whose event payload holds a well-formed FOOTER record.
    const footerBytes = concat([footerRecord({ threads: 0, events: 0, dropped: 0, droppedAfterClose: 0, ts: 1 })]);
    const payload = encodeRecords([{ kind: 'bytes', id: 1, ts: 1, payload: new Uint8Array(footerBytes) }]);
    const bogus = chunkRecord({ thread: 1, seq: 0, events: 2, firstTs: 1, lastTs: 1 }, ID, newLossBlock(), [payload]); // says 2 events, holds 1
    const after = nameRecord(3, 'after');
    const before = concat([header(), start(1)]);
    const at = PREAMBLE_BYTES + before.length;
    const r = openTrace(fileOf('embedded', before, bogus, after));
    assertDamage(r, at, /event count|events/, false, at + concat([bogus]).length);
    assert.equal(r.damaged.length, 1, 'the embedded footer was not read');
    assert.equal(r.names.get(3), 'after');
  });

  it('many damaged records (chunks out of sequence) are each noted, cheaply; inspect counts past 20', () => {
    const stale = Array.from({ length: 31 }, () =>
      chunkRecord({ thread: 1, seq: 0, events: 0, firstTs: NaN, lastTs: NaN }, ID, newLossBlock(), []),
    );
    const r = openTrace(fileOf('orphans', header(), start(1), ...stale, nameRecord(4, 'end')));
    assert.equal(r.damaged.length, 30);
    assert.ok(r.damaged.every((d) => /chunk 0 of thread 1 out of order/.test(d.reason) && d.resumedAt === d.offset + d.skippedBytes));
    assert.equal(r.names.get(4), 'end');
    const text = formatInspection(collectInspection(r), { maxDamage: 20 });
    assert.equal(text.match(/^damage {3}at byte offset/gm)?.length, 20);
    assert.match(text, /damage {3}\.\.\. 10 more damaged regions/);
  });

  it('chunks of a thread whose start record was lost are read: the chunks say who the thread is', () => {
    const id = chunkIdentity(3, 17, 1, 'wörker-9');
    const chunks = Array.from({ length: 30 }, (_, seq) =>
      chunkRecord({ thread: 9, seq, events: 1, firstTs: 10 + seq, lastTs: 10 + seq }, id, newLossBlock(), [
        encodeRecords([{ kind: 'value', id: 1, ts: 10 + seq, value: seq }]),
      ]),
    );
    const before = concat([header(), start(1)]);
    const r = openTrace(fileOf('orphans', before, ...chunks, nameRecord(4, 'end')));
    const t9 = r.threads.find((t) => t.registration === 9)!;
    assert.deepEqual([t9.name, t9.slot, t9.nodeThreadId, t9.policy, t9.registeredTs], ['wörker-9', 3, 17, 'drop-newest', 10]);
    assert.deepEqual(
      [...r.events()].filter((e) => e.thread === t9.index).map((e) => e.value),
      Array.from({ length: 30 }, (_, i) => i),
    );
    // One note, at the first such chunk, nothing skipped.
    assert.equal(r.damaged.length, 1);
    assert.match(r.damaged[0].reason, /thread 9 \('wörker-9'\) has no start record/);
    assert.deepEqual([r.damaged[0].offset, r.damaged[0].skippedBytes], [PREAMBLE_BYTES + before.length, 0]);
    assert.equal(r.names.get(4), 'end');
  });

  it("a chunk that repeats or goes back in its thread's sequence is damage, not a negative gap", () => {
    const c0 = chunkRecord({ thread: 1, seq: 0, events: 0, firstTs: NaN, lastTs: NaN }, ID, newLossBlock(), []);
    const c1 = chunkRecord({ thread: 1, seq: 1, events: 0, firstTs: NaN, lastTs: NaN }, ID, newLossBlock(), []);
    const c3 = chunkRecord({ thread: 1, seq: 3, events: 0, firstTs: NaN, lastTs: NaN }, ID, newLossBlock(), []);
    const r = openTrace(fileOf('dup', header(), start(1), c0, c1, c1, c3));
    assert.match(r.damage!.reason, /chunk 1 of thread 1 out of order \(the next expected is 2\)/);
    assert.deepEqual(
      r.gaps.map((g) => [g.fromSeq, g.toSeq]),
      [[2, 2]],
    );
    // A gap between chunks with events has its time span: last event before, first after.
    const e1 = chunkRecord({ thread: 1, seq: 0, events: 1, firstTs: 5, lastTs: 5 }, ID, newLossBlock(), [
      encodeRecords([{ kind: 'instant', id: 1, ts: 5 }]),
    ]);
    const e3 = chunkRecord({ thread: 1, seq: 2, events: 1, firstTs: 9, lastTs: 9 }, ID, newLossBlock(), [
      encodeRecords([{ kind: 'instant', id: 1, ts: 9 }]),
    ]);
    const timed = openTrace(fileOf('timed-gap', header(), start(1), e1, e3));
    assert.deepEqual(
      timed.gaps.map((g) => [g.fromSeq, g.toSeq, g.fromTs, g.toTs]),
      [[1, 1, 5, 9]],
    );
    assert.deepEqual(r.summary().threads[0].unreadable, { chunks: 1, events: undefined });
  });

  it('resync skips near-misses: plausible frames whose CRC does not match, inside garbage', () => {
    const junk = Buffer.alloc(4096);
    for (let p = 0; p < junk.length; p += 16) {
      junk.writeUInt32LE(RecordType.NAME, p); // a known type, zero reserved word, a length that fits
      junk.writeUInt32LE(8, p + 4);
      junk.writeUInt32LE(0xdeadbeef, p + 8);
    }
    const before = concat([header(), start(1)]);
    const after = concat([nameRecord(3, 'after')]);
    const r = openTrace(fileOf('near-miss', before, junk, after));
    const at = PREAMBLE_BYTES + before.length;
    assertDamage(r, at, /CRC mismatch/, false, at + junk.length);
    assert.equal(r.names.get(3), 'after');
  });

  it('chunk whose thread name runs past the record', () => {
    const chunk = Buffer.from(
      concat([chunkRecord({ thread: 1, seq: 0, events: 0, firstTs: NaN, lastTs: NaN }, ID, newLossBlock(), [])]).subarray(FRAME_BYTES),
    );
    chunk.writeUInt32LE(chunk.length, 56);
    const at = PREAMBLE_BYTES + concat([header(), start(1)]).length;
    assertDamage(
      openTrace(fileOf('longname', header(), start(1), rawRecord(RecordType.CHUNK, chunk))),
      at,
      /thread name longer than the record/,
    );
  });

  it('chunk whose event count disagrees with its payload', () => {
    const recs: Rec[] = [
      { kind: 'instant', id: 1, ts: 1 },
      { kind: 'instant', id: 1, ts: 2 },
    ];
    const chunk = chunkRecord({ thread: 1, seq: 0, events: 3, firstTs: 1, lastTs: 2 }, ID, newLossBlock(), [encodeRecords(recs)]);
    const at = PREAMBLE_BYTES + concat([header(), start(1)]).length;
    assertDamage(openTrace(fileOf('count', header(), start(1), chunk)), at, /chunk says 3 events but holds 2/);
  });

  it('chunk payload ending inside a record, or holding something that is not a record', () => {
    const at = PREAMBLE_BYTES + concat([header(), start(1)]).length;
    const head = { thread: 1, seq: 0, events: 1, firstTs: 1, lastTs: 1 };
    const inst = encodeRecords([{ kind: 'instant', id: 1, ts: 1 }]);
    const cutRecord = chunkRecord(head, ID, newLossBlock(), [inst, new Uint8Array(8)]);
    assertDamage(openTrace(fileOf('inside', header(), start(1), cutRecord)), at, /payload ends inside a record \(payload byte 16\)/);
    const zeros = chunkRecord(head, ID, newLossBlock(), [new Uint8Array(16)]);
    assertDamage(openTrace(fileOf('zeros', header(), start(1), zeros)), at, /invalid event record at chunk payload byte 0/);
    // A BYTES record announcing more payload than the chunk holds.
    const long = encodeRecords([{ kind: 'bytes', id: 1, ts: 1, payload: new Uint8Array(40) }]).subarray(0, 32);
    assertDamage(openTrace(fileOf('long', header(), start(1), chunkRecord(head, ID, newLossBlock(), [long]))), at, /invalid event record/);
  });

  it('chunk whose payload length field disagrees with the record length', () => {
    const body = concat([chunkRecord({ thread: 1, seq: 0, events: 0, firstTs: NaN, lastTs: NaN }, ID, newLossBlock(), [])]).subarray(
      FRAME_BYTES,
    );
    body.writeUInt32LE(16, 12);
    const at = PREAMBLE_BYTES + concat([header(), start(1)]).length;
    assertDamage(openTrace(fileOf('plen', header(), start(1), rawRecord(RecordType.CHUNK, body))), at, /payload length does not match/);
  });

  it('data after the footer', () => {
    const f = t.at('footer');
    const r = withBytes('after', concat([good, nameRecord(9, 'late')]));
    assertDamage(r, f.end, /data after the footer/, true); // the footer itself was read
    assert.equal(r.names.get(9), undefined);
    assert.deepEqual(allEvents(r), t.eventsBefore(t.size));
  });

  it('unknown record types are skipped, framing intact', () => {
    const r = openTrace(
      fileOf('skip', header(), rawRecord(1234, new Uint8Array(0)), rawRecord(77, new Uint8Array(16)), nameRecord(1, 'ok')),
    );
    assert.equal(r.damage, undefined);
    assert.equal(r.names.get(1), 'ok');
  });

  // Records whose frame and CRC are fine but whose contents are not.
  const bodyCases: Array<[string, number, Uint8Array, RegExp, boolean?]> = [
    ['header too short', RecordType.HEADER, new Uint8Array(8), /header record too short/],
    [
      'header json past its body',
      RecordType.HEADER,
      (() => {
        const b = Buffer.alloc(24);
        b.writeUInt32LE(9, 4);
        return b;
      })(),
      /header record too short/,
    ],
    [
      'header not JSON',
      RecordType.HEADER,
      (() => {
        const b = Buffer.alloc(24);
        b.writeUInt32LE(3, 4);
        b.write('{x}', 16);
        return b;
      })(),
      /not valid JSON/,
    ],
    [
      'name too short',
      RecordType.NAME,
      (() => {
        const b = Buffer.alloc(8);
        b.writeUInt32LE(5, 4);
        return b;
      })(),
      /name record too short/,
      true,
    ],
    ['thread too short', RecordType.THREAD_START, new Uint8Array(24), /thread record too short/, true],
    ['chunk too short', RecordType.CHUNK, new Uint8Array(CHUNK_FIXED_BYTES - 8), /chunk record too short/, true],
    ['state too short', RecordType.STATE, new Uint8Array(16), /state record too short/, true],
    [
      'state of unknown thread',
      RecordType.STATE,
      (() => {
        const b = Buffer.alloc(24);
        b.writeUInt32LE(99, 0);
        return b;
      })(),
      /state change of unknown thread 99/,
      true,
    ],
    [
      'invalid state',
      RecordType.STATE,
      (() => {
        const b = Buffer.alloc(24);
        b.writeUInt32LE(1, 0);
        b.writeUInt32LE(4, 8);
        return b;
      })(),
      /invalid backpressure state 0->4/,
      true,
    ],
    ['end too short', RecordType.THREAD_END, new Uint8Array(24), /thread end record too short/, true],
    [
      'end of unknown thread',
      RecordType.THREAD_END,
      (() => {
        const b = Buffer.alloc(32 + LOSS_BLOCK_BYTES);
        b.writeUInt32LE(98, 0);
        return b;
      })(),
      /end of unknown thread 98/,
      true,
    ],
    ['footer too short', RecordType.FOOTER, new Uint8Array(32), /footer record too short/, true],
  ];
  for (const [what, type, body, reason, afterHeader] of bodyCases) {
    it(`invalid contents: ${what}`, () => {
      const before = afterHeader ? [header(), start(1)] : [];
      const at = PREAMBLE_BYTES + (before.length ? concat(before).length : 0);
      const r = openTrace(fileOf(what.replace(/ /g, '-'), ...before, rawRecord(type, body)));
      assertDamage(r, at, reason);
    });
  }

  it('a thread started twice', () => {
    const at = PREAMBLE_BYTES + concat([header(), start(1)]).length;
    assertDamage(openTrace(fileOf('twice', header(), start(1), start(1))), at, /thread 1 started twice/);
  });
});

// ------------------------------------------------------------------ reader: random mutations

describe('reader: random damage (property)', () => {
  const t = goodTrace();
  const good = readFileSync(t.write(fresh('prop-base')));
  const fullEvents = t.eventsBefore(t.size);
  const recordAt = (pos: number) => t.records.find((r) => pos >= r.offset && pos < r.end);
  const path = fresh('prop');

  type Outcome =
    | { throws: number }
    | { damageAt: number | undefined; resumedAt?: number; events: Array<Omit<Expected, 'thread' | 'name'>>; complete: boolean };
  const project = (e: Expected) => ({ ts: e.ts, id: e.id, kind: e.kind, value: e.value, payload: e.payload });
  /** Events of the records that end at or before `end`, except those of `lost` (a lost start
   * record costs no events: its thread's chunks say who it is). */
  const eventsWithout = (lost: { label: string } | undefined, end = t.size) =>
    t.records
      .filter((r) => r.end <= end && r !== lost)
      .flatMap((r) => r.events)
      .map(project);

  /** What the reader must make of the good file with byte `pos` changed. */
  function afterFlip(pos: number): Outcome {
    if (pos < 8) return { throws: 0 };
    if (pos < 12) return { throws: 8 };
    if (pos < PREAMBLE_BYTES) return { damageAt: undefined, events: eventsWithout(undefined), complete: true }; // flags: not checked
    const rec = recordAt(pos)!;
    const inFrame = pos - rec.offset;
    if (inFrame >= 12 && inFrame < 16) return { damageAt: undefined, events: eventsWithout(undefined), complete: true }; // reserved word
    // The hit record is lost, reading resumes at the next one (none after the footer).
    const last = rec.end === t.size;
    return { damageAt: rec.offset, resumedAt: last ? undefined : rec.end, events: eventsWithout(rec), complete: !last };
  }

  /** What the reader must make of the good file cut to `len` bytes. */
  function afterCut(len: number): Outcome {
    if (len < 8) return { throws: 0 };
    if (len < PREAMBLE_BYTES) return { throws: len };
    if (len === PREAMBLE_BYTES) return { damageAt: PREAMBLE_BYTES, events: [], complete: false };
    const rec = recordAt(len);
    if (!rec || rec.offset === len) return { damageAt: undefined, events: eventsWithout(undefined, len), complete: false }; // a clean cut
    return { damageAt: rec.offset, events: eventsWithout(undefined, rec.offset), complete: false };
  }

  /** A flip that turns the version into an older one the reader also reads: the records are
   * then read with the older layout, which their checks must catch (damage), never misread. */
  function checkReadAsOlder(bytes: Uint8Array, version: number): void {
    writeFileSync(path, bytes);
    const r = openTrace(path);
    assert.equal(r.version, version);
    // Version 2 differs from 3 only in the span record kinds, which this file does not hold.
    if (version < 2) assert.ok(r.damage, 'the layout mismatch is reported as damage');
    const original = new Set(fullEvents.map((e) => JSON.stringify(project(e))));
    for (const e of allEvents(r)) assert.ok(original.has(JSON.stringify(project(e))), 'no event that was not recorded');
  }

  function check(bytes: Uint8Array, want: Outcome): void {
    writeFileSync(path, bytes);
    let r: TraceReader;
    try {
      r = openTrace(path);
    } catch (e) {
      assert.ok(e instanceof TraceFormatError, `only TraceFormatError is thrown (got ${String(e)})`);
      assert.ok('throws' in want, `threw ${e.message}, expected a reader`);
      assert.equal(e.offset, want.throws);
      return;
    }
    assert.ok(!('throws' in want), 'expected a TraceFormatError');
    assert.equal(r.damage?.offset, want.damageAt, `damage at ${want.damageAt} (${r.damage?.reason})`);
    if (r.damage) {
      assert.equal(r.damage.resumedAt, want.resumedAt, 'reading resumes at the next intact record');
      assert.equal(r.damage.skippedBytes, (want.resumedAt ?? bytes.length) - r.damage.offset);
    }
    assert.equal(r.complete, want.complete);
    assert.deepEqual(allEvents(r).map(project), want.events, 'events are exactly those of the intact records');
    const s = r.summary(); // never throws either
    assert.equal(s.totals.events, want.events.length);
  }

  it('a flipped byte anywhere: thrown error or damage at the record that holds it, never anything else', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: good.length - 1 }), fc.integer({ min: 1, max: 255 }), (pos, xor) => {
        const bad = Buffer.from(good);
        bad[pos] ^= xor;
        const version = bad.readUInt32LE(8);
        if (pos >= 8 && pos < 12 && version >= 1 && version < FORMAT_VERSION) return checkReadAsOlder(bad, version);
        check(bad, afterFlip(pos));
      }),
      { numRuns: 400 },
    );
  });

  it('a cut at any offset: thrown error, damage at the cut record, or a clean prefix', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: good.length - 1 }), (len) => {
        check(good.subarray(0, len), afterCut(len));
      }),
      { numRuns: 300 },
    );
    // Every record boundary is a clean cut.
    for (const rec of t.records) check(good.subarray(0, rec.offset), afterCut(rec.offset));
  });

  it('sanity: the unmutated file has every event', () => {
    check(good, { damageAt: undefined, events: eventsWithout(undefined), complete: true });
    assert.equal(fullEvents.length, 9);
  });
});
