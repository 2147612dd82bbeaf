package admin

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/keygate/keygate/keys"
)

// permissionBody is the body of POST /v1/permissions (seed 001). The fields
// the API itself returns in a PermissionView (links aside) are accepted so a
// fetched permission can be edited and sent back; the computed ones are
// ignored.
type permissionBody struct {
	ID                    *string                `json:"id"`
	User                  *userRef               `json:"user"`
	Workspace             *workspaceRef          `json:"workspace"`
	WorkspaceID           *string                `json:"workspaceId"`
	Role                  *keys.Role             `json:"role"`
	Status                *keys.PermissionStatus `json:"status"`
	CustomerRoles         []string               `json:"customerRoles"`
	AccessControlEntities []string               `json:"accessControlEntities"`
	Version               *int64                 `json:"version"`
	CreatedAt             json.RawMessage        `json:"createdAt"`
	UpdatedAt             json.RawMessage        `json:"updatedAt"`
	AcceptedAt            json.RawMessage        `json:"acceptedAt"`
	LastLogin             json.RawMessage        `json:"lastLogin"`
	InvitedByUser         json.RawMessage        `json:"invitedByUser"`
	ReviewedByUser        json.RawMessage        `json:"reviewedByUser"`
	Links                 json.RawMessage        `json:"links"`
	Active                json.RawMessage        `json:"active"`
	IgnoreBlacklist       json.RawMessage        `json:"ignoreBlacklist"`
	Count                 json.RawMessage        `json:"count"`
	Replayed              json.RawMessage        `json:"replayed"`
}

// userRef names the user of a permission; only id counts. The other
// members are those of MTM's user summary, accepted and ignored.
type userRef struct {
	ID            string          `json:"id"`
	UserName      json.RawMessage `json:"userName"`
	Email         json.RawMessage `json:"email"`
	Type          json.RawMessage `json:"type"`
	Role          json.RawMessage `json:"role"`
	Status        json.RawMessage `json:"status"`
	TechnicalUser json.RawMessage `json:"technicalUser"`
	ScimManaged   json.RawMessage `json:"scimManaged"`
	TransientUser json.RawMessage `json:"transientUser"`
	Account       json.RawMessage `json:"account"`
	Links         json.RawMessage `json:"links"`
}

// workspaceRef names the tenant of a permission; only id counts.
type workspaceRef struct {
	ID     string          `json:"id"`
	Name   json.RawMessage `json:"name"`
	Status json.RawMessage `json:"status"`
	Links  json.RawMessage `json:"links"`
}

// workspace returns a tenant the caller administers, or 404.
func (h *Handler) workspace(r *http.Request, c *caller, id string) (keys.Tenant, error) {
	if keys.ValidateID(id) != nil || !c.adminOf(id) {
		return keys.Tenant{}, errNotFound("workspace")
	}
	t, err := h.store.GetTenant(r.Context(), id)
	if errors.Is(err, keys.ErrNotFound) {
		return t, errNotFound("workspace")
	}
	setTenant(r, id)
	return t, err
}

func (h *Handler) listPermissions(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	lo, err := parseList(q, "id", "createdAt", "updatedAt", "status", "role", "lastLogin")
	if err != nil {
		return err
	}
	t, err := h.workspace(r, c, r.PathValue("id"))
	if err != nil {
		return err
	}
	pq := keys.PermissionQuery{ListOptions: lo, Tenant: t.ID}
	if pq.Q, err = queryString(q, "q", 200); err != nil {
		return err
	}
	if pq.Email, err = queryString(q, "email", 254); err != nil {
		return err
	}
	if pq.UserID, err = queryString(q, "user", 64); err != nil {
		return err
	}
	st, err := queryEnum(q, "status", "ACTIVE", "INVITED", "ARCHIVED")
	if err != nil {
		return err
	}
	pq.Status = keys.PermissionStatus(st)
	if s := q.Get("includeTechnicalUsers"); s != "" {
		inc, err := strconv.ParseBool(s)
		if err != nil {
			return errField("includeTechnicalUsers", "must be true or false")
		}
		pq.ExcludeTechnicalUsers = !inc
	}
	page, err := h.store.ListPermissions(r.Context(), pq)
	if err != nil {
		return err
	}
	views := make([]PermissionView, len(page.Items))
	for i := range page.Items {
		p := &page.Items[i]
		var up *keys.User
		if u, err := h.store.GetUser(r.Context(), p.UserID); err == nil {
			up = &u
		} else if !errors.Is(err, keys.ErrNotFound) {
			return err
		}
		views[i] = permissionView(p, up, &t)
	}
	writeList(w, "Permission", views, page.Total, lo)
	return nil
}

