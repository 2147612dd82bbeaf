package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/keygate/keygate/ratelimit"
)

// The gateway handler's use of the package. In production Primary is
// NewBreaker(NewRedis(client, opts), BreakerOptions{}), with client built
// with ContextTimeoutEnabled, one Breaker shared by all routes of a store.
func Example() {
	local := ratelimit.NewLocal(ratelimit.LocalOptions{})
	defer local.Close()
	limiter := &ratelimit.Guarded{
		Primary:  ratelimit.NewBreaker(local, ratelimit.BreakerOptions{}),
		Mode:     ratelimit.FailOpen, // on_store_error fail_open
		Fallback: local,
	}

	const limit, window = 2, 2 * time.Minute
	key := ratelimit.Key("acme", "1042")
	for range 3 {
		w := httptest.NewRecorder()
		d, err := limiter.Allow(context.Background(), key, limit, window)
		switch {
		case errors.Is(err, ratelimit.ErrUnavailable):
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		case err != nil:
			w.WriteHeader(http.StatusInternalServerError)
		default:
			ratelimit.WriteHeaders(w.Header(), d, window)
			if !d.Allowed {
				w.WriteHeader(http.StatusTooManyRequests)
			}
		}
		fmt.Println(w.Code, w.Header().Get("RateLimit-Policy"), w.Header().Get("X-RateLimit-Remaining"))
	}
	// Output:
	// 200 "user";q=2;w=120 1
	// 200 "user";q=2;w=120 0
	// 429 "user";q=2;w=120 0
}
