'use strict';
// What both benchmark Node listeners need from their command line: the control
// channel URI on the local relay and a token for it, made with the Microsoft
// package itself (hyco-ws and hyco-https have the same two helpers).
//
// Usage from a listener script:
//   const { hc, listenUri, token } = require('./node_listen_args')(pkg, 'node_x_listener.js');
const path = require('path');

module.exports = function listenArgs(pkg, script) {
  const [base, hc, keyName = 'RootManageSharedAccessKey'] = process.argv.slice(2);
  const key = process.env.HYCO_KEY;
  if (!base || !hc || !key) {
    process.stderr.write(`usage: HYCO_KEY=... node ${script} BASE PATH [KEY_NAME]\n`);
    process.exit(2);
  }
  const relay = require(path.join(__dirname, '..', 'tests', 'interop', 'node', 'node_modules', pkg));
  const u = new URL(base);
  const official = relay.createRelayListenUri(u.hostname, hc);  // wss://host:443/$hc/...
  const listenUri = `${u.protocol}//${u.host}` + official.slice(`wss://${u.hostname}:443`.length);
  return { relay, hc, listenUri, token: relay.createRelayToken(listenUri, keyName, key) };
};

// The rest of both scripts' lives: one {"event":"ready"} line once the control
// channel is open, exit 3 if it fails, and exit 0 when stdin ends (the
// benchmark closes it) or on SIGTERM.
module.exports.run = function run(server) {
  let ready = false;
  server.on('listening', () => {
    if (!ready) {
      ready = true;
      process.stdout.write(JSON.stringify({ event: 'ready' }) + '\n');
    }
  });
  server.on('error', (err) => {
    process.stderr.write('control channel error: ' + (err && err.message ? err.message : err) + '\n');
    process.exit(3);
  });
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
  process.on('SIGTERM', () => process.exit(0));
};
