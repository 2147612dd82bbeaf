-- keygate sliding-window limiter: one atomic decision for one key.
--
-- KEYS[1]  the key's hash: field "s" = bucket size (ms); field "<index>" =
--          requests accepted in bucket <index> (index = floor(ms / size)).
-- ARGV[1]  limit L (>= 1)
-- ARGV[2]  bucket size in milliseconds
-- ARGV[3]  N, the number of buckets per window
--
-- A request in bucket i is accepted when buckets i-N .. i hold fewer than L
-- requests. Returns {allowed (0|1), remaining, reset ms, retry-after ms}.

if redis.replicate_commands then
	pcall(redis.replicate_commands)
end

local key = KEYS[1]
local limit = tonumber(ARGV[1])
local size = tonumber(ARGV[2])
local n = tonumber(ARGV[3])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = math.floor(now / size)
local oldest = cur - n

local raw = redis.call('HGETALL', key)
local counted = {}
local stale = {}
local sum = 0
local sized = false
for i = 1, #raw, 2 do
	local f = raw[i]
	if f == 's' then
		if tonumber(raw[i + 1]) ~= size then
			-- The window changed: start afresh.
			redis.call('DEL', key)
			counted = {}
			stale = {}
			sum = 0
			break
		end
		sized = true
	else
		local b = tonumber(f)
		if b < oldest then
			stale[#stale + 1] = f
		else
			-- A bucket ahead of cur (server clock stepped back) is counted too.
			local c = tonumber(raw[i + 1])
			counted[#counted + 1] = { b, c }
			sum = sum + c
		end
	end
end
if #stale > 0 then
	redis.call('HDEL', key, unpack(stale))
end

local allowed = 0
if sum < limit then
	allowed = 1
	sum = sum + 1
	local field = string.format('%d', cur)
	if sized then
		redis.call('HINCRBY', key, field, 1)
	else
		redis.call('HSET', key, 's', size, field, 1)
	end
	redis.call('PEXPIRE', key, (n + 1) * size)
	local found = false
	for _, e in ipairs(counted) do
		if e[1] == cur then
			e[2] = e[2] + 1
			found = true
		end
	end
	if not found then
		counted[#counted + 1] = { cur, 1 }
	end
end

table.sort(counted, function(a, b) return a[1] < b[1] end)

local reset = 0
local retry = 0
for _, e in ipairs(counted) do
	if e[2] > 0 then
		reset = (e[1] + n + 1) * size - now
		break
	end
end
if allowed == 0 then
	local need = sum - limit + 1
	local freed = 0
	for _, e in ipairs(counted) do
		freed = freed + e[2]
		if freed >= need then
			retry = (e[1] + n + 1) * size - now
			break
		end
	end
end

local remaining = limit - sum
if remaining < 0 then
	remaining = 0
end
return { allowed, remaining, reset, retry }
