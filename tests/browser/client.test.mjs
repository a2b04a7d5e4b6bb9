// client.test.mjs -- web/tether.js's reconnection rules, in Node against a
// scripted fake server (no daemons, no browser): the paths that a real
// suite reaches only by luck or by long waits. The same rules as the C SDK
// (client/tether_client.h): backoff, close codes, resume with positions,
// exactly once in order, the outbox, stale push-to-talk requests, floor
// restore, server hints, fresh tokens.

import assert from 'node:assert/strict';
import { test } from './runner.mjs';
import { Backoff, TetherClient, closeAction } from '../../web/tether.js';

/* A WebSocket stand-in: the test plays the server. */
class FakeSocket {
  static OPEN = 1;
  static all = [];
  constructor(url, protocol) {
    Object.assign(this, { url, protocol, readyState: 0, sent: [] });
    FakeSocket.all.push(this);
  }
  send(text) { this.sent.push(JSON.parse(text)); }
  close() { this.readyState = 3; }
  // server side
  accept() { this.readyState = 1; this.onopen(); }
  push(frame) { this.onmessage({ data: JSON.stringify(frame) }); }
  drop(code, reason = '') { this.readyState = 3; this.onclose({ code, reason }); }
  last(type) { return [...this.sent].reverse().find((f) => f.type === type); }
  of(type) { return this.sent.filter((f) => f.type === type); }
}
globalThis.WebSocket = FakeSocket;

const fast = { initialMs: 20, maxMs: 80, stableMs: 10000 };

function client(extra = {}) {
  FakeSocket.all.length = 0;
  const c = new TetherClient({ url: 'ws://test/ws', token: 'tok', backoff: fast, ...extra });
  const events = [];
  for (const type of ['state', 'message', 'subscribed', 'gap', 'ack', 'floor', 'error']) {
    c.addEventListener(type, (e) => events.push({ type, ...e.detail }));
  }
  return { c, events, of: (type) => events.filter((e) => e.type === type) };
}

