package storetest

import (
	"bytes"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

func testPermissions(t *testing.T, s keys.Store) {
	tn, u := setup(t, s)
	p, created, err := s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: tn.ID, Role: keys.RoleMember, Status: keys.PermissionInvited}, actor)
	must(t, "PutPermission(create)", err)
	if !created || p.ID == "" || p.Version != 1 || p.Status != keys.PermissionInvited || p.CustomerRoles == nil || p.AccessControlEntities == nil {
		t.Errorf("created permission = %+v (created %v)", p, created)
	}
	_, _, err = s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: tn.ID, Role: keys.RoleMember, Status: keys.PermissionActive}, actor)
	wantErr(t, "INVITED → ACTIVE by PutPermission", err, keys.ErrConflict)

	up, created, err := s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: tn.ID, Role: keys.RoleAdmin, CustomerRoles: []string{"billing"}}, actor)
	must(t, "PutPermission(update)", err)
	if created || up.ID != p.ID || up.Version != 2 || up.Role != keys.RoleAdmin || len(up.CustomerRoles) != 1 || up.Status != keys.PermissionInvited {
		t.Errorf("updated permission = %+v (created %v)", up, created)
	}
	_, _, err = s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: tn.ID, Role: keys.RoleViewer, Version: 1}, actor)
	wantErr(t, "PutPermission(stale version)", err, keys.ErrVersionMismatch)

	acc, err := s.AcceptPermission(ctx, p.ID, u.ID)
	must(t, "AcceptPermission", err)
	if acc.Status != keys.PermissionActive || acc.Version != 3 {
		t.Errorf("accepted permission = %+v", acc)
	}
	_, err = s.AcceptPermission(ctx, p.ID, u.ID)
	wantErr(t, "AcceptPermission(ACTIVE)", err, keys.ErrConflict)
	_, err = s.AcceptPermission(ctx, "nope", u.ID)
	wantErr(t, "AcceptPermission(missing)", err, keys.ErrNotFound)

	arch, _, err := s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: tn.ID, Status: keys.PermissionArchived}, actor)
	must(t, "ACTIVE → ARCHIVED", err)
	if arch.Status != keys.PermissionArchived || arch.Role != keys.RoleAdmin {
		t.Errorf("archived permission = %+v", arch)
	}
	_, err = s.AcceptPermission(ctx, p.ID, u.ID)
	wantErr(t, "AcceptPermission(ARCHIVED)", err, keys.ErrConflict)
	re, _, err := s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: tn.ID, Status: keys.PermissionActive}, actor)
	must(t, "ARCHIVED → ACTIVE", err)
	if re.Status != keys.PermissionActive {
		t.Errorf("reactivated permission = %+v", re)
	}
	_, _, err = s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: tn.ID, Status: keys.PermissionInvited}, actor)
	wantErr(t, "ACTIVE → INVITED", err, keys.ErrConflict)

	byID, err := s.GetPermissionByID(ctx, p.ID)
	must(t, "GetPermissionByID", err)
	got, err := s.GetPermission(ctx, u.ID, tn.ID)
	must(t, "GetPermission", err)
	if byID.ID != p.ID || got.ID != p.ID || got.Version != re.Version {
		t.Errorf("GetPermission = %+v, by id %+v", got, byID)
	}
	_, err = s.GetPermission(ctx, u.ID, "other")
	wantErr(t, "GetPermission(missing)", err, keys.ErrNotFound)
	_, err = s.GetPermissionByID(ctx, "nope")
	wantErr(t, "GetPermissionByID(missing)", err, keys.ErrNotFound)

	other := mustTenant(t, s, "other")
	_, created, err = s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: other.ID, Role: keys.RoleViewer}, actor)
	must(t, "PutPermission(second tenant)", err)
	if !created {
		t.Error("permission in a second tenant not created")
	}
	perms, err := s.UserPermissions(ctx, u.ID)
	must(t, "UserPermissions", err)
	if len(perms) != 2 {
		t.Errorf("UserPermissions = %d, want one per tenant (2)", len(perms))
	}

	_, _, err = s.PutPermission(ctx, keys.Permission{UserID: "404", TenantID: tn.ID, Role: keys.RoleViewer}, actor)
	wantField(t, "PutPermission(unknown user)", err, "userId")
	_, _, err = s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: "nope", Role: keys.RoleViewer}, actor)
	wantField(t, "PutPermission(unknown tenant)", err, "workspaceId")
	third := mustTenant(t, s, "third")
	_, _, err = s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: third.ID}, actor)
	wantField(t, "PutPermission(no role)", err, "role")
	_, _, err = s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: third.ID, Role: "OWNER"}, actor)
	wantField(t, "PutPermission(bad role)", err, "role")
}

