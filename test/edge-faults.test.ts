/**
 * Edge faults of the tracer and the writer: a failed open or attach leaves nothing behind, a
 * record call that throws is not counted, and a closed writer's slot is there for the next
 * registration.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { Ctl } from '../src/shm/layout.js';
import { CapacityError, Tracer, openTrace, type TracerHandle, type Writer } from '../src/index.js';
import { cycle, type CycleResult, type CycleWorkerData } from './helpers/cycle-worker.js';
import { paceUntilSpare, tempTrace } from './helpers/scenario.js';

const quiet = { logLevel: 'error', exitHooks: false } as const;
const openFailChild = fileURLToPath(new URL('./fixtures/open-fail-child.js', import.meta.url));

const haveDevFull = (() => {
  try {
    return statSync('/dev/full').isCharacterDevice();
  } catch {
    return false;
  }
})();

/** Runs a child to its own exit; a child that does not exit within `ms` is killed and that is
 * the failure (the bound is generous: it only turns a hang into a failed test). */
function runToExit(args: string[], ms: number): Promise<{ code: number | null; stdout: string; stderr: string; hung: boolean }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (b) => (stdout += b));
    p.stderr.on('data', (b) => (stderr += b));
    let hung = false;
    const timer = setTimeout(() => {
      hung = true;
      p.kill('SIGKILL');
    }, ms);
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, hung });
    });
  });
}

describe('Tracer.open on a file it cannot write', { skip: !haveDevFull && 'no /dev/full here' }, () => {
  it('rejects, leaves no worker, fd or listener behind, and the process exits by itself', async () => {
    const times = 5;
    const r = await runToExit([openFailChild, '/dev/full', String(times)], 60_000);
    assert.equal(r.hung, false, `the child did not exit by itself; it printed: ${r.stdout}${r.stderr}`);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.errors.length, times);
    for (const e of out.errors) assert.match(e, /cannot open trace file \/dev\/full: ENOSPC/);
    assert.deepEqual(out.after.listeners, out.before.listeners, 'process listeners');
    // The first worker a process starts may leave things of Node's own: compare the retries.
    assert.equal(out.after.resources, out.first.resources, `active handles after 1 and after ${times} failures`);
    assert.equal(out.after.fds, out.first.fds, `open file descriptors after 1 and after ${times} failures`);
  });
});

describe('Tracer.attach with a handle that does not fit its buffer', () => {
  it('throws a clear error and leaves no listener or channel behind (30 failures, no warning)', async () => {
    const tracer = await Tracer.open({ path: tempTrace('attach-fail'), ...quiet });
    const h = tracer.handle;
    const copy = (edit: (i32: Int32Array) => void): SharedArrayBuffer => {
      const b = new SharedArrayBuffer(h.buffer.byteLength);
      new Uint8Array(b).set(new Uint8Array(h.buffer));
      edit(new Int32Array(b));
      return b;
    };
    const bad: Array<[TracerHandle, RegExp]> = [
      [{ ...h, sessionId: 'wrong-magic', buffer: copy((i) => (i[Ctl.MAGIC] = 0)) }, /wrong magic number/],
      [{ ...h, sessionId: 'old-layout', buffer: copy((i) => (i[Ctl.VERSION] = 1)) }, /shared layout version 1/],
      [{ ...h, sessionId: 'geometry', geometry: { ...h.geometry, ringSize: h.geometry.ringSize * 2 } }, /geometry/],
      [{ ...h, sessionId: 'no-geometry', geometry: undefined as never }, /geometry/],
      [{ ...h, sessionId: 'short-buffer', buffer: new SharedArrayBuffer(4096) }, /geometry|buffer/],
    ];
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    const workerListeners = process.listenerCount('worker');
    try {
      for (let i = 0; i < 30; i++) {
        const [handle, message] = bad[i % bad.length];
        assert.throws(() => Tracer.attach(handle), message);
      }
      assert.equal(process.listenerCount('worker'), workerListeners, "process 'worker' listeners");
      await new Promise((r) => setImmediate(r)); // warnings are emitted on a later tick
      assert.deepEqual(warnings, []);
    } finally {
      process.removeListener('warning', onWarning);
      await tracer.close();
    }
  });
});

/** Each chunk's running totals (attempted = events so far + drops so far), checked by cutting the
 * file right after each CHUNK record: the reader then reports that chunk as the thread's last. */
function checkEveryChunk(path: string): number {
  const bytes = readFileSync(path);
  const cut = path.replace(/\.rtrace$/, '-cut.rtrace');
  let chunks = 0;
  for (let off = 16; off < bytes.length;) {
    const end = off + 16 + bytes.readUInt32LE(off + 4);
    if (bytes.readUInt32LE(off) === 4) {
      chunks++;
      writeFileSync(cut, bytes.subarray(0, end));
      for (const t of openTrace(cut).summary().threads)
        if (t.lastChunk) assert.equal(t.lastChunk.balanced, true, `${t.name}: running totals of the chunk ending at ${end}`);
    }
    off = end;
  }
  return chunks;
}

