import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SendMessageDocument } from '../../packages/client/src/index.ts';
import { createDeliveryApp } from '../support/delivery.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { startReceiver } from '../support/receiver.ts';

const BIN = fileURLToPath(new URL('../../bin/dispatch.js', import.meta.url));

/** A running `dispatch listen`: its output so far, and a way to wait for a line. */
function startListen(args: string[]) {
  const child: ChildProcess = spawn(process.execPath, [BIN, 'listen', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const waiters: (() => void)[] = [];
  const onData = (chunk: Buffer) => {
    output += chunk.toString();
    for (const w of waiters.splice(0)) w();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    get output() {
      return output;
    },
    async waitFor(pattern: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = pattern.exec(output);
        if (match) return match;
        if (child.exitCode !== null) throw new Error(`dispatch listen exited (${child.exitCode}):\n${output}`);
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no ${pattern} in ${timeoutMs} ms:\n${output}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    },
    /** SIGTERM: it finishes the delivery in flight, saves its cursor and exits. */
    async stop(): Promise<number | null> {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

describe('dispatch listen', () => {
  let t: TestDispatch;
  let appId: string;
  let dir: string;

  beforeAll(async () => {
    t = await startTestDispatch();
    appId = await createDeliveryApp(t.client);
    dir = await mkdtemp(path.join(os.tmpdir(), 'dispatch-listen-'));
  });
  afterAll(async () => {
    await t?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('forwards 100 messages, signed, to a local receiver; stopped and started again midway, every one arrives once', async () => {
    const receiver = await startReceiver();
    const state = path.join(dir, 'state.json');
    const args = [
      '--url',
      t.url,
      '--token',
      t.apiKey,
      '--app',
      appId,
      '--recipient',
      'customer_dev',
      '--forward-to',
      receiver.url,
      '--events',
      'invoice.paid',
      '--state',
      state,
    ];
    const send = async (n: number, eventType = 'invoice.paid') => {
      const { sendMessage } = await t.client.request(SendMessageDocument, {
        input: { appId, recipientId: 'customer_dev', eventType, data: { n, nested: { list: [1, 'two', null] } } },
      });
      return sendMessage.message.messageId;
    };
    const sent: string[] = [];
    try {
      let cli = startListen(args);
      const secret = (await cli.waitFor(/signing secret is (whsec_[A-Za-z0-9+/=]+)/))[1]!;
      await cli.waitFor(/Starting from now/);
      // The subscription is open once the server counts it.
      await expect
        .poll(
          async () =>
            /dispatch_live_subscribers\{field="messageCreated"\} 1/.test(
              await (await fetch(`${t.url}/metrics`)).text(),
            ),
          {
            timeout: 10_000,
          },
        )
        .toBe(true);
      for (let n = 1; n <= 50; n++) {
        sent.push(await send(n));
        // Not asked for: never forwarded.
        if (n % 10 === 0) await send(n, 'invoice.voided');
      }
      await expect.poll(() => receiver.received.length, { timeout: 30_000 }).toBeGreaterThanOrEqual(20);
      expect(await cli.stop()).toBe(0);

      // While it is down, the rest is sent; started again, it resumes from its state file.
      for (let n = 51; n <= 100; n++) sent.push(await send(n));
      cli = startListen(args);
      const again = (await cli.waitFor(/signing secret is (whsec_[A-Za-z0-9+/=]+)/))[1]!;
      expect(again).toBe(secret);
      await cli.waitFor(/Resuming after the last message forwarded/);
      await expect.poll(() => receiver.received.length, { timeout: 60_000 }).toBeGreaterThanOrEqual(100);
      // One line per delivery, with the local answer's status and time.
      await cli.waitFor(new RegExp(`invoice\\.paid \\[${sent.at(-1)}\\]\\s+<-- 200 OK \\(\\d+ ms\\)`));
      expect(await cli.stop()).toBe(0);

      // Every message once, in the order sent, each verified by the standardwebhooks package.
      const verifier = new Webhook(secret);
      const ids = receiver.received.map((r) => {
        const payload = verifier.verify(r.body, r.headers as Record<string, string>) as {
          type: string;
          data: { n: number };
        };
        expect(payload.type).toBe('invoice.paid');
        expect(r.headers['content-type']).toBe('application/json');
        return r.headers['webhook-id'];
      });
      expect(ids).toEqual(sent);
      // The body is the one a real delivery has: data as PostgreSQL prints jsonb.
      expect(receiver.received[0]!.body).toMatch(
        /^\{"type":"invoice\.paid","timestamp":"[0-9T:.Z-]+","data":\{"n": 1, "nested": \{"list": \[1, "two", null\]\}\}\}$/,
      );
      const saved = JSON.parse(await readFile(state, 'utf8')) as Record<string, { cursor: string; secret: string }>;
      expect(Object.values(saved)).toEqual([{ cursor: expect.any(String), secret }]);
    } finally {
      await receiver.close();
    }
  }, 180_000);

  it('--from-now skips what came while it was away; a bad token is refused clearly', async () => {
    const receiver = await startReceiver();
    const state = path.join(dir, 'from-now.json');
    const args = ['--url', t.url, '--token', t.apiKey, '--app', appId, '--recipient', 'customer_later'];
    const subscribed = () =>
      expect
        .poll(
          async () =>
            /dispatch_live_subscribers\{field="messageCreated"\} 1/.test(
              await (await fetch(`${t.url}/metrics`)).text(),
            ),
          { timeout: 10_000 },
        )
        .toBe(true);
    const send = async (data: object) =>
      (
        await t.client.request(SendMessageDocument, {
          input: { appId, recipientId: 'customer_later', eventType: 'invoice.paid', data },
        })
      ).sendMessage.message.messageId;
    try {
      let cli = startListen([...args, '--forward-to', receiver.url, '--state', state]);
      await cli.waitFor(/Starting from now/);
      await subscribed();
      const first = await send({ first: true });
      await expect.poll(() => receiver.received.length, { timeout: 20_000 }).toBe(1);
      expect(await cli.stop()).toBe(0);
      await send({ away: true });
      cli = startListen([...args, '--forward-to', receiver.url, '--state', state, '--from-now']);
      await cli.waitFor(/Starting from now/);
      await subscribed();
      const later = await send({ away: false });
      await expect.poll(() => receiver.received.length, { timeout: 20_000 }).toBe(2);
      expect(receiver.received.map((r) => r.headers['webhook-id'])).toEqual([first, later]);
      expect(await cli.stop()).toBe(0);

      const refused = startListen([
        '--url',
        t.url,
        '--token',
        'dk_nope',
        ...args.slice(4),
        '--forward-to',
        receiver.url,
        '--state',
        state,
      ]);
      await refused.waitFor(/dispatch: .*(UNAUTHENTICATED|token|authenticat)/i);
    } finally {
      await receiver.close();
    }
  }, 90_000);
});
