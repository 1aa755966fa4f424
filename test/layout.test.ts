import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  BpWord,
  Layout,
  LEDGER_WORDS,
  Ledger,
  MAX_RINGS_PER_THREAD,
  MIN_RING_SIZE,
  POLICIES,
  ScrapeWord,
  SlotState,
  TransitionCode,
  checkRegions,
  isFinal,
  isInLedger,
  isUnclaimed,
  lossAt,
  Loss,
  LOSS_BLOCK_WORDS,
  REASON_COUNT,
  PRIORITY_COUNT,
  policyCode,
  policyOf,
  wordRegions,
} from '../src/shm/layout.js';

describe('layout: the shared-memory map checks itself', () => {
  it('checkRegions names the overlapping and the out-of-bounds region', () => {
    assert.throws(() => checkRegions('T', wordRegions({ A: 0, B: 2, C: 3 }, 4, { A: 3 }), 64), /T\.A \[0, 12\) overlaps T\.B at 8/);
    assert.throws(() => checkRegions('T', wordRegions({ A: 0, B: 15 }, 8), 64), /T\.B \[120, 128\) lies outside \[0, 64\)/);
    assert.doesNotThrow(() => checkRegions('T', wordRegions({ A: 0, B: 1 }, 8), 16));
  });

  it('the ledger derives each region from the one before it', () => {
    assert.equal(Ledger.REASON_BYTES, Ledger.REASON_EVENTS + REASON_COUNT);
    assert.equal(Ledger.PREDICTED_ENTRIES, Ledger.PRIORITY_EVENTS + PRIORITY_COUNT);
    assert.equal(Ledger.PREDICTED_ENTRIES + 1, LEDGER_WORDS);
    assert.equal(Ledger.SHADOW, LEDGER_WORDS);
  });

  it('no two regions of the buffer overlap, for any geometry', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 2, max: MAX_RINGS_PER_THREAD }),
        fc.integer({ min: 0, max: 6 }),
        (maxThreads, ringsPerThread, shift) => {
          const layout = new Layout({ maxThreads, ringsPerThread, ringSize: MIN_RING_SIZE << shift });
          checkRegions('buffer', layout.regions(), layout.totalBytes);
          assert.equal(layout.slotHeaderBytes % 64, 0, 'slot headers start on a cache line');
          assert.equal(layout.ringsOffset % 64, 0, 'rings start on a cache line');
        },
      ),
      { numRuns: 200 },
    );
  });

  it('lossAt addresses each reason of a block without overlap', () => {
    const seen = new Set<number>();
    const fields = [...Object.values(Loss), ...Array.from({ length: PRIORITY_COUNT }, (_, p) => Loss.BY_PRIORITY + p)];
    for (let r = 0; r < REASON_COUNT; r++) for (const f of fields) seen.add(lossAt(100, r) + f);
    assert.equal(seen.size, LOSS_BLOCK_WORDS);
    assert.deepEqual([Math.min(...seen), Math.max(...seen)], [100, 100 + LOSS_BLOCK_WORDS - 1]);
  });
});

describe('layout: codes and bit packing round-trip', () => {
  it('BpWord keeps state and entry time apart up to 2^53 µs', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 7 }),
        fc.maxSafeInteger().filter((n) => n >= 0),
        (state, us) => {
          const w = BpWord.of(state, us);
          assert.equal(BpWord.state(w), state);
          assert.equal(BpWord.enteredAtUs(w), us);
        },
      ),
    );
  });

  it('TransitionCode and ScrapeWord round-trip', () => {
    for (let from = 0; from < 4; from++) {
      for (let to = 0; to < 4; to++) {
        const c = TransitionCode.of(from, to);
        assert.deepEqual([TransitionCode.from(c), TransitionCode.to(c)], [from, to]);
      }
    }
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 127 }),
        fc.integer({ min: 0, max: (1 << 22) - 1 }),
        fc.integer({ min: 0, max: 3 }),
        (g, o8, f) => {
          const w = ScrapeWord.of(g, o8 * 8, f);
          assert.deepEqual([ScrapeWord.generation(w), ScrapeWord.offset(w), w & 3], [g, o8 * 8, f]);
        },
      ),
    );
  });

  it('policies have one code each, and unknown codes have none', () => {
    for (const p of POLICIES) assert.equal(policyOf(policyCode(p)), p);
    assert.equal(policyOf(2), undefined);
  });

  it('slot-state predicates: every state is in exactly the sets the diagram says', () => {
    const table = Object.entries(SlotState).map(([name, st]) => [name, isUnclaimed(st), isInLedger(st), isFinal(st)]);
    assert.deepEqual(table, [
      ['FREE', true, false, false],
      ['CLAIMING', true, false, false],
      ['LIVE', false, false, false],
      ['CLOSING', false, false, false],
      ['ORPHANED', false, false, false],
      ['RETIRING', false, false, false],
      ['RETIRED', false, true, true],
      ['RECONCILED', false, true, true],
      ['RELEASING', false, true, false],
    ]);
  });
});
