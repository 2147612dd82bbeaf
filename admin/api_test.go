package admin

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

func TestBootstrap(t *testing.T) {
	e := newEnv(t, newFileStore)
	// The bootstrap key works and belongs to a superadmin.
	var u keys.User
	e.do("GET", "/v1/users/"+e.rootID, e.rootKey, nil).want(200).data(&u)
	if !u.Superadmin || u.Role != keys.RoleAdmin || u.Type != keys.UserTechnical || u.PrimaryTenant != "root" {
		t.Fatalf("bootstrap user = %+v", u)
	}
	var perms []PermissionView
	e.do("GET", "/v1/workspaces/root/permissions", e.rootKey, nil).want(200).data(&perms)
	if len(perms) != 1 || perms[0].Role != keys.RoleAdmin || perms[0].Status != keys.PermissionActive {
		t.Fatalf("bootstrap permissions = %+v", perms)
	}
	// Same user name in the same tenant: 409 and nothing changes.
	before := e.do("GET", "/v1/users?tenant=root", e.rootKey, nil).want(200).envelope().Total
	e.trusted("POST", "/v1/bootstrap", map[string]any{"tenant": "root", "user": "ops"}).wantProblem(409, "")
	if after := e.do("GET", "/v1/users?tenant=root", e.rootKey, nil).want(200).envelope().Total; after != before {
		t.Fatalf("users after failed bootstrap = %d, want %d", after, before)
	}
	// Not trusted: 404, even for a superadmin's key.
	e.do("POST", "/v1/bootstrap", e.rootKey, map[string]any{"tenant": "x", "user": "y"}).wantProblem(404, "")
	e.do("POST", "/v1/bootstrap", "", map[string]any{"tenant": "x", "user": "y"}).wantProblem(404, "")
	// Custom expiry, new tenant.
	exp := e.clk.Now().Add(time.Hour).Format(time.RFC3339)
	var boot BootstrapResult
	e.trusted("POST", "/v1/bootstrap", map[string]any{"tenant": "fresh", "user": "ops", "expiresAt": exp}).want(201).data(&boot)
	if boot.Tenant.ID != "fresh" || boot.Key.ExpiresAt.Format(time.RFC3339) != exp || !strings.HasPrefix(boot.Key.Key, "kg_") {
		t.Fatalf("bootstrap result = %+v", boot)
	}
	// Default expiry is a year.
	e.trusted("POST", "/v1/bootstrap", map[string]any{"tenant": "fresh", "user": "ops2"}).want(201).data(&boot)
	if d := boot.Key.ExpiresAt.Sub(e.clk.Now()); d != 365*24*time.Hour {
		t.Fatalf("default bootstrap key lifetime = %v", d)
	}
	e.trusted("POST", "/v1/bootstrap", map[string]any{"tenant": "bad tenant", "user": ""}).wantProblem(400, "tenant")
	e.trusted("POST", "/v1/bootstrap", map[string]any{"tenant": "t", "user": "u", "expiresAt": "soon"}).wantProblem(400, "expiresAt")
	// A trusted caller acts as a superadmin on every route.
	e.trusted("GET", "/v1/users?tenant=b", nil).want(200)
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t, newFileStore)
	unauth := func(res *result) {
		t.Helper()
		res.want(401)
		if got := res.header.Get("WWW-Authenticate"); got != `Bearer realm="keygate"` {
			t.Fatalf("WWW-Authenticate = %q", got)
		}
		p := res.problem()
		if p.Detail != errUnauthorized.detail || p.Type != ProblemTypeBase+"unauthorized" {
			t.Fatalf("401 problem differs: %+v", p)
		}
	}
	path := "/v1/users"
	unauth(e.do("GET", path, "", nil))
	unauth(e.do("GET", path, "kg_nope", nil))
	unauth(e.do("GET", path, "not-a-key", nil))
	unauth(e.serve(req("GET", path, "", nil, "Authorization", "Basic Zm9vOmJhcg==")))
	// A well-formed key whose id is unknown, and a known id with a wrong secret.
	id, _ := keys.ParseAccessKey(e.adminA)
	forged := "kg_" + id + "_" + strings.Repeat("a", 52)
	unauth(e.do("GET", path, forged, nil))
	unauth(e.do("GET", path, "kg_"+strings.Repeat("b", 16)+"_"+strings.Repeat("a", 52), nil))
	// X-Api-Key works; two different credentials do not.
	e.serve(req("GET", path, "", nil, "X-Api-Key", e.adminA)).want(200)
	unauth(e.serve(req("GET", path, e.adminA, nil, "X-Api-Key", e.adminB)))
	e.serve(req("GET", path, e.adminA, nil, "X-Api-Key", e.adminA)).want(200)

	// Expired key.
	var short KeyView
	e.do("POST", "/v1/users/"+e.adminAID+"/keys", e.rootKey, map[string]any{
		"name": "short", "expiresAt": e.clk.Now().Add(time.Hour).Format(time.RFC3339),
	}).want(201).data(&short)
	e.do("GET", path, short.Key, nil).want(200)
	e.clk.Advance(2 * time.Hour)
	unauth(e.do("GET", path, short.Key, nil))

	// INACTIVE key, then reactivated.
	k := e.createKey(e.rootKey, e.adminAID, "toggle")
	e.do("GET", path, k.Key, nil).want(200)
	e.do("PATCH", "/v1/users/"+e.adminAID+"/keys/"+k.ID, e.rootKey, map[string]any{"status": "INACTIVE"}, "If-Match", etagOf(k.Version)).want(200)
	unauth(e.do("GET", path, k.Key, nil))
	e.do("PATCH", "/v1/users/"+e.adminAID+"/keys/"+k.ID, e.rootKey, map[string]any{"status": "ACTIVE"}, "If-Match", "*").want(200)
	e.do("GET", path, k.Key, nil).want(200)
	// Revoked key.
	e.do("DELETE", "/v1/users/"+e.adminAID+"/keys/"+k.ID, e.rootKey, nil, "If-Match", "*").want(200)
	unauth(e.do("GET", path, k.Key, nil))

	// INACTIVE user: every key stops.
	_, tag := e.getUser(e.adminAID)
	e.do("PATCH", "/v1/users/"+e.adminAID, e.rootKey, map[string]any{"status": "INACTIVE"}, "If-Match", tag).want(200)
	unauth(e.do("GET", path, e.adminA, nil))
	e.do("PATCH", "/v1/users/"+e.adminAID, e.rootKey, map[string]any{"status": "ACTIVE"}, "If-Match", "*").want(200)
	e.do("GET", path, e.adminA, nil).want(200)

	// A valid key without an ADMIN permission: 403 for what administers
	// (a MEMBER reads profiles; see TestDefaultUsersRead).
	e.do("GET", "/v1/tenants", e.memberA, nil).wantProblem(403, "")
	e.do("POST", path, e.memberA, map[string]any{"name": "nope"}).wantProblem(403, "")
	// ADMIN permission archived: 403.
	e.do("POST", "/v1/permissions", e.rootKey, map[string]any{
		"user": map[string]any{"id": e.adminBID}, "workspace": map[string]any{"id": "b"}, "role": "ADMIN", "status": "ARCHIVED",
	}).want(200)
	e.do("GET", path, e.adminB, nil).wantProblem(403, "")

	// Deleted user: its keys stop at once.
	_, tag = e.getUser(e.adminAID)
	e.do("DELETE", "/v1/users/"+e.adminAID, e.rootKey, nil, "If-Match", tag).want(200)
	unauth(e.do("GET", path, e.adminA, nil))

	// The OpenAPI document needs no key.
	e.do("GET", "/v1/openapi.json", "", nil).want(200)
}

