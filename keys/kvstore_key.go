package keys

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
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

// keyHashKey is the key of an imported key's entry in the hash lookup
// (scheme:hex(hash); "kg" for keygate's own hash): only imported keys that
// are not REVOKED are found by their hash.
func keyHashKey(k *Key) string {
	if k == nil || k.Origin == nil || k.Status == KeyRevoked {
		return ""
	}
	return hashLookupKey(k.HashScheme, k.Hash)
}

// hashLookupKey is the lookup key of a hash under scheme ("" = keygate's).
func hashLookupKey(scheme string, sum []byte) string {
	if scheme == "" {
		scheme = "kg"
	}
	return scheme + ":" + hex.EncodeToString(sum)
}

// pendingScheme is the legacy scheme a key waits under to be re-hashed,
// "" when none (keygate's own hash, or REVOKED).
func pendingScheme(k *Key) string {
	if k == nil || k.Status == KeyRevoked {
		return ""
	}
	return k.HashScheme
}

// metaHashSchemes names the meta record counting, per legacy scheme, the
// keys still waiting to be re-hashed (JSON object scheme → count).
const metaHashSchemes = "hashschemes"

// readPending returns the counts of metaHashSchemes.
func readPending(tx Tx) (map[string]int, error) {
	out := map[string]int{}
	b, err := tx.Get(tblMeta, metaHashSchemes)
	if isNotFound(err) {
		return out, nil
	} else if err != nil {
		return nil, fmt.Errorf("loading pending key hash schemes: %w", err)
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("decoding pending key hash schemes: %w", err)
	}
	return out, nil
}

// movePending moves one key's count from scheme old to scheme next.
func movePending(tx Tx, old, next string) error {
	if old == next {
		return nil
	}
	counts, err := readPending(tx)
	if err != nil {
		return err
	}
	if old != "" {
		if counts[old]--; counts[old] <= 0 {
			delete(counts, old)
		}
	}
	if next != "" {
		counts[next]++
	}
	return putJSON(tx, tblMeta, metaHashSchemes, counts)
}

func keyIndexes(k *Key) []indexEntry {
	if k == nil {
		return nil
	}
	out := append([]indexEntry{{"u:" + k.UserID + ":keys", timeKey(k.CreatedAt)}}, keyExpiryIndexes(k)...)
	if expiryIndexed(k) {
		out = append(out, indexEntry{keyExpiryIndex(k.TenantID), timeKey(k.ExpiresAt)})
	}
	return out
}

// keyExpiryIndex orders a tenant's ACTIVE, not replaced keys by expiry
// (ExpiringKeys). Expired keys stay in it until they change.
func keyExpiryIndex(tenant string) string { return "t:" + tenant + ":keys:by:expiresAt" }

// expiryIndexed reports whether k belongs in its tenant's expiry index:
// it works until it expires, unless someone acts.
func expiryIndexed(k *Key) bool { return k.Status == KeyActive && k.ReplacedBy == "" }

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
	if err := claim(r.tx, lkKeyHash, keyHashKey(old), keyHashKey(next), next.ID,
		"an imported key with the same value"); err != nil {
		return err
	}
	if err := movePending(r.tx, pendingScheme(old), pendingScheme(next)); err != nil {
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
	if k.HashScheme != "" {
		ls, err := ParseLegacyScheme(k.HashScheme)
		switch {
		case err != nil:
			v.Add("hashScheme", err.Error())
		case k.Origin == nil:
			v.Add("hashScheme", "is only for imported keys")
		case len(k.Hash) != DigestSize(ls.Name):
			v.Add("hash", fmt.Sprintf("must be %d bytes for %s", DigestSize(ls.Name), ls.Name))
		}
	} else if len(k.Hash) != 32 && len(k.Hash) != 0 {
		v.Add("hash", "must be 32 bytes")
	}
	checkMeta(v, "meta", k.Meta)
	checkTags(v, "tags", k.Tags)
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
	err := s.update(ctx, actor, func(r *recorder) (err error) {
		out, err = createKeyTx(r, k, "key.create")
		return err
	})
	return out, err
}

// createKeyTx is CreateKey's transaction (k prepared), recorded under action.
func createKeyTx(r *recorder, k Key, action string) (Key, error) {
	if err := checkKeyOwner(r.tx, &k); err != nil {
		return Key{}, err
	}
	if err := writeKey(r, nil, &k, action); err != nil {
		return Key{}, err
	}
	return k, nil
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
	err := s.update(ctx, actor, func(r *recorder) (err error) {
		out, err = updateKeyTx(r, userID, keyID, version, mutate, "key.update")
		return err
	})
	return out, err
}

