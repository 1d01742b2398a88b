import { describe, expect, it } from 'vitest';
import {
  announceStatusChanges,
  checkSeq,
  deriveMode,
  initialState,
  isMonitorFresh,
  lastSampleAgeMs,
  mergeHistory,
  monitorAgeMs,
  monitorExpiresAtMs,
  monitorTimeoutMs,
  newSeqTracker,
  reduce,
  reduceBatch,
  SERIES_POINTS,
  TIMELINE_MAX,
  type DashboardState,
  type SeqTracker,
} from './reducer';
import type { FeedMessage } from './protocol';
import { alertMsg, figures, gatewayMsg, heartbeat, metricsMsg, monitorMsg, serviceState, snapshot, statusMsg, T0 } from './testdata';

const NOW = 5_000_000; // browser clock, deliberately far from the server's T0

function apply(msgs: FeedMessage[], state: DashboardState = initialState(), now = NOW): DashboardState {
  return msgs.reduce((s, m) => reduce(s, m, now), state);
}

describe('snapshot', () => {
  it('replaces the state', () => {
    const first = apply([snapshot(0, [serviceState('a'), serviceState('b', { status: 'DOWN' })])]);
    expect([...first.services.keys()].sort()).toEqual(['a', 'b']);
    expect(first.order).toEqual(['b', 'a']);
    expect(first.counts).toEqual({ DOWN: 1, DEGRADED: 0, UNKNOWN: 0, HEALTHY: 1 });
    expect(first.gateway?.nats_connected).toBe(true);

    const second = reduce(first, snapshot(5, [serviceState('c', { status: 'DEGRADED' })], { resync: true }), NOW + 10);
    expect([...second.services.keys()]).toEqual(['c']);
    expect(second.counts).toEqual({ DOWN: 0, DEGRADED: 1, UNKNOWN: 0, HEALTHY: 0 });
    expect(second.alerts).toEqual([]);
    expect(second.snapshotLocalMs).toBe(NOW + 10);
  });

  it('carries the alerts of each service', () => {
    const s = apply([
      snapshot(0, [
        serviceState('a', {
          status: 'DEGRADED',
          alerts: [{ id: 'a:HIGH_CPU:1', alert: 'HIGH_CPU', value: 91, threshold: 85, since_ms: T0 - 5000 }],
        }),
      ]),
    ]);
    expect(s.alerts).toEqual([{ id: 'a:HIGH_CPU:1', alert: 'HIGH_CPU', value: 91, threshold: 85, since_ms: T0 - 5000, service: 'a' }]);
  });

  it('keeps the sparkline history of services still present', () => {
    let s = apply([snapshot(0, [serviceState('a'), serviceState('b')]), metricsMsg(1, { service: 'a' }), metricsMsg(2, { service: 'b' })]);
    s = reduce(s, snapshot(3, [serviceState('a')], { resync: true }), NOW);
    expect(s.services.get('a')?.series.cpu).toHaveLength(1);
    expect(s.services.has('b')).toBe(false);
  });

  it('sorts trouble first, then by name', () => {
    const s = apply([
      snapshot(0, [
        serviceState('zeta'),
        serviceState('alpha'),
        serviceState('mid', { status: 'UNKNOWN' }),
        serviceState('beta', { status: 'DEGRADED' }),
        serviceState('omega', { status: 'DOWN' }),
        serviceState('delta', { status: 'DOWN' }),
      ]),
    ]);
    expect(s.order).toEqual(['delta', 'omega', 'beta', 'mid', 'alpha', 'zeta']);
  });
});

