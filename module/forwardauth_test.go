package module_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testcaddy"
)

// forwardAuthEnv is keygate_auth behind a real proxy: edge is the proxy's
// address, which asks keygate before forwarding to the recording upstream.
type forwardAuthEnv struct {
	*env
	edge      string // the proxy clients call
	authURL   string // keygate_auth, trusting 127.0.0.1
	untrusted string // keygate_auth on a server without trusted_proxies
}

// readmeBlocks returns the fenced blocks of lang in README.md's section
// that starts with heading, in order: the tests run the README's snippets
// as written.
func readmeBlocks(t *testing.T, heading, lang string) []string {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i := strings.Index(text, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README has no section %q", heading)
	}
	section := text[i+len(heading)+2:]
	if j := strings.Index(section, "\n## "); j >= 0 {
		section = section[:j]
	}
	var out []string
	for {
		start := strings.Index(section, "```"+lang+"\n")
		if start < 0 {
			return out
		}
		section = section[start+len(lang)+4:]
		end := strings.Index(section, "\n```")
		if end < 0 {
			t.Fatalf("unterminated %s block in %q", lang, heading)
		}
		out = append(out, section[:end+1])
		section = section[end+4:]
	}
}

const forwardAuthHeading = "## keygate behind another proxy: forward auth"

// startForwardAuth runs the README's keygate_auth server (with the route's
// limit lowered to 5 for the test), a second keygate_auth server that
// trusts no proxy, and the admin API. With caddyEdge it also runs the
// README's forward_auth site in front.
func startForwardAuth(t *testing.T, caddyEdge bool) *forwardAuthEnv {
	t.Helper()
	up := newUpstream(t)
	authPort, untrustedPort, ad, edgePort := testcaddy.FreePort(t), testcaddy.FreePort(t), testcaddy.FreePort(t), testcaddy.FreePort(t)
	f := &forwardAuthEnv{
		env: &env{t: t, up: up,
			gateway:  fmt.Sprintf("http://127.0.0.1:%d", edgePort),
			adminURL: fmt.Sprintf("http://127.0.0.1:%d", ad),
		},
		edge:      fmt.Sprintf("http://127.0.0.1:%d", edgePort),
		authURL:   fmt.Sprintf("http://127.0.0.1:%d", authPort),
		untrusted: fmt.Sprintf("http://127.0.0.1:%d", untrustedPort),
	}
	blocks := readmeBlocks(t, forwardAuthHeading, "caddyfile")
	if len(blocks) != 2 {
		t.Fatalf("README forward auth section: %d caddyfile blocks, want 2", len(blocks))
	}
	ports := strings.NewReplacer(":9000", fmt.Sprintf(":%d", authPort), ":8088", fmt.Sprintf(":%d", edgePort),
		"127.0.0.1:9080", up.addr(), "limit 600 2m", "limit 5 2m", "{\n\tservers", "{\n\tadmin {admin}\n\tservers")
	cf := ports.Replace(blocks[0]) + fmt.Sprintf(`
http://127.0.0.1:%d {
	keygate_auth {
		tenant acme
	}
}
http://127.0.0.1:%d {
	keygate_admin
}
`, untrustedPort, ad)
	wait := []string{f.authURL, f.untrusted, f.adminURL}
	if caddyEdge {
		cf += ports.Replace(blocks[1])
		wait = append(wait, f.edge)
	}
	if !strings.Contains(cf, "admin 127.0.0.1") && !strings.Contains(cf, "admin {admin}") {
		t.Fatalf("could not place the admin option in:\n%s", cf)
	}
	f.srv = testcaddy.Start(t, cf, testcaddy.Options{Wait: wait})
	f.checkAuthOnLoopback(authPort)
	f.bootstrap()
	return f
}

