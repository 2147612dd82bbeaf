package keys

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// flakyStore serves one key and one user, or fails as unavailable.
type flakyStore struct {
	Store // nil: only the methods below are called
	down  atomic.Bool
	reads atomic.Int64
	// duringRead, when set, runs inside the next GetKey, as if it happened
	// while the store was being read.
	duringRead func()
}

func (s *flakyStore) GetKey(_ context.Context, id string) (Key, error) {
	s.reads.Add(1)
	if f := s.duringRead; f != nil {
		s.duringRead = nil
		f()
	}
	if s.down.Load() {
		return Key{}, fmt.Errorf("get key: %w", ErrUnavailable)
	}
	if id != "k1" {
		return Key{}, ErrNotFound
	}
	return Key{ID: "k1", UserID: "u1", Status: KeyActive}, nil
}

func (s *flakyStore) GetUser(_ context.Context, id string) (User, error) {
	s.reads.Add(1)
	if s.down.Load() {
		return User{}, fmt.Errorf("get user: %w", ErrUnavailable)
	}
	return User{ID: id, Name: "svc", Status: UserActive}, nil
}

func (s *flakyStore) UserPermissions(context.Context, string) ([]Permission, error) {
	return []Permission{{TenantID: "acme", Role: RoleMember, Status: PermissionActive}}, nil
}

func TestResolverCachesAndInvalidates(t *testing.T) {
	st := &flakyStore{}
	r := NewResolver(st, CacheOptions{TTL: time.Minute, NegativeTTL: time.Second}, nil)
	now := time.Now()
	for i := 0; i < 3; i++ {
		if k, err := r.Key(context.Background(), "k1", now); err != nil || k.ID != "k1" {
			t.Fatalf("Key: %v %v", k, err)
		}
	}
	if n := st.reads.Load(); n != 1 {
		t.Fatalf("store reads = %d, want 1 (cached)", n)
	}
	r.Invalidate(Invalidation{KeyID: "k1"})
	if _, err := r.Key(context.Background(), "k1", now); err != nil || st.reads.Load() != 2 {
		t.Fatalf("after invalidation: err %v, reads %d", err, st.reads.Load())
	}
	// Negative entries expire after NegativeTTL.
	if _, err := r.Key(context.Background(), "nope", now); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	reads := st.reads.Load()
	r.Key(context.Background(), "nope", now.Add(500*time.Millisecond))
	if st.reads.Load() != reads {
		t.Fatal("negative entry not cached")
	}
	r.Key(context.Background(), "nope", now.Add(1500*time.Millisecond))
	if st.reads.Load() != reads+1 {
		t.Fatal("negative entry outlived NegativeTTL")
	}
	// A positive entry expires after TTL.
	r.Key(context.Background(), "k1", now.Add(2*time.Minute))
	if st.reads.Load() != reads+2 {
		t.Fatal("positive entry outlived TTL")
	}
}

