// Process helpers for tests that run real wscluster nodes (and redis-server).
//
// Every wait is bounded in time; only 127.0.0.1 is used; processes are stopped
// by their own pid (SIGTERM, then SIGKILL after 10 s), and any still alive at
// exit are killed by pid too.

import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, openSync, closeSync, readFileSync, existsSync, accessSync, constants, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname, isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';

export const HOST = '127.0.0.1';
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const HEALTH_TIMEOUT_MS = Number(process.env.WSC_HEALTH_TIMEOUT || 15) * 1000;
const STOP_TIMEOUT_MS = 10000;

const KEEP_LOGS = !['', '0', undefined].includes(process.env.WSC_KEEP_LOGS);
const live = new Set();
const tempDirs = new Set();
process.on('exit', () => {
  for (const child of live) {
    try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* gone */ }
  }
  // Logs and Redis dirs go away unless WSC_KEEP_LOGS=1 (a failing start prints its log tail).
  if (!KEEP_LOGS) for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

export function binaryPath() {
  let p = process.env.WSC_BINARY || 'build/wscluster';
  if (!isAbsolute(p)) p = join(REPO_ROOT, p);
  return p;
}

export function requireBinary() {
  const p = binaryPath();
  try {
    accessSync(p, constants.X_OK);
  } catch (_) {
    throw new Error(`wscluster binary not found or not executable at ${p} (build it, or set WSC_BINARY)`);
  }
  return p;
}

const givenPorts = new Set();
/** A free TCP port on 127.0.0.1 (never the same twice in one process). */
export async function freePort() {
  for (let i = 0; i < 50; i++) {
    const port = await new Promise((res, rej) => {
      const srv = createServer();
      srv.once('error', rej);
      srv.listen(0, HOST, () => {
        const { port } = srv.address();
        srv.close(() => res(port));
      });
    });
    if (!givenPorts.has(port)) {
      givenPorts.add(port);
      return port;
    }
  }
  throw new Error('no free port');
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves with p's value, or with `fallback` after ms (the timer never outlives p). */
function raceTimeout(p, ms, fallback) {
  let t;
  return Promise.race([p, new Promise((r) => { t = setTimeout(() => r(fallback), ms); })])
    .finally(() => clearTimeout(t));
}

/** Polls fn() until it returns a truthy value; throws after timeoutMs. */
export async function waitFor(fn, timeoutMs, what = 'condition', stepMs = 50) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      if (err && err.fatal) throw err;
      last = err;
    }
    await sleep(stepMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}

/** Resolves with the first event `name` of emitter-like `client` that passes `pred`, bounded in time. */
export function nextEvent(client, name, timeoutMs, pred = () => true) {
  return new Promise((res, rej) => {
    const timer = setTimeout(() => {
      off();
      rej(new Error(`timed out after ${timeoutMs} ms waiting for event '${name}'`));
    }, timeoutMs);
    const off = client.on(name, (ev) => {
      if (!pred(ev)) return;
      clearTimeout(timer);
      off();
      res(ev);
    });
  });
}

async function fetchWithTimeout(url, options = {}, timeoutMs = 2000) {
  const ctl = new AbortController();
  const t = setTimeout(() => ctl.abort(), timeoutMs);
  try {
    return await fetch(url, { ...options, signal: ctl.signal });
  } finally {
    clearTimeout(t);
  }
}

export async function httpJson(url, options = {}, timeoutMs = 3000) {
  const res = await fetchWithTimeout(url, options, timeoutMs);
  const text = await res.text();
  let body;
  try { body = JSON.parse(text); } catch (_) { body = text; }
  return { status: res.status, body };
}

function spawnLogged(cmd, args, logPath) {
  const fd = openSync(logPath, 'a');
  const child = spawn(cmd, args, { stdio: ['ignore', fd, fd], detached: false });
  closeSync(fd);
  live.add(child);
  child.exited = new Promise((res) => child.once('exit', (code, signal) => {
    live.delete(child);
    res({ code, signal });
  }));
  return child;
}

async function stopChild(child, signal = 'SIGTERM') {
  if (!child || child.exitCode !== null || child.signalCode !== null) return child && child.exited;
  try { process.kill(child.pid, signal); } catch (_) { return child.exited; }
  if ((await raceTimeout(child.exited, STOP_TIMEOUT_MS, 'timeout')) === 'timeout') {
    try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* gone */ }
    await raceTimeout(child.exited, 5000);
  }
  return child.exited;
}

