package tenantfile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Change actions.
const (
	Create  = "create"
	Update  = "update"
	Archive = "archive"
	Skip    = "skip"
)

// FieldChange is one field of an update.
type FieldChange struct {
	Field string `json:"field"`
	From  any    `json:"from"`
	To    any    `json:"to"`
}

// Change is one step of a plan.
type Change struct {
	Action string        `json:"action"`
	Kind   string        `json:"kind"` // tenant, user, key, permission
	ID     string        `json:"id"`
	Name   string        `json:"name,omitempty"`
	UserID string        `json:"userId,omitempty"`
	Fields []FieldChange `json:"fields,omitempty"`
	Reason string        `json:"reason,omitempty"`

	tenant *Tenant
	user   *User
	key    *Key
	perm   *Permission
}

// String is the change as `keygate apply` prints it.
func (c Change) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", c.Action, c.Kind, c.ID)
	if c.Name != "" {
		fmt.Fprintf(&b, " (%s)", c.Name)
	}
	for i, f := range c.Fields {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s %s → %s", f.Field, show(f.From), show(f.To))
	}
	if c.Reason != "" {
		b.WriteString(": " + c.Reason)
	}
	return b.String()
}

func show(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if x == "" {
			return `""`
		}
		return x
	case json.RawMessage:
		if len(x) == 0 {
			return "{}"
		}
		return string(x)
	case []string:
		return "[" + strings.Join(x, ", ") + "]"
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	}
	return fmt.Sprint(v)
}

// fields compares named values and returns what differs.
type fieldSet []FieldChange

func (fs *fieldSet) cmp(field string, from, to any) {
	if !equal(from, to) {
		*fs = append(*fs, FieldChange{Field: field, From: from, To: to})
	}
}

func equal(a, b any) bool {
	switch x := a.(type) {
	case []string:
		return slices.Equal(x, b.([]string))
	case json.RawMessage:
		return bytes.Equal(x, b.(json.RawMessage))
	case time.Time:
		return x.Equal(b.(time.Time))
	}
	return a == b
}

