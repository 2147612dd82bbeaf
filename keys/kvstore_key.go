package keys

import (
	"bytes"
	"context"
	"fmt"
	"time"
)

// keyNameKey is the key of a key's name claim. Only current keys (neither
// REVOKED nor replaced) hold one.
func keyNameKey(k *Key) string {
	if k == nil || k.Status == KeyRevoked || k.ReplacedBy != "" {
		return ""
	}
	return k.UserID + sep + lower(k.Name)
}

func keyIndexes(k *Key) []indexEntry {
	if k == nil {
		return nil
	}
	return append([]indexEntry{{"u:" + k.UserID + ":keys", timeKey(k.CreatedAt)}}, keyExpiryIndexes(k)...)
}

// userKeys returns the keys of a user, oldest first.
func userKeys(tx Tx, userID string) ([]Key, error) {
	ids, err := allIDs(tx, "u:"+userID+":keys", false)
	if err != nil {
		return nil, err
	}
	return getManyJSON[Key](tx, tblKeys, ids)
}

// writeKey stamps and stores next (old nil when new), moves its name claim
// and index entries, records history and queues the invalidation.
func writeKey(r *recorder, old, next *Key, action string) error {
	stamp(&next.Version, &next.CreatedAt, &next.UpdatedAt, r.now)
	if err := claim(r.tx, lkKeyName, keyNameKey(old), keyNameKey(next), next.ID,
		fmt.Sprintf("key name %q of user %s", next.Name, next.UserID)); err != nil {
		return err
	}
	if err := putJSON(r.tx, tblKeys, next.ID, next); err != nil {
		return err
	}
	if err := syncIndexes(r.tx, next.ID, keyIndexes(old), keyIndexes(next)); err != nil {
		return err
	}
	if err := r.record(next.UserID, action, "key:"+next.ID, diff(old, next)); err != nil {
		return err
	}
	if err := emitKey(r, old, next, action); err != nil {
		return err
	}
	r.notify(next.UserID, next.ID)
	return nil
}

// revokeKey marks k REVOKED.
func revokeKey(r *recorder, k *Key) error {
	next := clone(*k)
	next.Status = KeyRevoked
	return writeKey(r, k, &next, "key.revoke")
}

func validateKey(k *Key) error {
	v := &ValidationError{}
	validID(v, "id", k.ID)
	required(v, "name", k.Name)
	required(v, "userId", k.UserID)
	required(v, "tenant", k.TenantID)
	if len(k.Hash) == 0 {
		v.Add("hash", "is required")
	}
	if k.ExpiresAt.IsZero() {
		v.Add("expiresAt", "is required")
	}
	oneOf(v, "status", k.Status, KeyActive, KeyInactive, KeyRevoked)
	return v.Err()
}

// prepareNewKey normalizes and validates a key about to be created.
func prepareNewKey(k *Key) error {
	if k.Status == "" {
		k.Status = KeyActive
	}
	k.ExpiresAt = k.ExpiresAt.UTC()
	k.Version, k.CreatedAt, k.UpdatedAt, k.LastUsedAt = 0, time.Time{}, time.Time{}, nil
	k.ReplacedBy, k.DisableAt = "", nil
	if err := validateKey(k); err != nil {
		return err
	}
	if k.Status == KeyRevoked {
		return fieldError("status", "must be ACTIVE or INACTIVE")
	}
	return nil
}

// checkKeyOwner verifies the user may get a new key and the key's tenant
// and id are usable.
func checkKeyOwner(tx Tx, k *Key) error {
	u, err := getJSON[User](tx, tblUsers, k.UserID, "user "+k.UserID)
	if err != nil {
		return err
	}
	if u.Status == UserDeleting || u.Status == UserDeleted {
		return fmt.Errorf("user %s is %s: %w", u.ID, u.Status, ErrConflict)
	}
	if err := activeTenant(tx, k.TenantID, "tenant"); err != nil {
		return err
	}
	if ok, err := exists(tx, tblKeys, k.ID); err != nil {
		return err
	} else if ok {
		return fmt.Errorf("key %s exists: %w", k.ID, ErrConflict)
	}
	return nil
}

// CreateKey stores a new access key.
func (s *kvStore) CreateKey(ctx context.Context, k Key, actor string) (Key, error) {
	if err := prepareNewKey(&k); err != nil {
		return Key{}, err
	}
	var out Key
	err := s.update(ctx, actor, func(r *recorder) error {
		k := k
		if err := checkKeyOwner(r.tx, &k); err != nil {
			return err
		}
		if err := writeKey(r, nil, &k, "key.create"); err != nil {
			return err
		}
		out = k
		return nil
	})
	return out, err
}

// GetKey returns a key by id.
func (s *kvStore) GetKey(ctx context.Context, id string) (Key, error) {
	var k Key
	err := s.b.View(ctx, func(tx Tx) (err error) {
		k, err = getJSON[Key](tx, tblKeys, id, "key "+id)
		return err
	})
	return k, err
}

