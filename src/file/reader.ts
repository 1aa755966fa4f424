/**
 * Reads a trace file (format.ts). `openTrace` indexes the file in one streaming pass, checking
 * every record's framing and CRC. At a damaged record it says where and why and goes on at the
 * next intact record: where the frame's length points if a record is intact there (a flipped bit
 * in a body), else the next 8-aligned offset that holds a plausible frame followed by another
 * and whose CRC matches. An intact record whose contents are unusable is skipped whole. So one
 * flipped bit costs the record it hit, not the rest of the file. A cut file ends in damage.
 * `events()` then streams chunk payloads.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { BpState, STATE_NAMES, type StateName } from '../shm/backpressure.js';
import {
  PRIORITIES,
  PRIORITY_COUNT,
  Prio,
  Reason,
  REASONS,
  noPriorities,
  policyOf,
  type DropPolicy,
  type DropReason,
  type Priority,
  type PriorityCounts,
} from '../shm/layout.js';
import {
  ChunkField,
  END_REASON_NAMES,
  FILE_MAGIC,
  FOOTER_BYTES,
  FORMAT_VERSION,
  FRAME_BYTES,
  FooterField,
  FrameField,
  HeaderField,
  LOSS_BY_PRIORITY_AT,
  LossField,
  MAX_BODY_BYTES,
  NameField,
  PREAMBLE_BYTES,
  PreambleField,
  RecordType,
  STATE_BYTES,
  StateField,
  ThreadEndField,
  ThreadStartField,
  V1_CHUNK_LOSS_AT,
  V3_NAME_UTF8_AT,
  chunkPayloadAt,
  crcUpdate,
  lossShape,
  type LossShape,
} from './format.js';
import { RECORD_HEADER_BYTES, RecordKind, SPAN_BYTES, recordBytes } from '../shm/ring.js';

export class TraceFormatError extends Error {
  override readonly name = 'TraceFormatError';
  constructor(
    readonly offset: number,
    readonly reason: string,
    readonly path: string,
  ) {
    super(`${path}: ${reason} at byte offset ${offset}`);
  }
}

export interface TraceThread {
  /** Index in `threads`; events and drops name their thread by it. */
  index: number;
  registration: number;
  name: string;
  slot: number;
  nodeThreadId: number;
  policy: DropPolicy;
  /** When it registered (ns); for a thread known only from its chunks, its first chunk's first
   * event (0 if that chunk had none). */
  registeredTs: number;
  /** First and last event timestamps in the file (NaN if none). */
  firstTs: number;
  lastTs: number;
  /** How the registration ended, if the file says so. */
  endReason: string | undefined;
  /** Events the thread tried to record, from its end record (undefined if the file has none). */
  attempted: number | undefined;
}

export interface TraceEvent {
  thread: number;
  ts: number;
  id: number;
  name: string | undefined;
  kind: 'instant' | 'value' | 'bytes' | 'begin' | 'end' | 'async-begin' | 'async-end' | 'link';
  /** async-begin (and value, if beginAsync had one): the value; value events: the sample. */
  value?: number;
  payload?: Uint8Array;
  /** async-begin, async-end, link: the span id (beginAsync's return value). Format version 3. */
  span?: number;
}

export interface TraceDrop {
  thread: number;
  reason: DropReason;
  events: number;
  bytes: number;
  firstTs: number;
  lastTs: number;
  /** Byte offset of the record that reports the loss (a chunk or the thread's end record). */
  offset: number;
  /** The sequence number of the chunk that reports it; -1 for the end record. */
  chunkSeq: number;
  /** How many of the events were of each priority (format 4; undefined before). Their sum is
   * `events` for the losses the writer counts; the drain's (sink_error, thread_exit, unflushed)
   * are not attributed. */
  byPriority: Record<Priority, number> | undefined;
}

export type { PriorityCounts };

export interface TraceStateChange {
  thread: number;
  ts: number;
  from: StateName;
  to: StateName;
}

export interface ThreadSummary {
  thread: number;
  name: string;
  slot: number;
  events: number;
  /** Bytes of this thread's event records in the file (its chunks' payloads), headers included;
   * not the byte payloads given to recordBytes(). `ringtrace inspect` shows it as "record B". */
  payloadBytes: number;
  chunks: number;
  firstTs: number;
  lastTs: number;
  attempted: number | undefined;
  dropped: number;
  bytesDropped: number;
  droppedByReason: Partial<Record<DropReason, number>>;
  stateChanges: number;
  endReason: string | undefined;
  /** attempted === events + dropped; undefined when the file has no end record for the thread. */
  balanced: boolean | undefined;
  /**
   * Per priority (format 4): the thread's events in the file and its drops. Each priority's
   * events + drops is what it attempted; they add up to `attempted` with `unattributedDrops`, the
   * drops whose events nobody looked at (the drain's reasons; all drops of a format 1-3 file).
   */
  eventsByPriority: PriorityCounts;
  droppedByPriority: PriorityCounts;
  unattributedDrops: number;
  /** From the thread's last chunk: its attempted count then, and whether events + drops up to
   * that chunk add up to it. What a cut or unfinished file can still prove. */
  lastChunk: { attempted: number; balanced: boolean } | undefined;
  /** What damage took from this thread: chunks missing between those read, and (when the end
   * record says how many events were attempted) the events and drops those records held, i.e.
   * attempted - events - dropped. Undefined when nothing of the thread is missing. */
  unreadable: { chunks: number; events: number | undefined } | undefined;
}

