package admin

import (
	"errors"
	"net/http"
	"time"

	"github.com/keygate/keygate/keys"
)

// DefaultSessionLifetime is how long a console session lasts unless
// configured (and never longer than the key it came from).
const DefaultSessionLifetime = time.Hour

// consoleRefusal says why u may not sign in to the console, or "" when it
// may. Service users cannot sign in to a user interface (seed 002), nor
// can application users, which only sign requests (seed 004); their keys
// keep working against /v1 as an API.
func consoleRefusal(u *keys.User) string {
	switch u.Type {
	case keys.UserService:
		return "service users cannot sign in to the console (they call interfaces with their access keys only); the key still works against the API at /v1"
	case keys.UserApplication:
		return "application users cannot sign in to the console (they sign requests to the API); their credentials still work against the API at /v1"
	}
	return ""
}

// ConsoleUser is the signed-in user in a ConsoleIdentity.
type ConsoleUser struct {
	ID         string        `json:"id"`
	Name       string        `json:"name"`
	Type       keys.UserType `json:"type"`
	Superadmin bool          `json:"superadmin"`
}

// ConsoleIdentity is who a console session (or access key) acts as: the
// data of POST and GET /v1/console/session.
type ConsoleIdentity struct {
	User ConsoleUser `json:"user"`
	// Tenant is the tenant of the key the session came from, where it acts.
	Tenant string `json:"tenant"`
	// Role and PermissionStatus are those of the user's permission in
	// Tenant; empty when it holds none there (a superadmin may not).
	Role             keys.Role             `json:"role,omitempty"`
	PermissionStatus keys.PermissionStatus `json:"permissionStatus,omitempty"`
	// Admin tells whether the caller administers Tenant (an ACTIVE ADMIN
	// permission there, or superadmin).
	Admin bool `json:"admin"`
	// KeyID is the access key the session is bound to.
	KeyID string `json:"keyId"`
	// ExpiresAt is when the session ends; absent for an access key.
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	// Token is the session token (kgs_…), only in the answer of POST:
	// the console sends it as Authorization: Bearer until it expires.
	Token string `json:"token,omitempty"`
}

func identityOf(c *caller) ConsoleIdentity {
	id := ConsoleIdentity{
		User:   ConsoleUser{ID: c.user.ID, Name: c.user.Name, Type: c.user.Type, Superadmin: c.user.Superadmin},
		Tenant: c.keyTenant, Admin: c.adminOf(c.keyTenant), KeyID: c.keyID,
	}
	if c.perm != nil {
		id.Role, id.PermissionStatus = c.perm.Role, c.perm.Status
	}
	if c.session != nil {
		at := c.session.ExpiresAt
		id.ExpiresAt = &at
	}
	return id
}

// createSession exchanges the presented access key (or access token) for a
// console session bound to it: refused (403) for SERVICE and APPLICATION
// users and for users without an ACTIVE permission in the key's tenant
// (superadmins need none). The session lasts the configured lifetime, and
// no longer than the key. 201 with the token, shown once.
func (h *Handler) createSession(w http.ResponseWriter, r *http.Request, c *caller) error {
	if c.trusted {
		return errBadRequest("a trusted local caller needs no console session")
	}
	if c.session != nil {
		return errBadRequest("this request is already signed in with a console session; sign in with an access key or access token")
	}
	if r.ContentLength != 0 || r.Header.Get("Content-Type") != "" {
		// No body is needed; one that is sent must be a JSON object
		// without members ({}).
		var none struct{}
		if err := decodeJSON(w, r, h.maxBody, &none); err != nil {
			return err
		}
	}
	setTenant(r, c.keyTenant)
	if why := consoleRefusal(c.user); why != "" {
		return newError(http.StatusForbidden, "console-not-allowed", "This user cannot sign in to the console", why)
	}
	if !c.superadmin && !c.member() {
		return newError(http.StatusForbidden, "console-not-allowed", "This user cannot sign in to the console",
			"the user has no ACTIVE permission in tenant "+c.keyTenant+", the tenant of its key")
	}
	now := h.now()
	expires := now.Add(h.sessionLife)
	if c.key.ExpiresAt.Before(expires) {
		expires = c.key.ExpiresAt
	}
	if d := c.key.DisableAt; d != nil && d.Before(expires) {
		expires = *d
	}
	plaintext, sess := keys.NewSession(h.hasher, c.key, expires)
	out, err := h.store.CreateSession(r.Context(), sess, c.actor)
	if err != nil {
		return err
	}
	c.session = &out
	id := identityOf(c)
	id.Token = plaintext
	w.Header().Set("Cache-Control", "no-store")
	writeOne(w, http.StatusCreated, "ConsoleSession", 0, id)
	return nil
}

// getSession tells who the caller is: the console's "signed in as".
func (h *Handler) getSession(w http.ResponseWriter, r *http.Request, c *caller) error {
	if c.trusted {
		return errNotFound("console session")
	}
	setTenant(r, c.keyTenant)
	writeOne(w, http.StatusOK, "ConsoleSession", 0, identityOf(c))
	return nil
}

// deleteSession signs out: the presented console session ends. 204; 404
// when the request carries no console session.
func (h *Handler) deleteSession(w http.ResponseWriter, r *http.Request, c *caller) error {
	if c.session == nil {
		return errNotFound("console session")
	}
	setTenant(r, c.keyTenant)
	err := h.store.DeleteSession(r.Context(), c.session.ID)
	if err != nil && !errors.Is(err, keys.ErrNotFound) {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
	return nil
}