func TestResolverStaleIfError(t *testing.T) {
	st := &flakyStore{}
	r := NewResolver(st, CacheOptions{TTL: time.Minute, StaleIfError: 5 * time.Minute}, nil)
	ctx := context.Background()
	now := time.Now()
	if _, err := r.Key(ctx, "k1", now); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Principal(ctx, "u1", now); err != nil {
		t.Fatal(err)
	}
	// The subscription dropped: entries turn stale and the store is down.
	r.Flush()
	st.down.Store(true)
	if _, err := r.Key(ctx, "k1", now); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Key with the store down: %v, want ErrUnavailable", err)
	}
	if k, err := r.KeyOrStale(ctx, "k1", now); err != nil || k.ID != "k1" {
		t.Fatalf("KeyOrStale: %v %v", k, err)
	}
	if p, err := r.PrincipalOrStale(ctx, "u1", now); err != nil || p.User.ID != "u1" {
		t.Fatalf("PrincipalOrStale: %v %v", p, err)
	}
	// Too old, or never seen, is still an error.
	if _, err := r.KeyOrStale(ctx, "k1", now.Add(7*time.Minute)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("stale beyond StaleIfError: %v", err)
	}
	if _, err := r.KeyOrStale(ctx, "k2", now); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("unseen key: %v", err)
	}
	// An invalidated entry is gone for good, not stale.
	r.Invalidate(Invalidation{KeyID: "k1"})
	if _, err := r.KeyOrStale(ctx, "k1", now); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("invalidated key: %v", err)
	}
	// Back up: fresh reads again.
	st.down.Store(false)
	if _, err := r.Key(ctx, "k1", now); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkResolverKeyHit(b *testing.B) {
	r := NewResolver(&flakyStore{}, CacheOptions{}, nil)
	now := time.Now()
	r.Key(context.Background(), "k1", now)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Key(context.Background(), "k1", now); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// notifyingFlaky is a flakyStore that is a Notifier the test drives: it
// hands the Listener of every Subscribe to the test.
type notifyingFlaky struct {
	flakyStore
	listeners chan Listener
}

func newNotifyingFlaky() *notifyingFlaky {
	return &notifyingFlaky{listeners: make(chan Listener, 1)}
}

func (s *notifyingFlaky) Subscribe(_ context.Context, l Listener) error {
	s.listeners <- l
	return nil
}

func TestResolverDegradedUntilSubscribed(t *testing.T) {
	st := newNotifyingFlaky()
	r := NewResolver(st, CacheOptions{TTL: time.Minute, DegradedTTL: time.Second}, nil)
	ctx := context.Background()
	now := time.Now()
	expiresWithin := func(d time.Duration) bool {
		before := st.reads.Load()
		r.Key(ctx, "k1", now.Add(d))
		return st.reads.Load() != before
	}
	// Before Run subscribes: short TTL.
	r.Key(ctx, "k1", now)
	if !expiresWithin(2 * time.Second) {
		t.Fatal("entry loaded before the subscription kept the long TTL")
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go r.Run(runCtx, nil)
	gap := (<-st.listeners).Gap
	deadline := time.Now().Add(5 * time.Second)
	for r.degraded.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	now = now.Add(10 * time.Second)
	r.Key(ctx, "k1", now)
	if expiresWithin(30 * time.Second) {
		t.Fatal("live subscription: entry should keep the long TTL")
	}
	// The connection drops: short TTL until it is back.
	gap(false)
	now = now.Add(time.Minute)
	r.Key(ctx, "k1", now)
	if !expiresWithin(2 * time.Second) {
		t.Fatal("while disconnected entries must use the degraded TTL")
	}
	gap(true)
	now = now.Add(time.Minute)
	r.Key(ctx, "k1", now)
	if expiresWithin(30 * time.Second) {
		t.Fatal("after the subscription is back the long TTL applies again")
	}
}

// liveResolver returns a Resolver over a store the test drives, once Run's
// subscription is live, and the Listener Run subscribed with.
func liveResolver(t *testing.T, opts CacheOptions) (*Resolver, *notifyingFlaky, Listener) {
	t.Helper()
	st := newNotifyingFlaky()
	r := NewResolver(st, opts, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx, nil)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	l := <-st.listeners
	deadline := time.Now().Add(5 * time.Second)
	for r.degraded.Load() {
		if time.Now().After(deadline) {
			t.Fatal("Run did not go live after subscribing")
		}
		time.Sleep(time.Millisecond)
	}
	return r, st, l
}

// lookups are a Resolver's lookups at offsets from t0, each telling
// whether it read the store (a miss).
type lookups struct {
	r  *Resolver
	st *notifyingFlaky
	t0 time.Time
}

func (c lookups) reads(f func()) bool {
	before := c.st.reads.Load()
	f()
	return c.st.reads.Load() != before
}

func (c lookups) key(id string, at time.Duration) bool {
	return c.reads(func() { c.r.Key(context.Background(), id, c.t0.Add(at)) })
}

func (c lookups) principal(id string, at time.Duration) bool {
	return c.reads(func() { c.r.Principal(context.Background(), id, c.t0.Add(at)) })
}

func TestResolverConfirmationRenews(t *testing.T) {
	r, st, l := liveResolver(t, CacheOptions{TTL: time.Minute})
	c := lookups{r: r, st: st, t0: time.Now()}
	c.key("k1", 0)
	c.principal("u1", 0)
	// Proof that nothing was missed up to t0+50s: both entries were
	// current then, and are trusted for another TTL.
	l.Confirm(c.t0.Add(50 * time.Second))
	if c.key("k1", 90*time.Second) {
		t.Error("key older than TTL missed after a confirmation newer than its load")
	}
	if c.principal("u1", 90*time.Second) {
		t.Error("principal older than TTL missed after a confirmation newer than its load")
	}
	if !c.key("k1", 111*time.Second) {
		t.Error("key outlived the confirmation by more than TTL")
	}
	if !c.principal("u1", 111*time.Second) {
		t.Error("principal outlived the confirmation by more than TTL")
	}
}

func TestResolverExpiresWithoutConfirmation(t *testing.T) {
	r, st, l := liveResolver(t, CacheOptions{TTL: time.Minute})
	c := lookups{r: r, st: st, t0: time.Now()}
	c.key("k1", 0)
	if c.key("k1", 59*time.Second) {
		t.Fatal("entry missed within TTL")
	}
	// A confirmation older than the load proves nothing about later.
	l.Confirm(c.t0.Add(-10 * time.Second))
	if !c.key("k1", 61*time.Second) {
		t.Error("entry outlived TTL with no confirmation since its load")
	}
}

func TestResolverGapForgetsConfirmation(t *testing.T) {
	r, st, l := liveResolver(t, CacheOptions{TTL: time.Minute})
	c := lookups{r: r, st: st, t0: time.Now()}
	c.key("k1", 0)
	l.Confirm(c.t0.Add(10 * time.Minute))
	if c.key("k1", 5*time.Minute) {
		t.Fatal("confirmed entry missed")
	}
	l.Gap(false)
	l.Gap(true)
	if !c.key("k1", 5*time.Minute) {
		t.Fatal("entry survived a gap")
	}
	// The confirmation from before the gap does not renew what is loaded
	// after it either: only TTL applies.
	if !c.key("k1", 6*time.Minute+time.Second) {
		t.Error("a confirmation from before a gap renewed an entry")
	}
	// A confirmation after the gap renews again.
	l.Confirm(c.t0.Add(7 * time.Minute))
	if c.key("k1", 7*time.Minute+30*time.Second) {
		t.Error("a confirmation after the gap did not renew")
	}
}

func TestResolverNegativeAndDegradedNotRenewed(t *testing.T) {
	r, st, l := liveResolver(t, CacheOptions{TTL: time.Minute, NegativeTTL: time.Second, DegradedTTL: time.Second})
	c := lookups{r: r, st: st, t0: time.Now()}
	c.key("nope", 0)
	l.Confirm(c.t0.Add(30 * time.Second))
	if !c.key("nope", 1500*time.Millisecond) {
		t.Error("a confirmation renewed a negative entry")
	}

	// Loaded while the subscription is down: a confirmation then vouches
	// for nothing, and even a recorded one would not renew the entry.
	l.Gap(false)
	c.key("k1", 0)
	l.Confirm(c.t0.Add(30 * time.Second))
	if !c.key("k1", 1500*time.Millisecond) {
		t.Error("a confirmation while degraded renewed an entry")
	}
	r.confirmedAt.Store(c.t0.Add(30 * time.Second).UnixNano())
	if !c.key("k1", 3*time.Second) {
		t.Error("an entry loaded while degraded was renewed")
	}
}

func TestResolverInvalidateDropsConfirmed(t *testing.T) {
	r, st, l := liveResolver(t, CacheOptions{TTL: time.Minute})
	c := lookups{r: r, st: st, t0: time.Now()}
	c.key("k1", 0)
	c.principal("u1", 0)
	l.Confirm(c.t0.Add(time.Second))
	l.Change(Invalidation{UserID: "u1", KeyID: "k1"})
	if !c.key("k1", 2*time.Second) {
		t.Error("Invalidate left a confirmed key")
	}
	if !c.principal("u1", 2*time.Second) {
		t.Error("Invalidate left a confirmed principal")
	}
}

// TestResolverRaceWithLoad: what was read while an invalidation or a gap
// came in is not cached, so no confirmation can renew it.
func TestResolverRaceWithLoad(t *testing.T) {
	r, st, l := liveResolver(t, CacheOptions{TTL: time.Minute})
	c := lookups{r: r, st: st, t0: time.Now()}
	st.duringRead = func() { l.Change(Invalidation{KeyID: "k1"}) }
	c.key("k1", 0)
	if !c.key("k1", time.Second) {
		t.Error("a load that raced with an invalidation was cached")
	}
	l.Change(Invalidation{KeyID: "k1"}) // drop what the check above loaded
	st.duringRead = func() {
		l.Gap(false)
		l.Gap(true)
	}
	c.key("k1", 2*time.Second)
	l.Confirm(c.t0.Add(3 * time.Second))
	if !c.key("k1", 4*time.Second) {
		t.Error("a load that raced with a gap was cached")
	}
}

// TestResolverStaleAfterRenewal: a renewed entry answers the *OrStale
// lookups for StaleIfError after its last confirmation, not after its load.
func TestResolverStaleAfterRenewal(t *testing.T) {
	r, st, l := liveResolver(t, CacheOptions{TTL: time.Minute, StaleIfError: 5 * time.Minute})
	ctx := context.Background()
	t0 := time.Now()
	if _, err := r.Key(ctx, "k1", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Principal(ctx, "u1", t0); err != nil {
		t.Fatal(err)
	}
	l.Confirm(t0.Add(20 * time.Minute)) // current until t0+21m
	st.down.Store(true)
	l.Gap(false)
	for _, phase := range []string{"subscription down", "subscription back"} {
		if _, err := r.Key(ctx, "k1", t0.Add(25*time.Minute)); !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: Key = %v, want ErrUnavailable", phase, err)
		}
		if k, err := r.KeyOrStale(ctx, "k1", t0.Add(25*time.Minute)); err != nil || k.ID != "k1" {
			t.Errorf("%s: KeyOrStale within StaleIfError of the renewal: %v %v", phase, k, err)
		}
		if p, err := r.PrincipalOrStale(ctx, "u1", t0.Add(25*time.Minute)); err != nil || p.User.ID != "u1" {
			t.Errorf("%s: PrincipalOrStale within StaleIfError of the renewal: %v %v", phase, p, err)
		}
		if _, err := r.KeyOrStale(ctx, "k1", t0.Add(27*time.Minute)); !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: KeyOrStale beyond StaleIfError of the renewal: %v", phase, err)
		}
		l.Gap(true)
	}
}

func TestResolverRenewedLookupsDoNotAllocate(t *testing.T) {
	r, st, l := liveResolver(t, CacheOptions{TTL: time.Minute})
	ctx := context.Background()
	now := time.Now()
	r.Key(ctx, "k1", now)
	r.Principal(ctx, "u1", now)
	l.Confirm(now.Add(90 * time.Second))
	later := now.Add(2 * time.Minute) // past TTL: fresh through the renewal
	reads := st.reads.Load()
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := r.Key(ctx, "k1", later); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Principal(ctx, "u1", later); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("renewed lookups allocate %v times", allocs)
	}
	if st.reads.Load() != reads {
		t.Error("renewed lookups read the store")
	}
}

