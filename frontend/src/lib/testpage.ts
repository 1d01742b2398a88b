// Test doubles for mounting the page: a WebSocket the test drives, an in-memory session
// storage, and a Connection wired to them (no network, no timers, frames run on demand).
import { flushSync } from 'svelte';
import { Connection, type ConnectionDeps, type WebSocketLike } from './connection.svelte';
import type { SessionStorageLike } from './targets.svelte';
import { T0 } from './testdata';

/** The socket the Connection opened last is `FakeSocket.last`. */
export class FakeSocket implements WebSocketLike {
  static last: FakeSocket | null = null;
  readyState = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  constructor() {
    FakeSocket.last = this;
  }
  send(): void {}
  close(): void {}
}

export class MemSession implements SessionStorageLike {
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

/** Lets pending promises (fetch doubles, their handlers) run, then renders. */
export const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setTimeout(r, 0));
  flushSync();
};

/** A Connection on a FakeSocket; `frames` holds the render callbacks it asked for. */
export function fakeConnection(
  opts: { fetch?: typeof fetch; now?: number } = {},
): { conn: Connection; frames: (() => void)[] } {
  const frames: (() => void)[] = [];
  const now = opts.now ?? T0;
  const deps: ConnectionDeps = {
    WebSocket: FakeSocket,
    fetch: opts.fetch ?? ((async () => new Response('{"events":[]}')) as unknown as typeof fetch),
    now: () => now,
    random: () => 0.5,
    setTimeout: () => 0,
    clearTimeout: () => {},
    requestFrame: (cb) => {
      frames.push(cb);
      return () => {};
    },
    storage: null,
  };
  return { conn: new Connection({ wsUrl: 'ws://h/ws' }, deps), frames };
}

/** Starts `conn` and opens its socket; `send(frame)` delivers one feed frame and renders it. */
export function openFeed(conn: Connection, frames: (() => void)[]): (m: object) => void {
  conn.start();
  const ws = FakeSocket.last!;
  ws.onopen?.({});
  return (m: object) => {
    ws.onmessage?.({ data: JSON.stringify(m) });
    for (const f of frames.splice(0)) f();
    flushSync();
  };
}