// checkAuthOnLoopback: the README's keygate_auth server listens on
// loopback only (a site address alone would listen on every interface).
func (f *forwardAuthEnv) checkAuthOnLoopback(port int) {
	f.t.Helper()
	resp, err := http.Get("http://" + f.srv.AdminAddr + "/config/apps/http/servers")
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var servers map[string]struct {
		Listen []string `json:"listen"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&servers); err != nil {
		f.t.Fatal(err)
	}
	suffix := fmt.Sprintf(":%d", port)
	for name, srv := range servers {
		for _, l := range srv.Listen {
			if strings.HasSuffix(l, suffix) && l != "127.0.0.1"+suffix {
				f.t.Fatalf("server %s of the README's keygate_auth listens on %v, not on loopback only", name, srv.Listen)
			}
		}
	}
}

// call sends a GET through the edge.
func (f *forwardAuthEnv) call(path string, hdr map[string]string) *http.Response {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.edge+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp
}

// checkForwardAuth runs the end-to-end checks that hold behind any proxy.
func checkForwardAuth(t *testing.T, f *forwardAuthEnv) {
	userID, keyID, key := f.newUserKey("acme", "fa-user", time.Now().Add(time.Hour))

	// A valid key: the upstream gets the identity, not the key.
	resp := f.call("/orders?id=1", map[string]string{"X-Api-Key": key})
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("valid key through the proxy: %d %s", resp.StatusCode, body)
	}
	n, h := f.up.snapshot()
	if n != 1 || h.Get("X-Auth-User-Id") != userID || h.Get("X-Auth-Tenant") != "acme" || h.Get("X-Auth-Key-Id") != keyID || h.Get("X-Auth-Role") != "MEMBER" {
		t.Fatalf("upstream identity: calls %d, %v", n, h)
	}
	if h.Get("X-Api-Key") != "" {
		t.Error("the proxy forwarded the key")
	}

	// Spoofed identity headers from the client are replaced.
	resp = f.call("/x", map[string]string{"X-Api-Key": key, "X-Auth-User-Id": "admin"})
	resp.Body.Close()
	if _, h := f.up.snapshot(); h.Get("X-Auth-User-Id") != userID {
		t.Fatalf("spoofed identity reached the upstream: %q", h.Get("X-Auth-User-Id"))
	}

	// No key, a wrong key: 401, the upstream is not called.
	before, _ := f.up.snapshot()
	for _, hdr := range []map[string]string{nil, {"X-Api-Key": key + "x"}} {
		resp := f.call("/x", hdr)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("bad credential through the proxy: %d", resp.StatusCode)
		}
	}

	// The route's limit (5 per window): 429 with the RateLimit headers
	// passed through; 3 requests above were allowed.
	other, _, otherKey := f.newUserKey("acme", "fa-limited", time.Now().Add(time.Hour))
	_ = other
	var last *http.Response
	for i := 0; i < 6; i++ {
		last = f.call("/x", map[string]string{"X-Api-Key": otherKey})
		last.Body.Close()
	}
	if last.StatusCode != http.StatusTooManyRequests || last.Header.Get("Retry-After") == "" || last.Header.Get("RateLimit") == "" {
		t.Fatalf("over the limit: %d, Retry-After %q, RateLimit %q", last.StatusCode, last.Header.Get("Retry-After"), last.Header.Get("RateLimit"))
	}
	if after, _ := f.up.snapshot(); after != before+5 {
		t.Fatalf("upstream called %d times for 5 allowed requests", after-before)
	}

	// Revoked: refused within a second.
	start := time.Now()
	f.api(http.MethodDelete, "/v1/users/"+userID+"/keys/"+keyID, nil, http.StatusOK)
	for {
		resp := f.call("/x", map[string]string{"X-Api-Key": key})
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized {
			t.Logf("revoked key refused through the proxy after %v", time.Since(start))
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("revoked key still passes after 1s: %d", resp.StatusCode)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Signed requests are checked against the original method and URI.
	app := f.appUser("acme", "fa-app")
	sid, secret := f.newSecret(app, "a")
	req := f.signedReq(signWalleeMAC, http.MethodGet, "/api/transaction/read?id=7", nil, app, secret)
	req.URL.Host = strings.TrimPrefix(f.edge, "http://")
	resp = f.sendSigned(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("wallee MAC through the proxy: %d", resp.StatusCode)
	}
	if _, h := f.up.snapshot(); h.Get("X-Auth-User-Id") != app || h.Get("X-Auth-Key-Id") != sid {
		t.Fatalf("signed identity: %v", h)
	}
	// Signed for another path: refused.
	req = f.signedReq(signWalleeMAC, http.MethodGet, "/api/transaction/read?id=7", nil, app, secret)
	req.URL.Path = "/api/transaction/delete"
	resp = f.sendSigned(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("signature for another path: %d", resp.StatusCode)
	}
}

// TestForwardAuthCaddy: Caddy's own forward_auth in front of keygate_auth.
func TestForwardAuthCaddy(t *testing.T) {
	f := startForwardAuth(t, true)
	checkForwardAuth(t, f)

	// A signature over a body digest cannot be checked by a subrequest:
	// refused, with the reason in the log.
	app := f.appUser("acme", "fa-body")
	_, secret := f.newSecret(app, "a")
	req := f.signedReq(signRFC9421, http.MethodPost, "/api/orders", []byte(`{"n":1}`), app, secret)
	resp := f.sendSigned(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("body-digest signature through forward auth: %d", resp.StatusCode)
	}
	waitLog(t, f.srv, "forward auth gets no body")
}

// TestForwardAuthUntrustedHeaders: X-Forwarded-* from a client that is not
// a trusted proxy describe nothing: the subrequest itself is checked.
func TestForwardAuthUntrustedHeaders(t *testing.T) {
	f := startForwardAuth(t, false)
	app := f.appUser("acme", "fa-spoof")
	_, secret := f.newSecret(app, "a")
	for _, c := range []struct {
		base string
		want int
	}{{f.authURL, http.StatusOK}, {f.untrusted, http.StatusUnauthorized}} {
		// Signed for GET /api/x; sent to keygate_auth's own /check path
		// with forwarding headers that name the signed request.
		req := f.signedReq(signWalleeMAC, http.MethodGet, "/api/x", nil, app, secret)
		req.URL, _ = req.URL.Parse(c.base + "/check")
		req.Header.Set("X-Forwarded-Method", "GET")
		req.Header.Set("X-Forwarded-Uri", "/api/x")
		resp := f.sendSigned(req)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Fatalf("%s: %d, want %d", c.base, resp.StatusCode, c.want)
		}
		if c.want == http.StatusOK && resp.Header.Get("X-Auth-User-Id") != app {
			t.Fatalf("identity not in the answer: %v", resp.Header)
		}
	}
}

// nginxFrame is the minimal nginx.conf around the README's server block.
const nginxFrame = `worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {}
http {
	access_log off;
	client_body_temp_path {dir}/tmp;
	proxy_temp_path {dir}/tmp;
	fastcgi_temp_path {dir}/tmp;
	uwsgi_temp_path {dir}/tmp;
	scgi_temp_path {dir}/tmp;
{server}
}
`

// TestForwardAuthNginx: nginx with auth_request in front of keygate_auth.
func TestForwardAuthNginx(t *testing.T) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin, err = exec.LookPath("/usr/sbin/nginx") // not on every PATH
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("nginx is not installed (apt-get install nginx)")
		}
		t.Skip("nginx is not installed")
	}
	f := startForwardAuth(t, false)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	servers := readmeBlocks(t, forwardAuthHeading, "nginx")
	if len(servers) != 1 {
		t.Fatalf("README forward auth section: %d nginx blocks, want 1", len(servers))
	}
	// The edge port is reserved for the test (testcaddy.FreePort holds it
	// with SO_REUSEPORT until the test ends, so nothing else takes it
	// meanwhile): nginx binds it with reuseport too.
	server := strings.NewReplacer("listen 127.0.0.1:8088;", "listen "+strings.TrimPrefix(f.edge, "http://")+" reuseport;",
		"127.0.0.1:8088", strings.TrimPrefix(f.edge, "http://"),
		"127.0.0.1:9000", strings.TrimPrefix(f.authURL, "http://"), "127.0.0.1:9080", f.up.addr()).Replace(servers[0])
	if !strings.Contains(server, " reuseport;") {
		t.Fatalf("README nginx block: no \"listen 127.0.0.1:8088;\" to bind the reserved port:\n%s", servers[0])
	}
	conf := strings.NewReplacer("{dir}", dir, "{server}", server).Replace(nginxFrame)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", confPath)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// SIGTERM: the master stops its workers, then itself (SIGKILL
		// would leave the workers running). Kill only if it hangs.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _, _ = cmd.Process.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(f.edge + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx did not start: %v\n%s\n%s", err, out.String(), log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	checkForwardAuth(t, f)
}

// waitLog waits up to a second for s in the server's log.
func waitLog(t *testing.T, srv *testcaddy.Server, s string) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for !strings.Contains(srv.Logs(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log does not say %q", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
