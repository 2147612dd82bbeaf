package module

import (
	"context"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// clientRequest is a request as Caddy hands it to handlers, with the
// client_ip variable set.
func clientRequest(ip string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, "http://gw/x", nil)
	vars := map[string]any{caddyhttp.ClientIPVarKey: ip}
	return req.WithContext(context.WithValue(req.Context(), caddyhttp.VarsCtxKey, vars))
}

func newThrottleHandler(tb testing.TB, failures *ThrottleConfig) *Handler {
	tb.Helper()
	app, _ := newBenchApp(tb)
	app.throttles.release()
	app.AuthFailures = failures
	if err := app.setupThrottles(); err != nil {
		tb.Fatal(err)
	}
	h := &Handler{Tenant: "acme"}
	if err := h.provision(app, zap.NewNop()); err != nil {
		tb.Fatal(err)
	}
	return h
}

// TestThrottleCountsGuessingOnly: 401 and 400 use the failure budget;
// 403, 413, 429 and 503 do not.
func TestThrottleCountsGuessingOnly(t *testing.T) {
	h := newThrottleHandler(t, &ThrottleConfig{Rate: "1/1h", Burst: 2, Size: 64})
	req := clientRequest("192.0.2.1")
	for _, status := range []int{http.StatusForbidden, http.StatusRequestEntityTooLarge, http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		for range 5 {
			h.countFailure(req, status)
		}
	}
	if n := h.app.throttles.failures.Len(); n != 0 {
		t.Fatalf("%d clients charged for 403/413/429/503", n)
	}
	h.countFailure(req, http.StatusUnauthorized)
	if h.throttled(httptest.NewRecorder(), req) {
		t.Fatal("throttled after one failure of two")
	}
	h.countFailure(req, http.StatusBadRequest)
	rec := httptest.NewRecorder()
	if !h.throttled(rec, req) {
		t.Fatal("not throttled after 401 and 400 with burst 2")
	}
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "3600" ||
		rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("throttled answer: %d %v", rec.Code, rec.Header())
	}
	// Without the client_ip variable (not served by Caddy's HTTP app), the
	// connection's address is the client.
	bare := httptest.NewRequest(http.MethodGet, "http://gw/x", nil)
	bare.RemoteAddr = "192.0.2.1:4321"
	if !h.throttled(httptest.NewRecorder(), bare) {
		t.Fatal("the remote address was not used without client_ip")
	}
}

// TestThrottleOff: `off` builds no throttle; nothing is counted.
func TestThrottleOff(t *testing.T) {
	h := newThrottleHandler(t, &ThrottleConfig{Off: true})
	if h.app.throttles.failures != nil {
		t.Fatal("auth_failures off built a throttle")
	}
	req := clientRequest("192.0.2.1")
	for range 200 {
		h.countFailure(req, http.StatusUnauthorized)
	}
	if h.throttled(httptest.NewRecorder(), req) {
		t.Fatal("throttled with auth_failures off")
	}
}

// TestThrottleSharedAcrossReload: a config with the same settings takes
// the same throttle, so a reload does not hand a guesser a fresh burst.
func TestThrottleSharedAcrossReload(t *testing.T) {
	cfg := &ThrottleConfig{Rate: "7/1h", Burst: 3}
	h1 := newThrottleHandler(t, cfg)
	h2 := newThrottleHandler(t, cfg)
	if h1.app.throttles.failures != h2.app.throttles.failures {
		t.Fatal("two configs with the same auth_failures do not share the throttle")
	}
	h3 := newThrottleHandler(t, &ThrottleConfig{Rate: "7/1h", Burst: 4})
	if h3.app.throttles.failures == h1.app.throttles.failures {
		t.Fatal("a different burst shares the throttle")
	}
	bad := &App{AuthFailures: &ThrottleConfig{Rate: "often", Burst: 1}}
	if err := bad.setupThrottles(); err == nil || bad.throttles != nil {
		t.Fatalf("a bad rate: %v", err)
	}
}

// TestThrottleHotPathAllocs: the gateway's check allocates nothing, both
// while no client has failed and while many have.
func TestThrottleHotPathAllocs(t *testing.T) {
	h := newThrottleHandler(t, nil)
	req := clientRequest("198.51.100.7")
	w := httptest.NewRecorder()
	if n := testing.AllocsPerRun(1000, func() { h.throttled(w, req) }); n != 0 {
		t.Fatalf("throttled (no failures) allocates %v times", n)
	}
	fillThrottle(h, 1000)
	if n := testing.AllocsPerRun(1000, func() { h.throttled(w, req) }); n != 0 {
		t.Fatalf("throttled (1000 failing clients) allocates %v times", n)
	}
}

// fillThrottle records a failure for n clients of 10.0.0.0/8.
func fillThrottle(h *Handler, n int) {
	now := time.Now()
	for i := range n {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], 10<<24|uint32(i))
		h.app.throttles.failures.Fail(netip.AddrFrom4(b), now)
	}
}

// BenchmarkThrottleGate is the gateway's check per request for a client
// that never failed: while no client has failed, and among 10000 that have.
func BenchmarkThrottleGate(b *testing.B) {
	h := newThrottleHandler(b, nil)
	req := clientRequest("198.51.100.7")
	w := httptest.NewRecorder()
	b.Run("no-failures", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h.throttled(w, req)
		}
	})
	fillThrottle(h, 10_000)
	b.Run("10000-failing", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h.throttled(w, req)
		}
	})
}
