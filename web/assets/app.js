// wscluster chat demo: pick a uid, see who is online, chat 1:1 and in groups.
// Uses the JS client served by every node at /client/wscluster.js.
//
// Query parameters (all optional): uid=<uid> prefills the form, connect=1 connects at
// once, urls=<ws-url>,<ws-url> replaces the node list (default: this node first, then
// every node of GET /api/nodes).

import { WsClusterClient } from '/client/wscluster.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const wsScheme = location.protocol === 'https:' ? 'wss' : 'ws';

const ui = {
  login: $('login'), loginForm: $('login-form'), uid: $('uid'), urls: $('urls'), urlsBox: $('urls-box'),
  connectBtn: $('connect'), loginError: $('login-error'),
  chat: $('chat'), conn: $('conn'), connText: $('conn-text'), me: $('me'), meUid: $('me-uid'), logout: $('logout'),
  contacts: $('contacts'), addContact: $('add-contact'), contactInput: $('contact-input'),
  groups: $('groups'), joinForm: $('join-form'), groupInput: $('group-input'),
  log: $('log'), title: $('conv-title'), sub: $('conv-sub'), leave: $('leave'),
  messages: $('messages'), composer: $('composer'), text: $('text'), send: $('send'),
};

const state = {
  client: null,
  me: null,
  contacts: new Map(), // uid -> { online: true | false | null }
  groups: new Set(), // joined (or joining) groups
  convs: new Map(), // 'u:<uid>' | 'g:<group>' | 'b:*' -> { kind, name, items: [], unread }
  active: null,
  myCids: new Set(), // client ids of my own messages (drops echoes of them)
  myCidOrder: [],
  timers: [],
};

const ID_RE = /^[A-Za-z0-9_.@-]{1,64}$/;

// -- node list -------------------------------------------------------------------

function listenToWs(listen) {
  // A node listening on every interface is reached through this page's host.
  const host = listen.replace(/^(0\.0\.0\.0|\[::\])(?=:\d+$)/, location.hostname);
  return `${wsScheme}://${host}/ws`;
}

async function defaultUrls() {
  if (params.get('urls')) return params.get('urls').split(',').map((s) => s.trim()).filter(Boolean);
  const urls = [`${wsScheme}://${location.host}/ws`];
  try {
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), 3000);
    const res = await fetch('/api/nodes', { cache: 'no-store', signal: ctl.signal });
    clearTimeout(t);
    if (res.ok) {
      const nodes = await res.json();
      for (const n of nodes) {
        if (!n || !n.listen) continue;
        const u = listenToWs(n.listen);
        if (n.listen === location.host) continue; // this node is already first
        if (!urls.includes(u)) urls.push(u);
      }
    }
  } catch (_) {
    // /api/nodes unreachable (or protected by an API key): this node alone.
  }
  return urls;
}

// -- storage ---------------------------------------------------------------------

const storeKey = (uid) => `wscluster.demo.${uid}`;
function loadSaved(uid) {
  try {
    return JSON.parse(localStorage.getItem(storeKey(uid))) || {};
  } catch (_) {
    return {};
  }
}
function save() {
  if (!state.me) return;
  try {
    localStorage.setItem(storeKey(state.me), JSON.stringify({
      contacts: [...state.contacts.keys()],
      groups: [...state.groups],
    }));
    // Every uid this browser has seen: the dashboard may watch them.
    const seen = new Set(JSON.parse(localStorage.getItem('wscluster.demo.seen') || '[]'));
    seen.add(state.me);
    for (const uid of state.contacts.keys()) seen.add(uid);
    localStorage.setItem('wscluster.demo.seen', JSON.stringify([...seen].slice(-200)));
    localStorage.setItem('wscluster.demo.lastUid', state.me);
  } catch (_) {
    // storage full or disabled: the demo works without it
  }
}

// -- helpers -------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function colorOf(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${h % 360} 55% 48%)`;
}

