package caddyfile_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestExampleCaddyfileFormatted keeps Caddyfile.example and the packaged
// Caddyfile `keygate fmt` clean: Caddy warns "Caddyfile input is not
// formatted" on every start otherwise.
func TestExampleCaddyfileFormatted(t *testing.T) {
	for _, name := range []string{"Caddyfile.example", "packaging/Caddyfile"} {
		path := filepath.Join("..", filepath.FromSlash(name))
		in, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if out := caddyfile.Format(in); !bytes.Equal(out, in) {
			t.Errorf("%s is not formatted; run: go run ./cmd/keygate fmt --overwrite %s", name, name)
		}
	}
}
