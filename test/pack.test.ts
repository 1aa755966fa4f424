/**
 * The package as a user gets it: `npm pack`, installed into a fresh project (dependencies from
 * the npm cache when they are there), then the `ringtrace` command through npx (demo, inspect,
 * export, bench), the README's quick start and `node --import ringtrace/auto` against it.
 */
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, describe, it } from 'node:test';

const root = fileURLToPath(new URL('../../', import.meta.url));
// Child processes run as a user's would: no coverage collection, no RINGTRACE_* of this run.
const env = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !k.startsWith('RINGTRACE_') && k !== 'NODE_V8_COVERAGE' && !k.startsWith('npm_')),
);
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const npx = process.platform === 'win32' ? 'npx.cmd' : 'npx';

function run(cmd: string, args: string[], opts: SpawnSyncOptions = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, timeout: 120_000, ...opts });
  const show = `${cmd} ${args.join(' ')} -> ${r.status ?? r.signal}\n${String(r.stdout)}\n${String(r.stderr)}`;
  return { status: r.status, stdout: String(r.stdout), stderr: String(r.stderr), show };
}

describe('the packed package, installed in a fresh project', () => {
  const work = mkdtempSync(join(tmpdir(), 'rt-pack-'));
  const project = join(work, 'app');
  let files: string[] = [];

  before(() => {
    // `npm pack` runs `prepare` (the build) first, as `npm publish` does.
    const packed = run(npm, ['pack', '--json', '--pack-destination', work], { cwd: root });
    assert.equal(packed.status, 0, packed.show);
    const [info] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    files = info.files.map((f) => f.path);
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'rt-pack-app', private: true, type: 'module' }));
    const installed = run(npm, ['install', join(work, info.filename), '--prefer-offline', '--no-audit', '--no-fund'], { cwd: project });
    assert.equal(installed.status, 0, installed.show);
  });

  it('holds the built library, its types and the docs, not the tests, benchmarks or source maps', () => {
    for (const f of ['dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/auto.js', 'dist/src/auto.d.ts', 'dist/src/cli/cli.js'])
      assert.ok(files.includes(f), f);
    assert.ok(files.includes('dist/src/drain/drain-worker.js') && files.includes('dist/src/cli/demo-worker.js'), 'the worker files');
    assert.ok(files.includes('README.md') && files.includes('package.json'));
    assert.deepEqual(
      files.filter((f) => /^dist\/(test|bench)\/|\.map$|^src\//.test(f)),
      [],
    );
  });

  it('npx ringtrace demo, inspect and export work; bench is not offered', () => {
    const out = join(work, 'demo');
    const demo = run(npx, ['ringtrace', 'demo', '--seconds', '2', '--workers', '1', '--no-live', '--out', out], { cwd: project });
    assert.equal(demo.status, 0, demo.show);
    const trace = join(out, 'trace.rtrace');
    assert.ok(existsSync(trace) && existsSync(join(out, 'trace.json')) && existsSync(join(out, 'report.html')), demo.show);
    const inspect = run(npx, ['ringtrace', 'inspect', trace], { cwd: project });
    assert.equal(inspect.status, 0, inspect.show);
    assert.match(inspect.stdout, /balanced: yes/);
    const exported = run(npx, ['ringtrace', 'export', trace, '--format', 'jsonl', '-o', join(work, 'trace.jsonl')], { cwd: project });
    assert.equal(exported.status, 0, exported.show);
    assert.match(readFileSync(join(work, 'trace.jsonl'), 'utf8').split('\n')[0], /"type":"header"/);
    const help = run(npx, ['ringtrace', '--help'], { cwd: project });
    assert.equal(help.status, 0, help.show);
    assert.doesNotMatch(help.stdout, /\bbench\b/);
    const bench = run(npx, ['ringtrace', 'bench'], { cwd: project });
    assert.equal(bench.status, 1, bench.show);
    assert.match(bench.stderr, /the benchmarks are not part of the installed package; run them from a clone of the repository/);
  });

  it("the README's quick start runs against the installed package", () => {
    copyFileSync(join(root, 'examples/quickstart.mjs'), join(project, 'quickstart.mjs'));
    const r = run(process.execPath, ['quickstart.mjs', join(work, 'quick.rtrace')], { cwd: project });
    assert.equal(r.status, 0, r.show);
    assert.match(r.stdout, /balanced: true/);
  });

  it('node --import ringtrace/auto traces an app of the project, its worker too', () => {
    writeFileSync(
      join(project, 'app.mjs'),
      [
        "import { Worker } from 'node:worker_threads';",
        "const w = new Worker('./work.mjs');",
        "w.on('exit', () => console.log('done'));",
      ].join('\n'),
    );
    writeFileSync(join(project, 'work.mjs'), "await fetch('data:,hi').catch(() => {});\n");
    const path = join(work, 'auto.rtrace');
    const r = run(process.execPath, ['--import', 'ringtrace/auto', 'app.mjs'], { cwd: project, env: { ...env, RINGTRACE_PATH: path } });
    assert.equal(r.status, 0, r.show);
    const inspect = run(npx, ['ringtrace', 'inspect', path, '--json'], { cwd: project });
    assert.equal(inspect.status, 0, inspect.show);
    const { summary } = JSON.parse(inspect.stdout) as {
      summary: { complete: boolean; threads: Array<{ name: string; balanced: boolean }> };
    };
    assert.equal(summary.complete, true);
    assert.deepEqual(
      summary.threads.map((t) => [t.name.replace(/\d+$/, 'N'), t.balanced]),
      [
        ['main', true],
        ['worker-N', true],
      ],
    );
  });
});
