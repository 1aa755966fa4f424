/**
 * Edge faults of the tracer and the writer: a failed open or attach leaves nothing behind, a
 * record call that throws is not counted, and a closed writer's slot is there for the next
 * registration.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

const openFailChild = fileURLToPath(new URL('./fixtures/open-fail-child.js', import.meta.url));

const haveDevFull = (() => {
  try {
    return statSync('/dev/full').isCharacterDevice();
  } catch {
    return false;
  }
})();

/** Runs a child to its own exit; a child that does not exit within `ms` is killed and that is
 * the failure (the bound is generous: it only turns a hang into a failed test). */
function runToExit(args: string[], ms: number): Promise<{ code: number | null; stdout: string; stderr: string; hung: boolean }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (b) => (stdout += b));
    p.stderr.on('data', (b) => (stderr += b));
    let hung = false;
    const timer = setTimeout(() => {
      hung = true;
      p.kill('SIGKILL');
    }, ms);
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, hung });
    });
  });
}

describe('Tracer.open on a file it cannot write', { skip: !haveDevFull && 'no /dev/full here' }, () => {
  it('rejects, leaves no worker, fd or listener behind, and the process exits by itself', async () => {
    const times = 5;
    const r = await runToExit([openFailChild, '/dev/full', String(times)], 60_000);
    assert.equal(r.hung, false, `the child did not exit by itself; it printed: ${r.stdout}${r.stderr}`);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.errors.length, times);
    for (const e of out.errors) assert.match(e, /cannot open trace file \/dev\/full: ENOSPC/);
    assert.deepEqual(out.after.listeners, out.before.listeners, 'process listeners');
    // The first worker a process starts may leave things of Node's own: compare the retries.
    assert.equal(out.after.resources, out.first.resources, `active handles after 1 and after ${times} failures`);
    assert.equal(out.after.fds, out.first.fds, `open file descriptors after 1 and after ${times} failures`);
  });
});