func testPermissionList(t *testing.T, s keys.Store) {
	tn := mustTenant(t, s, "acme")
	home := mustTenant(t, s, "home")
	var ids []string
	for i, st := range []keys.PermissionStatus{keys.PermissionActive, keys.PermissionInvited, keys.PermissionActive, keys.PermissionArchived} {
		u, err := s.CreateUser(ctx, keys.User{Name: "user" + string(rune('a'+i)), Email: "u" + string(rune('a'+i)) + "@example.com", PrimaryTenant: home.ID}, actor)
		must(t, "CreateUser", err)
		_, _, err = s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: tn.ID, Role: keys.RoleMember, Status: st}, actor)
		must(t, "PutPermission", err)
		ids = append(ids, u.ID)
	}
	count := func(q keys.PermissionQuery) int {
		t.Helper()
		q.Tenant = tn.ID
		p, err := s.ListPermissions(ctx, q)
		must(t, "ListPermissions", err)
		if len(p.Items) != min(p.Total, 30) {
			t.Errorf("ListPermissions(%+v): %d items, total %d", q, len(p.Items), p.Total)
		}
		return p.Total
	}
	for _, tc := range []struct {
		q    keys.PermissionQuery
		want int
	}{
		{keys.PermissionQuery{}, 4},
		{keys.PermissionQuery{Status: keys.PermissionActive}, 2},
		{keys.PermissionQuery{Status: keys.PermissionInvited}, 1},
		{keys.PermissionQuery{Email: "UB@example.com"}, 1},
		{keys.PermissionQuery{Q: "userc"}, 1},
		{keys.PermissionQuery{Q: "member"}, 4},
		{keys.PermissionQuery{UserID: ids[3]}, 1},
		{keys.PermissionQuery{ExcludeTechnicalUsers: true}, 0},
	} {
		if got := count(tc.q); got != tc.want {
			t.Errorf("ListPermissions(%+v) total = %d, want %d", tc.q, got, tc.want)
		}
	}
	p, err := s.ListPermissions(ctx, keys.PermissionQuery{Tenant: tn.ID, ListOptions: keys.ListOptions{Size: 3, Page: 2, Sort: []keys.Sort{{Field: "createdAt", Desc: true}}}})
	must(t, "ListPermissions(page 2)", err)
	if p.Total != 4 || len(p.Items) != 1 || p.Items[0].UserID != ids[0] {
		t.Errorf("ListPermissions(page 2 of 3, createdAt desc) = %+v", p)
	}
	_, err = s.ListPermissions(ctx, keys.PermissionQuery{Tenant: tn.ID, ListOptions: keys.ListOptions{Sort: []keys.Sort{{Field: "name"}}}})
	wantField(t, "ListPermissions(bad sort)", err, "sort")
	// A permission adds the user to the tenant's users.
	users, err := s.ListUsers(ctx, keys.UserQuery{Tenant: tn.ID})
	must(t, "ListUsers(tenant)", err)
	if users.Total != 4 {
		t.Errorf("users of tenant with permissions = %d, want 4", users.Total)
	}
}

