import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectDatabase, type Database } from '../../src/db/client.ts';
import { createApiKey } from '../../src/domain/api-keys.ts';
import { createTestDatabase } from '../support/database.ts';
import { subscribeWs, wsClient } from '../support/live.ts';
import { type DispatchProcess, spawnDispatch } from '../support/process.ts';

/**
 * Issue 12, item 1: a stranger without a token POSTing 2 MB documents of
 * repeated fields (each new, by a random comment) once grew the heap to
 * 3.8 GB and killed the process, stalling /healthz for seconds per request.
 * Dispatch runs as its own process here, so its resident memory is its own
 * and a crash cannot take the test runner with it.
 */
const DOCUMENT_BYTES = 2_000_000;

function repeatedFields(): string {
  const head = `# ${randomBytes(16).toString('hex')}\n{ `;
  const field = 'viewer { kind } ';
  return `${head}${field.repeat(Math.floor((DOCUMENT_BYTES - head.length - 1) / field.length))}}`;
}

async function residentBytes(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const match = /^dispatch_process_resident_memory_bytes (\d+)/m.exec(text);
  if (!match) throw new Error('no dispatch_process_resident_memory_bytes in /metrics');
  return Number(match[1]);
}

describe('oversized documents', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Database;
  let api: DispatchProcess;
  let apiKey: string;

  beforeAll(async () => {
    database = await createTestDatabase();
    db = connectDatabase(database.url, { max: 2 });
    api = await spawnDispatch({ DATABASE_URL: database.url, DISPATCH_ROLE: 'api' });
    apiKey = (await createApiKey(db.prisma, { workspaceName: 'Oversized documents' })).token;
  }, 90_000);

  afterAll(async () => {
    await api?.stop();
    await db?.close();
    await database?.drop();
  });

  /** Sends one document beside a /healthz probe; both times in ms. */
  async function send(authorization: string | undefined) {
    const body = JSON.stringify({ query: repeatedFields() });
    const started = performance.now();
    const health = fetch(`${api.url}/healthz`).then(async (r) => {
      await r.text();
      return { status: r.status, ms: performance.now() - started };
    });
    const response = await fetch(`${api.url}/graphql`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        // GraphQL over HTTP's media type, under which a refused document answers 400 (application/json: 200).
        accept: 'application/graphql-response+json',
        ...(authorization ? { authorization } : {}),
      },
      body,
    });
    const result = (await response.json()) as { errors?: { message: string; extensions?: { code?: string } }[] };
    return { status: response.status, result, ms: performance.now() - started, health: await health };
  }

  it('answers 30 without a token and 30 with one, each at once, with memory and /healthz unaffected', async () => {
    // One small request first, so what start-up and the first request allocate is not counted.
    const warm = await fetch(`${api.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
      body: JSON.stringify({ query: '{ viewer { kind } }' }),
    });
    expect(warm.status).toBe(200);
    const before = await residentBytes(api.url);

    const answers: { expected: string; status: number; code?: string; message?: string }[] = [];
    const times = { request: [] as number[], health: [] as number[] };
    const valid = `Bearer ${apiKey}`;
    // 30 without a valid token (20 with none, 10 with a made-up one), then 30 with a valid one.
    const tokens = [...Array(20).fill(undefined), ...Array(10).fill('Bearer dk_not-a-key'), ...Array(30).fill(valid)];
    for (const authorization of tokens) {
      const { status, result, ms, health } = await send(authorization);
      answers.push({
        expected: authorization === valid ? '400 BAD_USER_INPUT' : '401 UNAUTHENTICATED',
        status,
        code: result.errors?.[0]?.extensions?.code,
        message: result.errors?.[0]?.message,
      });
      expect(health.status).toBe(200);
      times.request.push(ms);
      times.health.push(health.ms);
    }
    const grown = (await residentBytes(api.url)) - before;
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
    const slowest = { request: Math.max(...times.request), health: Math.max(...times.health) };
    console.log(
      `oversized documents: answers median ${median(times.request).toFixed(0)} ms, slowest ${slowest.request.toFixed(0)} ms; /healthz median ${median(times.health).toFixed(0)} ms, slowest ${slowest.health.toFixed(0)} ms; resident memory grew ${(grown / 1024 / 1024).toFixed(1)} MB`,
    );
    for (const answer of answers) {
      expect(`${answer.status} ${answer.code}`).toBe(answer.expected);
      // A clear refusal, before the document is parsed in full.
      if (answer.status === 400) expect(answer.message).toMatch(/more than \d+ tokens/);
    }
    // Well under a second, with margin for a busy machine (the 2 MB upload itself takes a few ms); before,
    // each took seconds and stalled /healthz as long.
    expect(median(times.request)).toBeLessThan(500);
    expect(median(times.health)).toBeLessThan(500);
    expect(slowest.request).toBeLessThan(2_000);
    expect(slowest.health).toBeLessThan(2_000);
    expect(grown).toBeLessThan(100 * 1024 * 1024);
    // Still serving.
    const after = await fetch(`${api.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
      body: JSON.stringify({ query: '{ viewer { kind } }' }),
    });
    expect(await after.json()).toEqual({ data: { viewer: { kind: 'OPERATOR' } } });
  }, 180_000);

  it('refuses such a document over graphql-ws too, and the socket carries on', async () => {
    const client = wsClient(api.url, apiKey);
    try {
      const refused = subscribeWs<unknown>(client, repeatedFields());
      await refused.until((feed) => feed.ended !== undefined, 10_000, 'the oversized subscription');
      expect(refused.results.flatMap((r) => r.errors ?? []).map((e) => e.extensions?.code)).toEqual(['BAD_USER_INPUT']);
      const viewer = subscribeWs<{ viewer: { kind: string } }>(client, '{ viewer { kind } }');
      expect(await viewer.nextData(10_000)).toEqual({ viewer: { kind: 'OPERATOR' } });
    } finally {
      await client.dispose();
    }
  });
});
