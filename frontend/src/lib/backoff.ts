// Reconnect delays: exponential backoff with full jitter (a uniformly random delay between 0 and
// the exponential cap), so a gateway restart is not met by every dashboard at the same instant.

export interface BackoffOptions {
  /** Cap of the first attempt's delay. */
  baseMs: number;
  /** Largest cap. */
  maxMs: number;
  /** Smallest delay returned, so a tight loop cannot happen even when random() gives 0. */
  minMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 250, maxMs: 10_000, minMs: 100 };

/** The cap for attempt `n` (0-based): min(maxMs, baseMs * 2^n). */
export function backoffCap(attempt: number, opts: BackoffOptions = DEFAULT_BACKOFF): number {
  const n = Math.max(0, Math.floor(attempt));
  // 2^n overflows to Infinity for large n, which min() handles.
  return Math.min(opts.maxMs, opts.baseMs * 2 ** n);
}

/**
 * Delay before reconnect attempt `n` (0-based): uniform in [minMs, cap(n)] ("full jitter").
 * `random` returns a number in [0, 1), like Math.random; injected for tests.
 */
export function backoffDelay(attempt: number, random: () => number = Math.random, opts: BackoffOptions = DEFAULT_BACKOFF): number {
  const cap = backoffCap(attempt, opts);
  const raw = random();
  const r = Number.isFinite(raw) ? Math.min(Math.max(raw, 0), 1) : 0.5;
  const delay = Math.floor(r * cap);
  return Math.min(Math.max(delay, Math.min(opts.minMs, cap)), cap);
}
