package keys

import (
	"context"
	"fmt"
	"slices"
)

// permSortFields are the sort fields with an index; permListFields are all
// of them, the others sorted in memory (one tenant's permissions).
var (
	permSortFields = []string{"id", "createdAt"}
	permListFields = []string{"id", "createdAt", "updatedAt", "status", "role", "lastLogin"}
)

// permTransitions are the status changes PutPermission allows; INVITED →
// ACTIVE is AcceptPermission's alone, and ARCHIVED → ACTIVE is allowed only
// for a permission that was accepted before (see checkPermTransition).
var permTransitions = map[PermissionStatus][]PermissionStatus{
	PermissionActive:   {PermissionArchived},
	PermissionInvited:  {PermissionArchived},
	PermissionArchived: {PermissionActive, PermissionInvited},
}

// checkPermTransition tells whether cur may change to status by
// PutPermission: it follows permTransitions, and an invitation that was
// never accepted (withdrawn: ARCHIVED without AcceptedAt) becomes ACTIVE
// only through a new invitation and its acceptance.
func checkPermTransition(cur *Permission, status PermissionStatus) error {
	if !slices.Contains(permTransitions[cur.Status], status) {
		if cur.Status == PermissionInvited && status == PermissionActive {
			return fmt.Errorf("permission %s is INVITED: only the invited user accepts it: %w", cur.ID, ErrConflict)
		}
		return fmt.Errorf("permission %s: status %s cannot become %s: %w", cur.ID, cur.Status, status, ErrConflict)
	}
	if cur.Status == PermissionArchived && status == PermissionActive && cur.AcceptedAt == nil {
		return fmt.Errorf("permission %s was never accepted: invite the user again: %w", cur.ID, ErrConflict)
	}
	return nil
}

func permScope(tenant string) string { return "t:" + tenant + ":perms:by:" }

func permSortKey(p *Permission, field string) string {
	switch field {
	case "createdAt":
		return timeKey(p.CreatedAt)
	case "updatedAt":
		return timeKey(p.UpdatedAt)
	case "status":
		return string(p.Status)
	case "role":
		return string(p.Role) // ADMIN < MEMBER < VIEWER: most privileged first
	case "lastLogin":
		if p.LastLogin == nil {
			return "" // never: before any time
		}
		return timeKey(*p.LastLogin)
	}
	return p.ID
}

// permIndexes lists a permission's entries in its tenant's indexes (the
// user's own index u:<user>:perms holds tenant ids and is kept apart).
func permIndexes(p *Permission) []indexEntry {
	if p == nil {
		return nil
	}
	out := make([]indexEntry, 0, len(permSortFields))
	for _, f := range permSortFields {
		out = append(out, indexEntry{permScope(p.TenantID) + f, permSortKey(p, f)})
	}
	return out
}

