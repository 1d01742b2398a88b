// The wire types of Vitals as the dashboard sees them, and the runtime parsers that turn what
// the network sent into them. The types themselves are generated from the Rust serde types
// (services/protocol) into ./generated/protocol.ts by `cargo run -p codegen`; only the feed
// frame's `seq` (added by the gateway's connection) is declared here.
//
// Each parser is built from a spec that must name a parser for every field of the generated
// type (and no other): when a Rust type gains, loses or changes a field, the regenerated file
// makes `npm run check` fail here until the parser follows. New fields may be added by the
// server at any time: the parsers ignore fields they do not know.

import type {
  ActiveAlert,
  AlertEvent,
  AlertMark,
  AlertName,
  AlertState,
  ClientMessage,
  FeedMessage as WireFeedMessage,
  FeedSnapshot,
  Figures,
  GatewayState,
  History,
  HistoryEntry,
  MonitorHeartbeat,
  ServiceState,
  ServiceSummary,
  Snapshot,
  Status,
  StatusChange,
} from './generated/protocol';

export type {
  ActiveAlert,
  AlertEvent,
  AlertMark,
  AlertName,
  AlertState,
  ClientMessage,
  FeedSnapshot,
  Figures,
  GatewayState,
  History,
  HistoryEntry,
  MonitorHeartbeat,
  ServiceName,
  ServiceState,
  ServiceSummary,
  Snapshot,
  Status,
  StatusChange,
} from './generated/protocol';

/** One frame of the gateway's /ws feed: a FeedMessage plus the per-connection `seq`. */
export type FeedMessage = { seq: number } & WireFeedMessage;
export type FeedType = FeedMessage['type'];

// Every member of each generated string union, once: a Record over the union must name them
// all, so a new Rust variant fails the type check here instead of being refused at run time.
const STATUS_SET: Record<Status, true> = { UNKNOWN: true, HEALTHY: true, DEGRADED: true, DOWN: true, RETIRED: true };
const ALERT_NAME_SET: Record<AlertName, true> = {
  HIGH_CPU: true,
  HIGH_MEMORY: true,
  HIGH_LATENCY: true,
  HIGH_ERROR_RATE: true,
  SERVICE_DOWN: true,
};
const ALERT_STATE_SET: Record<AlertState, true> = { firing: true, resolved: true };

export const STATUSES = Object.keys(STATUS_SET) as readonly Status[];
export const ALERT_NAMES = Object.keys(ALERT_NAME_SET) as readonly AlertName[];
export const ALERT_STATES = Object.keys(ALERT_STATE_SET) as readonly AlertState[];

// ---------------------------------------------------------------------------------------------
// Parser combinators. Everything from the network is `unknown` until a parser says otherwise.
// Numbers must be finite JSON numbers, except the f64 measurements (figures, alert values, rates)
// where `null` is accepted as NaN: serde_json writes a non-finite f64 as `null`, and one odd
// figure must not cost the whole message. Service names are kept exactly as sent (the UI renders
// them as text only).

const BAD: unique symbol = Symbol('bad');
type Bad = typeof BAD;
/** Parses one value; BAD when it is not of the type (null and undefined can be good values). */
type Parser<T> = (v: unknown) => T | Bad;
/** A parser for every field of T, no more, no less. */
type Spec<T> = { [K in keyof T]-?: Parser<T[K]> };

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** u64, u32, usize: a non-negative safe integer. */
const int: Parser<number> = (v) => (isInt(v) ? v : BAD);
const str: Parser<string> = (v) => (typeof v === 'string' ? v : BAD);
const bool: Parser<boolean> = (v) => (typeof v === 'boolean' ? v : BAD);
/** An f64 measurement: a finite number, or null (NaN). */
const measure: Parser<number> = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : v === null ? Number.NaN : BAD);

