import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HistoryFetcher, type HistoryDeps } from './history.svelte';
import type { History } from './protocol';

// vitest's fake timers drive both the fetcher's timers and Date.now().

const EMPTY = '{"events":[]}';

function setup(opts: { random?: () => number; respond?: (n: number) => Promise<Response> } = {}) {
  const calls: number[] = []; // Date.now() at each fetch
  const delivered: History[] = [];
  const deps: HistoryDeps = {
    fetch: ((_url: string, init?: RequestInit) => {
      calls.push(Date.now());
      const answer = opts.respond?.(calls.length) ?? Promise.resolve(new Response(EMPTY));
      return new Promise((resolve, reject) => {
        init?.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
        answer.then(resolve, reject);
      });
    }) as typeof fetch,
    now: () => Date.now(),
    random: opts.random ?? (() => 0.5),
    setTimeout: (cb, ms) => setTimeout(cb, ms),
    clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
  };
  const f = new HistoryFetcher({ url: '/api/history?limit=100', jitterMs: 2000, minIntervalMs: 5000, timeoutMs: 5000 }, deps, (h) =>
    delivered.push(h),
  );
  return { f, calls, delivered };
}

const later = (ms: number, body = EMPTY) => new Promise<Response>((r) => setTimeout(() => r(new Response(body)), ms));

describe('HistoryFetcher', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 1_000_000 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('fetches the first time at once', async () => {
    const { f, calls, delivered } = setup();
    f.request();
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toEqual([1_000_000]);
    expect(delivered).toHaveLength(1);
    expect(f.loading).toBe(false);
  });

  it('coalesces a burst of requests into one fetch, no sooner than the minimum interval, after a jitter', async () => {
    const { f, calls } = setup({ random: () => 0.25 });
    f.request();
    await vi.advanceTimersByTimeAsync(0);
    for (let i = 0; i < 50; i++) {
      f.request(); // e.g. a gateway resync: snapshot after snapshot
      await vi.advanceTimersByTimeAsync(10);
    }
    expect(calls).toHaveLength(1);
    // ends at 1_000_000: next at +5 s, plus 0.25 x 2 s of jitter
    await vi.advanceTimersByTimeAsync(5500 - 500 - 1);
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toEqual([1_000_000, 1_005_500]);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(calls).toHaveLength(2);
  });

  it('spreads the fetch after a resync over the jitter window', async () => {
    for (const [r, at] of [
      [0, 5000],
      [0.999, 5000 + 1998],
    ] as const) {
      vi.setSystemTime(1_000_000);
      const { f, calls } = setup({ random: () => r });
      f.request();
      await vi.advanceTimersByTimeAsync(0);
      await vi.advanceTimersByTimeAsync(10_000); // long after: no minimum-interval wait left
      f.request();
      await vi.advanceTimersByTimeAsync(2000);
      expect(calls.map((t) => t - 1_000_000)).toEqual([0, 10_000 + (at - 5000)]);
    }
  });

  it('keeps at most one fetch in flight; requests meanwhile get one more fetch after it', async () => {
    const { f, calls, delivered } = setup({ respond: (n) => (n === 1 ? later(3000) : Promise.resolve(new Response(EMPTY))) });
    f.request();
    await vi.advanceTimersByTimeAsync(0);
    expect(f.loading).toBe(true);
    f.request();
    f.request();
    await vi.advanceTimersByTimeAsync(2999);
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1); // the slow one ends at +3 s
    expect(delivered).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(5000 + 1000); // then 5 s, plus 1 s of jitter
    expect(calls.map((t) => t - 1_000_000)).toEqual([0, 9000]);
    expect(delivered).toHaveLength(2);
  });

  it('a failed fetch does not stop the next request, and is not retried by itself', async () => {
    const { f, calls, delivered } = setup({ respond: (n) => (n === 1 ? Promise.reject(new TypeError('Failed to fetch')) : Promise.resolve(new Response(EMPTY))) });
    f.request();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(calls).toHaveLength(1);
    expect(delivered).toHaveLength(0);
    f.request();
    await vi.advanceTimersByTimeAsync(2000);
    expect(calls).toHaveLength(2);
    expect(delivered).toHaveLength(1);
  });

  it('a hung fetch is given up after its timeout', async () => {
    const { f, calls } = setup({ respond: (n) => (n === 1 ? new Promise<Response>(() => {}) : Promise.resolve(new Response(EMPTY))) });
    f.request();
    await vi.advanceTimersByTimeAsync(0);
    f.request();
    await vi.advanceTimersByTimeAsync(5000);
    expect(f.loading).toBe(false);
    await vi.advanceTimersByTimeAsync(5000 + 1000);
    expect(calls).toHaveLength(2);
  });

  it('cancel drops the scheduled fetch and the answer of the one in flight', async () => {
    const { f, calls, delivered } = setup({ respond: () => later(1000) });
    f.request();
    await vi.advanceTimersByTimeAsync(0);
    f.cancel();
    await vi.advanceTimersByTimeAsync(2000);
    expect(delivered).toHaveLength(0);
    f.request();
    await vi.advanceTimersByTimeAsync(0);
    f.cancel();
    await vi.advanceTimersByTimeAsync(20_000);
    expect(calls).toHaveLength(1);
    expect(delivered).toHaveLength(0);
  });
});
