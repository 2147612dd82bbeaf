// Package cli is keygate's command line: the subcommands keygate adds to
// Caddy's (bootstrap, tenants, users, keys, secrets, permissions, activity,
// webhooks, import, export, apply, rotate-master-key), registered with Caddy in init
// so that the keygate binary and every xcaddy build with keygate have them
// (imports.go blank-imports this package). Every command is a client of
// the admin REST API: of the running server's admin endpoint, or, when no
// server answers, of the same API served in-process over the store the
// config names (module.OpenLocalAdmin).
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/module"
)

// The CLI is a client of the admin REST API. While a keygate server runs,
// requests go to its admin endpoint (admin.api.keygate on Caddy's
// local-only admin address); otherwise the CLI opens the store named by
// --config itself and serves the same API in-process. Either way every rule
// of the API applies, and there is one implementation of each operation.

func init() {
	for _, c := range cliCommands() {
		caddycmd.RegisterCommand(c)
	}
}

// CommandNames lists keygate's own subcommands in the order a newcomer
// needs them, so the keygate binary's help can show them first.
func CommandNames() []string {
	cmds := cliCommands()
	names := make([]string, len(cmds))
	for i, c := range cmds {
		names[i] = c.Name
	}
	return names
}

// cliExamples are the Example sections of keygate's subcommands' help.
var cliExamples = map[string]string{
	"bootstrap": `  keygate bootstrap --tenant acme --user ops --config Caddyfile.example
  keygate bootstrap --tenant acme --user ops --expires 2027-01-31 --json --config Caddyfile.example`,
	"tenants": `  keygate tenants list --config Caddyfile.example
  keygate tenants create --id shop --name "Shop Inc." --config Caddyfile.example`,
	"users": `  keygate users create --tenant acme --name ci-bot --key-name ci --config Caddyfile.example
  keygate users list --tenant acme --type TECHNICAL --config Caddyfile.example
  keygate users disable <user id> --config Caddyfile.example`,
	"keys": `  keygate keys create --user <user id> --name ci --expires 90d --config Caddyfile.example
  keygate keys list --user <user id> --config Caddyfile.example
  keygate keys replace --user <user id> <key id> --grace 24h --config Caddyfile.example`,
	"secrets": `  keygate secrets create --user <user id> --config Caddyfile.example
  keygate secrets deactivate --user <user id> <secret id> --config Caddyfile.example`,
	"permissions": `  keygate permissions list --tenant acme --config Caddyfile.example
  keygate permissions set --user <user id> --tenant acme --role VIEWER --config Caddyfile.example`,
	"activity": `  keygate activity list --from 2026-11-01T00:00:00Z --config Caddyfile.example`,
	"webhooks": `  keygate webhooks create --url https://hooks.example.com/keygate --events key.expiring,key.leaked --config Caddyfile.example
  keygate webhooks list --config Caddyfile.example
  keygate webhooks deliveries <webhook id> --status FAILED --config Caddyfile.example
  keygate webhooks replay <delivery id> --config Caddyfile.example
  keygate webhooks rotate-secret <webhook id> --grace 24h --config Caddyfile.example
  keygate webhooks delete <webhook id> --config Caddyfile.example`,
	"rotate-master-key": `  keygate rotate-master-key --new-key "$(head -c32 /dev/urandom | base64)" --config Caddyfile.example`,
}

// cliVerb is one `keygate <resource> <verb>` operation.
type cliVerb struct {
	name  string
	usage string
	short string
	flags func(*cobra.Command)
	run   func(cl *cliClient, fl caddycmd.Flags, args []string) error
}

