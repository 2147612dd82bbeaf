package keys

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"time"
)

var userSortFields = []string{"id", "name", "createdAt"}

// userTransitions are the status changes UpdateUser allows. DeleteUser
// moves any state but DELETED to DELETED.
var userTransitions = map[UserStatus][]UserStatus{
	UserCreate:   {UserActive},
	UserActive:   {UserInactive, UserDeleting},
	UserInactive: {UserActive, UserDeleting},
}

// userScope is the index prefix of all users ("") or of one tenant's users.
func userScope(tenant string) string {
	if tenant == "" {
		return "users:by:"
	}
	return "t:" + tenant + ":users:by:"
}

func userSortKey(u *User, field string) string {
	switch field {
	case "name":
		return lower(u.Name)
	case "createdAt":
		return timeKey(u.CreatedAt)
	}
	return u.ID
}

// userIndexes lists the index entries of a user who appears in tenants
// (its primary tenant and those where it holds a permission).
func userIndexes(u *User, tenants []string) []indexEntry {
	if u == nil {
		return nil
	}
	var out []indexEntry
	for _, scope := range append([]string{""}, tenants...) {
		for _, f := range userSortFields {
			out = append(out, indexEntry{userScope(scope) + f, userSortKey(u, f)})
		}
	}
	if u.Status == UserDeleted && u.PlannedPurgeDate != nil {
		out = append(out, indexEntry{"users:purge", timeKey(*u.PlannedPurgeDate)})
	}
	if u.Status == UserDeleting {
		out = append(out, indexEntry{ixUsersDeleting, u.ID})
	}
	return out
}

// ixUsersDeleting lists the users in DELETING, whose deletion's second step
// is still to run (CompleteDeletion).
const ixUsersDeleting = "users:deleting"

// userNameKey is the key of a user's name claim; DELETED users hold none.
func userNameKey(u *User) string {
	if u == nil || u.Status == UserDeleted {
		return ""
	}
	return u.PrimaryTenant + sep + lower(u.Name)
}

// permTenants returns the tenants where the user holds a permission.
func permTenants(tx Tx, userID string) ([]string, error) {
	return allIDs(tx, "u:"+userID+":perms", false)
}

// withTenant returns tenants plus t, without duplicates.
func withTenant(tenants []string, t string) []string {
	if t == "" || slices.Contains(tenants, t) {
		return tenants
	}
	return append(slices.Clone(tenants), t)
}

// writeUser stores next (old is nil for a new user) and moves its name
// claim and index entries.
func writeUser(tx Tx, old, next *User) error {
	if err := claim(tx, lkUserName, userNameKey(old), userNameKey(next), next.ID,
		fmt.Sprintf("user name %q in tenant %s", next.Name, next.PrimaryTenant)); err != nil {
		return err
	}
	if err := putJSON(tx, tblUsers, next.ID, next); err != nil {
		return err
	}
	perms, err := permTenants(tx, next.ID)
	if err != nil {
		return err
	}
	var oldEntries []indexEntry
	if old != nil {
		oldEntries = userIndexes(old, withTenant(perms, old.PrimaryTenant))
	}
	return syncIndexes(tx, next.ID, oldEntries, userIndexes(next, withTenant(perms, next.PrimaryTenant)))
}

// validateUser checks a user's fields; tx checks the primary tenant exists.
func validateUser(tx Tx, u *User) error {
	v := &ValidationError{}
	validID(v, "id", u.ID)
	required(v, "name", u.Name)
	oneOf(v, "type", u.Type, UserTechnical, UserService, UserApplication)
	oneOf(v, "role", u.Role, RoleAdmin, RoleMember, RoleViewer)
	oneOf(v, "status", u.Status, UserCreate, UserActive, UserInactive, UserDeleting, UserDeleted)
	if u.RequestLimit < 0 {
		v.Add("requestLimit", "must not be negative")
	}
	checkMeta(v, "meta", u.Meta)
	checkTags(v, "tags", u.Tags)
	if u.PrimaryTenant == "" {
		v.Add("primaryTenant", "is required")
	} else if ok, err := exists(tx, tblTenants, u.PrimaryTenant); err != nil {
		return err
	} else if !ok {
		v.Add("primaryTenant", "tenant does not exist")
	}
	return v.Err()
}