// TestResolverConcurrent runs lookups against confirmations, invalidations
// and gaps, for the race detector.
func TestResolverConcurrent(t *testing.T) {
	r, _, l := liveResolver(t, CacheOptions{TTL: time.Minute})
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				now := time.Now()
				r.Key(ctx, "k1", now)
				r.Principal(ctx, "u1", now)
				r.KeyOrStale(ctx, "k1", now)
			}
		})
	}
	for i := range 2000 {
		switch i % 4 {
		case 0:
			l.Confirm(time.Now())
		case 1:
			l.Change(Invalidation{UserID: "u1", KeyID: "k1"})
		case 2:
			l.Gap(false)
		case 3:
			l.Gap(true)
		}
	}
	close(stop)
	wg.Wait()
}

// TestResolverStaleWhilePaused: a lookup that may use a stale entry does
// not wait out a store that answers nothing (a paused Redis); it serves the
// stale entry after staleWait, and the read it started goes on in the
// background and refreshes the entry once the store answers.
func TestResolverStaleWhilePaused(t *testing.T) {
	st := &flakyStore{}
	r := NewResolver(st, CacheOptions{TTL: time.Minute, StaleIfError: 5 * time.Minute}, nil)
	ctx := context.Background()
	now := time.Now()
	if _, err := r.Key(ctx, "k1", now); err != nil {
		t.Fatal(err)
	}
	r.Flush() // stale from here on
	release := make(chan struct{})
	st.duringRead = func() { <-release } // the next read hangs
	go func() { time.Sleep(3 * time.Second); close(release) }()
	start := time.Now()
	k, err := r.KeyOrStale(ctx, "k1", now)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("KeyOrStale waited %v for a store that answers nothing", took)
	}
	if err != nil || k.ID != "k1" {
		t.Fatalf("KeyOrStale while the store hangs: %v %v", k, err)
	}
	// The read started above lands when the store answers: a strict
	// lookup then finds a fresh entry without reading again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		reads := st.reads.Load()
		if _, err := r.Key(ctx, "k1", time.Now()); err == nil && st.reads.Load() == reads {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the background read never refreshed the entry")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
