package auth

import (
	"fmt"
	"strings"
)

// Scheme identifies a credential scheme.
type Scheme uint8

// The schemes, in detection order.
const (
	AccessKey     Scheme = iota + 1 // access_key
	WalleeMAC                       // wallee_mac
	WalleeJWT                       // wallee_jwt
	HTTPSignature                   // http_signature (draft-cavage and RFC 9421)
	SigV4                           // sigv4
	AccessToken                     // access_token
)

var schemeNames = [...]string{
	AccessKey:     "access_key",
	WalleeMAC:     "wallee_mac",
	WalleeJWT:     "wallee_jwt",
	HTTPSignature: "http_signature",
	SigV4:         "sigv4",
	AccessToken:   "access_token",
}

// String returns the configuration name of s ("access_key", …).
func (s Scheme) String() string {
	if s > 0 && int(s) < len(schemeNames) {
		return schemeNames[s]
	}
	return "unknown"
}

// Signed reports whether credentials of s are verified with Credential.Verify.
func (s Scheme) Signed() bool {
	return s == WalleeMAC || s == WalleeJWT || s == HTTPSignature || s == SigV4
}

// ParseScheme returns the Scheme named name (case-insensitive).
func ParseScheme(name string) (Scheme, error) {
	for i, n := range schemeNames {
		if i > 0 && strings.EqualFold(n, name) {
			return Scheme(i), nil
		}
	}
	return 0, fmt.Errorf("unknown scheme %q", name)
}

// SchemeSet is a set of schemes. The zero value means all schemes.
type SchemeSet uint8

// AllSchemes contains every scheme.
const AllSchemes SchemeSet = 1<<AccessKey | 1<<WalleeMAC | 1<<WalleeJWT | 1<<HTTPSignature | 1<<SigV4 | 1<<AccessToken

// NewSchemeSet returns the set of the given schemes.
func NewSchemeSet(schemes ...Scheme) SchemeSet {
	var s SchemeSet
	for _, sc := range schemes {
		s |= 1 << sc
	}
	return s
}

// ParseSchemeSet parses configuration names; no names means all schemes.
func ParseSchemeSet(names ...string) (SchemeSet, error) {
	if len(names) == 0 {
		return AllSchemes, nil
	}
	var s SchemeSet
	for _, n := range names {
		sc, err := ParseScheme(n)
		if err != nil {
			return 0, err
		}
		s |= 1 << sc
	}
	return s, nil
}

// Has reports whether s contains sc; the zero set contains every scheme.
func (s SchemeSet) Has(sc Scheme) bool {
	if s == 0 {
		return true
	}
	return s&(1<<sc) != 0
}
