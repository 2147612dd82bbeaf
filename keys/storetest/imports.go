package storetest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

// importBatch is a batch of two users: one with a key in clear, one with a
// key known only by its legacy SHA-256 (and one by Tyk's murmur64).
func importBatch(tenant string, exp time.Time) keys.ImportBatch {
	return keys.ImportBatch{
		Source: "kong", Tenant: tenant,
		Users: []keys.ImportUser{
			{
				Ref: "consumers[0]", ExternalID: "alice-1",
				User: keys.User{Name: "alice", CustomerRoles: []string{"gold"}, RequestLimit: 200,
					Meta: json.RawMessage(`{"plan":"gold"}`), Tags: []string{"imported"}},
				Keys: []keys.ImportKey{{Ref: "consumers[0].keyauth_credentials[0]", ExternalID: "cred-1", Name: "key-1",
					Plaintext: "alice-secret-key-0001", ExpiresAt: exp, Tags: []string{"t1"}}},
			},
			{
				Ref: "consumers[1]", ExternalID: "bob-2",
				User: keys.User{Name: "bob"},
				Keys: []keys.ImportKey{
					{Ref: "consumers[1].k[0]", ExternalID: "cred-2", Name: "hashed", HashScheme: keys.HashSHA256,
						Hash: keys.LegacyScheme{Name: keys.HashSHA256}.Sum("bob-legacy-key-0002"), ExpiresAt: exp},
					{Ref: "consumers[1].k[1]", ExternalID: "cred-3", Name: "murmur", HashScheme: keys.HashMurmur64,
						Hash: keys.LegacyScheme{Name: keys.HashMurmur64}.Sum("bob-tyk-key-0003"), ExpiresAt: exp},
				},
			},
		},
	}
}

func countActions(res keys.ImportResult) map[string]int {
	out := map[string]int{}
	for _, it := range res.Items {
		out[it.Kind+":"+it.Action]++
	}
	return out
}

// testImport: a batch is created in one go, found by hash, and a second
// import of it creates nothing.
func testImport(t *testing.T, s keys.Store) {
	tn := mustTenant(t, s, "acme")
	h := keys.NewHasher([]byte("pepper"))
	exp := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	b := importBatch(tn.ID, exp)

	dry, err := s.Import(ctx, b, keys.ImportOptions{DryRun: true, Hasher: h}, actor)
	if err != nil {
		t.Fatal(err)
	}
	if dry.Written || dry.Created != 5 || dry.Failed != 0 {
		t.Fatalf("dry run: %+v", dry)
	}
	if page, _ := s.ListUsers(ctx, keys.UserQuery{Tenant: tn.ID}); page.Total != 0 {
		t.Fatalf("dry run wrote %d users", page.Total)
	}
	if _, err := findKey(s, "", h.Sum("alice-secret-key-0001")); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("dry run indexed a key: %v", err)
	}

	res, err := s.Import(ctx, b, keys.ImportOptions{Hasher: h}, actor)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Written || res.Created != 5 {
		t.Fatalf("import: %+v", res)
	}
	if got := countActions(res); got["user:create"] != 2 || got["key:create"] != 3 {
		t.Fatalf("import actions: %v", got)
	}
	aliceID := res.Items[0].ID
	u, err := s.GetUser(ctx, aliceID)
	if err != nil {
		t.Fatal(err)
	}
	if u.Origin == nil || u.Origin.Source != "kong" || u.Origin.ExternalID != "alice-1" || u.RequestLimit != 200 ||
		string(u.Meta) != `{"plan":"gold"}` || u.Type != keys.UserService || u.PrimaryTenant != tn.ID {
		t.Fatalf("imported user: %+v", u)
	}
	p, err := s.GetPermission(ctx, aliceID, tn.ID)
	if err != nil || p.Status != keys.PermissionActive || len(p.CustomerRoles) != 1 || p.CustomerRoles[0] != "gold" {
		t.Fatalf("permission: %+v, %v", p, err)
	}
	if !histHas(t, s, aliceID, "import", "") {
		t.Fatal("no history entry 'import' for the user")
	}

	id, err := findKey(s, "", h.Sum("alice-secret-key-0001"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.GetKey(ctx, id)
	if err != nil || k.UserID != aliceID || k.Last4 != "0001" || k.Masked() != "…0001" || k.HashScheme != "" ||
		!h.Verify("alice-secret-key-0001", k.Hash) || !k.ExpiresAt.Equal(exp) {
		t.Fatalf("imported key: %+v, %v", k, err)
	}
	if _, err := findKey(s, "", h.Sum("alice-secret-key-0002")); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("wrong key found: %v", err)
	}
	pending, err := s.PendingHashSchemes(ctx)
	if err != nil || pending[keys.HashSHA256] != 1 || pending[keys.HashMurmur64] != 1 || len(pending) != 2 {
		t.Fatalf("pending: %v, %v", pending, err)
	}

	again, err := s.Import(ctx, b, keys.ImportOptions{Hasher: h}, actor)
	if err != nil {
		t.Fatal(err)
	}
	if again.Written || again.Created != 0 || again.Updated != 0 || again.Skipped != 5 {
		t.Fatalf("second import: %+v", again)
	}
	if page, _ := s.ListUsers(ctx, keys.UserQuery{Tenant: tn.ID}); page.Total != 2 {
		t.Fatalf("users after two imports: %d", page.Total)
	}

	// A changed file updates what changed, and only that.
	b.Users[0].User.RequestLimit = 300
	b.Users[0].Keys[0].Name = "key-renamed"
	upd, err := s.Import(ctx, b, keys.ImportOptions{Hasher: h}, actor)
	if err != nil {
		t.Fatal(err)
	}
	if got := countActions(upd); got["user:update"] != 1 || got["key:update"] != 1 || upd.Created != 0 {
		t.Fatalf("changed import: %v", got)
	}
	if u, _ := s.GetUser(ctx, aliceID); u.RequestLimit != 300 {
		t.Fatalf("limit not updated: %d", u.RequestLimit)
	}
	if k, _ := s.GetKey(ctx, id); k.Name != "key-renamed" || !h.Verify("alice-secret-key-0001", k.Hash) {
		t.Fatalf("key after update: %+v", k)
	}
}