// ownedKey loads a key of a user; a key of another user is not found.
func ownedKey(tx Tx, userID, keyID string) (Key, error) {
	what := "key " + keyID + " of user " + userID
	k, err := getJSON[Key](tx, tblKeys, keyID, what)
	if err != nil {
		return Key{}, err
	}
	if k.UserID != userID {
		return Key{}, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return k, nil
}

// mutableKey loads a key that may change: owned, at the expected version
// and not REVOKED.
func mutableKey(tx Tx, userID, keyID string, version int64) (Key, error) {
	k, err := ownedKey(tx, userID, keyID)
	if err != nil {
		return Key{}, err
	}
	if err := checkVersion("key "+keyID, version, k.Version); err != nil {
		return Key{}, err
	}
	if k.Status == KeyRevoked {
		return Key{}, fmt.Errorf("key %s is revoked: %w", keyID, ErrConflict)
	}
	return k, nil
}

// UpdateKey changes name, expiry or status (ACTIVE ⇄ INACTIVE).
func (s *kvStore) UpdateKey(ctx context.Context, userID, keyID string, version int64, mutate func(*Key) error, actor string) (Key, error) {
	var out Key
	err := s.update(ctx, actor, func(r *recorder) error {
		cur, err := mutableKey(r.tx, userID, keyID, version)
		if err != nil {
			return err
		}
		next := clone(cur)
		if err := mutate(&next); err != nil {
			return err
		}
		v := &ValidationError{}
		for field, changed := range map[string]bool{
			"id":         next.ID != cur.ID,
			"userId":     next.UserID != cur.UserID,
			"tenant":     next.TenantID != cur.TenantID,
			"hash":       !bytes.Equal(next.Hash, cur.Hash),
			"last4":      next.Last4 != cur.Last4,
			"replacedBy": next.ReplacedBy != cur.ReplacedBy,
		} {
			if changed {
				v.Add(field, "cannot be changed")
			}
		}
		if err := v.Err(); err != nil {
			return err
		}
		next.Version, next.CreatedAt, next.UpdatedAt, next.LastUsedAt = cur.Version, cur.CreatedAt, cur.UpdatedAt, cur.LastUsedAt
		next.DisableAt = cur.DisableAt
		next.ExpiresAt = next.ExpiresAt.UTC()
		if next.Status == KeyRevoked {
			return fmt.Errorf("key %s: revoke it instead of setting REVOKED: %w", keyID, ErrConflict)
		}
		if err := validateKey(&next); err != nil {
			return err
		}
		if len(diff(&cur, &next)) == 0 {
			out = cur
			return nil
		}
		if err := writeKey(r, &cur, &next, "key.update"); err != nil {
			return err
		}
		out = next
		return nil
	})
	return out, err
}

// RevokeKey marks a key REVOKED for good.
func (s *kvStore) RevokeKey(ctx context.Context, userID, keyID string, version int64, actor string) (Key, error) {
	var out Key
	err := s.update(ctx, actor, func(r *recorder) error {
		cur, err := mutableKey(r.tx, userID, keyID, version)
		if err != nil {
			return err
		}
		if err := revokeKey(r, &cur); err != nil {
			return err
		}
		out, err = ownedKey(r.tx, userID, keyID)
		return err
	})
	return out, err
}

// ReplaceKey stores next in place of the old key and disables the old one,
// at once (grace 0: INACTIVE) or at now+grace (DisableAt). next takes the
// old key's user, tenant and name, and its expiry when next has none; the
// old key, being replaced, no longer holds its name.
func (s *kvStore) ReplaceKey(ctx context.Context, userID, oldKeyID string, next Key, grace time.Duration, actor string) (Key, Key, error) {
	if grace < 0 {
		return Key{}, Key{}, fieldError("grace", "must not be negative")
	}
	var newKey, oldKey Key
	err := s.update(ctx, actor, func(r *recorder) error {
		cur, err := mutableKey(r.tx, userID, oldKeyID, 0)
		if err != nil {
			return err
		}
		if cur.ReplacedBy != "" {
			return fmt.Errorf("key %s is already replaced by %s: %w", oldKeyID, cur.ReplacedBy, ErrConflict)
		}
		nk := next
		nk.UserID, nk.TenantID, nk.Name = cur.UserID, cur.TenantID, cur.Name
		if nk.ExpiresAt.IsZero() {
			nk.ExpiresAt = cur.ExpiresAt
		}
		if err := prepareNewKey(&nk); err != nil {
			return err
		}
		if err := checkKeyOwner(r.tx, &nk); err != nil {
			return err
		}
		old := clone(cur)
		old.ReplacedBy = nk.ID
		if grace == 0 {
			old.Status = KeyInactive
		} else {
			at := r.now.Add(grace)
			old.DisableAt = &at
		}
		// The old key releases its name before the new one claims it.
		if err := writeKey(r, &cur, &old, "key.replace"); err != nil {
			return err
		}
		if err := writeKey(r, nil, &nk, "key.create"); err != nil {
			return err
		}
		newKey, oldKey = nk, old
		return nil
	})
	return newKey, oldKey, err
}

// ListKeys returns the keys of a user, oldest first.
func (s *kvStore) ListKeys(ctx context.Context, userID string) ([]Key, error) {
	var out []Key
	err := s.b.View(ctx, func(tx Tx) (err error) {
		if ok, err := exists(tx, tblUsers, userID); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("user %s: %w", userID, ErrNotFound)
		}
		out, err = userKeys(tx, userID)
		return err
	})
	return nonNilItems(out), err
}
