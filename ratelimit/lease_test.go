package ratelimit

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testredis"
)

// TestRedisLeaseSavesRoundTrips checks that a key in steady use is mostly
// decided from leases, and that the decisions stay those of one counter:
// Remaining goes down by exactly one per request.
func TestRedisLeaseSavesRoundTrips(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(mode{batch: batch}.String(), func(t *testing.T) {
			client, prefix := testredis.Client(t)
			hook := &roundTrips{}
			client.AddHook(hook)
			r := newTestRedis(t, client, RedisOptions{Prefix: prefix, Timeout: time.Second, Buckets: testBuckets, Batch: batch, Lease: 16})
			key := Key("acme", "steady")
			const limit = 10_000_000
			// Nothing leaves the window while this runs (less than W), so
			// Remaining must fall by one per request.
			deadline := time.Now().Add(testWindow / 2)
			want := int64(limit)
			for time.Now().Before(deadline) {
				d := mustAllow(t, r, key, limit)
				want--
				if !d.Allowed || d.Remaining != want || d.Reset <= 0 || d.Reset > testWindow+2*testBucket {
					t.Fatalf("request %d: %+v, want Remaining %d", limit-want, d, want)
				}
			}
			requests, trips := limit-want, hook.n.Load()
			t.Logf("%d requests, %d round trips", requests, trips)
			if trips*4 > requests {
				t.Fatalf("%d round trips for %d requests: leases are not used", trips, requests)
			}
		})
	}
}

