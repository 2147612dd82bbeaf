package module_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testcaddy"
	"github.com/keygate/keygate/internal/testredis"
)

// upstream records what keygate forwarded.
type upstream struct {
	*httptest.Server
	mu    sync.Mutex
	calls int
	last  http.Header
	query string
}

func newUpstream(t testing.TB) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.calls++
		u.last = r.Header.Clone()
		u.query = r.URL.RawQuery
		u.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "hello %s", r.Header.Get("X-Auth-User-Name"))
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) snapshot() (int, http.Header) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls, u.last
}

func (u *upstream) addr() string { return strings.TrimPrefix(u.URL, "http://") }

// env is one running keygate with a gateway route for tenant acme, the
// admin API, and a recording upstream.
type env struct {
	t        testing.TB
	srv      *testcaddy.Server
	up       *upstream
	gateway  string
	adminURL string
	adminKey string
	adminID  string
}

// gatewayCaddyfile is the Caddyfile of startEnv. Unless routeOpts chooses
// them, the route sets every identity and rate-limit header, which most
// tests check.
func gatewayCaddyfile(global, routeOpts string, gwPort, adminPort int, upstreamAddr string) string {
	if !strings.Contains(routeOpts, "identity_headers") {
		routeOpts += "\n\t\tidentity_headers all"
	}
	if !strings.Contains(routeOpts, "rate_limit_headers") {
		routeOpts += "\n\t\trate_limit_headers both"
	}
	return fmt.Sprintf(`{
	admin {admin}
	%s
}
http://127.0.0.1:%d {
	keygate {
		tenant acme
		%s
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	keygate_admin
}
`, global, gwPort, routeOpts, upstreamAddr, adminPort)
}

func startEnv(t testing.TB, global, routeOpts string) *env {
	t.Helper()
	up := newUpstream(t)
	gw, ad := testcaddy.FreePort(t), testcaddy.FreePort(t)
	e := &env{t: t, up: up,
		gateway:  fmt.Sprintf("http://127.0.0.1:%d", gw),
		adminURL: fmt.Sprintf("http://127.0.0.1:%d", ad),
	}
	e.srv = testcaddy.Start(t, gatewayCaddyfile(global, routeOpts, gw, ad, up.addr()), testcaddy.Options{
		Wait: []string{e.gateway, e.adminURL},
	})
	e.bootstrap()
	return e
}

// bootstrap creates tenant acme and its superadmin "ops" through the CLI.
func (e *env) bootstrap() {
	e.t.Helper()
	out := e.srv.CLI("bootstrap", "--tenant", "acme", "--user", "ops", "--json")
	var boot struct {
		Key struct {
			Key string `json:"key"`
		} `json:"key"`
		User struct {
			ID string `json:"id"`
		} `json:"user"`
	}
	if err := json.Unmarshal([]byte(out), &boot); err != nil || !strings.HasPrefix(boot.Key.Key, "kg_") {
		e.t.Fatalf("bootstrap output %q: %v", out, err)
	}
	e.adminKey, e.adminID = boot.Key.Key, boot.User.ID
}

// get calls the gateway.
func (e *env) get(path string, hdr map[string]string) *http.Response {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.gateway+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// api calls the admin API with the bootstrap key and decodes data.
func (e *env) api(method, path string, body any, want int) json.RawMessage {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.adminURL+path, rd)
	req.Header.Set("Authorization", "Bearer "+e.adminKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if method == http.MethodPatch || method == http.MethodDelete || method == http.MethodPut {
		req.Header.Set("If-Match", "*")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	checkAdminAnswer(e.t, req, resp, data)
	if resp.StatusCode != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, data)
	}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	_ = json.Unmarshal(data, &env)
	return env.Data
}

// newUserKey creates a TECHNICAL user (access keys and the token exchange)
// in tenant with an ACTIVE permission there and a key.
func (e *env) newUserKey(tenant, name string, expires time.Time) (userID, keyID, key string) {
	e.t.Helper()
	var u struct {
		ID string `json:"id"`
	}
	json.Unmarshal(e.api(http.MethodPost, "/v1/users", map[string]any{
		"name": name, "type": "TECHNICAL", "role": "MEMBER", "primaryTenant": tenant,
	}, http.StatusCreated), &u)
	e.api(http.MethodPost, "/v1/permissions", map[string]any{
		"user": map[string]any{"id": u.ID}, "workspace": map[string]any{"id": tenant},
		"role": "MEMBER", "status": "ACTIVE",
	}, http.StatusOK)
	var k struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	json.Unmarshal(e.api(http.MethodPost, "/v1/users/"+u.ID+"/keys", map[string]any{
		"name": "k1", "expiresAt": expires.UTC().Format(time.RFC3339), "tenant": tenant,
	}, http.StatusCreated), &k)
	if !strings.HasPrefix(k.Key, "kg_") {
		e.t.Fatalf("no key in create response")
	}
	return u.ID, k.ID, k.Key
}

