/**
 * Committed traces of every format version this reader reads (written by
 * scripts/make-golden.mjs with the ringtrace of that version) must read back exactly as pinned in
 * the .json next to them. A record layout change that forgets to bump FORMAT_VERSION, or a
 * reader that stops reading an older version, fails here.
 * Refresh a pin only for a new version: RINGTRACE_WRITE_GOLDEN=1 node --test dist/test/golden.test.js
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { FORMAT_VERSION } from '../src/file/format.js';
import { openTrace } from '../src/file/reader.js';

const fixture = (name: string): string => fileURLToPath(new URL(`../../test/fixtures/${name}`, import.meta.url));

/** Everything the reader says about a file, in JSON-comparable form. */
function view(path: string): unknown {
  const r = openTrace(path);
  const events = [...r.events()].map((e) => ({ ...e, payload: e.payload ? [...e.payload] : undefined }));
  return JSON.parse(
    JSON.stringify({
      version: r.version,
      complete: r.complete,
      damaged: r.damaged,
      config: r.config,
      names: [...r.names],
      threads: r.threads,
      events,
      drops: r.drops(),
      states: r.states(),
      summary: { ...r.summary(), path: undefined }, // where the checkout is does not matter
    }),
  );
}

describe('golden traces: every format version reads back as pinned', () => {
  for (let version = 1; version <= FORMAT_VERSION; version++) {
    it(`format version ${version}`, () => {
      const trace = fixture(`golden-v${version}.rtrace`);
      const pin = fixture(`golden-v${version}.json`);
      const got = view(trace);
      if (process.env.RINGTRACE_WRITE_GOLDEN === '1' && !existsSync(pin)) writeFileSync(pin, JSON.stringify(got, null, 1) + '\n');
      assert.deepEqual(got, JSON.parse(readFileSync(pin, 'utf8')));
      // Facts of the generator, independent of the pin: two threads, 1174 events written (5 more
      // from version 3: the span records; 3 more from version 4: debug events), 1976 dropped by
      // main's exhausted drop-newest pool (38976, from version 5, see below), every count balanced.
      const r = openTrace(trace);
      assert.equal(r.version, version);
      assert.deepEqual(
        r.threads.map((t) => [t.name, t.slot, t.policy]),
        [
          ['main', 0, 'drop-newest'],
          ['worker-1', 1, 'drop-newest'],
        ],
      );
      const s = r.summary();
      assert.equal(s.totals.events, version >= 4 ? 1182 : version >= 3 ? 1179 : 1174);
      // Version 5: main floods 40,000 ticks, not 3,000, sampled (reason `sampled`) before its pool runs out.
      assert.equal(s.totals.dropped, version >= 5 ? 38976 : 1976);
      if (version >= 5) {
        assert.deepEqual(s.threads[0].droppedByReason, { sampled: 5638, pool_exhausted: 33338 });
        const [main] = r.scaledCounts();
        assert.equal(main.sampledOut, 5638);
        assert.equal(main.unplaced, 0);
        assert.equal(main.byName.tick, 20 + 40000 - 33338, 'the kept ticks scaled back up: all but the ones the pool had no room for');
      }
      assert.ok(s.totals.balanced);
      assert.equal(r.damage, undefined);
      assert.equal([...r.events()].filter((e) => e.kind === 'bytes').length, 20);
      if (version >= 3) {
        const spans = [...r.events()].filter((e) => e.span !== undefined);
        assert.deepEqual(
          spans.map((e) => [r.threads[e.thread].name, e.kind, e.name ?? null, e.value ?? null]),
          [
            ['main', 'async-begin', 'job', 42],
            ['worker-1', 'link', null, null],
            ['worker-1', 'async-begin', 'worker.task', null],
            ['worker-1', 'async-end', null, null],
            ['worker-1', 'async-end', null, null],
          ],
        );
        assert.equal(spans[0].span, spans[1].span);
        assert.equal(spans[0].span, spans[4].span);
        assert.equal(spans[2].span, spans[3].span);
        assert.notEqual(spans[0].span, spans[2].span);
      }
      if (version >= 4) {
        assert.equal(r.priorityOf([...r.names].find(([, n]) => n === 'shutdown')![0]), 'critical');
        const [main, worker] = s.threads;
        assert.deepEqual(main.droppedByPriority, { normal: version >= 5 ? 38976 : 1976, critical: 0, debug: 0 });
        assert.deepEqual(worker.eventsByPriority, { normal: 54, critical: 0, debug: 3 });
        assert.equal(main.unattributedDrops, 0);
      }
    });
  }
});
