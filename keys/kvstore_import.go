package keys

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ImportBatch is one file of another gateway's users and keys, read into
// keygate's model (package importer reads each peer's export). Import
// applies it to one tenant in one transaction.
type ImportBatch struct {
	// Source names the peer: kong, tyk, unkey, krakend or csv.
	Source string
	// Tenant is the tenant every user is created in (its primary tenant,
	// with an ACTIVE permission there) and every key is valid in.
	Tenant string
	Users  []ImportUser
	// Invalid lists what the reader could not take (with where and why).
	Invalid []ImportItem
}

// ImportUser is one user of a batch and its keys.
type ImportUser struct {
	// Ref says where the user is in the file ("consumers[2]", "line 4").
	Ref string
	// ExternalID is the peer's id of the user; a second import of the same
	// source into the same tenant matches by it.
	ExternalID string
	// User holds the fields to import: Name, Description, Type, Role,
	// CustomerRoles, AccessControlEntities, RequestLimit, Meta, Tags and,
	// optionally, the ID to give the user.
	User User
	Keys []ImportKey
}

// ImportKey is one key of an imported user: its value in clear, or only a
// peer's hash of it (HashScheme and Hash).
type ImportKey struct {
	Ref        string
	ExternalID string
	Name       string
	Plaintext  string
	HashScheme string
	Hash       []byte
	ExpiresAt  time.Time
	// ExpiresDefault says ExpiresAt is not the file's own (a default, or a
	// TTL counted from the import): a matched key keeps its expiry.
	ExpiresDefault bool
	// Status is ACTIVE or INACTIVE. Default: ACTIVE.
	Status KeyStatus
	Meta   json.RawMessage
	Tags   []string
}

// ImportOptions control Import.
type ImportOptions struct {
	// DryRun computes the result and writes nothing.
	DryRun bool
	// Continue writes everything but the failed items; without it, one
	// failed item writes nothing.
	Continue bool
	// Hasher hashes the keys given in clear, as keygate hashes its own.
	Hasher *Hasher
	// AdminOf reports whether the caller administers a tenant. A user's
	// type decides which of its credentials work in every tenant it holds
	// an ACTIVE permission in, so re-importing an existing user with
	// another type needs an administrator of all of them; the check runs
	// inside the import's transaction. Nil means the caller administers
	// every tenant (a superadmin).
	AdminOf func(tenant string) bool
}

// Import item actions.
const (
	ImportCreate = "create"
	ImportUpdate = "update"
	ImportSkip   = "skip"
	ImportFail   = "fail"
)

// ImportItem is what Import did (or would do) with one user or key.
type ImportItem struct {
	Ref        string `json:"ref"`
	Kind       string `json:"kind"` // user or key
	Action     string `json:"action"`
	ExternalID string `json:"externalId,omitempty"`
	ID         string `json:"id,omitempty"`
	Name       string `json:"name,omitempty"`
	// UserID is the user a key belongs to.
	UserID  string            `json:"userId,omitempty"`
	Changes map[string]Change `json:"changes,omitempty"`
	Reason  string            `json:"reason,omitempty"`
}

// ImportResult is the outcome of Import.
type ImportResult struct {
	Items []ImportItem `json:"items"`
	// Written says whether the changes were stored: false for a dry run
	// and for a batch with a failed item imported without Continue.
	Written bool `json:"written"`
	Created int  `json:"created"`
	Updated int  `json:"updated"`
	Skipped int  `json:"skipped"`
	Failed  int  `json:"failed"`
}

// count tallies an item.
func (r *ImportResult) add(it ImportItem) {
	r.Items = append(r.Items, it)
	switch it.Action {
	case ImportCreate:
		r.Created++
	case ImportUpdate:
		r.Updated++
	case ImportSkip:
		r.Skipped++
	case ImportFail:
		r.Failed++
	}
}

// updateBudgetKey is the context key of WithUpdateBudget.
type updateBudgetKey struct{}

// WithUpdateBudget asks the store to give a whole write transaction made
// with the returned context up to d, when that is longer than its own
// bound (redisstore: 20 × the per-call timeout); each round trip keeps its
// own timeout. Import uses it for a large batch, which is one transaction.
func WithUpdateBudget(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, updateBudgetKey{}, d)
}

