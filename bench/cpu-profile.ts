/**
 * One load of the `cpu` section, tracing on, alone: for profiling the whole process.
 *
 *   node --cpu-prof --cpu-prof-dir prof dist/bench/cpu-profile.js 300k 10
 *   node bench/v8/profile-summary.mjs prof
 *
 * Loads: idle, 30k, 300k (events/s); seconds measured after a 1 s warm-up (default 10).
 * --cpu-prof writes one profile per thread (the main thread and the drain worker).
 */
import { cleanupTemp } from './common.js';
import { LOADS, measureLoad } from './cpu.js';

const [which = '300k', secs = '10'] = process.argv.slice(2);
const load = LOADS.find((l) => l.name.startsWith(which === 'idle' ? 'idle' : `${which} `));
if (!load) throw new Error(`unknown load ${which}; choose from idle, 30k, 300k`);
try {
  const s = await measureLoad(load, true, Number(secs));
  console.log(JSON.stringify({ load: load.name, ...s }));
} finally {
  cleanupTemp();
}
