/**
 * Tracer configuration: defaults, an optional JSON/TOML config file, `RINGTRACE_*` environment
 * variables and the `Tracer.open` options object, merged in that order of precedence (later wins)
 * and validated with zod. Every resolved value remembers where it came from, so errors and
 * `ringtrace config` can point at the exact variable, file key or option to change.
 *
 * Nothing is repaired: a value that is not exactly valid (ringSize 65000, "64kb junk", an unknown
 * key or variable) is a ConfigError, never rounded, trimmed or ignored.
 * See docs/design/configuration.md.
 */
import { readFileSync } from 'node:fs';
import { extname, resolve } from 'node:path';
import { inspect } from 'node:util';
import { parse as parseToml, TomlError } from 'smol-toml';
import { z } from 'zod';
import { MAX_RING_SIZE, MAX_RINGS_PER_THREAD, MIN_RING_SIZE, POLICIES, type DropPolicy } from './shm/layout.js';
import type { LogThreshold } from './logger.js';

export type { DropPolicy } from './shm/layout.js';

export interface TracerConfig {
  /** Trace file path; undefined = the caller decides (a temp file). */
  path: string | undefined;
  /** Bytes per ring; a power of two, 4 KiB ..= 16 MiB. */
  ringSize: number;
  /** Rings per thread: 1 active + K = ringsPerThread - 1 spares; 2 ..= 64. */
  ringsPerThread: number;
  maxThreads: number;
  policy: DropPolicy;
  /** Enter PRESSURE when free spare rings <= this. */
  pressureSpares: number;
  /** DROPPING->RECOVERY and PRESSURE->NORMAL when free spare rings >= this. */
  recoverySpares: number;
  /** The last this many spare rings are kept for critical events (while any name is critical). */
  criticalReserveRings: number;
  /** Outside NORMAL, keep 1 in N normal events (N adapted at each ring swap) instead of all of them
   * until the pool runs out (docs/design/backpressure.md, "Sampling under pressure"). */
  sampling: boolean;
  /** The largest N sampling may use. */
  samplingMaxEvery: number;
  /** Raise a thread's PRESSURE mark with its measured ring service time while its spares are going
   * (bounded; see docs/design/backpressure.md, "Adaptive marks and predictive entry"). */
  adaptiveThresholds: boolean;
  /** Enter PRESSURE when the spares are forecast to run out within this many ms; 0 disables. */
  predictiveHorizonMs: number;
  /** RECOVERY->NORMAL after this many ms without exhaustion. */
  stabilityMs: number;
  /** Periodic flush of a thread's partial ring, ms; 0 disables. */
  flushIntervalMs: number;
  /** Drop summary log at most once per interval, ms... */
  dropLogIntervalMs: number;
  /** ...and only after this many new drops. */
  dropLogEvery: number;
  logLevel: LogThreshold;
  /** How long close() waits for writers in other threads, ms. */
  closeTimeoutMs: number;
  /** Max rings the drain takes from one thread per visit. */
  drainBatchRings: number;
  /** The longest the drain sleeps when nothing is due and no writer wakes it, ms. */
  drainIdleMs: number;
  /** Install process exit/signal hooks. */
  exitHooks: boolean;
}

type Key = keyof TracerConfig;

export type ConfigSource =
  { kind: 'default' } | { kind: 'file'; file: string; key: string } | { kind: 'env'; name: string } | { kind: 'option'; key: string };

export interface ResolvedConfig {
  config: TracerConfig;
  sources: Record<Key, ConfigSource>;
}

export interface ResolveInput {
  /** The `Tracer.open` options; `undefined` values count as not given. */
  options?: Partial<Record<Key, unknown>>;
  /** Defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Defaults to env.RINGTRACE_CONFIG; no file when neither is set. */
  configFile?: string;
}

/** Environment variable naming the config file. */
export const CONFIG_FILE_ENV = 'RINGTRACE_CONFIG';

export function describeSource(s: ConfigSource): string {
  switch (s.kind) {
    case 'default':
      return 'default';
    case 'file':
      return `file ${s.file} key ${s.key}`;
    case 'env':
      return `env ${s.name}`;
    case 'option':
      return `option ${s.key}`;
  }
}

