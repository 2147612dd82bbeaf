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

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keys"
)

// BenchmarkHandlerAccessToken measures a warm access-token request through
// the gateway handler (detect, local JWT verification, cached key and user
// checks, identity headers) and asserts it makes no store round trip.
func BenchmarkHandlerAccessToken(b *testing.B) {
	for _, alg := range []string{auth.AlgRS256, auth.AlgEdDSA} {
		b.Run(alg, func(b *testing.B) {
			app, key := newBenchApp(b)
			tk, err := newTokenKeys(&TokenConfig{Algorithm: alg}, app.shared.store, app.sealer, zap.NewNop())
			if err != nil {
				b.Fatal(err)
			}
			app.tokens = tk
			now := time.Now()
			sk, err := tk.signingKey(context.Background(), now)
			if err != nil {
				b.Fatal(err)
			}
			keyID, _ := keys.ParseAccessKey(key)
			k, err := app.shared.store.GetKey(context.Background(), keyID)
			if err != nil {
				b.Fatal(err)
			}
			tok, err := tk.issuer.Issue(sk, auth.TokenClaims{Subject: k.UserID, KeyID: keyID, Tenant: "acme"}, now)
			if err != nil {
				b.Fatal(err)
			}
			h := &Handler{Tenant: "acme"}
			if err := h.provision(app, zap.NewNop()); err != nil {
				b.Fatal(err)
			}
			next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
			req := httptest.NewRequest(http.MethodGet, "http://gw/api/x", nil)
			req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
			w := &discardWriter{h: make(http.Header)}
			req.Header = make(http.Header)
			authz := []string{"Bearer " + tok}
			serve := func() {
				clear(req.Header)
				req.Header["Authorization"] = authz
				clear(w.h)
				if err := h.ServeHTTP(w, req, next); err != nil {
					b.Fatal(err)
				}
				if req.Header.Get("X-Auth-Scheme") != "access_token" {
					b.Fatal("request not authenticated with the access token")
				}
			}
			serve() // warm the cache
			_, missesBefore := app.resolver.Stats()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				serve()
			}
			b.StopTimer()
			if _, misses := app.resolver.Stats(); misses != missesBefore {
				b.Fatalf("%d store lookups on a warm cache", misses-missesBefore)
			}
		})
	}
}
