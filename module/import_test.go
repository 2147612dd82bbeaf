package module_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/testcaddy"
	"github.com/keygate/keygate/internal/testredis"
)

// importCaddyfile has one route per way the peers' clients send their keys:
// Kong's apikey header and query parameter, Tyk's raw Authorization value,
// Bearer (Unkey, CSV) and KrakenD's X-Key.
func importCaddyfile(global string, gw, ad int, upstream string) string {
	route := func(path, opts string) string {
		return fmt.Sprintf(`	handle %s {
		keygate {
			tenant acme
			foreign_keys
			identity_headers all
			%s
		}
		reverse_proxy %s
	}
`, path, opts, upstream)
	}
	return fmt.Sprintf("{\n\tadmin {admin}\n\t%s\n}\nhttp://127.0.0.1:%d {\n%s%s%s%s}\nhttp://127.0.0.1:%d {\n\tkeygate_admin\n}\n",
		global, gw,
		route("/kong/*", "key_header apikey\n\t\t\tkey_query apikey"),
		route("/tyk/*", "key_header Authorization"),
		route("/bearer/*", ""),
		route("/krakend/*", "key_header X-Key"),
		ad)
}

// importEnv is a running keygate set up for imports.
type importEnv struct {
	*env
	gw, ad int
	global string
}

func startImportEnv(t *testing.T, global, dataHome string) *importEnv {
	t.Helper()
	up := newUpstream(t)
	gw, ad := testcaddy.FreePort(t), testcaddy.FreePort(t)
	e := &env{t: t, up: up, gateway: fmt.Sprintf("http://127.0.0.1:%d", gw), adminURL: fmt.Sprintf("http://127.0.0.1:%d", ad)}
	e.srv = testcaddy.Start(t, importCaddyfile(global, gw, ad, up.addr()), testcaddy.Options{
		Wait: []string{e.gateway, e.adminURL}, DataHome: dataHome,
	})
	return &importEnv{env: e, gw: gw, ad: ad, global: global}
}

func sampleFile(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "testdata", "import", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// importReport is the --json output of keygate import.
type importReport struct {
	Written                           bool
	Created, Updated, Skipped, Failed int
	Items                             []struct {
		Ref, Kind, Action, ID, Name, UserID, Reason string
	}
}

func (e *importEnv) importCLI(args ...string) importReport {
	e.t.Helper()
	out := e.srv.CLI(append([]string{"import", "--tenant", "acme", "--json"}, args...)...)
	var rep importReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		e.t.Fatalf("import output %q: %v", out, err)
	}
	return rep
}

// call sends one request to the gateway and returns its status and what
// the upstream saw.
func (e *importEnv) call(path string, hdr map[string]string) (int, http.Header) {
	e.t.Helper()
	before, _ := e.up.snapshot()
	resp := e.get(path, hdr)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	after, h := e.up.snapshot()
	if after == before {
		h = nil
	}
	return resp.StatusCode, h
}

// keyRecord reads an imported key through the admin API.
func (e *importEnv) keyRecord(userID, keyID string) map[string]any {
	e.t.Helper()
	var k map[string]any
	if err := json.Unmarshal(e.api(http.MethodGet, "/v1/users/"+userID+"/keys/"+keyID, nil, http.StatusOK), &k); err != nil {
		e.t.Fatal(err)
	}
	return k
}

func findItem(rep importReport, kind, name string) (id, userID string) {
	for _, it := range rep.Items {
		if it.Kind == kind && it.Name == name {
			return it.ID, it.UserID
		}
	}
	return "", ""
}

