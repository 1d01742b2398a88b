// The dashboard's state and how each feed message changes it. Pure: no clock reads, no I/O;
// the caller passes the browser's receive time of each message. A state is never mutated: a
// message returns a new state that shares every unchanged service object with the old one, so a
// keyed {#each} re-renders only the cards whose service changed.

import type {
  ActiveAlert,
  AlertEvent,
  AlertMarks,
  FeedMessage,
  Figures,
  GatewayState,
  HistoryEntry,
  HostFigures,
  MonitorHeartbeat,
  ProbeResult,
  ServiceState,
  ServiceSummary,
  Source,
  Status,
  StatusChange,
} from './protocol';

/** Points kept per service for the sparklines (two minutes at one summary a second). */
export const SERIES_POINTS = 120;
/** Entries kept in the timeline. */
export const TIMELINE_MAX = 200;
/** The monitor's heartbeat is fresh when received within this long (browser clock). */
export const MONITOR_TIMEOUT_MS = 3500;

/** Sparkline history of one service: parallel arrays, oldest first, at most SERIES_POINTS. */
export interface Series {
  /** Monitor clock (ServiceSummary.at_ms). */
  t: readonly number[];
  /** NaN (not drawn) where the source has no CPU figure (a probe). */
  cpu: readonly number[];
  mem: readonly number[];
  p95: readonly number[];
  err: readonly number[];
}

/** A status a service on the page can have: RETIRED removes the service instead. */
export type ShownStatus = Exclude<Status, 'RETIRED'>;

export interface ServiceView {
  service: string;
  status: ShownStatus;
  /** When the current status began (monitor clock). */
  since_ms: number;
  /** The monitor's receive time of the last sample (monitor clock). */
  last_seen_ms: number | null;
  reasons: readonly string[];
  alerts: readonly ActiveAlert[];
  instance: string;
  health_url: string;
  /** Null while the service is known only from a status or alert event. */
  figures: Figures | null;
  /** Who sent the latest sample (`simulator` when the monitor does not say). */
  source: Source;
  /** The latest probe's outcome (probe-sourced services), else null. */
  probe: ProbeResult | null;
  /** The host's latest figures (agent-sourced services), else null. */
  host: HostFigures | null;
  /** `at_ms` of the last ServiceSummary applied (monitor clock); older ones are ignored. */
  summary_at_ms: number | null;
  series: Series;
}

export interface ActiveAlertView extends ActiveAlert {
  service: string;
}

export type TimelineItem =
  | { key: string; kind: 'status'; at_ms: number; data: StatusChange }
  | { key: string; kind: 'alert'; at_ms: number; data: AlertEvent };

export type StatusCounts = Record<ShownStatus, number>;

export interface DashboardState {
  services: ReadonlyMap<string, ServiceView>;
  /** Service names, trouble first (DOWN, DEGRADED, UNKNOWN, HEALTHY), then by name. */
  order: readonly string[];
  counts: Readonly<StatusCounts>;
  /** Firing alerts of every service, newest first. */
  alerts: readonly ActiveAlertView[];
  /** Status changes and alert events, newest first, at most TIMELINE_MAX. */
  timeline: readonly TimelineItem[];
  gateway: GatewayState | null;
  monitor: MonitorHeartbeat | null;
  /** Browser clock when the latest monitor heartbeat was received (or, from a snapshot, would
   * have been: receive time minus the age the gateway reported). Null: never seen. */
  monitorSeenLocalMs: number | null;
  /** Server clock minus browser clock, from the latest heartbeat or snapshot. Used only to show
   * server timestamps as ages; null until the first message. */
  clockOffsetMs: number | null;
  /** Browser clock when the last snapshot was applied; null before the first. */
  snapshotLocalMs: number | null;
}

const RANK: Record<ShownStatus, number> = { DOWN: 0, DEGRADED: 1, UNKNOWN: 2, HEALTHY: 3 };

export function statusRank(s: ShownStatus): number {
  return RANK[s];
}

const EMPTY_SERIES: Series = { t: [], cpu: [], mem: [], p95: [], err: [] };