function oneOf<T extends string>(set: Record<T, true>): Parser<T> {
  return (v) => (typeof v === 'string' && Object.hasOwn(set, v) ? (v as T) : BAD);
}
/** `Option<T>`: absent and null both mean None (serde fills a missing Option with None). */
function nullable<T>(p: Parser<T>): Parser<T | null> {
  return (v) => (v === undefined || v === null ? null : p(v));
}
/** A field serde leaves out when empty (`skip_serializing_if`): absent stays absent. */
function optional<T>(p: Parser<T>): Parser<T | undefined> {
  return (v) => (v === undefined ? undefined : p(v));
}
/** A field with a serde default: absent (an older server) means the default. */
function withDefault<T>(p: Parser<T>, fallback: T): Parser<T> {
  return (v) => (v === undefined ? fallback : p(v));
}
/** Every element must parse. */
function array<T>(p: Parser<T>): Parser<T[]> {
  return (v) => {
    if (!Array.isArray(v)) return BAD;
    const out: T[] = [];
    for (const x of v) {
      const r = p(x);
      if (r === BAD) return BAD;
      out.push(r);
    }
    return out;
  };
}
/** Malformed elements are dropped (one bad entry must not cost the whole list). */
function lenientArray<T>(p: Parser<T>): Parser<T[]> {
  return (v) => {
    if (!Array.isArray(v)) return BAD;
    const out: T[] = [];
    for (const x of v) {
      const r = p(x);
      if (r !== BAD) out.push(r);
    }
    return out;
  };
}
function record<T>(p: Parser<T>): Parser<Record<string, T>> {
  return (v) => {
    if (!isObj(v)) return BAD;
    const out: Record<string, T> = {};
    for (const [k, x] of Object.entries(v)) {
      const r = p(x);
      if (r === BAD) return BAD;
      out[k] = r;
    }
    return out;
  };
}
/** An object with exactly the spec's fields (unknown ones dropped; an undefined result left out). */
function object<T>(spec: Spec<T>): Parser<T> {
  const fields = Object.entries(spec) as [string, Parser<unknown>][];
  return (v) => {
    if (!isObj(v)) return BAD;
    const out: Obj = {};
    for (const [k, p] of fields) {
      const r = p(v[k]);
      if (r === BAD) return BAD;
      if (r !== undefined) out[k] = r;
    }
    return out as T;
  };
}
/** BAD as null, for the exported parsers. */
function orNull<T>(r: T | Bad): T | null {
  return r === BAD ? null : r;
}

// ---------------------------------------------------------------------------------------------
// The wire types.

const status = oneOf(STATUS_SET);
const alertName = oneOf(ALERT_NAME_SET);
const alertState = oneOf(ALERT_STATE_SET);
const strings = array(str);

const statusChange = object<StatusChange>({
  service: str,
  status,
  previous: status,
  at_ms: int,
  reasons: strings,
});

const alertEvent = object<AlertEvent>({
  id: str,
  service: str,
  alert: alertName,
  state: alertState,
  value: measure,
  threshold: measure,
  since_ms: int,
  at_ms: int,
  reason: optional(nullable(str)),
});

const figures = object<Figures>({
  cpu_pct: measure,
  mem_pct: measure,
  error_rate: measure,
  latency_ms: measure,
  latency_avg_ms: measure,
  latency_p95_ms: measure,
  latency_p99_ms: measure,
  uptime_pct: measure,
  samples: int,
  window_s: int,
});

const serviceSummary = object<ServiceSummary>({
  service: str,
  status,
  at_ms: int,
  last_seen_ms: nullable(int),
  instance: str,
  health_url: str,
  figures,
});

const activeAlert = object<ActiveAlert>({
  id: str,
  alert: alertName,
  value: measure,
  threshold: measure,
  since_ms: int,
});

const alertMark = object<AlertMark>({ id: str, state: alertState });

const serviceState = object<ServiceState>({
  service: str,
  status,
  since_ms: int,
  last_seen_ms: nullable(int),
  reasons: strings,
  alerts: array(activeAlert),
  instance: str,
  health_url: str,
  figures,
  last_alert: optional(nullable(alertMark)),
});

const monitorHeartbeat = object<MonitorHeartbeat>({
  monitor_id: str,
  version: str,
  at_ms: int,
  started_ms: int,
  uptime_s: int,
  interval_ms: int,
  heartbeat_timeout_ms: int,
  services: int,
  samples_total: int,
  samples_per_s: measure,
  refused_total: int,
  refusals: record(int),
  slow_consumer_drops: int,
  samples_missed: withDefault(int, 0),
  publish_drops: int,
  in_grace: bool,
});

const gatewayState = object<GatewayState>({
  nats_connected: bool,
  at_ms: int,
  source: str,
  // Older gateways do not say; they had no other way to be not live than losing NATS.
  live: withDefault(bool, true),
  problem: optional(nullable(str)),
  // Absent (an older gateway, or none configured): no learned health URL may be polled.
  health_origins: optional(strings),
});

