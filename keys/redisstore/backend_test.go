package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/keys/redisstore"
)

// testTimeout is generous: the shared Redis serves other packages' tests at
// the same time, under -race. Fault tests use the default.
const testTimeout = time.Second

// newBackend returns a Backend on the shared Redis under a fresh prefix, and
// a raw client for inspecting it.
func newBackend(t *testing.T) (*redisstore.Backend, redis.UniversalClient, string) {
	t.Helper()
	client, prefix := testredis.Client(t)
	b := redisstore.New(client, redisstore.Options{Prefix: prefix, Timeout: testTimeout})
	t.Cleanup(func() { b.Close() })
	return b, client, prefix
}

func put(t *testing.T, b keys.Backend, table, id, value string) {
	t.Helper()
	err := b.Update(context.Background(), func(tx keys.Tx) error {
		return tx.Put(table, id, []byte(value))
	})
	if err != nil {
		t.Fatalf("put %s/%s: %v", table, id, err)
	}
}

func get(t *testing.T, b keys.Backend, table, id string) ([]byte, error) {
	t.Helper()
	var v []byte
	err := b.View(context.Background(), func(tx keys.Tx) error {
		var err error
		v, err = tx.Get(table, id)
		return err
	})
	return v, err
}

func TestGetPutDelete(t *testing.T) {
	b, raw, prefix := newBackend(t)
	ctx := context.Background()

	if _, err := get(t, b, "users", "1"); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("get missing: err = %v, want ErrNotFound", err)
	}
	put(t, b, "users", "1", "alice")
	if v, err := get(t, b, "users", "1"); err != nil || string(v) != "alice" {
		t.Fatalf("get = %q, %v; want alice", v, err)
	}
	// Layout: one hash tag for every key.
	if v, err := raw.Get(ctx, prefix+"{kg}:users:1").Result(); err != nil || v != "alice" {
		t.Fatalf("raw key = %q, %v", v, err)
	}
	put(t, b, "users", "1", "")
	if v, err := get(t, b, "users", "1"); err != nil || len(v) != 0 {
		t.Fatalf("empty value: get = %q, %v", v, err)
	}
	err := b.Update(ctx, func(tx keys.Tx) error {
		if err := tx.Delete("users", "1"); err != nil {
			return err
		}
		return tx.Delete("users", "missing")
	})
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := get(t, b, "users", "1"); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("get deleted: err = %v, want ErrNotFound", err)
	}
}

