package module

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/keys"
)

// newBenchApp builds a file-store app with one tenant, one ACTIVE user with
// an ACTIVE permission, and returns it with the user's access key.
func newBenchApp(tb testing.TB) (*App, string) {
	tb.Helper()
	dir := tb.TempDir()
	app := &App{Store: &StoreConfig{Backend: "file", Path: filepath.Join(dir, "keygate.db")}, logger: zap.NewNop()}
	if err := app.setup(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = app.Cleanup() })
	ctx := context.Background()
	st := app.shared.store
	if _, err := st.CreateTenant(ctx, keys.Tenant{ID: "acme", Name: "Acme"}, "test"); err != nil {
		tb.Fatal(err)
	}
	u, err := st.CreateUser(ctx, keys.User{Name: "svc", Type: keys.UserService, Role: keys.RoleMember, PrimaryTenant: "acme"}, "test")
	if err != nil {
		tb.Fatal(err)
	}
	if _, _, err := st.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: "acme", Role: keys.RoleMember, Status: keys.PermissionActive}, "test"); err != nil {
		tb.Fatal(err)
	}
	plain, k := keys.NewAccessKey(app.hasher, u.ID, "acme", "bench", time.Now().Add(time.Hour))
	if _, err := st.CreateKey(ctx, k, "test"); err != nil {
		tb.Fatal(err)
	}
	return app, plain
}

type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkHandlerAccessKey measures the hot path of a warm access-key
// request: detect, cached lookups, constant-time hash check, permission,
// in-process limit, identity headers, next handler.
func BenchmarkHandlerAccessKey(b *testing.B) {
	for _, limited := range []bool{false, true} {
		name := "no-limit"
		if limited {
			name = "local-limit"
		}
		b.Run(name, func(b *testing.B) {
			app, key := newBenchApp(b)
			h := &Handler{Tenant: "acme", IdentityHeaders: []string{"all"}}
			if limited {
				h.Limit = 1 << 40
			}
			if err := h.provision(app, zap.NewNop()); err != nil {
				b.Fatal(err)
			}
			next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
			repl := caddy.NewReplacer()
			req := httptest.NewRequest(http.MethodGet, "http://gw/api/x", nil)
			req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl))
			w := &discardWriter{h: make(http.Header)}
			req.Header = make(http.Header)
			authz := []string{"Bearer " + key}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				clear(req.Header)
				req.Header["Authorization"] = authz
				clear(w.h)
				if err := h.ServeHTTP(w, req, next); err != nil {
					b.Fatal(err)
				}
				if req.Header.Get("X-Auth-User-Name") != "svc" {
					b.Fatal("request not authenticated")
				}
			}
		})
	}
}

// TestHandlerUnit checks the in-process path the benchmark measures.
func TestHandlerUnit(t *testing.T) {
	app, key := newBenchApp(t)
	h := &Handler{Tenant: "acme", IdentityHeaders: []string{"all"}, Limit: 2}
	if err := h.provision(app, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	var calls int
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { calls++; return nil })
	do := func(auth string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "http://gw/x", nil)
		req.Header.Set("Authorization", auth)
		req.Header.Set("X-Auth-User-Id", "spoofed")
		req.Header["X_auth_role"] = []string{"ADMIN"}
		req.Header["X-Auth_User_Name"] = []string{"spoofed"}
		rec := httptest.NewRecorder()
		if err := h.ServeHTTP(rec, req, next); err != nil {
			t.Fatal(err)
		}
		if rec.Code == 0 || rec.Code == http.StatusOK {
			if req.Header.Get("X-Auth-User-Id") == "spoofed" || req.Header.Get("Authorization") != "" {
				t.Fatalf("identity not replaced or credential forwarded: %v", req.Header)
			}
			if _, ok := req.Header["X_auth_role"]; ok {
				t.Fatalf("underscore spelling of an identity header forwarded: %v", req.Header)
			}
			if _, ok := req.Header["X-Auth_User_Name"]; ok {
				t.Fatalf("underscore spelling of an identity header forwarded: %v", req.Header)
			}
		}
		return rec
	}
	for i := 0; i < 2; i++ {
		if rec := do("Bearer " + key); rec.Code != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	rec := do("Bearer " + key)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("third request: %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	if rec := do("Bearer kg_x"); rec.Code != http.StatusUnauthorized {
		t.Fatalf("bad key: %d", rec.Code)
	}
	if calls != 2 {
		t.Fatalf("next called %d times, want 2", calls)
	}
}

