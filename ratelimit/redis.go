package ratelimit

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed window.lua
var windowLua string

// windowScript is the one limiter script; Run sends EVALSHA and falls back
// to EVAL (which also loads it) on NOSCRIPT.
var windowScript = redis.NewScript(windowLua)

// DefaultPrefix is the Redis key prefix used when RedisOptions.Prefix is empty.
const DefaultPrefix = "keygate:"

// DefaultTimeout bounds each Redis call when RedisOptions.Timeout is zero.
const DefaultTimeout = 50 * time.Millisecond

// DefaultQueueTimeout bounds a batched call's wait in the batching queue when
// RedisOptions.QueueTimeout is zero.
const DefaultQueueTimeout = time.Second

// RedisClient is the part of a go-redis client the limiter uses;
// redis.UniversalClient (single node, cluster, sentinel) satisfies it.
type RedisClient interface {
	redis.Scripter
	Pipeline() redis.Pipeliner
}

// RedisOptions configures NewRedis.
type RedisOptions struct {
	// Prefix is prepended to every Redis key, followed by "rl:".
	// Default: "keygate:".
	Prefix string
	// Timeout is Redis's time: how long one round trip (a batch, or a call
	// without Batch) may take once it is on its way, including the wait for
	// a pooled connection. A round trip that fails within it (refused or
	// dropped connection, no answer in time, an error reply) is evidence
	// that Redis is unreachable: the Breaker counts it. Default: 50ms.
	Timeout time.Duration
	// QueueTimeout is keygate's own time, with Batch: how long a call may
	// wait in the batching queue for its batch to be sent. A burst queues
	// calls behind the batches in flight; a call that waits longer fails
	// with ErrOverloaded, which the Breaker does not count. A batch that
	// fails while other batches are answered is run once more with
	// QueueTimeout/2. A batched call returns within 1.5 × QueueTimeout +
	// Timeout. Default: 1s.
	QueueTimeout time.Duration
	// Buckets is the number of sub-buckets per window. Default: 12.
	Buckets int
	// Batch coalesces concurrent Allow calls, so that one round trip and
	// (except on a cluster) one script run serve many requests (see the
	// package doc). Default: off.
	Batch bool
	// MaxBatch caps the number of requests decided in one round trip when
	// Batch is set. Default: 128.
	MaxBatch int
	// Flushers is the number of batches that may be in flight at once
	// when Batch is set. Default: 4.
	Flushers int
	// Lease is the largest number of slots this limiter leases for one key
	// at a time (0 or 1: no leases). A key expected to have more than one
	// request on this node within a lease's lifetime (one bucket for a busy
	// key, up to a quarter window for a slow one) gets a lease as large as
	// that demand, capped by Lease and by an eighth of its remaining quota;
	// the requests it covers are decided without Redis, and a half-used
	// lease is renewed in the background. Leases keep the limit exact (see
	// the package doc); their price is that a leased slot returns up to a
	// quarter window later than a single one.
	Lease int
}

// Redis is the Limiter backed by Redis. Create it with NewRedis; call Close
// when done if Batch is set.
type Redis struct {
	client  RedisClient
	prefix  string
	timeout time.Duration
	// queueTimeout bounds the wait of a batched call before it is sent.
	queueTimeout time.Duration
	buckets      int
	// bounded is true when the client itself stops waiting at the context
	// deadline (go-redis ContextTimeoutEnabled); otherwise each call is
	// run on its own goroutine so that Allow still returns on time.
	bounded bool
	// multiKey is true when one script run may touch keys of different
	// users: always, except on a cluster, where they sit in different slots.
	multiKey bool
	batch    *batcher
	leases   *leaseTable
	// closeOnce makes Close idempotent.
	closeOnce sync.Once
}

// NewRedis returns a Limiter that keeps its windows in Redis. The client is
// not closed by the limiter. Clients built with ContextTimeoutEnabled (the
// recommended setting) are called directly; with other clients each call
// runs on a helper goroutine so that a hung Redis still cannot hold a request
// past Timeout.
//
// A call that times out may still have been counted by Redis: quota is
// then spent on a request that was not served, never the other way round.
func NewRedis(client RedisClient, opts RedisOptions) *Redis {
	r := &Redis{
		client:       client,
		prefix:       opts.Prefix,
		timeout:      opts.Timeout,
		queueTimeout: opts.QueueTimeout,
		buckets:      opts.Buckets,
		bounded:      honorsDeadline(client),
	}
	_, cluster := client.(*redis.ClusterClient)
	r.multiKey = !cluster
	if r.prefix == "" {
		r.prefix = DefaultPrefix
	}
	if r.timeout <= 0 {
		r.timeout = DefaultTimeout
	}
	if r.queueTimeout <= 0 {
		r.queueTimeout = DefaultQueueTimeout
	}
	if r.buckets <= 0 {
		r.buckets = DefaultBuckets
	}
	if opts.Batch {
		r.batch = newBatcher(r, opts.MaxBatch, opts.Flushers)
	}
	if opts.Lease > 1 {
		r.leases = newLeaseTable(int64(opts.Lease), r.buckets)
		go r.leases.run(r, time.Second)
	}
	return r
}

