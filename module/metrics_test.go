package module_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testcaddy"
)

// scrape is one read of Caddy's /metrics: the text and each sample by its
// series as printed, e.g. `caddy_keygate_requests_total{result="ok",scheme="access_key"}`.
type scrape struct {
	text    string
	samples map[string]float64
}

func scrapeMetrics(t *testing.T, adminAddr string) scrape {
	t.Helper()
	resp, err := rlClient.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d: %s", resp.StatusCode, body)
	}
	s := scrape{text: string(body), samples: make(map[string]float64)}
	sc := bufio.NewScanner(strings.NewReader(s.text))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("bad metrics line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad metrics line %q: %v", line, err)
		}
		s.samples[line[:i]] = v
	}
	return s
}

// keygate returns the caddy_keygate_* samples.
func (s scrape) keygate() map[string]float64 {
	out := make(map[string]float64)
	for k, v := range s.samples {
		if strings.HasPrefix(k, "caddy_keygate_") {
			out[k] = v
		}
	}
	return out
}

// labels returns every label set printed, e.g. `{result="ok",scheme="none"}`.
func (s scrape) labels() []string {
	var out []string
	for k := range s.samples {
		if i := strings.IndexByte(k, '{'); i >= 0 {
			out = append(out, k[i:])
		}
	}
	return out
}

// checkDeltas compares the growth of series from a to b with want (series
// absent count as 0).
func checkDeltas(t *testing.T, a, b scrape, want map[string]float64) {
	t.Helper()
	for series, d := range want {
		if got := b.samples[series] - a.samples[series]; got != d {
			t.Errorf("%s grew by %v, want %v", series, got, d)
		}
	}
}

// TestMetricsCountsAndReload sends known traffic through a keygate route,
// checks the caddy_keygate_* series on Caddy's /metrics, reloads the
// config and checks they are still served with their counts kept and that
// they keep counting once per request.
func TestMetricsCountsAndReload(t *testing.T) {
	up := newUpstream(t)
	e := startGateway(t, fmt.Sprintf(sharedRouteCaddyfile, "metrics", "limit 3"), up, testcaddy.Options{})
	e.bootstrap()
	userID, keyID, key := e.newUserKey("acme", "metered", time.Now().Add(time.Hour))
	// The key's id with another secret, in the format without checksum (a
	// checksummed key with a changed secret fails its checksum and is
	// refused before the lookup, scheme none).
	wrongSecret := key[:len("kg_")+17] + strings.Repeat("z", 52)
	url := e.gateway + "/m"

	m0 := scrapeMetrics(t, e.srv.AdminAddr)
	statuses := map[int]int{}
	send := func(key string) {
		t.Helper()
		statuses[mustCall(t, url, key).status]++
	}
	for range 3 {
		send(key) // 200
	}
	send("")                                               // 401, no credential
	send("kg_aaaaaaaaaaaaaaaa_" + strings.Repeat("b", 52)) // 401, unknown key
	send(wrongSecret)                                      // 401, wrong secret
	send(key)                                              // 429
	send(key)                                              // 429
	if want := (map[int]int{200: 3, 401: 3, 429: 2}); fmt.Sprint(statuses) != fmt.Sprint(want) {
		t.Fatalf("statuses %v, want %v", statuses, want)
	}
	m1 := scrapeMetrics(t, e.srv.AdminAddr)
	checkDeltas(t, m0, m1, map[string]float64{
		`caddy_keygate_requests_total{result="ok",scheme="access_key"}`:              3,
		`caddy_keygate_requests_total{result="unauthenticated",scheme="none"}`:       1,
		`caddy_keygate_requests_total{result="unauthenticated",scheme="access_key"}`: 2,
		`caddy_keygate_requests_total{result="limited",scheme="access_key"}`:         2,
		`caddy_keygate_ratelimit_decisions_total{decision="allowed"}`:                3,
		`caddy_keygate_ratelimit_decisions_total{decision="limited"}`:                2,
		`caddy_keygate_auth_duration_seconds_count`:                                  8,
	})
	for _, series := range []string{`caddy_keygate_circuit_state`, `caddy_keygate_auth_duration_seconds_bucket{le="+Inf"}`} {
		if _, ok := m1.samples[series]; !ok {
			t.Errorf("%s not exported", series)
		}
	}

	// Bounded labels: no user, key or tenant ids anywhere.
	for _, ls := range m1.labels() {
		for _, id := range []string{userID, keyID, e.adminID, "acme"} {
			if strings.Contains(ls, id) {
				t.Errorf("label set %s contains the id %q", ls, id)
			}
		}
	}
	if strings.Contains(m1.text, key) || strings.Contains(m1.text, e.adminKey) {
		t.Error("an access key appears in /metrics")
	}

	// Reload a changed config (an unchanged one is not reloaded): the
	// collectors are in the new config's registry with their counts kept.
	cfg, err := os.ReadFile(e.srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Reload(strings.Replace(string(cfg), "limit 3", "limit 4", 1))
	m2 := scrapeMetrics(t, e.srv.AdminAddr)
	kept := 0
	for series, v := range m1.keygate() {
		if strings.Contains(series, "_duration_seconds") && !strings.HasSuffix(series, "_count") && !strings.Contains(series, "_bucket") {
			continue // _sum values; compared through _count
		}
		got, ok := m2.samples[series]
		if !ok {
			t.Errorf("%s missing after the reload", series)
			continue
		}
		if got != v {
			t.Errorf("%s = %v after the reload, %v before", series, got, v)
		}
		kept++
	}
	t.Logf("%d keygate series kept across the reload", kept)

	// After the reload each request still counts once, and the in-process
	// limiter kept its counts: the new limit (4) lets exactly one more through.
	if r := mustCall(t, url, key); r.status != http.StatusOK {
		t.Fatalf("after reload: status %d", r.status)
	}
	if r := mustCall(t, url, key); r.status != http.StatusTooManyRequests {
		t.Fatalf("after reload: status %d, want 429", r.status)
	}
	m3 := scrapeMetrics(t, e.srv.AdminAddr)
	checkDeltas(t, m2, m3, map[string]float64{
		`caddy_keygate_requests_total{result="ok",scheme="access_key"}`:      1,
		`caddy_keygate_requests_total{result="limited",scheme="access_key"}`: 1,
		`caddy_keygate_ratelimit_decisions_total{decision="allowed"}`:        1,
		`caddy_keygate_ratelimit_decisions_total{decision="limited"}`:        1,
		`caddy_keygate_auth_duration_seconds_count`:                          2,
	})
	if strings.Contains(e.srv.Logs(), "panic") {
		t.Fatalf("panic in the server log:\n%s", e.srv.Logs())
	}
}
