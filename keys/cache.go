package keys

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// CacheOptions configure a Resolver.
type CacheOptions struct {
	// TTL is how long a positive entry is trusted without proof from the
	// store that no change to it was missed. Invalidations drop changed
	// entries at once; the TTL is the safety net for lost ones. A store that
	// proves delivery (Listener.Confirm; with a live Redis subscription,
	// every second) renews every entry loaded before the proof for another
	// TTL from the time it covers, so hot entries never expire while the
	// subscription is healthy. Default: 30s.
	TTL time.Duration
	// NegativeTTL bounds how long "not found" is remembered, so a key created
	// on another node is usable after at most this long even if its
	// invalidation was lost. Default: 2s.
	NegativeTTL time.Duration
	// DegradedTTL replaces TTL while change notifications may be missed (the
	// subscription dropped and is being re-established). Such entries, like
	// negative ones, are never renewed. Default: 1s.
	DegradedTTL time.Duration
	// Size bounds the number of entries of each kind. Default: 100000.
	Size int
	// StaleIfError is how long past its expiry an entry may still answer
	// the *OrStale lookups when the store cannot be reached (routes that
	// fail open). Default: 10m.
	StaleIfError time.Duration
	// MaxLoads bounds the store reads of cache misses in flight at once
	// (coalesced: one per id); the others queue in the Resolver. A burst of
	// misses then waits in keygate's own queue, bounded by QueueTimeout,
	// instead of in the store client's connection pool, where the wait
	// would eat the store's per-call timeout (meant for the store's
	// answer). Keep it below the client's pool size (redisstore.NewClient:
	// 64 connections at least). Default: 48.
	MaxLoads int
	// QueueTimeout is keygate's own time for a load: how long it may wait
	// for one of the MaxLoads slots, that is for the loads ahead of it in a
	// burst. Once in its slot, a read that failed as unavailable while the
	// store went on answering other reads (busy, not down: under a burst
	// that saturates the machine a round trip can miss the store's per-call
	// timeout although the store answers) is tried again, up to three reads
	// in all, each with more time per round trip (WithCallTimeout). A store
	// that has not answered for QueueTimeout, or whose subscription reported
	// a gap since, fails a load at its first error, within the store's own
	// timeout. Default: 2s.
	QueueTimeout time.Duration
	// OnLookup, when set, is told of every lookup whether it was a hit
	// (for metrics). It must be cheap and safe for concurrent use.
	OnLookup func(hit bool)
}

func (o *CacheOptions) setDefaults() {
	if o.TTL <= 0 {
		o.TTL = 30 * time.Second
	}
	if o.NegativeTTL <= 0 {
		o.NegativeTTL = 2 * time.Second
	}
	if o.DegradedTTL <= 0 {
		o.DegradedTTL = time.Second
	}
	if o.DegradedTTL > o.TTL {
		o.DegradedTTL = o.TTL
	}
	if o.Size <= 0 {
		o.Size = 100_000
	}
	if o.StaleIfError <= 0 {
		o.StaleIfError = 10 * time.Minute
	}
	if o.MaxLoads <= 0 {
		o.MaxLoads = 48
	}
	if o.QueueTimeout <= 0 {
		o.QueueTimeout = 2 * time.Second
	}
}

// Principal is what the gateway needs to know about a user: the user and
// its permissions by tenant. Values handed out by a Resolver are shared and
// must be treated as read-only.
type Principal struct {
	User        User
	Permissions map[string]*Permission
	// IDValue and NameValue are User.ID and User.Name as interface values,
	// boxed once per cached principal so that setting request placeholders
	// costs no allocation per request.
	IDValue, NameValue any
	secrets            []OpenSecret
	secretsErr         error
	secretsOnce        sync.Once
}

// Permission returns the user's permission in tenant, or nil.
func (p *Principal) Permission(tenant string) *Permission { return p.Permissions[tenant] }

// OpenSecret is a live signing secret in clear, as issued (base64 string).
type OpenSecret struct {
	ID    string
	Value string
}

