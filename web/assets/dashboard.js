// wscluster live cluster dashboard.
//
// Polls only the node that served this page (the API key never goes anywhere else, and
// no node sends CORS headers): GET /api/nodes (the cluster's nodes), GET /api/events
// (recent DISCOVER/SHUTDOWN, newest last), its own GET /metrics for messages per second,
// and GET /api/stats for users online (uids with a connection anywhere, each counted once).
// Query parameters: interval=<ms> (default 1000), watch=a,b (uids whose presence counts
// as users online when the node has no /api/stats, e.g. an older node).

import { parsePrometheus, sum } from '/assets/prom.js';

const params = new URLSearchParams(location.search);
const POLL_MS = Math.max(250, Number(params.get('interval')) || 1000);
const HISTORY = Math.round(120000 / POLL_MS);
const DOWN_KEEP_MS = 5 * 60 * 1000;
const $ = (id) => document.getElementById(id);

const state = {
  nodes: new Map(), // id -> { info, state: 'up'|'down', since, rateIn, rateOut, prev, metricsError }
  history: [], // { t, in, out } cluster totals
  serverEvents: null, // array from /api/events, or null when the node has none
  eventsError: null,
  observed: [], // events this page inferred from /api/nodes
  users: { mode: 'unknown', value: null, hint: '' },
  usersCheckedAt: 0,
  apiKey: sessionStorage.getItem('wscluster.apiKey') || '',
  lastOk: 0,
  firstPoll: true,
};

// -- HTTP ------------------------------------------------------------------------

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function get(url, { json = true, timeoutMs = 2500, auth = true } = {}) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  try {
    const headers = {};
    if (auth && state.apiKey) headers.Authorization = `Bearer ${state.apiKey}`;
    const res = await fetch(url, { cache: 'no-store', headers, signal: ctl.signal });
    if (!res.ok) throw new HttpError(res.status, `${url}: HTTP ${res.status}`);
    return json ? await res.json() : await res.text();
  } catch (err) {
    if (err instanceof HttpError) throw err;
    throw new HttpError(0, `${url}: ${err.name === 'AbortError' ? 'timeout' : 'unreachable'}`);
  } finally {
    clearTimeout(timer);
  }
}

const OTHER_NODE = 'metrics are read only from the node that served this page';

// -- polling ---------------------------------------------------------------------

async function pollNodes(now) {
  const list = await get('/api/nodes');
  if (!Array.isArray(list)) throw new HttpError(0, '/api/nodes: not a list');
  const present = new Set();
  for (const info of list) {
    if (!info || !info.id) continue;
    present.add(info.id);
    let n = state.nodes.get(info.id);
    if (!n) {
      n = { info, state: 'up', since: now, rateIn: null, rateOut: null, prev: null, metricsError: null };
      state.nodes.set(info.id, n);
      if (!state.firstPoll) observe(now, 'DISCOVER', info.id);
    } else if (n.state === 'down') {
      n.state = 'up';
      n.since = now;
      n.prev = null;
      observe(now, 'DISCOVER', info.id);
    }
    n.info = info;
  }
  for (const [id, n] of state.nodes) {
    if (present.has(id)) continue;
    if (n.state === 'up') {
      n.state = 'down';
      n.since = now;
      n.rateIn = n.rateOut = null;
      observe(now, 'SHUTDOWN', id);
    } else if (now - n.since > DOWN_KEEP_MS) {
      state.nodes.delete(id);
    }
  }
  state.firstPoll = false;
}

function observe(ts, event, node) {
  state.observed.push({ ts, event, node, observed: true });
  if (state.observed.length > 50) state.observed.shift();
}

