// Package ratelimit is keygate's per-user request limiter: an exact sliding
// window kept in Redis by one Lua script (shared by every gateway node), the
// same window in process for the embedded store and for fail-open counting, a
// circuit breaker, and the IETF RateLimit response headers.
//
// # Algorithm
//
// A window W is split into N sub-buckets (DefaultBuckets = 12, so 10 s each
// for the default 2-minute window) of size s = ceil(W/N), aligned on the
// epoch. A request arriving in bucket i is accepted when the sum of the
// counts of buckets i-N … i (the current bucket and the N buckets before it,
// N+1 buckets in all) is below the limit L; an accepted request increments
// bucket i, a rejected one changes nothing (no penalty lockout).
//
// Because the N+1 counted buckets always cover the whole preceding window,
// over ANY interval one window long at most L requests are accepted: there
// is no boundary burst and no error in the count. The price is timing: a
// request's slot is returned when its bucket leaves the counted range, which
// is between W and W+s after the request was accepted. The worst-case error
// is therefore in acceptance timing only: quota comes back at most one
// sub-bucket (W/N, 10 s for the defaults) later than an ideal sliding log
// would return it, never earlier.
//
// Decision.Remaining is L minus the counted requests (after this one when it
// was accepted). Decision.Reset is the time until the oldest counted bucket
// leaves the window, that is until some quota frees (the draft's t=).
// Decision.RetryAfter, for a rejected request, is the time until enough
// buckets have left the window for one more request to be accepted.
//
// # Implementations
//
// NewRedis keeps each key's buckets in one Redis hash, updated by one
// atomic Lua script (window.lua), run with EVALSHA (EVAL on NOSCRIPT) and
// timed with Redis's own clock (TIME), so gateway clock skew does not matter
// and any number of nodes share one exact counter. Besides the buckets the
// hash holds their sum and the lowest bucket, so that the usual decision
// reads three fields instead of summing the window; the whole hash is read
// only when its lowest bucket has left the window or the request is
// rejected. The hash expires once every bucket it may hold, up to the one
// after the current one, has left the window. With RedisOptions.Batch, concurrent calls are coalesced: one
// round trip and one script run decide many requests, each in turn and
// atomically, so the decisions are those of one run per request (on a
// cluster, whose users sit in different slots, a pipeline of one run per
// request).
//
// # Leases
//
// With RedisOptions.Lease, a node that expects more than one request for a
// key asks, with the next request, for a lease: a number of slots it may
// use on its own, without Redis, for a lifetime of h buckets. The size is
// the key's demand on this node (the count of the last bucket length, or
// the rate of the current one once it is a quarter old) over the lifetime,
// capped by Lease and, in the script, by an eighth of the remaining quota,
// so that near the limit leases shrink to single requests. A busy key gets
// h = 1; a key too slow to use a full lease within one bucket gets a longer
// lifetime, up to H = max(1, N/4) buckets (a quarter window), so that a user
// with a few requests a minute is decided on its node too. A lease granted
// at Redis time g may be used until g + h·s (the node stops a few
// milliseconds early per bucket, measuring from before it sent the
// request), and its slots are counted in bucket b(g) + h, the bucket of its
// last possible use, not in b(g). A lease that is half used is renewed in
// the background, so a key in steady use never waits for Redis, and a node
// holds at most two leases per key (the current one and its renewal).
//
// Why that stays exact: take any interval I one window long, ending at T,
// and the last lease granted, at g*, among those with a use in I. A lease
// granted at g with lifetime h and a use at u in I is counted in bucket
// b(g) + h = b(g + h·s) >= b(u) >= b(T-W) >= b(g*) - N, so it was still
// counted when g* was decided (buckets ahead of the current one count too),
// as was every single request accepted in I before g*. The script granted
// g*'s slots only while the total stayed within L, so I holds at most L
// uses. The price is timing: a leased slot returns up to h buckets later
// than a single one. Unused slots are given back when the lease expires
// (piggybacked on the next batch), unless they are less than 1/256 of the
// quota that was left; a lease whose answer comes back after its lifetime
// (a round trip longer than a bucket) is given back whole, and so is one
// that comes back after a request with another limit or window reset the
// key's lease; a burst on a key that was quiet gets no lease at
// all, so a lease never sits unused while the same burst is refused
// elsewhere.
//
// NewLocal implements the same window in process (sharded maps, a sweeper
// for idle keys). Breaker and Guarded add the failure policy: a circuit
// breaker around Redis, then either an error (fail closed, the handler
// answers 503) or a decision by a local limiter marked Degraded (fail open).
//
// # Timeouts and the breaker
//
// Two budgets bound a call. RedisOptions.Timeout (50ms by default) is
// Redis's time: how long a round trip may take once it is on its way (with
// Batch, from the moment its batch is formed). RedisOptions.QueueTimeout
// (1s) is keygate's own time: how long a call may wait in the batching queue
// behind the batches in flight, which is what grows under a burst. A batch
// that fails although another batch was answered after it was sent (Redis,
// or the machine, is busy, not down) is run once more with QueueTimeout/2;
// its requests may then be counted twice, which spends quota and never
// admits more. A call is answered within 1.5 × QueueTimeout + Timeout.
//
// The Breaker opens on evidence that Redis is unreachable: round trips that
// failed (refused or dropped connections, no answer within Timeout, error
// replies), five in a row, failures in flight together counting once. A
// call that expired in the queue, or found it full, fails with ErrOverloaded
// (which wraps ErrUnavailable: no decision was made, so the route's failure
// policy applies), and the Breaker does not count it, so a burst against a
// slow but answering Redis costs latency and, at worst, individual 503s,
// never an open breaker for everyone.
//
// A key used with a different window than before starts afresh, because the
// bucket size changed.
//
// # Failover
//
// Redis replicates asynchronously, so the limit is exact only as long as the
// master that holds a key's hash lives. When it dies and its replica takes
// over (Sentinel, or Redis Cluster for the key's slot), the increments the
// old master had accepted but not yet sent to the replica are lost, and the
// new master lets that many requests through again within the window. The
// worst case per key is therefore
//
//	over-admission ≤ (single decisions for the key accepted within the
//	                  replication lag before the crash)
//	               + 4 × Lease × nodes
//
// The second term is the leases: the two leases a node may hold for a key,
// if granted within the lag, are used on their node although the new master
// never counted them (up to 2 × Lease slots per node), and their unused
// slots, given back to the new master when they expire, are subtracted from
// requests that were counted there (clamped to the bucket's count, again up
// to 2 × Lease per node).
//
// on top of L, once per failover; a coordinated failover (CLUSTER FAILOVER,
// SENTINEL FAILOVER) waits for the replica to catch up and loses nothing.
// The replication lag is normally below a millisecond on a LAN (Redis streams
// every write at once), so a user at its limit gains at most a few requests;
// a replica that fell behind (the lag shows as master_repl_offset minus the
// replica's offset in INFO replication) widens the bound accordingly. While no
// master answers, nothing is counted in Redis: fail_closed routes refuse
// (503) and fail_open routes count in process, each node up to L on its own.
// Measured on this repository's test box (module/topology_test.go: two nodes
// batching and leasing, limit 2000, a master killed under load): 0 requests
// over the limit on Redis Cluster and on Sentinel.
package ratelimit
