/**
 * The SPSC ring-index queues and a slot's pool: FIFO order, capacity, cursor wrap, initial state.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Layout, SharedViews, Slot } from '../src/shm/layout.js';
import { SpscQueue, initPool, poolQueues } from '../src/shm/pool.js';

const HEAD = 0;
const TAIL = 1;
const ENTRIES = 4;

/** A queue over a private Int32Array: cursors at [0] and [1], entries from [4]. */
function queue(capacity: number) {
  const i32 = new Int32Array(new SharedArrayBuffer((ENTRIES + capacity + 4) * 4));
  return { i32, q: new SpscQueue(i32, ENTRIES, capacity, HEAD, TAIL) };
}

/** Where the cursors wrap back to 0: a multiple of the capacity near 2^30. */
const wrapOf = (capacity: number): number => capacity * Math.floor(0x40000000 / capacity);

describe('SpscQueue', () => {
  it('is first in, first out', () => {
    const { q } = queue(4);
    assert.equal(q.push(7), true);
    assert.equal(q.push(3), true);
    assert.equal(q.push(9), true);
    assert.deepEqual([q.pop(), q.pop(), q.pop()], [7, 3, 9]);
  });

  it('pop on an empty queue returns -1 and moves nothing', () => {
    const { q, i32 } = queue(4);
    assert.equal(q.pop(), -1);
    assert.equal(i32[HEAD], 0);
    q.push(5);
    q.pop();
    assert.equal(q.pop(), -1);
    assert.equal(q.size(), 0);
  });

  it('holds exactly `capacity` entries: a push into a full queue fails and changes nothing', () => {
    const { q, i32 } = queue(3);
    assert.ok(q.push(0) && q.push(1) && q.push(2));
    assert.equal(q.size(), 3);
    const tail = i32[TAIL];
    assert.equal(q.push(99), false);
    assert.equal(i32[TAIL], tail);
    assert.equal(q.size(), 3);
    assert.deepEqual([q.pop(), q.pop(), q.pop(), q.pop()], [0, 1, 2, -1]);
  });

  it('size() and hintNonEmpty() follow pushes and pops', () => {
    const { q } = queue(4);
    assert.equal(q.hintNonEmpty(), false);
    q.push(1);
    assert.equal(q.hintNonEmpty(), true);
    assert.equal(q.size(), 1);
    q.push(2);
    assert.equal(q.size(), 2);
    q.pop();
    assert.equal(q.size(), 1);
    q.pop();
    assert.equal(q.hintNonEmpty(), false);
  });

  it('the producer cursor wraps to 0 at a multiple of the capacity, with entries still in order', () => {
    const cap = 3;
    const wrap = wrapOf(cap);
    const { q, i32 } = queue(cap);
    i32[HEAD] = i32[TAIL] = wrap - 2;
    assert.ok(q.push(10) && q.push(11));
    assert.equal(i32[TAIL], 0, 'tail wrapped to 0');
    assert.equal(q.size(), 2, 'size is continuous across the wrap');
    assert.ok(q.push(12));
    assert.equal(q.size(), 3);
    assert.equal(q.push(13), false, 'still full at capacity across the wrap');
    assert.deepEqual([q.pop(), q.pop()], [10, 11]);
    assert.equal(i32[HEAD], 0, 'head wrapped to 0');
    assert.deepEqual([q.pop(), q.pop()], [12, -1]);
  });

  it('property: any push/pop interleaving behaves like a bounded FIFO, across the cursor wrap', () => {
    const op = fc.oneof(fc.record({ push: fc.integer({ min: 0, max: 1 << 20 }) }), fc.constant({ pop: true as const }));
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 40 }),
        fc.array(op, { minLength: 1, maxLength: 300, size: 'max' }),
        (cap, beforeWrap, ops) => {
          const wrap = wrapOf(cap);
          const { q, i32 } = queue(cap);
          // Start both cursors a few steps before the wrap point.
          i32[HEAD] = i32[TAIL] = wrap - beforeWrap;
          const model: number[] = [];
          for (const o of ops) {
            if ('push' in o) {
              const ok = q.push(o.push);
              assert.equal(ok, model.length < cap, 'push succeeds exactly when not full');
              if (ok) model.push(o.push);
            } else {
              const v = q.pop();
              assert.equal(v, model.length === 0 ? -1 : model.shift());
            }
            assert.equal(q.size(), model.length);
            assert.equal(q.hintNonEmpty(), model.length > 0);
            for (const c of [i32[HEAD], i32[TAIL]]) assert.ok(c >= 0 && c < wrap, 'cursors stay in [0, wrap)');
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('a slot pool (poolQueues + initPool)', () => {
  const layout = new Layout({ maxThreads: 3, ringsPerThread: 5, ringSize: 4096 });

  it('starts with ring 0 active, rings 1..R-1 free in order, an empty submit queue', () => {
    const v = new SharedViews(new SharedArrayBuffer(layout.totalBytes), layout);
    v.i32.fill(-7, layout.slotI32(1, 0), layout.slotI32(1, 0) + 40); // stale garbage must not matter
    initPool(v.i32, layout, 1);
    const s = (w: number) => v.i32[layout.slotI32(1, w)];
    assert.equal(s(Slot.ACTIVE_RING), 0);
    assert.equal(s(Slot.ACTIVE_TAIL), 0);
    assert.equal(s(Slot.ACTIVE_HEAD), 0);
    assert.equal(s(Slot.ACTIVE_WRAP_END), -1);
    assert.equal(s(Slot.FREE_MIN), 4);
    const { submit, free } = poolQueues(v.i32, layout, 1);
    assert.equal(submit.capacity, 5);
    assert.equal(submit.size(), 0);
    assert.equal(free.size(), 4);
    assert.deepEqual([free.pop(), free.pop(), free.pop(), free.pop(), free.pop()], [1, 2, 3, 4, -1]);
  });

  it('slots have separate queues; the submit and free queues of a slot do not overlap', () => {
    const v = new SharedViews(new SharedArrayBuffer(layout.totalBytes), layout);
    for (let slot = 0; slot < 3; slot++) initPool(v.i32, layout, slot);
    const pools = [0, 1, 2].map((slot) => poolQueues(v.i32, layout, slot));
    // Every ring of every slot goes through submit and back through free: counts stay exact.
    for (const [slot, p] of pools.entries()) {
      const rings: number[] = [0];
      for (let r = p.free.pop(); r >= 0; r = p.free.pop()) rings.push(r);
      for (const r of rings) assert.ok(p.submit.push(r + 10 * slot));
      assert.equal(p.submit.push(99), false, 'the submit queue holds every ring and no more');
    }
    for (const [slot, p] of pools.entries()) {
      assert.equal(p.free.size(), 0, 'filling submit did not touch free');
      const got: number[] = [];
      for (let r = p.submit.pop(); r >= 0; r = p.submit.pop()) got.push(r);
      assert.deepEqual(
        got,
        [0, 1, 2, 3, 4].map((r) => r + 10 * slot),
        `slot ${slot} got back its own rings`,
      );
      for (const r of got) assert.ok(p.free.push(r));
      assert.equal(p.free.push(99), false);
    }
  });
});