async function pollMetrics(now) {
  const up = [...state.nodes.values()].filter((n) => n.state === 'up');
  await Promise.all(up.map(async (n) => {
    // A node whose /metrics this page cannot read is retried every 10 s, not every poll.
    if (n.metricsError && now < (n.metricsRetryAt || 0)) return;
    if (n.info.listen !== location.host) {
      n.metricsError = OTHER_NODE;
      n.rateIn = n.rateOut = null;
      return;
    }
    try {
      // /metrics is not behind the API key: do not send it.
      const text = await get('/metrics', { json: false, timeoutMs: 2000, auth: false });
      const { samples } = parsePrometheus(text);
      const cur = {
        t: now,
        in: sum(samples, 'wscluster_frames_in_total') ?? 0,
        out: sum(samples, 'wscluster_deliveries_local_total') ?? 0,
      };
      if (n.prev && cur.t > n.prev.t && cur.in >= n.prev.in && cur.out >= n.prev.out) {
        const dt = (cur.t - n.prev.t) / 1000;
        n.rateIn = (cur.in - n.prev.in) / dt;
        n.rateOut = (cur.out - n.prev.out) / dt;
      } else if (n.prev) {
        n.rateIn = n.rateOut = null; // counter reset: the node restarted
      }
      n.prev = cur;
      n.metricsError = null;
    } catch (err) {
      n.metricsError = err.message;
      n.rateIn = n.rateOut = null;
      n.metricsRetryAt = now + 10000;
    }
  }));
  const withRates = up.filter((n) => n.rateIn !== null);
  const point = {
    t: now,
    in: withRates.length ? withRates.reduce((a, n) => a + n.rateIn, 0) : null,
    out: withRates.length ? withRates.reduce((a, n) => a + n.rateOut, 0) : null,
    of: withRates.length,
    total: up.length,
  };
  state.history.push(point);
  if (state.history.length > HISTORY) state.history.shift();
}

async function pollEvents() {
  try {
    const list = await get('/api/events');
    state.serverEvents = Array.isArray(list) ? list : [];
    state.eventsError = null;
  } catch (err) {
    state.serverEvents = null;
    state.eventsError = err.status === 404 ? 'this node has no GET /api/events' : err.message;
  }
}

function watchList() {
  const uids = new Set((params.get('watch') || '').split(',').map((s) => s.trim()).filter(Boolean));
  try {
    for (const u of JSON.parse(localStorage.getItem('wscluster.demo.seen') || '[]')) uids.add(u);
  } catch (_) { /* no storage */ }
  return [...uids].slice(0, 200);
}

async function pollUsers(now) {
  if (state.users.mode !== 'presence' || now - state.usersCheckedAt > 30000) {
    state.usersCheckedAt = now;
    try {
      const body = await get('/api/stats');
      const count = typeof body.users === 'number' ? body.users : null;
      const conns = typeof body.connections === 'number' ? `, ${body.connections} connection${body.connections === 1 ? '' : 's'}` : '';
      state.users = { mode: 'api', value: count, hint: `distinct uids, all nodes${conns}` };
      return;
    } catch (err) {
      if (err.status !== 404) {
        state.users = { mode: 'api', value: null, hint: err.message };
        return;
      }
      state.users.mode = 'presence';
    }
  }
  const uids = watchList();
  if (!uids.length) {
    state.users = { mode: 'presence', value: null, hint: 'node has no GET /api/stats; no uids to watch' };
    return;
  }
  try {
    const { online } = await get(`/api/presence?uids=${uids.map(encodeURIComponent).join(',')}`);
    const on = uids.filter((u) => online && online[u]).length;
    state.users = { mode: 'presence', value: on, hint: `of ${uids.length} watched uid${uids.length === 1 ? '' : 's'} (no GET /api/stats)` };
  } catch (err) {
    state.users = { mode: 'presence', value: null, hint: err.message };
  }
}

let polling = false;
async function tick() {
  if (polling) return;
  polling = true;
  const now = Date.now();
  try {
    await pollNodes(now);
    state.lastOk = now;
    state.error = null;
    await Promise.all([pollMetrics(now), pollEvents(), pollUsers(now)]);
  } catch (err) {
    state.error = err;
  } finally {
    polling = false;
    render();
  }
}

