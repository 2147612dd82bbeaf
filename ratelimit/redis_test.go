package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testredis"
)

// The limiter's exactness and behaviour on Redis is the limitertest suite
// (run on the test Redis by TestRedisSuite, on Cluster, Sentinel and
// TLS+ACL by the module's topology tests); the tests here need a Redis of
// their own to flush, stop or pause, or look inside the limiter.

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

	// While Redis is up, calls pass the breaker. The first one dials and
	// loads the script, which on a busy box can take longer than the 50ms
	// Timeout: warm up (on another key) until one succeeds, which also
	// closes the breaker again if those tries opened it.
	warmUp(t, closed, Key("acme", "brk-warm"))
	if s := b.State(); s != BreakerClosed {
		t.Fatalf("while up: breaker %v", s)
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