func expectProblem(t *testing.T, resp *http.Response, status int) {
	t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	var p struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Status != status || !strings.HasPrefix(p.Type, "https://keygate.dev/problems/") {
		t.Fatalf("bad problem body %s", body)
	}
	if status == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatal("401 without WWW-Authenticate")
	}
}

func TestGatewayAccessKeys(t *testing.T) {
	e := startEnv(t, "", "")

	// A valid key reaches the upstream with identity headers and without
	// the credential; a spoofed identity header never reaches it.
	resp := e.get("/anything", map[string]string{"Authorization": "Bearer " + e.adminKey, "X-Auth-User-Id": "spoofed", "X-Auth-Role": "ADMIN"})
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "hello ops" {
		t.Fatalf("valid key: %d %s", resp.StatusCode, body)
	}
	calls, h := e.up.snapshot()
	if calls != 1 {
		t.Fatalf("upstream calls = %d", calls)
	}
	want := map[string]string{
		"X-Auth-User-Id": e.adminID, "X-Auth-User-Name": "ops", "X-Auth-Tenant": "acme",
		"X-Auth-Role": "ADMIN", "X-Auth-Scheme": "access_key", "X-Auth-User-Type": "TECHNICAL",
	}
	for k, v := range want {
		if got := h.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("upstream %s = %q, want %q", k, got, v)
		}
	}
	if h.Get("X-Auth-Key-Id") == "" || h.Get("Authorization") != "" {
		t.Errorf("key id %q, authorization forwarded %q", h.Get("X-Auth-Key-Id"), h.Get("Authorization"))
	}

	// X-Api-Key works too.
	resp = e.get("/x", map[string]string{"X-Api-Key": e.adminKey})
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("X-Api-Key: %d", resp.StatusCode)
	}

	before, _ := e.up.snapshot()
	unknown := "kg_aaaaaaaaaaaaaaaa_" + strings.Repeat("b", 52)
	wrongSecret := e.adminKey[:len("kg_")+17] + strings.Repeat("c", 52)
	for name, hdr := range map[string]map[string]string{
		"none":          nil,
		"malformed":     {"Authorization": "Bearer kg_nope"},
		"unknown id":    {"Authorization": "Bearer " + unknown},
		"wrong secret":  {"Authorization": "Bearer " + wrongSecret},
		"basic scheme":  {"Authorization": "Basic Zm9vOmJhcg=="},
		"spoof only":    {"X-Auth-User-Id": e.adminID},
		"garbage bytes": {"X-Api-Key": "kg_!!\"$%&/()"},
	} {
		t.Run(name, func(t *testing.T) {
			expectProblem(t, e.get("/x", hdr), http.StatusUnauthorized)
		})
	}
	if after, _ := e.up.snapshot(); after != before {
		t.Fatalf("upstream called %d times for refused requests", after-before)
	}

	// A key created through the admin API works at once; revoked, it fails at once.
	userID, keyID, key := e.newUserKey("acme", "svc", time.Now().Add(time.Hour))
	resp = e.get("/x", map[string]string{"X-Api-Key": key})
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("new key: %d", resp.StatusCode)
	}
	e.api(http.MethodDelete, "/v1/users/"+userID+"/keys/"+keyID, nil, http.StatusOK)
	expectProblem(t, e.get("/x", map[string]string{"X-Api-Key": key}), http.StatusUnauthorized)

	// An INACTIVE user's keys fail at once.
	userID2, _, key2 := e.newUserKey("acme", "svc2", time.Now().Add(time.Hour))
	resp = e.get("/x", map[string]string{"X-Api-Key": key2})
	resp.Body.Close()
	e.srv.CLI("users", "disable", userID2)
	expectProblem(t, e.get("/x", map[string]string{"X-Api-Key": key2}), http.StatusUnauthorized)

	// An expired key fails.
	_, _, key3 := e.newUserKey("acme", "svc3", time.Now().Add(1500*time.Millisecond))
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp := e.get("/x", map[string]string{"X-Api-Key": key3})
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("expired key still accepted: %d", resp.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A valid key of another tenant is 403; so is a user without permission.
	e.api(http.MethodPost, "/v1/tenants", map[string]any{"id": "other", "name": "Other"}, http.StatusCreated)
	_, _, otherKey := e.newUserKey("other", "foreign", time.Now().Add(time.Hour))
	expectProblem(t, e.get("/x", map[string]string{"X-Api-Key": otherKey}), http.StatusForbidden)
}

