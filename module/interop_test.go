package module_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/keygate/keygate/internal/testcaddy"
)

// The interop tests run real, unmodified client SDKs (interop/, pinned by
// its package-lock.json) against a real keygate: the wallee 4.x (MAC) and
// 5.x (JWT) TypeScript SDKs, http-message-signatures (RFC 9421) and the AWS
// SDK for Go v2 SigV4 signer.

// newJSONUpstream records what keygate forwarded and answers with a
// transaction-shaped JSON document that echoes the identity headers, so the
// SDKs deserialize it and the scripts print who keygate said they were.
func newJSONUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.calls++
		u.last = r.Header.Clone()
		u.last.Set("X-Test-Path", r.URL.Path)
		u.query = r.URL.RawQuery
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"id":                17,
			"version":           1,
			"merchantReference": r.Header.Get("X-Auth-User-Id"),
			"customerId":        r.Header.Get("X-Auth-Key-Id"),
		})
	}))
	t.Cleanup(u.Close)
	return u
}

// startAPIEnv starts keygate with the gateway under /api/* (paths are
// forwarded as the SDKs sent them), the admin API and a bootstrap admin.
func startAPIEnv(t *testing.T) *env {
	t.Helper()
	up := newJSONUpstream(t)
	gw, ad := testcaddy.FreePort(t), testcaddy.FreePort(t)
	e := &env{t: t, up: up,
		gateway:  fmt.Sprintf("http://127.0.0.1:%d", gw),
		adminURL: fmt.Sprintf("http://127.0.0.1:%d", ad),
	}
	caddyfile := fmt.Sprintf(`{
	admin {admin}
}
http://127.0.0.1:%d {
	handle /api/* {
		keygate {
			identity_headers all
			rate_limit_headers both
			tenant acme
		}
		reverse_proxy %s
	}
	handle {
		respond "not found" 404
	}
}
http://127.0.0.1:%d {
	keygate_admin
}
`, gw, up.addr(), ad)
	e.srv = testcaddy.Start(t, caddyfile, testcaddy.Options{Wait: []string{e.gateway, e.adminURL}})
	e.bootstrap()
	return e
}

// interopDir is the repository's interop/ folder.
func interopDir(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "interop")
	if _, err := os.Stat(filepath.Join(dir, "package-lock.json")); err != nil {
		t.Fatalf("interop/package-lock.json: %v", err)
	}
	return dir
}

// installInterop copies interop/ (without node_modules) to a temporary
// directory and runs `npm ci` there. Without node or npm the test is
// skipped, unless CI=true, where that is a failure.
func installInterop(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not found and CI=true: the interop tests need Node.js and npm", tool)
			}
			t.Skipf("skipping the real-client interop tests: %s not found (install Node.js 18+ and npm to run them)", tool)
		}
	}
	src := interopDir(t)
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range entries {
		name := ent.Name()
		if ent.IsDir() || !(strings.HasSuffix(name, ".js") || strings.HasSuffix(name, ".json")) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dst
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in a copy of interop/: %v\n%s", err, out)
	}
	return dst
}

// runNode runs an interop script against keygate and returns its stdout,
// its stderr and whether it exited 0.
func runNode(t *testing.T, dir, script, baseURL, user, secret string) (stdout, stderr string, ok bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"KEYGATE_URL="+baseURL, "KEYGATE_USER_ID="+user, "KEYGATE_SECRET="+secret,
		// axios honours proxy variables; keygate is local.
		"NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost")
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running node %s: %v", script, err)
	}
	return so.String(), se.String(), err == nil
}

// checkForwarded asserts the upstream's last request came from user via
// scheme and secretID, on a path under pathPrefix.
func (e *env) checkForwarded(user, scheme, secretID, pathPrefix string) {
	e.t.Helper()
	_, h := e.up.snapshot()
	for k, v := range map[string]string{"X-Auth-User-Id": user, "X-Auth-Scheme": scheme, "X-Auth-Key-Id": secretID, "X-Auth-Tenant": "acme", "X-Auth-User-Type": "APPLICATION", "X-Auth-Role": "MEMBER"} {
		if got := h.Values(k); len(got) != 1 || got[0] != v {
			e.t.Errorf("upstream %s = %q, want %q", k, got, v)
		}
	}
	if p := h.Get("X-Test-Path"); !strings.HasPrefix(p, pathPrefix) {
		e.t.Errorf("upstream path %q, want prefix %q", p, pathPrefix)
	}
}

