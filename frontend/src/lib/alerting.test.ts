import { describe, expect, it } from 'vitest';
import { alertingRequest, alertMarks, describeNotification, describeRootCause, rootCauses, silenceActive, silenceServiceRequest } from './alerting';
import { AlertingApi, InboxApi, INBOX_REFRESH_MS, type AlertingDeps } from './alerting.svelte';
import { feedMessageFromValue, parseInboxList, parseSilenceList, type ActiveAlert, type Silence } from './protocol';
import { initialState, reduce } from './reducer';
import { alertMsg, serviceState, snapshot, T0 } from './testdata';

const NOW = T0 + 10_000;

function alert(over: Partial<ActiveAlert> = {}): ActiveAlert {
  return { id: 'a:SERVICE_DOWN:1', alert: 'SERVICE_DOWN', value: 3, threshold: 3, since_ms: 1, ...over };
}

describe('marks', () => {
  it('are shown as text in a fixed order', () => {
    expect(alertMarks(alert())).toEqual([]);
    const all = alertMarks(alert({ severity: 'critical', silenced: true, inhibited_by: 'auth', acked_by: 'ann' }));
    expect(all.map((m) => m.text)).toEqual(['critical', 'silenced', 'inhibited by auth', 'acked by ann']);
    expect(alertMarks(alert({ silenced: false, acked_by: null })).map((m) => m.kind)).toEqual([]);
  });

  it('reach the state from a snapshot and are replaced by update events', () => {
    let s = reduce(
      initialState(),
      snapshot(0, [serviceState('a', { status: 'DOWN', alerts: [alert({ id: 'a:SERVICE_DOWN:1', severity: 'critical', inhibited_by: 'auth' })] })]),
      NOW,
    );
    expect(s.alerts[0]!.inhibited_by).toBe('auth');
    expect(s.alerts[0]!.severity).toBe('critical');
    const id = 'a:SERVICE_DOWN:1';
    const before = s;
    // An update event: same id, marks changed; the alert stays one, in place.
    s = reduce(s, alertMsg(1, { service: 'a', id, since_ms: 1, value: 3, threshold: 3, severity: 'critical', silenced: true, update: 'silenced' }), NOW);
    expect(s.services.get('a')?.alerts).toHaveLength(1);
    expect(s.alerts[0]!).toMatchObject({ id, silenced: true, severity: 'critical' });
    expect(s.alerts[0]!.inhibited_by).toBeUndefined();
    expect(before.alerts[0]!.silenced).toBeUndefined(); // the old state is not mutated
    // The same marks again change nothing (same objects).
    const again = reduce(s, alertMsg(2, { service: 'a', id, since_ms: 1, value: 3, threshold: 3, severity: 'critical', silenced: true, update: 'silenced' }), NOW);
    expect(again.services).toBe(s.services);
    s = reduce(s, alertMsg(3, { service: 'a', id, since_ms: 1, value: 3, threshold: 3, severity: 'critical', silenced: true, acked_by: 'ann', update: 'acked' }), NOW);
    expect(alertMarks(s.alerts[0]!).map((m) => m.text)).toEqual(['critical', 'silenced', 'acked by ann']);
    s = reduce(s, alertMsg(4, { service: 'a', id, since_ms: 1, state: 'resolved' }), NOW);
    expect(s.alerts).toEqual([]);
  });

  it('are parsed from the feed, and a bad one costs only the message', () => {
    const frame = (data: object) => feedMessageFromValue({ seq: 1, type: 'alert', data });
    const base = { id: 'a:SERVICE_DOWN:1', service: 'a', alert: 'SERVICE_DOWN', state: 'firing', value: 3, threshold: 3, since_ms: 1, at_ms: 1 };
    const m = frame({ ...base, severity: 'critical', inhibited_by: 'auth', silenced: true, acked_by: 'ann', update: 'acked' });
    expect(m?.type === 'alert' && m.data).toMatchObject({ severity: 'critical', inhibited_by: 'auth', silenced: true, acked_by: 'ann', update: 'acked' });
    const plain = frame(base);
    expect(plain?.type === 'alert' && 'silenced' in plain.data).toBe(false);
    expect(frame({ ...base, silenced: 'yes' })).toBeNull();
    expect(frame({ ...base, update: 'exploded' })).toBeNull();
    expect(frame({ ...base, acked_by: 'a\u202Eb' })).toBeNull();
  });
});

