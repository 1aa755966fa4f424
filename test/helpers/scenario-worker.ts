/**
 * Worker side of the integration tests: attaches to the tracer from workerData and plays one
 * scenario. Every event's value is the thread's sequence number (0, 1, 2, ...), so the reader can
 * check exactly-once and order, and the loss accounting can be checked against the gaps.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Tracer, type TracerHandle } from '../../src/index.js';
import { payloadFor, paceUntilSpare, priorityOfSeq } from './scenario.js';

export interface ScenarioData {
  trace: TracerHandle;
  name: string;
  mode:
    | 'exact'
    | 'flood'
    | 'priority-flood'
    | 'flood-until'
    | 'trickle'
    | 'steady'
    | 'paced'
    | 'forever'
    | 'until-closed'
    | 'close-race'
    | 'slow-exit'
    | 'register-only'
    | 'register-retry';
  events: number;
  /** 'trickle': events recorded per timer tick (unpaced: it never looks at spare rings). */
  batch?: number;
  /** 'paced': events per millisecond, kept to on average (the thread catches up after a late wake-up). */
  perMs?: number;
  /** 'paced': the priority-flood mix (priorityOfSeq) instead of the 'seq'/'alt' names. */
  priorities?: boolean;
  /** 'paced': bursts of `perMs` for `burstMs`, then `quietPerMs` for `quietMs`, repeated. */
  burst?: { burstMs: number; quietMs: number; quietPerMs: number };
  /** 'trickle': timer period, ms (default 1). */
  tickMs?: number;
  /** Probability that an event carries a byte payload (exact mode). */
  bytesRatio?: number;
  maxPayload?: number;
  policy?: 'drop-oldest' | 'drop-newest';
  seed?: number;
  /** Close the writer at the end (else the thread just exits). */
  close?: boolean;
  /** Int32Array over a SharedArrayBuffer: with `hold`, the worker waits after registering until
   * [0] is non-zero; 'forever' publishes its progress in [1]. */
  control?: SharedArrayBuffer;
  hold?: boolean;
  /** After the scenario, stay alive (idle, recording nothing) until control[0] is non-zero: `true`
   * blocks the thread (its event loop does not turn: no periodic flush, no close request);
   * 'loop' keeps the event loop turning (timers such as the periodic flush run); `close` then
   * closes the writer once released. */
  linger?: boolean | 'loop';
}

const d = workerData as ScenarioData;
const tracer = Tracer.attach(d.trace);
const id = tracer.define('seq');
const bytesId = tracer.define('blob');
const post = (m: unknown) => parentPort!.postMessage(m);

function hold(force = false): void {
  if (!(d.hold || force) || !d.control) return;
  const c = new Int32Array(d.control);
  while (Atomics.load(c, 0) === 0) Atomics.wait(c, 0, 0, 50);
}

