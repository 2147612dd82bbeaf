package filestore

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/keygate/keygate/keys"
)

// BenchmarkListUsers100k pages through 100,000 users of one tenant. The
// setup creates them through the Store with fsync off (it is setup, not
// what is measured).
func BenchmarkListUsers100k(b *testing.B) {
	const users = 100_000
	be, err := Open(filepath.Join(b.TempDir(), "keygate.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	s := keys.NewStore(be, keys.StoreOptions{})
	b.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	if _, err := s.CreateTenant(ctx, keys.Tenant{ID: "big", Name: "Big"}, "bench"); err != nil {
		b.Fatal(err)
	}
	be.db.NoSync = true
	for i := range users {
		u := keys.User{ID: fmt.Sprintf("u%06d", i), Name: fmt.Sprintf("user-%06d", (i*7919)%users), PrimaryTenant: "big"}
		if _, err := s.CreateUser(ctx, u, "bench"); err != nil {
			b.Fatal(err)
		}
	}
	be.db.NoSync = false
	for _, tc := range []struct {
		name string
		page int
		sort keys.Sort
	}{
		{"page3000/name", 3000, keys.Sort{Field: "name"}},
		{"page3000/createdAt-desc", 3000, keys.Sort{Field: "createdAt", Desc: true}},
		{"page1667/id", 1667, keys.Sort{Field: "id"}},
		{"page1/name", 1, keys.Sort{Field: "name"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			q := keys.UserQuery{Tenant: "big", ListOptions: keys.ListOptions{Page: tc.page, Size: 30, Sort: []keys.Sort{tc.sort}}}
			b.ReportAllocs()
			for b.Loop() {
				p, err := s.ListUsers(ctx, q)
				if err != nil {
					b.Fatal(err)
				}
				if p.Total != users || len(p.Items) != 30 {
					b.Fatalf("page: total %d, %d items", p.Total, len(p.Items))
				}
			}
		})
	}
}
