package admin

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/keygate/keygate/keys"
)

// KeyView is an access key as the API shows it: masked, never with its
// hash. Key holds the full key only in the response that created it (POST
// …/keys, …/replace and /v1/bootstrap); it is never shown again.
type KeyView struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	UserID string `json:"userId"`
	Tenant string `json:"tenant"`
	// Masked is kg_<id>_…last4.
	Masked    string         `json:"masked"`
	Status    keys.KeyStatus `json:"status"`
	ExpiresAt time.Time      `json:"expiresAt"`
	// Usable tells whether the key authenticates now (status, expiry and
	// replacement grace period).
	Usable     bool            `json:"usable"`
	DisableAt  *time.Time      `json:"disableAt,omitempty"`
	ReplacedBy string          `json:"replacedBy,omitempty"`
	Version    int64           `json:"version"`
	CreatedAt  time.Time       `json:"createdAt"`
	UpdatedAt  time.Time       `json:"updatedAt"`
	LastUsedAt *time.Time      `json:"lastUsedAt,omitempty"`
	Meta       json.RawMessage `json:"meta,omitempty"`
	Tags       []string        `json:"tags,omitempty"`
	// Origin is where an imported key came from.
	Origin *keys.Origin `json:"origin,omitempty"`
	// HashScheme names the legacy hash (without salt) an imported key is
	// stored under until its first use re-hashes it; RehashedFrom and
	// RehashedAt record that first use.
	HashScheme   string     `json:"hashScheme,omitempty"`
	RehashedFrom string     `json:"rehashedFrom,omitempty"`
	RehashedAt   *time.Time `json:"rehashedAt,omitempty"`
	// Key is the full access key, present only in its creation response.
	Key string `json:"key,omitempty"`
	// Previous is the replaced key, in a replace response.
	Previous *KeyView `json:"previous,omitempty"`
}

func keyView(k *keys.Key, now time.Time) KeyView {
	return KeyView{
		ID: k.ID, Name: k.Name, UserID: k.UserID, Tenant: k.TenantID,
		Masked: k.Masked(), Status: k.Status, ExpiresAt: k.ExpiresAt, Usable: k.Usable(now),
		DisableAt: k.DisableAt, ReplacedBy: k.ReplacedBy, Version: k.Version,
		CreatedAt: k.CreatedAt, UpdatedAt: k.UpdatedAt, LastUsedAt: k.LastUsedAt,
		Meta: k.Meta, Tags: k.Tags, Origin: k.Origin,
		HashScheme: schemeName(k.HashScheme), RehashedFrom: schemeName(k.RehashedFrom), RehashedAt: k.RehashedAt,
	}
}

// schemeName is a legacy scheme without its salt.
func schemeName(s string) string {
	name, _, _ := strings.Cut(s, ":")
	return name
}

// SecretView is a signing secret as the API shows it. Secret holds the
// value (base64 of 32 bytes) only in the response that created it.
type SecretView struct {
	ID         string            `json:"id"`
	UserID     string            `json:"userId"`
	Name       string            `json:"name"`
	Status     keys.SecretStatus `json:"status"`
	Version    int64             `json:"version"`
	CreatedAt  time.Time         `json:"createdAt"`
	UpdatedAt  time.Time         `json:"updatedAt"`
	LastUsedAt *time.Time        `json:"lastUsedAt,omitempty"`
	// Secret is the value, present only in its creation response.
	Secret string `json:"secret,omitempty"`
}

func secretView(s *keys.Secret) SecretView {
	return SecretView{
		ID: s.ID, UserID: s.UserID, Name: s.Name, Status: s.Status, Version: s.Version,
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt, LastUsedAt: s.LastUsedAt,
	}
}

// userView normalizes nil slices so clients always see arrays.
func userView(u keys.User) keys.User {
	if u.CustomerRoles == nil {
		u.CustomerRoles = []string{}
	}
	if u.AccessControlEntities == nil {
		u.AccessControlEntities = []string{}
	}
	return u
}

