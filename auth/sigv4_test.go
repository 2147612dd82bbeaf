package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var v4Now = time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)

func TestSigV4GetVanilla(t *testing.T) {
	r := newReq("GET", "/", "")
	r.Host = "example.amazonaws.com"
	r.Header.Set("X-Amz-Date", "20150830T123600Z")
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature="+awsGetVanillaSig)
	secrets := []Secret{{ID: "aws", Value: awsExampleSecret}}
	opt := VerifyOptions{Now: v4Now, Region: "us-east-1", Service: "service"}
	wantOK(t, r, secrets, opt, SigV4, "AKIDEXAMPLE", "aws")
	opt.Region = "eu-west-1"
	wantErr(t, r, secrets, opt, ErrScopeMismatch)
}

func v4opts(secret string) v4Opts {
	return v4Opts{akid: "4711", secret: secret, region: "eu-central-1", service: "execute-api", at: testNow}
}

func TestSigV4(t *testing.T) {
	cases := []struct {
		name, method, target, body string
		mod                        func(o *v4Opts, r *http.Request)
	}{
		{"body", "POST", "/prod/orders?b=2&a=1", `{"x":1}`, func(o *v4Opts, r *http.Request) {
			o.body = `{"x":1}`
			r.Header.Set("Content-Type", "application/json")
			o.signed = []string{"content-type"}
		}},
		{"body with content sha256 header", "PUT", "/prod/orders/1", `{"x":2}`, func(o *v4Opts, r *http.Request) {
			s := sha256.Sum256([]byte(`{"x":2}`))
			o.payloadHash = hex.EncodeToString(s[:])
			r.Header.Set("X-Amz-Content-Sha256", o.payloadHash)
			o.signed = []string{"x-amz-content-sha256"}
		}},
		{"unsigned payload", "POST", "/prod/upload", "anything", func(o *v4Opts, r *http.Request) {
			o.payloadHash = "UNSIGNED-PAYLOAD"
			r.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
			o.signed = []string{"x-amz-content-sha256"}
		}},
		{"space in path double encoded", "GET", "/prod/my%20file/a%2Bb", "", nil},
		{"query needing encoding", "GET", "/prod/q?filter=a%20b&x=%2A&empty=", "", nil},
		{"header spaces collapsed", "GET", "/prod/x", "", func(o *v4Opts, r *http.Request) {
			r.Header.Set("X-Custom", "  a   b  ")
			o.signed = []string{"x-custom"}
		}},
		{"presigned", "GET", "/prod/report?id=9", "", func(o *v4Opts, r *http.Request) { o.presign, o.expires = true, 900 }},
		{"s3 style single encoding", "GET", "/bucket/my%20file", "", func(o *v4Opts, r *http.Request) { o.s3 = true }},
	}
	for _, tc := range cases {
		for _, s := range twoSecrets {
			t.Run(tc.name+"/"+s.ID, func(t *testing.T) {
				r := newReq(tc.method, tc.target, tc.body)
				o := v4opts(s.Value)
				if tc.mod != nil {
					tc.mod(&o, r)
				}
				signV4(r, o)
				v := wantOK(t, r, twoSecrets, VerifyOptions{Region: "eu-central-1", Service: "execute-api", SigV4ReadUndeclaredBody: true}, SigV4, "4711", s.ID)
				if o.presign && v.ReplayTTL < 15*time.Minute {
					t.Fatalf("presigned replay ttl %v", v.ReplayTTL)
				}
			})
		}
	}
}

