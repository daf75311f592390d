'use strict';
// wscluster client adapter for ../shared/bench-peers (README "Protocol adapter").
// Speaks the public protocol of /work/shared/CONTRACT.md section 2:
//   connect ws://HOST:PORT/ws?uid=<uid>, ready on {"type":"welcome"}
//   {"type":"send","to":uid,"data":D} / {"type":"broadcast","data":D}
//   {"type":"join","group":g,"id":n} -> {"type":"ack","id":n}
//   {"type":"publish","group":g,"data":D}
//   receives message -> 'user', broadcast -> 'all', group -> 'group'
const path = require('path');
const { createRequire } = require('module');

// `ws` is a dependency of the harness, not of this folder: resolve it from the
// harness (BENCH_DIR is exported by its scripts/common.sh; else the main script's tree).
function loadWs() {
  const bases = [];
  if (process.env.BENCH_DIR) bases.push(path.join(process.env.BENCH_DIR, 'package.json'));
  if (require.main && require.main.filename) bases.push(require.main.filename);
  bases.push(__filename);
  for (const b of bases) {
    try { return createRequire(b)('ws'); } catch { /* next */ }
  }
  throw new Error('wscluster adapter: cannot find the "ws" package (run npm ci in the harness)');
}
const WebSocket = loadWs();

const KIND = { message: 'user', broadcast: 'all', group: 'group' };
let reportedErrors = 0;

module.exports = {
  name: 'wscluster',
  description: 'wscluster (C++, CAF 0.17 + Beast, Redis state), 2 nodes',
  connect({ host = '127.0.0.1', port, uid, onMessage, timeoutMs = 10000 }) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://${host}:${port}/ws?uid=${encodeURIComponent(uid)}`, { perMessageDeflate: false });
      let done = false;
      let nextId = 0;
      const pending = new Map(); // id -> { res, rej }
      const timer = setTimeout(() => { if (!done) { done = true; ws.terminate(); reject(new Error('connect timeout')); } }, timeoutMs);
      const send = (obj) => ws.send(JSON.stringify(obj));
      const conn = {
        uid,
        sendToUser(to, data) { send({ type: 'send', to, data }); },
        broadcast(data) { send({ type: 'broadcast', data }); },
        sendToGroup(group, data) { send({ type: 'publish', group, data }); },
        joinGroup(group) {
          const id = ++nextId;
          return new Promise((res, rej) => { pending.set(id, { res, rej }); send({ type: 'join', group, id }); });
        },
        close() { ws.terminate(); },
      };
      ws.on('message', (buf) => {
        const m = JSON.parse(buf);
        const kind = KIND[m.type];
        if (kind) { onMessage({ kind, from: m.from, group: m.group, data: m.data }); return; }
        switch (m.type) {
          case 'welcome':
            if (!done) { done = true; clearTimeout(timer); resolve(conn); }
            return;
          case 'ack':
            if (pending.has(m.id)) { pending.get(m.id).res(); pending.delete(m.id); }
            return;
          case 'error':
            if (pending.has(m.id)) { pending.get(m.id).rej(new Error(`${m.code}: ${m.message}`)); pending.delete(m.id); return; }
            if (reportedErrors++ < 5) console.error(`[wscluster adapter] ${uid}: error ${m.code}: ${m.message}`);
            return;
          default:
        }
      });
      ws.on('error', (e) => { if (!done) { done = true; clearTimeout(timer); reject(e); } });
      ws.on('close', (code, reason) => {
        for (const p of pending.values()) p.rej(new Error(`closed (${code})`));
        pending.clear();
        if (!done) { done = true; clearTimeout(timer); reject(new Error(`closed before welcome (${code} ${reason})`)); }
      });
    });
  },
};
