// Plumbing for the end-to-end test: the native stack (scripts/stack.sh) on spare ports, the
// headless browser (Debian's chromium driven by playwright-core), bounded waits that record how
// long each transition took, screenshots and log dumps. No fixed sleeps: every wait is for a
// state, with a timeout; the only timed pauses are observation windows (watching that something
// does NOT happen), and they say so.

import { execFile, spawn } from 'node:child_process';
import http from 'node:http';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync, copyFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

export const ROOT = resolve(import.meta.dirname, '../..');
export const OUT_DIR = join(ROOT, 'target/e2e');
export const STACK = join(ROOT, 'scripts/stack.sh');
export const BIN_DIR = join(ROOT, 'target/debug');

// Spare ports, different from scripts/stack-test.sh's (14222/18222/19100/18080/15173/13000).
export const PORTS = {
  NATS_PORT: Number(process.env.E2E_NATS_PORT ?? 24222),
  NATS_HTTP_PORT: Number(process.env.E2E_NATS_HTTP_PORT ?? 28222),
  MONITOR_PORT: Number(process.env.E2E_MONITOR_PORT ?? 29100),
  PROBER_PORT: Number(process.env.E2E_PROBER_PORT ?? 29101),
  AGENT_PORT: Number(process.env.E2E_AGENT_PORT ?? 29102),
  GATEWAY_PORT: Number(process.env.E2E_GATEWAY_PORT ?? 28080),
  NOTIFIER_PORT: Number(process.env.E2E_NOTIFIER_PORT ?? 29103),
  DASHBOARD_PORT: Number(process.env.E2E_DASHBOARD_PORT ?? 25173),
  SIM_PORT_BASE: Number(process.env.E2E_SIM_PORT_BASE ?? 23000),
};
export const SERVICES = ['auth', 'billing', 'notifications', 'analytics'];
export const PARTS = ['nats', 'monitor', 'gateway', ...SERVICES, 'prober', 'agent', 'notifier', 'dashboard'];
export const simPort = (svc) => PORTS.SIM_PORT_BASE + SERVICES.indexOf(svc) + 1;
export const DASHBOARD_URL = `http://127.0.0.1:${PORTS.DASHBOARD_PORT}/`;
export const NATS_URL = `nats://127.0.0.1:${PORTS.NATS_PORT}`;
/** The simulator role's development password: the same default as scripts/stack.sh. */
export const SIMULATOR_PASSWORD = process.env.VITALS_SIMULATOR_PASSWORD ?? 'simulator-dev';
/** The gateway's operator token: the same default as scripts/stack.sh (passed to it as well). */
export const OPERATOR_TOKEN = process.env.VITALS_OPERATOR_TOKEN ?? 'vitals-operator-dev';

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const ms = (t0) => Math.round(performance.now() - t0);

// ---------------------------------------------------------------------------------------------
// Timings: every bounded wait can record how long its transition took.

export class Timings {
  rows = [];
  add(step, transition, millis, note = '') {
    this.rows.push({ step, transition, ms: millis, note });
  }
  table() {
    const head = ['step', 'transition', 'ms', 'note'];
    const cells = this.rows.map((r) => [r.step, r.transition, r.ms === null ? '–' : String(r.ms), r.note]);
    const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
    const line = (c) => c.map((x, i) => (i === 2 ? x.padStart(w[i]) : x.padEnd(w[i]))).join('  ').trimEnd();
    return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...cells.map(line)].join('\n');
  }
}

// ---------------------------------------------------------------------------------------------
// Processes

/** Runs a command; resolves with { code, stdout, stderr }, never rejects on a non-zero exit. */
export function run(cmd, args, { env = process.env, timeoutMs = 60_000, cwd = ROOT } = {}) {
  return new Promise((res) => {
    execFile(cmd, args, { env, cwd, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : err.killed ? `killed (${err.signal})` : String(err.code)) : 0;
      res({ code, stdout, stderr });
    });
  });
}

