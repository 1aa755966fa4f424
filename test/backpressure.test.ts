/**
 * The per-thread backpressure state machine: legal and illegal edges, CAS races, per-edge
 * counters, exact time-in-state accounting with a fake clock, the pressure/recovery/exhaustion
 * rules with their hysteresis and stability period, and real concurrent transitions.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import {
  BackpressureState,
  BpState,
  EDGES,
  STATE_NAMES,
  edgeIndex,
  edgeName,
  type BpStateValue,
  type SpareCount,
  type Thresholds,
} from '../src/shm/backpressure.js';
import { EDGE_COUNT, Layout, SharedViews } from '../src/shm/layout.js';
import type { BpWorkerData } from './helpers/unit-bp-worker.js';

/** A free queue holding `n` spares, as checkRecovery counts it. */
const spares = (n: number): SpareCount => ({ size: () => n });

const { NORMAL, PRESSURE, DROPPING, RECOVERY } = BpState;
const geometry = { maxThreads: 2, ringsPerThread: 4, ringSize: 4096 };
const TH: Thresholds = { pressureSpares: 1, recoverySpares: 2, stabilityUs: 250_000 };
const T0 = 1_000;

interface Fixture {
  v: SharedViews;
  bp: BackpressureState;
  calls: Array<[BpStateValue, BpStateValue, number]>;
}

function fixture(slot = 0, start = T0): Fixture {
  const layout = new Layout(geometry);
  const v = new SharedViews(new SharedArrayBuffer(layout.totalBytes), layout);
  const calls: Fixture['calls'] = [];
  const bp = new BackpressureState(v.i32, v.i64, layout, slot, (from, to, at) => calls.push([from, to, at]));
  bp.reset(start);
  return { v, bp, calls };
}

/** Legal path from NORMAL to each state. */
const PATH: Record<BpStateValue, Array<[BpStateValue, BpStateValue]>> = {
  [NORMAL]: [],
  [PRESSURE]: [[NORMAL, PRESSURE]],
  [DROPPING]: [
    [NORMAL, PRESSURE],
    [PRESSURE, DROPPING],
  ],
  [RECOVERY]: [
    [NORMAL, PRESSURE],
    [PRESSURE, DROPPING],
    [DROPPING, RECOVERY],
  ],
};

/** Drives a fresh fixture into `state` at times T0+1, T0+2, ...; returns the time of the last step. */
function driveTo(f: Fixture, state: BpStateValue): number {
  let t = T0;
  for (const [from, to] of PATH[state]) assert.ok(f.bp.transition(from, to, ++t));
  assert.equal(f.bp.state(), state);
  return t;
}

const snapshot = (f: Fixture, now: number) => ({
  state: f.bp.state(),
  enteredAt: f.bp.enteredAtUs(),
  edges: f.bp.edgeCounts(),
  time: f.bp.timeInStates(now),
  calls: f.calls.length,
});

describe('edge table', () => {
  it('has the six legal edges, each with its own counter index and name', () => {
    assert.equal(EDGES.length, EDGE_COUNT);
    assert.deepEqual(
      EDGES.map((_, i) => edgeName(i)),
      ['normal->pressure', 'pressure->dropping', 'dropping->recovery', 'recovery->normal', 'recovery->dropping', 'pressure->normal'],
    );
    EDGES.forEach(([from, to], i) => assert.equal(edgeIndex(from, to), i));
    assert.deepEqual(STATE_NAMES, ['normal', 'pressure', 'dropping', 'recovery']);
  });

  it('every other pair, and out-of-range states, have no edge', () => {
    let illegal = 0;
    for (let from = -1; from <= 4; from++) {
      for (let to = -1; to <= 4; to++) {
        const legal = EDGES.some(([a, b]) => a === from && b === to);
        if (!legal) {
          assert.equal(edgeIndex(from, to), -1, `${from}->${to}`);
          illegal++;
        }
      }
    }
    assert.equal(illegal, 36 - 6);
  });
});

