package admin

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

// The seed requirements of issue 25, each on both stores.

// userOfType creates a user of type in tenant with role and a key.
func (e *env) userOfType(tenant, name, typ, role string) (id, key string) {
	e.t.Helper()
	var u keys.User
	e.do("POST", "/v1/users", e.rootKey, map[string]any{"name": name, "type": typ, "primaryTenant": tenant, "role": role}).want(201).data(&u)
	k := e.createKey(e.rootKey, u.ID, "main")
	return u.ID, k.Key
}

// members returns the member names of a JSON object.
func members(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("not an object: %s", raw)
	}
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// rawData returns the envelope's data.
func (r *result) rawData() json.RawMessage {
	r.t.Helper()
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(r.body, &env); err != nil {
		r.t.Fatalf("decoding envelope: %v", err)
	}
	return env.Data
}

// TestDefaultUsersRead (seed 003, item 1): every user reads its own
// record, permissions, roles and keys (masked); a MEMBER or VIEWER reads
// the profiles (id, name, type, role, status) of the users in its tenant
// and nothing more.
func TestDefaultUsersRead(t *testing.T) {
	bothStores(t, func(t *testing.T, f storeFactory) {
		e := newEnv(t, f)
		viewerID, viewer := e.userWithKey(e.rootKey, "a", "viewer-a", "VIEWER")
		e.do("PATCH", "/v1/users/"+e.adminAID, e.rootKey, map[string]any{"email": "admin@a.example", "description": "the admin"}, "If-Match", "*").want(200)
		for name, c := range map[string]struct{ id, key string }{"MEMBER": {e.memberAID, e.memberA}, "VIEWER": {viewerID, viewer}} {
			t.Run(name, func(t *testing.T) {
				// Its own record, in full and in the same envelope.
				res := e.do("GET", "/v1/users/"+c.id, c.key, nil).want(200)
				var me keys.User
				res.data(&me)
				if me.ID != c.id || me.PrimaryTenant != "a" || res.envelope().Type != "User" || res.header.Get("ETag") == "" {
					t.Fatalf("own record = %+v (%s)", me, res.body)
				}
				// Its own keys, masked.
				var ks []KeyView
				e.do("GET", "/v1/users/"+c.id+"/keys", c.key, nil).want(200).data(&ks)
				if len(ks) != 1 || ks[0].Key != "" || !strings.HasPrefix(ks[0].Masked, "kg_") {
					t.Fatalf("own keys = %+v", ks)
				}
				e.do("GET", "/v1/users/"+c.id+"/keys/"+ks[0].ID, c.key, nil).want(200)
				// Its own roles and permissions.
				var rv RolesView
				e.do("GET", "/v1/users/"+c.id+"/roles", c.key, nil).want(200).data(&rv)
				if rv.Workspace != "a" || string(rv.Role) != name || len(rv.Tenants) != 1 || rv.User == nil {
					t.Fatalf("own roles = %+v", rv)
				}
				var ps []PermissionView
				e.do("GET", "/v1/users/"+c.id+"/permissions", c.key, nil).want(200).data(&ps)
				if len(ps) != 1 || ps[0].WorkspaceID != "a" || string(ps[0].Role) != name {
					t.Fatalf("own permissions = %+v", ps)
				}
				// Another user of its tenant: the profile, nothing more.
				got := members(t, e.do("GET", "/v1/users/"+e.adminAID, c.key, nil).want(200).rawData())
				if want := []string{"id", "name", "role", "status", "type"}; !slices.Equal(got, want) {
					t.Fatalf("profile members = %v, want %v", got, want)
				}
				for _, p := range []string{"/keys", "/roles", "/permissions"} {
					e.do("GET", "/v1/users/"+e.adminAID+p, c.key, nil).wantProblem(404, "")
				}
				for _, p := range []string{"/secrets", "/history", "/export", "/usage"} {
					e.do("GET", "/v1/users/"+e.adminAID+p, c.key, nil).wantProblem(403, "")
				}
				// The profiles of its tenant's users; the search does not
				// look into e-mail addresses.
				var list []json.RawMessage
				res = e.do("GET", "/v1/users", c.key, nil).want(200)
				res.data(&list)
				if n := res.envelope().Total; n != 3 || len(list) != 3 {
					t.Fatalf("users of a = %d: %s", n, res.body)
				}
				for _, raw := range list {
					if got := members(t, raw); !slices.Equal(got, []string{"id", "name", "role", "status", "type"}) {
						t.Fatalf("listed profile members = %v", got)
					}
				}
				if n := e.do("GET", "/v1/users?q=admin%40a", c.key, nil).want(200).envelope().Total; n != 0 {
					t.Fatalf("a profile search matched an e-mail address (%d)", n)
				}
				e.do("GET", "/v1/users?tenant=b", c.key, nil).wantProblem(404, "")
				// A user of another tenant is not there at all.
				e.do("GET", "/v1/users/"+e.adminBID, c.key, nil).wantProblem(404, "")
				// Nothing more: no writes, no tenants, no workspace lists.
				e.do("PATCH", "/v1/users/"+c.id, c.key, map[string]any{"description": "x"}, "If-Match", "*").wantProblem(403, "")
				e.do("POST", "/v1/users/"+c.id+"/keys", c.key, map[string]any{"name": "x", "expiresAt": e.clk.Now().Add(time.Hour).Format(time.RFC3339)}).wantProblem(403, "")
				e.do("GET", "/v1/workspaces/a/permissions", c.key, nil).wantProblem(403, "")
				e.do("GET", "/v1/tenants/a", c.key, nil).wantProblem(403, "")
			})
		}
		// Without an ACTIVE permission in its key's tenant, it reads nothing.
		e.do("POST", "/v1/permissions", e.rootKey, map[string]any{
			"user": map[string]any{"id": viewerID}, "workspace": map[string]any{"id": "a"}, "role": "VIEWER", "status": "ARCHIVED",
		}).want(200)
		e.do("GET", "/v1/users/"+viewerID, viewer, nil).wantProblem(403, "")
		e.do("GET", "/v1/users", viewer, nil).wantProblem(403, "")
	})
}