// Resolver reads keys, users and permissions through an in-process cache
// that change notifications keep current (see Notifier). A warm lookup does
// no store round trip and no allocation.
//
// A positive entry loaded while the subscription is live is fresh for TTL
// after its load, or for TTL after the latest confirmation (Listener.Confirm)
// if that is later: a confirmation at t proves that no invalidation before t
// was missed, so every such entry was still current at t. Renewal is one
// atomic store, with no work per entry. A gap in the subscription, or Flush,
// forgets the confirmation and makes every entry stale, so nothing loaded
// before a gap is renewed. Negative entries and entries loaded while
// degraded keep their short TTLs.
type Resolver struct {
	store  Store
	opts   CacheOptions
	opener func(Secret) (string, error)

	keys    *ttlCache[*Key]
	users   *ttlCache[*Principal]
	tenants *ttlCache[*Tenant]

	// seq counts invalidations and flushes; a fill that raced with one is
	// not cached.
	seq atomic.Uint64
	// degraded is set while notifications may be missed.
	degraded atomic.Bool
	// epoch moves on with Flush; entries of older epochs are stale. A fill
	// carries the epoch its load started in, so a load that straddles a
	// Flush never yields a fresh entry.
	epoch atomic.Uint64
	// confirmedAt is the latest confirmation of the current epoch (unix
	// nanoseconds), 0 when there was none since the last Flush.
	confirmedAt atomic.Int64

	// flushMu serializes Flush and guards retired.
	flushMu sync.Mutex
	// retired remembers how far confirmations renewed the entries of recent
	// epochs (indexed by epoch modulo its length), so that the *OrStale
	// lookups measure staleness from when an entry was last proven current,
	// not from its load.
	retired [8]retiredEpoch

	hits, misses atomic.Uint64
	// loads holds a token per store read of a miss in flight (MaxLoads).
	loads chan struct{}
	// answeredAt is when the store last answered (a read got a record or
	// ErrNotFound, or the subscription confirmed delivery), unix
	// nanoseconds; 0 after a gap in the subscription. An answer within
	// QueueTimeout before a read failed is the evidence that the store is
	// busy, not down (see CacheOptions.QueueTimeout).
	answeredAt atomic.Int64
	// busyRetries counts reads tried again because of it.
	busyRetries atomic.Uint64

	foreignState // imported keys by hash (foreign.go)
}

// retiredEpoch is the renewal horizon of a past epoch.
type retiredEpoch struct {
	epoch uint64
	until int64 // unix nanoseconds; 0: never confirmed
}

func (r *Resolver) count(hit bool) {
	if hit {
		r.hits.Add(1)
	} else {
		r.misses.Add(1)
	}
	if r.opts.OnLookup != nil {
		r.opts.OnLookup(hit)
	}
}

// NewResolver returns a Resolver over store. opener decrypts a stored
// secret (nil: signing secrets are unavailable).
func NewResolver(store Store, opts CacheOptions, opener func(Secret) (string, error)) *Resolver {
	opts.setDefaults()
	r := &Resolver{
		store:   store,
		opts:    opts,
		opener:  opener,
		keys:    newTTLCache[*Key](opts.Size),
		users:   newTTLCache[*Principal](opts.Size),
		tenants: newTTLCache[*Tenant](opts.Size),
		loads:   make(chan struct{}, opts.MaxLoads),
	}
	r.hashes = newHashCache(opts.Size)
	// Until Run has a live subscription, changes may go unnoticed: use the
	// short TTL.
	_, notifies := store.(Notifier)
	r.degraded.Store(notifies)
	return r
}

// BusyRetries returns how many store reads were tried again so far because
// the store was busy but answering (see CacheOptions.QueueTimeout).
func (r *Resolver) BusyRetries() uint64 { return r.busyRetries.Load() }

// Stats returns the number of cache hits and misses so far.
func (r *Resolver) Stats() (hits, misses uint64) { return r.hits.Load(), r.misses.Load() }

// renewedUntil returns until when the latest confirmation keeps renewable
// entries of the current epoch fresh (unix nanoseconds; 0: no confirmation).
func (r *Resolver) renewedUntil() int64 {
	c := r.confirmedAt.Load()
	if c == 0 {
		return 0
	}
	return c + int64(r.opts.TTL)
}

// confirm records that no change committed before upTo was missed.
func (r *Resolver) confirm(upTo time.Time) {
	r.answered(time.Now().UnixNano()) // the store answers: evidence for readBusy
	if r.degraded.Load() {
		return // a confirmation cannot vouch across a gap
	}
	t := upTo.UnixNano()
	for {
		c := r.confirmedAt.Load()
		if t <= c || r.confirmedAt.CompareAndSwap(c, t) {
			return
		}
	}
}

// load is what a lookup notes before reading the store, for fill.
type load struct {
	seq      uint64
	epoch    uint64
	degraded bool
}

func (r *Resolver) startLoad() load {
	return load{seq: r.seq.Load(), epoch: r.epoch.Load(), degraded: r.degraded.Load()}
}

