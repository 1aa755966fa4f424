// Summarises V8 .cpuprofile files (node --cpu-prof writes one per thread): per file, the total
// sampled time, the idle share, and the functions with the most self time.
//   node bench/v8/profile-summary.mjs DIR_OR_FILES... [--top N]
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

const args = process.argv.slice(2);
const ti = args.indexOf('--top');
const top = ti >= 0 ? Number(args.splice(ti, 2)[1]) : 15;
const files = args.flatMap((a) =>
  statSync(a).isDirectory()
    ? readdirSync(a)
        .filter((f) => f.endsWith('.cpuprofile'))
        .map((f) => join(a, f))
    : [a],
);
for (const f of files) {
  const p = JSON.parse(readFileSync(f, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const deltas = p.timeDeltas;
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = deltas[i + 1] ?? 0;
    const n = byId.get(p.samples[i]);
    const cf = n.callFrame;
    const url = cf.url ? cf.url.replace(/^.*\/(dist|node_modules)\//, '$1/') : '';
    const key = `${cf.functionName || '(anonymous)'} ${url}${url ? `:${cf.lineNumber + 1}` : ''}`;
    self.set(key, (self.get(key) ?? 0) + dt);
    total += dt;
  }
  const wall = (p.endTime - p.startTime) / 1000;
  const idle = self.get('(idle) ') ?? 0;
  console.log(
    `\n== ${basename(f)}: ${(wall / 1000).toFixed(1)} s profiled, ${((total - idle) / 1000).toFixed(1)} ms not idle (${((100 * (total - idle)) / 1000 / wall).toFixed(2)} % of a core)`,
  );
  const rows = [...self.entries()].filter(([k]) => k !== '(idle) ').sort((a, b) => b[1] - a[1]);
  for (const [k, us] of rows.slice(0, top))
    console.log(`${(us / 1000).toFixed(1).padStart(9)} ms ${((100 * us) / (total - idle || 1)).toFixed(1).padStart(5)} %  ${k}`);
}