// UpdateBudget returns the budget asked for with WithUpdateBudget.
func UpdateBudget(ctx context.Context) (time.Duration, bool) {
	d, ok := ctx.Value(updateBudgetKey{}).(time.Duration)
	return d, ok
}

// importBudget bounds an Import of n users: about 20 round trips each, on
// a loaded node a few milliseconds apiece.
func importBudget(n int) time.Duration {
	return min(2*time.Second+time.Duration(n)*50*time.Millisecond, 10*time.Minute)
}

// errNoWrite ends an Import transaction without committing it.
var errNoWrite = errors.New("import: nothing to write")

// Import applies a batch: users and keys not seen before (by their peer's
// id) are created, matched ones are updated where the file differs, and
// the rest is skipped, all in one transaction. A user comes with an ACTIVE
// permission in the batch's tenant. History records every created user and
// key as action "import" (with its Origin), every update as "import.update".
func (s *kvStore) Import(ctx context.Context, b ImportBatch, opts ImportOptions, actor string) (ImportResult, error) {
	if opts.Hasher == nil {
		return ImportResult{}, errors.New("import: no hasher")
	}
	var res ImportResult
	// One transaction of thousands of round trips: a whole budget of its
	// own, and a second per round trip (an admin write, not the request
	// path), so that one slow answer of a busy store does not fail it.
	ctx = WithCallTimeout(WithUpdateBudget(ctx, importBudget(len(b.Users))), time.Second)
	err := s.update(ctx, actor, func(r *recorder) error {
		res = ImportResult{}
		for _, it := range b.Invalid {
			it.Action = ImportFail
			res.add(it)
		}
		if err := activeTenant(r.tx, b.Tenant, "tenant"); err != nil {
			return err
		}
		for i := range b.Users {
			if err := importUser(r, &b, &b.Users[i], &opts, &res); err != nil {
				return err
			}
		}
		if opts.DryRun || (res.Failed > 0 && !opts.Continue) || res.Created+res.Updated == 0 {
			return errNoWrite
		}
		return nil
	})
	if errors.Is(err, errNoWrite) {
		return res, nil
	}
	if err != nil {
		return ImportResult{}, err
	}
	res.Written = true
	return res, nil
}

// extIDKey is the lookup key of an imported user's or key's peer id.
func extIDKey(tenant, source, kind, id string) string {
	return tenant + sep + source + sep + kind + sep + id
}

// matchOrigin returns the id the lookup names when that record still
// exists and came from the same import source and peer id, else "".
func matchOrigin[T any](tx Tx, table, lkKey, source, extID string, origin func(*T) *Origin) (string, *T, error) {
	id, err := lookup(tx, lkExtID, lkKey)
	if err != nil || id == "" {
		return "", nil, err
	}
	v, err := getJSON[T](tx, table, id, table+" "+id)
	if isNotFound(err) {
		return "", nil, nil
	} else if err != nil {
		return "", nil, err
	}
	if o := origin(&v); o == nil || o.Source != source || o.ExternalID != extID {
		return "", nil, nil
	}
	return id, &v, nil
}

// ruleError reports whether err breaks a rule of the model (a reason to
// fail one item) rather than being a store failure (a reason to fail all).
func ruleError(err error) bool {
	return errors.Is(err, ErrConflict) || errors.Is(err, ErrInvalid) || errors.Is(err, ErrNotFound)
}