describe('deltas', () => {
  const base = () => apply([snapshot(0, [serviceState('a'), serviceState('b')])]);

  it('a status change updates status, since and reasons, and the order', () => {
    const s = reduce(base(), statusMsg(1, { service: 'b', status: 'DOWN', at_ms: T0 + 2000, reasons: ['stopped'] }), NOW);
    const b = s.services.get('b');
    expect(b?.status).toBe('DOWN');
    expect(b?.since_ms).toBe(T0 + 2000);
    expect(b?.reasons).toEqual(['stopped']);
    expect(s.order).toEqual(['b', 'a']);
    expect(s.counts.DOWN).toBe(1);
    expect(s.timeline[0]?.kind).toBe('status');
  });

  it('leaves unchanged services as the same objects', () => {
    const before = base();
    const after = reduce(before, statusMsg(1, { service: 'b' }), NOW);
    expect(after.services.get('a')).toBe(before.services.get('a'));
    expect(after.services.get('b')).not.toBe(before.services.get('b'));
    // and the old state is untouched
    expect(before.services.get('b')?.status).toBe('HEALTHY');
  });

  it('ignores a status change older than the current status', () => {
    const s = reduce(base(), statusMsg(1, { service: 'a', status: 'DOWN', at_ms: T0 - 120_000 }), NOW);
    expect(s.services.get('a')?.status).toBe('HEALTHY');
  });

  it('alerts are added and removed by id', () => {
    let s = base();
    s = reduce(s, alertMsg(1, { service: 'a', alert: 'HIGH_CPU', since_ms: T0 + 1, value: 90, threshold: 85 }), NOW);
    s = reduce(s, alertMsg(2, { service: 'a', alert: 'HIGH_MEMORY', since_ms: T0 + 2 }), NOW);
    s = reduce(s, alertMsg(3, { service: 'b', alert: 'SERVICE_DOWN', since_ms: T0 + 3 }), NOW);
    expect(s.alerts.map((a) => a.id)).toEqual(['b:SERVICE_DOWN:1763900000003', 'a:HIGH_MEMORY:1763900000002', 'a:HIGH_CPU:1763900000001']);
    // the same firing again does not duplicate it
    s = reduce(s, alertMsg(4, { service: 'a', alert: 'HIGH_CPU', since_ms: T0 + 1, value: 95 }), NOW);
    expect(s.services.get('a')?.alerts.filter((a) => a.alert === 'HIGH_CPU')).toHaveLength(1);
    expect(s.services.get('a')?.alerts.find((a) => a.alert === 'HIGH_CPU')?.value).toBe(95);
    s = reduce(s, alertMsg(5, { service: 'a', alert: 'HIGH_CPU', since_ms: T0 + 1, state: 'resolved' }), NOW);
    expect(s.alerts.map((a) => a.id)).toEqual(['b:SERVICE_DOWN:1763900000003', 'a:HIGH_MEMORY:1763900000002']);
    // resolving an unknown id changes nothing but the timeline
    const again = reduce(s, alertMsg(6, { service: 'a', alert: 'HIGH_LATENCY', state: 'resolved' }), NOW);
    expect(again.services).toBe(s.services);
    expect(again.alerts).toBe(s.alerts);
  });

  it('metrics update figures and append to a bounded series', () => {
    let s = base();
    for (let i = 1; i <= SERIES_POINTS + 30; i++) {
      s = reduce(s, metricsMsg(i, { service: 'a', at_ms: T0 + i * 1000, figures: { ...serviceState('a').figures, cpu_pct: i % 100 } }), NOW);
    }
    const a = s.services.get('a');
    expect(a?.series.cpu).toHaveLength(SERIES_POINTS);
    expect(a?.series.t).toHaveLength(SERIES_POINTS);
    expect(a?.series.cpu.at(-1)).toBe((SERIES_POINTS + 30) % 100);
    expect(a?.figures?.cpu_pct).toBe((SERIES_POINTS + 30) % 100);
    expect(a?.summary_at_ms).toBe(T0 + (SERIES_POINTS + 30) * 1000);
  });

  it('a summary over an empty window (a just-restarted monitor) adds no p95 point', () => {
    const empty = { ...serviceState('a').figures, samples: 0, latency_p95_ms: 0 };
    let s = reduce(base(), metricsMsg(1, { service: 'a', at_ms: T0 + 5000, figures: empty }), NOW);
    s = reduce(s, metricsMsg(2, { service: 'a', at_ms: T0 + 6000, figures: { ...empty, samples: 1, latency_p95_ms: 40 } }), NOW);
    const series = s.services.get('a')?.series;
    expect(series?.p95).toEqual([Number.NaN, 40]);
    expect(series?.cpu).toHaveLength(2);
  });

  it('a duplicate or older summary is ignored', () => {
    let s = reduce(base(), metricsMsg(1, { service: 'a', at_ms: T0 + 5000 }), NOW);
    const once = s;
    s = reduce(s, metricsMsg(2, { service: 'a', at_ms: T0 + 5000 }), NOW);
    s = reduce(s, metricsMsg(3, { service: 'a', at_ms: T0 + 4000 }), NOW);
    expect(s.services.get('a')).toBe(once.services.get('a'));
    expect(s.services.get('a')?.series.cpu).toHaveLength(1);
  });

  it('a summary with a newer status moves the service', () => {
    const s = reduce(base(), metricsMsg(1, { service: 'b', status: 'DEGRADED', at_ms: T0 + 5000 }), NOW);
    expect(s.services.get('b')?.status).toBe('DEGRADED');
    expect(s.order[0]).toBe('b');
  });

  it('events for an unknown service create it', () => {
    let s = reduce(base(), metricsMsg(1, { service: 'new' }), NOW);
    expect(s.services.get('new')?.figures).not.toBeNull();
    s = reduce(s, statusMsg(2, { service: 'other', status: 'DOWN' }), NOW);
    expect(s.order[0]).toBe('other');
  });

  it('monitor and gateway messages update their parts', () => {
    let s = reduce(base(), monitorMsg(1, { at_ms: T0 + 3000, samples_per_s: 7 }), NOW + 3000);
    expect(s.monitor?.samples_per_s).toBe(7);
    expect(s.monitorSeenLocalMs).toBe(NOW + 3000);
    expect(s.clockOffsetMs).toBe(T0 - NOW);
    s = reduce(s, gatewayMsg(2, false), NOW);
    expect(s.gateway?.nats_connected).toBe(false);
  });

  it('a batch equals the same messages one by one', () => {
    const msgs = [
      snapshot(0, [serviceState('a'), serviceState('b')]),
      metricsMsg(1, { service: 'a' }),
      statusMsg(2, { service: 'b' }),
      alertMsg(3, { service: 'b' }),
      monitorMsg(4),
    ];
    const one = apply(msgs);
    const batch = reduceBatch(initialState(), msgs.map((msg) => ({ msg, atMs: NOW })));
    expect(batch).toEqual(one);
  });
});

