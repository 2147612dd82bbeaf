package admin

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/keygate/keygate/keys"
)

type trustedKey struct{}

// WithTrustedCaller marks ctx as coming from a local, already trusted caller
// (Caddy's local-only admin endpoint, or the CLI running the handler in
// process). A request whose context carries it skips key authentication and
// acts as a superadmin; actor names it in history and the activity log
// (empty means "local"). Nothing in a request can set it: only Go code that
// wraps the handler can.
func WithTrustedCaller(ctx context.Context, actor string) context.Context {
	if actor == "" {
		actor = "local"
	}
	return context.WithValue(ctx, trustedKey{}, actor)
}

// trustedActor returns the actor of a trusted context.
func trustedActor(ctx context.Context) (string, bool) {
	a, ok := ctx.Value(trustedKey{}).(string)
	return a, ok
}

// caller is the authenticated identity of a request.
type caller struct {
	// actor goes into history and the activity log: the user id, or the
	// trusted caller's name.
	actor      string
	trusted    bool
	superadmin bool
	// user is the authenticated user (nil for trusted callers).
	user *keys.User
	// keyID is the access key used (or the one the console session or
	// access token came from).
	keyID string
	// key is that key (nil for trusted callers).
	key *keys.Key
	// session is the console session the caller signed in with, if any.
	session *keys.Session
	// keyTenant is the tenant the key is valid in: the tenant the caller
	// acts in.
	keyTenant string
	// perm is the caller's permission in keyTenant; nil when it has none.
	perm *keys.Permission
	// tenants are the tenants the caller administers (tenant admins). An
	// access key is valid in exactly one tenant, so this holds at most the
	// key's tenant, and only when the user has an ACTIVE ADMIN permission there.
	tenants []string
}

// member reports whether the caller holds an ACTIVE permission, of any
// role, in the tenant of its key: what reading profiles there takes.
func (c *caller) member() bool {
	return c.perm != nil && c.perm.Status == keys.PermissionActive
}

// self reports whether id is the caller's own user.
func (c *caller) self(id string) bool { return c.user != nil && c.user.ID == id }

// requireReader fails with 403 for a valid caller that neither administers
// a tenant nor holds an ACTIVE permission in its key's tenant.
func (c *caller) requireReader() error {
	if c.superadmin || len(c.tenants) > 0 || c.member() {
		return nil
	}
	return errForbidden("the caller has no ACTIVE permission in its key's tenant")
}

// adminOf reports whether the caller may act on tenant.
func (c *caller) adminOf(tenant string) bool {
	return c.superadmin || (tenant != "" && contains(c.tenants, tenant))
}

// requireAdmin fails with 403 for a valid caller that administers nothing.
func (c *caller) requireAdmin() error {
	if c.superadmin || len(c.tenants) > 0 {
		return nil
	}
	return errForbidden("the caller has no ACTIVE ADMIN permission in its key's tenant")
}

// credential extracts the presented access key (or access token):
// Authorization: Bearer, or X-Api-Key. Two different ones, or anything malformed, is an error.
func credential(r *http.Request) (string, bool) {
	var found string
	auths := r.Header.Values("Authorization")
	if len(auths) > 1 {
		return "", false
	}
	if len(auths) == 1 {
		scheme, tok, ok := strings.Cut(strings.TrimSpace(auths[0]), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", false
		}
		found = strings.TrimSpace(tok)
	}
	apiKeys := r.Header.Values("X-Api-Key")
	if len(apiKeys) > 1 {
		return "", false
	}
	if len(apiKeys) == 1 {
		k := strings.TrimSpace(apiKeys[0])
		if found != "" && k != found {
			return "", false
		}
		found = k
	}
	return found, found != ""
}

// dummyHash is compared against when a key id is unknown, so an unknown id
// costs about as much as a wrong secret.
var dummyHash = make([]byte, 32)

// authenticateKey checks an access key: shape, stored record, hash (constant
// time), usability at now, and that its user is ACTIVE. Every credential
// problem is errUnauthorized; store failures are 503. A console session
// token (kgs_…) is checked the same way against the key it is bound to.
func (h *Handler) authenticateKey(ctx context.Context, r *http.Request) (*keys.Key, *keys.User, error) {
	k, u, _, err := h.authenticateCredential(ctx, r)
	return k, u, err
}

// authenticateCredential is authenticateKey that also returns the console
// session the credential was, if it was one.
func (h *Handler) authenticateCredential(ctx context.Context, r *http.Request) (*keys.Key, *keys.User, *keys.Session, error) {
	raw, ok := credential(r)
	if !ok {
		return nil, nil, nil, errUnauthorized
	}
	if sid, ok := keys.ParseSession(raw); ok {
		return h.authenticateSession(ctx, raw, sid)
	}
	k, u, err := h.authenticatePresented(ctx, raw)
	return k, u, nil, err
}