// CreateUser adds a user.
func (s *kvStore) CreateUser(ctx context.Context, u User, actor string) (User, error) {
	if u.Status == "" {
		u.Status = UserActive
	}
	if u.Type == "" {
		u.Type = UserTechnical
	}
	if u.Role == "" {
		u.Role = RoleViewer
	}
	u.CustomerRoles = nonNil(u.CustomerRoles)
	u.AccessControlEntities = nonNil(u.AccessControlEntities)
	u.Version, u.CreatedAt, u.UpdatedAt, u.LastUsedAt = 0, time.Time{}, time.Time{}, nil
	if !slices.Contains([]UserStatus{UserActive, UserInactive, UserCreate}, u.Status) {
		return User{}, fieldError("status", "must be ACTIVE, INACTIVE or CREATE at creation")
	}
	var out User
	err := s.update(ctx, actor, func(r *recorder) (err error) {
		out, err = createUserTx(r, u, "user.create")
		return err
	})
	return out, err
}

// createUserTx is CreateUser's transaction (u already normalized),
// recorded in history under action.
func createUserTx(r *recorder, u User, action string) (User, error) {
	if u.ID == "" {
		id, err := freeUserID(r.tx)
		if err != nil {
			return User{}, err
		}
		u.ID = id
	}
	if err := validateUser(r.tx, &u); err != nil {
		return User{}, err
	}
	if err := activeTenant(r.tx, u.PrimaryTenant, "primaryTenant"); err != nil {
		return User{}, err
	}
	if ok, err := exists(r.tx, tblUsers, u.ID); err != nil {
		return User{}, err
	} else if ok {
		// Generic: the id may belong to a user of another tenant, which
		// the caller must not learn about.
		return User{}, fmt.Errorf("the user id is not available: %w", ErrConflict)
	}
	stamp(&u.Version, &u.CreatedAt, &u.UpdatedAt, r.now)
	if err := writeUser(r.tx, nil, &u); err != nil {
		return User{}, err
	}
	if err := r.record(u.ID, action, "", diff((*User)(nil), &u)); err != nil {
		return User{}, err
	}
	if err := emitUser(r, nil, &u, nil); err != nil {
		return User{}, err
	}
	r.notify(u.ID, "")
	return u, nil
}

// freeUserID generates a user id not yet taken.
func freeUserID(tx Tx) (string, error) {
	for range 10 {
		id := NewUserID()
		ok, err := exists(tx, tblUsers, id)
		if err != nil {
			return "", err
		}
		if !ok {
			return id, nil
		}
	}
	return "", fmt.Errorf("generating a user id: %w", ErrConflict)
}

// GetUser returns one user or ErrNotFound.
func (s *kvStore) GetUser(ctx context.Context, id string) (User, error) {
	var u User
	err := s.b.View(ctx, func(tx Tx) (err error) {
		u, err = getJSON[User](tx, tblUsers, id, "user "+id)
		return err
	})
	return u, err
}

// UpdateUser changes a user following the state machine.
func (s *kvStore) UpdateUser(ctx context.Context, id string, version int64, mutate func(*User) error, actor string) (User, error) {
	var out User
	err := s.update(ctx, actor, func(r *recorder) (err error) {
		out, err = updateUserTx(r, id, version, mutate, "user.update")
		return err
	})
	return out, err
}

