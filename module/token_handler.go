package module

import (
	"crypto/subtle"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keys"
)

func init() {
	caddy.RegisterModule(TokenHandler{})
	caddy.RegisterModule(JWKSHandler{})
}

// TokenClientID is the OAuth2 client_id under which API tokens are
// exchanged (LeanIX style: Basic base64("apitoken:<API token>")).
const TokenClientID = "apitoken"

// maxTokenRequestBody bounds the form body of a token request.
const maxTokenRequestBody = 64 << 10

// TokenHandler is the `keygate_token` handler: the OAuth2 token endpoint
// (RFC 6749 section 4.4, client credentials) that exchanges an API token
// (access key) for a short-lived access token, a JWT the `keygate` handler
// verifies locally (scheme access_token). Mount it where clients expect
// it, e.g. `handle /services/mtm/v1/oauth2/token { keygate_token }`. It
// answers every request itself. Token settings are the keygate app's
// `token` options.
type TokenHandler struct {
	app    *App
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (TokenHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.keygate_token",
		New: func() caddy.Module { return new(TokenHandler) },
	}
}

// Provision takes the keygate app.
func (h *TokenHandler) Provision(ctx caddy.Context) error {
	app, err := keygateApp(ctx)
	if err != nil {
		return err
	}
	h.app, h.logger = app, ctx.Logger()
	return nil
}

// tokenError is an RFC 6749 section 5.2 error answer.
type tokenError struct {
	status int
	code   string // error: invalid_request, invalid_client, …
	reason string // log only
	err    error  // log only
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *TokenHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if h.throttled(w, r) {
		return nil
	}
	now := time.Now()
	tok, exp, te := h.exchange(r, now)
	if te != nil {
		h.countFailure(r, te.status)
		h.refuse(w, te)
		return nil
	}
	tokensIssued.Inc()
	hd := w.Header()
	hd["Content-Type"] = []string{"application/json"}
	hd["Cache-Control"] = []string{"no-store"}
	hd["Pragma"] = []string{"no-cache"}
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, `{"access_token":"`+tok+`","token_type":"bearer","expires_in":`+
		strconv.FormatInt(int64(exp/time.Second), 10)+`,"scope":"","expired":false}`)
	return nil
}

