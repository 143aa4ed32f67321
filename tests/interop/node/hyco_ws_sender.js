#!/usr/bin/env node
'use strict';
// Scripted WebSocket sender through a relay, in two flavours:
//   default  hyco-ws 1.0.5 `relayedConnect(uri, token)` (ws 1.1.5 underneath): the
//            token travels in the ServiceBusAuthorization header;
//   --plain  the `ws` 8 package directly, token in the `sb-hc-token` query
//            parameter (what a browser has to do).
//
// Usage: HYCO_KEY=... node hyco_ws_sender.js --base ws://127.0.0.1:9090 --path hc1
//          [--key-name K] [--plain] [--no-token]
//          [--messages 't:10,b:70000,t:0' | --messages '[{"type":"text","size":10}]']
//          [--sequential] [--close CODE:REASON | --remote-close CODE:REASON]
//          [--protocol chat --protocol superchat] [--header 'Name: value']
//          [--suffix a/b] [--query 'x=1&y=2'] [--no-deflate] [--timeout SECONDS]
// Default messages: t:5,b:5; an empty --messages '' sends none.
// Payloads are deterministic (common.js textPayload/binaryPayload, message index
// and size): the echo must come back in order, with the same type and bytes.
// After the echoes it closes: --close sends the given close code/reason itself;
// --remote-close sends the text "close:CODE:REASON" and expects the listener to
// close with exactly that; otherwise it closes with 1000 "done".
// Output (JSON lines): open, echo (one per message), closed, then result;
// a refused upgrade gives {"event":"error","stage":"connect","status":N,"reason":...}.
//
// Quirks met:
// * relayedConnect(address, token, fn) takes no protocols or extra headers; when
//   --protocol/--header is given, this script builds the same ws 1.1.5 client
//   itself (`new WebSocket(uri, protocols, {headers: {ServiceBusAuthorization}})`),
//   which is exactly what relayedConnect does, and reports api:"ws1-constructor".
// * ws 1.1.5 and ws 8 both offer permessage-deflate by default; hyco-ws listeners
//   never use it on their rendezvous leg, so a relay must not accept it towards
//   the sender unless it (de)compresses itself.
// * ws 1.1.5 (default mode) reports close code 1006 -- keeping the peer's reason --
//   whenever the TCP connection ends with an error after the close handshake, e.g.
//   an Autobahn server that aborts (RST) the socket right after a close it started.
// * ws 1.1.5's Sec-WebSocket-Key is base64("13-" + Date.now()), not random.
// * createRelayToken keeps ":port" in the audience (legacy url.format uses host):
//   sr=http://127.0.0.1:9090/hc1 — a relay must ignore the port when checking sr.

const C = require('./common');
C.installCrashHandler();

function parseMessages(spec) {
  if (spec === undefined || spec === null) return [{ type: 'text', size: 5 }, { type: 'binary', size: 5 }];
  if (spec === '') return [];
  let list = spec;
  if (typeof spec === 'string') {
    const s = spec.trim();
    if (s.startsWith('[')) {
      list = JSON.parse(s);
    } else {
      list = s.split(',').filter((x) => x.trim()).map((item) => {
        const m = /^\s*(t|text|b|binary):?(\d+)\s*$/i.exec(item);
        if (!m) throw new Error(`bad message item ${JSON.stringify(item)} (want t:SIZE or b:SIZE)`);
        return { type: m[1][0].toLowerCase() === 't' ? 'text' : 'binary', size: Number(m[2]) };
      });
    }
  }
  if (!Array.isArray(list)) throw new Error('--messages must be a list');
  return list.map((m, i) => {
    if (!m || (m.type !== 'text' && m.type !== 'binary') || !Number.isInteger(m.size) || m.size < 0) {
      throw new Error(`message ${i} must be {"type":"text"|"binary","size":N>=0}`);
    }
    return { type: m.type, size: m.size };
  });
}

function parseClose(spec, flag) {
  if (!spec) return null;
  const m = /^(\d+):([\s\S]*)$/.exec(String(spec));
  if (!m) throw new Error(`${flag} wants CODE:REASON`);
  return { code: Number(m[1]), reason: m[2] };
}

