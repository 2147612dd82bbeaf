package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/keys"
)

// Limits on list-valued user fields.
const (
	maxRoles   = 50
	maxACEs    = 200
	maxRoleLen = 64
)

// userBody is the body of POST /v1/users and PATCH /v1/users/{id} (JSON
// merge patch: an absent member keeps the value, null clears it).
type userBody struct {
	ID                    opt[string]          `json:"id"`
	Name                  opt[string]          `json:"name"`
	Description           opt[string]          `json:"description"`
	Email                 opt[string]          `json:"email"`
	Type                  opt[keys.UserType]   `json:"type"`
	Role                  opt[keys.Role]       `json:"role"`
	CustomerRoles         opt[[]string]        `json:"customerRoles"`
	AccessControlEntities opt[[]string]        `json:"accessControlEntities"`
	PrimaryTenant         opt[string]          `json:"primaryTenant"`
	Scope                 opt[string]          `json:"scope"`
	RequestLimit          opt[int64]           `json:"requestLimit"`
	PlannedPurgeDate      opt[timestamp]       `json:"plannedPurgeDate"`
	Status                opt[keys.UserStatus] `json:"status"`
	Superadmin            opt[bool]            `json:"superadmin"`
	Notifications         opt[[]string]        `json:"notifications"`
	Meta                  opt[json.RawMessage] `json:"meta"`
	Tags                  opt[[]string]        `json:"tags"`
	Version               *int64               `json:"version"`
	// Key, on POST only, also issues the user's first access key (seed 000:
	// a technical user comes with its API token).
	Key *newUserKey `json:"key"`
}

// newUserKey is the "key" member of POST /v1/users.
type newUserKey struct {
	Name      *string    `json:"name"`
	ExpiresAt *timestamp `json:"expiresAt"`
}

// UserWithKey is the data of POST /v1/users when the request asked for a
// key: the user, and its first access key with the full key, shown once.
type UserWithKey struct {
	keys.User
	Key *KeyView `json:"key,omitempty"`
}

// apply merges b into u.
func (b *userBody) apply(u *keys.User) {
	set := func(o opt[string], dst *string) {
		if o.Set {
			*dst = o.V
		}
	}
	set(b.Name, &u.Name)
	set(b.Description, &u.Description)
	set(b.Email, &u.Email)
	set(b.Scope, &u.Scope)
	set(b.PrimaryTenant, &u.PrimaryTenant)
	if b.Type.Set {
		u.Type = b.Type.V
	}
	if b.Role.Set {
		u.Role = b.Role.V
	}
	if b.CustomerRoles.Set {
		u.CustomerRoles = slices.Clone(b.CustomerRoles.V)
	}
	if b.AccessControlEntities.Set {
		u.AccessControlEntities = slices.Clone(b.AccessControlEntities.V)
	}
	if b.RequestLimit.Set {
		u.RequestLimit = b.RequestLimit.V
	}
	if b.PlannedPurgeDate.Set {
		if b.PlannedPurgeDate.Null {
			u.PlannedPurgeDate = nil
		} else {
			t := b.PlannedPurgeDate.V.Time
			u.PlannedPurgeDate = &t
		}
	}
	if b.Status.Set {
		u.Status = b.Status.V
	}
	if b.Superadmin.Set {
		u.Superadmin = b.Superadmin.V
	}
	if b.Notifications.Set {
		u.Notifications = slices.Clone(b.Notifications.V)
	}
	applyMetaTags(b.Meta, b.Tags, &u.Meta, &u.Tags)
}

