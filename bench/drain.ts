/**
 * Section 6: drain throughput, rings -> file, against a plain `fs.writeSync` loop of 64 KiB
 * buffers in the same run.
 *
 * Method: the whole pipeline, not the Drain class alone. The main thread fills rings at full speed
 * with 4 KiB records (recordBytes with a 4080-byte payload: the producer costs little per byte, so
 * the drain worker is the bottleneck), pacing on `spareRings()` so that nothing is ever dropped
 * (checked). Geometry: ringSize 1 MiB, 16 rings. Times taken: `drained` = every byte handed back
 * by the drain (written into the page cache), `closed` = after tracer.close() (which fsyncs).
 * The baseline writes the same volume with writeSync(64 KiB) and is timed at the same two points
 * (before and after fsync + close). /dev/null: both timed to `drained`/`written` (FileSink.close
 * fsyncs, which /dev/null refuses with EINVAL: see the note in the table).
 */
import { closeSync, fsyncSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Tracer } from '../src/index.js';
import { collectingLogger, loud, spinUntil, tempDir, type Row, type RunOptions } from './common.js';

const MiB = 1024 * 1024;
const REC = 4096;

interface Timing {
  drainedMs: number;
  closedMs: number;
  dropped: number;
  complete: boolean;
  errors: string[];
}

async function ringtraceRun(path: string, volume: number): Promise<Timing> {
  const RINGS = 16;
  const log = collectingLogger();
  const tracer = await Tracer.open({
    path,
    ringSize: '1MiB',
    ringsPerThread: RINGS,
    maxThreads: 2,
    flushIntervalMs: 0,
    logLevel: 'warn',
    exitHooks: false,
    logger: log,
    closeTimeoutMs: 1000,
  });
  const w = tracer.register('producer');
  const id = tracer.define('blob');
  const payload = new Uint8Array(REC - 16).fill(0x5a);
  const n = Math.floor(volume / REC);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    while (w.spareRings() === 0); // pace: never run into an exhausted pool
    w.recordBytes(id, payload);
  }
  spinUntil(() => w.spareRings() > 0, 60_000, 'a spare ring');
  w.flush();
  spinUntil(() => w.spareRings() === RINGS - 1, 60_000, 'the drain to write everything');
  const t1 = performance.now();
  const sum = await tracer.close();
  const t2 = performance.now();
  return {
    drainedMs: t1 - t0,
    closedMs: t2 - t0,
    dropped: sum?.dropped ?? NaN,
    complete: sum?.complete ?? false,
    errors: log.entries.filter((e) => e.level === 'error').map((e) => e.msg + (e.error ? `: ${e.error}` : '')),
  };
}

function writeLoop(path: string, volume: number, sync: boolean): { writtenMs: number; closedMs: number } {
  const buf = Buffer.alloc(64 * 1024, 0x5a);
  const n = Math.floor(volume / buf.length);
  const t0 = performance.now();
  const fd = openSync(path, 'w');
  for (let i = 0; i < n; i++) writeSync(fd, buf);
  const t1 = performance.now();
  if (sync) fsyncSync(fd);
  closeSync(fd);
  const t2 = performance.now();
  return { writtenMs: t1 - t0, closedMs: t2 - t0 };
}

const median = (a: number[]) => a.slice().sort((x, y) => x - y)[Math.floor((a.length - 1) / 2)];

export async function runDrain(opts: RunOptions): Promise<Row[]> {
  const volume = (opts.quick ? 32 : 512) * MiB;
  const reps = opts.quick ? 1 : 3;
  const file = `${tempDir()}/drain.rtrace`;
  const baseFile = `${tempDir()}/baseline.bin`;
  const r = {
    rtFileDrained: [] as number[],
    rtFileClosed: [] as number[],
    rtNull: [] as number[],
    wsFile: [] as number[],
    wsFileClosed: [] as number[],
    wsNull: [] as number[],
  };
  let dropped = 0;
  const errors = new Set<string>();
  let fileBytes = 0;
  let complete = true;
  const mbps = (ms: number) => volume / MiB / (ms / 1000);
  for (let rep = 0; rep < reps; rep++) {
    // Alternate baseline and ringtrace so that disk and machine noise hit both.
    const b = writeLoop(baseFile, volume, true);
    r.wsFile.push(mbps(b.writtenMs));
    r.wsFileClosed.push(mbps(b.closedMs));
    rmSync(baseFile, { force: true });
    const t = await ringtraceRun(file, volume);
    r.rtFileDrained.push(mbps(t.drainedMs));
    r.rtFileClosed.push(mbps(t.closedMs));
    dropped += t.dropped;
    complete &&= t.complete;
    fileBytes = statSync(file).size;
    t.errors.forEach((e) => errors.add(e));
    rmSync(file, { force: true });
    const bn = writeLoop('/dev/null', volume, false);
    r.wsNull.push(mbps(bn.writtenMs));
    const tn = await ringtraceRun('/dev/null', volume);
    r.rtNull.push(mbps(tn.drainedMs));
    dropped += tn.dropped === tn.dropped ? tn.dropped : 0;
    tn.errors.forEach((e) => errors.add(`/dev/null: ${e}`));
  }
  if (dropped !== 0) loud(`FAILURE: ${dropped} events dropped in the paced drain benchmark`);
  const row = (name: string, v: number[], base: number[], baseName: string, extra: Record<string, unknown> = {}): Row => {
    const value = median(v);
    const b = median(base);
    return {
      section: 'drain',
      name,
      value,
      unit: 'MB/s',
      baseline: `${baseName} (${b.toFixed(0)} MB/s)`,
      ratio: value / b,
      target: '>= 80% of baseline',
      pass: dropped === 0 && value / b >= 0.8,
      detail: {
        runsMBps: v.map((x) => Math.round(x)),
        baselineRunsMBps: base.map((x) => Math.round(x)),
        volumeMiB: volume / MiB,
        ...extra,
      },
    };
  };
  const nullErr = [...errors].filter((e) => e.startsWith('/dev/null'));
  return [
    row('ringtrace -> temp file (drained, page cache)', r.rtFileDrained, r.wsFile, 'writeSync 64 KiB', { fileBytes, complete }),
    row('ringtrace -> temp file (incl. close + fsync)', r.rtFileClosed, r.wsFileClosed, 'writeSync + fsync'),
    {
      ...row('ringtrace -> /dev/null (drained)', r.rtNull, r.wsNull, 'writeSync /dev/null'),
      note: nullErr.length
        ? `close() on /dev/null: ${nullErr[0]} (FileSink.close() fsyncs; /dev/null answers EINVAL, so the trace ends without a footer)`
        : undefined,
    },
  ];
}
