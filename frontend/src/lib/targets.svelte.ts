// Operator actions: the operator token the page may hold, and the gateway's target API
// (`GET /api/targets`, `PUT` and `DELETE /api/targets/<service>`), the only code that writes.
//
// The operator token lives in sessionStorage (this tab only, gone when it closes), never in
// the URL or localStorage, and is sent only as `Authorization: Bearer` on the writes. A viewer
// token (the page's `?token=`), when there is one, goes as `?token=` as for every /api call.
// What a request and an answer mean is in the exported pure functions; the class holds the
// state the components read and does the fetches.

import { parseTarget, parseTargetList, type Target } from './protocol';

/** Where the operator token is kept (sessionStorage). */
export const OPERATOR_TOKEN_KEY = 'vitals.operator-token.v1';
/** Longest token accepted from the paste box. */
export const MAX_TOKEN_LEN = 4096;
const DEFAULT_TIMEOUT_MS = 10_000;

/** The part of the Web Storage API used here (sessionStorage, or a test double). */
export interface SessionStorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface TargetsDeps {
  fetch: typeof fetch;
  /** sessionStorage; null when the browser refuses it (the token then lasts until reload). */
  session: SessionStorageLike | null;
}

export interface TargetsOptions {
  /** Prefix for /api/... ('' = same origin). */
  apiBase: string;
  /** The page's viewer token, sent as `?token=` (as the connection does); null: none. */
  viewerToken: string | null;
  timeoutMs?: number;
}

export type ApiErrorKind = 'no-token' | 'bad-request' | 'unauthorized' | 'not-found' | 'unavailable' | 'network';

export type ApiResult<T> = { ok: true; value: T } | { ok: false; kind: ApiErrorKind; status: number | null; error: string };

/** Why a pasted token cannot be used; null when it can. A header value is visible ASCII. */
export function checkToken(raw: string): string | null {
  const t = raw.trim();
  if (t === '') return 'paste the operator token';
  if (t.length > MAX_TOKEN_LEN) return `a token is at most ${MAX_TOKEN_LEN} characters`;
  if (!/^[\x21-\x7e]+$/.test(t)) return 'a token has no spaces or non-ASCII characters';
  return null;
}

