#pragma once

// -- The Lua scripts of the Redis STATE_STORE ---------------------------------
//
// Every change that touches more than one key runs as one script, so other
// nodes never see half of it. Scripts build their key names from the prefix
// in ARGV[1] (the key layout is documented in redis_store.cpp) and take no
// KEYS: they suit a single Redis (or a replicated one behind Sentinel), not
// Redis Cluster. They need Redis >= 6.2 (effects replication, so TIME may
// be called before writes; multi-field HSET; XTRIM MINID).
//
// Incarnations are 64-bit numbers and stay strings in Lua: Lua numbers are
// doubles and would round them.

#include <cstddef>
#include <cstdint>
#include <string>

namespace wsc::redis_scripts {

/// Identifies one script; its SHA is looked up by this index.
enum class script : uint8_t {
  bind,
  unbind,
  join,
  leave,
  group_route,
  node,
  nodes,
  claim,
  shutdown,
  append,
  group_append,
  inbox,
  read,
};

/// Number of scripts.
constexpr size_t script_count = 13;

/// What every script starts with: the key prefix.
inline constexpr const char* prelude = R"lua(
local P = ARGV[1]
)lua";

/// Helpers for the scripts that remove bindings or read the time (defining
/// them costs each call a little, so the others go without).
inline constexpr const char* helpers = R"lua(
-- Drops `uid` from every group it joined (it has no connection left). Redis
-- deletes a set when its last member goes.
local function drop_groups(uid)
  local ug = P .. ':ug:' .. uid
  for _, g in ipairs(redis.call('SMEMBERS', ug)) do
    redis.call('SREM', P .. ':g:' .. g, uid)
  end
  redis.call('DEL', ug)
end

-- One uid fewer online (P:users, never below 0). Session groups end with
-- the uid's last connection; persistent ones stay.
local function went_offline(uid)
  if redis.call('DECR', P .. ':users') < 0 then
    redis.call('SET', P .. ':users', 0)
  end
  if SESSION_GROUPS then
    drop_groups(uid)
  end
end

-- Removes every binding of `node` made by incarnation `inc` (by any
-- incarnation if `inc` is '0'); uids left without a connection go offline
-- (and lose session groups). A binding that was rebound elsewhere since stays. Returns the uids
-- left without a connection (they went offline).
local function drop_incarnation(node, inc)
  local offline = {}
  local nb = P .. ':nb:' .. node
  for _, e in ipairs(redis.call('SMEMBERS', nb)) do
    local i = string.find(e, ',', 1, true)
    local j = i and string.find(e, ',', i + 1, true)
    if j then
      local einc = string.sub(e, 1, i - 1)
      if inc == '0' or einc == inc then
        local uid = string.sub(e, i + 1, j - 1)
        local conn = string.sub(e, j + 1)
        local u = P .. ':u:' .. uid
        if redis.call('HGET', u, conn) == node .. '|' .. einc then
          redis.call('HDEL', u, conn)
          if redis.call('EXISTS', u) == 0 then
            went_offline(uid)
            offline[#offline + 1] = uid
          end
        end
        redis.call('SREM', nb, e)
      end
    else
      redis.call('SREM', nb, e)
    end
  end
  if inc == '0' then
    redis.call('DEL', P .. ':ni:' .. node)
  else
    redis.call('SREM', P .. ':ni:' .. node, inc)
  end
  return offline
end

-- Redis server time in milliseconds.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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

-- The value of a string key as a count, 0 if missing or not one.
local function get_count(key)
  local r = redis.pcall('GET', key)
  if is_err(r) then
    return 0
  end
  return count(r) or 0
end

-- The sequence number of an inbox entry: the millisecond part of its id.
local function id_seq(id)
  return count(string.match(id, '^(%d+)%-')) or 0
end
)lua";

