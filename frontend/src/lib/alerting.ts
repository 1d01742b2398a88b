// Alert delivery on the page, the pure part: what marks an alert shows, the root-cause groups
// (services whose alerts an upstream outage explains), and the requests of the silence, ack
// and inbox API. No I/O, no clock reads.

import type { ActiveAlert, InboxNotification, Silence, SilenceRequest } from './protocol';
import { compareNames, type ServiceView } from './reducer';

/** The "Silence 1 h" action's length. */
export const SILENCE_FOR_S = 3600;

export type MarkKind = 'severity' | 'silenced' | 'inhibited' | 'acked';

export interface Mark {
  kind: MarkKind;
  text: string;
}

/** The marks of one firing alert, as text, in a fixed order. */
export function alertMarks(a: ActiveAlert): Mark[] {
  const out: Mark[] = [];
  if (a.severity != null) out.push({ kind: 'severity', text: a.severity });
  if (a.silenced === true) out.push({ kind: 'silenced', text: 'silenced' });
  if (a.inhibited_by != null) out.push({ kind: 'inhibited', text: `inhibited by ${a.inhibited_by}` });
  if (a.acked_by != null) out.push({ kind: 'acked', text: `acked by ${a.acked_by}` });
  return out;
}

/** The body of the "Silence 1 h" action on a service's card. */
export function silenceServiceRequest(service: string, createdBy = 'dashboard'): SilenceRequest {
  return {
    matchers: { service },
    for_s: SILENCE_FOR_S,
    created_by: createdBy,
    comment: `silenced from the dashboard for 1 h`,
  };
}

/** One root cause: a service whose outage explains the alerts of `dependants`. */
export interface RootCause {
  root: string;
  /** The root's status on the page (it is usually DOWN; UNKNOWN when the page has no card). */
  status: string;
  /** Services with at least one alert `inhibited_by` the root, by name. */
  dependants: string[];
}

/** Groups services by the root cause their alerts name (`inhibited_by`), roots by name. */
export function rootCauses(services: ReadonlyMap<string, ServiceView>): RootCause[] {
  const byRoot = new Map<string, Set<string>>();
  for (const s of services.values()) {
    for (const a of s.alerts) {
      const root = a.inhibited_by;
      if (root == null || root === s.service) continue;
      let set = byRoot.get(root);
      if (set === undefined) byRoot.set(root, (set = new Set()));
      set.add(s.service);
    }
  }
  return [...byRoot.entries()]
    .map(([root, deps]) => ({ root, status: services.get(root)?.status ?? 'UNKNOWN', dependants: [...deps].sort(compareNames) }))
    .sort((a, b) => compareNames(a.root, b.root));
}

/** "auth DOWN, 3 dependants affected". */
export function describeRootCause(r: RootCause): string {
  const n = r.dependants.length;
  return `${r.root} ${r.status}, ${n} ${n === 1 ? 'dependant' : 'dependants'} affected`;
}

/** What a silence covers, as text: `pay*`, `pay* · HIGH_CPU`. */
export function describeMatchers(s: Silence): string {
  return s.matchers.alert == null ? s.matchers.service : `${s.matchers.service} · ${s.matchers.alert}`;
}

/** How far the page's estimate of the server's clock may be off: a silence that starts
 * within this is shown as in force, not as "starts in 0 s". */
export const CLOCK_SKEW_MS = 2000;

/** Whether a silence is in force at `serverNowMs` (else it is pending). */
export function silenceActive(s: Silence, serverNowMs: number): boolean {
  return s.starts_ms <= serverNowMs + CLOCK_SKEW_MS && serverNowMs < s.ends_ms;
}

/** One notification as a line of text: receiver, status and its alerts. */
export function describeNotification(n: InboxNotification): string {
  const alerts = n.alerts.map((a) => {
    const parts = [`${a.alertname} ${a.service}`.trim(), a.status];
    if (a.severity !== '') parts.push(a.severity);
    if (a.acked_by !== '') parts.push(`acked by ${a.acked_by}`);
    return parts.join(' ');
  });
  const more = n.truncated > 0 ? ` (+${n.truncated} more)` : '';
  return `${n.receiver}: ${n.status.toUpperCase()}: ${alerts.join('; ')}${more}`;
}

function withToken(url: string, token: string | null): string {
  if (!token) return url;
  return `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
}

export type AlertingOp =
  | { op: 'list-silences' }
  | { op: 'create-silence'; body: SilenceRequest }
  | { op: 'expire-silence'; id: string }
  | { op: 'ack'; id: string; by: string }
  | { op: 'inbox' };

/** The request for one call: writes carry the operator token as a bearer, never in the URL. */
export function alertingRequest(
  op: AlertingOp,
  apiBase: string,
  viewerToken: string | null,
  operatorToken: string | null,
): { url: string; init: RequestInit } {
  const headers: Record<string, string> = { Accept: 'application/json' };
  const init: RequestInit = { method: 'GET', headers, cache: 'no-store', credentials: 'same-origin' };
  let path: string;
  switch (op.op) {
    case 'list-silences':
      path = '/api/silences';
      break;
    case 'inbox':
      path = '/api/inbox';
      break;
    case 'create-silence':
      path = '/api/silences';
      init.method = 'POST';
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(op.body);
      break;
    case 'expire-silence':
      path = `/api/silences/${encodeURIComponent(op.id)}`;
      init.method = 'DELETE';
      break;
    case 'ack':
      path = `/api/alerts/${encodeURIComponent(op.id)}/ack`;
      init.method = 'POST';
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify({ by: op.by });
      break;
  }
  if (init.method !== 'GET' && operatorToken !== null) headers.Authorization = `Bearer ${operatorToken}`;
  return { url: withToken(`${apiBase}${path}`, viewerToken), init };
}
