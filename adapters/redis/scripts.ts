/**
 * The Redis adapter's Lua scripts: every operation that reads and writes in one step runs
 * as one script, so it is atomic on the server. Each group script touches only keys of one
 * group (one hash tag), so it runs in one slot on Cluster; outside Cluster, a batch or
 * removeGroup with an index also names the index's sorted set in its KEYS and changes it in
 * the same script. The index scripts (`indexRead`, `indexAcquire`, `indexFinish`,
 * `indexDecide`) serve the Cluster protocol described on `createRedisStore`. Records are
 * spliced as text, never decoded. Internal to the Redis adapter.
 */
import { createHash } from 'node:crypto';

/** Members fetched per ZRANGEBYLEX inside the list script. */
const LIST_CHUNK = 100;
/** Stale intents one index read hands back for resolving, at most. */
export const STALE_CHUNK = 16;

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

// How a batch or removeGroup keeps an index (rule 10), by the mode it is given:
// '' none; 'local' (not Cluster): one mode key, the index's sorted set, and a = the entry,
// changed in this same script; 'cluster': one mode key, the group's marks hash, a = the
// mark's field (`<index> <entry>`), b = the intent's sequence number, c = the last instant
// (the index master's clock, ms) the step may still run. A cluster step is fenced, and
// changes nothing, when its time has passed or the field already holds this or a later
// sequence number (its intent was resolved without it); on success it marks `<seq>:c`.
const LUA_INDEX = `
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function fenced(marks, field, seq, last)
  if clock() > tonumber(last) then return true end
  local mark = redis.call('HGET', marks, field)
  return mark ~= false and tonumber(string.match(mark, '^(%d+)')) >= tonumber(seq)
end
-- Marks of an emptied group outlive it by the fence time, then go.
local function fade(marks, fence)
  local pttl = redis.call('PTTL', marks)
  if pttl == -1 or (pttl >= 0 and pttl < fence) then redis.call('PEXPIRE', marks, fence) end
end
`;

// KEYS: group index, [required member key], mode keys (see LUA_INDEX), then one member key
// per write. ARGV: now, has-required (0/1), fault (1 = fail after the checks), mode, a, b,
// c, then four per write: op, member, a, b (put: record, v as JSON; insert: record,
// expires or ''; replace: new v as JSON, expected v as JSON; remove: -, -). Every check
// runs before the first write, and a script runs to completion, so the batch is all or
// nothing. Returns {1, results...}, {0, index of the failing write, -1 for the required
// member}, or {2} when a cluster step is fenced.
const BATCH = `${LUA_ALIVE}${LUA_PUT}${LUA_INDEX}
local now, required, fault, mode = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local idx, modeKey = KEYS[1], KEYS[2 + required]
local first = 2 + required + (mode == '' and 0 or 1)
if mode == 'cluster' and fenced(modeKey, ARGV[5], ARGV[6], ARGV[7]) then return {2} end
if required == 1 and not alive(redis.call('GET', KEYS[2]), now) then return {0, -1} end
local olds = {}
for j = 0, #KEYS - first do
  local old, op = redis.call('GET', KEYS[first + j]), ARGV[8 + j * 4]
  olds[j + 1] = old
  local live = alive(old, now)
  if op == 'insert' and live then return {0, j} end
  if op == 'replace' and not (live and holds(old, ARGV[11 + j * 4])) then return {0, j} end
end
if fault == '1' then return redis.error_reply('ERR credvault injected fault') end
local out = {1}
for j = 0, #KEYS - first do
  local key, old = KEYS[first + j], olds[j + 1]
  local op, member, a, b = ARGV[8 + j * 4], ARGV[9 + j * 4], ARGV[10 + j * 4], ARGV[11 + j * 4]
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
if mode == 'local' then
  redis.call('ZADD', modeKey, 0, ARGV[5])
elseif mode == 'cluster' then
  redis.call('HSET', modeKey, ARGV[5], ARGV[6] .. ':c')
  redis.call('PERSIST', modeKey)
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

// KEYS: group index, the group's marks hash, [the index's sorted set, mode 'local'].
// ARGV: now, the group's key prefix, mode, a, b, c (as for BATCH), the fence time (ms).
// Returns how many live members it removed, or -1 when a cluster step is fenced. The
// group's marks are left to fade: they still fence late steps of earlier intents.
const REMOVE_GROUP = `${LUA_ALIVE}${LUA_INDEX}
local now, mode, fence = tonumber(ARGV[1]), ARGV[3], tonumber(ARGV[7])
if mode == 'cluster' and fenced(KEYS[2], ARGV[4], ARGV[5], ARGV[6]) then return -1 end
local removed = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local raw = redis.call('GET', ARGV[2] .. member)
  if raw then
    if alive(raw, now) then removed = removed + 1 end
    redis.call('DEL', ARGV[2] .. member)
  end