// Close stops the batching goroutines, if any, waiting for batches in
// flight (at most the client's read timeout when Redis hangs); queued calls
// fail with ErrUnavailable. Close does not close the Redis client.
func (r *Redis) Close() error {
	r.closeOnce.Do(func() {
		if r.leases != nil {
			r.leases.close(r)
		}
		if r.batch != nil {
			r.batch.close()
		}
	})
	return nil
}

// honorsDeadline reports whether c aborts a blocked command at the context
// deadline.
func honorsDeadline(c RedisClient) bool {
	switch c := c.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	}
	return false
}

// Allow implements Limiter: from a lease held by this limiter when it has
// one for key (see RedisOptions.Lease), else with one script run in Redis.
func (r *Redis) Allow(ctx context.Context, key string, limit int64, window time.Duration) (Decision, error) {
	if limit < 1 {
		return deny(limit, window), nil
	}
	size, err := bucketSize(window, r.buckets)
	if err != nil {
		return Decision{}, err
	}
	if r.leases != nil {
		return r.leases.allow(ctx, r, key, limit, size)
	}
	g, err := r.decide(ctx, ask{key: r.hashKey(key), limit: limit, size: size, want: 1})
	return g.Decision, err
}

// CallBound is how long one Allow call may take: the batching queue, one
// retry and the round trip (see the package doc, "Timeouts").
func (r *Redis) CallBound() time.Duration {
	return r.queueTimeout + r.queueTimeout/2 + r.timeout
}

// hashKey is the Redis key of the hash that holds key's window.
func (r *Redis) hashKey(key string) string { return r.prefix + "rl:" + key }

// ask is one request to the script: a decision (want >= 1, more asks for
// a lease) or the return of -want leased slots counted in bucket.
type ask struct {
	key         string
	limit, size int64
	want        int64
	bucket      int64
}

// grant is the script's answer to one ask.
type grant struct {
	Decision
	// granted is the number of slots taken: 1 for a plain decision, more
	// for a lease, 0 when refused.
	granted int64
	// bucket is the bucket the slots were counted in.
	bucket int64
}

// decide runs the script for a, batched when Batch is set (within
// QueueTimeout + Timeout), else within Timeout.
func (r *Redis) decide(ctx context.Context, a ask) (grant, error) {
	if r.batch != nil {
		return r.batch.decide(ctx, a)
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if r.bounded {
		return r.run(ctx, a)
	}
	type result struct {
		g   grant
		err error
	}
	done := make(chan result, 1)
	go func() {
		g, err := r.run(ctx, a)
		done <- result{g, err}
	}()
	select {
	case res := <-done:
		return res.g, res.err
	case <-ctx.Done():
		return grant{}, unavailable("waiting for redis", ctx.Err())
	}
}

// run executes the script once for a.
func (r *Redis) run(ctx context.Context, a ask) (grant, error) {
	vals, err := windowScript.Run(ctx, r.client, []string{a.key}, a.size, r.buckets, a.limit, a.want, a.bucket).Int64Slice()
	if err != nil {
		return grant{}, scriptErr(err)
	}
	if len(vals) != replyLen {
		return grant{}, fmt.Errorf("%w: limiter script returned %d values, want %d", ErrUnavailable, len(vals), replyLen)
	}
	return decode(vals, a.limit), nil
}

// replyLen is the number of values the script returns per request.
const replyLen = 6

// decode turns one request's values of the script's reply into a grant.
func decode(vals []int64, limit int64) grant {
	g := grant{
		Decision: Decision{
			Allowed:   vals[0] == 1,
			Limit:     limit,
			Remaining: vals[1],
			Reset:     time.Duration(vals[2]) * time.Millisecond,
		},
		granted: vals[4],
		bucket:  vals[5],
	}
	if !g.Allowed {
		g.RetryAfter = time.Duration(vals[3]) * time.Millisecond
	}
	return g
}

// scriptErr wraps the error of a round trip that was on its way to Redis
// in ErrUnavailable: the Breaker counts it.
func scriptErr(err error) error {
	return unavailable("running limiter script", err)
}

// isNoScript reports whether err is Redis's NOSCRIPT error.
func isNoScript(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && redis.HasErrorPrefix(err, "NOSCRIPT")
}

var _ Limiter = (*Redis)(nil)
