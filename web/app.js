/* app.js -- the Tether web console: sign-in, rooms, messages, presence,
 * push-to-talk and the connection status, on top of tether.js.
 *
 * Sign-in comes from the URL fragment (#token=<jwt>&rooms=a,b, or in dev
 * mode #user=<id>&rooms=a,b), from this tab's sessionStorage after that, or
 * from the sign-in form. The fragment never reaches the server; once read,
 * the token is taken out of the address bar and kept for this tab only.
 * Dev mode (the server mints tokens at /dev/token) is detected by asking
 * it; a production gateway answers 404 there and the console never offers it.
 *
 * Everything is built with textContent: nothing a message carries is ever
 * parsed as HTML. The page runs under a strict CSP (no inline code or style).
 */
import { TetherClient, tokenClaims, validRoom, validId } from './tether.js';
import { RoomAudio } from './audio.js';

const $ = (id) => document.getElementById(id);
const STORE = 'tether.console';

const ui = {
  status: $('status'), statusText: $('status-text'), statusDetail: $('status-detail'), retry: $('retry'),
  who: $('who'), whoText: $('who-text'), signout: $('signout'),
  signin: $('signin'), devForm: $('dev-form'), tokenForm: $('token-form'), signinError: $('signin-error'),
  console: $('console'), roomList: $('room-list'), joinForm: $('join-form'), joinRoom: $('join-room'),
  roomTitle: $('room-title'), roomPos: $('room-pos'), leave: $('leave'),
  messagesBox: $('messages-box'), pendingBox: $('pending-box'), sendForm: $('send-form'), sendText: $('send-text'),
  ptt: $('ptt'), floor: $('floor'), floorDetail: $('floor-detail'), audioStatus: $('audio-status'), audioOut: $('audio-out'), presence: $('presence'),
};

const app = {
  devMode: null,      // a promise: does this server mint dev tokens?
  client: null,
  user: '',
  rooms: new Map(),   // name -> {name, list, pending, entry, unread, presence: Map, audio, seq}
  current: '',
  pttHeld: false,
  pttRoom: '',
  countdown: 0,
  statusLog: [],      // every state change, for people debugging and for the browser tests
};
window.tetherConsole = app;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function splitRooms(s) {
  return (s || '').split(',').map((r) => r.trim()).filter(Boolean);
}

/* ---- sign-in ---------------------------------------------------------------------- */

/* Asked once, when first needed: without ?user= a dev-mode gateway answers
 * 400, any other server 404. */
function devMode() {
  if (!app.devMode) {
    app.devMode = fetch('/dev/token', { cache: 'no-store' }).then((r) => r.status === 400, () => false);
  }
  return app.devMode;
}

async function devToken(user) {
  const r = await fetch(`/dev/token?user=${encodeURIComponent(user)}`, { cache: 'no-store' });
  const body = await r.json().catch(() => ({}));
  if (!r.ok || !body.token) throw new Error(body.error || `the server answered ${r.status}`);
  return body.token;
}

function saveSession(token, rooms) {
  sessionStorage.setItem(STORE, JSON.stringify({ token, rooms }));
}

function loadSession() {
  try {
    return JSON.parse(sessionStorage.getItem(STORE) || 'null');
  } catch {
    return null;
  }
}

/* The fragment keeps the rooms (a reload rejoins them), never the token. */
function writeFragment() {
  const rooms = [...app.rooms.keys()].join(',');
  history.replaceState(null, '', rooms ? `#rooms=${rooms}` : location.pathname);
  const s = loadSession();
  if (s) saveSession(s.token, [...app.rooms.keys()]);
}

async function showSignin(error) {
  const dev = await devMode();
  ui.console.hidden = true;
  ui.who.hidden = true;
  ui.signin.hidden = false;
  ui.devForm.hidden = !dev;
  ui.signinError.textContent = error || '';
  (dev ? $('dev-user') : $('token-input')).focus();
}

