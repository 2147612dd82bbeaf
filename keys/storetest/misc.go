package storetest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

func testHistory(t *testing.T, s keys.Store) {
	tn, u := setup(t, s)
	_, err := s.UpdateUser(ctx, u.ID, 0, set(func(x *keys.User) { x.Description = "builds" }), "admin-2")
	must(t, "UpdateUser", err)
	k := mustKey(t, s, u, "deploy")
	_, err = s.RevokeKey(ctx, u.ID, k.ID, 0, actor)
	must(t, "RevokeKey", err)
	sec := mustSecret(t, s, u, "a")
	// The user's own role: the primary permission mirrors it, so no
	// user.update follows (testRoleMirror covers a different role).
	_, _, err = s.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: tn.ID, Role: keys.RoleMember}, actor)
	must(t, "PutPermission", err)

	p, err := s.History(ctx, u.ID, 1, 100)
	must(t, "History", err)
	var actions []string
	for _, e := range p.Items {
		actions = append(actions, e.Action+"@"+e.Target)
		if e.Actor == "" || e.At.IsZero() {
			t.Errorf("entry without actor or time: %+v", e)
		}
	}
	want := []string{
		"permission.create@permission:" + tn.ID,
		"secret.create@secret:" + sec.ID,
		"key.revoke@key:" + k.ID,
		"key.create@key:" + k.ID,
		"user.update@",
		"user.create@",
	}
	if strings.Join(actions, " ") != strings.Join(want, " ") || p.Total != len(want) {
		t.Fatalf("History = %d %v, want newest first %v", p.Total, actions, want)
	}
	upd := p.Items[4]
	if upd.Actor != "admin-2" || upd.Changes["description"].To != "builds" {
		t.Errorf("user.update entry = %+v", upd)
	}
	if c, ok := p.Items[2].Changes["status"]; !ok || c.From != string(keys.KeyActive) || c.To != string(keys.KeyRevoked) {
		t.Errorf("key.revoke changes = %+v", p.Items[2].Changes)
	}
	raw, err := json.Marshal(p.Items)
	must(t, "encoding history", err)
	for _, secret := range [][]byte{k.Hash, sec.Sealed} {
		if bytes.Contains(raw, []byte(base64.StdEncoding.EncodeToString(secret))) || bytes.Contains(raw, secret) {
			t.Errorf("history holds secret material: %s", raw)
		}
	}
	for _, field := range []string{`"hash"`, `"sealed"`} {
		if bytes.Contains(raw, []byte(field)) {
			t.Errorf("history records field %s: %s", field, raw)
		}
	}
	p2, err := s.History(ctx, u.ID, 2, 4)
	must(t, "History(page 2)", err)
	if len(p2.Items) != 2 || p2.Total != 6 || p2.Items[1].Action != "user.create" {
		t.Errorf("History page 2 = %+v", p2)
	}
	_, err = s.History(ctx, u.ID, 1, 101)
	wantField(t, "History(size 101)", err, "size")
	_, err = s.History(ctx, "404", 1, 10)
	wantErr(t, "History(missing user)", err, keys.ErrNotFound)
}