func TestSigV4Rejects(t *testing.T) {
	build := func(mod func(o *v4Opts, r *http.Request)) *http.Request {
		r := newReq("POST", "/prod/orders?a=1", `{"x":1}`)
		o := v4opts(secretA)
		o.body = `{"x":1}`
		r.Header.Set("X-A", "1")
		o.signed = []string{"x-a"}
		if mod != nil {
			mod(&o, r)
		}
		signV4(r, o)
		return r
	}
	cases := []struct {
		name string
		r    func() *http.Request
		opt  VerifyOptions
		want error
	}{
		{"method", func() *http.Request { r := build(nil); r.Method = "PUT"; return r }, VerifyOptions{}, ErrBadSignature},
		{"path", func() *http.Request { r := build(nil); r.RequestURI = "/prod/other?a=1"; return r }, VerifyOptions{}, ErrBadSignature},
		{"query", func() *http.Request { r := build(nil); r.RequestURI = "/prod/orders?a=2"; return r }, VerifyOptions{}, ErrBadSignature},
		{"covered header", func() *http.Request { r := build(nil); r.Header.Set("X-A", "2"); return r }, VerifyOptions{}, ErrBadSignature},
		{"host", func() *http.Request { r := build(nil); r.Host = "evil.example"; return r }, VerifyOptions{}, ErrBadSignature},
		{"body", func() *http.Request { r := build(nil); r.Body = newReq("POST", "/", `{"x":2}`).Body; return r }, VerifyOptions{}, ErrBadSignature},
		{"body vs content sha256", func() *http.Request {
			r := build(func(o *v4Opts, r *http.Request) {
				s := sha256.Sum256([]byte(`{"x":1}`))
				o.payloadHash = hex.EncodeToString(s[:])
				r.Header.Set("X-Amz-Content-Sha256", o.payloadHash)
				o.signed = append(o.signed, "x-amz-content-sha256")
			})
			r.Body = newReq("POST", "/", `{"x":2}`).Body
			return r
		}, VerifyOptions{}, ErrBadSignature},
		{"wrong secret", func() *http.Request { return build(func(o *v4Opts, r *http.Request) { o.secret = secretC }) }, VerifyOptions{}, ErrBadSignature},
		{"stale", func() *http.Request {
			return build(func(o *v4Opts, r *http.Request) { o.at = testNow.Add(-6 * time.Minute) })
		}, VerifyOptions{}, ErrStale},
		{"future", func() *http.Request {
			return build(func(o *v4Opts, r *http.Request) { o.at = testNow.Add(6 * time.Minute) })
		}, VerifyOptions{}, ErrStale},
		{"service", func() *http.Request { return build(nil) }, VerifyOptions{Service: "s3"}, ErrScopeMismatch},
		{"scope date", func() *http.Request {
			r := build(nil)
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/20250314/", "/20250313/", 1))
			return r
		}, VerifyOptions{}, ErrScopeMismatch},
		{"presign expired", func() *http.Request {
			return build(func(o *v4Opts, r *http.Request) { o.presign, o.expires, o.at = true, 60, testNow.Add(-2*time.Minute) })
		}, VerifyOptions{}, ErrStale},
		{"presign tampered expires", func() *http.Request {
			r := build(func(o *v4Opts, r *http.Request) { o.presign, o.expires = true, 60 })
			r.RequestURI = strings.Replace(r.RequestURI, "X-Amz-Expires=60", "X-Amz-Expires=600", 1)
			r.URL.RawQuery = strings.Replace(r.URL.RawQuery, "X-Amz-Expires=60", "X-Amz-Expires=600", 1)
			return r
		}, VerifyOptions{}, ErrBadSignature},
		{"bad hex", func() *http.Request {
			r := build(nil)
			a := r.Header.Get("Authorization")
			r.Header.Set("Authorization", a[:len(a)-2]+"zz")
			return r
		}, VerifyOptions{}, ErrMalformed},
		{"truncated signature", func() *http.Request {
			r := build(nil)
			a := r.Header.Get("Authorization")
			r.Header.Set("Authorization", a[:len(a)-2])
			return r
		}, VerifyOptions{}, ErrMalformed},
		{"host not signed", func() *http.Request {
			r := build(nil)
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "SignedHeaders=host;", "SignedHeaders=", 1))
			return r
		}, VerifyOptions{}, ErrMalformed},
		{"missing date", func() *http.Request { r := build(nil); r.Header.Del("X-Amz-Date"); return r }, VerifyOptions{}, ErrMalformed},
		{"streaming payload", func() *http.Request {
			r := build(nil)
			r.Header.Set("X-Amz-Content-Sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
			return r
		}, VerifyOptions{}, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opt := c.opt
			opt.SigV4ReadUndeclaredBody = true
			wantErr(t, c.r(), twoSecrets, opt, c.want)

			// Without SigV4ReadUndeclaredBody, a body without
			// X-Amz-Content-Sha256 is refused, and no request whose
			// signature is wrong holds a byte of the budget: the body is
			// read only once the signature over the headers is valid.
			budget := NewBodyBudget(1<<20, 0)
			hold := budget.Hold(netip.Addr{})
			defer hold.Release()
			opt = c.opt
			opt.Body = hold
			r := c.r()
			_, _, err := detectVerify(r, twoSecrets, opt)
			if r.Header.Get("X-Amz-Content-Sha256") == "" && !strings.Contains(r.URL.RawQuery, "X-Amz-Signature") &&
				!errors.Is(err, ErrUndeclaredPayload) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrStale) && !errors.Is(err, ErrScopeMismatch) {
				t.Fatalf("undeclared payload: %v", err)
			}
			if err == nil {
				t.Fatal("passed")
			}
			if c.name != "body vs content sha256" && hold.Held() != 0 {
				t.Fatalf("a refused signature holds %d body bytes (%v)", hold.Held(), err)
			}
		})
	}
	t.Run("third secret not tried", func(t *testing.T) {
		r := build(func(o *v4Opts, r *http.Request) { o.secret = secretC })
		wantErr(t, r, []Secret{{"a", secretA}, {"b", secretB}, {"c", secretC}}, VerifyOptions{SigV4ReadUndeclaredBody: true}, ErrBadSignature)
	})
	t.Run("undeclared payload", func(t *testing.T) {
		// Refused before a byte is read, valid signature or not; the
		// same request without a body passes (the empty body's hash).
		budget := NewBodyBudget(1<<20, 0)
		hold := budget.Hold(netip.Addr{})
		wantErr(t, build(nil), twoSecrets, VerifyOptions{Body: hold}, ErrUndeclaredPayload)
		if hold.Held() != 0 || budget.Used() != 0 {
			t.Fatalf("holds %d bytes", hold.Held())
		}
		r := newReq("DELETE", "/prod/orders/1", "")
		signV4(r, v4opts(secretA))
		wantOK(t, r, twoSecrets, VerifyOptions{Body: hold}, SigV4, "4711", "sa")
	})
}