function start(token, rooms) {
  const claims = tokenClaims(token);
  app.user = (claims && claims.sub) || '';
  saveSession(token, rooms);
  ui.signin.hidden = true;
  ui.console.hidden = false;
  ui.who.hidden = false;
  ui.whoText.textContent = app.user ? `Signed in as ${app.user}` : 'Signed in';
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const c = new TetherClient({
    url: `${proto}//${location.host}/ws`,
    token,
    // A fresh token on 4502 or before exp: only from a dev-mode server.
    getToken: async () => (app.user && (await devMode()) ? devToken(app.user).catch(() => null) : null),
  });
  app.client = c;
  c.addEventListener('state', (ev) => onState(ev.detail));
  c.addEventListener('welcome', (ev) => {
    app.user = ev.detail.user || app.user;
    ui.whoText.textContent = `Signed in as ${app.user}`;
  });
  c.addEventListener('subscribed', (ev) => onSubscribed(ev.detail));
  c.addEventListener('message', (ev) => onMessage(ev.detail));
  c.addEventListener('gap', (ev) => onGap(ev.detail));
  c.addEventListener('ack', (ev) => onAck(ev.detail));
  c.addEventListener('error', (ev) => onServerError(ev.detail));
  c.addEventListener('presence', (ev) => onPresence(ev.detail));
  c.addEventListener('floor', (ev) => onFloor(ev.detail));
  for (const r of rooms) joinRoom(r, false);
  selectRoom(app.rooms.size ? app.rooms.keys().next().value : '');
  c.connect();
  ui.sendText.focus();
}

function signOut() {
  pttUp();
  for (const r of app.rooms.values()) if (r.audio) r.audio.stop();
  if (app.client) app.client.disconnect({ bye: true });
  app.client = null;
  app.rooms.clear();
  app.current = '';
  ui.roomList.replaceChildren();
  ui.messagesBox.replaceChildren();
  ui.pendingBox.replaceChildren();
  ui.presence.replaceChildren();
  sessionStorage.removeItem(STORE);
  history.replaceState(null, '', location.pathname);
  renderRoom();
  showSignin('');
}

/* ---- connection status -------------------------------------------------------------- */

const STATE_TEXT = {
  connecting: 'Connecting…', connected: 'Connected', reconnecting: 'Reconnecting',
  disconnected: 'Not connected', failed: 'Failed',
};

function onState(s) {
  app.statusLog.push({ state: s.state, code: s.code, reason: s.reason, resumed: !!s.resumed, at: Date.now() });
  ui.status.dataset.state = s.state;
  clearInterval(app.countdown);
  let text = STATE_TEXT[s.state] || s.state;
  let detail = '';
  if (s.state === 'connected') {
    if (s.resumed && s.disconnectedMs) detail = `session resumed after ${(s.disconnectedMs / 1000).toFixed(1)} s offline`;
    else if (s.resumed) detail = 'session resumed';
  } else if (s.state === 'reconnecting') {
    text = `Reconnecting: ${s.reason}`;
    if (s.awaitingToken) {
      detail = 'getting a fresh token';
    } else {
      const tick = () => {
        const left = Math.max(0, (app.client ? app.client.nextAttemptAt : 0) - Date.now());
        ui.statusDetail.textContent = app.client && app.client.ws
          ? `attempt ${s.attempt}: connecting now`
          : `attempt ${s.attempt} in ${(left / 1000).toFixed(1)} s${s.hinted ? ' (as the server asked)' : ''}`;
      };
      app.countdown = setInterval(tick, 200);
      tick();
    }
  } else if (s.state === 'failed') {
    text = `Failed: ${s.reason}`;
    if (s.code === 4501 || s.code === 4502 || s.code === 4503) detail = 'sign out and use another token, or retry';
  }
  ui.statusText.textContent = text;
  if (s.state !== 'reconnecting' || s.awaitingToken) ui.statusDetail.textContent = detail;
  ui.retry.hidden = !(s.state === 'failed' || (s.state === 'reconnecting' && !s.awaitingToken));
  ui.retry.textContent = s.state === 'failed' ? 'Retry' : 'Retry now';
  if (s.state === 'connected' && s.prev === 'reconnecting') {
    for (const r of app.rooms.values()) r.reconnected = true;
  }
  if (s.state !== 'connected') {
    // Presence seen from here is stale until the server tells us again.
    for (const r of app.rooms.values()) r.presence.clear();
    renderPresence();
  }
  renderFloor();
}

