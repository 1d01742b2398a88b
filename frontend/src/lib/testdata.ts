// Builders for test messages, shaped exactly like the Rust serde output.

import type {
  AlertEvent,
  FeedMessage,
  Figures,
  MonitorHeartbeat,
  ServiceState,
  ServiceSummary,
  StatusChange,
} from './protocol';

export const T0 = 1_763_900_000_000;

export function figures(over: Partial<Figures> = {}): Figures {
  return {
    cpu_pct: 20,
    mem_pct: 40,
    error_rate: 0.001,
    latency_ms: 30,
    latency_avg_ms: 28,
    latency_p95_ms: 45,
    latency_p99_ms: 60,
    uptime_pct: 100,
    samples: 60,
    window_s: 60,
    ...over,
  };
}

export function serviceState(service: string, over: Partial<ServiceState> = {}): ServiceState {
  return {
    service,
    status: 'HEALTHY',
    since_ms: T0 - 60_000,
    last_seen_ms: T0 - 500,
    reasons: ['first sample'],
    alerts: [],
    instance: `${service}-1`,
    health_url: `http://127.0.0.1:3001/services/${service}/health`,
    figures: figures(),
    ...over,
  };
}

export function heartbeat(over: Partial<MonitorHeartbeat> = {}): MonitorHeartbeat {
  return {
    monitor_id: 'm1',
    version: '0.1.0',
    at_ms: T0,
    started_ms: T0 - 60_000,
    uptime_s: 60,
    interval_ms: 1000,
    heartbeat_timeout_ms: 3000,
    services: 2,
    samples_total: 120,
    samples_per_s: 2,
    refused_total: 0,
    refusals: {},
    slow_consumer_drops: 0,
    samples_missed: 0,
    publish_drops: 0,
    in_grace: false,
    ...over,
  };
}

export function snapshot(
  seq: number,
  services: ServiceState[],
  over: Partial<Extract<FeedMessage, { type: 'snapshot' }>> = {},
): FeedMessage {
  return {
    seq,
    type: 'snapshot',
    resync: false,
    at_ms: T0,
    gateway: { nats_connected: true, at_ms: T0 - 10_000, source: 'monitor', live: true, health_origins: ['http://h:*'] },
    monitor: heartbeat({ at_ms: T0 - 200 }),
    monitor_seen_ms: T0 - 200,
    services,
    ...over,
  };
}

export function statusMsg(seq: number, data: Partial<StatusChange> & { service: string }): FeedMessage {
  return { seq, type: 'status', data: { status: 'DOWN', previous: 'HEALTHY', at_ms: T0 + 1000, reasons: ['stopped'], ...data } };
}

export function alertMsg(seq: number, data: Partial<AlertEvent> & { service: string }): FeedMessage {
  const since = data.since_ms ?? T0 + 1000;
  const alert = data.alert ?? 'SERVICE_DOWN';
  return {
    seq,
    type: 'alert',
    data: {
      id: `${data.service}:${alert}:${since}`,
      alert,
      state: 'firing',
      value: 3.1,
      threshold: 3,
      since_ms: since,
      at_ms: since,
      ...data,
    },
  };
}

export function metricsMsg(seq: number, data: Partial<ServiceSummary> & { service: string }): FeedMessage {
  return {
    seq,
    type: 'metrics',
    data: {
      status: 'HEALTHY',
      at_ms: T0 + 1000,
      last_seen_ms: T0 + 990,
      instance: `${data.service}-1`,
      health_url: `http://127.0.0.1:3001/services/${data.service}/health`,
      figures: figures(),
      ...data,
    },
  };
}

export function monitorMsg(seq: number, over: Partial<MonitorHeartbeat> = {}): FeedMessage {
  return { seq, type: 'monitor', data: heartbeat(over) };
}

export function gatewayMsg(seq: number, nats_connected: boolean, at_ms = T0, live = true, problem?: string): FeedMessage {
  return { seq, type: 'gateway', data: { nats_connected, at_ms, source: 'monitor', live, health_origins: ['http://h:*'], ...(problem === undefined ? {} : { problem }) } };
}
