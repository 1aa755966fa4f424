/**
 * Checks every CHUNK of a trace file against its own records, from the raw bytes: the event count,
 * first and last time in the chunk header must be those of the records in its payload. The drain
 * takes them from the writer's ring descriptor (no scan), so this is what proves the writer's
 * bookkeeping; the reader itself checks the count only.
 */
import { readFileSync } from 'node:fs';
import { ChunkField, FRAME_BYTES, PREAMBLE_BYTES, RecordType, chunkPayloadAt } from '../../src/file/format.js';
import { recordBytes } from '../../src/shm/ring.js';

export interface ChunkCheck {
  chunks: number;
  events: number;
  mismatches: string[];
}

export function checkChunks(path: string): ChunkCheck {
  const b = readFileSync(path);
  const out: ChunkCheck = { chunks: 0, events: 0, mismatches: [] };
  for (let off = PREAMBLE_BYTES; off + FRAME_BYTES <= b.length;) {
    const type = b.readUInt32LE(off);
    const body = off + FRAME_BYTES;
    const end = body + b.readUInt32LE(off + 4);
    if (type === RecordType.CHUNK) {
      out.chunks++;
      const events = b.readUInt32LE(body + ChunkField.EVENTS);
      const firstTs = b.readDoubleLE(body + ChunkField.FIRST_TS);
      const lastTs = b.readDoubleLE(body + ChunkField.LAST_TS);
      let p = body + chunkPayloadAt(b.readUInt32LE(body + ChunkField.NAME_BYTES));
      let n = 0;
      let first = NaN;
      let last = NaN;
      while (p < end) {
        const ts = b.readDoubleLE(p + 8);
        if (n === 0) first = ts;
        last = ts;
        p += recordBytes(b.readUInt32LE(p));
        n++;
      }
      out.events += n;
      const at = `chunk at byte ${off}`;
      if (n !== events) out.mismatches.push(`${at}: header says ${events} events, payload holds ${n}`);
      if (n > 0 && !Object.is(first, firstTs)) out.mismatches.push(`${at}: firstTs ${firstTs}, first record at ${first}`);
      if (n > 0 && !Object.is(last, lastTs)) out.mismatches.push(`${at}: lastTs ${lastTs}, last record at ${last}`);
    }
    off = end;
  }
  return out;
}
