// media_ptt.mjs -- push-to-talk audio between real browsers through mediad.
//
// Headless Chromium with a fake microphone (runner.mjs flags), pages served
// from the gateway (a secure context on 127.0.0.1), each running a small
// protocol client of its own (installed below, independent of the web
// console): WebSocket hello/subscribe, `ptt` frames, and a WebRTC
// PeerConnection signaled with `media` frames (offer, trickled candidates,
// answer; `restart` -> a new PeerConnection and a new offer).
//
// What is checked, from the pages themselves:
//   - the talker takes the floor (granted), the listener sees `taken` with
//     the holder and its getStats() shows inbound audio packets and a
//     non-zero audio level; after release (idle) and a second talker,
//     packets flow from the new talker; a second requester is denied;
//   - the max talk time revokes the holder (revoked, then idle);
//   - mediad killed (-9) during a talk burst: the pages renegotiate by
//     themselves and audio flows again; the audio gap is printed;
//   - an ICE restart (new ufrag) on an established PeerConnection: mediad
//     restarts ICE on the session, DTLS-SRTP carries on, audio goes on;
//   - mediad trickling its candidates after the answer works with Chromium;
//   - a wrong DTLS fingerprint and a malformed SDP are refused with a clear
//     error and counted, without disturbing the audio of the others.

import assert from 'node:assert/strict';
import { test } from './runner.mjs';

// Runs inside the page (serialised by page.evaluate): window.mt.
function install({ url, token, room, munge }) {
  const mt = { frames: [], room, pc: null, stream: null, offers: 0, restarts: 0, pcs: 0, heard: [], munge };
  window.mt = mt;
  const send = (f) => mt.ws.send(JSON.stringify(f));
  mt.send = send;
  mt.connect = () => new Promise((resolve, reject) => {
    const ws = new WebSocket(url, 'tether.v1.json');
    mt.ws = ws;
    ws.onopen = () => send({ type: 'hello', token });
    ws.onerror = () => reject(new Error('websocket error'));
    ws.onmessage = async (ev) => {
      const f = JSON.parse(ev.data);
      f.at = performance.now();
      mt.frames.push(f);
      if (f.type === 'ping') send({ type: 'pong' });
      else if (f.type === 'welcome') send({ type: 'subscribe', room });
      else if (f.type === 'subscribed' && f.room === room) resolve();
      else if (f.type === 'media' && f.room === room) await mt.onMedia(f);
    };
  });
  mt.ptt = (action) => send({ type: 'ptt', room, action });
  mt.join = async () => {
    mt.stream = mt.stream || await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    await mt.offer();
  };
  mt.offer = async () => {
    if (mt.pc) mt.pc.close();
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    mt.pc = pc;
    pc.id = ++mt.pcs;
    pc.addTrack(mt.stream.getAudioTracks()[0], mt.stream);
    pc.ontrack = (ev) => {
      const a = document.createElement('audio');
      a.autoplay = true;
      // Played unmuted: the receive level is measured after the element's
      // volume. Autoplay is allowed because the page captures the microphone.
      a.srcObject = ev.streams[0] || new MediaStream([ev.track]);
      document.body.appendChild(a);
      a.play().catch(() => {});
    };
    pc.onicecandidate = (ev) => {
      if (mt.pc === pc && ev.candidate && ev.candidate.candidate) {
        send({ type: 'media', room, action: 'candidate', candidate: ev.candidate.candidate, mid: ev.candidate.sdpMid });
      }
    };
    await pc.setLocalDescription(await pc.createOffer());
    let sdp = pc.localDescription.sdp;
    if (mt.munge === 'fingerprint') {
      sdp = sdp.replace(/a=fingerprint:sha-256 \S+/, `a=fingerprint:sha-256 ${Array(32).fill('AB').join(':')}`);
    } else if (mt.munge === 'malformed') {
      sdp = 'v=0\r\nm=audio nine RTP/SAVPF 111\r\n';
    }
    mt.offers++;
    send({ type: 'media', room, action: 'offer', sdp });
  };
  // An ICE restart on the same PeerConnection (new ufrag/pwd, same DTLS).
  mt.restartIce = async () => {
    mt.pc.restartIce();
    await mt.pc.setLocalDescription(await mt.pc.createOffer({ iceRestart: true }));
    mt.offers++;
    send({ type: 'media', room, action: 'offer', sdp: mt.pc.localDescription.sdp });
    return mt.pc.localDescription.sdp.match(/a=ice-ufrag:(\S+)/)[1];
  };
  mt.onMedia = async (f) => {
    const pc = mt.pc;
    if (!pc) return;
    if (f.action === 'answer') {
      await pc.setRemoteDescription({ type: 'answer', sdp: f.sdp });
    } else if (f.action === 'candidate' && f.candidate) {
      await pc.addIceCandidate({ candidate: f.candidate, sdpMid: f.mid || '0' });
    } else if (f.action === 'restart') {
      mt.restarts++;
      await mt.offer();
    }
  };
  mt.inbound = async () => {
    if (!mt.pc) return null;
    let r = null;
    (await mt.pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        r = { packets: s.packetsReceived, level: s.audioLevel || 0, energy: s.totalAudioEnergy || 0, ssrc: s.ssrc,
          pc: mt.pc.id };
      }
    });
    return r;
  };
  // Records when audio packets arrive, across PeerConnections, every 20 ms.
  mt.watch = () => {
    let last = { pc: 0, packets: 0 };
    mt.watcher = setInterval(async () => {
      const s = await mt.inbound();
      if (s && (s.pc !== last.pc || s.packets > last.packets) && s.packets > 0) {
        if (s.pc === last.pc || last.pc === 0 || s.packets > 0) mt.heard.push(performance.now());
        last = { pc: s.pc, packets: s.packets };
      }
    }, 20);
  };
  mt.gap = (from) => {
    const h = mt.heard.filter((x) => x >= from);
    let g = 0;
    for (let i = 1; i < h.length; i++) g = Math.max(g, h[i] - h[i - 1]);
    return g;
  };
}

