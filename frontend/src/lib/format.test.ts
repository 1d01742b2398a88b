import { describe, expect, it } from 'vitest';
import { fmtAlertPair, fmtAlertValue, fmtApdex, fmtOpt, fmtPct, NA } from './format';

describe('format', () => {
  it('an absent figure is n/a, never 0; an unknown one a dash', () => {
    expect(fmtOpt(undefined, fmtPct)).toBe(NA);
    expect(fmtOpt(null, fmtPct)).toBe('n/a');
    expect(fmtOpt(0, fmtPct)).toBe('0.0%');
    expect(fmtOpt(Number.NaN, fmtPct)).toBe('–');
    expect(fmtApdex(0.756)).toBe('0.76');
  });

  it('alert values by alert, and a probe’s failures in a row', () => {
    expect(fmtAlertValue('CERT_EXPIRING', 3.25)).toBe('3.3 d');
    expect(fmtAlertValue('LOW_APDEX', 0.5)).toBe('0.50');
    expect(fmtAlertPair('SERVICE_DOWN', 3.1, 3)).toBe('3.1 s / 3.0 s');
    expect(fmtAlertPair('SERVICE_DOWN', 2, 2, true)).toBe('2 in a row / 2');
    // A probe service gone silent (the prober stopped): seconds, as for any service.
    expect(fmtAlertPair('SERVICE_DOWN', 3.04, 3, true)).toBe('3.0 s / 3.0 s');
    expect(fmtAlertPair('SERVICE_DOWN', 0, 3, true)).toBe('0.0 s / 3.0 s');
    expect(fmtAlertPair('HIGH_CPU', 91, 85, true)).toBe('91.0% / 85.0%');
  });
});
