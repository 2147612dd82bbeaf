package keys

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// latestStore keeps the latest time TouchLastUsed received per usage (kind,
// user and credential or tenant), safe for concurrent flushes.
type latestStore struct {
	Store // nil: only TouchLastUsed is called
	mu    sync.Mutex
	at    map[Usage]time.Time // Usage with At zero → latest At
}

func (s *latestStore) TouchLastUsed(_ context.Context, used []Usage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range used {
		at := u.At
		u.At = time.Time{}
		if prev, ok := s.at[u]; !ok || prev.Before(at) {
			s.at[u] = at
		}
	}
	return nil
}

func (s *latestStore) latest(u Usage) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.at[u]
}

// usageEntries returns how many entries m holds.
func usageEntries[K comparable, V any](m *usageMap[K, V]) int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		read := *s.read.Load()
		n += len(read)
		for k := range s.dirty {
			if _, ok := read[k]; !ok {
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}

// TestUsageRecorderRacingFlush records from many goroutines while others
// flush in a loop, so that entries are taken, retired and dropped while uses
// land in them. After each round and a last flush, the store must hold, for
// every credential and login, the latest time recorded: a use lost in a race
// with a flush would leave an older time (or none).
func TestUsageRecorderRacingFlush(t *testing.T) {
	const (
		workers = 8
		rounds  = 20
		perRun  = 300 // uses per worker and round
		users   = 16
	)
	st := &latestStore{at: map[Usage]time.Time{}}
	u := NewUsageRecorder(st, time.Hour)
	ctx := context.Background()
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var clock atomic.Int64 // every use has a distinct, later time

	// use returns the usage a worker records for credential c of user.
	use := func(user, c int) Usage {
		uid := fmt.Sprint("u", user)
		switch c {
		case 0:
			return Usage{UserID: uid, KeyID: fmt.Sprint("k", user)}
		case 1:
			return Usage{UserID: uid, SecretID: fmt.Sprint("s", user)}
		default:
			return Usage{UserID: uid, Tenant: fmt.Sprint("t", c)}
		}
	}
	for round := range rounds {
		var latest sync.Map // Usage → time.Time of the latest use this round
		stop := make(chan struct{})
		flushers := flushLoop(stop, func() bool {
			if err := u.Flush(ctx); err != nil {
				t.Error(err)
				return false
			}
			return true
		})
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(round), uint64(w)))
				for range perRun {
					k := use(r.IntN(users), r.IntN(4))
					// Uses may be recorded out of time order: the latest
					// time wins, whichever is recorded last.
					at := base.Add(time.Duration(clock.Add(1)))
					switch {
					case k.KeyID != "" || k.SecretID != "":
						u.Record(k.UserID, k.KeyID, k.SecretID, at)
					default:
						u.RecordLogin(k.UserID, k.Tenant, at)
					}
					for {
						prev, loaded := latest.LoadOrStore(k, at)
						if !loaded || !prev.(time.Time).Before(at) || latest.CompareAndSwap(k, prev, at) {
							break
						}
					}
					if r.IntN(8) == 0 {
						time.Sleep(time.Microsecond) // let flushes retire entries
					}
				}
			})
		}
		wg.Wait()
		close(stop)
		flushers.Wait()
		if err := u.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		latest.Range(func(k, v any) bool {
			if got, want := st.latest(k.(Usage)), v.(time.Time); !got.Equal(want) {
				t.Errorf("round %d: %+v last used %v, want %v", round, k, got.Sub(base), want.Sub(base))
			}
			return true
		})
		if t.Failed() {
			return
		}
	}
	// Two idle intervals drop every entry.
	for range 2 {
		if err := u.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := usageEntries(u.keys) + usageEntries(u.secrets) + usageEntries(u.logins); n != 0 {
		t.Errorf("%d entries left after two idle flushes", n)
	}
}