// updateUserTx is UpdateUser's transaction, recorded under action.
func updateUserTx(r *recorder, id string, version int64, mutate func(*User) error, action string) (User, error) {
	var out User
	err := func() error {
		cur, err := getJSON[User](r.tx, tblUsers, id, "user "+id)
		if err != nil {
			return err
		}
		if err := checkVersion("user "+id, version, cur.Version); err != nil {
			return err
		}
		next := clone(cur)
		if err := mutate(&next); err != nil {
			return err
		}
		if next.ID != cur.ID {
			return fieldError("id", "cannot be changed")
		}
		if !reflect.DeepEqual(next.Origin, cur.Origin) {
			return fieldError("origin", "cannot be changed")
		}
		next.Version, next.CreatedAt, next.UpdatedAt, next.LastUsedAt = cur.Version, cur.CreatedAt, cur.UpdatedAt, cur.LastUsedAt
		next.CustomerRoles = nonNil(next.CustomerRoles)
		next.AccessControlEntities = nonNil(next.AccessControlEntities)
		if next.Status != cur.Status {
			if next.Status == UserDeleted {
				return fmt.Errorf("user %s: DELETED is set by deleting the user: %w", id, ErrConflict)
			}
			if !slices.Contains(userTransitions[cur.Status], next.Status) {
				return fmt.Errorf("user %s: status %s cannot become %s: %w", id, cur.Status, next.Status, ErrConflict)
			}
		}
		if err := validateUser(r.tx, &next); err != nil {
			return err
		}
		if next.Status == UserDeleting && cur.Status != UserDeleting {
			// The first step of a deletion (see DeleteUser); the sweep
			// (CompleteDeletion) takes it on to DELETED.
			if err := startDeletion(r, id); err != nil {
				return err
			}
		}
		rolesChanged := next.Role != cur.Role || !slices.Equal(next.CustomerRoles, cur.CustomerRoles) ||
			!slices.Equal(next.AccessControlEntities, cur.AccessControlEntities)
		if next.PrimaryTenant != cur.PrimaryTenant {
			if err := activeTenant(r.tx, next.PrimaryTenant, "primaryTenant"); err != nil {
				return err
			}
			if !rolesChanged {
				// The roles are those of the permission in the new primary tenant.
				if err := primaryRoles(r.tx, &next); err != nil {
					return err
				}
			}
		}
		changes := diff(&cur, &next)
		if len(changes) == 0 {
			out = cur
			return nil
		}
		stamp(&next.Version, &next.CreatedAt, &next.UpdatedAt, r.now)
		if err := writeUser(r.tx, &cur, &next); err != nil {
			return err
		}
		if err := r.record(id, action, "", changes); err != nil {
			return err
		}
		if err := emitUser(r, &cur, &next, changes); err != nil {
			return err
		}
		r.notify(id, "")
		if rolesChanged {
			if err := mirrorToPermission(r, &next); err != nil {
				return err
			}
		}
		out = next
		return nil
	}()
	return out, err
}

// DeleteUser deletes a user in the two steps of seed 004: one transaction
// marks it DELETING and ends every credential (startDeletion), a second one
// drops its usage counts and marks it DELETED (CompleteDeletion). A user
// already DELETING (a deletion interrupted between the two) only gets the
// second step.
func (s *kvStore) DeleteUser(ctx context.Context, id string, version int64, actor string) (User, error) {
	var out User
	err := s.update(ctx, actor, func(r *recorder) error {
		cur, err := getJSON[User](r.tx, tblUsers, id, "user "+id)
		if err != nil {
			return err
		}
		if err := checkVersion("user "+id, version, cur.Version); err != nil {
			return err
		}
		switch cur.Status {
		case UserDeleted:
			return fmt.Errorf("user %s is already deleted: %w", id, ErrConflict)
		case UserDeleting:
			out = cur
			return nil
		}
		if err := startDeletion(r, id); err != nil {
			return err
		}
		next := clone(cur)
		next.Status = UserDeleting
		stamp(&next.Version, &next.CreatedAt, &next.UpdatedAt, r.now)
		if err := writeUser(r.tx, &cur, &next); err != nil {
			return err
		}
		if err := r.record(id, "user.delete", "", diff(&cur, &next)); err != nil {
			return err
		}
		if err := emitUser(r, &cur, &next, nil); err != nil {
			return err
		}
		r.notify(id, "")
		out = next
		return nil
	})
	if err != nil {
		return out, err
	}
	done, err := s.CompleteDeletion(ctx, id, actor)
	if err != nil {
		return out, fmt.Errorf("completing the deletion of user %s: %w", id, err)
	}
	return done, nil
}

