import { describe, expect, it } from 'vitest';
import {
  CreatePortalSessionDocument,
  ReplayDocument,
  ReplayMessagesDocument,
} from '../../packages/client/src/index.ts';
import type { ReplayProgress } from '../../src/domain/replay.ts';
import { MAX_REPLAY_DELIVERIES } from '../../src/domain/replay.ts';
import { purgeExpired } from '../../src/domain/retention.ts';
import { createEndpoint, send, settled, useDeliveryApp } from '../support/delivery.ts';
import type { TestDispatch } from '../support/dispatch.ts';
import { expectError } from '../support/graphql.ts';
import { subscribeWs, wsClient } from '../support/live.ts';
import { eventually, type Receiver } from '../support/receiver.ts';

const REPLAY = 'mutation ($input: ReplayMessagesInput!) { replayMessages(input: $input) { jobId count } }';
const PROGRESS =
  'subscription ($jobId: ID!) { replayProgress(jobId: $jobId) { jobId total queued skipped sent succeeded failed done } }';

/** replayProgress as the subscription selects it: every field. */
type Progress = ReplayProgress;

const bodies = (r: Receiver) => r.received.map((x) => JSON.parse(x.body).data as { n: number });

describe('bulk replay (replayMessages) and its progress (replayProgress)', () => {
  let t: TestDispatch;
  let appId: string;
  // One try and one retry a second later: a failing receiver makes FAILED deliveries quickly.
  const receiver = useDeliveryApp({ retrySchedule: [1], attemptTimeoutMs: 2_000 }, (started) => {
    ({ t, appId } = started);
  });

  /** `count` messages to `recipientId`, each FAILED at the first receiver (two 500s) and SUCCEEDED at the second. */
  async function failedMessages(recipientId: string, count: number, replies: { replayed?: number } = {}) {
    const failing = await receiver(
      Array.from({ length: 2 * count }, () => ({ status: 500 })),
      { status: 200, delayMs: replies.replayed ?? 0 },
    );
    const fine = await receiver();
    const endpoint = await createEndpoint(t.client, { appId, recipientId, url: failing.url });
    await createEndpoint(t.client, { appId, recipientId, url: fine.url });
    const since = new Date(Date.now() - 1000).toISOString();
    const messages = [];
    for (let n = 0; n < count; n++) messages.push(await send(t.client, { appId, recipientId, data: { n } }));
    for (const m of messages) await settled(t.dispatch.db.pool, m.id, ['FAILED'], endpoint.id);
    await fine.nth(count);
    return { failing, fine, endpoint, messages, since };
  }

  it('replays the failed deliveries once each and streams the progress until done', async () => {
    const { failing, fine, since } = await failedMessages('bulk', 5);
    expect(failing.received).toHaveLength(10);

    const { replayMessages } = await t.client.request(ReplayMessagesDocument, {
      input: { appId, recipientId: 'bulk', status: 'FAILED', since },
    });
    expect(replayMessages).toMatchObject({ count: 5, deduplicated: false });
    expect(replayMessages.jobId).toMatch(/^rpl_/);

    const ws = wsClient(t.url, t.apiKey);
    try {
      const feed = subscribeWs<{ replayProgress: Progress }>(ws, PROGRESS, { jobId: replayMessages.jobId });
      await feed.until((f) => f.ended !== undefined, 20_000, 'replayProgress until done');
      expect(feed.results.filter((r) => r.errors)).toEqual([]);
      const seen = feed.data.map((d) => d.replayProgress);
      expect(seen.at(-1)).toEqual({
        jobId: replayMessages.jobId,
        total: 5,
        queued: 5,
        skipped: 0,
        sent: 5,
        succeeded: 5,
        failed: 0,
        done: true,
      });
      // Counts only grow, and each reading is sent once.
      for (let i = 1; i < seen.length; i++) {
        expect(seen[i]!.sent).toBeGreaterThanOrEqual(seen[i - 1]!.sent);
        expect(seen[i]).not.toEqual(seen[i - 1]);
      }
    } finally {
      await ws.dispose();
    }
    // Each failed delivery once more; the delivered ones not at all.
    expect(
      bodies(failing)
        .slice(10)
        .map((d) => d.n)
        .sort(),
    ).toEqual([0, 1, 2, 3, 4]);
    expect(fine.received).toHaveLength(5);
    const { replay } = await t.client.request(ReplayDocument, { jobId: replayMessages.jobId });
    expect(replay?.done).toBe(true);
  });

  it('a second replay of the same window does not send a delivery whose try is pending twice', async () => {
    // Replayed tries take a while to answer, so the second replay meets them pending.
    const { failing, endpoint, since } = await failedMessages('twice', 4, { replayed: 1_500 });
    const input = { appId, endpointId: endpoint.id, since };
    const first = (await t.client.request(ReplayMessagesDocument, { input })).replayMessages;
    // Without a status: SUCCEEDED deliveries are replayable too, yet none of these is sent twice.
    const second = (await t.client.request(ReplayMessagesDocument, { input })).replayMessages;
    expect(first.count).toBe(4);
    expect(second.jobId).not.toBe(first.jobId);
    const done = async (jobId: string) =>
      eventually(
        async () => {
          const { replay } = await t.client.request(ReplayDocument, { jobId });
          return replay?.done ? replay : undefined;
        },
        { timeoutMs: 20_000 },
      );
    const [a, b] = await Promise.all([done(first.jobId), done(second.jobId)]);
    expect(a.queued + b.queued).toBe(4);
    expect(b.skipped).toBe(second.count - b.queued);
    expect(
      bodies(failing)
        .slice(8)
        .map((d) => d.n)
        .sort(),
    ).toEqual([0, 1, 2, 3]);
  });

  it('the same requestId answers the same replay; with other filters it is IDEMPOTENCY_CONFLICT', async () => {
    const { failing, since } = await failedMessages('request-id', 2);
    const input = { appId, recipientId: 'request-id', status: 'FAILED' as const, since, requestId: 'replay-42' };
    const first = (await t.client.request(ReplayMessagesDocument, { input })).replayMessages;
    const again = (await t.client.request(ReplayMessagesDocument, { input })).replayMessages;
    expect(again).toEqual({ jobId: first.jobId, count: 2, deduplicated: true });
    await expectError(t.client, 'IDEMPOTENCY_CONFLICT', REPLAY, {
      input: { ...input, eventTypes: ['invoice.voided'] },
    });
    await eventually(
      async () => ((await t.client.request(ReplayDocument, { jobId: first.jobId })).replay?.done ? true : undefined),
      {
        timeoutMs: 20_000,
      },
    );
    expect(failing.received).toHaveLength(4 + 2);
  });

  it("is scoped: a portal token replays and follows only its own recipient's", async () => {
    const own = await failedMessages('portal-own', 2);
    await failedMessages('portal-other', 1);
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId, recipientId: 'portal-own' },
    });
    const portal = t.clientFor(createPortalSession.token);
    await expectError(portal, 'NOT_FOUND', REPLAY, {
      input: { appId, recipientId: 'portal-other', since: own.since },
    });
    // Its own only, whatever the window holds.
    const mine = (
      await portal.request(ReplayMessagesDocument, { input: { appId, status: 'FAILED', since: own.since } })
    ).replayMessages;
    expect(mine.count).toBe(2);
    const stranger = await t.newWorkspace();
    await expectError(stranger.client, 'NOT_FOUND', REPLAY, { input: { appId, since: own.since } });
    expect((await stranger.client.request(ReplayDocument, { jobId: mine.jobId })).replay).toBeNull();

    // An operator's replay of another recipient is not the portal's to follow.
    const others = (
      await t.client.request(ReplayMessagesDocument, {
        input: { appId, recipientId: 'portal-other', status: 'FAILED', since: own.since },
      })
    ).replayMessages;
    expect(others.count).toBe(1);
    expect((await portal.request(ReplayDocument, { jobId: others.jobId })).replay).toBeNull();
    const ws = wsClient(t.url, createPortalSession.token);
    try {
      const feed = subscribeWs<{ replayProgress: Progress }>(ws, PROGRESS, { jobId: others.jobId });
      await feed.until((f) => f.ended !== undefined, 10_000);
      expect(feed.results.flatMap((r) => r.errors ?? []).map((e) => e.extensions?.code)).toEqual(['NOT_FOUND']);
    } finally {
      await ws.dispose();
    }
  });

  it('refuses bad filters and more than MAX_REPLAY_DELIVERIES deliveries (BAD_USER_INPUT)', async () => {
    const since = new Date(Date.now() - 60_000).toISOString();
    await expectError(t.client, 'BAD_USER_INPUT', REPLAY, { input: { appId, status: 'PENDING', since } });
    await expectError(t.client, 'BAD_USER_INPUT', REPLAY, {
      input: { appId, since, until: new Date(Date.now() - 120_000).toISOString() },
    });
    await expectError(t.client, 'NOT_FOUND', REPLAY, { input: { appId, recipientId: 'nobody', since } });

    // More failed deliveries than one replay takes, written straight into the tables.
    const { id: endpointId } = await createEndpoint(t.client, {
      appId,
      recipientId: 'many',
      url: 'http://127.0.0.1:9/none',
    });
    const pool = t.dispatch.db.pool;
    await pool.query(
      `WITH r AS (SELECT id FROM "Recipient" WHERE "appId" = $1 AND uid = 'many'),
       m AS (
         INSERT INTO "Message" (id, "appId", "recipientId", uid, "eventType", data, "dataHash")
         SELECT 'msg_00' || lpad(g::text, 24, '0'), $1, r.id, 'many-' || g, 'invoice.paid', '{}', 'x'
         FROM r, generate_series(1, $3::int) g
         RETURNING id, "recipientId")
       INSERT INTO "Delivery" (id, "appId", "recipientId", "messageId", "endpointId", status, "updatedAt")
       SELECT 'dlv_' || substr(m.id, 5), $1, m."recipientId", m.id, $2, 'FAILED', now() FROM m`,
      [appId, endpointId, MAX_REPLAY_DELIVERIES + 1],
    );
    const tooMany = await expectError(t.client, 'BAD_USER_INPUT', REPLAY, {
      input: { appId, recipientId: 'many', status: 'FAILED', since: new Date(0).toISOString() },
    });
    expect(tooMany.errors![0]!.message).toMatch(/narrow/);
    expect(tooMany.errors![0]!.extensions).toMatchObject({ limit: MAX_REPLAY_DELIVERIES });
    // Nothing of the refused replay was kept.
    const { rows } = await pool.query(
      `SELECT count(*)::int AS n FROM "ReplayDelivery" rd JOIN "Delivery" d ON d.id = rd."deliveryId" WHERE d."endpointId" = $1`,
      [endpointId],
    );
    expect(rows[0].n).toBe(0);
  });

  // Last: it purges everything of this file's app.
  it('retention deletes replays of the age it purges, with their rows', async () => {
    const pool = t.dispatch.db.pool;
    const count = async () =>
      (
        await pool.query<{ replays: number; rows: number }>(
          `SELECT (SELECT count(*) FROM "Replay")::int AS replays, (SELECT count(*) FROM "ReplayDelivery")::int AS rows`,
        )
      ).rows[0]!;
    expect((await count()).replays).toBeGreaterThan(0);
    await purgeExpired(pool, { olderThan: new Date(Date.now() - 3600_000) });
    expect((await count()).replays).toBeGreaterThan(0);
    await purgeExpired(pool, { olderThan: new Date(Date.now() + 1000) });
    expect(await count()).toEqual({ replays: 0, rows: 0 });
  });
});
