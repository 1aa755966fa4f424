/**
 * The lint rule that keeps src/ free of import cycles must see through the `.js` specifiers of
 * the TypeScript sources: if its resolver failed, `npm run lint` would pass on any cycle.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { ESLint } from 'eslint';

const root = fileURLToPath(new URL('../../', import.meta.url));

test('import-x/no-cycle reports a runtime cycle and lets a type-only one pass', async () => {
  // ignore: false, because `npm run lint` skips test/fixtures.
  const eslint = new ESLint({ cwd: root, ignore: false });
  const results = await eslint.lintFiles(['test/fixtures/import-cycle/*.ts']);
  const cycles = results
    .filter((r) => r.messages.some((m) => m.ruleId === 'import-x/no-cycle'))
    .map((r) => r.filePath.slice(root.length))
    .sort();
  assert.deepEqual(cycles, ['test/fixtures/import-cycle/ring-a.ts', 'test/fixtures/import-cycle/ring-b.ts']);
  const other = results.flatMap((r) => r.messages.filter((m) => m.ruleId !== 'import-x/no-cycle'));
  assert.deepEqual(other, []);
});
