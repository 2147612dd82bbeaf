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
	// leaseTarget is the lease size worth a longer lifetime: a key with
	// fewer requests per bucket on this node gets a lease that lives for
	// up to maxHorizon buckets, so that about one request in leaseTarget
	// goes to Redis (and, renewed in the background, waits for nothing).
	leaseTarget = 32
)

// leaseTable holds this node's leases, one per limiter key, and the demand
// seen per key, which sizes the next lease.
type leaseTable struct {
	max int64 // the largest lease asked for
	// horizon is the longest lifetime of a lease, in buckets (see
	// maxHorizon).
	horizon int64
	// fromLease and fromRedis count the decisions made each way.
	fromLease, fromRedis atomic.Uint64
	seed                 maphash.Seed
	shards               [leaseShards]leaseShard
	stop                 chan struct{}
	done                 chan struct{}
	// renewals tracks the background renewals, which close waits for;
	// closed (under renewMu) stops new ones.
	renewMu  sync.Mutex
	closed   bool
	renewals sync.WaitGroup
}

type leaseShard struct {
	mu sync.Mutex
	m  map[string]*lease
}

// block is the slots of one grant: usable until deadline, counted in
// bucket (for a give-back).
type block struct {
	slots    int64
	deadline time.Time
	bucket   int64
}

// lease is one key's state on this node. Guarded by its shard's mutex.
type lease struct {
	limit, size int64
	// blocks[0] is used first; blocks[1] holds a renewal that arrived while
	// blocks[0] still had slots.
	blocks    [2]block
	granted   int64 // slots of the last grant, which sets the renewal point
	remaining int64 // Remaining of the last grant, not counting slots
	resetAt   time.Time
	pending   bool // a lease request for this key is in flight
	// ready is the pending lease request's outcome, for its waiters.
	ready *leaseRequest

	period      time.Duration // the bucket length demand is counted over
	periodStart time.Time
	seen, last  int64 // requests this period, and in the last one
}

// maxHorizon is the longest lifetime of a lease in buckets of a window of
// n buckets: a quarter window (window.lua computes the same). A leased
// slot is counted in the bucket of its last possible use, so it returns at
// most that much later than a single request's slot.
func maxHorizon(n int) int64 { return max(1, int64(n)/4) }

func newLeaseTable(max int64, buckets int) *leaseTable {
	t := &leaseTable{max: max, horizon: maxHorizon(buckets), seed: maphash.MakeSeed(), stop: make(chan struct{}), done: make(chan struct{})}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*lease)
	}
	return t
}

func (t *leaseTable) shard(key string) *leaseShard {
	return &t.shards[maphash.String(t.seed, key)%leaseShards]
}

// held returns the unused slots of l's blocks.
func (l *lease) held() int64 { return l.blocks[0].slots + l.blocks[1].slots }

