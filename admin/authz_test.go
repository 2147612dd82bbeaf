package admin

import (
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

// The authorization model of issue 14, on both stores.

func bothStores(t *testing.T, fn func(t *testing.T, f storeFactory)) {
	t.Run("file", func(t *testing.T) { fn(t, newFileStore) })
	t.Run("redis", func(t *testing.T) { fn(t, newRedisStore) })
}

// historyHas reports whether the user's history holds action on target by
// actor with field changed from→to.
func (e *env) historyHas(userID, actor, action, target, field string, from, to any) bool {
	e.t.Helper()
	var hist []keys.HistoryEntry
	e.do("GET", "/v1/users/"+userID+"/history?size=100", e.rootKey, nil).want(200).data(&hist)
	for _, h := range hist {
		if h.Actor != actor || h.Action != action || h.Target != target {
			continue
		}
		if c, ok := h.Changes[field]; ok && c.From == from && c.To == to {
			return true
		}
	}
	return false
}

// permOf returns a user's permission in a workspace as the superadmin sees it.
func (e *env) permOf(userID, ws string) PermissionView {
	e.t.Helper()
	var ps []PermissionView
	e.do("GET", "/v1/workspaces/"+ws+"/permissions?user="+userID, e.rootKey, nil).want(200).data(&ps)
	if len(ps) != 1 {
		e.t.Fatalf("permissions of %s in %s = %+v", userID, ws, ps)
	}
	return ps[0]
}

// TestRoleChangesTakeEffect (item 1): the role that counts is the
// permission's; the roles API and PATCH role act on it; a demoted admin's
// next call is 403.
func TestRoleChangesTakeEffect(t *testing.T) {
	bothStores(t, func(t *testing.T, f storeFactory) {
		e := newEnv(t, f)
		bossID, boss := e.userWithKey(e.rootKey, "a", "boss", "ADMIN")
		e.do("POST", "/v1/users", boss, map[string]any{"name": "one"}).want(201)

		// Demoted through the roles API: the very next admin call is 403.
		var rv RolesView
		e.do("PUT", "/v1/users/"+bossID+"/roles/VIEWER", e.adminA, nil).want(200).data(&rv)
		if rv.Role != keys.RoleViewer || rv.Workspace != "a" {
			t.Fatalf("roles after demotion = %+v", rv)
		}
		e.do("POST", "/v1/users", boss, map[string]any{"name": "two"}).wantProblem(403, "")
		// The single-role route answers for the role it holds, 404 otherwise.
		e.do("GET", "/v1/users/"+bossID+"/roles/VIEWER", e.adminA, nil).want(200).data(&rv)
		if rv.Role != keys.RoleViewer {
			t.Fatalf("GET role VIEWER = %+v", rv)
		}
		e.do("GET", "/v1/users/"+bossID+"/roles/ADMIN", e.adminA, nil).wantProblem(404, "")
		e.do("PUT", "/v1/users/"+bossID+"/roles/auditor", e.adminA, nil).want(200)
		e.do("GET", "/v1/users/"+bossID+"/roles/auditor", e.adminA, nil).want(200)
		e.do("DELETE", "/v1/users/"+bossID+"/roles/auditor", e.adminA, nil).want(200)
		e.do("GET", "/v1/users/"+bossID+"/roles/auditor", e.adminA, nil).wantProblem(404, "")
		if p := e.permOf(bossID, "a"); p.Role != keys.RoleViewer {
			t.Fatalf("permission after demotion = %+v", p)
		}
		if u, _ := e.getUser(bossID); u.Role != keys.RoleViewer {
			t.Fatalf("user record role after demotion = %s", u.Role)
		}
		if !e.historyHas(bossID, e.adminAID, "permission.update", "permission:a", "role", "ADMIN", "VIEWER") {
			t.Fatal("no history entry for the demotion")
		}

		// Promoted and demoted again through PATCH of the user record.
		e.do("PATCH", "/v1/users/"+bossID, e.rootKey, map[string]any{"role": "ADMIN"}, "If-Match", "*").want(200)
		e.do("POST", "/v1/users", boss, map[string]any{"name": "three"}).want(201)
		e.do("PATCH", "/v1/users/"+bossID, e.adminA, map[string]any{"role": "MEMBER"}, "If-Match", "*").want(200)
		e.do("POST", "/v1/users", boss, map[string]any{"name": "four"}).wantProblem(403, "")
		if p := e.permOf(bossID, "a"); p.Role != keys.RoleMember {
			t.Fatalf("permission after PATCH role = %+v", p)
		}
		if !e.historyHas(bossID, e.adminAID, "user.update", "", "role", "ADMIN", "MEMBER") ||
			!e.historyHas(bossID, e.adminAID, "permission.update", "permission:a", "role", "ADMIN", "MEMBER") {
			t.Fatal("no history entries for PATCH role")
		}

		// Demoted through the permissions API: the user record follows.
		e.do("POST", "/v1/permissions", e.rootKey, map[string]any{
			"user": map[string]any{"id": bossID}, "workspaceId": "a", "role": "ADMIN", "status": "ACTIVE",
		}).want(200)
		e.do("POST", "/v1/users", boss, map[string]any{"name": "five"}).want(201)
		e.do("PUT", "/v1/users/"+bossID+"/roles/ADMIN?workspace=a", e.rootKey, nil).want(200)
		e.do("DELETE", "/v1/users/"+bossID+"/roles/ADMIN", e.adminA, nil).want(200).data(&rv)
		if rv.Role != keys.RoleMember {
			t.Fatalf("roles after deleting the standard role = %+v", rv)
		}
		e.do("POST", "/v1/users", boss, map[string]any{"name": "six"}).wantProblem(403, "")
	})
}

// TestRolesByWorkspace (item 1): ?workspace= picks the permission; a
// superadmin names it when the user has several.
func TestRolesByWorkspace(t *testing.T) {
	bothStores(t, testRolesByWorkspace)
}

func testRolesByWorkspace(t *testing.T, f storeFactory) {
	e := newEnv(t, f)
	u := e.createUser(e.adminA, map[string]any{"name": "multi", "role": "MEMBER"})
	base := "/v1/users/" + u.ID + "/roles"
	var rv RolesView
	e.do("GET", base, e.rootKey, nil).want(200).data(&rv) // one permission: no need to name it
	if rv.Workspace != "a" || rv.Role != keys.RoleMember {
		t.Fatalf("roles = %+v", rv)
	}
	e.do("POST", "/v1/permissions", e.rootKey, map[string]any{
		"user": map[string]any{"id": u.ID}, "workspaceId": "b", "role": "VIEWER", "status": "ACTIVE",
	}).want(201)
	// Several permissions: a superadmin reads them all, and the primary
	// tenant's (a) is the selected one.
	e.do("GET", base, e.rootKey, nil).want(200).data(&rv)
	if rv.Workspace != "a" || len(rv.Tenants) != 2 {
		t.Fatalf("roles without ?workspace= = %+v", rv)
	}
	e.do("PUT", base+"/ADMIN", e.rootKey, nil).wantProblem(400, "workspace") // writes name it
	e.do("GET", base+"?workspace=b", e.rootKey, nil).want(200).data(&rv)
	if rv.Workspace != "b" || rv.Role != keys.RoleViewer {
		t.Fatalf("roles in b = %+v", rv)
	}
	e.do("GET", base, e.adminA, nil).want(200).data(&rv) // the admin's own tenant
	if rv.Workspace != "a" || rv.Role != keys.RoleMember {
		t.Fatalf("roles in a = %+v", rv)
	}
	e.do("GET", base+"?workspace=b", e.adminA, nil).wantProblem(404, "")
	e.do("GET", base+"?workspace=bad%20id", e.rootKey, nil).wantProblem(400, "workspace")
	e.do("PUT", base+"/ADMIN?workspace=b", e.adminA, nil).wantProblem(404, "")
	// The tenant admin of b acts on b's permission; a's stays.
	e.do("PUT", base+"/ADMIN", e.adminB, nil).want(200).data(&rv)
	if rv.Workspace != "b" || rv.Role != keys.RoleAdmin {
		t.Fatalf("roles in b after PUT = %+v", rv)
	}
	if p := e.permOf(u.ID, "a"); p.Role != keys.RoleMember {
		t.Fatalf("permission in a changed: %+v", p)
	}
	if got, _ := e.getUser(u.ID); got.Role != keys.RoleMember {
		t.Fatalf("user record role (primary tenant a) = %s", got.Role)
	}
	// Every keygate user is a technical user: includeTechnicalUsers=false lists none.
	if n := e.do("GET", "/v1/workspaces/a/permissions?includeTechnicalUsers=false", e.rootKey, nil).want(200).envelope().Total; n != 0 {
		t.Fatalf("permissions without technical users = %d", n)
	}
	// Users listed in a tenant show the role that counts there.
	var list []keys.User
	e.do("GET", "/v1/users?tenant=b&q=multi", e.rootKey, nil).want(200).data(&list)
	if len(list) != 1 || list[0].Role != keys.RoleAdmin {
		t.Fatalf("users of b = %+v", list)
	}
}

// TestArchivedTenantAcceptsNothing (item 2, admin API): no new users,
// keys, secrets or permissions (409); its keys do not authenticate;
// reactivation restores them.
func TestArchivedTenantAcceptsNothing(t *testing.T) {
	bothStores(t, func(t *testing.T, f storeFactory) {
		e := newEnv(t, f)
		svc := e.createUser(e.adminB, map[string]any{"name": "svc", "type": "SERVICE"})
		app := e.createUser(e.adminB, map[string]any{"name": "app", "type": "APPLICATION"})
		e.do("PATCH", "/v1/tenants/b", e.rootKey, map[string]any{"status": "ARCHIVED"}, "If-Match", "*").want(200)

		e.do("GET", "/v1/users", e.adminB, nil).wantProblem(401, "")
		e.do("POST", "/v1/users", e.rootKey, map[string]any{"name": "late", "primaryTenant": "b"}).wantProblem(409, "")
		e.do("POST", "/v1/users/"+svc.ID+"/keys", e.rootKey, map[string]any{
			"name": "k", "expiresAt": e.clk.Now().Add(time.Hour).Format(time.RFC3339),
		}).wantProblem(409, "")
		e.do("POST", "/v1/users/"+app.ID+"/secrets", e.rootKey, nil).wantProblem(409, "")
		e.do("POST", "/v1/permissions", e.rootKey, map[string]any{
			"user": map[string]any{"id": e.memberAID}, "workspaceId": "b", "role": "MEMBER", "status": "INVITED",
		}).wantProblem(409, "")
		var keysOf []KeyView
		e.do("GET", "/v1/users/"+svc.ID+"/keys", e.rootKey, nil).want(200).data(&keysOf)
		if len(keysOf) != 0 {
			t.Fatalf("keys after refused creation = %+v", keysOf)
		}

		e.do("PATCH", "/v1/tenants/b", e.rootKey, map[string]any{"status": "ACTIVE"}, "If-Match", "*").want(200)
		e.do("GET", "/v1/users", e.adminB, nil).want(200) // the same key again
		e.createKey(e.adminB, svc.ID, "k")
	})
}

// TestUserTypesLimitCredentials (item 3): the default mapping, 409 with a
// clear message, and a configured policy.
func TestUserTypesLimitCredentials(t *testing.T) {
	bothStores(t, testUserTypesLimitCredentials)
}

func testUserTypesLimitCredentials(t *testing.T, f storeFactory) {
	e := newEnv(t, f)
	exp := e.clk.Now().Add(time.Hour).Format(time.RFC3339)
	svc := e.createUser(e.adminA, map[string]any{"name": "svc", "type": "SERVICE"})
	app := e.createUser(e.adminA, map[string]any{"name": "app", "type": "APPLICATION"})
	tech := e.createUser(e.adminA, map[string]any{"name": "tech", "type": "TECHNICAL"})
	p := e.do("POST", "/v1/users/"+svc.ID+"/secrets", e.adminA, nil).wantProblem(409, "")
	if !strings.Contains(p.Detail, "SERVICE") || !strings.Contains(p.Detail, "signature") {
		t.Fatalf("detail = %q", p.Detail)
	}
	e.do("POST", "/v1/users/"+tech.ID+"/secrets", e.adminA, nil).wantProblem(409, "")
	e.do("POST", "/v1/users/"+app.ID+"/keys", e.adminA, map[string]any{"name": "k", "expiresAt": exp}).wantProblem(409, "")
	e.do("POST", "/v1/users/"+app.ID+"/secrets", e.adminA, nil).want(201)
	e.createKey(e.adminA, svc.ID, "k")
	e.createKey(e.adminA, tech.ID, "k")

	// A key of a user whose type no longer allows keys does not authenticate.
	id, key := e.userWithKey(e.adminA, "a", "admin-2", "ADMIN")
	e.do("GET", "/v1/users", key, nil).want(200)
	e.do("PATCH", "/v1/users/"+id, e.adminA, map[string]any{"type": "APPLICATION"}, "If-Match", "*").want(200)
	e.do("GET", "/v1/users", key, nil).wantProblem(401, "")

	// Operators may allow more.
	e2 := newEnvPolicy(t, f, keys.CredentialPolicy{keys.UserService: {keys.CredAccessKey, keys.CredSignature}}.WithDefaults())
	svc2 := e2.createUser(e2.adminA, map[string]any{"name": "svc", "type": "SERVICE"})
	e2.do("POST", "/v1/users/"+svc2.ID+"/secrets", e2.adminA, nil).want(201)
}

// TestInvitationConsent (item 4): an admin cannot activate an invitation
// nor a withdrawn one; keys are minted only by the primary tenant's admins
// and only where the user holds an ACTIVE permission.
func TestInvitationConsent(t *testing.T) {
	bothStores(t, func(t *testing.T, f storeFactory) {
		e := newEnv(t, f)
		exp := e.clk.Now().Add(time.Hour).Format(time.RFC3339)
		guestID, guestKey := e.userWithKey(e.adminB, "b", "guest", "MEMBER")
		var inv PermissionView
		e.do("POST", "/v1/permissions", e.rootKey, map[string]any{
			"user": map[string]any{"id": guestID}, "workspaceId": "a", "role": "MEMBER", "status": "INVITED",
		}).want(201).data(&inv)
		if inv.InvitedByUser == nil || inv.InvitedByUser.ID != e.rootID || inv.ReviewedByUser != nil || inv.LastLogin != nil || inv.AcceptedAt != nil {
			t.Fatalf("new invitation = %+v", inv)
		}
		put := func(status, role string) *result {
			return e.do("POST", "/v1/permissions", e.adminA, map[string]any{
				"user": map[string]any{"id": guestID}, "workspaceId": "a", "role": role, "status": status,
			})
		}
		put("ACTIVE", "ADMIN").wantProblem(409, "")
		put("ARCHIVED", "MEMBER").want(200)
		put("ACTIVE", "ADMIN").wantProblem(409, "")
		if p := e.permOf(guestID, "a"); p.Status != keys.PermissionArchived || p.Role != keys.RoleMember ||
			p.ReviewedByUser == nil || p.ReviewedByUser.ID != e.adminAID {
			t.Fatalf("withdrawn invitation = %+v", p)
		}
		// Keys only by the primary tenant's admins, and only where ACTIVE.
		e.do("POST", "/v1/users/"+guestID+"/keys", e.adminA, map[string]any{"name": "x", "expiresAt": exp, "tenant": "a"}).wantProblem(403, "")
		e.do("POST", "/v1/users/"+guestID+"/keys", e.rootKey, map[string]any{"name": "x", "expiresAt": exp, "tenant": "a"}).wantProblem(409, "")
		// A new invitation, accepted by the invitee, is the way back.
		put("INVITED", "MEMBER").want(200)
		e.do("POST", "/v1/permissions/"+inv.ID+"/accept", e.adminA, nil).wantProblem(404, "")
		e.do("POST", "/v1/permissions/"+inv.ID+"/accept", guestKey, nil).want(200)
		if !e.historyHas(guestID, guestID, "permission.accept", "permission:a", "status", "INVITED", "ACTIVE") {
			t.Fatal("no history entry for the acceptance")
		}
		e.do("POST", "/v1/users/"+guestID+"/keys", e.adminA, map[string]any{"name": "x", "expiresAt": exp, "tenant": "a"}).wantProblem(403, "")
		e.do("POST", "/v1/users/"+guestID+"/keys", e.rootKey, map[string]any{"name": "x", "expiresAt": exp, "tenant": "a"}).want(201)
		// The tenant admin of a may revoke what is valid in a, not change it.
		var ks []KeyView
		e.do("GET", "/v1/users/"+guestID+"/keys", e.adminA, nil).want(200).data(&ks)
		if len(ks) != 1 {
			t.Fatalf("keys of the guest in a = %+v", ks)
		}
		e.do("PATCH", "/v1/users/"+guestID+"/keys/"+ks[0].ID, e.adminA, map[string]any{"name": "y"}, "If-Match", "*").wantProblem(403, "")
		e.do("DELETE", "/v1/users/"+guestID+"/keys/"+ks[0].ID, e.adminA, nil, "If-Match", "*").want(200)
	})
}

// TestNoUserIDProbing (item 5): a taken id is a generic conflict, the same
// whether the holder is visible to the caller or not.
func TestNoUserIDProbing(t *testing.T) {
	bothStores(t, testNoUserIDProbing)
}

func testNoUserIDProbing(t *testing.T, f storeFactory) {
	e := newEnv(t, f)
	ub := e.createUser(e.adminB, map[string]any{"name": "hidden"})
	ua := e.createUser(e.adminA, map[string]any{"name": "visible"})
	hidden := e.do("POST", "/v1/users", e.adminA, map[string]any{"id": ub.ID, "name": "probe"}).wantProblem(409, "")
	visible := e.do("POST", "/v1/users", e.adminA, map[string]any{"id": ua.ID, "name": "probe"}).wantProblem(409, "")
	if hidden.Detail != visible.Detail || strings.Contains(hidden.Detail, ub.ID) || strings.Contains(hidden.Detail, "exists") {
		t.Fatalf("conflict details: hidden %q, visible %q", hidden.Detail, visible.Detail)
	}
}

// TestCreateUserWithKey: seed 000's one-step form, POST /v1/users with
// "key", answers the user and its API token once; bad input changes nothing.
func TestCreateUserWithKey(t *testing.T) {
	e := newEnv(t, newFileStore)
	exp := e.clk.Now().Add(24 * time.Hour).Format(time.RFC3339)
	var out UserWithKey
	e.do("POST", "/v1/users", e.adminA, map[string]any{
		"name": "bot", "type": "TECHNICAL", "key": map[string]any{"name": "ci", "expiresAt": exp},
	}).want(201).data(&out)
	if out.ID == "" || out.Key == nil || !strings.HasPrefix(out.Key.Key, "kg_") || out.Key.Name != "ci" || out.Key.Tenant != "a" {
		t.Fatalf("created = %+v, key %+v", out.User, out.Key)
	}
	e.do("GET", "/v1/tenants", out.Key.Key, nil).wantProblem(403, "") // a MEMBER's key: valid, not an admin
	var ks []KeyView
	e.do("GET", "/v1/users/"+out.ID+"/keys", e.adminA, nil).want(200).data(&ks)
	if len(ks) != 1 || ks[0].Key != "" {
		t.Fatalf("keys = %+v", ks)
	}
	if !e.historyHas(out.ID, e.adminAID, "key.create", "key:"+out.Key.ID, "name", nil, "ci") {
		t.Fatal("no history entry for the key")
	}
	before := e.do("GET", "/v1/users?tenant=a", e.rootKey, nil).want(200).envelope().Total
	e.do("POST", "/v1/users", e.adminA, map[string]any{"name": "x", "key": map[string]any{"name": "ci"}}).wantProblem(400, "key.expiresAt")
	e.do("POST", "/v1/users", e.adminA, map[string]any{"name": "x", "key": map[string]any{"expiresAt": exp}}).wantProblem(400, "key.name")
	e.do("POST", "/v1/users", e.adminA, map[string]any{"name": "x", "key": map[string]any{"name": "ci", "expiresAt": exp, "bogus": 1}}).wantProblem(400, "")
	e.do("POST", "/v1/users", e.adminA, map[string]any{"name": "x", "type": "APPLICATION", "key": map[string]any{"name": "ci", "expiresAt": exp}}).wantProblem(409, "")
	e.do("PATCH", "/v1/users/"+out.ID, e.adminA, map[string]any{"key": map[string]any{"name": "ci", "expiresAt": exp}}, "If-Match", "*").wantProblem(400, "key")
	if after := e.do("GET", "/v1/users?tenant=a", e.rootKey, nil).want(200).envelope().Total; after != before {
		t.Fatalf("users after refused creations = %d, want %d", after, before)
	}
}

// TestCreateState: seed 004's CREATE state, for a user that is being set
// up: its keys authenticate nothing until it is made ACTIVE.
func TestCreateState(t *testing.T) {
	e := newEnv(t, newFileStore)
	exp := e.clk.Now().Add(24 * time.Hour).Format(time.RFC3339)
	var out UserWithKey
	e.do("POST", "/v1/users", e.adminA, map[string]any{
		"name": "setup", "role": "ADMIN", "status": "CREATE", "key": map[string]any{"name": "ci", "expiresAt": exp},
	}).want(201).data(&out)
	if out.Status != keys.UserCreate {
		t.Fatalf("status = %s", out.Status)
	}
	e.do("GET", "/v1/users", out.Key.Key, nil).wantProblem(401, "")
	e.do("PATCH", "/v1/users/"+out.ID, e.adminA, map[string]any{"status": "INACTIVE"}, "If-Match", "*").wantProblem(409, "")
	e.do("PATCH", "/v1/users/"+out.ID, e.adminA, map[string]any{"status": "ACTIVE"}, "If-Match", "*").want(200)
	e.do("GET", "/v1/users", out.Key.Key, nil).want(200)
	e.do("PATCH", "/v1/users/"+out.ID, e.adminA, map[string]any{"status": "CREATE"}, "If-Match", "*").wantProblem(409, "")
	if !e.historyHas(out.ID, e.adminAID, "user.update", "", "status", "CREATE", "ACTIVE") {
		t.Fatal("no history entry for CREATE → ACTIVE")
	}
}

// TestRetention: the sweep removes history and activity entries past their
// retention; the history route and export show what is kept.
func TestRetention(t *testing.T) {
	e := newEnv(t, newFileStore)
	u := e.createUser(e.adminA, map[string]any{"name": "old"})
	e.clk.Advance(100 * 24 * time.Hour)
	e.do("PATCH", "/v1/users/"+u.ID, e.adminA, map[string]any{"description": "recent"}, "If-Match", "*").want(200)
	h, a, err := PurgeExpired(t.Context(), e.store, e.clk.Now(), Retention{History: 30 * 24 * time.Hour, Activity: DefaultActivityRetention})
	if err != nil || h == 0 || a == 0 {
		t.Fatalf("PurgeExpired = %d history, %d activity, %v", h, a, err)
	}
	var hist []keys.HistoryEntry
	e.do("GET", "/v1/users/"+u.ID+"/history", e.adminA, nil).want(200).data(&hist)
	if len(hist) != 1 || hist[0].Changes["description"].To != "recent" {
		t.Fatalf("history after retention = %+v", hist)
	}
	var ex Export
	e.do("GET", "/v1/users/"+u.ID+"/export", e.adminA, nil).want(200).data(&ex)
	if len(ex.History) != 1 {
		t.Fatalf("export after retention has %d history entries", len(ex.History))
	}
	var acts []keys.Activity
	e.do("GET", "/v1/activity?size=100", e.rootKey, nil).want(200).data(&acts)
	for _, x := range acts {
		if x.At.Before(e.clk.Now().Add(-DefaultActivityRetention)) {
			t.Fatalf("activity entry past retention kept: %+v", x)
		}
	}
	// Zero keeps everything.
	if h, a, err := PurgeExpired(t.Context(), e.store, e.clk.Now().Add(365*24*time.Hour), Retention{}); h != 0 || a != 0 || err != nil {
		t.Fatalf("PurgeExpired without retention = %d, %d, %v", h, a, err)
	}
}

// TestCrossTenantCredentials (issue 23, item 4): a signing secret works in
// every tenant of its user, and the user's type decides which of its
// credentials work, so creating or reactivating a secret and changing the
// type need administrator rights in every tenant where the user holds an
// ACTIVE permission (or a superadmin), not only in its primary tenant.
func TestCrossTenantCredentials(t *testing.T) {
	bothStores(t, func(t *testing.T, f storeFactory) {
		e := newEnv(t, f)
		// An application user of a that also holds ADMIN in b.
		app := e.createUser(e.adminA, map[string]any{"name": "app", "type": "APPLICATION"})
		grantB := func(status string) {
			t.Helper()
			e.do("POST", "/v1/permissions", e.rootKey, map[string]any{
				"user": map[string]any{"id": app.ID}, "workspace": map[string]any{"id": "b"}, "role": "ADMIN", "status": status,
			}).wantOneOf(200, 201)
		}
		grantB("ACTIVE")
		secrets := "/v1/users/" + app.ID + "/secrets"
		countSecrets := func() int {
			t.Helper()
			return e.do("GET", secrets, e.rootKey, nil).want(200).envelope().Total
		}

		// a's admin may not mint a secret that would sign in b; b's admin
		// does not manage a user of a either.
		p := e.do("POST", secrets, e.adminA, nil).wantProblem(403, "")
		if !strings.Contains(p.Detail, "b") {
			t.Fatalf("403 detail does not name the tenant: %q", p.Detail)
		}
		e.do("POST", secrets, e.adminB, nil).wantProblem(403, "")
		if n := countSecrets(); n != 0 {
			t.Fatalf("%d secrets after refused creations", n)
		}
		// The type decides whether keys or secrets work: not a's alone either.
		e.do("PATCH", "/v1/users/"+app.ID, e.adminA, map[string]any{"type": "SERVICE"}, "If-Match", "*").wantProblem(403, "")
		if u, _ := e.getUser(app.ID); u.Type != keys.UserApplication {
			t.Fatalf("type after a refused change = %s", u.Type)
		}
		// Other changes stay a's to make.
		e.do("PATCH", "/v1/users/"+app.ID, e.adminA, map[string]any{"description": "x", "type": "APPLICATION"}, "If-Match", "*").want(200)

		// A superadmin may; a's admin may rename, deactivate and delete
		// (that grants nothing), but not reactivate.
		var s SecretView
		e.do("POST", secrets, e.rootKey, nil).want(201).data(&s)
		e.do("PATCH", secrets+"/"+s.ID, e.adminA, map[string]any{"name": "renamed", "status": "INACTIVE"}, "If-Match", "*").want(200)
		e.do("PATCH", secrets+"/"+s.ID, e.adminA, map[string]any{"status": "ACTIVE"}, "If-Match", "*").wantProblem(403, "")
		e.do("PATCH", secrets+"/"+s.ID, e.rootKey, map[string]any{"status": "ACTIVE"}, "If-Match", "*").want(200)
		e.do("PATCH", "/v1/users/"+app.ID, e.rootKey, map[string]any{"type": "TECHNICAL"}, "If-Match", "*").want(200)
		e.do("PATCH", "/v1/users/"+app.ID, e.rootKey, map[string]any{"type": "APPLICATION"}, "If-Match", "*").want(200)

		// Once the permission in b is ARCHIVED (or only INVITED), a's
		// admin is the only one concerned again.
		grantB("ARCHIVED")
		e.do("POST", secrets, e.adminA, nil).want(201)
		e.do("PATCH", secrets+"/"+s.ID, e.adminA, map[string]any{"status": "INACTIVE"}, "If-Match", "*").want(200)
		e.do("PATCH", secrets+"/"+s.ID, e.adminA, map[string]any{"status": "ACTIVE"}, "If-Match", "*").want(200)
		e.do("PATCH", "/v1/users/"+app.ID, e.adminA, map[string]any{"type": "SERVICE"}, "If-Match", "*").want(200)
		e.do("PATCH", "/v1/users/"+app.ID, e.adminA, map[string]any{"type": "APPLICATION"}, "If-Match", "*").want(200)
		e.do("PATCH", secrets+"/"+s.ID, e.adminA, map[string]any{"status": "INACTIVE"}, "If-Match", "*").want(200)
		grantB("INVITED")
		e.do("POST", secrets, e.adminA, nil).want(201)
		if n := countSecrets(); n != 3 {
			t.Fatalf("%d secrets, want 3", n)
		}
	})
}