func TestGatewayStoreDown(t *testing.T) {
	redisSrv := testredis.StartServer(t)
	global := fmt.Sprintf(`keygate {
		store redis {
			address %s
			timeout 100ms
		}
		master_key AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
	}`, redisSrv.Addr)
	e := startEnv(t, global, "limit 1000")
	resp := e.get("/x", map[string]string{"X-Api-Key": e.adminKey})
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("valid key: %d", resp.StatusCode)
	}
	_, _, unseen := e.newUserKey("acme", "unseen", time.Now().Add(time.Hour))

	redisSrv.Stop()
	before, _ := e.up.snapshot()
	for name, key := range map[string]string{"cached key, limiter down": e.adminKey, "key never seen": unseen} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			resp := e.get("/x", map[string]string{"X-Api-Key": key})
			if resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			expectProblem(t, resp, http.StatusServiceUnavailable)
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("answer took %v", d)
			}
		})
	}
	if after, _ := e.up.snapshot(); after != before {
		t.Fatal("upstream called while the store was down")
	}
}

// TestGatewayFollowsAdminChanges: what the admin API changes applies to
// the gateway at once: replace (with and without grace), user DELETE,
// permission ARCHIVED and reactivated.
func TestGatewayFollowsAdminChanges(t *testing.T) {
	e := startEnv(t, "", "")
	status := func(key string) int {
		resp := e.get("/x", map[string]string{"X-Api-Key": key})
		resp.Body.Close()
		return resp.StatusCode
	}
	userID, keyID, key := e.newUserKey("acme", "lifecycle", time.Now().Add(time.Hour))
	if got := status(key); got != http.StatusOK {
		t.Fatalf("new key: %d", got)
	}

	// Replace without grace: the old key stops at once, the new one works.
	var next struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	json.Unmarshal(e.api(http.MethodPost, "/v1/users/"+userID+"/keys/"+keyID+"/replace", map[string]any{}, http.StatusCreated), &next)
	if got := status(key); got != http.StatusUnauthorized {
		t.Fatalf("replaced key: %d", got)
	}
	if got := status(next.Key); got != http.StatusOK {
		t.Fatalf("replacement key: %d", got)
	}

	// Replace with a grace period: both work meanwhile.
	var third struct {
		Key string `json:"key"`
	}
	json.Unmarshal(e.api(http.MethodPost, "/v1/users/"+userID+"/keys/"+next.ID+"/replace", map[string]any{"gracePeriod": "1h"}, http.StatusCreated), &third)
	if a, b := status(next.Key), status(third.Key); a != http.StatusOK || b != http.StatusOK {
		t.Fatalf("during grace: old %d, new %d", a, b)
	}

	// Archiving the permission makes the credential valid but forbidden.
	perm := map[string]any{"user": map[string]any{"id": userID}, "workspace": map[string]any{"id": "acme"}, "role": "MEMBER", "status": "ARCHIVED"}
	e.api(http.MethodPost, "/v1/permissions", perm, http.StatusOK)
	if got := status(third.Key); got != http.StatusForbidden {
		t.Fatalf("archived permission: %d", got)
	}
	perm["status"] = "ACTIVE"
	e.api(http.MethodPost, "/v1/permissions", perm, http.StatusOK)
	if got := status(third.Key); got != http.StatusOK {
		t.Fatalf("reactivated permission: %d", got)
	}

	// Deleting the user stops every key at once.
	e.api(http.MethodDelete, "/v1/users/"+userID, nil, http.StatusOK)
	for _, k := range []string{next.Key, third.Key} {
		if got := status(k); got != http.StatusUnauthorized {
			t.Fatalf("key of a deleted user: %d", got)
		}
	}
}
