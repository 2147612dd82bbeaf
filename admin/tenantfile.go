package admin

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/tenantfile"
)

// TenantExport is the data of GET /v1/tenants/{id}/export: the tenant as a
// tenant file, and the stored versions of what it lists (for the If-Match
// of apply; not part of the file).
type TenantExport struct {
	File     tenantfile.File     `json:"file"`
	Versions tenantfile.Versions `json:"versions"`
}

// tenantFileSchema serves the JSON Schema of the tenant file.
func (h *Handler) tenantFileSchema(w http.ResponseWriter, _ *http.Request, _ *caller) error {
	w.Header().Set("Content-Type", "application/schema+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Content-Length", strconv.Itoa(len(tenantfile.Schema)))
	_, _ = w.Write(tenantfile.Schema)
	return nil
}

// exportTenant answers GET /v1/tenants/{id}/export (an administrator of
// the tenant, or a superadmin).
func (h *Handler) exportTenant(w http.ResponseWriter, r *http.Request, c *caller) error {
	id := r.PathValue("id")
	if keys.ValidateID(id) != nil || !c.adminOf(id) {
		return errNotFound("tenant")
	}
	setTenant(r, id)
	doc, err := h.tenantExport(r.Context(), id)
	if err != nil {
		return err
	}
	writeOne(w, http.StatusOK, "TenantExport", 0, doc)
	return nil
}

// tenantExport builds the tenant file of a tenant: its users (those whose
// primary tenant it is; not DELETED, not superadmins, which only
// `keygate bootstrap` makes), their keys valid in it (neither REVOKED nor
// replaced), and the permissions other tenants' users hold in it.
func (h *Handler) tenantExport(ctx context.Context, id string) (TenantExport, error) {
	t, err := h.store.GetTenant(ctx, id)
	if errors.Is(err, keys.ErrNotFound) {
		return TenantExport{}, errNotFound("tenant")
	} else if err != nil {
		return TenantExport{}, err
	}
	out := TenantExport{
		File: tenantfile.File{Format: tenantfile.Format, Version: tenantfile.Version,
			Tenant: tenantfile.Tenant{ID: t.ID, Name: t.Name, Status: string(t.Status)}, Users: []tenantfile.User{}},
		Versions: tenantfile.Versions{Tenant: t.Version, Users: map[string]int64{}, Keys: map[string]int64{}, Permissions: map[string]int64{}},
	}
	skip := func(u *keys.User) bool {
		return u.Superadmin || u.Status == keys.UserDeleted || u.Status == keys.UserDeleting
	}
	for page := 1; ; page++ {
		p, err := h.store.ListUsers(ctx, keys.UserQuery{ListOptions: keys.ListOptions{Page: page, Size: maxPageSize}, Tenant: id})
		if err != nil {
			return out, err
		}
		for i := range p.Items {
			u := &p.Items[i]
			if u.PrimaryTenant != id || skip(u) {
				continue
			}
			fu := tenantfile.User{
				ID: u.ID, Name: u.Name, Description: u.Description, Email: u.Email, Type: string(u.Type), Role: string(u.Role),
				CustomerRoles: u.CustomerRoles, AccessControlEntities: u.AccessControlEntities, Scope: u.Scope,
				RequestLimit: u.RequestLimit, Status: string(u.Status), Meta: u.Meta, Tags: u.Tags,
			}
			ks, err := h.store.ListKeys(ctx, u.ID)
			if err != nil {
				return out, err
			}
			for _, k := range ks {
				if k.TenantID != id || k.Status == keys.KeyRevoked || k.ReplacedBy != "" {
					continue
				}
				fu.Keys = append(fu.Keys, tenantfile.Key{ID: k.ID, Name: k.Name, ExpiresAt: k.ExpiresAt, Status: string(k.Status), Meta: k.Meta, Tags: k.Tags})
				out.Versions.Keys[k.ID] = k.Version
			}
			out.File.Users = append(out.File.Users, fu)
			out.Versions.Users[u.ID] = u.Version
		}
		if len(p.Items) < maxPageSize || page*maxPageSize >= p.Total {
			break
		}
	}
	for page := 1; ; page++ {
		p, err := h.store.ListPermissions(ctx, keys.PermissionQuery{ListOptions: keys.ListOptions{Page: page, Size: maxPageSize}, Tenant: id})
		if err != nil {
			return out, err
		}
		for i := range p.Items {
			perm := &p.Items[i]
			u, err := h.store.GetUser(ctx, perm.UserID)
			if errors.Is(err, keys.ErrNotFound) {
				continue
			} else if err != nil {
				return out, err
			}
			if u.PrimaryTenant == id || skip(&u) {
				continue
			}
			out.File.Permissions = append(out.File.Permissions, tenantfile.Permission{
				User: perm.UserID, Role: string(perm.Role), Status: string(perm.Status),
				CustomerRoles: perm.CustomerRoles, AccessControlEntities: perm.AccessControlEntities,
			})
			out.Versions.Permissions[perm.UserID] = perm.Version
		}
		if len(p.Items) < maxPageSize || page*maxPageSize >= p.Total {
			break
		}
	}
	out.File.Normalize()
	return out, nil
}
