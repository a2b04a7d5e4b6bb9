// console.test.mjs -- the web console as a person uses it, in headless
// Chromium against the real daemons: two pages talking, a gateway killed
// under an idle page, a bad token, push-to-talk, dev sign-in, an expired
// token, and a lost history. Screenshots of the main states go to
// build/screenshots/.

import assert from 'node:assert/strict';
import { built, makeToken } from './harness.mjs';
import { test } from './runner.mjs';

const expectSeqs = (msgs, from, to) => {
  const seqs = msgs.map((m) => m.seq);
  const want = Array.from({ length: to - from + 1 }, (_, i) => from + i);
  assert.deepEqual(seqs, want, `displayed seqs ${JSON.stringify(seqs)}, wanted ${from}..${to} once each, in order`);
};

const statusText = (page) => page.locator('#status').innerText();

test('two pages in one room: messages from one appear in the other, acked with their seq', async (t) => {
  const s = t.suite;
  const a = await t.open(0, `#token=${s.token('alice')}&rooms=lobby`);
  const b = await t.open(0, `#token=${s.token('bob')}&rooms=lobby`);
  await t.status(a, 'connected');
  await t.status(b, 'connected');
  // The token leaves the address bar; the rooms stay.
  assert.equal(new URL(a.url()).hash, '#rooms=lobby');

  // Presence: each page sees the other online.
  await b.waitForSelector('#presence li[data-user="alice"][data-state="online"]');
  await a.waitForSelector('#presence li[data-user="bob"][data-state="online"]');

  await a.fill('#send-text', 'hello from alice');
  await a.press('#send-text', 'Enter');
  await t.until('bob sees alice\'s message', async () => (await t.messages(b, 'lobby')).length === 1);
  const [m] = await t.messages(b, 'lobby');
  assert.deepEqual(m, { seq: 1, text: 'hello from alice', from: 'alice', replayed: false });
  // The sender sees its own message once, with the seq the server gave it.
  await t.until('alice sees her own message', async () => (await t.messages(a, 'lobby')).length === 1);

  await b.fill('#send-text', 'hi alice');
  await b.getByRole('button', { name: 'Send' }).click();
  await t.until('alice sees bob\'s answer', async () => (await t.messages(a, 'lobby')).length === 2);
  assert.deepEqual((await t.messages(a, 'lobby')).map((x) => [x.seq, x.from, x.text]),
    [[1, 'alice', 'hello from alice'], [2, 'bob', 'hi alice']]);
  await t.until('no message left pending', async () => (await a.locator('#pending-box li:not(.acked)').count()) === 0);

  // Accessibility basics: a real, labelled push-to-talk button; status as text.
  const ptt = a.getByRole('button', { name: 'Hold to talk' });
  assert.equal(await ptt.evaluate((e) => e.tagName), 'BUTTON');
  assert.equal(await ptt.getAttribute('aria-pressed'), 'false');
  assert.equal(await a.getByRole('status').count(), 1);
  assert.match(await statusText(a), /Connected/);
  await t.shot(a, 'connected');
});