// staleUntil returns until when e was last known to be current: its
// expiry, or for a renewable entry the renewal of its epoch if later.
func staleUntil[V any](r *Resolver, e ttlEntry[V]) int64 {
	if !e.renew {
		return e.exp
	}
	var until int64
	if e.epoch == r.epoch.Load() {
		until = r.renewedUntil()
	} else {
		r.flushMu.Lock()
		if re := r.retired[e.epoch%uint64(len(r.retired))]; re.epoch == e.epoch {
			until = re.until
		}
		r.flushMu.Unlock()
	}
	return max(e.exp, until)
}

// Key returns the key with id; ErrNotFound (also cached, briefly) when none.
func (r *Resolver) Key(ctx context.Context, id string, now time.Time) (*Key, error) {
	return r.key(ctx, id, now, false)
}

// KeyOrStale is Key, except that when the store cannot be reached a stale
// cached key (see CacheOptions.StaleIfError) answers instead of the error.
func (r *Resolver) KeyOrStale(ctx context.Context, id string, now time.Time) (*Key, error) {
	return r.key(ctx, id, now, true)
}

func (r *Resolver) key(ctx context.Context, id string, now time.Time, allowStale bool) (*Key, error) {
	// The confirmation is read before the epoch (arguments are evaluated in
	// order): one from after a gap then never meets an entry from before it.
	if k, ok := r.keys.get(id, now.UnixNano(), r.renewedUntil(), r.epoch.Load()); ok {
		r.count(true)
		if k == nil {
			return nil, ErrNotFound
		}
		return k, nil
	}
	r.count(false)
	return resolveMiss(ctx, r, r.keys, id, now, allowStale, readKey)
}

// readKey reads the key with id from the store (nil when there is none).
func readKey(ctx context.Context, r *Resolver, id string) (*Key, error) {
	k, err := r.store.GetKey(ctx, id)
	if err != nil {
		return nil, err
	}
	return &k, nil
}

// Tenant returns the tenant with id; ErrNotFound (also cached, briefly)
// when none.
func (r *Resolver) Tenant(ctx context.Context, id string, now time.Time) (*Tenant, error) {
	return r.tenant(ctx, id, now, false)
}

// TenantOrStale is Tenant with KeyOrStale's fallback.
func (r *Resolver) TenantOrStale(ctx context.Context, id string, now time.Time) (*Tenant, error) {
	return r.tenant(ctx, id, now, true)
}

func (r *Resolver) tenant(ctx context.Context, id string, now time.Time, allowStale bool) (*Tenant, error) {
	if t, ok := r.tenants.get(id, now.UnixNano(), r.renewedUntil(), r.epoch.Load()); ok {
		r.count(true)
		if t == nil {
			return nil, ErrNotFound
		}
		return t, nil
	}
	r.count(false)
	return resolveMiss(ctx, r, r.tenants, id, now, allowStale, readTenant)
}

// readTenant reads the tenant with id from the store.
func readTenant(ctx context.Context, r *Resolver, id string) (*Tenant, error) {
	t, err := r.store.GetTenant(ctx, id)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// Principal returns the user with id and its permissions.
func (r *Resolver) Principal(ctx context.Context, id string, now time.Time) (*Principal, error) {
	return r.principal(ctx, id, now, false)
}

// PrincipalOrStale is Principal with KeyOrStale's fallback.
func (r *Resolver) PrincipalOrStale(ctx context.Context, id string, now time.Time) (*Principal, error) {
	return r.principal(ctx, id, now, true)
}

func (r *Resolver) principal(ctx context.Context, id string, now time.Time, allowStale bool) (*Principal, error) {
	if p, ok := r.users.get(id, now.UnixNano(), r.renewedUntil(), r.epoch.Load()); ok {
		r.count(true)
		if p == nil {
			return nil, ErrNotFound
		}
		return p, nil
	}
	r.count(false)
	return resolveMiss(ctx, r, r.users, id, now, allowStale, readPrincipal)
}

// readPrincipal reads the user with id and its permissions.
func readPrincipal(ctx context.Context, r *Resolver, id string) (*Principal, error) {
	return r.loadPrincipal(ctx, id)
}

// callTimeoutKey is the context key of WithCallTimeout.
type callTimeoutKey struct{}

// WithCallTimeout asks the store to give each round trip made with the
// returned context d instead of its own per-call timeout, when d is longer.
// The Resolver uses it to try a read again when the store is busy but
// answering; stores without a per-call timeout ignore it.
func WithCallTimeout(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, callTimeoutKey{}, d)
}

// CallTimeout returns the per-call timeout asked for with WithCallTimeout.
func CallTimeout(ctx context.Context) (time.Duration, bool) {
	d, ok := ctx.Value(callTimeoutKey{}).(time.Duration)
	return d, ok
}

