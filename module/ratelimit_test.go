package module_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testcaddy"
	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/module"
)

// testMasterKey is a valid master key (32 zero bytes, base64) for the Redis
// store, which requires one.
const testMasterKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

// redisGlobal is the keygate global option for a Redis store at addr under
// prefix; extra goes into the store block (e.g. "timeout 1s").
func redisGlobal(addr, prefix, extra string) string {
	return fmt.Sprintf(`keygate {
		store redis {
			address %s
			prefix %s
			%s
		}
		master_key %s
	}`, addr, prefix, extra, testMasterKey)
}

// startGateway starts keygate from a Caddyfile template in which {gw} and
// {api} stand for free ports of the gateway and the admin API sites and
// {up} for the upstream's address ({admin} is testcaddy's admin address).
// It does not bootstrap: see (*env).bootstrap.
func startGateway(t *testing.T, tmpl string, up *upstream, opts testcaddy.Options) *env {
	t.Helper()
	gw, ad := testcaddy.FreePort(t), testcaddy.FreePort(t)
	e := &env{t: t, up: up,
		gateway:  fmt.Sprintf("http://127.0.0.1:%d", gw),
		adminURL: fmt.Sprintf("http://127.0.0.1:%d", ad),
	}
	cf := strings.NewReplacer("{gw}", strconv.Itoa(gw), "{api}", strconv.Itoa(ad), "{up}", up.addr()).Replace(tmpl)
	opts.Wait = append(opts.Wait, e.gateway, e.adminURL)
	e.srv = testcaddy.Start(t, cf, opts)
	return e
}

// setRequestLimit changes a user's requestLimit through the admin API.
func (e *env) setRequestLimit(userID string, limit int64) {
	e.t.Helper()
	e.api(http.MethodPatch, "/v1/users/"+userID, map[string]any{"requestLimit": limit}, http.StatusOK)
}

// addTenantKey gives an existing user an ACTIVE permission in tenant and a
// key valid there.
func (e *env) addTenantKey(userID, tenant string) (keyID, key string) {
	e.t.Helper()
	e.api(http.MethodPost, "/v1/permissions", map[string]any{
		"user": map[string]any{"id": userID}, "workspace": map[string]any{"id": tenant},
		"role": "MEMBER", "status": "ACTIVE",
	}, http.StatusCreated)
	var k struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	_ = json.Unmarshal(e.api(http.MethodPost, "/v1/users/"+userID+"/keys", map[string]any{
		"name": "k-" + tenant, "expiresAt": time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "tenant": tenant,
	}, http.StatusCreated), &k)
	if !strings.HasPrefix(k.Key, "kg_") {
		e.t.Fatalf("no key in create response")
	}
	return k.ID, k.Key
}

// rlClient keeps enough idle connections for the concurrent bursts.
var rlClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 512},
}

// result is one gateway answer.
type result struct {
	status int
	header http.Header
	body   []byte
	start  time.Time // when the request was sent
	dur    time.Duration
	err    error
}

// call sends GET url with the access key (none when key is empty).
func call(url, key string) result {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if key != "" {
		req.Header.Set("X-Api-Key", key)
	}
	r := result{start: time.Now()}
	resp, err := rlClient.Do(req)
	if err != nil {
		r.err = err
		r.dur = time.Since(r.start)
		return r
	}
	r.body, r.err = io.ReadAll(resp.Body)
	resp.Body.Close()
	r.dur = time.Since(r.start)
	r.status, r.header = resp.StatusCode, resp.Header
	return r
}

// mustCall is call that fails the test on a transport error.
func mustCall(t *testing.T, url, key string) result {
	t.Helper()
	r := call(url, key)
	if r.err != nil {
		t.Fatalf("GET %s: %v", url, r.err)
	}
	return r
}

// burst sends n concurrent requests with key, request i to urls[i%len(urls)],
// all released at once.
func burst(t *testing.T, urls []string, key string, n int) []result {
	t.Helper()
	res := make([]result, n)
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			res[i] = call(urls[i%len(urls)], key)
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
	for i, r := range res {
		if r.err != nil {
			t.Fatalf("request %d to %s: %v", i, urls[i%len(urls)], r.err)
		}
	}
	return res
}

