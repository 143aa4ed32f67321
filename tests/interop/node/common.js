'use strict';
// Shared plumbing for the interop scripts: argument parsing, JSON-line output,
// relay URI building with the official helpers, secret redaction, exit codes.
//
// Output contract (read by tests/interop/nodeclients.py): stdout carries only
// JSON objects, one per line, each with an "event" member. Long-running
// listeners print {"event":"ready",...} once they are online. Human-readable
// diagnostics go to stderr. Secrets (the SAS key, tokens, signatures) are never
// printed: the key comes from the HYCO_KEY environment variable, not argv, and
// URIs are redacted before they are shown.
//
// Exit codes: 0 success, 2 bad usage, 3 could not connect / relay refused,
// 4 verification failed (wrong echo, timeout), 5 uncaught exception inside the
// client library (a crash-on-input quirk; the "crash" event says which).

const EXIT = Object.freeze({ OK: 0, USAGE: 2, CONNECT: 3, VERIFY: 4, CRASH: 5 });

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function redact(text) {
  if (text === undefined || text === null) return text;
  let s = String(text);
  s = s.replace(/(sb-hc-token=)[^&\s"]*/gi, '$1<redacted>');
  s = s.replace(/(sig(=|%3D))[^&\s"]*/gi, '$1<redacted>');
  s = s.replace(/SharedAccessSignature [^\s"]*/g, 'SharedAccessSignature <redacted>');
  const key = process.env.HYCO_KEY;
  // Defence in depth (the key is never printed on purpose); very short test
  // keys are skipped or every matching letter would vanish.
  if (key && key.length >= 6) s = s.split(key).join('<redacted>');
  return s;
}

// Write everything already queued on stdout, then exit. process.exit() right
// after a write to a pipe can lose the tail of the output.
function exitWith(code) {
  process.stdout.write('', () => process.exit(code));
}

function fail(code, stage, message, extra) {
  const msg = redact(message);
  emit(Object.assign({ event: 'error', stage: stage, message: msg, exitCode: code }, extra || {}));
  process.stderr.write(`${process.argv[1].split('/').pop()}: ${stage}: ${msg}\n`);
  exitWith(code);
}

// Any exception escaping the client library ends the script with a "crash"
// event instead of Node's bare stack trace, so tests can assert on it.
function installCrashHandler() {
  // Under the Python harness (HYCO_EXIT_ON_STDIN_EOF=1, stdin a pipe) the script
  // ends when its parent goes away, so no orphan keeps a listener registered.
  if (process.env.HYCO_EXIT_ON_STDIN_EOF === '1') {
    process.stdin.on('end', () => process.exit(0));
    process.stdin.on('error', () => process.exit(0));
    process.stdin.resume();
  }
  // A reader that went away (EPIPE) is not a client crash: just stop.
  process.stdout.on('error', (err) => process.exit(err && err.code === 'EPIPE' ? 0 : 1));
  process.on('uncaughtException', (err) => {
    const message = err && err.stack ? err.stack : String(err);
    emit({ event: 'crash', name: err && err.name, message: redact(err && err.message), exitCode: EXIT.CRASH });
    process.stderr.write('uncaught exception inside the client: ' + redact(message) + '\n');
    exitWith(EXIT.CRASH);
  });
}

// Flags: --name value | --name=value | --flag (boolean). Repeatable flags
// (declared in `lists`) collect arrays. `--json '{...}'` merges an object of
// the same names (camelCase or dashed) first, so either style works.
function parseArgs(argv, spec) {
  const out = Object.assign({}, spec.defaults || {});
  const booleans = new Set(spec.booleans || []);
  const lists = new Set(spec.lists || []);
  const known = new Set([...(spec.strings || []), ...booleans, ...lists, 'json']);
  const norm = (k) => k.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
  const put = (k, v) => {
    const name = norm(k);
    if (lists.has(k) || lists.has(name)) {
      out[name] = (out[name] || []).concat(Array.isArray(v) ? v : [v]);
    } else {
      out[name] = v;
    }
  };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${JSON.stringify(a)}`);
    a = a.slice(2);
    let value;
    const eq = a.indexOf('=');
    if (eq >= 0) { value = a.slice(eq + 1); a = a.slice(0, eq); }
    if (!known.has(a)) throw new Error(`unknown option --${a}`);
    if (booleans.has(a)) {
      put(a, value === undefined ? true : !/^(0|false|no)$/i.test(value));
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new Error(`option --${a} needs a value`);
      value = argv[++i];
    }
    if (a === 'json') {
      let obj;
      try { obj = JSON.parse(value); } catch (e) { throw new Error(`--json is not valid JSON: ${e.message}`); }
      if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new Error('--json must be a JSON object');
      for (const k of Object.keys(obj)) {
        const dashed = k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
        if (!known.has(dashed) && !known.has(k)) throw new Error(`unknown --json member ${k}`);
        if (k === 'key') throw new Error('the key is read from HYCO_KEY, never from arguments');
        put(dashed, obj[k]);
      }
      continue;
    }
    put(a, value);
  }
  for (const r of spec.required || []) {
    if (out[norm(r)] === undefined || out[norm(r)] === '') throw new Error(`--${r} is required`);
  }
  return out;
}

// Parse a namespace base such as ws://127.0.0.1:9090, wss://localhost:8443 or
// wss://ns.servicebus.windows.net (port 443 implied).
function parseBase(base) {
  let u;
  try { u = new URL(base); } catch (e) { throw new Error(`--base is not a URL: ${base}`); }
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new Error('--base must start with ws:// or wss://');
  if (u.pathname !== '/' && u.pathname !== '') throw new Error('--base must not have a path');
  const secure = u.protocol === 'wss:';
  const port = u.port ? Number(u.port) : (secure ? 443 : 80);
  return { scheme: u.protocol.slice(0, -1), host: u.hostname, port: port, secure: secure };
}

// The official helpers (createRelayListenUri / createRelaySendUri) hard-code
// 'wss://' + ns + ':443/$hc/' + path. For the real shape (wss, port 443) we use
// their output verbatim; otherwise we keep their path and query and swap only
// the origin, e.g. ws://127.0.0.1:9090/$hc/path?sb-hc-action=listen.
// The `server` option of hyco-ws / hyco-https is passed unchanged to the
// WebSocket constructor, so any full URI string works there.
function relayUri(helper, base, path, token, id) {
  const b = parseBase(base);
  const official = helper(b.host, path, token, id);
  const prefix = `wss://${b.host}:443`;
  if (!official.startsWith(prefix)) throw new Error('unexpected helper output shape');
  if (b.secure && b.port === 443) return official;
  return `${b.scheme}://${b.host}:${b.port}` + official.slice(prefix.length);
}

function readKey(required) {
  const key = process.env.HYCO_KEY;
  if (required && !key) throw new Error('HYCO_KEY (the SAS key) is not set in the environment');
  return key || null;
}

function withSuffix(uri, suffix, query) {
  // Insert a path suffix after the entity path and app query before sb-hc-*.
  const q = uri.indexOf('?');
  let head = q >= 0 ? uri.slice(0, q) : uri;
  let tail = q >= 0 ? uri.slice(q + 1) : '';
  if (suffix) head += (suffix.startsWith('/') ? '' : '/') + suffix;
  if (query) tail = query + (tail ? '&' + tail : '');
  return tail ? `${head}?${tail}` : head;
}

// Deterministic payloads shared with the Python side: message `index` of
// `size` units. Text is ASCII (bytes == characters), binary is a byte ramp.
const TEXT_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
function textPayload(index, size) {
  let s = '';
  const start = (index * 7) % TEXT_ALPHABET.length;
  const unit = TEXT_ALPHABET.slice(start) + TEXT_ALPHABET.slice(0, start);
  while (s.length < size) s += unit;
  return s.slice(0, size);
}
function binaryPayload(index, size) {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + index * 17 + 1) & 0xff;
  return b;
}
// Body for the hyco-https /big route: repeating 0..250 byte pattern.
function bigPayload(n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = i % 251;
  return b;
}

// Test hook for the renewal path. Both official listeners, given a token
// *function*, call it once per connect and then from
// `setInterval(fn, moment.duration(1, 'hours').asMilliseconds())` to send
// {"renewToken":{"token":...}}. shortenRenewal(S) turns exactly that one-hour
// interval into S seconds (every other timer is untouched), and renewing()
// tells the token function whether it is being called for a renewal.
const ONE_HOUR_MS = 3600 * 1000;
let inRenewal = false;
function shortenRenewal(seconds) {
  const original = global.setInterval;
  global.setInterval = function setIntervalShortRenewal(fn, delay, ...rest) {
    if (delay !== ONE_HOUR_MS || typeof fn !== 'function') return original.call(this, fn, delay, ...rest);
    const wrapped = function renewalTick(...a) {
      inRenewal = true;
      try { return fn.apply(this, a); } finally { inRenewal = false; }
    };
    return original.call(this, wrapped, seconds * 1000, ...rest);
  };
}
function renewing() { return inRenewal; }

module.exports = {
  EXIT, emit, redact, fail, exitWith, installCrashHandler, parseArgs, parseBase,
  relayUri, readKey, withSuffix, textPayload, binaryPayload, bigPayload,
  shortenRenewal, renewing,
};