func TestUsersCRUD(t *testing.T) {
	e := newEnv(t, newFileStore)
	purge := e.clk.Now().Add(90 * 24 * time.Hour).Format(time.RFC3339)
	res := e.do("POST", "/v1/users", e.adminA, map[string]any{
		"name": "svc", "description": "integration", "email": "ops@example.com", "type": "APPLICATION",
		"role": "VIEWER", "customerRoles": []string{"pathfinder"}, "accessControlEntities": []string{"ace-1"},
		"scope": "space-1", "requestLimit": 600, "plannedPurgeDate": purge,
	}).want(201)
	var u keys.User
	res.data(&u)
	if res.header.Get("ETag") != `"1"` || res.header.Get("Location") != "/v1/users/"+u.ID {
		t.Fatalf("headers = %v", res.header)
	}
	if u.PrimaryTenant != "a" || u.Status != keys.UserActive || u.Type != keys.UserApplication || u.RequestLimit != 600 || u.Scope != "space-1" {
		t.Fatalf("created user = %+v", u)
	}
	for _, c := range u.ID {
		if c < '0' || c > '9' {
			t.Fatalf("generated id %q is not decimal", u.ID)
		}
	}
	// One rule for total: the number of objects the answer is about (1 here).
	if env := res.envelope(); env.Type != "User" || env.Total != 1 || len(env.Errors) != 0 {
		t.Fatalf("envelope = %+v", env)
	}
	// It got an ACTIVE permission with its role in its primary tenant.
	var perms []PermissionView
	e.do("GET", "/v1/workspaces/a/permissions?user="+u.ID, e.adminA, nil).want(200).data(&perms)
	if len(perms) != 1 || perms[0].Role != keys.RoleViewer || perms[0].Status != keys.PermissionActive {
		t.Fatalf("permissions of new user = %+v", perms)
	}
	// Chosen id, INACTIVE at creation; duplicate name and id are 409.
	inactive := e.createUser(e.adminA, map[string]any{"id": "svc-2", "name": "svc2", "status": "INACTIVE"})
	if inactive.ID != "svc-2" || inactive.Status != keys.UserInactive {
		t.Fatalf("user = %+v", inactive)
	}
	e.do("POST", "/v1/users", e.adminA, map[string]any{"name": "svc"}).wantProblem(409, "")
	e.do("POST", "/v1/users", e.adminA, map[string]any{"id": "svc-2", "name": "other"}).wantProblem(409, "")
	e.do("POST", "/v1/users", e.adminA, map[string]any{"name": "x", "status": "DELETED"}).wantProblem(400, "status")
	e.do("POST", "/v1/users", e.adminA, map[string]any{"name": "x", "type": "HUMAN"}).wantProblem(400, "type")
	e.do("POST", "/v1/users", e.adminA, map[string]any{"name": "x", "email": "nope"}).wantProblem(400, "email")
	e.do("POST", "/v1/users", e.adminA, map[string]any{"name": "x", "id": "bad id"}).wantProblem(400, "id")
	e.do("POST", "/v1/users", e.adminA, map[string]any{"name": "x", "requestLimit": -1}).wantProblem(400, "requestLimit")
	e.trusted("POST", "/v1/users", map[string]any{"name": "x"}).wantProblem(400, "primaryTenant") // no tenant of its own
	e.do("POST", "/v1/users", e.rootKey, map[string]any{"name": "x", "primaryTenant": "nowhere"}).wantProblem(400, "primaryTenant")
	e.do("POST", "/v1/users", e.adminA, map[string]any{"name": "x", "superadmin": true}).wantProblem(403, "")

	// GET with ETag; total 1.
	res = e.do("GET", "/v1/users/"+u.ID, e.adminA, nil).want(200)
	if res.header.Get("ETag") != `"1"` || res.envelope().Total != 1 {
		t.Fatalf("GET: etag %q envelope %+v", res.header.Get("ETag"), res.envelope())
	}
	e.do("GET", "/v1/users/nobody", e.adminA, nil).wantProblem(404, "")
	e.do("GET", "/v1/users/bad%20id", e.adminA, nil).wantProblem(404, "")

	// PATCH: If-Match required; stale is 412; * and body version work; merge semantics.
	p := "/v1/users/" + u.ID
	e.do("PATCH", p, e.adminA, map[string]any{"description": "x"}).wantProblem(428, "")
	e.do("PATCH", p, e.adminA, map[string]any{"description": "x"}, "If-Match", `"9"`).wantProblem(412, "")
	e.do("PATCH", p, e.adminA, map[string]any{"description": "x"}, "If-Match", `W/"1"`).wantProblem(412, "")
	e.do("PATCH", p, e.adminA, map[string]any{"description": "x", "version": 9}).wantProblem(412, "")
	e.do("PATCH", p, e.adminA, map[string]any{"description": "x", "version": 2}, "If-Match", `"1"`).wantProblem(412, "")
	res = e.do("PATCH", p, e.adminA, map[string]any{"description": "changed", "plannedPurgeDate": nil, "email": nil}, "If-Match", `"1"`).want(200)
	u = keys.User{}
	res.data(&u)
	if u.Description != "changed" || u.PlannedPurgeDate != nil || u.Email != "" || u.Name != "svc" || u.Version != 2 || res.header.Get("ETag") != `"2"` {
		t.Fatalf("patched user = %+v etag %s", u, res.header.Get("ETag"))
	}
	e.do("PATCH", p, e.adminA, map[string]any{"requestLimit": 10, "version": 2}).want(200).data(&u)
	e.do("PATCH", p, e.adminA, map[string]any{"scope": "s2"}, "If-Match", `"1", "3"`).want(200).data(&u)
	e.do("PATCH", p, e.adminA, map[string]any{"name": nil}, "If-Match", "*").wantProblem(400, "name")
	e.do("PATCH", p, e.adminA, map[string]any{"id": "other"}, "If-Match", "*").wantProblem(400, "id")
	e.do("PATCH", p, e.adminA, map[string]any{"superadmin": true}, "If-Match", "*").wantProblem(403, "")
	e.do("PATCH", p, e.adminA, map[string]any{"primaryTenant": "b"}, "If-Match", "*").wantProblem(403, "")

	// State machine.
	e.do("PATCH", p, e.adminA, map[string]any{"status": "DELETED"}, "If-Match", "*").wantProblem(409, "")
	e.do("PATCH", p, e.adminA, map[string]any{"status": "CREATE"}, "If-Match", "*").wantProblem(409, "")
	e.do("PATCH", p, e.adminA, map[string]any{"status": "INACTIVE"}, "If-Match", "*").want(200)
	e.do("PATCH", p, e.adminA, map[string]any{"status": "ACTIVE"}, "If-Match", "*").want(200)
	e.do("PATCH", p, e.adminA, map[string]any{"status": "DELETING"}, "If-Match", "*").want(200)
	e.do("PATCH", p, e.adminA, map[string]any{"status": "ACTIVE"}, "If-Match", "*").wantProblem(409, "")

	// DELETE: If-Match required; 200 with the DELETED user; keys revoked.
	v := e.createUser(e.adminA, map[string]any{"name": "victim"})
	k := e.createKey(e.adminA, v.ID, "k1")
	e.do("DELETE", "/v1/users/"+v.ID, e.adminA, nil).wantProblem(428, "")
	e.do("DELETE", "/v1/users/"+v.ID, e.adminA, nil, "If-Match", `"7"`).wantProblem(412, "")
	e.do("DELETE", "/v1/users/"+v.ID, e.adminA, nil, "If-Match", etagOf(v.Version)).want(200).data(&v)
	if v.Status != keys.UserDeleted {
		t.Fatalf("deleted user status = %s", v.Status)
	}
	var kv KeyView
	e.do("GET", "/v1/users/"+v.ID+"/keys/"+k.ID, e.adminA, nil).want(200).data(&kv)
	if kv.Status != keys.KeyRevoked || kv.Usable {
		t.Fatalf("key of deleted user = %+v", kv)
	}
	e.do("DELETE", "/v1/users/"+v.ID, e.adminA, nil, "If-Match", "*").wantProblem(409, "")
	// A caller cannot delete itself.
	e.do("DELETE", "/v1/users/"+e.adminAID, e.adminA, nil, "If-Match", "*").wantProblem(409, "")
}

