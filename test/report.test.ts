/**
 * The HTML report in a real headless browser (Debian's chromium, driven by playwright-core):
 * it loads without console errors and shows the three charts and the totals table.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { it } from 'node:test';
import { chromium } from 'playwright-core';
import { Tracer } from '../src/index.js';
import { writeReport } from '../src/report.js';
import { tempTrace } from './helpers/scenario.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

it('renders charts and the conservation table, with no console errors', { skip: !existsSync(CHROMIUM) && !process.env.CI && 'chromium not installed (CI installs it)' }, async () => {
  const path = tempTrace('report');
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
  const out = join(dirname(path), 'report.html');
  const data = writeReport(path, out);
  assert.ok(data.summary.totals.dropped > 0);
  const html = readFileSync(out, 'utf8');
  assert.doesNotMatch(html, /<script/i, 'no scripts');
  assert.doesNotMatch(html, /https?:\/\//, 'no network references');
  assert.match(html, /main &#60;&#38;&#62; &#34;quoted&#34;/, 'names are escaped');

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
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
    await page.screenshot({ path: join(dirname(path), 'report.png'), fullPage: true });
  } finally {
    await browser.close();
  }
});
