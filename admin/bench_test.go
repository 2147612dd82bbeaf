package admin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/keys/filestore"
)

// benchUsers is the size of the benchmark tenant.
const benchUsers = 100_000

// bulkBackend runs every transaction of the store inside one open
// transaction of the real backend while tx is set, so a bulk load pays one
// commit (one fsync) per chunk instead of one per user. The store logic and
// the bbolt file are the real ones.
type bulkBackend struct {
	keys.Backend
	tx keys.Tx
}

func (b *bulkBackend) View(ctx context.Context, fn func(keys.Tx) error) error {
	if b.tx != nil {
		return fn(b.tx)
	}
	return b.Backend.View(ctx, fn)
}

func (b *bulkBackend) Update(ctx context.Context, fn func(keys.Tx) error) error {
	if b.tx != nil {
		return fn(b.tx)
	}
	return b.Backend.Update(ctx, fn)
}

var (
	benchOnce sync.Once
	benchDir  string
	benchErr  error
)

// benchDB builds, once per process, a file store holding tenant T with
// benchUsers users and returns its path.
func benchDB(b *testing.B) string {
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("", "keygate-admin-bench-")
		if benchErr != nil {
			return
		}
		path := filepath.Join(benchDir, "keygate.db")
		fb, err := filestore.Open(path, filestore.Options{})
		if err != nil {
			benchErr = err
			return
		}
		defer fb.Close()
		bulk := &bulkBackend{Backend: fb}
		s := keys.NewStore(bulk, keys.StoreOptions{})
		ctx := context.Background()
		if _, err := s.CreateTenant(ctx, keys.Tenant{ID: "T", Name: "bench"}, "bench"); err != nil {
			benchErr = err
			return
		}
		start := time.Now()
		const chunk = 5000
		for base := 0; base < benchUsers; base += chunk {
			benchErr = fb.Update(ctx, func(tx keys.Tx) error {
				bulk.tx = tx
				defer func() { bulk.tx = nil }()
				for i := base; i < base+chunk; i++ {
					u := keys.User{ID: fmt.Sprintf("%015d", 100_000_000_000_000+i), Name: fmt.Sprintf("user-%06d", i), PrimaryTenant: "T"}
					if _, err := s.CreateUser(ctx, u, "bench"); err != nil {
						return err
					}
				}
				return nil
			})
			if benchErr != nil {
				return
			}
		}
		fmt.Fprintf(os.Stderr, "built %d users in %v\n", benchUsers, time.Since(start).Round(time.Millisecond))
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return filepath.Join(benchDir, "keygate.db")
}

// noActivity drops activity-log writes, to separate the listing's cost
// from the per-call activity write (an fsync on the file store).
type noActivity struct{ keys.Store }

func (noActivity) AppendActivity(context.Context, keys.Activity) error { return nil }

// BenchmarkListUsers100k times GET /v1/users?tenant=T&page=3000&size=30 on
// a file store holding 100,000 users in T, authenticated with a tenant
// admin's key.
func BenchmarkListUsers100k(b *testing.B) {
	path := benchDB(b)
	s, err := filestore.NewStore(path, filestore.Options{}, keys.StoreOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	// A tenant admin of T (created once; later runs reuse it).
	h := New(Config{Store: s})
	e := &env{t: b, clk: &clock{t: time.Now()}, store: s, h: h}
	var key string
	if page, err := s.ListUsers(context.Background(), keys.UserQuery{Tenant: "T", Q: "bench-admin"}); err == nil && page.Total > 0 {
		u := page.Items[0]
		plaintext, k := keys.NewAccessKey(keys.NewHasher(nil), u.ID, "T", fmt.Sprint("k", time.Now().UnixNano()), time.Now().Add(time.Hour))
		if _, err := s.CreateKey(context.Background(), k, "bench"); err != nil {
			b.Fatal(err)
		}
		key = plaintext
	} else {
		res := e.trusted("POST", "/v1/users", map[string]any{"name": "bench-admin", "primaryTenant": "T", "role": "ADMIN"}).want(201)
		var u keys.User
		res.data(&u)
		var kv KeyView
		e.trusted("POST", "/v1/users/"+u.ID+"/keys", map[string]any{"name": "k", "expiresAt": time.Now().Add(time.Hour).Format(time.RFC3339)}).want(201).data(&kv)
		key = kv.Key
	}
	for _, tc := range []struct {
		name  string
		store keys.Store
	}{{"with-activity-log", s}, {"without-activity-log", noActivity{s}}} {
		b.Run(tc.name, func(b *testing.B) {
			e := &env{t: b, store: tc.store, h: New(Config{Store: tc.store})}
			var users []keys.User
			e.do("GET", "/v1/users?tenant=T&page=3000&size=30", key, nil).want(200).data(&users)
			if len(users) != 30 {
				b.Fatalf("page 3000 has %d users", len(users))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				e.do("GET", "/v1/users?tenant=T&page=3000&size=30", key, nil).want(200)
			}
		})
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}
