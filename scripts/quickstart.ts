// The README's quickstart: create an app, an event type and an endpoint,
// send a message and read it back, with the typed client. It starts a small
// receiver on 127.0.0.1 that checks the Standard Webhooks signature, so the
// server must allow loopback deliveries (DISPATCH_ALLOW_NETWORKS=127.0.0.0/8).
//
//   DISPATCH_URL=http://localhost:4000 DISPATCH_API_KEY=dk_… npx tsx scripts/quickstart.ts
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import {
  CreateAppDocument,
  CreateEndpointDocument,
  CreateEventTypeDocument,
  createDispatchClient,
  MessageDocument,
  SendMessageDocument,
} from '../packages/client/src/index.ts';

const url = process.env.DISPATCH_URL ?? 'http://localhost:4000';
const apiKey = process.env.DISPATCH_API_KEY;
if (!apiKey) {
  console.error('Set DISPATCH_API_KEY (create one with: npx dispatch api-key create --workspace demo)');
  process.exit(2);
}
const client = createDispatchClient({ url, apiKey });

let secret = '';
const received = new Promise<unknown>((resolve) => {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      // Throws unless the signature, id and timestamp are right.
      const payload = new Webhook(secret).verify(body, req.headers as Record<string, string>);
      res.writeHead(204).end();
      server.close();
      resolve(payload);
    });
  });
  server.listen(
    Number(process.env.QUICKSTART_RECEIVER_PORT ?? 0),
    '127.0.0.1',
    () => void start((server.address() as AddressInfo).port),
  );
});

async function start(port: number) {
  const { createApp: app } = await client.request(CreateAppDocument, { input: { name: 'Billing events' } });
  console.log('app', app.id);
  await client.request(CreateEventTypeDocument, {
    input: {
      appId: app.id,
      name: 'invoice.paid',
      description: 'An invoice was paid',
      schema: { type: 'object', required: ['invoiceId'] },
    },
  });
  const { createEndpoint: endpoint } = await client.request(CreateEndpointDocument, {
    input: {
      appId: app.id,
      recipientId: 'customer_123',
      url: `http://127.0.0.1:${port}/webhooks`,
      eventTypes: ['invoice.paid'],
    },
  });
  secret = endpoint.secret;
  console.log('endpoint', endpoint.id, 'signing secret', endpoint.secret);
  const { sendMessage } = await client.request(SendMessageDocument, {
    input: {
      appId: app.id,
      recipientId: 'customer_123',
      eventType: 'invoice.paid',
      data: { invoiceId: 'inv_1', amount: 4200 },
      messageId: `inv_1-${Date.now()}`,
    },
  });
  console.log('message', sendMessage.message.id, 'deliveries', sendMessage.message.deliveries.nodes.length);
  const payload = await received;
  console.log('receiver verified', JSON.stringify(payload));
  // The receiver answered; give the worker a moment to record the attempt.
  let message = (await client.request(MessageDocument, { appId: app.id, id: sendMessage.message.id })).message;
  for (let i = 0; i < 50 && message?.deliveries.nodes.some((d) => d.status !== 'SUCCEEDED'); i++) {
    await new Promise((r) => setTimeout(r, 100));
    message = (await client.request(MessageDocument, { appId: app.id, id: sendMessage.message.id })).message;
  }
  for (const delivery of message?.deliveries.nodes ?? []) {
    console.log(
      'delivery',
      delivery.status,
      'attempts',
      delivery.attempts.nodes.map((a) => `${a.status} ${a.responseStatusCode} ${a.durationMs}ms`).join(', '),
    );
  }
}
