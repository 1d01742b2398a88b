// The one place that talks to the outside: the gateway's WebSocket (with reconnect backoff and
// a silence watchdog), the monitor-heartbeat freshness timer, the health polling in fallback
// and monitor-down mode (HealthPoller), the history (HistoryFetcher) and /data fetches, and the
// per-frame batching of feed messages. Components read its $state fields; everything that
// decides something is a pure function in reducer.ts, fallback.ts or backoff.ts.

import { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from './backoff';
import {
  dataUrlFor,
  forgetUrls,
  healthTargets,
  loadStoredUrls,
  parseConfigHealth,
  rememberUrls,
  loadStoredOrigins,
  saveStoredOrigins,
  saveStoredUrls,
  type HealthCheck,
  type HealthCheckResult,
  type HealthTarget,
  type StorageLike,
} from './fallback';
import { HistoryFetcher } from './history.svelte';
import { HealthPoller } from './poller.svelte';
import { parseFeedMessage, RESYNC_MESSAGE, type StatusChange } from './protocol';
import {
  announceStatusChanges,
  checkSeq,
  compareNames,
  deriveMode,
  initialState,
  isMonitorFresh,
  mergeHistory,
  monitorExpiresAtMs,
  monitorTimeoutMs,
  newSeqTracker,
  reduceBatch,
  statusRank,
  type ConnectionMode,
  type DashboardState,
  type Received,
  type SeqTracker,
} from './reducer';

/** The part of the WebSocket API used here (the browser's, or a test double). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
}
export type WebSocketCtor = new (url: string) => WebSocketLike;

export interface ConnectionDeps {
  WebSocket: WebSocketCtor;
  fetch: typeof fetch;
  /** Browser clock, epoch ms. */
  now: () => number;
  random: () => number;
  setTimeout: (cb: () => void, ms: number) => unknown;
  clearTimeout: (handle: unknown) => void;
  /** Runs `cb` once soon (next animation frame); returns a cancel function. */
  requestFrame: (cb: () => void) => () => void;
  storage: StorageLike | null;
}

export interface ConnectionOptions {
  /** Absolute ws:// or wss:// URL of the gateway's /ws (without the token). */
  wsUrl: string;
  /** Prefix for /api/... ('' = same origin). */
  apiBase: string;
  /** Sent as `?token=` on /ws and /api when set. */
  token: string | null;
  /** Health URLs configured for the page (`?health=` or config.json). */
  configuredHealth: { service: string; url: string }[];
  /** Fetched once at start for more configured health URLs (`{"health": [...]}`); null: none. */
  configUrl: string | null;
  /** Override of the monitor heartbeat timeout (default 3.5 s, or 3.5 heartbeat intervals). */
  monitorTimeoutMs: number | null;
  pollIntervalMs: number;
  pollTimeoutMs: number;
  /** Parallel health probes per origin (a browser opens about 6 connections per host). */
  pollConcurrencyPerOrigin: number;
  backoff: BackoffOptions;
  /** A WebSocket that neither opens nor fails within this long is given up. */
  connectTimeoutMs: number;
  /** After this long without any message, ask for a snapshot to prove the socket is alive. */
  silenceMs: number;
  /** A requested snapshot that does not come within this long closes the socket. */
  resyncTimeoutMs: number;
  historyLimit: number;
  /** A history fetch after a resync first waits a random 0 to this long (spreads a stampede). */
  historyJitterMs: number;
  /** At most one history fetch per this long; requests meanwhile wait for it. */
  historyMinIntervalMs: number;
  /** After the gateway says its feed is live again, wait this long for its snapshot before
   * asking for one. */
  liveAgainResyncMs: number;
  dataTimeoutMs: number;
}

export const DEFAULT_OPTIONS: Omit<ConnectionOptions, 'wsUrl'> = {
  apiBase: '',
  token: null,
  configuredHealth: [],
  configUrl: null,
  monitorTimeoutMs: null,
  pollIntervalMs: 2000,
  pollTimeoutMs: 1500,
  pollConcurrencyPerOrigin: 6,
  backoff: DEFAULT_BACKOFF,
  connectTimeoutMs: 5000,
  silenceMs: 10_000,
  resyncTimeoutMs: 5000,
  historyLimit: 100,
  historyJitterMs: 2000,
  historyMinIntervalMs: 5000,
  liveAgainResyncMs: 3000,
  dataTimeoutMs: 8000,
};