// TestConsoleSession (seed 002, item 2): the console signs in by
// exchanging a key for a short-lived session bound to it; SERVICE and
// APPLICATION users are refused with a reason while their keys keep
// working against the API; the session ends with its key, its user, its
// expiry and sign-out.
func TestConsoleSession(t *testing.T) {
	bothStores(t, func(t *testing.T, f storeFactory) {
		e := newEnvPolicy(t, f, allCredentials)
		svcID, svc := e.userOfType("a", "svc-admin", "SERVICE", "ADMIN")
		_, app := e.userOfType("a", "app-admin", "APPLICATION", "ADMIN")
		for name, key := range map[string]string{"SERVICE": svc, "APPLICATION": app} {
			p := e.do("POST", "/v1/console/session", key, nil).wantProblem(403, "")
			if p.Type != ProblemTypeBase+"console-not-allowed" || !strings.Contains(p.Detail, strings.ToLower(name)+" users cannot sign in to the console") {
				t.Fatalf("%s refused with %+v", name, p)
			}
			// The key still works against the API.
			e.do("GET", "/v1/users/"+svcID, key, nil).want(200)
		}

		var sess ConsoleIdentity
		res := e.do("POST", "/v1/console/session", e.adminA, nil).want(201)
		res.data(&sess)
		if !strings.HasPrefix(sess.Token, keys.SessionPrefix) || sess.Tenant != "a" || !sess.Admin || sess.Role != keys.RoleAdmin ||
			sess.ExpiresAt == nil || !sess.ExpiresAt.Equal(e.clk.Now().Add(DefaultSessionLifetime)) || res.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("session = %+v", sess)
		}
		tok := sess.Token
		e.do("GET", "/v1/users?tenant=a", tok, nil).want(200)
		var who ConsoleIdentity
		e.do("GET", "/v1/console/session", tok, nil).want(200).data(&who)
		if who.User.ID != e.adminAID || who.Token != "" || who.ExpiresAt == nil {
			t.Fatalf("who = %+v", who)
		}
		e.do("POST", "/v1/console/session", tok, nil).wantProblem(400, "")
		// A MEMBER signs in too (and reads what its role allows).
		var m ConsoleIdentity
		e.do("POST", "/v1/console/session", e.memberA, nil).want(201).data(&m)
		if m.Admin || m.Role != keys.RoleMember {
			t.Fatalf("member session = %+v", m)
		}
		e.do("GET", "/v1/users/"+e.memberAID, m.Token, nil).want(200)
		e.do("GET", "/v1/tenants", m.Token, nil).wantProblem(403, "")
		// A superadmin signs in with its own tenant.
		var root ConsoleIdentity
		e.do("POST", "/v1/console/session", e.rootKey, nil).want(201).data(&root)
		if root.Tenant != "root" || !root.Admin || !root.User.Superadmin {
			t.Fatalf("superadmin session = %+v", root)
		}

		// Bound to its key: revoking the key ends the session.
		ks := []KeyView{}
		e.do("GET", "/v1/users/"+e.adminAID+"/keys", e.rootKey, nil).want(200).data(&ks)
		e.do("DELETE", "/v1/users/"+e.adminAID+"/keys/"+ks[0].ID, e.rootKey, nil, "If-Match", "*").want(200)
		e.do("GET", "/v1/users?tenant=a", tok, nil).wantProblem(401, "")
		// The user's status ends it too.
		e.do("PATCH", "/v1/users/"+e.memberAID, e.rootKey, map[string]any{"status": "INACTIVE"}, "If-Match", "*").want(200)
		e.do("GET", "/v1/users/"+e.memberAID, m.Token, nil).wantProblem(401, "")
		e.do("PATCH", "/v1/users/"+e.memberAID, e.rootKey, map[string]any{"status": "ACTIVE"}, "If-Match", "*").want(200)
		e.do("GET", "/v1/users/"+e.memberAID, m.Token, nil).want(200)
		// Signing out ends it.
		e.do("DELETE", "/v1/console/session", m.Token, nil).want(204)
		e.do("GET", "/v1/users/"+e.memberAID, m.Token, nil).wantProblem(401, "")
		e.do("DELETE", "/v1/console/session", e.memberA, nil).wantProblem(404, "")
		// And it expires.
		e.clk.Advance(DefaultSessionLifetime)
		e.do("GET", "/v1/console/session", root.Token, nil).wantProblem(401, "")
		e.do("GET", "/v1/console/session", e.rootKey, nil).want(200)
		// Never longer than the key it came from.
		short := e.createKey(e.rootKey, e.memberAID, "short")
		e.do("PATCH", "/v1/users/"+e.memberAID+"/keys/"+short.ID, e.rootKey, map[string]any{"expiresAt": e.clk.Now().Add(10 * time.Minute).Format(time.RFC3339)}, "If-Match", "*").want(200)
		var s2 ConsoleIdentity
		e.do("POST", "/v1/console/session", short.Key, nil).want(201).data(&s2)
		if s2.ExpiresAt == nil || !s2.ExpiresAt.Equal(e.clk.Now().Add(10*time.Minute)) {
			t.Fatalf("session of a key expiring in 10 minutes ends %v", s2.ExpiresAt)
		}
		// A user without an ACTIVE permission in its key's tenant is refused.
		e.do("POST", "/v1/permissions", e.rootKey, map[string]any{
			"user": map[string]any{"id": e.memberAID}, "workspace": map[string]any{"id": "a"}, "role": "MEMBER", "status": "ARCHIVED",
		}).want(200)
		e.do("POST", "/v1/console/session", short.Key, nil).wantProblem(403, "")
		e.do("GET", "/v1/users/"+e.memberAID, s2.Token, nil).wantProblem(403, "")
	})
}

