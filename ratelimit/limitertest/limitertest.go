// Package limitertest is the suite the Redis limiter (ratelimit.NewRedis)
// must pass on every Redis deployment keygate supports: a single server,
// Sentinel, a Redis Cluster, TLS with an ACL user. It checks that the
// limiter is exact (no interval one window long accepts more than the
// limit, however many limiters and clients share the key, with or without
// batching and leases), that refused requests consume nothing, that the
// Redis hash keeps its bookkeeping, and how many round trips a decision
// costs.
//
// The checks run on Redis's own clock with short windows (2 s in buckets of
// 200 ms). They mostly wait for that clock: the cases run in parallel, and
// the modes of a case side by side, so that the suite takes a few windows.
package limitertest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/ratelimit"
)

// Env is the Redis deployment under test and how to reach it.
type Env struct {
	// Client returns a client of the deployment for t alone (the suite adds
	// hooks to it) and a key prefix, ending in ':', that no other test
	// uses. The suite's limiters keep their keys under that prefix. The
	// Env closes the client when t ends (and may remove the keys then).
	// Required.
	Client func(t *testing.T) (redis.UniversalClient, string)
	// Other returns another client of the same deployment, with connections
	// of its own: the second gateway node of the cases with two limiters.
	// It is closed when t ends. Required.
	Other func(t *testing.T) redis.UniversalClient
	// Admin, when set, returns the client the suite reads and prepares
	// limiter keys with (PTTL, HGET, HKEYS, HGETALL, HSET, TIME), for
	// deployments where the limiter's client may not run all of these (an
	// ACL user restricted to keygate's commands). It is closed when t ends.
	// Default: the client of Client.
	Admin func(t *testing.T) redis.UniversalClient
	// Pipelined, when set, builds a batching limiter (opts.Batch is set)
	// that sends a batch as a pipeline of one script run per request, as
	// NewRedis does on a cluster client, whatever the client: the suite
	// then runs its batch=pipeline mode on a single Redis too. On a cluster
	// client batching gives that mode by itself and Pipelined is not used.
	// Default: nil (batch=pipeline only on a cluster).
	Pipelined func(c ratelimit.RedisClient, opts ratelimit.RedisOptions) *ratelimit.Redis
	// Timeout is the Timeout of the suite's limiters: how long one round
	// trip may take on this deployment, including a connection's dial
	// (and TLS handshake), while every case runs at once; their batching
	// queues wait as long (or the default QueueTimeout). The cases check
	// exactness, not latency: give a deployment whose connections are
	// slow to set up on a busy box (TLS) several seconds. Default: 1s.
	Timeout time.Duration
}

// Run runs the suite on env. Its cases run in parallel (t.Parallel), and
// each runs its modes side by side, each mode on clients and a key prefix
// of its own.
func Run(t *testing.T, env Env) {
	t.Helper()
	if env.Client == nil || env.Other == nil {
		t.Fatal("limitertest: Env.Client and Env.Other are required")
	}
	// NewRedis picks its batching by the client's type: so does the suite.
	probe := env.Other(t)
	_, cluster := probe.(*redis.ClusterClient)
	s := &suite{env: env, cluster: cluster, timeout: env.Timeout}
	if s.timeout <= 0 {
		s.timeout = time.Second
	}
	for _, tc := range cases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, s)
		})
	}
}

// testCase is one case of the suite.
type testCase struct {
	name string
	fn   func(t *testing.T, s *suite)
}

// cases lists the suite's cases.
func cases() []testCase {
	return []testCase{
		{"Window", testWindow},
		{"RejectionsDoNotConsume", testRejectionsDoNotConsume},
		{"WindowChange", testWindowChange},
		{"HashBookkeeping", testHashBookkeeping},
		{"ConcurrentExact", testConcurrentExact},
		{"BatchMixed", testBatchMixed},
		{"OneRoundTrip", testOneRoundTrip},
		{"BatchClose", testBatchClose},
		{"LeaseSavesRoundTrips", testLeaseSavesRoundTrips},
		{"LeaseExactAcrossNodes", testLeaseExactAcrossNodes},
		{"LeaseGivesBack", testLeaseGivesBack},
	}
}

// Short windows, on Redis's own clock: 2 s split into 10 buckets of 200 ms.
const (
	window     = 2 * time.Second
	buckets    = 10
	bucketSize = window / buckets
)

