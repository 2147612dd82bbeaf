package ratelimit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testredis"
)

// productionClient is a client configured like redisstore.NewClient's: the
// context deadline is honoured and a sent command has timeout to be
// answered.
func productionClient(t *testing.T, addr string, timeout time.Duration) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, ReadTimeout: timeout, WriteTimeout: timeout,
		DialTimeout: 250 * time.Millisecond, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// warmUp calls l for key until a call succeeds (within 10 s): a limiter
// with a short Timeout may need several tries for its first round trip
// (dial, NOSCRIPT, EVAL) on a loaded machine.
func warmUp(t *testing.T, l Limiter, key string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := l.Allow(context.Background(), key, 1000, testWindow)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no call succeeded within 10s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBreakerIgnoresQueueing: calls that expire in the batching queue behind
// a slow batch (Redis busy, but answering within Timeout) fail with
// ErrOverloaded, and however many do, the breaker stays closed.
func TestBreakerIgnoresQueueing(t *testing.T) {
	srv := testredis.StartServer(t)
	r := newTestRedis(t, productionClient(t, srv.Addr, time.Second), RedisOptions{
		Timeout: time.Second, QueueTimeout: 30 * time.Millisecond, Batch: true, MaxBatch: 1, Flushers: 1,
	})
	b := NewBreaker(r, BreakerOptions{Failures: 2, CoolDown: time.Minute})
	ctx := context.Background()
	mustAllow(t, b, Key("acme", "warm"), 1000)

	// Redis is busy for 300ms (slow, not down): the first call waits for it,
	// the others expire in the queue behind it.
	busy := make(chan error, 1)
	go func() { busy <- srv.Client().Do(ctx, "DEBUG", "SLEEP", "0.3").Err() }()
	time.Sleep(50 * time.Millisecond)
	const n = 50
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = b.Allow(ctx, Key("acme", "burst"), 1000, testWindow)
		})
	}
	wg.Wait()
	if err := <-busy; err != nil {
		t.Fatalf("DEBUG SLEEP: %v", err)
	}
	over := 0
	for _, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, ErrOverloaded) && errors.Is(err, ErrUnavailable):
			over++
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if over == 0 {
		t.Fatal("no call expired in the queue behind a 300ms batch with a 30ms queue timeout")
	}
	if s := b.State(); s != BreakerClosed {
		t.Fatalf("breaker %v after %d calls expired in the queue; want closed", s, over)
	}
	t.Logf("%d of %d calls expired in the queue; breaker closed", over, n)
	mustAllow(t, b, Key("acme", "burst"), 1000)
}

// TestBreakerOpensOnPausedRedis: round trips that get no answer within
// Timeout are evidence against Redis, batched or not.
func TestBreakerOpensOnPausedRedis(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(map[bool]string{false: "direct", true: "batch"}[batch], func(t *testing.T) {
			srv := testredis.StartServer(t)
			const timeout = 50 * time.Millisecond
			r := newTestRedis(t, productionClient(t, srv.Addr, timeout), RedisOptions{Timeout: timeout, Batch: batch})
			b := NewBreaker(r, BreakerOptions{Failures: 3, CoolDown: time.Minute})
			// Past r, not b: the first call dials and loads the script, which
			// on a busy box can take longer than 50ms without saying anything
			// against Redis; what is tested starts with a warm connection.
			warmUp(t, r, Key("acme", "p"))
			if err := srv.Client().Do(context.Background(), "CLIENT", "PAUSE", "2000").Err(); err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				start := time.Now()
				_, err := b.Allow(context.Background(), Key("acme", "p"), 10, testWindow)
				if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrOverloaded) {
					t.Fatalf("call %d on a paused Redis: %v, want ErrUnavailable and not ErrOverloaded", i, err)
				}
				if el := time.Since(start); el > timeout+500*time.Millisecond {
					t.Fatalf("call %d took %v", i, el)
				}
			}
			if s := b.State(); s != BreakerOpen {
				t.Fatalf("breaker %v after 3 timed-out commands, want open", s)
			}
		})
	}
}
