// Package redisstore is the Redis Backend of keygate's key store: the model
// rules live once in keys.NewStore, and this package gives them a
// transactional key-value store with ordered indexes on Redis (single node,
// Redis Cluster or Sentinel, through a go-redis UniversalClient).
//
// # Layout
//
// With the default prefix "keygate:":
//
//	keygate:{kg}:<table>:<id>     a record (string)
//	keygate:{kg}:@ix:<index>      an index (sorted set, every score 0,
//	                              member esc(sortKey) + "\x00\x01" + id)
//	keygate:{kg}:@tx              watched by every Update (never written)
//	keygate:{kg}:invalidate       pub/sub channel of keys.Invalidation (JSON)
//
// Members of an index all have score 0, so Redis orders them by their bytes.
// esc replaces each NUL of the sort key with NUL 0xFF, so that byte order of
// members is (sortKey, id) order for any bytes: the separator NUL 0x01 sorts
// below an escaped NUL and below every other byte.
//
// # One hash tag
//
// Every key of the store carries the same hash tag, {kg}, so on Redis Cluster
// all of them live in one slot and every Update is a single WATCH/MULTI/EXEC
// on one node: multi-record changes (a user with its keys, indexes and
// history) stay atomic without a cross-slot protocol. SPEC section 6 prefers
// {tenant} and per-user tags, with operations that span slots written as
// sequences of idempotent writes; that spreads the store over the cluster
// but needs a recovery story for every half-done sequence. The key store is a
// small admin dataset that the gateway reads through its cache (kept current
// by the invalidation channel), while the per-request load goes to the rate
// limiter, which spreads over slots with per-user tags. One tag is the simpler
// choice that is safe by construction. Known limit: the whole store lives on
// one cluster shard (its memory and write throughput bound the store's); a
// store too large for one node would need the per-tenant layout.
//
// The ceiling, measured by TestLayoutCeiling (KEYGATE_LAYOUT_USERS=20000, a
// SERVICE user with its permission, one access key, their history and
// indexes per user, on the 2-core test box): about 3.4 KB of Redis memory
// per user, so 1 M users take about 3.4 GB on the one shard (a 16 GB node
// holds about 4 M with room for the limiter's share); about 1,000 users with
// a key created per second by 8 writers (two Updates each), so seeding 1 M
// users takes about 16 minutes; a cold key lookup (what a node pays on a
// cache miss; a node loads nothing at start) p50 28 µs, p99 72 µs. Memory and
// admin writes grow with users; request traffic does not reach the shard
// except on cache misses, so one shard is not the limit below a few million
// users.
//
// # Replicas
//
// When the master holding the store has replicas (ROLE, asked inside the
// commit's MULTI/EXEC), an Update that wrote something waits after its EXEC until a replica
// has it (WAIT 1, up to Options.ReplicaWait), so that a change the admin API
// acknowledged survives a failover. Measured cost on the test box: about
// 0.1–0.2 ms on the median admin write (CreateUser p50 0.44 → 0.59 ms on
// Cluster, 0.41 → 0.62 ms on Sentinel).
//
// # Transactions
//
// View runs plain reads (no WATCH), so a View over several round trips is not
// a snapshot. Update is optimistic: each read first WATCHes what it reads (in
// the same round trip), writes are buffered, and at the end MULTI/EXEC applies
// them and PUBLISHes the queued invalidations; when a watched key changed in
// between, fn runs again (at most 50 attempts, with a small jittered backoff).
// A transaction that loses the race that often fails with an error wrapping
// keys.ErrUnavailable and redis.TxFailedErr: it is contention, not a rule of
// the model, so the caller should retry later (the admin API answers 503 with
// Retry-After), unlike keys.ErrConflict (409). Even an Update that writes
// nothing ends with EXEC, so what fn read was one consistent state.
//
// Reads inside Update see the transaction's own pending writes: records put or
// deleted earlier in fn, and index counts and ranges with the pending
// additions, removals and drops applied.
//
// # Notifications
//
// Update publishes the invalidations queued with Tx.Notify inside its
// MULTI/EXEC, so they go out exactly when the change commits. Subscribe
// (keys.Notifier) returns once Redis has confirmed the subscription and then
// delivers from a goroutine that ends with its context. Every second the
// subscriber publishes a probe on the channel through the client, so on the
// master every Update commits on; Redis delivers what one node publishes in
// order (to its own subscribers, and through replication or the cluster bus
// to the others'), so the probe's arrival proves to the subscriber that no
// change committed before it was sent has been missed (keys.Listener.Confirm),
// which lets caches keep entries past their TTL. The proof holds wherever the
// subscription is: one left on a master that a failover demoted (Sentinel
// reconfigures it only seconds later) stops receiving its probes and is
// replaced. On Redis Cluster the subscription is on the master of the store's
// slot, and before a probe confirms anything that node is checked (ROLE) to
// still be a master, so after a failover the subscription moves to the new
// master. A dropped or silent subscription (its probe not back within another
// second) calls Gap(false), and Gap(true) is called when the subscription is
// back, since messages of the gap are gone: the subscriber drops its cache
// both times. Probes are not JSON: subscribers ignore other nodes' probes.
//
// # Timeouts and errors
//
// Every round trip is bounded by Options.Timeout (default 50ms); a whole
// Update, retries included, is bounded by 20 × Timeout (1s by default), and by
// the caller's context. A failed, timed-out or refused call, a closed client
// or a closed Backend gives an error wrapping keys.ErrUnavailable (and the
// underlying error), so callers can fail closed; a missing record gives
// keys.ErrNotFound. Errors name the operation and table, never a value. When
// the EXEC of an Update times out, its outcome is unknown, as with any network
// store.
//
// The Backend does not own its client: Close marks the Backend closed but
// leaves the client open, so one client can serve the store and the rate
// limiter; whoever built the client closes it.
package redisstore
