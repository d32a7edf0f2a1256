// Headless Chromium on the chat example's live status page (/status) while a session runs:
// the figures on the page follow connections as they come and go, the room's member count
// follows them too, and messages per second show the traffic (the example is built with
// every feature, so the crate's metrics feed the page). Leaves a screenshot in
// target/browser/status.png (the README's comes from it).
//
//   node --test tests/browser/        (scripts/test.sh runs it after `cargo test`)
'use strict';
const { test } = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { launch, sees, say, open } = require('./page');

const root = path.join(__dirname, '../..');

function startChat() {
  return new Promise((resolve, reject) => {
    const bin = path.join(root, 'target/debug/examples/chat');
    const child = spawn(bin, ['--addr', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.on('error', reject);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/chat on (https?:\/\/[0-9.:]+\/)/);
      if (m) resolve({ child, url: m[1] });
    });
    setTimeout(() => reject(new Error('chat example did not start: ' + out)), 20000).unref();
  });
}

// Waits until the status page shows `want` in the element `id`.
function shows(p, id, want) {
  return p.waitForFunction(([id, want]) => document.getElementById(id).textContent === want, [id, want],
    { timeout: 10000 });
}

// Waits until the room table has `room` with `n` members.
function room(p, name, n) {
  return p.waitForFunction(([name, n]) => [...document.querySelectorAll('#rooms tr')]
    .some((tr) => tr.cells[0].textContent === name && tr.cells[1].textContent === String(n)), [name, n],
  { timeout: 10000 });
}

test('the status page follows connections, rooms and traffic as they change', async () => {
  const chat = await startChat();
  const browser = await launch();
  try {
    const status = await browser.newPage({ viewport: { width: 860, height: 560 } });
    await status.goto(chat.url + 'status');
    await shows(status, 'connections', '0');
    const noteHidden = await status.$eval('#note', (n) => n.hidden);
    assert.ok(noteHidden, 'traffic figures are there (the example records metrics)');

    const a = await open(browser, chat.url);
    await sees(a, /^\[lobby\] you are here/);
    await shows(status, 'connections', '1');
    const b = await open(browser, chat.url);
    await sees(b, /^\[lobby\] you are here/);
    await shows(status, 'connections', '2');
    await room(status, 'lobby', 2);

    // Traffic: messages in per second goes above zero while they talk.
    for (let i = 0; i < 20; i++) {
      await say(i % 2 ? a : b, `message ${i}`);
    }
    await status.waitForFunction(() => parseFloat(document.getElementById('rate-in').textContent) > 0, null,
      { timeout: 10000 });
    await status.waitForFunction(() => parseFloat(document.getElementById('rate-out').textContent) > 0, null,
      { timeout: 10000 });
    const nodes = await status.$$eval('#nodes tr', (trs) => trs.map((tr) => tr.textContent));
    assert.deepStrictEqual(nodes, ['this nodeup']);

    // One goes: the page follows.
    await a.close();
    await shows(status, 'connections', '1');
    await room(status, 'lobby', 1);
    await shows(status, 'closes', '1');
    fs.mkdirSync(path.join(root, 'target/browser'), { recursive: true });
    await status.screenshot({ path: path.join(root, 'target/browser/status.png') });
    await b.close();
    await shows(status, 'connections', '0');
  } finally {
    await browser.close();
    chat.child.kill();
  }
});
