import { describe, expect, it } from 'vitest';
import { parseFeedMessage, parseHistory, parseSnapshot, RESYNC_MESSAGE, type FeedMessage } from './protocol';
import { alertMsg, gatewayMsg, metricsMsg, monitorMsg, serviceState, snapshot, statusMsg } from './testdata';

const roundTrip = (v: unknown) => parseFeedMessage(JSON.stringify(v));
const dataOf = (m: FeedMessage): object => ('data' in m ? m.data : {});

describe('parseFeedMessage', () => {
  it('accepts every message type', () => {
    for (const m of [
      snapshot(0, [serviceState('auth')]),
      statusMsg(1, { service: 'auth' }),
      alertMsg(2, { service: 'auth' }),
      metricsMsg(3, { service: 'auth' }),
      monitorMsg(4),
      gatewayMsg(5, false),
    ]) {
      expect(roundTrip(m)).toEqual(m);
    }
  });

  it('rejects what is not JSON or not an object', () => {
    for (const junk of ['', 'not json', '{', 'null', '42', '"snapshot"', '[]', '[{"seq":0}]', '{"seq":0,"type":"status"']) {
      expect(parseFeedMessage(junk)).toBeNull();
    }
  });

  it('rejects a missing or malformed seq', () => {
    const m = statusMsg(1, { service: 'auth' }) as Record<string, unknown>;
    for (const seq of [undefined, null, -1, 1.5, '1', 2 ** 60]) {
      expect(roundTrip({ ...m, seq })).toBeNull();
    }
  });

  it('rejects an unknown or missing type', () => {
    expect(roundTrip({ seq: 1, type: 'subscribe', data: {} })).toBeNull();
    expect(roundTrip({ seq: 1, type: 'SNAPSHOT' })).toBeNull();
    expect(roundTrip({ seq: 1, data: {} })).toBeNull();
  });

  it('rejects payloads of the wrong shape', () => {
    const bad = [
      { seq: 1, type: 'status', data: { service: 'a', status: 'BROKEN', previous: 'HEALTHY', at_ms: 1, reasons: [] } },
      { seq: 1, type: 'status', data: { service: 'a', status: 'DOWN', previous: 'HEALTHY', at_ms: 1, reasons: 'stopped' } },
      { seq: 1, type: 'status', data: { service: 7, status: 'DOWN', previous: 'HEALTHY', at_ms: 1, reasons: [] } },
      { seq: 1, type: 'alert', data: { ...dataOf(alertMsg(1, { service: 'a' })), alert: 'HIGH_FUN' } },
      { seq: 1, type: 'alert', data: { ...dataOf(alertMsg(1, { service: 'a' })), state: 'maybe' } },
      { seq: 1, type: 'alert', data: { ...dataOf(alertMsg(1, { service: 'a' })), value: 'high' } },
      { seq: 1, type: 'metrics', data: { ...dataOf(metricsMsg(1, { service: 'a' })), figures: { cpu_pct: 1 } } },
      { seq: 1, type: 'metrics', data: { ...dataOf(metricsMsg(1, { service: 'a' })), last_seen_ms: -5 } },
      { seq: 1, type: 'monitor', data: { monitor_id: 'm' } },
      { seq: 1, type: 'gateway', data: { nats_connected: 'yes', at_ms: 1, source: 'none' } },
      { seq: 1, type: 'gateway' },
      { ...snapshot(0, []), gateway: null },
      { ...snapshot(0, []), services: {} },
      { ...snapshot(0, []), resync: 'no' },
    ];
    for (const b of bad) expect(roundTrip(b)).toBeNull();
  });

  it('ignores unknown fields, as the protocol allows new ones', () => {
    const m = { ...statusMsg(3, { service: 'auth' }), extra: 1 } as Record<string, unknown>;
    const parsed = roundTrip(m);
    expect(parsed?.type).toBe('status');
    expect(parsed && 'extra' in parsed).toBe(false);
  });

  it('keeps a hostile service name exactly, as plain text', () => {
    const hostile = '<img src=x onerror=alert(1)>"\'&';
    const parsed = roundTrip(statusMsg(1, { service: hostile }));
    expect(parsed?.type === 'status' && parsed.data.service).toBe(hostile);
  });

  it('accepts a null or absent Option and a null (non-finite) measurement', () => {
    const s = serviceState('auth', { last_seen_ms: null });
    const raw = JSON.parse(JSON.stringify(snapshot(0, [s], { monitor: null, monitor_seen_ms: null })));
    delete raw.services[0].last_seen_ms;
    raw.services[0].figures.latency_p95_ms = null;
    const parsed = parseFeedMessage(JSON.stringify(raw));
    expect(parsed?.type).toBe('snapshot');
    if (parsed?.type !== 'snapshot') return;
    expect(parsed.services[0]?.last_seen_ms).toBeNull();
    expect(Number.isNaN(parsed.services[0]?.figures.latency_p95_ms)).toBe(true);
    expect(parsed.monitor).toBeNull();
  });

  it('drops one malformed service of a snapshot and keeps the rest', () => {
    const raw = JSON.parse(JSON.stringify(snapshot(0, [serviceState('a'), serviceState('b')])));
    raw.services[0].status = 'WEIRD';
    const parsed = parseFeedMessage(JSON.stringify(raw));
    expect(parsed?.type === 'snapshot' && parsed.services.map((s) => s.service)).toEqual(['b']);
  });
});

describe('HTTP bodies', () => {
  it('parses /api/status and /api/history', () => {
    expect(parseSnapshot({ monitor_id: 'm', at_ms: 5, services: [serviceState('a')] })?.services).toHaveLength(1);
    expect(parseSnapshot({ monitor_id: 'm', services: [] })).toBeNull();
    const h = parseHistory({
      events: [
        { kind: 'status', stream_seq: 9, data: dataOf(statusMsg(0, { service: 'a' })) },
        { kind: 'alert', stream_seq: 8, data: dataOf(alertMsg(0, { service: 'a' })) },
        { kind: 'weird', stream_seq: 7, data: {} },
      ],
    });
    expect(h?.events.map((e) => e.kind)).toEqual(['status', 'alert']);
    expect(parseHistory({})).toBeNull();
  });

  it('the resync request is exactly what the gateway accepts', () => {
    expect(JSON.parse(RESYNC_MESSAGE)).toEqual({ type: 'resync' });
  });
});