// TestImportEndToEnd: for each of the five sources, a sample file shaped
// like that peer's export is imported into a running keygate, after which
// a client sends the original key exactly as it did to the peer and gets
// 200 with the right identity; a wrong or revoked key gets 401. Keys
// imported as Tyk's and Unkey's hashes are re-hashed on first use (visible
// in the record) and still work after a restart. A second import creates
// nothing, a file with a bad row writes nothing and names it, and a dry run
// writes nothing. On both stores.
func TestImportEndToEnd(t *testing.T) {
	t.Run("file", func(t *testing.T) { testImportEndToEnd(t, "") })
	t.Run("redis", func(t *testing.T) {
		_, prefix := testredis.Client(t)
		testImportEndToEnd(t, fmt.Sprintf("keygate {\n\t\tstore redis {\n\t\t\taddress %s\n\t\t\tprefix %s\n\t\t}\n\t\tmaster_key %s\n\t}",
			testredis.Options(t).Addr, prefix, testMasterKey))
	})
}

func testImportEndToEnd(t *testing.T, global string) {
	e := startImportEnv(t, global, "")
	e.bootstrap()
	const exp = "--expires=8760h"

	// A dry run writes nothing.
	dry := e.importCLI("--from", "kong", sampleFile(t, "kong.yaml"), exp, "--dry-run")
	if dry.Written || dry.Created != 4 {
		t.Fatalf("dry run: %+v", dry)
	}
	if st, _ := e.call("/kong/x", map[string]string{"apikey": "Kk4RLVM9E8xWf7E0M9jIyWv8MXSMdDB2J"}); st != http.StatusUnauthorized {
		t.Fatalf("a dry-run key works: %d", st)
	}

	reps := map[string]importReport{
		"kong":    e.importCLI("--from", "kong", sampleFile(t, "kong.yaml"), exp),
		"tyk":     e.importCLI("--from", "tyk", sampleFile(t, "tyk-redis.json"), exp),
		"unkey":   e.importCLI("--from", "unkey", sampleFile(t, "unkey.json"), exp),
		"krakend": e.importCLI("--from", "krakend", sampleFile(t, "krakend.json"), exp),
		"csv":     e.importCLI("--from", "csv", sampleFile(t, "users.csv"), exp),
	}
	for src, rep := range reps {
		if !rep.Written || rep.Failed != 0 || rep.Created == 0 {
			t.Fatalf("%s import: %+v", src, rep)
		}
	}

	tykKey := "eyJvcmciOiI1ZTlkOTU0NGExZGNkNjAwMDFkMGVkMjAiLCJpZCI6ImI0NjJiZjE0ZGVkMzQ1ODFhNmNhZWVkNWNmYjk1OTZmIiwiaCI6Im11cm11cjY0In0="
	cases := []struct {
		name, path string
		hdr        map[string]string
		user       string // X-Auth-User-Name
		roles      string // X-Auth-Customer-Roles contains
	}{
		{"kong apikey header", "/kong/orders", map[string]string{"apikey": "Kk4RLVM9E8xWf7E0M9jIyWv8MXSMdDB2J"}, "acme-mobile", "gold"},
		{"kong apikey query", "/kong/orders?apikey=reporting-bot-key-2f8d7c1e", nil, "reporting-bot", ""},
		{"tyk raw authorization (murmur64)", "/tyk/x", map[string]string{"Authorization": tykKey}, "acme-billing", ""},
		{"tyk sha256", "/tyk/x", map[string]string{"Authorization": "eyJvcmciOiI1ZTlkOTU0NGExZGNkNjAwMDFkMGVkMjAiLCJpZCI6IjBjN2U1YThmM2IyZDRlNmE5YzFmN2IzZDVlOGEyYzRmIiwiaCI6InNoYTI1NiJ9"}, "acme-billing", ""},
		{"tyk legacy org key (murmur32)", "/tyk/x", map[string]string{"Authorization": "5e9d9544a1dcd60001d0ed20a6ab77653d7da4b39ad1af9c98bba1a8"}, "legacy-partner", ""},
		{"unkey bearer", "/bearer/x", map[string]string{"Authorization": "Bearer unkey_2V1k9nQ4cGZ7tR3pWb8sXy6"}, "acme", "admin.read"},
		{"unkey hashed bearer", "/bearer/x", map[string]string{"Authorization": "Bearer unkey_3ZbCDh8LuC3y2Q4wKkD7ngYF"}, "acme", ""},
		{"krakend X-Key", "/krakend/x", map[string]string{"X-Key": "4d2c61e1-34c4-e96c-9456-15bd983c5019"}, "ACME Inc.", "role1"},
		{"csv bearer", "/bearer/x", map[string]string{"Authorization": "Bearer csv-billing-key-7f3a9c2e41"}, "billing service", "billing"},
		{"csv hashed bearer", "/bearer/x", map[string]string{"Authorization": "Bearer csv-legacy-key-9d2f61b0a7"}, "billing service", ""},
	}
	for _, tc := range cases {
		for round := 0; round < 2; round++ { // the first use (and re-hash), then from the cache
			st, h := e.call(tc.path, tc.hdr)
			if st != http.StatusOK || h == nil {
				t.Fatalf("%s (use %d): status %d", tc.name, round+1, st)
			}
			if h.Get("X-Auth-User-Name") != tc.user || h.Get("X-Auth-Tenant") != "acme" || h.Get("X-Auth-Scheme") != "access_key" ||
				!strings.Contains(h.Get("X-Auth-Customer-Roles"), tc.roles) || h.Get("Authorization") != "" || h.Get("Apikey") != "" || h.Get("X-Key") != "" {
				t.Fatalf("%s: upstream saw %v", tc.name, h)
			}
		}
	}
	// Wrong keys: 401, one problem body.
	for name, hdr := range map[string]map[string]string{
		"kong":    {"apikey": "Kk4RLVM9E8xWf7E0M9jIyWv8MXSMdDB2K"},
		"tyk":     {"Authorization": strings.Replace(tykKey, "In0=", "Iw==", 1)},
		"unkey":   {"Authorization": "Bearer unkey_3ZbCDh8LuC3y2Q4wKkD7ngYG"},
		"krakend": {"X-Key": "4d2c61e1-34c4-e96c-9456-15bd983c5018"},
		"csv":     {"Authorization": "Bearer csv-billing-key-7f3a9c2e40"},
	} {
		path := map[string]string{"kong": "/kong/x", "tyk": "/tyk/x", "krakend": "/krakend/x"}[name]
		if path == "" {
			path = "/bearer/x"
		}
		resp := e.get(path, hdr)
		expectProblem(t, resp, http.StatusUnauthorized)
	}

	// Re-hashed on first use, visible in the key's record.
	tykID, tykUser := findItem(reps["tyk"], "key", "")
	for _, it := range reps["tyk"].Items {
		if it.Kind == "key" && it.UserID != "" {
			k := e.keyRecord(it.UserID, it.ID)
			if k["hashScheme"] != nil || k["rehashedFrom"] == nil || k["rehashedAt"] == nil {
				t.Fatalf("tyk key %s not re-hashed: %v", it.Ref, k)
			}
			if k["rehashedFrom"] == "murmur64" {
				tykID, tykUser = it.ID, it.UserID
			}
		}
	}
	if tykID == "" {
		t.Fatal("no key re-hashed from murmur64")
	}
	unkeyID, unkeyUser := findItem(reps["unkey"], "key", "acme staging")
	if k := e.keyRecord(unkeyUser, unkeyID); k["rehashedFrom"] != "sha256" || k["masked"] != "…YF" && k["masked"] != "…ngYF" {
		t.Fatalf("unkey key not re-hashed: %v", k)
	}

	// Revoked: 401.
	kongID, kongUser := findItem(reps["kong"], "key", "kong 2b1f0c9e-5d4a-4e8b-9c7d-1a2b3c4d5e6f")
	e.api(http.MethodDelete, "/v1/users/"+kongUser+"/keys/"+kongID, nil, http.StatusOK)
	expectProblem(t, e.get("/kong/x?apikey=reporting-bot-key-2f8d7c1e", nil), http.StatusUnauthorized)

	// A second import creates nothing.
	if again := e.importCLI("--from", "kong", sampleFile(t, "kong.yaml"), exp); again.Created != 0 || again.Written {
		t.Fatalf("second import: %+v", again)
	}
	// One bad row: nothing written, the row named.
	bad := filepath.Join(t.TempDir(), "bad.csv")
	os.WriteFile(bad, []byte("user_id,user_name,key_name,key,expires_at\nnew-1,one,k,csv-new-key-000001,2031-01-01\nnew-2,two,k,short,2031-01-01\n"), 0o600)
	out, err := e.srv.TryCLI("import", "--tenant", "acme", "--from", "csv", bad)
	if err == nil || !strings.Contains(out, "line 3") || !strings.Contains(out, "nothing written") {
		t.Fatalf("bad file: %v\n%s", err, out)
	}
	if st, _ := e.call("/bearer/x", map[string]string{"Authorization": "Bearer csv-new-key-000001"}); st != http.StatusUnauthorized {
		t.Fatalf("a failed import wrote a key: %d", st)
	}

	// After a restart the re-hashed keys still work (and stay re-hashed).
	e.srv.Stop()
	e2 := startImportEnv(t, global, e.srv.DataHome)
	e2.adminKey = e.adminKey
	for _, tc := range cases {
		if tc.name == "kong apikey query" { // revoked above
			expectProblem(t, e2.get(tc.path, tc.hdr), http.StatusUnauthorized)
			continue
		}
		if st, h := e2.call(tc.path, tc.hdr); st != http.StatusOK || h.Get("X-Auth-User-Name") != tc.user {
			t.Fatalf("after restart, %s: %d", tc.name, st)
		}
	}
	if k := e2.keyRecord(tykUser, tykID); k["rehashedFrom"] != "murmur64" || k["hashScheme"] != nil {
		t.Fatalf("after restart: %v", k)
	}
}

