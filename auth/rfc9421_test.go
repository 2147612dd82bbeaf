package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rfcRequest is the test request of RFC 9421 Appendix B.2.
func rfcRequest() *http.Request {
	r := newReq("POST", "/foo?param=Value&Pet=dog", `{"hello": "world"}`)
	r.Host = "example.com"
	r.Header.Set("Date", "Tue, 20 Apr 2021 02:07:55 GMT")
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Content-Digest", "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:")
	r.Header.Set("Content-Length", "18")
	return r
}

func TestRFC9421AppendixB25(t *testing.T) {
	r := rfcRequest()
	r.Header.Set("Signature-Input", `sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"`)
	r.Header.Set("Signature", `sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:`)
	var d Detector
	c, err := d.Detect(r)
	if err != nil {
		t.Fatal(err)
	}
	if c.Scheme != HTTPSignature || c.UserID != "test-shared-secret" {
		t.Fatalf("credential %v %q", c.Scheme, c.UserID)
	}
	s := c.sig.(*rfc9421Sig)
	base, _, err := s.base(nil, r, r.RequestURI)
	if err != nil {
		t.Fatal(err)
	}
	wantBase := `"date": Tue, 20 Apr 2021 02:07:55 GMT` + "\n" +
		`"@authority": example.com` + "\n" +
		`"content-type": application/json` + "\n" +
		`"@signature-params": ("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"`
	if string(base) != wantBase {
		t.Fatalf("base:\n%s\nwant:\n%s", base, wantBase)
	}
	// The RFC keys HMAC with the decoded shared secret; keygate keys it with
	// the secret string as issued, so check the MAC here directly.
	m := hmac.New(sha256.New, b64dec(rfc9421SharedSecret))
	m.Write(base)
	if !hmac.Equal(m.Sum(nil), s.sig) {
		t.Fatal("B.2.5 signature does not verify")
	}
	// The B.2 Content-Digest matches the B.2 body.
	if err := checkContentDigest(r, &env{maxBody: 1 << 20}); err != nil {
		t.Fatalf("content-digest: %v", err)
	}
}

func TestRFC9421(t *testing.T) {
	created := testNow.Unix()
	comps := []string{"@method", "@authority", "@path", "@query", "@target-uri", "@request-target", "@scheme", "content-type", "content-digest"}
	for _, s := range twoSecrets {
		t.Run(s.ID, func(t *testing.T) {
			body := `{"hello": "world"}`
			r := newReq("POST", "/foo/bar?param=Value&Pet=dog", body)
			r.Header.Set("Content-Type", "application/json")
			sum := sha512.Sum512([]byte(body))
			r.Header.Set("Content-Digest", "sha-512=:"+base64.StdEncoding.EncodeToString(sum[:])+":")
			sign9421(r, "sig1", comps, `;created=`+strconv.FormatInt(created, 10)+`;keyid="app-9";alg="hmac-sha256"`, []byte(s.Value))
			v := wantOK(t, r, twoSecrets, VerifyOptions{}, HTTPSignature, "app-9", s.ID)
			if v.HasNonce {
				t.Fatal("nonce reported without nonce")
			}
		})
	}
	t.Run("nonce", func(t *testing.T) {
		r := newReq("GET", "/x", "")
		sign9421(r, "s", []string{"@method", "@path"}, `;created=`+strconv.FormatInt(created, 10)+`;keyid="app-9";nonce="n-1"`, []byte(secretA))
		if v := wantOK(t, r, twoSecrets, VerifyOptions{}, HTTPSignature, "app-9", "sa"); !v.HasNonce {
			t.Fatal("nonce not reported")
		}
	})
	t.Run("second label is used when first has no keyid", func(t *testing.T) {
		r := newReq("GET", "/x", "")
		sign9421(r, "mine", []string{"@method", "@path"}, `;created=`+strconv.FormatInt(created, 10)+`;keyid="app-9"`, []byte(secretA))
		r.Header.Set("Signature-Input", `proxy=("@method");created=1, `+r.Header.Get("Signature-Input"))
		r.Header.Set("Signature", `proxy=:AAAA:, `+r.Header.Get("Signature"))
		wantOK(t, r, twoSecrets, VerifyOptions{}, HTTPSignature, "app-9", "sa")
	})
}