func cliCommands() []caddycmd.Command {
	return []caddycmd.Command{
		{
			Name:  "bootstrap",
			Usage: "--tenant <id> --user <name> [--expires <date|duration>] [--json]",
			Short: "Creates a tenant, a superadmin user with an ADMIN permission in it, and prints its first key once",
			CobraFunc: func(cmd *cobra.Command) {
				cmd.Example = cliExamples["bootstrap"]
				addCommonFlags(cmd)
				cmd.Flags().String("tenant", "", "tenant id to create (required)")
				cmd.Flags().String("user", "", "name of the admin user (required)")
				cmd.Flags().String("expires", "8760h", "key expiry: RFC 3339 date or duration from now")
				cmd.RunE = cliRun(func(cl *cliClient, fl caddycmd.Flags, _ []string) error {
					tenant, user := fl.String("tenant"), fl.String("user")
					if tenant == "" || user == "" {
						return errors.New("--tenant and --user are required")
					}
					exp, err := parseExpiry(fl.String("expires"))
					if err != nil {
						return err
					}
					res, err := cl.call(http.MethodPost, "/v1/bootstrap", "", map[string]any{
						"tenant": tenant, "user": user, "expiresAt": exp,
					})
					if err != nil {
						return err
					}
					return cl.print(res.Data, []string{"tenant.id", "user.id", "user.name", "key.id", "key.key"})
				})
			},
		},
		resourceCommand("tenants", "Manages tenants (workspaces)", []cliVerb{
			{name: "list", short: "Lists tenants", run: listRun("/v1/tenants", nil, []string{"id", "name", "status", "version"})},
			{name: "get", usage: "<id>", short: "Shows a tenant", run: getRun("/v1/tenants/%s", []string{"id", "name", "status", "version", "createdAt"})},
			{name: "create", usage: "--id <id> --name <name>", short: "Creates a tenant",
				flags: func(c *cobra.Command) {
					c.Flags().String("id", "", "tenant id (required)")
					c.Flags().String("name", "", "display name")
				},
				run: func(cl *cliClient, fl caddycmd.Flags, _ []string) error {
					res, err := cl.call(http.MethodPost, "/v1/tenants", "", map[string]any{"id": fl.String("id"), "name": fl.String("name")})
					if err != nil {
						return err
					}
					return cl.print(res.Data, []string{"id", "name", "status", "version"})
				}},
			{name: "archive", usage: "<id>", short: "Archives a tenant: its keys, tokens and signatures stop working at once", run: patchRun("/v1/tenants/%s", map[string]any{"status": "ARCHIVED"}, []string{"id", "name", "status", "version"})},
			{name: "activate", usage: "<id>", short: "Reactivates an archived tenant: its credentials work again as they were", run: patchRun("/v1/tenants/%s", map[string]any{"status": "ACTIVE"}, []string{"id", "name", "status", "version"})},
		}),
		resourceCommand("users", "Manages technical, service and application users", []cliVerb{
			{name: "list", usage: "[--tenant <id>] [--status S] [--type T] [--q text]", short: "Lists users",
				flags: func(c *cobra.Command) {
					c.Flags().String("tenant", "", "only users of this tenant")
					c.Flags().String("status", "", "ACTIVE, INACTIVE, DELETED …")
					c.Flags().String("type", "", "TECHNICAL, SERVICE or APPLICATION")
					c.Flags().String("q", "", "search text")
					c.Flags().Int("page", 1, "page number")
					c.Flags().Int("size", 30, "page size (max 100)")
				},
				run: listRun("/v1/users", []string{"tenant", "status", "type", "q", "page", "size"}, []string{"id", "name", "type", "role", "status", "primaryTenant", "requestLimit"})},
			{name: "get", usage: "<id>", short: "Shows a user", run: getRun("/v1/users/%s", []string{"id", "name", "type", "role", "status", "primaryTenant", "requestLimit", "version"})},
			{name: "create", usage: "--tenant <id> --name <name> [--type T] [--role R] [--id ID] [--request-limit N]", short: "Creates a user",
				flags: func(c *cobra.Command) {
					c.Flags().String("tenant", "", "primary tenant (required)")
					c.Flags().String("name", "", "user name (required)")
					c.Flags().String("id", "", "user id (default: generated)")
					c.Flags().String("type", "TECHNICAL", "TECHNICAL, SERVICE or APPLICATION")
					c.Flags().String("role", "MEMBER", "ADMIN, MEMBER or VIEWER (also the permission's role in the tenant)")
					c.Flags().String("description", "", "description")
					c.Flags().String("email", "", "notification email")
					c.Flags().Int("request-limit", 0, "requests per window (0: the route's default)")
					c.Flags().String("key-name", "", "also issue the user's first access key with this name, printed once")
					c.Flags().String("key-expires", "2160h", "expiry of that key: RFC 3339 date or duration from now")
				},
				run: func(cl *cliClient, fl caddycmd.Flags, _ []string) error {
					body := map[string]any{
						"name": fl.String("name"), "type": fl.String("type"), "role": fl.String("role"),
						"primaryTenant": fl.String("tenant"), "requestLimit": fl.Int("request-limit"),
					}
					for _, f := range []string{"id", "description", "email"} {
						if v := fl.String(f); v != "" {
							body[f] = v
						}
					}
					cols := []string{"id", "name", "type", "role", "status", "primaryTenant"}
					if name := fl.String("key-name"); name != "" {
						exp, err := parseExpiry(fl.String("key-expires"))
						if err != nil {
							return err
						}
						body["key"] = map[string]any{"name": name, "expiresAt": exp}
						cols = append(cols, "key.id", "key.expiresAt", "key.key")
					}
					res, err := cl.call(http.MethodPost, "/v1/users", "", body)
					if err != nil {
						return err
					}
					return cl.print(res.Data, cols)
				}},
			{name: "update", usage: "<id> [--name N] [--description D] [--email E] [--type T] [--role R] [--request-limit N] [--tenant T]",
				short: "Changes a user; only the flags given change (--role is the role of its permission in its primary tenant)",
				flags: func(c *cobra.Command) {
					c.Flags().String("name", "", "user name")
					c.Flags().String("description", "", "description")
					c.Flags().String("email", "", "notification email")
					c.Flags().String("type", "", "TECHNICAL, SERVICE or APPLICATION")
					c.Flags().String("role", "", "ADMIN, MEMBER or VIEWER")
					c.Flags().Int("request-limit", 0, "requests per window (0: the route's default)")
					c.Flags().String("tenant", "", "primary tenant")
				},
				run: func(cl *cliClient, fl caddycmd.Flags, args []string) error {
					if len(args) != 1 {
						return errors.New("usage: users update <id> [flags]")
					}
					body := map[string]any{}
					for flag, field := range map[string]string{"name": "name", "description": "description", "email": "email",
						"type": "type", "role": "role", "tenant": "primaryTenant"} {
						if fl.Changed(flag) {
							body[field] = fl.String(flag)
						}
					}
					if fl.Changed("request-limit") {
						body["requestLimit"] = fl.Int("request-limit")
					}
					if len(body) == 0 {
						return errors.New("nothing to change: give at least one flag")
					}
					res, err := cl.call(http.MethodPatch, "/v1/users/"+url.PathEscape(args[0]), "*", body)
					if err != nil {
						return err
					}
					return cl.print(res.Data, []string{"id", "name", "type", "role", "status", "primaryTenant", "requestLimit", "version"})
				}},
			{name: "disable", usage: "<id>", short: "Sets a user INACTIVE (its keys stop working)", run: patchRun("/v1/users/%s", map[string]any{"status": "INACTIVE"}, []string{"id", "name", "status", "version"})},
			{name: "enable", usage: "<id>", short: "Sets a user ACTIVE again", run: patchRun("/v1/users/%s", map[string]any{"status": "ACTIVE"}, []string{"id", "name", "status", "version"})},
			{name: "delete", usage: "<id>", short: "Deletes a user and revokes all its keys", run: deleteRun("/v1/users/%s")},
			{name: "history", usage: "<id>", short: "Shows a user's changelog", run: getRun("/v1/users/%s/history", []string{"at", "actor", "action", "target"})},
			{name: "roles", usage: "<id> [--workspace <tenant>]", short: "Shows the roles of a user's permission in a tenant: the roles that count there",
				flags: func(c *cobra.Command) {
					c.Flags().String("workspace", "", "tenant (default: the caller's; required for a superadmin when the user has several permissions)")
				},
				run: func(cl *cliClient, fl caddycmd.Flags, args []string) error {
					if len(args) != 1 {
						return errors.New("one id argument is required")
					}
					path := "/v1/users/" + url.PathEscape(args[0]) + "/roles"
					if ws := fl.String("workspace"); ws != "" {
						path += "?" + url.Values{"workspace": {ws}}.Encode()
					}
					res, err := cl.call(http.MethodGet, path, "", nil)
					if err != nil {
						return err
					}
					return cl.print(res.Data, []string{"userId", "workspace", "role", "customerRoles"})
				}},
			{name: "add-role", usage: "<id> <ADMIN|MEMBER|VIEWER|customer role> [--workspace <tenant>]",
				short: "Sets the standard role of the user's permission in a tenant, or adds a customer role",
				flags: workspaceFlag, run: roleRun(http.MethodPut)},
			{name: "remove-role", usage: "<id> <role> [--workspace <tenant>]",
				short: "Removes a customer role, or sets the standard role back to MEMBER",
				flags: workspaceFlag, run: roleRun(http.MethodDelete)},
			{name: "export", usage: "<id>", short: "Prints everything stored about a user as one JSON document (no secrets)",
				run: func(cl *cliClient, _ caddycmd.Flags, args []string) error {
					if len(args) != 1 {
						return errors.New("one id argument is required")
					}
					res, err := cl.call(http.MethodGet, "/v1/users/"+url.PathEscape(args[0])+"/export", "", nil)
					if err != nil {
						return err
					}
					cl.json = true
					return cl.print(res.Data, nil)
				}},
		}),
		resourceCommand("activity", "Shows the admin API's activity log", []cliVerb{
			{name: "list", usage: "[--actor <id>] [--from <RFC 3339>] [--to <RFC 3339>]", short: "Lists admin API calls, newest first",
				flags: func(c *cobra.Command) {
					c.Flags().String("actor", "", "only calls by this user id")
					c.Flags().String("from", "", "not before this time (RFC 3339)")
					c.Flags().String("to", "", "not after this time (RFC 3339)")
					c.Flags().Int("page", 1, "page number")
					c.Flags().Int("size", 30, "page size (max 100)")
				},
				run: listRun("/v1/activity", []string{"actor", "from", "to", "page", "size"}, []string{"at", "actor", "method", "path", "status", "tenant"})},
		}),
		resourceCommand("keys", "Manages access keys", []cliVerb{
			{name: "list", usage: "--user <id>", short: "Lists a user's keys (masked)",
				flags: userFlag,
				run: func(cl *cliClient, fl caddycmd.Flags, _ []string) error {
					res, err := cl.call(http.MethodGet, "/v1/users/"+url.PathEscape(fl.String("user"))+"/keys", "", nil)
					if err != nil {
						return err
					}
					if !cl.json {
						res.Data = markReplaced(res.Data)
					}
					return cl.print(res.Data, []string{"id", "name", "tenant", "status", "usable", "expiresAt", "masked", "replacedBy", "disableAt", "lastUsedAt"})
				}},
			{name: "update", usage: "--user <id> <keyId> [--name <name>] [--expires <date|duration>]", short: "Renames a key or changes its expiry (the key itself stays)",
				flags: func(c *cobra.Command) {
					userFlag(c)
					c.Flags().String("name", "", "new key name, unique per user")
					c.Flags().String("expires", "", "new expiry: RFC 3339 date or duration from now")
				},
				run: func(cl *cliClient, fl caddycmd.Flags, args []string) error {
					if len(args) != 1 {
						return errors.New("usage: keys update --user <id> <keyId> [--name N] [--expires E]")
					}
					body := map[string]any{}
					if fl.Changed("name") {
						body["name"] = fl.String("name")
					}
					if fl.Changed("expires") {
						exp, err := parseExpiry(fl.String("expires"))
						if err != nil {
							return err
						}
						body["expiresAt"] = exp
					}
					if len(body) == 0 {
						return errors.New("nothing to change: give --name or --expires")
					}
					res, err := cl.call(http.MethodPatch, "/v1/users/"+url.PathEscape(fl.String("user"))+"/keys/"+url.PathEscape(args[0]), "*", body)
					if err != nil {
						return err
					}
					return cl.print(res.Data, []string{"id", "name", "tenant", "status", "expiresAt", "version"})
				}},
			{name: "create", usage: "--user <id> --name <name> [--expires <date|duration>] [--tenant <id>] [--json]", short: "Creates a key and prints it once",
				flags: func(c *cobra.Command) {
					userFlag(c)
					c.Flags().String("name", "", "key name, unique per user (required)")
					c.Flags().String("expires", "2160h", "expiry: RFC 3339 date or duration from now")
					c.Flags().String("tenant", "", "tenant the key is valid in (default: the user's primary tenant)")
				},
				run: func(cl *cliClient, fl caddycmd.Flags, _ []string) error {
					exp, err := parseExpiry(fl.String("expires"))
					if err != nil {
						return err
					}
					body := map[string]any{"name": fl.String("name"), "expiresAt": exp}
					if t := fl.String("tenant"); t != "" {
						body["tenant"] = t
					}
					res, err := cl.call(http.MethodPost, "/v1/users/"+url.PathEscape(fl.String("user"))+"/keys", "", body)
					if err != nil {
						return err
					}
					return cl.print(res.Data, []string{"id", "name", "tenant", "expiresAt", "key"})
				}},
			{name: "revoke", usage: "--user <id> <keyId>", short: "Revokes a key for good",
				flags: userFlag,
				run: func(cl *cliClient, fl caddycmd.Flags, args []string) error {
					if len(args) != 1 {
						return errors.New("usage: keys revoke --user <id> <keyId>")
					}
					_, err := cl.call(http.MethodDelete, "/v1/users/"+url.PathEscape(fl.String("user"))+"/keys/"+url.PathEscape(args[0]), "*", nil)
					if err == nil && !cl.json {
						fmt.Fprintln(cl.out, "revoked")
					}
					return err
				}},
			{name: "replace", usage: "--user <id> <keyId> [--grace <duration>]", short: "Issues a new key and disables the old one",
				flags: func(c *cobra.Command) {
					userFlag(c)
					c.Flags().String("grace", "", "keep the old key working this long (default: disable at once)")
				},
				run: func(cl *cliClient, fl caddycmd.Flags, args []string) error {
					if len(args) != 1 {
						return errors.New("usage: keys replace --user <id> <keyId>")
					}
					body := map[string]any{}
					if g := fl.String("grace"); g != "" {
						body["gracePeriod"] = g
					}
					res, err := cl.call(http.MethodPost, "/v1/users/"+url.PathEscape(fl.String("user"))+"/keys/"+url.PathEscape(args[0])+"/replace", "", body)
					if err != nil {
						return err
					}
					return cl.print(res.Data, []string{"id", "name", "expiresAt", "key"})
				}},
		}),
		resourceCommand("secrets", "Manages signing secrets of application users", []cliVerb{
			{name: "list", usage: "--user <id>", short: "Lists a user's signing secrets",
				flags: userFlag,
				run: func(cl *cliClient, fl caddycmd.Flags, _ []string) error {
					res, err := cl.call(http.MethodGet, "/v1/users/"+url.PathEscape(fl.String("user"))+"/secrets", "", nil)
					if err != nil {
						return err
					}
					return cl.print(res.Data, []string{"id", "name", "status", "createdAt", "lastUsedAt"})
				}},
			{name: "create", usage: "--user <id> [--name <name>]", short: "Creates a signing secret and prints it once",
				flags: func(c *cobra.Command) {
					userFlag(c)
					c.Flags().String("name", "", "secret name")
				},
				run: func(cl *cliClient, fl caddycmd.Flags, _ []string) error {
					res, err := cl.call(http.MethodPost, "/v1/users/"+url.PathEscape(fl.String("user"))+"/secrets", "", map[string]any{"name": fl.String("name")})
					if err != nil {
						return err
					}
					return cl.print(res.Data, []string{"id", "name", "status", "secret"})
				}},
			{name: "deactivate", usage: "--user <id> <secretId>", short: "Deactivates a signing secret",
				flags: userFlag,
				run: func(cl *cliClient, fl caddycmd.Flags, args []string) error {
					if len(args) != 1 {
						return errors.New("usage: secrets deactivate --user <id> <secretId>")
					}
					res, err := cl.call(http.MethodPatch, "/v1/users/"+url.PathEscape(fl.String("user"))+"/secrets/"+url.PathEscape(args[0]), "*", map[string]any{"status": "INACTIVE"})
					if err != nil {
						return err
					}
					return cl.print(res.Data, []string{"id", "name", "status"})
				}},
			{name: "delete", usage: "--user <id> <secretId>", short: "Deletes a signing secret",
				flags: userFlag,
				run: func(cl *cliClient, fl caddycmd.Flags, args []string) error {
					if len(args) != 1 {
						return errors.New("usage: secrets delete --user <id> <secretId>")
					}
					_, err := cl.call(http.MethodDelete, "/v1/users/"+url.PathEscape(fl.String("user"))+"/secrets/"+url.PathEscape(args[0]), "*", nil)
					if err == nil && !cl.json {
						fmt.Fprintln(cl.out, "deleted")
					}
					return err
				}},
		}),
		resourceCommand("permissions", "Manages users' permissions in tenants", []cliVerb{
			{name: "list", usage: "--tenant <id> [--status S]", short: "Lists a tenant's permissions",
				flags: func(c *cobra.Command) {
					c.Flags().String("tenant", "", "tenant (required)")
					c.Flags().String("status", "", "ACTIVE, INVITED or ARCHIVED")
				},
				run: func(cl *cliClient, fl caddycmd.Flags, _ []string) error {
					q := url.Values{}
					if s := fl.String("status"); s != "" {
						q.Set("status", s)
					}
					res, err := cl.call(http.MethodGet, "/v1/workspaces/"+url.PathEscape(fl.String("tenant"))+"/permissions?"+q.Encode(), "", nil)
					if err != nil {
						return err
					}
					return cl.print(res.Data, []string{"id", "user.id", "user.userName", "workspaceId", "role", "status"})
				}},
			{name: "set", usage: "--user <id> --tenant <id> --role R [--status S]", short: "Creates or updates the permission of a user in a tenant",
				flags: func(c *cobra.Command) {
					userFlag(c)
					c.Flags().String("tenant", "", "tenant (required)")
					c.Flags().String("role", "MEMBER", "ADMIN, MEMBER or VIEWER")
					c.Flags().String("status", "ACTIVE", "ACTIVE, INVITED or ARCHIVED")
				},
				run: func(cl *cliClient, fl caddycmd.Flags, _ []string) error {
					res, err := cl.call(http.MethodPost, "/v1/permissions", "", map[string]any{
						"user": map[string]any{"id": fl.String("user")}, "workspace": map[string]any{"id": fl.String("tenant")},
						"role": fl.String("role"), "status": fl.String("status"),
					})
					if err != nil {
						return err
					}
					return cl.print(res.Data, []string{"id", "user.id", "user.userName", "workspaceId", "role", "status"})
				}},
		}),
		webhooksCommand(),
		importCommand(),
		exportCommand(),
		applyCommand(),
		{
			Name:  "rotate-master-key",
			Usage: "--new-key <base64> [--config <file>]",
			Short: "Re-encrypts every stored signing secret and token key under a new master key (server stopped)",
			Long: `Opens the store named by --config directly (stop the server first), decrypts every
sealed value with the configured master key and re-encrypts it with --new-key, in one
transaction. Then set master_key to the new key and start the server again.`,
			CobraFunc: func(cmd *cobra.Command) {
				cmd.Example = cliExamples["rotate-master-key"]
				addCommonFlags(cmd)
				cmd.Flags().String("new-key", "", "the new master key, base64 of 32 bytes (required)")
				cmd.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
					n, err := module.RotateMasterKey(fl.String("config"), fl.String("adapter"), fl.String("new-key"))
					if err != nil {
						return caddy.ExitCodeFailedStartup, err
					}
					fmt.Printf("re-encrypted %d values; now set master_key to the new key\n", n)
					return caddy.ExitCodeSuccess, nil
				})
			},
		},
	}
}

