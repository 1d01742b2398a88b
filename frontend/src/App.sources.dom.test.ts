// @vitest-environment happy-dom
// Probe and agent cards, and the operator actions, in a DOM (happy-dom): "n/a" for absent
// figures, the probe's outcome and Apdex, the host panel, the token, the form and removal.
import { flushSync, mount, unmount } from 'svelte';
import { afterEach, describe, expect, it } from 'vitest';
import App from './App.svelte';
import type { Figures } from './lib/protocol';
import { OPERATOR_TOKEN_KEY, TargetsApi } from './lib/targets.svelte';
import { alertMsg, figures, metricsMsg, serviceState, snapshot, statusMsg, T0 } from './lib/testdata';
import { FakeSocket, MemSession, fakeConnection, openFeed, settle } from './lib/testpage';

interface ApiCall {
  method: string;
  url: string;
  auth: string | undefined;
  body: unknown;
}

let cleanup: (() => void) | null = null;
afterEach(() => {
  cleanup?.();
  cleanup = null;
});

function setup(apiAnswer: (c: ApiCall) => { status: number; body: unknown } = () => ({ status: 200, body: { targets: [] } })) {
  const api: ApiCall[] = [];
  const { conn, frames } = fakeConnection();
  const session = new MemSession();
  const apiFetch = (async (url: string, init: RequestInit = {}) => {
    const headers = (init.headers ?? {}) as Record<string, string>;
    const c: ApiCall = { method: init.method ?? 'GET', url: String(url), auth: headers.Authorization, body: typeof init.body === 'string' ? JSON.parse(init.body) : undefined };
    api.push(c);
    const r = apiAnswer(c);
    return new Response(JSON.stringify(r.body), { status: r.status });
  }) as unknown as typeof fetch;
  const targets = new TargetsApi({ apiBase: '', viewerToken: null }, { fetch: apiFetch, session });
  const send = openFeed(conn, frames);
  const target = document.createElement('div');
  document.body.appendChild(target);
  const app = mount(App, { target, props: { conn, targets } });
  flushSync();
  cleanup = () => (unmount(app), conn.stop(), target.remove());
  const q = <E extends Element = HTMLElement>(sel: string) => target.querySelector<E>(sel);
  return { conn, send, target, q, api, session, targets };
}

function type(input: HTMLInputElement | null, value: string): void {
  if (input === null) throw new Error('no input');
  input.value = value;
  input.dispatchEvent(new Event('input', { bubbles: true }));
  flushSync();
}

function probeFigures(over: Partial<Figures> = {}): Figures {
  const f: Figures = { ...figures(), apdex: 0.75, apdex_t_ms: 100, ...over };
  delete f.cpu_pct;
  delete f.mem_pct;
  return f;
}

const host = {
  cores: [12.5, 91, 0, 40],
  load1: 1.5,
  load5: 0.9,
  load15: 0.4,
  disk_used_pct: 61.2,
  procs: 312,
  top: [
    { name: '<img src=x onerror="window.__pwned=1">', pid: 812, cpu_pct: 140.5, mem_pct: 12.1 },
    { name: 'postgres', pid: 9, cpu_pct: 20, mem_pct: 3 },
  ],
};

const fig = (card: Element | null, name: string) => card?.querySelector(`[data-figure="${name}"]`)?.textContent?.trim();

