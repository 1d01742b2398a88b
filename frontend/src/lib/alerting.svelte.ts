// Alert delivery on the page, the I/O part: the active silences (`GET /api/silences`, refreshed
// after each change and periodically), the writes (silence a service, expire, ack: with the
// operator token the TargetsApi holds), and the gateway's inbox (`GET /api/inbox`, polled while
// its panel is open). What a request and an answer mean is in ./alerting.ts and the parsers.

import { alertingRequest, silenceServiceRequest, type AlertingOp } from './alerting';
import { parseInboxList, parseSilenceList, parseSilenceReply, type InboxNotification, type Silence } from './protocol';
import { errorReason, readWriteAnswer, type ApiResult } from './targets.svelte';

const DEFAULT_TIMEOUT_MS = 10_000;
/** How often the silence list is refreshed while the page holds an operator token. */
export const SILENCES_REFRESH_MS = 15_000;
/** How often the inbox is read while its panel is open. */
export const INBOX_REFRESH_MS = 3_000;

export interface AlertingDeps {
  fetch: typeof fetch;
  /** The operator token the page holds (null: none, no writes). */
  operatorToken: () => string | null;
  setInterval: (fn: () => void, ms: number) => unknown;
  clearInterval: (handle: unknown) => void;
}

export interface AlertingOptions {
  apiBase: string;
  viewerToken: string | null;
  timeoutMs?: number;
  /** Who acks and silences (`by`, `created_by`). */
  actor?: string;
}

type Sent = { ok: true; status: number; body: unknown } | { ok: false; kind: 'network'; status: null; error: string };

async function send(deps: AlertingDeps, req: { url: string; init: RequestInit }, timeoutMs: number): Promise<Sent> {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  try {
    const res = await deps.fetch(req.url, { ...req.init, signal: ctl.signal });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: kept as text
    }
    return { ok: true, status: res.status, body };
  } catch (e) {
    const error = ctl.signal.aborted ? `no answer within ${timeoutMs / 1000} s` : `request failed (${e instanceof Error ? e.message : String(e)})`;
    return { ok: false, kind: 'network', status: null, error };
  } finally {
    clearTimeout(timer);
  }
}

export class AlertingApi {
  /** Silences not yet over, as last listed; null before the first answer. */
  silences = $state.raw<readonly Silence[] | null>(null);
  listError = $state<string | null>(null);
  /** Who the page acts as (ack `by`, silence `created_by`). */
  actor = $state('dashboard');

  readonly #opts: Required<Omit<AlertingOptions, 'actor'>>;
  readonly #deps: AlertingDeps;
  #timer: unknown = null;

  constructor(opts: AlertingOptions, deps: AlertingDeps) {
    this.#opts = { timeoutMs: DEFAULT_TIMEOUT_MS, apiBase: opts.apiBase, viewerToken: opts.viewerToken };
    if (opts.actor) this.actor = opts.actor;
    this.#deps = deps;
  }

  #req(op: AlertingOp) {
    return alertingRequest(op, this.#opts.apiBase, this.#opts.viewerToken, this.#deps.operatorToken());
  }