func testTouchLastUsed(t *testing.T, s keys.Store) {
	_, u := setup(t, s)
	k := mustKey(t, s, u, "deploy")
	sec := mustSecret(t, s, u, "a")
	before, err := s.History(ctx, u.ID, 1, 1)
	must(t, "History", err)
	at := time.Now().UTC().Truncate(time.Millisecond)
	must(t, "TouchLastUsed", s.TouchLastUsed(ctx, []keys.Usage{
		{UserID: u.ID, KeyID: k.ID, At: at},
		{UserID: u.ID, SecretID: sec.ID, At: at.Add(-time.Minute)},
		{UserID: "404", KeyID: "gone", At: at},
		{UserID: u.ID, SecretID: "gone", At: at},
	}))
	gu, err := s.GetUser(ctx, u.ID)
	must(t, "GetUser", err)
	gk, err := s.GetKey(ctx, k.ID)
	must(t, "GetKey", err)
	gs, err := s.GetSecret(ctx, u.ID, sec.ID)
	must(t, "GetSecret", err)
	if gu.LastUsedAt == nil || !gu.LastUsedAt.Equal(at) || gu.Version != u.Version {
		t.Errorf("user after touch: lastUsedAt %v version %d", gu.LastUsedAt, gu.Version)
	}
	if gk.LastUsedAt == nil || !gk.LastUsedAt.Equal(at) || gk.Version != k.Version {
		t.Errorf("key after touch: lastUsedAt %v version %d", gk.LastUsedAt, gk.Version)
	}
	if gs.LastUsedAt == nil || !gs.LastUsedAt.Equal(at.Add(-time.Minute)) || gs.Version != sec.Version {
		t.Errorf("secret after touch: lastUsedAt %v version %d", gs.LastUsedAt, gs.Version)
	}
	after, err := s.History(ctx, u.ID, 1, 1)
	must(t, "History", err)
	if after.Total != before.Total {
		t.Errorf("TouchLastUsed wrote history: %d → %d entries", before.Total, after.Total)
	}
	must(t, "TouchLastUsed(empty)", s.TouchLastUsed(ctx, nil))

	// A time never moves backwards, and a flush larger than one batch
	// (1,200 uses, the latest in the middle) keeps the latest.
	must(t, "TouchLastUsed(older)", s.TouchLastUsed(ctx, []keys.Usage{{UserID: u.ID, KeyID: k.ID, At: at.Add(-time.Hour)}}))
	if gk, err := s.GetKey(ctx, k.ID); err != nil || !gk.LastUsedAt.Equal(at) {
		t.Errorf("key after an older touch: lastUsedAt %v, %v; want %v", gk.LastUsedAt, err, at)
	}
	many := make([]keys.Usage, 1200)
	latest := at.Add(time.Hour)
	for i := range many {
		many[i] = keys.Usage{UserID: u.ID, KeyID: k.ID, At: at.Add(time.Duration(i) * time.Second)}
	}
	many[600].At = latest
	must(t, "TouchLastUsed(1200)", s.TouchLastUsed(ctx, many))
	if gk, err := s.GetKey(ctx, k.ID); err != nil || !gk.LastUsedAt.Equal(latest) {
		t.Errorf("key after 1,200 touches: lastUsedAt %v, %v; want %v", gk.LastUsedAt, err, latest)
	}
	if gu, err := s.GetUser(ctx, u.ID); err != nil || !gu.LastUsedAt.Equal(latest) {
		t.Errorf("user after 1,200 touches: lastUsedAt %v, %v; want %v", gu.LastUsedAt, err, latest)
	}
}