describe('probe and agent cards', () => {
  it('a figure the source does not send reads "n/a", never 0; unknown figures "–"', () => {
    const { send, q } = setup();
    send(
      snapshot(0, [
        serviceState('pay', { source: 'probe', probe: { ok: true, status_code: 200, apdex_t_ms: 100 }, health_url: '', figures: probeFigures() }),
        serviceState('custom', { figures: { ...figures(), cpu_pct: null } }),
        serviceState('auth'),
      ]),
    );
    const pay = q('[data-service="pay"]');
    expect(fig(pay, 'cpu')).toBe('n/a');
    expect(fig(pay, 'mem')).toBe('n/a');
    expect(fig(q('[data-service="custom"]'), 'cpu')).toBe('n/a');
    expect(fig(q('[data-service="custom"]'), 'mem')).toBe('40.0%');
    expect(fig(q('[data-service="auth"]'), 'cpu')).toBe('20.0%');
    // A service known only from a status event has no figures yet: a dash, not "n/a" or 0.
    send(statusMsg(1, { service: 'newcomer', status: 'DOWN' }));
    expect(fig(q('[data-service="newcomer"]'), 'cpu')).toBe('–');
    expect(q('[data-service="pay"]')?.textContent).not.toMatch(/\b0\.0%/);
  });

  it('a probe card shows the last probe’s status code or error, and the Apdex; no Data button', () => {
    const { send, q } = setup();
    send(snapshot(0, [serviceState('pay', { source: 'probe', probe: { ok: true, status_code: 200 }, health_url: '', figures: probeFigures() })]));
    const line = () => q('[data-service="pay"] [data-testid="probe-result"]');
    expect(line()?.getAttribute('data-ok')).toBe('true');
    expect(line()?.textContent).toContain('HTTP 200');
    expect(q('[data-service="pay"] [data-testid="apdex"]')?.textContent?.trim()).toBe('Apdex 0.75');
    expect(q('[data-service="pay"] [data-testid="apdex"]')?.getAttribute('title')).toBe('Apdex over the window, T = 100 ms');
    expect(q('[data-service="pay"] [data-testid="data-button"]')).toBeNull();

    send(metricsMsg(1, { service: 'pay', status: 'DOWN', health_url: '', source: 'probe', probe: { ok: false, error: 'connect refused' }, figures: probeFigures({ apdex: 0.5 }) }));
    expect(line()?.getAttribute('data-ok')).toBe('false');
    expect(line()?.textContent).toContain('connect refused');
    expect(q('[data-service="pay"] [data-testid="apdex"]')?.textContent).toContain('0.50');
    send(metricsMsg(2, { service: 'pay', at_ms: T0 + 2000, health_url: '', source: 'probe', probe: { ok: false, status_code: 503, error: 'status 503' }, figures: probeFigures({ apdex: null }) }));
    expect(line()?.textContent).toContain('HTTP 503 · status 503');
    expect(q('[data-service="pay"] [data-testid="apdex"]')?.textContent).toContain('Apdex n/a');

    // Its SERVICE_DOWN counts failed probes; a simulator's counts seconds of silence.
    send(alertMsg(3, { service: 'pay', value: 2, threshold: 2 }));
    send(alertMsg(4, { service: 'billing', value: 3.1, threshold: 3 }));
    const val = (svc: string) => q(`[data-testid="alert"][data-service="${svc}"] .val`)?.textContent;
    expect(val('pay')).toBe('2 in a row / 2');
    expect(val('billing')).toBe('3.1 s / 3.0 s');
  });

  it('an agent card opens a live host panel: per-core bars, load, disk, procs, top processes as text', () => {
    const { send, q, target } = setup();
    send(snapshot(0, [serviceState('web1', { source: 'agent', host })]));
    expect(q('[data-service="web1"] [data-testid="host-summary"]')?.textContent?.replace(/\s+/g, ' ')).toContain('4 cores load 1.50 disk 61%');
    // An agent measures no requests: latency and errors are n/a (0 on the wire by contract).
    expect(fig(q('[data-service="web1"]'), 'p95')).toBe('n/a');
    expect(fig(q('[data-service="web1"]'), 'errors')).toBe('n/a');
    expect(fig(q('[data-service="web1"]'), 'cpu')).toBe('20.0%');
    const btn = q<HTMLButtonElement>('[data-service="web1"] [data-testid="host-button"]')!;
    btn.focus();
    btn.click();
    flushSync();
    const panel = q('[data-testid="host-panel"][data-service="web1"]');
    expect(panel).not.toBeNull();
    expect(target.querySelectorAll('[data-testid="host-core"]')).toHaveLength(4);
    expect(q('[data-testid="host-core"]')?.getAttribute('aria-label')).toBe('core 0: 12.5%');
    expect(q('[data-testid="host-load"]')?.textContent).toBe('1.50 / 0.90 / 0.40');
    expect(q('[data-testid="host-disk"]')?.textContent).toBe('61.2%');
    expect(q('[data-testid="host-procs"]')?.textContent).toBe('312');
    const rows = [...target.querySelectorAll('[data-testid="host-proc"]')];
    expect(rows).toHaveLength(2);
    expect(rows[0]?.querySelector('.pname')?.textContent).toBe(host.top[0]!.name);
    expect(target.querySelectorAll('img')).toHaveLength(0);
    expect((window as unknown as { __pwned?: number }).__pwned).toBeUndefined();
    expect(document.activeElement?.getAttribute('data-testid')).toBe('host-close');

    // Live: the next summary's figures show in the open panel.
    send(metricsMsg(1, { service: 'web1', source: 'agent', host: { ...host, cores: [1, 2], disk_used_pct: undefined } as never }));
    expect(target.querySelectorAll('[data-testid="host-core"]')).toHaveLength(2);
    expect(q('[data-testid="host-disk"]')?.textContent).toBe('n/a');

    window.dispatchEvent(new KeyboardEvent('keydown', { key: 'Escape' }));
    flushSync();
    expect(q('[data-testid="host-panel"]')).toBeNull();
    expect(document.activeElement).toBe(btn);
  });

  it('in fallback, a card with no health URL says there is nothing to poll (and nothing polls "")', () => {
    const { conn, send, q } = setup();
    send(snapshot(0, [serviceState('pay', { source: 'probe', probe: { ok: true }, health_url: '', figures: probeFigures() })]));
    FakeSocket.last!.onclose?.({ code: 1006 });
    flushSync();
    expect(conn.mode).toBe('fallback');
    const check = q('[data-service="pay"] [data-source="health-check"]');
    expect(check?.getAttribute('data-poll')).toBe('none');
    expect(check?.hasAttribute('data-check')).toBe(false);
    expect(q('[data-service="pay"] [data-testid="no-poll"]')?.textContent).toBe('nothing to poll (no health URL)');
    expect(conn.targets.map((t) => t.url)).not.toContain('');
  });
});