// TestMTMPaths (seed 001, item 3): the MTM paths serve the permissions
// API; the seed's example requests work as written, and a permission
// copied from GET is accepted back unchanged.
func TestMTMPaths(t *testing.T) {
	bothStores(t, func(t *testing.T, f storeFactory) {
		e := newEnv(t, f)
		e.do("PATCH", "/v1/users/"+e.memberAID, e.rootKey, map[string]any{"email": "john.doe@meshlab.de"}, "If-Match", "*").want(200)
		// Step 1 of the seed, with its query string.
		mtm := e.do("GET", "/services/mtm/v1/workspaces/a/permissions?email=john.doe%40meshlab.de", e.adminA, nil).want(200)
		v1 := e.do("GET", "/v1/workspaces/a/permissions?email=john.doe%40meshlab.de", e.adminA, nil).want(200)
		if string(mtm.rawData()) != string(v1.rawData()) {
			t.Fatalf("alias answered\n%s\nnot\n%s", mtm.rawData(), v1.rawData())
		}
		var list []json.RawMessage
		mtm.data(&list)
		if len(list) != 1 {
			t.Fatalf("permissions for the e-mail: %s", mtm.body)
		}
		var p map[string]any
		if err := json.Unmarshal(list[0], &p); err != nil {
			t.Fatal(err)
		}
		for field, want := range map[string]any{"active": true, "ignoreBlacklist": false, "count": 0.0, "replayed": false} {
			if p[field] != want {
				t.Errorf("%s = %v, want %v", field, p[field], want)
			}
		}
		user := p["user"].(map[string]any)
		if user["technicalUser"] != true || user["scimManaged"] != false {
			t.Errorf("user = %v", user)
		}
		links, _ := p["links"].([]any)
		var self string
		for _, l := range links {
			if m := l.(map[string]any); m["rel"] == "self" {
				self = m["href"].(string)
			}
		}
		var got PermissionView
		e.do("GET", self, e.adminA, nil).want(200).data(&got)
		if got.ID != p["id"] {
			t.Fatalf("self link %q leads to %+v", self, got)
		}
		// Step 2: the body copied from GET, one attribute changed, POSTed back.
		p["role"] = "VIEWER"
		var out PermissionView
		e.do("POST", "/services/mtm/v1/permissions", e.adminA, p).want(200).data(&out)
		if out.Role != keys.RoleViewer || out.ID != p["id"] {
			t.Fatalf("after the round trip: %+v", out)
		}
		// The seed's example request body, as written: an invitation.
		e.do("POST", "/services/mtm/v1/permissions", e.rootKey, map[string]any{
			"user": map[string]any{"id": e.memberAID}, "workspace": map[string]any{"id": "b"}, "role": "ADMIN", "status": "INVITED",
		}).want(201).data(&out)
		if out.Status != keys.PermissionInvited || out.Active || out.Links[len(out.Links)-1].Rel != "accept" {
			t.Fatalf("invitation = %+v", out)
		}
		// The OpenAPI document names the aliases.
		var doc struct {
			Paths map[string]map[string]any `json:"paths"`
		}
		if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Paths["/services/mtm/v1/workspaces/{id}/permissions"]["get"] == nil || doc.Paths["/services/mtm/v1/permissions"]["post"] == nil {
			t.Fatal("the MTM aliases are not in the OpenAPI document")
		}
	})
}

