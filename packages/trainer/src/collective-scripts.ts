/**
 * Lua scripts of the Redis collective. Each runs atomically in Redis, which is what makes the
 * rendezvous decisions (open a generation, refuse a duplicate rank or a wrong world size) and the
 * "last arrived releases everyone" barriers race-free. Key layout: collective-keys.ts. The
 * generation prefix is rebuilt here as `{runPrefix}g{gen}.{token}:`.
 */

const NS = `local function ns(prefix, gen, tok) return prefix .. 'g' .. gen .. '.' .. tok .. ':' end`;

/**
 * JOIN — KEYS: rdzv. ARGV: rank, world, member, hbTtl, rdzvTtl, runPrefix, newToken, goTtl.
 * Returns {status, gen, token, joined, staleNamespace, message}; status is
 *  - `joined`: registered (joined = members so far; when it equals world the generation is
 *    closed and the waiting ranks are released through `{G}go`);
 *  - `wait`: a generation with live members is in progress or failing; retry later;
 *  - `error`: refused (duplicate rank, world size mismatch); the open generation is marked failed
 *    so that its waiting members fail with the same message.
 * A generation none of whose members has a live heartbeat is stale: it is replaced by a new one
 * (gen + 1, new token) and its namespace returned for cleanup.
 */
export const JOIN_LUA = `${NS}
local rdzv = KEYS[1]
local rank = tonumber(ARGV[1])
local world = tonumber(ARGV[2])
local me = ARGV[3]
local hbttl = ARGV[4]
local rttl = ARGV[5]
local prefix = ARGV[6]
local newtok = ARGV[7]
local gottl = ARGV[8]

local function alive(gen, tok, r)
  local v = redis.call('GET', ns(prefix, gen, tok) .. 'hb:' .. r)
  return v and string.sub(v, 1, 6) == 'alive|'
end

local function open(gen, staleNs, staleMsg)
  redis.call('DEL', rdzv)
  local state = 'open'
  if world == 1 then state = 'closed' end
  redis.call('HSET', rdzv, 'gen', gen, 'token', newtok, 'world', world, 'state', state, 'creator', rank, 'm' .. rank, me)
  redis.call('PEXPIRE', rdzv, rttl)
  redis.call('SET', ns(prefix, gen, newtok) .. 'hb:' .. rank, 'alive|' .. me, 'PX', hbttl)
  return {'joined', gen, newtok, 1, staleNs, staleMsg}
end

if redis.call('EXISTS', rdzv) == 0 then return open(1, '', '') end
local f = redis.call('HGETALL', rdzv)
local h = {}
for i = 1, #f, 2 do h[f[i]] = f[i + 1] end
local gen = tonumber(h['gen']) or 0
local tok = h['token'] or ''
local w0 = tonumber(h['world']) or 0
local state = h['state'] or '?'
local live = {}
for r = 0, w0 - 1 do
  if h['m' .. r] and alive(gen, tok, r) then live[#live + 1] = r end
end
if #live == 0 then
  return open(gen + 1, ns(prefix, gen, tok),
    'generation ' .. gen .. ' (worldSize ' .. w0 .. ', ' .. state .. ') has no live member')
end
local livestr = table.concat(live, ', ')
if state == 'failed' then
  return {'wait', gen, tok, 0, '', 'generation ' .. gen .. ' failed (' .. (h['error'] or '?') ..
    ') and its ranks ' .. livestr .. ' are still alive'}
end
if state == 'closed' then
  return {'wait', gen, tok, 0, '', 'generation ' .. gen .. ' (worldSize ' .. w0 ..
    ') is in progress with live ranks ' .. livestr}
end
if w0 ~= world then
  local msg = 'worldSize mismatch: rank ' .. rank .. ' announced worldSize ' .. world .. ' but rank ' ..
    (h['creator'] or '?') .. ' announced worldSize ' .. w0 .. ' (generation ' .. gen .. ')'
  redis.call('HSET', rdzv, 'state', 'failed', 'error', msg)
  return {'error', gen, tok, 0, '', msg}
end
local holder = h['m' .. rank]
if holder and holder ~= me and alive(gen, tok, rank) then
  local msg = 'duplicate rank ' .. rank .. ': registered by the live process ' .. holder ..
    ' and again by ' .. me .. ' (generation ' .. gen .. ')'
  redis.call('HSET', rdzv, 'state', 'failed', 'error', msg)
  return {'error', gen, tok, 0, '', msg}
end
redis.call('HSET', rdzv, 'm' .. rank, me)
redis.call('PEXPIRE', rdzv, rttl)
redis.call('SET', ns(prefix, gen, tok) .. 'hb:' .. rank, 'alive|' .. me, 'PX', hbttl)
local joined = 0
for r = 0, world - 1 do
  if redis.call('HEXISTS', rdzv, 'm' .. r) == 1 then joined = joined + 1 end
end
if joined == world then
  redis.call('HSET', rdzv, 'state', 'closed')
  local go = ns(prefix, gen, tok) .. 'go'
  for i = 1, world - 1 do redis.call('RPUSH', go, 'go') end
  redis.call('PEXPIRE', go, gottl)
end
return {'joined', gen, tok, joined, '', ''}
`;

