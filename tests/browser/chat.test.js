// Headless Chromium against examples/chat: two pages exchange messages through the
// crate's groups, see each other join and leave rooms with the member list, and move
// between rooms; with permessage-deflate negotiated by the browser under the server's default
// answer (4 KiB windows, one of them unasked) and used: b's message is long enough that
// the server compresses it for a, and Chromium must inflate it.
//
//   node --test tests/browser/        (scripts/test.sh runs it after `cargo test`)
'use strict';
const { test } = require('node:test');
const assert = require('node:assert');
const { spawn, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { launch, sees, say, open, log } = require('./page');

const root = path.join(__dirname, '../..');

function startChat(extra = []) {
  return new Promise((resolve, reject) => {
    const bin = path.join(root, 'target/debug/examples/chat');
    const child = spawn(bin, ['--addr', '127.0.0.1:0', ...extra], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.on('error', reject);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/chat on (https?:\/\/[0-9.:]+\/)/);
      if (m) resolve({ child, url: m[1], output: () => out });
    });
    setTimeout(() => reject(new Error('chat example did not start: ' + out)), 20000).unref();
  });
}

test('two browser pages chat in rooms through groups', async () => {
  const chat = await startChat();
  const browser = await launch();
  const nameOf = async (p) => {
    await sees(p, /^you are guest\d+;/);
    return (await log(p)).find((t) => t.startsWith('you are ')).match(/guest\d+/)[0];
  };
  try {
    const a = await open(browser, chat.url);
    const an = await nameOf(a);
    const b = await open(browser, chat.url);
    const bn = await nameOf(b);
    // a sees b join the lobby, with both in the member list.
    await sees(a, new RegExp(`^\\[lobby\\] ${bn} joined; here: ${an}, ${bn}$`));
    await say(a, 'hello from a');
    await sees(b, new RegExp(`^\\[lobby\\] ${an}: hello from a$`));
    // Long enough that the server compresses it for a, and Chromium must inflate it.
    const long = 'hi from b, ünïcödé. '.repeat(40).trim();
    await say(b, long);
    await a.waitForFunction((want) => [...document.querySelectorAll('#log li')]
      .some((li) => li.textContent.replace(/^\[lobby\] guest\d+: /, '') === want), long, { timeout: 10000 });
    // b moves to another room: a sees it leave; then a follows and they talk there.
    await say(b, '/join games');
    await sees(a, new RegExp(`^\\[lobby\\] ${bn} left; here: ${an}$`));
    await sees(b, new RegExp(`^\\[games\\] ${bn} joined; here: ${bn}$`));
    await say(a, '/join games');
    await sees(b, new RegExp(`^\\[games\\] ${an} joined; here: ${bn}, ${an}$`));
    await say(a, 'over here');
    await sees(b, new RegExp(`^\\[games\\] ${an}: over here$`));
    const logB = await log(b);
    assert.ok(!logB.some((t) => t.startsWith('[lobby] ') && t.includes('over here')), JSON.stringify(logB));
    assert.match(chat.output(), /connected \(compression true\)/, 'the browser negotiated permessage-deflate');
    // Closing the page ends the connection: it leaves its room.
    await a.close();
    await sees(b, new RegExp(`^\\[games\\] ${an} left; here: ${bn}$`));
  } finally {
    await browser.close();
    chat.child.kill();
  }
});

test('a page that loses its connection gets what it missed from history, nothing twice', async () => {
  const chat = await startChat();
  const browser = await launch();
  const said = (p, name, text) => sees(p, new RegExp(`^\\[lobby\\] ${name}: ${text}$`));
  const count = async (p, text) => (await log(p)).filter((t) => t.endsWith(`: ${text}`)).length;
  try {
    const a = await open(browser, chat.url);
    const b = await open(browser, chat.url);
    await sees(b, /^you are guest\d+;/);
    const bn = (await log(b)).find((t) => t.startsWith('you are ')).match(/guest\d+/)[0];
    await sees(a, /^\[lobby\] you are here;/);
    await say(b, 'one');
    await said(a, bn, 'one');
    // a's connection drops; b goes on talking meanwhile.
    await a.evaluate(() => window.__chat.hold());
    await a.waitForFunction(() => document.body.dataset.ready === '0');
    await say(b, 'two');
    await say(b, 'three');
    await said(b, bn, 'three');
    await a.evaluate(() => window.__chat.resume());
    await said(a, bn, 'three');
    for (const text of ['one', 'two', 'three']) assert.strictEqual(await count(a, text), 1, text);
    const [two, three] = [(await log(a)).indexOf(`[lobby] ${bn}: two`), (await log(a)).indexOf(`[lobby] ${bn}: three`)];
    assert.ok(two >= 0 && two < three, 'in order');
    // A new page shows the room's latest messages.
    const c = await open(browser, chat.url);
    await said(c, bn, 'three');
    for (const text of ['one', 'two', 'three']) assert.strictEqual(await count(c, text), 1, text);
  } finally {
    await browser.close();
    chat.child.kill();
  }
});

test('the chat over https and wss, with a certificate Chromium is told to trust', async () => {
  // A self-signed certificate for 127.0.0.1 from examples/self_signed_cert; Chromium trusts
  // exactly its public key and nothing else unknown.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'amw-chat-tls-'));
  execFileSync(path.join(root, 'target/debug/examples/self_signed_cert'), [dir]);
  const [cert, key] = [path.join(dir, 'cert.pem'), path.join(dir, 'key.pem')];
  const spki = new crypto.X509Certificate(fs.readFileSync(cert)).publicKey.export({ type: 'spki', format: 'der' });
  const pin = crypto.createHash('sha256').update(spki).digest('base64');
  const chat = await startChat(['--tls', cert, key]);
  assert.match(chat.url, /^https:/);
  const browser = await launch([`--ignore-certificate-errors-spki-list=${pin}`]);
  try {
    // The page is https, so its WebSocket must be wss (a ws:// one would be blocked as
    // mixed content): ready means the wss handshake went through.
    const a = await open(browser, chat.url);
    const b = await open(browser, chat.url);
    assert.strictEqual(await a.evaluate(() => location.protocol), 'https:');
    await sees(a, /^\[lobby\] guest\d+ joined; here: guest\d+, guest\d+$/);
    await say(b, 'hello over wss');
    await sees(a, /^\[lobby\] guest\d+: hello over wss$/);
  } finally {
    await browser.close();
    chat.child.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
