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
  AlertMarks,
  AlertName,
  AlertState,
  AlertUpdate,
  ClientMessage,
  FeedMessage as WireFeedMessage,
  InboxAlert,
  InboxList,
  InboxNotification,
  FeedSnapshot,
  Figures,
  GatewayState,
  History,
  HistoryEntry,
  HostFigures,
  MonitorHeartbeat,
  ProbeResult,
  ServiceState,
  ServiceSummary,
  Silence,
  SilenceList,
  SilenceMatchers,
  SilenceReply,
  Snapshot,
  Source,
  Status,
  StatusChange,
  Target,
  TargetKind,
  HttpMethod,
  TopProcess,
} from './generated/protocol';

export type {
  ActiveAlert,
  AlertEvent,
  AlertMark,
  AlertMarks,
  AlertName,
  AlertState,
  AlertUpdate,
  ClientMessage,
  FeedSnapshot,
  Figures,
  GatewayState,
  History,
  HistoryEntry,
  HostFigures,
  InboxAlert,
  InboxList,
  InboxNotification,
  MonitorHeartbeat,
  ProbeResult,
  ServiceName,
  ServiceState,
  ServiceSummary,
  Silence,
  SilenceList,
  SilenceMatchers,
  SilenceReply,
  SilenceRequest,
  Snapshot,
  Source,
  Status,
  StatusChange,
  Target,
  TargetKind,
  TopProcess,
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
  CERT_EXPIRING: true,
  LOW_APDEX: true,
};
const SOURCE_SET: Record<Source, true> = { simulator: true, probe: true, agent: true };
const ALERT_STATE_SET: Record<AlertState, true> = { firing: true, resolved: true };
const ALERT_UPDATE_SET: Record<AlertUpdate, true> = { silenced: true, unsilenced: true, acked: true, uninhibited: true };

export const STATUSES = Object.keys(STATUS_SET) as readonly Status[];
export const ALERT_NAMES = Object.keys(ALERT_NAME_SET) as readonly AlertName[];
export const ALERT_STATES = Object.keys(ALERT_STATE_SET) as readonly AlertState[];
export const SOURCES = Object.keys(SOURCE_SET) as readonly Source[];

// Bounds of the source-specific parts, as services/protocol/src/source.rs checks them.
/** Most per-core figures in `host.cores`. */
export const MAX_CORES = 512;
/** Most processes in `host.top`. */
export const MAX_TOP_PROCS = 5;
/** Longest process name, in characters. */
export const MAX_PROC_NAME_LEN = 64;
/** Longest `probe.error`, in characters. */
export const MAX_PROBE_ERROR_LEN = 64;
const MAX_LOAD = 100_000;
const MAX_LATENCY_MS = 3_600_000;
const MAX_CERT_WARN_DAYS = 3650;

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

/** A finite number within [lo, hi] (no null: these are not f64 measurements a server may
 * have written as null). */
function ranged(lo: number, hi: number): Parser<number> {
  return (v) => (typeof v === 'number' && Number.isFinite(v) && v >= lo && v <= hi ? v : BAD);
}
/** An integer within [lo, hi]. */
function intIn(lo: number, hi: number): Parser<number> {
  return (v) => (isInt(v) && v >= lo && v <= hi ? v : BAD);
}
/** A measurement within [lo, hi], or null (NaN) as for `measure`. */
function measureIn(lo: number, hi: number): Parser<number> {
  return (v) => (v === null ? Number.NaN : typeof v === 'number' && Number.isFinite(v) && v >= lo && v <= hi ? v : BAD);
}