/// Helpers for the scripts that store durable messages. Inboxes are streams
/// `P:in:<uid>` whose entry ids are `<seq>-0` (so a replay seeks to its
/// cursor), with fields {s: seq, i: msg_id, k: kind, f: from, g: group,
/// d: data, t: ts}; `P:seq:<uid>` is the uid's last sequence number and
/// `P:cur:<uid>` the hash device -> cursor. All three expire `ttl_ms` after
/// the uid's last message (the cursors also after the last `read`).
/// ARGV = P, max_messages, min_ms, ttl_ms, max_fanout_bytes, msg_id, kind,
/// from, group, data, ts, idem, window_ms, first, ...
///
/// Idempotency: `idem` is '' or `<len(from)>:<from>:<idem>` (the length
/// keeps uid "a:b" + idem "c" apart from uid "a" + idem "b:c"), the tail of
/// the key `P:idem:<...>` that holds the msg_id of the message that used it
/// for `window_ms`. The first call of a message (`first` = '1') claims the
/// key with SET NX; the further calls of a send split into several (each
/// at most a few hundred uids) go on only while the key holds their own
/// msg_id, so a repeat stores nothing in any of them.
inline constexpr const char* inbox_helpers = R"lua(
-- The msg_id of an earlier message of the same sender with the same idem
-- (ARGV[12..14]) within the window, or false (then this one holds the key).
local function repeated()
  if ARGV[12] == '' then
    return false
  end
  local key = P .. ':idem:' .. ARGV[12]
  local first = ARGV[14] == '1'
  if first and redis.call('SET', key, ARGV[6], 'NX', 'PX', ARGV[13]) then
    return false
  end
  local earlier = redis.pcall('GET', key)
  if is_err(earlier) or not earlier or earlier == ARGV[6] or #earlier == 0
     or #earlier > 256 then
    -- Not a msg_id (overwritten: not ours), gone, or this message's own.
    if first then -- SET replaces a key of any type
      redis.call('SET', key, ARGV[6], 'PX', ARGV[13])
    end
    return false
  end
  return earlier
end

-- The `t` field of an inbox entry (0 if missing or not a number).
local function entry_time(e)
  local fields = e[2]
  for k = 1, #fields - 1, 2 do
    if fields[k] == 't' then
      return tonumber(fields[k + 1]) or 0
    end
  end
  return 0
end

-- Drops entries older than ARGV[3] (ms) from the front of an inbox: every
-- 16th message of a uid looks at up to 17 of its oldest entries, so each
-- append does bounded work and an active inbox still sheds old messages
-- faster than it grows. Silent inboxes expire as a whole (PEXPIRE).
local function trim_old(inbox, seq)
  if seq % 16 ~= 0 then
    return
  end
  local min = tonumber(ARGV[3])
  local first = redis.call('XRANGE', inbox, '-', '+', 'COUNT', 1)
  if #first == 0 or entry_time(first[1]) >= min then
    return
  end
  local cut = int(seq) .. '-0' -- at worst, keep the newest only
  local old = redis.call('XRANGE', inbox, '-', '+', 'COUNT', 17)
  for i, e in ipairs(old) do
    if entry_time(e) >= min or i == 17 then
      cut = e[1]
      break
    end
  end
  redis.call('XTRIM', inbox, 'MINID', cut)
end

-- XADD of the message of ARGV[6..11] as entry `id` (`fn`: call or pcall).
local function xadd(fn, inbox, id, seq)
  return fn('XADD', inbox, 'MAXLEN', '~', ARGV[2], id, 's', seq,
            'i', ARGV[6], 'k', ARGV[7], 'f', ARGV[8], 'g', ARGV[9],
            'd', ARGV[10], 't', ARGV[11])
end

