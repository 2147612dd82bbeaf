package auth

import (
	"fmt"
	"net/http"
	"slices"
)

// What a signed request must bind. A signature that does not cover the
// method and the request-target can be replayed as another call (a GET
// copied from an access log becomes a DELETE elsewhere), and one that does
// not cover the body lets anyone change what is sent. Every signature
// must therefore cover:
//
//   - draft-cavage: (request-target), and digest when the request has a body;
//   - RFC 9421: @method, and @target-uri (or @request-target, or @path plus
//     @query when the request has a query), and content-digest when the
//     request has a body;
//
// plus whatever the route requires (VerifyOptions.Require). The digests
// themselves are checked against the body whenever they are covered.
// SigV4 always binds method, path, query and host through its canonical
// request; wallee MAC and JWT bind method and target through their signed
// fields.

// checkCavageCoverage enforces the rules above for draft-cavage.
func checkCavageCoverage(covered []string, r *http.Request, e *env) error {
	if !slices.Contains(covered, "(request-target)") {
		return fmt.Errorf("http signature: (request-target) not covered: %w", ErrCoverage)
	}
	if hasBody(r) && !slices.Contains(covered, "digest") {
		return fmt.Errorf("http signature: request has a body, digest not covered: %w", ErrCoverage)
	}
	for _, name := range e.require {
		if name == "@authority" {
			name = "host"
		}
		if !slices.Contains(covered, name) {
			return fmt.Errorf("http signature: route requires %s to be covered: %w", name, ErrCoverage)
		}
	}
	return nil
}

// check9421Coverage enforces the rules above for RFC 9421.
func check9421Coverage(s *rfc9421Sig, r *http.Request, e *env) error {
	covers := func(name string) bool {
		for _, c := range s.components {
			if c.item.s == name {
				return true
			}
		}
		return false
	}
	if !covers("@method") {
		return fmt.Errorf("http signature: @method not covered: %w", ErrCoverage)
	}
	_, _, hasQuery := splitTarget(e.target)
	if !covers("@target-uri") && !covers("@request-target") &&
		!(covers("@path") && (!hasQuery || covers("@query"))) {
		return fmt.Errorf("http signature: target not covered (@target-uri, or @path and @query): %w", ErrCoverage)
	}
	if hasBody(r) && !covers("content-digest") {
		return fmt.Errorf("http signature: request has a body, content-digest not covered: %w", ErrCoverage)
	}
	for _, name := range e.require {
		ok := covers(name)
		if name == "@authority" || name == "host" {
			ok = covers("@authority") || covers("host") || covers("@target-uri")
		}
		if !ok {
			return fmt.Errorf("http signature: route requires %s to be covered: %w", name, ErrCoverage)
		}
	}
	return nil
}
