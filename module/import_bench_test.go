package module

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/keys"
)

// BenchmarkHandlerImportedKey measures a warm request with an imported
// key (found by its hash: one HMAC and one map lookup more than a kg_ key's
// path, which BenchmarkHandlerAccessKey measures), and a kg_ key on a
// foreign_keys route (the same path as without the option).
func BenchmarkHandlerImportedKey(b *testing.B) {
	const imported = "Kk4RLVM9E8xWf7E0M9jIyWv8MXSMdDB2J"
	app, native := newBenchApp(b)
	res, err := app.shared.store.Import(context.Background(), keys.ImportBatch{Source: "kong", Tenant: "acme", Users: []keys.ImportUser{{
		Ref: "c", ExternalID: "c", User: keys.User{Name: "kong-svc"},
		Keys: []keys.ImportKey{{Ref: "k", Name: "k", Plaintext: imported, ExpiresAt: time.Now().Add(time.Hour)}},
	}}}, keys.ImportOptions{Hasher: app.hasher}, "test")
	if err != nil || res.Created != 2 {
		b.Fatal(res, err)
	}
	for _, tc := range []struct{ name, header, value, user string }{
		{"imported-apikey-header", "Apikey", imported, "kong-svc"},
		{"imported-bearer", "Authorization", "Bearer " + imported, "kong-svc"},
		{"native-on-foreign-route", "Authorization", "Bearer " + native, "svc"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := &Handler{Tenant: "acme", IdentityHeaders: []string{"all"}, KeyHeader: "apikey", ForeignKeys: true}
			if err := h.provision(app, zap.NewNop()); err != nil {
				b.Fatal(err)
			}
			next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
			repl := caddy.NewReplacer()
			req := httptest.NewRequest(http.MethodGet, "http://gw/api/x", nil)
			req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl))
			w := &discardWriter{h: make(http.Header)}
			req.Header = make(http.Header)
			val := []string{tc.value}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				clear(req.Header)
				req.Header[tc.header] = val
				clear(w.h)
				if err := h.ServeHTTP(w, req, next); err != nil {
					b.Fatal(err)
				}
				if req.Header.Get("X-Auth-User-Name") != tc.user {
					b.Fatal("request not authenticated")
				}
			}
		})
	}
}
