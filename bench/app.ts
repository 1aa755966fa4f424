/**
 * Section `app`: a macro benchmark. An HTTP server (node:http, bench/app-server.ts) hands every
 * request to a 2-thread piscina pool (bench/app-task.ts); with tracing on, 10 events per request
 * (the main thread: the request as a slice; the task: a slice around 6 values). autocannon (in this
 * process, `connections` 20) drives it for a fixed time; the server runs in its own process, so its
 * process CPU (main thread, pool, drain worker) is measured alone.
 *
 * Every round starts a fresh server process per variant (tracing off / on, order flipped each
 * round), warms it up with a short autocannon run, then measures one run: req/s, p99 latency (from
 * autocannon), and CPU per request (the server's process CPU over the requests it completed in the
 * window). Medians over rounds; targets: on/off within 2 % for req/s and CPU per request.
 */
import { fork, type ChildProcess } from 'node:child_process';
import autocannon from 'autocannon';
import { loud, round, tempDir, type Row, type RunOptions } from './common.js';
import type { ParentMsg, ServerMsg } from './app-server.js';

const CONNECTIONS = 20;
const EVENTS_PER_REQUEST = 10;

interface AppSample {
  reqPerSec: number;
  p99Ms: number;
  p50Ms: number;
  cpuUsPerReq: number;
  /** server process CPU, % of a core */
  cpuPct: number;
  mainCpuPct?: number;
  requests: number;
  errors: number;
  non2xx: number;
  events?: number;
  dropped?: number;
  balanced?: boolean;
  tracerErrors: string[];
}

class Server {
  private readonly queue: ServerMsg[] = [];
  private waiter: ((m: ServerMsg) => void) | undefined;
  constructor(readonly child: ChildProcess) {
    child.on('message', (m: ServerMsg) => {
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = undefined;
        w(m);
      } else this.queue.push(m);
    });
  }
  next<T extends ServerMsg['type']>(type: T, timeoutMs = 30_000): Promise<Extract<ServerMsg, { type: T }>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`bench app: no '${type}' from the server in ${timeoutMs} ms`)), timeoutMs);
      const take = (m: ServerMsg) => {
        clearTimeout(timer);
        if (m.type !== type) reject(new Error(`bench app: expected '${type}' from the server, got '${m.type}'`));
        else resolve(m as Extract<ServerMsg, { type: T }>);
      };
      const q = this.queue.shift();
      if (q) take(q);
      else this.waiter = take;
    });
  }
  send(m: ParentMsg): void {
    this.child.send(m);
  }
}

function load(url: string, seconds: number): Promise<autocannon.Result> {
  return autocannon({ url, connections: CONNECTIONS, duration: seconds });
}