export function emptyCounts(): StatusCounts {
  return { DOWN: 0, DEGRADED: 0, UNKNOWN: 0, HEALTHY: 0 };
}

export function initialState(): DashboardState {
  return {
    services: new Map(),
    order: [],
    counts: emptyCounts(),
    alerts: [],
    timeline: [],
    gateway: null,
    monitor: null,
    monitorSeenLocalMs: null,
    clockOffsetMs: null,
    snapshotLocalMs: null,
  };
}

/** Compares service names by code unit (names are ASCII), so the order is the same everywhere. */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Trouble first (DOWN, DEGRADED, UNKNOWN, HEALTHY), then by name. */
export function sortOrder(services: ReadonlyMap<string, ServiceView>): string[] {
  const list = [...services.values()];
  list.sort((a, b) => RANK[a.status] - RANK[b.status] || compareNames(a.service, b.service));
  return list.map((s) => s.service);
}

export function countStatuses(services: ReadonlyMap<string, ServiceView>): StatusCounts {
  const counts = emptyCounts();
  for (const s of services.values()) counts[s.status] += 1;
  return counts;
}

export function collectAlerts(services: ReadonlyMap<string, ServiceView>): ActiveAlertView[] {
  const out: ActiveAlertView[] = [];
  for (const s of services.values()) {
    for (const a of s.alerts) out.push({ ...a, service: s.service });
  }
  out.sort((a, b) => b.since_ms - a.since_ms || compareNames(a.service, b.service) || compareNames(a.id, b.id));
  return out;
}

/** A service known only by name (from an event, or from a remembered health URL). */
export function placeholder(service: string, at_ms: number, health_url = ''): ServiceView {
  return {
    service,
    status: 'UNKNOWN',
    since_ms: at_ms,
    last_seen_ms: null,
    reasons: [],
    alerts: [],
    instance: '',
    health_url,
    figures: null,
    source: 'simulator',
    probe: null,
    host: null,
    summary_at_ms: null,
    series: EMPTY_SERIES,
  };
}

function fromServiceState(s: ServiceState, status: ShownStatus, series: Series): ServiceView {
  return {
    service: s.service,
    status,
    since_ms: s.since_ms,
    last_seen_ms: s.last_seen_ms,
    reasons: s.reasons,
    alerts: s.alerts,
    instance: s.instance,
    health_url: s.health_url,
    figures: s.figures,
    source: s.source ?? 'simulator',
    probe: s.probe ?? null,
    host: s.host ?? null,
    summary_at_ms: null,
    series,
  };
}

function push(arr: readonly number[], v: number): number[] {
  const start = arr.length >= SERIES_POINTS ? arr.length - SERIES_POINTS + 1 : 0;
  const out = arr.slice(start);
  out.push(v);
  return out;
}

/** A figure the source may not have (absent or null): NaN, which is not drawn. */
function orNaN(v: number | null | undefined): number {
  return v ?? Number.NaN;
}

/** Appends one summary's figures to a series, keeping at most SERIES_POINTS. */
export function appendSeries(series: Series, at_ms: number, f: Figures): Series {
  return {
    t: push(series.t, at_ms),
    cpu: push(series.cpu, orNaN(f.cpu_pct)),
    mem: push(series.mem, orNaN(f.mem_pct)),
    // NaN (not drawn) for a window with no samples, e.g. just after a monitor restart.
    p95: push(series.p95, f.samples > 0 ? f.latency_p95_ms : Number.NaN),
    err: push(series.err, f.error_rate),
  };
}

export function timelineKey(item: { kind: 'status'; data: StatusChange } | { kind: 'alert'; data: AlertEvent }): string {
  return item.kind === 'status'
    ? `s|${item.data.service}|${item.data.at_ms}|${item.data.status}`
    : `a|${item.data.id}|${item.data.state}`;
}

function statusItem(data: StatusChange): TimelineItem {
  return { key: timelineKey({ kind: 'status', data }), kind: 'status', at_ms: data.at_ms, data };
}
function alertItem(data: AlertEvent): TimelineItem {
  return { key: timelineKey({ kind: 'alert', data }), kind: 'alert', at_ms: data.at_ms, data };
}

