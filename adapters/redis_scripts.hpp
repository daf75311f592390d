#pragma once

// -- The Lua scripts of the Redis STATE_STORE ---------------------------------
//
// Every change that touches more than one key runs as one script, so other
// nodes never see half of it. Scripts build their key names from the prefix
// in ARGV[1] (the key layout is documented in redis_store.cpp) and take no
// KEYS: they suit a single Redis (or a replicated one behind Sentinel), not
// Redis Cluster. They need Redis >= 5 (effects replication, so TIME may be
// called before writes; multi-field HSET).
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

-- Removes every binding of `node` made by incarnation `inc` (by any
-- incarnation if `inc` is '0'); uids left without a connection lose their
-- groups. A binding that was rebound elsewhere since stays.
local function drop_incarnation(node, inc)
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
            drop_groups(uid)
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
end

-- Redis server time in milliseconds.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
)lua";

/// Helpers for the scripts that store durable messages. Inboxes are streams
/// `P:in:<uid>` of entries {s: seq, i: msg_id, k: kind, f: from, g: group,
/// d: data, t: ts}; `P:seq:<uid>` is the uid's last sequence number.
/// ARGV = P, max_messages, min_ms, msg_id, kind, from, group, data, ts, ...
inline constexpr const char* inbox_helpers = R"lua(
-- Appends the message of ARGV[4..9] to the inbox of each uid (once per uid)
-- and returns a flat array: uid, its new seq, its binding values, uid, ...
local function store_and_route(uids)
  local out, seen = {}, {}
  for _, uid in ipairs(uids) do
    if not seen[uid] then
      seen[uid] = true
      local seq = redis.call('INCR', P .. ':seq:' .. uid)
      local inbox = P .. ':in:' .. uid
      redis.call('XADD', inbox, 'MAXLEN', '~', ARGV[2], '*', 's', seq,
                 'i', ARGV[4], 'k', ARGV[5], 'f', ARGV[6], 'g', ARGV[7],
                 'd', ARGV[8], 't', ARGV[9])
      redis.call('XTRIM', inbox, 'MINID', '~', ARGV[3])
      out[#out + 1] = uid
      out[#out + 1] = seq
      out[#out + 1] = redis.call('HVALS', P .. ':u:' .. uid)
    end
  end
  return out
end
)lua";

/// The body of each script, in the order of `script`.
inline constexpr const char* bodies[script_count] = {
    // bind: ARGV = P, then (uid, conn, node, incarnation) per binding.
    // Returns per binding 1 if its uid had no connection before, else 0.
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
  end
  redis.call('HSET', u, conn, node .. '|' .. inc)
  redis.call('SADD', P .. ':nb:' .. node, inc .. ',' .. uid .. ',' .. conn)
  redis.call('SADD', P .. ':ni:' .. node, inc)
end
return out
)lua",
    // unbind: ARGV = P, uid, conn, node, incarnation.
    // Returns 1 if the uid has no connection left (and left its groups).
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
drop_groups(uid)
return 1
)lua",
    // join: ARGV = P, uid, group, max_groups. Returns the uid's number of
    // groups, or -1 if it would exceed max_groups.
    R"lua(
local uid, group = ARGV[2], ARGV[3]
local ug = P .. ':ug:' .. uid
if redis.call('SISMEMBER', ug, group) == 0 then
  if redis.call('SCARD', ug) >= tonumber(ARGV[4]) then
    return -1
  end
  redis.call('SADD', ug, group)
end
redis.call('SADD', P .. ':g:' .. group, uid)
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
  out[#out + 1] = uid
  out[#out + 1] = redis.call('HVALS', P .. ':u:' .. uid)
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
    // claim: ARGV = P, id, incarnation, timeout_ms. Returns 1 for the one
    // caller that found the node's entry of that incarnation silent (lease
    // gone or heartbeat older than timeout_ms) and removed it with its
    // bindings; 0 otherwise.
    R"lua(
local id, inc = ARGV[2], ARGV[3]
local n = P .. ':node:' .. id
local fields = redis.call('HMGET', n, 'incarnation', 'hb')
if fields[1] ~= inc then
  return 0
end
local lease = P .. ':lease:' .. id .. ':' .. inc
if redis.call('EXISTS', lease) == 1
   and tonumber(fields[2] or '0') >= now_ms() - tonumber(ARGV[4]) then
  return 0
end
redis.call('DEL', n, lease)
redis.call('SREM', P .. ':nodes', id)
drop_incarnation(id, inc)
return 1
)lua",
    // shutdown: ARGV = P, id, incarnation. Removes the node's entry (if it
    // is of that incarnation) and the incarnation's bindings.
    R"lua(
local id, inc = ARGV[2], ARGV[3]
local n = P .. ':node:' .. id
if redis.call('HGET', n, 'incarnation') == inc then
  redis.call('DEL', n)
  redis.call('SREM', P .. ':nodes', id)
end
redis.call('DEL', P .. ':lease:' .. id .. ':' .. inc)
drop_incarnation(id, inc)
return 1
)lua",
    // append: ARGV = P, max_messages, min_ms, msg_id, kind, from, group, data,
    // ts, uid... Stores and routes in one step (see inbox_helpers).
    R"lua(
local uids = {}
for i = 10, #ARGV do
  uids[#uids + 1] = ARGV[i]
end
return store_and_route(uids)
)lua",
    // group_append: ARGV as append, without uids: stores for and routes to
    // every member of the group ARGV[7]; 0 if `from` is given and not one.
    R"lua(
local g = P .. ':g:' .. ARGV[7]
if ARGV[6] ~= '' and redis.call('SISMEMBER', g, ARGV[6]) == 0 then
  return 0
end
return store_and_route(redis.call('SMEMBERS', g))
)lua",
    // inbox: ARGV = P, uid, device, since (-1: the device's cursor). Returns
    // cursor, last seq, oldest retained seq (last + 1 if none), then the
    // field arrays of the entries after the cursor, oldest first.
    R"lua(
local uid = ARGV[2]
local cursor = tonumber(ARGV[4])
if cursor < 0 then
  cursor = tonumber(redis.call('GET', P .. ':cur:' .. uid .. ':' .. ARGV[3])
                    or '0')
end
local last = tonumber(redis.call('GET', P .. ':seq:' .. uid) or '0')
local entries = redis.call('XRANGE', P .. ':in:' .. uid, '-', '+')
local out = {cursor, last, last + 1}
for i, e in ipairs(entries) do
  local fields = e[2]
  local seq = tonumber(fields[2])
  if i == 1 then
    out[3] = seq
  end
  if seq > cursor then
    out[#out + 1] = fields
  end
end
return out
)lua",
    // read: ARGV = P, uid, device, seq. Moves the device's cursor forward to
    // seq (never past the uid's last seq, never back).
    R"lua(
local c = P .. ':cur:' .. ARGV[2] .. ':' .. ARGV[3]
local last = tonumber(redis.call('GET', P .. ':seq:' .. ARGV[2]) or '0')
local seq = math.min(tonumber(ARGV[4]), last)
if seq > tonumber(redis.call('GET', c) or '0') then
  redis.call('SET', c, seq)
end
return 1
)lua",
};

/// The full source of a script: the prelude, the helpers it needs and its
/// body.
inline std::string source(script x) {
  std::string result = prelude;
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
    result += inbox_helpers;
    break;
  default:
    break;
  }
  return result + bodies[static_cast<size_t>(x)];
}

} // namespace wsc::redis_scripts
