package module_test

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testcaddy"
)

// headersCaddyfile has three routes that differ only in the identity and
// rate-limit headers they set: the defaults, a chosen pair with no
// rate-limit headers, and the legacy rate-limit headers.
const headersCaddyfile = `{
	admin {admin}
}
http://127.0.0.1:%[1]d {
	handle /default/* {
		keygate {
			tenant acme
			limit 5
		}
		reverse_proxy %[3]s
	}
	handle /chosen/* {
		keygate {
			tenant acme
			limit 1
			identity_headers user_name key_id
			rate_limit_headers none
		}
		reverse_proxy %[3]s
	}
	handle /legacy/* {
		keygate {
			tenant acme
			limit 5
			identity_headers all
			rate_limit_headers legacy
		}
		reverse_proxy %[3]s
	}
}
http://127.0.0.1:%[2]d {
	keygate_admin
}
`

// TestGatewayHeaderChoice checks which identity headers reach the upstream
// and which rate-limit fields reach the client: by default the identity
// an upstream authorizes with (user id, tenant, role) and the IETF
// RateLimit fields; identity_headers and rate_limit_headers choose others;
// client-sent copies of every identity header are removed whatever is set,
// and a 429 carries Retry-After even with no rate-limit fields.
func TestGatewayHeaderChoice(t *testing.T) {
	up := newUpstream(t)
	gw, ad := testcaddy.FreePort(t), testcaddy.FreePort(t)
	e := &env{t: t, up: up,
		gateway:  fmt.Sprintf("http://127.0.0.1:%d", gw),
		adminURL: fmt.Sprintf("http://127.0.0.1:%d", ad),
	}
	e.srv = testcaddy.Start(t, fmt.Sprintf(headersCaddyfile, gw, ad, up.addr()), testcaddy.Options{Wait: []string{e.gateway, e.adminURL}})
	e.bootstrap()
	// One user per route: the routes share each user's limit.
	userID, keyID, key := e.newUserKey("acme", "headers", time.Now().Add(time.Hour))
	_, chosenKeyID, chosenKey := e.newUserKey("acme", "chosen", time.Now().Add(time.Hour))
	call := func(path string, want int) (http.Header, http.Header) {
		t.Helper()
		forged := map[string]string{"X-Api-Key": key}
		if path == "/chosen/x" {
			forged["X-Api-Key"] = chosenKey
		}
		for _, name := range []string{"X-Auth-User-Id", "X-Auth-User-Name", "X-Auth-User-Type", "X-Auth-Tenant",
			"X-Auth-Role", "X-Auth-Customer-Roles", "X-Auth-Key-Id", "X-Auth-Scheme"} {
			forged[name] = "forged"
		}
		resp := e.get(path, forged)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s: status %d, want %d", path, resp.StatusCode, want)
		}
		_, upstream := up.snapshot()
		return upstream, resp.Header
	}
	expect := func(what string, h http.Header, want map[string]string) {
		t.Helper()
		for name, v := range want {
			if got := h.Values(name); (v == "" && len(got) > 0) || (v != "" && (len(got) != 1 || got[0] != v)) {
				t.Errorf("%s: %s = %q, want %q", what, name, got, v)
			}
		}
	}
	absent := map[string]string{"X-Auth-User-Name": "", "X-Auth-User-Type": "", "X-Auth-Customer-Roles": "",
		"X-Auth-Key-Id": "", "X-Auth-Scheme": ""}

	upstream, resp := call("/default/x", http.StatusOK)
	expect("default upstream", upstream, map[string]string{"X-Auth-User-Id": userID, "X-Auth-Tenant": "acme", "X-Auth-Role": "MEMBER"})
	expect("default upstream", upstream, absent)
	expect("default response", resp, map[string]string{"RateLimit-Policy": `"user";q=5;w=120`,
		"X-RateLimit-Limit": "", "X-RateLimit-Remaining": "", "X-RateLimit-Reset": ""})
	if resp.Get("RateLimit") == "" {
		t.Error("default response: no RateLimit field")
	}

	upstream, resp = call("/chosen/x", http.StatusOK)
	expect("chosen upstream", upstream, map[string]string{"X-Auth-User-Name": "chosen", "X-Auth-Key-Id": chosenKeyID,
		"X-Auth-User-Id": "", "X-Auth-Tenant": "", "X-Auth-Role": "", "X-Auth-User-Type": "", "X-Auth-Scheme": "", "X-Auth-Customer-Roles": ""})
	expect("chosen response", resp, map[string]string{"RateLimit": "", "RateLimit-Policy": "", "X-RateLimit-Limit": ""})
	_, resp = call("/chosen/x", http.StatusTooManyRequests)
	expect("chosen 429", resp, map[string]string{"RateLimit": "", "RateLimit-Policy": "", "X-RateLimit-Limit": ""})
	if resp.Get("Retry-After") == "" {
		t.Error("429 without Retry-After on a route with rate_limit_headers none")
	}

	upstream, resp = call("/legacy/x", http.StatusOK)
	expect("all upstream", upstream, map[string]string{"X-Auth-User-Id": userID, "X-Auth-User-Name": "headers",
		"X-Auth-User-Type": "TECHNICAL", "X-Auth-Tenant": "acme", "X-Auth-Role": "MEMBER", "X-Auth-Key-Id": keyID,
		"X-Auth-Scheme": "access_key", "X-Auth-Customer-Roles": ""})
	expect("legacy response", resp, map[string]string{"X-RateLimit-Limit": "5", "RateLimit": "", "RateLimit-Policy": ""})
	if resp.Get("X-RateLimit-Remaining") == "" || resp.Get("X-RateLimit-Reset") == "" {
		t.Errorf("legacy response: %v", resp)
	}
}