// TestRedisLeaseExactAcrossNodes hammers one key from two limiters (two
// nodes, each with its own leases) for three windows and checks that no
// interval one window long holds more than the limit of accepted requests,
// and that leases do not lose much quota either.
func TestRedisLeaseExactAcrossNodes(t *testing.T) {
	client, prefix := testredis.Client(t)
	other := redis.NewClient(testredis.Options(t))
	t.Cleanup(func() { other.Close() })
	opts := RedisOptions{Prefix: prefix, Timeout: time.Second, Buckets: testBuckets, Batch: true, Lease: 32}
	nodes := []*Redis{newTestRedis(t, client, opts), newTestRedis(t, other, opts)}
	key := Key("acme", "hammered")
	const limit = 400

	type use struct{ from, to time.Time }
	var mu sync.Mutex
	var uses []use
	var leased int
	stop := time.Now().Add(3 * testWindow)
	var wg sync.WaitGroup
	for i := range 6 {
		node := nodes[i%len(nodes)]
		wg.Go(func() {
			for time.Now().Before(stop) {
				from := time.Now()
				d, err := node.Allow(context.Background(), key, limit, testWindow)
				to := time.Now()
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					mu.Lock()
					uses = append(uses, use{from, to})
					mu.Unlock()
				}
				// Pace the callers at about 1.5 times the limit, so that
				// leases form while quota is plentiful and shrink to
				// single requests as it runs out.
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	for _, n := range nodes {
		for i := range n.leases.shards {
			n.leases.shards[i].mu.Lock()
			for _, l := range n.leases.shards[i].m {
				if l.slots > 0 {
					leased++
				}
			}
			n.leases.shards[i].mu.Unlock()
		}
	}
	slices.SortFunc(uses, func(a, b use) int { return a.from.Compare(b.from) })
	worst := 0
	for i, u := range uses {
		end := u.from.Add(testWindow)
		n := 0
		for _, v := range uses[i:] {
			if !v.from.Before(end) {
				break
			}
			if v.to.Before(end) {
				n++
			}
		}
		worst = max(worst, n)
	}
	var fromLease, fromRedis uint64
	for _, n := range nodes {
		l, r := n.LeaseStats()
		fromLease += l
		fromRedis += r
	}
	t.Logf("%d accepted in 3 windows; at most %d within one window; %d decisions from leases, %d from Redis; %d nodes hold a lease at the end",
		len(uses), worst, fromLease, fromRedis, leased)
	if fromLease == 0 {
		t.Fatal("no decision was made from a lease: the test does not test leases")
	}
	if worst > limit {
		t.Fatalf("%d requests accepted within one window of limit %d", worst, limit)
	}
	// Demand exceeded the limit, so each window and a bucket or two should
	// have seen most of the limit.
	if len(uses) < 2*limit {
		t.Fatalf("only %d accepted in three windows of limit %d: leases waste quota", len(uses), limit)
	}
}

// TestRedisLeaseGivesBack checks that unused leased slots go back to Redis
// once their lease has expired, and on Close.
func TestRedisLeaseGivesBack(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(mode{batch: batch}.String(), func(t *testing.T) {
			client, prefix := testredis.Client(t)
			r := NewRedis(client, RedisOptions{Prefix: prefix, Timeout: time.Second, Buckets: testBuckets, Batch: batch, Lease: 64})
			ctx := context.Background()
			key := Key("acme", "bursty")
			hash := prefix + "rl:" + key
			// A small limit: any leftover is worth giving back (see
			// giveBackShare), and leases are capped at (L - used) / 8.
			const limit = 250
			counted := func() int64 {
				v, err := client.HGet(ctx, hash, "t").Result()
				if err != nil {
					t.Fatal(err)
				}
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
			// Two bucket lengths of steady use, so that the next request
			// asks for a lease sized by the last period's demand...
			accepted := int64(0)
			for end := time.Now().Add(2*testBucket + testBucket/2); time.Now().Before(end); {
				if d := mustAllow(t, r, key, limit); d.Allowed {
					accepted++
				}
				time.Sleep(4 * time.Millisecond)
			}
			// ... then silence: whatever is leased and unused must come
			// back once the lease expires (the sweeper runs every second).
			if c := counted(); c <= accepted {
				t.Logf("no lease outstanding (counted %d, accepted %d)", c, accepted)
			}
			deadline := time.Now().Add(3 * time.Second)
			for counted() != accepted {
				if time.Now().After(deadline) {
					t.Fatalf("Redis counts %d, %d accepted: leased slots not given back", counted(), accepted)
				}
				time.Sleep(20 * time.Millisecond)
			}

			// On Close, live leases are given back at once.
			key2 := Key("acme", "closing")
			hash = prefix + "rl:" + key2
			accepted = 0
			for end := time.Now().Add(2*testBucket + testBucket/2); time.Now().Before(end); {
				mustAllow(t, r, key2, limit)
				accepted++
				time.Sleep(4 * time.Millisecond)
			}
			mustAllow(t, r, key2, limit) // takes a lease
			accepted++
			leasedBefore := counted()
			r.Close()
			if got := counted(); got != accepted {
				t.Fatalf("after Close Redis counts %d (before: %d), %d accepted", got, leasedBefore, accepted)
			}
		})
	}
}

// TestLeaseCountedUntilItsLastUse checks the script's side of the lease
// contract: slots leased at g may be used until g + one bucket, so they
// must stay counted until that bucket has left the window too, one bucket
// longer than a slot taken and used at once.
func TestLeaseCountedUntilItsLastUse(t *testing.T) {
	client, prefix := testredis.Client(t)
	r := newTestRedis(t, client, RedisOptions{Prefix: prefix, Timeout: time.Second, Buckets: testBuckets})
	ctx := context.Background()
	size := testBucket.Milliseconds()
	redisBucket := func() int64 {
		now, err := client.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		return now.UnixMilli() / size
	}
	const limit = 80
	key := prefix + "rl:" + Key("acme", "leased")
	g, err := r.decide(ctx, ask{key: key, limit: limit, size: size, want: 10})
	if err != nil {
		t.Fatal(err)
	}
	granted := redisBucket()
	if !g.Allowed || g.granted != 10 || g.Remaining != limit-10 {
		t.Fatalf("lease: %+v; want 10 slots granted, %d remaining", g, limit-10)
	}
	// Wait until the grant's own bucket has left the window (but not the
	// next one): a slot counted in it would be free again now.
	for redisBucket() < granted+testBuckets+1 {
		time.Sleep(10 * time.Millisecond)
	}
	if b := redisBucket(); b > granted+testBuckets+1 {
		t.Skipf("box too slow: reached bucket %d, past %d", b, granted+testBuckets+1)
	}
	d, err := r.decide(ctx, ask{key: key, limit: limit, size: size, want: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Allowed || d.Remaining != limit-10-1 {
		t.Fatalf("one window after the lease: %+v; want the 10 leased slots still counted (Remaining %d)", d, limit-11)
	}
}

// TestLeaseNotUsedPastItsLifetime checks that a lease whose bucket length
// has passed is not used: the next request goes to Redis.
func TestLeaseNotUsedPastItsLifetime(t *testing.T) {
	client, prefix := testredis.Client(t)
	r := newTestRedis(t, client, RedisOptions{Prefix: prefix, Timeout: time.Second, Buckets: testBuckets, Lease: 1000})
	key := Key("acme", "expiring")
	for end := time.Now().Add(2*testBucket + testBucket/2); time.Now().Before(end); {
		mustAllow(t, r, key, 1_000_000)
	}
	mustAllow(t, r, key, 1_000_000)
	sh := r.leases.shard(key)
	sh.mu.Lock()
	slots := sh.m[key].slots
	sh.mu.Unlock()
	if slots == 0 {
		t.Fatal("no lease held after steady use")
	}
	time.Sleep(testBucket)
	_, before := r.LeaseStats()
	mustAllow(t, r, key, 1_000_000)
	if _, after := r.LeaseStats(); after != before+1 {
		t.Fatalf("a request one bucket length after the lease was granted was not decided in Redis (%d → %d)", before, after)
	}
}

// BenchmarkLeaseAllow measures a decision from a live lease: no Redis.
func BenchmarkLeaseAllow(b *testing.B) {
	client, prefix := testredis.Client(b)
	r := newTestRedis(b, client, RedisOptions{Prefix: prefix, Timeout: time.Second, Buckets: testBuckets, Lease: 1 << 20})
	ctx := context.Background()
	key := Key("acme", "bench")
	// A quarter of a bucket of steady use, then the next request leases.
	for end := time.Now().Add(testBucket/4 + 10*time.Millisecond); time.Now().Before(end); {
		if _, err := r.Allow(ctx, key, 1<<40, testWindow); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := r.Allow(ctx, key, 1<<40, testWindow); err != nil {
		b.Fatal(err)
	}
	l0, _ := r.LeaseStats()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := r.Allow(ctx, key, 1<<40, testWindow); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	l1, _ := r.LeaseStats()
	b.ReportMetric(float64(l1-l0)/float64(b.N), "leased/op")
}
