import { describe, expect, it } from 'vitest';
import {
  classifyHealth,
  dataUrlFor,
  forgetUrls,
  healthTargets,
  isFetchableUrl,
  loadStoredUrls,
  MAX_REMEMBERED,
  MAX_TARGETS,
  parseConfigHealth,
  parseHealthParam,
  probeHealth,
  rememberUrls,
  saveStoredUrls,
  serviceNameFromUrl,
  STORAGE_KEY,
  type StorageLike,
} from './fallback';

class MemoryStorage implements StorageLike {
  data = new Map<string, string>();
  getItem(k: string): string | null {
    return this.data.get(k) ?? null;
  }
  setItem(k: string, v: string): void {
    this.data.set(k, v);
  }
}

describe('classifyHealth', () => {
  it('200 ok is up', () => {
    expect(classifyHealth({ kind: 'response', status: 200, body: { service: 'a', status: 'ok', mode: 'clear' } })).toEqual({
      check: 'up',
      detail: 'ok',
      mode: 'clear',
    });
    // a 200 without a readable body still answered
    expect(classifyHealth({ kind: 'response', status: 200, body: null }).check).toBe('up');
  });

  it('200 degraded is degraded, with the mode', () => {
    expect(classifyHealth({ kind: 'response', status: 200, body: { status: 'degraded', mode: 'latency' } })).toEqual({
      check: 'degraded',
      detail: 'degraded (latency)',
      mode: 'latency',
    });
  });

  it('503 (error burst) is degraded: it answers, but fails', () => {
    const v = classifyHealth({ kind: 'response', status: 503, body: { status: 'error', mode: 'errors' } });
    expect(v.check).toBe('degraded');
    expect(v.detail).toBe('HTTP 503 error');
  });

  it('other HTTP errors, network errors and timeouts are unreachable', () => {
    expect(classifyHealth({ kind: 'response', status: 404, body: null }).check).toBe('unreachable');
    expect(classifyHealth({ kind: 'response', status: 502, body: null }).check).toBe('unreachable');
    expect(classifyHealth({ kind: 'network', message: 'Failed to fetch' })).toEqual({
      check: 'unreachable',
      detail: 'no answer (Failed to fetch)',
      mode: null,
    });
    expect(classifyHealth({ kind: 'timeout' })).toEqual({ check: 'unreachable', detail: 'timed out', mode: null });
  });
});

describe('probeHealth', () => {
  type Handle = { cb: () => void; ms: number };
  const timers = () => {
    const pending: Handle[] = [];
    return {
      pending,
      setTimeout: (cb: () => void, ms: number) => {
        const h = { cb, ms };
        pending.push(h);
        return h;
      },
      clearTimeout: (h: unknown) => {
        const i = pending.indexOf(h as Handle);
        if (i >= 0) pending.splice(i, 1);
      },
    };
  };

  it('reads status and JSON body', async () => {
    const t = timers();
    const fetch = (async () => new Response(JSON.stringify({ status: 'degraded', mode: 'cpu' }), { status: 200 })) as typeof globalThis.fetch;
    expect(await probeHealth('http://x/health', 1500, { fetch, ...t })).toEqual({
      kind: 'response',
      status: 200,
      body: { status: 'degraded', mode: 'cpu' },
    });
    expect(t.pending).toHaveLength(0);
  });

  it('a hung request times out through the AbortController', async () => {
    const t = timers();
    let aborted = false;
    const fetch = ((_url: string, init?: RequestInit) =>
      new Promise((_, reject) => {
        init?.signal?.addEventListener('abort', () => {
          aborted = true;
          reject(new DOMException('aborted', 'AbortError'));
        });
      })) as typeof globalThis.fetch;
    const p = probeHealth('http://x/health', 1500, { fetch, ...t });
    expect(t.pending[0]?.ms).toBe(1500);
    t.pending[0]?.cb();
    expect(await p).toEqual({ kind: 'timeout' });
    expect(aborted).toBe(true);
  });

  it('a refused connection is a network error', async () => {
    const fetch = (async () => {
      throw new TypeError('Failed to fetch');
    }) as typeof globalThis.fetch;
    expect(await probeHealth('http://x/health', 1500, { fetch, ...timers() })).toEqual({ kind: 'network', message: 'Failed to fetch' });
  });
});

