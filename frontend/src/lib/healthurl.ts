// The health URL rule, ported from the Rust in services/protocol/src/url.rs (keep the two
// alike: both are tested against services/protocol/testdata/health_urls.json). Whoever can
// publish one sample picks a health_url, and this page polls it when the live feed is down,
// so only plain ASCII `http(s)://host[:port][/path][?query]` passes: no user info, no
// numeric-only or hex/octal IPv4 forms, no punycode, never a link-local or metadata address.

export const MAX_URL_LEN = 512;

const METADATA_HOSTS = new Set([
  'metadata',
  'metadata.google.internal',
  'metadata.goog',
  'instance-data',
  'instance-data.ec2.internal',
  'metadata.azure.internal',
  'metadata.platformequinix.com',
]);
const METADATA_V4 = new Set(['100.100.100.200', '168.63.129.16']);

export interface HealthUrlParts {
  https: boolean;
  /** As written; IPv6 keeps its brackets. */
  host: string;
  /** The explicit port or the scheme's default. */
  port: number;
}

export type HealthUrlCheck = { ok: true; url: HealthUrlParts } | { ok: false; why: string };

const refuse = (why: string): HealthUrlCheck => ({ ok: false, why });

/** Checks a health URL; when refused, `why` names the part. */
export function checkHealthUrl(url: string): HealthUrlCheck {
  if (url.length > MAX_URL_LEN) return refuse('longer than 512 characters');
  for (const c of url) {
    const code = c.codePointAt(0) ?? 0;
    if (code > 0x7e) return refuse('non-ASCII character');
    if (code <= 0x20 || '"<>\\^`{|}'.includes(c)) return refuse('space, control or unsafe character');
  }
  let https: boolean;
  let rest: string;
  if (url.startsWith('http://')) {
    https = false;
    rest = url.slice(7);
  } else if (url.startsWith('https://')) {
    https = true;
    rest = url.slice(8);
  } else {
    return refuse('not http:// or https://');
  }
  if (rest.includes('#')) return refuse('fragment');
  const ends = [rest.indexOf('/'), rest.indexOf('?')].filter((i) => i >= 0);
  const authority = rest.slice(0, ends.length > 0 ? Math.min(...ends) : rest.length);
  if (authority.includes('@')) return refuse('user info');
  if (authority.includes('%')) return refuse('percent-encoded host');
  let host: string;
  let portText: string | null;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close < 0) return refuse('unclosed IPv6 address');
    host = authority.slice(0, close + 1);
    const after = authority.slice(close + 1);
    if (after === '') portText = null;
    else if (after.startsWith(':')) portText = after.slice(1);
    else return refuse('junk after an IPv6 address');
  } else {
    const colon = authority.indexOf(':');
    host = colon < 0 ? authority : authority.slice(0, colon);
    portText = colon < 0 ? null : authority.slice(colon + 1);
  }
  if (host === '') return refuse('empty host');
  let port = https ? 443 : 80;
  if (portText !== null) {
    if (!/^[0-9]{1,5}$/.test(portText)) return refuse('bad port');
    port = Number(portText);
    if (port < 1 || port > 65535) return refuse('bad port');
  }
  const why = checkHost(host);
  return why === null ? { ok: true, url: { https, host, port } } : refuse(why);
}

export function isAcceptableHealthUrl(url: string): boolean {
  return checkHealthUrl(url).ok;
}

function checkHost(host: string): string | null {
  if (host.startsWith('[')) {
    if (!host.endsWith(']')) return 'unclosed IPv6 address';
    const v6 = parseV6(host.slice(1, -1));
    return v6 === null ? 'bad IPv6 address' : checkV6(v6);
  }
  const lower = host.toLowerCase();
  if (lower.length > 253) return 'host longer than 253 characters';
  const labels = lower.split('.');
  const last = labels[labels.length - 1] ?? '';
  // A last label that is a number makes browsers read the host as IPv4 in any form
  // (2852039166, 0xa9.0xfe.0xa9.0xfe, 0251.0376...): only dotted decimal is accepted.
  const numericLast = last !== '' && (/^[0-9]+$/.test(last) || /^0x[0-9a-f]*$/.test(last));
  if (numericLast) {
    const v4 = canonicalV4(labels);
    return v4 === null ? 'numeric host not in dotted-decimal form' : checkV4(v4);
  }
  for (const label of labels) {
    if (label === '') return 'empty label in host';
    if (label.length > 63) return 'host label longer than 63 characters';
    if (!/^[a-z0-9-]+$/.test(label) || label.startsWith('-') || label.endsWith('-')) return 'host is not a plain DNS name';
    if (label.startsWith('xn--')) return 'punycode (IDN) host';
  }
  return METADATA_HOSTS.has(lower) ? 'cloud metadata host' : null;
}