// importUser checks and applies one user and its keys. A rule broken by
// the user or one of its keys fails that item before anything of it is
// written; an error returned fails the whole import.
func importUser(r *recorder, b *ImportBatch, iu *ImportUser, opts *ImportOptions, res *ImportResult) error {
	tx := r.tx
	uit := ImportItem{Ref: iu.Ref, Kind: "user", ExternalID: iu.ExternalID, Name: iu.User.Name}
	failKeys := func(reason string) {
		for _, k := range iu.Keys {
			res.add(ImportItem{Ref: k.Ref, Kind: "key", Action: ImportFail, ExternalID: k.ExternalID, Name: k.Name, Reason: reason})
		}
	}
	fail := func(reason string) error {
		uit.Action, uit.Reason = ImportFail, reason
		res.add(uit)
		failKeys("its user " + iu.Ref + " failed")
		return nil
	}
	if iu.ExternalID == "" {
		return fail("no id of the user in the file")
	}
	uKey := extIDKey(b.Tenant, b.Source, "u", iu.ExternalID)
	curID, cur, err := matchOrigin(tx, tblUsers, uKey, b.Source, iu.ExternalID, func(u *User) *Origin { return u.Origin })
	if err != nil {
		return err
	}
	want := iu.User
	want.PrimaryTenant = b.Tenant
	want.CustomerRoles = nonNil(want.CustomerRoles)
	want.AccessControlEntities = nonNil(want.AccessControlEntities)
	if want.Type == "" {
		want.Type = UserService
	}
	if want.Role == "" {
		want.Role = RoleMember
	}
	var userID string
	var mutate func(*User) error
	if cur != nil {
		userID = curID
		uit.ID = curID
		if cur.Status == UserDeleted || cur.Status == UserDeleting {
			return fail("the user was deleted in keygate; it is not imported again")
		}
		mutate = func(u *User) error {
			u.Name, u.Description, u.Type = want.Name, want.Description, want.Type
			if cur.PrimaryTenant == b.Tenant {
				u.Role, u.CustomerRoles, u.AccessControlEntities = want.Role, want.CustomerRoles, want.AccessControlEntities
			}
			u.RequestLimit, u.Meta, u.Tags = want.RequestLimit, want.Meta, want.Tags
			return nil
		}
		if want.Type != cur.Type && opts.AdminOf != nil {
			foreign, err := foreignActiveTenant(tx, curID, opts.AdminOf)
			if err != nil {
				return err
			}
			if foreign != "" {
				return fail(fmt.Sprintf("the user also holds an ACTIVE permission in tenant %s, which the caller does not administer: "+
					"changing its type (%s to %s) needs an administrator of every tenant the user acts in, or a superadmin", foreign, cur.Type, want.Type))
			}
		}
		next := clone(*cur)
		_ = mutate(&next)
		next.UpdatedAt, next.Version = cur.UpdatedAt, cur.Version
		if ch := diff(cur, &next); len(ch) > 0 {
			uit.Action, uit.Changes = ImportUpdate, ch
		} else {
			uit.Action = ImportSkip
			uit.Reason = "unchanged"
		}
		if uit.Action == ImportUpdate {
			if err := validateUser(tx, &next); err != nil {
				if ruleError(err) {
					return fail(err.Error())
				}
				return err
			}
			if err := checkNameFree(tx, &next); err != nil {
				if ruleError(err) {
					return fail(err.Error())
				}
				return err
			}
		}
	} else {
		want.ID, want.Status = iu.User.ID, UserActive
		want.Origin = &Origin{Source: b.Source, ExternalID: iu.ExternalID, ImportedAt: r.now}
		want.Version, want.CreatedAt, want.UpdatedAt, want.LastUsedAt, want.Superadmin = 0, time.Time{}, time.Time{}, nil, false
		if want.ID == "" {
			id, err := freeUserID(tx)
			if err != nil {
				return err
			}
			want.ID = id
		} else if ok, err := exists(tx, tblUsers, want.ID); err != nil {
			return err
		} else if ok {
			return fail("the user id is not available")
		}
		if err := validateUser(tx, &want); err != nil {
			if ruleError(err) {
				return fail(err.Error())
			}
			return err
		}
		if err := checkNameFree(tx, &want); err != nil {
			if ruleError(err) {
				return fail(err.Error())
			}
			return err
		}
		userID = want.ID
		uit.ID, uit.Action = want.ID, ImportCreate
	}

	// Check every key before anything is written.
	type plannedKey struct {
		item  ImportItem
		key   Key
		cur   *Key
		extID string
	}
	var planned []plannedKey
	names := map[string]bool{}
	hashes := map[string]bool{}
	for i := range iu.Keys {
		ik := &iu.Keys[i]
		kit := ImportItem{Ref: ik.Ref, Kind: "key", ExternalID: ik.ExternalID, Name: ik.Name, UserID: userID}
		reason, pk, err := planKey(r, b, ik, userID, cur == nil, opts, names, hashes)
		if err != nil {
			return err
		}
		switch {
		case reason == "expired":
			kit.Action, kit.Reason = ImportSkip, "expired at "+ik.ExpiresAt.UTC().Format(time.RFC3339)
			res.add(kit)
			continue
		case reason != "":
			kit.Action, kit.Reason = ImportFail, reason
			if uit.Action == ImportCreate && len(iu.Keys) == 1 {
				// A user that exists only for this key fails with it.
				uit.Action, uit.Reason = ImportFail, "its only key "+ik.Ref+" failed"
				res.add(uit)
				res.add(kit)
				return nil
			}
			res.add(kit)
			continue
		}
		kit.ID = pk.key.ID
		if pk.cur != nil {
			next := pk.key
			if ch := diff(pk.cur, &next); len(ch) > 0 {
				kit.Action, kit.Changes = ImportUpdate, ch
			} else {
				kit.Action, kit.Reason = ImportSkip, "unchanged"
			}
		} else {
			kit.Action = ImportCreate
		}
		planned = append(planned, plannedKey{item: kit, key: pk.key, cur: pk.cur, extID: ik.ExternalID})
	}

	// Write the user, its permission and its keys.
	res.add(uit)
	switch uit.Action {
	case ImportCreate:
		u, err := createUserTx(r, want, "import")
		if err != nil {
			return fmt.Errorf("import %s: %w", iu.Ref, err)
		}
		if _, _, err := putPermissionTx(r, Permission{
			UserID: u.ID, TenantID: b.Tenant, Role: u.Role, Status: PermissionActive,
			CustomerRoles: u.CustomerRoles, AccessControlEntities: u.AccessControlEntities,
		}); err != nil {
			return fmt.Errorf("import %s: permission: %w", iu.Ref, err)
		}
		if err := tx.Put(lkExtID, uKey, []byte(u.ID)); err != nil {
			return fmt.Errorf("import %s: %w", iu.Ref, err)
		}
	case ImportUpdate:
		if _, err := updateUserTx(r, userID, 0, mutate, "import.update"); err != nil {
			return fmt.Errorf("import %s: %w", iu.Ref, err)
		}
	}
	for _, pk := range planned {
		res.add(pk.item)
		switch pk.item.Action {
		case ImportCreate:
			if _, err := createKeyTx(r, pk.key, "import"); err != nil {
				return fmt.Errorf("import %s: %w", pk.item.Ref, err)
			}
			if pk.extID != "" {
				if err := tx.Put(lkExtID, extIDKey(b.Tenant, b.Source, "k", pk.extID), []byte(pk.key.ID)); err != nil {
					return fmt.Errorf("import %s: %w", pk.item.Ref, err)
				}
			}
		case ImportUpdate:
			next := pk.key
			if _, err := updateKeyTx(r, userID, pk.key.ID, 0, func(k *Key) error {
				k.Name, k.ExpiresAt, k.Status, k.Meta, k.Tags = next.Name, next.ExpiresAt, next.Status, next.Meta, next.Tags
				return nil
			}, "import.update"); err != nil {
				return fmt.Errorf("import %s: %w", pk.item.Ref, err)
			}
		}
	}
	return nil
}

