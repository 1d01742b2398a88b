// The wire types of Vitals as the dashboard sees them. They mirror the Rust types in
// services/protocol/src/{events,feed,status}.rs field for field (serde's default spelling:
// snake_case fields, SCREAMING_SNAKE_CASE statuses and alert names, lowercase tags).
// `u64`/`f64` are JS numbers (epoch milliseconds fit exactly); `Option<T>` is `T | null`.
//
// New fields may be added by the server: the parser ignores fields it does not know.

export const STATUSES = ['UNKNOWN', 'HEALTHY', 'DEGRADED', 'DOWN'] as const;
/** `status.rs` Status. UNKNOWN only before a service's first sample. */
export type Status = (typeof STATUSES)[number];

export const ALERT_NAMES = [
  'HIGH_CPU',
  'HIGH_MEMORY',
  'HIGH_LATENCY',
  'HIGH_ERROR_RATE',
  'SERVICE_DOWN',
] as const;
/** `status.rs` AlertName. */
export type AlertName = (typeof ALERT_NAMES)[number];

export const ALERT_STATES = ['firing', 'resolved'] as const;
/** `status.rs` AlertState. */
export type AlertState = (typeof ALERT_STATES)[number];

/** `events.rs` StatusChange: `health.status.<service>`. */
export interface StatusChange {
  service: string;
  status: Status;
  previous: Status;
  at_ms: number;
  reasons: string[];
}

/** `events.rs` AlertEvent: `health.alert.<service>`. */
export interface AlertEvent {
  /** `service:ALERT:since_ms`, the same for a firing and its resolve. */
  id: string;
  service: string;
  alert: AlertName;
  state: AlertState;
  value: number;
  threshold: number;
  since_ms: number;
  at_ms: number;
}

/** `events.rs` Figures: rolling figures over the monitor's window. */
export interface Figures {
  cpu_pct: number;
  mem_pct: number;
  error_rate: number;
  latency_ms: number;
  latency_avg_ms: number;
  latency_p95_ms: number;
  latency_p99_ms: number;
  uptime_pct: number;
  samples: number;
  window_s: number;
}

/** `events.rs` ServiceSummary: `health.metrics.<service>`. */
export interface ServiceSummary {
  service: string;
  status: Status;
  at_ms: number;
  last_seen_ms: number | null;
  instance: string;
  health_url: string;
  figures: Figures;
}

/** `events.rs` ActiveAlert: an alert that is firing now. */
export interface ActiveAlert {
  id: string;
  alert: AlertName;
  value: number;
  threshold: number;
  since_ms: number;
}

/** `events.rs` ServiceState: KV value and Snapshot entry. */
export interface ServiceState {
  service: string;
  status: Status;
  since_ms: number;
  last_seen_ms: number | null;
  reasons: string[];
  alerts: ActiveAlert[];
  instance: string;
  health_url: string;
  figures: Figures;
}

/** `events.rs` Snapshot: `GET /api/status`. */
export interface Snapshot {
  monitor_id: string;
  at_ms: number;
  services: ServiceState[];
}

/** `events.rs` MonitorHeartbeat: `health.monitor.heartbeat`. */
export interface MonitorHeartbeat {
  monitor_id: string;
  version: string;
  at_ms: number;
  started_ms: number;
  uptime_s: number;
  interval_ms: number;
  heartbeat_timeout_ms: number;
  services: number;
  samples_total: number;
  samples_per_s: number;
  refused_total: number;
  refusals: Record<string, number>;
  slow_consumer_drops: number;
  publish_drops: number;
  in_grace: boolean;
}

/** Where the gateway's view came from (`feed.rs` documents these three; typed as a string there). */
export type GatewaySource = 'monitor' | 'kv' | 'none' | (string & {});

/** `feed.rs` GatewayState. */
export interface GatewayState {
  nats_connected: boolean;
  at_ms: number;
  source: GatewaySource;
}

/** `feed.rs` FeedSnapshot. */
export interface FeedSnapshot {
  resync: boolean;
  /** Gateway clock. */
  at_ms: number;
  gateway: GatewayState;
  monitor: MonitorHeartbeat | null;
  /** When the gateway received `monitor` (gateway clock): compare only with `at_ms`. */
  monitor_seen_ms: number | null;
  services: ServiceState[];
}

/** `feed.rs` FeedMessage (internally tagged by `type`) plus the per-connection `seq`. */
export type FeedMessage = { seq: number } & (
  | ({ type: 'snapshot' } & FeedSnapshot)
  | { type: 'status'; data: StatusChange }
  | { type: 'alert'; data: AlertEvent }
  | { type: 'metrics'; data: ServiceSummary }
  | { type: 'monitor'; data: MonitorHeartbeat }
  | { type: 'gateway'; data: GatewayState }
);

export type FeedType = FeedMessage['type'];

/** `feed.rs` ClientMessage: the only thing a client may send. */
export type ClientMessage = { type: 'resync' };

/** `feed.rs` HistoryEntry (internally tagged by `kind`): `GET /api/history`, newest first. */
export type HistoryEntry =
  | { kind: 'status'; stream_seq: number; data: StatusChange }
  | { kind: 'alert'; stream_seq: number; data: AlertEvent };