// testImportAtomic: one bad item writes nothing, unless Continue, which
// writes the rest and lists the failure.
func testImportAtomic(t *testing.T, s keys.Store) {
	tn := mustTenant(t, s, "acme")
	h := keys.NewHasher(nil)
	exp := time.Now().Add(48 * time.Hour)
	b := importBatch(tn.ID, exp)
	b.Users[1].Keys[1].ExpiresAt = time.Time{} // no expiry
	b.Invalid = []keys.ImportItem{{Ref: "consumers[2]", Kind: "user", Reason: "bad row"}}

	res, err := s.Import(ctx, b, keys.ImportOptions{Hasher: h}, actor)
	if err != nil {
		t.Fatal(err)
	}
	if res.Written || res.Failed != 2 {
		t.Fatalf("failed import: %+v", res)
	}
	var refs []string
	for _, it := range res.Items {
		if it.Action == keys.ImportFail {
			refs = append(refs, it.Ref)
		}
	}
	if len(refs) != 2 || refs[0] != "consumers[2]" || refs[1] != "consumers[1].k[1]" {
		t.Fatalf("failed items: %v", refs)
	}
	if page, _ := s.ListUsers(ctx, keys.UserQuery{Tenant: tn.ID}); page.Total != 0 {
		t.Fatalf("a failed import wrote %d users", page.Total)
	}

	res, err = s.Import(ctx, b, keys.ImportOptions{Hasher: h, Continue: true}, actor)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Written || res.Failed != 2 || res.Created != 4 {
		t.Fatalf("import with continue: %+v", res)
	}
	if pending, _ := s.PendingHashSchemes(ctx); pending[keys.HashMurmur64] != 0 || pending[keys.HashSHA256] != 1 {
		t.Fatalf("pending: %v", pending)
	}

	// The same key value under another peer id is refused.
	dup := keys.ImportBatch{Source: "csv", Tenant: tn.ID, Users: []keys.ImportUser{{
		Ref: "line 2", ExternalID: "carol", User: keys.User{Name: "carol"},
		Keys: []keys.ImportKey{{Ref: "line 2", Name: "k", Plaintext: "alice-secret-key-0001", ExpiresAt: exp}},
	}}}
	res, err = s.Import(ctx, dup, keys.ImportOptions{Hasher: h}, actor)
	if err != nil {
		t.Fatal(err)
	}
	if res.Written || res.Failed != 2 || res.Items[1].Reason != "a key with the same value is already imported" {
		t.Fatalf("duplicate key value: %+v", res)
	}
	// A kg_ shaped value is keygate's own and cannot be imported.
	native, _ := keys.NewAccessKey(h, "x", tn.ID, "n", exp)
	dup.Users[0].Keys[0].Plaintext = native
	if res, _ = s.Import(ctx, dup, keys.ImportOptions{Hasher: h}, actor); res.Failed != 2 || res.Written {
		t.Fatalf("kg_ key imported: %+v", res)
	}
}

