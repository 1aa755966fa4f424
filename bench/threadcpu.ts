/**
 * Per-thread CPU time on Linux, from /proc/self/task/<tid>/schedstat (first field: ns on a CPU).
 * `process.cpuUsage()` sums every thread of the process; these split it into the main thread,
 * the drain worker's thread (found as the threads that appear while a tracer opens) and the rest.
 * Elsewhere (no /proc) every function returns undefined / [] and the benchmarks report totals only.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** CPU time of one thread of this process in ns, or undefined when it cannot be read. */
export function threadCpuNs(tid: number): number | undefined {
  try {
    const s = readFileSync(`/proc/self/task/${tid}/schedstat`, 'latin1');
    const ns = Number(s.slice(0, s.indexOf(' ')));
    return Number.isFinite(ns) ? ns : undefined;
  } catch {
    return undefined;
  }
}

/** The main thread's CPU time in ns (its tid is the pid). */
export const mainThreadCpuNs = (): number | undefined => threadCpuNs(process.pid);

/** The ids of this process's threads ([] without /proc). */
export function threadIds(): number[] {
  try {
    return readdirSync('/proc/self/task').map(Number);
  } catch {
    return [];
  }
}

/** Sum of the CPU time of these threads (threads that have exited count 0). */
export function threadsCpuNs(tids: number[]): number {
  let n = 0;
  for (const t of tids) n += threadCpuNs(t) ?? 0;
  return n;
}

/** Process CPU (all threads, user + system) in microseconds. */
export function processCpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}