// TestEnvelopeTimestampAccount (seed 003, item 4): every answer carries
// the response code, the time of the call and the account (tenant).
func TestEnvelopeTimestampAccount(t *testing.T) {
	bothStores(t, func(t *testing.T, f storeFactory) {
		e := newEnv(t, f)
		check := func(res *result, code int, account string) {
			t.Helper()
			var env struct {
				Code      int       `json:"code"`
				Timestamp time.Time `json:"timestamp"`
				Account   *string   `json:"account"`
				Status    string    `json:"status"`
			}
			if err := json.Unmarshal(res.body, &env); err != nil {
				t.Fatal(err)
			}
			got := ""
			if env.Account != nil {
				got = *env.Account
			}
			if env.Code != code || !env.Timestamp.Equal(e.clk.Now()) || got != account || env.Status != "OK" {
				t.Fatalf("%s %s: envelope %s, want code %d, timestamp %s, account %q", res.method, res.path, res.body, code, e.clk.Now(), account)
			}
		}
		u := e.createUser(e.adminA, map[string]any{"name": "x"})
		check(e.do("GET", "/v1/users/"+u.ID, e.rootKey, nil).want(200), 200, "a")
		check(e.do("GET", "/v1/users", e.rootKey, nil).want(200), 200, "root") // all tenants: the caller's
		check(e.do("PUT", "/v1/users/"+u.ID+"/roles/ADMIN", e.adminA, nil).want(200), 200, "a")
		check(e.do("PATCH", "/v1/users/"+u.ID, e.adminA, map[string]any{"description": "d"}, "If-Match", "*").want(200), 200, "a")
		check(e.do("POST", "/v1/users", e.adminB, map[string]any{"name": "y"}).want(201), 201, "b")
		check(e.do("GET", "/v1/users/"+u.ID+"/roles", e.adminA, nil).want(200), 200, "a")
		e.clk.Advance(time.Minute)
		check(e.trusted("GET", "/v1/tenants", nil).want(200), 200, "")
	})
}