/* ---- rooms ----------------------------------------------------------------------------- */

function joinRoom(name, select = true) {
  if (!validRoom(name)) {
    alertIn(`"${name}" is not a valid room name (1..128 of A-Z a-z 0-9 . _ : @ / -)`);
    return;
  }
  if (!app.rooms.has(name)) {
    const room = {
      name, list: el('ol', 'message-list'), pending: el('ul', 'pending-list'), entry: el('li'),
      unread: 0, presence: new Map(), audio: null, seq: 0, epoch: '', reconnected: false, floorNote: null,
    };
    room.list.setAttribute('aria-label', `Messages in ${name}`);
    const b = el('button', 'room-button');
    b.type = 'button';
    b.dataset.room = name;
    b.addEventListener('click', () => selectRoom(name));
    room.entry.append(b);
    ui.roomList.append(room.entry);
    app.rooms.set(name, room);
    // From the oldest buffered message: a console shows the recent history.
    app.client.subscribe(name, { from: 'oldest' });
    writeFragment();
  }
  if (select) selectRoom(name);
}

function leaveRoom(name) {
  const room = app.rooms.get(name);
  if (!room) return;
  if (app.pttRoom === name) pttUp();
  if (room.audio) room.audio.stop();
  app.client.unsubscribe(name);
  room.entry.remove();
  app.rooms.delete(name);
  writeFragment();
  selectRoom(app.rooms.size ? app.rooms.keys().next().value : '');
}

function selectRoom(name) {
  if (app.pttHeld && app.pttRoom !== name) pttUp();
  app.current = name;
  const room = app.rooms.get(name);
  if (room) room.unread = 0;
  ui.messagesBox.replaceChildren(...(room ? [room.list] : []));
  ui.pendingBox.replaceChildren(...(room ? [room.pending] : []));
  renderRoom();
  scrollDown();
}

function renderRoom() {
  for (const r of app.rooms.values()) {
    const b = r.entry.firstChild;
    b.textContent = r.unread ? `${r.name} (${r.unread})` : r.name;
    b.setAttribute('aria-current', r.name === app.current ? 'true' : 'false');
  }
  const room = app.rooms.get(app.current);
  ui.roomTitle.textContent = room ? room.name : 'No room: join one';
  ui.leave.hidden = !room;
  ui.roomPos.textContent = room && room.seq ? `seq ${room.seq}` : '';
  ui.sendText.disabled = !room;
  ui.ptt.disabled = !room;
  renderPresence();
  renderFloor();
  renderAudio();
}

function scrollDown() {
  ui.messagesBox.scrollTop = ui.messagesBox.scrollHeight;
}

/* Appends to a room's list, following the bottom only if the reader was
 * there: someone scrolled up to read is not yanked down. */
function append(room, li) {
  const box = ui.messagesBox;
  const current = room.name === app.current;
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
  room.list.append(li);
  if (current && atBottom) scrollDown();
}

function alertIn(text) {
  const room = app.rooms.get(app.current);
  if (room) addNotice(room, text, 'warn');
  else ui.signinError.textContent = text;
}

/* ---- messages --------------------------------------------------------------------------- */

function dataText(data) {
  if (data && typeof data === 'object' && typeof data.text === 'string') return data.text;
  return JSON.stringify(data);
}

function addNotice(room, text, kind) {
  append(room, el('li', `notice ${kind || ''}`.trim(), text));
}

