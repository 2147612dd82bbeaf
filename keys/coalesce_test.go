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

// gatedStore serves key k1 and user u1 in a version the test sets; each read
// counts, announces itself on started and waits for a value on release.
type gatedStore struct {
	Store
	version atomic.Int64
	reads   atomic.Int64
	started chan string
	release chan struct{}
}

func newGatedStore() *gatedStore {
	return &gatedStore{started: make(chan string, 16), release: make(chan struct{}, 16)}
}

func (s *gatedStore) wait(what string) {
	s.reads.Add(1)
	s.started <- what
	<-s.release
}

func (s *gatedStore) GetKey(_ context.Context, id string) (Key, error) {
	s.wait("key")
	if id != "k1" {
		return Key{}, ErrNotFound
	}
	return Key{ID: "k1", UserID: "u1", Status: KeyActive, Name: versionName(s.version.Load())}, nil
}

func (s *gatedStore) GetUser(_ context.Context, id string) (User, error) {
	s.wait("user")
	return User{ID: id, Name: versionName(s.version.Load()), Status: UserActive}, nil
}

func (s *gatedStore) UserPermissions(context.Context, string) ([]Permission, error) {
	return []Permission{{TenantID: "acme", Role: RoleMember, Status: PermissionActive}}, nil
}

func versionName(v int64) string { return "v" + string(rune('0'+v)) }