async function until(what, pred, ms = 3000) {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/* The current socket, once the client opened one after `n` sockets. */
async function socket(n) {
  await until(`socket #${n + 1}`, () => FakeSocket.all.length > n);
  return FakeSocket.all[n];
}

function welcome(ws, extra = {}) {
  ws.push({ type: 'welcome', session: 's1', user: 'u', resumed: false, heartbeat_ms: 25000,
    session_ttl_ms: 120000, token_expires_in_ms: 3600000, ...extra });
}

const msg = (room, seq, epoch = 'e1') => ({ type: 'message', room, seq, epoch, id: `m${seq}`, from: 'x', ts: 1, data: seq });

test('tether.js: backoff doubles from 1 s to a 30 s cap, full jitter, reset only after a stable link',
  { suite: false }, async () => {
    const b = new Backoff({}, () => 0.999999);
    const delays = Array.from({ length: 7 }, () => b.next());
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    const j = new Backoff({}, Math.random);
    for (let i = 0; i < 200; i++) {
      const ceil = j.ceiling(j.attempt + 1);
      const d = j.next();
      assert.ok(d >= 0 && d <= ceil, `delay ${d} within [0, ${ceil}]`);
    }
    const s = new Backoff({}, () => 0.5);
    s.next(); s.next();
    s.up(1000); s.down(5000);          // up 4 s: a flapping link keeps its delays
    assert.equal(s.attempt, 2);
    s.up(10000); s.down(20000);        // up 10 s: stable, start over
    assert.equal(s.attempt, 0);
    assert.equal(new Backoff({ maxAttempts: 1 }).next() >= 0, true);
    const m = new Backoff({ maxAttempts: 1 });
    m.next();
    assert.equal(m.next(), -1);
    const policy = Object.fromEntries([1000, 1001, 1006, 1008, 1012, 1013, 4000, 4001, 4002, 4003, 4006, 4501,
      4502, 4503, 4504, 4505, 4508].map((c) => [c, closeAction(c)]));
    assert.deepEqual(policy, { 1000: 'fail', 1001: 'retry', 1006: 'retry', 1008: 'fail', 1012: 'retry',
      1013: 'retry', 4000: 'retry', 4001: 'retry', 4002: 'retry', 4003: 'newSession', 4006: 'fail', 4501: 'fail',
      4502: 'token', 4503: 'fail', 4504: 'fail', 4505: 'fail', 4508: 'fail' });
  });

test('tether.js: resume in one hello with session and positions; duplicates dropped, order kept, replayed marked',
  { suite: false }, async () => {
    const { c, of } = client();
    c.subscribe('a', { from: 'oldest' });
    c.subscribe('b');
    c.connect();
    let ws = await socket(0);
    assert.equal(ws.protocol, 'tether.v1.json');
    ws.accept();
    assert.deepEqual(ws.last('hello'), { type: 'hello', client: 'tether-web/1', token: 'tok',
      rooms: { a: { seq: 0 }, b: {} } });
    welcome(ws);
    ws.push({ type: 'subscribed', room: 'a', epoch: 'e1', seq: 2, recovered: true, missed: 2 });
    ws.push(msg('a', 1));
    ws.push(msg('a', 2));
    ws.push({ type: 'subscribed', room: 'b', epoch: '', seq: 0, recovered: true, missed: 0 });
    ws.push(msg('a', 3));
    ws.drop(1006);
    assert.equal(c.state, 'reconnecting');
    const st = of('state').at(-1);
    assert.ok(st.nextDelayMs >= 0 && st.nextDelayMs <= 20 && st.attempt === 1, JSON.stringify(st));
    ws = await socket(1);
    ws.accept();
    // Room b was empty at subscribe time: from the oldest, so nothing of an outage is skipped.
    assert.deepEqual(ws.last('hello'), { type: 'hello', client: 'tether-web/1', token: 'tok', session: 's1',
      rooms: { a: { epoch: 'e1', seq: 3 }, b: { seq: 0 } } });
    welcome(ws, { resumed: true });
    ws.push({ type: 'subscribed', room: 'a', epoch: 'e1', seq: 5, recovered: true, missed: 4 });
    for (const s of [2, 3, 4, 5]) ws.push(msg('a', s)); // a server replaying more than asked
    ws.push(msg('a', 6));
    const got = of('message').filter((m) => m.room === 'a').map((m) => [m.seq, m.history, m.replayed]);
    assert.deepEqual(got, [[1, true, false], [2, true, false], [3, false, false], [4, false, true],
      [5, false, true], [6, false, false]]);
    assert.equal(c.stats.duplicatesDropped, 2);
    assert.equal(of('state').at(-1).resumed, true);
    // A jump the server did not announce is reported, never silent.
    ws.push(msg('a', 9));
    assert.deepEqual(of('gap').map((g) => [g.from, g.to, g.byClient]), [[7, 8, true]]);
    c.disconnect();
  });

test('tether.js: outbox keeps publishes until acked, re-sends them with the same id, caps at 100',
  { suite: false }, async () => {
    const { c, of } = client();
    c.subscribe('r');
    const id1 = c.publish('r', { text: 'offline' });   // before any connection: queued
    c.connect();
    let ws = await socket(0);
    ws.accept();
    welcome(ws);
    assert.deepEqual(ws.of('publish').map((p) => p.id), [id1]);
    const id2 = c.publish('r', 2);
    ws.push({ type: 'ack', id: id1, room: 'r', seq: 1, duplicate: false });
    ws.drop(1012);                                       // id2 in flight, unacked
    ws = await socket(1);
    ws.accept();
    welcome(ws, { resumed: true });
    assert.deepEqual(ws.of('publish').map((p) => [p.id, p.data]), [[id2, 2]], 'same id, same data');
    ws.push({ type: 'ack', id: id2, room: 'r', seq: 2, duplicate: true });
    assert.deepEqual(of('ack').map((a) => [a.id, a.seq, a.duplicate]), [[id1, 1, false], [id2, 2, true]]);
    assert.equal(c.stats.publishesResent, 1);
    // A retryable error re-sends after a pause; a final one reports the failure.
    const id3 = c.publish('r', 3);
    ws.push({ type: 'error', code: 4500, reason: 'retry is safe', id: id3 });
    await until('the retry of id3', () => ws.of('publish').filter((p) => p.id === id3).length === 2);
    ws.push({ type: 'error', code: 4503, reason: 'forbidden', id: id3 });
    assert.deepEqual(of('ack').at(-1), { type: 'ack', id: id3, room: 'r', seq: 0, duplicate: false, error: 4503,
      reason: 'forbidden' });
    ws.drop(1006);
    for (let i = 0; i < 100; i++) c.publish('r', i);
    assert.throws(() => c.publish('r', 'one too many'), /outbox full/);
    c.disconnect();
  });

test('tether.js: push-to-talk requests stale after 2 s are dropped; a held floor is asked for again after resume',
  { suite: false }, async () => {
    const { c, of } = client({ pttStaleMs: 100 });
    c.subscribe('t');
    c.connect();
    let ws = await socket(0);
    ws.accept();
    welcome(ws);
    ws.push({ type: 'subscribed', room: 't', epoch: 'e', seq: 0, recovered: true, missed: 0 });
    c.pttRequest('t');
    assert.deepEqual(ws.last('ptt'), { type: 'ptt', room: 't', action: 'request' });
    ws.push({ type: 'ptt', room: 't', state: 'granted', holder: 'u', max_ms: 60000 });
    assert.equal(c.floorState('t').state, 'granted');
    ws.drop(1006);
    assert.equal(c.floorState('t').state, 'suspended');
    ws = await socket(1);
    ws.accept();
    welcome(ws, { resumed: true });
    assert.equal(ws.of('ptt').length, 0, 'waits for the room to be resumed');
    ws.push({ type: 'subscribed', room: 't', epoch: 'e', seq: 0, recovered: true, missed: 0 });
    assert.deepEqual(ws.last('ptt'), { type: 'ptt', room: 't', action: 'request' });
    assert.equal(c.floorState('t').state, 'requesting');
    ws.push({ type: 'ptt', room: 't', state: 'granted', holder: 'u' });
    c.pttRelease('t');
    assert.deepEqual(ws.last('ptt'), { type: 'ptt', room: 't', action: 'release' });
    // Offline: a request waits, and goes stale.
    ws.drop(1006);
    c.pttRequest('t');
    await new Promise((r) => setTimeout(r, 150));
    ws = await socket(2);
    ws.accept();
    welcome(ws, { resumed: true });
    ws.push({ type: 'subscribed', room: 't', epoch: 'e', seq: 0, recovered: true, missed: 0 });
    assert.equal(ws.of('ptt').length, 0, 'the stale request was not sent');
    assert.equal(c.floorState('t').state, 'expired');
    assert.equal(c.stats.pttStaleDropped, 1);
    // No media service: the id-less 4500 right after the request says so.
    c.pttRequest('t');
    ws.push({ type: 'error', code: 4500, reason: 'push-to-talk media service is not available on this gateway' });
    assert.equal(c.floorState('t').state, 'unavailable');
    assert.equal(of('floor').at(-1).code, 4500);
    c.disconnect();
  });

test('tether.js: close codes: hints honoured, 4003 new session, 4006/4501 no retry, 4502 fresh token',
  { suite: false }, async () => {
    let { c, of } = client();
    c.subscribe('r');
    c.connect();
    let ws = await socket(0);
    ws.accept();
    welcome(ws);
    ws.push({ type: 'subscribed', room: 'r', epoch: 'e', seq: 4, recovered: true, missed: 0 });
    ws.push({ type: 'reconnect', after_ms: 60, reason: 'drain' });
    ws.drop(4000, 'draining');
    const st = of('state').at(-1);
    assert.deepEqual([st.state, st.nextDelayMs, st.hinted], ['reconnecting', 60, true]);
    ws = await socket(1);
    ws.accept();
    welcome(ws, { resumed: true });
    ws.drop(4003, 'session state lost');
    ws = await socket(2);
    ws.accept();
    assert.equal(ws.last('hello').session, undefined, 'a new session');
    assert.deepEqual(ws.last('hello').rooms, { r: { epoch: 'e', seq: 4 } }, 'from the same positions');
    welcome(ws, { session: 's2' });
    ws.drop(4006, 'taken over');
    assert.equal(c.state, 'failed');
    assert.match(of('state').at(-1).reason, /taken over.*not reconnecting/);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(FakeSocket.all.length, 3, 'no attempt after 4006');

    ({ c, of } = client());
    c.connect();
    ws = await socket(0);
    ws.accept();
    ws.drop(4501, 'bad signature');
    assert.equal(c.state, 'failed');
    assert.equal(of('state').at(-1).reason, 'authentication failed (4501): bad signature; not reconnecting');

    let asked = 0;
    ({ c, of } = client({ getToken: async () => { asked++; return 'fresh'; } }));
    c.connect();
    ws = await socket(0);
    ws.accept();
    ws.drop(4502, 'token expired');
    assert.equal(c.state, 'reconnecting');
    ws = await socket(1);
    ws.accept();
    assert.equal(ws.last('hello').token, 'fresh');
    assert.equal(asked, 1);
    welcome(ws);
    assert.equal(c.state, 'connected');
    c.disconnect();

    ({ c, of } = client());  // 4502 and no way to get a token: failed
    c.connect();
    ws = await socket(0);
    ws.accept();
    ws.drop(4502, 'token expired');
    assert.equal(c.state, 'failed');
  });

test('tether.js: a dead link (no frame for heartbeat + grace) is dropped and resumed', { suite: false }, async () => {
  const { c, of } = client({ watchdogGraceMs: 100 });
  c.connect();
  let ws = await socket(0);
  ws.accept();
  welcome(ws, { heartbeat_ms: 100 });
  ws.push({ type: 'ping' });
  assert.deepEqual(ws.last('pong'), { type: 'pong' });
  await until('the watchdog', () => c.state === 'reconnecting', 2000);
  assert.match(of('state').at(-1).reason, /nothing received for 200 ms/);
  ws = await socket(1);
  ws.accept();
  welcome(ws, { resumed: true });
  assert.equal(c.state, 'connected');
  c.disconnect();
});