func TestListUsers(t *testing.T) {
	e := newEnv(t, newFileStore)
	for _, n := range []string{"carol", "alice", "bob"} {
		e.createUser(e.adminA, map[string]any{"name": n, "type": "SERVICE"})
	}
	e.createUser(e.adminA, map[string]any{"name": "dave", "status": "INACTIVE"})
	var users []keys.User
	res := e.do("GET", "/v1/users?sort=-name&type=SERVICE", e.adminA, nil).want(200).data(&users)
	if got := names(users); got != "carol,bob,alice" {
		t.Fatalf("sorted names = %s", got)
	}
	if env := res.envelope(); env.Total != 3 || env.Page != 1 || env.Size != 30 || env.Type != "User" {
		t.Fatalf("envelope = %+v", env)
	}
	e.do("GET", "/v1/users?sort=name&size=2&page=2&status=ACTIVE", e.adminA, nil).want(200).data(&users)
	// ACTIVE in a: admin-a, alice, bob, carol, member-a → page 2 of size 2.
	if got := names(users); got != "bob,carol" {
		t.Fatalf("page 2 = %s", got)
	}
	e.do("GET", "/v1/users?q=DAV", e.adminA, nil).want(200).data(&users)
	if got := names(users); got != "dave" {
		t.Fatalf("q = %s", got)
	}
	e.do("GET", "/v1/users?role=ADMIN", e.adminA, nil).want(200).data(&users)
	if got := names(users); got != "admin-a" {
		t.Fatalf("role = %s", got)
	}
	for _, q := range []struct{ query, field string }{
		{"size=101", "size"}, {"size=0", "size"}, {"size=x", "size"}, {"page=0", "page"}, {"page=-1", "page"},
		{"sort=password", "sort"}, {"sort=name,-bogus", "sort"}, {"status=GONE", "status"}, {"type=x", "type"},
		{"role=ROOT", "role"}, {"page=99999999999", "page"},
	} {
		e.do("GET", "/v1/users?"+q.query, e.adminA, nil).wantProblem(400, q.field)
	}
	e.do("GET", "/v1/users?size=100", e.adminA, nil).want(200)
	// Superadmin lists across tenants.
	e.do("GET", "/v1/users?size=100", e.rootKey, nil).want(200).data(&users)
	if len(users) != 8 {
		t.Fatalf("superadmin sees %d users: %s", len(users), names(users))
	}
}

func names(us []keys.User) string {
	var s []string
	for _, u := range us {
		s = append(s, u.Name)
	}
	return strings.Join(s, ",")
}

func TestRequestBodies(t *testing.T) {
	e := newEnv(t, newFileStore)
	count := func() int {
		return e.do("GET", "/v1/users", e.adminA, nil).want(200).envelope().Total
	}
	before := count()
	post := func(body string, hdr ...string) *result {
		return e.serve(req("POST", "/v1/users", e.adminA, body, hdr...))
	}
	post(`{"name":"x"}`, "Content-Type", "text/plain").wantProblem(415, "")
	post(`{"name":"x"}`, "Content-Type", "").wantProblem(415, "")
	post(`{"name":"x"}`, "Content-Type", "application/json; charset=utf-8").want(201)
	before++
	post(`{"name":"x2","nickname":"y"}`).wantProblem(400, "nickname")
	post(`{"name":1}`).wantProblem(400, "name")
	post(`{"name":"y","requestLimit":"many"}`).wantProblem(400, "requestLimit")
	post(`{"name":"y","customerRoles":"a"}`).wantProblem(400, "customerRoles")
	post(`{"name":"y","plannedPurgeDate":"tomorrow"}`).wantProblem(400, "plannedPurgeDate")
	post(`{"name":"y","superadmin":"yes"}`).wantProblem(400, "superadmin")
	post(`{"name":"y"} {"name":"z"}`).wantProblem(400, "")
	post(`{"name":"y"}garbage`).wantProblem(400, "")
	post(`{"name":`).wantProblem(400, "")
	post(``).wantProblem(400, "")
	post(`[]`).wantProblem(400, "")
	post(`"x"`).wantProblem(400, "")
	post("{\"name\":\"\xff\"}").wantProblem(400, "")
	big := `{"name":"y","description":"` + strings.Repeat("a", int(DefaultMaxBody)) + `"}`
	post(big).wantProblem(413, "")
	// Without Content-Length (chunked) too.
	r := req("POST", "/v1/users", e.adminA, big)
	r.ContentLength = -1
	e.serve(r).wantProblem(413, "")
	// Nested unknown field in a permission.
	e.do("POST", "/v1/permissions", e.adminA, map[string]any{
		"user": map[string]any{"id": e.memberAID, "password": "x"}, "workspace": map[string]any{"id": "a"}, "role": "ADMIN", "status": "ACTIVE",
	}).wantProblem(400, "password")
	if after := count(); after != before {
		t.Fatalf("users after rejected requests = %d, want %d", after, before)
	}
}

