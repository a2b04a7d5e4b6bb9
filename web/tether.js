/* tether.js -- the Tether client for browsers (tether.v1.json over WebSocket).
 *
 * One TetherClient is one logical connection to a gateway that survives the
 * loss of its socket, with the same rules as the C SDK (client/tether_client.h):
 *
 *   states     connecting -> connected -> reconnecting -> connected ...;
 *              disconnected (the application closed it) and failed (not
 *              allowed to retry: 1000 from the server, 4006, 45xx, 1008, or
 *              max attempts used up)
 *   backoff    attempt n waits uniform [0, min(30 s, 1 s * 2^(n-1))] (full
 *              jitter); the count resets only after a connection stayed up
 *              10 s; a server `reconnect {after_ms}` hint beats the guess
 *   resume     one `hello` with the session id and every room's last
 *              delivered {epoch, seq}; messages are delivered once per seq,
 *              in order; a hole is always reported (`gap`, recovered: false)
 *   outbox     at most 100 entries; a publish stays until its ack and is
 *              re-sent with the same id after a reconnection (or after 1 s on
 *              a retryable error 4500/4429); push-to-talk requests older than
 *              2 s when the link comes back are dropped (floor `expired`)
 *   floor      a floor held when the link drops is `suspended`, then asked
 *              for again once the room is resumed
 *   tokens     4502 asks options.getToken('expired') for a fresh token, then
 *              resumes; before `exp` it asks getToken('refresh') and sends
 *              `refresh` in-band
 *
 * Events (CustomEvent, payload in event.detail): state, welcome, subscribed,
 * message, gap, ack, error, floor, presence, media, frame (anything else).
 * Every timer is the client's own; nothing here touches the DOM.
 */

import { Backoff, DEFAULTS, closeAction, closeText, tokenClaims, validRoom, validId } from './tether_rules.js';

export { Backoff, closeAction, closeText, tokenClaims, validRoom, validId };

/* ---- rooms: positions, exactly once and in order -------------------------------------- */

class Room {
  constructor(name, pos) {
    this.name = name;
    this.epoch = '';
    this.last = 0;
    this.hasPos = false;
    this.startOldest = false;
    if (pos && pos.epoch) {
      this.epoch = pos.epoch;
      this.last = pos.seq || 0;
      this.hasPos = true;
    } else if (pos && pos.from === 'oldest') {
      this.startOldest = true;
    }
    this.subscribedOnce = false;
    this.missedLeft = 0;      // message frames still owed by the last `subscribed`
    this.missedKind = null;   // 'history' (first subscribe) or 'replayed' (a resume)
  }

  position() {
    if (this.hasPos && this.epoch) return { epoch: this.epoch, seq: this.last };
    // A position without an epoch: the room was empty when we subscribed, so
    // everything it has since is new to us; "live" would skip an outage.
    if (this.startOldest || this.hasPos) return { seq: 0 };
    return {};
  }
}

/* ---- the client ---------------------------------------------------------------------- */

