package storetest

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

// The authorization model (issue 14): the role that counts is the
// permission's, archived tenants accept nothing new, and invitations need
// the invitee's consent.

// grant gives u an ACTIVE permission with role in tenant.
func grant(t *testing.T, s keys.Store, u keys.User, tenant string, role keys.Role) keys.Permission {
	t.Helper()
	p, _, err := s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: tenant, Role: role, Status: keys.PermissionActive}, actor)
	must(t, "PutPermission("+tenant+")", err)
	return p
}

// hasEntry reports whether the user's history holds an entry by actor with
// action on target whose changes include field from→to.
func hasEntry(t *testing.T, s keys.Store, userID, action, target, field string, from, to any) bool {
	t.Helper()
	h, err := s.History(ctx, userID, 1, 100)
	must(t, "History", err)
	for _, e := range h.Items {
		if e.Action != action || e.Target != target || e.Actor != actor {
			continue
		}
		if c, ok := e.Changes[field]; ok && c.From == from && c.To == to {
			return true
		}
	}
	return false
}

func testRoleMirror(t *testing.T, s keys.Store) {
	tn, u := setup(t, s)
	other := mustTenant(t, s, "other")
	p := grant(t, s, u, tn.ID, keys.RoleAdmin)
	got, err := s.GetUser(ctx, u.ID)
	must(t, "GetUser", err)
	if got.Role != keys.RoleAdmin {
		t.Errorf("user role after its primary permission was granted ADMIN = %s", got.Role)
	}
	grant(t, s, u, other.ID, keys.RoleViewer)

	// Changing the user's role changes the primary permission, not others.
	_, err = s.UpdateUser(ctx, u.ID, 0, set(func(x *keys.User) {
		x.Role = keys.RoleViewer
		x.CustomerRoles = []string{"billing"}
	}), actor)
	must(t, "UpdateUser(role)", err)
	pp, err := s.GetPermission(ctx, u.ID, tn.ID)
	must(t, "GetPermission(primary)", err)
	if pp.Role != keys.RoleViewer || !slices.Equal(pp.CustomerRoles, []string{"billing"}) || pp.Version != p.Version+1 {
		t.Errorf("primary permission after the user's role changed = %+v", pp)
	}
	if !hasEntry(t, s, u.ID, "permission.update", "permission:"+tn.ID, "role", "ADMIN", "VIEWER") {
		t.Error("history has no permission.update ADMIN → VIEWER")
	}
	op, err := s.GetPermission(ctx, u.ID, other.ID)
	must(t, "GetPermission(other)", err)
	if op.Role != keys.RoleViewer || len(op.CustomerRoles) != 0 {
		t.Errorf("permission in another tenant changed: %+v", op)
	}

	// Changing the primary permission changes the user.
	_, _, err = s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: tn.ID, Role: keys.RoleMember, CustomerRoles: []string{}}, actor)
	must(t, "PutPermission(primary role)", err)
	got, err = s.GetUser(ctx, u.ID)
	must(t, "GetUser", err)
	if got.Role != keys.RoleMember || len(got.CustomerRoles) != 0 {
		t.Errorf("user after its primary permission changed = role %s, customer roles %v", got.Role, got.CustomerRoles)
	}
	if !hasEntry(t, s, u.ID, "user.update", "", "role", "VIEWER", "MEMBER") {
		t.Error("history has no user.update VIEWER → MEMBER")
	}
	// A permission in another tenant leaves the user's role alone.
	_, _, err = s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: other.ID, Role: keys.RoleAdmin}, actor)
	must(t, "PutPermission(other role)", err)
	if got, _ = s.GetUser(ctx, u.ID); got.Role != keys.RoleMember {
		t.Errorf("user role after a permission elsewhere changed = %s", got.Role)
	}

	// Moving the primary tenant takes the role of the permission there.
	moved, err := s.UpdateUser(ctx, u.ID, 0, set(func(x *keys.User) { x.PrimaryTenant = other.ID }), actor)
	must(t, "UpdateUser(primaryTenant)", err)
	if moved.Role != keys.RoleAdmin {
		t.Errorf("role after moving to a tenant where the permission is ADMIN = %s", moved.Role)
	}
}

