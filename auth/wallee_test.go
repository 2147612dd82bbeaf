package auth

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

func TestWalleeMACKnownAnswer(t *testing.T) {
	// Computed independently: python3 hmac/hashlib/base64 over
	// "1|100|1741964966|GET|/api/space/read?id=7" with base64decode(secretA).
	r := newReq("GET", "/api/space/read?id=7", "")
	r.Header.Set("x-mac-version", "1")
	r.Header.Set("x-mac-userid", "100")
	r.Header.Set("x-mac-timestamp", "1741964966")
	r.Header.Set("x-mac-value", knownMAC)
	wantOK(t, r, twoSecrets, VerifyOptions{}, WalleeMAC, "100", "sa")
}

func TestWalleeMAC(t *testing.T) {
	ts := testNow.Unix()
	cases := []struct {
		name   string
		target string // as sent on the wire
		signed string // as the SDK signed it
	}{
		{"no query", "/api/v2.0/transactions/read", "/api/v2.0/transactions/read"},
		{"plain query", "/api/space/read?spaceId=1&id=2", "/api/space/read?spaceId=1&id=2"},
		{"space sent as plus", "/api/q?filter=a+b", "/api/q?filter=a%20b"},
		{"space sent as %20", "/api/q?filter=a%20b", "/api/q?filter=a%20b"},
		{"literal plus", "/api/q?x=1%2B1", "/api/q?x=1%2B1"},
		{"star quote paren bang tilde", "/api/q?x=*'()!~", "/api/q?x=*'()!~"},
		{"raw colon dollar comma brackets", "/api/q?sort=a:b&c=$x,y&f[0]=1", "/api/q?sort=a%3Ab&c=%24x%2Cy&f%5B0%5D=1"},
		{"non-ascii", "/api/q?name=J%C3%BCrg", "/api/q?name=J%C3%BCrg"},
		{"non-ascii raw utf8 encoded lower hex", "/api/q?name=J%c3%bcrg", "/api/q?name=J%C3%BCrg"},
		{"repeated keys keep order", "/api/q?id=2&id=1&id=3", "/api/q?id=2&id=1&id=3"},
		{"repeated keys with plus", "/api/q?t=a+b&t=c+d", "/api/q?t=a%20b&t=c%20d"},
		{"empty value", "/api/q?a=&b=1", "/api/q?a=&b=1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The test signer encodes with encodeURIComponent where the case asks for it.
			if strings.Contains(tc.signed, "%") && tc.signed != tc.target {
				u, _ := url.ParseRequestURI(tc.target)
				var parts []string
				for _, kv := range strings.Split(u.RawQuery, "&") {
					k, v, _ := strings.Cut(kv, "=")
					dk, _ := url.QueryUnescape(k)
					dv, _ := url.QueryUnescape(v)
					parts = append(parts, jsEncodeURIComponent(dk)+"="+jsEncodeURIComponent(dv))
				}
				if got := u.Path + "?" + strings.Join(parts, "&"); got != tc.signed {
					t.Fatalf("test signer: %q != %q", got, tc.signed)
				}
			}
			for _, s := range twoSecrets {
				r := newReq("GET", tc.target, "")
				signWalleeMAC(r, "4711", s.Value, ts, tc.signed)
				wantOK(t, r, twoSecrets, VerifyOptions{}, WalleeMAC, "4711", s.ID)
			}
		})
	}
}

