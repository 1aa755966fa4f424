/**
 * The shared name table (names.ts) and the thread-slot registry (registry.ts), single-threaded
 * and with workers racing on the same buffer.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { BackpressureState, BpState } from '../src/shm/backpressure.js';
import {
  Ctl,
  Layout,
  Loss,
  MAX_NAMES,
  NAME_MAX_BYTES,
  NAME_TABLE_ENTRIES,
  NameEntry,
  NameState,
  REASON_COUNT,
  lossAt,
  SharedViews,
  Slot,
  SlotF64,
  SlotState,
  THREAD_NAME_MAX_BYTES,
  type Geometry,
} from '../src/shm/layout.js';
import { NameTable, NameTableFullError, nameHash } from '../src/shm/names.js';
import { poolQueues } from '../src/shm/pool.js';
import {
  CapacityError,
  claimSlot,
  encodeThreadName,
  orphanThreadSlots,
  readThreadName,
  releaseSlot,
  wipeSlot,
} from '../src/shm/registry.js';
import type { RegistryWorkerData } from './helpers/unit-registry-worker.js';

const geometry: Geometry = { maxThreads: 4, ringsPerThread: 3, ringSize: 4096 };
const views = (g: Geometry = geometry): SharedViews => {
  const layout = new Layout(g);
  return new SharedViews(new SharedArrayBuffer(layout.totalBytes), layout);
};
const utf8 = (s: string) => new TextEncoder().encode(s);

function startWorker<T>(data: RegistryWorkerData): Promise<T> {
  const w = new Worker(new URL('./helpers/unit-registry-worker.js', import.meta.url), { workerData: data });
  return new Promise<T>((resolve, reject) => {
    let result: T | undefined;
    w.on('message', (m: T) => (result = m));
    w.on('error', reject);
    w.on('exit', (code) =>
      code === 0 && result !== undefined ? resolve(result) : reject(new Error(`worker exited ${code} without a result`)),
    );
  });
}

describe('NameTable.define', () => {
  it('ids start at 1 and are dense; the same name always gets the same id', () => {
    const v = views();
    const t = new NameTable(v);
    assert.equal(NameTable.definedCount(v), 0);
    assert.equal(t.define('http.request'), 1);
    assert.equal(t.define('db.query'), 2);
    assert.equal(t.define('http.request'), 1);
    assert.equal(t.define('cache.miss'), 3);
    assert.equal(NameTable.definedCount(v), 3);
  });

  it('another table over the same buffer (another thread) resolves the same ids without redefining', () => {
    const v = views();
    const a = new NameTable(v);
    const names = ['a', 'b', 'ünïcødé ✓', 'x'.repeat(NAME_MAX_BYTES)];
    const ids = names.map((n) => a.define(n));
    const b = new NameTable(v);
    assert.deepEqual(
      names.map((n) => b.define(n)),
      ids,
    );
    assert.equal(NameTable.definedCount(v), names.length, 'no name was defined twice');
  });

  it('names that land on the same table entry are kept apart by probing', () => {
    // Find two names whose hashes map to the same entry.
    const seen = new Map<number, string>();
    let pair: [string, string] | undefined;
    for (let i = 0; !pair; i++) {
      const n = `name-${i}`;
      const e = nameHash(utf8(n)) & (NAME_TABLE_ENTRIES - 1);
      const other = seen.get(e);
      if (other !== undefined) pair = [other, n];
      else seen.set(e, n);
    }
    const v = views();
    const t = new NameTable(v);
    const ids = pair.map((n) => t.define(n));
    assert.deepEqual(ids, [1, 2]);
    const fresh = new NameTable(v);
    assert.deepEqual(
      pair.map((n) => fresh.define(n)),
      ids,
      'both found again from a cold cache',
    );
    assert.deepEqual(
      NameTable.readyEntries(v, () => false).sort((x, y) => x.id - y.id),
      [
        { id: 1, name: pair[0], priority: 0 },
        { id: 2, name: pair[1], priority: 0 },
      ],
    );
  });

  it('refuses names longer than the limit (in UTF-8 bytes) with a RangeError, and empty or non-strings with a TypeError', () => {
    const t = new NameTable(views());
    assert.throws(
      () => t.define('x'.repeat(NAME_MAX_BYTES + 1)),
      (e: Error) => e instanceof RangeError && /113 bytes/.test(e.message),
    );
    // 38 x 3-byte characters: 38 UTF-16 units but 114 bytes.
    assert.throws(() => t.define('€'.repeat(38)), RangeError);
    assert.throws(() => t.define(''), TypeError);
    assert.throws(() => t.define(undefined as unknown as string), TypeError);
    assert.throws(() => t.define(42 as unknown as string), TypeError);
  });

  it('refuses new names once MAX_NAMES are defined, but still resolves defined ones', () => {
    const v = views();
    const t = new NameTable(v);
    const id = t.define('kept');
    Atomics.store(v.i32, Ctl.NEXT_NAME_ID, MAX_NAMES);
    assert.throws(
      () => t.define('one-too-many'),
      (e: Error) => e instanceof NameTableFullError && e.name === 'NameTableFullError' && /1536 names/.test(e.message),
    );
    assert.equal(new NameTable(v).define('kept'), id);
  });

  it('reports a full table (every entry taken by other names) instead of looping', () => {
    const v = views();
    for (let e = 0; e < NAME_TABLE_ENTRIES; e++) {
      const w = v.layout.nameEntryOffset(e) >> 2;
      v.i32[w + NameEntry.STATE] = NameState.READY;
      v.i32[w + NameEntry.ID] = e + 1;
      v.i32[w + NameEntry.HASH] = 0; // matches no real hash
    }
    assert.throws(
      () => new NameTable(v).define('anything'),
      (e: Error) => e instanceof NameTableFullError && /no room/.test(e.message),
    );
  });

  it('an entry left half-written by a dead thread makes define() fail after a bounded wait, not hang', () => {
    const v = views();
    const bytes = utf8('victim');
    const entry = nameHash(bytes) & (NAME_TABLE_ENTRIES - 1);
    v.i32[(v.layout.nameEntryOffset(entry) >> 2) + NameEntry.STATE] = NameState.WRITING;
    assert.throws(() => new NameTable(v).define('victim'), /half-written/);
  });

  it('waits for an entry another thread is still writing, then uses it (no duplicate id)', async () => {
    const v = views();
    const bytes = utf8('late');
    const hash = nameHash(bytes);
    const index = hash & (NAME_TABLE_ENTRIES - 1);
    // The other thread has claimed the entry and taken id 1, but not published it yet.
    v.i32[(v.layout.nameEntryOffset(index) >> 2) + NameEntry.STATE] = NameState.WRITING;
    Atomics.store(v.i32, Ctl.NEXT_NAME_ID, 1);
    const control = new SharedArrayBuffer(8);
    const ctl = new Int32Array(control);
    const done = startWorker<{ published: boolean }>({
      mode: 'publish-late',
      buffer: v.buffer,
      geometry,
      control,
      workers: 1,
      entry: { index, id: 1, hash, bytes },
    });
    for (let i = 0; Atomics.load(ctl, 1) === 0; i++) {
      if (i > 10_000) throw new Error('worker did not start');
      await new Promise((r) => setTimeout(r, 1));
    }
    Atomics.store(ctl, 0, 1);
    assert.equal(new NameTable(v).define('late'), 1);
    assert.equal(NameTable.definedCount(v), 1, 'no second id was taken');
    assert.deepEqual(await done, { published: true });
  });

  it('nameHash is 32-bit FNV-1a over the UTF-8 bytes', () => {
    assert.equal(nameHash(new Uint8Array(0)) >>> 0, 0x811c9dc5);
    assert.equal(nameHash(utf8('a')) >>> 0, 0xe40c292c);
    assert.equal(nameHash(utf8('foobar')) >>> 0, 0xbf9cf968);
  });
});

describe('NameTable.readyEntries', () => {
  it('lists every published name with its id, skipping what the caller already has', () => {
    const v = views();
    const t = new NameTable(v);
    const names = ['alpha', 'beta', 'γάμμα', 'delta'];
    const priorities = [undefined, 'critical', 'debug', 'normal'] as const;
    names.forEach((n, i) => t.define(n, priorities[i]));
    const all = NameTable.readyEntries(v, () => false).sort((a, b) => a.id - b.id);
    assert.deepEqual(
      all,
      names.map((name, i) => ({ id: i + 1, name, priority: [0, 1, 2, 0][i] })),
    );
    const rest = NameTable.readyEntries(v, (id) => id <= 2).sort((a, b) => a.id - b.id);
    assert.deepEqual(rest, [
      { id: 3, name: 'γάμμα', priority: 2 },
      { id: 4, name: 'delta', priority: 0 },
    ]);
    // Counted for the writers' mode decisions; a conflicting priority is refused, none keeps it.
    assert.deepEqual([v.i32[Ctl.CRITICAL_NAMES], v.i32[Ctl.DEBUG_NAMES]], [1, 1]);
    assert.throws(() => t.define('beta', 'debug'), TypeError);
    assert.throws(() => new NameTable(v).define('alpha', 'critical'), /first defined with/);
    assert.equal(t.define('beta'), 2);
    assert.throws(() => t.define('x', 'urgent' as never), /priority must be one of normal, critical, debug/);
    assert.equal(NameTable.priorityOf(v, 0xffffffff), 0, 'an id beyond the table is normal');
  });

  it('leaves out entries that are still being written', () => {
    const v = views();
    new NameTable(v).define('done');
    v.i32[(v.layout.nameEntryOffset(5) >> 2) + NameEntry.STATE] = NameState.WRITING;
    assert.deepEqual(
      NameTable.readyEntries(v, () => false),
      [{ id: 1, name: 'done', priority: 0 }],
    );
  });
});

describe('concurrent define() from several threads', () => {
  it('every thread gets the same id for the same name, and ids are dense 1..N', async () => {
    const v = views();
    const all = Array.from({ length: 300 }, (_, i) => `event.${i % 7}.${i}`);
    const workers = 4;
    const control = new SharedArrayBuffer(8);
    // Overlapping sets in different orders: worker k takes names i with (i + k) % 4 != 0, rotated.
    const sets = Array.from({ length: workers }, (_, k) => {
      const mine = all.filter((_, i) => (i + k) % 4 !== 0);
      return [...mine.slice((k * 37) % mine.length), ...mine.slice(0, (k * 37) % mine.length)];
    });
    const results = await Promise.all(
      sets.map((names) =>
        startWorker<{ ids: Record<string, number> }>({ mode: 'define', buffer: v.buffer, geometry, control, workers, names }),
      ),
    );
    const agreed = new Map<string, number>();
    for (const { ids } of results) {
      for (const [name, id] of Object.entries(ids)) {
        const prev = agreed.get(name);
        if (prev === undefined) agreed.set(name, id);
        else assert.equal(id, prev, `${name}: same id in every thread`);
      }
    }
    assert.equal(agreed.size, all.length);
    assert.deepEqual(
      [...agreed.values()].sort((a, b) => a - b),
      Array.from({ length: all.length }, (_, i) => i + 1),
      'ids are exactly 1..N: none lost, none duplicated',
    );
    assert.equal(NameTable.definedCount(v), all.length);
    const ready = NameTable.readyEntries(v, () => false);
    assert.equal(ready.length, all.length);
    for (const { id, name } of ready) assert.equal(agreed.get(name), id);
  });
});

// ------------------------------------------------------------------ registry

const slotWord = (v: SharedViews, slot: number, w: number) => v.i32[v.layout.slotI32(slot, w)];

describe('claimSlot', () => {
  it('claims free slots in order and publishes a fully initialised LIVE slot', () => {
    const v = views();
    const a = claimSlot(v, encodeThreadName('main'), 1, 0, 2_000);
    const b = claimSlot(v, encodeThreadName('worker-7'), 7, 1, 3_000);
    assert.deepEqual(a, { slot: 0, registration: 0 });
    assert.deepEqual(b, { slot: 1, registration: 1 });
    assert.equal(slotWord(v, 1, Slot.STATE), SlotState.LIVE);
    assert.equal(slotWord(v, 1, Slot.REGISTRATION), 1);
    assert.equal(slotWord(v, 1, Slot.NODE_THREAD_ID), 7);
    assert.equal(slotWord(v, 1, Slot.POLICY), 1);
    assert.equal(readThreadName(v, 1), 'worker-7');
    assert.equal(readThreadName(v, 0), 'main');
    assert.equal(v.f64[v.layout.slotF64(1, SlotF64.REGISTERED_AT)], 3_000_000, 'registration time in ns');
    // Pool: ring 0 active, the others free.
    assert.equal(slotWord(v, 1, Slot.ACTIVE_RING), 0);
    assert.equal(poolQueues(v.i32, v.layout, 1).free.size(), geometry.ringsPerThread - 1);
    // Backpressure: NORMAL since the claim.
    const bp = new BackpressureState(v.i32, v.i64, v.layout, 1);
    assert.equal(bp.state(), BpState.NORMAL);
    assert.equal(bp.enteredAtUs(), 3_000);
    // Writer loss block: no losses, NaN time range.
    const loss = v.layout.slotF64(1, SlotF64.WRITER_LOSS);
    for (let r = 0; r < REASON_COUNT; r++) {
      assert.equal(v.f64[lossAt(loss, r) + Loss.EVENTS], 0);
      assert.ok(Number.isNaN(v.f64[lossAt(loss, r) + Loss.FIRST_TS]));
    }
    // Untouched slots stay FREE.
    assert.equal(slotWord(v, 2, Slot.STATE), SlotState.FREE);
  });

  it('skips slots that are not FREE', () => {
    const v = views();
    v.i32[v.layout.slotI32(0, Slot.STATE)] = SlotState.CLOSING;
    v.i32[v.layout.slotI32(1, Slot.STATE)] = SlotState.ORPHANED;
    v.i32[v.layout.slotI32(2, Slot.STATE)] = SlotState.CLAIMING;
    assert.equal(claimSlot(v, encodeThreadName('t'), 1, 0, 0).slot, 3);
  });

  it('when every slot is taken, throws a CapacityError naming the capacity and how to raise it', () => {
    const v = views();
    for (let i = 0; i < geometry.maxThreads; i++) claimSlot(v, encodeThreadName(`t${i}`), i, 0, 0);
    assert.throws(
      () => claimSlot(v, encodeThreadName('one more'), 99, 0, 0),
      (e: Error) =>
        e instanceof CapacityError &&
        e.name === 'CapacityError' &&
        e.capacity === 4 &&
        /all 4 thread slots are in use/.test(e.message) &&
        /maxThreads/.test(e.message) &&
        /RINGTRACE_MAX_THREADS/.test(e.message),
    );
  });

  it('encodeThreadName takes up to 128 bytes of UTF-8 and refuses more with a RangeError', () => {
    assert.equal(encodeThreadName('n'.repeat(THREAD_NAME_MAX_BYTES)).length, THREAD_NAME_MAX_BYTES);
    assert.throws(() => encodeThreadName('n'.repeat(THREAD_NAME_MAX_BYTES + 1)), RangeError);
    assert.throws(() => encodeThreadName('é'.repeat(65)), RangeError); // 130 bytes
  });

  it('readThreadName never reads past the name area, whatever the length word says', () => {
    const v = views();
    claimSlot(v, encodeThreadName('n'.repeat(THREAD_NAME_MAX_BYTES)), 1, 0, 0);
    v.i32[v.layout.slotI32(0, Slot.NAME_LENGTH)] = 100_000;
    assert.equal(readThreadName(v, 0), 'n'.repeat(THREAD_NAME_MAX_BYTES));
  });
});

/** Fills a slot's header (but its state word) and its rings with non-zero garbage. */
function dirty(v: SharedViews, slot: number): void {
  const L = v.layout;
  v.u8.fill(0xab, L.slotOffset(slot) + 4, L.slotOffset(slot) + L.slotHeaderBytes);
  v.u8.fill(0xcd, L.ringOffset(slot, 0), L.ringOffset(slot, 0) + L.ringsPerThread * L.ringSize);
}

