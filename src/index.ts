/** ringtrace: a lock-free, per-thread event tracer for Node.js with exact loss accounting. */
export { Tracer, type TracerOptions, type TracerHandle, type RegisterOptions, type CloseSummary } from './tracer.js';
export { Writer } from './writer.js';
export { openTrace, TraceReader, TraceFormatError } from './reader.js';
export type { TraceEvent, TraceDrop, TraceThread, TraceStateChange, TraceSummary, ThreadSummary, TraceDamage, ChunkGap } from './reader.js';
export { ConfigError, resolveConfig, type TracerConfig, type DropPolicy, type ResolvedConfig, type ConfigSource } from './config.js';
export { CapacityError } from './registry.js';
export { NameTableFullError } from './names.js';
export { REASONS, type DropReason } from './layout.js';
export { STATE_NAMES, type StateName } from './backpressure.js';
export type { MetricsSnapshot, ThreadMetrics } from './metrics.js';
export type { RegistrationSummary, DrainSummary } from './drain.js';
export type { Logger, LogEntry } from './logger.js';
