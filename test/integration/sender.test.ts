import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSender, DEFAULT_USER_AGENT, RESPONSE_BODY_LIMIT, type Sender } from '../../src/delivery/sender.ts';
import { createAddressPolicy, type Resolver } from '../../src/webhooks/outbound-safety.ts';
import { generateSecret, signatureHeaders } from '../../src/webhooks/signing.ts';

interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A receiver on 127.0.0.1 that behaves according to the request path. */
async function startReceiver() {
  const received: Received[] = [];
  const connections = new Set<net.Socket>();
  let connectionCount = 0;
  let endlessClosed: Promise<void> = Promise.resolve();

  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const path = req.url ?? '/';
    received.push({ path, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });

    switch (path) {
      case '/ok':
        res.writeHead(200, { 'content-type': 'text/plain' }).end('thanks');
        return;
      case '/accepted':
        res.writeHead(204).end();
        return;
      case '/fail':
        res.writeHead(500).end('boom');
        return;
      case '/moved':
        res.writeHead(302, { location: `http://127.0.0.1:${port()}/ok` }).end();
        return;
      case '/slow-down':
        res.writeHead(429, { 'retry-after': '120' }).end('too many');
        return;
      case '/unavailable':
        res.writeHead(503, { 'retry-after': 'Wed, 21 Oct 2037 07:28:00 GMT' }).end();
        return;
      case '/hang':
        return; // never answers
      case '/destroy':
        req.socket.destroy();
        return;
      case '/reset':
        req.socket.resetAndDestroy();
        return;
      case '/big':
        res.writeHead(200).end('x'.repeat(40_000));
        return;
      case '/exact':
        res.writeHead(200).end('y'.repeat(RESPONSE_BODY_LIMIT));
        return;
      case '/multibyte':
        // A three-byte character straddles the 16 KiB cut.
        res.writeHead(200).end(`${'a'.repeat(RESPONSE_BODY_LIMIT - 1)}€${'b'.repeat(100)}`);
        return;
      case '/nul':
        res.writeHead(200).end('a\u0000b');
        return;
      case '/echo':
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true }));
        return;
      case '/endless': {
        res.writeHead(200, { 'content-type': 'text/plain' });
        endlessClosed = once(res, 'close').then(() => undefined);
        const chunk = Buffer.alloc(1024, 'z');
        const pump = () => {
          while (!res.destroyed && res.write(chunk));
        };
        res.on('drain', pump);
        pump();
        return;
      }
      case '/trickle': {
        res.writeHead(200);
        const interval = setInterval(() => res.write('t'), 20);
        res.on('close', () => clearInterval(interval));
        return;
      }
      default:
        res.writeHead(404).end();
    }
  });
  server.on('connection', (socket) => {
    connectionCount++;
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = () => (server.address() as net.AddressInfo).port;

  return {
    url: (path: string) => `http://127.0.0.1:${port()}${path}`,
    port,
    received,
    paths: () => received.map((r) => r.path),
    connectionCount: () => connectionCount,
    endlessClosed: () => endlessClosed,
    close: async () => {
      server.closeAllConnections();
      for (const socket of connections) socket.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

/** A TCP server that answers every connection with bytes that are not HTTP. */
async function startGarbageServer() {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.resume(); // read the request, so the client's close is seen
    socket.end('SSH-2.0-OpenSSH_9.6\r\n\r\n');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

/** A port on 127.0.0.1 that nothing listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

const LOOPBACK = createAddressPolicy(['127.0.0.0/8', '::1/128']);
const JSON_BODY = JSON.stringify({
  type: 'invoice.paid',
  timestamp: '2026-01-01T00:00:00.000Z',
  data: { id: 'inv_1' },
});

describe('sending one webhook', () => {
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let garbage: Awaited<ReturnType<typeof startGarbageServer>>;
  let sender: Sender;
  let strictSender: Sender;

  beforeAll(async () => {
    receiver = await startReceiver();
    garbage = await startGarbageServer();
    sender = createSender({ policy: LOOPBACK });
    strictSender = createSender({ policy: createAddressPolicy() });
  });

  afterAll(async () => {
    await sender?.close();
    await strictSender?.close();
    await receiver?.close();
    await garbage?.close();
  });

  const post = (path: string, timeoutMs = 5_000, headers: Record<string, string> = {}) =>
    sender.send({ url: receiver.url(path), headers, body: JSON_BODY, timeoutMs });

  it('succeeds on 200 and keeps the response body', async () => {
    const result = await post('/ok');
    expect(result).toMatchObject({
      ok: true,
      statusCode: 200,
      responseBody: 'thanks',
      responseBodyTruncated: false,
      retryAfter: null,
    });
    expect(result.errorKind).toBeUndefined();
    expect(result.error).toBeUndefined();
    expect(result.durationMs).toBeGreaterThanOrEqual(0);
    expect(result.durationMs).toBeLessThan(5_000);
  });

  it('counts any 2xx as success', async () => {
    expect(await post('/accepted')).toMatchObject({ ok: true, statusCode: 204, responseBody: '' });
  });

  it('fails on 500 with the status and the body', async () => {
    expect(await post('/fail')).toMatchObject({
      ok: false,
      statusCode: 500,
      responseBody: 'boom',
      errorKind: 'http_status',
      error: 'receiver answered HTTP 500',
    });
  });

  it('does not follow a redirect and says where it pointed', async () => {
    const before = receiver.paths().filter((p) => p === '/ok').length;
    const result = await post('/moved');
    expect(result).toMatchObject({ ok: false, statusCode: 302, errorKind: 'redirect' });
    expect(result.error).toContain(`to http://127.0.0.1:${receiver.port()}/ok not followed`);
    expect(receiver.paths().filter((p) => p === '/ok').length).toBe(before);
  });

  it('surfaces Retry-After on 429 and 503', async () => {
    expect(await post('/slow-down')).toMatchObject({
      ok: false,
      statusCode: 429,
      errorKind: 'http_status',
      retryAfter: '120',
    });
    expect(await post('/unavailable')).toMatchObject({
      ok: false,
      statusCode: 503,
      retryAfter: 'Wed, 21 Oct 2037 07:28:00 GMT',
    });
  });

  it('times out a receiver that never answers, on time', async () => {
    const result = await post('/hang', 300);
    expect(result).toMatchObject({ ok: false, errorKind: 'timeout' });
    expect(result.statusCode).toBeUndefined();
    expect(result.error).toMatch(/300 ms/);
    expect(result.durationMs).toBeGreaterThanOrEqual(290);
    expect(result.durationMs).toBeLessThan(1_500);
  });

  it('times out while the name is still resolving', async () => {
    // DNS that answers only after a second: undici would wait for the
    // connection before noticing an abort, so the timer must win on its own.
    const slowDns: Resolver = (_hostname, _options, callback) => {
      setTimeout(() => callback(null, [{ address: '127.0.0.1', family: 4 }]), 1_000);
    };
    const slow = createSender({ policy: LOOPBACK, resolver: slowDns });
    try {
      const result = await slow.send({
        url: `http://slow-dns.test:${receiver.port()}/ok`,
        headers: {},
        body: '{}',
        timeoutMs: 300,
      });
      expect(result).toMatchObject({ ok: false, errorKind: 'timeout' });
      expect(result.durationMs).toBeLessThan(900);
    } finally {
      await slow.close();
    }
  });

  it('reports a closed port as connection refused', async () => {
    const port = await closedPort();
    const result = await sender.send({ url: `http://127.0.0.1:${port}/`, headers: {}, body: '{}', timeoutMs: 5_000 });
    expect(result).toMatchObject({ ok: false, errorKind: 'connection_refused' });
    expect(result.error).toMatch(/connection refused.*ECONNREFUSED/);
  });

  it('reports a receiver that drops the connection as a reset', async () => {
    expect(await post('/destroy')).toMatchObject({ ok: false, errorKind: 'connection_reset' });
    const reset = await post('/reset');
    expect(reset).toMatchObject({ ok: false, errorKind: 'connection_reset' });
    expect(reset.statusCode).toBeUndefined();
  });

  it('reports bytes that are not HTTP as an invalid response', async () => {
    const result = await sender.send({
      url: `http://127.0.0.1:${garbage.port}/`,
      headers: {},
      body: '{}',
      timeoutMs: 5_000,
    });
    expect(result).toMatchObject({ ok: false, errorKind: 'invalid_response' });
    expect(result.error).toMatch(/^response is not valid HTTP/);
  });

  it('keeps the first 16 KiB of a long body', async () => {
    const big = await post('/big');
    expect(big).toMatchObject({ ok: true, responseBodyTruncated: true });
    expect(big.responseBody).toBe('x'.repeat(RESPONSE_BODY_LIMIT));
    const exact = await post('/exact');
    expect(exact).toMatchObject({ ok: true, responseBodyTruncated: false });
    expect(exact.responseBody).toHaveLength(RESPONSE_BODY_LIMIT);
  });

  it('cuts a long body between characters, never inside one', async () => {
    const result = await post('/multibyte');
    expect(result.responseBody).toBe('a'.repeat(RESPONSE_BODY_LIMIT - 1));
    expect(result.responseBody).not.toContain('\uFFFD');
  });

  it('stores NUL bytes as U+FFFD, which PostgreSQL text can hold', async () => {
    expect((await post('/nul')).responseBody).toBe('a\uFFFDb');
  });

  it('stops reading an endless body at 16 KiB and closes the connection', async () => {
    const result = await post('/endless', 10_000);
    expect(result).toMatchObject({ ok: true, statusCode: 200, responseBodyTruncated: true });
    expect(result.responseBody).toBe('z'.repeat(RESPONSE_BODY_LIMIT));
    expect(result.durationMs).toBeLessThan(2_000);
    // The receiver sees its response stream closed: Dispatch is not reading on.
    await expect(
      Promise.race([
        receiver.endlessClosed(),
        new Promise((_, reject) => setTimeout(() => reject(new Error('still open')), 2_000)),
      ]),
    ).resolves.toBeUndefined();
  });

  it('bounds a body that trickles forever by the timeout, keeping the 2xx', async () => {
    const result = await post('/trickle', 300);
    expect(result).toMatchObject({ ok: true, statusCode: 200, responseBodyTruncated: true });
    expect(result.responseBody).toMatch(/^t*$/);
    expect(result.durationMs).toBeGreaterThanOrEqual(290);
    expect(result.durationMs).toBeLessThan(1_500);
  });

  it('delivers the body, the custom headers and a signature receivers verify', async () => {
    const secret = generateSecret();
    const signed = signatureHeaders({
      msgId: 'msg_sender_test',
      timestamp: Math.floor(Date.now() / 1000),
      body: JSON_BODY,
      secrets: [secret],
    });
    const result = await post('/echo', 5_000, {
      ...signed,
      'X-Tenant': 'acme',
      Authorization: 'Bearer receiver-token',
      // Framing and target belong to Dispatch; these must not get through.
      Host: 'internal.example',
      'Content-Length': '1',
      'Transfer-Encoding': 'chunked',
    });
    expect(result).toMatchObject({ ok: true, statusCode: 200 });

    const request = receiver.received.findLast((r) => r.path === '/echo')!;
    expect(request.body).toBe(JSON_BODY);
    expect(request.headers).toMatchObject({
      'content-type': 'application/json',
      'user-agent': DEFAULT_USER_AGENT,
      'x-tenant': 'acme',
      authorization: 'Bearer receiver-token',
      host: `127.0.0.1:${receiver.port()}`,
      'content-length': String(Buffer.byteLength(JSON_BODY)),
      'webhook-id': 'msg_sender_test',
    });
    expect(request.headers['transfer-encoding']).toBeUndefined();
    const asReceived = {
      'webhook-id': String(request.headers['webhook-id']),
      'webhook-timestamp': String(request.headers['webhook-timestamp']),
      'webhook-signature': String(request.headers['webhook-signature']),
    };
    expect(new Webhook(secret).verify(request.body, asReceived)).toEqual(JSON.parse(JSON_BODY));
  });

  it('reuses a kept-alive connection for the next POST to the same origin', async () => {
    await post('/ok');
    const before = receiver.connectionCount();
    await post('/ok');
    await post('/ok');
    expect(receiver.connectionCount()).toBe(before);
  });

  it('delivers to a host name once the address it resolves to is allowed', async () => {
    const result = await sender.send({
      url: `http://localhost:${receiver.port()}/ok`,
      headers: {},
      body: '{}',
      timeoutMs: 5_000,
    });
    expect(result).toMatchObject({ ok: true, statusCode: 200 });
  });

  describe('when loopback is not allowed', () => {
    it('refuses a literal loopback address before connecting', async () => {
      const requestsBefore = receiver.received.length;
      const connectionsBefore = receiver.connectionCount();
      for (const url of [
        receiver.url('/ok'),
        `http://[::1]:${receiver.port()}/ok`,
        `http://[::ffff:127.0.0.1]:${receiver.port()}/ok`,
      ]) {
        const result = await strictSender.send({ url, headers: {}, body: '{}', timeoutMs: 5_000 });
        expect(result, url).toMatchObject({ ok: false, errorKind: 'unsafe_address' });
        expect(result.error).toMatch(/loopback/);
      }
      expect(receiver.received.length).toBe(requestsBefore);
      expect(receiver.connectionCount()).toBe(connectionsBefore);
    });

    it('refuses a host name that resolves to loopback, at connect time', async () => {
      // No create-time shortcut: a name the URL check cannot judge.
      const rebinding: Resolver = (_hostname, _options, callback) =>
        callback(null, [{ address: '127.0.0.1', family: 4 }]);
      const strict = createSender({ policy: createAddressPolicy(), resolver: rebinding });
      try {
        const requestsBefore = receiver.received.length;
        const connectionsBefore = receiver.connectionCount();
        const result = await strict.send({
          url: `http://rebind.example.com:${receiver.port()}/ok`,
          headers: {},
          body: '{}',
          timeoutMs: 5_000,
        });
        expect(result).toMatchObject({ ok: false, errorKind: 'unsafe_address' });
        expect(result.error).toMatch(/rebind\.example\.com resolves to 127\.0\.0\.1, which is a loopback address/);
        expect(receiver.received.length).toBe(requestsBefore);
        expect(receiver.connectionCount()).toBe(connectionsBefore);
      } finally {
        await strict.close();
      }
    });

    it('refuses localhost too', async () => {
      const result = await strictSender.send({
        url: `http://localhost:${receiver.port()}/ok`,
        headers: {},
        body: '{}',
        timeoutMs: 5_000,
      });
      expect(result).toMatchObject({ ok: false, errorKind: 'unsafe_address' });
    });
  });

  it('reports a request it cannot make (bad URL, bad header) as invalid, not as the receiver failing', async () => {
    const badUrl = await sender.send({ url: 'ftp://127.0.0.1/', headers: {}, body: '{}' });
    expect(badUrl).toMatchObject({ ok: false, errorKind: 'invalid_request' });
    const requestsBefore = receiver.received.length;
    const badHeader = await post('/ok', 5_000, { 'x-injected': 'a\r\nx-evil: 1' });
    expect(badHeader).toMatchObject({ ok: false, errorKind: 'invalid_request' });
    expect(receiver.received.length).toBe(requestsBefore);
  });

  it('reports a failed TLS handshake as a TLS error', async () => {
    // https to a plain-HTTP port: the handshake cannot succeed.
    const result = await sender.send({
      url: `https://127.0.0.1:${receiver.port()}/ok`,
      headers: {},
      body: '{}',
      timeoutMs: 5_000,
    });
    expect(result).toMatchObject({ ok: false, errorKind: 'tls' });
    expect(result.error).toMatch(/^TLS failed: wrong version number/);
  });

  it('reports a name that does not resolve as a DNS failure', async () => {
    const nxdomain: Resolver = (hostname, _options, callback) =>
      callback(
        Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), {
          code: 'ENOTFOUND',
          syscall: 'getaddrinfo',
          hostname,
        }),
        [],
      );
    const withNx = createSender({ policy: LOOPBACK, resolver: nxdomain });
    try {
      const result = await withNx.send({
        url: 'https://nx.example.com/hook',
        headers: {},
        body: '{}',
        timeoutMs: 5_000,
      });
      expect(result).toMatchObject({ ok: false, errorKind: 'dns' });
      expect(result.error).toMatch(/ENOTFOUND nx\.example\.com/);
    } finally {
      await withNx.close();
    }
  });
});
