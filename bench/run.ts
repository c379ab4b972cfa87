/**
 * `npm run bench`: Dispatch's published benchmark, one command on one machine.
 *
 * Starts an embedded PostgreSQL in a temporary folder (or uses
 * BENCH_DATABASE_URL), a receiver process on 127.0.0.1, Dispatch as its own
 * process (`node --import tsx src/main.ts`), and measures:
 *   a. ingest: sendMessage/s at concurrency 32, recipients without endpoints;
 *   b. end-to-end deliveries/s at fan-out 1 and 3 (a fixed batch sent fast,
 *      first send to last arrival at the receiver);
 *   c. send-to-delivered latency p50/p95/p99 at a fixed rate, fan-out 1;
 *   d. the same b and c for two baselines (bench/baseline.ts): a hand-rolled
 *      pg-boss pipeline and the plain-SQL floor.
 * b is measured in rounds that rotate the order of the systems (all set up
 * first, idle between their turns); the median round is reported, and the
 * ratios are the median of each round's ratios.
 * Writes bench/results/<timestamp>.json and the table in docs/benchmarks.md.
 *
 * Settings (environment): BENCH_DATABASE_URL, BENCH_CONCURRENCY (32),
 * BENCH_INGEST_WARMUP_S (5), BENCH_INGEST_S (15), BENCH_E2E_WARMUP (1000
 * messages), BENCH_E2E_MESSAGES_1 (20000), BENCH_E2E_MESSAGES_3 (8000),
 * BENCH_LATENCY_RATE (100), BENCH_LATENCY_WARMUP_S (3), BENCH_LATENCY_S (20),
 * BENCH_RECIPIENTS (50), BENCH_ROUNDS (3), BENCH_ONLY (comma list of dispatch, sql, pgboss),
 * BENCH_VICTIM_RATE (20/s) and BENCH_VICTIM_S (3) for the victim of the
 * noisy-neighbour and flood rows, BENCH_FLOOD_MESSAGES (3000, at fan-out 3),
 * BENCH_BACKLOG_TRIES (200000), BENCH_SKIP (comma list of ingest, rounds,
 * latency, fairness, backlog: phases left out),
 * BENCH_PROFILE=1 (pg_stat_statements on the embedded PostgreSQL and
 * --cpu-prof on Dispatch; written beside the JSON), BENCH_NO_DOCS=1 (leave
 * docs/benchmarks.md alone).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { Agent, request } from 'undici';
import { connectDatabase } from '../src/db/client.ts';
import { type EmbeddedDatabase, startEmbeddedPostgres } from '../src/db/embedded.ts';
import { createApiKey } from '../src/domain/api-keys.ts';
import type { BaselineCommand, BaselineMode, BaselineReply } from './baseline.ts';
import { type ProfileSummary, summariseCpuProfile } from './profile.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const NODE = path.join(ROOT, 'node_modules/.bin/node');

function setting(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got ${raw}`);
  return value;
}

const S = {
  concurrency: setting('BENCH_CONCURRENCY', 32),
  ingestWarmupS: setting('BENCH_INGEST_WARMUP_S', 5),
  ingestS: setting('BENCH_INGEST_S', 15),
  e2eWarmup: setting('BENCH_E2E_WARMUP', 1000),
  e2eMessages1: setting('BENCH_E2E_MESSAGES_1', 20000),
  e2eMessages3: setting('BENCH_E2E_MESSAGES_3', 8000),
  latencyRate: setting('BENCH_LATENCY_RATE', 100),
  latencyWarmupS: setting('BENCH_LATENCY_WARMUP_S', 3),
  latencyS: setting('BENCH_LATENCY_S', 20),
  recipients: setting('BENCH_RECIPIENTS', 50),
  /** Throughput is measured this many times per system, in rounds that rotate the order of the systems. */
  rounds: setting('BENCH_ROUNDS', 3),
  victimRate: setting('BENCH_VICTIM_RATE', 20),
  victimS: setting('BENCH_VICTIM_S', 3),
  floodMessages: setting('BENCH_FLOOD_MESSAGES', 3000),
  backlogTries: setting('BENCH_BACKLOG_TRIES', 200_000),
  /** A scenario gives up when no delivery arrives for this long. */
  stallS: setting('BENCH_STALL_S', 15),
};
const SKIP = new Set((process.env.BENCH_SKIP ?? '').split(',').map((s) => s.trim()));
const ONLY = new Set((process.env.BENCH_ONLY ?? 'dispatch,sql,pgboss').split(',').map((s) => s.trim()));
const PROFILE = process.env.BENCH_PROFILE === '1';

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (line: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
const agent = new Agent({ connections: 256, keepAliveTimeout: 30_000, pipelining: 1 });

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const round = (value: number | null, digits = 1) =>
  value === null ? null : Math.round(value * 10 ** digits) / 10 ** digits;

// ---------------------------------------------------------------- CPU accounting
// On a shared machine throughput moves with everyone else's load; CPU time
// spent per delivery by each process does much less, so it is reported too.

const TICK_MS = 10; // USER_HZ is 100 on Linux

/** utime + stime (+ reaped children's) of a process, in ms; 0 when it is gone. */
function processCpuMs(pid: number | undefined, withChildren = false): number {
  if (!pid) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is the state (field 3); utime is field 14, stime 15, cutime 16, cstime 17.
    const own = Number(fields[11]) + Number(fields[12]);
    return (withChildren ? own + Number(fields[13]) + Number(fields[14]) : own) * TICK_MS;
  } catch {
    return 0;
  }
}

/** CPU of a PostgreSQL server: the postmaster, its live backends and those that exited. */
function postgresCpuMs(postmasterPid: number | undefined): number {
  if (!postmasterPid) return 0;
  let total = processCpuMs(postmasterPid, true);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === postmasterPid) total += processCpuMs(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

interface CpuSample {
  system: number;
  postgres: number;
  receiver: number;
  loadGenerator: number;
}

const cpuPids: { postmaster?: number; receiver?: number } = {};

/**
 * WAL position and the next transaction id: transaction ids are given only
 * to transactions that write, so their difference counts write
 * transactions (each one a WAL flush at commit), exactly and at once.
 */
async function walSample(databaseUrl: string): Promise<{ lsn: string; commits: number }> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ lsn: string; commits: string }>(
      `SELECT pg_current_wal_lsn()::text AS lsn, pg_snapshot_xmax(pg_current_snapshot())::text AS commits`,
    );
    return { lsn: rows[0]!.lsn, commits: Number(rows[0]!.commits) };
  } finally {
    await client.end();
  }
}