// permOf returns the permission of a user in a tenant.
func permOf(tx Tx, userID, tenantID string) (Permission, error) {
	what := fmt.Sprintf("permission of user %s in tenant %s", userID, tenantID)
	id, err := lookup(tx, lkPerm, userID+sep+tenantID)
	if err != nil {
		return Permission{}, err
	}
	if id == "" {
		return Permission{}, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return getJSON[Permission](tx, tblPerms, id, what)
}

// writePermission stores next (old nil when new), indexes it, records the
// change in the user's history and queues the invalidation.
func writePermission(r *recorder, old, next *Permission, action string) error {
	stamp(&next.Version, &next.CreatedAt, &next.UpdatedAt, r.now)
	if err := putJSON(r.tx, tblPerms, next.ID, next); err != nil {
		return err
	}
	if err := syncIndexes(r.tx, next.ID, permIndexes(old), permIndexes(next)); err != nil {
		return err
	}
	if err := r.record(next.UserID, action, "permission:"+next.TenantID, diff(old, next)); err != nil {
		return err
	}
	if err := emitPermission(r, old, next, action); err != nil {
		return err
	}
	r.notify(next.UserID, "")
	return nil
}

// PutPermission creates or updates the one permission of a user in a tenant.
// On update, an empty Role or Status and nil slices keep the current values.
func (s *kvStore) PutPermission(ctx context.Context, p Permission, actor string) (Permission, bool, error) {
	v := &ValidationError{}
	required(v, "userId", p.UserID)
	required(v, "workspaceId", p.TenantID)
	if p.Role != "" {
		oneOf(v, "role", p.Role, RoleAdmin, RoleMember, RoleViewer)
	}
	if p.Status != "" {
		oneOf(v, "status", p.Status, PermissionActive, PermissionInvited, PermissionArchived)
	}
	if err := v.Err(); err != nil {
		return Permission{}, false, err
	}
	var (
		out     Permission
		created bool
	)
	err := s.update(ctx, actor, func(r *recorder) (err error) {
		out, created, err = putPermissionTx(r, p)
		return err
	})
	return out, created, err
}

// putPermissionTx is PutPermission's transaction, p already validated.
func putPermissionTx(r *recorder, p Permission) (Permission, bool, error) {
	var (
		out     Permission
		created bool
	)
	err := func() error {
		tx := r.tx
		u, err := getJSON[User](tx, tblUsers, p.UserID, "user "+p.UserID)
		if isNotFound(err) {
			return fieldError("userId", "user does not exist")
		} else if err != nil {
			return err
		}
		if u.Status == UserDeleting || u.Status == UserDeleted {
			return fmt.Errorf("user %s is %s: %w", u.ID, u.Status, ErrConflict)
		}
		tenant, err := getJSON[Tenant](tx, tblTenants, p.TenantID, "tenant "+p.TenantID)
		if isNotFound(err) {
			return fieldError("workspaceId", "tenant does not exist")
		} else if err != nil {
			return err
		}
		archived := tenant.Status != TenantActive
		cur, err := permOf(tx, p.UserID, p.TenantID)
		if isNotFound(err) {
			if archived {
				return fmt.Errorf("tenant %s is %s: it accepts no new permissions: %w", tenant.ID, tenant.Status, ErrConflict)
			}
			if err := createPermission(r, &u, p, &out, &created); err != nil {
				return err
			}
			return mirrorToUser(r, &u, &out)
		} else if err != nil {
			return err
		}
		created = false
		if err := checkVersion("permission "+cur.ID, p.Version, cur.Version); err != nil {
			return err
		}
		next := clone(cur)
		if p.Role != "" {
			next.Role = p.Role
		}
		if p.CustomerRoles != nil {
			next.CustomerRoles = slices.Clone(p.CustomerRoles)
		}
		if p.AccessControlEntities != nil {
			next.AccessControlEntities = slices.Clone(p.AccessControlEntities)
		}
		if p.Status != "" && p.Status != cur.Status {
			if err := checkPermTransition(&cur, p.Status); err != nil {
				return err
			}
			if archived && p.Status != PermissionArchived {
				return fmt.Errorf("tenant %s is %s: no permission in it becomes %s: %w", tenant.ID, tenant.Status, p.Status, ErrConflict)
			}
			if cur.Status == PermissionActive && next.AcceptedAt == nil {
				// Permissions stored before AcceptedAt existed: an ACTIVE
				// one was accepted (or granted).
				at := cur.CreatedAt
				next.AcceptedAt = &at
			}
			if p.Status == PermissionInvited {
				next.AcceptedAt = nil // a new invitation needs a new acceptance
				next.InvitedBy = r.actor
			}
			next.Status = p.Status
		}
		if len(diff(&cur, &next)) == 0 {
			out = cur
			return nil
		}
		next.ReviewedBy = r.actor
		if err := writePermission(r, &cur, &next, "permission.update"); err != nil {
			return err
		}
		out = next
		return mirrorToUser(r, &u, &out)
	}()
	return out, created, err
}

// createPermission stores a new permission of u and adds u to the tenant's
// user indexes.
func createPermission(r *recorder, u *User, p Permission, out *Permission, created *bool) error {
	if p.Role == "" {
		return fieldError("role", "is required")
	}
	if p.Status == "" {
		p.Status = PermissionActive
	}
	p.AcceptedAt, p.InvitedBy, p.ReviewedBy, p.LastLogin = nil, "", "", nil
	switch p.Status {
	case PermissionActive:
		at := r.now
		p.AcceptedAt = &at // granted ACTIVE by an administrator
	case PermissionInvited:
		p.InvitedBy = r.actor
	}
	p.ID = NewID()
	p.Version, p.CreatedAt = 0, r.now
	p.CustomerRoles = nonNil(slices.Clone(p.CustomerRoles))
	p.AccessControlEntities = nonNil(slices.Clone(p.AccessControlEntities))
	if err := r.tx.Put(lkPerm, p.UserID+sep+p.TenantID, []byte(p.ID)); err != nil {
		return fmt.Errorf("storing permission %s: %w", p.ID, err)
	}
	if err := r.tx.IndexAdd("u:"+p.UserID+":perms", p.TenantID, p.TenantID); err != nil {
		return fmt.Errorf("indexing permission %s: %w", p.ID, err)
	}
	if u.PrimaryTenant != p.TenantID {
		if err := syncIndexes(r.tx, u.ID, nil, tenantUserIndexes(u, p.TenantID)); err != nil {
			return err
		}
	}
	if err := writePermission(r, nil, &p, "permission.create"); err != nil {
		return err
	}
	*out, *created = p, true
	return nil
}

// tenantUserIndexes lists a user's entries in one tenant's user indexes.
func tenantUserIndexes(u *User, tenant string) []indexEntry {
	out := make([]indexEntry, 0, len(userSortFields))
	for _, f := range userSortFields {
		out = append(out, indexEntry{userScope(tenant) + f, userSortKey(u, f)})
	}
	return out
}

// AcceptPermission turns an INVITED permission ACTIVE.
func (s *kvStore) AcceptPermission(ctx context.Context, id string, actor string) (Permission, error) {
	var out Permission
	err := s.update(ctx, actor, func(r *recorder) error {
		cur, err := getJSON[Permission](r.tx, tblPerms, id, "permission "+id)
		if err != nil {
			return err
		}
		if cur.Status != PermissionInvited {
			return fmt.Errorf("permission %s is %s, not INVITED: %w", id, cur.Status, ErrConflict)
		}
		if err := activeTenant(r.tx, cur.TenantID, "workspaceId"); err != nil {
			return err
		}
		next := clone(cur)
		next.Status = PermissionActive
		at := r.now
		next.AcceptedAt = &at
		if err := writePermission(r, &cur, &next, "permission.accept"); err != nil {
			return err
		}
		out = next
		return nil
	})
	return out, err
}

// GetPermission returns the permission of a user in a tenant.
func (s *kvStore) GetPermission(ctx context.Context, userID, tenantID string) (Permission, error) {
	var p Permission
	err := s.b.View(ctx, func(tx Tx) (err error) {
		p, err = permOf(tx, userID, tenantID)
		return err
	})
	return p, err
}

// GetPermissionByID returns a permission by its id.
func (s *kvStore) GetPermissionByID(ctx context.Context, id string) (Permission, error) {
	var p Permission
	err := s.b.View(ctx, func(tx Tx) (err error) {
		p, err = getJSON[Permission](tx, tblPerms, id, "permission "+id)
		return err
	})
	return p, err
}

// ListPermissions pages through the permissions of a tenant (sort fields:
// id, createdAt, updatedAt, status, role, lastLogin).
func (s *kvStore) ListPermissions(ctx context.Context, q PermissionQuery) (Page[Permission], error) {
	if q.Tenant == "" {
		return Page[Permission]{}, fieldError("workspaceId", "is required")
	}
	ps, err := normalize(q.ListOptions, permListFields, Sort{Field: "id"})
	if err != nil {
		return Page[Permission]{}, err
	}
	inMemory := slices.ContainsFunc(ps.sort, func(s Sort) bool { return !slices.Contains(permSortFields, s.Field) })
	l := lister[Permission]{
		table:   tblPerms,
		index:   func(f string) string { return permScope(q.Tenant) + f },
		sortKey: permSortKey,
		id:      func(p *Permission) string { return p.ID },
	}
	needUser := q.Q != "" || q.Email != "" || q.ExcludeTechnicalUsers
	if needUser || q.Status != "" || q.UserID != "" {
		l.filter = func(tx Tx, batch []Permission) ([]Permission, error) {
			users := map[string]*User{}
			if needUser {
				ids := make([]string, len(batch))
				for i, p := range batch {
					ids[i] = p.UserID
				}
				list, err := getManyJSON[User](tx, tblUsers, ids)
				if err != nil {
					return nil, err
				}
				for i := range list {
					users[list[i].ID] = &list[i]
				}
			}
			out := batch[:0]
			for _, p := range batch {
				if permMatches(&q, &p, users[p.UserID]) {
					out = append(out, p)
				}
			}
			return out, nil
		}
	}
	var p Page[Permission]
	err = s.b.View(ctx, func(tx Tx) (err error) {
		if inMemory {
			all, err := l.collect(tx, l.index("id"), false)
			if err != nil {
				return err
			}
			p = l.inMemory(all, ps)
			return nil
		}
		p, err = l.list(tx, ps)
		return err
	})
	return p, err
}

// permMatches applies a permission query's filters; u is nil when the
// filters need no user.
func permMatches(q *PermissionQuery, p *Permission, u *User) bool {
	if q.Status != "" && p.Status != q.Status || q.UserID != "" && p.UserID != q.UserID {
		return false
	}
	if q.Q == "" && q.Email == "" && !q.ExcludeTechnicalUsers {
		return true
	}
	if u == nil {
		return false
	}
	if q.ExcludeTechnicalUsers && slices.Contains([]UserType{UserTechnical, UserService, UserApplication}, u.Type) {
		return false
	}
	if q.Email != "" && lower(u.Email) != lower(q.Email) {
		return false
	}
	return q.Q == "" || containsFold(q.Q, u.ID, u.Name, u.Description, u.Email, string(p.Role))
}

// UserPermissions returns every permission of a user.
func (s *kvStore) UserPermissions(ctx context.Context, userID string) ([]Permission, error) {
	var out []Permission
	err := s.b.View(ctx, func(tx Tx) error {
		if ok, err := exists(tx, tblUsers, userID); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("user %s: %w", userID, ErrNotFound)
		}
		tenants, err := permTenants(tx, userID)
		if err != nil {
			return err
		}
		lk := make([]string, len(tenants))
		for i, t := range tenants {
			lk[i] = userID + sep + t
		}
		raw, err := tx.GetMany(lkPerm, lk)
		if err != nil {
			return fmt.Errorf("loading permissions of user %s: %w", userID, err)
		}
		ids := make([]string, 0, len(raw))
		for _, b := range raw {
			if b != nil {
				ids = append(ids, string(b))
			}
		}
		out, err = getManyJSON[Permission](tx, tblPerms, ids)
		return err
	})
	if out == nil && err == nil {
		out = []Permission{}
	}
	return out, err
}

