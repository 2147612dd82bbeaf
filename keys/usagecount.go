package keys

import (
	"context"
	"hash/maphash"
	"maps"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// UsageRetention is how long the hourly usage counts are kept.
const UsageRetention = 8 * 24 * time.Hour

// UsageOutcome is what the gateway decided about one request of a user.
type UsageOutcome uint8

// The outcomes the gateway counts per user and hour.
const (
	// UsageAllowed: the request was let through.
	UsageAllowed UsageOutcome = iota
	// UsageLimited: the user's request limit refused it (429).
	UsageLimited
	// UsageRefused: the credential or the permission refused it (401, 403).
	UsageRefused
)

// UsageCount is how many requests of one user the gateway allowed,
// rate-limited and refused in one hour.
type UsageCount struct {
	UserID string
	// Hour is the start of the hour (UTC).
	Hour    time.Time
	Allowed int64
	Limited int64
	Refused int64
}

// usageSlot names one user and hour in a UsageCounter.
type usageSlot struct {
	user string
	hour int64 // Unix seconds of the hour's start
}

// UsageCounter counts requests per user, hour and outcome in memory and adds
// them to the store (Store.AddUsageCounts) at most once per interval, off the
// request path. Counting takes no lock: each user and hour has a tally of
// atomic counts in a usageMap (read without a lock), so counting in a slot
// already used in this interval is a map read and an atomic add, with no map
// write and no allocation. A slot unused for a whole interval is dropped.
// Counts older than UsageRetention are purged from the store about once an
// hour.
type UsageCounter struct {
	store    Store
	interval time.Duration
	now      func() time.Time

	pending *usageMap[usageSlot, usageTally]

	purgeMu   sync.Mutex
	lastPurge time.Time // guarded by purgeMu
}

// tallyRetired is the value a flush swaps into each count of a tally it drops:
// a count at or below zero is retired (counts are otherwise never negative),
// and adding to it leaves it so.
const tallyRetired = math.MinInt64 / 2

// usageTally holds the pending counts of a slot, per outcome. A count only
// moves down when a flush takes it (to 0) or retires it (to tallyRetired,
// final); a count that finds its tally retired goes to a new one.
type usageTally struct {
	n [UsageRefused + 1]atomic.Int64
}

// take returns the pending count of outcome o and sets it to 0.
func (t *usageTally) take(o UsageOutcome) int64 {
	for {
		cur := t.n[o].Load()
		if cur <= 0 {
			return 0
		}
		if t.n[o].CompareAndSwap(cur, 0) {
			return cur
		}
	}
}

// retire returns the pending count of outcome o and retires it.
func (t *usageTally) retire(o UsageOutcome) int64 {
	for {
		cur := t.n[o].Load()
		if cur < 0 {
			return 0
		}
		if t.n[o].CompareAndSwap(cur, tallyRetired) {
			return cur
		}
	}
}

// NewUsageCounter returns a counter flushing every interval (default 1m).
func NewUsageCounter(store Store, interval time.Duration) *UsageCounter {
	if interval <= 0 {
		interval = time.Minute
	}
	return &UsageCounter{store: store, interval: interval, now: time.Now, pending: newUsageMap[usageSlot, usageTally]()}
}

// Count notes one request of userID with outcome o at at. An empty userID
// (the credential named no known user) is not counted.
func (c *UsageCounter) Count(userID string, o UsageOutcome, at time.Time) {
	if c == nil || userID == "" || o > UsageRefused {
		return
	}
	c.add(usageSlot{user: userID, hour: at.Unix() - at.Unix()%3600}, o, 1)
}

// add adds n (> 0) to the pending count of outcome o in slot k, adding a
// tally the first time k is counted in an interval.
func (c *UsageCounter) add(k usageSlot, o UsageOutcome, n int64) {
	s := c.pending.shard(k.user)
	t := s.load(k)
	for {
		if t != nil && t.n[o].Add(n) > 0 {
			return
		}
		// First count in this interval, or t was retired by a flush (and
		// the add above went nowhere).
		fresh := new(usageTally)
		fresh.n[o].Store(n)
		if s.compareAndSwap(k, t, fresh) {
			return
		}
		t = s.lookup(k)
	}
}

// Flush adds what is pending to the store and, about once an hour, purges
// the counts older than UsageRetention. When the store fails, the pending
// counts are put back so the next flush retries them. A count racing with
// Flush is added by this flush or the next one.
func (c *UsageCounter) Flush(ctx context.Context) error {
	var batch []UsageCount
	for i := range c.pending.shards {
		c.pending.shards[i].each(func(k usageSlot, t *usageTally) bool {
			var n [UsageRefused + 1]int64
			idle := true
			for o := range n {
				n[o] = t.take(UsageOutcome(o))
				idle = idle && n[o] == 0
			}
			if idle {
				// Unused for a whole interval: retire the tally, keeping what
				// was counted since the takes above.
				for o := range n {
					n[o] = t.retire(UsageOutcome(o))
				}
			}
			if n != [UsageRefused + 1]int64{} {
				batch = append(batch, UsageCount{UserID: k.user, Hour: time.Unix(k.hour, 0).UTC(), Allowed: n[UsageAllowed], Limited: n[UsageLimited], Refused: n[UsageRefused]})
			}
			return idle
		})
	}
	if len(batch) == 0 {
		return c.maybePurge(ctx)
	}
	if err := c.store.AddUsageCounts(ctx, batch); err != nil {
		for _, u := range batch {
			k := usageSlot{user: u.UserID, hour: u.Hour.Unix()}
			for o, n := range [...]int64{UsageAllowed: u.Allowed, UsageLimited: u.Limited, UsageRefused: u.Refused} {
				if n > 0 {
					c.add(k, UsageOutcome(o), n)
				}
			}
		}
		return err
	}
	return c.maybePurge(ctx)
}

func (c *UsageCounter) maybePurge(ctx context.Context) error {
	c.purgeMu.Lock()
	defer c.purgeMu.Unlock()
	now := c.now()
	if now.Sub(c.lastPurge) < time.Hour {
		return nil
	}
	if _, err := c.store.PurgeUsageCounts(ctx, now.Add(-UsageRetention)); err != nil {
		return err
	}
	c.lastPurge = now
	return nil
}

// Run flushes every interval until ctx ends, then once more.
func (c *UsageCounter) Run(ctx context.Context, onError func(error)) {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := c.Flush(fctx); err != nil && onError != nil {
				onError(err)
			}
			cancel()
			return
		case <-t.C:
			fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := c.Flush(fctx); err != nil && onError != nil {
				onError(err)
			}
			cancel()
		}
	}
}

