package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A valid signature that binds too little must be refused with ErrCoverage
// however correct its MAC is: that is the whole point of the rule.
func TestCavageCoverage(t *testing.T) {
	created := testNow.Unix()
	cases := []struct {
		name    string
		method  string
		body    string
		headers []string
		require []string
		want    error
	}{
		{"no headers parameter", "GET", "", nil, nil, ErrCoverage},
		{"created only", "GET", "", []string{"(created)"}, nil, ErrCoverage},
		{"date only", "GET", "", []string{"date"}, nil, ErrCoverage},
		{"request-target", "GET", "", []string{"(request-target)", "(created)"}, nil, nil},
		{"body without digest", "POST", `{"a":1}`, []string{"(request-target)", "(created)"}, nil, ErrCoverage},
		{"body with digest", "POST", `{"a":1}`, []string{"(request-target)", "(created)", "digest"}, nil, nil},
		{"route requires host", "GET", "", []string{"(request-target)", "(created)"}, []string{"@authority"}, ErrCoverage},
		{"route requires host, covered", "GET", "", []string{"(request-target)", "(created)", "host"}, []string{"@authority"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newReq(c.method, "/v1/things?x=1", c.body)
			r.Header.Set("Date", testNow.Format(http.TimeFormat))
			if c.body != "" {
				r.Header.Set("Digest", bodyDigest(c.body))
			}
			p := signCavage(r, "app-7", "hs2019", c.headers, secretA, created, 0)
			if c.headers == nil {
				p = strings.Replace(p, `,headers=""`, "", 1)
			}
			r.Header.Set("Signature", p)
			opt := VerifyOptions{Require: c.require}
			if c.want == nil {
				wantOK(t, r, twoSecrets, opt, HTTPSignature, "app-7", "sa")
				return
			}
			wantErr(t, r, twoSecrets, opt, c.want)
		})
	}
}

func TestRFC9421Coverage(t *testing.T) {
	params := `;created=` + strconv.FormatInt(testNow.Unix(), 10) + `;keyid="app-9"`
	cases := []struct {
		name, method, target, body string
		comps, require             []string
		want                       error
	}{
		{"empty list", "GET", "/p", "", []string{}, nil, ErrCoverage},
		{"method only", "GET", "/p", "", []string{"@method"}, nil, ErrCoverage},
		{"path only", "GET", "/p", "", []string{"@path"}, nil, ErrCoverage},
		{"method and path", "GET", "/p", "", []string{"@method", "@path"}, nil, nil},
		{"query not covered", "GET", "/p?id=1", "", []string{"@method", "@path"}, nil, ErrCoverage},
		{"method path query", "GET", "/p?id=1", "", []string{"@method", "@path", "@query"}, nil, nil},
		{"target-uri", "GET", "/p?id=1", "", []string{"@method", "@target-uri"}, nil, nil},
		{"request-target", "GET", "/p?id=1", "", []string{"@method", "@request-target"}, nil, nil},
		{"body without digest", "POST", "/p", `{"n":1}`, []string{"@method", "@target-uri"}, nil, ErrCoverage},
		{"body with digest", "POST", "/p", `{"n":1}`, []string{"@method", "@target-uri", "content-digest"}, nil, nil},
		{"route requires authority", "GET", "/p", "", []string{"@method", "@path"}, []string{"@authority"}, ErrCoverage},
		{"route requires authority, covered", "GET", "/p", "", []string{"@method", "@path", "@authority"}, []string{"@authority"}, nil},
		{"route requires header", "GET", "/p", "", []string{"@method", "@target-uri"}, []string{"x-tenant"}, ErrCoverage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newReq(c.method, c.target, c.body)
			if c.body != "" {
				sum := sha256.Sum256([]byte(c.body))
				r.Header.Set("Content-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(sum[:])+":")
			}
			sign9421(r, "sig", c.comps, params, []byte(secretA))
			opt := VerifyOptions{Require: c.require}
			if c.want == nil {
				wantOK(t, r, twoSecrets, opt, HTTPSignature, "app-9", "sa")
				return
			}
			wantErr(t, r, twoSecrets, opt, c.want)
		})
	}
}

func TestSigV4PresignExpiryCap(t *testing.T) {
	build := func(expires int) *http.Request {
		r := newReq("GET", "/prod/report?id=9", "")
		o := v4opts(secretA)
		o.presign, o.expires = true, expires
		signV4(r, o)
		return r
	}
	wantOK(t, build(900), twoSecrets, VerifyOptions{}, SigV4, "4711", "sa")
	wantErr(t, build(901), twoSecrets, VerifyOptions{}, ErrStale)
	wantOK(t, build(3600), twoSecrets, VerifyOptions{MaxPresignExpiry: time.Hour}, SigV4, "4711", "sa")
}

// chunkedBody hides its length, as a chunked upload does.
type chunkedBody struct{ io.Reader }

func (chunkedBody) Close() error { return nil }