/** Asserts a slot is clean: header zero but for the loss-block NaN times, rings all zero. */
function assertClean(v: SharedViews, slot: number): void {
  const L = v.layout;
  const nanWords = new Set<number>();
  const loss = L.slotF64(slot, SlotF64.WRITER_LOSS);
  for (let r = 0; r < REASON_COUNT; r++) {
    nanWords.add(lossAt(loss, r) + Loss.FIRST_TS);
    nanWords.add(lossAt(loss, r) + Loss.LAST_TS);
  }
  nanWords.add(L.slotF64(slot, SlotF64.RETIRED_ATTEMPTED)); // "not retired by a closing tracer"
  const first = L.slotOffset(slot) >> 3;
  for (let w = first; w < first + L.slotHeaderBytes / 8; w++) {
    if (nanWords.has(w)) assert.ok(Number.isNaN(v.f64[w]), `word ${w - first} is NaN (none yet)`);
    else if (w === first) assert.equal(v.i32[(w << 1) + 1], 0, 'the word after the state word is zero');
    else assert.equal(v.i64[w], 0n, `header 8-byte word ${w - first} is zero`);
  }
  const rings = v.u8.subarray(L.ringOffset(slot, 0), L.ringOffset(slot, 0) + L.ringsPerThread * L.ringSize);
  assert.equal(
    rings.findIndex((b) => b !== 0),
    -1,
    'ring bytes are zero',
  );
}

