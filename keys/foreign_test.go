package keys_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/keys/filestore"
)

// foreignFixture is a file store with a tenant and an imported user whose
// keys are one in clear and one as Tyk's murmur64 of it.
func foreignFixture(t testing.TB) (keys.Store, *keys.Resolver, *keys.Hasher) {
	t.Helper()
	var res *keys.Resolver
	s, err := filestore.NewStore(filepath.Join(t.TempDir(), "k.db"), filestore.Options{}, keys.StoreOptions{
		OnCommit: func(inv keys.Invalidation) {
			if res != nil {
				res.Invalidate(inv)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	if _, err := s.CreateTenant(ctx, keys.Tenant{ID: "acme", Name: "acme", Status: keys.TenantActive}, "t"); err != nil {
		t.Fatal(err)
	}
	h := keys.NewHasher([]byte("pepper"))
	exp := time.Now().Add(time.Hour)
	_, err = s.Import(ctx, keys.ImportBatch{Source: "tyk", Tenant: "acme", Users: []keys.ImportUser{{
		Ref: "u", ExternalID: "u", User: keys.User{Name: "u"},
		Keys: []keys.ImportKey{
			{Ref: "k1", Name: "plain", Plaintext: "tyk-plain-key-000001", ExpiresAt: exp},
			{Ref: "k2", Name: "hashed", HashScheme: keys.HashMurmur64, Hash: keys.LegacyScheme{Name: keys.HashMurmur64}.Sum("tyk-hashed-key-00002"), ExpiresAt: exp},
		},
	}}}, keys.ImportOptions{Hasher: h}, "t")
	if err != nil {
		t.Fatal(err)
	}
	res = keys.NewResolver(s, keys.CacheOptions{}, nil)
	return s, res, h
}

func TestResolveForeignKey(t *testing.T) {
	s, res, h := foreignFixture(t)
	ctx := context.Background()
	now := time.Now()
	all := func(string) bool { return true }
	var sum [32]byte

	h.SumInto(&sum, "tyk-plain-key-000001")
	fk, err := res.ResolveForeignKey(ctx, "tyk-plain-key-000001", &sum, now, res.Key, all)
	if err != nil || fk.Key == nil || fk.Legacy != "" || fk.Key.Name != "plain" {
		t.Fatalf("plain: %+v %v", fk, err)
	}
	_, misses := res.Stats()
	for range 3 {
		if fk, err := res.ResolveForeignKey(ctx, "tyk-plain-key-000001", &sum, now, res.Key, all); err != nil || fk.Key.Name != "plain" {
			t.Fatal(err)
		}
	}
	if _, m := res.Stats(); m != misses {
		t.Fatalf("cached lookups went to the store: %d misses, then %d", misses, m)
	}

	h.SumInto(&sum, "tyk-hashed-key-00002")
	if _, err := res.ResolveForeignKey(ctx, "tyk-hashed-key-00002", &sum, now, res.Key, func(s string) bool { return !keys.WeakScheme(s) }); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("weak scheme refused: %v", err)
	}
	res.Flush() // forget the remembered miss
	fk, err = res.ResolveForeignKey(ctx, "tyk-hashed-key-00002", &sum, now, res.Key, all)
	if err != nil || fk.Legacy != keys.HashMurmur64 || fk.Key.Name != "hashed" {
		t.Fatalf("legacy: %+v %v", fk, err)
	}
	k, err := s.RehashKey(ctx, fk.Key.ID, fk.Legacy, fk.LegacySum, sum[:], "0002")
	if err != nil {
		t.Fatal(err)
	}
	res.Rehashed(&sum, k.ID)
	fk, err = res.ResolveForeignKey(ctx, "tyk-hashed-key-00002", &sum, now, res.Key, all)
	if err != nil || fk.Legacy != "" || fk.Key.RehashedFrom != keys.HashMurmur64 {
		t.Fatalf("after rehash: %+v %v", fk, err)
	}

	h.SumInto(&sum, "tyk-unknown-key-0003")
	if _, err := res.ResolveForeignKey(ctx, "tyk-unknown-key-0003", &sum, now, res.Key, all); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}

	// Revoking drops the cached entry: the next use is refused.
	h.SumInto(&sum, "tyk-plain-key-000001")
	fk, _ = res.ResolveForeignKey(ctx, "tyk-plain-key-000001", &sum, now, res.Key, all)
	if _, err := s.RevokeKey(ctx, fk.Key.UserID, fk.Key.ID, 0, "t"); err != nil {
		t.Fatal(err)
	}
	fk, err = res.ResolveForeignKey(ctx, "tyk-plain-key-000001", &sum, now, res.Key, all)
	if err == nil && fk.Key.Usable(now) {
		t.Fatal("a revoked imported key is still usable")
	}
}

// BenchmarkResolveKey compares a warm lookup of a kg_ key (by id) with a
// warm lookup of an imported key (hash, then id): the difference is the
// hash and one map lookup.
func BenchmarkResolveKey(b *testing.B) {
	s, res, h := foreignFixture(b)
	ctx := context.Background()
	now := time.Now()
	plaintext, nk := keys.NewAccessKey(h, "", "acme", "native", now.Add(time.Hour))
	users, _ := s.ListUsers(ctx, keys.UserQuery{})
	nk.UserID = users.Items[0].ID
	if _, err := s.CreateKey(ctx, nk, "t"); err != nil {
		b.Fatal(err)
	}
	id, _ := keys.ParseAccessKey(plaintext)
	b.Run("native", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			k, err := res.Key(ctx, id, now)
			if err != nil || !h.Verify(plaintext, k.Hash) {
				b.Fatal(err)
			}
		}
	})
	b.Run("imported", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var sum [32]byte
			h.SumInto(&sum, "tyk-plain-key-000001")
			if _, err := res.ResolveForeignKey(ctx, "tyk-plain-key-000001", &sum, now, res.Key, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