let args;
let messages;
let closeSpec;
let remoteClose;
try {
  args = C.parseArgs(process.argv.slice(2), {
    strings: ['base', 'path', 'key-name', 'messages', 'close', 'remote-close', 'suffix', 'query', 'timeout'],
    booleans: ['plain', 'sequential', 'no-token', 'no-deflate'],
    lists: ['protocol', 'header'],
    required: ['base', 'path'],
    defaults: { keyName: 'RootManageSharedAccessKey', timeout: '30' },
  });
  messages = parseMessages(args.messages);
  closeSpec = parseClose(args.close, '--close');
  remoteClose = parseClose(args.remoteClose, '--remote-close');
  if (closeSpec && remoteClose) throw new Error('--close and --remote-close are exclusive');
  args.timeout = Number(args.timeout);
  if (!(args.timeout > 0)) throw new Error('--timeout must be a positive number of seconds');
} catch (e) {
  C.fail(C.EXIT.USAGE, 'usage', e.message);
  return;
}

const hyco = require('hyco-ws'); // exports ws 1.1.5 plus the relay helpers
const WS8 = require('ws');

const headers = {};
for (const h of args.header || []) {
  const i = h.indexOf(':');
  if (i <= 0) { C.fail(C.EXIT.USAGE, 'usage', `--header wants "Name: value", got ${JSON.stringify(h)}`); return; }
  headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
}
const protocols = args.protocol || [];

let ws;
let api;
const mode = args.plain ? 'plain' : 'hyco-ws';
try {
  const key = args.noToken ? null : C.readKey(true);
  const bareUri = C.relayUri(hyco.createRelaySendUri, args.base, args.path);
  const token = key ? hyco.createRelayToken(bareUri, args.keyName, key) : null;
  if (args.plain) {
    const withToken = token ? C.relayUri(hyco.createRelaySendUri, args.base, args.path, token) : bareUri;
    const uri = C.withSuffix(withToken, args.suffix, args.query);
    api = 'ws8';
    ws = new WS8(uri, protocols, { headers: headers, perMessageDeflate: !args.noDeflate });
  } else {
    const uri = C.withSuffix(bareUri, args.suffix, args.query);
    if (protocols.length === 0 && Object.keys(headers).length === 0) {
      api = 'relayedConnect';
      ws = hyco.relayedConnect(uri, token);
    } else {
      api = 'ws1-constructor';
      const h = Object.assign({}, headers);
      if (token) h.ServiceBusAuthorization = token;
      ws = new hyco(uri, protocols, { headers: h });
    }
  }
} catch (e) {
  C.fail(e.message.includes('HYCO_KEY') || e.message.includes('--base') ? C.EXIT.USAGE : C.EXIT.CONNECT, 'setup', e.message);
  return;
}

const expected = messages.map((m, i) => ({
  type: m.type,
  size: m.size,
  data: m.type === 'text' ? C.textPayload(i, m.size) : C.binaryPayload(i, m.size),
}));
let nextSend = 0;
let received = 0;
let opened = false;
let finished = false;
let closeInfo = null;
let closeInitiatedBy = null;

const timer = setTimeout(() => {
  finish(C.EXIT.VERIFY, `timeout after ${args.timeout}s: opened=${opened}, sent=${nextSend}, echoed=${received} of ${expected.length}`);
}, args.timeout * 1000);

function finish(code, problem) {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  const result = {
    event: 'result', ok: code === 0, mode: mode, api: api,
    sent: nextSend, echoed: received, expected: expected.length,
    close: closeInfo ? Object.assign({ initiatedBy: closeInitiatedBy }, closeInfo) : null,
  };
  if (problem) result.problem = C.redact(problem);
  C.emit(result);
  if (problem) {
    const stage = code === C.EXIT.CONNECT ? 'connect' : 'verify';
    C.emit({ event: 'error', stage: stage, message: C.redact(problem), exitCode: code });
    process.stderr.write(`hyco_ws_sender.js: ${stage}: ${C.redact(problem)}\n`);
  }
  try { ws.terminate(); } catch (e) { /* gone */ }
  C.exitWith(code);
}

function sendNext() {
  const m = expected[nextSend++];
  ws.send(m.data, { binary: m.type === 'binary' }, (err) => {
    if (err) finish(C.EXIT.VERIFY, `send ${nextSend - 1} failed: ${err.message || err}`);
  });
}