func testListUsers(t *testing.T, s keys.Store) {
	tn := mustTenant(t, s, "acme")
	roles := []keys.Role{keys.RoleAdmin, keys.RoleMember, keys.RoleViewer}
	for i := range 25 {
		st := keys.UserActive
		if i%5 == 0 {
			st = keys.UserInactive
		}
		_, err := s.CreateUser(ctx, keys.User{
			ID:            fmt.Sprintf("u%02d", 24-i),
			Name:          fmt.Sprintf("Name-%02d", i),
			Email:         fmt.Sprintf("n%02d@example.com", i),
			Type:          keys.UserTechnical,
			Role:          roles[i%3],
			PrimaryTenant: tn.ID,
			Status:        st,
		}, actor)
		must(t, "CreateUser", err)
	}
	list := func(q keys.UserQuery) keys.Page[keys.User] {
		t.Helper()
		p, err := s.ListUsers(ctx, q)
		must(t, fmt.Sprintf("ListUsers(%+v)", q), err)
		return p
	}
	opts := func(page, size int, sorts ...keys.Sort) keys.ListOptions {
		return keys.ListOptions{Page: page, Size: size, Sort: sorts}
	}
	if p := list(keys.UserQuery{}); p.Total != 25 || len(p.Items) != 25 || p.Items[0].ID != "u00" {
		t.Errorf("default list: total %d, %d items, first %s", p.Total, len(p.Items), p.Items[0].ID)
	}
	if got := userNames(list(keys.UserQuery{ListOptions: opts(3, 10, keys.Sort{Field: "name"})})); got != "25:Name-20,Name-21,Name-22,Name-23,Name-24" {
		t.Errorf("page 3 by name = %s", got)
	}
	if got := userNames(list(keys.UserQuery{ListOptions: opts(1, 3, keys.Sort{Field: "name", Desc: true})})); got != "25:Name-24,Name-23,Name-22" {
		t.Errorf("by name desc = %s", got)
	}
	if got := userNames(list(keys.UserQuery{ListOptions: opts(1, 2, keys.Sort{Field: "id"})})); got != "25:Name-24,Name-23" {
		t.Errorf("by id = %s", got)
	}
	if got := userNames(list(keys.UserQuery{ListOptions: opts(1, 2, keys.Sort{Field: "createdAt", Desc: true})})); got != "25:Name-24,Name-23" {
		t.Errorf("by createdAt desc = %s", got)
	}
	if p := list(keys.UserQuery{ListOptions: opts(9, 10)}); p.Total != 25 || len(p.Items) != 0 || p.Items == nil {
		t.Errorf("page past the end = %+v", p)
	}
	if got := userNames(list(keys.UserQuery{Status: keys.UserInactive, ListOptions: opts(2, 2, keys.Sort{Field: "name"})})); got != "5:Name-10,Name-15" {
		t.Errorf("INACTIVE page 2 = %s", got)
	}
	if p := list(keys.UserQuery{Role: keys.RoleAdmin}); p.Total != 9 {
		t.Errorf("ADMIN total = %d, want 9", p.Total)
	}
	if p := list(keys.UserQuery{Type: keys.UserService}); p.Total != 0 {
		t.Errorf("SERVICE total = %d, want 0", p.Total)
	}
	if got := userNames(list(keys.UserQuery{Q: "N07@EXAMPLE"})); got != "1:Name-07" {
		t.Errorf("q by email = %s", got)
	}
	if got := userNames(list(keys.UserQuery{Q: "name-1", Role: keys.RoleMember, ListOptions: opts(1, 10, keys.Sort{Field: "name", Desc: true})})); got != "4:Name-19,Name-16,Name-13,Name-10" {
		t.Errorf("q+role = %s", got)
	}
	// Several sort fields: createdAt, then name descending (in memory).
	if got := userNames(list(keys.UserQuery{ListOptions: opts(1, 4, keys.Sort{Field: "createdAt"}, keys.Sort{Field: "name", Desc: true})})); got != "25:Name-00,Name-01,Name-02,Name-03" {
		t.Errorf("multi-field sort = %s", got)
	}
	for _, tc := range []struct {
		name  string
		o     keys.ListOptions
		field string
	}{
		{"size 101", opts(1, 101), "size"},
		{"page 0 after normalization", opts(-1, 10), "page"},
		{"unknown sort field", opts(1, 10, keys.Sort{Field: "password"}), "sort"},
		{"unknown second sort field", opts(1, 10, keys.Sort{Field: "name"}, keys.Sort{Field: "x"}), "sort"},
	} {
		_, err := s.ListUsers(ctx, keys.UserQuery{ListOptions: tc.o})
		wantField(t, tc.name, err, tc.field)
	}
	if p := list(keys.UserQuery{ListOptions: opts(1, 100)}); len(p.Items) != 25 {
		t.Errorf("size 100 = %d items", len(p.Items))
	}
}

