package module_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testcaddy"
)

// throttleCaddyfile: a gateway for tenant acme, the token endpoint and the
// admin API; the gateway site trusts 127.0.0.1 as a proxy, so each test
// client is told by its X-Forwarded-For. Small budgets: 3 failures, then
// one every 2 s; 4 token requests, then one every 10 s.
const throttleCaddyfile = `{
	admin {admin}
	servers {
		trusted_proxies static 127.0.0.1/32
	}
	keygate {
		auth_failures 1/2s 3
		token {
			throttle 1/10s 4
			algorithm EdDSA
		}
	}
}
http://127.0.0.1:{gw} {
	handle ` + tokenPath + ` {
		keygate_token
	}
	handle {
		keygate {
			identity_headers all
			rate_limit_headers both
			tenant acme
		}
		reverse_proxy {up}
	}
}
http://127.0.0.1:{api} {
	keygate_admin
}
`

// from sends GET path to the gateway as client ip (X-Forwarded-For) with
// the access key (none when empty).
func (e *env) from(ip, path, key string) *http.Response {
	e.t.Helper()
	hdr := map[string]string{"X-Forwarded-For": ip}
	if key != "" {
		hdr["X-Api-Key"] = key
	}
	return e.get(path, hdr)
}

// statusFrom is from's status, the body discarded.
func (e *env) statusFrom(ip, key string) int {
	e.t.Helper()
	resp := e.from(ip, "/x", key)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// tokenFrom requests a token as client ip with the API token key.
func (e *env) tokenFrom(ip, key string) *http.Response {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.gateway+tokenPath,
		strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Forwarded-For", ip)
	req.SetBasicAuth("apitoken", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// expectThrottled checks a 429 problem+json of the throttles with a
// Retry-After of 1…maxWait seconds, and returns the Retry-After.
func expectThrottled(t *testing.T, resp *http.Response, maxWait int) time.Duration {
	t.Helper()
	ra := resp.Header.Get("Retry-After")
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("429 with Content-Type %q", ct)
	}
	if !strings.Contains(string(body), `"type":"https://keygate.dev/problems/throttled"`) || !strings.Contains(string(body), `"status":429`) {
		t.Fatalf("429 body %s", body)
	}
	secs, err := strconv.Atoi(ra)
	if err != nil || secs < 1 || secs > maxWait {
		t.Fatalf("Retry-After %q, want 1…%d seconds", ra, maxWait)
	}
	return time.Duration(secs) * time.Second
}

func wrongKey(key string) string {
	w := key[:len(key)-4] + "zzzz"
	if w == key {
		w = key[:len(key)-4] + "yyyy"
	}
	return w
}

// TestThrottleGateway: wrong keys from one client get 401 until the
// configured burst is used up, then 429 problem+json with Retry-After for
// every request of that client (a valid key included) until its bucket
// refills; other clients are not affected; 403 does not count; the metric
// counts the 429s.
func TestThrottleGateway(t *testing.T) {
	up := newUpstream(t)
	e := startGateway(t, throttleCaddyfile, up, testcaddy.Options{})
	e.bootstrap()
	_, _, key := e.newUserKey("acme", "honest", time.Now().Add(time.Hour))
	bad := wrongKey(key)
	m0 := scrapeMetrics(t, e.srv.AdminAddr)

	// A valid key of another tenant (403) is not credential guessing.
	e.api(http.MethodPost, "/v1/tenants", map[string]any{"id": "other", "name": "Other"}, http.StatusCreated)
	_, _, otherKey := e.newUserKey("other", "foreign", time.Now().Add(time.Hour))
	for range 5 {
		if got := e.statusFrom("192.0.2.5", otherKey); got != http.StatusForbidden {
			t.Fatalf("key of another tenant: %d, want 403", got)
		}
	}
	if got := e.statusFrom("192.0.2.5", bad); got != http.StatusUnauthorized {
		t.Fatalf("first wrong key after five 403s: %d, want 401", got)
	}

	// Client A guesses: burst 3, then 429 before authentication.
	const a = "192.0.2.1"
	for range 3 {
		expectProblem(t, e.from(a, "/x", bad), http.StatusUnauthorized)
	}
	calls, _ := up.snapshot()
	wait := expectThrottled(t, e.from(a, "/x", bad), 2)
	expectThrottled(t, e.get("/x", map[string]string{"X-Forwarded-For": a, "X-Api-Key": key}), 2)
	expectThrottled(t, e.from(a, "/x", ""), 2)
	if after, _ := up.snapshot(); after != calls {
		t.Fatal("the upstream was called for a throttled client")
	}

	// Other clients: another address, and the proxy itself, are served.
	if got := e.statusFrom("192.0.2.2", key); got != http.StatusOK {
		t.Fatalf("another client with a valid key: %d", got)
	}
	if got := e.statusFrom("192.0.2.2", bad); got != http.StatusUnauthorized {
		t.Fatalf("another client with a wrong key: %d", got)
	}
	resp := e.get("/x", map[string]string{"X-Api-Key": key})
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the proxy's own address: %d", resp.StatusCode)
	}

	// The 400 for more than one credential counts as a failure too.
	const b = "192.0.2.3"
	two := map[string]string{"X-Forwarded-For": b, "Authorization": "Bearer " + bad, "X-Api-Key": key}
	for range 3 {
		expectProblem(t, e.get("/x", two), http.StatusBadRequest)
	}
	expectThrottled(t, e.from(b, "/x", key), 2)

	// After Retry-After one more failure is allowed, then 429 again.
	time.Sleep(wait + 100*time.Millisecond)
	expectProblem(t, e.from(a, "/x", bad), http.StatusUnauthorized)
	expectThrottled(t, e.from(a, "/x", key), 2)
	// IPv6: one /64 is one client.
	for _, ip := range []string{"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2::3"} {
		if got := e.statusFrom(ip, bad); got != http.StatusUnauthorized {
			t.Fatalf("%s wrong key: %d", ip, got)
		}
	}
	expectThrottled(t, e.from("2001:db8:1:2:ffff::9", "/x", key), 2)

	m1 := scrapeMetrics(t, e.srv.AdminAddr)
	checkDeltas(t, m0, m1, map[string]float64{
		`caddy_keygate_throttled_total{endpoint="gateway"}`:              6,
		`caddy_keygate_requests_total{result="throttled",scheme="none"}`: 6,
	})
	for _, ls := range m1.labels() {
		if strings.Contains(ls, "192.0.2.") || strings.Contains(ls, "2001:db8") {
			t.Errorf("client address in a metric label: %s", ls)
		}
	}
}

// TestThrottleTokenEndpoint: the token endpoint answers 429 after its
// burst of requests, and failed exchanges count against the client's
// failure budget, which the gateway shares.
func TestThrottleTokenEndpoint(t *testing.T) {
	up := newUpstream(t)
	e := startGateway(t, throttleCaddyfile, up, testcaddy.Options{})
	e.bootstrap()
	_, _, key := e.newUserKey("acme", "minter", time.Now().Add(time.Hour))
	m0 := scrapeMetrics(t, e.srv.AdminAddr)

	// Mints: 4 in a row, then 429 problem+json with Retry-After.
	const minter = "198.51.100.1"
	for i := range 4 {
		resp := e.tokenFrom(minter, key)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"access_token"`) {
			t.Fatalf("mint %d: %d %s", i+1, resp.StatusCode, body)
		}
	}
	expectThrottled(t, e.tokenFrom(minter, key), 10)
	// Another client still mints.
	resp := e.tokenFrom("198.51.100.2", key)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("another client: %d", resp.StatusCode)
	}

	// Failed exchanges use the failure budget (3), shared with the gateway.
	const guesser = "198.51.100.3"
	for i := range 3 {
		resp := e.tokenFrom(guesser, wrongKey(key))
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong API token %d: %d, want 401", i+1, resp.StatusCode)
		}
	}
	expectThrottled(t, e.tokenFrom(guesser, key), 2)
	expectThrottled(t, e.from(guesser, "/x", key), 2)

	m1 := scrapeMetrics(t, e.srv.AdminAddr)
	checkDeltas(t, m0, m1, map[string]float64{
		`caddy_keygate_throttled_total{endpoint="token"}`:              2,
		`caddy_keygate_throttled_total{endpoint="gateway"}`:            1,
		`caddy_keygate_tokens_rejected_total{reason="throttled"}`:      2,
		`caddy_keygate_tokens_issued_total`:                            5,
		`caddy_keygate_tokens_rejected_total{reason="invalid_client"}`: 3,
	})
}

// TestThrottleIgnoresUntrustedForwardedFor: without trusted_proxies an
// X-Forwarded-For header does not make a new client.
func TestThrottleIgnoresUntrustedForwardedFor(t *testing.T) {
	e := startEnv(t, "keygate {\n\t\tauth_failures 1/1m 3\n\t}", "")
	bad := wrongKey(e.adminKey)
	// Each wrong key claims another address; the burst (3, of which the
	// start-up probe without a key used one) still runs out.
	n := 0
	for ; n < 10; n++ {
		if e.statusFrom(fmt.Sprintf("203.0.113.%d", n), bad) == http.StatusTooManyRequests {
			break
		}
	}
	if n < 2 || n > 3 {
		t.Fatalf("%d wrong keys before the first 429, want 2 or 3 (burst 3)", n)
	}
	wait := expectThrottled(t, e.from("203.0.113.99", "/x", e.adminKey), 60)
	if wait < 50*time.Second {
		t.Fatalf("Retry-After %v with a rate of 1/1m", wait)
	}
}

// adminFrom calls the admin API as client ip (X-Forwarded-For) with key.
func (e *env) adminFrom(ip, method, path, key, body string) *http.Response {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.adminURL+path, strings.NewReader(body))
	req.Header.Set("X-Forwarded-For", ip)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	checkAdminAnswer(e.t, req, resp, data)
	resp.Body = io.NopCloser(bytes.NewReader(data))
	return resp
}

// TestThrottleAdminAPI: wrong keys on the admin API, POST /v1/verify
// included, use the client's auth_failures budget, shared with the gateway
// (issue 23: 300 of 300 wrong keys were answered 401): past the burst,
// 429 with Retry-After before the key is looked at; other clients are
// served; 403 does not count.
func TestThrottleAdminAPI(t *testing.T) {
	up := newUpstream(t)
	e := startGateway(t, throttleCaddyfile, up, testcaddy.Options{})
	e.bootstrap()
	_, _, memberKey := e.newUserKey("acme", "member", time.Now().Add(time.Hour))
	bad := wrongKey(e.adminKey)
	m0 := scrapeMetrics(t, e.srv.AdminAddr)
	status := func(resp *http.Response) int {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	// A valid key without the rights (403) is not guessing.
	for range 5 {
		if got := status(e.adminFrom("192.0.2.20", http.MethodPost, "/v1/tenants", memberKey, `{"id":"nope"}`)); got != http.StatusForbidden {
			t.Fatalf("member creating a tenant: %d, want 403", got)
		}
	}

	// The admin API: burst 3, then 429, a valid key included.
	const a = "192.0.2.21"
	for i := range 3 {
		if got := status(e.adminFrom(a, http.MethodGet, "/v1/tenants", bad, "")); got != http.StatusUnauthorized {
			t.Fatalf("wrong key %d: %d, want 401", i+1, got)
		}
	}
	expectThrottled(t, e.adminFrom(a, http.MethodGet, "/v1/tenants", bad, ""), 2)
	expectThrottled(t, e.adminFrom(a, http.MethodGet, "/v1/tenants", e.adminKey, ""), 2)
	if got := status(e.adminFrom("192.0.2.22", http.MethodGet, "/v1/tenants", e.adminKey, "")); got != http.StatusOK {
		t.Fatalf("another client: %d", got)
	}

	// POST /v1/verify: a wrong caller key counts the same.
	const v = "192.0.2.23"
	verifyBody := `{"key":"` + memberKey + `","consume":0}`
	for i := range 3 {
		if got := status(e.adminFrom(v, http.MethodPost, "/v1/verify", bad, verifyBody)); got != http.StatusUnauthorized {
			t.Fatalf("verify with a wrong caller key %d: %d, want 401", i+1, got)
		}
	}
	expectThrottled(t, e.adminFrom(v, http.MethodPost, "/v1/verify", e.adminKey, verifyBody), 2)

	// One budget: failures at the gateway throttle the admin API.
	const g = "192.0.2.24"
	for range 3 {
		expectProblem(t, e.from(g, "/x", bad), http.StatusUnauthorized)
	}
	expectThrottled(t, e.adminFrom(g, http.MethodGet, "/v1/tenants", e.adminKey, ""), 2)

	m1 := scrapeMetrics(t, e.srv.AdminAddr)
	checkDeltas(t, m0, m1, map[string]float64{`caddy_keygate_throttled_total{endpoint="admin"}`: 4})
}