/** Strings are shown JSON-quoted so `"65000"` (from env or a file) differs from `65000`. */
const showValue = (v: unknown): string => (typeof v === 'string' ? JSON.stringify(v) : inspect(v, { breakLength: Infinity }));

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  /** The setting, or for an unknown key the key or variable as written. */
  readonly setting: string;
  readonly value: unknown;
  readonly source: ConfigSource;
  /** What would have been accepted, phrased "must ...". */
  readonly allowed: string;

  constructor(init: {
    setting: string;
    value: unknown;
    source: ConfigSource;
    allowed: string;
    /** What is wrong, when `allowed` alone does not say it (unknown key, conflicting values). */
    problem?: string;
    cause?: unknown;
  }) {
    const { setting, value, source, allowed, problem } = init;
    super(
      `ringtrace config: ${setting} = ${showValue(value)} from ${describeSource(source)} is invalid: ` +
        `${problem === undefined ? '' : `${problem}; `}${allowed}`,
      init.cause === undefined ? undefined : { cause: init.cause },
    );
    this.setting = setting;
    this.value = value;
    this.source = source;
    this.allowed = allowed;
  }
}

// ---------------------------------------------------------------------------------------------
// Value syntax

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** K and M are binary (1024), like KiB and MiB: ring sizes are powers of two. */
const SIZE_UNITS = new Map([
  ['', 1],
  ['b', 1],
  ['k', KiB],
  ['kb', KiB],
  ['kib', KiB],
  ['m', MiB],
  ['mb', MiB],
  ['mib', MiB],
]);
const DURATION_UNITS = new Map([
  ['', 1],
  ['ms', 1],
  ['s', 1000],
  ['m', 60_000],
]);
/** A decimal number, optionally one space, then an optional unit; nothing else (no padding). */
const QUANTITY = /^(\d+(?:\.\d+)?) ?([a-z]*)$/i;

/**
 * `digits * unit` computed on integers, so "1.001s" is exactly 1001 and "0.1s" exactly 100
 * (binary floating point would give 1000.9999999999999 and reject it as not a whole ms).
 */
function scaleDecimal(digits: string, unit: number): number {
  const [whole, fraction = ''] = digits.split('.');
  return (Number(whole + fraction) * unit) / 10 ** fraction.length;
}

function parseQuantity(text: string, units: Map<string, number>): number | undefined {
  const m = QUANTITY.exec(text);
  if (m === null) return undefined;
  const unit = units.get(m[2].toLowerCase());
  return unit === undefined ? undefined : scaleDecimal(m[1], unit);
}

/**
 * Bytes from a number or a string like "65536", "64KiB", "1 MiB", "1.5M". Units (case-insensitive):
 * B; K, KB, KiB = 1024; M, MB, MiB = 1024 * 1024.
 */
export function parseSize(text: string | number): number {
  const bytes =
    typeof text === 'number'
      ? text
      : (parseQuantity(text, SIZE_UNITS) ??
        fail(
          `invalid size ${JSON.stringify(text)}: expected a number of bytes, optionally followed by ` +
            'one of the units B, K, KB, KiB, M, MB, MiB (e.g. 65536, 64KiB, 1 MiB)',
        ));
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    fail(`invalid size ${showValue(text)}: must be a whole, non-negative number of bytes`);
  }
  return bytes;
}

/** Milliseconds from a number or a string like "250", "250ms", "1s", "1.5s", "2m". */
export function parseDuration(text: string | number): number {
  const ms =
    typeof text === 'number'
      ? text
      : (parseQuantity(text, DURATION_UNITS) ??
        fail(
          `invalid duration ${JSON.stringify(text)}: expected a number of milliseconds, optionally ` +
            'followed by one of the units ms, s, m (e.g. 250, 250ms, 1.5s)',
        ));
  if (!Number.isFinite(ms) || ms < 0) {
    fail(`invalid duration ${showValue(text)}: must be a finite, non-negative number of milliseconds`);
  }
  return ms;
}

function parseInteger(text: string | number): number {
  if (typeof text === 'number') return text;
  if (!/^\d+$/.test(text)) fail(`invalid integer ${JSON.stringify(text)}`);
  return Number(text);
}

const BOOLEAN_WORDS = new Map([
  ['true', true],
  ['1', true],
  ['yes', true],
  ['on', true],
  ['false', false],
  ['0', false],
  ['no', false],
  ['off', false],
]);

