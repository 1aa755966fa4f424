/**
 * OpenTelemetry in and out: ringtrace/otel's SpanProcessor records every ended span (main thread
 * and a real worker thread) with its ids, times, attributes, events and status, counts losses
 * when the pool is stalled; the Chrome export draws the spans; `ringtrace export --format otlp`
 * and `ringtrace send` deliver every span and every thread's loss attributes, decoded here with
 * the official OTLP .proto definitions (test/fixtures/otlp-proto, from opentelemetry-proto).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { context, trace as otelTrace, type Attributes } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import protobuf from 'protobufjs';
import { Tracer, openTrace, type TraceReader } from '../src/index.js';
import { RingtraceSpanProcessor, decodeOtelSpan, type OtelSpanRecord } from '../src/otel/index.js';
import { PayloadWriter, STR_INLINE } from '../src/otel/payload.js';
import { waitFor } from './helpers/wait.js';

const cli = fileURLToPath(new URL('../src/cli/cli.js', import.meta.url));
const protoDir = fileURLToPath(new URL('../../test/fixtures/otlp-proto/', import.meta.url));
const quiet = { exitHooks: false, logger: () => {} } as const;

/** ExportTraceServiceRequest from the official .proto files. */
function requestType(): protobuf.Type {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => join(protoDir, target);
  root.loadSync('opentelemetry/proto/collector/trace/v1/trace_service.proto');
  return root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');
}
const Request = requestType();

interface KV {
  key: string;
  value: { stringValue?: string; intValue?: string; doubleValue?: number; boolValue?: boolean; arrayValue?: { values: KV['value'][] } };
}
interface OSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind?: string;
  attributes?: KV[];
  events?: Array<{ name: string; attributes?: KV[] }>;
  status?: { code?: string; message?: string };
  startTimeUnixNano: string;
  endTimeUnixNano: string;
}
interface OResourceSpans {
  resource: { attributes: KV[] };
  scopeSpans: Array<{ scope?: { name: string; version?: string }; spans: OSpan[] }>;
}

function decodeRequest(body: Uint8Array): OResourceSpans[] {
  const m = Request.toObject(Request.decode(body), { longs: String, bytes: String, enums: String, defaults: false }) as {
    resourceSpans?: OResourceSpans[];
  };
  return m.resourceSpans ?? [];
}

const b64hex = (s: string | undefined): string | undefined => (s === undefined ? undefined : Buffer.from(s, 'base64').toString('hex'));
const attrsOf = (kvs: KV[] | undefined): Record<string, unknown> => {
  const v = (x: KV['value']): unknown =>
    x.stringValue ??
    (x.intValue !== undefined ? Number(x.intValue) : undefined) ??
    x.doubleValue ??
    x.boolValue ??
    x.arrayValue?.values.map(v);
  return Object.fromEntries((kvs ?? []).map((kv) => [kv.key, v(kv.value)]));
};

/** Every span of decoded requests, with its resource's attributes. */
function flatten(all: OResourceSpans[]): Array<OSpan & { resource: Record<string, unknown>; scope?: string }> {
  return all.flatMap((rs) =>
    rs.scopeSpans.flatMap((ss) => ss.spans.map((s) => ({ ...s, resource: attrsOf(rs.resource.attributes), scope: ss.scope?.name }))),
  );
}

function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function otelSpans(r: TraceReader): OtelSpanRecord[] {
  const out: OtelSpanRecord[] = [];
  for (const e of r.events()) {
    const s = e.kind === 'bytes' && e.payload ? decodeOtelSpan(e.payload, e.name, r.names) : undefined;
    if (s) out.push(s);
  }
  return out;
}

