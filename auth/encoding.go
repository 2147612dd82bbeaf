package auth

import (
	"strings"
)

const upperHex = "0123456789ABCDEF"

// uriComponentSafe marks the bytes encodeURIComponent leaves alone:
// A-Z a-z 0-9 - _ . ! ~ * ' ( ).
var uriComponentSafe = func() (t [256]bool) {
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-_.!~*'()" {
		t[c] = true
	}
	return t
}()

// awsUnreserved marks the RFC 3986 unreserved bytes SigV4 leaves alone.
var awsUnreserved = func() (t [256]bool) {
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-_.~" {
		t[c] = true
	}
	return t
}()

// appendEscaped appends s with every byte not in safe written as %XX.
func appendEscaped[T string | []byte](dst []byte, s T, safe *[256]bool) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if safe[c] {
			dst = append(dst, c)
		} else {
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	return dst
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// appendUnescaped appends the percent-decoded s; plusSpace reads '+' as a
// space (form encoding). It reports false on a broken escape.
func appendUnescaped(dst []byte, s string, plusSpace bool) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) {
				return dst, false
			}
			h, ok1 := unhex(s[i+1])
			l, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return dst, false
			}
			dst = append(dst, h<<4|l)
			i += 2
		case c == '+' && plusSpace:
			dst = append(dst, ' ')
		default:
			dst = append(dst, c)
		}
	}
	return dst, true
}

// appendURIComponentQuery appends rawQuery re-encoded the way JavaScript's
// encodeURIComponent writes it: each name and value is decoded ('+' is a
// space) and encoded again; order, repeated names and the presence of '='
// are kept. It reports false when rawQuery has a broken escape.
func appendURIComponentQuery(dst []byte, rawQuery string) ([]byte, bool) {
	var tmp [128]byte
	for {
		part, rest, more := strings.Cut(rawQuery, "&")
		name, value, hasEq := strings.Cut(part, "=")
		dec, ok := appendUnescaped(tmp[:0], name, true)
		if !ok {
			return dst, false
		}
		dst = appendEscaped(dst, dec, &uriComponentSafe)
		if hasEq {
			dst = append(dst, '=')
			dec, ok = appendUnescaped(tmp[:0], value, true)
			if !ok {
				return dst, false
			}
			dst = appendEscaped(dst, dec, &uriComponentSafe)
		}
		if !more {
			break
		}
		dst = append(dst, '&')
		rawQuery = rest
	}
	return dst, true
}

// splitTarget splits an origin-form request-target into path and query.
func splitTarget(target string) (path, query string, hasQuery bool) {
	return strings.Cut(target, "?")
}

// originForm returns the request-target in origin form (path?query):
// an absolute-form target loses its scheme and authority.
func originForm(target string) string {
	if len(target) > 0 && target[0] == '/' {
		return target
	}
	if i := strings.Index(target, "://"); i > 0 {
		rest := target[i+3:]
		if j := strings.IndexAny(rest, "/?"); j >= 0 {
			if rest[j] == '?' {
				return "/" + rest[j:]
			}
			return rest[j:]
		}
		return "/"
	}
	return target
}