  /** `GET /api/silences`. */
  async listSilences(): Promise<ApiResult<Silence[]>> {
    const r = await send(this.#deps, this.#req({ op: 'list-silences' }), this.#opts.timeoutMs);
    let result: ApiResult<Silence[]>;
    if (!r.ok) result = r;
    else if (r.status === 200) {
      const list = parseSilenceList(r.body);
      result = list === null ? { ok: false, kind: 'unavailable', status: 200, error: 'the silence list was not understood' } : { ok: true, value: list.silences };
    } else {
      const why = errorReason(r.body);
      result = { ok: false, kind: r.status === 401 ? 'unauthorized' : 'unavailable', status: r.status, error: `HTTP ${r.status}${why ? `: ${why}` : ''}` };
    }
    if (result.ok) {
      this.silences = result.value;
      this.listError = null;
    } else {
      this.listError = result.error;
    }
    return result;
  }

  /** Refreshes the list now and every SILENCES_REFRESH_MS until `stop`. */
  start(): void {
    if (this.#timer !== null) return;
    void this.listSilences();
    this.#timer = this.#deps.setInterval(() => void this.listSilences(), SILENCES_REFRESH_MS);
  }

  stop(): void {
    if (this.#timer !== null) this.#deps.clearInterval(this.#timer);
    this.#timer = null;
  }

  /** "Silence 1 h": `POST /api/silences` for every alert of `service`. */
  async silenceService(service: string): Promise<ApiResult<string | null>> {
    return this.#write({ op: 'create-silence', body: silenceServiceRequest(service, this.actor) }, service);
  }

  /** `DELETE /api/silences/<id>`. */
  async expire(id: string): Promise<ApiResult<string | null>> {
    return this.#write({ op: 'expire-silence', id }, `silence ${id}`);
  }

  /** `POST /api/alerts/<id>/ack`. */
  async ack(id: string): Promise<ApiResult<string | null>> {
    return this.#write({ op: 'ack', id, by: this.actor }, `alert ${id}`);
  }

  async #write(op: AlertingOp, what: string): Promise<ApiResult<string | null>> {
    if (this.#deps.operatorToken() === null) return { ok: false, kind: 'no-token', status: null, error: 'no operator token: use the Operator control first' };
    const r = await send(this.#deps, this.#req(op), this.#opts.timeoutMs);
    if (!r.ok) return r;
    const answer = readWriteAnswer('DELETE', what, r.status, r.body);
    if (!answer.ok) {
      // Not a target: say what was not found in this API's words.
      if (answer.kind === 'not-found') return { ...answer, error: `no such ${what.startsWith('alert') ? 'firing alert' : 'silence'} (it may have ended)` };
      return answer;
    }
    if (op.op !== 'ack') void this.listSilences();
    return { ok: true, value: parseSilenceReply(r.body)?.id ?? null };
  }
}

export class InboxApi {
  /** Newest first, as last read; null before the first answer. */
  notifications = $state.raw<readonly InboxNotification[] | null>(null);
  received = $state(0);
  error = $state<string | null>(null);

  readonly #opts: Required<Omit<AlertingOptions, 'actor'>>;
  readonly #deps: AlertingDeps;
  #timer: unknown = null;

  constructor(opts: AlertingOptions, deps: AlertingDeps) {
    this.#opts = { timeoutMs: DEFAULT_TIMEOUT_MS, apiBase: opts.apiBase, viewerToken: opts.viewerToken };
    this.#deps = deps;
  }

  /** `GET /api/inbox`. */
  async refresh(): Promise<void> {
    const r = await send(this.#deps, alertingRequest({ op: 'inbox' }, this.#opts.apiBase, this.#opts.viewerToken, null), this.#opts.timeoutMs);
    if (!r.ok) {
      this.error = r.error;
      return;
    }
    if (r.status !== 200) {
      const why = errorReason(r.body);
      this.error = r.status === 404 ? `the gateway has no inbox${why ? ` (${why})` : ''}` : `HTTP ${r.status}${why ? `: ${why}` : ''}`;
      return;
    }
    const list = parseInboxList(r.body);
    if (list === null) {
      this.error = 'the inbox was not understood';
      return;
    }
    this.notifications = list.notifications;
    this.received = list.received;
    this.error = null;
  }

  /** Reads now and every INBOX_REFRESH_MS until `close` (while the panel is open). */
  open(): void {
    if (this.#timer !== null) return;
    void this.refresh();
    this.#timer = this.#deps.setInterval(() => void this.refresh(), INBOX_REFRESH_MS);
  }

  close(): void {
    if (this.#timer !== null) this.#deps.clearInterval(this.#timer);
    this.#timer = null;
  }

  get polling(): boolean {
    return this.#timer !== null;
  }
}
