/**
 * A real application shape: an HTTP server whose handlers run in a piscina pool with its default
 * options (idle workers wait in Atomics.wait, so their event loops never turn), under load, then
 * shut down gracefully. Every thread must be balanced with nothing unflushed, and every event the
 * pool recorded must be in the file.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { Piscina } from 'piscina';
import { Tracer, openTrace } from '../src/index.js';
import { tempTrace } from './helpers/scenario.js';

describe('an HTTP server with a piscina pool', () => {
  it('under load, then a graceful shutdown: every thread balanced, nothing unflushed, every task event in the file', async () => {
    const path = tempTrace('pool-app');
    const tracer = await Tracer.open({ path, logLevel: 'error' });
    const main = tracer.register('main');
    const request = tracer.define('http.request');
    const pool = new Piscina({
      filename: new URL('./helpers/pool-task.js', import.meta.url).href,
      workerData: { trace: tracer.handle },
      maxThreads: 2,
      minThreads: 2,
    });
    let handled = 0;
    const server: Server = createServer((req, res) => {
      main.begin(request);
      pool.run(handled++).then(
        (n: number) => {
          main.end(request);
          res.end(String(n));
        },
        (err: Error) => {
          res.statusCode = 500;
          res.end(err.message);
        },
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    // Load: 16 concurrent clients, 2 s or 6,000 requests, whichever comes first.
    const deadline = Date.now() + 2000;
    let sent = 0;
    const client = async () => {
      while (Date.now() < deadline && sent < 6000) {
        sent++;
        const r = await fetch(`http://127.0.0.1:${port}/`);
        assert.equal(r.status, 200);
        await r.text();
      }
    };
    await Promise.all(Array.from({ length: 16 }, client));
    // Graceful shutdown: stop accepting, then close the tracer while the pool's workers sit idle
    // in Atomics.wait, then stop the pool.
    await new Promise<void>((r) => server.close(() => r()));
    const summary = await tracer.close();
    await pool.destroy();
    assert.ok(summary, 'close() returns a summary');
    assert.ok(summary.complete);
    assert.ok(summary.balanced);
    for (const t of summary.threads) {
      assert.equal(t.events + t.dropped, t.attempted, `${t.name}: balanced`);
      assert.equal(t.droppedByReason.unflushed ?? 0, 0, `${t.name}: nothing unflushed`);
      assert.equal(t.dropped, 0, `${t.name}: nothing dropped`);
    }
    const workers = summary.threads.filter((t) => t.name !== 'main');
    assert.ok(workers.length >= 1 && workers.length <= 2);
    assert.equal(
      workers.reduce((n, t) => n + t.events, 0),
      handled * 10,
      'every task event',
    );
    assert.equal(summary.threads.find((t) => t.name === 'main')!.events, handled * 2);
    const r = openTrace(path);
    assert.equal(r.summary().totals.events, handled * 12);
  });
});