async function walBytesBetween(databaseUrl: string, from: string, to: string): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ bytes: string }>('SELECT pg_wal_lsn_diff($2::pg_lsn, $1::pg_lsn) AS bytes', [
      from,
      to,
    ]);
    return Number(rows[0]!.bytes);
  } finally {
    await client.end();
  }
}

function cpuSample(systemPid: number | undefined): CpuSample {
  const own = process.cpuUsage();
  return {
    system: processCpuMs(systemPid),
    postgres: postgresCpuMs(cpuPids.postmaster),
    receiver: processCpuMs(cpuPids.receiver),
    loadGenerator: (own.user + own.system) / 1000,
  };
}

/** CPU milliseconds per unit of work between two samples, per process. */
function cpuPer(before: CpuSample, after: CpuSample, units: number): CpuSample {
  const per = (k: keyof CpuSample) => round((after[k] - before[k]) / Math.max(1, units), 3)!;
  return {
    system: per('system'),
    postgres: per('postgres'),
    receiver: per('receiver'),
    loadGenerator: per('loadGenerator'),
  };
}

// ---------------------------------------------------------------- processes

const children = new Set<ChildProcess>();

function spawnNode(args: string[], env: Record<string, string>, ipc = false): ChildProcess {
  const child = spawn(NODE, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ipc ? ['ignore', 'inherit', 'inherit', 'ipc'] : ['ignore', 'inherit', 'inherit'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(timer);
}

function firstMessage<T>(child: ChildProcess): Promise<T> {
  return new Promise((resolve, reject) => {
    child.once('message', (message) => resolve(message as T));
    child.once('exit', (code) => reject(new Error(`process exited (${code}) before answering`)));
  });
}

// ---------------------------------------------------------------- receiver

interface Receiver {
  url: string;
  stats(tag: string): Promise<{ count: number; distinct: number; first: number | null; last: number | null }>;
  arrivals(tag: string): Promise<Record<string, number>>;
  /** POSTs to /hang/… being held unanswered. */
  held(): Promise<number>;
  /** Answers the held ones and every later one at once. */
  release(): Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  const child = spawnNode(['--import', 'tsx', 'bench/receiver.ts'], {}, true);
  cpuPids.receiver = child.pid;
  const { port } = await firstMessage<{ port: number }>(child);
  const url = `http://127.0.0.1:${port}`;
  const get = async <T>(p: string): Promise<T> => {
    const res = await request(`${url}${p}`, { dispatcher: agent });
    return (await res.body.json()) as T;
  };
  return {
    url,
    stats: (tag) => get(`/_bench/stats?tag=${encodeURIComponent(tag)}`),
    arrivals: (tag) => get(`/_bench/arrivals?tag=${encodeURIComponent(tag)}`),
    held: async () => (await get<{ held: number }>('/_bench/held')).held,
    release: async () => {
      await get('/_bench/release');
    },
  };
}

/** Waits until `expected` deliveries of `tag` arrived, or none arrived for stallS. */
async function waitForDeliveries(receiver: Receiver, tag: string, expected: number) {
  let lastCount = -1;
  let lastProgress = Date.now();
  for (;;) {
    const stats = await receiver.stats(tag);
    if (stats.distinct >= expected) return { ...stats, complete: true };
    if (stats.count !== lastCount) {
      lastCount = stats.count;
      lastProgress = Date.now();
    } else if (Date.now() - lastProgress > S.stallS * 1000) {
      log(
        `  ${tag}: only ${stats.distinct} of ${expected} deliveries arrived; no progress for ${S.stallS} s, giving up`,
      );
      return { ...stats, complete: false };
    }
    await sleep(50);
  }
}

// ---------------------------------------------------------------- Dispatch

interface DispatchUnderTest {
  url: string;
  apiKey: string;
  appId: string;
  child: ChildProcess;
  databaseUrl: string;
}

async function gql<T>(
  target: { url: string; apiKey: string },
  query: string,
  variables: Record<string, unknown>,
): Promise<T> {
  const res = await request(`${target.url}/graphql`, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${target.apiKey}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.body.json()) as { data?: T; errors?: { message: string }[] };
  if (body.errors?.length || !body.data)
    throw new Error(`GraphQL: ${body.errors?.map((e) => e.message).join('; ') ?? `HTTP ${res.statusCode}`}`);
  return body.data;
}

async function startDispatchProcess(
  databaseUrl: string,
  dataDir: string,
  profileDir: string | undefined,
): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const args = ['--import', 'tsx'];
  if (profileDir) args.push('--cpu-prof', `--cpu-prof-dir=${profileDir}`);
  args.push('src/main.ts');
  const child = spawnNode(args, {
    DATABASE_URL: databaseUrl,
    PORT: String(port),
    HOST: '127.0.0.1',
    DISPATCH_ALLOW_NETWORKS: '127.0.0.0/8',
    DISPATCH_DATA_DIR: dataDir,
    LOG_LEVEL: 'warn',
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`Dispatch exited with code ${child.exitCode} while starting`);
    try {
      const res = await request(`${url}/readyz`, { dispatcher: agent });
      await res.body.text();
      if (res.statusCode === 200) return { url, child };
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error('Dispatch did not become ready in 120 s');
    await sleep(200);
  }
}

const CREATE_ENDPOINT = `mutation($input: CreateEndpointInput!) { createEndpoint(input: $input) { id } }`;
const SEND = `mutation($input: SendMessageInput!) { sendMessage(input: $input) { deduplicated message { id } } }`;

async function setUpDispatch(
  databaseUrl: string,
  url: string,
  receiver: Receiver,
  child: ChildProcess,
): Promise<DispatchUnderTest> {
  const db = connectDatabase(databaseUrl, { max: 2 });
  const { token } = await createApiKey(db.prisma, { workspaceName: `bench-${Date.now()}` });
  await db.close();
  const target = { url, apiKey: token };
  const { createApp } = await gql<{ createApp: { id: string } }>(
    target,
    `mutation($input: CreateAppInput!) { createApp(input: $input) { id } }`,
    {
      input: { name: 'Benchmark' },
    },
  );
  await gql(target, `mutation($input: CreateEventTypeInput!) { createEventType(input: $input) { name } }`, {
    input: { appId: createApp.id, name: 'bench.event' },
  });
  for (let k = 0; k < S.recipients; k++) {
    await gql(target, CREATE_ENDPOINT, {
      input: { appId: createApp.id, recipientId: `f1_${k}`, url: `${receiver.url}/hook/d1_${k}` },
    });
    for (let e = 0; e < 3; e++) {
      await gql(target, CREATE_ENDPOINT, {
        input: { appId: createApp.id, recipientId: `f3_${k}`, url: `${receiver.url}/hook/d3_${k}_${e}` },
      });
    }
  }
  return { ...target, appId: createApp.id, child, databaseUrl };
}

async function sendToDispatch(d: DispatchUnderTest, seq: string, recipientId: string): Promise<boolean> {
  try {
    const res = await request(`${d.url}/graphql`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${d.apiKey}` },
      body: JSON.stringify({
        query: SEND,
        variables: {
          input: {
            appId: d.appId,
            recipientId,
            eventType: 'bench.event',
            data: { seq, amount: 4200, currency: 'EUR', customer: recipientId },
          },
        },
      }),
    });
    const body = (await res.body.json()) as { errors?: unknown[] };
    return res.statusCode === 200 && !body.errors;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- scenarios

interface IngestResult {
  messagesPerSecond: number;
  windowS: number;
  completed: number;
  errors: number;
  p50Ms: number | null;
  p99Ms: number | null;
  /** CPU ms per message over the whole ingest run (warm-up included), by process. */
  cpuMsPerMessage: CpuSample;
}

async function ingest(d: DispatchUnderTest): Promise<IngestResult> {
  const cpuBefore = cpuSample(d.child.pid);
  const start = now();
  const windowStart = start + S.ingestWarmupS * 1000;
  const windowEnd = windowStart + S.ingestS * 1000;
  let n = 0;
  let completed = 0;
  let errors = 0;
  const durations: number[] = [];
  await Promise.all(
    Array.from({ length: S.concurrency }, async () => {
      while (now() < windowEnd) {
        const i = n++;
        const sentAt = now();
        const ok = await sendToDispatch(d, `ingest:${i}`, `nobody_${i % 1000}`);
        const doneAt = now();
        if (doneAt >= windowStart && doneAt < windowEnd) {
          if (ok) {
            completed++;
            durations.push(doneAt - sentAt);
          } else errors++;
        }
      }
    }),
  );
  durations.sort((a, b) => a - b);
  return {
    cpuMsPerMessage: cpuPer(cpuBefore, cpuSample(d.child.pid), n),
    messagesPerSecond: Math.round(completed / S.ingestS),
    windowS: S.ingestS,
    completed,
    errors,
    p50Ms: round(percentile(durations, 50)),
    p99Ms: round(percentile(durations, 99)),
  };
}

interface ThroughputResult {
  messages: number;
  deliveries: number;
  arrived: number;
  duplicates: number;
  complete: boolean;
  /** First send to last arrival. */
  seconds: number;
  deliveriesPerSecond: number;
  /** How long sending the batch took (the producer's side alone). */
  sendSeconds: number;
  sendErrors: number;
  /** CPU ms per delivery of the batch, by process (system = Dispatch or the baseline's process). */
  cpuMsPerDelivery: CpuSample;
  /** Write transactions (transaction ids used) per delivery, every process and background work included. */
  commitsPerDelivery: number;
  walBytesPerDelivery: number;
}

interface System {
  name: 'dispatch' | 'sql' | 'pgboss';
  pid: number | undefined;
  batch(
    fanout: 1 | 3,
    n: number,
    tag: string,
  ): Promise<{ firstSendAt: number; lastReturnedAt: number; errors: number }>;
  rate(
    fanout: 1 | 3,
    rate: number,
    seconds: number,
    tag: string,
  ): Promise<{ sentAt: Record<string, number>; returnedAt: Record<string, number>; errors: number }>;
}

function dispatchSystem(d: DispatchUnderTest): System {
  return {
    name: 'dispatch',
    pid: d.child.pid,
    async batch(fanout, n, tag) {
      let next = 0;
      let errors = 0;
      const firstSendAt = now();
      await Promise.all(
        Array.from({ length: S.concurrency }, async () => {
          while (next < n) {
            const i = next++;
            if (!(await sendToDispatch(d, `${tag}:${i}`, `f${fanout}_${i % S.recipients}`))) errors++;
          }
        }),
      );
      return { firstSendAt, lastReturnedAt: now(), errors };
    },
    async rate(fanout, rate, seconds, tag) {
      const total = Math.round(rate * seconds);
      const sentAt: Record<string, number> = {};
      const returnedAt: Record<string, number> = {};
      let errors = 0;
      const start = now() + 20;
      const pending: Promise<void>[] = [];
      for (let i = 0; i < total; i++) {
        const wait = start + (i * 1000) / rate - now();
        if (wait > 1) await sleep(wait);
        const seq = `${tag}:${i}`;
        sentAt[seq] = now();
        pending.push(
          sendToDispatch(d, seq, `f${fanout}_${i % S.recipients}`).then((ok) => {
            if (ok) returnedAt[seq] = now();
            else errors++;
          }),
        );
      }
      await Promise.all(pending);
      return { sentAt, returnedAt, errors };
    },
  };
}

async function baselineSystem(
  mode: BaselineMode,
  databaseUrl: string,
  receiver: Receiver,
): Promise<System & { stop(): Promise<void> }> {
  const child = spawnNode(['--import', 'tsx', 'bench/baseline.ts'], {}, true);
  const send = (command: BaselineCommand) => child.send(command);
  let ids = 0;
  const ask = <T>(command: BaselineCommand & { id: number }) =>
    new Promise<T>((resolve, reject) => {
      const onMessage = (message: BaselineReply) => {
        if (message.id !== command.id) return;
        child.off('message', onMessage);
        resolve(message as T);
      };
      child.on('message', onMessage);
      child.once('exit', (code) => reject(new Error(`baseline ${mode} exited (${code})`)));
      send(command);
    });
  const ready = firstMessage<BaselineReply>(child);
  send({ cmd: 'setup', mode, databaseUrl, receiverUrl: receiver.url, recipients: S.recipients });
  await ready;
  return {
    name: mode,
    pid: child.pid,
    batch: (fanout, n, tag) => ask({ cmd: 'batch', id: ++ids, fanout, n, tag, concurrency: S.concurrency }),
    rate: (fanout, rate, seconds, tag) => ask({ cmd: 'rate', id: ++ids, fanout, rate, seconds, tag }),
    async stop() {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      send({ cmd: 'stop' });
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function throughput(
  system: System,
  receiver: Receiver,
  fanout: 1 | 3,
  n: number,
  databaseUrl: string,
  roundIndex = 0,
  label = '',
): Promise<ThroughputResult> {
  const warmTag = `${system.name}${label}w${fanout}r${roundIndex}`;
  await system.batch(fanout, S.e2eWarmup, warmTag);
  await waitForDeliveries(receiver, warmTag, S.e2eWarmup * fanout);
  const tag = `${system.name}${label}t${fanout}r${roundIndex}`;
  const walBefore = await walSample(databaseUrl);
  const cpuBefore = cpuSample(system.pid);
  const sent = await system.batch(fanout, n, tag);
  const arrived = await waitForDeliveries(receiver, tag, n * fanout);
  const cpu = cpuPer(cpuBefore, cpuSample(system.pid), arrived.distinct);
  const walAfter = await walSample(databaseUrl);
  const walBytes = await walBytesBetween(databaseUrl, walBefore.lsn, walAfter.lsn);
  const seconds = ((arrived.last ?? now()) - sent.firstSendAt) / 1000;
  const result: ThroughputResult = {
    messages: n,
    deliveries: n * fanout,
    arrived: arrived.distinct,
    duplicates: arrived.count - arrived.distinct,
    complete: arrived.complete,
    seconds: round(seconds, 2)!,
    deliveriesPerSecond: Math.round(arrived.distinct / seconds),
    sendSeconds: round((sent.lastReturnedAt - sent.firstSendAt) / 1000, 2)!,
    sendErrors: sent.errors,
    cpuMsPerDelivery: cpu,
    commitsPerDelivery: round((walAfter.commits - walBefore.commits) / Math.max(1, arrived.distinct), 2)!,
    walBytesPerDelivery: Math.round(walBytes / Math.max(1, arrived.distinct)),
  };
  log(
    `  ${label ? `${label}:` : `round ${roundIndex + 1},`} ${system.name} fan-out ${fanout}: ${result.deliveriesPerSecond} deliveries/s (${result.arrived}/${result.deliveries} in ${result.seconds} s; sending took ${result.sendSeconds} s); ` +
      `CPU ms per delivery: ${system.name} ${cpu.system}, PostgreSQL ${cpu.postgres}, receiver ${cpu.receiver}, load generator ${cpu.loadGenerator}; ` +
      `per delivery ${result.commitsPerDelivery} write transactions, ${result.walBytesPerDelivery} WAL bytes`,
  );
  return result;
}

interface LatencyResult {
  rate: number;
  measured: number;
  lost: number;
  /** Arrival at the receiver minus the moment the send call returned (the message was committed). */
  fromReturn: { p50: number | null; p95: number | null; p99: number | null; max: number | null };
  /** Arrival minus the moment the send call was made (includes the API call itself). */
  fromSend: { p50: number | null; p95: number | null; p99: number | null; max: number | null };
}

async function latency(system: System, receiver: Receiver): Promise<LatencyResult> {
  const tag = `${system.name}l`;
  const seconds = S.latencyWarmupS + S.latencyS;
  const sent = await system.rate(1, S.latencyRate, seconds, tag);
  const total = Math.round(S.latencyRate * seconds);
  await waitForDeliveries(receiver, tag, total - sent.errors);
  const arrivals = await receiver.arrivals(tag);
  const skip = Math.round(S.latencyRate * S.latencyWarmupS);
  const fromReturn: number[] = [];
  const fromSend: number[] = [];
  let lost = 0;
  for (let i = skip; i < total; i++) {
    const seq = `${tag}:${i}`;
    const arrived = arrivals[seq];
    const returned = sent.returnedAt[seq];
    if (arrived === undefined || returned === undefined) {
      lost++;
      continue;
    }
    fromReturn.push(arrived - returned);
    fromSend.push(arrived - sent.sentAt[seq]!);
  }
  const stats = (values: number[]) => {
    values.sort((a, b) => a - b);
    return {
      p50: round(percentile(values, 50)),
      p95: round(percentile(values, 95)),
      p99: round(percentile(values, 99)),
      max: round(values.at(-1) ?? null),
    };
  };
  const result = {
    rate: S.latencyRate,
    measured: fromReturn.length,
    lost,
    fromReturn: stats(fromReturn),
    fromSend: stats(fromSend),
  };
  log(
    `  ${system.name} latency at ${S.latencyRate}/s: p50 ${result.fromReturn.p50} ms, p95 ${result.fromReturn.p95} ms, p99 ${result.fromReturn.p99} ms (${lost} lost)`,
  );
  return result;
}

// ---------------------------------------------------------------- fairness and backlog (Dispatch only)

interface VictimLatency {
  measured: number;
  lost: number;
  p50: number | null;
  p99: number | null;
  max: number | null;
}

/** Another workspace's messages at BENCH_VICTIM_RATE for BENCH_VICTIM_S, fan-out 1: arrival minus the send call's return. */
async function victim(d: DispatchUnderTest, receiver: Receiver, tag: string): Promise<VictimLatency> {
  const sent = await dispatchSystem(d).rate(1, S.victimRate, S.victimS, tag);
  const total = Math.round(S.victimRate * S.victimS);
  await waitForDeliveries(receiver, tag, total - sent.errors);
  const arrivals = await receiver.arrivals(tag);
  const values: number[] = [];
  for (let i = 0; i < total; i++) {
    const arrived = arrivals[`${tag}:${i}`];
    const returned = sent.returnedAt[`${tag}:${i}`];
    if (arrived !== undefined && returned !== undefined) values.push(arrived - returned);
  }
  values.sort((a, b) => a - b);
  return {
    measured: values.length,
    lost: total - values.length,
    p50: round(percentile(values, 50)),
    p99: round(percentile(values, 99)),
    max: round(values.at(-1) ?? null),
  };
}

/** A second workspace with one app (its own settings) and one event type, over the API. */
async function neighbour(
  d: DispatchUnderTest,
  name: string,
  app: Record<string, unknown>,
): Promise<{ url: string; apiKey: string; appId: string }> {
  const db = connectDatabase(d.databaseUrl, { max: 2 });
  const { token } = await createApiKey(db.prisma, { workspaceName: `${name}-${Date.now()}` });
  await db.close();
  const target = { url: d.url, apiKey: token };
  const { createApp } = await gql<{ createApp: { id: string } }>(
    target,
    `mutation($input: CreateAppInput!) { createApp(input: $input) { id } }`,
    { input: { name, ...app } },
  );
  await gql(target, `mutation($input: CreateEventTypeInput!) { createEventType(input: $input) { name } }`, {
    input: { appId: createApp.id, name: 'bench.event' },
  });
  return { ...target, appId: createApp.id };
}

async function queuedTries(databaseUrl: string): Promise<{ ready: number; deferred: number; active: number }> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ ready: string; deferred: string; active: string }>(
      `SELECT count(*) FILTER (WHERE state < 'active' AND start_after <= now()) AS ready,
              count(*) FILTER (WHERE state < 'active' AND start_after > now()) AS deferred,
              count(*) FILTER (WHERE state = 'active') AS active
       FROM pgboss.job WHERE name = 'dispatch-try'`,
    );
    return { ready: Number(rows[0]!.ready), deferred: Number(rows[0]!.deferred), active: Number(rows[0]!.active) };
  } finally {
    await client.end();
  }
}

interface FairnessResult {
  alone: VictimLatency;
  noisy: VictimLatency & { hangingTries: number };
  flood: VictimLatency & { floodMessages: number; readyAtStart: number; floodSendSeconds: number };
}

/**
 * The two cases of issue 11 as rows. Noisy neighbour: another workspace's
 * app (30 s attempt timeout) with 40 endpoints on a path of the receiver
 * that never answers, 10 messages to them (400 tries, 320 allowed by the
 * per-endpoint limit); once 100 hang, the victim sends. Flood: another
 * workspace sends BENCH_FLOOD_MESSAGES at fan-out 3 as fast as it can; once
 * a third is sent, the victim sends. The victim (the bench's own app,
 * fan-out 1) is measured alone first.
 */
async function fairness(d: DispatchUnderTest, receiver: Receiver): Promise<FairnessResult> {
  const alone = await victim(d, receiver, 'victimAlone');
  log(`  victim alone: p50 ${alone.p50} ms, p99 ${alone.p99} ms, max ${alone.max} ms`);

  const noisy = await neighbour(d, 'noisy', { attemptTimeoutMs: 30_000, retrySchedule: [3600] });
  for (let i = 0; i < 40; i++)
    await gql(noisy, CREATE_ENDPOINT, {
      input: { appId: noisy.appId, recipientId: 'hanging', url: `${receiver.url}/hang/${i}` },
    });
  const noisyD = { ...d, ...noisy };
  for (let i = 0; i < 10; i++) await sendToDispatch(noisyD, `noisy:${i}`, 'hanging');
  const deadline = Date.now() + 30_000;
  while ((await receiver.held()) < 100 && Date.now() < deadline) await sleep(100);
  const hangingTries = await receiver.held();
  const beside = await victim(d, receiver, 'victimNoisy');
  await receiver.release();
  log(
    `  victim beside ${hangingTries} hanging tries: p50 ${beside.p50} ms, p99 ${beside.p99} ms, max ${beside.max} ms`,
  );

  const flood = await neighbour(d, 'flood', {});
  for (let k = 0; k < 20; k++)
    for (let e = 0; e < 3; e++)
      await gql(flood, CREATE_ENDPOINT, {
        input: { appId: flood.appId, recipientId: `flood_${k}`, url: `${receiver.url}/hook/flood_${k}_${e}` },
      });
  const floodD = { ...d, ...flood };
  let next = 0;
  const floodStart = now();
  let third: () => void = () => undefined;
  const thirdSent = new Promise<void>((resolve) => (third = resolve));
  const sending = Promise.all(
    Array.from({ length: S.concurrency }, async () => {
      while (next < S.floodMessages) {
        const i = next++;
        if (i === Math.floor(S.floodMessages / 3)) third();
        await sendToDispatch(floodD, `flood:${i}`, `flood_${i % 20}`);
      }
    }),
  ).then(() => (now() - floodStart) / 1000);
  await thirdSent;
  const readyAtStart = (await queuedTries(d.databaseUrl)).ready;
  const during = await victim(d, receiver, 'victimFlood');
  const floodSendSeconds = await sending;
  await waitForDeliveries(receiver, 'flood', S.floodMessages * 3);
  log(
    `  victim during a flood of ${S.floodMessages} messages x 3 (${readyAtStart} tries ready when it began): p50 ${during.p50} ms, p99 ${during.p99} ms, max ${during.max} ms`,
  );
  return {
    alone,
    noisy: { ...beside, hangingTries },
    flood: { ...during, floodMessages: S.floodMessages, readyAtStart, floodSendSeconds: round(floodSendSeconds, 2)! },
  };
}

interface BacklogResult {
  tries: number;
  insertSeconds: number;
  empty: { 1: ThroughputResult; 3: ThroughputResult };
  backlog: { 1: ThroughputResult; 3: ThroughputResult };
  /** pg_stat_statements of each (BENCH_PROFILE=1). */
  statements?: Record<string, unknown[]>;
}

/**
 * PostgreSQL CPU per delivery with BENCH_BACKLOG_TRIES tries waiting in the
 * queue, against the same batches with it empty, measured one after the
 * other. The backlog is what an endpoint down for hours leaves: retries of
 * another app, due tomorrow, priority 0 (a quiet tenant's), inserted
 * through pg-boss's insert like Dispatch's own, then ANALYZEd (Dispatch
 * analyzes the partition after its own inserts).
 */
async function backlog(system: System, receiver: Receiver, databaseUrl: string): Promise<BacklogResult> {
  const statements: Record<string, unknown[]> = {};
  const measure = async (label: string) => {
    if (PROFILE) await resetStatements(databaseUrl);
    const measured = {
      1: await throughput(system, receiver, 1, S.e2eMessages1, databaseUrl, 0, label),
      3: await throughput(system, receiver, 3, S.e2eMessages3, databaseUrl, 0, label),
    };
    if (PROFILE) statements[label] = await topStatements(databaseUrl);
    return measured;
  };
  const empty = await measure('empty');
  const boss = new PgBoss({
    connectionString: databaseUrl,
    schema: 'pgboss',
    supervise: false,
    schedule: false,
    migrate: false,
    max: 2,
  });
  boss.on('error', () => undefined);
  await boss.start();
  const started = now();
  const due = new Date(Date.now() + 86_400_000);
  for (let i = 0; i < S.backlogTries; i += 5_000) {
    const jobs = Array.from({ length: Math.min(5_000, S.backlogTries - i) }, (_, k) => ({
      data: { d: `dlv_backlog_${i + k}`, t: 'S', n: 2 },
      group: { id: `ep_backlog_${(i + k) % 1000}` },
      startAfter: due,
    }));
    await boss.insert('dispatch-try', jobs, { returnId: false });
  }
  const insertSeconds = (now() - started) / 1000;
  const table = ((await boss.getQueue('dispatch-try')) as unknown as { table: string }).table;
  await boss.getDb().executeSql(`ANALYZE pgboss.${table}`);
  await boss.stop({ graceful: false, close: true });
  log(`  ${S.backlogTries} deferred tries inserted in ${insertSeconds.toFixed(1)} s`);
  const withBacklog = await measure('backlog');
  return {
    tries: S.backlogTries,
    insertSeconds: round(insertSeconds, 1)!,
    empty,
    backlog: withBacklog,
    ...(PROFILE ? { statements } : {}),
  };
}

// ---------------------------------------------------------------- machine, profile, report

async function machineFacts(databaseUrl: string) {
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? 'unknown';
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const version = (await client.query<{ server_version: string }>('SHOW server_version')).rows[0]!.server_version;
  const settings = (
    await client.query<{ name: string; setting: string }>(
      `SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'max_connections')`,
    )
  ).rows;
  await client.end();
  const nodeVersion = await new Promise<string>((resolve) => {
    const child = spawn(NODE, ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.on('exit', () => resolve(out.trim()));
  });
  return {
    cores: os.cpus().length,
    model,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    postgres: version,
    postgresSettings: Object.fromEntries(settings.map((s) => [s.name, s.setting])),
    node: nodeVersion,
  };
}

async function topStatements(databaseUrl: string, limit = 30) {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query(
      `SELECT calls, round(total_exec_time::numeric, 1) AS total_ms, round(total_plan_time::numeric, 1) AS plan_ms, round(mean_exec_time::numeric, 3) AS mean_ms, rows,
              left(regexp_replace(query, '\\s+', ' ', 'g'), 200) AS query
       FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
       ORDER BY total_exec_time DESC LIMIT $1`,
      [limit],
    );
    const total = await client.query(
      `SELECT sum(calls)::bigint AS calls, round(sum(total_exec_time)::numeric, 1) AS total_ms, round(sum(total_plan_time)::numeric, 1) AS plan_ms, 'all statements' AS query
       FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    );
    return [...total.rows, ...rows];
  } finally {
    await client.end();
  }
}

async function resetStatements(databaseUrl: string) {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  await client.query('SELECT pg_stat_statements_reset()');
  await client.end();
}

type Results = Awaited<ReturnType<typeof runAll>>;

const fmt = (value: number | null | undefined, unit = '') =>
  value === null || value === undefined ? 'n/a' : `${value.toLocaleString('en-US')}${unit}`;
const cpuCell = (cpu: CpuSample | undefined) => (cpu ? `${cpu.system.toFixed(2)} / ${cpu.postgres.toFixed(2)}` : 'n/a');
/**
 * Dispatch's throughput over a baseline's, round by round (each pair measured
 * in the same minutes): the median of the rounds, then every round's.
 */
function roundRatios(r: Results, baseline: 'sql' | 'pgboss', fanout: 1 | 3): string {
  const ours = r.rounds.dispatch?.[fanout] ?? [];
  const theirs = r.rounds[baseline]?.[fanout] ?? [];
  const ratios = ours.flatMap((x, i) => (theirs[i] ? [x.deliveriesPerSecond / theirs[i]!.deliveriesPerSecond] : []));
  if (ratios.length === 0) return 'n/a';
  const median = [...ratios].sort((a, b) => a - b)[Math.floor((ratios.length - 1) / 2)]!;
  return ratios.length === 1
    ? `${median.toFixed(2)}×`
    : `${median.toFixed(2)}× (rounds: ${ratios.map((x) => x.toFixed(2)).join(', ')})`;
}

function markdown(r: Results): string {
  const t = r.throughput;
  const l = r.latency;
  const row = (label: string, get: (name: 'dispatch' | 'sql' | 'pgboss') => string) =>
    `| ${label} | ${get('dispatch')} | ${get('sql')} | ${get('pgboss')} |`;
  const lines = [
    `Run of ${r.startedAt} (${r.durationS} s), \`npm run bench\`, commit \`${r.commit}\`.`,
    '',
    `Machine: ${r.machine.cores} cores (${r.machine.model}), ${r.machine.memoryGiB} GiB memory, ${r.machine.os}; PostgreSQL ${r.machine.postgres} (embedded, fsync ${r.machine.postgresSettings.fsync}, synchronous_commit ${r.machine.postgresSettings.synchronous_commit}); Node ${r.machine.node}. Load average before the run ${r.loadBefore.map((x) => x.toFixed(2)).join(', ')}, after ${r.loadAfter.map((x) => x.toFixed(2)).join(', ')}. Everything (PostgreSQL, Dispatch, the receiver, the load generator) shares these cores, so the absolute numbers say more about the machine than about Dispatch; **the ratios, measured in one run against baselines doing the same work on the same machine, are the result.**`,
    '',
    '| measure | Dispatch | plain-SQL floor | hand-rolled pg-boss |',
    '| --- | ---: | ---: | ---: |',
    row('deliveries/s, fan-out 1', (s) => fmt(t[s]?.[1]?.deliveriesPerSecond)),
    row('deliveries/s, fan-out 3', (s) => fmt(t[s]?.[3]?.deliveriesPerSecond)),
    row(`latency p50 at ${S.latencyRate} msg/s`, (s) => fmt(l[s]?.fromReturn.p50, ' ms')),
    row(`latency p95 at ${S.latencyRate} msg/s`, (s) => fmt(l[s]?.fromReturn.p95, ' ms')),
    row(`latency p99 at ${S.latencyRate} msg/s`, (s) => fmt(l[s]?.fromReturn.p99, ' ms')),
    row(`latency p99 incl. the send call`, (s) => fmt(l[s]?.fromSend.p99, ' ms')),
    row('ingest, sendMessage/s at concurrency 32', (s) => (s === 'dispatch' ? fmt(r.ingest?.messagesPerSecond) : '–')),
    row('CPU ms per delivery, fan-out 1: pipeline process / PostgreSQL', (s) => cpuCell(t[s]?.[1]?.cpuMsPerDelivery)),
    row('CPU ms per delivery, fan-out 3: pipeline process / PostgreSQL', (s) => cpuCell(t[s]?.[3]?.cpuMsPerDelivery)),
    row(
      'write transactions per delivery, fan-out 1 / fan-out 3',
      (s) => `${fmt(t[s]?.[1]?.commitsPerDelivery)} / ${fmt(t[s]?.[3]?.commitsPerDelivery)}`,
    ),
    row(
      'WAL bytes per delivery, fan-out 1 / fan-out 3',
      (s) => `${fmt(t[s]?.[1]?.walBytesPerDelivery)} / ${fmt(t[s]?.[3]?.walBytesPerDelivery)}`,
    ),
    row('CPU ms per ingested message: Dispatch / PostgreSQL', (s) =>
      s === 'dispatch' ? cpuCell(r.ingest?.cpuMsPerMessage) : '–',
    ),
    '',
    '| ratio | value | target |',
    '| --- | ---: | ---: |',
    `| Dispatch / floor, fan-out 1 | ${roundRatios(r, 'sql', 1)} | ≥ 0.9× |`,
    `| Dispatch / floor, fan-out 3 | ${roundRatios(r, 'sql', 3)} | ≥ 0.9× |`,
    `| Dispatch / pg-boss pipeline, fan-out 1 | ${roundRatios(r, 'pgboss', 1)} | – |`,
    `| Dispatch / pg-boss pipeline, fan-out 3 | ${roundRatios(r, 'pgboss', 3)} | – |`,
    `| Dispatch latency p99 at ${S.latencyRate} msg/s | ${fmt(l.dispatch?.fromReturn.p99, ' ms')} | < 10 ms |`,
    `| Dispatch ingest | ${fmt(r.ingest?.messagesPerSecond, '/s')} | ≥ 5,000/s |`,
    ...fairnessRows(r),
    ...backlogRows(r),
    '',
    `Settings: concurrency ${S.concurrency}; ingest ${S.ingestWarmupS} s warm-up then ${S.ingestS} s measured, to ${1000} recipients without endpoints; throughput batches of ${S.e2eMessages1} messages (fan-out 1) and ${S.e2eMessages3} (fan-out 3) after a ${S.e2eWarmup}-message warm-up, over ${S.recipients} recipients, timed from the first send to the last arrival at the receiver, in ${S.rounds} round(s) that rotate the order of the systems (the table shows each system's median round, the ratios the median of the rounds' ratios, each round's own in brackets); latency ${S.latencyWarmupS} s warm-up then ${S.latencyS} s at ${S.latencyRate} messages/s, measured as arrival at the receiver minus the moment the send call returned (the message was committed), the row "incl. the send call" from the moment it was made. CPU ms per delivery: user + system CPU time (from /proc) each process spent during the measured batch, divided by the deliveries; on a shared machine it moves much less with other people's load than throughput does.`,
  ];
  const incomplete = (['dispatch', 'sql', 'pgboss'] as const).flatMap((s) =>
    ([1, 3] as const)
      .filter((f) => t[s]?.[f] && !t[s]![f]!.complete)
      .map((f) => `${s} fan-out ${f} (${t[s]![f]!.arrived}/${t[s]![f]!.deliveries})`),
  );
  if (incomplete.length)
    lines.push('', `Incomplete (deliveries missing when the run gave up): ${incomplete.join(', ')}.`);
  return lines.join('\n');
}

function fairnessRows(r: Results): string[] {
  const f = r.fairness;
  if (!f) return [];
  const cell = (v: VictimLatency) => `${fmt(v.p50, ' ms')} / ${fmt(v.p99, ' ms')}`;
  return [
    '',
    `| another workspace's messages (${S.victimRate}/s for ${S.victimS} s, fan-out 1), p50 / p99 | alone | beside the neighbour | target |`,
    '| --- | ---: | ---: | ---: |',
    `| noisy neighbour: 40 endpoints that never answer (30 s timeout), ${f.noisy.hangingTries} tries hanging | ${cell(f.alone)} | ${cell(f.noisy)} | p50 < 1 s, max < 3 s (max ${fmt(f.noisy.max, ' ms')}) |`,
    `| flood: ${fmt(f.flood.floodMessages)} messages × 3 endpoints sent at once, ${fmt(f.flood.readyAtStart)} tries ready when the victim began | ${cell(f.alone)} | ${cell(f.flood)} | about 1 s at most (max ${fmt(f.flood.max, ' ms')}) |`,
  ];
}

function backlogRows(r: Results): string[] {
  const b = r.backlog;
  if (!b) return [];
  const ratio = (f: 1 | 3) =>
    (b.backlog[f].cpuMsPerDelivery.postgres / b.empty[f].cpuMsPerDelivery.postgres).toFixed(2);
  const cell = (t: ThroughputResult) =>
    `${t.cpuMsPerDelivery.postgres.toFixed(2)} ms (${fmt(t.deliveriesPerSecond)}/s)`;
  return [
    '',
    `| PostgreSQL CPU per delivery (deliveries/s) | queue empty | ${fmt(b.tries)} tries waiting | ratio | target |`,
    '| --- | ---: | ---: | ---: | ---: |',
    `| fan-out 1 | ${cell(b.empty[1])} | ${cell(b.backlog[1])} | ${ratio(1)}× | ≤ 1.25× |`,
    `| fan-out 3 | ${cell(b.empty[3])} | ${cell(b.backlog[3])} | ${ratio(3)}× | ≤ 1.25× |`,
  ];
}

async function writeDocs(r: Results) {
  const file = path.join(ROOT, 'docs/benchmarks.md');
  const BEGIN = '<!-- bench:begin (written by npm run bench) -->';
  const END = '<!-- bench:end -->';
  const block = `${BEGIN}\n${markdown(r)}\n${END}`;
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    text = `# Benchmarks\n\n${BEGIN}\n${END}\n`;
  }
  const from = text.indexOf(BEGIN);
  const to = text.indexOf(END);
  text =
    from >= 0 && to > from
      ? text.slice(0, from) + block + text.slice(to + END.length)
      : `${text.trimEnd()}\n\n${block}\n`;
  await fs.writeFile(file, text);
  // Aligned as the lint (biome ci) wants markdown tables, so the file can be committed as written.
  execFileSync(path.join(ROOT, 'node_modules/.bin/biome'), ['format', '--write', file], { stdio: 'ignore' });
}

