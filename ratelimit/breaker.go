package ratelimit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// BreakerState is a circuit breaker's state; its numeric value is meant for
// a metrics gauge.
type BreakerState int32

const (
	// BreakerClosed lets every call through.
	BreakerClosed BreakerState = 0
	// BreakerOpen fails every call at once with ErrCircuitOpen.
	BreakerOpen BreakerState = 1
	// BreakerHalfOpen lets one probe call through; the others fail fast.
	BreakerHalfOpen BreakerState = 2
)

// String returns "closed", "open" or "half-open".
func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return "unknown"
}

// BreakerOptions configures NewBreaker.
type BreakerOptions struct {
	// Failures is the number of consecutive failed calls that opens the
	// breaker; calls in flight together that fail together count as one.
	// Default: 5.
	Failures int
	// CoolDown is how long the breaker stays open before it lets one probe
	// through. Default: 1s.
	CoolDown time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Breaker is a circuit breaker around a Limiter (normally the Redis one):
// after Failures consecutive errors (calls that fail together count once)
// it opens and fails calls at once with
// ErrCircuitOpen for CoolDown, then lets a single probe through (half-open)
// and closes again when the probe succeeds.
//
// The breaker opens on evidence that Redis is unreachable, not on load:
// only errors wrapping ErrUnavailable count as failures (a refused, dropped
// or failed connection, a command that was sent and not answered within
// the limiter's Timeout, an error reply). Errors wrapping ErrOverloaded (a
// call that expired in keygate's own batching queue or waiting for a pooled
// connection under a burst, before Redis saw it), calls abandoned because
// the caller's own context ended, and other errors, count neither way: a
// slow but answering Redis under a burst costs latency, and the calls that
// wait too long fail one by one, but it never opens the breaker for
// everyone.
//
// One Breaker per store is meant to be shared by every route using it.
type Breaker struct {
	next     Limiter
	failures int
	coolDown time.Duration
	now      func() time.Time

	state atomic.Int32 // BreakerState; read lock-free on the hot path

	fails atomic.Int32 // consecutive failures while closed
	// outages advances with every counted failure. A failed call counts
	// only if no other failure was counted since it started: one slow
	// batch or one dropped connection fails every call in flight at once,
	// and that is one failure of the store, not many.
	outages atomic.Uint64

	mu       sync.Mutex // protects the fields below and state changes
	openedAt time.Time
	probing  bool // a half-open probe is in flight
}

// NewBreaker wraps next in a circuit breaker.
func NewBreaker(next Limiter, opts BreakerOptions) *Breaker {
	b := &Breaker{next: next, failures: opts.Failures, coolDown: opts.CoolDown, now: opts.Now}
	if b.failures <= 0 {
		b.failures = 5
	}
	if b.coolDown <= 0 {
		b.coolDown = time.Second
	}
	if b.now == nil {
		b.now = time.Now
	}
	return b
}

// State returns the current state, for a metrics gauge.
func (b *Breaker) State() BreakerState {
	return BreakerState(b.state.Load())
}

// Allow implements Limiter.
func (b *Breaker) Allow(ctx context.Context, key string, limit int64, window time.Duration) (Decision, error) {
	// The clock is read only off the hot path (closed breaker, success):
	// time.Now is not free, and the hot path needs no time.
	var probe bool
	outage := b.outages.Load()
	if BreakerState(b.state.Load()) != BreakerClosed {
		var err error
		if probe, err = b.before(b.now()); err != nil {
			return Decision{}, err
		}
	}
	d, err := b.next.Allow(ctx, key, limit, window)
	if err == nil && d.Leased || err != nil && (ctx.Err() != nil || !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrOverloaded)) {
		// Decided from a lease without asking the store, the caller gave
		// up, the call never reached the store (overload), or the call was
		// invalid: this says nothing about the store.
		if probe {
			b.mu.Lock()
			b.probing = false
			b.mu.Unlock()
		}
		return d, err
	}
	if err != nil && !probe && !b.outages.CompareAndSwap(outage, outage+1) {
		return d, err // counted already, by a call in flight with this one
	}
	var now time.Time
	if err != nil || probe {
		now = b.now()
	}
	b.after(now, probe, err)
	return d, err
}

// before decides at now whether a call may go through, and whether it is
// the half-open probe.
func (b *Breaker) before(now time.Time) (probe bool, err error) {
	if BreakerState(b.state.Load()) == BreakerClosed {
		return false, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch BreakerState(b.state.Load()) {
	case BreakerClosed:
		return false, nil
	case BreakerOpen:
		if now.Sub(b.openedAt) < b.coolDown {
			return false, ErrCircuitOpen
		}
		b.state.Store(int32(BreakerHalfOpen))
	}
	if b.probing {
		return false, ErrCircuitOpen
	}
	b.probing = true
	return true, nil
}

// after records the outcome of a call that before let through.
func (b *Breaker) after(now time.Time, probe bool, err error) {
	if err == nil && !probe {
		// Hot path: no lock, and no write unless something failed before.
		if b.fails.Load() != 0 {
			b.fails.Store(0)
		}
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	if err == nil {
		b.fails.Store(0)
		b.state.Store(int32(BreakerClosed))
		return
	}
	switch {
	case probe:
		b.openedAt = now
		b.state.Store(int32(BreakerOpen))
	case BreakerState(b.state.Load()) == BreakerClosed:
		if int(b.fails.Add(1)) >= b.failures {
			b.fails.Store(0)
			b.openedAt = now
			b.state.Store(int32(BreakerOpen))
		}
	}
}

var _ Limiter = (*Breaker)(nil)
