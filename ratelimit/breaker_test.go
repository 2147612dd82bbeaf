package ratelimit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// scripted is a Limiter that fails while fail is set and counts calls.
type scripted struct {
	mu    sync.Mutex
	fail  bool
	calls int
}

var errBoom = errors.New("boom")

func (s *scripted) Allow(_ context.Context, _ string, limit int64, _ time.Duration) (Decision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.fail {
		return Decision{}, unavailable("scripted", errBoom)
	}
	return Decision{Allowed: true, Limit: limit, Remaining: limit - 1}, nil
}

func (s *scripted) set(fail bool) (calls int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = fail
	return s.calls
}

func TestBreakerStates(t *testing.T) {
	clock := &fakeClock{t: t0}
	next := &scripted{}
	b := NewBreaker(next, BreakerOptions{Failures: 3, CoolDown: time.Second, Now: clock.Now})
	ctx := context.Background()
	call := func() error { _, err := b.Allow(ctx, "k", 10, time.Minute); return err }

	if err := call(); err != nil || b.State() != BreakerClosed {
		t.Fatalf("healthy: %v, %v", err, b.State())
	}
	next.set(true)
	// Failures interrupted by a success do not add up.
	call()
	call()
	next.set(false)
	call()
	next.set(true)
	call()
	call()
	if b.State() != BreakerClosed {
		t.Fatalf("after 2 consecutive failures: %v, want closed", b.State())
	}
	if err := call(); !errors.Is(err, errBoom) || b.State() != BreakerOpen {
		t.Fatalf("third consecutive failure: %v, state %v", err, b.State())
	}
	calls := next.set(true)
	clock.Advance(999 * time.Millisecond)
	if err := call(); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("during cool-down: %v", err)
	}
	if next.set(true) != calls {
		t.Fatal("open breaker called through")
	}
	clock.Advance(time.Millisecond)

	// Half-open: while the probe is in flight, other calls fail fast.
	probe, err := b.before(clock.Now())
	if !probe || err != nil || b.State() != BreakerHalfOpen {
		t.Fatalf("probe: %v, %v, %v", probe, err, b.State())
	}
	if p, err := b.before(clock.Now()); p || !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("second call while probing: %v, %v", p, err)
	}
	b.after(clock.Now(), true, errBoom)
	if b.State() != BreakerOpen {
		t.Fatalf("failed probe: %v, want open", b.State())
	}
	clock.Advance(time.Second)
	next.set(false)
	if err := call(); err != nil || b.State() != BreakerClosed {
		t.Fatalf("successful probe: %v, %v", err, b.State())
	}
	for _, s := range []BreakerState{BreakerClosed, BreakerOpen, BreakerHalfOpen} {
		if s.String() == "unknown" {
			t.Errorf("%d has no name", s)
		}
	}
}

// together fails every call once all the calls added to arrived have come
// in: like one slow batch failing every request in it.
type together struct{ arrived sync.WaitGroup }

func (l *together) Allow(context.Context, string, int64, time.Duration) (Decision, error) {
	l.arrived.Done()
	l.arrived.Wait()
	return Decision{}, unavailable("together", errBoom)
}

func TestBreakerCountsConcurrentFailuresOnce(t *testing.T) {
	const n = 20
	next := &together{}
	b := NewBreaker(next, BreakerOptions{Failures: 3})
	round := func() {
		next.arrived.Add(n)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				if _, err := b.Allow(context.Background(), "k", 1, time.Minute); !errors.Is(err, ErrUnavailable) {
					t.Errorf("err = %v", err)
				}
			})
		}
		wg.Wait()
	}
	round()
	round()
	if b.State() != BreakerClosed {
		t.Fatalf("two rounds of %d concurrent failures opened a breaker that needs 3 failures: %v", n, b.State())
	}
	round()
	if b.State() != BreakerOpen {
		t.Fatalf("three rounds of failures: %v, want open", b.State())
	}
}

// leasedAfterFailure fails calls while fail is set, except that it answers
// from a "lease" every other call, as the Redis limiter does for a key it
// holds a lease for.
type leasedAfterFailure struct {
	mu    sync.Mutex
	calls int
}

func (l *leasedAfterFailure) Allow(_ context.Context, _ string, limit int64, _ time.Duration) (Decision, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if l.calls%2 == 0 {
		return Decision{Allowed: true, Leased: true, Limit: limit}, nil
	}
	return Decision{}, unavailable("leasedAfterFailure", errBoom)
}

func TestBreakerIgnoresLeasedDecisions(t *testing.T) {
	b := NewBreaker(&leasedAfterFailure{}, BreakerOptions{Failures: 3})
	for range 6 {
		b.Allow(context.Background(), "k", 10, time.Minute)
	}
	// 3 failures with leased decisions in between: they said nothing about
	// the store, so the failures were consecutive.
	if b.State() != BreakerOpen {
		t.Fatalf("state %v after 3 store failures between leased decisions, want open", b.State())
	}
}

func TestBreakerIgnoresCallerCancellation(t *testing.T) {
	next := &scripted{fail: true}
	b := NewBreaker(next, BreakerOptions{Failures: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 3 {
		b.Allow(ctx, "k", 1, time.Minute)
	}
	if b.State() != BreakerClosed {
		t.Fatalf("cancelled callers opened the breaker: %v", b.State())
	}
}

func TestGuarded(t *testing.T) {
	ctx := context.Background()
	down := &scripted{fail: true}

	closed := &Guarded{Primary: down}
	if _, err := closed.Allow(ctx, "k", 2, time.Minute); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("fail closed: %v", err)
	}

	local := newTestLocal(t)
	var seen []error
	open := &Guarded{Primary: down, Mode: FailOpen, Fallback: local, OnFallback: func(err error) { seen = append(seen, err) }}
	for i := range 3 {
		d, err := open.Allow(ctx, "k", 2, time.Minute)
		if err != nil || !d.Degraded || d.Allowed != (i < 2) {
			t.Fatalf("fail open %d: %+v, %v", i, d, err)
		}
	}
	if len(seen) != 3 || !errors.Is(seen[0], errBoom) {
		t.Fatalf("OnFallback saw %v", seen)
	}

	uncounted := &Guarded{Primary: down, Mode: FailOpen}
	if d, err := uncounted.Allow(ctx, "k", 2, time.Minute); err != nil || !d.Allowed || !d.Degraded {
		t.Fatalf("fail open without fallback: %+v, %v", d, err)
	}

	up := &Guarded{Primary: &scripted{}, Mode: FailOpen, Fallback: local}
	if d, err := up.Allow(ctx, "k", 2, time.Minute); err != nil || !d.Allowed || d.Degraded {
		t.Fatalf("healthy primary: %+v, %v", d, err)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := open.Allow(cctx, "k", 2, time.Minute); err == nil {
		t.Fatal("fail open with the caller gone: want the error")
	}
}
