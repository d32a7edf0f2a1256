// Headless Chromium against examples/chat: two pages exchange messages through the room
// actor, with permessage-deflate negotiated by the browser under the server's default
// answer (4 KiB windows, one of them unasked) and used: b's message is long enough that
// the server compresses it for a, and Chromium must inflate it.
//
//   node --test tests/browser/        (scripts/test.sh runs it after `cargo test`)
'use strict';
const { test } = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const path = require('node:path');
const { chromium } = require(path.join(__dirname, '../peers/node_modules/playwright-core'));

const root = path.join(__dirname, '../..');

function startChat() {
  return new Promise((resolve, reject) => {
    const bin = path.join(root, 'target/debug/examples/chat');
    const child = spawn(bin, ['--addr', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.on('error', reject);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/chat on (http:\/\/[0-9.:]+\/)/);
      if (m) resolve({ child, url: m[1], output: () => out });
    });
    setTimeout(() => reject(new Error('chat example did not start: ' + out)), 20000).unref();
  });
}

test('two browser pages chat through the room actor', async () => {
  const chat = await startChat();
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  try {
    const a = await browser.newPage();
    const b = await browser.newPage();
    for (const p of [a, b]) {
      await p.goto(chat.url);
      await p.waitForSelector('body[data-ready="1"]', { timeout: 10000 });
    }
    // a sees b join; then each one's message reaches the other.
    await a.waitForFunction(() => [...document.querySelectorAll('#log li')].filter((li) => li.textContent.endsWith(' joined')).length >= 2, null, { timeout: 10000 });
    await a.fill('#text', 'hello from a');
    await a.press('#text', 'Enter');
    await b.waitForFunction(() => [...document.querySelectorAll('#log li')].some((li) => /^guest\d+: hello from a$/.test(li.textContent)), null, { timeout: 10000 });
    const long = 'hi from b, ünïcödé. '.repeat(40).trim();
    await b.fill('#text', long);
    await b.press('#text', 'Enter');
    await a.waitForFunction((want) => [...document.querySelectorAll('#log li')].some((li) => li.textContent.replace(/^guest\d+: /, '') === want), long, { timeout: 10000 });
    const logB = await b.$$eval('#log li', (lis) => lis.map((li) => li.textContent));
    assert.ok(logB.some((t) => t.endsWith('hello from a')), JSON.stringify(logB));
    assert.match(chat.output(), /connected \(compression true\)/, 'the browser negotiated permessage-deflate');
    await a.close();
    await b.waitForFunction(() => [...document.querySelectorAll('#log li')].some((li) => li.textContent.endsWith(' left')), null, { timeout: 10000 });
  } finally {
    await browser.close();
    chat.child.kill();
  }
});