/** Adds items (in the order they happened) to a timeline: de-duplicated by key, newest first
 * (ties: the later-added first), at most TIMELINE_MAX. */
export function mergeTimeline(timeline: readonly TimelineItem[], added: readonly TimelineItem[]): readonly TimelineItem[] {
  if (added.length === 0) return timeline;
  const seen = new Set(timeline.map((i) => i.key));
  const fresh: TimelineItem[] = [];
  for (const i of added) {
    if (seen.has(i.key)) continue;
    seen.add(i.key);
    fresh.push(i);
  }
  if (fresh.length === 0) return timeline;
  fresh.reverse();
  const all = [...fresh, ...timeline];
  all.sort((a, b) => b.at_ms - a.at_ms);
  return all.length > TIMELINE_MAX ? all.slice(0, TIMELINE_MAX) : all;
}

/** Folds a `GET /api/history` answer into the timeline. */
export function mergeHistory(state: DashboardState, entries: readonly HistoryEntry[]): DashboardState {
  // The API answers newest first; the timeline takes items in the order they happened.
  const items = [...entries].reverse().map((e) => (e.kind === 'status' ? statusItem(e.data) : alertItem(e.data)));
  const timeline = mergeTimeline(state.timeline, items);
  return timeline === state.timeline ? state : { ...state, timeline };
}

/** A message with the browser's receive time. */
export interface Received {
  msg: FeedMessage;
  atMs: number;
}

/** Applies one message received at `nowMs` (browser clock). */
export function reduce(state: DashboardState, msg: FeedMessage, nowMs: number): DashboardState {
  return reduceBatch(state, [{ msg, atMs: nowMs }]);
}

/**
 * Applies messages in order. Equivalent to reducing them one by one, but copies the service map
 * and re-sorts once per batch (the connection applies one batch per animation frame).
 */
