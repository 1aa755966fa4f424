/**
 * `node --import ringtrace/auto`: an unmodified node:http app with a worker pool (piscina) and a
 * worker polling it with fetch, traced under load; then the file it leaves, its default path,
 * a bad setting and a SIGTERM the app does not handle.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import autocannon from 'autocannon';
import { openTrace, type TraceEvent } from '../src/index.js';
import { exportTrace } from '../src/cli/export.js';
import { tempTrace } from './helpers/scenario.js';

const auto = new URL('../src/auto.js', import.meta.url).href;
const fixture = (name: string) => fileURLToPath(new URL(`../../test/fixtures/${name}`, import.meta.url));
const cleanEnv = () => Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RINGTRACE_')));

interface App {
  child: ChildProcess;
  port: number;
  stderr: () => string;
}

/** Starts a fixture under `--import ringtrace/auto` and waits for its "listening <port>" line. */
async function startApp(file: string, env: NodeJS.ProcessEnv, cwd?: string): Promise<App> {
  const child = spawn(process.execPath, ['--import', auto, fixture(file)], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`app exited (${code}) before listening: ${err}`)));
  });
  return { child, port, stderr: () => err };
}

async function stop(app: App): Promise<{ code: number | null; signal: string | null }> {
  const exited = once(app.child, 'exit');
  app.child.kill('SIGTERM');
  const [code, signal] = (await exited) as [number | null, string | null];
  return { code, signal };
}

