package keys

import (
	"context"
	"errors"
	"testing"
	"time"
)

// tenantStore serves tenants from a map and counts reads.
type tenantStore struct {
	Store // nil: only GetTenant is called
	t     map[string]Tenant
	reads int
}

func (s *tenantStore) GetTenant(_ context.Context, id string) (Tenant, error) {
	s.reads++
	t, ok := s.t[id]
	if !ok {
		return Tenant{}, ErrNotFound
	}
	return t, nil
}

// TestResolverTenant: tenants are cached, an invalidation naming the
// tenant drops it at once, and unknown tenants are cached briefly.
func TestResolverTenant(t *testing.T) {
	st := &tenantStore{t: map[string]Tenant{"acme": {ID: "acme", Status: TenantActive}}}
	r := NewResolver(st, CacheOptions{}, nil)
	ctx, now := context.Background(), time.Now()
	for range 2 {
		got, err := r.Tenant(ctx, "acme", now)
		if err != nil || got.Status != TenantActive {
			t.Fatalf("Tenant = %+v, %v", got, err)
		}
	}
	if st.reads != 1 {
		t.Fatalf("reads = %d, want 1 (second lookup cached)", st.reads)
	}
	st.t["acme"] = Tenant{ID: "acme", Status: TenantArchived}
	r.Invalidate(Invalidation{UserID: "someone"}) // not this tenant
	if got, _ := r.Tenant(ctx, "acme", now); got.Status != TenantActive || st.reads != 1 {
		t.Fatalf("an unrelated invalidation dropped the tenant: %+v, reads %d", got, st.reads)
	}
	r.Invalidate(Invalidation{TenantID: "acme"})
	if got, err := r.Tenant(ctx, "acme", now); err != nil || got.Status != TenantArchived {
		t.Fatalf("after the invalidation: %+v, %v", got, err)
	}
	for range 2 {
		if _, err := r.Tenant(ctx, "nope", now); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown tenant: %v", err)
		}
	}
	if st.reads != 3 {
		t.Fatalf("reads = %d, want 3 (unknown tenant cached)", st.reads)
	}
}
