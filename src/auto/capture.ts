/**
 * What `ringtrace/auto` records in each thread, from the runtime's own hooks (no patching):
 *
 * - `http.server.request`: an async span per request a node:http server receives, from the
 *   `http.server.request.start` diagnostics channel to `http.server.response.finish`.
 * - `http.client.request`: an async span per outgoing request, from node:http(s)
 *   (`http.client.request.start` to `http.client.response.finish`, i.e. to the response's
 *   headers, or `http.client.request.error`) and from undici and `fetch`
 *   (`undici:request:create` to `undici:request:trailers`, the body received, or `undici:request:error`).
 * - `span.attrs`: recorded just before a span's end, a UTF-8 JSON payload with the span's id and
 *   attributes: `{"span":…,"method":"GET","url":"/users/7","status":200}` (the URL without its
 *   query string, which often carries tokens; at most 256 bytes of it). `ringtrace export
 *   --format chrome` shows them in the span's args.
 * - `eventloop.delay.{mean,p99,max}.ms` every 500 ms (`perf_hooks.monitorEventLoopDelay`) and
 *   `gc.{minor,major,incremental,weakcb}.ms`, each GC's pause (a `PerformanceObserver` for 'gc'),
 *   as counters on the thread's track.
 */
import dc from 'node:diagnostics_channel';
import { resolve } from 'node:path';
import { PerformanceObserver, constants, monitorEventLoopDelay, type PerformanceEntry } from 'node:perf_hooks';
import { setEnvironmentData } from 'node:worker_threads';
import { Tracer, type TracerHandle } from '../tracer.js';
import type { Writer } from '../record/writer.js';

/** How often each thread records its event-loop delay. */
export const LOOP_SAMPLE_MS = 500;
/** The most URL bytes a span's attributes carry. */
const URL_CAP = 256;

/**
 * The main thread: opens the tracer and leaves its handle for the workers. A tracer that cannot
 * open (a bad RINGTRACE_* value, a file that cannot be created) is reported on stderr and the app
 * runs untraced: tracing must not be what stops it.
 */
export async function startMain(handleKey: string, env: NodeJS.ProcessEnv = process.env): Promise<Tracer | undefined> {
  const chosen = env.RINGTRACE_PATH;
  const path = resolve(chosen === undefined || chosen === '' ? defaultPath() : chosen.replaceAll('%p', String(process.pid)));
  let tracer: Tracer;
  try {
    tracer = await Tracer.open({ path, env });
  } catch (err) {
    process.stderr.write(`ringtrace/auto: not tracing: ${(err as Error).message}\n`);
    return undefined;
  }
  // The one line a healthy run prints, when the user did not choose the file (and did not ask for quiet).
  const quiet = tracer.resolvedConfig?.config.logLevel === 'error' || tracer.resolvedConfig?.config.logLevel === 'silent';
  if ((chosen === undefined || chosen === '') && !quiet)
    process.stderr.write(`ringtrace/auto: tracing to ${path} (RINGTRACE_PATH chooses the file)\n`);
  setEnvironmentData(handleKey, tracer.handle);
  capture(tracer, tracer.register('main'));
  return tracer;
}

/** A worker: attaches to the main thread's tracer and records under its own writer. */
export function startWorker(handle: TracerHandle): Tracer | undefined {
  try {
    const tracer = Tracer.attach(handle);
    capture(tracer, tracer.register());
    return tracer;
  } catch (err) {
    // The tracer closed meanwhile, or every writer slot is taken: this worker goes untraced.
    process.stderr.write(`ringtrace/auto: worker not traced: ${(err as Error).message}\n`);
    return undefined;
  }
}

/** `ringtrace-<date>-<time>-<pid>.rtrace` in the working directory, as `node --cpu-prof` does. */
function defaultPath(): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `ringtrace-${stamp}-${process.pid}.rtrace`;
}

/** Names this thread records under. */
interface Ids {
  server: number;
  client: number;
  attrs: number;
}

function capture(tracer: Tracer, w: Writer): void {
  const ids: Ids = {
    server: tracer.define('http.server.request'),
    client: tracer.define('http.client.request'),
    attrs: tracer.define('span.attrs'),
  };
  captureServer(w, ids);
  captureHttpClient(w, ids);
  captureUndici(w, ids);
  captureLoopDelay(tracer, w);
  captureGc(tracer, w);
}

const encoder = new TextEncoder();
/** Room for the JSON around a capped URL (and the escapes a 256-byte URL could need). */
const scratch = new Uint8Array(2048);

/** The path of a request target, without the query string, at most URL_CAP characters. */
function pathOf(url: unknown): string {
  if (typeof url !== 'string') return '';
  const q = url.indexOf('?');
  const p = q < 0 ? url : url.slice(0, q);
  return p.length > URL_CAP ? p.slice(0, URL_CAP) : p;
}

/** `span.attrs` for a span, then its end. */
function endWith(w: Writer, ids: Ids, endId: number, span: number, json: string): void {
  const { written } = encoder.encodeInto(`{"span":"0x${span.toString(16)}",${json}}`, scratch);
  w.recordBytes(ids.attrs, scratch.subarray(0, written));
  w.endAsync(span, endId);
}