function onMessage(m) {
  const room = app.rooms.get(m.room);
  if (!room) return;
  const li = el('li', 'msg');
  li.dataset.seq = String(m.seq);
  li.dataset.id = m.id;
  if (m.from === app.user) li.classList.add('mine');
  if (m.replayed) li.classList.add('replayed');
  if (m.history) li.classList.add('history');
  const time = el('time', 'ts', m.ts ? new Date(m.ts).toLocaleTimeString() : '');
  if (m.ts) time.dateTime = new Date(m.ts).toISOString();
  li.append(el('span', 'seq', `#${m.seq}`), el('span', 'from', m.from || '?'), time);
  if (m.replayed) li.append(el('span', 'badge', 'replayed'));
  li.append(el('span', 'text', dataText(m.data)));
  append(room, li);
  room.seq = m.seq;
  const p = room.pending.querySelector(`li[data-id="${CSS.escape(m.id)}"]`);
  if (p && m.from === app.user) p.remove();
  if (m.room === app.current) {
    ui.roomPos.textContent = `seq ${m.seq}`;
  } else {
    room.unread++;
    renderRoom();
  }
}

function onSubscribed(s) {
  const room = app.rooms.get(s.room);
  if (!room) return;
  room.epoch = s.epoch;
  if (!s.recovered) {
    const g = s.gap;
    let text;
    if (s.epochChanged || (g && g.from > g.first_available)) {
      text = "Not recovered: the room's history was reset on the server (new epoch). Messages sent while you were" +
        ' away may be lost; numbering starts again.';
    } else if (g && g.first_available > g.from) {
      const last = g.first_available - 1;
      text = `Not recovered: message${last > g.from ? `s #${g.from}–#${last} are` : ` #${g.from} is`} no longer on ` +
        'the server (history trimmed or lost). What is still there follows.';
    } else {
      text = 'Not recovered: the server could not serve the history from your position; recent messages may be missing.';
    }
    addNotice(room, text, 'warn');
  } else if (s.resubscribe && room.reconnected) {
    addNotice(room, s.missed ? `Reconnected: ${s.missed} missed message${s.missed > 1 ? 's' : ''} replayed below.`
      : 'Reconnected: nothing was missed.', 'info');
  }
  room.reconnected = false;
}

function onGap(g) {
  const room = app.rooms.get(g.room);
  if (!room) return;
  const span = g.to > g.from ? `Messages #${g.from}–#${g.to} are` : `Message #${g.from} is`;
  addNotice(room, `${span} missing: the server could not deliver ${g.to > g.from ? 'them' : 'it'}.`, 'warn');
}

function send(text) {
  const room = app.rooms.get(app.current);
  if (!room || !text) return false;
  let id;
  try {
    id = app.client.publish(room.name, { text });
  } catch (e) {
    addNotice(room, `Not sent: ${e.message}`, 'warn');
    return false;
  }
  const li = el('li', 'pending-msg');
  li.dataset.id = id;
  li.append(el('span', 'state', app.client.live ? 'sending…' : 'queued (offline)'), el('span', 'text', text));
  room.pending.append(li);
  return true;
}

function onAck(a) {
  const room = app.rooms.get(a.room);
  const li = room && room.pending.querySelector(`li[data-id="${CSS.escape(a.id)}"]`);
  if (!li) return;
  const state = li.querySelector('.state');
  if (a.error) {
    li.classList.add('failed');
    state.textContent = `not sent (${a.error}: ${a.reason})`;
    return;
  }
  li.classList.add('acked');
  state.textContent = `acked as #${a.seq}${a.duplicate ? ' (duplicate)' : ''}`;
  // Its message normally follows at once; if it cannot (e.g. already shown), do not linger.
  setTimeout(() => li.remove(), 5000);
}

function onServerError(e) {
  if (e.about && e.about.type === 'ptt') return; // shown on the floor line
  if (e.about && e.about.type === 'media') return; // shown on the audio line
  const room = app.rooms.get(app.current);
  if (room) addNotice(room, `Server error ${e.code}: ${e.reason}`, 'warn');
}

/* ---- presence -------------------------------------------------------------------------- */