// validate checks the body's members; patch says whether it is a PATCH.
func (b *userBody) validate(patch bool) *keys.ValidationError {
	v := &keys.ValidationError{}
	notNull := func(field string, o interface{ isNull() bool }) {
		if o.isNull() {
			v.Add(field, "must not be null")
		}
	}
	notNull("name", b.Name)
	notNull("type", b.Type)
	notNull("role", b.Role)
	notNull("status", b.Status)
	notNull("primaryTenant", b.PrimaryTenant)
	if b.ID.Set {
		if patch {
			v.Add("id", "cannot be changed")
		} else if err := keys.ValidateID(b.ID.V); err != nil {
			v.Add("id", err.Error())
		}
	}
	if b.Name.Set && !b.Name.Null {
		checkName(v, "name", b.Name.V)
	} else if !patch && !b.Name.Set {
		v.Add("name", "is required")
	}
	checkText(v, "description", b.Description.V, 2000)
	if e := b.Email.V; e != "" {
		if len(e) > 254 || strings.Count(e, "@") != 1 || strings.HasPrefix(e, "@") || strings.HasSuffix(e, "@") ||
			strings.ContainsAny(e, " \t\r\n<>,;\"") {
			v.Add("email", "must be an email address")
		}
	}
	checkText(v, "scope", b.Scope.V, 200)
	checkEventTypes(v, "notifications", b.Notifications.V)
	if b.Type.Set && !b.Type.Null && !slices.Contains([]keys.UserType{keys.UserTechnical, keys.UserService, keys.UserApplication}, b.Type.V) {
		v.Add("type", "must be TECHNICAL, SERVICE or APPLICATION")
	}
	if b.Role.Set && !b.Role.Null && !validRole(b.Role.V) {
		v.Add("role", "must be ADMIN, MEMBER or VIEWER")
	}
	checkList(v, "customerRoles", b.CustomerRoles.V, maxRoles, maxRoleLen, true)
	checkList(v, "accessControlEntities", b.AccessControlEntities.V, maxACEs, 200, false)
	if b.RequestLimit.V < 0 || b.RequestLimit.V > 1_000_000_000 {
		v.Add("requestLimit", "must be from 0 to 1000000000")
	}
	if b.Status.Set && !b.Status.Null {
		// CREATE (seed 004): created but not set up yet; it authenticates
		// nothing until PATCHed ACTIVE.
		ok := []keys.UserStatus{keys.UserActive, keys.UserInactive, keys.UserCreate}
		if patch {
			ok = append(ok, keys.UserDeleting, keys.UserDeleted)
		}
		if !slices.Contains(ok, b.Status.V) {
			if patch {
				v.Add("status", "must be ACTIVE, INACTIVE or DELETING")
			} else {
				v.Add("status", "must be CREATE, ACTIVE or INACTIVE")
			}
		}
	}
	if b.PrimaryTenant.Set && !b.PrimaryTenant.Null && keys.ValidateID(b.PrimaryTenant.V) != nil {
		v.Add("primaryTenant", "is not a valid tenant id")
	}
	if !patch && b.Version != nil {
		v.Add("version", "is not allowed when creating")
	}
	checkMetaTags(v, b.Meta, b.Tags)
	if b.Key != nil && patch {
		v.Add("key", "is allowed only when creating; use POST /v1/users/{id}/keys")
	}
	return v
}

// validate checks the "key" member of POST /v1/users at now.
func (k *newUserKey) validate(v *keys.ValidationError, now time.Time) {
	if k.Name == nil {
		v.Add("key.name", "is required")
	} else {
		checkName(v, "key.name", *k.Name)
	}
	switch {
	case k.ExpiresAt == nil:
		v.Add("key.expiresAt", "is required")
	case !k.ExpiresAt.After(now):
		v.Add("key.expiresAt", "must be in the future")
	}
}

func (o opt[T]) isNull() bool { return o.Set && o.Null }

func validRole(r keys.Role) bool {
	return r == keys.RoleAdmin || r == keys.RoleMember || r == keys.RoleViewer
}

// checkList validates a list of short strings.
func checkList(v *keys.ValidationError, field string, list []string, maxItems, maxLen int, roleKeys bool) {
	if len(list) > maxItems {
		v.Add(field, fmt.Sprintf("must have at most %d entries", maxItems))
		return
	}
	seen := map[string]bool{}
	for _, s := range list {
		switch {
		case s == "" || len(s) > maxLen:
			v.Add(field, fmt.Sprintf("entries must be 1 to %d bytes", maxLen))
			return
		case roleKeys && keys.ValidateID(s) != nil:
			v.Add(field, "entries may contain only letters, digits and - _ . : @")
			return
		case !roleKeys && strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
			v.Add(field, "entries must not contain control characters")
			return
		case seen[s]:
			v.Add(field, "entries must be unique")
			return
		}
		seen[s] = true
	}
}

// userVisible reports whether the caller may see u: a superadmin sees every
// user; a tenant admin sees users whose primary tenant it administers and
// users holding a permission (in any state) there.
func (h *Handler) userVisible(ctx context.Context, c *caller, u *keys.User) (bool, error) {
	if c.superadmin || slices.Contains(c.tenants, u.PrimaryTenant) {
		return true, nil
	}
	for _, t := range c.tenants {
		_, err := h.store.GetPermission(ctx, u.ID, t)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, keys.ErrNotFound) {
			return false, err
		}
	}
	return false, nil
}

