/**
 * Chrome DevTools' trace engine (the Performance panel's parser, @paulirish/trace_engine on npm)
 * run on an export: what a real viewer makes of it. Thread slices are read from its Renderer
 * handler (the thread trees it builds); async spans are paired with its own pairing helper
 * (createMatchedSortedSyntheticEvents: begin and end matched by category, id and name), the one
 * its handlers use for async events.
 */
import * as TraceEngine from '@paulirish/trace_engine';

/** The engine expects a browser: it only constructs DOMRects. */
const g = globalThis as { DOMRect?: unknown };
g.DOMRect ??= class DOMRect {
  constructor(
    readonly x = 0,
    readonly y = 0,
    readonly width = 0,
    readonly height = 0,
  ) {}
};

export interface ChromeJsonEvent {
  name: string;
  ph: string;
  cat?: string;
  pid: number;
  tid: number;
  ts?: number;
  dur?: number;
  id?: string | number;
  args?: Record<string, unknown>;
}

export interface EngineView {
  /** Slices on thread tracks with a duration, as the engine built them. */
  slices: Array<{ name: string; cat: string; tid: number; ts: number; dur: number }>;
  /** Async spans the engine paired. */
  asyncSpans: Array<{ name: string; id: string; ts: number; dur: number }>;
  /** Begin/end-phase events (B/E, b/e) in the input and how many of them the engine paired. */
  asyncBegins: number;
  asyncEnds: number;
  syncBeginEnd: number;
  /** console.error calls the engine made while parsing (it reports B/E mismatches so). */
  errors: string[];
}

export async function parseWithEngine(events: ChromeJsonEvent[]): Promise<EngineView> {
  const errors: string[] = [];
  const origError = console.error;
  console.error = (...a: unknown[]) => void errors.push(a.map(String).join(' '));
  const model = TraceEngine.TraceModel.Model.createWithAllHandlers();
  try {
    await model.parse(structuredClone(events) as unknown as TraceEngine.Types.Events.Event[]);
  } finally {
    console.error = origError;
  }
  const parsed = model.parsedTrace();
  if (!parsed) throw new Error('the trace engine produced no data');
  const slices: EngineView['slices'] = [];
  for (const p of parsed.data.Renderer.processes.values())
    for (const t of p.threads.values())
      for (const e of t.entries) {
        const dur = (e as { dur?: number }).dur;
        if (dur !== undefined) slices.push({ name: e.name, cat: e.cat, tid: e.tid, ts: e.ts, dur });
      }
  const pairable = events.filter((e) => e.ph === 'b' || e.ph === 'e').map((e) => structuredClone(e));
  const pairs = TraceEngine.Helpers.Trace.createMatchedSortedSyntheticEvents(
    pairable as unknown as Parameters<typeof TraceEngine.Helpers.Trace.createMatchedSortedSyntheticEvents>[0],
  );
  return {
    slices,
    asyncSpans: pairs.map((s) => ({ name: s.name, id: String(s.id), ts: s.ts, dur: s.dur })),
    asyncBegins: pairable.filter((e) => e.ph === 'b').length,
    asyncEnds: pairable.filter((e) => e.ph === 'e').length,
    syncBeginEnd: events.filter((e) => e.ph === 'B' || e.ph === 'E').length,
    errors,
  };
}
