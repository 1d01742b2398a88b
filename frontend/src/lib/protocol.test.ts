import { describe, expect, it } from 'vitest';
import { parseFeedMessage, parseHistory, parseSnapshot, RESYNC_MESSAGE, STATUSES, type FeedMessage } from './protocol';
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

describe('fields added with the RETIRED and liveness work', () => {
  it('every status of the Rust type is known, RETIRED included', () => {
    expect([...STATUSES].sort()).toEqual(['DEGRADED', 'DOWN', 'HEALTHY', 'RETIRED', 'UNKNOWN']);
    const m = roundTrip(statusMsg(1, { service: 'gone', status: 'RETIRED', previous: 'DOWN', reasons: ['retired'] }));
    expect(m?.type === 'status' && m.data.status).toBe('RETIRED');
  });

  it('gateway liveness: absent means live (an older gateway); false keeps its problem; anything else is refused', () => {
    const old = roundTrip({ seq: 1, type: 'gateway', data: { nats_connected: true, at_ms: 1, source: 'monitor' } });
    expect(old?.type === 'gateway' && old.data).toEqual({ nats_connected: true, at_ms: 1, source: 'monitor', live: true });
    const dead = roundTrip(gatewayMsg(2, true, 5, false, 'subscription ended'));
    expect(dead?.type === 'gateway' && dead.data).toEqual({ nats_connected: true, at_ms: 5, source: 'monitor', live: false, problem: 'subscription ended', health_origins: ['http://h:*'] });
    expect(roundTrip({ seq: 1, type: 'gateway', data: { nats_connected: true, at_ms: 1, source: 'monitor', health_origins: [7] } })).toBeNull();
    expect(roundTrip({ seq: 1, type: 'gateway', data: { nats_connected: true, at_ms: 1, source: 'monitor', live: 'no' } })).toBeNull();
    expect(roundTrip({ seq: 1, type: 'gateway', data: { nats_connected: true, at_ms: 1, source: 'monitor', live: false, problem: 7 } })).toBeNull();
    const snap = roundTrip({ ...snapshot(0, []), gateway: { nats_connected: true, at_ms: 1, source: 'kv', live: false, problem: null } });
    expect(snap?.type === 'snapshot' && snap.gateway.live).toBe(false);
  });

  it('an alert resolve may say why; absent stays absent', () => {
    const plain = roundTrip(alertMsg(1, { service: 'a' }));
    expect(plain !== null && 'data' in plain && 'reason' in plain.data).toBe(false);
    const why = roundTrip(alertMsg(1, { service: 'a', state: 'resolved', reason: 'retired' }));
    expect(why?.type === 'alert' && why.data.reason).toBe('retired');
    expect(roundTrip({ ...alertMsg(1, { service: 'a' }), data: { ...dataOf(alertMsg(1, { service: 'a' })), reason: 3 } })).toBeNull();
  });

  it('a heartbeat from a monitor that does not count missed samples yet reads as 0', () => {
    const raw = JSON.parse(JSON.stringify(monitorMsg(1)));
    delete raw.data.samples_missed;
    const m = roundTrip(raw);
    expect(m?.type === 'monitor' && m.data.samples_missed).toBe(0);
    expect(roundTrip({ ...raw, data: { ...raw.data, samples_missed: -1 } })).toBeNull();
  });

  it('a snapshot page: paging fields default for an older monitor, next_after only when there is more', () => {
    const old = parseSnapshot({ monitor_id: 'm', at_ms: 5, services: [serviceState('a')] });
    expect(old).toMatchObject({ version: 0, page: 0, pages: 1, total: 0 });
    expect(old !== null && 'next_after' in old).toBe(false);
    const paged = parseSnapshot({ monitor_id: 'm', at_ms: 5, version: 3, page: 0, pages: 4, total: 9, next_after: 'b', services: [] });
    expect(paged).toMatchObject({ version: 3, pages: 4, total: 9, next_after: 'b' });
    expect(parseSnapshot({ monitor_id: 'm', at_ms: 5, pages: 'many', services: [] })).toBeNull();
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
