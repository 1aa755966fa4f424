/**
 * The app benchmark's server process (forked by bench/app.ts): node:http, each request handled by
 * a 2-thread piscina pool, tracing on (default configuration, the main thread records the request
 * as a slice, each task records a slice and 6 values: 10 events per request) or off (no tracer;
 * the same code with the writer calls skipped).
 *
 * argv: `on|off <trace path>`. IPC protocol:
 *   child  -> {type:'ready', port}
 *   parent -> {type:'start'}  child -> {type:'started'}          (CPU and request counters taken)
 *   parent -> {type:'stop'}   child -> {type:'stopped', ...}     (CPU and requests in the window)
 *   parent -> {type:'close'}  child -> {type:'closed', ...}      (server, tracer, pool closed; exits)
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Piscina } from 'piscina';
import { Tracer, type Writer } from '../src/index.js';
import { mainThreadCpuNs, processCpuUs } from './threadcpu.js';

export type ServerMsg =
  | { type: 'ready'; port: number }
  | { type: 'started' }
  | { type: 'stopped'; cpuUs: number; mainCpuMs: number | undefined; wallMs: number; requests: number }
  | { type: 'closed'; events?: number; dropped?: number; balanced?: boolean; errors: string[] };
export type ParentMsg = { type: 'start' | 'stop' | 'close' };

const [mode, path] = process.argv.slice(2);
const errors: string[] = [];
let tracer: Tracer | undefined;
let main: Writer | undefined;
let request = 0;
if (mode === 'on') {
  tracer = await Tracer.open({
    path,
    exitHooks: false,
    logLevel: 'error',
    logger: (e) => {
      if (e.level === 'error') errors.push(e.msg);
    },
  });
  main = tracer.register('main');
  request = tracer.define('http.request');
}
const pool = new Piscina({
  filename: new URL('./app-task.js', import.meta.url).href,
  workerData: { trace: tracer?.handle },
  minThreads: 2,
  maxThreads: 2,
});

let handled = 0;
let n = 0;
const server = createServer((_req, res) => {
  main?.begin(request);
  pool.run(n++).then(
    (h: number) => {
      main?.end(request);
      handled++;
      res.end(String(h));
    },
    (err: Error) => {
      res.statusCode = 500;
      res.end(err.message);
    },
  );
});
server.keepAliveTimeout = 30_000;
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));

const send = (m: ServerMsg) => process.send!(m);
let cpu0 = 0;
let main0: number | undefined;
let wall0 = 0;
let req0 = 0;
process.on('message', (m: ParentMsg) => {
  if (m.type === 'start') {
    cpu0 = processCpuUs();
    main0 = mainThreadCpuNs();
    wall0 = performance.now();
    req0 = handled;
    send({ type: 'started' });
  } else if (m.type === 'stop') {
    const cpuUs = processCpuUs() - cpu0;
    const main1 = mainThreadCpuNs();
    send({
      type: 'stopped',
      cpuUs,
      mainCpuMs: main0 === undefined || main1 === undefined ? undefined : (main1 - main0) / 1e6,
      wallMs: performance.now() - wall0,
      requests: handled - req0,
    });
  } else if (m.type === 'close') {
    void (async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      const sum = await tracer?.close();
      await pool.destroy();
      send({ type: 'closed', events: sum?.events, dropped: sum?.dropped, balanced: sum?.balanced, errors });
      process.disconnect();
    })();
  }
});
send({ type: 'ready', port: (server.address() as AddressInfo).port });
