/** ringtrace: a lock-free, per-thread event tracer for Node.js with exact loss accounting. */
export { Tracer, type TracerOptions, type TracerHandle, type RegisterOptions, type CloseSummary } from './tracer.js';
export { Writer } from './record/writer.js';
export { openTrace, TraceReader, TraceFormatError } from './file/reader.js';
export type {
  TraceEvent,
  TraceDrop,
  TraceThread,
  TraceStateChange,
  TraceSummary,
  ThreadSummary,
  ScaledCounts,
  TraceDamage,
  ChunkGap,
} from './file/reader.js';
export { ConfigError, resolveConfig, type TracerConfig, type DropPolicy, type ResolvedConfig, type ConfigSource } from './config.js';
export { CapacityError } from './shm/registry.js';
export { NameTableFullError } from './shm/names.js';
export { PRIORITIES, REASONS, type DropReason, type Priority, type PriorityCounts } from './shm/layout.js';
export { STATE_NAMES, type StateName } from './shm/backpressure.js';
export type { MetricsSnapshot, ThreadMetrics } from './metrics/metrics.js';
export type { DrainSummary } from './drain/drain.js';
export type { RegistrationSummary } from './metrics/metrics.js';
export type { Logger, LogEntry } from './logger.js';
