package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/keys"
)

// maxGrace bounds a replacement's grace period.
const maxGrace = 30 * 24 * time.Hour

// keyBody is the body of POST and PATCH /v1/users/{id}/keys[/{keyId}].
type keyBody struct {
	Name      opt[string]          `json:"name"`
	ExpiresAt opt[timestamp]       `json:"expiresAt"`
	Tenant    opt[string]          `json:"tenant"`
	Status    opt[keys.KeyStatus]  `json:"status"`
	Meta      opt[json.RawMessage] `json:"meta"`
	Tags      opt[[]string]        `json:"tags"`
	Version   *int64               `json:"version"`
}

// checkMetaTags validates the meta and tags members of a body.
func checkMetaTags(v *keys.ValidationError, meta opt[json.RawMessage], tags opt[[]string]) {
	if meta.Set && !meta.Null {
		if err := keys.ValidateMeta("meta", meta.V); err != nil {
			v.Fields = append(v.Fields, err.(*keys.ValidationError).Fields...)
		}
	}
	if tags.Set && !tags.Null {
		if err := keys.ValidateTags("tags", tags.V); err != nil {
			v.Fields = append(v.Fields, err.(*keys.ValidationError).Fields...)
		}
	}
}

// applyMetaTags merges the meta and tags members of a body (null clears).
func applyMetaTags(meta opt[json.RawMessage], tags opt[[]string], dstMeta *json.RawMessage, dstTags *[]string) {
	if meta.Set {
		*dstMeta = nil
		if !meta.Null {
			*dstMeta = slices.Clone(meta.V)
		}
	}
	if tags.Set {
		*dstTags = nil
		if !tags.Null {
			*dstTags = slices.Clone(tags.V)
		}
	}
}

// replaceBody is the optional body of POST …/keys/{keyId}/replace.
type replaceBody struct {
	// GracePeriod keeps the old key working this long: "24h" or seconds.
	GracePeriod *duration `json:"gracePeriod"`
	// ExpiresAt of the new key; default: the old key's.
	ExpiresAt *timestamp `json:"expiresAt"`
}

// keyVisible reports whether the caller may see k: a superadmin every key,
// a tenant admin the keys valid in its tenant.
func keyVisible(c *caller, k *keys.Key) bool { return c.adminOf(k.TenantID) }

// keyReadable reports whether the caller may read k (masked): as an
// administrator (keyVisible), or because it is its own key.
func keyReadable(c *caller, k *keys.Key) bool { return keyVisible(c, k) || c.self(k.UserID) }

// loadKey returns a user the caller sees and one of its keys the caller
// sees, or 404. read lets users read their own keys too.
func (h *Handler) loadKey(r *http.Request, c *caller, read bool) (keys.User, keys.Key, error) {
	var (
		u   keys.User
		err error
	)
	if read {
		u, err = h.ownUser(r, c, r.PathValue("id"))
	} else {
		u, err = h.visibleUser(r, c, r.PathValue("id"))
	}
	if err != nil {
		return u, keys.Key{}, err
	}
	id := r.PathValue("keyId")
	if keys.ValidateID(id) != nil {
		return u, keys.Key{}, errNotFound("key")
	}
	visible := keyVisible
	if read {
		visible = keyReadable
	}
	k, err := h.store.GetKey(r.Context(), id)
	if errors.Is(err, keys.ErrNotFound) || (err == nil && (k.UserID != u.ID || !visible(c, &k))) {
		return u, keys.Key{}, errNotFound("key")
	}
	if err != nil {
		return u, k, err
	}
	setTenant(r, k.TenantID)
	return u, k, nil
}

// loadMutableKey is loadKey plus the right to change the key: a user's keys
// are managed by the administrators of its primary tenant (and
// superadmins), and a tenant admin cannot touch the keys of a superadmin.
// revoke relaxes the first rule: the administrator of the key's tenant may
// also revoke it (taking access away needs no say of the primary tenant).
func (h *Handler) loadMutableKey(r *http.Request, c *caller, revoke bool) (keys.User, keys.Key, error) {
	u, k, err := h.loadKey(r, c, false)
	switch {
	case err != nil:
	case u.Superadmin && !c.superadmin:
		err = errForbidden("only a superadmin may change a superadmin's keys")
	case !revoke && !canManage(c, &u):
		err = errForbidden("only an administrator of the user's primary tenant may change its keys")
	}
	return u, k, err
}

// allowCredential answers 409 when u's type may not hold credentials of kind.
func (h *Handler) allowCredential(u *keys.User, kind keys.CredentialKind) error {
	if h.creds.Allows(u.Type, kind) {
		return nil
	}
	return errConflict(fmt.Sprintf("users of type %s may not hold %s credentials (allowed: %s)", u.Type, kind, h.creds.Describe(u.Type)))
}