describe('RETIRED', () => {
  const withAlert = () =>
    apply([
      snapshot(0, [
        serviceState('a'),
        serviceState('gone', {
          status: 'DOWN',
          since_ms: T0 - 5000,
          alerts: [{ id: 'gone:SERVICE_DOWN:1', alert: 'SERVICE_DOWN', value: 3.1, threshold: 3, since_ms: T0 - 5000 }],
        }),
      ]),
      metricsMsg(1, { service: 'gone', status: 'DOWN', at_ms: T0 - 4000 }),
    ]);

  it('removes the service, its alerts, its count and its series; the timeline keeps the event', () => {
    const before = withAlert();
    expect(before.counts.DOWN).toBe(1);
    expect(before.alerts).toHaveLength(1);
    const s = reduce(before, statusMsg(2, { service: 'gone', status: 'RETIRED', previous: 'DOWN', reasons: ['retired'] }), NOW);
    expect([...s.services.keys()]).toEqual(['a']);
    expect(s.order).toEqual(['a']);
    expect(s.counts).toEqual({ DOWN: 0, DEGRADED: 0, UNKNOWN: 0, HEALTHY: 1 });
    expect(s.alerts).toEqual([]);
    expect(s.timeline[0]).toMatchObject({ kind: 'status', data: { service: 'gone', status: 'RETIRED' } });
    expect(s.services.get('a')).toBe(before.services.get('a')); // the others untouched
  });

  it('the resolves that follow (reason "retired") do not bring the card back; a new sample does', () => {
    let s = reduce(withAlert(), statusMsg(2, { service: 'gone', status: 'RETIRED', previous: 'DOWN', reasons: ['retired'] }), NOW);
    s = reduce(s, alertMsg(3, { service: 'gone', state: 'resolved', since_ms: 1, at_ms: T0 + 2000, reason: 'retired' }), NOW);
    expect(s.services.has('gone')).toBe(false);
    expect(s.timeline[0]).toMatchObject({ kind: 'alert', data: { state: 'resolved', reason: 'retired' } });
    // It publishes again: back as new.
    s = reduce(s, metricsMsg(4, { service: 'gone', at_ms: T0 + 5000 }), NOW);
    expect(s.services.get('gone')?.status).toBe('HEALTHY');
    expect(s.services.get('gone')?.series.cpu).toHaveLength(1);
  });

  it('a RETIRED older than the current status, or for an unknown service, changes nothing', () => {
    const before = withAlert();
    const old = reduce(before, statusMsg(2, { service: 'gone', status: 'RETIRED', at_ms: T0 - 60_000 }), NOW);
    expect(old.services.has('gone')).toBe(true);
    const unknown = reduce(before, statusMsg(2, { service: 'never', status: 'RETIRED' }), NOW);
    expect(unknown.services).toBe(before.services);
  });

  it('a snapshot entry with status RETIRED is not shown', () => {
    const s = apply([snapshot(0, [serviceState('a'), serviceState('x', { status: 'RETIRED' })])]);
    expect([...s.services.keys()]).toEqual(['a']);
  });

  it('in a batch, as one by one', () => {
    const msgs = [
      statusMsg(2, { service: 'gone', status: 'RETIRED', previous: 'DOWN', reasons: ['retired'] }),
      alertMsg(3, { service: 'gone', state: 'resolved', since_ms: 1, at_ms: T0 + 2000, reason: 'retired' }),
    ];
    const batched = reduceBatch(withAlert(), msgs.map((msg) => ({ msg, atMs: NOW })));
    const single = apply(msgs, withAlert());
    expect([...batched.services.keys()]).toEqual([...single.services.keys()]);
    expect(batched.counts).toEqual(single.counts);
    expect(batched.alerts).toEqual(single.alerts);
  });
});

