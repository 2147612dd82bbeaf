package module_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/testcaddy"
)

// TestReplayGuardAfterChecks (issue 23, item 2) runs on the embedded store
// with a replay guard of 64 entries:
//   - a signature is remembered only once its request passed every check:
//     refused for its user's permission (403) or limit (429), the same
//     request passes once the user may (the code before the fix had
//     remembered it first, and answered it 401 "replayed");
//   - refused requests, another tenant's, take no entry, so they cannot
//     push a victim's out;
//   - an unexpired entry is never dropped: when the guard is full, a
//     request that needs a new entry is 503, counted and logged, while
//     replays of remembered signatures stay 401.
func TestReplayGuardAfterChecks(t *testing.T) {
	cf := strings.Replace(budgetCaddyfile(`store file {
			replay_cache 64
		}`), "signed_body_buffer 256KiB", "", 1)
	e := startGateway(t, cf, newUpstream(t), testcaddy.Options{})
	e.bootstrap()
	u := newBudgetUsers(e)
	small := []byte(`{"n":1}`)

	// 403, then the permission is granted: the same request passes, once.
	r := u.req(signCavageHS2019, "/api/orders", small, u.stranger, u.strangerS)
	if got := e.status(r); got != http.StatusForbidden {
		t.Fatalf("no permission: %d", got)
	}
	e.api(http.MethodPost, "/v1/permissions", map[string]any{
		"user": map[string]any{"id": u.stranger}, "workspace": map[string]any{"id": "acme"},
		"role": "MEMBER", "status": "ACTIVE",
	}, http.StatusCreated)
	if got := e.status(r); got != http.StatusOK {
		t.Fatalf("after the permission is granted: %d, want 200 (a refused request's signature is not spent)", got)
	}
	if got := e.status(r); got != http.StatusUnauthorized {
		t.Fatalf("replayed: %d, want 401", got)
	}

	// 429, then the limit is raised: the same request passes, once.
	r = u.req(signCavageHS2019, "/api/orders", small, u.limited, u.limitedS)
	if got := e.status(r); got != http.StatusTooManyRequests {
		t.Fatalf("limited: %d", got)
	}
	e.setRequestLimit(u.limited, 100)
	if got := e.status(r); got != http.StatusOK {
		t.Fatalf("after the limit is raised: %d, want 200", got)
	}
	if got := e.status(r); got != http.StatusUnauthorized {
		t.Fatalf("replayed: %d, want 401", got)
	}

	// A victim's POST, then a flood of another tenant's signatures (403):
	// they take no entry.
	victim := u.req(signCavageHS2019, "/api/pay", small, u.user, u.secret)
	if got := e.status(victim); got != http.StatusOK {
		t.Fatalf("victim: %d", got)
	}
	flooder := e.appUser("beta", "flooder")
	_, floodS := e.newSecret(flooder, "a")
	for i := range 100 {
		if got := e.status(u.req(signWalleeMAC, "/api/x", nil, flooder, floodS)); got != http.StatusForbidden {
			t.Fatalf("flood %d: %d, want 403", i, got)
		}
	}
	// Fill the guard: 4 entries are held (the limited user's first
	// request, the two above and the victim), 60 more fit.
	m0 := scrapeMetrics(t, e.srv.AdminAddr)
	for i := range 60 {
		if got := e.status(u.req(signWalleeMAC, "/api/x", nil, u.user, u.secret)); got != http.StatusOK {
			t.Fatalf("signed POST %d of 60: %d", i+1, got)
		}
	}
	for range 3 {
		if got := e.status(u.req(signWalleeMAC, "/api/x", nil, u.user, u.secret)); got != http.StatusServiceUnavailable {
			t.Fatalf("guard full: %d, want 503", got)
		}
	}
	if got := e.status(victim); got != http.StatusUnauthorized {
		t.Fatalf("the victim's replay when the guard is full: %d, want 401", got)
	}
	// A GET needs no entry (replay_protection on): still served.
	if got := e.status(e.signedReq(signWalleeMAC, http.MethodGet, "/api/x", nil, u.user, u.secret)); got != http.StatusOK {
		t.Fatalf("signed GET while the guard is full: %d", got)
	}
	m1 := scrapeMetrics(t, e.srv.AdminAddr)
	checkDeltas(t, m0, m1, map[string]float64{
		"caddy_keygate_replay_full_total":                                        3,
		`caddy_keygate_requests_total{result="replay_full",scheme="wallee_mac"}`: 3,
	})
	if n := strings.Count(e.srv.Logs(), "replay guard full: refusing"); n != 1 {
		t.Fatalf("%d warnings about the full guard, want one", n)
	}
}