func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request, c *caller) error {
	lo, err := parseList(r.URL.Query(), "name", "createdAt", "expiresAt")
	if err != nil {
		return err
	}
	u, err := h.ownUser(r, c, r.PathValue("id"))
	if err != nil {
		return err
	}
	all, err := h.store.ListKeys(r.Context(), u.ID)
	if err != nil {
		return err
	}
	now := h.now()
	views := make([]KeyView, 0, len(all))
	for i := range all {
		if keyReadable(c, &all[i]) {
			views = append(views, keyView(&all[i], now))
		}
	}
	for i := len(lo.Sort) - 1; i >= 0; i-- {
		s := lo.Sort[i]
		slices.SortStableFunc(views, func(a, b KeyView) int {
			var n int
			switch s.Field {
			case "name":
				n = strings.Compare(a.Name, b.Name)
			case "createdAt":
				n = a.CreatedAt.Compare(b.CreatedAt)
			case "expiresAt":
				n = a.ExpiresAt.Compare(b.ExpiresAt)
			}
			if s.Desc {
				n = -n
			}
			return n
		})
	}
	total := len(views)
	start := min((lo.Page-1)*lo.Size, total)
	end := min(start+lo.Size, total)
	writeList(w, "Key", views[start:end], total, lo)
	return nil
}

func (h *Handler) getKey(w http.ResponseWriter, r *http.Request, c *caller) error {
	_, k, err := h.loadKey(r, c, true)
	if err != nil {
		return err
	}
	writeOne(w, http.StatusOK, "Key", k.Version, keyView(&k, h.now()))
	return nil
}

// createKey issues a key valid in one tenant (default: the user's primary
// tenant). The caller administers the user's primary tenant and the key's
// tenant, the user's type allows access keys, and the user holds an ACTIVE
// permission in the key's tenant. The full key is in the response, once.
func (h *Handler) createKey(w http.ResponseWriter, r *http.Request, c *caller) error {
	u, err := h.manageableUser(r, c, r.PathValue("id"))
	if err != nil {
		return err
	}
	var b keyBody
	if err := decodeJSON(w, r, h.maxBody, &b); err != nil {
		return err
	}
	now := h.now()
	v := &keys.ValidationError{}
	if b.Name.Set && !b.Name.Null {
		checkName(v, "name", b.Name.V)
	} else {
		v.Add("name", "is required")
	}
	if !b.ExpiresAt.Set || b.ExpiresAt.Null {
		v.Add("expiresAt", "is required")
	} else if !b.ExpiresAt.V.After(now) {
		v.Add("expiresAt", "must be in the future")
	}
	if b.Status.Set {
		v.Add("status", "cannot be set when creating; a new key is ACTIVE")
	}
	if b.Version != nil {
		v.Add("version", "is not allowed when creating")
	}
	checkMetaTags(v, b.Meta, b.Tags)
	tenant := u.PrimaryTenant
	if b.Tenant.Set && !b.Tenant.Null {
		tenant = b.Tenant.V
		if keys.ValidateID(tenant) != nil {
			v.Add("tenant", "is not a valid tenant id")
		}
	}
	if err := v.Err(); err != nil {
		return err
	}
	if !c.adminOf(tenant) {
		return errForbidden("the caller is not an administrator of tenant " + tenant)
	}
	if u.Superadmin && !c.superadmin {
		return errForbidden("only a superadmin may create keys for a superadmin")
	}
	setTenant(r, tenant)
	if err := h.allowCredential(&u, keys.CredAccessKey); err != nil {
		return err
	}
	p, err := h.store.GetPermission(r.Context(), u.ID, tenant)
	switch {
	case errors.Is(err, keys.ErrNotFound):
		// A state conflict like an ARCHIVED or INVITED permission (409),
		// not bad input: granting the permission makes the request valid.
		return errConflict("the user has no permission in tenant " + tenant + "; a key needs an ACTIVE permission there")
	case err != nil:
		return err
	case p.Status != keys.PermissionActive:
		return errConflict("the user's permission in tenant " + tenant + " is " + string(p.Status) + ", not ACTIVE")
	}
	plaintext, k := keys.NewAccessKey(h.hasher, u.ID, tenant, b.Name.V, b.ExpiresAt.V.Time)
	applyMetaTags(b.Meta, b.Tags, &k.Meta, &k.Tags)
	out, err := h.store.CreateKey(r.Context(), k, c.actor)
	if err != nil {
		return err
	}
	view := keyView(&out, now)
	view.Key = plaintext
	w.Header().Set("Location", "/v1/users/"+u.ID+"/keys/"+out.ID)
	writeOne(w, http.StatusCreated, "Key", out.Version, view)
	return nil
}

