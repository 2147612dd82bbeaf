package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

func bodyDigest(body string) string {
	s := sha256.Sum256([]byte(body))
	return "SHA-256=" + base64.StdEncoding.EncodeToString(s[:])
}

func TestCavageKnownAnswer(t *testing.T) {
	body := `{"a":1}`
	r := newReq("POST", "/api/orders?x=1", body)
	r.Header.Set("Date", testNow.Format(http.TimeFormat))
	r.Header.Set("Digest", bodyDigest(body))
	r.Header.Set("Authorization", `Signature keyId="u1",algorithm="hs2019",headers="(request-target) host date digest",signature="`+knownCavage+`"`)
	wantOK(t, r, twoSecrets, VerifyOptions{}, HTTPSignature, "u1", "sa")
}

func TestCavage(t *testing.T) {
	created := testNow.Unix()
	for _, alg := range []string{"hmac-sha256", "hs2019"} {
		for _, form := range []string{"authorization", "signature"} {
			for _, s := range twoSecrets {
				t.Run(alg+"/"+form+"/"+s.ID, func(t *testing.T) {
					body := `{"amount":12}`
					r := newReq("PUT", "/v1/things/9?dry=1", body)
					r.Header.Set("Date", testNow.Format(http.TimeFormat))
					r.Header.Set("Digest", bodyDigest(body))
					r.Header.Set("X-Request-Id", "abc")
					hdrs := []string{"(request-target)", "(created)", "host", "digest", "x-request-id"}
					p := signCavage(r, "app-7", alg, hdrs, s.Value, created, 0)
					if form == "authorization" {
						r.Header.Set("Authorization", "Signature "+p)
					} else {
						r.Header.Set("Signature", p)
					}
					wantOK(t, r, twoSecrets, VerifyOptions{}, HTTPSignature, "app-7", s.ID)
					// The body is restored for the upstream.
					got := make([]byte, 64)
					n, _ := r.Body.Read(got)
					if string(got[:n]) != body {
						t.Fatalf("body after verify = %q", got[:n])
					}
				})
			}
		}
	}
}

func TestCavageRejects(t *testing.T) {
	created := testNow.Unix()
	type tc struct {
		name string
		mut  func(r *http.Request) // applied after signing
		sign func(r *http.Request) string
		want error
	}
	std := func(r *http.Request) string {
		return signCavage(r, "app-7", "hs2019", []string{"(request-target)", "(created)", "host", "digest", "x-a"}, secretA, created, 0)
	}
	cases := []tc{
		{"method", func(r *http.Request) { r.Method = "DELETE" }, std, ErrBadSignature},
		{"path", func(r *http.Request) { r.RequestURI = "/v1/other?dry=1" }, std, ErrBadSignature},
		{"query", func(r *http.Request) { r.RequestURI = "/v1/things/9?dry=0" }, std, ErrBadSignature},
		{"covered header", func(r *http.Request) { r.Header.Set("X-A", "evil") }, std, ErrBadSignature},
		{"host", func(r *http.Request) { r.Host = "evil.example" }, std, ErrBadSignature},
		{"body", func(r *http.Request) { r.Body = newReq("PUT", "/", `{"amount":99}`).Body }, std, ErrBadSignature},
		{"missing covered header", func(r *http.Request) { r.Header.Del("X-A") }, std, ErrMalformed},
		{"wrong secret", nil, func(r *http.Request) string {
			return signCavage(r, "app-7", "hs2019", []string{"(request-target)", "(created)", "digest"}, secretC, created, 0)
		}, ErrBadSignature},
		{"stale", nil, func(r *http.Request) string {
			return signCavage(r, "app-7", "hs2019", []string{"(request-target)", "(created)", "digest"}, secretA, created-301, 0)
		}, ErrStale},
		{"future", nil, func(r *http.Request) string {
			return signCavage(r, "app-7", "hs2019", []string{"(request-target)", "(created)", "digest"}, secretA, created+301, 0)
		}, ErrStale},
		{"expired", nil, func(r *http.Request) string {
			return signCavage(r, "app-7", "hs2019", []string{"(request-target)", "(created)", "(expires)", "digest"}, secretA, created, created-1)
		}, ErrStale},
		{"no timestamp", nil, func(r *http.Request) string {
			return signCavage(r, "app-7", "hmac-sha256", []string{"(request-target)", "host", "digest"}, secretA, 0, 0)
		}, ErrMalformed},
		{"created not covered", nil, func(r *http.Request) string {
			return signCavage(r, "app-7", "hmac-sha256", []string{"(request-target)", "host", "digest"}, secretA, created, 0)
		}, ErrMalformed},
		{"stale date", func(r *http.Request) {}, func(r *http.Request) string {
			r.Header.Set("Date", testNow.Add(-10*60e9).Format(http.TimeFormat))
			return signCavage(r, "app-7", "hmac-sha256", []string{"(request-target)", "date", "digest"}, secretA, 0, 0)
		}, ErrStale},
		{"unsupported algorithm", nil, func(r *http.Request) string {
			return strings.Replace(std(r), "hs2019", "rsa-sha256", 1)
		}, ErrMalformed},
		{"bad base64", nil, func(r *http.Request) string {
			p := std(r)
			return p[:strings.Index(p, `signature="`)] + `signature="@@@"`
		}, ErrMalformed},
		{"truncated signature", nil, func(r *http.Request) string {
			p := std(r)
			return p[:len(p)-10] + `"`
		}, ErrMalformed},
		{"missing keyId", nil, func(r *http.Request) string { return strings.Replace(std(r), `keyId="app-7",`, "", 1) }, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := `{"amount":12}`
			r := newReq("PUT", "/v1/things/9?dry=1", body)
			r.Header.Set("Digest", bodyDigest(body))
			r.Header.Set("X-A", "1")
			r.Header.Set("Authorization", "Signature "+c.sign(r))
			if c.mut != nil {
				c.mut(r)
			}
			wantErr(t, r, twoSecrets, VerifyOptions{}, c.want)
		})
	}
	t.Run("date header form", func(t *testing.T) {
		r := newReq("GET", "/v1/x", "")
		r.Header.Set("Date", testNow.Format(http.TimeFormat))
		r.Header.Set("Signature", signCavage(r, "app-7", "hmac-sha256", []string{"(request-target)", "host", "date"}, secretB, 0, 0))
		v := wantOK(t, r, twoSecrets, VerifyOptions{}, HTTPSignature, "app-7", "sb")
		if !v.Timestamp.Equal(testNow) {
			t.Fatalf("timestamp %v", v.Timestamp)
		}
	})
	t.Run("oversized header", func(t *testing.T) {
		r := newReq("GET", "/v1/x", "")
		r.Header.Set("Signature", `keyId="`+strings.Repeat("a", 9000)+`",signature="x"`)
		wantErr(t, r, twoSecrets, VerifyOptions{}, ErrMalformed)
	})
	t.Run("body over MaxBody", func(t *testing.T) {
		body := strings.Repeat("x", 100)
		r := newReq("POST", "/v1/x", body)
		r.Header.Set("Digest", bodyDigest(body))
		r.Header.Set("Signature", signCavage(r, "app-7", "hs2019", []string{"(request-target)", "(created)", "digest"}, secretA, created, 0))
		wantErr(t, r, twoSecrets, VerifyOptions{MaxBody: 10}, ErrBodyTooLarge)
	})
	_ = strconv.Itoa
}
