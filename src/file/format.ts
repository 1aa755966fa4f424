/**
 * The trace file format, version 5 (docs/design/file-format.md). Little-endian throughout.
 *
 * ```
 *  file    := preamble record*
 *  preamble:= "RNGTRACE" (8 B) | u32 formatVersion | u32 flags (0)              16 B
 *  record  := u32 type | u32 bodyLength | u32 crc32 | u32 reserved (0) | body   bodyLength % 8 == 0
 *             crc32 covers the type and bodyLength words and then the body
 * ```
 * Record bodies (offsets in bytes):
 * ```
 *  HEADER        0 u32 clockUnitNs(1) | 4 u32 configJsonBytes | 8 f64 sessionStartEpochMs | 16 json
 *  NAME          0 u32 id | 4 u32 byteLength | 8 u32 priority | 12 u32 0 | 16 utf8
 *                (versions 1-3: 0 u32 id | 4 u32 byteLength | 8 utf8; every name normal)
 *  THREAD_START  0 u32 thread | 4 u32 slot | 8 i32 nodeThreadId | 12 u32 nameBytes | 16 f64 ts
 *                24 u32 policy | 28 u32 0 | 32 utf8 name
 *  CHUNK         0 u32 thread | 4 u32 seq | 8 u32 events | 12 u32 payloadBytes | 16 f64 firstTs
 *                24 f64 lastTs | 32 f64 attempted | 40 f64 dropped | 48 u32 slot
 *                52 i32 nodeThreadId | 56 u32 nameBytes | 60 u32 policy | 64 loss block
 *                64+LOSS utf8 name (padded to 8) | then payload (ring records, see ring.ts)
 *                slot, nodeThreadId, name and policy repeat the THREAD_START's, so a thread whose
 *                start record is damaged is still known by its chunks
 *                attempted, dropped: the thread's running totals as of this chunk (NaN if unknown):
 *                attempted = events in this and earlier chunks + dropped, which lets a reader
 *                check a file that ends before the thread's end record
 *  STATE         0 u32 thread | 4 u32 from | 8 u32 to | 12 u32 0 | 16 f64 ts
 *  THREAD_END    0 u32 thread | 4 u32 endReason | 8 f64 ts | 16 f64 attempted | 24 f64 eventsWritten
 *                32 loss block
 *  FOOTER        0 f64 threads | 8 f64 events | 16 f64 dropped | 24 f64 droppedAfterClose | 32 f64 ts
 *  loss block    per reason (REASONS order): f64 events | f64 bytes | f64 firstTs | f64 lastTs
 *                | f64 events per priority (PRIORITIES order: normal, critical, debug)
 *                the losses since the thread's previous CHUNK (NaN times when none)
 *                (versions 1-3: the first 6 reasons, without the per-priority words; version 4:
 *                the first 7, up to `shed`)
 * ```
 * A `thread` is the registration number: each registration of a slot is its own thread.
 */