describe('timeline', () => {
  it('merges history without duplicates, newest first, bounded', () => {
    let s = apply([snapshot(0, [serviceState('a')]), statusMsg(1, { service: 'a', at_ms: T0 + 5000 })]);
    const history = [
      { kind: 'status' as const, stream_seq: 3, data: { service: 'a', status: 'DOWN' as const, previous: 'HEALTHY' as const, at_ms: T0 + 5000, reasons: ['stopped'] } },
      { kind: 'alert' as const, stream_seq: 2, data: { id: 'a:HIGH_CPU:1', service: 'a', alert: 'HIGH_CPU' as const, state: 'firing' as const, value: 1, threshold: 1, since_ms: 1, at_ms: T0 + 100 } },
    ];
    s = mergeHistory(s, history);
    expect(s.timeline.map((i) => i.kind)).toEqual(['status', 'alert']);
    expect(mergeHistory(s, history)).toBe(s);

    const many = Array.from({ length: TIMELINE_MAX + 50 }, (_, i) => ({
      kind: 'status' as const,
      stream_seq: i,
      data: { service: 'a', status: 'DOWN' as const, previous: 'HEALTHY' as const, at_ms: T0 + i, reasons: [] },
    }));
    s = mergeHistory(s, many);
    expect(s.timeline).toHaveLength(TIMELINE_MAX);
    expect(s.timeline[0]?.at_ms).toBe(T0 + 5000);
  });
});

