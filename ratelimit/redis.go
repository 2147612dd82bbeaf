package ratelimit

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
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
	// Timeout bounds each Allow call's wait for Redis. Default: 50ms.
	Timeout time.Duration
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
}

// Redis is the Limiter backed by Redis. Create it with NewRedis; call Close
// when done if Batch is set.
type Redis struct {
	client  RedisClient
	prefix  string
	timeout time.Duration
	buckets int
	// bounded is true when the client itself stops waiting at the context
	// deadline (go-redis ContextTimeoutEnabled); otherwise each call is
	// run on its own goroutine so that Allow still returns on time.
	bounded bool
	// multiKey is true when one script run may touch keys of different
	// users: always, except on a cluster, where they sit in different slots.
	multiKey bool
	batch    *batcher
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
		client:  client,
		prefix:  opts.Prefix,
		timeout: opts.Timeout,
		buckets: opts.Buckets,
		bounded: honorsDeadline(client),
	}
	_, cluster := client.(*redis.ClusterClient)
	r.multiKey = !cluster
	if r.prefix == "" {
		r.prefix = DefaultPrefix
	}
	if r.timeout <= 0 {
		r.timeout = DefaultTimeout
	}
	if r.buckets <= 0 {
		r.buckets = DefaultBuckets
	}
	if opts.Batch {
		r.batch = newBatcher(r, opts.MaxBatch, opts.Flushers)
	}
	return r
}

// Close stops the batching goroutines, if any, waiting for batches in
// flight (at most the client's read timeout when Redis hangs); queued calls
// fail with ErrUnavailable. Close does not close the Redis client.
func (r *Redis) Close() error {
	if r.batch != nil {
		r.batch.close()
	}
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

// Allow implements Limiter with one script run in Redis.
func (r *Redis) Allow(ctx context.Context, key string, limit int64, window time.Duration) (Decision, error) {
	if limit < 1 {
		return deny(limit, window), nil
	}
	size, err := bucketSize(window, r.buckets)
	if err != nil {
		return Decision{}, err
	}
	rkey := r.prefix + "rl:" + key
	if r.batch != nil {
		return r.batch.allow(ctx, rkey, limit, size)
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if r.bounded {
		return r.run(ctx, rkey, limit, size)
	}
	type result struct {
		d   Decision
		err error
	}
	done := make(chan result, 1)
	go func() {
		d, err := r.run(ctx, rkey, limit, size)
		done <- result{d, err}
	}()
	select {
	case res := <-done:
		return res.d, res.err
	case <-ctx.Done():
		return Decision{}, unavailable("waiting for redis", ctx.Err())
	}
}

// run executes the script once for rkey.
func (r *Redis) run(ctx context.Context, rkey string, limit, size int64) (Decision, error) {
	vals, err := windowScript.Run(ctx, r.client, []string{rkey}, size, r.buckets, limit).Int64Slice()
	if err != nil {
		return Decision{}, unavailable("running limiter script", err)
	}
	if len(vals) != 4 {
		return Decision{}, fmt.Errorf("%w: limiter script returned %d values, want 4", ErrUnavailable, len(vals))
	}
	return decode(vals, limit), nil
}

// decode turns one request's four values of the script's reply into a
// Decision.
func decode(vals []int64, limit int64) Decision {
	d := Decision{
		Allowed:   vals[0] == 1,
		Limit:     limit,
		Remaining: vals[1],
		Reset:     time.Duration(vals[2]) * time.Millisecond,
	}
	if !d.Allowed {
		d.RetryAfter = time.Duration(vals[3]) * time.Millisecond
	}
	return d
}

// isNoScript reports whether err is Redis's NOSCRIPT error.
func isNoScript(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && redis.HasErrorPrefix(err, "NOSCRIPT")
}

var _ Limiter = (*Redis)(nil)
