package module_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The authorization model of issue 14 through real Caddy processes: a
// change made through node A's admin API is enforced by node B within
// propagationBound, polled.

// opsSuperadmin creates tenant ops and a superadmin in it, so that acme can
// be archived and reactivated by someone whose key is not in acme. It
// returns that superadmin's key.
func (e *env) opsSuperadmin() string {
	e.t.Helper()
	e.api(http.MethodPost, "/v1/tenants", map[string]any{"id": "ops", "name": "Ops"}, http.StatusCreated)
	var u struct {
		ID string `json:"id"`
	}
	json.Unmarshal(e.api(http.MethodPost, "/v1/users", map[string]any{
		"name": "root2", "role": "ADMIN", "primaryTenant": "ops", "superadmin": true,
	}, http.StatusCreated), &u)
	var k struct {
		Key string `json:"key"`
	}
	json.Unmarshal(e.api(http.MethodPost, "/v1/users/"+u.ID+"/keys", map[string]any{
		"name": "k", "expiresAt": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
	}, http.StatusCreated), &k)
	return k.Key
}

// setTenantStatus archives or reactivates tenant with key.
func (e *env) setTenantStatus(key, tenant, status string) {
	e.t.Helper()
	e.expect(http.MethodPatch, "/v1/tenants/"+tenant, key, map[string]string{"If-Match": "*"},
		mustJSON(map[string]any{"status": status}), http.StatusOK)
}

// forwardedRole calls the gateway with key and returns the X-Auth-Role the
// upstream received (empty when the request was refused).
func forwardedRole(e *env, key string) string {
	e.t.Helper()
	resp := e.get("/x", map[string]string{"X-Api-Key": key})
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	_, hdr := e.up.snapshot()
	return hdr.Get("X-Auth-Role")
}

