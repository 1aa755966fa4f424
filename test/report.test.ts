/**
 * The HTML report: what its charts count and say (no browser), and the page in a real headless
 * browser (Debian's chromium, driven by playwright-core): it loads without console errors and
 * shows the three charts and the totals table.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { before, it } from 'node:test';
import { chromium } from 'playwright-core';
import { Tracer, openTrace } from '../src/index.js';
import { htmlReportData, niceTicks, renderReport, writeReport, type HtmlReportData } from '../src/cli/report.js';
import { tempTrace } from './helpers/scenario.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** One small trace with a burst that drops, shared by the tests below. */
let path: string;
before(async () => {
  path = tempTrace('report');
  const tracer = await Tracer.open({ path, ringSize: '4KiB', stabilityMs: 10, logLevel: 'error', exitHooks: false });
  const w = tracer.register('main <&> "quoted"');
  const id = tracer.define('x');
  for (let i = 0; i < 500; i++) w.record(id, i);
  await tracer.pauseDrain();
  for (let i = 0; i < 5000; i++) w.record(id, i);
  tracer.resumeDrain();
  await new Promise((r) => setTimeout(r, 100));
  w.close();
  await tracer.close();
});

it('the rate chart counts written events and says so; attempted = written + dropped per bucket', () => {
  const d: HtmlReportData = htmlReportData(openTrace(path));
  const T = d.summary.totals;
  assert.ok(T.dropped > 0);
  const seconds = d.bucketNs / 1e9;
  const written = d.threads.reduce((n, t) => n + t.rates.reduce((a, v) => a + v * seconds, 0), 0);
  const untimed = d.untimedDrops.reduce((n, u) => n + u.events, 0);
  const attempted = d.attempted.reduce((a, v) => a + v * seconds, 0) + untimed;
  assert.ok(Math.abs(written - T.events) < 1e-6 * T.events, `written ${written} = ${T.events}`);
  assert.ok(Math.abs(attempted - T.attempted) < 1e-6 * T.attempted, `attempted ${attempted} = ${T.attempted}`);
  const dropped = Object.values(d.drops).reduce((n, b) => n + b.reduce((a, v) => a + v, 0), 0) + untimed;
  const byThread = d.dropsByThread.reduce((n, b) => n + b.reduce((a, v) => a + v, 0), 0) + untimed;
  assert.ok(Math.abs(byThread - T.dropped) < 1e-6 * T.dropped, 'the drops by thread add up too');
  d.attempted.forEach((v, k) =>
    assert.ok(v >= d.threads.reduce((n, t) => n + t.rates[k], 0) - 1e-6, 'attempted >= written in every bucket'),
  );
  assert.ok(Math.abs(dropped - T.dropped) < 1e-6 * T.dropped);

  const out = join(dirname(path), 'labels.html');
  writeReport(path, out);
  const html = readFileSync(out, 'utf8');
  const bucket =
    d.bucketNs >= 1e6
      ? `${(d.bucketNs / 1e6).toLocaleString('en-US', { maximumFractionDigits: 1 })} ms`
      : `${(d.bucketNs / 1e3).toLocaleString('en-US', { maximumFractionDigits: 1 })} µs`;
  assert.match(html, /<h2>Written events per second, per thread<\/h2>/);
  assert.ok(html.includes('written events/s per thread (events kept in the file), log scale'), 'the y axis says written, log');
  assert.match(
    html,
    /<p class="note" id="rate-note">Written events only: events dropped are not in these lines\. .*Attempted \(written \+ dropped, all threads\) peaked at about [\d,]+ events\/s/,
  );
  assert.ok(html.includes(`<h2>Drops over time, by thread (buckets of ${bucket})</h2>`), `bucket width ${bucket}`);
  assert.ok(html.includes(`events dropped per ${bucket} bucket, by thread`));
  // Axis ticks are round numbers.
  for (const m of html.matchAll(/text-anchor="middle">([^<]+) ms</g)) assert.match(m[1], /^[\d,]+(\.\d)?k?$/, `time tick ${m[1]}`);
});

it('round ticks; losses without a time are listed apart, not piled into the last bucket', () => {
  assert.deepEqual(niceTicks(0, 1000), [0, 200, 400, 600, 800, 1000]);
  assert.deepEqual(niceTicks(188.1, 2_100), [500, 1000, 1500, 2000]);
  assert.deepEqual(niceTicks(5, 5), [5]);
  const d = htmlReportData(openTrace(path));
  const html = renderReport({ ...d, untimedDrops: [{ thread: 'main', reason: 'unflushed', events: 12 }] });
  assert.match(html, /<table id="untimed-drops">.*<td>main<\/td><td>unflushed<\/td><td>12<\/td>/s);
});

it(
  'renders charts and the conservation table, with no console errors',
  { skip: !existsSync(CHROMIUM) && !process.env.CI && 'chromium not installed (CI installs it)' },
  async () => {
    const out = join(dirname(path), 'report.html');
    const data = writeReport(path, out);
    assert.ok(data.summary.totals.dropped > 0);
    const html = readFileSync(out, 'utf8');
    assert.doesNotMatch(html, /<script/i, 'no scripts');
    assert.doesNotMatch(html, /https?:\/\//, 'no network references');
    assert.match(html, /main &#60;&#38;&#62; &#34;quoted&#34;/, 'names are escaped');

    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(pathToFileURL(out).href);
      assert.deepEqual(errors, []);
      assert.ok((await page.locator('#events-rate polyline.series').count()) >= 1);
      assert.ok((await page.locator('#drops rect.drop').count()) >= 1);
      assert.ok((await page.locator('#states rect.state').count()) >= 4, 'normal, pressure, dropping, recovery spans');
      const box = await page.locator('#drops').boundingBox();
      assert.ok(box && box.width > 500 && box.height > 100, 'the drops chart is laid out');
      assert.equal(await page.locator('#totals tfoot td.ok').count(), 1, 'conservation check shown and passing');
      assert.ok(await page.locator('#rate-note').isVisible(), 'the note on what the rate chart leaves out');
      await page.screenshot({ path: join(dirname(path), 'report.png'), fullPage: true });
    } finally {
      await browser.close();
    }
  },
);
