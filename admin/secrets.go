package admin

import (
	"errors"
	"net/http"

	"github.com/keygate/keygate/keys"
)

// secretBody is the body of POST and PATCH /v1/users/{id}/secrets[/{secretId}].
type secretBody struct {
	Name    opt[string]            `json:"name"`
	Status  opt[keys.SecretStatus] `json:"status"`
	Version *int64                 `json:"version"`
}

// secretUser loads a user whose secrets the caller may manage. Secret
// routes need the master key (503 without it) and the right to change the
// user (the secrets are not bound to a tenant).
func (h *Handler) secretUser(r *http.Request, c *caller) (keys.User, error) {
	if h.sealer == nil {
		return keys.User{}, errNoSealer
	}
	return h.manageableUser(r, c, r.PathValue("id"))
}

// loadSecret returns one secret of the user, or 404.
func (h *Handler) loadSecret(r *http.Request, u *keys.User) (keys.Secret, error) {
	id := r.PathValue("secretId")
	if keys.ValidateID(id) != nil {
		return keys.Secret{}, errNotFound("secret")
	}
	s, err := h.store.GetSecret(r.Context(), u.ID, id)
	if errors.Is(err, keys.ErrNotFound) {
		return s, errNotFound("secret")
	}
	return s, err
}

func (h *Handler) listSecrets(w http.ResponseWriter, r *http.Request, c *caller) error {
	lo, err := parseList(r.URL.Query())
	if err != nil {
		return err
	}
	u, err := h.secretUser(r, c)
	if err != nil {
		return err
	}
	all, err := h.store.ListSecrets(r.Context(), u.ID)
	if err != nil {
		return err
	}
	views := make([]SecretView, len(all))
	for i := range all {
		views[i] = secretView(&all[i])
	}
	total := len(views)
	start := min((lo.Page-1)*lo.Size, total)
	end := min(start+lo.Size, total)
	writeList(w, "Secret", views[start:end], total, lo)
	return nil
}

// createSecret issues a signing secret: 32 random bytes, base64, stored
// sealed under the master key, returned in this response only. A third
// live secret is refused with 409. The body ({"name"}) is optional. A
// secret signs in every tenant of its user, so the caller must administer
// all of them (see foreignTenant).
func (h *Handler) createSecret(w http.ResponseWriter, r *http.Request, c *caller) error {
	u, err := h.secretUser(r, c)
	if err != nil {
		return err
	}
	if err := h.allowCredential(&u, keys.CredSignature); err != nil {
		return err
	}
	if foreign, err := h.foreignTenant(r.Context(), c, &u); err != nil {
		return err
	} else if foreign != "" {
		return errForeignTenant(foreign, "creating a signing secret")
	}
	var b secretBody
	if r.ContentLength != 0 || r.Header.Get("Content-Type") != "" {
		if err := decodeJSON(w, r, h.maxBody, &b); err != nil {
			return err
		}
	}
	v := &keys.ValidationError{}
	if b.Name.Set && !b.Name.Null {
		checkName(v, "name", b.Name.V)
	}
	if b.Status.Set {
		v.Add("status", "cannot be set when creating; a new secret is ACTIVE")
	}
	if b.Version != nil {
		v.Add("version", "is not allowed when creating")
	}
	if err := v.Err(); err != nil {
		return err
	}
	id := keys.NewID()
	name := b.Name.V
	if name == "" {
		name = "secret-" + id[:6]
	}
	value := keys.NewSigningSecret()
	s := keys.Secret{
		ID: id, UserID: u.ID, Name: name, Status: keys.SecretActive,
		Sealed: h.sealer.Seal([]byte(value), keys.SecretAAD(u.ID, id)),
	}
	out, err := h.store.CreateSecret(r.Context(), s, c.actor)
	if err != nil {
		return err
	}
	view := secretView(&out)
	view.Secret = value
	w.Header().Set("Location", "/v1/users/"+u.ID+"/secrets/"+out.ID)
	writeOne(w, http.StatusCreated, "Secret", out.Version, view)
	return nil
}

// patchSecret renames a secret or changes its status; reactivating one
// that would make a third live secret is 409, and reactivating needs the
// rights creating does.
func (h *Handler) patchSecret(w http.ResponseWriter, r *http.Request, c *caller) error {
	u, err := h.secretUser(r, c)
	if err != nil {
		return err
	}
	cur, err := h.loadSecret(r, &u)
	if err != nil {
		return err
	}
	var b secretBody
	pre, err := h.decodeUpdate(w, r, &b, &b.Version)
	if err != nil {
		return err
	}
	v := &keys.ValidationError{}
	checkNewName(v, "name", b.Name)
	if b.Status.Set && b.Status.V != keys.SecretActive && b.Status.V != keys.SecretInactive {
		v.Add("status", "must be ACTIVE or INACTIVE")
	}
	if err := v.Err(); err != nil {
		return err
	}
	// Reactivating a secret makes it sign again, in every tenant of the
	// user; the store call checks again, on the version it changes.
	var foreign string
	if b.Status.Set && b.Status.V == keys.SecretActive {
		if foreign, err = h.foreignTenant(r.Context(), c, &u); err != nil {
			return err
		}
	}
	if foreign != "" && cur.Status != keys.SecretActive {
		return errForeignTenant(foreign, "reactivating a signing secret")
	}
	version, err := pre.expect(cur.Version)
	if err != nil {
		return err
	}
	out, err := h.store.UpdateSecret(r.Context(), u.ID, cur.ID, version, func(s *keys.Secret) error {
		if b.Name.Set {
			s.Name = b.Name.V
		}
		if b.Status.Set {
			if foreign != "" && s.Status != keys.SecretActive {
				return errForeignTenant(foreign, "reactivating a signing secret")
			}
			s.Status = b.Status.V
		}
		return nil
	}, c.actor)
	if err != nil {
		return err
	}
	writeOne(w, http.StatusOK, "Secret", out.Version, secretView(&out))
	return nil
}

// deleteSecret removes a secret for good: 204.
func (h *Handler) deleteSecret(w http.ResponseWriter, r *http.Request, c *caller) error {
	u, err := h.secretUser(r, c)
	if err != nil {
		return err
	}
	cur, err := h.loadSecret(r, &u)
	if err != nil {
		return err
	}
	version, err := ifMatchVersion(r, cur.Version)
	if err != nil {
		return err
	}
	if err := h.store.DeleteSecret(r.Context(), u.ID, cur.ID, version, c.actor); err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
	return nil
}
