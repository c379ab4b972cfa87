import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { authenticateApiKey, createApiKey, listApiKeys, revokeApiKey } from '../../src/domain/api-keys.ts';
import { DispatchError } from '../../src/domain/errors.ts';
import { openTestDatabase } from '../support/database.ts';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

describe('API keys', () => {
  let db: Database;
  const queries: string[] = [];
  beforeAll(async () => {
    db = await openTestDatabase({ onQuery: (sql) => queries.push(sql) });
  });
  afterAll(async () => db.close());

  const apiKeyWrites = () => queries.filter((sql) => /^\s*UPDATE\s+("public"\.)?"ApiKey"/i.test(sql)).length;

  it('a new key is dk_ + 43 base64url characters, stored only as its SHA-256, with a 10-character prefix', async () => {
    const created = await createApiKey(db.prisma, { workspaceName: 'Acme', name: 'production' });
    expect(created.token).toMatch(/^dk_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(created.token.slice(3), 'base64url')).toHaveLength(32);
    expect(created.workspace).toMatchObject({ name: 'Acme', id: expect.stringMatching(/^ws_/) });
    expect(created.workspaceCreated).toBe(true);
    expect(created.apiKey).toMatchObject({
      id: expect.stringMatching(/^key_/),
      workspaceId: created.workspace.id,
      name: 'production',
      prefix: created.token.slice(0, 10),
      lastUsedAt: null,
      revokedAt: null,
    });
    expect(created.apiKey).not.toHaveProperty('tokenHash');

    const { rows } = await db.pool.query('SELECT * FROM "ApiKey" WHERE id = $1', [created.apiKey.id]);
    expect(rows[0].tokenHash).toBe(sha256(created.token));
    expect(JSON.stringify(rows[0])).not.toContain(created.token.slice(10));
  });

  it('a second key for a known workspace name joins that workspace', async () => {
    const first = await createApiKey(db.prisma, { workspaceName: 'Reused' });
    const second = await createApiKey(db.prisma, { workspaceName: '  Reused ' });
    expect(second.workspace.id).toBe(first.workspace.id);
    expect(second.workspaceCreated).toBe(false);
    expect(second.token).not.toBe(first.token);
    expect(second.apiKey.name).toBeNull();
  });

  it('concurrent creations with one new workspace name all succeed and make one workspace', async () => {
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => createApiKey(db.prisma, { workspaceName: 'Racing', name: `key ${i}` })),
    );
    const workspaceIds = new Set(results.map((r) => r.workspace.id));
    expect(workspaceIds.size).toBe(1);
    expect(results.filter((r) => r.workspaceCreated)).toHaveLength(1);
    expect(await db.prisma.workspace.count({ where: { name: 'Racing' } })).toBe(1);
    expect(await db.prisma.apiKey.count({ where: { workspaceId: [...workspaceIds][0] } })).toBe(8);
  });

  it('a blank workspace name or key name is BAD_USER_INPUT', async () => {
    await expect(createApiKey(db.prisma, { workspaceName: '   ' })).rejects.toMatchObject({ code: 'BAD_USER_INPUT' });
    await expect(createApiKey(db.prisma, { workspaceName: 'Fine', name: '' })).rejects.toBeInstanceOf(DispatchError);
    expect(await db.prisma.workspace.count({ where: { name: 'Fine' } })).toBe(0);
  });

  it('a live key authenticates as its workspace; garbage, unknown and near-miss tokens do not', async () => {
    const { token, apiKey, workspace } = await createApiKey(db.prisma, { workspaceName: 'Auth' });
    expect(await authenticateApiKey(db.prisma, token)).toEqual({ workspaceId: workspace.id, apiKeyId: apiKey.id });

    const lastChar = token.at(-1) === 'A' ? 'B' : 'A';
    const rejected = [
      '',
      'garbage',
      `Bearer ${token}`,
      token.slice(0, -1),
      `${token}x`,
      token.slice(0, -1) + lastChar,
      `dpt_${token.slice(3)}`,
      `dk_${'A'.repeat(43)}`,
    ];
    for (const candidate of rejected) expect(await authenticateApiKey(db.prisma, candidate), candidate).toBeNull();
  });

  it('lastUsedAt is recorded on use, then at most once a minute', async () => {
    const { token, apiKey } = await createApiKey(db.prisma, { workspaceName: 'Usage' });
    const t0 = new Date();
    const writesBefore = apiKeyWrites();
    await authenticateApiKey(db.prisma, token, { now: t0 });
    const lastUsed = async () => (await db.prisma.apiKey.findUniqueOrThrow({ where: { id: apiKey.id } })).lastUsedAt;
    expect(await lastUsed()).toEqual(t0);

    // Many requests within the minute, past the cache: read, never written.
    for (let s = 2; s < 60; s += 2) {
      expect(await authenticateApiKey(db.prisma, token, { now: new Date(t0.getTime() + s * 1000) })).not.toBeNull();
    }
    expect(await lastUsed()).toEqual(t0);
    expect(apiKeyWrites() - writesBefore).toBe(1);

    const t1 = new Date(t0.getTime() + 61_000);
    await authenticateApiKey(db.prisma, token, { now: t1 });
    expect(await lastUsed()).toEqual(t1);
    expect(apiKeyWrites() - writesBefore).toBe(2);
  });

  it('revoking a key stops it at once in this process', async () => {
    const { token, apiKey, workspace } = await createApiKey(db.prisma, { workspaceName: 'Revoke' });
    expect(await authenticateApiKey(db.prisma, token)).not.toBeNull(); // now cached
    const revoked = await revokeApiKey(db.prisma, { workspaceId: workspace.id, id: apiKey.id });
    expect(revoked).toMatchObject({ id: apiKey.id, revokedAt: expect.any(Date) });
    expect(revoked).not.toHaveProperty('tokenHash');
    expect(await authenticateApiKey(db.prisma, token)).toBeNull();

    // Revoking again changes nothing.
    const again = await revokeApiKey(db.prisma, { workspaceId: workspace.id, id: apiKey.id });
    expect(again?.revokedAt).toEqual(revoked?.revokedAt);
  });

  it('a revocation made by another process takes effect within about a second', async () => {
    const { token, apiKey } = await createApiKey(db.prisma, { workspaceName: 'Elsewhere' });
    expect(await authenticateApiKey(db.prisma, token)).not.toBeNull();
    // Straight SQL: this process's cache hears nothing of it.
    await db.pool.query('UPDATE "ApiKey" SET "revokedAt" = now() WHERE id = $1', [apiKey.id]);
    const started = Date.now();
    while ((await authenticateApiKey(db.prisma, token)) !== null) {
      expect(Date.now() - started).toBeLessThan(1500);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });

  it('a key of another workspace, or no key, cannot be revoked: null, and the key stays live', async () => {
    const mine = await createApiKey(db.prisma, { workspaceName: 'Mine' });
    const theirs = await createApiKey(db.prisma, { workspaceName: 'Theirs' });
    expect(await revokeApiKey(db.prisma, { workspaceId: mine.workspace.id, id: theirs.apiKey.id })).toBeNull();
    expect(await revokeApiKey(db.prisma, { workspaceId: mine.workspace.id, id: 'key_missing' })).toBeNull();
    expect(await authenticateApiKey(db.prisma, theirs.token)).toEqual({
      workspaceId: theirs.workspace.id,
      apiKeyId: theirs.apiKey.id,
    });
    expect((await db.prisma.apiKey.findUniqueOrThrow({ where: { id: theirs.apiKey.id } })).revokedAt).toBeNull();
  });

  it("listing shows a workspace's own keys, oldest first, revoked ones marked, without token or hash", async () => {
    const a = await createApiKey(db.prisma, { workspaceName: 'Listed', name: 'a' });
    const b = await createApiKey(db.prisma, { workspaceName: 'Listed', name: 'b' });
    await createApiKey(db.prisma, { workspaceName: 'Unlisted' });
    await revokeApiKey(db.prisma, { workspaceId: a.workspace.id, id: a.apiKey.id });
    const keys = await listApiKeys(db.prisma, a.workspace.id);
    expect(keys.map((k) => [k.id, k.name, k.prefix, k.revokedAt === null])).toEqual([
      [a.apiKey.id, 'a', a.token.slice(0, 10), false],
      [b.apiKey.id, 'b', b.token.slice(0, 10), true],
    ]);
    for (const key of keys) {
      expect(key).not.toHaveProperty('tokenHash');
      expect(JSON.stringify(key)).not.toContain(a.token.slice(10));
      expect(JSON.stringify(key)).not.toContain(b.token.slice(10));
    }
  });
});
