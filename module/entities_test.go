package module_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testcaddy"
	"github.com/keygate/keygate/internal/testredis"
)

// bothGatewayStores runs fn with the keygate global option of the file
// store ("") and of a Redis store under a prefix of its own.
func bothGatewayStores(t *testing.T, fn func(t *testing.T, global string)) {
	t.Run("file", func(t *testing.T) { fn(t, "") })
	t.Run("redis", func(t *testing.T) {
		_, prefix := testredis.Client(t)
		fn(t, redisGlobal(testredis.Options(t).Addr, prefix, "timeout 2s"))
	})
}

const entitiesCaddyfile = `{
	admin {admin}
	%s
}
http://127.0.0.1:{gw} {
	route /open/* {
		keygate {
			tenant acme
			identity_headers user_id role access_control_entities scope
		}
		reverse_proxy {up}
	}
	route /reports/* {
		keygate {
			tenant acme
			require_ace reporting "cost center 7"
			identity_headers user_id access_control_entities
		}
		reverse_proxy {up}
	}
}
http://127.0.0.1:{api} {
	keygate_admin
}
`

// TestEntitiesAndScope (seeds 000, 004): the permission's access control
// entities and the user's scope reach the upstream when identity_headers
// names them, and a require_ace route lets only holders of one of its
// entities through (403 otherwise).
func TestEntitiesAndScope(t *testing.T) {
	bothGatewayStores(t, func(t *testing.T, global string) {
		up := newUpstream(t)
		e := startGateway(t, fmt.Sprintf(entitiesCaddyfile, global), up, testcaddy.Options{})
		e.bootstrap()
		var u struct {
			ID string `json:"id"`
		}
		json.Unmarshal(e.api(http.MethodPost, "/v1/users", map[string]any{
			"name": "reporter", "primaryTenant": "acme", "role": "MEMBER", "scope": "space-4711",
			"accessControlEntities": []string{"cost center 7", "a,b%c"},
		}, http.StatusCreated), &u)
		var k struct {
			Key string `json:"key"`
		}
		json.Unmarshal(e.api(http.MethodPost, "/v1/users/"+u.ID+"/keys", map[string]any{
			"name": "k", "expiresAt": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
		}, http.StatusCreated), &k)
		call := func(path string, hdr map[string]string) (int, http.Header) {
			t.Helper()
			before, _ := up.snapshot()
			resp := e.get(path, hdr)
			resp.Body.Close()
			after, h := up.snapshot()
			if after == before {
				h = nil
			}
			return resp.StatusCode, h
		}
		code, h := call("/open/x", map[string]string{"X-Api-Key": k.Key, "X-Auth-Scope": "forged", "X-Auth-Access-Control-Entities": "admin"})
		if code != http.StatusOK {
			t.Fatalf("open route: %d", code)
		}
		if got := h.Values("X-Auth-Access-Control-Entities"); len(got) != 1 || got[0] != "cost center 7,a%2Cb%25c" {
			t.Errorf("entities forwarded = %q", got)
		}
		if got := h.Values("X-Auth-Scope"); len(got) != 1 || got[0] != "space-4711" {
			t.Errorf("scope forwarded = %q", got)
		}
		if code, _ := call("/reports/x", map[string]string{"X-Api-Key": k.Key}); code != http.StatusOK {
			t.Fatalf("require_ace route with the entity: %d", code)
		}
		// The admin's permission holds no entity: 403, and nothing forwarded.
		code, h = call("/reports/x", map[string]string{"X-Api-Key": e.adminKey})
		if code != http.StatusForbidden || h != nil {
			t.Fatalf("require_ace route without an entity: %d (upstream called: %v)", code, h != nil)
		}
		code, h = call("/open/x", map[string]string{"X-Api-Key": e.adminKey, "X-Auth-Scope": "forged"})
		if code != http.StatusOK || h.Get("X-Auth-Scope") != "" || h.Get("X-Auth-Access-Control-Entities") != "" {
			t.Fatalf("no scope, no entities: %d %q %q", code, h.Get("X-Auth-Scope"), h.Get("X-Auth-Access-Control-Entities"))
		}
		// Taking the entity away takes the route away at once.
		e.api(http.MethodPost, "/v1/permissions", map[string]any{
			"user": map[string]any{"id": u.ID}, "workspace": map[string]any{"id": "acme"},
			"role": "MEMBER", "status": "ACTIVE", "accessControlEntities": []string{"other"},
		}, http.StatusOK)
		if code, _ := call("/reports/x", map[string]string{"X-Api-Key": k.Key}); code != http.StatusForbidden {
			t.Fatalf("after the entity was removed: %d", code)
		}
	})
}
