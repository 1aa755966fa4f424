/**
 * Pairs a trace's slices for viewers that draw them: begin/end into complete slices per thread,
 * async begin/end by span id across threads, links into flows. Losses cut slices (a begin whose
 * end was dropped, or the reverse); such a slice is clipped at the loss boundary and flagged
 * (`truncated`), never left open and never closing someone else's slice. Fed in time order
 * (TraceReader.eventsByTime), it holds only what is open: the export streams.
 *
 * A clipped slice is never longer than the real one: an end lost in a loss window happened after
 * the window's first lost event, so a slice clipped there is at most as long; a begin lost in a
 * window happened before its last lost event, so a slice clipped there starts no earlier.
 */
import type { TraceDrop } from '../file/reader.js';

/** Why a slice is drawn clipped: a loss explains the missing side, or nothing does (the app's
 * calls do not pair: an end() with no begin, a begin() never ended, ended by another name). */
export type Truncation = 'loss' | 'unmatched';

export interface SliceOut {
  thread: number;
  id: number;
  name: string;
  from: number;
  to: number;
  /** Set when one side is not in the file: which side was clipped, and why. */
  truncated?: Truncation;
  clipped?: 'begin' | 'end';
}

interface LossWindow {
  firstTs: number;
  lastTs: number;
}

/** A thread's timed loss windows (sorted by first lost event) and whether it also had untimed losses. */
export class LossWindows {
  private readonly windows: LossWindow[][];
  private readonly all: LossWindow[];
  private readonly untimed: boolean[];

  constructor(threads: number, drops: ReadonlyArray<Pick<TraceDrop, 'thread' | 'events' | 'firstTs' | 'lastTs'>>) {
    this.windows = Array.from({ length: threads }, () => []);
    this.untimed = Array.from({ length: threads }, () => false);
    for (const d of drops) {
      if (d.events <= 0 || d.thread >= threads) continue;
      if (Number.isFinite(d.firstTs) && Number.isFinite(d.lastTs)) this.windows[d.thread].push({ firstTs: d.firstTs, lastTs: d.lastTs });
      else this.untimed[d.thread] = true;
    }
    for (const w of this.windows) w.sort((a, b) => a.firstTs - b.firstTs);
    this.all = this.windows.flat().sort((a, b) => a.firstTs - b.firstTs);
  }

  private list(thread: number | undefined): LossWindow[] {
    return thread === undefined ? this.all : this.windows[thread];
  }

  /**
   * Where to clip a slice begun at `begin` whose end is missing: at the first loss that lies
   * after the begin and before `limit` (the end was lost there or later), never before `inner`
   * (the latest end of a slice drawn inside it). Undefined if no timed loss lies in between.
   * `thread` undefined: any thread's losses (an async span may end on any thread).
   */
  endClip(thread: number | undefined, begin: number, inner: number, limit: number): number | undefined {
    for (const w of this.list(thread)) {
      if (w.firstTs > limit) break;
      if (w.lastTs >= begin) return Math.min(limit, Math.max(inner, w.firstTs));
    }
    return undefined;
  }

  /** Where to start a slice that ends at `end` and whose begin is missing (never before
   * `floor`); undefined if no timed loss before `end` can hold its begin. */
  beginClip(thread: number | undefined, floor: number, end: number): number | undefined {
    let latest = -Infinity;
    for (const w of this.list(thread)) {
      if (w.firstTs > end) break;
      if (w.lastTs > latest) latest = w.lastTs;
    }
    if (latest === -Infinity) return undefined;
    return Math.max(floor, Math.min(end, latest));
  }

  /** The thread's windows sorted by their last lost event. */
  byEnd(thread: number): LossWindow[] {
    return this.windows[thread].slice().sort((a, b) => a.lastTs - b.lastTs);
  }

  /** Whether a loss of the thread began at or after `since` and by `ts`, and is not over at `ts`. */
  lossSince(thread: number, since: number, ts: number): boolean {
    return this.windows[thread].some((w) => w.firstTs >= since && w.firstTs <= ts && w.lastTs >= ts);
  }

  hasUntimed(thread: number | undefined): boolean {
    return thread === undefined ? this.untimed.includes(true) : this.untimed[thread];
  }
}

interface Frame {
  id: number;
  name: string;
  ts: number;
  /** The latest time a slice inside this one ended: a clip may not cut before it. */
  inner: number;
  /** Open across a loss: its first piece is drawn; this continuation is drawn only if its end
   * comes before anything else happens on the thread (else that end was lost too). */
  tentative: boolean;
}

/**
 * begin/end per thread into complete slices (Chrome "X"). Losses cut: when the thread's events
 * pass a loss window, every slice open across it is drawn up to the window (clipped, flagged)
 * and continues only tentatively from the window's end: the lost events may hold its end and
 * the begin of the next slice of the same name, so the next end is taken for its end only if
 * nothing else happened first. Drawn clipped pieces nest: a piece ends after everything drawn
 * inside it and before the loss.
 */
