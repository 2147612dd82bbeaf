package module_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testcaddy"
	"github.com/keygate/keygate/internal/testredis"
)

// The body-budget tests (issue 23, item 1): every byte a signed request
// reserves from signed_body_buffer comes back when the request ends,
// whatever the outcome. On the code before the fix, a replayed signed
// upload, or one refused because the replay store was unavailable, kept
// its bytes for good, and a node then answered 503 to every signed upload.

// budgetCaddyfile is a gateway for tenant acme with a 256 KiB body buffer
// (store: extra options of the keygate global block) whose routes check
// bodies up to 64 KiB; /role/ requires the role ADMIN. The templates'
// {gw}, {api} and {up} are filled in by startGateway.
func budgetCaddyfile(store string) string {
	route := `
			tenant acme
			identity_headers all
			max_signed_body 64KiB
			sigv4_undeclared_payload read`
	return `{
	admin {admin}
	keygate {
		signed_body_buffer 256KiB
		` + store + `
	}
}
http://127.0.0.1:{gw} {
	handle /role/* {
		keygate {` + route + `
			require_role ADMIN
		}
		reverse_proxy {up}
	}
	handle {
		keygate {` + route + `
		}
		reverse_proxy {up}
	}
}
http://127.0.0.1:{api} {
	keygate_admin
}
`
}

// budgetSchemes are the signed schemes, and whether they read the body.
var budgetSchemes = []struct {
	label string
	sign  reqSigner
	body  bool
}{
	{"cavage", signCavageHS2019, true},
	{"rfc9421", signRFC9421, true},
	{"sigv4", signSigV4, true},
	{"sigv4_undeclared", signSigV4Undeclared, true},
	{"wallee_mac", signWalleeMAC, false},
	{"wallee_jwt", signWalleeJWT, false},
}

// heldBytes reads the caddy_keygate_signed_body_bytes gauge.
func (e *env) heldBytes() float64 {
	e.t.Helper()
	m := scrapeMetrics(e.t.(*testing.T), e.srv.AdminAddr)
	v, ok := m.samples["caddy_keygate_signed_body_bytes"]
	if !ok {
		e.t.Fatal("no caddy_keygate_signed_body_bytes gauge")
	}
	return v
}

// awaitBudgetZero waits until no byte of the body budget is held: the
// release runs when the request's handler returns, which may be just after
// the client has read the answer. A hold that is not released within 10 s
// never is.
func (e *env) awaitBudgetZero(what string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := e.heldBytes()
		if v == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: %v bytes of the body budget still held", what, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// budgetBody is a signed upload that fits max_signed_body; five of them
// fill the 256 KiB budget.
func budgetBody(n int64) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("%08d", n)), 48<<10/8)
}

