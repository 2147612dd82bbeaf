// Command keygate is Caddy with the standard modules and the keygate modules,
// CLI subcommands and Caddyfile directives built in.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// The standard Caddy modules.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// keygate's modules, directives and subcommands.
	_ "github.com/keygate/keygate"
)

func main() {
	caddycmd.Main()
}
