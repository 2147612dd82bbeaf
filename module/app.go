// Package module wires keygate into Caddy: the `keygate` app (key store,
// caches, limiter), the HTTP handlers `keygate`, `keygate_admin`,
// `keygate_token` and `keygate_jwks`, the admin endpoint `admin.api.keygate`
// and the Prometheus metrics, and opens a config's store for the CLI when no
// server runs (OpenLocalAdmin, RotateMasterKey; the commands are package
// cli). The logic lives in the domain packages (keys, auth, ratelimit,
// admin, importer, tenantfile); this package is glue.
package module

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"golang.org/x/time/rate"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/ratelimit"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the `keygate` app: the key store and what every keygate handler of
// a configuration shares. Without a `keygate` global option the app runs
// with its defaults: the embedded file store in Caddy's data directory.
type App struct {
	// Store selects and configures the key store. Default: the file store.
	Store *StoreConfig `json:"store,omitempty"`

	// MasterKey encrypts signing secrets and token-signing keys: 32 bytes,
	// base64. Use a placeholder such as {env.KEYGATE_MASTER_KEY}; it is
	// resolved at provision and never written back into the config. Required
	// with the Redis store once secrets are stored; with the file store and
	// no master key, one is generated into Caddy's data directory.
	MasterKey string `json:"master_key,omitempty"`

	// Pepper, when set, makes stored key hashes HMAC-SHA256 keyed with it.
	// Changing it invalidates every existing access key. Default: none.
	Pepper string `json:"pepper,omitempty"`

	// LegacyHashes says which keys imported only as another gateway's hash
	// are still matched on their first use (then re-hashed to keygate's own
	// hash): "all", "strong" (SHA-1 and SHA-256; not the murmur and fnv
	// hashes, which are no cryptographic hashes: a preimage is cheap, and a
	// 32-bit murmur is guessable online) or "none". Default: all.
	LegacyHashes string `json:"legacy_hashes,omitempty"`

	// Cache configures the in-process cache of keys and users.
	Cache *CacheConfig `json:"cache,omitempty"`

	// AuthFailures throttles failed authentications per client IP, at
	// every keygate route, the token endpoint and the admin API
	// (keygate_admin, POST /v1/verify included), with one budget per client
	// for all of them: a client whose budget is used up gets 429 with
	// Retry-After for every request, before its credential is looked at,
	// until the bucket refills. Counted: 401s, and the gateway's 400 for
	// more than one credential. Default: rate 60/1m, burst 100.
	AuthFailures *ThrottleConfig `json:"auth_failures,omitempty"`

	// PurgeInterval is how often DELETED users past their planned purge
	// date are removed. Default: 1h.
	PurgeInterval caddy.Duration `json:"purge_interval,omitempty"`

	// Token configures token exchange (keygate_token, keygate_jwks and the
	// access_token scheme). Default: the TokenConfig defaults.
	Token *TokenConfig `json:"token,omitempty"`

	// Credentials says which credentials users of each type may hold and
	// use: user type (TECHNICAL, SERVICE, APPLICATION) → list of
	// access_key, token (the token exchange and its access tokens),
	// signature (signing secrets). Types not named keep the defaults of the
	// seed documents: SERVICE [access_key], TECHNICAL [access_key, token],
	// APPLICATION [signature]. An empty list allows nothing.
	Credentials map[string][]string `json:"credentials,omitempty"`

	// Retention says how long history and the activity log are kept.
	// Default: history forever, activity 90 days.
	Retention *RetentionConfig `json:"retention,omitempty"`

	// Events configures webhooks, e-mail notifications, expiry reminders,
	// limit and failure-burst events and leak reports. Default: the
	// EventsConfig defaults (delivery on, no SMTP, no leak report keys).
	Events *EventsConfig `json:"events,omitempty"`

	// SignedBodyBuffer bounds, in bytes, the request bodies that all routes
	// together hold in memory to check signed digests (see max_signed_body
	// on the route). A signed request that would go past it is answered 503
	// with Retry-After. Every byte is reserved before it is read and given
	// back when its request ends, whatever the outcome; the gauge
	// caddy_keygate_signed_body_bytes shows what is held. Default: 128 MiB.
	SignedBodyBuffer int64 `json:"signed_body_buffer,omitempty"`

	// SignedBodyPerClient bounds, in bytes, the share of SignedBodyBuffer
	// that the requests of one client IP (an IPv6 client by its /64, told
	// as the auth_failures throttle tells clients) hold at once, so that one
	// client cannot lock everyone's signed uploads out. Past it, that
	// client's signed upload is answered 503 with Retry-After. Default: an
	// eighth of signed_body_buffer, and at least the default
	// max_signed_body (10 MiB) when the buffer allows it.
	SignedBodyPerClient int64 `json:"signed_body_per_client,omitempty"`

	ctx      caddy.Context
	logger   *zap.Logger
	shared   *sharedStore
	poolKey  string
	hasher   *keys.Hasher
	sealer   *keys.Sealer
	resolver *keys.Resolver
	usage    *keys.UsageRecorder
	// counts are the per-user hourly request counts (allowed, limited,
	// refused), added to the store every 10s (one write per node, off the
	// request path), so the console's usage chart is near real time.
	counts *keys.UsageCounter
	replay auth.ReplayGuard
	// throttles are the per-client-IP throttles (auth_failures, token).
	throttles *throttles
	// primary is the limiter of record: the breaker-guarded Redis limiter,
	// or the in-process one with the file store. Routes wrap it with their
	// own fail mode (ratelimit.Guarded), falling back to local.
	primary ratelimit.Limiter
	// limiterBound is how long a Redis limiter call may take (zero without
	// Redis), and storeTimeout the store's per-call timeout: a request whose
	// lookups took longer than that gives the limiter only what is left of
	// limiterBound.
	limiterBound, storeTimeout time.Duration
	breaker                    *ratelimit.Breaker
	// redisLimiter is closed in Cleanup (it runs the batching flushers).
	redisLimiter *ratelimit.Redis
	local        *ratelimit.Local
	cancel       context.CancelFunc
	admin        *admin.Handler
	tokens       *tokenKeys
	credentials  keys.CredentialPolicy
	// bodyBudget is shared with every config of the same limits (see
	// bodyBudgets), released in Cleanup under budgetKey.
	bodyBudget *auth.BodyBudget
	budgetKey  string
	// replayFullWarn lets the "replay guard full" warning through every
	// 10 seconds at most.
	replayFullWarn *rate.Sometimes
	// verifier runs POST /v1/verify through the gateway's decision.
	verifier *Handler
	// events delivers the outbox and watches the request path.
	events *eventsRuntime
	// allowLegacy says which legacy hash schemes of imported keys are
	// matched (LegacyHashes); nil: none.
	allowLegacy func(scheme string) bool
	// routes counts the keygate handlers provisioned with this app.
	// (a plain int64 for sync/atomic: App is copied by value in CaddyModule)
	routes int64
}

