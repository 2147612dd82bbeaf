package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/keygate/keygate/keys"
)

// BootstrapRequest is the body of POST /v1/bootstrap and the input of
// Handler.Bootstrap.
type BootstrapRequest struct {
	// Tenant is the tenant id; it is created when missing. Required.
	Tenant string `json:"tenant"`
	// TenantName names a new tenant. Default: the tenant id.
	TenantName string `json:"tenantName,omitempty"`
	// User is the name of the superadmin user to create. Required.
	User string `json:"user"`
	// UserID chooses the user's id. Default: generated decimal digits.
	UserID string `json:"userId,omitempty"`
	// KeyName names the first key. Default: "bootstrap".
	KeyName string `json:"keyName,omitempty"`
	// ExpiresAt of the first key (RFC 3339). Default: one year from now.
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

// bootstrapBody decodes a BootstrapRequest with field-precise errors.
type bootstrapBody struct {
	Tenant     string     `json:"tenant"`
	TenantName string     `json:"tenantName"`
	User       string     `json:"user"`
	UserID     string     `json:"userId"`
	KeyName    string     `json:"keyName"`
	ExpiresAt  *timestamp `json:"expiresAt"`
}

// bootstrap answers POST /v1/bootstrap (see Handler.Bootstrap). Only
// trusted callers reach it; anyone else gets 404.
func (h *Handler) bootstrap(w http.ResponseWriter, r *http.Request, c *caller) error {
	var b bootstrapBody
	if err := decodeJSON(w, r, h.maxBody, &b); err != nil {
		return err
	}
	req := BootstrapRequest{Tenant: b.Tenant, TenantName: b.TenantName, User: b.User, UserID: b.UserID, KeyName: b.KeyName}
	if b.ExpiresAt != nil {
		req.ExpiresAt = &b.ExpiresAt.Time
	}
	setTenant(r, b.Tenant)
	res, err := h.Bootstrap(r.Context(), req, c.actor)
	if err != nil {
		return err
	}
	writeOne(w, http.StatusCreated, "Bootstrap", res.User.Version, res)
	return nil
}

// Bootstrap creates the tenant when missing, a TECHNICAL superadmin user
// with role ADMIN, its ACTIVE ADMIN permission in the tenant and its first
// key; the full key is in the result's Key.Key, once. A user of that name
// already in the tenant is a conflict (409) and changes nothing. actor
// names the caller in history. POST /v1/bootstrap calls it; Go callers
// holding the store (the CLI) may call it directly.
func (h *Handler) Bootstrap(ctx context.Context, req BootstrapRequest, actor string) (BootstrapResult, error) {
	var res BootstrapResult
	now := h.now()
	if req.UserID != "" {
		// Checked before the tenant is created, so a 409 changes nothing.
		if _, err := h.store.GetUser(ctx, req.UserID); err == nil {
			return res, errConflict("user " + req.UserID + " exists")
		} else if !errors.Is(err, keys.ErrNotFound) {
			return res, err
		}
	}
	v := &keys.ValidationError{}
	if err := keys.ValidateID(req.Tenant); err != nil {
		v.Add("tenant", err.Error())
	}
	checkName(v, "user", req.User)
	if req.TenantName != "" {
		checkName(v, "tenantName", req.TenantName)
	}
	if req.UserID != "" {
		if err := keys.ValidateID(req.UserID); err != nil {
			v.Add("userId", err.Error())
		}
	}
	if req.KeyName == "" {
		req.KeyName = "bootstrap"
	}
	checkName(v, "keyName", req.KeyName)
	expiresAt := now.Add(h.keyLife)
	if req.ExpiresAt != nil {
		expiresAt = *req.ExpiresAt
		if !expiresAt.After(now) {
			v.Add("expiresAt", "must be in the future")
		}
	}
	if err := v.Err(); err != nil {
		return res, err
	}
	tenant, tenantName, userName, userID, keyName := req.Tenant, req.TenantName, req.User, req.UserID, req.KeyName
	t, err := h.store.GetTenant(ctx, tenant)
	switch {
	case errors.Is(err, keys.ErrNotFound):
		if tenantName == "" {
			tenantName = tenant
		}
		t, err = h.store.CreateTenant(ctx, keys.Tenant{ID: tenant, Name: tenantName, Status: keys.TenantActive}, actor)
		if errors.Is(err, keys.ErrConflict) {
			t, err = h.store.GetTenant(ctx, tenant)
		}
		if err != nil {
			return res, fmt.Errorf("creating tenant %s: %w", tenant, err)
		}
	case err != nil:
		return res, fmt.Errorf("reading tenant %s: %w", tenant, err)
	case t.Status != keys.TenantActive:
		return res, errConflict("tenant " + tenant + " is archived")
	}
	// The store enforces unique names too; checking first keeps a 409 free of side effects.
	existing, err := h.store.ListUsers(ctx, keys.UserQuery{Tenant: tenant, Q: userName, ListOptions: keys.ListOptions{Size: maxPageSize}})
	if err != nil {
		return res, fmt.Errorf("looking up user %q: %w", userName, err)
	}
	for _, u := range existing.Items {
		if u.PrimaryTenant == tenant && strings.EqualFold(u.Name, userName) && u.Status != keys.UserDeleted {
			return res, errConflict(fmt.Sprintf("a user named %q already exists in tenant %s", userName, tenant))
		}
	}
	u, perm, err := h.createUserWithPermission(ctx, keys.User{
		ID: userID, Name: userName, Type: keys.UserTechnical, Role: keys.RoleAdmin,
		PrimaryTenant: tenant, Status: keys.UserActive, Superadmin: true,
		Description: "created by bootstrap",
	}, actor)
	if err != nil {
		return res, err
	}
	plaintext, k := keys.NewAccessKey(h.hasher, u.ID, tenant, keyName, expiresAt)
	k, err = h.store.CreateKey(ctx, k, actor)
	if err != nil {
		h.rollbackUser(ctx, u.ID)
		return res, fmt.Errorf("creating the first key of user %s: %w", u.ID, err)
	}
	res.Tenant = t
	res.User = userView(u)
	res.Permission = permissionView(&perm, &u, &t)
	res.Key = keyView(&k, h.now())
	res.Key.Key = plaintext
	return res, nil
}
