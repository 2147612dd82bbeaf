package keys

import (
	"bytes"
	"context"
	"fmt"
	"time"
)

// secretKey is a secret's id in the secrets table and the secrets:all index.
func secretKey(userID, secretID string) string { return userID + sep + secretID }

// secretIndexes returns a secret's entries in the user's index (member:
// secret id) and in secrets:all (member: secretKey).
func secretIndexes(s *Secret) (own, all []indexEntry) {
	if s == nil {
		return nil, nil
	}
	return []indexEntry{{"u:" + s.UserID + ":secrets", timeKey(s.CreatedAt)}},
		[]indexEntry{{"secrets:all", secretKey(s.UserID, s.ID)}}
}

// syncSecretIndexes moves a secret's index entries from old to next.
func syncSecretIndexes(tx Tx, old, next *Secret) error {
	s := next
	if s == nil {
		s = old
	}
	oldOwn, oldAll := secretIndexes(old)
	newOwn, newAll := secretIndexes(next)
	if err := syncIndexes(tx, s.ID, oldOwn, newOwn); err != nil {
		return err
	}
	return syncIndexes(tx, secretKey(s.UserID, s.ID), oldAll, newAll)
}

// userSecrets returns the secrets of a user, oldest first.
func userSecrets(tx Tx, userID string) ([]Secret, error) {
	ids, err := allIDs(tx, "u:"+userID+":secrets", false)
	if err != nil {
		return nil, err
	}
	for i, id := range ids {
		ids[i] = secretKey(userID, id)
	}
	return getManyJSON[Secret](tx, tblSecrets, ids)
}

// writeSecret stamps and stores next (old nil when new), records history and
// queues the invalidation.
func writeSecret(r *recorder, old, next *Secret, action string) error {
	stamp(&next.Version, &next.CreatedAt, &next.UpdatedAt, r.now)
	if err := putJSON(r.tx, tblSecrets, secretKey(next.UserID, next.ID), next); err != nil {
		return err
	}
	if err := syncSecretIndexes(r.tx, old, next); err != nil {
		return err
	}
	if err := r.record(next.UserID, action, "secret:"+next.ID, diff(old, next)); err != nil {
		return err
	}
	if err := emitSecret(r, old, next, action); err != nil {
		return err
	}
	r.notify(next.UserID, "")
	return nil
}

// deleteSecretRecord removes a secret and its index entries.
func deleteSecretRecord(tx Tx, s *Secret) error {
	if err := tx.Delete(tblSecrets, secretKey(s.UserID, s.ID)); err != nil {
		return fmt.Errorf("deleting secret %s: %w", s.ID, err)
	}
	return syncSecretIndexes(tx, s, nil)
}

// checkLiveSecrets fails with ErrConflict when the user already holds
// MaxLiveSecrets ACTIVE secrets other than except.
func checkLiveSecrets(tx Tx, userID, except string) error {
	all, err := userSecrets(tx, userID)
	if err != nil {
		return err
	}
	live := 0
	for _, s := range all {
		if s.Status == SecretActive && s.ID != except {
			live++
		}
	}
	if live >= MaxLiveSecrets {
		return fmt.Errorf("user %s already has %d active secrets: %w", userID, live, ErrConflict)
	}
	return nil
}

func validateSecret(s *Secret) error {
	v := &ValidationError{}
	validID(v, "id", s.ID)
	required(v, "userId", s.UserID)
	if len(s.Sealed) == 0 {
		v.Add("sealed", "is required")
	}
	oneOf(v, "status", s.Status, SecretActive, SecretInactive)
	return v.Err()
}