// TestImportWeakHashesRefused: with legacy_hashes strong, a key stored as
// Tyk's murmur hash is not matched (murmur is no cryptographic hash), one
// stored as its sha256 hash is; and an unknown, a revoked and a refused
// imported key get the very same 401 body.
func TestImportWeakHashesRefused(t *testing.T) {
	e := startImportEnv(t, "keygate {\n\t\tlegacy_hashes strong\n\t}", "")
	e.bootstrap()
	rep := e.importCLI("--from", "tyk", sampleFile(t, "tyk-redis.json"), "--expires=8760h")
	if rep.Created == 0 {
		t.Fatalf("import: %+v", rep)
	}
	murmur := "eyJvcmciOiI1ZTlkOTU0NGExZGNkNjAwMDFkMGVkMjAiLCJpZCI6ImI0NjJiZjE0ZGVkMzQ1ODFhNmNhZWVkNWNmYjk1OTZmIiwiaCI6Im11cm11cjY0In0="
	sha := "eyJvcmciOiI1ZTlkOTU0NGExZGNkNjAwMDFkMGVkMjAiLCJpZCI6IjBjN2U1YThmM2IyZDRlNmE5YzFmN2IzZDVlOGEyYzRmIiwiaCI6InNoYTI1NiJ9"
	if st, _ := e.call("/tyk/x", map[string]string{"Authorization": sha}); st != http.StatusOK {
		t.Fatalf("sha256 key: %d", st)
	}
	body := func(v string) string {
		resp := e.get("/tyk/x", map[string]string{"Authorization": v})
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%d, want 401", resp.StatusCode)
		}
		return string(b)
	}
	refused, unknown := body(murmur), body("tyk-never-imported-000000")
	id, userID := "", ""
	for _, it := range rep.Items {
		if it.Kind == "key" && it.UserID != "" {
			if k := e.keyRecord(it.UserID, it.ID); k["rehashedFrom"] == "sha256" {
				id, userID = it.ID, it.UserID
			}
		}
	}
	e.api(http.MethodDelete, "/v1/users/"+userID+"/keys/"+id, nil, http.StatusOK)
	revoked := body(sha)
	if refused != unknown || revoked != unknown {
		t.Fatalf("401 bodies differ:\nrefused %s\nunknown %s\nrevoked %s", refused, unknown, revoked)
	}
}
