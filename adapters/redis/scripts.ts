/**
 * The Redis adapter's Lua scripts: every operation that reads and writes in one step runs
 * as one script, so it is atomic on the server, and each touches only keys of one group
 * (one hash tag), so it runs in one slot on Cluster. Records are spliced as text, never
 * decoded. Internal to the Redis adapter.
 */
import { createHash } from 'node:crypto';

/** Members fetched per ZRANGEBYLEX inside the list script. */
const LIST_CHUNK = 100;
/** The COUNT hint of each SCAN during a store scan. */
const SCAN_COUNT = 200;

// Records are JSON.stringify output with a fixed key order, so Lua can splice them as text:
// inside the JSON string "v" every quote is escaped, so `,"c":` first occurs after v.
// Lua never decodes v, which keeps every value (lone surrogates included) byte for byte.
const LUA_ALIVE = `
local function alive(raw, now)
  if not raw then return false end
  local expires = string.match(raw, ',"expires":(%d+)}$')
  return expires == nil or tonumber(expires) >= now
end
-- A group's index lives as long as its members: it is made persistent by a member that
-- never expires, and otherwise expires with its last member, so expiring groups (counters)
-- leave nothing behind.
local function persist(idx) redis.call('PERSIST', idx) end
local function expiring(idx, at, now)
  local pttl = redis.call('PTTL', idx)
  if pttl == -1 then
    if redis.call('ZCARD', idx) == 1 then redis.call('PEXPIREAT', idx, at) end
  elseif now + pttl < at then
    redis.call('PEXPIREAT', idx, at)
  end
end
`;

// Writes a put: a live record keeps its createdAt and write id. Returns 'added' or 'updated'.
const LUA_PUT = `
local function put(key, idx, member, old, now, record, vjson)
  if alive(old, now) then
    local created = string.match(old, ',"c":(%d+),"u":')
    local writer = string.match(old, ',"w":("[^"]*")}')
    redis.call('SET', key, '{"value":{"v":' .. vjson .. ',"c":' .. created .. ',"u":' .. now .. ',"w":' .. writer .. '}}')
    redis.call('ZADD', idx, 0, member)
    persist(idx)
    return 'updated'
  end
  redis.call('SET', key, record)
  redis.call('ZADD', idx, 0, member)
  persist(idx)
  return 'added'
end
local function insert(key, idx, member, now, record, expires)
  if expires == '' then
    redis.call('SET', key, record)
    redis.call('ZADD', idx, 0, member)
    persist(idx)
  else
    redis.call('SET', key, record, 'PXAT', expires)
    redis.call('ZADD', idx, 0, member)
    expiring(idx, tonumber(expires), now)
  end
end
local function replace(key, old, vjson)
  local rest = string.find(old, ',"c":', 1, true)
  redis.call('SET', key, '{"value":{"v":' .. vjson .. string.sub(old, rest), 'KEEPTTL')
end
local function holds(old, expected)
  local rest = string.find(old, ',"c":', 1, true)
  return string.sub(old, 15, rest - 1) == expected
end
`;

// KEYS: member key, group index, [required member key]. ARGV: member, now, record, v as JSON.
const PUT = `${LUA_ALIVE}${LUA_PUT}
local now = tonumber(ARGV[2])
if KEYS[3] and not alive(redis.call('GET', KEYS[3]), now) then return 'missing' end
return put(KEYS[1], KEYS[2], ARGV[1], redis.call('GET', KEYS[1]), now, ARGV[3], ARGV[4])
`;

// KEYS: member key, group index, [required member key]. ARGV: member, now, record, expires or ''.
const INSERT = `${LUA_ALIVE}${LUA_PUT}
local now = tonumber(ARGV[2])
if KEYS[3] and not alive(redis.call('GET', KEYS[3]), now) then return 0 end
if alive(redis.call('GET', KEYS[1]), now) then return 0 end
insert(KEYS[1], KEYS[2], ARGV[1], now, ARGV[3], ARGV[4])
return 1
`;