describe('root causes', () => {
  it('group the services whose alerts an outage explains under it', () => {
    let s = reduce(
      initialState(),
      snapshot(0, [
        serviceState('auth', { status: 'DOWN', alerts: [alert({ id: 'auth:SERVICE_DOWN:1' })] }),
        serviceState('billing', { status: 'DOWN', alerts: [alert({ id: 'billing:SERVICE_DOWN:1', inhibited_by: 'auth' })] }),
        serviceState('notifications', { status: 'DEGRADED', alerts: [alert({ id: 'n:HIGH_CPU:1', alert: 'HIGH_CPU', inhibited_by: 'auth' }), alert({ id: 'n:HIGH_MEMORY:1', alert: 'HIGH_MEMORY', inhibited_by: 'auth' })] }),
        serviceState('analytics', { status: 'DOWN', alerts: [alert({ id: 'analytics:SERVICE_DOWN:1', inhibited_by: 'db' })] }),
        serviceState('web'),
      ]),
      NOW,
    );
    const causes = rootCauses(s.services);
    expect(causes).toEqual([
      { root: 'auth', status: 'DOWN', dependants: ['billing', 'notifications'] },
      { root: 'db', status: 'UNKNOWN', dependants: ['analytics'] },
    ]);
    expect(describeRootCause(causes[0]!)).toBe('auth DOWN, 2 dependants affected');
    expect(describeRootCause(causes[1]!)).toBe('db UNKNOWN, 1 dependant affected');
    // The inhibition lifted (an "uninhibited" update): the group goes.
    s = reduce(s, alertMsg(1, { service: 'billing', id: 'billing:SERVICE_DOWN:1', since_ms: 1, value: 3, threshold: 3, update: 'uninhibited' }), NOW);
    expect(rootCauses(s.services)[0]!.dependants).toEqual(['notifications']);
  });
});

describe('silences and the inbox', () => {
  const silence: Silence = { id: '00ab', matchers: { service: 'pay' }, starts_ms: 100, ends_ms: 200, created_by: 'dashboard', comment: '' };

  it('the silence list parses; malformed entries are dropped', () => {
    const list = parseSilenceList({ ok: true, silences: [silence, { ...silence, id: 7 }, { ...silence, id: 'x', matchers: { service: 'a', alert: 'HIGH_CPU' } }] });
    expect(list?.silences.map((s) => s.id)).toEqual(['00ab', 'x']);
    expect(parseSilenceList({ ok: true })).toBeNull();
    const later = { ...silence, starts_ms: 10_000, ends_ms: 20_000 };
    expect(silenceActive(later, 15_000)).toBe(true);
    expect(silenceActive(later, 9_000)).toBe(true); // within the clock skew: not "starts in 1 s"
    expect(silenceActive(later, 5_000)).toBe(false);
    expect(silenceActive(later, 20_000)).toBe(false);
  });

  it('the card action asks for one hour of every alert of the service', () => {
    expect(silenceServiceRequest('auth')).toEqual({ matchers: { service: 'auth' }, for_s: 3600, created_by: 'dashboard', comment: 'silenced from the dashboard for 1 h' });
  });

  it('writes carry the operator token as a bearer, never in the URL', () => {
    const r = alertingRequest({ op: 'ack', id: 'a:SERVICE_DOWN:1', by: 'ann' }, '', 'view', 'op-secret');
    expect(r.url).toBe('/api/alerts/a%3ASERVICE_DOWN%3A1/ack?token=view');
    expect(r.init.method).toBe('POST');
    expect((r.init.headers as Record<string, string>).Authorization).toBe('Bearer op-secret');
    expect(JSON.parse(r.init.body as string)).toEqual({ by: 'ann' });
    const del = alertingRequest({ op: 'expire-silence', id: '00ab' }, '', null, 'op');
    expect([del.url, del.init.method]).toEqual(['/api/silences/00ab', 'DELETE']);
    const list = alertingRequest({ op: 'list-silences' }, '', null, 'op');
    expect((list.init.headers as Record<string, string>).Authorization).toBeUndefined();
    expect(alertingRequest({ op: 'inbox' }, 'http://g', null, null).url).toBe('http://g/api/inbox');
  });

  it('inbox notifications parse and read as text', () => {
    const body = {
      ok: true,
      received: 3,
      kept: 200,
      notifications: [
        {
          received_ms: 5,
          receiver: 'inbox',
          status: 'firing',
          group_key: 'k',
          truncated: 0,
          alerts: [{ status: 'firing', alertname: 'SERVICE_DOWN', service: 'auth', severity: 'critical', vitals_id: 'auth:SERVICE_DOWN:1', summary: 'auth is DOWN', acked_by: 'ann', starts_at: '', ends_at: '' }],
        },
        { received_ms: 'x' },
      ],
    };
    const list = parseInboxList(body);
    expect(list?.received).toBe(3);
    expect(list?.notifications).toHaveLength(1);
    expect(describeNotification(list!.notifications[0]!)).toBe('inbox: FIRING: SERVICE_DOWN auth firing critical acked by ann');
    expect(parseInboxList({ notifications: 'no' })).toBeNull();
  });
});

