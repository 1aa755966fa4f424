/**
 * The interned event-name table, shared by every thread: `define(name)` returns the same id for
 * the same name from any thread. Open addressing over NAME_TABLE_ENTRIES entries in the shared
 * buffer; an entry is claimed by CAS EMPTY -> WRITING, filled, then published READY.
 */
import { Ctl, MAX_NAMES, NAME_MAX_BYTES, NAME_TABLE_ENTRIES, NameEntry, NameState, type SharedViews } from './layout.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class NameTableFullError extends Error {
  override readonly name = 'NameTableFullError';
}

/** FNV-1a over the UTF-8 bytes; never 0 so that 0 can mean "no hash". */
export function nameHash(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return h === 0 ? 1 : h;
}

export class NameTable {
  private readonly cache = new Map<string, number>();

  constructor(private readonly v: SharedViews) {}

  define(name: string): number {
    const cached = this.cache.get(name);
    if (cached !== undefined) return cached;
    if (typeof name !== 'string' || name.length === 0) throw new TypeError('ringtrace: define(name) needs a non-empty string');
    const bytes = encoder.encode(name);
    if (bytes.length > NAME_MAX_BYTES) {
      throw new RangeError(`ringtrace: event name is ${bytes.length} bytes of UTF-8; at most ${NAME_MAX_BYTES} are allowed`);
    }
    const id = this.intern(bytes, nameHash(bytes), name);
    this.cache.set(name, id);
    return id;
  }

  private intern(bytes: Uint8Array, hash: number, name: string): number {
    const { i32, u8, layout } = this.v;
    for (let probe = 0; probe < NAME_TABLE_ENTRIES; probe++) {
      const entry = (hash + probe) & (NAME_TABLE_ENTRIES - 1);
      const base = layout.nameEntryOffset(entry);
      const w = base >> 2;
      let state = Atomics.load(i32, w + NameEntry.STATE);
      if (state === NameState.EMPTY) {
        if (Atomics.load(i32, Ctl.NEXT_NAME_ID) >= MAX_NAMES) {
          throw new NameTableFullError(`ringtrace: the name table is full (${MAX_NAMES} names); define fewer distinct names`);
        }
        state = Atomics.compareExchange(i32, w + NameEntry.STATE, NameState.EMPTY, NameState.WRITING);
        if (state === NameState.EMPTY) {
          const id = Atomics.add(i32, Ctl.NEXT_NAME_ID, 1) + 1; // ids start at 1; 0 is "no name"
          i32[w + NameEntry.ID] = id;
          i32[w + NameEntry.BYTE_LENGTH] = bytes.length;
          i32[w + NameEntry.HASH] = hash;
          u8.set(bytes, base + NameEntry.BYTES_OFFSET);
          // Release: the id and bytes above are visible to whoever loads READY.
          Atomics.store(i32, w + NameEntry.STATE, NameState.READY);
          return id;
        }
      }
      if (state === NameState.WRITING) waitReady(i32, w + NameEntry.STATE);
      // READY (acquired by the load above): compare.
      if (
        i32[w + NameEntry.HASH] === hash &&
        i32[w + NameEntry.BYTE_LENGTH] === bytes.length &&
        sameBytes(u8, base + NameEntry.BYTES_OFFSET, bytes)
      ) {
        return i32[w + NameEntry.ID];
      }
    }
    throw new NameTableFullError(`ringtrace: no room in the name table for ${JSON.stringify(name)}`);
  }

  /** Every READY entry, for the drain to write name records. */
  static readyEntries(v: SharedViews, skip: (id: number) => boolean): Array<{ id: number; name: string }> {
    const out: Array<{ id: number; name: string }> = [];
    for (let entry = 0; entry < NAME_TABLE_ENTRIES; entry++) {
      const base = v.layout.nameEntryOffset(entry);
      const w = base >> 2;
      if (Atomics.load(v.i32, w + NameEntry.STATE) !== NameState.READY) continue;
      const id = v.i32[w + NameEntry.ID];
      if (skip(id)) continue;
      const len = v.i32[w + NameEntry.BYTE_LENGTH];
      out.push({ id, name: decoder.decode(v.u8.slice(base + NameEntry.BYTES_OFFSET, base + NameEntry.BYTES_OFFSET + len)) });
    }
    return out;
  }

  static definedCount(v: SharedViews): number {
    return Atomics.load(v.i32, Ctl.NEXT_NAME_ID);
  }
}

function sameBytes(u8: Uint8Array, at: number, bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (u8[at + i] !== bytes[i]) return false;
  return true;
}

/** Another thread is between claiming and publishing an entry: a few stores away. Wait briefly,
 * with a bound, so a thread killed in that window cannot hang define() forever. */
function waitReady(i32: Int32Array, idx: number): number {
  for (let i = 0; i < 2000; i++) {
    const s = Atomics.load(i32, idx);
    if (s !== NameState.WRITING) return s;
    Atomics.wait(i32, idx, NameState.WRITING, 0.5);
  }
  throw new Error('ringtrace: a name-table entry stayed half-written for 1 s (its thread died while defining it)');
}
