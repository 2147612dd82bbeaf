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
			// newBenchApp's user is a SERVICE user, which may use access keys
			// only; a TECHNICAL user may also use access tokens.
			if _, err := app.shared.store.UpdateUser(context.Background(), k.UserID, 0, func(u *keys.User) error {
				u.Type = keys.UserTechnical
				return nil
			}, "test"); err != nil {
				b.Fatal(err)
			}
			tok, err := tk.issuer.Issue(sk, auth.TokenClaims{Subject: k.UserID, KeyID: keyID, Tenant: "acme"}, now)
			if err != nil {
				b.Fatal(err)
			}
			h := &Handler{Tenant: "acme", IdentityHeaders: []string{"all"}}
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

// TestVerifiedTokenCache: a cached verification is used only while the
// token is unexpired and its signing key live; a tampered token is verified
// in full and refused.
func TestVerifiedTokenCache(t *testing.T) {
	app, _ := newBenchApp(t)
	tk, err := newTokenKeys(&TokenConfig{Algorithm: auth.AlgEdDSA, Lifetime: caddy.Duration(time.Minute)}, app.shared.store, app.sealer, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	sk, err := tk.signingKey(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tk.issuer.Issue(sk, auth.TokenClaims{Subject: "u1", KeyID: "k1", Tenant: "acme"}, now)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if vt, err := tk.verify(tok, now); err != nil || vt.Subject != "u1" || vt.SigningKey != sk.ID {
			t.Fatalf("verify %d: %+v %v", i, vt, err)
		}
	}
	if len(tk.verified.m) != 1 {
		t.Fatalf("cache holds %d tokens, want 1", len(tk.verified.m))
	}
	// Past exp (plus leeway): refused although cached.
	if _, err := tk.verify(tok, now.Add(2*time.Minute)); err == nil {
		t.Fatal("an expired cached token was accepted")
	}
	// A tampered token is not the cached one.
	tampered := tok[:len(tok)-2] + "AA"
	if tampered == tok {
		tampered = tok[:len(tok)-2] + "BB"
	}
	if _, err := tk.verify(tampered, now); err == nil {
		t.Fatal("a tampered token was accepted")
	}
	// Its signing key retired: refused although cached.
	set := tk.set.Load()
	tk.set.Store(&tokenKeySet{jwks: set.jwks})
	if _, err := tk.verify(tok, now); err == nil {
		t.Fatal("a cached token of a retired key was accepted")
	}
}
