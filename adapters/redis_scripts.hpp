#pragma once

// -- The Lua scripts of the Redis STATE_STORE ---------------------------------
//
// Every change of more than one key of one slot runs as one script, so other
// nodes never see half of it. Scripts take KEYS[1] (it routes the call on a
// Redis Cluster) and build the names of the other keys of the same slot
// from the prefix in ARGV[1] (layout 4, redis_keys.hpp), except the append
// scripts, which take each uid's key base from the STORE (the hot path:
// building names in Lua costs more than passing them); the same scripts
// serve a single Redis and a Redis Cluster. They need Redis >= 7.0 (XADD
// with an id `0-*`: Redis picks the sequence part, our seq; also effects
// replication, so TIME may be called before writes; multi-field HSET; XTRIM
// MINID): the STORE refuses an older Redis at start (redis_store_spawn.cpp).
//
// Incarnations are 64-bit numbers and stay strings in Lua: Lua numbers are
// doubles and would round them.

#include "protocol/frames.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace wsc::redis_scripts {

/// Identifies one script; its SHA is looked up by this index.
enum class script : uint8_t {
  bind_uid,
  unbind_uid,
  join_uid,
  join_group,
  node,
  claim,
  drop_uid,
  users_add,
  idem,
  append,
  group_check,
  inbox,
  read,
  forget_node,
  append_batch,
};

/// Number of scripts.
constexpr size_t script_count = 15;

/// The oldest Redis the scripts run on (major, minor): XADD `0-*`.
inline constexpr int min_redis_major = 7;
inline constexpr int min_redis_minor = 0;

/// What every script starts with: the key prefix and the key builders of
/// layout 4 (redis_keys.hpp builds the same names in C++). KEYS[1] is a key
/// of the slot the script touches (it routes the call on a Redis Cluster);
/// every key a script touches shares its hash tag.
inline constexpr const char* prelude = R"lua(
local P = ARGV[1]
local function ukey(uid, what)
  return P .. ':{u:' .. uid .. '}:' .. what
end
local function gkey(group)
  return P .. ':{g:' .. group .. '}:m'
end
local function nkey(node, what)
  return P .. ':{n:' .. node .. '}:' .. what
end
)lua";

/// Helpers for the scripts that read the time.
inline constexpr const char* helpers = R"lua(
-- Redis server time in milliseconds.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Takes `uid` (just gone offline) out of its groups set and returns the
-- groups it was in when membership ends with the session (else {}): the
-- STORE then removes it from each group's set (another slot).
local function offline_groups(uid)
  if not SESSION_GROUPS then
    return {}
  end
  local ug = ukey(uid, 'g')
  local groups = redis.call('SMEMBERS', ug)
  redis.call('DEL', ug)
  return groups
end
)lua";

/// Helpers for the scripts that read back what Redis holds: numbers and
/// replies of keys that anyone with access to Redis may have overwritten
/// (wrong type, not a number, a huge number) must not abort a script half
/// way or turn into nonsense.
inline constexpr const char* safe_helpers = R"lua(
-- Whether a pcall reply is an error.
local function is_err(r)
  return type(r) == 'table' and r.err ~= nil
end

-- Whether a pcall reply says the key holds something that is not ours (a
-- wrong type, not a counter, ids past ours): only then may a script
-- replace the key. Any other error (OOM at maxmemory, READONLY...) is
-- raised again: replacing the key then would lose what it holds.
local function foreign(r)
  if not is_err(r) then
    return false
  end
  local e = r.err
  if string.find(e, '^WRONGTYPE') or string.find(e, '^ERR value is not an')
     or string.find(e, '^ERR increment or decrement would overflow')
     or string.find(e, '^ERR The ID specified in XADD') then
    return true
  end
  error(r)
end

-- A non-negative integer below 2^53 (exact in Lua), else nil.
local function count(x)
  local n = tonumber(x)
  if not n or n < 0 or n ~= math.floor(n) or n >= 9007199254740992 then
    return nil
  end
  return n
end

-- An integer as decimal text (tostring would write 1e+15).
local function int(n)
  return string.format('%.0f', n)
end