/**
 * HEALTH — KEYS: rdzv. ARGV: token, world, generationPrefix.
 * Returns {'stale', currentGen, currentState} when the rendezvous record is gone or belongs to
 * another generation, else {'ok', state, error, abort, hb_0 … hb_{world−1}} with each hb one of
 * alive | closed | dead (registered, heartbeat expired) | absent (not registered yet).
 */
export const HEALTH_LUA = `
local h = redis.call('HMGET', KEYS[1], 'token', 'state', 'error', 'gen')
if h[1] ~= ARGV[1] then return {'stale', h[4] or '', h[2] or ''} end
local ns = ARGV[3]
local out = {'ok', h[2] or '', h[3] or '', redis.call('GET', ns .. 'abort') or ''}
for r = 0, tonumber(ARGV[2]) - 1 do
  local v = redis.call('GET', ns .. 'hb:' .. r)
  if v then
    if string.sub(v, 1, 6) == 'alive|' then out[#out + 1] = 'alive' else out[#out + 1] = 'closed' end
  elseif redis.call('HEXISTS', KEYS[1], 'm' .. r) == 1 then
    out[#out + 1] = 'dead'
  else
    out[#out + 1] = 'absent'
  end
end
return out
`;

/**
 * BEAT — KEYS: rdzv, hb. ARGV: token, value, hbTtl, rdzvTtl. Refreshes this rank's heartbeat
 * and the rendezvous record, unless the generation was replaced ('stale').
 */
export const BEAT_LUA = `
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 'stale' end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 'ok'
`;

/**
 * CLOSE — KEYS: rdzv, hb. ARGV: token, member, world, generationPrefix, markerTtl.
 * Marks this rank closed; the last live member deletes the rendezvous record and every
 * heartbeat ('last' — the caller then sweeps the generation's namespace).
 */
export const CLOSE_LUA = `
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then
  redis.call('DEL', KEYS[2])
  return 'stale'
end
redis.call('SET', KEYS[2], 'closed|' .. ARGV[2], 'PX', ARGV[5])
local ns = ARGV[4]
local world = tonumber(ARGV[3])
for r = 0, world - 1 do
  local v = redis.call('GET', ns .. 'hb:' .. r)
  if v and string.sub(v, 1, 6) == 'alive|' then return 'left' end
end
redis.call('DEL', KEYS[1])
for r = 0, world - 1 do redis.call('DEL', ns .. 'hb:' .. r) end
return 'last'
`;

/**
 * ARRIVE — KEYS: rdzv, abort, arrivals (hash), go (list) [, valueKey].
 * ARGV: token, rank, world, tag, ttl [, value].
 * Records the arrival (and the all-gather value); the last of the `world` ranks deletes the
 * arrivals and pushes world−1 release messages: 'go', or 'mismatch|…' when the tags differ.
 * Returns {'stale', currentGen} | {'abort', message} | {'wait'} | {releaseMessage}.
 */
export const ARRIVE_LUA = `
local h = redis.call('HMGET', KEYS[1], 'token', 'gen')
if h[1] ~= ARGV[1] then return {'stale', h[2] or ''} end
local abort = redis.call('GET', KEYS[2])
if abort then return {'abort', abort} end
if KEYS[5] then redis.call('SET', KEYS[5], ARGV[6], 'PX', ARGV[5]) end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
local world = tonumber(ARGV[3])
if redis.call('HLEN', KEYS[3]) < world then return {'wait'} end
local msg = 'go'
for r = 0, world - 1 do
  local t = redis.call('HGET', KEYS[3], r)
  if t ~= ARGV[4] then
    local parts = {}
    for q = 0, world - 1 do parts[#parts + 1] = 'rank ' .. q .. ' ' .. (redis.call('HGET', KEYS[3], q) or '?') end
    msg = 'mismatch|' .. table.concat(parts, ', ')
    break
  end
end
redis.call('DEL', KEYS[3])
for i = 1, world - 1 do redis.call('RPUSH', KEYS[4], msg) end
if world > 1 then redis.call('PEXPIRE', KEYS[4], ARGV[5]) end
return {msg}
`;

/**
 * ACK — KEYS: ack counter, then the keys to delete once everyone has read them.
 * ARGV: readers, ttl. The last of `readers` UNLINKs them all (the counter included).
 */
export const ACK_LUA = `
local n = redis.call('INCR', KEYS[1])
if n >= tonumber(ARGV[1]) then
  redis.call('UNLINK', unpack(KEYS))
  return 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0
`;

/** PUSH — KEYS: list. ARGV: ttl, message... RPUSH with an expiry, in one command. */
export const PUSH_LUA = `
for i = 2, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
`;

/**
 * PREFLIGHT — KEYS: rdzv, abort. ARGV: token. At the start of a call: 'ok', 'stale|{currentGen}'
 * when the generation was replaced, or 'abort|{message}' when a rank has failed.
 */
export const PREFLIGHT_LUA = `
local h = redis.call('HMGET', KEYS[1], 'token', 'gen')
if h[1] ~= ARGV[1] then return 'stale|' .. (h[2] or '') end
local abort = redis.call('GET', KEYS[2])
if abort then return 'abort|' .. abort end
return 'ok'
`;