// allow decides one request for key: from this node's lease when it holds
// a live one, else in Redis, asking for a lease sized by the key's
// expected demand on this node (see size). One request per key asks for a
// lease at a time; the others wait for its answer and take its slots, or
// are decided one by one when there are none left. A lease that is half
// used is renewed in the background, so that a key in steady use never
// waits for Redis.
func (t *leaseTable) allow(ctx context.Context, r *Redis, key string, limit, size int64) (Decision, error) {
	sh := t.shard(key)
	start := time.Now()
	// A request waits at most once for a lease request in flight.
	for waited := false; ; waited = true {
		now := time.Now()
		bucketLen := time.Duration(size) * time.Millisecond
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
		if !waited {
			l.seen++
		}
		var backs [2]ask
		if l.limit != limit || l.size != size {
			backs = l.settle(key, r, time.Time{})
			l.limit, l.size, l.granted = limit, size, 0
		} else {
			backs = l.settle(key, r, now)
		}
		if l.blocks[0].slots == 0 && l.blocks[1].slots > 0 {
			l.blocks[0], l.blocks[1] = l.blocks[1], block{}
		}
		if l.blocks[0].slots > 0 {
			l.blocks[0].slots--
			t.fromLease.Add(1)
			d := Decision{Allowed: true, Leased: true, Limit: limit, Remaining: l.remaining + l.held(), Reset: max(0, l.resetAt.Sub(now))}
			var renew ask
			if !l.pending && l.granted > 1 && l.held() <= l.granted/2 {
				if want, horizon := t.size(l, now); want > 1 && t.startRenewal() {
					l.pending, l.ready = true, &leaseRequest{done: make(chan struct{})}
					renew = ask{key: r.hashKey(key), limit: limit, size: size, want: want, bucket: horizon}
				}
			}
			sh.mu.Unlock()
			giveBack(r, backs)
			if renew.want > 1 {
				go t.renew(r, sh, key, l, renew, now)
			}
			return d, nil
		}
		if l.pending && !waited {
			// A lease is on its way: wait for it once, then take a slot.
			req := l.ready
			sh.mu.Unlock()
			giveBack(r, backs)
			select {
			case <-req.done:
			case <-ctx.Done():
				return Decision{}, unavailable("waiting for a lease", ctx.Err())
			}
			if req.err != nil {
				// It failed: so would this request's own call, after as
				// long again.
				return Decision{}, req.err
			}
			continue
		}
		a := ask{key: r.hashKey(key), limit: limit, size: size, want: 1}
		leader := !l.pending
		if leader {
			a.want, a.bucket = t.size(l, now)
			if a.want > 1 {
				l.pending, l.ready = true, &leaseRequest{done: make(chan struct{})}
			} else {
				leader = false
			}
		}
		sh.mu.Unlock()

		giveBack(r, backs)
		t.fromRedis.Add(1)
		if waited {
			// The wait counts against this call's bound (see the package
			// doc, "Timeouts"): its own round trip gets what is left.
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, start.Add(r.CallBound()))
			defer cancel()
		}
		g, err := r.decide(ctx, a)
		if !leader {
			return g.Decision, err
		}
		var extra ask
		sh.mu.Lock()
		l.answered(err)
		switch {
		case err != nil || g.granted <= 1:
		case l.limit == limit && l.size == size:
			extra = l.add(g, g.granted-1, now, a.bucket)
		default:
			// A request with another limit or window reset the lease while
			// this one was on its way: the extra slots are nobody's.
			extra = ask{limit: limit, size: size, want: -(g.granted - 1), bucket: g.bucket}
		}
		sh.mu.Unlock()
		if extra.want < 0 {
			extra.key = a.key
			r.giveBack(extra)
		}
		if err == nil && g.granted > 1 {
			// This request's view: only its own slot is spent.
			g.Remaining += g.granted - 1
		}
		return g.Decision, err
	}
}

// renew asks Redis for the next lease of a (sent by the request at now)
// and adds it to l; every granted slot is the lease's, none is spent by a
// request. A renewal that fails leaves the key to the usual path.
func (t *leaseTable) renew(r *Redis, sh *leaseShard, key string, l *lease, a ask, now time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), r.queueTimeout+r.timeout)
	defer cancel()
	defer t.renewals.Done()
	g, err := r.decide(ctx, a)
	sh.mu.Lock()
	l.answered(err)
	var back ask
	switch {
	case err != nil || g.granted == 0:
	case sh.m[key] == l && l.limit == a.limit && l.size == a.size:
		back = l.add(g, g.granted, now, a.bucket)
	default:
		// The key was swept or its limit changed meanwhile.
		back = ask{limit: a.limit, size: a.size, want: -g.granted, bucket: g.bucket}
	}
	sh.mu.Unlock()
	if back.want < 0 {
		back.key = a.key
		r.giveBack(back)
	}
}

// startRenewal reports whether a background renewal may start (not after
// close), and counts it for close.
func (t *leaseTable) startRenewal() bool {
	t.renewMu.Lock()
	defer t.renewMu.Unlock()
	if t.closed {
		return false
	}
	t.renewals.Add(1)
	return true
}

// leaseRequest is a lease request in flight: done is closed when it is
// answered, and err is then its error (or nil).
type leaseRequest struct {
	done chan struct{}
	err  error
}

// answered ends l's pending lease request, which failed with err (or
// nil), and wakes its waiters. Called with the shard locked.
func (l *lease) answered(err error) {
	l.pending = false
	if l.ready != nil {
		l.ready.err = err
		close(l.ready.done)
		l.ready = nil
	}
}

