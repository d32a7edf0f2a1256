// What both chat tests do with Chromium: launch it headless, open a chat page, type into
// it, and wait for a line in its log. (Not a test file: `node --test` runs *.test.js.)
'use strict';
const path = require('node:path');
const { chromium } = require(path.join(__dirname, '../peers/node_modules/playwright-core'));

// Headless Chromium, with `extra` command-line switches.
function launch(extra = []) {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic', ...extra],
  });
}

// Waits until page p's log has a line matching `re` (a RegExp).
function sees(p, re) {
  return p.waitForFunction((src) => [...document.querySelectorAll('#log li')]
    .some((li) => new RegExp(src).test(li.textContent)), re.source, { timeout: 10000 });
}

async function say(p, text) {
  await p.fill('#text', text);
  await p.press('#text', 'Enter');
}

// A new page on `url`, once its WebSocket is open.
async function open(browser, url) {
  const p = await browser.newPage();
  await p.goto(url);
  await p.waitForSelector('body[data-ready="1"]', { timeout: 10000 });
  return p;
}

// The lines of page p's log.
function log(p) {
  return p.$$eval('#log li', (lis) => lis.map((li) => li.textContent));
}

module.exports = { launch, sees, say, open, log };
