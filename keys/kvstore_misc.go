package keys

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"
)

// History returns a user's changelog, newest first.
func (s *kvStore) History(ctx context.Context, userID string, page, size int) (Page[HistoryEntry], error) {
	ps, err := normalize(ListOptions{Page: page, Size: size}, []string{"at"}, Sort{Field: "at", Desc: true})
	if err != nil {
		return Page[HistoryEntry]{}, err
	}
	var p Page[HistoryEntry]
	err = s.b.View(ctx, func(tx Tx) error {
		if ok, err := exists(tx, tblUsers, userID); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("user %s: %w", userID, ErrNotFound)
		}
		index := "u:" + userID + ":history"
		total, err := tx.IndexCount(index)
		if err != nil {
			return fmt.Errorf("counting history of user %s: %w", userID, err)
		}
		ids, err := tx.IndexRange(index, ps.offset, ps.size, true)
		if err != nil {
			return fmt.Errorf("reading history of user %s: %w", userID, err)
		}
		for i, id := range ids {
			ids[i] = userID + sep + id
		}
		items, err := getManyJSON[HistoryEntry](tx, tblHistory, ids)
		p = Page[HistoryEntry]{Items: nonNilItems(items), Total: total}
		return err
	})
	return p, err
}

// AppendActivity records one admin API call. A zero At means now.
func (s *kvStore) AppendActivity(ctx context.Context, a Activity) error {
	if a.At.IsZero() {
		a.At = s.clock()
	}
	a.At = a.At.UTC()
	return s.b.Update(ctx, func(tx Tx) error {
		id := NewID()
		if err := putJSON(tx, tblActivity, id, a); err != nil {
			return err
		}
		if err := tx.IndexAdd("activity:by:at", timeKey(a.At), id); err != nil {
			return fmt.Errorf("indexing activity: %w", err)
		}
		return nil
	})
}

// ListActivity pages through the activity log, newest first (sort field: at).
func (s *kvStore) ListActivity(ctx context.Context, q ActivityQuery) (Page[Activity], error) {
	ps, err := normalize(q.ListOptions, []string{"at"}, Sort{Field: "at", Desc: true})
	if err != nil {
		return Page[Activity]{}, err
	}
	l := lister[Activity]{
		table:   tblActivity,
		index:   func(string) string { return "activity:by:at" },
		sortKey: func(a *Activity, _ string) string { return timeKey(a.At) },
		id:      func(a *Activity) string { return timeKey(a.At) },
	}
	if q.Actor != "" || q.Tenant != "" || !q.From.IsZero() || !q.To.IsZero() {
		l.filter = keep(func(a *Activity) bool {
			return (q.Actor == "" || a.Actor == q.Actor) &&
				(q.Tenant == "" || a.Tenant == q.Tenant) &&
				(q.From.IsZero() || !a.At.Before(q.From)) &&
				(q.To.IsZero() || a.At.Before(q.To))
		})
	}
	var p Page[Activity]
	err = s.b.View(ctx, func(tx Tx) (err error) {
		p, err = l.list(tx, ps)
		return err
	})
	return p, err
}

const sigKeyIndex = "sigkeys:by:createdAt"

// PutSigningKey stores or replaces a token-signing key.
func (s *kvStore) PutSigningKey(ctx context.Context, k SigningKey) error {
	v := &ValidationError{}
	validID(v, "id", k.ID)
	required(v, "alg", k.Algorithm)
	if len(k.SealedPrivate) == 0 {
		v.Add("sealedPrivate", "is required")
	}
	if err := v.Err(); err != nil {
		return err
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = s.clock()
	}
	k.CreatedAt = k.CreatedAt.UTC()
	return s.b.Update(ctx, func(tx Tx) error {
		var old []indexEntry
		cur, err := getJSON[SigningKey](tx, tblSigKeys, k.ID, "signing key "+k.ID)
		if err == nil {
			old = []indexEntry{{sigKeyIndex, timeKey(cur.CreatedAt)}}
		} else if !isNotFound(err) {
			return err
		}
		if err := putJSON(tx, tblSigKeys, k.ID, k); err != nil {
			return err
		}
		return syncIndexes(tx, k.ID, old, []indexEntry{{sigKeyIndex, timeKey(k.CreatedAt)}})
	})
}

// SigningKeys returns all token-signing keys, oldest first.
func (s *kvStore) SigningKeys(ctx context.Context) ([]SigningKey, error) {
	var out []SigningKey
	err := s.b.View(ctx, func(tx Tx) error {
		ids, err := allIDs(tx, sigKeyIndex, false)
		if err != nil {
			return err
		}
		out, err = getManyJSON[SigningKey](tx, tblSigKeys, ids)
		return err
	})
	return nonNilItems(out), err
}