function fail(message: string): never {
  throw new Error(message);
}

// ---------------------------------------------------------------------------------------------
// Schemas: one per setting. Each accepts what a file, the environment or code can hold (strings
// everywhere; numbers and booleans from JSON, TOML and options) and outputs the typed value.

/** Runs a text parser inside zod, turning its exception into an issue. */
const parsedWith = (parse: (v: string | number) => number) =>
  z.union([z.number(), z.string()]).transform((v, ctx) => {
    try {
      return parse(v);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
      return z.NEVER;
    }
  });

const integer = (min: number, max: number) => parsedWith(parseInteger).pipe(z.number().int().min(min).max(max));

const durationMs = (min: number, max: number) => parsedWith(parseDuration).pipe(z.number().int().min(min).max(max));

const ringSizeSchema = parsedWith(parseSize).pipe(
  z
    .number()
    .min(MIN_RING_SIZE)
    .max(MAX_RING_SIZE)
    .refine((n) => (n & (n - 1)) === 0, 'not a power of two'),
);

const booleanSchema = z.union([z.boolean(), z.number(), z.string()]).transform((v, ctx) => {
  const b = typeof v === 'boolean' ? v : BOOLEAN_WORDS.get(String(v).toLowerCase());
  if (b === undefined) {
    ctx.addIssue({ code: 'custom', message: 'not a boolean' });
    return z.NEVER;
  }
  return b;
});

interface Setting<T> {
  schema: z.ZodType<T>;
  allowed: string;
  /** Environment variables, preferred name first. */
  env: string[];
  /** How `formatConfig` shows the value. */
  show?: (v: T) => string;
}

const MAX_SPARES = MAX_RINGS_PER_THREAD - 1;
/** Upper bound for durations: long enough for any sane use, small enough for setTimeout. */
const MAX_DURATION_MS = 3_600_000;
const DURATION_FORMS = 'whole milliseconds, e.g. 250, 250ms, 1.5s, 1m';
const showMs = (ms: number): string => `${ms} ms`;

