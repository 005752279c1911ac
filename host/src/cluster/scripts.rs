//! The Lua scripts that change live presence in Redis. Each runs atomically,
//! so exactly one node observes each change of a user's cluster-wide status,
//! and the `user_status` event is published by the same script that made the
//! change: events leave in the order of their sequence numbers.
//!
//! Every script takes the key prefix as `ARGV[1]`; keys are built from it
//! (see docs/architecture.md), which a standalone Redis allows.

use redis::Script;

/// A `_seen`-only hash (the user is offline everywhere) lives this long;
/// the database keeps `last_seen` for good.
const SEEN_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

const COMMON: &str = r#"
local P = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function int(x) return string.format('%.0f', x) end
-- Status changes, `user|status|at|last_seen`, but for a replay's online or
-- away: returned to the node that ran the script, which alone reports them.
local changes = {}
-- A user's status across nodes: online if any node says online, away if
-- every node says away, offline with no node; last activity is the latest.
local function agg(key)
  local vals = redis.call('HGETALL', key)
  local st, act, seen = 'offline', 0, nil
  for i = 1, #vals, 2 do
    local f, v = vals[i], vals[i + 1]
    if f == '_seen' then
      seen = tonumber(v)
    else
      local ms = tonumber(string.sub(v, 2)) or 0
      if string.sub(v, 1, 1) == 'o' then st = 'online' elseif st ~= 'online' then st = 'away' end
      if ms > act then act = ms end
    end
  end
  return st, act, seen
end
-- Sequence numbers are Redis time in microseconds (at least last + 1), so
-- they keep growing across a Redis restart that loses the counter. A replay
-- (a node republishing its state) is marked so that nodes drop it where
-- watchers were already told that status.
local function announce(user, st, act, seen, now, replay)
  local last = tonumber(redis.call('GET', P .. ':seq') or '0')
  local seq = now * 1000
  if seq <= last then seq = last + 1 end
  redis.call('SET', P .. ':seq', int(seq))
  local ls = ''
  if st == 'away' then ls = int(act) elseif st == 'offline' and seen then ls = int(seen) end
  redis.call('PUBLISH', P .. ':status:' .. user,
    user .. '|' .. st .. '|' .. int(now) .. '|' .. ls .. '|' .. int(seq) .. '|' .. (replay and '1' or '0'))