export interface TraceSummary {
  path: string;
  version: number;
  sessionStartEpochMs: number;
  complete: boolean;
  /** The first damaged region (see `damaged` for all of them). */
  damage: TraceDamage | undefined;
  damaged: TraceDamage[];
  threads: ThreadSummary[];
  totals: {
    threads: number;
    events: number;
    attempted: number;
    dropped: number;
    bytesDropped: number;
    droppedByReason: Partial<Record<DropReason, number>>;
    droppedByPriority: PriorityCounts;
    droppedAfterClose: number;
    balanced: boolean;
  };
}

export interface TraceDamage {
  offset: number;
  reason: string;
  /** Bytes from the damage to the next intact record (or to the end of the file), not read. */
  skippedBytes: number;
  /** Where reading went on: the next intact record's offset; undefined if none was found. */
  resumedAt: number | undefined;
}

/** Chunks of a thread that the file should hold but does not (they were in a damaged region). */
export interface ChunkGap {
  thread: number;
  /** The missing sequence numbers, fromSeq..toSeq inclusive. */
  fromSeq: number;
  toSeq: number;
  /** Offset of the first chunk read after the gap. */
  offset: number;
  /** The gap in time: the thread's last event before it and the first after it (ns; NaN when
   * there is none on that side). What the missing chunks held lies in between. */
  fromTs: number;
  toTs: number;
}

interface ChunkIndex {
  offset: number;
  thread: number;
  seq: number;
  events: number;
  /** Where the payload starts in the record's body. */
  payloadAt: number;
  payloadBytes: number;
  /** The chunk's normal events that sampling could have let go (instants, values, payloads), and
   * the normal events its loss block says were sampled out (format 5). */
  normal: number;
  sampledOut: number;
}

/** A thread's counts scaled back up from pressure sampling (see TraceReader.scaledCounts). */
export interface ScaledCounts {
  thread: number;
  /** Per event name (`#id` when the file has no name for it): the events the thread attempted,
   * estimated. A name's normal events in a chunk that was sampled count (K + S) / K each, K being
   * the chunk's normal events and S those it reports sampled out; other events count 1. */
  byName: Record<string, number>;
  /** Per event name: its events in the file (the sample). */
  keptByName: Record<string, number>;
  /** Normal events sampled out (reason `sampled`): what the scaling adds back, exactly. */
  sampledOut: number;
  /** Of those, the ones no chunk with normal events reported (e.g. a thread's end record): in
   * `sampledOut` but in no name's estimate. */
  unplaced: number;
}

const decoder = new TextDecoder();
/** Resync reads the file in windows of this size while it looks for the next intact record,
 * starting with a smaller read. */
const RESYNC_WINDOW_BYTES = 1024 * 1024;
const RESYNC_FIRST_BYTES = 64 * 1024;
/** How many records afterDamagedRecord follows to tell a damaged length from a damaged body. */
const RESYNC_CHAIN_STEPS = 4096;

/** What the index pass learns about the file as a whole. */
interface FileFacts {
  damaged: TraceDamage[];
  sawHeader: boolean;
  complete: boolean;
  sessionStartEpochMs: number;
  config: Record<string, unknown>;
  droppedAfterClose: number;
}

interface ResyncState {
  /** CRC bytes the resyncs of this file may still check. */
  crcBudget: number;
  window: Buffer | undefined;
}

/** The body length of a plausible frame at `buf[p]` (file offset `at`), or -1. */
function plausibleFrame(buf: Buffer, p: number, at: number, size: number): number {
  const type = buf.readUInt32LE(p + FrameField.TYPE);
  const len = buf.readUInt32LE(p + FrameField.BODY_LENGTH);
  if (type === 0 || type > MAX_RECORD_TYPE || buf.readUInt32LE(p + FrameField.RESERVED) !== 0) return -1;
  if (len % 8 !== 0 || len > MAX_BODY_BYTES || at + FRAME_BYTES + len > size) return -1;
  return len;
}
/** CRC bytes a resync may check at least (else twice the file size): bounds crafted files. */
const RESYNC_MIN_CRC_BYTES = 64 * 1024 * 1024;
/** Record types a resync accepts: the known ones and room for later revisions' (never 0). */
const MAX_RECORD_TYPE = 0xffff;
const KIND_NAMES: Record<number, TraceEvent['kind']> = {
  [RecordKind.INSTANT]: 'instant',
  [RecordKind.VALUE]: 'value',
  [RecordKind.BYTES]: 'bytes',
  [RecordKind.BEGIN]: 'begin',
  [RecordKind.END]: 'end',
  [RecordKind.ASYNC_BEGIN]: 'async-begin',
  [RecordKind.ASYNC_END]: 'async-end',
  [RecordKind.LINK]: 'link',
};
/** The highest ring record kind each format version may hold (span records came with 3). */
const maxKind = (version: number): number => (version < 3 ? RecordKind.END : RecordKind.LINK);

