// The fallback path: when the live feed is gone, the page asks each service's /health itself.
// This file holds what is pure about it (what a probe's outcome means, which URLs to probe, how
// they are remembered) plus one small probe function with injected fetch and timers.

import { healthUrlAllowed, isAcceptableHealthUrl } from './healthurl';

export type HealthCheck = 'up' | 'degraded' | 'unreachable';

/** What one GET of a health URL came to. */
export type HealthProbe =
  | { kind: 'response'; status: number; body: unknown }
  | { kind: 'timeout' }
  | { kind: 'network'; message: string };

export interface HealthVerdict {
  check: HealthCheck;
  /** A short human reason: "ok", "degraded (latency)", "HTTP 503 error", "timed out", ... */
  detail: string;
  /** The simulator's fault mode when it said one. */
  mode: string | null;
}

export interface HealthCheckResult extends HealthVerdict {
  service: string;
  url: string;
  /** Browser clock. */
  checkedAtMs: number;
}

function field(body: unknown, key: string): string | null {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return null;
  const v = (body as Record<string, unknown>)[key];
  return typeof v === 'string' ? v : null;
}

/**
 * - 2xx with `"status":"degraded"`: degraded (the service answers but says it is impaired);
 * - any other 2xx: up;
 * - 503 (the simulator's error burst, `"status":"error"`): degraded, since the service answers
 *   but fails; it is not unreachable;
 * - any other status, a network error (refused, DNS, CORS) or a timeout (a hung service): unreachable.
 */
export function classifyHealth(p: HealthProbe): HealthVerdict {
  switch (p.kind) {
    case 'timeout':
      return { check: 'unreachable', detail: 'timed out', mode: null };
    case 'network':
      return { check: 'unreachable', detail: p.message ? `no answer (${p.message})` : 'no answer', mode: null };
    case 'response': {
      const mode = field(p.body, 'mode');
      const status = field(p.body, 'status');
      if (p.status >= 200 && p.status < 300) {
        if (status === 'degraded') {
          return { check: 'degraded', detail: mode && mode !== 'clear' ? `degraded (${mode})` : 'degraded', mode };
        }
        return { check: 'up', detail: status ?? 'ok', mode };
      }
      if (p.status === 503) {
        return { check: 'degraded', detail: `HTTP 503${status ? ` ${status}` : ''}`, mode };
      }
      return { check: 'unreachable', detail: `HTTP ${p.status}`, mode };
    }
  }
}

/** A URL the browser may fetch: the health URL rule (./healthurl.ts, the same as the monitor's). */
export function isFetchableUrl(url: string): boolean {
  return isAcceptableHealthUrl(url);
}

/** The `/data` sibling of a `.../health` URL; null when the URL does not end in /health. */
export function dataUrlFor(healthUrl: string): string | null {
  if (!isFetchableUrl(healthUrl)) return null;
  const u = new URL(healthUrl);
  if (!/\/health$/.test(u.pathname)) return null;
  u.pathname = u.pathname.replace(/\/health$/, '/data');
  return u.toString();
}

/** A name for a configured URL: `<name>` from `.../services/<name>/health`, else `host:port`. */
export function serviceNameFromUrl(url: string): string {
  try {
    const u = new URL(url);
    const m = /\/services\/([^/]+)\/health$/.exec(u.pathname);
    if (m?.[1]) return decodeURIComponent(m[1]);
    return u.host;
  } catch {
    return url;
  }
}

export interface HealthTarget {
  service: string;
  url: string;
  /** Where the URL came from: the live view, the page's memory, or configuration. */
  origin: 'live' | 'stored' | 'config';
}

/** At most this many URLs are polled (each round, from the page). */
export const MAX_TARGETS = 256;

