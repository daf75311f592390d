"""The checker of the fault suite: what every client saw, judged after a
scenario.

Keys: a message is ``(sender, conversation, counter)``; a sender that gets
no ack sends the same key again with the next ``attempt``. Per receiver,
in arrival order:

* a frame whose ``msg_id`` was seen before is a *redelivery* (a replay may
  repeat what the device received but had not confirmed): dropped by the
  msg_id de-duplication, counted for information;
* a frame without ``msg_id`` is an at-most-once copy (a send answered
  ``unavailable`` while Redis was down is still delivered to the sender
  node's own connections): counted as ``nondurable``;
* after that, a second durable copy of the same key is either a *resend copy*
  (another attempt of the sender: expected when an ack was lost; removed by
  the key de-duplication) or a **duplicate**: the same attempt stored twice
  under two msg_ids, which no client action explains;
* **lost**: acknowledged, and the receiver never got a durable copy
  (a copy with ``msg_id``) of the key;
* **reordered**: per (sender, conversation) the counters of first copies,
  in arrival order, must increase; each one below an earlier one counts;
* **unexpected**: a message no client sent to this receiver, or whose
  ``from``/``to`` do not match its data;
* **seq conflicts**: two different msg_ids with the same ``seq`` at one
  receiver (an inbox that lost data and counted again);
* **recovered**: keys whose first copy came in a replay (``seq`` at most the
  ``to`` of that connection's welcome).

Recovery per fault: a client is affected when, in the fault's window, it lost
its connection (or its connection was declared dead), or a send of it failed
(error, ack timeout). It has recovered when (1) a connection opened after its
last loss finished its replay (``seq`` contiguous up to the welcome's
``to``), (2) every send that failed or was repeated was acknowledged, and (3)
everything acknowledged to it before the fault's reference time has arrived.
A client is also affected when a message acknowledged to it in the fault's
window reached it more than ``late_after`` seconds after the ack (delivery
stalled without any connection loss, e.g. behind a partition); it has
recovered when the last such message arrived. The time is measured from the
fault's reference time.
"""

import math


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(math.ceil(p / 100.0 * len(v))) - 1))]


def node_at(c, t):
    for cn in c.conns:
        if cn.t_open is not None and cn.t_open <= t and (cn.t_close is None or cn.t_close > t):
            return cn.node
    return None


def live_matrix(fleet, first_copy, t0, t1, within=2.0):
    """Per (sender's node, receiver's node) at ack time, for messages acked in
    [t0, t1) to a connected receiver: [delivered live within `within` s, total]."""
    m = {}
    for key, (tack, to) in fleet.acked.items():
        if not t0 <= tack < t1:
            continue
        sn = node_at(fleet.clients[key[0]], tack)
        for r in to:
            rn = node_at(fleet.clients[r], tack)
            if sn is None or rn is None:
                continue
            cell = m.setdefault("%s->%s" % (sn, rn), [0, 0])
            cell[1] += 1
            fc = first_copy.get((r, key))
            if fc is not None and not fc[1] and fc[0] - tack <= within:
                cell[0] += 1
    return m


