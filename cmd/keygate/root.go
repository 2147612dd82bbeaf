package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/keygate/keygate/cli"
	"github.com/keygate/keygate/internal/version"
)

// readmeURL is where the help sends readers for everything else.
const readmeURL = "https://github.com/keygate/keygate#readme"

const rootLong = `keygate is an authenticating API gateway: it checks access keys, access tokens and
signed requests against its key store, limits each user's requests, and forwards
authorized calls upstream with identity headers. It is Caddy v2 with keygate's
modules built in, so it also has Caddy's server commands.

Start with the example config, then create the first tenant, admin user and key:

  keygate run --config Caddyfile.example --adapter caddyfile
  keygate bootstrap --tenant acme --user ops --config Caddyfile.example

The management commands (bootstrap, tenants, users, keys, …) talk to the server
whose admin address the --config file names (default localhost:2019); with no
server answering there, they open the store the config names themselves.`

const rootExample = `  keygate run --config Caddyfile.example --adapter caddyfile
  keygate bootstrap --tenant acme --user ops --config Caddyfile.example
  keygate users create --tenant acme --name ci-bot --key-name ci --config Caddyfile.example
  keygate keys list --user <user id> --config Caddyfile.example -v
  keygate validate --config Caddyfile.example --adapter caddyfile
  keygate version`

// The help template: cobra's default, with the README as the last word.
const helpFooter = `
Documentation: ` + readmeURL + ` (README.md in the source tree).
`

// Caddy commands keygate leaves out: they download and rebuild a stock Caddy
// binary, which would drop keygate's modules.
var omitted = map[string]bool{"add-package": true, "remove-package": true, "upgrade": true}

// Caddy commands keygate replaces with its own.
var replaced = map[string]bool{"version": true, "build-info": true, "validate": true}

// caddyCommandName matches "caddy <command>" in Caddy's help texts, so they
// can name this binary.
var caddyCommandName = regexp.MustCompile(`\bcaddy ([a-z][a-z-]*)`)

// newRootCommand builds keygate's command tree from the commands registered
// with caddycmd: keygate's first, then Caddy's.
func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "keygate",
		Short:         "An authenticating API gateway built on Caddy",
		Long:          rootLong,
		Example:       rootExample,
		Version:       version.Get().String(),
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetHelpTemplate(root.HelpTemplate() + helpFooter)
	root.AddGroup(
		&cobra.Group{ID: "keygate", Title: "keygate commands:"},
		&cobra.Group{ID: "server", Title: "Server commands (from Caddy):"},
	)
	root.SetHelpCommandGroupID("server")
	root.SetCompletionCommandGroupID("server")

	own := map[string]bool{}
	for _, name := range cli.CommandNames() {
		own[name] = true
	}
	all := caddycmd.Commands()
	names := make([]string, 0, len(all))
	for name := range all {
		names = append(names, name)
	}
	sort.Strings(names)
	// keygate's commands in the order module registers them (which is the
	// order a newcomer needs them), then Caddy's, alphabetically.
	cobra.EnableCommandSorting = false
	for _, name := range cli.CommandNames() {
		if c, ok := all[name]; ok {
			cmd := toCobra(c)
			cmd.GroupID = "keygate"
			root.AddCommand(cmd)
		}
	}
	root.AddCommand(versionCommand())
	server := []*cobra.Command{buildInfoCommand(), manpageCommand(root), validateCommand()}
	for _, name := range names {
		if own[name] || omitted[name] || replaced[name] {
			continue
		}
		cmd := toCobra(all[name])
		rename(cmd)
		server = append(server, cmd)
	}
	sort.Slice(server, func(i, j int) bool { return server[i].Name() < server[j].Name() })
	for _, cmd := range server {
		cmd.GroupID = "server"
		root.AddCommand(cmd)
	}
	return root
}

// toCobra turns a caddycmd.Command into a cobra command, as caddycmd does.
func toCobra(c caddycmd.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   c.Name + " " + c.Usage,
		Short: c.Short,
		Long:  c.Long,
	}
	if c.CobraFunc != nil {
		c.CobraFunc(cmd)
	} else {
		cmd.RunE = caddycmd.WrapCommandFuncForCobra(c.Func)
		cmd.Flags().AddGoFlagSet(c.Flags)
	}
	return cmd
}

// rename makes the help texts of a Caddy command (and its sub-commands) say
// "keygate <command>" where they say "caddy <command>".
func rename(cmd *cobra.Command) {
	fix := func(s string) string {
		return caddyCommandName.ReplaceAllString(s, "keygate $1")
	}
	cmd.Short, cmd.Long, cmd.Example = fix(cmd.Short), fix(cmd.Long), fix(cmd.Example)
	for _, sub := range cmd.Commands() {
		rename(sub)
	}
}

func versionCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "version [--json]",
		Short:   "Prints keygate's version, commit, and the Caddy and Go versions it was built with",
		GroupID: "keygate",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in := version.Get()
			if asJSON, _ := cmd.Flags().GetBool("json"); asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(in)
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), in)
			return err
		},
	}
	cmd.Flags().Bool("json", false, "print the fields as JSON")
	return cmd
}

func buildInfoCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "build-info",
		Short:   "Prints keygate's version and the Go build information (modules and their versions)",
		GroupID: "server",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bi, ok := debug.ReadBuildInfo()
			if !ok {
				return errors.New("this binary carries no build information")
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s\n%s", version.Get(), bi)
			return err
		},
	}
}

func manpageCommand(root *cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "manpage --directory <path>",
		Short:   "Generates the manual pages for keygate's commands",
		GroupID: "server",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, _ := cmd.Flags().GetString("directory")
			if strings.TrimSpace(dir) == "" {
				return errors.New("--directory is required")
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("creating %s: %w", dir, err)
			}
			if err := doc.GenManTree(root, &doc.GenManHeader{Title: "keygate", Section: "8"}, dir); err != nil {
				return fmt.Errorf("writing manual pages: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringP("directory", "o", "", "directory to write the manual pages into")
	return cmd
}

// execute runs the command line and returns the process exit code: the one
// a Caddy command asked for, 1 for any other error.
func execute(args []string) int {
	root := newRootCommand()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return caddy.ExitCodeSuccess
	}
	return exitCode(err)
}

// exitCode reads the status a Caddy command returned: caddycmd reports it in
// an unexported error type whose ExitCode field is exported.
func exitCode(err error) int {
	for e := err; e != nil; e = errors.Unwrap(e) {
		v := reflect.ValueOf(e)
		if v.Kind() == reflect.Pointer && !v.IsNil() && v.Elem().Kind() == reflect.Struct {
			if f := v.Elem().FieldByName("ExitCode"); f.IsValid() && f.CanInt() {
				return int(f.Int())
			}
		}
	}
	return 1
}