export function reduceBatch(state: DashboardState, batch: readonly Received[]): DashboardState {
  if (batch.length === 0) return state;
  let services: Map<string, ServiceView> | null = null;
  const svc = (): Map<string, ServiceView> => (services ??= new Map(state.services));
  const cur = (): ReadonlyMap<string, ServiceView> => services ?? state.services;
  let orderDirty = false;
  let alertsDirty = false;
  let timeline = state.timeline;
  let added: TimelineItem[] = [];
  let { gateway, monitor, monitorSeenLocalMs, clockOffsetMs, snapshotLocalMs } = state;

  for (const { msg, atMs } of batch) {
    switch (msg.type) {
      case 'snapshot': {
        // Replaces the services; sparkline history is the client's own and is kept for
        // services that are still there.
        const old = cur();
        const next = new Map<string, ServiceView>();
        for (const s of msg.services) {
          // Never stored by the monitor; were one to come, it is gone all the same.
          if (s.status === 'RETIRED') continue;
          next.set(s.service, fromServiceState(s, s.status, old.get(s.service)?.series ?? EMPTY_SERIES));
        }
        services = next;
        orderDirty = true;
        alertsDirty = true;
        gateway = msg.gateway;
        monitor = msg.monitor;
        if (msg.monitor !== null && msg.monitor_seen_ms !== null) {
          // Only the difference of two gateway timestamps is used: no clock skew.
          const ageAtSnapshot = Math.max(0, msg.at_ms - msg.monitor_seen_ms);
          monitorSeenLocalMs = atMs - ageAtSnapshot;
          clockOffsetMs = msg.monitor.at_ms - monitorSeenLocalMs;
        } else {
          // This gateway has seen no heartbeat yet (it has just started). If the monitor itself
          // answered the gateway's snapshot request (source "monitor", at gateway.at_ms), it was
          // alive then: that counts as its last sign of life, so a gateway restart does not
          // show "monitor down" until the next heartbeat. From KV (the monitor did not answer)
          // or from nowhere, the monitor is unknown: not fresh.
          monitorSeenLocalMs =
            msg.gateway.source === 'monitor' ? atMs - Math.max(0, msg.at_ms - msg.gateway.at_ms) : null;
          clockOffsetMs = msg.at_ms - atMs;
        }
        snapshotLocalMs = atMs;
        // Events already folded in stay; anything else comes from the history API.
        timeline = mergeTimeline(timeline, added);
        added = [];
        break;
      }
      case 'status': {
        const d = msg.data;
        added.push(statusItem(d));
        const prev = cur().get(d.service);
        if (prev !== undefined && d.at_ms < prev.since_ms) break; // older than what we know
        if (d.status === 'RETIRED') {
          // The monitor no longer tracks it: the card, its alerts and its series go. If the
          // service publishes again, it comes back as new.
          if (prev === undefined) break;
          svc().delete(d.service);
          orderDirty = true;
          if (prev.alerts.length > 0) alertsDirty = true;
          break;
        }
        const base = prev ?? placeholder(d.service, d.at_ms);
        if (prev !== undefined && prev.status === d.status && prev.since_ms === d.at_ms) break; // duplicate
        svc().set(d.service, { ...base, status: d.status, since_ms: d.at_ms, reasons: d.reasons });
        if (prev === undefined || prev.status !== d.status) orderDirty = true;
        break;
      }
      case 'alert': {
        const d = msg.data;
        added.push(alertItem(d));
        const prev = cur().get(d.service);
        // A resolve says nothing about a service we do not know (e.g. one just retired, whose
        // alerts resolve with reason "retired"): no card for it.
        if (prev === undefined && d.state === 'resolved') break;
        const base = prev ?? placeholder(d.service, d.at_ms);
        const without = base.alerts.filter((a) => a.id !== d.id);
        let alerts: readonly ActiveAlert[];
        const held = base.alerts.find((a) => a.id === d.id);
        if (d.state === 'firing' && held !== undefined) {
          // The monitor re-announces a firing alert when its marks change (silenced, acked,
          // inhibition lifted): marks (and figures) are replaced in place; an identical repeat
          // changes nothing.
          const next = withMarks({ ...held, value: d.value, threshold: d.threshold }, d);
          if (sameMarks(held, next) && Object.is(held.value, next.value) && Object.is(held.threshold, next.threshold)) break;
          alerts = base.alerts.map((a) => (a.id === d.id ? next : a));
        } else if (d.state === 'firing') {
          alerts = [...without, withMarks({ id: d.id, alert: d.alert, value: d.value, threshold: d.threshold, since_ms: d.since_ms }, d)];
        } else if (without.length !== base.alerts.length) {
          alerts = without;
        } else {
          break; // resolve of an alert we do not hold: nothing to change
        }
        svc().set(d.service, { ...base, alerts });
        if (prev === undefined) orderDirty = true;
        alertsDirty = true;
        break;
      }
      case 'metrics': {
        const d = msg.data;
        const prev = cur().get(d.service);
        if (prev?.summary_at_ms != null && d.at_ms <= prev.summary_at_ms) break; // duplicate or old
        if (d.status === 'RETIRED') {
          // Not sent by the monitor (it retires with a status change); handled alike if it were.
          if (prev !== undefined && d.at_ms >= prev.since_ms) {
            svc().delete(d.service);
            orderDirty = alertsDirty = true;
          }
          break;
        }
        svc().set(d.service, applySummary(prev ?? placeholder(d.service, d.at_ms), d, d.status));
        if (prev === undefined || (d.at_ms >= prev.since_ms && prev.status !== d.status)) orderDirty = true;
        break;
      }
      case 'monitor': {
        monitor = msg.data;
        monitorSeenLocalMs = atMs;
        clockOffsetMs = msg.data.at_ms - atMs;
        break;
      }
      case 'gateway': {
        gateway = msg.data;
        break;
      }
    }
  }

  const finalServices = services ?? state.services;
  if (added.length > 0) timeline = mergeTimeline(timeline, added);
  return {
    services: finalServices,
    order: orderDirty ? sortOrder(finalServices) : state.order,
    counts: orderDirty ? countStatuses(finalServices) : state.counts,
    alerts: alertsDirty ? collectAlerts(finalServices) : state.alerts,
    timeline,
    gateway,
    monitor,
    monitorSeenLocalMs,
    clockOffsetMs,
    snapshotLocalMs,
  };
}