const SETTINGS: { [K in Key]: Setting<TracerConfig[K]> } = {
  path: {
    schema: z
      .string()
      .min(1)
      .refine((p) => !p.includes('\0')),
    allowed: 'must be a non-empty file path',
    env: ['RINGTRACE_PATH'],
    show: (p) => p ?? '(temp file)',
  },
  ringSize: {
    schema: ringSizeSchema,
    allowed: `must be a power of two between 4 KiB and 16 MiB (e.g. 64KiB)`,
    env: ['RINGTRACE_RING_SIZE'],
    show: (n) => formatBytes(n),
  },
  ringsPerThread: {
    schema: integer(2, MAX_RINGS_PER_THREAD),
    allowed: `must be an integer between 2 and ${MAX_RINGS_PER_THREAD}`,
    env: ['RINGTRACE_RINGS_PER_THREAD'],
  },
  maxThreads: {
    schema: integer(1, 1024),
    allowed: 'must be an integer between 1 and 1024',
    env: ['RINGTRACE_MAX_THREADS'],
  },
  policy: {
    schema: z.enum(POLICIES),
    allowed: 'must be "drop-oldest" or "drop-newest"',
    env: ['RINGTRACE_POLICY'],
  },
  // The ranges here only bound what any ringsPerThread allows; the checks against the actual
  // spare count and against each other are in checkThresholds, which can name both values.
  pressureSpares: {
    schema: integer(0, MAX_SPARES - 1),
    allowed: 'must be an integer >= 0 and less than recoverySpares',
    env: ['RINGTRACE_PRESSURE_SPARES'],
  },
  recoverySpares: {
    schema: integer(1, MAX_SPARES),
    allowed: 'must be an integer greater than pressureSpares and at most ringsPerThread - 1',
    env: ['RINGTRACE_RECOVERY_SPARES'],
  },
  criticalReserveRings: {
    schema: integer(0, MAX_SPARES - 1),
    allowed: 'must be an integer >= 0 and at most pressureSpares',
    env: ['RINGTRACE_CRITICAL_RESERVE_RINGS'],
  },
  sampling: {
    schema: booleanSchema,
    allowed: 'must be a boolean: true/false, 1/0, yes/no or on/off',
    env: ['RINGTRACE_SAMPLING'],
    show: String,
  },
  samplingMaxEvery: {
    schema: integer(2, 1024),
    allowed: 'must be an integer between 2 and 1024',
    env: ['RINGTRACE_SAMPLING_MAX_EVERY'],
  },
  adaptiveThresholds: {
    schema: booleanSchema,
    allowed: 'must be a boolean: true/false, 1/0, yes/no or on/off',
    env: ['RINGTRACE_ADAPTIVE_THRESHOLDS'],
    show: String,
  },
  predictiveHorizonMs: {
    schema: durationMs(0, 60_000),
    allowed: `must be a duration between 0 (disabled) and 1 min in ${DURATION_FORMS}`,
    env: ['RINGTRACE_PREDICTIVE_HORIZON', 'RINGTRACE_PREDICTIVE_HORIZON_MS'],
    show: (ms) => (ms === 0 ? '0 (disabled)' : showMs(ms)),
  },
  stabilityMs: {
    schema: durationMs(0, MAX_DURATION_MS),
    allowed: `must be a duration between 0 and 1 h in ${DURATION_FORMS}`,
    env: ['RINGTRACE_STABILITY_MS', 'RINGTRACE_STABILITY'],
    show: showMs,
  },
  flushIntervalMs: {
    schema: durationMs(0, MAX_DURATION_MS),
    allowed: `must be a duration between 0 (disabled) and 1 h in ${DURATION_FORMS}`,
    env: ['RINGTRACE_FLUSH_INTERVAL', 'RINGTRACE_FLUSH_INTERVAL_MS'],
    show: (ms) => (ms === 0 ? '0 (disabled)' : showMs(ms)),
  },
  dropLogIntervalMs: {
    schema: durationMs(0, MAX_DURATION_MS),
    allowed: `must be a duration between 0 and 1 h in ${DURATION_FORMS}`,
    env: ['RINGTRACE_DROP_LOG_INTERVAL', 'RINGTRACE_DROP_LOG_INTERVAL_MS'],
    show: showMs,
  },
  dropLogEvery: {
    schema: integer(1, Number.MAX_SAFE_INTEGER),
    allowed: 'must be an integer >= 1',
    env: ['RINGTRACE_DROP_LOG_EVERY'],
  },
  logLevel: {
    schema: z.enum(['debug', 'info', 'warn', 'error', 'silent']),
    allowed: 'must be one of "debug", "info", "warn", "error", "silent"',
    env: ['RINGTRACE_LOG_LEVEL'],
  },
  closeTimeoutMs: {
    schema: durationMs(0, MAX_DURATION_MS),
    allowed: `must be a duration between 0 and 1 h in ${DURATION_FORMS}`,
    env: ['RINGTRACE_CLOSE_TIMEOUT', 'RINGTRACE_CLOSE_TIMEOUT_MS'],
    show: showMs,
  },
  drainBatchRings: {
    schema: integer(1, 1024),
    allowed: 'must be an integer between 1 and 1024',
    env: ['RINGTRACE_DRAIN_BATCH_RINGS'],
  },
  drainIdleMs: {
    schema: durationMs(1, 1000),
    allowed: `must be a duration between 1 ms and 1 s in ${DURATION_FORMS}`,
    env: ['RINGTRACE_DRAIN_IDLE', 'RINGTRACE_DRAIN_IDLE_MS'],
    show: showMs,
  },
  exitHooks: {
    schema: booleanSchema,
    allowed: 'must be a boolean: true/false, 1/0, yes/no or on/off',
    env: ['RINGTRACE_EXIT_HOOKS'],
    show: String,
  },
};

const KEYS = Object.keys(SETTINGS) as Key[];

/** Pressure sampling's default (docs/design/configuration.md gives the measurement behind it). */
const SAMPLING_DEFAULT = false;
/** Adaptive and predictive pressure defaults (docs/design/configuration.md: the measurement). */
const ADAPTIVE_DEFAULT = false;
const PREDICTIVE_HORIZON_DEFAULT_MS = 0;

