package ratelimit

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testredis"
)

// Issue 23: LeaseSavesRoundTrips once saw Remaining 16 (one whole lease)
// below the count. A lease that comes back after its lifetime can never be
// used, and was dropped without being given back (it was under 1/256 of
// the quota left); and a leader's lease that came back after a request with
// another limit had reset the key was neither kept nor given back. These
// tests make both happen on purpose and check that Redis then counts
// exactly what was accepted plus what the node holds.

// A window of long buckets (2 s): no lease of the test expires by itself
// while it runs, however slow the box.
const (
	lateWindow  = 20 * time.Second
	lateBuckets = 10
	lateBucket  = lateWindow / lateBuckets
)

// leaseAsks hooks the limiter's script runs that ask for a lease (want > 1)
// and passes each of them to onLease before sending it.
type leaseAsks struct {
	n       atomic.Int64
	onLease func(n int64)
}

func (h *leaseAsks) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *leaseAsks) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if asksLease(cmd) {
			h.onLease(h.n.Add(1))
		}
		return next(ctx, cmd)
	}
}

func (h *leaseAsks) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			if asksLease(cmd) {
				h.onLease(h.n.Add(1))
				break
			}
		}
		return next(ctx, cmds)
	}
}

// asksLease reports whether cmd runs the limiter script with an ask for a
// lease: EVALSHA|EVAL sha nkeys key… size buckets (limit want bucket)….
func asksLease(cmd redis.Cmder) bool {
	args := cmd.Args()
	if len(args) < 3 || (cmd.Name() != "evalsha" && cmd.Name() != "eval") {
		return false
	}
	nkeys, ok := args[2].(int)
	if !ok {
		return false
	}
	for i := 3 + nkeys + 2 + 1; i < len(args); i += 3 {
		if want, ok := args[i].(int64); ok && want > 1 {
			return true
		}
	}
	return false
}

// stopSweeper stops r's lease sweeper, so that no lease is settled behind
// the test's back (Close still works).
func stopSweeper(r *Redis) {
	close(r.leases.stop)
	<-r.leases.done
	r.leases.stop = make(chan struct{})
}

// wantCounted waits until Redis counts, for key, exactly the requests r
// accepted plus the slots r holds (give-backs are sent without waiting).
func wantCounted(t *testing.T, client redis.UniversalClient, r *Redis, prefix, key string) {
	t.Helper()
	sh := r.leases.shard(key)
	deadline := time.Now().Add(5 * time.Second)
	for {
		sh.mu.Lock()
		l := sh.m[key]
		held, pending := l.held(), l.pending
		fromLease, fromRedis := r.LeaseStats()
		v, err := client.HGet(context.Background(), prefix+"rl:"+key, "t").Result()
		sh.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		counted, _ := strconv.ParseInt(v, 10, 64)
		accepted := int64(fromLease + fromRedis)
		if !pending && counted == accepted+held {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis counts %d; accepted %d, %d held (pending %v): %d slots stranded",
				counted, accepted, held, pending, counted-accepted-held)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLeaseArrivingDeadIsGivenBack: a lease whose answer comes back after
// its lifetime (here: the second lease request, a renewal, held up for
// longer than a bucket) is given back in full, even when it is less than
// 1/256 of the quota left.
func TestLeaseArrivingDeadIsGivenBack(t *testing.T) {
	modes(t, func(t *testing.T, m mode) {
		client, prefix := testredis.Client(t)
		hook := &leaseAsks{onLease: func(n int64) {
			if n == 2 {
				time.Sleep(lateBucket + 100*time.Millisecond)
			}
		}}
		client.AddHook(hook)
		r := m.limiter(t, client, RedisOptions{Prefix: prefix, Timeout: 5 * time.Second, Buckets: lateBuckets, Lease: 16})
		stopSweeper(r)
		key := Key("acme", "late")
		const limit = 10_000_000
		// Steady use until the second lease request has been sent (the
		// requests then wait for it), and a few more requests after it.
		for i := 0; i < 100; {
			if d, err := r.Allow(context.Background(), key, limit, lateWindow); err != nil || !d.Allowed {
				t.Fatalf("Allow: %+v, %v", d, err)
			}
			if hook.n.Load() >= 2 {
				i++
			}
		}
		wantCounted(t, client, r, prefix, key)
	})
}

// TestLeaseOfResetKeyIsGivenBack: the lease a leader asked for while a
// request with another limit reset the key's lease is given back.
func TestLeaseOfResetKeyIsGivenBack(t *testing.T) {
	modes(t, func(t *testing.T, m mode) {
		client, prefix := testredis.Client(t)
		entered, release := make(chan struct{}), make(chan struct{})
		client.AddHook(&leaseAsks{onLease: func(n int64) {
			if n == 1 {
				close(entered)
				<-release
			}
		}})
		r := m.limiter(t, client, RedisOptions{Prefix: prefix, Timeout: 5 * time.Second, Buckets: lateBuckets, Lease: 16})
		stopSweeper(r)
		key := Key("acme", "reset")
		const limit, other = 10_000_000, 9_000_000
		// Steady use until a request asks for a lease: the hook holds it.
		leader := make(chan error, 1)
		go func() {
			for {
				_, err := r.Allow(context.Background(), key, limit, lateWindow)
				select {
				case <-entered: // this was the leader's call
					leader <- err
					return
				default:
				}
				if err != nil {
					leader <- err
					return
				}
			}
		}()
		<-entered
		// A request with another limit resets the key's lease, then waits
		// for the leader's answer.
		second := make(chan error, 1)
		go func() {
			_, err := r.Allow(context.Background(), key, other, lateWindow)
			second <- err
		}()
		sh := r.leases.shard(key)
		for {
			sh.mu.Lock()
			reset := sh.m[key].limit == other
			sh.mu.Unlock()
			if reset {
				break
			}
			time.Sleep(time.Millisecond)
		}
		close(release)
		if err := <-leader; err != nil {
			t.Fatal(err)
		}
		if err := <-second; err != nil {
			t.Fatal(err)
		}
		wantCounted(t, client, r, prefix, key)
	})
}