/** An active alert with the event's marks (those absent on the event are not set). */
export function withMarks(a: ActiveAlert, marks: AlertMarks): ActiveAlert {
  const out: ActiveAlert = { id: a.id, alert: a.alert, value: a.value, threshold: a.threshold, since_ms: a.since_ms };
  if (marks.severity != null) out.severity = marks.severity;
  if (marks.inhibited_by != null) out.inhibited_by = marks.inhibited_by;
  if (marks.silenced === true) out.silenced = true;
  if (marks.acked_by != null) out.acked_by = marks.acked_by;
  return out;
}

export function sameMarks(a: AlertMarks, b: AlertMarks): boolean {
  return (
    (a.severity ?? null) === (b.severity ?? null) &&
    (a.inhibited_by ?? null) === (b.inhibited_by ?? null) &&
    (a.silenced === true) === (b.silenced === true) &&
    (a.acked_by ?? null) === (b.acked_by ?? null)
  );
}

function applySummary(prev: ServiceView, d: ServiceSummary, status: ShownStatus): ServiceView {
  // A summary newer than the current status carries the monitor's current status; an older
  // one (a status change overtook it) does not change the status.
  const newer = d.at_ms >= prev.since_ms;
  const statusChanged = newer && prev.status !== d.status;
  return {
    ...prev,
    status: statusChanged ? status : prev.status,
    since_ms: statusChanged ? d.at_ms : prev.since_ms,
    last_seen_ms: d.last_seen_ms ?? prev.last_seen_ms,
    instance: d.instance,
    health_url: d.health_url,
    figures: d.figures,
    source: d.source ?? 'simulator',
    probe: d.probe ?? null,
    host: d.host ?? null,
    summary_at_ms: d.at_ms,
    series: appendSeries(prev.series, d.at_ms, d.figures),
  };
}

// ---------------------------------------------------------------------------------------------
// Sequence numbers: a gap asks for a resync instead of guessing.

export interface SeqTracker {
  /** The seq the next message must carry; null before the first snapshot of a connection. */
  expected: number | null;
  /** A resync was asked for: everything but a snapshot is ignored until one arrives. */
  awaitingSnapshot: boolean;
}

export type SeqVerdict = 'apply' | 'ignore' | 'resync';

export function newSeqTracker(): SeqTracker {
  return { expected: null, awaitingSnapshot: false };
}

/**
 * Decides what to do with a message given the seq seen so far on this connection:
 * - `apply`: in order (or a snapshot, which replaces everything);
 * - `ignore`: a duplicate or old seq, or any non-snapshot while a resync is pending;
 * - `resync`: a gap (or a first message that is not a snapshot): send `{"type":"resync"}` and
 *   ignore messages until the snapshot arrives.
 */
export function checkSeq(t: SeqTracker, msg: { seq: number; type: string }): { verdict: SeqVerdict; next: SeqTracker } {
  if (msg.type === 'snapshot') {
    if (t.expected !== null && msg.seq < t.expected) return { verdict: 'ignore', next: t };
    return { verdict: 'apply', next: { expected: msg.seq + 1, awaitingSnapshot: false } };
  }
  if (t.awaitingSnapshot) return { verdict: 'ignore', next: t };
  if (t.expected === null) return { verdict: 'resync', next: { expected: null, awaitingSnapshot: true } };
  if (msg.seq < t.expected) return { verdict: 'ignore', next: t };
  if (msg.seq > t.expected) return { verdict: 'resync', next: { expected: t.expected, awaitingSnapshot: true } };
  return { verdict: 'apply', next: { expected: msg.seq + 1, awaitingSnapshot: false } };
}

// ---------------------------------------------------------------------------------------------
// Staleness and connection mode. All take `nowMs` (browser clock).

/** How long after a heartbeat the monitor counts as down: 3.5 s, or 3.5 intervals if slower. */
export function monitorTimeoutMs(hb: MonitorHeartbeat | null, base = MONITOR_TIMEOUT_MS): number {
  return hb === null ? base : Math.max(base, Math.round(hb.interval_ms * 3.5));
}

