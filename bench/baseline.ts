/**
 * The two baselines Dispatch is measured against, one process each, driven by
 * bench/run.ts over IPC. Both do the work Dispatch does per message and per
 * delivery, on their own tables (schemas bench_sql and bench_pipeline) in the same
 * PostgreSQL, and POST to the same receiver:
 *
 * - pgboss: the obvious hand-rolled pipeline. Per message, a transaction
 *   inserts the message row and one pg-boss job per endpoint with `send()`;
 *   a pg-boss `work` handler loads message and endpoint, POSTs with an HMAC
 *   signature, inserts an attempt row, and returning completes the jobs.
 *   Configured as its documentation suggests for throughput (LISTEN/NOTIFY
 *   wake-up, batches of 50, burst while batches are full, 4 local workers),
 *   so it is a fair pipeline, not a strawman.
 * - sql: the plain-SQL floor. Per message, a transaction inserts the message
 *   and its delivery rows, then wakes the claim loops; 4 claim loops take 100 deliveries at a
 *   time with FOR UPDATE SKIP LOCKED, POST them, then write the attempts and
 *   the deliveries' outcome in one statement. No queue library.
 */
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { Agent, request } from 'undici';
import { newId } from '../src/domain/ids.ts';
import { generateSecret, sign } from '../src/webhooks/signing.ts';

export type BaselineMode = 'pgboss' | 'sql';

export type BaselineCommand =
  | { cmd: 'setup'; mode: BaselineMode; databaseUrl: string; receiverUrl: string; recipients: number }
  | { cmd: 'batch'; id: number; fanout: 1 | 3; n: number; tag: string; concurrency: number }
  | { cmd: 'rate'; id: number; fanout: 1 | 3; rate: number; seconds: number; tag: string }
  | { cmd: 'stop' };

export type BaselineReply =
  | { id: 0; ready: true }
  | { id: number; firstSendAt: number; lastReturnedAt: number; errors: number }
  | { id: number; sentAt: Record<string, number>; returnedAt: Record<string, number>; errors: number };

/** Each baseline's own tables, so both can be set up at once (bench/run.ts measures in rounds). */
let SCHEMA = 'bench_sql';
const QUEUE = 'bench-delivery';
const WORKERS = 4;
const CLAIM = 100;
const now = () => performance.timeOrigin + performance.now();

let mode: BaselineMode;
let pool: pg.Pool;
let boss: PgBoss | undefined;
let stopClaims: (() => Promise<void>) | undefined;
const agent = new Agent({ connections: 128, keepAliveTimeout: 30_000, pipelining: 1 });

interface Delivery {
  id: string;
  messageId: string;
  endpointId: string;
  url: string;
  secret: string;
  eventType: string;
  data: unknown;
}

/** Signs and POSTs one delivery the way a webhook sender must; returns status and duration. */
async function post(d: Delivery): Promise<{ status: number; durationMs: number }> {
  const started = performance.now();
  const body = JSON.stringify({ type: d.eventType, timestamp: new Date().toISOString(), data: d.data });
  const timestamp = Math.floor(Date.now() / 1000);
  try {
    const res = await request(d.url, {
      method: 'POST',
      dispatcher: agent,
      headers: {
        'content-type': 'application/json',
        'webhook-id': d.messageId,
        'webhook-timestamp': String(timestamp),
        'webhook-signature': sign({ msgId: d.messageId, timestamp, body, secrets: [d.secret] }),
      },
      body,
      headersTimeout: 15_000,
      bodyTimeout: 15_000,
    });
    await res.body.text();
    return { status: res.statusCode, durationMs: Math.round(performance.now() - started) };
  } catch {
    return { status: 0, durationMs: Math.round(performance.now() - started) };
  }
}