// Plan returns the changes that make cur (the store's tenant; nil when it
// does not exist) into want, in the order to apply them. With prune,
// users, keys and permissions of cur that want no longer lists are
// archived (users and keys INACTIVE, permissions ARCHIVED), never deleted.
// Both files are normalized first.
func Plan(cur, want *File, prune bool) []Change {
	want.Normalize()
	if cur == nil {
		cur = &File{Tenant: Tenant{ID: want.Tenant.ID}}
	} else {
		cur.Normalize()
	}
	var out, last []Change
	t := want.Tenant
	if cur.Tenant.Name == "" {
		out = append(out, Change{Action: Create, Kind: "tenant", ID: t.ID, Name: t.Name, tenant: &t})
	} else {
		var fs fieldSet
		fs.cmp("name", cur.Tenant.Name, t.Name)
		fs.cmp("status", cur.Tenant.Status, t.Status)
		if len(fs) > 0 {
			c := Change{Action: Update, Kind: "tenant", ID: t.ID, Name: t.Name, Fields: fs, tenant: &t}
			if t.Status == "ARCHIVED" {
				last = append(last, c) // an archived tenant takes no new users
			} else {
				out = append(out, c)
			}
		}
	}

	curUsers := map[string]*User{}
	curKeys := map[string]*Key{}
	keyOwner := map[string]string{}
	for i := range cur.Users {
		u := &cur.Users[i]
		curUsers[u.ID] = u
		for j := range u.Keys {
			curKeys[u.Keys[j].ID], keyOwner[u.Keys[j].ID] = &u.Keys[j], u.ID
		}
	}
	var keyChanges []Change
	wantKeys := map[string]bool{}
	for i := range want.Users {
		u := &want.Users[i]
		if c, ok := curUsers[u.ID]; ok {
			var fs fieldSet
			fs.cmp("name", c.Name, u.Name)
			fs.cmp("description", c.Description, u.Description)
			fs.cmp("email", c.Email, u.Email)
			fs.cmp("type", c.Type, u.Type)
			fs.cmp("role", c.Role, u.Role)
			fs.cmp("customerRoles", c.CustomerRoles, u.CustomerRoles)
			fs.cmp("accessControlEntities", c.AccessControlEntities, u.AccessControlEntities)
			fs.cmp("scope", c.Scope, u.Scope)
			fs.cmp("requestLimit", c.RequestLimit, u.RequestLimit)
			fs.cmp("status", c.Status, u.Status)
			fs.cmp("meta", c.Meta, u.Meta)
			fs.cmp("tags", c.Tags, u.Tags)
			if len(fs) > 0 {
				out = append(out, Change{Action: Update, Kind: "user", ID: u.ID, Name: u.Name, Fields: fs, user: u})
			}
		} else {
			out = append(out, Change{Action: Create, Kind: "user", ID: u.ID, Name: u.Name, user: u})
		}
		for j := range u.Keys {
			k := &u.Keys[j]
			wantKeys[k.ID] = true
			c, ok := curKeys[k.ID]
			switch {
			case !ok:
				keyChanges = append(keyChanges, Change{Action: Skip, Kind: "key", ID: k.ID, Name: k.Name, UserID: u.ID,
					Reason: "not in the store: a file carries no key material, so apply creates no key (keygate keys create)"})
			case keyOwner[k.ID] != u.ID:
				keyChanges = append(keyChanges, Change{Action: Skip, Kind: "key", ID: k.ID, Name: k.Name, UserID: u.ID,
					Reason: "the key belongs to user " + keyOwner[k.ID] + " in the store"})
			default:
				var fs fieldSet
				fs.cmp("name", c.Name, k.Name)
				fs.cmp("expiresAt", c.ExpiresAt, k.ExpiresAt)
				fs.cmp("status", c.Status, k.Status)
				fs.cmp("meta", c.Meta, k.Meta)
				fs.cmp("tags", c.Tags, k.Tags)
				if len(fs) > 0 {
					keyChanges = append(keyChanges, Change{Action: Update, Kind: "key", ID: k.ID, Name: k.Name, UserID: u.ID, Fields: fs, key: k})
				}
			}
		}
	}
	if prune {
		wantUsers := map[string]bool{}
		for _, u := range want.Users {
			wantUsers[u.ID] = true
		}
		for i := range cur.Users {
			u := cur.Users[i]
			if !wantUsers[u.ID] && u.Status != "INACTIVE" {
				next := u
				next.Status = "INACTIVE"
				out = append(out, Change{Action: Archive, Kind: "user", ID: u.ID, Name: u.Name,
					Fields: []FieldChange{{Field: "status", From: u.Status, To: "INACTIVE"}}, user: &next})
			}
			for j := range u.Keys {
				k := u.Keys[j]
				if !wantKeys[k.ID] && k.Status == "ACTIVE" {
					next := k
					next.Status = "INACTIVE"
					keyChanges = append(keyChanges, Change{Action: Archive, Kind: "key", ID: k.ID, Name: k.Name, UserID: u.ID,
						Fields: []FieldChange{{Field: "status", From: "ACTIVE", To: "INACTIVE"}}, key: &next})
				}
			}
		}
	}
	out = append(out, keyChanges...)

	curPerms := map[string]*Permission{}
	for i := range cur.Permissions {
		curPerms[cur.Permissions[i].User] = &cur.Permissions[i]
	}
	wantPerms := map[string]bool{}
	for i := range want.Permissions {
		p := &want.Permissions[i]
		wantPerms[p.User] = true
		c, ok := curPerms[p.User]
		if !ok {
			out = append(out, Change{Action: Create, Kind: "permission", ID: p.User, perm: p})
			continue
		}
		var fs fieldSet
		fs.cmp("role", c.Role, p.Role)
		fs.cmp("status", c.Status, p.Status)
		fs.cmp("customerRoles", c.CustomerRoles, p.CustomerRoles)
		fs.cmp("accessControlEntities", c.AccessControlEntities, p.AccessControlEntities)
		if len(fs) > 0 {
			out = append(out, Change{Action: Update, Kind: "permission", ID: p.User, Fields: fs, perm: p})
		}
	}
	if prune {
		for i := range cur.Permissions {
			p := cur.Permissions[i]
			if !wantPerms[p.User] && p.Status != "ARCHIVED" {
				next := p
				next.Status = "ARCHIVED"
				out = append(out, Change{Action: Archive, Kind: "permission", ID: p.User,
					Fields: []FieldChange{{Field: "status", From: p.Status, To: "ARCHIVED"}}, perm: &next})
			}
		}
	}
	return append(out, last...)
}