function canonicalV4(labels: string[]): number[] | null {
  if (labels.length !== 4) return null;
  const out: number[] = [];
  for (const l of labels) {
    if (!/^[0-9]{1,3}$/.test(l) || (l.length > 1 && l.startsWith('0'))) return null;
    const n = Number(l);
    if (n > 255) return null;
    out.push(n);
  }
  return out;
}

function checkV4(o: number[]): string | null {
  const [a = 0, b = 0] = o;
  if ((a === 169 && b === 254) || METADATA_V4.has(o.join('.'))) return 'link-local or cloud metadata address';
  if (a === 0 || o.every((x) => x === 255) || (a >= 224 && a <= 239)) return 'unroutable address';
  return null;
}

/** Eight 16-bit groups, or null; no zone ids; an embedded dotted IPv4 tail is allowed. */
function parseV6(text: string): number[] | null {
  if (text.includes('%') || !/^[0-9a-fA-F:.]+$/.test(text)) return null;
  let tail: number[] = [];
  let body = text;
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    const v4 = canonicalV4(text.slice(lastColon + 1).split('.'));
    if (v4 === null) return null;
    tail = [((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0)];
    body = text.slice(0, lastColon + 1);
    if (!body.endsWith('::')) body = body.slice(0, -1);
  }
  const halves = body.split('::');
  if (halves.length > 2) return null;
  const part = (s: string): number[] | null => {
    if (s === '') return [];
    const groups = s.split(':');
    const out: number[] = [];
    for (const g of groups) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = part(halves[0] ?? '');
  const rest = halves.length === 2 ? part(halves[1] ?? '') : [];
  if (head === null || rest === null) return null;
  const given = head.length + rest.length + tail.length;
  if (halves.length === 1) return given === 8 ? [...head, ...tail] : null;
  if (given > 7) return null;
  return [...head, ...Array<number>(8 - given).fill(0), ...rest, ...tail];
}

function checkV6(g: number[]): string | null {
  const [g0 = 0, g1 = 0, g2 = 0, g3 = 0, g4 = 0, g5 = 0, g6 = 0, g7 = 0] = g;
  if (g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0xffff) {
    return checkV4([g6 >> 8, g6 & 0xff, g7 >> 8, g7 & 0xff]);
  }
  const metadata = g0 === 0xfd00 && g1 === 0xec2 && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0 && g6 === 0 && g7 === 0x254;
  if ((g0 & 0xffc0) === 0xfe80 || metadata) return 'link-local or cloud metadata address';
  if (g.every((x) => x === 0) || (g0 & 0xff00) === 0xff00) return 'unroutable address';
  return null;
}

/** An origin pattern as the gateway's --health-origins holds it. */
export interface OriginPattern {
  any: boolean;
  https: boolean;
  host: string;
  /** null: any port. */
  port: number | null;
}

/** `scheme://host[:port|:*]` or `*`; null when malformed. */
export function parseOrigin(raw: string): OriginPattern | null {
  const t = raw.trim();
  if (t === '*') return { any: true, https: false, host: '', port: null };
  const anyPort = t.endsWith(':*');
  let base = anyPort ? t.slice(0, -2) : t;
  if (base.endsWith('/')) base = base.slice(0, -1);
  const c = checkHealthUrl(base);
  if (!c.ok) return null;
  const authority = base.slice(base.indexOf('://') + 3);
  if (authority.includes('/') || authority.includes('?')) return null;
  return { any: false, https: c.url.https, host: c.url.host.toLowerCase(), port: anyPort ? null : c.url.port };
}

export function originAllows(o: OriginPattern, u: HealthUrlParts): boolean {
  return o.any || (o.https === u.https && o.host === u.host.toLowerCase() && (o.port === null || o.port === u.port));
}

/** Whether `url` passes the rule and one of `origins` (patterns, as sent by the gateway) allows it. */
export function healthUrlAllowed(url: string, origins: readonly string[]): boolean {
  const c = checkHealthUrl(url);
  if (!c.ok) return false;
  return origins.some((raw) => {
    const o = parseOrigin(raw);
    return o !== null && originAllows(o, c.url);
  });
}