// checkNameFree fails when u's name is claimed by another user of its tenant.
func checkNameFree(tx Tx, u *User) error {
	holder, err := lookup(tx, lkUserName, userNameKey(u))
	if err != nil {
		return err
	}
	if holder != "" && holder != u.ID {
		return fmt.Errorf("user name %q is taken in tenant %s: %w", u.Name, u.PrimaryTenant, ErrConflict)
	}
	return nil
}

// keyPlan is a key to write: new (cur nil) or the matched one changed.
type keyPlan struct {
	key Key
	cur *Key
}

// planKey checks one key and returns the record to write (the current one
// changed as the file says, when matched), or the reason it fails
// ("expired" for a key whose expiry has passed).
func planKey(r *recorder, b *ImportBatch, ik *ImportKey, userID string, newUser bool, opts *ImportOptions,
	names, hashes map[string]bool,
) (string, *keyPlan, error) {
	tx := r.tx
	type out = keyPlan
	status := ik.Status
	if status == "" {
		status = KeyActive
	}
	if status != KeyActive && status != KeyInactive {
		return "status must be ACTIVE or INACTIVE", nil, nil
	}
	if ik.ExpiresAt.IsZero() {
		return "no expiry: give one (--expires)", nil, nil
	}
	if ik.Name == "" {
		return "no key name", nil, nil
	}
	v := &ValidationError{}
	checkMeta(v, "meta", ik.Meta)
	checkTags(v, "tags", ik.Tags)
	if err := v.Err(); err != nil {
		return err.Error(), nil, nil
	}
	if ik.ExternalID != "" && !newUser {
		id, cur, err := matchOrigin(tx, tblKeys, extIDKey(b.Tenant, b.Source, "k", ik.ExternalID), b.Source, ik.ExternalID,
			func(k *Key) *Origin { return k.Origin })
		if err != nil {
			return "", nil, err
		}
		if cur != nil {
			if cur.UserID != userID {
				return "the key belongs to another user in keygate", nil, nil
			}
			if cur.Status == KeyRevoked || cur.ReplacedBy != "" {
				return "", &out{key: *cur, cur: cur}, nil // nothing to change on a revoked or replaced key
			}
			next := clone(*cur)
			next.Name, next.Status = ik.Name, status
			if !ik.ExpiresDefault {
				next.ExpiresAt = ik.ExpiresAt.UTC()
			}
			next.Meta, next.Tags = ik.Meta, ik.Tags
			if lower(next.Name) != lower(cur.Name) {
				if names[lower(next.Name)] {
					return fmt.Sprintf("key name %q twice for this user", ik.Name), nil, nil
				}
				if holder, err := lookup(tx, lkKeyName, userID+sep+lower(next.Name)); err != nil {
					return "", nil, err
				} else if holder != "" && holder != id {
					return fmt.Sprintf("key name %q is taken for this user", ik.Name), nil, nil
				}
			}
			names[lower(next.Name)] = true
			return "", &out{key: next, cur: cur}, nil
		}
	}
	if !ik.ExpiresAt.After(r.now) {
		return "expired", nil, nil
	}
	k := Key{
		ID: NewID(), Name: ik.Name, UserID: userID, TenantID: b.Tenant, ExpiresAt: ik.ExpiresAt.UTC(), Status: status,
		Meta: ik.Meta, Tags: ik.Tags, Origin: &Origin{Source: b.Source, ExternalID: ik.ExternalID, ImportedAt: r.now},
	}
	switch {
	case ik.Plaintext != "":
		if _, ok := ParseAccessKey(ik.Plaintext); ok {
			return "the key has keygate's own kg_ shape: it cannot be imported", nil, nil
		}
		if err := ValidateForeignKey(ik.Plaintext); err != nil {
			return err.Error(), nil, nil
		}
		k.Hash = opts.Hasher.Sum(ik.Plaintext)
		k.Last4 = ik.Plaintext[len(ik.Plaintext)-4:]
	case ik.HashScheme != "":
		ls, err := ParseLegacyScheme(ik.HashScheme)
		if err != nil {
			return err.Error(), nil, nil
		}
		if len(ik.Hash) != DigestSize(ls.Name) {
			return fmt.Sprintf("a %s hash has %d bytes, not %d", ls.Name, DigestSize(ls.Name), len(ik.Hash)), nil, nil
		}
		k.HashScheme, k.Hash = ls.String(), slices.Clone(ik.Hash)
	default:
		return "neither the key nor its hash", nil, nil
	}
	hk := keyHashKey(&k)
	if hashes[hk] {
		return "the same key twice in the file", nil, nil
	}
	if holder, err := lookup(tx, lkKeyHash, hk); err != nil {
		return "", nil, err
	} else if holder != "" {
		return "a key with the same value is already imported", nil, nil
	}
	if names[lower(k.Name)] {
		return fmt.Sprintf("key name %q twice for this user", k.Name), nil, nil
	}
	if !newUser {
		if holder, err := lookup(tx, lkKeyName, userID+sep+lower(k.Name)); err != nil {
			return "", nil, err
		} else if holder != "" {
			return fmt.Sprintf("key name %q is taken for this user", k.Name), nil, nil
		}
	}
	if err := validateKey(&k); err != nil {
		return err.Error(), nil, nil
	}
	hashes[hk], names[lower(k.Name)] = true, true
	return "", &out{key: k}, nil
}