// canManage reports whether the caller may change u and its keys, secrets
// and roles: a superadmin always; a tenant admin when it administers u's
// primary tenant and u is no superadmin.
func canManage(c *caller, u *keys.User) bool {
	return c.superadmin || (slices.Contains(c.tenants, u.PrimaryTenant) && !u.Superadmin)
}

// foreignTenant returns a tenant in which u holds an ACTIVE permission and
// which the caller does not administer ("" when there is none; always for
// a superadmin). A signing secret works in every tenant of its user, and
// the user's type decides which of its credentials work at all, so
// creating or reactivating a secret and changing the type reach past u's
// primary tenant: an administrator of the primary tenant alone must not
// make them for a user that also acts elsewhere (see errForeignTenant).
// Keys need no such check: each is valid in one tenant, whose
// administrator creates and sees it. A permission granted later is that
// tenant's administrator's consent to the user as it then is.
func (h *Handler) foreignTenant(ctx context.Context, c *caller, u *keys.User) (string, error) {
	if c.superadmin {
		return "", nil
	}
	perms, err := h.store.UserPermissions(ctx, u.ID)
	if err != nil {
		return "", err
	}
	for _, p := range perms {
		if p.Status == keys.PermissionActive && !c.adminOf(p.TenantID) {
			return p.TenantID, nil
		}
	}
	return "", nil
}

// errForeignTenant is the 403 for a change (what) that would reach into
// tenant, which the caller does not administer.
func errForeignTenant(tenant, what string) error {
	return errForbidden(fmt.Sprintf("the user also holds an ACTIVE permission in tenant %s, which the caller does not administer: "+
		"%s needs an administrator of every tenant the user acts in, or a superadmin", tenant, what))
}

// visibleUser loads a user the caller may see; 404 otherwise (also for
// ids the caller may not see, so guessing ids reveals nothing).
func (h *Handler) visibleUser(r *http.Request, c *caller, id string) (keys.User, error) {
	if keys.ValidateID(id) != nil {
		return keys.User{}, errNotFound("user")
	}
	u, err := h.store.GetUser(r.Context(), id)
	if errors.Is(err, keys.ErrNotFound) {
		return u, errNotFound("user")
	}
	if err != nil {
		return u, err
	}
	ok, err := h.userVisible(r.Context(), c, &u)
	if err != nil {
		return u, err
	}
	if !ok {
		return u, errNotFound("user")
	}
	if c.superadmin || slices.Contains(c.tenants, u.PrimaryTenant) {
		setTenant(r, u.PrimaryTenant)
	} else if len(c.tenants) > 0 {
		setTenant(r, c.tenants[0])
	}
	return u, nil
}

// UserProfile is what a MEMBER or VIEWER reads about the other users of its
// tenant (seed 003: a default user views profiles): no keys, secrets,
// history or personal data beyond the name.
type UserProfile struct {
	ID   string        `json:"id"`
	Name string        `json:"name"`
	Type keys.UserType `json:"type"`
	// Role is the role of the user's permission in the caller's tenant
	// (its record's role when it holds none there).
	Role   keys.Role       `json:"role"`
	Status keys.UserStatus `json:"status"`
}

// readableUser loads a user the caller may read: in full when the caller
// may see it as an administrator or it is the caller itself; as a profile
// (full false) when the caller holds an ACTIVE permission in a tenant the
// user is in (its primary tenant, or a permission there). 404 otherwise.
func (h *Handler) readableUser(r *http.Request, c *caller, id string) (u keys.User, full bool, err error) {
	u, err = h.visibleUser(r, c, id)
	if err == nil {
		return u, true, nil
	}
	var ae *apiError
	if !errors.As(err, &ae) || ae.status != http.StatusNotFound {
		return u, false, err
	}
	if c.self(id) {
		u, err = h.store.GetUser(r.Context(), id)
		setTenant(r, c.keyTenant)
		return u, err == nil, err
	}
	if !c.member() {
		return keys.User{}, false, errNotFound("user")
	}
	u, err = h.store.GetUser(r.Context(), id)
	if errors.Is(err, keys.ErrNotFound) {
		return u, false, errNotFound("user")
	}
	if err != nil {
		return u, false, err
	}
	if u.PrimaryTenant != c.keyTenant {
		if _, err := h.store.GetPermission(r.Context(), u.ID, c.keyTenant); errors.Is(err, keys.ErrNotFound) {
			return keys.User{}, false, errNotFound("user")
		} else if err != nil {
			return u, false, err
		}
	}
	setTenant(r, c.keyTenant)
	return u, false, nil
}