// TestHandlerForeignKeyOfInactiveUser: a key of another tenant is 403 for
// an ACTIVE user, but 401 when the user is not ACTIVE (not a valid credential).
func TestHandlerForeignKeyOfInactiveUser(t *testing.T) {
	app, _ := newBenchApp(t)
	ctx := context.Background()
	st := app.shared.store
	if _, err := st.CreateTenant(ctx, keys.Tenant{ID: "other", Name: "Other"}, "test"); err != nil {
		t.Fatal(err)
	}
	u, err := st.CreateUser(ctx, keys.User{Name: "foreign", Type: keys.UserService, Role: keys.RoleMember, PrimaryTenant: "other"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: "other", Role: keys.RoleMember, Status: keys.PermissionActive}, "test"); err != nil {
		t.Fatal(err)
	}
	plain, k := keys.NewAccessKey(app.hasher, u.ID, "other", "k", time.Now().Add(time.Hour))
	if _, err := st.CreateKey(ctx, k, "test"); err != nil {
		t.Fatal(err)
	}
	h := &Handler{Tenant: "acme", IdentityHeaders: []string{"all"}}
	if err := h.provision(app, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { t.Fatal("next called"); return nil })
	call := func() int {
		req := httptest.NewRequest(http.MethodGet, "http://gw/x", nil)
		req.Header.Set("X-Api-Key", plain)
		rec := httptest.NewRecorder()
		if err := h.ServeHTTP(rec, req, next); err != nil {
			t.Fatal(err)
		}
		return rec.Code
	}
	if got := call(); got != http.StatusForbidden {
		t.Fatalf("foreign key of an active user: %d, want 403", got)
	}
	if _, err := st.UpdateUser(ctx, u.ID, 0, func(u *keys.User) error { u.Status = keys.UserInactive; return nil }, "test"); err != nil {
		t.Fatal(err)
	}
	app.resolver.Invalidate(keys.Invalidation{UserID: u.ID})
	if got := call(); got != http.StatusUnauthorized {
		t.Fatalf("foreign key of an inactive user: %d, want 401", got)
	}
}

// BenchmarkHandlerAccessKeyRedis is the hot path on the Redis store with
// the Redis limiter (batched), in parallel: warm key cache, one limiter
// call per request. CPU per op here is keygate's own cost, without the
// reverse proxy.
func BenchmarkHandlerAccessKeyRedis(b *testing.B) {
	_, prefix := testredis.Client(b)
	opt := testredis.Options(b)
	app := &App{Store: &StoreConfig{Backend: "redis", Addresses: []string{opt.Addr}, Prefix: prefix},
		MasterKey: keys.NewMasterKey(), logger: zap.NewNop()}
	if err := app.setup(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = app.Cleanup() })
	ctx := context.Background()
	st := app.shared.store
	if _, err := st.CreateTenant(ctx, keys.Tenant{ID: "acme", Name: "Acme"}, "test"); err != nil {
		b.Fatal(err)
	}
	const users = 64
	plain := make([]string, users)
	for i := range plain {
		u, err := st.CreateUser(ctx, keys.User{Name: fmt.Sprintf("svc%d", i), Type: keys.UserService, Role: keys.RoleMember, PrimaryTenant: "acme"}, "test")
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := st.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: "acme", Role: keys.RoleMember, Status: keys.PermissionActive}, "test"); err != nil {
			b.Fatal(err)
		}
		var k keys.Key
		plain[i], k = keys.NewAccessKey(app.hasher, u.ID, "acme", "bench", time.Now().Add(time.Hour))
		if _, err := st.CreateKey(ctx, k, "test"); err != nil {
			b.Fatal(err)
		}
	}
	h := &Handler{Tenant: "acme", IdentityHeaders: []string{"all"}, Limit: 1 << 40}
	if err := h.provision(app, zap.NewNop()); err != nil {
		b.Fatal(err)
	}
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	var n atomic.Int64
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		repl := caddy.NewReplacer()
		req := httptest.NewRequest(http.MethodGet, "http://gw/api/x", nil)
		req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl))
		w := &discardWriter{h: make(http.Header)}
		req.Header = make(http.Header)
		for pb.Next() {
			i := n.Add(1)
			clear(req.Header)
			req.Header["Authorization"] = []string{"Bearer " + plain[i%users]}
			clear(w.h)
			if err := h.ServeHTTP(w, req, next); err != nil {
				b.Fatal(err)
			}
			if req.Header.Get("X-Auth-User-Name") == "" {
				b.Fatal("request not authenticated")
			}
		}
	})
}
