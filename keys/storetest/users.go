package storetest

import (
	"errors"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

func testTenants(t *testing.T, s keys.Store) {
	tn := mustTenant(t, s, "acme")
	if tn.Version != 1 || tn.Status != keys.TenantActive || tn.CreatedAt.IsZero() || tn.CreatedAt.Location() != time.UTC {
		t.Errorf("created tenant = %+v", tn)
	}
	got, err := s.GetTenant(ctx, "acme")
	must(t, "GetTenant", err)
	if got.Name != tn.Name || got.Version != 1 {
		t.Errorf("GetTenant = %+v", got)
	}
	_, err = s.GetTenant(ctx, "nope")
	wantErr(t, "GetTenant(missing)", err, keys.ErrNotFound)
	_, err = s.CreateTenant(ctx, keys.Tenant{ID: "acme", Name: "again"}, actor)
	wantErr(t, "CreateTenant(dup)", err, keys.ErrConflict)
	_, err = s.CreateTenant(ctx, keys.Tenant{ID: "bad id!", Name: "x"}, actor)
	wantField(t, "CreateTenant(bad id)", err, "id")
	_, err = s.CreateTenant(ctx, keys.Tenant{ID: "x"}, actor)
	wantField(t, "CreateTenant(no name)", err, "name")
	_, err = s.CreateTenant(ctx, keys.Tenant{ID: "x", Name: "x", Status: "GONE"}, actor)
	wantField(t, "CreateTenant(bad status)", err, "status")

	up, err := s.UpdateTenant(ctx, "acme", 1, set(func(x *keys.Tenant) { x.Name = "Zeta"; x.Status = keys.TenantArchived }), actor)
	must(t, "UpdateTenant", err)
	if up.Version != 2 || up.Name != "Zeta" || up.Status != keys.TenantArchived {
		t.Errorf("UpdateTenant = %+v", up)
	}
	_, err = s.UpdateTenant(ctx, "acme", 1, set(func(x *keys.Tenant) { x.Name = "Q" }), actor)
	wantErr(t, "UpdateTenant(stale)", err, keys.ErrVersionMismatch)
	_, err = s.UpdateTenant(ctx, "acme", 0, set(func(x *keys.Tenant) { x.Status = "BAD" }), actor)
	wantField(t, "UpdateTenant(bad status)", err, "status")
	_, err = s.UpdateTenant(ctx, "nope", 0, set(func(x *keys.Tenant) {}), actor)
	wantErr(t, "UpdateTenant(missing)", err, keys.ErrNotFound)

	mustTenant(t, s, "beta")
	mustTenant(t, s, "alpha")
	p, err := s.ListTenants(ctx, keys.TenantQuery{ListOptions: keys.ListOptions{Sort: []keys.Sort{{Field: "name", Desc: true}}}})
	must(t, "ListTenants", err)
	if got := names(p.Items, func(x keys.Tenant) string { return x.ID }); got != "acme,beta,alpha" || p.Total != 3 {
		t.Errorf("ListTenants by name desc = %d %s", p.Total, got)
	}
	p, err = s.ListTenants(ctx, keys.TenantQuery{Status: keys.TenantActive})
	must(t, "ListTenants(status)", err)
	if got := names(p.Items, func(x keys.Tenant) string { return x.ID }); got != "alpha,beta" || p.Total != 2 {
		t.Errorf("ListTenants(ACTIVE) = %d %s", p.Total, got)
	}
	p, err = s.ListTenants(ctx, keys.TenantQuery{IDs: []string{"beta", "acme", "missing"}})
	must(t, "ListTenants(ids)", err)
	if got := names(p.Items, func(x keys.Tenant) string { return x.ID }); got != "acme,beta" || p.Total != 2 {
		t.Errorf("ListTenants(ids) = %d %s", p.Total, got)
	}
	p, err = s.ListTenants(ctx, keys.TenantQuery{Q: "ZET"})
	must(t, "ListTenants(q)", err)
	if p.Total != 1 || p.Items[0].ID != "acme" {
		t.Errorf("ListTenants(q) = %+v", p)
	}
	_, err = s.ListTenants(ctx, keys.TenantQuery{ListOptions: keys.ListOptions{Sort: []keys.Sort{{Field: "color"}}}})
	wantField(t, "ListTenants(bad sort)", err, "sort")
}

func testUserCRUD(t *testing.T, s keys.Store) {
	tn := mustTenant(t, s, "acme")
	u, err := s.CreateUser(ctx, keys.User{Name: "ci-bot", Type: keys.UserService, Role: keys.RoleAdmin, PrimaryTenant: tn.ID, Email: "ci@example.com"}, actor)
	must(t, "CreateUser", err)
	if !regexp.MustCompile(`^[1-9][0-9]{14}$`).MatchString(u.ID) {
		t.Errorf("generated id %q is not 15 decimal digits", u.ID)
	}
	if u.Status != keys.UserActive || u.Version != 1 || u.CreatedAt.IsZero() || !u.UpdatedAt.Equal(u.CreatedAt) {
		t.Errorf("created user = %+v", u)
	}
	if u.CustomerRoles == nil || u.AccessControlEntities == nil {
		t.Errorf("nil slices not made empty: %+v", u)
	}
	got, err := s.GetUser(ctx, u.ID)
	must(t, "GetUser", err)
	if got.Name != "ci-bot" || got.Email != "ci@example.com" || got.Type != keys.UserService || got.Version != 1 {
		t.Errorf("GetUser = %+v", got)
	}
	_, err = s.GetUser(ctx, "404")
	wantErr(t, "GetUser(missing)", err, keys.ErrNotFound)

	chosen, err := s.CreateUser(ctx, keys.User{ID: "svc.reporting", Name: "reporting", Type: keys.UserApplication, Role: keys.RoleViewer, PrimaryTenant: tn.ID, Status: keys.UserInactive}, actor)
	must(t, "CreateUser(chosen id)", err)
	if chosen.ID != "svc.reporting" || chosen.Status != keys.UserInactive {
		t.Errorf("CreateUser(chosen id) = %+v", chosen)
	}
	_, err = s.CreateUser(ctx, keys.User{ID: "svc.reporting", Name: "other", PrimaryTenant: tn.ID}, actor)
	wantErr(t, "CreateUser(dup id)", err, keys.ErrConflict)

	up, err := s.UpdateUser(ctx, u.ID, 1, set(func(x *keys.User) {
		x.Description = "builds"
		x.CustomerRoles = []string{"deployer"}
		x.RequestLimit = 600
	}), actor)
	must(t, "UpdateUser", err)
	if up.Version != 2 || up.Description != "builds" || len(up.CustomerRoles) != 1 || up.RequestLimit != 600 || !up.CreatedAt.Equal(u.CreatedAt) {
		t.Errorf("UpdateUser = %+v", up)
	}
	_, err = s.UpdateUser(ctx, u.ID, 0, set(func(x *keys.User) { x.ID = "other" }), actor)
	wantField(t, "UpdateUser(id)", err, "id")
	same, err := s.UpdateUser(ctx, u.ID, 0, set(func(x *keys.User) { x.Version = 99; x.CreatedAt = time.Time{} }), actor)
	must(t, "UpdateUser(immutable fields)", err)
	if same.Version != 2 || !same.CreatedAt.Equal(u.CreatedAt) {
		t.Errorf("immutable fields changed: %+v", same)
	}
	boom := errors.New("boom")
	_, err = s.UpdateUser(ctx, u.ID, 0, func(*keys.User) error { return boom }, actor)
	wantErr(t, "UpdateUser(mutate error)", err, boom)
	_, err = s.UpdateUser(ctx, "404", 0, set(func(*keys.User) {}), actor)
	wantErr(t, "UpdateUser(missing)", err, keys.ErrNotFound)
}

func testUserValidation(t *testing.T, s keys.Store) {
	tn := mustTenant(t, s, "acme")
	for _, tc := range []struct {
		name  string
		u     keys.User
		field string
	}{
		{"no name", keys.User{PrimaryTenant: tn.ID}, "name"},
		{"bad type", keys.User{Name: "a", Type: "HUMAN", PrimaryTenant: tn.ID}, "type"},
		{"bad role", keys.User{Name: "a", Role: "OWNER", PrimaryTenant: tn.ID}, "role"},
		{"no tenant", keys.User{Name: "a"}, "primaryTenant"},
		{"unknown tenant", keys.User{Name: "a", PrimaryTenant: "nope"}, "primaryTenant"},
		{"bad id", keys.User{ID: "a b", Name: "a", PrimaryTenant: tn.ID}, "id"},
		{"DELETED at creation", keys.User{Name: "a", PrimaryTenant: tn.ID, Status: keys.UserDeleted}, "status"},
		{"DELETING at creation", keys.User{Name: "a", PrimaryTenant: tn.ID, Status: keys.UserDeleting}, "status"},
		{"bad status", keys.User{Name: "a", PrimaryTenant: tn.ID, Status: "ZOMBIE"}, "status"},
		{"negative limit", keys.User{Name: "a", PrimaryTenant: tn.ID, RequestLimit: -1}, "requestLimit"},
	} {
		_, err := s.CreateUser(ctx, tc.u, actor)
		wantField(t, tc.name, err, tc.field)
	}
	u := mustUser(t, s, tn.ID, "ok")
	_, err := s.UpdateUser(ctx, u.ID, 0, set(func(x *keys.User) { x.Name = " " }), actor)
	wantField(t, "UpdateUser(blank name)", err, "name")
	_, err = s.UpdateUser(ctx, u.ID, 0, set(func(x *keys.User) { x.PrimaryTenant = "nope" }), actor)
	wantField(t, "UpdateUser(unknown tenant)", err, "primaryTenant")
}

func testUserNameUnique(t *testing.T, s keys.Store) {
	a := mustTenant(t, s, "a")
	b := mustTenant(t, s, "b")
	u := mustUser(t, s, a.ID, "Reporter")
	_, err := s.CreateUser(ctx, keys.User{Name: "reporter", PrimaryTenant: a.ID}, actor)
	wantErr(t, "same name, other case, same tenant", err, keys.ErrConflict)
	other := mustUser(t, s, b.ID, "reporter")
	mustUser(t, s, a.ID, "writer")
	_, err = s.UpdateUser(ctx, u.ID, 0, set(func(x *keys.User) { x.Name = "WRITER" }), actor)
	wantErr(t, "rename onto a taken name", err, keys.ErrConflict)
	_, err = s.UpdateUser(ctx, other.ID, 0, set(func(x *keys.User) { x.PrimaryTenant = a.ID }), actor)
	wantErr(t, "move into a tenant where the name is taken", err, keys.ErrConflict)
	// Renaming frees the old name.
	_, err = s.UpdateUser(ctx, u.ID, 0, set(func(x *keys.User) { x.Name = "Reporter 2" }), actor)
	must(t, "rename", err)
	mustUser(t, s, a.ID, "reporter")
	// Deleting frees the name.
	_, err = s.DeleteUser(ctx, other.ID, 0, actor)
	must(t, "DeleteUser", err)
	mustUser(t, s, b.ID, "Reporter")
}

func testUserVersions(t *testing.T, s keys.Store) {
	_, u := setup(t, s)
	for i := int64(1); i <= 3; i++ {
		up, err := s.UpdateUser(ctx, u.ID, i, set(func(x *keys.User) { x.Description = time.Now().String() }), actor)
		must(t, "UpdateUser", err)
		if up.Version != i+1 || !up.UpdatedAt.After(u.CreatedAt) && !up.UpdatedAt.Equal(u.CreatedAt) {
			t.Fatalf("version after update %d = %d", i, up.Version)
		}
	}
	_, err := s.UpdateUser(ctx, u.ID, 3, set(func(x *keys.User) { x.Description = "stale" }), actor)
	wantErr(t, "stale version", err, keys.ErrVersionMismatch)
	_, err = s.UpdateUser(ctx, u.ID, 5, set(func(x *keys.User) { x.Description = "future" }), actor)
	wantErr(t, "future version", err, keys.ErrVersionMismatch)
	up, err := s.UpdateUser(ctx, u.ID, 0, set(func(x *keys.User) { x.Description = "any" }), actor)
	must(t, "version 0", err)
	if up.Version != 5 {
		t.Errorf("version = %d, want 5", up.Version)
	}
	_, err = s.DeleteUser(ctx, u.ID, 4, actor)
	wantErr(t, "DeleteUser(stale)", err, keys.ErrVersionMismatch)
}

// userIn creates a user and moves it into status.
func userIn(t *testing.T, s keys.Store, tenant, name string, status keys.UserStatus) keys.User {
	t.Helper()
	initial := status
	if status == keys.UserDeleting || status == keys.UserDeleted {
		initial = keys.UserActive
	}
	u, err := s.CreateUser(ctx, keys.User{Name: name, PrimaryTenant: tenant, Status: initial}, actor)
	must(t, "CreateUser("+string(initial)+")", err)
	switch status {
	case keys.UserDeleting:
		u, err = s.UpdateUser(ctx, u.ID, 0, set(func(x *keys.User) { x.Status = keys.UserDeleting }), actor)
	case keys.UserDeleted:
		u, err = s.DeleteUser(ctx, u.ID, 0, actor)
	}
	must(t, "moving user to "+string(status), err)
	if u.Status != status {
		t.Fatalf("user is %s, want %s", u.Status, status)
	}
	return u
}

func testUserStateMachine(t *testing.T, s keys.Store) {
	tn := mustTenant(t, s, "acme")
	all := []keys.UserStatus{keys.UserCreate, keys.UserActive, keys.UserInactive, keys.UserDeleting, keys.UserDeleted}
	legal := map[[2]keys.UserStatus]bool{
		{keys.UserCreate, keys.UserActive}:     true,
		{keys.UserActive, keys.UserInactive}:   true,
		{keys.UserInactive, keys.UserActive}:   true,
		{keys.UserActive, keys.UserDeleting}:   true,
		{keys.UserInactive, keys.UserDeleting}: true,
	}
	n := 0
	for _, from := range all {
		for _, to := range all {
			if from == to {
				continue
			}
			n++
			u := userIn(t, s, tn.ID, "u"+string(rune('a'+n)), from)
			got, err := s.UpdateUser(ctx, u.ID, u.Version, set(func(x *keys.User) { x.Status = to }), actor)
			if legal[[2]keys.UserStatus{from, to}] {
				if err != nil || got.Status != to {
					t.Errorf("UpdateUser %s → %s: %v", from, to, err)
				}
			} else {
				wantErr(t, "UpdateUser "+string(from)+" → "+string(to), err, keys.ErrConflict)
			}
		}
		// DeleteUser reaches DELETED from every state but DELETED.
		u := userIn(t, s, tn.ID, "d"+string(from), from)
		got, err := s.DeleteUser(ctx, u.ID, u.Version, actor)
		if from == keys.UserDeleted {
			wantErr(t, "DeleteUser of a DELETED user", err, keys.ErrConflict)
		} else if err != nil || got.Status != keys.UserDeleted {
			t.Errorf("DeleteUser from %s: %v", from, err)
		}
	}
	// A DELETED user can still change other fields (e.g. its purge date).
	u := userIn(t, s, tn.ID, "purgeable", keys.UserDeleted)
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	got, err := s.UpdateUser(ctx, u.ID, 0, set(func(x *keys.User) { x.PlannedPurgeDate = &at }), actor)
	if err != nil || got.PlannedPurgeDate == nil || !got.PlannedPurgeDate.Equal(at) {
		t.Errorf("setting the purge date of a DELETED user: %v %+v", err, got)
	}
}

func testDeleteUser(t *testing.T, s keys.Store) {
	_, u := setup(t, s)
	k1 := mustKey(t, s, u, "one")
	k2 := mustKey(t, s, u, "two")
	s1 := mustSecret(t, s, u, "a")
	s2 := mustSecret(t, s, u, "b")
	cur, err := s.GetUser(ctx, u.ID)
	must(t, "GetUser", err)

	// A failed delete changes nothing.
	_, err = s.DeleteUser(ctx, u.ID, cur.Version+1, actor)
	wantErr(t, "DeleteUser(stale)", err, keys.ErrVersionMismatch)
	if k, _ := s.GetKey(ctx, k1.ID); k.Status != keys.KeyActive {
		t.Errorf("failed delete touched key: %s", k.Status)
	}

	del, err := s.DeleteUser(ctx, u.ID, cur.Version, actor)
	must(t, "DeleteUser", err)
	if del.Status != keys.UserDeleted || del.Version != cur.Version+2 { // DELETING, then DELETED
		t.Errorf("deleted user = %+v", del)
	}
	for _, id := range []string{k1.ID, k2.ID} {
		k, err := s.GetKey(ctx, id)
		must(t, "GetKey", err)
		if k.Status != keys.KeyRevoked || k.Version != 2 {
			t.Errorf("key %s after DeleteUser: %s v%d", id, k.Status, k.Version)
		}
	}
	for _, id := range []string{s1.ID, s2.ID} {
		sec, err := s.GetSecret(ctx, u.ID, id)
		must(t, "GetSecret", err)
		if sec.Status != keys.SecretInactive {
			t.Errorf("secret %s after DeleteUser: %s", id, sec.Status)
		}
	}
	got, err := s.GetUser(ctx, u.ID)
	must(t, "GetUser(deleted)", err)
	if got.Status != keys.UserDeleted {
		t.Errorf("GetUser(deleted) = %s", got.Status)
	}
	_, err = s.CreateKey(ctx, newKey(u, "three"), actor)
	wantErr(t, "CreateKey for a DELETED user", err, keys.ErrConflict)
	_, err = s.CreateSecret(ctx, newSecret(u, "c", keys.SecretActive), actor)
	wantErr(t, "CreateSecret for a DELETED user", err, keys.ErrConflict)
	_, err = s.DeleteUser(ctx, "404", 0, actor)
	wantErr(t, "DeleteUser(missing)", err, keys.ErrNotFound)
}

func testPurge(t *testing.T, s keys.Store) {
	tn, u := setup(t, s)
	other := mustTenant(t, s, "other")
	k := mustKey(t, s, u, "one")
	sec := mustSecret(t, s, u, "a")
	_, _, err := s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: other.ID, Role: keys.RoleViewer}, actor)
	must(t, "PutPermission", err)
	wantErr(t, "PurgeUser(ACTIVE)", s.PurgeUser(ctx, u.ID), keys.ErrConflict)

	past := time.Now().Add(-time.Hour)
	future := time.Now().Add(time.Hour)
	_, err = s.UpdateUser(ctx, u.ID, 0, set(func(x *keys.User) { x.PlannedPurgeDate = &past }), actor)
	must(t, "set purge date", err)
	_, err = s.DeleteUser(ctx, u.ID, 0, actor)
	must(t, "DeleteUser", err)
	later := userIn(t, s, tn.ID, "later", keys.UserActive)
	_, err = s.UpdateUser(ctx, later.ID, 0, set(func(x *keys.User) { x.PlannedPurgeDate = &future }), actor)
	must(t, "set purge date", err)
	_, err = s.DeleteUser(ctx, later.ID, 0, actor)
	must(t, "DeleteUser", err)
	alive := mustUser(t, s, tn.ID, "alive")
	_, err = s.UpdateUser(ctx, alive.ID, 0, set(func(x *keys.User) { x.PlannedPurgeDate = &past }), actor)
	must(t, "set purge date", err)

	due, err := s.DueForPurge(ctx, time.Now(), 10)
	must(t, "DueForPurge", err)
	if len(due) != 1 || due[0] != u.ID {
		t.Errorf("DueForPurge = %v, want [%s]", due, u.ID)
	}
	due, err = s.DueForPurge(ctx, time.Now().Add(2*time.Hour), 10)
	must(t, "DueForPurge(later)", err)
	if len(due) != 2 {
		t.Errorf("DueForPurge(+2h) = %v, want 2 users", due)
	}

	must(t, "PurgeUser", s.PurgeUser(ctx, u.ID))
	_, err = s.GetUser(ctx, u.ID)
	wantErr(t, "GetUser(purged)", err, keys.ErrNotFound)
	_, err = s.GetKey(ctx, k.ID)
	wantErr(t, "GetKey(purged)", err, keys.ErrNotFound)
	_, err = s.GetSecret(ctx, u.ID, sec.ID)
	wantErr(t, "GetSecret(purged)", err, keys.ErrNotFound)
	_, err = s.GetPermission(ctx, u.ID, other.ID)
	wantErr(t, "GetPermission(purged)", err, keys.ErrNotFound)
	_, err = s.History(ctx, u.ID, 1, 10)
	wantErr(t, "History(purged)", err, keys.ErrNotFound)
	_, err = s.ListKeys(ctx, u.ID)
	wantErr(t, "ListKeys(purged)", err, keys.ErrNotFound)
	for _, tenant := range []string{"", tn.ID, other.ID} {
		p, err := s.ListUsers(ctx, keys.UserQuery{Tenant: tenant})
		must(t, "ListUsers", err)
		for _, x := range p.Items {
			if x.ID == u.ID {
				t.Errorf("purged user listed in tenant %q", tenant)
			}
		}
	}
	p, err := s.ListPermissions(ctx, keys.PermissionQuery{Tenant: other.ID})
	must(t, "ListPermissions", err)
	if p.Total != 0 {
		t.Errorf("purged user's permission still listed: %+v", p)
	}
	due, err = s.DueForPurge(ctx, time.Now(), 10)
	must(t, "DueForPurge", err)
	if len(due) != 0 {
		t.Errorf("DueForPurge after purge = %v", due)
	}
	mustUser(t, s, tn.ID, "ci-bot")
	wantErr(t, "PurgeUser(again)", s.PurgeUser(ctx, u.ID), keys.ErrNotFound)
}