async function oneRun(on: boolean, seconds: number, warmupSeconds: number, k: number): Promise<AppSample> {
  const child = fork(new URL('./app-server.js', import.meta.url), [on ? 'on' : 'off', `${tempDir()}/app-${k}.rtrace`], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<number | null>((r) => child.once('exit', r));
  const s = new Server(child);
  try {
    const { port } = await s.next('ready');
    const url = `http://127.0.0.1:${port}/`;
    await load(url, warmupSeconds);
    s.send({ type: 'start' });
    await s.next('started');
    const r = await load(url, seconds);
    s.send({ type: 'stop' });
    const st = await s.next('stopped');
    s.send({ type: 'close' });
    const c = await s.next('closed');
    await exited;
    return {
      reqPerSec: r.requests.total / (st.wallMs / 1000),
      p99Ms: r.latency.p99,
      p50Ms: r.latency.p50,
      cpuUsPerReq: st.cpuUs / st.requests,
      cpuPct: (100 * st.cpuUs) / 1000 / st.wallMs,
      mainCpuPct: st.mainCpuMs === undefined ? undefined : (100 * st.mainCpuMs) / st.wallMs,
      requests: st.requests,
      errors: r.errors + r.timeouts,
      non2xx: r.non2xx,
      events: c.events,
      dropped: c.dropped,
      balanced: c.balanced,
      tracerErrors: c.errors,
    };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill();
  }
}

const median = (a: number[]) => {
  const b = a.slice().sort((x, y) => x - y);
  const m = b.length >> 1;
  return b.length % 2 ? b[m] : (b[m - 1] + b[m]) / 2;
};

export async function runApp(opts: RunOptions): Promise<Row[]> {
  const seconds = opts.quick ? 1 : 5;
  const warmup = opts.quick ? 0.5 : 1;
  const rounds = opts.quick ? 1 : 3;
  const on: AppSample[] = [];
  const off: AppSample[] = [];
  let k = 0;
  for (let r = 0; r < rounds; r++) {
    for (const tracing of r % 2 === 0 ? [false, true] : [true, false]) {
      const s = await oneRun(tracing, seconds, warmup, k++);
      (tracing ? on : off).push(s);
    }
  }
  const bad = [...on, ...off].filter((s) => s.errors || s.non2xx);
  if (bad.length)
    loud(`app: ${bad.length} run(s) had errors or non-2xx responses: ${JSON.stringify(bad.map((s) => [s.errors, s.non2xx]))}`);
  const dropped = on.reduce((n, s) => n + (s.dropped ?? 0), 0);
  const unbalanced = on.filter((s) => s.balanced !== true).length;
  const tracerErrors = [...new Set(on.flatMap((s) => s.tracerErrors))];
  if (dropped || unbalanced || tracerErrors.length)
    loud(`app: tracing on: ${dropped} dropped, ${unbalanced} unbalanced close(s), errors: ${tracerErrors.join('; ') || 'none'}`);
  const m = (a: AppSample[], f: (s: AppSample) => number) => median(a.map(f));
  const perRound = (f: (s: AppSample) => number | undefined, d = 1) => ({
    on: on.map((s) => round(f(s) ?? NaN, d)),
    off: off.map((s) => round(f(s) ?? NaN, d)),
  });
  const common = { seconds, warmupSeconds: warmup, rounds, connections: CONNECTIONS, eventsPerRequest: EVENTS_PER_REQUEST };
  const rps = { on: m(on, (s) => s.reqPerSec), off: m(off, (s) => s.reqPerSec) };
  const p99 = { on: m(on, (s) => s.p99Ms), off: m(off, (s) => s.p99Ms) };
  const cpr = { on: m(on, (s) => s.cpuUsPerReq), off: m(off, (s) => s.cpuUsPerReq) };
  const valid = bad.length === 0 && dropped === 0 && unbalanced === 0;
  const eventsOk = on.every((s) => s.events === undefined || s.events >= s.requests * EVENTS_PER_REQUEST);
  const serverCpu = { on: m(on, (s) => s.cpuPct), off: m(off, (s) => s.cpuPct) };
  return [
    {
      section: 'app',
      name: 'req/s, tracing on',
      value: rps.on,
      unit: 'req/s',
      baseline: `tracing off (${rps.off.toFixed(0)} req/s)`,
      ratio: rps.on / rps.off,
      delta: rps.on - rps.off,
      target: '>= 0.98x off',
      pass: valid && rps.on / rps.off >= 0.98,
      detail: { ...common, reqPerSec: perRound((s) => s.reqPerSec, 0) },
      note: `rounds on ${perRound((s) => s.reqPerSec, 0).on.join('/')}, off ${perRound((s) => s.reqPerSec, 0).off.join('/')}`,
    },
    {
      section: 'app',
      name: 'CPU per request, tracing on',
      value: cpr.on,
      unit: 'us/req',
      baseline: `tracing off (${cpr.off.toFixed(1)} us/req)`,
      ratio: cpr.on / cpr.off,
      delta: cpr.on - cpr.off,
      target: '<= 1.02x off',
      pass: valid && cpr.on / cpr.off <= 1.02,
      detail: {
        cpuUsPerReq: perRound((s) => s.cpuUsPerReq, 2),
        serverCpuPct: perRound((s) => s.cpuPct, 1),
        mainThreadCpuPct: perRound((s) => s.mainCpuPct, 1),
      },
      note: `server process CPU (all its threads) / requests completed in the window; server at ${serverCpu.on.toFixed(0)} % vs ${serverCpu.off.toFixed(0)} % of a core`,
    },
    {
      section: 'app',
      name: 'p99 latency, tracing on',
      value: p99.on,
      unit: 'ms',
      baseline: `tracing off (${p99.off.toFixed(1)} ms)`,
      ratio: p99.on / p99.off,
      delta: p99.on - p99.off,
      detail: { p99Ms: perRound((s) => s.p99Ms), p50Ms: perRound((s) => s.p50Ms) },
      note: `autocannon -c ${CONNECTIONS}, ${seconds} s per run after ${warmup} s warm-up; p50 ${m(on, (s) => s.p50Ms)} vs ${m(off, (s) => s.p50Ms)} ms`,
    },
    {
      section: 'app',
      name: 'events in the trace per request (on)',
      value: median(on.map((s) => (s.events ?? NaN) / s.requests)),
      unit: 'events/req',
      target: `>= ${EVENTS_PER_REQUEST} (warm-up included), 0 drops`,
      pass: eventsOk && dropped === 0 && unbalanced === 0,
      detail: { events: on.map((s) => s.events), requestsInWindow: on.map((s) => s.requests), dropped, unbalanced },
      note: 'the trace also holds the warm-up run, so > 10',
    },
  ];
}
