package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// StoreOptions configure the Store returned by NewStore.
type StoreOptions struct {
	// Now returns the current time for timestamps. Default: time.Now.
	Now func() time.Time
	// OnCommit, when set, is called synchronously after every committed
	// change with each invalidation it published, before the change's method
	// returns. Caches in the same process use it to read their own writes at
	// once; other processes learn of changes through the Notifier.
	OnCommit func(Invalidation)
}

// NewStore returns the Store that implements every rule of the model over a
// Backend. When b implements Notifier, so does the returned Store.
//
// Layout (tables, lookups and indexes are names passed to b):
//
//	tables   tenants, users, perms, keys, secrets, history, activity, sigkeys, meta,
//	         usage, sessions (and the outbox's: see kvstore_events.go)
//	lookups  username (tenant\x00lowername → user id), keyname (user\x00name → key id),
//	         permkey (user\x00tenant → permission id), keyhash (scheme:hexhash →
//	         key id, imported keys only), extid (tenant\x00source\x00kind\x00external
//	         id → user or key id)
//	indexes  tenants:by:<field>, users:by:<field>, t:<tenant>:users:by:<field>,
//	         t:<tenant>:perms:by:<field>, u:<user>:perms, u:<user>:keys,
//	         u:<user>:secrets, u:<user>:history, users:purge, users:deleting,
//	         secrets:all, activity:by:at, sigkeys:by:createdAt,
//	         t:<tenant>:keys:by:expiresAt, u:<user>:usage, t:<tenant>:usage,
//	         usage:by:hour, u:<user>:sessions, sessions:by:expiry
//
// Decisions the interface leaves open:
//   - A user name is unique (case-insensitively) among the non-DELETED users
//     of its primary tenant: deleting a user frees its name.
//   - A key name is unique among the user's current keys, those neither
//     REVOKED nor replaced. ReplaceKey therefore gives the new key the old
//     key's name without renaming anything.
//   - DeleteUser is allowed from CREATE, ACTIVE, INACTIVE and DELETING, so an
//     abandoned creation can be cleaned up; UpdateUser never sets DELETED.
//     DELETING users are listed in users:deleting until CompleteDeletion.
//   - CreateUser defaults an empty Type to TECHNICAL and an empty Role to
//     VIEWER (least privilege).
//   - ResealSecrets passes ids such that kind+":"+id is the sealed value's
//     associated data: "secret", "<user>:<secret>" and "signing-key", "<kid>".
//   - Tenant changes publish an Invalidation naming the tenant.
//   - User.Role, CustomerRoles and AccessControlEntities mirror the user's
//     permission in its primary tenant: UpdateUser changing them changes
//     that permission, and PutPermission changing that permission changes
//     the user, in the same transaction (both recorded in history).
//   - An ARCHIVED tenant accepts no new users, keys, secrets (of users whose
//     primary tenant it is) or permissions, and no permission in it becomes
//     ACTIVE or INVITED (ErrConflict).
func NewStore(b Backend, opts StoreOptions) Store {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &kvStore{b: b, now: opts.Now, onCommit: opts.OnCommit}
	if n, ok := b.(Notifier); ok {
		return &notifyingStore{kvStore: s, n: n}
	}
	return s
}

// kvStore is the Store over a Backend.
type kvStore struct {
	b        Backend
	now      func() time.Time
	onCommit func(Invalidation)
}

// notifyingStore is a kvStore whose backend publishes invalidations.
type notifyingStore struct {
	*kvStore
	n Notifier
}

// Subscribe delegates to the backend.
func (s *notifyingStore) Subscribe(ctx context.Context, l Listener) error {
	return s.n.Subscribe(ctx, l)
}

var (
	_ Store    = (*kvStore)(nil)
	_ Notifier = (*notifyingStore)(nil)
)

// Close closes the backend.
func (s *kvStore) Close() error { return s.b.Close() }

// clock returns the current time in UTC.
func (s *kvStore) clock() time.Time { return s.now().UTC() }

// Table names.
const (
	tblTenants  = "tenants"
	tblUsers    = "users"
	tblPerms    = "perms"
	tblKeys     = "keys"
	tblSecrets  = "secrets"
	tblHistory  = "history"
	tblActivity = "activity"
	tblSigKeys  = "sigkeys"
	tblMeta     = "meta"

	lkUserName = "username"
	lkKeyName  = "keyname"
	lkKeyHash  = "keyhash"
	lkExtID    = "extid"
	lkPerm     = "permkey"
)

// sep joins the parts of compound ids; ValidateID keeps it out of ids.
const sep = "\x00"

