// run.mjs -- the browser tests: `node run.mjs [name filter]`.
//
// Loads every *.test.mjs in this directory, and media*.js / media*.mjs
// files (audio tests kept by their owner; they register with the same
// test() from runner.mjs), runs them one after another against the real
// suite in Debian's headless Chromium, and ends with "N passed, N failed".
// Exit status 1 when anything failed. Screenshots: $TETHER_BUILD/screenshots.

import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { runAll } from './runner.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const files = readdirSync(here)
  .filter((f) => f.endsWith('.test.mjs') || /^media.*\.m?js$/.test(f))
  .sort();
for (const f of files) await import(pathToFileURL(path.join(here, f)).href);
const failed = await runAll(process.argv[2]);
process.exit(failed ? 1 : 0);
