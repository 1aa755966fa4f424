/**
 * Waits for a condition, polling on timers (never a fixed sleep): tests run on a loaded 2-core
 * machine, so the limit is generous and only there to turn a hang into a named failure.
 */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 30_000, everyMs = 5): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