// add records a grant g of which slots are the lease's, asked for at now
// with a lifetime of horizon buckets, and returns the give-back of slots it
// has no room for, or that arrived too late to be used (want < 0; else a
// zero ask). Called with the shard locked.
func (l *lease) add(g grant, slots int64, now time.Time, horizon int64) ask {
	if slots <= 0 {
		return ask{}
	}
	if l.blocks[0].slots == 0 {
		l.blocks[0], l.blocks[1] = l.blocks[1], block{}
	}
	lifetime := time.Duration(horizon*l.size) * time.Millisecond
	b := block{slots: slots, deadline: now.Add(lifetime - time.Duration(horizon)*leaseMargin), bucket: g.bucket}
	if !time.Now().Before(b.deadline) {
		// The answer took longer than the lease's lifetime (counted from
		// before the request was sent, as exactness needs): not one slot
		// can be used. Give them all back, whatever giveBackShare says:
		// that rule is for the remainder of a lease that was usable, and
		// dropping a whole lease each time Redis is slower than a bucket
		// would spend quota the user never got.
		return ask{limit: l.limit, size: l.size, want: -slots, bucket: g.bucket}
	}
	switch {
	case l.blocks[0].slots == 0:
		l.blocks[0] = b
	case l.blocks[1].slots == 0:
		l.blocks[1] = b
	default:
		// Only one lease request per key is in flight, and it is sent when
		// at most one block holds slots: not reached.
		return ask{limit: l.limit, size: l.size, want: -slots, bucket: g.bucket}
	}
	l.granted = g.granted
	l.remaining = g.Remaining
	l.resetAt = now.Add(g.Reset)
	return ask{}
}

// size returns the lease to ask for: the key's expected demand on this
// node (see demand) over a lifetime of one bucket, or, for a key too slow
// to fill leaseTarget slots within one bucket, over as many buckets as it
// takes, up to horizon; capped by max. want 1 means no lease.
func (t *leaseTable) size(l *lease, now time.Time) (want, horizon int64) {
	est := l.demand(now)
	if est < 2 {
		// One request per bucket or less: the key's traffic is too thin
		// for a lease to save anything worth its give-back.
		return 1, 1
	}
	horizon = min(t.horizon, max(1, (leaseTarget+est-1)/est))
	want = min(t.max, est*horizon)
	if want < 2 {
		return 1, 1
	}
	return want, horizon
}

// demand estimates how many requests for the key this node will see in
// the next bucket length: the count of the last full period, or the rate
// seen so far in this one once it is a quarter old. A burst on a key that
// was quiet gets 0 (no lease), so no slot of a lease can be left unused on
// this node while the same burst is refused elsewhere.
func (l *lease) demand(now time.Time) int64 {
	est := l.last
	if elapsed := now.Sub(l.periodStart); elapsed >= l.period/4 && l.seen > 1 {
		est = max(est, int64(float64(l.seen)*float64(l.period)/float64(elapsed)))
	}
	return est
}

// settle drops the blocks of l that expired at now (all of them when now
// is zero) and returns the give-backs of their unused slots that are worth
// one (want < 0; else zero asks). Called with the shard locked.
func (l *lease) settle(key string, r *Redis, now time.Time) [2]ask {
	var backs [2]ask
	for i := range l.blocks {
		b := &l.blocks[i]
		if b.slots == 0 || (!now.IsZero() && now.Before(b.deadline)) {
			continue
		}
		if b.slots*giveBackShare > l.remaining {
			backs[i] = ask{key: r.hashKey(key), limit: l.limit, size: l.size, want: -b.slots, bucket: b.bucket}
		}
		*b = block{}
	}
	if l.blocks[0].slots == 0 {
		l.blocks[0], l.blocks[1] = l.blocks[1], block{}
	}
	return backs
}

// giveBack sends the give-backs among backs.
func giveBack(r *Redis, backs [2]ask) {
	for _, b := range backs {
		if b.want < 0 {
			r.giveBack(b)
		}
	}
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
			for _, b := range l.settle(key, r, now) {
				if b.want < 0 {
					backs = append(backs, b)
				}
			}
			if l.held() == 0 && now.Sub(l.periodStart) >= 2*l.period {
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
	t.renewMu.Lock()
	t.closed = true
	t.renewMu.Unlock()
	t.renewals.Wait() // each ends within QueueTimeout + Timeout
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for key, l := range sh.m {
			for _, back := range l.settle(key, r, time.Time{}) {
				if back.want < 0 && ctx.Err() == nil {
					_, _ = r.run(ctx, back)
				}
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