/** A wscluster node on 127.0.0.1:<port>. */
export class Node {
  constructor({ port, args = [], name = 'node' } = {}) {
    this.port = port;
    this.args = args;
    this.name = name;
    this.dir = tempDir(`wsc-js-${name}-`);
    this.log = join(this.dir, `${name}.log`);
  }

  get listen() { return `${HOST}:${this.port}`; }
  get http() { return `http://${HOST}:${this.port}`; }
  get ws() { return `ws://${HOST}:${this.port}/ws`; }

  static async start(opts = {}) {
    const port = opts.port || await freePort();
    const node = new Node({ ...opts, port });
    await node.start();
    return node;
  }

  async start() {
    const bin = requireBinary();
    // A short drain keeps stop() quick unless a test asks for another.
    const drain = this.args.some((a) => a.startsWith('--drain-period=')) ? [] : ['--drain-period=300ms'];
    this.child = spawnLogged(bin, [`--listen=${this.listen}`, ...drain, ...this.args], this.log);
    this.pid = this.child.pid;
    await waitFor(async () => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw Object.assign(new Error(`node exited early: ${this.tail()}`), { fatal: true });
      }
      const res = await fetchWithTimeout(`${this.http}/healthz`, {}, 1000);
      return res.status === 200;
    }, HEALTH_TIMEOUT_MS, `${this.name} /healthz on ${this.listen}`).catch((err) => {
      this.kill();
      throw new Error(`${err.message}\n--- ${this.name} log ---\n${this.tail()}`);
    });
    return this;
  }

  alive() { return this.child && this.child.exitCode === null && this.child.signalCode === null; }

  /** SIGTERM (graceful drain), SIGKILL after 10 s. */
  stop() { return stopChild(this.child, 'SIGTERM'); }

  /** kill -9 */
  async kill() {
    if (!this.alive()) return;
    try { process.kill(this.pid, 'SIGKILL'); } catch (_) { return; }
    await raceTimeout(this.child.exited, 5000);
  }

  signal(sig) { if (this.alive()) process.kill(this.pid, sig); }

  tail(lines = 40) {
    try {
      return readFileSync(this.log, 'utf8').split('\n').slice(-lines).join('\n');
    } catch (_) {
      return '(no log)';
    }
  }
}

/** A throwaway redis-server on 127.0.0.1:<free port>, no persistence. */
export class RedisServer {
  static async start() {
    const r = new RedisServer();
    r.port = await freePort();
    r.dir = tempDir('wsc-js-redis-');
    const bin = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((p) => existsSync(p)) || 'redis-server';
    r.child = spawnLogged(bin, ['--bind', HOST, '--port', String(r.port), '--save', '', '--appendonly', 'no',
      '--dir', r.dir], join(r.dir, 'redis.log'));
    await waitFor(() => new Promise((res) => {
      if (r.child.exitCode !== null) return res(false);
      import('node:net').then(({ connect }) => {
        const s = connect(r.port, HOST);
        let buf = '';
        const done = (v) => { s.destroy(); res(v); };
        s.setTimeout(1000, () => done(false));
        s.on('error', () => done(false));
        s.on('connect', () => s.write('PING\r\n'));
        s.on('data', (d) => { buf += d; if (buf.includes('PONG')) done(true); });
      });
    }), 10000, 'redis-server PING');
    return r;
  }

  get url() { return `redis://${HOST}:${this.port}`; }

  stop() { return stopChild(this.child, 'SIGTERM'); }
}
