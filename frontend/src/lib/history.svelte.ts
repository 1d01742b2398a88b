// The timeline's `GET /api/history` fetch, coalesced. Every (re)snapshot wants the history, and
// after a gateway resync thousands of pages get one at the same moment: each would fetch at
// once, and each fetch costs the gateway a JetStream read. So: at most one fetch in flight (a
// request meanwhile is served by one more fetch after it), none sooner than `minIntervalMs`
// after the previous one ended, and, except for the page's first, a random delay of up to
// `jitterMs` first so that pages resynced together spread out.

import { parseHistory, type History } from './protocol';

export interface HistoryDeps {
  fetch: typeof fetch;
  /** Browser clock, epoch ms. */
  now: () => number;
  random: () => number;
  setTimeout: (cb: () => void, ms: number) => unknown;
  clearTimeout: (handle: unknown) => void;
}

export interface HistoryOptions {
  url: string;
  jitterMs: number;
  minIntervalMs: number;
  timeoutMs: number;
}

export class HistoryFetcher {
  /** A fetch is in flight. */
  loading = $state(false);
  /** Fetches started (for tests and the curious). */
  fetches = 0;

  readonly #opts: HistoryOptions;
  readonly #deps: HistoryDeps;
  readonly #onHistory: (h: History) => void;
  #timer: unknown = null;
  #abort: AbortController | null = null;
  /** A request arrived that no started fetch serves yet. */
  #wanted = false;
  /** Browser clock when the last fetch ended (null: none yet). */
  #lastEndMs: number | null = null;
  /** Bumped by cancel(), so a fetch from before it delivers nothing. */
  #generation = 0;

  constructor(opts: HistoryOptions, deps: HistoryDeps, onHistory: (h: History) => void) {
    this.#opts = opts;
    this.#deps = deps;
    this.#onHistory = onHistory;
  }

  /** Asks for the history; served by a fetch that starts after this call, soon. */
  request(): void {
    this.#wanted = true;
    // Already scheduled (it will serve this request), or in flight (it re-schedules when done).
    if (this.#timer !== null || this.loading) return;
    this.#schedule();
  }

  /** Drops what is scheduled or in flight. */
  cancel(): void {
    this.#generation += 1;
    this.#wanted = false;
    if (this.#timer !== null) this.#deps.clearTimeout(this.#timer);
    this.#timer = null;
    this.#abort?.abort();
    this.#abort = null;
    this.loading = false;
  }

  #schedule(): void {
    const now = this.#deps.now();
    const first = this.fetches === 0;
    const earliest = this.#lastEndMs === null ? now : Math.max(now, this.#lastEndMs + this.#opts.minIntervalMs);
    const jitter = first ? 0 : Math.floor(this.#deps.random() * this.#opts.jitterMs);
    this.#timer = this.#deps.setTimeout(() => {
      this.#timer = null;
      void this.#run();
    }, earliest - now + jitter);
  }

  async #run(): Promise<void> {
    const gen = this.#generation;
    this.#wanted = false;
    this.loading = true;
    this.fetches += 1;
    const ctl = new AbortController();
    this.#abort = ctl;
    const timer = this.#deps.setTimeout(() => ctl.abort(), this.#opts.timeoutMs);
    try {
      const res = await this.#deps.fetch(this.#opts.url, { cache: 'no-store', signal: ctl.signal });
      if (res.ok) {
        const history = parseHistory(await res.json());
        if (history !== null && gen === this.#generation) this.#onHistory(history);
      }
    } catch {
      // The timeline keeps its live events; the next request tries again.
    } finally {
      this.#deps.clearTimeout(timer);
      if (gen === this.#generation) {
        this.#abort = null;
        this.loading = false;
        this.#lastEndMs = this.#deps.now();
        if (this.#wanted) this.#schedule();
      }
    }
  }
}
