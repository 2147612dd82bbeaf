package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testredis"
)

// Short windows for the Redis tests, which run on Redis's own clock:
// 2 s split into 10 buckets of 200 ms.
const (
	testWindow  = 2 * time.Second
	testBuckets = 10
	testBucket  = testWindow / testBuckets
)

// roundTrips counts the round trips (commands and pipelines) a client makes,
// and the commands it sends in all.
type roundTrips struct{ n, cmds atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		h.cmds.Add(1)
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		h.cmds.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// mode is one way of running the Redis limiter: direct (one script run per
// call), batched (one script run per batch), or batched as a pipeline of one
// run per call (what a cluster client gets).
type mode struct{ batch, pipelined bool }

func (m mode) String() string {
	switch {
	case m.pipelined:
		return "batch=pipeline"
	case m.batch:
		return "batch=script"
	}
	return "direct"
}

// limiter returns a limiter over c running in mode m.
func (m mode) limiter(t testing.TB, c RedisClient, opts RedisOptions) *Redis {
	opts.Batch = m.batch
	r := newTestRedis(t, c, opts)
	if m.pipelined {
		r.multiKey = false
	}
	return r
}

// modes runs f for each mode of the Redis limiter.
func modes(t *testing.T, f func(t *testing.T, m mode)) {
	for _, m := range []mode{{}, {batch: true}, {batch: true, pipelined: true}} {
		t.Run(m.String(), func(t *testing.T) { f(t, m) })
	}
}

func newTestRedis(t testing.TB, c RedisClient, opts RedisOptions) *Redis {
	r := NewRedis(c, opts)
	t.Cleanup(func() { r.Close() })
	return r
}

func mustAllow(t *testing.T, l Limiter, key string, limit int64) Decision {
	t.Helper()
	d, err := l.Allow(context.Background(), key, limit, testWindow)
	if err != nil {
		t.Fatalf("Allow: %v", err)
	}
	return d
}

func TestRedisWindow(t *testing.T) {
	modes(t, func(t *testing.T, m mode) {
		client, prefix := testredis.Client(t)
		r := m.limiter(t, client, RedisOptions{Prefix: prefix, Timeout: time.Second, Buckets: testBuckets})
		const limit = 3
		key := Key("acme", "u1")

		start := time.Now()
		for i := int64(1); i <= limit; i++ {
			d := mustAllow(t, r, key, limit)
			if !d.Allowed || d.Remaining != limit-i || d.Limit != limit || d.RetryAfter != 0 || d.Degraded {
				t.Fatalf("request %d: %+v", i, d)
			}
			// The first request's bucket leaves the window W to W+s after it.
			if d.Reset <= testWindow-time.Since(start) || d.Reset > testWindow+testBucket {
				t.Fatalf("request %d: reset %v outside (W - elapsed, W + bucket]", i, d.Reset)
			}
		}
		ttl, err := client.PTTL(context.Background(), prefix+"rl:"+key).Result()
		// (It covers the next bucket too, where leases are counted.)
		if err != nil || ttl <= 0 || ttl > testWindow+2*testBucket {
			t.Fatalf("PTTL = %v, %v; want in (0, W + 2 buckets]", ttl, err)
		}

		// Another key is independent.
		if d := mustAllow(t, r, Key("acme", "u2"), limit); !d.Allowed || d.Remaining != limit-1 {
			t.Fatalf("other key: %+v", d)
		}

		// Keep asking, across the window boundary, until quota returns.
		rejected := 0
		var d Decision
		for {
			d = mustAllow(t, r, key, limit)
			if d.Allowed {
				break
			}
			rejected++
			if d.Remaining != 0 || d.RetryAfter <= 0 || d.RetryAfter > testWindow+testBucket || d.Reset != d.RetryAfter {
				t.Fatalf("rejection %d: %+v", rejected, d)
			}
			if time.Since(start) > 10*testWindow {
				t.Fatal("quota never returned")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if elapsed := time.Since(start); elapsed < testWindow {
			t.Fatalf("quota returned after %v, before one window (%v): more than %d in one window", elapsed, testWindow, limit)
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

// TestRedisRejectionsDoNotConsume checks on Redis that a steady stream of
// rejected requests never delays the return of quota beyond W + one bucket.
func TestRedisRejectionsDoNotConsume(t *testing.T) {
	client, prefix := testredis.Client(t)
	r := newTestRedis(t, client, RedisOptions{Prefix: prefix, Timeout: time.Second, Buckets: testBuckets})
	key := Key("acme", "steady")
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
		if time.Since(after) > testWindow+testBucket+time.Second {
			t.Fatalf("quota not back %v after the only accepted request", time.Since(first))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if since := time.Since(first); since < testWindow {
		t.Fatalf("second request accepted %v after the first, within one window", since)
	}
	// The first bucket was deleted when it left the window: the hash holds
	// the bucket size, sum and lowest bucket, and the new bucket only.
	fields, err := client.HKeys(context.Background(), prefix+"rl:"+key).Result()
	if err != nil || len(fields) != 4 {
		t.Fatalf("HKEYS = %q, %v; want s, t, l and one bucket", fields, err)
	}
}

func TestRedisWindowChange(t *testing.T) {
	client, prefix := testredis.Client(t)
	r := newTestRedis(t, client, RedisOptions{Prefix: prefix, Timeout: time.Second})
	key := Key("acme", "change")
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
}

func TestRedisConcurrentExact(t *testing.T) {
	modes(t, func(t *testing.T, m mode) {
		client, prefix := testredis.Client(t)
		other := redis.NewClient(testredis.Options(t))
		t.Cleanup(func() { other.Close() })
		opts := RedisOptions{Prefix: prefix, Timeout: 5 * time.Second}
		one := m.limiter(t, client, opts)
		two := m.limiter(t, other, opts)

		const n, limit = 200, 50
		run := func(key string, limiters ...Limiter) int64 {
			var allowed atomic.Int64
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
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
		if got := run(Key("acme", "one"), one); got != limit {
			t.Errorf("one limiter: %d of %d allowed, want exactly %d", got, n, limit)
		}
		if got := run(Key("acme", "two"), one, two); got != limit {
			t.Errorf("two limiters on two clients: %d of %d allowed, want exactly %d", got, n, limit)
		}
	})
}

func TestRedisOneRoundTrip(t *testing.T) {
	modes(t, func(t *testing.T, m mode) {
		client, prefix := testredis.Client(t)
		hook := &roundTrips{}
		client.AddHook(hook)
		r := m.limiter(t, client, RedisOptions{Prefix: prefix, Timeout: time.Second})
		mustAllow(t, r, Key("acme", "warm"), 10) // loads the script if needed
		hook.n.Store(0)
		const calls = 50
		for i := range calls {
			mustAllow(t, r, Key("acme", fmt.Sprint(i%5)), 10)
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
				if _, err := r.Allow(context.Background(), Key("acme", fmt.Sprint(i)), 10, time.Minute); err != nil {
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
		// (New pool connections add their handshake commands to the counts.)
		if m.pipelined && cmds < 200 || !m.pipelined && cmds >= 100 {
			t.Fatalf("%d commands for 200 concurrent calls (pipelined: %v)", cmds, m.pipelined)
		}
	})
}

func TestRedisNoScript(t *testing.T) {
	modes(t, func(t *testing.T, m mode) {
		srv := testredis.StartServer(t)
		admin := srv.Client()
		r := m.limiter(t, srv.Client(), RedisOptions{Timeout: time.Second})
		ctx := context.Background()
		for i := range 3 {
			if err := admin.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			d, err := r.Allow(ctx, Key("acme", "ns"), 10, time.Minute)
			if err != nil || !d.Allowed || d.Remaining != int64(9-i) {
				t.Fatalf("after SCRIPT FLUSH %d: %+v, %v", i, d, err)
			}
		}
		// The fallback loaded the script again.
		ok, err := admin.ScriptExists(ctx, windowScript.Hash()).Result()
		if err != nil || !ok[0] {
			t.Fatalf("script not loaded after EVAL fallback: %v, %v", ok, err)
		}
	})
}

func TestRedisStopped(t *testing.T) {
	modes(t, func(t *testing.T, m mode) {
		srv := testredis.StartServer(t)
		const timeout = 50 * time.Millisecond
		r := m.limiter(t, srv.Client(), RedisOptions{Timeout: timeout})
		if d := mustAllow(t, r, Key("acme", "down"), 10); !d.Allowed {
			t.Fatal("refused while up")
		}
		srv.Stop()
		for range 3 {
			start := time.Now()
			_, err := r.Allow(context.Background(), Key("acme", "down"), 10, testWindow)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("with Redis stopped: err = %v, want ErrUnavailable", err)
			}
			if el := time.Since(start); el > timeout+time.Second {
				t.Fatalf("Allow took %v with Redis stopped, timeout %v", el, timeout)
			}
		}
	})
}

func TestRedisPaused(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ctxAware bool
		batch    bool
	}{
		{"default client", false, false},
		{"ContextTimeoutEnabled", true, false},
		{"batch", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testredis.StartServer(t)
			c := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: tc.ctxAware})
			t.Cleanup(func() { c.Close() })
			// A batched call may wait QueueTimeout in the queue, then
			// Timeout for Redis: the bound below covers both.
			const timeout, queue = 100 * time.Millisecond, 200 * time.Millisecond
			r := newTestRedis(t, c, RedisOptions{Timeout: timeout, QueueTimeout: queue, Batch: tc.batch})
			if r.bounded != tc.ctxAware {
				t.Fatalf("bounded = %v, want %v", r.bounded, tc.ctxAware)
			}
			mustAllow(t, r, Key("acme", "p"), 10)
			if err := srv.Client().Do(context.Background(), "CLIENT", "PAUSE", "3000").Err(); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err := r.Allow(context.Background(), Key("acme", "p"), 10, testWindow)
			el := time.Since(start)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("paused: err = %v, want ErrUnavailable", err)
			}
			if el > timeout+queue+time.Second {
				t.Fatalf("Allow hung for %v on a paused Redis (timeout %v, queue timeout %v)", el, timeout, queue)
			}
		})
	}
}

// countingLimiter counts the calls that reach the limiter it wraps.
type countingLimiter struct {
	Limiter
	calls atomic.Int64
}

func (c *countingLimiter) Allow(ctx context.Context, key string, limit int64, window time.Duration) (Decision, error) {
	c.calls.Add(1)
	return c.Limiter.Allow(ctx, key, limit, window)
}

func TestBreakerWithRedis(t *testing.T) {
	srv := testredis.StartServer(t)
	counted := &countingLimiter{Limiter: newTestRedis(t, srv.Client(), RedisOptions{Timeout: 50 * time.Millisecond})}
	const coolDown = 300 * time.Millisecond
	b := NewBreaker(counted, BreakerOptions{Failures: 5, CoolDown: coolDown})
	local := newTestLocal(t)
	var fallbacks atomic.Int64
	open := &Guarded{Primary: b, Mode: FailOpen, Fallback: local, OnFallback: func(error) { fallbacks.Add(1) }}
	closed := &Guarded{Primary: b}
	ctx := context.Background()
	key := Key("acme", "brk")

	if d, err := closed.Allow(ctx, key, 3, time.Minute); err != nil || !d.Allowed || d.Degraded {
		t.Fatalf("while up: %+v, %v", d, err)
	}
	srv.Stop()

	for i := 1; i <= 5; i++ {
		if _, err := closed.Allow(ctx, key, 3, time.Minute); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("failure %d: err = %v, want ErrUnavailable", i, err)
		}
	}
	if s := b.State(); s != BreakerOpen {
		t.Fatalf("after 5 failures: state %v, want open", s)
	}
	calls := counted.calls.Load()
	for range 20 {
		if _, err := closed.Allow(ctx, key, 3, time.Minute); !errors.Is(err, ErrCircuitOpen) || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("open breaker: err = %v, want ErrCircuitOpen wrapping ErrUnavailable", err)
		}
	}
	if got := counted.calls.Load(); got != calls {
		t.Fatalf("open breaker called Redis %d times", got-calls)
	}

	// Fail open: the local limiter decides, exactly, and says so.
	for i := int64(1); i <= 4; i++ {
		d, err := open.Allow(ctx, key, 3, time.Minute)
		if err != nil || !d.Degraded || d.Allowed != (i <= 3) {
			t.Fatalf("fail-open request %d: %+v, %v", i, d, err)
		}
	}
	if fallbacks.Load() != 4 {
		t.Fatalf("OnFallback called %d times, want 4", fallbacks.Load())
	}

	// After the cool-down one probe goes through; it fails, so the breaker opens again.
	time.Sleep(coolDown)
	if _, err := closed.Allow(ctx, key, 3, time.Minute); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("probe: err = %v, want a Redis error", err)
	}
	if got := counted.calls.Load(); got != calls+1 {
		t.Fatalf("half-open let %d calls through, want 1", got-calls)
	}
	if s := b.State(); s != BreakerOpen {
		t.Fatalf("after a failed probe: state %v, want open", s)
	}

	srv.Start()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := closed.Allow(ctx, key, 3, time.Minute)
		if err == nil {
			if !d.Allowed || d.Degraded {
				t.Fatalf("after recovery: %+v", d)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("breaker did not recover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s := b.State(); s != BreakerClosed {
		t.Fatalf("after recovery: state %v, want closed", s)
	}
}

// benchClient returns a client of the shared Redis, with go-redis's
// ContextTimeoutEnabled when bounded is set, and a fresh key prefix.
func benchClient(b *testing.B, bounded bool) (*redis.Client, string) {
	shared, prefix := testredis.Client(b) // skips without Redis; cleans the prefix
	_ = shared
	opt := testredis.Options(b)
	opt.ContextTimeoutEnabled = bounded
	c := redis.NewClient(opt)
	b.Cleanup(func() { c.Close() })
	return c, prefix
}

// benchmarkRedis measures Allow on the shared Redis; parallel runs use 16
// goroutines per CPU, like a gateway with many requests in flight.
func benchmarkRedis(b *testing.B, bounded, batch, parallel bool) {
	client, prefix := benchClient(b, bounded)
	hook := &roundTrips{}
	client.AddHook(hook)
	r := newTestRedis(b, client, RedisOptions{Prefix: prefix, Timeout: time.Second, Batch: batch})
	ctx := context.Background()
	keys := make([]string, 256)
	for i := range keys {
		keys[i] = Key("bench", fmt.Sprint(i))
	}
	if _, err := r.Allow(ctx, keys[0], 1<<40, time.Minute); err != nil {
		b.Fatal(err)
	}
	hook.n.Store(0)
	cpu0 := processCPU(b)
	b.ReportAllocs()
	b.ResetTimer()
	if parallel {
		var seq atomic.Int64
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			i := int(seq.Add(1)) * 31
			for pb.Next() {
				if _, err := r.Allow(ctx, keys[i%len(keys)], 1<<40, time.Minute); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	} else {
		for i := 0; b.Loop(); i++ {
			if _, err := r.Allow(ctx, keys[i%len(keys)], 1<<40, time.Minute); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(hook.n.Load())/float64(b.N), "roundtrips/op")
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU returns the user and system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkRedisAllow(b *testing.B)                { benchmarkRedis(b, true, false, false) }
func BenchmarkRedisAllowWatchdog(b *testing.B)        { benchmarkRedis(b, false, false, false) }
func BenchmarkRedisAllowParallel(b *testing.B)        { benchmarkRedis(b, true, false, true) }
func BenchmarkRedisBatchedAllowParallel(b *testing.B) { benchmarkRedis(b, true, true, true) }

func TestRedisBatchClose(t *testing.T) {
	client, prefix := testredis.Client(t)
	r := NewRedis(client, RedisOptions{Prefix: prefix, Timeout: time.Second, Batch: true})
	mustAllow(t, r, Key("acme", "close"), 5)
	r.Close()
	r.Close() // idempotent
	if _, err := r.Allow(context.Background(), Key("acme", "close"), 5, testWindow); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after Close: err = %v, want ErrUnavailable", err)
	}
}

// TestRedisBatchMixed sends concurrent calls for several keys, windows and
// limits at once, so that batches mix them: each key still gets exactly its
// limit.
func TestRedisBatchMixed(t *testing.T) {
	modes(t, func(t *testing.T, m mode) {
		client, prefix := testredis.Client(t)
		r := m.limiter(t, client, RedisOptions{Prefix: prefix, Timeout: 5 * time.Second})
		type spec struct {
			key    string
			limit  int64
			window time.Duration
		}
		specs := []spec{
			{Key("acme", "a"), 7, time.Minute},
			{Key("acme", "b"), 20, 2 * time.Minute},
			{Key("other", "a"), 1, time.Minute},
			{Key("acme", "c"), 13, time.Hour},
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
		for k, s := range specs {
			if got := allowed[k].Load(); got != s.limit {
				t.Errorf("%s (limit %d, window %v): %d of %d allowed", s.key, s.limit, s.window, got, perKey)
			}
		}
	})
}

// TestRedisHashBookkeeping checks, over calls spread across several
// windows, that the hash's sum and lowest-bucket fields always agree with
// its buckets, and that a hash written by the earlier script (buckets and
// size only) is taken over with its counts.
func TestRedisHashBookkeeping(t *testing.T) {
	client, prefix := testredis.Client(t)
	r := newTestRedis(t, client, RedisOptions{Prefix: prefix, Timeout: time.Second, Buckets: testBuckets, Batch: true})
	ctx := context.Background()
	size := testBucket.Milliseconds()

	check := func(key string) {
		t.Helper()
		h, err := client.HGetAll(ctx, prefix+"rl:"+key).Result()
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

	// A hash as the earlier script left it: three requests in the current
	// bucket, one in a bucket that has left the window.
	now, err := client.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	cur := now.UnixMilli() / size
	old := Key("acme", "old")
	if err := client.HSet(ctx, prefix+"rl:"+old, "s", size, fmt.Sprint(cur), 3, fmt.Sprint(cur-testBuckets-5), 1).Err(); err != nil {
		t.Fatal(err)
	}
	if d := mustAllow(t, r, old, 4); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("old-format hash: %+v; want the 4th of 4 allowed", d)
	}
	check(old)
	if d := mustAllow(t, r, old, 4); d.Allowed {
		t.Fatalf("old-format hash: %+v; want the 5th of 4 refused", d)
	}

	keys := []string{Key("acme", "x"), Key("acme", "y"), Key("acme", "z")}
	deadline := time.Now().Add(testWindow + 3*testBucket)
	for i := 0; time.Now().Before(deadline); i++ {
		key := keys[i%len(keys)]
		mustAllow(t, r, key, int64(2+i%5))
		check(key)
		time.Sleep(time.Duration(i%7) * time.Millisecond)
	}
}
