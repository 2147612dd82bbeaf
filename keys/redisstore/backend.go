package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/keys"
)

// maxAttempts bounds how often Update runs fn when concurrent writers keep
// changing what it read.
const maxAttempts = 50

// errClosed is returned (wrapped in keys.ErrUnavailable) after Close.
var errClosed = errors.New("backend closed")

// Backend is a keys.Backend and keys.Notifier on Redis. It is safe for
// concurrent use.
type Backend struct {
	client  redis.UniversalClient
	timeout time.Duration
	budget  time.Duration

	base    string // prefix + "{kg}:"
	anchor  string // key every Update watches first
	channel string // invalidation channel
	closed  atomic.Bool

	// replicaWait bounds WAIT after a commit; 0 or less turns it off.
	replicaWait time.Duration
}

// New returns a Backend over client with opts (only Prefix and Timeout are
// used; the connection settings belong to NewClient). It does no network
// I/O. The caller keeps ownership of client: Close does not close it, since
// it may be shared (e.g. with the rate limiter).
func New(client redis.UniversalClient, opts Options) *Backend {
	opts = opts.withDefaults()
	base := opts.Prefix + "{kg}:"
	return &Backend{
		client:      client,
		timeout:     opts.Timeout,
		budget:      updateBudgetFactor * opts.Timeout,
		base:        base,
		anchor:      base + "@tx",
		channel:     base + "invalidate",
		replicaWait: opts.ReplicaWait,
	}
}

// NewStore returns the keys.Store of the model on a Backend over client.
func NewStore(client redis.UniversalClient, opts Options, sopts keys.StoreOptions) keys.Store {
	return keys.NewStore(New(client, opts), sopts)
}

// Channel returns the pub/sub channel the invalidations are published on.
func (b *Backend) Channel() string { return b.channel }

// Ping checks that Redis answers within the timeout.
func (b *Backend) Ping(ctx context.Context) error {
	if err := b.checkOpen("ping"); err != nil {
		return err
	}
	ctx, cancel := b.callCtx(ctx)
	defer cancel()
	if err := b.client.Ping(ctx).Err(); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// Close marks the Backend closed: later calls fail with keys.ErrUnavailable.
// It does not close the client (see New). Close is idempotent.
func (b *Backend) Close() error {
	b.closed.Store(true)
	return nil
}

// View runs fn with plain reads; writes through its Tx fail, and
// invalidations queued with Notify are dropped. Each read is bounded by the
// timeout.
func (b *Backend) View(ctx context.Context, fn func(keys.Tx) error) error {
	if err := b.checkOpen("view"); err != nil {
		return err
	}
	return fn(&txn{b: b, ctx: ctx})
}

// Update runs fn in an optimistic transaction (see the package doc): reads
// WATCH what they read, writes are applied with MULTI/EXEC together with the
// PUBLISH of the queued invalidations, and fn runs again when a concurrent
// writer changed what it read. An error returned by fn is returned unchanged
// and nothing is written.
func (b *Backend) Update(ctx context.Context, fn func(keys.Tx) error) error {
	if err := b.checkOpen("update"); err != nil {
		return err
	}
	budget := b.budget
	if d, ok := keys.UpdateBudget(ctx); ok && d > budget {
		budget = d // a large transaction (an import) asked for more
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	for attempt := 1; ; attempt++ {
		var fnErr error
		// The opening WATCH of the anchor is one round trip like any other;
		// the transaction's own calls take their deadlines from ctx. (On
		// Redis Cluster, a MOVED answer to EXEC is retried by go-redis under
		// wctx, usually expired by then: the Update then fails as
		// unavailable and the caller retries, which is rare and safe.)
		wctx, wcancel := b.callCtx(ctx)
		err := b.client.Watch(wctx, func(rtx *redis.Tx) error {
			t := &txn{b: b, ctx: ctx, rtx: rtx}
			if fnErr = fn(t); fnErr != nil {
				t.release()
				return fnErr
			}
			if err := t.commit(); err != nil {
				return err
			}
			if t.replicas == 0 {
				return nil
			}
			return b.replicate(ctx, rtx)
		}, b.anchor)
		wcancel()
		switch {
		case err == nil:
			return nil
		case fnErr != nil:
			return fnErr
		case !errors.Is(err, redis.TxFailedErr):
			return unavailable("update", err)
		case attempt == maxAttempts:
			return fmt.Errorf("redisstore: update: %d attempts lost to concurrent writers: %w: %w",
				attempt, keys.ErrUnavailable, err)
		}
		if err := sleep(ctx, retryDelay(attempt)); err != nil {
			return unavailable("update", err)
		}
	}
}

// replicate waits until a replica has what this connection wrote (WAIT
// 1), so that an acknowledged write survives a failover; Update calls it
// after a commit on a master with replicas. It fails with errNotReplicated
// when no replica confirms within replicaWait: the write is then on the
// master only, and its fate after a failover unknown, like that of a
// timed-out EXEC.
func (b *Backend) replicate(ctx context.Context, rtx *redis.Tx) error {
	wctx, cancel := context.WithTimeout(ctx, b.replicaWait+b.timeout)
	defer cancel()
	n, err := rtx.Wait(wctx, 1, b.replicaWait).Result()
	if err != nil {
		return fmt.Errorf("waiting for a replica: %w", err)
	}
	if n < 1 {
		return errNotReplicated
	}
	return nil
}

// errNotReplicated reports a commit that no replica confirmed in time.
var errNotReplicated = errors.New("committed on the master, but no replica confirmed it in time")

// retryDelay is a jittered backoff: up to 1ms after the first lost race,
// growing to at most 10ms.
func retryDelay(attempt int) time.Duration {
	limit := time.Duration(min(attempt, 10)) * time.Millisecond
	return time.Duration(rand.Int64N(int64(limit))) + 50*time.Microsecond
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// callCtx bounds one round trip: Timeout, or the longer time a caller
// asked for with keys.WithCallTimeout (a cache load trying again while
// Redis is busy but answering).
func (b *Backend) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	t := b.timeout
	if d, ok := keys.CallTimeout(ctx); ok && d > t {
		t = d
	}
	return context.WithTimeout(ctx, t)
}

func (b *Backend) checkOpen(op string) error {
	if b.closed.Load() {
		return unavailable(op, errClosed)
	}
	return nil
}

// recordKey is the Redis key of table/id.
func (b *Backend) recordKey(table, id string) string {
	return b.base + table + ":" + id
}

// indexKey is the Redis key of an index.
func (b *Backend) indexKey(index string) string {
	return b.base + "@ix:" + index
}

// checkTable rejects table names that could collide with the backend's own
// keys ("@…").
func checkTable(table string) error {
	if table == "" || strings.HasPrefix(table, "@") {
		return fmt.Errorf("redisstore: invalid table name %q", table)
	}
	return nil
}

// unavailable wraps a Redis failure in keys.ErrUnavailable, keeping the cause.
func unavailable(op string, err error) error {
	return fmt.Errorf("redisstore: %s: %w: %w", op, keys.ErrUnavailable, err)
}

// readErr maps the error of a read: redis.Nil is keys.ErrNotFound, anything
// else keys.ErrUnavailable.
func readErr(op string, err error) error {
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("redisstore: %s: %w", op, keys.ErrNotFound)
	}
	return unavailable(op, err)
}

// Interface guards.
var (
	_ keys.Backend  = (*Backend)(nil)
	_ keys.Notifier = (*Backend)(nil)
)