describe('URLs', () => {
  it('only plain http(s) URLs are fetched', () => {
    expect(isFetchableUrl('http://127.0.0.1:3002/health')).toBe(true);
    expect(isFetchableUrl('https://svc.example/services/a/health')).toBe(true);
    for (const bad of ['javascript:alert(1)', 'ftp://x/health', 'http://', 'http://x/ y', 'http://x/"', '', 'http://x/<b>', 'x'.repeat(600)]) {
      expect(isFetchableUrl(bad)).toBe(false);
    }
  });

  it('the data URL is the sibling of /health', () => {
    expect(dataUrlFor('http://127.0.0.1:3002/health')).toBe('http://127.0.0.1:3002/data');
    expect(dataUrlFor('http://127.0.0.1:3001/services/load-7/health')).toBe('http://127.0.0.1:3001/services/load-7/data');
    expect(dataUrlFor('http://127.0.0.1:3001/status')).toBeNull();
    expect(dataUrlFor('javascript:alert(1)//health')).toBeNull();
  });

  it('configured URLs get a name', () => {
    expect(serviceNameFromUrl('http://127.0.0.1:3001/services/load-7/health')).toBe('load-7');
    expect(serviceNameFromUrl('http://127.0.0.1:3002/health')).toBe('127.0.0.1:3002');
  });

  it('?health= and config.json', () => {
    expect(parseHealthParam('?health=http://127.0.0.1:3002/health,http://h:1/services/x/health&health=javascript:x')).toEqual([
      { service: '127.0.0.1:3002', url: 'http://127.0.0.1:3002/health' },
      { service: 'x', url: 'http://h:1/services/x/health' },
    ]);
    expect(parseHealthParam('')).toEqual([]);
    expect(parseConfigHealth({ health: ['http://a:1/health', 7] })).toEqual([{ service: 'a:1', url: 'http://a:1/health' }]);
    expect(parseConfigHealth({ health: { billing: 'http://a:3002/health', bad: 'file:///etc' } })).toEqual([
      { service: 'billing', url: 'http://a:3002/health' },
    ]);
    expect(parseConfigHealth(null)).toEqual([]);
    expect(parseConfigHealth({ health: 'http://a/health' })).toEqual([]);
  });

  it('targets: live first, then remembered, then configured; one per name and per URL', () => {
    const t = healthTargets(
      [
        { service: 'auth', health_url: 'http://h:3001/health' },
        { service: 'bad', health_url: 'javascript:1' },
        { service: 'pending', health_url: '' },
      ],
      { auth: 'http://old:3001/health', billing: 'http://h:3002/health' },
      [
        { service: 'h:3002', url: 'http://h:3002/health' }, // same URL as remembered billing
        { service: 'extra', url: 'http://h:3009/health' },
      ],
      ['http://h:*'],
    );
    expect(t).toEqual([
      { service: 'auth', url: 'http://h:3001/health', origin: 'live' },
      { service: 'billing', url: 'http://h:3002/health', origin: 'stored' },
      { service: 'extra', url: 'http://h:3009/health', origin: 'config' },
    ]);
  });

  it('targets learned from the feed must pass the rule and be in the gateway\'s origins', () => {
    const live = [
      { service: 'ok', health_url: 'http://127.0.0.1:3001/health' },
      { service: 'meta', health_url: 'http://169.254.169.254/latest/meta-data/' },
      { service: 'num', health_url: 'http://2852039166/' },
      { service: 'creds', health_url: 'http://admin:secret@127.0.0.1:3001/' },
      { service: 'zw', health_url: 'http://127.0.0.1:3001/\u200bhealth' },
      { service: 'other', health_url: 'http://10.0.0.9:3001/health' },
    ];
    const stored = { remembered: 'http://10.0.0.8:3002/health' };
    const only = (origins: string[]) => healthTargets(live, stored, [], origins).map((t) => t.service);
    expect(only(['http://127.0.0.1:3001'])).toEqual(['ok']);
    expect(only(['*'])).toEqual(['ok', 'other', 'remembered']);
    expect(only([]), 'a gateway that allows nothing (or an older one)').toEqual([]);
    // The page's own configuration needs the rule only.
    const cfg = healthTargets([], {}, [{ service: 'c', url: 'http://10.1.1.1/health' }, { service: 'm', url: 'http://169.254.169.254/' }]);
    expect(cfg.map((t) => t.service)).toEqual(['c']);
  });

  it('polls at most MAX_TARGETS URLs', () => {
    const live = Array.from({ length: MAX_TARGETS + 50 }, (_, i) => ({ service: `s${i}`, health_url: `http://h:1/services/s${i}/health` }));
    expect(healthTargets(live, {}, [], ['http://h:*'])).toHaveLength(MAX_TARGETS);
  });
});