/** Age of the latest monitor heartbeat in ms (browser clock); null when none was ever seen. */
export function monitorAgeMs(state: DashboardState, nowMs: number): number | null {
  return state.monitorSeenLocalMs === null ? null : Math.max(0, nowMs - state.monitorSeenLocalMs);
}

/** Fresh while the heartbeat's age is at most the timeout. */
export function isMonitorFresh(state: DashboardState, nowMs: number, timeoutMs = monitorTimeoutMs(state.monitor)): boolean {
  const age = monitorAgeMs(state, nowMs);
  return age !== null && age <= timeoutMs;
}

/** When (browser clock) the heartbeat stops being fresh; null when it is not fresh now or never was. */
export function monitorExpiresAtMs(state: DashboardState, timeoutMs = monitorTimeoutMs(state.monitor)): number | null {
  return state.monitorSeenLocalMs === null ? null : state.monitorSeenLocalMs + timeoutMs;
}

/** A server timestamp as an age in ms at `nowMs`, given server clock minus browser clock. */
export function serverAge(serverMs: number, nowMs: number, offsetMs: number | null): number {
  return Math.max(0, nowMs + (offsetMs ?? 0) - serverMs);
}

/** A server timestamp as an age in ms at `nowMs` (using the state's estimated clock offset). */
export function serverAgeMs(state: DashboardState, serverMs: number, nowMs: number): number {
  return serverAge(serverMs, nowMs, state.clockOffsetMs);
}

/** Age of a service's last sample at `nowMs`; null when it never sent one. */
export function lastSampleAgeMs(state: DashboardState, s: ServiceView, nowMs: number): number | null {
  return s.last_seen_ms === null ? null : serverAgeMs(state, s.last_seen_ms, nowMs);
}

export type ConnectionMode = 'connecting' | 'live' | 'monitor-down' | 'fallback';

export interface ModeInputs {
  /** The WebSocket is open. */
  wsOpen: boolean;
  /** A snapshot arrived on the current WebSocket. */
  hasSnapshot: boolean;
  /** The gateway's last word on NATS (null: not said yet). */
  natsConnected: boolean | null;
  /** The gateway's last word on its own feed (`live`; false: its view is not kept current). */
  feedLive: boolean | null;
  monitorFresh: boolean;
  /** The live path failed at least once since the page loaded (a close, an error, or NATS lost). */
  everFailed: boolean;
}

/**
 * - live: WebSocket open, snapshot in, gateway has NATS, monitor heartbeat fresh;
 * - monitor-down: the same but the heartbeat is stale (data shown as stale, services untouched);
 * - fallback: the WebSocket is closed (or open without a snapshot yet after a failure), or the
 *   gateway lost NATS or says its feed is not live: the page polls health endpoints itself;
 * - connecting: the first attempt, before anything worked or failed.
 */
export function deriveMode(i: ModeInputs): ConnectionMode {
  if (i.wsOpen && i.hasSnapshot && (i.natsConnected === false || i.feedLive === false)) return 'fallback';
  if (i.wsOpen && i.hasSnapshot) return i.monitorFresh ? 'live' : 'monitor-down';
  return i.everFailed ? 'fallback' : 'connecting';
}

// ---------------------------------------------------------------------------------------------
// Announcements for the polite live region.

export function describeStatusChange(c: StatusChange): string {
  const why = c.reasons.length > 0 ? ` (${c.reasons.join('; ')})` : '';
  return `${c.service} is ${c.status}${why}`;
}

/** One sentence for the status changes of one batch; empty when none. */
export function announceStatusChanges(changes: readonly StatusChange[]): string {
  if (changes.length === 0) return '';
  if (changes.length <= 3) return changes.map(describeStatusChange).join('. ') + '.';
  const counts: Record<Status, number> = { ...emptyCounts(), RETIRED: 0 };
  for (const c of changes) counts[c.status] += 1;
  const parts = (['DOWN', 'DEGRADED', 'HEALTHY', 'UNKNOWN', 'RETIRED'] as const)
    .filter((s) => counts[s] > 0)
    .map((s) => `${counts[s]} ${s}`);
  return `${changes.length} services changed status: ${parts.join(', ')}.`;
}
