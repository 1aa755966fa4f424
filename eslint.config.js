// ESLint flat config: recommended JS and typescript-eslint rules, type-aware only where it pays
// (floating promises), no import cycles among runtime imports, and a length limit for src/.
// Formatting is Prettier's job (`prettier --check .` in `npm run lint`).
import { defineConfig } from 'eslint/config';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { createNodeResolver, importX } from 'eslint-plugin-import-x';
import globals from 'globals';

export default defineConfig(
  { ignores: ['dist/', 'coverage/', 'node_modules/', 'test/fixtures/'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  { languageOptions: { globals: globals.node } },
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // node:test's test()/describe() return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite'] }] },
      ],
    },
  },
  {
    // Imports are written with the .js of the emitted file; resolve them to the .ts source.
    // test/fixtures/import-cycle (ignored by `npm run lint`) proves the rule resolves them: test/lint.test.ts.
    files: ['src/**/*.ts', 'test/fixtures/import-cycle/*.ts'],
    plugins: { 'import-x': importX },
    settings: {
      'import-x/extensions': ['.ts', '.js'],
      'import-x/resolver-next': [createNodeResolver({ extensionAlias: { '.js': ['.ts', '.js'] } })],
    },
    rules: {
      // Counts runtime imports only: an `import type` is erased by tsc and cannot cycle at load time.
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      // A function on the hot path or in a concurrency protocol may stay longer when splitting it
      // would cost time or scatter the protocol: it says so in an eslint-disable comment.
      'max-lines-per-function': ['error', { max: 80, skipBlankLines: true, skipComments: true }],
    },
  },
);