// errStoreBusy is returned (wrapped in ErrUnavailable) by a load that found
// no free slot within QueueTimeout.
var errStoreBusy = errors.New("all load slots busy")

// readBusy reads id in one of the MaxLoads slots, waiting for one at most
// QueueTimeout, and reads it again (busyAttempts reads in all) when the
// read failed as unavailable but the store answered (another read, or the
// subscription's confirmation) within QueueTimeout before this read began,
// and the subscription has not lost it since: the store is busy, not down
// (see CacheOptions.QueueTimeout). The
// second read gives each round trip QueueTimeout/4, the third QueueTimeout/2
// (WithCallTimeout), so that a machine too loaded to see an answer within
// the store's own timeout still gets it. Against a store that answers
// nothing, a load fails after one round trip.
func readBusy[V any](ctx context.Context, r *Resolver, id string, read func(context.Context, *Resolver, string) (V, error)) (V, error) {
	select {
	case r.loads <- struct{}{}:
	default:
		t := time.NewTimer(r.opts.QueueTimeout)
		select {
		case r.loads <- struct{}{}:
			t.Stop()
		case <-t.C:
			var zero V
			return zero, fmt.Errorf("keys: waiting %v to read the store: %w: %w", r.opts.QueueTimeout, ErrUnavailable, errStoreBusy)
		}
	}
	defer func() { <-r.loads }()
	for attempt := 1; ; attempt++ {
		began := time.Now().UnixNano()
		rctx := ctx
		if attempt > 1 {
			// Busy, not down: give this read more time per round trip.
			rctx = WithCallTimeout(ctx, r.opts.QueueTimeout>>(busyAttempts-attempt+1))
		}
		v, err := read(rctx, r, id)
		if err == nil || errors.Is(err, ErrNotFound) {
			r.answered(time.Now().UnixNano())
			return v, err
		}
		if !errors.Is(err, ErrUnavailable) || r.answeredAt.Load() <= began-int64(r.opts.QueueTimeout) || attempt == busyAttempts {
			return v, err
		}
		r.busyRetries.Add(1)
	}
}

// busyAttempts bounds the reads of one load when the store is busy (see
// readBusy): a load holds its slot while it tries again.
const busyAttempts = 3

// answered records that a store read got an answer at t (unix nanoseconds).
func (r *Resolver) answered(t int64) {
	for {
		a := r.answeredAt.Load()
		if t <= a || r.answeredAt.CompareAndSwap(a, t) {
			return
		}
	}
}

// errLoadAborted is what the lookups waiting for a load get when the load
// ended without a result (it panicked).
var errLoadAborted = errors.New("keys: cache load aborted")

// resolveMiss answers a cache miss of id in c. Concurrent misses of one id are
// coalesced: the first starts the store read (the leader) and the others
// wait for its result, so a burst for an entry nobody has cached costs one
// read, however many requests wait for it.
//
// The read is not tied to the leader's cancellation (a client that goes
// away must not fail the requests waiting with it); every store call is
// still bounded by the store's own timeout, and each waiter stops waiting
// when its own ctx ends.
//
// Coalescing keeps the cache's guarantee about invalidations: Invalidate
// and Flush make later lookups start a load of their own instead of joining
// one that started before them (Invalidate forgets the load in flight under
// the shard lock, Flush moves the epoch that joining checks), so a lookup
// that begins after an invalidation returned never gets what was read
// before it. A load that raced with an invalidation is still handed to the
// lookups that were waiting for it (they began before the invalidation) but
// is not cached (see fill).
func resolveMiss[V comparable](ctx context.Context, r *Resolver, c *ttlCache[V], id string, now time.Time, allowStale bool,
	read func(context.Context, *Resolver, string) (V, error)) (V, error) {
	var zero V
	ld := r.startLoad()
	v, hit, f, leader := c.getOrJoin(id, now.UnixNano(), r.renewedUntil(), ld.epoch)
	// With a stale entry to stand on, a slow store does not hold the lookup.
	var orStale bool
	if allowStale && !hit {
		_, orStale = staleEntry(r, c, id, now)
	}
	switch {
	case hit:
		// Filled between the miss and the join.
		if v == zero {
			return zero, ErrNotFound
		}
		return v, nil
	case leader && orStale:
		// The load goes on in the background (runLoad does not depend on
		// ctx) and refreshes the entry if it succeeds.
		go runLoad(ctx, r, c, id, f, ld, now, read)
		return awaitOrStale(ctx, r, c, id, f, now)
	case leader:
		runLoad(ctx, r, c, id, f, ld, now, read)
	case orStale:
		return awaitOrStale(ctx, r, c, id, f, now)
	default:
		select {
		case <-f.done:
		case <-ctx.Done():
			return zero, fmt.Errorf("keys: waiting for the store: %w: %w", ErrUnavailable, ctx.Err())
		}
	}
	if f.err != nil && !errors.Is(f.err, ErrNotFound) && allowStale {
		if stale, ok := staleEntry(r, c, id, now); ok {
			return stale, nil
		}
	}
	return f.v, f.err
}

