// Package tenantfile is keygate's tenants-as-code file: one tenant, its
// users with their roles, customer roles, access control entities, limits
// and metadata, the permissions other tenants' users hold in it, and the
// metadata of its keys (never a secret or a hash), in a versioned format,
// as YAML or JSON. `keygate export` writes it; `keygate apply` makes a
// store match it, with Plan computing the per-field difference.
//
// # Format (version 1)
//
//	format: keygate.tenant          # required, always this
//	version: 1                      # required; a newer version is refused
//	tenant:
//	  id: acme                      # required
//	  name: Acme Inc.
//	  status: ACTIVE                # ACTIVE | ARCHIVED
//	users:                          # users whose primary tenant this is
//	- id: "100000000000001"         # required: users are matched by id
//	  name: billing service         # required
//	  type: SERVICE                 # TECHNICAL | SERVICE | APPLICATION
//	  role: MEMBER                  # their permission in this tenant
//	  customerRoles: [billing]
//	  accessControlEntities: []
//	  requestLimit: 600             # per window; 0 = the route's default
//	  status: ACTIVE                # ACTIVE | INACTIVE (CREATE while set up)
//	  description, email, scope, meta (JSON object), tags
//	  keys:                         # metadata of existing keys, by id
//	  - {id: "…", name: ci, expiresAt: 2027-01-01T00:00:00Z, status: ACTIVE, meta, tags}
//	permissions:                    # users of other tenants with a permission here
//	- {user: "…", role: VIEWER, status: ACTIVE, customerRoles: [], accessControlEntities: []}
//
// Lists are sets: their order does not matter. Missing optional members
// mean their zero value (so a file states the whole tenant). Keys cannot
// be created from a file (a file has no secret): apply reports a key the
// store does not have and creates nothing for it. Archiving (--prune) sets
// users and keys INACTIVE and permissions ARCHIVED; nothing is deleted.
//
// The JSON Schema of the format is Schema (served by the admin API at
// /v1/schemas/tenant-file.json).
package tenantfile

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Format is the value of the format member.
const Format = "keygate.tenant"

// Version is the newest format version this package reads and writes.
const Version = 1

// MaxFile is the largest file Parse reads, in bytes.
const MaxFile = 8 << 20

// Schema is the JSON Schema (2020-12) of the format.
//
//go:embed schema.json
var Schema []byte

// File is one tenant as code.
type File struct {
	Format      string       `json:"format"`
	Version     int          `json:"version"`
	Tenant      Tenant       `json:"tenant"`
	Users       []User       `json:"users"`
	Permissions []Permission `json:"permissions,omitempty"`
}

// Tenant is the tenant itself.
type Tenant struct {
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"`
	Status string `json:"status,omitempty"`
}

// User is a user whose primary tenant is the file's tenant.
type User struct {
	ID                    string          `json:"id"`
	Name                  string          `json:"name"`
	Description           string          `json:"description,omitempty"`
	Email                 string          `json:"email,omitempty"`
	Type                  string          `json:"type,omitempty"`
	Role                  string          `json:"role,omitempty"`
	CustomerRoles         []string        `json:"customerRoles,omitempty"`
	AccessControlEntities []string        `json:"accessControlEntities,omitempty"`
	Scope                 string          `json:"scope,omitempty"`
	RequestLimit          int64           `json:"requestLimit,omitempty"`
	Status                string          `json:"status,omitempty"`
	Meta                  json.RawMessage `json:"meta,omitempty"`
	Tags                  []string        `json:"tags,omitempty"`
	Keys                  []Key           `json:"keys,omitempty"`
}

// Key is the metadata of one of a user's keys.
type Key struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	ExpiresAt time.Time       `json:"expiresAt"`
	Status    string          `json:"status,omitempty"`
	Meta      json.RawMessage `json:"meta,omitempty"`
	Tags      []string        `json:"tags,omitempty"`
}

// Permission is the permission of another tenant's user in this tenant.
type Permission struct {
	User                  string   `json:"user"`
	Role                  string   `json:"role"`
	Status                string   `json:"status,omitempty"`
	CustomerRoles         []string `json:"customerRoles,omitempty"`
	AccessControlEntities []string `json:"accessControlEntities,omitempty"`
}

// Versions are the stored versions of what a File describes, for the
// If-Match of every update apply makes (not part of the file).
type Versions struct {
	Tenant int64 `json:"tenant"`
	// Users, Keys and Permissions by user id, key id and user id.
	Users       map[string]int64 `json:"users"`
	Keys        map[string]int64 `json:"keys"`
	Permissions map[string]int64 `json:"permissions"`
}