// status sends req and returns its status, the body discarded.
func (e *env) status(req *http.Request) int {
	e.t.Helper()
	resp := e.sendSigned(req)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// hangUp sends req's head and half its body on a raw connection, then
// closes it: the client is gone while keygate reads the body.
func (e *env) hangUp(req *http.Request) {
	e.t.Helper()
	var raw bytes.Buffer
	if err := req.Write(&raw); err != nil {
		e.t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(e.gateway, "http://"), 2*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	b := raw.Bytes()
	_, _ = c.Write(b[:len(b)-int(req.ContentLength)/2])
	time.Sleep(10 * time.Millisecond) // let keygate start reading
	c.Close()
}

// budgetUsers are the users of the budget tests.
type budgetUsers struct {
	user, secret        string // ACTIVE permission in acme
	stranger, strangerS string // beta only: 403 on acme's route
	limited, limitedS   string // requestLimit 1
	seq                 atomic.Int64
	e                   *env
}

func newBudgetUsers(e *env) *budgetUsers {
	e.t.Helper()
	u := &budgetUsers{e: e}
	u.user = e.appUser("acme", "uploader")
	_, u.secret = e.newSecret(u.user, "a")
	e.api(http.MethodPost, "/v1/tenants", map[string]any{"id": "beta"}, http.StatusCreated)
	u.stranger = e.appUser("beta", "stranger")
	_, u.strangerS = e.newSecret(u.stranger, "a")
	u.limited = e.appUser("acme", "limited")
	_, u.limitedS = e.newSecret(u.limited, "a")
	e.setRequestLimit(u.limited, 1)
	// Its one request per window (2m), used up.
	if got := e.status(u.req(signWalleeMAC, "/api/up", nil, u.limited, u.limitedS)); got != http.StatusOK {
		e.t.Fatalf("limited user's first request: %d", got)
	}
	return u
}

// req builds a signed POST of body to a path of its own (signatures are
// per second: two requests to one path in one second would be a replay).
func (u *budgetUsers) req(sign reqSigner, prefix string, body []byte, user, secret string) *http.Request {
	n := u.seq.Add(1)
	return u.e.signedReq(sign, http.MethodPost, prefix+"?n="+strconv.FormatInt(n, 10), body, user, secret)
}

// chunked is req for a body sent without a Content-Length (signed so:
// SigV4 signs the Content-Length when there is one).
func (u *budgetUsers) chunked(sign reqSigner, body []byte) *http.Request {
	n := u.seq.Add(1)
	req, err := http.NewRequest(http.MethodPost, u.e.gateway+"/api/up?n="+strconv.FormatInt(n, 10), bytes.NewReader(body))
	if err != nil {
		u.e.t.Fatal(err)
	}
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")
	sign(u.e.t, req, u.user, u.secret, body)
	return req
}

// tampered is a signed request whose body was swapped, same length, after
// signing.
func (u *budgetUsers) tampered(sign reqSigner, body []byte) *http.Request {
	r := u.req(sign, "/api/up", body, u.user, u.secret)
	other := bytes.Clone(body)
	other[0] ^= 1
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(other)), nil }
	return r
}

// TestBodyBudgetReleased drives every outcome of every signed scheme
// through a real keygate (file store, in-process replay guard) and checks
// after each that no byte of the body budget is held, and at the end that
// signed uploads still pass.
func TestBodyBudgetReleased(t *testing.T) {
	e := startGateway(t, budgetCaddyfile(""), newUpstream(t), testcaddy.Options{})
	e.bootstrap()
	testBodyBudgetReleased(t, e, newBudgetUsers(e))
}

func testBodyBudgetReleased(t *testing.T, e *env, u *budgetUsers) {
	body := budgetBody(1)
	big := bytes.Repeat([]byte("x"), 80<<10)
	for _, s := range budgetSchemes {
		t.Run(s.label, func(t *testing.T) {
			e := *e
			e.t = t
			step := func(what string, req *http.Request, want int) {
				t.Helper()
				if got := e.status(req); got != want {
					t.Fatalf("%s: %d, want %d", what, got, want)
				}
				e.awaitBudgetZero(what)
			}
			ok := u.req(s.sign, "/api/up", body, u.user, u.secret)
			step("accepted", ok, http.StatusOK)
			// The case: replays of a signed upload.
			for i := range 6 {
				step("replayed "+strconv.Itoa(i+1), ok, http.StatusUnauthorized)
			}
			step("no permission in the tenant", u.req(s.sign, "/api/up", body, u.stranger, u.strangerS), http.StatusForbidden)
			step("required role missing", u.req(s.sign, "/role/up", body, u.user, u.secret), http.StatusForbidden)
			step("limited", u.req(s.sign, "/api/up", body, u.limited, u.limitedS), http.StatusTooManyRequests)
			step("wrong secret", u.req(s.sign, "/api/up", body, u.user, u.strangerS), http.StatusUnauthorized)
			if s.body {
				step("body swapped", u.tampered(s.sign, body), http.StatusUnauthorized)
				step("too large", u.req(s.sign, "/api/up", big, u.user, u.secret), http.StatusRequestEntityTooLarge)
				step("too large, chunked", u.chunked(s.sign, big), http.StatusRequestEntityTooLarge)
				step("chunked", u.chunked(s.sign, body), http.StatusOK)
			}
			e.hangUp(u.req(s.sign, "/api/up", body, u.user, u.secret))
			e.awaitBudgetZero("client gone")
		})
	}
	// Nothing leaked: the buffer takes five uploads at once, as at the start.
	var wg sync.WaitGroup
	codes := make([]int, 5)
	for i := range codes {
		req := u.req(signCavageHS2019, "/api/up", budgetBody(int64(i)), u.user, u.secret)
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = e.status(req)
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Fatalf("upload %d after the refusals: %d (codes %v)", i, c, codes)
		}
	}
	e.awaitBudgetZero("after the uploads")
}