// authenticateSession checks a console session token: the stored session
// (hash, constant time; expiry), then the key it is bound to and that key's
// user and tenant exactly as for a presented key. The user's type must
// still be one that may use the console.
func (h *Handler) authenticateSession(ctx context.Context, raw, id string) (*keys.Key, *keys.User, *keys.Session, error) {
	sess, err := h.store.GetSession(ctx, id)
	if errors.Is(err, keys.ErrNotFound) {
		h.hasher.Verify(raw, dummyHash)
		return nil, nil, nil, errUnauthorized
	}
	if err != nil {
		return nil, nil, nil, err
	}
	now := h.now()
	if !h.hasher.Verify(raw, sess.Hash) || !now.Before(sess.ExpiresAt) {
		return nil, nil, nil, errUnauthorized
	}
	k, u, err := h.checkKey(ctx, sess.KeyID, func(k *keys.Key) bool {
		return k.UserID == sess.UserID && k.TenantID == sess.TenantID && k.Usable(now)
	})
	if err != nil {
		return nil, nil, nil, err
	}
	if consoleRefusal(u) != "" {
		return nil, nil, nil, errUnauthorized
	}
	return k, u, &sess, nil
}

// authenticatePresented checks an access key or access token.
func (h *Handler) authenticatePresented(ctx context.Context, raw string) (*keys.Key, *keys.User, error) {
	id, ok := keys.ParseAccessKey(raw)
	// An access token names the key it was minted from; that key must
	// then pass every check a presented key does, except its secret.
	var tokenUser, tokenTenant string
	if !ok && h.tokens != nil && looksLikeJWT(raw) {
		var err error
		if id, tokenUser, tokenTenant, err = h.tokens.VerifyAccessToken(raw, h.now()); err != nil {
			return nil, nil, errUnauthorized
		}
		ok = id != ""
	}
	if !ok {
		return nil, nil, errUnauthorized
	}
	now := h.now()
	k, u, err := h.checkKey(ctx, id, func(k *keys.Key) bool {
		if tokenUser != "" {
			return k.UserID == tokenUser && k.TenantID == tokenTenant && k.Usable(now)
		}
		return h.hasher.Verify(raw, k.Hash) && k.Usable(now)
	})
	if errors.Is(err, errUnknownKey) {
		h.hasher.Verify(raw, dummyHash)
		return nil, nil, errUnauthorized
	}
	if err != nil {
		return nil, nil, err
	}
	if tokenUser != "" && !h.creds.Allows(u.Type, keys.CredToken) {
		return nil, nil, errUnauthorized
	}
	return k, u, nil
}

// errUnknownKey is checkKey's 401 for a key id that is not stored (the
// caller then spends a hash on a dummy, so unknown ids cost as much).
var errUnknownKey = &apiError{status: http.StatusUnauthorized, slug: "unauthorized", title: "Unauthorized",
	detail: errUnauthorized.detail, header: errUnauthorized.header}

// checkKey loads key id and checks, besides ok(key), that its user is
// ACTIVE and of a type that may use access keys, and that its tenant is
// ACTIVE. Credential problems are 401; store failures pass through.
func (h *Handler) checkKey(ctx context.Context, id string, ok func(*keys.Key) bool) (*keys.Key, *keys.User, error) {
	k, err := h.store.GetKey(ctx, id)
	if errors.Is(err, keys.ErrNotFound) {
		return nil, nil, errUnknownKey
	}
	if err != nil {
		return nil, nil, err
	}
	if !ok(&k) {
		return nil, nil, errUnauthorized
	}
	u, err := h.store.GetUser(ctx, k.UserID)
	if errors.Is(err, keys.ErrNotFound) {
		return nil, nil, errUnauthorized
	}
	if err != nil {
		return nil, nil, err
	}
	if u.Status != keys.UserActive || !h.creds.Allows(u.Type, keys.CredAccessKey) {
		return nil, nil, errUnauthorized
	}
	// A key of an ARCHIVED tenant authenticates nothing, like at the gateway.
	t, err := h.store.GetTenant(ctx, k.TenantID)
	if errors.Is(err, keys.ErrNotFound) {
		return nil, nil, errUnauthorized
	}
	if err != nil {
		return nil, nil, err
	}
	if t.Status != keys.TenantActive {
		return nil, nil, errUnauthorized
	}
	return &k, &u, nil
}

// authenticate resolves the caller of an admin route: a trusted context, or
// an access key whose user is a superadmin or holds an ACTIVE ADMIN
// permission in the key's (ACTIVE) tenant. A valid key without that
// permission yields a caller with no tenants (403 on every admin route).
func (h *Handler) authenticate(ctx context.Context, r *http.Request) (*caller, error) {
	if actor, ok := trustedActor(ctx); ok {
		return &caller{actor: actor, trusted: true, superadmin: true}, nil
	}
	k, u, sess, err := h.authenticateCredential(ctx, r)
	if err != nil {
		return nil, err
	}
	c := &caller{actor: u.ID, user: u, keyID: k.ID, key: k, session: sess, keyTenant: k.TenantID, superadmin: u.Superadmin}
	p, err := h.store.GetPermission(ctx, u.ID, k.TenantID)
	switch {
	case errors.Is(err, keys.ErrNotFound):
		return c, nil
	case err != nil:
		return nil, err
	}
	c.perm = &p
	if c.superadmin || p.Status != keys.PermissionActive || p.Role != keys.RoleAdmin {
		return c, nil
	}
	t, err := h.store.GetTenant(ctx, k.TenantID)
	switch {
	case errors.Is(err, keys.ErrNotFound):
		return c, nil
	case err != nil:
		return nil, err
	}
	if t.Status == keys.TenantActive {
		c.tenants = []string{t.ID}
	}
	return c, nil
}
