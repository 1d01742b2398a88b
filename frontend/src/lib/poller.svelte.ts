// The health-check poller: while the page cannot trust the live feed (fallback: no feed; or
// monitor down: a feed without a judge), it GETs every known `/health` URL itself, a round
// every `intervalMs`. It only does the I/O and the pacing; what a result means is in
// fallback.ts, and what the page shows of it is the Connection's business.

import { classifyHealth, probeHealth, type HealthCheckResult, type HealthTarget } from './fallback';

export interface PollerDeps {
  fetch: typeof fetch;
  /** Browser clock, epoch ms. */
  now: () => number;
  setTimeout: (cb: () => void, ms: number) => unknown;
  clearTimeout: (handle: unknown) => void;
}

export interface PollerOptions {
  intervalMs: number;
  timeoutMs: number;
  /** Parallel probes per origin (a browser opens about 6 connections per host). */
  concurrencyPerOrigin: number;
}

export interface PollerHooks {
  /** What to poll, asked again at the start of every round. */
  targets: () => HealthTarget[];
  /** One result, as soon as it is known. */
  onResult: (result: HealthCheckResult) => void;
  /** A round ended; `results` holds every target of that round. */
  onRound: (results: ReadonlyMap<string, HealthCheckResult>) => void;
}

function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return url;
  }
}

export class HealthPoller {
  /** Polling now. */
  active = $state(false);
  /** Browser clock when this stretch of polling began (null when not polling). */
  sinceMs = $state<number | null>(null);
  /** Browser clock of the last completed round (null before the first). */
  lastRoundMs = $state<number | null>(null);

  readonly #opts: PollerOptions;
  readonly #deps: PollerDeps;
  readonly #hooks: PollerHooks;
  /** Bumped by every start and stop, so a round from an earlier stretch reports nothing. */
  #generation = 0;
  #timer: unknown = null;

  constructor(opts: PollerOptions, deps: PollerDeps, hooks: PollerHooks) {
    this.#opts = opts;
    this.#deps = deps;
    this.#hooks = hooks;
  }

  /** Starts polling now (a round at once); no-op while already polling. */
  start(): void {
    if (this.active) return;
    this.active = true;
    this.sinceMs = this.#deps.now();
    this.lastRoundMs = null;
    this.#generation += 1;
    void this.#round(this.#generation);
  }

  /** Stops; a round in flight finishes its requests but reports nothing. */
  stop(): void {
    if (!this.active) return;
    this.active = false;
    this.#generation += 1;
    if (this.#timer !== null) this.#deps.clearTimeout(this.#timer);
    this.#timer = null;
    this.sinceMs = null;
    this.lastRoundMs = null;
  }

  async #round(gen: number): Promise<void> {
    this.#timer = null;
    const started = this.#deps.now();
    const targets = this.#hooks.targets();
    // One queue per origin: a process serving many services is polled at most N at a time, so
    // the timeout measures the service, not the browser's own connection queue.
    const byOrigin = new Map<string, HealthTarget[]>();
    for (const t of targets) {
      const o = originOf(t.url);
      const list = byOrigin.get(o);
      if (list === undefined) byOrigin.set(o, [t]);
      else list.push(t);
    }
    const results = new Map<string, HealthCheckResult>();
    const record = (r: HealthCheckResult) => {
      results.set(r.service, r);
      if (gen === this.#generation) this.#hooks.onResult(r);
    };
    const runOrigin = async (list: HealthTarget[]) => {
      let refused: string | null = null;
      let next = 0;
      const worker = async () => {
        while (next < list.length && gen === this.#generation) {
          const t = list[next++]!;
          if (refused !== null) {
            // The whole origin refused connections this round: no need to knock on every door.
            record({ service: t.service, url: t.url, check: 'unreachable', detail: refused, mode: null, checkedAtMs: this.#deps.now() });
            continue;
          }
          const probe = await probeHealth(t.url, this.#opts.timeoutMs, this.#deps);
          const verdict = classifyHealth(probe);
          if (probe.kind === 'network') refused = verdict.detail;
          record({ ...verdict, service: t.service, url: t.url, checkedAtMs: this.#deps.now() });
        }
      };
      const n = Math.max(1, Math.min(this.#opts.concurrencyPerOrigin, list.length));
      await Promise.all(Array.from({ length: n }, worker));
    };
    await Promise.all([...byOrigin.values()].map(runOrigin));
    if (gen !== this.#generation) return;
    this.#hooks.onRound(results);
    this.lastRoundMs = this.#deps.now();
    const wait = Math.max(0, started + this.#opts.intervalMs - this.#deps.now());
    this.#timer = this.#deps.setTimeout(() => void this.#round(gen), wait);
  }
}