describe('wipeSlot / releaseSlot', () => {
  it('wipeSlot zeroes the header (but the state word) and the rings; neighbours untouched', () => {
    const v = views();
    for (let s = 0; s < geometry.maxThreads; s++) dirty(v, s);
    v.i32[v.layout.slotI32(2, Slot.STATE)] = SlotState.CLOSING;
    wipeSlot(v, 2);
    assertClean(v, 2);
    assert.equal(slotWord(v, 2, Slot.STATE), SlotState.CLOSING, "the state word is the caller's");
    for (const s of [1, 3]) {
      assert.equal(v.u8[v.layout.slotOffset(s) + 4], 0xab, `slot ${s} header untouched`);
      assert.equal(v.u8[v.layout.ringOffset(s, 0)], 0xcd, `slot ${s} rings untouched`);
      assert.equal(v.u8[v.layout.ringOffset(s, geometry.ringsPerThread - 1) + geometry.ringSize - 1], 0xcd);
    }
  });

  it('releaseSlot leaves the slot FREE and clean: a reuse sees no stale name, counters or ring bytes', () => {
    const v = views();
    const first = claimSlot(v, encodeThreadName('a-rather-long-thread-name'), 3, 1, 10);
    dirty(v, first.slot);
    v.i32[v.layout.slotI32(first.slot, Slot.STATE)] = SlotState.CLOSING;
    releaseSlot(v, first.slot);
    assert.equal(slotWord(v, first.slot, Slot.STATE), SlotState.FREE);
    assertClean(v, first.slot);
    const again = claimSlot(v, encodeThreadName('short'), 4, 0, 20);
    assert.equal(again.slot, first.slot, 'the released slot is claimable again');
    assert.equal(again.registration, first.registration + 1, 'a new registration number');
    assert.equal(readThreadName(v, again.slot), 'short');
    assert.equal(slotWord(v, again.slot, Slot.EXHAUSTIONS), 0);
    assert.equal(slotWord(v, again.slot, Slot.ILLEGAL_TRANSITIONS), 0);
    assert.deepEqual(new BackpressureState(v.i32, v.i64, v.layout, again.slot).edgeCounts(), [0, 0, 0, 0, 0, 0]);
    assert.equal(v.f64[v.layout.slotF64(again.slot, SlotF64.ATTEMPTED)], 0);
  });
});

