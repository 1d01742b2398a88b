import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseFeedMessage, type FeedMessage } from './protocol';
import { checkSeq, initialState, newSeqTracker, reduce, type DashboardState } from './reducer';

// A JSON array of real gateway messages (one connection, in order), recorded by the
// gateway's integration test `records_a_fixture_of_real_frames_for_the_dashboard`.
// `make test` points FEED_FIXTURE at the copy that test just wrote, so the dashboard is
// checked against what the gateway sends today; fixtures/feed.json is a committed copy.
const fixturePath = process.env.FEED_FIXTURE ?? new URL('./fixtures/feed.json', import.meta.url);
const raw: unknown = JSON.parse(readFileSync(fixturePath, 'utf8'));

describe('fixtures/feed.json', () => {
  const items = Array.isArray(raw) ? raw : [];

  it('is a non-empty array', () => {
    expect(Array.isArray(raw)).toBe(true);
    expect(items.length).toBeGreaterThan(0);
  });

  it('every message parses', () => {
    for (const [i, item] of items.entries()) {
      const parsed = parseFeedMessage(JSON.stringify(item));
      expect(parsed, `message ${i}: ${JSON.stringify(item).slice(0, 200)}`).not.toBeNull();
    }
  });

  it('the reducer accepts every message, in order, without a seq gap', () => {
    let state: DashboardState = initialState();
    let tracker = newSeqTracker();
    let now = 1_000_000;
    const types = new Set<string>();
    for (const item of items) {
      const msg = parseFeedMessage(JSON.stringify(item)) as FeedMessage;
      const { verdict, next } = checkSeq(tracker, msg);
      tracker = next;
      expect(verdict, `seq ${msg.seq}`).toBe('apply');
      state = reduce(state, msg, (now += 100));
      types.add(msg.type);
    }
    expect(types.has('snapshot')).toBe(true);
    expect(state.services.size).toBeGreaterThan(0);
    for (const s of state.services.values()) expect(['HEALTHY', 'DEGRADED', 'DOWN', 'UNKNOWN']).toContain(s.status);
  });
});