/** `feed.rs` History. */
export interface History {
  events: HistoryEntry[];
}

// ---------------------------------------------------------------------------------------------
// Runtime validation. Everything from the network is `unknown` until one of these says otherwise.
// Numbers must be finite JSON numbers, except the f64 measurements (figures, alert values, rates)
// where `null` is accepted as NaN: serde_json writes a non-finite f64 as `null`, and one odd
// figure must not cost the whole message. Service names are kept exactly as sent (the UI renders
// them as text only).

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}
function isStr(v: unknown): v is string {
  return typeof v === 'string';
}
function isBool(v: unknown): v is boolean {
  return typeof v === 'boolean';
}
/** A measurement: a finite number, or null (NaN). Returns undefined when neither. */
function measure(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (v === null) return Number.NaN;
  return undefined;
}
/** `Option<u64>`: absent and null both mean None (serde fills a missing Option with None). */
function optInt(v: unknown): number | null | undefined {
  if (v === undefined || v === null) return null;
  return isInt(v) ? v : undefined;
}
function isStrArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every(isStr);
}

export function isStatus(v: unknown): v is Status {
  return isStr(v) && (STATUSES as readonly string[]).includes(v);
}
export function isAlertName(v: unknown): v is AlertName {
  return isStr(v) && (ALERT_NAMES as readonly string[]).includes(v);
}
export function isAlertState(v: unknown): v is AlertState {
  return isStr(v) && (ALERT_STATES as readonly string[]).includes(v);
}

export function parseStatusChange(v: unknown): StatusChange | null {
  if (!isObj(v)) return null;
  const { service, status, previous, at_ms, reasons } = v;
  if (!isStr(service) || !isStatus(status) || !isStatus(previous) || !isInt(at_ms)) return null;
  if (!isStrArray(reasons)) return null;
  return { service, status, previous, at_ms, reasons: [...reasons] };
}

export function parseAlertEvent(v: unknown): AlertEvent | null {
  if (!isObj(v)) return null;
  const { id, service, alert, state, since_ms, at_ms } = v;
  const value = measure(v.value);
  const threshold = measure(v.threshold);
  if (!isStr(id) || !isStr(service) || !isAlertName(alert) || !isAlertState(state)) return null;
  if (value === undefined || threshold === undefined || !isInt(since_ms) || !isInt(at_ms)) return null;
  return { id, service, alert, state, value, threshold, since_ms, at_ms };
}

export function parseFigures(v: unknown): Figures | null {
  if (!isObj(v)) return null;
  const f = {
    cpu_pct: measure(v.cpu_pct),
    mem_pct: measure(v.mem_pct),
    error_rate: measure(v.error_rate),
    latency_ms: measure(v.latency_ms),
    latency_avg_ms: measure(v.latency_avg_ms),
    latency_p95_ms: measure(v.latency_p95_ms),
    latency_p99_ms: measure(v.latency_p99_ms),
    uptime_pct: measure(v.uptime_pct),
  };
  for (const x of Object.values(f)) if (x === undefined) return null;
  if (!isInt(v.samples) || !isInt(v.window_s)) return null;
  return { ...(f as Record<keyof typeof f, number>), samples: v.samples, window_s: v.window_s };
}

export function parseServiceSummary(v: unknown): ServiceSummary | null {
  if (!isObj(v)) return null;
  const { service, status, at_ms, instance, health_url } = v;
  const last_seen_ms = optInt(v.last_seen_ms);
  const figures = parseFigures(v.figures);
  if (!isStr(service) || !isStatus(status) || !isInt(at_ms) || last_seen_ms === undefined) return null;
  if (!isStr(instance) || !isStr(health_url) || figures === null) return null;
  return { service, status, at_ms, last_seen_ms, instance, health_url, figures };
}

export function parseActiveAlert(v: unknown): ActiveAlert | null {
  if (!isObj(v)) return null;
  const { id, alert, since_ms } = v;
  const value = measure(v.value);
  const threshold = measure(v.threshold);
  if (!isStr(id) || !isAlertName(alert) || value === undefined || threshold === undefined) return null;
  if (!isInt(since_ms)) return null;
  return { id, alert, value, threshold, since_ms };
}

export function parseServiceState(v: unknown): ServiceState | null {
  if (!isObj(v)) return null;
  const { service, status, since_ms, reasons, instance, health_url } = v;
  const last_seen_ms = optInt(v.last_seen_ms);
  const figures = parseFigures(v.figures);
  if (!isStr(service) || !isStatus(status) || !isInt(since_ms) || last_seen_ms === undefined) return null;
  if (!isStrArray(reasons) || !Array.isArray(v.alerts) || !isStr(instance) || !isStr(health_url)) return null;
  if (figures === null) return null;
  const alerts: ActiveAlert[] = [];
  for (const a of v.alerts) {
    const parsed = parseActiveAlert(a);
    if (parsed === null) return null;
    alerts.push(parsed);
  }
  return { service, status, since_ms, last_seen_ms, reasons: [...reasons], alerts, instance, health_url, figures };
}

