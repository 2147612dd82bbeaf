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

// UsageOutcome is what the gateway decided about one request, and why.
type UsageOutcome uint8

// The outcomes the gateway counts per tenant, user and hour. The refusals
// of credentials and permissions (401 and 403) are counted by reason.
const (
	// UsageAllowed: the request was let through.
	UsageAllowed UsageOutcome = iota
	// UsageLimited: the user's request limit refused it (429).
	UsageLimited
	// UsageBadKey: no valid credential (401): missing, malformed or unknown,
	// a wrong secret or signature, a replayed or stale signature.
	UsageBadKey
	// UsageExpired: the access key or access token had expired (401).
	UsageExpired
	// UsageRevoked: the key was revoked, disabled or past its replacement's
	// grace period, or its user, tenant or type no longer allows it (401).
	UsageRevoked
	// UsageCoverage: a valid signature that does not bind the request (401).
	UsageCoverage
	// UsageForbidden: a valid credential without an ACTIVE permission in
	// the tenant or without the route's role or entity (403).
	UsageForbidden
	// UsageThrottled: the per-client-IP throttle refused it (429) before
	// its credential was looked at.
	UsageThrottled
	// UsageInvalid: a malformed request (400, two credentials) or a signed
	// body over max_signed_body (413).
	UsageInvalid
	// UsageUnavailable: the store or the limiter could not be reached (503).
	UsageUnavailable

	usageOutcomes // how many outcomes there are
)

// UsageCount is how many requests of one user on one tenant's routes the
// gateway allowed, limited and refused in one hour.
type UsageCount struct {
	// UserID is empty for requests no user could be named for (an unknown
	// key, a throttled client) and for those of deleted users.
	UserID string
	// Tenant is the route's tenant; empty in counts stored before tenants
	// were counted.
	Tenant string
	// Hour is the start of the hour (UTC).
	Hour    time.Time
	Allowed int64
	Limited int64
	// Refused counts the credential and permission refusals (401, 403):
	// the sum of BadKey, Expired, Revoked, Coverage and Forbidden (counts
	// stored before the reasons were counted have only the sum).
	Refused   int64
	BadKey    int64
	Expired   int64
	Revoked   int64
	Coverage  int64
	Forbidden int64
	// Throttled, Invalid and Unavailable are not refusals of a user's
	// credential and are not in Refused (see the UsageOutcome constants).
	Throttled   int64
	Invalid     int64
	Unavailable int64
}

// counter returns the field of c that counts outcome o.
func (c *UsageCount) counter(o UsageOutcome) *int64 {
	switch o {
	case UsageAllowed:
		return &c.Allowed
	case UsageLimited:
		return &c.Limited
	case UsageBadKey:
		return &c.BadKey
	case UsageExpired:
		return &c.Expired
	case UsageRevoked:
		return &c.Revoked
	case UsageCoverage:
		return &c.Coverage
	case UsageForbidden:
		return &c.Forbidden
	case UsageThrottled:
		return &c.Throttled
	case UsageInvalid:
		return &c.Invalid
	case UsageUnavailable:
		return &c.Unavailable
	}
	return nil
}

// IsRefusal reports whether o is a credential or permission refusal (401,
// 403), one of the reasons summed in UsageCount.Refused.
func (o UsageOutcome) IsRefusal() bool { return o >= UsageBadKey && o <= UsageForbidden }

// Count adds n requests with outcome o to c (and to Refused for a refusal).
func (c *UsageCount) Count(o UsageOutcome, n int64) {
	if p := c.counter(o); p != nil {
		*p += n
		if o.IsRefusal() {
			c.Refused += n
		}
	}
}

// Add adds every count of d to c (not its user, tenant or hour).
func (c *UsageCount) Add(d UsageCount) {
	for o := range usageOutcomes {
		*c.counter(o) += *d.counter(o)
	}
	c.Refused += d.Refused
}

// Requests is the number of requests c counts, whatever their outcome.
func (c *UsageCount) Requests() int64 {
	return c.Allowed + c.Limited + c.Refused + c.Throttled + c.Invalid + c.Unavailable
}

// usageSlot names one user and hour in a UsageCounter.
type usageSlot struct {
	user string
	hour int64 // Unix seconds of the hour's start
}

// tenantSlot names one tenant, user and hour: the slots of the counts that
// the user's slot does not take (another tenant than the one it counts
// for, or no user at all).
type tenantSlot struct {
	tenant string
	user   string
	hour   int64
}

