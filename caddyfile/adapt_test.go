package caddyfile_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	// The standard modules, so adapted configs can use reverse_proxy, respond, …
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/keygate/keygate/caddyfile"
)

var update = flag.Bool("update", false, "rewrite the expected JSON of the golden files")

// TestAdapt runs every testdata/*.caddyfiletest: a Caddyfile, a line of
// "----------", then either the expected JSON or, for bad input, a
// substring of the expected adapt error.
func TestAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, expected, ok := strings.Cut(string(data), "\n----------\n")
			if !ok {
				t.Fatalf("%s: no ---------- separator", file)
			}
			got, adaptErr := adapt(input)
			expected = strings.TrimSpace(expected)
			if !strings.HasPrefix(expected, "{") {
				if adaptErr == nil {
					t.Fatalf("expected an error containing %q, got config:\n%s", expected, got)
				}
				if !strings.Contains(adaptErr.Error(), expected) {
					t.Fatalf("error %q does not contain %q", adaptErr, expected)
				}
				return
			}
			if adaptErr != nil {
				t.Fatalf("adapt: %v", adaptErr)
			}
			if *update {
				if err := os.WriteFile(file, []byte(input+"\n----------\n"+got+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != expected {
				t.Fatalf("adapted config differs.\n--- got\n%s\n--- want\n%s", got, expected)
			}
		})
	}
}

// TestAdaptExample keeps Caddyfile.example adaptable.
func TestAdaptExample(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := adapt(string(data))
	if err != nil {
		t.Fatalf("Caddyfile.example: %v", err)
	}
	for _, want := range []string{`"handler":"keygate"`, `"tenant":"acme"`, `"handler":"keygate_admin"`, `"keygate":{`} {
		if !strings.Contains(strings.ReplaceAll(got, " ", ""), strings.ReplaceAll(want, " ", "")) {
			t.Errorf("adapted example lacks %s:\n%s", want, got)
		}
	}
}

func adapt(caddyfile string) (string, error) {
	adapter := caddyconfig.GetAdapter("caddyfile")
	out, warnings, err := adapter.Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return "", err
	}
	for _, w := range warnings {
		// Formatting advice is not a problem of the config itself.
		if w.Message != "" && !strings.Contains(w.Message, "not formatted") {
			return "", &warningError{w.String()}
		}
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "\t"); err != nil {
		return "", err
	}
	return buf.String(), nil
}

type warningError struct{ msg string }

func (w *warningError) Error() string { return "warning: " + w.msg }