import { closeSync, fstatSync, fsyncSync, ftruncateSync, openSync, writevSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { LOSS_BLOCK_WORDS, LOSS_WORDS_PER_REASON, Loss, REASON_COUNT } from '../shm/layout.js';
import type { LossBlock } from '../shm/loss.js';

export const FILE_MAGIC = 'RNGTRACE';
/** 2: chunks carry their thread's identity (slot, threadId, name, policy). 3: chunk payloads may
 * hold the span record kinds (ASYNC_BEGIN, ASYNC_END, LINK; see ring.ts), which a version-2
 * reader would take for damage. 4: names carry a priority, loss blocks the reason `shed` and
 * per-priority counts. 5: loss blocks carry the reason `sampled` (pressure sampling). Bump on any change of a record's layout;
 * test/fixtures/golden-v*.rtrace pins what each version reads as. */
export const FORMAT_VERSION = 5;
export const PREAMBLE_BYTES = 16;
export const FRAME_BYTES = 16;
/** Largest body the reader accepts: a chunk is at most a ring (16 MiB) plus its header. */
export const MAX_BODY_BYTES = 16 * 1024 * 1024 + 4096;

export const RecordType = {
  HEADER: 1,
  NAME: 2,
  THREAD_START: 3,
  CHUNK: 4,
  STATE: 5,
  THREAD_END: 6,
  FOOTER: 7,
} as const;

/** Byte offsets in the preamble and in every record's frame; the CRC covers the frame up to CRC. */
export const PreambleField = { MAGIC: 0, VERSION: 8, FLAGS: 12 } as const;
export const FrameField = { TYPE: 0, BODY_LENGTH: 4, CRC: 8, RESERVED: 12 } as const;

/*
 * Byte offsets of the fields in each record body: the table at the top of this file, the one
 * place both the writer (below) and the reader take them from. A field name ending in _AT is
 * where a variable part starts.
 */
export const HeaderField = { CLOCK_UNIT_NS: 0, CONFIG_JSON_BYTES: 4, SESSION_START_EPOCH_MS: 8, CONFIG_JSON_AT: 16 } as const;
export const NameField = { ID: 0, BYTE_LENGTH: 4, PRIORITY: 8, UTF8_AT: 16 } as const;
/** Format versions 1-3: no priority, the name at 8. */
export const V3_NAME_UTF8_AT = 8;
export const ThreadStartField = { THREAD: 0, SLOT: 4, NODE_THREAD_ID: 8, NAME_BYTES: 12, TS: 16, POLICY: 24, NAME_AT: 32 } as const;
export const ChunkField = {
  THREAD: 0,
  SEQ: 4,
  EVENTS: 8,
  PAYLOAD_BYTES: 12,
  FIRST_TS: 16,
  LAST_TS: 24,
  ATTEMPTED: 32,
  DROPPED: 40,
  SLOT: 48,
  NODE_THREAD_ID: 52,
  NAME_BYTES: 56,
  POLICY: 60,
  LOSS_AT: 64,
} as const;
/** Format version 1 chunks have no identity fields (slot ... policy): their loss block is at 48. */
export const V1_CHUNK_LOSS_AT = 48;
export const StateField = { THREAD: 0, FROM: 4, TO: 8, TS: 16 } as const;
export const STATE_BYTES = 24;
export const ThreadEndField = { THREAD: 0, END_REASON: 4, TS: 8, ATTEMPTED: 16, EVENTS_WRITTEN: 24, LOSS_AT: 32 } as const;
export const FooterField = { THREADS: 0, EVENTS: 8, DROPPED: 16, DROPPED_AFTER_CLOSE: 24, TS: 32 } as const;
export const FOOTER_BYTES = 40;
/** One reason's entry in a loss block (entries follow in REASONS order): the shared-memory loss
 * words (layout.Loss) as written, so the offsets derive from them. */
export const LossField = {
  EVENTS: Loss.EVENTS * 8,
  BYTES: Loss.BYTES * 8,
  FIRST_TS: Loss.FIRST_TS * 8,
  LAST_TS: Loss.LAST_TS * 8,
} as const;
export const LOSS_ENTRY_BYTES = LOSS_WORDS_PER_REASON * 8;
/** Where a loss entry's events per priority start (PRIORITY_COUNT f64, PRIORITIES order). */
export const LOSS_BY_PRIORITY_AT = Loss.BY_PRIORITY * 8;

export const LOSS_BLOCK_BYTES = LOSS_BLOCK_WORDS * 8;

/** The shape of a loss block in a file of `version`: versions 1-3 had 6 reasons of 4 words. */
export interface LossShape {
  readonly reasons: number;
  readonly entryBytes: number;
  readonly blockBytes: number;
  /** Whether entries carry events per priority. */
  readonly byPriority: boolean;
}
const V3_LOSS: LossShape = { reasons: 6, entryBytes: 32, blockBytes: 6 * 32, byPriority: false };
const V4_LOSS: LossShape = { reasons: 7, entryBytes: LOSS_ENTRY_BYTES, blockBytes: 7 * LOSS_ENTRY_BYTES, byPriority: true };
const V5_LOSS: LossShape = { reasons: REASON_COUNT, entryBytes: LOSS_ENTRY_BYTES, blockBytes: LOSS_BLOCK_BYTES, byPriority: true };
/** Version 4: the reasons up to `shed`; 5 adds `sampled`. */
export const lossShape = (version: number): LossShape => (version < 4 ? V3_LOSS : version < 5 ? V4_LOSS : V5_LOSS);
/** A chunk body's fixed part; the thread name (padded to 8) and then the payload follow it. */
export const CHUNK_FIXED_BYTES = ChunkField.LOSS_AT + LOSS_BLOCK_BYTES;
export const THREAD_END_BYTES = ThreadEndField.LOSS_AT + LOSS_BLOCK_BYTES;

export const EndReason = { CLOSED: 1, EXITED: 2, TRACER_CLOSED: 3 } as const;
export const END_REASON_NAMES: Record<number, string> = { 1: 'closed', 2: 'exited', 3: 'tracer_closed' };

const pad8 = (n: number): number => (n + 7) & ~7;
const encoder = new TextEncoder();

export function preamble(): Buffer {
  const b = Buffer.alloc(PREAMBLE_BYTES);
  b.write(FILE_MAGIC, PreambleField.MAGIC, 'latin1');
  b.writeUInt32LE(FORMAT_VERSION, PreambleField.VERSION);
  return b;
}

/** Continues a CRC32 over `data`. Node's zlib.crc32 returns 0, whatever the running value, for
 * some empty views (a zero-length subarray of an empty Buffer: no data pointer), which would make
 * an empty-bodied record's CRC 0 on one side only: skip empty data instead. */
export function crcUpdate(data: Uint8Array, crc: number): number {
  return data.length === 0 ? crc : crc32(data, crc);
}

/** Frames a body (whose first `headBytes` bytes are in `head`, then `parts`) with its CRC. */
function frame(type: number, head: Buffer, parts: readonly Uint8Array[] = []): Uint8Array[] {
  let bodyLength = head.length;
  for (const p of parts) bodyLength += p.length;
  if (bodyLength % 8 !== 0) throw new Error(`ringtrace: internal error: record body of ${bodyLength} bytes is not 8-aligned`);
  const f = Buffer.alloc(FRAME_BYTES);
  f.writeUInt32LE(type, FrameField.TYPE);
  f.writeUInt32LE(bodyLength, FrameField.BODY_LENGTH);
  let crc = crc32(f.subarray(0, FrameField.CRC));
  crc = crcUpdate(head, crc);
  for (const p of parts) crc = crcUpdate(p, crc);
  f.writeUInt32LE(crc, FrameField.CRC);
  return [f, head, ...parts];
}

export function headerRecord(sessionStartEpochMs: number, config: unknown): Uint8Array[] {
  const json = encoder.encode(JSON.stringify(config));
  const b = Buffer.alloc(HeaderField.CONFIG_JSON_AT + pad8(json.length));
  b.writeUInt32LE(1, HeaderField.CLOCK_UNIT_NS);
  b.writeUInt32LE(json.length, HeaderField.CONFIG_JSON_BYTES);
  b.writeDoubleLE(sessionStartEpochMs, HeaderField.SESSION_START_EPOCH_MS);
  b.set(json, HeaderField.CONFIG_JSON_AT);
  return frame(RecordType.HEADER, b);
}

/** `priority`: the name's Priority code (0, normal, when not given). */
export function nameRecord(id: number, name: string, priority = 0): Uint8Array[] {
  const bytes = encoder.encode(name);
  const b = Buffer.alloc(NameField.UTF8_AT + pad8(bytes.length));
  b.writeUInt32LE(id, NameField.ID);
  b.writeUInt32LE(bytes.length, NameField.BYTE_LENGTH);
  b.writeUInt32LE(priority, NameField.PRIORITY);
  b.set(bytes, NameField.UTF8_AT);
  return frame(RecordType.NAME, b);
}

export interface ThreadStart {
  thread: number;
  slot: number;
  nodeThreadId: number;
  name: string;
  ts: number;
  policy: number;
}

export function threadStartRecord(t: ThreadStart): Uint8Array[] {
  const name = encoder.encode(t.name);
  const b = Buffer.alloc(ThreadStartField.NAME_AT + pad8(name.length));
  b.writeUInt32LE(t.thread, ThreadStartField.THREAD);
  b.writeUInt32LE(t.slot, ThreadStartField.SLOT);
  b.writeInt32LE(t.nodeThreadId, ThreadStartField.NODE_THREAD_ID);
  b.writeUInt32LE(name.length, ThreadStartField.NAME_BYTES);
  b.writeDoubleLE(t.ts, ThreadStartField.TS);
  b.writeUInt32LE(t.policy, ThreadStartField.POLICY);
  b.set(name, ThreadStartField.NAME_AT);
  return frame(RecordType.THREAD_START, b);
}

export function stateRecord(thread: number, from: number, to: number, ts: number): Uint8Array[] {
  const b = Buffer.alloc(STATE_BYTES);
  b.writeUInt32LE(thread, StateField.THREAD);
  b.writeUInt32LE(from, StateField.FROM);
  b.writeUInt32LE(to, StateField.TO);
  b.writeDoubleLE(ts, StateField.TS);
  return frame(RecordType.STATE, b);
}

/** Losses per reason since the previous chunk: LOSS_BLOCK_WORDS numbers (see layout.Loss). */

function writeLoss(b: Buffer, at: number, loss: LossBlock): void {
  for (let i = 0; i < LOSS_BLOCK_WORDS; i++) b.writeDoubleLE(loss[i], at + i * 8);
}

export interface ChunkHead {
  thread: number;
  seq: number;
  events: number;
  firstTs: number;
  lastTs: number;
  /** Running totals of the thread as of this chunk (NaN or absent: unknown). */
  attempted?: number;
  dropped?: number;
}

/** Who a chunk belongs to, repeated in every chunk of the registration (see THREAD_START). */
export interface ChunkIdentity {
  slot: number;
  nodeThreadId: number;
  policy: number;
  /** The thread name, UTF-8. */
  name: Uint8Array;
}

export function chunkIdentity(slot: number, nodeThreadId: number, policy: number, name: string): ChunkIdentity {
  return { slot, nodeThreadId, policy, name: encoder.encode(name) };
}

/** Where a chunk body's payload starts, given its name length (ChunkField.NAME_BYTES). */
export const chunkPayloadAt = (nameBytes: number, lossBlockBytes = LOSS_BLOCK_BYTES): number =>
  ChunkField.LOSS_AT + lossBlockBytes + pad8(nameBytes);

/** A chunk record whose payload is the given runs of ring bytes (views into shared memory). */
export function chunkRecord(h: ChunkHead, id: ChunkIdentity, loss: LossBlock, payload: readonly Uint8Array[]): Uint8Array[] {
  let payloadBytes = 0;
  for (const p of payload) payloadBytes += p.length;
  const b = Buffer.alloc(chunkPayloadAt(id.name.length));
  b.writeUInt32LE(h.thread, ChunkField.THREAD);
  b.writeUInt32LE(h.seq >>> 0, ChunkField.SEQ); // wraps after 2^32 chunks of one thread; the reader only orders by position
  b.writeUInt32LE(h.events, ChunkField.EVENTS);
  b.writeUInt32LE(payloadBytes, ChunkField.PAYLOAD_BYTES);
  b.writeDoubleLE(h.firstTs, ChunkField.FIRST_TS);
  b.writeDoubleLE(h.lastTs, ChunkField.LAST_TS);
  b.writeDoubleLE(h.attempted ?? NaN, ChunkField.ATTEMPTED);
  b.writeDoubleLE(h.dropped ?? NaN, ChunkField.DROPPED);
  b.writeUInt32LE(id.slot, ChunkField.SLOT);
  b.writeInt32LE(id.nodeThreadId, ChunkField.NODE_THREAD_ID);
  b.writeUInt32LE(id.name.length, ChunkField.NAME_BYTES);
  b.writeUInt32LE(id.policy, ChunkField.POLICY);
  writeLoss(b, ChunkField.LOSS_AT, loss);
  b.set(id.name, CHUNK_FIXED_BYTES);
  return frame(RecordType.CHUNK, b, payload);
}

export interface ThreadEnd {
  thread: number;
  endReason: number;
  ts: number;
  attempted: number;
  eventsWritten: number;
}

export function threadEndRecord(e: ThreadEnd, loss: LossBlock): Uint8Array[] {
  const b = Buffer.alloc(THREAD_END_BYTES);
  b.writeUInt32LE(e.thread, ThreadEndField.THREAD);
  b.writeUInt32LE(e.endReason, ThreadEndField.END_REASON);
  b.writeDoubleLE(e.ts, ThreadEndField.TS);
  b.writeDoubleLE(e.attempted, ThreadEndField.ATTEMPTED);
  b.writeDoubleLE(e.eventsWritten, ThreadEndField.EVENTS_WRITTEN);
  writeLoss(b, ThreadEndField.LOSS_AT, loss);
  return frame(RecordType.THREAD_END, b);
}

export interface FooterTotals {
  threads: number;
  events: number;
  dropped: number;
  droppedAfterClose: number;
  ts: number;
}

export function footerRecord(t: FooterTotals): Uint8Array[] {
  const b = Buffer.alloc(FOOTER_BYTES);
  b.writeDoubleLE(t.threads, FooterField.THREADS);
  b.writeDoubleLE(t.events, FooterField.EVENTS);
  b.writeDoubleLE(t.dropped, FooterField.DROPPED);
  b.writeDoubleLE(t.droppedAfterClose, FooterField.DROPPED_AFTER_CLOSE);
  b.writeDoubleLE(t.ts, FooterField.TS);
  return frame(RecordType.FOOTER, b);
}

/** Where the drain's bytes go. A seam: tests inject failing sinks (ENOSPC, EIO). */
export interface TraceSink {
  /** Appends all buffers, in order, or throws; after a throw nothing of this call is in the file. */
  write(buffers: readonly Uint8Array[]): void;
  close(): void;
}

/** Appends to a file with vectored writes; a failed write is cut back off the file, so the file
 * always ends on a whole record and stays readable. */
export class FileSink implements TraceSink {
  private readonly fd: number;
  private offset = 0;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'w');
  }

  write(buffers: readonly Uint8Array[]): void {
    const start = this.offset;
    let total = 0;
    for (const b of buffers) total += b.length;
    try {
      // The common case is one writev that takes everything; partial writes and more than
      // IOV_MAX (1024) buffers take the loop.
      let pending = buffers;
      while (this.offset - start < total) {
        let n = writevSync(this.fd, pending.length > 1024 ? pending.slice(0, 1024) : (pending as Uint8Array[]), this.offset);
        this.offset += n;
        if (this.offset - start === total) break;
        let i = 0;
        while (i < pending.length && n >= pending[i].length) n -= pending[i++].length;
        pending = i < pending.length ? [pending[i].subarray(n), ...pending.slice(i + 1)] : [];
      }
    } catch (err) {
      this.offset = start;
      try {
        ftruncateSync(this.fd, start);
      } catch {
        // the original error is the one to report
      }
      throw err;
    }
  }

  close(): void {
    try {
      // Only a regular file can be synced (/dev/null, a pipe: EINVAL).
      if (fstatSync(this.fd).isFile()) fsyncSync(this.fd);
    } finally {
      closeSync(this.fd);
    }
  }
}
