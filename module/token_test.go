package module_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/keygate/keygate/internal/testcaddy"
)

const tokenPath = "/services/mtm/v1/oauth2/token"

// startTokenEnv runs keygate with the token endpoint, the JWKS, a gateway
// route for tenant acme (/…) and one for tenant other (/other/…).
func startTokenEnv(t *testing.T, tokenOpts string) *env {
	t.Helper()
	up := newUpstream(t)
	gw, ad := testcaddy.FreePort(t), testcaddy.FreePort(t)
	e := &env{t: t, up: up,
		gateway:  fmt.Sprintf("http://127.0.0.1:%d", gw),
		adminURL: fmt.Sprintf("http://127.0.0.1:%d", ad),
	}
	cf := fmt.Sprintf(`{
	admin {admin}
	keygate {
		token {
			%s
		}
	}
}
http://127.0.0.1:%d {
	handle %s {
		keygate_token
	}
	handle /.well-known/jwks.json {
		keygate_jwks
	}
	handle /other/* {
		keygate {
			identity_headers all
			rate_limit_headers both
			tenant other
		}
		reverse_proxy %s
	}
	handle {
		keygate {
			identity_headers all
			rate_limit_headers both
			tenant acme
		}
		reverse_proxy %s
	}
}
http://127.0.0.1:%d {
	keygate_admin
}
`, tokenOpts, gw, tokenPath, up.addr(), up.addr(), ad)
	e.srv = testcaddy.Start(t, cf, testcaddy.Options{Wait: []string{e.gateway, e.adminURL}})
	e.bootstrap()
	return e
}

// postToken sends a raw token request.
func (e *env) postToken(form url.Values, basicUser, basicPass string) (*http.Response, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.gateway+tokenPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicUser != "" || basicPass != "" {
		req.SetBasicAuth(basicUser, basicPass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &body); err != nil {
		e.t.Fatalf("token response not JSON (%d): %s", resp.StatusCode, data)
	}
	return resp, body
}

// fetchToken exchanges key for an access token with curl's -u form.
func (e *env) fetchToken(key string) string {
	e.t.Helper()
	resp, body := e.postToken(url.Values{"grant_type": {"client_credentials"}}, "apitoken", key)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("token: %d %v", resp.StatusCode, body)
	}
	return body["access_token"].(string)
}

func (e *env) bearer(path, tok string) int {
	e.t.Helper()
	resp := e.get(path, map[string]string{"Authorization": "Bearer " + tok})
	resp.Body.Close()
	return resp.StatusCode
}

func (e *env) jwks() []map[string]any {
	e.t.Helper()
	resp, err := http.Get(e.gateway + "/.well-known/jwks.json")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" ||
		!strings.Contains(resp.Header.Get("Cache-Control"), "max-age=") {
		e.t.Fatalf("jwks: %d %v", resp.StatusCode, resp.Header)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		e.t.Fatal(err)
	}
	return set.Keys
}

func jwtParts(t *testing.T, tok string) (hdr, claims map[string]any, parts []string) {
	t.Helper()
	parts = strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %d parts", len(parts))
	}
	for i, dst := range []*map[string]any{&hdr, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil || json.Unmarshal(raw, dst) != nil {
			t.Fatalf("part %d: %v", i, err)
		}
	}
	return hdr, claims, parts
}

