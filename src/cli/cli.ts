#!/usr/bin/env node
/**
 * The `ringtrace` command: wires the subcommands (demo, inspect, export, send, report, config, bench) and maps
 * failures to exit codes:
 *   0 ok, 1 runtime failure, 2 usage error or invalid option/configuration,
 *   3 missing file, 4 corrupt or unreadable trace, 5 incomplete trace (inspect: no footer),
 *   6 send: the OTLP endpoint refused the spans or could not be reached.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { closeSync, createWriteStream, existsSync, fstatSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Writable } from 'node:stream';
import { ConfigError, formatConfig, resolveConfig } from '../config.js';
import { DemoSetupError, runDemo } from './demo.js';
import { DEFAULT_PAYLOAD_CAP, EXPORT_FORMATS, MAX_PAYLOAD_CAP, exportTrace, type ExportCounts, type ExportFormat } from './export.js';
import { collectInspection, formatInspection, inspectionJson } from './inspect.js';
import { TraceFormatError, openTrace, type TraceReader } from '../file/reader.js';
import { renderReport, htmlReportData } from './report.js';

const EXIT = { OK: 0, FAILURE: 1, USAGE: 2, MISSING: 3, CORRUPT: 4, INCOMPLETE: 5, SEND: 6 } as const;

/** A failure with its exit code and a message meant for the user (no stack trace). */
class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------
// Option parsers: a bad value is a commander usage error (exit 2) naming the option.

function integerIn(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < min || n > max) throw new InvalidArgumentError(`must be an integer between ${min} and ${max}.`);
    return n;
  };
}

function secondsIn(min: number, max: number, why = `the burst and recovery phases need about ${min} s`) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+(\.\d+)?$/.test(value) || n < min || n > max) {
      throw new InvalidArgumentError(`must be a number of seconds between ${min} and ${max} (${why}).`);
    }
    return n;
  };
}

/** The benchmark sections bench/run.ts knows (its --only). */
const BENCH_SECTIONS = ['hotpath', 'drain', 'e2e', 'scale', 'peers', 'cpu', 'app', 'otel'] as const;

function benchSections(value: string): string[] {
  const list = value.split(',').map((x) => x.trim());
  const unknown = list.filter((x) => !(BENCH_SECTIONS as readonly string[]).includes(x));
  if (unknown.length > 0 || list.length === 0)
    throw new InvalidArgumentError(`unknown section ${unknown.join(', ') || '(none)'}; choose from ${BENCH_SECTIONS.join(', ')}.`);
  return list;
}

// ---------------------------------------------------------------------------------------------
// Reading traces

/** Opens a trace, turning a missing file into exit 3 and an unreadable one into exit 4. */
function loadTrace(path: string): TraceReader {
  if (!existsSync(path)) throw new CliError(`ringtrace: no such file: ${path}`, EXIT.MISSING);
  if (!statSync(path).isFile()) throw new CliError(`ringtrace: not a file: ${path}`, EXIT.CORRUPT);
  try {
    return openTrace(path);
  } catch (e) {
    if (e instanceof TraceFormatError) throw new CliError(`ringtrace: cannot read trace ${e.message}`, EXIT.CORRUPT);
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw new CliError(`ringtrace: no such file: ${path}`, EXIT.MISSING);
    if (err.code !== undefined) throw new CliError(`ringtrace: cannot read ${path}: ${err.message}`, EXIT.CORRUPT);
    throw e;
  }
}

/** After printing what was readable: a damaged trace still exits 4. */
function damageNote(reader: TraceReader): string | undefined {
  const all = reader.damaged;
  if (all.length === 0) return undefined;
  const d = all[0];
  const skipped = all.reduce((n, x) => n + x.skippedBytes, 0);
  const more = all.length > 1 ? ` and ${all.length - 1} more damaged region(s)` : '';
  const after = all[all.length - 1].resumedAt === undefined ? 'up to the last damage' : 'before and after each damaged region';
  return `ringtrace: ${reader.path} is damaged at byte offset ${d.offset}: ${d.reason}${more} (${skipped} bytes not read; the output covers the intact records ${after})`;
}