// MaxForeignKey is the longest imported key keygate accepts, in bytes.
const MaxForeignKey = 512

// ValidateForeignKey checks the value of an imported key: 8 to
// MaxForeignKey visible ASCII characters (what the gateway accepts from a
// header or query parameter).
func ValidateForeignKey(v string) error {
	if len(v) < 8 || len(v) > MaxForeignKey {
		return fmt.Errorf("the key must be 8 to %d characters", MaxForeignKey)
	}
	for i := 0; i < len(v); i++ {
		if v[i] <= 0x20 || v[i] >= 0x7f {
			return errors.New("the key may contain only visible ASCII characters")
		}
	}
	return nil
}

// KeyHash is one hash a key may be stored under: keygate's own (Scheme
// "") or a legacy scheme's.
type KeyHash struct {
	Scheme string
	Sum    []byte
}

// FindKeyByHash returns the id of the imported key stored under one of
// hashes, and which one, in one read.
func (s *kvStore) FindKeyByHash(ctx context.Context, hashes []KeyHash) (string, int, error) {
	if len(hashes) == 0 {
		return "", -1, fmt.Errorf("key hash: %w", ErrNotFound)
	}
	ids := make([]string, len(hashes))
	for i, h := range hashes {
		ids[i] = hashLookupKey(h.Scheme, h.Sum)
	}
	var vals [][]byte
	err := s.b.View(ctx, func(tx Tx) (err error) {
		vals, err = tx.GetMany(lkKeyHash, ids)
		return err
	})
	if err != nil {
		return "", -1, fmt.Errorf("loading key hashes: %w", err)
	}
	for i, v := range vals {
		if len(v) > 0 {
			return string(v), i, nil
		}
	}
	return "", -1, fmt.Errorf("key hash: %w", ErrNotFound)
}

