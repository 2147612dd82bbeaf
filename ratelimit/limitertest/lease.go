package limitertest

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/ratelimit"
)

// testLeaseSavesRoundTrips checks that a key in steady use is mostly
// decided from leases, and that the decisions stay those of one counter:
// Remaining goes down by exactly one per request.
//
// That holds only while no lease expires unused: slots of an expired lease
// that are less than 1/256 of the quota left are not given back (see the
// package doc), so Remaining drops by them. A lease lives one bucket,
// counted from before its request was sent, so the bucket must be longer
// than the longest call (1.5 × QueueTimeout + Timeout; a renewal that took
// longer came back with no lifetime left, which is how this case once saw
// Remaining 16 below the count, on a box loaded by a second test run): the
// suite's 200 ms buckets are not, so this case has a window of its own,
// with buckets longer than the limiter's call bound, as the default
// 2-minute window's are (10 s against 1.55 s).
func testLeaseSavesRoundTrips(t *testing.T, s *suite) {
	s.eachMode(t, func(t *testing.T, m mode) {
		client, prefix := s.client(t)
		hook := &roundTrips{}
		client.AddHook(hook)
		opts := ratelimit.RedisOptions{Prefix: prefix, Timeout: s.timeout, QueueTimeout: 500 * time.Millisecond, Buckets: buckets, Lease: 16}
		r := s.limiter(t, client, opts, m)
		bucket := max(2*time.Second, (r.CallBound() + time.Second).Truncate(time.Second))
		leaseWindow := bucket * buckets
		key := ratelimit.Key("acme", "steady")
		const limit = 10_000_000
		// Nothing leaves the window while this runs (a quarter bucket,
		// which sizes the first lease, then 1.5 s of steady use), so
		// Remaining must fall by one per request. The round trips are
		// counted in the steady state, from the first leased decision on:
		// before it every request is its own round trip, for a time that
		// grows with the bucket, not with the leases' use.
		warmUntil := time.Now().Add(bucket/4 + 5*time.Second)
		var deadline time.Time
		var leasedFrom int64
		want := int64(limit)
		for deadline.IsZero() || time.Now().Before(deadline) {
			d, err := r.Allow(context.Background(), key, limit, leaseWindow)
			if err != nil {
				t.Fatalf("Allow: %v", err)
			}
			want--
			if !d.Allowed || d.Remaining != want || d.Reset <= 0 || d.Reset > leaseWindow+2*bucket {
				t.Fatalf("request %d: %+v, want Remaining %d", limit-want, d, want)
			}
			switch {
			case deadline.IsZero() && d.Leased:
				hook.n.Store(0)
				leasedFrom = limit - want
				deadline = time.Now().Add(1500 * time.Millisecond)
			case deadline.IsZero() && time.Now().After(warmUntil):
				t.Fatalf("no decision from a lease after %d requests in %v", limit-want, bucket/4+5*time.Second)
			}
		}
		requests, trips := limit-want-leasedFrom, hook.n.Load()
		t.Logf("%d requests before the first lease; then %d requests, %d round trips (bucket %v, call bound %v)",
			leasedFrom, requests, trips, bucket, r.CallBound())
		if trips*4 > requests {
			t.Fatalf("%d round trips for %d requests: leases are not used", trips, requests)
		}
	})
}

// testLeaseExactAcrossNodes hammers one key from two limiters (two nodes,
// each with its own leases) on two clients for three windows and checks
// that no interval one window long holds more than the limit of accepted
// requests, and that leases do not lose much quota either.
func testLeaseExactAcrossNodes(t *testing.T, s *suite) {
	s.eachMode(t, func(t *testing.T, m mode) {
		client, prefix := s.client(t)
		other := s.env.Other(t)
		opts := ratelimit.RedisOptions{Prefix: prefix, Timeout: s.timeout, Buckets: buckets, Lease: 32}
		nodes := []*ratelimit.Redis{s.limiter(t, client, opts, m), s.limiter(t, other, opts, m)}
		key := ratelimit.Key("acme", "hammered")
		const limit = 400

		type use struct{ from, to time.Time }
		var mu sync.Mutex
		var uses []use
		stop := time.Now().Add(3 * window)
		var wg sync.WaitGroup
		for i := range 6 {
			node := nodes[i%len(nodes)]
			wg.Go(func() {
				next := time.Now()
				for time.Now().Before(stop) {
					from := time.Now()
					d, err := node.Allow(context.Background(), key, limit, window)
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
					// Pace the callers at about 1.5 times the limit, so
					// that leases form while quota is plentiful and shrink
					// to single requests as it runs out: a call every 20 ms
					// each, however long the calls take (on a busy box or
					// a remote deployment, a sleep after each call would
					// bring demand down to the limit).
					next = next.Add(20 * time.Millisecond)
					time.Sleep(time.Until(next))
				}
			})
		}
		wg.Wait()
		slices.SortFunc(uses, func(a, b use) int { return a.from.Compare(b.from) })
		worst := 0
		for i, u := range uses {
			end := u.from.Add(window)
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
		t.Logf("%d accepted in 3 windows; at most %d within one window; %d decisions from leases, %d from Redis",
			len(uses), worst, fromLease, fromRedis)
		if fromLease == 0 {
			t.Fatal("no decision was made from a lease: the test does not test leases")
		}
		if worst > limit {
			t.Fatalf("%d requests accepted within one window of limit %d", worst, limit)
		}
		// Demand exceeded the limit, so each window and a bucket or two
		// should have seen most of the limit.
		if len(uses) < 2*limit {
			t.Fatalf("only %d accepted in three windows of limit %d: leases waste quota", len(uses), limit)
		}
	})
}

// testLeaseGivesBack checks that unused leased slots go back to Redis once
// their lease has expired, and on Close.
func testLeaseGivesBack(t *testing.T, s *suite) {
	s.eachMode(t, func(t *testing.T, m mode) {
		client, prefix := s.client(t)
		admin := s.admin(t, client)
		r := s.limiter(t, client, ratelimit.RedisOptions{Prefix: prefix, Timeout: s.timeout, Buckets: buckets, Lease: 64}, m)
		ctx := context.Background()
		key := ratelimit.Key("acme", "bursty")
		hash := prefix + "rl:" + key
		// A small limit: any leftover is worth giving back, and leases are
		// capped at (L - used) / 8.
		const limit = 250
		counted := func() int64 {
			v, err := admin.HGet(ctx, hash, "t").Result()
			if err != nil {
				t.Fatal(err)
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
		// Two bucket lengths of steady use, so that the next request asks
		// for a lease sized by the last period's demand...
		accepted := int64(0)
		for end := time.Now().Add(2*bucketSize + bucketSize/2); time.Now().Before(end); {
			if d := mustAllow(t, r, key, limit); d.Allowed {
				accepted++
			}
			time.Sleep(4 * time.Millisecond)
		}
		// ... then silence: whatever is leased and unused must come back
		// once the lease expires (the sweeper runs every second).
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
		key2 := ratelimit.Key("acme", "closing")
		hash = prefix + "rl:" + key2
		accepted = 0
		for end := time.Now().Add(2*bucketSize + bucketSize/2); time.Now().Before(end); {
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