// runLoad reads id for the flight f that this lookup leads, caches the
// result as fill allows, and hands it to every lookup waiting on f.
// staleWait is how long a lookup that may use a stale entry (a fail_open
// route) waits for the store before it does: a healthy store answers well
// within it, and a slow or paused one cannot hold the request for the whole
// load budget (QueueTimeout and its retries), once per lookup.
const staleWait = 100 * time.Millisecond

// awaitOrStale waits up to staleWait for the load f of id and returns what
// it read, or else id's stale entry (which the caller found).
func awaitOrStale[V comparable](ctx context.Context, r *Resolver, c *ttlCache[V], id string, f *flight[V], now time.Time) (V, error) {
	t := time.NewTimer(staleWait)
	defer t.Stop()
	select {
	case <-f.done:
		if f.err == nil || errors.Is(f.err, ErrNotFound) {
			return f.v, f.err // read, or gone for good (runLoad leaves f.v zero)
		}
	case <-t.C:
	case <-ctx.Done():
	}
	if stale, ok := staleEntry(r, c, id, now); ok {
		return stale, nil
	}
	// Invalidated meanwhile: nothing stale to stand on.
	var zero V
	return zero, fmt.Errorf("keys: waiting for the store: %w", ErrUnavailable)
}

func runLoad[V comparable](ctx context.Context, r *Resolver, c *ttlCache[V], id string, f *flight[V], ld load, now time.Time,
	read func(context.Context, *Resolver, string) (V, error)) {
	landed := false
	defer func() {
		if !landed { // read panicked: release the waiters, then let it go on
			f.err = errLoadAborted
			c.land(id, f)
			close(f.done)
		}
	}()
	v, err := readBusy(context.WithoutCancel(ctx), r, id, read)
	switch {
	case err == nil:
		fill(r, c, id, v, ld, now, true)
	case errors.Is(err, ErrNotFound):
		var zero V
		v, err = zero, ErrNotFound
		fill(r, c, id, zero, ld, now, false)
	}
	f.v, f.err = v, err
	landed = true
	c.land(id, f)
	close(f.done)
}

func (r *Resolver) loadPrincipal(ctx context.Context, id string) (*Principal, error) {
	u, err := r.store.GetUser(ctx, id)
	if err != nil {
		return nil, err
	}
	perms, err := r.store.UserPermissions(ctx, id)
	if err != nil {
		return nil, err
	}
	p := &Principal{User: u, Permissions: make(map[string]*Permission, len(perms)), IDValue: u.ID, NameValue: u.Name}
	for i := range perms {
		p.Permissions[perms[i].TenantID] = &perms[i]
	}
	return p, nil
}

// Secrets returns the user's ACTIVE signing secrets in clear. They are
// loaded once per cached Principal.
func (r *Resolver) Secrets(ctx context.Context, p *Principal) ([]OpenSecret, error) {
	p.secretsOnce.Do(func() {
		if r.opener == nil {
			p.secretsErr = errors.New("signing secrets need a master key")
			return
		}
		list, err := r.store.ListSecrets(ctx, p.User.ID)
		if err != nil {
			p.secretsErr = err
			return
		}
		for _, s := range list {
			if s.Status != SecretActive {
				continue
			}
			v, err := r.opener(s)
			if err != nil {
				p.secretsErr = err
				return
			}
			p.secrets = append(p.secrets, OpenSecret{ID: s.ID, Value: v})
		}
	})
	if p.secretsErr != nil {
		// A failed load must not stick to the cached principal.
		r.users.delete(p.User.ID)
		return nil, p.secretsErr
	}
	return p.secrets, nil
}

// fill caches v under id unless an invalidation raced with its load. Only a
// positive entry loaded while the subscription was live may be renewed by
// confirmations.
func fill[V any](r *Resolver, c *ttlCache[V], id string, v V, ld load, now time.Time, found bool) {
	ttl, renew := r.opts.TTL, true
	switch {
	case !found:
		ttl, renew = r.opts.NegativeTTL, false
	case ld.degraded:
		ttl, renew = r.opts.DegradedTTL, false
	}
	e := ttlEntry[V]{v: v, exp: now.Add(ttl).UnixNano(), epoch: ld.epoch, renew: renew}
	c.setUnless(id, e, &r.seq, ld.seq, r.renewedUntil())
}