// TestUsageRecorderFlushesOnce: what one flush wrote is not written again,
// and an entry is dropped only after a whole interval without use.
func TestUsageRecorderFlushesOnce(t *testing.T) {
	st := &latestStore{at: map[Usage]time.Time{}}
	u := NewUsageRecorder(st, time.Hour)
	ctx := context.Background()
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	u.Record("u1", "k1", "", at)
	u.Record("u1", "k1", "", at.Add(-time.Second)) // older: ignored
	u.Record("u1", "", "s1", at)
	u.RecordLogin("u1", "acme", at)
	var calls atomic.Int64
	counting := &countingTouch{latestStore: st, calls: &calls}
	u.store = counting
	if err := u.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 || len(st.at) != 3 || !st.latest(Usage{UserID: "u1", KeyID: "k1"}).Equal(at) {
		t.Fatalf("first flush: %d calls, %v", calls.Load(), st.at)
	}
	if n := usageEntries(u.keys) + usageEntries(u.secrets) + usageEntries(u.logins); n != 3 {
		t.Fatalf("%d entries after a flush, want 3 (idle, kept for this interval)", n)
	}
	u.Record("u1", "k1", "", at.Add(time.Second)) // k1 stays in use
	if err := u.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 || !st.latest(Usage{UserID: "u1", KeyID: "k1"}).Equal(at.Add(time.Second)) {
		t.Fatalf("second flush: %d calls, %v", calls.Load(), st.at)
	}
	if n := usageEntries(u.keys) + usageEntries(u.secrets) + usageEntries(u.logins); n != 1 {
		t.Fatalf("%d entries after an idle interval, want 1 (k1)", n)
	}
	if err := u.Flush(ctx); err != nil || calls.Load() != 2 {
		t.Fatalf("idle flush: %v, %d calls", err, calls.Load())
	}
	if n := usageEntries(u.keys); n != 0 {
		t.Fatalf("%d key entries after an idle interval", n)
	}
	u.Record("u1", "k1", "", at.Add(2*time.Second)) // after its entry was dropped
	if err := u.Flush(ctx); err != nil || !st.latest(Usage{UserID: "u1", KeyID: "k1"}).Equal(at.Add(2*time.Second)) {
		t.Fatalf("flush after re-use: %v, %v", err, st.at)
	}
}

type countingTouch struct {
	*latestStore
	calls *atomic.Int64
}

func (c *countingTouch) TouchLastUsed(ctx context.Context, used []Usage) error {
	c.calls.Add(1)
	return c.latestStore.TouchLastUsed(ctx, used)
}

// sumStore adds up the counts AddUsageCounts received and fails every
// failEvery-th call (0: never), safe for concurrent flushes.
type sumStore struct {
	Store
	mu        sync.Mutex
	calls     int
	failEvery int
	sum       map[tenantSlot][usageOutcomes]int64
}

func (s *sumStore) AddUsageCounts(_ context.Context, counts []UsageCount) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.failEvery > 0 && s.calls%s.failEvery == 0 {
		return errors.New("store down")
	}
	for _, c := range counts {
		k := tenantSlot{tenant: c.Tenant, user: c.UserID, hour: c.Hour.Unix()}
		v := s.sum[k]
		refused := int64(0)
		for o := range usageOutcomes {
			n := *c.counter(o)
			v[o] += n
			if o.IsRefusal() {
				refused += n
			}
		}
		if refused != c.Refused {
			s.mu.Unlock()
			panic(fmt.Sprintf("count %+v: Refused %d is not the sum of its reasons %d", c, c.Refused, refused))
		}
		s.sum[k] = v
	}
	return nil
}

func (s *sumStore) PurgeUsageCounts(context.Context, time.Time) (int, error) { return 0, nil }

