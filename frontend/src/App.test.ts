// Renders the whole page on the server (no browser here) with a connection in each mode, so a
// template error or a missing data-testid shows up in `npm test`.
import { render } from 'svelte/server';
import { describe, expect, it } from 'vitest';
import App from './App.svelte';
import { alertMsg, metricsMsg, serviceState, snapshot, statusMsg, T0 } from './lib/testdata';
import { FakeSocket, fakeConnection } from './lib/testpage';

// The page's fetches never answer here: a server render shows what the feed alone gives.
const makeConn = (now: number) => fakeConnection({ now, fetch: (() => new Promise(() => {})) as typeof fetch });

const hostile = '<img src=x onerror=alert(1)>';

describe('App (server render)', () => {
  it('renders a live dashboard with cards, alerts, timeline and monitor figures', () => {
    const { conn, frames } = makeConn(T0);
    conn.start();
    const ws = FakeSocket.last!;
    ws.onopen?.({});
    const send = (m: object) => ws.onmessage?.({ data: JSON.stringify(m) });
    send(
      snapshot(0, [
        serviceState('auth'),
        serviceState('billing', { health_url: 'http://127.0.0.1:3002/health' }),
        serviceState(hostile),
      ]),
    );
    send(metricsMsg(1, { service: 'auth', at_ms: T0 + 1 }));
    send(statusMsg(2, { service: 'billing', status: 'DOWN', reasons: ['stopped'] }));
    send(alertMsg(3, { service: 'billing' }));
    for (const f of frames.splice(0)) f();
    expect(conn.mode).toBe('live');

    const { body } = render(App, { props: { conn } });
    expect(body).toContain('data-testid="connection-state"');
    expect(body).toContain('data-state="live"');
    expect(body).toMatch(/data-testid="service-card"[^>]*data-service="billing"[^>]*data-status="DOWN"/);
    expect(body).toMatch(/data-testid="alert"[^>]*data-alert="SERVICE_DOWN"[^>]*data-service="billing"/);
    expect(body).toContain('billing is DOWN (stopped).');
    expect(body).toContain('data-testid="monitor-panel"');
    expect(body).toContain('data-testid="timeline-item"');
    // trouble first
    expect(body.indexOf('data-service="billing"')).toBeLessThan(body.indexOf('data-service="auth"'));
    // the hostile name is text, never markup
    expect(body).not.toContain(hostile);
    expect(body).toContain('&lt;img src=x onerror=alert(1)>');
    // the data button of a DOWN service is disabled
    const billingCard = body.slice(body.indexOf('data-service="billing"'), body.indexOf('data-service="auth"'));
    expect(billingCard).toMatch(/data-testid="data-button"[^>]*disabled/);
    conn.stop();
  });

  it('renders the fallback view with health-check results', () => {
    const { conn, frames } = makeConn(T0);
    conn.start();
    const ws = FakeSocket.last!;
    ws.onopen?.({});
    ws.onmessage?.({ data: JSON.stringify(snapshot(0, [serviceState('auth', { health_url: 'http://127.0.0.1:3001/health' })])) });
    for (const f of frames.splice(0)) f();
    ws.onclose?.({ code: 1006 });
    expect(conn.mode).toBe('fallback');
    const { body } = render(App, { props: { conn } });
    expect(body).toContain('data-state="fallback"');
    expect(body).toContain('data-source="health-check"');
    expect(body).toContain('Retry now');
    conn.stop();
  });

  it('renders probe and agent cards, and the operator form when a token is held', async () => {
    const { TargetsApi } = await import('./lib/targets.svelte');
    const { conn, frames } = makeConn(T0);
    conn.start();
    const ws = FakeSocket.last!;
    ws.onopen?.({});
    const probeFigures = { ...serviceState('x').figures, cpu_pct: undefined, mem_pct: undefined, apdex: 0.5 };
    ws.onmessage?.({
      data: JSON.stringify(
        snapshot(0, [
          serviceState('pay', { source: 'probe', probe: { ok: false, error: 'connect refused' }, health_url: '', figures: probeFigures }),
          serviceState('web1', { source: 'agent', health_url: '', host: { cores: [1, 2], load1: 0.1, load5: 0.2, load15: 0.3, procs: 10, top: [] } }),
        ]),
      ),
    });
    for (const f of frames.splice(0)) f();
    const session = new Map<string, string>();
    const targets = new TargetsApi(
      { apiBase: '', viewerToken: null },
      { fetch: (() => new Promise(() => {})) as typeof fetch, session: { getItem: (k) => session.get(k) ?? null, setItem: (k, v) => void session.set(k, v), removeItem: (k) => void session.delete(k) } },
    );
    const without = render(App, { props: { conn, targets } }).body;
    expect(without).toContain('data-testid="operator-button"');
    expect(without).not.toContain('data-testid="add-target"');
    expect(without).not.toContain('data-testid="remove-button"');
    targets.setToken('op');
    const body = render(App, { props: { conn, targets } }).body;
    expect(body).toContain('data-testid="add-target"');
    expect(body).toContain('data-state="held"');
    expect(body).not.toContain('op<'); // the token itself is never rendered
    expect(body).toMatch(/data-service="pay"[^>]*data-sample-source="probe"/);
    expect(body).toMatch(/data-figure="cpu"[^>]*>n\/a</);
    expect(body).toContain('connect refused');
    expect(body).toContain('data-testid="remove-button"');
    expect(body).toMatch(/data-service="web1"[^>]*data-sample-source="agent"/);
    expect(body).toContain('data-testid="host-button"');
    conn.stop();
  });

  it('renders while connecting', () => {
    const { conn } = makeConn(T0);
    conn.start();
    const { body } = render(App, { props: { conn } });
    expect(body).toContain('data-state="connecting"');
    conn.stop();
  });
});

describe('ServiceCard (server render)', () => {
  it('with the monitor down, shows the health check beside the stale figures, marked as such', async () => {
    const { default: ServiceCard } = await import('./lib/components/ServiceCard.svelte');
    const { initialState, reduce } = await import('./lib/reducer');
    const view = reduce(initialState(), metricsMsg(1, { service: 'auth', at_ms: T0 }), T0);
    const service = view.services.get('auth')!;
    const props = {
      service,
      check: { service: 'auth', url: 'http://h:3001/health', check: 'up' as const, detail: 'ok', mode: 'clear', checkedAtMs: T0 + 11_000 },
      now: T0 + 12_000,
      offsetMs: 0,
      onOpenData: () => {},
    };
    const down = render(ServiceCard, { props: { ...props, mode: 'monitor-down' as const } }).body;
    expect(down).toContain('data-source="health-check"');
    expect(down).toContain('data-context="monitor-down"');
    expect(down).toContain('data-check="up"');
    expect(down).toContain('(monitor down, figures from 12 s ago)');
    expect(down).toContain('data-status="HEALTHY"'); // the monitor's last word stays
    const live = render(ServiceCard, { props: { ...props, check: undefined, mode: 'live' as const } }).body;
    expect(live).not.toContain('data-source="health-check"');
    const fallback = render(ServiceCard, { props: { ...props, mode: 'fallback' as const } }).body;
    expect(fallback).toContain('data-context="fallback"');
    expect(fallback).not.toContain('monitor down');
  });
});
