package module_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testcaddy"
)

// TestMethodOverrideStripped (issue 23, item 8): the method-override
// headers, in any spelling, do not reach the upstream of a keygate route
// (the code before the fix forwarded them, so a signed GET ran as a DELETE
// on upstreams that honour them); keep_method_override keeps them;
// keygate_auth, which cannot remove them from what the proxy forwards,
// refuses them with 400.
func TestMethodOverrideStripped(t *testing.T) {
	cf := `{
	admin {admin}
}
http://127.0.0.1:{gw} {
	handle /keep/* {
		keygate {
			tenant acme
			keep_method_override
		}
		reverse_proxy {up}
	}
	handle /auth/* {
		keygate_auth {
			tenant acme
		}
	}
	handle {
		keygate {
			tenant acme
		}
		reverse_proxy {up}
	}
}
http://127.0.0.1:{api} {
	keygate_admin
}
`
	up := newUpstream(t)
	e := startGateway(t, cf, up, testcaddy.Options{})
	e.bootstrap()
	_, _, key := e.newUserKey("acme", "client", time.Now().Add(time.Hour))
	app := e.appUser("acme", "signer")
	_, secret := e.newSecret(app, "a")
	overrides := map[string]string{
		"X-HTTP-Method-Override": "DELETE", "X-HTTP-Method": "DELETE", "X-Method-Override": "DELETE",
		"X_HTTP_Method_Override": "DELETE", "x-http_method": "DELETE",
	}
	send := func(req *http.Request) int {
		t.Helper()
		for k, v := range overrides {
			req.Header[k] = []string{v}
		}
		resp := e.sendSigned(req)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	forwarded := func() []string {
		_, h := up.snapshot()
		var got []string
		for k := range h {
			if strings.Contains(strings.ToLower(strings.ReplaceAll(k, "_", "-")), "method") {
				got = append(got, k)
			}
		}
		return got
	}
	keyed := func(path string) *http.Request {
		req, _ := http.NewRequest(http.MethodGet, e.gateway+path, nil)
		req.Header.Set("X-Api-Key", key)
		return req
	}

	if got := send(keyed("/orders/1")); got != http.StatusOK {
		t.Fatalf("access key: %d", got)
	}
	if got := forwarded(); len(got) != 0 {
		t.Fatalf("method-override headers forwarded: %v", got)
	}
	if got := send(e.signedReq(signWalleeMAC, http.MethodGet, "/orders/1", nil, app, secret)); got != http.StatusOK {
		t.Fatalf("signed GET: %d", got)
	}
	if got := forwarded(); len(got) != 0 {
		t.Fatalf("method-override headers forwarded with a signed GET: %v", got)
	}

	// keep_method_override: they pass.
	if got := send(keyed("/keep/orders/1")); got != http.StatusOK {
		t.Fatalf("keep route: %d", got)
	}
	_, h := up.snapshot()
	if h.Get("X-Http-Method-Override") != "DELETE" || h.Get("X-Http-Method") != "DELETE" || h.Get("X-Method-Override") != "DELETE" {
		t.Fatalf("keep_method_override: forwarded %v", forwarded())
	}

	// keygate_auth: 400 with a method-override header, 200 without.
	if got := send(keyed("/auth/check")); got != http.StatusBadRequest {
		t.Fatalf("forward auth with a method-override header: %d, want 400", got)
	}
	overrides = nil
	if got := send(keyed("/auth/check")); got != http.StatusOK {
		t.Fatalf("forward auth: %d", got)
	}
}