export function parseMonitorHeartbeat(v: unknown): MonitorHeartbeat | null {
  if (!isObj(v)) return null;
  const ints = [
    'at_ms',
    'started_ms',
    'uptime_s',
    'interval_ms',
    'heartbeat_timeout_ms',
    'services',
    'samples_total',
    'refused_total',
    'slow_consumer_drops',
    'publish_drops',
  ] as const;
  for (const k of ints) if (!isInt(v[k])) return null;
  const samples_per_s = measure(v.samples_per_s);
  if (!isStr(v.monitor_id) || !isStr(v.version) || samples_per_s === undefined || !isBool(v.in_grace)) {
    return null;
  }
  if (!isObj(v.refusals)) return null;
  const refusals: Record<string, number> = {};
  for (const [k, n] of Object.entries(v.refusals)) {
    if (!isInt(n)) return null;
    refusals[k] = n;
  }
  const n = (k: (typeof ints)[number]) => v[k] as number;
  return {
    monitor_id: v.monitor_id,
    version: v.version,
    at_ms: n('at_ms'),
    started_ms: n('started_ms'),
    uptime_s: n('uptime_s'),
    interval_ms: n('interval_ms'),
    heartbeat_timeout_ms: n('heartbeat_timeout_ms'),
    services: n('services'),
    samples_total: n('samples_total'),
    samples_per_s,
    refused_total: n('refused_total'),
    refusals,
    slow_consumer_drops: n('slow_consumer_drops'),
    publish_drops: n('publish_drops'),
    in_grace: v.in_grace,
  };
}

export function parseGatewayState(v: unknown): GatewayState | null {
  if (!isObj(v)) return null;
  const { nats_connected, at_ms, source } = v;
  if (!isBool(nats_connected) || !isInt(at_ms) || !isStr(source)) return null;
  return { nats_connected, at_ms, source };
}

function parseServiceList(v: unknown): ServiceState[] | null {
  if (!Array.isArray(v)) return null;
  const out: ServiceState[] = [];
  for (const s of v) {
    const parsed = parseServiceState(s);
    // One malformed entry is dropped rather than losing the whole view (and resyncing forever).
    if (parsed !== null) out.push(parsed);
  }
  return out;
}

/** `GET /api/status` body. */
export function parseSnapshot(v: unknown): Snapshot | null {
  if (!isObj(v)) return null;
  const services = parseServiceList(v.services);
  if (!isStr(v.monitor_id) || !isInt(v.at_ms) || services === null) return null;
  return { monitor_id: v.monitor_id, at_ms: v.at_ms, services };
}

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
  if (!isObj(v) || !isInt(v.seq) || !isStr(v.type)) return null;
  const seq = v.seq;
  switch (v.type) {
    case 'snapshot': {
      const gateway = parseGatewayState(v.gateway);
      const monitor = v.monitor === null || v.monitor === undefined ? null : parseMonitorHeartbeat(v.monitor);
      const monitor_seen_ms = optInt(v.monitor_seen_ms);
      const services = parseServiceList(v.services);
      if (!isBool(v.resync) || !isInt(v.at_ms) || gateway === null || services === null) return null;
      if (monitor_seen_ms === undefined) return null;
      if (monitor === null && v.monitor !== null && v.monitor !== undefined) return null;
      return { seq, type: 'snapshot', resync: v.resync, at_ms: v.at_ms, gateway, monitor, monitor_seen_ms, services };
    }
    case 'status': {
      const data = parseStatusChange(v.data);
      return data && { seq, type: 'status', data };
    }
    case 'alert': {
      const data = parseAlertEvent(v.data);
      return data && { seq, type: 'alert', data };
    }
    case 'metrics': {
      const data = parseServiceSummary(v.data);
      return data && { seq, type: 'metrics', data };
    }
    case 'monitor': {
      const data = parseMonitorHeartbeat(v.data);
      return data && { seq, type: 'monitor', data };
    }
    case 'gateway': {
      const data = parseGatewayState(v.data);
      return data && { seq, type: 'gateway', data };
    }
    default:
      return null;
  }
}

export function parseHistoryEntry(v: unknown): HistoryEntry | null {
  if (!isObj(v) || !isInt(v.stream_seq)) return null;
  if (v.kind === 'status') {
    const data = parseStatusChange(v.data);
    return data && { kind: 'status', stream_seq: v.stream_seq, data };
  }
  if (v.kind === 'alert') {
    const data = parseAlertEvent(v.data);
    return data && { kind: 'alert', stream_seq: v.stream_seq, data };
  }
  return null;
}

/** `GET /api/history` body; malformed entries are skipped. */
export function parseHistory(v: unknown): History | null {
  if (!isObj(v) || !Array.isArray(v.events)) return null;
  const events: HistoryEntry[] = [];
  for (const e of v.events) {
    const parsed = parseHistoryEntry(e);
    if (parsed !== null) events.push(parsed);
  }
  return { events };
}

export const RESYNC_MESSAGE: string = JSON.stringify({ type: 'resync' } satisfies ClientMessage);
