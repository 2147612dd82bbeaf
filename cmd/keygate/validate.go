package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/keygate/keygate/module"
)

// validateCommand replaces Caddy's validate: it loads and provisions the
// config without starting it, like Caddy's, but provisions the keygate app on
// a copy of the file store (and its master key file) in a temporary
// directory that is removed afterwards, so validating creates no store file
// and no master key where the server keeps them, and does not wait for the
// lock of a running server.
func validateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "validate --config <path> [--adapter <name>] [--envfile <path>]",
		Short: "Tests whether a configuration file is valid (creates no store and no master key)",
		Long: `Loads and provisions the config without running it, which reports the errors of
the loading and provisioning stages (an unknown option, a wrong value, an unknown
scheme, with the file and line for a Caddyfile).

The keygate app is provisioned on a copy of the store file and its master key
file (when they exist) in a temporary directory, removed afterwards: validating
checks master_key against the store but never creates the store file or a
master key. With Redis, validate opens the store as the server does but does not
start the app (which is where the master key check and the signing keys are).`,
		Example: `  keygate validate --config Caddyfile.example --adapter caddyfile
  keygate validate --config /etc/keygate/Caddyfile --envfile /etc/keygate/env`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			config, _ := cmd.Flags().GetString("config")
			adapter, _ := cmd.Flags().GetString("adapter")
			envfiles, _ := cmd.Flags().GetStringSlice("envfile")
			if err := validate(config, adapter, envfiles); err != nil {
				return err
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "Valid configuration")
			return err
		},
	}
	cmd.Flags().StringP("config", "c", "", "config file to validate (default: ./Caddyfile)")
	cmd.Flags().StringP("adapter", "a", "", "name of the config adapter")
	cmd.Flags().StringSlice("envfile", nil, "environment file(s) of KEY=VALUE lines to load first")
	return cmd
}

func validate(config, adapter string, envfiles []string) error {
	for _, f := range envfiles {
		if err := loadEnvFile(f); err != nil {
			return err
		}
	}
	if config == "" {
		if _, err := os.Stat("Caddyfile"); err != nil {
			return errors.New("no config: give --config (there is no Caddyfile in the current directory)")
		}
		config, adapter = "Caddyfile", "caddyfile"
	}
	raw, _, _, err := caddycmd.LoadConfig(config, adapter)
	if err != nil {
		return err
	}
	scratch, err := os.MkdirTemp("", "keygate-validate-")
	if err != nil {
		return fmt.Errorf("creating a scratch directory: %w", err)
	}
	defer os.RemoveAll(scratch)
	raw, err = scratchStore(raw, scratch)
	if err != nil {
		return err
	}
	var cfg *caddy.Config
	if err := caddy.StrictUnmarshalJSON(caddy.RemoveMetaFields(raw), &cfg); err != nil {
		return fmt.Errorf("decoding config: %w", err)
	}
	return caddy.Validate(cfg)
}

// scratchStore points the keygate app's file store (explicit or default) at
// a copy in dir: of the store file and its master key file when they exist
// (so a wrong master_key is still reported), else at a new file there. A
// config without a keygate app gets one with only that store: a keygate
// handler would load the app with its defaults otherwise.
func scratchStore(raw []byte, dir string) ([]byte, error) {
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("decoding config: %w", err)
	}
	if cfg == nil {
		cfg = map[string]any{}
	}
	apps, _ := cfg["apps"].(map[string]any)
	if apps == nil {
		apps = map[string]any{}
		cfg["apps"] = apps
	}
	app, _ := apps["keygate"].(map[string]any)
	if app == nil {
		app = map[string]any{}
		apps["keygate"] = app
	}
	store, _ := app["store"].(map[string]any)
	if store == nil {
		store = map[string]any{}
		app["store"] = store
	}
	if backend, _ := store["backend"].(string); backend == "" || backend == "file" {
		real := module.DefaultStorePath()
		if p, _ := store["path"].(string); p != "" {
			real = caddy.NewReplacer().ReplaceAll(p, "")
		}
		copyPath := filepath.Join(dir, "keygate.db")
		for _, f := range [][2]string{
			{real, copyPath},
			{filepath.Join(filepath.Dir(real), "master.key"), filepath.Join(dir, "master.key")},
		} {
			if err := copyFile(f[0], f[1]); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("copying %s to validate against it: %w", f[0], err)
			}
		}
		store["path"] = copyPath
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encoding config: %w", err)
	}
	return out, nil
}

// copyFile copies src to dst (mode 0600).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// loadEnvFile sets the KEY=VALUE lines of file in the environment (blank
// lines and # comments skipped; an optional "export " prefix and quotes
// around the value removed). Variables already set are kept.
func loadEnvFile(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("reading env file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" {
			return fmt.Errorf("%s:%d: want KEY=VALUE", file, n)
		}
		val = strings.TrimSpace(val)
		if len(val) >= 2 && (val[0] == '"' || val[0] == '\'') && val[len(val)-1] == val[0] {
			val = val[1 : len(val)-1]
		}
		if _, set := os.LookupEnv(key); !set {
			if err := os.Setenv(key, val); err != nil {
				return fmt.Errorf("%s:%d: %w", file, n, err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading env file: %w", err)
	}
	return nil
}
