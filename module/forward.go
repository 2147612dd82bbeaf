package module

import (
	"io"
	"net/http"
	"strings"
)

// Before a request goes upstream, nothing the client controls may remove
// or replace what keygate asserts about it, and no credential may ride
// along. Three HTTP mechanisms could otherwise undo the header work:
//
//   - Connection: a proxy drops every header the Connection header names
//     (RFC 9110 §7.6.1), so "Connection: X-Auth-User-Id" would make Caddy's
//     reverse_proxy delete the identity keygate set;
//   - trailers: fields sent after a chunked body are forwarded as trailers,
//     where an upstream may read X-Auth-User-Id or Authorization;
//   - spellings: CGI, PHP and some proxies read X_Auth_User_Id as
//     X-Auth-User-Id.
//
// The protected names are the identity headers keygate sets, the headers
// that can carry a credential on the route and, unless the route keeps
// them, the method-override headers, in every spelling.

// methodOverrideHeaders are the headers that frameworks (Rails, Express's
// method-override, Symfony, Spring's HiddenHttpMethodFilter, …) read a
// request's method from instead of the request line. A signature binds
// the method; an upstream that honours one of these would run a signed
// GET as a DELETE, so keygate removes them (keep_method_override keeps
// them).
var methodOverrideHeaders = [...]string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

// protectedNames lists the canonical names of the identity headers, the
// route's credential headers and (unless kept) the method-override headers.
func (h *Handler) protectedNames() []string {
	ids := h.hdr.all()
	names := append(ids[:], h.detector.CredentialHeaders()...)
	if !h.KeepMethodOverride {
		names = append(names, methodOverrideHeaders[:]...)
	}
	return names
}

// hasMethodOverride reports whether hd carries a method-override header,
// in any spelling.
func hasMethodOverride(hd http.Header) bool {
	for k := range hd {
		for _, n := range methodOverrideHeaders {
			if sameHeaderName(k, n) {
				return true
			}
		}
	}
	return false
}

// isProtected reports whether a header name (any case, '_' for '-')
// names a protected header. It does not allocate.
func (h *Handler) isProtected(name string) bool {
	for _, p := range h.protected {
		if sameHeaderName(name, p) {
			return true
		}
	}
	return false
}

// sameHeaderName compares header names case-insensitively, treating '_'
// as '-'.
func sameHeaderName(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == '_' {
			x = '-'
		}
		if y == '_' {
			y = '-'
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// prepareForward makes an authenticated request safe to forward: it
// removes every credential location of the route (unless
// keep_credentials), every Connection token that names a protected header,
// and protected names from the request's trailers.
func (h *Handler) prepareForward(r *http.Request) {
	if !h.KeepCredentials {
		h.detector.Strip(r)
	}
	if !h.KeepMethodOverride {
		// Other spellings went with stripIdentity (they are protected).
		for _, n := range methodOverrideHeaders {
			delete(r.Header, n)
		}
	}
	if vs := r.Header["Connection"]; len(vs) > 0 {
		r.Header["Connection"] = h.scrubConnection(vs)
		if len(r.Header["Connection"]) == 0 {
			delete(r.Header, "Connection")
		}
	}
	if r.Trailer != nil {
		// The trailers are declared: their values arrive with the end of
		// the body, so scrub what is there now (a digest check may have
		// read the body already) and again when the body ends.
		h.scrubTrailer(r.Trailer)
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &trailerGuard{ReadCloser: r.Body, req: r, h: h}
		}
	}
}

// scrubConnection returns the Connection values without the tokens that
// name a protected header. The usual "keep-alive" or "close" passes
// without an allocation.
func (h *Handler) scrubConnection(vs []string) []string {
	dirty := false
	for _, v := range vs {
		for tok := range strings.SplitSeq(v, ",") {
			if h.isProtected(strings.TrimSpace(tok)) {
				dirty = true
			}
		}
	}
	if !dirty {
		return vs
	}
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		var kept []string
		for tok := range strings.SplitSeq(v, ",") {
			if t := strings.TrimSpace(tok); t != "" && !h.isProtected(t) {
				kept = append(kept, t)
			}
		}
		if len(kept) > 0 {
			out = append(out, strings.Join(kept, ", "))
		}
	}
	return out
}

// scrubTrailer deletes protected names from trailers.
func (h *Handler) scrubTrailer(tr http.Header) {
	for name := range tr {
		if h.isProtected(name) {
			delete(tr, name)
		}
	}
}

// trailerGuard scrubs the request's trailers when the body ends: net/http
// fills them in just before the last Read returns io.EOF, and Caddy's
// reverse_proxy copies them right after that Read.
type trailerGuard struct {
	io.ReadCloser
	req *http.Request
	h   *Handler
}

func (g *trailerGuard) Read(p []byte) (int, error) {
	n, err := g.ReadCloser.Read(p)
	if err == io.EOF {
		g.h.scrubTrailer(g.req.Trailer)
	}
	return n, err
}