func TestWalleeMACRejects(t *testing.T) {
	ts := testNow.Unix()
	build := func(method, target, signMethod, signTarget, secret string, at int64) *httptestReq {
		r := newReq(method, target, "")
		rr := &httptestReq{r}
		r.Method = signMethod
		signWalleeMAC(r, "4711", secret, at, signTarget)
		r.Method = method
		return rr
	}
	cases := []struct {
		name string
		r    *httptestReq
		opt  VerifyOptions
		want error
	}{
		{"method", build("POST", "/api/x?a=1", "GET", "/api/x?a=1", secretA, ts), VerifyOptions{}, ErrBadSignature},
		{"path", build("GET", "/api/y?a=1", "GET", "/api/x?a=1", secretA, ts), VerifyOptions{}, ErrBadSignature},
		{"query", build("GET", "/api/x?a=2", "GET", "/api/x?a=1", secretA, ts), VerifyOptions{}, ErrBadSignature},
		{"query order", build("GET", "/api/x?b=2&a=1", "GET", "/api/x?a=1&b=2", secretA, ts), VerifyOptions{}, ErrBadSignature},
		{"wrong secret", build("GET", "/api/x", "GET", "/api/x", secretC, ts), VerifyOptions{}, ErrBadSignature},
		{"stale", build("GET", "/api/x", "GET", "/api/x", secretA, ts-301), VerifyOptions{}, ErrStale},
		{"future", build("GET", "/api/x", "GET", "/api/x", secretA, ts+301), VerifyOptions{}, ErrStale},
		{"rewritten path, original given", build("GET", "/x", "GET", "/x", secretA, ts), VerifyOptions{OriginalURI: "/api/x"}, ErrBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { wantErr(t, tc.r.Request, twoSecrets, tc.opt, tc.want) })
	}

	t.Run("skew boundary accepted", func(t *testing.T) {
		r := build("GET", "/api/x", "GET", "/api/x", secretA, ts-300)
		wantOK(t, r.Request, twoSecrets, VerifyOptions{}, WalleeMAC, "4711", "sa")
	})
	t.Run("stripped prefix uses OriginalURI", func(t *testing.T) {
		r := build("GET", "/api/x?a=1", "GET", "/api/x?a=1", secretA, ts)
		r.RequestURI = "/x?a=1" // what the handler sees after a strip
		wantOK(t, r.Request, twoSecrets, VerifyOptions{OriginalURI: "/api/x?a=1"}, WalleeMAC, "4711", "sa")
	})
	t.Run("third secret ignored", func(t *testing.T) {
		r := build("GET", "/api/x", "GET", "/api/x", secretC, ts)
		wantErr(t, r.Request, append(twoSecrets[:2:2], Secret{ID: "sc", Value: secretC}), VerifyOptions{}, ErrBadSignature)
	})
	malformed := map[string]func(r *httptestReq){
		"bad base64":      func(r *httptestReq) { r.Header.Set("x-mac-value", "!!notbase64!!") },
		"truncated mac":   func(r *httptestReq) { v := r.Header.Get("x-mac-value"); r.Header.Set("x-mac-value", v[:40]) },
		"short mac":       func(r *httptestReq) { r.Header.Set("x-mac-value", base64.StdEncoding.EncodeToString(make([]byte, 32))) },
		"bad version":     func(r *httptestReq) { r.Header.Set("x-mac-version", "2") },
		"bad timestamp":   func(r *httptestReq) { r.Header.Set("x-mac-timestamp", "12x") },
		"missing userid":  func(r *httptestReq) { r.Header.Del("x-mac-userid") },
		"oversize header": func(r *httptestReq) { r.Header.Set("x-mac-userid", strings.Repeat("9", 9000)) },
	}
	for name, m := range malformed {
		t.Run(name, func(t *testing.T) {
			r := build("GET", "/api/x", "GET", "/api/x", secretA, ts)
			m(r)
			wantErr(t, r.Request, twoSecrets, VerifyOptions{}, ErrMalformed)
		})
	}
}