func TestGetMany(t *testing.T) {
	b, _, _ := newBackend(t)
	put(t, b, "keys", "a", "A")
	put(t, b, "keys", "c", "C")
	err := b.View(context.Background(), func(tx keys.Tx) error {
		got, err := tx.GetMany("keys", []string{"a", "b", "c", "a"})
		if err != nil {
			return err
		}
		want := [][]byte{[]byte("A"), nil, []byte("C"), []byte("A")}
		if !slices.EqualFunc(got, want, func(x, y []byte) bool { return (x == nil) == (y == nil) && string(x) == string(y) }) {
			t.Errorf("GetMany = %q, want %q", got, want)
		}
		got, err = tx.GetMany("keys", nil)
		if err != nil || len(got) != 0 {
			t.Errorf("GetMany(nil) = %q, %v", got, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestViewIsReadOnly(t *testing.T) {
	b, _, _ := newBackend(t)
	err := b.View(context.Background(), func(tx keys.Tx) error {
		if tx.Put("users", "1", []byte("x")) == nil {
			t.Error("Put in View succeeded")
		}
		if tx.Delete("users", "1") == nil {
			t.Error("Delete in View succeeded")
		}
		if tx.IndexAdd("i", "s", "1") == nil {
			t.Error("IndexAdd in View succeeded")
		}
		tx.Notify(keys.Invalidation{UserID: "1"}) // dropped, no panic
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestInvalidNames(t *testing.T) {
	b, _, _ := newBackend(t)
	err := b.Update(context.Background(), func(tx keys.Tx) error {
		if tx.Put("", "1", nil) == nil {
			t.Error("empty table accepted")
		}
		if tx.Put("@ix", "1", nil) == nil {
			t.Error("reserved table accepted")
		}
		if tx.IndexAdd("", "a", "1") == nil {
			t.Error("empty index name accepted")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestUpdateErrorDiscardsWrites(t *testing.T) {
	b, _, _ := newBackend(t)
	errStop := errors.New("stop")
	err := b.Update(context.Background(), func(tx keys.Tx) error {
		if err := tx.Put("users", "1", []byte("x")); err != nil {
			return err
		}
		if err := tx.IndexAdd("users:by:name", "x", "1"); err != nil {
			return err
		}
		return errStop
	})
	if err != errStop {
		t.Fatalf("Update = %v, want fn's error unchanged", err)
	}
	if _, err := get(t, b, "users", "1"); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("write of a failed Update is visible: %v", err)
	}
	_ = b.View(context.Background(), func(tx keys.Tx) error {
		if n, err := tx.IndexCount("users:by:name"); err != nil || n != 0 {
			t.Errorf("index count = %d, %v; want 0", n, err)
		}
		return nil
	})
}

// entry is one index member.
type entry struct{ sortKey, id string }

// indexModel is the expected content of an index.
type indexModel map[entry]bool

func (m indexModel) rangeIDs(offset, count int, desc bool) []string {
	var es []entry
	for e := range m {
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b entry) int {
		if c := strings.Compare(a.sortKey, b.sortKey); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	if desc {
		slices.Reverse(es)
	}
	ids := []string{}
	for i, e := range es {
		if i >= offset && (count < 0 || i < offset+count) {
			ids = append(ids, e.id)
		}
	}
	return ids
}

func TestIndexes(t *testing.T) {
	b, raw, prefix := newBackend(t)
	ctx := context.Background()
	err := b.Update(ctx, func(tx keys.Tx) error {
		for _, m := range [][2]string{{"b", "2"}, {"a", "3"}, {"b", "1"}, {"", "9"}, {"ab", "0"}} {
			if err := tx.IndexAdd("users:by:name", m[0], m[1]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Layout: a sorted set, score 0, member sortKey NUL id.
	zs, err := raw.ZRangeWithScores(ctx, prefix+"{kg}:@ix:users:by:name", 0, 0).Result()
	if err != nil || len(zs) != 1 || zs[0].Score != 0 || zs[0].Member != "\x00\x019" {
		t.Fatalf("raw index = %v, %v", zs, err)
	}
	check := func(offset, count int, desc bool, want ...string) {
		t.Helper()
		var got []string
		err := b.View(ctx, func(tx keys.Tx) error {
			var err error
			got, err = tx.IndexRange("users:by:name", offset, count, desc)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if want == nil {
			want = []string{}
		}
		if !slices.Equal(got, want) {
			t.Errorf("IndexRange(%d, %d, %v) = %q, want %q", offset, count, desc, got, want)
		}
	}
	check(0, 10, false, "9", "3", "0", "1", "2")
	check(0, 10, true, "2", "1", "0", "3", "9")
	check(1, 2, false, "3", "0")
	check(1, 2, true, "1", "0")
	check(3, -1, false, "1", "2")
	check(5, 10, false)
	check(0, 0, false)

	err = b.Update(ctx, func(tx keys.Tx) error {
		if err := tx.IndexRemove("users:by:name", "b", "1"); err != nil {
			return err
		}
		return tx.IndexRemove("users:by:name", "zz", "missing")
	})
	if err != nil {
		t.Fatal(err)
	}
	check(0, 10, false, "9", "3", "0", "2")
	_ = b.View(ctx, func(tx keys.Tx) error {
		if n, err := tx.IndexCount("users:by:name"); err != nil || n != 4 {
			t.Errorf("count = %d, %v; want 4", n, err)
		}
		if n, err := tx.IndexCount("nothing"); err != nil || n != 0 {
			t.Errorf("count of a missing index = %d, %v", n, err)
		}
		return nil
	})
	if err := b.Update(ctx, func(tx keys.Tx) error { return tx.IndexDrop("users:by:name") }); err != nil {
		t.Fatal(err)
	}
	check(0, 10, false)
	if n, _ := raw.Exists(ctx, prefix+"{kg}:@ix:users:by:name").Result(); n != 0 {
		t.Errorf("dropped index still exists")
	}
}

func TestOverlayRecords(t *testing.T) {
	b, _, _ := newBackend(t)
	put(t, b, "users", "1", "one")
	put(t, b, "users", "2", "two")
	err := b.Update(context.Background(), func(tx keys.Tx) error {
		if err := tx.Put("users", "1", []byte("ONE")); err != nil {
			return err
		}
		if err := tx.Delete("users", "2"); err != nil {
			return err
		}
		if err := tx.Put("users", "3", []byte("three")); err != nil {
			return err
		}
		if v, err := tx.Get("users", "1"); err != nil || string(v) != "ONE" {
			t.Errorf("Get pending put = %q, %v", v, err)
		}
		if _, err := tx.Get("users", "2"); !errors.Is(err, keys.ErrNotFound) {
			t.Errorf("Get pending delete: err = %v", err)
		}
		got, err := tx.GetMany("users", []string{"1", "2", "3", "4"})
		if err != nil {
			return err
		}
		if string(got[0]) != "ONE" || got[1] != nil || string(got[2]) != "three" || got[3] != nil {
			t.Errorf("GetMany over pending writes = %q", got)
		}
		// A value handed back cannot change the pending write.
		v, _ := tx.Get("users", "3")
		v[0] = 'X'
		if v, _ := tx.Get("users", "3"); string(v) != "three" {
			t.Errorf("pending value aliased: %q", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := get(t, b, "users", "3"); string(v) != "three" {
		t.Errorf("committed value = %q", v)
	}
}

// TestOverlayIndexes checks index reads over pending changes against a
// model, for random stored members and random pending changes.
func TestOverlayIndexes(t *testing.T) {
	b, _, _ := newBackend(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	// Sort keys and ids with NUL, 0x01 and 0xFF bytes and prefixes of
	// each other: (sortKey, id) order must hold for any bytes.
	sortKeys := []string{"", "a", "a\x00", "a\x00b", "a\x01", "a\xff", "ab", "\x00", "\xff"}
	ids := []string{"0", "1", "\x00", "\xff", "1\x00", "", "\x01"}
	randMember := func() entry {
		return entry{sortKeys[rng.IntN(len(sortKeys))], ids[rng.IntN(len(ids))]}
	}
	for round := range 60 {
		index := fmt.Sprintf("ix%d", round)
		model := indexModel{}
		err := b.Update(ctx, func(tx keys.Tx) error {
			for range rng.IntN(12) {
				e := randMember()
				model[e] = true
				if err := tx.IndexAdd(index, e.sortKey, e.id); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		stored := maps(model)
		err = b.Update(ctx, func(tx keys.Tx) error {
			model := maps(stored) // fn may run again
			for range rng.IntN(10) {
				e := randMember()
				switch op := rng.IntN(10); {
				case op == 0:
					clear(model)
					if err := tx.IndexDrop(index); err != nil {
						return err
					}
				case op < 6:
					model[e] = true
					if err := tx.IndexAdd(index, e.sortKey, e.id); err != nil {
						return err
					}
				default:
					delete(model, e)
					if err := tx.IndexRemove(index, e.sortKey, e.id); err != nil {
						return err
					}
				}
			}
			if n, err := tx.IndexCount(index); err != nil || n != len(model) {
				t.Errorf("round %d: pending count = %d, %v; want %d", round, n, err, len(model))
			}
			for offset := range len(model) + 2 {
				for _, count := range []int{-1, 1, 2, 3, 20} {
					for _, desc := range []bool{false, true} {
						got, err := tx.IndexRange(index, offset, count, desc)
						if err != nil {
							return err
						}
						if want := model.rangeIDs(offset, count, desc); !slices.Equal(got, want) {
							t.Errorf("round %d: pending IndexRange(%d, %d, %v) = %q, want %q",
								round, offset, count, desc, got, want)
						}
					}
				}
			}
			stored = model
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// What was committed is what the overlay showed.
		_ = b.View(ctx, func(tx keys.Tx) error {
			got, err := tx.IndexRange(index, 0, -1, false)
			if want := stored.rangeIDs(0, -1, false); err != nil || !slices.Equal(got, want) {
				t.Errorf("round %d: committed = %q, %v; want %q", round, got, err, want)
			}
			return nil
		})
	}
}

func maps(m indexModel) indexModel {
	c := make(indexModel, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// TestUpdateNoLostUpdate increments one record from two goroutines; every
// increment must survive.
func TestUpdateNoLostUpdate(t *testing.T) {
	b, _, _ := newBackend(t)
	const perWorker = 100
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Go(func() {
			for range perWorker {
				err := b.Update(context.Background(), func(tx keys.Tx) error {
					n := 0
					v, err := tx.Get("counters", "c")
					switch {
					case errors.Is(err, keys.ErrNotFound):
					case err != nil:
						return err
					default:
						if n, err = strconv.Atoi(string(v)); err != nil {
							return err
						}
					}
					return tx.Put("counters", "c", []byte(strconv.Itoa(n+1)))
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Update: %v", err)
	}
	if v, err := get(t, b, "counters", "c"); err != nil || string(v) != strconv.Itoa(2*perWorker) {
		t.Fatalf("counter = %q, %v; want %d", v, err, 2*perWorker)
	}
}

// TestUpdateRetries changes what fn read behind its back: the first attempt
// must abort and fn run again on the new value.
func TestUpdateRetries(t *testing.T) {
	b, raw, prefix := newBackend(t)
	ctx := context.Background()
	put(t, b, "users", "1", "v1")
	var attempts int
	err := b.Update(ctx, func(tx keys.Tx) error {
		attempts++
		v, err := tx.Get("users", "1")
		if err != nil {
			return err
		}
		if attempts == 1 {
			if err := raw.Set(ctx, prefix+"{kg}:users:1", "v2", 0).Err(); err != nil {
				return err
			}
		}
		return tx.Put("users", "1", append(v, "+"...))
	})
	if err != nil {
		t.Fatal(err)
	}
	if attempts != 2 {
		t.Errorf("fn ran %d times, want 2", attempts)
	}
	if v, _ := get(t, b, "users", "1"); string(v) != "v2+" {
		t.Errorf("value = %q, want v2+", v)
	}

	// Index reads are watched too.
	attempts = 0
	err = b.Update(ctx, func(tx keys.Tx) error {
		attempts++
		if _, err := tx.IndexCount("users:by:name"); err != nil {
			return err
		}
		if attempts == 1 {
			raw.ZAdd(ctx, prefix+"{kg}:@ix:users:by:name", redis.Z{Member: "x\x001"})
		}
		return tx.Put("users", "2", []byte("x"))
	})
	if err != nil || attempts != 2 {
		t.Errorf("index watch: err = %v, attempts = %d; want 2", err, attempts)
	}

	// A read-only Update is also validated by EXEC.
	attempts = 0
	err = b.Update(ctx, func(tx keys.Tx) error {
		attempts++
		if _, err := tx.GetMany("users", []string{"1", "2"}); err != nil {
			return err
		}
		if attempts == 1 {
			raw.Set(ctx, prefix+"{kg}:users:2", "y", 0)
		}
		return nil
	})
	if err != nil || attempts != 2 {
		t.Errorf("read-only update: err = %v, attempts = %d; want 2", err, attempts)
	}
}

// TestUpdateGivesUp loses every race: Update stops after a bounded number
// of attempts with ErrUnavailable (contention is not a model conflict).
func TestUpdateGivesUp(t *testing.T) {
	b, raw, prefix := newBackend(t)
	ctx := context.Background()
	var attempts int
	err := b.Update(ctx, func(tx keys.Tx) error {
		attempts++
		if _, err := tx.Get("users", "1"); err != nil && !errors.Is(err, keys.ErrNotFound) {
			return err
		}
		raw.Incr(ctx, prefix+"{kg}:users:1")
		return tx.Put("users", "2", []byte("x"))
	})
	if !errors.Is(err, keys.ErrUnavailable) || !errors.Is(err, redis.TxFailedErr) || errors.Is(err, keys.ErrConflict) {
		t.Fatalf("err = %v, want ErrUnavailable and TxFailedErr", err)
	}
	if attempts != 50 {
		t.Errorf("attempts = %d, want 50", attempts)
	}
	if _, err := get(t, b, "users", "2"); !errors.Is(err, keys.ErrNotFound) {
		t.Errorf("a lost transaction wrote: %v", err)
	}
}

func TestClosed(t *testing.T) {
	client, prefix := testredis.Client(t)
	b := redisstore.New(client, redisstore.Options{Prefix: prefix})
	if err := b.Ping(context.Background()); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ok := func(keys.Tx) error { return nil }
	for name, err := range map[string]error{
		"view":      b.View(context.Background(), ok),
		"update":    b.Update(context.Background(), ok),
		"ping":      b.Ping(context.Background()),
		"subscribe": b.Subscribe(context.Background(), keys.Listener{Change: func(keys.Invalidation) {}}),
	} {
		if !errors.Is(err, keys.ErrUnavailable) {
			t.Errorf("%s after Close: err = %v, want ErrUnavailable", name, err)
		}
	}
	// The client is the caller's: still open.
	if err := client.Ping(context.Background()).Err(); err != nil {
		t.Errorf("Close closed the client: %v", err)
	}

	// A closed client is unavailable too.
	c2 := redis.NewClient(testredis.Options(t))
	b2 := redisstore.New(c2, redisstore.Options{Prefix: prefix})
	c2.Close()
	if _, err := get(t, b2, "users", "1"); !errors.Is(err, keys.ErrUnavailable) {
		t.Errorf("closed client: err = %v, want ErrUnavailable", err)
	}
	if err := b2.Update(context.Background(), ok); !errors.Is(err, keys.ErrUnavailable) {
		t.Errorf("closed client update: err = %v, want ErrUnavailable", err)
	}
}

func TestNewClient(t *testing.T) {
	single := redisstore.NewClient(redisstore.Options{Addrs: []string{"127.0.0.1:1"}, TLS: true, DB: 2, Timeout: 70 * time.Millisecond})
	defer single.Close()
	c, ok := single.(*redis.Client)
	if !ok {
		t.Fatalf("one address: %T, want *redis.Client", single)
	}
	o := c.Options()
	// Every call carries its own deadline (Timeout); the client's read and
	// write timeouts are a 20 × Timeout backstop.
	if !o.ContextTimeoutEnabled || o.ReadTimeout != 20*70*time.Millisecond || o.WriteTimeout != 20*70*time.Millisecond ||
		o.DialTimeout < 70*time.Millisecond || o.DB != 2 || o.TLSConfig == nil || o.TLSConfig.RootCAs != nil {
		t.Errorf("single-node options = %+v", o)
	}

	cluster := redisstore.NewClient(redisstore.Options{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}})
	defer cluster.Close()
	cc, ok := cluster.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("two addresses: %T, want *redis.ClusterClient", cluster)
	}
	if co := cc.Options(); !co.ContextTimeoutEnabled || co.ReadTimeout != 20*redisstore.DefaultTimeout || co.TLSConfig != nil {
		t.Errorf("cluster options = %+v", co)
	}

	failover := redisstore.NewClient(redisstore.Options{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}, MasterName: "mymaster"})
	defer failover.Close()
	if _, ok := failover.(*redis.Client); !ok {
		t.Fatalf("master name: %T, want a failover *redis.Client", failover)
	}
}

// waitSubscribed waits until channel has a subscriber.
func waitSubscribed(t *testing.T, raw redis.UniversalClient, channel string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n, err := raw.PubSubNumSub(context.Background(), channel).Result()
		if err == nil && n[channel] > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no subscriber on %s", channel)
}

// recorder collects what a subscription delivers, and logs every callback
// in the order the subscription made it.
type recorder struct {
	invs chan keys.Invalidation
	lost atomic.Int32

	mu  sync.Mutex
	log []event
}

// event is one callback of a subscription.
type event struct {
	kind string // "change", "gap" or "confirm"
	inv  keys.Invalidation
	at   time.Time // when the callback ran
	upTo time.Time // of a confirm
}

func newRecorder() *recorder { return &recorder{invs: make(chan keys.Invalidation, 100)} }

func (r *recorder) listener() keys.Listener {
	return keys.Listener{Change: r.fn, Gap: r.onLost, Confirm: r.onConfirm}
}

func (r *recorder) add(e event) {
	r.mu.Lock()
	r.log = append(r.log, e)
	r.mu.Unlock()
}

func (r *recorder) fn(inv keys.Invalidation) {
	r.add(event{kind: "change", inv: inv, at: time.Now()})
	select {
	case r.invs <- inv:
	default: // tests that publish many changes read the log instead
	}
}

func (r *recorder) onLost(bool) {
	r.add(event{kind: "gap", at: time.Now()})
	r.lost.Add(1)
}

func (r *recorder) onConfirm(upTo time.Time) {
	r.add(event{kind: "confirm", at: time.Now(), upTo: upTo})
}

// events returns a copy of the log.
func (r *recorder) events() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

// confirms returns the confirmed times so far.
func (r *recorder) confirms() []time.Time {
	var out []time.Time
	for _, e := range r.events() {
		if e.kind == "confirm" {
			out = append(out, e.upTo)
		}
	}
	return out
}

// waitConfirm waits for a confirmation of a time after t and returns it.
func (r *recorder) waitConfirm(t *testing.T, after time.Time) time.Time {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, c := range r.confirms() {
			if c.After(after) {
				return c
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no confirmation after %v", after)
	return time.Time{}
}

// checkConfirms checks what every subscription must keep: confirmations
// increase, never lie in the future, and never vouch for a time before a
// gap they follow.
func (r *recorder) checkConfirms(t *testing.T) {
	t.Helper()
	var last, gapAt time.Time
	for i, e := range r.events() {
		switch e.kind {
		case "gap":
			gapAt = e.at
		case "confirm":
			if !e.upTo.After(last) {
				t.Errorf("event %d: confirmation %v not after the previous one %v", i, e.upTo, last)
			}
			if e.upTo.After(e.at) {
				t.Errorf("event %d: confirmation of %v made earlier, at %v", i, e.upTo, e.at)
			}
			if !gapAt.IsZero() && !e.upTo.After(gapAt) {
				t.Errorf("event %d: confirmation of %v vouches across the gap at %v", i, e.upTo, gapAt)
			}
			last = e.upTo
		}
	}
}

func (r *recorder) next(t *testing.T) keys.Invalidation {
	t.Helper()
	select {
	case inv := <-r.invs:
		return inv
	case <-time.After(5 * time.Second):
		t.Fatal("no invalidation delivered")
		return keys.Invalidation{}
	}
}

// subscribe subscribes r until the test ends, and checks that the
// subscription goes away with its context.
func subscribe(t *testing.T, b *redisstore.Backend, r *recorder, raw redis.UniversalClient) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if err := b.Subscribe(ctx, r.listener()); err != nil {
		cancel()
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		r.checkConfirms(t)
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			n, err := raw.PubSubNumSub(context.Background(), b.Channel()).Result()
			if err == nil && n[b.Channel()] == 0 {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Error("subscription still there after its context ended")
	})
}

func TestSubscribe(t *testing.T) {
	b, raw, _ := newBackend(t)
	ctx := context.Background()
	r := newRecorder()
	subscribe(t, b, r, raw)
	// The subscription is in place when Subscribe returns.
	err := b.Update(ctx, func(tx keys.Tx) error {
		tx.Notify(keys.Invalidation{UserID: "u1", KeyID: "k1"})
		tx.Notify(keys.Invalidation{UserID: "u1", KeyID: "k1"}) // deduplicated
		tx.Notify(keys.Invalidation{UserID: "u2"})
		return tx.Put("users", "u1", []byte("x"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.next(t); got != (keys.Invalidation{UserID: "u1", KeyID: "k1"}) {
		t.Errorf("first invalidation = %+v", got)
	}
	if got := r.next(t); got != (keys.Invalidation{UserID: "u2"}) {
		t.Errorf("second invalidation = %+v", got)
	}

	// A failed Update publishes nothing; malformed messages are ignored.
	_ = b.Update(ctx, func(tx keys.Tx) error {
		tx.Notify(keys.Invalidation{UserID: "rolled-back"})
		return errors.New("abort")
	})
	raw.Publish(ctx, b.Channel(), "not json")
	raw.Publish(ctx, b.Channel(), `{}`)
	if got := r.next(t); got != (keys.Invalidation{}) {
		t.Errorf("after malformed message: got %+v, want the empty invalidation", got)
	}
	if n := r.lost.Load(); n != 0 {
		t.Errorf("lost called %d times on a healthy subscription", n)
	}
	select {
	case inv := <-r.invs:
		t.Errorf("unexpected invalidation %+v", inv)
	default:
	}
}

// TestSubscribeConfirms: a live subscription confirms about once a second,
// with increasing times (checkConfirms checks the order).
func TestSubscribeConfirms(t *testing.T) {
	b, raw, _ := newBackend(t)
	r := newRecorder()
	start := time.Now()
	subscribe(t, b, r, raw)
	deadline := time.Now().Add(15 * time.Second)
	for len(r.confirms()) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d confirmations after 15s, want 4 (about one a second)", len(r.confirms()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cs := r.confirms()
	if !cs[0].After(start) {
		t.Errorf("first confirmation %v is before Subscribe was called (%v)", cs[0], start)
	}
	// The next PING goes out an interval after the previous one was sent:
	// confirmations are at least a second apart, and not many more.
	for i := 1; i < len(cs); i++ {
		if d := cs[i].Sub(cs[i-1]); d < time.Second || d > 5*time.Second {
			t.Errorf("confirmation %d came %v after the previous one, want about 1s", i, d)
		}
	}
	if n := r.lost.Load(); n != 0 {
		t.Errorf("gap called %d times on a healthy subscription", n)
	}
}

// TestConfirmFollowsChanges: the invalidation of every change committed
// before a confirmed time is delivered before that confirmation.
func TestConfirmFollowsChanges(t *testing.T) {
	b, raw, _ := newBackend(t)
	r := newRecorder()
	subscribe(t, b, r, raw)
	ctx := context.Background()

	// Commit changes continuously across several PINGs, noting when each
	// commit had returned (its invalidation was published by then).
	committed := map[string]time.Time{}
	var last time.Time
	stop := time.Now().Add(2500 * time.Millisecond)
	for i := 0; time.Now().Before(stop); i++ {
		id := "u" + strconv.Itoa(i)
		err := b.Update(ctx, func(tx keys.Tx) error {
			tx.Notify(keys.Invalidation{UserID: id})
			return tx.Put("users", id, []byte("x"))
		})
		if err != nil {
			t.Fatal(err)
		}
		last = time.Now()
		committed[id] = last
	}
	r.waitConfirm(t, last)

	delivered := map[string]bool{}
	confirmations := 0
	for _, e := range r.events() {
		switch e.kind {
		case "change":
			delivered[e.inv.UserID] = true
		case "confirm":
			confirmations++
			for id, at := range committed {
				if at.Before(e.upTo) && !delivered[id] {
					t.Errorf("change %s committed at %v was not delivered before the confirmation of %v", id, at, e.upTo)
				}
			}
		}
	}
	if confirmations < 2 {
		t.Errorf("%d confirmations while committing for 2.5s, want several", confirmations)
	}
	if len(delivered) != len(committed) {
		t.Errorf("%d of %d changes delivered", len(delivered), len(committed))
	}
	t.Logf("%d changes, %d confirmations", len(committed), confirmations)
}

func TestSubscribeNilFn(t *testing.T) {
	b, _, _ := newBackend(t)
	if err := b.Subscribe(context.Background(), keys.Listener{}); err == nil {
		t.Fatal("nil fn accepted")
	}
}
