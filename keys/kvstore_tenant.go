package keys

import (
	"context"
	"fmt"
	"slices"
)

var tenantSortFields = []string{"id", "name", "createdAt"}

// tenantIndexes lists the index entries of a tenant (none for nil).
func tenantIndexes(t *Tenant) []indexEntry {
	if t == nil {
		return nil
	}
	return []indexEntry{
		{"tenants:by:id", t.ID},
		{"tenants:by:name", lower(t.Name)},
		{"tenants:by:createdAt", timeKey(t.CreatedAt)},
	}
}

func tenantSortKey(t *Tenant, field string) string {
	for _, e := range tenantIndexes(t) {
		if e.index == "tenants:by:"+field {
			return e.sortKey
		}
	}
	return ""
}

func validateTenant(t *Tenant) error {
	v := &ValidationError{}
	validID(v, "id", t.ID)
	required(v, "name", t.Name)
	oneOf(v, "status", t.Status, TenantActive, TenantArchived)
	return v.Err()
}

// CreateTenant adds a tenant; ErrConflict when the id exists.
func (s *kvStore) CreateTenant(ctx context.Context, t Tenant, actor string) (Tenant, error) {
	if t.Status == "" {
		t.Status = TenantActive
	}
	if err := validateTenant(&t); err != nil {
		return Tenant{}, err
	}
	err := s.update(ctx, actor, func(r *recorder) error {
		ok, err := exists(r.tx, tblTenants, t.ID)
		if err != nil {
			return err
		}
		if ok {
			return fmt.Errorf("tenant %s exists: %w", t.ID, ErrConflict)
		}
		t.Version, t.CreatedAt = 0, r.now
		stamp(&t.Version, &t.CreatedAt, &t.UpdatedAt, r.now)
		if err := putJSON(r.tx, tblTenants, t.ID, t); err != nil {
			return err
		}
		return syncIndexes(r.tx, t.ID, nil, tenantIndexes(&t))
	})
	if err != nil {
		return Tenant{}, err
	}
	return t, nil
}

// GetTenant returns one tenant or ErrNotFound.
func (s *kvStore) GetTenant(ctx context.Context, id string) (Tenant, error) {
	var t Tenant
	err := s.b.View(ctx, func(tx Tx) (err error) {
		t, err = getJSON[Tenant](tx, tblTenants, id, "tenant "+id)
		return err
	})
	return t, err
}

// UpdateTenant changes name or status.
func (s *kvStore) UpdateTenant(ctx context.Context, id string, version int64, mutate func(*Tenant) error, actor string) (Tenant, error) {
	var out Tenant
	err := s.update(ctx, actor, func(r *recorder) error {
		cur, err := getJSON[Tenant](r.tx, tblTenants, id, "tenant "+id)
		if err != nil {
			return err
		}
		if err := checkVersion("tenant "+id, version, cur.Version); err != nil {
			return err
		}
		next := clone(cur)
		if err := mutate(&next); err != nil {
			return err
		}
		if next.ID != cur.ID {
			return fieldError("id", "cannot be changed")
		}
		next.Version, next.CreatedAt, next.UpdatedAt = cur.Version, cur.CreatedAt, cur.UpdatedAt
		if err := validateTenant(&next); err != nil {
			return err
		}
		if len(diff(cur, next)) == 0 {
			out = cur
			return nil
		}
		stamp(&next.Version, &next.CreatedAt, &next.UpdatedAt, r.now)
		if err := putJSON(r.tx, tblTenants, id, next); err != nil {
			return err
		}
		if err := syncIndexes(r.tx, id, tenantIndexes(&cur), tenantIndexes(&next)); err != nil {
			return err
		}
		r.publish(Invalidation{TenantID: id})
		if cur.Status != TenantArchived && next.Status == TenantArchived {
			if err := r.emit(EventTenantArchived, id, "tenants/"+id, "",
				map[string]any{"tenant": map[string]any{"id": next.ID, "name": next.Name, "status": next.Status}}); err != nil {
				return err
			}
		}
		out = next
		return nil
	})
	return out, err
}

// ListTenants pages through tenants (sort fields: id, name, createdAt).
func (s *kvStore) ListTenants(ctx context.Context, q TenantQuery) (Page[Tenant], error) {
	ps, err := normalize(q.ListOptions, tenantSortFields, Sort{Field: "id"})
	if err != nil {
		return Page[Tenant]{}, err
	}
	l := lister[Tenant]{
		table:   tblTenants,
		index:   func(f string) string { return "tenants:by:" + f },
		sortKey: tenantSortKey,
		id:      func(t *Tenant) string { return t.ID },
	}
	if q.Status != "" || q.Q != "" {
		l.filter = keep(func(t *Tenant) bool {
			return (q.Status == "" || t.Status == q.Status) && (q.Q == "" || containsFold(q.Q, t.ID, t.Name))
		})
	}
	var p Page[Tenant]
	err = s.b.View(ctx, func(tx Tx) error {
		if q.IDs != nil {
			// A short explicit list: load it and sort in memory.
			ids := slices.Clone(q.IDs)
			slices.Sort(ids)
			ids = slices.Compact(ids)
			all, err := l.load(tx, ids)
			if err != nil {
				return err
			}
			p = l.inMemory(all, ps)
			return nil
		}
		p, err = l.list(tx, ps)
		return err
	})
	return p, err
}

// fieldError returns a ValidationError for one field.
func fieldError(field, message string) error {
	v := &ValidationError{}
	v.Add(field, message)
	return v
}

// activeTenant loads a tenant and fails with ErrConflict when it is
// ARCHIVED; field names the input that chose it, for a missing tenant.
func activeTenant(tx Tx, id, field string) error {
	t, err := getJSON[Tenant](tx, tblTenants, id, "tenant "+id)
	if isNotFound(err) {
		return fieldError(field, "tenant does not exist")
	}
	if err != nil {
		return err
	}
	if t.Status != TenantActive {
		return fmt.Errorf("tenant %s is %s: %w", id, t.Status, ErrConflict)
	}
	return nil
}