let dir: string;
/** A trace with OTel spans on main and in a worker, ringtrace spans and slices, and a stall. */
let tracePath: string;
let truthMain: ReadableSpan[];
let truthWorker: Array<{ spanId: string; traceId: string; attributes: Attributes }>;
let stalled: { spans: number; recorded: number };

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ringtrace-otel-'));
  tracePath = join(dir, 'app.rtrace');
  const tracer = await Tracer.open({ path: tracePath, ringSize: '64KiB', ringsPerThread: 4, flushIntervalMs: 20, ...quiet });
  const processor = new RingtraceSpanProcessor(tracer, { threadName: 'main', policy: 'drop-newest' });
  const truth = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [processor, new SimpleSpanProcessor(truth)] });
  const t = provider.getTracer('test-scope', '1.0.0');
  const root = t.startSpan('GET /items', { kind: 1, attributes: { 'http.method': 'GET', 'http.status_code': 200, ratio: 0.5, ok: true } });
  const ctx = otelTrace.setSpan(context.active(), root);
  const child = t.startSpan('db.query ü', { kind: 2, attributes: { 'db.rows': [1, 2, 3], tags: ['a', 'b'] } }, ctx);
  child.addEvent('retry', { attempt: 2 });
  child.setStatus({ code: 2, message: 'timeout' });
  child.end();
  root.end();
  // ringtrace's own spans on the same thread.
  const w = tracer.register('main');
  const req = tracer.define('request');
  const work = tracer.define('work');
  const span = w.beginAsync(req, 42);
  w.begin(work);
  w.link(span);
  w.end(work);

  const worker = new Worker(new URL('./helpers/otel-worker.js', import.meta.url), { workerData: { trace: tracer.handle, count: 50 } });
  const fromWorker = (await new Promise((ok, fail) => worker.once('message', ok).once('error', fail))) as {
    stats: { spans: number; recorded: number };
    spans: typeof truthWorker;
  };
  await new Promise((ok) => worker.once('exit', ok));
  w.endAsync(span);
  assert.equal(fromWorker.stats.recorded, 51, 'the worker kept every span');
  truthWorker = fromWorker.spans;

  // A stalled pool: with the drain paused, spans go on ending until the rings run out.
  await processor.forceFlush();
  await waitFor(() => w.spareRings() === 3, 'the drain to take the flushed ring');
  await tracer.pauseDrain();
  const before = processor.stats();
  for (let i = 0; i < 100_000 && processor.stats().spans - processor.stats().recorded < 100; i++) {
    t.startSpan('stalled', { attributes: { i } }, ctx).end();
  }
  const after = processor.stats();
  stalled = { spans: after.spans - before.spans, recorded: after.recorded - before.recorded };
  tracer.resumeDrain();
  await tracer.close();
  truthMain = truth.getFinishedSpans();
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('ringtrace/otel: the span processor', () => {
  it('records every span the SDK ended, on main and in a worker, with ids, times, kind, status, attributes and events', () => {
    const r = openTrace(tracePath);
    const spans = otelSpans(r);
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    assert.equal(stalled.spans - stalled.recorded, 100, 'the stall dropped spans');
    // Every span the SDK ended is in the file, except the stalled ones the writer dropped.
    const missing = truthMain.filter((s) => !byId.has(s.spanContext().spanId));
    assert.equal(missing.length, stalled.spans - stalled.recorded);
    assert.ok(missing.every((s) => s.name === 'stalled'));
    for (const s of truthMain.filter((x) => byId.has(x.spanContext().spanId))) {
      const got = byId.get(s.spanContext().spanId)!;
      assert.equal(got.traceId, s.spanContext().traceId);
      assert.equal(got.parentSpanId, s.parentSpanContext?.spanId);
      assert.equal(got.name, s.name);
      assert.equal(got.kind, s.kind);
      assert.deepEqual(got.start, s.startTime);
      assert.deepEqual(got.end, s.endTime);
      assert.deepEqual(got.attributes, s.attributes);
      assert.equal(got.status.code, s.status.code);
      assert.equal(got.status.message, s.status.message);
      assert.deepEqual(
        got.events.map((e) => [e.name, e.time, e.attributes]),
        s.events.map((e) => [e.name, e.time, e.attributes]),
      );
      assert.deepEqual(got.scope, { name: 'test-scope', version: '1.0.0' });
    }
    for (const s of truthWorker) assert.deepEqual(byId.get(s.spanId)?.attributes, s.attributes, `worker span ${s.spanId}`);
    const worker = r.threads.find((t) => t.name === 'otel-worker')!;
    assert.ok(spans.filter((s) => s.name === 'worker.job').length === 50 && worker !== undefined);
  });

  it('counts the stalled spans as drops of the thread, and every thread balances', () => {
    const r = openTrace(tracePath);
    const sum = r.summary();
    const main = sum.threads.find((t) => t.name === 'main')!;
    assert.ok(main.dropped >= stalled.spans - stalled.recorded, `main dropped ${main.dropped}`);
    assert.equal(main.droppedByReason.pool_exhausted, main.dropped);
    for (const t of sum.threads) assert.equal(t.balanced, true, `${t.name} balanced`);
  });

  it('interns strings up to its budget, then stores them inline', () => {
    const calls: string[] = [];
    let next = 0;
    const tracer = {
      define: (s: string) => {
        calls.push(s);
        if (s.length > 20) throw new RangeError('long');
        return next++;
      },
      register: () => {
        throw new Error('closed');
      },
    };
    const p = new RingtraceSpanProcessor(tracer as never, { maxNames: 2 });
    const intern = (s: string) => (p as unknown as { intern(s: string): number }).intern(s);
    assert.equal(intern('a'), 0);
    assert.equal(intern('x'.repeat(30)), STR_INLINE, 'too long: inline');
    assert.equal(intern('b'), 1);
    assert.equal(intern('c'), STR_INLINE, 'over budget: inline');
    assert.equal(intern('a'), 0);
    assert.deepEqual(calls, ['a', 'x'.repeat(30), 'b']);
    // No writer (the tracer is closed): the span is counted as unrecorded, nothing throws.
    const w = new PayloadWriter(() => STR_INLINE);
    w.str('é');
    assert.equal(w.pos, 6);
    p.onEnd({} as ReadableSpan);
    assert.deepEqual(p.stats(), { spans: 1, recorded: 0, unrecorded: 1 });
  });

  it('the Chrome export draws OTel spans as async spans with their fields in args', async () => {
    const out = join(dir, 'app.json');
    const res = await runCli(['export', tracePath, '--format', 'chrome', '-o', out]);
    assert.equal(res.code, 0, res.stderr);
    const events = (JSON.parse(readFileSync(out, 'utf8')) as { traceEvents: Array<Record<string, unknown>> }).traceEvents;
    const b = events.find((e) => e.ph === 'b' && e.name === 'db.query ü') as { args: Record<string, unknown>; id: string; ts: number };
    assert.ok(b, 'the span is drawn');
    const child = truthMain.find((s) => s.name === 'db.query ü')!;
    assert.equal(b.args.spanId, child.spanContext().spanId);
    assert.equal(b.args.kind, 'CLIENT');
    assert.equal(b.args.status, 'ERROR');
    assert.deepEqual(b.args.attributes, { 'db.rows': [1, 2, 3], tags: ['a', 'b'] });
    const e = events.find((x) => x.ph === 'e' && x.id === b.id) as { ts: number };
    assert.ok(e.ts >= b.ts);
    assert.ok(events.some((x) => x.ph === 'n' && x.id === b.id && x.name === 'retry'));
  });
});

