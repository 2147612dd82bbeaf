package admin

import "time"

// TokenVerifier checks access tokens (the JWTs of keygate's token endpoint)
// presented to the admin API, so that the console and scripts can sign in
// with a short-lived token instead of an API token.
type TokenVerifier interface {
	// VerifyAccessToken checks the token's signature, issuer and expiry at
	// now and returns the access key it was minted from, its user and its
	// tenant. The admin API then checks that key like a presented one
	// (usable, user ACTIVE, tenant ACTIVE), so revoking the key ends the
	// token at once.
	VerifyAccessToken(token string, now time.Time) (keyID, userID, tenant string, err error)
}

// looksLikeJWT reports whether s has the three dot-separated parts of a
// compact JWS.
func looksLikeJWT(s string) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			n++
		}
	}
	return n == 2 && len(s) > 20
}
