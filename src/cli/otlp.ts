/**
 * OTLP out: `ringtrace export --format otlp|otlp-json` and `ringtrace send --otlp URL`. Spans
 * come from OtlpSpanSource (otlp-spans.ts) in batches and are encoded by the official
 * @opentelemetry/otlp-transformer serializers. Loaded by the CLI only for these commands.
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { JsonTraceSerializer, ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import type { TraceReader } from '../file/reader.js';
import { OtlpSpanSource, type OtlpSpanOptions } from './otlp-spans.js';

export const DEFAULT_BATCH = 512;

export interface OtlpCounts {
  spans: number;
  otelSpans: number;
  ringtraceSpans: number;
  batches: number;
}

function* batches(spans: Iterable<ReadableSpan>, size: number): Generator<ReadableSpan[]> {
  let batch: ReadableSpan[] = [];
  for (const s of spans) {
    batch.push(s);
    if (batch.length >= size) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

async function write(out: Writable, chunk: Uint8Array | string): Promise<void> {
  if (!out.write(chunk)) await once(out, 'drain');
}

function serialize(batch: ReadableSpan[], json: boolean): Uint8Array {
  const bytes = (json ? JsonTraceSerializer : ProtobufTraceSerializer).serializeRequest(batch);
  if (bytes === undefined) throw new Error('ringtrace: the OTLP serializer returned nothing');
  return bytes;
}

/**
 * One ExportTraceServiceRequest for the whole trace. Protobuf: the batches' encodings one after
 * the other (concatenated protobuf messages merge: their resource_spans add up). JSON: one object
 * whose resourceSpans are every batch's.
 */
export async function exportOtlp(
  reader: TraceReader,
  format: 'otlp' | 'otlp-json',
  out: Writable,
  options: OtlpSpanOptions & { batchSize?: number } = {},
): Promise<OtlpCounts> {
  const source = new OtlpSpanSource(reader, options);
  const json = format === 'otlp-json';
  let n = 0;
  let spans = 0;
  if (json) await write(out, '{"resourceSpans":[');
  for (const batch of batches(source.spans(), options.batchSize ?? DEFAULT_BATCH)) {
    spans += batch.length;
    const bytes = serialize(batch, json);
    if (!json) await write(out, bytes);
    else {
      const parsed = JSON.parse(Buffer.from(bytes).toString('utf8')) as { resourceSpans?: unknown[] };
      for (const rs of parsed.resourceSpans ?? []) await write(out, (n++ > 0 ? ',\n' : '\n') + JSON.stringify(rs));
    }
    if (!json) n++;
  }
  if (json) await write(out, '\n]}\n');
  return { spans, otelSpans: source.counts.otel, ringtraceSpans: source.counts.ringtrace, batches: n };
}

// ---------------------------------------------------------------------------------------------
// OTLP/HTTP

export interface SendOptions extends OtlpSpanOptions {
  endpoint: string;
  batchSize?: number;
  /** Attempts per request (1 = no retry). Default 5. */
  attempts?: number;
  /** Total time for the whole send, retries included (ms). Default 60 s. */
  timeoutMs?: number;
  /** First backoff (ms), doubled per retry up to 5 s, with jitter. Default 250. */
  backoffMs?: number;
  headers?: Record<string, string>;
  /** Progress and retry messages. */
  log?: (msg: string) => void;
}

export interface SendResult extends OtlpCounts {
  url: string;
  retries: number;
}

/** A send that did not complete: what was sent before it stopped is in the message and `sent`. */
export class SendError extends Error {
  constructor(
    message: string,
    readonly sent: OtlpCounts,
  ) {
    super(message);
  }
}

