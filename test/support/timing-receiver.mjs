// A receiver in a process of its own, on 127.0.0.1: records when each
// request arrived, per path, on a clock no test work delays (a receiver in
// the test's process timestamps a request only when the test's event loop
// gets to it). Answers 200, or 429 with Retry-After: 3 to the first request
// of a path starting /too-many. GET /arrivals answers the record as JSON.
// Prints its URL on the first line of stdout.
import { createServer } from 'node:http';

const arrivals = {};
const server = createServer((req, res) => {
  const at = Date.now();
  if (req.method === 'GET' && req.url === '/arrivals') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(arrivals));
    return;
  }
  const path = req.url ?? '/';
  const list = (arrivals[path] ??= []);
  list.push(at);
  req.resume();
  req.on('end', () => {
    if (path.startsWith('/too-many') && list.length === 1) res.writeHead(429, { 'retry-after': '3' }).end('slow down');
    else res.writeHead(200).end('ok');
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`http://127.0.0.1:${server.address().port}\n`);
});
