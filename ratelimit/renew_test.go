package ratelimit

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
)

// TestLeaseRenewedInBackground checks that a key in steady use is decided
// from leases only, once its first lease is held: the next lease is asked
// for in the background when the current one is half used, so no request
// waits for Redis (the lease table's fromRedis counts the decisions made in
// Redis), and Redis counts exactly what was accepted plus what the node
// holds.
func TestLeaseRenewedInBackground(t *testing.T) {
	modes(t, func(t *testing.T, m mode) {
		client, prefix := testredis.Client(t)
		r := m.limiter(t, client, RedisOptions{Prefix: prefix, Timeout: time.Second, Buckets: testBuckets, Lease: 64})
		key := Key("acme", "renewed")
		const limit = 1 << 40
		// A quarter bucket of steady use sizes the first lease.
		for end := time.Now().Add(testBucket/4 + 10*time.Millisecond); time.Now().Before(end); {
			mustAllow(t, r, key, limit)
		}
		mustAllow(t, r, key, limit) // takes the first lease
		_, before := r.LeaseStats()
		const requests = 2000 // some 30 leases of 64
		for i := range requests {
			if d := mustAllow(t, r, key, limit); !d.Allowed {
				t.Fatalf("request %d refused: %+v", i, d)
			}
			// Leave the renewal time to land, as traffic spread over
			// time would (a request a few µs apart).
			if i%16 == 0 {
				time.Sleep(200 * time.Microsecond)
			}
		}
		_, after := r.LeaseStats()
		if after-before > 1 {
			t.Fatalf("%d of %d requests decided in Redis after the first lease; want the renewals to cover them all", after-before, requests)
		}
		if !m.batch {
			return
		}
		// Redis counts every accepted request and the slots still held.
		sh := r.leases.shard(key)
		deadline := time.Now().Add(time.Second)
		for {
			sh.mu.Lock()
			held, pending := sh.m[key].held(), sh.m[key].pending
			sh.mu.Unlock()
			v, err := client.HGet(context.Background(), prefix+"rl:"+key, "t").Result()
			if err != nil {
				t.Fatal(err)
			}
			counted, _ := strconv.ParseInt(v, 10, 64)
			if !pending {
				if fl, fr := r.LeaseStats(); counted != int64(fl+fr)+held {
					t.Fatalf("Redis counts %d; accepted %d (%d leased, %d in Redis), %d held", counted, fl+fr, fl, fr, held)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("a renewal still pending after 1 s")
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// TestLeaseLongerForSlowKeys checks that a key with only a few requests
// per bucket on this node gets a lease that lives several buckets and is
// counted in the bucket of its last possible use, so that most of its
// requests are still decided without Redis.
func TestLeaseLongerForSlowKeys(t *testing.T) {
	client, prefix := testredis.Client(t)
	r := newTestRedis(t, client, RedisOptions{Prefix: prefix, Timeout: time.Second, Buckets: testBuckets, Lease: 1024})
	ctx := context.Background()
	size := testBucket.Milliseconds()
	h := maxHorizon(testBuckets)
	if h < 2 {
		t.Fatalf("maxHorizon(%d) = %d; the test needs a window of at least 8 buckets", testBuckets, h)
	}

	// The script: a lease asked for with lifetime h is counted in cur + h,
	// a single request in cur, and a lifetime past the maximum is capped.
	for _, tc := range []struct{ want, h, ahead int64 }{{1, 0, 0}, {10, 1, 1}, {10, h, h}, {10, h + 5, h}} {
		now, err := client.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		key := prefix + "rl:" + Key("acme", "script-"+strconv.FormatInt(tc.h, 10)+"-"+strconv.FormatInt(tc.want, 10))
		g, err := r.decide(ctx, ask{key: key, limit: 1000, size: size, want: tc.want, bucket: tc.h})
		if err != nil {
			t.Fatal(err)
		}
		cur := now.UnixMilli() / size
		// (The call may have crossed into the next bucket.)
		if g.bucket != cur+tc.ahead && g.bucket != cur+tc.ahead+1 {
			t.Fatalf("want %d, lifetime %d: counted in bucket %d, want %d (now %d)", tc.want, tc.h, g.bucket, cur+tc.ahead, cur)
		}
		if g.granted != tc.want {
			t.Fatalf("want %d: granted %d", tc.want, g.granted)
		}
	}

	// The lease table: about 4 requests per bucket (fewer than leaseTarget)
	// for a few buckets; later leases live h buckets.
	key := Key("acme", "slow")
	interval := testBucket / 4
	var lifetime time.Duration
	fromRedis := 0
	total := 0
	for end := time.Now().Add(5 * testBucket); time.Now().Before(end); {
		_, fr0 := r.LeaseStats()
		asked := time.Now()
		if d := mustAllow(t, r, key, 1_000_000); !d.Allowed {
			t.Fatalf("refused: %+v", d)
		}
		total++
		if _, fr1 := r.LeaseStats(); fr1 != fr0 {
			fromRedis++
			sh := r.leases.shard(key)
			sh.mu.Lock()
			if b := sh.m[key].blocks[0]; b.slots > 0 {
				lifetime = max(lifetime, b.deadline.Sub(asked))
			}
			sh.mu.Unlock()
		}
		time.Sleep(interval)
	}
	t.Logf("%d requests, %d decided in Redis; longest lease lifetime %v (bucket %v)", total, fromRedis, lifetime, testBucket)
	if lifetime <= testBucket {
		t.Fatalf("longest lease lifetime %v; want more than one bucket (%v) for a slow key", lifetime, testBucket)
	}
	if fromRedis*2 > total {
		t.Fatalf("%d of %d requests of a slow key decided in Redis; want most from leases", fromRedis, total)
	}
}