const feedSnapshot = object<FeedSnapshot>({
  resync: bool,
  at_ms: int,
  gateway: gatewayState,
  monitor: nullable(monitorHeartbeat),
  monitor_seen_ms: nullable(int),
  // One malformed entry is dropped rather than losing the whole view (and resyncing forever).
  services: lenientArray(serviceState),
});

const snapshot = object<Snapshot>({
  monitor_id: str,
  at_ms: int,
  version: withDefault(int, 0),
  page: withDefault(int, 0),
  pages: withDefault(int, 1),
  total: withDefault(int, 0),
  next_after: optional(nullable(str)),
  services: lenientArray(serviceState),
});

const historyEntry: Parser<HistoryEntry> = (v) => {
  if (!isObj(v) || !isInt(v.stream_seq)) return BAD;
  if (v.kind === 'status') {
    const data = statusChange(v.data);
    return data === BAD ? BAD : { kind: 'status', stream_seq: v.stream_seq, data };
  }
  if (v.kind === 'alert') {
    const data = alertEvent(v.data);
    return data === BAD ? BAD : { kind: 'alert', stream_seq: v.stream_seq, data };
  }
  return BAD;
};

const history = object<History>({ events: lenientArray(historyEntry) });

// ---------------------------------------------------------------------------------------------
// Exported parsers: null for anything malformed.

export function isStatus(v: unknown): v is Status {
  return status(v) !== BAD;
}
export function isAlertName(v: unknown): v is AlertName {
  return alertName(v) !== BAD;
}
export function isAlertState(v: unknown): v is AlertState {
  return alertState(v) !== BAD;
}

export const parseStatusChange = (v: unknown): StatusChange | null => orNull(statusChange(v));
export const parseAlertEvent = (v: unknown): AlertEvent | null => orNull(alertEvent(v));
export const parseFigures = (v: unknown): Figures | null => orNull(figures(v));
export const parseServiceSummary = (v: unknown): ServiceSummary | null => orNull(serviceSummary(v));
export const parseActiveAlert = (v: unknown): ActiveAlert | null => orNull(activeAlert(v));
export const parseServiceState = (v: unknown): ServiceState | null => orNull(serviceState(v));
export const parseMonitorHeartbeat = (v: unknown): MonitorHeartbeat | null => orNull(monitorHeartbeat(v));
export const parseGatewayState = (v: unknown): GatewayState | null => orNull(gatewayState(v));
/** `GET /api/status` body. */
export const parseSnapshot = (v: unknown): Snapshot | null => orNull(snapshot(v));
export const parseHistoryEntry = (v: unknown): HistoryEntry | null => orNull(historyEntry(v));
/** `GET /api/history` body; malformed entries are skipped. */
export const parseHistory = (v: unknown): History | null => orNull(history(v));

/**
 * Parses one WebSocket text frame. Returns null for anything that is not a well-formed server
 * message: not JSON, not an object, no integer `seq`, an unknown `type`, or a payload of the
 * wrong shape.
 */
export function parseFeedMessage(text: string): FeedMessage | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  return feedMessageFromValue(v);
}

export function feedMessageFromValue(v: unknown): FeedMessage | null {
  if (!isObj(v) || !isInt(v.seq) || typeof v.type !== 'string') return null;
  const seq = v.seq;
  switch (v.type) {
    case 'snapshot': {
      const s = feedSnapshot(v);
      return s === BAD ? null : { seq, type: 'snapshot', ...s };
    }
    case 'status': {
      const data = statusChange(v.data);
      return data === BAD ? null : { seq, type: 'status', data };
    }
    case 'alert': {
      const data = alertEvent(v.data);
      return data === BAD ? null : { seq, type: 'alert', data };
    }
    case 'metrics': {
      const data = serviceSummary(v.data);
      return data === BAD ? null : { seq, type: 'metrics', data };
    }
    case 'monitor': {
      const data = monitorHeartbeat(v.data);
      return data === BAD ? null : { seq, type: 'monitor', data };
    }
    case 'gateway': {
      const data = gatewayState(v.data);
      return data === BAD ? null : { seq, type: 'gateway', data };
    }
    default:
      return null;
  }
}

export const RESYNC_MESSAGE: string = JSON.stringify({ type: 'resync' } satisfies ClientMessage);