end
redis.call('DEL', KEYS[1])
if mode == 'local' then
  redis.call('ZREM', KEYS[3], ARGV[4])
elseif mode == 'cluster' then
  redis.call('HSET', KEYS[2], ARGV[4], ARGV[5] .. ':c')
end
if redis.call('EXISTS', KEYS[2]) == 1 then fade(KEYS[2], fence) end
return removed
`;

// KEYS: the index's sorted set, its leases, its intents. ARGV: offset, last rank (offset +
// limit - 1). Total and page come from the sorted set alone, at one instant. When an
// intent's lease has run out it returns {-1, entry, intent, ...} instead, for the caller
// to resolve before it reads again.
const INDEX_READ = `${LUA_INDEX}
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', clock(), 'LIMIT', 0, ${STALE_CHUNK})
if #stale > 0 then
  local out = {-1}
  for _, entry in ipairs(stale) do
    out[#out + 1] = entry
    out[#out + 1] = redis.call('HGET', KEYS[3], entry) or ''
  end
  return out
end
local out = {redis.call('ZCARD', KEYS[1])}
for _, entry in ipairs(redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2])) do out[#out + 1] = entry end
return out
`;

// KEYS: the index's intents, its leases, its sequence counter. ARGV: entry, op ('add' or
// 'remove'), group, lease (ms). Takes the entry's intent like a lock: {1, seq, now} when
// taken, else {0, the holding intent, ms left on its lease (0 or less: run out)}.
const INDEX_ACQUIRE = `${LUA_INDEX}
local now = clock()
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held then
  local expires = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]) or now)
  return {0, held, expires - now}
end
local seq = string.format('%d', redis.call('INCR', KEYS[3]))
redis.call('HSET', KEYS[1], ARGV[1], seq .. ' ' .. ARGV[2] .. ' ' .. ARGV[3])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
return {1, seq, now}
`;

// KEYS: the index's sorted set, its intents, its leases. ARGV: entry, seq, what to apply
// ('add', 'remove' or 'none'). Applies it and clears the intent only while the intent is
// still that seq's: 1 if so, 0 if another call resolved it first.
const INDEX_FINISH = `
local held = redis.call('HGET', KEYS[2], ARGV[1])
if not held then
  -- A lease without its intent means nothing; dropping it keeps reads from looping on it.
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 0
end
if string.match(held, '^(%d+) ') ~= ARGV[2] then return 0 end
if ARGV[3] == 'add' then
  redis.call('ZADD', KEYS[1], 0, ARGV[1])
elseif ARGV[3] == 'remove' then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
`;

// KEYS: the group's marks hash. ARGV: field, seq, fence time (ms). Decides, in the group's
// slot, whether an intent's group step ran: 1 if it marked the field, else 0, and then the
// field is fenced (`<seq>:a`) so that a late step of that intent can never run.
const INDEX_DECIDE = `${LUA_INDEX}
local seq, fence = tonumber(ARGV[2]), tonumber(ARGV[3])
local existed = redis.call('EXISTS', KEYS[1]) == 1
local mark = redis.call('HGET', KEYS[1], ARGV[1])
if mark then
  local at, state = string.match(mark, '^(%d+):(%a)$')
  if tonumber(at) == seq and state == 'c' then return 1 end
  if tonumber(at) >= seq then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':a')
-- A fence in a hash of its own fades; one in a live group's marks lasts as they do.
local pttl = existed and redis.call('PTTL', KEYS[1]) or -2
if pttl == -2 or (pttl >= 0 and pttl < fence) then redis.call('PEXPIRE', KEYS[1], fence) end
return 0
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
  indexRead: script(INDEX_READ),
  indexAcquire: script(INDEX_ACQUIRE),
  indexFinish: script(INDEX_FINISH),
  indexDecide: script(INDEX_DECIDE),
};