func testKeys(t *testing.T, s keys.Store) {
	tn, u := setup(t, s)
	plain, nk := keys.NewAccessKey(hasher, u.ID, tn.ID, "deploy", time.Now().Add(time.Hour))
	k, err := s.CreateKey(ctx, nk, actor)
	must(t, "CreateKey", err)
	if k.Version != 1 || k.Status != keys.KeyActive || k.CreatedAt.IsZero() || !bytes.Equal(k.Hash, hasher.Sum(plain)) {
		t.Errorf("created key = %+v", k)
	}
	got, err := s.GetKey(ctx, k.ID)
	must(t, "GetKey", err)
	if !hasher.Verify(plain, got.Hash) || got.Name != "deploy" || got.TenantID != tn.ID || got.Last4 != plain[len(plain)-4:] {
		t.Errorf("GetKey = %+v", got)
	}
	_, err = s.GetKey(ctx, "nope")
	wantErr(t, "GetKey(missing)", err, keys.ErrNotFound)

	_, err = s.CreateKey(ctx, newKey(u, "DEPLOY"), actor)
	wantErr(t, "CreateKey(dup name)", err, keys.ErrConflict)
	noExp := newKey(u, "noexp")
	noExp.ExpiresAt = time.Time{}
	_, err = s.CreateKey(ctx, noExp, actor)
	wantField(t, "CreateKey(no expiry)", err, "expiresAt")
	_, err = s.CreateKey(ctx, newKey(u, ""), actor)
	wantField(t, "CreateKey(no name)", err, "name")
	_, err = s.CreateKey(ctx, newKey(keys.User{ID: "404", PrimaryTenant: tn.ID}, "x"), actor)
	wantErr(t, "CreateKey(unknown user)", err, keys.ErrNotFound)
	_, err = s.CreateKey(ctx, newKey(keys.User{ID: u.ID, PrimaryTenant: "nope"}, "x"), actor)
	wantField(t, "CreateKey(unknown tenant)", err, "tenant")
	dupID := newKey(u, "other")
	dupID.ID = k.ID
	_, err = s.CreateKey(ctx, dupID, actor)
	wantErr(t, "CreateKey(dup id)", err, keys.ErrConflict)

	second := mustKey(t, s, u, "second")
	exp := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Millisecond)
	up, err := s.UpdateKey(ctx, u.ID, k.ID, 1, set(func(x *keys.Key) { x.Name = "deploy-2"; x.ExpiresAt = exp; x.Status = keys.KeyInactive }), actor)
	must(t, "UpdateKey", err)
	if up.Version != 2 || up.Name != "deploy-2" || !up.ExpiresAt.Equal(exp) || up.Status != keys.KeyInactive || !bytes.Equal(up.Hash, k.Hash) {
		t.Errorf("updated key = %+v", up)
	}
	up, err = s.UpdateKey(ctx, u.ID, k.ID, 2, set(func(x *keys.Key) { x.Status = keys.KeyActive }), actor)
	must(t, "UpdateKey(INACTIVE → ACTIVE)", err)
	if up.Status != keys.KeyActive {
		t.Errorf("reactivated key = %+v", up)
	}
	_, err = s.UpdateKey(ctx, u.ID, k.ID, 2, set(func(x *keys.Key) { x.Name = "stale" }), actor)
	wantErr(t, "UpdateKey(stale)", err, keys.ErrVersionMismatch)
	_, err = s.UpdateKey(ctx, u.ID, k.ID, 0, set(func(x *keys.Key) { x.Name = "second" }), actor)
	wantErr(t, "UpdateKey(rename onto taken name)", err, keys.ErrConflict)
	_, err = s.UpdateKey(ctx, u.ID, k.ID, 0, set(func(x *keys.Key) { x.Hash = []byte("x") }), actor)
	wantField(t, "UpdateKey(hash)", err, "hash")
	_, err = s.UpdateKey(ctx, u.ID, k.ID, 0, set(func(x *keys.Key) { x.TenantID = "other" }), actor)
	wantField(t, "UpdateKey(tenant)", err, "tenant")
	_, err = s.UpdateKey(ctx, u.ID, k.ID, 0, set(func(x *keys.Key) { x.ExpiresAt = time.Time{} }), actor)
	wantField(t, "UpdateKey(no expiry)", err, "expiresAt")
	_, err = s.UpdateKey(ctx, u.ID, k.ID, 0, set(func(x *keys.Key) { x.Status = keys.KeyRevoked }), actor)
	wantErr(t, "UpdateKey(status REVOKED)", err, keys.ErrConflict)

	stranger := mustUser(t, s, tn.ID, "stranger")
	_, err = s.UpdateKey(ctx, stranger.ID, k.ID, 0, set(func(x *keys.Key) { x.Name = "mine" }), actor)
	wantErr(t, "UpdateKey(other user's key)", err, keys.ErrNotFound)
	_, err = s.RevokeKey(ctx, stranger.ID, k.ID, 0, actor)
	wantErr(t, "RevokeKey(other user's key)", err, keys.ErrNotFound)

	list, err := s.ListKeys(ctx, u.ID)
	must(t, "ListKeys", err)
	if got := names(list, func(k keys.Key) string { return k.ID }); got != k.ID+","+second.ID {
		t.Errorf("ListKeys = %s, want oldest first", got)
	}
	empty, err := s.ListKeys(ctx, stranger.ID)
	must(t, "ListKeys(none)", err)
	if empty == nil || len(empty) != 0 {
		t.Errorf("ListKeys(none) = %#v, want empty", empty)
	}
}

