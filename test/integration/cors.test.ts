import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { loadConfig } from '../../src/config.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';

/**
 * Issue 12, item 7: CORS reflected any Origin with credentials and the
 * WebSocket accepted any Origin. Now only Dispatch's own origin (its portal
 * and dashboard) and those listed in DISPATCH_CORS_ORIGINS may call the API
 * from a browser, over HTTP, SSE and WebSocket alike; backends send no Origin.
 */
const LISTED = 'https://app.example.com';
const FOREIGN = 'https://evil.example';

describe('browser origins (DISPATCH_CORS_ORIGINS)', () => {
  let t: TestDispatch;

  beforeAll(async () => {
    t = await startTestDispatch({ DISPATCH_CORS_ORIGINS: `${LISTED}, http://localhost:5173` });
  });
  afterAll(async () => t?.stop());

  const query = (headers: Record<string, string>) =>
    fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${t.apiKey}`, ...headers },
      body: JSON.stringify({ query: '{ viewer { kind } }' }),
    });

  /** Opens a graphql-ws socket from `origin`; resolves with the upgrade's status (101 when accepted). */
  const upgradeFrom = (origin: string) =>
    new Promise<number>((resolve, reject) => {
      const socket = new WebSocket(`${t.url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws', { origin });
      socket.once('open', () => {
        socket.close();
        resolve(101);
      });
      socket.once('unexpected-response', (_req, res) => {
        resolve(res.statusCode ?? 0);
        socket.terminate();
      });
      socket.once('error', reject);
    });

  it('answers requests without an Origin (backends) and from Dispatch itself (the portal) as before, without CORS headers', async () => {
    const origins: Record<string, string>[] = [
      {},
      { origin: t.url },
      { origin: t.url.replace('127.0.0.1', 'localhost') },
    ];
    for (const headers of origins) {
      // (localhost:port is PUBLIC_URL's origin here, not the host the request went to: Dispatch's own all the same.)
      const response = await query(headers);
      expect(await response.json(), JSON.stringify(headers)).toEqual({ data: { viewer: { kind: 'OPERATOR' } } });
      expect(response.headers.get('access-control-allow-origin')).toBeNull();
    }
    expect(await upgradeFrom(t.url)).toBe(101);
  });

  it('refuses another origin over HTTP, its preflight, SSE and the WebSocket upgrade: 403 FORBIDDEN, no CORS headers', async () => {
    const post = await query({ origin: FOREIGN });
    expect(post.status).toBe(403);
    expect(post.headers.get('access-control-allow-origin')).toBeNull();
    expect(post.headers.get('access-control-allow-credentials')).toBeNull();
    const body = (await post.json()) as { errors: { message: string; extensions: { code: string } }[] };
    expect(body.errors.map((e) => e.extensions.code)).toEqual(['FORBIDDEN']);
    expect(body.errors[0]?.message).toContain('DISPATCH_CORS_ORIGINS');

    const preflight = await fetch(`${t.url}/graphql`, {
      method: 'OPTIONS',
      headers: {
        origin: FOREIGN,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      },
    });
    expect(preflight.status).toBe(403);
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();

    const sse = await query({ origin: FOREIGN, accept: 'text/event-stream' });
    expect(sse.status).toBe(403);

    expect(await upgradeFrom(FOREIGN)).toBe(403);
    expect(await upgradeFrom('null')).toBe(403);
  });

  it('lets a listed origin in, with CORS headers naming it and no credentials', async () => {
    const preflight = await fetch(`${t.url}/graphql`, {
      method: 'OPTIONS',
      headers: {
        origin: LISTED,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(LISTED);
    expect(preflight.headers.get('access-control-allow-headers')).toContain('authorization');
    expect(preflight.headers.get('access-control-allow-credentials')).toBeNull();

    const post = await query({ origin: LISTED });
    expect(await post.json()).toEqual({ data: { viewer: { kind: 'OPERATOR' } } });
    expect(post.headers.get('access-control-allow-origin')).toBe(LISTED);
    expect(post.headers.get('access-control-allow-credentials')).toBeNull();

    expect(await upgradeFrom(LISTED)).toBe(101);
    expect(await upgradeFrom('http://localhost:5173')).toBe(101);
  });

  it('reads the setting once: none by default, origins only (no paths, no wildcards)', () => {
    expect(loadConfig({}).corsOrigins).toEqual([]);
    expect(loadConfig({ DISPATCH_CORS_ORIGINS: 'https://a.example/, http://b.example:8080' }).corsOrigins).toEqual([
      'https://a.example',
      'http://b.example:8080',
    ]);
    for (const bad of ['*', 'https://a.example/portal', 'a.example', 'ftp://a.example']) {
      expect(() => loadConfig({ DISPATCH_CORS_ORIGINS: bad }), bad).toThrow(/DISPATCH_CORS_ORIGINS/);
    }
  });
});
