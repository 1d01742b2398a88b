import { describe, expect, it } from 'vitest';
import { Connection, type ConnectionDeps, type WebSocketLike } from './connection.svelte';
import { ORIGINS_KEY, STORAGE_KEY, type StorageLike } from './fallback';
import type { FeedMessage } from './protocol';
import { alertMsg, gatewayMsg, heartbeat, metricsMsg, monitorMsg, serviceState, snapshot, statusMsg, T0 } from './testdata';

// A fake world: a manual clock with timers, fake sockets, a scripted fetch, memory storage.

class FakeClock {
  now = 1_000_000;
  #timers: { at: number; id: number; cb: () => void }[] = [];
  #next = 1;
  setTimeout = (cb: () => void, ms: number): unknown => {
    const id = this.#next++;
    this.#timers.push({ at: this.now + Math.max(0, ms), id, cb });
    return id;
  };
  clearTimeout = (h: unknown): void => {
    this.#timers = this.#timers.filter((t) => t.id !== h);
  };
  /** Moves time forward, running due timers in order. */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    for (;;) {
      this.#timers.sort((a, b) => a.at - b.at || a.id - b.id);
      const t = this.#timers[0];
      if (t === undefined || t.at > end) break;
      this.#timers.shift();
      this.now = t.at;
      t.cb();
      await settle();
    }
    this.now = end;
    await settle();
  }
}

const settle = () => new Promise<void>((r) => setImmediate(r));

class FakeSocket implements WebSocketLike {
  static all: FakeSocket[] = [];
  readyState = 0;
  sent: string[] = [];
  closed = false;
  onopen: ((ev: unknown) => void) | null = null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  constructor(public url: string) {
    FakeSocket.all.push(this);
  }
  send(data: string): void {
    this.sent.push(data);
  }
  close(): void {
    this.closed = true;
  }
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  deliver(m: FeedMessage | string): void {
    this.onmessage?.({ data: typeof m === 'string' ? m : JSON.stringify(m) });
  }
  fail(code = 1006): void {
    this.readyState = 3;
    this.onerror?.({});
    this.onclose?.({ code });
  }
}

class MemoryStorage implements StorageLike {
  data = new Map<string, string>();
  getItem(k: string): string | null {
    return this.data.get(k) ?? null;
  }
  setItem(k: string, v: string): void {
    this.data.set(k, v);
  }
}

type Route = (url: string) => Response | 'hang' | 'refuse';

