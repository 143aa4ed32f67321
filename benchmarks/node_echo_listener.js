#!/usr/bin/env node
'use strict';
// Benchmark echo listener on Microsoft's hyco-ws (the npm package installed in
// tests/interop/node/node_modules). Unlike tests/interop/node/hyco_ws_listener.js
// it prints nothing per message (a JSON line per message would cost hyco-ws
// throughput and make the comparison unfair); it prints one line
// {"event":"ready"} once its control channel is open.
//
// Usage: HYCO_KEY=... node node_echo_listener.js BASE PATH [KEY_NAME]
//   BASE is ws://127.0.0.1:PORT (the local relay), PATH the hybrid connection.
const { relay: WebSocket, listenUri, token } = require('./node_listen_args')('hyco-ws', 'node_echo_listener.js');

const server = WebSocket.createRelayedServer({ server: listenUri, token: token }, (ws) => {
  ws.on('message', (data, flags) => {
    ws.send(data, { binary: !!(flags && flags.binary) });
  });
  ws.on('error', () => {});
});
require('./node_listen_args').run(server);