func enc(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

var tokenBodyRE = regexp.MustCompile(`^\{"access_token":"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+","token_type":"bearer","expires_in":3599,"scope":"","expired":false\}$`)

func TestTokenOAuth2ClientCredentials(t *testing.T) {
	e := startTokenEnv(t, "audience leanix")
	userID, keyID, key := e.newUserKey("acme", "integration", time.Now().Add(time.Hour))

	// The wire format, as curl -u apitoken:$KEY -d grant_type=client_credentials sees it.
	req, _ := http.NewRequest(http.MethodPost, e.gateway+tokenPath, strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("apitoken", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" ||
		resp.Header.Get("Cache-Control") != "no-store" || !tokenBodyRE.Match(raw) {
		t.Fatalf("token response %d %v %s", resp.StatusCode, resp.Header, raw)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.Unmarshal(raw, &tr)
	hdr, claims, _ := jwtParts(t, tr.AccessToken)
	if hdr["alg"] != "RS256" || hdr["typ"] != "JWT" || hdr["kid"] == "" {
		t.Errorf("header %v", hdr)
	}
	if claims["iss"] != "keygate" || claims["sub"] != userID || claims["aud"] != "leanix" ||
		claims["keyId"] != keyID || claims["tenant"] != "acme" || claims["jti"] == "" ||
		claims["exp"].(float64)-claims["iat"].(float64) != 3600 {
		t.Errorf("claims %v", claims)
	}
	p, _ := claims["principal"].(map[string]any)
	perm, _ := p["permission"].(map[string]any)
	if p["id"] != userID || p["username"] != "integration" || p["role"] != "MEMBER" ||
		perm["workspaceId"] != "acme" || perm["workspaceName"] != "acme" || perm["role"] != "MEMBER" {
		t.Errorf("principal %v", p)
	}
	// The JWKS lists the key, RSA with n and e.
	keysList := e.jwks()
	if len(keysList) != 1 || keysList[0]["kid"] != hdr["kid"] || keysList[0]["kty"] != "RSA" ||
		keysList[0]["alg"] != "RS256" || keysList[0]["use"] != "sig" || keysList[0]["e"] != "AQAB" {
		t.Fatalf("jwks %v", keysList)
	}

	// An unmodified OAuth2 client, both ways of sending client credentials.
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		t.Run(fmt.Sprint("style", style), func(t *testing.T) {
			cfg := clientcredentials.Config{
				ClientID: "apitoken", ClientSecret: key, TokenURL: e.gateway + tokenPath, AuthStyle: style,
			}
			ctx := context.Background()
			tok, err := cfg.Token(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken == "" || !strings.EqualFold(tok.TokenType, "bearer") || time.Until(tok.Expiry) < 59*time.Minute {
				t.Fatalf("token %+v", tok)
			}
			before, _ := e.up.snapshot()
			resp, err := cfg.Client(ctx).Get(e.gateway + "/orders?x=1")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != "hello integration" {
				t.Fatalf("gateway: %d %s", resp.StatusCode, body)
			}
			calls, h := e.up.snapshot()
			if calls != before+1 {
				t.Fatalf("upstream calls %d → %d", before, calls)
			}
			want := map[string]string{
				"X-Auth-User-Id": userID, "X-Auth-User-Name": "integration", "X-Auth-Tenant": "acme",
				"X-Auth-Role": "MEMBER", "X-Auth-Scheme": "access_token", "X-Auth-Key-Id": keyID, "X-Auth-User-Type": "TECHNICAL",
			}
			for k, v := range want {
				if got := h.Get(k); got != v {
					t.Errorf("upstream %s = %q, want %q", k, got, v)
				}
			}
			if h.Get("Authorization") != "" {
				t.Error("access token forwarded upstream")
			}
		})
	}
}

func TestTokenRejections(t *testing.T) {
	e := startTokenEnv(t, "")
	userID, keyID, key := e.newUserKey("acme", "svc", time.Now().Add(time.Hour))
	_, _, shortKey := e.newUserKey("acme", "short", time.Now().Add(1500*time.Millisecond))

	expectTokenError := func(t *testing.T, resp *http.Response, body map[string]any, status int, code string) {
		t.Helper()
		if resp.StatusCode != status || body["error"] != code || resp.Header.Get("Content-Type") != "application/json" ||
			resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("got %d %v %v, want %d %s", resp.StatusCode, body, resp.Header, status, code)
		}
		if status == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
			t.Fatalf("401 without WWW-Authenticate: Basic")
		}
	}
	cc := url.Values{"grant_type": {"client_credentials"}}
	t.Run("token endpoint", func(t *testing.T) {
		wrong := key[:len(key)-4] + "aaaa"
		if wrong == key {
			wrong = key[:len(key)-4] + "bbbb"
		}
		resp, body := e.postToken(cc, "apitoken", wrong)
		expectTokenError(t, resp, body, http.StatusUnauthorized, "invalid_client")
		resp, body = e.postToken(cc, "someone", key)
		expectTokenError(t, resp, body, http.StatusUnauthorized, "invalid_client")
		resp, body = e.postToken(cc, "", "")
		expectTokenError(t, resp, body, http.StatusUnauthorized, "invalid_client")
		resp, body = e.postToken(url.Values{"grant_type": {"password"}, "username": {"a"}, "password": {"b"}}, "apitoken", key)
		expectTokenError(t, resp, body, http.StatusBadRequest, "unsupported_grant_type")
		resp, body = e.postToken(url.Values{}, "apitoken", key)
		expectTokenError(t, resp, body, http.StatusBadRequest, "invalid_request")
		resp, body = e.postToken(url.Values{"grant_type": {"client_credentials"}, "client_id": {"apitoken"}, "client_secret": {e.adminKey}}, "apitoken", key)
		expectTokenError(t, resp, body, http.StatusBadRequest, "invalid_request")
		resp, body = e.postToken(url.Values{"grant_type": {"client_credentials", "client_credentials"}}, "apitoken", key)
		expectTokenError(t, resp, body, http.StatusBadRequest, "invalid_request")

		// GET is 405 with Allow.
		resp2, err := http.Get(e.gateway + tokenPath + "?grant_type=client_credentials")
		if err != nil {
			t.Fatal(err)
		}
		resp2.Body.Close()
		if resp2.StatusCode != http.StatusMethodNotAllowed || resp2.Header.Get("Allow") != "POST" {
			t.Fatalf("GET: %d Allow %q", resp2.StatusCode, resp2.Header.Get("Allow"))
		}
		// A JSON body is not a form.
		req, _ := http.NewRequest(http.MethodPost, e.gateway+tokenPath, strings.NewReader(`{"grant_type":"client_credentials"}`))
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth("apitoken", key)
		resp3, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp3.Body.Close()
		if resp3.StatusCode != http.StatusBadRequest {
			t.Fatalf("JSON body: %d", resp3.StatusCode)
		}

		// An expired API token.
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, body := e.postToken(cc, "apitoken", shortKey)
			if resp.StatusCode == http.StatusUnauthorized {
				expectTokenError(t, resp, body, http.StatusUnauthorized, "invalid_client")
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("expired key still exchanged: %d", resp.StatusCode)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	tok := e.fetchToken(key)
	if got := e.bearer("/x", tok); got != http.StatusOK {
		t.Fatalf("valid token: %d", got)
	}
	hdr, claims, parts := jwtParts(t, tok)
	kid := hdr["kid"].(string)

	// The public key, as a verifier would get it from the JWKS.
	var pub *rsa.PublicKey
	for _, k := range e.jwks() {
		if k["kid"] == kid {
			n, _ := base64.RawURLEncoding.DecodeString(k["n"].(string))
			pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}
		}
	}
	if pub == nil {
		t.Fatal("kid not in JWKS")
	}
	der, _ := x509.MarshalPKIXPublicKey(pub)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})

	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsSign := func(k *rsa.PrivateKey, h, c map[string]any) string {
		in := enc(h) + "." + enc(c)
		sum := sha256.Sum256([]byte(in))
		sig, _ := rsa.SignPKCS1v15(rand.Reader, k, 0x5, sum[:]) // crypto.SHA256
		return in + "." + base64.RawURLEncoding.EncodeToString(sig)
	}
	hsSign := func(secret []byte, h, c map[string]any) string {
		in := enc(h) + "." + enc(c)
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(in))
		return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	with := func(m map[string]any, k string, v any) map[string]any {
		c := make(map[string]any, len(m))
		for kk, vv := range m {
			c[kk] = vv
		}
		c[k] = v
		return c
	}

	before, _ := e.up.snapshot()
	for name, bad := range map[string]string{
		"tampered payload":           parts[0] + "." + enc(with(claims, "sub", e.adminID)) + "." + parts[2],
		"tampered tenant":            parts[0] + "." + enc(with(claims, "tenant", "other")) + "." + parts[2],
		"signed by another key":      rsSign(other, hdr, claims),
		"another key, unknown kid":   rsSign(other, with(hdr, "kid", "nope"), claims),
		"alg none":                   enc(with(hdr, "alg", "none")) + "." + parts[1] + ".",
		"alg none with old sig":      enc(with(hdr, "alg", "none")) + "." + parts[1] + "." + parts[2],
		"HS256, public key PEM":      hsSign(pemKey, with(hdr, "alg", "HS256"), claims),
		"HS256, public key DER":      hsSign(der, with(hdr, "alg", "HS256"), claims),
		"HS256, modulus":             hsSign(pub.N.Bytes(), with(hdr, "alg", "HS256"), claims),
		"expired claims re-signed":   rsSign(other, hdr, with(claims, "exp", time.Now().Add(-time.Hour).Unix())),
		"truncated":                  parts[0] + "." + parts[1],
		"garbage signature":          parts[0] + "." + parts[1] + ".AAAA",
		"other issuer (foreign key)": rsSign(other, hdr, with(claims, "iss", "evil")),
	} {
		t.Run(name, func(t *testing.T) {
			expectProblem(t, e.get("/x", map[string]string{"Authorization": "Bearer " + bad}), http.StatusUnauthorized)
		})
	}
	if after, _ := e.up.snapshot(); after != before {
		t.Fatalf("upstream called for %d rejected tokens", after-before)
	}

	// A token of tenant acme on the route of tenant other: 403.
	e.api(http.MethodPost, "/v1/tenants", map[string]any{"id": "other", "name": "Other"}, http.StatusCreated)
	expectProblem(t, e.get("/other/x", map[string]string{"Authorization": "Bearer " + tok}), http.StatusForbidden)

	// Revocation bites on the next request, not at exp.
	if got := e.bearer("/x", tok); got != http.StatusOK {
		t.Fatalf("before revocation: %d", got)
	}
	e.api(http.MethodDelete, "/v1/users/"+userID+"/keys/"+keyID, nil, http.StatusOK)
	expectProblem(t, e.get("/x", map[string]string{"Authorization": "Bearer " + tok}), http.StatusUnauthorized)

	// So does disabling the user, and archiving the permission (403).
	uid2, _, key2 := e.newUserKey("acme", "svc2", time.Now().Add(time.Hour))
	tok2 := e.fetchToken(key2)
	perm := map[string]any{"user": map[string]any{"id": uid2}, "workspace": map[string]any{"id": "acme"}, "role": "MEMBER", "status": "ARCHIVED"}
	e.api(http.MethodPost, "/v1/permissions", perm, http.StatusOK)
	expectProblem(t, e.get("/x", map[string]string{"Authorization": "Bearer " + tok2}), http.StatusForbidden)
	perm["status"] = "ACTIVE"
	e.api(http.MethodPost, "/v1/permissions", perm, http.StatusOK)
	if got := e.bearer("/x", tok2); got != http.StatusOK {
		t.Fatalf("reactivated permission: %d", got)
	}
	e.srv.CLI("users", "disable", uid2)
	expectProblem(t, e.get("/x", map[string]string{"Authorization": "Bearer " + tok2}), http.StatusUnauthorized)
}

func TestTokenExpiry(t *testing.T) {
	e := startTokenEnv(t, "lifetime 2s\n\t\t\talgorithm EdDSA")
	tok := e.fetchToken(e.adminKey)
	if got := e.bearer("/x", tok); got != http.StatusOK {
		t.Fatalf("fresh token: %d", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.bearer("/x", tok) == http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("expired token still accepted")
		}
		time.Sleep(200 * time.Millisecond)
	}
	expectProblem(t, e.get("/x", map[string]string{"Authorization": "Bearer " + tok}), http.StatusUnauthorized)
	// A new token works again.
	if got := e.bearer("/x", e.fetchToken(e.adminKey)); got != http.StatusOK {
		t.Fatalf("new token: %d", got)
	}
}

func TestTokenKeyRotation(t *testing.T) {
	e := startTokenEnv(t, "rotate 2s\n\t\t\tlifetime 8s\n\t\t\talgorithm EdDSA")
	first := e.fetchToken(e.adminKey)
	h1, _, _ := jwtParts(t, first)
	kid1 := h1["kid"].(string)
	issued := time.Now()

	// After a rotation, new tokens carry a new kid; the old token still
	// works and the JWKS lists both keys.
	var second string
	deadline := time.Now().Add(10 * time.Second)
	for {
		second = e.fetchToken(e.adminKey)
		if h, _, _ := jwtParts(t, second); h["kid"] != kid1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("signing key did not rotate")
		}
		time.Sleep(200 * time.Millisecond)
	}
	h2, _, _ := jwtParts(t, second)
	kids := map[any]bool{}
	for _, k := range e.jwks() {
		kids[k["kid"]] = true
		if k["kty"] != "OKP" || k["crv"] != "Ed25519" || k["alg"] != "EdDSA" || k["x"] == "" {
			t.Errorf("jwk %v", k)
		}
	}
	if !kids[kid1] || !kids[h2["kid"]] {
		t.Fatalf("jwks %v lacks %s or %s", kids, kid1, h2["kid"])
	}
	if time.Since(issued) < 6*time.Second {
		if got := e.bearer("/x", first); got != http.StatusOK {
			t.Fatalf("token of the rotated-out key: %d", got)
		}
	}
	if got := e.bearer("/x", second); got != http.StatusOK {
		t.Fatalf("token of the new key: %d", got)
	}

	// Once the first token expired, it fails; its key leaves the JWKS
	// (sign_until + lifetime + leeway) and is deleted.
	deadline = time.Now().Add(20 * time.Second)
	for e.bearer("/x", first) == http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("old token still accepted")
		}
		time.Sleep(250 * time.Millisecond)
	}
	for {
		gone := true
		for _, k := range e.jwks() {
			if k["kid"] == kid1 {
				gone = false
			}
		}
		if gone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("retired key still in the JWKS")
		}
		time.Sleep(250 * time.Millisecond)
	}
}
