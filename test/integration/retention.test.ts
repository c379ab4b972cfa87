import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { createApiKey } from '../../src/domain/api-keys.ts';
import { createApp } from '../../src/domain/apps.ts';
import type { DomainContext } from '../../src/domain/context.ts';
import { createEventType } from '../../src/domain/event-types.ts';
import { type IdType, idFloorAt, newId } from '../../src/domain/ids.ts';
import { sendMessage } from '../../src/domain/messages.ts';
import {
  type PurgeCounts,
  purgeExpired,
  RETENTION_LOCK_KEY,
  startRetentionSchedule,
} from '../../src/domain/retention.ts';
import { openTestDatabase } from '../support/database.ts';

const DAY = 24 * 3600 * 1000;

/** An id as newId would have made it at `time`. */
function idAt(type: IdType, time: Date): string {
  const floor = idFloorAt(type, time);
  const random = [...randomBytes(16)].map((b) => '0123456789abcdefghjkmnpqrstvwxyz'[b % 32]).join('');
  return floor.slice(0, -16) + random;
}

describe('retention', () => {
  let db: Database;
  let ctx: DomainContext;
  let appId: string;
  let recipientId: string;
  let endpointId: string;

  beforeAll(async () => {
    db = await openTestDatabase();
    const key = await createApiKey(db.prisma, { workspaceName: 'retention' });
    ctx = {
      prisma: db.prisma,
      pool: db.pool,
      actor: { kind: 'operator', workspaceId: key.workspace.id, apiKeyId: key.apiKey.id },
      settings: { maxPayloadBytes: 1 << 20, publicUrl: 'http://localhost', allowNetworks: [] },
      hooks: { async deliveriesCreated() {} },
    };
    appId = (await createApp(ctx, { name: 'Retention' })).id;
    await createEventType(ctx, { appId, name: 'invoice.paid' });
    recipientId = newId('Recipient');
    endpointId = newId('Endpoint');
    await db.pool.query(`INSERT INTO "Recipient" (id, "appId", uid) VALUES ($1, $2, 'customer_1')`, [
      recipientId,
      appId,
    ]);
    await db.pool.query(
      `INSERT INTO "Endpoint" (id, "appId", "recipientId", url, "updatedAt") VALUES ($1, $2, $3, 'http://127.0.0.1:9/hook', now())`,
      [endpointId, appId, recipientId],
    );
  });
  afterAll(async () => db?.close());

  /** A message created at `at` with one delivery in `status` and `attempts` attempts. */
  async function storeMessage(at: Date, status: 'SUCCEEDED' | 'FAILED' | 'PENDING' | 'SENDING', attempts = 1) {
    const messageId = idAt('Message', at);
    const deliveryId = idAt('Delivery', at);
    await db.pool.query(
      `INSERT INTO "Message" (id, "appId", "recipientId", uid, "eventType", data, "dataHash", "createdAt")
       VALUES ($1, $2, $3, $1, 'invoice.paid', '{"amount": 1}', 'x', $4)`,
      [messageId, appId, recipientId, at],
    );
    await db.pool.query(
      `INSERT INTO "Delivery" (id, "appId", "recipientId", "messageId", "endpointId", status, "createdAt", "updatedAt")
       VALUES ($1, $2, $3, $4, $5, $6, $7, $7)`,
      [deliveryId, appId, recipientId, messageId, endpointId, status, at],
    );
    for (let i = 0; i < attempts; i++) {
      await db.pool.query(
        `INSERT INTO "Attempt" (id, "appId", "recipientId", "messageId", "endpointId", "deliveryId", status, url, "createdAt")
         VALUES ($1, $2, $3, $4, $5, $6, 'SUCCEEDED', 'http://127.0.0.1:9/hook', $7)`,
        [idAt('Attempt', at), appId, recipientId, messageId, endpointId, deliveryId, at],
      );
    }
    return { messageId, deliveryId };
  }

  const count = async (table: string) =>
    Number((await db.pool.query(`SELECT count(*) AS n FROM "${table}"`)).rows[0].n);
  const exists = async (table: string, id: string) =>
    (await db.pool.query(`SELECT 1 FROM "${table}" WHERE id = $1`, [id])).rowCount === 1;

  it('purges messages, deliveries and attempts older than the cut-off and keeps younger ones', async () => {
    const now = Date.now();
    const old = [];
    for (let i = 0; i < 25; i++)
      old.push(await storeMessage(new Date(now - 40 * DAY - i * 1000), i % 2 ? 'FAILED' : 'SUCCEEDED', 2));
    const young = await storeMessage(new Date(now - 29 * DAY), 'SUCCEEDED', 1);
    const fresh = await storeMessage(new Date(now), 'SUCCEEDED', 1);

    const counts = await purgeExpired(db.pool, { olderThan: new Date(now - 30 * DAY), batchSize: 1000 });

    // Attempts go in the first phase (50 of them), then messages with their deliveries.
    expect(counts).toEqual({ messages: 25, deliveries: 25, attempts: 50, batches: 2 });
    for (const { messageId, deliveryId } of old) {
      expect(await exists('Message', messageId)).toBe(false);
      expect(await exists('Delivery', deliveryId)).toBe(false);
    }
    for (const kept of [young, fresh]) {
      expect(await exists('Message', kept.messageId)).toBe(true);
      expect(await exists('Delivery', kept.deliveryId)).toBe(true);
    }
    expect(await count('Attempt')).toBe(2);
    // Nothing left to do: a second run deletes nothing.
    expect(await purgeExpired(db.pool, { olderThan: new Date(now - 30 * DAY) })).toEqual({
      messages: 0,
      deliveries: 0,
      attempts: 0,
      batches: 0,
    });
    await db.pool.query('DELETE FROM "Message"');
  });

  it('keeps an expired message whose delivery is still pending or sending, but drops its expired attempts', async () => {
    const at = new Date(Date.now() - 40 * DAY);
    const pending = await storeMessage(at, 'PENDING', 3);
    const sending = await storeMessage(at, 'SENDING', 1);
    const done = await storeMessage(at, 'SUCCEEDED', 1);

    const counts = await purgeExpired(db.pool, { olderThan: new Date(Date.now() - 30 * DAY) });

    expect(counts).toMatchObject({ messages: 1, deliveries: 1, attempts: 5 });
    expect(await exists('Message', pending.messageId)).toBe(true);
    expect(await exists('Delivery', pending.deliveryId)).toBe(true);
    expect(await exists('Message', sending.messageId)).toBe(true);
    expect(await exists('Message', done.messageId)).toBe(false);
    expect(await count('Attempt')).toBe(0);
    await db.pool.query('DELETE FROM "Message"');
  });

  it('deletes in bounded batches, each its own statement', async () => {
    const at = new Date(Date.now() - 40 * DAY);
    for (let i = 0; i < 23; i++) await storeMessage(new Date(at.getTime() + i), 'SUCCEEDED', 0);

    const counts = await purgeExpired(db.pool, { olderThan: new Date(Date.now() - 30 * DAY), batchSize: 5 });

    // 23 messages in batches of at most 5: 5+5+5+5+3.
    expect(counts).toEqual({ messages: 23, deliveries: 23, attempts: 0, batches: 5 });
    expect(await count('Message')).toBe(0);
  });

  it('one process purges at a time: a second schedule skips while the first holds the lock', async () => {
    const holder = await db.pool.connect();
    try {
      await holder.query('SELECT pg_advisory_lock($1)', [RETENTION_LOCK_KEY]);
      const schedule = startRetentionSchedule({
        pool: db.pool,
        retentionMs: 30 * DAY,
        intervalMs: 3600_000,
        firstRunAfterMs: 3600_000,
      });
      expect(await schedule.runOnce()).toBeNull();
      await holder.query('SELECT pg_advisory_unlock($1)', [RETENTION_LOCK_KEY]);
      expect(await schedule.runOnce()).toEqual({ messages: 0, deliveries: 0, attempts: 0, batches: 0 });
      await schedule.stop();
    } finally {
      holder.release();
    }
  });

  it('soak: 20 s of sending with a 3 s retention keeps the tables flat', async () => {
    const RETENTION_MS = 3000;
    const INTERVAL_MS = 500;
    const purged: PurgeCounts[] = [];
    const schedule = startRetentionSchedule({
      pool: db.pool,
      retentionMs: RETENTION_MS,
      intervalMs: INTERVAL_MS,
      firstRunAfterMs: INTERVAL_MS,
      batchSize: 200,
      onPurged: (c) => purged.push(c),
    });
    const samples: { at: number; messages: number; bytes: number }[] = [];
    const sentAt: number[] = [];
    const started = Date.now();
    let sampledAt = started;
    try {
      // Two senders for 20 s; a sample of the table every second.
      const sender = async () => {
        while (Date.now() - started < 20_000) {
          await sendMessage(ctx, {
            appId,
            recipientUid: `soak_${sentAt.length % 50}`,
            eventType: 'invoice.paid',
            data: { n: sentAt.length, pad: 'x'.repeat(512) },
          });
          sentAt.push(Date.now());
        }
      };
      const sampler = async () => {
        while (Date.now() - started < 20_000) {
          await new Promise((resolve) => setTimeout(resolve, Math.max(0, sampledAt + 1000 - Date.now())));
          sampledAt = Date.now();
          const { rows } = await db.pool.query(
            `SELECT count(*) AS n, pg_total_relation_size('"Message"') AS bytes FROM "Message"`,
          );
          samples.push({ at: sampledAt, messages: Number(rows[0].n), bytes: Number(rows[0].bytes) });
        }
      };
      await Promise.all([sender(), sender(), sampler()]);
    } finally {
      await schedule.stop();
    }
    const purgedMessages = purged.reduce((sum, c) => sum + c.messages, 0);
    // Once retention has kicked in, the table holds no more than what was
    // sent in the last retention + two intervals (+1 s for a purge under
    // load): older messages are gone, whatever the sending rate was.
    const window = RETENTION_MS + 2 * INTERVAL_MS + 1000;
    const steady = samples.filter((s) => s.at - started >= window + 1000);
    expect(steady.length).toBeGreaterThanOrEqual(10);
    for (const s of steady) {
      const recent = sentAt.filter((t) => t > s.at - window && t <= s.at).length;
      expect(s.messages).toBeLessThanOrEqual(recent + 10);
    }
    expect(purgedMessages).toBeGreaterThan(sentAt.length / 2);
    // The table's size levels off too: purged space is vacuumed and reused.
    // Without the vacuum the table grows by about every row sent (13 -> 40 MB
    // over these samples); with it, by far less. Compared with what the rows
    // sent in between would occupy, so a slower or faster machine (more or
    // fewer rows per sample) moves both sides alike.
    const { rows: sized } = await db.pool.query(
      `SELECT coalesce(avg(pg_column_size(m.*)), 0)::float AS "rowBytes" FROM "Message" m`,
    );
    const first = steady[0]!;
    const last = steady.at(-1)!;
    const sentBetween = sentAt.filter((t) => t > first.at && t <= last.at).length;
    const rowBytes = Math.max(Number(sized[0].rowBytes), 600); // at least the 512-byte pad and the row's header
    expect(
      last.bytes - first.bytes,
      `bytes ${steady.map((s) => s.bytes).join(' ')}; ${sentBetween} rows of ~${Math.round(rowBytes)} B sent between the first and last sample`,
    ).toBeLessThan(0.4 * sentBetween * rowBytes);
    console.info(
      `retention soak: ${sentAt.length} messages in 20 s, ${purgedMessages} purged, rows ${steady.map((s) => s.messages).join(' ')}, bytes ${steady.map((s) => s.bytes).join(' ')}`,
    );
  }, 40_000);
});
