/**
 * The CLI's dependencies (commander, log-update, and @opentelemetry/otlp-transformer for OTLP
 * out) ship in `dependencies` because the `ringtrace` command is in the package, but an
 * application that imports the library (or ringtrace/otel, whose processor needs no OTel code at
 * run time) must not load them, nor any OpenTelemetry package.
 * A child process imports the package's entry points by name, as an application does, with a
 * resolve hook that refuses those two specifiers: the import fails if anything in the library's
 * module graph, static or dynamic at load time, asks for them.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { tempTrace } from './helpers/scenario.js';

const CLI_ONLY = ['commander', 'log-update', '@opentelemetry/otlp-transformer', '@opentelemetry/api', '@opentelemetry/sdk-trace-base'];
const root = fileURLToPath(new URL('../../', import.meta.url));
const demo = new URL('../src/cli/demo.js', import.meta.url).href;
const otlp = new URL('../src/cli/otlp.js', import.meta.url).href;

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
await attempt('ringtrace/otel', () => import('ringtrace/otel'));
await attempt('ringtrace/auto', () => import('ringtrace/auto'));
// Controls: the hook does refuse these, directly and from inside the CLI's modules.
await attempt('commander', () => import('commander'));
await attempt('demo', () => import(${JSON.stringify(demo)}));
await attempt('otlp', () => import(${JSON.stringify(otlp)}));
`;

test("importing the library (ringtrace, /prometheus, /otel, /auto) loads neither the CLI's dependencies nor OpenTelemetry", () => {
  // ringtrace/auto opens a tracer in the main thread: its file goes to a temp dir.
  const env = { ...process.env, RINGTRACE_PATH: tempTrace('library-deps') };
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', child], { cwd: root, env, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.deepEqual(
    lines.slice(0, 4),
    ['ringtrace: loaded', 'ringtrace/prometheus: loaded', 'ringtrace/otel: loaded', 'ringtrace/auto: loaded'],
    r.stdout + r.stderr,
  );
  assert.match(lines[4], /^commander: CLI-only dependency commander imported by /);
  assert.match(lines[5], /^demo: CLI-only dependency log-update imported by .*\/cli\/demo\.js$/);
  assert.match(lines[6], /^otlp: CLI-only dependency @opentelemetry\/otlp-transformer imported by .*\/cli\/otlp\.js$/);
});