var rateLimitRE = regexp.MustCompile(`^"user";r=(\d+);t=(\d+)$`)

// checkRateHeaders checks the rate-limit fields of an authenticated answer
// against the effective limit and the window (seconds), and returns r and t.
// want is the expected remaining quota, or -1 for any.
func checkRateHeaders(t *testing.T, r result, limit, window, want int64) (remaining, reset int64) {
	t.Helper()
	h := r.header
	if got, exp := h.Get("RateLimit-Policy"), fmt.Sprintf(`"user";q=%d;w=%d`, limit, window); got != exp {
		t.Fatalf("status %d: RateLimit-Policy %q, want %q", r.status, got, exp)
	}
	m := rateLimitRE.FindStringSubmatch(h.Get("RateLimit"))
	if m == nil {
		t.Fatalf("status %d: RateLimit %q does not match %s", r.status, h.Get("RateLimit"), rateLimitRE)
	}
	remaining, _ = strconv.ParseInt(m[1], 10, 64)
	reset, _ = strconv.ParseInt(m[2], 10, 64)
	if want >= 0 && remaining != want {
		t.Fatalf("status %d: RateLimit %q: r=%d, want %d", r.status, h.Get("RateLimit"), remaining, want)
	}
	if remaining > limit {
		t.Fatalf("RateLimit r=%d above the limit %d", remaining, limit)
	}
	// The headers never announce more than the window (issue 16).
	if maxReset := window; reset < 0 || reset > maxReset {
		t.Fatalf("RateLimit t=%d outside [0, %d]", reset, maxReset)
	}
	for name, exp := range map[string]int64{"X-RateLimit-Limit": limit, "X-RateLimit-Remaining": remaining, "X-RateLimit-Reset": reset} {
		if got := h.Get(name); got != strconv.FormatInt(exp, 10) {
			t.Fatalf("status %d: %s = %q, want %d (RateLimit %q)", r.status, name, got, exp, h.Get("RateLimit"))
		}
	}
	return remaining, reset
}

// checkLimited checks a 429: problem+json, Retry-After, rate-limit fields
// with nothing remaining.
func checkLimited(t *testing.T, r result, limit, window int64) {
	t.Helper()
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("429 Content-Type %q", ct)
	}
	var p struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil || p.Status != 429 || p.Type != "https://keygate.dev/problems/rate-limited" {
		t.Fatalf("429 body %s", r.body)
	}
	ra, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || ra < 1 || int64(ra) > window {
		t.Fatalf("429 Retry-After %q", r.header.Get("Retry-After"))
	}
	checkRateHeaders(t, r, limit, window, 0)
}

// noRateHeaders fails when an answer carries rate-limit fields.
func noRateHeaders(t *testing.T, r result) {
	t.Helper()
	for _, name := range []string{"RateLimit-Policy", "RateLimit", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} {
		if v := r.header.Get(name); v != "" {
			t.Fatalf("status %d carries %s: %q", r.status, name, v)
		}
	}
}

// checkExact checks that a burst for a user with limit L over a fresh
// window got exactly L answers 200 (remaining L-1 … 0, each once) and 429s
// for the rest, and that the upstream saw exactly L of them.
func checkExact(t *testing.T, res []result, limit, window int64, upstreamCalls int) {
	t.Helper()
	var ok, limited int
	var remaining []int64
	for _, r := range res {
		switch r.status {
		case http.StatusOK:
			ok++
			rem, _ := checkRateHeaders(t, r, limit, window, -1)
			remaining = append(remaining, rem)
		case http.StatusTooManyRequests:
			limited++
			checkLimited(t, r, limit, window)
		default:
			t.Fatalf("unexpected status %d: %s", r.status, r.body)
		}
	}
	if ok != int(limit) || limited != len(res)-int(limit) {
		t.Fatalf("%d requests, limit %d: %d accepted, %d limited", len(res), limit, ok, limited)
	}
	if upstreamCalls != int(limit) {
		t.Fatalf("upstream called %d times, want %d", upstreamCalls, limit)
	}
	// Each accepted request saw its own count: the decisions were atomic.
	slices.Sort(remaining)
	for i, rem := range remaining {
		if rem != int64(i) {
			t.Fatalf("remaining values of accepted requests %v, want 0…%d each once", remaining, limit-1)
		}
	}
}

