-- keygate sliding-window limiter: one atomic decision per key, for one or
-- more requests at once (the batching limiter sends many in one run; each is
-- decided in turn, exactly as if it had been a script run of its own).
--
-- KEYS[i]      the hash of request i's key:
--                "s"        bucket size (ms) the hash was written with
--                "t"        the sum of all bucket counts in the hash
--                "l"        the lowest bucket index in the hash
--                "<index>"  requests counted in bucket <index>
--                           (index = floor(ms / size))
-- ARGV[1]      bucket size in milliseconds
-- ARGV[2]      N, the number of buckets per window
-- ARGV[3i]     request i's limit L (>= 1)
-- ARGV[3i+1]   want: >= 1 asks for a decision and, when more than 1, for a
--              lease of up to want slots; -k returns k unused leased slots
-- ARGV[3i+2]   for a lease (want > 1), its lifetime h in buckets (1 to
--              H = max(1, floor(N / 4)); 0 or missing: 1); for a return,
--              the bucket the lease was counted in
--
-- A request in bucket i is accepted when buckets i-N .. i (and any later
-- ones) hold fewer than L requests. Returns, per request, {allowed (0|1),
-- remaining, reset ms, retry-after ms, granted slots, bucket counted in},
-- flattened; a return gives six zeros.
--
-- Leases (see the package doc for the proof that they stay exact): the
-- slots of a lease asked for with lifetime h, to be used within h bucket
-- lengths from now, are counted in bucket cur + h, the latest one in which a
-- leased slot can be used, so every window that can contain one of those
-- uses counts all of them. A grant takes at most 1 + (L - sum - 1) / 8
-- slots, so near the limit leases shrink to single requests and nodes
-- cannot starve each other.
--
-- Why "t" and "l": a hash whose lowest bucket is still inside the window
-- holds no stale bucket, so "t" is the window's count and the decision needs
-- one HMGET instead of reading and summing every bucket. Only when "l" has
-- left the window (at most once per bucket and key) or the request is
-- rejected (Retry-After needs the per-bucket counts) is the whole hash read.

local size = tonumber(ARGV[1])
local n = tonumber(ARGV[2])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = math.floor(now / size)
local oldest = cur - n
local maxh = math.max(1, math.floor(n / 4))
-- Every bucket written now is cur to cur + maxh: the hash must outlive
-- them all (and a later call's TTL is never shorter).
local ttl = (cur + n + maxh + 1) * size - now

-- rebuild reads the whole hash, deletes the buckets that left the window
-- and returns the live buckets sorted by index, their sum and the lowest
-- index (nil when none).
local function rebuild(key)
	local raw = redis.call('HGETALL', key)
	local live = {}
	local stale = {}
	local sum = 0
	for i = 1, #raw, 2 do
		local f = raw[i]
		local b = tonumber(f)
		if b ~= nil then
			if b < oldest then
				stale[#stale + 1] = f
			else
				-- A bucket ahead of cur (a lease, or the server clock
				-- stepped back) counts too.
				local c = tonumber(raw[i + 1])
				live[#live + 1] = { b, c }
				sum = sum + c
			end
		end
	end
	if #stale > 0 then
		redis.call('HDEL', key, unpack(stale))
	end
	table.sort(live, function(a, b) return a[1] < b[1] end)
	local low = nil
	if #live > 0 then
		low = live[1][1]
	end
	return live, sum, low
end

-- giveBack uncounts k leased slots from bucket b of key, if the hash and
-- the bucket are still there (else they have left the window anyway).
local function giveBack(key, k, b)
	local h = redis.call('HMGET', key, 's', 't', b)
	if tonumber(h[1]) ~= size or not h[3] then
		return
	end
	local c = tonumber(h[3])
	if k > c then
		k = c
	end
	if k == c then
		redis.call('HDEL', key, b)
		-- "l" may have named this bucket: have the next decision rebuild.
		redis.call('HSET', key, 't', tonumber(h[2]) - k, 'l', -1)
	else
		redis.call('HINCRBY', key, b, -k)
		redis.call('HINCRBY', key, 't', -k)
	end
end

local out = {}
for k = 1, #KEYS do
	local key = KEYS[k]
	local limit = tonumber(ARGV[3 * k])
	local want = tonumber(ARGV[3 * k + 1])
	if want < 0 then
		giveBack(key, -want, ARGV[3 * k + 2])
		for _ = 1, 6 do
			out[#out + 1] = 0
		end
	else
		local h = redis.call('HMGET', key, 's', 't', 'l')
		local sum, low, live
		local write = false -- "s", "t" and "l" must all be (re)written
		if h[1] and tonumber(h[1]) ~= size then
			-- The window changed: start afresh.
			redis.call('DEL', key)
			h = { false, false, false }
		end
		if not h[1] then
			sum, low, live, write = 0, nil, {}, true
		elseif not h[2] or not h[3] or tonumber(h[3]) < oldest then
			live, sum, low = rebuild(key)
			write = true
		else
			sum, low = tonumber(h[2]), tonumber(h[3])
		end

		local allowed, retry, granted, bucket = 0, 0, 0, 0
		if sum < limit then
			allowed = 1
			granted = 1
			if want > 1 then
				local extra = math.floor((limit - sum - 1) / 8)
				if extra > want - 1 then
					extra = want - 1
				end
				granted = granted + extra
			end
			bucket = cur
			if want > 1 then
				local h = tonumber(ARGV[3 * k + 2]) or 1
				if h < 1 then
					h = 1
				elseif h > maxh then
					h = maxh
				end
				bucket = cur + h
			end
			sum = sum + granted
			if low == nil or bucket < low then
				low = bucket
			end
			local field = string.format('%d', bucket)
			if redis.call('HINCRBY', key, field, granted) == granted or write then
				-- A new bucket: the hash must outlive it by one window.
				redis.call('HSET', key, 's', size, 't', sum, 'l', low)
				redis.call('PEXPIRE', key, ttl)
			else
				redis.call('HSET', key, 't', sum)
			end
		else
			if live == nil then
				live, sum, low = rebuild(key)
			end
			if write then
				redis.call('HSET', key, 's', size, 't', sum, 'l', low or cur)
			end
			-- Walk the buckets oldest first until enough quota has left.
			local need = sum - limit + 1
			local freed = 0
			for _, e in ipairs(live) do
				freed = freed + e[2]
				if freed >= need then
					retry = (e[1] + n + 1) * size - now
					break
				end
			end
		end

		local reset = 0
		if low ~= nil and sum > 0 then
			reset = (low + n + 1) * size - now
		end
		local remaining = limit - sum
		if remaining < 0 then
			remaining = 0
		end
		out[#out + 1] = allowed
		out[#out + 1] = remaining
		out[#out + 1] = reset
		out[#out + 1] = retry
		out[#out + 1] = granted
		out[#out + 1] = bucket
	end
end
return out
