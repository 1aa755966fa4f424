// Fails the test run if a core module's line coverage is below 95% (read from c8's
// json-summary report, which is already remapped to src/**/*.ts).
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const CORE = [
  'shm/layout',
  'shm/ring',
  'shm/pool',
  'shm/registry',
  'shm/names',
  'shm/backpressure',
  'record/writer',
  'record/forecast',
  'drain/drain',
  'file/format',
  'file/reader',
  'metrics/metrics',
  'config',
];
const MIN = 95;
const summary = JSON.parse(readFileSync('coverage/coverage-summary.json', 'utf8'));
let failed = false;
for (const name of CORE) {
  const entry = summary[resolve('src', `${name}.ts`)];
  const pct = entry ? entry.lines.pct : 0;
  const ok = pct >= MIN;
  if (!ok) failed = true;
  console.log(`coverage gate: src/${name}.ts lines ${pct}% ${ok ? 'ok' : `< ${MIN}%`}`);
}
if (failed) process.exit(1);