func testKeyRevoked(t *testing.T, s keys.Store) {
	_, u := setup(t, s)
	k := mustKey(t, s, u, "deploy")
	_, err := s.RevokeKey(ctx, u.ID, k.ID, 7, actor)
	wantErr(t, "RevokeKey(stale)", err, keys.ErrVersionMismatch)
	rk, err := s.RevokeKey(ctx, u.ID, k.ID, 1, actor)
	must(t, "RevokeKey", err)
	if rk.Status != keys.KeyRevoked || rk.Version != 2 || rk.Usable(time.Now()) {
		t.Errorf("revoked key = %+v", rk)
	}
	_, err = s.UpdateKey(ctx, u.ID, k.ID, 0, set(func(x *keys.Key) { x.Status = keys.KeyActive }), actor)
	wantErr(t, "UpdateKey(REVOKED)", err, keys.ErrConflict)
	_, err = s.UpdateKey(ctx, u.ID, k.ID, 0, set(func(x *keys.Key) { x.Name = "renamed" }), actor)
	wantErr(t, "UpdateKey(REVOKED, name)", err, keys.ErrConflict)
	_, err = s.RevokeKey(ctx, u.ID, k.ID, 0, actor)
	wantErr(t, "RevokeKey(REVOKED)", err, keys.ErrConflict)
	_, _, err = s.ReplaceKey(ctx, u.ID, k.ID, newKey(u, ""), 0, actor)
	wantErr(t, "ReplaceKey(REVOKED)", err, keys.ErrConflict)
	// A revoked key's name is free again.
	mustKey(t, s, u, "deploy")
}

func testReplaceKey(t *testing.T, s keys.Store) {
	tn, u := setup(t, s)
	old := mustKey(t, s, u, "deploy")
	next, prev, err := s.ReplaceKey(ctx, u.ID, old.ID, newKey(u, "ignored"), 0, actor)
	must(t, "ReplaceKey(no grace)", err)
	if next.Name != "deploy" || next.UserID != u.ID || next.TenantID != tn.ID || next.Status != keys.KeyActive || next.Version != 1 {
		t.Errorf("new key = %+v", next)
	}
	if prev.ID != old.ID || prev.ReplacedBy != next.ID || prev.Status != keys.KeyInactive || prev.Version != 2 {
		t.Errorf("old key = %+v", prev)
	}
	stored, err := s.GetKey(ctx, old.ID)
	must(t, "GetKey(old)", err)
	if stored.ReplacedBy != next.ID || stored.Usable(time.Now()) {
		t.Errorf("stored old key = %+v", stored)
	}
	_, _, err = s.ReplaceKey(ctx, u.ID, old.ID, newKey(u, ""), 0, actor)
	wantErr(t, "ReplaceKey(already replaced)", err, keys.ErrConflict)

	start := time.Now()
	next2, prev2, err := s.ReplaceKey(ctx, u.ID, next.ID, newKey(u, ""), time.Hour, actor)
	must(t, "ReplaceKey(grace)", err)
	if prev2.Status != keys.KeyActive || prev2.DisableAt == nil || prev2.ReplacedBy != next2.ID {
		t.Fatalf("old key with grace = %+v", prev2)
	}
	if d := prev2.DisableAt.Sub(start); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("DisableAt is %v after now, want 1h", d)
	}
	if !prev2.Usable(time.Now()) || prev2.Usable(time.Now().Add(2*time.Hour)) {
		t.Errorf("old key usability during/after grace wrong: %+v", prev2)
	}
	if next2.Name != "deploy" {
		t.Errorf("replacement name = %q", next2.Name)
	}
	list, err := s.ListKeys(ctx, u.ID)
	must(t, "ListKeys", err)
	if len(list) != 3 {
		t.Errorf("keys after two replacements = %d, want 3", len(list))
	}
	// The replacement holds the name.
	_, err = s.CreateKey(ctx, newKey(u, "deploy"), actor)
	wantErr(t, "CreateKey(name of the replacement)", err, keys.ErrConflict)

	stranger := mustUser(t, s, tn.ID, "stranger")
	_, _, err = s.ReplaceKey(ctx, stranger.ID, next2.ID, newKey(stranger, ""), 0, actor)
	wantErr(t, "ReplaceKey(other user's key)", err, keys.ErrNotFound)
	_, _, err = s.ReplaceKey(ctx, u.ID, "nope", newKey(u, ""), 0, actor)
	wantErr(t, "ReplaceKey(missing)", err, keys.ErrNotFound)
}