function onPresence(p) {
  const room = app.rooms.get(p.room);
  if (!room) return;
  if (Array.isArray(p.members)) {
    room.presence.clear();
    for (const m of p.members) if (m.state !== 'offline') room.presence.set(m.user, m.state);
  } else if (p.user) {
    if (p.state === 'offline') room.presence.delete(p.user);
    else room.presence.set(p.user, p.state);
  }
  if (p.room === app.current) renderPresence();
}

function renderPresence() {
  const room = app.rooms.get(app.current);
  const items = [];
  if (room) {
    for (const [user, state] of [...room.presence].sort((a, b) => a[0].localeCompare(b[0]))) {
      const li = el('li', 'member');
      li.dataset.user = user;
      li.dataset.state = state;
      li.append(el('span', 'dot'), el('span', 'name', user === app.user ? `${user} (you)` : user),
        el('span', 'pstate', state));
      items.push(li);
    }
  }
  if (!items.length) {
    items.push(el('li', 'empty', app.client && app.client.state === 'connected' ? 'Nobody yet' : 'Unknown while offline'));
  }
  ui.presence.replaceChildren(...items);
}

/* ---- push-to-talk ---------------------------------------------------------------------- */

function roomAudio(name) {
  const room = app.rooms.get(name);
  if (!room.audio) {
    room.audio = new RoomAudio(app.client, name, ui.audioOut);
    room.audio.addEventListener('state', () => renderAudio());
  }
  return room.audio;
}

function pttDown() {
  if (app.pttHeld || !app.current || !app.client) return;
  app.pttHeld = true;
  app.pttRoom = app.current;
  ui.ptt.setAttribute('aria-pressed', 'true');
  const audio = roomAudio(app.current);
  audio.start(); // joins the room's audio on the first press (a user gesture)
  app.client.pttRequest(app.current);
  renderFloor();
}

function pttUp() {
  if (!app.pttHeld) return;
  app.pttHeld = false;
  ui.ptt.setAttribute('aria-pressed', 'false');
  const room = app.rooms.get(app.pttRoom);
  if (room && app.client) {
    app.client.pttRelease(room.name);
    if (room.audio) room.audio.setTalking(false);
  }
  renderFloor();
}

function onFloor(f) {
  const room = app.rooms.get(f.room);
  if (!room) return;
  if (room.audio) room.audio.setTalking(f.state === 'granted');
  room.floorNote = { state: f.state, reason: f.reason, code: f.code };
  if (f.room === app.current) renderFloor();
}

function renderFloor() {
  const room = app.rooms.get(app.current);
  ui.floorDetail.textContent = '';
  if (!room || !app.client) {
    ui.floor.textContent = 'Floor: join a room to talk';
    ui.floor.dataset.floor = 'idle';
    return;
  }
  const f = app.client.floorState(room.name);
  // The reason that came with this state (revoked, unavailable...).
  const note = room.floorNote && room.floorNote.state === f.state ? room.floorNote : { reason: '', code: 0 };
  const reason = note.reason;
  const texts = {
    idle: 'Floor: free',
    requesting: 'Asking for the floor…',
    granted: `You are talking${f.maxMs ? ` (up to ${Math.round(f.maxMs / 1000)} s)` : ''}`,
    taken: `${f.holder || 'Someone'} is talking`,
    denied: `Denied: ${f.holder ? `${f.holder} is talking` : 'someone else is talking'}`,
    revoked: `The floor was taken back${reason ? ` (${reason})` : ''}`,
    suspended: 'Connection lost while talking: asking again once back',
    expired: 'Request dropped: still offline after 2 s',
    unavailable: `Push-to-talk unavailable${note.code ? ` (server error ${note.code})` : ''}`,
  };
  ui.floor.textContent = texts[f.state] || `Floor: ${f.state}`;
  ui.floor.dataset.floor = f.state;
  if (f.state === 'unavailable') {
    ui.floorDetail.textContent = `${reason ? `The server says: ${reason}. ` : ''}Messages still work; press again to retry.`;
  }
}