func TestKeys(t *testing.T) {
	e := newEnv(t, newFileStore)
	u := e.createUser(e.adminA, map[string]any{"name": "svc"})
	base := "/v1/users/" + u.ID + "/keys"
	exp := e.clk.Now().Add(30 * 24 * time.Hour).Format(time.RFC3339)
	res := e.do("POST", base, e.adminA, map[string]any{"name": "ci", "expiresAt": exp}).want(201)
	var k KeyView
	res.data(&k)
	if !strings.HasPrefix(k.Key, "kg_"+k.ID+"_") || k.Masked != "kg_"+k.ID+"_…"+k.Key[len(k.Key)-4:] || k.Tenant != "a" || !k.Usable {
		t.Fatalf("created key = %+v", k)
	}
	if strings.Contains(string(res.body), "hash") {
		t.Fatalf("creation response mentions a hash: %s", res.body)
	}
	// Never shown again.
	for _, r := range []*result{e.do("GET", base+"/"+k.ID, e.adminA, nil).want(200), e.do("GET", base, e.adminA, nil).want(200)} {
		if strings.Contains(string(r.body), k.Key) || strings.Contains(string(r.body), `"key"`) || strings.Contains(string(r.body), "hash") {
			t.Fatalf("key material in %s: %s", r.path, r.body)
		}
		if !strings.Contains(string(r.body), k.Masked) {
			t.Fatalf("masked key missing in %s", r.body)
		}
	}
	e.do("POST", base, e.adminA, map[string]any{"name": "ci", "expiresAt": exp}).wantProblem(409, "")
	e.do("POST", base, e.adminA, map[string]any{"name": "x"}).wantProblem(400, "expiresAt")
	e.do("POST", base, e.adminA, map[string]any{"expiresAt": exp}).wantProblem(400, "name")
	e.do("POST", base, e.adminA, map[string]any{"name": "x", "expiresAt": "2000-01-01T00:00:00Z"}).wantProblem(400, "expiresAt")
	e.do("POST", base, e.adminA, map[string]any{"name": "x", "expiresAt": exp, "tenant": "b"}).wantProblem(403, "")
	e.do("POST", base, e.rootKey, map[string]any{"name": "x", "expiresAt": exp, "tenant": "b"}).wantProblem(409, "") // no permission in b

	// The key authenticates (make the user an admin of a).
	e.do("PUT", "/v1/users/"+u.ID+"/roles/ADMIN", e.adminA, nil).want(200)
	e.do("POST", "/v1/permissions", e.adminA, map[string]any{"user": map[string]any{"id": u.ID}, "workspace": map[string]any{"id": "a"}, "role": "ADMIN", "status": "ACTIVE"}).want(200)
	e.do("GET", "/v1/users/"+u.ID, k.Key, nil).want(200)

	// PATCH name and expiry keep the key material.
	newExp := e.clk.Now().Add(60 * 24 * time.Hour).Format(time.RFC3339)
	e.do("PATCH", base+"/"+k.ID, e.adminA, map[string]any{"name": "ci-renamed", "expiresAt": newExp}).wantProblem(428, "")
	e.do("PATCH", base+"/"+k.ID, e.adminA, map[string]any{"name": "ci-renamed", "expiresAt": newExp}, "If-Match", `"5"`).wantProblem(412, "")
	var pk KeyView
	e.do("PATCH", base+"/"+k.ID, e.adminA, map[string]any{"name": "ci-renamed", "expiresAt": newExp, "version": k.Version}).want(200).data(&pk)
	if pk.Name != "ci-renamed" || pk.ExpiresAt.Format(time.RFC3339) != newExp || pk.Version != k.Version+1 {
		t.Fatalf("patched key = %+v", pk)
	}
	e.do("GET", "/v1/users/"+u.ID, k.Key, nil).want(200)
	e.do("PATCH", base+"/"+k.ID, e.adminA, map[string]any{"status": "REVOKED"}, "If-Match", "*").wantProblem(400, "status")
	e.do("PATCH", base+"/"+k.ID, e.adminA, map[string]any{"hash": "x"}, "If-Match", "*").wantProblem(400, "hash")

	// Replace without grace: old key stops at once, new one works, shown once.
	var rep KeyView
	e.do("POST", base+"/"+k.ID+"/replace", e.adminA, nil).want(201).data(&rep)
	if rep.Key == "" || rep.Name != "ci-renamed" || rep.Previous == nil || rep.Previous.ID != k.ID || rep.Previous.Usable {
		t.Fatalf("replace = %+v", rep)
	}
	e.do("GET", "/v1/users/"+u.ID, k.Key, nil).wantProblem(401, "")
	e.do("GET", "/v1/users/"+u.ID, rep.Key, nil).want(200)
	e.do("POST", base+"/"+k.ID+"/replace", e.adminA, nil).wantProblem(409, "")

	// Replace with a grace period ("24h"), then seconds.
	var rep2 KeyView
	e.do("POST", base+"/"+rep.ID+"/replace", e.adminA, map[string]any{"gracePeriod": "24h"}).want(201).data(&rep2)
	if rep2.Previous == nil || rep2.Previous.DisableAt == nil || !rep2.Previous.Usable {
		t.Fatalf("replace with grace = %+v", rep2)
	}
	e.do("GET", "/v1/users/"+u.ID, rep.Key, nil).want(200)
	e.do("GET", "/v1/users/"+u.ID, rep2.Key, nil).want(200)
	e.clk.Advance(25 * time.Hour)
	e.do("GET", "/v1/users/"+u.ID, rep.Key, nil).wantProblem(401, "")
	e.do("GET", "/v1/users/"+u.ID, rep2.Key, nil).want(200)
	var rep3 KeyView
	e.do("POST", base+"/"+rep2.ID+"/replace", e.adminA, map[string]any{"gracePeriod": 3600}).want(201).data(&rep3)
	if d := rep3.Previous.DisableAt.Sub(e.clk.Now()); d != time.Hour {
		t.Fatalf("grace in seconds gave %v", d)
	}
	e.do("POST", base+"/"+rep3.ID+"/replace", e.adminA, map[string]any{"gracePeriod": "forever"}).wantProblem(400, "gracePeriod")
	e.do("POST", base+"/"+rep3.ID+"/replace", e.adminA, map[string]any{"gracePeriod": "-1h"}).wantProblem(400, "gracePeriod")
	e.do("POST", base+"/"+rep3.ID+"/replace", e.adminA, map[string]any{"gracePeriod": "1000h"}).wantProblem(400, "gracePeriod")
	e.do("POST", base+"/"+rep3.ID+"/replace", e.adminA, map[string]any{"grace": "1h"}).wantProblem(400, "grace")

	// DELETE revokes for good; it stays listed.
	e.do("DELETE", base+"/"+rep3.ID, e.adminA, nil).wantProblem(428, "")
	var del KeyView
	e.do("DELETE", base+"/"+rep3.ID, e.adminA, nil, "If-Match", etagOf(rep3.Version)).want(200).data(&del)
	if del.Status != keys.KeyRevoked {
		t.Fatalf("deleted key = %+v", del)
	}
	e.do("PATCH", base+"/"+rep3.ID, e.adminA, map[string]any{"status": "ACTIVE"}, "If-Match", "*").wantProblem(409, "")
	var list []KeyView
	e.do("GET", base+"?sort=-createdAt&size=2", e.adminA, nil).want(200).data(&list)
	if len(list) != 2 {
		t.Fatalf("key list = %+v", list)
	}
	e.do("GET", base+"/nokey", e.adminA, nil).wantProblem(404, "")
	// A key of another user of the same tenant is not found under this user.
	other := e.createUser(e.adminA, map[string]any{"name": "other"})
	ok := e.createKey(e.adminA, other.ID, "x")
	e.do("GET", base+"/"+ok.ID, e.adminA, nil).wantProblem(404, "")
}

func TestSecrets(t *testing.T) {
	e := newEnv(t, newFileStore)
	u := e.createUser(e.adminA, map[string]any{"name": "app", "type": "APPLICATION"})
	base := "/v1/users/" + u.ID + "/secrets"
	// Without a master key: 503.
	noSeal := New(Config{Store: e.store, Hasher: keys.NewHasher([]byte("pepper")), Now: e.clk.Now})
	w := &result{t: t}
	{
		rec := e.h
		e.h = noSeal
		w = e.do("GET", base, e.adminA, nil)
		e.h = rec
	}
	if p := w.wantProblem(503, ""); p.Detail != "master key not configured" {
		t.Fatalf("503 detail = %q", p.Detail)
	}

	var s1, s2 SecretView
	res := e.do("POST", base, e.adminA, nil).want(201)
	res.data(&s1)
	e.do("POST", base, e.adminA, map[string]any{"name": "second"}).want(201).data(&s2)
	raw, err := base64.StdEncoding.DecodeString(s1.Secret)
	if err != nil || len(raw) != 32 || s2.Name != "second" || s1.Status != keys.SecretActive {
		t.Fatalf("secret = %+v (%v)", s1, err)
	}
	// Stored sealed, bound to user and id.
	stored, err := e.store.GetSecret(t.Context(), u.ID, s1.ID)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := e.sealer.Open(stored.Sealed, keys.SecretAAD(u.ID, s1.ID))
	if err != nil || string(plain) != s1.Secret {
		t.Fatalf("sealed secret does not open to the issued one: %v", err)
	}
	// A third live secret: 409.
	e.do("POST", base, e.adminA, nil).wantProblem(409, "")
	// Never shown again.
	list := e.do("GET", base, e.adminA, nil).want(200)
	if strings.Contains(string(list.body), s1.Secret) || strings.Contains(string(list.body), `"secret"`) || strings.Contains(string(list.body), "sealed") {
		t.Fatalf("secret value in listing: %s", list.body)
	}
	// Deactivate one, then a new one is allowed; reactivating is 409.
	e.do("PATCH", base+"/"+s1.ID, e.adminA, map[string]any{"status": "INACTIVE"}).wantProblem(428, "")
	e.do("PATCH", base+"/"+s1.ID, e.adminA, map[string]any{"status": "INACTIVE"}, "If-Match", `"99"`).wantProblem(412, "")
	e.do("PATCH", base+"/"+s1.ID, e.adminA, map[string]any{"status": "INACTIVE"}, "If-Match", etagOf(s1.Version)).want(200)
	var s3 SecretView
	e.do("POST", base, e.adminA, nil).want(201).data(&s3)
	e.do("PATCH", base+"/"+s1.ID, e.adminA, map[string]any{"status": "ACTIVE"}, "If-Match", "*").wantProblem(409, "")
	e.do("PATCH", base+"/"+s1.ID, e.adminA, map[string]any{"status": "GONE"}, "If-Match", "*").wantProblem(400, "status")
	e.do("POST", base, e.adminA, map[string]any{"secret": "mine"}).wantProblem(400, "secret")
	// DELETE: 204.
	e.do("DELETE", base+"/"+s1.ID, e.adminA, nil).wantProblem(428, "")
	res = e.do("DELETE", base+"/"+s1.ID, e.adminA, nil, "If-Match", "*").want(204)
	if len(res.body) != 0 {
		t.Fatalf("204 body = %q", res.body)
	}
	e.do("DELETE", base+"/"+s1.ID, e.adminA, nil, "If-Match", "*").wantProblem(404, "")
	e.do("PATCH", base+"/nosecret", e.adminA, map[string]any{"name": "x"}, "If-Match", "*").wantProblem(404, "")
}