describe('remembered URLs (localStorage)', () => {
  it('forgets retired services, and is the same object when it knew none of them', () => {
    const a = rememberUrls({}, [
      { service: 'auth', health_url: 'http://h:3001/health' },
      { service: 'billing', health_url: 'http://h:3002/health' },
    ]);
    expect(forgetUrls(a, ['billing'])).toEqual({ auth: 'http://h:3001/health' });
    expect(forgetUrls(a, ['nope'])).toBe(a);
    expect(forgetUrls(a, [])).toBe(a);
  });

  it('round-trips through storage', () => {
    const storage = new MemoryStorage();
    expect(loadStoredUrls(storage)).toEqual({});
    const urls = rememberUrls({}, [{ service: 'auth', health_url: 'http://h:3001/health' }]);
    expect(saveStoredUrls(storage, urls)).toBe(true);
    expect(JSON.parse(storage.getItem(STORAGE_KEY)!)).toEqual({ auth: 'http://h:3001/health' });
    expect(loadStoredUrls(storage)).toEqual({ auth: 'http://h:3001/health' });
  });

  it('returns the same object when nothing changed, so storage is written only on change', () => {
    const a = rememberUrls({}, [{ service: 'auth', health_url: 'http://h:3001/health' }]);
    expect(rememberUrls(a, [{ service: 'auth', health_url: 'http://h:3001/health' }])).toBe(a);
    expect(rememberUrls(a, [{ service: 'x', health_url: 'ftp://nope' }])).toBe(a);
    const b = rememberUrls(a, [{ service: 'auth', health_url: 'http://h:4001/health' }]);
    expect(b).not.toBe(a);
    expect(b.auth).toBe('http://h:4001/health');
  });

  it('is bounded, dropping the oldest knowledge', () => {
    const live = Array.from({ length: MAX_REMEMBERED + 10 }, (_, i) => ({ service: `s${i}`, health_url: `http://h:1/services/s${i}/health` }));
    const r = rememberUrls({}, live);
    expect(Object.keys(r)).toHaveLength(MAX_REMEMBERED);
    expect(r.s0).toBeUndefined();
    expect(r[`s${MAX_REMEMBERED + 9}`]).toBeDefined();
  });

  it('survives junk and failing storage', () => {
    const storage = new MemoryStorage();
    storage.setItem(STORAGE_KEY, 'not json');
    expect(loadStoredUrls(storage)).toEqual({});
    storage.setItem(STORAGE_KEY, JSON.stringify({ a: 'javascript:alert(1)', b: 'http://h:1/health', c: 5 }));
    expect(loadStoredUrls(storage)).toEqual({ b: 'http://h:1/health' });
    const broken: StorageLike = {
      getItem: () => {
        throw new Error('SecurityError');
      },
      setItem: () => {
        throw new Error('QuotaExceededError');
      },
    };
    expect(loadStoredUrls(broken)).toEqual({});
    expect(saveStoredUrls(broken, { a: 'http://h/health' })).toBe(false);
    expect(loadStoredUrls(null)).toEqual({});
  });
});
