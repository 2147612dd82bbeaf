package limitertest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keygate/keygate/ratelimit"
)

// testWindow checks one key's window: the limit is accepted, with the
// headers' values right, the key expires, other keys are independent, and
// quota returns one window (and at most a bucket) later, not before, with
// the rejections in between consuming nothing.
func testWindow(t *testing.T, s *suite) {
	s.eachMode(t, func(t *testing.T, m mode) {
		client, prefix := s.client(t)
		admin := s.admin(t, client)
		r := s.limiter(t, client, ratelimit.RedisOptions{Prefix: prefix, Timeout: s.timeout, Buckets: buckets}, m)
		const limit = 3
		key := ratelimit.Key("acme", "u1")

		start := time.Now()
		for i := int64(1); i <= limit; i++ {
			d := mustAllow(t, r, key, limit)
			if !d.Allowed || d.Remaining != limit-i || d.Limit != limit || d.RetryAfter != 0 || d.Degraded {
				t.Fatalf("request %d: %+v", i, d)
			}
			// The first request's bucket leaves the window W to W+s after it.
			if d.Reset <= window-time.Since(start) || d.Reset > window+bucketSize {
				t.Fatalf("request %d: reset %v outside (W - elapsed, W + bucket]", i, d.Reset)
			}
		}
		ttl, err := admin.PTTL(context.Background(), prefix+"rl:"+key).Result()
		// (It covers the buckets ahead where leases are counted, up to
		// a quarter window: max(1, N/4) of them.)
		ahead := time.Duration(max(1, buckets/4))
		if err != nil || ttl <= 0 || ttl > window+(ahead+1)*bucketSize {
			t.Fatalf("PTTL = %v, %v; want in (0, W + %d buckets]", ttl, err, ahead+1)
		}

		// Another key is independent.
		if d := mustAllow(t, r, ratelimit.Key("acme", "u2"), limit); !d.Allowed || d.Remaining != limit-1 {
			t.Fatalf("other key: %+v", d)
		}

		// Keep asking, across the window boundary, until quota returns.
		rejected := 0
		var d ratelimit.Decision
		for {
			d = mustAllow(t, r, key, limit)
			if d.Allowed {
				break
			}
			rejected++
			if d.Remaining != 0 || d.RetryAfter <= 0 || d.RetryAfter > window+bucketSize || d.Reset != d.RetryAfter {
				t.Fatalf("rejection %d: %+v", rejected, d)
			}
			if time.Since(start) > 10*window {
				t.Fatal("quota never returned")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if elapsed := time.Since(start); elapsed < window {
			t.Fatalf("quota returned after %v, before one window (%v): more than %d in one window", elapsed, window, limit)
		}
		if rejected < 10 {
			t.Fatalf("only %d rejections before quota returned", rejected)
		}
		// The rejections consumed nothing: all three slots came back (the
		// first three requests were at most a bucket or two apart).
		got := 1
		for {
			if d := mustAllow(t, r, key, limit); !d.Allowed {
				break
			}
			got++
			if got > limit {
				t.Fatalf("more than %d allowed in one window", limit)
			}
		}
	})
}

// testRejectionsDoNotConsume checks that a steady stream of rejected
// requests never delays the return of quota beyond W + one bucket.
func testRejectionsDoNotConsume(t *testing.T, s *suite) {
	s.eachMode(t, func(t *testing.T, m mode) {
		client, prefix := s.client(t)
		admin := s.admin(t, client)
		r := s.limiter(t, client, ratelimit.RedisOptions{Prefix: prefix, Timeout: s.timeout, Buckets: buckets}, m)
		key := ratelimit.Key("acme", "steady")
		first := time.Now()
		if d := mustAllow(t, r, key, 1); !d.Allowed {
			t.Fatal("first request refused")
		}
		after := time.Now()
		for {
			d := mustAllow(t, r, key, 1)
			if d.Allowed {
				break
			}
			if time.Since(after) > window+bucketSize+time.Second {
				t.Fatalf("quota not back %v after the only accepted request", time.Since(first))
			}
			time.Sleep(5 * time.Millisecond)
		}
		if since := time.Since(first); since < window {
			t.Fatalf("second request accepted %v after the first, within one window", since)
		}
		// The first bucket was deleted when it left the window: the hash
		// holds the bucket size, sum and lowest bucket, and the new bucket
		// only.
		fields, err := admin.HKeys(context.Background(), prefix+"rl:"+key).Result()
		if err != nil || len(fields) != 4 {
			t.Fatalf("HKEYS = %q, %v; want s, t, l and one bucket", fields, err)
		}
	})
}

// testWindowChange checks that a key's window may change between calls:
// the new window is taken, with the requests already counted.
func testWindowChange(t *testing.T, s *suite) {
	s.eachMode(t, func(t *testing.T, m mode) {
		client, prefix := s.client(t)
		r := s.limiter(t, client, ratelimit.RedisOptions{Prefix: prefix, Timeout: s.timeout}, m)
		key := ratelimit.Key("acme", "change")
		ctx := context.Background()
		for i, tc := range []struct {
			window  time.Duration
			allowed bool
		}{{time.Minute, true}, {time.Minute, false}, {2 * time.Minute, true}, {2 * time.Minute, false}} {
			d, err := r.Allow(ctx, key, 1, tc.window)
			if err != nil || d.Allowed != tc.allowed {
				t.Fatalf("step %d (window %v): %+v, %v; want allowed=%v", i, tc.window, d, err, tc.allowed)
			}
		}
		if d, err := r.Allow(ctx, key, 0, time.Minute); err != nil || d.Allowed {
			t.Fatalf("limit 0: %+v, %v", d, err)
		}
	})
}

// testHashBookkeeping checks, over calls spread across several windows,
// that the hash's sum and lowest-bucket fields always agree with its
// buckets, and that a hash written by the earlier script (buckets and size
// only) is taken over with its counts.
func testHashBookkeeping(t *testing.T, s *suite) {
	s.eachMode(t, func(t *testing.T, m mode) {
		client, prefix := s.client(t)
		admin := s.admin(t, client)
		r := s.limiter(t, client, ratelimit.RedisOptions{Prefix: prefix, Timeout: s.timeout, Buckets: buckets}, m)
		ctx := context.Background()
		size := bucketSize.Milliseconds()

		check := func(key string) {
			t.Helper()
			h, err := admin.HGetAll(ctx, prefix+"rl:"+key).Result()
			if err != nil {
				t.Fatal(err)
			}
			var sum, low int64 = 0, -1
			for f, v := range h {
				var b, c int64
				if _, err := fmt.Sscan(f, &b); err != nil {
					continue // s, t, l
				}
				fmt.Sscan(v, &c)
				if c < 1 {
					t.Fatalf("bucket %s holds %s", f, v)
				}
				sum += c
				if low < 0 || b < low {
					low = b
				}
			}
			if h["s"] != fmt.Sprint(size) || h["t"] != fmt.Sprint(sum) || (sum > 0 && h["l"] != fmt.Sprint(low)) {
				t.Fatalf("hash %v: want s=%d t=%d l=%d", h, size, sum, low)
			}
		}

		// A hash as the earlier script left it: three requests in the
		// current bucket, one in a bucket that has left the window.
		now, err := admin.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		cur := now.UnixMilli() / size
		old := ratelimit.Key("acme", "old")
		if err := admin.HSet(ctx, prefix+"rl:"+old, "s", size, fmt.Sprint(cur), 3, fmt.Sprint(cur-buckets-5), 1).Err(); err != nil {
			t.Fatal(err)
		}
		if d := mustAllow(t, r, old, 4); !d.Allowed || d.Remaining != 0 {
			t.Fatalf("old-format hash: %+v; want the 4th of 4 allowed", d)
		}
		check(old)
		if d := mustAllow(t, r, old, 4); d.Allowed {
			t.Fatalf("old-format hash: %+v; want the 5th of 4 refused", d)
		}

		keys := []string{ratelimit.Key("acme", "x"), ratelimit.Key("acme", "y"), ratelimit.Key("acme", "z")}
		deadline := time.Now().Add(window + 3*bucketSize)
		for i := 0; time.Now().Before(deadline); i++ {
			key := keys[i%len(keys)]
			mustAllow(t, r, key, int64(2+i%5))
			check(key)
			time.Sleep(time.Duration(i%7) * time.Millisecond)
		}
	})
}