// -- rendering -------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const fmtTime = (ms) => timeFmt.format(new Date(ms));
const fmtRate = (r) => (r === null || r === undefined ? '–' : r >= 100 ? r.toFixed(0) : r.toFixed(1));
const fmtAge = (ms) => (ms < 0 ? '0.0 s' : ms < 10000 ? `${(ms / 1000).toFixed(1)} s` : ms < 120000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60000)} min`);

function render() {
  const now = Date.now();
  const live = $('live');
  if (state.error) {
    live.dataset.state = 'closed';
    $('live-text').textContent = state.error.status === 401 ? 'API key needed' : 'Cannot reach this node';
  } else {
    live.dataset.state = 'open';
    $('live-text').textContent = `Live · ${fmtTime(state.lastOk)}`;
  }
  renderNotices();

  const nodes = [...state.nodes.values()].sort((a, b) =>
    (a.state === b.state ? 0 : a.state === 'up' ? -1 : 1) || a.info.id.localeCompare(b.info.id));
  const up = nodes.filter((n) => n.state === 'up');
  const here = up.find((n) => n.info.listen === location.host);
  $('served-by').textContent = here ? `served by node ${here.info.id}` : '';
  $('stat-nodes').textContent = state.lastOk ? String(up.length) : '–';
  const down = nodes.length - up.length;
  $('stat-nodes-hint').textContent = down ? `${down} down recently` : 'all healthy';
  const conns = up.reduce((a, n) => a + (Number(n.info.connections) || 0), 0);
  $('stat-conns').textContent = state.lastOk ? String(conns) : '–';
  $('stat-users').textContent = state.users.value === null ? '–' : String(state.users.value);
  $('stat-users-hint').textContent = state.users.hint;
  const last = state.history[state.history.length - 1];
  $('stat-in').textContent = last ? fmtRate(last.in) : '–';
  $('stat-out').textContent = last ? fmtRate(last.out) : '–';
  const partial = last && last.of < last.total ? `metrics of ${last.of} of ${last.total} nodes` : null;
  $('stat-in-hint').textContent = partial || 'client frames read';
  $('stat-out-hint').textContent = partial || 'frames delivered to clients';

  const maxConns = Math.max(1, ...up.map((n) => Number(n.info.connections) || 0));
  const tbody = $('nodes').querySelector('tbody');
  tbody.replaceChildren();
  for (const n of nodes) {
    const i = n.info;
    const age = now - Number(i.last_heartbeat_ms);
    const stale = n.state === 'up' && Number.isFinite(age) && age > 5000;
    const status = n.state === 'down' ? 'down' : stale ? 'stale' : 'up';
    const label = n.state === 'down' ? 'gone' : stale ? 'late' : 'up';
    const c = Number(i.connections) || 0;
    tbody.append(el('tr', { dataset: { node: i.id, state: n.state } },
      el('td', {}, el('span', { class: `status ${status}` }, el('span', { class: 'dot' }), label)),
      el('td', { class: 'node-id' }, el('b', { text: i.id }), here && here === n ? el('span', { class: 'you', text: 'this page' }) : null),
      el('td', { class: 'mono', text: i.listen || '' }),
      el('td', { class: 'mono muted', text: i.cluster || '—' }),
      el('td', { class: 'num' }, n.state === 'down' ? '–'
        : el('div', { class: 'conn-cell' }, el('div', { class: 'bar' }, el('span', { style: `width:${(100 * c) / maxConns}%` })),
          el('span', { class: 'conns', text: String(c) }))),
      el('td', { class: 'num', title: n.metricsError || '', text: n.state === 'down' ? '–' : n.metricsError ? 'n/a' : fmtRate(n.rateIn) }),
      el('td', { class: 'num', title: n.metricsError || '', text: n.state === 'down' ? '–' : n.metricsError ? 'n/a' : fmtRate(n.rateOut) }),
      el('td', { class: 'num', text: n.state === 'down' ? `down ${fmtAge(now - n.since)}` : Number.isFinite(age) ? `${fmtAge(age)} ago` : '–' })));
  }
  if (!nodes.length) tbody.append(el('tr', {}, el('td', { colspan: '8', class: 'muted', text: state.lastOk ? 'No nodes.' : 'Loading…' })));
  const unreadable = up.filter((n) => n.metricsError).length;
  $('nodes-note').textContent = unreadable
    ? `from GET /api/nodes · metrics of ${unreadable} node${unreadable === 1 ? '' : 's'} not readable from this page (hover n/a)`
    : 'from GET /api/nodes and each node\'s /metrics';

  renderEvents();
  drawChart();
}

function renderNotices() {
  const box = $('notices');
  box.replaceChildren();
  if (state.error && state.error.status === 401) {
    const input = el('input', { type: 'password', placeholder: 'API key', 'aria-label': 'API key' });
    const form = el('form', {}, input, el('button', { class: 'btn small', type: 'submit', text: 'Use key' }));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      state.apiKey = input.value;
      sessionStorage.setItem('wscluster.apiKey', state.apiKey);
      tick();
    });
    box.append(el('div', { class: 'notice bad' }, 'This node requires an API key for its HTTP API.', form));
  } else if (state.error) {
    box.append(el('div', { class: 'notice bad', text: `Cannot reach this node's HTTP API (${state.error.message}); showing the last known state.` }));
  }
}