func testListUsersTenant(t *testing.T, s keys.Store) {
	a := mustTenant(t, s, "a")
	b := mustTenant(t, s, "b")
	a1 := mustUser(t, s, a.ID, "a1")
	mustUser(t, s, a.ID, "a2")
	b1 := mustUser(t, s, b.ID, "b1")
	mustUser(t, s, b.ID, "b2")
	_, _, err := s.PutPermission(ctx, keys.Permission{UserID: b1.ID, TenantID: a.ID, Role: keys.RoleViewer}, actor)
	must(t, "PutPermission", err)
	_, _, err = s.PutPermission(ctx, keys.Permission{UserID: a1.ID, TenantID: a.ID, Role: keys.RoleViewer}, actor)
	must(t, "PutPermission(primary tenant)", err)
	byName := keys.ListOptions{Sort: []keys.Sort{{Field: "name"}}}
	p, err := s.ListUsers(ctx, keys.UserQuery{Tenant: a.ID, ListOptions: byName})
	must(t, "ListUsers(a)", err)
	if got := userNames(p); got != "3:a1,a2,b1" {
		t.Errorf("users of a = %s", got)
	}
	p, err = s.ListUsers(ctx, keys.UserQuery{Tenant: b.ID, ListOptions: byName})
	must(t, "ListUsers(b)", err)
	if got := userNames(p); got != "2:b1,b2" {
		t.Errorf("users of b = %s", got)
	}
	// Moving a user's primary tenant moves it between tenant lists; a
	// permission keeps it in the old one.
	_, err = s.UpdateUser(ctx, b1.ID, 0, set(func(x *keys.User) { x.PrimaryTenant = a.ID; x.Name = "b1-moved" }), actor)
	must(t, "UpdateUser(primary tenant)", err)
	p, err = s.ListUsers(ctx, keys.UserQuery{Tenant: b.ID, ListOptions: byName})
	must(t, "ListUsers(b)", err)
	if got := userNames(p); got != "1:b2" {
		t.Errorf("users of b after move = %s", got)
	}
	p, err = s.ListUsers(ctx, keys.UserQuery{Tenant: a.ID, ListOptions: byName})
	must(t, "ListUsers(a)", err)
	if got := userNames(p); got != "3:a1,a2,b1-moved" {
		t.Errorf("users of a after move = %s", got)
	}
	p, err = s.ListUsers(ctx, keys.UserQuery{Tenant: "none"})
	must(t, "ListUsers(unknown tenant)", err)
	if p.Total != 0 || p.Items == nil {
		t.Errorf("users of an unknown tenant = %+v", p)
	}
}

func testActivity(t *testing.T, s keys.Store) {
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	for i := range 10 {
		a := keys.Activity{
			At:     base.Add(time.Duration(i) * time.Minute),
			Actor:  []string{"alice", "bob"}[i%2],
			Method: "POST",
			Path:   fmt.Sprintf("/v1/users/%d", i),
			Status: 201,
			Tenant: []string{"a", "b", "c"}[i%3],
		}
		must(t, "AppendActivity", s.AppendActivity(ctx, a))
	}
	must(t, "AppendActivity(no time)", s.AppendActivity(ctx, keys.Activity{Actor: "carol", Method: "GET", Path: "/v1/users", Status: 200}))
	p, err := s.ListActivity(ctx, keys.ActivityQuery{})
	must(t, "ListActivity", err)
	if p.Total != 11 || p.Items[0].Actor != "carol" || p.Items[1].Path != "/v1/users/9" || p.Items[10].Path != "/v1/users/0" {
		t.Errorf("ListActivity newest first = %+v", p)
	}
	paths := func(q keys.ActivityQuery) string {
		t.Helper()
		p, err := s.ListActivity(ctx, q)
		must(t, "ListActivity", err)
		return fmt.Sprintf("%d:%s", p.Total, names(p.Items, func(a keys.Activity) string { return strings.TrimPrefix(a.Path, "/v1/users/") }))
	}
	for _, tc := range []struct {
		q    keys.ActivityQuery
		want string
	}{
		{keys.ActivityQuery{Actor: "alice"}, "5:8,6,4,2,0"},
		{keys.ActivityQuery{Tenant: "a"}, "4:9,6,3,0"},
		{keys.ActivityQuery{Actor: "bob", Tenant: "b"}, "2:7,1"},
		{keys.ActivityQuery{From: base.Add(3 * time.Minute), To: base.Add(6 * time.Minute)}, "3:5,4,3"},
		{keys.ActivityQuery{From: base.Add(8 * time.Minute), Actor: "alice"}, "1:8"},
		{keys.ActivityQuery{Actor: "bob", ListOptions: keys.ListOptions{Page: 2, Size: 2}}, "5:5,3"},
		{keys.ActivityQuery{Actor: "bob", ListOptions: keys.ListOptions{Size: 2, Sort: []keys.Sort{{Field: "at"}}}}, "5:1,3"},
	} {
		if got := paths(tc.q); got != tc.want {
			t.Errorf("ListActivity(%+v) = %s, want %s", tc.q, got, tc.want)
		}
	}
}