export class SliceMatcher {
  private readonly stacks: Frame[][];
  /** Per thread: the latest end of a top-level slice (an orphan end starts no earlier). */
  private readonly floor: number[];
  private readonly last: number[];
  /** Per thread: loss windows by their end, and the next one not yet applied. */
  private readonly cuts: Array<Array<{ firstTs: number; lastTs: number }>>;
  private readonly nextCut: number[];

  constructor(
    private readonly losses: LossWindows,
    registeredTs: readonly number[],
  ) {
    this.stacks = registeredTs.map(() => []);
    this.floor = registeredTs.map((t) => (Number.isFinite(t) ? t : 0));
    this.last = this.floor.slice();
    this.cuts = registeredTs.map((_, t) => losses.byEnd(t));
    this.nextCut = registeredTs.map(() => 0);
  }

  /** Every event of the thread passes here (in time order), so the thread's last time is known. */
  seen(thread: number, ts: number): void {
    if (ts > this.last[thread]) this.last[thread] = ts;
  }

  /** A begin: the pieces of slices cut by losses before it. A slice still open only
   * tentatively (across a loss) is taken to have ended in the loss. */
  begin(thread: number, id: number, name: string, ts: number): SliceOut[] {
    const out = this.advance(thread, ts);
    const stack = this.stacks[thread];
    while (stack.length > 0 && stack[stack.length - 1].tentative) stack.pop();
    stack.push({ id, name, ts, inner: ts, tentative: false });
    return out;
  }

  /** An end: the slices it closes (clipped ones first, innermost first). */
  end(thread: number, id: number, name: string, ts: number): SliceOut[] {
    const out = this.advance(thread, ts);
    const stack = this.stacks[thread];
    let k = stack.length - 1;
    while (k >= 0 && stack[k].id !== id) k--;
    if (k < 0) {
      out.push(this.orphanEnd(thread, id, name, ts));
      return out;
    }
    while (stack.length > k + 1) {
      if (stack[stack.length - 1].tentative) stack.pop();
      else out.push(this.clip(thread, ts));
    }
    const f = stack[k];
    if (!f.tentative && this.losses.lossSince(thread, f.ts, ts)) {
      // A loss began after this slice and is not over: the end may be someone else's.
      out.push(this.clip(thread, ts));
      out.push(this.orphanEnd(thread, id, name, ts));
      return out;
    }
    stack.pop();
    this.closed(thread, ts);
    out.push({
      thread,
      id,
      name: f.name,
      from: f.ts,
      to: ts,
      ...(f.tentative && { truncated: 'loss' as const, clipped: 'begin' as const }),
    });
    return out;
  }

  /** Every slice still open, clipped at its thread's last time (or the loss that holds its end). */
  finish(): SliceOut[] {
    const out: SliceOut[] = [];
    for (let t = 0; t < this.stacks.length; t++) {
      const stack = this.stacks[t];
      while (stack.length > 0) {
        if (stack[stack.length - 1].tentative) stack.pop();
        else out.push(this.clip(t, this.last[t]));
      }
    }
    return out;
  }

  /** Applies the loss windows of the thread that ended before `ts`. */
  private advance(thread: number, ts: number): SliceOut[] {
    this.seen(thread, ts);
    const out: SliceOut[] = [];
    const cuts = this.cuts[thread];
    while (this.nextCut[thread] < cuts.length && cuts[this.nextCut[thread]].lastTs < ts) {
      const w = cuts[this.nextCut[thread]++];
      const stack = this.stacks[thread];
      for (let i = stack.length - 1; i >= 0; i--) {
        const f = stack[i];
        if (!f.tentative) {
          const to = f.ts < w.firstTs ? Math.max(f.inner, w.firstTs) : f.inner;
          out.push({ thread, id: f.id, name: f.name, from: f.ts, to, truncated: 'loss', clipped: 'end' });
          if (i > 0 && to > stack[i - 1].inner) stack[i - 1].inner = to;
          else if (i === 0 && to > this.floor[thread]) this.floor[thread] = to;
          f.tentative = true;
        }
        f.ts = f.inner = Math.max(f.ts, w.lastTs);
      }
    }
    return out;
  }

  /** Pops the innermost open slice, whose end is missing, clipped before `limit`. */
  private clip(thread: number, limit: number): SliceOut {
    const f = this.stacks[thread].pop() as Frame;
    const at = this.losses.endClip(thread, f.ts, f.inner, limit);
    // No timed loss holds the end: an untimed one (unflushed, thread_exit) lost it after the
    // thread's last kept event, or nothing did and the app never ended it.
    const atEnd = limit === this.last[thread] && this.losses.hasUntimed(thread);
    const to = at ?? limit;
    this.closed(thread, to);
    return { thread, id: f.id, name: f.name, from: f.ts, to, truncated: at !== undefined || atEnd ? 'loss' : 'unmatched', clipped: 'end' };
  }

