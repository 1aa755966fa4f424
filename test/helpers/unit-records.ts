/**
 * Unit-test helpers: ring records built by hand (ring.ts framing) and trace-file records framed
 * by hand (format.ts framing), so tests can make exact, and exactly broken, inputs without the
 * writer or the drain.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { FRAME_BYTES } from '../../src/file/format.js';
import { RECORD_HEADER_BYTES, RecordKind, align8 } from '../../src/shm/ring.js';

export type KindName = 'instant' | 'value' | 'bytes' | 'begin' | 'end';

export interface Rec {
  kind: KindName;
  id: number;
  ts: number;
  value?: number;
  payload?: Uint8Array;
}

const KIND: Record<KindName, number> = {
  instant: RecordKind.INSTANT,
  value: RecordKind.VALUE,
  bytes: RecordKind.BYTES,
  begin: RecordKind.BEGIN,
  end: RecordKind.END,
};

/** Bytes one record takes in a ring. */
export function recSize(r: Rec): number {
  if (r.kind === 'value') return RECORD_HEADER_BYTES + 8;
  if (r.kind === 'bytes') return RECORD_HEADER_BYTES + align8(r.payload?.length ?? 0);
  return RECORD_HEADER_BYTES;
}

/** Writes `r` at byte offset `at` (8-aligned) of `buf`; returns the offset after it. */
export function putRecord(buf: Uint8Array, at: number, r: Rec): number {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const len = r.kind === 'bytes' ? (r.payload?.length ?? 0) : 0;
  dv.setUint32(at, ((KIND[r.kind] << 24) | len) >>> 0, true);
  dv.setUint32(at + 4, r.id, true);
  dv.setFloat64(at + 8, r.ts, true);
  if (r.kind === 'value') dv.setFloat64(at + 16, r.value ?? 0, true);
  if (r.kind === 'bytes' && r.payload) {
    buf.set(r.payload, at + 16);
    buf.fill(0, at + 16 + len, at + 16 + align8(len));
  }
  return at + recSize(r);
}

/** Ring bytes holding `recs` back to back. */
export function encodeRecords(recs: readonly Rec[]): Uint8Array {
  let total = 0;
  for (const r of recs) total += recSize(r);
  const out = new Uint8Array(total);
  let p = 0;
  for (const r of recs) p = putRecord(out, p, r);
  return out;
}

/** A record framed like format.ts does, but with any type and body (even invalid ones). */
export function rawRecord(type: number, body: Uint8Array, opts: { bodyLength?: number; crc?: number } = {}): Buffer {
  const f = Buffer.alloc(FRAME_BYTES);
  f.writeUInt32LE(type, 0);
  f.writeUInt32LE(opts.bodyLength ?? body.length, 4);
  const crc = opts.crc ?? crc32(body, crc32(f.subarray(0, 8)));
  f.writeUInt32LE(crc >>> 0, 8);
  return Buffer.concat([f, body]);
}

export const concat = (parts: ReadonlyArray<Uint8Array | readonly Uint8Array[]>): Buffer =>
  Buffer.concat(parts.flatMap((p) => (p instanceof Uint8Array ? [p] : [...p])));

export const tempDir = (label: string): string => mkdtempSync(join(tmpdir(), `rt-${label}-`));
