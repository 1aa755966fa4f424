/** The README's example and a quick benchmark run must keep working (no timing is asserted). */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { it } from 'node:test';
import { tempTrace } from './helpers/scenario.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

it('examples/quickstart.mjs (the README example) runs and balances', () => {
  const r = spawnSync(process.execPath, ['examples/quickstart.mjs', tempTrace('example')], {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /balanced: true/);
  assert.match(r.stdout, /events read back/);
});

it('examples/quickstart.mjs keeps every event with the default settings, 5 runs in a row', () => {
  // The README promises 100 %: the example paces on spareRings() rather than outrun the drain.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RINGTRACE_'))); // the defaults
  for (let run = 1; run <= 5; run++) {
    const r = spawnSync(process.execPath, ['examples/quickstart.mjs', tempTrace('example-keep')], {
      cwd: root,
      encoding: 'utf8',
      env,
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '', 'a healthy run prints nothing on stderr');
    const [summary, readBack] = r.stdout.split('\n');
    // main 100,000 + worker-1 3 (begin, bytes, end): all in the file, none dropped, balanced.
    assert.match(summary, /^100003 events, 0 dropped, balanced: true \| waited for a ring \d+ times$/, `run ${run}: ${r.stdout}`);
    assert.equal(readBack, '100003 events read back; 0 dropped; 0 loss records', `run ${run}`);
  }
});

it("the README's example is examples/quickstart.mjs, line for line", () => {
  const readme = readFileSync(`${root}README.md`, 'utf8');
  const block = /This is \[`examples\/quickstart\.mjs`\][^]*?```js\n([^]*?)```/.exec(readme)?.[1];
  assert.ok(block, 'the README shows the example in a js block after naming the file');
  const file = readFileSync(`${root}examples/quickstart.mjs`, 'utf8').split('\n').slice(1).join('\n'); // but its first comment
  assert.equal(block, file);
});

it('the benchmark suite runs (quick smoke, results not judged)', () => {
  const r = spawnSync(process.execPath, ['dist/bench/run.js', '--quick', '--only', 'hotpath,peers'], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /PASS|MISS/);
});

it('the whole-process sections run: cpu and app (quick smoke, results not judged)', () => {
  const json = tempTrace('bench-cpu-app').replace(/\.rtrace$/, '.json');
  const r = spawnSync(process.execPath, ['dist/bench/run.js', '--quick', '--only', 'cpu,app', '--json', json], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(readFileSync(json, 'utf8')) as { sections: Record<string, Array<{ name: string; value: number }>> };
  const names = (s: string) => out.sections[s].map((x) => x.name);
  assert.ok(names('cpu').some((n) => n.startsWith('idle tracer')));
  assert.ok(names('cpu').includes('300k events/s: extra CPU'));
  assert.ok(names('app').includes('req/s, tracing on'));
  assert.ok(names('app').includes('CPU per request, tracing on'));
  for (const row of out.sections.app) assert.ok(Number.isFinite(row.value), `${row.name}: ${row.value}`);
});