func TestWalleeJWT(t *testing.T) {
	iat := testNow.Unix()
	key := b64dec(secretA)
	cases := []struct {
		name, header, target, path string
	}{
		{"5.x typ ver", `{"alg":"HS256","typ":"JWT","ver":1}`, "/api/v2.0/payment/transactions/1?spaceId=7", "/api/v2.0/payment/transactions/1?spaceId=7"},
		{"type header", `{"alg":"HS256","type":"JWT","ver":1}`, "/api/v2.0/x", "/api/v2.0/x"},
		{"ver as string", `{"alg":"HS256","typ":"JWT","ver":"1"}`, "/api/v2.0/x", "/api/v2.0/x"},
		{"re-encoded query", `{"alg":"HS256","type":"JWT","ver":1}`, "/api/v2.0/x?q=a+b&s=a:b", "/api/v2.0/x?q=a%20b&s=a%3Ab"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newReq("POST", tc.target, "{}")
			r.Header.Set("Authorization", "Bearer "+makeJWT(tc.header, walleeClaims("4711", iat, "POST", tc.path), key))
			v := wantOK(t, r, twoSecrets, VerifyOptions{}, WalleeJWT, "4711", "sa")
			if v.HasNonce {
				t.Fatal("HasNonce without jti")
			}
		})
	}
	t.Run("numeric sub and jti", func(t *testing.T) {
		r := newReq("GET", "/api/x", "")
		claims := `{"sub":4711,"iat":` + itoa(iat) + `,"requestPath":"/api/x","requestMethod":"GET","jti":"n1"}`
		r.Header.Set("Authorization", "Bearer "+makeJWT(`{"alg":"HS256","typ":"JWT"}`, claims, b64dec(secretB)))
		v := wantOK(t, r, twoSecrets, VerifyOptions{}, WalleeJWT, "4711", "sb")
		if !v.HasNonce {
			t.Fatal("jti not reported as nonce")
		}
	})

	hdr := `{"alg":"HS256","typ":"JWT","ver":1}`
	bad := []struct {
		name   string
		token  func() string
		method string
		target string
		want   error
	}{
		{"method", func() string { return makeJWT(hdr, walleeClaims("1", iat, "GET", "/a"), key) }, "DELETE", "/a", ErrBadSignature},
		{"path", func() string { return makeJWT(hdr, walleeClaims("1", iat, "GET", "/a"), key) }, "GET", "/b", ErrBadSignature},
		{"query", func() string { return makeJWT(hdr, walleeClaims("1", iat, "GET", "/a?x=1"), key) }, "GET", "/a?x=2", ErrBadSignature},
		{"wrong secret", func() string { return makeJWT(hdr, walleeClaims("1", iat, "GET", "/a"), b64dec(secretC)) }, "GET", "/a", ErrBadSignature},
		{"stale", func() string { return makeJWT(hdr, walleeClaims("1", iat-600, "GET", "/a"), key) }, "GET", "/a", ErrStale},
		{"future", func() string { return makeJWT(hdr, walleeClaims("1", iat+600, "GET", "/a"), key) }, "GET", "/a", ErrStale},
		{"alg none", func() string {
			enc := base64.RawURLEncoding
			return enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(walleeClaims("1", iat, "GET", "/a"))) + "."
		}, "GET", "/a", ErrMalformed},
		{"alg none with sig", func() string { return makeJWT(`{"alg":"none"}`, walleeClaims("1", iat, "GET", "/a"), key) }, "GET", "/a", ErrMalformed},
		{"alg RS256", func() string { return makeJWT(`{"alg":"RS256","typ":"JWT"}`, walleeClaims("1", iat, "GET", "/a"), key) }, "GET", "/a", ErrMalformed},
		{"alg hs256 lowercase", func() string { return makeJWT(`{"alg":"hs256"}`, walleeClaims("1", iat, "GET", "/a"), key) }, "GET", "/a", ErrMalformed},
		{"missing dot", func() string {
			tok := makeJWT(hdr, walleeClaims("1", iat, "GET", "/a"), key)
			i := strings.LastIndexByte(tok, '.')
			return tok[:i] + tok[i+1:]
		}, "GET", "/a", ErrMalformed},
		{"extra dot", func() string { return makeJWT(hdr, walleeClaims("1", iat, "GET", "/a"), key) + ".x" }, "GET", "/a", ErrMalformed},
		{"truncated signature", func() string { tok := makeJWT(hdr, walleeClaims("1", iat, "GET", "/a"), key); return tok[:len(tok)-4] }, "GET", "/a", ErrMalformed},
		{"padded base64", func() string { return makeJWT(hdr, walleeClaims("1", iat, "GET", "/a"), key) + "=" }, "GET", "/a", ErrMalformed},
		{"bad base64url", func() string { tok := makeJWT(hdr, walleeClaims("1", iat, "GET", "/a"), key); return "*" + tok[1:] }, "GET", "/a", ErrMalformed},
		{"missing requestPath", func() string { return makeJWT(hdr, `{"sub":"1","iat":`+itoa(iat)+`,"requestMethod":"GET"}`, key) }, "GET", "/a", ErrMalformed},
		{"missing iat", func() string { return makeJWT(hdr, `{"sub":"1","requestPath":"/a","requestMethod":"GET"}`, key) }, "GET", "/a", ErrMalformed},
		{"bad typ", func() string { return makeJWT(`{"alg":"HS256","typ":"JWE"}`, walleeClaims("1", iat, "GET", "/a"), key) }, "GET", "/a", ErrMalformed},
		{"expired exp", func() string {
			return makeJWT(hdr, `{"sub":"1","iat":`+itoa(iat)+`,"exp":`+itoa(iat-1)+`,"requestPath":"/a","requestMethod":"GET"}`, key)
		}, "GET", "/a", ErrStale},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			r := newReq(tc.method, tc.target, "")
			r.Header.Set("Authorization", "Bearer "+tc.token())
			wantErr(t, r, twoSecrets, VerifyOptions{}, tc.want)
		})
	}
	t.Run("tampered claims", func(t *testing.T) {
		tok := makeJWT(hdr, walleeClaims("1", iat, "GET", "/a"), key)
		parts := strings.Split(tok, ".")
		parts[1] = base64.RawURLEncoding.EncodeToString([]byte(walleeClaims("2", iat, "GET", "/a")))
		r := newReq("GET", "/a", "")
		r.Header.Set("Authorization", "Bearer "+strings.Join(parts, "."))
		wantErr(t, r, twoSecrets, VerifyOptions{}, ErrBadSignature)
	})
}

func TestWalleeJWTKnownAnswer(t *testing.T) {
	// Computed independently with python3 (hmac, hashlib, base64.urlsafe_b64encode):
	// header {"alg":"HS256","typ":"JWT","ver":1}, claims for sub 4711,
	// iat 1741964966, GET /api/v2.0/spaces/1, key base64decode(secretA).
	r := newReq("GET", "/api/v2.0/spaces/1", "")
	r.Header.Set("Authorization", "Bearer "+knownJWT)
	wantOK(t, r, twoSecrets, VerifyOptions{}, WalleeJWT, "4711", "sa")
}

type httptestReq struct{ *http.Request }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// A wallee JWT signature part longer than an HMAC-SHA256 is malformed, and
// is refused before anything is decoded into the fixed-size signature (the
// fuzzer found it panicking there).
func TestWalleeJWTLongSignature(t *testing.T) {
	for _, sig := range []string{strings.Repeat("A", 44), strings.Repeat("A", 42), strings.Repeat("A", 400)} {
		r := newReq("GET", "/x", "")
		r.Header.Set("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30."+sig)
		var d Detector
		if _, err := d.Detect(r); !errors.Is(err, ErrMalformed) {
			t.Fatalf("signature of %d chars: %v", len(sig), err)
		}
	}
}