// UsageCounter counts requests per tenant, user, hour and outcome in memory
// and adds them to the store (Store.AddUsageCounts) at most once per
// interval, off the request path. Counting takes no lock: each slot has a
// tally of atomic counts in a usageMap (read without a lock), so counting in
// a slot already used in this interval is a map read and an atomic add, with
// no map write and no allocation. A slot unused for a whole interval is
// dropped. Counts older than UsageRetention are purged from the store about
// once an hour.
//
// The common request names one user, who calls one tenant's routes: its
// tally is found by user and hour (the same key as before tenants were
// counted, so the lookup costs the same) and carries the tenant it counts
// for. Counts for another tenant in the same hour, and those of requests no
// user was named for, go to tallies found by tenant, user and hour.
type UsageCounter struct {
	store    Store
	interval time.Duration
	now      func() time.Time

	pending *usageMap[usageSlot, usageTally]
	others  *usageMap[tenantSlot, usageTally]

	purgeMu   sync.Mutex
	lastPurge time.Time // guarded by purgeMu
}

// tallyRetired is the value a flush swaps into each count of a tally it drops:
// a count at or below zero is retired (counts are otherwise never negative),
// and adding to it leaves it so.
const tallyRetired = math.MinInt64 / 2

// usageTally holds the pending counts of a slot, per outcome. A count only
// moves down when a flush takes it (to 0) or retires it (to tallyRetired,
// final); a count that finds its tally retired goes to a new one. The two
// outcomes of the common path (allowed, limited) are inline; the refusal
// reasons and the rest live in a block allocated on the first of them in
// the interval, so that a tally stays small (40 bytes with its tenant).
type usageTally struct {
	// tenant is the tenant the tally counts for, set before it is
	// published and never changed (a slot of the pending map).
	tenant string
	n      [hotOutcomes]atomic.Int64
	rare   atomic.Pointer[rareTally]
}

// hotOutcomes are the outcomes counted inline: UsageAllowed, UsageLimited.
const hotOutcomes = 2

// rareTally counts the outcomes from UsageBadKey on.
type rareTally struct {
	n [usageOutcomes - hotOutcomes]atomic.Int64
}

// retiredRare stands in a retired tally's rare block when it had none, so
// that no count goes into a block a flush has already dropped.
var retiredRare = func() *rareTally {
	r := new(rareTally)
	for i := range r.n {
		r.n[i].Store(tallyRetired)
	}
	return r
}()

// cell returns where outcome o is counted in t, allocating the rare block
// the first time.
func (t *usageTally) cell(o UsageOutcome) *atomic.Int64 {
	if o < hotOutcomes {
		return &t.n[o]
	}
	r := t.rare.Load()
	if r == nil {
		if fresh := new(rareTally); t.rare.CompareAndSwap(nil, fresh) {
			r = fresh
		} else {
			r = t.rare.Load()
		}
	}
	return &r.n[o-hotOutcomes]
}

// peek returns where outcome o is counted in t, or nil when it has no
// count (a rare outcome without its block).
func (t *usageTally) peek(o UsageOutcome) *atomic.Int64 {
	if o < hotOutcomes {
		return &t.n[o]
	}
	if r := t.rare.Load(); r != nil && r != retiredRare {
		return &r.n[o-hotOutcomes]
	}
	return nil
}

// take returns the pending count of outcome o and sets it to 0.
func (t *usageTally) take(o UsageOutcome) int64 {
	c := t.peek(o)
	if c == nil {
		return 0
	}
	for {
		cur := c.Load()
		if cur <= 0 {
			return 0
		}
		if c.CompareAndSwap(cur, 0) {
			return cur
		}
	}
}

// retire returns the pending count of outcome o and retires it. A tally
// without a rare block gets retiredRare first (see retireRare).
func (t *usageTally) retire(o UsageOutcome) int64 {
	c := t.peek(o)
	if c == nil {
		return 0
	}
	for {
		cur := c.Load()
		if cur < 0 {
			return 0
		}
		if c.CompareAndSwap(cur, tallyRetired) {
			return cur
		}
	}
}

// retireRare installs retiredRare in a tally that has no rare block yet,
// before its counts are retired: a rare count racing with the flush then
// finds the sentinel and goes to a new tally.
func (t *usageTally) retireRare() { t.rare.CompareAndSwap(nil, retiredRare) }

