// GET /metrics: parses as the Prometheus text format (the parser the dashboard uses), and
// the counters the dashboard reads move as clients send.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { WsClusterClient } from '../../clients/js/wscluster.js';
import { parsePrometheus, sum, PromParseError } from '../../web/assets/prom.js';
import { Node, waitFor } from '../../clients/js/test/harness.js';

let node;
const clients = [];

async function scrape() {
  const res = await fetch(`${node.http}/metrics`, { signal: AbortSignal.timeout(3000) });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') || '', /^text\/plain/);
  return parsePrometheus(await res.text());
}

before(async () => { node = await Node.start({ name: 'metrics' }); });
after(async () => {
  for (const c of clients) c.close();
  if (node) await node.stop();
});

test('the parser rejects what Prometheus rejects', () => {
  assert.throws(() => parsePrometheus('a{b="c} 1\n'), PromParseError);
  assert.throws(() => parsePrometheus('a 1x\n'), PromParseError);
  assert.throws(() => parsePrometheus('a 1\na 2\n'), PromParseError);
  assert.throws(() => parsePrometheus('# TYPE a counter\n# TYPE a gauge\n'), PromParseError);
  assert.throws(() => parsePrometheus('# TYPE a countr\n'), PromParseError);
  const ok = parsePrometheus('# HELP a_total x\n# TYPE a_total counter\na_total{k="v\\"q"} 3 1700000000000\nb NaN\nc +Inf\n');
  assert.deepEqual(ok.samples[0].labels, { k: 'v"q' });
  assert.equal(sum(ok.samples, 'a_total'), 3);
});

test('/metrics parses and its counters move as clients send', async (t) => {
  const before = await scrape();
  for (const name of ['wscluster_frames_in_total', 'wscluster_deliveries_local_total']) {
    assert.equal(before.types.get(name), 'counter', `${name} is a counter`);
  }
  assert.equal(before.types.get('wscluster_connections'), 'gauge');
  const expected = ['connections', 'handshakes_total', 'frames_in_total', 'frames_out_total',
    'deliveries_local_total', 'deliveries_remote_total', 'errors_total', 'queue_overflows_total',
    'redis_rtt_seconds', 'heartbeat_age_seconds'];
  const missing = expected.filter((n) => !before.types.has(`wscluster_${n}`));
  t.diagnostic(`families: ${[...before.types.keys()].join(', ')}`);
  if (missing.length) t.diagnostic(`not (yet) exported: ${missing.map((n) => 'wscluster_' + n).join(', ')}`);

  const mk = async (uid) => {
    const c = new WsClusterClient({ WebSocket, urls: [node.ws], uid, pingIntervalMs: 0 });
    clients.push(c);
    await c.connect();
    return c;
  };
  const a = await mk('m-alice');
  const b = await mk('m-bob');
  const got = [];
  b.on('message', (m) => got.push(m));
  const N = 20;
  await Promise.all(Array.from({ length: N }, (_, i) => a.send('m-bob', i)));
  await a.publish('nowhere', 1).catch(() => {}); // not_member
  await waitFor(() => got.length === N, 5000, 'messages delivered');

  const after = await waitFor(async () => {
    const m = await scrape();
    return sum(m.samples, 'wscluster_deliveries_local_total') >= sum(before.samples, 'wscluster_deliveries_local_total') + N ? m : null;
  }, 5000, 'deliveries counter');
  const delta = (name, where) => sum(after.samples, name, where) - (sum(before.samples, name, where) ?? 0);
  assert.ok(delta('wscluster_frames_in_total') >= N + 1, 'frames in counted');
  assert.ok(delta('wscluster_deliveries_local_total') >= N, 'deliveries counted');
  assert.ok(delta('wscluster_frames_out_total') >= 2 * N, 'acks and messages written');
  assert.ok(delta('wscluster_handshakes_total', { result: 'accepted' }) >= 2, 'handshakes counted');
  assert.equal(delta('wscluster_errors_total', { code: 'not_member' }), 1, 'error by code');
  assert.ok(sum(after.samples, 'wscluster_connections') >= 2, 'open connections');
});