function world(route: Route = () => new Response('{"events":[]}')) {
  FakeSocket.all = [];
  const clock = new FakeClock();
  const storage = new MemoryStorage();
  const fetched: string[] = [];
  const fetch = ((input: string | URL | Request, init?: RequestInit) => {
    const url = String(input);
    fetched.push(url);
    const r = route(url);
    if (r === 'refuse') return Promise.reject(new TypeError('Failed to fetch'));
    if (r === 'hang') {
      return new Promise((_, reject) => init?.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError'))));
    }
    return Promise.resolve(r);
  }) as typeof globalThis.fetch;
  const deps: ConnectionDeps = {
    WebSocket: FakeSocket,
    fetch,
    now: () => clock.now,
    random: () => 0.5,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    requestFrame: (cb) => {
      const h = clock.setTimeout(cb, 16);
      return () => clock.clearTimeout(h);
    },
    storage,
  };
  return { clock, storage, fetched, deps };
}

const ws = () => FakeSocket.all.at(-1)!;
const healthy = (service: string) => new Response(JSON.stringify({ service, status: 'ok', mode: 'clear' }), { status: 200 });

describe('Connection', () => {
  it('connecting -> live -> monitor down -> live', async () => {
    const { clock, deps } = world();
    const c = new Connection({ wsUrl: 'ws://h/ws', token: 's3cret' }, deps);
    c.start();
    expect(c.mode).toBe('connecting');
    expect(ws().url).toBe('ws://h/ws?token=s3cret');
    ws().open();
    expect(c.mode).toBe('connecting'); // open, but no snapshot yet
    ws().deliver(snapshot(0, [serviceState('a')], { at_ms: T0, monitor_seen_ms: T0 - 200, monitor: heartbeat() }));
    await clock.advance(16);
    expect(c.mode).toBe('live');
    expect(c.view.services.get('a')?.status).toBe('HEALTHY');

    // The heartbeat was 200 ms old at the snapshot: stale 3.5 s after it was seen.
    await clock.advance(3300 - 16 - 1);
    expect(c.mode).toBe('live');
    await clock.advance(5);
    expect(c.mode).toBe('monitor-down');
    expect(c.view.services.get('a')?.status).toBe('HEALTHY'); // not marked DOWN for it

    ws().deliver(monitorMsg(1, { at_ms: T0 + 4000 }));
    await clock.advance(16);
    expect(c.mode).toBe('live');
    c.stop();
  });

  it('applies a frame of messages at once and announces status changes', async () => {
    const { clock, deps } = world();
    const c = new Connection({ wsUrl: 'ws://h/ws' }, deps);
    c.start();
    ws().open();
    ws().deliver(snapshot(0, [serviceState('a'), serviceState('billing')]));
    ws().deliver(metricsMsg(1, { service: 'a' }));
    ws().deliver(statusMsg(2, { service: 'billing', status: 'DOWN', reasons: ['stopped'] }));
    ws().deliver(alertMsg(3, { service: 'billing' }));
    expect(c.view.services.size).toBe(0); // nothing applied before the frame
    await clock.advance(16);
    expect(c.view.services.get('billing')?.status).toBe('DOWN');
    expect(c.view.alerts).toHaveLength(1);
    expect(c.announcement).toBe('billing is DOWN (stopped).');
    c.stop();
  });

  it('a seq gap sends one resync and ignores messages until the snapshot', async () => {
    const { clock, deps } = world();
    const c = new Connection({ wsUrl: 'ws://h/ws' }, deps);
    c.start();
    ws().open();
    ws().deliver(snapshot(0, [serviceState('a')]));
    ws().deliver(metricsMsg(1, { service: 'a' }));
    ws().deliver(statusMsg(3, { service: 'a', status: 'DOWN' })); // 2 missing
    ws().deliver(statusMsg(4, { service: 'a', status: 'DEGRADED' }));
    await clock.advance(16);
    expect(ws().sent).toEqual(['{"type":"resync"}']);
    expect(c.awaitingResync).toBe(true);
    expect(c.view.services.get('a')?.status).toBe('HEALTHY');
    ws().deliver(snapshot(5, [serviceState('a', { status: 'DEGRADED' })], { resync: true }));
    await clock.advance(16);
    expect(c.awaitingResync).toBe(false);
    expect(c.view.services.get('a')?.status).toBe('DEGRADED');
    expect(ws().sent).toHaveLength(1);
    // junk is counted and ignored
    ws().deliver('{"nope":1}');
    expect(c.rejectedMessages).toBe(1);
    c.stop();
  });

  it('falls back on close: polls remembered health URLs, backs off, and returns to live', async () => {
    const { clock, deps, fetched, storage } = world((url) => {
      if (url.includes('/api/history')) return new Response('{"events":[]}');
      if (url.includes(':3001/')) return healthy('auth');
      if (url.includes(':3002/')) return 'refuse';
      if (url.includes(':3003/')) return new Response('{"status":"error","mode":"errors"}', { status: 503 });
      return 'hang';
    });
    const c = new Connection({ wsUrl: 'ws://h/ws' }, deps);
    c.start();
    ws().open();
    ws().deliver(
      snapshot(0, [
        serviceState('auth', { health_url: 'http://h:3001/health' }),
        serviceState('billing', { health_url: 'http://h:3002/health' }),
        serviceState('notifications', { health_url: 'http://h:3003/health' }),
        serviceState('analytics', { health_url: 'http://h:3004/health' }),
      ]),
    );
    await clock.advance(16);
    expect(c.mode).toBe('live');
    expect(c.polling).toBe(false);
    await clock.advance(2000); // the URLs are written to storage
    expect(Object.keys(JSON.parse(storage.getItem(STORAGE_KEY)!))).toHaveLength(4);

    ws().fail();
    expect(c.mode).toBe('fallback');
    expect(c.polling).toBe(true);
    expect(c.reconnectAtMs).toBe(clock.now + 125); // attempt 0: cap 250 ms, random 0.5
    await clock.advance(0);
    // the hung one needs its timeout
    await clock.advance(1500);
    const checks = Object.fromEntries([...c.checks].map(([k, v]) => [k, v.check]));
    expect(checks).toEqual({ auth: 'up', billing: 'unreachable', notifications: 'degraded', analytics: 'unreachable' });
    expect(c.checks.get('analytics')?.detail).toBe('timed out');
    expect(c.fallbackOrder.slice(0, 2).sort()).toEqual(['analytics', 'billing']);
    expect(c.fallbackOrder.at(-1)).toBe('auth');

    // reconnect attempts keep failing, with growing delays
    const sockets = FakeSocket.all.length;
    expect(sockets).toBeGreaterThan(1);
    ws().fail();
    expect(c.attempt).toBe(2);
    expect(c.reconnectAtMs! - clock.now).toBe(250); // attempt 1: cap 500

    // polling continues about every 2 s
    const before = fetched.filter((u) => u.includes(':3001/')).length;
    await clock.advance(2100);
    expect(fetched.filter((u) => u.includes(':3001/')).length).toBeGreaterThan(before);

    // the gateway is back: the snapshot replaces the polled view and polling stops
    await clock.advance(c.reconnectAtMs! - clock.now);
    const polls = fetched.length;
    ws().open();
    expect(c.mode).toBe('fallback'); // open but no snapshot yet
    ws().deliver(snapshot(0, [serviceState('auth', { health_url: 'http://h:3001/health' })]));
    await clock.advance(16);
    expect(c.mode).toBe('live');
    expect(c.polling).toBe(false);
    expect(c.checks.size).toBe(0);
    expect(c.attempt).toBe(0);
    await clock.advance(5000);
    expect(fetched.slice(polls).filter((u) => u.includes('/health')).length).toBeLessThanOrEqual(4); // at most the in-flight round
    c.stop();
  });

  it('a reload during an outage still knows the URLs (localStorage)', async () => {
    const { clock, deps, fetched, storage } = world((url) => (url.includes(':3002/') ? healthy('billing') : 'refuse'));
    storage.setItem(STORAGE_KEY, JSON.stringify({ billing: 'http://h:3002/health' }));
    storage.setItem(ORIGINS_KEY, JSON.stringify(['http://h:*']));
    const c = new Connection({ wsUrl: 'ws://h/ws', configuredHealth: [{ service: 'extra', url: 'http://h:3009/health' }] }, deps);
    c.start();
    ws().fail();
    expect(c.mode).toBe('fallback');
    await clock.advance(10);
    expect(fetched).toContain('http://h:3002/health');
    expect(fetched).toContain('http://h:3009/health');
    expect(c.checks.get('billing')?.check).toBe('up');
    expect(c.checks.get('extra')?.check).toBe('unreachable');
    expect(c.fallbackOrder).toEqual(['extra', 'billing']);
    c.stop();
  });

  it('NATS lost at the gateway means fallback while the socket stays open', async () => {
    const { clock, deps } = world((url) => (url.includes('/api/') ? new Response('{"events":[]}') : healthy('a')));
    const c = new Connection({ wsUrl: 'ws://h/ws' }, deps);
    c.start();
    ws().open();
    ws().deliver(snapshot(0, [serviceState('a')]));
    await clock.advance(16);
    expect(c.mode).toBe('live');
    ws().deliver(gatewayMsg(1, false));
    await clock.advance(16);
    expect(c.mode).toBe('fallback');
    expect(c.polling).toBe(true);
    ws().deliver(gatewayMsg(2, true));
    await clock.advance(16);
    expect(c.mode).toBe('fallback'); // until the fresh snapshot
    ws().deliver(snapshot(3, [serviceState('a')], { resync: true }));
    await clock.advance(16);
    expect(c.mode).toBe('live');
    expect(c.polling).toBe(false);
    c.stop();
  });

  it('a silent socket is probed with a resync and closed when the probe is not answered', async () => {
    const { clock, deps } = world();
    const c = new Connection({ wsUrl: 'ws://h/ws', silenceMs: 10_000, resyncTimeoutMs: 5000 }, deps);
    c.start();
    const first = ws();
    first.open();
    first.deliver(snapshot(0, [serviceState('a')]));
    await clock.advance(16);
    await clock.advance(11_000);
    expect(first.sent).toEqual(['{"type":"resync"}']);
    await clock.advance(6000);
    expect(first.closed).toBe(true);
    expect(c.mode).toBe('fallback');
    expect(c.lastClose).toMatch(/no snapshot/);
    c.stop();
  });

  it('loads /data from the sibling of the health URL', async () => {
    const { clock, deps, fetched } = world((url) =>
      url.endsWith('/data') ? new Response('{"service":"a","kind":"orders","items":[]}') : new Response('{"events":[]}'),
    );
    const c = new Connection({ wsUrl: 'ws://h/ws' }, deps);
    c.start();
    ws().open();
    ws().deliver(snapshot(0, [serviceState('a', { health_url: 'http://h:3001/services/a/health' })]));
    await clock.advance(16);
    const r = await c.loadData('a');
    expect(r.ok).toBe(true);
    expect(fetched).toContain('http://h:3001/services/a/data');
    expect((await c.loadData('nope')).ok).toBe(false);
    c.stop();
  });
});

describe('Connection: monitor down, liveness, retirement, history', () => {
  const checkMap = (c: Connection) => Object.fromEntries([...c.checks].map(([k, v]) => [k, v.check]));

  it('monitor down: polls the remembered health URLs beside the stale figures, and stops when the monitor is back', async () => {
    const { clock, deps, fetched } = world((url) => {
      if (url.includes('/api/history')) return new Response('{"events":[]}');
      if (url.includes(':3001/')) return healthy('auth');
      return 'refuse';
    });
    const c = new Connection({ wsUrl: 'ws://h/ws' }, deps);
    c.start();
    ws().open();
    ws().deliver(
      snapshot(
        0,
        [serviceState('auth', { health_url: 'http://h:3001/health' }), serviceState('billing', { health_url: 'http://h:3002/health' })],
        { at_ms: T0, monitor_seen_ms: T0 - 200, monitor: heartbeat() },
      ),
    );
    await clock.advance(16);
    expect(c.mode).toBe('live');
    expect(c.polling).toBe(false);
    const healthFetches = () => fetched.filter((u) => u.endsWith('/health')).length;
    expect(healthFetches()).toBe(0);

    await clock.advance(3400); // the heartbeat goes stale
    expect(c.mode).toBe('monitor-down');
    expect(c.polling).toBe(true);
    await clock.advance(16);
    expect(checkMap(c)).toEqual({ auth: 'up', billing: 'unreachable' });
    // The monitor's last word stays as it was: a health check is shown beside it, not instead.
    expect(c.view.services.get('billing')?.status).toBe('HEALTHY');
    expect(c.view.services.get('auth')?.figures).not.toBeNull();

    const before = healthFetches();
    await clock.advance(2100);
    expect(healthFetches()).toBeGreaterThan(before); // every 2 s, as in fallback

    ws().deliver(monitorMsg(1, { at_ms: T0 + 6000 }));
    await clock.advance(16);
    expect(c.mode).toBe('live');
    expect(c.polling).toBe(false);
    expect(c.checks.size).toBe(0);
    const back = healthFetches();
    await clock.advance(3000); // (within the heartbeat's timeout)
    expect(healthFetches()).toBe(back);
    c.stop();
  });

  it('monitor down, then the gateway goes too: polling goes on without a restart', async () => {
    const { clock, deps, fetched } = world((url) => (url.includes('/api/') ? new Response('{"events":[]}') : healthy('auth')));
    const c = new Connection({ wsUrl: 'ws://h/ws' }, deps);
    c.start();
    ws().open();
    ws().deliver(snapshot(0, [serviceState('auth', { health_url: 'http://h:3001/health' })], { monitor_seen_ms: T0 - 200, monitor: heartbeat() }));
    await clock.advance(4000);
    expect(c.mode).toBe('monitor-down');
    const since = c.pollingSinceMs;
    expect(since).not.toBeNull();
    ws().fail();
    expect(c.mode).toBe('fallback');
    expect(c.polling).toBe(true);
    expect(c.pollingSinceMs).toBe(since);
    await clock.advance(2100);
    expect(c.checks.get('auth')?.check).toBe('up');
    expect(fetched.filter((u) => u.endsWith('/health')).length).toBeGreaterThan(1);
    c.stop();
  });

  it('a gateway whose feed is not live is never shown as live, and is asked for a snapshot when live again without one', async () => {
    const { clock, deps } = world((url) => (url.includes('/api/') ? new Response('{"events":[]}') : healthy('a')));
    const c = new Connection({ wsUrl: 'ws://h/ws', liveAgainResyncMs: 3000 }, deps);
    c.start();
    ws().open();
    ws().deliver(snapshot(0, [serviceState('a')]));
    await clock.advance(16);
    expect(c.mode).toBe('live');

    ws().deliver(gatewayMsg(1, true, T0 + 1, false, 'subscription ended'));
    await clock.advance(16);
    expect(c.mode).toBe('fallback');
    expect(c.polling).toBe(true);
    expect(c.view.gateway?.live).toBe(false);
    expect(c.view.gateway?.problem).toBe('subscription ended');

    ws().deliver(gatewayMsg(2, true, T0 + 2, true));
    await clock.advance(16);
    expect(c.mode).toBe('fallback'); // until a snapshot shows the view is current
    expect(ws().sent).toEqual([]);
    await clock.advance(4500); // 3 s plus a jitter of up to 3 s (random 0.5 here)
    expect(ws().sent).toEqual(['{"type":"resync"}']);
    ws().deliver(snapshot(3, [serviceState('a')], { resync: true }));
    await clock.advance(16);
    expect(c.mode).toBe('live');
    expect(c.polling).toBe(false);
    c.stop();
  });

  it('a snapshot from a gateway that says it is not live is not live', async () => {
    const { clock, deps } = world((url) => (url.includes('/api/') ? new Response('{"events":[]}') : healthy('a')));
    const c = new Connection({ wsUrl: 'ws://h/ws' }, deps);
    c.start();
    ws().open();
    ws().deliver(
      snapshot(0, [serviceState('a')], {
        gateway: { nats_connected: true, at_ms: T0, source: 'kv', live: false, problem: 'snapshot sync keeps failing' },
      }),
    );
    await clock.advance(16);
    expect(c.mode).toBe('fallback');
    expect(c.polling).toBe(true);
    expect(c.view.services.get('a')).toBeDefined(); // its view is still shown, as last known
    c.stop();
  });

  it('a RETIRED service leaves the page and its health URL is forgotten', async () => {
    const { clock, deps, fetched, storage } = world((url) => (url.includes('/api/') ? new Response('{"events":[]}') : healthy('x')));
    const c = new Connection({ wsUrl: 'ws://h/ws' }, deps);
    c.start();
    ws().open();
    ws().deliver(
      snapshot(0, [serviceState('auth', { health_url: 'http://h:3001/health' }), serviceState('billing', { health_url: 'http://h:3002/health', status: 'DOWN' })]),
    );
    await clock.advance(2016);
    expect(Object.keys(JSON.parse(storage.getItem(STORAGE_KEY)!)).sort()).toEqual(['auth', 'billing']);

    ws().deliver(statusMsg(1, { service: 'billing', status: 'RETIRED', previous: 'DOWN', reasons: ['retired'] }));
    await clock.advance(16);
    expect([...c.view.services.keys()]).toEqual(['auth']);
    expect(c.view.counts.DOWN).toBe(0);
    expect(c.announcement).toBe('billing is RETIRED (retired).');
    expect(Object.keys(JSON.parse(storage.getItem(STORAGE_KEY)!))).toEqual(['auth']);

    ws().fail(); // and in fallback it is not polled
    await clock.advance(10);
    expect(c.targets.map((t) => t.service)).toEqual(['auth']);
    expect(fetched.some((u) => u.includes(':3002/'))).toBe(false);
    c.stop();
  });

  it('fetches /api/history once per burst of resyncs, after a jitter', async () => {
    const { clock, deps, fetched } = world();
    const c = new Connection({ wsUrl: 'ws://h/ws', historyJitterMs: 2000, historyMinIntervalMs: 5000 }, deps);
    c.start();
    ws().open();
    const history = () => fetched.filter((u) => u.includes('/api/history')).length;
    ws().deliver(snapshot(0, [serviceState('a')]));
    await clock.advance(16);
    expect(history()).toBe(1); // the page's first: at once

    // A gateway resync: the same page gets several snapshots in a row.
    for (let seq = 1; seq <= 3; seq++) {
      ws().deliver(snapshot(seq, [serviceState('a')], { resync: true }));
      await clock.advance(16);
    }
    expect(history()).toBe(1);
    await clock.advance(5000 - 48 + 1000 - 1); // 5 s after the first ended, plus 1 s of jitter (random 0.5)
    expect(history()).toBe(1);
    await clock.advance(2);
    expect(history()).toBe(2);
    await clock.advance(20_000);
    expect(history()).toBe(2);
    expect(c.historyFetches).toBe(2);
    c.stop();
  });
});
