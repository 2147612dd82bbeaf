package storetest

import (
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

// testDeletionSteps (seed 004): DeleteUser goes through DELETING to
// DELETED in two transactions, both in the history; the first ends every
// credential (keys revoked, secrets deactivated, permissions archived,
// console sessions dropped), the second takes the usage counts off the user
// (its tenants keep them as anonymous requests). A deletion stopped between
// the two (UpdateUser to DELETING) is listed by DeletingUsers and finished
// by CompleteDeletion.
func testDeletionSteps(t *testing.T, s keys.Store) {
	tn, u := setup(t, s)
	other := mustTenant(t, s, "other")
	grant(t, s, u, tn.ID, keys.RoleMember)
	grant(t, s, u, other.ID, keys.RoleViewer)
	k := mustKey(t, s, u, "one")
	sec := mustSecret(t, s, u, "a")
	plain, sess := keys.NewSession(hasher, &k, time.Now().Add(time.Hour))
	if plain == "" {
		t.Fatal("no session token")
	}
	_, err := s.CreateSession(ctx, sess, actor)
	must(t, "CreateSession", err)
	h := time.Now().UTC().Truncate(time.Hour)
	must(t, "AddUsageCounts", s.AddUsageCounts(ctx, []keys.UsageCount{
		{UserID: u.ID, Tenant: tn.ID, Hour: h, Allowed: 3, Refused: 1, BadKey: 1},
		{Tenant: tn.ID, Hour: h, Throttled: 2},
	}))

	cur, err := s.GetUser(ctx, u.ID)
	must(t, "GetUser", err)
	del, err := s.DeleteUser(ctx, u.ID, cur.Version, actor)
	must(t, "DeleteUser", err)
	if del.Status != keys.UserDeleted || del.Version != cur.Version+2 {
		t.Errorf("deleted user = %s v%d, want DELETED v%d", del.Status, del.Version, cur.Version+2)
	}
	if !hasEntry(t, s, u.ID, "user.delete", "", "status", "ACTIVE", "DELETING") ||
		!hasEntry(t, s, u.ID, "user.deleted", "", "status", "DELETING", "DELETED") {
		t.Error("the history does not show ACTIVE → DELETING → DELETED")
	}
	if got, _ := s.GetKey(ctx, k.ID); got.Status != keys.KeyRevoked {
		t.Errorf("key after delete: %s", got.Status)
	}
	if got, _ := s.GetSecret(ctx, u.ID, sec.ID); got.Status != keys.SecretInactive {
		t.Errorf("secret after delete: %s", got.Status)
	}
	for _, ws := range []string{tn.ID, other.ID} {
		p, err := s.GetPermission(ctx, u.ID, ws)
		must(t, "GetPermission", err)
		if p.Status != keys.PermissionArchived {
			t.Errorf("permission in %s after delete: %s, want ARCHIVED", ws, p.Status)
		}
	}
	_, err = s.GetSession(ctx, sess.ID)
	wantErr(t, "GetSession after delete", err, keys.ErrNotFound)
	if got, err := s.UsageCounts(ctx, u.ID, h.Add(-time.Hour), h.Add(time.Hour)); err != nil || len(got) != 0 {
		t.Errorf("deleted user's usage = %+v (%v), want none", got, err)
	}
	counts, err := s.TenantUsageCounts(ctx, tn.ID, h, h.Add(time.Hour))
	must(t, "TenantUsageCounts", err)
	if len(counts) != 1 || counts[0].UserID != "" || counts[0].Allowed != 3 || counts[0].BadKey != 1 || counts[0].Throttled != 2 {
		t.Errorf("tenant counts after the delete = %+v, want one anonymous count with the user's requests", counts)
	}
	// Usage counted after the deletion goes to the tenant, not the user.
	must(t, "AddUsageCounts after delete", s.AddUsageCounts(ctx, []keys.UsageCount{{UserID: u.ID, Tenant: tn.ID, Hour: h, Refused: 1, Revoked: 1}}))
	if got, _ := s.UsageCounts(ctx, u.ID, h, h.Add(time.Hour)); len(got) != 0 {
		t.Errorf("usage stored for a deleted user: %+v", got)
	}
	_, err = s.CompleteDeletion(ctx, u.ID, actor)
	wantErr(t, "CompleteDeletion of a DELETED user", err, keys.ErrConflict)
	if ids, err := s.DeletingUsers(ctx, 10); err != nil || len(ids) != 0 {
		t.Errorf("DeletingUsers = %v (%v), want none", ids, err)
	}

	// Interrupted: only the first step ran.
	v := mustUser(t, s, tn.ID, "victim")
	vk := mustKey(t, s, v, "k")
	_, err = s.CompleteDeletion(ctx, v.ID, actor)
	wantErr(t, "CompleteDeletion of an ACTIVE user", err, keys.ErrConflict)
	half, err := s.UpdateUser(ctx, v.ID, 0, set(func(x *keys.User) { x.Status = keys.UserDeleting }), actor)
	must(t, "UpdateUser(DELETING)", err)
	if half.Status != keys.UserDeleting {
		t.Fatalf("user = %s, want DELETING", half.Status)
	}
	if got, _ := s.GetKey(ctx, vk.ID); got.Status != keys.KeyRevoked {
		t.Errorf("key of a DELETING user: %s, want REVOKED", got.Status)
	}
	ids, err := s.DeletingUsers(ctx, 10)
	must(t, "DeletingUsers", err)
	if len(ids) != 1 || ids[0] != v.ID {
		t.Fatalf("DeletingUsers = %v, want [%s]", ids, v.ID)
	}
	done, err := s.CompleteDeletion(ctx, v.ID, "system")
	must(t, "CompleteDeletion", err)
	if done.Status != keys.UserDeleted {
		t.Errorf("after CompleteDeletion: %s", done.Status)
	}
	if ids, _ := s.DeletingUsers(ctx, 10); len(ids) != 0 {
		t.Errorf("DeletingUsers after completion = %v", ids)
	}
	// DeleteUser of a DELETING user runs the second step only.
	w := userIn(t, s, tn.ID, "half", keys.UserDeleting)
	got, err := s.DeleteUser(ctx, w.ID, w.Version, actor)
	if err != nil || got.Status != keys.UserDeleted {
		t.Errorf("DeleteUser of a DELETING user: %s %v", got.Status, err)
	}
}

// testSessions: a console session is stored with its hash, bound to a key
// of an ACTIVE user, found by id, removed by DeleteSession and, once
// expired, by PurgeSessions.
func testSessions(t *testing.T, s keys.Store) {
	tn, u := setup(t, s)
	k := mustKey(t, s, u, "main")
	plain, sess := keys.NewSession(hasher, &k, time.Now().Add(time.Hour))
	if id, ok := keys.ParseSession(plain); !ok || id != sess.ID {
		t.Fatalf("ParseSession(%q) = %q, %v", plain, id, ok)
	}
	if _, ok := keys.ParseAccessKey(plain); ok {
		t.Fatal("a session token parses as an access key")
	}
	got, err := s.CreateSession(ctx, sess, actor)
	must(t, "CreateSession", err)
	if got.CreatedAt.IsZero() || !hasher.Verify(plain, got.Hash) {
		t.Errorf("created session = %+v", got)
	}
	read, err := s.GetSession(ctx, sess.ID)
	must(t, "GetSession", err)
	if read.UserID != u.ID || read.KeyID != k.ID || read.TenantID != tn.ID || !read.ExpiresAt.Equal(sess.ExpiresAt) {
		t.Errorf("GetSession = %+v", read)
	}
	_, err = s.CreateSession(ctx, sess, actor)
	wantErr(t, "CreateSession twice", err, keys.ErrConflict)
	other := mustUser(t, s, tn.ID, "other")
	_, bad := keys.NewSession(hasher, &k, time.Now().Add(time.Hour))
	bad.UserID = other.ID
	_, err = s.CreateSession(ctx, bad, actor)
	wantField(t, "CreateSession with another user's key", err, "keyId")
	_, err = s.CreateSession(ctx, keys.Session{}, actor)
	wantField(t, "CreateSession empty", err, "id")
	_, err = s.UpdateUser(ctx, other.ID, 0, set(func(x *keys.User) { x.Status = keys.UserInactive }), actor)
	must(t, "deactivate", err)
	ok := mustKey(t, s, other, "k")
	_, inactive := keys.NewSession(hasher, &ok, time.Now().Add(time.Hour))
	_, err = s.CreateSession(ctx, inactive, actor)
	wantErr(t, "CreateSession of an INACTIVE user", err, keys.ErrConflict)

	must(t, "DeleteSession", s.DeleteSession(ctx, sess.ID))
	_, err = s.GetSession(ctx, sess.ID)
	wantErr(t, "GetSession after DeleteSession", err, keys.ErrNotFound)
	wantErr(t, "DeleteSession twice", s.DeleteSession(ctx, sess.ID), keys.ErrNotFound)

	_, old := keys.NewSession(hasher, &k, time.Now().Add(time.Minute))
	_, later := keys.NewSession(hasher, &k, time.Now().Add(2*time.Hour))
	for _, x := range []keys.Session{old, later} {
		_, err := s.CreateSession(ctx, x, actor)
		must(t, "CreateSession", err)
	}
	n, err := s.PurgeSessions(ctx, time.Now().Add(time.Hour))
	must(t, "PurgeSessions", err)
	if n != 1 {
		t.Errorf("PurgeSessions removed %d, want 1", n)
	}
	if _, err := s.GetSession(ctx, old.ID); err == nil {
		t.Error("the expired session survived the purge")
	}
	if _, err := s.GetSession(ctx, later.ID); err != nil {
		t.Errorf("the live session was purged: %v", err)
	}
}

// testTenantUsage: counts are kept per tenant, user and hour with their
// refusal reasons, read per tenant in [from, to) oldest first, and summed
// per user over its tenants.
func testTenantUsage(t *testing.T, s keys.Store) {
	_, u := setup(t, s)
	mustTenant(t, s, "beta")
	h0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	must(t, "add", s.AddUsageCounts(ctx, []keys.UsageCount{
		{UserID: u.ID, Tenant: "acme", Hour: h0, Allowed: 3, Limited: 2, Refused: 3, Expired: 1, Revoked: 2},
		{UserID: u.ID, Tenant: "beta", Hour: h0, Allowed: 1},
		{UserID: u.ID, Tenant: "acme", Hour: h0.Add(time.Hour), Allowed: 4, Refused: 1, Coverage: 1},
		{Tenant: "acme", Hour: h0, Refused: 2, BadKey: 2, Throttled: 5, Invalid: 1, Unavailable: 1},
		{UserID: u.ID, Tenant: "acme", Hour: h0.Add(10 * time.Minute), Refused: 1, Forbidden: 1},
	}))
	acme, err := s.TenantUsageCounts(ctx, "acme", h0, h0.Add(2*time.Hour))
	must(t, "TenantUsageCounts", err)
	if len(acme) != 3 {
		t.Fatalf("acme counts = %+v, want 3 (user at h0 and h0+1h, anonymous at h0)", acme)
	}
	byKey := map[string]keys.UsageCount{}
	for _, c := range acme {
		if c.Tenant != "acme" {
			t.Errorf("count of another tenant: %+v", c)
		}
		byKey[c.UserID+"@"+c.Hour.Format("15")] = c
	}
	if c := byKey[u.ID+"@10"]; c.Allowed != 3 || c.Limited != 2 || c.Refused != 4 || c.Expired != 1 || c.Revoked != 2 || c.Forbidden != 1 {
		t.Errorf("user at 10:00 = %+v", c)
	}
	if c := byKey["@10"]; c.BadKey != 2 || c.Throttled != 5 || c.Invalid != 1 || c.Unavailable != 1 || c.Refused != 2 {
		t.Errorf("anonymous at 10:00 = %+v", c)
	}
	if c := byKey[u.ID+"@11"]; c.Allowed != 4 || c.Coverage != 1 {
		t.Errorf("user at 11:00 = %+v", c)
	}
	if !acme[0].Hour.Equal(h0) || !acme[2].Hour.Equal(h0.Add(time.Hour)) {
		t.Errorf("not oldest first: %+v", acme)
	}
	late, err := s.TenantUsageCounts(ctx, "acme", h0.Add(time.Hour), h0.Add(2*time.Hour))
	must(t, "TenantUsageCounts window", err)
	if len(late) != 1 || late[0].Allowed != 4 {
		t.Errorf("acme from 11:00 = %+v", late)
	}
	beta, err := s.TenantUsageCounts(ctx, "beta", h0, h0.Add(2*time.Hour))
	must(t, "TenantUsageCounts beta", err)
	if len(beta) != 1 || beta[0].Allowed != 1 {
		t.Errorf("beta = %+v", beta)
	}
	mine, err := s.UsageCounts(ctx, u.ID, h0, h0.Add(2*time.Hour))
	must(t, "UsageCounts", err)
	var allowed int64
	for _, c := range mine {
		allowed += c.Allowed
	}
	if len(mine) != 3 || allowed != 8 {
		t.Errorf("the user's counts = %+v, want 3 (two tenants at 10:00, one at 11:00) with 8 allowed", mine)
	}
	n, err := s.PurgeUsageCounts(ctx, h0.Add(time.Hour))
	must(t, "PurgeUsageCounts", err)
	if n != 3 {
		t.Errorf("retention removed %d, want 3", n)
	}
	if got, _ := s.TenantUsageCounts(ctx, "acme", h0, h0.Add(2*time.Hour)); len(got) != 1 {
		t.Errorf("acme after retention = %+v", got)
	}
}

// testExpiringKeys: a tenant's ACTIVE, not replaced keys expiring in a
// window, soonest first and paged; revoked, disabled, replaced and other
// tenants' keys are left out, and a changed expiry moves the key.
func testExpiringKeys(t *testing.T, s keys.Store) {
	tn, u := setup(t, s)
	beta := mustTenant(t, s, "beta")
	grant(t, s, u, beta.ID, keys.RoleMember)
	now := time.Now().UTC().Truncate(time.Second)
	mk := func(name, tenant string, in time.Duration) keys.Key {
		_, k := keys.NewAccessKey(hasher, u.ID, tenant, name, now.Add(in))
		out, err := s.CreateKey(ctx, k, actor)
		must(t, "CreateKey "+name, err)
		return out
	}
	mk("expired", tn.ID, -time.Hour)
	d3 := mk("in3days", tn.ID, 72*time.Hour)
	d1 := mk("in1day", tn.ID, 24*time.Hour)
	mk("in30days", tn.ID, 30*24*time.Hour)
	mk("beta", beta.ID, 48*time.Hour)
	rev := mk("revoked", tn.ID, 48*time.Hour)
	_, err := s.RevokeKey(ctx, u.ID, rev.ID, 0, actor)
	must(t, "RevokeKey", err)
	off := mk("disabled", tn.ID, 48*time.Hour)
	_, err = s.UpdateKey(ctx, u.ID, off.ID, 0, set(func(k *keys.Key) { k.Status = keys.KeyInactive }), actor)
	must(t, "disable", err)
	old := mk("replaced", tn.ID, 50*time.Hour)
	_, next := keys.NewAccessKey(hasher, u.ID, tn.ID, "", time.Time{})
	nk, _, err := s.ReplaceKey(ctx, u.ID, old.ID, next, time.Hour, actor)
	must(t, "ReplaceKey", err)

	page, err := s.ExpiringKeys(ctx, tn.ID, now, now.Add(14*24*time.Hour), 1, 30)
	must(t, "ExpiringKeys", err)
	got := names(page.Items, func(k keys.Key) string { return k.Name })
	if page.Total != 3 || got != "in1day,replaced,in3days" || page.Items[1].ID != nk.ID {
		t.Errorf("expiring = %d %s, want 3: in1day, the replacement (the old key's expiry), in3days", page.Total, got)
	}
	page, err = s.ExpiringKeys(ctx, tn.ID, now, now.Add(14*24*time.Hour), 2, 2)
	must(t, "ExpiringKeys page 2", err)
	if page.Total != 3 || len(page.Items) != 1 || page.Items[0].Name != "in3days" {
		t.Errorf("page 2 = %+v", page)
	}
	_, err = s.UpdateKey(ctx, u.ID, d1.ID, 0, set(func(k *keys.Key) { k.ExpiresAt = now.Add(100 * 24 * time.Hour) }), actor)
	must(t, "extend", err)
	page, err = s.ExpiringKeys(ctx, tn.ID, now, now.Add(14*24*time.Hour), 1, 30)
	must(t, "ExpiringKeys after extending", err)
	if got := names(page.Items, func(k keys.Key) string { return k.Name }); got != "replaced,in3days" || page.Items[1].ID != d3.ID {
		t.Errorf("after extending in1day: %s", got)
	}
	page, err = s.ExpiringKeys(ctx, beta.ID, now, now.Add(14*24*time.Hour), 1, 30)
	if err != nil || page.Total != 1 || page.Items[0].Name != "beta" {
		t.Errorf("beta = %+v (%v)", page, err)
	}
	_, err = s.ExpiringKeys(ctx, tn.ID, now, now.Add(time.Hour), 1, 1000)
	wantField(t, "ExpiringKeys size 1000", err, "size")
}