/** Messages queued for the next frame beyond this are dropped in favour of a resync. */
const MAX_QUEUE = 50_000;
/** Remembered health URLs are written at most this often. */
const STORAGE_WRITE_MS = 2000;

export type DataResult =
  | { ok: true; url: string; status: number; body: unknown }
  | { ok: false; url: string | null; status: number | null; error: string };

export function browserDeps(): ConnectionDeps {
  let storage: StorageLike | null = null;
  try {
    storage = window.localStorage;
  } catch {
    storage = null;
  }
  return {
    WebSocket: window.WebSocket as unknown as WebSocketCtor,
    fetch: window.fetch.bind(window),
    now: () => Date.now(),
    random: Math.random,
    setTimeout: (cb, ms) => window.setTimeout(cb, ms),
    clearTimeout: (h) => window.clearTimeout(h as number),
    // requestAnimationFrame does not run in a background tab; the timer makes sure the queue
    // is still drained (timers are throttled there, but run).
    requestFrame: (cb) => {
      let done = false;
      const run = () => {
        if (done) return;
        done = true;
        window.cancelAnimationFrame(raf);
        window.clearTimeout(timer);
        cb();
      };
      const raf = window.requestAnimationFrame(run);
      const timer = window.setTimeout(run, 100);
      return () => {
        done = true;
        window.cancelAnimationFrame(raf);
        window.clearTimeout(timer);
      };
    },
    storage,
  };
}

const CHECK_RANK: Record<HealthCheck, number> = { unreachable: 0, degraded: 1, up: 3 };