end
-- Sets (or with value '' removes) one node's entry for a user; announces
-- the user's status when it changed, or always when forced. Returns the
-- last seen (ms) when the user went offline everywhere, else nil.
local function apply(node, user, value, seen, force, replay, now)
  local key = P .. ':live:' .. user
  local before = agg(key)
  if value == '' then
    redis.call('HDEL', key, node)
    redis.call('SREM', P .. ':node:' .. node, user)
  else
    redis.call('HSET', key, node, value)
    redis.call('SADD', P .. ':node:' .. node, user)
  end
  local st, act, s = agg(key)
  -- Kept even while other nodes still hold the user: whichever node they
  -- leave last, their last seen is the latest of every node's.
  if seen and (not s or seen > s) then
    s = seen
    redis.call('HSET', key, '_seen', int(s))
  end
  if st == 'offline' then
    redis.call('PEXPIRE', key, SEEN_TTL_MS)
  else
    redis.call('PERSIST', key)
  end
  if st ~= before or force then announce(user, st, act, s, now, replay) end
  -- A replay republishes what was told before, but an offline is news.
  if st ~= before and (not replay or st == 'offline') then
    local ls = ''
    if st == 'away' then ls = int(act) elseif st == 'offline' and s then ls = int(s) end
    changes[#changes + 1] = user .. '|' .. st .. '|' .. int(now) .. '|' .. ls
  end
  if st == 'offline' and before ~= 'offline' then return s or now end
  return nil
end
"#;

/// `ARGV`: prefix, node, flags, lease ms, then `user, value, seen_ms`
/// triples (value `o<ms>`/`a<ms>` = online/away with last activity, `''` =
/// gone). Flags: `f` announces every listed user even if unchanged; `r`
/// marks a part of the node's whole state (it renews the lease, its
/// announcements are replays, and its users are remembered in the sync
/// set); `b` begins a whole state (empties the sync set); `e` ends it (the
/// node's users no part listed are dropped). A whole state comes in several
/// calls so that none holds Redis for long. Returns `lease` (`1`, or `0`
/// when the node holds no lease: then nothing was written, since a node
/// taken for dead must republish its whole state), then `user, seen_ms`
/// pairs of users now offline everywhere, then `#` and the status changes.
const UPDATE: &str = r#"
local node, flags, ttl = ARGV[2], ARGV[3], tonumber(ARGV[4])
local force = string.find(flags, 'f', 1, true) ~= nil
local whole = string.find(flags, 'r', 1, true) ~= nil
local now = now_ms()
local members, synced = P .. ':node:' .. node, P .. ':sync:' .. node
local lease = redis.call('ZSCORE', P .. ':nodes', node)
if not whole and not lease then return { '0' } end
-- Users left over from a run that died were last seen at its last renewal.
local left_at = now
if lease then left_at = math.min(now, tonumber(lease) - ttl) end
if whole then redis.call('ZADD', P .. ':nodes', now + ttl, node) end
if string.find(flags, 'b', 1, true) then redis.call('DEL', synced) end
local out = { '1' }
for i = 5, #ARGV, 3 do
  local user = ARGV[i]
  if whole then redis.call('SADD', synced, user) end
  local gone = apply(node, user, ARGV[i + 1], tonumber(ARGV[i + 2]), force, whole, now)
  if gone then out[#out + 1] = user; out[#out + 1] = int(gone) end
end
if string.find(flags, 'e', 1, true) then
  for _, user in ipairs(redis.call('SDIFF', members, synced)) do
    local gone = apply(node, user, '', left_at, force, whole, now)
    if gone then out[#out + 1] = user; out[#out + 1] = int(gone) end
  end
  redis.call('DEL', synced)
end
out[#out + 1] = '#'
for _, c in ipairs(changes) do out[#out + 1] = c end
return out
"#;

/// `ARGV`: prefix, node, lease ms, reap (`1`/`0`). Renews this node's
/// lease, then (when reaping) ends the leases that expired: their users
/// leave (offline, with the dead node's last heartbeat as last seen, unless
/// connected elsewhere), and `gone|node` goes to every node. Returns
/// `registered, user, seen_ms, …, #, changes…` where `registered` is 1 if this node had
/// no lease (it was taken for dead, or Redis lost it) and must publish its
/// whole state again. A node whose own lease had run out (it, or Redis,
/// stalled) reaps nobody: the others were likely as late as it was.
const HEARTBEAT: &str = r#"
local node, ttl = ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local nodes = P .. ':nodes'
local mine = redis.call('ZSCORE', nodes, node)
local out = { redis.call('ZADD', nodes, now + ttl, node) }
if ARGV[4] ~= '1' or not mine or tonumber(mine) < now then return out end
local expired = redis.call('ZRANGEBYSCORE', nodes, '-inf', now, 'WITHSCORES')
for i = 1, #expired, 2 do
  local dead, seen = expired[i], tonumber(expired[i + 1]) - ttl
  redis.call('ZREM', nodes, dead)
  local members = P .. ':node:' .. dead
  for _, user in ipairs(redis.call('SMEMBERS', members)) do
    local gone = apply(dead, user, '', seen, false, false, now)
    if gone then out[#out + 1] = user; out[#out + 1] = int(gone) end
  end
  redis.call('DEL', members, P .. ':sync:' .. dead)
  redis.call('PUBLISH', P .. ':bus', 'gone|' .. dead)
end
out[#out + 1] = '#'
for _, c in ipairs(changes) do out[#out + 1] = c end
return out
"#;

pub struct Scripts {
    pub update: Script,
    pub heartbeat: Script,
}

impl Default for Scripts {
    fn default() -> Scripts {
        let with_common = |body: &str| {
            Script::new(&format!(
                "local SEEN_TTL_MS = {SEEN_TTL_MS}\n{COMMON}\n{body}"
            ))
        };
        Scripts {
            update: with_common(UPDATE),
            heartbeat: with_common(HEARTBEAT),
        }
    }
}
