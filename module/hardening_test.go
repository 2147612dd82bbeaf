package module_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/keygate/keygate/internal/testcaddy"
	"github.com/keygate/keygate/internal/testredis"
)

// signCavageCovering signs like signCavageHS2019 but over exactly headers
// (nil: no headers parameter at all, the draft's default).
func signCavageCovering(headers []string) reqSigner {
	return func(_ testing.TB, req *http.Request, user, secret string, _ []byte) {
		created := time.Now().Unix()
		cover := headers
		if cover == nil {
			cover = []string{"(created)"} // what the draft defaults to
		}
		var lines []string
		for _, h := range cover {
			switch h {
			case "(request-target)":
				lines = append(lines, h+": "+strings.ToLower(req.Method)+" "+req.URL.RequestURI())
			case "(created)":
				lines = append(lines, h+": "+strconv.FormatInt(created, 10))
			case "host":
				lines = append(lines, "host: "+req.URL.Host)
			default:
				lines = append(lines, h+": "+req.Header.Get(h))
			}
		}
		sig := base64.StdEncoding.EncodeToString(signHMAC512([]byte(secret), strings.Join(lines, "\n")))
		p := fmt.Sprintf(`Signature keyId="%s",algorithm="hs2019",created=%d,`, user, created)
		if headers != nil {
			p += `headers="` + strings.Join(headers, " ") + `",`
		}
		req.Header.Set("Authorization", p+`signature="`+sig+`"`)
	}
}

// sign9421Covering signs per RFC 9421 over exactly comps.
func sign9421Covering(comps ...string) reqSigner {
	return func(_ testing.TB, req *http.Request, user, secret string, _ []byte) {
		var base strings.Builder
		for _, c := range comps {
			var v string
			switch c {
			case "@method":
				v = req.Method
			case "@authority":
				v = req.URL.Host
			case "@path":
				v = req.URL.EscapedPath()
			case "@query":
				v = "?" + req.URL.RawQuery
			case "@target-uri":
				v = req.URL.String()
			default:
				v = req.Header.Get(c)
			}
			fmt.Fprintf(&base, "%q: %s\n", c, v)
		}
		list := "()"
		if len(comps) > 0 {
			list = `("` + strings.Join(comps, `" "`) + `")`
		}
		params := fmt.Sprintf(`%s;created=%d;keyid="%s"`, list, time.Now().Unix(), user)
		base.WriteString(`"@signature-params": ` + params)
		req.Header.Set("Signature-Input", "sig1="+params)
		req.Header.Set("Signature", "sig1=:"+base64.StdEncoding.EncodeToString(signHMAC256([]byte(secret), base.String()))+":")
	}
}

// TestHardeningSignatureCoverage: a valid signature that binds nothing is
// refused, whatever it is replayed as; coverage is logged and counted as
// signature_coverage; routes can require more; signed bodies are bounded.
func TestHardeningSignatureCoverage(t *testing.T) {
	e := startEnv(t, "", "replay_protection off\n\t\tmax_signed_body 1KiB")
	user := e.appUser("acme", "coverage-app")
	sid, secret := e.newSecret(user, "a")

	refused := map[string]reqSigner{
		"cavage without headers":    signCavageCovering(nil),
		"cavage (created) only":     signCavageCovering([]string{"(created)", "host"}),
		"rfc9421 empty list":        sign9421Covering(),
		"rfc9421 method only":       sign9421Covering("@method", "@authority"),
		"rfc9421 path, no query":    sign9421Covering("@method", "@path"),
		"cavage body, no digest":    signCavageCovering([]string{"(request-target)", "(created)"}),
		"rfc9421 body, no digest":   sign9421Covering("@method", "@target-uri"),
		"cavage replayed elsewhere": signCavageCovering([]string{"(created)", "host"}),
	}
	m0 := scrapeMetrics(t, e.srv.AdminAddr)
	for name, sign := range refused {
		t.Run(name, func(t *testing.T) {
			var req *http.Request
			switch {
			case strings.Contains(name, "body"):
				req = e.signedReq(sign, http.MethodPost, "/api/orders?space=1", []byte(`{"n":1}`), user, secret)
			case strings.Contains(name, "replayed"):
				// Signed for a harmless GET, sent as DELETE elsewhere.
				req = e.signedReq(sign, http.MethodGet, "/api/orders/1", nil, user, secret)
				req.Method = http.MethodDelete
				req.URL.Path = "/api/admin/everything"
			default:
				req = e.signedReq(sign, http.MethodGet, "/api/orders?space=1", nil, user, secret)
			}
			expectProblem(t, e.sendSigned(req), http.StatusUnauthorized)
		})
	}
	m1 := scrapeMetrics(t, e.srv.AdminAddr)
	checkDeltas(t, m0, m1, map[string]float64{
		`caddy_keygate_requests_total{result="signature_coverage",scheme="http_signature"}`: float64(len(refused)),
	})
	if n, _ := e.up.snapshot(); n != 0 {
		t.Fatalf("upstream called %d times", n)
	}
	if !strings.Contains(e.srv.Logs(), `"reason":"signature_coverage"`) {
		t.Error("log does not name signature_coverage")
	}

	// Full coverage passes, with and without a body.
	e.expectPass(e.sendSigned(e.signedReq(sign9421Covering("@method", "@path", "@query"), http.MethodGet, "/api/orders?space=1", nil, user, secret)), user, "http_signature", sid)
	e.expectPass(e.sendSigned(e.signedReq(signCavageHS2019, http.MethodPost, "/api/orders", []byte(`{"n":1}`), user, secret)), user, "http_signature", sid)

	// max_signed_body: 413 past it, for a digest check and for SigV4.
	big := bytes.Repeat([]byte("x"), 2048)
	for name, sign := range map[string]reqSigner{"cavage": signCavageHS2019, "rfc9421": signRFC9421, "sigv4": signSigV4} {
		resp := e.sendSigned(e.signedReq(sign, http.MethodPost, "/api/upload", big, user, secret))
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("%s: %d for a body past max_signed_body, want 413", name, resp.StatusCode)
		}
		expectProblem(t, resp, http.StatusRequestEntityTooLarge)
	}
}