const sharedRouteCaddyfile = `{
	admin {admin}
	%s
}
http://127.0.0.1:{gw} {
	keygate {
		identity_headers all
		rate_limit_headers both
		tenant acme
		%s
	}
	reverse_proxy {up}
}
http://127.0.0.1:{api} {
	keygate_admin
}
`

// TestRateLimitExactAcrossNodes runs three keygate processes on one Redis
// and sends a burst for one user over all of them: exactly the user's limit
// gets through. A requestLimit changed on one node then applies on the others.
func TestRateLimitExactAcrossNodes(t *testing.T) {
	_, prefix := testredis.Client(t) // shared Redis, keys deleted at the end
	opt := testredis.Options(t)
	// A generous store timeout: this test is about exactness, not deadlines
	// (a timed-out call would be a 503, which checkExact reports).
	cf := fmt.Sprintf(sharedRouteCaddyfile, redisGlobal(opt.Addr, prefix, "timeout 2s"), "")
	up := newUpstream(t)
	nodes := make([]*env, 3)
	for i := range nodes {
		nodes[i] = startGateway(t, cf, up, testcaddy.Options{})
	}
	e := nodes[0]
	e.bootstrap()
	for _, n := range nodes[1:] {
		n.adminKey, n.adminID = e.adminKey, e.adminID
	}

	const limit, n = 50, 200
	userID, _, key := e.newUserKey("acme", "burst", time.Now().Add(time.Hour))
	// Set before the key is first used, so no node has a stale user cached.
	e.setRequestLimit(userID, limit)

	urls := make([]string, len(nodes))
	for i, node := range nodes {
		urls[i] = node.gateway + "/burst"
	}
	before, _ := up.snapshot()
	res := burst(t, urls, key, n)
	after, _ := up.snapshot()
	checkExact(t, res, limit, 120, after-before)

	// None over: a second burst in the same window gets nothing through.
	res = burst(t, urls, key, 30)
	for _, r := range res {
		checkLimited(t, r, limit, 120)
	}
	if n, _ := up.snapshot(); n != after {
		t.Fatalf("upstream called %d more times after the limit", n-after)
	}

	// Raising the limit through node 0's admin API applies on node 2 at
	// once (the change is published to every node's cache).
	nodes[0].setRequestLimit(userID, limit+5)
	deadline := time.Now().Add(time.Second)
	for {
		r := mustCall(t, urls[2], key)
		if r.status == http.StatusOK {
			checkRateHeaders(t, r, limit+5, 120, 4)
			break
		}
		checkLimited(t, r, limit, 120)
		if time.Now().After(deadline) {
			t.Fatal("raised requestLimit not applied on another node within 1s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRateLimitExactLocal is the same burst against one keygate on the
// embedded file store (in-process limiter).
func TestRateLimitExactLocal(t *testing.T) {
	up := newUpstream(t)
	e := startGateway(t, fmt.Sprintf(sharedRouteCaddyfile, "", "limit 1000"), up, testcaddy.Options{})
	e.bootstrap()
	const limit, n = 50, 200
	userID, _, key := e.newUserKey("acme", "burst", time.Now().Add(time.Hour))
	e.setRequestLimit(userID, limit)
	before, _ := up.snapshot()
	res := burst(t, []string{e.gateway + "/burst"}, key, n)
	after, _ := up.snapshot()
	checkExact(t, res, limit, 120, after-before)
}

// TestRateLimitWindowSlides uses one short real window (limit 5 per 2 s, on
// Redis): quota comes back as the window slides, not before one window has
// passed, and no interval shorter than a window ever sees more than the
// limit accepted, so there is no burst at window boundaries.
func TestRateLimitWindowSlides(t *testing.T) {
	_, prefix := testredis.Client(t)
	opt := testredis.Options(t)
	up := newUpstream(t)
	e := startGateway(t, fmt.Sprintf(sharedRouteCaddyfile, redisGlobal(opt.Addr, prefix, "timeout 1s"), "limit 5 2s"), up, testcaddy.Options{})
	e.bootstrap()
	_, _, key := e.newUserKey("acme", "slider", time.Now().Add(time.Hour))
	const limit, window = 5, 2 * time.Second
	url := e.gateway + "/w"

	var accepted []result
	for i := range limit {
		r := mustCall(t, url, key)
		if r.status != http.StatusOK {
			t.Fatalf("request %d: status %d", i, r.status)
		}
		checkRateHeaders(t, r, limit, 2, int64(limit-1-i))
		accepted = append(accepted, r)
	}
	checkLimited(t, mustCall(t, url, key), limit, 2)

	// Poll until quota returns: between one window and one window plus a
	// sub-bucket (2 s / 12) after the first accepted request.
	first := accepted[0].start
	for {
		r := mustCall(t, url, key)
		if r.status == http.StatusOK {
			checkRateHeaders(t, r, limit, 2, -1)
			accepted = append(accepted, r)
			if back := r.start.Add(r.dur).Sub(first); back < window {
				t.Fatalf("quota returned %v after the first request, before one window", back)
			}
			t.Logf("quota returned %v after the first accepted request", r.start.Sub(first))
			break
		}
		checkLimited(t, r, limit, 2)
		if time.Since(first) > window+window/12+time.Second {
			t.Fatal("quota did not return within one window plus a sub-bucket and 1 s")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A steady stream for 2.75 windows keeps getting quota back.
	streamStart := len(accepted)
	for end := time.Now().Add(5500 * time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		r := mustCall(t, url, key)
		switch r.status {
		case http.StatusOK:
			checkRateHeaders(t, r, limit, 2, -1)
			accepted = append(accepted, r)
		default:
			checkLimited(t, r, limit, 2)
		}
	}
	if got := len(accepted) - streamStart; got < 2*limit {
		t.Fatalf("only %d accepted in 5.5 s of steady traffic with %d per 2 s", got, limit)
	}
	// Requests i … j whose server-side decisions certainly fell within less
	// than one window (j's answer arrived less than a window after i was
	// sent) must number at most the limit.
	for i := range accepted {
		n := 0
		for j := i; j < len(accepted) && accepted[j].start.Add(accepted[j].dur).Sub(accepted[i].start) < window; j++ {
			n++
		}
		if n > limit {
			t.Fatalf("%d requests accepted within one window starting at request %d", n, i)
		}
	}
	if calls, _ := up.snapshot(); calls != len(accepted) {
		t.Fatalf("upstream called %d times for %d accepted requests", calls, len(accepted))
	}
	t.Logf("%d accepted in %v", len(accepted), time.Since(first).Round(time.Millisecond))
}

const policyCaddyfile = `{
	admin {admin}
	%s
}
http://127.0.0.1:{gw} {
	handle /a/* {
		keygate {
			identity_headers all
			rate_limit_headers both
			tenant acme
			limit 3
		}
		reverse_proxy {up}
	}
	handle /b/* {
		keygate {
			identity_headers all
			rate_limit_headers both
			tenant acme
			limit 5
		}
		reverse_proxy {up}
	}
	handle /capped/* {
		keygate {
			identity_headers all
			rate_limit_headers both
			tenant acme
			limit 3
			max_limit 4
		}
		reverse_proxy {up}
	}
	handle /other/* {
		keygate {
			identity_headers all
			rate_limit_headers both
			tenant other
			limit 3
		}
		reverse_proxy {up}
	}
}
http://127.0.0.1:{api} {
	keygate_admin
}
`

// TestRateLimitPolicy checks the effective limit and the headers: route
// default, per-user override, max_limit ceiling, one counter per user and
// tenant shared by the tenant's routes, separate counters per tenant,
// rejected requests not counted, requestLimit changes applied on the next
// request, and no rate-limit fields on 401s.
func TestRateLimitPolicy(t *testing.T) {
	_, prefix := testredis.Client(t)
	opt := testredis.Options(t)
	up := newUpstream(t)
	e := startGateway(t, fmt.Sprintf(policyCaddyfile, redisGlobal(opt.Addr, prefix, "timeout 1s")), up, testcaddy.Options{})
	e.bootstrap()
	e.api(http.MethodPost, "/v1/tenants", map[string]any{"id": "other", "name": "Other"}, http.StatusCreated)

	u1, _, k1 := e.newUserKey("acme", "u1", time.Now().Add(time.Hour))
	_, k1other := e.addTenantKey(u1, "other")
	u2, _, k2 := e.newUserKey("acme", "u2", time.Now().Add(time.Hour))
	e.setRequestLimit(u2, 6)
	u3, _, k3 := e.newUserKey("acme", "u3", time.Now().Add(time.Hour))
	e.setRequestLimit(u3, 10)

	ok := 0
	expectOK := func(path, key string, limit, remaining int64) {
		t.Helper()
		r := mustCall(t, e.gateway+path, key)
		if r.status != http.StatusOK {
			t.Fatalf("%s: status %d, want 200: %s", path, r.status, r.body)
		}
		checkRateHeaders(t, r, limit, 120, remaining)
		ok++
	}
	expectLimited := func(path, key string, limit int64) {
		t.Helper()
		checkLimited(t, mustCall(t, e.gateway+path, key), limit, 120)
	}

	// Unauthenticated answers carry no rate-limit fields.
	for _, key := range []string{"", "kg_aaaaaaaaaaaaaaaa_" + strings.Repeat("b", 52), k1[:len(k1)-4] + "zzzz"} {
		r := mustCall(t, e.gateway+"/a/x", key)
		if r.status != http.StatusUnauthorized {
			t.Fatalf("bad key: status %d", r.status)
		}
		noRateHeaders(t, r)
	}

	// Route default: 3, then 429s, which do not count.
	for i := range int64(3) {
		expectOK("/a/x", k1, 3, 2-i)
	}
	for range 5 {
		expectLimited("/a/x", k1, 3)
	}
	// Another route of the tenant shares the counter and decides against
	// its own limit: 5 - 3 used = 2 left, so the five 429s cost nothing.
	expectOK("/b/x", k1, 5, 1)
	expectOK("/b/x", k1, 5, 0)
	expectLimited("/b/x", k1, 5)
	expectLimited("/a/x", k1, 3)

	// Another tenant has its own counter for the same user.
	for i := range int64(3) {
		expectOK("/other/x", k1other, 3, 2-i)
	}
	expectLimited("/other/x", k1other, 3)

	// A user's requestLimit beats the route's default.
	for i := range int64(6) {
		expectOK("/a/x", k2, 6, 5-i)
	}
	expectLimited("/a/x", k2, 6)

	// max_limit caps a user's requestLimit (10 → 4) but does not lift the
	// route default of a user without one.
	for i := range int64(4) {
		expectOK("/capped/x", k3, 4, 3-i)
	}
	expectLimited("/capped/x", k3, 4)
	expectLimited("/capped/x", k1, 3)

	// Raising u1's requestLimit to 8 applies to the next request (u1 has
	// used 5 in acme): allow the change notification a moment to arrive.
	e.setRequestLimit(u1, 8)
	polls := 0
	for deadline := time.Now().Add(time.Second); ; polls++ {
		r := mustCall(t, e.gateway+"/a/x", k1)
		if r.status == http.StatusOK {
			checkRateHeaders(t, r, 8, 120, 2)
			ok++
			break
		}
		checkLimited(t, r, 3, 120)
		if time.Now().After(deadline) {
			t.Fatal("raised requestLimit not applied within 1s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("raised requestLimit applied after %d refused requests", polls)
	// Back to 0: the route default applies again; lowering u3 to 2 too.
	e.setRequestLimit(u1, 0)
	e.setRequestLimit(u3, 2)
	waitLimit := func(path, key string, limit int64) {
		t.Helper()
		for deadline := time.Now().Add(time.Second); ; {
			r := mustCall(t, e.gateway+path, key)
			if r.status == http.StatusTooManyRequests && r.header.Get("X-RateLimit-Limit") == strconv.FormatInt(limit, 10) {
				checkLimited(t, r, limit, 120)
				return
			}
			if r.status != http.StatusTooManyRequests || time.Now().After(deadline) {
				t.Fatalf("%s: status %d, X-RateLimit-Limit %q; want 429 with limit %d", path, r.status, r.header.Get("X-RateLimit-Limit"), limit)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitLimit("/a/x", k1, 3)
	waitLimit("/capped/x", k3, 2)

	if calls, _ := up.snapshot(); calls != ok {
		t.Fatalf("upstream called %d times for %d accepted requests", calls, ok)
	}
}

const faultCaddyfile = `{
	admin {admin}
	%s
}
http://127.0.0.1:{gw} {
	handle /closed/* {
		keygate {
			identity_headers all
			rate_limit_headers both
			tenant acme
			limit 1000
		}
		reverse_proxy {up}
	}
	handle /open/* {
		keygate {
			identity_headers all
			rate_limit_headers both
			tenant acme
			limit 1000
			on_store_error fail_open
		}
		reverse_proxy {up}
	}
}
http://127.0.0.1:{api} {
	keygate_admin
}
`

// storeDeadline is the default Redis call timeout; answerBound is what a
// request may take while Redis is down or paused: the deadline plus a
// margin for the key lookups, the breaker and a loaded test machine.
// cacheSurvivesOutage enables the check that a fail_open route keeps
// serving keys it has cached while Redis is down (issue 6): such routes use
// the resolver's stale-if-error lookups.
const cacheSurvivesOutage = true

const (
	storeDeadline = 50 * time.Millisecond
	answerBound   = storeDeadline + 450*time.Millisecond
	// pausedBound is the documented bound while Redis accepts connections
	// but answers nothing (README "Timeouts"): a request may wait out the
	// batching queue (1 s) and one retry (500 ms) before its round trip;
	// plus the same margin.
	pausedBound = 1500*time.Millisecond + storeDeadline + 450*time.Millisecond
)

// load sends requests with key from workers goroutines, alternating
// between the paths, for d, and returns the answers by path.
func load(t *testing.T, base, key string, paths []string, workers int, d time.Duration) map[string][]result {
	t.Helper()
	var mu sync.Mutex
	out := make(map[string][]result)
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; time.Now().Before(end); i++ {
				p := paths[i%len(paths)]
				r := call(base+p, key)
				mu.Lock()
				out[p] = append(out[p], r)
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	for p, rs := range out {
		for _, r := range rs {
			if r.err != nil {
				t.Fatalf("%s: %v after %v", p, r.err, r.dur)
			}
		}
	}
	return out
}

// summarize counts statuses and the slowest answer.
func summarize(rs []result) (map[int]int, time.Duration) {
	counts := make(map[int]int)
	var slowest time.Duration
	for _, r := range rs {
		counts[r.status]++
		slowest = max(slowest, r.dur)
	}
	return counts, slowest
}

// checkUnavailable checks a fail-closed answer while the store is down.
func checkUnavailable(t *testing.T, path string, r result, bound time.Duration) {
	t.Helper()
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("%s: status %d while Redis is down, want 503: %s", path, r.status, r.body)
	}
	if r.header.Get("Retry-After") == "" || r.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("%s: 503 without Retry-After or problem+json: %v", path, r.header)
	}
	if r.dur > bound {
		t.Fatalf("%s: 503 took %v, more than %v", path, r.dur, bound)
	}
}

// waitStatus polls path until it answers want.
func waitStatus(t *testing.T, url, key string, want int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		r := call(url, key)
		if r.err == nil && r.status == want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: still %d (%v) after %v, want %d", url, r.status, r.err, within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRateLimitRedisFailure stops and pauses a private Redis under load:
// fail_closed routes answer 503 with Retry-After within the store deadline
// plus a margin, fail_open routes keep serving, nothing is answered 401 or
// 429 because of Redis, and limiting resumes by itself once Redis is back.
// checkClosedDuringOutage checks the answers of a fail_closed route while
// Redis cannot be reached: 503, except for what the node could still
// decide without Redis, from the quota lease it held when the outage began
// (at most two leases, the current one and its renewal, of at most
// module.DefaultLease slots each, for the one user).
func checkClosedDuringOutage(t *testing.T, res []result, bound time.Duration) {
	t.Helper()
	leased := 0
	for _, r := range res {
		if r.status == http.StatusOK {
			leased++
			checkRateHeaders(t, r, 1000, 120, -1)
			continue
		}
		checkUnavailable(t, "/closed/x", r, bound)
	}
	if leased > 2*module.DefaultLease || leased == len(res) {
		t.Fatalf("/closed/x: %d of %d requests served while Redis was unreachable; want at most two leases (%d each), then 503s",
			leased, len(res), module.DefaultLease)
	}
}

func TestRateLimitRedisFailure(t *testing.T) {
	redisSrv := testredis.StartServer(t)
	rc := redisSrv.Client()
	up := newUpstream(t)
	e := startGateway(t, fmt.Sprintf(faultCaddyfile, redisGlobal(redisSrv.Addr, testredis.Prefix(t), "")), up, testcaddy.Options{})
	e.bootstrap()
	_, _, key := e.newUserKey("acme", "busy", time.Now().Add(time.Hour))
	limitedUser, _, limitedKey := e.newUserKey("acme", "limited", time.Now().Add(time.Hour))
	e.setRequestLimit(limitedUser, 3)
	paths := []string{"/closed/x", "/open/x"}
	for _, p := range paths {
		if r := mustCall(t, e.gateway+p, key); r.status != http.StatusOK {
			t.Fatalf("%s: status %d before the outage", p, r.status)
		}
	}
	// The private server keeps no data across a restart unless told to.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rc.Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	t.Run("stopped", func(t *testing.T) {
		redisSrv.Stop()
		before, _ := up.snapshot()
		res := load(t, e.gateway, key, paths, 8, 1500*time.Millisecond)
		for _, p := range paths {
			counts, slowest := summarize(res[p])
			t.Logf("%s while Redis is stopped: %v, slowest %v", p, counts, slowest)
		}
		checkClosedDuringOutage(t, res["/closed/x"], answerBound)
		// fail_open: never 401 or 429 because Redis is down, and answered in
		// time; whatever was allowed reached the upstream.
		served := 0
		for _, r := range res["/open/x"] {
			switch {
			case r.status == http.StatusOK:
				served++
				checkRateHeaders(t, r, 1000, 120, -1)
			case r.status != http.StatusServiceUnavailable:
				t.Fatalf("/open/x: status %d while Redis is stopped: %s", r.status, r.body)
			}
			if r.dur > answerBound {
				t.Fatalf("/open/x: answer took %v while Redis is stopped", r.dur)
			}
		}
		after, _ := up.snapshot()
		if after-before != served {
			t.Errorf("upstream called %d times for %d fail-open requests served", after-before, served)
		}
		t.Run("fail_open serves warm keys", func(t *testing.T) {
			if !cacheSurvivesOutage {
				t.Skip("known issue: keys.Resolver flushes the key cache when the Redis subscription drops, " +
					"so a warm key cannot authenticate during the outage and fail_open answers 503")
			}
			if served != len(res["/open/x"]) {
				t.Errorf("/open/x: %d of %d answered 200 while Redis is stopped", served, len(res["/open/x"]))
			}
		})
	})

	t.Run("restarted", func(t *testing.T) {
		redisSrv.Start()
		took := waitStatus(t, e.gateway+"/closed/x", key, http.StatusOK, 10*time.Second)
		t.Logf("fail_closed route serving again %v after the restart", took)
		for i := range int64(3) {
			r := mustCall(t, e.gateway+"/closed/x", limitedKey)
			if r.status != http.StatusOK {
				t.Fatalf("limited user request %d: status %d after restart", i, r.status)
			}
			checkRateHeaders(t, r, 3, 120, 2-i)
		}
		checkLimited(t, mustCall(t, e.gateway+"/closed/x", limitedKey), 3, 120)
		checkLimited(t, mustCall(t, e.gateway+"/open/x", limitedKey), 3, 120)
	})

	t.Run("paused", func(t *testing.T) {
		for _, p := range paths {
			waitStatus(t, e.gateway+p, key, http.StatusOK, 5*time.Second)
		}
		pauseCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := rc.Do(pauseCtx, "CLIENT", "PAUSE", "3000").Err(); err != nil {
			t.Fatal(err)
		}
		paused := time.Now()
		res := load(t, e.gateway, key, paths, 4, 1500*time.Millisecond)
		for _, p := range paths {
			counts, slowest := summarize(res[p])
			t.Logf("%s while Redis is paused: %v, slowest %v", p, counts, slowest)
		}
		checkClosedDuringOutage(t, res["/closed/x"], pausedBound)
		degraded := 0
		for _, r := range res["/open/x"] {
			switch r.status {
			case http.StatusOK:
				degraded++
				checkRateHeaders(t, r, 1000, 120, -1)
			case http.StatusServiceUnavailable:
			default:
				t.Fatalf("/open/x: status %d while Redis is paused", r.status)
			}
			if r.dur > pausedBound {
				t.Fatalf("/open/x: answer took %v while Redis is paused", r.dur)
			}
		}
		// While the key is still cached, the limiter's fallback decides.
		if degraded == 0 {
			t.Error("/open/x: no request served while Redis was paused and the key cached")
		}
		waitStatus(t, e.gateway+"/closed/x", key, http.StatusOK, 10*time.Second)
		t.Logf("fail_closed route serving again %v after the pause began", time.Since(paused).Round(time.Millisecond))
	})
}

// TestRateLimitLeases runs a user's steady traffic through a gateway on
// Redis with quota leases: most requests are decided from the node's lease
// (the metric says so), every one still reaches the upstream with correct
// rate-limit headers, and Remaining never claims more than is left.
func TestRateLimitLeases(t *testing.T) {
	_, prefix := testredis.Client(t)
	opt := testredis.Options(t)
	up := newUpstream(t)
	global := "metrics\n\t" + redisGlobal(opt.Addr, prefix, "timeout 1s\n\t\t\tlease 32")
	const limit, window = 1000, 4 // sub-buckets of 1/3 s: leases form within 0.1 s
	e := startGateway(t, fmt.Sprintf(sharedRouteCaddyfile, global, fmt.Sprintf("limit %d %ds", limit, window)), up, testcaddy.Options{})
	e.bootstrap()
	_, _, key := e.newUserKey("acme", "steady", time.Now().Add(time.Hour))
	url := e.gateway + "/lease"

	m0 := scrapeMetrics(t, e.srv.AdminAddr)
	calls0, _ := up.snapshot()
	const n = 300
	prev := int64(limit)
	for i := range n {
		// Steady traffic over about two sub-buckets, not a burst: leases
		// are sized from what a quarter sub-bucket has seen.
		time.Sleep(2 * time.Millisecond)
		r := mustCall(t, url, key)
		if r.status != http.StatusOK {
			t.Fatalf("request %d: status %d", i, r.status)
		}
		remaining, _ := checkRateHeaders(t, r, limit, window, -1)
		// Exact but for the slots of at most one lease that expired unused
		// and whose give-back Redis has not applied yet.
		if exact := int64(limit - i - 1); remaining > exact || remaining < exact-32 || remaining >= prev {
			t.Fatalf("request %d: remaining %d after %d; want (%d-32 … %d]", i, remaining, prev, exact, exact)
		}
		prev = remaining
	}
	m1 := scrapeMetrics(t, e.srv.AdminAddr)
	leased := m1.samples["caddy_keygate_ratelimit_leased_total"] - m0.samples["caddy_keygate_ratelimit_leased_total"]
	allowed := m1.samples[`caddy_keygate_ratelimit_decisions_total{decision="allowed"}`] - m0.samples[`caddy_keygate_ratelimit_decisions_total{decision="allowed"}`]
	t.Logf("%v of %d allowed requests decided from a lease", leased, n)
	if allowed != n || leased < n/2 {
		t.Fatalf("allowed %v, leased %v of %d requests; want all allowed, most leased", allowed, leased, n)
	}
	if calls, _ := up.snapshot(); calls-calls0 != n {
		t.Fatalf("upstream called %d times for %d requests", calls-calls0, n)
	}
}
