#!/usr/bin/env node
'use strict';
// HTTP listener built on hyco-https 1.4.5 `createRelayedServer` (ws 6.2.7 underneath).
//
// Usage: HYCO_KEY=... node hyco_https_listener.js --base ws://127.0.0.1:9090 --path hc1
//          [--key-name K] [--token-carrier header|query|both] [--token-function]
//          [--token-function [--renew-interval SECONDS] [--renew-bad]]
//          [--keep-alive SECONDS] [--retry]
// Routes (the request target includes the entity path, e.g. /hc1/hello):
//   GET      /{path}/hello          200 text/plain "Hello from hyco-https"
//   POST|PUT /{path}/echo           200, the request body, same content-type
//   GET      /{path}/status/NNN     status NNN (no body for 204/304, else "status NNN")
//   GET      /{path}/headers        200 JSON {method, url, headers} as the listener saw them
//   GET      /{path}/big?n=BYTES[&writes=K]   n bytes of i % 251 (K writes, default 1,
//                                   via res.write ... res.end) — > 64 KiB goes over a rendezvous
//   anything else                   404 text/plain
// Prints {"event":"ready"} when the control channel is open ('listening' event,
// fired by ws 'open'), then one {"event":"request"} line per request, saying which
// channel carried the request and the response ("control" or "rendezvous").
//
// --token-function passes the token as a function (the library's renewal path);
// each call prints {"event":"token","count":N,"renewal":bool}. The library renews
// every hour; --renew-interval SECONDS shortens exactly that interval (a test
// hook, common.js shortenRenewal). --renew-bad makes renewals (not connects) sign
// with a wrong key, so the relay must refuse the renewToken (close 1008).
//
// Quirks of hyco-https 1.4.5 met while writing this:
// * Nothing connects until server.listen() is called; 'listening' = control channel open.
// * The `server` option is used verbatim as the control-channel URI (ws:// works).
// * 'error' is only emitted if a handler is attached; reconnect uses the backoff
//   table [0,1,2,5,10,30] s, reset to 0 s whenever an upgrade succeeds — so a relay
//   that accepts the upgrade and then closes (e.g. 1008) gets an immediate
//   reconnect each time, with the same token string. Without --retry this script
//   exits 3 on the first control-channel error, before or after it was online.
// * A refused listen upgrade surfaces as "Unexpected server response: 401".
// * Do not set the `clientTracking` option: the rendezvous path then calls
//   `ws.on(...)` on an undefined `ws` (ReferenceError).
// * res.end(emptyBuffer) sends NOTHING (write of a zero-length chunk is skipped,
//   and end(chunk) never sends the response header) — the request hangs. Use
//   res.end() for empty bodies (then the header has body:true for non-HEAD, and an
//   empty binary FIN message follows — also for 204/304 where body:false).
// * Responses are buffered until end() or until > 64 KiB (then a rendezvous to
//   request.address is opened and the rendezvous is left open afterwards).
// * Control-channel messages are JSON.parse'd unless a request body is pending;
//   a non-JSON message, or any `accept` (Extensions/PerMessageDeflate are not
//   imported), crashes the process: reported as {"event":"crash"}, exit 5.
// * `keepAliveTimeout` must be a moment.duration (sends unsolicited pongs).

const C = require('./common');
C.installCrashHandler();

let args;
try {
  args = C.parseArgs(process.argv.slice(2), {
    strings: ['base', 'path', 'key-name', 'token-carrier', 'renew-interval', 'keep-alive'],
    booleans: ['retry', 'token-function', 'renew-bad'],
    required: ['base', 'path'],
    defaults: { keyName: 'RootManageSharedAccessKey', tokenCarrier: 'header' },
  });
  if (!['header', 'query', 'both'].includes(args.tokenCarrier)) throw new Error('--token-carrier must be header, query or both');
  if ((args.renewInterval !== undefined || args.renewBad) && !args.tokenFunction) throw new Error('--renew-interval/--renew-bad need --token-function');
  if (args.renewInterval !== undefined && !(Number(args.renewInterval) > 0)) throw new Error('--renew-interval wants seconds > 0');
  if (args.keepAlive !== undefined && !(Number(args.keepAlive) > 0)) throw new Error('--keep-alive wants seconds > 0');
} catch (e) {
  C.fail(C.EXIT.USAGE, 'usage', e.message);
  return;
}

const https = require('hyco-https');
const moment = require('moment');

const prefix = '/' + String(args.path).replace(/^\/+|\/+$/g, '');

