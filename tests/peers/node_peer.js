// Node `ws` as an independent peer for the interop tests.
//
//   node node_peer.js server deflate|none        echo server on 127.0.0.1, prints its port
//   node node_peer.js client URL deflate|none    runs the exchange against an echo server
//
// The client exchange: text, binary, 1 MiB binary, a text message sent in three
// fragments, 100 small messages, then a close with 4001 "done". Exit 0 when every echo
// matches and the close was answered with 4001.
'use strict';
const WebSocket = require('ws');

const [mode, a, b] = process.argv.slice(2);

if (mode === 'server') {
  const wss = new WebSocket.Server({ host: '127.0.0.1', port: 0, perMessageDeflate: a === 'deflate', maxPayload: 64 << 20 });
  wss.on('listening', () => console.log(wss.address().port));
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
} else {
  const ws = new WebSocket(a, { perMessageDeflate: b === 'deflate', maxPayload: 64 << 20 });
  const fail = (why) => { console.error('FAIL ' + why); process.exit(1); };
  const big = Buffer.alloc(1 << 20);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) % 251;
  const expected = [
    ['text', 'héllo wörld'],
    ['binary', Buffer.from([0, 1, 255])],
    ['binary', big],
    ['text', 'fragmented'],
  ];
  for (let i = 0; i < 100; i++) expected.push(['text', 'msg ' + i]);
  let next = 0;
  ws.on('open', () => {
    ws.send('héllo wörld');
    ws.send(Buffer.from([0, 1, 255]));
    ws.send(big);
    ws.send('frag', { fin: false });
    ws.send('ment', { fin: false });
    ws.send('ed', { fin: true });
    for (let i = 0; i < 100; i++) ws.send('msg ' + i);
  });
  ws.on('message', (data, isBinary) => {
    const [kind, want] = expected[next];
    if ((kind === 'binary') !== isBinary) fail(`message ${next}: kind`);
    const got = isBinary ? data : data.toString();
    if (isBinary ? !Buffer.from(got).equals(want) : got !== want) fail(`message ${next}: body`);
    next += 1;
    if (next === expected.length) ws.close(4001, 'done');
  });
  ws.on('close', (code) => {
    if (next !== expected.length) fail(`closed after ${next} messages`);
    if (code !== 4001) fail(`close answered with ${code}`);
    console.log(`ok extensions=${JSON.stringify(ws.extensions)}`);
    process.exit(0);
  });
  ws.on('error', (e) => fail(String(e)));
}
