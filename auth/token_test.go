package auth

import (
	"crypto"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func newTestTokenKey(t testing.TB, kid, alg string) *TokenKey {
	t.Helper()
	priv, pub, err := GenerateTokenKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewTokenKey(kid, alg, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testClaims() TokenClaims {
	return TokenClaims{Subject: "42", KeyID: "key1", Tenant: "acme", Principal: &TokenPrincipal{
		ID: "42", Username: "svc", Role: "MEMBER",
		Permission: TokenPermission{WorkspaceID: "acme", WorkspaceName: "Acme", Role: "MEMBER", CustomerRoles: []string{}},
	}}
}

func b64(v any) string {
	var b []byte
	switch x := v.(type) {
	case string:
		b = []byte(x)
	default:
		b, _ = json.Marshal(x)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestTokenRoundTrip(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, alg := range []string{AlgRS256, AlgEdDSA} {
		t.Run(alg, func(t *testing.T) {
			k := newTestTokenKey(t, "kid1", alg)
			iss := TokenIssuer{Issuer: "keygate", Audience: "api", Lifetime: time.Hour}
			v := TokenVerifier{Alg: alg, Issuer: "keygate", Audience: "api", Leeway: 30 * time.Second,
				Key: func(kid string) *TokenKey {
					if kid == k.ID {
						return k
					}
					return nil
				}}
			tok, err := iss.Issue(k, testClaims(), now)
			if err != nil {
				t.Fatal(err)
			}
			hp, pp, _, _ := splitJWT(tok)
			var hdr map[string]any
			var cl map[string]any
			raw, _ := base64.RawURLEncoding.DecodeString(hp)
			_ = json.Unmarshal(raw, &hdr)
			raw, _ = base64.RawURLEncoding.DecodeString(pp)
			_ = json.Unmarshal(raw, &cl)
			if hdr["alg"] != alg || hdr["typ"] != "JWT" || hdr["kid"] != "kid1" || len(hdr) != 3 {
				t.Errorf("header %v", hdr)
			}
			for _, c := range []string{"iss", "sub", "aud", "iat", "nbf", "exp", "jti", "keyId", "tenant", "principal"} {
				if _, ok := cl[c]; !ok {
					t.Errorf("claim %s missing: %v", c, cl)
				}
			}
			p := cl["principal"].(map[string]any)
			perm := p["permission"].(map[string]any)
			if p["username"] != "svc" || perm["workspaceId"] != "acme" || perm["workspaceName"] != "Acme" {
				t.Errorf("principal %v", p)
			}
			if cl["exp"].(float64)-cl["iat"].(float64) != 3600 {
				t.Errorf("lifetime %v", cl["exp"].(float64)-cl["iat"].(float64))
			}

			got, err := v.Verify(tok, now.Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if got.Subject != "42" || got.KeyID != "key1" || got.Tenant != "acme" || !got.ExpiresAt.Equal(now.Add(time.Hour)) {
				t.Errorf("verified %+v", got)
			}
			// Within leeway after exp: accepted; beyond: expired.
			if _, err := v.Verify(tok, now.Add(time.Hour+29*time.Second)); err != nil {
				t.Errorf("within leeway: %v", err)
			}
			if _, err := v.Verify(tok, now.Add(time.Hour+30*time.Second)); !errors.Is(err, ErrTokenExpired) {
				t.Errorf("after exp+leeway: %v", err)
			}
			// Issued in the future beyond leeway.
			if _, err := v.Verify(tok, now.Add(-time.Minute)); !errors.Is(err, ErrTokenClaims) {
				t.Errorf("before nbf: %v", err)
			}
		})
	}
}

func TestTokenRejections(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	k := newTestTokenKey(t, "kid1", AlgRS256)
	other := newTestTokenKey(t, "kid1", AlgRS256) // same kid, other key pair
	ed := newTestTokenKey(t, "kid-ed", AlgEdDSA)
	keyset := map[string]*TokenKey{"kid1": k, "kid-ed": ed}
	v := TokenVerifier{Alg: AlgRS256, Issuer: "keygate", Leeway: 30 * time.Second,
		Key: func(kid string) *TokenKey { return keyset[kid] }}
	iss := TokenIssuer{Issuer: "keygate", Lifetime: time.Hour}
	good, err := iss.Issue(k, testClaims(), now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(good, now); err != nil {
		t.Fatal(err)
	}
	hp, pp, sp, _ := splitJWT(good)

	forged, _ := iss.Issue(other, testClaims(), now)
	edTok, _ := (&TokenIssuer{Issuer: "keygate", Lifetime: time.Hour}).Issue(ed, testClaims(), now)
	otherIss, _ := (&TokenIssuer{Issuer: "evil", Lifetime: time.Hour}).Issue(k, testClaims(), now)
	withAud, _ := (&TokenIssuer{Issuer: "keygate", Audience: "other", Lifetime: time.Hour}).Issue(k, testClaims(), now)

	// Tampered payload: another tenant, same signature.
	var cl map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(pp)
	_ = json.Unmarshal(raw, &cl)
	cl["tenant"] = "other"
	tampered := hp + "." + b64(cl) + "." + sp

	// alg none, with and without a signature.
	noneHdr := b64(`{"alg":"none","typ":"JWT","kid":"kid1"}`)
	// HS256 keyed with the public key (PKIX DER and PEM-ish base64 forms).
	hsHdr := b64(`{"alg":"HS256","typ":"JWT","kid":"kid1"}`)
	hs := func(secret []byte) string {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(hsHdr + "." + pp))
		return hsHdr + "." + pp + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	pubDER := k.rsaPub.N.Bytes()

	cases := map[string]struct {
		tok  string
		want error
	}{
		"tampered payload":     {tampered, ErrBadSignature},
		"other key same kid":   {forged, ErrBadSignature},
		"alg none":             {noneHdr + "." + pp + ".", ErrMalformed},
		"alg none with sig":    {noneHdr + "." + pp + "." + sp, ErrMalformed},
		"HS256 public key":     {hs(pubDER), ErrMalformed},
		"EdDSA on RS256 route": {edTok, ErrMalformed},
		"unknown kid":          {b64(`{"alg":"RS256","typ":"JWT","kid":"nope"}`) + "." + pp + "." + sp, ErrUnknownTokenKey},
		"crit header":          {b64(`{"alg":"RS256","typ":"JWT","kid":"kid1","crit":["x"]}`) + "." + pp + "." + sp, ErrMalformed},
		"wrong typ":            {b64(`{"alg":"RS256","typ":"at+jwt+x","kid":"kid1"}`) + "." + pp + "." + sp, ErrMalformed},
		"short signature":      {hp + "." + pp + "." + sp[:40], ErrMalformed},
		"padded signature":     {hp + "." + pp + "." + sp + "==", ErrMalformed},
		"two parts":            {hp + "." + pp, ErrMalformed},
		"other issuer":         {otherIss, ErrTokenClaims},
		"garbage header":       {"!!!." + pp + "." + sp, ErrMalformed},
		"too long":             {hp + "." + strings.Repeat("A", maxTokenLen) + "." + sp, ErrMalformed},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := v.Verify(c.tok, now); !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}

	// Signed by the right key but with repeated or mistyped members.
	signRaw := func(hdr, payload string) string {
		in := b64(hdr) + "." + b64(payload)
		sum := sha256.Sum256([]byte(in))
		sig, err := k.private.Sign(nil, sum[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		return in + "." + base64.RawURLEncoding.EncodeToString(sig)
	}
	exp := now.Add(time.Hour).Unix()
	okHdr := `{"alg":"RS256","typ":"JWT","kid":"kid1"}`
	body := func(extra string) string {
		return fmt.Sprintf(`{"iss":"keygate","sub":"42","iat":%d,"nbf":%d,"exp":%d,"keyId":"key1","tenant":"acme"%s}`, now.Unix(), now.Unix(), exp, extra)
	}
	if _, err := v.Verify(signRaw(okHdr, body(`,"principal":{"a":[1,"}",{"b":"\"]"}]}`)), now); err != nil {
		t.Errorf("nested principal: %v", err)
	}
	if got, err := v.Verify(signRaw(okHdr, strings.Replace(body(""), `"acme"`, `"acme"`, 1)), now); err != nil || got.Tenant != "acme" {
		t.Errorf("escaped tenant: %+v %v", got, err)
	}
	for name, tok := range map[string]string{
		"repeated tenant": signRaw(okHdr, body(`,"tenant":"other"`)),
		"repeated alg":    signRaw(`{"alg":"RS256","alg":"none","kid":"kid1"}`, body("")),
		"float exp":       signRaw(okHdr, strings.Replace(body(""), fmt.Sprint(exp), fmt.Sprint(exp)+".5", 1)),
		"numeric sub":     signRaw(okHdr, strings.Replace(body(""), `"sub":"42"`, `"sub":42`, 1)),
		"array payload":   signRaw(okHdr, `[1]`),
		"trailing data":   signRaw(okHdr, body("")+"x"),
	} {
		if _, err := v.Verify(tok, now); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}

	// Audience: required when configured; a token for another is refused.
	va := v
	va.Audience = "api"
	if _, err := va.Verify(good, now); !errors.Is(err, ErrTokenClaims) {
		t.Errorf("no aud: %v", err)
	}
	if _, err := va.Verify(withAud, now); !errors.Is(err, ErrTokenClaims) {
		t.Errorf("other aud: %v", err)
	}
	// Error messages never carry the token.
	if _, err := v.Verify(tampered, now); strings.Contains(err.Error(), sp[:10]) {
		t.Error("error contains token material")
	}
}

func TestTokenKeyJWKAndParse(t *testing.T) {
	rs := newTestTokenKey(t, "r", AlgRS256)
	j := rs.JWK()
	if j.Kty != "RSA" || j.E != "AQAB" || j.Use != "sig" || j.Alg != AlgRS256 || len(j.N) != 342 {
		t.Errorf("RSA JWK %+v", j)
	}
	ed := newTestTokenKey(t, "e", AlgEdDSA)
	j = ed.JWK()
	if j.Kty != "OKP" || j.Crv != "Ed25519" || len(j.X) != 43 || j.N != "" {
		t.Errorf("Ed25519 JWK %+v", j)
	}
	// A private key that does not match the public key is refused, and so
	// is a key of the wrong type for the algorithm.
	priv1, _, _ := GenerateTokenKey(AlgEdDSA)
	_, pub2, _ := GenerateTokenKey(AlgEdDSA)
	if _, err := NewTokenKey("x", AlgEdDSA, pub2, priv1); err == nil {
		t.Error("mismatched pair accepted")
	}
	if _, err := NewTokenKey("x", AlgRS256, pub2, nil); err == nil {
		t.Error("Ed25519 key accepted for RS256")
	}
	if _, _, err := GenerateTokenKey("HS256"); err == nil {
		t.Error("HS256 generated")
	}
	pubOnly, _ := NewTokenKey("x", AlgEdDSA, pub2, nil)
	if pubOnly.CanSign() {
		t.Error("public-only key can sign")
	}
	if _, err := (&TokenIssuer{Issuer: "i", Lifetime: time.Hour}).Issue(pubOnly, testClaims(), time.Now()); err == nil {
		t.Error("signed without a private key")
	}
}

func BenchmarkTokenVerify(b *testing.B) {
	for _, alg := range []string{AlgRS256, AlgEdDSA} {
		b.Run(alg, func(b *testing.B) {
			k := newTestTokenKey(b, "kid1", alg)
			now := time.Now()
			tok, err := (&TokenIssuer{Issuer: "keygate", Lifetime: time.Hour}).Issue(k, testClaims(), now)
			if err != nil {
				b.Fatal(err)
			}
			v := TokenVerifier{Alg: alg, Issuer: "keygate", Leeway: 30 * time.Second,
				Key: func(kid string) *TokenKey {
					if kid == "kid1" {
						return k
					}
					return nil
				}}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := v.Verify(tok, now); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