async function member(t, user, room, munge = '') {
  const page = await t.open(0, 'healthz');
  const url = `ws://${t.suite.gateway(0).http}/ws`;
  await page.evaluate(install, { url, token: t.suite.token(user), room, munge });
  await page.evaluate(() => window.mt.connect());
  return page;
}

const inbound = (p) => p.evaluate(() => window.mt.inbound());

// The first frame matching pred that arrived after index `from` (polled).
async function frame(t, page, what, pred, from = 0, ms = 10000) {
  return t.until(what, () => page.evaluate(([src, i]) => {
    const fn = new Function('f', `return (${src})(f);`);
    return window.mt.frames.slice(i).find((f) => fn(f)) || null;
  }, [pred.toString(), from]), ms);
}

const nframes = (p) => p.evaluate(() => window.mt.frames.length);
const ptt = (p, action) => p.evaluate((a) => window.mt.ptt(a), action);

async function connected(t, ...pages) {
  for (const p of pages) {
    await t.until('PeerConnection connected', () => p.evaluate(() => window.mt.pc && window.mt.pc.connectionState === 'connected'));
  }
}

async function metric(t, name) {
  const r = await fetch(`http://${t.suite.daemon('mediad').http}/metrics`);
  const text = await r.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

// Waits until p's inbound packet count grows by n from now; returns the stats.
async function hears(t, p, n, what) {
  const base = (await inbound(p))?.packets || 0;
  return t.until(what, async () => {
    const s = await inbound(p);
    return s && s.packets >= base + n ? s : null;
  });
}

test('media: talker heard by the listener (packets and level), release, second talker, denial', async (t) => {
  const room = `ptt-${Date.now()}`;
  const a = await member(t, 'alice', room);
  const b = await member(t, 'bob', room);
  await a.evaluate(() => window.mt.join());
  await b.evaluate(() => window.mt.join());
  await connected(t, a, b);
  // Nobody holds the floor: nothing is forwarded.
  await new Promise((r) => setTimeout(r, 500));
  assert.ok(((await inbound(b))?.packets || 0) === 0, 'no audio without a floor holder');

  let fa = await nframes(a);
  let fb = await nframes(b);
  await ptt(a, 'request');
  const g = await frame(t, a, 'alice granted', (f) => f.type === 'ptt' && f.state === 'granted', fa);
  assert.equal(g.holder, 'alice');
  const tk = await frame(t, b, 'bob sees taken', (f) => f.type === 'ptt' && f.state === 'taken', fb);
  assert.equal(tk.holder, 'alice');
  const s1 = await hears(t, b, 100, 'bob receives 100 audio packets from alice');
  await t.until('a non-zero audio level at bob', async () => {
    const s = await inbound(b);
    return s.level > 0 && s.energy > 0;
  });
  console.log(`      bob hears alice: ${s1.packets} packets, ssrc ${s1.ssrc}`);

  fa = await nframes(a);
  fb = await nframes(b);
  await ptt(a, 'release');
  await frame(t, a, 'alice idle', (f) => f.type === 'ptt' && f.state === 'idle', fa);
  await frame(t, b, 'bob idle', (f) => f.type === 'ptt' && f.state === 'idle', fb);
  // Forwarding stops with the floor.
  await new Promise((r) => setTimeout(r, 300));
  const quiet0 = (await inbound(b)).packets;
  await new Promise((r) => setTimeout(r, 600));
  assert.ok((await inbound(b)).packets - quiet0 <= 2, 'no audio after the release');

  fa = await nframes(a);
  fb = await nframes(b);
  await ptt(b, 'request');
  await frame(t, b, 'bob granted', (f) => f.type === 'ptt' && f.state === 'granted', fb);
  assert.equal((await frame(t, a, 'alice sees taken', (f) => f.type === 'ptt' && f.state === 'taken', fa)).holder, 'bob');
  const s2 = await hears(t, a, 100, 'alice receives 100 packets from bob');
  await t.until('a non-zero audio level at alice', async () => (await inbound(a)).level > 0);
  console.log(`      alice hears bob: ${s2.packets} packets`);

  fa = await nframes(a);
  await ptt(a, 'request');
  const d = await frame(t, a, 'alice denied', (f) => f.type === 'ptt' && f.state === 'denied', fa);
  assert.equal(d.holder, 'bob');
  assert.ok(await metric(t, 'tether_mediad_floor_denials_total') >= 1);
  assert.ok(await metric(t, 'tether_mediad_dtls_handshakes_total{result="ok"}') >= 2);
});

test('media: holding past the max talk time is revoked in the page', { env: { TETHER_PTT_MAX_MS: '2500' } }, async (t) => {
  const room = `ptt-${Date.now()}`;
  const a = await member(t, 'alice', room);
  const b = await member(t, 'bob', room);
  await a.evaluate(() => window.mt.join());
  await b.evaluate(() => window.mt.join());
  await connected(t, a, b);
  const fa = await nframes(a);
  const fb = await nframes(b);
  await ptt(a, 'request');
  const g = await frame(t, a, 'alice granted', (f) => f.type === 'ptt' && f.state === 'granted', fa);
  assert.ok(g.max_ms <= 2500, JSON.stringify(g));
  await hears(t, b, 25, 'bob hears alice');
  const r = await frame(t, a, 'alice revoked', (f) => f.type === 'ptt' && f.state === 'revoked', fa, 8000);
  assert.match(r.reason, /max talk time/);
  assert.ok(r.at - g.at >= 2000 && r.at - g.at <= 4500, `revoked after ${r.at - g.at} ms`);
  await frame(t, a, 'alice idle', (f) => f.type === 'ptt' && f.state === 'idle', fa);
  const i = await frame(t, b, 'bob idle', (f) => f.type === 'ptt' && f.state === 'idle', fb);
  assert.match(i.reason, /max talk time/);
  await new Promise((res) => setTimeout(res, 300));
  const p0 = (await inbound(b)).packets;
  await new Promise((res) => setTimeout(res, 600));
  assert.ok((await inbound(b)).packets - p0 <= 2, 'no audio after the revocation');
});

test('media: mediad kill -9 during a talk burst; pages renegotiate and audio flows again', { timeoutMs: 150000 },
  async (t) => {
    const room = `ptt-${Date.now()}`;
    const a = await member(t, 'alice', room);
    const b = await member(t, 'bob', room);
    await a.evaluate(() => window.mt.join());
    await b.evaluate(() => window.mt.join());
    await connected(t, a, b);
    await ptt(a, 'request');
    await frame(t, a, 'alice granted', (f) => f.type === 'ptt' && f.state === 'granted');
    await b.evaluate(() => window.mt.watch());
    await hears(t, b, 50, 'bob hears alice before the kill');
    const killedAt = await b.evaluate(() => performance.now());
    const killWall = Date.now();
    await t.suite.daemon('mediad').kill9();
    t.suite.daemon('mediad').start();
    // The pages get `restart`, make a new PeerConnection and offer again.
    await t.until('both pages renegotiated', async () =>
      (await a.evaluate(() => window.mt.restarts)) >= 1 && (await b.evaluate(() => window.mt.restarts)) >= 1, 20000);
    await connected(t, a, b);
    await t.until('bob hears alice again', async () => {
      const s = await inbound(b);
      return s && s.pc > 1 && s.packets >= 50;
    }, 20000);
    const gap = await b.evaluate((from) => window.mt.gap(from - 1000), killedAt);
    const back = Date.now() - killWall;
    console.log(`      audio gap across mediad kill -9 (restarted at once): ${Math.round(gap)} ms ` +
      `(largest silence between packets at the listener; 50 packets on its new PeerConnection ${back} ms ` +
      'after the kill)');
    assert.ok(gap > 0 && gap < 15000, `gap ${gap}`);
    // The floor survived in Redis: alice still holds it.
    const fb = await nframes(b);
    await ptt(b, 'request');
    assert.equal((await frame(t, b, 'bob denied', (f) => f.type === 'ptt' && f.state === 'denied', fb)).holder, 'alice');
  });

test('media: a wrong DTLS fingerprint and a malformed SDP are refused, counted, and harmless to others',
  async (t) => {
    const room = `ptt-${Date.now()}`;
    const a = await member(t, 'alice', room);
    const b = await member(t, 'bob', room);
    await a.evaluate(() => window.mt.join());
    await b.evaluate(() => window.mt.join());
    await connected(t, a, b);
    await ptt(a, 'request');
    await frame(t, a, 'alice granted', (f) => f.type === 'ptt' && f.state === 'granted');
    await hears(t, b, 25, 'bob hears alice');
    const fpBefore = await metric(t, 'tether_mediad_dtls_handshakes_total{result="fingerprint_mismatch"}');
    const sdpBefore = await metric(t, 'tether_mediad_sdp_rejected_total');

    const m = await member(t, 'mallory', room, 'fingerprint');
    await m.evaluate(() => window.mt.join());
    const e = await frame(t, m, 'mallory refused', (f) => f.type === 'error');
    assert.equal(e.code, 4400);
    assert.match(e.reason, /fingerprint/);
    await t.until('mismatch counted', async () =>
      (await metric(t, 'tether_mediad_dtls_handshakes_total{result="fingerprint_mismatch"}')) === fpBefore + 1);

    const x = await member(t, 'malformed', room, 'malformed');
    await x.evaluate(() => window.mt.join());
    const e2 = await frame(t, x, 'malformed refused', (f) => f.type === 'error');
    assert.equal(e2.code, 4400);
    assert.match(e2.reason, /m-line/);
    assert.equal(await metric(t, 'tether_mediad_sdp_rejected_total'), sdpBefore + 1);

    // The others never noticed.
    await hears(t, b, 50, 'bob still hears alice');
    assert.equal(await metric(t, 'tether_mediad_sessions'), 2);
  });

test('media: an ICE restart on an established PeerConnection keeps the session and the audio', async (t) => {
  const room = `ptt-${Date.now()}`;
  const a = await member(t, 'alice', room);
  const b = await member(t, 'bob', room);
  await a.evaluate(() => window.mt.join());
  await b.evaluate(() => window.mt.join());
  await connected(t, a, b);
  await ptt(a, 'request');
  await frame(t, a, 'alice granted', (f) => f.type === 'ptt' && f.state === 'granted');
  await hears(t, b, 25, 'bob hears alice');
  const restarts0 = await metric(t, 'tether_mediad_ice_restarts_total');
  const before = await b.evaluate(() => window.mt.pc.remoteDescription.sdp.match(/a=ice-ufrag:(\S+)/)[1]);
  const fb = await nframes(b);
  const mine = await b.evaluate(() => window.mt.restartIce());
  assert.ok(mine);
  const ans = await frame(t, b, 'answer to the restart', (f) => f.type === 'media' && f.action === 'answer', fb);
  const after = ans.sdp.match(/a=ice-ufrag:(\S+)/)[1];
  assert.notEqual(after, before, 'mediad answered new ICE credentials');
  await t.until('ICE restart counted', async () => (await metric(t, 'tether_mediad_ice_restarts_total')) === restarts0 + 1);
  // The transport runs on the new credentials (not on a pair left over).
  await t.until('the transport uses the new ufrag', () => b.evaluate(async (u) => {
    let ok = false;
    (await window.mt.pc.getStats()).forEach((s) => {
      if (s.type === 'transport' && s.iceLocalUsernameFragment === u && s.iceState === 'connected') ok = true;
    });
    return ok;
  }, mine));
  await hears(t, b, 50, 'bob still hears alice after the ICE restart');
  assert.equal(await b.evaluate(() => window.mt.pc.id), 1, 'the same PeerConnection');
  assert.equal(await b.evaluate(() => window.mt.pc.connectionState), 'connected');
  assert.equal(await metric(t, 'tether_mediad_sessions'), 2);
});

test('media: server candidates trickled after the answer (TETHER_MEDIA_TRICKLE=1)',
  { env: { TETHER_MEDIA_TRICKLE: '1' } }, async (t) => {
    const room = `ptt-${Date.now()}`;
    const a = await member(t, 'alice', room);
    const b = await member(t, 'bob', room);
    await a.evaluate(() => window.mt.join());
    await b.evaluate(() => window.mt.join());
    await connected(t, a, b);
    const media = await b.evaluate(() => window.mt.frames.filter((f) => f.type === 'media'));
    assert.equal(media[0].action, 'answer');
    assert.ok(!/a=candidate/.test(media[0].sdp), 'no candidate in the answer');
    assert.ok(media.slice(1).some((f) => f.action === 'candidate' && f.candidate), 'candidates trickled');
    await ptt(a, 'request');
    await frame(t, a, 'alice granted', (f) => f.type === 'ptt' && f.state === 'granted');
    await hears(t, b, 50, 'bob hears alice over trickled candidates');
  });
