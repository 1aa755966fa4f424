import assert from 'node:assert/strict';
import { it } from 'node:test';
import { runSoak } from './soak.js';

it('soak (short): 8 workers, random load and drain trouble, exact accounting', async () => {
  const res = await runSoak(4, 8, 7);
  assert.deepEqual(res.problems, []);
  assert.equal(res.threads, 8);
  assert.ok(res.events > 0);
});
