package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"runtime"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of Options.
const (
	// DefaultPrefix is the key prefix when Options.Prefix is empty.
	DefaultPrefix = "keygate:"
	// DefaultTimeout bounds one round trip when Options.Timeout is zero.
	DefaultTimeout = 50 * time.Millisecond
)

// updateBudgetFactor times the per-call timeout bounds a whole Update,
// retries included.
const updateBudgetFactor = 20

// Options configure the connection to Redis (NewClient) and the Backend (New).
type Options struct {
	// Addrs are the Redis addresses (host:port). One address is a single
	// node, several are the seeds of a Redis Cluster, and with MasterName
	// they are the Sentinels. Default: 127.0.0.1:6379 (go-redis's default).
	Addrs []string
	// MasterName selects Sentinel: the name of the monitored master.
	// Default: empty (no Sentinel).
	MasterName string
	// Username is the Redis ACL user. Default: none (the default user).
	Username string
	// Password authenticates Username, or alone with requirepass. It never
	// appears in errors. Default: none.
	Password string
	// DB is the database number (single node and Sentinel only; a cluster
	// has only 0). Default: 0.
	DB int
	// TLS connects with TLS, verifying the server against the system roots.
	// Default: false.
	TLS bool
	// TLSConfig, when set, connects with TLS using this configuration (for a
	// private CA, a client certificate or a fixed server name); it implies
	// TLS. NewClient clones it. Default: nil.
	TLSConfig *tls.Config
	// Prefix starts every key and the invalidation channel, so several
	// deployments can share one Redis. Default: "keygate:".
	Prefix string
	// Timeout bounds each round trip to Redis; a whole Update, retries
	// included, gets 20 × Timeout. Default: 50ms.
	Timeout time.Duration
	// ReplicaWait bounds how long an Update that wrote something waits,
	// after its commit, for a replica to confirm it has the write (WAIT 1),
	// when the master has replicas (ROLE, asked inside the commit's
	// MULTI/EXEC); an Update no replica confirms in time fails with
	// keys.ErrUnavailable although it is on the master. A negative value
	// turns the wait off. Default: 4 × Timeout.
	ReplicaWait time.Duration
}

func (o Options) withDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.ReplicaWait == 0 {
		o.ReplicaWait = 4 * o.Timeout
	}
	return o
}

// NewClient builds the go-redis client that opts describe: one address gives
// a single-node client, several a cluster client, and MasterName a Sentinel
// failover client. Context deadlines are honoured (ContextTimeoutEnabled):
// the Backend gives each call Timeout (reads and writes of calls with no
// deadline time out after 20 × Timeout); dialing may take a little longer
// (at least 250ms) so a slow TLS handshake can complete, but every call is
// still bounded by its own context. NewClient does no network I/O; the caller
// closes the client.
func NewClient(opts Options) redis.UniversalClient {
	opts = opts.withDefaults()
	dial := 5 * opts.Timeout
	if dial < 250*time.Millisecond {
		dial = 250 * time.Millisecond
	}
	// Every call of the Backend carries its own deadline (Timeout, or the
	// longer one of keys.WithCallTimeout); the client's read and write
	// timeouts are only a backstop for calls without one.
	backstop := updateBudgetFactor * opts.Timeout
	uo := &redis.UniversalOptions{
		Addrs:                 opts.Addrs,
		MasterName:            opts.MasterName,
		Username:              opts.Username,
		Password:              opts.Password,
		DB:                    opts.DB,
		DialTimeout:           dial,
		ReadTimeout:           backstop,
		WriteTimeout:          backstop,
		ContextTimeoutEnabled: true,
		// A burst of cache misses reads through up to 48 of these at once
		// (keys.CacheOptions.MaxLoads), besides the limiter's batches; half
		// of them are kept open, so that a burst on a quiet node does not
		// start with dozens of dials, each within a round trip's timeout.
		PoolSize:     max(64, 10*runtime.GOMAXPROCS(0)),
		MinIdleConns: 32,
	}
	switch {
	case opts.TLSConfig != nil:
		uo.TLSConfig = opts.TLSConfig.Clone()
		if uo.TLSConfig.MinVersion == 0 {
			uo.TLSConfig.MinVersion = tls.VersionTLS12
		}
	case opts.TLS:
		// No RootCAs: the system roots. No ServerName: crypto/tls takes it
		// from each address dialed (every cluster node, every Sentinel).
		uo.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	c := redis.NewUniversalClient(uo)
	if cc, ok := c.(*redis.ClusterClient); ok {
		cc.AddHook(reloadOnFailure{cc})
	}
	return c
}

// reloadOnFailure makes a cluster client reload its slot map when a call
// fails for want of a node (refused, reset, timed out). go-redis reloads it
// on MOVED answers, but a master that died answers nothing: until the map
// is reloaded (otherwise only every 10 s) the client keeps dialing it,
// although its replica took over the slots a second after the node timeout.
// go-redis runs one reload at a time, however many calls ask for one, with
// 200 ms between reloads: a burst of timeouts costs at most five CLUSTER
// SLOTS a second.
type reloadOnFailure struct{ cc *redis.ClusterClient }

func (h reloadOnFailure) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnFailure) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(ctx, err)
		return err
	}
}

func (h reloadOnFailure) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(ctx, err)
		return err
	}
}

// check asks for a reload after a failure that is not an answer of Redis.
func (h reloadOnFailure) check(ctx context.Context, err error) {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, redis.TxFailedErr) {
		return
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !strings.HasPrefix(rerr.Error(), "CLUSTERDOWN") {
		return // an answer (NOSCRIPT, WRONGTYPE, …): the node is there
	}
	h.cc.ReloadState(ctx)
}
