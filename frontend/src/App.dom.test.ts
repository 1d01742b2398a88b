// @vitest-environment happy-dom
// Mounts the page in a DOM (happy-dom) to exercise what only runs in a browser: effects, event
// handlers, focus and the keyboard.
import { flushSync, mount, unmount } from 'svelte';
import { describe, expect, it } from 'vitest';
import App from './App.svelte';
import { alertMsg, metricsMsg, serviceState, snapshot, statusMsg, T0 } from './lib/testdata';
import { FakeSocket, fakeConnection, openFeed } from './lib/testpage';

const settle = () => new Promise<void>((r) => setTimeout(r, 0));

function setup() {
  const fetched: string[] = [];
  const { conn, frames } = fakeConnection({
    fetch: (async (url: string) => {
      fetched.push(String(url));
      if (String(url).endsWith('/data')) {
        return new Response(JSON.stringify({ service: 'auth', kind: 'sessions', at_ms: T0, items: [{ user: 'ada1', ok: true, at_ms: T0 }] }));
      }
      return new Response('{"events":[]}');
    }) as typeof fetch,
  });
  const send = openFeed(conn, frames);
  const target = document.createElement('div');
  document.body.appendChild(target);
  const app = mount(App, { target, props: { conn } });
  flushSync();
  return { conn, send, target, fetched, destroy: () => (unmount(app), conn.stop(), target.remove()) };
}

describe('App (DOM)', () => {
  it('updates cards live, filters, and opens and closes the data panel with the keyboard', async () => {
    const { send, target, fetched, destroy } = setup();
    send(snapshot(0, [serviceState('auth', { health_url: 'http://127.0.0.1:3001/health' }), serviceState('billing')]));
    const state = () => target.querySelector('[data-testid="connection-state"]')?.getAttribute('data-state');
    expect(state()).toBe('live');
    const cards = () => [...target.querySelectorAll('[data-testid="service-card"]')].map((c) => `${c.getAttribute('data-service')}:${c.getAttribute('data-status')}`);
    expect(cards()).toEqual(['auth:HEALTHY', 'billing:HEALTHY']);

    send(statusMsg(1, { service: 'billing', status: 'DOWN', reasons: ['stopped'] }));
    send(alertMsg(2, { service: 'billing' }));
    send(metricsMsg(3, { service: 'auth', at_ms: T0 + 5, health_url: 'http://127.0.0.1:3001/health' }));
    expect(cards()).toEqual(['billing:DOWN', 'auth:HEALTHY']);
    expect(target.querySelector('[data-testid="announcer"]')?.textContent).toBe('billing is DOWN (stopped).');
    expect(target.querySelectorAll('[data-testid="alert"]')).toHaveLength(1);

    const billingButton = target.querySelector<HTMLButtonElement>('[data-service="billing"] [data-testid="data-button"]');
    expect(billingButton?.disabled).toBe(true);

    // filter
    const input = target.querySelector<HTMLInputElement>('[data-testid="filter"]')!;
    input.value = 'down';
    input.dispatchEvent(new Event('input', { bubbles: true }));
    flushSync();
    expect(cards()).toEqual(['billing:DOWN']);
    input.value = '';
    input.dispatchEvent(new Event('input', { bubbles: true }));
    flushSync();

    // data panel
    const authButton = target.querySelector<HTMLButtonElement>('[data-service="auth"] [data-testid="data-button"]')!;
    expect(authButton.disabled).toBe(false);
    authButton.focus();
    authButton.click();
    flushSync();
    expect(target.querySelector('[data-testid="data-panel"]')).not.toBeNull();
    await settle();
    await settle();
    flushSync();
    expect(fetched).toContain('http://127.0.0.1:3001/data');
    expect(target.querySelector('[data-testid="data-panel"] table')?.textContent).toContain('ada1');
    expect(document.activeElement?.getAttribute('data-testid')).toBe('data-close');
    window.dispatchEvent(new KeyboardEvent('keydown', { key: 'Escape' }));
    flushSync();
    expect(target.querySelector('[data-testid="data-panel"]')).toBeNull();
    expect(document.activeElement).toBe(authButton);
    destroy();
  });

  it('shows health-check results in fallback', () => {
    const { conn, send, target, destroy } = setup();
    send(snapshot(0, [serviceState('auth', { health_url: 'http://127.0.0.1:3001/health' })]));
    FakeSocket.last!.onclose?.({ code: 1006 });
    flushSync();
    expect(conn.mode).toBe('fallback');
    expect(target.querySelector('[data-testid="connection-state"]')?.getAttribute('data-state')).toBe('fallback');
    expect(target.querySelector('[data-source="health-check"]')).not.toBeNull();
    destroy();
  });
});