// budgetRedis is the store block of a Redis store on a private server.
func budgetRedis(addr, timeout string) string {
	return `store redis {
			address ` + addr + `
			timeout ` + timeout + `
		}
		master_key a2V5Z2F0ZSBzaWduZWQtcmVxdWVzdCB0ZXN0IGtleSE=`
}

// TestBodyBudgetReleasedRedis: the same with the Redis store (replay guard
// in Redis), plus the second case: uploads refused because the
// replay store does not answer (CLIENT PAUSE WRITE on a private server).
func TestBodyBudgetReleasedRedis(t *testing.T) {
	rs := testredis.StartServer(t)
	e := startGateway(t, budgetCaddyfile(budgetRedis(rs.Addr, "150ms")), newUpstream(t), testcaddy.Options{})
	e.bootstrap()
	u := newBudgetUsers(e)
	testBodyBudgetReleased(t, e, u)

	rc := rs.Client()
	for _, s := range budgetSchemes {
		if !s.body {
			continue
		}
		// The user and its secrets are cached (reads are not paused
		// anyway); SET NX of the replay guard waits and times out.
		if got := e.status(u.req(s.sign, "/api/up", budgetBody(2), u.user, u.secret)); got != http.StatusOK {
			t.Fatalf("%s: warm-up %d", s.label, got)
		}
		if err := rc.Do(context.Background(), "CLIENT", "PAUSE", "1500", "WRITE").Err(); err != nil {
			t.Fatal(err)
		}
		for i := range 6 {
			if got := e.status(u.req(s.sign, "/api/up", budgetBody(int64(i)), u.user, u.secret)); got != http.StatusServiceUnavailable {
				t.Fatalf("%s: replay store paused: %d, want 503", s.label, got)
			}
		}
		e.awaitBudgetZero(s.label + ": replay store unavailable")
		if err := rc.Do(context.Background(), "CLIENT", "UNPAUSE").Err(); err != nil {
			t.Fatal(err)
		}
		if got := e.status(u.req(s.sign, "/api/up", budgetBody(3), u.user, u.secret)); got != http.StatusOK {
			t.Fatalf("%s: after the pause: %d", s.label, got)
		}
		e.awaitBudgetZero(s.label + ": after the pause")
	}
}