-- The sequence number of an inbox entry: the sequence part of its id
-- `0-<seq>` (0 if the id is not of that form: not ours).
local function id_seq(id)
  return count(string.match(id, '^0%-(%d+)$')) or 0
end

-- The uid's last seq: the id of the newest entry of its inbox (MAXLEN and
-- trim_old always keep it), 0 if there is none or it is not a stream.
local function last_seq(inbox)
  local e = redis.pcall('XREVRANGE', inbox, '+', '-', 'COUNT', 1)
  if is_err(e) or #e == 0 then
    return 0
  end
  return id_seq(e[1][1])
end

-- The hint and the first seq of the life from the value of a hint key
-- `<hint>,<born>` (each nil if not ours: not a string of that form, too
-- large for Lua to keep exact).
local function read_hint(key)
  local v = redis.pcall('GET', key)
  if type(v) ~= 'string' then
    return nil, nil
  end
  local hint, born = string.match(v, '^(%d+),(%d+)$')
  return count(hint), count(born)
end
)lua";

/// Helpers for the scripts that store durable messages. Inboxes are streams
/// `P:{u:<uid>}:in` whose entry ids are `0-<seq>`: XADD `0-*` gives each
/// message the sequence part after the stream's last id (1 in a new stream;
/// trimming and deleting entries never lower it), so the inbox is its own
/// counter and a replay seeks to its cursor. Each entry has one field `m`:
/// the message as the STORE packs it once per message (redis_replies.hpp,
/// pack_entry), starting "<ts>,". The hash `P:{u:<uid>}:cur` holds device
/// -> cursor. Both expire `ttl_ms` after the uid's last message (the
/// cursors also after the `read` that created them). The string
/// `P:{u:<uid>}:last` holds "<hint>,<born>": the uid's last seq give or
/// take 15 (written at the start of a life and at every seq % 16 == 1, one
/// GET and SET per 16 messages, so the last seq is at most the hint + 15)
/// and the first seq of the life (the `inbox` script returns it). It
/// expires SEQ_HINT_KEEP_MS after the inbox would if no message came after
/// its write. A new stream (XADD gave seq 1: first message, expired, or
/// replaced) starts its life past every seq the earlier life may have
/// given, at the hint + 16, and deletes the cursors: they belong to the
/// earlier life. So a `since` or cursor of that life lies before the new
/// life's oldest seq, which a replay reports as too_old, instead of
/// skipping the new life's first messages. Nodes of this layout that know
/// no hint (before it came) ignore the key: their lives start at 1.
/// ARGV = P, max_messages, min_ms, ttl_ms, max_fanout_bytes, entry, then
/// the key base `P:{u:<uid>}:` of each receiver (each once).
inline constexpr const char* inbox_helpers = R"lua(
-- The time of an inbox entry: the number its `m` starts with (0 if none:
-- not ours).
local function entry_time(e)
  local m = e[2][2]
  if type(m) ~= 'string' then
    return 0
  end
  return tonumber(string.match(m, '^(%d+),')) or 0
end

-- Drops entries older than ARGV[3] (ms) from the front of an inbox (called
-- for every 16th message of a uid): looks at up to 17 of its oldest
-- entries, so each append does bounded work and an active inbox still
-- sheds old messages faster than it grows. Silent inboxes expire as a
-- whole (PEXPIRE).
local function trim_old(inbox, seq)
  local min = tonumber(ARGV[3])
  local first = redis.call('XRANGE', inbox, '-', '+', 'COUNT', 1)
  if #first == 0 or entry_time(first[1]) >= min then
    return
  end
  local cut = '0-' .. int(seq) -- at worst, keep the newest only
  local old = redis.call('XRANGE', inbox, '-', '+', 'COUNT', 17)
  for i, e in ipairs(old) do
    if entry_time(e) >= min or i == 17 then
      cut = e[1]
      break
    end
  end
  redis.call('XTRIM', inbox, 'MINID', cut)
end

-- The packed message stored next is ARGV[M] (append: ARGV[6];
-- append_batch moves M).
local M = 6

-- XADD of the message at M as entry `id` (`fn`: call or pcall): `0-*`
-- gives it the seq after the stream's last id; the id is `0-<seq>`.
local function xadd(fn, inbox, id)
  return fn('XADD', inbox, 'MAXLEN', '~', ARGV[2], id, 'm', ARGV[M])
