import { describe, expect, it } from 'vitest';
import { checkHostPort, checkProbeUrl, checkServiceName, checkTargetForm, parseEndpoint } from './targetform';

describe('the add-a-service form', () => {
  it('a URL is an http target, host:port a tcp one; the interval is optional', () => {
    expect(checkTargetForm({ service: 'payments', endpoint: ' http://127.0.0.1:9000/health ', interval: '1000' })).toEqual({
      ok: true,
      service: 'payments',
      target: { kind: 'http', url: 'http://127.0.0.1:9000/health', interval_ms: 1000 },
    });
    expect(checkTargetForm({ service: 'db', endpoint: 'db.internal:5432', interval: '' })).toEqual({
      ok: true,
      service: 'db',
      target: { kind: 'tcp', address: 'db.internal:5432' },
    });
    expect(checkTargetForm({ service: 'v6', endpoint: '[::1]:6379', interval: '100' })).toMatchObject({ ok: true, target: { kind: 'tcp', address: '[::1]:6379', interval_ms: 100 } });
    expect(checkTargetForm({ service: 'site', endpoint: 'https://example.com', interval: '86400000' })).toMatchObject({ ok: true, target: { kind: 'http' } });
  });

  it('service names follow the naming rule, in the gateway’s words', () => {
    for (const good of ['a', '0', 'pay-ments_2', 'x'.repeat(63)]) expect(checkServiceName(good), good).toBeNull();
    expect(checkServiceName('')).toBe('service name is empty');
    expect(checkServiceName('x'.repeat(64))).toMatch(/at most 63/);
    expect(checkServiceName('-a')).toMatch(/must start/);
    expect(checkServiceName('_a')).toMatch(/must start/);
    expect(checkServiceName('Pay')).toMatch(/must start/);
    expect(checkServiceName('pay.ments')).toMatch(/may only contain/);
    expect(checkServiceName('<script>')).toMatch(/must start/);
    expect(checkServiceName('a b')).toMatch(/may only contain/);
  });

  it('the interval is a whole number of ms, at least 100', () => {
    const withInterval = (interval: string) => checkTargetForm({ service: 'a', endpoint: 'http://h/', interval });
    for (const bad of ['99', '0', '-5', '1.5', 'fast', '1e3', '86400001', '9999999999']) {
      const r = withInterval(bad);
      expect(r.ok, bad).toBe(false);
      expect(!r.ok && r.errors.interval, bad).toBeTruthy();
    }
    expect(withInterval('100').ok).toBe(true);
  });

  it('refuses endpoints the prober would refuse, saying why', () => {
    const cases: [string, RegExp][] = [
      ['', /required/],
      ['ftp://h/', /must start with http/],
      ['HTTP://h/', /must start with http/],
      ['http://user:pw@h/', /user info/],
      ['http://h /x', /space/],
      ['http://hé/', /non-ASCII/],
      ['http:///x', /no host/],
      ['http://h:0/', /port/],
      ['http://h:70000/', /port/],
      ['db.internal', /port is required/],
      ['db:abc', /port/],
      [':5432', /no host/],
      ['[::1', /unclosed/],
      ['[zz]:80', /IPv6/],
      ['h/x:80', /needs http/],
      ['h_*:80', /not a host/],
      ['http://' + 'a'.repeat(2048), /longer than/],
    ];
    for (const [endpoint, why] of cases) {
      const r = parseEndpoint(endpoint);
      expect('error' in r && r.error, endpoint).toMatch(why);
      expect(checkTargetForm({ service: 'a', endpoint, interval: '' }).ok).toBe(false);
    }
  });

  it('reports every field at once', () => {
    const r = checkTargetForm({ service: 'Bad', endpoint: 'nope', interval: '5' });
    expect(r.ok).toBe(false);
    expect(!r.ok && Object.keys(r.errors).sort()).toEqual(['endpoint', 'interval', 'service']);
  });

  it('host and port checks match the protocol crate', () => {
    expect(checkHostPort('h', false)).toBeNull();
    expect(checkHostPort('h:1', true)).toBeNull();
    expect(checkHostPort('[2001:db8::1]:443', true)).toBeNull();
    expect(checkHostPort('[::1]x', true)).toMatch(/junk/);
    expect(checkProbeUrl('https://example.com:8443/p?q=1#f')).toBeNull();
    expect(checkProbeUrl('http://[::1]:8080/health')).toBeNull();
  });
});