// NewUsageCounter returns a counter flushing every interval (default 1m).
func NewUsageCounter(store Store, interval time.Duration) *UsageCounter {
	if interval <= 0 {
		interval = time.Minute
	}
	return &UsageCounter{store: store, interval: interval, now: time.Now,
		pending: newUsageMap[usageSlot, usageTally](), others: newUsageMap[tenantSlot, usageTally]()}
}

// Count notes one request on a route of tenant, of userID (empty when no
// user could be named), with outcome o at at. A request with neither a
// tenant nor a user is not counted.
func (c *UsageCounter) Count(tenant, userID string, o UsageOutcome, at time.Time) {
	if c == nil || o >= usageOutcomes {
		return
	}
	sec := at.Unix()
	c.add(tenant, userID, sec-sec%3600, o, 1)
}

// add adds n (> 0) to the pending count of outcome o of tenant and user in
// hour: in the user's tally when it counts for tenant (or is the first of
// the interval), else in the tally of tenant, user and hour.
func (c *UsageCounter) add(tenant, user string, hour int64, o UsageOutcome, n int64) {
	if user == "" {
		if tenant != "" {
			addTally(c.others.shard(tenant), tenantSlot{tenant: tenant, hour: hour}, tenant, o, n)
		}
		return
	}
	k := usageSlot{user: user, hour: hour}
	s := c.pending.shard(user)
	t := s.load(k)
	for {
		if t != nil {
			if t.tenant != tenant {
				addTally(c.others.shard(user), tenantSlot{tenant: tenant, user: user, hour: hour}, tenant, o, n)
				return
			}
			if t.cell(o).Add(n) > 0 {
				return
			}
		}
		// First count in this interval, or t was retired by a flush (and
		// the add above went nowhere).
		fresh := &usageTally{tenant: tenant}
		fresh.cell(o).Store(n)
		if s.compareAndSwap(k, t, fresh) {
			return
		}
		t = s.lookup(k)
	}
}

// addTally adds n to outcome o in the tally of k in shard s, adding one
// the first time k is counted in an interval.
func addTally[K comparable](s *usageShard[K, usageTally], k K, tenant string, o UsageOutcome, n int64) {
	t := s.load(k)
	for {
		if t != nil && t.cell(o).Add(n) > 0 {
			return
		}
		fresh := &usageTally{tenant: tenant}
		fresh.cell(o).Store(n)
		if s.compareAndSwap(k, t, fresh) {
			return
		}
		t = s.lookup(k)
	}
}

// drain takes the pending counts of t into a UsageCount of user and hour
// (nil when there are none) and reports whether t was idle for the whole
// interval, in which case it is retired (and its slot dropped).
func drain(t *usageTally, user string, hour int64) (*UsageCount, bool) {
	var n [usageOutcomes]int64
	idle := true
	for o := range n {
		n[o] = t.take(UsageOutcome(o))
		idle = idle && n[o] == 0
	}
	if idle {
		// Unused for a whole interval: retire the tally, keeping what was
		// counted since the takes above.
		t.retireRare()
		for o := range n {
			n[o] = t.retire(UsageOutcome(o))
		}
	}
	if n == [usageOutcomes]int64{} {
		return nil, idle
	}
	uc := &UsageCount{UserID: user, Tenant: t.tenant, Hour: time.Unix(hour, 0).UTC()}
	for o, v := range n {
		uc.Count(UsageOutcome(o), v)
	}
	return uc, idle
}

// Flush adds what is pending to the store and, about once an hour, purges
// the counts older than UsageRetention. When the store fails, the pending
// counts are put back so the next flush retries them. A count racing with
// Flush is added by this flush or the next one.
func (c *UsageCounter) Flush(ctx context.Context) error {
	var batch []UsageCount
	for i := range c.pending.shards {
		c.pending.shards[i].each(func(k usageSlot, t *usageTally) bool {
			uc, idle := drain(t, k.user, k.hour)
			if uc != nil {
				batch = append(batch, *uc)
			}
			return idle
		})
	}
	for i := range c.others.shards {
		c.others.shards[i].each(func(k tenantSlot, t *usageTally) bool {
			uc, idle := drain(t, k.user, k.hour)
			if uc != nil {
				batch = append(batch, *uc)
			}
			return idle
		})
	}
	if len(batch) == 0 {
		return c.maybePurge(ctx)
	}
	if err := c.store.AddUsageCounts(ctx, batch); err != nil {
		for i := range batch {
			u := &batch[i]
			for o := range usageOutcomes {
				if n := *u.counter(o); n > 0 {
					c.add(u.Tenant, u.UserID, u.Hour.Unix(), o, n)
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