func testArchivedTenant(t *testing.T, s keys.Store) {
	tn, u := setup(t, s)
	grant(t, s, u, tn.ID, keys.RoleMember)
	k := mustKey(t, s, u, "before")
	other := mustTenant(t, s, "other")
	guest := mustUser(t, s, other.ID, "guest")
	inv, _, err := s.PutPermission(ctx, keys.Permission{UserID: guest.ID, TenantID: tn.ID, Role: keys.RoleMember, Status: keys.PermissionInvited}, actor)
	must(t, "PutPermission(invite)", err)
	late := mustUser(t, s, other.ID, "late")

	arch, err := s.UpdateTenant(ctx, tn.ID, 0, set(func(x *keys.Tenant) { x.Status = keys.TenantArchived }), actor)
	must(t, "archive tenant", err)

	_, err = s.CreateUser(ctx, keys.User{Name: "new", PrimaryTenant: tn.ID}, actor)
	wantErr(t, "CreateUser in an archived tenant", err, keys.ErrConflict)
	_, err = s.CreateKey(ctx, newKey(u, "after"), actor)
	wantErr(t, "CreateKey in an archived tenant", err, keys.ErrConflict)
	_, _, err = s.ReplaceKey(ctx, u.ID, k.ID, newKey(u, ""), 0, actor)
	wantErr(t, "ReplaceKey in an archived tenant", err, keys.ErrConflict)
	_, err = s.CreateSecret(ctx, newSecret(u, "s", keys.SecretActive), actor)
	wantErr(t, "CreateSecret for a user of an archived tenant", err, keys.ErrConflict)
	_, _, err = s.PutPermission(ctx, keys.Permission{UserID: late.ID, TenantID: tn.ID, Role: keys.RoleMember, Status: keys.PermissionInvited}, actor)
	wantErr(t, "PutPermission(new) in an archived tenant", err, keys.ErrConflict)
	_, err = s.AcceptPermission(ctx, inv.ID, guest.ID)
	wantErr(t, "AcceptPermission in an archived tenant", err, keys.ErrConflict)
	_, err = s.UpdateUser(ctx, guest.ID, 0, set(func(x *keys.User) { x.PrimaryTenant = tn.ID }), actor)
	wantErr(t, "moving a user into an archived tenant", err, keys.ErrConflict)
	// Nothing changed.
	if ks, err := s.ListKeys(ctx, u.ID); err != nil || len(ks) != 1 || ks[0].Status != keys.KeyActive {
		t.Errorf("keys after refused changes = %+v (%v)", ks, err)
	}
	if p, err := s.GetPermission(ctx, guest.ID, tn.ID); err != nil || p.Status != keys.PermissionInvited {
		t.Errorf("invitation after refused accept = %+v (%v)", p, err)
	}
	// Withdrawing still works.
	_, _, err = s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: tn.ID, Status: keys.PermissionArchived}, actor)
	must(t, "archiving a permission in an archived tenant", err)
	_, _, err = s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: tn.ID, Status: keys.PermissionActive}, actor)
	wantErr(t, "reactivating a permission in an archived tenant", err, keys.ErrConflict)

	// Reactivation restores everything, without re-issuing.
	_, err = s.UpdateTenant(ctx, tn.ID, arch.Version, set(func(x *keys.Tenant) { x.Status = keys.TenantActive }), actor)
	must(t, "reactivate tenant", err)
	_, _, err = s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: tn.ID, Status: keys.PermissionActive}, actor)
	must(t, "reactivating a permission", err)
	mustKey(t, s, u, "after")
	mustSecret(t, s, u, "s")
	_, err = s.AcceptPermission(ctx, inv.ID, guest.ID)
	must(t, "AcceptPermission after reactivation", err)
	if got, err := s.GetKey(ctx, k.ID); err != nil || !got.Usable(time.Now()) {
		t.Errorf("old key after reactivation = %+v (%v)", got, err)
	}
}