describe('orphanThreadSlots', () => {
  it('marks only the LIVE slots of that thread as ORPHANED and says how many', () => {
    const g = { maxThreads: 6, ringsPerThread: 2, ringSize: 4096 };
    const v = views(g);
    const s7a = claimSlot(v, encodeThreadName('a'), 7, 0, 0).slot;
    const s8 = claimSlot(v, encodeThreadName('b'), 8, 0, 0).slot;
    const s7b = claimSlot(v, encodeThreadName('c'), 7, 0, 0).slot;
    const s7closing = claimSlot(v, encodeThreadName('d'), 7, 0, 0).slot;
    v.i32[v.layout.slotI32(s7closing, Slot.STATE)] = SlotState.CLOSING;
    // A FREE slot that once held thread 7 (stale id): not a registration, not touched.
    v.i32[v.layout.slotI32(5, Slot.NODE_THREAD_ID)] = 7;
    assert.equal(orphanThreadSlots(v, 7), 2);
    assert.equal(slotWord(v, s7a, Slot.STATE), SlotState.ORPHANED);
    assert.equal(slotWord(v, s7b, Slot.STATE), SlotState.ORPHANED);
    assert.equal(slotWord(v, s8, Slot.STATE), SlotState.LIVE);
    assert.equal(slotWord(v, s7closing, Slot.STATE), SlotState.CLOSING);
    assert.equal(slotWord(v, 5, Slot.STATE), SlotState.FREE);
    assert.equal(orphanThreadSlots(v, 7), 0, 'already orphaned: nothing more to mark');
    assert.equal(orphanThreadSlots(v, 123), 0);
  });

  it('frees a slot whose thread died while claiming it (CLAIMING never becomes a leak)', () => {
    const v = views({ maxThreads: 2, ringsPerThread: 2, ringSize: 4096 });
    // What a thread terminated inside claimSlot() leaves: CLAIMING, owner id already stored.
    v.i32[v.layout.slotI32(0, Slot.STATE)] = SlotState.CLAIMING;
    v.i32[v.layout.slotI32(0, Slot.NODE_THREAD_ID)] = 9;
    v.u8[v.layout.ringOffset(0, 1) + 5] = 0xee;
    assert.equal(orphanThreadSlots(v, 9), 0, 'nothing to salvage');
    assert.equal(slotWord(v, 0, Slot.STATE), SlotState.FREE);
    assert.equal(slotWord(v, 0, Slot.NODE_THREAD_ID), 0);
    assert.equal(v.u8[v.layout.ringOffset(0, 1) + 5], 0, 'wiped');
    assert.equal(claimSlot(v, encodeThreadName('next'), 10, 0, 0).slot, 0, 'claimable again');
  });
});

