#!/usr/bin/env node
'use strict';
// Benchmark HTTP listener on Microsoft's hyco-https (the npm package installed in
// tests/interop/node/node_modules): the peer of txhyco's hyco: endpoint serving
// benchmarks/server_proc.py's site. Same two routes, same bytes:
//   GET /PATH/small           256 bytes of "x", application/octet-stream
//   GET /PATH/big?size=N      N zero bytes with a Content-Length, written in
//                             256 KiB pieces, one piece per turn of the event loop
// hyco-https has no backpressure (write() never says "wait"), so /big lets the
// event loop run between pieces instead of queueing N bytes in one go; what it
// holds meanwhile is what the benchmark's RSS sampling shows.
// Prints nothing per request; one line {"event":"ready"} once the control
// channel is open.
//
// Usage: HYCO_KEY=... node node_http_listener.js BASE PATH [KEY_NAME]
//   BASE is ws://127.0.0.1:PORT (the local relay), PATH the hybrid connection.
const { relay: https, hc, listenUri, token } = require('./node_listen_args')('hyco-https', 'node_http_listener.js');

const SMALL = Buffer.alloc(256, 'x');
const PIECE = Buffer.alloc(256 * 1024);
const prefix = '/' + hc;

function big(res, size) {
  res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(size) });
  let left = size;
  (function next() {
    if (left <= 0) {
      res.end();
      return;
    }
    const n = Math.min(left, PIECE.length);
    left -= n;
    res.write(n === PIECE.length ? PIECE : PIECE.subarray(0, n));
    setImmediate(next);
  })();
}

const server = https.createRelayedServer({ server: listenUri, token: token }, (req, res) => {
  const url = new URL(req.url, 'http://listener');
  if (req.method === 'GET' && url.pathname === prefix + '/small') {
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(SMALL.length) });
    res.end(SMALL);
  } else if (req.method === 'GET' && url.pathname === prefix + '/big') {
    big(res, Number(url.searchParams.get('size') || 1048576));
  } else {
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found\n');
  }
});
require('./node_listen_args').run(server);
server.listen();