export const DEFAULTS: Omit<TracerConfig, 'pressureSpares' | 'recoverySpares' | 'criticalReserveRings'> = Object.freeze({
  path: undefined,
  ringSize: 256 * KiB,
  ringsPerThread: 8,
  maxThreads: 64,
  policy: 'drop-oldest',
  sampling: SAMPLING_DEFAULT,
  samplingMaxEvery: 64,
  adaptiveThresholds: ADAPTIVE_DEFAULT,
  predictiveHorizonMs: PREDICTIVE_HORIZON_DEFAULT_MS,
  stabilityMs: 250,
  flushIntervalMs: 1000,
  dropLogIntervalMs: 1000,
  dropLogEvery: 1,
  /** Quiet on a healthy run: drops (state DROPPING, drop summaries) and failures only. */
  logLevel: 'warn',
  closeTimeoutMs: 1000,
  drainBatchRings: 8,
  drainIdleMs: 1000,
  exitHooks: true,
});

export const ENV_VARS: Record<Key, string[]> = Object.fromEntries(KEYS.map((k) => [k, [...SETTINGS[k].env]])) as Record<Key, string[]>;

/** Environment variable -> setting. */
const ENV_LOOKUP = new Map(KEYS.flatMap((k) => SETTINGS[k].env.map((name) => [name, k] as const)));

const snakeCase = (k: string): string => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
/** Config file key (camelCase or snake_case, in both formats) -> setting. */
const FILE_KEY_LOOKUP = new Map(KEYS.flatMap((k) => [[k, k] as const, [snakeCase(k), k] as const]));

// ---------------------------------------------------------------------------------------------
// Sources

interface Given<T> {
  value: T;
  source: ConfigSource;
}
/** The settings one source sets, already validated. */
type Layer = { [K in Key]?: Given<TracerConfig[K]> };

function validate<K extends Key>(key: K, value: unknown, source: ConfigSource): TracerConfig[K] {
  const { schema, allowed } = SETTINGS[key];
  const result = schema.safeParse(value);
  if (!result.success) throw new ConfigError({ setting: key, value, source, allowed });
  return result.data;
}

function set<K extends Key>(layer: Layer, key: K, value: unknown, source: ConfigSource): void {
  const previous = layer[key];
  if (previous !== undefined) {
    // Two spellings of one setting (RINGTRACE_STABILITY and RINGTRACE_STABILITY_MS, ringSize and
    // ring_size): which one was meant is a guess, so refuse rather than pick one.
    throw new ConfigError({
      setting: key,
      value,
      source,
      problem: `${describeSource(previous.source)} sets it too`,
      allowed: 'must be set only once per source',
    });
  }
  // The cast only works around TypeScript not relating a write through a mapped type with a
  // generic key; the value is exactly Given<TracerConfig[K]>.
  layer[key] = { value: validate(key, value, source), source } as Layer[K];
}

function fileLayer(configFile: string, fileSource: ConfigSource): Layer {
  const file = resolve(configFile);
  const fileError = (problem: string, cause?: unknown) =>
    new ConfigError({
      setting: 'configFile',
      value: configFile,
      source: fileSource,
      problem,
      allowed: 'must be a readable .json or .toml file of settings',
      cause,
    });

  const format = extname(file).toLowerCase();
  if (format !== '.json' && format !== '.toml') throw fileError('unknown file type');
  let text: string;
  try {
    // A byte order mark is an encoding artefact some editors add, not content.
    text = readFileSync(file, 'utf8').replace(/^\uFEFF/, '');
  } catch (e) {
    throw fileError(`cannot read it (${(e as Error).message})`, e);
  }

  let data: unknown;
  try {
    data = format === '.json' ? JSON.parse(text) : parseToml(text);
  } catch (e) {
    const where = e instanceof TomlError ? ` at line ${e.line}, column ${e.column}` : '';
    // smol-toml appends a code excerpt after a blank line; keep the message to one line.
    const message = (e as Error).message.split('\n')[0];
    throw fileError(`${format.slice(1).toUpperCase()} syntax error in ${file}${where}: ${message}`, e);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw fileError(`${file} must contain an object of settings at the top level`);
  }

  const layer: Layer = {};
  for (const [name, value] of Object.entries(data)) {
    const source: ConfigSource = { kind: 'file', file, key: name };
    const key = FILE_KEY_LOOKUP.get(name);
    if (key === undefined) {
      throw new ConfigError({
        setting: name,
        value,
        source,
        problem: `unknown key in ${file}`,
        allowed: `must be one of ${KEYS.join(', ')} (or the snake_case form, e.g. ring_size)`,
      });
    }
    set(layer, key, value, source);
  }
  return layer;
}