function renderAudio() {
  const room = app.rooms.get(app.current);
  const a = room && room.audio;
  const texts = {
    off: 'Audio: off (joins on the first press)',
    starting: 'Audio: asking for the microphone…',
    connecting: 'Audio: connecting…',
    connected: 'Audio: connected, you hear the room',
    waiting: 'Audio: waiting for the connection',
    unavailable: 'Audio unavailable',
    failed: 'Audio failed',
  };
  const state = a ? a.state : 'off';
  ui.audioStatus.dataset.audio = state;
  let why = a && a.reason && state !== 'connecting' ? `: ${a.reason}` : '';
  // The floor line already quotes the server; say it once.
  if (state === 'unavailable' && app.client.floorState(room.name).state === 'unavailable') why = ` (server error ${a.code})`;
  ui.audioStatus.textContent = texts[state] + why;
}

function isTyping(t) {
  return t instanceof Element && !!t.closest('input, textarea, select, [contenteditable]');
}

function wirePtt() {
  ui.ptt.addEventListener('pointerdown', (e) => {
    if (e.button !== 0) return;
    ui.ptt.setPointerCapture(e.pointerId);
    pttDown();
  });
  for (const t of ['pointerup', 'pointercancel', 'lostpointercapture']) ui.ptt.addEventListener(t, () => pttUp());
  ui.ptt.addEventListener('contextmenu', (e) => e.preventDefault());
  document.addEventListener('keydown', (e) => {
    const onPtt = e.target === ui.ptt && (e.key === 'Enter' || e.code === 'Space');
    const space = e.code === 'Space' && !isTyping(e.target) && !(e.target instanceof HTMLButtonElement);
    if ((!onPtt && !space) || ui.console.hidden) return;
    e.preventDefault();
    if (!e.repeat) pttDown();
  });
  document.addEventListener('keyup', (e) => {
    if ((e.code === 'Space' || e.key === 'Enter') && app.pttHeld) {
      e.preventDefault();
      pttUp();
    }
  });
  window.addEventListener('blur', () => pttUp());
}

/* ---- wiring ----------------------------------------------------------------------------- */

function wire() {
  ui.retry.addEventListener('click', () => app.client && app.client.retryNow());
  ui.signout.addEventListener('click', () => signOut());
  ui.devForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const user = $('dev-user').value.trim();
    if (!validId(user)) {
      ui.signinError.textContent = 'A user id is 1..64 of A-Z a-z 0-9 . _ : -';
      return;
    }
    try {
      start(await devToken(user), splitRooms($('dev-rooms').value));
    } catch (err) {
      ui.signinError.textContent = `No dev token: ${err.message}`;
    }
  });
  ui.tokenForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('token-input').value.trim();
    if (!tokenClaims(token)) {
      ui.signinError.textContent = 'That does not look like a JWT (three base64url parts).';
      return;
    }
    start(token, splitRooms($('token-rooms').value));
  });
  ui.joinForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const name = ui.joinRoom.value.trim();
    if (!name) return;
    joinRoom(name);
    ui.joinRoom.value = '';
    ui.sendText.focus();
  });
  ui.leave.addEventListener('click', () => leaveRoom(app.current));
  ui.sendForm.addEventListener('submit', (e) => {
    e.preventDefault();
    if (send(ui.sendText.value.trim())) ui.sendText.value = '';
  });
  wirePtt();
}

async function main() {
  wire();
  const frag = new URLSearchParams(location.hash.slice(1));
  const rooms = splitRooms(frag.get('rooms'));
  const saved = loadSession();
  if (frag.get('token')) {
    start(frag.get('token'), rooms);
    writeFragment(); // the token leaves the address bar
  } else if (frag.get('user') && (await devMode())) {
    try {
      start(await devToken(frag.get('user')), rooms);
      writeFragment();
    } catch (e) {
      showSignin(`No dev token: ${e.message}`);
    }
  } else if (saved && saved.token) {
    start(saved.token, rooms.length ? rooms : saved.rooms || []);
  } else {
    showSignin('');
    renderRoom();
  }
}

main();
