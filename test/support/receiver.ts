import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One webhook as a receiver got it. */
export interface Received {
  headers: IncomingMessage['headers'];
  body: string;
  at: number;
}

/** How the receiver answers one request: a status (and headers, body), or a hang until closed. */
export type Reply = { status: number; headers?: Record<string, string>; body?: string; delayMs?: number } | 'hang';

export interface Receiver {
  url: string;
  received: Received[];
  /** Resolves with the n-th request (from 1) once it has arrived. */
  nth(n: number): Promise<Received>;
  close(): Promise<void>;
}

/**
 * A webhook receiver on 127.0.0.1. `replies` answers requests in order; once
 * they run out, every request gets `fallback` (200 by default).
 */
export async function startReceiver(
  replies: Reply[] = [],
  fallback: Reply = { status: 200, body: 'ok' },
): Promise<Receiver> {
  const received: Received[] = [];
  const waiters: Array<{ n: number; resolve: (r: Received) => void }> = [];
  const hanging = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const entry = { headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() };
      received.push(entry);
      for (const waiter of waiters.filter((w) => w.n === received.length)) waiter.resolve(entry);
      const reply = replies[received.length - 1] ?? fallback;
      if (reply === 'hang') {
        hanging.add(res);
        return;
      }
      const answer = () => res.writeHead(reply.status, reply.headers ?? {}).end(reply.body ?? '');
      if (reply.delayMs) setTimeout(answer, reply.delayMs);
      else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    received,
    nth(n) {
      const have = received[n - 1];
      if (have) return Promise.resolve(have);
      return new Promise((resolve) => waiters.push({ n, resolve }));
    },
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Polls `check` until it returns a value (not undefined), for database state that has no event to await. */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  { timeoutMs = 10_000, intervalMs = 25 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