// markReplaced shows a key that was replaced but still works (its grace
// period, until disableAt) as REPLACED rather than ACTIVE in the table.
func markReplaced(data json.RawMessage) json.RawMessage {
	var rows []map[string]any
	if json.Unmarshal(data, &rows) != nil {
		return data
	}
	for _, r := range rows {
		if by, _ := r["replacedBy"].(string); by != "" && r["status"] == "ACTIVE" {
			r["status"] = "REPLACED"
		}
	}
	out, err := json.Marshal(rows)
	if err != nil {
		return data
	}
	return out
}

func userFlag(c *cobra.Command) { c.Flags().String("user", "", "user id (required)") }

func workspaceFlag(c *cobra.Command) {
	c.Flags().String("workspace", "", "tenant of the permission (default: the caller's; required for a superadmin when the user has several)")
}

// roleRun calls PUT or DELETE /v1/users/{id}/roles/{roleKey}[?workspace=].
func roleRun(method string) func(*cliClient, caddycmd.Flags, []string) error {
	return func(cl *cliClient, fl caddycmd.Flags, args []string) error {
		if len(args) != 2 {
			return errors.New("usage: <user id> <role>")
		}
		path := "/v1/users/" + url.PathEscape(args[0]) + "/roles/" + url.PathEscape(args[1])
		if ws := fl.String("workspace"); ws != "" {
			path += "?" + url.Values{"workspace": {ws}}.Encode()
		}
		res, err := cl.call(method, path, "", nil)
		if err != nil {
			return err
		}
		return cl.print(res.Data, []string{"userId", "workspace", "role", "customerRoles"})
	}
}