// Changes counts the changes of a plan that write something.
func Changes(plan []Change) int {
	n := 0
	for _, c := range plan {
		if c.Action != Skip {
			n++
		}
	}
	return n
}

// Caller sends one admin API request: method, path (with query), the
// If-Match header ("" for none) and a JSON body (nil for none). It returns
// an error for any answer but 2xx.
type Caller func(method, path, ifMatch string, body any) error

// Apply performs a plan through the admin API, every update with If-Match
// on the version the plan was computed from (a 412 means someone changed
// it since: run apply again). It stops at the first error and returns how
// many changes it made.
func Apply(call Caller, tenant string, plan []Change, v Versions) (int, error) {
	done := 0
	etag := func(n int64) string { return fmt.Sprintf("%q", fmt.Sprint(n)) }
	for _, c := range plan {
		var err error
		switch {
		case c.Action == Skip:
			continue
		case c.Kind == "tenant" && c.Action == Create:
			err = call(http.MethodPost, "/v1/tenants", "", map[string]any{"id": c.tenant.ID, "name": c.tenant.Name, "status": c.tenant.Status})
		case c.Kind == "tenant":
			err = call(http.MethodPatch, "/v1/tenants/"+url.PathEscape(c.ID), etag(v.Tenant), fieldsBody(c.Fields))
		case c.Kind == "user" && c.Action == Create:
			u := c.user
			body := map[string]any{
				"id": u.ID, "name": u.Name, "type": u.Type, "role": u.Role, "primaryTenant": tenant, "status": u.Status,
				"customerRoles": nonNil(u.CustomerRoles), "accessControlEntities": nonNil(u.AccessControlEntities),
				"requestLimit": u.RequestLimit,
			}
			for k, s := range map[string]string{"description": u.Description, "email": u.Email, "scope": u.Scope} {
				if s != "" {
					body[k] = s
				}
			}
			if len(u.Meta) > 0 {
				body["meta"] = u.Meta
			}
			if len(u.Tags) > 0 {
				body["tags"] = u.Tags
			}
			err = call(http.MethodPost, "/v1/users", "", body)
		case c.Kind == "user":
			err = call(http.MethodPatch, "/v1/users/"+url.PathEscape(c.ID), etag(v.Users[c.ID]), fieldsBody(c.Fields))
		case c.Kind == "key":
			err = call(http.MethodPatch, "/v1/users/"+url.PathEscape(c.UserID)+"/keys/"+url.PathEscape(c.ID), etag(v.Keys[c.ID]), fieldsBody(c.Fields))
		case c.Kind == "permission":
			p := c.perm
			ifMatch := ""
			if c.Action != Create {
				ifMatch = etag(v.Permissions[c.ID])
			}
			err = call(http.MethodPost, "/v1/permissions", ifMatch, map[string]any{
				"user": map[string]any{"id": p.User}, "workspace": map[string]any{"id": tenant},
				"role": p.Role, "status": p.Status,
				"customerRoles": nonNil(p.CustomerRoles), "accessControlEntities": nonNil(p.AccessControlEntities),
			})
		default:
			err = fmt.Errorf("unknown change %s %s", c.Action, c.Kind)
		}
		if err != nil {
			return done, fmt.Errorf("%s: %w", c, err)
		}
		done++
	}
	return done, nil
}

// fieldsBody is the merge patch setting the changed fields.
func fieldsBody(fs []FieldChange) map[string]any {
	body := map[string]any{}
	for _, f := range fs {
		switch to := f.To.(type) {
		case []string:
			body[f.Field] = nonNil(to)
		case json.RawMessage:
			if len(to) == 0 {
				body[f.Field] = nil
			} else {
				body[f.Field] = to
			}
		case time.Time:
			body[f.Field] = to.UTC().Format(time.RFC3339)
		default:
			body[f.Field] = to
		}
	}
	return body
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
