package module

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/time/rate"

	"github.com/keygate/keygate/ratelimit"
)

// ThrottleConfig is a per-client-IP token bucket: a client may have Burst
// events in a row, and one more every 1/Rate after that. Clients are told
// by Caddy's client IP (the `client_ip` placeholder), which honours the
// server's `trusted_proxies`; IPv6 clients are counted by their /64.
type ThrottleConfig struct {
	// Off disables this throttle.
	Off bool `json:"off,omitempty"`

	// Rate refills the bucket: "<n>/<duration>", such as "60/1m" or
	// "20/1s" (a unit alone means one of it: "5/s"), or a number of events
	// per second, such as "0.5". Default: that of the throttle.
	Rate string `json:"rate,omitempty"`

	// Burst is the size of the bucket: how many events a client that has
	// been quiet may have in a row. Default: that of the throttle.
	Burst int `json:"burst,omitempty"`

	// Size is the number of client addresses tracked at most (some 200
	// bytes each); past it the least recently seen are forgotten.
	// Default: 65536.
	Size int `json:"size,omitempty"`
}

// Throttle defaults. No honest client reaches them: an honest client stops
// (or backs off) after a 401 and mints a token once per token lifetime,
// while the bursts leave room for a fleet that starts at once behind one
// NAT address. Guessing is what they stop: a client that keeps failing
// gets one attempt a second, and RSA mints, which cost about a millisecond
// of CPU each, are capped per address.
const (
	// DefaultAuthFailureRate and DefaultAuthFailureBurst: failed
	// authentications per client IP, at the gateway and the token endpoint.
	DefaultAuthFailureRate  = "60/1m"
	DefaultAuthFailureBurst = 100
	// DefaultTokenRequestRate and DefaultTokenRequestBurst: requests to
	// the token endpoint per client IP, successful or not.
	DefaultTokenRequestRate  = "20/1s"
	DefaultTokenRequestBurst = 100
)

// throttlePool shares throttles between configurations, so that a reload
// with the same settings keeps every client's bucket (a reload must not
// hand a guesser a fresh burst).
var throttlePool = caddy.NewUsagePool()

// pooledThrottle is an IPThrottle in throttlePool; it holds no resources.
type pooledThrottle struct{ *ratelimit.IPThrottle }

// Destruct implements caddy.Destructor.
func (pooledThrottle) Destruct() error { return nil }

// throttles are an App's per-client-IP throttles.
type throttles struct {
	// failures counts failed authentications (gateway 401s and the 400 for
	// more than one credential, token endpoint 401s); nil when off.
	failures *ratelimit.IPThrottle
	// mint counts token endpoint requests; nil when off.
	mint *ratelimit.IPThrottle
	// held are the throttlePool keys to release in Cleanup.
	held []string
	// warn lets a throttling warning through every 10 seconds at most.
	warn *rate.Sometimes
}

// setupThrottles builds (or, across a reload, takes) the App's throttles.
func (a *App) setupThrottles() error {
	th := &throttles{warn: &rate.Sometimes{Interval: 10 * time.Second}}
	var tokenCfg *ThrottleConfig
	if a.Token != nil {
		tokenCfg = a.Token.Throttle
	}
	var err error
	if th.failures, err = th.acquire("auth_failures", a.AuthFailures, DefaultAuthFailureRate, DefaultAuthFailureBurst); err != nil {
		th.release()
		return err
	}
	if th.mint, err = th.acquire("token throttle", tokenCfg, DefaultTokenRequestRate, DefaultTokenRequestBurst); err != nil {
		th.release()
		return err
	}
	a.throttles = th
	return nil
}