describe('BackpressureState.transition', () => {
  it('reset: NORMAL since the given time, no time or edges counted', () => {
    const f = fixture(1, 5_000);
    // Garbage from a previous user of the slot must be cleared by reset.
    f.bp.transition(NORMAL, PRESSURE, 6_000);
    f.bp.reset(7_000);
    assert.equal(f.bp.state(), NORMAL);
    assert.equal(f.bp.enteredAtUs(), 7_000);
    assert.deepEqual(f.bp.timeInStates(7_000), [0, 0, 0, 0]);
    assert.deepEqual(f.bp.timeInStates(7_250), [250, 0, 0, 0]);
  });

  for (const [i, [from, to]] of EDGES.entries()) {
    it(`legal edge ${edgeName(i)}: applied, stamped, counted once, listener told once`, () => {
      const f = fixture();
      const t = driveTo(f, from);
      const before = snapshot(f, t);
      const at = t + 100;
      assert.equal(f.bp.transition(from, to, at), true);
      assert.equal(f.bp.state(), to);
      assert.equal(f.bp.enteredAtUs(), at);
      const edges = before.edges.slice();
      edges[i]++;
      assert.deepEqual(f.bp.edgeCounts(), edges, 'exactly this edge counted');
      assert.deepEqual(f.calls[f.calls.length - 1], [from, to, at]);
      assert.equal(f.calls.length, before.calls + 1);
      const time = before.time.slice();
      time[from] += 100;
      assert.deepEqual(f.bp.timeInStates(at), time, 'the state left is charged exactly its duration');
      assert.equal(f.bp.illegalTransitions(), 0);
    });
  }

  it('every illegal (from, to) pair is refused, counted, and changes nothing else', () => {
    let expectedIllegal = 0;
    for (let from = 0; from < 4; from++) {
      for (let to = -1; to <= 4; to++) {
        if (edgeIndex(from, to) >= 0) continue;
        const f = fixture();
        const t = driveTo(f, from as BpStateValue);
        const before = snapshot(f, t + 50);
        assert.equal(f.bp.transition(from as BpStateValue, to as BpStateValue, t + 10), false, `${from}->${to} refused`);
        assert.equal(f.bp.illegalTransitions(), 1, `${from}->${to} counted as illegal`);
        assert.deepEqual(snapshot(f, t + 50), before, `${from}->${to} changed nothing`);
        expectedIllegal++;
      }
    }
    assert.equal(expectedIllegal, 4 * 6 - 6);
    // The counter accumulates.
    const f = fixture();
    f.bp.transition(NORMAL, NORMAL, T0);
    f.bp.transition(NORMAL, DROPPING, T0);
    f.bp.transition(DROPPING, PRESSURE, T0);
    assert.equal(f.bp.illegalTransitions(), 3);
    assert.equal(f.bp.state(), NORMAL);
  });

  it('a legal edge from a state that is no longer current (lost race) is not applied and not counted', () => {
    for (let cur = 0; cur < 4; cur++) {
      for (const [from, to] of EDGES) {
        if (from === cur) continue;
        const f = fixture();
        const t = driveTo(f, cur as BpStateValue);
        const before = snapshot(f, t + 50);
        assert.equal(f.bp.transition(from, to, t + 10), false);
        assert.deepEqual(snapshot(f, t + 50), before);
        assert.equal(f.bp.illegalTransitions(), 0, 'a lost race is not an illegal transition');
      }
    }
  });

  it('time in each state is exact over a whole cycle, the current state counted up to now', () => {
    const f = fixture(0, 1_000);
    assert.ok(f.bp.transition(NORMAL, PRESSURE, 1_500));
    assert.ok(f.bp.transition(PRESSURE, DROPPING, 1_700));
    assert.ok(f.bp.transition(DROPPING, RECOVERY, 2_000));
    assert.ok(f.bp.transition(RECOVERY, DROPPING, 2_100));
    assert.ok(f.bp.transition(DROPPING, RECOVERY, 2_400));
    assert.ok(f.bp.transition(RECOVERY, NORMAL, 3_000));
    assert.ok(f.bp.transition(NORMAL, PRESSURE, 3_250));
    assert.ok(f.bp.transition(PRESSURE, NORMAL, 3_300));
    const t = f.bp.timeInStates(4_000);
    assert.deepEqual(t, [500 + 250 + 700, 200 + 50, 300 + 300, 100 + 600]);
    assert.equal(
      t.reduce((a, b) => a + b),
      4_000 - 1_000,
      'the states partition the elapsed time',
    );
    assert.deepEqual(f.bp.edgeCounts(), [2, 1, 2, 1, 1, 1]);
  });

  it('a clock that runs backwards never makes time negative: the entry time is kept', () => {
    const f = fixture(0, 1_000);
    assert.ok(f.bp.transition(NORMAL, PRESSURE, 900)); // another thread's clock, 100 µs behind
    assert.equal(f.bp.enteredAtUs(), 1_000);
    assert.deepEqual(f.bp.timeInStates(1_000), [0, 0, 0, 0]);
    assert.deepEqual(f.bp.timeInStates(990), [0, 0, 0, 0], 'now before the entry time counts nothing');
    assert.ok(f.bp.transition(PRESSURE, NORMAL, 1_200.4));
    assert.equal(f.bp.enteredAtUs(), 1_200, 'fractional microseconds are rounded');
    assert.deepEqual(f.bp.timeInStates(1_200), [0, 200, 0, 0]);
  });

  it('every state and entry time survives the packing into one word (large times too)', () => {
    const f = fixture(1, 0);
    const big = 2 ** 50; // ~35 years in µs
    assert.ok(f.bp.transition(NORMAL, PRESSURE, big));
    assert.equal(f.bp.state(), PRESSURE);
    assert.equal(f.bp.enteredAtUs(), big);
    assert.deepEqual(f.bp.timeInStates(big + 1), [big, 1, 0, 0]);
  });

  it('slots are independent: a transition in slot 1 leaves slot 0 untouched', () => {
    const layout = new Layout(geometry);
    const v = new SharedViews(new SharedArrayBuffer(layout.totalBytes), layout);
    const a = new BackpressureState(v.i32, v.i64, layout, 0);
    const b = new BackpressureState(v.i32, v.i64, layout, 1);
    a.reset(0);
    b.reset(0);
    assert.ok(b.transition(NORMAL, PRESSURE, 10));
    assert.ok(!b.transition(NORMAL, NORMAL, 10));
    assert.equal(a.state(), NORMAL);
    assert.deepEqual(a.edgeCounts(), [0, 0, 0, 0, 0, 0]);
    assert.equal(a.illegalTransitions(), 0);
    assert.deepEqual(b.edgeCounts(), [1, 0, 0, 0, 0, 0]);
  });
});