function withToken(url: string, token: string | null): string {
  if (!token) return url;
  return `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
}

export class Connection {
  // ---- state the components read ----
  /** The reduced feed: services, alerts, timeline, monitor heartbeat, gateway state. */
  view = $state.raw<DashboardState>(initialState());
  /** What the banner says; see deriveMode. */
  mode = $state<ConnectionMode>('connecting');
  wsOpen = $state(false);
  /** The monitor's heartbeat arrived within its timeout. */
  monitorFresh = $state(false);
  /** Browser clock, advanced every second: what ages ("5 s ago") are computed against. */
  now = $state(0);
  /** Health-check results by service name; empty unless polling (fallback or monitor down). */
  checks = $state.raw<ReadonlyMap<string, HealthCheckResult>>(new Map());
  /** What the poller polls (also services known only from memory or configuration). */
  targets = $state.raw<readonly HealthTarget[]>([]);
  /** Service names in fallback: unreachable first, then degraded, unchecked, up; then by name. */
  fallbackOrder = $state.raw<readonly string[]>([]);
  /** When the next reconnect attempt starts (browser clock); null when none is scheduled. */
  reconnectAtMs = $state<number | null>(null);
  /** Reconnect attempts since the last snapshot. */
  attempt = $state(0);
  /** Why the last WebSocket ended, for the banner. */
  lastClose = $state<string | null>(null);
  /** Text for the polite live region (status changes). */
  announcement = $state('');
  /** A resync was requested and its snapshot has not arrived yet. */
  awaitingResync = $state(false);
  resyncRequests = $state(0);
  /** Frames that did not parse (ignored). */
  rejectedMessages = $state(0);

  // ---- internals ----
  readonly #deps: ConnectionDeps;
  readonly #opts: ConnectionOptions;
  readonly #poller: HealthPoller;
  readonly #history: HistoryFetcher;
  #ws: WebSocketLike | null = null;
  #tracker: SeqTracker = newSeqTracker();
  #hasSnapshot = false;
  #everFailed = false;
  #queue: Received[] = [];
  #cancelFrame: (() => void) | null = null;
  #checksPending: Map<string, HealthCheckResult> | null = null;
  #connectTimer: unknown = null;
  #reconnectTimer: unknown = null;
  #freshTimer: unknown = null;
  #tickTimer: unknown = null;
  #storageTimer: unknown = null;
  #liveAgainTimer: unknown = null;
  #lastMessageMs = 0;
  #resyncSentMs: number | null = null;
  #stored: Readonly<Record<string, string>> = {};
  #storedDirty = false;
  /** The gateway's --health-origins, as last heard (remembered across reloads). */
  #origins: readonly string[] = [];
  #configured: { service: string; url: string }[];
  #started = false;

  constructor(options: Partial<ConnectionOptions> & { wsUrl: string }, deps: ConnectionDeps) {
    this.#opts = { ...DEFAULT_OPTIONS, ...options };
    this.#deps = deps;
    this.#configured = [...this.#opts.configuredHealth];
    this.now = deps.now();
    const o = this.#opts;
    this.#poller = new HealthPoller(
      { intervalMs: o.pollIntervalMs, timeoutMs: o.pollTimeoutMs, concurrencyPerOrigin: o.pollConcurrencyPerOrigin },
      deps,
      {
        targets: () => (this.targets = healthTargets(this.view.services.values(), this.#stored, this.#configured, this.#healthOrigins())),
        onResult: (r) => {
          (this.#checksPending ??= new Map(this.checks)).set(r.service, r);
          this.#scheduleFlush();
        },
        onRound: (results) => {
          // Services that are no longer targets lose their old result.
          const merged = this.#checksPending ?? new Map(this.checks);
          for (const k of [...merged.keys()]) if (!results.has(k)) merged.delete(k);
          this.#checksPending = merged;
          this.#flush();
        },
      },
    );
    this.#history = new HistoryFetcher(
      {
        url: withToken(`${o.apiBase}/api/history?limit=${o.historyLimit}`, o.token),
        jitterMs: o.historyJitterMs,
        minIntervalMs: o.historyMinIntervalMs,
        timeoutMs: 5000,
      },
      deps,
      (h) => (this.view = mergeHistory(this.view, h.events)),
    );
  }

  /** Health endpoints are being polled (fallback, or the monitor is down). */
  get polling(): boolean {
    return this.#poller.active;
  }
  /** Browser clock when the current stretch of polling began (null when not polling). */
  get pollingSinceMs(): number | null {
    return this.#poller.sinceMs;
  }
  /** Browser clock of the last completed poll round. */
  get lastPollMs(): number | null {
    return this.#poller.lastRoundMs;
  }
  /** `/api/history` fetches started so far. */
  get historyFetches(): number {
    return this.#history.fetches;
  }

  /** Loads remembered URLs, starts the clock and the first connection attempt. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#stored = loadStoredUrls(this.#deps.storage);
    this.#origins = loadStoredOrigins(this.#deps.storage);
    this.targets = healthTargets([], this.#stored, this.#configured, this.#origins);
    this.#tick();
    this.#connect();
    if (this.#opts.configUrl !== null) void this.#loadConfig(this.#opts.configUrl);
  }

  /** Closes the socket and stops every timer. */
  stop(): void {
    this.#started = false;
    this.#dropSocket();
    this.#stopPolling();
    this.#history.cancel();
    for (const t of [this.#connectTimer, this.#reconnectTimer, this.#freshTimer, this.#tickTimer, this.#storageTimer, this.#liveAgainTimer]) {
      if (t !== null) this.#deps.clearTimeout(t);
    }
    this.#connectTimer = this.#reconnectTimer = this.#freshTimer = this.#tickTimer = this.#storageTimer = this.#liveAgainTimer = null;
    this.#cancelFrame?.();
    this.#cancelFrame = null;
    this.reconnectAtMs = null;
    this.#flushStorage();
  }

  /** Skips the backoff wait and reconnects now (no-op while a socket is open or opening). */
  retryNow(): void {
    if (!this.#started || this.#ws !== null) return;
    if (this.#reconnectTimer !== null) this.#deps.clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    this.#connect();
  }

  /** Asks the gateway for a fresh snapshot; messages are ignored until it arrives. */
  requestResync(): void {
    const ws = this.#ws;
    if (ws === null || !this.wsOpen) return;
    this.#tracker = { ...this.#tracker, awaitingSnapshot: true };
    this.#sendResync(ws);
  }

  /** The health URL the page knows for a service (live view first, then memory/configuration). */
  healthUrlFor(service: string): string | null {
    const live = this.view.services.get(service)?.health_url;
    if (live) return live;
    return this.targets.find((t) => t.service === service)?.url ?? null;
  }

  /** Fetches a service's /data (the sibling of its health URL). Never throws. */
  async loadData(service: string, signal?: AbortSignal): Promise<DataResult> {
    const health = this.healthUrlFor(service);
    const url = health === null ? null : dataUrlFor(health);
    if (url === null) return { ok: false, url: null, status: null, error: 'no data URL known for this service' };
    const ctl = new AbortController();
    const abort = () => ctl.abort();
    signal?.addEventListener('abort', abort);
    let timedOut = false;
    const timer = this.#deps.setTimeout(() => {
      timedOut = true;
      ctl.abort();
    }, this.#opts.dataTimeoutMs);
    try {
      const res = await this.#deps.fetch(url, { mode: 'cors', cache: 'no-store', credentials: 'omit', signal: ctl.signal });
      const text = await res.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // not JSON: shown as text
      }
      if (!res.ok) return { ok: false, url, status: res.status, error: `HTTP ${res.status}` };
      return { ok: true, url, status: res.status, body };
    } catch (e) {
      const error = timedOut ? `timed out after ${this.#opts.dataTimeoutMs / 1000} s` : signal?.aborted ? 'cancelled' : `request failed (${e instanceof Error ? e.message : String(e)})`;
      return { ok: false, url, status: null, error };
    } finally {
      this.#deps.clearTimeout(timer);
      signal?.removeEventListener('abort', abort);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // WebSocket

  #connect(): void {
    this.#reconnectTimer = null;
    this.reconnectAtMs = null;
    this.#tracker = newSeqTracker();
    this.#hasSnapshot = false;
    this.awaitingResync = false;
    let ws: WebSocketLike;
    try {
      ws = new this.#deps.WebSocket(withToken(this.#opts.wsUrl, this.#opts.token));
    } catch (e) {
      this.lastClose = `could not open (${e instanceof Error ? e.message : String(e)})`;
      this.#failed();
      return;
    }
    this.#ws = ws;
    this.#connectTimer = this.#deps.setTimeout(() => {
      this.#connectTimer = null;
      if (this.#ws === ws && !this.wsOpen) {
        this.lastClose = 'connection timed out';
        this.#dropSocket();
        this.#failed();
      }
    }, this.#opts.connectTimeoutMs);
    ws.onopen = () => {
      if (this.#ws !== ws) return;
      this.#clearConnectTimer();
      this.wsOpen = true;
      this.#lastMessageMs = this.#deps.now();
      this.#sync();
    };
    ws.onmessage = (ev) => {
      if (this.#ws !== ws) return;
      const at = this.#deps.now();
      this.#lastMessageMs = at;
      if (typeof ev.data !== 'string') {
        this.rejectedMessages += 1;
        return;
      }
      const msg = parseFeedMessage(ev.data);
      if (msg === null) {
        // Not applied; if it was a real message, the next seq shows the gap and we resync.
        this.rejectedMessages += 1;
        return;
      }
      if (this.#queue.length >= MAX_QUEUE) {
        this.#queue = [];
        this.requestResync();
      }
      this.#queue.push({ msg, atMs: at });
      this.#scheduleFlush();
    };
    ws.onerror = () => {
      // A close event follows; nothing to do here.
    };
    ws.onclose = (ev) => {
      if (this.#ws !== ws) return;
      this.lastClose = ev.code === undefined ? 'closed' : `closed (${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`;
      this.#flush(); // what arrived before the close is still good
      this.#dropSocket();
      this.#failed();
    };
  }

  /** Forgets the current socket (closing it if needed) without scheduling anything. */
  #dropSocket(): void {
    const ws = this.#ws;
    this.#ws = null;
    this.#clearConnectTimer();
    if (ws !== null) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      try {
        ws.close();
      } catch {
        // already closed
      }
    }
    this.#queue = [];
    this.wsOpen = false;
    this.#hasSnapshot = false;
    this.awaitingResync = false;
    this.#resyncSentMs = null;
  }

  /** The live path failed: fall back and schedule the next attempt. */
  #failed(): void {
    this.#everFailed = true;
    this.#sync();
    if (!this.#started) return;
    const delay = backoffDelay(this.attempt, this.#deps.random, this.#opts.backoff);
    this.attempt += 1;
    this.reconnectAtMs = this.#deps.now() + delay;
    this.#reconnectTimer = this.#deps.setTimeout(() => this.#connect(), delay);
  }

  #clearConnectTimer(): void {
    if (this.#connectTimer !== null) this.#deps.clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
  }

  #sendResync(ws: WebSocketLike): void {
    try {
      ws.send(RESYNC_MESSAGE);
    } catch {
      // the close handler deals with a dead socket
    }
    this.awaitingResync = true;
    this.resyncRequests += 1;
    this.#resyncSentMs = this.#deps.now();
  }

  #scheduleFlush(): void {
    if (this.#cancelFrame !== null) return;
    this.#cancelFrame = this.#deps.requestFrame(() => {
      this.#cancelFrame = null;
      this.#flush();
    });
  }

  /** Applies everything that arrived since the last frame, in one state update. */
  #flush(): void {
    if (this.#cancelFrame !== null) {
      this.#cancelFrame();
      this.#cancelFrame = null;
    }
    const pendingChecks = this.#checksPending;
    if (pendingChecks !== null) {
      this.#checksPending = null;
      this.#publishChecks(pendingChecks);
    }
    if (this.#queue.length === 0) return;
    const items = this.#queue;
    this.#queue = [];
    const batch: Received[] = [];
    const changes: StatusChange[] = [];
    const retired: string[] = [];
    let snapshot = false;
    // The gateway lost NATS or says its own feed is broken: what it sends is not kept current.
    let feedDown = false;
    let liveAgain = false;
    for (const item of items) {
      const { verdict, next } = checkSeq(this.#tracker, item.msg);
      this.#tracker = next;
      if (verdict === 'resync') {
        if (this.#ws !== null) this.#sendResync(this.#ws);
        continue;
      }
      if (verdict === 'ignore') continue;
      batch.push(item);
      const m = item.msg;
      if (m.type === 'snapshot') {
        snapshot = true;
        feedDown = !m.gateway.nats_connected || !m.gateway.live;
        liveAgain = false;
      } else if (m.type === 'status') {
        changes.push(m.data);
        if (m.data.status === 'RETIRED') retired.push(m.data.service);
      } else if (m.type === 'gateway') {
        const down = !m.data.nats_connected || !m.data.live;
        liveAgain = !down && (feedDown || !this.#hasSnapshot);
        feedDown = down;
        // Until a fresh snapshot, what we hold may have missed events.
        if (down) this.#hasSnapshot = false;
      }
    }
    // A gap after a snapshot in this same batch leaves a resync pending.
    this.awaitingResync = this.#tracker.awaitingSnapshot;
    if (!this.awaitingResync) this.#resyncSentMs = null;
    if (batch.length === 0) {
      this.#sync();
      return;
    }
    this.view = reduceBatch(this.view, batch);
    if (snapshot) {
      this.#hasSnapshot = !feedDown;
      if (!feedDown) this.attempt = 0;
      this.#history.request();
    }
    if (feedDown) this.#everFailed = true;
    this.#armLiveAgain(liveAgain && !this.#hasSnapshot);
    if (changes.length > 0) this.announcement = announceStatusChanges(changes);
    if (retired.length > 0) this.#forget(retired);
    this.#remember();
    this.#armFreshness();
    this.#sync();
  }

  // ---------------------------------------------------------------------------------------------
  // Freshness, mode, clock

  #timeout(): number {
    return this.#opts.monitorTimeoutMs ?? monitorTimeoutMs(this.view.monitor);
  }

  /** Recomputes monitorFresh and arms a timer for the moment it would turn stale. */
  #armFreshness(): void {
    if (this.#freshTimer !== null) this.#deps.clearTimeout(this.#freshTimer);
    this.#freshTimer = null;
    const now = this.#deps.now();
    const timeout = this.#timeout();
    this.monitorFresh = isMonitorFresh(this.view, now, timeout);
    const expires = monitorExpiresAtMs(this.view, timeout);
    if (this.monitorFresh && expires !== null && this.#started) {
      this.#freshTimer = this.#deps.setTimeout(() => {
        this.#freshTimer = null;
        this.#armFreshness();
        this.#sync();
      }, Math.max(0, expires - now) + 1);
    }
  }

  #sync(): void {
    this.mode = deriveMode({
      wsOpen: this.wsOpen,
      hasSnapshot: this.#hasSnapshot,
      natsConnected: this.view.gateway?.nats_connected ?? null,
      feedLive: this.view.gateway?.live ?? null,
      monitorFresh: this.monitorFresh,
      everFailed: this.#everFailed,
    });
    // Without a live feed, and with a feed but no monitor to judge it, the services' own
    // /health is the freshest word there is.
    const poll = this.mode === 'fallback' || this.mode === 'monitor-down';
    if (poll && !this.polling && this.#started) this.#startPolling();
    else if (!poll && this.polling) this.#stopPolling();
  }

  /**
   * The gateway said its feed is live again: it sends a snapshot then, but if none comes
   * within a few seconds (an older gateway, or a lost message), ask for one, since until a
   * snapshot the page keeps polling instead of trusting the feed.
   */
  #armLiveAgain(arm: boolean): void {
    if (!arm) {
      if (this.#hasSnapshot && this.#liveAgainTimer !== null) {
        this.#deps.clearTimeout(this.#liveAgainTimer);
        this.#liveAgainTimer = null;
      }
      return;
    }
    if (this.#liveAgainTimer !== null) return;
    const ws = this.#ws;
    const delay = this.#opts.liveAgainResyncMs + Math.floor(this.#deps.random() * this.#opts.liveAgainResyncMs);
    this.#liveAgainTimer = this.#deps.setTimeout(() => {
      this.#liveAgainTimer = null;
      if (this.#ws === ws && ws !== null && this.wsOpen && !this.#hasSnapshot && !this.awaitingResync) this.requestResync();
    }, delay);
  }

  #tick(): void {
    const now = this.#deps.now();
    this.now = now;
    const ws = this.#ws;
    if (ws !== null && this.wsOpen) {
      if (this.#resyncSentMs !== null && now - this.#resyncSentMs > this.#opts.resyncTimeoutMs) {
        this.lastClose = 'no snapshot after a resync request';
        this.#dropSocket();
        this.#failed();
      } else if (this.#resyncSentMs === null && now - this.#lastMessageMs > this.#opts.silenceMs) {
        // Nothing heard for a while (the monitor may be down, or the socket dead): a resync
        // request either brings a snapshot or, unanswered, closes the socket.
        this.requestResync();
      }
    }
    if (this.#started) this.#tickTimer = this.#deps.setTimeout(() => this.#tick(), 1000 - (now % 1000) + 5);
  }

  // ---------------------------------------------------------------------------------------------
  // Remembered health URLs

  /** What the gateway allows now, or (none heard yet) what it allowed last time. */
  #healthOrigins(): readonly string[] {
    const g = this.view.gateway;
    return g ? (g.health_origins ?? []) : this.#origins;
  }

  #remember(): void {
    const origins = this.#healthOrigins();
    if (origins.length !== this.#origins.length || origins.some((o, i) => o !== this.#origins[i])) {
      this.#origins = origins;
      saveStoredOrigins(this.#deps.storage, origins);
    }
    const next = rememberUrls(this.#stored, this.view.services.values());
    if (next === this.#stored) return;
    this.#stored = next;
    this.#storedDirty = true;
    if (this.#storageTimer === null) {
      this.#storageTimer = this.#deps.setTimeout(() => {
        this.#storageTimer = null;
        this.#flushStorage();
      }, STORAGE_WRITE_MS);
    }
  }

  /** Retired services are not polled again: their URLs leave the page's memory. */
  #forget(services: readonly string[]): void {
    const next = forgetUrls(this.#stored, services);
    if (next === this.#stored) return;
    this.#stored = next;
    this.#storedDirty = true;
    this.targets = this.targets.filter((t) => !services.includes(t.service) || t.origin === 'config');
    this.#flushStorage();
  }

  #flushStorage(): void {
    if (!this.#storedDirty) return;
    this.#storedDirty = false;
    saveStoredUrls(this.#deps.storage, this.#stored);
  }

  async #loadConfig(url: string): Promise<void> {
    try {
      const res = await this.#deps.fetch(url, { cache: 'no-store' });
      if (!res.ok) return;
      const extra = parseConfigHealth(await res.json());
      if (extra.length === 0) return;
      this.#configured = [...this.#configured, ...extra];
      this.targets = healthTargets(this.view.services.values(), this.#stored, this.#configured, this.#healthOrigins());
    } catch {
      // no config.json: fine
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Health polling (fallback and monitor down)

  #startPolling(): void {
    this.#poller.start();
  }

  #stopPolling(): void {
    this.#poller.stop();
    this.#checksPending = null;
    this.checks = new Map();
    this.fallbackOrder = [];
  }

  #publishChecks(checks: Map<string, HealthCheckResult>): void {
    if (!this.polling) return;
    this.checks = checks;
    const names = new Set<string>(this.view.order);
    for (const t of this.targets) names.add(t.service);
    const rank = (name: string) => {
      const c = checks.get(name);
      return c === undefined ? 2 : CHECK_RANK[c.check];
    };
    const status = (name: string) => {
      const s = this.view.services.get(name);
      return s === undefined ? statusRank('UNKNOWN') : statusRank(s.status);
    };
    this.fallbackOrder = [...names].sort((a, b) => rank(a) - rank(b) || status(a) - status(b) || compareNames(a, b));
  }
}