// staleEntry returns a cached non-nil entry that is at most StaleIfError
// past the time it was last known to be current.
func staleEntry[V comparable](r *Resolver, c *ttlCache[V], id string, now time.Time) (V, bool) {
	var zero V
	e, ok := c.peek(id)
	if !ok || e.v == zero || now.UnixNano() >= staleUntil(r, e)+int64(r.opts.StaleIfError) {
		return zero, false
	}
	return e.v, true
}

// Invalidate drops what inv names, confirmed or not.
func (r *Resolver) Invalidate(inv Invalidation) {
	// seq moves before the delete, and fill checks it under the shard lock:
	// a load that raced with this invalidation cannot put back what it read.
	r.seq.Add(1)
	if inv.KeyID != "" {
		r.keys.delete(inv.KeyID)
		r.hashes.invalidate(inv.KeyID)
		r.pending.Store(nil) // an import or re-hash may change the pending schemes
	}
	if inv.UserID != "" {
		r.users.delete(inv.UserID)
	}
	if inv.TenantID != "" {
		r.tenants.delete(inv.TenantID)
	}
}

// Flush makes every entry stale and forgets the latest confirmation:
// lookups go to the store again, and only the *OrStale lookups may still use
// an entry when the store cannot answer.
func (r *Resolver) Flush() {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	ep := r.epoch.Load()
	until := r.renewedUntil()
	r.confirmedAt.Store(0)
	r.retired[ep%uint64(len(r.retired))] = retiredEpoch{epoch: ep, until: until}
	r.seq.Add(1)
	r.epoch.Add(1)
	r.hashes.flush()
	r.pending.Store(nil)
}