describe('pressure, exhaustion and recovery rules', () => {
  it('checkPressure enters PRESSURE only at or below pressureSpares, and only from NORMAL', () => {
    const f = fixture();
    f.bp.checkPressure(3, TH, T0 + 1);
    f.bp.checkPressure(2, TH, T0 + 2);
    assert.equal(f.bp.state(), NORMAL);
    f.bp.checkPressure(1, TH, T0 + 3);
    assert.equal(f.bp.state(), PRESSURE);
    assert.equal(f.bp.enteredAtUs(), T0 + 3);
    f.bp.checkPressure(0, TH, T0 + 4);
    assert.deepEqual(f.calls, [[NORMAL, PRESSURE, T0 + 3]]);
    const g = fixture();
    g.bp.checkPressure(0, TH, T0 + 1);
    assert.equal(g.bp.state(), PRESSURE);
  });

  it('onExhausted from NORMAL goes through PRESSURE to DROPPING (both edges counted, same time)', () => {
    const f = fixture();
    f.bp.onExhausted(T0 + 10);
    assert.equal(f.bp.state(), DROPPING);
    assert.deepEqual(f.calls, [
      [NORMAL, PRESSURE, T0 + 10],
      [PRESSURE, DROPPING, T0 + 10],
    ]);
    assert.deepEqual(f.bp.edgeCounts(), [1, 1, 0, 0, 0, 0]);
    assert.equal(f.bp.illegalTransitions(), 0);
  });

  it('onExhausted from PRESSURE and from RECOVERY goes to DROPPING; in DROPPING it only restamps the word', () => {
    for (const from of [PRESSURE, RECOVERY] as const) {
      const f = fixture();
      const t = driveTo(f, from);
      f.bp.onExhausted(t + 5);
      assert.equal(f.bp.state(), DROPPING);
      assert.deepEqual(f.calls[f.calls.length - 1], [from, DROPPING, t + 5]);
    }
    const f = fixture();
    const t = driveTo(f, DROPPING);
    const before = snapshot(f, t + 100);
    f.bp.onExhausted(t + 50);
    // Same state, no edge, no log entry, the same time in DROPPING; only the entry time moves,
    // so that a recovery decided on the word as it was before cannot be applied (next test).
    assert.deepEqual(snapshot(f, t + 100), { ...before, enteredAt: t + 50 });
  });

  it('a recovery decided on a stale spare count is not applied once the writer has exhausted again', () => {
    const f = fixture();
    const t = driveTo(f, DROPPING);
    // The drain reads the state word, then counts the spares; between the two the writer takes
    // them, uses them up and exhausts again (restamp).
    const racing: SpareCount = {
      size: () => {
        f.bp.onExhausted(t + 20);
        return 4; // what the drain counted: enough to recover, but stale
      },
    };
    f.bp.checkRecovery(racing, TH, t + 30);
    assert.equal(f.bp.state(), DROPPING);
    // Without the race the same count recovers.
    f.bp.checkRecovery(spares(4), TH, t + 40);
    assert.equal(f.bp.state(), RECOVERY);
    // Also when the writer's clock has not moved past the entry time (the same microsecond, or
    // recordAt() timestamps behind the drain's clock): the restamp still changes the word.
    const g = fixture();
    const tg = driveTo(g, DROPPING);
    const behind: SpareCount = {
      size: () => {
        g.bp.onExhausted(tg - 1_000);
        return 4;
      },
    };
    g.bp.checkRecovery(behind, TH, tg + 30);
    assert.equal(g.bp.state(), DROPPING);
  });

  it('the restamp changes the word even at the clamp (a clock poisoned by recordAt(Infinity))', () => {
    const f = fixture();
    f.bp.onExhausted(Infinity); // DROPPING, entered at the clamp
    const racing: SpareCount = {
      size: () => {
        f.bp.onExhausted(Infinity);
        return 4;
      },
    };
    f.bp.checkRecovery(racing, TH, Infinity);
    assert.equal(f.bp.state(), DROPPING);
  });

  it('a non-finite or absurd transition time is clamped, never thrown on the recording thread', () => {
    for (const bad of [Infinity, 1e25, NaN, -5]) {
      const f = fixture();
      assert.doesNotThrow(() => f.bp.onExhausted(bad));
      assert.equal(f.bp.state(), DROPPING);
      const at = f.bp.enteredAtUs();
      assert.ok(Number.isFinite(at) && at >= 0 && at <= 2 ** 53, `entry time ${at} for ${bad}`);
      assert.doesNotThrow(() => f.bp.checkRecovery(spares(4), TH, bad));
    }
  });

  it('checkRecovery does nothing in NORMAL, whatever the spares', () => {
    const f = fixture();
    f.bp.checkRecovery(spares(0), TH, T0 + 1);
    f.bp.checkRecovery(spares(4), TH, T0 + 1_000_000);
    assert.equal(f.bp.state(), NORMAL);
    assert.equal(f.calls.length, 0);
  });

  it('PRESSURE -> NORMAL only once free spares reach recoverySpares', () => {
    const f = fixture();
    const t = driveTo(f, PRESSURE);
    f.bp.checkRecovery(spares(1), TH, t + 1);
    assert.equal(f.bp.state(), PRESSURE);
    f.bp.checkRecovery(spares(2), TH, t + 2);
    assert.equal(f.bp.state(), NORMAL);
    assert.deepEqual(f.calls[f.calls.length - 1], [PRESSURE, NORMAL, t + 2]);
  });

  it('hysteresis: free spares oscillating inside the band (pressure 1, recovery 3) enter PRESSURE once and stay', () => {
    const th: Thresholds = { pressureSpares: 1, recoverySpares: 3, stabilityUs: 0 };
    const f = fixture();
    let t = T0;
    for (const free of [1, 2, 1, 2, 1, 2, 1, 2]) {
      // What the writer does after each swap.
      f.bp.checkRecovery(spares(free), th, ++t);
      f.bp.checkPressure(free, th, t);
    }
    assert.equal(f.bp.state(), PRESSURE);
    assert.deepEqual(f.calls, [[NORMAL, PRESSURE, T0 + 1]], 'one transition, no flapping');
  });

  it('property: with thresholds 1/2 the state changes exactly when a threshold is crossed', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 100, size: 'max' }), (frees) => {
        const f = fixture();
        let model: BpStateValue = NORMAL;
        let t = T0;
        let expected = 0;
        for (const free of frees) {
          f.bp.checkRecovery(spares(free), TH, ++t);
          f.bp.checkPressure(free, TH, t);
          if (model === PRESSURE && free >= TH.recoverySpares) {
            model = NORMAL;
            expected++;
          }
          if (model === NORMAL && free <= TH.pressureSpares) {
            model = PRESSURE;
            expected++;
          }
          assert.equal(f.bp.state(), model);
        }
        assert.equal(f.calls.length, expected);
        const e = f.bp.edgeCounts();
        assert.equal(e[edgeIndex(NORMAL, PRESSURE)] + e[edgeIndex(PRESSURE, NORMAL)], expected);
      }),
      { numRuns: 200 },
    );
  });

  it('DROPPING -> RECOVERY at recoverySpares; RECOVERY -> NORMAL only after the stability period', () => {
    const f = fixture();
    const t = driveTo(f, DROPPING);
    f.bp.checkRecovery(spares(1), TH, t + 10);
    assert.equal(f.bp.state(), DROPPING, 'not enough spares');
    f.bp.checkRecovery(spares(2), TH, t + 20);
    assert.equal(f.bp.state(), RECOVERY);
    assert.equal(f.bp.enteredAtUs(), t + 20);
    f.bp.checkRecovery(spares(4), TH, t + 20 + TH.stabilityUs - 1);
    assert.equal(f.bp.state(), RECOVERY, 'one microsecond short of the stability period');
    f.bp.checkRecovery(spares(0), TH, t + 20 + TH.stabilityUs);
    assert.equal(f.bp.state(), NORMAL, 'stable for the period: back to normal (spares do not matter)');
    assert.deepEqual(f.calls.slice(-2), [
      [DROPPING, RECOVERY, t + 20],
      [RECOVERY, NORMAL, t + 20 + TH.stabilityUs],
    ]);
    const time = f.bp.timeInStates(t + 20 + TH.stabilityUs);
    assert.equal(time[RECOVERY], TH.stabilityUs);
    assert.equal(time[DROPPING], 20, 'DROPPING lasted from t to t+20');
  });

  it('exhaustion during RECOVERY sends it back to DROPPING and restarts the stability period', () => {
    const f = fixture();
    const t = driveTo(f, DROPPING);
    f.bp.checkRecovery(spares(2), TH, t + 10);
    f.bp.onExhausted(t + 100);
    assert.equal(f.bp.state(), DROPPING);
    f.bp.checkRecovery(spares(3), TH, t + 200);
    assert.equal(f.bp.state(), RECOVERY);
    f.bp.checkRecovery(spares(3), TH, t + 10 + TH.stabilityUs);
    assert.equal(f.bp.state(), RECOVERY, 'the period counts from the latest entry into RECOVERY');
    f.bp.checkRecovery(spares(3), TH, t + 200 + TH.stabilityUs);
    assert.equal(f.bp.state(), NORMAL);
    assert.deepEqual(f.bp.edgeCounts(), [1, 1, 2, 1, 1, 0]);
  });

  it('a zero stability period completes DROPPING -> RECOVERY -> NORMAL in one check', () => {
    const f = fixture();
    const t = driveTo(f, DROPPING);
    f.bp.checkRecovery(spares(2), { ...TH, stabilityUs: 0 }, t + 7);
    assert.equal(f.bp.state(), NORMAL);
    assert.deepEqual(f.calls.slice(-2), [
      [DROPPING, RECOVERY, t + 7],
      [RECOVERY, NORMAL, t + 7],
    ]);
    assert.equal(f.bp.timeInStates(t + 7)[RECOVERY], 0);
  });
});