// profileOf is u's profile as seen from tenant.
func (h *Handler) profileOf(r *http.Request, u *keys.User, tenant string) (UserProfile, error) {
	p := UserProfile{ID: u.ID, Name: u.Name, Type: u.Type, Role: u.Role, Status: u.Status}
	if u.PrimaryTenant != tenant {
		perm, err := h.store.GetPermission(r.Context(), u.ID, tenant)
		if err == nil {
			p.Role = perm.Role
		} else if !errors.Is(err, keys.ErrNotFound) {
			return p, err
		}
	}
	return p, nil
}

// ownUser loads a user whose records (keys, permissions, roles) the caller
// may read: one it may see as an administrator, or itself. 404 otherwise.
func (h *Handler) ownUser(r *http.Request, c *caller, id string) (keys.User, error) {
	u, full, err := h.readableUser(r, c, id)
	if err == nil && !full {
		return u, errNotFound("user")
	}
	return u, err
}

// manageableUser loads a user the caller may change: 404 when it may not
// see it, 403 when it sees it but may not change it.
func (h *Handler) manageableUser(r *http.Request, c *caller, id string) (keys.User, error) {
	u, err := h.visibleUser(r, c, id)
	if err != nil {
		return u, err
	}
	if !canManage(c, &u) {
		return u, errForbidden("only an administrator of the user's primary tenant may change it")
	}
	return u, nil
}

// recheck guards a store mutation against the user having moved out of the
// caller's reach since it was loaded.
func recheck(c *caller, u *keys.User) error {
	if !canManage(c, u) {
		return errNotFound("user")
	}
	return nil
}

func (h *Handler) listUsers(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	lo, err := parseList(q, "id", "name", "createdAt")
	if err != nil {
		return err
	}
	uq := keys.UserQuery{ListOptions: lo}
	if uq.Q, err = queryString(q, "q", 200); err != nil {
		return err
	}
	st, err := queryEnum(q, "status", "CREATE", "ACTIVE", "INACTIVE", "DELETING", "DELETED")
	if err != nil {
		return err
	}
	typ, err := queryEnum(q, "type", "TECHNICAL", "SERVICE", "APPLICATION")
	if err != nil {
		return err
	}
	role, err := queryEnum(q, "role", "ADMIN", "MEMBER", "VIEWER")
	if err != nil {
		return err
	}
	uq.Status, uq.Type, uq.Role = keys.UserStatus(st), keys.UserType(typ), keys.Role(role)
	uq.Tenant = q.Get("tenant")
	if uq.Tenant != "" && keys.ValidateID(uq.Tenant) != nil {
		return errField("tenant", "is not a valid tenant id")
	}
	profiles := !c.superadmin && len(c.tenants) == 0
	switch {
	case c.superadmin:
	case profiles:
		// A MEMBER or VIEWER lists the profiles of its tenant's users;
		// q matches their ids and names only.
		if uq.Tenant != "" && uq.Tenant != c.keyTenant {
			return errNotFound("tenant")
		}
		uq.Tenant, uq.QNameOnly = c.keyTenant, true
	case uq.Tenant == "" && len(c.tenants) == 1:
		uq.Tenant = c.tenants[0]
	case uq.Tenant == "":
		return errField("tenant", "is required")
	case !c.adminOf(uq.Tenant):
		return errNotFound("tenant")
	}
	setTenant(r, uq.Tenant)
	page, err := h.store.ListUsers(r.Context(), uq)
	if err != nil {
		return err
	}
	if profiles {
		out := make([]UserProfile, len(page.Items))
		for i := range page.Items {
			if out[i], err = h.profileOf(r, &page.Items[i], uq.Tenant); err != nil {
				return err
			}
		}
		writeList(w, "User", out, page.Total, lo)
		return nil
	}
	for i := range page.Items {
		u := &page.Items[i]
		if uq.Tenant != "" && u.PrimaryTenant != uq.Tenant {
			// Listed in a tenant: the roles that count there are those of
			// the user's permission in it.
			p, err := h.store.GetPermission(r.Context(), u.ID, uq.Tenant)
			if err == nil {
				u.Role, u.CustomerRoles, u.AccessControlEntities = p.Role, p.CustomerRoles, p.AccessControlEntities
			} else if !errors.Is(err, keys.ErrNotFound) {
				return err
			}
		}
		page.Items[i] = userView(*u)
	}
	writeList(w, "User", page.Items, page.Total, lo)
	return nil
}