// exchange validates the request and the client credentials and signs a
// token; it returns the token and its expires_in.
func (h *TokenHandler) exchange(r *http.Request, now time.Time) (string, time.Duration, *tokenError) {
	if r.Method != http.MethodPost {
		return "", 0, &tokenError{status: http.StatusMethodNotAllowed, code: "invalid_request", reason: "method not allowed"}
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return "", 0, badTokenRequest("body is not application/x-www-form-urlencoded")
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxTokenRequestBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return "", 0, &tokenError{status: http.StatusRequestEntityTooLarge, code: "invalid_request", reason: "body too large"}
		}
		return "", 0, badTokenRequest("reading body")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return "", 0, badTokenRequest("malformed form body")
	}
	for name, vs := range form {
		if len(vs) > 1 {
			return "", 0, badTokenRequest("parameter " + strconv.Quote(name) + " repeated")
		}
	}
	switch gt := form.Get("grant_type"); gt {
	case "":
		return "", 0, badTokenRequest("grant_type missing")
	case "client_credentials":
	default:
		tokensRejected.WithLabelValues("unsupported_grant_type").Inc()
		return "", 0, &tokenError{status: http.StatusBadRequest, code: "unsupported_grant_type", reason: "grant type not supported"}
	}

	clientID, secret, te := clientCredentials(r, form)
	if te != nil {
		return "", 0, te
	}
	if subtle.ConstantTimeCompare([]byte(clientID), []byte(TokenClientID)) != 1 {
		return "", 0, invalidClient("unknown client_id", nil)
	}
	keyID, ok := keys.ParseAccessKey(secret)
	if !ok {
		return "", 0, invalidClient("client_secret is not an API token", nil)
	}
	ctx := r.Context()
	app := h.app
	k, p, out := app.verifyAccessKey(ctx, secret, keyID, now)
	if out != nil {
		return "", 0, outcomeToTokenError(out)
	}
	if p.User.Status != keys.UserActive {
		return "", 0, invalidClient("user not active", nil)
	}
	if reason, err := app.exchangeRefusal(ctx, p, k.TenantID, now); err != nil {
		return "", 0, unavailable("loading tenant", err)
	} else if reason != "" {
		return "", 0, invalidClient(reason, nil)
	}
	perm := p.Permission(k.TenantID)
	if perm == nil || perm.Status != keys.PermissionActive {
		return "", 0, invalidClient("no active permission in the key's tenant", nil)
	}
	if app.tokens == nil {
		return "", 0, unavailable("token exchange not set up", nil)
	}
	sk, err := app.tokens.signingKey(ctx, now)
	if err != nil {
		return "", 0, unavailable("no token-signing key", err)
	}
	tenantName := ""
	if t, err := app.shared.store.GetTenant(ctx, k.TenantID); err == nil {
		tenantName = t.Name
	}
	customer := perm.CustomerRoles
	if customer == nil {
		customer = []string{}
	}
	tok, err := app.tokens.issuer.Issue(sk, auth.TokenClaims{
		Subject: p.User.ID,
		KeyID:   k.ID,
		Tenant:  k.TenantID,
		Principal: &auth.TokenPrincipal{
			ID:       p.User.ID,
			Username: p.User.Name,
			Role:     string(p.User.Role),
			Permission: auth.TokenPermission{
				WorkspaceID:   k.TenantID,
				WorkspaceName: tenantName,
				Role:          string(perm.Role),
				CustomerRoles: customer,
			},
		},
	}, now)
	if err != nil {
		return "", 0, unavailable("signing access token", err)
	}
	app.usage.Record(p.User.ID, k.ID, "", now)
	if ce := h.logger.Check(zapcore.InfoLevel, "access token issued"); ce != nil {
		ce.Write(zap.String("user_id", p.User.ID), zap.String("key_id", k.ID), zap.String("kid", sk.ID))
	}
	return tok, app.tokens.lifetime - time.Second, nil
}

// clientCredentials reads the client credentials from Authorization:
// Basic (RFC 6749 section 2.3.1: form-encoded, then base64) or from the
// form's client_id and client_secret. Both present and different is an
// invalid request.
func clientCredentials(r *http.Request, form url.Values) (id, secret string, te *tokenError) {
	formID, formSecret := form.Get("client_id"), form.Get("client_secret")
	hasForm := formID != "" || formSecret != ""
	basicID, basicSecret, hasBasic := r.BasicAuth()
	if hasBasic {
		// Clients form-encode both before base64 (x/oauth2 does); curl -u
		// does not, and API tokens contain nothing that decoding changes.
		if v, err := url.QueryUnescape(basicID); err == nil {
			basicID = v
		}
		if v, err := url.QueryUnescape(basicSecret); err == nil {
			basicSecret = v
		}
	} else if r.Header.Get("Authorization") != "" {
		return "", "", invalidClient("unsupported Authorization scheme", nil)
	}
	switch {
	case hasBasic && hasForm:
		if subtle.ConstantTimeCompare([]byte(basicID), []byte(formID)) != 1 ||
			subtle.ConstantTimeCompare([]byte(basicSecret), []byte(formSecret)) != 1 {
			return "", "", badTokenRequest("two different client authentications")
		}
		return basicID, basicSecret, nil
	case hasBasic:
		return basicID, basicSecret, nil
	case hasForm:
		return formID, formSecret, nil
	}
	return "", "", invalidClient("no client credentials", nil)
}

func badTokenRequest(reason string) *tokenError {
	tokensRejected.WithLabelValues("invalid_request").Inc()
	return &tokenError{status: http.StatusBadRequest, code: "invalid_request", reason: reason}
}

func invalidClient(reason string, err error) *tokenError {
	tokensRejected.WithLabelValues("invalid_client").Inc()
	return &tokenError{status: http.StatusUnauthorized, code: "invalid_client", reason: reason, err: err}
}

