import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { inspect } from 'node:util';
import { after, describe, test } from 'node:test';
import {
  ConfigError,
  DEFAULTS,
  ENV_VARS,
  describeSource,
  formatConfig,
  parseDuration,
  parseSize,
  resolveConfig,
  type ConfigSource,
  type ResolveInput,
} from '../src/config.js';

const dir = mkdtempSync(join(tmpdir(), 'ringtrace-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let fileCounter = 0;
/** Writes `text` to a fresh file with the given extension and returns its absolute path. */
function writeConfig(ext: string, text: string): string {
  const file = join(dir, `config-${fileCounter++}${ext}`);
  writeFileSync(file, text);
  return file;
}

/** resolveConfig with an empty environment unless one is given, so the host's env cannot leak in. */
const resolve = (input: ResolveInput = {}) => resolveConfig({ env: {}, ...input });

interface Expected {
  setting: string;
  value: unknown;
  source: ConfigSource;
  /** Text the message must contain besides setting, value, source and `allowed`. */
  mentions?: string[];
}

/** Asserts a ConfigError whose fields and message name the setting, value, source and what is allowed. */
function assertConfigError(fn: () => unknown, expected: Expected): ConfigError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  const err = caught;
  assert.equal(err.name, 'ConfigError');
  assert.equal(err.setting, expected.setting);
  assert.deepEqual(err.value, expected.value);
  assert.deepEqual(err.source, expected.source);
  assert.ok(err.allowed.length > 0);
  const shownValue =
    typeof expected.value === 'string' ? JSON.stringify(expected.value) : inspect(expected.value, { breakLength: Infinity });
  for (const part of [
    `ringtrace config: ${expected.setting} = ${shownValue}`,
    `from ${describeSource(expected.source)}`,
    err.allowed,
    ...(expected.mentions ?? []),
  ]) {
    assert.ok(err.message.includes(part), `message ${JSON.stringify(err.message)} should include ${JSON.stringify(part)}`);
  }
  return err;
}

const env = (name: string): ConfigSource => ({ kind: 'env', name });
const option = (key: string): ConfigSource => ({ kind: 'option', key });
const fileKey = (file: string, key: string): ConfigSource => ({ kind: 'file', file, key });

describe('defaults', () => {
  test('an empty configuration resolves to DEFAULTS with derived thresholds', () => {
    const { config, sources } = resolve();
    assert.deepEqual(config, { ...DEFAULTS, pressureSpares: 2, recoverySpares: 5, criticalReserveRings: 1 });
    assert.equal(config.path, undefined);
    assert.equal(config.ringSize, 256 * 1024);
    assert.equal(config.ringsPerThread, 8);
    assert.equal(config.maxThreads, 64);
    assert.equal(config.policy, 'drop-oldest');
    assert.equal(config.stabilityMs, 250);
    assert.equal(config.flushIntervalMs, 1000);
    assert.equal(config.dropLogIntervalMs, 1000);
    assert.equal(config.dropLogEvery, 1);
    assert.equal(config.logLevel, 'warn');
    assert.equal(config.closeTimeoutMs, 1000);
    assert.equal(config.drainBatchRings, 8);
    assert.equal(config.drainIdleMs, 1000);
    assert.equal(config.exitHooks, true);
    for (const source of Object.values(sources)) assert.deepEqual(source, { kind: 'default' });
    assert.equal(Object.keys(sources).length, Object.keys(config).length);
  });

  test('thresholds derive from the spare count K = ringsPerThread - 1', () => {
    const cases: Array<[rings: number, pressure: number, recovery: number]> = [
      [2, 0, 1], // K=1
      [3, 0, 2], // K=2
      [4, 1, 2], // K=3
      [5, 1, 3], // K=4
      [8, 2, 5], // K=7
      [64, 21, 42], // K=63
    ];
    for (const [rings, pressure, recovery] of cases) {
      const { config } = resolve({ options: { ringsPerThread: rings } });
      assert.deepEqual([config.pressureSpares, config.recoverySpares], [pressure, recovery], `ringsPerThread ${rings}`);
    }
  });

  test('derived thresholds are valid for every ringsPerThread', () => {
    for (let rings = 2; rings <= 64; rings++) {
      const { config } = resolve({ options: { ringsPerThread: rings } });
      assert.ok(0 <= config.pressureSpares && config.pressureSpares < config.recoverySpares);
      assert.ok(config.recoverySpares <= rings - 1);
    }
  });

  test('a given pressureSpares moves the derived recoverySpares above it', () => {
    const { config, sources } = resolve({ options: { pressureSpares: 5 } });
    assert.deepEqual([config.pressureSpares, config.recoverySpares], [5, 6]);
    assert.deepEqual(sources.pressureSpares, option('pressureSpares'));
    assert.deepEqual(sources.recoverySpares, { kind: 'default' });
  });

  test('DEFAULTS cannot be modified', () => {
    assert.throws(() => {
      (DEFAULTS as { ringSize: number }).ringSize = 1;
    }, TypeError);
  });

  test('ENV_VARS lists the variables of every setting, preferred name first', () => {
    assert.deepEqual(Object.keys(ENV_VARS), Object.keys(resolve().config));
    for (const names of Object.values(ENV_VARS)) {
      assert.ok(names.length > 0 && names.every((n) => n.startsWith('RINGTRACE_')));
    }
    assert.deepEqual(ENV_VARS.ringSize, ['RINGTRACE_RING_SIZE']);
    assert.deepEqual(ENV_VARS.stabilityMs, ['RINGTRACE_STABILITY_MS', 'RINGTRACE_STABILITY']);
    assert.deepEqual(ENV_VARS.flushIntervalMs, ['RINGTRACE_FLUSH_INTERVAL', 'RINGTRACE_FLUSH_INTERVAL_MS']);
  });
});

describe('parseSize', () => {
  test('accepts plain bytes and every unit', () => {
    const cases: Array<[string | number, number]> = [
      [65536, 65536],
      ['65536', 65536],
      ['0', 0],
      ['4096B', 4096],
      ['4096 B', 4096],
      ['64KiB', 65536],
      ['64 KiB', 65536],
      ['64K', 65536],
      ['64KB', 65536],
      ['64kb', 65536],
      ['64kib', 65536],
      ['1MiB', 1048576],
      ['1 MiB', 1048576],
      ['1M', 1048576],
      ['1MB', 1048576],
      ['16mib', 16777216],
      ['1.5MiB', 1572864],
      ['0.5K', 512],
    ];
    for (const [text, bytes] of cases) assert.equal(parseSize(text), bytes, `parseSize(${JSON.stringify(text)})`);
  });

  test('rejects anything else with a message naming the input', () => {
    const bad: Array<string | number> = [
      '64kb junk',
      '64KiB ',
      ' 64KiB',
      '64  KiB',
      '64GB',
      '64 GiB',
      'KiB',
      '',
      '-1',
      '+1',
      '0x1000',
      '1e3',
      '.5K',
      '1.5B', // not a whole number of bytes
      '99999999999999999999', // beyond exact integers
      1.5,
      -1,
      Number.NaN,
      Number.POSITIVE_INFINITY,
    ];
    for (const text of bad) {
      assert.throws(
        () => parseSize(text),
        (e: Error) => e.message.startsWith('invalid size') && e.message.includes(String(text === '' ? '""' : text)),
        `parseSize(${JSON.stringify(text)})`,
      );
    }
  });

  test('the syntax error lists the accepted units', () => {
    assert.throws(() => parseSize('64 parsecs'), /B, K, KB, KiB, M, MB, MiB/);
  });
});

describe('parseDuration', () => {
  test('accepts plain milliseconds and ms, s, m', () => {
    const cases: Array<[string | number, number]> = [
      [250, 250],
      [0, 0],
      ['250', 250],
      ['250ms', 250],
      ['250 ms', 250],
      ['1s', 1000],
      ['1.5s', 1500],
      ['0.1s', 100],
      ['1.001s', 1001], // exact, not 1000.9999999999999
      ['2m', 120000],
      ['1.5 S', 1500],
      ['0.5', 0.5], // a duration; whole milliseconds are a setting's rule
    ];
    for (const [text, ms] of cases) assert.equal(parseDuration(text), ms, `parseDuration(${JSON.stringify(text)})`);
  });

  test('rejects anything else with a message naming the input', () => {
    const bad: Array<string | number> = ['soon', '1h', '1 s x', '1s ', '-1', '', '1sec', -5, Number.POSITIVE_INFINITY];
    for (const text of bad) {
      assert.throws(
        () => parseDuration(text),
        (e: Error) => e.message.startsWith('invalid duration'),
        `parseDuration(${JSON.stringify(text)})`,
      );
    }
    assert.throws(() => parseDuration('soon'), /"soon".*ms, s, m/);
  });
});

describe('environment', () => {
  test('every variable sets its setting, with string values parsed', () => {
    const { config, sources } = resolve({
      env: {
        RINGTRACE_PATH: '/tmp/trace.rt',
        RINGTRACE_RING_SIZE: '1 MiB',
        RINGTRACE_RINGS_PER_THREAD: '8',
        RINGTRACE_MAX_THREADS: '16',
        RINGTRACE_POLICY: 'drop-newest',
        RINGTRACE_PRESSURE_SPARES: '3',
        RINGTRACE_RECOVERY_SPARES: '6',
        RINGTRACE_CRITICAL_RESERVE_RINGS: '2',
        RINGTRACE_SAMPLING: 'on',
        RINGTRACE_SAMPLING_MAX_EVERY: '16',
        RINGTRACE_ADAPTIVE_THRESHOLDS: 'yes',
        RINGTRACE_PREDICTIVE_HORIZON: '40ms',
        RINGTRACE_STABILITY_MS: '500',
        RINGTRACE_FLUSH_INTERVAL: '0',
        RINGTRACE_DROP_LOG_INTERVAL: '5s',
        RINGTRACE_DROP_LOG_EVERY: '100',
        RINGTRACE_LOG_LEVEL: 'debug',
        RINGTRACE_CLOSE_TIMEOUT: '1.5s',
        RINGTRACE_DRAIN_BATCH_RINGS: '2',
        RINGTRACE_DRAIN_IDLE: '5ms',
        RINGTRACE_EXIT_HOOKS: 'off',
        UNRELATED: 'ignored',
        RINGTRACE: 'not a RINGTRACE_ variable',
      },
    });
    assert.deepEqual(config, {
      path: '/tmp/trace.rt',
      ringSize: 1048576,
      ringsPerThread: 8,
      maxThreads: 16,
      policy: 'drop-newest',
      pressureSpares: 3,
      recoverySpares: 6,
      criticalReserveRings: 2,
      sampling: true,
      samplingMaxEvery: 16,
      adaptiveThresholds: true,
      predictiveHorizonMs: 40,
      stabilityMs: 500,
      flushIntervalMs: 0,
      dropLogIntervalMs: 5000,
      dropLogEvery: 100,
      logLevel: 'debug',
      closeTimeoutMs: 1500,
      drainBatchRings: 2,
      drainIdleMs: 5,
      exitHooks: false,
    });
    assert.deepEqual(sources.ringSize, env('RINGTRACE_RING_SIZE'));
    assert.deepEqual(sources.flushIntervalMs, env('RINGTRACE_FLUSH_INTERVAL'));
  });

  test('alternative names are accepted and reported', () => {
    const { config, sources } = resolve({
      env: {
        RINGTRACE_STABILITY: '1s',
        RINGTRACE_FLUSH_INTERVAL_MS: '200',
        RINGTRACE_DROP_LOG_INTERVAL_MS: '300',
        RINGTRACE_CLOSE_TIMEOUT_MS: '400',
        RINGTRACE_DRAIN_IDLE_MS: '50',
      },
    });
    assert.deepEqual(
      [config.stabilityMs, config.flushIntervalMs, config.dropLogIntervalMs, config.closeTimeoutMs, config.drainIdleMs],
      [1000, 200, 300, 400, 50],
    );
    assert.deepEqual(sources.stabilityMs, env('RINGTRACE_STABILITY'));
    assert.deepEqual(sources.drainIdleMs, env('RINGTRACE_DRAIN_IDLE_MS'));
  });

  test('both names of one setting is an error', () => {
    assertConfigError(() => resolve({ env: { RINGTRACE_STABILITY_MS: '250', RINGTRACE_STABILITY: '1s' } }), {
      setting: 'stabilityMs',
      value: '1s',
      source: env('RINGTRACE_STABILITY'),
      mentions: ['env RINGTRACE_STABILITY_MS sets it too'],
    });
  });

  test('every boolean spelling of RINGTRACE_EXIT_HOOKS', () => {
    const words: Array<[string, boolean]> = [
      ['true', true],
      ['1', true],
      ['yes', true],
      ['on', true],
      ['TRUE', true],
      ['false', false],
      ['0', false],
      ['no', false],
      ['off', false],
      ['Off', false],
    ];
    for (const [word, value] of words) {
      assert.equal(resolve({ env: { RINGTRACE_EXIT_HOOKS: word } }).config.exitHooks, value, word);
    }
  });

  test('an unknown RINGTRACE_ variable is an error listing the known ones', () => {
    assertConfigError(() => resolve({ env: { RINGTRACE_RING_SIZ: '64KiB' } }), {
      setting: 'RINGTRACE_RING_SIZ',
      value: '64KiB',
      source: env('RINGTRACE_RING_SIZ'),
      mentions: ['unknown environment variable', 'RINGTRACE_RING_SIZE', 'RINGTRACE_CONFIG'],
    });
  });

  test('undefined entries count as unset', () => {
    assert.equal(resolve({ env: { RINGTRACE_RING_SIZE: undefined } }).config.ringSize, 256 * 1024);
  });

  test('defaults to process.env', () => {
    const saved = Object.entries(process.env).filter(([name]) => name.startsWith('RINGTRACE_'));
    for (const [name] of saved) delete process.env[name];
    process.env.RINGTRACE_MAX_THREADS = '7';
    try {
      const { config, sources } = resolveConfig();
      assert.equal(config.maxThreads, 7);
      assert.deepEqual(sources.maxThreads, env('RINGTRACE_MAX_THREADS'));
    } finally {
      delete process.env.RINGTRACE_MAX_THREADS;
      for (const [name, value] of saved) process.env[name] = value;
    }
  });
});

describe('options', () => {
  test('accept numbers, booleans and the same strings as the environment', () => {
    const { config, sources } = resolve({
      options: { ringSize: '256KiB', maxThreads: 8, stabilityMs: '1s', flushIntervalMs: 100, exitHooks: false },
    });
    assert.deepEqual(
      [config.ringSize, config.maxThreads, config.stabilityMs, config.flushIntervalMs, config.exitHooks],
      [262144, 8, 1000, 100, false],
    );
    assert.deepEqual(sources.ringSize, option('ringSize'));
  });

  test('undefined values count as not given', () => {
    const { config, sources } = resolve({
      env: { RINGTRACE_RING_SIZE: '8KiB' },
      options: { ringSize: undefined, path: undefined },
    });
    assert.equal(config.ringSize, 8192);
    assert.deepEqual(sources.ringSize, env('RINGTRACE_RING_SIZE'));
    assert.deepEqual(sources.path, { kind: 'default' });
  });

  test('an unknown option is an error naming it', () => {
    assertConfigError(() => resolve({ options: { ringSzie: 4096 } as Record<string, unknown> }), {
      setting: 'ringSzie',
      value: 4096,
      source: option('ringSzie'),
      mentions: ['unknown option', 'ringSize'],
    });
  });

  test('snake_case is for files only', () => {
    assertConfigError(() => resolve({ options: { ring_size: 4096 } as Record<string, unknown> }), {
      setting: 'ring_size',
      value: 4096,
      source: option('ring_size'),
    });
  });
});

describe('config files', () => {
  test('JSON with camelCase and snake_case keys', () => {
    const file = writeConfig(
      '.json',
      JSON.stringify({ ringSize: '128KiB', rings_per_thread: 6, policy: 'drop-newest', exit_hooks: false }),
    );
    const { config, sources } = resolve({ configFile: file });
    assert.deepEqual([config.ringSize, config.ringsPerThread, config.policy, config.exitHooks], [131072, 6, 'drop-newest', false]);
    assert.deepEqual(sources.ringSize, fileKey(file, 'ringSize'));
    assert.deepEqual(sources.ringsPerThread, fileKey(file, 'rings_per_thread'));
    assert.equal(describeSource(sources.ringSize), `file ${file} key ringSize`);
  });

  test('a JSON byte order mark is not content', () => {
    const file = writeConfig('.json', '\uFEFF{"maxThreads": 2}');
    assert.equal(resolve({ configFile: file }).config.maxThreads, 2);
  });

  test('TOML with snake_case and camelCase keys', () => {
    const file = writeConfig(
      '.toml',
      [
        '# ringtrace settings',
        'ring_size = "1MiB"',
        'ringsPerThread = 8',
        'pressure_spares = 2',
        'recovery_spares = 5',
        'stability_ms = "500ms"',
        'flush_interval_ms = 0',
        'log_level = "warn"',
        'exit_hooks = true',
        'path = "/var/tmp/app.rt"',
      ].join('\n'),
    );
    const { config, sources } = resolve({ configFile: file });
    assert.deepEqual(
      [
        config.ringSize,
        config.ringsPerThread,
        config.pressureSpares,
        config.recoverySpares,
        config.stabilityMs,
        config.flushIntervalMs,
        config.logLevel,
        config.exitHooks,
        config.path,
      ],
      [1048576, 8, 2, 5, 500, 0, 'warn', true, '/var/tmp/app.rt'],
    );
    assert.deepEqual(sources.ringSize, fileKey(file, 'ring_size'));
    assert.deepEqual(sources.ringsPerThread, fileKey(file, 'ringsPerThread'));
  });

  test('RINGTRACE_CONFIG names the file; an explicit configFile wins over it', () => {
    const fromEnv = writeConfig('.json', '{"maxThreads": 3}');
    const explicit = writeConfig('.json', '{"maxThreads": 5}');
    assert.equal(resolve({ env: { RINGTRACE_CONFIG: fromEnv } }).config.maxThreads, 3);
    assert.equal(resolve({ env: { RINGTRACE_CONFIG: fromEnv }, configFile: explicit }).config.maxThreads, 5);
  });

  test('a relative path is resolved and reported absolute', () => {
    const file = writeConfig('.json', '{"maxThreads": 9}');
    const { sources } = resolve({ configFile: relative(process.cwd(), file) });
    assert.deepEqual(sources.maxThreads, fileKey(file, 'maxThreads'));
  });

  test('an unknown key is an error naming the key and the file', () => {
    const file = writeConfig('.toml', 'ring_size = "64KiB"\nring_szie = "64KiB"\n');
    assertConfigError(() => resolve({ configFile: file }), {
      setting: 'ring_szie',
      value: '64KiB',
      source: fileKey(file, 'ring_szie'),
      mentions: [`unknown key in ${file}`, 'ringSize'],
    });
  });

  test('both spellings of one key is an error', () => {
    const file = writeConfig('.json', '{"ringSize": 4096, "ring_size": 8192}');
    assertConfigError(() => resolve({ configFile: file }), {
      setting: 'ringSize',
      value: 8192,
      source: fileKey(file, 'ring_size'),
      mentions: [`file ${file} key ringSize sets it too`],
    });
  });

  test('an invalid value names the file and key', () => {
    const file = writeConfig('.json', '{"ringSize": 65000}');
    assertConfigError(() => resolve({ configFile: file }), {
      setting: 'ringSize',
      value: 65000,
      source: fileKey(file, 'ringSize'),
    });
  });

  test('a TOML value of the wrong type is rejected, not converted', () => {
    const file = writeConfig('.toml', 'policy = ["drop-oldest"]\n');
    assertConfigError(() => resolve({ configFile: file }), {
      setting: 'policy',
      value: ['drop-oldest'],
      source: fileKey(file, 'policy'),
    });
  });

  test('a missing file is an error naming the file and its source', () => {
    const file = join(dir, 'missing.toml');
    const err = assertConfigError(() => resolve({ env: { RINGTRACE_CONFIG: file } }), {
      setting: 'configFile',
      value: file,
      source: env('RINGTRACE_CONFIG'),
      mentions: ['cannot read', 'ENOENT'],
    });
    assert.equal((err.cause as NodeJS.ErrnoException).code, 'ENOENT');
  });

  test('an unreadable file (a directory) is an error', () => {
    const notAFile = join(dir, 'directory.json');
    mkdirSync(notAFile);
    assertConfigError(() => resolve({ configFile: notAFile }), {
      setting: 'configFile',
      value: notAFile,
      source: option('configFile'),
      mentions: ['cannot read', 'EISDIR'],
    });
  });

  test('an empty RINGTRACE_CONFIG is not "no file"', () => {
    assertConfigError(() => resolve({ env: { RINGTRACE_CONFIG: '' } }), {
      setting: 'configFile',
      value: '',
      source: env('RINGTRACE_CONFIG'),
    });
  });

  test('a file that is neither .json nor .toml is an error', () => {
    const file = writeConfig('.yaml', 'ringSize: 4096\n');
    assertConfigError(() => resolve({ configFile: file }), {
      setting: 'configFile',
      value: file,
      source: option('configFile'),
      mentions: ['unknown file type', '.json or .toml'],
    });
  });

  test('a TOML syntax error names the file, line and column', () => {
    const file = writeConfig('.toml', 'ring_size = "64KiB"\nmax_threads = = 4\n');
    const err = assertConfigError(() => resolve({ configFile: file }), {
      setting: 'configFile',
      value: file,
      source: option('configFile'),
      mentions: [`TOML syntax error in ${file} at line 2, column`],
    });
    assert.ok(!err.message.includes('\n'), 'one line, without the code excerpt');
  });

  test('a JSON syntax error names the file', () => {
    const file = writeConfig('.json', '{"ringSize": }');
    assertConfigError(() => resolve({ configFile: file }), {
      setting: 'configFile',
      value: file,
      source: option('configFile'),
      mentions: [`JSON syntax error in ${file}`],
    });
  });

  test('a JSON file must hold an object', () => {
    const file = writeConfig('.json', '[{"ringSize": 4096}]');
    assertConfigError(() => resolve({ configFile: file }), {
      setting: 'configFile',
      value: file,
      source: option('configFile'),
      mentions: ['object of settings at the top level'],
    });
  });
});

describe('precedence', () => {
  test('defaults < file < environment < options, each value reporting its source', () => {
    const file = writeConfig('.json', JSON.stringify({ ringSize: '32KiB', ringsPerThread: 3, maxThreads: 10, logLevel: 'warn' }));
    const { config, sources } = resolve({
      env: { RINGTRACE_CONFIG: file, RINGTRACE_RINGS_PER_THREAD: '5', RINGTRACE_MAX_THREADS: '20' },
      options: { maxThreads: 30 },
    });
    assert.deepEqual(
      [config.policy, config.ringSize, config.logLevel, config.ringsPerThread, config.maxThreads],
      ['drop-oldest', 32768, 'warn', 5, 30],
    );
    assert.deepEqual(sources.policy, { kind: 'default' });
    assert.deepEqual(sources.ringSize, fileKey(file, 'ringSize'));
    assert.deepEqual(sources.logLevel, fileKey(file, 'logLevel'));
    assert.deepEqual(sources.ringsPerThread, env('RINGTRACE_RINGS_PER_THREAD'));
    assert.deepEqual(sources.maxThreads, option('maxThreads'));
    // Thresholds derive from the winning ringsPerThread (K = 4).
    assert.deepEqual([config.pressureSpares, config.recoverySpares], [1, 3]);
  });

  test('an invalid value is reported even when a higher source overrides it', () => {
    assertConfigError(() => resolve({ env: { RINGTRACE_RING_SIZE: '65000' }, options: { ringSize: 65536 } }), {
      setting: 'ringSize',
      value: '65000',
      source: env('RINGTRACE_RING_SIZE'),
    });
  });
});

describe('rejected values', () => {
  type Case = [setting: string, value: unknown, allowed: RegExp];
  const cases: Case[] = [
    ['path', '', /non-empty file path/],
    ['path', 'a\0b', /file path/],
    ['ringSize', '65000', /power of two between 4 KiB and 16 MiB/],
    ['ringSize', '64kb junk', /power of two/],
    ['ringSize', '2KiB', /between 4 KiB and 16 MiB/],
    ['ringSize', '32MiB', /between 4 KiB and 16 MiB/],
    ['ringSize', 65536.5, /power of two/],
    ['ringSize', true, /power of two/],
    ['ringsPerThread', '1', /integer between 2 and 64/],
    ['ringsPerThread', 65, /integer between 2 and 64/],
    ['ringsPerThread', '4.0', /integer/],
    ['ringsPerThread', 'four', /integer/],
    ['ringsPerThread', 2.5, /integer/],
    ['maxThreads', 0, /between 1 and 1024/],
    ['maxThreads', '1025', /between 1 and 1024/],
    ['policy', 'drop-random', /"drop-oldest" or "drop-newest"/],
    ['policy', 'DROP-OLDEST', /"drop-oldest" or "drop-newest"/],
    ['pressureSpares', -1, /integer >= 0/],
    ['recoverySpares', '0', /greater than pressureSpares/],
    ['stabilityMs', 'soon', /duration between 0 and 1 h/],
    ['stabilityMs', '2h', /250ms, 1.5s/],
    ['stabilityMs', '2m1ms', /duration/],
    ['flushIntervalMs', '1.5ms', /whole milliseconds/],
    ['flushIntervalMs', '61m', /0 \(disabled\) and 1 h/],
    ['dropLogIntervalMs', -1, /duration/],
    ['dropLogEvery', 0, /integer >= 1/],
    ['logLevel', 'verbose', /"debug", "info", "warn", "error", "silent"/],
    ['closeTimeoutMs', '1 s x', /duration/],
    ['drainBatchRings', 0, /between 1 and 1024/],
    ['drainBatchRings', 1025, /between 1 and 1024/],
    ['drainIdleMs', 0, /between 1 ms and 1 s/],
    ['drainIdleMs', '2s', /between 1 ms and 1 s/],
    ['exitHooks', 'maybe', /true\/false, 1\/0, yes\/no or on\/off/],
    ['exitHooks', 2, /boolean/],
    ['exitHooks', null, /boolean/],
  ];
  for (const [setting, value, allowed] of cases) {
    test(`${setting} = ${JSON.stringify(value)}`, () => {
      const err = assertConfigError(() => resolve({ options: { [setting]: value } }), {
        setting,
        value,
        source: option(setting),
      });
      assert.match(err.allowed, allowed);
    });
  }

  test('the message reads as documented', () => {
    const err = assertConfigError(() => resolve({ env: { RINGTRACE_RING_SIZE: '65000' } }), {
      setting: 'ringSize',
      value: '65000',
      source: env('RINGTRACE_RING_SIZE'),
    });
    assert.equal(
      err.message,
      'ringtrace config: ringSize = "65000" from env RINGTRACE_RING_SIZE is invalid: ' +
        'must be a power of two between 4 KiB and 16 MiB (e.g. 64KiB)',
    );
  });

  test('a bad policy from the environment', () => {
    assertConfigError(() => resolve({ env: { RINGTRACE_POLICY: 'drop-all' } }), {
      setting: 'policy',
      value: 'drop-all',
      source: env('RINGTRACE_POLICY'),
      mentions: ['drop-oldest'],
    });
  });

  test('a bad sampling setting from the environment', () => {
    assertConfigError(() => resolve({ env: { RINGTRACE_SAMPLING: 'sometimes' } }), {
      setting: 'sampling',
      value: 'sometimes',
      source: env('RINGTRACE_SAMPLING'),
    });
    assertConfigError(() => resolve({ env: { RINGTRACE_SAMPLING_MAX_EVERY: '1' } }), {
      setting: 'samplingMaxEvery',
      value: '1',
      source: env('RINGTRACE_SAMPLING_MAX_EVERY'),
      mentions: ['between 2 and 1024'],
    });
    assertConfigError(() => resolve({ env: { RINGTRACE_ADAPTIVE_THRESHOLDS: 'sometimes' } }), {
      setting: 'adaptiveThresholds',
      value: 'sometimes',
      source: env('RINGTRACE_ADAPTIVE_THRESHOLDS'),
      mentions: ['boolean'],
    });
    assertConfigError(() => resolve({ env: { RINGTRACE_PREDICTIVE_HORIZON_MS: '2min' } }), {
      setting: 'predictiveHorizonMs',
      value: '2min',
      source: env('RINGTRACE_PREDICTIVE_HORIZON_MS'),
      mentions: ['between 0 (disabled) and 1 min'],
    });
  });

  test('a bad boolean from the environment', () => {
    assertConfigError(() => resolve({ env: { RINGTRACE_EXIT_HOOKS: 'nope' } }), {
      setting: 'exitHooks',
      value: 'nope',
      source: env('RINGTRACE_EXIT_HOOKS'),
    });
  });
});

describe('spare-ring thresholds', () => {
  test('pressureSpares must be less than recoverySpares', () => {
    assertConfigError(() => resolve({ options: { pressureSpares: 1, criticalReserveRings: 2 } }), {
      setting: 'criticalReserveRings',
      value: 2,
      source: { kind: 'option', key: 'criticalReserveRings' },
      mentions: ['at most pressureSpares (1)'],
    });
    // The default reserve is one ring within the pressure threshold, none when that is 0.
    assert.equal(resolve({ options: { pressureSpares: 0 } }).config.criticalReserveRings, 0);
    assert.equal(resolve({ options: { ringsPerThread: 2 } }).config.criticalReserveRings, 0);
    assertConfigError(() => resolve({ env: { RINGTRACE_PRESSURE_SPARES: '2', RINGTRACE_RECOVERY_SPARES: '2' } }), {
      setting: 'pressureSpares',
      value: 2,
      source: env('RINGTRACE_PRESSURE_SPARES'),
      mentions: ['pressureSpares (2) must be less than recoverySpares (2)', 'ringsPerThread - 1 = 7'],
    });
  });

  test('a recoverySpares at or below the default pressureSpares is blamed on recoverySpares', () => {
    assertConfigError(() => resolve({ options: { recoverySpares: 2 } }), {
      setting: 'recoverySpares',
      value: 2,
      source: option('recoverySpares'),
      mentions: ['pressureSpares (2) must be less than recoverySpares (2)'],
    });
  });

  test('recoverySpares cannot exceed the spare count', () => {
    assertConfigError(() => resolve({ options: { recoverySpares: 8 } }), {
      setting: 'recoverySpares',
      value: 8,
      source: option('recoverySpares'),
      mentions: ['recoverySpares (8) must be at most the number of spare rings (7', 'ringsPerThread 8 from default'],
    });
  });

  test('a pressureSpares that leaves no room for recovery is blamed on pressureSpares', () => {
    const file = writeConfig('.toml', 'rings_per_thread = 3\npressure_spares = 2\n');
    assertConfigError(() => resolve({ configFile: file }), {
      setting: 'pressureSpares',
      value: 2,
      source: fileKey(file, 'pressure_spares'),
      // The derived recoverySpares (pressureSpares + 1) is what does not fit.
      mentions: [`recoverySpares (3) must be at most the number of spare rings (2`],
    });
  });
});

describe('shared memory limit', () => {
  test('maxThreads * ringsPerThread * ringSize must stay below 2 GiB - 64 MiB', () => {
    // 992 * 2 * 1 MiB is exactly 1984 MiB: rejected; one thread fewer fits.
    const ok = resolve({ options: { maxThreads: 991, ringsPerThread: 2, ringSize: '1MiB' } });
    assert.equal(ok.config.maxThreads, 991);
    assertConfigError(() => resolve({ env: { RINGTRACE_MAX_THREADS: '992' }, options: { ringsPerThread: 2, ringSize: '1MiB' } }), {
      setting: 'maxThreads * ringsPerThread * ringSize',
      value: 992 * 2 * 1048576,
      source: option('ringsPerThread'),
      mentions: [
        'maxThreads 992 (env RINGTRACE_MAX_THREADS) * ringsPerThread 2 (option ringsPerThread) * ringSize 1 MiB (option ringSize) = 1984 MiB',
        'must be less than 1984 MiB',
        'lower maxThreads, ringsPerThread or ringSize',
      ],
    });
  });

  test('the largest geometry is rejected and blamed on the most specific source', () => {
    assertConfigError(
      () =>
        resolve({
          env: { RINGTRACE_MAX_THREADS: '1024', RINGTRACE_RINGS_PER_THREAD: '64' },
          options: { ringSize: '16MiB' },
        }),
      {
        setting: 'maxThreads * ringsPerThread * ringSize',
        value: 2 ** 40,
        source: option('ringSize'),
        mentions: ['= 1024 GiB of rings'],
      },
    );
  });
});

describe('display', () => {
  test('describeSource covers every kind', () => {
    assert.equal(describeSource({ kind: 'default' }), 'default');
    assert.equal(describeSource(env('RINGTRACE_RING_SIZE')), 'env RINGTRACE_RING_SIZE');
    assert.equal(describeSource(fileKey('/x/y.toml', 'ringSize')), 'file /x/y.toml key ringSize');
    assert.equal(describeSource(option('ringSize')), 'option ringSize');
  });

  test('formatConfig shows every setting with its value and source', () => {
    const table = formatConfig(
      resolve({ env: { RINGTRACE_RING_SIZE: '4KiB', RINGTRACE_FLUSH_INTERVAL: '0' }, options: { ringSize: 1048576 } }),
    );
    const lines = table.split('\n');
    assert.equal(lines.length, 1 + 21);
    assert.match(lines[0], /^setting\s+value\s+source$/);
    assert.match(table, /^path\s+\(temp file\)\s+default$/m);
    assert.match(table, /^ringSize\s+1 MiB\s+option ringSize$/m);
    assert.match(table, /^flushIntervalMs\s+0 \(disabled\)\s+env RINGTRACE_FLUSH_INTERVAL$/m);
    assert.match(table, /^stabilityMs\s+250 ms\s+default$/m);
    assert.match(table, /^policy\s+drop-oldest\s+default$/m);
    assert.match(table, /^exitHooks\s+true\s+default$/m);
    assert.match(table, /^sampling\s+false\s+default$/m);
    assert.match(table, /^samplingMaxEvery\s+64\s+default$/m);
    assert.match(table, /^adaptiveThresholds\s+false\s+default$/m);
    assert.match(table, /^predictiveHorizonMs\s+0 \(disabled\)\s+default$/m);
    // Columns line up.
    const valueColumn = lines[0].indexOf('value');
    for (const line of lines) assert.equal(/^\S+\s+/.exec(line)?.[0].length, valueColumn, line);
  });

  test('formatConfig shows a set path and small ring sizes in KiB', () => {
    const table = formatConfig(resolve({ options: { path: '/tmp/t.rt', ringSize: 4096 } }));
    assert.match(table, /^path\s+\/tmp\/t\.rt\s+option path$/m);
    assert.match(table, /^ringSize\s+4 KiB\s+option ringSize$/m);
  });
});