// Parse reads a file in YAML or JSON, strictly: unknown members, a wrong
// format, a newer version or a broken rule is an error naming the place.
func Parse(data []byte) (*File, error) {
	if len(data) > MaxFile {
		return nil, fmt.Errorf("the file is larger than %d bytes", MaxFile)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("not YAML or JSON: %w", err)
	}
	var head struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return nil, fmt.Errorf("not a tenant file: %w", err)
	}
	if head.Format != Format {
		return nil, fmt.Errorf("not a tenant file: format must be %q", Format)
	}
	if head.Version > Version {
		return nil, fmt.Errorf("the file is of format version %d, newer than this keygate reads (%d): upgrade keygate", head.Version, Version)
	}
	if head.Version < 1 {
		return nil, fmt.Errorf("version must be a positive integer")
	}
	var f File
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("reading the tenant file: %w", err)
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// Validate checks the rules the schema cannot state: unique ids and names.
func (f *File) Validate() error {
	var errs []string
	add := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if f.Tenant.ID == "" {
		add("tenant.id is required")
	}
	oneOf := func(where, v string, ok ...string) {
		if v != "" && !slices.Contains(ok, v) {
			add("%s must be one of %s", where, strings.Join(ok, ", "))
		}
	}
	oneOf("tenant.status", f.Tenant.Status, "ACTIVE", "ARCHIVED")
	ids, names, keyIDs, permUsers := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	for i, u := range f.Users {
		where := fmt.Sprintf("users[%d]", i)
		switch {
		case u.ID == "":
			add("%s.id is required", where)
		case ids[u.ID]:
			add("%s: user id %q twice", where, u.ID)
		}
		ids[u.ID] = true
		if strings.TrimSpace(u.Name) == "" {
			add("%s.name is required", where)
		} else if n := strings.ToLower(u.Name); names[n] {
			add("%s: user name %q twice", where, u.Name)
		} else {
			names[n] = true
		}
		oneOf(where+".type", u.Type, "TECHNICAL", "SERVICE", "APPLICATION")
		oneOf(where+".role", u.Role, "ADMIN", "MEMBER", "VIEWER")
		oneOf(where+".status", u.Status, "CREATE", "ACTIVE", "INACTIVE")
		if u.RequestLimit < 0 {
			add("%s.requestLimit must not be negative", where)
		}
		keyNames := map[string]bool{}
		for j, k := range u.Keys {
			kw := fmt.Sprintf("%s.keys[%d]", where, j)
			if k.ID == "" || keyIDs[k.ID] {
				add("%s: a key needs a unique id", kw)
			}
			keyIDs[k.ID] = true
			if n := strings.ToLower(k.Name); k.Name == "" || keyNames[n] {
				add("%s: a key needs a name unique for its user", kw)
			} else {
				keyNames[n] = true
			}
			if k.ExpiresAt.IsZero() {
				add("%s.expiresAt is required", kw)
			}
			oneOf(kw+".status", k.Status, "ACTIVE", "INACTIVE")
		}
	}
	for i, p := range f.Permissions {
		where := fmt.Sprintf("permissions[%d]", i)
		switch {
		case p.User == "":
			add("%s.user is required", where)
		case ids[p.User]:
			add("%s: user %s is a user of this tenant: set its role on the user", where, p.User)
		case permUsers[p.User]:
			add("%s: user %s twice", where, p.User)
		}
		permUsers[p.User] = true
		oneOf(where+".role", p.Role, "ADMIN", "MEMBER", "VIEWER")
		if p.Role == "" {
			add("%s.role is required", where)
		}
		oneOf(where+".status", p.Status, "ACTIVE", "INVITED", "ARCHIVED")
	}
	if len(errs) > 0 {
		return errors.New("invalid tenant file:\n  " + strings.Join(errs, "\n  "))
	}
	return nil
}

// Normalize fills the defaults and sorts sets, so that two files that say
// the same compare equal.
func (f *File) Normalize() {
	if f.Tenant.Status == "" {
		f.Tenant.Status = "ACTIVE"
	}
	if f.Tenant.Name == "" {
		f.Tenant.Name = f.Tenant.ID
	}
	for i := range f.Users {
		u := &f.Users[i]
		if u.Type == "" {
			u.Type = "TECHNICAL"
		}
		if u.Role == "" {
			u.Role = "MEMBER"
		}
		if u.Status == "" {
			u.Status = "ACTIVE"
		}
		u.CustomerRoles, u.AccessControlEntities, u.Tags = sortedSet(u.CustomerRoles), sortedSet(u.AccessControlEntities), sortedSet(u.Tags)
		u.Meta = compactJSON(u.Meta)
		for j := range u.Keys {
			k := &u.Keys[j]
			if k.Status == "" {
				k.Status = "ACTIVE"
			}
			k.ExpiresAt = k.ExpiresAt.UTC()
			k.Tags, k.Meta = sortedSet(k.Tags), compactJSON(k.Meta)
		}
		slices.SortFunc(u.Keys, func(a, b Key) int { return strings.Compare(a.ID, b.ID) })
	}
	slices.SortFunc(f.Users, func(a, b User) int { return strings.Compare(a.ID, b.ID) })
	for i := range f.Permissions {
		p := &f.Permissions[i]
		if p.Status == "" {
			p.Status = "ACTIVE"
		}
		p.CustomerRoles, p.AccessControlEntities = sortedSet(p.CustomerRoles), sortedSet(p.AccessControlEntities)
	}
	slices.SortFunc(f.Permissions, func(a, b Permission) int { return strings.Compare(a.User, b.User) })
}

func sortedSet(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// compactJSON is a canonical form of a JSON object (keys sorted), nil when empty.
func compactJSON(raw json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return raw
	}
	if m, ok := v.(map[string]any); ok && len(m) == 0 {
		return nil
	}
	b, _ := json.Marshal(v) // encoding/json sorts map keys
	return b
}

// Marshal writes f as "yaml" or "json".
func Marshal(f *File, format string) ([]byte, error) {
	out := *f
	out.Format, out.Version = Format, Version
	if out.Users == nil {
		out.Users = []User{}
	}
	js, err := json.MarshalIndent(&out, "", "  ")
	if err != nil {
		return nil, err
	}
	switch format {
	case "", "yaml":
		y, err := yaml.JSONToYAML(js)
		if err != nil {
			return nil, err
		}
		return append([]byte("# keygate tenant file: keygate apply -f <file>; schema at /v1/schemas/tenant-file.json\n"), y...), nil
	case "json":
		return append(js, '\n'), nil
	}
	return nil, fmt.Errorf("format %q: use yaml or json", format)
}