func TestRoles(t *testing.T) {
	e := newEnv(t, newFileStore)
	u := e.createUser(e.adminA, map[string]any{"name": "svc", "role": "MEMBER"})
	base := "/v1/users/" + u.ID + "/roles"
	var rv RolesView
	e.do("GET", base, e.adminA, nil).want(200).data(&rv)
	if rv.Role != keys.RoleMember || len(rv.Roles) != 1 || rv.Roles[0] != (RoleEntry{Key: "MEMBER", Type: "STANDARD"}) {
		t.Fatalf("roles = %+v", rv)
	}
	e.do("PUT", base+"/ADMIN", e.adminA, nil).want(200).data(&rv)
	e.do("PUT", base+"/pathfinder", e.adminA, nil).want(200).data(&rv)
	e.do("PUT", base+"/pathfinder", e.adminA, nil).want(200).data(&rv) // idempotent
	if rv.Role != keys.RoleAdmin || strings.Join(rv.CustomerRoles, ",") != "pathfinder" || len(rv.Roles) != 2 {
		t.Fatalf("roles = %+v", rv)
	}
	e.do("PUT", base+"/other", e.adminA, nil, "If-Match", `"1"`).wantProblem(412, "")
	e.do("DELETE", base+"/VIEWER", e.adminA, nil).wantProblem(404, "") // not its standard role
	e.do("DELETE", base+"/ADMIN", e.adminA, nil).want(200).data(&rv)   // back to the default role
	if rv.Role != keys.RoleMember || rv.Workspace != "a" {
		t.Fatalf("roles after deleting the standard role = %+v", rv)
	}
	e.do("DELETE", base+"/missing", e.adminA, nil).wantProblem(404, "")
	e.do("PUT", base+"/bad%20role", e.adminA, nil).wantProblem(400, "")
	e.do("DELETE", base+"/pathfinder", e.adminA, nil).want(200).data(&rv)
	if len(rv.CustomerRoles) != 0 {
		t.Fatalf("roles after delete = %+v", rv)
	}
	var hist []keys.HistoryEntry
	e.do("GET", "/v1/users/"+u.ID+"/history", e.adminA, nil).want(200).data(&hist)
	if len(hist) < 4 || hist[0].Actor != e.adminAID {
		t.Fatalf("history = %+v", hist)
	}
}

func TestPermissions(t *testing.T) {
	e := newEnv(t, newFileStore)
	// A user of tenant a, invited into b by a superadmin.
	u := e.createUser(e.adminA, map[string]any{"name": "guest", "email": "guest@example.com"})
	guestKey := e.createKey(e.adminA, u.ID, "own").Key
	body := map[string]any{"user": map[string]any{"id": u.ID}, "workspace": map[string]any{"id": "b"}, "role": "MEMBER", "status": "INVITED"}
	// A tenant admin of b does not see a's user.
	e.do("POST", "/v1/permissions", e.adminB, body).wantProblem(404, "")
	var p PermissionView
	res := e.do("POST", "/v1/permissions", e.rootKey, body).want(201)
	res.data(&p)
	if p.Status != keys.PermissionInvited || p.WorkspaceID != "b" || p.Workspace.ID != "b" || p.User.ID != u.ID ||
		p.User.UserName != "guest" || p.Role != keys.RoleMember || res.envelope().Type != "Permission" {
		t.Fatalf("permission = %+v", p)
	}
	// Now b's admin sees the user, and updates the role (200), but cannot activate (409).
	e.do("GET", "/v1/users/"+u.ID, e.adminB, nil).want(200)
	body["role"] = "VIEWER"
	e.do("POST", "/v1/permissions", e.adminB, body).want(200).data(&p)
	if p.Role != keys.RoleViewer || p.Status != keys.PermissionInvited {
		t.Fatalf("updated = %+v", p)
	}
	body["status"] = "ACTIVE"
	e.do("POST", "/v1/permissions", e.adminB, body).wantProblem(409, "")
	e.do("POST", "/v1/permissions", e.rootKey, body).wantProblem(409, "")
	// ... but it still cannot change the user itself (its primary tenant is a).
	e.do("PATCH", "/v1/users/"+u.ID, e.adminB, map[string]any{"description": "x"}, "If-Match", "*").wantProblem(403, "")
	// Validation.
	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"workspace": map[string]any{"id": "b"}, "role": "ADMIN", "status": "ACTIVE"}, "user.id"},
		{map[string]any{"user": map[string]any{"id": u.ID}, "role": "ADMIN", "status": "ACTIVE"}, "workspace.id"},
		{map[string]any{"user": map[string]any{"id": u.ID}, "workspace": map[string]any{"id": "b"}, "status": "ACTIVE"}, "role"},
		{map[string]any{"user": map[string]any{"id": u.ID}, "workspace": map[string]any{"id": "b"}, "role": "OWNER", "status": "ACTIVE"}, "role"},
		{map[string]any{"user": map[string]any{"id": u.ID}, "workspace": map[string]any{"id": "b"}, "role": "ADMIN", "status": "GONE"}, "status"},
		{map[string]any{"user": map[string]any{"id": u.ID}, "workspace": map[string]any{"id": "b"}, "role": "ADMIN"}, "status"},
		{map[string]any{"user": map[string]any{"id": 5}, "workspace": map[string]any{"id": "b"}, "role": "ADMIN", "status": "ACTIVE"}, "user.id"},
	} {
		e.do("POST", "/v1/permissions", e.adminB, c.body).wantProblem(400, c.field)
	}
	// Accept: only the invited user's own key.
	e.do("POST", "/v1/permissions/"+p.ID+"/accept", e.adminB, nil).wantProblem(404, "")
	e.do("POST", "/v1/permissions/"+p.ID+"/accept", e.rootKey, nil).wantProblem(404, "")
	e.do("POST", "/v1/permissions/"+p.ID+"/accept", "", nil).wantProblem(401, "")
	e.do("POST", "/v1/permissions/nope/accept", guestKey, nil).wantProblem(404, "")
	e.do("POST", "/v1/permissions/"+p.ID+"/accept", guestKey, nil).want(200).data(&p)
	if p.Status != keys.PermissionActive {
		t.Fatalf("accepted = %+v", p)
	}
	e.do("POST", "/v1/permissions/"+p.ID+"/accept", guestKey, nil).wantProblem(409, "")
	// Round trip: GET the list, edit an item, POST it back.
	var list []PermissionView
	e.do("GET", "/v1/workspaces/b/permissions?email=guest@example.com", e.adminB, nil).want(200).data(&list)
	if len(list) != 1 || list[0].ID != p.ID {
		t.Fatalf("list = %+v", list)
	}
	item := list[0]
	item.Status = keys.PermissionArchived
	e.do("POST", "/v1/permissions", e.adminB, item).want(200).data(&p)
	if p.Status != keys.PermissionArchived {
		t.Fatalf("archived = %+v", p)
	}
	item.Version = 1
	e.do("POST", "/v1/permissions", e.adminB, item).wantProblem(412, "")
	// ARCHIVED → ACTIVE reactivates.
	body["status"] = "ACTIVE"
	e.do("POST", "/v1/permissions", e.adminB, body).want(200).data(&p)
	if p.Status != keys.PermissionActive {
		t.Fatalf("reactivated = %+v", p)
	}
	// Filters.
	e.do("GET", "/v1/workspaces/b/permissions?status=INVITED", e.adminB, nil).want(200).data(&list)
	if len(list) != 0 {
		t.Fatalf("INVITED filter = %+v", list)
	}
	e.do("GET", "/v1/workspaces/b/permissions?q=guest&sort=-createdAt&includeTechnicalUsers=true", e.adminB, nil).want(200).data(&list)
	if len(list) != 1 {
		t.Fatalf("q filter = %+v", list)
	}
	e.do("GET", "/v1/workspaces/b/permissions?includeTechnicalUsers=maybe", e.adminB, nil).wantProblem(400, "includeTechnicalUsers")
	e.do("GET", "/v1/workspaces/b/permissions?sort=email", e.adminB, nil).wantProblem(400, "sort")
	e.do("GET", "/v1/workspaces/b/permissions?sort=role,-lastLogin", e.adminB, nil).want(200).data(&list)
	if len(list) != 2 || list[0].Role != keys.RoleAdmin {
		t.Fatalf("sorted by role = %+v", list)
	}
	e.do("GET", "/v1/workspaces/nowhere/permissions", e.rootKey, nil).wantProblem(404, "")
}