function run(): void {
  if (d.mode === 'register-only') {
    try {
      const w = tracer.register(d.name);
      post({ type: 'registered', slot: w.slot, registration: w.registration });
      hold();
    } catch (err) {
      post({ type: 'error', name: (err as Error).name, message: (err as Error).message });
    }
    return;
  }
  let w;
  if (d.mode === 'register-retry') {
    // The slot this thread needs is released by the drain once the previous owner is salvaged.
    const nap = new Int32Array(new SharedArrayBuffer(4));
    for (let i = 0; ; i++) {
      try {
        w = tracer.register(d.name, { policy: d.policy });
        break;
      } catch (err) {
        if ((err as Error).name !== 'CapacityError' || i > 5000) throw err;
        Atomics.wait(nap, 0, 0, 2);
      }
    }
  } else {
    w = tracer.register(d.name, { policy: d.policy });
  }
  post({ type: 'registered', slot: w.slot, registration: w.registration });
  hold();
  const control = d.control ? new Int32Array(d.control) : undefined;
  let rng = d.seed ?? 1;
  const random = () => {
    rng = (Math.imul(rng, 1103515245) + 12345) >>> 0;
    return rng / 4294967296;
  };
  let kept = 0;
  /** record*() calls this thread made: what its `attempted` count must come to. */
  let calls = 0;
  switch (d.mode) {
    case 'exact':
    case 'register-retry':
      for (let seq = 0; seq < d.events; seq++) {
        if ((seq & 127) === 0) paceUntilSpare(w);
        calls++;
        if (random() < (d.bytesRatio ?? 0)) {
          const len = Math.floor(random() * ((d.maxPayload ?? 2048) + 1));
          if (w.recordBytes(bytesId, payloadFor(seq, len))) kept++;
        } else if (w.record(id, seq)) kept++;
      }
      break;
    case 'flood':
      // As fast as possible; the drain is expected to be paused.
      for (let seq = 0; seq < d.events; seq++, calls++) if (w.record(id, seq)) kept++;
      break;
    case 'priority-flood': {
      // As fast as possible, 1 % critical, 20 % debug, 79 % normal (priorityOfSeq), each event's
      // value its sequence number; with `control`, until control[0] is set after `events`.
      const ids = {
        critical: tracer.define('crit', { priority: 'critical' }),
        normal: id,
        debug: tracer.define('dbg', { priority: 'debug' }),
      };
      for (let seq = 0; seq < d.events; seq++, calls++) if (w.record(ids[priorityOfSeq(seq)], seq)) kept++;
      break;
    }
    case 'flood-until': {
      // As fast as possible until control[0] is set (the event loop never turns meanwhile).
      const c = control!;
      let seq = 0;
      while (Atomics.load(c, 0) === 0) for (let i = 0; i < 1024; i++, seq++) if (w.record(id, seq)) kept++;
      calls = seq;
      break;
    }
    case 'trickle': {
      // A fixed low rate: `batch` events per timer tick, never waiting for a spare ring, so only
      // a drain that keeps serving this thread keeps it from exhausting its pool.
      let seq = 0;
      const timer = setInterval(() => {
        for (let i = 0; i < (d.batch ?? 2) && seq < d.events; i++, seq++) if (w.record(id, seq)) kept++;
        if (seq < d.events) return;
        clearInterval(timer);
        post({ type: 'done', kept, calls: seq, metrics: tracer.metrics().threads.find((t) => t.slot === w.slot) });
        if (d.close) w.close();
      }, d.tickMs ?? 1);
      return;
    }
    case 'steady': {
      // Bursts of 300 events every millisecond: a load sustained over time.
      const nap = new Int32Array(new SharedArrayBuffer(4));
      for (let seq = 0; seq < d.events; seq++, calls++) {
        if (w.record(id, seq)) kept++;
        if (seq % 300 === 299) Atomics.wait(nap, 0, 0, 1);
      }
      break;
    }
    case 'paced': {
      // `perMs` events a millisecond (on average: a late wake-up is caught up), each value its
      // sequence number; every 4th is of a second normal name ('alt'), so that a reader's
      // per-name estimate can be checked too.
      const alt = tracer.define('alt');
      // Defined only when used: a critical name holds back the critical reserve.
      const mix = d.priorities
        ? { critical: tracer.define('crit', { priority: 'critical' }), normal: id, debug: tracer.define('dbg', { priority: 'debug' }) }
        : undefined;
      const idOf = mix ? (seq: number) => mix[priorityOfSeq(seq)] : (seq: number) => ((seq & 3) === 3 ? alt : id);
      const nap = new Int32Array(new SharedArrayBuffer(4));
      const perMs = d.perMs ?? 100;
      const b = d.burst;
      /** Events due `ms` into the run. */
      const dueBy = (ms: number): number => {
        if (!b) return ms * perMs;
        const cycle = b.burstMs + b.quietMs;
        const k = Math.floor(ms / cycle);
        const within = ms - k * cycle;
        const inCycle = within < b.burstMs ? within * perMs : b.burstMs * perMs + (within - b.burstMs) * b.quietPerMs;
        return k * (b.burstMs * perMs + b.quietMs * b.quietPerMs) + inCycle;
      };
      const t0 = performance.now();
      for (let seq = 0; seq < d.events;) {
        // Caught up after a late wake-up, but by at most 5 ms worth at once (a descheduled thread
        // on a loaded machine would otherwise come back with one huge burst).
        const due = Math.min(d.events, seq + 5 * perMs, Math.floor(dueBy(performance.now() - t0 + 1)));
        for (; seq < due; seq++, calls++) if (w.record(idOf(seq), seq)) kept++;
        Atomics.wait(nap, 0, 0, 1);
      }
      break;
    }
    case 'until-closed': {
      // Busy: the event loop never turns, so the close request never arrives; only the writer's
      // own slow path notices the tracer closed.
      if (control) Atomics.store(control, 1, 1);
      let seq = 0;
      while (!w.isClosed) for (let i = 0; i < 256; i++) w.record(id, seq++);
      post({ type: 'done', kept: seq, calls: seq, metrics: { attempted: seq, droppedAfterClose: w.droppedAfterClose } });
      return;
    }
    case 'close-race': {
      // Busy (the close request never arrives through the event loop) until control[0] says the
      // owner is closing; then a random number more (up to `events`) and this thread's own close
      // (the writer's, or with `close` the attached tracer's), racing the drain's final pass.
      const c = control!;
      Atomics.store(c, 1, 1);
      let seq = 0;
      while (Atomics.load(c, 0) === 0) for (let i = 0; i < 64; i++) w.record(id, seq++);
      const extra = Math.floor(random() * (d.events + 1));
      for (let i = 0; i < extra; i++) w.record(id, seq++);
      if (d.close) void tracer.close();
      else w.close();
      post({ type: 'done', kept: seq, calls: seq, metrics: { attempted: seq, droppedAfterClose: w.droppedAfterClose } });
      return;
    }
    case 'slow-exit': {
      // Busy with its own work (the event loop never turns), recording now and then, so no ring
      // fills and the slow path never runs: it cannot notice the close. After control[0], `events`
      // more, then it ends without closing its writer.
      const c = control!;
      const spin = (n: number) => {
        let x = 0;
        for (let i = 0; i < n; i++) x += i;
        return x;
      };
      let seq = 0;
      while (Atomics.load(c, 0) === 0) {
        w.record(id, seq++);
        spin(200);
        if (seq === 100) Atomics.store(c, 1, 1);
      }
      for (let i = 0; i < d.events; i++) {
        w.record(id, seq++);
        spin(200);
      }
      post({
        type: 'done',
        kept: seq,
        calls: seq,
        metrics: { attempted: seq, droppedAfterClose: w.droppedAfterClose, closed: w.isClosed },
      });
      return;
    }
    case 'forever':
      post({ type: 'started' });
      for (let seq = 0; ; seq++) {
        w.record(id, seq);
        if (control && (seq & 1023) === 0) Atomics.store(control, 1, seq);
      }
  }
  post({ type: 'done', kept, calls, metrics: tracer.metrics().threads.find((t) => t.slot === w.slot) });
  if (d.linger === 'loop') {
    // Idle, but the event loop turns (the periodic flush runs); close once released.
    const c = control!;
    const timer = setInterval(() => {
      if (Atomics.load(c, 0) === 0) return;
      clearInterval(timer);
      if (d.close) w.close();
    }, 5);
    return;
  }
  if (d.close) w.close();
  if (d.linger) hold(true);
}

try {
  run();
} catch (err) {
  post({ type: 'error', name: (err as Error).name, message: (err as Error).stack ?? String(err) });
}