func testSecrets(t *testing.T, s keys.Store) {
	_, u := setup(t, s)
	a := mustSecret(t, s, u, "a")
	if a.Version != 1 || a.Status != keys.SecretActive || a.CreatedAt.IsZero() {
		t.Errorf("created secret = %+v", a)
	}
	b := mustSecret(t, s, u, "b")
	_, err := s.CreateSecret(ctx, newSecret(u, "c", keys.SecretActive), actor)
	wantErr(t, "third ACTIVE secret", err, keys.ErrConflict)
	c, err := s.CreateSecret(ctx, newSecret(u, "c", keys.SecretInactive), actor)
	must(t, "third INACTIVE secret", err)
	_, err = s.UpdateSecret(ctx, u.ID, c.ID, 0, set(func(x *keys.Secret) { x.Status = keys.SecretActive }), actor)
	wantErr(t, "reactivating a third secret", err, keys.ErrConflict)

	_, err = s.UpdateSecret(ctx, u.ID, a.ID, 2, set(func(x *keys.Secret) { x.Status = keys.SecretInactive }), actor)
	wantErr(t, "UpdateSecret(stale)", err, keys.ErrVersionMismatch)
	ia, err := s.UpdateSecret(ctx, u.ID, a.ID, 1, set(func(x *keys.Secret) { x.Status = keys.SecretInactive; x.Name = "old" }), actor)
	must(t, "deactivate", err)
	if ia.Status != keys.SecretInactive || ia.Version != 2 || ia.Name != "old" || !bytes.Equal(ia.Sealed, a.Sealed) {
		t.Errorf("deactivated secret = %+v", ia)
	}
	_, err = s.UpdateSecret(ctx, u.ID, c.ID, 0, set(func(x *keys.Secret) { x.Status = keys.SecretActive }), actor)
	must(t, "reactivate after one was deactivated", err)
	_, err = s.UpdateSecret(ctx, u.ID, a.ID, 0, set(func(x *keys.Secret) { x.Status = keys.SecretActive }), actor)
	wantErr(t, "reactivating into a third live secret", err, keys.ErrConflict)
	_, err = s.UpdateSecret(ctx, u.ID, a.ID, 0, set(func(x *keys.Secret) { x.Sealed = []byte("other") }), actor)
	wantField(t, "UpdateSecret(sealed)", err, "sealed")
	_, err = s.UpdateSecret(ctx, u.ID, a.ID, 0, set(func(x *keys.Secret) { x.Status = "BROKEN" }), actor)
	wantField(t, "UpdateSecret(bad status)", err, "status")

	list, err := s.ListSecrets(ctx, u.ID)
	must(t, "ListSecrets", err)
	if got := names(list, func(x keys.Secret) string { return x.Name }); got != "old,b,c" {
		t.Errorf("ListSecrets = %s, want oldest first", got)
	}
	wantErr(t, "DeleteSecret(stale)", s.DeleteSecret(ctx, u.ID, b.ID, 9, actor), keys.ErrVersionMismatch)
	must(t, "DeleteSecret", s.DeleteSecret(ctx, u.ID, b.ID, 1, actor))
	_, err = s.GetSecret(ctx, u.ID, b.ID)
	wantErr(t, "GetSecret(deleted)", err, keys.ErrNotFound)
	wantErr(t, "DeleteSecret(missing)", s.DeleteSecret(ctx, u.ID, b.ID, 0, actor), keys.ErrNotFound)
	_, err = s.UpdateSecret(ctx, u.ID, a.ID, 0, set(func(x *keys.Secret) { x.Status = keys.SecretActive }), actor)
	must(t, "reactivate after a delete", err)
	other := mustUser(t, s, u.PrimaryTenant, "other")
	_, err = s.GetSecret(ctx, other.ID, a.ID)
	wantErr(t, "GetSecret(other user)", err, keys.ErrNotFound)
	_, err = s.CreateSecret(ctx, keys.Secret{UserID: u.ID, Status: keys.SecretInactive}, actor)
	wantField(t, "CreateSecret(no sealed value)", err, "sealed")
	_, err = s.CreateSecret(ctx, newSecret(keys.User{ID: "404"}, "x", keys.SecretActive), actor)
	wantErr(t, "CreateSecret(unknown user)", err, keys.ErrNotFound)
}
