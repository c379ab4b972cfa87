import { createPublicKey, verify } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { Webhook } from 'standardwebhooks';
import nacl from 'tweetnacl';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { createSender, type Sender } from '../../src/delivery/sender.ts';
import { createAddressPolicy, type Resolver } from '../../src/webhooks/outbound-safety.ts';
import { generateKeyPair, generateSecret, signatureHeaders } from '../../src/webhooks/signing.ts';
import { createDeliveryApp, send, settled } from '../support/delivery.ts';
import { startTestDispatch } from '../support/dispatch.ts';
import { type Received, type Receiver, startReceiver } from '../support/receiver.ts';

/**
 * A small HTTP CONNECT proxy on 127.0.0.1: it records every CONNECT target
 * and every connection made to it, resolves the names it is told about
 * itself (as a real proxy resolves names with its own DNS), and pipes the
 * tunnel. Targets in `refuse` get 403.
 */
async function startConnectProxy(names: Record<string, string> = {}, refuse: string[] = []) {
  const targets: string[] = [];
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = http.createServer((_req, res) => res.writeHead(405).end('CONNECT only'));
  server.on('connection', (socket: net.Socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    const target = req.url ?? '';
    targets.push(target);
    client.on('error', () => client.destroy());
    if (refuse.includes(target)) {
      client.end('HTTP/1.1 403 Forbidden\r\n\r\n');
      return;
    }
    const colon = target.lastIndexOf(':');
    const host = target.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
    const upstream = net.connect(Number(target.slice(colon + 1)), names[host] ?? host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on('error', () => client.destroy());
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    targets,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

type Proxy = Awaited<ReturnType<typeof startConnectProxy>>;

const LOOPBACK = createAddressPolicy(['127.0.0.0/8']);

const asReceived = (got: Received) => ({
  'webhook-id': String(got.headers['webhook-id']),
  'webhook-timestamp': String(got.headers['webhook-timestamp']),
  'webhook-signature': String(got.headers['webhook-signature']),
});

/** Whether a v1a signature of the webhook verifies with `publicKey`, by Node's crypto and by tweetnacl alike. */
function ed25519Verifies(got: Received, publicKey: string): boolean {
  const raw = Buffer.from(publicKey.slice('whpk_'.length), 'base64');
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
  const h = asReceived(got);
  const signed = Buffer.from(`${h['webhook-id']}.${h['webhook-timestamp']}.${got.body}`);
  const signatures = h['webhook-signature']
    .split(' ')
    .filter((part) => part.startsWith('v1a,'))
    .map((part) => Buffer.from(part.slice(4), 'base64'));
  const byNode = signatures.some((signature) => verify(null, signed, key, signature));
  expect(signatures.some((signature) => nacl.sign.detached.verify(signed, signature, raw))).toBe(byNode);
  return byNode;
}

describe('egress through an HTTP CONNECT proxy (DISPATCH_OUTBOUND_PROXY)', () => {
  let receiver: Receiver;
  let proxy: Proxy;
  const senders: Sender[] = [];
  const senderVia = (proxyUrl: string, options: { policy?: typeof LOOPBACK; resolver?: Resolver } = {}) => {
    const sender = createSender({ policy: options.policy ?? LOOPBACK, proxy: proxyUrl, resolver: options.resolver });
    senders.push(sender);
    return sender;
  };

  beforeAll(async () => {
    receiver = await startReceiver();
    proxy = await startConnectProxy({ 'hooks.example.test': '127.0.0.1' });
  });
  afterAll(async () => {
    await Promise.all(senders.map((s) => s.close()));
    await proxy.close();
    await receiver.close();
  });

  it('tunnels a delivery through the proxy with its body and signatures intact', async () => {
    const sender = senderVia(proxy.url);
    const secret = generateSecret();
    const pair = generateKeyPair();
    const body = '{"type":"invoice.paid","timestamp":"2026-12-06T12:00:00.000Z","data":{"note": "crème ✓"}}';
    const headers = signatureHeaders({
      msgId: 'msg_proxied',
      timestamp: Math.floor(Date.now() / 1000),
      body,
      secrets: [pair.privateKey, secret],
    });
    const before = receiver.received.length;
    const result = await sender.send({ url: receiver.url, headers: { ...headers, 'x-tenant': 'acme' }, body });
    expect(result).toMatchObject({ ok: true, statusCode: 200 });
    const { port } = new URL(receiver.url);
    expect(proxy.targets).toEqual([`127.0.0.1:${port}`]);
    const got = await receiver.nth(before + 1);
    expect(got.body).toBe(body);
    expect(got.headers['x-tenant']).toBe('acme');
    expect(() => new Webhook(secret).verify(got.body, asReceived(got))).not.toThrow();
    expect(ed25519Verifies(got, pair.publicKey)).toBe(true);
  });

  it('asks the proxy to CONNECT to the host name, after vetting what the name resolves to', async () => {
    const asked: string[] = [];
    const resolver: Resolver = (hostname, _options, callback) => {
      asked.push(hostname);
      callback(null, [{ address: '127.0.0.1', family: 4 }]);
    };
    const sender = senderVia(proxy.url, { resolver });
    const { port } = new URL(receiver.url);
    const targetsBefore = proxy.targets.length;
    const result = await sender.send({ url: `http://hooks.example.test:${port}/hook`, headers: {}, body: '{}' });
    expect(result).toMatchObject({ ok: true, statusCode: 200 });
    expect(asked).toEqual(['hooks.example.test']);
    expect(proxy.targets.slice(targetsBefore)).toEqual([`hooks.example.test:${port}`]);
  });

  it('refuses unsafe addresses before any CONNECT: literal, or a name resolving to one', async () => {
    const resolver: Resolver = (hostname, _options, callback) =>
      callback(null, [{ address: hostname === 'metadata.example.test' ? '169.254.169.254' : '10.1.2.3', family: 4 }]);
    const strict = senderVia(proxy.url, { policy: createAddressPolicy(), resolver });
    const { port } = new URL(receiver.url);
    const targetsBefore = proxy.targets.length;
    const connectionsBefore = proxy.connections();
    for (const [url, kind] of [
      [receiver.url, /loopback/],
      [`http://[::ffff:127.0.0.1]:${port}/hook`, /loopback/],
      [
        `http://internal.example.test:${port}/hook`,
        /internal\.example\.test resolves to 10\.1\.2\.3, which is a private address/,
      ],
      ['https://metadata.example.test/latest', /169\.254\.169\.254, which is a link-local address/],
    ] as const) {
      const result = await strict.send({ url, headers: {}, body: '{}', timeoutMs: 5_000 });
      expect(result, url).toMatchObject({ ok: false, errorKind: 'unsafe_address' });
      expect(result.error, url).toMatch(kind);
    }
    expect(proxy.targets.length).toBe(targetsBefore);
    expect(proxy.connections()).toBe(connectionsBefore);
  });

  it('records a CONNECT the proxy refuses as a failed attempt', async () => {
    const { port } = new URL(receiver.url);
    const refusing = await startConnectProxy({}, [`127.0.0.1:${port}`]);
    try {
      const before = receiver.received.length;
      const result = await senderVia(refusing.url).send({
        url: receiver.url,
        headers: {},
        body: '{}',
        timeoutMs: 5_000,
      });
      expect(result.ok).toBe(false);
      expect(result.error).toMatch(/Proxy response \(403\)/);
      expect(refusing.targets).toEqual([`127.0.0.1:${port}`]);
      expect(receiver.received.length).toBe(before);
    } finally {
      await refusing.close();
    }
  });

  it('takes only http(s) proxy URLs as the setting', () => {
    expect(loadConfig({ DISPATCH_OUTBOUND_PROXY: 'http://user:pw@proxy.internal:3128' }).outboundProxy).toBe(
      'http://user:pw@proxy.internal:3128/',
    );
    expect(loadConfig({}).outboundProxy).toBeUndefined();
    expect(() => loadConfig({ DISPATCH_OUTBOUND_PROXY: 'socks5://proxy.internal:1080' })).toThrow(ConfigError);
    expect(() => loadConfig({ DISPATCH_OUTBOUND_PROXY: 'proxy.internal:3128' })).toThrow(/http:\/\/ or https:\/\//);
  });

  it('end to end: Dispatch delivers through the proxy, HMAC and ed25519 endpoints alike', async () => {
    const t = await startTestDispatch({ DISPATCH_OUTBOUND_PROXY: proxy.url });
    const hmacReceiver = await startReceiver();
    const edReceiver = await startReceiver();
    try {
      const appId = await createDeliveryApp(t.client, { retrySchedule: [1], attemptTimeoutMs: 5_000 });
      const endpoint = async (url: string, signatureScheme: string) => {
        const result = await t.client.raw(
          'mutation ($input: CreateEndpointInput!) { createEndpoint(input: $input) { id secret publicKey } }',
          { input: { appId, recipientId: 'proxied', url, signatureScheme } },
        );
        expect(result.errors).toBeUndefined();
        return (result.data as { createEndpoint: { id: string; secret: string; publicKey: string | null } })
          .createEndpoint;
      };
      const hmac = await endpoint(hmacReceiver.url, 'HMAC_SHA256');
      const ed = await endpoint(edReceiver.url, 'ED25519');
      const targetsBefore = proxy.targets.length;
      const message = await send(t.client, { appId, recipientId: 'proxied', data: { amount: 7 } });
      const [viaHmac, viaEd] = await Promise.all([hmacReceiver.nth(1), edReceiver.nth(1)]);
      expect(new Webhook(hmac.secret).verify(viaHmac.body, asReceived(viaHmac))).toMatchObject({ data: { amount: 7 } });
      expect(ed25519Verifies(viaEd, ed.publicKey!)).toBe(true);
      expect(new Set(proxy.targets.slice(targetsBefore))).toEqual(
        new Set([new URL(hmacReceiver.url).host, new URL(edReceiver.url).host]),
      );
      await settled(t.dispatch.db.pool, message.id, ['SUCCEEDED'], hmac.id);
      await settled(t.dispatch.db.pool, message.id, ['SUCCEEDED'], ed.id);
    } finally {
      await t.stop();
      await Promise.all([hmacReceiver.close(), edReceiver.close()]);
    }
  });
});
