// End to end: the real native stack (scripts/stack.sh: nats-server, monitor, gateway, four
// simulators, the prober (no file targets), the host agent, `vite preview` of frontend/dist)
// and the real page in headless chromium.
//
//   node --test --test-reporter=tap frontend/e2e/      (or scripts/e2e.sh, which installs first)
//
// Each step waits, with a bounded timeout, for a state of the page; none sleeps to "let things
// settle", and none asserts a duration. How long each transition took is recorded and printed
// as a table at the end (also target/e2e/timings.txt). Screenshots: target/e2e/NN-*.png, and
// target/e2e/FAILED-<step>.png plus the stack's log tails when a step fails.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import {
  alertSel,
  banner,
  card,
  cardWith,
  DASHBOARD_URL,
  launchBrowser,
  NATS_URL,
  OPERATOR_TOKEN,
  resetOutDir,
  screenshot,
  SERVICES,
  SIMULATOR_PASSWORD,
  simPort,
  Stack,
  startHttpTarget,
  Timings,
  waitFor,
  waitSel,
  writeOut,
} from './harness.mjs';

const timings = new Timings();
const stack = new Stack();
/** @type {Awaited<ReturnType<typeof launchBrowser>> | null} */
let browser = null;
/** @type {import('playwright-core').Page} */
let page;
let broken = null; // the first failed step: later steps depend on its state and fail at once
/** Every step, in order, and those whose body ran to the end: at the end, all must have. */
const defined = [];
const completed = new Set();

// The stack must come down whatever happens, also on Ctrl-C.
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    stack.downSync(spawnSync);
    if (browser !== null) rmSync(browser.profile, { recursive: true, force: true });
    process.exit(130);
  });
}

const since = (t0) => Math.round(performance.now() - t0);
const OTHERS = (svc) => SERVICES.filter((s) => s !== svc);
const sleepObserving = (msec) => new Promise((r) => setTimeout(r, msec)); // observation windows only

/**
 * One step. When an earlier one failed, it fails at once (its state is not there): it is
 * never skipped, so a failure anywhere fails the run and every later step says it did not
 * run. A screenshot on success (`shot`, if given) and always on failure (FAILED-<slug>.png),
 * with the page's state and the stack's log tails. The suite's `after` fails the run too when
 * any step did not run to its end (e.g. filtered out by a name pattern).
 */
function step(name, slug, shot, fn, timeoutMs = 60_000) {
  defined.push(name);
  test(name, { timeout: timeoutMs }, async (t) => {
    if (broken !== null) throw new Error(`not run: an earlier step failed (${broken})`);
    try {
      await fn(t);
      if (shot) await screenshot(page, shot);
      completed.add(name);
    } catch (e) {
      broken = name;
      await failureReport(slug);
      throw e;
    }
  });
}

async function failureReport(slug) {
  if (browser !== null) {
    try {
      const path = await screenshot(page, `FAILED-${slug}`);
      console.error(`screenshot: ${path}`);
    } catch (e) {
      console.error(`no screenshot: ${e}`);
    }
    try {
      const dom = await page.evaluate(() => ({
        banner: document.querySelector('[data-testid=connection-state]')?.textContent?.replace(/\s+/g, ' ').trim(),
        cards: [...document.querySelectorAll('[data-testid=service-card]')].map(
          (c) =>
            `${c.getAttribute('data-service')}:${c.getAttribute('data-status')}` +
            (c.querySelector('[data-source=health-check]') ? ` check=${c.querySelector('[data-source=health-check]')?.getAttribute('data-check')}` : ''),
        ),
        alerts: [...document.querySelectorAll('[data-testid=alert]')].map((a) => `${a.getAttribute('data-alert')}:${a.getAttribute('data-service')}`),
        bannerHistory: /** @type {any} */ (window).__e2eBanner,
      }));
      console.error(`page state: ${JSON.stringify(dom)}`);
    } catch (e) {
      console.error(`no page state: ${e}`);
    }
    if (browser.pageErrors.length > 0) console.error(`page errors:\n${browser.pageErrors.join('\n')}`);
    if (browser.consoleErrors.length > 0) console.error(`console errors (last 20):\n${browser.consoleErrors.slice(-20).join('\n')}`);
  }
  console.error(stack.logTails());
  stack.saveLogs();
}

/** Waits for several selectors at once; records each one's time under `label: selector-name`. */
async function waitAll(stepName, t0, entries, timeoutMs) {
  await Promise.all(
    entries.map(async ([what, selector, state = 'attached']) => {
      await waitSel(page, selector, { state, timeoutMs });
      timings.add(stepName, what, since(t0));
    }),
  );
}

const pageEval = (fn, arg) => page.evaluate(fn, arg);

/**
 * The firing alerts of the simulated services. The agent's card is this host's real
 * figures, so it may have a HIGH_CPU of its own on a busy machine: not counted here.
 */
const simAlerts = () =>
  pageEval((names) => [...document.querySelectorAll('[data-testid=alert]')].filter((a) => names.includes(a.getAttribute('data-service') ?? '')).length, SERVICES);

