package cli

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keys"
)

// TestCommandNames: every subcommand is registered, import, export and
// apply among them (the CLI's end-to-end tests through the keygate binary
// are in module/, next to the gateway's).
func TestCommandNames(t *testing.T) {
	names := CommandNames()
	for _, want := range []string{"bootstrap", "tenants", "users", "keys", "webhooks", "import", "export", "apply", "rotate-master-key"} {
		if !slices.Contains(names, want) {
			t.Errorf("no %q command in %v", want, names)
		}
	}
}

// TestPrintImport: the table names each item with where it is in the file
// and why it failed or what changed, then the totals and the warnings.
func TestPrintImport(t *testing.T) {
	var out bytes.Buffer
	cl := &cliClient{out: &out}
	err := printImport(cl, admin.ImportReport{Source: "csv", Tenant: "acme", Failed: 1, Updated: 1, Items: []keys.ImportItem{
		{Ref: "line 3", Kind: "key", Action: keys.ImportFail, Reason: "the key must be 8 to 512 characters"},
		{Ref: "line 2", Kind: "user", Action: keys.ImportUpdate, ID: "u-1", Name: "one", Changes: map[string]keys.Change{"requestLimit": {}, "name": {}}},
	}, Warnings: []string{"line 2: tag \"x y\" not imported"}})
	if err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"line 3", "the key must be 8 to 512 characters", "changes name, requestLimit", "nothing written: 0 created, 1 updated, 0 skipped, 1 failed", "warning: line 2"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}
