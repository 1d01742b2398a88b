import { describe, expect, it } from 'vitest';
import {
  ALERT_NAMES,
  parseFeedMessage,
  parseHistory,
  parseHostFigures,
  parseProbeResult,
  parseSnapshot,
  parseTarget,
  parseTargetList,
  RESYNC_MESSAGE,
  SOURCES,
  STATUSES,
  type FeedMessage,
} from './protocol';
import { alertMsg, figures, gatewayMsg, metricsMsg, monitorMsg, serviceState, snapshot, statusMsg } from './testdata';

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

describe('sources: probe and agent (issue 13)', () => {
  const probe = { ok: false, status_code: 503, error: 'status 503', apdex_t_ms: 100 };
  const host = {
    cores: [12.5, 80, 0, 100],
    load1: 1.5,
    load5: 0.9,
    load15: 0.4,
    disk_used_pct: 61.2,
    procs: 312,
    top: [{ name: 'postgres', pid: 812, cpu_pct: 140.5, mem_pct: 12.1 }],
  };
  const probeFigures = () => {
    const f: Record<string, unknown> = { ...figures(), apdex: 0.75, apdex_t_ms: 100 };
    delete f.cpu_pct;
    delete f.mem_pct;
    return f;
  };

  it('every alert name and source of the Rust types is known', () => {
    expect([...ALERT_NAMES].sort()).toEqual(['CERT_EXPIRING', 'HIGH_CPU', 'HIGH_ERROR_RATE', 'HIGH_LATENCY', 'HIGH_MEMORY', 'LOW_APDEX', 'SERVICE_DOWN']);
    expect([...SOURCES].sort()).toEqual(['agent', 'probe', 'simulator']);
    const m = roundTrip(alertMsg(1, { service: 'site', alert: 'CERT_EXPIRING', value: 3, threshold: 14 }));
    expect(m?.type === 'alert' && m.data.alert).toBe('CERT_EXPIRING');
  });

  it('a probe summary: no cpu/mem (absent, not 0), Apdex, the probe outcome, an empty health URL', () => {
    const m = roundTrip({ ...metricsMsg(1, { service: 'payments', health_url: '' }), data: { ...dataOf(metricsMsg(1, { service: 'payments', health_url: '' })), figures: probeFigures(), source: 'probe', probe } });
    expect(m?.type).toBe('metrics');
    if (m?.type !== 'metrics') return;
    expect('cpu_pct' in m.data.figures).toBe(false);
    expect('mem_pct' in m.data.figures).toBe(false);
    expect(m.data.figures.apdex).toBe(0.75);
    expect(m.data.source).toBe('probe');
    expect(m.data.probe).toEqual(probe);
    expect(m.data.health_url).toBe('');
  });

  it('an agent state in a snapshot keeps its host figures', () => {
    const s = { ...serviceState('web1'), source: 'agent', host };
    const m = roundTrip(snapshot(0, [s as never]));
    expect(m?.type === 'snapshot' && m.services[0]?.host).toEqual(host);
    expect(m?.type === 'snapshot' && m.services[0]?.source).toBe('agent');
  });

  it('source absent means a simulator (an older monitor); an unknown source is refused', () => {
    const old = roundTrip(metricsMsg(1, { service: 'auth' }));
    expect(old?.type === 'metrics' && 'source' in old.data).toBe(false);
    expect(old?.type === 'metrics' && 'probe' in old.data).toBe(false);
    const raw = { ...metricsMsg(1, { service: 'auth' }), data: { ...dataOf(metricsMsg(1, { service: 'auth' })), source: 'push' } };
    expect(roundTrip(raw)).toBeNull();
  });

  it('a null cpu/mem is None; a non-number or an Apdex outside [0, 1] refuses the figures', () => {
    const base = dataOf(metricsMsg(1, { service: 'a' }));
    const withFig = (f: object) => roundTrip({ seq: 1, type: 'metrics', data: { ...base, figures: { ...figures(), ...f } } });
    const nul = withFig({ cpu_pct: null, mem_pct: null });
    expect(nul?.type === 'metrics' && nul.data.figures.cpu_pct).toBeNull();
    expect(withFig({ cpu_pct: '5' })).toBeNull();
    expect(withFig({ apdex: 1.5 })).toBeNull();
    expect(withFig({ apdex: -0.1 })).toBeNull();
    expect(withFig({ apdex_t_ms: 0 })).toBeNull();
  });

  it('parses the probe and host parts strictly: bounded arrays, finite numbers, visible text', () => {
    expect(parseProbeResult(probe)).toEqual(probe);
    expect(parseProbeResult({ ok: true })).toEqual({ ok: true });
    expect(parseHostFigures(host)).toEqual(host);
    const badProbes = [
      { ok: 'yes' },
      { ok: true, status_code: 99 },
      { ok: true, status_code: 600 },
      { ok: true, status_code: 200.5 },
      { ok: false, error: '' },
      { ok: false, error: 'x'.repeat(65) },
      { ok: false, error: 'bad\u0007bell' },
      { ok: false, error: '\u202Eevil' },
      { ok: false, error: 7 },
      { ok: true, cert_warn_days: 4000 },
    ];
    for (const p of badProbes) expect(parseProbeResult(p), JSON.stringify(p)).toBeNull();
    expect(parseProbeResult({ ok: false, error: 'x'.repeat(64) })).not.toBeNull();
    const badHosts = [
      { ...host, cores: Array.from({ length: 513 }, () => 1) },
      { ...host, cores: [101] },
      { ...host, cores: [null] },
      { ...host, cores: 'all' },
      { ...host, load1: -1 },
      { ...host, load5: null },
      { ...host, load15: 1e9 },
      { ...host, disk_used_pct: 120 },
      { ...host, procs: -3 },
      { ...host, top: Array.from({ length: 6 }, (_, i) => ({ name: `p${i}`, pid: i, cpu_pct: 1, mem_pct: 1 })) },
      { ...host, top: [{ name: '', pid: 1, cpu_pct: 1, mem_pct: 1 }] },
      { ...host, top: [{ name: '\u200B\u200B', pid: 1, cpu_pct: 1, mem_pct: 1 }] },
      { ...host, top: [{ name: 'a\nb', pid: 1, cpu_pct: 1, mem_pct: 1 }] },
      { ...host, top: [{ name: 'x'.repeat(65), pid: 1, cpu_pct: 1, mem_pct: 1 }] },
      { ...host, top: [{ name: 'ok', pid: 1, cpu_pct: 1, mem_pct: 101 }] },
    ];
    for (const h of badHosts) expect(parseHostFigures(h), JSON.stringify(h).slice(0, 120)).toBeNull();
    expect(parseHostFigures({ ...host, cores: Array.from({ length: 512 }, () => 1) })).not.toBeNull();
    // A process name with markup is kept as is: it is text, shown as text.
    const html = '<img src=x onerror=alert(1)>';
    expect(parseHostFigures({ ...host, top: [{ name: html, pid: 1, cpu_pct: 1, mem_pct: 1 }] })?.top[0]?.name).toBe(html);
  });

  it('a malformed probe or host part is left out; the figures and status still arrive', () => {
    const base = dataOf(metricsMsg(1, { service: 'web1' }));
    const m = roundTrip({ seq: 1, type: 'metrics', data: { ...base, source: 'agent', host: { ...host, cores: [Number.MAX_VALUE, 'x'] } } });
    expect(m?.type).toBe('metrics');
    expect(m?.type === 'metrics' && 'host' in m.data).toBe(false);
    expect(m?.type === 'metrics' && m.data.figures.cpu_pct).toBe(20);
    const p = roundTrip({ seq: 1, type: 'metrics', data: { ...base, source: 'probe', probe: { ok: 'maybe' } } });
    expect(p?.type === 'metrics' && 'probe' in p.data).toBe(false);
  });
});

describe('targets (GET /api/targets)', () => {
  it('parses the list; malformed entries are skipped; anything else is refused', () => {
    const list = parseTargetList({
      targets: [
        { service: 'payments', kind: 'http', url: 'https://pay.example/health', interval_ms: 1000 },
        { service: 'db', kind: 'tcp', address: 'db:5432', expect_status: undefined },
        { service: 'odd', kind: 'icmp', address: 'x' },
      ],
    });
    expect(list?.map((t) => t.service)).toEqual(['payments', 'db']);
    expect(list?.[0]).toEqual({ service: 'payments', kind: 'http', url: 'https://pay.example/health', interval_ms: 1000 });
    expect(parseTarget({ kind: 'http', url: 'http://h/', expect_status: ['200-299', 404] })?.expect_status).toEqual(['200-299', 404]);
    expect(parseTargetList({})).toBeNull();
    expect(parseTargetList({ targets: 'x' })).toBeNull();
  });
});
