package admin

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

func TestClient(t *testing.T) {
	e := newEnv(t, newFileStore)
	ctx := t.Context()
	// In process, as a trusted caller.
	local := &Client{Do: InProcess(checked(t, e.h), "cli")}
	boot, err := local.Bootstrap(ctx, BootstrapRequest{Tenant: "c", User: "ops"})
	if err != nil || boot.Key.Key == "" {
		t.Fatalf("Bootstrap = %+v, %v", boot, err)
	}
	_, err = local.Bootstrap(ctx, BootstrapRequest{Tenant: "c", User: "ops"})
	var pe *ProblemError
	if !errors.As(err, &pe) || pe.Status != http.StatusConflict {
		t.Fatalf("second Bootstrap: %v", err)
	}
	// Over HTTP with the bootstrap key.
	srv := httptest.NewServer(checked(t, e.h))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL, Key: boot.Key.Key}
	name := "svc"
	u, err := c.CreateUser(ctx, UserInput{Name: &name, PrimaryTenant: "c", Type: keys.UserService})
	if err != nil {
		t.Fatal(err)
	}
	users, total, err := c.ListUsers(ctx, ListOptions{Filters: map[string]string{"tenant": "c"}, Sort: "name"})
	if err != nil || total != 2 || len(users) != 2 {
		t.Fatalf("ListUsers = %d %v", total, err)
	}
	k, err := c.CreateKey(ctx, u.ID, "k", "", e.clk.Now().Add(time.Hour))
	if err != nil || k.Key == "" {
		t.Fatalf("CreateKey = %+v, %v", k, err)
	}
	ks, _, err := c.ListKeys(ctx, u.ID, ListOptions{})
	if err != nil || len(ks) != 1 || ks[0].Key != "" {
		t.Fatalf("ListKeys = %+v, %v", ks, err)
	}
	rep, err := c.ReplaceKey(ctx, u.ID, k.ID, time.Hour)
	if err != nil || rep.Previous == nil {
		t.Fatalf("ReplaceKey = %+v, %v", rep, err)
	}
	if _, err := c.RevokeKey(ctx, u.ID, rep.ID, 0); err != nil {
		t.Fatal(err)
	}
	// Signing secrets are for APPLICATION users (the default credential policy).
	appName := "app"
	app, err := c.CreateUser(ctx, UserInput{Name: &appName, PrimaryTenant: "c", Type: keys.UserApplication})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSecret(ctx, u.ID, ""); !errors.As(err, &pe) || pe.Status != http.StatusConflict {
		t.Fatalf("CreateSecret for a SERVICE user: %v", err)
	}
	if _, err := c.CreateSecret(ctx, app.ID, ""); err != nil {
		t.Fatal(err)
	}
	if ss, err := c.ListSecrets(ctx, app.ID); err != nil || len(ss) != 1 {
		t.Fatalf("ListSecrets = %v, %v", ss, err)
	}
	if _, err := c.PutPermission(ctx, PermissionInput{UserID: u.ID, Workspace: "c", Role: keys.RoleAdmin, Status: keys.PermissionActive}); err != nil {
		t.Fatal(err)
	}
	if ps, n, err := c.ListPermissions(ctx, "c", ListOptions{}); err != nil || n != 3 || len(ps) != 3 {
		t.Fatalf("ListPermissions = %d, %v", n, err)
	}
	// The permission in the primary tenant is the user's role.
	if u, err = c.GetUser(ctx, u.ID); err != nil || u.Role != keys.RoleAdmin {
		t.Fatalf("GetUser after its primary permission became ADMIN = %+v, %v", u, err)
	}
	if u, err = c.DisableUser(ctx, u.ID, u.Version); err != nil || u.Status != keys.UserInactive {
		t.Fatalf("DisableUser = %+v, %v", u, err)
	}
	if _, err := c.DisableUser(ctx, u.ID, 1); !errors.As(err, &pe) || pe.Status != http.StatusPreconditionFailed {
		t.Fatalf("stale DisableUser: %v", err)
	}
	if _, err := c.DeleteUser(ctx, u.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ListTenants(ctx, ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTenant(ctx, "d", "D"); err != nil {
		t.Fatal(err)
	}
	// Over HTTP, bootstrap is not reachable (no trusted context).
	if _, err := c.Bootstrap(ctx, BootstrapRequest{Tenant: "x", User: "y"}); !errors.As(err, &pe) || pe.Status != http.StatusNotFound {
		t.Fatalf("Bootstrap over HTTP: %v", err)
	}
}
