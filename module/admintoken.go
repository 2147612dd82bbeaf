package module

import (
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/admin"
)

// errNoTokens: the app has no token exchange, so no access token is valid.
var errNoTokens = errors.New("token exchange not configured")

// VerifyAccessToken implements admin.TokenVerifier: the admin API (and so
// the console) accepts the access tokens of the token endpoint, checked
// like the gateway checks them (signature, issuer, expiry); the admin API
// then checks the key the token was minted from.
func (a *App) VerifyAccessToken(tok string, now time.Time) (keyID, userID, tenant string, err error) {
	if a.tokens == nil {
		return "", "", "", errNoTokens
	}
	vt, err := a.tokens.verify(tok, now)
	if err != nil {
		return "", "", "", fmt.Errorf("access token: %w", err)
	}
	return vt.KeyID, vt.Subject, vt.Tenant, nil
}

var _ admin.TokenVerifier = (*App)(nil)