func testSigningKeysAndMeta(t *testing.T, s keys.Store) {
	now := time.Now().UTC().Truncate(time.Second)
	k1 := keys.SigningKey{ID: "kid-1", Algorithm: "RS256", SealedPrivate: []byte("p1"), Public: []byte("pub1"), CreatedAt: now.Add(-time.Hour), SignUntil: now, RetireAt: now.Add(time.Hour)}
	k2 := keys.SigningKey{ID: "kid-2", Algorithm: "EdDSA", SealedPrivate: []byte("p2"), Public: []byte("pub2"), CreatedAt: now}
	must(t, "PutSigningKey(2)", s.PutSigningKey(ctx, k2))
	must(t, "PutSigningKey(1)", s.PutSigningKey(ctx, k1))
	list, err := s.SigningKeys(ctx)
	must(t, "SigningKeys", err)
	if got := names(list, func(k keys.SigningKey) string { return k.ID }); got != "kid-1,kid-2" {
		t.Errorf("SigningKeys = %s, want oldest first", got)
	}
	if !list[0].RetireAt.Equal(k1.RetireAt) || string(list[0].Public) != "pub1" {
		t.Errorf("SigningKeys[0] = %+v", list[0])
	}
	k1.RetireAt = now.Add(2 * time.Hour)
	must(t, "PutSigningKey(replace)", s.PutSigningKey(ctx, k1))
	list, err = s.SigningKeys(ctx)
	must(t, "SigningKeys", err)
	if len(list) != 2 || !list[0].RetireAt.Equal(k1.RetireAt) {
		t.Errorf("SigningKeys after replace = %+v", list)
	}
	must(t, "DeleteSigningKey", s.DeleteSigningKey(ctx, "kid-1"))
	wantErr(t, "DeleteSigningKey(missing)", s.DeleteSigningKey(ctx, "kid-1"), keys.ErrNotFound)
	list, err = s.SigningKeys(ctx)
	must(t, "SigningKeys", err)
	if len(list) != 1 || list[0].ID != "kid-2" {
		t.Errorf("SigningKeys after delete = %+v", list)
	}
	wantField(t, "PutSigningKey(no id)", s.PutSigningKey(ctx, keys.SigningKey{Algorithm: "RS256", SealedPrivate: []byte("x")}), "id")

	_, err = s.GetMeta(ctx, keys.MasterCheckMeta)
	wantErr(t, "GetMeta(missing)", err, keys.ErrNotFound)
	must(t, "PutMeta", s.PutMeta(ctx, keys.MasterCheckMeta, []byte{0, 1, 2}))
	must(t, "PutMeta(overwrite)", s.PutMeta(ctx, keys.MasterCheckMeta, []byte{3, 4}))
	v, err := s.GetMeta(ctx, keys.MasterCheckMeta)
	must(t, "GetMeta", err)
	if !bytes.Equal(v, []byte{3, 4}) {
		t.Errorf("GetMeta = %v", v)
	}
}

