import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AttemptEvent } from '../../src/live/bus.ts';
import { createPgLiveBus, LIVE_CHANNEL, type PgLiveBus } from '../../src/live/pg-bus.ts';
import { createLogger } from '../../src/logger.ts';
import { createTestDatabase } from '../support/database.ts';

describe('live bus publishing', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let pool: pg.Pool;
  let publisher: PgLiveBus;
  let subscriber: PgLiveBus;
  const payloads: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase({ empty: true });
    pool = new pg.Pool({ connectionString: db.url, max: 4 });
    publisher = createPgLiveBus({ url: db.url, pool, logger: createLogger('warn', 'publisher'), listen: false });
    subscriber = createPgLiveBus({ url: db.url, pool, logger: createLogger('warn', 'subscriber') });
    await subscriber.listening();
  });

  afterAll(async () => {
    await publisher?.close();
    await subscriber?.close();
    await pool?.end();
    await db?.drop();
  });

  it('coalesces events published together into few notifications under the payload limit, in order, none lost', async () => {
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    try {
      listener.on('notification', (n) => {
        if (n.channel === LIVE_CHANNEL && n.payload !== undefined) payloads.push(n.payload);
      });
      await listener.query(`LISTEN ${LIVE_CHANNEL}`);
      const total = 500;
      const events: AttemptEvent[] = Array.from({ length: total }, (_, i) => ({
        attemptId: `atmpt_${String(i).padStart(4, '0')}`,
        appId: 'app_batching',
        recipientId: 'customer_a',
        messageId: `msg_${i}`,
        endpointId: 'ep_batching',
        status: i % 2 ? 'SUCCEEDED' : 'SENDING',
      }));
      const received: string[] = [];
      let all!: () => void;
      const done = new Promise<void>((resolve) => (all = resolve));
      const stop = subscriber.subscribeAttempts((event) => {
        received.push(event.attemptId);
        if (received.length === total) all();
      });
      try {
        // Published without waiting, as a worker does: each call resolves once its batch was sent.
        await Promise.all(events.map((event) => publisher.publishAttempt(event)));
        await done;
      } finally {
        stop();
      }
      expect(received).toEqual(events.map((e) => e.attemptId));
      await expect.poll(() => payloads.reduce((n, p) => n + (JSON.parse(p) as unknown[]).length, 0)).toBe(total);
      // A lone first event, then the rest in payloads filled up to the limit.
      expect(payloads.length).toBeLessThan(total / 10);
      for (const payload of payloads) expect(Buffer.byteLength(payload)).toBeLessThan(8000);
    } finally {
      await listener.end();
    }
  });

  it('still takes a single event as a payload (an older process, or anyone NOTIFYing on the channel), and ignores what is not an event', async () => {
    const received: string[] = [];
    let got!: () => void;
    const arrived = new Promise<void>((resolve) => (got = resolve));
    const stop = subscriber.subscribeMessages((event) => {
      received.push(event.messageId);
      if (event.messageId === 'msg_last') got();
    });
    try {
      const one = { kind: 'message', messageId: 'msg_single', appId: 'app_x', recipientId: 'customer_a' };
      await pool.query('SELECT pg_notify($1, $2)', [LIVE_CHANNEL, JSON.stringify(one)]);
      await pool.query('SELECT pg_notify($1, $2)', [
        LIVE_CHANNEL,
        JSON.stringify([{ kind: 'nope' }, 42, { ...one, messageId: 'msg_last' }]),
      ]);
      await pool.query('SELECT pg_notify($1, $2)', [LIVE_CHANNEL, 'not json']);
      await arrived;
    } finally {
      stop();
    }
    expect(received).toEqual(['msg_single', 'msg_last']);
  });
});