/**
 * The URLs to poll: the live view's first, then remembered ones, then configured ones; one per
 * service name and one per URL, at most MAX_TARGETS. Every URL must pass the health URL rule;
 * those learned from the feed (live, remembered) must also be in one of `origins`, the
 * gateway's `--health-origins` (whoever publishes a sample chooses its URL; the page's own
 * configuration is the operator's).
 */
export function healthTargets(
  live: Iterable<{ service: string; health_url: string }>,
  stored: Readonly<Record<string, string>>,
  configured: readonly { service: string; url: string }[],
  origins: readonly string[] = [],
): HealthTarget[] {
  const out: HealthTarget[] = [];
  const names = new Set<string>();
  const urls = new Set<string>();
  const add = (service: string, url: string, origin: HealthTarget['origin']) => {
    if (out.length >= MAX_TARGETS || names.has(service) || urls.has(url)) return;
    if (origin === 'config' ? !isFetchableUrl(url) : !healthUrlAllowed(url, origins)) return;
    names.add(service);
    urls.add(url);
    out.push({ service, url, origin });
  };
  for (const s of live) add(s.service, s.health_url, 'live');
  for (const [service, url] of Object.entries(stored)) add(service, url, 'stored');
  for (const c of configured) add(c.service, c.url, 'config');
  return out;
}

// ---------------------------------------------------------------------------------------------
// Memory: the URLs learned from the live feed, kept in localStorage so that a reload during an
// outage still knows what to poll.

export const STORAGE_KEY = 'vitals.health-urls.v1';
/** At most this many URLs are remembered (the newest knowledge is kept). */
export const MAX_REMEMBERED = 256;
/** Where the gateway's health origins are remembered, for a reload during an outage. */
export const ORIGINS_KEY = 'vitals.health-origins.v1';
/** At most this many origin patterns are remembered. */
export const MAX_ORIGINS = 64;

/** Reads the remembered health origins; anything malformed is ignored. */
export function loadStoredOrigins(storage: StorageLike | null): string[] {
  try {
    const v: unknown = JSON.parse(storage?.getItem(ORIGINS_KEY) ?? '[]');
    if (!Array.isArray(v)) return [];
    return v.filter((o): o is string => typeof o === 'string' && o.length <= 600).slice(0, MAX_ORIGINS);
  } catch {
    return [];
  }
}

/** Writes the health origins; false when storage refused. */
export function saveStoredOrigins(storage: StorageLike | null, origins: readonly string[]): boolean {
  if (storage === null) return false;
  try {
    storage.setItem(ORIGINS_KEY, JSON.stringify(origins.slice(0, MAX_ORIGINS)));
    return true;
  } catch {
    return false;
  }
}

/** The part of the Web Storage API used here (localStorage, or a test double). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/** Reads the remembered URLs; anything malformed is ignored. */
export function loadStoredUrls(storage: StorageLike | null): Record<string, string> {
  if (storage === null) return {};
  let raw: string | null;
  try {
    raw = storage.getItem(STORAGE_KEY);
  } catch {
    return {};
  }
  if (raw === null) return {};
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return {};
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return {};
  const out: Record<string, string> = {};
  for (const [k, url] of Object.entries(v as Record<string, unknown>)) {
    if (typeof url === 'string' && k.length > 0 && k.length <= 128 && isFetchableUrl(url)) out[k] = url;
  }
  return out;
}

/** Writes the remembered URLs; false when storage refused (full, disabled, private mode). */
export function saveStoredUrls(storage: StorageLike | null, urls: Readonly<Record<string, string>>): boolean {
  if (storage === null) return false;
  try {
    storage.setItem(STORAGE_KEY, JSON.stringify(urls));
    return true;
  } catch {
    return false;
  }
}

/**
 * Merges URLs seen in the live view into the remembered ones. Returns the same object when
 * nothing changed (so the caller writes storage only on change). Newest knowledge wins; the
 * oldest entries are dropped past MAX_REMEMBERED.
 */