// pollAll polls every node until check(node) holds, failing after bound.
func (c *cluster) pollAll(what string, start time.Time, bound time.Duration, check func(e *env) bool) {
	c.t.Helper()
	done := make([]bool, len(c.nodes()))
	for {
		all := true
		for i, e := range c.nodes() {
			if !done[i] {
				done[i] = check(e)
			}
			all = all && done[i]
		}
		if all {
			return
		}
		if time.Since(start) > bound {
			c.t.Fatalf("%s: not on every node after %v (%v)", what, bound, done)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// awaitLog polls the node's log until it holds text (the log is written
// by another process, possibly just after the response).
func (e *env) awaitLog(text string) {
	e.t.Helper()
	for start := time.Now(); !strings.Contains(e.srv.Logs(), text); time.Sleep(5 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			e.t.Fatalf("the log does not say %q", text)
		}
	}
}

// refusalBody is the body of a 401 from the gateway.
func refusalBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", resp.StatusCode)
	}
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestAuthzAcrossNodes(t *testing.T) {
	c := startCluster(t, "")
	a, b := c.a, c.b
	exp := time.Now().Add(time.Hour)

	t.Run("demoted admin", func(t *testing.T) {
		var boss struct {
			ID string `json:"id"`
		}
		json.Unmarshal(a.api(http.MethodPost, "/v1/users", map[string]any{
			"name": "boss", "type": "TECHNICAL", "role": "ADMIN", "primaryTenant": "acme",
		}, http.StatusCreated), &boss)
		var k struct {
			Key string `json:"key"`
		}
		json.Unmarshal(a.api(http.MethodPost, "/v1/users/"+boss.ID+"/keys", map[string]any{
			"name": "k", "expiresAt": exp.UTC().Format(time.RFC3339),
		}, http.StatusCreated), &k)
		c.warm(k.Key)
		for _, e := range c.nodes() {
			if got := forwardedRole(e, k.Key); got != "ADMIN" {
				t.Fatalf("%s: forwarded role %q, want ADMIN", e.gateway, got)
			}
		}
		b.expect(http.MethodPost, "/v1/users", k.Key, nil, mustJSON(map[string]any{"name": "by-boss"}), http.StatusCreated)

		start := time.Now()
		a.api(http.MethodPut, "/v1/users/"+boss.ID+"/roles/VIEWER", nil, http.StatusOK)
		// The very next admin call, on the other node, is refused.
		b.expect(http.MethodPost, "/v1/users", k.Key, nil, mustJSON(map[string]any{"name": "by-boss-2"}), http.StatusForbidden)
		c.pollAll("forwarded role VIEWER", start, propagationBound, func(e *env) bool { return forwardedRole(e, k.Key) == "VIEWER" })
		t.Logf("demotion forwarded by every node after %v", time.Since(start))

		// PATCH of the user record's role is the same change.
		start = time.Now()
		a.expect(http.MethodPatch, "/v1/users/"+boss.ID, a.adminKey, map[string]string{"If-Match": "*"},
			mustJSON(map[string]any{"role": "ADMIN"}), http.StatusOK)
		b.expect(http.MethodPost, "/v1/users", k.Key, nil, mustJSON(map[string]any{"name": "by-boss-3"}), http.StatusCreated)
		c.pollAll("forwarded role ADMIN", start, propagationBound, func(e *env) bool { return forwardedRole(e, k.Key) == "ADMIN" })
	})

	t.Run("user type", func(t *testing.T) {
		userID, _, key := a.newUserKey("acme", "typed", exp)
		c.warm(key)
		start := time.Now()
		a.expect(http.MethodPatch, "/v1/users/"+userID, a.adminKey, map[string]string{"If-Match": "*"},
			mustJSON(map[string]any{"type": "APPLICATION"}), http.StatusOK)
		took := c.await(key, http.StatusUnauthorized, start, propagationBound)
		t.Logf("type change enforced: node A after %v, node B after %v", took[0], took[1])
		b.awaitLog("user type APPLICATION may not use access_key credentials")
		start = time.Now()
		a.expect(http.MethodPatch, "/v1/users/"+userID, a.adminKey, map[string]string{"If-Match": "*"},
			mustJSON(map[string]any{"type": "SERVICE"}), http.StatusOK)
		c.await(key, http.StatusOK, start, propagationBound)
	})

	t.Run("archived tenant", func(t *testing.T) {
		root2 := a.opsSuperadmin()
		_, _, key := a.newUserKey("acme", "archived", exp)
		app := a.appUser("acme", "signer")
		secretID, secret := a.newSecret(app, "s")
		c.warm(key)
		for _, e := range c.nodes() {
			e.expectPass(e.sendSigned(e.signedReq(signWalleeMAC, http.MethodGet, "/signed", nil, app, secret)), app, "wallee_mac", secretID)
		}
		wrongKey := refusalBody(t, a.get("/x", map[string]string{"X-Api-Key": key + "x"}))

		start := time.Now()
		a.setTenantStatus(root2, "acme", "ARCHIVED")
		took := c.await(key, http.StatusUnauthorized, start, propagationBound)
		t.Logf("archived tenant: keys refused by node A after %v, node B after %v", took[0], took[1])
		for _, e := range c.nodes() {
			if got := refusalBody(t, e.get("/x", map[string]string{"X-Api-Key": key})); got != wrongKey {
				t.Fatalf("%s: archived tenant's 401 body %q differs from a wrong key's %q", e.gateway, got, wrongKey)
			}
			resp := e.sendSigned(e.signedReq(signWalleeMAC, http.MethodGet, "/signed", nil, app, secret))
			if got := refusalBody(t, resp); got != wrongKey {
				t.Fatalf("%s: archived tenant's signed 401 body %q", e.gateway, got)
			}
		}
		// Nothing new in it: keys, users.
		b.expect(http.MethodPost, "/v1/users", root2, nil, mustJSON(map[string]any{"name": "late", "primaryTenant": "acme"}), http.StatusConflict)

		start = time.Now()
		a.setTenantStatus(root2, "acme", "ACTIVE")
		c.await(key, http.StatusOK, start, propagationBound)
		for _, e := range c.nodes() {
			e.expectPass(e.sendSigned(e.signedReq(signWalleeMAC, http.MethodGet, "/signed", nil, app, secret)), app, "wallee_mac", secretID)
		}
	})
}

// TestTokenExchangeAuthz: the token endpoint issues tokens only to user
// types that use the exchange and only in ACTIVE tenants; tokens of an
// archived tenant are refused and work again, unchanged, after
// reactivation.
func TestTokenExchangeAuthz(t *testing.T) {
	e := startTokenEnv(t, "")
	root2 := e.opsSuperadmin()
	_, _, key := e.newUserKey("acme", "tech", time.Now().Add(time.Hour))
	tok := e.fetchToken(key)
	if got := e.bearer("/x", tok); got != http.StatusOK {
		t.Fatalf("token before archiving: %d", got)
	}

	// A SERVICE user's key does not buy a token.
	svcID, _, svcKey := e.newUserKey("acme", "svc", time.Now().Add(time.Hour))
	e.expect(http.MethodPatch, "/v1/users/"+svcID, e.adminKey, map[string]string{"If-Match": "*"},
		mustJSON(map[string]any{"type": "SERVICE"}), http.StatusOK)
	if resp, body := e.postToken(url.Values{"grant_type": {"client_credentials"}}, "apitoken", svcKey); resp.StatusCode != http.StatusUnauthorized || body["error"] != "invalid_client" {
		t.Fatalf("token for a SERVICE user: %d %v", resp.StatusCode, body)
	}
	e.awaitLog("user type SERVICE may not use the token exchange")

	e.setTenantStatus(root2, "acme", "ARCHIVED")
	if got := e.bearer("/x", tok); got != http.StatusUnauthorized {
		t.Fatalf("token of an archived tenant: %d", got)
	}
	if resp, body := e.postToken(url.Values{"grant_type": {"client_credentials"}}, "apitoken", key); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("token endpoint in an archived tenant: %d %v", resp.StatusCode, body)
	}
	e.setTenantStatus(root2, "acme", "ACTIVE")
	if got := e.bearer("/x", tok); got != http.StatusOK {
		t.Fatalf("same token after reactivation: %d", got)
	}
}
