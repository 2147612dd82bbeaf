package module

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func init() {
	caddy.RegisterModule(ForwardAuth{})
}

// ForwardAuth is the `keygate_auth` handler: it answers a proxy's
// authorization subrequest (Caddy's forward_auth, nginx's auth_request,
// Traefik's ForwardAuth) instead of proxying. An allowed request gets 200
// with the identity headers (X-Auth-User-Id, …) and the RateLimit headers
// in the response, for the proxy to copy onto the request it forwards; a
// refused one gets the same problem+json 401/403/429/503 as the gateway.
//
// It is the gateway's decision, not a copy of it: the same credential
// detection, signature checks, replay guard, cache, revocation and request
// limit. It takes every option of the keygate handler.
//
// The request asked about is described by the forwarding headers
// X-Forwarded-Method / X-Original-Method, X-Forwarded-Uri /
// X-Original-URI, X-Forwarded-Host and X-Forwarded-Proto, which are
// believed only from the proxies that the server's trusted_proxies names;
// from anyone else they are ignored and the subrequest itself is checked.
// A subrequest carries no body, so a signature that covers a body digest
// is refused (401, logged): such clients need keygate as the proxy. A
// subrequest with a method-override header (X-HTTP-Method-Override, …) is
// refused with 400 unless keep_method_override is set: the proxy forwards
// the original request's headers, which keygate cannot remove.
type ForwardAuth struct {
	Handler
}

// CaddyModule returns the Caddy module information.
func (ForwardAuth) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.keygate_auth",
		New: func() caddy.Module { return new(ForwardAuth) },
	}
}

// Provision sets up the same route options as the keygate handler.
func (f *ForwardAuth) Provision(ctx caddy.Context) error {
	if len(f.IdentityHeaders) == 0 {
		// The proxy picks what to copy (copy_headers, auth_request_set):
		// offer every identity header.
		f.IdentityHeaders = []string{"all"}
	}
	return f.Handler.Provision(ctx)
}

// ServeHTTP answers the subrequest; it never calls next.
func (f *ForwardAuth) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if f.throttled(w, r) {
		return nil
	}
	start := time.Now()
	asked := forwardedRequest(r)
	if !f.KeepMethodOverride && hasMethodOverride(asked.Header) {
		// The proxy forwards the original request with its headers, which
		// keygate cannot remove: refuse what the upstream could run as
		// another method than the one checked here.
		requestsMethodOverride.Inc()
		if ce := f.logger.Check(zapcore.InfoLevel, "request refused"); ce != nil {
			ce.Write(zap.Int("status", http.StatusBadRequest), zap.String("reason", "method-override header on a forward-auth route (keep_method_override)"))
		}
		writeBadRequest(w, methodOverrideProblem)
		return nil
	}
	var body bodySlot
	defer body.release()
	tenant, repl := f.tenantOf(asked)
	id, out := f.admit(w, asked, tenant, start, verifyVia{target: asked.RequestURI, noBody: true}, &body)
	authDuration.Observe(time.Since(start).Seconds())
	if out != nil {
		return f.refuse(w, asked, id, out)
	}
	f.setIdentity(w.Header(), repl, tenant, id)
	if c := okByScheme[id.scheme]; c != nil {
		c.Inc()
	}
	w.Header()["Cache-Control"] = []string{"no-store"}
	w.WriteHeader(http.StatusOK)
	return nil
}

// maxForwardedURI bounds the X-Forwarded-Uri keygate accepts.
const maxForwardedURI = 16 << 10

// forwardedRequest returns the request a proxy asks about: a copy of r
// without a body whose method, target, host and scheme come from the
// forwarding headers when r comes from a trusted proxy. The headers (and
// so the credential) are the subrequest's, which the proxies copy from the
// original request.
func forwardedRequest(r *http.Request) *http.Request {
	v := new(http.Request)
	*v = *r
	v.Body, v.ContentLength, v.TransferEncoding = http.NoBody, 0, nil
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); !trusted {
		return v
	}
	h := r.Header
	if m := firstHeader(h, "X-Forwarded-Method", "X-Original-Method"); m != "" && isToken(m) {
		v.Method = m
	}
	if u := firstHeader(h, "X-Forwarded-Uri", "X-Original-Uri"); u != "" && len(u) <= maxForwardedURI && u[0] == '/' {
		if pu, err := url.ParseRequestURI(u); err == nil {
			v.URL, v.RequestURI = pu, u
		}
	}
	if host := h.Get("X-Forwarded-Host"); host != "" {
		v.Host = host
	}
	switch strings.ToLower(h.Get("X-Forwarded-Proto")) {
	case "https":
		if v.TLS == nil {
			v.TLS = &tls.ConnectionState{}
		}
	case "http":
		v.TLS = nil
	}
	return v
}

// firstHeader returns the first of names that r carries.
func firstHeader(h http.Header, names ...string) string {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// isToken reports whether s is an RFC 9110 token (a valid method).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}

var (
	_ caddy.Provisioner           = (*ForwardAuth)(nil)
	_ caddyhttp.MiddlewareHandler = (*ForwardAuth)(nil)
)