/** Polls until `cond` holds (the live file is read again each time), at most `ms`. */
async function until(what: string, cond: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const attrsOf = (e: TraceEvent): Record<string, unknown> => JSON.parse(Buffer.from(e.payload!).toString('utf8')) as Record<string, unknown>;
const hex = (span: number) => '0x' + span.toString(16);

test('an unmodified http app with a worker pool, under load: a span per request with its status, loop delay, GC, every thread balanced', async () => {
  const path = tempTrace('auto-app');
  const app = await startApp('auto-app.mjs', { ...cleanEnv(), RINGTRACE_PATH: path, RINGTRACE_FLUSH_INTERVAL: '100ms' });
  const paths = ['/hello', '/cpu?n=2000&token=secret', '/nope', '/via-http'];
  const result = await autocannon({
    url: `http://127.0.0.1:${app.port}`,
    connections: 8,
    amount: 2048, // 256 per connection: 64 rounds of the four paths each
    requests: paths.map((path) => ({ path })),
  });
  assert.equal(result.errors, 0);
  // The counters come every 500 ms: wait until the live file has them from the main thread.
  const named = (n: string) => () => {
    for (const e of openTrace(path).events()) if (e.thread === 0 && e.name?.startsWith(n)) return true;
    return false;
  };
  await until('an event-loop delay sample', named('eventloop.delay.max.ms'));
  await until('a GC pause', named('gc.'));
  const { code } = await stop(app);
  assert.equal(code, 0, app.stderr());
  assert.equal(app.stderr(), '', 'a traced healthy run prints nothing when RINGTRACE_PATH is set');

  const trace = openTrace(path);
  const summary = trace.summary();
  assert.equal(trace.complete, true);
  assert.ok(
    summary.threads.every((t) => t.balanced),
    JSON.stringify(summary.threads),
  );
  // main, the two pool workers and the poller, each with its own writer.
  assert.equal(trace.threads.length, 4, JSON.stringify(trace.threads.map((t) => t.name)));
  assert.deepEqual(trace.threads.filter((t) => t.name.startsWith('worker-')).length, 3);

  const begins = new Map<number, TraceEvent>();
  const ends = new Map<number, TraceEvent>();
  const attrs = new Map<string, Record<string, unknown>>();
  const counters = new Set<string>();
  for (const e of trace.events()) {
    if (e.kind === 'async-begin') begins.set(e.span!, e);
    else if (e.kind === 'async-end') ends.set(e.span!, e);
    else if (e.name === 'span.attrs') attrs.set(attrsOf(e).span as string, attrsOf(e));
    else if (e.kind === 'value' && e.thread === 0) counters.add(e.name!);
  }
  const server = [...begins.values()].filter((b) => b.name === 'http.server.request');
  const client = [...begins.values()].filter((b) => b.name === 'http.client.request');
  const attrsOfSpan = (b: TraceEvent) => attrs.get(hex(b.span!));
  // Every request the server received ended, with its attributes.
  for (const b of server) {
    assert.ok(ends.has(b.span!), `span ${hex(b.span!)} ended`);
    assert.ok(attrsOfSpan(b), `span ${hex(b.span!)} has attributes`);
  }
  const byUrl = (spans: TraceEvent[], url: string) => spans.map((b) => attrsOfSpan(b)).filter((a) => a?.url === url);
  // autocannon's 2048 requests, a quarter each; /via-http also requested /hello (main's client
  // spans) and the poller /hello (its client spans, on its worker).
  const quarter = 2048 / 4;
  assert.equal(result['4xx'], quarter);
  assert.equal(byUrl(server, '/nope').length, quarter);
  assert.ok(byUrl(server, '/nope').every((a) => a?.status === 404 && a.method === 'GET'));
  assert.equal(byUrl(server, '/cpu').length, quarter, 'the URL is recorded without its query string');
  assert.equal(byUrl(server, '/via-http').length, quarter);
  for (const a of byUrl(server, '/hello')) assert.equal(a?.status, 200);
  const relayed = client.filter((b) => b.thread === 0);
  assert.equal(relayed.length, quarter);
  assert.ok(relayed.every((b) => ends.has(b.span!) && attrsOfSpan(b)?.status === 200 && attrsOfSpan(b)?.url === '/hello'));
  // The poller is terminated at SIGTERM: its request in flight then has no end.
  const polled = client.filter((b) => b.thread !== 0);
  const answered = polled.filter((b) => attrsOfSpan(b)?.status === 200);
  assert.ok(answered.length > 0, 'the poller worker fetched');
  assert.ok(polled.length - answered.length <= 1, `${polled.length - answered.length} poller requests unanswered`);
  const hello = byUrl(server, '/hello').length;
  assert.ok(hello >= quarter + relayed.length + answered.length && hello <= quarter + relayed.length + polled.length, String(hello));
  for (const n of ['eventloop.delay.mean.ms', 'eventloop.delay.p99.ms', 'eventloop.delay.max.ms']) assert.ok(counters.has(n), n);
  assert.ok(
    [...counters].some((n) => n.startsWith('gc.')),
    [...counters].join(),
  );

  // In the Chrome export the attributes are the span's args.
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  await exportTrace(trace, 'chrome', out);
  const { traceEvents } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { traceEvents: Array<Record<string, unknown>> };
  const nope = traceEvents.find((e) => e.ph === 'b' && (e.args as Record<string, unknown>)?.url === '/nope');
  assert.deepEqual(nope?.args, { method: 'GET', url: '/nope', status: 404, span: (nope?.args as { span: string }).span });
  assert.ok(!traceEvents.some((e) => e.name === 'span.attrs'), 'attributes merged into spans are not drawn again');
});

test('without RINGTRACE_PATH: a file in the working directory, named once on stderr; SIGTERM the app does not handle finishes it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rt-auto-default-'));
  const app = await startApp('auto-plain-server.mjs', cleanEnv(), dir);
  await fetch(`http://127.0.0.1:${app.port}/x`).then((r) => r.text());
  const { signal } = await stop(app);
  assert.equal(signal, 'SIGTERM');
  const files = readdirSync(dir).filter((f) => f.endsWith('.rtrace'));
  assert.equal(files.length, 1, readdirSync(dir).join());
  assert.match(files[0], new RegExp(`^ringtrace-\\d{8}-\\d{6}-${app.child.pid}\\.rtrace$`));
  assert.equal(app.stderr(), `ringtrace/auto: tracing to ${join(dir, files[0])} (RINGTRACE_PATH chooses the file)\n`);
  const trace = openTrace(join(dir, files[0]));
  assert.equal(trace.complete, true);
  assert.ok(trace.summary().threads.every((t) => t.balanced));
  const spans = [...trace.events()].filter((e) => e.name === 'http.server.request');
  assert.deepEqual(
    spans.map((e) => e.kind),
    ['async-begin', 'async-end'],
  );
});

test('%p in RINGTRACE_PATH is the pid; a bad setting is reported and the app runs untraced', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rt-auto-bad-'));
  const ok = spawnSync(process.execPath, ['--import', auto, '-e', 'console.log(process.pid)'], {
    env: { ...cleanEnv(), RINGTRACE_PATH: join(dir, 'app-%p.rtrace') },
    encoding: 'utf8',
  });
  assert.equal(ok.status, 0, ok.stderr);
  assert.ok(existsSync(join(dir, `app-${ok.stdout.trim()}.rtrace`)), readdirSync(dir).join());
  const bad = spawnSync(process.execPath, ['--import', auto, '-e', 'console.log("app ran")'], {
    env: { ...cleanEnv(), RINGTRACE_PATH: join(dir, 'bad.rtrace'), RINGTRACE_RING_SIZE: '65000' },
    encoding: 'utf8',
  });
  assert.equal(bad.status, 0);
  assert.equal(bad.stdout, 'app ran\n');
  assert.match(bad.stderr, /^ringtrace\/auto: not tracing: ringtrace config: ringSize = "65000" from env RINGTRACE_RING_SIZE is invalid/);
  assert.ok(!existsSync(join(dir, 'bad.rtrace')));
});
