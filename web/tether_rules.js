/* tether_rules.js -- the pure rules of the Tether browser client (tether.js):
 * the reconnection schedule, what each close code means, name validation,
 * and reading a token's claims. No I/O and no timers here, so they are
 * tested alone (tests/browser/client.test.mjs) and mirror the C SDK's
 * tc_backoff.c and tc_client.c line for line where they overlap.
 */

const ROOM_RE = /^[A-Za-z0-9._:@/-]{1,128}$/;
const ID_RE = /^[A-Za-z0-9._:-]{1,64}$/;

export const validRoom = (r) => typeof r === 'string' && ROOM_RE.test(r);
export const validId = (id) => typeof id === 'string' && ID_RE.test(id);

export const DEFAULTS = {
  url: '',                 // ws://host:port/ws
  token: '',               // JWT sent in hello
  getToken: null,          // async (why: 'expired' | 'refresh') => token or null
  clientName: 'tether-web/1',
  backoff: { initialMs: 1000, maxMs: 30000, jitter: 'full', jitterMs: 500, maxAttempts: 0, stableMs: 10000 },
  outboxMax: 100,
  pttStaleMs: 2000,
  watchdogGraceMs: 10000,  // reconnect after heartbeat_ms + this without any frame
  connectTimeoutMs: 10000, // socket + upgrade + welcome
  publishRetryMs: 1000,
};

/* ---- backoff ------------------------------------------------------------------------ */

export class Backoff {
  constructor(cfg = {}, random = Math.random) {
    this.cfg = { ...DEFAULTS.backoff, ...cfg };
    this.random = random;
    this.attempt = 0;
    this.upSince = 0;
  }

  ceiling(attempt) {
    let d = this.cfg.initialMs;
    for (let i = 1; i < Math.max(1, attempt) && d < this.cfg.maxMs; i++) d *= 2;
    return Math.min(d, this.cfg.maxMs);
  }

  /* The delay before the next attempt, or -1 when max attempts are used up. */
  next() {
    if (this.cfg.maxAttempts && this.attempt >= this.cfg.maxAttempts) return -1;
    this.attempt++;
    const ceil = this.ceiling(this.attempt);
    // Full jitter: after a restart every client has the same ceiling, only
    // the random part spreads them, and uniform [0, ceiling] spreads widest.
    if (this.cfg.jitter === 'full') return Math.floor(this.random() * (ceil + 1));
    if (this.cfg.jitter === 'add') return ceil + Math.floor(this.random() * (this.cfg.jitterMs + 1));
    return ceil;
  }

  up(now) { this.upSince = now || 1; }

  /* A link that flaps (accepts, then drops at once) keeps its growing delays. */
  down(now) {
    if (this.upSince && now - this.upSince >= this.cfg.stableMs) this.attempt = 0;
    this.upSince = 0;
  }

  reset() { this.attempt = 0; this.upSince = 0; }
}

/* ---- close codes (docs/protocol.md)------------------------------------------------ */

const CLOSE_TEXT = {
  1000: 'the server ended the session (1000)',
  1001: 'the server is going away (1001)',
  1006: 'connection lost',
  1008: 'policy violation (1008)',
  1011: 'server error (1011)',
  1012: 'the server is restarting (1012)',
  1013: 'the server asks to try again later (1013)',
  4000: 'the server is draining (4000)',
  4001: 'heartbeat timeout (4001)',
  4002: 'too slow to keep up (4002)',
  4003: 'the server lost the session state (4003)',
  4006: 'session taken over by a newer connection (4006), e.g. in another tab',
  4501: 'authentication failed (4501)',
  4502: 'token expired (4502)',
  4503: 'forbidden (4503): the token does not allow this',
  4504: 'too many connections (4504)',
  4505: 'protocol violation (4505)',
  4508: 'no hello in time (4508)',
};

/* What a close code tells the client to do: retry, fail, token, newSession. */
export function closeAction(code) {
  if (code === 1000 || code === 4006 || code === 1008) return 'fail';
  if (code === 4502) return 'token';
  if (code === 4003) return 'newSession';
  if (code >= 4500 && code <= 4599) return 'fail';
  return 'retry';
}

export function closeText(code, serverReason, opened) {
  let t = CLOSE_TEXT[code] || `closed with code ${code}`;
  if (code === 1006 && !opened) t = 'cannot reach the server';
  // The server's words when they add something to ours.
  return serverReason && !t.toLowerCase().includes(serverReason.toLowerCase()) ? `${t}: ${serverReason}` : t;
}

/* A JWT's claims (sub, exp...), unverified: only to know who and until when;
 * the server is the one that checks. */
export function tokenClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
  } catch {
    return null;
  }
}
