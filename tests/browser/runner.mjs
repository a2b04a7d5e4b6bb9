// runner.mjs -- a small test runner for the console in headless Chromium.
//
// A test file calls test(name, opts, fn). Each test gets its own Suite (the
// real daemons on free ports, harness.mjs) and its own Chromium with a fresh
// profile directory; fn(t) receives:
//   t.suite                  the Suite (tokens, HTTP publish, kill9/restart)
//   t.open(gw, fragment)     a new page on gateway gw's console URL + fragment
//   t.status(page, state)    waits until the status light shows state
//   t.until(what, pred, ms)  polls pred (sync/async) with a deadline
//   t.shot(page, name)       saves build/screenshots/<name>.png
//   t.messages(page, room)   [{seq, text, from, replayed}] as displayed
//   t.note(text)             printed under the test's line (a known server
//                            deviation the test tolerates and reports)
// A page error or a CSP violation in any page fails the test.
// opts: { gateways: n, gatewayEnv: [{...}, ...] (per gateway), timeoutMs,
//         suite: false (no daemons, no browser: tests of web/*.js in Node) }.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { BUILD, Suite, missingCore, waitUntil } from './harness.mjs';

export const CHROMIUM = process.env.TETHER_CHROMIUM || '/usr/bin/chromium';
export const SHOTS = path.join(BUILD, 'screenshots');
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', '--allow-loopback-in-peer-connection'];

const registry = [];

export function test(name, opts, fn) {
  if (typeof opts === 'function') [fn, opts] = [opts, {}];
  registry.push({ name, opts, fn });
}

function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

async function runOne(entry, workRoot) {
  const dir = mkdtempSync(path.join(workRoot, `${entry.name.replace(/[^a-z0-9]+/gi, '-').slice(0, 40)}-`));
  const suite = new Suite(path.join(dir, 'suite'), entry.opts);
  const profile = path.join(dir, 'chromium-profile');
  const problems = [];
  const pages = [];
  const notes = [];
  let ctx = null;
  const t = {
    note: (text) => notes.push(text),
    suite,
    async open(gw, fragment = '') {
      if (!ctx) {
        ctx = await chromium.launchPersistentContext(profile, {
          executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1280, height: 760 },
        });
      }
      const page = await ctx.newPage();
      const label = `page${pages.length + 1}`;
      pages.push(page);
      page.on('pageerror', (e) => problems.push(`${label}: page error: ${e.message}`));
      page.on('console', (m) => {
        if (m.type() === 'error' && /Content.Security.Policy|Refused to/i.test(m.text())) {
          problems.push(`${label}: CSP violation: ${m.text()}`);
        }
      });
      await page.goto(suite.url(gw) + fragment);
      return page;
    },
    async status(page, state, timeoutMs = 15000) {
      await page.waitForSelector(`#status[data-state="${state}"]`, { timeout: timeoutMs });
    },
    until: (what, pred, timeoutMs = 15000) => waitUntil(pred, timeoutMs, what),
    async shot(page, name) {
      mkdirSync(SHOTS, { recursive: true });
      await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
    },
    messages(page, room) {
      return page.evaluate((r) => {
        const room = window.tetherConsole.rooms.get(r);
        if (!room) return [];
        return [...room.list.querySelectorAll('li.msg')].map((li) => ({
          seq: Number(li.dataset.seq), text: li.querySelector('.text').textContent,
          from: li.querySelector('.from').textContent, replayed: li.classList.contains('replayed'),
        }));
      }, room);
    },
  };
  const started = Date.now();
  let error = null;
  try {
    if (entry.opts.suite !== false) await suite.start();
    await withTimeout(entry.fn(t), entry.opts.timeoutMs || 120000, entry.name);
    if (problems.length) throw new Error(problems.join('\n'));
  } catch (e) {
    error = e;
  }
  const logs = error && entry.opts.suite !== false ? suite.logTails() : '';
  if (ctx) await ctx.close().catch(() => {});
  await suite.stop().catch(() => {});
  if (!error && !process.env.TETHER_KEEP_TEST_DIRS) rmSync(dir, { recursive: true, force: true });
  return { error, ms: Date.now() - started, logs, dir, notes };
}

/* Runs every registered test (or those whose name contains `filter`);
 * prints one line per test and finally "N passed, N failed". Returns the
 * number of failures. */
export async function runAll(filter) {
  const selected = registry.filter((e) => !filter || e.name.includes(filter));
  let passed = 0;
  let failed = 0;
  const absent = missingCore();
  if (absent.length) {
    console.log(`cannot run: not built: ${absent.join(', ')} (run make)`);
    console.log(`0 passed, ${selected.length || 1} failed`);
    return selected.length || 1;
  }
  try {
    await (await import('node:fs/promises')).access(CHROMIUM);
  } catch {
    console.log(`cannot run: ${CHROMIUM} not found (Debian package chromium; make bootstrap installs it)`);
    console.log(`0 passed, ${selected.length || 1} failed`);
    return selected.length || 1;
  }
  const workRoot = mkdtempSync(path.join(os.tmpdir(), 'tether-browser-'));
  for (const entry of selected) {
    const r = await runOne(entry, workRoot);
    if (r.error) {
      failed++;
      console.log(`FAIL  ${entry.name} (${(r.ms / 1000).toFixed(1)} s)`);
      console.log(String(r.error.stack || r.error).split('\n').map((l) => `      ${l}`).join('\n'));
      if (r.logs) console.log(r.logs.split('\n').map((l) => `      | ${l}`).join('\n'));
      console.log(`      (work directory kept: ${r.dir})`);
    } else {
      passed++;
      console.log(`ok    ${entry.name} (${(r.ms / 1000).toFixed(1)} s)`);
    }
    for (const n of r.notes) console.log(`      note: ${n}`);
  }
  if (!failed) rmSync(workRoot, { recursive: true, force: true });
  console.log(`screenshots: ${SHOTS}`);
  console.log(`${passed} passed, ${failed} failed`);
  return failed;
}