export function rememberUrls(
  stored: Readonly<Record<string, string>>,
  live: Iterable<{ service: string; health_url: string }>,
): Readonly<Record<string, string>> {
  let next: Record<string, string> | null = null;
  for (const s of live) {
    if (!isFetchableUrl(s.health_url) || stored[s.service] === s.health_url) continue;
    next ??= { ...stored };
    // Re-inserted at the end, so the insertion order is oldest knowledge first.
    delete next[s.service];
    next[s.service] = s.health_url;
  }
  if (next === null) return stored;
  const keys = Object.keys(next);
  if (keys.length > MAX_REMEMBERED) {
    for (const k of keys.slice(0, keys.length - MAX_REMEMBERED)) delete next[k];
  }
  return next;
}

/** Drops the URLs of `services` (retired ones); the same object when none was remembered. */
export function forgetUrls(stored: Readonly<Record<string, string>>, services: readonly string[]): Readonly<Record<string, string>> {
  if (!services.some((s) => Object.hasOwn(stored, s))) return stored;
  const next = { ...stored };
  for (const s of services) delete next[s];
  return next;
}

// ---------------------------------------------------------------------------------------------
// Configuration: `?health=url1,url2` on the page URL, or `config.json` next to index.html:
// `{"health": ["http://...", ...]}` or `{"health": {"billing": "http://..."}}`.

function targetsFromList(urls: readonly unknown[]): { service: string; url: string }[] {
  const out: { service: string; url: string }[] = [];
  for (const u of urls) {
    if (typeof u === 'string' && isFetchableUrl(u.trim())) out.push({ service: serviceNameFromUrl(u.trim()), url: u.trim() });
  }
  return out;
}

/** `?health=url1,url2` (repeatable) from a query string such as `location.search`. */
export function parseHealthParam(search: string): { service: string; url: string }[] {
  const params = new URLSearchParams(search);
  return targetsFromList(params.getAll('health').flatMap((v) => v.split(',')));
}

/** The `health` entry of config.json; anything malformed yields nothing. */
export function parseConfigHealth(config: unknown): { service: string; url: string }[] {
  if (typeof config !== 'object' || config === null) return [];
  const h = (config as Record<string, unknown>).health;
  if (Array.isArray(h)) return targetsFromList(h);
  if (typeof h === 'object' && h !== null) {
    const out: { service: string; url: string }[] = [];
    for (const [service, url] of Object.entries(h as Record<string, unknown>)) {
      if (typeof url === 'string' && isFetchableUrl(url) && service.length > 0 && service.length <= 128) out.push({ service, url });
    }
    return out;
  }
  return [];
}

// ---------------------------------------------------------------------------------------------
// The probe itself (I/O, with fetch and timers injected).

export interface ProbeDeps {
  fetch: typeof fetch;
  setTimeout: (cb: () => void, ms: number) => unknown;
  clearTimeout: (handle: unknown) => void;
}

/** GETs `url` with a timeout; never throws. */
export async function probeHealth(url: string, timeoutMs: number, deps: ProbeDeps): Promise<HealthProbe> {
  const ctl = new AbortController();
  let timedOut = false;
  const timer = deps.setTimeout(() => {
    timedOut = true;
    ctl.abort();
  }, timeoutMs);
  try {
    const res = await deps.fetch(url, {
      method: 'GET',
      mode: 'cors',
      cache: 'no-store',
      credentials: 'omit',
      signal: ctl.signal,
    });
    let body: unknown = null;
    try {
      const text = await res.text();
      body = text.length > 0 && text.length < 65_536 ? JSON.parse(text) : null;
    } catch {
      if (timedOut) return { kind: 'timeout' };
      body = null;
    }
    return { kind: 'response', status: res.status, body };
  } catch (e) {
    if (timedOut) return { kind: 'timeout' };
    return { kind: 'network', message: e instanceof Error ? e.message : String(e) };
  } finally {
    deps.clearTimeout(timer);
  }
}
