/**
 * A thread's ring pool: `ringsPerThread` rings, one active in the writer's hands, the others
 * travelling through two single-producer/single-consumer queues of ring indices:
 *
 * ```
 *   writer --(submit: full ring)--> drain --(free: emptied ring)--> writer
 * ```
 *
 * Each queue holds at most ringsPerThread entries, which is every ring there is, so a push can
 * only fail if the ring accounting is broken (checked, never ignored). Cursors count up and wrap
 * at a multiple of the capacity so that `cursor % capacity` stays continuous across the wrap.
 */
import { Slot, type Layout } from './layout.js';

export class SpscQueue {
  private readonly wrap: number;

  constructor(
    private readonly i32: Int32Array,
    /** Int32 index of entry 0. */
    private readonly entries: number,
    readonly capacity: number,
    /** Int32 index of the consumer's cursor (written only by the consumer). */
    private readonly headIdx: number,
    /** Int32 index of the producer's cursor (written only by the producer). */
    private readonly tailIdx: number,
  ) {
    this.wrap = capacity * Math.floor(0x40000000 / capacity);
  }

  /** Producer side. */
  push(value: number): boolean {
    const tail = this.i32[this.tailIdx]; // own cursor: no other thread writes it
    // Acquire: the consumer has finished with the entry it moved past.
    const head = Atomics.load(this.i32, this.headIdx);
    if (this.distance(head, tail) >= this.capacity) return false;
    this.i32[this.entries + (tail % this.capacity)] = value;
    // Release: publishes the entry, and everything the producer wrote into the ring it names,
    // to the consumer's Atomics.load of this cursor.
    Atomics.store(this.i32, this.tailIdx, tail + 1 === this.wrap ? 0 : tail + 1);
    return true;
  }

  /** Consumer side: the next entry, or -1 if the queue is empty. */
  pop(): number {
    const head = this.i32[this.headIdx]; // own cursor
    // Acquire: pairs with the producer's release store in push().
    const tail = Atomics.load(this.i32, this.tailIdx);
    if (head === tail) return -1;
    const value = this.i32[this.entries + (head % this.capacity)];
    // Release: the entry slot may be reused by the producer from now on.
    Atomics.store(this.i32, this.headIdx, head + 1 === this.wrap ? 0 : head + 1);
    return value;
  }

  /** Consumer-side cheap hint: a plain load of the producer's cursor. May be stale, never wrong
   * in a harmful way: a stale "empty" only delays the next pop, and pop() re-reads atomically. */
  hintNonEmpty(): boolean {
    return this.i32[this.tailIdx] !== this.i32[this.headIdx];
  }

  /** Consumer-side cheap hint of size(): plain loads (the head is the consumer's own). The tail
   * may be stale, so the count may be low, never high: the producer only ever adds entries. */
  hintSize(): number {
    return this.distance(this.i32[this.headIdx], this.i32[this.tailIdx]);
  }

  /** Entries in the queue, as seen by either side. */
  size(): number {
    return this.distance(Atomics.load(this.i32, this.headIdx), Atomics.load(this.i32, this.tailIdx));
  }

  private distance(head: number, tail: number): number {
    const d = tail - head;
    return d < 0 ? d + this.wrap : d;
  }
}

export interface PoolQueues {
  submit: SpscQueue;
  free: SpscQueue;
}

export function poolQueues(i32: Int32Array, layout: Layout, slot: number): PoolQueues {
  const R = layout.ringsPerThread;
  return {
    submit: new SpscQueue(
      i32,
      layout.submitQueueI32(slot),
      R,
      layout.slotI32(slot, Slot.SUBMIT_HEAD),
      layout.slotI32(slot, Slot.SUBMIT_TAIL),
    ),
    free: new SpscQueue(i32, layout.freeQueueI32(slot), R, layout.slotI32(slot, Slot.FREE_HEAD), layout.slotI32(slot, Slot.FREE_TAIL)),
  };
}

/**
 * Puts a slot's pool in its initial state: ring 0 active, every other ring queued as free.
 * Called by the thread that claimed the slot, before the slot becomes LIVE (that store
 * publishes it), so plain stores suffice.
 */
export function initPool(i32: Int32Array, layout: Layout, slot: number): void {
  const s = (w: number) => layout.slotI32(slot, w);
  i32[s(Slot.SUBMIT_HEAD)] = 0;
  i32[s(Slot.SUBMIT_TAIL)] = 0;
  i32[s(Slot.FREE_HEAD)] = 0;
  const free = layout.freeQueueI32(slot);
  for (let r = 1; r < layout.ringsPerThread; r++) i32[free + r - 1] = r;
  i32[s(Slot.FREE_TAIL)] = layout.ringsPerThread - 1;
  i32[s(Slot.ACTIVE_RING)] = 0;
  i32[s(Slot.ACTIVE_TAIL)] = 0;
  i32[s(Slot.ACTIVE_HEAD)] = 0;
  i32[s(Slot.ACTIVE_WRAP_END)] = -1;
  i32[s(Slot.FREE_MIN)] = layout.ringsPerThread - 1;
}
