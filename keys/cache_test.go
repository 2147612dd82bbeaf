package keys

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// flakyStore serves one key and one user, or fails as unavailable.
type flakyStore struct {
	Store // nil: only the methods below are called
	down  atomic.Bool
	reads atomic.Int64
}

func (s *flakyStore) GetKey(_ context.Context, id string) (Key, error) {
	s.reads.Add(1)
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

// notifyingFlaky is a flakyStore that is a Notifier the test drives.
type notifyingFlaky struct {
	flakyStore
	fn  chan func(Invalidation)
	gap chan func(bool)
}

func (s *notifyingFlaky) Subscribe(_ context.Context, fn func(Invalidation), gap func(bool)) error {
	s.fn <- fn
	s.gap <- gap
	return nil
}

func TestResolverDegradedUntilSubscribed(t *testing.T) {
	st := &notifyingFlaky{fn: make(chan func(Invalidation), 1), gap: make(chan func(bool), 1)}
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
	<-st.fn
	gap := <-st.gap
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
