package limitertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/ratelimit"
)

// testConcurrentExact sends bursts of concurrent requests, four times the
// limit, and checks that exactly the limit is accepted: on one limiter, on
// two limiters on two clients (two gateway nodes), and for three users at
// once on the two, each mode with and without leases.
func testConcurrentExact(t *testing.T, s *suite) {
	s.eachMode(t, func(t *testing.T, m mode) {
		for _, lease := range []int{0, 64} {
			t.Run(fmt.Sprintf("lease=%d", lease), func(t *testing.T) {
				client, prefix := s.client(t)
				other := s.env.Other(t)
				opts := ratelimit.RedisOptions{Prefix: prefix, Timeout: 5 * time.Second, Lease: lease}
				one := s.limiter(t, client, opts, m)
				two := s.limiter(t, other, opts, m)

				const n, limit = 200, 50
				// run sends n requests for each of users keys, spread over
				// limiters, and returns how many were accepted in all.
				run := func(name string, users int, limiters ...ratelimit.Limiter) int64 {
					var allowed atomic.Int64
					var wg sync.WaitGroup
					start := make(chan struct{})
					for i := range n * users {
						key := ratelimit.Key("acme", fmt.Sprintf("%s-%d", name, i%users))
						l := limiters[i%len(limiters)]
						wg.Go(func() {
							<-start
							d, err := l.Allow(context.Background(), key, limit, 2*time.Minute)
							if err != nil {
								t.Error(err)
								return
							}
							if d.Allowed {
								allowed.Add(1)
							}
						})
					}
					close(start)
					wg.Wait()
					return allowed.Load()
				}
				if got := run("one", 1, one); got != limit {
					t.Errorf("one limiter: %d of %d allowed, want exactly %d", got, n, limit)
				}
				if got := run("two", 1, one, two); got != limit {
					t.Errorf("two limiters on two clients: %d of %d allowed, want exactly %d", got, n, limit)
				}
				if got := run("three", 3, one, two); got != 3*limit {
					t.Errorf("three users on two limiters: %d of %d allowed, want exactly %d", got, 3*n, 3*limit)
				}
			})
		}
	})
}

// testBatchMixed sends concurrent calls for several keys, windows and
// limits at once, so that batches mix them: each key still gets exactly its
// limit.
func testBatchMixed(t *testing.T, s *suite) {
	s.eachMode(t, func(t *testing.T, m mode) {
		client, prefix := s.client(t)
		r := s.limiter(t, client, ratelimit.RedisOptions{Prefix: prefix, Timeout: 5 * time.Second}, m)
		type spec struct {
			key    string
			limit  int64
			window time.Duration
		}
		specs := []spec{
			{ratelimit.Key("acme", "a"), 7, time.Minute},
			{ratelimit.Key("acme", "b"), 20, 2 * time.Minute},
			{ratelimit.Key("other", "a"), 1, time.Minute},
			{ratelimit.Key("acme", "c"), 13, time.Hour},
		}
		const perKey = 40
		allowed := make([]atomic.Int64, len(specs))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range perKey * len(specs) {
			k := i % len(specs)
			wg.Go(func() {
				<-start
				d, err := r.Allow(context.Background(), specs[k].key, specs[k].limit, specs[k].window)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Limit != specs[k].limit || d.Remaining < 0 || d.Remaining >= specs[k].limit {
					t.Errorf("%s: %+v", specs[k].key, d)
				}
				if d.Allowed {
					allowed[k].Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		for k, sp := range specs {
			if got := allowed[k].Load(); got != sp.limit {
				t.Errorf("%s (limit %d, window %v): %d of %d allowed", sp.key, sp.limit, sp.window, got, perKey)
			}
		}
	})
}

// testOneRoundTrip checks that a decision costs one round trip to Redis
// (one command, or a pipeline of one), and that concurrent calls on a
// batching limiter share round trips and, unless pipelined, script runs.
//
// On a cluster a pipeline counts as one round trip of the client although
// go-redis sends it to each master it touches at once; and the script is
// loaded on each master by the first call there (NOSCRIPT, then EVAL): the
// keys are warmed first, so that what is counted is the steady state.
func testOneRoundTrip(t *testing.T, s *suite) {
	s.eachMode(t, func(t *testing.T, m mode) {
		client, prefix := s.client(t)
		hook := &roundTrips{}
		client.AddHook(hook)
		r := s.limiter(t, client, ratelimit.RedisOptions{Prefix: prefix, Timeout: s.timeout}, m)
		const users, limit = 5, 100
		for i := range users {
			mustAllow(t, r, ratelimit.Key("acme", fmt.Sprint(i)), limit) // loads the script if needed
		}
		hook.n.Store(0)
		const calls = 50
		for i := range calls {
			mustAllow(t, r, ratelimit.Key("acme", fmt.Sprint(i%users)), limit)
		}
		if got := hook.n.Load(); got != calls {
			t.Fatalf("%d round trips for %d sequential Allow calls, want 1 each", got, calls)
		}
		if !m.batch {
			return
		}
		// Concurrent calls on the batching limiter share round trips, and
		// unless pipelined, script runs.
		hook.n.Store(0)
		hook.cmds.Store(0)
		var wg sync.WaitGroup
		for i := range 200 {
			wg.Go(func() {
				if _, err := r.Allow(context.Background(), ratelimit.Key("acme", fmt.Sprint(i)), 10, time.Minute); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		got, cmds := hook.n.Load(), hook.cmds.Load()
		t.Logf("%d round trips, %d commands for 200 concurrent calls", got, cmds)
		if got >= 200 {
			t.Fatalf("%d round trips for 200 concurrent calls", got)
		}
		if m.pipelined && cmds < 200 || !m.pipelined && cmds >= 100 {
			t.Fatalf("%d commands for 200 concurrent calls (pipelined: %v)", cmds, m.pipelined)
		}
	})
}

// testBatchClose checks that Close of a batching limiter is idempotent and
// that calls after it fail with ErrUnavailable.
func testBatchClose(t *testing.T, s *suite) {
	s.eachBatchMode(t, func(t *testing.T, m mode) {
		client, prefix := s.client(t)
		r := s.limiter(t, client, ratelimit.RedisOptions{Prefix: prefix, Timeout: s.timeout}, m)
		mustAllow(t, r, ratelimit.Key("acme", "close"), 5)
		r.Close()
		r.Close() // idempotent
		if _, err := r.Allow(context.Background(), ratelimit.Key("acme", "close"), 5, window); !errors.Is(err, ratelimit.ErrUnavailable) {
			t.Fatalf("after Close: err = %v, want ErrUnavailable", err)
		}
	})
}