func addCommonFlags(cmd *cobra.Command) {
	cmd.Flags().StringP("config", "c", "", "config file of the keygate server (to find its admin address or its store)")
	cmd.Flags().StringP("adapter", "a", "", "name of the config adapter")
	cmd.Flags().String("address", "", "admin address of the running server: host:port, or unix//path/to/socket (default: from the config, else localhost:2019)")
	cmd.Flags().Bool("json", false, "print JSON for scripts")
	cmd.Flags().BoolP("verbose", "v", false, "print (to stderr) which server or store the command talked to")
}

// resourceCommand makes `keygate <name> <verb> …` with one sub-command per verb.
func resourceCommand(name, short string, verbs []cliVerb) caddycmd.Command {
	return caddycmd.Command{
		Name:  name,
		Usage: "<" + verbNames(verbs) + "> [flags]",
		Short: short,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Example = cliExamples[name]
			for _, v := range verbs {
				sub := &cobra.Command{Use: v.name + " " + v.usage, Short: v.short, Example: verbExample(cliExamples[name], v.name)}
				addCommonFlags(sub)
				if v.flags != nil {
					v.flags(sub)
				}
				sub.RunE = cliRun(v.run)
				cmd.AddCommand(sub)
			}
		},
	}
}

// verbExample picks the lines of a resource's examples that use verb.
func verbExample(examples, verb string) string {
	var lines []string
	for _, l := range strings.Split(examples, "\n") {
		f := strings.Fields(l)
		if len(f) > 2 && f[2] == verb {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

func verbNames(verbs []cliVerb) string {
	names := make([]string, len(verbs))
	for i, v := range verbs {
		names[i] = v.name
	}
	return strings.Join(names, "|")
}

// cliRun adapts a verb to cobra: it builds the client from the flags.
func cliRun(run func(*cliClient, caddycmd.Flags, []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		cmd.SilenceUsage = true
		fl := caddycmd.Flags{FlagSet: cmd.Flags()}
		cl := &cliClient{config: fl.String("config"), adapter: fl.String("adapter"), address: fl.String("address"),
			json: fl.Bool("json"), out: cmd.OutOrStdout()}
		if fl.Bool("verbose") {
			cl.verbose = cmd.ErrOrStderr()
		}
		defer cl.close()
		return run(cl, fl, args)
	}
}

func listRun(path string, queryFlags []string, cols []string) func(*cliClient, caddycmd.Flags, []string) error {
	return func(cl *cliClient, fl caddycmd.Flags, _ []string) error {
		q := url.Values{}
		for _, f := range queryFlags {
			if v := fl.String(f); v != "" && v != "0" {
				q.Set(f, v)
			}
		}
		p := path
		if len(q) > 0 {
			p += "?" + q.Encode()
		}
		res, err := cl.call(http.MethodGet, p, "", nil)
		if err != nil {
			return err
		}
		return cl.print(res.Data, cols)
	}
}

func getRun(pathFmt string, cols []string) func(*cliClient, caddycmd.Flags, []string) error {
	return func(cl *cliClient, _ caddycmd.Flags, args []string) error {
		if len(args) != 1 {
			return errors.New("one id argument is required")
		}
		res, err := cl.call(http.MethodGet, fmt.Sprintf(pathFmt, url.PathEscape(args[0])), "", nil)
		if err != nil {
			return err
		}
		return cl.print(res.Data, cols)
	}
}

func patchRun(pathFmt string, body map[string]any, cols []string) func(*cliClient, caddycmd.Flags, []string) error {
	return func(cl *cliClient, _ caddycmd.Flags, args []string) error {
		if len(args) != 1 {
			return errors.New("one id argument is required")
		}
		res, err := cl.call(http.MethodPatch, fmt.Sprintf(pathFmt, url.PathEscape(args[0])), "*", body)
		if err != nil {
			return err
		}
		return cl.print(res.Data, cols)
	}
}

func deleteRun(pathFmt string) func(*cliClient, caddycmd.Flags, []string) error {
	return func(cl *cliClient, _ caddycmd.Flags, args []string) error {
		if len(args) != 1 {
			return errors.New("one id argument is required")
		}
		_, err := cl.call(http.MethodDelete, fmt.Sprintf(pathFmt, url.PathEscape(args[0])), "*", nil)
		if err == nil && !cl.json {
			fmt.Fprintln(cl.out, "deleted")
		}
		return err
	}
}

// parseExpiry accepts an RFC 3339 time, a date (2027-01-31) or a duration from now.
func parseExpiry(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := caddy.ParseDuration(s); err == nil && d > 0 {
		return time.Now().Add(d).UTC().Truncate(time.Second), nil
	}
	return time.Time{}, fmt.Errorf("expiry %q: use an RFC 3339 time, a date like 2027-01-31, or a duration like 2160h or 90d", s)
}

// apiResult is the admin API's success envelope.
type apiResult struct {
	Status string          `json:"status"`
	Type   string          `json:"type"`
	Total  int             `json:"total"`
	Data   json.RawMessage `json:"data"`
}

// cliClient sends admin API calls to the running server or, when none
// answers, to an in-process API over the store.
type cliClient struct {
	config, adapter, address string
	json                     bool
	out                      io.Writer
	// verbose, when set (-v), receives one line saying which server (or
	// store) answered.
	verbose io.Writer

	local    http.Handler
	localApp *module.LocalAdmin
	// adminAddr is the admin address the last remote call went to.
	adminAddr string
	// callTimeout bounds a remote call. Default: 30s.
	callTimeout time.Duration
}

// timeout is the bound of one remote call.
func (cl *cliClient) timeout() time.Duration {
	if cl.callTimeout > 0 {
		return cl.callTimeout
	}
	return 30 * time.Second
}

func (cl *cliClient) close() {
	if cl.localApp != nil {
		_ = cl.localApp.Close()
	}
}

// call performs one API request; ifMatch "" sends none.
func (cl *cliClient) call(method, path, ifMatch string, body any) (*apiResult, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return nil, err
		}
	}
	status, resp, err := cl.send(method, path, ifMatch, payload)
	if err != nil {
		return nil, err
	}
	if status >= 400 {
		var p struct {
			Title  string `json:"title"`
			Detail string `json:"detail"`
			Errors []struct {
				Field   string `json:"field"`
				Message string `json:"message"`
			} `json:"errors"`
		}
		if json.Unmarshal(resp, &p) != nil || p.Title == "" {
			return nil, fmt.Errorf("HTTP %d: %s", status, bytes.TrimSpace(resp))
		}
		msg := fmt.Sprintf("%s (HTTP %d)", p.Title, status)
		if p.Detail != "" {
			msg += ": " + p.Detail
		}
		for _, fe := range p.Errors {
			msg += fmt.Sprintf("\n  %s: %s", fe.Field, fe.Message)
		}
		return nil, errors.New(msg)
	}
	res := new(apiResult)
	if len(resp) > 0 {
		if err := json.Unmarshal(resp, res); err != nil {
			return nil, fmt.Errorf("decoding response: %w", err)
		}
	}
	return res, nil
}

func (cl *cliClient) send(method, path, ifMatch string, payload []byte) (int, []byte, error) {
	if cl.local == nil {
		status, resp, err := cl.sendRemote(method, path, ifMatch, payload)
		if err == nil {
			return status, resp, nil
		}
		if !errors.Is(err, errNoServer) {
			return 0, nil, err
		}
		// A read opens an existing store only: it never creates the
		// store file or a master key.
		readOnly := method == http.MethodGet || method == http.MethodHead
		if err := cl.openLocal(readOnly); err != nil {
			return 0, nil, err
		}
	}
	req := httptest.NewRequest(method, path, bytes.NewReader(payload))
	req = req.WithContext(admin.WithTrustedCaller(req.Context(), "cli"))
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	rec := httptest.NewRecorder()
	cl.local.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes(), nil
}

var errNoServer = errors.New("no keygate server answers")

// sendRemote calls the running server's admin endpoint.
func (cl *cliClient) sendRemote(method, path, ifMatch string, payload []byte) (int, []byte, error) {
	addr, err := caddycmd.DetermineAdminAPIAddress(cl.address, nil, cl.config, cl.adapter)
	if err != nil {
		return 0, nil, err
	}
	cl.adminAddr = addr
	na, err := caddy.ParseNetworkAddress(addr)
	if err != nil {
		return 0, nil, fmt.Errorf("admin address %s: %w", addr, err)
	}
	dial := na.JoinHostPort(0)
	if na.IsUnixNetwork() {
		dial = unixSocketPath(na.Host)
	}
	client := &http.Client{
		Timeout: cl.timeout(),
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			d.Timeout = 2 * time.Second
			return d.DialContext(ctx, na.Network, dial)
		}},
	}
	origin := "http://" + na.JoinHostPort(0)
	if na.IsUnixNetwork() {
		origin = "http://127.0.0.1"
	}
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequest(method, origin+module.AdminPathPrefix+path, body)
	if err != nil {
		return 0, nil, err
	}
	if !na.IsUnixNetwork() {
		req.Header.Set("Origin", origin)
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	resp, err := client.Do(req)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" && errors.Is(err, os.ErrPermission) {
			// The server runs, behind a socket this user may not open: the
			// store is the server's, so opening it directly is no way out.
			return 0, nil, fmt.Errorf("the admin endpoint %s (%s) refuses this user: run the CLI as the user keygate runs as, or as root", addr, cl.addrSource())
		}
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			cl.logf("no server answers on %s (%s)", addr, cl.addrSource())
			return 0, nil, errNoServer
		}
		return 0, nil, fmt.Errorf("calling the admin endpoint at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return 0, nil, err
	}
	// A Caddy without keygate's admin endpoint (404) or without a keygate
	// app (503 from AdminAPI) does not hold our store: open it directly.
	if resp.StatusCode == http.StatusNotFound && !bytes.Contains(data, []byte(`"status"`)) ||
		resp.StatusCode == http.StatusServiceUnavailable && bytes.Contains(data, []byte("no keygate app")) {
		cl.logf("the server on %s (%s) is not a keygate server with a keygate app (HTTP %d)", addr, cl.addrSource(), resp.StatusCode)
		return 0, nil, errNoServer
	}
	cl.logf("%s %s: HTTP %d from the keygate server on %s (%s), %s", method, path, resp.StatusCode, addr, cl.addrSource(), req.URL.Redacted())
	return resp.StatusCode, data, nil
}