// PendingHashSchemes returns, per legacy scheme, how many keys not REVOKED
// still wait for their first use to be re-hashed.
func (s *kvStore) PendingHashSchemes(ctx context.Context) (map[string]int, error) {
	var out map[string]int
	err := s.b.View(ctx, func(tx Tx) (err error) {
		out, err = readPending(tx)
		return err
	})
	return out, err
}

// RehashKey gives a key found by its legacy hash keygate's own hash.
func (s *kvStore) RehashKey(ctx context.Context, keyID, scheme string, legacy, sum []byte, last4 string) (Key, error) {
	var out Key
	err := s.update(ctx, "system", func(r *recorder) error {
		cur, err := getJSON[Key](r.tx, tblKeys, keyID, "key "+keyID)
		if err != nil {
			return err
		}
		if cur.HashScheme == "" && subtle.ConstantTimeCompare(cur.Hash, sum) == 1 {
			out = cur // another node was first
			return nil
		}
		if scheme == "" || cur.HashScheme != scheme || subtle.ConstantTimeCompare(cur.Hash, legacy) != 1 {
			return fmt.Errorf("key %s is not stored under that legacy hash: %w", keyID, ErrConflict)
		}
		if cur.Status == KeyRevoked {
			return fmt.Errorf("key %s is revoked: %w", keyID, ErrConflict)
		}
		next := clone(cur)
		next.Hash, next.HashScheme, next.RehashedFrom = bytes.Clone(sum), "", scheme
		at := r.now
		next.RehashedAt = &at
		if next.Last4 == "" {
			next.Last4 = last4
		}
		if err := writeKey(r, &cur, &next, "key.rehash"); err != nil {
			return err
		}
		out = next
		return nil
	})
	return out, err
}

// foreignActiveTenant returns a tenant in which user userID holds an ACTIVE
// permission and which adminOf refuses, or "" when there is none.
func foreignActiveTenant(tx Tx, userID string, adminOf func(string) bool) (string, error) {
	tenants, err := permTenants(tx, userID)
	if err != nil {
		return "", err
	}
	for _, t := range tenants {
		if adminOf(t) {
			continue
		}
		p, err := permOf(tx, userID, t)
		if isNotFound(err) {
			continue
		} else if err != nil {
			return "", err
		}
		if p.Status == PermissionActive {
			return t, nil
		}
	}
	return "", nil
}
