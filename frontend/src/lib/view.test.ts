import { describe, expect, it } from 'vitest';
import type { HealthCheckResult } from './fallback';
import { fmtDuration, fmtMs, fmtPct, fmtRate } from './format';
import { initialState, reduce } from './reducer';
import { serviceState, snapshot } from './testdata';
import { matchesFilter, visibleServices } from './view';

describe('filter', () => {
  it('matches name parts, statuses and check results', () => {
    expect(matchesFilter('', 'billing', 'DOWN', null)).toBe(true);
    expect(matchesFilter('bill', 'billing', 'DOWN', null)).toBe(true);
    expect(matchesFilter('down', 'billing', 'DOWN', null)).toBe(true);
    expect(matchesFilter('down', 'billing', 'HEALTHY', null)).toBe(false);
    expect(matchesFilter('unreachable', 'billing', 'HEALTHY', 'unreachable')).toBe(true);
    expect(matchesFilter('bill down', 'billing', 'DOWN', null)).toBe(true);
    expect(matchesFilter('auth down', 'billing', 'DOWN', null)).toBe(false);
    expect(matchesFilter('  BILL ', 'billing', 'DOWN', null)).toBe(true);
  });

  it('lists services in order and gives stable placeholders to names known only from health URLs', () => {
    const state = reduce(initialState(), snapshot(0, [serviceState('a'), serviceState('b', { status: 'DOWN' })]), 0);
    const cache = new Map();
    const checks = new Map<string, HealthCheckResult>([
      ['ghost', { service: 'ghost', url: 'http://h:1/health', check: 'unreachable', detail: 'timed out', mode: null, checkedAtMs: 0 }],
    ]);
    const order = ['ghost', ...state.order];
    const first = visibleServices(order, state.services, checks, '', cache);
    expect(first.map((s) => s.service)).toEqual(['ghost', 'b', 'a']);
    expect(first[0]?.status).toBe('UNKNOWN');
    expect(first[0]?.health_url).toBe('http://h:1/health');
    const second = visibleServices(order, state.services, checks, '', cache);
    expect(second[0]).toBe(first[0]);
    expect(second[1]).toBe(state.services.get('b'));
    expect(visibleServices(order, state.services, checks, 'unreachable', cache).map((s) => s.service)).toEqual(['ghost']);
  });
});

describe('format', () => {
  it('formats figures and durations', () => {
    expect(fmtPct(23.456)).toBe('23.5%');
    expect(fmtPct(Number.NaN)).toBe('–');
    expect(fmtRate(0.004)).toBe('0.40%');
    expect(fmtRate(0.25)).toBe('25.0%');
    expect(fmtMs(52)).toBe('52.0 ms');
    expect(fmtMs(520)).toBe('520 ms');
    expect(fmtMs(12_500)).toBe('12.5 s');
    expect(fmtDuration(999)).toBe('0 s');
    expect(fmtDuration(42_000)).toBe('42 s');
    expect(fmtDuration(185_000)).toBe('3 min 5 s');
    expect(fmtDuration(2 * 3600_000 + 4 * 60_000)).toBe('2 h 4 min');
    expect(fmtDuration(null)).toBe('–');
  });
});