describe('operator actions', () => {
  it('no token: no form, no remove button; a pasted token is kept in sessionStorage and can be forgotten', () => {
    const { send, q, session } = setup();
    send(snapshot(0, [serviceState('pay', { source: 'probe', probe: { ok: true }, health_url: '', figures: probeFigures() })]));
    expect(q('[data-testid="add-target"]')).toBeNull();
    expect(q('[data-testid="remove-button"]')).toBeNull();
    expect(q('[data-testid="operator"]')?.getAttribute('data-state')).toBe('none');

    q<HTMLButtonElement>('[data-testid="operator-button"]')!.click();
    flushSync();
    const input = q<HTMLInputElement>('[data-testid="operator-token"]');
    expect(input?.type).toBe('password');
    type(input, 'has space');
    q<HTMLButtonElement>('[data-testid="operator-save"]')!.click();
    flushSync();
    expect(q('[data-testid="operator-error"]')?.textContent).toMatch(/no spaces/);
    type(q<HTMLInputElement>('[data-testid="operator-token"]'), 'op-secret');
    q<HTMLButtonElement>('[data-testid="operator-save"]')!.click();
    flushSync();
    expect(q('[data-testid="operator"]')?.getAttribute('data-state')).toBe('held');
    expect(session.getItem(OPERATOR_TOKEN_KEY)).toBe('op-secret');
    expect(localStorage.length).toBe(0);
    expect(location.href).not.toContain('op-secret');
    expect(q('[data-testid="add-target"]')).not.toBeNull();
    expect(q('[data-service="pay"] [data-testid="remove-button"]')).not.toBeNull();

    q<HTMLButtonElement>('[data-testid="operator-forget"]')!.click();
    flushSync();
    expect(session.getItem(OPERATOR_TOKEN_KEY)).toBeNull();
    expect(q('[data-testid="add-target"]')).toBeNull();
    expect(q('[data-testid="remove-button"]')).toBeNull();
  });

  it('the form checks fields first, PUTs a good target, and shows the gateway’s 400 reason', async () => {
    let putAnswer = { status: 200, body: { ok: true, service: 'shop', target: { kind: 'http', url: 'http://127.0.0.1:9000/health', interval_ms: 500 } } } as { status: number; body: unknown };
    const { send, q, api, targets } = setup((c) => (c.method === 'PUT' ? putAnswer : { status: 200, body: { targets: [] } }));
    targets.setToken('op-secret');
    send(snapshot(0, [serviceState('auth')]));
    flushSync();
    const submit = () => {
      q<HTMLFormElement>('[data-testid="add-target"] form')!.dispatchEvent(new Event('submit', { bubbles: true, cancelable: true }));
      flushSync();
    };

    type(q('[data-testid="target-service"]'), 'Shop!');
    type(q('[data-testid="target-endpoint"]'), 'ftp://x');
    type(q('[data-testid="target-interval"]'), '50');
    submit();
    expect(q('[data-testid="target-service-error"]')?.textContent).toMatch(/must start/);
    expect(q('[data-testid="target-endpoint-error"]')?.textContent).toMatch(/http:\/\/ or https:\/\//);
    expect(q('[data-testid="target-interval-error"]')?.textContent).toMatch(/outside \[100/);
    expect(api.filter((c) => c.method === 'PUT')).toHaveLength(0);

    type(q('[data-testid="target-service"]'), 'shop');
    type(q('[data-testid="target-endpoint"]'), 'http://127.0.0.1:9000/health');
    type(q('[data-testid="target-interval"]'), '500');
    submit();
    await settle();
    const put = api.find((c) => c.method === 'PUT');
    expect(put).toEqual({ method: 'PUT', url: '/api/targets/shop', auth: 'Bearer op-secret', body: { kind: 'http', url: 'http://127.0.0.1:9000/health', interval_ms: 500 } });
    expect(q('[data-testid="target-added"]')?.textContent).toContain('Watching shop');
    expect(q('[data-testid="target-service-error"]')).toBeNull();

    putAnswer = { status: 400, body: { error: 'url: <b>no host</b>' } };
    type(q('[data-testid="target-service"]'), 'shop2');
    type(q('[data-testid="target-endpoint"]'), 'db:5432');
    submit();
    await settle();
    expect(api.filter((c) => c.method === 'PUT').at(-1)?.body).toEqual({ kind: 'tcp', address: 'db:5432', interval_ms: 500 });
    const err = q('[data-testid="target-error"]');
    expect(err?.textContent).toBe('Not added: url: <b>no host</b>');
    expect(err?.querySelector('b')).toBeNull(); // the reason is text

    putAnswer = { status: 401, body: { error: 'missing or wrong operator token (Authorization: Bearer <token>)' } };
    submit();
    await settle();
    expect(q('[data-testid="target-error"]')?.textContent).toMatch(/operator token was refused/);
  });

  it('remove on a probe card: confirm, DELETE, and the card goes when the monitor retires it', async () => {
    let delAnswer = { status: 401, body: { error: 'missing or wrong operator token' } } as { status: number; body: unknown };
    const { send, q, api, targets } = setup((c) => (c.method === 'DELETE' ? delAnswer : { status: 200, body: { targets: [] } }));
    targets.setToken('op-secret');
    send(
      snapshot(0, [
        serviceState('pay', { source: 'probe', probe: { ok: false, error: 'connect refused' }, status: 'DOWN', health_url: '', figures: probeFigures() }),
        serviceState('auth'),
        serviceState('web1', { source: 'agent', host }),
      ]),
    );
    expect(q('[data-service="auth"] [data-testid="remove-button"]')).toBeNull();
    expect(q('[data-service="web1"] [data-testid="remove-button"]')).toBeNull();
    q<HTMLButtonElement>('[data-service="pay"] [data-testid="remove-button"]')!.click();
    flushSync();
    expect(api.filter((c) => c.method === 'DELETE')).toHaveLength(0); // asks first
    q<HTMLButtonElement>('[data-service="pay"] [data-testid="remove-confirm"]')!.click();
    await settle();
    expect(q('[data-service="pay"] [data-testid="remove-error"]')?.textContent).toMatch(/operator token was refused/);

    delAnswer = { status: 200, body: { ok: true } };
    q<HTMLButtonElement>('[data-service="pay"] [data-testid="remove-button"]')!.click();
    flushSync();
    q<HTMLButtonElement>('[data-service="pay"] [data-testid="remove-confirm"]')!.click();
    await settle();
    expect(api.filter((c) => c.method === 'DELETE').at(-1)).toMatchObject({ url: '/api/targets/pay', auth: 'Bearer op-secret' });
    expect(q('[data-service="pay"] [data-testid="remove-sent"]')).not.toBeNull();
    send(statusMsg(1, { service: 'pay', status: 'RETIRED', previous: 'DOWN', at_ms: T0 + 5000, reasons: ['retired'] }));
    expect(q('[data-testid="service-card"][data-service="pay"]')).toBeNull();
    expect(q('[data-service="auth"]')).not.toBeNull();
  });
});