  private orphanEnd(thread: number, id: number, name: string, ts: number): SliceOut {
    const stack = this.stacks[thread];
    // Nothing drawn at this depth before it: it starts after the last slice that ended here.
    const floor = stack.length > 0 ? stack[stack.length - 1].inner : this.floor[thread];
    const from = this.losses.beginClip(thread, floor, ts);
    this.closed(thread, ts);
    return { thread, id, name, from: from ?? ts, to: ts, truncated: from === undefined ? 'unmatched' : 'loss', clipped: 'begin' };
  }

  private closed(thread: number, ts: number): void {
    const stack = this.stacks[thread];
    if (stack.length > 0) {
      const top = stack[stack.length - 1];
      if (ts > top.inner) top.inner = ts;
    } else if (ts > this.floor[thread]) this.floor[thread] = ts;
  }
}

export interface AsyncOpen {
  span: number;
  thread: number;
  id: number;
  name: string;
  ts: number;
  value: number | undefined;
  /** From `span.attrs` records seen while it was open. */
  attrs?: Record<string, unknown>;
}

export interface AsyncOut {
  span: number;
  name: string;
  begin: { thread: number; ts: number; value: number | undefined; attrs?: Record<string, unknown> };
  end: { thread: number; ts: number };
  truncated?: Truncation;
  clipped?: 'begin' | 'end';
}

/**
 * Async spans by id, across threads. The begin is drawn when it is seen (a Chrome "b"); the end
 * ("e") needs the begin's name, which this keeps while the span is open. An end seen before its
 * begin (two threads' clocks a hair apart) waits for it; one whose begin never comes is drawn
 * from the loss that holds the begin.
 */
export class AsyncMatcher {
  private readonly open = new Map<number, AsyncOpen>();
  private readonly early = new Map<number, { thread: number; ts: number; id: number; name: string | undefined }>();
  private last = -Infinity;

  constructor(private readonly losses: LossWindows) {}

  seen(ts: number): void {
    if (ts > this.last) this.last = ts;
  }

  /** A begin: returns the span if an early end completes it at once. */
  begin(b: AsyncOpen): AsyncOut | undefined {
    this.seen(b.ts);
    const e = this.early.get(b.span);
    if (e === undefined) {
      this.open.set(b.span, b);
      return undefined;
    }
    this.early.delete(b.span);
    return { span: b.span, name: b.name, begin: b, end: { thread: e.thread, ts: Math.max(e.ts, b.ts) } };
  }

  /** An end: the completed span, or undefined (its begin is not seen yet). */
  end(span: number, thread: number, ts: number, id: number, name: string | undefined): AsyncOut | undefined {
    this.seen(ts);
    const b = this.open.get(span);
    if (b === undefined) {
      this.early.set(span, { thread, ts, id, name });
      return undefined;
    }
    this.open.delete(span);
    return { span, name: b.name, begin: b, end: { thread, ts: Math.max(ts, b.ts) } };
  }

  /** The open span `span` (for a link's flow), if its begin was seen. */
  get(span: number): AsyncOpen | undefined {
    return this.open.get(span);
  }

  /** Adds attributes to an open span; false if the span is not open (never begun, or ended). */
  annotate(span: number, attrs: Record<string, unknown>): boolean {
    const b = this.open.get(span);
    if (b === undefined) return false;
    b.attrs = { ...b.attrs, ...attrs };
    return true;
  }

  /** Spans never ended (clipped where a loss may have taken the end) and ends never begun. */
  finish(): AsyncOut[] {
    const out: AsyncOut[] = [];
    for (const b of this.open.values()) {
      const at = this.losses.endClip(undefined, b.ts, b.ts, this.last);
      const truncated = at !== undefined || this.losses.hasUntimed(undefined) ? 'loss' : 'unmatched';
      out.push({ span: b.span, name: b.name, begin: b, end: { thread: b.thread, ts: at ?? this.last }, truncated, clipped: 'end' });
    }
    for (const [span, e] of this.early) {
      const from = this.losses.beginClip(undefined, -Infinity, e.ts);
      const begin = { thread: e.thread, ts: from ?? e.ts, value: undefined };
      const name = e.name ?? `span 0x${span.toString(16)}`;
      out.push({
        span,
        name,
        begin,
        end: { thread: e.thread, ts: e.ts },
        truncated: from === undefined ? 'unmatched' : 'loss',
        clipped: 'begin',
      });
    }
    this.open.clear();
    this.early.clear();
    return out;
  }
}
