// The README's picture of the chat's status page: a half-minute session in headless
// Chromium (guests come, talk in two rooms, some go), then a screenshot.
//
//   cargo build --all-features --example chat && node scripts/status_screenshot.js [OUT.png]
'use strict';
const { spawn } = require('node:child_process');
const path = require('node:path');
const { launch, say, open, sees } = require('../tests/browser/page');

const root = path.join(__dirname, '..');
const out = process.argv[2] || path.join(root, 'docs/status.png');
const pause = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const child = spawn(path.join(root, 'target/debug/examples/chat'), ['--addr', '127.0.0.1:0'],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((resolve) => {
    let text = '';
    child.stdout.on('data', (d) => {
      text += d;
      const m = text.match(/chat on (http:\/\/[0-9.:]+\/)/);
      if (m) resolve(m[1]);
    });
  });
  const browser = await launch();
  try {
    const status = await browser.newPage({ viewport: { width: 860, height: 520 } });
    await status.goto(url + 'status');
    const guests = [];
    for (let i = 0; i < 7; i++) {
      const g = await open(browser, url);
      await sees(g, /^\[lobby\] you are here/);
      if (i % 3 === 2) await say(g, '/join games');
      guests.push(g);
      for (let k = 0; k < 2 + i; k++) {
        for (const [j, p] of guests.entries()) await say(p, `line ${k} from ${j}`);
        await pause(250);
      }
    }
    for (let k = 0; k < 12; k++) {
      if (k === 4 || k === 8) await guests.shift().close();
      for (const [j, p] of guests.entries()) await say(p, `more ${k} from ${j}`);
      await pause(400);
    }
    await pause(1500);
    await status.screenshot({ path: out });
    console.log('wrote', out);
  } finally {
    await browser.close();
    child.kill();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
