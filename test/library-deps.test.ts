/**
 * The CLI's dependencies (commander, log-update) ship in `dependencies` because the `ringtrace`
 * command is in the package, but an application that imports the library must not load them.
 * A child process imports the package's entry points by name, as an application does, with a
 * resolve hook that refuses those two specifiers: the import fails if anything in the library's
 * module graph, static or dynamic at load time, asks for them.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { tempTrace } from './helpers/scenario.js';

const CLI_ONLY = ['commander', 'log-update'];
const root = fileURLToPath(new URL('../../', import.meta.url));
const demo = new URL('../src/cli/demo.js', import.meta.url).href;

const hooks = `
const refused = new Set(${JSON.stringify(CLI_ONLY)});
export async function resolve(specifier, context, next) {
  if (refused.has(specifier)) throw new Error('CLI-only dependency ' + specifier + ' imported by ' + context.parentURL);
  return next(specifier, context);
}`;

const child = `
import { register } from 'node:module';
register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hooks)}));
const attempt = async (what, load) => {
  try {
    await load();
    console.log(what + ': loaded');
  } catch (e) {
    console.log(what + ': ' + e.message);
  }
};
await attempt('ringtrace', () => import('ringtrace'));
await attempt('ringtrace/prometheus', () => import('ringtrace/prometheus'));
await attempt('ringtrace/auto', () => import('ringtrace/auto'));
// Controls: the hook does refuse these, directly and from inside the CLI's modules.
await attempt('commander', () => import('commander'));
await attempt('demo', () => import(${JSON.stringify(demo)}));
`;

test('importing the library loads neither commander nor log-update', () => {
  // ringtrace/auto opens a tracer in the main thread: its file goes to a temp dir.
  const env = { ...process.env, RINGTRACE_PATH: tempTrace('library-deps') };
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', child], { cwd: root, env, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.deepEqual(lines.slice(0, 3), ['ringtrace: loaded', 'ringtrace/prometheus: loaded', 'ringtrace/auto: loaded'], r.stdout + r.stderr);
  assert.match(lines[3], /^commander: CLI-only dependency commander imported by /);
  assert.match(lines[4], /^demo: CLI-only dependency log-update imported by .*\/cli\/demo\.js$/);
});