// testRehash: a key stored under a legacy hash is found by it, re-hashed
// once, then found by keygate's hash only; revoking drops it from the index.
func testRehash(t *testing.T, s keys.Store) {
	tn := mustTenant(t, s, "acme")
	h := keys.NewHasher([]byte("pepper"))
	exp := time.Now().Add(48 * time.Hour)
	if _, err := s.Import(ctx, importBatch(tn.ID, exp), keys.ImportOptions{Hasher: h}, actor); err != nil {
		t.Fatal(err)
	}
	const raw = "bob-tyk-key-0003"
	ls := keys.LegacyScheme{Name: keys.HashMurmur64}
	// One read for keygate's hash and every pending scheme's: the index
	// says which one matched.
	if id, which, err := s.FindKeyByHash(ctx, []keys.KeyHash{
		{Sum: h.Sum(raw)}, {Scheme: keys.HashSHA256, Sum: keys.LegacyScheme{Name: keys.HashSHA256}.Sum(raw)}, {Scheme: keys.HashMurmur64, Sum: ls.Sum(raw)},
	}); err != nil || which != 2 || id == "" {
		t.Fatalf("FindKeyByHash: %q %d %v", id, which, err)
	}
	id, err := findKey(s, keys.HashMurmur64, ls.Sum(raw))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RehashKey(ctx, id, keys.HashSHA256, ls.Sum(raw), h.Sum(raw), "0003"); !errors.Is(err, keys.ErrConflict) {
		t.Fatalf("rehash under the wrong scheme: %v", err)
	}
	k, err := s.RehashKey(ctx, id, keys.HashMurmur64, ls.Sum(raw), h.Sum(raw), "0003")
	if err != nil {
		t.Fatal(err)
	}
	if k.HashScheme != "" || k.RehashedFrom != keys.HashMurmur64 || k.RehashedAt == nil || k.Last4 != "0003" || !h.Verify(raw, k.Hash) {
		t.Fatalf("re-hashed key: %+v", k)
	}
	if again, err := s.RehashKey(ctx, id, keys.HashMurmur64, ls.Sum(raw), h.Sum(raw), "0003"); err != nil || again.Version != k.Version {
		t.Fatalf("second rehash: %+v, %v", again, err)
	}
	if _, err := findKey(s, keys.HashMurmur64, ls.Sum(raw)); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("legacy hash still indexed: %v", err)
	}
	if got, err := findKey(s, "", h.Sum(raw)); err != nil || got != id {
		t.Fatalf("keygate hash: %q, %v", got, err)
	}
	if pending, _ := s.PendingHashSchemes(ctx); pending[keys.HashMurmur64] != 0 || pending[keys.HashSHA256] != 1 {
		t.Fatalf("pending after rehash: %v", pending)
	}
	if !histHas(t, s, k.UserID, "key.rehash", "key:"+id) {
		t.Fatal("no history entry for the rehash")
	}
	// Revoking the other pending key leaves no scheme pending.
	sid, err := findKey(s, keys.HashSHA256, keys.LegacyScheme{Name: keys.HashSHA256}.Sum("bob-legacy-key-0002"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeKey(ctx, k.UserID, sid, 0, actor); err != nil {
		t.Fatal(err)
	}
	if pending, _ := s.PendingHashSchemes(ctx); len(pending) != 0 {
		t.Fatalf("pending after revoke: %v", pending)
	}
	if _, err := findKey(s, keys.HashSHA256, keys.LegacyScheme{Name: keys.HashSHA256}.Sum("bob-legacy-key-0002")); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("revoked key still found by hash: %v", err)
	}
	// Survives reading back (the record is what a restart sees).
	if k2, err := s.GetKey(ctx, id); err != nil || k2.RehashedFrom != keys.HashMurmur64 || k2.HashScheme != "" {
		t.Fatalf("stored: %+v, %v", k2, err)
	}
}

// histHas reports whether the user's history has an entry of action on target.
func histHas(t *testing.T, s keys.Store, userID, action, target string) bool {
	t.Helper()
	h, err := s.History(ctx, userID, 1, 100)
	must(t, "History", err)
	for _, e := range h.Items {
		if e.Action == action && e.Target == target {
			return true
		}
	}
	return false
}

// findKey is FindKeyByHash of one hash.
func findKey(s keys.Store, scheme string, sum []byte) (string, error) {
	id, _, err := s.FindKeyByHash(ctx, []keys.KeyHash{{Scheme: scheme, Sum: sum}})
	return id, err
}
