package module_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/openapicheck"
)

// raw sends one admin API request with key (none when empty) and returns
// the status, headers and body.
func (e *env) raw(method, path, key string, hdr map[string]string, body []byte) (int, http.Header, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, e.adminURL+path, rd)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	checkAdminAnswer(e.t, req, resp, data)
	return resp.StatusCode, resp.Header, data
}

// adminSpec is the admin API's OpenAPI document, loaded and validated by
// kin-openapi (internal/openapicheck).
var adminSpec = sync.OnceValues(func() (*openapicheck.Spec, error) { return openapicheck.Load(admin.OpenAPI()) })

// checkAdminAnswer fails t when an answer of the admin API, here through a
// real Caddy, does not match the OpenAPI document (status, schema, no
// undocumented member).
func checkAdminAnswer(t testing.TB, req *http.Request, resp *http.Response, body []byte) {
	t.Helper()
	spec, err := adminSpec()
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.Response(req, resp.StatusCode, resp.Header, body); err != nil && !errors.Is(err, openapicheck.ErrNoRoute) {
		t.Errorf("the admin API's answer does not match its OpenAPI document: %v", err)
	}
}

func (e *env) expect(method, path, key string, hdr map[string]string, body []byte, want int) (http.Header, json.RawMessage) {
	e.t.Helper()
	status, h, data := e.raw(method, path, key, hdr, body)
	if status != want {
		e.t.Fatalf("%s %s: %d, want %d: %s", method, path, status, want, data)
	}
	if want >= 400 && h.Get("Content-Type") != "application/problem+json" {
		e.t.Fatalf("%s %s: error with Content-Type %q", method, path, h.Get("Content-Type"))
	}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	_ = json.Unmarshal(data, &env)
	return h, env.Data
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// TestAdminThroughCaddy drives the admin API mounted with keygate_admin in
// a real Caddy, as a tenant admin: the routes' happy paths, their errors,
// optimistic locking and tenant isolation.
func TestAdminThroughCaddy(t *testing.T) {
	e := startEnv(t, "", "")
	root := e.adminKey
	exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)

	// The superadmin sets up a second tenant with a user, and a tenant admin of acme.
	e.expect(http.MethodPost, "/v1/tenants", root, nil, mustJSON(map[string]any{"id": "beta", "name": "Beta"}), http.StatusCreated)
	var betaUser struct{ ID string }
	_, data := e.expect(http.MethodPost, "/v1/users", root, nil, mustJSON(map[string]any{"name": "b1", "type": "SERVICE", "primaryTenant": "beta"}), http.StatusCreated)
	json.Unmarshal(data, &betaUser)
	var admin struct{ ID string }
	_, data = e.expect(http.MethodPost, "/v1/users", root, nil, mustJSON(map[string]any{"name": "acme-admin", "type": "TECHNICAL", "role": "ADMIN", "primaryTenant": "acme"}), http.StatusCreated)
	json.Unmarshal(data, &admin)
	var adminKey struct{ Key string }
	_, data = e.expect(http.MethodPost, "/v1/users/"+admin.ID+"/keys", root, nil, mustJSON(map[string]any{"name": "k", "expiresAt": exp}), http.StatusCreated)
	json.Unmarshal(data, &adminKey)
	ta := adminKey.Key

	// Authentication.
	e.expect(http.MethodGet, "/v1/users", "", nil, nil, http.StatusUnauthorized)
	e.expect(http.MethodGet, "/v1/users", "kg_aaaaaaaaaaaaaaaa_"+strings.Repeat("b", 52), nil, nil, http.StatusUnauthorized)
	e.expect(http.MethodGet, "/v1/openapi.json", "", nil, nil, http.StatusOK)

	// Tenant isolation: beta is invisible to acme's admin, by id guessing too.
	e.expect(http.MethodGet, "/v1/users/"+betaUser.ID, ta, nil, nil, http.StatusNotFound)
	e.expect(http.MethodGet, "/v1/users/"+betaUser.ID+"/keys", ta, nil, nil, http.StatusNotFound)
	e.expect(http.MethodGet, "/v1/tenants/beta", ta, nil, nil, http.StatusNotFound)
	e.expect(http.MethodPatch, "/v1/users/"+betaUser.ID, ta, map[string]string{"If-Match": "*"}, mustJSON(map[string]any{"status": "INACTIVE"}), http.StatusNotFound)
	_, data = e.expect(http.MethodGet, "/v1/users?size=100", ta, nil, nil, http.StatusOK)
	if strings.Contains(string(data), betaUser.ID) {
		t.Fatal("acme's admin lists a beta user")
	}
	e.expect(http.MethodPost, "/v1/users", ta, nil, mustJSON(map[string]any{"name": "x", "type": "SERVICE", "primaryTenant": "beta"}), http.StatusForbidden)

	// Create, then optimistic locking on PATCH.
	var u struct {
		ID      string
		Version int64
	}
	h, data := e.expect(http.MethodPost, "/v1/users", ta, nil, mustJSON(map[string]any{"name": "svc", "type": "SERVICE", "role": "MEMBER"}), http.StatusCreated)
	json.Unmarshal(data, &u)
	if h.Get("ETag") != `"1"` {
		t.Fatalf("ETag of a new user: %q", h.Get("ETag"))
	}
	patch := mustJSON(map[string]any{"description": "billing sync"})
	e.expect(http.MethodPatch, "/v1/users/"+u.ID, ta, nil, patch, http.StatusPreconditionRequired)
	e.expect(http.MethodPatch, "/v1/users/"+u.ID, ta, map[string]string{"If-Match": `"7"`}, patch, http.StatusPreconditionFailed)
	h, _ = e.expect(http.MethodPatch, "/v1/users/"+u.ID, ta, map[string]string{"If-Match": `"1"`}, patch, http.StatusOK)
	if h.Get("ETag") != `"2"` {
		t.Fatalf("ETag after a change: %q", h.Get("ETag"))
	}
	e.expect(http.MethodPatch, "/v1/users/"+u.ID, ta, map[string]string{"If-Match": "*"}, mustJSON(map[string]any{"status": "DELETED"}), http.StatusConflict)

	// Bad input changes nothing.
	e.expect(http.MethodPatch, "/v1/users/"+u.ID, ta, map[string]string{"If-Match": "*"}, []byte(`{"nmae":"typo"}`), http.StatusBadRequest)
	e.expect(http.MethodPatch, "/v1/users/"+u.ID, ta, map[string]string{"If-Match": "*"}, []byte(`{"requestLimit":"many"}`), http.StatusBadRequest)
	e.expect(http.MethodPost, "/v1/users", ta, nil, append([]byte(`{"name":"`), append(bytes.Repeat([]byte("a"), 2<<20), []byte(`"}`)...)...), http.StatusRequestEntityTooLarge)
	e.expect(http.MethodPost, "/v1/users", ta, map[string]string{"Content-Type": "text/plain"}, []byte(`{"name":"t"}`), http.StatusUnsupportedMediaType)
	e.expect(http.MethodGet, "/v1/users?size=101", ta, nil, nil, http.StatusBadRequest)
	e.expect(http.MethodGet, "/v1/users?sort=shoeSize", ta, nil, nil, http.StatusBadRequest)
	_, data = e.expect(http.MethodGet, "/v1/users/"+u.ID, ta, nil, nil, http.StatusOK)
	if !strings.Contains(string(data), `"version":2`) {
		t.Fatalf("refused input changed the user: %s", data)
	}

	// Roles API (SAP Open Connectors).
	e.expect(http.MethodPut, "/v1/users/"+u.ID+"/roles/auditor", ta, nil, nil, http.StatusOK)
	e.expect(http.MethodPut, "/v1/users/"+u.ID+"/roles/VIEWER", ta, nil, nil, http.StatusOK)
	_, data = e.expect(http.MethodGet, "/v1/users/"+u.ID+"/roles", ta, nil, nil, http.StatusOK)
	if !strings.Contains(string(data), "auditor") || !strings.Contains(string(data), `"role":"VIEWER"`) {
		t.Fatalf("roles: %s", data)
	}
	e.expect(http.MethodDelete, "/v1/users/"+u.ID+"/roles/auditor", ta, nil, nil, http.StatusOK)
	// Deleting the standard role sets the tenant's default role.
	_, data = e.expect(http.MethodDelete, "/v1/users/"+u.ID+"/roles/VIEWER", ta, nil, nil, http.StatusOK)
	if !strings.Contains(string(data), `"role":"MEMBER"`) {
		t.Fatalf("roles after deleting the standard role: %s", data)
	}

	// Keys: shown once, masked after; a duplicate name is 409.
	var k struct{ ID, Key string }
	_, data = e.expect(http.MethodPost, "/v1/users/"+u.ID+"/keys", ta, nil, mustJSON(map[string]any{"name": "main", "expiresAt": exp}), http.StatusCreated)
	json.Unmarshal(data, &k)
	_, data = e.expect(http.MethodGet, "/v1/users/"+u.ID+"/keys", ta, nil, nil, http.StatusOK)
	if strings.Contains(string(data), k.Key) || strings.Contains(string(data), `"hash"`) {
		t.Fatalf("key listing shows key material: %s", data)
	}
	e.expect(http.MethodPost, "/v1/users/"+u.ID+"/keys", ta, nil, mustJSON(map[string]any{"name": "main", "expiresAt": exp}), http.StatusConflict)
	e.expect(http.MethodPost, "/v1/users/"+u.ID+"/keys", ta, nil, mustJSON(map[string]any{"name": "noexp"}), http.StatusBadRequest)

	// Permissions: an admin cannot turn INVITED into ACTIVE; the invited user accepts.
	var guest struct{ ID string }
	_, data = e.expect(http.MethodPost, "/v1/users", root, nil, mustJSON(map[string]any{"name": "guest", "type": "SERVICE", "primaryTenant": "beta"}), http.StatusCreated)
	json.Unmarshal(data, &guest)
	var guestKey struct{ Key string }
	_, data = e.expect(http.MethodPost, "/v1/users/"+guest.ID+"/keys", root, nil, mustJSON(map[string]any{"name": "g", "expiresAt": exp}), http.StatusCreated)
	json.Unmarshal(data, &guestKey)
	invite := map[string]any{"user": map[string]any{"id": guest.ID}, "workspace": map[string]any{"id": "acme"}, "role": "VIEWER", "status": "INVITED"}
	var perm struct{ ID string }
	_, data = e.expect(http.MethodPost, "/v1/permissions", root, nil, mustJSON(invite), http.StatusCreated)
	json.Unmarshal(data, &perm)
	invite["status"] = "ACTIVE"
	e.expect(http.MethodPost, "/v1/permissions", root, nil, mustJSON(invite), http.StatusConflict)
	e.expect(http.MethodPost, "/v1/permissions/"+perm.ID+"/accept", ta, nil, nil, http.StatusNotFound)
	e.expect(http.MethodPost, "/v1/permissions/"+perm.ID+"/accept", guestKey.Key, nil, nil, http.StatusOK)
	_, data = e.expect(http.MethodGet, "/v1/workspaces/acme/permissions?status=ACTIVE&size=100", ta, nil, nil, http.StatusOK)
	if !strings.Contains(string(data), guest.ID) {
		t.Fatalf("accepted permission not listed: %s", data)
	}

	// History, activity and export.
	_, data = e.expect(http.MethodGet, "/v1/users/"+u.ID+"/history", ta, nil, nil, http.StatusOK)
	for _, action := range []string{"user.create", "user.update", "key.create"} {
		if !strings.Contains(string(data), action) {
			t.Fatalf("history lacks %s: %s", action, data)
		}
	}
	_, data = e.expect(http.MethodGet, "/v1/activity?actor="+admin.ID, ta, nil, nil, http.StatusOK)
	if !strings.Contains(string(data), `"PATCH"`) || !strings.Contains(string(data), `"status":412`) {
		t.Fatalf("activity log lacks the calls: %s", data)
	}
	_, data = e.expect(http.MethodGet, "/v1/users/"+u.ID+"/export", ta, nil, nil, http.StatusOK)
	if strings.Contains(string(data), k.Key) || strings.Contains(string(data), `"hash"`) || strings.Contains(string(data), `"sealed"`) {
		t.Fatalf("export carries secrets: %s", data)
	}

	// Delete: the user's key stops at once at the gateway.
	e.expect(http.MethodDelete, "/v1/users/"+u.ID, ta, map[string]string{"If-Match": "*"}, nil, http.StatusOK)
	e.expect(http.MethodGet, "/v1/users/"+u.ID+"/keys/"+k.ID, ta, nil, nil, http.StatusOK)
	resp := e.get("/x", map[string]string{"X-Api-Key": k.Key})
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("key of a deleted user at the gateway: %d", resp.StatusCode)
	}
}
