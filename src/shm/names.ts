/**
 * The interned event-name table, shared by every thread: `define(name)` returns the same id for
 * the same name from any thread. Open addressing over NAME_TABLE_ENTRIES entries in the shared
 * buffer; an entry is claimed by CAS EMPTY -> WRITING, filled, then published READY.
 *
 * A name's priority is fixed by the define() that creates it: its code goes into the priority
 * table (one byte per id) before the entry is published READY, so whoever acquires READY (any
 * define() of the name, the drain writing NAME records) reads it; a writer reads it with a plain
 * load on its slow path, for ids it got from define() (ordered by that acquire, or by the message
 * that carried the id from another thread). Defining an existing name with another priority throws.
 */
import {
  Ctl,
  MAX_NAMES,
  NAME_MAX_BYTES,
  NAME_TABLE_ENTRIES,
  NameEntry,
  NameState,
  PRIORITIES,
  Prio,
  priorityCode,
  type Priority,
  type SharedViews,
} from './layout.js';

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

  define(name: string, priority?: Priority): number {
    const prio = priority === undefined ? undefined : priorityCode(priority);
    if (prio !== undefined && prio < 0) {
      throw new TypeError(`ringtrace: define(name, { priority }): priority must be one of ${PRIORITIES.join(', ')}`);
    }
    const cached = this.cache.get(name);
    if (cached !== undefined) return this.checkPriority(name, cached, prio);
    if (typeof name !== 'string' || name.length === 0) throw new TypeError('ringtrace: define(name) needs a non-empty string');
    const bytes = encoder.encode(name);
    if (bytes.length > NAME_MAX_BYTES) {
      throw new RangeError(`ringtrace: event name is ${bytes.length} bytes of UTF-8; at most ${NAME_MAX_BYTES} are allowed`);
    }
    const id = this.intern(bytes, nameHash(bytes), name, prio ?? Prio.NORMAL);
    this.cache.set(name, id);
    return this.checkPriority(name, id, prio);
  }

  /** The priority code of an id (normal for an id no define() created). */
  static priorityOf(v: SharedViews, id: number): number {
    return id > 0 && id <= MAX_NAMES ? v.u8[v.layout.priorityTableOffset + id] : Prio.NORMAL;
  }

  private checkPriority(name: string, id: number, prio: number | undefined): number {
    const fixed = NameTable.priorityOf(this.v, id);
    if (prio !== undefined && prio !== fixed) {
      throw new TypeError(
        `ringtrace: ${JSON.stringify(name)} was defined with priority ${PRIORITIES[fixed]}; a name keeps the priority it was first defined with`,
      );
    }
    return id;
  }

  private intern(bytes: Uint8Array, hash: number, name: string, prio: number): number {
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
          u8[layout.priorityTableOffset + id] = prio;
          if (prio === Prio.CRITICAL) Atomics.add(i32, Ctl.CRITICAL_NAMES, 1);
          else if (prio === Prio.DEBUG) Atomics.add(i32, Ctl.DEBUG_NAMES, 1);
          // Release: the id, bytes and priority above are visible to whoever loads READY.
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
  static readyEntries(v: SharedViews, skip: (id: number) => boolean): Array<{ id: number; name: string; priority: number }> {
    const out: Array<{ id: number; name: string; priority: number }> = [];
    for (let entry = 0; entry < NAME_TABLE_ENTRIES; entry++) {
      const base = v.layout.nameEntryOffset(entry);
      const w = base >> 2;
      if (Atomics.load(v.i32, w + NameEntry.STATE) !== NameState.READY) continue;
      const id = v.i32[w + NameEntry.ID];
      if (skip(id)) continue;
      const len = v.i32[w + NameEntry.BYTE_LENGTH];
      const name = decoder.decode(v.u8.slice(base + NameEntry.BYTES_OFFSET, base + NameEntry.BYTES_OFFSET + len));
      out.push({ id, name, priority: NameTable.priorityOf(v, id) });
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