// DefaultSignedBodyBuffer is App.SignedBodyBuffer when the config leaves it unset.
const DefaultSignedBodyBuffer = 128 << 20

// StoreConfig selects the key store.
type StoreConfig struct {
	// Backend is "file" (embedded bbolt, one node) or "redis". Default: file.
	Backend string `json:"backend,omitempty"`

	// Path of the bbolt file. Default: <Caddy data dir>/keygate/keygate.db.
	Path string `json:"path,omitempty"`

	// ReplayCache is how many single-use signatures the file store's
	// in-process replay guard remembers at most, each until its signature
	// expires (2 × max_skew), at most 160 bytes each. An unexpired entry is
	// never dropped: when the guard is full, a signed request that needs a
	// new entry is answered 503 (counted in caddy_keygate_replay_full_total)
	// until entries expire. Size it for the peak rate of single-use signed
	// requests let through times 2 × max_skew. Read when the store is
	// opened: a reload that keeps the store keeps its guard. File store
	// only (the Redis store remembers signatures in Redis). Default:
	// 1048576 (at most 160 MiB).
	ReplayCache int `json:"replay_cache,omitempty"`

	// Addresses of Redis (host:port): one is a single node, several a cluster,
	// or the sentinels when MasterName is set.
	Addresses []string `json:"addresses,omitempty"`
	// MasterName selects Redis Sentinel with this master name.
	MasterName string `json:"master_name,omitempty"`
	// Username for Redis ACL authentication.
	Username string `json:"username,omitempty"`
	// Password for Redis, e.g. {env.REDIS_PASSWORD} (resolved at provision).
	Password string `json:"password,omitempty"`
	// DB is the Redis database number (single node and sentinel only).
	DB int `json:"db,omitempty"`
	// TLS enables TLS to Redis, verifying the server against the system
	// roots (or TLSCA). Any of the tls_* options below implies it.
	TLS bool `json:"tls,omitempty"`
	// TLSCA is a PEM file of the CA certificates that verify Redis's server
	// certificate, instead of the system roots. Default: system roots.
	TLSCA string `json:"tls_ca,omitempty"`
	// TLSCert and TLSKey are PEM files of the client certificate and its
	// private key, for a Redis that requires clients to present one
	// (tls-auth-clients yes). Both or neither. Default: none.
	TLSCert string `json:"tls_cert,omitempty"`
	TLSKey  string `json:"tls_key,omitempty"`
	// TLSServerName is the name the server certificate must carry, when it
	// is not the host of each address (e.g. the nodes of a cluster are
	// dialed by IP). Default: the host of the address dialed.
	TLSServerName string `json:"tls_server_name,omitempty"`
	// Prefix of every Redis key keygate writes. Default: keygate:
	Prefix string `json:"prefix,omitempty"`
	// Timeout is Redis's time: how long one round trip may take once it is
	// on its way; failures within it are what opens the limiter's breaker.
	// Waiting behind a burst has budgets of its own (1s in the limiter's
	// batching queue, 2s for a cache miss's load slot; see the README,
	// "Timeouts"). Default: 50ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Lease is the largest number of rate-limit slots a gateway node leases
	// for one user at a time: a user with steady traffic on a node has most
	// of its requests decided there, without a Redis call, and the limit
	// stays exact (see the ratelimit package). Leases are sized by the
	// user's traffic on the node and capped by an eighth of the quota left,
	// so the cap only binds for a busy user with a large limit; it bounds
	// what a Redis failover can over-admit (4 × lease × nodes per user).
	// 0 turns leasing off, so that every request is decided in Redis.
	// Default: 1024.
	Lease *int `json:"lease,omitempty"`
}

