// wscluster.js - a dependency-free WebSocket client for wscluster nodes.
//
// Works in browsers (global WebSocket) and in Node >= 20 (pass the `ws`
// package's constructor as the `WebSocket` option where there is no global one).
//
//   import { WsClusterClient } from './wscluster.js';
//   const c = new WsClusterClient({ urls: ['ws://127.0.0.1:8080/ws'], uid: 'alice' });
//   c.on('message', (m) => console.log(m.from, m.data));
//   await c.connect();
//   await c.send('bob', { text: 'hi' });
//
// Protocol: see CONTRACT.md section 2. Every request carries a numeric "id"; the
// promise it returns settles on the answer with the same id: `ack` (or the typed
// answer `presence` / `members` / `pong`) resolves it, `error` rejects it with a
// WsClusterError whose `code` is the server's error code, and the client rejects
// it itself with code `timeout` (no answer in time), `disconnected` (the socket
// closed before the answer came) or `closed` (the client was closed).

/** Close codes with a meaning in the wscluster contract. */
export const CloseCodes = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001, // node stopping: reconnect, to any node
  INVALID_UTF8: 1007,
  POLICY: 1008, // rate limit, slow reader: reconnect with backoff
  TOO_LARGE: 1009,
  INTERNAL: 1011,
  DISCONNECTED_BY_API: 4001, // do not reconnect automatically
  TOKEN_EXPIRED: 4003, // reconnect with a fresh token
  PING_TIMEOUT: 4000, // used by this client when a pong does not come
});

/** Error of a request: `code` is the server's error code or one of the client's. */
export class WsClusterError extends Error {
  constructor(code, message, frame) {
    super(message || code);
    this.name = 'WsClusterError';
    this.code = code;
    if (frame !== undefined) this.frame = frame;
  }
}

const DEFAULTS = {
  requestTimeoutMs: 10000,
  connectTimeoutMs: 5000,
  pingIntervalMs: 20000,
  pongTimeoutMs: 10000,
  reconnect: true,
  initialDelayMs: 250,
  maxDelayMs: 10000,
  backoffFactor: 2,
  maxByeDelayMs: 60000,
  maxQueued: 1000,
  autoRead: false,
};

// Frame types whose answer is a typed frame rather than an ack.
const ANSWER_TYPES = new Set(['ack', 'pong', 'presence', 'members']);
// Frame types forwarded as events of the same name.
const EVENT_TYPES = new Set(['message', 'group', 'broadcast']);

function wsToHttp(url) {
  return url.replace(/^ws(s?):/i, 'http$1:');
}

/** Adds the optional addressing fields of send/publish/broadcast to a frame. */
function addressing(frame, options) {
  if (!options) return frame;
  if (options.except !== undefined) frame.except = options.except;
  if (options.exceptSelf) frame.except_self = true;
  if (options.idem !== undefined) frame.idem = options.idem;
  return frame;
}

export class WsClusterClient {
  /**
   * @param {object} options see wscluster.d.ts (WsClusterOptions)
   */
  constructor(options = {}) {
    const urls = typeof options.urls === 'string' ? [options.urls] : options.urls;
    if (!Array.isArray(urls) || urls.length === 0) {
      throw new TypeError('WsClusterClient: options.urls must be a non-empty list of ws:// URLs');
    }
    this.urls = urls.slice();
    this.options = { ...DEFAULTS, ...options };
    this.WebSocketImpl = options.WebSocket || globalThis.WebSocket;
    if (typeof this.WebSocketImpl !== 'function') {
      throw new TypeError(
        'WsClusterClient: no WebSocket constructor: pass options.WebSocket (e.g. the "ws" package in Node 20)');
    }
    this.token = options.token;
    this.requestedUid = options.uid;
    this.device = options.device;
    this.lastSeq = typeof options.since === 'number' ? options.since : undefined;

    /** uid, conn id and node id of the current session (from `welcome`). */
    this.uid = undefined;
    this.conn = undefined;
    this.node = undefined;
    /** The URL of the current (or last) connection. */
    this.url = undefined;
    /** 'idle' | 'connecting' | 'open' | 'reconnecting' | 'waiting_token' | 'closed' */
    this.state = 'idle';

    this._groups = new Set(options.groups || []);
    this._listeners = new Map();
    this._pending = new Map(); // id -> {resolve, reject, timer, frame, sent}
    this._queue = []; // ids of requests waiting for the next session
    this._nextId = 1;
    this._ws = null;
    this._urlIndex = -1;
    this._attempt = 0;
    this._reconnectTimer = null;
    this._connectTimer = null;
    this._pingTimer = null;
    this._pongTimer = null;
    this._byeHint = null;
    this._closedByUser = false;
    this._connectWaiters = [];
    this._seenMsgIds = new Set();
    this._seenOrder = [];
    this._readTimer = null;
  }