// waitingOn polls until n lookups wait for the load of id in flight in c.
func waitingOn[V any](t *testing.T, c *ttlCache[V], id string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	s := c.shard(id)
	for {
		s.mu.RLock()
		got := 0
		if f, ok := s.loads[id]; ok {
			got = f.waiters
		}
		s.mu.RUnlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d lookups wait for the load of %s, want %d", got, id, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestResolverCoalescesColdLoads: N concurrent misses of one id cost one
// store read, and all N get its result.
func TestResolverCoalescesColdLoads(t *testing.T) {
	const n = 200
	for _, kind := range []string{"key", "principal", "missing key"} {
		t.Run(kind, func(t *testing.T) {
			st := newGatedStore()
			r := NewResolver(st, CacheOptions{}, nil)
			ctx := context.Background()
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for range n {
				wg.Go(func() {
					now := time.Now()
					var err error
					switch kind {
					case "key":
						var k *Key
						if k, err = r.Key(ctx, "k1", now); err == nil && k.Name != "v0" {
							err = errors.New("wrong key " + k.Name)
						}
					case "principal":
						var p *Principal
						if p, err = r.Principal(ctx, "u1", now); err == nil && p.User.Name != "v0" {
							err = errors.New("wrong user " + p.User.Name)
						}
					case "missing key":
						if _, err = r.Key(ctx, "k2", now); errors.Is(err, ErrNotFound) {
							err = nil
						}
					}
					errs <- err
				})
			}
			<-st.started // the leader is reading
			id := "k1"
			switch kind {
			case "principal":
				id = "u1"
			case "missing key":
				id = "k2"
			}
			if kind == "principal" {
				waitingOn(t, r.users, id, n-1)
			} else {
				waitingOn(t, r.keys, id, n-1)
			}
			st.release <- struct{}{}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if got := st.reads.Load(); got != 1 {
				t.Fatalf("%d store reads for %d concurrent lookups, want 1", got, n)
			}
		})
	}
}

// TestResolverInvalidationDuringCoalescedLoad: a lookup that begins after an
// invalidation does not wait for (or get) a load that began before it, and
// that load is not cached; the lookups that were already waiting get it.
func TestResolverInvalidationDuringCoalescedLoad(t *testing.T) {
	for _, how := range []string{"invalidate", "flush"} {
		t.Run(how, func(t *testing.T) {
			st := newGatedStore()
			r := NewResolver(st, CacheOptions{TTL: time.Minute}, nil)
			ctx := context.Background()
			now := time.Now()

			type result struct {
				name string
				err  error
			}
			get := func(out chan<- result) {
				k, err := r.Key(ctx, "k1", now)
				if err != nil {
					out <- result{err: err}
					return
				}
				out <- result{name: k.Name}
			}
			early := make(chan result, 2)
			go get(early)
			if w := <-st.started; w != "key" {
				t.Fatalf("read %s", w)
			}
			go get(early) // joins the load in flight
			waitingOn(t, r.keys, "k1", 1)

			// The key changes, and its invalidation arrives while the first
			// load is still reading.
			st.version.Store(1)
			switch how {
			case "invalidate":
				r.Invalidate(Invalidation{KeyID: "k1"})
			case "flush":
				r.Flush()
			}
			late := make(chan result, 1)
			go get(late)
			// The late lookup reads the store itself.
			select {
			case w := <-st.started:
				if w != "key" {
					t.Fatalf("read %s", w)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the lookup after the invalidation joined the older load")
			}
			st.release <- struct{}{}
			st.release <- struct{}{}
			lr := <-late
			if lr.err != nil || lr.name != "v1" {
				t.Fatalf("lookup after the invalidation: %q %v, want v1", lr.name, lr.err)
			}
			for range 2 {
				if er := <-early; er.err != nil {
					t.Fatalf("early lookup: %v", er.err)
				}
			}
			// What the cache holds now is the new version, however the
			// two loads landed.
			k, err := r.Key(ctx, "k1", now)
			if err != nil || k.Name != "v1" {
				name := ""
				if k != nil {
					name = k.Name
				}
				t.Fatalf("cached after both loads: %q %v, want v1", name, err)
			}
			if got := st.reads.Load(); got != 2 {
				t.Fatalf("%d store reads, want 2", got)
			}
		})
	}
}

// TestResolverWaiterGivesUp: a lookup waiting for another's load returns
// when its own context ends; the load goes on for the others.
func TestResolverWaiterGivesUp(t *testing.T) {
	st := newGatedStore()
	r := NewResolver(st, CacheOptions{}, nil)
	now := time.Now()
	leader := make(chan error, 1)
	go func() {
		_, err := r.Key(context.Background(), "k1", now)
		leader <- err
	}()
	<-st.started
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := r.Key(ctx, "k1", now); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiter past its deadline: %v", err)
	}
	st.release <- struct{}{}
	if err := <-leader; err != nil {
		t.Fatal(err)
	}
	if _, err := r.Key(context.Background(), "k1", now); err != nil || st.reads.Load() != 1 {
		t.Fatalf("after the load: %v, %d reads", err, st.reads.Load())
	}
}

// TestResolverLeaderCancelled: the load does not fail the waiters when the
// lookup that started it is cancelled.
func TestResolverLeaderCancelled(t *testing.T) {
	st := newGatedStore()
	r := NewResolver(st, CacheOptions{}, nil)
	now := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	leader := make(chan error, 1)
	go func() {
		_, err := r.Key(ctx, "k1", now)
		leader <- err
	}()
	<-st.started
	waiter := make(chan error, 1)
	go func() {
		_, err := r.Key(context.Background(), "k1", now)
		waiter <- err
	}()
	waitingOn(t, r.keys, "k1", 1)
	cancel()
	st.release <- struct{}{}
	if err := <-waiter; err != nil {
		t.Fatalf("waiter: %v", err)
	}
	<-leader
	if st.reads.Load() != 1 {
		t.Fatalf("%d reads", st.reads.Load())
	}
}

// busyStore fails the first fails reads of k1 as unavailable, and records
// the per-call timeout each read was given.
type busyStore struct {
	Store
	fails    atomic.Int64
	reads    atomic.Int64
	timeouts []time.Duration
	mu       sync.Mutex
}

func (s *busyStore) GetKey(ctx context.Context, id string) (Key, error) {
	s.reads.Add(1)
	d, _ := CallTimeout(ctx)
	s.mu.Lock()
	s.timeouts = append(s.timeouts, d)
	s.mu.Unlock()
	if id == "k1" && s.fails.Add(-1) >= 0 {
		return Key{}, fmt.Errorf("get key: %w: %w", ErrUnavailable, context.DeadlineExceeded)
	}
	if id != "k1" {
		return Key{}, ErrNotFound
	}
	return Key{ID: "k1", UserID: "u1", Status: KeyActive}, nil
}

// TestResolverBusyStoreRetries: a read that fails while the store answers
// other reads is tried again with more time per round trip; one that fails
// against a store that has not answered lately is not.
func TestResolverBusyStoreRetries(t *testing.T) {
	ctx := context.Background()
	t.Run("busy", func(t *testing.T) {
		st := &busyStore{}
		r := NewResolver(st, CacheOptions{QueueTimeout: 2 * time.Second}, nil)
		if _, err := r.Key(ctx, "other", time.Now()); !errors.Is(err, ErrNotFound) {
			t.Fatal(err) // an answer: the store is up
		}
		st.fails.Store(2)
		if _, err := r.Key(ctx, "k1", time.Now()); err != nil {
			t.Fatalf("busy store: %v", err)
		}
		want := []time.Duration{0, 0, 500 * time.Millisecond, time.Second}
		if fmt.Sprint(st.timeouts) != fmt.Sprint(want) || r.BusyRetries() != 2 {
			t.Fatalf("per-call timeouts %v (retries %d), want %v", st.timeouts, r.BusyRetries(), want)
		}
	})
	t.Run("down", func(t *testing.T) {
		st := &busyStore{}
		st.fails.Store(10)
		r := NewResolver(st, CacheOptions{}, nil)
		if _, err := r.Key(ctx, "k1", time.Now()); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("store that never answered: %v", err)
		}
		if n := st.reads.Load(); n != 1 {
			t.Fatalf("%d reads of a store that never answered, want 1", n)
		}
	})
}
