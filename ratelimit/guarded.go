package ratelimit

import (
	"context"
	"time"
)

// FailMode says what Guarded does when its primary limiter fails.
type FailMode uint8

const (
	// FailClosed returns the primary's error; the handler answers 503
	// with Retry-After. It is the default.
	FailClosed FailMode = iota
	// FailOpen decides with the fallback limiter instead and marks the
	// decision Degraded.
	FailOpen
)

// Guarded applies a route's failure policy to a primary limiter, normally a
// Breaker around the Redis limiter shared by all routes. Its zero Mode is
// FailClosed.
type Guarded struct {
	// Primary decides while the store works.
	Primary Limiter
	// Mode is the failure policy. Default: FailClosed.
	Mode FailMode
	// Fallback decides under FailOpen when Primary fails, normally a Local
	// limiter, so that a user is still held to the limit per node. If nil,
	// FailOpen allows every request without counting.
	Fallback Limiter
	// OnFallback, if set, is called with the primary's error each time the
	// fallback decides (to log, rate-limited by the caller, and count).
	OnFallback func(error)
}

// Allow implements Limiter. Under FailOpen it only returns an error when the
// caller's context has ended or the fallback fails.
func (g *Guarded) Allow(ctx context.Context, key string, limit int64, window time.Duration) (Decision, error) {
	d, err := g.Primary.Allow(ctx, key, limit, window)
	if err == nil || g.Mode != FailOpen || ctx.Err() != nil {
		return d, err
	}
	if g.OnFallback != nil {
		g.OnFallback(err)
	}
	if g.Fallback == nil {
		return Decision{Allowed: true, Limit: limit, Remaining: max(limit-1, 0), Degraded: true}, nil
	}
	d, err = g.Fallback.Allow(ctx, key, limit, window)
	d.Degraded = true
	return d, err
}

var _ Limiter = (*Guarded)(nil)