async function setup(command: Extract<BaselineCommand, { cmd: 'setup' }>) {
  mode = command.mode;
  pool = new pg.Pool({ connectionString: command.databaseUrl, max: 48 });
  SCHEMA = mode === 'sql' ? 'bench_sql' : 'bench_pipeline';
  await pool.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
  if (mode === 'pgboss') await pool.query(`DROP SCHEMA IF EXISTS bench_pgboss CASCADE`);
  await pool.query(`CREATE SCHEMA ${SCHEMA}`);
  await pool.query(`
    CREATE TABLE ${SCHEMA}.endpoint (id text PRIMARY KEY, recipient text NOT NULL, url text NOT NULL, secret text NOT NULL);
    CREATE INDEX ON ${SCHEMA}.endpoint (recipient);
    CREATE TABLE ${SCHEMA}.message (id text PRIMARY KEY, recipient text NOT NULL, event_type text NOT NULL, data jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
    CREATE TABLE ${SCHEMA}.delivery (
      id text PRIMARY KEY, message_id text NOT NULL REFERENCES ${SCHEMA}.message (id), endpoint_id text NOT NULL REFERENCES ${SCHEMA}.endpoint (id),
      status text NOT NULL DEFAULT 'pending', attempt_count int NOT NULL DEFAULT 0, next_attempt_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
    CREATE INDEX ON ${SCHEMA}.delivery (next_attempt_at, id) WHERE status = 'pending';
    CREATE TABLE ${SCHEMA}.attempt (
      id text PRIMARY KEY, message_id text NOT NULL REFERENCES ${SCHEMA}.message (id), endpoint_id text NOT NULL REFERENCES ${SCHEMA}.endpoint (id),
      delivery_id text, status_code int NOT NULL, duration_ms int NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
    CREATE INDEX ON ${SCHEMA}.attempt (message_id);
  `);
  // Recipients f1_<k> have one endpoint each, f3_<k> three.
  const rows: [string, string, string, string][] = [];
  for (let k = 0; k < command.recipients; k++) {
    rows.push([newId('Endpoint'), `f1_${k}`, `${command.receiverUrl}/hook/b1_${k}`, generateSecret()]);
    for (let e = 0; e < 3; e++)
      rows.push([newId('Endpoint'), `f3_${k}`, `${command.receiverUrl}/hook/b3_${k}_${e}`, generateSecret()]);
  }
  await pool.query(
    `INSERT INTO ${SCHEMA}.endpoint (id, recipient, url, secret) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])`,
    [rows.map((r) => r[0]), rows.map((r) => r[1]), rows.map((r) => r[2]), rows.map((r) => r[3])],
  );
  if (mode === 'pgboss') await startPgBoss(command.databaseUrl);
  else stopClaims = startClaimLoops();
}

async function startPgBoss(databaseUrl: string) {
  boss = new PgBoss({ connectionString: databaseUrl, schema: 'bench_pgboss', max: 20, useListenNotify: true });
  boss.on('error', (error) => process.stderr.write(`pg-boss: ${error}\n`));
  await boss.start();
  await boss.createQueue(QUEUE, { notify: true });
  await boss.work<{ messageId: string; endpointId: string }>(
    QUEUE,
    { batchSize: 50, localConcurrency: WORKERS, pollingIntervalSeconds: 0.5, burstWhenBatchFull: true },
    async (jobs) => {
      await Promise.all(
        jobs.map(async (job) => {
          const { rows } = await pool.query<Delivery>(
            `SELECT m.id AS "messageId", e.id AS "endpointId", e.url, e.secret, m.event_type AS "eventType", m.data
             FROM ${SCHEMA}.message m, ${SCHEMA}.endpoint e WHERE m.id = $1 AND e.id = $2`,
            [job.data.messageId, job.data.endpointId],
          );
          const d = rows[0]!;
          const result = await post(d);
          await pool.query(
            `INSERT INTO ${SCHEMA}.attempt (id, message_id, endpoint_id, delivery_id, status_code, duration_ms) VALUES ($1, $2, $3, $4, $5, $6)`,
            [newId('Attempt'), d.messageId, d.endpointId, job.id, result.status, result.durationMs],
          );
          if (result.status < 200 || result.status > 299) throw new Error(`HTTP ${result.status}`);
        }),
      );
    },
  );
}

const sleepers = new Set<() => void>();
function wakeClaims() {
  for (const wake of sleepers) wake();
  sleepers.clear();
}

function startClaimLoops(): () => Promise<void> {
  let stopped = false;
  const loop = async () => {
    while (!stopped) {
      const { rows } = await pool.query<Delivery>(
        `WITH claimed AS (
           SELECT id FROM ${SCHEMA}.delivery WHERE status = 'pending' AND next_attempt_at <= now()
           ORDER BY next_attempt_at, id LIMIT ${CLAIM} FOR UPDATE SKIP LOCKED
         ), marked AS (
           UPDATE ${SCHEMA}.delivery d SET status = 'sending', attempt_count = attempt_count + 1, updated_at = now()
           FROM claimed WHERE d.id = claimed.id RETURNING d.id, d.message_id, d.endpoint_id
         )
         SELECT marked.id, m.id AS "messageId", e.id AS "endpointId", e.url, e.secret, m.event_type AS "eventType", m.data
         FROM marked JOIN ${SCHEMA}.message m ON m.id = marked.message_id JOIN ${SCHEMA}.endpoint e ON e.id = marked.endpoint_id`,
      );
      if (rows.length === 0) {
        // Woken by the producer after its commit, or a slow poll as a backstop.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 250);
          sleepers.add(() => {
            clearTimeout(timer);
            resolve();
          });
        });
        continue;
      }
      const results = await Promise.all(rows.map(post));
      await pool.query(
        `WITH a AS (
           INSERT INTO ${SCHEMA}.attempt (id, message_id, endpoint_id, delivery_id, status_code, duration_ms)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[])
         )
         UPDATE ${SCHEMA}.delivery d SET status = CASE WHEN r.code BETWEEN 200 AND 299 THEN 'succeeded' ELSE 'pending' END,
           next_attempt_at = now() + interval '5 seconds', updated_at = now()
         FROM unnest($4::text[], $5::int[]) AS r(id, code) WHERE d.id = r.id`,
        [
          rows.map(() => newId('Attempt')),
          rows.map((d) => d.messageId),
          rows.map((d) => d.endpointId),
          rows.map((d) => d.id),
          results.map((r) => r.status),
          results.map((r) => r.durationMs),
        ],
      );
    }
  };
  const loops = Array.from({ length: WORKERS }, loop);
  return async () => {
    stopped = true;
    wakeClaims();
    await Promise.allSettled(loops);
  };
}