// patchKey renames a key, changes its expiry or its status (ACTIVE ⇄
// INACTIVE). The key material never changes.
func (h *Handler) patchKey(w http.ResponseWriter, r *http.Request, c *caller) error {
	u, cur, err := h.loadMutableKey(r, c, false)
	if err != nil {
		return err
	}
	var b keyBody
	pre, err := h.decodeUpdate(w, r, &b, &b.Version)
	if err != nil {
		return err
	}
	v := &keys.ValidationError{}
	checkNewName(v, "name", b.Name)
	if b.ExpiresAt.Set && b.ExpiresAt.Null {
		v.Add("expiresAt", "must not be null")
	}
	if b.Tenant.Set && b.Tenant.V != cur.TenantID {
		v.Add("tenant", "cannot be changed")
	}
	if b.Status.Set && b.Status.V != keys.KeyActive && b.Status.V != keys.KeyInactive {
		v.Add("status", "must be ACTIVE or INACTIVE (DELETE revokes a key)")
	}
	checkMetaTags(v, b.Meta, b.Tags)
	if err := v.Err(); err != nil {
		return err
	}
	version, err := pre.expect(cur.Version)
	if err != nil {
		return err
	}
	out, err := h.store.UpdateKey(r.Context(), u.ID, cur.ID, version, func(k *keys.Key) error {
		if !keyVisible(c, k) {
			return errNotFound("key")
		}
		if b.Name.Set {
			k.Name = b.Name.V
		}
		if b.ExpiresAt.Set {
			k.ExpiresAt = b.ExpiresAt.V.Time
		}
		if b.Status.Set {
			k.Status = b.Status.V
		}
		applyMetaTags(b.Meta, b.Tags, &k.Meta, &k.Tags)
		return nil
	}, c.actor)
	if err != nil {
		return err
	}
	writeOne(w, http.StatusOK, "Key", out.Version, keyView(&out, h.now()))
	return nil
}

// deleteKey revokes a key for good; it stays listed as REVOKED. 200 with the key.
func (h *Handler) deleteKey(w http.ResponseWriter, r *http.Request, c *caller) error {
	u, cur, err := h.loadMutableKey(r, c, true)
	if err != nil {
		return err
	}
	version, err := ifMatchVersion(r, cur.Version)
	if err != nil {
		return err
	}
	out, err := h.store.RevokeKey(r.Context(), u.ID, cur.ID, version, c.actor)
	if err != nil {
		return err
	}
	writeOne(w, http.StatusOK, "Key", out.Version, keyView(&out, h.now()))
	return nil
}

// replaceKey issues a new key (same user, tenant and name) and disables the
// old one at once, or after gracePeriod ("24h" or seconds, at most 30 days).
// The body is optional. 201 with the new key (shown once) and the old one
// under "previous".
func (h *Handler) replaceKey(w http.ResponseWriter, r *http.Request, c *caller) error {
	u, cur, err := h.loadMutableKey(r, c, false)
	if err != nil {
		return err
	}
	if err := h.allowCredential(&u, keys.CredAccessKey); err != nil {
		return err
	}
	var b replaceBody
	if r.ContentLength != 0 || r.Header.Get("Content-Type") != "" {
		if err := decodeJSON(w, r, h.maxBody, &b); err != nil {
			return err
		}
	}
	now := h.now()
	var grace time.Duration
	if b.GracePeriod != nil {
		grace = time.Duration(*b.GracePeriod)
		if grace < 0 || grace > maxGrace {
			return errField("gracePeriod", "must be from 0 to 720h")
		}
	}
	expires := cur.ExpiresAt
	if b.ExpiresAt != nil {
		expires = b.ExpiresAt.Time
	}
	if !expires.After(now) {
		return errField("expiresAt", "must be in the future (the old key has expired: give a new expiresAt)")
	}
	if cur.Status == keys.KeyRevoked {
		return errConflict("a revoked key cannot be replaced")
	}
	plaintext, next := keys.NewAccessKey(h.hasher, u.ID, cur.TenantID, cur.Name, expires)
	newKey, oldKey, err := h.store.ReplaceKey(r.Context(), u.ID, cur.ID, next, grace, c.actor)
	if err != nil {
		return err
	}
	view := keyView(&newKey, now)
	view.Key = plaintext
	prev := keyView(&oldKey, now)
	view.Previous = &prev
	w.Header().Set("Location", "/v1/users/"+u.ID+"/keys/"+newKey.ID)
	writeOne(w, http.StatusCreated, "Key", newKey.Version, view)
	return nil
}