// getUser answers the user in full to its administrators and to itself,
// and its profile to the other members of its tenants.
func (h *Handler) getUser(w http.ResponseWriter, r *http.Request, c *caller) error {
	u, full, err := h.readableUser(r, c, r.PathValue("id"))
	if err != nil {
		return err
	}
	if !full {
		p, err := h.profileOf(r, &u, c.keyTenant)
		if err != nil {
			return err
		}
		writeOne(w, http.StatusOK, "User", u.Version, p)
		return nil
	}
	writeOne(w, http.StatusOK, "User", u.Version, userView(u))
	return nil
}

// createUser creates a user and its ACTIVE permission, with the user's
// role, in its primary tenant (so its keys work there at once).
func (h *Handler) createUser(w http.ResponseWriter, r *http.Request, c *caller) error {
	var b userBody
	if err := decodeJSON(w, r, h.maxBody, &b); err != nil {
		return err
	}
	v := b.validate(false)
	if b.Key != nil {
		b.Key.validate(v, h.now())
	}
	if v.Err() != nil {
		return v
	}
	u := keys.User{Type: keys.UserTechnical, Role: keys.RoleMember, Status: keys.UserActive}
	b.apply(&u)
	u.ID = b.ID.V
	if u.PrimaryTenant == "" {
		// Default: the caller's own tenant, the tenant of its key (a
		// superadmin's too). Trusted local callers have none.
		if c.keyTenant == "" || !c.adminOf(c.keyTenant) {
			return errField("primaryTenant", "is required")
		}
		u.PrimaryTenant = c.keyTenant
	}
	if !c.adminOf(u.PrimaryTenant) {
		return errForbidden("the caller is not an administrator of the primary tenant")
	}
	if u.Superadmin && !c.superadmin {
		return errForbidden("only a superadmin may create a superadmin")
	}
	setTenant(r, u.PrimaryTenant)
	ctx := r.Context()
	t, err := h.store.GetTenant(ctx, u.PrimaryTenant)
	if errors.Is(err, keys.ErrNotFound) {
		return errField("primaryTenant", "tenant does not exist")
	} else if err != nil {
		return err
	}
	if t.Status != keys.TenantActive {
		return errConflict("tenant " + t.ID + " is archived")
	}
	if b.Key != nil {
		if err := h.allowCredential(&u, keys.CredAccessKey); err != nil {
			return err
		}
	}
	out, _, err := h.createUserWithPermission(ctx, u, c.actor)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/users/"+out.ID)
	if b.Key == nil {
		writeOne(w, http.StatusCreated, "User", out.Version, userView(out))
		return nil
	}
	// One step (seed 000): the user and its API token. The store has no
	// transaction spanning both, so a failed key removes the user again.
	plaintext, k := keys.NewAccessKey(h.hasher, out.ID, out.PrimaryTenant, *b.Key.Name, b.Key.ExpiresAt.Time)
	key, err := h.store.CreateKey(ctx, k, c.actor)
	if err != nil {
		h.rollbackUser(ctx, out.ID)
		return fmt.Errorf("creating the key of new user %s: %w", out.ID, err)
	}
	view := keyView(&key, h.now())
	view.Key = plaintext
	writeOne(w, http.StatusCreated, "User", out.Version, UserWithKey{User: userView(out), Key: &view})
	return nil
}

// createUserWithPermission creates u and its ACTIVE permission in its
// primary tenant. The store has no transaction spanning both, so a failed
// permission write removes the user again.
func (h *Handler) createUserWithPermission(ctx context.Context, u keys.User, actor string) (keys.User, keys.Permission, error) {
	out, err := h.store.CreateUser(ctx, u, actor)
	if err != nil {
		return out, keys.Permission{}, err
	}
	perm, _, err := h.store.PutPermission(ctx, keys.Permission{
		UserID: out.ID, TenantID: out.PrimaryTenant, Role: out.Role, Status: keys.PermissionActive,
		CustomerRoles: out.CustomerRoles, AccessControlEntities: out.AccessControlEntities,
	}, actor)
	if err != nil {
		h.rollbackUser(ctx, out.ID)
		return keys.User{}, perm, fmt.Errorf("granting the permission of new user %s: %w", out.ID, err)
	}
	return out, perm, nil
}