describe('a record call that throws', () => {
  const detached = () => {
    const p = new Uint8Array(8);
    structuredClone(p.buffer, { transfer: [p.buffer] });
    return p;
  };
  // Every way a call can throw once it is past its first check, on the fast path and (at a full
  // ring) on the slow path.
  const throwing: Array<[string, (w: Writer, id: number) => unknown, RegExp]> = [
    ['record(id, BigInt)', (w, id) => w.record(id, 5n as never), /BigInt/],
    ['recordAt(ts, id, BigInt)', (w, id) => w.recordAt(w.now(), id, 5n as never), /BigInt/],
    ['recordAt(BigInt ts, id)', (w, id) => w.recordAt((2n ** 62n) as never, id), /BigInt/],
    ['record(BigInt id)', (w) => w.record(5n as never), /BigInt/],
    [
      'record(id, valueOf throws)',
      (w, id) =>
        w.record(id, {
          valueOf: () => {
            throw new Error('no number');
          },
        } as never),
      /no number/,
    ],
    ['begin(BigInt id)', (w) => w.begin(5n as never), /BigInt/],
    ['end(BigInt id)', (w) => w.end(5n as never), /BigInt/],
    ['recordBytes(id, detached)', (w, id) => w.recordBytes(id, detached()), /detached/],
    ['recordBytes(BigInt id, payload)', (w) => w.recordBytes(5n as never, new Uint8Array(3)), /BigInt/],
    ['recordBytes(id, not a Uint8Array)', (w, id) => w.recordBytes(id, [1, 2] as never), /Uint8Array/],
  ];
  for (const policy of ['drop-oldest', 'drop-newest'] as const) {
    it(`is not counted: 1000 good events between throwing calls, all balanced (${policy})`, async () => {
      const path = tempTrace(`throwing-${policy}`);
      const tracer = await Tracer.open({ path, ringSize: '4KiB', policy, ...quiet });
      const w = tracer.register('throwing');
      const id = tracer.define('seq');
      const good = 1000;
      for (let seq = 0; seq < good; seq++) {
        paceUntilSpare(w); // nothing dropped: every good event must be in the file
        assert.equal(w.record(id, seq), true);
        const [what, call, error] = throwing[seq % throwing.length];
        assert.throws(() => call(w, id), error, what);
      }
      w.close();
      const summary = (await tracer.close())!;
      const t = summary.threads.find((x) => x.name === 'throwing')!;
      assert.deepEqual(
        { attempted: t.attempted, events: t.events, dropped: t.dropped, byReason: t.droppedByReason, balanced: summary.balanced },
        { attempted: good, events: good, dropped: 0, byReason: {}, balanced: true },
      );
      assert.ok(t.swaps > 3, `the throwing calls met full rings too (${t.swaps} swaps)`);
      const r = openTrace(path);
      assert.equal(r.damage, undefined);
      assert.deepEqual(
        [...r.events()].map((e) => e.value),
        Array.from({ length: good }, (_, i) => i),
      );
      const ft = r.summary().threads.find((x) => x.name === 'throwing')!;
      assert.deepEqual(
        { attempted: ft.attempted, events: ft.events, dropped: ft.dropped, balanced: ft.balanced },
        { attempted: good, events: good, dropped: 0, balanced: true },
      );
      assert.ok(checkEveryChunk(path) > 3);
    });
  }
});

describe('close, then register, in a loop', () => {
  it('1000 cycles on the main thread and 1000 in a worker at once, 2 slots: every registration succeeds, all balanced', async () => {
    const path = tempTrace('cycles');
    const tracer = await Tracer.open({ path, maxThreads: 2, ringsPerThread: 2, ringSize: '4KiB', ...quiet });
    const cycles = 1000;
    const events = 3;
    const data: CycleWorkerData = { trace: tracer.handle, name: 'worker', cycles, events };
    const worker = new Worker(new URL('./helpers/cycle-worker.js', import.meta.url), { workerData: data });
    const fromWorker = new Promise<CycleResult>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    const onMain = cycle(tracer, 'main', cycles, events);
    const inWorker = await fromWorker;
    const summary = (await tracer.close())!;
    assert.deepEqual(onMain, { registered: cycles, failed: 0 }, 'main thread');
    assert.deepEqual(inWorker, { registered: cycles, failed: 0 }, 'worker');
    assert.equal(summary.threads.length, 2 * cycles);
    assert.equal(summary.balanced, true);
    assert.equal(summary.events, 2 * cycles * events);
    for (const t of summary.threads) assert.deepEqual([t.attempted, t.events, t.endReason], [events, events, 'closed']);
    const read = openTrace(path).summary();
    assert.equal(read.complete, true);
    assert.equal(read.threads.length, 2 * cycles);
    assert.ok(read.threads.every((t) => t.balanced));
  });

  it('CapacityError says whether the slots are held by live writers or by closed ones the drain has not released', async () => {
    const tracer = await Tracer.open({ path: tempTrace('capacity'), maxThreads: 1, ...quiet });
    try {
      await tracer.pauseDrain(); // a paused drain releases nothing
      tracer.register('first').close();
      assert.throws(
        () => tracer.register('second'),
        (e: Error) =>
          e instanceof CapacityError &&
          e.capacity === 1 &&
          e.live === 0 &&
          e.unreleased === 1 &&
          /all 1 thread slots are in use/.test(e.message) &&
          /1 by writers that closed or whose thread ended/.test(e.message) &&
          /the drain is paused/.test(e.message),
      );
      tracer.resumeDrain();
      const w = tracer.register('third'); // waits for the drain to release the slot
      const inWorker = await new Promise<CycleResult>((resolve, reject) => {
        const worker = new Worker(new URL('./helpers/cycle-worker.js', import.meta.url), {
          workerData: { trace: tracer.handle, name: 'worker', cycles: 1, events: 1 } satisfies CycleWorkerData,
        });
        worker.once('message', resolve);
        worker.once('error', reject);
      });
      assert.equal(inWorker.failed, 1);
      assert.match(inWorker.firstError!, /^CapacityError: ringtrace: all 1 thread slots are in use by live writers; raise maxThreads/);
      w.close();
    } finally {
      await tracer.close();
    }
  });
});