function withToken(url: string, token: string | null): string {
  if (!token) return url;
  return `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
}

export interface ApiRequest {
  url: string;
  init: RequestInit;
}

/** The request for one call. Writes carry the operator token; nothing carries it in the URL. */
export function targetRequest(
  op: { method: 'GET' } | { method: 'PUT'; service: string; target: Target } | { method: 'DELETE'; service: string },
  apiBase: string,
  viewerToken: string | null,
  operatorToken: string | null,
): ApiRequest {
  const path = op.method === 'GET' ? '/api/targets' : `/api/targets/${encodeURIComponent(op.service)}`;
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (op.method !== 'GET' && operatorToken !== null) headers.Authorization = `Bearer ${operatorToken}`;
  const init: RequestInit = { method: op.method, headers, cache: 'no-store', credentials: 'same-origin' };
  if (op.method === 'PUT') {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(op.target);
  }
  return { url: withToken(`${apiBase}${path}`, viewerToken), init };
}

/** The `error` of a JSON error body, as plain text (bounded); null when there is none. */
export function errorReason(body: unknown): string | null {
  if (typeof body !== 'object' || body === null) return null;
  const e = (body as Record<string, unknown>).error;
  if (typeof e !== 'string') return null;
  const flat = e.replace(/[\p{Cc}]+/gu, ' ').trim();
  if (flat === '') return null;
  return flat.length > 500 ? `${flat.slice(0, 500)}…` : flat;
}

/** What an answer to a write means: the gateway's reason, said for a person. */
export function readWriteAnswer(method: 'PUT' | 'DELETE', service: string, status: number, body: unknown): ApiResult<null> {
  const reason = errorReason(body);
  if (status >= 200 && status < 300) {
    const ok = typeof body === 'object' && body !== null && (body as Record<string, unknown>).ok;
    if (ok === false) return { ok: false, kind: 'bad-request', status, error: reason ?? 'the gateway said no' };
    return { ok: true, value: null };
  }
  switch (status) {
    case 400:
      return { ok: false, kind: 'bad-request', status, error: reason ?? 'the gateway refused the target' };
    case 401:
    case 403:
      return {
        ok: false,
        kind: 'unauthorized',
        status,
        error: `the operator token was refused: it is wrong or the gateway has none configured${reason ? ` (${reason})` : ''}`,
      };
    case 404:
      return {
        ok: false,
        kind: 'not-found',
        status,
        error: method === 'DELETE' ? `${service} is not a watched target${reason ? ` (${reason})` : ''}` : (reason ?? 'the gateway has no target API'),
      };
    default:
      return { ok: false, kind: 'unavailable', status, error: `HTTP ${status}${reason ? `: ${reason}` : ''}` };
  }
}

export class TargetsApi {
  /** The page holds an operator token (the operator controls are shown). */
  hasToken = $state(false);
  /** The targets as last listed (`GET /api/targets`); null before the first answer. */
  targets = $state.raw<readonly Target[] | null>(null);
  /** Why the last listing failed; null when it did not. */
  listError = $state<string | null>(null);

  readonly #opts: Required<TargetsOptions>;
  readonly #deps: TargetsDeps;
  #token: string | null = null;

  constructor(opts: TargetsOptions, deps: TargetsDeps) {
    this.#opts = { timeoutMs: DEFAULT_TIMEOUT_MS, ...opts };
    this.#deps = deps;
    let stored: string | null = null;
    try {
      stored = deps.session?.getItem(OPERATOR_TOKEN_KEY) ?? null;
    } catch {
      stored = null;
    }
    if (stored !== null && checkToken(stored) === null) this.#setHeld(stored.trim());
  }

  /** Holds a pasted token (kept in sessionStorage); returns why not, or null. */
  setToken(raw: string): string | null {
    const why = checkToken(raw);
    if (why !== null) return why;
    const t = raw.trim();
    this.#setHeld(t);
    try {
      this.#deps.session?.setItem(OPERATOR_TOKEN_KEY, t);
    } catch {
      // storage refused: held for this page only
    }
    return null;
  }

  /** Forgets the token (page and sessionStorage). */
  forgetToken(): void {
    this.#setHeld(null);
    this.targets = null;
    this.listError = null;
    try {
      this.#deps.session?.removeItem(OPERATOR_TOKEN_KEY);
    } catch {
      // nothing stored
    }
  }

  /** The held operator token, for the other write APIs of the page (silences, acks). */
  operatorToken(): string | null {
    return this.#token;
  }

  #setHeld(t: string | null): void {
    this.#token = t;
    this.hasToken = t !== null;
  }

  /** `GET /api/targets`: refreshes `targets`. */
  async list(): Promise<ApiResult<Target[]>> {
    const req = targetRequest({ method: 'GET' }, this.#opts.apiBase, this.#opts.viewerToken, null);
    const r = await this.#send(req);
    let result: ApiResult<Target[]>;
    if (!r.ok) result = r;
    else if (r.status === 200) {
      const list = parseTargetList(r.body);
      result = list === null ? { ok: false, kind: 'unavailable', status: 200, error: 'the target list was not understood' } : { ok: true, value: list };
    } else if (r.status === 401) {
      result = { ok: false, kind: 'unauthorized', status: 401, error: `the gateway refused the page's token${errorReason(r.body) ? ` (${errorReason(r.body)})` : ''}` };
    } else {
      result = { ok: false, kind: r.status === 404 ? 'not-found' : 'unavailable', status: r.status, error: `HTTP ${r.status}${errorReason(r.body) ? `: ${errorReason(r.body)}` : ''}` };
    }
    if (result.ok) {
      this.targets = result.value;
      this.listError = null;
    } else {
      this.listError = result.error;
    }
    return result;
  }

  /** `PUT /api/targets/<service>`: adds or replaces a target. */
  async put(service: string, target: Target): Promise<ApiResult<Target | null>> {
    const r = await this.#write({ method: 'PUT', service, target });
    if (!r.ok) return r;
    const echoed = typeof r.body === 'object' && r.body !== null ? parseTarget((r.body as Record<string, unknown>).target) : null;
    void this.list();
    return { ok: true, value: echoed };
  }

  /** `DELETE /api/targets/<service>`: the prober stops and the service is retired. */
  async remove(service: string): Promise<ApiResult<null>> {
    const r = await this.#write({ method: 'DELETE', service });
    if (!r.ok) return r;
    void this.list();
    return { ok: true, value: null };
  }

  async #write(
    op: { method: 'PUT'; service: string; target: Target } | { method: 'DELETE'; service: string },
  ): Promise<ApiResult<null> & { body?: unknown }> {
    if (this.#token === null) return { ok: false, kind: 'no-token', status: null, error: 'no operator token: use the Operator control first' };
    const r = await this.#send(targetRequest(op, this.#opts.apiBase, this.#opts.viewerToken, this.#token));
    if (!r.ok) return r;
    const answer = readWriteAnswer(op.method, op.service, r.status, r.body);
    return answer.ok ? { ...answer, body: r.body } : answer;
  }

  /** One fetch with a timeout; never throws. The body is JSON when it parses, else text. */
  async #send(req: ApiRequest): Promise<{ ok: true; status: number; body: unknown } | { ok: false; kind: 'network'; status: null; error: string }> {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), this.#opts.timeoutMs);
    try {
      const res = await this.#deps.fetch(req.url, { ...req.init, signal: ctl.signal });
      const text = await res.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // not JSON: kept as text (no reason to show)
      }
      return { ok: true, status: res.status, body };
    } catch (e) {
      const error = ctl.signal.aborted ? `no answer within ${this.#opts.timeoutMs / 1000} s` : `request failed (${e instanceof Error ? e.message : String(e)})`;
      return { ok: false, kind: 'network', status: null, error };
    } finally {
      clearTimeout(timer);
    }
  }
}
