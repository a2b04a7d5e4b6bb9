// harness.mjs -- real Tether processes for the browser tests.
//
// A redis-server of our own and the built daemons (busd, replayd, sessiond
// and mediad when built, one or more gateways) on free loopback ports,
// configured only through the TETHER_* environment contract (docs/operations.md), as
// tests/integration/tether_harness.py does for the Python tests. The
// gateways serve the console from <repo>/web with dev tokens on.
// Waiting is always polling a condition against a deadline.

import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, openSync, closeSync, readFileSync, accessSync, constants } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const buildEnv = process.env.TETHER_BUILD || 'build';
export const BUILD = path.isAbsolute(buildEnv) ? buildEnv : path.join(REPO, buildEnv);
export const BIN = path.join(BUILD, 'bin');
const START_ORDER = ['busd', 'replayd', 'sessiond', 'mediad', 'gateway'];
const CORE = ['busd', 'replayd', 'gateway'];
const START_TIMEOUT_MS = 15000;

export function built(name) {
  try {
    accessSync(path.join(BIN, name), constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function missingCore() {
  return CORE.filter((n) => !built(n));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls pred() (sync or async) until it returns a truthy value, which is
// returned, or throws an Error naming `what` at the deadline.
export async function waitUntil(pred, timeoutMs, what, intervalMs = 50) {
  const deadline = Date.now() + timeoutMs;
  let lastErr = null;
  for (;;) {
    try {
      const v = await pred();
      if (v) return v;
    } catch (e) {
      lastErr = e; // a poll that throws is just "not yet"
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}` +
        (lastErr ? ` (last error: ${lastErr.message})` : ''));
    }
    await sleep(intervalMs);
  }
}

// ---- ports -------------------------------------------------------------------------

const usedPorts = new Set();

function canBind(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host: '127.0.0.1', exclusive: true }, () => s.close(() => resolve(true)));
  });
}

// A loopback port nobody listens on, below the kernel's ephemeral range so a
// killed daemon can bind it again (no outgoing connection takes it meanwhile).
export async function freePort() {
  let hi = 32000;
  try {
    hi = Math.min(hi, Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0]));
  } catch { /* keep the default */ }
  for (let i = 0; i < 500; i++) {
    const port = 20000 + Math.floor(Math.random() * (hi - 20000));
    if (usedPorts.has(port)) continue;
    if (await canBind(port)) {
      usedPorts.add(port);
      return port;
    }
  }
  throw new Error('no free port found');
}

// ---- tokens --------------------------------------------------------------------------

const b64url = (buf) => Buffer.from(buf).toString('base64url');

// An HS256 JWT for `user` signed with `secret` (what a real issuer would mint).
export function makeToken(secret, user, ttlS = 3600, claims = {}) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify({ sub: user, iat: now, exp: now + ttlS, ...claims }));
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

// ---- processes -------------------------------------------------------------------------

function procAlive(p) {
  return p && p.exitCode === null && p.signalCode === null;
}

function waitExit(p, ms) {
  if (!procAlive(p)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    p.once('exit', () => { clearTimeout(t); resolve(true); });
  });
}

function tailOf(file, n = 30) {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-n).join('\n');
  } catch {
    return `(no log at ${file})`;
  }
}

class Daemon {
  constructor(name, kind, env, http, dir) {
    Object.assign(this, { name, kind, env, http, dir, proc: null, starts: 0 });
    this.log = path.join(dir, `${name}.log`);
  }

  start() {
    this.starts++;
    const fd = openSync(this.log, 'a');
    this.proc = spawn(path.join(BIN, this.kind), [], {
      env: this.env, cwd: this.dir, stdio: ['ignore', fd, fd], detached: true,
    });
    closeSync(fd);
    return this;
  }

  alive() { return procAlive(this.proc); }

  async get(p, timeoutMs = 1000) {
    const r = await fetch(`http://${this.http}${p}`, { signal: AbortSignal.timeout(timeoutMs) });
    await r.arrayBuffer();
    return r.status;
  }

  async waitReady(acceptNotReady) {
    await waitUntil(async () => {
      if (!this.alive()) throw new Error(`${this.name} exited during start-up:\n${tailOf(this.log)}`);
      const st = await this.get(this.kind === 'redis' ? '/' : '/readyz', 2000);
      return st === 200 || (acceptNotReady && st === 503);
    }, START_TIMEOUT_MS, `${this.name} /readyz on ${this.http}`);
  }

  async kill9() {
    if (!this.alive()) return;
    this.proc.kill('SIGKILL');
    await waitExit(this.proc, 10000);
  }

  async stop() {
    if (!this.alive()) return;
    this.proc.kill('SIGTERM');
    if (!(await waitExit(this.proc, 5000))) await this.kill9();
  }
}

// Redis plus every built daemon, in `dir`. opts.gateways: how many gateway
// replicas (default 1); opts.gatewayEnv[i]: extra environment for gateway i.
// opts.env: extra TETHER_* for every daemon.
export class Suite {
  constructor(dir, opts = {}) {
    this.dir = dir;
    this.opts = opts;
    this.secret = randomBytes(24).toString('hex');
    this.daemons = new Map();
    this.gateways = [];
    this.components = START_ORDER.filter((n) => built(n));
  }

  async start() {
    mkdirSync(this.dir, { recursive: true });
    const p = {};
    for (const k of ['redis', 'bus_in', 'bus_out', 'replayd', 'sessiond', 'mediad']) p[k] = await freePort();
    this.ports = p;
    this.redisProc = spawn('redis-server', ['--port', String(p.redis), '--bind', '127.0.0.1', '--save', '',
      '--appendonly', 'no', '--dir', this.dir, '--daemonize', 'no', '--logfile', path.join(this.dir, 'redis.log')],
    { stdio: 'ignore', detached: true });
    await waitUntil(() => redisPing(p.redis), 10000, `redis-server on port ${p.redis}`);
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TETHER_')));
    Object.assign(env, {
      TETHER_REDIS: `redis://127.0.0.1:${p.redis}/0`,
      TETHER_BUS_IN: `tcp://127.0.0.1:${p.bus_in}`,
      TETHER_BUS_OUT: `tcp://127.0.0.1:${p.bus_out}`,
      TETHER_REPLAYD: `tcp://127.0.0.1:${p.replayd}`,
      TETHER_SESSIOND: `tcp://127.0.0.1:${p.sessiond}`,
      TETHER_MEDIAD: `tcp://127.0.0.1:${p.mediad}`,
      TETHER_JWT_SECRET: this.secret,
      // The bus with CURVE on, as in the integration harness.
      ...(process.env.TETHER_TEST_BUS_CLEAR === '1' ? {} : { TETHER_BUS_SECRET: randomBytes(32).toString('base64') }),
      TETHER_LOG_LEVEL: process.env.TETHER_TEST_LOG_LEVEL || 'info',
      TETHER_MEDIA_IFACES: 'lo',
      TETHER_WEB_ROOT: path.join(REPO, 'web'),
      TETHER_DEV_TOKENS: '1',
      ...(this.opts.env || {}),
    });
    this.env = env;
    const started = [];
    for (const kind of this.components) {
      const n = kind === 'gateway' ? (this.opts.gateways || 1) : 1;
      for (let i = 0; i < n; i++) started.push(await this.add(kind));
    }
    for (const d of started) await d.waitReady(d.kind === 'gateway' && !this.components.includes('sessiond'));
    return this;
  }

  async add(kind) {
    const http = `127.0.0.1:${await freePort()}`;
    let name = kind;
    let extra = {};
    if (kind === 'gateway') {
      extra = (this.opts.gatewayEnv || [])[this.gateways.length] || {};
      this.gateways.push(name = `gateway${this.gateways.length + 1}`);
    }
    const d = new Daemon(name, kind, { ...this.env, ...extra, TETHER_HTTP: http }, http, this.dir);
    this.daemons.set(name, d);
    return d.start();
  }

  daemon(name) { return this.daemons.get(name); }
  gateway(i = 0) { return this.daemons.get(this.gateways[i]); }
  url(i = 0) { return `http://${this.gateway(i).http}/`; }
  token(user, ttlS = 3600, claims = {}) { return makeToken(this.secret, user, ttlS, claims); }

  // Starts a killed daemon again with the same environment and ports.
  async restart(name) {
    const d = this.daemons.get(name);
    await d.kill9();
    d.start();
    await d.waitReady(false);
  }

  // POST /v1/rooms/{room}/publish on gateway i; returns the JSON answer.
  async httpPublish(i, room, token, key, data) {
    const r = await fetch(`http://${this.gateway(i).http}/v1/rooms/${encodeURIComponent(room)}/publish`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Idempotency-Key': key, 'Content-Type': 'application/json' },
      body: JSON.stringify(data),
      signal: AbortSignal.timeout(5000),
    });
    const body = await r.text();
    if (r.status !== 200) throw new Error(`HTTP publish answered ${r.status}: ${body}`);
    return JSON.parse(body);
  }

  redis(...args) { return redisCommand(this.ports.redis, ...args); }

  logTails(n = 25) {
    const out = [];
    for (const d of this.daemons.values()) {
      out.push(`===== ${d.name} (${d.alive() ? 'running' : 'exited'}, http ${d.http}): ${d.log}`);
      out.push(tailOf(d.log, n));
    }
    return out.join('\n');
  }

  async stop() {
    await Promise.all([...this.daemons.values()].map((d) => d.stop()));
    if (procAlive(this.redisProc)) {
      this.redisProc.kill('SIGTERM');
      if (!(await waitExit(this.redisProc, 5000))) this.redisProc.kill('SIGKILL');
    }
  }
}

// One command to our Redis (a minimal RESP writer; the reply's first line).
export function redisCommand(port, ...args) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    let buf = '';
    s.setTimeout(3000, () => { s.destroy(); reject(new Error('redis timeout')); });
    s.on('error', reject);
    s.on('connect', () => {
      s.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join(''));
    });
    s.on('data', (d) => {
      buf += d;
      const i = buf.indexOf('\r\n');
      if (i >= 0) { s.destroy(); resolve(buf.slice(0, i)); }
    });
  });
}

// PING over a raw socket (no redis client package needed).
function redisPing(port) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    let buf = '';
    const done = (v) => { s.destroy(); resolve(v); };
    s.setTimeout(1000, () => done(false));
    s.on('error', () => done(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => { buf += d; if (buf.includes('\r\n')) done(buf.startsWith('+PONG')); });
  });
}

