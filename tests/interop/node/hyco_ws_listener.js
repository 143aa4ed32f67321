#!/usr/bin/env node
'use strict';
// Echo listener built on hyco-ws 1.0.5 `createRelayedServer` (which wraps ws 1.1.5).
//
// Usage: HYCO_KEY=... node hyco_ws_listener.js --base ws://127.0.0.1:9090 --path hc1
//          [--key-name RootManageSharedAccessKey] [--token-carrier header|query|both]
//          [--token-function [--renew-interval SECONDS] [--renew-bad]] [--retry]
// Prints {"event":"ready"} once the control channel is open, then one JSON line
// per accepted connection / message / close. Each received message is echoed
// with the same type (text stays text, binary stays binary); a text message
// "close:CODE:REASON" makes the listener close that connection with CODE/REASON.
// SIGTERM/SIGINT close the server and exit 0.
//
// --token-function passes the token as a function (the library's renewal path);
// each call prints {"event":"token","count":N,"renewal":bool}. The library renews
// every hour; --renew-interval SECONDS shortens exactly that interval (a test
// hook, common.js shortenRenewal). --renew-bad makes renewals (not connects) sign
// with a wrong key, so the relay must refuse the renewToken (close 1008).
//
// Quirks of hyco-ws 1.0.5 met while writing this (code reading + local runs):
// * The `server` option is used verbatim as the control-channel URI
//   (`new WebSocket(options.server, ...)`), so a full ws://host:port/$hc/... string
//   works; only the createRelay*Uri helpers hard-code wss://ns:443.
// * `token` is required (non-null) but only sent when truthy, as the
//   ServiceBusAuthorization header; '' therefore means "query token only".
//   A function token is called once per connect and then every hour (renewToken).
// * Reconnect has no backoff and both onerror and onclose reconnect, so one failed
//   attempt spawns two new ones (the number of sockets doubles per failure): with
//   the relay gone, over a thousand failed attempts within two seconds. Unless
//   --retry is given this script therefore exits with code 3 on the first
//   control-channel error, before or after it was online ("listen" / "relisten").
//   A clean close by the relay (e.g. 1008) is followed by one immediate reconnect
//   with the same token string ({"event":"control_close"}, then "relistening").
// * A 401/404 on the listen upgrade surfaces only as the error text
//   "unexpected server response (401)".
// * The 'connection' event fires before the rendezvous socket is open (the ws is
//   still CONNECTING); the accept handshake result is only seen on that socket.
// * The rendezvous upgrade carries the first offered sub-protocol (if any) and,
//   when the sender offered permessage-deflate, a bogus header literally named "0"
//   (hyco-ws passes an *array* of header lines as ws 1.1.5's `headers` object).
// * Anything on the control channel that is not JSON crashes the process
//   (JSON.parse in onmessage); an accept without connectHeaders, or one whose
//   reject path runs (no Sec-WebSocket-Key), throws a TypeError/ReferenceError.
//   Such crashes are reported as {"event":"crash"} and exit code 5.
// * option `id` is broken (ReferenceError: listenUri), so it is not offered here.

const C = require('./common');
C.installCrashHandler();

let args;
try {
  args = C.parseArgs(process.argv.slice(2), {
    strings: ['base', 'path', 'key-name', 'token-carrier', 'renew-interval'],
    booleans: ['retry', 'token-function', 'renew-bad'],
    required: ['base', 'path'],
    defaults: { keyName: 'RootManageSharedAccessKey', tokenCarrier: 'header' },
  });
  if (!['header', 'query', 'both'].includes(args.tokenCarrier)) throw new Error('--token-carrier must be header, query or both');
  if ((args.renewInterval !== undefined || args.renewBad) && !args.tokenFunction) throw new Error('--renew-interval/--renew-bad need --token-function');
  if (args.renewInterval !== undefined && !(Number(args.renewInterval) > 0)) throw new Error('--renew-interval wants seconds > 0');
} catch (e) {
  C.fail(C.EXIT.USAGE, 'usage', e.message);
  return;
}

const WebSocket = require('hyco-ws');

let server;
try {
  const key = C.readKey(true);
  const bareUri = C.relayUri(WebSocket.createRelayListenUri, args.base, args.path);
  const makeToken = () => WebSocket.createRelayToken(bareUri, args.keyName, key);
  const token = makeToken();
  const inQuery = args.tokenCarrier !== 'header';
  const inHeader = args.tokenCarrier !== 'query';
  const listenUri = inQuery ? C.relayUri(WebSocket.createRelayListenUri, args.base, args.path, token) : bareUri;
  let tokenOption = inHeader ? token : '';
  if (args.tokenFunction && inHeader) {
    let calls = 0;
    tokenOption = () => {
      const renewal = C.renewing();
      calls++;
      C.emit({ event: 'token', count: calls, renewal: renewal });
      if (renewal && args.renewBad) return WebSocket.createRelayToken(bareUri, args.keyName, 'not-' + key);
      return makeToken();
    };
    if (args.renewInterval !== undefined) C.shortenRenewal(Number(args.renewInterval));
  }

  let online = false;
  let connections = 0;
  server = WebSocket.createRelayedServer({ server: listenUri, token: tokenOption }, (ws) => {
    const n = ++connections;
    C.emit({ event: 'connection', connection: n, address: C.redact(ws.url) });
    ws.on('open', () => {
      C.emit({ event: 'accepted', connection: n, protocol: ws.protocol || null });
    });
    ws.on('message', (data, flags) => {
      const binary = !!(flags && flags.binary);
      const size = binary ? data.length : Buffer.byteLength(data, 'utf8');
      C.emit({ event: 'message', connection: n, type: binary ? 'binary' : 'text', size: size });
      if (!binary && data.startsWith('close:')) {
        const m = /^close:(\d+):([\s\S]*)$/.exec(data);
        if (m) {
          C.emit({ event: 'closing', connection: n, code: Number(m[1]), reason: m[2] });
          ws.close(Number(m[1]), m[2]);
          return;
        }
      }
      ws.send(data, { binary: binary }, (err) => {
        if (err) C.emit({ event: 'send_error', connection: n, message: C.redact(err.message || err) });
      });
    });
    ws.on('close', (code, reason) => {
      C.emit({ event: 'close', connection: n, code: code === undefined ? null : code, reason: reason === undefined ? null : String(reason) });
    });
    ws.on('error', (err) => {
      C.emit({ event: 'rendezvous_error', connection: n, message: C.redact(err && err.message ? err.message : err) });
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
      C.emit({ event: 'ready', client: 'hyco-ws', listenUri: C.redact(listenUri), tokenCarrier: args.tokenCarrier });
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
