/**
 * Worker for the name-table and registry concurrency tests, on a shared buffer:
 * - 'define': defines a list of names (all workers start together) and reports name -> id.
 * - 'claim': claims one slot (all workers start together) and reports it, or the error name.
 * - 'publish-late': waits until control[0] != 0, then finishes writing a name entry that the
 *   main thread left WRITING (a thread between claiming and publishing an entry).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Layout, NameEntry, NameState, SharedViews, type Geometry } from '../../src/shm/layout.js';
import { NameTable } from '../../src/shm/names.js';
import { claimSlot, encodeThreadName } from '../../src/shm/registry.js';

export interface RegistryWorkerData {
  mode: 'define' | 'claim' | 'publish-late';
  buffer: SharedArrayBuffer;
  geometry: Geometry;
  /** Int32Array: [0] go flag (publish-late), [1] start barrier counter. */
  control: SharedArrayBuffer;
  workers: number;
  names?: string[];
  threadId?: number;
  /** publish-late: the entry to publish, with its id, hash and bytes. */
  entry?: { index: number; id: number; hash: number; bytes: Uint8Array };
}

const d = workerData as RegistryWorkerData;
const v = new SharedViews(d.buffer, new Layout(d.geometry));
const ctl = new Int32Array(d.control);
const post = (m: unknown) => parentPort!.postMessage(m);

function barrier(): void {
  Atomics.add(ctl, 1, 1);
  while (Atomics.load(ctl, 1) < d.workers) {
    /* spin: start together so the operations overlap */
  }
}

if (d.mode === 'define') {
  const table = new NameTable(v);
  barrier();
  const ids: Record<string, number> = {};
  for (const name of d.names!) ids[name] = table.define(name);
  post({ ids });
} else if (d.mode === 'claim') {
  barrier();
  try {
    post({ claim: claimSlot(v, encodeThreadName(`w${d.threadId}`), d.threadId!, 0, 1) });
  } catch (e) {
    post({ error: (e as Error).name });
  }
} else {
  const e = d.entry!;
  const base = v.layout.nameEntryOffset(e.index);
  const w = base >> 2;
  Atomics.add(ctl, 1, 1); // started
  while (Atomics.load(ctl, 0) === 0) {
    /* spin until the main thread is about to look the name up */
  }
  const pause = new Int32Array(new SharedArrayBuffer(4));
  Atomics.wait(pause, 0, 0, 20); // let the main thread find the entry WRITING and wait for it
  v.i32[w + NameEntry.ID] = e.id;
  v.i32[w + NameEntry.BYTE_LENGTH] = e.bytes.length;
  v.i32[w + NameEntry.HASH] = e.hash;
  v.u8.set(e.bytes, base + NameEntry.BYTES_OFFSET);
  Atomics.store(v.i32, w + NameEntry.STATE, NameState.READY);
  post({ published: true });
}