interface Call {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: unknown;
}

function deps(reply: (c: Call) => { status: number; body: unknown }, token: string | null = 'op') {
  const calls: Call[] = [];
  const timers: (() => void)[] = [];
  const d: AlertingDeps = {
    fetch: (async (url: string, init: RequestInit = {}) => {
      const c: Call = { url: String(url), method: init.method ?? 'GET', headers: { ...(init.headers as Record<string, string>) }, body: typeof init.body === 'string' ? JSON.parse(init.body) : undefined };
      calls.push(c);
      const r = reply(c);
      return new Response(JSON.stringify(r.body), { status: r.status });
    }) as typeof fetch,
    operatorToken: () => token,
    setInterval: (fn) => {
      timers.push(fn);
      return timers.length;
    },
    clearInterval: (h) => {
      timers[(h as number) - 1] = () => {};
    },
  };
  return { d, calls, timers };
}

const settle = () => new Promise<void>((r) => setTimeout(r, 0));

describe('AlertingApi', () => {
  it('silences, expires and acks with the token, and refreshes the list after a change', async () => {
    const silences: Silence[] = [];
    const { d, calls } = deps((c) => {
      if (c.method === 'GET') return { status: 200, body: { ok: true, silences } };
      if (c.url === '/api/silences') {
        silences.push({ id: '01', matchers: { service: 'auth' }, starts_ms: 1, ends_ms: 2, created_by: 'ann', comment: '' });
        return { status: 201, body: { ok: true, id: '01' } };
      }
      if (c.url === '/api/silences/01') return { status: 200, body: { ok: true, id: '01' } };
      if (c.url.endsWith('/ack')) return { status: 404, body: { error: 'no such firing alert' } };
      return { status: 500, body: {} };
    });
    const api = new AlertingApi({ apiBase: '', viewerToken: null, actor: 'ann' }, d);
    const r = await api.silenceService('auth');
    expect(r).toEqual({ ok: true, value: '01' });
    expect(calls[0]).toMatchObject({ method: 'POST', headers: { Authorization: 'Bearer op' }, body: { matchers: { service: 'auth' }, for_s: 3600, created_by: 'ann' } });
    await settle();
    expect(api.silences?.map((s) => s.id)).toEqual(['01']);
    expect((await api.expire('01')).ok).toBe(true);
    const ack = await api.ack('a:SERVICE_DOWN:1');
    expect(ack.ok).toBe(false);
    expect(!ack.ok && ack.error).toMatch(/no such firing alert/);
    expect(calls.find((c) => c.url.endsWith('/ack'))?.body).toEqual({ by: 'ann' });
  });

  it('says why a write was refused, and writes nothing without a token', async () => {
    const { d, calls } = deps(() => ({ status: 400, body: { ok: false, error: 'matchers.service: empty' } }));
    const api = new AlertingApi({ apiBase: '', viewerToken: null }, d);
    const r = await api.silenceService('');
    expect(!r.ok && r.error).toBe('matchers.service: empty');
    const none = deps(() => ({ status: 200, body: {} }), null);
    const api2 = new AlertingApi({ apiBase: '', viewerToken: null }, none.d);
    expect((await api2.ack('a:SERVICE_DOWN:1')).ok).toBe(false);
    expect(none.calls).toHaveLength(0);
    expect(calls).toHaveLength(1);
  });
});

describe('InboxApi', () => {
  it('reads while open, every few seconds, and stops when closed', async () => {
    let n = 0;
    const { d, calls, timers } = deps(() => ({ status: 200, body: { ok: true, received: ++n, kept: 200, notifications: [] } }));
    const inbox = new InboxApi({ apiBase: '', viewerToken: null }, d);
    inbox.open();
    await settle();
    expect(inbox.received).toBe(1);
    expect(inbox.notifications).toEqual([]);
    expect(timers).toHaveLength(1);
    expect(INBOX_REFRESH_MS).toBeLessThanOrEqual(5000);
    timers[0]!();
    await settle();
    expect(inbox.received).toBe(2);
    inbox.close();
    timers[0]!();
    await settle();
    expect(calls).toHaveLength(2);
    expect(inbox.polling).toBe(false);
  });

  it('says when the gateway has no inbox', async () => {
    const { d } = deps(() => ({ status: 404, body: { error: 'the inbox is off (--inbox false)' } }));
    const inbox = new InboxApi({ apiBase: '', viewerToken: null }, d);
    await inbox.refresh();
    expect(inbox.error).toMatch(/no inbox/);
  });
});