def analyse(fleet, faults, t_final, recovery_limit=10.0, steady=None, late_after=2.0):
    attempted = fleet.attempted
    acked = fleet.acked
    out = {
        "clients": len(fleet.clients),
        "attempts": sum(c.tx_count for c in fleet.clients.values()),
        "keys_sent": len(attempted),
        "acked": len(acked),
        "expected_deliveries": sum(len(to) for _, to in acked.values()),
        "lost": 0, "duplicates": 0, "reordered": 0, "unexpected": 0, "seq_conflicts": 0,
        "recovered": 0, "redelivered": 0, "resend_copies": 0, "nondurable": 0,
        "late_final_resume": 0, "too_old": 0, "cursor_ahead": 0, "gap_resyncs": 0,
        "examples": {"lost": [], "duplicates": [], "reordered": [], "unexpected": [],
                     "seq_conflicts": []},
    }
    ex = out["examples"]
    first_rx = {}  # (receiver, key) -> time of the first durable copy
    first_copy = {}  # (receiver, key) -> (time, came in a replay)
    latencies = []
    for c in fleet.clients.values():
        uid = c.uid
        seen_ids = set()
        ids_by_attempt = {}
        first = {}
        maxn = {}
        seq_ids = {}
        for rec in c.rx:
            t, seq, mid, s, cv, n, att, replay, cno, from_ok, lat = rec
            key = (s, cv, n)
            to = attempted.get(key)
            if to is None or uid not in to or not from_ok:
                out["unexpected"] += 1
                if len(ex["unexpected"]) < 10:
                    ex["unexpected"].append({"receiver": uid, "key": list(key), "seq": seq,
                                             "msg_id": mid, "from_ok": from_ok})
                continue
            is_dup = False
            if mid is None:
                out["nondurable"] += 1
            else:
                if mid in seen_ids:
                    out["redelivered"] += 1
                    continue
                seen_ids.add(mid)
                if isinstance(seq, int):
                    other = seq_ids.setdefault(seq, mid)
                    if other != mid:
                        out["seq_conflicts"] += 1
                        if len(ex["seq_conflicts"]) < 10:
                            ex["seq_conflicts"].append({"receiver": uid, "seq": seq,
                                                        "msg_ids": [other, mid]})
                same = ids_by_attempt.setdefault((key, att), set())
                if same:
                    is_dup = True
                    out["duplicates"] += 1
                    if len(ex["duplicates"]) < 10:
                        ex["duplicates"].append({"receiver": uid, "key": list(key), "attempt": att,
                                                 "msg_ids": sorted(same | {mid}), "seq": seq})
                same.add(mid)
                if (uid, key) not in first_rx:
                    first_rx[(uid, key)] = t
                    first_copy[(uid, key)] = (t, replay)
            if key in first:
                if mid is not None:
                    if first[key] is None:
                        first[key] = mid  # the durable copy after an at-most-once one
                    elif not is_dup:
                        out["resend_copies"] += 1
                continue
            first[key] = mid
            if mid is not None and lat is not None and lat >= 0 and not replay:
                latencies.append(lat)
            if replay:
                out["recovered"] += 1
            sc = (s, cv)
            if n < maxn.get(sc, 0):
                out["reordered"] += 1
                if len(ex["reordered"]) < 10:
                    ex["reordered"].append({"receiver": uid, "sender": s, "conv": cv, "n": n,
                                            "after": maxn[sc], "seq": seq, "replay": replay})
            else:
                maxn[sc] = n
        out["too_old"] += len(c.too_old)
        out["cursor_ahead"] += len(c.cursor_ahead)
        out["gap_resyncs"] += len(c.gap_resyncs)
    if t_final is not None:
        out["late_final_resume"] = sum(1 for t in first_rx.values() if t >= t_final)
    for key, (tack, to) in acked.items():
        for r in to:
            if (r, key) not in first_rx:
                out["lost"] += 1
                if len(ex["lost"]) < 10:
                    ex["lost"].append({"receiver": r, "key": list(key), "acked_at": round(tack, 3)})
    out["delivery_ms_p50"] = pct(latencies, 50)
    out["delivery_ms_p99"] = pct(latencies, 99)
    acks = [a[3] for c in fleet.clients.values() for a in c.acks]
    out["ack_ms_p50"] = None if not acks else round(1000 * pct(acks, 50), 1)
    out["ack_ms_p99"] = None if not acks else round(1000 * pct(acks, 99), 1)
    # errors by code, odd frames, client-side problems
    errs = {}
    for c in fleet.clients.values():
        for t, cid, n, why in c.send_fail:
            errs[why] = errs.get(why, 0) + 1
        for t, text in c.errors:
            k = text.split(":")[0][:40]
            errs[k] = errs.get(k, 0) + 1
    out["send_failures"] = errs
    out["bad_frames"] = sum(len(c.bad) for c in fleet.clients.values())
    close_codes = {}
    for c in fleet.clients.values():
        for conn in c.conns:
            if conn.t_open is not None and conn.cause not in (None, "stop", "final"):
                close_codes[conn.cause] = close_codes.get(conn.cause, 0) + 1
    out["closes"] = close_codes

    # -- recovery per fault ----------------------------------------------------
    acked_to = {}
    for key, (tack, to) in acked.items():
        for r in to:
            acked_to.setdefault(r, []).append((tack, key))
    rec_all = []
    per_fault = []
    for f in faults:
        T, w0, w1 = f["t_ref"], f["t_start"], f["t_end"]
        times = []
        for c in fleet.clients.values():
            losses = [cn for cn in c.conns if cn.t_open is not None and cn.t_close is not None
                      and w0 <= cn.t_close < w1 and cn.cause not in ("final", "stop")]
            fails = [sf for sf in c.send_fail if w0 <= sf[0] < w1]
            t4, late = T, False
            for tack, key in acked_to.get(c.uid, ()):
                if w0 <= tack < w1:
                    rx = first_rx.get((c.uid, key), math.inf)
                    if rx - tack > late_after:
                        late, t4 = True, max(t4, rx)
            if not losses and not fails and not late:
                continue
            t1 = T
            if losses:
                last = max(cn.t_close for cn in losses)
                after = [cn.t_caught for cn in c.conns
                         if cn.t_open is not None and cn.t_open > last and cn.t_caught is not None]
                t1 = min(after) if after else math.inf
            t2 = T
            for t, cid, n, why in fails:
                a = acked.get((c.uid, cid, n))
                t2 = max(t2, a[0] if a else math.inf)
            t3 = T
            for tack, key in acked_to.get(c.uid, ()):
                if tack < T:
                    t3 = max(t3, first_rx.get((c.uid, key), math.inf))
            times.append(max(t1, t2, t3, t4) - T)
        rec_all += times
        finite = [x for x in times if x != math.inf]
        per_fault.append({
            "fault": f["name"], "affected": len(times),
            "recovered_in_limit": sum(1 for x in times if x <= recovery_limit),
            "never_recovered": len(times) - len(finite),
            "recovery_s_p99": None if not times else _round(pct(times, 99)),
            "recovery_s_max": None if not times else _round(max(times)),
            "detection_s": None if f.get("detection") is None else round(f["detection"], 2),
            "detect_expected": f.get("detect", False),
        })
    out["faults"] = per_fault
    # Live delivery between every pair of nodes once the fault is over.
    out["live_routing"] = {}
    out["live_routing_broken"] = []
    if steady is not None:
        m = live_matrix(fleet, first_copy, steady[0], steady[1])
        out["live_routing"] = {k: "%d/%d" % tuple(v) for k, v in sorted(m.items())}
        out["live_routing_broken"] = sorted(k for k, (live, n) in m.items()
                                            if n >= 10 and live < 0.9 * n)
    out["affected"] = len(rec_all)
    out["recovery_s_p99"] = None if not rec_all else _round(pct(rec_all, 99))
    out["recovery_s_max"] = None if not rec_all else _round(max(rec_all))
    dets = [pf["detection_s"] for pf in per_fault if pf["detect_expected"]]
    out["detection_s"] = None if not dets else (None if None in dets else max(dets))
    out["detect_expected"] = any(pf["detect_expected"] for pf in per_fault)
    return out


def _round(x):
    return "never" if x == math.inf else round(x, 2)


def verdict(r, detect_limit=5.0, recovery_limit=10.0):
    """List of failed acceptance points of one scenario result."""
    fails = []
    for k in ("lost", "duplicates", "reordered", "unexpected", "seq_conflicts", "cursor_ahead"):
        if r.get(k):
            fails.append("%s=%d" % (k, r[k]))
    if r.get("detect_expected"):
        d = r.get("detection_s")
        if d is None or d > detect_limit:
            fails.append("detection=%s" % d)
    p99 = r.get("recovery_s_p99")
    if r.get("affected") and (p99 == "never" or p99 is None or p99 > recovery_limit):
        fails.append("recovery_p99=%s" % p99)
    for pair in r.get("live_routing_broken", []):
        fails.append("live routing %s %s after recovery" % (pair, r["live_routing"][pair]))
    for p in r.get("premise_failed", []):
        fails.append(p)
    if r.get("acked", 0) == 0:
        fails.append("no acknowledged messages")
    return fails