// startDeletion is the first step of a user's deletion, in the transaction
// that makes it DELETING: its keys are revoked, its secrets deactivated, its
// permissions archived and its console sessions dropped, so that nothing of
// it authenticates any more.
func startDeletion(r *recorder, id string) error {
	keys, err := userKeys(r.tx, id)
	if err != nil {
		return err
	}
	for i := range keys {
		if keys[i].Status == KeyRevoked {
			continue
		}
		if err := revokeKey(r, &keys[i]); err != nil {
			return err
		}
	}
	secrets, err := userSecrets(r.tx, id)
	if err != nil {
		return err
	}
	for _, sec := range secrets {
		if sec.Status != SecretActive {
			continue
		}
		next := sec
		next.Status = SecretInactive
		if err := writeSecret(r, &sec, &next, "secret.update"); err != nil {
			return err
		}
	}
	tenants, err := permTenants(r.tx, id)
	if err != nil {
		return err
	}
	for _, t := range tenants {
		cur, err := permOf(r.tx, id, t)
		if err != nil {
			return err
		}
		if cur.Status == PermissionArchived {
			continue
		}
		next := clone(cur)
		next.Status = PermissionArchived
		next.ReviewedBy = r.actor
		if err := writePermission(r, &cur, &next, "permission.update"); err != nil {
			return err
		}
	}
	return dropUserSessions(r.tx, id)
}

// CompleteDeletion is the second step of a user's deletion: the DELETING
// user's usage counts leave it (the tenants keep them as anonymous
// requests), and it becomes DELETED.
func (s *kvStore) CompleteDeletion(ctx context.Context, id string, actor string) (User, error) {
	var out User
	err := s.update(ctx, actor, func(r *recorder) error {
		cur, err := getJSON[User](r.tx, tblUsers, id, "user "+id)
		if err != nil {
			return err
		}
		if cur.Status != UserDeleting {
			return fmt.Errorf("user %s is %s, not DELETING: %w", id, cur.Status, ErrConflict)
		}
		if err := dropUserSessions(r.tx, id); err != nil {
			return err
		}
		if err := anonymizeUserUsage(r.tx, id); err != nil {
			return err
		}
		next := clone(cur)
		next.Status = UserDeleted
		stamp(&next.Version, &next.CreatedAt, &next.UpdatedAt, r.now)
		if err := writeUser(r.tx, &cur, &next); err != nil {
			return err
		}
		if err := r.record(id, "user.deleted", "", diff(&cur, &next)); err != nil {
			return err
		}
		if err := emitUser(r, &cur, &next, nil); err != nil {
			return err
		}
		r.notify(id, "")
		out = next
		return nil
	})
	return out, err
}

// DeletingUsers lists up to limit users in DELETING, by id.
func (s *kvStore) DeletingUsers(ctx context.Context, limit int) ([]string, error) {
	if limit <= 0 {
		limit = MaxPageSize
	}
	var out []string
	err := s.b.View(ctx, func(tx Tx) (err error) {
		out, err = tx.IndexRange(ixUsersDeleting, 0, limit, false)
		return err
	})
	return out, err
}