/** Every `export --format`: the streamed text formats, and OTLP (otlp.ts, loaded only for it). */
const ALL_EXPORT_FORMATS = [...EXPORT_FORMATS, 'otlp', 'otlp-json'] as const;
type AnyExportFormat = (typeof ALL_EXPORT_FORMATS)[number];
const EXPORT_EXT: Record<AnyExportFormat, string> = { chrome: '.json', jsonl: '.jsonl', otlp: '.otlp.pb', 'otlp-json': '.otlp.json' };

function defaultExportPath(trace: string, format: AnyExportFormat): string {
  return trace.replace(/\.rtrace$/, '') + EXPORT_EXT[format];
}

/** Why a file cannot be written, in words (the code goes in parentheses, for a search). */
const WRITE_FAILURE_REASONS: Partial<Record<string, string>> = {
  ENOTDIR: 'a part of the path is not a directory',
  EISDIR: 'it is a directory',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'the disk quota is exhausted',
  EFBIG: 'the file is larger than the system allows',
};

function writeFailure(file: string, e: unknown): CliError {
  const err = e as NodeJS.ErrnoException;
  const reason =
    err.code === 'ENOENT'
      ? `the directory ${dirname(file)} does not exist`
      : ((err.code !== undefined ? WRITE_FAILURE_REASONS[err.code] : undefined) ?? err.message ?? String(e));
  // Exit 1 like any runtime failure: the output path is not an option value commander checked.
  return new CliError(`ringtrace: cannot write ${file}: ${reason}${err.code ? ` (${err.code})` : ''}`, EXIT.FAILURE);
}

function openForWriting(file: string): number {
  try {
    return openSync(file, 'w');
  } catch (e) {
    throw writeFailure(file, e);
  }
}

/** An output that would overwrite the trace it is made from. */
function refuseOverwrite(file: string, trace: string): void {
  if (existsSync(file) && statSync(file).ino === statSync(trace).ino && statSync(file).dev === statSync(trace).dev) {
    throw new CliError(`ringtrace: the output ${file} is the trace itself; choose another with -o`, EXIT.USAGE);
  }
}

interface Output {
  out: Writable;
  /** Ends the output; resolves once everything is written. */
  done(): Promise<void>;
  /** After `e` stopped the export: closes the output, removes a partial file, and returns the
   * error to report (a write failure as `cannot write <path>: <reason>`). */
  fail(e: unknown): unknown;
}

