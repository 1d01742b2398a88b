import { describe, expect, it } from 'vitest';
import { checkToken, OPERATOR_TOKEN_KEY, readWriteAnswer, targetRequest, TargetsApi, type SessionStorageLike } from './targets.svelte';

class MemSession implements SessionStorageLike {
  m = new Map<string, string>();
  getItem(k: string) {
    return this.m.get(k) ?? null;
  }
  setItem(k: string, v: string) {
    this.m.set(k, v);
  }
  removeItem(k: string) {
    this.m.delete(k);
  }
}

interface Call {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: unknown;
}

/** A fetch double at the network boundary: records each request, answers from `reply`. */
function fakeFetch(reply: (c: Call) => { status: number; body: unknown } | Error) {
  const calls: Call[] = [];
  const fetchFn = (async (url: string, init: RequestInit = {}) => {
    const c: Call = {
      url: String(url),
      method: init.method ?? 'GET',
      headers: { ...(init.headers as Record<string, string>) },
      body: typeof init.body === 'string' ? JSON.parse(init.body) : undefined,
    };
    calls.push(c);
    const r = reply(c);
    if (r instanceof Error) throw r;
    return new Response(typeof r.body === 'string' ? r.body : JSON.stringify(r.body), { status: r.status, headers: { 'Content-Type': 'application/json' } });
  }) as typeof fetch;
  return { fetch: fetchFn, calls };
}

const listBody = { targets: [{ service: 'payments', kind: 'http', url: 'https://pay.example/health', interval_ms: 1000 }] };