export class TraceReader {
  readonly version: number;
  readonly sessionStartEpochMs: number;
  readonly config: Record<string, unknown>;
  readonly threads: TraceThread[] = [];
  readonly names = new Map<number, string>();
  /** Each name's priority code (PRIORITIES index), from format-4 NAME records; absent = normal. */
  private readonly priorityCodes = new Map<number, number>();
  /** The loss block of this file's version. */
  private readonly loss: LossShape;
  /** The first damaged region, if any: everything before its offset was read. */
  readonly damage: TraceDamage | undefined;
  /** Every damaged region, in file order (reading resumes after each where it can). */
  readonly damaged: readonly TraceDamage[];
  /** Chunk sequence numbers missing per thread, in file order. */
  readonly gaps: readonly ChunkGap[];
  /** True when the file ends with its footer (the tracer closed it). */
  readonly complete: boolean;
  readonly droppedAfterClose: number;
  private readonly chunks: ChunkIndex[] = [];
  private readonly dropList: TraceDrop[] = [];
  private readonly stateList: TraceStateChange[] = [];
  private readonly byRegistration = new Map<number, TraceThread>();
  /** A remark on the record just taken (not damage to it), listed with the damaged regions. */
  private readNote: string | undefined;
  private readonly eventsByThread: number[] = [];
  /** PRIORITY_COUNT per thread: its events in the file by priority. */
  private readonly priorityEvents: number[][] = [];
  private readonly payloadByThread: number[] = [];
  private readonly chunksByThread: number[] = [];
  /** Drops reported in a thread's chunks so far (the index pass runs in file order). */
  private readonly runningDrops: number[] = [];
  /** A thread's running totals as of its latest chunk that carried them. */
  private readonly lastChunk: Array<{ attempted: number; balanced: boolean } | undefined> = [];
  /** The sequence number each thread's next chunk should have. */
  private readonly nextSeq: number[] = [];
  private readonly gapList: ChunkGap[] = [];