func TestTenants(t *testing.T) {
	e := newEnv(t, newFileStore)
	var ts []keys.Tenant
	e.do("GET", "/v1/tenants?sort=-id", e.rootKey, nil).want(200).data(&ts)
	if len(ts) != 3 || ts[0].ID != "root" {
		t.Fatalf("tenants = %+v", ts)
	}
	e.do("GET", "/v1/tenants", e.adminA, nil).want(200).data(&ts)
	if len(ts) != 1 || ts[0].ID != "a" {
		t.Fatalf("tenant admin sees %+v", ts)
	}
	e.do("POST", "/v1/tenants", e.adminA, map[string]any{"id": "c"}).wantProblem(403, "")
	e.do("POST", "/v1/tenants", e.rootKey, map[string]any{"id": "a"}).wantProblem(409, "")
	e.do("POST", "/v1/tenants", e.rootKey, map[string]any{"id": "bad id"}).wantProblem(400, "id")
	var nt keys.Tenant
	e.do("POST", "/v1/tenants", e.rootKey, map[string]any{"name": "generated"}).want(201).data(&nt)
	if nt.ID == "" || nt.Status != keys.TenantActive {
		t.Fatalf("new tenant = %+v", nt)
	}
	res := e.do("GET", "/v1/tenants/a", e.adminA, nil).want(200)
	if res.header.Get("ETag") == "" {
		t.Fatal("tenant without ETag")
	}
	e.do("PATCH", "/v1/tenants/a", e.adminA, map[string]any{"name": "Renamed"}).wantProblem(428, "")
	e.do("PATCH", "/v1/tenants/a", e.adminA, map[string]any{"name": "Renamed"}, "If-Match", res.header.Get("ETag")).want(200)
	e.do("PATCH", "/v1/tenants/a", e.adminA, map[string]any{"status": "ARCHIVED"}, "If-Match", "*").wantProblem(403, "")
	e.do("PATCH", "/v1/tenants/a", e.rootKey, map[string]any{"status": "FROZEN"}, "If-Match", "*").wantProblem(400, "status")
	e.do("PATCH", "/v1/tenants/a", e.rootKey, map[string]any{"status": "ARCHIVED"}, "If-Match", `"1"`).wantProblem(412, "")
	e.do("PATCH", "/v1/tenants/a", e.rootKey, map[string]any{"status": "ARCHIVED"}, "If-Match", "*").want(200)
	// Keys of an archived tenant authenticate nothing, not even its admins'.
	e.do("GET", "/v1/users", e.adminA, nil).wantProblem(401, "")
	e.do("POST", "/v1/users", e.rootKey, map[string]any{"name": "late", "primaryTenant": "a"}).wantProblem(409, "")
}

func TestTenantIsolation(t *testing.T) {
	// One user carries a key and a secret: every credential for every type.
	e := newEnvPolicy(t, newFileStore, allCredentials)
	// Objects of tenant b.
	ub := e.createUser(e.adminB, map[string]any{"name": "b-svc", "type": "APPLICATION"})
	kb := e.createKey(e.adminB, ub.ID, "k")
	var sb SecretView
	e.do("POST", "/v1/users/"+ub.ID+"/secrets", e.adminB, nil).want(201).data(&sb)
	var pb []PermissionView
	e.do("GET", "/v1/workspaces/b/permissions?user="+ub.ID, e.adminB, nil).want(200).data(&pb)
	ua := e.createUser(e.adminA, map[string]any{"name": "a-svc"})
	ka := e.createKey(e.adminA, ua.ID, "k")

	notFound := []struct{ method, path string }{
		{"GET", "/v1/users/" + ub.ID},
		{"GET", "/v1/users?tenant=b"},
		{"GET", "/v1/users/" + ub.ID + "/keys"},
		{"GET", "/v1/users/" + ub.ID + "/keys/" + kb.ID},
		{"GET", "/v1/users/" + ua.ID + "/keys/" + kb.ID}, // b's key id guessed under a's user
		{"GET", "/v1/users/" + ub.ID + "/secrets"},
		{"GET", "/v1/users/" + ub.ID + "/roles"},
		{"GET", "/v1/users/" + ub.ID + "/history"},
		{"GET", "/v1/users/" + ub.ID + "/export"},
		{"GET", "/v1/workspaces/b/permissions"},
		{"GET", "/v1/tenants/b"},
		{"GET", "/v1/activity?tenant=b"},
		{"DELETE", "/v1/users/" + ub.ID},
		{"DELETE", "/v1/users/" + ub.ID + "/keys/" + kb.ID},
		{"POST", "/v1/users/" + ub.ID + "/keys/" + kb.ID + "/replace"},
		{"DELETE", "/v1/users/" + ub.ID + "/secrets/" + sb.ID},
		{"PUT", "/v1/users/" + ub.ID + "/roles/ADMIN"},
		{"DELETE", "/v1/users/" + ub.ID + "/roles/x"},
		{"POST", "/v1/permissions/" + pb[0].ID + "/accept"},
	}
	for _, c := range notFound {
		e.do(c.method, c.path, e.adminA, nil, "If-Match", "*").wantProblem(404, "")
	}
	bodies := []struct {
		method, path string
		body         any
	}{
		{"PATCH", "/v1/users/" + ub.ID, map[string]any{"name": "pwned"}},
		{"PATCH", "/v1/tenants/b", map[string]any{"name": "pwned"}},
		{"POST", "/v1/users/" + ub.ID + "/keys", map[string]any{"name": "x", "expiresAt": e.clk.Now().Add(time.Hour).Format(time.RFC3339)}},
		{"PATCH", "/v1/users/" + ub.ID + "/keys/" + kb.ID, map[string]any{"status": "INACTIVE"}},
		{"POST", "/v1/users/" + ub.ID + "/secrets", map[string]any{}},
		{"PATCH", "/v1/users/" + ub.ID + "/secrets/" + sb.ID, map[string]any{"status": "INACTIVE"}},
		{"POST", "/v1/permissions", map[string]any{"user": map[string]any{"id": ub.ID}, "workspace": map[string]any{"id": "b"}, "role": "ADMIN", "status": "ACTIVE"}},
		{"POST", "/v1/permissions", map[string]any{"user": map[string]any{"id": ub.ID}, "workspace": map[string]any{"id": "a"}, "role": "ADMIN", "status": "ACTIVE"}},
		{"POST", "/v1/permissions", map[string]any{"user": map[string]any{"id": ua.ID}, "workspace": map[string]any{"id": "b"}, "role": "ADMIN", "status": "ACTIVE"}},
	}
	for _, c := range bodies {
		e.do(c.method, c.path, e.adminA, c.body, "If-Match", "*").wantProblem(404, "")
	}
	// Creating in b is forbidden outright.
	e.do("POST", "/v1/users", e.adminA, map[string]any{"name": "x", "primaryTenant": "b"}).wantProblem(403, "")
	// Listings show only a.
	var users []keys.User
	e.do("GET", "/v1/users?size=100", e.adminA, nil).want(200).data(&users)
	for _, u := range users {
		if u.PrimaryTenant != "a" {
			t.Fatalf("tenant a admin lists %+v", u)
		}
	}
	// Nothing of b changed.
	var got keys.User
	e.do("GET", "/v1/users/"+ub.ID, e.adminB, nil).want(200).data(&got)
	if got.Name != "b-svc" || got.Version != ub.Version {
		t.Fatalf("b's user changed: %+v", got)
	}
	var gk KeyView
	e.do("GET", "/v1/users/"+ub.ID+"/keys/"+kb.ID, e.adminB, nil).want(200).data(&gk)
	if gk.Status != keys.KeyActive || gk.Version != kb.Version {
		t.Fatalf("b's key changed: %+v", gk)
	}
	// The 404 bodies do not tell "exists elsewhere" from "does not exist".
	r1 := e.do("GET", "/v1/users/"+ub.ID, e.adminA, nil)
	r2 := e.do("GET", "/v1/users/999999999999999", e.adminA, nil)
	if string(r1.body) != string(r2.body) {
		t.Fatalf("404 bodies differ:\n%s\n%s", r1.body, r2.body)
	}
	// A superadmin living in tenant a is out of a's admin's reach.
	sa := e.createUser(e.rootKey, map[string]any{"name": "boss", "primaryTenant": "a", "superadmin": true})
	e.do("GET", "/v1/users/"+sa.ID, e.adminA, nil).want(200)
	e.do("PATCH", "/v1/users/"+sa.ID, e.adminA, map[string]any{"status": "INACTIVE"}, "If-Match", "*").wantProblem(403, "")
	e.do("POST", "/v1/users/"+sa.ID+"/keys", e.adminA, map[string]any{"name": "steal", "expiresAt": e.clk.Now().Add(time.Hour).Format(time.RFC3339)}).wantProblem(403, "")
	e.do("DELETE", "/v1/users/"+sa.ID, e.adminA, nil, "If-Match", "*").wantProblem(403, "")
	// A key of b's admin works in b only.
	e.do("GET", "/v1/users/"+ka.ID, e.adminB, nil).wantProblem(404, "")
}

