package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/importer"
)

// importCommand is `keygate import`: a client of POST /v1/imports.
func importCommand() caddycmd.Command {
	return caddycmd.Command{
		Name:  "import",
		Usage: "--from kong|tyk|unkey|krakend|csv <file> --tenant <id> [--expires <date|duration>] [--dry-run] [--continue] [--json]",
		Short: "Imports users and keys from another gateway's export; every key keeps working as it is",
		Long: `Reads the file as the peer exports it (a decK state file, Tyk's key sessions, Unkey's
migration body, a KrakenD configuration with auth/api-keys, or keygate's CSV) and creates
its users (with an ACTIVE permission in --tenant) and keys. A second import of the same file
creates nothing; a file with a bad entry writes nothing and names it (--continue writes the
rest). Keys must expire: --expires is required when any key of the file has no expiry.
Routes take the imported keys with foreign_keys (see the README, "Moving in from another
gateway").`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Example = `  keygate import --from kong kong.yaml --tenant acme --expires 8760h --dry-run
  keygate import --from tyk tyk-keys.json --tenant acme --expires 2027-12-31
  keygate import --from csv users.csv --tenant acme --continue --json`
			addCommonFlags(cmd)
			cmd.Flags().String("from", "", "the file's format: "+strings.Join(importer.Sources, ", ")+" (required)")
			cmd.Flags().String("tenant", "", "the tenant to import into (required)")
			cmd.Flags().String("expires", "", "expiry of keys the file gives none: RFC 3339 time, date or duration")
			cmd.Flags().Bool("dry-run", false, "show what would be created, updated, skipped and failed; write nothing")
			cmd.Flags().Bool("continue", false, "write everything but the failed entries")
			cmd.Flags().String("window", "", "the routes' rate-limit window for mapping the peer's limits (default 2m)")
			cmd.Flags().Bool("tyk-plain", false, "Tyk ran with hash_keys false: session ids are the keys")
			cmd.RunE = cliRun(func(cl *cliClient, fl caddycmd.Flags, args []string) error {
				if len(args) != 1 {
					return errors.New("one file argument is required")
				}
				if fl.String("from") == "" || fl.String("tenant") == "" {
					return errors.New("--from and --tenant are required")
				}
				data, err := os.ReadFile(args[0])
				if err != nil {
					return err
				}
				q := url.Values{"from": {fl.String("from")}, "tenant": {fl.String("tenant")}}
				for flag, param := range map[string]string{"expires": "expires", "window": "window"} {
					if v := fl.String(flag); v != "" {
						q.Set(param, v)
					}
				}
				for flag, param := range map[string]string{"dry-run": "dryRun", "continue": "continue", "tyk-plain": "tykPlain"} {
					if fl.Bool(flag) {
						q.Set(param, "true")
					}
				}
				// One transaction: a large file takes seconds per thousand users.
				cl.callTimeout = 10 * time.Minute
				status, body, err := cl.send(http.MethodPost, "/v1/imports?"+q.Encode(), "", data)
				if err != nil {
					return err
				}
				var rep admin.ImportReport
				switch status {
				case http.StatusOK, http.StatusCreated:
					var env struct {
						Data admin.ImportReport `json:"data"`
					}
					if err := json.Unmarshal(body, &env); err != nil {
						return fmt.Errorf("decoding the report: %w", err)
					}
					rep = env.Data
				case http.StatusUnprocessableEntity:
					var p struct {
						Detail string             `json:"detail"`
						Import admin.ImportReport `json:"import"`
					}
					if json.Unmarshal(body, &p) == nil && p.Import.Source != "" {
						if err := printImport(cl, p.Import); err != nil {
							return err
						}
						return errors.New(p.Detail)
					}
					fallthrough
				default:
					return problemMessage(status, body, fmt.Errorf("HTTP %d: %s", status, strings.TrimSpace(string(body))))
				}
				return printImport(cl, rep)
			})
		},
	}
}

// problemMessage turns an error answer into an error naming its fields.
func problemMessage(status int, body []byte, fallback error) error {
	var p struct {
		Title  string `json:"title"`
		Detail string `json:"detail"`
		Errors []struct {
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &p) != nil || p.Title == "" {
		return fallback
	}
	msg := fmt.Sprintf("%s (HTTP %d)", p.Title, status)
	if p.Detail != "" {
		msg += ": " + p.Detail
	}
	for _, fe := range p.Errors {
		msg += fmt.Sprintf("\n  %s: %s", fe.Field, fe.Message)
	}
	return errors.New(msg)
}

// printImport shows a report: JSON with --json, else a table of the items,
// the totals and the warnings.
func printImport(cl *cliClient, rep admin.ImportReport) error {
	if cl.json {
		enc := json.NewEncoder(cl.out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	tw := tabwriter.NewWriter(cl.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REF\tKIND\tACTION\tID\tNAME\tREASON")
	for _, it := range rep.Items {
		reason := it.Reason
		if len(it.Changes) > 0 {
			var fields []string
			for f := range it.Changes {
				fields = append(fields, f)
			}
			reason = "changes " + strings.Join(sortedStrings(fields), ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", it.Ref, it.Kind, it.Action, cell(it.ID), cell(it.Name), cell(reason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	verb := "imported"
	switch {
	case rep.DryRun:
		verb = "dry run, nothing written"
	case !rep.Written:
		verb = "nothing written"
	}
	fmt.Fprintf(cl.out, "%s: %d created, %d updated, %d skipped, %d failed (%s into tenant %s)\n",
		verb, rep.Created, rep.Updated, rep.Skipped, rep.Failed, rep.Source, rep.Tenant)
	for _, w := range rep.Warnings {
		fmt.Fprintln(cl.out, "warning:", w)
	}
	return nil
}

func sortedStrings(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}