function envLayer(env: NodeJS.ProcessEnv): Layer {
  const layer: Layer = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('RINGTRACE_') || name === CONFIG_FILE_ENV || value === undefined) continue;
    const source: ConfigSource = { kind: 'env', name };
    const key = ENV_LOOKUP.get(name);
    if (key === undefined) {
      throw new ConfigError({
        setting: name,
        value,
        source,
        problem: 'unknown environment variable',
        allowed: `must be one of ${[CONFIG_FILE_ENV, ...ENV_LOOKUP.keys()].join(', ')}`,
      });
    }
    set(layer, key, value, source);
  }
  return layer;
}

function optionsLayer(options: Partial<Record<Key, unknown>>): Layer {
  const layer: Layer = {};
  for (const [name, value] of Object.entries(options)) {
    if (value === undefined) continue;
    const source: ConfigSource = { kind: 'option', key: name };
    if (!Object.hasOwn(SETTINGS, name)) {
      throw new ConfigError({
        setting: name,
        value,
        source,
        problem: 'unknown option',
        allowed: `must be one of ${KEYS.join(', ')}`,
      });
    }
    set(layer, name as Key, value, source);
  }
  return layer;
}

// ---------------------------------------------------------------------------------------------
// Resolution

const DEFAULT_SOURCE: ConfigSource = { kind: 'default' };

/**
 * Default spare-ring thresholds for K spares: enter PRESSURE at a third of the spares left
 * (rounded down), leave at two thirds (rounded up), and always at least one ring above the entry
 * point so the two states cannot flap on one ring. Recovery derives from the effective pressure
 * threshold so that setting only pressureSpares keeps a valid pair whenever one exists.
 * The critical reserve is one ring, within the pressure threshold (none when that is 0): the
 * smallest reserve that keeps critical events while everything else is dropped.
 */
function defaultThresholds(spares: number, pressureGiven: number | undefined) {
  const pressureSpares = Math.floor(spares / 3);
  const recoverySpares = Math.max((pressureGiven ?? pressureSpares) + 1, Math.ceil((2 * spares) / 3));
  const criticalReserveRings = Math.min(1, pressureGiven ?? pressureSpares);
  return { pressureSpares, recoverySpares, criticalReserveRings };
}

/** Checks 0 <= pressureSpares < recoverySpares <= K, blaming a value that was set explicitly. */
function checkThresholds({ config, sources }: ResolvedConfig): void {
  const { pressureSpares: p, recoverySpares: r, ringsPerThread } = config;
  const spares = ringsPerThread - 1;
  const explicit = (k: Key) => sources[k].kind !== 'default';
  const error = (setting: 'pressureSpares' | 'recoverySpares', problem: string) =>
    new ConfigError({
      setting,
      value: config[setting],
      source: sources[setting],
      problem,
      allowed: `need 0 <= pressureSpares < recoverySpares <= ringsPerThread - 1 = ${spares} spare rings`,
    });

  // A derived recoverySpares exceeds K only when pressureSpares >= K, so blame pressure then.
  if (r > spares) {
    throw error(
      explicit('recoverySpares') ? 'recoverySpares' : 'pressureSpares',
      `recoverySpares (${r}) must be at most the number of spare rings (${spares}, ` +
        `ringsPerThread ${ringsPerThread} from ${describeSource(sources.ringsPerThread)} minus the active ring)`,
    );
  }
  if (p >= r) {
    throw error(
      explicit('pressureSpares') ? 'pressureSpares' : 'recoverySpares',
      `pressureSpares (${p}) must be less than recoverySpares (${r})`,
    );
  }
  // The reserve is what is left once PRESSURE has begun: non-critical events are dropped only
  // after the thread is in PRESSURE, and leaving DROPPING (at recoverySpares) lifts the reserve.
  const c = config.criticalReserveRings;
  if (c > p) {
    throw new ConfigError({
      setting: 'criticalReserveRings',
      value: c,
      source: sources.criticalReserveRings,
      problem: `criticalReserveRings (${c}) must be at most pressureSpares (${p})`,
      allowed: `need 0 <= criticalReserveRings <= pressureSpares = ${p}`,
    });
  }
}

