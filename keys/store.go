package keys

import (
	"context"
	"time"
)

// Store keeps keygate's model. Every implementation passes the conformance
// suite in keys/storetest, which is the contract: besides CRUD, a Store
// enforces uniqueness (user name per primary tenant, key name per user, one
// permission per user and tenant), optimistic locking (a non-zero expected
// version must equal the current one, else ErrVersionMismatch; every change
// increments Version), the state machines, the two-live-secrets limit, and
// appends a HistoryEntry to the user's history for every change to the user,
// its keys, secrets and permissions. Every write is atomic.
//
// Mutating methods take the actor (user id or "system") for the history.
// Update methods take a mutate function that is applied to a copy of the
// current record inside the store's transaction; it may run more than once
// (optimistic retries) and must not have side effects.
type Store interface {
	// EventStore is the outbox and the subscriptions (kvstore_events.go).
	EventStore

	// CreateTenant adds a tenant; ErrConflict when the id exists.
	CreateTenant(ctx context.Context, t Tenant, actor string) (Tenant, error)
	// GetTenant returns one tenant or ErrNotFound.
	GetTenant(ctx context.Context, id string) (Tenant, error)
	// UpdateTenant changes name or status.
	UpdateTenant(ctx context.Context, id string, version int64, mutate func(*Tenant) error, actor string) (Tenant, error)
	// ListTenants pages through tenants (sort fields: id, name, createdAt).
	ListTenants(ctx context.Context, q TenantQuery) (Page[Tenant], error)

	// CreateUser adds a user. An empty ID is generated (decimal digits);
	// an empty Status becomes ACTIVE (INACTIVE is the only other state
	// allowed at creation).
	CreateUser(ctx context.Context, u User, actor string) (User, error)
	// GetUser returns one user or ErrNotFound (purged users are not found;
	// DELETED users are, until purged).
	GetUser(ctx context.Context, id string) (User, error)
	// UpdateUser changes a user; a status change must follow the state
	// machine (ErrConflict otherwise). It cannot set DELETED: use DeleteUser.
	// A change to DELETING is the first step of a deletion (see DeleteUser),
	// which CompleteDeletion finishes.
	UpdateUser(ctx context.Context, id string, version int64, mutate func(*User) error, actor string) (User, error)
	// DeleteUser deletes a user in two steps (seed 004: DELETING, then
	// DELETED). The first transaction marks it DELETING and, with it,
	// revokes all its keys, deactivates all its secrets, archives all its
	// permissions and drops its console sessions, so nothing of it
	// authenticates any more. The second (CompleteDeletion) takes its usage
	// counts off it and marks it DELETED. A user left DELETING by an
	// interrupted deletion gets only the second step. It returns the DELETED
	// user; when the second step failed, the DELETING one with the error.
	DeleteUser(ctx context.Context, id string, version int64, actor string) (User, error)
	// CompleteDeletion is the second step of a deletion: a DELETING user's
	// usage counts move to its tenants' anonymous counts and it becomes
	// DELETED. ErrConflict for a user in any other state.
	CompleteDeletion(ctx context.Context, id string, actor string) (User, error)
	// DeletingUsers lists up to limit users in DELETING (by id): deletions
	// whose second step is still to run.
	DeletingUsers(ctx context.Context, limit int) ([]string, error)
	// PurgeUser removes a DELETED user and everything stored about it.
	PurgeUser(ctx context.Context, id string) error
	// ListUsers pages through users (sort fields: id, name, createdAt).
	ListUsers(ctx context.Context, q UserQuery) (Page[User], error)
	// DueForPurge lists DELETED users whose PlannedPurgeDate is before now.
	DueForPurge(ctx context.Context, now time.Time, limit int) ([]string, error)

	// PutPermission creates or updates the one permission of p.UserID in
	// p.TenantID. An existing INVITED permission cannot be made ACTIVE here
	// (ErrConflict: the invited user accepts it). created tells which happened.
	PutPermission(ctx context.Context, p Permission, actor string) (perm Permission, created bool, err error)
	// AcceptPermission turns an INVITED permission ACTIVE (ErrConflict otherwise).
	AcceptPermission(ctx context.Context, id string, actor string) (Permission, error)
	// GetPermission returns the permission of a user in a tenant or ErrNotFound.
	GetPermission(ctx context.Context, userID, tenantID string) (Permission, error)
	// GetPermissionByID returns a permission by its id or ErrNotFound.
	GetPermissionByID(ctx context.Context, id string) (Permission, error)
	// ListPermissions pages through the permissions of a tenant (sort
	// fields: id, createdAt, updatedAt, status, role, lastLogin).
	ListPermissions(ctx context.Context, q PermissionQuery) (Page[Permission], error)
	// UserPermissions returns every permission of a user.
	UserPermissions(ctx context.Context, userID string) ([]Permission, error)

	// CreateKey stores a new access key (see NewAccessKey). Name must be
	// unique among the user's keys; ExpiresAt is required; the user must exist
	// and not be DELETING or DELETED.
	CreateKey(ctx context.Context, k Key, actor string) (Key, error)
	// GetKey returns a key by id or ErrNotFound.
	GetKey(ctx context.Context, id string) (Key, error)
	// UpdateKey changes name, expiry or status (ACTIVE ⇄ INACTIVE); a REVOKED
	// key cannot change (ErrConflict). The key material never changes.
	UpdateKey(ctx context.Context, userID, keyID string, version int64, mutate func(*Key) error, actor string) (Key, error)
	// RevokeKey marks a key REVOKED for good.
	RevokeKey(ctx context.Context, userID, keyID string, version int64, actor string) (Key, error)
	// ReplaceKey stores next (same user, tenant and name as the old key) and
	// disables the old key: at once when grace is 0, else it keeps working
	// until now+grace (DisableAt). Both changes are one transaction.
	ReplaceKey(ctx context.Context, userID, oldKeyID string, next Key, grace time.Duration, actor string) (newKey, oldKey Key, err error)
	// ListKeys returns the keys of a user, oldest first.
	ListKeys(ctx context.Context, userID string) ([]Key, error)
	// ExpiringKeys pages (1-based page, size at most 100) through the
	// ACTIVE, not replaced keys valid in tenant whose expiry is in [from,
	// before), soonest first.
	ExpiringKeys(ctx context.Context, tenant string, from, before time.Time, page, size int) (Page[Key], error)

	// CreateSession stores a console session (see NewSession) of an ACTIVE
	// user, bound to one of its keys. No history (the activity log has the
	// sign-in).
	CreateSession(ctx context.Context, s Session, actor string) (Session, error)
	// GetSession returns a console session or ErrNotFound.
	GetSession(ctx context.Context, id string) (Session, error)
	// DeleteSession removes a console session (sign-out); ErrNotFound when
	// there is none.
	DeleteSession(ctx context.Context, id string) error
	// PurgeSessions removes the sessions that expired before before and
	// returns how many it removed.
	PurgeSessions(ctx context.Context, before time.Time) (int, error)

	// FindKeyByHash returns the id of the imported key (Key.Origin set,
	// not REVOKED) stored under one of hashes, and the index of that hash,
	// in one read: Scheme "" is keygate's own hash (Hasher), any other a
	// legacy scheme (ParseLegacyScheme) of a key not yet re-hashed.
	// ErrNotFound when none is.
	FindKeyByHash(ctx context.Context, hashes []KeyHash) (id string, which int, err error)
	// PendingHashSchemes returns, per legacy scheme, how many keys (not
	// REVOKED) are still stored under it, waiting for their first use.
	PendingHashSchemes(ctx context.Context) (map[string]int, error)
	// RehashKey replaces a key's legacy hash (under scheme) with keygate's
	// own hash sum of the same key, once its first use proved the key:
	// HashScheme becomes empty, RehashedFrom and RehashedAt are set, and
	// Last4 when it was unknown. ErrConflict when the key is not stored
	// under that legacy hash; a key already re-hashed to sum is returned
	// as it is (another node was first).
	RehashKey(ctx context.Context, keyID, scheme string, legacy, sum []byte, last4 string) (Key, error)
	// Import applies a batch of another gateway's users and keys to one
	// tenant in one transaction (see ImportBatch and ImportOptions).
	Import(ctx context.Context, b ImportBatch, opts ImportOptions, actor string) (ImportResult, error)

	// CreateSecret stores a new signing secret; ErrConflict when the user
	// already has MaxLiveSecrets ACTIVE secrets.
	CreateSecret(ctx context.Context, s Secret, actor string) (Secret, error)
	// GetSecret returns one secret of a user or ErrNotFound.
	GetSecret(ctx context.Context, userID, secretID string) (Secret, error)
	// UpdateSecret changes name or status; reactivating is refused
	// (ErrConflict) when it would make a third live secret.
	UpdateSecret(ctx context.Context, userID, secretID string, version int64, mutate func(*Secret) error, actor string) (Secret, error)
	// DeleteSecret removes a secret.
	DeleteSecret(ctx context.Context, userID, secretID string, version int64, actor string) error
	// ListSecrets returns the secrets of a user, oldest first.
	ListSecrets(ctx context.Context, userID string) ([]Secret, error)
	// ResealSecrets rewrites every stored sealed value (secrets and signing
	// keys) with reseal, all in one transaction (master key rotation).
	ResealSecrets(ctx context.Context, reseal func(kind, id string, sealed []byte) ([]byte, error)) (int, error)

	// TouchLastUsed records when keys, secrets and users were last used and
	// when users last authenticated in tenants (Permission.LastLogin). It
	// does not bump versions nor write history; ids that no longer exist are skipped.
	TouchLastUsed(ctx context.Context, used []Usage) error

	// AddUsageCounts adds hourly request counts (see UsageCounter) to the
	// stored counts of the same tenant, user and hour. Counts of a user that
	// is unknown, DELETING or DELETED go to the tenant's anonymous counts
	// (UserID ""). No history, no versions.
	AddUsageCounts(ctx context.Context, counts []UsageCount) error
	// UsageCounts returns a user's hourly counts with from <= Hour < to,
	// oldest first, one per tenant and hour; hours without requests are
	// left out.
	UsageCounts(ctx context.Context, userID string, from, to time.Time) ([]UsageCount, error)
	// TenantUsageCounts returns the hourly counts of a tenant's routes with
	// from <= Hour < to, oldest first, one per user and hour (UserID "" for
	// the requests no user was named for).
	TenantUsageCounts(ctx context.Context, tenant string, from, to time.Time) ([]UsageCount, error)
	// PurgeUsageCounts removes the counts of hours that started before
	// before, of every user (retention); it returns how many it removed.
	PurgeUsageCounts(ctx context.Context, before time.Time) (int, error)

	// History returns a user's changelog, newest first.
	History(ctx context.Context, userID string, page, size int) (Page[HistoryEntry], error)
	// PurgeHistory removes the history entries from before before, of every
	// user, oldest first (retention); it returns how many it removed.
	PurgeHistory(ctx context.Context, before time.Time) (int, error)
	// PurgeActivity removes the activity log entries from before before
	// (retention); it returns how many it removed.
	PurgeActivity(ctx context.Context, before time.Time) (int, error)
	// AppendActivity records one admin API call.
	AppendActivity(ctx context.Context, a Activity) error
	// ListActivity pages through the activity log, newest first.
	ListActivity(ctx context.Context, q ActivityQuery) (Page[Activity], error)

	// PutSigningKey stores or replaces a token-signing key.
	PutSigningKey(ctx context.Context, k SigningKey) error
	// SigningKeys returns all token-signing keys, oldest first.
	SigningKeys(ctx context.Context) ([]SigningKey, error)
	// DeleteSigningKey removes a token-signing key.
	DeleteSigningKey(ctx context.Context, id string) error

	// GetMeta and PutMeta keep small named values (e.g. the master key check).
	GetMeta(ctx context.Context, name string) ([]byte, error)
	PutMeta(ctx context.Context, name string, value []byte) error

	// Close releases the store's resources.
	Close() error
}