// usageShards is how many shards a usageMap has, so that concurrent inserts
// rarely wait for one another.
const usageShards = 256

// usageMap maps keys of one user (K) to entries (*V) that hold their state in
// atomics, so that a use of an existing entry is a map read without a lock and
// an atomic update. Each shard publishes an immutable map (read) through an
// atomic pointer; entries added or replaced since go to a map under the
// shard's mutex (dirty), which is published in a copy once lookups that took
// the mutex have cost about as much as the copy (as sync.Map did before
// Go 1.24), and at each flush. Inserts thus cost O(1) amortized, and a flush
// O(entries).
type usageMap[K comparable, V any] struct {
	seed   maphash.Seed
	shards [usageShards]usageShard[K, V]
}

type usageShard[K comparable, V any] struct {
	read atomic.Pointer[map[K]*V] // never modified once published

	mu     sync.Mutex
	dirty  map[K]*V // added or replaced since read was published; wins over read
	misses int      // lookups that took mu since read was published
}

func newUsageMap[K comparable, V any]() *usageMap[K, V] {
	m := &usageMap[K, V]{seed: maphash.MakeSeed()}
	empty := map[K]*V{}
	for i := range m.shards {
		m.shards[i].read.Store(&empty)
	}
	return m
}

// shard returns the shard of user's keys.
func (m *usageMap[K, V]) shard(user string) *usageShard[K, V] {
	return &m.shards[maphash.String(m.seed, user)%usageShards]
}

// load returns k's entry, or nil: a published one without a lock. The entry
// may be stale (replaced since); lookup returns the latest.
func (s *usageShard[K, V]) load(k K) *V {
	if v := (*s.read.Load())[k]; v != nil {
		return v
	}
	return s.lookup(k)
}

// lookup returns k's latest entry, or nil.
func (s *usageShard[K, V]) lookup(k K) *V {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.missed()
	return s.latest(k)
}

// latest returns k's latest entry, or nil. Call with mu held.
func (s *usageShard[K, V]) latest(k K) *V {
	if v, ok := s.dirty[k]; ok {
		return v
	}
	return (*s.read.Load())[k]
}

// missed counts a lookup that took mu and publishes dirty once such lookups
// have cost about as much as the copy. Call with mu held.
func (s *usageShard[K, V]) missed() {
	s.misses++
	if len(s.dirty) > 0 && s.misses >= len(*s.read.Load())+len(s.dirty) {
		s.publish(nil, nil)
	}
}

// publish replaces read with a copy holding dirty's entries too, less the
// given entries of keys ks (unless they were replaced). Call with mu held.
func (s *usageShard[K, V]) publish(ks []K, vs []*V) {
	read := *s.read.Load()
	next := make(map[K]*V, len(read)+len(s.dirty))
	maps.Copy(next, read)
	maps.Copy(next, s.dirty)
	for i, k := range ks {
		if next[k] == vs[i] {
			delete(next, k)
		}
	}
	s.read.Store(&next)
	s.dirty, s.misses = nil, 0
}

// compareAndSwap sets k's entry to v if it is old (nil: absent), and
// reports whether it did.
func (s *usageShard[K, V]) compareAndSwap(k K, old, v *V) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.latest(k) != old {
		return false
	}
	if s.dirty == nil {
		s.dirty = make(map[K]*V)
	}
	s.dirty[k] = v
	s.missed()
	return true
}

// each calls f with every entry of the shard as of the call, and then drops
// the entries for which f returned true (retired ones). Entries added while
// it runs are left for the next call.
func (s *usageShard[K, V]) each(f func(K, *V) (drop bool)) {
	s.mu.Lock()
	if len(s.dirty) > 0 {
		s.publish(nil, nil)
	}
	read := *s.read.Load()
	s.mu.Unlock()
	var ks []K
	var vs []*V
	for k, v := range read {
		if f(k, v) {
			ks, vs = append(ks, k), append(vs, v)
		}
	}
	if len(ks) > 0 {
		s.mu.Lock()
		s.publish(ks, vs)
		s.mu.Unlock()
	}
}