// TestBodyBudgetProperty sends random sequences of signed requests from
// three clients at once (accepted, replayed, body swapped, too large,
// chunked, client gone, replay store paused, refused for permission or
// limit) and checks that afterwards no byte of the budget is held and
// signed uploads pass. The seed is logged.
func TestBodyBudgetProperty(t *testing.T) {
	rs := testredis.StartServer(t)
	e := startGateway(t, budgetCaddyfile(budgetRedis(rs.Addr, "150ms")), newUpstream(t), testcaddy.Options{})
	e.bootstrap()
	u := newBudgetUsers(e)
	rc := rs.Client()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)

	type op func(rng *rand.Rand, sign reqSigner) string
	var pauses atomic.Int64
	ops := []op{
		func(_ *rand.Rand, sign reqSigner) string {
			r := u.req(sign, "/api/up", budgetBody(1), u.user, u.secret)
			// Only a signature that was let through is spent: after a
			// 503 the same request may pass.
			a, b := e.status(r), e.status(r)
			if a == http.StatusOK && b != http.StatusUnauthorized && b != http.StatusServiceUnavailable {
				return fmt.Sprintf("replay answered %d", b)
			}
			if a == http.StatusOK && b == http.StatusServiceUnavailable {
				if c := e.status(r); c == http.StatusOK {
					return "replay let through after a 503"
				}
			}
			return ""
		},
		func(_ *rand.Rand, sign reqSigner) string {
			if got := e.status(u.tampered(sign, budgetBody(2))); got != http.StatusUnauthorized && got != http.StatusServiceUnavailable {
				return fmt.Sprintf("swapped body answered %d", got)
			}
			return ""
		},
		func(rng *rand.Rand, sign reqSigner) string {
			big := bytes.Repeat([]byte("y"), 64<<10+1+rng.IntN(32<<10))
			r := u.req(sign, "/api/up", big, u.user, u.secret)
			if rng.IntN(2) == 0 {
				r = u.chunked(sign, big)
			}
			if got := e.status(r); got != http.StatusRequestEntityTooLarge && got != http.StatusServiceUnavailable {
				return fmt.Sprintf("too large answered %d", got)
			}
			return ""
		},
		func(_ *rand.Rand, sign reqSigner) string {
			e.hangUp(u.req(sign, "/api/up", budgetBody(3), u.user, u.secret))
			return ""
		},
		func(rng *rand.Rand, sign reqSigner) string {
			if pauses.Add(1) > 4 {
				return ""
			}
			ms := strconv.Itoa(100 + rng.IntN(300))
			if err := rc.Do(context.Background(), "CLIENT", "PAUSE", ms, "WRITE").Err(); err != nil {
				return "pause: " + err.Error()
			}
			return ""
		},
		func(_ *rand.Rand, sign reqSigner) string {
			if got := e.status(u.req(sign, "/api/up", budgetBody(4), u.stranger, u.strangerS)); got != http.StatusForbidden && got != http.StatusServiceUnavailable {
				return fmt.Sprintf("stranger answered %d", got)
			}
			return ""
		},
		func(_ *rand.Rand, sign reqSigner) string {
			if got := e.status(u.req(sign, "/api/up", budgetBody(5), u.limited, u.limitedS)); got == http.StatusOK {
				return "limited user let through"
			}
			return ""
		},
		func(_ *rand.Rand, sign reqSigner) string {
			switch got := e.status(u.chunked(sign, budgetBody(6))); got {
			case http.StatusOK, http.StatusServiceUnavailable:
			default:
				return fmt.Sprintf("chunked upload answered %d", got)
			}
			return ""
		},
	}
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for range 25 {
				s := budgetSchemes[rng.IntN(4)] // the schemes that read bodies
				if msg := ops[rng.IntN(len(ops))](rng, s.sign); msg != "" {
					errs <- s.label + ": " + msg
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
	_ = rc.Do(context.Background(), "CLIENT", "UNPAUSE").Err()
	e.awaitBudgetZero("after the random sequence")
	for _, s := range budgetSchemes[:4] {
		if got := e.status(u.req(s.sign, "/api/up", budgetBody(7), u.user, u.secret)); got != http.StatusOK {
			t.Fatalf("%s after the random sequence: %d", s.label, got)
		}
	}
	e.awaitBudgetZero("at the end")
}

// slowUpload opens a connection from local (an address of 127.0.0.0/8)
// and sends head, then one byte of the body every 50 ms until the test
// ends. (Nothing reads the answer: net/http drains a small unread body
// before it answers, so a refused trickle is answered when it ends.)
func slowUpload(t *testing.T, gateway string, local net.IP, head string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: local}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", strings.TrimPrefix(gateway, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); c.Close() })
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
			}
		}
	}()
}