// ------------------------------------------------------------------ real concurrency

interface WorkerResult {
  successes: number;
  perEdge: number[];
  listenerCalls: number;
}

function runWorkers(
  n: number,
  data: Omit<BpWorkerData, 'workers' | 'seed'>,
  seeds: (i: number) => number,
  modes?: (i: number) => BpWorkerData['mode'],
) {
  return Array.from({ length: n }, (_, i) => {
    const w = new Worker(new URL('./helpers/unit-bp-worker.js', import.meta.url), {
      workerData: { ...data, mode: modes ? modes(i) : data.mode, workers: n, seed: seeds(i) } satisfies BpWorkerData,
    });
    return new Promise<WorkerResult>((resolve, reject) => {
      let result: WorkerResult | undefined;
      w.on('message', (m: WorkerResult) => (result = m));
      w.on('error', reject);
      w.on('exit', (code) => (code === 0 && result ? resolve(result) : reject(new Error(`worker exited ${code} without a result`))));
    });
  });
}

describe('concurrent transitions on one slot', () => {
  it('workers racing random legal edges: counters equal the applied transitions and time adds up exactly', async () => {
    const layout = new Layout(geometry);
    const buffer = new SharedArrayBuffer(layout.totalBytes);
    const v = new SharedViews(buffer, layout);
    const slot = 1;
    const bp = new BackpressureState(v.i32, v.i64, layout, slot);
    const control = new SharedArrayBuffer(16);
    const ctl = new Int32Array(control);
    const start = 1_000;
    ctl[0] = start;
    bp.reset(start);
    const results = await Promise.all(
      runWorkers(4, { mode: 'random', buffer, geometry, slot, control, attempts: 20_000 }, (i) => 0x9e3779b9 * (i + 1)),
    );
    const successes = results.reduce((a, r) => a + r.successes, 0);
    assert.ok(successes > 1000, `enough transitions applied to be a real test (${successes})`);
    for (const r of results) assert.equal(r.listenerCalls, r.successes, 'the listener ran once per applied transition');
    const counts = bp.edgeCounts();
    assert.equal(
      counts.reduce((a, b) => a + b),
      successes,
      'sum over edges == transitions the workers saw succeed',
    );
    const perEdge = results.reduce((acc, r) => acc.map((x, i) => x + r.perEdge[i]), new Array(EDGE_COUNT).fill(0) as number[]);
    assert.deepEqual(counts, perEdge, 'per-edge counts match what the workers applied');
    assert.equal(bp.illegalTransitions(), 0);
    const end = Atomics.load(ctl, 0) + 1;
    const time = bp.timeInStates(end);
    assert.equal(
      time.reduce((a, b) => a + b),
      end - start,
      'time in states partitions the elapsed fake time exactly',
    );
    // Flow conservation: each state is entered as often as it is left (±1 for start and end).
    for (let s = 0; s < 4; s++) {
      const into = EDGES.reduce((a, [, to], i) => a + (to === s ? counts[i] : 0), 0) + (s === NORMAL ? 1 : 0);
      const out = EDGES.reduce((a, [from], i) => a + (from === s ? counts[i] : 0), 0) + (s === bp.state() ? 1 : 0);
      assert.equal(into, out, `state ${STATE_NAMES[s]} entered as often as left`);
    }
  });

  it('onExhausted always ends in DROPPING even while a drain races it back to NORMAL', async () => {
    const layout = new Layout(geometry);
    const buffer = new SharedArrayBuffer(layout.totalBytes);
    const v = new SharedViews(buffer, layout);
    const slot = 0;
    const control = new SharedArrayBuffer(16);
    const ctl = new Int32Array(control);
    let intoDropping = 0;
    const bp = new BackpressureState(v.i32, v.i64, layout, slot, (_from, to) => {
      if (to === DROPPING) intoDropping++;
      // The real listener logs the transition; a little work here widens the window in which the
      // drain can move PRESSURE -> NORMAL between the writer's two edges.
      if (to === PRESSURE) for (let k = 0; k < 300; k++) Atomics.load(ctl, 2);
    });
    ctl[0] = 1;
    bp.reset(1);
    const [drain] = runWorkers(1, { mode: 'drain', buffer, geometry, slot, control, attempts: 0 }, () => 1);
    // Wait (bounded) until the drain worker is running.
    for (let i = 0; Atomics.load(ctl, 1) < 1; i++) {
      if (i > 10_000) throw new Error('drain worker did not start');
      await new Promise((r) => setTimeout(r, 1));
    }
    // Run until the drain has won the race a good number of times (bounded).
    let rounds = 0;
    let failures = 0;
    try {
      for (; rounds < 1_000_000 && (rounds < 1_000 || bp.edgeCounts()[edgeIndex(PRESSURE, NORMAL)] < 200); rounds++) {
        const before = intoDropping;
        bp.onExhausted(Atomics.add(ctl, 0, 1) + 1);
        // The writer found no spare ring: whatever the drain did meanwhile, it must end up DROPPING.
        if (intoDropping !== before + 1 || bp.state() !== DROPPING) {
          failures++;
          break;
        }
        // Back to NORMAL by the recovery path (the drain worker only takes PRESSURE -> NORMAL).
        assert.ok(bp.transition(DROPPING, RECOVERY, Atomics.add(ctl, 0, 1) + 1));
        assert.ok(bp.transition(RECOVERY, NORMAL, Atomics.add(ctl, 0, 1) + 1));
      }
    } finally {
      Atomics.store(ctl, 2, 1); // stop the drain worker whatever happened
    }
    const r = await drain;
    assert.equal(failures, 0, `onExhausted ended outside DROPPING (drain applied ${r.successes} PRESSURE->NORMAL)`);
    assert.ok(r.successes > 0, 'the drain did race the writer');
    const counts = bp.edgeCounts();
    assert.equal(counts[edgeIndex(PRESSURE, DROPPING)], rounds);
    assert.equal(counts[edgeIndex(PRESSURE, NORMAL)], r.successes);
    assert.equal(counts[edgeIndex(NORMAL, PRESSURE)], rounds + r.successes);
  });
});
