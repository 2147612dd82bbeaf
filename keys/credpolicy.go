package keys

import (
	"fmt"
	"slices"
	"strings"
)

// CredentialKind is a way a user authenticates.
type CredentialKind string

// Credential kinds.
const (
	// CredAccessKey is an access key (API token) presented as a bearer
	// secret, at the gateway and the admin API.
	CredAccessKey CredentialKind = "access_key"
	// CredToken is the token exchange: an access key traded for a
	// short-lived access token, and that token at the gateway.
	CredToken CredentialKind = "token"
	// CredSignature is a request signed with one of the user's signing
	// secrets (every signed scheme).
	CredSignature CredentialKind = "signature"
)

// CredentialKinds lists every credential kind.
var CredentialKinds = []CredentialKind{CredAccessKey, CredToken, CredSignature}

// CredentialPolicy says which credential kinds each user type may hold and
// use. A type missing from the policy may use none.
type CredentialPolicy map[UserType][]CredentialKind

// DefaultCredentialPolicy is the mapping of the seed documents: SERVICE
// users (seed 002) use access keys only; TECHNICAL users (seed 000) use
// their API token (an access key) and the token exchange; APPLICATION users
// (seed 004) sign requests with their signing secrets.
func DefaultCredentialPolicy() CredentialPolicy {
	return CredentialPolicy{
		UserService:     {CredAccessKey},
		UserTechnical:   {CredAccessKey, CredToken},
		UserApplication: {CredSignature},
	}
}

// Allows reports whether users of type t may hold and use credentials of
// kind c. A nil policy is the default one.
func (p CredentialPolicy) Allows(t UserType, c CredentialKind) bool {
	if p == nil {
		return defaultPolicy.Allows(t, c)
	}
	return slices.Contains(p[t], c)
}

// Describe lists the kinds allowed for t, for error messages ("none" when
// there are none).
func (p CredentialPolicy) Describe(t UserType) string {
	if p == nil {
		return defaultPolicy.Describe(t)
	}
	if len(p[t]) == 0 {
		return "none"
	}
	names := make([]string, len(p[t]))
	for i, c := range p[t] {
		names[i] = string(c)
	}
	return strings.Join(names, ", ")
}

// Validate checks that the policy names only known user types and kinds.
func (p CredentialPolicy) Validate() error {
	for t, kinds := range p {
		if t != UserTechnical && t != UserService && t != UserApplication {
			return fmt.Errorf("credential policy: unknown user type %q (want TECHNICAL, SERVICE or APPLICATION)", t)
		}
		for _, c := range kinds {
			if !slices.Contains(CredentialKinds, c) {
				return fmt.Errorf("credential policy: user type %s: unknown credential %q (want access_key, token or signature)", t, c)
			}
		}
	}
	return nil
}

// WithDefaults returns the default policy with the types p names replaced
// by p's lists, so an operator configures only the types it changes.
func (p CredentialPolicy) WithDefaults() CredentialPolicy {
	out := DefaultCredentialPolicy()
	for t, kinds := range p {
		out[t] = slices.Clone(kinds)
	}
	return out
}

var defaultPolicy = DefaultCredentialPolicy()
