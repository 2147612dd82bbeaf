package module_test

import (
	"fmt"
	"testing"

	"github.com/keygate/keygate/internal/testcaddy"
)

// TestMetricsWithoutMetricsOption: keygate's series are on the admin
// endpoint's /metrics without Caddy's `metrics` global option (which only
// adds Caddy's per-request HTTP metrics), as the README says.
func TestMetricsWithoutMetricsOption(t *testing.T) {
	up := newUpstream(t)
	e := startGateway(t, fmt.Sprintf(sharedRouteCaddyfile, "", ""), up, testcaddy.Options{})
	mustCall(t, e.gateway+"/m", "") // one 401
	m := scrapeMetrics(t, e.srv.AdminAddr)
	if got := m.samples[`caddy_keygate_requests_total{result="unauthenticated",scheme="none"}`]; got < 1 {
		t.Fatalf("caddy_keygate_requests_total not served without the metrics option:\n%v", m.keygate())
	}
}