// DeleteSigningKey removes a token-signing key; ErrNotFound when missing.
func (s *kvStore) DeleteSigningKey(ctx context.Context, id string) error {
	return s.b.Update(ctx, func(tx Tx) error {
		cur, err := getJSON[SigningKey](tx, tblSigKeys, id, "signing key "+id)
		if err != nil {
			return err
		}
		if err := tx.Delete(tblSigKeys, id); err != nil {
			return fmt.Errorf("deleting signing key %s: %w", id, err)
		}
		return syncIndexes(tx, id, []indexEntry{{sigKeyIndex, timeKey(cur.CreatedAt)}}, nil)
	})
}

// GetMeta returns a named value or ErrNotFound.
func (s *kvStore) GetMeta(ctx context.Context, name string) ([]byte, error) {
	var out []byte
	err := s.b.View(ctx, func(tx Tx) error {
		b, err := tx.Get(tblMeta, name)
		if isNotFound(err) {
			return fmt.Errorf("meta %s: %w", name, ErrNotFound)
		} else if err != nil {
			return fmt.Errorf("loading meta %s: %w", name, err)
		}
		out = append([]byte(nil), b...)
		return nil
	})
	return out, err
}

// PutMeta stores a named value.
func (s *kvStore) PutMeta(ctx context.Context, name string, value []byte) error {
	if name == "" {
		return fieldError("name", "is required")
	}
	return s.b.Update(ctx, func(tx Tx) error {
		if err := tx.Put(tblMeta, name, value); err != nil {
			return fmt.Errorf("storing meta %s: %w", name, err)
		}
		return nil
	})
}

// Kinds of sealed values passed to ResealSecrets' function.
const (
	SealedSecret     = "secret"
	SealedSigningKey = "signing-key"
	// SealedMeta is a sealed meta value (the master key check).
	SealedMeta = "meta"
	// SealedWebhook is a webhook's signing secret (WebhookAAD).
	SealedWebhook = "webhook"
)

// ResealSecrets rewrites every sealed value in one transaction. For kind
// SealedSecret the id is "<user>:<secret>", for SealedSigningKey the kid,
// for SealedMeta the meta name (MasterCheckMeta), so kind+":"+id is the
// value's associated data (SecretAAD, SigningKeyAAD, the check's AAD). The
// master key check moves in the same transaction, so a failed rotation
// leaves everything under the old key.
func (s *kvStore) ResealSecrets(ctx context.Context, reseal func(kind, id string, sealed []byte) ([]byte, error)) (int, error) {
	var n int
	err := s.b.Update(ctx, func(tx Tx) error {
		n = 0
		secretIDs, err := allIDs(tx, "secrets:all", false)
		if err != nil {
			return err
		}
		secrets, err := getManyJSON[Secret](tx, tblSecrets, secretIDs)
		if err != nil {
			return err
		}
		for _, sec := range secrets {
			id := sec.UserID + ":" + sec.ID
			if sec.Sealed, err = reseal(SealedSecret, id, sec.Sealed); err != nil {
				return fmt.Errorf("resealing secret %s: %w", id, err)
			}
			if err := putJSON(tx, tblSecrets, secretKey(sec.UserID, sec.ID), sec); err != nil {
				return err
			}
			n++
		}
		kids, err := allIDs(tx, sigKeyIndex, false)
		if err != nil {
			return err
		}
		sigs, err := getManyJSON[SigningKey](tx, tblSigKeys, kids)
		if err != nil {
			return err
		}
		for _, k := range sigs {
			if k.SealedPrivate, err = reseal(SealedSigningKey, k.ID, k.SealedPrivate); err != nil {
				return fmt.Errorf("resealing signing key %s: %w", k.ID, err)
			}
			if err := putJSON(tx, tblSigKeys, k.ID, k); err != nil {
				return err
			}
			n++
		}
		hookIDs, err := allIDs(tx, idxWebhooks, false)
		if err != nil {
			return err
		}
		hooks, err := getManyJSON[Webhook](tx, tblWebhooks, hookIDs)
		if err != nil {
			return err
		}
		for _, w := range hooks {
			if w.SealedSecret, err = reseal(SealedWebhook, w.ID, w.SealedSecret); err != nil {
				return fmt.Errorf("resealing webhook %s: %w", w.ID, err)
			}
			if len(w.PreviousSealedSecret) > 0 {
				if w.PreviousSealedSecret, err = reseal(SealedWebhook, w.ID, w.PreviousSealedSecret); err != nil {
					return fmt.Errorf("resealing webhook %s's previous secret: %w", w.ID, err)
				}
				n++
			}
			if err := putJSON(tx, tblWebhooks, w.ID, w); err != nil {
				return err
			}
			n++
		}
		check, err := tx.Get(tblMeta, MasterCheckMeta)
		if isNotFound(err) {
			return nil
		} else if err != nil {
			return fmt.Errorf("loading meta %s: %w", MasterCheckMeta, err)
		}
		if check, err = reseal(SealedMeta, MasterCheckMeta, check); err != nil {
			return fmt.Errorf("resealing the master key check: %w", err)
		}
		return tx.Put(tblMeta, MasterCheckMeta, check)
	})
	return n, err
}