// rollbackUser removes a half-created user.
func (h *Handler) rollbackUser(ctx context.Context, id string) {
	ctx = context.WithoutCancel(ctx)
	if _, err := h.store.DeleteUser(ctx, id, 0, "system"); err != nil {
		h.log.Error("admin: rolling back a new user failed", "user", id, "error", err)
		return
	}
	if err := h.store.PurgeUser(ctx, id); err != nil {
		h.log.Error("admin: purging a rolled back user failed", "user", id, "error", err)
	}
}

func (h *Handler) patchUser(w http.ResponseWriter, r *http.Request, c *caller) error {
	cur, err := h.manageableUser(r, c, r.PathValue("id"))
	if err != nil {
		return err
	}
	var b userBody
	pre, err := h.decodeUpdate(w, r, &b, &b.Version)
	if err != nil {
		return err
	}
	if v := b.validate(true); v.Err() != nil {
		return v
	}
	if b.Superadmin.Set && b.Superadmin.V && !c.superadmin {
		return errForbidden("only a superadmin may make a user superadmin")
	}
	if b.PrimaryTenant.Set && b.PrimaryTenant.V != cur.PrimaryTenant {
		if !c.adminOf(b.PrimaryTenant.V) {
			return errForbidden("the caller is not an administrator of the new primary tenant")
		}
		if _, err := h.store.GetTenant(r.Context(), b.PrimaryTenant.V); errors.Is(err, keys.ErrNotFound) {
			return errField("primaryTenant", "tenant does not exist")
		} else if err != nil {
			return err
		}
	}
	if b.Status.Set && b.Status.V == keys.UserDeleted && cur.Status != keys.UserDeleted {
		return errConflict("a user becomes DELETED only through DELETE /v1/users/{id}")
	}
	// The type decides which credentials work in every tenant of the user;
	// the store call checks again, on the version it changes.
	var foreign string
	if b.Type.Set {
		if foreign, err = h.foreignTenant(r.Context(), c, &cur); err != nil {
			return err
		}
	}
	if foreign != "" && b.Type.V != cur.Type {
		return errForeignTenant(foreign, "changing its type")
	}
	version, err := pre.expect(cur.Version)
	if err != nil {
		return err
	}
	if b.Status.Set && b.Status.V == keys.UserDeleting && cur.Status != keys.UserDeleting && c.self(cur.ID) {
		return errConflict("a caller cannot delete its own user")
	}
	out, err := h.store.UpdateUser(r.Context(), cur.ID, version, func(u *keys.User) error {
		if err := recheck(c, u); err != nil {
			return err
		}
		if foreign != "" && b.Type.V != u.Type {
			return errForeignTenant(foreign, "changing its type")
		}
		b.apply(u)
		return nil
	}, c.actor)
	if err != nil {
		return err
	}
	if out.Status == keys.UserDeleting && cur.Status != keys.UserDeleting {
		// DELETING leads on to DELETED by itself (seed 004), as with DELETE.
		done, err := h.store.CompleteDeletion(r.Context(), out.ID, c.actor)
		if err != nil {
			h.log.Warn("admin: the second step of a deletion failed; the sweep will finish it", "user", out.ID, "error", err)
			writeOne(w, http.StatusAccepted, "User", out.Version, userView(out))
			return nil
		}
		out = done
	}
	writeOne(w, http.StatusOK, "User", out.Version, userView(out))
	return nil
}

// deleteUser deletes the user in the store's two steps (seed 004): it
// becomes DELETING (keys revoked, secrets deactivated, permissions
// archived, sessions dropped) and then DELETED (usage counts taken off
// it). 200 with the DELETED user; 202 with the DELETING one when the
// second step could not run now (CompleteDeletions finishes it).
func (h *Handler) deleteUser(w http.ResponseWriter, r *http.Request, c *caller) error {
	cur, err := h.manageableUser(r, c, r.PathValue("id"))
	if err != nil {
		return err
	}
	version, err := ifMatchVersion(r, cur.Version)
	if err != nil {
		return err
	}
	if c.user != nil && c.user.ID == cur.ID {
		return errConflict("a caller cannot delete its own user")
	}
	out, err := h.store.DeleteUser(r.Context(), cur.ID, version, c.actor)
	if err != nil && out.Status == keys.UserDeleting {
		h.log.Warn("admin: the second step of a deletion failed; the sweep will finish it", "user", cur.ID, "error", err)
		writeOne(w, http.StatusAccepted, "User", out.Version, userView(out))
		return nil
	}
	if err != nil {
		return err
	}
	writeOne(w, http.StatusOK, "User", out.Version, userView(out))
	return nil
}

