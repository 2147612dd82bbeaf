package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// shardCount is the number of independently locked maps; a power of two.
const shardCount = 64

// LocalOptions configures NewLocal.
type LocalOptions struct {
	// Buckets is the number of sub-buckets per window. Default: 12.
	Buckets int
	// SweepInterval is how often idle keys are removed. Default: 1m.
	SweepInterval time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Local is the in-process Limiter: the same sliding window as the Redis
// limiter, for one node. Create it with NewLocal and Close it when done.
type Local struct {
	buckets int
	now     func() time.Time
	seed    maphash.Seed
	shards  [shardCount]shard
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// shard is one locked part of the key space.
type shard struct {
	mu      sync.Mutex // protects entries and every *entry in it
	entries map[string]*entry
	_       [48]byte // keep neighbouring shards' locks off one cache line
}

// entry is one key's window: counts[j%len(counts)] holds bucket j for the
// buckets last-N .. last.
type entry struct {
	size    int64 // bucket size in ms
	last    int64 // newest bucket index
	expires int64 // ms since the epoch when every bucket has left the window
	counts  []int64
}

// NewLocal returns an in-process Limiter. Its sweeper goroutine, which
// removes keys whose window is empty, runs until Close.
func NewLocal(opts LocalOptions) *Local {
	l := &Local{
		buckets: opts.Buckets,
		now:     opts.Now,
		seed:    maphash.MakeSeed(),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if l.buckets <= 0 {
		l.buckets = DefaultBuckets
	}
	if l.now == nil {
		l.now = time.Now
	}
	for i := range l.shards {
		l.shards[i].entries = make(map[string]*entry)
	}
	interval := opts.SweepInterval
	if interval <= 0 {
		interval = time.Minute
	}
	go l.sweepLoop(interval)
	return l
}

// Close stops the sweeper. The limiter keeps working without it, but idle
// keys are no longer removed. Close is idempotent.
func (l *Local) Close() error {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
	})
	return nil
}

// Allow implements Limiter. It never returns an error except for a window
// too short to split into buckets.
func (l *Local) Allow(_ context.Context, key string, limit int64, window time.Duration) (Decision, error) {
	return l.allow(key, limit, window, l.now())
}

// allow decides at time now.
func (l *Local) allow(key string, limit int64, window time.Duration, now time.Time) (Decision, error) {
	if limit < 1 {
		return deny(limit, window), nil
	}
	size, err := bucketSize(window, l.buckets)
	if err != nil {
		return Decision{}, err
	}
	ms := now.UnixMilli()
	cur := ms / size
	n := int64(l.buckets)
	m := n + 1

	s := &l.shards[maphash.String(l.seed, key)&(shardCount-1)]
	s.mu.Lock()
	defer s.mu.Unlock()

	e := s.entries[key]
	if e == nil || e.size != size {
		if e == nil {
			e = &entry{counts: make([]int64, m)}
			s.entries[key] = e
		} else {
			clear(e.counts)
		}
		e.size, e.last = size, cur
	}
	// Slide: clear the slots of buckets that left the window. A clock that
	// went back keeps counting into the newest bucket (conservative).
	if cur > e.last {
		from := max(e.last+1, cur-n)
		for j := from; j <= cur; j++ {
			e.counts[j%m] = 0
		}
		e.last = cur
	}
	var sum int64
	for _, c := range e.counts {
		sum += c
	}
	d := Decision{Limit: limit}
	if sum < limit {
		d.Allowed = true
		sum++
		e.counts[e.last%m]++
		e.expires = (e.last + m) * size
	}
	d.Remaining = max(limit-sum, 0)

	// Reset: when the oldest non-empty bucket leaves. RetryAfter: when
	// enough buckets have left for one more request.
	need := sum - limit + 1
	var freed int64
	for j := e.last - n; j <= e.last; j++ {
		c := e.counts[j%m]
		if c == 0 {
			continue
		}
		leaves := time.Duration((j+m)*size-ms) * time.Millisecond
		if d.Reset == 0 {
			d.Reset = leaves
		}
		if d.Allowed {
			break
		}
		freed += c
		if freed >= need {
			d.RetryAfter = leaves
			break
		}
	}
	return d, nil
}

// sweepLoop runs sweep every interval until Close.
func (l *Local) sweepLoop(interval time.Duration) {
	defer close(l.done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
			l.sweep(l.now())
		}
	}
}

// sweep removes every key whose window is empty at now.
func (l *Local) sweep(now time.Time) {
	ms := now.UnixMilli()
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for k, e := range s.entries {
			if e.expires <= ms {
				delete(s.entries, k)
			}
		}
		s.mu.Unlock()
	}
}

// len returns the number of keys held (for tests).
func (l *Local) len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.entries)
		s.mu.Unlock()
	}
	return n
}

var _ Limiter = (*Local)(nil)