// Usage is one use of a credential, or (Tenant set, no key nor secret) one
// authentication of a user in a tenant, batched by TouchLastUsed.
type Usage struct {
	UserID   string
	KeyID    string // empty when a secret was used
	SecretID string // empty when a key was used
	// Tenant, with KeyID and SecretID empty, moves the LastLogin of the
	// user's permission in it.
	Tenant string
	At     time.Time
}

// Invalidation names what a change touched, for caches. Stores that implement
// Notifier publish one after every committed change.
type Invalidation struct {
	UserID string `json:"u,omitempty"`
	KeyID  string `json:"k,omitempty"`
	// TenantID names a changed tenant (its status decides whether any of
	// its credentials authenticate).
	TenantID string `json:"t,omitempty"`
}

// Notifier is implemented by stores that tell subscribers about changes, on
// this node and (for shared stores) on every other node.
type Notifier interface {
	// Subscribe passes every change to l until ctx ends. It returns once
	// the subscription is in place (changes committed after it returns are
	// delivered) or with an error when it could not be set up.
	Subscribe(ctx context.Context, l Listener) error
}

// Listener is what a subscriber hands to Notifier.Subscribe. The Notifier
// calls its functions one at a time and in order, from one goroutine, so a
// Confirm always comes after the Change calls it vouches for.
type Listener struct {
	// Change is called for every committed change. Required.
	Change func(Invalidation)
	// Gap reports that changes may have been missed: Gap(false) when
	// notifications stop arriving (e.g. the connection dropped), Gap(true)
	// when they flow again after some may have been lost. A subscriber drops
	// its whole cache at both, and may trust it again only after Gap(true).
	// Nil: ignored (for subscribers that cache nothing).
	Gap func(live bool)
	// Confirm(upTo) proves that every change committed before upTo has
	// already been passed to Change (since the latest Gap, which it never
	// vouches across). It lets a cache keep entries past their TTL: one that
	// was current when it was loaded is still current at upTo. Notifiers
	// that can prove it (Redis: the PONG to a PING sent at upTo on the
	// subscription connection) call it repeatedly with increasing times;
	// others never call it. Nil: ignored.
	Confirm func(upTo time.Time)
}