// DefaultLease is StoreConfig.Lease when the config leaves it unset.
const DefaultLease = 1024

// CacheConfig tunes the in-process cache of keys, users and permissions.
type CacheConfig struct {
	// TTL is the safety net next to change notifications: how long an entry
	// is trusted without proof from the store that no change was missed.
	// With a live Redis subscription that proof comes every second, so
	// entries only expire when the subscription is in trouble. Default: 30s.
	TTL caddy.Duration `json:"ttl,omitempty"`
	// NegativeTTL bounds how long an unknown key id is remembered. Default: 2s.
	NegativeTTL caddy.Duration `json:"negative_ttl,omitempty"`
	// Size is the number of entries of each kind. Default: 100000.
	Size int `json:"size,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "keygate",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision opens (or reuses, across reloads) the store and sets up the
// hasher, sealer, cache and limiter. It does no network round trip: Redis
// is pinged in Start.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	registerMetrics(ctx, a.logger)
	a.warnAdminEndpoint(ctx)
	return a.setup()
}

// setup opens the store and builds what the handlers share; the CLI calls
// it directly when no server is running.
func (a *App) setup() error {
	repl := caddy.NewReplacer()

	if a.Store == nil {
		a.Store = &StoreConfig{}
	}
	sc := *a.Store
	if sc.Backend == "" {
		sc.Backend = "file"
	}
	switch sc.Backend {
	case "file", "redis":
	default:
		return fmt.Errorf("store backend %q: must be file or redis", sc.Backend)
	}
	sc.Path = repl.ReplaceAll(sc.Path, "")
	sc.Password = repl.ReplaceAll(sc.Password, "")
	sc.Username = repl.ReplaceAll(sc.Username, "")
	sc.TLSCA = repl.ReplaceAll(sc.TLSCA, "")
	sc.TLSCert = repl.ReplaceAll(sc.TLSCert, "")
	sc.TLSKey = repl.ReplaceAll(sc.TLSKey, "")
	sc.TLSServerName = repl.ReplaceAll(sc.TLSServerName, "")
	for i, addr := range sc.Addresses {
		sc.Addresses[i] = repl.ReplaceAll(addr, "")
	}
	if sc.Backend == "file" && sc.Path == "" {
		sc.Path = DefaultStorePath()
	}
	if sc.ReplayCache < 0 || (sc.ReplayCache > 0 && sc.Backend != "file") {
		return errors.New("store: replay_cache must be positive, and is a file store option")
	}
	if sc.Backend == "redis" && len(sc.Addresses) == 0 {
		return errors.New("store redis: at least one address is required")
	}
	if sc.Prefix == "" {
		sc.Prefix = "keygate:"
	}
	if sc.Timeout <= 0 {
		sc.Timeout = caddy.Duration(50 * time.Millisecond)
	}
	a.Store.Backend = sc.Backend
	if a.SignedBodyBuffer < 0 {
		return errors.New("signed_body_buffer must not be negative")
	}
	if a.SignedBodyBuffer == 0 {
		a.SignedBodyBuffer = DefaultSignedBodyBuffer
	}
	if a.SignedBodyPerClient < 0 {
		return errors.New("signed_body_per_client must not be negative")
	}
	if a.SignedBodyPerClient == 0 {
		a.SignedBodyPerClient = max(a.SignedBodyBuffer/8, min(a.SignedBodyBuffer, auth.DefaultMaxBody))
	}
	if a.SignedBodyPerClient > a.SignedBodyBuffer {
		return fmt.Errorf("signed_body_per_client (%d) must not be larger than signed_body_buffer (%d)", a.SignedBodyPerClient, a.SignedBodyBuffer)
	}
	if err := a.acquireBodyBudget(); err != nil {
		return err
	}
	a.replayFullWarn = &rate.Sometimes{Interval: 10 * time.Second}

	shared, key, err := acquireStore(sc)
	if err != nil {
		return fmt.Errorf("opening key store: %w", err)
	}
	a.shared, a.poolKey = shared, key

	switch a.LegacyHashes {
	case "", "all":
		a.allowLegacy = func(string) bool { return true }
	case "strong":
		a.allowLegacy = func(s string) bool { return !keys.WeakScheme(s) }
	case "none":
		a.allowLegacy = nil
	default:
		return fmt.Errorf("legacy_hashes: %q must be all, strong or none", a.LegacyHashes)
	}
	if p := repl.ReplaceAll(a.Pepper, ""); p != "" {
		a.hasher = keys.NewHasher([]byte(p))
	} else {
		a.hasher = keys.NewHasher(nil)
	}

	if err := a.provisionMasterKey(repl, sc); err != nil {
		return err
	}

	cc := CacheConfig{}
	if a.Cache != nil {
		cc = *a.Cache
	}
	var opener func(keys.Secret) (string, error)
	if a.sealer != nil {
		sealer := a.sealer
		opener = func(s keys.Secret) (string, error) {
			pt, err := sealer.Open(s.Sealed, keys.SecretAAD(s.UserID, s.ID))
			if err != nil {
				return "", fmt.Errorf("opening secret %s: %w", s.ID, err)
			}
			return string(pt), nil
		}
	}
	a.resolver = keys.NewResolver(instrumentStore(shared.store), keys.CacheOptions{
		TTL:         time.Duration(cc.TTL),
		NegativeTTL: time.Duration(cc.NegativeTTL),
		Size:        cc.Size,
		OnLookup:    observeLookup,
	}, opener)
	shared.attach(a.resolver)
	a.usage = keys.NewUsageRecorder(shared.store, time.Minute)
	a.counts = keys.NewUsageCounter(shared.store, 10*time.Second)
	if a.credentials, err = credentialPolicy(a.Credentials); err != nil {
		return err
	}
	if err := a.Retention.validate(); err != nil {
		return err
	}
	logger := a.logger
	if logger == nil {
		logger = zap.NewNop()
	}
	if err := a.setupEvents(repl, logger); err != nil {
		return err
	}
	a.admin = admin.New(admin.Config{Store: shared.store, Hasher: a.hasher, Sealer: a.sealer, Credentials: a.credentials,
		Verifier: a, Tokens: a, OnEvent: a.events.dispatcher.Wake, Logger: slogOf(logger, "admin")})

	// The in-process limiter lives with the pooled store, so a config
	// reload keeps its counts (a new one would hand every user a fresh quota).
	a.local = shared.local
	a.replay = shared.replay
	a.primary = a.local
	if shared.redis != nil {
		// Batching coalesces concurrent limiter calls into one pipeline
		// (every call is still its own atomic script run, so decisions are
		// exact): fewer round trips and syscalls per request under load.
		lease := DefaultLease
		if sc.Lease != nil {
			lease = *sc.Lease
		}
		a.redisLimiter = ratelimit.NewRedis(shared.redis, ratelimit.RedisOptions{
			Prefix:  sc.Prefix,
			Timeout: time.Duration(sc.Timeout),
			Batch:   true,
			Lease:   lease,
		})
		a.breaker = ratelimit.NewBreaker(a.redisLimiter, ratelimit.BreakerOptions{})
		a.primary = a.breaker
		a.limiterBound = a.redisLimiter.CallBound()
		a.storeTimeout = time.Duration(sc.Timeout)
		if a.storeTimeout <= 0 {
			a.storeTimeout = ratelimit.DefaultTimeout
		}
	}
	if a.PurgeInterval <= 0 {
		a.PurgeInterval = caddy.Duration(time.Hour)
	}
	if a.tokens, err = newTokenKeys(a.Token, shared.store, a.sealer, logger); err != nil {
		return err
	}
	if a.verifier, err = a.newVerifier(logger.Named("verify")); err != nil {
		return err
	}
	return a.setupThrottles()
}

// slogOf is a slog.Logger over l's core, named l's name + "." + name, for
// the domain packages that log with the standard library's slog (admin):
// their lines go where Caddy's logging config sends l's, at the same
// levels. Stack traces are left to zap's own loggers.
func slogOf(l *zap.Logger, name string) *slog.Logger {
	if l.Name() != "" {
		name = l.Name() + "." + name
	}
	return slog.New(zapslog.NewHandler(l.Core(), zapslog.WithName(name), zapslog.AddStacktraceAt(slog.Level(math.MaxInt8))))
}

// provisionMasterKey sets up the sealer: from the configured master key, or
// with the file store from (or into) a key file in Caddy's data directory.
func (a *App) provisionMasterKey(repl *caddy.Replacer, sc StoreConfig) error {
	mk := repl.ReplaceAll(a.MasterKey, "")
	if mk == "" && sc.Backend == "file" {
		path := filepath.Join(filepath.Dir(sc.Path), "master.key")
		data, err := os.ReadFile(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			mk = keys.NewMasterKey()
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return fmt.Errorf("creating master key directory: %w", err)
			}
			if err := os.WriteFile(path, []byte(mk+"\n"), 0o600); err != nil {
				return fmt.Errorf("writing generated master key: %w", err)
			}
			a.logger.Info("generated a master key for signing secrets; back it up or set master_key",
				zap.String("path", path))
		case err != nil:
			return fmt.Errorf("reading master key file: %w", err)
		default:
			mk = string(data)
		}
	}
	if mk == "" {
		return nil // Redis without master key: secrets are refused until one is configured
	}
	raw, err := keys.ParseMasterKey(mk)
	if err != nil {
		return fmt.Errorf("master_key: %w", err)
	}
	a.sealer, err = keys.NewSealer(raw)
	if err != nil {
		return fmt.Errorf("master_key: %w", err)
	}
	if sc.Backend == "file" {
		// Local and fast: a wrong key is a provision error at once.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return a.checkMasterKey(ctx)
	}
	return nil
}

// checkMasterKey compares the master key with the check value in the store,
// storing one on first use.
func (a *App) checkMasterKey(ctx context.Context) error {
	store := a.shared.store
	check, err := store.GetMeta(ctx, keys.MasterCheckMeta)
	switch {
	case errors.Is(err, keys.ErrNotFound):
		if a.sealer == nil {
			return nil
		}
		if err := store.PutMeta(ctx, keys.MasterCheckMeta, a.sealer.SealCheck()); err != nil {
			return fmt.Errorf("storing master key check: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("reading master key check: %w", err)
	}
	if a.sealer == nil {
		return errors.New("the key store holds sealed secrets: master_key is required (e.g. master_key {env.KEYGATE_MASTER_KEY})")
	}
	if err := a.sealer.VerifyCheck(check); err != nil {
		return errors.New("master_key does not match the key the store's secrets were sealed with")
	}
	return nil
}

// Start pings Redis and checks the master key (a wrong key stops the
// config from loading; an unreachable Redis only logs and retries), then
// starts the cache subscription, the last-used writer and the purge sweep.
func (a *App) Start() error {
	if a.shared.redis != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := a.checkMasterKey(ctx)
		cancel()
		switch {
		case errors.Is(err, keys.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded):
			a.logger.Warn("redis is not reachable; keygate answers 503 until it is", zap.Error(err))
			go a.retryMasterKeyCheck()
		case err != nil:
			return err
		}
	}
	runCtx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	go a.resolver.Run(runCtx, func(err error) {
		a.logger.Warn("cache invalidation subscription lost; re-subscribing", zap.Error(err))
	})
	go a.usage.Run(runCtx, func(err error) {
		a.logger.Warn("writing last-used times", zap.Error(err))
	})
	go a.counts.Run(runCtx, func(err error) {
		a.logger.Warn("writing usage counts", zap.Error(err))
	})
	go a.purgeLoop(runCtx)
	go a.tokens.run(runCtx)
	a.startEvents(runCtx)
	if atomic.LoadInt64(&a.routes) > 0 {
		a.startWarnings()
	}
	return nil
}

// retryMasterKeyCheck repeats the check until Redis answers.
func (a *App) retryMasterKeyCheck() {
	for delay := time.Second; ; delay = min(2*delay, 30*time.Second) {
		time.Sleep(delay)
		if a.ctx.Err() != nil {
			return
		}
		ctx, cancel := context.WithTimeout(a.ctx, 2*time.Second)
		err := a.checkMasterKey(ctx)
		cancel()
		if err == nil {
			a.logger.Info("redis is reachable")
			return
		}
		if !errors.Is(err, keys.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
			// Secrets then fail to open and signed requests get 503, never 401.
			a.logger.Error("master key check failed: signed requests and token signing will fail until master_key is fixed", zap.Error(err))
			return
		}
	}
}

// purgeLoop finishes interrupted deletions at once (a crash between a
// deletion's two steps resumes on start), then every purge_interval also
// purges DELETED users past their planned purge date, expired console
// sessions and history and activity past retention.
func (a *App) purgeLoop(ctx context.Context) {
	a.completeDeletions(ctx)
	t := time.NewTicker(time.Duration(a.PurgeInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.completeDeletions(ctx)
			pctx, cancel := context.WithTimeout(ctx, time.Minute)
			n, err := admin.Purge(pctx, a.shared.store, time.Now())
			if err != nil {
				a.logger.Warn("purging deleted users", zap.Error(err))
			} else if n > 0 {
				a.logger.Info("purged deleted users", zap.Int("count", n))
			}
			if _, err := admin.PurgeSessions(pctx, a.shared.store, time.Now()); err != nil {
				a.logger.Warn("purging console sessions", zap.Error(err))
			}
			cancel()
			a.sweepRetention(ctx)
			a.purgeDeliveries(ctx)
		}
	}
}

// completeDeletions runs the second step of the deletions a crash or a
// store failure left DELETING. While the store is unreachable it retries
// every few seconds (for a minute), so a node that starts during an outage
// still finishes them soon after.
func (a *App) completeDeletions(ctx context.Context) {
	for attempt := 0; attempt < 12; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		n, err := admin.CompleteDeletions(pctx, a.shared.store)
		cancel()
		if n > 0 {
			a.logger.Info("completed interrupted user deletions", zap.Int("count", n))
		}
		if err == nil {
			return
		}
		a.logger.Warn("completing interrupted user deletions", zap.Error(err))
		if !errors.Is(err, keys.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

// Stop ends the background work.
func (a *App) Stop() error {
	if a.cancel != nil {
		a.cancel()
		a.cancel = nil
	}
	return nil
}

// Cleanup releases this config's hold on the shared store.
func (a *App) Cleanup() error {
	a.throttles.release()
	if a.budgetKey != "" {
		_, _ = bodyBudgets.Delete(a.budgetKey)
		a.budgetKey = ""
	}
	if a.redisLimiter != nil {
		_ = a.redisLimiter.Close()
		a.redisLimiter = nil
	}
	if a.shared != nil && a.resolver != nil {
		a.shared.detach(a.resolver)
	}
	if a.poolKey != "" {
		_, _ = stores.Delete(a.poolKey)
		a.poolKey = ""
	}
	return nil
}

// bodyBudgets shares body budgets between configurations, so that a
// reload with the same limits keeps counting the bodies that requests of
// the old configuration still hold (a fresh budget would let the two
// configurations hold twice the limit).
var bodyBudgets = caddy.NewUsagePool()

// pooledBudget is a BodyBudget in bodyBudgets; it holds no resources.
type pooledBudget struct{ *auth.BodyBudget }

// Destruct implements caddy.Destructor.
func (pooledBudget) Destruct() error { return nil }

// acquireBodyBudget takes (or creates) the budget of the app's limits.
func (a *App) acquireBodyBudget() error {
	key := strconv.FormatInt(a.SignedBodyBuffer, 10) + "/" + strconv.FormatInt(a.SignedBodyPerClient, 10)
	val, _, err := bodyBudgets.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledBudget{auth.NewBodyBudget(a.SignedBodyBuffer, a.SignedBodyPerClient)}, nil
	})
	if err != nil {
		return fmt.Errorf("signed body budget: %w", err)
	}
	a.bodyBudget, a.budgetKey = val.(pooledBudget).BodyBudget, key
	return nil
}

// signedBodyBytes is what the body budgets in use hold, for the gauge.
func signedBodyBytes() float64 {
	var n int64
	bodyBudgets.Range(func(_, v any) bool {
		n += v.(pooledBudget).Used()
		return true
	})
	return float64(n)
}

// keygateApp returns the config's keygate app for a handler's Provision
// (a zero-config app, the file store, when there is no global option).
func keygateApp(ctx caddy.Context) (*App, error) {
	appVal, err := ctx.App("keygate")
	if err != nil {
		return nil, fmt.Errorf("loading keygate app: %w", err)
	}
	return appVal.(*App), nil
}

// KeyStore returns the app's store.
func (a *App) KeyStore() keys.Store { return a.shared.store }

// DefaultStorePath is where the file store lives unless configured.
func DefaultStorePath() string {
	return filepath.Join(caddy.AppDataDir(), "keygate", "keygate.db")
}

// redisClient is what the app needs of the shared Redis client.
type redisClient = redis.UniversalClient

var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