// getJSON loads and decodes table/id; a missing record is ErrNotFound
// wrapped with what (e.g. "user 42").
func getJSON[T any](tx Tx, table, id, what string) (T, error) {
	var v T
	b, err := tx.Get(table, id)
	if errors.Is(err, ErrNotFound) {
		return v, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	if err != nil {
		return v, fmt.Errorf("loading %s: %w", what, err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("decoding %s: %w", what, err)
	}
	return v, nil
}

// getManyJSON loads and decodes the records of ids, skipping missing ones.
func getManyJSON[T any](tx Tx, table string, ids []string) ([]T, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	raw, err := tx.GetMany(table, ids)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", table, err)
	}
	out := make([]T, 0, len(raw))
	for i, b := range raw {
		if b == nil {
			continue
		}
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("decoding %s %s: %w", table, ids[i], err)
		}
		out = append(out, v)
	}
	return out, nil
}

// putJSON encodes and stores v under table/id.
func putJSON(tx Tx, table, id string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s %s: %w", table, id, err)
	}
	if err := tx.Put(table, id, b); err != nil {
		return fmt.Errorf("storing %s %s: %w", table, id, err)
	}
	return nil
}

// isNotFound reports whether err is ErrNotFound.
func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// exists reports whether table/id is stored.
func exists(tx Tx, table, id string) (bool, error) {
	_, err := tx.Get(table, id)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("loading %s %s: %w", table, id, err)
	}
	return true, nil
}

// lookup returns the id stored in a lookup table, "" when none.
func lookup(tx Tx, table, key string) (string, error) {
	b, err := tx.Get(table, key)
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("loading %s: %w", table, err)
	}
	return string(b), nil
}

// claim moves a uniqueness claim of id from oldKey to newKey in a lookup
// table ("" means no claim). It fails with ErrConflict when newKey is held by
// another id.
func claim(tx Tx, table, oldKey, newKey, id, what string) error {
	if oldKey == newKey {
		return nil
	}
	if newKey != "" {
		holder, err := lookup(tx, table, newKey)
		if err != nil {
			return err
		}
		if holder != "" && holder != id {
			return fmt.Errorf("%s is taken: %w", what, ErrConflict)
		}
	}
	if oldKey != "" {
		if holder, err := lookup(tx, table, oldKey); err != nil {
			return err
		} else if holder == id {
			if err := tx.Delete(table, oldKey); err != nil {
				return fmt.Errorf("releasing %s: %w", what, err)
			}
		}
	}
	if newKey != "" {
		if err := tx.Put(table, newKey, []byte(id)); err != nil {
			return fmt.Errorf("claiming %s: %w", what, err)
		}
	}
	return nil
}

// indexEntry is one membership of a record in an index.
type indexEntry struct {
	index, sortKey string
}

// syncIndexes moves id from the old index entries to the new ones, touching
// only what changed.
func syncIndexes(tx Tx, id string, old, next []indexEntry) error {
	keep := make(map[indexEntry]bool, len(next))
	for _, e := range next {
		keep[e] = true
	}
	had := make(map[indexEntry]bool, len(old))
	for _, e := range old {
		had[e] = true
		if !keep[e] {
			if err := tx.IndexRemove(e.index, e.sortKey, id); err != nil {
				return fmt.Errorf("updating index %s: %w", e.index, err)
			}
		}
	}
	for _, e := range next {
		if !had[e] {
			if err := tx.IndexAdd(e.index, e.sortKey, id); err != nil {
				return fmt.Errorf("updating index %s: %w", e.index, err)
			}
		}
	}
	return nil
}

// allIDs returns every member of an index in order.
func allIDs(tx Tx, index string, desc bool) ([]string, error) {
	var out []string
	err := walkIndex(tx, index, desc, func(ids []string) (bool, error) {
		out = append(out, ids...)
		return true, nil
	})
	return out, err
}

// walkChunk is how many ids a walk over an index reads at a time.
const walkChunk = 500

// walkIndex calls fn with the members of index in chunks, in order, until fn
// returns false.
func walkIndex(tx Tx, index string, desc bool, fn func(ids []string) (bool, error)) error {
	for off := 0; ; off += walkChunk {
		ids, err := tx.IndexRange(index, off, walkChunk, desc)
		if err != nil {
			return fmt.Errorf("reading index %s: %w", index, err)
		}
		if len(ids) == 0 {
			return nil
		}
		more, err := fn(ids)
		if err != nil || !more {
			return err
		}
		if len(ids) < walkChunk {
			return nil
		}
	}
}