func testInvitationConsent(t *testing.T, s keys.Store) {
	tn, _ := setup(t, s)
	other := mustTenant(t, s, "other")
	guest := mustUser(t, s, other.ID, "guest")
	put := func(status keys.PermissionStatus, role keys.Role) (keys.Permission, error) {
		p, _, err := s.PutPermission(ctx, keys.Permission{UserID: guest.ID, TenantID: tn.ID, Role: role, Status: status}, actor)
		return p, err
	}
	inv, err := put(keys.PermissionInvited, keys.RoleMember)
	must(t, "invite", err)
	if inv.AcceptedAt != nil {
		t.Errorf("new invitation has acceptedAt %v", inv.AcceptedAt)
	}
	_, err = put(keys.PermissionActive, keys.RoleAdmin)
	wantErr(t, "INVITED → ACTIVE by an admin", err, keys.ErrConflict)
	_, err = put(keys.PermissionArchived, "")
	must(t, "withdraw the invitation", err)
	_, err = put(keys.PermissionActive, keys.RoleAdmin)
	wantErr(t, "withdrawn invitation → ACTIVE", err, keys.ErrConflict)
	if p, _ := s.GetPermission(ctx, guest.ID, tn.ID); p.Status != keys.PermissionArchived || p.Role != keys.RoleMember {
		t.Errorf("withdrawn invitation after refused activation = %+v", p)
	}
	// A new invitation and its acceptance.
	_, err = put(keys.PermissionInvited, "")
	must(t, "invite again", err)
	acc, err := s.AcceptPermission(ctx, inv.ID, guest.ID)
	must(t, "accept", err)
	if acc.Status != keys.PermissionActive || acc.AcceptedAt == nil {
		t.Errorf("accepted permission = %+v", acc)
	}
	// Once accepted, archiving and reactivating is the admin's to do.
	_, err = put(keys.PermissionArchived, "")
	must(t, "archive accepted", err)
	_, err = put(keys.PermissionActive, "")
	must(t, "reactivate accepted", err)
	// A new invitation clears the acceptance again.
	_, err = put(keys.PermissionArchived, "")
	must(t, "archive", err)
	re, err := put(keys.PermissionInvited, "")
	must(t, "re-invite", err)
	if re.AcceptedAt != nil {
		t.Errorf("re-invitation keeps acceptedAt %v", re.AcceptedAt)
	}
	_, err = put(keys.PermissionArchived, "")
	must(t, "withdraw again", err)
	_, err = put(keys.PermissionActive, "")
	wantErr(t, "withdrawn re-invitation → ACTIVE", err, keys.ErrConflict)
	// A permission granted ACTIVE at creation counts as accepted.
	own := mustUser(t, s, tn.ID, "own")
	g := grant(t, s, own, tn.ID, keys.RoleMember)
	if g.AcceptedAt == nil {
		t.Error("permission granted ACTIVE has no acceptedAt")
	}
}

func testUserIDConflict(t *testing.T, s keys.Store) {
	_, u := setup(t, s)
	other := mustTenant(t, s, "other")
	_, err := s.CreateUser(ctx, keys.User{ID: u.ID, Name: "copy", PrimaryTenant: other.ID}, actor)
	wantErr(t, "CreateUser(taken id)", err, keys.ErrConflict)
	if err != nil && (strings.Contains(err.Error(), u.ID) || strings.Contains(err.Error(), "exists")) {
		t.Errorf("conflict on a taken id says whose: %q", err)
	}
}

func testPermissionFields(t *testing.T, s keys.Store) {
	tn, u := setup(t, s)
	other := mustTenant(t, s, "other")
	inv, _, err := s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: other.ID, Role: keys.RoleMember, Status: keys.PermissionInvited}, "inviter")
	must(t, "invite", err)
	if inv.InvitedBy != "inviter" || inv.ReviewedBy != "" || inv.LastLogin != nil {
		t.Errorf("new invitation = %+v", inv)
	}
	up, _, err := s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: other.ID, Role: keys.RoleViewer}, "reviewer")
	must(t, "review", err)
	if up.InvitedBy != "inviter" || up.ReviewedBy != "reviewer" {
		t.Errorf("reviewed invitation = %+v", up)
	}
	own := grant(t, s, u, tn.ID, keys.RoleMember)
	at := time.Now().UTC().Truncate(time.Millisecond)
	must(t, "TouchLastUsed(logins)", s.TouchLastUsed(ctx, []keys.Usage{
		{UserID: u.ID, Tenant: tn.ID, At: at},
		{UserID: u.ID, Tenant: tn.ID, At: at.Add(-time.Minute)},
		{UserID: u.ID, Tenant: "nowhere", At: at},
	}))
	got, err := s.GetPermission(ctx, u.ID, tn.ID)
	must(t, "GetPermission", err)
	if got.LastLogin == nil || !got.LastLogin.Equal(at) || got.Version != own.Version {
		t.Errorf("permission after a login: lastLogin %v, version %d (was %d)", got.LastLogin, got.Version, own.Version)
	}
	if o, _ := s.GetPermission(ctx, u.ID, other.ID); o.LastLogin != nil {
		t.Errorf("login in one tenant moved another's lastLogin: %v", o.LastLogin)
	}
	// A later change keeps lastLogin and records no lastLogin in history.
	_, _, err = s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: tn.ID, CustomerRoles: []string{"x"}}, actor)
	must(t, "PutPermission", err)
	if got, _ = s.GetPermission(ctx, u.ID, tn.ID); got.LastLogin == nil || !got.LastLogin.Equal(at) {
		t.Errorf("lastLogin after an update = %v", got.LastLogin)
	}

	// Sorting by the fields the list documents.
	v2 := mustUser(t, s, tn.ID, "v2")
	grant(t, s, v2, tn.ID, keys.RoleViewer)
	a3 := mustUser(t, s, tn.ID, "a3")
	grant(t, s, a3, tn.ID, keys.RoleAdmin)
	must(t, "TouchLastUsed", s.TouchLastUsed(ctx, []keys.Usage{{UserID: a3.ID, Tenant: tn.ID, At: at.Add(time.Hour)}}))
	list := func(sorts ...keys.Sort) []string {
		t.Helper()
		p, err := s.ListPermissions(ctx, keys.PermissionQuery{Tenant: tn.ID, ListOptions: keys.ListOptions{Sort: sorts}})
		must(t, "ListPermissions", err)
		var ids []string
		for _, x := range p.Items {
			ids = append(ids, x.UserID)
		}
		return ids
	}
	if got := list(keys.Sort{Field: "role"}); !slices.Equal(got, []string{a3.ID, u.ID, v2.ID}) {
		t.Errorf("by role = %v, want %v", got, []string{a3.ID, u.ID, v2.ID})
	}
	if got := list(keys.Sort{Field: "lastLogin", Desc: true}); !slices.Equal(got, []string{a3.ID, u.ID, v2.ID}) {
		t.Errorf("by lastLogin desc = %v", got)
	}
	if got := list(keys.Sort{Field: "status"}, keys.Sort{Field: "role", Desc: true}); len(got) != 3 || got[0] != v2.ID {
		t.Errorf("by status, -role = %v", got)
	}
	_, err = s.ListPermissions(ctx, keys.PermissionQuery{Tenant: tn.ID, ListOptions: keys.ListOptions{Sort: []keys.Sort{{Field: "email"}}}})
	wantField(t, "ListPermissions(sort email)", err, "sort")
}

