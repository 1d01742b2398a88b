// @vitest-environment happy-dom
// The alert-delivery parts of the page mounted in a DOM: marks, Silence 1 h, Ack, the active
// silences with Expire, root-cause grouping and the inbox panel, against fetch doubles.
import { flushSync, mount, unmount } from 'svelte';
import { describe, expect, it } from 'vitest';
import App from './App.svelte';
import { AlertingApi, InboxApi, type AlertingDeps } from './lib/alerting.svelte';
import type { Silence } from './lib/protocol';
import { TargetsApi } from './lib/targets.svelte';
import { alertMsg, serviceState, snapshot, T0 } from './lib/testdata';
import { MemSession, fakeConnection, openFeed, settle } from './lib/testpage';

interface Call {
  method: string;
  url: string;
  body: unknown;
  auth: string | undefined;
}

function setup(withToken: boolean) {
  const { conn, frames } = fakeConnection();
  const send = openFeed(conn, frames);
  const calls: Call[] = [];
  let silences: Silence[] = [];
  const api = (async (url: string, init: RequestInit = {}) => {
    const method = init.method ?? 'GET';
    const auth = (init.headers as Record<string, string> | undefined)?.Authorization;
    calls.push({ method, url: String(url), body: typeof init.body === 'string' ? JSON.parse(init.body) : undefined, auth });
    const u = String(url);
    if (u === '/api/silences' && method === 'GET') return new Response(JSON.stringify({ ok: true, silences }));
    if (u === '/api/silences' && method === 'POST') {
      silences = [{ id: '00ab', matchers: { service: 'billing' }, starts_ms: T0, ends_ms: T0 + 3_600_000, created_by: 'dashboard', comment: 'c' }];
      return new Response(JSON.stringify({ ok: true, id: '00ab' }), { status: 201 });
    }
    if (u === '/api/silences/00ab' && method === 'DELETE') {
      silences = [];
      return new Response(JSON.stringify({ ok: true, id: '00ab' }));
    }
    if (u.endsWith('/ack')) return new Response(JSON.stringify({ ok: true, id: 'x', by: 'dashboard', at_ms: T0 }));
    if (u === '/api/inbox')
      return new Response(
        JSON.stringify({
          ok: true,
          received: 1,
          kept: 200,
          notifications: [
            { received_ms: T0, receiver: 'inbox', status: 'firing', group_key: 'k', truncated: 0, alerts: [{ status: 'firing', alertname: 'SERVICE_DOWN', service: 'auth', severity: 'critical', vitals_id: 'auth:SERVICE_DOWN:1', summary: '<b>x</b>', acked_by: '', starts_at: '', ends_at: '' }] },
          ],
        }),
      );
    return new Response('{}', { status: 404 });
  }) as typeof fetch;
  const session = new MemSession();
  const targets = new TargetsApi({ apiBase: '', viewerToken: null }, { fetch: api, session });
  if (withToken) targets.setToken('op-secret');
  const ad: AlertingDeps = { fetch: api, operatorToken: () => targets.operatorToken(), setInterval: () => 0, clearInterval: () => {} };
  const alerting = new AlertingApi({ apiBase: '', viewerToken: null }, ad);
  const inbox = new InboxApi({ apiBase: '', viewerToken: null }, ad);
  const target = document.createElement('div');
  document.body.appendChild(target);
  const app = mount(App, { target, props: { conn, targets, alerting, inbox } });
  flushSync();
  return { send, target, calls, destroy: () => (unmount(app), conn.stop(), target.remove()) };
}

const down = (service: string, marks: object = {}) =>
  serviceState(service, { status: 'DOWN', alerts: [{ id: `${service}:SERVICE_DOWN:${T0}`, alert: 'SERVICE_DOWN', value: 3, threshold: 3, since_ms: T0, ...marks }] });