// touchBatch bounds how many usages one TouchLastUsed transaction writes:
// a node flushes every credential used in the last interval (10,000 users
// give 20,000 records), and a smaller transaction is cheaper to retry when
// a concurrent change touches one of its records.
const touchBatch = 1000

// TouchLastUsed records when credentials and users were last used, without
// versions, history or invalidations. Missing records are skipped; a time
// never moves backwards. Each batch reads every record of a table with one
// GetMany (one round trip on Redis) instead of one read per record.
func (s *kvStore) TouchLastUsed(ctx context.Context, used []Usage) error {
	for len(used) > 0 {
		n := min(len(used), touchBatch)
		if err := s.touchLastUsed(ctx, used[:n]); err != nil {
			return err
		}
		used = used[n:]
	}
	return nil
}

func (s *kvStore) touchLastUsed(ctx context.Context, used []Usage) error {
	keysAt := make(map[string]time.Time)
	secretsAt := make(map[string]time.Time)
	usersAt := make(map[string]time.Time)
	loginsAt := make(map[string]time.Time) // user\x00tenant → time
	latest := func(m map[string]time.Time, id string, at time.Time) {
		if prev, ok := m[id]; !ok || prev.Before(at) {
			m[id] = at
		}
	}
	for _, u := range used {
		at := u.At.UTC()
		if u.KeyID != "" {
			latest(keysAt, u.KeyID, at)
		}
		if u.SecretID != "" && u.UserID != "" {
			latest(secretsAt, secretKey(u.UserID, u.SecretID), at)
		}
		if u.Tenant != "" && u.KeyID == "" && u.SecretID == "" && u.UserID != "" {
			latest(loginsAt, u.UserID+sep+u.Tenant, at)
		}
		if u.UserID != "" {
			latest(usersAt, u.UserID, at)
		}
	}
	return s.b.Update(ctx, func(tx Tx) error {
		if err := touchAll(tx, tblKeys, keysAt, func(k *Key) **time.Time { return &k.LastUsedAt }); err != nil {
			return err
		}
		if err := touchAll(tx, tblSecrets, secretsAt, func(s *Secret) **time.Time { return &s.LastUsedAt }); err != nil {
			return err
		}
		if err := touchAll(tx, tblUsers, usersAt, func(u *User) **time.Time { return &u.LastUsedAt }); err != nil {
			return err
		}
		permsAt, err := permIDs(tx, loginsAt)
		if err != nil {
			return err
		}
		return touchAll(tx, tblPerms, permsAt, func(p *Permission) **time.Time { return &p.LastLogin })
	})
}

// permIDs maps user\x00tenant keys to the ids of those permissions,
// skipping the ones that do not exist.
func permIDs(tx Tx, at map[string]time.Time) (map[string]time.Time, error) {
	if len(at) == 0 {
		return nil, nil
	}
	lk := slices.Sorted(maps.Keys(at))
	raw, err := tx.GetMany(lkPerm, lk)
	if err != nil {
		return nil, fmt.Errorf("loading permissions: %w", err)
	}
	out := make(map[string]time.Time, len(lk))
	for i, b := range raw {
		if b != nil {
			out[string(b)] = at[lk[i]]
		}
	}
	return out, nil
}

// touchAll moves the last-used time of each record of table named in at
// forward to its time; missing records are skipped.
func touchAll[T any](tx Tx, table string, at map[string]time.Time, lastUsed func(*T) **time.Time) error {
	if len(at) == 0 {
		return nil
	}
	ids := slices.Sorted(maps.Keys(at))
	vals, err := tx.GetMany(table, ids)
	if err != nil {
		return fmt.Errorf("loading %s: %w", table, err)
	}
	for i, raw := range vals {
		if raw == nil {
			continue
		}
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("decoding %s %s: %w", table, ids[i], err)
		}
		t := at[ids[i]]
		p := lastUsed(&v)
		if *p != nil && !(*p).Before(t) {
			continue
		}
		*p = &t
		if err := putJSON(tx, table, ids[i], v); err != nil {
			return err
		}
	}
	return nil
}
