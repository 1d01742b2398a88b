// Number and time formatting for the cards and panels. Pure; non-finite numbers show as "–".

const DASH = '–';
/** A figure the source does not have (a probe's CPU): never shown as 0. */
export const NA = 'n/a';

/** A figure that may be absent from its source: "n/a" when absent (or null), else `fmt`. */
export function fmtOpt(v: number | null | undefined, fmt: (v: number) => string): string {
  return v == null ? NA : fmt(v);
}

/** An Apdex score in [0, 1], two decimals. */
export function fmtApdex(v: number | null | undefined): string {
  return v == null || !Number.isFinite(v) ? DASH : v.toFixed(2);
}

/** A load average, two decimals. */
export function fmtLoad(v: number | null | undefined): string {
  return v == null || !Number.isFinite(v) ? DASH : v.toFixed(2);
}

export function fmtPct(v: number | null | undefined, digits = 1): string {
  return v == null || !Number.isFinite(v) ? DASH : `${v.toFixed(digits)}%`;
}

/** An error rate in [0, 1] as a percentage. */
export function fmtRate(v: number | null | undefined): string {
  if (v == null || !Number.isFinite(v)) return DASH;
  const pct = v * 100;
  return `${pct < 10 ? pct.toFixed(2) : pct.toFixed(1)}%`;
}

export function fmtMs(v: number | null | undefined): string {
  if (v == null || !Number.isFinite(v)) return DASH;
  if (v >= 10_000) return `${(v / 1000).toFixed(1)} s`;
  if (v >= 100) return `${Math.round(v)} ms`;
  return `${v.toFixed(1)} ms`;
}

export function fmtNum(v: number | null | undefined, digits = 0): string {
  if (v == null || !Number.isFinite(v)) return DASH;
  return v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** A duration in ms, coarse and short: "0 s", "42 s", "3 min 5 s", "2 h 4 min", "3 d 1 h". */
export function fmtDuration(ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms)) return DASH;
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ${m % 60} min`;
  const d = Math.floor(h / 24);
  return `${d} d ${h % 24} h`;
}

/** A browser-clock epoch ms as local wall time, HH:MM:SS. */
export function fmtClock(localMs: number): string {
  const d = new Date(localMs);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** A compact value for an alert: percent for CPU/memory, ms for latency, % for error rate, s for silence. */
export function fmtAlertValue(alert: string, v: number): string {
  switch (alert) {
    case 'HIGH_CPU':
    case 'HIGH_MEMORY':
      return fmtPct(v);
    case 'HIGH_LATENCY':
      return fmtMs(v);
    case 'HIGH_ERROR_RATE':
      return fmtRate(v);
    case 'SERVICE_DOWN':
      return Number.isFinite(v) ? `${v.toFixed(1)} s` : DASH;
    case 'CERT_EXPIRING':
      return Number.isFinite(v) ? `${v.toFixed(1)} d` : DASH;
    case 'LOW_APDEX':
      return fmtApdex(v);
    default:
      return fmtNum(v, 2);
  }
}

/**
 * An alert's value against its threshold, e.g. "91.0% / 85.0%". A probe's SERVICE_DOWN for
 * failed probes carries failures in a row against `down_after` (the monitor's silence one
 * carries seconds); the wire does not say which, so a whole number of failures on a
 * probe-sourced service is read as a count: "2 in a row / 2".
 */
export function fmtAlertPair(alert: string, value: number, threshold: number, probe = false): string {
  if (alert === 'SERVICE_DOWN' && probe && Number.isInteger(value) && value >= 1 && Number.isInteger(threshold) && threshold >= 1) {
    return `${value} in a row / ${threshold}`;
  }
  return `${fmtAlertValue(alert, value)} / ${fmtAlertValue(alert, threshold)}`;
}