func TestRFC9421Rejects(t *testing.T) {
	created := testNow.Unix()
	params := `;created=` + strconv.FormatInt(created, 10) + `;keyid="app-9"`
	comps := []string{"@method", "@authority", "@path", "@query", "content-digest", "x-a"}
	build := func(key string, ps string) *http.Request {
		body := `{"n":1}`
		r := newReq("POST", "/p?q=1", body)
		sum := sha256.Sum256([]byte(body))
		r.Header.Set("Content-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(sum[:])+":")
		r.Header.Set("X-A", "1")
		sign9421(r, "sig", comps, ps, []byte(key))
		return r
	}
	cases := []struct {
		name string
		r    func() *http.Request
		want error
	}{
		{"method", func() *http.Request { r := build(secretA, params); r.Method = "PUT"; return r }, ErrBadSignature},
		{"path", func() *http.Request { r := build(secretA, params); r.RequestURI = "/other?q=1"; return r }, ErrBadSignature},
		{"query", func() *http.Request { r := build(secretA, params); r.RequestURI = "/p?q=2"; return r }, ErrBadSignature},
		{"authority", func() *http.Request { r := build(secretA, params); r.Host = "evil.example"; return r }, ErrBadSignature},
		{"covered header", func() *http.Request { r := build(secretA, params); r.Header.Set("X-A", "2"); return r }, ErrBadSignature},
		{"body", func() *http.Request {
			r := build(secretA, params)
			r.Body = newReq("POST", "/", `{"n":2}`).Body
			return r
		}, ErrBadSignature},
		{"missing covered header", func() *http.Request { r := build(secretA, params); r.Header.Del("X-A"); return r }, ErrMalformed},
		{"wrong secret", func() *http.Request { return build(secretC, params) }, ErrBadSignature},
		{"stale", func() *http.Request {
			return build(secretA, `;created=`+strconv.FormatInt(created-400, 10)+`;keyid="app-9"`)
		}, ErrStale},
		{"future", func() *http.Request {
			return build(secretA, `;created=`+strconv.FormatInt(created+400, 10)+`;keyid="app-9"`)
		}, ErrStale},
		{"expired", func() *http.Request {
			return build(secretA, params+`;expires=`+strconv.FormatInt(created-1, 10))
		}, ErrStale},
		{"no created", func() *http.Request { return build(secretA, `;keyid="app-9"`) }, ErrMalformed},
		{"alg other", func() *http.Request { return build(secretA, params+`;alg="ed25519"`) }, ErrMalformed},
		{"signature params tampered", func() *http.Request {
			r := build(secretA, params)
			r.Header.Set("Signature-Input", strings.Replace(r.Header.Get("Signature-Input"), `"x-a"`, `"x-b"`, 1))
			r.Header.Set("X-B", "1")
			return r
		}, ErrBadSignature},
		{"bad base64", func() *http.Request { r := build(secretA, params); r.Header.Set("Signature", "sig=:@@:"); return r }, ErrMalformed},
		{"truncated", func() *http.Request { r := build(secretA, params); r.Header.Set("Signature", "sig=:AAAA:"); return r }, ErrMalformed},
		{"bad structure", func() *http.Request {
			r := build(secretA, params)
			r.Header.Set("Signature-Input", `sig=("@method"`)
			return r
		}, ErrMalformed},
		{"unsupported component param", func() *http.Request {
			r := newReq("GET", "/x", "")
			sign9421(r, "sig", []string{"@method"}, params, []byte(secretA))
			r.Header.Set("Signature-Input", `sig=("@query-param";name="a")`+params)
			return r
		}, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantErr(t, c.r(), twoSecrets, VerifyOptions{}, c.want) })
	}
	_ = time.Second
}
