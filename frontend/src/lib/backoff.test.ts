import { describe, expect, it } from 'vitest';
import { backoffCap, backoffDelay, DEFAULT_BACKOFF } from './backoff';

describe('backoff', () => {
  it('the cap grows exponentially from 250 ms to 10 s', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((n) => backoffCap(n))).toEqual([250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
    expect(backoffCap(1000)).toBe(10_000);
    expect(backoffCap(-3)).toBe(250);
  });

  it('full jitter: the delay is uniform between the floor and the cap', () => {
    expect(backoffDelay(3, () => 0.999999)).toBe(1999);
    expect(backoffDelay(3, () => 0.5)).toBe(1000);
    expect(backoffDelay(3, () => 0)).toBe(DEFAULT_BACKOFF.minMs);
    expect(backoffDelay(10, () => 0.5)).toBe(5000);
  });

  it('stays in bounds for any random value and attempt', () => {
    for (let attempt = 0; attempt < 40; attempt++) {
      for (const r of [0, 1e-9, 0.1, 0.5, 0.9, 0.999, 1, -1, 2, Number.NaN]) {
        const d = backoffDelay(attempt, () => r);
        expect(d).toBeGreaterThanOrEqual(DEFAULT_BACKOFF.minMs);
        expect(d).toBeLessThanOrEqual(backoffCap(attempt));
        expect(Number.isFinite(d)).toBe(true);
      }
    }
  });

  it('different random draws give different delays (jitter)', () => {
    const draws = [0.1, 0.3, 0.6, 0.9].map((r) => backoffDelay(6, () => r));
    expect(new Set(draws).size).toBe(4);
  });

  it('options are honoured', () => {
    const opts = { baseMs: 100, maxMs: 1000, minMs: 0 };
    expect(backoffDelay(0, () => 0, opts)).toBe(0);
    expect(backoffDelay(20, () => 0.99, opts)).toBe(990);
  });
});