export function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** True when `pid` is gone or a zombie (killed but not yet reaped by its parent). */
function isDeadOrZombie(pid) {
  if (!isAlive(pid)) return true;
  try {
    // /proc/PID/stat: "pid (comm) S ..."; comm may contain spaces and parentheses.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}

/** Resolves when `cond()` is true, polling every `everyMs`; rejects after `timeoutMs`. */
export async function waitFor(what, cond, { timeoutMs, everyMs = 50 }) {
  const t0 = performance.now();
  for (;;) {
    if (await cond()) return ms(t0);
    if (performance.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

async function portAnswers(port) {
  return new Promise((res) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.setTimeout(500);
    s.once('connect', () => (s.destroy(), res(true)));
    s.once('timeout', () => (s.destroy(), res(false)));
    s.once('error', () => res(false));
  });
}

/** The native stack (scripts/stack.sh) in its own run directory on the ports above. */
export class Stack {
  constructor() {
    this.ownDir = !process.env.VITALS_RUN_DIR;
    this.runDir = process.env.VITALS_RUN_DIR ?? mkdtempSync(join(tmpdir(), 'vitals-e2e-'));
    // The prober starts with no targets (stack.sh's default file would add a card per
    // simulator and one for NATS to every step); the test adds its own through the page.
    this.targetsFile = join(this.runDir, 'e2e-targets.toml');
    writeFileSync(this.targetsFile, '# scripts/e2e: no file targets; the test adds its own from the page (KV vitals_targets)\n');
    this.env = {
      ...process.env,
      VITALS_RUN_DIR: this.runDir,
      VITALS_PROFILE: 'debug',
      VITALS_NO_BUILD: '1',
      VITALS_TARGETS: this.targetsFile,
      VITALS_OPERATOR_TOKEN: OPERATOR_TOKEN,
      ...Object.fromEntries(Object.entries(PORTS).map(([k, v]) => [k, String(v)])),
    };
    delete this.env.VITALS_PARTS;
    this.extra = new Set(); // running processes the test started itself (simulators)
    this.spawned = []; // all of them, for their logs
  }

  async checkPortsFree() {
    const ports = [
      PORTS.NATS_PORT,
      PORTS.NATS_HTTP_PORT,
      PORTS.MONITOR_PORT,
      PORTS.PROBER_PORT,
      PORTS.AGENT_PORT,
      PORTS.GATEWAY_PORT,
      PORTS.NOTIFIER_PORT,
      PORTS.DASHBOARD_PORT,
      ...SERVICES.map(simPort),
    ];
    const busy = [];
    for (const p of ports) if (await portAnswers(p)) busy.push(p);
    if (busy.length > 0) {
      throw new Error(`ports already in use: ${busy.join(', ')} (a stack left over from another run? ` + 'override with E2E_*_PORT)');
    }
  }

  async sh(...args) {
    const r = await run(STACK, args, { env: this.env, timeoutMs: 90_000 });
    if (r.code !== 0) throw new Error(`stack.sh ${args.join(' ')} exited ${r.code}\n${r.stdout}${r.stderr}`);
    return r.stdout;
  }

  up() {
    return this.sh('up');
  }
  start(part) {
    return this.sh('start', part);
  }
  stop(part) {
    return this.sh('stop', part);
  }

  pid(part) {
    const pid = Number(readFileSync(join(this.runDir, `${part}.pid`), 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 1) throw new Error(`no pid for ${part}`);
    return pid;
  }

  /**
   * SIGKILL by PID, then waits (bounded) until the process is really gone, so a later
   * `stack.sh start` does not take a not-yet-reaped zombie for a running part (stack.sh checks
   * with `kill -0`; where PID 1 reaps orphans only every few seconds, that matters).
   */
  async kill9(part) {
    const pid = this.pid(part);
    process.kill(pid, 'SIGKILL');
    return pid;
  }
  async waitGone(pid, timeoutMs = 15_000) {
    await waitFor(`pid ${pid} to exit`, () => isDeadOrZombie(pid), { timeoutMs });
    await waitFor(`pid ${pid} to be reaped`, () => !isAlive(pid), { timeoutMs });
  }

  /** Starts a simulator directly (not through stack.sh); it is killed at teardown. */
  spawnSimulator(args, env = {}) {
    const child = spawn(join(BIN_DIR, 'simulator'), args, {
      cwd: ROOT,
      env: { ...process.env, NATS_USER: undefined, NATS_PASSWORD: undefined, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    const keep = (b) => {
      log = (log + b.toString()).slice(-20_000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const exited = new Promise((res) => child.once('exit', (code, signal) => res({ code, signal })));
    /** Resolves with the exit, or with null after `ms` (the timer does not keep node alive). */
    const exitWithin = (ms) =>
      new Promise((res) => {
        const timer = setTimeout(() => res(null), ms);
        exited.then((e) => {
          clearTimeout(timer);
          res(e);
        });
      });
    const handle = { args, child, exited, exitWithin, log: () => log };
    this.extra.add(handle);
    this.spawned.push(handle);
    exited.then(() => this.extra.delete(handle));
    return handle;
  }

  logTails(lines = 25) {
    if (!existsSync(this.runDir)) return '(no run directory)';
    const out = [];
    for (const f of readdirSync(this.runDir).filter((n) => n.endsWith('.log')).sort()) {
      const text = readFileSync(join(this.runDir, f), 'utf8').split('\n');
      out.push(`----- ${f} (last ${lines} lines) -----`, ...text.slice(-lines - 1));
    }
    for (const h of this.spawned) out.push(`----- simulator ${JSON.stringify(h.args)} (started by the test) -----`, h.log());
    return out.join('\n');
  }

  /** Copies the stack's logs to target/e2e/logs/ (for a failed run). */
  saveLogs() {
    if (!existsSync(this.runDir)) return;
    const dir = join(OUT_DIR, 'logs');
    mkdirSync(dir, { recursive: true });
    for (const f of readdirSync(this.runDir).filter((n) => n.endsWith('.log'))) copyFileSync(join(this.runDir, f), join(dir, f));
  }

  async down() {
    for (const h of this.extra) {
      h.child.kill('SIGKILL');
      await h.exited;
    }
    const r = await run(STACK, ['down'], { env: this.env, timeoutMs: 120_000 });
    if (this.ownDir) rmSync(this.runDir, { recursive: true, force: true });
    return r;
  }

  /** For a signal handler: no awaiting. */
  downSync(spawnSyncFn) {
    for (const h of this.extra) h.child.kill('SIGKILL');
    spawnSyncFn(STACK, ['down'], { env: this.env, stdio: 'ignore', timeout: 60_000 });
  }
}

// ---------------------------------------------------------------------------------------------
// A real HTTP server for the prober to watch

/**
 * Serves `GET /health` (200, `{"status":"ok"}`) on 127.0.0.1 at a free port. `stop()` closes
 * the listener and every open connection (a prober's keep-alive connection too), so the next
 * probe is refused.
 */
export async function startHttpTarget() {
  let requests = 0;
  const server = http.createServer((req, res) => {
    requests += 1;
    const ok = req.url === '/health' || req.url?.startsWith('/health?');
    res.writeHead(ok ? 200 : 404, { 'Content-Type': 'application/json' });
    res.end(ok ? '{"status":"ok"}' : '{"error":"not found"}');
  });
  await new Promise((res, rej) => {
    server.once('error', rej);
    server.listen(0, '127.0.0.1', () => res(undefined));
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  let stopped = false;
  return {
    port,
    url: `http://127.0.0.1:${port}/health`,
    requests: () => requests,
    async stop() {
      if (stopped) return;
      stopped = true;
      const closed = new Promise((res) => server.close(() => res(undefined)));
      server.closeAllConnections();
      await closed;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Browser

/**
 * Debian's chromium, headless, with a fresh profile. The page is instrumented (before any of its
 * own scripts run) to record every fetch() it makes with the banner state at that moment, and
 * every change of the banner's data-state, both on the page's own clock (performance.now()).
 */
export async function launchBrowser() {
  const profile = mkdtempSync(join(tmpdir(), 'vitals-e2e-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1440, height: 900 },
    colorScheme: 'light',
    reducedMotion: 'reduce',
  });
  await context.addInitScript(() => {
    const w = /** @type {any} */ (window);
    const bannerState = () => document.querySelector('[data-testid=connection-state]')?.getAttribute('data-state') ?? null;
    w.__e2eFetches = [];
    const orig = window.fetch;
    window.fetch = function (input, init) {
      const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
      w.__e2eFetches.push({ url, t: performance.now(), state: bannerState() });
      return orig.call(this, input, init);
    };
    w.__e2eBanner = [];
    let last = null;
    const check = () => {
      const s = bannerState();
      if (s !== last) {
        last = s;
        w.__e2eBanner.push({ state: s, t: performance.now() });
      }
    };
    new MutationObserver(check).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-state'] });
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const pageErrors = [];
  const consoleErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e?.stack ?? e)));
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('dialog', (d) => void d.dismiss());
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, page, pageErrors, consoleErrors, close, profile };
}

/** Waits for a selector to reach a state (attached by default); returns the ms it took. */
export async function waitSel(page, selector, { state = 'attached', timeoutMs = 10_000 } = {}) {
  const t0 = performance.now();
  try {
    await page.locator(selector).first().waitFor({ state, timeout: timeoutMs });
  } catch (e) {
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${selector} to be ${state}`, { cause: e });
  }
  return ms(t0);
}

export async function screenshot(page, name) {
  mkdirSync(OUT_DIR, { recursive: true });
  const path = join(OUT_DIR, `${name}.png`);
  await page.screenshot({ path, fullPage: true, timeout: 10_000 });
  return path;
}

/** Clears the previous run's screenshots and logs. */
export function resetOutDir() {
  rmSync(OUT_DIR, { recursive: true, force: true });
  mkdirSync(OUT_DIR, { recursive: true });
}

export function writeOut(name, text) {
  mkdirSync(OUT_DIR, { recursive: true });
  writeFileSync(join(OUT_DIR, name), text);
}

export const card = (svc) => `[data-testid=service-card][data-service="${svc}"]`;
export const cardWith = (svc, status) => `${card(svc)}[data-status=${status}]`;
export const banner = (state) => `[data-testid=connection-state][data-state="${state}"]`;
export const alertSel = (name, svc) => `[data-testid=alert][data-alert=${name}][data-service="${svc}"]`;