// getPermission answers one permission by id to an administrator of its
// workspace (404 otherwise).
func (h *Handler) getPermission(w http.ResponseWriter, r *http.Request, c *caller) error {
	id := r.PathValue("id")
	if keys.ValidateID(id) != nil {
		return errNotFound("permission")
	}
	ctx := r.Context()
	p, err := h.store.GetPermissionByID(ctx, id)
	if errors.Is(err, keys.ErrNotFound) || (err == nil && !c.adminOf(p.TenantID)) {
		return errNotFound("permission")
	}
	if err != nil {
		return err
	}
	setTenant(r, p.TenantID)
	view, err := h.permissionViewOf(r, &p)
	if err != nil {
		return err
	}
	writeOne(w, http.StatusOK, "Permission", p.Version, view)
	return nil
}

// permissionViewOf loads the user and tenant of p for its view.
func (h *Handler) permissionViewOf(r *http.Request, p *keys.Permission) (PermissionView, error) {
	var up *keys.User
	if u, err := h.store.GetUser(r.Context(), p.UserID); err == nil {
		up = &u
	} else if !errors.Is(err, keys.ErrNotFound) {
		return PermissionView{}, err
	}
	var tp *keys.Tenant
	if t, err := h.store.GetTenant(r.Context(), p.TenantID); err == nil {
		tp = &t
	} else if !errors.Is(err, keys.ErrNotFound) {
		return PermissionView{}, err
	}
	return permissionView(p, up, tp), nil
}

// userPermissions lists a user's permissions in every tenant the caller may
// see them in: a superadmin and the user itself all of them, a tenant
// admin those in its tenant.
func (h *Handler) userPermissions(w http.ResponseWriter, r *http.Request, c *caller) error {
	lo, err := parseList(r.URL.Query())
	if err != nil {
		return err
	}
	u, err := h.ownUser(r, c, r.PathValue("id"))
	if err != nil {
		return err
	}
	perms, err := h.store.UserPermissions(r.Context(), u.ID)
	if err != nil {
		return err
	}
	views := make([]PermissionView, 0, len(perms))
	for i := range perms {
		p := &perms[i]
		if !c.adminOf(p.TenantID) && !c.self(u.ID) {
			continue
		}
		var tp *keys.Tenant
		if t, err := h.store.GetTenant(r.Context(), p.TenantID); err == nil {
			tp = &t
		} else if !errors.Is(err, keys.ErrNotFound) {
			return err
		}
		views = append(views, permissionView(p, &u, tp))
	}
	slices.SortFunc(views, func(a, b PermissionView) int { return strings.Compare(a.WorkspaceID, b.WorkspaceID) })
	total := len(views)
	start := min((lo.Page-1)*lo.Size, total)
	end := min(start+lo.Size, total)
	writeList(w, "Permission", views[start:end], total, lo)
	return nil
}