// unixSocketPath is the file of a Unix socket address's host: Caddy's
// admin option may carry the socket's permission bits after a '|'
// (unix//run/keygate/admin.sock|0600), which are no part of the path.
func unixSocketPath(host string) string {
	path, mode, ok := strings.Cut(host, "|")
	if !ok {
		return host
	}
	if _, err := strconv.ParseUint(mode, 8, 32); err != nil {
		return host // not permission bits: a '|' in the file name
	}
	return path
}

// addrSource says where the admin address came from, for -v.
func (cl *cliClient) addrSource() string {
	switch {
	case cl.address != "":
		return "from --address"
	case cl.config != "":
		return "the admin address of " + cl.config + ", or Caddy's default localhost:2019 when it names none"
	default:
		return "Caddy's default admin address; --config or --address name another"
	}
}

// logf writes one -v line to stderr.
func (cl *cliClient) logf(format string, args ...any) {
	if cl.verbose != nil {
		fmt.Fprintf(cl.verbose, "keygate: "+format+"\n", args...)
	}
}

// openLocal opens the store named by the config and serves the API
// in-process. With readOnly, a file store that does not exist yet is an
// error rather than created, and so is a missing master key file.
func (cl *cliClient) openLocal(readOnly bool) error {
	local, err := module.OpenLocalAdmin(cl.config, cl.adapter, readOnly, cl.adminAddr, func(where string) {
		cl.logf("opening %s directly (no keygate server answered)", where)
	})
	if err != nil {
		return err
	}
	cl.localApp = local
	cl.local = local
	return nil
}