describe('concurrent claimSlot from several threads', () => {
  it('gives every winner a distinct slot and registration; the rest get CapacityError', async () => {
    const v = views(); // 4 slots
    const workers = 7;
    const control = new SharedArrayBuffer(8);
    const results = await Promise.all(
      Array.from({ length: workers }, (_, i) =>
        startWorker<{ claim?: { slot: number; registration: number }; error?: string }>({
          mode: 'claim',
          buffer: v.buffer,
          geometry,
          control,
          workers,
          threadId: 100 + i,
        }),
      ),
    );
    const claims = results.flatMap((r) => (r.claim ? [r.claim] : []));
    const errors = results.flatMap((r) => (r.error ? [r.error] : []));
    assert.equal(claims.length, geometry.maxThreads);
    assert.deepEqual(errors, new Array(workers - geometry.maxThreads).fill('CapacityError'));
    assert.deepEqual(claims.map((c) => c.slot).sort(), [0, 1, 2, 3]);
    assert.deepEqual(claims.map((c) => c.registration).sort(), [0, 1, 2, 3]);
    // Each slot holds the thread that claimed it.
    for (let s = 0; s < geometry.maxThreads; s++) {
      assert.equal(slotWord(v, s, Slot.STATE), SlotState.LIVE);
      const tid = slotWord(v, s, Slot.NODE_THREAD_ID);
      assert.equal(readThreadName(v, s), `w${tid}`);
      assert.equal(slotWord(v, s, Slot.REGISTRATION), claims.find((c) => c.slot === s)!.registration);
    }
  });
});