// sigV4Head is the head of a SigV4 PUT from the attack: a known
// user id, a 60 KiB body declared, Signature=000…; with payloadHash set it
// also declares X-Amz-Content-Sha256.
func sigV4Head(host, user, path, payloadHash string) string {
	now := time.Now().UTC()
	date := now.Format("20060102")
	h := "PUT " + path + " HTTP/1.1\r\nHost: " + host + "\r\nContent-Length: 61440\r\n" +
		"X-Amz-Date: " + now.Format("20060102T150405Z") + "\r\n"
	signed := "host;x-amz-date"
	if payloadHash != "" {
		h += "X-Amz-Content-Sha256: " + payloadHash + "\r\n"
		signed += ";x-amz-content-sha256"
	}
	return h + "Authorization: AWS4-HMAC-SHA256 Credential=" + user + "/" + date + "/eu-central-1/execute-api/aws4_request, " +
		"SignedHeaders=" + signed + ", Signature=" + strings.Repeat("0", 64) + "\r\n\r\n"
}

// awaitMetric waits until the sample name has grown by want since m0.
func (e *env) awaitMetric(m0 scrape, name string, want float64) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := scrapeMetrics(e.t.(*testing.T), e.srv.AdminAddr).samples[name] - m0.samples[name]
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s grew by %v in 10s, want %v", name, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSigV4NoBodyBeforeSignature (issue 23, item 3): slow SigV4 uploads
// with a wrong signature for a known user (the attack) hold no
// byte of the budget on a route that does not read undeclared payloads
// (the default): they are refused before their body is read. On a route
// that reads them (sigv4_undeclared_payload read), one client address
// holds at most signed_body_per_client, so legitimate uploads from another
// address pass while they trickle.
func TestSigV4NoBodyBeforeSignature(t *testing.T) {
	cf := `{
	admin {admin}
	keygate {
		signed_body_buffer 256KiB
		signed_body_per_client 64KiB
	}
}
http://127.0.0.1:{gw} {
	handle /read/* {
		keygate {
			tenant acme
			max_signed_body 64KiB
			sigv4_undeclared_payload read
		}
		reverse_proxy {up}
	}
	handle {
		keygate {
			tenant acme
			max_signed_body 64KiB
		}
		reverse_proxy {up}
	}
}
http://127.0.0.1:{api} {
	keygate_admin
}
`
	e := startGateway(t, cf, newUpstream(t), testcaddy.Options{})
	e.bootstrap()
	u := newBudgetUsers(e)
	host := strings.TrimPrefix(e.gateway, "http://")
	attacker := net.ParseIP("127.0.0.2") // to 127.0.0.1, from another address
	legit := func(what string) {
		t.Helper()
		for _, s := range budgetSchemes[:3] {
			if got := e.status(u.req(s.sign, "/read/up", budgetBody(1), u.user, u.secret)); got != http.StatusOK {
				t.Fatalf("%s: legitimate %s upload: %d", what, s.label, got)
			}
		}
	}

	// Default route: refused before a byte is read, declared hash or not.
	m0 := scrapeMetrics(t, e.srv.AdminAddr)
	for i := range 8 {
		hash := ""
		if i%2 == 1 {
			hash = strings.Repeat("ab", 32)
		}
		slowUpload(t, e.gateway, attacker, sigV4Head(host, u.user, "/up/"+strconv.Itoa(i), hash))
	}
	e.awaitMetric(m0, `caddy_keygate_requests_total{result="unauthenticated",scheme="sigv4"}`, 8)
	if v := e.heldBytes(); v != 0 {
		t.Fatalf("refused signatures hold %v bytes", v)
	}
	legit("default route")

	// read route: the attacker's address gets its share, no more.
	m1 := scrapeMetrics(t, e.srv.AdminAddr)
	for i := range 6 {
		slowUpload(t, e.gateway, attacker, sigV4Head(host, u.user, "/read/up/"+strconv.Itoa(i), ""))
	}
	e.awaitMetric(m1, `caddy_keygate_requests_total{result="busy",scheme="sigv4"}`, 5)
	if v := e.heldBytes(); v > 64<<10 {
		t.Fatalf("one client holds %v bytes, over its 64 KiB share", v)
	}
	legit("while one client trickles")
}