function afterEchoes() {
  if (remoteClose) {
    closeInitiatedBy = 'listener';
    ws.send(`close:${remoteClose.code}:${remoteClose.reason}`);
  } else {
    closeInitiatedBy = 'sender';
    const c = closeSpec || { code: 1000, reason: 'done' };
    ws.close(c.code, c.reason);
  }
}

function firstDifference(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

function onMessage(data, isBinary) {
  const index = received;
  if (index >= expected.length) {
    finish(C.EXIT.VERIFY, `unexpected extra message (${isBinary ? 'binary' : 'text'}, ${data.length} bytes)`);
    return;
  }
  const exp = expected[index];
  const gotType = isBinary ? 'binary' : 'text';
  const gotBuf = Buffer.isBuffer(data) ? data : Buffer.from(data, 'utf8');
  const expBuf = Buffer.isBuffer(exp.data) ? exp.data : Buffer.from(exp.data, 'utf8');
  const ok = gotType === exp.type && gotBuf.equals(expBuf);
  const line = { event: 'echo', index: index, type: gotType, size: gotBuf.length, ok: ok };
  if (!ok) {
    line.expectedType = exp.type;
    line.expectedSize = expBuf.length;
    line.firstDifference = firstDifference(gotBuf, expBuf);
  }
  C.emit(line);
  received++;
  if (!ok) {
    finish(C.EXIT.VERIFY, `echo ${index} differs: got ${gotType}/${gotBuf.length}, want ${exp.type}/${expBuf.length}`);
    return;
  }
  if (received === expected.length) afterEchoes();
  else if (args.sequential) sendNext();
}

// A refused upgrade (the relay's or the listener's status, e.g. 404 or a reject).
// ws 1.1.5 emits 'close' right after this event, so remember the refusal at once
// and let the close/error handlers defer to it.
let refusal = null;
ws.on('unexpected-response', (req, res) => {
  refusal = { status: res.statusCode, reason: res.statusMessage };
  const chunks = [];
  const done = () => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    const body = Buffer.concat(chunks).toString('utf8').slice(0, 500);
    C.fail(C.EXIT.CONNECT, 'connect', `relay answered ${res.statusCode} ${res.statusMessage}`, {
      status: res.statusCode, reason: res.statusMessage, body: C.redact(body),
    });
    try { req.destroy(); } catch (e) { /* gone */ }
  };
  res.on('data', (c) => chunks.push(c));
  res.on('end', done);
  res.on('error', done);
  res.on('close', done);
  setTimeout(done, 1000).unref();
});

ws.on('open', () => {
  opened = true;
  let extensions = ws.extensions;
  if (extensions && typeof extensions === 'object') extensions = Object.keys(extensions).join(', ');
  C.emit({ event: 'open', mode: mode, api: api, protocol: ws.protocol || null, extensions: extensions || null });
  if (expected.length === 0) { afterEchoes(); return; }
  if (args.sequential) sendNext();
  else while (nextSend < expected.length) sendNext();
});

if (args.plain) {
  ws.on('message', (data, isBinary) => onMessage(data, isBinary));
} else {
  ws.on('message', (data, flags) => onMessage(data, !!(flags && flags.binary)));
}

ws.on('close', (code, reason) => {
  if (finished || refusal) return;
  closeInfo = { code: code === undefined ? null : code, reason: reason === undefined ? null : String(reason) };
  C.emit(Object.assign({ event: 'closed' }, closeInfo));
  if (!opened) { finish(C.EXIT.CONNECT, `connection closed before it opened (code ${closeInfo.code})`); return; }
  if (received < expected.length) {
    finish(C.EXIT.VERIFY, `closed (code ${closeInfo.code}) after ${received} of ${expected.length} echoes`);
    return;
  }
  if (remoteClose && (closeInfo.code !== remoteClose.code || closeInfo.reason !== remoteClose.reason)) {
    finish(C.EXIT.VERIFY, `listener closed with ${closeInfo.code} ${JSON.stringify(closeInfo.reason)}, want ${remoteClose.code} ${JSON.stringify(remoteClose.reason)}`);
    return;
  }
  finish(C.EXIT.OK);
});

ws.on('error', (err) => {
  if (finished || refusal) return;
  const message = err && err.message ? err.message : String(err);
  if (!opened) finish(C.EXIT.CONNECT, `connect failed: ${message}`);
  else finish(C.EXIT.VERIFY, `socket error: ${message}`);
});