// timeKey is a sort key that orders times correctly as bytes.
func timeKey(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000000Z") }

// checkVersion compares an expected version with the current one (0 = any).
func checkVersion(what string, expected, current int64) error {
	if expected != 0 && expected != current {
		return fmt.Errorf("%s is at version %d, not %d: %w", what, current, expected, ErrVersionMismatch)
	}
	return nil
}

// stamp sets the version and timestamps of a record being written.
func stamp(version *int64, createdAt, updatedAt *time.Time, now time.Time) {
	*version++
	if createdAt.IsZero() {
		*createdAt = now
	}
	*updatedAt = now
}

// clone deep-copies a record through JSON, so a mutate function works on a
// copy that shares nothing with the stored value.
func clone[T any](v T) T {
	b, err := json.Marshal(v)
	if err != nil {
		panic("keys: cloning record: " + err.Error())
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		panic("keys: cloning record: " + err.Error())
	}
	return out
}

// noHistory names the fields never recorded in history: bookkeeping, and
// secret material (hashes and sealed values).
var noHistory = map[string]bool{
	"version": true, "createdAt": true, "updatedAt": true, "lastUsedAt": true, "lastLogin": true, "reviewedBy": true,
	"hash": true, "sealed": true, "sealedPrivate": true, "previousSealed": true, "last4": true,
}

// diff returns the changed fields between two records, by JSON name.
func diff(old, next any) map[string]Change {
	a, b := toMap(old), toMap(next)
	out := map[string]Change{}
	for k, to := range b {
		if noHistory[k] {
			continue
		}
		from, ok := a[k]
		if ok && reflect.DeepEqual(from, to) {
			continue
		}
		if !ok && isEmpty(to) {
			continue
		}
		out[k] = Change{From: from, To: to}
	}
	for k, from := range a {
		if _, ok := b[k]; !ok && !noHistory[k] && !isEmpty(from) {
			out[k] = Change{From: from}
		}
	}
	return out
}

func toMap(v any) map[string]any {
	m := map[string]any{}
	if rv := reflect.ValueOf(v); !rv.IsValid() || rv.Kind() == reflect.Pointer && rv.IsNil() {
		return m
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic("keys: encoding record: " + err.Error())
	}
	if err := json.Unmarshal(b, &m); err != nil {
		panic("keys: decoding record: " + err.Error())
	}
	return m
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case float64:
		return x == 0
	case bool:
		return !x
	case []any:
		return len(x) == 0
	}
	return false
}

// lower is the case-folded form used for unique names and name sorting.
func lower(s string) string { return strings.ToLower(s) }

// nonNil turns a nil slice into an empty one.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// validID adds a field error when id is not a valid admin-chosen id.
func validID(v *ValidationError, field, id string) {
	if err := ValidateID(id); err != nil {
		v.Add(field, err.Error())
	}
}

// required adds a field error when s is blank.
func required(v *ValidationError, field, s string) {
	if strings.TrimSpace(s) == "" {
		v.Add(field, "is required")
	}
}

// oneOf adds a field error when s is not one of allowed.
func oneOf[S ~string](v *ValidationError, field string, s S, allowed ...S) {
	for _, a := range allowed {
		if s == a {
			return
		}
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	v.Add(field, "must be one of "+strings.Join(names, ", "))
}

// recorder collects what one transaction changed: history entries per user
// and the invalidations to publish.
type recorder struct {
	tx    Tx
	now   time.Time
	actor string
	invs  []Invalidation // queued with tx.Notify, for OnCommit
	// tenants caches users' primary tenants for the events (userTenant).
	tenants map[string]string
	// events counts the events written, to order them in the outbox.
	events int
}

// record appends a history entry to a user's changelog.
func (r *recorder) record(userID, action, target string, changes map[string]Change) error {
	if len(changes) == 0 {
		changes = nil
	}
	e := HistoryEntry{At: r.now, Actor: r.actor, Action: action, Target: target, Changes: changes}
	index := "u:" + userID + ":history"
	n, err := r.tx.IndexCount(index)
	if err != nil {
		return fmt.Errorf("counting history of user %s: %w", userID, err)
	}
	purged, err := historyPurged(r.tx, userID)
	if err != nil {
		return err
	}
	n += purged
	id := NewID()
	if err := putJSON(r.tx, tblHistory, userID+sep+id, e); err != nil {
		return err
	}
	// The sort key is the entry's sequence number: history is append-only
	// (retention removes the oldest entries, whose number historyPurged
	// keeps), so the count orders entries by insertion even when clocks
	// disagree.
	if err := r.tx.IndexAdd(index, fmt.Sprintf("%012d", n), id); err != nil {
		return fmt.Errorf("indexing history of user %s: %w", userID, err)
	}
	return nil
}

// notify queues an invalidation.
func (r *recorder) notify(userID, keyID string) {
	r.publish(Invalidation{UserID: userID, KeyID: keyID})
}

// publish queues inv.
func (r *recorder) publish(inv Invalidation) {
	r.tx.Notify(inv)
	r.invs = append(r.invs, inv)
}

// update runs fn in a write transaction with a recorder and, once it has
// committed, tells OnCommit what it invalidated.
func (s *kvStore) update(ctx context.Context, actor string, fn func(r *recorder) error) error {
	var last *recorder
	err := s.b.Update(ctx, func(tx Tx) error {
		last = &recorder{tx: tx, now: s.clock(), actor: actor} // fresh per attempt
		return fn(last)
	})
	if err == nil && s.onCommit != nil && last != nil {
		for _, inv := range last.invs {
			s.onCommit(inv)
		}
	}
	return err
}