func TestHistoryActivityExport(t *testing.T) {
	// One user carries a key and a secret: every credential for every type.
	e := newEnvPolicy(t, newFileStore, allCredentials)
	u := e.createUser(e.adminA, map[string]any{"name": "svc", "type": "APPLICATION"})
	e.do("PATCH", "/v1/users/"+u.ID, e.adminA, map[string]any{"description": "one"}, "If-Match", "*").want(200)
	e.do("PATCH", "/v1/users/"+u.ID, e.adminA, map[string]any{"description": "two"}, "If-Match", "*").want(200)
	k := e.createKey(e.adminA, u.ID, "k")
	var sec SecretView
	e.do("POST", "/v1/users/"+u.ID+"/secrets", e.adminA, nil).want(201).data(&sec)

	var hist []keys.HistoryEntry
	res := e.do("GET", "/v1/users/"+u.ID+"/history?size=100", e.adminA, nil).want(200).data(&hist)
	actions := map[string]int{}
	for _, h := range hist {
		actions[h.Action]++
		if h.Actor != e.adminAID {
			t.Fatalf("history actor = %q", h.Actor)
		}
	}
	if actions["user.update"] != 2 || actions["user.create"] != 1 || res.envelope().Total != len(hist) {
		t.Fatalf("history actions = %v", actions)
	}
	if c := hist[len(hist)-1]; c.Action != "user.create" {
		t.Fatalf("oldest entry = %+v", c)
	}
	e.do("GET", "/v1/users/"+u.ID+"/history?sort=at", e.adminA, nil).wantProblem(400, "sort")

	// Activity: every call, with actor, method, path, status and tenant.
	var acts []keys.Activity
	e.do("GET", "/v1/activity?size=100", e.adminA, nil).want(200).data(&acts)
	found := false
	for _, a := range acts {
		if a.Tenant != "a" {
			t.Fatalf("tenant admin sees activity of %q", a.Tenant)
		}
		if a.Method == "PATCH" && a.Path == "/v1/users/"+u.ID && a.Status == 200 && a.Actor == e.adminAID {
			found = true
		}
	}
	if !found {
		t.Fatalf("PATCH not in activity: %+v", acts)
	}
	e.clk.Advance(time.Second)
	e.do("GET", "/v1/users/nobody", e.adminA, nil).want(404)
	e.do("GET", "/v1/activity?actor="+e.adminAID+"&size=1", e.rootKey, nil).want(200).data(&acts)
	if len(acts) != 1 || acts[0].Status != 404 || acts[0].Method != "GET" {
		t.Fatalf("latest activity = %+v", acts)
	}
	// Unauthenticated calls are recorded too, without an actor.
	e.clk.Advance(time.Second)
	e.do("GET", "/v1/users", "kg_bad", nil).want(401)
	e.do("GET", "/v1/activity?size=1", e.rootKey, nil).want(200).data(&acts)
	if acts[0].Status != 401 || acts[0].Actor != "" {
		t.Fatalf("401 activity = %+v", acts[0])
	}
	from := e.clk.Now().Add(time.Minute).Format(time.RFC3339)
	e.do("GET", "/v1/activity?from="+from, e.rootKey, nil).want(200).data(&acts)
	if len(acts) != 0 {
		t.Fatalf("activity from the future = %+v", acts)
	}
	e.do("GET", "/v1/activity?from=yesterday", e.rootKey, nil).wantProblem(400, "from")
	e.do("GET", "/v1/activity?from=2030-01-02T00:00:00Z&to=2020-01-01T00:00:00Z", e.rootKey, nil).wantProblem(400, "to")
	e.do("GET", "/v1/activity?tenant=b", e.adminA, nil).wantProblem(404, "")

	// Export: one document, no secret value, no key, no hash.
	res = e.do("GET", "/v1/users/"+u.ID+"/export", e.adminA, nil).want(200)
	var doc Export
	res.data(&doc)
	if doc.User.ID != u.ID || len(doc.Keys) != 1 || len(doc.Secrets) != 1 || len(doc.Permissions) != 1 || len(doc.History) < 5 {
		t.Fatalf("export = %+v", doc)
	}
	stored, _ := e.store.GetKey(t.Context(), k.ID)
	for _, bad := range []string{k.Key, sec.Secret, base64.StdEncoding.EncodeToString(stored.Hash), `"hash"`, `"sealed"`, `"secret"`, `"key"`} {
		if strings.Contains(string(res.body), bad) {
			t.Fatalf("export contains %q", bad)
		}
	}
	// Nor does the activity log hold bodies.
	e.do("GET", "/v1/activity?size=100", e.rootKey, nil).want(200)
	all, _ := e.store.ListActivity(t.Context(), keys.ActivityQuery{ListOptions: keys.ListOptions{Size: 100}})
	j, _ := json.Marshal(all)
	if strings.Contains(string(j), "two") || strings.Contains(string(j), k.Key) {
		t.Fatal("activity log holds request bodies or keys")
	}
}

func TestConcurrentPatch(t *testing.T) {
	e := newEnv(t, newFileStore)
	u := e.createUser(e.adminA, map[string]any{"name": "contended"})
	const n = 16
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res := e.do("PATCH", "/v1/users/"+u.ID, e.adminA, map[string]any{"description": fmt.Sprint(i)}, "If-Match", etagOf(u.Version))
			codes[i] = res.code
		})
	}
	wg.Wait()
	ok, stale := 0, 0
	for _, c := range codes {
		switch c {
		case 200:
			ok++
		case 412:
			stale++
		}
	}
	if ok != 1 || stale != n-1 {
		t.Fatalf("codes = %v: %d ok, %d stale", codes, ok, stale)
	}
}