func TestBodyBudget(t *testing.T) {
	body := strings.Repeat("b", 100<<10)
	signed := func(chunked bool) *http.Request {
		r := newReq("POST", "/v1/up", body)
		if chunked {
			r.ContentLength = -1
			r.Body = chunkedBody{strings.NewReader(body)}
		}
		r.Header.Set("Digest", bodyDigest(body))
		r.Header.Set("Signature", signCavage(r, "app-7", "hs2019", []string{"(request-target)", "(created)", "digest"}, secretA, testNow.Unix(), 0))
		return r
	}
	for _, chunked := range []bool{false, true} {
		t.Run("chunked="+strconv.FormatBool(chunked), func(t *testing.T) {
			b := NewBodyBudget(1<<20, 0)
			hold := b.Hold(netip.Addr{})
			r := signed(chunked)
			wantOK(t, r, twoSecrets, VerifyOptions{Body: hold}, HTTPSignature, "app-7", "sa")
			held := hold.Held()
			if held < int64(len(body)) || held > int64(len(body))+readChunk || b.Used() != held {
				t.Fatalf("held %d, used %d, body %d", held, b.Used(), len(body))
			}
			got, _ := io.ReadAll(r.Body)
			if string(got) != body {
				t.Fatal("upstream would not get the body")
			}
			hold.Release()
			hold.Release() // idempotent
			if b.Used() != 0 || hold.Held() != 0 {
				t.Fatalf("used %d after release", b.Used())
			}

			// A budget smaller than the body: refused before it is all
			// read; what was read stays held until the owner releases it.
			small := NewBodyBudget(64<<10, 0)
			sh := small.Hold(netip.Addr{})
			wantErr(t, signed(chunked), twoSecrets, VerifyOptions{Body: sh}, ErrBodyBudget)
			if small.Used() != sh.Held() || sh.Held() > 64<<10 {
				t.Fatalf("budget says %d, hold %d", small.Used(), sh.Held())
			}
			sh.Release()
			if small.Used() != 0 {
				t.Fatalf("a refused request still holds %d bytes after release", small.Used())
			}
		})
	}
	t.Run("concurrent", func(t *testing.T) {
		b := NewBodyBudget(250<<10, 0) // two bodies fit, not three
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok, refused := 0, 0
		const n = 8
		holds := make([]*BodyHold, n)
		for i := range n {
			wg.Add(1)
			holds[i] = b.Hold(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}))
			go func() {
				defer wg.Done()
				r := signed(false)
				_, _, err := detectVerify(r, twoSecrets, VerifyOptions{Body: holds[i]})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, ErrBodyBudget):
					refused++
				default:
					t.Errorf("verify: %v", err)
				}
			}()
		}
		wg.Wait()
		if ok > 2 || ok+refused != n || b.Used() > 250<<10 {
			t.Fatalf("ok %d refused %d used %d", ok, refused, b.Used())
		}
		for _, h := range holds {
			h.Release()
		}
		if b.Used() != 0 {
			t.Fatalf("used %d after every hold is released", b.Used())
		}
	})
	t.Run("per client", func(t *testing.T) {
		// One client may hold 150 KiB of 1 MiB: its second upload is
		// refused while another client's passes.
		b := NewBodyBudget(1<<20, 150<<10)
		a, other := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
		h1 := b.Hold(a)
		wantOK(t, signed(false), twoSecrets, VerifyOptions{Body: h1}, HTTPSignature, "app-7", "sa")
		h2 := b.Hold(a)
		wantErr(t, signed(false), twoSecrets, VerifyOptions{Body: h2}, ErrBodyBudget)
		h3 := b.Hold(other)
		wantOK(t, signed(false), twoSecrets, VerifyOptions{Body: h3}, HTTPSignature, "app-7", "sa")
		if b.UsedBy(a) != h1.Held()+h2.Held() || b.UsedBy(other) != h3.Held() {
			t.Fatalf("per client: %d, %d", b.UsedBy(a), b.UsedBy(other))
		}
		h1.Release()
		h4 := b.Hold(a)
		wantOK(t, signed(false), twoSecrets, VerifyOptions{Body: h4}, HTTPSignature, "app-7", "sa")
		for _, h := range []*BodyHold{h2, h3, h4} {
			h.Release()
		}
		if b.Used() != 0 || b.UsedBy(a) != 0 || len(b.clients) != 0 {
			t.Fatalf("used %d, %d clients after release", b.Used(), len(b.clients))
		}
	})
	t.Run("too large", func(t *testing.T) {
		wantErr(t, signed(true), twoSecrets, VerifyOptions{MaxBody: 1000}, ErrBodyTooLarge)
	})
}

// Verified without its body (forward auth), a signature over a body digest
// is refused with ErrNoBody; one that covers no body still verifies.
func TestVerifyNoBody(t *testing.T) {
	r := newReq("GET", "/v1/x", "")
	r.Header.Set("Digest", bodyDigest(`{"a":1}`))
	r.Header.Set("Signature", signCavage(r, "app-7", "hs2019", []string{"(request-target)", "(created)", "digest"}, secretA, testNow.Unix(), 0))
	wantErr(t, r, twoSecrets, VerifyOptions{NoBody: true}, ErrNoBody)

	r = newReq("GET", "/v1/x", "")
	r.Header.Set("Signature", signCavage(r, "app-7", "hs2019", []string{"(request-target)", "(created)"}, secretA, testNow.Unix(), 0))
	wantOK(t, r, twoSecrets, VerifyOptions{NoBody: true}, HTTPSignature, "app-7", "sa")

	r = newReq("PUT", "/prod/orders/1", "")
	o := v4opts(secretA)
	o.payloadHash = strings.Repeat("ab", 32)
	r.Header.Set("X-Amz-Content-Sha256", o.payloadHash)
	o.signed = []string{"x-amz-content-sha256"}
	signV4(r, o)
	wantErr(t, r, twoSecrets, VerifyOptions{NoBody: true}, ErrNoBody)
}
