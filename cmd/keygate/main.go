// Command keygate is Caddy with the standard modules and the keygate modules,
// CLI subcommands and Caddyfile directives built in. Its command line is
// keygate's own: the help names keygate, lists keygate's commands first and
// points to the README; Caddy's server commands (run, reload, validate, …)
// follow, without the ones that rebuild a Caddy binary (add-package,
// remove-package, upgrade).
package main

import (
	"os"

	// The standard Caddy modules.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// keygate's modules, directives and subcommands.
	_ "github.com/keygate/keygate"
)

func main() {
	os.Exit(execute(os.Args[1:]))
}