// suite is the state the cases share.
type suite struct {
	env Env
	// cluster is set when the deployment's clients are cluster clients:
	// batching is then always pipelined.
	cluster bool
	// timeout is Env.Timeout or its default.
	timeout time.Duration
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

var (
	direct         = mode{}
	batchScript    = mode{batch: true}
	batchPipelined = mode{batch: true, pipelined: true}
)

// modes returns the modes the limiter can run in on the deployment: direct
// and batched, and batch=pipeline on a single Redis too when the Env can
// force it.
func (s *suite) modes() []mode {
	if s.cluster {
		return []mode{direct, batchPipelined}
	}
	ms := []mode{direct, batchScript}
	if s.env.Pipelined != nil {
		ms = append(ms, batchPipelined)
	}
	return ms
}

// eachMode runs f in subtests, one per mode of s.modes() (see each).
func (s *suite) eachMode(t *testing.T, f func(t *testing.T, m mode)) {
	s.each(t, s.modes(), f)
}

// eachBatchMode is eachMode for the batching modes only.
func (s *suite) eachBatchMode(t *testing.T, f func(t *testing.T, m mode)) {
	var ms []mode
	for _, m := range s.modes() {
		if m.batch {
			ms = append(ms, m)
		}
	}
	s.each(t, ms, f)
}

// each runs f in subtests, one per mode of ms, side by side: they mostly
// wait for Redis's clock, and run one after the other (or limited by
// -parallel, which is GOMAXPROCS by default) they would take several
// times as long.
func (s *suite) each(t *testing.T, ms []mode, f func(t *testing.T, m mode)) {
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() {
			t.Run(m.String(), func(t *testing.T) { f(t, m) })
		})
	}
	wg.Wait()
}

// client returns a client of t's own and t's key prefix.
func (s *suite) client(t *testing.T) (redis.UniversalClient, string) {
	t.Helper()
	return s.env.Client(t)
}

// admin returns the client to inspect and prepare keys with; c is the
// test's client, used when the Env has no Admin.
func (s *suite) admin(t *testing.T, c redis.UniversalClient) redis.UniversalClient {
	if s.env.Admin == nil {
		return c
	}
	return s.env.Admin(t)
}

// limiter returns a limiter over c running in mode m, closed when t ends.
func (s *suite) limiter(t *testing.T, c redis.UniversalClient, opts ratelimit.RedisOptions, m mode) *ratelimit.Redis {
	t.Helper()
	opts.Batch = m.batch
	if opts.QueueTimeout == 0 {
		// A batching limiter's calls wait behind the batches in flight:
		// as long as a round trip may take here, at least the default.
		opts.QueueTimeout = max(ratelimit.DefaultQueueTimeout, s.timeout)
	}
	var r *ratelimit.Redis
	if m.pipelined && !s.cluster {
		if s.env.Pipelined == nil {
			t.Fatal("batch=pipeline on a client that is not a cluster client needs Env.Pipelined")
		}
		r = s.env.Pipelined(c, opts)
	} else {
		r = ratelimit.NewRedis(c, opts)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// mustAllow asks l for one request of key at limit per window.
func mustAllow(t *testing.T, l ratelimit.Limiter, key string, limit int64) ratelimit.Decision {
	t.Helper()
	d, err := l.Allow(context.Background(), key, limit, window)
	if err != nil {
		t.Fatalf("Allow: %v", err)
	}
	return d
}

// roundTrips counts the round trips (commands and pipelines) a client makes,
// and the commands it sends in all, leaving out those go-redis sends to set
// up a new connection (see isSetup): they are not the limiter's.
type roundTrips struct{ n, cmds atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !isSetup(cmd) {
			h.n.Add(1)
			h.cmds.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		var n int64
		for _, cmd := range cmds {
			if !isSetup(cmd) {
				n++
			}
		}
		if n > 0 {
			h.n.Add(1)
			h.cmds.Add(n)
		}
		return next(ctx, cmds)
	}
}

// isSetup reports whether cmd is one of the commands go-redis sends on a
// new connection before handing it out (the handshake runs through the
// client's hooks; a client that keeps idle connections ready, as
// keygate's does, hands out fresh ones now and then).
func isSetup(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "auth", "select", "readonly", "client":
		return true
	}
	return false
}
