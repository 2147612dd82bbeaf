package module_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

// cli runs the keygate binary with the file store of dataHome and no server.
type cli struct {
	t        *testing.T
	dataHome string
	config   string
}

func (c cli) run(args ...string) (string, error) {
	bin := testcaddy.Binary(c.t) // may build: not under the command's timeout
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args = append(args, "--config", c.config, "--adapter", "caddyfile", "--address", "127.0.0.1:1")
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+c.dataHome, "HOME="+c.dataHome)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		return out.String() + errOut.String(), err
	}
	return out.String(), nil
}

func (c cli) must(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("keygate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestCLIWithoutServer drives the CLI against the file store directly (no
// server holds the lock), then starts a server on the same store and uses
// the key the CLI created.
func TestCLIWithoutServer(t *testing.T) {
	dataHome := t.TempDir()
	gw, ad := testcaddy.FreePort(t), testcaddy.FreePort(t)
	up := newUpstream(t)
	caddyfile := gatewayCaddyfile("", "", gw, ad, up.addr())
	config := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(config, []byte(strings.ReplaceAll(caddyfile, "{admin}", fmt.Sprintf("127.0.0.1:%d", testcaddy.FreePort(t)))), 0o600); err != nil {
		t.Fatal(err)
	}
	c := cli{t: t, dataHome: dataHome, config: config}

	out := c.must("bootstrap", "--tenant", "acme", "--user", "ops")
	if !strings.Contains(out, "kg_") || !strings.Contains(out, "acme") {
		t.Fatalf("bootstrap table lacks the key or tenant:\n%s", out)
	}
	if out, err := c.run("bootstrap", "--tenant", "acme", "--user", "ops"); err == nil || !strings.Contains(out, "409") {
		t.Fatalf("second bootstrap of the same user: err=%v\n%s", err, out)
	}

	var user struct{ ID, Name, Status string }
	if err := json.Unmarshal([]byte(c.must("users", "create", "--tenant", "acme", "--name", "billing", "--type", "SERVICE", "--json")), &user); err != nil || user.ID == "" {
		t.Fatalf("users create --json: %v %+v", err, user)
	}
	if out := c.must("users", "list", "--tenant", "acme"); !strings.Contains(out, "billing") || !strings.Contains(out, "ops") {
		t.Fatalf("users list:\n%s", out)
	}
	if out := c.must("users", "get", user.ID); !strings.Contains(out, "ACTIVE") {
		t.Fatalf("users get:\n%s", out)
	}

	var key struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(c.must("keys", "create", "--user", user.ID, "--name", "ci", "--expires", "24h", "--json")), &key); err != nil || !strings.HasPrefix(key.Key, "kg_") {
		t.Fatalf("keys create --json: %v %+v", err, key)
	}
	list := c.must("keys", "list", "--user", user.ID)
	if strings.Contains(list, key.Key) || !strings.Contains(list, key.ID) || !strings.Contains(list, "…") {
		t.Fatalf("keys list must show the masked key only:\n%s", list)
	}
	if out, err := c.run("keys", "create", "--user", user.ID, "--name", "ci", "--expires", "24h"); err == nil || !strings.Contains(out, "409") {
		t.Fatalf("duplicate key name: err=%v\n%s", err, out)
	}
	if out, err := c.run("keys", "create", "--user", user.ID, "--name", "x", "--expires", "yesterday"); err == nil || !strings.Contains(out, "expiry") {
		t.Fatalf("bad expiry: err=%v\n%s", err, out)
	}

	// users update and keys update change only what their flags name.
	if out := c.must("users", "update", user.ID, "--description", "invoices", "--role", "VIEWER", "--json"); !strings.Contains(out, `"VIEWER"`) || !strings.Contains(out, `"invoices"`) || !strings.Contains(out, `"billing"`) {
		t.Fatalf("users update:\n%s", out)
	}
	if out := c.must("users", "roles", user.ID); !strings.Contains(out, "VIEWER") || !strings.Contains(out, "acme") {
		t.Fatalf("users roles after update:\n%s", out)
	}
	if out := c.must("users", "add-role", user.ID, "ADMIN", "--workspace", "acme"); !strings.Contains(out, "ADMIN") {
		t.Fatalf("users add-role:\n%s", out)
	}
	if out := c.must("users", "add-role", user.ID, "auditor"); !strings.Contains(out, "auditor") {
		t.Fatalf("users add-role (customer):\n%s", out)
	}
	if out := c.must("users", "remove-role", user.ID, "ADMIN", "--json"); !strings.Contains(out, `"MEMBER"`) || !strings.Contains(out, "auditor") {
		t.Fatalf("users remove-role:\n%s", out)
	}
	if out := c.must("users", "get", user.ID, "--json"); !strings.Contains(out, `"role": "MEMBER"`) && !strings.Contains(out, `"role":"MEMBER"`) {
		t.Fatalf("user record after the permission's role changed:\n%s", out)
	}
	if out, err := c.run("users", "update", user.ID); err == nil || !strings.Contains(out, "nothing to change") {
		t.Fatalf("users update without flags: err=%v\n%s", err, out)
	}
	if out := c.must("keys", "update", "--user", user.ID, key.ID, "--name", "ci-renamed", "--expires", "48h"); !strings.Contains(out, "ci-renamed") {
		t.Fatalf("keys update:\n%s", out)
	}
	if out, err := c.run("keys", "update", "--user", user.ID, key.ID); err == nil || !strings.Contains(out, "nothing to change") {
		t.Fatalf("keys update without flags: err=%v\n%s", err, out)
	}
	// One step: a user and its first key.
	var withKey struct {
		ID  string `json:"id"`
		Key struct {
			Key string `json:"key"`
		} `json:"key"`
	}
	if err := json.Unmarshal([]byte(c.must("users", "create", "--tenant", "acme", "--name", "bot", "--key-name", "ci", "--json")), &withKey); err != nil || !strings.HasPrefix(withKey.Key.Key, "kg_") {
		t.Fatalf("users create --key-name: %v %+v", err, withKey)
	}

	// A server on the same store accepts the key the CLI made; the CLI then
	// goes through the server's admin endpoint (the file is locked) to revoke it.
	srv := testcaddy.Start(t, caddyfile, testcaddy.Options{DataHome: dataHome,
		Wait: []string{fmt.Sprintf("http://127.0.0.1:%d", gw)}})
	get := func() int {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/x", gw), nil)
		req.Header.Set("X-Api-Key", key.Key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != http.StatusOK {
		t.Fatalf("CLI-made key through the gateway: %d", code)
	}
	srv.CLI("keys", "revoke", "--user", user.ID, key.ID)
	if code := get(); code != http.StatusUnauthorized {
		t.Fatalf("revoked key: %d", code)
	}
	srv.CLI("users", "disable", user.ID)
	if out := srv.CLI("users", "get", user.ID, "--json"); !strings.Contains(out, `"INACTIVE"`) {
		t.Fatalf("users get after disable:\n%s", out)
	}
}

// TestCLIRotateMasterKey re-encrypts the secrets under a new master key: the
// old key is then refused at start-up (never a storm of 401s), the new one works.
func TestCLIRotateMasterKey(t *testing.T) {
	const oldKey = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
	const newKey = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
	dataHome := t.TempDir()
	config := filepath.Join(t.TempDir(), "Caddyfile")
	caddyfile := fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\tkeygate {\n\t\tmaster_key {env.KG_TEST_MK}\n\t}\n}\nhttp://127.0.0.1:%d {\n\tkeygate {\n\t\ttenant acme\n\t}\n}\n",
		testcaddy.FreePort(t), testcaddy.FreePort(t))
	if err := os.WriteFile(config, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := testcaddy.Binary(t)
	run := func(mk string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append(args, "--config", config, "--adapter", "caddyfile")...)
		cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dataHome, "HOME="+dataHome, "KG_TEST_MK="+mk)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	must := func(mk string, args ...string) string {
		t.Helper()
		out, err := run(mk, args...)
		if err != nil {
			t.Fatalf("keygate %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	must(oldKey, "bootstrap", "--tenant", "acme", "--user", "ops", "--address", "127.0.0.1:1")
	var user struct{ ID string }
	if err := json.Unmarshal([]byte(lastJSON(must(oldKey, "users", "create", "--tenant", "acme", "--name", "app", "--type", "APPLICATION", "--json", "--address", "127.0.0.1:1"))), &user); err != nil {
		t.Fatal(err)
	}
	if out := must(oldKey, "secrets", "create", "--user", user.ID, "--name", "a", "--address", "127.0.0.1:1"); !strings.Contains(out, "ACTIVE") {
		t.Fatalf("secrets create:\n%s", out)
	}
	if out := must(oldKey, "rotate-master-key", "--new-key", newKey); !strings.Contains(out, "re-encrypted 1 values") {
		t.Fatalf("rotate:\n%s", out)
	}
	if out, err := run(oldKey, "validate"); err == nil || !strings.Contains(out, "master_key does not match") {
		t.Fatalf("old master key after rotation: err=%v\n%s", err, out)
	}
	must(newKey, "validate")
	if out, err := run(oldKey, "rotate-master-key", "--new-key", newKey); err == nil {
		t.Fatalf("rotating with the wrong current key must fail:\n%s", out)
	}
}

// lastJSON returns the JSON document at the end of out (after any log lines).
func lastJSON(out string) string {
	if strings.HasPrefix(out, "{\n") {
		return out
	}
	if i := strings.LastIndex(out, "\n{\n"); i >= 0 {
		return out[i+1:]
	}
	return out
}

// TestCLIAdminSocket (issue 23, the local admin endpoint): with Caddy's
// admin endpoint on a Unix socket (admin unix//path|0600, as packaging/
// does), the socket is 0600 and the CLI reaches the server through it:
// found from the admin option of --config, or named with --address.
func TestCLIAdminSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	gw, ad := testcaddy.FreePort(t), testcaddy.FreePort(t)
	up := newUpstream(t)
	srv := testcaddy.Start(t, gatewayCaddyfile("", "", gw, ad, up.addr()), testcaddy.Options{
		Admin: "unix/" + sock + "|0600", Wait: []string{fmt.Sprintf("http://127.0.0.1:%d", gw)}})
	if !strings.Contains(readFile(t, srv.Config), "admin unix/"+sock+"|0600") {
		t.Fatalf("config without the socket:\n%s", readFile(t, srv.Config))
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket %s: %v, mode %v; want a socket with mode 0600", sock, err, fi.Mode())
	}

	if strings.Contains(srv.Logs(), "admin.api.keygate routes") {
		t.Fatalf("a warning about the admin endpoint on a Unix socket:\n%s", srv.Logs())
	}
	// From the config: bootstrap goes through the server (which holds the
	// store's lock), and -v says so.
	stderr := srv.CLIStderr("bootstrap", "--tenant", "acme", "--user", "ops", "-v")
	if !strings.Contains(stderr, "HTTP 201 from the keygate server on unix/"+sock) {
		t.Fatalf("bootstrap -v did not go through the socket:\n%s", stderr)
	}
	// Named with --address.
	out := srv.CLI("users", "list", "--tenant", "acme", "--address", "unix/"+sock)
	if !strings.Contains(out, "ops") {
		t.Fatalf("users list --address unix/…:\n%s", out)
	}
	// A socket the caller may not open is an error that says so, not a
	// fallback to a store of its own.
	if os.Geteuid() != 0 {
		t.Skip("the permission case runs the CLI as nobody, which needs root")
	}
	dir, err := os.MkdirTemp("", "keygate-cli-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "keygate")
	data, err := os.ReadFile(testcaddy.Binary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil || os.Chmod(dir, 0o755) != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "users", "list", "--tenant", "acme", "--address", "unix/"+sock)
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	refused, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(refused), "refuses this user") {
		t.Fatalf("users list as nobody through a 0600 root socket: err=%v\n%s", err, refused)
	}
	if _, err := os.Stat(filepath.Join(dir, "caddy")); err == nil {
		t.Fatal("the refused CLI opened a store of its own")
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAdminEndpointExposedWarns: keygate warns at start when Caddy's admin
// endpoint, with keygate's trusted routes, listens on TCP beyond loopback.
func TestAdminEndpointExposedWarns(t *testing.T) {
	gw, ad, adminPort := testcaddy.FreePort(t), testcaddy.FreePort(t), testcaddy.FreePort(t)
	up := newUpstream(t)
	for _, tc := range []struct {
		admin string
		warn  bool
	}{
		{fmt.Sprintf("0.0.0.0:%d", adminPort), true},
		{fmt.Sprintf("127.0.0.1:%d", adminPort), false},
	} {
		srv := testcaddy.Start(t, gatewayCaddyfile("", "", gw, ad, up.addr()), testcaddy.Options{
			Admin: tc.admin, Wait: []string{fmt.Sprintf("http://127.0.0.1:%d", gw)}})
		logs := srv.Logs()
		srv.Stop()
		warned := strings.Contains(logs, "admin.api.keygate routes, without a key")
		if warned != tc.warn {
			t.Fatalf("admin %s: warned %v, want %v:\n%s", tc.admin, warned, tc.warn, logs)
		}
	}
}

// TestCLIWebhooks drives `keygate webhooks` against a running server with
// a real receiver: create (the secret printed once), list, deliveries,
// replay (the receiver sees the same webhook-id again), rotate-secret with
// a grace period (the receiver on the old secret keeps verifying, then on
// the new one), delete; bad input is refused with the field named.
func TestCLIWebhooks(t *testing.T) {
	rc := newHookReceiver(t)
	e := startEventsEnv(t, "", "", testcaddy.Options{})
	e.bootstrap()
	var hook struct {
		ID     string   `json:"id"`
		URL    string   `json:"url"`
		Events []string `json:"events"`
		Secret string   `json:"secret"`
	}
	out := e.srv.CLI("webhooks", "create", "--url", rc.URL+"/hook", "--events", "user.created,key.created", "--json")
	if err := json.Unmarshal([]byte(out), &hook); err != nil || !strings.HasPrefix(hook.Secret, "whsec_") || len(hook.Events) != 2 {
		t.Fatalf("webhooks create --json: %v\n%s", err, out)
	}
	rc.secret.Store(hook.Secret)
	if list := e.srv.CLI("webhooks", "list"); !strings.Contains(list, hook.ID) || !strings.Contains(list, rc.URL) || strings.Contains(list, hook.Secret) {
		t.Fatalf("webhooks list:\n%s", list)
	}
	newUser := func(name string) string {
		var u struct{ ID string }
		json.Unmarshal(e.api(http.MethodPost, "/v1/users", map[string]any{"name": name, "primaryTenant": "acme"}, http.StatusCreated), &u)
		rc.waitType("user.created", func(ev map[string]any) bool { return ev["subject"] == "users/"+u.ID }, 15*time.Second)
		return u.ID
	}
	newUser("first")

	var ds []struct {
		ID, EventID, Status string
	}
	for deadline := time.Now().Add(10 * time.Second); len(ds) != 1 || ds[0].Status != "DELIVERED"; time.Sleep(50 * time.Millisecond) {
		if err := json.Unmarshal([]byte(e.srv.CLI("webhooks", "deliveries", hook.ID, "--json")), &ds); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhooks deliveries: %+v", ds)
		}
	}
	if table := e.srv.CLI("webhooks", "deliveries", "--status", "DELIVERED"); !strings.Contains(table, ds[0].ID) || !strings.Contains(table, "user.created") {
		t.Fatalf("webhooks deliveries --status DELIVERED:\n%s", table)
	}
	if out := e.srv.CLI("webhooks", "replay", ds[0].ID); !strings.Contains(out, "PENDING") {
		t.Fatalf("webhooks replay:\n%s", out)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		rc.mu.Lock()
		n := rc.raw[ds[0].EventID]
		rc.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replay did not reach the receiver (%d)", n)
		}
	}

	var rot struct {
		Secret                  string `json:"secret"`
		PreviousSecretExpiresAt string `json:"previousSecretExpiresAt"`
	}
	if err := json.Unmarshal([]byte(e.srv.CLI("webhooks", "rotate-secret", hook.ID, "--grace", "1h", "--json")), &rot); err != nil ||
		!strings.HasPrefix(rot.Secret, "whsec_") || rot.Secret == hook.Secret || rot.PreviousSecretExpiresAt == "" {
		t.Fatalf("webhooks rotate-secret: %v %+v", err, rot)
	}
	newUser("on-the-old-secret") // the receiver still holds the old one
	rc.secret.Store(rot.Secret)
	newUser("on-the-new-secret")
	rc.mu.Lock()
	bad := rc.bad
	rc.mu.Unlock()
	if bad != 0 {
		t.Fatalf("%d deliveries failed verification around the rotation", bad)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"webhooks", "create", "--url", "ftp://x"}, "url"},
		{[]string{"webhooks", "create", "--url", "https://x.example.com", "--events", "key.nope"}, "events"},
		{[]string{"webhooks", "rotate-secret", hook.ID, "--grace", "soon"}, "--grace"},
		{[]string{"webhooks", "rotate-secret", hook.ID, "--grace", "800h"}, "gracePeriod"},
		{[]string{"webhooks", "deliveries", hook.ID, "--kind", "email"}, "leave out the webhook id"},
		{[]string{"webhooks", "replay", "evt_nope.x"}, "404"},
	} {
		if out, err := e.srv.TryCLI(c.args...); err == nil || !strings.Contains(out, c.want) {
			t.Errorf("keygate %s: err=%v, want %q in\n%s", strings.Join(c.args, " "), err, c.want, out)
		}
	}
	if out := e.srv.CLI("webhooks", "delete", hook.ID); !strings.Contains(out, "deleted") {
		t.Fatalf("webhooks delete:\n%s", out)
	}
	if list := e.srv.CLI("webhooks", "list"); strings.Contains(list, hook.ID) {
		t.Fatalf("deleted webhook still listed:\n%s", list)
	}
}