// TestRolesAllTenants (seed 003, item 5): GET /users/{id}/roles answers
// one entry per tenant the user holds a permission in, with its personal
// data, without ?workspace= for a superadmin; a tenant admin sees its
// tenant's entry only.
func TestRolesAllTenants(t *testing.T) {
	bothStores(t, func(t *testing.T, f storeFactory) {
		e := newEnv(t, f)
		u := e.createUser(e.adminA, map[string]any{"name": "multi", "email": "m@example.com", "description": "two tenants"})
		e.do("POST", "/v1/permissions", e.rootKey, map[string]any{
			"user": map[string]any{"id": u.ID}, "workspace": map[string]any{"id": "b"}, "role": "VIEWER", "status": "ACTIVE", "customerRoles": []string{"REPORTS"},
		}).want(201)
		var rv RolesView
		e.do("GET", "/v1/users/"+u.ID+"/roles", e.rootKey, nil).want(200).data(&rv)
		if len(rv.Tenants) != 2 || rv.Tenants[0].Workspace != "a" || rv.Tenants[0].Role != keys.RoleMember ||
			rv.Tenants[1].Workspace != "b" || rv.Tenants[1].Role != keys.RoleViewer || !slices.Equal(rv.Tenants[1].CustomerRoles, []string{"REPORTS"}) ||
			rv.Tenants[1].WorkspaceName != "Tenant b" {
			t.Fatalf("tenants = %+v", rv.Tenants)
		}
		if rv.User == nil || rv.User.Email != "m@example.com" || rv.User.Description != "two tenants" || rv.User.Name != "multi" {
			t.Fatalf("personal data = %+v", rv.User)
		}
		e.do("GET", "/v1/users/"+u.ID+"/roles", e.adminA, nil).want(200).data(&rv)
		if len(rv.Tenants) != 1 || rv.Tenants[0].Workspace != "a" {
			t.Fatalf("tenant admin of a sees %+v", rv.Tenants)
		}
		e.do("GET", "/v1/users/"+u.ID+"/roles", e.adminB, nil).want(200).data(&rv)
		if len(rv.Tenants) != 1 || rv.Tenants[0].Workspace != "b" || rv.Workspace != "b" {
			t.Fatalf("tenant admin of b sees %+v", rv)
		}
	})
}

// failingCompletion fails the second step of every deletion, as a crash
// right after the first would leave it.
type failingCompletion struct{ keys.Store }

func (failingCompletion) CompleteDeletion(context.Context, string, string) (keys.User, error) {
	return keys.User{}, errors.New("the process died")
}

func (f failingCompletion) DeleteUser(ctx context.Context, id string, version int64, actor string) (keys.User, error) {
	// The store's own DeleteUser calls its own CompleteDeletion: run the
	// first step through UpdateUser instead, then fail like a crash.
	u, err := f.Store.UpdateUser(ctx, id, version, func(u *keys.User) error { u.Status = keys.UserDeleting; return nil }, actor)
	if err != nil {
		return u, err
	}
	return u, errors.New("the process died")
}