// ---------------------------------------------------------------- main

/** The measurement of median throughput (for an even count, the lower middle one), so its CPU and WAL figures go with it. */
function medianRun(results: ThroughputResult[]): ThroughputResult | undefined {
  const sorted = [...results].sort((a, b) => a.deliveriesPerSecond - b.deliveriesPerSecond);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

async function runAll(databaseUrl: string, tmp: string, resultsDir: string, stamp: string) {
  const startedAt = new Date().toISOString();
  const loadBefore = os.loadavg();
  const machine = await machineFacts(databaseUrl);
  log(
    `machine: ${machine.cores} cores, ${machine.model}, PostgreSQL ${machine.postgres}, Node ${machine.node}; load ${loadBefore.map((x) => x.toFixed(2)).join(' ')}`,
  );
  const receiver = await startReceiver();
  const throughputs: Partial<Record<System['name'], Partial<Record<1 | 3, ThroughputResult>>>> = {};
  /** Every measurement, by system and fan-out, in round order. */
  const rounds: Partial<Record<System['name'], Record<1 | 3, ThroughputResult[]>>> = {};
  const latencies: Partial<Record<System['name'], LatencyResult>> = {};
  const statements: Record<string, unknown[]> = {};
  let ingestResult: IngestResult | undefined;
  let fairnessResult: FairnessResult | undefined;
  let backlogResult: BacklogResult | undefined;
  let profile: ProfileSummary | undefined;

  // Every system is set up first and stays up (idle between its turns), so
  // throughput can be measured in rounds that rotate the order: each ratio
  // compares systems measured in the same minutes, and the median of the
  // rounds is reported, which a passing spike of the machine's load moves
  // much less than one measurement.
  const systems: (System & { stop(): Promise<void> })[] = [];
  let dispatch: DispatchUnderTest | undefined;
  let profileDir: string | undefined;
  try {
    if (ONLY.has('dispatch')) {
      profileDir = PROFILE ? path.join(resultsDir, `${stamp}-cpuprofile`) : undefined;
      const started = await startDispatchProcess(databaseUrl, path.join(tmp, 'dispatch-data'), profileDir);
      const d = await setUpDispatch(databaseUrl, started.url, receiver, started.child);
      systems.push({ ...dispatchSystem(d), stop: () => stopChild(started.child) });
      dispatch = d;
      if (!SKIP.has('ingest')) {
        log('Dispatch: ingest');
        if (PROFILE) await resetStatements(databaseUrl);
        ingestResult = await ingest(d);
        if (PROFILE) statements.ingest = await topStatements(databaseUrl);
        log(
          `  ${ingestResult.messagesPerSecond} sendMessage/s (p50 ${ingestResult.p50Ms} ms, p99 ${ingestResult.p99Ms} ms, ${ingestResult.errors} errors)`,
        );
      }
    }
    for (const mode of ['sql', 'pgboss'] as const) {
      if (ONLY.has(mode)) systems.push(await baselineSystem(mode, databaseUrl, receiver));
    }
    const rounds_ = SKIP.has('rounds') ? 0 : S.rounds;
    if (rounds_)
      log(`deliveries: ${S.rounds} round(s) of ${systems.map((s) => s.name).join(', ')}, the order rotating`);
    for (let round = 0; round < rounds_; round++) {
      const order = systems.map((_, i) => systems[(i + round) % systems.length]!);
      for (const system of order) {
        const profiled = PROFILE && system.name === 'dispatch' && round === 0;
        if (profiled) await resetStatements(databaseUrl);
        for (const fanout of [1, 3] as const) {
          const result = await throughput(
            system,
            receiver,
            fanout,
            fanout === 1 ? S.e2eMessages1 : S.e2eMessages3,
            databaseUrl,
            round,
          );
          (rounds[system.name] ??= { 1: [], 3: [] })[fanout].push(result);
        }
        if (profiled) statements.deliveries = await topStatements(databaseUrl);
      }
    }
    if (!SKIP.has('latency')) for (const system of systems) latencies[system.name] = await latency(system, receiver);
    if (dispatch && !SKIP.has('fairness')) {
      log('Dispatch: a victim beside a noisy neighbour and a flood');
      if (PROFILE) await resetStatements(databaseUrl);
      fairnessResult = await fairness(dispatch, receiver);
      if (PROFILE) statements.fairness = await topStatements(databaseUrl);
    }
    const dispatchUnder = systems.find((s) => s.name === 'dispatch');
    if (dispatchUnder && !SKIP.has('backlog')) {
      log(`Dispatch: the same batches with the queue empty, then with ${S.backlogTries} tries waiting`);
      backlogResult = await backlog(dispatchUnder, receiver, databaseUrl);
    }
  } finally {
    for (const system of systems) await system.stop();
  }
  if (profileDir) {
    const files = (await fs.readdir(profileDir)).filter((f) => f.endsWith('.cpuprofile'));
    if (files[0]) profile = await summariseCpuProfile(path.join(profileDir, files[0]), ROOT);
  }
  for (const [name, byFanout] of Object.entries(rounds) as [System['name'], Record<1 | 3, ThroughputResult[]>][]) {
    throughputs[name] = { 1: medianRun(byFanout[1]), 3: medianRun(byFanout[3]) };
  }
  return {
    startedAt,
    durationS: 0,
    commit: await gitCommit(),
    machine,
    settings: S,
    loadBefore,
    loadAfter: os.loadavg(),
    ingest: ingestResult,
    fairness: fairnessResult,
    backlog: backlogResult,
    throughput: throughputs,
    rounds,
    latency: latencies,
    ...(PROFILE ? { pgStatStatements: statements, cpuProfile: profile } : {}),
  };
}

async function gitCommit(): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.on('exit', () => resolve(out.trim() || 'unknown'));
  });
}