// CreateSecret stores a new signing secret. An empty ID is generated.
func (s *kvStore) CreateSecret(ctx context.Context, sec Secret, actor string) (Secret, error) {
	if sec.ID == "" {
		sec.ID = NewID()
	}
	if sec.Status == "" {
		sec.Status = SecretActive
	}
	sec.Version, sec.CreatedAt, sec.UpdatedAt, sec.LastUsedAt = 0, time.Time{}, time.Time{}, nil
	if err := validateSecret(&sec); err != nil {
		return Secret{}, err
	}
	var out Secret
	err := s.update(ctx, actor, func(r *recorder) error {
		sec := sec
		u, err := getJSON[User](r.tx, tblUsers, sec.UserID, "user "+sec.UserID)
		if err != nil {
			return err
		}
		if u.Status == UserDeleting || u.Status == UserDeleted {
			return fmt.Errorf("user %s is %s: %w", u.ID, u.Status, ErrConflict)
		}
		if err := activeTenant(r.tx, u.PrimaryTenant, "userId"); err != nil {
			return err
		}
		if ok, err := exists(r.tx, tblSecrets, secretKey(sec.UserID, sec.ID)); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("secret %s exists: %w", sec.ID, ErrConflict)
		}
		if sec.Status == SecretActive {
			if err := checkLiveSecrets(r.tx, sec.UserID, ""); err != nil {
				return err
			}
		}
		if err := writeSecret(r, nil, &sec, "secret.create"); err != nil {
			return err
		}
		out = sec
		return nil
	})
	return out, err
}

// GetSecret returns one secret of a user.
func (s *kvStore) GetSecret(ctx context.Context, userID, secretID string) (Secret, error) {
	var out Secret
	err := s.b.View(ctx, func(tx Tx) (err error) {
		out, err = getJSON[Secret](tx, tblSecrets, secretKey(userID, secretID), "secret "+secretID+" of user "+userID)
		return err
	})
	return out, err
}

// versionedSecret loads a secret at the expected version.
func versionedSecret(tx Tx, userID, secretID string, version int64) (Secret, error) {
	cur, err := getJSON[Secret](tx, tblSecrets, secretKey(userID, secretID), "secret "+secretID+" of user "+userID)
	if err != nil {
		return Secret{}, err
	}
	return cur, checkVersion("secret "+secretID, version, cur.Version)
}

// UpdateSecret changes name or status.
func (s *kvStore) UpdateSecret(ctx context.Context, userID, secretID string, version int64, mutate func(*Secret) error, actor string) (Secret, error) {
	var out Secret
	err := s.update(ctx, actor, func(r *recorder) error {
		cur, err := versionedSecret(r.tx, userID, secretID, version)
		if err != nil {
			return err
		}
		next := clone(cur)
		if err := mutate(&next); err != nil {
			return err
		}
		v := &ValidationError{}
		if next.ID != cur.ID {
			v.Add("id", "cannot be changed")
		}
		if next.UserID != cur.UserID {
			v.Add("userId", "cannot be changed")
		}
		if !bytes.Equal(next.Sealed, cur.Sealed) {
			v.Add("sealed", "cannot be changed")
		}
		if err := v.Err(); err != nil {
			return err
		}
		next.Version, next.CreatedAt, next.UpdatedAt, next.LastUsedAt = cur.Version, cur.CreatedAt, cur.UpdatedAt, cur.LastUsedAt
		if err := validateSecret(&next); err != nil {
			return err
		}
		if len(diff(&cur, &next)) == 0 {
			out = cur
			return nil
		}
		if next.Status == SecretActive && cur.Status != SecretActive {
			if err := checkLiveSecrets(r.tx, userID, secretID); err != nil {
				return err
			}
		}
		if err := writeSecret(r, &cur, &next, "secret.update"); err != nil {
			return err
		}
		out = next
		return nil
	})
	return out, err
}

// DeleteSecret removes a secret.
func (s *kvStore) DeleteSecret(ctx context.Context, userID, secretID string, version int64, actor string) error {
	return s.update(ctx, actor, func(r *recorder) error {
		cur, err := versionedSecret(r.tx, userID, secretID, version)
		if err != nil {
			return err
		}
		if err := deleteSecretRecord(r.tx, &cur); err != nil {
			return err
		}
		if err := r.record(userID, "secret.delete", "secret:"+secretID, diff(&cur, (*Secret)(nil))); err != nil {
			return err
		}
		if err := emitSecret(r, &cur, nil, "secret.delete"); err != nil {
			return err
		}
		r.notify(userID, "")
		return nil
	})
}

// ListSecrets returns the secrets of a user, oldest first.
func (s *kvStore) ListSecrets(ctx context.Context, userID string) ([]Secret, error) {
	var out []Secret
	err := s.b.View(ctx, func(tx Tx) (err error) {
		if ok, err := exists(tx, tblUsers, userID); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("user %s: %w", userID, ErrNotFound)
		}
		out, err = userSecrets(tx, userID)
		return err
	})
	return nonNilItems(out), err
}