  // -- events ------------------------------------------------------------------

  /** Subscribe to an event; returns a function that unsubscribes. */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    const set = this._listeners.get(event);
    if (set) set.delete(fn);
  }

  once(event, fn) {
    const off = this.on(event, (...args) => {
      off();
      fn(...args);
    });
    return off;
  }

  _emit(event, ...args) {
    const set = this._listeners.get(event);
    if (!set || set.size === 0) return false;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        // A listener's bug must not break the client.
        if (event !== 'error') this._emit('error', err);
        else if (typeof console !== 'undefined') console.error(err);
      }
    }
    return true;
  }

  // -- connection --------------------------------------------------------------

  /**
   * Connects (to the first URL of the list) and resolves with the `welcome`
   * frame. Keeps the connection up afterwards (see reconnect options).
   */
  connect() {
    if (this.state === 'open') return Promise.resolve(this._welcome);
    const p = new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
    if (this.state === 'idle' || this.state === 'closed') {
      this._closedByUser = false;
      this._attempt = 0;
      this._open(0);
    }
    return p;
  }

  /** Closes the connection and stops reconnecting; pending requests reject with `closed`. */
  close(code = 1000, reason = 'client closed') {
    this._closedByUser = true;
    this._clearTimers();
    const ws = this._ws;
    this._detach();
    if (ws) {
      try {
        ws.close(code, reason);
      } catch (_) {
        try { ws.close(); } catch (_) { /* already closed */ }
      }
    }
    const was = this.state;
    this._setState('closed');
    this._rejectAll('closed', 'client closed');
    this._settleConnectWaiters(new WsClusterError('closed', 'client closed'));
    if (was === 'open') this._emit('close', { code, reason, willReconnect: false, url: this.url });
  }

  /** Replaces the token (e.g. after `token_expired`) and reconnects if waiting for it. */
  setToken(token) {
    this.token = token;
    if (this.state === 'waiting_token') {
      this._attempt = 0;
      this._scheduleReconnect(0, true);
    }
  }

  /** Groups this client is a member of (re-joined after every reconnect). */
  get groups() {
    return [...this._groups];
  }

  _buildUrl(base) {
    const params = [];
    if (this.token !== undefined && this.token !== null) params.push(['token', this.token]);
    else if (this.requestedUid !== undefined && this.requestedUid !== null) params.push(['uid', this.requestedUid]);
    if (this.device !== undefined && this.device !== null) {
      params.push(['device', this.device]);
      if (this.lastSeq !== undefined) params.push(['since', String(this.lastSeq)]);
    }
    if (params.length === 0) return base;
    const qs = params.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
    return base + (base.includes('?') ? '&' : '?') + qs;
  }

  _open(index) {
    this._clearTimers();
    this._urlIndex = ((index % this.urls.length) + this.urls.length) % this.urls.length;
    const base = this.urls[this._urlIndex];
    this.url = base;
    this._byeHint = null;
    this._setState(this._everOpened ? 'reconnecting' : 'connecting');
    let ws;
    try {
      ws = new this.WebSocketImpl(this._buildUrl(base));
    } catch (err) {
      this._emit('error', err);
      this._onSocketGone(ws, { code: 1006, reason: String(err && err.message) });
      return;
    }
    this._ws = ws;
    this._gotWelcome = false;
    // No welcome in time: give up on this URL, try the next.
    this._connectTimer = setTimeout(() => {
      if (this._ws !== ws || this._gotWelcome) return;
      this._abandon(ws, 4000, 'connect timeout');
    }, this.options.connectTimeoutMs);

    ws.onopen = () => {
      if (this._ws !== ws) return;
      this._emit('open', { url: base });
    };
    ws.onmessage = (ev) => {
      if (this._ws !== ws) return;
      this._onData(ev.data);
    };
    ws.onerror = (ev) => {
      if (this._ws !== ws) return;
      const err = ev && ev.error ? ev.error : new Error(`WebSocket error on ${base}`);
      this._emit('error', err);
    };
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._onSocketGone(ws, { code: ev.code, reason: ev.reason });
    };
  }

  // Drops a socket without waiting for its close event (a dead peer may never send one).
  _abandon(ws, code, reason) {
    try { ws.close(code, reason); } catch (_) { /* ignore */ }
    this._onSocketGone(ws, { code, reason });
  }

  _detach() {
    const ws = this._ws;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    // Node's `ws` is an EventEmitter: an 'error' emitted after we let go (e.g. a close
    // while still connecting) must find a listener or it would crash the process.
    if (typeof ws.on === 'function') ws.on('error', () => {});
    this._ws = null;
  }

  _onSocketGone(ws, { code, reason }) {
    if (ws && this._ws !== ws) return;
    this._detach();
    this._clearTimers();
    const wasOpen = this.state === 'open';
    // Requests sent on this socket lost their answer: reject them. Requests not
    // yet sent stay queued for the next session.
    for (const [id, p] of this._pending) {
      if (p.sent) this._settle(id, new WsClusterError('disconnected', `connection closed (${code}) before an answer`));
    }
    if (this._closedByUser) return;

    let willReconnect = this.options.reconnect !== false;
    let delay;
    if (code === CloseCodes.DISCONNECTED_BY_API) {
      willReconnect = false;
    } else if (code === CloseCodes.TOKEN_EXPIRED) {
      willReconnect = false;
    } else if (this._byeHint !== null || code === CloseCodes.GOING_AWAY) {
      // Honour the server's spread (bye.reconnect_after_ms); a bare 1001 gets 0..1 s.
      const hinted = this._byeHint !== null ? this._byeHint : Math.random() * 1000;
      delay = Math.min(Math.max(0, hinted), this.options.maxByeDelayMs);
      this._attempt = 0;
    }
    this._byeHint = null;

    const info = { code, reason: reason || '', willReconnect, url: this.url, wasOpen };
    if (code === CloseCodes.TOKEN_EXPIRED) {
      this._setState('waiting_token');
      this._emit('close', info);
      this._emit('token_expired', { code, reason });
      this._refreshToken();
      return;
    }
    if (!willReconnect) {
      this._setState('closed');
      this._emit('close', info);
      this._rejectAll(code === CloseCodes.DISCONNECTED_BY_API ? 'disconnected' : 'closed',
        `connection closed (${code}) and not reconnecting`);
      this._settleConnectWaiters(new WsClusterError('closed', `connection closed (${code})`));
      return;
    }
    if (delay === undefined) delay = this._backoffDelay();
    info.delayMs = Math.round(delay);
    // 'close' marks the end of a session; failed attempts only show as 'reconnecting'.
    if (wasOpen) this._emit('close', info);
    // Every retry moves on to the next URL of the list: after a bye/1001 that is
    // another node by design, after a failure it avoids hammering a dead node.
    this._scheduleReconnect(delay, true);
  }

  async _refreshToken() {
    const getToken = this.options.getToken;
    if (typeof getToken !== 'function') return; // waits for setToken()
    try {
      const token = await getToken();
      if (this.state === 'waiting_token' && token) this.setToken(token);
    } catch (err) {
      this._emit('error', err);
    }
  }

  // Jittered exponential backoff: the first retry after a live connection drops
  // comes fast (0..initialDelay), later ones grow by backoffFactor up to
  // maxDelayMs, each drawn at random in [d/2, d].
  _backoffDelay() {
    const o = this.options;
    const n = this._attempt++;
    if (n === 0) return Math.random() * o.initialDelayMs;
    const d = Math.min(o.maxDelayMs, o.initialDelayMs * Math.pow(o.backoffFactor, n));
    return d / 2 + Math.random() * (d / 2);
  }

  _scheduleReconnect(delay, nextUrl) {
    this._clearTimers();
    this._setState('reconnecting');
    const index = nextUrl ? this._urlIndex + 1 : this._urlIndex;
    const url = this.urls[((index % this.urls.length) + this.urls.length) % this.urls.length];
    this._emit('reconnecting', { delayMs: Math.round(delay), attempt: this._attempt, url });
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      if (this._closedByUser) return;
      this._open(index);
    }, delay);
  }

  _clearTimers() {
    for (const t of ['_reconnectTimer', '_connectTimer', '_pongTimer']) {
      if (this[t]) clearTimeout(this[t]);
      this[t] = null;
    }
    if (this._pingTimer) clearInterval(this._pingTimer);
    this._pingTimer = null;
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit('state', state);
  }

  // -- incoming frames -----------------------------------------------------------

  _onData(data) {
    if (typeof data !== 'string') {
      // The protocol uses text frames only; decode binary defensively.
      try {
        data = new TextDecoder().decode(data);
      } catch (_) {
        return;
      }
    }
    let frame;
    try {
      frame = JSON.parse(data);
    } catch (err) {
      this._emit('error', new WsClusterError('bad_json', 'server sent a frame that is not JSON'));
      return;
    }
    if (!frame || typeof frame !== 'object') return;
    this._emit('frame', frame);
    const type = frame.type;

    if (type === 'welcome') {
      this._onWelcome(frame);
      return;
    }
    if (type === 'bye') {
      if (typeof frame.reconnect_after_ms === 'number') this._byeHint = frame.reconnect_after_ms;
      else this._byeHint = Math.random() * 1000;
      this._emit('bye', frame);
      return;
    }
    if (frame.id !== undefined && frame.id !== null && this._pending.has(frame.id)) {
      if (type === 'error') {
        this._settle(frame.id, new WsClusterError(frame.code || 'error', frame.message || frame.code, frame));
        return;
      }
      if (ANSWER_TYPES.has(type) || !EVENT_TYPES.has(type)) {
        this._settle(frame.id, null, frame);
        return;
      }
    }
    if (type === 'error') {
      // An error that answers no request of ours (e.g. rate_limited without id).
      this._emit('error', new WsClusterError(frame.code || 'error', frame.message || frame.code, frame));
      return;
    }
    if (type === 'pong') return; // keepalive answer of an expired request
    if (EVENT_TYPES.has(type)) {
      if (this._isDuplicate(frame)) return;
      this._emit(type, frame);
      return;
    }
    // Frames of custom behaviour actors: only the generic 'frame' event above.
  }

  // Durable delivery: drop redeliveries (same msg_id) and remember the last seq.
  _isDuplicate(frame) {
    if (frame.msg_id !== undefined) {
      const key = String(frame.msg_id);
      if (this._seenMsgIds.has(key)) return true;
      this._seenMsgIds.add(key);
      this._seenOrder.push(key);
      if (this._seenOrder.length > 2000) this._seenMsgIds.delete(this._seenOrder.shift());
    }
    if (typeof frame.seq === 'number') {
      if (this.lastSeq === undefined || frame.seq > this.lastSeq) this.lastSeq = frame.seq;
      if (this.options.autoRead && this.device !== undefined) this._scheduleRead();
    }
    return false;
  }

  _scheduleRead() {
    if (this._readTimer) return;
    this._readTimer = setTimeout(() => {
      this._readTimer = null;
      if (this.state === 'open' && this.lastSeq !== undefined) this._write({ type: 'read', seq: this.lastSeq });
    }, 500);
  }

  _onWelcome(frame) {
    const ws = this._ws;
    this._gotWelcome = true;
    if (this._connectTimer) clearTimeout(this._connectTimer);
    this._connectTimer = null;
    this.uid = frame.uid;
    this.conn = frame.conn;
    this.node = frame.node;
    this._welcome = frame;
    const reconnected = !!this._everOpened;
    this._everOpened = true;
    this._attempt = 0;
    this._setState('open');
    this._startPing(ws);

    // Re-join every group first, then flush what was queued while offline:
    // frames on one socket are handled in order, so a queued publish comes after its join.
    const rejoins = [];
    for (const group of this._groups) {
      rejoins.push(
        this._request({ type: 'join', group }, { internal: true }).then(
          () => ({ group, ok: true }),
          (err) => ({ group, ok: false, error: err })));
    }
    const queued = this._queue;
    this._queue = [];
    for (const id of queued) {
      const p = this._pending.get(id);
      if (p && !p.sent) this._transmit(id, p);
    }
    this._emit('welcome', { ...frame, url: this.url, reconnected });
    this._settleConnectWaiters(null, frame);
    if (rejoins.length) {
      Promise.all(rejoins).then((results) => {
        const failed = results.filter((r) => !r.ok);
        for (const f of failed) {
          // not_member-style refusals drop the group; transient failures keep it for the next session.
          if (f.error && f.error.code !== 'disconnected' && f.error.code !== 'timeout' && f.error.code !== 'closed') {
            this._groups.delete(f.group);
          }
        }
        this._emit('rejoin', { groups: results.filter((r) => r.ok).map((r) => r.group), failed });
      });
    }
  }

  _settleConnectWaiters(err, frame) {
    const waiters = this._connectWaiters;
    this._connectWaiters = [];
    for (const w of waiters) err ? w.reject(err) : w.resolve(frame);
  }

  // -- keepalive ---------------------------------------------------------------

  _startPing(ws) {
    const interval = this.options.pingIntervalMs;
    if (!interval || interval <= 0) return;
    this._pingTimer = setInterval(() => {
      if (this._ws !== ws || this.state !== 'open' || this._pongTimer) return;
      const id = this._nextId++;
      this._pongTimer = setTimeout(() => {
        this._pongTimer = null;
        if (this._ws !== ws) return;
        this._pending.delete(id);
        this._emit('error', new WsClusterError('timeout', `no pong in ${this.options.pongTimeoutMs} ms: reconnecting`));
        this._abandon(ws, CloseCodes.PING_TIMEOUT, 'ping timeout');
      }, this.options.pongTimeoutMs);
      this._pending.set(id, {
        sent: true,
        internal: true,
        timer: null,
        resolve: () => {
          if (this._pongTimer) clearTimeout(this._pongTimer);
          this._pongTimer = null;
        },
        reject: () => {},
      });
      this._write({ type: 'ping', id });
    }, interval);
  }

  // -- requests ----------------------------------------------------------------

  _write(frame) {
    const ws = this._ws;
    if (!ws || this.state !== 'open') return false;
    try {
      ws.send(JSON.stringify(frame));
      return true;
    } catch (err) {
      this._emit('error', err);
      return false;
    }
  }

  _transmit(id, p) {
    p.sent = this._write({ ...p.frame, id });
    if (!p.sent) this._queue.push(id);
  }

  _settle(id, err, frame) {
    const p = this._pending.get(id);
    if (!p) return;
    this._pending.delete(id);
    if (p.timer) clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve(frame);
  }

  _rejectAll(code, message) {
    for (const id of [...this._pending.keys()]) this._settle(id, new WsClusterError(code, message));
    this._queue = [];
  }

  _request(frame, { timeoutMs, internal } = {}) {
    if (this.state === 'closed' && !internal) {
      return Promise.reject(new WsClusterError('closed', 'client is closed'));
    }
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const p = { frame, resolve, reject, sent: false, timer: null };
      const ms = timeoutMs !== undefined ? timeoutMs : this.options.requestTimeoutMs;
      p.timer = setTimeout(() => {
        this._queue = this._queue.filter((q) => q !== id);
        this._settle(id, new WsClusterError('timeout', `no answer to ${frame.type} in ${ms} ms`));
      }, ms);
      this._pending.set(id, p);
      if (this.state === 'open') {
        this._transmit(id, p);
      } else {
        if (this._queue.length >= this.options.maxQueued) {
          this._settle(id, new WsClusterError('queue_full', 'too many requests queued while offline'));
          return;
        }
        this._queue.push(id);
      }
    });
  }

  /**
   * Sends any frame (`type` required) and resolves with its answer frame
   * (ack or typed answer). For custom frame types of behaviour actors.
   */
  request(frame, options) {
    if (!frame || typeof frame.type !== 'string') {
      return Promise.reject(new TypeError('request(frame): frame.type must be a string'));
    }
    const { id: _ignored, ...rest } = frame;
    return this._request(rest, options);
  }

  /**
   * 1:1 message to a uid or a list of uids; resolves with the ack.
   * options: `except` (connection ids that get nothing), `exceptSelf` (not
   * this connection), `idem` (idempotency key: a repeat is acked, not resent).
   */
  send(to, data, options) {
    return this._request(addressing({ type: 'send', to, data }, options));
  }

  /** Message to exactly one connection (its conn id, any node); the ack's `delivered` tells. */
  sendToConn(conn, data) {
    return this._request({ type: 'send', to_conn: conn, data });
  }

  /** Message to every member of a group (the sender must be a member); options as send(). */
  publish(group, data, options) {
    return this._request(addressing({ type: 'publish', group, data }, options));
  }

  /** Message to every connection of the cluster (needs client-broadcast=true on the node); options: except, exceptSelf. */
  broadcast(data, options) {
    return this._request(addressing({ type: 'broadcast', data }, options));
  }

  /** Joins a group; it is re-joined after every reconnect until leave(). */
  join(group) {
    this._groups.add(group);
    return this._request({ type: 'join', group }).catch((err) => {
      if (err.code !== 'timeout' && err.code !== 'disconnected' && err.code !== 'closed') this._groups.delete(group);
      throw err;
    });
  }

  /** Leaves a group. */
  leave(group) {
    this._groups.delete(group);
    return this._request({ type: 'leave', group });
  }

  /** Resolves with the `presence` frame: `.online` is {"a":true,"b":false} (cluster-wide). */
  presence(uids) {
    return this._request({ type: 'presence', uids });
  }

  /** Resolves with the `members` frame: `.uids` lists the group's members. */
  members(group) {
    return this._request({ type: 'members', group });
  }

  /** Round trip to the node; resolves with the `pong` frame. */
  ping() {
    return this._request({ type: 'ping' });
  }

  /** Durable delivery: confirms that everything up to seq has been read (device connections). */
  read(seq) {
    return this._request({ type: 'read', seq });
  }

  /** The node's HTTP base URL (http://host:port) of the current connection. */
  get httpBase() {
    const u = this.url || this.urls[0];
    return wsToHttp(u).replace(/\/ws(\?.*)?$/, '');
  }
}

export default WsClusterClient;