/** A local OTLP/HTTP receiver: answers each request per `plan` (then 200), keeps what it decoded. */
class Receiver {
  readonly requests: OResourceSpans[][] = [];
  hits = 0;
  private server: Server;
  constructor(private readonly plan: number[] = []) {
    this.server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const parts: Buffer[] = [];
      req.on('data', (c: Buffer) => parts.push(c));
      req.on('end', () => {
        const status = this.plan[this.hits++] ?? 200;
        if (status === 200) {
          assert.equal(req.url, '/v1/traces');
          assert.equal(req.headers['content-type'], 'application/x-protobuf');
          this.requests.push(decodeRequest(Buffer.concat(parts)));
          res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
        } else res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 400 ? 'invalid span data' : 'busy');
      });
    });
  }
  async listen(): Promise<string> {
    await new Promise<void>((ok) => this.server.listen(0, '127.0.0.1', ok));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  close(): Promise<void> {
    return new Promise((ok) => this.server.close(() => ok()));
  }
}

describe('OTLP out: export --format otlp and ringtrace send', () => {
  it('send: every span and every thread\u2019s loss attributes arrive, in batches', async () => {
    const rx = new Receiver();
    const url = await rx.listen();
    try {
      const res = await runCli(['send', tracePath, '--otlp', url, '--batch-size', '64']);
      assert.equal(res.code, 0, res.stderr);
      const spans = flatten(rx.requests.flat());
      const m = /^sent (\d+) spans \((\d+) OpenTelemetry, (\d+) ringtrace\) in (\d+) requests to http/m.exec(res.stdout);
      assert.ok(m, res.stdout);
      assert.equal(Number(m[1]), spans.length);
      assert.equal(Number(m[4]), rx.requests.length);
      assert.ok(rx.requests.length > 1, 'batched');
      const r = openTrace(tracePath);
      const inFile = otelSpans(r);
      const got = new Map(spans.map((s) => [b64hex(s.spanId), s]));
      for (const s of inFile) {
        const o = got.get(s.spanId);
        assert.ok(o, `span ${s.name} ${s.spanId} arrived`);
        assert.equal(b64hex(o.traceId), s.traceId);
        assert.equal(b64hex(o.parentSpanId || undefined), s.parentSpanId);
        assert.deepEqual(attrsOf(o.attributes), s.attributes);
      }
      const child = spans.find((s) => s.name === 'db.query ü')!;
      assert.equal(child.status?.code, 'STATUS_CODE_ERROR');
      assert.equal(child.kind, 'SPAN_KIND_CLIENT');
      assert.equal(
        child.startTimeUnixNano,
        (
          BigInt(truthMain.find((x) => x.name === 'db.query ü')!.startTime[0]) * 10n ** 9n +
          BigInt(truthMain.find((x) => x.name === 'db.query ü')!.startTime[1])
        ).toString(),
      );
      // Losses: every thread has a ringtrace.thread span and resource attributes with its counts.
      for (const t of r.summary().threads) {
        const ts = spans.find((s) => s.name === 'ringtrace.thread' && attrsOf(s.attributes)['ringtrace.thread.index'] === t.thread);
        assert.ok(ts, `thread span of ${t.name}`);
        const a = attrsOf(ts.attributes);
        assert.equal(a['ringtrace.events.dropped'], t.dropped);
        assert.equal(a['ringtrace.dropped.pool_exhausted'], t.droppedByReason.pool_exhausted ?? 0);
        assert.equal(a['ringtrace.events.attempted'], t.attempted);
        assert.equal(ts.resource['ringtrace.events.dropped'], t.dropped);
        if (t.dropped > 0) assert.ok(ts.events?.some((e) => e.name === 'ringtrace.drop'));
      }
      // ringtrace's own async span and slice, in the session trace under the thread span.
      const req = spans.find((s) => s.name === 'request')!;
      const work = spans.find((s) => s.name === 'work')!;
      assert.equal(attrsOf(req.attributes)['ringtrace.value'], 42);
      assert.equal(req.traceId, work.traceId);
      assert.ok(req.events?.some((e) => e.name === 'ringtrace.link'));
      const mainThread = spans.find((s) => s.name === 'ringtrace.thread' && attrsOf(s.attributes)['thread.name'] === 'main')!;
      assert.equal(work.parentSpanId, mainThread.spanId);
    } finally {
      await rx.close();
    }
  });

  it('export --format otlp writes one ExportTraceServiceRequest with the same spans as send', async () => {
    const out = join(dir, 'spans.pb');
    const res = await runCli(['export', tracePath, '--format', 'otlp', '-o', out]);
    assert.equal(res.code, 0, res.stderr);
    const spans = flatten(decodeRequest(readFileSync(out)));
    const n = Number(/: (\d+) spans/.exec(res.stdout)?.[1]);
    assert.equal(spans.length, n);
    assert.equal(new Set(spans.map((s) => s.spanId)).size, n, 'span ids are unique');
    const json = join(dir, 'spans.json');
    const rj = await runCli(['export', tracePath, '--format', 'otlp-json', '-o', json]);
    assert.equal(rj.code, 0, rj.stderr);
    const parsed = JSON.parse(readFileSync(json, 'utf8')) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: unknown[] }> }> };
    assert.equal(
      parsed.resourceSpans.reduce((k, rs) => k + rs.scopeSpans.reduce((j, ss) => j + ss.spans.length, 0), 0),
      n,
    );
  });

  it('retries 503 with backoff and succeeds', async () => {
    const rx = new Receiver([503, 503]);
    const url = await rx.listen();
    try {
      const res = await runCli(['send', tracePath, '--otlp', url]);
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, /, 2 retries$/m);
      assert.match(res.stderr, /answered 503 Service Unavailable: busy; retrying in \d+ ms \(attempt 2 of 5\)/);
      assert.equal(rx.hits, 2 + rx.requests.length);
    } finally {
      await rx.close();
    }
  });

  it('an endpoint that refuses (400) is a clear error and exit 6; nothing sent, no retry', async () => {
    const rx = new Receiver([400]);
    const url = await rx.listen();
    try {
      const res = await runCli(['send', tracePath, '--otlp', url]);
      assert.equal(res.code, 6);
      assert.match(
        res.stderr,
        /^ringtrace: send failed: http:\/\/127\.0\.0\.1:\d+\/v1\/traces answered 400 Bad Request: invalid span data; nothing was sent$/m,
      );
      assert.equal(rx.hits, 1);
    } finally {
      await rx.close();
    }
  });

  it('an endpoint that is not there: exit 6 after the attempts, saying so', async () => {
    const rx = new Receiver();
    const url = await rx.listen();
    await rx.close(); // the port is free again: connections are refused
    const res = await runCli(['send', tracePath, '--otlp', url, '--attempts', '2']);
    assert.equal(res.code, 6);
    assert.match(
      res.stderr,
      /cannot reach http:\/\/127\.0\.0\.1:\d+\/v1\/traces: connection refused \(ECONNREFUSED\) \(gave up after 2 attempts\); nothing was sent/,
    );
    const bad = await runCli(['send', tracePath, '--otlp', 'ftp://x']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--otlp: not an http\(s\) URL/);
  });
});
