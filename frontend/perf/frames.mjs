// Frame times of the dashboard with 1,000 services updating every second, in headless
// Debian chromium. Run by scripts/dashboard-perf.sh (a measurement, not a test).
import { chromium } from 'playwright-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
const dir = mkdtempSync(join(tmpdir(), 'vitals-perf-'));
const ctx = await chromium.launchPersistentContext(dir, { executablePath: '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox','--disable-gpu','--disable-quic','--no-first-run','--disable-background-networking','--disable-component-update','--disable-sync'],
  viewport: { width: 1440, height: 900 } });
const page = await ctx.newPage();
await page.goto(process.env.DASHBOARD_URL);
const t0 = Date.now();
await page.waitForFunction(() => document.querySelectorAll('[data-testid=service-card]').length >= 1000, null, { timeout: 60000 });
console.log('1000 cards after', Date.now() - t0, 'ms');
const r = await page.evaluate(() => new Promise(res => {
  const frames = []; let last = performance.now(); const longs = [];
  new PerformanceObserver(l => { for (const e of l.getEntries()) longs.push(e.duration); }).observe({ type: 'longtask', buffered: false });
  const end = last + 10000;
  function f(t) { frames.push(t - last); last = t; if (t < end) requestAnimationFrame(f); else {
    frames.sort((a,b)=>a-b); const p = q => frames[Math.floor(q*(frames.length-1))];
    res({ frames: frames.length, fps: frames.length/10, p50: p(0.5), p95: p(0.95), p99: p(0.99), max: frames[frames.length-1], longtasks: longs.length, longest: Math.max(0,...longs) }); } }
  requestAnimationFrame(f);
}));
console.log(JSON.stringify(r));
await page.screenshot({ path: process.env.SCREENSHOT });
await ctx.close();
