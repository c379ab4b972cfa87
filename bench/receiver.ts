/**
 * The benchmark's webhook receiver, a process of its own on 127.0.0.1: answers
 * every POST 200 at once and records when each delivery arrived. Every
 * pipeline under test (Dispatch and both baselines) posts here, so they pay
 * the same receiving cost.
 *
 * A delivery's body carries data.seq = "<tag>:<n>"; arrivals are grouped by
 * tag so one scenario's count never mixes with another's. The orchestrator
 * reads them over GET /_bench/stats and /_bench/arrivals.
 *
 * POSTs to /hang/… are accepted and not answered (an endpoint that hangs,
 * for the noisy-neighbour row) until GET /_bench/release, which answers
 * them and every later one at once; GET /_bench/held counts them.
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';

interface TagStats {
  count: number;
  distinct: Set<string>;
  /** First arrival of each seq, in epoch milliseconds (fractional). */
  firstBySeq: Map<string, number>;
  first: number;
  last: number;
}

const tags = new Map<string, TagStats>();
const now = () => performance.timeOrigin + performance.now();
const SEQ = /"seq":\s*"([^"]+)"/;

function record(seq: string, path: string, at: number) {
  const tag = seq.slice(0, seq.indexOf(':'));
  let stats = tags.get(tag);
  if (!stats) {
    stats = { count: 0, distinct: new Set(), firstBySeq: new Map(), first: at, last: at };
    tags.set(tag, stats);
  }
  stats.count++;
  stats.distinct.add(`${seq}|${path}`);
  if (!stats.firstBySeq.has(seq)) stats.firstBySeq.set(seq, at);
  stats.last = at;
}

const held: http.ServerResponse[] = [];
let released = false;
const answer = (res: http.ServerResponse) => {
  if (res.writableEnded || res.destroyed) return;
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
  res.end('ok');
};

const server = http.createServer({ keepAliveTimeout: 60_000, requestTimeout: 0 }, (req, res) => {
  const url = req.url ?? '/';
  if (req.method === 'POST' && url.startsWith('/hang/')) {
    req.resume();
    req.on('end', () => {
      if (released) answer(res);
      else held.push(res);
    });
    return;
  }
  if (url === '/_bench/release') {
    released = true;
    for (const r of held.splice(0)) answer(r);
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    return;
  }
  if (url === '/_bench/held') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ held: held.length }));
    return;
  }
  if (req.method === 'POST' && url.startsWith('/hook/')) {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const at = now();
      const match = SEQ.exec(Buffer.concat(chunks).toString('utf8'));
      if (match) record(match[1]!, url, at);
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
      res.end('ok');
    });
    return;
  }
  const parsed = new URL(url, 'http://receiver');
  const stats = tags.get(parsed.searchParams.get('tag') ?? '');
  let body: unknown;
  if (parsed.pathname === '/_bench/stats') {
    body = stats
      ? { count: stats.count, distinct: stats.distinct.size, first: stats.first, last: stats.last }
      : { count: 0, distinct: 0, first: null, last: null };
  } else if (parsed.pathname === '/_bench/arrivals') {
    body = stats ? Object.fromEntries(stats.firstBySeq) : {};
  } else {
    res.writeHead(404).end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as { port: number };
  process.send?.({ port });
});
process.on('disconnect', () => process.exit(0));