// PurgeUser removes a DELETED user and everything stored about it.
func (s *kvStore) PurgeUser(ctx context.Context, id string) error {
	return s.update(ctx, "system", func(r *recorder) error {
		tx := r.tx
		cur, err := getJSON[User](tx, tblUsers, id, "user "+id)
		if err != nil {
			return err
		}
		if cur.Status != UserDeleted {
			return fmt.Errorf("user %s is %s, not DELETED: %w", id, cur.Status, ErrConflict)
		}
		keys, err := userKeys(tx, id)
		if err != nil {
			return err
		}
		for i := range keys {
			k := &keys[i]
			if err := claim(tx, lkKeyName, keyNameKey(k), "", k.ID, "key name"); err != nil {
				return err
			}
			if err := tx.Delete(tblKeys, k.ID); err != nil {
				return fmt.Errorf("deleting key %s: %w", k.ID, err)
			}
			if err := syncIndexes(tx, k.ID, keyExpiryIndexes(k), nil); err != nil {
				return err
			}
			r.notify(id, k.ID)
		}
		secrets, err := userSecrets(tx, id)
		if err != nil {
			return err
		}
		for _, sec := range secrets {
			if err := deleteSecretRecord(tx, &sec); err != nil {
				return err
			}
		}
		tenants, err := permTenants(tx, id)
		if err != nil {
			return err
		}
		for _, t := range tenants {
			p, err := permOf(tx, id, t)
			if err != nil {
				return err
			}
			if err := tx.Delete(tblPerms, p.ID); err != nil {
				return fmt.Errorf("deleting permission %s: %w", p.ID, err)
			}
			if err := tx.Delete(lkPerm, id+sep+t); err != nil {
				return fmt.Errorf("deleting permission %s: %w", p.ID, err)
			}
			if err := syncIndexes(tx, p.ID, permIndexes(&p), nil); err != nil {
				return err
			}
		}
		hist, err := allIDs(tx, "u:"+id+":history", false)
		if err != nil {
			return err
		}
		for _, h := range hist {
			if err := tx.Delete(tblHistory, id+sep+h); err != nil {
				return fmt.Errorf("deleting history of user %s: %w", id, err)
			}
		}
		if err := tx.Delete(tblMeta, historyPurgedKey(id)); err != nil {
			return fmt.Errorf("deleting history of user %s: %w", id, err)
		}
		if err := anonymizeUserUsage(tx, id); err != nil {
			return err
		}
		if err := dropUserSessions(tx, id); err != nil {
			return err
		}
		if err := claim(tx, lkUserName, userNameKey(&cur), "", id, "user name"); err != nil {
			return err
		}
		if err := syncIndexes(tx, id, userIndexes(&cur, withTenant(tenants, cur.PrimaryTenant)), nil); err != nil {
			return err
		}
		for _, idx := range []string{"u:" + id + ":perms", "u:" + id + ":keys", "u:" + id + ":secrets", "u:" + id + ":history"} {
			if err := tx.IndexDrop(idx); err != nil {
				return fmt.Errorf("dropping index %s: %w", idx, err)
			}
		}
		if err := tx.Delete(tblUsers, id); err != nil {
			return fmt.Errorf("deleting user %s: %w", id, err)
		}
		r.notify(id, "")
		return nil
	})
}

// ListUsers pages through users (sort fields: id, name, createdAt).
func (s *kvStore) ListUsers(ctx context.Context, q UserQuery) (Page[User], error) {
	ps, err := normalize(q.ListOptions, userSortFields, Sort{Field: "id"})
	if err != nil {
		return Page[User]{}, err
	}
	l := lister[User]{
		table:   tblUsers,
		index:   func(f string) string { return userScope(q.Tenant) + f },
		sortKey: userSortKey,
		id:      func(u *User) string { return u.ID },
	}
	if q.Status != "" || q.Type != "" || q.Role != "" || q.Q != "" {
		l.filter = keep(func(u *User) bool {
			return (q.Status == "" || u.Status == q.Status) &&
				(q.Type == "" || u.Type == q.Type) &&
				(q.Role == "" || u.Role == q.Role) &&
				(q.Q == "" || q.QNameOnly && containsFold(q.Q, u.ID, u.Name) ||
					!q.QNameOnly && containsFold(q.Q, u.ID, u.Name, u.Description, u.Email))
		})
	}
	var p Page[User]
	err = s.b.View(ctx, func(tx Tx) (err error) {
		p, err = l.list(tx, ps)
		return err
	})
	return p, err
}

// DueForPurge lists DELETED users whose PlannedPurgeDate is before now.
func (s *kvStore) DueForPurge(ctx context.Context, now time.Time, limit int) ([]string, error) {
	if limit <= 0 {
		limit = MaxPageSize
	}
	var out []string
	err := s.b.View(ctx, func(tx Tx) error {
		return walkIndex(tx, "users:purge", false, func(ids []string) (bool, error) {
			users, err := getManyJSON[User](tx, tblUsers, ids)
			if err != nil {
				return false, err
			}
			for _, u := range users {
				if u.PlannedPurgeDate == nil || !u.PlannedPurgeDate.Before(now) {
					return false, nil
				}
				if u.Status == UserDeleted {
					out = append(out, u.ID)
				}
				if len(out) >= limit {
					return false, nil
				}
			}
			return true, nil
		})
	})
	return out, err
}