// print writes data as JSON (--json) or as a table of cols (dotted paths).
func (cl *cliClient) print(data json.RawMessage, cols []string) error {
	if cl.json {
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			return err
		}
		enc := json.NewEncoder(cl.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	var rows []map[string]any
	if len(data) > 0 && data[0] == '[' {
		if err := json.Unmarshal(data, &rows); err != nil {
			return err
		}
	} else {
		var one map[string]any
		if err := json.Unmarshal(data, &one); err != nil {
			return err
		}
		rows = []map[string]any{one}
	}
	tw := tabwriter.NewWriter(cl.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(cols, "\t")))
	for _, row := range rows {
		vals := make([]string, len(cols))
		for i, c := range cols {
			vals[i] = cell(lookupPath(row, c))
		}
		fmt.Fprintln(tw, strings.Join(vals, "\t"))
	}
	return tw.Flush()
}

func lookupPath(m map[string]any, path string) any {
	var cur any = m
	for _, part := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[part]
	}
	return cur
}

func cell(v any) string {
	switch v := v.(type) {
	case nil:
		return "-"
	case string:
		if v == "" {
			return "-"
		}
		return v
	case float64:
		return fmt.Sprint(int64(v))
	case []any:
		parts := make([]string, len(v))
		for i, p := range v {
			parts[i] = cell(p)
		}
		sort.Strings(parts)
		return strings.Join(parts, ",")
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}
