/**
 * An application's own graceful SIGTERM handler: ringtrace must not finish the file ahead of it,
 * and the app's `await tracer.close()` gets a complete, balanced summary with every event its
 * workers recorded, including a worker blocked in Atomics.wait.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openTrace } from '../src/index.js';
import type { CloseSummary } from '../src/index.js';
import { tempTrace } from './helpers/scenario.js';

const child = fileURLToPath(new URL('./fixtures/graceful-child.js', import.meta.url));

describe('graceful shutdown', () => {
  it("the app's own SIGTERM handler gets a complete summary from close(), with every worker event", async () => {
    const path = tempTrace('graceful');
    const p = spawn(process.execPath, [child, path], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stderr.on('data', (b) => (err += b));
    await new Promise<void>((resolve, reject) => {
      p.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('ready\n')) resolve();
      });
      p.once('exit', (code) => reject(new Error(`child exited (${code}) before it was ready: ${err}`)));
    });
    p.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => p.once('exit', resolve));
    assert.equal(code, 0, err);
    const line = out.split('\n').find((l) => l.startsWith('{'));
    assert.ok(line, `no summary printed: ${out} ${err}`);
    const { first, same, recorded } = JSON.parse(line) as {
      first: CloseSummary | undefined;
      same: boolean;
      recorded: Record<string, number>;
    };
    assert.ok(first, 'close() returned a summary');
    assert.equal(same, true, 'a second close() returns the same summary');
    assert.equal(first.complete, true);
    assert.equal(first.balanced, true);
    const r = openTrace(path);
    const summary = r.summary();
    for (const [name, n] of Object.entries(recorded)) {
      const t: CloseSummary['threads'][number] = first.threads.find((x) => x.name === name)!;
      assert.equal(t.attempted, n, `${name}: attempted`);
      assert.equal(t.dropped, 0, `${name}: nothing dropped (${JSON.stringify(t.droppedByReason)})`);
      assert.equal(summary.threads.find((x) => x.name === name)?.events, n, `${name}: every event in the file`);
    }
    assert.equal(Object.keys(recorded).length, 4);
  });
});