// Run keeps the cache current from the store's change notifications until
// ctx ends, and renews entries with the store's confirmations (see
// Resolver). Stores that are not Notifiers rely on the TTLs alone. While
// notifications may be missed (the subscription dropped and the store is
// re-establishing it, or subscribing failed) the cache is flushed and short
// TTLs apply; Run retries a failed subscription by itself.
func (r *Resolver) Run(ctx context.Context, onError func(error)) {
	n, ok := r.store.(Notifier)
	if !ok {
		return
	}
	backoff := 100 * time.Millisecond
	l := Listener{
		Change: r.Invalidate,
		Gap: func(live bool) {
			if !live {
				// The subscription lost Redis: no more patience with reads
				// that fail (see readBusy) until it answers again.
				r.answeredAt.Store(0)
			}
			r.degraded.Store(!live)
			r.Flush()
		},
		Confirm: r.confirm,
	}
	for {
		err := n.Subscribe(ctx, l)
		if err == nil {
			// Subscribed: what was cached before may have missed changes;
			// from now on the store delivers (and reconnects) until ctx ends.
			r.Flush()
			r.degraded.Store(false)
			<-ctx.Done()
			return
		}
		if ctx.Err() != nil {
			return
		}
		r.degraded.Store(true)
		r.Flush()
		if onError != nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// ttlCache is a bounded, sharded map of expiring entries. What is fresh is
// decided with the Resolver's epoch and renewal, passed in.
type ttlCache[V any] struct {
	seed   maphash.Seed
	shards [64]ttlShard[V]
	per    int
}

type ttlShard[V any] struct {
	mu sync.RWMutex
	m  map[string]ttlEntry[V]
	// loads are the store reads in flight, by id (see resolveMiss).
	loads map[string]*flight[V]
}

// flight is one store read in flight that lookups of the same id wait for.
// v and err are written once by the leader before done is closed.
type flight[V any] struct {
	done  chan struct{}
	epoch uint64 // the epoch the read started in
	// waiters counts the lookups that joined (under the shard lock).
	waiters int
	v       V
	err     error
}

type ttlEntry[V any] struct {
	v     V
	exp   int64 // unix nanoseconds
	epoch uint64
	// renew: a confirmation keeps the entry fresh past exp (a positive
	// entry loaded while the subscription was live).
	renew bool
}

// freshUntil returns the entry's expiry, extended to renewedUntil when the
// entry is renewable.
func (e *ttlEntry[V]) freshUntil(renewedUntil int64) int64 {
	if e.renew {
		return max(e.exp, renewedUntil)
	}
	return e.exp
}

func newTTLCache[V any](size int) *ttlCache[V] {
	c := &ttlCache[V]{seed: maphash.MakeSeed(), per: size/64 + 1}
	for i := range c.shards {
		c.shards[i].m = make(map[string]ttlEntry[V])
		c.shards[i].loads = make(map[string]*flight[V])
	}
	return c
}

func (c *ttlCache[V]) shard(k string) *ttlShard[V] {
	return &c.shards[maphash.String(c.seed, k)%uint64(len(c.shards))]
}

// get returns the entry of k if it belongs to epoch and is fresh at now:
// before its expiry or, when renewable, before renewedUntil.
func (c *ttlCache[V]) get(k string, now, renewedUntil int64, epoch uint64) (V, bool) {
	s := c.shard(k)
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	if !ok || e.epoch != epoch || now >= e.freshUntil(renewedUntil) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// getOrJoin is get, done again under the shard lock after a miss: when k is
// still missing (or not fresh) it joins the load of k in flight in epoch, or
// registers a new one that the caller then leads. Loads of an older epoch
// are not joined: a Flush came after they started.
func (c *ttlCache[V]) getOrJoin(k string, now, renewedUntil int64, epoch uint64) (v V, hit bool, f *flight[V], leader bool) {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[k]; ok && e.epoch == epoch && now < e.freshUntil(renewedUntil) {
		return e.v, true, nil, false
	}
	if f, ok := s.loads[k]; ok && f.epoch == epoch {
		f.waiters++
		return v, false, f, false
	}
	f = &flight[V]{done: make(chan struct{}), epoch: epoch}
	s.loads[k] = f
	return v, false, f, true
}

// land removes the load f of k from the loads in flight, unless an
// invalidation already did (and a newer load may have taken its place).
func (c *ttlCache[V]) land(k string, f *flight[V]) {
	s := c.shard(k)
	s.mu.Lock()
	if s.loads[k] == f {
		delete(s.loads, k)
	}
	s.mu.Unlock()
}

// peek returns the entry of k, fresh or not.
func (c *ttlCache[V]) peek(k string) (ttlEntry[V], bool) {
	s := c.shard(k)
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	return e, ok
}

// setUnless stores e under k unless *seq moved on from want. The check is
// made under the shard lock, which Invalidate's delete also takes after
// moving seq: an invalidation that raced with e's load either stops the
// store or deletes e after it. renewedUntil tells which entries are expired
// when the shard is full.
func (c *ttlCache[V]) setUnless(k string, e ttlEntry[V], seq *atomic.Uint64, want uint64, renewedUntil int64) {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq.Load() != want {
		return // an invalidation came in while loading: what was read may be stale
	}
	if _, ok := s.m[k]; !ok && len(s.m) >= c.per {
		// Evict expired entries first, then an arbitrary one.
		now := time.Now().UnixNano()
		for key, old := range s.m {
			if old.freshUntil(renewedUntil) <= now {
				delete(s.m, key)
			}
		}
		for key := range s.m {
			if len(s.m) < c.per {
				break
			}
			delete(s.m, key)
		}
	}
	s.m[k] = e
}

// delete drops the entry of k and forgets the load of k in flight, so that
// later lookups read the store again instead of waiting for that load.
func (c *ttlCache[V]) delete(k string) {
	s := c.shard(k)
	s.mu.Lock()
	delete(s.m, k)
	delete(s.loads, k)
	s.mu.Unlock()
}

// UsageRecorder batches credential uses and writes them with
// Store.TouchLastUsed at most once per interval, off the request path.
//
// Recording takes no lock: each credential of a user, and each user in a
// tenant, has an entry in a usageMap (read without a lock) holding the latest
// pending time in an atomic, so a use already seen in this interval is a map
// read and a compare-and-swap, with no map write and no allocation. Flush
// takes the pending times; an entry with none for a whole interval is retired
// and dropped, so memory is bounded by what was used in the last two
// intervals.
type UsageRecorder struct {
	store    Store
	interval time.Duration

	keys    *usageMap[userKey, usageEntry] // user and key id
	secrets *usageMap[userKey, usageEntry] // user and secret id
	logins  *usageMap[userKey, usageEntry] // user and tenant
}

// userKey names a credential of a user, or a user in a tenant.
type userKey struct{ user, id string }

// The states of a usageEntry besides a pending time.
const (
	// usageIdle: nothing pending since the last flush.
	usageIdle = math.MinInt64
	// usageRetired: dropped from its map by a flush; a use finding the entry
	// retired records in a new one.
	usageRetired = math.MinInt64 + 1
)

// usageEntry holds the latest pending use of a credential or login, as Unix
// nanoseconds, or usageIdle or usageRetired. Only a flush moves it down
// (to usageIdle when it takes the time, from usageIdle to usageRetired), and
// usageRetired is final.
type usageEntry struct{ at atomic.Int64 }

// raise moves the pending time up to at; false if the entry is retired.
func (e *usageEntry) raise(at int64) bool {
	for {
		cur := e.at.Load()
		switch {
		case cur == usageRetired:
			return false
		case cur >= at:
			return true
		case e.at.CompareAndSwap(cur, at):
			return true
		}
	}
}

// take returns the pending time, if any, and leaves the entry idle. An entry
// that was already idle (unused for a whole interval) is retired: a use
// racing with that finds it retired and records in a new entry.
func (e *usageEntry) take() (at time.Time, ok, retired bool) {
	for {
		switch cur := e.at.Load(); cur {
		case usageRetired:
			return time.Time{}, false, true
		case usageIdle:
			if e.at.CompareAndSwap(usageIdle, usageRetired) {
				return time.Time{}, false, true
			}
		default:
			if e.at.CompareAndSwap(cur, usageIdle) {
				return time.Unix(0, cur).UTC(), true, false
			}
		}
	}
}

// recordUse raises the pending time of k in s to at (Unix nanoseconds),
// adding an entry the first time k is used in an interval.
func recordUse[K comparable](s *usageShard[K, usageEntry], k K, at int64) {
	at = max(at, usageRetired+1) // times before 1678 are not kept exactly
	e := s.load(k)
	for {
		if e != nil && e.raise(at) {
			return
		}
		// First use in this interval, or e was retired by a flush.
		fresh := new(usageEntry)
		fresh.at.Store(at)
		if s.compareAndSwap(k, e, fresh) {
			return
		}
		e = s.lookup(k)
	}
}

// NewUsageRecorder returns a recorder flushing every interval (default 1m).
func NewUsageRecorder(store Store, interval time.Duration) *UsageRecorder {
	if interval <= 0 {
		interval = time.Minute
	}
	return &UsageRecorder{
		store: store, interval: interval,
		keys:    newUsageMap[userKey, usageEntry](),
		secrets: newUsageMap[userKey, usageEntry](),
		logins:  newUsageMap[userKey, usageEntry](),
	}
}

// RecordLogin notes that the user authenticated in tenant at (the
// permission's lastLogin); only the latest per user and tenant is kept.
func (u *UsageRecorder) RecordLogin(userID, tenant string, at time.Time) {
	recordUse(u.logins.shard(userID), userKey{userID, tenant}, at.UnixNano())
}

// Record notes a use of the user's key keyID or secret secretID (the other
// empty); only the latest per credential is kept.
func (u *UsageRecorder) Record(userID, keyID, secretID string, at time.Time) {
	if keyID != "" || secretID == "" {
		recordUse(u.keys.shard(userID), userKey{userID, keyID}, at.UnixNano())
	}
	if secretID != "" {
		recordUse(u.secrets.shard(userID), userKey{userID, secretID}, at.UnixNano())
	}
}

// Flush writes what is pending (times in UTC) and drops the entries unused
// since the last flush. A use racing with Flush is written by this flush or
// the next one. Concurrent flushes split what is pending between them.
func (u *UsageRecorder) Flush(ctx context.Context) error {
	var batch []Usage
	take := func(m *usageMap[userKey, usageEntry], usage func(userKey, time.Time) Usage) {
		for i := range m.shards {
			m.shards[i].each(func(k userKey, e *usageEntry) bool {
				at, ok, retired := e.take()
				if ok {
					batch = append(batch, usage(k, at))
				}
				return retired
			})
		}
	}
	take(u.keys, func(k userKey, at time.Time) Usage { return Usage{UserID: k.user, KeyID: k.id, At: at} })
	take(u.secrets, func(k userKey, at time.Time) Usage { return Usage{UserID: k.user, SecretID: k.id, At: at} })
	take(u.logins, func(k userKey, at time.Time) Usage { return Usage{UserID: k.user, Tenant: k.id, At: at} })
	if len(batch) == 0 {
		return nil
	}
	return u.store.TouchLastUsed(ctx, batch)
}

// Run flushes every interval until ctx ends, then once more.
func (u *UsageRecorder) Run(ctx context.Context, onError func(error)) {
	t := time.NewTicker(u.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := u.Flush(fctx); err != nil && onError != nil {
				onError(err)
			}
			cancel()
			return
		case <-t.C:
			fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := u.Flush(fctx); err != nil && onError != nil {
				onError(err)
			}
			cancel()
		}
	}
}