// mirrorToUser copies the role, customer roles and access control entities
// of p to its user when p is the permission in the user's primary tenant
// (u is the user as loaded in this transaction).
func mirrorToUser(r *recorder, u *User, p *Permission) error {
	if p.TenantID != u.PrimaryTenant {
		return nil
	}
	next := clone(*u)
	next.Role = p.Role
	next.CustomerRoles = nonNil(slices.Clone(p.CustomerRoles))
	next.AccessControlEntities = nonNil(slices.Clone(p.AccessControlEntities))
	changes := diff(u, &next)
	if len(changes) == 0 {
		return nil
	}
	stamp(&next.Version, &next.CreatedAt, &next.UpdatedAt, r.now)
	if err := writeUser(r.tx, u, &next); err != nil {
		return err
	}
	if err := r.record(u.ID, "user.update", "", changes); err != nil {
		return err
	}
	if err := emitUser(r, u, &next, changes); err != nil {
		return err
	}
	*u = next
	return nil
}

// mirrorToPermission copies the role, customer roles and access control
// entities of u to its permission in its primary tenant, when it holds one
// and they differ.
func mirrorToPermission(r *recorder, u *User) error {
	cur, err := permOf(r.tx, u.ID, u.PrimaryTenant)
	if isNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	next := clone(cur)
	next.Role = u.Role
	next.CustomerRoles = nonNil(slices.Clone(u.CustomerRoles))
	next.AccessControlEntities = nonNil(slices.Clone(u.AccessControlEntities))
	if len(diff(&cur, &next)) == 0 {
		return nil
	}
	next.ReviewedBy = r.actor
	return writePermission(r, &cur, &next, "permission.update")
}

// primaryRoles loads u's permission in its primary tenant and, when there
// is one, sets u's role, customer roles and entities from it.
func primaryRoles(tx Tx, u *User) error {
	p, err := permOf(tx, u.ID, u.PrimaryTenant)
	if isNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	u.Role = p.Role
	u.CustomerRoles = nonNil(slices.Clone(p.CustomerRoles))
	u.AccessControlEntities = nonNil(slices.Clone(p.AccessControlEntities))
	return nil
}