// TestDeletionSteps (seed 004, item 6): DELETE goes through DELETING
// (keys and secrets revoked, permissions archived, sessions ended) to
// DELETED (usage counts taken off the user) by itself, both in the
// history; a deletion interrupted between the two is answered 202 and
// finished by CompleteDeletions when keygate starts again.
func TestDeletionSteps(t *testing.T) {
	bothStores(t, func(t *testing.T, f storeFactory) {
		e := newEnvPolicy(t, f, allCredentials)
		ctx := context.Background()
		u := e.createUser(e.adminA, map[string]any{"name": "victim"})
		k := e.createKey(e.adminA, u.ID, "k")
		var sec SecretView
		e.do("POST", "/v1/users/"+u.ID+"/secrets", e.adminA, nil).want(201).data(&sec)
		var sess ConsoleIdentity
		e.do("POST", "/v1/console/session", k.Key, nil).want(201).data(&sess)
		hour := e.clk.Now().Truncate(time.Hour)
		if err := e.store.AddUsageCounts(ctx, []keys.UsageCount{{UserID: u.ID, Tenant: "a", Hour: hour, Allowed: 7, Refused: 1, BadKey: 1}}); err != nil {
			t.Fatal(err)
		}

		var out keys.User
		e.do("DELETE", "/v1/users/"+u.ID, e.adminA, nil, "If-Match", "*").want(200).data(&out)
		if out.Status != keys.UserDeleted {
			t.Fatalf("deleted user = %s", out.Status)
		}
		if !e.historyHas(u.ID, e.adminAID, "user.delete", "", "status", "ACTIVE", "DELETING") ||
			!e.historyHas(u.ID, e.adminAID, "user.deleted", "", "status", "DELETING", "DELETED") {
			t.Fatal("the history does not show ACTIVE → DELETING → DELETED")
		}
		var kv KeyView
		e.do("GET", "/v1/users/"+u.ID+"/keys/"+k.ID, e.rootKey, nil).want(200).data(&kv)
		if kv.Status != keys.KeyRevoked {
			t.Errorf("key after delete: %s", kv.Status)
		}
		var ss []SecretView
		e.do("GET", "/v1/users/"+u.ID+"/secrets", e.rootKey, nil).want(200).data(&ss)
		if len(ss) != 1 || ss[0].Status != keys.SecretInactive {
			t.Errorf("secrets after delete: %+v", ss)
		}
		e.do("GET", "/v1/console/session", sess.Token, nil).wantProblem(401, "")
		if _, err := e.store.GetSession(ctx, strings.Split(sess.Token, "_")[1]); !errors.Is(err, keys.ErrNotFound) {
			t.Errorf("the session is still stored: %v", err)
		}
		var usage Usage
		e.do("GET", "/v1/users/"+u.ID+"/usage", e.rootKey, nil).want(200).data(&usage)
		if usage.Totals.Allowed != 0 {
			t.Errorf("the deleted user still has usage: %+v", usage.Totals)
		}
		var tu TenantUsage
		e.do("GET", "/v1/tenants/a/usage", e.rootKey, nil).want(200).data(&tu)
		if tu.Totals.Allowed != 7 || tu.Totals.Refusals.BadKey != 1 {
			t.Errorf("the tenant's usage lost the deleted user's requests: %+v", tu.Totals)
		}

		// Interrupted after the first step: 202, DELETING, credentials off.
		v := e.createUser(e.adminA, map[string]any{"name": "half"})
		vk := e.createKey(e.adminA, v.ID, "k")
		crashing := New(Config{Store: failingCompletion{e.store}, Hasher: keys.NewHasher([]byte("pepper")), Now: e.clk.Now})
		w := e.h
		e.h = crashing
		e.do("DELETE", "/v1/users/"+v.ID, e.adminA, nil, "If-Match", "*").want(202).data(&out)
		e.h = w
		if out.Status != keys.UserDeleting {
			t.Fatalf("interrupted delete answered %s", out.Status)
		}
		e.do("GET", "/v1/users", vk.Key, nil).wantProblem(401, "")
		// keygate starts again: the deletion is finished.
		n, err := CompleteDeletions(ctx, e.store)
		if err != nil || n != 1 {
			t.Fatalf("CompleteDeletions = %d, %v", n, err)
		}
		got, _ := e.getUser(v.ID)
		if got.Status != keys.UserDeleted || !e.historyHas(v.ID, "system", "user.deleted", "", "status", "DELETING", "DELETED") {
			t.Fatalf("after the restart: %s", got.Status)
		}
		// PATCH status DELETING leads on to DELETED as well.
		w2 := e.createUser(e.adminA, map[string]any{"name": "patched"})
		e.do("PATCH", "/v1/users/"+w2.ID, e.adminA, map[string]any{"status": "DELETING"}, "If-Match", "*").want(200).data(&out)
		if out.Status != keys.UserDeleted {
			t.Fatalf("PATCH DELETING answered %s", out.Status)
		}
	})
}

