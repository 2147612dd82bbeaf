package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/tenantfile"
)

// exportCommand is `keygate export`: GET /v1/tenants/{id}/export as a file.
func exportCommand() caddycmd.Command {
	return caddycmd.Command{
		Name:  "export",
		Usage: "--tenant <id> [--format yaml|json] [-o <file>]",
		Short: "Writes a tenant as code: its users, roles, permissions, limits and key metadata (never a secret)",
		Long: `Writes the tenant file of --tenant (format version 1, see the README, "Tenants as code",
and the JSON Schema at /v1/schemas/tenant-file.json): the tenant, the users whose primary
tenant it is with their roles, customer roles, access control entities, limits, metadata and
the metadata of their keys, and the permissions other tenants' users hold in it. keygate apply
makes a store match it.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Example = `  keygate export --tenant acme > acme.yaml
  keygate export --tenant acme --format json -o acme.json`
			addCommonFlags(cmd)
			cmd.Flags().String("tenant", "", "the tenant (required)")
			cmd.Flags().String("format", "yaml", "yaml or json")
			cmd.Flags().StringP("output", "o", "", "write to this file instead of stdout")
			cmd.RunE = cliRun(func(cl *cliClient, fl caddycmd.Flags, _ []string) error {
				tenant := fl.String("tenant")
				if tenant == "" {
					return errors.New("--tenant is required")
				}
				exp, found, err := fetchExport(cl, tenant)
				if err != nil {
					return err
				}
				if !found {
					return fmt.Errorf("tenant %s not found", tenant)
				}
				out, err := tenantfile.Marshal(&exp.File, fl.String("format"))
				if err != nil {
					return err
				}
				if p := fl.String("output"); p != "" {
					return os.WriteFile(p, out, 0o600)
				}
				_, err = cl.out.Write(out)
				return err
			})
		},
	}
}

// fetchExport reads the tenant file of tenant; found is false for an
// unknown tenant.
func fetchExport(cl *cliClient, tenant string) (admin.TenantExport, bool, error) {
	var exp admin.TenantExport
	status, body, err := cl.send(http.MethodGet, "/v1/tenants/"+url.PathEscape(tenant)+"/export", "", nil)
	if err != nil {
		return exp, false, err
	}
	if status == http.StatusNotFound {
		return exp, false, nil
	}
	if status != http.StatusOK {
		return exp, false, problemMessage(status, body, fmt.Errorf("HTTP %d", status))
	}
	var env struct {
		Data admin.TenantExport `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return exp, false, fmt.Errorf("decoding the export: %w", err)
	}
	return env.Data, true, nil
}

// applyCommand is `keygate apply`: a plan against the current tenant,
// applied through the admin API with If-Match on every update.
func applyCommand() caddycmd.Command {
	return caddycmd.Command{
		Name:  "apply",
		Usage: "-f <file> [--dry-run] [--prune] [--json]",
		Short: "Makes a tenant match its tenant file; prints the changes (create, update, archive) per field",
		Long: `Reads a tenant file (keygate export writes one), compares it with the tenant in the store
and applies the difference through the admin API, every update with If-Match on the version
it compared against (a change by someone else in between fails with 412: run apply again).
A second apply of the same file changes nothing and says so. --prune archives what the file no
longer lists (users and keys INACTIVE, permissions ARCHIVED); nothing is ever deleted. A file
carries no key material: keys it lists that the store lacks are reported, not created. A file
of a newer format version is refused.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Example = `  keygate apply -f acme.yaml --dry-run
  keygate apply -f acme.yaml --prune`
			addCommonFlags(cmd)
			cmd.Flags().StringP("file", "f", "", "the tenant file (required)")
			cmd.Flags().Bool("dry-run", false, "print the changes, make none")
			cmd.Flags().Bool("prune", false, "archive users, keys and permissions the file no longer lists")
			cmd.RunE = cliRun(func(cl *cliClient, fl caddycmd.Flags, _ []string) error {
				path := fl.String("file")
				if path == "" {
					return errors.New("-f <file> is required")
				}
				data, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				want, err := tenantfile.Parse(data)
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				exp, found, err := fetchExport(cl, want.Tenant.ID)
				if err != nil {
					return err
				}
				var cur *tenantfile.File
				if found {
					cur = &exp.File
				}
				plan := tenantfile.Plan(cur, want, fl.Bool("prune"))
				n := tenantfile.Changes(plan)
				if cl.json {
					if plan == nil {
						plan = []tenantfile.Change{}
					}
					enc := json.NewEncoder(cl.out)
					enc.SetIndent("", "  ")
					if err := enc.Encode(map[string]any{"tenant": want.Tenant.ID, "changes": n, "dryRun": fl.Bool("dry-run"), "plan": plan}); err != nil {
						return err
					}
				} else {
					for _, c := range plan {
						fmt.Fprintln(cl.out, c)
					}
				}
				if n == 0 {
					if !cl.json {
						fmt.Fprintf(cl.out, "no change: tenant %s matches %s\n", want.Tenant.ID, path)
					}
					return nil
				}
				if fl.Bool("dry-run") {
					if !cl.json {
						fmt.Fprintf(cl.out, "dry run: %d changes, none made\n", n)
					}
					return nil
				}
				done, err := tenantfile.Apply(func(method, p, ifMatch string, body any) error {
					_, err := cl.call(method, p, ifMatch, body)
					return err
				}, want.Tenant.ID, plan, exp.Versions)
				if err != nil {
					return fmt.Errorf("after %d of %d changes: %w", done, n, err)
				}
				if !cl.json {
					fmt.Fprintf(cl.out, "applied %d changes to tenant %s\n", done, strings.TrimSpace(want.Tenant.ID))
				}
				return nil
			})
		},
	}
}
