package cli

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// webhookCols and deliveryCols are the table columns of webhooks and
// deliveries.
var (
	webhookCols  = []string{"id", "tenant", "url", "events", "enabled", "previousSecretExpiresAt"}
	deliveryCols = []string{"id", "eventType", "kind", "status", "attempts", "lastResponse", "nextAttemptAt", "lastError"}
)

// webhooksCommand is `keygate webhooks …`: the webhooks and their
// deliveries, through the admin API (/v1/webhooks, /v1/deliveries).
func webhooksCommand() caddycmd.Command {
	return resourceCommand("webhooks", "Manages webhooks (signed event deliveries) and their deliveries", []cliVerb{
		{name: "list", usage: "[--tenant <id>]", short: "Lists webhooks (a superadmin: all, or one tenant's)",
			flags: func(c *cobra.Command) {
				c.Flags().String("tenant", "", "only this tenant's webhooks")
				c.Flags().Int("page", 1, "page number")
				c.Flags().Int("size", 30, "page size (max 100)")
			},
			run: listRun("/v1/webhooks", []string{"tenant", "page", "size"}, webhookCols)},
		{name: "create", usage: "--url <url> [--events <type,…>] [--tenant <id>] [--description <text>] [--disabled]",
			short: "Creates a webhook and prints its signing secret (whsec_…) once",
			flags: func(c *cobra.Command) {
				c.Flags().String("url", "", "where deliveries are POSTed: an absolute http or https URL (required)")
				c.Flags().StringSlice("events", []string{"*"}, "event types, comma-separated, or * for all")
				c.Flags().String("tenant", "", "the tenant whose events it gets (default: the caller's; a superadmin may leave it out for all tenants)")
				c.Flags().String("description", "", "description")
				c.Flags().Bool("disabled", false, "create it disabled")
			},
			run: func(cl *cliClient, fl caddycmd.Flags, args []string) error {
				if len(args) != 0 {
					return errors.New("usage: webhooks create --url <url> [--events <type,…>]")
				}
				evs, err := fl.GetStringSlice("events")
				if err != nil {
					return err
				}
				body := map[string]any{"url": fl.String("url"), "events": evs, "enabled": !fl.Bool("disabled")}
				for _, f := range []string{"tenant", "description"} {
					if v := fl.String(f); v != "" {
						body[f] = v
					}
				}
				res, err := cl.call(http.MethodPost, "/v1/webhooks", "", body)
				if err != nil {
					return err
				}
				return cl.print(res.Data, append(webhookCols[:5:5], "secret"))
			}},
		{name: "delete", usage: "<id>", short: "Deletes a webhook (its deliveries stay listed until purged)", run: deleteRun("/v1/webhooks/%s")},
		{name: "deliveries", usage: "[<webhook id>] [--status PENDING|DELIVERED|FAILED] [--kind webhook|email] [--tenant <id>]",
			short: "Lists deliveries, newest first: a webhook's, or all the caller may see (e-mail ones too)",
			flags: func(c *cobra.Command) {
				c.Flags().String("status", "", "PENDING, DELIVERED or FAILED")
				c.Flags().String("kind", "", "webhook or email (without a webhook id)")
				c.Flags().String("tenant", "", "only this tenant's (without a webhook id; superadmins)")
				c.Flags().Int("page", 1, "page number")
				c.Flags().Int("size", 30, "page size (max 100)")
			},
			run: func(cl *cliClient, fl caddycmd.Flags, args []string) error {
				path := "/v1/deliveries"
				flags := []string{"status", "kind", "tenant", "page", "size"}
				switch len(args) {
				case 0:
				case 1:
					if fl.Changed("kind") || fl.Changed("tenant") {
						return errors.New("--kind and --tenant list all deliveries: leave out the webhook id")
					}
					path = "/v1/webhooks/" + url.PathEscape(args[0]) + "/deliveries"
					flags = []string{"status", "page", "size"}
				default:
					return errors.New("usage: webhooks deliveries [<webhook id>] [flags]")
				}
				return listRun(path, flags, deliveryCols)(cl, fl, nil)
			}},
		{name: "replay", usage: "<delivery id>", short: "Sends a delivered or failed delivery again (same event and webhook-id; the receiver dedupes)",
			run: func(cl *cliClient, _ caddycmd.Flags, args []string) error {
				if len(args) != 1 {
					return errors.New("usage: webhooks replay <delivery id>")
				}
				res, err := cl.call(http.MethodPost, "/v1/deliveries/"+url.PathEscape(args[0])+"/replay", "", nil)
				if err != nil {
					return err
				}
				return cl.print(res.Data, deliveryCols[:6])
			}},
		{name: "rotate-secret", usage: "<id> [--grace <duration>]",
			short: "Gives a webhook a new signing secret, printed once; with --grace the old one signs too until then",
			flags: func(c *cobra.Command) {
				c.Flags().String("grace", "", "keep signing with the old secret as well this long, e.g. 24h (default: it ends now)")
			},
			run: func(cl *cliClient, fl caddycmd.Flags, args []string) error {
				if len(args) != 1 {
					return errors.New("usage: webhooks rotate-secret <id> [--grace <duration>]")
				}
				var body any
				if g := strings.TrimSpace(fl.String("grace")); g != "" {
					d, err := caddy.ParseDuration(g)
					if err != nil || d < 0 {
						return fmt.Errorf("--grace %q: a duration such as 24h or 7d", g)
					}
					body = map[string]any{"gracePeriod": d.Seconds()}
				}
				res, err := cl.call(http.MethodPost, "/v1/webhooks/"+url.PathEscape(args[0])+"/rotate-secret", "", body)
				if err != nil {
					return err
				}
				return cl.print(res.Data, []string{"id", "url", "previousSecretExpiresAt", "secret"})
			}},
	})
}
