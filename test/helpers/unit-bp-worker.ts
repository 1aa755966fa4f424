/**
 * Worker for the backpressure concurrency tests, on one shared slot.
 * - mode 'random': hammers transition() with random legal edges, taking its clock from a shared
 *   counter, and reports how many of its transitions were applied, per edge.
 * - mode 'drain': plays a drain that sees plenty of free rings: keeps trying PRESSURE -> NORMAL
 *   until told to stop, and reports how many it applied.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { BackpressureState, BpState, EDGES } from '../../src/shm/backpressure.js';
import { Layout, SharedViews, type Geometry } from '../../src/shm/layout.js';

export interface BpWorkerData {
  mode: 'random' | 'drain';
  buffer: SharedArrayBuffer;
  geometry: Geometry;
  slot: number;
  /** Int32Array over it: [0] the fake clock (µs), [1] start barrier counter, [2] stop flag. */
  control: SharedArrayBuffer;
  workers: number;
  attempts: number;
  seed: number;
}

const d = workerData as BpWorkerData;
const v = new SharedViews(d.buffer, new Layout(d.geometry));
const ctl = new Int32Array(d.control);
let applied = 0;
const perEdge = new Array<number>(EDGES.length).fill(0);
const bp = new BackpressureState(v.i32, v.i64, v.layout, d.slot, () => applied++);

// Start together, so the transitions really overlap.
Atomics.add(ctl, 1, 1);
while (Atomics.load(ctl, 1) < d.workers) {
  /* spin */
}

function drain(): number {
  let successes = 0;
  while (Atomics.load(ctl, 2) === 0) {
    if (bp.transition(BpState.PRESSURE, BpState.NORMAL, Atomics.add(ctl, 0, 1) + 1)) {
      successes++;
      perEdge[EDGES.findIndex((e) => e[0] === BpState.PRESSURE && e[1] === BpState.NORMAL)]++;
    }
  }
  return successes;
}

let seed = d.seed >>> 0 || 1;
const rand = (n: number): number => {
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed % n;
};

function random(): number {
  let successes = 0;
  for (let i = 0; i < d.attempts; i++) {
    // Mostly an edge out of the current state (so many succeed), sometimes any legal edge.
    const cur = bp.state();
    const out = EDGES.map((e, k) => [e, k] as const).filter(([e]) => e[0] === cur);
    const [[from, to], k] = rand(4) === 0 ? [EDGES[rand(EDGES.length)], -1] : out[rand(out.length)];
    const edge = k >= 0 ? k : EDGES.findIndex((e) => e[0] === from && e[1] === to);
    const now = Atomics.add(ctl, 0, 1) + 1;
    if (bp.transition(from, to, now)) {
      successes++;
      perEdge[edge]++;
    }
  }
  return successes;
}

const successes = d.mode === 'drain' ? drain() : random();
parentPort!.postMessage({ successes, perEdge, listenerCalls: applied });