func TestRouting(t *testing.T) {
	e := newEnv(t, newFileStore)
	res := e.do("PUT", "/v1/users", e.adminA, nil)
	res.wantProblem(405, "")
	if allow := res.header.Get("Allow"); allow != "GET, HEAD, POST" {
		t.Fatalf("Allow = %q", allow)
	}
	e.do("GET", "/v1/nothing", e.adminA, nil).wantProblem(404, "")
	e.do("GET", "/", "", nil).wantProblem(404, "")
	e.do("HEAD", "/v1/users", e.adminA, nil).want(200)
}

func TestOpenAPICoversRoutes(t *testing.T) {
	e := newEnv(t, newFileStore)
	res := e.do("GET", "/v1/openapi.json", "", nil).want(200)
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(res.body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi = %q", doc.OpenAPI)
	}
	routes := Routes()
	if len(routes) != len(routeTable) || len(routes) < 29 {
		t.Fatalf("%d routes", len(routes))
	}
	for _, rt := range routes {
		method, pattern, _ := strings.Cut(rt, " ")
		op, ok := doc.Paths[pattern][strings.ToLower(method)]
		if !ok {
			t.Errorf("route %s missing from the OpenAPI document", rt)
			continue
		}
		if op["summary"] == "" || op["responses"] == nil {
			t.Errorf("route %s is undocumented", rt)
		}
		// Every documented route is actually served (never the 404 catch-all).
		path := strings.NewReplacer("{id}", "x", "{keyId}", "y", "{secretId}", "z", "{roleKey}", "r").Replace(pattern)
		r := req(method, path, "", nil)
		if _, p := e.h.mux.Handler(r); p != rt {
			t.Errorf("%s %s is served by %q", method, path, p)
		}
	}
	count := 0
	for _, item := range doc.Paths {
		count += len(item)
	}
	if count != len(routes) {
		t.Fatalf("document has %d operations, router %d", count, len(routes))
	}
	// The spec's route list, written out, is all there.
	for _, rt := range []string{
		"GET /v1/tenants", "POST /v1/tenants", "GET /v1/tenants/{id}", "PATCH /v1/tenants/{id}",
		"GET /v1/users", "POST /v1/users", "GET /v1/users/{id}", "PATCH /v1/users/{id}", "DELETE /v1/users/{id}",
		"GET /v1/users/{id}/keys", "POST /v1/users/{id}/keys", "GET /v1/users/{id}/keys/{keyId}",
		"PATCH /v1/users/{id}/keys/{keyId}", "DELETE /v1/users/{id}/keys/{keyId}", "POST /v1/users/{id}/keys/{keyId}/replace",
		"GET /v1/users/{id}/secrets", "POST /v1/users/{id}/secrets", "PATCH /v1/users/{id}/secrets/{secretId}",
		"DELETE /v1/users/{id}/secrets/{secretId}", "GET /v1/users/{id}/roles", "PUT /v1/users/{id}/roles/{roleKey}",
		"DELETE /v1/users/{id}/roles/{roleKey}", "GET /v1/workspaces/{id}/permissions", "POST /v1/permissions",
		"POST /v1/permissions/{id}/accept", "GET /v1/users/{id}/history", "GET /v1/activity", "GET /v1/users/{id}/export",
		"GET /v1/openapi.json", "POST /v1/bootstrap",
	} {
		found := false
		for _, r := range routes {
			found = found || r == rt
		}
		if !found {
			t.Errorf("spec route %s not routed", rt)
		}
	}
}

func TestPurge(t *testing.T) {
	e := newEnv(t, newFileStore)
	soon := e.clk.Now().Add(time.Hour).Format(time.RFC3339)
	gone := e.createUser(e.adminA, map[string]any{"name": "gone", "plannedPurgeDate": soon})
	kept := e.createUser(e.adminA, map[string]any{"name": "kept"})
	later := e.createUser(e.adminA, map[string]any{"name": "later", "plannedPurgeDate": e.clk.Now().Add(48 * time.Hour).Format(time.RFC3339)})
	for _, u := range []keys.User{gone, kept, later} {
		e.do("DELETE", "/v1/users/"+u.ID, e.adminA, nil, "If-Match", "*").want(200)
	}
	e.clk.Advance(2 * time.Hour)
	n, err := Purge(t.Context(), e.store, e.clk.Now())
	if err != nil || n != 1 {
		t.Fatalf("Purge = %d, %v", n, err)
	}
	e.do("GET", "/v1/users/"+gone.ID, e.adminA, nil).wantProblem(404, "")
	e.do("GET", "/v1/users/"+kept.ID, e.adminA, nil).want(200)
	e.do("GET", "/v1/users/"+later.ID, e.adminA, nil).want(200)
	if n, err := Purge(t.Context(), e.store, e.clk.Now()); err != nil || n != 0 {
		t.Fatalf("second Purge = %d, %v", n, err)
	}
}

// TestRedisStore runs the core flows against the Redis store.
func TestRedisStore(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, f storeFactory)
	}{
		{"flows", func(t *testing.T, f storeFactory) {
			e := newEnvPolicy(t, f, allCredentials)
			u := e.createUser(e.adminA, map[string]any{"name": "svc"})
			k := e.createKey(e.adminA, u.ID, "k")
			e.do("GET", "/v1/users/"+u.ID+"/keys/"+k.ID, e.adminA, nil).want(200)
			e.do("GET", "/v1/users/"+u.ID, e.adminB, nil).wantProblem(404, "")
			e.do("GET", "/v1/users/"+u.ID+"/keys/"+k.ID, e.adminB, nil).wantProblem(404, "")
			var rep KeyView
			e.do("POST", "/v1/users/"+u.ID+"/keys/"+k.ID+"/replace", e.adminA, map[string]any{"gracePeriod": "1h"}).want(201).data(&rep)
			e.do("POST", "/v1/users/"+u.ID+"/secrets", e.adminA, nil).want(201)
			e.do("POST", "/v1/users/"+u.ID+"/secrets", e.adminA, nil).want(201)
			e.do("POST", "/v1/users/"+u.ID+"/secrets", e.adminA, nil).wantProblem(409, "")
			e.do("PATCH", "/v1/users/"+u.ID, e.adminA, map[string]any{"description": "x"}, "If-Match", `"9"`).wantProblem(412, "")
			e.do("DELETE", "/v1/users/"+u.ID, e.adminA, nil, "If-Match", "*").want(200)
			var hist []keys.HistoryEntry
			e.do("GET", "/v1/users/"+u.ID+"/history?size=100", e.adminA, nil).want(200).data(&hist)
			if len(hist) < 5 {
				t.Fatalf("history = %+v", hist)
			}
			var acts []keys.Activity
			e.do("GET", "/v1/activity", e.adminA, nil).want(200).data(&acts)
			if len(acts) == 0 {
				t.Fatal("no activity")
			}
		}},
		{"concurrent", func(t *testing.T, f storeFactory) {
			e := newEnv(t, f)
			u := e.createUser(e.adminA, map[string]any{"name": "contended"})
			var (
				wg  sync.WaitGroup
				mu  sync.Mutex
				got = map[int]int{}
			)
			for i := range 8 {
				wg.Go(func() {
					res := e.do("PATCH", "/v1/users/"+u.ID, e.adminA, map[string]any{"description": fmt.Sprint(i)}, "If-Match", etagOf(u.Version))
					mu.Lock()
					got[res.code]++
					mu.Unlock()
				})
			}
			wg.Wait()
			if got[200] != 1 || got[412] != 7 {
				t.Fatalf("codes = %v", got)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newRedisStore) })
	}
}