/** Layout sanity: in every card, the five figures stay apart and inside the card. */
async function assertCardLayout() {
  const problems = await pageEval(() => {
    const out = [];
    for (const c of document.querySelectorAll('[data-testid=service-card]')) {
      const box = c.getBoundingClientRect();
      const cells = [...c.querySelectorAll('dl > div')].map((d) => ({ text: d.textContent?.trim(), r: d.getBoundingClientRect(), dd: d.querySelector('dd') }));
      cells.forEach((cell, i) => {
        const next = cells[i + 1];
        if (next && cell.r.right > next.r.left + 0.5) out.push(`${c.getAttribute('data-service')}: "${cell.text}" runs into "${next.text}"`);
        if (cell.r.right > box.right - 4 || cell.r.left < box.left) out.push(`${c.getAttribute('data-service')}: "${cell.text}" outside the card`);
        if (cell.dd && cell.dd.scrollWidth > cell.dd.clientWidth + 0.5) out.push(`${c.getAttribute('data-service')}: "${cell.text}" clipped`);
      });
    }
    return out;
  });
  assert.deepEqual(problems, [], 'card figures laid out without overlap');
}

describe('Vitals dashboard, end to end (real stack, headless chromium)', () => {
  before(async () => {
    resetOutDir();
    await stack.checkPortsFree();
    const t0 = performance.now();
    const [up, b] = await Promise.allSettled([stack.up(), launchBrowser()]);
    if (b.status === 'fulfilled') {
      browser = b.value;
      page = b.value.page;
    }
    if (up.status === 'rejected' || b.status === 'rejected') {
      broken = 'setup';
      console.error(stack.logTails());
      stack.saveLogs();
      throw up.status === 'rejected' ? up.reason : b.reason;
    }
    timings.add('setup', 'stack.sh up + browser launch', since(t0), `run dir ${stack.runDir}`);
  }, { timeout: 120_000 });

  after(async () => {
    const t0 = performance.now();
    if (browser !== null) await browser.close();
    const r = await stack.down();
    if (r.code !== 0) console.error(`stack.sh down exited ${r.code}: ${r.stdout}${r.stderr}`);
    timings.add('teardown', 'browser closed + stack.sh down', since(t0));
    const table = timings.table();
    writeOut('timings.txt', table + '\n');
    console.log(`\nTransition times (ms from the action; stack.sh start includes its own wait for /healthz):\n${table}\n`);
    if (browser !== null && browser.consoleErrors.length > 0) writeOut('console-errors.txt', browser.consoleErrors.join('\n') + '\n');
    // Nothing passes by not running: every step must have run to its end.
    const notRun = defined.filter((n) => !completed.has(n));
    assert.deepEqual(notRun, [], `steps that did not run to their end: ${notRun.join(' | ')}`);
  }, { timeout: 120_000 });

  step('1. four services HEALTHY, banner live', '01-healthy', '01-healthy', async () => {
    const t0 = performance.now();
    await page.goto(DASHBOARD_URL, { waitUntil: 'domcontentloaded', timeout: 15_000 });
    await waitAll(
      '1 page load',
      t0,
      [
        ...SERVICES.map((s) => [`${s} HEALTHY`, cardWith(s, 'HEALTHY')]),
        ['banner live', banner('live')],
      ],
      20_000,
    );
    // The four simulators and this host's agent, and nothing else (the prober has no targets yet).
    await waitSel(page, '[data-testid=service-card][data-sample-source=agent]', { timeoutMs: 15_000 });
    assert.equal(await page.locator('[data-testid=service-card][data-sample-source=agent]').count(), 1, 'one agent card');
    assert.equal(await page.locator('[data-testid=service-card]:not([data-sample-source=agent])').count(), 4, 'exactly the four simulator cards');
    assert.equal(await simAlerts(), 0, 'no simulator alert firing');
    // Figures arrive with the first summaries; the page shows them rather than dashes.
    await waitSel(page, `${card('auth')} [data-testid=last-sample]:text-matches("last sample \\\\d+ s ago")`, { timeoutMs: 10_000 });
    for (const s of SERVICES) {
      assert.match(await page.locator(`${card(s)} [data-testid=instance]`).innerText(), new RegExp(`^${s}-local-\\d+$`), `${s} instance shown`);
    }
    await assertCardLayout();
  });

  step('2. billing killed (kill -9): DOWN from its closed connection ("connection lost"), SERVICE_DOWN listed, data button disabled; others HEALTHY', '02-outage', '02-outage', async () => {
    // Before the kill: another service's data panel shows that service's /data.
    let t0 = performance.now();
    await page.locator(`${card('auth')} [data-testid=data-button]`).click({ timeout: 5000 });
    const panel = '[data-testid=data-panel][data-service=auth]';
    await waitSel(page, `${panel} [data-testid=data-ok]`, { timeoutMs: 10_000 });
    timings.add('2 data panel', 'auth /data shown', since(t0));
    const okText = await page.locator(`${panel} [data-testid=data-ok]`).innerText();
    assert.match(okText, /sessions/, 'auth /data is a list of sessions');
    assert.ok(okText.includes(`http://127.0.0.1:${simPort('auth')}/data`), `fetched from auth's own /data: ${okText}`);
    const raw = (await page.locator(`${panel} pre`).textContent()) ?? ''; // inside a closed <details>
    assert.equal(JSON.parse(raw).service, 'auth', 'the body is auth’s');
    assert.ok((await page.locator(`${panel} table tbody tr`).count()) > 0, 'records shown as a table');
    await screenshot(page, '02a-data-panel');
    await page.locator(`${panel} [data-testid=data-close]`).click({ timeout: 5000 });
    await waitSel(page, panel, { state: 'detached', timeoutMs: 5000 });

    t0 = performance.now();
    const pid = await stack.kill9('billing');
    await waitAll(
      '2 kill -9 billing',
      t0,
      [
        ['billing DOWN', cardWith('billing', 'DOWN')],
        ['SERVICE_DOWN billing listed', alertSel('SERVICE_DOWN', 'billing')],
        ['billing data button disabled', `${card('billing')} [data-testid=data-button]:disabled`],
      ],
      15_000,
    );
    // The crash was seen from NATS's own connection event, not by the heartbeat timeout.
    const why = await page.locator(`${card('billing')} .reason`).innerText();
    assert.match(why, /^connection lost \(Client Closed\)/, `billing's reason: ${JSON.stringify(why)}`);
    for (const s of OTHERS('billing')) {
      assert.equal(await page.locator(cardWith(s, 'HEALTHY')).count(), 1, `${s} stays HEALTHY`);
      assert.ok(await page.locator(`${card(s)} [data-testid=data-button]`).isEnabled(), `${s} data button enabled`);
    }
    assert.equal(await simAlerts(), 1, 'only billing’s alert');
    await stack.waitGone(pid);
  });

  step('3. billing restarted (stack.sh start): HEALTHY, alert gone, data button enabled', '03-recovered', '03-recovered', async () => {
    const t0 = performance.now();
    await stack.start('billing');
    timings.add('3 start billing', 'stack.sh start billing returned', since(t0));
    await waitAll(
      '3 start billing',
      t0,
      [
        ['billing HEALTHY', cardWith('billing', 'HEALTHY')],
        ['SERVICE_DOWN billing gone', alertSel('SERVICE_DOWN', 'billing'), 'detached'],
        ['billing data button enabled', `${card('billing')} [data-testid=data-button]:enabled`],
      ],
      20_000,
    );
    for (const s of SERVICES) assert.equal(await page.locator(cardWith(s, 'HEALTHY')).count(), 1, `${s} HEALTHY`);
  });

  step('4. monitor killed: banner monitor-down, figures stale, each card shows its own health check, no card DOWN; restarted: live', '04-monitor-down', '04b-monitor-back', async (t) => {
    // Record every card that shows DOWN at any moment from now on (page-side, so nothing
    // between two looks is missed).
    await pageEval(() => {
      const w = /** @type {any} */ (window);
      w.__e2eDownSeen = [];
      const look = () => {
        for (const c of document.querySelectorAll('[data-testid=service-card][data-status=DOWN]')) w.__e2eDownSeen.push(c.getAttribute('data-service'));
      };
      w.__e2eDownObserver = new MutationObserver(look);
      w.__e2eDownObserver.observe(document.querySelector('[data-testid=service-grid]'), {
        subtree: true,
        childList: true,
        attributes: true,
        attributeFilter: ['data-status'],
      });
      look();
    });
    let t0 = performance.now();
    const pid = await stack.kill9('monitor');
    await waitAll(
      '4 kill -9 monitor',
      t0,
      [
        ['banner monitor-down', banner('monitor-down')],
        ['monitor panel not fresh', '[data-testid=monitor-panel][data-fresh=false]'],
      ],
      15_000,
    );
    // Figures are shown as stale: every card says so, in words.
    for (const s of SERVICES) {
      await waitSel(page, `${card(s)} :text-is("stale")`, { state: 'visible', timeoutMs: 3000 });
    }
    // ... and beside them what each service's own /health says now, marked as a check taken
    // while the monitor is down, with the age of the monitor's last figures.
    await waitAll(
      '4 kill -9 monitor',
      t0,
      SERVICES.map((s) => [`${s} health check up (monitor down)`, `${card(s)} [data-source=health-check][data-context=monitor-down][data-check=up]`]),
      10_000,
    );
    for (const s of SERVICES) {
      const text = await page.locator(`${card(s)} [data-source=health-check]`).innerText();
      assert.match(text, /^Health check\s+●?\s*UP\b[\s\S]*\(monitor down, figures from \d+ (s|min \d+ s) ago\)\s*$/, `${s}: ${JSON.stringify(text)}`);
    }
    await screenshot(page, '04-monitor-down');
    // Observation window (not a timing assertion): from the kill, at least 6 s (twice the 3 s
    // heartbeat timeout) and at least 2 s after the banner changed.
    const watchMs = Math.max(6000 - since(t0), 2000);
    await sleepObserving(watchMs);
    const downSeen = await pageEval(() => /** @type {any} */ (window).__e2eDownSeen);
    assert.deepEqual(downSeen, [], 'no card turned DOWN while the monitor was down');
    assert.equal(await page.locator(banner('monitor-down')).count(), 1, 'still monitor-down at the end of the window');
    timings.add('4 kill -9 monitor', 'watched: no card DOWN', since(t0), 'observation window');
    t.diagnostic(`watched ${since(t0)} ms after the kill: no card DOWN`);
    await stack.waitGone(pid);

    t0 = performance.now();
    await stack.start('monitor');
    timings.add('4 start monitor', 'stack.sh start monitor returned', since(t0));
    await waitAll(
      '4 start monitor',
      t0,
      [
        ['banner live', banner('live')],
        ['health-check markers gone', '[data-source=health-check]', 'detached'],
      ],
      20_000,
    );
    // ... and the restarted monitor's figures reach the page: every card's last sample is recent.
    await waitAll(
      '4 start monitor',
      t0,
      SERVICES.map((s) => [`${s} figures flowing`, `${card(s)} [data-testid=last-sample]:text-matches("^last sample [0-2] s ago$")`]),
      15_000,
    );
    for (const s of SERVICES) assert.equal(await page.locator(cardWith(s, 'HEALTHY')).count(), 1, `${s} HEALTHY`);
    const downAfter = await pageEval(() => {
      const w = /** @type {any} */ (window);
      w.__e2eDownObserver.disconnect();
      return w.__e2eDownSeen;
    });
    assert.deepEqual(downAfter, [], 'no card turned DOWN around the monitor restart');
    await waitSel(page, `${card('auth')} :text-is("stale")`, { state: 'detached', timeoutMs: 5000 });
  });

  step('5. analytics stopped, then gateway killed: fallback, health checks unreachable / up', '05-fallback', '05-fallback', async () => {
    let t0 = performance.now();
    await stack.stop('analytics');
    await waitAll('5 stop analytics', t0, [['analytics DOWN', cardWith('analytics', 'DOWN')]], 15_000);

    t0 = performance.now();
    await stack.kill9('gateway');
    await waitAll('5 kill -9 gateway', t0, [['banner fallback', banner('fallback')]], 20_000);
    await waitAll(
      '5 kill -9 gateway',
      t0,
      [
        ['analytics check unreachable', `${card('analytics')} [data-source=health-check][data-check=unreachable]`],
        ...OTHERS('analytics').map((s) => [`${s} check up`, `${card(s)} [data-source=health-check][data-check=up]`]),
      ],
      15_000,
    );
    // The monitor's last word is kept beside the checks; the data button follows the check.
    assert.equal(await page.locator(cardWith('analytics', 'DOWN')).count(), 1);
    assert.ok(await page.locator(`${card('analytics')} [data-testid=data-button]`).isDisabled(), 'analytics data disabled');
    assert.ok(await page.locator(`${card('auth')} [data-testid=data-button]`).isEnabled(), 'auth data enabled');
  });

  step('6. gateway restarted: live, polled view replaced, polling stopped; analytics back HEALTHY', '06-live-again', '06-live-again', async (t) => {
    const gatewayPid = stack.pid('gateway');
    await stack.waitGone(gatewayPid);
    let t0 = performance.now();
    await stack.start('gateway');
    timings.add('6 start gateway', 'stack.sh start gateway returned', since(t0));
    await waitAll(
      '6 start gateway',
      t0,
      [
        ['banner live', banner('live')],
        ['health-check markers gone', '[data-source=health-check]', 'detached'],
      ],
      30_000,
    );
    // The fresh snapshot, not the polled view: analytics is still the monitor's DOWN.
    assert.equal(await page.locator(cardWith('analytics', 'DOWN')).count(), 1);
    const liveAt = await pageEval(() => {
      const h = /** @type {any} */ (window).__e2eBanner;
      return h.findLast((e) => e.state === 'live')?.t ?? null;
    });
    assert.notEqual(liveAt, null);

    t0 = performance.now();
    await stack.start('analytics');
    await waitAll(
      '6 start analytics',
      t0,
      [
        ['analytics HEALTHY', cardWith('analytics', 'HEALTHY')],
        ['SERVICE_DOWN analytics gone', alertSel('SERVICE_DOWN', 'analytics'), 'detached'],
      ],
      20_000,
    );
    // Polling stopped: watch (observation window) until 3 s, more than the 2 s poll interval,
    // have passed since the page went live, then look at every fetch the page made.
    const isHealth = (u) => /\/health$/.test(new URL(u, 'http://x').pathname);
    for (;;) {
      const now = await pageEval(() => performance.now());
      if (now - liveAt >= 3000) break;
      await sleepObserving(Math.min(3000 - (now - liveAt) + 10, 3000));
    }
    const fetches = await pageEval(() => /** @type {any} */ (window).__e2eFetches);
    const polled = fetches.filter((f) => isHealth(f.url));
    const inFallback = polled.filter((f) => f.t < liveAt);
    const afterLive = polled.filter((f) => f.t >= liveAt);
    assert.ok(inFallback.length > 0, 'the fallback polled health URLs');
    assert.deepEqual(afterLive, [], 'no health check after the page went live');
    t.diagnostic(`health checks polled in fallback: ${inFallback.length}; after live: ${afterLive.length}`);
    // The monitor never went away here: the page must not have claimed it did on the way back
    // (a restarted gateway has no heartbeat yet, but the monitor answered its snapshot request).
    const history = await pageEval(() => /** @type {any} */ (window).__e2eBanner);
    const t5 = history.findLast((e) => e.state === 'fallback')?.t ?? 0;
    const path = history.filter((e) => e.t >= t5);
    t.diagnostic(`banner since the gateway was killed: ${path.map((e) => `${e.state} +${Math.round(e.t - t5)} ms`).join(', ')}`);
    assert.deepEqual(
      path.map((e) => e.state),
      ['fallback', 'live'],
      'fallback straight to live (no "monitor down" while the monitor was up; a detour here can also mean the page ' +
        'connected in the moment between the gateway serving /ws and its first sync, when its snapshot has source "none")',
    );
    timings.add('6 start gateway', 'health checks polled: in fallback / after live', null, `${inFallback.length} / ${afterLive.length}`);
    for (const s of SERVICES) assert.equal(await page.locator(cardWith(s, 'HEALTHY')).count(), 1, `${s} HEALTHY`);
  });

  step('7. names are validated; an instance id with HTML is shown as text', '07-html-as-text', null, async () => {
    // A service name with HTML is refused as configuration: exit code 2, no card.
    const cardsBefore = await page.locator('[data-testid=service-card]').count();
    const bad = stack.spawnSimulator(['--service', '<script>', '--nats-url', NATS_URL, '--http-addr', '127.0.0.1:0'], {
      NATS_USER: 'simulator',
      NATS_PASSWORD: SIMULATOR_PASSWORD,
    });
    const exit = await bad.exitWithin(10_000);
    assert.equal(exit?.code, 2, `simulator --service '<script>' exit code (log: ${bad.log()})`);
    assert.equal(await page.locator('[data-testid=service-card]').count(), cardsBefore, 'no card appeared');
    assert.equal(await page.locator('[data-testid=service-card][data-service="<script>"]').count(), 0);

    // The simulator takes no whitespace in an instance id (exit code 2 as well), so the HTML
    // below separates its attributes with '/', which an HTML parser accepts just the same.
    const spaced = stack.spawnSimulator(
      ['--service', 'htmltest', '--instance', '<img src=x onerror="window.__pwned=1">', '--nats-url', NATS_URL, '--http-addr', '127.0.0.1:0'],
      { NATS_USER: 'simulator', NATS_PASSWORD: SIMULATOR_PASSWORD },
    );
    const spacedExit = await spaced.exitWithin(10_000);
    assert.equal(spacedExit?.code, 2, `simulator --instance with spaces: exit code (log: ${spaced.log()})`);

    // An instance id with HTML in it: a card, the id visible as literal text, nothing executed.
    const instance = '<img/src="x"/onerror="window.__pwned=1">';
    const t0 = performance.now();
    const sim = stack.spawnSimulator(
      ['--service', 'htmltest', '--instance', instance, '--nats-url', NATS_URL, '--http-addr', '127.0.0.1:0'],
      { NATS_USER: 'simulator', NATS_PASSWORD: SIMULATOR_PASSWORD },
    );
    try {
      await waitAll('7 htmltest simulator', t0, [['htmltest card', card('htmltest')]], 15_000);
      await waitAll('7 htmltest simulator', t0, [['htmltest HEALTHY', cardWith('htmltest', 'HEALTHY')]], 15_000);
      assert.equal(await page.locator('[data-testid=service-card]').count(), cardsBefore + 1, 'htmltest is the only new card');
      await waitSel(page, `${card('htmltest')} [data-testid=instance]`, { state: 'visible', timeoutMs: 5000 });
      assert.equal(await page.locator(`${card('htmltest')} [data-testid=instance]`).innerText(), instance);
      assert.ok(await page.getByText(instance, { exact: true }).first().isVisible(), 'the literal text is visible');
      const dom = await pageEval(() => ({
        imgs: document.querySelectorAll('img').length,
        pwned: /** @type {any} */ (window).__pwned,
        html: document.querySelector('[data-service=htmltest] [data-testid=instance]')?.innerHTML ?? null,
      }));
      assert.equal(dom.imgs, 0, 'no <img> element was created');
      assert.equal(dom.pwned, undefined, 'window.__pwned is undefined');
      assert.equal(dom.html, '&lt;img/src="x"/onerror="window.__pwned=1"&gt;', 'escaped in the DOM');
      // In full (the card cuts a long id with an ellipsis) in the data panel's header, which
      // also fetches htmltest's own /data.
      await page.locator(`${card('htmltest')} [data-testid=data-button]`).click({ timeout: 5000 });
      const panel = '[data-testid=data-panel][data-service=htmltest]';
      await waitSel(page, `${panel} [data-testid=data-ok]`, { timeoutMs: 10_000 });
      const inPanel = page.locator(`${panel} [data-testid=data-instance] code`);
      assert.equal(await inPanel.innerText(), instance);
      const line = page.locator(`${panel} [data-testid=data-instance]`);
      assert.ok(await line.evaluate((el) => el.scrollWidth <= el.clientWidth + 0.5), 'shown whole, not clipped');
      assert.match(await page.locator(`${panel} [data-testid=data-ok]`).innerText(), /orders/);
      assert.equal(await pageEval(() => document.querySelectorAll('img').length), 0, 'still no <img>');
      await screenshot(page, '07-html-as-text');
      await page.locator(`${panel} [data-testid=data-close]`).click({ timeout: 5000 });
      // The instance id also lands in the page's memory and its data panel; still nothing runs.
      assert.equal(await pageEval(() => /** @type {any} */ (window).__pwned), undefined);
    } finally {
      sim.child.kill('SIGTERM');
      if ((await sim.exitWithin(10_000)) === null) sim.child.kill('SIGKILL');
    }
    await waitSel(page, cardWith('htmltest', 'DOWN'), { timeoutMs: 10_000 });
    assert.equal(await pageEval(() => /** @type {any} */ (window).__pwned), undefined);
    assert.deepEqual(browser?.pageErrors ?? [], [], 'no uncaught error on the page');
    // The control: the same string parsed as HTML does run, so the checks above mean something.
    await pageEval((html) => {
      const box = document.createElement('div');
      box.id = 'e2e-control';
      box.hidden = true;
      box.innerHTML = html;
      document.body.append(box);
    }, instance);
    await page.waitForFunction(() => /** @type {any} */ (window).__pwned === 1, null, { timeout: 5000 });
    await pageEval(() => document.getElementById('e2e-control')?.remove());
  });
  step('8. the agent card: the host’s figures, and a host panel with per-core bars, load, disk and top processes', '08-agent', null, async () => {
    const agentCard = '[data-testid=service-card][data-sample-source=agent]';
    const name = await page.locator(agentCard).first().getAttribute('data-service');
    assert.ok(name, 'the agent card has a service name');
    const t0 = performance.now();
    // Its status is the monitor's word on this host's real figures (a busy machine may be
    // DEGRADED by HIGH_CPU), so it is only required to be reporting.
    await waitAll('8 agent', t0, [[`${name} reporting`, `${agentCard}:is([data-status=HEALTHY], [data-status=DEGRADED])`]], 15_000);
    // Real figures: CPU and memory are numbers (an agent has them), the host line counts cores.
    await waitSel(page, `${agentCard} [data-figure=cpu]:text-matches("^\\\\d+\\\\.\\\\d%$")`, { timeoutMs: 10_000 });
    assert.match(await page.locator(`${agentCard} [data-figure=mem]`).innerText(), /^\d+\.\d%$/);
    assert.equal(await page.locator(`${agentCard} [data-figure=p95]`).innerText(), 'n/a', 'an agent measures no latency');
    const summary = await page.locator(`${agentCard} [data-testid=host-summary]`).innerText();
    const cores = Number(/(\d+) cores/.exec(summary)?.[1]);
    assert.ok(cores >= 1, `the host line counts cores: ${JSON.stringify(summary)}`);
    await page.locator(`${agentCard} [data-testid=host-button]`).click({ timeout: 5000 });
    const panel = `[data-testid=host-panel][data-service="${name}"]`;
    await waitSel(page, panel, { state: 'visible', timeoutMs: 5000 });
    timings.add('8 agent', 'host panel open', since(t0));
    assert.equal(await page.locator(`${panel} [data-testid=host-core]`).count(), cores, 'one bar per core');
    assert.match(await page.locator(`${panel} [data-testid=host-load]`).innerText(), /^\d+\.\d\d \/ \d+\.\d\d \/ \d+\.\d\d$/);
    assert.match(await page.locator(`${panel} [data-testid=host-disk]`).innerText(), /^(\d+\.\d%|n\/a)$/);
    assert.ok(Number((await page.locator(`${panel} [data-testid=host-procs]`).innerText()).replace(/,/g, '')) > 0, 'processes counted');
    // The busiest processes (the first reading may have none: CPU shares need two).
    await waitSel(page, `${panel} [data-testid=host-proc]`, { timeoutMs: 10_000 });
    const procs = await page.locator(`${panel} [data-testid=host-proc]`).count();
    assert.ok(procs >= 1 && procs <= 5, `1-5 top processes: ${procs}`);
    assert.equal(await pageEval(() => document.querySelectorAll('img').length), 0, 'process names are text');
    await screenshot(page, '08-agent-host');
    await page.keyboard.press('Escape');
    await waitSel(page, panel, { state: 'detached', timeoutMs: 5000 });
  });

  step('9. a target added from the page: its card, DOWN when its server stops, gone when removed', '09-target', null, async (t) => {
    const server = await startHttpTarget();
    const svc = 'e2e-target';
    const fillForm = async () => {
      await page.locator('[data-testid=target-service]').fill(svc);
      await page.locator('[data-testid=target-endpoint]').fill(server.url);
      await page.locator('[data-testid=target-interval]').fill('500');
      await page.locator('[data-testid=target-submit]').click({ timeout: 5000 });
    };
    const useToken = async (token) => {
      await page.locator('[data-testid=operator-button]').click({ timeout: 5000 });
      await page.locator('[data-testid=operator-token]').fill(token);
      await page.locator('[data-testid=operator-save]').click({ timeout: 5000 });
      await waitSel(page, '[data-testid=add-target]', { state: 'visible', timeoutMs: 5000 });
    };
    try {
      // Without a token there is no form and no remove button.
      assert.equal(await page.locator('[data-testid=add-target]').count(), 0, 'no form without a token');
      assert.equal(await page.locator('[data-testid=remove-button]').count(), 0, 'no remove button without a token');

      // A wrong token: the gateway's 401, said as such; nothing added.
      await useToken('not-the-operator-token');
      await fillForm();
      await waitSel(page, '[data-testid=target-error]:text-matches("operator token was refused")', { timeoutMs: 10_000 });
      await page.locator('[data-testid=operator-forget]').click({ timeout: 5000 });
      await waitSel(page, '[data-testid=add-target]', { state: 'detached', timeoutMs: 5000 });
      // The token is kept in sessionStorage only: not in the URL, not in localStorage.
      assert.ok(!page.url().includes('token'), `the page URL holds no token: ${page.url()}`);

      await useToken(OPERATOR_TOKEN);
      const stored = await pageEval(() => ({ session: sessionStorage.getItem('vitals.operator-token.v1'), local: JSON.stringify(localStorage) }));
      assert.equal(stored.session, OPERATOR_TOKEN, 'held in sessionStorage');
      assert.ok(!stored.local.includes(OPERATOR_TOKEN), 'not in localStorage');
      let t0 = performance.now();
      await fillForm();
      await waitAll(
        '9 add target',
        t0,
        [
          ['PUT answered ok', '[data-testid=target-added]'],
          [`${svc} card`, card(svc)],
          [`${svc} HEALTHY`, cardWith(svc, 'HEALTHY')],
          [`${svc} probe ok`, `${card(svc)} [data-testid=probe-result][data-ok=true]`],
        ],
        20_000,
      );
      assert.equal(await page.locator(`${card(svc)}[data-sample-source=probe]`).count(), 1, 'a probe card');
      assert.match(await page.locator(`${card(svc)} [data-testid=probe-result]`).innerText(), /HTTP 200/);
      await waitSel(page, `${card(svc)} [data-testid=apdex]:text-matches("Apdex [01]\\\\.\\\\d\\\\d")`, { timeoutMs: 10_000 });
      assert.equal(await page.locator(`${card(svc)} [data-figure=cpu]`).innerText(), 'n/a', 'a probe has no CPU: n/a, not 0');
      assert.ok(server.requests() > 0, 'the prober reached the server');
      await waitSel(page, `[data-testid=target-count]:has-text("${svc}")`, { timeoutMs: 5000 });
      await screenshot(page, '09a-target-added');

      // The server stops: DOWN, with the probe's reason and SERVICE_DOWN listed.
      t0 = performance.now();
      await server.stop();
      await waitAll(
        '9 target server stopped',
        t0,
        [
          [`${svc} DOWN`, cardWith(svc, 'DOWN')],
          [`SERVICE_DOWN ${svc} listed`, alertSel('SERVICE_DOWN', svc)],
          [`${svc} probe failed`, `${card(svc)} [data-testid=probe-result][data-ok=false]`],
        ],
        20_000,
      );
      const downMs = timings.rows.find((r) => r.step === '9 target server stopped' && r.transition === `${svc} DOWN`)?.ms;
      t.diagnostic(`server stopped -> ${svc} DOWN on the page: ${downMs} ms (probe interval 500 ms, down_after 2)`);
      for (const s of SERVICES) assert.equal(await page.locator(cardWith(s, 'HEALTHY')).count(), 1, `${s} stays HEALTHY`);
      await screenshot(page, '09b-target-down');

      // Removed from the page: asked once more, DELETE, retired, the card goes.
      await page.locator(`${card(svc)} [data-testid=remove-button]`).click({ timeout: 5000 });
      await page.locator(`${card(svc)} [data-testid=remove-confirm]`).click({ timeout: 5000 });
      t0 = performance.now();
      await waitAll(
        '9 target removed',
        t0,
        [
          [`${svc} card gone`, card(svc), 'detached'],
          [`SERVICE_DOWN ${svc} gone`, alertSel('SERVICE_DOWN', svc), 'detached'],
        ],
        20_000,
      );
      await page.waitForFunction(
        (name) => !(document.querySelector('[data-testid=target-count]')?.textContent ?? name).includes(name),
        svc,
        { timeout: 5000 },
      );
      for (const s of SERVICES) assert.equal(await page.locator(cardWith(s, 'HEALTHY')).count(), 1, `${s} HEALTHY`);
      // Every frame the gateway sent (probe and agent summaries among them) parsed.
      assert.equal(await page.locator('[data-testid=connection-state]').getAttribute('data-rejected'), '0', 'no feed frame refused by the parsers');
      await screenshot(page, '09c-target-removed');
    } finally {
      await server.stop();
    }
  });
  step('10. silence from a card, the silenced mark, expire from the list, ack and "acked by"; the inbox receives the notifier\'s notifications', '10-alerting', '10-alerting', async () => {
    // The operator token from step 9 is still held (sessionStorage): the silence list shows.
    await waitSel(page, '[data-testid=silences]', { state: 'visible', timeoutMs: 5000 });
    const alert = alertSel('SERVICE_DOWN', 'billing');
    // The inbox panel, open: read every few seconds (memory only: it holds what the notifier
    // sent since the gateway's restart in step 6).
    await page.locator('[data-testid=inbox] summary').click({ timeout: 5000 });
    await waitSel(page, '[data-testid=inbox] :is([data-testid=inbox-item], [data-testid=inbox-empty])', { timeoutMs: 10_000 });
    // How many inbox items say `text` (in the page: Playwright's :has-text is not CSS). A
    // notification batches what fires and resolves together, so the resolve may come in one
    // whose own status is firing: counted by the alert's own status in the text.
    const inboxCount = (text) => [...document.querySelectorAll('[data-testid=inbox-item]')].filter((i) => (i.textContent ?? '').includes(text)).length;
    const resolvedBilling = 'SERVICE_DOWN billing resolved';
    const resolvedBefore = await pageEval(inboxCount, resolvedBilling);

    let t0 = performance.now();
    const pid = await stack.kill9('billing');
    await waitAll('10 kill -9 billing', t0, [['billing DOWN', cardWith('billing', 'DOWN')], ['SERVICE_DOWN billing listed', alert]], 15_000);
    await stack.waitGone(pid);

    // Silence 1 h from billing's card: listed, and the monitor marks the alert silenced.
    t0 = performance.now();
    await page.locator(`${card('billing')} [data-testid=silence-button]`).click({ timeout: 5000 });
    await waitAll(
      '10 silence from the card',
      t0,
      [
        ['silence listed', '[data-testid=silence][data-service=billing]'],
        ['alert marked silenced', `${alert} [data-mark=silenced]`],
        ['card chip marked silenced', `${card('billing')} [data-mark=silenced]`],
      ],
      15_000,
    );
    assert.equal(await page.locator(`${alert} [data-mark=silenced]`).innerText(), 'silenced');
    await screenshot(page, '10a-silenced');

    // Expire it from the list: gone from the list, the mark lifted.
    t0 = performance.now();
    await page.locator('[data-testid=silence][data-service=billing] [data-testid=silence-expire]').click({ timeout: 5000 });
    await waitAll(
      '10 expire from the list',
      t0,
      [
        ['silence gone', '[data-testid=silence][data-service=billing]', 'detached'],
        ['silenced mark gone', `${alert} [data-mark=silenced]`, 'detached'],
      ],
      15_000,
    );

    // Ack: "acked by dashboard" on the alert, and no Ack button any more.
    t0 = performance.now();
    await page.locator(`${alert} [data-testid=ack-button]`).click({ timeout: 5000 });
    await waitAll(
      '10 ack',
      t0,
      [
        ['acked by shown', `${alert} [data-mark=acked]:text("acked by dashboard")`],
        ['ack button gone', `${alert} [data-testid=ack-button]`, 'detached'],
      ],
      15_000,
    );
    await waitSel(page, '[data-testid=inbox-item]:has-text("SERVICE_DOWN billing firing")', { timeoutMs: 20_000 });
    await screenshot(page, '10b-acked');

    // Back: HEALTHY, the alert gone, and the notifier's resolve reaches the inbox.
    t0 = performance.now();
    await stack.start('billing');
    await waitAll(
      '10 billing restarted',
      t0,
      [
        ['billing HEALTHY', cardWith('billing', 'HEALTHY')],
        ['SERVICE_DOWN billing gone', alert, 'detached'],
      ],
      20_000,
    );
    await waitFor('the resolve of SERVICE_DOWN billing in the inbox', async () => (await pageEval(inboxCount, resolvedBilling)) > resolvedBefore, {
      timeoutMs: 20_000,
      everyMs: 200,
    });
    timings.add('10 billing restarted', 'resolve in the inbox', since(t0));
    assert.equal(await page.locator('[data-testid=connection-state]').getAttribute('data-rejected'), '0', 'no feed frame refused by the parsers');
  });
  step('11. auth down, then billing and notifications (they depend on auth): grouped under auth ("auth DOWN, 2 dependants affected"), marked inhibited; auth back: the marks lifted', '11-root-cause', '11-root-cause', async () => {
    const deps = ['billing', 'notifications'];
    let t0 = performance.now();
    const authPid = await stack.kill9('auth');
    await waitAll('11 kill -9 auth', t0, [['auth DOWN', cardWith('auth', 'DOWN')], ['SERVICE_DOWN auth listed', alertSel('SERVICE_DOWN', 'auth')]], 15_000);
    await stack.waitGone(authPid);
    t0 = performance.now();
    const pids = [];
    for (const d of deps) pids.push(await stack.kill9(d));
    await waitAll(
      '11 kill -9 the dependants',
      t0,
      [
        ...deps.map((d) => [`${d} inhibited by auth`, `${alertSel('SERVICE_DOWN', d)} [data-mark=inhibited]:text("inhibited by auth")`]),
        ['grouped under auth', `${card('auth')} [data-testid=root-cause][data-dependants="2"]`],
      ],
      15_000,
    );
    for (const pid of pids) await stack.waitGone(pid);
    const group = page.locator(`${card('auth')} [data-testid=root-cause]`);
    assert.equal(await group.locator('summary').innerText(), 'auth DOWN, 2 dependants affected');
    await group.locator('summary').click({ timeout: 5000 });
    assert.deepEqual(await group.locator('[data-testid=dependant]').allInnerTexts(), deps);
    assert.equal(await page.locator(`${alertSel('SERVICE_DOWN', 'auth')} [data-mark=inhibited]`).count(), 0, 'the root is not inhibited');
    await screenshot(page, '11a-grouped');

    // auth recovers first: the dependants still fire, no longer inhibited, and the group goes.
    t0 = performance.now();
    await stack.start('auth');
    await waitAll(
      '11 auth restarted',
      t0,
      [
        ['auth HEALTHY', cardWith('auth', 'HEALTHY')],
        ['group gone', `${card('auth')} [data-testid=root-cause]`, 'detached'],
        ...deps.map((d) => [`${d} inhibition lifted`, `${alertSel('SERVICE_DOWN', d)} [data-mark=inhibited]`, 'detached']),
      ],
      20_000,
    );
    for (const d of deps) assert.equal(await page.locator(alertSel('SERVICE_DOWN', d)).count(), 1, `${d} still fires`);
    t0 = performance.now();
    for (const d of deps) await stack.start(d);
    await waitAll('11 dependants restarted', t0, deps.map((d) => [`${d} HEALTHY`, cardWith(d, 'HEALTHY')]), 20_000);
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=root-cause]').length === 0, null, { timeout: 5000 });
    for (const s of SERVICES) assert.equal(await page.locator(cardWith(s, 'HEALTHY')).count(), 1, `${s} HEALTHY`);
  });
});
