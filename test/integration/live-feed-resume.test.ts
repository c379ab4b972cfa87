import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateEndpointDocument } from '../../packages/client/src/index.ts';
import { authenticate } from '../../src/domain/auth.ts';
import { newId } from '../../src/domain/ids.ts';
import { purgeLiveEvents } from '../../src/domain/retention.ts';
import { createLiveFeed, type FeedRow, SUBSCRIBER_BUFFER } from '../../src/live/feed.ts';
import type { LogQueue } from '../../src/live/log-queue.ts';
import { liveEventsDropped } from '../../src/live/metrics.ts';
import { createDeliveryApp, send } from '../support/delivery.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { subscribeWs, wsClient } from '../support/live.ts';

const ATTEMPTS =
  'subscription($appId: ID!, $after: Cursor) { attemptUpdated(appId: $appId, after: $after) { id status cursor } }';
type AttemptData = { attemptUpdated: { id: string; status: string; cursor: string } };

describe('live feed cursors', () => {
  let t: TestDispatch;
  let appId: string;
  let ids: { recipientId: string; messageId: string; endpointId: string; deliveryId: string };

  /** Writes `n` attempts in one statement (one transaction), as the engine's batch does, and wakes the feed as a worker does. */
  async function attempts(n: number, status: 'SENDING' | 'FAILED' = 'FAILED'): Promise<string[]> {
    const rows = Array.from({ length: n }, () => newId('Attempt'));
    await t.dispatch.db.pool.query(
      `INSERT INTO "Attempt" (id, "appId", "recipientId", "messageId", "endpointId", "deliveryId", url, status)
       SELECT id, $2, $3, $4, $5, $6, 'http://127.0.0.1:9/r', $7::"AttemptStatus" FROM unnest($1::text[]) WITH ORDINALITY AS t(id, n) ORDER BY n`,
      [rows, appId, ids.recipientId, ids.messageId, ids.endpointId, ids.deliveryId, status],
    );
    await t.dispatch.live.publishAttempt({ attemptId: rows.at(-1)!, appId, ...ids, status });
    return rows;
  }

  beforeAll(async () => {
    t = await startTestDispatch();
    appId = await createDeliveryApp(t.client);
    const { createEndpoint } = await t.client.request(CreateEndpointDocument, {
      input: { appId, recipientId: 'customer_r', url: 'http://127.0.0.1:9/r', disabled: true },
    });
    const message = await t.dispatch.db.prisma.message.findUniqueOrThrow({
      where: { id: (await send(t.client, { appId, recipientId: 'customer_r' })).id },
    });
    const delivery = await t.dispatch.db.prisma.delivery.create({
      data: {
        id: newId('Delivery'),
        appId,
        recipientId: message.recipientId,
        messageId: message.id,
        endpointId: createEndpoint.id,
      },
    });
    ids = {
      recipientId: message.recipientId,
      messageId: message.id,
      endpointId: createEndpoint.id,
      deliveryId: delivery.id,
    };
  });
  afterAll(async () => t?.stop());

  it('resumes after a cursor: what was written while away, then live, with no gap and no duplicate', async () => {
    const socket = wsClient(t.url, t.apiKey);
    try {
      const before = t.dispatch.live.listenersAdded();
      const first = subscribeWs<AttemptData>(socket, ATTEMPTS, { appId });
      await t.dispatch.live.whenListenersAdded(before + 1);
      const seen = await attempts(3);
      await first.until((f) => f.data.length >= 3, 5_000, 'the first three');
      expect(first.data.map((d) => d.attemptUpdated.id)).toEqual(seen);
      const cursors = first.data.map((d) => d.attemptUpdated.cursor);
      expect(new Set(cursors).size).toBe(3);
      first.unsubscribe();

      // Away: five more are written. Resumed after the second: the third again, the five, then live ones.
      const away = await attempts(5);
      const resumed = subscribeWs<AttemptData>(socket, ATTEMPTS, { appId, after: cursors[1] });
      await t.dispatch.live.whenListenersAdded(before + 2);
      const live = await attempts(2);
      await resumed.until((f) => f.data.length >= 8, 5_000, 'the resumed feed');
      expect(resumed.data.map((d) => d.attemptUpdated.id)).toEqual([seen[2], ...away, ...live]);
      // Resuming after the same cursor twice gives the same events with the same cursors.
      const again = subscribeWs<AttemptData>(socket, ATTEMPTS, { appId, after: cursors[1] });
      await again.until((f) => f.data.length >= 8, 5_000, 'the feed resumed again');
      expect(again.data).toEqual(resumed.data);
      // From the last cursor: nothing until something new.
      const last = resumed.data.at(-1)!.attemptUpdated.cursor;
      const fromLast = subscribeWs<AttemptData>(socket, ATTEMPTS, { appId, after: last });
      await t.dispatch.live.whenListenersAdded(before + 4);
      const next = await attempts(1);
      await fromLast.until((f) => f.data.length >= 1, 5_000, 'the next one');
      expect(fromLast.data.map((d) => d.attemptUpdated.id)).toEqual(next);
      for (const f of [resumed, again, fromLast]) f.unsubscribe();
    } finally {
      await socket.dispose();
    }
  });

  it('without a cursor starts from now, even while an older open transaction holds the tail back', async () => {
    // A transaction of the server left open: the tail reads only below it, so
    // what commits meanwhile sits past the tail's position.
    const holder = await t.dispatch.db.pool.connect();
    const socket = wsClient(t.url, t.apiKey);
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT pg_current_xact_id()');
      const committedBefore = await attempts(3);
      const before = t.dispatch.live.listenersAdded();
      const feed = subscribeWs<AttemptData>(socket, ATTEMPTS, { appId });
      await t.dispatch.live.whenListenersAdded(before + 1);
      await holder.query('COMMIT');
      const after = await attempts(2);
      await feed.until((f) => f.data.some((d) => d.attemptUpdated.id === after[1]), 5_000, 'the attempts after');
      expect(feed.data.map((d) => d.attemptUpdated.id)).toEqual(after);
      expect(committedBefore.some((id) => feed.data.some((d) => d.attemptUpdated.id === id))).toBe(false);
      feed.unsubscribe();
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      holder.release();
      await socket.dispose();
    }
  });

  it('answers BAD_USER_INPUT for a cursor that is not one, and CURSOR_EXPIRED for one older than retention kept', async () => {
    const socket = wsClient(t.url, t.apiKey);
    try {
      for (const after of ['nope', 'bGYxOjE6', Buffer.from('lf1:1:x').toString('base64url'), 'a'.repeat(200)]) {
        const bad = subscribeWs<AttemptData>(socket, ATTEMPTS, { appId, after });
        await bad.until((f) => f.ended !== undefined, 5_000, 'the refused subscription');
        expect(bad.results.flatMap((r) => r.errors ?? []).map((e) => e.extensions?.code)).toEqual(['BAD_USER_INPUT']);
      }

      const before = t.dispatch.live.listenersAdded();
      const feed = subscribeWs<AttemptData>(socket, ATTEMPTS, { appId });
      await t.dispatch.live.whenListenersAdded(before + 1);
      await attempts(2);
      await feed.until((f) => f.data.length >= 2, 5_000, 'two attempts');
      feed.unsubscribe();
      const [old] = feed.data.map((d) => d.attemptUpdated.cursor);
      // Retention prunes every event written so far.
      expect(await purgeLiveEvents(t.dispatch.db.pool, new Date(Date.now() + 60_000), 100)).toBeGreaterThan(0);
      const expired = subscribeWs<AttemptData>(socket, ATTEMPTS, { appId, after: old });
      await expired.until((f) => f.ended !== undefined, 5_000, 'the expired cursor');
      const errors = expired.results.flatMap((r) => r.errors ?? []);
      expect(errors.map((e) => e.extensions?.code)).toEqual(['CURSOR_EXPIRED']);
      expect(errors[0]!.message).toMatch(/older than what the live feed keeps/);
      // The last cursor of all is at the horizon, not past it: it still resumes.
      const latest = feed.data.at(-1)!.attemptUpdated.cursor;
      const resumed = subscribeWs<AttemptData>(socket, ATTEMPTS, { appId, after: latest });
      await t.dispatch.live.whenListenersAdded(before + 2);
      const next = await attempts(1);
      await resumed.until((f) => f.data.length >= 1, 5_000, 'the next one');
      expect(resumed.data.map((d) => d.attemptUpdated.id)).toEqual(next);
      resumed.unsubscribe();
    } finally {
      await socket.dispose();
    }
  });

  it(`a subscriber that stops reading for 5,000 events holds at most ${SUBSCRIBER_BUFFER} in memory, then gets all of them, once, in order`, async () => {
    const feed = createLiveFeed({
      bus: t.dispatch.live,
      prisma: t.dispatch.db.prisma,
      pool: t.dispatch.db.pool,
      maxPerCredential: 10,
    });
    const actor = (await authenticate(t.dispatch.db.prisma, `Bearer ${t.apiKey}`))!;
    const dropped = async () =>
      (await liveEventsDropped.get()).values.find(
        (v) => v.labels.field === 'attemptUpdated' && v.labels.reason === 'overflow',
      )?.value ?? 0;
    const droppedBefore = await dropped();
    const iterator = await feed.attemptUpdated({
      actor,
      scope: async () => ({ appId, where: { appId } }),
      selection: { select: { id: true, status: true } },
    });
    const queue = iterator as unknown as LogQueue<FeedRow>;
    const written: string[] = [];
    // Not reading: 5,000 attempts in ten transactions.
    for (let i = 0; i < 10; i++) written.push(...(await attempts(500)));
    // The tail has handed them all over: the queue dropped what did not fit and keeps a range to read again.
    await expect.poll(dropped, { timeout: 20_000 }).toBeGreaterThan(droppedBefore);
    expect(queue.size).toBeLessThanOrEqual(SUBSCRIBER_BUFFER);
    expect(queue.catchingUp).toBe(true);

    const received: string[] = [];
    const cursors: string[] = [];
    while (received.length < written.length) {
      const { value, done } = await iterator.next();
      expect(done).toBe(false);
      const row = value as FeedRow & { cursor: string };
      received.push(row.id);
      cursors.push(row.cursor);
    }
    expect(received).toEqual(written);
    expect(new Set(cursors).size).toBe(written.length);
    expect(queue.catchingUp).toBe(false);
    // And on it goes, live.
    const next = await attempts(1);
    expect(((await iterator.next()).value as FeedRow).id).toBe(next[0]);
    await iterator.return?.();
  }, 60_000);
});