func TestInteropNodeClients(t *testing.T) {
	dir := installInterop(t)
	e := startAPIEnv(t)

	clients := []struct {
		script, scheme, path string // path: prefix of the last call's
		calls                int
	}{
		{"wallee-mac.js", "wallee_mac", "/api/transaction/read", 2},
		{"wallee-jwt.js", "wallee_jwt", "/api/v2.0/payment/transactions/17", 1},
		{"rfc9421.js", "http_signature", "/api/v2.0/payment/transactions", 1},
	}
	for _, c := range clients {
		t.Run(strings.TrimSuffix(c.script, ".js"), func(t *testing.T) {
			e := *e
			e.t = t
			user := e.appUser("acme", "app-"+strings.TrimSuffix(c.script, ".js"))
			secretID, secret := e.newSecret(user, "sdk")

			before, _ := e.up.snapshot()
			out, errOut, ok := runNode(t, dir, c.script, e.gateway, user, secret)
			if !ok {
				t.Fatalf("%s failed against keygate: %s", c.script, errOut)
			}
			// One JSON line per SDK call, each the upstream's answer as
			// the SDK deserialized it.
			lines := strings.Split(strings.TrimSpace(out), "\n")
			for _, line := range lines {
				t.Logf("%s printed %s", c.script, line)
				var answer struct {
					MerchantReference string `json:"merchantReference"`
					CustomerID        string `json:"customerId"`
				}
				if err := json.Unmarshal([]byte(line), &answer); err != nil {
					t.Fatalf("script output %q: %v", line, err)
				}
				if answer.MerchantReference != user || answer.CustomerID != secretID {
					t.Errorf("upstream saw user %q key %q, want %q %q", answer.MerchantReference, answer.CustomerID, user, secretID)
				}
			}
			if after, _ := e.up.snapshot(); after != before+len(lines) || len(lines) != c.calls {
				t.Fatalf("upstream calls %d, script answers %d, want %d", after-before, len(lines), c.calls)
			}
			e.checkForwarded(user, c.scheme, secretID, c.path)
			e.up.mu.Lock()
			t.Logf("upstream last got %s?%s", e.up.last.Get("X-Test-Path"), e.up.query)
			e.up.mu.Unlock()
			before, _ = e.up.snapshot()

			// Deactivated, the same SDK call fails with 401 at once.
			e.deactivateSecret(user, secretID)
			_, errOut, ok = runNode(t, dir, c.script, e.gateway, user, secret)
			if ok {
				t.Fatal("SDK call still succeeds after its secret was deactivated")
			}
			var failure struct {
				Status any `json:"status"`
			}
			if err := json.Unmarshal([]byte(lastOutputLine(errOut)), &failure); err != nil || fmt.Sprint(failure.Status) != "401" {
				t.Errorf("after deactivation: want a 401, script said %q", errOut)
			}
			t.Logf("after deactivation %s printed %s", c.script, lastOutputLine(errOut))
			if after, _ := e.up.snapshot(); after != before {
				t.Fatal("upstream called after the secret was deactivated")
			}
		})
	}
}

func lastOutputLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func TestInteropAWSSDKGoV2(t *testing.T) {
	e := startAPIEnv(t)
	user := e.appUser("acme", "aws-app")
	secretID, secret := e.newSecret(user, "sdk")
	creds := aws.Credentials{AccessKeyID: user, SecretAccessKey: secret, Source: "keygate"}
	signer := v4.NewSigner()

	call := func(method, path string, body []byte) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, e.gateway+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		sum := sha256.Sum256(body)
		hash := hex.EncodeToString(sum[:])
		req.Header.Set("X-Amz-Content-Sha256", hash)
		if err := signer.SignHTTP(context.Background(), creds, req, hash, "execute-api", "eu-central-1", time.Now()); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	// A path with a space and a query: the SDK double-encodes the path in
	// its canonical request.
	for _, tc := range []struct {
		method, path string
		body         []byte
	}{
		{http.MethodGet, "/api/v2.0/payment/transactions/17?space=405&expand=group", nil},
		{http.MethodGet, "/api/files/annual%20report.pdf?version=2", nil},
		{http.MethodPost, "/api/v2.0/payment/transactions?space=405", []byte(`{"currency":"CHF","amount":42}`)},
	} {
		resp := call(tc.method, tc.path, tc.body)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %d %s", tc.method, tc.path, resp.StatusCode, b)
		}
		e.checkForwarded(user, "sigv4", secretID, "/api/")
	}

	e.deactivateSecret(user, secretID)
	expectProblem(t, call(http.MethodGet, "/api/v2.0/payment/transactions/17?space=405", nil), http.StatusUnauthorized)
}