// TestUsageCounterRacingFlush counts from many goroutines while others flush
// in a loop against a store failing every third call, so that tallies are
// taken, retired, dropped and put back while counts land in them. The store
// must end with exactly the counts made: none lost, none added twice.
func TestUsageCounterRacingFlush(t *testing.T) {
	const (
		workers = 8
		perW    = 20000
		users   = 24
		tenants = 3
		hours   = 3
	)
	st := &sumStore{failEvery: 3, sum: map[tenantSlot][usageOutcomes]int64{}}
	c := NewUsageCounter(st, time.Hour)
	ctx := context.Background()
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	want := make([]map[tenantSlot][usageOutcomes]int64, workers)
	stop := make(chan struct{})
	flushers := flushLoop(stop, func() bool {
		_ = c.Flush(ctx) // fails every third call; the counts stay pending
		return true
	})
	var wg sync.WaitGroup
	for w := range workers {
		want[w] = map[tenantSlot][usageOutcomes]int64{}
		wg.Go(func() {
			r := rand.New(rand.NewPCG(1, uint64(w)))
			for range perW {
				user := fmt.Sprint("u", r.IntN(users))
				if r.IntN(8) == 0 {
					user = "" // a request no user was named for
				}
				tenant := fmt.Sprint("t", r.IntN(tenants))
				at := base.Add(time.Duration(r.IntN(hours*3600)) * time.Second)
				o := UsageOutcome(r.IntN(int(usageOutcomes)))
				c.Count(tenant, user, o, at)
				k := tenantSlot{tenant: tenant, user: user, hour: at.Truncate(time.Hour).Unix()}
				v := want[w][k]
				v[o]++
				want[w][k] = v
				if r.IntN(64) == 0 {
					time.Sleep(time.Microsecond) // let flushes retire tallies
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	flushers.Wait()
	st.mu.Lock()
	st.failEvery = 0
	st.mu.Unlock()
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	total := map[tenantSlot][usageOutcomes]int64{}
	for _, m := range want {
		for k, v := range m {
			s := total[k]
			for o := range s {
				s[o] += v[o]
			}
			total[k] = s
		}
	}
	for k, v := range total {
		if got := st.sum[k]; got != v {
			t.Errorf("%s/%s at %v: stored %v, counted %v", k.tenant, k.user, time.Unix(k.hour, 0).UTC(), got, v)
		}
	}
	if len(st.sum) != len(total) {
		t.Errorf("stored %d slots, counted %d", len(st.sum), len(total))
	}
	// Two idle intervals drop every tally.
	for range 2 {
		if err := c.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := usageEntries(c.pending) + usageEntries(c.others); n != 0 {
		t.Errorf("%d tallies left after two idle flushes", n)
	}
}

// TestUsageShardLatest: an entry replaced after read was published is the
// one lookups and compareAndSwap see, not the stale published one, and each
// drops an entry only if it was not replaced meanwhile.
func TestUsageShardLatest(t *testing.T) {
	m := newUsageMap[userKey, usageEntry]()
	k := userKey{"u1", "k1"}
	s := m.shard(k.user)
	e1, e2, e3 := new(usageEntry), new(usageEntry), new(usageEntry)
	if !s.compareAndSwap(k, nil, e1) || s.compareAndSwap(k, nil, e2) {
		t.Fatal("compareAndSwap from absent")
	}
	s.each(func(userKey, *usageEntry) bool { return false }) // publishes e1
	if got := (*s.read.Load())[k]; got != e1 {
		t.Fatalf("published %p, want e1 %p", got, e1)
	}
	if !s.compareAndSwap(k, e1, e2) {
		t.Fatal("compareAndSwap(e1, e2) failed")
	}
	if s.compareAndSwap(k, e1, e3) {
		t.Fatal("compareAndSwap from the stale published entry succeeded")
	}
	if got := s.lookup(k); got != e2 {
		t.Fatalf("lookup = %p, want e2 %p", got, e2)
	}
	// A flush retiring e2 while e3 replaces it must keep e3.
	s.each(func(_ userKey, e *usageEntry) bool {
		if !s.compareAndSwap(k, e, e3) {
			t.Error("compareAndSwap(e2, e3) failed")
		}
		return true
	})
	if got := s.load(k); got != e3 {
		t.Fatalf("after drop: %p, want e3 %p", got, e3)
	}
	s.each(func(userKey, *usageEntry) bool { return true })
	if got := s.load(k); got != nil {
		t.Fatalf("after dropping e3: %p", got)
	}
}

// flushLoop calls flush on two goroutines, again and again, until stop is
// closed or flush returns false; wait on the result for them to end.
func flushLoop(stop <-chan struct{}, flush func() bool) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if !flush() {
					return
				}
			}
		})
	}
	return &wg
}