end

-- The seq a new life of an inbox starts at: 16 past the hint of the
-- earlier life (whose last seq is at most the hint + 15), or 1 if there is
-- none or it is not ours.
local function life_start(key)
  local last = read_hint(key)
  return last and last > 0 and count(last + 16) or 1
end

-- Whether the sequence of an inbox is used up (its last id 0-(2^64-1),
-- which only another writer makes): Redis 7.0 answers XADD then as for an
-- entry too large, which must fail the send and wipe nothing.
local function used_up(inbox)
  local info = redis.call('XINFO', 'STREAM', inbox)
  for i = 1, #info - 1, 2 do
    if info[i] == 'last-generated-id' then
      return id_seq(info[i + 1]) == 0
    end
  end
  return false
end

-- Appends the message at M to the inbox of each uid whose key base is
-- ARGV[a..b] and returns a flat array: its new seq (negated if the message
-- started the inbox: the node charges the sender for it), its binding
-- values, ... (the STORE knows the uids). Keeps the redis.calls per uid few
-- (each costs more than most commands in it): XADD, two PEXPIREs, HVALS,
-- and a GET and SET of the hint for every 16th message.
local function store_and_route(a, b)
  local out = {}
  local ttl = ARGV[4]
  local hint_ttl = int(tonumber(ttl) + SEQ_HINT_KEEP_MS)
  for k = a, b do
    local u = ARGV[k]
    local inbox = u .. 'in'
    local cur = u .. 'cur'
    local hint = u .. 'last'
    local r = xadd(redis.pcall, inbox, '0-*')
    local seq = type(r) == 'string' and id_seq(r) or 0
    if seq == 0 then
      -- Not a stream, one with ids past `0-<n>`, or a seq beyond what Lua
      -- keeps exact (the entry went in, at a seq we cannot use): not ours,
      -- start over. foreign raises any other error (OOM...).
      if not (is_err(r) and string.find(r.err, '^ERR Elements are too large')
              and used_up(inbox)) then
        foreign(r)
      end
      redis.call('DEL', inbox)
      seq = id_seq(xadd(redis.call, inbox, '0-*'))
    end
    local born = seq == 1
    if born then
      -- A new inbox (first message, expired, or replaced): it continues
      -- after the earlier life's seqs; whatever cursors are left belong to
      -- that life and would hide the new messages.
      local start = life_start(hint)
      if start > 1 then
        redis.call('DEL', inbox)
        seq = id_seq(xadd(redis.call, inbox, '0-' .. int(start)))
      end
      redis.call('DEL', cur)
    end
    if born or seq % 16 == 1 then
      -- SET replaces a key of any type: a foreign one cannot fail the send
      -- after copies went in.
      local first = seq
      if not born then
        local _, b = read_hint(hint)
        first = b and b <= seq and b or 0 -- 0: unknown
      end
      redis.call('SET', hint, int(seq) .. ',' .. int(first), 'PX', hint_ttl)
    end
    if seq % 16 == 0 then
      trim_old(inbox, seq)
    end
    redis.call('PEXPIRE', inbox, ttl)
    redis.call('PEXPIRE', cur, ttl)
    local where = redis.pcall('HVALS', u .. 'b')
    if is_err(where) then
      where = {}
    end
    out[#out + 1] = born and -seq or seq
    out[#out + 1] = where
  end
  return out
end
)lua";

/// The body of each script, in the order of `script`. Operations that span
/// slots (a binding: its uid and its node; a membership: its uid and its
/// group; a send: its sender and each receiver) are split by the STORE into
/// one call per slot (redis_store.cpp says in which order and why a crash
/// between two calls leaves nothing that the cleanup does not repair).
inline constexpr const char* bodies[script_count] = {
    // bind_uid: KEYS[1] routes; ARGV = P, then (uid, conn, node,
    // incarnation) per binding, all uids in one slot. Writes the bindings
    // into the uids' hashes. Returns per binding: 1 if its uid had no
    // connection before (the STORE adds those to P:users), else 0, and the
    // previous value of the binding ('' if none) whose node-index entry the
    // STORE removes when it names another node or incarnation.
    R"lua(
local out = {}
for i = 2, #ARGV, 4 do
  local uid, conn, node, inc = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local u = ukey(uid, 'b')
  local prev = redis.call('HGET', u, conn)
  if prev then
    out[#out + 1] = 0
    out[#out + 1] = prev
  else
    out[#out + 1] = 1 - redis.call('EXISTS', u)
    out[#out + 1] = ''
  end
  redis.call('HSET', u, conn, node .. '|' .. inc)
end
return out
)lua",
    // unbind_uid: KEYS[1] routes; ARGV = P, uid, conn. Removes the binding.
    // Returns {offline, previous value or '', groups...}: offline is 1 if
    // the uid has no connection left (the STORE takes one off P:users and,
    // with session groups, the uid out of the listed groups' sets).
    R"lua(
local uid, conn = ARGV[2], ARGV[3]
local u = ukey(uid, 'b')
local prev = redis.call('HGET', u, conn)
if not prev then
  return {0, ''}
end
redis.call('HDEL', u, conn)
if redis.call('EXISTS', u) == 1 then
  return {0, prev}
end
local out = {1, prev}
for _, g in ipairs(offline_groups(uid)) do
  out[#out + 1] = g
end
return out
)lua",
    // join_uid: KEYS[1] routes; ARGV = P, uid, group, max_groups. Returns
    // {added (1, or 0 if it was there), number of groups of the uid}, or -1
    // if it would exceed max_groups.
    R"lua(
local ug = ukey(ARGV[2], 'g')
if redis.call('SISMEMBER', ug, ARGV[3]) == 1 then
  return {0, redis.call('SCARD', ug)}
end
if redis.call('SCARD', ug) >= tonumber(ARGV[4]) then
  return -1
end
redis.call('SADD', ug, ARGV[3])
return {1, redis.call('SCARD', ug)}
)lua",
    // join_group: KEYS[1] routes; ARGV = P, group, uid, max_members.
    // Returns 1 if added, 0 if it was a member, -2 if the group is full.
    R"lua(
local g = gkey(ARGV[2])
if redis.call('SISMEMBER', g, ARGV[3]) == 1 then
  return 0
end
if redis.call('SCARD', g) >= tonumber(ARGV[4]) then
  return -2
end
redis.call('SADD', g, ARGV[3])
return 1
)lua",
    // node: KEYS[1] routes; ARGV = P, id, listen, cluster, incarnation,
    // connections, lease_ms. Renews the node's entry and lease (heartbeat
    // time: Redis TIME). Returns {fresh, stale incarnation...}: fresh is 1
    // if the entry of this incarnation was missing (first heartbeat, or
    // Redis lost it: the node then writes back all its bindings); the
    // stale ones are earlier incarnations of this id that left bindings
    // (ni) and whose lease expired: the STORE drops their bindings.
    R"lua(
local id, inc = ARGV[2], ARGV[5]
local h = nkey(id, 'h')
local fresh = redis.call('HGET', h, 'incarnation') ~= inc
if fresh then
  redis.call('HDEL', h, 'claimed')
end
redis.call('HSET', h, 'listen', ARGV[3], 'cluster', ARGV[4],
           'incarnation', inc, 'connections', ARGV[6],
           'hb', string.format('%.0f', now_ms()))
redis.call('SET', nkey(id, 'lease:' .. inc), '1', 'PX', ARGV[7])
local out = {fresh and 1 or 0}
for _, old in ipairs(redis.call('SMEMBERS', nkey(id, 'ni'))) do
  if old ~= inc and redis.call('EXISTS', nkey(id, 'lease:' .. old)) == 0 then
    out[#out + 1] = old
  end
end
return out
)lua",
    // claim: KEYS[1] routes; ARGV = P, id, incarnation, timeout_ms. Returns 1
    // for the one caller that found the node's entry of that incarnation
    // silent (lease gone or heartbeat older than timeout_ms): it marks the
    // entry claimed and then drops the bindings (several calls) and last
    // the entry (forget_node). 0 otherwise. A claim older than timeout_ms
    // (the claimer died half way) may be taken again: the cleanup steps
    // repeat safely.
    R"lua(
local id, inc = ARGV[2], ARGV[3]
local h = nkey(id, 'h')
local fields = redis.call('HMGET', h, 'incarnation', 'hb', 'claimed')
if fields[1] ~= inc then
  return 0
end
local now = now_ms()
local lease = nkey(id, 'lease:' .. inc)
if redis.call('EXISTS', lease) == 1
   and tonumber(fields[2] or '0') >= now - tonumber(ARGV[4]) then
  return 0
end
local claimed = tonumber(fields[3] or '')
if claimed and claimed >= now - tonumber(ARGV[4]) then
  return 0
end
redis.call('HSET', h, 'claimed', string.format('%.0f', now))
redis.call('DEL', lease)
return 1
)lua",
    // drop_uid: KEYS[1] routes; ARGV = P, node, then (incarnation, uid,
    // conn) per binding of the node, all uids in one slot. Removes each
    // binding that still points at node|incarnation (one rebound elsewhere
    // since stays). Returns per uid left without a connection: the uid and
    // the list of groups the STORE takes it out of (session groups only).
    R"lua(
local node = ARGV[2]
local out = {}
for i = 3, #ARGV, 3 do
  local inc, uid, conn = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local u = ukey(uid, 'b')
  if redis.call('HGET', u, conn) == node .. '|' .. inc then
    redis.call('HDEL', u, conn)
    if redis.call('EXISTS', u) == 0 then
      out[#out + 1] = uid
      out[#out + 1] = offline_groups(uid)
    end
  end
end
return out
)lua",
    // users_add: KEYS[1] = P:users; ARGV = P, delta. Never below 0.
    R"lua(
local n = redis.call('INCRBY', KEYS[1], ARGV[2])
if n < 0 then
  redis.call('SET', KEYS[1], 0)
  return 0
end
return n
)lua",
    // idem: KEYS[1] = the sender's idem key; ARGV = P, the message's head
    // (max_messages, min_ms, ttl_ms, max_fanout_bytes, msg_id, kind, from,
    // group, payload bytes, ts, idem, window_ms, first: ARGV[6] the msg_id,
    // ARGV[13] the window), then ARGV[15] the mode and ARGV[16] how long a
    // claim stays pending (ms). `P:<n>:{u:<from>}:idem:<idem>`
    // (n: the byte length of from, which keeps uid "a:b" + idem "c" apart
    // from uid "a" + idem "b:c") holds "p:<msg_id>" while that message is
    // being stored, then "<msg_id>" for the window.
    // - claim (before the appends, in the sender's slot): 0 if this message
    //   holds the key now (pending); 1 if another message with this idem is
    //   still pending; else the earlier msg_id (status reply): a repeat.
    // - done: the pending record of this msg_id becomes the record.
    // - release: the pending record of this msg_id goes (storing failed).
    R"lua(
local key, mine = KEYS[1], 'p:' .. ARGV[6]
local mode = ARGV[15]
if mode == 'done' or mode == 'release' then
  if redis.pcall('GET', key) == mine then
    if mode == 'done' then
      redis.call('SET', key, ARGV[6], 'PX', ARGV[13])
    else
      redis.call('DEL', key)
    end
  end
  return 0
end
if redis.call('SET', key, mine, 'NX', 'PX', ARGV[16]) then
  return 0
end
local earlier = redis.pcall('GET', key)
if is_err(earlier) or not earlier or earlier == ARGV[6] or earlier == mine
   or #earlier == 0 or #earlier > 258 then
  -- Not a record (overwritten: not ours), gone, or this message's own.
  redis.call('SET', key, mine, 'PX', ARGV[16]) -- replaces any type
  return 0
end
if string.sub(earlier, 1, 2) == 'p:' then
  return 1
end
return {ok = earlier}
)lua",
    // append: KEYS[1] routes; ARGV = P, max_messages, min_ms, ttl_ms,
    // max_fanout_bytes, entry, key base... (all uids in one slot). Stores
    // and routes in one step (see inbox_helpers): seq (negated if the copy
    // started the inbox), binding values, ... per uid.
    R"lua(
return store_and_route(7, #ARGV)
)lua",
    // group_check: KEYS[1] routes; ARGV as idem. Returns 0 if `from`
    // (ARGV[8]) is given and not a member of the group ARGV[9]; -n if its n
    // members times the payload (ARGV[10] bytes) exceed max_fanout_bytes
    // (each copy counted with 64 bytes of envelope, as frames::check_fanout);
    // else the members (the STORE then stores per receiver slot).
    R"lua(
local g = gkey(ARGV[9])
if ARGV[8] ~= '' and redis.call('SISMEMBER', g, ARGV[8]) == 0 then
  return 0
end
local n = redis.call('SCARD', g)
if n > 0 and (tonumber(ARGV[10]) + 64) * n > tonumber(ARGV[5]) then
  return -n
end
return redis.call('SMEMBERS', g)
)lua",
    // inbox: KEYS[1] routes; ARGV = P, uid, device, since (-1: the device's
    // cursor), limit, max_bytes, max_entry (the largest entry a client's
    // message makes; 0: unknown).
    // Returns cursor, last seq, oldest retained seq (last + 1 if none), 1 if
    // more entries follow the page else 0, the first seq of the inbox's life
    // (from P:{u:<uid>}:last; 0: unknown), then at most `limit` entries
    // ({id, fields}) after the cursor, oldest first, whose values hold at
    // most max_bytes (at least one entry): XRANGEs from the cursor in steps
    // sized by the entries seen but never more than another page of
    // max_entry ones could fill (never the whole stream; about one entry past
    // max_bytes copied when entries are of one size, at most a page more
    // when small entries are followed by large ones a client wrote; entries
    // written through the API may be larger than max_entry), and a reply
    // bounded in bytes.
    R"lua(
