package module_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/tenantfile"
)

// TestTenantsAsCode: a tenant exported from one keygate (file store) and
// applied to an empty one (Redis store) is reproduced (users, roles,
// permissions, limits, metadata); a second apply reports no change; an
// edited file applies exactly the edit; --prune archives what the file
// dropped; a newer format version is refused.
func TestTenantsAsCode(t *testing.T) {
	a := startEnv(t, "", "")
	exp := time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)
	a.api(http.MethodPost, "/v1/tenants", map[string]any{"id": "partner", "name": "Partner"}, http.StatusCreated)
	a.api(http.MethodPost, "/v1/users", map[string]any{
		"id": "billing-svc", "name": "billing service", "type": "SERVICE", "role": "MEMBER", "primaryTenant": "acme",
		"customerRoles": []string{"billing", "reports"}, "requestLimit": 600, "meta": map[string]any{"plan": "gold"}, "tags": []string{"prod"},
	}, http.StatusCreated)
	a.api(http.MethodPost, "/v1/users/billing-svc/keys", map[string]any{"name": "ci", "expiresAt": exp, "meta": map[string]any{"owner": "ci"}}, http.StatusCreated)
	a.api(http.MethodPost, "/v1/users", map[string]any{
		"id": "auditor", "name": "auditor", "type": "TECHNICAL", "role": "VIEWER", "primaryTenant": "acme", "accessControlEntities": []string{"space-1"},
	}, http.StatusCreated)
	a.api(http.MethodPost, "/v1/users", map[string]any{"id": "partner-bot", "name": "partner bot", "primaryTenant": "partner", "role": "MEMBER"}, http.StatusCreated)
	a.api(http.MethodPost, "/v1/permissions", map[string]any{
		"user": map[string]any{"id": "partner-bot"}, "workspace": map[string]any{"id": "acme"}, "role": "VIEWER", "status": "ACTIVE", "customerRoles": []string{"reader"},
	}, http.StatusCreated)

	dir := t.TempDir()
	acmeFile, partnerFile := filepath.Join(dir, "acme.yaml"), filepath.Join(dir, "partner.json")
	a.srv.CLI("export", "--tenant", "acme", "-o", acmeFile)
	a.srv.CLI("export", "--tenant", "partner", "--format", "json", "-o", partnerFile)
	acmeYAML, _ := os.ReadFile(acmeFile)
	for _, want := range []string{"format: keygate.tenant", "billing-svc", "requestLimit: 600", "plan: gold", "name: ci", "user: partner-bot", "space-1"} {
		if !strings.Contains(string(acmeYAML), want) {
			t.Fatalf("export lacks %q:\n%s", want, acmeYAML)
		}
	}
	if strings.Contains(string(acmeYAML), "kg_") || strings.Contains(string(acmeYAML), "hash") {
		t.Fatalf("export shows key material:\n%s", acmeYAML)
	}

	// An empty keygate on Redis.
	_, prefix := testredis.Client(t)
	b := startEnv(t, fmt.Sprintf("keygate {\n\t\tstore redis {\n\t\t\taddress %s\n\t\t\tprefix %s\n\t\t}\n\t\tmaster_key %s\n\t}",
		testredis.Options(t).Addr, prefix, testMasterKey), "")
	// (startEnv bootstrapped tenant acme with its own superadmin; a
	// superadmin is not part of a tenant file and apply leaves it alone.)
	out := b.srv.CLI("apply", "-f", partnerFile)
	if !strings.Contains(out, "create user partner-bot") {
		t.Fatalf("apply partner:\n%s", out)
	}
	out = b.srv.CLI("apply", "-f", acmeFile, "--dry-run")
	if !strings.Contains(out, "dry run") || !strings.Contains(out, "create user billing-svc") {
		t.Fatalf("dry run:\n%s", out)
	}
	b.api(http.MethodGet, "/v1/users/billing-svc", nil, http.StatusNotFound)
	out = b.srv.CLI("apply", "-f", acmeFile)
	for _, want := range []string{"create user billing-svc (billing service)", "create user auditor", "create permission partner-bot", "skip key", "applied"} {
		if !strings.Contains(out, want) {
			t.Fatalf("apply lacks %q:\n%s", want, out)
		}
	}
	out = b.srv.CLI("apply", "-f", acmeFile)
	if !strings.Contains(out, "no change") {
		t.Fatalf("second apply:\n%s", out)
	}
	// The tenant is reproduced: B's export is A's, but for the keys (a
	// file creates none).
	bFile := filepath.Join(dir, "b.yaml")
	b.srv.CLI("export", "--tenant", "acme", "-o", bFile)
	af, _ := tenantfile.Parse(acmeYAML)
	bb, _ := os.ReadFile(bFile)
	bf, err := tenantfile.Parse(bb)
	if err != nil {
		t.Fatal(err)
	}
	for i := range af.Users {
		af.Users[i].Keys = nil
	}
	if plan := tenantfile.Plan(bf, af, true); tenantfile.Changes(plan) != 0 {
		t.Fatalf("the applied tenant differs: %v\nA:\n%s\nB:\n%s", plan, acmeYAML, bb)
	}

	// An edit applies exactly the edit.
	edited := strings.Replace(string(acmeYAML), "requestLimit: 600", "requestLimit: 900", 1)
	os.WriteFile(acmeFile, []byte(edited), 0o600)
	out = b.srv.CLI("apply", "-f", acmeFile)
	if !strings.Contains(out, "update user billing-svc (billing service): requestLimit 600 → 900") || strings.Count(out, "update ") != 1 {
		t.Fatalf("edit:\n%s", out)
	}
	if !strings.Contains(string(b.api(http.MethodGet, "/v1/users/billing-svc", nil, http.StatusOK)), `"requestLimit":900`) {
		t.Fatal("edit not stored")
	}
	// --prune archives a user the file dropped (never deletes it).
	f2, _ := tenantfile.Parse([]byte(edited))
	var kept []tenantfile.User
	for _, u := range f2.Users {
		if u.ID != "auditor" {
			kept = append(kept, u)
		}
	}
	f2.Users = kept
	y, _ := tenantfile.Marshal(f2, "yaml")
	os.WriteFile(acmeFile, y, 0o600)
	if out := b.srv.CLI("apply", "-f", acmeFile); !strings.Contains(out, "no change") {
		t.Fatalf("without --prune a dropped user is left alone:\n%s", out)
	}
	out = b.srv.CLI("apply", "-f", acmeFile, "--prune")
	if !strings.Contains(out, "archive user auditor (auditor): status ACTIVE → INACTIVE") {
		t.Fatalf("prune:\n%s", out)
	}
	if !strings.Contains(string(b.api(http.MethodGet, "/v1/users/auditor", nil, http.StatusOK)), `"status":"INACTIVE"`) {
		t.Fatal("pruned user not INACTIVE")
	}
	// A newer format version is refused.
	os.WriteFile(acmeFile, []byte(strings.Replace(edited, "version: 1", "version: 2", 1)), 0o600)
	if out, err := b.srv.TryCLI("apply", "-f", acmeFile); err == nil || !strings.Contains(out, "newer") {
		t.Fatalf("version 2: %v\n%s", err, out)
	}
}