// TestHardeningRouteRequirements: require_covered adds host; presigned
// SigV4 URLs live at most sigv4_max_expires.
func TestHardeningRouteRequirements(t *testing.T) {
	e := startEnv(t, "", "replay_protection off\n\t\trequire_covered host")
	user := e.appUser("acme", "strict-app")
	sid, secret := e.newSecret(user, "a")
	expectProblem(t, e.sendSigned(e.signedReq(sign9421Covering("@method", "@path"), http.MethodGet, "/x", nil, user, secret)), http.StatusUnauthorized)
	e.expectPass(e.sendSigned(e.signedReq(sign9421Covering("@method", "@path", "@authority"), http.MethodGet, "/x", nil, user, secret)), user, "http_signature", sid)
	expectProblem(t, e.sendSigned(e.signedReq(signCavageCovering([]string{"(request-target)", "(created)"}), http.MethodGet, "/x", nil, user, secret)), http.StatusUnauthorized)
	e.expectPass(e.sendSigned(e.signedReq(signCavageHS2019, http.MethodGet, "/x", nil, user, secret)), user, "http_signature", sid)

	presign := func(expires time.Duration) *http.Request {
		req, _ := http.NewRequest(http.MethodGet, e.gateway+"/report?id=9&X-Amz-Expires="+strconv.Itoa(int(expires.Seconds())), nil)
		creds := aws.Credentials{AccessKeyID: user, SecretAccessKey: secret}
		u, _, err := v4.NewSigner().PresignHTTP(context.Background(), creds, req, "UNSIGNED-PAYLOAD", "execute-api", "eu-central-1", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		out, _ := http.NewRequest(http.MethodGet, u, nil)
		return out
	}
	e.expectPass(e.sendSigned(presign(15*time.Minute)), user, "sigv4", sid)
	expectProblem(t, e.sendSigned(presign(7*24*time.Hour)), http.StatusUnauthorized)
}

// rawUpstream records headers and trailers of what keygate forwards.
type rawUpstream struct {
	*httptest.Server
	mu       sync.Mutex
	header   http.Header
	trailer  http.Header
	query    string
	received int
}

func newRawUpstream(t *testing.T) *rawUpstream {
	u := &rawUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		u.mu.Lock()
		u.header, u.trailer, u.query = r.Header.Clone(), r.Trailer.Clone(), r.URL.RawQuery
		u.received++
		u.mu.Unlock()
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *rawUpstream) last() (http.Header, http.Header, string, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.header, u.trailer, u.query, u.received
}

// rawRequest writes req verbatim to addr and returns the status code.
func rawRequest(t *testing.T, addr, req string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestHardeningForwardedRequest: what reaches the upstream after keygate
// cannot lose the identity (Connection), carries no credential (sent
// twice, in the query, in trailers) and no forged identity (trailers).
func TestHardeningForwardedRequest(t *testing.T) {
	up := newRawUpstream(t)
	gw, ad := testcaddy.FreePort(t), testcaddy.FreePort(t)
	e := &env{t: t, up: newUpstream(t),
		gateway:  fmt.Sprintf("http://127.0.0.1:%d", gw),
		adminURL: fmt.Sprintf("http://127.0.0.1:%d", ad),
	}
	e.srv = testcaddy.Start(t, gatewayCaddyfile("", "key_query api_key", gw, ad, strings.TrimPrefix(up.URL, "http://")),
		testcaddy.Options{Wait: []string{e.gateway, e.adminURL}})
	e.bootstrap()
	addr := strings.TrimPrefix(e.gateway, "http://")
	key := e.adminKey

	t.Run("connection cannot remove identity", func(t *testing.T) {
		status := rawRequest(t, addr, "GET /x HTTP/1.1\r\nHost: "+addr+"\r\nX-Api-Key: "+key+
			"\r\nConnection: keep-alive, X-Auth-User-Id, x-auth-tenant, X_Auth_Role, X-Auth-Scheme\r\n\r\n")
		if status != http.StatusOK {
			t.Fatalf("status %d", status)
		}
		h, _, _, _ := up.last()
		for _, name := range []string{"X-Auth-User-Id", "X-Auth-Tenant", "X-Auth-Role", "X-Auth-Scheme"} {
			if h.Get(name) == "" {
				t.Errorf("upstream lost %s: %v", name, h)
			}
		}
		if h.Get("X-Auth-User-Id") != e.adminID {
			t.Errorf("user id %q", h.Get("X-Auth-User-Id"))
		}
	})

	t.Run("credential sent twice", func(t *testing.T) {
		for name, req := range map[string]string{
			"bearer and header":        "GET /x HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + key + "\r\nX-Api-Key: " + key + "\r\n\r\n",
			"header and query":         "GET /x?a=1&api_key=" + key + "&b=%20 HTTP/1.1\r\nHost: " + addr + "\r\nX-Api-Key: " + key + "\r\n\r\n",
			"query, underscore header": "GET /x?api_key=" + key + " HTTP/1.1\r\nHost: " + addr + "\r\nX_Api_Key: " + key + "\r\n\r\n",
		} {
			if status := rawRequest(t, addr, req); status != http.StatusOK {
				t.Fatalf("%s: status %d", name, status)
			}
			h, _, q, _ := up.last()
			for k, vs := range h {
				for _, v := range vs {
					if strings.Contains(v, key) {
						t.Errorf("%s: key forwarded in %s", name, k)
					}
				}
			}
			if strings.Contains(q, key) || strings.Contains(q, "api_key") {
				t.Errorf("%s: key forwarded in query %q", name, q)
			}
			if name == "header and query" && q != "a=1&b=%20" {
				t.Errorf("rest of the query changed: %q", q)
			}
		}
	})

	t.Run("trailers", func(t *testing.T) {
		body := "5\r\nhello\r\n0\r\nX-Auth-User-Id: evil\r\nX-Auth-Role: ADMIN\r\nAuthorization: Bearer " + key + "\r\nX-Api-Key: " + key + "\r\nX-Checksum: fine\r\n\r\n"
		status := rawRequest(t, addr, "POST /x HTTP/1.1\r\nHost: "+addr+"\r\nX-Api-Key: "+key+
			"\r\nTransfer-Encoding: chunked\r\nTrailer: X-Auth-User-Id, X-Auth-Role, Authorization, X-Api-Key, X-Checksum\r\n\r\n"+body)
		if status != http.StatusOK {
			t.Fatalf("status %d", status)
		}
		h, tr, _, _ := up.last()
		if h.Get("X-Auth-User-Id") != e.adminID {
			t.Errorf("identity %q", h.Get("X-Auth-User-Id"))
		}
		for _, name := range []string{"X-Auth-User-Id", "X-Auth-Role", "Authorization", "X-Api-Key"} {
			if tr.Get(name) != "" {
				t.Errorf("trailer %s forwarded: %q", name, tr.Get(name))
			}
		}
		if tr.Get("X-Checksum") != "fine" {
			t.Errorf("an unrelated trailer was lost: %v", tr)
		}
	})
}

// TestHardeningFailOpenTokens: a fail_open route keeps accepting access
// tokens it can verify from cache while Redis is down, as it does keys.
func TestHardeningFailOpenTokens(t *testing.T) {
	redisSrv := testredis.StartServer(t)
	up := newUpstream(t)
	gw, ad := testcaddy.FreePort(t), testcaddy.FreePort(t)
	e := &env{t: t, up: up,
		gateway:  fmt.Sprintf("http://127.0.0.1:%d", gw),
		adminURL: fmt.Sprintf("http://127.0.0.1:%d", ad),
	}
	e.srv = testcaddy.Start(t, fmt.Sprintf(`{
	admin {admin}
	keygate {
		store redis {
			address %s
			timeout 100ms
		}
		master_key AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
	}
}
http://127.0.0.1:%d {
	handle %s {
		keygate_token
	}
	handle {
		keygate {
			identity_headers all
			rate_limit_headers both
			tenant acme
			limit 1000
			on_store_error fail_open
		}
		reverse_proxy %s
	}
}
http://127.0.0.1:%d {
	keygate_admin
}
`, redisSrv.Addr, gw, tokenPath, up.addr(), ad), testcaddy.Options{Wait: []string{e.gateway, e.adminURL}})
	e.bootstrap()
	tok := e.fetchToken(e.adminKey)
	if s := e.bearer("/x", tok); s != http.StatusOK {
		t.Fatalf("token before the outage: %d", s)
	}
	redisSrv.Stop()
	if s := e.bearer("/x", tok); s != http.StatusOK {
		t.Fatalf("cached token on a fail_open route during the outage: %d, want 200", s)
	}
	resp := e.get("/x", map[string]string{"X-Api-Key": e.adminKey})
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("cached key during the outage: %d", resp.StatusCode)
	}
}

// TestHardeningAccessLogs: with the access log the README shows (format
// keygate), no credential reaches the log, whichever way it was sent; with
// a plain access log, keygate warns at start.
func TestHardeningAccessLogs(t *testing.T) {
	up := newUpstream(t)
	logFile := t.TempDir() + "/access.log"
	gw, ad := testcaddy.FreePort(t), testcaddy.FreePort(t)
	e := &env{t: t, up: up,
		gateway:  fmt.Sprintf("http://127.0.0.1:%d", gw),
		adminURL: fmt.Sprintf("http://127.0.0.1:%d", ad),
	}
	site := func(logFormat string) string {
		return fmt.Sprintf(`{
	admin {admin}
}
http://127.0.0.1:%d {
	log {
		output file %s
		%s
	}
	keygate {
		identity_headers all
		rate_limit_headers both
		tenant acme
		key_query api_key
		replay_protection off
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	keygate_admin
}
`, gw, logFile, logFormat, up.addr(), ad)
	}
	e.srv = testcaddy.Start(t, site("format keygate"), testcaddy.Options{Wait: []string{e.gateway, e.adminURL}})
	e.bootstrap()
	user := e.appUser("acme", "logged-app")
	_, secret := e.newSecret(user, "a")

	var secrets []string
	send := func(req *http.Request) {
		t.Helper()
		resp := e.sendSigned(req)
		resp.Body.Close()
		for _, h := range []string{"X-Api-Key", "Signature", "Signature-Input", "X-Mac-Value", "Authorization"} {
			if v := req.Header.Get(h); v != "" {
				secrets = append(secrets, strings.TrimPrefix(v, "Bearer "))
			}
		}
	}
	plain := func(path string, hdr map[string]string) *http.Request {
		req, _ := http.NewRequest(http.MethodGet, e.gateway+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		return req
	}
	send(plain("/x", map[string]string{"X-Api-Key": e.adminKey}))
	send(plain("/x", map[string]string{"Authorization": "Bearer " + e.adminKey}))
	send(plain("/x?api_key="+e.adminKey, nil))
	send(plain("/x", map[string]string{"X-Api-Key": e.adminKey + "x"})) // refused: logged too
	send(e.signedReq(signRFC9421, http.MethodGet, "/signed?a=1", nil, user, secret))
	send(e.signedReq(signWalleeMAC, http.MethodGet, "/mac", nil, user, secret))
	secrets = append(secrets, e.adminKey)

	var logged string
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, _ := os.ReadFile(logFile)
		logged = string(data)
		if strings.Count(logged, "handled request") >= 6 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Count(logged, "handled request") < 6 {
		t.Fatalf("access log has %d entries: %s", strings.Count(logged, "handled request"), logged)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(logged, s) {
			t.Errorf("credential %.12s… in the access log", s)
		}
	}
	if !strings.Contains(logged, `"uri":"/x?"`) && !strings.Contains(logged, `"uri":"/x"`) {
		t.Errorf("the query filter should keep the path: %s", logged)
	}
	if strings.Contains(e.srv.Logs(), "do not use the keygate format") {
		t.Error("warned although the log uses the keygate format")
	}

	// The same site with Caddy's plain access log: keygate warns.
	e.srv.Stop()
	e.srv = testcaddy.Start(t, site("format json"), testcaddy.Options{Wait: []string{e.gateway}, DataHome: e.srv.DataHome})
	if !strings.Contains(e.srv.Logs(), "do not use the keygate format") {
		t.Errorf("no warning about credentials in the access log:\n%s", e.srv.Logs())
	}
}
