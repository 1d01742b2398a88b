// The "Add a service to watch" form: what a person types, checked with the same rules the
// gateway applies (services/protocol/src/target.rs, name.rs) where that is cheap, and turned
// into the body of `PUT /api/targets/<service>`. The gateway's 400 reason stays the authority:
// this only saves a round trip for the obvious mistakes. Pure.

import type { Target } from './protocol';

/** The naming rule (services/protocol/src/name.rs). */
export const SERVICE_NAME_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;
export const MIN_INTERVAL_MS = 100;
/** A day: a slower check is not monitoring. */
export const MAX_INTERVAL_MS = 86_400_000;
export const MAX_TARGET_URL_LEN = 2048;
const MAX_ADDRESS_LEN = 300;

export interface TargetFormInput {
  service: string;
  /** A URL (`http://` or `https://`) or `host:port` (a TCP check). */
  endpoint: string;
  /** Milliseconds; empty means the prober's default (1000). */
  interval: string;
}

export type TargetFormField = 'service' | 'endpoint' | 'interval';

export type TargetFormCheck =
  | { ok: true; service: string; target: Target }
  | { ok: false; errors: Partial<Record<TargetFormField, string>> };

/** Why a service name is refused, in the gateway's words; null when it is good. */
export function checkServiceName(name: string): string | null {
  if (name.length === 0) return 'service name is empty';
  if (name.length > 63) return `service name is ${name.length} bytes long; at most 63 are allowed`;
  if (!/^[a-z0-9]/.test(name)) return 'service name must start with a-z or 0-9';
  if (!SERVICE_NAME_RE.test(name)) return "service name may only contain a-z, 0-9, '_' and '-'";
  return null;
}

const ASCII_GRAPHIC = /^[\x21-\x7e]*$/;

function isIpv6(v6: string): boolean {
  try {
    return new URL(`http://[${v6}]/`).hostname.length > 2;
  } catch {
    return false;
  }
}

/** `host[:port]` (port required when `needPort`); IPv6 in brackets. Null when good. */
export function checkHostPort(authority: string, needPort: boolean): string | null {
  let host: string;
  let port: string | null;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close < 0) return 'unclosed [ in the host';
    host = authority.slice(1, close);
    if (!isIpv6(host)) return `"${host}" is not an IPv6 address`;
    const after = authority.slice(close + 1);
    if (after === '') port = null;
    else if (after.startsWith(':')) port = after.slice(1);
    else return 'junk after ]';
  } else {
    const colon = authority.lastIndexOf(':');
    host = colon < 0 ? authority : authority.slice(0, colon);
    port = colon < 0 ? null : authority.slice(colon + 1);
    if (host === '') return 'no host';
    if (!/^[A-Za-z0-9._:-]+$/.test(host)) return `"${host}" is not a host name or address`;
  }
  if (port === null) return needPort ? 'a port is required (host:port)' : null;
  const n = /^[0-9]{1,5}$/.test(port) ? Number(port) : Number.NaN;
  return n >= 1 && n <= 65535 ? null : `port "${port}" is not 1-65535`;
}

/** An http(s) URL the prober takes; null when good. */
export function checkProbeUrl(url: string): string | null {
  if (url.length > MAX_TARGET_URL_LEN) return `longer than ${MAX_TARGET_URL_LEN} characters`;
  if (!ASCII_GRAPHIC.test(url)) return 'space, control or non-ASCII character (percent-encode it)';
  const rest = url.startsWith('http://') ? url.slice(7) : url.startsWith('https://') ? url.slice(8) : null;
  if (rest === null) return 'must start with http:// or https://';
  const authority = rest.split(/[/?#]/, 1)[0] ?? '';
  if (authority.includes('@')) return 'user info is not allowed';
  return checkHostPort(authority, false);
}

/**
 * What the endpoint field means: a URL (kind `http`) when it has a scheme, else `host:port`
 * (kind `tcp`).
 */
export function parseEndpoint(raw: string): { kind: 'http'; url: string } | { kind: 'tcp'; address: string } | { error: string } {
  const e = raw.trim();
  if (e === '') return { error: 'a URL (http:// or https://) or host:port is required' };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(e)) {
    const why = checkProbeUrl(e);
    return why === null ? { kind: 'http', url: e } : { error: `url: ${why}` };
  }
  if (e.length > MAX_ADDRESS_LEN || !ASCII_GRAPHIC.test(e)) return { error: 'address: must be host:port in plain ASCII' };
  if (e.includes('/')) return { error: 'a URL needs http:// or https://; a TCP check is host:port' };
  const why = checkHostPort(e, true);
  return why === null ? { kind: 'tcp', address: e } : { error: `address: ${why}` };
}

/** Checks the form; on success, the service and the target body to PUT. */
export function checkTargetForm(input: TargetFormInput): TargetFormCheck {
  const errors: Partial<Record<TargetFormField, string>> = {};
  const service = input.service.trim();
  const nameWhy = checkServiceName(service);
  if (nameWhy !== null) errors.service = nameWhy;

  const endpoint = parseEndpoint(input.endpoint);
  if ('error' in endpoint) errors.endpoint = endpoint.error;

  let interval: number | null = null;
  const rawInterval = input.interval.trim();
  if (rawInterval !== '') {
    if (!/^[0-9]{1,9}$/.test(rawInterval)) errors.interval = 'interval must be a whole number of milliseconds';
    else {
      interval = Number(rawInterval);
      if (interval < MIN_INTERVAL_MS || interval > MAX_INTERVAL_MS) {
        errors.interval = `interval_ms=${interval} outside [${MIN_INTERVAL_MS}, ${MAX_INTERVAL_MS}]`;
      }
    }
  }

  if (Object.keys(errors).length > 0 || 'error' in endpoint) return { ok: false, errors };
  // The timeout is left to the prober (2 s, or half the interval when that is shorter), so it
  // is always shorter than the interval.
  const target: Target = endpoint.kind === 'http' ? { kind: 'http', url: endpoint.url } : { kind: 'tcp', address: endpoint.address };
  if (interval !== null) target.interval_ms = interval;
  return { ok: true, service, target };
}
