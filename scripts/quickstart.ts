// The README's quickstart: with the typed client, find or create the app
// "Quickstart" and its event type, add an endpoint, send a message and read
// its attempts back, then delete the endpoint again. It starts a small
// receiver on 127.0.0.1 that checks the Standard Webhooks signature, so the
// server must allow loopback deliveries (DISPATCH_ALLOW_NETWORKS=127.0.0.0/8,::1/128).
// Each run reuses the app and event type and leaves no endpoint behind, so a
// run that fails (the server refusing loopback, say) leaves nothing new.
//
//   DISPATCH_URL=http://localhost:$PORT DISPATCH_API_KEY=dk_… npx tsx scripts/quickstart.ts
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import {
  AppDocument,
  AppsDocument,
  CreateAppDocument,
  CreateEndpointDocument,
  CreateEventTypeDocument,
  createDispatchClient,
  DeleteEndpointDocument,
  DispatchClientError,
  MessageDocument,
  SendMessageDocument,
} from '../packages/client/src/index.ts';

const APP_NAME = 'Quickstart';
const EVENT_TYPE = 'invoice.paid';
const url = process.env.DISPATCH_URL ?? `http://localhost:${process.env.PORT || 4000}`;
const apiKey = process.env.DISPATCH_API_KEY;
if (!apiKey) {
  console.error('Set DISPATCH_API_KEY (create one with: npx dispatch api-key create --workspace demo)');
  process.exit(2);
}
const client = createDispatchClient({ url, apiKey });

/** Why a run stopped, as one line for the person running it (no stack trace). */
class Stop extends Error {}

function explain(error: unknown): string {
  if (error instanceof Stop) return error.message;
  if (error instanceof DispatchClientError) {
    if (error.code === 'UNSAFE_URL') {
      return 'The server refuses deliveries to 127.0.0.1: restart it with DISPATCH_ALLOW_NETWORKS=127.0.0.0/8,::1/128 npm start, then run this again.';
    }
    if (error.code === 'UNAUTHENTICATED') return `${url} does not know this DISPATCH_API_KEY (${error.message}).`;
    return `Dispatch answered ${error.code ?? `HTTP ${error.status}`}: ${error.message}`;
  }
  // ofetch wraps fetch's TypeError, which wraps the socket's error.
  for (let cause: unknown = error; cause; cause = (cause as { cause?: unknown }).cause) {
    if ((cause as { code?: string }).code === 'ECONNREFUSED') {
      return `Nothing answers at ${url}: start Dispatch with npm start (or set DISPATCH_URL).`;
    }
  }
  return `quickstart failed: ${error instanceof Error ? error.message : String(error)}`;
}

/** A receiver on 127.0.0.1 that verifies each webhook with the endpoint's secret. */
function startReceiver() {
  let secret = '';
  let deliver: (payload: unknown) => void = () => {};
  const received = new Promise<unknown>((resolve) => (deliver = resolve));
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      try {
        // Throws unless the signature, id and timestamp are right.
        deliver(new Webhook(secret).verify(body, req.headers as Record<string, string>));
        res.writeHead(204).end();
      } catch {
        res.writeHead(401).end();
      }
    });
  });
  return {
    received,
    setSecret: (value: string) => (secret = value),
    listen: () =>
      new Promise<number>((resolve) =>
        server.listen(Number(process.env.QUICKSTART_RECEIVER_PORT ?? 0), '127.0.0.1', () =>
          resolve((server.address() as AddressInfo).port),
        ),
      ),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function findOrCreateApp(): Promise<string> {
  let after: string | null | undefined;
  do {
    const { apps } = await client.request(AppsDocument, { first: 100, after });
    const found = apps.nodes.find((app) => app.name === APP_NAME);
    if (found) return found.id;
    after = apps.pageInfo.hasNextPage ? apps.pageInfo.endCursor : undefined;
  } while (after);
  return (await client.request(CreateAppDocument, { input: { name: APP_NAME } })).createApp.id;
}

async function ensureEventType(appId: string): Promise<void> {
  const { app } = await client.request(AppDocument, { id: appId });
  const existing = app?.eventTypes.find((type) => type.name === EVENT_TYPE);
  if (existing && !existing.archived) return;
  // Creating an archived event type again brings it back.
  await client.request(CreateEventTypeDocument, {
    input: {
      appId,
      name: EVENT_TYPE,
      description: 'An invoice was paid',
      schema: { type: 'object', required: ['invoiceId'] },
    },
  });
}

async function run(receiver: ReturnType<typeof startReceiver>, port: number, cleanup: (() => Promise<unknown>)[]) {
  const appId = await findOrCreateApp();
  await ensureEventType(appId);
  console.log('app', appId);
  const { createEndpoint: endpoint } = await client.request(CreateEndpointDocument, {
    input: { appId, recipientId: 'customer_123', url: `http://127.0.0.1:${port}/webhooks`, eventTypes: [EVENT_TYPE] },
  });
  cleanup.push(() => client.request(DeleteEndpointDocument, { input: { id: endpoint.id } }));
  receiver.setSecret(endpoint.secret);
  console.log('endpoint', endpoint.id, 'signing secret', endpoint.secret);
  const { sendMessage } = await client.request(SendMessageDocument, {
    input: {
      appId,
      recipientId: 'customer_123',
      eventType: EVENT_TYPE,
      data: { invoiceId: 'inv_1', amount: 4200 },
      messageId: `inv_1-${Date.now()}`,
    },
  });
  console.log('message', sendMessage.message.id, 'deliveries', sendMessage.message.deliveries.nodes.length);
  const payload = await Promise.race([
    receiver.received,
    new Promise((_, reject) =>
      setTimeout(
        () => reject(new Stop('No delivery arrived within 30 s: is a worker running (DISPATCH_ROLE)?')),
        30_000,
      ).unref(),
    ),
  ]);
  console.log('receiver verified', JSON.stringify(payload));
  // The receiver answered; the worker records the attempt right after.
  const read = async () => (await client.request(MessageDocument, { appId, id: sendMessage.message.id })).message;
  let message = await read();
  for (let i = 0; i < 50 && message?.deliveries.nodes.some((d) => d.status !== 'SUCCEEDED'); i++) {
    await new Promise((r) => setTimeout(r, 100));
    message = await read();
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

const receiver = startReceiver();
const cleanup: (() => Promise<unknown>)[] = [];
let code = 0;
try {
  await run(receiver, await receiver.listen(), cleanup);
} catch (error) {
  console.error(explain(error));
  code = 1;
} finally {
  for (const step of cleanup.reverse()) await step().catch((error) => console.error(`cleanup: ${explain(error)}`));
  await receiver.close();
}
process.exit(code);