// TestDeletedUsersPermissionsArchived (item 8): a deleted user's
// permissions read ARCHIVED, not ACTIVE, in its workspaces' lists.
func TestDeletedUsersPermissionsArchived(t *testing.T) {
	bothStores(t, func(t *testing.T, f storeFactory) {
		e := newEnv(t, f)
		u := e.createUser(e.adminA, map[string]any{"name": "gone"})
		e.do("POST", "/v1/permissions", e.rootKey, map[string]any{
			"user": map[string]any{"id": u.ID}, "workspace": map[string]any{"id": "b"}, "role": "VIEWER", "status": "INVITED",
		}).want(201)
		e.do("DELETE", "/v1/users/"+u.ID, e.adminA, nil, "If-Match", "*").want(200)
		for _, ws := range []string{"a", "b"} {
			var ps []PermissionView
			e.do("GET", "/v1/workspaces/"+ws+"/permissions?status=ACTIVE&user="+u.ID, e.rootKey, nil).want(200).data(&ps)
			if len(ps) != 0 {
				t.Fatalf("%s lists the deleted user as ACTIVE: %+v", ws, ps)
			}
			e.do("GET", "/v1/workspaces/"+ws+"/permissions?status=INVITED&user="+u.ID, e.rootKey, nil).want(200).data(&ps)
			if len(ps) != 0 {
				t.Fatalf("%s lists the deleted user as INVITED: %+v", ws, ps)
			}
			if p := e.permOf(u.ID, ws); p.Status != keys.PermissionArchived || p.Active {
				t.Fatalf("permission in %s = %s", ws, p.Status)
			}
		}
	})
}

// TestKeyWithoutActivePermission (item 9): a key for a tenant where the
// user holds no permission, or one that is not ACTIVE, is 409 either way.
func TestKeyWithoutActivePermission(t *testing.T) {
	bothStores(t, func(t *testing.T, f storeFactory) {
		e := newEnv(t, f)
		u := e.createUser(e.adminA, map[string]any{"name": "k"})
		base := "/v1/users/" + u.ID + "/keys"
		body := func(tenant string) map[string]any {
			return map[string]any{"name": "k-" + tenant, "expiresAt": e.clk.Now().Add(time.Hour).Format(time.RFC3339), "tenant": tenant}
		}
		p := e.do("POST", base, e.rootKey, body("b")).wantProblem(409, "")
		if !strings.Contains(p.Detail, "no permission in tenant b") {
			t.Fatalf("no permission: %+v", p)
		}
		e.do("POST", "/v1/permissions", e.rootKey, map[string]any{
			"user": map[string]any{"id": u.ID}, "workspace": map[string]any{"id": "b"}, "role": "MEMBER", "status": "INVITED",
		}).want(201)
		e.do("POST", base, e.rootKey, body("b")).wantProblem(409, "")
		e.do("POST", "/v1/permissions", e.rootKey, map[string]any{
			"user": map[string]any{"id": u.ID}, "workspace": map[string]any{"id": "a"}, "role": "MEMBER", "status": "ARCHIVED",
		}).want(200)
		e.do("POST", base, e.adminA, body("a")).wantProblem(409, "")
		if n := e.do("GET", base, e.rootKey, nil).want(200).envelope().Total; n != 0 {
			t.Fatalf("%d keys were created", n)
		}
	})
}
