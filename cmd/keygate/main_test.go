package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/version"
)

func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		t.Fatalf("keygate %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func TestHelpIsKeygates(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {}} {
		out := runCLI(t, args...)
		own, server := strings.Index(out, "keygate commands:"), strings.Index(out, "Server commands")
		if own < 0 || server < own {
			t.Errorf("keygate %v: keygate's commands must come first:\n%s", args, out)
		}
		for _, want := range []string{"Usage:\n  keygate", "keygate bootstrap --tenant", readmeURL, "  bootstrap ", "  validate "} {
			if !strings.Contains(out, want) {
				t.Errorf("keygate %v: missing %q", args, want)
			}
		}
		for _, bad := range []string{"add-package", "remove-package", "upgrade", "caddy run", "caddyserver.com/docs/command-line"} {
			if strings.Contains(out, bad) {
				t.Errorf("keygate %v: must not mention %q", args, bad)
			}
		}
	}
	for _, args := range [][]string{{"users", "create", "--help"}, {"keys", "--help"}, {"run", "--help"}, {"bootstrap", "--help"}, {"validate", "--help"}} {
		out := runCLI(t, args...)
		if !strings.Contains(out, "Usage:\n  keygate "+args[0]) || strings.Contains(out, "caddy "+args[0]) || !strings.Contains(out, readmeURL) {
			t.Errorf("keygate %s: usage must name keygate and point to the README:\n%s", strings.Join(args, " "), out)
		}
	}
	if out := runCLI(t, "keys", "--help"); !strings.Contains(out, "Examples:\n  keygate keys create") {
		t.Errorf("keygate keys --help has no examples:\n%s", out)
	}
}

func TestVersion(t *testing.T) {
	old := version.Version
	version.Version, version.Commit = "v9.8.7", "0123456789abcdef0123"
	t.Cleanup(func() { version.Version, version.Commit = old, "" })
	out := runCLI(t, "version")
	for _, want := range []string{"keygate v9.8.7", "commit 0123456789ab", "Caddy v2.", "go1."} {
		if !strings.Contains(out, want) {
			t.Errorf("version: missing %q in %q", want, out)
		}
	}
	if out := runCLI(t, "version", "--json"); !strings.Contains(out, `"version": "v9.8.7"`) {
		t.Errorf("version --json: %s", out)
	}
}

// TestValidateCreatesNothing: validating the example config leaves the data
// directory as it was (no store file, no master key).
func TestValidateCreatesNothing(t *testing.T) {
	data := t.TempDir()
	t.Setenv("XDG_DATA_HOME", data)
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	if err := validate(filepath.Join("..", "..", "Caddyfile.example"), "caddyfile", nil); err != nil {
		t.Fatalf("validate Caddyfile.example: %v", err)
	}
	var found []string
	_ = filepath.WalkDir(data, func(p string, d os.DirEntry, _ error) error {
		if !d.IsDir() {
			found = append(found, p)
		}
		return nil
	})
	if len(found) > 0 {
		t.Fatalf("validate created files: %v", found)
	}
}