// Sort is one sort field.
type Sort struct {
	Field string
	Desc  bool
}

// ListOptions are the paging and sorting options of every list.
type ListOptions struct {
	// Page is 1-based. Default: 1.
	Page int
	// Size is the page size. Default: 30; at most 100.
	Size int
	// Sort fields in order. Default: by id ascending.
	Sort []Sort
}

// TenantQuery selects tenants.
type TenantQuery struct {
	ListOptions
	// IDs, when not nil, restricts the result to these tenants.
	IDs    []string
	Status TenantStatus
	Q      string
}

// UserQuery selects users.
type UserQuery struct {
	ListOptions
	// Tenant restricts to users whose primary tenant it is or who hold a permission there.
	Tenant string
	Status UserStatus
	Type   UserType
	Role   Role
	// Q matches id, name, description or email (case-insensitive substring).
	Q string
	// QNameOnly makes Q match the id and name only.
	QNameOnly bool
}

// PermissionQuery selects the permissions of one tenant.
type PermissionQuery struct {
	ListOptions
	Tenant string
	Status PermissionStatus
	// Q matches the user's id, name, description, email or the role.
	Q     string
	Email string
	// IncludeTechnicalUsers includes TECHNICAL, SERVICE and APPLICATION users;
	// as every keygate user is one, false still includes them unless
	// ExcludeTechnicalUsers is set (the seed's parameter defaults to including).
	ExcludeTechnicalUsers bool
	UserID                string
}

// ActivityQuery selects activity log entries.
type ActivityQuery struct {
	ListOptions
	Actor  string
	Tenant string
	From   time.Time
	To     time.Time
}

// Page is one page of a list and the total number of matches.
type Page[T any] struct {
	Items []T `json:"items"`
	Total int `json:"total"`
}