  constructor(readonly path: string) {
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      const pre = Buffer.alloc(PREAMBLE_BYTES);
      const got = readSync(fd, pre, 0, PREAMBLE_BYTES, 0);
      if (got < FILE_MAGIC.length || pre.toString('latin1', PreambleField.MAGIC, FILE_MAGIC.length) !== FILE_MAGIC) {
        throw new TraceFormatError(0, 'not a ringtrace file (bad magic)', path);
      }
      if (got < PREAMBLE_BYTES) throw new TraceFormatError(got, 'file ends inside the preamble', path);
      this.version = pre.readUInt32LE(PreambleField.VERSION);
      if (this.version > FORMAT_VERSION) {
        throw new TraceFormatError(
          PreambleField.VERSION,
          `format version ${this.version} is newer than this reader (version ${FORMAT_VERSION}); upgrade ringtrace`,
          path,
        );
      }
      if (this.version < 1) throw new TraceFormatError(PreambleField.VERSION, `invalid format version ${this.version}`, path);
      this.loss = lossShape(this.version);
      const idx = this.index(fd, size);
      this.sessionStartEpochMs = idx.sessionStartEpochMs;
      this.config = idx.config;
      this.damaged = idx.damaged;
      this.damage = idx.damaged[0];
      this.gaps = this.gapList;
      this.complete = idx.complete;
      this.droppedAfterClose = idx.droppedAfterClose;
    } finally {
      closeSync(fd);
    }
  }

  private index(fd: number, size: number): FileFacts {
    const frameBuf = Buffer.alloc(FRAME_BYTES);
    let body = Buffer.alloc(64 * 1024);
    let offset = PREAMBLE_BYTES;
    const facts: FileFacts = { damaged: [], sawHeader: false, complete: false, sessionStartEpochMs: NaN, config: {}, droppedAfterClose: 0 };
    const damaged = facts.damaged;
    const resync: ResyncState = { crcBudget: Math.max(RESYNC_MIN_CRC_BYTES, 2 * size), window: undefined };
    const note = (at: number, reason: string, next: number) => {
      const resumed = next < size ? next : undefined;
      damaged.push({ offset: at, reason, skippedBytes: (resumed ?? size) - at, resumedAt: resumed });
      offset = next;
    };
    /** A damaged frame: search for the next intact record (none: the rest is skipped). */
    const search = (at: number, reason: string) => note(at, reason, this.findRecord(fd, at + 8, size, resync));
    while (offset < size) {
      if (facts.complete) {
        note(offset, 'data after the footer', size);
        break;
      }
      if (size - offset < FRAME_BYTES) {
        note(offset, `file cut short inside a record frame (${size - offset} of ${FRAME_BYTES} bytes)`, size);
        break;
      }
      readSync(fd, frameBuf, 0, FRAME_BYTES, offset);
      const type = frameBuf.readUInt32LE(FrameField.TYPE);
      const bodyLength = frameBuf.readUInt32LE(FrameField.BODY_LENGTH);
      const crc = frameBuf.readUInt32LE(FrameField.CRC);
      if (bodyLength % 8 !== 0 || bodyLength > MAX_BODY_BYTES) {
        search(offset, `corrupt record frame (body length ${bodyLength})`);
        continue;
      }
      if (offset + FRAME_BYTES + bodyLength > size) {
        search(offset, `file cut short: record of ${FRAME_BYTES + bodyLength} bytes, ${size - offset} left`);
        continue;
      }
      if (body.length < bodyLength) body = Buffer.alloc(bodyLength);
      readSync(fd, body, 0, bodyLength, offset + FRAME_BYTES);
      const b = body.subarray(0, bodyLength);
      if (crcUpdate(b, crc32(frameBuf.subarray(0, FrameField.CRC))) !== crc) {
        note(offset, 'CRC mismatch (damaged record)', this.afterDamagedRecord(fd, offset, offset + FRAME_BYTES + bodyLength, size, resync));
        continue;
      }
      // From here the record is intact: if its contents are unusable, skip exactly it (never
      // look inside it for records: its body is data, and may hold anything).
      if (offset === PREAMBLE_BYTES && type !== RecordType.HEADER) {
        damaged.push({ offset, reason: 'first record is not a header (the header is missing)', skippedBytes: 0, resumedAt: offset });
      }
      const problem = this.takeIntact(type, b, offset, facts);
      if (problem !== undefined) note(offset, problem, offset + FRAME_BYTES + bodyLength);
      else offset += FRAME_BYTES + bodyLength;
    }
    if (!facts.sawHeader && damaged.length === 0) note(offset, 'file has no header record', size);
    return facts;
  }

  /**
   * Takes an intact record into the index, and the header's and footer's facts about the file;
   * returns why its contents are unusable, if they are (the caller skips exactly it).
   */
  private takeIntact(type: number, b: Buffer, offset: number, facts: FileFacts): string | undefined {
    const problem = this.take(type, b, offset);
    if (problem !== undefined) return problem;
    if (this.readNote !== undefined) {
      facts.damaged.push({ offset, reason: this.readNote, skippedBytes: 0, resumedAt: offset });
      this.readNote = undefined;
    }
    if (type === RecordType.HEADER) {
      const json = b.subarray(HeaderField.CONFIG_JSON_AT, HeaderField.CONFIG_JSON_AT + b.readUInt32LE(HeaderField.CONFIG_JSON_BYTES));
      try {
        facts.config = JSON.parse(decoder.decode(json)) as Record<string, unknown>;
      } catch {
        return 'header configuration is not valid JSON';
      }
      facts.sawHeader = true;
      facts.sessionStartEpochMs = b.readDoubleLE(HeaderField.SESSION_START_EPOCH_MS);
    } else if (type === RecordType.FOOTER) {
      facts.complete = true;
      facts.droppedAfterClose = b.readDoubleLE(FooterField.DROPPED_AFTER_CLOSE);
    }
    return undefined;
  }

  /**
   * Where reading goes on after a record whose CRC does not match: either its body is damaged (the
   * length is right, the next record is at `byLength`) or its length is (the next record is
   * somewhere else, usually earlier). The first intact record after it decides, unless it lies
   * before `byLength` while an intact record is at `byLength` too: then it is taken only if intact
   * records lead from it to `byLength` exactly (a damaged length), not if it is a record-like
   * piece of the damaged body's data.
   */
  private afterDamagedRecord(fd: number, at: number, byLength: number, size: number, budget: ResyncState): number {
    const first = this.findRecord(fd, at + 8, size, budget);
    if (first >= byLength || !this.intactAt(fd, byLength, size, budget)) return first;
    const frame = Buffer.alloc(FRAME_BYTES);
    let p = first;
    for (let steps = 0; p < byLength && steps < RESYNC_CHAIN_STEPS; steps++) {
      if (!this.intactAt(fd, p, size, budget)) break;
      p += FRAME_BYTES + this.frameAt(fd, p, size, frame);
    }
    return p === byLength ? first : byLength;
  }

  /** A plausible frame at `at`: a type in 1..MAX_RECORD_TYPE, a zero reserved word, a body
   * length that is 8-aligned and fits in the file. Returns the body length, or -1. */
  private frameAt(fd: number, at: number, size: number, frame: Buffer): number {
    if (size - at < FRAME_BYTES) return -1;
    readSync(fd, frame, 0, FRAME_BYTES, at);
    return plausibleFrame(frame, 0, at, size);
  }

  /** True if an intact record (CRC checked) or the end of the file is at `at`. */
  private intactAt(fd: number, at: number, size: number, budget: ResyncState): boolean {
    if (at === size) return true;
    const frame = Buffer.alloc(FRAME_BYTES);
    const len = this.frameAt(fd, at, size, frame);
    if (len < 0) return false;
    budget.crcBudget -= len + 8;
    if (budget.crcBudget < 0) return false;
    const body = Buffer.alloc(len);
    readSync(fd, body, 0, len, at + FRAME_BYTES);
    return crcUpdate(body, crc32(frame.subarray(0, FrameField.CRC))) === frame.readUInt32LE(FrameField.CRC);
  }

  /**
   * The offset of the next intact record at or after `from` (8-aligned, as every record is), or
   * the file size if there is none. A candidate needs a plausible frame, a plausible frame (or the
   * end of the file) right after it, and a matching CRC: a false match inside damaged bytes is a
   * 1 in 2^32 event per candidate that gets that far. CRC work is bounded (`budget`), so a file
   * crafted to be all near-misses cannot make this slow.
   */
  private findRecord(fd: number, from: number, size: number, budget: ResyncState): number {
    // The first look is small (the next record is usually near), later ones a whole window.
    let want = RESYNC_FIRST_BYTES;
    budget.window ??= Buffer.alloc(RESYNC_WINDOW_BYTES);
    const win = budget.window;
    const follow = Buffer.alloc(FRAME_BYTES);
    for (let base = from; base + FRAME_BYTES <= size;) {
      const got = readSync(fd, win, 0, Math.min(want, size - base), base);
      for (let p = 0; p + FRAME_BYTES <= got; p += 8) {
        const at = base + p;
        const len = plausibleFrame(win, p, at, size);
        if (len < 0) continue;
        const next = at + FRAME_BYTES + len;
        if (next !== size && this.frameAt(fd, next, size, follow) < 0) continue;
        if (this.intactAt(fd, at, size, budget)) return at;
        if (budget.crcBudget < 0) return size;
      }
      base += got - FRAME_BYTES + 8; // frames that straddle the window end are looked at again
      want = RESYNC_WINDOW_BYTES;
    }
    return size;
  }

  private addThread(
    registration: number,
    slot: number,
    nodeThreadId: number,
    name: string,
    policy: DropPolicy,
    registeredTs: number,
  ): TraceThread {
    const t: TraceThread = {
      index: this.threads.length,
      registration,
      slot,
      nodeThreadId,
      name,
      registeredTs,
      policy,
      firstTs: NaN,
      lastTs: NaN,
      endReason: undefined,
      attempted: undefined,
    };
    this.threads.push(t);
    this.byRegistration.set(registration, t);
    this.eventsByThread.push(0);
    this.priorityEvents.push(new Array<number>(PRIORITY_COUNT).fill(0));
    this.payloadByThread.push(0);
    this.chunksByThread.push(0);
    this.runningDrops.push(0);
    this.lastChunk.push(undefined);
    this.nextSeq.push(0);
    return t;
  }

  /** Applies one verified record to the index; returns a message if its contents are invalid. */
  private take(type: number, b: Buffer, offset: number): string | undefined {
    switch (type) {
      case RecordType.HEADER:
        return b.length < HeaderField.CONFIG_JSON_AT ||
          HeaderField.CONFIG_JSON_AT + b.readUInt32LE(HeaderField.CONFIG_JSON_BYTES) > b.length
          ? 'header record too short'
          : undefined;
      case RecordType.NAME:
        return this.takeName(b);
      case RecordType.THREAD_START:
        return this.takeThreadStart(b);
      case RecordType.CHUNK:
        return this.takeChunk(b, offset);
      case RecordType.STATE:
        return this.takeState(b);
      case RecordType.THREAD_END:
        return this.takeThreadEnd(b, offset);
      case RecordType.FOOTER:
        return b.length < FOOTER_BYTES ? 'footer record too short' : undefined;
      default:
        return undefined; // a record type from a later minor revision: skipped, framing is generic
    }
  }

  private takeName(b: Buffer): string | undefined {
    const F = NameField;
    const at = this.version < 4 ? V3_NAME_UTF8_AT : F.UTF8_AT;
    if (b.length < at || at + b.readUInt32LE(F.BYTE_LENGTH) > b.length) return 'name record too short';
    const priority = this.version < 4 ? Prio.NORMAL : b.readUInt32LE(F.PRIORITY);
    if (priority >= PRIORITY_COUNT) return `name record: unknown priority code ${priority}`;
    const id = b.readUInt32LE(F.ID);
    this.names.set(id, decoder.decode(b.subarray(at, at + b.readUInt32LE(F.BYTE_LENGTH))));
    if (priority !== Prio.NORMAL) this.priorityCodes.set(id, priority);
    return undefined;
  }

  /** A name's priority ('normal' for ids without a NAME record or before format 4). */
  priorityOf(id: number): Priority {
    return PRIORITIES[this.priorityCodes.get(id) ?? Prio.NORMAL];
  }

  private takeThreadStart(b: Buffer): string | undefined {
    const F = ThreadStartField;
    if (b.length < F.NAME_AT || F.NAME_AT + b.readUInt32LE(F.NAME_BYTES) > b.length) return 'thread record too short';
    const registration = b.readUInt32LE(F.THREAD);
    if (this.byRegistration.has(registration)) return `thread ${registration} started twice`;
    const policy = policyOf(b.readUInt32LE(F.POLICY));
    if (policy === undefined) return `thread ${registration}: unknown drop policy code ${b.readUInt32LE(F.POLICY)}`;
    this.addThread(
      registration,
      b.readUInt32LE(F.SLOT),
      b.readInt32LE(F.NODE_THREAD_ID),
      decoder.decode(b.subarray(F.NAME_AT, F.NAME_AT + b.readUInt32LE(F.NAME_BYTES))),
      policy,
      b.readDoubleLE(F.TS),
    );
    return undefined;
  }

  private takeChunk(b: Buffer, offset: number): string | undefined {
    const F = ChunkField;
    // Version 1 chunks have no identity: the loss block follows the running totals.
    const v1 = this.version === 1;
    const lossAt = v1 ? V1_CHUNK_LOSS_AT : F.LOSS_AT;
    const lossBytes = this.loss.blockBytes;
    if (b.length < lossAt + lossBytes) return 'chunk record too short';
    const nameBytes = v1 ? 0 : b.readUInt32LE(F.NAME_BYTES);
    if (nameBytes > b.length - (F.LOSS_AT + lossBytes)) return 'chunk thread name longer than the record';
    const payloadAt = v1 ? V1_CHUNK_LOSS_AT + lossBytes : chunkPayloadAt(nameBytes, lossBytes);
    const payloadBytes = b.readUInt32LE(F.PAYLOAD_BYTES);
    if (payloadAt + payloadBytes !== b.length) return 'chunk payload length does not match the record';
    const events = b.readUInt32LE(F.EVENTS);
    const byPriority = new Array<number>(PRIORITY_COUNT + 1).fill(0);
    const bad = checkPayload(b, payloadAt, b.length, events, maxKind(this.version), this.priorityCodes, byPriority);
    if (bad !== undefined) return bad;
    const t = this.chunkThread(b, nameBytes);
    if (typeof t === 'string') return t;
    for (let p = 0; p < PRIORITY_COUNT; p++) this.priorityEvents[t.index][p] += byPriority[p];
    const seq = b.readUInt32LE(F.SEQ);
    if (seq < this.nextSeq[t.index])
      return `chunk ${seq} of thread ${t.registration} out of order (the next expected is ${this.nextSeq[t.index]})`;
    if (seq !== this.nextSeq[t.index]) {
      const toTs = events > 0 ? b.readDoubleLE(F.FIRST_TS) : NaN;
      this.gapList.push({ thread: t.index, fromSeq: this.nextSeq[t.index], toSeq: seq - 1, offset, fromTs: t.lastTs, toTs });
    }
    if (events > 0) {
      if (Number.isNaN(t.firstTs)) t.firstTs = b.readDoubleLE(F.FIRST_TS);
      t.lastTs = b.readDoubleLE(F.LAST_TS);
    }
    this.eventsByThread[t.index] += events;
    this.payloadByThread[t.index] += payloadBytes;
    this.chunksByThread[t.index]++;
    const sampledOut = this.loss.reasons > Reason.SAMPLED ? sampledNormal(b, lossAt + Reason.SAMPLED * this.loss.entryBytes) : 0;
    this.chunks.push({ offset, thread: t.index, seq, events, payloadAt, payloadBytes, normal: byPriority[PRIORITY_COUNT], sampledOut });
    this.nextSeq[t.index] = seq + 1;
    this.runningDrops[t.index] += this.takeLoss(b, lossAt, t.index, offset, seq);
    const attempted = b.readDoubleLE(F.ATTEMPTED);
    if (!Number.isNaN(attempted)) {
      this.lastChunk[t.index] = { attempted, balanced: attempted === this.eventsByThread[t.index] + this.runningDrops[t.index] };
    }
    return undefined;
  }

  /** A chunk's thread; one whose THREAD_START is damaged or missing is known from what the chunk
   * repeats of it (format 2). A message if there is no such thread. */
  private chunkThread(b: Buffer, nameBytes: number): TraceThread | string {
    const F = ChunkField;
    const registration = b.readUInt32LE(F.THREAD);
    const known = this.byRegistration.get(registration);
    if (known) return known;
    if (this.version === 1) return `chunk of unknown thread ${registration}`;
    const policy = policyOf(b.readUInt32LE(F.POLICY));
    if (policy === undefined) return `chunk of thread ${registration}: unknown drop policy code ${b.readUInt32LE(F.POLICY)}`;
    const nameAt = F.LOSS_AT + this.loss.blockBytes;
    const name = decoder.decode(b.subarray(nameAt, nameAt + nameBytes));
    const firstTs = b.readDoubleLE(F.FIRST_TS);
    const t = this.addThread(
      registration,
      b.readUInt32LE(F.SLOT),
      b.readInt32LE(F.NODE_THREAD_ID),
      name,
      policy,
      Number.isFinite(firstTs) ? firstTs : 0,
    );
    this.readNote = `thread ${registration} ('${name}') has no start record: known from its chunks`;
    return t;
  }

  private takeState(b: Buffer): string | undefined {
    const F = StateField;
    if (b.length < STATE_BYTES) return 'state record too short';
    const t = this.byRegistration.get(b.readUInt32LE(F.THREAD));
    const from = b.readUInt32LE(F.FROM);
    const to = b.readUInt32LE(F.TO);
    if (!t) return `state change of unknown thread ${b.readUInt32LE(F.THREAD)}`;
    if (from > BpState.RECOVERY || to > BpState.RECOVERY) return `invalid backpressure state ${from}->${to}`;
    this.stateList.push({ thread: t.index, ts: b.readDoubleLE(F.TS), from: STATE_NAMES[from], to: STATE_NAMES[to] });
    return undefined;
  }

  private takeThreadEnd(b: Buffer, offset: number): string | undefined {
    const F = ThreadEndField;
    if (b.length < F.LOSS_AT + this.loss.blockBytes) return 'thread end record too short';
    const t = this.byRegistration.get(b.readUInt32LE(F.THREAD));
    if (!t) return `end of unknown thread ${b.readUInt32LE(F.THREAD)}`;
    const reason = b.readUInt32LE(F.END_REASON);
    t.endReason = END_REASON_NAMES[reason] ?? `unknown(${reason})`;
    t.attempted = b.readDoubleLE(F.ATTEMPTED);
    this.takeLoss(b, F.LOSS_AT, t.index, offset, -1);
    return undefined;
  }

  /** Records the losses a chunk or end record reports; returns how many events they are. */
  private takeLoss(b: Buffer, at: number, thread: number, offset: number, chunkSeq: number): number {
    let total = 0;
    const shape = this.loss;
    for (let r = 0; r < shape.reasons; r++) {
      const entry = at + r * shape.entryBytes;
      const events = b.readDoubleLE(entry + LossField.EVENTS);
      const bytes = b.readDoubleLE(entry + LossField.BYTES);
      if (events === 0 && bytes === 0) continue;
      total += events;
      let byPriority: PriorityCounts | undefined;
      if (shape.byPriority) {
        byPriority = noPriorities();
        PRIORITIES.forEach((p, i) => (byPriority![p] = b.readDoubleLE(entry + LOSS_BY_PRIORITY_AT + i * 8)));
      }
      this.dropList.push({
        thread,
        reason: REASONS[r],
        events,
        bytes,
        firstTs: b.readDoubleLE(entry + LossField.FIRST_TS),
        lastTs: b.readDoubleLE(entry + LossField.LAST_TS),
        offset,
        chunkSeq,
        byPriority,
      });
    }
    return total;
  }

  /** Every event, chunk by chunk in file order (per-thread order is kept). Streams the file. */
  *events(): Generator<TraceEvent> {
    const fd = openSync(this.path, 'r');
    try {
      const buf = { b: Buffer.alloc(64 * 1024) };
      for (const c of this.chunks) yield* this.chunkEvents(fd, c, buf);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Every event in time order across threads (ties: thread order), merged from each thread's
   * chunks (a thread's events are in time order). Holds one chunk per thread in memory, so it
   * streams a file of any size. (The writer never stores a NaN ts; an Infinity sorts last.)
   */
  *eventsByTime(): Generator<TraceEvent> {
    const fd = openSync(this.path, 'r');
    try {
      const perThread = this.threads.map((t) => this.threadEvents(fd, t.index));
      const heads = perThread.map((it) => it.next());
      for (;;) {
        let best = -1;
        for (let i = 0; i < heads.length; i++) {
          const h = heads[i];
          if (h.done) continue;
          if (best < 0 || h.value.ts < (heads[best].value as TraceEvent).ts) best = i;
        }
        if (best < 0) return;
        yield heads[best].value as TraceEvent;
        heads[best] = perThread[best].next();
      }
    } finally {
      closeSync(fd);
    }
  }

  private *threadEvents(fd: number, thread: number): Generator<TraceEvent> {
    const buf = { b: Buffer.alloc(0) };
    for (const c of this.chunks) if (c.thread === thread) yield* this.chunkEvents(fd, c, buf);
  }

  private *chunkEvents(fd: number, c: ChunkIndex, into: { b: Buffer }): Generator<TraceEvent> {
    if (into.b.length < c.payloadBytes) into.b = Buffer.alloc(Math.max(c.payloadBytes, 64 * 1024));
    const buf = into.b;
    readSync(fd, buf, 0, c.payloadBytes, c.offset + FRAME_BYTES + c.payloadAt);
    let p = 0;
    while (p < c.payloadBytes) {
      const word0 = buf.readUInt32LE(p);
      const kind = word0 >>> 24;
      const size = recordBytes(word0);
      const id = buf.readUInt32LE(p + 4);
      const e: TraceEvent = { thread: c.thread, ts: buf.readDoubleLE(p + 8), id, name: this.names.get(id), kind: KIND_NAMES[kind] };
      if (kind === RecordKind.VALUE) e.value = buf.readDoubleLE(p + RECORD_HEADER_BYTES);
      else if (kind === RecordKind.BYTES) {
        const len = word0 & 0xffffff;
        e.payload = Uint8Array.prototype.slice.call(buf, p + RECORD_HEADER_BYTES, p + RECORD_HEADER_BYTES + len);
      } else if (kind >= RecordKind.ASYNC_BEGIN) {
        e.span = buf.readDoubleLE(p + RECORD_HEADER_BYTES);
        if (size > RECORD_HEADER_BYTES + SPAN_BYTES) e.value = buf.readDoubleLE(p + RECORD_HEADER_BYTES + SPAN_BYTES);
      }
      yield e;
      p += size;
    }
  }

  /**
   * Per thread, what it attempted by event name, scaled back up from pressure sampling (which lets
   * go of normal instants, values and payloads only; other events count 1). Sampling is decided
   * per ring (a ring is recorded at one rate, `sampled` losses are reported by the
   * ring's chunk), so each chunk's rate is exact: (K + S) / K. Events of a chunk that sampled
   * nothing count 1. Streams the file.
   */
  scaledCounts(): ScaledCounts[] {
    const out: ScaledCounts[] = this.threads.map((t) => ({ thread: t.index, byName: {}, keptByName: {}, sampledOut: 0, unplaced: 0 }));
    for (const d of this.dropList) {
      if (d.reason === 'sampled') out[d.thread].sampledOut += d.byPriority?.normal ?? d.events;
    }
    const fd = openSync(this.path, 'r');
    try {
      const buf = { b: Buffer.alloc(64 * 1024) };
      for (const c of this.chunks) {
        const o = out[c.thread];
        const factor = c.normal > 0 ? (c.normal + c.sampledOut) / c.normal : 1;
        for (const e of this.chunkEvents(fd, c, buf)) {
          const name = e.name ?? `#${e.id}`;
          const sampleable = !this.priorityCodes.has(e.id) && (e.kind === 'instant' || e.kind === 'value' || e.kind === 'bytes');
          o.byName[name] = (o.byName[name] ?? 0) + (sampleable ? factor : 1);
          o.keptByName[name] = (o.keptByName[name] ?? 0) + 1;
        }
      }
    } finally {
      closeSync(fd);
    }
    for (const o of out) o.unplaced = o.sampledOut - placed(this.chunks, o.thread);
    return out;
  }

  /** Every loss the file reports, in file order. */
  drops(): TraceDrop[] {
    return this.dropList.slice();
  }

  /** Backpressure state changes, per thread in time order. */
  states(): TraceStateChange[] {
    return this.stateList.slice().sort((a, b) => a.thread - b.thread || a.ts - b.ts);
  }

  /** Per thread: its drops by reason and priority, and its state changes, in one pass over the
   * drops and the state changes (a long trace has many of both). */
  private tallies() {
    const perThread = this.threads.map(() => ({
      byReason: {} as Partial<Record<DropReason, number>>,
      byPriority: noPriorities(),
      dropped: 0,
      bytesDropped: 0,
      states: 0,
    }));
    for (const d of this.dropList) {
      const p = perThread[d.thread];
      p.byReason[d.reason] = (p.byReason[d.reason] ?? 0) + d.events;
      p.dropped += d.events;
      p.bytesDropped += d.bytes;
      if (d.byPriority) for (const k of PRIORITIES) p.byPriority[k] += d.byPriority[k];
    }
    for (const c of this.stateList) perThread[c.thread].states++;
    return perThread;
  }

  summary(): TraceSummary {
    const perThread = this.tallies();
    const threads: ThreadSummary[] = this.threads.map((t) => {
      const { byReason, byPriority, dropped, bytesDropped, states } = perThread[t.index];
      const eventsByPriority = noPriorities();
      PRIORITIES.forEach((p, i) => (eventsByPriority[p] = this.priorityEvents[t.index][i]));
      const events = this.eventsByThread[t.index];
      const gaps = this.gapList.filter((g) => g.thread === t.index);
      const missing = gaps.reduce((n, g) => n + g.toSeq - g.fromSeq + 1, 0);
      const short = t.attempted === undefined ? undefined : t.attempted - events - dropped;
      return {
        thread: t.index,
        name: t.name,
        slot: t.slot,
        events,
        payloadBytes: this.payloadByThread[t.index],
        chunks: this.chunksByThread[t.index],
        firstTs: t.firstTs,
        lastTs: t.lastTs,
        attempted: t.attempted,
        dropped,
        bytesDropped,
        droppedByReason: byReason,
        stateChanges: states,
        endReason: t.endReason,
        balanced: t.attempted === undefined ? undefined : t.attempted === events + dropped,
        eventsByPriority,
        droppedByPriority: byPriority,
        unattributedDrops: dropped - PRIORITIES.reduce((n, p) => n + byPriority[p], 0),
        lastChunk: this.lastChunk[t.index],
        unreadable:
          missing > 0 || (this.damaged.length > 0 && short !== undefined && short > 0) ? { chunks: missing, events: short } : undefined,
      };
    });
    const totals = {
      threads: threads.length,
      events: 0,
      attempted: 0,
      dropped: 0,
      bytesDropped: 0,
      droppedByReason: {} as Partial<Record<DropReason, number>>,
      droppedByPriority: noPriorities(),
      droppedAfterClose: this.droppedAfterClose,
      balanced: true,
    };
    for (const t of threads) {
      totals.events += t.events;
      totals.attempted += t.attempted ?? t.events + t.dropped;
      totals.dropped += t.dropped;
      totals.bytesDropped += t.bytesDropped;
      for (const [r, n] of Object.entries(t.droppedByReason)) {
        totals.droppedByReason[r as DropReason] = (totals.droppedByReason[r as DropReason] ?? 0) + n;
      }
      for (const p of PRIORITIES) totals.droppedByPriority[p] += t.droppedByPriority[p];
      if (t.balanced !== true) totals.balanced = false;
    }
    return {
      path: this.path,
      version: this.version,
      sessionStartEpochMs: this.sessionStartEpochMs,
      complete: this.complete,
      damage: this.damage,
      damaged: this.damaged.slice(),
      threads,
      totals,
    };
  }
}

/** Checks that a chunk payload is a whole number of valid records, `events` of them, and counts
 * them by priority into `byPriority` (the codes of the names that are not normal in `codes`). */
function checkPayload(
  b: Buffer,
  start: number,
  end: number,
  events: number,
  lastKind: number,
  codes: ReadonlyMap<number, number>,
  byPriority: number[],
): string | undefined {
  // byPriority[PRIORITY_COUNT]: the normal events of the kinds sampling may let go (<= BYTES).
  let p = start;
  let n = 0;
  while (p < end) {
    if (end - p < RECORD_HEADER_BYTES) return `chunk payload ends inside a record (payload byte ${p - start})`;
    const word0 = b.readUInt32LE(p);
    const size = word0 >>> 24 > lastKind ? -1 : recordBytes(word0);
    if (size < 0 || p + size > end) return `invalid event record at chunk payload byte ${p - start}`;
    const prio = codes.size === 0 ? Prio.NORMAL : (codes.get(b.readUInt32LE(p + 4)) ?? Prio.NORMAL);
    byPriority[prio]++;
    if (prio === Prio.NORMAL && word0 >>> 24 <= RecordKind.BYTES) byPriority[PRIORITY_COUNT]++;
    p += size;
    n++;
  }
  return n === events ? undefined : `chunk says ${events} events but holds ${n}`;
}

/** The normal events a loss entry at `at` counts. */
const sampledNormal = (b: Buffer, at: number): number => b.readDoubleLE(at + LOSS_BY_PRIORITY_AT + Prio.NORMAL * 8);

/** The sampled-out events a thread's chunks with normal events report (what their factors place). */
function placed(chunks: readonly ChunkIndex[], thread: number): number {
  let n = 0;
  for (const c of chunks) if (c.thread === thread && c.normal > 0) n += c.sampledOut;
  return n;
}

/** Opens and indexes a trace file. Throws TraceFormatError if it is not a readable trace at
 * all; damage later in the file is reported in `damage`, with what precedes it readable. */
export function openTrace(path: string): TraceReader {
  return new TraceReader(path);
}
