package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DefaultBuckets is the number of sub-buckets a window is split into when
// the options leave it zero.
const DefaultBuckets = 12

// ErrUnavailable is wrapped by every error that means the limiter could not
// decide: Redis timed out, refused the connection, answered with an error, or
// the circuit breaker is open. The handler maps it to 503 or to fail-open.
var ErrUnavailable = errors.New("ratelimit: store unavailable")

// ErrCircuitOpen is returned by a Breaker that is not letting calls through.
// It wraps ErrUnavailable.
var ErrCircuitOpen = fmt.Errorf("%w: circuit breaker open", ErrUnavailable)

// ErrOverloaded is wrapped by the errors of calls that ran out of time (or
// room) in keygate's own queues, before their command reached Redis: the
// batching queue, or the client's connection pool. It wraps ErrUnavailable
// (no decision was made: the handler answers 503, or falls back on a
// fail-open route), but it is no evidence that Redis is unreachable, and a
// Breaker does not count it.
var ErrOverloaded = fmt.Errorf("%w: overloaded", ErrUnavailable)

// Limiter decides whether one more request for key fits in limit requests
// per window. Implementations are safe for concurrent use.
type Limiter interface {
	// Allow counts the request when it is allowed and returns the decision.
	// A limit below 1 rejects every request. An error means no decision
	// was made; it wraps ErrUnavailable when the store could not be reached.
	Allow(ctx context.Context, key string, limit int64, window time.Duration) (Decision, error)
}

// Decision is the outcome of one Allow call.
type Decision struct {
	// Allowed reports whether the request was accepted (and counted).
	Allowed bool
	// Limit is the limit the decision was made against.
	Limit int64
	// Remaining is how many more requests would be accepted right now.
	Remaining int64
	// Reset is the time until the oldest counted requests leave the
	// window, freeing quota (the draft's t=). Zero when nothing is counted.
	Reset time.Duration
	// RetryAfter is the time until a request would be accepted again; zero
	// when Allowed.
	RetryAfter time.Duration
	// Degraded is set when the primary store failed and a fail-open
	// fallback decided instead (see Guarded).
	Degraded bool
	// Leased is set when the request was allowed from this node's quota
	// lease, without a store round trip (see RedisOptions.Lease).
	Leased bool
}

// Key returns the limiter key of a user in a tenant, in the Redis Cluster
// hash-tag form "{tenant:user}" so that all of one user's limiter state sits
// in one slot. A ':' or '%' in tenant is percent-encoded, so distinct
// (tenant, user) pairs always give distinct keys.
func Key(tenant, user string) string {
	if strings.IndexByte(tenant, ':') < 0 && strings.IndexByte(tenant, '%') < 0 {
		var b strings.Builder
		b.Grow(len(tenant) + len(user) + 3)
		b.WriteByte('{')
		b.WriteString(tenant)
		b.WriteByte(':')
		b.WriteString(user)
		b.WriteByte('}')
		return b.String()
	}
	var b strings.Builder
	b.Grow(len(tenant) + len(user) + 12)
	b.WriteByte('{')
	for i := 0; i < len(tenant); i++ {
		switch c := tenant[i]; c {
		case ':':
			b.WriteString("%3A")
		case '%':
			b.WriteString("%25")
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte(':')
	b.WriteString(user)
	b.WriteByte('}')
	return b.String()
}

// bucketSize returns the sub-bucket size in milliseconds for window split
// into n buckets, rounded up so that n buckets span at least the window.
func bucketSize(window time.Duration, n int) (int64, error) {
	ms := window.Milliseconds()
	if window%time.Millisecond != 0 {
		ms++
	}
	if ms < int64(n) {
		return 0, fmt.Errorf("ratelimit: window %v too short for %d buckets of at least 1ms", window, n)
	}
	return (ms + int64(n) - 1) / int64(n), nil
}

// deny is the decision for a limit below 1: nothing is ever accepted.
func deny(limit int64, window time.Duration) Decision {
	return Decision{Limit: limit, Reset: window, RetryAfter: window}
}

// unavailable wraps err in ErrUnavailable.
func unavailable(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
}

// overloaded wraps err in ErrOverloaded.
func overloaded(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrOverloaded, what, err)
}