/**
 * Byte offsets into the shared buffer are 32-bit signed (Int32Array indexing, `>>` on offsets),
 * so the whole buffer must stay below 2 GiB; the 64 MiB margin leaves room for the control block,
 * name table and slot headers that precede the rings.
 */
const MAX_RING_BYTES = 2 ** 31 - 2 ** 26;

function checkMemory({ config, sources }: ResolvedConfig): void {
  const { maxThreads, ringsPerThread, ringSize } = config;
  const total = maxThreads * ringsPerThread * ringSize;
  if (total < MAX_RING_BYTES) return;
  const geometry = ['maxThreads', 'ringsPerThread', 'ringSize'] as const;
  const at = (k: (typeof geometry)[number]) => describeSource(sources[k]);
  // Blame the value from the highest-precedence source: most likely the one just changed.
  const rank = { default: 0, file: 1, env: 2, option: 3 };
  const culprit = geometry.reduce((a, b) => (rank[sources[b].kind] > rank[sources[a].kind] ? b : a));
  throw new ConfigError({
    setting: 'maxThreads * ringsPerThread * ringSize',
    value: total,
    source: sources[culprit],
    problem:
      `maxThreads ${maxThreads} (${at('maxThreads')}) * ringsPerThread ${ringsPerThread} ` +
      `(${at('ringsPerThread')}) * ringSize ${formatBytes(ringSize)} (${at('ringSize')}) ` +
      `= ${formatBytes(total)} of rings`,
    allowed:
      `must be less than ${formatBytes(MAX_RING_BYTES)} (2 GiB minus a 64 MiB margin); ` + 'lower maxThreads, ringsPerThread or ringSize',
  });
}

/**
 * Merges defaults < config file < environment < options and validates the result. Every value
 * given by any source is validated, even one a higher source overrides, so a broken file or
 * variable is reported rather than hidden until the override goes away.
 */
export function resolveConfig(input: ResolveInput = {}): ResolvedConfig {
  const env = input.env ?? process.env;
  const configFile = input.configFile ?? env[CONFIG_FILE_ENV];
  const fileSource: ConfigSource =
    input.configFile !== undefined ? { kind: 'option', key: 'configFile' } : { kind: 'env', name: CONFIG_FILE_ENV };

  const merged: Layer = {
    ...(configFile === undefined ? {} : fileLayer(configFile, fileSource)),
    ...envLayer(env),
    ...optionsLayer(input.options ?? {}),
  };

  const ringsPerThread = merged.ringsPerThread?.value ?? DEFAULTS.ringsPerThread;
  const defaults: TracerConfig = {
    ...DEFAULTS,
    ...defaultThresholds(ringsPerThread - 1, merged.pressureSpares?.value),
  };
  const config = {} as TracerConfig;
  const sources = {} as Record<Key, ConfigSource>;
  const take = <K extends Key>(key: K): void => {
    const given = merged[key];
    config[key] = given === undefined ? defaults[key] : given.value;
    sources[key] = given === undefined ? DEFAULT_SOURCE : given.source;
  };
  KEYS.forEach(take);

  const resolved = { config, sources };
  checkThresholds(resolved);
  checkMemory(resolved);
  return resolved;
}

// ---------------------------------------------------------------------------------------------
// Display

const BYTE_UNITS = [
  ['GiB', GiB],
  ['MiB', MiB],
  ['KiB', KiB],
  ['B', 1],
] as const;

/** The largest unit that shows `n` exactly: "64 KiB", "1984 MiB". */
function formatBytes(n: number): string {
  const [unit, size] = BYTE_UNITS.find(([, size]) => n % size === 0) ?? BYTE_UNITS[3];
  return `${n / size} ${unit}`;
}

/** A table of every setting, its value and where the value came from (`ringtrace config`). */
export function formatConfig(r: ResolvedConfig): string {
  const show = <K extends Key>(key: K): string => {
    const format = SETTINGS[key].show as ((v: TracerConfig[K]) => string) | undefined;
    return format ? format(r.config[key]) : String(r.config[key]);
  };
  const rows = [['setting', 'value', 'source'], ...KEYS.map((k) => [k, show(k), describeSource(r.sources[k])])];
  const widths = [0, 1].map((col) => Math.max(...rows.map((row) => row[col].length)));
  return rows.map(([setting, value, source]) => `${setting.padEnd(widths[0])}  ${value.padEnd(widths[1])}  ${source}`).join('\n');
}