async function main() {
  const began = Date.now();
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const resultsDir = path.join(ROOT, 'bench/results');
  await fs.mkdir(resultsDir, { recursive: true });
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'dispatch-bench-'));
  await fs.chmod(tmp, 0o755);
  let embedded: EmbeddedDatabase | undefined;
  let databaseUrl = process.env.BENCH_DATABASE_URL;
  try {
    if (!databaseUrl) {
      log('starting an embedded PostgreSQL');
      embedded = await startEmbeddedPostgres({
        dir: path.join(tmp, 'postgres'),
        database: 'dispatch_bench',
        postgresFlags: PROFILE
          ? [
              '-c',
              'shared_preload_libraries=pg_stat_statements',
              '-c',
              'pg_stat_statements.track=all',
              '-c',
              'pg_stat_statements.track_planning=on',
            ]
          : [],
      });
      databaseUrl = embedded.url;
      cpuPids.postmaster = Number(readFileSync(path.join(tmp, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);
    }
    if (PROFILE) {
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      await client.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
      await client.end();
    }
    const results = await runAll(databaseUrl, tmp, resultsDir, stamp);
    results.durationS = Math.round((Date.now() - began) / 1000);
    const jsonFile = path.join(resultsDir, `${stamp}.json`);
    await fs.writeFile(jsonFile, `${JSON.stringify(results, null, 2)}\n`);
    log(`results in ${path.relative(ROOT, jsonFile)}`);
    process.stdout.write(`${markdown(results)}\n`);
    if (process.env.BENCH_NO_DOCS !== '1') {
      await writeDocs(results);
      log('table written to docs/benchmarks.md');
    }
  } finally {
    for (const child of children) await stopChild(child, 'SIGKILL');
    await agent.close().catch(() => undefined);
    await embedded?.stop().catch(() => undefined);
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

process.once('SIGINT', () => {
  for (const child of children) child.kill('SIGKILL');
  process.exit(130);
});

main().catch((error) => {
  process.stderr.write(`bench failed: ${(error as Error).stack ?? error}\n`);
  for (const child of children) child.kill('SIGKILL');
  process.exit(1);
});