func testRetention(t *testing.T, s keys.Store) {
	_, u := setup(t, s)
	_, other := setup2(t, s)
	for i, d := range []string{"one", "two"} {
		_, err := s.UpdateUser(ctx, u.ID, 0, set(func(x *keys.User) { x.Description = d }), actor)
		must(t, "UpdateUser "+strconv.Itoa(i), err)
	}
	cutoff := time.Now()
	_, err := s.UpdateUser(ctx, u.ID, 0, set(func(x *keys.User) { x.Description = "three" }), actor)
	must(t, "UpdateUser(after cutoff)", err)

	n, err := s.PurgeHistory(ctx, cutoff)
	must(t, "PurgeHistory", err)
	if n != 4 { // u: create, one, two; other: create
		t.Errorf("PurgeHistory removed %d entries, want 4", n)
	}
	h, err := s.History(ctx, u.ID, 1, 100)
	must(t, "History", err)
	if h.Total != 1 || len(h.Items) != 1 || h.Items[0].Changes["description"].To != "three" {
		t.Fatalf("history after retention = %+v", h)
	}
	if oh, _ := s.History(ctx, other.ID, 1, 100); oh.Total != 0 {
		t.Errorf("other user's history after retention = %+v", oh)
	}
	// New entries still come newest first.
	for _, d := range []string{"four", "five"} {
		_, err := s.UpdateUser(ctx, u.ID, 0, set(func(x *keys.User) { x.Description = d }), actor)
		must(t, "UpdateUser", err)
	}
	h, err = s.History(ctx, u.ID, 1, 100)
	must(t, "History", err)
	var got []any
	for _, e := range h.Items {
		got = append(got, e.Changes["description"].To)
	}
	if h.Total != 3 || len(got) != 3 || got[0] != "five" || got[1] != "four" || got[2] != "three" {
		t.Fatalf("history after retention and new changes = %v", got)
	}
	if n, err := s.PurgeHistory(ctx, cutoff); err != nil || n != 0 {
		t.Errorf("second PurgeHistory = %d, %v", n, err)
	}
	// A purged user's retention bookkeeping goes with it.
	_, err = s.DeleteUser(ctx, u.ID, 0, actor)
	must(t, "DeleteUser", err)
	must(t, "PurgeUser", s.PurgeUser(ctx, u.ID))

	now := time.Now().UTC()
	for _, at := range []time.Time{now.Add(-100 * 24 * time.Hour), now.Add(-91 * 24 * time.Hour), now.Add(-time.Hour)} {
		must(t, "AppendActivity", s.AppendActivity(ctx, keys.Activity{At: at, Actor: actor, Method: "GET", Path: "/v1/users", Status: 200}))
	}
	n, err = s.PurgeActivity(ctx, now.Add(-90*24*time.Hour))
	must(t, "PurgeActivity", err)
	a, err := s.ListActivity(ctx, keys.ActivityQuery{})
	must(t, "ListActivity", err)
	if n != 2 || a.Total != 1 || !a.Items[0].At.Equal(now.Add(-time.Hour)) {
		t.Errorf("PurgeActivity removed %d; left %+v", n, a)
	}
}

// setup2 returns a second tenant and a user in it.
func setup2(t *testing.T, s keys.Store) (keys.Tenant, keys.User) {
	t.Helper()
	tn := mustTenant(t, s, "second")
	return tn, mustUser(t, s, tn.ID, "second-bot")
}