describe('TargetsApi', () => {
  it('holds the token in sessionStorage only, and forgets it', () => {
    const session = new MemSession();
    const { fetch } = fakeFetch(() => ({ status: 200, body: listBody }));
    const api = new TargetsApi({ apiBase: '', viewerToken: null }, { fetch, session });
    expect(api.hasToken).toBe(false);
    expect(api.setToken('  ')).toMatch(/paste/);
    expect(api.setToken('has space')).toMatch(/no spaces/);
    expect(api.hasToken).toBe(false);
    expect(api.setToken(' op-secret ')).toBeNull();
    expect(api.hasToken).toBe(true);
    expect(session.getItem(OPERATOR_TOKEN_KEY)).toBe('op-secret');
    // A reload in the same tab finds it again.
    expect(new TargetsApi({ apiBase: '', viewerToken: null }, { fetch, session }).hasToken).toBe(true);
    api.forgetToken();
    expect(api.hasToken).toBe(false);
    expect(session.getItem(OPERATOR_TOKEN_KEY)).toBeNull();
    expect(new TargetsApi({ apiBase: '', viewerToken: null }, { fetch, session }).hasToken).toBe(false);
  });

  it('PUT sends the target with the operator token in Authorization, never in the URL', async () => {
    const { fetch, calls } = fakeFetch((c) =>
      c.method === 'PUT' ? { status: 200, body: { ok: true, service: 'payments', target: { kind: 'http', url: 'http://127.0.0.1:9000/health', interval_ms: 1000 } } } : { status: 200, body: listBody },
    );
    const api = new TargetsApi({ apiBase: '', viewerToken: 'viewer' }, { fetch, session: new MemSession() });
    api.setToken('op-secret');
    const r = await api.put('payments', { kind: 'http', url: 'http://127.0.0.1:9000/health', interval_ms: 1000 });
    expect(r).toEqual({ ok: true, value: { kind: 'http', url: 'http://127.0.0.1:9000/health', interval_ms: 1000 } });
    const put = calls[0]!;
    expect(put.method).toBe('PUT');
    expect(put.url).toBe('/api/targets/payments?token=viewer');
    expect(put.headers.Authorization).toBe('Bearer op-secret');
    expect(put.headers['Content-Type']).toBe('application/json');
    expect(put.body).toEqual({ kind: 'http', url: 'http://127.0.0.1:9000/health', interval_ms: 1000 });
    for (const c of calls) expect(c.url).not.toContain('op-secret');
    // ... and the list is refreshed after a write.
    await new Promise((res) => setTimeout(res, 0));
    expect(calls.at(-1)).toMatchObject({ method: 'GET', url: '/api/targets?token=viewer' });
    expect(calls.at(-1)?.headers.Authorization).toBeUndefined();
    expect(api.targets?.map((t) => t.service)).toEqual(['payments']);
  });

  it('a 400 gives the server’s reason; a 401 says the token is wrong', async () => {
    const { fetch } = fakeFetch((c) =>
      c.headers.Authorization === 'Bearer right'
        ? { status: 400, body: { error: 'timeout_ms=2000 must be less than interval_ms=1000' } }
        : { status: 401, body: { error: 'missing or wrong operator token (Authorization: Bearer <token>)' } },
    );
    const api = new TargetsApi({ apiBase: 'http://gw', viewerToken: null }, { fetch, session: null });
    api.setToken('right');
    expect(await api.put('a', { kind: 'http', url: 'http://h/' })).toEqual({
      ok: false,
      kind: 'bad-request',
      status: 400,
      error: 'timeout_ms=2000 must be less than interval_ms=1000',
    });
    api.setToken('wrong');
    const r = await api.put('a', { kind: 'http', url: 'http://h/' });
    expect(r).toMatchObject({ ok: false, kind: 'unauthorized', status: 401 });
    expect(!r.ok && r.error).toMatch(/operator token was refused/);
  });

  it('DELETE: 200 ok, 404 not a target, network errors never throw; nothing is sent without a token', async () => {
    let answer: { status: number; body: unknown } | Error = { status: 200, body: { ok: true } };
    const { fetch, calls } = fakeFetch((c) => (c.method === 'GET' ? { status: 200, body: listBody } : answer));
    const api = new TargetsApi({ apiBase: '', viewerToken: null }, { fetch, session: null });
    expect(await api.remove('payments')).toMatchObject({ ok: false, kind: 'no-token' });
    expect(calls).toHaveLength(0);
    api.setToken('op');
    expect(await api.remove('payments')).toEqual({ ok: true, value: null });
    expect(calls[0]).toMatchObject({ method: 'DELETE', url: '/api/targets/payments', headers: { Authorization: 'Bearer op' } });
    answer = { status: 404, body: { error: 'no such target' } };
    const nf = await api.remove('ghost');
    expect(nf).toMatchObject({ ok: false, kind: 'not-found', status: 404 });
    expect(!nf.ok && nf.error).toBe('ghost is not a watched target (no such target)');
    answer = new TypeError('Failed to fetch');
    expect(await api.remove('payments')).toMatchObject({ ok: false, kind: 'network', error: 'request failed (Failed to fetch)' });
    answer = { status: 503, body: 'Service Unavailable' };
    expect(await api.remove('payments')).toMatchObject({ ok: false, kind: 'unavailable', error: 'HTTP 503' });
  });

  it('lists targets; a malformed list or a refusal is reported, not thrown', async () => {
    let answer: { status: number; body: unknown } = { status: 200, body: listBody };
    const { fetch } = fakeFetch(() => answer);
    const api = new TargetsApi({ apiBase: '', viewerToken: null }, { fetch, session: null });
    expect(await api.list()).toMatchObject({ ok: true });
    expect(api.targets).toHaveLength(1);
    answer = { status: 200, body: { nope: 1 } };
    expect(await api.list()).toMatchObject({ ok: false, kind: 'unavailable' });
    expect(api.listError).toMatch(/not understood/);
    answer = { status: 401, body: { error: 'missing or wrong token' } };
    expect(await api.list()).toMatchObject({ ok: false, kind: 'unauthorized' });
    expect(api.targets).toHaveLength(1); // the last good list stays
  });
});

describe('request and answer helpers', () => {
  it('builds each request', () => {
    expect(targetRequest({ method: 'GET' }, '', null, 'op').init.headers).not.toHaveProperty('Authorization');
    const del = targetRequest({ method: 'DELETE', service: 'a-b' }, '/base', 't&x', 'op');
    expect(del.url).toBe('/base/api/targets/a-b?token=t%26x');
    expect(del.init.body).toBeUndefined();
  });

  it('reads answers', () => {
    expect(readWriteAnswer('PUT', 'a', 200, { ok: true, service: 'a', target: {} })).toEqual({ ok: true, value: null });
    expect(readWriteAnswer('PUT', 'a', 400, {})).toMatchObject({ kind: 'bad-request', error: 'the gateway refused the target' });
    expect(readWriteAnswer('PUT', 'a', 400, { error: 'url: must start\nwith http' })).toMatchObject({ error: 'url: must start with http' });
    expect(readWriteAnswer('PUT', 'a', 500, 'boom')).toMatchObject({ kind: 'unavailable', error: 'HTTP 500' });
  });

  it('checks pasted tokens', () => {
    expect(checkToken('abc')).toBeNull();
    expect(checkToken('x'.repeat(5000))).toMatch(/at most/);
    expect(checkToken('tök')).toMatch(/non-ASCII/);
  });
});