describe('checkSeq', () => {
  const run = (seqs: [number, string][]) => {
    let t: SeqTracker = newSeqTracker();
    return seqs.map(([seq, type]) => {
      const r = checkSeq(t, { seq, type });
      t = r.next;
      return r.verdict;
    });
  };

  it('applies in-order messages after the first snapshot', () => {
    expect(run([[0, 'snapshot'], [1, 'metrics'], [2, 'status']])).toEqual(['apply', 'apply', 'apply']);
  });

  it('a gap asks for a resync and ignores everything until the snapshot', () => {
    expect(
      run([
        [0, 'snapshot'],
        [1, 'metrics'],
        [3, 'metrics'], // 2 is missing
        [4, 'status'],
        [5, 'alert'],
        [6, 'snapshot'], // the resync snapshot
        [7, 'metrics'],
      ]),
    ).toEqual(['apply', 'apply', 'resync', 'ignore', 'ignore', 'apply', 'apply']);
  });

  it('duplicates and old messages are ignored', () => {
    expect(run([[0, 'snapshot'], [1, 'metrics'], [1, 'metrics'], [0, 'status'], [2, 'metrics']])).toEqual([
      'apply',
      'apply',
      'ignore',
      'ignore',
      'apply',
    ]);
    expect(run([[0, 'snapshot'], [1, 'metrics'], [0, 'snapshot']])).toEqual(['apply', 'apply', 'ignore']);
  });

  it('a first message that is not a snapshot asks for one', () => {
    expect(run([[0, 'metrics'], [1, 'metrics'], [2, 'snapshot'], [3, 'metrics']])).toEqual(['resync', 'ignore', 'apply', 'apply']);
  });

  it('a server-initiated resync snapshot is applied even after a gap', () => {
    expect(run([[0, 'snapshot'], [1, 'metrics'], [9, 'snapshot'], [10, 'metrics']])).toEqual(['apply', 'apply', 'apply', 'apply']);
  });
});

