// What the service grid shows: the order, the filter, and cards for services known only from
// remembered or configured health URLs. Pure.

import type { HealthCheckResult, HealthCheck } from './fallback';
import type { Status } from './protocol';
import { placeholder, type ServiceView } from './reducer';

/**
 * A filter query: space-separated words, all of which must match. A word matches a service when
 * it is part of its name, or equals its status (`down`, `degraded`, `unknown`, `healthy`) or
 * its health-check result (`up`, `unreachable`).
 */
export function matchesFilter(query: string, name: string, status: Status, check: HealthCheck | null): boolean {
  const words = query.trim().toLowerCase().split(/\s+/).filter((w) => w.length > 0);
  if (words.length === 0) return true;
  const lname = name.toLowerCase();
  const lstatus = status.toLowerCase();
  return words.every((w) => lname.includes(w) || w === lstatus || (check !== null && w === check));
}

/**
 * The cards to show, in order. Names without a service in the view (known only from health URLs)
 * get a placeholder, cached in `cache` so the same object comes back on every call and a keyed
 * {#each} does not re-render it.
 */
export function visibleServices(
  order: readonly string[],
  services: ReadonlyMap<string, ServiceView>,
  checks: ReadonlyMap<string, HealthCheckResult>,
  query: string,
  cache: Map<string, ServiceView>,
): ServiceView[] {
  const out: ServiceView[] = [];
  const trimmed = query.trim();
  for (const name of order) {
    let s = services.get(name);
    if (s === undefined) {
      const check = checks.get(name);
      s = cache.get(name);
      if (s === undefined || (check !== undefined && s.health_url !== check.url)) {
        s = placeholder(name, 0, check?.url ?? '');
        cache.set(name, s);
      }
    }
    if (trimmed !== '' && !matchesFilter(trimmed, s.service, s.status, checks.get(name)?.check ?? null)) continue;
    out.push(s);
  }
  return out;
}