interface ServerMessage {
  request: { method?: string; url?: string };
  response: { statusCode: number };
}

function captureServer(w: Writer, ids: Ids): void {
  const spans = new WeakMap<object, number>();
  dc.subscribe('http.server.request.start', (m) => {
    const { response } = m as ServerMessage;
    spans.set(response, w.beginAsync(ids.server));
  });
  dc.subscribe('http.server.response.finish', (m) => {
    const { request, response } = m as ServerMessage;
    const span = spans.get(response);
    if (span === undefined) return;
    spans.delete(response);
    const attrs = `"method":${JSON.stringify(request.method ?? '')},"url":${JSON.stringify(pathOf(request.url))},"status":${response.statusCode}`;
    endWith(w, ids, ids.server, span, attrs);
  });
}

interface ClientRequest {
  method?: string;
  host?: string;
  path?: string;
}

function captureHttpClient(w: Writer, ids: Ids): void {
  const spans = new WeakMap<object, number>();
  const end = (request: ClientRequest, outcome: string) => {
    const span = spans.get(request);
    if (span === undefined) return;
    spans.delete(request);
    const target = `"method":${JSON.stringify(request.method ?? '')},"host":${JSON.stringify(request.host ?? '')},"url":${JSON.stringify(pathOf(request.path))}`;
    endWith(w, ids, ids.client, span, `${target},${outcome}`);
  };
  dc.subscribe('http.client.request.start', (m) => {
    spans.set((m as { request: object }).request, w.beginAsync(ids.client));
  });
  dc.subscribe('http.client.response.finish', (m) => {
    const { request, response } = m as { request: ClientRequest; response: { statusCode?: number } };
    end(request, `"status":${response.statusCode ?? 0}`);
  });
  dc.subscribe('http.client.request.error', (m) => {
    const { request, error } = m as { request: ClientRequest; error: unknown };
    end(request, `"error":${JSON.stringify(String((error as Error)?.message ?? error))}`);
  });
}

/** `host:port` of an undici origin (a string or URL such as "http://127.0.0.1:8080"). */
function hostOf(origin: unknown): string {
  const o = String(origin ?? '');
  const at = o.indexOf('//');
  return at < 0 ? o : o.slice(at + 2);
}

interface UndiciRequest {
  method?: string;
  origin?: unknown;
  path?: string;
}

function captureUndici(w: Writer, ids: Ids): void {
  const spans = new WeakMap<object, { span: number; status: number }>();
  const end = (request: UndiciRequest, outcome: string) => {
    const s = spans.get(request);
    if (s === undefined) return;
    spans.delete(request);
    const target = `"method":${JSON.stringify(request.method ?? '')},"host":${JSON.stringify(hostOf(request.origin))},"url":${JSON.stringify(pathOf(request.path))}`;
    endWith(w, ids, ids.client, s.span, `${target},${outcome}`);
  };
  dc.subscribe('undici:request:create', (m) => {
    spans.set((m as { request: object }).request, { span: w.beginAsync(ids.client), status: 0 });
  });
  dc.subscribe('undici:request:headers', (m) => {
    const { request, response } = m as { request: object; response: { statusCode?: number } };
    const s = spans.get(request);
    if (s) s.status = response.statusCode ?? 0;
  });
  dc.subscribe('undici:request:trailers', (m) => {
    const { request } = m as { request: UndiciRequest };
    end(request, `"status":${spans.get(request)?.status ?? 0}`);
  });
  dc.subscribe('undici:request:error', (m) => {
    const { request, error } = m as { request: UndiciRequest; error: unknown };
    end(request, `"error":${JSON.stringify(String((error as Error)?.message ?? error))}`);
  });
}

function captureLoopDelay(tracer: Tracer, w: Writer): void {
  const mean = tracer.define('eventloop.delay.mean.ms');
  const p99 = tracer.define('eventloop.delay.p99.ms');
  const max = tracer.define('eventloop.delay.max.ms');
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  const timer = setInterval(() => {
    // Nanoseconds in the histogram; NaN before its first sample.
    if (h.count === 0) return;
    w.record(mean, h.mean / 1e6);
    w.record(p99, h.percentile(99) / 1e6);
    w.record(max, h.max / 1e6);
    h.reset();
  }, LOOP_SAMPLE_MS);
  timer.unref();
}

function captureGc(tracer: Tracer, w: Writer): void {
  const kinds = new Map<number, number>([
    [constants.NODE_PERFORMANCE_GC_MINOR, tracer.define('gc.minor.ms')],
    [constants.NODE_PERFORMANCE_GC_MAJOR, tracer.define('gc.major.ms')],
    [constants.NODE_PERFORMANCE_GC_INCREMENTAL, tracer.define('gc.incremental.ms')],
    [constants.NODE_PERFORMANCE_GC_WEAKCB, tracer.define('gc.weakcb.ms')],
  ]);
  const other = tracer.define('gc.other.ms');
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries() as Array<PerformanceEntry & { detail?: { kind?: number } }>)
      w.record(kinds.get(e.detail?.kind ?? -1) ?? other, e.duration);
  });
  observer.observe({ entryTypes: ['gc'] });
}