describe('staleness', () => {
  const withHeartbeat = (seenAt: number) => reduce(initialState(), monitorMsg(0, { at_ms: T0 }), seenAt);

  it('the heartbeat is fresh up to the timeout and stale after it', () => {
    const s = withHeartbeat(NOW);
    expect(monitorTimeoutMs(s.monitor)).toBe(3500);
    expect(isMonitorFresh(s, NOW)).toBe(true);
    expect(isMonitorFresh(s, NOW + 3499)).toBe(true);
    expect(isMonitorFresh(s, NOW + 3500)).toBe(true);
    expect(isMonitorFresh(s, NOW + 3501)).toBe(false);
    expect(monitorExpiresAtMs(s)).toBe(NOW + 3500);
    expect(monitorAgeMs(s, NOW + 1200)).toBe(1200);
  });

  it('no heartbeat means not fresh', () => {
    expect(isMonitorFresh(initialState(), NOW)).toBe(false);
    expect(monitorAgeMs(initialState(), NOW)).toBeNull();
  });

  it('a slower monitor gets a longer timeout', () => {
    expect(monitorTimeoutMs(heartbeat({ interval_ms: 2000 }))).toBe(7000);
  });

  it('a snapshot dates the heartbeat by gateway time differences only (clock skew does not matter)', () => {
    // The gateway's clock is an hour ahead of the browser's; the heartbeat was seen 1 s before
    // the snapshot was sent.
    const skew = 3_600_000;
    const gwNow = NOW + skew;
    const s = reduce(initialState(), snapshot(0, [], { at_ms: gwNow, monitor_seen_ms: gwNow - 1000, monitor: heartbeat({ at_ms: gwNow - 1000 }) }), NOW);
    expect(s.monitorSeenLocalMs).toBe(NOW - 1000);
    expect(isMonitorFresh(s, NOW + 2500)).toBe(true);
    expect(isMonitorFresh(s, NOW + 2501)).toBe(false);
    // a snapshot without a heartbeat, from KV (the monitor did not answer): unknown, not fresh
    const kv = { nats_connected: true, at_ms: gwNow - 100, source: 'kv', live: true };
    const none = reduce(s, snapshot(1, [], { at_ms: gwNow, gateway: kv, monitor: null, monitor_seen_ms: null, resync: true }), NOW);
    expect(none.monitorSeenLocalMs).toBeNull();
    expect(isMonitorFresh(none, NOW)).toBe(false);
  });

  it('a just-started gateway with no heartbeat yet: the monitor answering its snapshot request is a sign of life', () => {
    // The gateway synced from the monitor 300 ms before sending this snapshot and has not seen a
    // heartbeat yet (restarted gateway): fresh for the timeout, counted from that answer.
    const skew = 3_600_000;
    const gwNow = NOW + skew;
    const gateway = { nats_connected: true, at_ms: gwNow - 300, source: 'monitor', live: true };
    const s = reduce(initialState(), snapshot(0, [], { at_ms: gwNow, gateway, monitor: null, monitor_seen_ms: null }), NOW);
    expect(s.monitor).toBeNull();
    expect(s.monitorSeenLocalMs).toBe(NOW - 300);
    expect(isMonitorFresh(s, NOW + 3200)).toBe(true);
    expect(isMonitorFresh(s, NOW + 3201)).toBe(false);
    // ... but an old sync (the monitor answered long ago, no heartbeat since) is not fresh
    const old = { ...gateway, at_ms: gwNow - 60_000 };
    const s2 = reduce(initialState(), snapshot(0, [], { at_ms: gwNow, gateway: old, monitor: null, monitor_seen_ms: null }), NOW);
    expect(isMonitorFresh(s2, NOW)).toBe(false);
  });

  it('sample ages use the server clock offset', () => {
    const skew = -7_000_000; // server behind the browser
    const s = reduce(initialState(), snapshot(0, [serviceState('a', { last_seen_ms: NOW + skew - 2000 })], { at_ms: NOW + skew, monitor_seen_ms: NOW + skew, monitor: heartbeat({ at_ms: NOW + skew }) }), NOW);
    const a = s.services.get('a')!;
    expect(lastSampleAgeMs(s, a, NOW)).toBe(2000);
    expect(lastSampleAgeMs(s, a, NOW + 3000)).toBe(5000);
  });
});

describe('deriveMode', () => {
  const base = { wsOpen: true, hasSnapshot: true, natsConnected: true, feedLive: true, monitorFresh: true, everFailed: false };
  it('covers each state', () => {
    expect(deriveMode(base)).toBe('live');
    expect(deriveMode({ ...base, monitorFresh: false })).toBe('monitor-down');
    expect(deriveMode({ ...base, natsConnected: false })).toBe('fallback');
    // The gateway's feed is broken although it has NATS: never live.
    expect(deriveMode({ ...base, feedLive: false })).toBe('fallback');
    expect(deriveMode({ ...base, feedLive: false, monitorFresh: false })).toBe('fallback');
    expect(deriveMode({ ...base, feedLive: null })).toBe('live');
    expect(deriveMode({ ...base, wsOpen: false, hasSnapshot: false })).toBe('connecting');
    expect(deriveMode({ ...base, wsOpen: false, hasSnapshot: false, everFailed: true })).toBe('fallback');
    expect(deriveMode({ ...base, hasSnapshot: false, everFailed: true })).toBe('fallback');
    expect(deriveMode({ ...base, hasSnapshot: false })).toBe('connecting');
  });
});

