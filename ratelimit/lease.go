package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Lease tuning.
const (
	leaseShards = 64
	// leaseMargin is taken off every lease's lifetime, for the difference
	// between this node's clock rate and Redis's over one bucket.
	leaseMargin = 5 * time.Millisecond
	// giveBackShare: unused slots are returned to Redis when they are at
	// least 1/giveBackShare of the quota that was left when they were
	// granted; smaller remainders are left to leave the window by
	// themselves, which costs the user at most that share.
	giveBackShare = 256
)

// leaseTable holds this node's leases, one per limiter key, and the demand
// seen per key, which sizes the next lease.
type leaseTable struct {
	max int64 // the largest lease asked for
	// fromLease and fromRedis count the decisions made each way.
	fromLease, fromRedis atomic.Uint64
	seed                 maphash.Seed
	shards               [leaseShards]leaseShard
	stop                 chan struct{}
	done                 chan struct{}
}

type leaseShard struct {
	mu sync.Mutex
	m  map[string]*lease
}

// lease is one key's state on this node. Guarded by its shard's mutex.
type lease struct {
	limit, size int64
	slots       int64     // unused leased slots
	deadline    time.Time // the last moment a slot may be used
	bucket      int64     // where the slots are counted, for a give-back
	remaining   int64     // Remaining of the grant, not counting slots
	resetAt     time.Time
	pending     bool // a lease request for this key is in flight

	period      time.Duration // the bucket length demand is counted over
	periodStart time.Time
	seen, last  int64 // requests this period, and in the last one
}

func newLeaseTable(max int64) *leaseTable {
	t := &leaseTable{max: max, seed: maphash.MakeSeed(), stop: make(chan struct{}), done: make(chan struct{})}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*lease)
	}
	return t
}

func (t *leaseTable) shard(key string) *leaseShard {
	return &t.shards[maphash.String(t.seed, key)%leaseShards]
}

// allow decides one request for key: from this node's lease when it holds
// a live one, else in Redis, asking for a lease as large as the key's
// expected demand on this node (see demand). One request per key asks for a
// lease at a time; the others are decided one by one meanwhile.
func (t *leaseTable) allow(ctx context.Context, r *Redis, key string, limit, size int64) (Decision, error) {
	now := time.Now()
	bucketLen := time.Duration(size) * time.Millisecond
	sh := t.shard(key)
	sh.mu.Lock()
	l := sh.m[key]
	if l == nil {
		l = &lease{periodStart: now}
		sh.m[key] = l
	}
	l.period = bucketLen
	if now.Sub(l.periodStart) >= bucketLen {
		l.last, l.seen = l.seen, 0
		if now.Sub(l.periodStart) >= 2*bucketLen {
			l.last = 0 // a whole period went by without a request
		}
		l.periodStart = now
	}
	l.seen++
	if l.slots > 0 && l.limit == limit && l.size == size && now.Before(l.deadline) {
		l.slots--
		t.fromLease.Add(1)
		d := Decision{Allowed: true, Leased: true, Limit: limit, Remaining: l.remaining + l.slots, Reset: max(0, l.resetAt.Sub(now))}
		sh.mu.Unlock()
		return d, nil
	}
	want := int64(1)
	var back ask
	leader := !l.pending
	if leader {
		back = l.settle(key, r)
		want = min(t.max, l.demand(now))
		l.pending = want > 1
		leader = l.pending
	}
	sh.mu.Unlock()

	if back.want < 0 {
		r.giveBack(back)
	}
	t.fromRedis.Add(1)
	g, err := r.decide(ctx, ask{key: r.hashKey(key), limit: limit, size: size, want: want})
	if !leader {
		return g.Decision, err
	}
	sh.mu.Lock()
	l.pending = false
	if err == nil && g.granted > 1 {
		l.limit, l.size = limit, size
		l.slots = g.granted - 1
		l.bucket = g.bucket
		l.deadline = now.Add(bucketLen - leaseMargin)
		l.remaining = g.Remaining
		l.resetAt = now.Add(g.Reset)
	}
	sh.mu.Unlock()
	if err == nil && g.granted > 1 {
		// This request's view: only its own slot is spent.
		g.Remaining += g.granted - 1
	}
	return g.Decision, err
}

// demand estimates how many requests for the key this node will see in
// the next bucket length, the lifetime of a lease: the count of the last
// full period, or the rate seen so far in this one once it is a quarter
// old. A burst on a key that was quiet gets 1 (no lease), so no slot of a
// lease can be left unused on this node while the same burst is refused
// elsewhere.
func (l *lease) demand(now time.Time) int64 {
	est := l.last
	if elapsed := now.Sub(l.periodStart); elapsed >= l.period/4 && l.seen > 1 {
		est = max(est, int64(float64(l.seen)*float64(l.period)/float64(elapsed)))
	}
	return max(1, est)
}

// settle drops l's lease and returns the give-back of its unused slots
// when they are worth one (want < 0), else a zero ask. Called with the
// shard locked.
func (l *lease) settle(key string, r *Redis) ask {
	var back ask
	if l.slots > 0 && l.slots*giveBackShare > l.remaining {
		back = ask{key: r.hashKey(key), limit: l.limit, size: l.size, want: -l.slots, bucket: l.bucket}
	}
	l.slots = 0
	return back
}

// sweep gives back the unused slots of expired leases and forgets keys
// idle for two bucket lengths, so that the table holds only active keys.
func (t *leaseTable) sweep(r *Redis, now time.Time) {
	var backs []ask
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for key, l := range sh.m {
			if l.pending {
				continue
			}
			if l.slots > 0 && !now.Before(l.deadline) {
				if back := l.settle(key, r); back.want < 0 {
					backs = append(backs, back)
				}
			}
			if l.slots == 0 && now.Sub(l.periodStart) >= 2*l.period {
				delete(sh.m, key)
			}
		}
		sh.mu.Unlock()
	}
	for _, back := range backs {
		r.giveBack(back)
	}
}

// run sweeps every interval until close.
func (t *leaseTable) run(r *Redis, interval time.Duration) {
	defer close(t.done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case now := <-tick.C:
			t.sweep(r, now)
		}
	}
}

// close stops the sweeper and gives back every unused slot, waiting at
// most one second for Redis.
func (t *leaseTable) close(r *Redis) {
	close(t.stop)
	<-t.done
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for key, l := range sh.m {
			if back := l.settle(key, r); back.want < 0 && ctx.Err() == nil {
				_, _ = r.run(ctx, back)
			}
		}
		clear(sh.m)
		sh.mu.Unlock()
	}
}

// giveBack returns leased slots to Redis, without waiting for the answer:
// batched when Batch is set, else on a goroutine of its own.
func (r *Redis) giveBack(a ask) {
	if r.batch != nil {
		r.batch.giveBack(a)
		return
	}
	go func() {
		_, _ = r.decide(context.Background(), a)
	}()
}

// LeaseStats returns how many decisions this limiter made from leases and
// how many it asked Redis for; both are zero without leases.
func (r *Redis) LeaseStats() (fromLease, fromRedis uint64) {
	if r.leases == nil {
		return 0, 0
	}
	return r.leases.fromLease.Load(), r.leases.fromRedis.Load()
}
