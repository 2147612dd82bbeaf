package module

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"go.uber.org/zap"

	"github.com/keygate/keygate/keys"
)

// LocalAdmin is the admin API over the key store a config names, opened by
// this process: the CLI's way when no keygate server answers (the server
// would hold the store file's lock). Requests to it are trusted callers'
// (admin.WithTrustedCaller); Close releases the store.
type LocalAdmin struct {
	app *App
	h   http.Handler
}

// ServeHTTP serves the admin API.
func (l *LocalAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) { l.h.ServeHTTP(w, r) }

// Close releases the store and everything the app started.
func (l *LocalAdmin) Close() error { return l.app.Cleanup() }

// OpenLocalAdmin opens the store named by configFile (any adapter; none:
// the default file store) and returns the admin API over it. With
// readOnly, a file store that does not exist yet is an error rather than
// created, and so is a missing master key file. noServer names the admin
// address that did not answer, for the error; opening, when set, is told
// what is opened before it is.
func OpenLocalAdmin(configFile, adapter string, readOnly bool, noServer string, opening func(where string)) (*LocalAdmin, error) {
	app, err := loadAppConfig(configFile, adapter)
	if err != nil {
		return nil, err
	}
	app.logger = zap.NewNop()
	where := "the Redis store"
	if app.Store == nil || app.Store.Backend == "" || app.Store.Backend == "file" {
		path := DefaultStorePath()
		if app.Store != nil && app.Store.Path != "" {
			path = caddy.NewReplacer().ReplaceAll(app.Store.Path, "")
		}
		where = "the store file " + path
		if readOnly {
			if _, err := os.Stat(path); err != nil {
				return nil, fmt.Errorf("no keygate server answered on %s and there is no store at %s yet: nothing to show (start the server, or create data with `keygate bootstrap`)", noServer, path)
			}
			if app.MasterKey == "" {
				mk := filepath.Join(filepath.Dir(path), "master.key")
				if _, err := os.Stat(mk); err != nil {
					return nil, fmt.Errorf("the store %s has no master key file %s; set master_key in the config (a read does not create one)", path, mk)
				}
			}
		}
	}
	if opening != nil {
		opening(where)
	}
	if err := app.setup(); err != nil {
		_ = app.Cleanup()
		return nil, fmt.Errorf("opening the key store (no running keygate answered on its admin address): %w", err)
	}
	return &LocalAdmin{app: app, h: app.adminAPI()}, nil
}

// loadAppConfig reads the keygate app's config from a config file (any
// adapter); without a file it is the default (the file store).
func loadAppConfig(configFile, adapter string) (*App, error) {
	app := new(App)
	if configFile == "" {
		return app, nil
	}
	cfg, _, _, err := caddycmd.LoadConfig(configFile, adapter)
	if err != nil {
		return nil, fmt.Errorf("loading config: %w", err)
	}
	var full struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(cfg, &full); err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if raw, ok := full.Apps["keygate"]; ok {
		if err := json.Unmarshal(raw, app); err != nil {
			return nil, fmt.Errorf("reading keygate app config: %w", err)
		}
	}
	return app, nil
}

// RotateMasterKey re-seals every stored secret and token-signing key of
// the store configFile names under newKey (base64 of 32 bytes), in one
// transaction; the server must be stopped. It returns how many values it
// re-sealed.
func RotateMasterKey(configFile, adapter, newKey string) (int, error) {
	if newKey == "" {
		return 0, errors.New("--new-key is required (generate one with: head -c32 /dev/urandom | base64)")
	}
	raw, err := keys.ParseMasterKey(newKey)
	if err != nil {
		return 0, err
	}
	app, err := loadAppConfig(configFile, adapter)
	if err != nil {
		return 0, err
	}
	app.logger = zap.NewNop()
	if err := app.setup(); err != nil {
		return 0, fmt.Errorf("opening the key store (stop the server first): %w", err)
	}
	defer app.Cleanup()
	if app.sealer == nil {
		return 0, errors.New("no master key is configured: nothing is sealed yet")
	}
	next, err := keys.NewSealer(raw)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n, err := app.shared.store.ResealSecrets(ctx, func(kind, id string, sealed []byte) ([]byte, error) {
		aad := kind + ":" + id // SecretAAD, SigningKeyAAD and the master key check's AAD
		pt, err := app.sealer.Open(sealed, aad)
		if err != nil {
			return nil, fmt.Errorf("%s %s does not open with the configured master key: %w", kind, id, err)
		}
		return next.Seal(pt, aad), nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