/** Opens the output synchronously so a bad path is a clear error before anything is read. */
function openOutput(file: string): Output {
  if (file === '-') {
    return { out: process.stdout, done: () => new Promise<void>((res) => process.stdout.write('', () => res())), fail: (e) => e };
  }
  const fd = openForWriting(file);
  // Never remove what is not a regular file (a device such as /dev/full, a named pipe).
  const regular = fstatSync(fd).isFile();
  const out = createWriteStream(file, { fd });
  let writeError: Error | undefined;
  out.on('error', (e) => (writeError ??= e));
  const finished = new Promise<void>((res, rej) => out.once('finish', res).once('error', rej));
  finished.catch(() => {}); // observed in done()
  return {
    out,
    done: () => {
      out.end();
      return finished;
    },
    fail: (e) => {
      out.destroy();
      // The open truncated whatever the file held, and a partial export reads as a whole one to
      // tools that take JSON lines (no end marker) or repair cut JSON: leave no file instead.
      if (regular) rmSync(file, { force: true });
      return writeError !== undefined ? writeFailure(file, writeError) : e;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Commands

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

function buildProgram(): Command {
  const program = new Command('ringtrace')
    .description('Lock-free per-thread event tracer for Node.js: demo, inspect and export trace files.')
    .version(packageVersion())
    .showHelpAfterError('(add --help for usage)')
    .exitOverride();

  addDemoCommand(program);
  addInspectCommand(program);
  addExportCommand(program);
  addSendCommand(program);
  addReportCommand(program);
  addConfigCommand(program);
  addBenchCommand(program);
  return program;
}

/** `ringtrace demo`: a multi-thread load with a burst, then the summary and the three output files. */
function addDemoCommand(program: Command): void {
  program
    .command('demo')
    .description(
      'record a realistic multi-thread load with a burst that exhausts the ring pools while the drain is throttled, then inspect the trace',
    )
    .option('--out <dir>', 'directory for trace.rtrace, trace.json and report.html (default: a new temp directory)')
    .option('--seconds <n>', 'total run time in seconds', secondsIn(2, 3600), 4)
    .option('--workers <n>', 'worker threads besides the main thread', integerIn(0, 32), 3)
    .option('--no-live', 'print each phase and one plain line per second instead of the live view (automatic when stdout is not a TTY)')
    .option(
      '--metrics-port <port>',
      'serve Prometheus metrics on 127.0.0.1:<port>/metrics until the summary is printed (0: any free port; needs prom-client)',
      integerIn(0, 65535),
    )
    .option(
      '--metrics-linger <seconds>',
      'with --metrics-port: keep serving the final values this long after the summary',
      secondsIn(0, 3600, 'to keep serving'),
      0,
    )
    .action(
      async (opts: { out?: string; seconds: number; workers: number; live: boolean; metricsPort?: number; metricsLinger: number }) => {
        if (opts.metricsPort === undefined && opts.metricsLinger > 0)
          throw new CliError('ringtrace: --metrics-linger needs --metrics-port', EXIT.USAGE);
        process.exitCode = await runDemo(opts);
      },
    );
}

/** `ringtrace inspect`: the per-thread summary, as text or JSON. */
function addInspectCommand(program: Command): void {
  program
    .command('inspect')
    .description('per-thread summary of a trace: events, losses by reason, backpressure state changes, damage')
    .argument('<trace>', 'trace file (.rtrace)')
    .option('--json', 'print { summary, drops, states } as JSON')
    .action((trace: string, opts: { json?: boolean }) => {
      const reader = loadTrace(trace);
      const report = collectInspection(reader);
      console.log(opts.json ? inspectionJson(report) : formatInspection(report, { maxDamage: 20 }));
      const note = damageNote(reader);
      if (note) throw new CliError(note, EXIT.CORRUPT);
      // Not damage: a file still being written, or one whose process ended before it closed the
      // tracer. Its own code, so a script can tell it from a whole trace.
      if (!reader.complete) {
        const why = 'it has no footer (the tracer has not closed it, or its process ended first)';
        throw new CliError(`ringtrace: ${reader.path} is incomplete: ${why}`, EXIT.INCOMPLETE);
      }
    });
}

/** `ringtrace export`: Chrome trace JSON or JSON lines, streamed to a file or stdout. */
function addExportCommand(program: Command): void {
  program
    .command('export')
    .description('convert a trace to Chrome trace event JSON (Perfetto UI, chrome://tracing), JSON lines, or OTLP (protobuf or JSON)')
    .argument('<trace>', 'trace file (.rtrace)')
    .addOption(
      new Option('--format <format>', 'output format (otlp: an OTLP protobuf ExportTraceServiceRequest; otlp-json: the same as OTLP JSON)')
        .choices(ALL_EXPORT_FORMATS)
        .default('chrome'),
    )
    .option('-o, --output <file>', 'output file, - for stdout (default: the trace path with .json / .jsonl)')
    .option(
      '--payload-cap <bytes>',
      `bytes of each payload written (UTF-8 text, else hex) (default: ${DEFAULT_PAYLOAD_CAP})`,
      integerIn(0, MAX_PAYLOAD_CAP),
    )
    .option('--service-name <name>', 'otlp: service.name of threads that recorded no OpenTelemetry resource (default: ringtrace)')
    .action(async (trace: string, opts: { format: AnyExportFormat; output?: string; payloadCap?: number; serviceName?: string }) => {
      const reader = loadTrace(trace);
      const file = opts.output ?? defaultExportPath(trace, opts.format);
      if (file !== '-') refuseOverwrite(file, trace);
      const output = openOutput(file);
      let what: string;
      try {
        what = await runExport(reader, opts, output.out);
        await output.done();
      } catch (e) {
        throw output.fail(e);
      }
      // Keep stdout clean for the data when it is the output.
      const tell = file === '-' ? console.error : console.log;
      tell(`wrote ${file === '-' ? 'stdout' : file}: ${what} (${opts.format})`);
      const note = damageNote(reader);
      if (note) throw new CliError(note, EXIT.CORRUPT);
    });
}

/** Writes the export; returns what it wrote, in words. */
async function runExport(
  reader: TraceReader,
  opts: { format: AnyExportFormat; payloadCap?: number; serviceName?: string },
  out: Writable,
): Promise<string> {
  if (opts.format === 'otlp' || opts.format === 'otlp-json') {
    const { exportOtlp } = await import('./otlp.js');
    const c = await exportOtlp(reader, opts.format, out, { serviceName: opts.serviceName, version: packageVersion() });
    return `${c.spans} spans (${c.otelSpans} OpenTelemetry, ${c.ringtraceSpans} ringtrace) in ${c.batches} batches`;
  }
  const counts: ExportCounts = await exportTrace(reader, opts.format as ExportFormat, out, { payloadCap: opts.payloadCap });
  return `${counts.events} events, ${counts.drops} losses, ${counts.states} state changes`;
}

interface SendCliOptions {
  otlp: string;
  batchSize: number;
  attempts: number;
  timeout: number;
  header: string[];
  serviceName?: string;
}

/** `ringtrace send`: the trace's spans to an OTLP/HTTP endpoint. */
function addSendCommand(program: Command): void {
  program
    .command('send')
    .description("send a trace as OpenTelemetry spans to an OTLP/HTTP endpoint (protobuf), with each thread's losses as attributes")
    .argument('<trace>', 'trace file (.rtrace)')
    .requiredOption('--otlp <url>', 'OTLP/HTTP endpoint, e.g. http://localhost:4318 (/v1/traces is added unless the URL ends with it)')
    .option('--batch-size <n>', 'spans per request', integerIn(1, 100_000), 512)
    .option(
      '--attempts <n>',
      'tries per request: 429, 5xx and connection errors are retried with exponential backoff',
      integerIn(1, 100),
      5,
    )
    .option('--timeout <seconds>', 'time for the whole send, retries included', secondsIn(1, 86_400, 'for the send'), 60)
    .option(
      '--header <name=value>',
      'an HTTP header for every request (repeatable), e.g. an API key',
      (v: string, prev: string[]) => [...prev, v],
      [],
    )
    .option('--service-name <name>', 'service.name of threads that recorded no OpenTelemetry resource (default: ringtrace)')
    .action(async (trace: string, opts: SendCliOptions) => {
      const headers: Record<string, string> = {};
      for (const h of opts.header) {
        const at = h.indexOf('=');
        if (at <= 0) throw new CliError(`ringtrace: --header ${h}: expected name=value`, EXIT.USAGE);
        headers[h.slice(0, at).trim()] = h.slice(at + 1).trim();
      }
      const { sendOtlp, tracesUrl, SendError } = await import('./otlp.js');
      try {
        tracesUrl(opts.otlp);
      } catch (e) {
        throw new CliError(`ringtrace: --otlp: ${(e as Error).message}`, EXIT.USAGE);
      }
      const reader = loadTrace(trace);
      const log = (m: string) => console.error(m);
      const o = { endpoint: opts.otlp, batchSize: opts.batchSize, attempts: opts.attempts, timeoutMs: opts.timeout * 1000, headers, log };
      try {
        const r = await sendOtlp(reader, { ...o, serviceName: opts.serviceName, version: packageVersion() });
        const retried = r.retries > 0 ? `, ${r.retries} retries` : '';
        console.log(
          `sent ${r.spans} spans (${r.otelSpans} OpenTelemetry, ${r.ringtraceSpans} ringtrace) in ${r.batches} requests to ${r.url}${retried}`,
        );
      } catch (e) {
        if (e instanceof SendError) throw new CliError(`ringtrace: send failed: ${e.message}`, EXIT.SEND);
        throw e;
      }
      const note = damageNote(reader);
      if (note) throw new CliError(note, EXIT.CORRUPT);
    });
}

/** `ringtrace report`: the self-contained HTML report. */
function addReportCommand(program: Command): void {
  program
    .command('report')
    .description('write a self-contained HTML report: events/s, drops by reason, backpressure timeline, conservation table')
    .argument('<trace>', 'trace file (.rtrace)')
    .option('-o, --output <file>', 'output file (default: the trace path with .html)')
    .action((trace: string, opts: { output?: string }) => {
      const reader = loadTrace(trace);
      const file = opts.output ?? trace.replace(/\.rtrace$/, '') + '.html';
      refuseOverwrite(file, trace);
      // Opened before the trace is read through, so a bad path fails at once; a report that
      // fails half-way leaves no file that was not there before.
      const existed = existsSync(file);
      const fd = openForWriting(file);
      let written = false;
      try {
        const html = Buffer.from(renderReport(htmlReportData(reader)));
        for (let at = 0; at < html.length;) at += writeSync(fd, html, at);
        written = true;
      } catch (e) {
        if (typeof (e as NodeJS.ErrnoException).code === 'string') throw writeFailure(file, e);
        throw e;
      } finally {
        closeSync(fd);
        if (!written && !existed) rmSync(file, { force: true });
      }
      console.log(`wrote ${file}`);
      const note = damageNote(reader);
      if (note) throw new CliError(note, EXIT.CORRUPT);
    });
}

/** `ringtrace config`: the effective configuration and where each value came from. */
function addConfigCommand(program: Command): void {
  program
    .command('config')
    .description('show the effective tracer configuration and where each value comes from (file, RINGTRACE_* env, default)')
    .option('--json', 'print { config, sources } as JSON')
    .action((opts: { json?: boolean }) => {
      const resolved = resolveConfig();
      console.log(opts.json ? JSON.stringify(resolved, null, 2) : formatConfig(resolved));
    });
}

/** `ringtrace bench`: runs the built benchmarks. */
function addBenchCommand(program: Command): void {
  // The benchmarks are another build output (bench/ compiles to dist/bench); this command only
  // runs them when they were built, as `npm run bench` does (node dist/bench/run.js). The
  // installed package has neither them nor their dependencies (autocannon, pino, ...): there the
  // command is not offered (hidden from the help), and says where to run it if called anyway.
  const benchUrl = new URL('../../bench/run.js', import.meta.url);
  const inClone = existsSync(new URL('../../../bench/run.ts', import.meta.url));
  program
    .command('bench', { hidden: !inClone })
    .description(existsSync(benchUrl) ? 'run the benchmarks (dist/bench/run.js)' : 'run the benchmarks (not built: run npm run bench)')
    .option('--quick', 'shorter runs: a first look, not numbers to publish')
    .option('--json <file>', 'also write the results as JSON to <file>')
    .option('--write-docs', 'write the results to docs/benchmarks.json')
    .option('--only <sections>', `run only these comma-separated sections: ${BENCH_SECTIONS.join(', ')}`, benchSections)
    .action(async (opts: { quick?: boolean; json?: string; writeDocs?: boolean; only?: string[] }) => {
      if (!inClone)
        throw new CliError(
          'the benchmarks are not part of the installed package; run them from a clone of the repository: npm ci && npm run bench',
          EXIT.FAILURE,
        );
      if (!existsSync(benchUrl)) throw new CliError('benchmarks are not built; run npm run bench', EXIT.FAILURE);
      const args = [
        ...(opts.quick ? ['--quick'] : []),
        ...(opts.json !== undefined ? ['--json', opts.json] : []),
        ...(opts.writeDocs ? ['--write-docs'] : []),
        ...(opts.only ? ['--only', opts.only.join(',')] : []),
      ];
      // The script reads its arguments from process.argv, as when run directly.
      process.argv = [process.argv[0], fileURLToPath(benchUrl), ...args];
      await import(benchUrl.href);
    });
}

async function main(): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(process.argv);
  } catch (e) {
    process.exitCode = exitCodeFor(e);
  }
}

/** Reports an error (commander has already printed its own) and picks the exit code. */
function exitCodeFor(e: unknown): number {
  if (e instanceof CommanderError) {
    // --help and --version "fail" with code 0; everything else commander rejects is usage.
    return e.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
  }
  if (e instanceof CliError) {
    console.error(e.message);
    return e.exitCode;
  }
  if (e instanceof DemoSetupError) {
    console.error(e.message);
    return EXIT.USAGE;
  }
  if (e instanceof ConfigError) {
    console.error(e.message);
    return EXIT.USAGE;
  }
  if (e instanceof TraceFormatError) {
    console.error(`ringtrace: ${e.message}`);
    return EXIT.CORRUPT;
  }
  // A system error (a path that cannot be created, a full disk) is the user's to fix: its
  // message says enough. Anything else is a bug, and the stack helps to report it.
  const systemError = e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string';
  console.error(`ringtrace: ${e instanceof Error ? (systemError ? e.message : (e.stack ?? e.message)) : String(e)}`);
  return EXIT.FAILURE;
}

await main();