// KEYS: group index, [required member key], then one member key per write.
// ARGV: now, has-required (0/1), fault (1 = fail after the checks), then four per write:
// op, member, a, b (put: record, v as JSON; insert: record, expires or ''; replace: new v
// as JSON, expected v as JSON; remove: -, -). Every check runs before the first write,
// and a script runs to completion, so the batch is all or nothing. Returns {1, results...}
// or {0, index of the failing write, -1 for the required member}.
const BATCH = `${LUA_ALIVE}${LUA_PUT}
local now, required, fault = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local idx, first = KEYS[1], 2 + required
if required == 1 and not alive(redis.call('GET', KEYS[2]), now) then return {0, -1} end
local olds = {}
for j = 0, #KEYS - first do
  local old, op = redis.call('GET', KEYS[first + j]), ARGV[4 + j * 4]
  olds[j + 1] = old
  local live = alive(old, now)
  if op == 'insert' and live then return {0, j} end
  if op == 'replace' and not (live and holds(old, ARGV[7 + j * 4])) then return {0, j} end
end
if fault == '1' then return redis.error_reply('ERR credvault injected fault') end
local out = {1}
for j = 0, #KEYS - first do
  local key, old = KEYS[first + j], olds[j + 1]
  local op, member, a, b = ARGV[4 + j * 4], ARGV[5 + j * 4], ARGV[6 + j * 4], ARGV[7 + j * 4]
  if op == 'put' then
    out[#out + 1] = put(key, idx, member, old, now, a, b)
  elseif op == 'insert' then
    insert(key, idx, member, now, a, b)
    out[#out + 1] = 1
  elseif op == 'replace' then
    replace(key, old, a)
    out[#out + 1] = 1
  else
    if old then redis.call('DEL', key) end
    redis.call('ZREM', idx, member)
    out[#out + 1] = alive(old, now) and 1 or 0
  end
end
return out
`;

// KEYS: member key, group index. ARGV: member, now, a fresh record at 1, its expiry.
// Returns {count, expiresAt}.
const INCREMENT = `${LUA_ALIVE}${LUA_PUT}
local now = tonumber(ARGV[2])
local old = redis.call('GET', KEYS[1])
if alive(old, now) then
  local count = (tonumber(string.match(old, '^{"value":{"v":"(%d+)"')) or 0) + 1
  local rest = string.find(old, ',"c":', 1, true)
  redis.call('SET', KEYS[1], '{"value":{"v":"' .. string.format('%d', count) .. '"' .. string.sub(old, rest), 'KEEPTTL')
  return {count, tonumber(string.match(old, ',"expires":(%d+)}$')) or -1}
end
insert(KEYS[1], KEYS[2], ARGV[1], now, ARGV[3], ARGV[4])
return {1, tonumber(ARGV[4])}
`;

// KEYS: member key. ARGV: now, expected v as JSON, new v as JSON. KEEPTTL keeps the expiry.
const REPLACE = `${LUA_ALIVE}${LUA_PUT}
local old = redis.call('GET', KEYS[1])
if not (alive(old, tonumber(ARGV[1])) and holds(old, ARGV[2])) then return 0 end
replace(KEYS[1], old, ARGV[3])
return 1
`;

// KEYS: member key, group index. ARGV: member, now.
const REMOVE = `${LUA_ALIVE}
local old = redis.call('GET', KEYS[1])
if old then redis.call('DEL', KEYS[1]) end
redis.call('ZREM', KEYS[2], ARGV[1])
if alive(old, tonumber(ARGV[2])) then return 1 end
return 0
`;

// KEYS: group index. ARGV: lex min, lex max, limit (0 = all), now, the group's key prefix.
// Member keys are not in KEYS, but share the index's hash tag, so they live in its slot.
// Index entries whose key Redis has expired are pruned on the way.
const LIST = `${LUA_ALIVE}
local now, limit, min, out = tonumber(ARGV[4]), tonumber(ARGV[3]), ARGV[1], {}
while true do
  local members = redis.call('ZRANGEBYLEX', KEYS[1], min, ARGV[2], 'LIMIT', 0, ${LIST_CHUNK})
  for _, member in ipairs(members) do
    local raw = redis.call('GET', ARGV[5] .. member)
    if not raw then
      redis.call('ZREM', KEYS[1], member)
    elseif alive(raw, now) then
      out[#out + 1] = member
      out[#out + 1] = raw
      if #out == 2 * limit then return out end
    end
  end
  if #members < ${LIST_CHUNK} then return out end
  min = '(' .. members[#members]
end
`;

// KEYS: group index. ARGV: now, the group's key prefix. Returns how many live members it removed.
const REMOVE_GROUP = `${LUA_ALIVE}
local now, removed = tonumber(ARGV[1]), 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local raw = redis.call('GET', ARGV[2] .. member)
  if raw then
    if alive(raw, now) then removed = removed + 1 end
    redis.call('DEL', ARGV[2] .. member)
  end
end
redis.call('DEL', KEYS[1])
return removed
`;

/** A script and the SHA1 that EVALSHA names it by. */
export interface Script {
  source: string;
  sha: string;
}

const script = (source: string): Script => ({ source, sha: createHash('sha1').update(source).digest('hex') });
/** Every script, by the operation it serves. */
export const SCRIPTS = {
  put: script(PUT),
  insert: script(INSERT),
  replace: script(REPLACE),
  remove: script(REMOVE),
  list: script(LIST),
  removeGroup: script(REMOVE_GROUP),
  batch: script(BATCH),
  increment: script(INCREMENT),
};
