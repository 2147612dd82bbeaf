package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testcaddy"
)

// e2eConfig is a keygate with the file store, a gateway for tenant acme
// whose "upstream" answers the identity it was given, a gateway route for
// tenant ovw (the overview's numbers; at most 3 requests per user and
// window), the token endpoint, and the admin API (with the console) on its
// own port.
const e2eConfig = `{
	admin {admin}
	keygate {
		store file
		token {
			issuer keygate
			lifetime 1h
		}
	}
}
http://127.0.0.1:%[1]d {
	bind 127.0.0.1
	handle /oauth2/token {
		keygate_token
	}
	handle /ovw/* {
		route {
			keygate {
				tenant ovw
				limit 3
			}
			respond "ok" 200
		}
	}
	handle {
		route {
			keygate {
				tenant acme
				identity_headers user_id role scope
			}
			header Content-Type application/json
			respond ` + "`" + `{"role":"{http.request.header.X-Auth-Role}","user":"{http.request.header.X-Auth-User-Id}","scope":"{http.request.header.X-Auth-Scope}"}` + "`" + ` 200
		}
	}
}
http://127.0.0.1:%[2]d {
	bind 127.0.0.1
	keygate_admin
}
`

// needTool finds a tool the browser test needs: without it the test is
// skipped, except under CI=true, where that is a failure.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found and CI=true: the console's browser tests need Node.js, npm and Chromium (apt-get install -y nodejs npm chromium)", name)
		}
		t.Skipf("skipping the console's browser tests: %s not found", name)
	}
	return p
}

// installE2E copies console/e2e (without node_modules) to a temporary
// directory and runs `npm ci` there; no browser is downloaded.
func installE2E(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(file), "e2e")
	dst := t.TempDir()
	for _, name := range []string{"package.json", "package-lock.json", "console.test.js"} {
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
	cmd.Env = append(os.Environ(), "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in a copy of console/e2e: %v\n%s", err, out)
	}
	return dst
}

// TestConsoleInBrowser runs console/e2e/console.test.js (Playwright driving
// headless Chromium, with axe-core) against a real keygate. Screenshots go to
// $KEYGATE_E2E_ARTIFACTS, else to a directory under the temp dir that
// outlives the test (its path is logged).
func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	needTool(t, "node")
	needTool(t, "npm")
	browser := os.Getenv("CHROMIUM")
	if browser == "" {
		browser = "/usr/bin/chromium"
	}
	if _, err := os.Stat(browser); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found and CI=true: install Debian's chromium (apt-get install -y chromium)", browser)
		}
		t.Skipf("skipping the console's browser tests: %s not found", browser)
	}
	dir := installE2E(t)

	gw, adm := testcaddy.FreePort(t), testcaddy.FreePort(t)
	adminURL := fmt.Sprintf("http://127.0.0.1:%d", adm)
	srv := testcaddy.Start(t, fmt.Sprintf(e2eConfig, gw, adm), testcaddy.Options{Wait: []string{adminURL + "/v1/openapi.json"}})
	out := srv.CLI("bootstrap", "--tenant", "acme", "--user", "ops", "--json")
	var boot struct {
		Key struct {
			Key string `json:"key"`
		} `json:"key"`
	}
	if err := json.Unmarshal([]byte(out), &boot); err != nil || !strings.HasPrefix(boot.Key.Key, "kg_") {
		t.Fatalf("bootstrap answered %q (%v)", out, err)
	}

	shots := os.Getenv("KEYGATE_E2E_ARTIFACTS")
	if shots == "" {
		var err error
		if shots, err = os.MkdirTemp("", "keygate-console-e2e-"); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "console.test.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"KEYGATE_CONSOLE="+adminURL+"/console/",
		fmt.Sprintf("KEYGATE_GATEWAY=http://127.0.0.1:%d", gw),
		"KEYGATE_ADMIN_KEY="+boot.Key.Key,
		"KEYGATE_SHOTS="+shots,
		"CHROMIUM="+browser,
		"NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost")
	var so bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &so
	err := cmd.Run()
	t.Logf("browser test output:\n%s", so.String())
	t.Logf("screenshots: %s", shots)
	if err != nil {
		t.Fatalf("console browser test failed: %v", err)
	}
}