// updateKeyTx is UpdateKey's transaction, recorded under action.
func updateKeyTx(r *recorder, userID, keyID string, version int64, mutate func(*Key) error, action string) (Key, error) {
	var out Key
	err := func() error {
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
			"id":           next.ID != cur.ID,
			"userId":       next.UserID != cur.UserID,
			"tenant":       next.TenantID != cur.TenantID,
			"hash":         !bytes.Equal(next.Hash, cur.Hash),
			"last4":        next.Last4 != cur.Last4,
			"replacedBy":   next.ReplacedBy != cur.ReplacedBy,
			"origin":       !reflect.DeepEqual(next.Origin, cur.Origin),
			"hashScheme":   next.HashScheme != cur.HashScheme,
			"rehashedFrom": next.RehashedFrom != cur.RehashedFrom,
			"rehashedAt":   !reflect.DeepEqual(next.RehashedAt, cur.RehashedAt),
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
		if err := writeKey(r, &cur, &next, action); err != nil {
			return err
		}
		out = next
		return nil
	}()
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

// metaKeyExpiryIndexed marks, in the meta table, that the keys stored before
// the expiry index existed have been added to it.
const metaKeyExpiryIndexed = "index:keys-by-expiresAt"

// ExpiringKeys pages through the ACTIVE, not replaced keys valid in tenant
// whose expiry is in [from, before), soonest first. The index has every
// such key's expiry, expired ones included; the range is found by binary
// search over it, so a call costs O(log n + page) reads.
func (s *kvStore) ExpiringKeys(ctx context.Context, tenant string, from, before time.Time, page, size int) (Page[Key], error) {
	ps, err := normalize(ListOptions{Page: page, Size: size}, []string{"expiresAt"}, Sort{Field: "expiresAt"})
	if err != nil {
		return Page[Key]{}, err
	}
	if err := s.indexKeyExpiries(ctx); err != nil {
		return Page[Key]{}, err
	}
	index := keyExpiryIndex(tenant)
	var out Page[Key]
	err = s.b.View(ctx, func(tx Tx) error {
		n, err := tx.IndexCount(index)
		if err != nil {
			return fmt.Errorf("counting %s: %w", index, err)
		}
		lo, err := firstExpiring(tx, index, n, from)
		if err != nil {
			return err
		}
		hi, err := firstExpiring(tx, index, n, before)
		if err != nil {
			return err
		}
		out = Page[Key]{Items: []Key{}, Total: max(0, hi-lo)}
		start := lo + ps.offset
		if start >= hi {
			return nil
		}
		ids, err := tx.IndexRange(index, start, min(ps.size, hi-start), false)
		if err != nil {
			return fmt.Errorf("reading index %s: %w", index, err)
		}
		items, err := getManyJSON[Key](tx, tblKeys, ids)
		out.Items = nonNilItems(items)
		return err
	})
	return out, err
}

// firstExpiring returns the position in a key expiry index of n entries of
// the first key that expires at or after t (n when none does).
func firstExpiring(tx Tx, index string, n int, t time.Time) (int, error) {
	lo, hi := 0, n
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		ids, err := tx.IndexRange(index, mid, 1, false)
		if err != nil {
			return 0, fmt.Errorf("reading index %s: %w", index, err)
		}
		if len(ids) == 0 {
			return mid, nil
		}
		k, err := getJSON[Key](tx, tblKeys, ids[0], "key "+ids[0])
		if isNotFound(err) {
			// An entry without its key cannot be placed; the rest still
			// sorts by expiry, so treat it as expired and move on.
			lo = mid + 1
			continue
		}
		if err != nil {
			return 0, err
		}
		if k.ExpiresAt.Before(t) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// indexKeyExpiries adds the keys stored before the expiry index existed to
// it, once per store (a meta flag remembers it). Keys written since are
// indexed by writeKey; adding an entry twice is harmless.
func (s *kvStore) indexKeyExpiries(ctx context.Context) error {
	var done bool
	if err := s.b.View(ctx, func(tx Tx) error {
		ok, err := exists(tx, tblMeta, metaKeyExpiryIndexed)
		done = ok
		return err
	}); err != nil || done {
		return err
	}
	var users []string
	if err := s.b.View(ctx, func(tx Tx) (err error) {
		users, err = allIDs(tx, userScope("")+"id", false)
		return err
	}); err != nil {
		return err
	}
	for len(users) > 0 {
		batch := users[:min(len(users), retentionBatch)]
		users = users[len(batch):]
		err := s.b.Update(ctx, func(tx Tx) error {
			for _, u := range batch {
				keys, err := userKeys(tx, u)
				if err != nil {
					return err
				}
				for i := range keys {
					if k := &keys[i]; expiryIndexed(k) {
						if err := tx.IndexAdd(keyExpiryIndex(k.TenantID), timeKey(k.ExpiresAt), k.ID); err != nil {
							return fmt.Errorf("indexing key %s: %w", k.ID, err)
						}
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return s.b.Update(ctx, func(tx Tx) error {
		return tx.Put(tblMeta, metaKeyExpiryIndexed, []byte("1"))
	})
}
