package module

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

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
//
// Failed authentications (401: a missing, unknown or wrong key, on any
// route including POST /v1/verify) use the client's auth_failures budget,
// shared with the gateway: a client that has used it up gets 429 with
// Retry-After before its key is looked at.
type AdminHandler struct {
	api    *admin.Handler
	app    *App
	logger *zap.Logger
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
	h.api, h.app, h.logger = app.adminAPI(), app, ctx.Logger()
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
// Requests under /console/ get the web console (package console).
func (h *AdminHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if console.Handles(r.URL.Path) {
		consoleHandler.ServeHTTP(w, r)
		return nil
	}
	th := h.app.throttles
	if th.blocked(w, r, h.logger, "admin", throttledAdmin) {
		return nil
	}
	sw := &statusWriter{ResponseWriter: w}
	h.api.ServeHTTP(sw, r)
	if sw.status == http.StatusUnauthorized {
		th.fail(r)
	}
	return nil
}

// statusWriter records the status of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher (the admin API flushes its answer before
// it writes the activity log).
func (w *statusWriter) Flush() {
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

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
	_ http.Flusher                = (*statusWriter)(nil)
	_ caddy.Provisioner           = (*AdminHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*AdminHandler)(nil)
	_ caddy.AdminRouter           = (*AdminAPI)(nil)
)