// Control characters, bidirectional overrides and isolates: text with them could read as
// something it is not (the protocol's instance rule, services/protocol/src/sample.rs).
const CONTROL_OR_BIDI = /[\p{Cc}\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/u;
// Only blanks, format characters and fillers: renders as nothing.
const ONLY_INVISIBLE = /^[\s\p{Cf}\u00AD\u034F\u115F\u1160\u17B4\u17B5\u180B-\u180F\u3164\uFFA0]*$/u;

/** Short visible text, 1 to `max` characters (code points); shown as text only. */
function text(max: number): Parser<string> {
  return (v) => {
    if (typeof v !== 'string') return BAD;
    let n = 0;
    for (const _ of v) if (++n > max) return BAD;
    return n === 0 || CONTROL_OR_BIDI.test(v) || ONLY_INVISIBLE.test(v) ? BAD : v;
  };
}

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
/** Every element must parse, and there are at most `max` (checked before any is parsed). */
function boundedArray<T>(p: Parser<T>, max: number): Parser<T[]> {
  const all = array(p);
  return (v) => (Array.isArray(v) && v.length > max ? BAD : all(v));
}
/**
 * An optional part of a message that only adds to it (a probe's outcome, a host's figures):
 * absent stays absent, null stays null, and a malformed one is dropped (left out) instead of
 * costing the message its figures and status.
 */
function droppable<T>(p: Parser<T>): Parser<T | null | undefined> {
  return (v) => {
    if (v === undefined || v === null) return v;
    const r = p(v);
    return r === BAD ? undefined : r;
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

/** Longest severity, acknowledger and silence text shown (the protocol's bounds, 128 and 1024). */
const MAX_MARK_LEN = 128;
const MAX_COMMENT_LEN = 1024;

/** The marks every AlertEvent and ActiveAlert carries (each absent when not set). */
const alertMarks: Spec<AlertMarks> = {
  severity: optional(nullable(text(MAX_MARK_LEN))),
  inhibited_by: optional(nullable(text(MAX_MARK_LEN))),
  silenced: optional(bool),
  acked_by: optional(nullable(text(MAX_MARK_LEN))),
};

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
  update: optional(nullable(oneOf(ALERT_UPDATE_SET))),
  ...alertMarks,
});

const source = oneOf(SOURCE_SET);
const optInt = (lo: number, hi: number) => optional(nullable(intIn(lo, hi)));

const probeResult = object<ProbeResult>({
  ok: bool,
  status_code: optInt(100, 599),
  error: optional(nullable(text(MAX_PROBE_ERROR_LEN))),
  apdex_t_ms: optInt(1, MAX_LATENCY_MS),
  cert_expires_ms: optInt(0, Number.MAX_SAFE_INTEGER),
  cert_warn_days: optInt(0, MAX_CERT_WARN_DAYS),
});

const topProcess = object<TopProcess>({
  name: text(MAX_PROC_NAME_LEN),
  pid: int,
  cpu_pct: ranged(0, MAX_LOAD),
  mem_pct: ranged(0, 100),
});

const hostFigures = object<HostFigures>({
  cores: boundedArray(ranged(0, 100), MAX_CORES),
  load1: ranged(0, MAX_LOAD),
  load5: ranged(0, MAX_LOAD),
  load15: ranged(0, MAX_LOAD),
  disk_used_pct: optional(nullable(ranged(0, 100))),
  procs: int,
  top: boundedArray(topProcess, MAX_TOP_PROCS),
});

/** Who sent the latest sample: absent means a simulator (the monitor leaves it out then, and
 * older monitors never say). */
const sourceFields = {
  source: optional(source),
  probe: droppable(probeResult),
  host: droppable(hostFigures),
} as const;

const figures = object<Figures>({
  // Absent for a source that has no such figure (a probe): shown as "n/a", never 0.
  cpu_pct: optional(nullable(measure)),
  mem_pct: optional(nullable(measure)),
  error_rate: measure,
  latency_ms: measure,
  latency_avg_ms: measure,
  latency_p95_ms: measure,
  latency_p99_ms: measure,
  uptime_pct: measure,
  samples: int,
  window_s: int,
  apdex: optional(nullable(measureIn(0, 1))),
  apdex_t_ms: optInt(1, MAX_LATENCY_MS),
});

const serviceSummary = object<ServiceSummary>({
  service: str,
  status,
  at_ms: int,
  last_seen_ms: nullable(int),
  instance: str,
  health_url: str,
  figures,
  ...sourceFields,
});

const activeAlert = object<ActiveAlert>({
  id: str,
  alert: alertName,
  value: measure,
  threshold: measure,
  since_ms: int,
  ...alertMarks,
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
  interval_ms: optInt(1, 86_400_000),
  ...sourceFields,
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

// A probe target, as `GET /api/targets` lists them (the JSON value of KV `vitals_targets`).
const statusItem: Parser<number | string> = (v) => (isInt(v) ? v : typeof v === 'string' ? v : BAD);
const target = object<Target>({
  service: optional(nullable(str)),
  kind: oneOf<TargetKind>({ http: true, tcp: true }),
  url: optional(nullable(str)),
  address: optional(nullable(str)),
  interval_ms: optional(nullable(int)),
  timeout_ms: optional(nullable(int)),
  expect_status: optional(nullable((v) => (Array.isArray(v) ? boundedArray(statusItem, 64)(v) : statusItem(v)))),
  body_contains: optional(nullable(str)),
  method: optional(nullable(oneOf<HttpMethod>({ GET: true, HEAD: true }))),
  headers: optional(nullable(record(str))),
  apdex_t_ms: optional(nullable(int)),
  health_url: optional(nullable(str)),
});
/** Most targets read from one `GET /api/targets` answer. */
export const MAX_TARGETS_LISTED = 10_000;
const targetList = object<{ targets: Target[] }>({
  targets: (v) => (Array.isArray(v) && v.length > MAX_TARGETS_LISTED ? BAD : lenientArray(target)(v)),
});

// Silences (`GET /api/silences`) and the writes' replies.
const silenceMatchers = object<SilenceMatchers>({ service: text(MAX_MARK_LEN), alert: optional(nullable(alertName)) });
const silence = object<Silence>({
  id: text(64),
  matchers: silenceMatchers,
  starts_ms: int,
  ends_ms: int,
  created_by: text(MAX_MARK_LEN),
  // Empty when none was given.
  comment: (v) => (v === '' ? '' : text(MAX_COMMENT_LEN)(v)),
});
/** Most silences read from one answer (the bucket's bound). */
export const MAX_SILENCES_LISTED = 10_000;
const silenceList = object<SilenceList>({
  ok: bool,
  silences: (v) => (Array.isArray(v) && v.length > MAX_SILENCES_LISTED ? BAD : lenientArray(silence)(v)),
});
const silenceReply = object<SilenceReply>({ ok: bool, id: optional(nullable(str)), error: optional(nullable(str)) });

// The gateway's inbox (`GET /api/inbox`): text fields may be empty (a label the sender left out).
const inboxText: Parser<string> = (v) => (v === '' ? '' : text(512)(v));
const inboxAlert = object<InboxAlert>({
  status: alertState,
  alertname: inboxText,
  service: inboxText,
  severity: inboxText,
  vitals_id: inboxText,
  summary: inboxText,
  acked_by: inboxText,
  starts_at: inboxText,
  ends_at: inboxText,
});
/** Most notifications and alerts read from one answer (the gateway keeps 200, of up to 100). */
const MAX_INBOX = 1000;
const inboxNotification = object<InboxNotification>({
  received_ms: int,
  receiver: inboxText,
  status: alertState,
  group_key: inboxText,
  alerts: (v) => (Array.isArray(v) && v.length > MAX_INBOX ? BAD : lenientArray(inboxAlert)(v)),
  truncated: int,
});
const inboxList = object<InboxList>({
  ok: bool,
  received: int,
  kept: int,
  notifications: (v) => (Array.isArray(v) && v.length > MAX_INBOX ? BAD : lenientArray(inboxNotification)(v)),
});

// ---------------------------------------------------------------------------------------------
// Exported parsers: null for anything malformed.

export function isStatus(v: unknown): v is Status {
  return status(v) !== BAD;
}
export function isAlertName(v: unknown): v is AlertName {
  return alertName(v) !== BAD;
}
export function isSource(v: unknown): v is Source {
  return source(v) !== BAD;
}
export function isAlertState(v: unknown): v is AlertState {
  return alertState(v) !== BAD;
}

export const parseStatusChange = (v: unknown): StatusChange | null => orNull(statusChange(v));
export const parseAlertEvent = (v: unknown): AlertEvent | null => orNull(alertEvent(v));
export const parseProbeResult = (v: unknown): ProbeResult | null => orNull(probeResult(v));
export const parseHostFigures = (v: unknown): HostFigures | null => orNull(hostFigures(v));
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
export const parseTarget = (v: unknown): Target | null => orNull(target(v));
/** `GET /api/silences` body; malformed entries are skipped. */
export const parseSilenceList = (v: unknown): SilenceList | null => orNull(silenceList(v));
export const parseSilenceReply = (v: unknown): SilenceReply | null => orNull(silenceReply(v));
/** `GET /api/inbox` body; malformed entries are skipped. */
export const parseInboxList = (v: unknown): InboxList | null => orNull(inboxList(v));
/** `GET /api/targets` body; malformed entries are skipped. */
export const parseTargetList = (v: unknown): Target[] | null => {
  const r = targetList(v);
  return r === BAD ? null : r.targets;
};

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