// Roles (SAP Open Connectors). The roles API acts on the user's permission
// in one workspace: ?workspace=, by default the acting tenant admin's
// tenant, or for a superadmin the user's only permission's tenant.

// roleTarget loads the user, the workspace the call acts in and the user's
// permission there. The caller must see the user and administer the
// workspace, or, to read, be the user itself (404 otherwise); write says
// the call changes the roles. Without ?workspace= the workspace is the
// tenant admin's tenant, the tenant of the caller's own key, or for a
// superadmin the user's primary tenant (or its only permission's).
func (h *Handler) roleTarget(r *http.Request, c *caller, write bool) (keys.User, keys.Permission, error) {
	var (
		u   keys.User
		err error
	)
	if write {
		u, err = h.visibleUser(r, c, r.PathValue("id"))
	} else {
		u, err = h.ownUser(r, c, r.PathValue("id"))
	}
	if err != nil {
		return u, keys.Permission{}, err
	}
	ws, err := h.roleWorkspace(r, c, &u, write)
	if err != nil {
		return u, keys.Permission{}, err
	}
	if ws == "" {
		return u, keys.Permission{}, errField("workspace", "is required: the user has permissions in several workspaces")
	}
	if !c.adminOf(ws) && (write || !c.self(u.ID)) {
		return u, keys.Permission{}, errNotFound("workspace")
	}
	setTenant(r, ws)
	if write && u.Superadmin && !c.superadmin {
		return u, keys.Permission{}, errForbidden("only a superadmin may change a superadmin's roles")
	}
	p, err := h.store.GetPermission(r.Context(), u.ID, ws)
	if errors.Is(err, keys.ErrNotFound) {
		return u, p, errNotFound("permission")
	}
	return u, p, err
}

// roleWorkspace is the workspace of a roles call: ?workspace=, or the
// default of roleTarget ("" when there is none). A superadmin's change
// names the workspace when the user holds several permissions.
func (h *Handler) roleWorkspace(r *http.Request, c *caller, u *keys.User, write bool) (string, error) {
	ws, err := queryString(r.URL.Query(), "workspace", 64)
	if err != nil {
		return "", err
	}
	if ws != "" {
		if keys.ValidateID(ws) != nil {
			return "", errField("workspace", "is not a valid tenant id")
		}
		return ws, nil
	}
	switch {
	case !c.superadmin && len(c.tenants) == 1:
		return c.tenants[0], nil
	case !c.superadmin:
		return c.keyTenant, nil
	}
	perms, err := h.store.UserPermissions(r.Context(), u.ID)
	if err != nil {
		return "", err
	}
	for _, p := range perms {
		if p.TenantID == u.PrimaryTenant && (!write || len(perms) == 1) {
			return p.TenantID, nil
		}
	}
	if len(perms) == 1 {
		return perms[0].TenantID, nil
	}
	return "", nil
}

// getRoles answers the user's roles in every tenant it holds a permission
// in that the caller may see (superadmins and the user itself: all; a
// tenant admin: its tenant), one entry per tenant in "tenants", with the
// user's personal data (seed 003: all the roles and personal data of the
// user). The top-level role fields and the ETag are those of the
// permission in ?workspace= (see roleTarget), absent when the user holds
// none in the default workspace.
func (h *Handler) getRoles(w http.ResponseWriter, r *http.Request, c *caller) error {
	u, err := h.ownUser(r, c, r.PathValue("id"))
	if err != nil {
		return err
	}
	explicit := r.URL.Query().Get("workspace") != ""
	ws, err := h.roleWorkspace(r, c, &u, false)
	if err != nil {
		return err
	}
	if ws != "" && !c.adminOf(ws) && !c.self(u.ID) {
		if explicit {
			return errNotFound("workspace")
		}
		ws = ""
	}
	perms, err := h.store.UserPermissions(r.Context(), u.ID)
	if err != nil {
		return err
	}
	view := RolesView{UserID: u.ID, CustomerRoles: []string{}, Roles: []RoleEntry{}, Tenants: []TenantRoles{}}
	uv := userView(u)
	view.User = &uv
	var version int64
	found := false
	for i := range perms {
		p := &perms[i]
		if !c.adminOf(p.TenantID) && !c.self(u.ID) {
			continue
		}
		name := ""
		if t, err := h.store.GetTenant(r.Context(), p.TenantID); err == nil {
			name = t.Name
		} else if !errors.Is(err, keys.ErrNotFound) {
			return err
		}
		view.Tenants = append(view.Tenants, tenantRoles(p, name))
		if p.TenantID == ws {
			sel := rolesView(p)
			view.Workspace, view.Role, view.CustomerRoles, view.Roles, view.Version = sel.Workspace, sel.Role, sel.CustomerRoles, sel.Roles, sel.Version
			version, found = p.Version, true
		}
	}
	slices.SortFunc(view.Tenants, func(a, b TenantRoles) int { return strings.Compare(a.Workspace, b.Workspace) })
	if explicit && !found {
		return errNotFound("permission")
	}
	if ws != "" {
		setTenant(r, ws)
	}
	writeOne(w, http.StatusOK, "Roles", version, view)
	return nil
}