/** Stores one message and what delivers it, in one transaction. */
async function produce(seq: string, recipient: string): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const messageId = newId('Message');
    await client.query(
      `INSERT INTO ${SCHEMA}.message (id, recipient, event_type, data) VALUES ($1, $2, 'bench.event', $3)`,
      [messageId, recipient, JSON.stringify({ seq, amount: 4200, currency: 'EUR', customer: recipient })],
    );
    const endpoints = await client.query<{ id: string }>(
      `SELECT id FROM ${SCHEMA}.endpoint WHERE recipient = $1 ORDER BY id`,
      [recipient],
    );
    if (mode === 'pgboss') {
      const db = { executeSql: (text: string, values?: unknown[]) => client.query(text, values) };
      for (const e of endpoints.rows) await boss!.send(QUEUE, { messageId, endpointId: e.id }, { db });
    } else {
      await client.query(
        `INSERT INTO ${SCHEMA}.delivery (id, message_id, endpoint_id) SELECT unnest($1::text[]), $2, unnest($3::text[])`,
        [endpoints.rows.map(() => newId('Delivery')), messageId, endpoints.rows.map((e) => e.id)],
      );
    }
    await client.query('COMMIT');
    // Producer and claim loops share this process, so waking them needs no
    // NOTIFY (whose commit-time lock would serialise every producer).
    if (mode === 'sql') wakeClaims();
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

const recipientsCount = { value: 50 };
const recipientFor = (fanout: 1 | 3, n: number) => `f${fanout}_${n % recipientsCount.value}`;

async function batch(command: Extract<BaselineCommand, { cmd: 'batch' }>): Promise<BaselineReply> {
  let next = 0;
  let errors = 0;
  const firstSendAt = now();
  await Promise.all(
    Array.from({ length: command.concurrency }, async () => {
      while (next < command.n) {
        const n = next++;
        await produce(`${command.tag}:${n}`, recipientFor(command.fanout, n)).catch(() => errors++);
      }
    }),
  );
  return { id: command.id, firstSendAt, lastReturnedAt: now(), errors };
}

async function rate(command: Extract<BaselineCommand, { cmd: 'rate' }>): Promise<BaselineReply> {
  const total = Math.round(command.rate * command.seconds);
  const sentAt: Record<string, number> = {};
  const returnedAt: Record<string, number> = {};
  let errors = 0;
  const start = now() + 20;
  const pending: Promise<void>[] = [];
  for (let n = 0; n < total; n++) {
    const due = start + (n * 1000) / command.rate;
    const wait = due - now();
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    const seq = `${command.tag}:${n}`;
    sentAt[seq] = now();
    pending.push(
      produce(seq, recipientFor(command.fanout, n)).then(
        () => {
          returnedAt[seq] = now();
        },
        () => {
          errors++;
        },
      ),
    );
  }
  await Promise.all(pending);
  return { id: command.id, sentAt, returnedAt, errors };
}

process.on('message', (command: BaselineCommand) => {
  const reply = (message: BaselineReply) => process.send?.(message);
  const fail = (error: unknown) => {
    process.stderr.write(`baseline: ${(error as Error).stack ?? error}\n`);
    process.exit(1);
  };
  if (command.cmd === 'setup') {
    recipientsCount.value = command.recipients;
    setup(command).then(() => reply({ id: 0, ready: true }), fail);
  } else if (command.cmd === 'batch') batch(command).then(reply, fail);
  else if (command.cmd === 'rate') rate(command).then(reply, fail);
  else {
    void (async () => {
      await stopClaims?.();
      await boss?.stop({ graceful: false, wait: false } as never).catch(() => undefined);
      await pool?.end().catch(() => undefined);
      await agent.close();
      process.exit(0);
    })();
  }
});
process.on('disconnect', () => process.exit(0));
