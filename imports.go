// Package keygate is an authenticating API gateway built as Caddy modules.
// Importing it registers the modules, the Caddyfile directives and the CLI
// subcommands, so `xcaddy build --with github.com/keygate/keygate` gets them all.
package keygate

import (
	// The Caddyfile adapter's directives and global option (imports module).
	_ "github.com/keygate/keygate/caddyfile"
	// The CLI subcommands (cli registers them with Caddy; imports module).
	_ "github.com/keygate/keygate/cli"
	// The Caddy modules.
	_ "github.com/keygate/keygate/module"
)
