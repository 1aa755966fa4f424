/**
 * Benchmark suite entry: `node dist/bench/run.js [--quick] [--json FILE] [--write-docs] [--only a,b]`.
 * Sections: hotpath, drain, e2e, scale, peers, cpu, app, otel.
 * Prints one table per section; misses are reported, not exit codes (only crashes exit non-zero).
 */
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { cleanupTemp, printTable, type Row, type RunOptions } from './common.js';
import { runHotpath } from './hotpath.js';
import { runPeers } from './peers.js';
import { runDrain } from './drain.js';
import { runE2e } from './e2e.js';
import { runScale } from './scale.js';
import { runCpu } from './cpu.js';
import { runApp } from './app.js';
import { runOtel } from './otel.js';

function parseArgs(argv: string[]) {
  const a = { quick: false, json: undefined as string | undefined, writeDocs: false, only: [] as string[] };
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i];
    if (x === '--quick') a.quick = true;
    else if (x === '--json') a.json = argv[++i];
    else if (x === '--write-docs') a.writeDocs = true;
    else if (x === '--only') a.only = argv[++i].split(',');
    else throw new Error(`unknown argument ${x}`);
  }
  return a;
}

const SECTIONS = ['hotpath', 'drain', 'e2e', 'scale', 'peers', 'cpu', 'app', 'otel'];

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const unknown = args.only.filter((s) => !SECTIONS.includes(s));
  if (unknown.length) throw new Error(`unknown section ${unknown.join(', ')}; sections: ${SECTIONS.join(', ')}`);
  const opts: RunOptions = { quick: args.quick, only: args.only };
  const want = (s: string) => opts.only.length === 0 || opts.only.includes(s);
  const t0 = Date.now();
  const sections: Record<string, Row[]> = {};
  const show = (key: string, title: string, rows: Row[]) => {
    sections[key] = rows;
    printTable(title, rows);
  };
  const load0 = loadavg();
  console.log(
    `ringtrace benchmarks${opts.quick ? ' (--quick)' : ''}: node ${process.version}, ${cpus().length} CPUs, ${cpus()[0]?.model ?? '?'}, load average ${load0.map((x) => x.toFixed(2)).join(' ')}`,
  );
  try {
    if (want('hotpath')) {
      const h = await runHotpath(opts);
      show('floor', '1. floors (per event, burst of 1000)', h.floor);
      show('normal', '2. NORMAL state (per event, burst of 1000, no drops allowed)', h.normal);
      show('long', '2b. NORMAL state, long bursts (100,000 events: swaps, the drain awake)', h.long);
      show('dropping', '3. DROPPING state (pool exhausted, drain paused)', h.dropping);
      show('recovery', '4. recovery detection and swap', h.recovery);
    }
    if (want('drain')) show('drain', '6. drain throughput (rings -> file), same run as the writeSync baseline', await runDrain(opts));
    if (want('e2e')) show('e2e', '7. end to end: one thread flat out, timestamped events', await runE2e(opts));
    if (want('scale')) show('scale', '8. scalability (default config) and thread isolation', await runScale(opts));
    if (want('peers')) show('peers', '5. peers (per event, same run; ratio = peer / ringtrace)', await runPeers(opts));
    if (want('cpu')) show('cpu', '9. whole-process CPU, tracer on vs off (% of one core, medians of paired rounds)', await runCpu(opts));
    if (want('app'))
      show('app', '10. HTTP app, 10 events per request, tracer on vs off (medians of alternated rounds)', await runApp(opts));
    if (want('otel'))
      show(
        'otel',
        '11. OpenTelemetry SDK: RingtraceSpanProcessor vs BatchSpanProcessor (span start+end; process CPU)',
        await runOtel(opts),
      );
  } finally {
    cleanupTemp();
  }
  const result = {
    date: new Date().toISOString(),
    quick: opts.quick,
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    seconds: (Date.now() - t0) / 1000,
    /** os.loadavg() (1, 5, 15 min) at the start and at the end: other tenants' load */
    loadAverage: { start: load0, end: loadavg() },
    sections,
  };
  const json = JSON.stringify(result, null, 2);
  if (args.json) writeFileSync(args.json, json + '\n');
  if (args.writeDocs) writeFileSync(new URL('../../docs/benchmarks.json', import.meta.url), json + '\n');
  const rows = Object.values(sections).flat();
  const misses = rows.filter((r) => r.pass === false);
  console.log(
    `\n${rows.filter((r) => r.pass === true).length} PASS, ${misses.length} MISS in ${result.seconds.toFixed(1)} s (load average at the end ${result.loadAverage.end.map((x) => x.toFixed(2)).join(' ')})${misses.length ? ': ' + misses.map((r) => `${r.section}/${r.name}`).join('; ') : ''}`,
  );
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