// getRole answers the permission's roles when roleKey is one of them (its
// standard role or a customer role), and 404 otherwise.
func (h *Handler) getRole(w http.ResponseWriter, r *http.Request, c *caller) error {
	key, standard, err := roleKey(r)
	if err != nil {
		return err
	}
	_, p, err := h.roleTarget(r, c, false)
	if err != nil {
		return err
	}
	if (standard && p.Role != keys.Role(key)) || (!standard && !slices.Contains(p.CustomerRoles, key)) {
		return errNotFound("role")
	}
	writeOne(w, http.StatusOK, "Roles", p.Version, rolesView(&p))
	return nil
}

// roleKey validates the {roleKey} path value.
func roleKey(r *http.Request) (string, bool, error) {
	k := r.PathValue("roleKey")
	if validRole(keys.Role(k)) {
		return k, true, nil
	}
	if len(k) > maxRoleLen || keys.ValidateID(k) != nil {
		return "", false, errBadRequest("roleKey may contain only letters, digits and - _ . : @ (at most 64)")
	}
	return k, false, nil
}

// putRole sets the permission's standard role (ADMIN, MEMBER, VIEWER) or
// adds a customer role. Idempotent; If-Match is honoured but not required.
func (h *Handler) putRole(w http.ResponseWriter, r *http.Request, c *caller) error {
	return h.changeRole(w, r, c, true)
}

// deleteRole removes a customer role, or sets the standard role back to the
// tenant's default (MEMBER) when roleKey is the permission's standard role.
func (h *Handler) deleteRole(w http.ResponseWriter, r *http.Request, c *caller) error {
	return h.changeRole(w, r, c, false)
}

// defaultRole is the role a permission falls back to when its standard
// role is removed.
const defaultRole = keys.RoleMember

func (h *Handler) changeRole(w http.ResponseWriter, r *http.Request, c *caller, add bool) error {
	key, standard, err := roleKey(r)
	if err != nil {
		return err
	}
	_, cur, err := h.roleTarget(r, c, true)
	if err != nil {
		return err
	}
	pre, err := parsePrecondition(r, nil, false)
	if err != nil {
		return err
	}
	version, err := pre.expect(cur.Version)
	if err != nil {
		return err
	}
	next := keys.Permission{UserID: cur.UserID, TenantID: cur.TenantID, Version: version}
	switch {
	case add && standard:
		next.Role = keys.Role(key)
	case !add && standard:
		if cur.Role != keys.Role(key) {
			return errNotFound("role")
		}
		next.Role = defaultRole
	case add:
		if len(cur.CustomerRoles) >= maxRoles && !slices.Contains(cur.CustomerRoles, key) {
			return errField("customerRoles", fmt.Sprintf("must have at most %d entries", maxRoles))
		}
		next.CustomerRoles = append(slices.Clone(cur.CustomerRoles), key)
		if slices.Contains(cur.CustomerRoles, key) {
			next.CustomerRoles = cur.CustomerRoles
		}
	default:
		if !slices.Contains(cur.CustomerRoles, key) {
			return errNotFound("customer role")
		}
		next.CustomerRoles = slices.DeleteFunc(slices.Clone(cur.CustomerRoles), func(s string) bool { return s == key })
	}
	out, _, err := h.store.PutPermission(r.Context(), next, c.actor)
	if err != nil {
		return err
	}
	writeOne(w, http.StatusOK, "Roles", out.Version, rolesView(&out))
	return nil
}
