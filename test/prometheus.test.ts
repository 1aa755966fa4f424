import assert from 'node:assert/strict';
import { it } from 'node:test';
import { Registry } from 'prom-client';
import { Tracer } from '../src/index.js';
import { registerPrometheus } from '../src/metrics/prometheus.js';
import { tempTrace } from './helpers/scenario.js';

it('exposes per-thread counters, drops by reason and state in Prometheus text format', async () => {
  const tracer = await Tracer.open({
    path: tempTrace('prom'),
    ringSize: '4KiB',
    policy: 'drop-newest',
    logLevel: 'error',
    exitHooks: false,
  });
  const registry = new Registry();
  registerPrometheus(tracer, registry);
  await tracer.pauseDrain();
  const w = tracer.register('main');
  const id = tracer.define('x');
  let refused = 0;
  for (let i = 0; i < 2000; i++) if (!w.record(id, i)) refused++;
  w.flush();
  const text = await registry.metrics();
  assert.match(text, /# TYPE ringtrace_events_dropped_total counter/);
  assert.match(text, new RegExp(`ringtrace_events_dropped_total\\{thread="main",slot="0",reason="pool_exhausted"\\} ${refused}\\n`));
  assert.match(text, /ringtrace_events_attempted_total\{thread="main",slot="0"\} 2000\n/);
  assert.match(text, new RegExp(`ringtrace_events_dropped_by_priority_total\\{thread="main",slot="0",priority="normal"\\} ${refused}\\n`));
  assert.match(text, /ringtrace_events_dropped_by_priority_total\{thread="main",slot="0",priority="critical"\} 0\n/);
  assert.match(text, /ringtrace_backpressure_state\{thread="main",slot="0",state="dropping"\} 1\n/);
  assert.match(text, /ringtrace_backpressure_transitions_total\{thread="main",slot="0",edge="pressure->dropping"\} 1\n/);
  assert.match(text, /ringtrace_free_spare_rings\{thread="main",slot="0"\} 0\n/);
  tracer.resumeDrain();
  w.close();
  await tracer.close();
  const after = await registry.metrics();
  assert.match(
    after,
    new RegExp(`ringtrace_events_dropped_total\\{thread="\\(retired\\)",slot="",reason="pool_exhausted"\\} ${refused}\\n`),
  );
});
