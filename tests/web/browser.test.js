// Browser end-to-end test: two wscluster nodes in cluster mode (Redis), the demo chat in
// two pages (alice on node 1, bob on node 2), the dashboard, and a kill -9 of node 2.
//
//   tests/web/run.sh            # installs chromium if missing, npm ci, runs this
//
// Env: WSC_BINARY (node binary, default <repo>/build/wscluster), WSC_CHROMIUM (default
// /usr/bin/chromium), WSC_WEB_ARTIFACTS (screenshots, default <repo>/build/web-artifacts).
// Every wait is bounded; only 127.0.0.1 is used; processes are stopped by their pid.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { Node, RedisServer, REPO_ROOT, waitFor, httpJson } from '../../clients/js/test/harness.js';

const ARTIFACTS = process.env.WSC_WEB_ARTIFACTS || join(REPO_ROOT, 'build', 'web-artifacts');
const CHROMIUM = process.env.WSC_CHROMIUM || '/usr/bin/chromium';
const VIEWPORT = { width: 1280, height: 800 };
const STEP_MS = 15000; // bound of every single UI wait
// Chromium hangs on a closed network without the background-networking flags.
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

let redis;
let n1;
let n2;
let browser;
let profileDir;
const pageErrors = [];

function clusterArgs(id) {
  return ['--state=redis', `--redis=${redis.url}`, `--node-id=${id}`, '--heartbeat=500ms', '--node-timeout=2s'];
}

async function launch() {
  profileDir = mkdtempSync(join(tmpdir(), 'wsc-chromium-'));
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // playwright-core gives every context a fresh profile; the launch dir is ours too.
    args: [...CHROMIUM_ARGS, `--disk-cache-dir=${join(profileDir, 'cache')}`],
    env: { ...process.env, HOME: profileDir },
    timeout: 60000,
  });
}

async function newPage(name) {
  const context = await browser.newContext({ viewport: VIEWPORT, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.on('pageerror', (err) => pageErrors.push(`${name}: ${err.message}`));
  return page;
}

async function shot(page, file) {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, file) });
}

/** Signs in on the demo page and waits for the connection to the given node. */
async function signIn(page, node, uid, expectNode, loginShot) {
  await page.goto(`${node.http}/`);
  await page.waitForSelector('body[data-ready="1"]');
  await page.fill('#uid', uid);
  if (loginShot) await shot(page, loginShot);
  await page.click('#connect');
  await page.waitForSelector(`#conn[data-state="open"][data-node="${expectNode}"]`);
  await page.waitForSelector('#chat:not([hidden])');
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
  // The message shows as mine, and the ack turns it to "sent".
  await page.waitForSelector(`.msg.mine[data-status="sent"] >> text=${JSON.stringify(text)}`);
}

async function expectMessage(page, from, text) {
  await page.waitForSelector(`.msg[data-from="${from}"] .bubble >> text=${JSON.stringify(text)}`);
}

async function openContact(page, uid) {
  await page.click(`#contacts li[data-uid="${uid}"]`);
  await page.waitForSelector(`#conv-title >> text=${uid}`);
}

async function joinGroup(page, group) {
  await page.fill('#group-input', group);
  await page.press('#group-input', 'Enter');
  await page.waitForSelector(`#groups li[data-group="${group}"]`);
  await page.waitForSelector(`.msg.system >> text="You joined #${group}"`);
}

before(async () => {
  redis = await RedisServer.start();
  n1 = await Node.start({ name: 'n1', args: clusterArgs('n1') });
  n2 = await Node.start({ name: 'n2', args: clusterArgs('n2') });
  // Both nodes see each other before any page loads (the pages build their URL lists from it).
  for (const n of [n1, n2]) {
    await waitFor(async () => {
      const { body } = await httpJson(`${n.http}/api/nodes`);
      return Array.isArray(body) && body.length === 2;
    }, 10000, `${n.name} lists both nodes in /api/nodes`);
  }
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  for (const n of [n1, n2]) if (n) await n.stop();
  if (redis) await redis.stop();
  if (profileDir) rmSync(profileDir, { recursive: true, force: true });
  if (pageErrors.length) console.error('page errors:\n' + pageErrors.join('\n'));
});

