/**
 * A library is quiet unless something is wrong: with the default settings a healthy run (a tracer
 * opened, a worker and the main thread recording, the tracer closed) prints nothing at all, and
 * `RINGTRACE_LOG_LEVEL=info` turns the tracer's own messages on (the README says so).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { tempTrace } from './helpers/scenario.js';

const index = fileURLToPath(new URL('../src/index.js', import.meta.url));

/** The child's program: main + one worker record a little and close; the exit hooks stay on. */
const program = `
import { Worker, isMainThread, workerData } from 'node:worker_threads';
import { Tracer } from ${JSON.stringify(pathToFileURL(index).href)};
if (isMainThread) {
  const tracer = await Tracer.open({ path: process.argv[2] });
  const worker = new Worker(new URL(import.meta.url), { workerData: tracer.handle });
  const w = tracer.register('main');
  const tick = tracer.define('tick');
  for (let i = 0; i < 1000; i++) w.record(tick, i);
  await new Promise((resolve) => worker.once('exit', resolve));
  const summary = await tracer.close();
  if (summary.events !== 2000 || !summary.balanced) process.exitCode = 3;
} else {
  const tracer = Tracer.attach(workerData);
  const w = tracer.register('worker');
  const work = tracer.define('work');
  for (let i = 0; i < 1000; i++) w.record(work, i);
  w.close();
}
`;

/** The environment without any RINGTRACE_* setting of the machine running the tests. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RINGTRACE_')));
  return { ...env, ...extra };
}

function run(env: NodeJS.ProcessEnv) {
  const script = join(dirname(tempTrace('quiet')), 'app.mjs');
  writeFileSync(script, program);
  return spawnSync(process.execPath, [script, tempTrace('quiet')], {
    encoding: 'utf8',
    env,
    timeout: 60_000,
  });
}

describe('default logging', () => {
  it('opening a tracer with the defaults, recording and closing prints nothing (stdout and stderr empty)', () => {
    const r = run(cleanEnv());
    assert.equal(r.status, 0, `exit ${r.status}: ${r.stderr}`);
    assert.equal(r.stderr, '');
    assert.equal(r.stdout, '');
  });

  it('RINGTRACE_LOG_LEVEL=info turns the messages on: opened and closed as JSON lines on stderr', () => {
    const r = run(cleanEnv({ RINGTRACE_LOG_LEVEL: 'info' }));
    assert.equal(r.status, 0, r.stderr);
    const msgs = r.stderr
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { msg: string }).msg);
    assert.deepEqual([msgs[0], msgs.at(-1)], ['ringtrace: tracer opened', 'ringtrace: tracer closed']);
    assert.equal(r.stdout, '');
  });
});