export class TetherClient extends EventTarget {
  constructor(options) {
    super();
    this.o = { ...DEFAULTS, ...options, backoff: { ...DEFAULTS.backoff, ...(options.backoff || {}) } };
    this.token = this.o.token || '';
    this.state = 'disconnected';
    this.session = '';
    this.user = '';
    this.heartbeatMs = 25000;
    this.rooms = new Map();
    this.floors = new Map();
    this.outbox = [];           // entries in creation order: {kind, room, id, data, at, inflight, notBefore}
    this.backoff = new Backoff(this.o.backoff);
    this.ws = null;
    this.welcomed = false;
    this.opened = false;
    this.hint = null;
    this.downSince = 0;
    this.nextAttemptAt = 0;
    this.refreshAt = 0;
    this.awaitingToken = false;
    this.tokenStreak = 0;
    this.lastControl = null;    // the last ptt/media frame sent: errors carry no id for them
    this.idPrefix = 'w' + Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(36)).join('');
    this.idCounter = 0;
    this.timers = { retry: 0, sweep: 0 };
    this.stats = { attempts: 0, connects: 0, messages: 0, duplicatesDropped: 0, gaps: 0, publishesAcked: 0,
      publishesResent: 0, pttStaleDropped: 0, refreshes: 0 };
  }

  get live() { return this.welcomed && this.ws !== null && this.ws.readyState === WebSocket.OPEN; }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  setState(state, info = {}) {
    const prev = this.state;
    this.state = state;
    this.emit('state', { state, prev, code: 0, reason: '', attempt: this.backoff.attempt, ...info });
  }

  /* ---- life cycle ---- */

  /* Starts connecting from disconnected or failed; rooms, positions and the
   * outbox are kept. */
  connect() {
    if (this.state !== 'disconnected' && this.state !== 'failed') return;
    this.backoff.reset();
    this.awaitingToken = false;
    if (!this.timers.sweep) this.timers.sweep = setInterval(() => this.sweep(), 250);
    this.setState('connecting', { reason: 'connecting' });
    this.attempt();
  }

  /* The retry button: from failed, start over; while waiting, try now. */
  retryNow() {
    if (this.state === 'failed' || this.state === 'disconnected') return this.connect();
    if (this.state === 'reconnecting' && !this.ws && !this.awaitingToken) {
      clearTimeout(this.timers.retry);
      this.attempt();
    }
  }

  /* Closes (1000) and goes disconnected; bye ends the session at once
   * (presence offline), without it the session stays resumable for its TTL. */
  disconnect({ bye = false } = {}) {
    const ws = this.ws;
    if (ws && bye && this.live) this.sendFrame({ type: 'bye' });
    this.ws = null;
    if (ws) ws.close(1000, bye ? 'bye' : 'closed by the application');
    if (bye) this.session = '';
    this.stopTimers();
    this.linkGone();
    this.setState('disconnected', { code: 1000, reason: bye ? 'left (bye)' : 'closed by the application' });
  }

  stopTimers() {
    clearTimeout(this.timers.retry);
    clearInterval(this.timers.sweep);
    this.timers.sweep = 0;
    this.nextAttemptAt = 0;
    this.refreshAt = 0;
  }

  attempt() {
    this.stats.attempts++;
    this.attemptStarted = Date.now();
    this.hint = null;
    this.welcomed = false;
    this.opened = false;
    this.nextAttemptAt = 0;
    let ws;
    try {
      ws = new WebSocket(this.o.url, 'tether.v1.json');
    } catch (e) {
      this.fail(0, `bad server address: ${e.message}`);
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.opened = true;
      this.lastRx = Date.now();
      this.sendHello();
    };
    ws.onmessage = (ev) => {
      if (this.ws === ws) this.onFrame(ev.data);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.linkDown(ev.code, closeText(ev.code, ev.reason, this.opened));
    };
  }

  /* Ends the current link from our side (watchdog, connect timeout). */
  dropLink(reason) {
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, 'client gave up on this link');
    this.linkDown(1006, reason);
  }

  /* The bookkeeping of a lost link, whatever comes next. */
  linkGone() {
    const now = Date.now();
    if (this.welcomed) this.downSince = now;
    this.welcomed = false;
    this.refreshAt = 0;
    this.backoff.down(now);
    for (const r of this.rooms.values()) r.missedLeft = 0;
    for (const e of this.outbox) {
      if (e.inflight) {
        e.inflight = false;   // owed again, same id: the server dedups
        e.resend = true;
      }
    }
    for (const [room, f] of this.floors) {
      f.linkSent = false;
      if (f.state === 'granted' && f.want) {
        f.state = 'suspended';
        this.emitFloor(room, 'link lost while holding the floor');
      } else if (f.state === 'taken') {
        f.state = 'idle';     // what the others do while we are away is unknown
        f.holder = '';
      }
    }
  }

  linkDown(code, reason) {
    this.linkGone();
    if (this.state === 'disconnected' || this.state === 'failed') return;
    switch (closeAction(code)) {
      case 'fail':
        this.fail(code, `${reason}; not reconnecting`);
        return;
      case 'token':
        this.tokenExpired(reason);
        return;
      case 'newSession':
        this.session = ''; // resubscribe from our positions under a new session
        break;
      default:
        break;
    }
    this.retry(code, reason);
  }

  fail(code, reason) {
    this.stopTimers();
    this.awaitingToken = false;
    this.setState('failed', { code, reason });
  }

  retry(code, reason) {
    let delay = this.backoff.next();
    if (delay < 0) {
      this.fail(code, `gave up after ${this.o.backoff.maxAttempts} attempts (last: ${reason})`);
      return;
    }
    let hinted = false;
    if (this.hint !== null) {
      delay = this.hint; // the server said when to come back (drain): that beats our guess
      hinted = true;
      this.hint = null;
    }
    this.schedule(delay);
    this.setState('reconnecting', { code, reason, nextDelayMs: delay, nextAttemptAt: this.nextAttemptAt, hinted });
  }

  schedule(delay) {
    clearTimeout(this.timers.retry);
    this.nextAttemptAt = Date.now() + delay;
    this.timers.retry = setTimeout(() => {
      if (this.state === 'reconnecting' && !this.ws && !this.awaitingToken) this.attempt();
    }, delay);
  }

  /* ---- tokens ---- */

  async tokenExpired(reason) {
    this.tokenStreak++;
    if (!this.o.getToken) {
      this.fail(4502, `${reason}; no way to get a fresh token`);
      return;
    }
    this.awaitingToken = true;
    this.setState('reconnecting', { code: 4502, reason: `${reason}: getting a fresh token`, awaitingToken: true });
    let tok = null;
    try {
      tok = await this.o.getToken('expired');
    } catch {
      tok = null;
    }
    if (!this.awaitingToken) return; // closed meanwhile
    if (!tok) {
      this.fail(4502, `${reason}; no fresh token available`);
      return;
    }
    this.setToken(tok);
  }

  /* A new token: sent in-band (`refresh`) when connected, else used by the
   * next hello; after a 4502 it triggers the reconnection. */
  setToken(token) {
    this.token = token;
    if (this.live) {
      this.sendFrame({ type: 'refresh', token });
      this.stats.refreshes++;
      const c = tokenClaims(token);
      if (c && c.exp) this.planRefresh(c.exp * 1000 - Date.now());
      return;
    }
    if (this.awaitingToken) {
      this.awaitingToken = false;
      // The first expiry in a row reconnects at once; a token that keeps
      // failing goes through the backoff like any other failure.
      let delay = 0;
      if (this.tokenStreak > 1) delay = this.backoff.next();
      if (delay < 0) {
        this.fail(4502, 'gave up: fresh tokens keep expiring');
        return;
      }
      this.schedule(delay);
      this.setState('reconnecting', { code: 4502, reason: 'got a fresh token: reconnecting', nextDelayMs: delay,
        nextAttemptAt: this.nextAttemptAt });
    }
  }

  planRefresh(expInMs) {
    this.refreshAt = 0;
    if (!this.o.getToken || !(expInMs > 0)) return;
    // A fifth of the lifetime ahead, at least 2 s and at most 60 s.
    const lead = Math.min(60000, Math.max(2000, expInMs / 5));
    this.refreshAt = Date.now() + Math.max(0, expInMs - lead);
  }

  async refreshToken() {
    let tok = null;
    try {
      tok = await this.o.getToken('refresh');
    } catch {
      tok = null;
    }
    if (tok && this.live) this.setToken(tok);
  }

  /* Runs 4 times a second while connecting: connect timeout, dead-link
   * watchdog, token refresh, publishes waiting out a retry delay. */
  sweep() {
    const now = Date.now();
    if (this.ws && !this.welcomed && now - this.attemptStarted >= this.o.connectTimeoutMs) {
      this.dropLink(`no welcome within ${this.o.connectTimeoutMs} ms`);
      return;
    }
    if (!this.live) return;
    const limit = this.heartbeatMs + this.o.watchdogGraceMs;
    if (now - this.lastRx >= limit) {
      this.dropLink(`nothing received for ${limit} ms: dead connection`);
      return;
    }
    if (this.refreshAt && now >= this.refreshAt) {
      this.refreshAt = 0;
      this.refreshToken();
    }
    this.pump();
  }

  /* ---- frames out ---- */

  sendFrame(obj) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  sendHello() {
    const hello = { type: 'hello', client: this.o.clientName };
    if (this.token) hello.token = this.token;
    if (this.session) hello.session = this.session;
    if (this.rooms.size) {
      hello.rooms = {};
      for (const r of this.rooms.values()) hello.rooms[r.name] = r.position();
    }
    this.sendFrame(hello);
  }

  /* Sends what the outbox owes, in order. */
  pump() {
    const now = Date.now();
    while (this.live) {
      const e = this.outbox.find((x) => !x.inflight && x.notBefore <= now);
      if (!e) return;
      if (e.kind === 'publish') {
        this.sendFrame({ type: 'publish', room: e.room, id: e.id, data: e.data });
        if (e.resend) this.stats.publishesResent++;
        e.inflight = true;
      } else {
        const request = e.kind === 'ptt-request';
        this.sendFrame({ type: 'ptt', room: e.room, action: request ? 'request' : 'release' });
        this.lastControl = { type: 'ptt', room: e.room, action: request ? 'request' : 'release', at: now };
        const f = this.floors.get(e.room);
        if (request && f) f.linkSent = true;
        this.outbox.splice(this.outbox.indexOf(e), 1);
      }
    }
  }

  /* ---- frames in ---- */

  onFrame(text) {
    this.lastRx = Date.now();
    let f;
    try {
      f = JSON.parse(text);
    } catch {
      return;
    }
    if (!f || typeof f !== 'object') return;
    switch (f.type) {
      case 'welcome': if (!this.welcomed) this.onWelcome(f); break;
      case 'subscribed': this.onSubscribed(f); break;
      case 'message': this.onMessage(f); break;
      case 'ack': this.onAck(f); break;
      case 'gap': this.onGap(f); break;
      case 'error': this.onError(f); break;
      case 'ping': this.sendFrame({ type: 'pong' }); break;
      case 'ptt': this.onPtt(f); break;
      case 'presence': this.emit('presence', f); break;
      case 'media': this.emit('media', f); break;
      case 'reconnect':
        this.hint = Math.min(600000, Math.max(0, Number(f.after_ms) || 0));
        this.emit('frame', f);
        break;
      default: this.emit('frame', f); break;
    }
  }

  onWelcome(f) {
    const now = Date.now();
    const down = this.downSince ? now - this.downSince : 0;
    this.session = f.session || '';
    this.user = f.user || '';
    this.heartbeatMs = f.heartbeat_ms || 25000;
    this.welcomed = true;
    this.downSince = 0;
    this.stats.connects++;
    this.backoff.up(now);
    if (f.token_expires_in_ms > 0) this.tokenStreak = 0;
    this.planRefresh(f.token_expires_in_ms);
    this.emit('welcome', f);
    this.setState('connected', { reason: f.resumed ? 'connected, session resumed' : 'connected',
      resumed: !!f.resumed, disconnectedMs: down, session: this.session });
    if (!this.live) return;
    this.expireStalePtt();
    // Floors of rooms we do not subscribe have no `subscribed` to wait for.
    for (const room of this.floors.keys()) if (!this.rooms.has(room)) this.floorRestore(room);
    this.pump();
  }

  onSubscribed(f) {
    const r = this.rooms.get(f.room);
    if (!r) return;
    const epoch = f.epoch || '';
    const missed = Number(f.missed) || 0;
    const top = Number(f.seq) || 0;
    const base = top >= missed ? top - missed : 0;
    const resubscribe = r.subscribedOnce;
    let epochChanged = false;
    let clientGap = null;
    if (!r.epoch || r.epoch !== epoch) {
      // New numbering: whatever we had delivered belongs to the old epoch.
      epochChanged = r.epoch !== '' && epoch !== '';
      r.epoch = epoch;
      r.last = base;
    } else if (base > r.last) {
      // History we had not seen is gone; if the server claims recovery
      // anyway, we say it ourselves: never a silent hole.
      if (f.recovered) clientGap = { from: r.last + 1, to: base };
      r.last = base;
    } // base < last: the server replays what we have; duplicates are dropped
    r.hasPos = true;
    r.startOldest = false;
    r.subscribedOnce = true;
    r.missedLeft = missed;
    r.missedKind = resubscribe ? 'replayed' : 'history';
    this.emit('subscribed', { room: f.room, epoch, seq: top, missed, recovered: !!f.recovered, gap: f.gap || null,
      resubscribe, epochChanged });
    if (clientGap) this.reportGap(f.room, clientGap.from, clientGap.to, true);
    if (this.live && resubscribe) {
      this.floorRestore(f.room);
      this.pump();
    }
  }

  onMessage(f) {
    const r = this.rooms.get(f.room);
    if (!r) return;
    let kind = null;
    if (r.missedLeft > 0) {
      r.missedLeft--;
      kind = r.missedKind;
    }
    const seq = Number(f.seq) || 0;
    if (r.epoch && f.epoch && f.epoch !== r.epoch) return; // another epoch: a new `subscribed` says so
    if (seq === 0) return;
    if (!r.epoch) {
      // The first epoch we hear of: the room was empty at `subscribed`.
      if (!f.epoch) return;
      r.epoch = f.epoch;
      if (!r.hasPos) r.last = seq - 1;
      r.hasPos = true;
    }
    if (seq <= r.last) {
      this.stats.duplicatesDropped++;
      return;
    }
    if (seq > r.last + 1) this.reportGap(f.room, r.last + 1, seq - 1, true);
    r.last = seq;
    this.stats.messages++;
    this.emit('message', { room: f.room, seq, epoch: f.epoch || r.epoch, id: f.id || '', from: f.from || '',
      ts: f.ts || 0, data: f.data, replayed: kind === 'replayed', history: kind === 'history' });
  }

  onGap(f) {
    const r = this.rooms.get(f.room);
    if (!r) return;
    if (f.to > r.last) r.last = f.to;
    this.reportGap(f.room, f.from, f.to, false);
  }

  reportGap(room, from, to, byClient) {
    this.stats.gaps++;
    this.emit('gap', { room, from, to, byClient });
  }

  onAck(f) {
    const i = this.outbox.findIndex((e) => e.kind === 'publish' && e.id === f.id);
    if (i < 0) return; // the ack of a copy re-sent after its first ack: already reported
    const e = this.outbox[i];
    this.outbox.splice(i, 1);
    this.stats.publishesAcked++;
    this.emit('ack', { id: f.id, room: f.room || e.room, seq: f.seq, duplicate: !!f.duplicate, error: 0,
      latencyMs: Date.now() - e.at });
  }

  onError(f) {
    const e = f.id ? this.outbox.find((x) => x.kind === 'publish' && x.id === f.id) : null;
    if (e && e.inflight) {
      if (f.code === 4500 || f.code === 4429) {
        // docs/protocol.md: retrying with the same id is safe.
        e.inflight = false;
        e.resend = true;
        e.notBefore = Date.now() + this.o.publishRetryMs;
        return;
      }
      this.outbox.splice(this.outbox.indexOf(e), 1);
      this.emit('ack', { id: e.id, room: e.room, seq: 0, duplicate: false, error: f.code || 4500,
        reason: f.reason || 'publish failed' });
      return;
    }
    // ptt and media frames carry no id: the gateway answers them at once, so
    // an id-less error right after one is about it.
    let about = null;
    if (!f.id && this.lastControl && Date.now() - this.lastControl.at < 5000) about = this.lastControl;
    if (about && about.type === 'ptt' && about.action === 'request') {
      const fl = this.floors.get(about.room);
      if (fl && fl.state === 'requesting') {
        fl.state = 'unavailable';
        fl.want = false;
        this.emitFloor(about.room, f.reason || 'server error', f.code);
      }
    }
    this.emit('error', { code: f.code, reason: f.reason || '', id: f.id || null, about });
  }

  /* ---- rooms ---- */

  /* pos: undefined (live only), {from: 'oldest'}, or {epoch, seq}. */
  subscribe(room, pos) {
    if (!validRoom(room)) throw new Error(`invalid room name: ${room}`);
    if (this.rooms.has(room)) return false;
    const r = new Room(room, pos);
    this.rooms.set(room, r);
    if (this.live) this.sendFrame({ type: 'subscribe', room, ...r.position() });
    return true;
  }

  unsubscribe(room) {
    if (!this.rooms.delete(room)) return false;
    if (this.live) this.sendFrame({ type: 'unsubscribe', room });
    return true;
  }

  position(room) {
    const r = this.rooms.get(room);
    return r ? { epoch: r.epoch, seq: r.last } : null;
  }

  /* ---- publish ---- */

  /* Queues data (any JSON value) for room; returns the id. Throws when the
   * outbox is full (100 entries) or an argument is invalid. */
  publish(room, data, id) {
    if (!validRoom(room)) throw new Error(`invalid room name: ${room}`);
    if (id === undefined) id = `${this.idPrefix}-${++this.idCounter}`;
    if (!validId(id)) throw new Error(`invalid id: ${id}`);
    if (this.outbox.some((e) => e.kind === 'publish' && e.id === id)) throw new Error(`id already pending: ${id}`);
    if (this.outbox.length >= this.o.outboxMax && !this.evictPtt()) {
      throw new Error(`outbox full (${this.o.outboxMax} unacknowledged)`);
    }
    this.outbox.push({ kind: 'publish', room, id, data, at: Date.now(), inflight: false, notBefore: 0 });
    this.pump();
    return id;
  }

  get pending() { return this.outbox.filter((e) => e.kind === 'publish').length; }

  evictPtt() {
    const i = this.outbox.findIndex((e) => e.kind !== 'publish' && !e.inflight);
    if (i < 0) return false;
    this.outbox.splice(i, 1);
    return true;
  }

  /* ---- push-to-talk floor ---- */

  floor(room) {
    let f = this.floors.get(room);
    if (!f) {
      f = { state: 'idle', want: false, linkSent: false, requestedAt: 0, holder: '', maxMs: 0 };
      this.floors.set(room, f);
    }
    return f;
  }

  floorState(room) {
    const f = this.floors.get(room);
    return f ? { state: f.state, holder: f.holder, maxMs: f.maxMs } : { state: 'idle', holder: '', maxMs: 0 };
  }

  emitFloor(room, reason, code = 0) {
    const f = this.floor(room);
    this.emit('floor', { room, state: f.state, holder: f.holder, maxMs: f.maxMs, reason: reason || '', code });
  }

  queuePtt(room, request) {
    if (!request) {
      // A release makes a queued request for the same room pointless.
      this.outbox = this.outbox.filter((e) => !(e.kind === 'ptt-request' && e.room === room));
    }
    if (this.outbox.length >= this.o.outboxMax) return false;
    this.outbox.push({ kind: request ? 'ptt-request' : 'ptt-release', room, at: Date.now(), inflight: false,
      notBefore: 0 });
    return true;
  }

  pttRequest(room) {
    if (!validRoom(room)) throw new Error(`invalid room name: ${room}`);
    const f = this.floor(room);
    f.want = true;
    if (f.state === 'granted' || f.state === 'requesting' || f.state === 'suspended') return;
    f.state = 'requesting';
    f.requestedAt = Date.now();
    f.linkSent = false;
    if (!this.queuePtt(room, true)) {
      f.state = 'expired';
      f.want = false;
      this.emitFloor(room, 'outbox full');
      return;
    }
    this.emitFloor(room, this.live ? '' : 'offline: the request waits (at most 2 s) for the connection');
    this.pump();
  }

  pttRelease(room) {
    const f = this.floors.get(room);
    if (!f) return;
    f.want = false;
    if (f.state !== 'granted' && f.state !== 'suspended' && f.state !== 'requesting') {
      if (f.state === 'unavailable' || f.state === 'denied' || f.state === 'expired') {
        f.state = 'idle';
        this.emitFloor(room, '');
      }
      return;
    }
    f.state = 'idle';
    f.holder = '';
    f.linkSent = false;
    this.queuePtt(room, false);
    this.emitFloor(room, 'released');
    this.pump();
  }

  expireStalePtt() {
    const now = Date.now();
    const stale = this.outbox.filter((e) => e.kind === 'ptt-request' && now - e.at >= this.o.pttStaleMs);
    if (!stale.length) return;
    this.outbox = this.outbox.filter((e) => !stale.includes(e));
    for (const e of stale) {
      this.stats.pttStaleDropped++;
      const f = this.floor(e.room);
      if (f.state === 'requesting') {
        f.state = 'expired';
        f.want = false;
        this.emitFloor(e.room, 'request went stale while offline');
      }
    }
  }

  floorRestore(room) {
    const f = this.floors.get(room);
    if (!f) return;
    const queued = this.outbox.some((e) => e.kind === 'ptt-request' && e.room === room);
    if (f.state === 'suspended' && f.want) {
      f.state = 'requesting';
      f.requestedAt = Date.now();
      if (!queued) this.queuePtt(room, true);
      this.emitFloor(room, 'restoring the floor after reconnect');
    } else if (f.state === 'requesting' && !f.linkSent && !queued) {
      if (Date.now() - f.requestedAt >= this.o.pttStaleMs) {
        f.state = 'expired';
        f.want = false;
        this.emitFloor(room, 'request went stale while offline');
      } else {
        this.queuePtt(room, true);
      }
    }
  }

  onPtt(p) {
    const map = { granted: 'granted', denied: 'denied', taken: 'taken', idle: 'idle', revoked: 'revoked' };
    const ns = map[p.state];
    if (!ns || !validRoom(p.room)) return;
    const f = this.floor(p.room);
    f.holder = ns === 'taken' || ns === 'granted' ? p.holder || (ns === 'granted' ? this.user : '') : '';
    // `taken` and `idle` describe the others; a request of ours still waits
    // for its own answer (granted or denied).
    if ((ns === 'taken' || ns === 'idle') && f.state === 'requesting') {
      this.emitFloor(p.room, p.reason);
      return;
    }
    if (ns !== 'granted') f.want = false;
    f.state = ns;
    f.maxMs = ns === 'granted' ? Number(p.max_ms) || 0 : 0;
    this.emitFloor(p.room, p.reason);
  }

  /* ---- media signaling (not queued: offers are only valid on a live link) ---- */

  sendMedia(room, action, fields = {}) {
    if (!this.live) return false;
    this.lastControl = { type: 'media', room, action, at: Date.now() };
    return this.sendFrame({ type: 'media', room, action, ...fields });
  }
}
