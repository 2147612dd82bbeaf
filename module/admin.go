package module

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/console"
)

func init() {
	caddy.RegisterModule(AdminHandler{})
	caddy.RegisterModule(AdminAPI{})
}

// AdminHandler is the `keygate_admin` handler: keygate's management REST
// API (tenants, users, permissions, keys, secrets), authenticated with
// keygate's own access keys. Mount it on an internal listener, e.g.
// `127.0.0.1:8081 { keygate_admin }`; under a path prefix, strip it with
// `handle_path /admin/* { keygate_admin }`. It answers every request itself.
type AdminHandler struct {
	api *admin.Handler
}

// CaddyModule returns the Caddy module information.
func (AdminHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.keygate_admin",
		New: func() caddy.Module { return new(AdminHandler) },
	}
}

// Provision takes the keygate app's store.
func (h *AdminHandler) Provision(ctx caddy.Context) error {
	app, err := keygateApp(ctx)
	if err != nil {
		return err
	}
	h.api = app.adminAPI()
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
// Requests under /console/ get the web console (package console).
func (h *AdminHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if console.Handles(r.URL.Path) {
		consoleHandler.ServeHTTP(w, r)
		return nil
	}
	h.api.ServeHTTP(w, r)
	return nil
}

// consoleHandler serves the embedded web console.
var consoleHandler = console.Handler()

// adminAPI returns the app's admin API handler (built in setup).
func (a *App) adminAPI() *admin.Handler { return a.admin }

// AdminAPI is the admin endpoint `admin.api.keygate`: the same REST API
// under /keygate/ on Caddy's local-only admin address, where callers are
// trusted as superadmins (Caddy's admin endpoint is the operator's). The
// keygate CLI uses it while a server runs, since the server holds the file
// store's lock.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.keygate",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// AdminPathPrefix is where AdminAPI serves the REST API on Caddy's admin endpoint.
const AdminPathPrefix = "/keygate"

// Routes implements caddy.AdminRouter.
func (AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{
		Pattern: AdminPathPrefix + "/",
		Handler: caddy.AdminHandlerFunc(serveAdminEndpoint),
	}}
}

func serveAdminEndpoint(w http.ResponseWriter, r *http.Request) error {
	appVal, err := caddy.ActiveContext().AppIfConfigured("keygate")
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable,
			Err: fmt.Errorf("no keygate app is running in the current configuration")}
	}
	app := appVal.(*App)
	r2 := r.Clone(admin.WithTrustedCaller(r.Context(), "cli"))
	r2.URL.Path = strings.TrimPrefix(r.URL.Path, AdminPathPrefix)
	r2.URL.RawPath = ""
	app.adminAPI().ServeHTTP(w, r2)
	return nil
}

var (
	_ caddy.Provisioner           = (*AdminHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*AdminHandler)(nil)
	_ caddy.AdminRouter           = (*AdminAPI)(nil)
)