func testResealSecrets(t *testing.T, s keys.Store) {
	_, u := setup(t, s)
	a := mustSecret(t, s, u, "a")
	b, err := s.CreateSecret(ctx, newSecret(u, "b", keys.SecretInactive), actor)
	must(t, "CreateSecret", err)
	must(t, "PutSigningKey", s.PutSigningKey(ctx, keys.SigningKey{ID: "kid-1", Algorithm: "RS256", SealedPrivate: []byte("priv"), CreatedAt: time.Now()}))

	boom := errors.New("boom")
	_, err = s.ResealSecrets(ctx, func(kind, id string, sealed []byte) ([]byte, error) {
		if kind == keys.SealedSigningKey {
			return nil, boom
		}
		return append([]byte("new:"), sealed...), nil
	})
	wantErr(t, "ResealSecrets(failing)", err, boom)
	got, err := s.GetSecret(ctx, u.ID, a.ID)
	must(t, "GetSecret", err)
	if !bytes.Equal(got.Sealed, a.Sealed) {
		t.Errorf("failed reseal changed a secret: %q", got.Sealed)
	}

	// A webhook in a rotation's grace period has two sealed secrets.
	hook, err := s.CreateWebhook(ctx, keys.Webhook{ID: keys.NewID(), URL: "https://example.com/h", Events: []string{"*"},
		Enabled: true, SealedSecret: []byte("old")}, actor)
	must(t, "CreateWebhook", err)
	hook, err = s.UpdateWebhook(ctx, hook.ID, 0, func(w *keys.Webhook) error {
		w.RotateSecret([]byte("cur"), time.Now(), time.Hour)
		return nil
	}, actor)
	must(t, "rotating the webhook secret", err)

	seen := map[string]bool{}
	n, err := s.ResealSecrets(ctx, func(kind, id string, sealed []byte) ([]byte, error) {
		seen[kind+":"+id] = true
		return append([]byte("new:"), sealed...), nil
	})
	must(t, "ResealSecrets", err)
	want := []string{keys.SecretAAD(u.ID, a.ID), keys.SecretAAD(u.ID, b.ID), keys.SigningKeyAAD("kid-1"), keys.WebhookAAD(hook.ID)}
	if n != 5 || len(seen) != 4 {
		t.Errorf("ResealSecrets = %d, saw %v", n, seen)
	}
	if got, err := s.GetWebhook(ctx, hook.ID); err != nil || string(got.SealedSecret) != "new:cur" || string(got.PreviousSealedSecret) != "new:old" {
		t.Errorf("resealed webhook: %+v %v", got, err)
	}
	for _, aad := range want {
		if !seen[aad] {
			t.Errorf("ResealSecrets did not pass %q (kind+\":\"+id must be the associated data)", aad)
		}
	}
	for _, sec := range []keys.Secret{a, b} {
		got, err := s.GetSecret(ctx, u.ID, sec.ID)
		must(t, "GetSecret", err)
		if string(got.Sealed) != "new:"+string(sec.Sealed) || got.Version != sec.Version {
			t.Errorf("resealed secret = %q v%d", got.Sealed, got.Version)
		}
	}
	sk, err := s.SigningKeys(ctx)
	must(t, "SigningKeys", err)
	if len(sk) != 1 || string(sk[0].SealedPrivate) != "new:priv" {
		t.Errorf("resealed signing key = %+v", sk)
	}
}

func testInvalidations(t *testing.T, s keys.Store) {
	n, ok := s.(keys.Notifier)
	if !ok {
		t.Skip("store does not implement keys.Notifier")
	}
	_, u := setup(t, s)
	k := mustKey(t, s, u, "deploy")
	got := make(chan keys.Invalidation, 100)
	sctx, cancel := newCancel(t)
	defer cancel()
	must(t, "Subscribe", n.Subscribe(sctx, keys.Listener{Change: func(inv keys.Invalidation) { got <- inv }}))
	expect := func(what string, want keys.Invalidation) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case inv := <-got:
				if inv == want {
					return
				}
			case <-deadline:
				t.Fatalf("%s: no invalidation %+v", what, want)
			}
		}
	}
	_, err := s.RevokeKey(ctx, u.ID, k.ID, 0, actor)
	must(t, "RevokeKey", err)
	expect("RevokeKey", keys.Invalidation{UserID: u.ID, KeyID: k.ID})
	_, err = s.UpdateUser(ctx, u.ID, 0, set(func(x *keys.User) { x.Status = keys.UserInactive }), actor)
	must(t, "UpdateUser", err)
	expect("UpdateUser", keys.Invalidation{UserID: u.ID})
	k2 := mustKey(t, s, u, "second")
	expect("CreateKey", keys.Invalidation{UserID: u.ID, KeyID: k2.ID})
	_, err = s.DeleteUser(ctx, u.ID, 0, actor)
	must(t, "DeleteUser", err)
	expect("DeleteUser (key)", keys.Invalidation{UserID: u.ID, KeyID: k2.ID})
	_, err = s.UpdateTenant(ctx, u.PrimaryTenant, 0, set(func(x *keys.Tenant) { x.Status = keys.TenantArchived }), actor)
	must(t, "UpdateTenant", err)
	expect("UpdateTenant", keys.Invalidation{TenantID: u.PrimaryTenant})
}