/** The traces URL of an OTLP/HTTP endpoint: a base URL gets /v1/traces, a full one is kept. */
export function tracesUrl(endpoint: string): string {
  let u: URL;
  try {
    u = new URL(endpoint);
  } catch {
    throw new TypeError(`not a URL: ${endpoint}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError(`not an http(s) URL: ${endpoint}`);
  if (!u.pathname.endsWith('/v1/traces')) u.pathname = u.pathname.replace(/\/$/, '') + '/v1/traces';
  return u.href;
}

/** Sends the trace's spans to an OTLP/HTTP endpoint (protobuf), one batch at a time. */
export async function sendOtlp(reader: TraceReader, options: SendOptions): Promise<SendResult> {
  const url = tracesUrl(options.endpoint);
  const source = new OtlpSpanSource(reader, options);
  const deadline = performance.now() + (options.timeoutMs ?? 60_000);
  const sent: OtlpCounts = { spans: 0, otelSpans: 0, ringtraceSpans: 0, batches: 0 };
  let retries = 0;
  for (const batch of batches(source.spans(), options.batchSize ?? DEFAULT_BATCH)) {
    const body = serialize(batch, false);
    try {
      retries += await post(url, body, deadline, options);
    } catch (e) {
      const before =
        sent.spans === 0
          ? 'nothing was sent'
          : `${sent.spans} spans had been sent in ${sent.batches} requests before (the endpoint holds a partial trace)`;
      throw new SendError(`${(e as Error).message}; ${before}`, sent);
    }
    sent.spans += batch.length;
    sent.batches++;
    sent.otelSpans = source.counts.otel;
    sent.ringtraceSpans = source.counts.ringtrace;
  }
  return { ...sent, otelSpans: source.counts.otel, ringtraceSpans: source.counts.ringtrace, url, retries };
}

/** Status codes worth another try (OTLP/HTTP: 429, 502, 503, 504; any 5xx here). */
const retryable = (status: number): boolean => status === 429 || status >= 500;

/** Why fetch() failed, in words: the system error's code when there is one. */
function networkReason(e: unknown): string {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return 'no answer in time';
  const code = err.cause?.code;
  if (code === 'ECONNREFUSED') return 'connection refused (ECONNREFUSED)';
  return err.cause?.message ?? code ?? err.message;
}

/** POSTs one request, retrying with backoff; returns the number of retries. */
async function post(url: string, body: Uint8Array, deadline: number, o: SendOptions): Promise<number> {
  const attempts = o.attempts ?? 5;
  let delay = o.backoffMs ?? 250;
  for (let attempt = 1; ; attempt++) {
    const left = deadline - performance.now();
    if (left <= 0) throw new Error(`${url}: the send timed out (--timeout) after ${attempt - 1} attempts`);
    let why: string;
    let wait = 0;
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-protobuf', ...o.headers },
        body,
        signal: AbortSignal.timeout(Math.min(left, 30_000)),
      });
      const answer = new Uint8Array(await res.arrayBuffer());
      if (res.ok) {
        checkPartialSuccess(url, answer, res.headers.get('content-type'));
        return attempt - 1;
      }
      why = `${url} answered ${res.status} ${res.statusText}${snippet(answer)}`;
      if (!retryable(res.status)) throw new FatalSend(why);
      wait = retryAfterMs(res.headers.get('retry-after'));
    } catch (e) {
      if (e instanceof FatalSend) throw e;
      why = `cannot reach ${url}: ${networkReason(e)}`;
    }
    if (attempt >= attempts) throw new Error(`${why} (gave up after ${attempts} attempts)`);
    const pause = Math.max(wait, delay / 2 + Math.random() * (delay / 2));
    if (performance.now() + pause >= deadline) throw new Error(`${why} (no time left for another attempt within --timeout)`);
    o.log?.(`ringtrace: ${why}; retrying in ${Math.round(pause)} ms (attempt ${attempt + 1} of ${attempts})`);
    await sleep(pause);
    delay = Math.min(delay * 2, 5000);
  }
}

class FatalSend extends Error {}

function snippet(answer: Uint8Array): string {
  if (answer.length === 0) return '';
  const text = Buffer.from(answer.subarray(0, 300))
    .toString('utf8')
    .replace(/[^\x20-\x7e]+/g, ' ')
    .trim();
  return text ? `: ${text}` : '';
}

function retryAfterMs(h: string | null): number {
  if (h === null) return 0;
  const s = Number(h);
  if (Number.isFinite(s)) return Math.min(s * 1000, 30_000);
  const at = Date.parse(h);
  return Number.isFinite(at) ? Math.min(Math.max(0, at - Date.now()), 30_000) : 0;
}

/** An OK answer may still say that the endpoint rejected some spans (partial_success). */
function checkPartialSuccess(url: string, answer: Uint8Array, contentType: string | null): void {
  if (answer.length === 0) return;
  let rejected: number;
  let message: string;
  try {
    const r = contentType?.includes('json')
      ? JsonTraceSerializer.deserializeResponse(answer)
      : ProtobufTraceSerializer.deserializeResponse(answer);
    rejected = Number(r.partialSuccess?.rejectedSpans ?? 0);
    message = r.partialSuccess?.errorMessage ?? '';
  } catch {
    return; // not an OTLP answer: the status said OK
  }
  if (rejected > 0) throw new FatalSend(`${url} rejected ${rejected} spans of a request${message ? `: ${message}` : ''}`);
}
