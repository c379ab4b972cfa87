import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  AppsDocument,
  CreateAppDocument,
  createDispatchClient,
  DispatchClientError,
} from '../../packages/client/src/index.ts';

type Answer = 'drop' | { status: number; body: unknown };

/** A stand-in GraphQL server on 127.0.0.1 that answers from a script and records each request's body. */
describe('@dispatch/client retries', () => {
  let server: Server;
  let url: string;
  let script: Answer[];
  let bodies: { query: string; variables: { input?: { messageId?: string } } }[];

  beforeAll(async () => {
    server = createServer((req: IncomingMessage, res) => {
      let body = '';
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        bodies.push(JSON.parse(body));
        const answer = script.shift() ?? { status: 200, body: { data: null } };
        if (answer === 'drop') return req.socket.destroy();
        res.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  beforeEach(() => {
    bodies = [];
    script = [];
  });

  const unavailable: Answer = {
    status: 503,
    body: { errors: [{ message: 'the database is unavailable', extensions: { code: 'SERVICE_UNAVAILABLE' } }] },
  };
  const sent = (messageId: string) => ({
    status: 200,
    body: { data: { sendMessage: { deduplicated: true, message: { id: 'msg_1', messageId } } } },
  });
  const client = (retries = 5) =>
    createDispatchClient({ url, apiKey: 'dk_test', retry: { retries, baseDelayMs: 5, maxDelayMs: 20 } });
  const input = { appId: 'app_1', recipientId: 'r', eventType: 'invoice.paid', data: {} };

  it('sendMessage retries 503s, 5xx and dropped connections with one generated messageId', async () => {
    script = [unavailable, 'drop', { status: 502, body: 'bad gateway' }, sent('x')];
    const payload = await client().sendMessage(input);
    expect(payload.deduplicated).toBe(true);
    const ids = bodies.map((b) => b.variables.input?.messageId);
    expect(ids).toHaveLength(4);
    expect(ids[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(new Set(ids).size).toBe(1);
  });

  it("sendMessage keeps the caller's messageId, and gives up with the server's code after its retries", async () => {
    script = [unavailable, unavailable, unavailable];
    const error = await client(2)
      .sendMessage({ ...input, messageId: 'inv_1' })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DispatchClientError);
    expect((error as DispatchClientError).code).toBe('SERVICE_UNAVAILABLE');
    expect((error as DispatchClientError).status).toBe(503);
    expect(bodies.map((b) => b.variables.input?.messageId)).toEqual(['inv_1', 'inv_1', 'inv_1']);
  });

  it('retries a query, but sends any other mutation once', async () => {
    script = [unavailable, { status: 200, body: { data: { apps: { nodes: [], pageInfo: {} } } } }];
    await client().request(AppsDocument, {});
    expect(bodies).toHaveLength(2);

    bodies = [];
    script = [unavailable];
    const error = await client()
      .request(CreateAppDocument, { input: { name: 'once' } })
      .catch((e: unknown) => e);
    expect((error as DispatchClientError).code).toBe('SERVICE_UNAVAILABLE');
    expect(bodies).toHaveLength(1);
  });

  it('does not retry an answer that is the request’s fault', async () => {
    script = [{ status: 400, body: { errors: [{ message: 'bad', extensions: { code: 'BAD_USER_INPUT' } }] } }];
    const error = await client()
      .sendMessage(input)
      .catch((e: unknown) => e);
    expect((error as DispatchClientError).code).toBe('BAD_USER_INPUT');
    expect(bodies).toHaveLength(1);
  });

  it('a server that never answers is NETWORK_ERROR once the retries are spent', async () => {
    script = ['drop', 'drop', 'drop'];
    const error = await client(2)
      .request(AppsDocument, {})
      .catch((e: unknown) => e);
    expect((error as DispatchClientError).code).toBe('NETWORK_ERROR');
    expect((error as DispatchClientError).status).toBe(0);
    expect(bodies).toHaveLength(3);
  });
});
