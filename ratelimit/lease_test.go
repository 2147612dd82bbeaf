package ratelimit

import (
	"context"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
)

// The lease tests that hold on any Redis deployment are in limitertest;
// these look inside the limiter (its lease table, the script's grants).

// TestLeaseCountedUntilItsLastUse checks the script's side of the lease
// contract: slots leased at g for one bucket may be used until g + one
// bucket, so they must stay counted until that bucket has left the window
// too, one bucket longer than a slot taken and used at once.
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
		mustAllow(t, r, key, 1<<40)
	}
	mustAllow(t, r, key, 1<<40)
	sh := r.leases.shard(key)
	sh.mu.Lock()
	slots := sh.m[key].held()
	sh.mu.Unlock()
	if slots == 0 {
		t.Fatal("no lease held after steady use")
	}
	time.Sleep(testBucket)
	_, before := r.LeaseStats()
	mustAllow(t, r, key, 1<<40)
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
