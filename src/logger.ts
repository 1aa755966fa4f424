/**
 * Monitoring output: state changes and drop summaries, produced by the drain (never on a
 * recording thread) and delivered to the tracer's logger on the thread that opened the tracer.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
/** The `logLevel` setting: the least severe level delivered, or nothing at all. */
export type LogThreshold = LogLevel | 'silent';

export interface LogEntry {
  time: string;
  level: LogLevel;
  msg: string;
  [field: string]: unknown;
}

export type Logger = (entry: LogEntry) => void;

const RANK: Record<LogThreshold, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

/** The default logger: one JSON line per message on stderr (from `logLevel` warn up by default). */
export const jsonStderrLogger: Logger = (entry) => {
  process.stderr.write(JSON.stringify(entry) + '\n');
};

/** Wraps a logger with a level filter and fills in time and the `ringtrace` tag. */
export function leveled(logger: Logger, minimum: LogThreshold): (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void {
  const floor = RANK[minimum];
  return (level, msg, fields) => {
    if (RANK[level] < floor) return;
    logger({ time: new Date().toISOString(), level, msg: `ringtrace: ${msg}`, ...fields });
  };
}