func unavailable(reason string, err error) *tokenError {
	return &tokenError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", reason: reason, err: err}
}

// outcomeToTokenError maps a key check failure: a store outage is 503,
// everything else invalid_client.
func outcomeToTokenError(out *outcome) *tokenError {
	if out.status == http.StatusServiceUnavailable {
		storeErrors.WithLabelValues("token").Inc()
		return unavailable(out.reason, out.err)
	}
	return invalidClient(out.reason, out.err)
}

// tokenErrorDescriptions are the fixed, non-revealing descriptions sent.
var tokenErrorDescriptions = map[string]string{
	"invalid_request":         "The request is missing a parameter, repeats one, or is not a form POST.",
	"invalid_client":          "Client authentication failed.",
	"unsupported_grant_type":  "Only grant_type=client_credentials is supported.",
	"temporarily_unavailable": "The token service is temporarily unavailable; retry later.",
}

// refuse logs and answers an RFC 6749 section 5.2 error.
func (h *TokenHandler) refuse(w http.ResponseWriter, te *tokenError) {
	level := zapcore.InfoLevel
	if te.status == http.StatusServiceUnavailable {
		level = zapcore.WarnLevel
	}
	if ce := h.logger.Check(level, "token request refused"); ce != nil {
		fields := []zap.Field{zap.Int("status", te.status), zap.String("error", te.code), zap.String("reason", te.reason)}
		if te.err != nil {
			fields = append(fields, zap.Error(te.err))
		}
		ce.Write(fields...)
	}
	hd := w.Header()
	hd["Content-Type"] = []string{"application/json"}
	hd["Cache-Control"] = []string{"no-store"}
	hd["Pragma"] = []string{"no-cache"}
	switch te.status {
	case http.StatusUnauthorized:
		hd["Www-Authenticate"] = []string{`Basic realm="keygate"`}
	case http.StatusMethodNotAllowed:
		hd["Allow"] = []string{http.MethodPost}
	case http.StatusServiceUnavailable:
		hd["Retry-After"] = []string{"1"}
	}
	w.WriteHeader(te.status)
	_, _ = io.WriteString(w, `{"error":"`+te.code+`","error_description":"`+tokenErrorDescriptions[te.code]+`"}`)
}

// JWKSHandler is the `keygate_jwks` handler: it serves the public
// token-signing keys as a JSON Web Key Set (RFC 7517), including keys that
// no longer sign but whose tokens may still be valid. Mount it where
// verifiers look, e.g. `handle /.well-known/jwks.json { keygate_jwks }`.
type JWKSHandler struct {
	// MaxAge is the Cache-Control max-age of the answer. Default: 5m
	MaxAge caddy.Duration `json:"max_age,omitempty"`

	app *App
}

// CaddyModule returns the Caddy module information.
func (JWKSHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.keygate_jwks",
		New: func() caddy.Module { return new(JWKSHandler) },
	}
}

// Provision takes the keygate app and applies defaults.
func (h *JWKSHandler) Provision(ctx caddy.Context) error {
	app, err := keygateApp(ctx)
	if err != nil {
		return err
	}
	h.app = app
	if h.MaxAge <= 0 {
		h.MaxAge = caddy.Duration(5 * time.Minute)
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *JWKSHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	hd := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd["Allow"] = []string{"GET, HEAD"}
		w.WriteHeader(http.StatusMethodNotAllowed)
		return nil
	}
	body := []byte(`{"keys":[]}`)
	if h.app.tokens != nil {
		body = h.app.tokens.set.Load().jwks
	}
	hd["Content-Type"] = []string{"application/json"}
	hd["Cache-Control"] = []string{"public, max-age=" + strconv.FormatInt(int64(time.Duration(h.MaxAge)/time.Second), 10)}
	hd["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
	return nil
}

var (
	_ caddy.Provisioner           = (*TokenHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*TokenHandler)(nil)
	_ caddy.Provisioner           = (*JWKSHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*JWKSHandler)(nil)
)