describe('announcements', () => {
  it('says who changed and why', () => {
    expect(announceStatusChanges([{ service: 'billing', status: 'DOWN', previous: 'HEALTHY', at_ms: 1, reasons: ['stopped'] }])).toBe(
      'billing is DOWN (stopped).',
    );
    expect(announceStatusChanges([])).toBe('');
    const many = ['a', 'b', 'c', 'd'].map((service, i) => ({
      service,
      status: i === 0 ? ('HEALTHY' as const) : ('DOWN' as const),
      previous: 'HEALTHY' as const,
      at_ms: 1,
      reasons: [],
    }));
    expect(announceStatusChanges(many)).toBe('4 services changed status: 3 DOWN, 1 HEALTHY.');
    const retired = many.map((c) => ({ ...c, status: 'RETIRED' as const }));
    expect(announceStatusChanges(retired)).toBe('4 services changed status: 4 RETIRED.');
  });
});

describe('sources (probe, agent)', () => {
  const probeFigures = () => {
    const f = { ...figures(), apdex: 0.9, apdex_t_ms: 100 };
    delete f.cpu_pct;
    delete f.mem_pct;
    return f;
  };
  const host = { cores: [10, 20], load1: 0.5, load5: 0.4, load15: 0.3, procs: 90, top: [{ name: 'nginx', pid: 7, cpu_pct: 3, mem_pct: 1 }] };

  it('a probe summary: source and outcome kept, a missing cpu/mem is NaN in the series (not 0)', () => {
    let s = apply([snapshot(0, [])]);
    s = reduce(s, metricsMsg(1, { service: 'pay', health_url: '', figures: probeFigures(), source: 'probe', probe: { ok: true, status_code: 200 } }), NOW);
    const v = s.services.get('pay')!;
    expect(v.source).toBe('probe');
    expect(v.probe).toEqual({ ok: true, status_code: 200 });
    expect(v.host).toBeNull();
    expect(v.figures?.cpu_pct).toBeUndefined();
    expect(v.figures?.apdex).toBe(0.9);
    expect(v.series.cpu).toHaveLength(1);
    expect(Number.isNaN(v.series.cpu[0])).toBe(true);
    expect(Number.isNaN(v.series.mem[0])).toBe(true);
    // The next probe failed: the card follows it.
    s = reduce(s, metricsMsg(2, { service: 'pay', at_ms: T0 + 2000, health_url: '', figures: probeFigures(), source: 'probe', probe: { ok: false, error: 'connect refused' } }), NOW);
    expect(s.services.get('pay')?.probe).toEqual({ ok: false, error: 'connect refused' });
  });

  it('an agent state from a snapshot keeps its host figures; a simulator has neither part', () => {
    const s = apply([snapshot(0, [serviceState('web1', { source: 'agent', host }), serviceState('auth')])]);
    expect(s.services.get('web1')).toMatchObject({ source: 'agent', host, probe: null });
    expect(s.services.get('auth')).toMatchObject({ source: 'simulator', host: null, probe: null });
  });

  it('a removed target: RETIRED removes the probe card, and its resolves do not bring it back', () => {
    let s = apply([
      snapshot(0, [serviceState('pay', { source: 'probe', probe: { ok: false, error: 'connect refused' }, status: 'DOWN', health_url: '' })]),
      alertMsg(1, { service: 'pay' }),
    ]);
    expect(s.alerts).toHaveLength(1);
    s = apply([statusMsg(2, { service: 'pay', status: 'RETIRED', previous: 'DOWN', at_ms: T0 + 5000, reasons: ['retired'] })], s);
    expect(s.services.has('pay')).toBe(false);
    expect(s.order).toEqual([]);
    expect(s.alerts).toEqual([]);
    s = apply([alertMsg(3, { service: 'pay', state: 'resolved', at_ms: T0 + 5001, reason: 'retired' })], s);
    expect(s.services.has('pay')).toBe(false);
  });
});
