// Package keys is keygate's domain model: tenants, users, permissions, access
// keys, signing secrets, their states and their history, and the Store that
// keeps them. It also generates and hashes access keys and encrypts signing
// secrets. It never imports Caddy.
package keys

import (
	"encoding/json"
	"time"
)

// TenantStatus is the lifecycle state of a tenant.
type TenantStatus string

// Tenant states.
const (
	TenantActive   TenantStatus = "ACTIVE"
	TenantArchived TenantStatus = "ARCHIVED"
)

// Tenant is a workspace (seed: workspace, Mandant, space/account). Every key
// is valid in exactly one tenant; users hold permissions in tenants.
type Tenant struct {
	ID     string       `json:"id"`
	Name   string       `json:"name"`
	Status TenantStatus `json:"status"`
	// Email is the tenant's notification address; it gets the events of
	// Notifications (none when empty).
	Email         string   `json:"email,omitempty"`
	Notifications []string `json:"notifications,omitempty"`
	// LeakPolicy says what a leak report does to a key of this tenant:
	// REVOKE (also when empty) or FLAG (only marks it and emits key.leaked).
	LeakPolicy string    `json:"leakPolicy,omitempty"`
	Version    int64     `json:"version"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

// UserType says what kind of non-human user this is.
type UserType string

// User types.
const (
	UserTechnical   UserType = "TECHNICAL"
	UserService     UserType = "SERVICE"
	UserApplication UserType = "APPLICATION"
)

// Role is a standard role, valid in every service.
type Role string

// Standard roles, from most to least privileged.
const (
	RoleAdmin  Role = "ADMIN"
	RoleMember Role = "MEMBER"
	RoleViewer Role = "VIEWER"
)

// UserStatus is the lifecycle state of a user:
// CREATE → ACTIVE ⇄ INACTIVE → DELETING → DELETED.
type UserStatus string

// User states.
const (
	UserCreate   UserStatus = "CREATE"
	UserActive   UserStatus = "ACTIVE"
	UserInactive UserStatus = "INACTIVE"
	UserDeleting UserStatus = "DELETING"
	UserDeleted  UserStatus = "DELETED"
)

// User is a technical, service or application user: no password, no UI
// login, authenticated only by its keys or signing secrets.
type User struct {
	// ID is chosen by the admin or generated (decimal digits, so SDKs that
	// type user ids as numbers work).
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Email       string   `json:"email,omitempty"`
	Type        UserType `json:"type"`
	// Role, CustomerRoles and AccessControlEntities are those of the user's
	// permission in its primary tenant: the store keeps them equal, and
	// changing them on the user changes that permission. The role that
	// counts in a tenant is always the permission's role there.
	Role                  Role     `json:"role"`
	CustomerRoles         []string `json:"customerRoles"`
	AccessControlEntities []string `json:"accessControlEntities"`
	PrimaryTenant         string   `json:"primaryTenant"`
	Scope                 string   `json:"scope,omitempty"`
	// RequestLimit is the number of requests per window; 0 means the route's default.
	RequestLimit int64 `json:"requestLimit"`
	// PlannedPurgeDate is when a DELETED user is removed for good; nil never.
	PlannedPurgeDate *time.Time `json:"plannedPurgeDate,omitempty"`
	Status           UserStatus `json:"status"`
	// Superadmin users act on every tenant through the admin API.
	Superadmin bool `json:"superadmin,omitempty"`
	// Notifications are the event types about this user (its keys,
	// secrets, permissions, limits) that its Email gets; none when empty.
	Notifications []string `json:"notifications,omitempty"`
	// Meta is free data about the user (a JSON object of at most MaxMeta
	// bytes): returned by the API, never forwarded upstream.
	Meta json.RawMessage `json:"meta,omitempty"`
	// Tags label the user (at most MaxTags, each 1 to 64 bytes).
	Tags []string `json:"tags,omitempty"`
	// Origin says where an imported user came from; nil otherwise.
	Origin     *Origin    `json:"origin,omitempty"`
	Version    int64      `json:"version"`
	CreatedAt  time.Time  `json:"createdAt"`
	UpdatedAt  time.Time  `json:"updatedAt"`
	LastUsedAt *time.Time `json:"lastUsedAt,omitempty"`
}

// PermissionStatus is the state of a user's permission in one tenant.
type PermissionStatus string

// Permission states. Permissions are never removed, only archived.
const (
	PermissionActive   PermissionStatus = "ACTIVE"
	PermissionInvited  PermissionStatus = "INVITED"
	PermissionArchived PermissionStatus = "ARCHIVED"
)

// Permission is the one grant of a user in a tenant (seed 001).
type Permission struct {
	ID                    string           `json:"id"`
	UserID                string           `json:"userId"`
	TenantID              string           `json:"workspaceId"`
	Role                  Role             `json:"role"`
	Status                PermissionStatus `json:"status"`
	CustomerRoles         []string         `json:"customerRoles"`
	AccessControlEntities []string         `json:"accessControlEntities"`
	// AcceptedAt is when the permission became ACTIVE: at creation when an
	// administrator granted it ACTIVE, else when the invited user accepted
	// it. Nil for an invitation never accepted; a new invitation clears it.
	// An ARCHIVED permission may become ACTIVE again only when it is set.
	AcceptedAt *time.Time `json:"acceptedAt,omitempty"`
	// InvitedBy is the actor who created the latest invitation (INVITED).
	InvitedBy string `json:"invitedBy,omitempty"`
	// ReviewedBy is the actor who last changed the permission's role,
	// customer roles, entities or status after it was created.
	ReviewedBy string `json:"reviewedBy,omitempty"`
	// LastLogin is when the user last authenticated in this tenant (from
	// the usage recorder; not versioned, not in history).
	LastLogin *time.Time `json:"lastLogin,omitempty"`
	Version   int64      `json:"version"`
	CreatedAt time.Time  `json:"createdAt"`
	UpdatedAt time.Time  `json:"updatedAt"`
}

// KeyStatus is the state of an access key.
type KeyStatus string

// Access key states. INACTIVE is reversible; REVOKED is final.
const (
	KeyActive   KeyStatus = "ACTIVE"
	KeyInactive KeyStatus = "INACTIVE"
	KeyRevoked  KeyStatus = "REVOKED"
)

// Key is an access key (API token): a bearer secret of the form
// kg_<id>_<secret>. Only a hash of the secret part is stored.
type Key struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	UserID   string `json:"userId"`
	TenantID string `json:"tenant"`
	// Hash is SHA-256 (or HMAC-SHA256 with the pepper) of the whole key string.
	Hash []byte `json:"hash"`
	// Last4 is the last four characters of the key, for masked listings.
	Last4     string    `json:"last4"`
	ExpiresAt time.Time `json:"expiresAt"`
	Status    KeyStatus `json:"status"`
	// DisableAt, when set, is the end of a replacement's grace period: the
	// key stops working then although its status is still ACTIVE.
	DisableAt *time.Time `json:"disableAt,omitempty"`
	// ReplacedBy is the id of the key that replaced this one.
	ReplacedBy string `json:"replacedBy,omitempty"`
	// LeakedAt is when a leak of the key was reported (see ReportLeak).
	LeakedAt *time.Time `json:"leakedAt,omitempty"`
	// Meta and Tags are as on User.
	Meta json.RawMessage `json:"meta,omitempty"`
	Tags []string        `json:"tags,omitempty"`
	// Origin says where an imported key came from; nil for keygate's own
	// kg_ keys. An imported key keeps its value, whatever its shape, and is
	// found by its hash (Store.FindKeyByHash).
	Origin *Origin `json:"origin,omitempty"`
	// HashScheme is empty when Hash is keygate's own hash of the key. A key
	// imported only as a peer's hash keeps that hash here under its legacy
	// scheme (see ParseLegacyScheme) until its first use re-hashes it.
	HashScheme string `json:"hashScheme,omitempty"`
	// RehashedFrom and RehashedAt record that first use: the legacy scheme
	// the key was found by and when it got keygate's own hash.
	RehashedFrom string     `json:"rehashedFrom,omitempty"`
	RehashedAt   *time.Time `json:"rehashedAt,omitempty"`
	Version      int64      `json:"version"`
	CreatedAt    time.Time  `json:"createdAt"`
	UpdatedAt    time.Time  `json:"updatedAt"`
	LastUsedAt   *time.Time `json:"lastUsedAt,omitempty"`
}

// Usable reports whether the key may authenticate at now (status, expiry and
// replacement grace period; the user and permission are checked separately).
func (k *Key) Usable(now time.Time) bool {
	if k.Status != KeyActive || !now.Before(k.ExpiresAt) {
		return false
	}
	return k.DisableAt == nil || now.Before(*k.DisableAt)
}

// Masked is the form shown in listings: kg_<id>_…last4, or …last4 for an
// imported key (whose value is not keygate's shape; a key imported only as
// a hash shows its last four characters once its first use re-hashed it).
func (k *Key) Masked() string {
	if k.Origin != nil {
		return "…" + k.Last4
	}
	return KeyPrefix + k.ID + "_…" + k.Last4
}

// Origin is where an imported user or key came from.
type Origin struct {
	// Source is the peer: kong, tyk, unkey, krakend or csv.
	Source string `json:"source"`
	// ExternalID is the peer's id of it (Kong custom_id or username, Tyk
	// key hash, Unkey externalId, …): a second import matches by it.
	ExternalID string    `json:"externalId"`
	ImportedAt time.Time `json:"importedAt"`
}

// SecretStatus is the state of a signing secret.
type SecretStatus string

// Signing secret states.
const (
	SecretActive   SecretStatus = "ACTIVE"
	SecretInactive SecretStatus = "INACTIVE"
)

// MaxLiveSecrets is how many ACTIVE signing secrets a user may hold at once
// (seed 004: two, so clients can rotate without downtime).
const MaxLiveSecrets = 2

// Secret is a signing secret of an application user. The 32 secret bytes
// are stored only encrypted (see Sealer).
type Secret struct {
	ID     string `json:"id"`
	UserID string `json:"userId"`
	Name   string `json:"name"`
	// Sealed is the AES-256-GCM ciphertext of the secret string as issued.
	Sealed     []byte       `json:"sealed"`
	Status     SecretStatus `json:"status"`
	Version    int64        `json:"version"`
	CreatedAt  time.Time    `json:"createdAt"`
	UpdatedAt  time.Time    `json:"updatedAt"`
	LastUsedAt *time.Time   `json:"lastUsedAt,omitempty"`
}

// SigningKey is one of keygate's own token-signing key pairs (token exchange).
type SigningKey struct {
	// ID is the JWT "kid".
	ID        string `json:"id"`
	Algorithm string `json:"alg"`
	// SealedPrivate is the private key (PKCS#8 DER) encrypted under the master key.
	SealedPrivate []byte `json:"sealedPrivate"`
	// Public is the public key (PKIX DER).
	Public    []byte    `json:"public"`
	CreatedAt time.Time `json:"createdAt"`
	// SignUntil ends the period in which new tokens are signed with this key.
	SignUntil time.Time `json:"signUntil"`
	// RetireAt is when the key leaves the JWKS (after its last token expired).
	RetireAt time.Time `json:"retireAt"`
}

// Change is one field's old and new value in a history entry.
type Change struct {
	From any `json:"from"`
	To   any `json:"to"`
}

// HistoryEntry is one line of a user's changelog (seed 000).
type HistoryEntry struct {
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	// Target names the object changed when it is not the user itself
	// ("key:<id>", "secret:<id>", "permission:<tenant>").
	Target  string            `json:"target,omitempty"`
	Changes map[string]Change `json:"changes,omitempty"`
}

// Activity is one admin API call (seed 003 activity log).
type Activity struct {
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Method string    `json:"method"`
	Path   string    `json:"path"`
	Status int       `json:"status"`
	Tenant string    `json:"tenant,omitempty"`
}

// SessionPrefix starts every console session token.
const SessionPrefix = "kgs_"

// Session is a console sign-in (POST /v1/console/session): a short-lived
// bearer token exchanged for an access key (or an access token) and bound to
// that key. It authenticates only at the admin API, and only while the key
// it came from still does: revoking, disabling or expiring the key ends it.
// Like an access key, only a hash of the token is stored.
type Session struct {
	ID     string `json:"id"`
	UserID string `json:"userId"`
	// KeyID is the access key the session was exchanged for.
	KeyID string `json:"keyId"`
	// TenantID is the tenant of that key: the tenant the session acts in.
	TenantID  string    `json:"tenant"`
	Hash      []byte    `json:"hash"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt"`
}
