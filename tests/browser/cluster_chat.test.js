// Headless Chromium against examples/cluster_chat: two nodes (one process, two servers,
// each with its own Cluster handle) share a redis-server started here on a free loopback
// port. Page a is on one node and page b on the other: they see each other join with the
// member list of both nodes, exchange messages, and see each other leave.
//
//   node --test tests/browser/        (scripts/test.sh runs it after `cargo test`)
'use strict';
const { test } = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const net = require('node:net');
const path = require('node:path');
const { launch, sees, say, open, log } = require('./page');

const root = path.join(__dirname, '../..');

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Resolves once `child`'s stdout has matched `re` `count` times, with the matches.
function lines(child, re, count, what) {
  return new Promise((resolve, reject) => {
    let out = '';
    child.on('error', reject);
    child.stdout.on('data', (d) => {
      out += d;
      const all = [...out.matchAll(new RegExp(re.source, 'g'))];
      if (all.length >= count) resolve(all);
    });
    setTimeout(() => reject(new Error(`${what} did not start: ${out}`)), 20000).unref();
  });
}

async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  await lines(child, /Ready to accept connections/, 1, 'redis-server');
  return { child, url: `redis://127.0.0.1:${port}` };
}

// A redis-server and cluster_chat with two nodes on it: each node's [line, id, url].
async function startCluster() {
  const redis = await startRedis();
  const bin = path.join(root, 'target/debug/examples/cluster_chat');
  const chat = spawn(bin, ['--redis', redis.url, '--addr', '127.0.0.1:0', '--nodes', '2'],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  const nodes = lines(chat, /node ([0-9a-f]{16}) chat on (http:\/\/[0-9.:]+\/)/, 2, 'cluster_chat');
  return { redis, chat, nodes };
}

test('two browser pages on two nodes chat through the cluster', async () => {
  const { redis, chat, nodes: started } = await startCluster();
  let browser;
  try {
    const nodes = await started;
    assert.notStrictEqual(nodes[0][1], nodes[1][1], 'two nodes');
    browser = await launch();
    const guest = async (url) => {
      const p = await open(browser, url);
      await sees(p, /^you are guest[0-9a-f]{4}-\d+ on node /);
      const hello = (await log(p)).find((t) => t.startsWith('you are '));
      return { p, name: hello.match(/guest[0-9a-f]{4}-\d+/)[0], node: hello.match(/on node ([0-9a-f]{16})/)[1] };
    };
    const a = await guest(nodes[0][2]);
    const b = await guest(nodes[1][2]);
    assert.notStrictEqual(a.node, b.node, 'the pages are on different nodes');
    // The first node's status page: both nodes up, as its cluster events said.
    const status = await browser.newPage();
    await status.goto(nodes[0][2] + 'status');
    await status.waitForFunction(([me, other]) => {
      const rows = [...document.querySelectorAll('#nodes tr')].map((tr) => [tr.cells[0].textContent, tr.cells[1].textContent]);
      return rows.length === 2 && rows.some(([id, s]) => id === `${me} (this node)` && s === 'up') &&
        rows.some(([id, s]) => id === other && s === 'up');
    }, [nodes[0][1], nodes[1][1]], { timeout: 10000 });
    await status.waitForFunction(() => document.getElementById('connections').textContent === '1', null,
      { timeout: 10000 });
    // The member list comes from Redis: both nodes' members, in either order.
    const both = `(${a.name}, ${b.name}|${b.name}, ${a.name})`;
    await sees(a.p, new RegExp(`^\\[lobby\\] ${b.name} joined; here: ${both}$`));
    await say(a.p, 'hello from node a');
    await sees(b.p, new RegExp(`^\\[lobby\\] ${a.name}: hello from node a$`));
    await say(b.p, 'hello from node b');
    await sees(a.p, new RegExp(`^\\[lobby\\] ${b.name}: hello from node b$`));
    // b moves to another room: a, on the other node, sees it leave the lobby.
    await say(b.p, '/join games');
    await sees(a.p, new RegExp(`^\\[lobby\\] ${b.name} left; here: ${a.name}$`));
    await say(a.p, '/join games');
    await sees(b.p, new RegExp(`^\\[games\\] ${a.name} joined; here: ${both}$`));
    await say(a.p, 'over here');
    await sees(b.p, new RegExp(`^\\[games\\] ${a.name}: over here$`));
    // Closing page a ends its connection on its node: b sees it leave.
    await a.p.close();
    await sees(b.p, new RegExp(`^\\[games\\] ${a.name} left; here: ${b.name}$`));
  } finally {
    if (browser) await browser.close();
    chat.kill();
    redis.child.kill('SIGKILL');
  }
});

test('a page that lost its node reconnects to another and gets what it missed, nothing twice', async () => {
  const { redis, chat, nodes: started } = await startCluster();
  let browser;
  try {
    const nodes = await started;
    browser = await launch();
    const a = await open(browser, nodes[0][2]);
    const b = await open(browser, nodes[1][2]);
    await sees(b, /^you are guest[0-9a-f]{4}-\d+ on node /);
    const bn = (await log(b)).find((t) => t.startsWith('you are ')).match(/guest[0-9a-f]{4}-\d+/)[0];
    const said = (p, text) => sees(p, new RegExp(`^\\[lobby\\] ${bn}: ${text}$`));
    await sees(a, /^\[lobby\] you are here;/);
    await say(b, 'one');
    await said(a, 'one');
    // a's node goes away for it; b, on the other node, goes on talking.
    await a.evaluate(() => window.__chat.hold());
    const { room, since } = await a.evaluate(() => window.__chat.position());
    assert.strictEqual(room, 'lobby');
    await say(b, 'two');
    await say(b, 'three');
    await said(b, 'three');
    // The page comes back on the other node, since where it was.
    const c = await open(browser, `${nodes[1][2]}?room=lobby&since=${encodeURIComponent(since)}`);
    await said(c, 'three');
    const texts = (await log(c)).filter((t) => t.startsWith(`[lobby] ${bn}: `));
    assert.deepStrictEqual(texts, [`[lobby] ${bn}: two`, `[lobby] ${bn}: three`], 'what it missed, once, in order');
  } finally {
    if (browser) await browser.close();
    chat.kill();
    redis.child.kill('SIGKILL');
  }
});