// putPermission creates or updates the one permission of a user in a
// workspace. The caller must administer the workspace and see the user
// (a tenant admin sees the users of its tenant; inviting a user of another
// tenant takes a superadmin). INVITED → ACTIVE is 409: the invited user
// accepts. 201 when created, 200 when updated.
func (h *Handler) putPermission(w http.ResponseWriter, r *http.Request, c *caller) error {
	var b permissionBody
	if err := decodeJSON(w, r, h.maxBody, &b); err != nil {
		return err
	}
	v := &keys.ValidationError{}
	if b.User == nil || b.User.ID == "" {
		v.Add("user.id", "is required")
	}
	wsID := ""
	switch {
	case b.Workspace != nil && b.Workspace.ID != "":
		wsID = b.Workspace.ID
		if b.WorkspaceID != nil && *b.WorkspaceID != wsID {
			v.Add("workspaceId", "must equal workspace.id")
		}
	case b.WorkspaceID != nil && *b.WorkspaceID != "":
		wsID = *b.WorkspaceID
	default:
		v.Add("workspace.id", "is required")
	}
	if b.Role == nil {
		v.Add("role", "is required")
	} else if !validRole(*b.Role) {
		v.Add("role", "must be ADMIN, MEMBER or VIEWER")
	}
	if b.Status == nil {
		v.Add("status", "is required")
	} else if s := *b.Status; s != keys.PermissionActive && s != keys.PermissionInvited && s != keys.PermissionArchived {
		v.Add("status", "must be ACTIVE, INVITED or ARCHIVED")
	}
	checkList(v, "customerRoles", b.CustomerRoles, maxRoles, maxRoleLen, true)
	checkList(v, "accessControlEntities", b.AccessControlEntities, maxACEs, 200, false)
	if b.Version != nil && *b.Version < 1 {
		v.Add("version", "must be a positive integer")
	}
	if err := v.Err(); err != nil {
		return err
	}
	pre, err := parsePrecondition(r, b.Version, false)
	if err != nil {
		return err
	}
	ctx := r.Context()
	t, err := h.workspace(r, c, wsID)
	if err != nil {
		return err
	}
	u, err := h.visibleUser(r, c, b.User.ID)
	if err != nil {
		return err
	}
	if u.Superadmin && !c.superadmin {
		return errForbidden("only a superadmin may change a superadmin's permissions")
	}
	p := keys.Permission{
		UserID: u.ID, TenantID: t.ID, Role: *b.Role, Status: *b.Status,
		CustomerRoles: b.CustomerRoles, AccessControlEntities: b.AccessControlEntities,
	}
	cur, err := h.store.GetPermission(ctx, u.ID, t.ID)
	switch {
	case err == nil:
		if b.ID != nil && *b.ID != cur.ID {
			return errField("id", "does not match the user's permission in this workspace")
		}
		if pre != nil {
			// If-Match or the body's version: the permission must be at it.
			if p.Version, err = pre.expect(cur.Version); err != nil {
				return err
			}
		}
		if cur.Status == keys.PermissionInvited && p.Status == keys.PermissionActive {
			return errConflict("an INVITED permission becomes ACTIVE only when the invited user accepts it")
		}
	case errors.Is(err, keys.ErrNotFound):
		if pre != nil && !pre.any {
			return errPreconditionFailed
		}
	default:
		return err
	}
	out, created, err := h.store.PutPermission(ctx, p, c.actor)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeOne(w, status, "Permission", out.Version, permissionView(&out, &u, &t))
	return nil
}

// acceptPermission turns the caller's own INVITED permission ACTIVE. The
// caller authenticates with one of its own usable keys; a permission of
// anyone else is 404.
func (h *Handler) acceptPermission(w http.ResponseWriter, r *http.Request, c *caller) error {
	id := r.PathValue("id")
	if keys.ValidateID(id) != nil {
		return errNotFound("permission")
	}
	ctx := r.Context()
	p, err := h.store.GetPermissionByID(ctx, id)
	if errors.Is(err, keys.ErrNotFound) || (err == nil && !c.trusted && p.UserID != c.user.ID) {
		return errNotFound("permission")
	}
	if err != nil {
		return err
	}
	setTenant(r, p.TenantID)
	if p.Status != keys.PermissionInvited {
		return errConflict("the permission is " + string(p.Status) + ", not INVITED")
	}
	out, err := h.store.AcceptPermission(ctx, p.ID, c.actor)
	if err != nil {
		return err
	}
	view, err := h.permissionViewOf(r, &out)
	if err != nil {
		return err
	}
	writeOne(w, http.StatusOK, "Permission", out.Version, view)
	return nil
}