// PermissionUser is the user summary inside a PermissionView (seed 001).
type PermissionUser struct {
	ID       string          `json:"id"`
	UserName string          `json:"userName,omitempty"`
	Email    string          `json:"email,omitempty"`
	Type     keys.UserType   `json:"type,omitempty"`
	Role     keys.Role       `json:"role,omitempty"`
	Status   keys.UserStatus `json:"status,omitempty"`
	// TechnicalUser is always true: every keygate user is a technical user
	// (TECHNICAL, SERVICE or APPLICATION), none a person.
	TechnicalUser bool `json:"technicalUser"`
	// ScimManaged is always false: keygate users are not provisioned by
	// SCIM.
	ScimManaged bool `json:"scimManaged"`
}

// Link is a hypermedia link of a permission (seed 001's links): rel names
// the relation, href the admin API path.
type Link struct {
	Rel  string `json:"rel"`
	Href string `json:"href"`
}

// PermissionWorkspace is the tenant summary inside a PermissionView.
type PermissionWorkspace struct {
	ID     string            `json:"id"`
	Name   string            `json:"name,omitempty"`
	Status keys.TenantStatus `json:"status,omitempty"`
}

// PermissionView is a permission shaped like the seed's MTM API. A view
// can be sent back to POST /v1/permissions after editing: the fields the
// API computes are accepted and ignored there.
type PermissionView struct {
	// Links lead to the permission itself, its user, its workspace and,
	// for an invitation, where the invitee accepts it.
	Links                 []Link                `json:"links"`
	ID                    string                `json:"id"`
	User                  PermissionUser        `json:"user"`
	Workspace             PermissionWorkspace   `json:"workspace"`
	WorkspaceID           string                `json:"workspaceId"`
	Role                  keys.Role             `json:"role"`
	Status                keys.PermissionStatus `json:"status"`
	CustomerRoles         []string              `json:"customerRoles"`
	AccessControlEntities []string              `json:"accessControlEntities"`
	// AcceptedAt is when the permission became ACTIVE: granted by an
	// administrator, or accepted by the invitee. Absent for an invitation
	// never accepted, which only the invitee's accept can make ACTIVE.
	AcceptedAt *time.Time `json:"acceptedAt,omitempty"`
	// LastLogin is when the user last authenticated in this workspace
	// (written by the gateways about once a minute); null when never.
	LastLogin *time.Time `json:"lastLogin"`
	// InvitedByUser is who created the latest invitation; null when none.
	InvitedByUser *ActorRef `json:"invitedByUser"`
	// ReviewedByUser is who last changed the permission; null when nobody.
	ReviewedByUser *ActorRef `json:"reviewedByUser"`
	// Active tells whether the permission grants access now: status ACTIVE.
	Active bool `json:"active"`
	// IgnoreBlacklist is always false: keygate has no blacklist to ignore.
	IgnoreBlacklist bool `json:"ignoreBlacklist"`
	// Count is always 0: MTM's counter has no counterpart in keygate.
	Count int `json:"count"`
	// Replayed is always false: keygate does not replay permission events.
	Replayed  bool      `json:"replayed"`
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// ActorRef names who did something: a user id, or the name of a trusted
// local caller ("local", "cli") or "system".
type ActorRef struct {
	ID string `json:"id"`
}

func actorRef(id string) *ActorRef {
	if id == "" {
		return nil
	}
	return &ActorRef{ID: id}
}

func permissionView(p *keys.Permission, u *keys.User, t *keys.Tenant) PermissionView {
	v := PermissionView{
		ID: p.ID, WorkspaceID: p.TenantID, Role: p.Role, Status: p.Status,
		CustomerRoles: p.CustomerRoles, AccessControlEntities: p.AccessControlEntities,
		Version: p.Version, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt, AcceptedAt: p.AcceptedAt,
		LastLogin: p.LastLogin, InvitedByUser: actorRef(p.InvitedBy), ReviewedByUser: actorRef(p.ReviewedBy),
		User:      PermissionUser{ID: p.UserID, TechnicalUser: true},
		Workspace: PermissionWorkspace{ID: p.TenantID},
	}
	if v.CustomerRoles == nil {
		v.CustomerRoles = []string{}
	}
	if v.AccessControlEntities == nil {
		v.AccessControlEntities = []string{}
	}
	if u != nil {
		v.User = PermissionUser{ID: u.ID, UserName: u.Name, Email: u.Email, Type: u.Type,
			Role: u.Role, Status: u.Status, TechnicalUser: true}
		if (u.Status == keys.UserDeleting || u.Status == keys.UserDeleted) && v.Status != keys.PermissionArchived {
			// Deleting a user archives its permissions; one stored before
			// that rule still reads as what it is, no grant.
			v.Status = keys.PermissionArchived
		}
	}
	if t != nil {
		v.Workspace = PermissionWorkspace{ID: t.ID, Name: t.Name, Status: t.Status}
	}
	v.Active = v.Status == keys.PermissionActive
	v.Links = []Link{
		{Rel: "self", Href: "/v1/permissions/" + p.ID},
		{Rel: "user", Href: "/v1/users/" + p.UserID},
		{Rel: "workspace", Href: "/v1/tenants/" + p.TenantID},
		{Rel: "permissions", Href: "/v1/workspaces/" + p.TenantID + "/permissions"},
	}
	if v.Status == keys.PermissionInvited {
		v.Links = append(v.Links, Link{Rel: "accept", Href: "/v1/permissions/" + p.ID + "/accept"})
	}
	return v
}

// RoleEntry is one role of a user in a RolesView.
type RoleEntry struct {
	Key string `json:"key"`
	// Type is STANDARD (the one standard role) or CUSTOMER.
	Type string `json:"type"`
}

// RolesView lists a user's roles (SAP Open Connectors roles API): those of
// the user's permission in one workspace, the roles that count there, and
// in GET /v1/users/{id}/roles also those of every tenant (Tenants) and the
// user's personal data (User).
type RolesView struct {
	UserID string `json:"userId"`
	// Workspace is the tenant whose permission the roles belong to; empty
	// in GET …/roles when the user has no permission in the default one.
	Workspace     string      `json:"workspace,omitempty"`
	Role          keys.Role   `json:"role,omitempty"`
	CustomerRoles []string    `json:"customerRoles"`
	Roles         []RoleEntry `json:"roles"`
	// Version is the permission's version (its ETag).
	Version int64 `json:"version,omitempty"`
	// User is the user's record: its personal data.
	User *keys.User `json:"user,omitempty"`
	// Tenants has one entry per tenant the user holds a permission in
	// (those the caller may see), sorted by tenant.
	Tenants []TenantRoles `json:"tenants,omitempty"`
}

// TenantRoles is a user's permission and roles in one tenant.
type TenantRoles struct {
	Workspace     string                `json:"workspace"`
	WorkspaceName string                `json:"workspaceName,omitempty"`
	Status        keys.PermissionStatus `json:"status"`
	Role          keys.Role             `json:"role"`
	CustomerRoles []string              `json:"customerRoles"`
	Roles         []RoleEntry           `json:"roles"`
	// Version is the permission's version.
	Version int64 `json:"version"`
}

func tenantRoles(p *keys.Permission, name string) TenantRoles {
	v := rolesView(p)
	return TenantRoles{Workspace: p.TenantID, WorkspaceName: name, Status: p.Status, Role: v.Role,
		CustomerRoles: v.CustomerRoles, Roles: v.Roles, Version: p.Version}
}

func rolesView(p *keys.Permission) RolesView {
	v := RolesView{UserID: p.UserID, Workspace: p.TenantID, Role: p.Role, CustomerRoles: p.CustomerRoles, Version: p.Version}
	if v.CustomerRoles == nil {
		v.CustomerRoles = []string{}
	}
	v.Roles = append(v.Roles, RoleEntry{Key: string(p.Role), Type: "STANDARD"})
	for _, r := range v.CustomerRoles {
		v.Roles = append(v.Roles, RoleEntry{Key: r, Type: "CUSTOMER"})
	}
	return v
}

// Export is everything stored about one user (GET /v1/users/{id}/export):
// no secret values, no key hashes.
type Export struct {
	ExportedAt  time.Time           `json:"exportedAt"`
	User        keys.User           `json:"user"`
	Permissions []PermissionView    `json:"permissions"`
	Keys        []KeyView           `json:"keys"`
	Secrets     []SecretView        `json:"secrets"`
	History     []keys.HistoryEntry `json:"history"`
}

// BootstrapResult is the data of a POST /v1/bootstrap response.
type BootstrapResult struct {
	Tenant     keys.Tenant    `json:"tenant"`
	User       keys.User      `json:"user"`
	Permission PermissionView `json:"permission"`
	// Key carries the full access key in Key.Key, shown this once.
	Key KeyView `json:"key"`
}