describe('alert delivery on the page (DOM)', () => {
  it('shows marks, groups dependants under the root, silences, expires and acks', async () => {
    const { send, target, calls, destroy } = setup(true);
    send(snapshot(0, [down('auth', { severity: 'critical' }), down('billing', { inhibited_by: 'auth' }), down('notifications', { inhibited_by: 'auth' }), serviceState('web')]));
    const q = (sel: string) => target.querySelector<HTMLElement>(sel);
    const marksOf = (svc: string) => [...target.querySelectorAll(`[data-testid="alert"][data-service="${svc}"] [data-mark]`)].map((m) => m.textContent);
    expect(marksOf('auth')).toEqual(['critical']);
    expect(marksOf('billing')).toEqual(['inhibited by auth']);
    const group = q('[data-service="auth"] [data-testid="root-cause"]');
    expect(group?.querySelector('summary')?.textContent).toBe('auth DOWN, 2 dependants affected');
    expect([...(group?.querySelectorAll('[data-testid="dependant"]') ?? [])].map((d) => d.textContent)).toEqual(['billing', 'notifications']);
    expect(q('[data-service="billing"] [data-testid="root-cause"]')).toBeNull();

    // Silence 1 h from billing's card: POST with the token; the list shows it.
    q('[data-service="billing"] [data-testid="silence-button"]')?.click();
    await settle();
    const post = calls.find((c) => c.method === 'POST' && c.url === '/api/silences');
    expect(post).toMatchObject({ auth: 'Bearer op-secret', body: { matchers: { service: 'billing' }, for_s: 3600, created_by: 'dashboard' } });
    expect([...target.querySelectorAll('[data-testid="silence"]')].map((s) => s.getAttribute('data-service'))).toEqual(['billing']);
    // The monitor's update event: the silenced mark.
    send(alertMsg(1, { service: 'billing', id: `billing:SERVICE_DOWN:${T0}`, since_ms: T0, value: 3, threshold: 3, inhibited_by: 'auth', silenced: true, update: 'silenced' }));
    expect(marksOf('billing')).toEqual(['silenced', 'inhibited by auth']);
    expect(q('[data-testid="service-card"][data-service="billing"] [data-mark="silenced"]')).not.toBeNull();

    // Expire it from the list.
    q('[data-testid="silence-expire"]')?.click();
    await settle();
    expect(calls.some((c) => c.method === 'DELETE' && c.url === '/api/silences/00ab' && c.auth === 'Bearer op-secret')).toBe(true);
    expect(target.querySelectorAll('[data-testid="silence"]')).toHaveLength(0);

    // Ack auth's alert; "acked by" comes with the monitor's update, then the button goes.
    q('[data-testid="alert"][data-service="auth"] [data-testid="ack-button"]')?.click();
    await settle();
    expect(calls.find((c) => c.url.endsWith('/ack'))).toMatchObject({ url: `/api/alerts/${encodeURIComponent(`auth:SERVICE_DOWN:${T0}`)}/ack`, body: { by: 'dashboard' } });
    send(alertMsg(2, { service: 'auth', id: `auth:SERVICE_DOWN:${T0}`, since_ms: T0, value: 3, threshold: 3, severity: 'critical', acked_by: 'dashboard', update: 'acked' }));
    expect(marksOf('auth')).toEqual(['critical', 'acked by dashboard']);
    expect(q('[data-testid="alert"][data-service="auth"] [data-testid="ack-button"]')).toBeNull();
    destroy();
  });

  it('offers no silence, ack or silence list without an operator token; the inbox lists as text', async () => {
    const { send, target, calls, destroy } = setup(false);
    send(snapshot(0, [down('auth')]));
    expect(target.querySelector('[data-testid="silence-button"]')).toBeNull();
    expect(target.querySelector('[data-testid="ack-button"]')).toBeNull();
    expect(target.querySelector('[data-testid="silences"]')).toBeNull();
    expect(calls.filter((c) => c.url === '/api/inbox')).toHaveLength(0); // closed: not read
    const details = target.querySelector<HTMLDetailsElement>('[data-testid="inbox"] details')!;
    details.open = true;
    details.dispatchEvent(new Event('toggle'));
    await settle();
    const items = [...target.querySelectorAll('[data-testid="inbox-item"]')];
    expect(items).toHaveLength(1);
    expect(items[0]!.querySelector('.line')?.textContent).toBe('inbox: FIRING: SERVICE_DOWN auth firing critical');
    expect(target.querySelector('[data-testid="inbox"] b')).toBeNull();
    destroy();
  });
});