test('two pages on two nodes chat 1:1 and in a group; the dashboard follows a kill -9', async (t) => {
  const failures = (n) => `\n--- ${n.name} log ---\n${n.tail(20)}`;
  t.after(() => { if (pageErrors.length) console.error(failures(n1) + failures(n2)); });

  const dash = await newPage('dashboard');
  // watch=: users online come from presence of these uids while the node has no /api/stats.
  await dash.goto(`${n1.http}/dashboard?watch=alice,bob`);

  const alice = await newPage('alice');
  await signIn(alice, n1, 'alice', 'n1', 'demo-login.png');
  const aliceUrls = (await alice.inputValue('#urls')).split('\n');
  assert.deepEqual(aliceUrls, [n1.ws, n2.ws], 'the page lists its own node first, then the others');

  const bob = await newPage('bob');
  await signIn(bob, n2, 'bob', 'n2');
  assert.deepEqual((await bob.inputValue('#urls')).split('\n'), [n2.ws, n1.ws]);

  // -- 1:1 across nodes -------------------------------------------------------------
  await alice.fill('#contact-input', 'bob');
  await alice.press('#contact-input', 'Enter');
  await alice.waitForSelector('#contacts li[data-uid="bob"][data-online="true"]');
  await say(alice, 'Hi Bob, this is Alice on node 1');
  await bob.waitForSelector('#contacts li[data-uid="alice"]');
  await openContact(bob, 'alice');
  await expectMessage(bob, 'alice', 'Hi Bob, this is Alice on node 1');
  await say(bob, 'Hello Alice! Bob here, on node 2');
  await expectMessage(alice, 'bob', 'Hello Alice! Bob here, on node 2');

  // -- group across nodes -------------------------------------------------------------
  await joinGroup(alice, 'team');
  await joinGroup(bob, 'team');
  await alice.waitForSelector('#conv-sub >> text=/2 members: alice, bob/', { timeout: STEP_MS });
  await say(alice, 'Welcome to #team, everyone');
  await expectMessage(bob, 'alice', 'Welcome to #team, everyone');
  await say(bob, 'Thanks! Glad to be here');
  await expectMessage(alice, 'bob', 'Thanks! Glad to be here');

  // -- dashboard: both nodes, one connection each ----------------------------------------
  for (const id of ['n1', 'n2']) {
    await dash.waitForSelector(`#nodes tr[data-node="${id}"][data-state="up"]`);
    await dash.waitForFunction((nodeId) => {
      const cell = document.querySelector(`#nodes tr[data-node="${nodeId}"] .conns`);
      return cell && cell.textContent === '1';
    }, id, { timeout: STEP_MS });
  }
  await dash.waitForFunction(() => document.getElementById('stat-conns').textContent === '2', null, { timeout: STEP_MS });
  await dash.waitForFunction(() => document.getElementById('stat-nodes').textContent === '2', null, { timeout: STEP_MS });
  await dash.waitForFunction(() => document.getElementById('stat-users').textContent === '2', null, { timeout: STEP_MS });
  // Messages per second come from this node's /metrics at least.
  await dash.waitForFunction(() => /\d/.test(document.getElementById('stat-in').textContent), null, { timeout: STEP_MS });

  await shot(alice, 'demo-alice.png');
  await shot(bob, 'demo-bob.png');
  await shot(dash, 'dashboard.png');

  // -- kill -9 of node 2: bob moves to node 1 -----------------------------------------
  const t0 = Date.now();
  await n2.kill();
  await bob.waitForSelector('#conn[data-state="open"][data-node="n1"]', { timeout: 10000 });
  const failoverMs = Date.now() - t0;
  t.diagnostic(`bob reconnected to n1 ${failoverMs} ms after the kill`);
  assert.ok(failoverMs < 10000);
  // Re-joined: bob's group message is acked (publish needs membership) and alice gets it.
  await bob.waitForSelector('#log >> text=/Re-joined #team/');
  await say(bob, 'Still here after node 2 died');
  await expectMessage(alice, 'bob', 'Still here after node 2 died');
  await say(alice, 'Good to see you back, Bob');
  await expectMessage(bob, 'alice', 'Good to see you back, Bob');
  // And 1:1 keeps working.
  await openContact(bob, 'alice');
  await say(bob, 'Direct message after the failover');
  await openContact(alice, 'bob');
  await expectMessage(alice, 'bob', 'Direct message after the failover');

  // -- dashboard: node 2 gone, SHUTDOWN event from the server --------------------------------
  await dash.waitForSelector('#nodes tr[data-node="n2"][data-state="down"]', { timeout: 15000 });
  await dash.waitForSelector('#nodes tr[data-node="n1"][data-state="up"]');
  await dash.waitForFunction(() => document.getElementById('stat-nodes').textContent === '1', null, { timeout: STEP_MS });
  await dash.waitForFunction(() => {
    const cell = document.querySelector('#nodes tr[data-node="n1"] .conns');
    return cell && cell.textContent === '2';
  }, null, { timeout: STEP_MS });
  const events = await httpJson(`${n1.http}/api/events`);
  t.diagnostic(`GET /api/events on n1: ${events.status} ${JSON.stringify(events.body)}`);
  await dash.waitForSelector('#events li[data-event="SHUTDOWN"][data-node="n2"][data-source="server"]', { timeout: 15000 });

  await shot(dash, 'dashboard-after-kill.png');
  await shot(bob, 'demo-bob-after-failover.png');
  await shot(alice, 'demo-alice-after-failover.png');

  assert.deepEqual(pageErrors, [], 'no uncaught errors in the pages');
});