function avatar(name, kind, online) {
  const a = el('span', { class: `avatar${kind === 'group' ? ' group' : ''}`, style: `background:${colorOf(name)}` },
    (kind === 'group' ? '#' : name.slice(0, 1).toUpperCase()));
  if (kind === 'user') a.append(el('span', { class: `presence${online ? ' on' : ''}` }));
  return a;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const fmtTime = (ms) => timeFmt.format(new Date(ms || Date.now()));

function textOf(data) {
  if (data && typeof data === 'object' && typeof data.text === 'string') return data.text;
  if (typeof data === 'string') return data;
  return JSON.stringify(data);
}

function newCid() {
  const r = Math.random().toString(36).slice(2, 8);
  return `${state.me}.${Date.now().toString(36)}.${r}`;
}

function rememberCid(cid) {
  state.myCids.add(cid);
  state.myCidOrder.push(cid);
  if (state.myCidOrder.length > 500) state.myCids.delete(state.myCidOrder.shift());
}

function log(text, kind = '') {
  const li = el('li', { class: kind }, el('time', { text: fmtTime() }), el('span', { text }));
  ui.log.prepend(li);
  while (ui.log.children.length > 10) ui.log.lastChild.remove();
}

// -- conversations ---------------------------------------------------------------

function conv(kind, name) {
  const key = `${kind[0]}:${name}`;
  if (!state.convs.has(key)) state.convs.set(key, { key, kind, name, items: [], unread: 0 });
  return state.convs.get(key);
}

function addContact(uid, { select = false } = {}) {
  if (!uid || uid === state.me || !ID_RE.test(uid)) return;
  if (!state.contacts.has(uid)) {
    state.contacts.set(uid, { online: null });
    save();
    refreshPresence();
  }
  if (select) open(conv('user', uid));
  renderSidebar();
}

function push(c, item) {
  c.items.push(item);
  if (c.items.length > 500) c.items.shift();
  if (state.active !== c && !item.mine && !item.system) c.unread++;
  if (state.active === c) renderMessages();
  renderSidebar();
}

function open(c) {
  state.active = c;
  c.unread = 0;
  ui.title.textContent = c.kind === 'group' ? `# ${c.name}` : c.kind === 'user' ? c.name : 'Announcements';
  ui.leave.hidden = c.kind !== 'group';
  const writable = c.kind !== 'broadcast';
  ui.text.disabled = !writable;
  ui.send.disabled = !writable;
  ui.text.placeholder = c.kind === 'group' ? `Message #${c.name}…` : c.kind === 'user' ? `Message ${c.name}…` : 'Announcements are read-only';
  updateSub();
  renderSidebar();
  renderMessages();
  if (c.kind === 'group') refreshMembers(c.name);
  if (writable) ui.text.focus();
}

function updateSub() {
  const c = state.active;
  if (!c) return;
  if (c.kind === 'user') {
    const online = state.contacts.get(c.name)?.online;
    ui.sub.textContent = online === true ? 'online' : online === false ? 'offline — messages to an offline uid are not delivered live' : '';
  } else if (c.kind === 'group') {
    ui.sub.textContent = c.members ? `${c.members.length} member${c.members.length === 1 ? '' : 's'}: ${c.members.join(', ')}` : '';
  } else {
    ui.sub.textContent = 'broadcasts and messages sent through the HTTP API';
  }
}

// -- rendering -------------------------------------------------------------------

function renderSidebar() {
  ui.contacts.replaceChildren();
  const uids = [...state.contacts.keys()].sort((a, b) => {
    const oa = state.contacts.get(a).online ? 0 : 1;
    const ob = state.contacts.get(b).online ? 0 : 1;
    return oa - ob || a.localeCompare(b);
  });
  for (const uid of uids) {
    const info = state.contacts.get(uid);
    const c = state.convs.get(`u:${uid}`);
    const stateText = info.online === true ? 'online' : info.online === false ? 'offline' : '…';
    ui.contacts.append(el('li', {
      class: state.active && state.active.key === `u:${uid}` ? 'active' : '',
      dataset: { uid, online: String(info.online === true) },
      title: `Chat with ${uid}`,
      onclick: () => open(conv('user', uid)),
    }, avatar(uid, 'user', info.online), el('span', { class: 'name', text: uid }),
    c && c.unread ? el('span', { class: 'badge', text: String(c.unread) }) : el('span', { class: 'state', text: stateText })));
  }
  if (!uids.length) ui.contacts.append(el('li', { class: 'empty-row', text: 'Nobody yet: add a uid above.' }));

  ui.groups.replaceChildren();
  for (const g of [...state.groups].sort()) {
    const c = state.convs.get(`g:${g}`);
    ui.groups.append(el('li', {
      class: state.active && state.active.key === `g:${g}` ? 'active' : '',
      dataset: { group: g },
      onclick: () => open(conv('group', g)),
    }, avatar(g, 'group'), el('span', { class: 'name', text: g }),
    c && c.unread ? el('span', { class: 'badge', text: String(c.unread) }) : null));
  }
  const b = state.convs.get('b:*');
  if (b) {
    ui.groups.append(el('li', {
      class: state.active === b ? 'active' : '', dataset: { broadcast: '1' }, onclick: () => open(b),
    }, avatar('*', 'group'), el('span', { class: 'name', text: 'Announcements' }),
    b.unread ? el('span', { class: 'badge', text: String(b.unread) }) : null));
  }
  if (!state.groups.size && !b) ui.groups.append(el('li', { class: 'empty-row', text: 'No groups: join one above.' }));
}

function renderMessages() {
  const c = state.active;
  ui.messages.replaceChildren();
  if (!c) return;
  if (!c.items.length) {
    ui.messages.append(el('div', { class: 'empty', text: c.kind === 'group'
      ? `You are in #${c.name}. Say hello to the group.`
      : `No messages with ${c.name} yet.` }));
    return;
  }
  for (const m of c.items) {
    if (m.system) {
      ui.messages.append(el('div', { class: 'msg system' }, el('div', { class: 'bubble', text: m.text })));
      continue;
    }
    const status = m.mine ? (m.status === 'sending' ? 'sending…' : m.status === 'failed' ? `not sent (${m.error})` : '✓ sent') : '';
    ui.messages.append(el('div', { class: `msg${m.mine ? ' mine' : ''}`, dataset: { from: m.from ?? '', status: m.status || '' } },
      el('div', { class: 'meta' },
        el('span', { class: 'author', text: m.mine ? 'You' : (m.from ?? 'server') }),
        el('time', { text: fmtTime(m.ts) }),
        status ? el('span', { class: 'status', text: status }) : null),
      el('div', { class: 'bubble', text: m.text })));
  }
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

function renderConn() {
  const c = state.client;
  const s = c ? c.state : 'idle';
  ui.conn.dataset.state = s;
  if (s === 'open' && c.node) ui.conn.dataset.node = c.node;
  else delete ui.conn.dataset.node;
  const text = {
    idle: 'Not connected',
    connecting: 'Connecting…',
    reconnecting: 'Reconnecting…',
    waiting_token: 'Token expired',
    closed: 'Disconnected',
  }[s] || (s === 'open' ? `Connected · node ${c.node}` : s);
  ui.connText.textContent = text;
  ui.conn.title = c && c.url ? c.url : 'WebSocket connection';
}

// -- server data ----------------------------------------------------------------

async function refreshPresence() {
  const c = state.client;
  if (!c || c.state !== 'open' || !state.contacts.size) return;
  const uids = [...state.contacts.keys()];
  try {
    const { online } = await c.presence(uids);
    let changed = false;
    for (const uid of uids) {
      const info = state.contacts.get(uid);
      if (!info) continue;
      const now = online[uid] === true;
      if (info.online !== now) {
        info.online = now;
        changed = true;
      }
    }
    if (changed) {
      renderSidebar();
      updateSub();
    }
  } catch (err) {
    if (err.code !== 'disconnected' && err.code !== 'closed') log(`presence failed: ${err.code}`, 'warn');
  }
}

async function refreshMembers(group) {
  const c = state.client;
  if (!c || c.state !== 'open' || !state.groups.has(group)) return;
  try {
    const { uids } = await c.members(group);
    const cv = conv('group', group);
    cv.members = [...uids].sort();
    for (const uid of uids) addContact(uid);
    if (state.active === cv) updateSub();
  } catch (err) {
    if (err.code !== 'disconnected' && err.code !== 'closed') log(`members of ${group} failed: ${err.code}`, 'warn');
  }
}

// -- actions ---------------------------------------------------------------------

async function sendText(text) {
  const c = state.active;
  if (!c || !state.client || c.kind === 'broadcast') return;
  const cid = newCid();
  rememberCid(cid);
  const item = { cid, from: state.me, text, ts: Date.now(), mine: true, status: 'sending' };
  push(c, item);
  const data = { text, cid };
  try {
    if (c.kind === 'user') await state.client.send(c.name, data);
    else await state.client.publish(c.name, data);
    item.status = 'sent';
  } catch (err) {
    item.status = 'failed';
    item.error = err.code || err.message;
    log(`message not sent: ${item.error}`, 'bad');
  }
  if (state.active === c) renderMessages();
}

async function joinGroup(group) {
  if (!ID_RE.test(group)) {
    log(`"${group}" is not a valid group name`, 'warn');
    return;
  }
  state.groups.add(group);
  const c = conv('group', group);
  open(c);
  try {
    await state.client.join(group);
    push(c, { system: true, text: `You joined #${group}` });
    save();
    refreshMembers(group);
  } catch (err) {
    state.groups.delete(group);
    push(c, { system: true, text: `Could not join #${group}: ${err.code}` });
    renderSidebar();
  }
}

async function leaveGroup(group) {
  state.groups.delete(group);
  save();
  const c = conv('group', group);
  push(c, { system: true, text: `You left #${group}` });
  renderSidebar();
  try {
    await state.client.leave(group);
  } catch (err) {
    log(`leave ${group} failed: ${err.code}`, 'warn');
  }
  if (state.active === c) {
    state.active = null;
    ui.title.textContent = 'No conversation open';
    ui.sub.textContent = '';
    ui.leave.hidden = true;
    ui.text.disabled = ui.send.disabled = true;
    ui.messages.replaceChildren(el('div', { class: 'empty', text: `You left #${group}.` }));
  }
}

// -- the client -----------------------------------------------------------------

let lastNode = null;
function wire(client) {
  client.on('state', renderConn);
  client.on('welcome', (w) => {
    lastNode = w.node;
    renderConn();
    log(`${w.reconnected ? 'Reconnected' : 'Connected'} to node ${w.node}`, 'good');
    refreshPresence();
    if (state.active && state.active.kind === 'group') refreshMembers(state.active.name);
  });
  client.on('rejoin', ({ groups, failed }) => {
    if (groups.length) log(`Re-joined ${groups.map((g) => '#' + g).join(', ')}`);
    for (const f of failed) {
      log(`Could not re-join #${f.group}: ${f.error.code}`, 'bad');
      if (!client.groups.includes(f.group)) state.groups.delete(f.group);
    }
    renderSidebar();
  });
  client.on('close', (ev) => {
    renderConn();
    const where = lastNode ? ` to node ${lastNode}` : '';
    if (ev.code === 4001) log('Disconnected by the server (API); click the status to reconnect', 'bad');
    else if (ev.code === 4003) log('Session expired (token)', 'bad');
    else log(`Connection${where} lost (code ${ev.code})`, 'warn');
  });
  client.on('reconnecting', (ev) => {
    log(`Trying ${ev.url.replace(/^wss?:\/\//, '').replace(/\/ws$/, '')} in ${ev.delayMs} ms`, 'warn');
  });
  client.on('bye', (b) => log(`Node is shutting down; moving in ${b.reconnect_after_ms ?? 0} ms`, 'warn'));
  client.on('token_expired', () => log('Token expired: sign in again', 'bad'));
  client.on('error', (err) => {
    if (err && err.code) log(`Server error: ${err.code}${err.message && err.message !== err.code ? ` (${err.message})` : ''}`, 'bad');
  });
  client.on('message', (m) => {
    const cid = m.data && m.data.cid;
    if (cid && state.myCids.has(cid)) return; // echo of my own message
    if (m.from === null || m.from === undefined) {
      // Sent through the HTTP API: shown with the broadcasts, as an announcement.
      push(conv('broadcast', '*'), { from: null, text: textOf(m.data), ts: m.ts, mine: false });
      return;
    }
    addContact(m.from);
    push(conv('user', m.from), { from: m.from, text: textOf(m.data), ts: m.ts, mine: m.from === state.me });
    if (m.from && state.contacts.get(m.from)?.online !== true) refreshPresence();
  });
  client.on('group', (g) => {
    const cid = g.data && g.data.cid;
    if (cid && state.myCids.has(cid)) return;
    if (g.from) addContact(g.from);
    push(conv('group', g.group), { from: g.from, text: textOf(g.data), ts: g.ts, mine: g.from === state.me });
  });
  client.on('broadcast', (b) => {
    push(conv('broadcast', '*'), { from: b.from, text: textOf(b.data), ts: b.ts, mine: false });
  });
}

async function signIn(uid, urls) {
  state.me = uid;
  const saved = loadSaved(uid);
  state.contacts = new Map((saved.contacts || []).filter((u) => u !== uid).map((u) => [u, { online: null }]));
  state.groups = new Set(saved.groups || []);
  state.convs = new Map();
  state.active = null;
  const client = new WsClusterClient({ urls, uid, groups: [...state.groups], pingIntervalMs: 15000, pongTimeoutMs: 5000 });
  state.client = client;
  window.wsc = client; // handy from the developer console
  wire(client);
  renderConn();
  ui.connectBtn.disabled = true;
  ui.connectBtn.textContent = 'Connecting…';
  ui.loginError.hidden = true;
  const slow = setTimeout(() => {
    ui.loginError.textContent = `Still trying to reach ${urls.join(', ')} …`;
    ui.loginError.hidden = false;
  }, 4000);
  try {
    await client.connect();
  } catch (err) {
    ui.loginError.textContent = `Could not connect: ${err.code || err.message}`;
    ui.loginError.hidden = false;
    return;
  } finally {
    clearTimeout(slow);
    ui.connectBtn.disabled = false;
    ui.connectBtn.textContent = 'Connect';
  }
  ui.login.hidden = true;
  ui.chat.hidden = false;
  ui.me.hidden = false;
  ui.meUid.textContent = uid;
  document.title = `${uid} · wscluster chat`;
  save();
  renderSidebar();
  renderMessages();
  state.timers.push(setInterval(refreshPresence, 3000));
  state.timers.push(setInterval(() => {
    if (state.active && state.active.kind === 'group') refreshMembers(state.active.name);
  }, 5000));
}

function signOut() {
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
  if (state.client) state.client.close();
  state.client = null;
  state.me = null;
  ui.chat.hidden = true;
  ui.me.hidden = true;
  ui.login.hidden = false;
  renderConn();
  ui.uid.focus();
}

// -- DOM events --------------------------------------------------------------------

ui.loginForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const uid = ui.uid.value.trim();
  if (!ID_RE.test(uid)) {
    ui.loginError.textContent = 'A uid is 1 to 64 letters, digits or . _ - @';
    ui.loginError.hidden = false;
    return;
  }
  const urls = ui.urls.value.split(/\s+/).map((s) => s.trim()).filter(Boolean);
  signIn(uid, urls);
});
ui.logout.addEventListener('click', signOut);
ui.conn.addEventListener('click', () => {
  if (state.client && state.client.state === 'closed') state.client.connect().catch(() => {});
});
ui.addContact.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const uid = ui.contactInput.value.trim();
  if (!ID_RE.test(uid)) return;
  ui.contactInput.value = '';
  if (uid === state.me) return;
  addContact(uid, { select: true });
});
ui.joinForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const g = ui.groupInput.value.trim().replace(/^#/, '');
  if (!g) return;
  ui.groupInput.value = '';
  joinGroup(g);
});
ui.leave.addEventListener('click', () => {
  if (state.active && state.active.kind === 'group') leaveGroup(state.active.name);
});
ui.composer.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = ui.text.value.trim();
  if (!text) return;
  ui.text.value = '';
  sendText(text);
});

// -- start -------------------------------------------------------------------------

(async () => {
  const urls = await defaultUrls();
  ui.urls.value = urls.join('\n');
  const uid = params.get('uid') || (() => {
    try { return localStorage.getItem('wscluster.demo.lastUid') || ''; } catch (_) { return ''; }
  })();
  ui.uid.value = uid;
  document.body.dataset.ready = '1';
  if (params.get('connect') === '1' && ID_RE.test(uid)) signIn(uid, urls);
})();