function renderEvents() {
  const ul = $('events');
  ul.replaceChildren();
  let events;
  if (state.serverEvents) {
    events = state.serverEvents.map((e) => ({ ...e, observed: false }));
    $('events-note').textContent = 'from GET /api/events';
  } else {
    events = state.observed;
    $('events-note').textContent = `seen by this page (${state.eventsError || 'no event log'})`;
  }
  const recent = events.slice(-50).reverse();
  for (const e of recent) {
    const detail = [`node ${e.node}`];
    if (e.reason) detail.push(e.reason);
    if (e.observed) detail.push(e.event === 'DISCOVER' ? 'appeared in /api/nodes' : 'left /api/nodes');
    ul.append(el('li', { dataset: { event: e.event, node: e.node, source: e.observed ? 'observed' : 'server' } },
      el('time', { text: fmtTime(Number(e.ts)) }),
      el('span', { class: `tag ${e.event}`, text: e.event }),
      el('span', { text: detail.join(' · ') })));
  }
  if (!recent.length) ul.append(el('li', { class: 'empty-row', text: 'No events yet. Start or stop a node to see one.' }));
}

function drawChart() {
  const canvas = $('chart');
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (!w || !h) return;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const padL = 40;
  const padB = 20;
  const padT = 8;
  const plotW = w - padL - 8;
  const plotH = h - padB - padT;
  const pts = state.history;
  const maxV = Math.max(1, ...pts.flatMap((p) => [p.in || 0, p.out || 0]));
  const niceMax = (() => {
    const mag = Math.pow(10, Math.floor(Math.log10(maxV)));
    for (const m of [1, 2, 5, 10]) if (m * mag >= maxV) return m * mag;
    return 10 * mag;
  })();
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = '#667085';
  ctx.strokeStyle = '#e3e7ee';
  ctx.lineWidth = 1;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (let k = 0; k <= 4; k++) {
    const y = padT + plotH - (plotH * k) / 4;
    ctx.beginPath();
    ctx.moveTo(padL, Math.round(y) + 0.5);
    ctx.lineTo(padL + plotW, Math.round(y) + 0.5);
    ctx.stroke();
    const v = (niceMax * k) / 4;
    ctx.fillText(v >= 10 ? v.toFixed(0) : v.toFixed(1), padL - 6, y);
  }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  for (const [label, frac, align] of [['-2 min', 0, 'left'], ['-1 min', 0.5, 'center'], ['now', 1, 'right']]) {
    ctx.textAlign = align;
    ctx.fillText(label, padL + plotW * frac, padT + plotH + 5);
  }
  const x = (i) => padL + plotW * (1 - (pts.length - 1 - i) / Math.max(1, HISTORY - 1));
  const y = (v) => padT + plotH - (plotH * v) / niceMax;
  for (const [key, color] of [['in', '#2f6fec'], ['out', '#12a150']]) {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.lineJoin = 'round';
    ctx.beginPath();
    let pen = false;
    pts.forEach((p, i) => {
      if (p[key] === null) {
        pen = false;
        return;
      }
      if (!pen) ctx.moveTo(x(i), y(p[key]));
      else ctx.lineTo(x(i), y(p[key]));
      pen = true;
    });
    ctx.stroke();
  }
}

window.addEventListener('resize', drawChart);
tick();
setInterval(tick, POLL_MS);