-- Appends the message of ARGV[6..11] to the inbox of each uid (once per
-- uid) and returns a flat array: uid, its new seq, its binding values, ...
local function store_and_route(uids)
  local out, seen = {}, {}
  local ttl = ARGV[4]
  for _, uid in ipairs(uids) do
    if not seen[uid] then
      seen[uid] = true
      local sk = P .. ':seq:' .. uid
      local inbox = P .. ':in:' .. uid
      local cur = P .. ':cur:' .. uid
      local seq = redis.pcall('INCR', sk)
      if is_err(seq) then -- not a counter (overwritten): start over
        redis.call('DEL', sk)
        seq = redis.call('INCR', sk)
      end
      if seq == 1 then
        -- A new (or expired) counter: whatever inbox and cursors are left
        -- belong to an earlier life and would hide the new messages.
        redis.call('DEL', inbox, cur)
      end
      local id = int(seq) .. '-0'
      if is_err(xadd(redis.pcall, inbox, id, seq)) then
        -- Not a stream, or one with ids past the counter: not ours.
        redis.call('DEL', inbox)
        xadd(redis.call, inbox, id, seq)
      end
      trim_old(inbox, seq)
      redis.call('PEXPIRE', inbox, ttl)
      redis.call('PEXPIRE', sk, ttl)
      redis.call('PEXPIRE', cur, ttl)
      local where = redis.pcall('HVALS', P .. ':u:' .. uid)
      if is_err(where) then
        where = {}
      end
      out[#out + 1] = uid
      out[#out + 1] = seq
      out[#out + 1] = where
    end
  end
  return out
end
)lua";

/// The body of each script, in the order of `script`.
inline constexpr const char* bodies[script_count] = {
    // bind: ARGV = P, then (uid, conn, node, incarnation) per binding.
    // Returns per binding 1 if its uid had no connection before (counted in
    // P:users), else 0.
    R"lua(
local out = {}
for i = 2, #ARGV, 4 do
  local uid, conn, node, inc = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local u = P .. ':u:' .. uid
  local prev = redis.call('HGET', u, conn)
  if prev then
    local pnode, pinc = string.match(prev, '^(.*)|(.*)$')
    if pnode and (pnode ~= node or pinc ~= inc) then
      redis.call('SREM', P .. ':nb:' .. pnode,
                 pinc .. ',' .. uid .. ',' .. conn)
    end
    out[#out + 1] = 0
  else
    out[#out + 1] = 1 - redis.call('EXISTS', u)
    if out[#out] == 1 then
      redis.call('INCR', P .. ':users')
    end
  end
  redis.call('HSET', u, conn, node .. '|' .. inc)
  redis.call('SADD', P .. ':nb:' .. node, inc .. ',' .. uid .. ',' .. conn)
  redis.call('SADD', P .. ':ni:' .. node, inc)
end
return out
)lua",
    // unbind: ARGV = P, uid, conn, node, incarnation.
    // Returns 1 if the uid has no connection left (one fewer in P:users; it
    // left its session groups).
    R"lua(
local uid, conn, node, inc = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local u = P .. ':u:' .. uid
local entry = ',' .. uid .. ',' .. conn
redis.call('SREM', P .. ':nb:' .. node, inc .. entry)
local prev = redis.call('HGET', u, conn)
if not prev then
  return 0
end
local pnode, pinc = string.match(prev, '^(.*)|(.*)$')
if pnode then
  local nb = P .. ':nb:' .. pnode
  redis.call('SREM', nb, pinc .. entry)
  if redis.call('EXISTS', nb) == 0 then
    redis.call('DEL', P .. ':ni:' .. pnode)
  end
end
redis.call('HDEL', u, conn)
if redis.call('EXISTS', u) == 1 then
  return 0
end
went_offline(uid)
return 1
)lua",
    // join: ARGV = P, uid, group, max_groups, max_members. Returns the
    // uid's number of groups, -1 if it would exceed max_groups, -2 if the
    // group has max_members members already (and the uid is not one).
    R"lua(
local uid, group = ARGV[2], ARGV[3]
local ug = P .. ':ug:' .. uid
local g = P .. ':g:' .. group
if redis.call('SISMEMBER', g, uid) == 0 and
   redis.call('SCARD', g) >= tonumber(ARGV[5]) then
  return -2
end
if redis.call('SISMEMBER', ug, group) == 0 then
  if redis.call('SCARD', ug) >= tonumber(ARGV[4]) then
    return -1
  end
  redis.call('SADD', ug, group)
end
redis.call('SADD', g, uid)
return redis.call('SCARD', ug)
)lua",
    // leave: ARGV = P, uid, group.
    R"lua(
local uid, group = ARGV[2], ARGV[3]
redis.call('SREM', P .. ':ug:' .. uid, group)
redis.call('SREM', P .. ':g:' .. group, uid)
return 1
)lua",
    // group_route: ARGV = P, group, from. Returns 0 if `from` is given and
    // not a member, else a flat array: uid, its binding values, uid, ...
    R"lua(
local group, from = ARGV[2], ARGV[3]
local g = P .. ':g:' .. group
if from ~= '' and redis.call('SISMEMBER', g, from) == 0 then
  return 0
end
local out = {}
for _, uid in ipairs(redis.call('SMEMBERS', g)) do
  local where = redis.pcall('HVALS', P .. ':u:' .. uid)
  if is_err(where) then
    where = {}
  end
  out[#out + 1] = uid
  out[#out + 1] = where
end
return out
)lua",
    // node: ARGV = P, id, listen, cluster, incarnation, connections, lease_ms.
    // Returns 1 if the entry of this incarnation was missing. Renews the
    // node's entry and lease (heartbeat time: Redis TIME), then
    // sweeps the bindings of earlier incarnations of this id whose lease has
    // expired. `ni:<id>` lists the incarnations that have bindings, so the
    // sweep costs one tiny SMEMBERS unless a predecessor left something.
    R"lua(
local id, inc = ARGV[2], ARGV[5]
-- 1 when this incarnation had no entry (first heartbeat, or Redis lost it):
-- the node then writes back all its bindings.
local fresh = redis.call('HGET', P .. ':node:' .. id, 'incarnation') ~= inc
redis.call('HSET', P .. ':node:' .. id, 'listen', ARGV[3], 'cluster', ARGV[4],
           'incarnation', inc, 'connections', ARGV[6],
           'hb', string.format('%.0f', now_ms()))
redis.call('SADD', P .. ':nodes', id)
redis.call('SET', P .. ':lease:' .. id .. ':' .. inc, '1', 'PX', ARGV[7])
for _, old in ipairs(redis.call('SMEMBERS', P .. ':ni:' .. id)) do
  if old ~= inc and redis.call('EXISTS', P .. ':lease:' .. id .. ':' .. old)
                     == 0 then
    drop_incarnation(id, old)
  end
end
if fresh then
  return 1
end
return 0
)lua",
    // nodes: ARGV = P. Returns the Redis time (ms, as a string), then per
    // registered node its id and its fields (HGETALL).
    R"lua(
local out = {string.format('%.0f', now_ms())}
for _, id in ipairs(redis.call('SMEMBERS', P .. ':nodes')) do
  local fields = redis.call('HGETALL', P .. ':node:' .. id)
  if #fields > 0 then
    out[#out + 1] = id
    out[#out + 1] = fields
  end
end
return out
)lua",
    // claim: ARGV = P, id, incarnation, timeout_ms. Returns {1, uid...} for
    // the one caller that found the node's entry of that incarnation silent
    // (lease gone or heartbeat older than timeout_ms) and removed it with its
    // bindings: the uids are those left without a connection (offline, with
    // reason node_lost, told by this caller only); {0} otherwise.
    R"lua(
local id, inc = ARGV[2], ARGV[3]
local n = P .. ':node:' .. id
local fields = redis.call('HMGET', n, 'incarnation', 'hb')
if fields[1] ~= inc then
  return {0}
end
local lease = P .. ':lease:' .. id .. ':' .. inc
if redis.call('EXISTS', lease) == 1
   and tonumber(fields[2] or '0') >= now_ms() - tonumber(ARGV[4]) then
  return {0}
end
redis.call('DEL', n, lease)
redis.call('SREM', P .. ':nodes', id)
local out = {1}
for _, uid in ipairs(drop_incarnation(id, inc)) do
  out[#out + 1] = uid
end
return out
)lua",
    // shutdown: ARGV = P, id, incarnation. Removes the node's entry (if it
    // is of that incarnation) and the incarnation's bindings; returns the
    // uids left without a connection.
    R"lua(
local id, inc = ARGV[2], ARGV[3]
local n = P .. ':node:' .. id
if redis.call('HGET', n, 'incarnation') == inc then
  redis.call('DEL', n)
  redis.call('SREM', P .. ':nodes', id)
end
redis.call('DEL', P .. ':lease:' .. id .. ':' .. inc)
return drop_incarnation(id, inc)
)lua",
    // append: ARGV = P, max_messages, min_ms, ttl_ms, max_fanout_bytes,
    // msg_id, kind, from, group, data, ts, idem, window_ms, first, uid...
    // Stores and routes in one step (see inbox_helpers). The STORE sends at
    // most a few hundred uids per call (bigger sends are split), so no call
    // blocks Redis for long. A repeat of an idem answers the earlier
    // msg_id as a status reply, having stored nothing.
    R"lua(
local earlier = repeated()
if earlier then
  return {ok = earlier}
end
local uids = {}
for i = 15, #ARGV do
  uids[#uids + 1] = ARGV[i]
end
return store_and_route(uids)
)lua",
    // group_append: ARGV as append, without uids: stores for and routes to
    // every member of the group ARGV[9]; 0 if `from` is given and not one;
    // -n if the n members times the payload exceed max_fanout_bytes (each
    // copy counted with 64 bytes of envelope, as frames::check_fanout); the
    // earlier msg_id (status reply) for a repeat of an idem.
    R"lua(
local g = P .. ':g:' .. ARGV[9]
if ARGV[8] ~= '' and redis.call('SISMEMBER', g, ARGV[8]) == 0 then
  return 0
end
local n = redis.call('SCARD', g)
if n > 0 and (#ARGV[10] + 64) * n > tonumber(ARGV[5]) then
  return -n
end
local earlier = repeated()
if earlier then
  return {ok = earlier}
end
return store_and_route(redis.call('SMEMBERS', g))
)lua",
    // inbox: ARGV = P, uid, device, since (-1: the device's cursor), limit.
    // Returns cursor, last seq, oldest retained seq (last + 1 if none), 1 if
    // more entries follow the page else 0, then at most `limit` entries
    // ({id, fields}) after the cursor, oldest first: one XRANGE from the
    // cursor, never the whole stream.
    R"lua(
local uid = ARGV[2]
local inbox = P .. ':in:' .. uid
local cursor = tonumber(ARGV[4]) or 0
if cursor < 0 then
  local c = redis.pcall('HGET', P .. ':cur:' .. uid, ARGV[3])
  cursor = (not is_err(c) and count(c)) or 0
end
local last = get_count(P .. ':seq:' .. uid)
local limit = count(ARGV[5]) or 0
local page = {}
if count(cursor + 1) then
  page = redis.pcall('XRANGE', inbox, int(cursor + 1) .. '-0', '+',
                     'COUNT', limit + 1)
  if is_err(page) then -- not a stream: nothing to replay
    page = {}
  end
end
local more = 0
if #page > limit then
  more = 1
  page[#page] = nil
end
local oldest = last + 1
if #page > 0 and id_seq(page[1][1]) == cursor + 1 then
  oldest = cursor + 1
else
  local first = redis.pcall('XRANGE', inbox, '-', '+', 'COUNT', 1)
  if not is_err(first) and #first > 0 then
    oldest = id_seq(first[1][1])
  end
end
local out = {math.min(cursor, 9007199254740991), last, oldest, more}
for _, e in ipairs(page) do
  out[#out + 1] = e
end
return out
)lua",
    // read: ARGV = P, uid, device, seq, ttl_ms, max_devices. Moves the
    // device's cursor (field of the hash P:cur:<uid>) forward to seq, never
    // past the uid's last seq, never back; the cursors expire ttl_ms after
    // the last read. Returns -1 (nothing written) for a new device of a uid
    // that has max_devices cursors already.
    R"lua(
local c = P .. ':cur:' .. ARGV[2]
local last = get_count(P .. ':seq:' .. ARGV[2])
local seq = math.min(tonumber(ARGV[4]) or 0, last)
local prev = redis.pcall('HGET', c, ARGV[3])
if is_err(prev) then -- not a hash: not ours
  redis.call('DEL', c)
  prev = false
end
if seq > (count(prev) or 0) then
  if not prev and redis.call('HLEN', c) >= tonumber(ARGV[6]) then
    return -1
  end
  redis.call('HSET', c, ARGV[3], int(seq))
end
redis.call('PEXPIRE', c, ARGV[5])
return 1
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
  switch (x) {
  case script::unbind:
  case script::node:
  case script::nodes:
  case script::claim:
  case script::shutdown:
    result += helpers;
    break;
  case script::append:
  case script::group_append:
    result += safe_helpers;
    result += inbox_helpers;
    break;
  case script::group_route:
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