func testConcurrentUpdate(t *testing.T, s keys.Store) {
	_, u := setup(t, s)
	for round := range 5 {
		cur, err := s.GetUser(ctx, u.ID)
		must(t, "GetUser", err)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Go(func() {
				_, errs[i] = s.UpdateUser(ctx, u.ID, cur.Version, set(func(x *keys.User) {
					x.Description = string(rune('a'+i)) + string(rune('0'+round))
				}), actor)
			})
		}
		wg.Wait()
		ok, mismatch := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, keys.ErrVersionMismatch):
				mismatch++
			default:
				t.Errorf("concurrent update: %v", err)
			}
		}
		if ok != 1 || mismatch != 1 {
			t.Fatalf("round %d: %d succeeded, %d version mismatches; want 1 and 1", round, ok, mismatch)
		}
		got, err := s.GetUser(ctx, u.ID)
		must(t, "GetUser", err)
		if got.Version != cur.Version+1 {
			t.Fatalf("version = %d, want %d", got.Version, cur.Version+1)
		}
	}
}

func testConcurrentCreate(t *testing.T, s keys.Store) {
	tn := mustTenant(t, s, "acme")
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.CreateUser(ctx, keys.User{Name: "Same-Name", PrimaryTenant: tn.ID}, actor)
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, keys.ErrConflict):
			t.Errorf("concurrent create: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent creates of one name succeeded, want 1", ok)
	}
	p, err := s.ListUsers(ctx, keys.UserQuery{})
	must(t, "ListUsers", err)
	if p.Total != 1 {
		t.Errorf("users after concurrent create = %d", p.Total)
	}
}