function route(req, res, body) {
  const target = req.url || '';
  const q = target.indexOf('?');
  const pathname = q >= 0 ? target.slice(0, q) : target;
  const query = new URLSearchParams(q >= 0 ? target.slice(q + 1) : '');
  const rest = pathname.startsWith(prefix + '/') ? pathname.slice(prefix.length) : null;
  const method = req.method;

  if (rest === '/hello' && (method === 'GET' || method === 'HEAD')) {
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    if (method === 'HEAD') res.end(); else res.end('Hello from hyco-https');
    return 200;
  }
  if (rest === '/echo' && (method === 'POST' || method === 'PUT')) {
    res.writeHead(200, { 'content-type': req.headers['content-type'] || 'application/octet-stream' });
    if (body.length) res.end(body); else res.end();
    return 200;
  }
  const status = rest && /^\/status\/(\d{3})$/.exec(rest);
  if (status && method === 'GET') {
    const code = Number(status[1]);
    if (code === 204 || code === 304) {
      res.writeHead(code);
      res.end();
    } else {
      res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`status ${code}`);
    }
    return code;
  }
  if (rest === '/headers' && method === 'GET') {
    const json = JSON.stringify({ method: req.method, url: req.url, headers: req.headers });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(json);
    return 200;
  }
  if (rest === '/big' && method === 'GET') {
    const n = Number(query.get('n') || '0');
    const writes = Math.max(1, Number(query.get('writes') || '1'));
    if (!Number.isInteger(n) || n < 0 || n > 256 * 1024 * 1024) {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end('n must be an integer 0..268435456');
      return 400;
    }
    const data = C.bigPayload(n);
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    if (n === 0) { res.end(); return 200; }
    const step = Math.ceil(n / writes);
    let off = 0;
    while (off + step < n) { res.write(data.subarray(off, off + step)); off += step; }
    res.end(data.subarray(off));
    return 200;
  }
  res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(`no route for ${method} ${target}`);
  return 404;
}

let server;
try {
  const key = C.readKey(true);
  const bareUri = C.relayUri(https.createRelayListenUri, args.base, args.path);
  const makeToken = () => https.createRelayToken(bareUri, args.keyName, key);
  const token = makeToken();
  const inQuery = args.tokenCarrier !== 'header';
  const inHeader = args.tokenCarrier !== 'query';
  const listenUri = inQuery ? C.relayUri(https.createRelayListenUri, args.base, args.path, token) : bareUri;
  let tokenOption = inHeader ? token : '';
  if (args.tokenFunction && inHeader) {
    let calls = 0;
    tokenOption = () => {
      const renewal = C.renewing();
      calls++;
      C.emit({ event: 'token', count: calls, renewal: renewal });
      if (renewal && args.renewBad) return https.createRelayToken(bareUri, args.keyName, 'not-' + key);
      return makeToken();
    };
    if (args.renewInterval !== undefined) C.shortenRenewal(Number(args.renewInterval));
  }
  const options = { server: listenUri, token: tokenOption };
  if (args.keepAlive !== undefined) options.keepAliveTimeout = moment.duration(Number(args.keepAlive), 'seconds');

  let online = false;
  let count = 0;
  server = https.createRelayedServer(options, (req, res) => {
    const n = ++count;
    const chunks = [];
    req.on('data', (c) => chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c)));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      let status;
      try {
        status = route(req, res, body);
      } catch (e) {
        C.emit({ event: 'handler_error', request: n, message: C.redact(e.message) });
        return;
      }
      // Which channel carried the request (the relay's choice;
      // Hybrid Connections protocol, "Request message") and which one hyco-https picked
      // for the response (Hybrid Connections protocol, "Responding via rendezvous"):
      // 'control' or 'rendezvous'.
      const channelOf = (ws) => (!ws ? null : (ws === server.controlChannel ? 'control' : 'rendezvous'));
      C.emit({
        event: 'request', request: n, method: req.method, url: C.redact(req.url), bodySize: body.length, status: status,
        requestChannel: channelOf(req.socket), responseChannel: channelOf(res.socket),
      });
    });
  });

  let controlErrors = 0;
  server.on('listening', () => {
    // Report how the relay closes the control channel (the library hides it).
    const cc = server.controlChannel;
    cc.on('close', (code, reason) => {
      C.emit({ event: 'control_close', code: code === undefined ? null : code, reason: reason === undefined ? null : String(reason) });
    });
    if (!online) {
      online = true;
      C.emit({ event: 'ready', client: 'hyco-https', listenUri: C.redact(listenUri), tokenCarrier: args.tokenCarrier });
    } else {
      C.emit({ event: 'relistening' });
    }
  });
  server.on('error', (err) => {
    const message = err && err.message ? err.message : String(err);
    if (!args.retry) {
      server.closeRequested = true; // stop the library's reconnect loop
      C.fail(C.EXIT.CONNECT, online ? 'relisten' : 'listen',
        `control channel ${online ? 'lost' : 'failed'}: ${message}`);
      return;
    }
    // With --retry the library keeps reconnecting; throttle the report.
    controlErrors++;
    if (controlErrors <= 5 || controlErrors % 100 === 0) {
      C.emit({ event: 'control_error', count: controlErrors, message: C.redact(message) });
    }
  });
  server.on('close', () => { if (online) C.emit({ event: 'closed' }); });
  server.listen();
} catch (e) {
  C.fail(e.message.includes('HYCO_KEY') || e.message.includes('--base') ? C.EXIT.USAGE : C.EXIT.CONNECT, 'setup', e.message);
  return;
}

function shutdown() {
  try { server.close(); } catch (e) { /* already closed */ }
  setTimeout(() => C.exitWith(C.EXIT.OK), 200);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