// acquire returns the throttle cfg describes (nil when it is off).
func (th *throttles) acquire(name string, cfg *ThrottleConfig, defRate string, defBurst int) (*ratelimit.IPThrottle, error) {
	c := ThrottleConfig{}
	if cfg != nil {
		c = *cfg
	}
	if c.Off {
		return nil, nil
	}
	if c.Rate == "" {
		c.Rate = defRate
	}
	if c.Burst == 0 {
		c.Burst = defBurst
	}
	if c.Size == 0 {
		c.Size = ratelimit.DefaultThrottleSize
	}
	r, err := ratelimit.ParseRate(c.Rate)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	opts := ratelimit.IPThrottleOptions{Rate: r, Burst: c.Burst, Size: c.Size}
	key := name + "\x00" + strconv.FormatFloat(float64(r), 'g', -1, 64) + "\x00" + strconv.Itoa(c.Burst) + "\x00" + strconv.Itoa(c.Size)
	val, _, err := throttlePool.LoadOrNew(key, func() (caddy.Destructor, error) {
		t, err := ratelimit.NewIPThrottle(opts)
		if err != nil {
			return nil, err
		}
		return pooledThrottle{t}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	th.held = append(th.held, key)
	return val.(pooledThrottle).IPThrottle, nil
}

// release gives the throttles back to the pool; nil-safe.
func (th *throttles) release() {
	if th == nil {
		return
	}
	for _, key := range th.held {
		_, _ = throttlePool.Delete(key)
	}
	th.held = nil
}

// clientAddr is the request's client IP as Caddy determined it (honouring
// the server's trusted_proxies), else the connection's remote address.
func clientAddr(r *http.Request) (netip.Addr, bool) {
	s, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if s == "" {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		s = host
	}
	ip, err := netip.ParseAddr(s)
	return ip, err == nil
}

// Problem bodies of the throttles' 429s.
var (
	failuresThrottledProblem = problemBody("throttled", "Too Many Requests", http.StatusTooManyRequests,
		"Too many failed authentications from this address; retry after the time in Retry-After.")
	tokenThrottledProblem = problemBody("throttled", "Too Many Requests", http.StatusTooManyRequests,
		"Too many token requests from this address; retry after the time in Retry-After.")
)

// writeThrottled answers 429 problem+json with Retry-After (whole
// seconds, rounded up).
func writeThrottled(w http.ResponseWriter, body []byte, wait time.Duration) {
	secs := max(int64(math.Ceil(wait.Seconds())), 1)
	h := w.Header()
	h["Content-Type"] = []string{"application/problem+json"}
	h["Cache-Control"] = []string{"no-store"}
	h["Retry-After"] = []string{strconv.FormatInt(secs, 10)}
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write(body)
}

// logThrottled logs a throttled request at debug level, and a warning at
// most every 10 seconds.
func (th *throttles) logThrottled(logger *zap.Logger, endpoint, why string, ip netip.Addr, wait time.Duration) {
	if ce := logger.Check(zapcore.DebugLevel, "request throttled"); ce != nil {
		ce.Write(zap.String("endpoint", endpoint), zap.String("reason", why),
			zap.Stringer("client_ip", ip), zap.Duration("retry_after", wait))
	}
	th.warn.Do(func() {
		logger.Warn("throttling a client (429); more are logged at debug level",
			zap.String("endpoint", endpoint), zap.String("reason", why),
			zap.Stringer("client_ip", ip), zap.Duration("retry_after", wait))
	})
}

// throttled answers 429 when the client's failed authentications have
// used up its budget, before its credential is looked at. While no client
// has failed recently it costs an atomic load.
func (h *Handler) throttled(w http.ResponseWriter, r *http.Request) bool {
	if !h.app.throttles.blocked(w, r, h.logger, "gateway", throttledGateway) {
		return false
	}
	requestsThrottled.Inc()
	return true
}

// blocked answers 429 (counted in counter, logged for endpoint) when the
// client of r has used up its auth_failures budget; nil-safe.
func (th *throttles) blocked(w http.ResponseWriter, r *http.Request, logger *zap.Logger, endpoint string, counter prometheus.Counter) bool {
	if th == nil || th.failures == nil || th.failures.Len() == 0 {
		return false
	}
	ip, ok := clientAddr(r)
	if !ok {
		return false
	}
	wait, blocked := th.failures.Blocked(ip, time.Now())
	if !blocked {
		return false
	}
	counter.Inc()
	th.logThrottled(logger, endpoint, "auth_failures", ip, wait)
	writeThrottled(w, failuresThrottledProblem, wait)
	return true
}

// fail charges one failed authentication to the client of r; nil-safe.
func (th *throttles) fail(r *http.Request) {
	if th == nil || th.failures == nil {
		return
	}
	if ip, ok := clientAddr(r); ok {
		th.failures.Fail(ip, time.Now())
	}
}

// countFailure charges a refused request to its client's failure budget
// when it looks like credential guessing: 401, and 400 (more than one
// credential). 403, 429 and 503 are not.
func (h *Handler) countFailure(r *http.Request, status int) {
	if status != http.StatusUnauthorized && status != http.StatusBadRequest {
		return
	}
	h.app.throttles.fail(r)
}

// throttled answers 429 when the client's failed authentications have
// used up its budget or it requests tokens too fast; every request
// answered otherwise takes one from its token request budget.
func (h *TokenHandler) throttled(w http.ResponseWriter, r *http.Request) bool {
	th := h.app.throttles
	if th == nil || (th.failures == nil && th.mint == nil) {
		return false
	}
	ip, ok := clientAddr(r)
	if !ok {
		return false
	}
	now := time.Now()
	if th.failures != nil {
		if wait, blocked := th.failures.Blocked(ip, now); blocked {
			h.throttle(w, th, "auth_failures", ip, wait, failuresThrottledProblem)
			return true
		}
	}
	if th.mint != nil {
		if wait, ok := th.mint.Allow(ip, now); !ok {
			h.throttle(w, th, "token_requests", ip, wait, tokenThrottledProblem)
			return true
		}
	}
	return false
}

func (h *TokenHandler) throttle(w http.ResponseWriter, th *throttles, why string, ip netip.Addr, wait time.Duration, body []byte) {
	throttledToken.Inc()
	tokensRejected.WithLabelValues("throttled").Inc()
	th.logThrottled(h.logger, "token", why, ip, wait)
	writeThrottled(w, body, wait)
}

// countFailure charges a refused token request (invalid_client, 401) to
// its client's failure budget, shared with the gateway.
func (h *TokenHandler) countFailure(r *http.Request, status int) {
	if status != http.StatusUnauthorized {
		return
	}
	th := h.app.throttles
	if th == nil || th.failures == nil {
		return
	}
	if ip, ok := clientAddr(r); ok {
		th.failures.Fail(ip, time.Now())
	}
}