local uid = ARGV[2]
local inbox = ukey(uid, 'in')
local cursor = tonumber(ARGV[4]) or 0
if cursor < 0 then
  local c = redis.pcall('HGET', ukey(uid, 'cur'), ARGV[3])
  cursor = (not is_err(c) and count(c)) or 0
end
local limit = count(ARGV[5]) or 0
local max_bytes = count(ARGV[6])
local max_entry = count(ARGV[7]) or 0
-- Read in steps sized by the entries seen so far, so a page of large
-- entries copies about one entry past max_bytes into Lua (one XRANGE of
-- limit + 1 copied nine 235 KB entries to send one: helper-37's probe),
-- and no step more entries than twice max_bytes holds of the largest a
-- client makes (two small entries and then large ones: a step sized by
-- the small ones copied 62 large entries to send three).
local page, more, bytes = {}, 0, 0
local start = count(cursor + 1) and '0-' .. int(cursor + 1)
local want = math.min(limit + 1, 2)
while start and want > 0 do
  local got = redis.pcall('XRANGE', inbox, start, '+', 'COUNT', want)
  if is_err(got) then -- not a stream: nothing to replay
    break
  end
  for _, e in ipairs(got) do
    local size = 0
    for k = 2, #e[2], 2 do
      size = size + #e[2][k]
    end
    if #page == limit or (max_bytes and #page > 0 and bytes + size > max_bytes) then
      more = 1
      break
    end
    bytes = bytes + size
    page[#page + 1] = e
  end
  if more == 1 or #got < want then
    break
  end
  start = '(' .. got[#got][1]
  want = limit + 1 - #page
  if max_bytes then
    local room = math.floor((max_bytes - bytes) * #page / math.max(bytes, 1)) + 1
    if max_entry > 0 then
      room = math.min(room, math.floor((2 * max_bytes - bytes) / max_entry) + 1)
    end
    want = math.max(1, math.min(want, room))
  end
end
local last
if more == 0 and #page > 0 then
  last = id_seq(page[#page][1]) -- the page ends with the newest entry
end
last = last or last_seq(inbox)
local oldest = last + 1
if #page > 0 and id_seq(page[1][1]) == cursor + 1 then
  oldest = cursor + 1
else
  local first = redis.pcall('XRANGE', inbox, '-', '+', 'COUNT', 1)
  if not is_err(first) and #first > 0 then
    oldest = id_seq(first[1][1])
  end
end
local _, born = read_hint(ukey(uid, 'last'))
local out = {math.min(cursor, 9007199254740991), last, oldest, more, born or 0}
for _, e in ipairs(page) do
  out[#out + 1] = e
end
return out
)lua",
    // read: KEYS[1] routes; ARGV = P, uid, device, seq, ttl_ms, max_devices.
    // Moves the device's cursor (field of the hash P:{u:<uid>}:cur) forward
    // to seq, never past the uid's last seq (its inbox's newest entry),
    // never back. Returns -1 (nothing written) for a new device of a uid
    // that has max_devices cursors already. Cheap where it can be: the last
    // seq is looked up only when seq is above the cursor (XREVRANGE COUNT 1
    // costs ~1.5 us in a script, six HGETs: bench/PROFILE.md, "Layout 4
    // without a counter: review"); the TTL is set only on a cursors' hash
    // this call creates (ttl_ms): every append renews it with the inbox's,
    // and cursors that outlived their inbox would be deleted by its next
    // life anyway.
    R"lua(
local c = ukey(ARGV[2], 'cur')
local prev = redis.pcall('HGET', c, ARGV[3])
if is_err(prev) then -- not a hash: not ours
  redis.call('DEL', c)
  prev = false
end
local at = count(prev) or 0
local seq = tonumber(ARGV[4]) or 0
if seq > at then
  seq = math.min(seq, last_seq(ukey(ARGV[2], 'in')))
end
if seq > at then
  local devices = prev and 1 or redis.call('HLEN', c)
  if not prev and devices >= tonumber(ARGV[6]) then
    return -1
  end
  redis.call('HSET', c, ARGV[3], int(seq))
  if devices == 0 then
    redis.call('PEXPIRE', c, ARGV[5])
  end
end
return 1
)lua",
    // forget_node: KEYS[1] routes; ARGV = P, id, incarnation. The last step
    // of a claim or shutdown: deletes the node's entry if it is still of
    // that incarnation (a restart under the same id keeps its own) and the
    // incarnation from the node's list. Returns 1 if the entry went.
    R"lua(
local id, inc = ARGV[2], ARGV[3]
local h = nkey(id, 'h')
redis.call('SREM', nkey(id, 'ni'), inc)
redis.call('DEL', nkey(id, 'lease:' .. inc))
if redis.call('HGET', h, 'incarnation') == inc then
  redis.call('DEL', h)
  return 1
end
return 0
)lua",
    // append_batch: KEYS[1] routes; ARGV = P, max_messages, min_ms, ttl_ms,
    // max_fanout_bytes, then per message: entry, n, and the key bases of
    // its n uids. What `append` does, for many messages in one
    // call (the call's own cost, ~7 us of Redis CPU, is paid once; see
    // bench/PROFILE.md). A single Redis only: the uids are in many slots.
    // Returns per message `append`'s reply, or an error reply for that
    // message alone (a failing write stops only its own message).
    R"lua(
local out = {}
local i = 6
while i <= #ARGV do
  local n = tonumber(ARGV[i + 1])
  M = i
  local ok, r = pcall(store_and_route, i + 2, i + 1 + n)
  if ok then
    out[#out + 1] = r
  else -- Redis' error text (e.g. 'OOM ...'), or Lua's
    out[#out + 1] = {err = type(r) == 'table' and r.err or tostring(r)}
  end
  i = i + 2 + n
end
return out
)lua",
};

/// The full source of a script: the prelude, the helpers it needs and its
/// body. `session_groups` (group-membership=session) bakes the membership
/// mode into the scripts that take uids offline: a node of the other mode
/// loads scripts of another SHA, so the mode never travels per call.
inline std::string source(script x, bool session_groups) {
  std::string result = prelude;
  result += session_groups ? "local SESSION_GROUPS = true\n"
                           : "local SESSION_GROUPS = false\n";
  result +=
      "local SEQ_HINT_KEEP_MS = " + std::to_string(frames::seq_hint_keep_ms) +
      "\n";
  switch (x) {
  case script::unbind_uid:
  case script::node:
  case script::claim:
  case script::drop_uid:
    result += helpers;
    break;
  case script::append:
  case script::append_batch:
    result += safe_helpers;
    result += inbox_helpers;
    break;
  case script::idem:
  case script::inbox:
  case script::read:
    result += safe_helpers;
    break;
  default:
    break;
  }
  return result + bodies[static_cast<size_t>(x)];
}

} // namespace wsc::redis_scripts
