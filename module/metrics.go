package module

import (
	"context"
	"errors"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keys"
)

const (
	metricsNamespace = "caddy"
	metricsSubsystem = "keygate"
)

// The collectors are created once per process, so counts survive config
// reloads, and registered into each config's registry in registerMetrics
// (Caddy builds a fresh registry for every config load). Labels are bounded:
// no user, key or tenant ids.
var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "requests_total",
		Help: "Requests seen by keygate handlers, by result and credential scheme.",
	}, []string{"result", "scheme"})
	authDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name:    "auth_duration_seconds",
		Help:    "Time to authenticate, authorize and rate-limit a request.",
		Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
	})
	storeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name:    "store_duration_seconds",
		Help:    "Latency of key store reads on the request path (cache misses).",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
	}, []string{"op"})
	storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "store_errors_total",
		Help: "Failed key store and limiter calls, by operation.",
	}, []string{"op"})
	cacheLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "cache_lookups_total",
		Help: "Key and user cache lookups, by result (hit, miss).",
	}, []string{"result"})
	limiterDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "ratelimit_decisions_total",
		Help: "Rate limiter decisions: allowed, limited, degraded (allowed by the local fallback while Redis is unavailable).",
	}, []string{"decision"})
	limiterLeased = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "ratelimit_leased_total",
		Help: "Allowed requests decided from this node's quota lease, without a Redis call (counted in ratelimit_decisions_total too).",
	})
	circuitState = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "circuit_state",
		Help: "State of the limiter's circuit breaker: 0 closed, 1 open, 2 half-open.",
	})
	tokensIssued = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "tokens_issued_total",
		Help: "Access tokens issued by the token endpoint.",
	})
	tokensRejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "tokens_rejected_total",
		Help: "Token requests and access tokens rejected, by reason.",
	}, []string{"reason"})
	throttledTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "throttled_total",
		Help: "Requests answered 429 by a per-client-IP throttle (auth_failures, token throttle), by endpoint (gateway, token, admin).",
	}, []string{"endpoint"})

	signedBodyHeld = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "signed_body_bytes",
		Help: "Bytes of request bodies held in memory to check signed digests (signed_body_buffer bounds them); zero when no signed upload is in flight.",
	}, signedBodyBytes)
	replayFull = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem,
		Name: "replay_full_total",
		Help: "Signed requests refused (503) because the in-process replay guard held as many unexpired signatures as it may.",
	})

	cacheHit  = cacheLookups.WithLabelValues("hit")
	cacheMiss = cacheLookups.WithLabelValues("miss")

	// The children counted on every request, resolved once.
	decisionAllowed   = limiterDecisions.WithLabelValues("allowed")
	decisionLimited   = limiterDecisions.WithLabelValues("limited")
	decisionDegraded  = limiterDecisions.WithLabelValues("degraded")
	throttledGateway  = throttledTotal.WithLabelValues("gateway")
	throttledToken    = throttledTotal.WithLabelValues("token")
	throttledAdmin    = throttledTotal.WithLabelValues("admin")
	requestsThrottled = requestsTotal.WithLabelValues("throttled", "none")
	// requestsMethodOverride counts keygate_auth's 400s for a
	// method-override header.
	requestsMethodOverride = requestsTotal.WithLabelValues("method_override", "none")
	okByScheme             = func() (m [auth.AccessToken + 1]prometheus.Counter) {
		for s := auth.AccessKey; s <= auth.AccessToken; s++ {
			m[s] = requestsTotal.WithLabelValues("ok", s.String())
		}
		return m
	}()
)

var collectors = []prometheus.Collector{
	requestsTotal, authDuration, storeDuration, storeErrors, cacheLookups,
	limiterDecisions, limiterLeased, circuitState, tokensIssued, tokensRejected,
	throttledTotal, signedBodyHeld, replayFull,
}

// registerMetrics adds the collectors to this config's registry.
func registerMetrics(ctx caddy.Context, logger *zap.Logger) {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				logger.Warn("registering metric", zap.Error(err))
			}
		}
	}
}

func observeLookup(hit bool) {
	if hit {
		cacheHit.Inc()
	} else {
		cacheMiss.Inc()
	}
}

// instrumentStore measures the store reads the gateway makes on cache misses.
func instrumentStore(s keys.Store) keys.Store {
	in := instrumented{Store: s}
	if n, ok := s.(keys.Notifier); ok {
		return instrumentedNotifier{instrumented: in, n: n}
	}
	return in
}

type instrumented struct{ keys.Store }

type instrumentedNotifier struct {
	instrumented
	n keys.Notifier
}

func (s instrumentedNotifier) Subscribe(ctx context.Context, l keys.Listener) error {
	return s.n.Subscribe(ctx, l)
}

func observeStore(op string, start time.Time, err error) {
	storeDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, keys.ErrNotFound) {
		storeErrors.WithLabelValues(op).Inc()
	}
}

func (s instrumented) GetKey(ctx context.Context, id string) (keys.Key, error) {
	start := time.Now()
	k, err := s.Store.GetKey(ctx, id)
	observeStore("get_key", start, err)
	return k, err
}

func (s instrumented) GetUser(ctx context.Context, id string) (keys.User, error) {
	start := time.Now()
	u, err := s.Store.GetUser(ctx, id)
	observeStore("get_user", start, err)
	return u, err
}

func (s instrumented) UserPermissions(ctx context.Context, id string) ([]keys.Permission, error) {
	start := time.Now()
	p, err := s.Store.UserPermissions(ctx, id)
	observeStore("user_permissions", start, err)
	return p, err
}

func (s instrumented) ListSecrets(ctx context.Context, id string) ([]keys.Secret, error) {
	start := time.Now()
	l, err := s.Store.ListSecrets(ctx, id)
	observeStore("list_secrets", start, err)
	return l, err
}
