import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkHealthUrl, healthUrlAllowed, parseOrigin } from './healthurl';

// The same table the Rust rule is tested against (services/protocol/src/url.rs).
const table = JSON.parse(
  readFileSync(new URL('../../../services/protocol/testdata/health_urls.json', import.meta.url), 'utf8'),
) as {
  accepted: string[];
  refused: string[];
  origins: { allow: string[]; url: string; allowed: boolean }[];
  bad_origins: string[];
};

describe('the health URL rule (shared table with the Rust crate)', () => {
  it.each(table.accepted)('accepts %s', (url) => {
    expect(checkHealthUrl(url)).toMatchObject({ ok: true });
  });
  it.each(table.refused)('refuses %j', (url) => {
    expect(checkHealthUrl(url).ok).toBe(false);
  });
  it('refuses what is longer than 512 characters', () => {
    expect(checkHealthUrl(`http://h/${'a'.repeat(512)}`).ok).toBe(false);
  });
  it.each(table.origins)('origins $allow and $url: $allowed', ({ allow, url, allowed }) => {
    expect(healthUrlAllowed(url, allow)).toBe(allowed);
  });
  it.each(table.bad_origins)('refuses the origin pattern %j', (raw) => {
    expect(parseOrigin(raw)).toBeNull();
  });
});
