package module_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/testcaddy"
)

// TestCLIReadsCreateNothing: with no server and no store yet, reads fail with
// a clear message and leave the data directory empty; the same holds for
// validate.
func TestCLIReadsCreateNothing(t *testing.T) {
	dataHome := t.TempDir()
	config := filepath.Join(t.TempDir(), "Caddyfile")
	caddyfile := gatewayCaddyfile("", "", testcaddy.FreePort(t), testcaddy.FreePort(t), "127.0.0.1:1")
	if err := os.WriteFile(config, []byte(strings.ReplaceAll(caddyfile, "{admin}", fmt.Sprintf("127.0.0.1:%d", testcaddy.FreePort(t)))), 0o600); err != nil {
		t.Fatal(err)
	}
	c := cli{t: t, dataHome: dataHome, config: config}
	for _, args := range [][]string{{"users", "list"}, {"tenants", "list"}, {"keys", "list", "--user", "u1"}, {"permissions", "list", "--tenant", "acme"}} {
		out, err := c.run(args...)
		if err == nil || !strings.Contains(out, "no store at") {
			t.Errorf("keygate %s without a store: err=%v\n%s", strings.Join(args, " "), err, out)
		}
	}
	validate := exec.Command(testcaddy.Binary(t), "validate", "--config", config, "--adapter", "caddyfile")
	validate.Env = append(os.Environ(), "XDG_DATA_HOME="+dataHome, "HOME="+dataHome)
	if out, err := validate.CombinedOutput(); err != nil || !strings.Contains(string(out), "Valid configuration") {
		t.Fatalf("validate: %v\n%s", err, out)
	}
	var created []string
	_ = filepath.WalkDir(dataHome, func(p string, d os.DirEntry, _ error) error {
		if !d.IsDir() {
			created = append(created, p)
		}
		return nil
	})
	if len(created) > 0 {
		t.Fatalf("read-only commands created %v", created)
	}
}

// TestCLIVerboseAndTables: -v names the server the CLI talked to (or the
// store it opened); permissions list shows user names; keys list shows a
// replaced key with its replacement and the end of its grace period.
func TestCLIVerboseAndTables(t *testing.T) {
	dataHome := t.TempDir()
	gw, ad := testcaddy.FreePort(t), testcaddy.FreePort(t)
	caddyfile := gatewayCaddyfile("", "", gw, ad, "127.0.0.1:1")
	config := filepath.Join(t.TempDir(), "Caddyfile")
	adminAddr := fmt.Sprintf("127.0.0.1:%d", testcaddy.FreePort(t))
	if err := os.WriteFile(config, []byte(strings.ReplaceAll(caddyfile, "{admin}", adminAddr)), 0o600); err != nil {
		t.Fatal(err)
	}
	c := cli{t: t, dataHome: dataHome, config: config}
	c.must("bootstrap", "--tenant", "acme", "--user", "ops")
	list := exec.Command(testcaddy.Binary(t), "users", "list", "-v", "--config", config, "--adapter", "caddyfile")
	list.Env = append(os.Environ(), "XDG_DATA_HOME="+dataHome, "HOME="+dataHome)
	if out, err := list.CombinedOutput(); err != nil || !strings.Contains(string(out), "no server answers on "+adminAddr) || !strings.Contains(string(out), "opening the store file") {
		t.Fatalf("-v without a server must say where it looked and that it opened the store: %v\n%s", err, out)
	}

	srv := testcaddy.Start(t, caddyfile, testcaddy.Options{DataHome: dataHome})
	var user struct {
		ID  string `json:"id"`
		Key struct {
			ID string `json:"id"`
		} `json:"key"`
	}
	if err := json.Unmarshal([]byte(srv.CLI("users", "create", "--tenant", "acme", "--name", "billing-bot", "--key-name", "ci", "--json")), &user); err != nil || user.ID == "" {
		t.Fatalf("users create: %v", err)
	}
	verbose := srv.CLIStderr("users", "get", user.ID, "-v")
	if !strings.Contains(verbose, "keygate server on "+srv.AdminAddr) {
		t.Fatalf("-v must name the server it talked to:\n%s", verbose)
	}
	if out := srv.CLI("permissions", "list", "--tenant", "acme"); !strings.Contains(out, "billing-bot") || !strings.Contains(out, "USER.USERNAME") {
		t.Fatalf("permissions list must show user names:\n%s", out)
	}
	srv.CLI("keys", "replace", "--user", user.ID, user.Key.ID, "--grace", "24h")
	keyList := srv.CLI("keys", "list", "--user", user.ID)
	var old string
	for _, line := range strings.Split(keyList, "\n") {
		if strings.HasPrefix(line, user.Key.ID) {
			old = line
		}
	}
	if !strings.Contains(old, "REPLACED") || strings.Count(old, "20") < 2 {
		t.Fatalf("keys list must show the replaced key as REPLACED with its grace end:\n%s", keyList)
	}
}
